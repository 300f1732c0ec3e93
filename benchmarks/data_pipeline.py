"""Data-layer benchmark: load + min-3 filter + coverage split of ml-100k, and the peak memory
of loading a synthetic ratings file the size of MovieLens 25M.

    python benchmarks/data_pipeline.py --ml100k ../shared/datasets/ml-100k [--runs 7] [--skip-25m]
    python benchmarks/data_pipeline.py --write-25m /tmp/ml-25m-synthetic/ratings.csv  (input for models.py --ml25m)

Prints a table and writes benchmarks/results/data_pipeline.json. Targets: under 1 s for the
ml-100k pipeline; under 3 GB peak for the 25M load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from neucf.datasets import filter_min_ratings, load
from neucf.splits import coverage_split

HERE = Path(__file__).resolve().parent


def time_ml100k(path: Path, runs: int) -> dict:
    stages = {"load": [], "filter": [], "split": [], "total": []}
    for _ in range(runs):
        t0 = time.perf_counter()
        r = load(data=path)
        t1 = time.perf_counter()
        r = filter_min_ratings(r, min_item=3)
        t2 = time.perf_counter()
        coverage_split(r.users, r.items, seed=0)
        t3 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            stages[key].append(value)
    return {key: statistics.median(values) for key, values in stages.items()}


def write_synthetic_25m(path: Path, n=25_000_095, n_users=162_541, n_items=59_047, seed=0) -> None:
    """A ratings.csv in ML-25M's format and size: header userId,movieId,rating,timestamp, half
    stars, no repeated (user, item) pair, rows sorted by user then item as in the release."""
    rng = np.random.default_rng(seed)
    # skewed item popularity (a few items get most ratings), as in MovieLens
    m = int(n * 1.2)
    item_draw = np.minimum(rng.pareto(1.2, m) * 200, n_items - 1).astype(np.int64)
    keys = np.unique(rng.integers(0, n_users, m) * n_items + item_draw)
    while len(keys) < n:
        extra = rng.integers(0, n_users * n_items, n - len(keys) + 1000)
        keys = np.unique(np.concatenate([keys, extra]))
    keys = np.sort(rng.choice(keys, n, replace=False))
    users, items = keys // n_items + 1, (keys % n_items) * 3 + 1  # MovieLens item ids are sparse
    chunk = 2_500_000
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("userId,movieId,rating,timestamp\n")
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            m = sl.stop - sl.start
            frame = pd.DataFrame(
                {
                    "u": users[sl],
                    "i": items[sl],
                    "r": rng.integers(1, 11, m) / 2,
                    "t": rng.integers(789652009, 1574327703, m),
                }
            )
            frame.to_csv(handle, header=False, index=False)


def peak_memory_25m(workdir: Path) -> dict:
    csv = workdir / "ml-25m-synthetic" / "ratings.csv"
    csv.parent.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    write_synthetic_25m(csv)
    made = time.perf_counter() - t0
    code = (
        "import time, resource, json, sys\n"
        "from neucf.datasets import load, LoaderOptions\n"
        "t = time.perf_counter()\n"
        f"r = load(data={str(csv)!r})\n"
        "m = r.user_item; mt = r.item_user\n"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'ratings': len(r), 'users': r.n_users,"
        " 'items': r.n_items, 'peak_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    result["file_gb"] = csv.stat().st_size / 2**30
    result["make_seconds"] = made
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml100k", type=Path, default=os.environ.get("NEUCF_ML100K", "../shared/datasets/ml-100k"))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--skip-25m", action="store_true")
    parser.add_argument(
        "--write-25m", type=Path, help="only write the synthetic ML-25M-sized ratings.csv here, and stop"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "data_pipeline.json")
    args = parser.parse_args()
    if args.write_25m:
        write_synthetic_25m(args.write_25m)
        print(f"wrote {args.write_25m}")
        return

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": "python " + " ".join(sys.argv),
        "runs": args.runs,
        "ml100k_median_seconds": time_ml100k(args.ml100k, args.runs),
    }
    if not args.skip_25m:
        with tempfile.TemporaryDirectory() as tmp:
            result["synthetic_25m_load"] = peak_memory_25m(Path(tmp))

    print(f"{'stage':<28}{'median s':>10}")
    for stage, seconds in result["ml100k_median_seconds"].items():
        print(f"{'ml-100k ' + stage:<28}{seconds:>10.4f}")
    if "synthetic_25m_load" in result:
        m = result["synthetic_25m_load"]
        print(f"{'25M load (s)':<28}{m['seconds']:>10.1f}")
        print(f"{'25M load peak memory (GB)':<28}{m['peak_gb']:>10.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
