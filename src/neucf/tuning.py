"""Hyper-parameter search with Optuna: TPE sampling, median pruning per epoch, SQLite storage
so that an interrupted study resumes where it stopped.

Example:
    >>> best = tune(train, valid, "neumf", trials=20, storage="sqlite:///tune.db", study_name="neumf")  # doctest: +SKIP
    >>> best["params"]  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from pathlib import Path

from .datasets import Ratings
from .errors import UsageError
from .runs import make_model, write_json


def suggest(trial, model: str) -> dict:
    """The search space of each model (names are the models' parameters)."""
    if model == "bias":
        return {"reg_user": trial.suggest_float("reg_user", 0.0, 40.0), "reg_item": trial.suggest_float("reg_item", 0.0, 40.0)}
    params = {
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [256, 512, 1024, 2048, 4096]),
    }
    if model == "mf":
        params.update(factors=trial.suggest_int("factors", 8, 200, log=True),
                      l2=trial.suggest_float("l2", 1e-3, 0.5, log=True))
        return params
    params.update(
        factors=trial.suggest_int("factors", 8, 128, log=True),
        l2=trial.suggest_float("l2", 1e-8, 1e-3, log=True),
        input_dropout=trial.suggest_float("input_dropout", 0.0, 0.7),
        input_norm=trial.suggest_categorical("input_norm", [0.0, 0.5, 1.0]),
        mask_target=trial.suggest_categorical("mask_target", [True, False]),
    )
    if model in ("mlp", "neumf"):
        params.update(layers=trial.suggest_int("layers", 1, 5), dropout=trial.suggest_float("dropout", 0.0, 0.5))
    return params


def tune(train: Ratings, valid: Ratings | None, model: str, trials: int, storage: str, study_name: str,
         epochs: int | None = None, seed: int = 0, out: str | Path | None = None, say=None) -> dict:
    """Minimise validation RMSE over ``trials`` trials in all (completed trials of an earlier,
    interrupted run of the same study count). Returns and writes the best configuration,
    in the form ``neucf train --config`` reads."""
    try:
        import optuna
    except ImportError:
        raise UsageError("tuning needs optuna: pip install optuna") from None
    if model == "mean":
        raise UsageError("the mean model has no hyper-parameters to tune")
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, load_if_exists=True, direction="minimize",
                                    sampler=optuna.samplers.TPESampler(seed=seed),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3))
    except (ValueError, ImportError) as exc:
        raise UsageError(f"--storage {storage!r}: {exc}") from None
    if valid is None or len(valid) == 0:
        from .models.trained import held_out_mask
        from .training import TrainConfig

        held = held_out_mask(len(train), TrainConfig(seed=seed))
        train, valid = train.subset(~held), train.subset(held)
        say(f"no validation part: tuning against a seeded share of train ({len(valid):,} ratings)")
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    remaining = max(0, trials - len(finished))
    if finished:
        say(f"study {study_name!r} has {len(finished)} finished trials; running {remaining} more")

    def objective(trial):
        params = suggest(trial, model)
        if model != "bias":
            params.update(seed=seed, progress=False)
            if epochs:
                params["epochs"] = epochs
        fitted = make_model(model, **params)
        if model != "bias":
            def report(row):
                trial.report(row["valid_rmse"], row["epoch"] - 1)
                if trial.should_prune():
                    say(f"trial {trial.number}: pruned after epoch {row['epoch']} (validation RMSE {row['valid_rmse']:.4f})")
                    raise optuna.TrialPruned()

            fitted.epoch_callback = report
            fitted.fit(train, valid)
            score = fitted.history["best_valid_rmse"]
        else:
            fitted.fit(train, valid)
            score = fitted.evaluate(valid)["rmse"]
        say(f"trial {trial.number}: validation RMSE {score:.4f} {params}")
        return score

    if remaining:
        study.optimize(objective, n_trials=remaining, catch=())
    best_trial = study.best_trial
    params = dict(best_trial.params)
    if model != "bias":
        params.update(seed=seed)
        if epochs:
            params["epochs"] = epochs
    best = {"model": model, "params": params, "valid_rmse": best_trial.value, "trial": best_trial.number,
            "trials": len(study.trials)}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "best.json", best)
        frame = study.trials_dataframe()
        frame.to_csv(out / "trials.csv", index=False)
    return best
