"""A training run: fit a model on a split, score it, and keep everything in one folder.

A run folder holds ``config.json`` (data, split, model and training settings),
``model.pt``, ``learning_curve.png``, ``metrics.json`` and ``test.csv`` (the test part, raw
ids), so ``neucf evaluate`` can score the model again without the original data.

Example:
    >>> model, metrics = fit_and_score("neumf", train, valid, test, epochs=5)  # doctest: +SKIP
    >>> write_run("runs/neumf", model, metrics, config={"model": "neumf"})    # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .datasets import LoaderOptions, Ratings, read_ratings_file
from .errors import DataError, UsageError
from .files import atomic_write
from .models import Recommender, make_model
from .plots import learning_curve


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
    **params,
) -> tuple[Recommender, dict]:
    """Fit on ``train`` (``valid`` for early stopping), then score ``test``; returns (model, metrics).

    ``model`` is a model or a registered name (then ``params`` are its parameters).
    ``ranking``: add ranking metrics of top-10 lists as ``metrics["test"]["ranking"]``
    (default: when users x items <= 10^8, see :func:`wants_ranking`).
    """
    if isinstance(model, str):
        model = make_model(model, **params)
    valid = valid if valid is not None and len(valid) else None
    start = time.perf_counter()
    model.fit(train, valid, device=device, progress=progress, callbacks=callbacks)
    seconds = time.perf_counter() - start
    history = model.history
    epochs = history.rows() if history is not None else []
    if history is not None:
        valid_rmse = history.best_valid_rmse
    else:
        valid_rmse = model.evaluate(valid)["rmse"] if valid is not None else float("nan")
    metrics = {
        "model": model.name,
        "test": model.evaluate(test),
        "valid": {"rmse": valid_rmse},
        "train": model.evaluate(train),
        "epochs": len(epochs),
        "best_epoch": history.best_epoch if history is not None else 0,
        "full_train_epochs": history.full_train_epochs if history is not None else 0,
        "held_out_validation": bool(getattr(model, "held_out_validation", False)),
        "train_seconds": seconds,
        "seconds_per_epoch": float(np.median([e["seconds"] for e in epochs])) if epochs else None,
        "history": epochs,
        "sizes": {"train": len(train), "valid": 0 if valid is None else len(valid), "test": len(test)},
    }
    if wants_ranking(model, ranking):
        metrics["test"]["ranking"] = model.evaluate_ranking(test, k=10, exclude=valid)
    return model, metrics


def environment() -> dict:
    """The versions a run was made with (recorded in every run folder).

    Example:
        >>> sorted(environment())
        ['neucf', 'numpy', 'python', 'torch']
    """
    return {
        "neucf": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def write_json(path: Path, data) -> None:
    """Write JSON atomically (NaN written as null)."""
    with atomic_write(path, "w") as handle:
        json.dump(_jsonable(data), handle, indent=2)
        handle.write("\n")


def write_run(
    out: str | Path, model: Recommender, metrics: dict, config: dict, test: Ratings | None = None,
    valid: Ratings | None = None,
) -> Path:  # fmt: skip
    """Write a run folder (see the module docstring); ``valid.csv`` keeps the validation part,
    which recommendations exclude as they exclude the training ratings."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.pt")
    write_json(out / "config.json", config)
    write_json(out / "metrics.json", metrics)
    learning_curve(
        metrics["history"],
        out / "learning_curve.png",
        title=f"{model.name} learning curve",
        best_epoch=metrics.get("best_epoch") or None,
    )
    if test is not None:
        test.write_csv(out / "test.csv")
    if valid is not None and len(valid):
        valid.write_csv(out / "valid.csv")
    return out


def read_run(run_dir: str | Path) -> Recommender:
    """The model of a run folder (its other files are not needed to use it)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run folder; make one with neucf train --out")
    if not (run_dir / "model.pt").is_file():
        raise DataError(f"{run_dir}: not a run folder (no model.pt); make one with neucf train --out")
    return Recommender.load(run_dir / "model.pt")


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


def run_test_part(run_dir: str | Path) -> Ratings:
    """The run's test part, read back from its ``test.csv``."""
    path = Path(run_dir) / "test.csv"
    if not path.is_file():
        raise DataError(f"{run_dir}: has no test.csv to evaluate on")
    return read_ratings_file(path, LoaderOptions(sep=",", header=True))


def run_valid_part(run_dir: str | Path) -> Ratings | None:
    """The run's validation part (``valid.csv``), or None when its split had none."""
    path = Path(run_dir) / "valid.csv"
    return read_ratings_file(path, LoaderOptions(sep=",", header=True)) if path.is_file() else None


#: above this many (user, item) pairs, ranking metrics are computed only when asked for
RANKING_LIMIT = 10**8


def wants_ranking(model: Recommender, asked: bool | None = None) -> bool:
    """Whether to compute ranking metrics: as ``asked`` (``--ranking/--no-ranking``), else when
    they are cheap enough (users x items <= 10^8)."""
    if asked is not None:
        return asked
    return int(model.known_users.sum()) * int(model.known_items.sum()) <= RANKING_LIMIT
