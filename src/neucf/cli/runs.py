"""``neucf train``, ``evaluate``, ``predict`` and ``recommend``: one run folder, from training to use."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..files import check_output_dir, output_dir
from ..models import model_class, model_names
from ..runs import environment, fit_and_score, read_run, run_test_part, write_run
from ..training import resolve_device
from .options import (
    DataFlags,
    ForceOpt,
    SeedOpt,
    SplitFlags,
    data_options,
    model_options,
    resolve_model,
    split_options,
)

log = logging.getLogger("neucf.cli")

RunDirArg = Annotated[Path, typer.Argument(help="A folder written by 'neucf train'.")]


def train(
    out: Annotated[Path, typer.Option("--out", help="Run folder to write.")],
    source: DataFlags = None,
    splitting: SplitFlags = None,
    seed: SeedOpt = 0,
    model: Annotated[str | None, typer.Option("--model", help="Model name (see 'neucf models'); default neumf.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="JSON with model parameters (e.g. from 'neucf tune'); flags override it.")] = None,
    params: dict | None = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda (run-time: not saved with the model).")] = "auto",
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar and epoch lines (default: when stderr is a terminal).")] = None,
    force: ForceOpt = False,
):  # fmt: skip
    """Train a model on a split and write a run folder (config, model, learning curve, metrics)."""
    name, model_params = resolve_model(model, config, params)
    cls = model_class(name)
    estimator = cls(seed=seed, **model_params)  # bad parameters fail before any data is read
    resolve_device(device)
    inputs = (source.data, splitting.split_dir, config)
    source.check()
    splitting.check()
    check_output_dir(out, "run", inputs, force)
    ratings, parts = splitting.load(source, seed)
    train_part, valid_part, test_part = (ratings.subset(getattr(parts, p)) for p in ("train", "valid", "test"))
    if len(valid_part) == 0 and cls.fitted_by == "gradient":
        log.info("this split has no validation part: holding out a seeded 5% of train for early stopping")
    show = sys.stderr.isatty() if progress is None else progress
    fitted, metrics = fit_and_score(estimator, train_part, valid_part, test_part, device=device, progress=show)
    run_config = {
        "model": name,
        "params": fitted.get_params(),
        "seed": seed,
        "source": source.describe() if splitting.split_dir is None else None,
        "split": splitting.describe(seed),
        "sizes": parts.sizes(),
        "runtime": {"device": device, "progress": show},
        "environment": environment(),
    }
    with output_dir(out, "run", inputs, force) as folder:
        write_run(folder, fitted, metrics, run_config, test_part)
    test = metrics["test"]
    line = f"{name}: test RMSE {test['rmse']:.4f}, MAE {test['mae']:.4f} on {test['n']:,} ratings"
    if test["n_fallback"]:
        line += f" ({test['n_fallback']} by baseline fallback: unseen user or item)"
    if metrics["epochs"]:
        line += f"; {metrics['epochs']} epochs, best {metrics['best_epoch']}, {metrics['train_seconds']:.1f} s"
    typer.echo(line)
    typer.echo(f"wrote {out}")


def evaluate(run_dir: RunDirArg):
    """RMSE and MAE of a run's model on the run's test part."""
    fitted = read_run(run_dir)
    result = fitted.evaluate(run_test_part(run_dir))
    typer.echo(json.dumps({k: result[k] for k in ("rmse", "mae", "n", "n_fallback")}))


def predict(
    run_dir: RunDirArg,
    user: Annotated[str, typer.Option("--user", help="Raw user id.")],
    item: Annotated[str, typer.Option("--item", help="Raw item id.")],
    fallback: Annotated[bool, typer.Option("--fallback", help="Predict the bias baseline for a user or item the model never saw.")] = False,
):  # fmt: skip
    """Print the predicted rating of one (user, item) pair."""
    fitted = read_run(run_dir)
    fitted.unknown = "fallback" if fallback else "error"
    typer.echo(f"{float(fitted.predict([user], [item])[0]):.4f}")


def recommend(
    run_dir: RunDirArg,
    user: Annotated[str, typer.Option("--user", help="Raw user id.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many items.")] = 10,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="Also rank items the user already rated.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
):  # fmt: skip
    """The top k items for a user (unseen by default), with predicted ratings and titles."""
    fitted = read_run(run_dir)
    top = fitted.recommend(user, k=k, exclude_seen=not include_seen)
    if as_json:
        typer.echo(top.to_json(orient="records"))
        return
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        title = getattr(row, "title", None)
        typer.echo(f"{rank:>3}. {row.item}  {row.prediction:.2f}" + (f"  {title}" if isinstance(title, str) else ""))


def models():
    """The registered models: name, how each is fitted, its parameters."""
    for name in model_names():
        cls = model_class(name)
        params = ", ".join(cls.parameters()) or "no parameters"
        typer.echo(f"{name:<8} {cls.fitted_by:<12} {params}")


def add_commands(app: typer.Typer) -> None:
    """Register train, evaluate, predict, recommend and models on ``app``."""
    app.command("train")(data_options(split_options()(model_options()(train))))
    app.command("evaluate")(evaluate)
    app.command("predict")(predict)
    app.command("recommend")(recommend)
    app.command("models")(models)
