"""The ``neucf`` command line: a thin layer over the library.

Exit codes: 0 success, 1 data error, 2 usage error; errors are one line on stderr.

Example:
    $ neucf data describe --data ml-100k/ --json
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import splits as splitting
from .datasets import LoaderOptions, Ratings, filter_for_split, load, load_split_dir
from .errors import NeucfError, UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Neural collaborative filtering for explicit ratings.",
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect and split ratings data.")
app.add_typer(data_app, name="data")

DataOpt = Annotated[Optional[Path], typer.Option("--data", help="A MovieLens folder or zip, or any ratings file.")]
DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", help="A built-in dataset, e.g. ml-100k (downloaded once).")]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Download cache (default $NEUCF_DATA_DIR or the platform cache).")]
SepOpt = Annotated[Optional[str], typer.Option("--sep", help="Field separator (detected when omitted; 'tab' or '\\t' for tab).")]
HeaderOpt = Annotated[Optional[bool], typer.Option("--header/--no-header", help="Whether the first line names the columns (detected).")]
ColumnsOpt = Annotated[Optional[str], typer.Option("--columns", help="Role of each column in order: user,item,rating[,timestamp]; '-' skips one.")]
DuplicatesOpt = Annotated[str, typer.Option("--duplicates", help="Repeated (user, item) pairs: error, last or mean.")]
ScaleOpt = Annotated[Optional[str], typer.Option("--rating-scale", help="MIN,MAX of the rating scale (inferred when omitted).")]
SplitOpt = Annotated[str, typer.Option("--split", help="coverage, random, kfold, movielens or temporal.")]
FoldOpt = Annotated[Optional[str], typer.Option("--fold", help="Fold: 1..k for kfold, 1-5/a/b for movielens.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same result.")]
MinItemOpt = Annotated[Optional[int], typer.Option("--min-item-ratings", help="Drop items with fewer ratings (coverage default 3).")]
MinUserOpt = Annotated[int, typer.Option("--min-user-ratings", help="Drop users with fewer ratings.")]


@dataclass(frozen=True)
class DataFlags:
    """The flags every data-reading command shares: where the ratings are and how to read them."""

    data: Path | None = None
    dataset: str | None = None
    data_dir: Path | None = None
    sep: str | None = None
    header: bool | None = None
    columns: str | None = None
    duplicates: str = "error"
    rating_scale: str | None = None

    def load(self) -> Ratings:
        """Load the ratings these flags describe."""
        options = loader_options(self.sep, self.header, self.columns, self.duplicates, self.rating_scale)
        return load(data=self.data, dataset=self.dataset, options=options, directory=self.data_dir)


_DATA_OPTIONS = {"data": DataOpt, "dataset": DatasetOpt, "data_dir": DataDirOpt, "sep": SepOpt, "header": HeaderOpt,
                 "columns": ColumnsOpt, "duplicates": DuplicatesOpt, "rating_scale": ScaleOpt}


def data_options(command):
    """Give a command the shared data flags; it receives them as one ``source: DataFlags``."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "source"]
    defaults = DataFlags()
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=getattr(defaults, name), annotation=hint)
              for name, hint in _DATA_OPTIONS.items()]

    @functools.wraps(command)
    def wrapper(**kwargs):
        source = DataFlags(**{name: kwargs.pop(name) for name in _DATA_OPTIONS})
        return command(source=source, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared
    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def loader_options(sep, header, columns, duplicates, rating_scale) -> LoaderOptions:
    """Turn the shared loader flags into :class:`LoaderOptions` (usage errors for bad values)."""
    if sep is not None:
        sep = {"tab": "\t", "\\t": "\t", "space": " "}.get(sep, sep)
    scale = None
    if rating_scale is not None:
        try:
            lo, hi = (float(x) for x in rating_scale.split(","))
        except ValueError:
            raise UsageError(f"--rating-scale {rating_scale!r} must be MIN,MAX, e.g. 1,5") from None
        scale = (lo, hi)
    cols = tuple(c.strip() for c in columns.split(",")) if columns else None
    return LoaderOptions(sep=sep, header=header, columns=cols, duplicates=duplicates, scale=scale)


def make_split(ratings: Ratings, split: str, fold: str | None, seed: int) -> splitting.Split:
    """Apply the named split to ``ratings`` (``fold`` picks a k-fold or MovieLens fold)."""
    return splitting.split_by_name(split, ratings.users, ratings.items, ratings.timestamps, fold, seed)


@data_app.command("describe")
@data_options
def data_describe(
    source: DataFlags = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Ratings, users, items, rating range and values, density."""
    ratings = source.load()
    summary = ratings.describe()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    for key, value in summary.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        typer.echo(f"{key:>15}: {value}")


@data_app.command("split")
@data_options
def data_split(
    out: Annotated[Path, typer.Option("--out", help="Folder for train.csv, valid.csv, test.csv.")],
    source: DataFlags = None,
    split: SplitOpt = "coverage",
    fold: FoldOpt = None,
    seed: SeedOpt = 0,
    min_item_ratings: MinItemOpt = None,
    min_user_ratings: MinUserOpt = 0,
):
    """Write a split as CSV files (user,item,rating[,timestamp], raw ids) for any library to use."""
    ratings = source.load()
    ratings = filter_for_split(ratings, split, min_item_ratings, min_user_ratings, say=typer.echo)
    parts = make_split(ratings, split, fold, seed)
    write_split(ratings, parts, out)
    sizes = ", ".join(f"{k} {v:,}" for k, v in parts.sizes().items() if v or k != "valid")
    typer.echo(f"wrote {out}: {sizes}")


def write_split(ratings: Ratings, parts: splitting.Split, out: Path) -> None:
    """Write each non-empty part as ``out/{part}.csv`` with raw ids, atomically."""
    out.mkdir(parents=True, exist_ok=True)
    for name in splitting.PARTS:
        index = getattr(parts, name)
        target = out / f"{name}.csv"
        if len(index) == 0:
            target.unlink(missing_ok=True)
            continue
        ratings.subset(index).write_csv(target)


ModelOpt = Annotated[str, typer.Option("--model", help="mean, bias, mf, gmf, mlp or neumf.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Run folder to write.")]


def load_data_and_split(source: DataFlags, split, fold, seed, min_item_ratings, min_user_ratings, split_dir, say=print):
    """Ratings and their split, from ``--split-dir`` or from the data flags plus ``--split``."""
    if split_dir is not None:
        if source.data is not None or source.dataset is not None:
            raise UsageError("give either --split-dir or --data/--dataset with --split, not both")
        ratings, parts = load_split_dir(split_dir)
        say(f"split from {split_dir}: " + ", ".join(f"{k} {v:,}" for k, v in parts.sizes().items()))
        return ratings, parts
    ratings = source.load()
    ratings = filter_for_split(ratings, split, min_item_ratings, min_user_ratings, say=say)
    return ratings, make_split(ratings, split, fold, seed)


def model_params(model: str, config: Path | None, flags: dict) -> tuple[str, dict]:
    """Model name and parameters: ``--config`` JSON first, then the flags that were given."""
    params = {}
    if config is not None:
        try:
            loaded = json.loads(Path(config).read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"--config {config}: cannot read it as JSON ({exc})") from None
        params = dict(loaded.get("params", loaded))
        model = loaded.get("model", model)
        params.pop("model", None)
    params.update({k: v for k, v in flags.items() if v is not None})
    if model in ("mean", "bias"):
        params = {k: v for k, v in params.items() if k in ("reg_user", "reg_item")}
    return model, params


@app.command("train")
@data_options
def train(
    out: OutOpt,
    source: DataFlags = None,
    split: SplitOpt = "movielens",
    fold: FoldOpt = None,
    seed: SeedOpt = 0,
    min_item_ratings: MinItemOpt = None,
    min_user_ratings: MinUserOpt = 0,
    split_dir: Annotated[Optional[Path], typer.Option("--split-dir", help="A folder written by 'neucf data split', used as is.")] = None,
    model: ModelOpt = "neumf",
    config: Annotated[Optional[Path], typer.Option("--config", help="JSON with model parameters (e.g. from 'neucf tune').")] = None,
    factors: Annotated[Optional[int], typer.Option(help="Units per projection / MLP layer (seed 30; mf 100).")] = None,
    layers: Annotated[Optional[int], typer.Option(help="MLP layers (seed 5).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="LeakyReLU slope (seed 0.4).")] = None,
    input_dropout: Annotated[Optional[float], typer.Option(help="Share of input rating-vector entries dropped while training.")] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout after each MLP layer.")] = None,
    mask_target: Annotated[Optional[bool], typer.Option("--mask-target/--no-mask-target", help="Hide r_ui from its own input.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Most epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Ratings per step.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate.")] = None,
    l2: Annotated[Optional[float], typer.Option(help="L2 weight.")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Early-stopping patience in epochs (0: off).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu or cuda.")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float32 or float64.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar (default: when stderr is a terminal).")] = sys.stderr.isatty(),
):
    """Train a model on a split and write a run folder (config, model, learning curve, metrics)."""
    ratings, parts = load_data_and_split(source, split, fold, seed, min_item_ratings, min_user_ratings, split_dir)
    flags = dict(factors=factors, layers=layers, alpha=alpha, input_dropout=input_dropout, dropout=dropout,
                 mask_target=mask_target, epochs=epochs, batch_size=batch_size, lr=lr, l2=l2, patience=patience,
                 device=device, dtype=dtype)
    model, params = model_params(model, config, flags)
    if model not in ("mean", "bias"):
        params.setdefault("seed", seed)
        params["progress"] = progress
    train_part, valid_part, test_part = (ratings.subset(getattr(parts, p)) for p in ("train", "valid", "test"))
    if len(valid_part) == 0 and model not in ("mean", "bias"):
        typer.echo("this split has no validation part: holding out a seeded 5% of train for early stopping")
    from .runs import fit_and_score, write_run

    fitted, metrics = fit_and_score(model, train_part, valid_part, test_part, **params)
    origin = {"data": str(source.data) if source.data else None, "dataset": source.dataset,
              "split_dir": str(split_dir) if split_dir else None}
    run_config = {"model": model, "params": {**params, "progress": False} if "progress" in params else params,
                  "source": origin, "split": None if split_dir else {"name": split, "fold": fold, "seed": seed},
                  "sizes": parts.sizes()}
    write_run(out, fitted, metrics, run_config, test_part)
    test = metrics["test"]
    typer.echo(
        f"{model}: test RMSE {test['rmse']:.4f}, MAE {test['mae']:.4f} on {test['n']:,} ratings"
        + (f" ({test['n_fallback']} by baseline fallback: unseen user or item)" if test["n_fallback"] else "")
        + (f"; {metrics['epochs']} epochs, best {metrics['best_epoch']}, {metrics['train_seconds']:.1f} s" if metrics["epochs"] else "")
    )
    typer.echo(f"wrote {out}")


@app.command("evaluate")
def evaluate(run_dir: Annotated[Path, typer.Argument(help="A folder written by 'neucf train'.")]):
    """RMSE and MAE of a run's model on the run's test part."""
    from .runs import read_run, run_test_part

    fitted, _ = read_run(run_dir)
    result = fitted.evaluate(run_test_part(run_dir))
    typer.echo(json.dumps({"rmse": result["rmse"], "mae": result["mae"], "n": result["n"], "n_fallback": result["n_fallback"]}))


FallbackOpt = Annotated[bool, typer.Option("--fallback", help="Predict the bias baseline for a user or item the model never saw.")]


@app.command("predict")
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A folder written by 'neucf train'.")],
    user: Annotated[str, typer.Option("--user", help="Raw user id.")],
    item: Annotated[str, typer.Option("--item", help="Raw item id.")],
    fallback: FallbackOpt = False,
):
    """Print the predicted rating of one (user, item) pair."""
    from .runs import read_run

    fitted, _ = read_run(run_dir)
    fitted.unknown = "fallback" if fallback else "error"
    typer.echo(f"{float(fitted.predict([user], [item])[0]):.4f}")


@app.command("recommend")
def recommend(
    run_dir: Annotated[Path, typer.Argument(help="A folder written by 'neucf train'.")],
    user: Annotated[str, typer.Option("--user", help="Raw user id.")],
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 10,
    include_seen: Annotated[bool, typer.Option("--include-seen", help="Also rank items the user already rated.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
):
    """The top k items for a user (unseen by default), with predicted ratings and titles."""
    from .runs import read_run

    fitted, _ = read_run(run_dir)
    top = fitted.recommend(user, k=k, exclude_seen=not include_seen)
    if as_json:
        typer.echo(top.to_json(orient="records"))
        return
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        title = f"  {row.title}" if "title" in top.columns and isinstance(getattr(row, "title", None), str) else ""
        typer.echo(f"{rank:>3}. {row.item}  {row.prediction:.2f}{title}")


diagnose_app = typer.Typer(no_args_is_help=True, help="The seed's sanity checks: overfit a tiny sample, train on noise.")
app.add_typer(diagnose_app, name="diagnose")


def _verdict(verdict) -> None:
    typer.echo(verdict.line)
    for path in verdict.files:
        typer.echo(f"wrote {path}")
    if not verdict.passed:
        raise typer.Exit(1)


@diagnose_app.command("overfit")
@data_options
def diagnose_overfit(
    out: OutOpt,
    source: DataFlags = None,
    model: ModelOpt = "neumf",
    seed: SeedOpt = 0,
    fraction: Annotated[float, typer.Option(help="Share of users and of items sampled (ratings of either are kept).")] = 0.003,
    epochs: Annotated[int, typer.Option(help="Epochs without regularisation.")] = 400,
    threshold: Annotated[float, typer.Option(help="PASS when the final train RMSE is below this.")] = 0.1,
):
    """Can the model memorise a tiny sample? PASS/FAIL line, curve PNG; exit 0 on PASS, 1 on FAIL."""
    from .diagnostics import overfit

    ratings = source.load()
    _verdict(overfit(ratings, model=model, fraction=fraction, seed=seed, epochs=epochs, threshold=threshold, out=out))


@diagnose_app.command("noise")
@data_options
def diagnose_noise(
    out: OutOpt,
    source: DataFlags = None,
    model: ModelOpt = "neumf",
    seed: SeedOpt = 0,
    margin: Annotated[float, typer.Option(help="How much lower the real data's validation RMSE must be.")] = 0.1,
):
    """Real data against random ratings of the same shape: PASS/FAIL line, both curves in a PNG."""
    from .diagnostics import noise

    ratings = source.load()
    _verdict(noise(ratings, model=model, seed=seed, margin=margin, out=out))


def _int_list(text: str | None, flag: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} {text!r} must be numbers separated by commas, e.g. 1,2,3") from None


@app.command("compare")
@data_options
def compare_models(
    out: OutOpt,
    source: DataFlags = None,
    split: SplitOpt = "movielens",
    folds: Annotated[Optional[str], typer.Option(help="Folds to run, e.g. 1,2,3 (default: all; seeded splits: 5 seeds).")] = None,
    models: Annotated[str, typer.Option(help="Comma-separated models.")] = "mean,bias,mf,gmf,mlp,neumf",
    seed: SeedOpt = 0,
    min_item_ratings: MinItemOpt = None,
):
    """Every model on every fold: a table (mean ± sd of RMSE and MAE, train time), files and a chart."""
    from .compare import compare, format_table, write_comparison
    from .runs import make_model

    names = [m.strip() for m in models.split(",") if m.strip()]
    for name in names:
        make_model(name)  # unknown names fail before any training
    ratings = source.load()
    result = compare(ratings, split, names, folds=_int_list(folds, "--folds"), seed=seed, min_item_ratings=min_item_ratings)
    typer.echo(format_table(result.table))
    for path in write_comparison(result, out):
        typer.echo(f"wrote {path}")


@app.command("tune")
@data_options
def tune_model(
    out: OutOpt,
    storage: Annotated[str, typer.Option(help="Optuna storage, e.g. sqlite:///tune.db (resumable).")],
    study_name: Annotated[str, typer.Option("--study-name", help="Study name inside the storage.")],
    source: DataFlags = None,
    split: SplitOpt = "movielens",
    fold: FoldOpt = None,
    seed: SeedOpt = 0,
    min_item_ratings: MinItemOpt = None,
    min_user_ratings: MinUserOpt = 0,
    model: ModelOpt = "neumf",
    trials: Annotated[int, typer.Option(help="Trials in all (an interrupted study's finished trials count).")] = 20,
    epochs: Annotated[Optional[int], typer.Option(help="Most epochs per trial.")] = None,
):
    """Optuna search minimising validation RMSE; writes best.json for 'neucf train --config'."""
    from .tuning import tune

    if trials < 1:
        raise UsageError(f"--trials must be >= 1, got {trials}")
    ratings, parts = load_data_and_split(source, split, fold, seed, min_item_ratings, min_user_ratings, None)
    best = tune(ratings.subset(parts.train), ratings.subset(parts.valid), model, trials, storage, study_name,
                epochs=epochs, seed=seed, out=out)
    typer.echo(f"best validation RMSE {best['valid_rmse']:.4f} (trial {best['trial']} of {best['trials']}): {json.dumps(best['params'])}")
    typer.echo(f"wrote {Path(out) / 'best.json'}; use it with: neucf train --config {Path(out) / 'best.json'} ...")


@app.command("report")
def report(folder: Annotated[Path, typer.Argument(help="A run folder (neucf train) or comparison folder (neucf compare).")]):
    """Write one self-contained HTML page (settings, metrics, plots) into the folder."""
    from .report import write_report

    typer.echo(f"wrote {write_report(folder)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``neucf`` script: runs the app and maps errors to one line + exit code.

    Set ``NEUCF_DEBUG=1`` to see the traceback of an unexpected error.
    """
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="neucf", standalone_mode=False)
    except NeucfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; use a smaller dataset, batch size or model", file=sys.stderr)
        return 1
    except Exception as exc:
        # typer's (vendored) click raises usage errors that carry exit_code and format_message
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            if type(exc).__name__.startswith("NoArgsIsHelp"):
                print(exc.format_message())
                return 0
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return int(exc.exit_code)
        if os.environ.get("NEUCF_DEBUG"):
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (set NEUCF_DEBUG=1 for details)", file=sys.stderr)
        return 1
    # without standalone mode, a command's typer.Exit(code) comes back as the return value
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script wrapper: exits with :func:`main`'s code."""
    sys.exit(main())


if __name__ == "__main__":
    run()
