"""One self-contained HTML page for a run or a comparison: settings, metrics, plots inlined.

Examples:
    >>> write_report("runs/neumf")  # doctest: +SKIP
    PosixPath('runs/neumf/report.html')
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from .errors import DataError, UsageError
from .files import atomic_write
from .runs import check_numbers, read_json, read_metrics, read_run_config

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:960px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}img{max-width:100%}
"""


#: a comparison's columns, in its summary and per fold (a column a comparison lacks stays empty)
SUMMARY = ("rmse_mean", "rmse_std", "mae_mean", "mae_std", "ndcg_mean", "recall_mean", "train_seconds")
FOLD = ("rmse", "mae", "ndcg", "recall", "epochs", "train_seconds")


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _run_sections(folder: Path) -> list[str]:
    metrics = read_metrics(folder)
    config = read_run_config(folder)
    if metrics.get("model") != config["model"]:
        raise DataError(
            f"{folder}: metrics.json is of a {metrics.get('model')!r} model, config.json of a {config['model']!r}; "
            "the folder mixes two runs: train it again"
        )
    if metrics.get("task") == "ranking":
        lists = metrics["test"]["ranking"]
        if not isinstance(lists, dict):
            raise DataError(f"{folder / 'metrics.json'}: damaged (no ranking figures); write the folder again")
        columns = ["k", "users", "ndcg", "recall", "precision", "map", "hit_rate"]
        table = _table([{"part": "test", **lists}], ["part", *columns])
    else:
        summary = [
            {"part": "test", "rmse": metrics["test"]["rmse"], "mae": metrics["test"]["mae"],
             "ratings": metrics["test"].get("n")},
            {"part": "validation", "rmse": (metrics.get("valid") or {}).get("rmse"), "mae": None, "ratings": None},
        ]  # fmt: skip
        if "train" in metrics:
            summary.append({"part": "train", "rmse": metrics["train"]["rmse"], "mae": metrics["train"]["mae"],
                            "ratings": metrics["train"].get("n")})  # fmt: skip
        table = _table(summary, ["part", "rmse", "mae", "ratings"])
        if isinstance(metrics["test"].get("ranking"), dict):
            table += _table([{"lists": "test top-k", **metrics["test"]["ranking"]}],
                            ["lists", "k", "users", "ndcg", "recall", "precision", "map", "hit_rate"])  # fmt: skip
    out = [
        f"<h1>neucf run: {html.escape(str(metrics.get('model', '')))}</h1>",
        "<h2>Metrics</h2>",
        table,
        f"<p>{metrics.get('epochs', 0)} epochs (best {metrics.get('best_epoch', 0)}), "
        f"{_fmt(metrics.get('train_seconds'))} s training, {_fmt(metrics.get('seconds_per_epoch'))} s per epoch.</p>",
    ]
    if (folder / "learning_curve.png").is_file():
        out += ["<h2>Learning curve</h2>", _image(folder / "learning_curve.png")]
    if metrics.get("history"):
        out += [
            "<h2>Per epoch</h2>",
            _table(metrics["history"], ["epoch", "train_mse", "train_loss", "valid_rmse", "valid_ndcg", "seconds"]),
        ]
    out += ["<h2>Configuration</h2>", f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>"]
    return out


def _comparison_sections(folder: Path) -> list[str]:
    data = read_json(folder / "comparison.json")
    check_numbers(data, folder / "comparison.json")
    if not isinstance(data.get("split"), str) or not all(
        isinstance(rows, list) and all(isinstance(r, dict) and isinstance(r.get("model"), str) for r in rows)
        for rows in (data.get("table"), data.get("runs"))
    ):
        raise DataError(f"{folder / 'comparison.json'}: damaged (its split, table or runs); write the folder again")
    out = [
        f"<h1>neucf comparison on {html.escape(data['split'])} folds</h1>",
        "<h2>Summary (mean and standard deviation over folds)</h2>",
        _table(data["table"], ["model", "folds", *SUMMARY]),
    ]
    if (folder / "comparison.png").is_file():
        out += ["<h2>Test RMSE (or NDCG@10 of lists)</h2>", _image(folder / "comparison.png")]
    out += ["<h2>Every fold</h2>", _table(data["runs"], ["model", "fold", *FOLD])]
    return out


def write_report(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.html`` for a run folder (``neucf train``) or a comparison folder (``neucf compare``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    try:
        if (folder / "metrics.json").is_file():
            sections = _run_sections(folder)
        elif (folder / "comparison.json").is_file():
            sections = _comparison_sections(folder)
        else:
            raise DataError(f"{folder}: neither a run folder (metrics.json) nor a comparison folder (comparison.json)")
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{folder}: its metrics or configuration are damaged ({type(exc).__name__}: {exc}); write it again"
        ) from None
    for extra in ("overfit.png", "noise.png"):
        if (folder / extra).is_file():
            sections += [f"<h2>{extra[:-4]} check</h2>", _image(folder / extra)]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>neucf report</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
    target = Path(out) if out else folder / "report.html"
    with atomic_write(target, "w") as handle:
        handle.write(page)
    return target
