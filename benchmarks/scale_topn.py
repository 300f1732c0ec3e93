"""Lists at any catalogue size: neucf's default ranking path beside ``implicit``'s ALS and SANSA
on generated sets of 0.1M, 1M, 4M and 16M interactions with 10k, 10k, 100k and 1M items.

    python benchmarks/scale_topn.py [--sets 0.1m,1m,4m,16m] [--rows neucf,als32,als64,als128,sansa50]
        [--out benchmarks/results/scale_topn.json]

Data: :func:`neucf.datasets.synthetic.taste_group_frame` (the same rows as
``../shared/tools/synth_implicit.py``): ``0.1m`` is 10,000 users x 10,000 items (10 a user on
average; the issue's "small.csv"), ``1m`` 50,000 x 10,000 (25), ``4m`` 200,000 x 100,000
(25; the issue's "big.csv"), ``16m`` 1,000,000 x 1,000,000 (16). Split: ``user-ratio`` 80/10/10, seed 0 (``neucf data split --split user-ratio``).
Scored on a fixed sample of 10,000 test users (``numpy.random.default_rng(0).choice`` of the
sorted test user ids, without replacement): NDCG@10 (every test interaction relevant), full
ranking over every train item, train and valid items excluded.

Rows, each fitted in its own process (peak memory = that process's maximum resident set):
``neucf`` (the default for interactions, ``neucf train``'s model: the hybrid, which picks
its "will they pick it" model by the data's size; it chooses its settings on the valid part),
``implicit`` ALS with 32, 64 and 128 factors (regularisation 0.01, alpha 1, 15 iterations),
SANSA with 50 weights per item (l2 20, ICF factoriser, UMR inverter with 1 scan and 5
fine-tuning steps: the issue's setting). Figures: NDCG@10, fit seconds, peak memory, and every
user's top 10 in seconds, train and valid items excluded (neucf: :func:`neucf.lists.recommend_all`;
ALS: ``implicit``'s own batched ``recommend``; SANSA: its weights' scores, batch by batch,
through :func:`neucf.lists.top_rows`; not timed past 1e11 users x items, where each peer would
score every pair).
``implicit`` is the ``bench`` extra; SANSA needs ``apt-get install libsuitesparse-dev``, then
``pip install --no-build-isolation scikit-sparse==0.4.15`` and ``pip install sansa``. A row
whose package is missing is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from neucf.datasets import Ratings
from neucf.datasets.synthetic import taste_group_frame
from neucf.evaluation import lists_metrics
from neucf.lists import top_rows
from neucf.runs import write_json
from neucf.splits import user_ratio_split

ROOT = Path(__file__).resolve().parent
#: name -> (users, items, mean interactions a user)
SETS = {
    "0.1m": (10_000, 10_000, 10.0),
    "1m": (50_000, 10_000, 25.0),
    "4m": (200_000, 100_000, 25.0),
    "16m": (1_000_000, 1_000_000, 16.0),
}
ROWS = ("neucf", "als32", "als64", "als128", "sansa50")
SAMPLE = 10_000
#: past this many users x items scores, the peers' every-user lists (a dense score per pair)
#: are not timed: 1M x 1M would take hours
ALL_USERS_SCORES = 1e11


def prepare(name: str, folder: Path) -> Path:
    """The set's interactions and split, once, as index arrays in ``folder``."""
    path = folder / f"{name}.npz"
    if path.exists():
        return path
    users, items, mean = SETS[name]
    frame = taste_group_frame(users, items, mean, seed=0)
    ratings = Ratings.from_arrays(frame["user"].to_numpy(), frame["item"].to_numpy(), implicit=True,
                                  timestamps=frame["timestamp"].to_numpy())  # fmt: skip
    split = user_ratio_split(ratings.users, seed=0)
    np.savez(path, users=ratings.users, items=ratings.items, user_ids=ratings.user_ids, item_ids=ratings.item_ids,
             train=split.train, valid=split.valid, test=split.test)  # fmt: skip
    return path


def load(path: Path):
    data = np.load(path)
    ratings = Ratings.from_arrays(data["user_ids"][data["users"]], data["item_ids"][data["items"]], implicit=True)
    train, valid, test = (ratings.subset(data[p]) for p in ("train", "valid", "test"))
    return train, valid, test


def matrix(part: Ratings) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(part), np.float32), (part.users, part.items)), shape=(part.n_users, part.n_items))


def sample_pairs(test: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """The relevant (user, item) pairs of the fixed sample of test users."""
    users = np.unique(test.users)  # indices sort as the ids do: from_arrays orders its id table
    chosen = np.random.default_rng(0).choice(users, min(SAMPLE, len(users)), replace=False)
    keep = np.isin(test.users, chosen)
    return test.users[keep].astype(np.int64), test.items[keep].astype(np.int64)


def score(scores_of, train, valid, test) -> float:
    seen = (matrix(train) + matrix(valid)).tocsr()
    listable = np.bincount(train.items, minlength=train.n_items) > 0
    return float(lists_metrics(scores_of, seen, *sample_pairs(test), 10, listable)["ndcg"])


def all_users_seconds(scores_of, train, valid, batch: int = 1024) -> float:
    """Every user's top 10 over the train items, train and valid items excluded."""
    seen = (matrix(train) + matrix(valid)).tocsr()
    unlisted = np.bincount(train.items, minlength=train.n_items) == 0
    start = time.perf_counter()
    for first in range(0, train.n_users, batch):
        users = np.arange(first, min(first + batch, train.n_users))
        scores = np.asarray(scores_of(users), dtype=np.float32)
        scores[:, unlisted] = -np.inf
        rows = seen[users].tocoo()
        scores[rows.row, rows.col] = -np.inf
        top_rows(scores, 10)
    return time.perf_counter() - start


def run_row(row: str, path: Path) -> dict:
    """One row on one set, in this process."""
    train, valid, test = load(path)
    x = matrix(train)
    start = time.perf_counter()
    if row == "neucf":
        from neucf.lists import recommend_all
        from neucf.models import make_model

        model = make_model("hybrid", task="ranking", seed=0).fit(train, valid)
        fit = time.perf_counter() - start
        every = np.arange(train.n_items)

        def scores_of(users):
            sparse = model._sparse_scores(users)  # a sparse matrix where the model's scores are
            return model._score_users(users, every) if sparse is None else sparse

        ndcg = score(scores_of, train, valid, test)
        begin = time.perf_counter()
        recommend_all(model, k=10, exclude=valid, batch_users=1024)
        return {"ndcg": ndcg, "fit_seconds": fit, "all_users_seconds": time.perf_counter() - begin,
                "settings": json.dumps(model.get_params())}  # fmt: skip
    if row.startswith("als"):
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(factors=int(row[3:]), regularization=0.01, alpha=1.0, iterations=15,
                                        random_state=0)  # fmt: skip
        model.fit(x, show_progress=False)
        fit = time.perf_counter() - start
        u, i = np.asarray(model.user_factors), np.asarray(model.item_factors)
        ndcg = score(lambda users: u[users] @ i.T, train, valid, test)
        if train.n_users * train.n_items > ALL_USERS_SCORES:
            return {"ndcg": ndcg, "fit_seconds": fit, "all_users_seconds": None}
        seen = (matrix(train) + matrix(valid)).tocsr()
        begin = time.perf_counter()  # implicit's own batched top-k, seen items filtered
        model.recommend(np.arange(train.n_users), seen, N=10, filter_already_liked_items=True)
        return {"ndcg": ndcg, "fit_seconds": fit, "all_users_seconds": time.perf_counter() - begin}
    else:
        from sansa import SANSA, ICFGramianFactorizerConfig, SANSAConfig, UMRUnitLowerTriangleInverterConfig

        config = SANSAConfig(
            l2=20.0,
            weight_matrix_density=int(row[5:]) / train.n_items,
            gramian_factorizer_config=ICFGramianFactorizerConfig(),
            lower_triangle_inverter_config=UMRUnitLowerTriangleInverterConfig(scans=1, finetune_steps=5),
        )
        model = SANSA(config)
        model.fit(x)
        fit = time.perf_counter() - start
        w1, w2 = model.weights
        scores_of = lambda users: ((x[users] @ w1) @ w2).toarray()  # noqa: E731
    every = None if train.n_users * train.n_items > ALL_USERS_SCORES else all_users_seconds(scores_of, train, valid)
    return {"ndcg": score(scores_of, train, valid, test), "fit_seconds": fit, "all_users_seconds": every}


def available(row: str) -> bool:
    module = "implicit" if row.startswith("als") else "sansa" if row.startswith("sansa") else "neucf"
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def in_child(row: str, path: Path) -> dict:
    """``run_row`` in a fresh process; its peak resident memory from the kernel (wait4)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    child = subprocess.Popen([sys.executable, __file__, "--child", row, str(path), str(out)])
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return {"error": f"exit status {os.waitstatus_to_exitcode(status)}"}
    result = json.loads(out.read_text())
    out.unlink()
    return {**result, "peak_gb": usage.ru_maxrss * 1024 / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="0.1m,1m,4m,16m")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "neucf-scale-topn")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "scale_topn.json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        row, path, out = args.child
        write_json(Path(out), run_row(row, Path(path)))
        return
    args.data.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.sets.split(","):
        path = prepare(name, args.data)
        results[name] = {}
        for row in args.rows.split(","):
            if not available(row):
                print(f"{name} {row}: its package is not installed; left out", file=sys.stderr)
                continue
            print(f"{name} {row}...", file=sys.stderr, flush=True)
            results[name][row] = in_child(row, path)
            print(f"  {json.dumps(results[name][row])}", file=sys.stderr, flush=True)
    record = {
        "command": " ".join(["python", "benchmarks/scale_topn.py", *sys.argv[1:]]),
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.machine()})",
        "date": time.strftime("%Y-%m-%d"),
        "sets": {name: dict(zip(("users", "items", "mean_per_user"), SETS[name])) for name in results},
        "results": results,
    }
    print(table(results))
    write_json(args.out, record)
    print(f"wrote {args.out}", file=sys.stderr)


def table(results: dict) -> str:
    lines = ["| set | row | NDCG@10 | fit s | peak GB | all-users top-10 s |", "|---|---|---:|---:|---:|---:|"]
    for name, rows in results.items():
        for row, r in rows.items():
            if "error" in r:
                lines.append(f"| {name} | {row} | {r['error']} | | | |")
                continue
            every = "not timed" if r["all_users_seconds"] is None else f"{r['all_users_seconds']:.0f}"
            lines.append(
                f"| {name} | {row} | {r['ndcg']:.4f} | {r['fit_seconds']:.0f} | {r['peak_gb']:.1f} | {every} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
