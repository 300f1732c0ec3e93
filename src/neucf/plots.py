"""Figures: learning curves and comparison bars, drawn with matplotlib's object API.

Figures are made with :class:`matplotlib.figure.Figure` directly, never through pyplot, so
drawing one neither switches the caller's backend nor touches pyplot's global figure list.

Examples:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "curve.png"
    >>> learning_curve([{"epoch": 1, "train_mse": 1.0, "valid_rmse": 1.1}], path).suffix
    '.png'
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from .files import atomic_write


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return path


def learning_curve(
    history: list[dict],
    path: str | Path,
    title: str = "learning curve",
    best_epoch: int | None = None,
    series: dict[str, list[dict]] | None = None,
) -> Path:
    """Train and validation RMSE per epoch (one line pair per entry of ``series`` if given); a
    ranking objective's epochs (their ``valid_ndcg``): the training loss and the validation
    NDCG@10 on a second axis."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    if history and history[0].get("valid_ndcg") is not None:
        epochs = [r["epoch"] for r in history]
        ax.plot(epochs, [r["train_loss"] for r in history], "--", label="training loss")
        ax.set_ylabel("training loss")
        twin = ax.twinx()
        twin.plot(epochs, [r["valid_ndcg"] for r in history], "-", color="#c44e52", label="validation NDCG@10")
        twin.set_ylabel("validation NDCG@10")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.02), ncols=2, frameon=False)
        return save_figure(fig, path)
    for label, rows in (series or {"": history}).items():
        epochs = [r["epoch"] for r in rows]
        prefix = f"{label} " if label else ""
        ax.plot(epochs, [math.sqrt(r["train_mse"]) for r in rows], "--", label=f"{prefix}train RMSE")
        valid = [r["valid_rmse"] for r in rows]
        if any(v is not None and v == v for v in valid):
            ax.plot(epochs, valid, "-", label=f"{prefix}validation RMSE")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", lw=0.8, ls=":", label=f"best epoch ({best_epoch})")
    if not history and not series:
        ax.text(0.5, 0.5, "fitted in closed form: no epochs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return save_figure(fig, path)


def bar_chart(table, path: str | Path, title: str = "test RMSE", metric: str = "rmse") -> Path:
    """Bars of mean RMSE per model with standard-deviation error bars (from a comparison table);
    ``metric`` ``ndcg`` draws the lists' mean NDCG@10 instead."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    x = range(len(table))
    if metric != "rmse":
        values = table[f"{metric}_mean"]
        ax.bar(x, values, color="#55a868")
        ax.set_xticks(list(x), list(table["model"]))
        for i, v in zip(x, values):
            ax.text(i, v, f"{v:.4f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel(f"{metric.upper()}@10")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        return save_figure(fig, path)
    ax.bar(x, table["rmse_mean"], yerr=table["rmse_std"], capsize=4, color="#4c72b0")
    ax.set_xticks(list(x), list(table["model"]))
    low = float((table["rmse_mean"] - table["rmse_std"]).min())
    ax.set_ylim(max(0.0, low - 0.05), float((table["rmse_mean"] + table["rmse_std"]).max()) + 0.03)
    for i, v, sd in zip(x, table["rmse_mean"], table["rmse_std"]):
        ax.text(i, v + sd + 0.003, f"{v:.4f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("RMSE")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)
