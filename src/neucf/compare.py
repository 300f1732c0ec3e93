"""Cross-validated comparison of models: every model on every fold, one table and one chart.

Example:
    >>> table = compare(ratings, "movielens", ["bias", "neumf"], folds=[1, 2])  # doctest: +SKIP
    >>> write_comparison(table, "compare/")                                      # doctest: +SKIP
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .datasets import Ratings, filter_for_split
from .errors import UsageError
from .files import atomic_write
from .runs import fit_and_score, write_json
from .splits import FOLDED, split_by_name

BASELINES = ("mean", "bias")


@dataclass
class Comparison:
    """Per-fold results (``runs``) and their per-model summary (``table``)."""

    runs: pd.DataFrame
    table: pd.DataFrame
    split: str

    def markdown(self) -> str:
        """The summary as a Markdown table."""
        lines = ["| model | folds | RMSE | MAE | train s |", "|---|---:|---:|---:|---:|"]
        for row in self.table.itertuples(index=False):
            lines.append(f"| {row.model} | {row.folds} | {row.rmse_mean:.4f} ± {row.rmse_std:.4f} | "
                         f"{row.mae_mean:.4f} ± {row.mae_std:.4f} | {row.train_seconds:.1f} |")
        return "\n".join(lines) + "\n"


def fold_list(split: str, folds: list[int] | None) -> list[int]:
    """The folds to run: all of a folded split (k-fold, MovieLens u1..u5) unless picked;
    seeded splits run 5 repetitions (fold i uses seed + i - 1)."""
    available = FOLDED.get(split, 5)
    chosen = folds or list(range(1, available + 1))
    bad = [f for f in chosen if not 1 <= f <= available]
    if bad:
        raise UsageError(f"--folds {bad[0]} is out of range: {split} has folds 1..{available}")
    return chosen


def compare(ratings: Ratings, split: str, models: list[str], folds: list[int] | None = None, seed: int = 0,
            min_item_ratings: int | None = None, params: dict | None = None, say=None) -> Comparison:
    """Run every model on every fold; ``say`` receives progress lines (model, fold, time left)."""
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    folds = fold_list(split, folds)
    ratings = filter_for_split(ratings, split, min_item_ratings)
    rows, total, done, start = [], len(folds) * len(models), 0, time.perf_counter()
    for fold in folds:
        fold_seed = seed if split in FOLDED else seed + fold - 1
        parts = split_by_name(split, ratings.users, ratings.items, ratings.timestamps,
                              fold=fold if split in FOLDED else None, seed=fold_seed)
        train, valid, test = (ratings.subset(getattr(parts, p)) for p in ("train", "valid", "test"))
        for model in models:
            elapsed = time.perf_counter() - start
            eta = f", about {elapsed / done * (total - done):.0f} s left" if done else ""
            say(f"[{done + 1}/{total}] {model} on {split} fold {fold}{eta}")
            extra = {} if model in BASELINES else dict({"seed": seed, "progress": False}, **(params or {}))
            _, m = fit_and_score(model, train, valid, test, **extra)
            rows.append({"model": model, "fold": fold, "rmse": m["test"]["rmse"], "mae": m["test"]["mae"],
                         "epochs": m["epochs"], "train_seconds": m["train_seconds"]})
            done += 1
    runs = pd.DataFrame(rows)
    grouped = runs.groupby("model", sort=False)
    table = pd.DataFrame({
        "model": list(grouped.groups),
        "folds": grouped.size().to_numpy(),
        "rmse_mean": grouped["rmse"].mean().to_numpy(),
        "rmse_std": grouped["rmse"].std(ddof=1).fillna(0).to_numpy(),
        "mae_mean": grouped["mae"].mean().to_numpy(),
        "mae_std": grouped["mae"].std(ddof=1).fillna(0).to_numpy(),
        "train_seconds": grouped["train_seconds"].mean().to_numpy(),
    })
    return Comparison(runs=runs, table=table, split=split)


def write_comparison(result: Comparison, out: str | Path) -> list[Path]:
    """Write ``comparison.md``, ``.csv``, ``.json`` and a bar chart ``comparison.png`` into ``out``."""
    from .plots import bar_chart

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "comparison.md", "w") as handle:
        handle.write(result.markdown())
    with atomic_write(out / "comparison.csv", "w") as handle:
        result.table.to_csv(handle, index=False, float_format="%.6f")
    write_json(out / "comparison.json", {"split": result.split, "table": result.table.to_dict("records"),
                                          "runs": result.runs.to_dict("records")})
    bar_chart(result.table, out / "comparison.png", title=f"test RMSE on {result.split} folds (mean ± sd)")
    return [out / f"comparison.{ext}" for ext in ("md", "csv", "json", "png")]


def format_table(table: pd.DataFrame) -> str:
    """The summary for a terminal."""
    head = f"{'model':<8}{'folds':>6}{'RMSE':>18}{'MAE':>18}{'train s':>10}"
    lines = [head, "-" * len(head)]
    for r in table.itertuples(index=False):
        lines.append(f"{r.model:<8}{r.folds:>6}{r.rmse_mean:>10.4f} ± {r.rmse_std:.4f}"
                     f"{r.mae_mean:>10.4f} ± {r.mae_std:.4f}{r.train_seconds:>10.1f}")
    return "\n".join(lines)
