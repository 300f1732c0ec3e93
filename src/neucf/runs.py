"""A training run: fit a model on a split, score it, and keep everything in one folder.

A run folder holds ``config.json`` (data, split, model and training settings),
``model.pt``, ``learning_curve.png``, ``metrics.json`` and ``test.csv`` (the test part, raw
ids), so ``neucf evaluate`` can score the model again without the original data.

Examples:
    >>> model, metrics = fit_and_score("neumf", train, valid, test, epochs=5)  # doctest: +SKIP
    >>> write_run("runs/neumf", model, metrics, config={"model": "neumf"})    # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .attributes import write_folder_attributes
from .datasets import Ratings, read_part_file
from .errors import DataError, UsageError
from .files import MARKER, atomic_write, checksum, marked_checksums, output_dir, recover_output
from .models import Recommender, make_model, model_class
from .plots import learning_curve

log = logging.getLogger(__name__)


def fit_and_score(
    model: str | Recommender,
    train: Ratings,
    valid: Ratings | None,
    test: Ratings,
    *,
    device: str = "auto",
    progress: bool = False,
    callbacks=(),
    ranking: bool | None = None,
    task: str | None = None,
    **params,
) -> tuple[Recommender, dict]:
    """Fit on ``train`` (``valid`` for early stopping and settings), then score ``test``;
    returns (model, metrics).

    ``model`` is a model or a registered name (then ``task`` and ``params`` make it). A
    rating model is scored by RMSE and MAE, and ``ranking`` adds the ranking metrics of its
    top-10 lists as ``metrics["test"]["ranking"]`` (default: when users x items <= 10^8, see
    :func:`wants_ranking`); a ranking model by its lists alone, whatever the size.
    """
    if isinstance(model, str):
        model = make_model(model, task=task, **params)
    valid = valid if valid is not None and len(valid) else None
    start = time.perf_counter()
    model.fit(train, valid, device=device, progress=progress, callbacks=callbacks)
    seconds = time.perf_counter() - start
    history = model.history
    epochs = history.rows() if history is not None else []
    metrics = {
        "model": model.name,
        "task": model.task,
        "implicit": bool(train.implicit),
        "epochs": len(epochs),
        "best_epoch": history.best_epoch if history is not None else 0,
        "full_train_epochs": history.full_train_epochs if history is not None else 0,
        "held_out_validation": bool(getattr(model, "held_out_validation", False)),
        "train_seconds": seconds,
        "seconds_per_epoch": float(np.median([e["seconds"] for e in epochs])) if epochs else None,
        "history": epochs,
        "sizes": {"train": len(train), "valid": 0 if valid is None else len(valid), "test": len(test)},
    }
    if model.task == "ranking":
        metrics["test"] = {"ranking": model.evaluate_ranking(test, k=10, exclude=valid)}
        metrics["valid"] = {"ndcg": history.best_valid_ndcg if history is not None else None}
        return model, metrics
    if history is not None:
        valid_rmse = history.best_valid_rmse
    else:
        valid_rmse = model.evaluate(valid)["rmse"] if valid is not None else float("nan")
    metrics.update(test=model.evaluate(test), valid={"rmse": valid_rmse}, train=model.evaluate(train))
    if wants_ranking(model, ranking):
        metrics["test"]["ranking"] = model.evaluate_ranking(test, k=10, exclude=valid)
    return model, metrics


def environment() -> dict:
    """The versions a run was made with (recorded in every run folder).

    Examples:
        >>> sorted(environment())
        ['neucf', 'numpy', 'python', 'torch']
    """
    return {
        "neucf": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def jsonable(value):
    """``value`` as strict JSON holds it: numpy numbers as Python ones, a float that is not
    finite (NaN, infinity) as None.

    Examples:
        >>> jsonable({"a": float("nan"), "b": [np.float32(1.5)]})
        {'a': None, 'b': [1.5]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def write_json(path: Path, data) -> None:
    """Write JSON atomically (NaN written as null)."""
    with atomic_write(path, "w") as handle:
        json.dump(jsonable(data), handle, indent=2, allow_nan=False)
        handle.write("\n")


#: the files of a run folder whose SHA-256 ``config.json`` records (``files``): a model or a
#: test part copied in from elsewhere is then found, not used in silence
FINGERPRINTED = ("model.pt", "test.csv", "valid.csv", "items.csv", "users.csv", "attributes.json")


def write_run(
    out: str | Path, model: Recommender, metrics: dict, config: dict, test: Ratings | None = None,
    valid: Ratings | None = None, *, inputs=(), force: bool = False, on_commit=None,
) -> Path:  # fmt: skip
    """Write a run folder (see the module docstring), whole or not at all
    (:func:`~neucf.files.output_dir`, whose ``inputs``, ``force`` and ``on_commit`` these
    are); ``valid.csv`` keeps the validation part, which recommendations exclude as they
    exclude the training ratings. ``config.json`` records the SHA-256 of ``model.pt``,
    ``test.csv``, ``valid.csv`` and the attribute files the run read (``items.csv``,
    ``users.csv``, ``attributes.json``) under ``files``, and the folder's marker that of
    ``config.json`` (see :func:`read_run`)."""
    with output_dir(out, "run", inputs, force, on_commit=on_commit) as folder:
        model.save(folder / "model.pt")
        write_json(folder / "metrics.json", metrics)
        learning_curve(
            metrics["history"],
            folder / "learning_curve.png",
            title=f"{model.name} learning curve",
            best_epoch=metrics.get("best_epoch") or None,
        )
        if test is not None:
            test.write_csv(folder / "test.csv")
        if valid is not None and len(valid):
            valid.write_csv(folder / "valid.csv")
        if test is not None:  # the attributes the run read (the model holds them encoded)
            write_folder_attributes(folder, test.item_attributes, test.user_attributes)
        files = {name: checksum(folder / name) for name in FINGERPRINTED if (folder / name).is_file()}
        write_json(folder / "config.json", {**config, "files": files})
    return Path(out)


def recorded_inputs(run_dir: str | Path) -> list[Path]:
    """The files a run was made from, as its ``config.json`` records them: the data file or
    folder and the split folder (absolute, links resolved; runs written before 0.7 record the
    data's path as it was given). Outputs made from the run must not overwrite them.

    Examples:
        >>> recorded_inputs("no/such/run")
        []
    """
    try:
        config = read_json(Path(run_dir) / "config.json")
    except DataError:
        return []  # reading the run says what is wrong with it
    found = []
    for part, keys in (("source", ("path", "data")), ("split", ("path", "split_dir"))):
        entry = config.get(part)
        if isinstance(entry, dict):
            found += [Path(entry[k]) for k in keys if isinstance(entry.get(k), str) and entry[k] != "-"]
    return found


def read_run_config(run_dir: str | Path, warn: bool = True) -> dict:
    """A run's ``config.json``, checked: it is the one the run wrote (its SHA-256 is the one the
    run's marker file records; runs written before 0.7 record none: ``warn`` says so), its
    model is a registered one whose parameters are valid, and it records the fingerprints of
    the run's files (a :class:`DataError` says what is wrong and to retrain)."""
    path = Path(run_dir) / "config.json"
    config = read_json(path)
    recorded = marked_checksums(run_dir).get("config.json")
    if recorded is None:
        if warn:
            log.warning(
                "%s: written before neucf 0.7, which does not fingerprint config.json (an edit to it goes unseen); "
                "train the run again to have it checked", path,
            )  # fmt: skip
    elif checksum(path) != recorded:
        raise DataError(
            f"{path}: changed since the run wrote it (its SHA-256 differs from the one {MARKER} records); "
            "restore it or train the run again"
        )
    name = config.get("model")
    try:
        if not isinstance(name, str):
            raise UsageError(f"model {name!r} is not a model name")
        params = config.get("params", {})
        if not isinstance(params, dict):
            raise UsageError("params is not a JSON object")
        task = config.get("task")
        if task is not None and not isinstance(task, str):
            raise UsageError(f"task {task!r} is not a task name")
        seed = config.get("seed", 0)
        model_class(name, task)(seed=seed, **params)  # the class checks names, types and ranges
    except UsageError as exc:
        raise DataError(f"{path}: damaged ({exc}); train the run again") from None
    files = config.get("files")
    if not isinstance(files, dict) or not isinstance(files.get("model.pt"), str):
        raise DataError(
            f"{path}: records no fingerprint of model.pt (written by neucf before 0.4.0, or damaged); "
            "train the run again with this version"
        )
    return config


def _check_fingerprint(run_dir: Path, name: str, config: dict) -> Path | None:
    """The run's file ``name`` when it is the one the run wrote (None when the run has none);
    a file changed, replaced, added or removed since is a :class:`DataError`."""
    path = run_dir / name
    expected = config["files"].get(name)
    if expected is None and not path.exists():
        return None
    if expected is None:
        raise DataError(f"{path}: not written by this run (config.json records no such file); remove it")
    if not path.is_file():
        raise DataError(f"{path}: missing; the run folder is incomplete, train it again")
    if checksum(path) != expected:
        raise DataError(
            f"{path}: changed since the run wrote it (its SHA-256 differs from the one config.json records); "
            "restore it or train the run again"
        )
    return path


def read_run(run_dir: str | Path) -> Recommender:
    """The model of a run folder, checked against the fingerprint the run recorded (a
    ``model.pt`` copied in from another run, of another kind or data, is a :class:`DataError`)."""
    run_dir = Path(run_dir)
    recover_output(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder; make one with neucf train --out")
    if not (run_dir / "model.pt").is_file():
        raise DataError(f"{run_dir}: not a run folder (no model.pt); make one with neucf train --out")
    config = read_run_config(run_dir)
    model = Recommender.load(_check_fingerprint(run_dir, "model.pt", config))
    if model.name != config["model"]:
        raise DataError(f"{run_dir}: model.pt holds a {model.name} model, config.json a {config['model']}")
    return model


def read_json(path: Path) -> dict:
    """A JSON object neucf wrote (metrics, config); a damaged one is a one-line data error."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; the folder is incomplete") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: damaged ({exc}); write the folder again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: damaged (not a JSON object); write the folder again")
    return data


#: fields of neucf's JSON outputs that hold numbers (or null where a figure is missing)
NUMBERS = frozenset({
    "rmse", "mae", "n", "n_fallback", "epochs", "best_epoch", "full_train_epochs", "train_seconds",
    "seconds_per_epoch", "epoch", "train_mse", "train_loss", "valid_rmse", "seconds", "k", "relevant", "users",
    "skipped", "precision", "recall", "ndcg", "map", "hit_rate", "folds", "rmse_mean", "rmse_std", "mae_mean",
    "mae_std", "train", "valid", "test", "seed", "valid_ndcg", "best_valid_ndcg", "negatives", "pairs",
    "ndcg_mean", "recall_mean", "precision_mean", "map_mean", "hit_rate_mean",
})  # fmt: skip


def check_numbers(data, path: Path, where: str = "") -> None:
    """Every field of ``data`` (nested objects and lists included) named in :data:`NUMBERS`
    holds a number or null (a :class:`DataError` names the first that does not).

    Examples:
        >>> check_numbers({"test": {"rmse": "abc"}}, Path("metrics.json"))
        Traceback (most recent call last):
        ...
        neucf.errors.DataError: metrics.json: damaged (test.rmse is 'abc', not a number); write the folder again
    """
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        at = f"{where}.{key}" if where else str(key)
        if isinstance(value, (dict, list)):
            check_numbers(value, path, at)
        elif (
            isinstance(key, str)
            and key in NUMBERS
            and (isinstance(value, bool) or not (value is None or isinstance(value, (int, float))))
        ):
            raise DataError(f"{path}: damaged ({at} is {value!r}, not a number); write the folder again")


def read_metrics(folder: str | Path) -> dict:
    """A run's ``metrics.json``, checked: its figures are numbers, its parts objects."""
    path = Path(folder) / "metrics.json"
    metrics = read_json(path)
    check_numbers(metrics, path)
    if not isinstance(metrics.get("test"), dict) or not isinstance(metrics.get("history", []), list):
        raise DataError(f"{path}: damaged (no test figures); write the folder again")
    return metrics


def run_part(run_dir: str | Path, part: str, model: Recommender) -> Ratings | None:
    """The run's ``test`` or ``valid`` part, read back from its CSV file as any input file is
    (a header naming every column, ratings inside the model's scale) and checked against the
    fingerprint the run recorded; None when the run has no such part."""
    run_dir = Path(run_dir)
    path = _check_fingerprint(run_dir, f"{part}.csv", read_run_config(run_dir, warn=False))
    if path is None:
        return None
    ratings = read_part_file(path, scale=None if model.scale is None else tuple(model.scale))
    if ratings.implicit != model.implicit:
        what = "interactions without ratings" if ratings.implicit else "ratings"
        kind = "interactions without ratings" if model.implicit else "ratings"
        raise DataError(f"{path}: holds {what}, but the run learnt from {kind}; restore it or train the run again")
    return ratings


#: above this many (user, item) pairs, ranking metrics are computed only when asked for
RANKING_LIMIT = 10**8


def wants_ranking(model: Recommender, asked: bool | None = None) -> bool:
    """Whether to compute ranking metrics: as ``asked`` (``--ranking/--no-ranking``), else when
    they are cheap enough (users x items <= 10^8)."""
    if asked is not None:
        return asked
    return int(model.known_users.sum()) * int(model.known_items.sum()) <= RANKING_LIMIT
