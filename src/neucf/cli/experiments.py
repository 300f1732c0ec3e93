"""``neucf diagnose``, ``compare``, ``tune`` and ``report``: judging models, not just training them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..files import check_output_dir, output_dir
from ..models import model_class
from ..models.base import TASKS, parse_spec
from .options import (
    DataFlags,
    ForceOpt,
    MinItemOpt,
    SeedOpt,
    SplitFlags,
    SplitOpt,
    data_options,
    split_options,
    warn_unused_weights,
    work_done,
)

OutOpt = Annotated[Path, typer.Option("--out", help="Folder to write into.")]
#: the models ``compare`` runs unless told otherwise, per task
DEFAULT_MODELS = {"rating": "mean,bias,mf,gmf,mlp,neumf", "ranking": "pop,ease,als,hybrid"}
log = logging.getLogger("neucf.cli")
ModelOpt = Annotated[str, typer.Option("--model", help="Model name (see 'neucf models').")]


def _diagnose(check, out: Path, source: DataFlags, force: bool, **settings) -> None:
    """Run a diagnostic into a new ``--out`` folder, written whole or not at all (see
    :func:`~neucf.files.output_dir`), then say PASS/FAIL (exit 0 / 1)."""
    with output_dir(out, "diagnosis", [source.data], force, on_commit=work_done(f"{out} was written")) as folder:
        verdict = check(source.load(), out=folder, **settings)
    typer.echo(verdict.line)
    for path in verdict.files:
        typer.echo(f"wrote {Path(out) / path.name}")
    if not verdict.passed:
        raise typer.Exit(1)


def diagnose_overfit(
    out: OutOpt,
    source: DataFlags = None,
    model: ModelOpt = "neumf",
    seed: SeedOpt = 0,
    fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of users and of items sampled (ratings of either are kept).")] = 0.003,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs without regularisation.")] = 400,
    threshold: Annotated[float, typer.Option(min=0.0, help="PASS when the final train RMSE is below this.")] = 0.1,
    force: ForceOpt = False,
):  # fmt: skip
    """Can the model memorise a tiny sample? PASS/FAIL line, curve PNG; exit 0 on PASS, 1 on FAIL.
    Example: neucf diagnose overfit --dataset ml-100k --out diag/"""
    from ..diagnostics import overfit

    model_class(model)
    if epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {epochs}")
    source.check()
    check_output_dir(out, "diagnosis", [source.data], force)
    _diagnose(
        overfit, out, source, force, model=model, fraction=fraction, seed=seed, epochs=epochs, threshold=threshold
    )


def diagnose_noise(
    out: OutOpt,
    source: DataFlags = None,
    model: ModelOpt = "neumf",
    seed: SeedOpt = 0,
    margin: Annotated[float, typer.Option(min=0.0, help="How much lower the real data's validation RMSE must be.")] = 0.1,
    force: ForceOpt = False,
):  # fmt: skip
    """Real data against random ratings of the same shape: PASS/FAIL line, both curves in a PNG.
    Example: neucf diagnose noise --dataset ml-100k --out diag/"""
    from ..diagnostics import noise

    model_class(model)
    source.check()
    check_output_dir(out, "diagnosis", [source.data], force)
    _diagnose(noise, out, source, force, model=model, seed=seed, margin=margin)


def _list(text: str | None, flag: str) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UsageError(f"{flag} {text!r} names nothing; give a comma-separated list")
    return items


def compare_models(
    out: OutOpt,
    source: DataFlags = None,
    split: SplitOpt = None,
    folds: Annotated[str | None, typer.Option(help="Folds to run, e.g. 1,2,3 (default: all; seeded splits: 5 seeds).")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated models, each name[:key=value...] (default: mean,bias,mf,gmf,mlp,neumf; ranking: pop,ease,als,hybrid).")] = None,
    task: Annotated[str | None, typer.Option("--task", help="rating (RMSE and lists) or ranking (lists of the ranking models); default: rating on rated data.")] = None,
    seed: SeedOpt = 0,
    min_item_ratings: MinItemOpt = None,
    force: ForceOpt = False,
):  # fmt: skip
    """Every model on every fold: a table (mean ± sd of RMSE and MAE, or the lists' metrics;
    train time), files and a chart. Example: neucf compare --dataset ml-100k --out cmp/"""
    from ..compare import check_models, compare, format_table, write_comparison
    from ..splits import get_splitter

    if task is not None and task not in TASKS:
        raise UsageError(f"--task {task!r}: choose rating or ranking")
    names = _list(models if models is not None else DEFAULT_MODELS[task or "rating"], "--models")
    check_models(names, task)  # unknown names, bad parameters and repeats fail before any data is read
    source.check()
    source.check_split(split)
    splitter = get_splitter(split or source.default_split())
    fold_list = splitter.fold_list(_list(folds, "--folds"))
    if len(set(fold_list)) != len(fold_list):
        raise UsageError(f"--folds {folds!r} names a fold twice")
    check_output_dir(out, "comparison", [source.data], force)
    ratings = source.load()
    if task is None and ratings.implicit:
        task, names = "ranking", _list(models if models is not None else DEFAULT_MODELS["ranking"], "--models")
        log.info("the data holds interactions without ratings: comparing lists (--task ranking)")
    warn_unused_weights(ratings, [model_class(parse_spec(n)[0], task) for n in names])
    result = compare(ratings, splitter, names, folds=fold_list, seed=seed, min_item_ratings=min_item_ratings,
                     task=task or "rating")  # fmt: skip
    typer.echo(format_table(result.table))
    with output_dir(out, "comparison", [source.data], force, on_commit=work_done(f"{out} was written")) as folder:
        written = write_comparison(result, folder)
    for path in written:
        typer.echo(f"wrote {Path(out) / path.name}")


def tune_model(
    out: OutOpt,
    storage: Annotated[str, typer.Option(help="Optuna storage, e.g. sqlite:///tune.db (resumable).")],
    study_name: Annotated[str, typer.Option("--study-name", help="Study name inside the storage.")],
    source: DataFlags = None,
    splitting: SplitFlags = None,
    seed: SeedOpt = 0,
    model: ModelOpt = "neumf",
    trials: Annotated[int, typer.Option(min=1, help="Trials in all (an interrupted study's finished trials count).")] = 20,
    epochs: Annotated[int | None, typer.Option(min=1, help="Most epochs per trial.")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="What to optimise on the validation part: rmse (minimised; the rating default) or ndcg (the ranking default), recall, precision, map, hit_rate of top-10 lists (maximised).")] = None,
    task: Annotated[str, typer.Option("--task", help="rating or ranking: which of the model's forms to tune.")] = "rating",
    force: ForceOpt = False,
):  # fmt: skip
    """Optuna search of a model's settings on the validation part; writes best.json for
    'neucf train --config'. Example: neucf tune --dataset ml-100k --storage sqlite:///t.db --study-name s --out t/"""
    from ..tuning import METRICS, check_storage, tune

    if task not in TASKS:
        raise UsageError(f"--task {task!r}: choose rating or ranking")
    model_class(model, task)
    check_storage(storage)
    metric = metric or ("rmse" if task == "rating" else "ndcg")
    if metric not in METRICS or (task == "ranking" and metric == "rmse"):
        choices = [m for m in METRICS if task == "rating" or m != "rmse"]
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(choices)}")
    if trials < 1:
        raise UsageError(f"--trials must be >= 1, got {trials}")
    if epochs is not None and epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {epochs}")
    source.check()
    splitting = splitting.for_data(source)
    splitting.check()
    check_output_dir(out, "tune", [source.data], force)
    ratings, parts = splitting.load(source, seed)
    best = tune(
        ratings.subset(parts.train), ratings.subset(parts.valid), model, trials, storage, study_name,
        epochs=epochs, seed=seed, out=out, split=splitting.describe(seed), metric=metric, task=task,
    )  # fmt: skip
    typer.echo(
        f"best validation {metric} {best[f'valid_{metric}']:.4f} (trial {best['trial']} of {best['trials']}): "
        f"{json.dumps(best['params'])}"
    )
    typer.echo(f"wrote {Path(out) / 'best.json'}; use it with: neucf train --config {Path(out) / 'best.json'} ...")


def report(
    folder: Annotated[Path, typer.Argument(help="A run folder (neucf train) or comparison folder (neucf compare).")],
):
    """Write one self-contained HTML page (settings, metrics, plots) into the folder.
    Example: neucf report runs/u1"""
    from ..report import write_report

    typer.echo(f"wrote {write_report(folder)}")


def add_commands(app: typer.Typer) -> None:
    """Register diagnose, compare, tune and report on ``app``."""
    diagnose = typer.Typer(
        no_args_is_help=True,
        help="The seed's sanity checks: overfit a tiny sample, train on noise. Example: neucf diagnose noise --dataset ml-100k --out d/",
    )
    diagnose.command("overfit")(data_options(diagnose_overfit))
    diagnose.command("noise")(data_options(diagnose_noise))
    app.add_typer(diagnose, name="diagnose")
    app.command("compare")(data_options(compare_models))
    app.command("tune")(data_options(split_options(split_dir=False)(tune_model)))
    app.command("report")(report)
