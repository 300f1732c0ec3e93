"""New users and items without retraining: fold-in quality on ml-100k and speed on ML-1M.

    python benchmarks/foldin.py --ml100k ../shared/datasets/ml-100k --ml1m ../shared/datasets/ml-1m/ratings.csv

Quality (ml-100k, seed 0): 100 users are removed from the training data entirely; each is
folded in from a random half of their ratings and the other half is predicted. The
reference is the same model trained with those first halves in its training data, scored
on the same second halves. Target: RMSE within 0.02 of the reference, for NeuMF and mf.
Speed (ML-1M): fold-in plus top-10 for one new user with 20 ratings (median over 50 users,
target <= 20 ms) and every user's top 10 in one pass (target <= 60 s), with a NeuMF trained
for --ml1m-epochs epochs (speed does not depend on how well it is trained).
Items (``--parts items``; ml-100k, and ML-1M with --ml1m): a tenth of the items with at least
40 ratings (seeded) are removed from the training data; a NeuMF (defaults) is trained on the
rest; each removed item is folded in from k of its ratings (``add_items(interactions=...)``,
a seeded draw; k = 1, 3, 10, 30) and its other ratings are predicted. Against the baseline
``mean + b_u + b_i`` (b_i from the same k ratings: the fold with the network's term weighed 0)
and the unshrunk fold (weight 1); neucf weighs it k / (k + 20) (``FOLD_SHRINK``). Target: at
every k, no worse than either.
Prints a table and writes benchmarks/results/foldin.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from neucf.datasets import LoaderOptions, load
from neucf.metrics import rmse
from neucf.models import make_model
from neucf.runs import write_json

HERE = Path(__file__).resolve().parent


def quality(ratings, model: str, n_users: int = 100, seed: int = 0) -> dict:
    """RMSE on the held-back halves: folded in, and trained with the first halves."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.unique(ratings.users), n_users, replace=False)
    is_chosen = np.isin(ratings.users, chosen)
    first_half = np.zeros(len(ratings), dtype=bool)
    for u in chosen:
        mine = np.flatnonzero(ratings.users == u)
        first_half[rng.permutation(mine)[: len(mine) // 2]] = True
    others, history, target = ~is_chosen, is_chosen & first_half, is_chosen & ~first_half
    frame = ratings.to_frame()
    t = time.perf_counter()
    # items rated only by the removed users are unknown to this model: the baseline predicts them
    folded_model = make_model(model, seed=seed, unknown="fallback").fit(ratings.subset(np.flatnonzero(others)))
    fit_seconds = time.perf_counter() - t
    hist = frame[history][["user", "item", "rating"]]
    test = frame[target]
    t = time.perf_counter()
    folded = folded_model.predict(test["user"].to_numpy(), test["item"].to_numpy(), history=hist)
    fold_seconds = time.perf_counter() - t
    reference_model = make_model(model, seed=seed, unknown="fallback").fit(ratings.subset(np.flatnonzero(~target)))
    reference = reference_model.predict(test["user"].to_numpy(), test["item"].to_numpy())
    return {"model": model, "users": n_users, "history_ratings": int(history.sum()), "target_ratings": int(target.sum()),
            "rmse_folded_in": rmse(test["rating"], folded), "rmse_trained_with_history": rmse(test["rating"], reference),
            "fit_seconds": fit_seconds, "fold_in_seconds": fold_seconds}  # fmt: skip


def speed(path: Path, epochs: int, seed: int = 0) -> dict:
    ratings = load(data=path, options=LoaderOptions(scale=(1, 5)))
    t = time.perf_counter()
    model = make_model("neumf", epochs=epochs, seed=seed).fit(ratings)
    fit_seconds = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    times = []
    for _ in range(50):
        items = rng.choice(ratings.item_ids, 20, replace=False)
        history = pd.DataFrame({"user": "new", "item": items, "rating": rng.integers(1, 6, 20)})
        t = time.perf_counter()
        model.recommend("new", k=10, history=history)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    tops = model.recommend_all(k=10)
    all_seconds = time.perf_counter() - t
    return {"ratings": len(ratings), "users": ratings.n_users, "items": ratings.n_items, "epochs": epochs,
            "fit_seconds": fit_seconds, "fold_in_top10_ms_median": 1000 * statistics.median(times),
            "all_users_top10_seconds": all_seconds, "all_users_rows": len(tops)}  # fmt: skip


def items(ratings, name: str, seed: int = 0, ks=(1, 3, 10, 30)) -> dict:
    """RMSE on removed items' other ratings, folded in from k of theirs, by the weight of the
    network's term: 0 (the baseline), neucf's k / (k + FOLD_SHRINK), 1 (unshrunk)."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(ratings.items, minlength=ratings.n_items)
    eligible = np.flatnonzero(counts >= 40)
    removed = rng.choice(eligible, len(eligible) // 10, replace=False)
    out = np.isin(ratings.items, removed)
    t = time.perf_counter()
    model = make_model("neumf", seed=seed).fit(ratings.subset(np.flatnonzero(~out)))
    fit_seconds = time.perf_counter() - t
    frame = ratings.to_frame()[out]
    frame = frame[frame["user"].isin(model.user_ids[model.known_users])]  # folds count trained users
    order = frame.iloc[rng.permutation(len(frame))]
    rows = []
    for k in ks:
        first = order.groupby("item").head(k)
        rest = frame.drop(first.index)
        row = {"k": k, "items": int(first["item"].nunique()), "target_ratings": len(rest)}
        for label, shrink in (("baseline", float("inf")), ("neucf", type(model).FOLD_SHRINK), ("unshrunk", 0.0)):
            model.FOLD_SHRINK = shrink  # on the instance: the class keeps its own
            t = time.perf_counter()
            model.add_items(interactions=first[["user", "item", "rating"]])
            row[f"{label}_fold_seconds"] = time.perf_counter() - t
            row[f"rmse_{label}"] = rmse(rest["rating"], model.predict(rest["user"].to_numpy(), rest["item"].to_numpy()))
        rows.append(row)
    return {"data": name, "removed_items": len(removed), "fit_seconds": fit_seconds, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml100k", type=Path, default=os.environ.get("NEUCF_ML100K", "../shared/datasets/ml-100k"))
    parser.add_argument("--ml1m", type=Path, help="ML-1M ratings.csv for the speed figures")
    parser.add_argument("--ml1m-epochs", type=int, default=2)
    parser.add_argument("--parts", default="users,items", help="users (quality and speed), items")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "foldin.json")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "command": "python " + " ".join(sys.argv), "quality": []}  # fmt: skip
    ratings = load(data=args.ml100k)
    if "items" in parts:
        result["items"] = [items(ratings, "ml-100k")]
        if args.ml1m:
            result["items"].append(items(load(data=args.ml1m, options=LoaderOptions(scale=(1, 5))), "ML-1M"))
        print(f"{'items':<9}{'k':>3}{'rated':>8}{'baseline':>10}{'neucf':>8}{'unshrunk':>10}{'target':>8}")
        for x in result["items"]:
            for r in x["rows"]:
                met = r["rmse_neucf"] <= min(r["rmse_baseline"], r["rmse_unshrunk"])
                print(f"{x['data']:<9}{r['k']:>3}{r['target_ratings']:>8}{r['rmse_baseline']:>10.4f}"
                      f"{r['rmse_neucf']:>8.4f}{r['rmse_unshrunk']:>10.4f}{'met' if met else 'NOT met':>8}")  # fmt: skip
        if "users" not in parts:
            write_json(args.out, result)
            print(f"wrote {args.out}")
            return
    print(f"{'model':<7}{'folded-in RMSE':>16}{'trained-with RMSE':>19}{'gap':>8}{'target':>8}")
    for model in ("neumf", "mf"):
        q = quality(ratings, model)
        result["quality"].append(q)
        gap = q["rmse_folded_in"] - q["rmse_trained_with_history"]
        print(f"{model:<7}{q['rmse_folded_in']:>16.4f}{q['rmse_trained_with_history']:>19.4f}{gap:>8.4f}"
              f"{'met' if gap <= 0.02 else 'NOT met':>8}", flush=True)  # fmt: skip
    if args.ml1m:
        s = result["speed_ml1m"] = speed(args.ml1m, args.ml1m_epochs)
        print(f"\nML-1M: fold-in + top-10 for a new user with 20 ratings {s['fold_in_top10_ms_median']:.1f} ms median "
              f"(target 20 ms); every user's top 10: {s['all_users_top10_seconds']:.1f} s (target 60 s)")  # fmt: skip
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
