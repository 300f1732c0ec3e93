"""Cold-start benchmark: each kind of test rating apart, on issue 36's cold split.

    python benchmarks/cold.py [--datasets ml1m,ml100k] [--out benchmarks/results/cold.json]

The split (``neucf.splits.cold_split``, ``--split cold``, seed 0): a fifth of the users and
then of the items are new; 80% of the old users' ratings of old items train, the rest and
every rating of a new user or item test. Attributes: the release's own
(``neucf.attributes.movielens_attributes``: genres and year for items; gender, age,
occupation and the zip code's first digit for users).

Figures, per test part of the split (``neucf.splits.cold_kinds``: ``evaluate`` tells the kinds
by what the model learnt from instead, so there an old item whose every rating went to test
counts as new):

- RMSE of the global, item and user means (each falling back to the global mean where it has
  no training rating), of NeuMF with its defaults without attributes (new users and items:
  the bias baseline), of NeuMF and the ``ensemble`` with the attributes (new users and items
  scored from them by the attribute towers, ``neucf.models.attribute_towers``), and of
  cmfrec's CMF with the attributes (a peer, from the ``bench`` extra: its
  best of two settings per part on the test part, which favours it) and cmfrec's
  ContentBased (factors linear in the attributes alone; at its defaults), with fit seconds;
- NDCG@10 ranking only the new items: candidates are the items new to the model that have a
  test rating; users are the old users with a new-items rating >= 4; relevant are those
  items; full ranking of the candidates. Rows: the attribute profile (a user's centred
  ratings spread over the genres of what they rated, cosine to each candidate's genres),
  ContentBased's scores and random order (the mean of 5 seeded shuffles), beside neucf's
  models (NeuMF without attributes cannot rank them: no figure).

``$NEUCF_ML1M`` and ``$NEUCF_ML100K`` name the releases' folders. Every figure comes from this
run: seed 0, the project's machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from neucf.attributes import Attributes, movielens_attributes
from neucf.datasets import Ratings, load
from neucf.metrics import ranking_metrics, rmse
from neucf.models import make_model
from neucf.runs import write_json
from neucf.splits import COLD_PARTS as PART_KINDS
from neucf.splits import cold_kinds, get_splitter

ROOT = Path(__file__).resolve().parent
DATASETS = {"ml1m": ("NEUCF_ML1M", "ratings.csv"), "ml100k": ("NEUCF_ML100K", "")}
#: neucf's models that read attributes, each fitted with the attributes at its defaults
NEUCF_MODELS = ("neumf", "ensemble")


def means(train: Ratings, test: Ratings) -> dict[str, np.ndarray]:
    """The global, item and user means of ``train`` for ``test``'s rows (raw ids matched)."""
    mean = float(train.ratings.mean())
    out = {}
    for side in ("item", "user"):
        index, ids = (train.items, train.item_ids) if side == "item" else (train.users, train.user_ids)
        sums = np.bincount(index, weights=train.ratings, minlength=len(ids))
        counts = np.bincount(index, minlength=len(ids))
        by_id = dict(zip(ids.tolist(), np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)))
        raw = (test.item_ids[test.items] if side == "item" else test.user_ids[test.users]).tolist()
        values = np.array([by_id.get(x, np.nan) for x in raw])
        out[f"{side} mean"] = np.where(np.isnan(values), mean, values)
    out["global mean"] = np.full(len(test), mean)
    return out


def per_kind(kinds: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {name: rmse(truth[kinds == k], predicted[kinds == k]) for k, name in enumerate(PART_KINDS)}


def new_item_task(kinds, test: Ratings, threshold: float = 4.0):
    """The users, candidate items (raw) and each user's relevant candidates of "ranking only the
    new items"."""
    users_raw, items_raw = test.user_ids[test.users], test.item_ids[test.items]
    candidates = np.unique(items_raw[(kinds == 1) | (kinds == 3)])
    liked = (kinds == 1) & (test.ratings >= threshold)
    relevant: dict = {}
    for user, item in zip(users_raw[liked].tolist(), items_raw[liked].tolist()):
        relevant.setdefault(user, []).append(item)
    return list(relevant), candidates, relevant


def ndcg_of(scores: np.ndarray, users: list, candidates: np.ndarray, relevant: dict, k: int = 10) -> float:
    """NDCG@k of full rankings of ``candidates`` by ``scores`` (users x candidates)."""
    top = candidates[np.argsort(-scores, axis=1, kind="stable")[:, :k]]
    return float(ranking_metrics(top, [np.asarray(relevant[u]) for u in users], k)["ndcg"])


def genre_profile_scores(train: Ratings, genres: Attributes, users: list, candidates: np.ndarray) -> np.ndarray:
    """Cosine of each user's centred-rating genre profile to each candidate's genres."""
    x = genres.features(train.item_ids).toarray()
    centred = (
        train.ratings
        - np.bincount(train.users, weights=train.ratings)[train.users] / np.bincount(train.users)[train.users]
    )
    profile = np.zeros((len(train.user_ids), x.shape[1]))
    np.add.at(profile, train.users, centred[:, None] * x[train.items])
    rows = np.searchsorted(train.user_ids, users)
    p = profile[rows]
    c = genres.features(candidates).toarray()
    norms = np.linalg.norm(p, axis=1, keepdims=True) * np.linalg.norm(c, axis=1)[None, :]
    return (p @ c.T) / np.where(norms > 0, norms, 1.0)


def cmfrec_features(table: Attributes, ids, column: str | None = None) -> pd.DataFrame:
    """The attribute features of ``ids`` as cmfrec reads them, with the ids in ``column`` when named."""
    frame = pd.DataFrame(table.features(ids).toarray()).add_prefix("f")
    if column is not None:
        frame.insert(0, column, ids)
    return frame


def cmfrec_ratings(train: Ratings) -> pd.DataFrame:
    """The training ratings as cmfrec reads them (raw ids)."""
    return pd.DataFrame({"UserId": train.user_ids[train.users], "ItemId": train.item_ids[train.items],
                         "Rating": train.ratings})  # fmt: skip


def cmfrec_rows(train: Ratings, test: Ratings, items: Attributes, users: Attributes | None, kinds) -> list[dict]:
    """cmfrec's CMF with the attributes (k 40, lambda 10 and 35: each part's best on the test
    part, which favours it); every user and item is given with its attributes, so CMF fits
    the new ones from them. Empty without cmfrec (the ``bench`` extra)."""
    try:
        import cmfrec
    except ImportError:
        print("  cmfrec is not installed: its rows are left out (pip install -e '.[bench]')")
        return []

    x = cmfrec_ratings(train)
    found = []
    for lam in (10.0, 35.0):
        start = time.perf_counter()
        model = cmfrec.CMF(k=40, lambda_=lam, verbose=False, random_state=0, nthreads=os.cpu_count())
        model.fit(x, U=None if users is None else cmfrec_features(users, users.ids, "UserId"),
                  I=cmfrec_features(items, items.ids, "ItemId"))  # fmt: skip
        seconds = time.perf_counter() - start
        predicted = model.predict(user=test.user_ids[test.users], item=test.item_ids[test.items])
        found.append((lam, per_kind(kinds, test.ratings, predicted), seconds))
    best = {name: min(f[1][name] for f in found) for name in PART_KINDS}
    return [{"method": "cmfrec CMF, attributes", **best,
             "fit_seconds": float(np.mean([f[2] for f in found]))}]  # fmt: skip


def content_based_rows(
    train: Ratings, test: Ratings, items: Attributes, users: Attributes | None, kinds, task
) -> tuple[list[dict], list[dict]]:
    """cmfrec's ContentBased at its defaults (k 20, lambda 100): a user's and an item's factors
    are linear in their attributes, so it scores every pair, new or not, from the attributes
    alone; its RMSE per part and NDCG@10 ranking only the new items (``task``: users,
    candidates, relevant). On ml-100k lambda 10, or user and item biases, diverged (RMSE 3.4
    to 3.7 on every part). Empty without cmfrec or without user attributes (it needs both)."""
    try:
        import cmfrec
    except ImportError:
        return [], []
    if users is None:
        return [], []
    train_users, train_items = np.unique(train.user_ids[train.users]), np.unique(train.item_ids[train.items])
    x = cmfrec_ratings(train)
    start = time.perf_counter()
    model = cmfrec.ContentBased(random_state=0, nthreads=os.cpu_count())
    model.fit(x, U=cmfrec_features(users, train_users, "UserId"), I=cmfrec_features(items, train_items, "ItemId"))
    seconds = time.perf_counter() - start
    pairs_u = cmfrec_features(users, test.user_ids[test.users]).to_numpy()
    predicted = np.asarray(model.predict_new(pairs_u, cmfrec_features(items, test.item_ids[test.items]).to_numpy()))
    listed, candidates, relevant = task
    asked = cmfrec_features(users, np.array(listed, dtype=object)).to_numpy()
    offered = cmfrec_features(items, candidates).to_numpy()
    scores = np.concatenate([  # 500 users at a time: a row of features per user and candidate
        np.asarray(model.predict_new(np.repeat(asked[k : k + 500], len(candidates), axis=0),
                                     np.tile(offered, (len(asked[k : k + 500]), 1)))).reshape(-1, len(candidates))
        for k in range(0, len(asked), 500)
    ])  # fmt: skip
    label = "cmfrec ContentBased, attributes"
    return ([{"method": label, **per_kind(kinds, test.ratings, predicted.astype(np.float64)), "fit_seconds": seconds}],
            [{"method": label, "ndcg_new_items": ndcg_of(scores, listed, candidates, relevant),
              "fit_seconds": seconds}])  # fmt: skip


def list_latency(model, users: Attributes, new_items: np.ndarray, repeats: int = 50) -> dict:
    """Median milliseconds of a top-10 list for a new user known only by attributes (each of
    ``repeats`` users' rows, over every item), and of an old user's list of the new items
    (``candidates``)."""
    rows = users.table.iloc[:repeats].to_dict("records")
    old = model.user_ids[np.flatnonzero(model.known_users)[:repeats]]
    timings = {"new_user_ms": [], "new_items_ms": []}
    for row, user in zip(rows, old):
        start = time.perf_counter()
        model.recommend(user_attributes=row, k=10)
        timings["new_user_ms"].append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        model.recommend(user, k=10, candidates=new_items)
        timings["new_items_ms"].append(1000 * (time.perf_counter() - start))
    return {key: float(np.median(values)) for key, values in timings.items()}


def run(name: str, env: str, file: str) -> dict:
    folder = os.environ.get(env)
    if not folder:
        print(f"{name}: ${env} is unset; skipped")
        return {}
    path = Path(folder) / file if file else Path(folder)
    ratings = load(data=path)
    split = get_splitter("cold").split(ratings, fold=1, seed=0)
    items, user_attributes = movielens_attributes(path)
    kinds = cold_kinds(ratings.users, ratings.items, seed=0)[split.test]
    sizes = {n: int((kinds == k).sum()) for k, n in enumerate(PART_KINDS)}
    bare = ratings.subset(split.train)
    ratings = ratings.with_attributes(items, user_attributes)
    train, test = ratings.subset(split.train), ratings.subset(split.test)
    print(f"{name}: {len(train):,} train, {len(test):,} test ratings")
    users, candidates, relevant = new_item_task(kinds, test)
    rows = [
        {"method": m, **per_kind(kinds, test.ratings, p), "fit_seconds": 0.0} for m, p in means(train, test).items()
    ]
    lists, latency = [], {}
    for model_name, task, data, label in [
        ("neumf", "rating", bare, "neucf neumf (no attributes)"),
        *[(m, "rating", train, f"neucf {m}, attributes") for m in NEUCF_MODELS],
        ("hybrid", "ranking", train, "neucf --task ranking (hybrid), attributes"),
    ]:
        start = time.perf_counter()
        model = make_model(model_name, seed=0, unknown="fallback", task=task).fit(data)
        seconds = time.perf_counter() - start
        if task == "rating":
            predicted = model.predict(test.user_ids[test.users], test.item_ids[test.items])
            rows.append({"method": label, **per_kind(kinds, test.ratings, predicted), "fit_seconds": seconds})
        if model_name == "neumf" and "user" in model.attribute_sides():
            latency = list_latency(model, user_attributes, candidates)
        ndcg = None
        if "item" in model.attribute_sides():
            start = time.perf_counter()
            scores = model.predict(np.repeat(np.array(users, dtype=object), len(candidates)),
                                   np.tile(candidates, len(users))).reshape(len(users), len(candidates))  # fmt: skip
            ndcg = ndcg_of(scores, users, candidates, relevant)
            seconds += time.perf_counter() - start
        lists.append({"method": label, "ndcg_new_items": ndcg, "fit_seconds": seconds})
    rows += cmfrec_rows(train, test, items, user_attributes, kinds)
    content_rmse, content_lists = content_based_rows(train, test, items, user_attributes, kinds,
                                                     (users, candidates, relevant))  # fmt: skip
    rows += content_rmse
    lists += content_lists
    genres = Attributes(items.ids, items.table[["genres"]], {"genres": "labels"})
    start = time.perf_counter()
    profile = ndcg_of(genre_profile_scores(train, genres, users, candidates), users, candidates, relevant)
    shuffles = [
        ndcg_of(np.random.default_rng(s).random((len(users), len(candidates))), users, candidates, relevant)
        for s in range(5)
    ]
    lists += [
        {"method": "attribute profile (genres)", "ndcg_new_items": profile, "fit_seconds": time.perf_counter() - start},
        {"method": "random order (mean of 5)", "ndcg_new_items": float(np.mean(shuffles)), "fit_seconds": 0.0},
    ]
    print(f"  {'method':<32}" + "".join(f"{k:>11}" for k in PART_KINDS) + f"{'fit s':>8}")
    for row in rows:
        print(
            f"  {row['method']:<32}" + "".join(f"{row[k]:>11.4f}" for k in PART_KINDS) + f"{row['fit_seconds']:>8.1f}"
        )
    print(f"  rows: {sizes}; NDCG@10 ranking only the {len(candidates):,} new items for {len(users):,} old users:")
    for row in lists:
        shown = "cannot rank them" if row["ndcg_new_items"] is None else f"{row['ndcg_new_items']:.4f}"
        print(f"  {row['method']:<30}{shown:>18}")
    print(f"  NeuMF with attributes, median list time: {latency}")
    return {"train": len(train), "test": len(test), "parts": sizes, "rmse": rows, "new_items": {
        "candidates": len(candidates), "users": len(users), "rows": lists}, "latency": latency}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml1m,ml100k")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "cold.json")
    args = parser.parse_args()
    results = {name: run(name, *DATASETS[name]) for name in args.datasets.split(",")}
    record = {
        "command": "python benchmarks/cold.py" + (f" --datasets {args.datasets}" if args.datasets != "ml1m,ml100k" else ""),
        "machine": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(), "seed": 0,
        "date": time.strftime("%Y-%m-%d"), "datasets": results,
    }  # fmt: skip
    write_json(args.out, record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
