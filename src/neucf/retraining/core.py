"""Retraining a run on what its server was told: the run's training data plus the feedback
store's events, less every erased user, with the run's settings (those it chose on validation
are chosen again), judged against the live run on each user's newest stored event.

The data: the run's training and validation rows, with the ids of every user erased in the
store left out; then every stored event, one replacing a row on the same user and item (the
validation row included). An event without a rating in a ranking run of rated data counts as
the top of the scale (a pick). Ids are matched as text.

The judgement: of every user with at least 2 stored events, the newest (by timestamp) is held
out of the new run's data. Both runs score those rows, the live run with the user's other
stored events folded in as its server serves them (merged into a trained user's history; the
items it was not trained on folded in from the stored events not held out, by a model that
folds items in): RMSE for a rating run (an item or user neither can score gets the mean), NDCG@10 of the top-10
list, the held-out item the relevant one, for a ranking run.

``retrain("runs/ml1m", "feedback.db", "runs/ml1m-2")`` is ``neucf retrain runs/ml1m --store
feedback.db --out runs/ml1m-2``.

Examples:
    >>> from neucf.datasets import Ratings
    >>> rows_of(Ratings.from_arrays([1, 2], [10, 10], [4.0, 5.0])).values.tolist()
    [['1', '10', 4.0], ['2', '10', 5.0]]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..attributes import read_folder_attributes
from ..datasets import Ratings
from ..datasets.ratings import id_text
from ..errors import DataError
from ..feedback import Event, FeedbackStore, erased_rows
from ..models import Recommender, make_model
from ..runs import environment, fit_and_score, read_run, read_run_config, run_part, write_run

log = logging.getLogger(__name__)

#: the list length of a ranking run's judgement
K = 10


@dataclass(frozen=True)
class Retraining:
    """The data of a retraining: the new run's ``train`` and ``valid`` parts, the ``held_out``
    events (each user's newest stored one), the ``others`` (each such user's other stored
    events, as the live run folds them in) and every stored event not held out (``kept``: a
    table user, item, rating, as the run reads them)."""

    train: Ratings
    valid: Ratings | None
    held_out: list[Event]
    others: dict[str, list[Event]]
    erased_rows: int
    events: int
    kept: pd.DataFrame


def rows_of(ratings: Ratings | None) -> pd.DataFrame:
    """``ratings`` as a table of text ids: user, item, rating."""
    if ratings is None or len(ratings) == 0:
        return pd.DataFrame({"user": [], "item": [], "rating": []})
    users = np.array([id_text(x) for x in ratings.user_ids], dtype=object)
    items = np.array([id_text(x) for x in ratings.item_ids], dtype=object)
    return pd.DataFrame({"user": users[ratings.users], "item": items[ratings.items], "rating": ratings.ratings})


def training_ratings(model: Recommender) -> Ratings:
    """The ratings ``model`` was trained on, with its id maps and scale."""
    users, items, values = model.train_
    return Ratings.from_arrays(
        model.user_ids[users], model.item_ids[items], values, scale=model.scale, implicit=bool(model.implicit)
    )


def retraining_data(model: Recommender, valid: Ratings | None, events: Sequence[Event], erased: set[str]) -> Retraining:
    """The parts of a retraining of ``model`` (see the module): its training ratings and its
    ``valid`` part less the ``erased`` users, with the stored ``events`` (each user's newest
    held out where they have 2 or more)."""
    train, check = rows_of(training_ratings(model)), rows_of(valid)
    gone = train["user"].isin(erased)
    train, check = train[~gone], check[~check["user"].isin(erased)]
    stored = pd.DataFrame(
        {"user": [e.user for e in events], "item": [e.item for e in events],
         "rating": [np.nan if e.rating is None else e.rating for e in events],
         "timestamp": [e.timestamp for e in events]}
    )  # fmt: skip
    if model.implicit:
        stored["rating"] = 1.0
    elif model.scale is not None:  # an interaction in a ranking run of rated data: a pick
        stored["rating"] = stored["rating"].fillna(float(model.scale[1]))
    stored = stored.reset_index().sort_values(["timestamp", "index"], kind="stable")
    counts = stored.groupby("user")["item"].transform("size")
    newest = ~stored.duplicated("user", keep="last") & (counts >= 2)
    held, kept = stored[newest], stored[~newest]
    # a stored event replaces the row on the same user and item, the held-out ones included
    keys = set(zip(stored["user"], stored["item"]))
    train = train[np.array([key not in keys for key in zip(train["user"], train["item"])], dtype=bool)]
    check = check[np.array([key not in keys for key in zip(check["user"], check["item"])], dtype=bool)]
    train = pd.concat([train, kept[["user", "item", "rating"]]], ignore_index=True)
    # one table, then its two parts: a model reads its validation part by the training part's
    # id maps (as a split's parts share them), never by maps of its own
    both = pd.concat([train, check[["user", "item", "rating"]]], ignore_index=True)
    whole = Ratings.from_arrays(
        both["user"].to_numpy(object), both["item"].to_numpy(object), both["rating"].to_numpy(np.float32),
        scale=model.scale, implicit=bool(model.implicit),
    )  # fmt: skip

    def event(row) -> Event:
        return Event(row.user, row.item, row.rating, row.timestamp)

    others: dict[str, list[Event]] = {}
    for row in kept[kept["user"].isin(set(held["user"]))].itertuples():
        others.setdefault(row.user, []).append(event(row))
    return Retraining(
        train=whole.subset(np.arange(len(train))),
        valid=whole.subset(np.arange(len(train), len(both))) if len(check) else None,
        held_out=[event(row) for row in held.itertuples()],
        others=others,
        erased_rows=int(gone.sum()),
        events=len(stored),
        kept=kept[["user", "item", "rating"]].reset_index(drop=True),
    )


def live_scores(model: Recommender, data: Retraining) -> dict:
    """The live run's score on the held-out events, each user's other stored events folded
    in as its server serves them (see the module), and the items it was not trained on folded
    in from the stored events that are not held out, as its server folds them (``model``
    takes them: :meth:`~neucf.models.Recommender.add_items`)."""
    if model.folds_items() and len(data.kept):
        model.add_items(interactions=data.kept.drop(columns="rating") if model.implicit else data.kept)
    return _scores(model, data, fold=True)


def new_scores(model: Recommender, data: Retraining) -> dict:
    """The new run's score on the held-out events (it learnt the users' other events)."""
    return _scores(model, data, fold=False)


def _scores(model: Recommender, data: Retraining, fold: bool) -> dict:
    from ..lists import predict_history, recommend_history, recommend_index

    users = {id_text(x): i for i, x in enumerate(model.user_ids)}
    items = {id_text(x): i for i, x in enumerate(model.item_ids)}
    scorable, listable, served = model.scorable("item"), model.listable(), model.scorable("user")
    truth, predicted, gains = [], [], []
    for e in data.held_out:
        u, i = users.get(e.user), items.get(e.item)
        known = u if u is not None and model.known_users[u] else None
        others = data.others.get(e.user, []) if fold else []
        read = [(items[x.item], x.rating) for x in others if x.item in items and model.known_items[items[x.item]]]
        seen = [item for item, _ in read]
        history = (np.array(seen, np.int64), np.array([rating for _, rating in read], np.float32))
        if model.task == "rating":
            truth.append(e.rating)
            if i is None or not scorable[i] or (known is None and not len(seen)):
                predicted.append(float(model.mean_))
            elif fold and model.can_fold_in and len(seen):
                predicted.append(float(predict_history(model, known, *history, np.array([i]))[0]))
            else:
                user = np.array([-1 if u is None else u])
                predicted.append(float(model._predict_mapped(user, np.array([i]), "fallback")[0][0]))
            continue
        if fold and model.can_fold_in and (len(seen) or known is not None):
            top, _ = recommend_history(model, known, *history, k=K)
        elif u is not None and served[u]:
            top, _ = recommend_index(model, u, K)
        else:
            top = np.zeros(0, np.int64)
        hit = np.flatnonzero(top == i) if i is not None and listable[i] else []
        gains.append(1.0 / np.log2(hit[0] + 2) if len(hit) else 0.0)
    if model.task == "rating":
        error = np.asarray(truth) - np.asarray(predicted)
        return {"rmse": float(np.sqrt(np.mean(error**2))) if len(error) else None, "n": len(error)}
    return {f"ndcg@{K}": float(np.mean(gains)) if gains else None, "n": len(gains)}


def retrain(
    run_dir: str | Path,
    store: str | FeedbackStore,
    out: str | Path,
    *,
    device: str = "auto",
    progress: bool = False,
    force: bool = False,
) -> tuple[Recommender, dict]:
    """Train ``run_dir``'s model again on its data and the stored feedback (see the module),
    write the new run to ``out`` as ``neucf train`` writes one, with the judgement of both runs
    in ``metrics.json`` under ``retrain``; returns the new model and its metrics."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    live = read_run(run_dir)
    valid, test = run_part(run_dir, "valid", live), run_part(run_dir, "test", live)
    feedback = store if isinstance(store, FeedbackStore) else FeedbackStore(store)
    erased = feedback.erased_users()
    data = retraining_data(live, valid, feedback.all_events(), erased)
    if not data.events:
        log.info("the store holds no event: the new run learns the run's data again")
    items, users = read_folder_attributes(run_dir)
    train = data.train.with_attributes(items, users)
    if test is not None:
        test = test.subset(np.flatnonzero(~erased_rows(test, erased)))
    if test is None or len(test) == 0:
        raise DataError(f"{run_dir}: the run has no test part left to score the new run on")
    model = make_model(config["model"], task=config.get("task"), seed=config.get("seed", 0), **config["params"])
    log.info(
        "retraining %s on %s rows (%s stored events, %s held out; %s rows of %s erased user(s) left out)",
        config["model"], f"{len(train):,}", f"{data.events:,}", f"{len(data.held_out):,}", f"{data.erased_rows:,}",
        len(erased),
    )  # fmt: skip
    start = time.perf_counter()
    fitted, metrics = fit_and_score(model, train, data.valid, test, device=device, progress=progress)
    metrics["retrain"] = {
        "from": str(run_dir.resolve()),
        "events": data.events,
        "held_out": len(data.held_out),
        "erased_users": len(erased),
        "new": new_scores(fitted, data),
        "live": live_scores(live, data),
        "seconds": time.perf_counter() - start,
    }
    run_config = {
        **{k: config[k] for k in ("model", "task", "seed") if k in config},
        "params": fitted.get_params(),
        "source": config.get("source"),
        "split": config.get("split"),
        "retrained": {"from": str(run_dir.resolve()), "store": repr(feedback), "events": data.events},
        "sizes": {"train": len(train), "valid": 0 if data.valid is None else len(data.valid), "test": len(test)},
        "runtime": {"device": device, "progress": progress, "world_size": 1},
        "environment": environment(),
    }
    write_run(out, fitted, metrics, run_config, test, data.valid, inputs=(run_dir,), force=force)
    return fitted, metrics
