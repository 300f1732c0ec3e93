"""Cross-validated comparison of models: every model on every fold, one table and one chart.

Examples:
    >>> table = compare(ratings, "movielens", ["bias", "neumf"], folds=[1, 2])  # doctest: +SKIP
    >>> write_comparison(table, "compare/")                                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .datasets import Ratings, filter_for_split
from .errors import UsageError
from .files import atomic_write
from .models import make_model, model_class
from .models.base import parse_spec
from .runs import fit_and_score, write_json
from .splits import Splitter, get_splitter

log = logging.getLogger(__name__)

#: ranking metrics of top-10 lists reported beside RMSE and MAE
RANKING = ("precision", "recall", "ndcg", "map", "hit_rate")


@dataclass
class Comparison:
    """Per-fold results (``runs``) and their per-model summary (``table``)."""

    runs: pd.DataFrame
    table: pd.DataFrame
    split: str

    @property
    def rated(self) -> bool:
        """Whether the table has rating errors (a rating comparison), not only lists."""
        return "rmse_mean" in self.table

    def markdown(self) -> str:
        """The summary as a Markdown table (with ranking columns of top-10 lists when measured)."""
        ranked = [name for name in RANKING if f"{name}_mean" in self.table]
        errors = ["RMSE", "MAE"] if self.rated else []
        head = ["model", "folds", *errors, *[f"{name}@10" for name in ranked], "train s"]
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for row in self.table.to_dict("records"):
            spread = [f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}" for m in ("rmse", "mae")] if self.rated else []
            cells = [row["model"], str(row["folds"]), *spread, *[f"{row[f'{n}_mean']:.4f}" for n in ranked],
                     f"{row['train_seconds']:.1f}"]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def shared_params(models: list[str], params: dict | None, task: str = "rating") -> dict[str, dict]:
    """Each model's parameters: those of its specification (``name:key=value...``, see
    :func:`~neucf.models.base.parse_spec`) over the shared ``params`` it takes; a shared
    parameter no model takes is an error.

    Examples:
        >>> shared_params(["bias", "mf:factors=8"], {"epochs": 3})
        {'bias': {}, 'mf:factors=8': {'epochs': 3, 'factors': 8}}
    """
    params = params or {}
    specs = {spec: parse_spec(spec) for spec in models}
    accepted = {spec: model_class(name, task).parameters() for spec, (name, _) in specs.items()}
    unused = [k for k in params if not any(k in names for names in accepted.values())]
    if unused:
        raise UsageError(f"no model among {', '.join(models)} takes {', '.join(unused)}")
    return {spec: {**{k: v for k, v in params.items() if k in accepted[spec]}, **specs[spec][1]} for spec in models}


def check_models(models: list[str], task: str | None = None) -> None:
    """Refuse, before any data is read, a model named twice or one that does not exist or does
    not take its parameters (``name:key=value...``).

    Examples:
        >>> check_models(["ease", "ease"], "ranking")
        Traceback (most recent call last):
        ...
        neucf.errors.UsageError: --models names ease twice; name each once (two settings of one model: ease:key=value,ease:key=other)
    """
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        name = parse_spec(twice[0])[0]
        raise UsageError(
            f"--models names {twice[0]} twice; name each once (two settings of one model: "
            f"{name}:key=value,{name}:key=other)"
        )
    for spec in models:
        name, params = parse_spec(spec)
        cls = model_class(name, task)
        cls(task=task if task in cls.tasks else None, **params)  # the class checks names, types and ranges


def compare(
    ratings: Ratings,
    split: str | Splitter,
    models: list[str],
    folds: list | None = None,
    seed: int = 0,
    min_item_ratings: int | None = None,
    params: dict | None = None,
    task: str = "rating",
) -> Comparison:
    """Run every model on every fold of ``split`` (progress with the time left is logged).

    ``models`` are registered names, each optionally with its own parameters
    (``ease:l2=100``); ``params`` are shared parameters: each model gets those it takes (e.g.
    ``epochs`` goes to the models trained by gradient, not to the closed-form baselines).
    ``task``: ``rating`` (RMSE, MAE and the lists' metrics) or ``ranking`` (the models made
    for lists, judged by their lists alone). Every model is checked first (named once, its
    parameters valid, its fit inside this machine's memory), before any is fitted.
    """
    splitter = get_splitter(split) if isinstance(split, str) else split
    folds = splitter.fold_list(folds)
    check_models(models, task)
    per_model = shared_params(models, params, task)
    ratings = filter_for_split(ratings, splitter, min_item_ratings)
    names = {model: parse_spec(model)[0] for model in models}
    for model in models:
        make_model(names[model], task=task, seed=seed, **per_model[model]).check_size(ratings)
    rows, total, done, start = [], len(folds) * len(models), 0, time.perf_counter()
    for fold in folds:
        parts = splitter.split(ratings, fold=fold, seed=seed)
        train, valid, test = (ratings.subset(getattr(parts, p)) for p in ("train", "valid", "test"))
        for model in models:
            elapsed = time.perf_counter() - start
            eta = f", about {elapsed / done * (total - done):.0f} s left" if done else ""
            log.info("[%d/%d] %s on %s fold %s%s", done + 1, total, model, splitter.name, fold, eta)
            _, m = fit_and_score(names[model], train, valid, test, seed=seed, task=task, **per_model[model])
            ranking = {name: m["test"]["ranking"][name] for name in RANKING if "ranking" in m["test"]}
            errors = {"rmse": m["test"]["rmse"], "mae": m["test"]["mae"]} if task == "rating" else {}
            rows.append({
                "model": model, "fold": fold, **errors, **ranking, "epochs": m["epochs"],
                "train_seconds": m["train_seconds"],
            })  # fmt: skip
            done += 1
    runs = pd.DataFrame(rows)
    grouped = runs.groupby("model", sort=False)
    spreads = {
        f"{metric}_{stat}": (grouped[metric].mean() if stat == "mean" else grouped[metric].std(ddof=1).fillna(0))
        .to_numpy()
        for metric in ("rmse", "mae") if metric in runs for stat in ("mean", "std")
    }  # fmt: skip
    table = pd.DataFrame({
        "model": list(grouped.groups),
        "folds": grouped.size().to_numpy(),
        **spreads,
        **{f"{name}_mean": grouped[name].mean().to_numpy() for name in RANKING if name in runs},
        "train_seconds": grouped["train_seconds"].mean().to_numpy(),
    })  # fmt: skip
    return Comparison(runs=runs, table=table, split=splitter.name)


def write_comparison(result: Comparison, out: str | Path) -> list[Path]:
    """Write ``comparison.md``, ``.csv``, ``.json`` and a bar chart ``comparison.png`` into ``out``."""
    from .plots import bar_chart

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "comparison.md", "w") as handle:
        handle.write(result.markdown())
    with atomic_write(out / "comparison.csv", "w") as handle:
        result.table.to_csv(handle, index=False, float_format="%.6f")
    write_json(
        out / "comparison.json",
        {"split": result.split, "table": result.table.to_dict("records"), "runs": result.runs.to_dict("records")},
    )
    if result.rated:
        bar_chart(result.table, out / "comparison.png", title=f"test RMSE on {result.split} folds (mean ± sd)")
    else:
        bar_chart(result.table, out / "comparison.png", title=f"test NDCG@10 on {result.split} folds", metric="ndcg")
    return [out / f"comparison.{ext}" for ext in ("md", "csv", "json", "png")]


def format_table(table: pd.DataFrame) -> str:
    """The summary for a terminal (NDCG@10 and recall@10 when measured)."""
    ranked = [name for name in ("ndcg", "recall") if f"{name}_mean" in table]
    rated = "rmse_mean" in table
    head = f"{'model':<8}{'folds':>6}" + (f"{'RMSE':>18}{'MAE':>18}" if rated else "")
    head += "".join(f"{n + '@10':>11}" for n in ranked) + f"{'train s':>10}"
    lines = [head, "-" * len(head)]
    for r in table.to_dict("records"):
        errors = (
            f"{r['rmse_mean']:>10.4f} ± {r['rmse_std']:.4f}{r['mae_mean']:>10.4f} ± {r['mae_std']:.4f}" if rated else ""
        )
        lines.append(
            f"{r['model']:<8}{r['folds']:>6}"
            + errors
            + "".join(f"{r[f'{n}_mean']:>11.4f}" for n in ranked)
            + f"{r['train_seconds']:>10.1f}"
        )
    return "\n".join(lines)
