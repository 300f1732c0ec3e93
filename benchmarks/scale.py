"""How training cost grows with the data: one table, all in one run.

Per dataset, NeuMF with its defaults (``--model`` for another): seconds per epoch (median),
seconds per epoch per million training ratings, epochs and seconds to early stop, peak
resident memory of the process that trained it, test RMSE, and Surprise's tuned SVD fit time
(100 factors, 50 epochs) on the same split where it runs (``--svd-up-to``). Datasets:

- ``u1``: ml-100k's u1 (``$NEUCF_ML100K``); ``ml1m``: ML-1M 90/10, seed 0 (``$NEUCF_ML1M``),
  as ``benchmarks/quality.py`` makes them;
- ``syn-1M``, ``syn-5M``, ``syn-25M``: MovieLens-shaped generated ratings (ML-25M's users and
  items per rating: 162,541 users and 59,047 items at 25M, scaled; rank-10 interaction,
  lognormal activity, Zipf popularity, half stars 0.5-5), 80/10/10.

Each dataset trains in its own process (so peak memory is its own). ``--epochs N`` caps the
epochs of the generated sets of 5M and more (default 2: their seconds per epoch, not their
time to early stop, is what the linear-cost target reads).

    python benchmarks/scale.py [--datasets u1,ml1m,syn-1M,syn-5M] [--epochs 2] [--model neumf] [--param k=v]
                               [--seeds 0,1,2]  # each dataset once per seed, then medians

Targets (issue 9): seconds per epoch per million ratings at 25M within 2x of the figure at 1M;
an ML-25M-sized epoch <= 300 s on a 2-core machine, peak memory <= 6 GB; NeuMF's time to early
stop <= Surprise's fit time on u1 and ML-1M.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = ["u1", "ml1m", "syn-1M", "syn-5M", "syn-25M"]


def _param(text: str) -> tuple[str, object]:
    from neucf.models.base import parse_setting  # neucf (and torch) only where a run needs them

    return parse_setting(text)


def movielens_shaped(n_ratings: int):
    """A :class:`SyntheticSpec` with ML-25M's users and items per rating, scaled to ``n_ratings``."""
    from neucf.datasets.synthetic import SyntheticSpec

    scale = n_ratings / 25_000_095
    return SyntheticSpec(
        n_users=max(100, round(162_541 * scale)),
        n_items=max(100, round(59_047 * scale)),
        n_ratings=n_ratings,
        rank=10,
        mean=3.5,
        user_std=0.4,
        item_std=0.5,
        factor_std=0.6,
        noise_std=0.8,
        scale=(0.5, 5.0),
        step=0.5,
        activity_sigma=1.0,
        popularity=1.0,
    )


def parts(name: str, seed: int):
    """(train, valid or None, test) of a named dataset."""
    if name.startswith("syn-"):
        from neucf.datasets.synthetic import generate_ratings
        from neucf.splits import random_split

        n = int(float(name[4:].rstrip("M")) * 1_000_000)
        r = generate_ratings(movielens_shaped(n), seed=seed)
        s = random_split(len(r), seed=seed, fractions=(0.8, 0.1, 0.1))
        return r.subset(s.train), r.subset(s.valid), r.subset(s.test)
    sys.path.insert(0, str(HERE))
    from quality import dataset

    ml1m = Path(os.environ.get("NEUCF_ML1M", "../shared/datasets/ml-1m"))
    ml1m = ml1m / "ratings.csv" if ml1m.is_dir() else ml1m
    return dataset(name, seed, Path(os.environ.get("NEUCF_ML100K", "../shared/datasets/ml-100k")), ml1m)


def one(name: str, model: str, epochs: int | None, svd: bool, seed: int, params: dict) -> dict:
    """Train on one dataset in this process; the row of the table."""
    import torch

    from neucf.cli import keep_freed_memory
    from neucf.runs import fit_and_score

    keep_freed_memory()  # as the command line does
    train, valid, test = parts(name, seed)
    params = params if epochs is None else {**params, "epochs": epochs}
    _, metrics = fit_and_score(model, train, valid, test, ranking=False, seed=seed, **params)
    per_epoch = metrics["seconds_per_epoch"]
    row = {
        "dataset": name,
        "model": model,
        "params": params,
        "train_ratings": len(train),
        "seconds_per_epoch": per_epoch,
        "seconds_per_epoch_per_million": per_epoch / (len(train) / 1e6) if per_epoch else None,
        "epochs": metrics["epochs"],
        "capped": epochs is not None,
        "train_seconds": metrics["train_seconds"],
        "rmse": metrics["test"]["rmse"],
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "device": "cuda" if torch.cuda.is_available() else "cpu",  # fit_and_score uses device auto
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1024**3 if torch.cuda.is_available() else None,
        "svd_seconds": None,
        "svd_rmse": None,
    }
    if svd:
        sys.path.insert(0, str(HERE))
        from quality import surprise_model

        try:
            result = surprise_model("svd", train, test)
            row["svd_seconds"], row["svd_rmse"] = result["train_seconds"], result["rmse"]
        except ImportError:
            pass  # Surprise is not a dependency: the column stays empty
    return row


MEDIAN_KEYS = ["seconds_per_epoch", "seconds_per_epoch_per_million", "epochs", "train_seconds", "rmse", "peak_gb",
               "svd_seconds", "svd_rmse"]  # fmt: skip


def _median_row(rows: list[dict]) -> dict:
    """One dataset's rows over seeds (at least one) as their medians, under seed ``median``;
    a figure some row lacks (no Surprise fit) stays empty."""
    median = {k: statistics.median(r[k] for r in rows) for k in MEDIAN_KEYS if None not in [r[k] for r in rows]}
    return {**rows[0], **{k: None for k in MEDIAN_KEYS}, **median, "seed": "median"}


def _gpu() -> str:
    """The visible CUDA GPU's name after a comma (for the report's machine line), else empty."""
    import torch

    return f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="u1,ml1m,syn-1M,syn-5M")
    parser.add_argument("--model", default="neumf")
    parser.add_argument("--epochs", type=int, default=2, help="epoch cap for generated sets of 5M and more")
    parser.add_argument("--svd-up-to", type=float, default=5e6, help="run Surprise up to this many ratings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", help="comma-separated seeds (overrides --seed): each dataset once per seed, then its medians"
    )
    parser.add_argument("--param", action="append", default=[], type=_param, help="model parameter key=value")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        name, epochs, svd = args.one.split(":")
        row = one(name, args.model, int(epochs) or None, svd == "1", args.seed, dict(args.param))
        print("ROW " + json.dumps({**row, "seed": args.seed}))
        return

    names = args.datasets.split(",")
    for name in names:
        if name not in ALL:
            sys.exit(f"unknown dataset {name!r}; choose from {', '.join(ALL)}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    rows = []
    for name, seed in [(name, seed) for name in names for seed in seeds]:
        size = float(name[4:].rstrip("M")) * 1e6 if name.startswith("syn-") else 1e6
        epochs = args.epochs if name.startswith("syn-") and size >= 5e6 else 0
        svd = size <= args.svd_up_to
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--one", f"{name}:{epochs}:{int(svd)}", "--model", args.model,
             "--seed", str(seed), *[f"--param={k}={v}" for k, v in args.param]], capture_output=True, text=True,
        )  # fmt: skip
        found = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
        if done.returncode or not found:
            print(f"{name}: failed ({done.returncode}): {done.stderr.strip()[-500:]}", file=sys.stderr)
            continue
        rows.append({**json.loads(found[0][4:]), "wall_seconds": time.perf_counter() - start})
        print(f"  {name} seed {seed} done ({rows[-1]['wall_seconds']:.0f} s)", file=sys.stderr)

    done_names = [name for name in names if any(r["dataset"] == name for r in rows)]
    medians = [_median_row([r for r in rows if r["dataset"] == n]) for n in done_names] if len(seeds) > 1 else []
    head = f"{'data':<8} {'train':>10} {'s/epoch':>8} {'s/ep/M':>7} {'epochs':>7} {'to stop s':>9} {'peak GB':>7} {'RMSE':>7} {'SVD s':>6} {'ratio':>6}"
    print(head)
    for r in rows + medians:
        ratio = r["train_seconds"] / r["svd_seconds"] if r["svd_seconds"] and not r["capped"] else None
        epochs = f"{r['epochs']}{'*' if r['capped'] else ''}"
        label = r["dataset"] if len(seeds) == 1 else f"{r['dataset']} {r['seed']}"
        print(
            f"{label:<8} {r['train_ratings']:>10,} {r['seconds_per_epoch']:>8.2f} "
            f"{r['seconds_per_epoch_per_million']:>7.2f} {epochs:>7} {r['train_seconds']:>9.1f} {r['peak_gb']:>7.2f} "
            f"{r['rmse']:>7.4f} {r['svd_seconds'] or float('nan'):>6.1f} {ratio or float('nan'):>6.2f}"
        )
    print("* epochs capped by --epochs: seconds per epoch only, no early stop")
    for r in rows:
        if r.get("gpu_peak_gb") is not None:
            print(f"{r['dataset']}: trained on {r['device']}, peak GPU memory {r['gpu_peak_gb']:.2f} GB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs" + _gpu(),
        "rows": rows,
        **({"medians": medians} if medians else {}),
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
