"""Model benchmark on MovieLens 100k: accuracy and speed of mean, bias, mf, gmf, mlp, neumf.

    python benchmarks/models.py --ml100k ../shared/datasets/ml-100k
        [--models mean,bias,mf,gmf,mlp,neumf] [--splits movielens,coverage] [--folds 1,2,3,4,5]
        [--memory] [--surprise] [--ml25m PATH/ratings.csv [--ml25m-batch 65536]]
        [--quick [--ml1m ../shared/datasets/ml-1m/ratings.csv]]

--quick is the check to run after any change to models or training: ml-100k u1 only, seed 0,
and, with --ml1m, ML-1M on a seeded random 90/10 split (validation carved from the 90% by the
model, as the published ML-1M figures do).

Prints a table (one row per model and split: RMSE, MAE, epochs, train seconds, seconds per
epoch; movielens rows average u1..u5) and writes benchmarks/results/models.json.
--memory also trains NeuMF for one epoch on a synthetic ML-1M-sized set and reports the peak
memory; --surprise times Surprise's tuned SVD on u1 (if scikit-surprise is installed) and
reports NeuMF's train-to-early-stop time divided by it, both measured in this one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from neucf.compare import shared_params
from neucf.datasets import LoaderOptions, filter_for_split, load
from neucf.models.base import parse_setting
from neucf.runs import fit_and_score, write_json
from neucf.splits import get_splitter, movielens_split, random_split

HERE = Path(__file__).resolve().parent


def folds_of(ratings, split: str, folds: list[int]):
    """(fold label, ratings, split): fixed partitions fold by fold, seeded splits once under seed 0."""
    splitter = get_splitter(split)
    r = filter_for_split(ratings, splitter)
    if splitter.fixed:
        for f in folds:
            yield f"u{f}", r, splitter.split(r, fold=f)
    else:
        yield "seed0", r, splitter.split(r, seed=0)


def ml1m_90_10(path: Path):
    """ML-1M as the published figures use it: a seeded random 90/10 train/test split."""
    r = load(data=path, options=LoaderOptions(scale=(1, 5)))
    yield "90/10", r, random_split(len(r), seed=0, fractions=(0.9, 0.0, 0.1))


def run(ratings, models, splits, folds, params=None, ml1m: Path | None = None) -> list[dict]:
    rows = []
    per_model = shared_params(models, params)
    sources = [(split, folds_of(ratings, split, folds)) for split in splits]
    if ml1m is not None:
        sources.append(("ml-1m", ml1m_90_10(ml1m)))
    for split, parts in sources:
        for fold, r, s in parts:
            train, valid, test = (r.subset(getattr(s, p)) for p in ("train", "valid", "test"))
            for name in models:
                _, m = fit_and_score(name, train, valid, test, **per_model[name])
                rows.append(
                    {
                        "model": name,
                        "split": split,
                        "fold": fold,
                        "rmse": m["test"]["rmse"],
                        "mae": m["test"]["mae"],
                        "epochs": m["epochs"],
                        "train_seconds": m["train_seconds"],
                        "seconds_per_epoch": m["seconds_per_epoch"],
                    }
                )
                print(
                    f"  {name:<6} {split:<9} {fold:<6} rmse {m['test']['rmse']:.4f}  mae {m['test']['mae']:.4f}  "
                    f"epochs {m['epochs']:>3}  {m['train_seconds']:6.1f} s",
                    flush=True,
                )
    return rows


def summarise(rows) -> list[dict]:
    out = []
    order = {name: k for k, name in enumerate(MODEL_ORDER)}
    keys = sorted({(r["split"], r["model"]) for r in rows}, key=lambda k: (k[0], order.get(k[1], len(order))))
    for split, model in keys:
        sel = [r for r in rows if r["split"] == split and r["model"] == model]
        spe = [r["seconds_per_epoch"] for r in sel if r["seconds_per_epoch"]]
        out.append(
            {
                "model": model,
                "split": split,
                "folds": len(sel),
                "rmse": statistics.mean(r["rmse"] for r in sel),
                "mae": statistics.mean(r["mae"] for r in sel),
                "epochs": statistics.mean(r["epochs"] for r in sel),
                "train_seconds": statistics.median(r["train_seconds"] for r in sel),
                "seconds_per_epoch": statistics.median(spe) if spe else None,
            }
        )
    return out


MODEL_ORDER = ["mean", "bias", "mf", "gmf", "mlp", "neumf"]


def memory_ml1m() -> dict:
    """Peak RSS of a process that builds a synthetic ML-1M-sized set and trains NeuMF one epoch."""
    code = """
import resource, json, time, numpy as np
from neucf.datasets import Ratings
from neucf.models import NeuMF
rng = np.random.default_rng(0)
n_users, n_items, n = 6040, 3706, 1_000_209
keys = np.unique(rng.integers(0, n_users, int(n * 1.1)) * n_items + np.minimum(rng.pareto(1.2, int(n * 1.1)) * 40, n_items - 1).astype(np.int64))
while len(keys) < n:
    keys = np.unique(np.concatenate([keys, rng.integers(0, n_users * n_items, n - len(keys) + 100)]))
keys = rng.choice(keys, n, replace=False)
r = Ratings.from_arrays(keys // n_items, keys % n_items, rng.integers(1, 6, n).astype(np.float32), scale=(1, 5))
t = time.perf_counter()
m = NeuMF(epochs=1).fit(r)
print(json.dumps({"ratings": n, "users": r.n_users, "items": r.n_items, "epoch_seconds": m.history.epochs[0].seconds,
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def epoch_ml25m(path: Path, batch_size: int) -> dict:
    """Load an ML-25M-sized ratings.csv and train NeuMF for one epoch; seconds and peak memory."""
    code = f"""
import resource, json, time
from neucf.datasets import load
from neucf.models import NeuMF
t = time.perf_counter()
r = load(data={str(path)!r})
loaded = time.perf_counter() - t
m = NeuMF(epochs=1, batch_size={batch_size}).fit(r)
print(json.dumps({{"ratings": len(r), "users": r.n_users, "items": r.n_items, "load_seconds": loaded,
                  "epoch_seconds": m.history.epochs[0].seconds, "batch_size": {batch_size},
                  "projection": [m.net.user_projection.mode, m.net.item_projection.mode],
                  "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def surprise_ratio(ratings) -> dict | None:
    try:
        from surprise import SVD, Dataset, Reader
    except ImportError:
        return None
    s = movielens_split(ratings.users, 1)
    train = ratings.subset(s.train)
    frame = train.to_frame()[["user", "item", "rating"]]
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()
    svd_times = []
    for _ in range(3):
        t = time.perf_counter()
        SVD(n_factors=100, n_epochs=50, lr_all=0.01, reg_all=0.1, random_state=0).fit(trainset)
        svd_times.append(time.perf_counter() - t)
    neumf_times = []
    for _ in range(3):
        _, m = fit_and_score("neumf", train, None, ratings.subset(s.test))
        neumf_times.append(m["train_seconds"])
    return {
        "surprise_svd_tuned_fit_seconds": statistics.median(svd_times),
        "neumf_train_to_early_stop_seconds": statistics.median(neumf_times),
        "ratio": statistics.median(neumf_times) / statistics.median(svd_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml100k", type=Path, default=os.environ.get("NEUCF_ML100K", "../shared/datasets/ml-100k"))
    parser.add_argument("--models", default=",".join(MODEL_ORDER))
    parser.add_argument("--splits", default="movielens,coverage")
    parser.add_argument("--folds", default="1,2,3,4,5")
    parser.add_argument("--params", default="", help="model parameters, e.g. input_dropout=0.3,mask_target=false")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--surprise", action="store_true")
    parser.add_argument(
        "--ml25m", type=Path, help="an ML-25M-sized ratings.csv (benchmarks/data_pipeline.py writes one)"
    )
    parser.add_argument("--ml25m-batch", type=int, default=65536)
    parser.add_argument("--quick", action="store_true", help="ml-100k u1 only (plus ML-1M 90/10 with --ml1m)")
    parser.add_argument("--ml1m", type=Path, help="ML-1M ratings.csv (../shared/datasets/ml-1m/ratings.csv)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.splits, args.folds = "movielens", "1"
    out = args.out or HERE / "results" / ("models_quick.json" if args.quick else "models.json")
    ratings = load(data=args.ml100k)
    params = dict(parse_setting(p) for p in args.params.split(",") if p)
    rows = run(
        ratings,
        [m for m in args.models.split(",") if m],
        args.splits.split(","),
        [int(f) for f in args.folds.split(",")],
        params,
        ml1m=args.ml1m,
    )
    table = summarise(rows) if rows else []
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": "python " + " ".join(sys.argv),
        "params": params,
        "summary": table,
        "runs": rows,
    }
    print(f"\n{'model':<7}{'split':<10}{'folds':>6}{'RMSE':>8}{'MAE':>8}{'epochs':>8}{'train s':>9}{'s/epoch':>9}")
    for t in table:
        spe = f"{t['seconds_per_epoch']:.3f}" if t["seconds_per_epoch"] else "-"
        print(
            f"{t['model']:<7}{t['split']:<10}{t['folds']:>6}{t['rmse']:>8.4f}{t['mae']:>8.4f}{t['epochs']:>8.1f}"
            f"{t['train_seconds']:>9.2f}{spe:>9}"
        )
    if args.memory:
        result["ml1m_sized_neumf_epoch"] = mem = memory_ml1m()
        print(
            f"\nML-1M-sized synthetic ({mem['ratings']:,} ratings): one NeuMF epoch {mem['epoch_seconds']:.1f} s, "
            f"peak memory {mem['peak_gb']:.2f} GB"
        )
    if args.surprise:
        ratio = surprise_ratio(ratings)
        result["surprise_u1"] = ratio
        if ratio is None:
            print("\nscikit-surprise is not installed: no speed ratio")
        else:
            print(
                f"\nu1: NeuMF train-to-early-stop {ratio['neumf_train_to_early_stop_seconds']:.2f} s / Surprise tuned SVD "
                f"fit {ratio['surprise_svd_tuned_fit_seconds']:.2f} s = {ratio['ratio']:.2f}"
            )
    if args.ml25m:
        result["ml25m_sized_neumf_epoch"] = big = epoch_ml25m(args.ml25m, args.ml25m_batch)
        print(
            f"\nML-25M-sized ({big['ratings']:,} ratings): load {big['load_seconds']:.1f} s, one NeuMF epoch "
            f"{big['epoch_seconds']:.0f} s at batch {big['batch_size']}, peak memory {big['peak_gb']:.2f} GB"
        )
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
