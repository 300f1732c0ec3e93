"""How a model is sanity-checked, as in the seed notebook's "Debugging the model" section.

- :func:`overfit`: on a tiny sample of the data, with every regulariser off, a working
  model must drive its training error to near zero.
- :func:`noise`: trained on random ratings of the same shape, sparsity and scale, a model
  must learn nothing (stay at the error of predicting the mean), while on the real data it
  must do clearly better: the data is informative and the model is not fooling itself.

Both return a :class:`Verdict` and draw their curves.

Examples:
    >>> verdict = overfit(ratings, model="neumf", seed=0)   # doctest: +SKIP
    >>> verdict.passed, verdict.line                        # doctest: +SKIP
    (True, 'PASS overfit: train RMSE 0.041 < 0.1 after 120 epochs ...')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .datasets import Ratings, filter_min_ratings
from .errors import DataError, UsageError
from .metrics import rmse
from .models import model_class
from .plots import learning_curve
from .splits import random_split


@dataclass
class Verdict:
    """A diagnostic's outcome: pass/fail, its one-line summary, figures and written files."""

    name: str
    passed: bool
    line: str
    figures: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def check_diagnosable(ratings: Ratings, model: str) -> None:
    """The checks measure rating error: they need a rating model and ratings (one line else)."""
    if "rating" not in model_class(model).tasks:
        raise UsageError(f"diagnose checks rating models by their rating error; {model} ranks items, so it has none")
    if ratings.implicit:
        raise UsageError(
            "diagnose needs ratings (it measures rating error); these are interactions without ratings: "
            "judge lists with neucf train --task ranking and neucf evaluate"
        )


def sample_users_and_items(ratings: Ratings, fraction: float, seed: int = 0) -> Ratings:
    """The seed's sampling: ratings whose user OR item is in a random ``fraction`` of each,
    then its min-3 item filter.

    Examples:
        >>> small = sample_users_and_items(ratings, 0.01)  # doctest: +SKIP
    """
    if not 0 < fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    users = rng.choice(ratings.n_users, max(1, int(ratings.n_users * fraction)), replace=False)
    items = rng.choice(ratings.n_items, max(1, int(ratings.n_items * fraction)), replace=False)
    keep = np.isin(ratings.users, users) | np.isin(ratings.items, items)
    sample = filter_min_ratings(ratings.subset(np.flatnonzero(keep)).compact(), min_item=3)
    if len(sample) < 10:
        raise DataError(f"a {fraction:g} sample holds only {len(sample)} ratings; raise --fraction")
    return sample


def overfit(
    ratings: Ratings,
    model: str = "neumf",
    fraction: float = 0.003,
    seed: int = 0,
    epochs: int = 400,
    threshold: float = 0.1,
    out: str | Path | None = None,
    **params,
) -> Verdict:
    """Train without regularisation on a small sample; PASS when train RMSE < ``threshold``.

    The target is not masked here: the check is whether the network can fit, and the seed
    ran it on the unmasked model.
    """
    check_diagnosable(ratings, model)
    cls = model_class(model)
    if cls.fitted_by != "gradient":
        raise UsageError(
            f"the {model} model is not trained by gradient ({cls.fitted_by.replace('_', ' ')}): it has no "
            "training to overfit; pick one that is (neumf, gmf, mlp, mf)"
        )
    sample = sample_users_and_items(ratings, fraction, seed)
    settings = {**cls.unregularised(), "epochs": epochs, "batch_size": 64, "lr": 5e-3, **params}
    fitted = cls(seed=seed, **settings)
    fitted.fit(sample, sample)
    train_rmse = fitted.evaluate(sample)["rmse"]
    passed = train_rmse < threshold
    history = fitted.history.rows()
    line = (
        f"{'PASS' if passed else 'FAIL'} overfit: {model} train RMSE {train_rmse:.4f} "
        f"{'<' if passed else '>='} {threshold} after {len(history)} epochs on {len(sample):,} ratings "
        f"({len(np.unique(sample.users))} users, {len(np.unique(sample.items))} items)"
    )
    verdict = Verdict(
        "overfit", passed, line, {"train_rmse": train_rmse, "ratings": len(sample), "epochs": len(history)}
    )
    if out is not None:
        verdict.files.append(
            learning_curve(history, Path(out) / "overfit.png", title=f"overfit check: {model} on a {fraction:g} sample")
        )
    return verdict


def noise_like(ratings: Ratings, seed: int = 0) -> Ratings:
    """Same users, items and rating positions, the ratings shuffled among them at random.

    Shuffling keeps the shape, the sparsity and the exact distribution of rating values
    (so both data sets have the same error when predicting their mean, and their RMSEs
    compare directly) while destroying any link between who rated what and how.
    """
    rng = np.random.default_rng(seed)
    return Ratings(
        users=ratings.users,
        items=ratings.items,
        ratings=rng.permutation(ratings.ratings),
        user_ids=ratings.user_ids,
        item_ids=ratings.item_ids,
        scale=ratings.scale,
    )


def noise(
    ratings: Ratings,
    model: str = "neumf",
    seed: int = 0,
    margin: float = 0.1,
    tolerance: float = 0.02,
    out: str | Path | None = None,
    **params,
) -> Verdict:
    """Train on the real ratings and on noise of the same shape, side by side.

    PASS when (a) the real data's best validation RMSE beats the noise's by at least
    ``margin`` and (b) the noise's stays within ``tolerance`` (relative) of the error of
    predicting the noise's training mean, i.e. the model learnt nothing from noise.
    """
    check_diagnosable(ratings, model)
    if len(ratings) < 10:
        raise DataError(
            f"the noise check needs at least 10 ratings (80% to train, 20% to validate), got {len(ratings)}"
        )
    split = random_split(len(ratings), seed=seed, fractions=(0.8, 0.2, 0.0))
    results, curves = {}, {}
    for name, data in (("real", ratings), ("noise", noise_like(ratings, seed))):
        train, valid = data.subset(split.train), data.subset(split.valid)
        fitted = model_class(model)(seed=seed, **params)
        fitted.fit(train, valid)
        best = fitted.evaluate(valid)["rmse"]
        mean_error = rmse(valid.ratings, np.full(len(valid), train.ratings.astype(np.float64).mean()))
        results[name] = {"valid_rmse": best, "mean_rmse": mean_error}
        curves[name] = fitted.history.rows() if fitted.history is not None else []
    real, fake = results["real"], results["noise"]
    beats = real["valid_rmse"] <= fake["valid_rmse"] - margin
    learns_nothing = fake["valid_rmse"] >= fake["mean_rmse"] * (1 - tolerance)
    passed = beats and learns_nothing
    line = (
        f"{'PASS' if passed else 'FAIL'} noise: {model} validation RMSE real {real['valid_rmse']:.4f} vs noise "
        f"{fake['valid_rmse']:.4f} (margin {fake['valid_rmse'] - real['valid_rmse']:.4f}, needs >= {margin}); "
        f"noise vs its mean predictor {fake['mean_rmse']:.4f} "
        f"({'learns nothing' if learns_nothing else 'fits noise: overfitting or leaking'})"
    )
    verdict = Verdict("noise", passed, line, results)
    if out is not None:
        verdict.files.append(learning_curve([], Path(out) / "noise.png", title=f"noise check: {model}", series=curves))
    return verdict
