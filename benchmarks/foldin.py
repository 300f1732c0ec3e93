"""New users without retraining: fold-in quality on ml-100k and speed on ML-1M.

    python benchmarks/foldin.py --ml100k ../shared/datasets/ml-100k --ml1m ../shared/datasets/ml-1m/ratings.csv

Quality (ml-100k, seed 0): 100 users are removed from the training data entirely; each is
folded in from a random half of their ratings and the other half is predicted. The
reference is the same model trained with those first halves in its training data, scored
on the same second halves. Target: RMSE within 0.02 of the reference, for NeuMF and mf.
Speed (ML-1M): fold-in plus top-10 for one new user with 20 ratings (median over 50 users,
target <= 20 ms) and every user's top 10 in one pass (target <= 60 s), with a NeuMF trained
for --ml1m-epochs epochs (speed does not depend on how well it is trained).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml100k", type=Path, default=os.environ.get("NEUCF_ML100K", "../shared/datasets/ml-100k"))
    parser.add_argument("--ml1m", type=Path, help="ML-1M ratings.csv for the speed figures")
    parser.add_argument("--ml1m-epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "foldin.json")
    args = parser.parse_args()
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
              "command": "python " + " ".join(sys.argv), "quality": []}  # fmt: skip
    ratings = load(data=args.ml100k)
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
