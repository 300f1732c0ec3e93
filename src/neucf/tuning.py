"""Hyper-parameter search with Optuna: TPE sampling, median pruning per epoch, SQLite storage
so that an interrupted study resumes where it stopped.

Each model class supplies its own search space (:meth:`~neucf.models.Recommender.search_space`).

Examples:
    >>> best = tune(train, valid, "neumf", trials=20, storage="sqlite:///tune.db", study_name="neumf")  # doctest: +SKIP
    >>> best["params"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from .datasets import Ratings
from .errors import DataError, Interrupted, UsageError, on_stop_signals
from .files import atomic_write, check_database_url, mark_output
from .models import model_class
from .runs import write_json
from .splits import held_out_mask

log = logging.getLogger(__name__)


def check_storage(storage: str) -> None:
    """Refuse, before any work, a ``--storage`` that is not a database URL or whose SQLite
    file lies inside a neucf output folder or cannot be created.

    Examples:
        >>> check_storage("tune.db")
        Traceback (most recent call last):
        ...
        neucf.errors.UsageError: --storage 'tune.db' is not a database URL; use e.g. sqlite:///tune.db
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(storage)
    except (ArgumentError, ValueError):
        raise UsageError(f"--storage {storage!r} is not a database URL; use e.g. sqlite:///tune.db") from None
    check_database_url(url, f"--storage {storage!r}")


#: the tables of an Optuna database (RDB storage): one missing is a damaged study, which Optuna
#: would re-create empty in silence, counting trials without values as finished
OPTUNA_TABLES = frozenset({
    "studies", "study_directions", "study_user_attributes", "study_system_attributes", "trials", "trial_params",
    "trial_values", "trial_intermediate_values", "trial_user_attributes", "trial_system_attributes", "version_info",
})  # fmt: skip


def _sqlite_file(storage: str) -> Path | None:
    """The database file of a SQLite storage URL, or None (another database, or in memory)."""
    from sqlalchemy.engine import make_url

    url = make_url(storage)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _check_tables(storage: str) -> None:
    """Refuse a database that holds some of Optuna's tables but not all of them."""
    import sqlalchemy

    path = _sqlite_file(storage)
    if path is not None and not path.exists():
        return
    engine = sqlalchemy.create_engine(storage)
    try:
        for wait in (0.2, 0.4, 0.8, 1.6, 0):  # another process may be making the tables right now
            tables = set(sqlalchemy.inspect(engine).get_table_names())
            missing = OPTUNA_TABLES - tables
            if not (tables & OPTUNA_TABLES and missing):
                return
            time.sleep(wait)
    finally:
        engine.dispose()
    if missing:
        raise DataError(
            f"--storage {storage}: a damaged Optuna database (no {', '.join(sorted(missing))} table); "
            "use a new --storage, or restore the database from a copy"
        )


def _database_error(storage: str, exc: Exception) -> DataError:
    """One line for an error of the database itself (full disk, locked, read-only), without
    SQLAlchemy's statement and links."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return DataError(
        f"--storage {storage}: the database failed ({reason}); free space or repair it, then run again to resume"
    )


#: what ``tune`` can optimise: RMSE on the validation part, or a ranking metric of top-10 lists
METRICS = ("rmse", "ndcg", "recall", "precision", "map", "hit_rate")


def _study_record(model: str, split: dict | None, epochs: int | None, metric: str, direction: str, task: str) -> dict:
    return {"model": model, "split": split, "epochs": epochs, "metric": metric, "direction": direction, "task": task}


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
    split: dict | None = None,
    metric: str = "rmse",
    task: str = "rating",
) -> dict:
    """Minimise validation RMSE over ``trials`` trials in all (finished trials of an earlier,
    interrupted run of the same study count). Returns and writes the best configuration,
    in the form ``neucf train --config`` reads.

    The study records its model, split, epochs and metric, and a resumed study with other
    ones is refused. A resumed study continues its sampler: the sampler is seeded with
    ``seed`` plus the number of trials already run, so new trials draw new configurations.
    On an interrupt (:class:`~neucf.errors.Interrupted`) the finished trials are still written.
    ``metric``: ``rmse`` (minimised, with median pruning per epoch) or a ranking metric of
    top-10 lists on the validation part (``ndcg``, ``recall``, ``precision``, ``map``,
    ``hit_rate``: maximised, no pruning).
    """
    try:
        import optuna
    except ImportError:
        raise UsageError("tuning needs optuna: pip install optuna") from None
    cls = model_class(model, task)
    try:  # a FixedTrial without values raises as soon as the space asks for one
        cls.search_space(optuna.trial.FixedTrial({}))
    except ValueError:
        pass
    else:
        raise UsageError(f"the {model} model has no hyper-parameters to tune")
    if epochs is not None and epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {epochs}")
    if metric not in METRICS:
        raise UsageError(f"--metric {metric!r}: choose one of {', '.join(METRICS)}")
    fixed = {"epochs": epochs} if epochs and "epochs" in cls.parameters() else {}
    check_storage(storage)
    from sqlalchemy.exc import SQLAlchemyError

    database = _sqlite_file(storage)
    new_database = database is not None and not database.exists()
    verbosity = optuna.logging.get_verbosity()
    # Optuna logs every failed or interrupted trial with its traceback; neucf says it in one line
    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    try:
        _check_tables(storage)
        return _tune(optuna, cls, train, valid, model, trials, storage, study_name, fixed, epochs, seed, out, split,
                     metric, task)  # fmt: skip
    except SQLAlchemyError as exc:
        raise _database_error(storage, exc) from None
    except BaseException:
        if new_database:  # a database this run made and could not fill: nothing of it is worth keeping
            _remove_if_empty(optuna, storage, database)
        raise
    finally:
        optuna.logging.set_verbosity(verbosity)


def _remove_if_empty(optuna, storage: str, database: Path) -> None:
    """Remove a database that holds no finished trial (one this run made, then failed)."""
    try:
        studies = optuna.get_all_study_summaries(storage)
        empty = all(s.n_trials == 0 or s.best_trial is None for s in studies)
    except Exception:  # unreadable: certainly no finished trial to keep
        empty = True
    if empty:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)


def _tune(optuna, cls, train, valid, model, trials, storage, study_name, fixed, epochs, seed, out, split, metric, task):
    direction = "minimize" if metric == "rmse" else "maximize"
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(5):
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=study_name,
                load_if_exists=True,
                direction=direction,
                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
            )
            break
        except (IntegrityError, OperationalError, optuna.exceptions.DuplicatedStudyError) as exc:
            # another process is making the same database or study at this moment: it wins, we load
            busy = not isinstance(exc, OperationalError) or any(w in str(exc) for w in ("locked", "already exists"))
            if not busy or attempt == 4:
                raise _database_error(storage, exc) from None
            time.sleep(0.2 * (attempt + 1))
        except Exception as exc:  # SQLAlchemy and Optuna raise many kinds for a bad database
            raise _database_error(storage, exc) from None
    record = _study_record(model, split, epochs, metric, direction, task)
    if study.trials:
        stored = {k: study.user_attrs.get(k) for k in record}
        if stored != record:
            differ = ", ".join(f"{k} {stored[k]!r} (asked: {record[k]!r})" for k in record if stored[k] != record[k])
            raise UsageError(
                f"study {study_name!r} in {storage} was run with {differ}; resume it with the same settings "
                "or give a new --study-name"
            )
    if any(t.state == optuna.trial.TrialState.COMPLETE and t.value is None for t in study.trials):
        raise DataError(
            f"study {study_name!r} in {storage} is damaged (finished trials without values); "
            "use a new --study-name or --storage"
        )
    _fail_abandoned(optuna, study)
    for key, value in record.items():
        study.set_user_attr(key, value)
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    if valid is None or len(valid) == 0:
        held = held_out_mask(len(train), seed)  # the rating models' 5%
        train, valid = train.subset(~held), train.subset(held)
        log.info("no validation part: tuning against a seeded share of train (%s ratings)", f"{len(valid):,}")
    done_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    counted = (*done_states, optuna.trial.TrialState.RUNNING)
    finished = [t for t in study.trials if t.state in done_states]
    remaining = max(0, trials - len(finished))
    if finished:
        log.info("study %r has %d finished trials; running %d more", study_name, len(finished), remaining)
    running, stop = [], []

    def objective(trial):
        running[:] = [trial]
        if stop:
            raise Interrupted(stop[0])
        trial.set_user_attr("process", _process())
        # another process may resume the same study: trial numbers are handed out in order by
        # the database, so a trial after the study's total (finished or under way) is surplus
        before = [t for t in study.get_trials(deepcopy=False, states=counted) if t.number < trial.number]
        if len(before) >= trials:
            study.stop()
            raise _Surplus()
        params = {**cls.search_space(trial), **fixed}
        trial.set_user_attr("params", params)
        fitted = cls(seed=seed, task=task, **params)

        def report(stats):
            if stop:  # raised here, inside the trial, never inside Optuna's bookkeeping
                raise Interrupted(stop[0])
            if metric != "rmse":
                return
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
        if metric == "rmse":
            history = fitted.history
            score = history.best_valid_rmse if history is not None else fitted.evaluate(valid)["rmse"]
        else:
            score = fitted.evaluate_ranking(valid, k=10)[metric]
        log.info("trial %d: validation %s %.4f %s", trial.number, metric, score, params)
        return score

    try:

        def note(signum, frame):
            # noted, and the trial raises at its next epoch: raising from inside Optuna's
            # storage writes would leave its bookkeeping broken
            stop.append(signum)
            study.stop()

        with on_stop_signals(note):
            if remaining:
                study.optimize(objective, n_trials=remaining, catch=(_Surplus,))
        if stop:
            raise Interrupted(stop[0])
    except Interrupted as exc:
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        for trial in running:  # the trial cut short: failed, not left running in the storage
            if states.get(trial.number) == optuna.trial.TrialState.RUNNING:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if complete and out is not None:
            _write(study, model, out)
            exc.written = f"wrote best.json and trials.csv for the {len(complete)} finished trials in {out}"
        raise
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise DataError(f"no trial of study {study_name!r} finished (all were pruned or failed); run more trials")
    return _write(study, model, out)


class _Surplus(Exception):
    """A trial begun after the study reached its total (another process resumed it too): it
    does not run, and is recorded as failed."""


def _process() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _fail_abandoned(optuna, study) -> None:
    """Mark failed the trials left running by a process of this machine that is gone (killed
    with -9), so that they do not count toward the study's total as if under way."""
    import socket

    from .files import process_alive

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        where, _, pid = str(trial.user_attrs.get("process", "")).rpartition(":")
        if where == host and pid.isdigit() and not process_alive(int(pid)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _write(study, model: str, out) -> dict:
    """The best trial as ``neucf train --config`` reads it (its own parameters, epochs included)."""
    best_trial = study.best_trial
    metric = study.user_attrs.get("metric", "rmse")
    best = {
        "model": model,
        "task": study.user_attrs.get("task", "rating"),
        "params": best_trial.user_attrs.get("params", best_trial.params),
        "metric": metric,
        f"valid_{metric}": best_trial.value,
        "trial": best_trial.number,
        "trials": sum(t.state.is_finished() and t.state.name != "FAIL" for t in study.trials),
    }
    if out is not None:
        out = Path(out)
        made = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "best.json", best)
            with atomic_write(out / "trials.csv", "w") as handle:
                study.trials_dataframe().to_csv(handle, index=False)
            mark_output(out, "tune")
        except BaseException:
            if made:  # a folder made here and left half-written (a full disk) is removed
                shutil.rmtree(out, ignore_errors=True)
            raise
    return best
