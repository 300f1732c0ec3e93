"""Hyper-parameter search with Optuna: TPE sampling, median pruning per epoch, SQLite storage
so that an interrupted study resumes where it stopped.

Each model class supplies its own search space (:meth:`~neucf.models.Recommender.search_space`).

Example:
    >>> best = tune(train, valid, "neumf", trials=20, storage="sqlite:///tune.db", study_name="neumf")  # doctest: +SKIP
    >>> best["params"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

from .datasets import Ratings
from .errors import UsageError
from .models import model_class
from .models.torch_estimator import held_out_mask
from .runs import write_json
from .training import TrainConfig

log = logging.getLogger(__name__)


def tune(
    train: Ratings,
    valid: Ratings | None,
    model: str,
    trials: int,
    storage: str,
    study_name: str,
    epochs: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
) -> dict:
    """Minimise validation RMSE over ``trials`` trials in all (completed trials of an earlier,
    interrupted run of the same study count). Returns and writes the best configuration,
    in the form ``neucf train --config`` reads."""
    try:
        import optuna
    except ImportError:
        raise UsageError("tuning needs optuna: pip install optuna") from None
    cls = model_class(model)
    probe = optuna.trial.FixedTrial({})
    try:
        cls.search_space(probe)
    except ValueError:
        pass  # a space with parameters: FixedTrial has no values for them
    else:
        raise UsageError(f"the {model} model has no hyper-parameters to tune")
    fixed = {"epochs": epochs} if epochs and "epochs" in cls.parameters() else {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            load_if_exists=True,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
        )
    except (ValueError, ImportError) as exc:
        raise UsageError(f"--storage {storage!r}: {exc}") from None
    if valid is None or len(valid) == 0:
        held = held_out_mask(len(train), TrainConfig(seed=seed))
        train, valid = train.subset(~held), train.subset(held)
        log.info("no validation part: tuning against a seeded share of train (%s ratings)", f"{len(valid):,}")
    finished = [
        t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    remaining = max(0, trials - len(finished))
    if finished:
        log.info("study %r has %d finished trials; running %d more", study_name, len(finished), remaining)

    def objective(trial):
        params = {**cls.search_space(trial), **fixed}
        fitted = cls(seed=seed, **params)

        def report(stats):
            trial.report(stats.valid_rmse, stats.epoch - 1)
            if trial.should_prune():
                log.info(
                    "trial %d: pruned after epoch %d (validation RMSE %.4f)",
                    trial.number,
                    stats.epoch,
                    stats.valid_rmse,
                )
                raise optuna.TrialPruned()

        fitted.fit(train, valid, callbacks=[report])
        history = fitted.history
        score = history.best_valid_rmse if history is not None else fitted.evaluate(valid)["rmse"]
        log.info("trial %d: validation RMSE %.4f %s", trial.number, score, params)
        return score

    if remaining:
        study.optimize(objective, n_trials=remaining, catch=())
    best_trial = study.best_trial
    best = {
        "model": model,
        "params": {**best_trial.params, **fixed},
        "valid_rmse": best_trial.value,
        "trial": best_trial.number,
        "trials": len(study.trials),
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "best.json", best)
        study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    return best
