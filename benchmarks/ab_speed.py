"""Speed A/B: train-to-early-stop time on ml-100k u1, another checkout against this one.

    git worktree add /tmp/old <commit>
    python benchmarks/ab_speed.py --old /tmp/old [--models neumf,gmf,mf] [--rounds 2]

Each round runs one process per checkout, alternating (the machine is noisy: compare in one
session); each process fits every model twice after importing what a first fit imports
(``torch._dynamo``, which Adam pulls in once per process), so the times are warm fits.
Prints the median time and the test RMSE per checkout and model, and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_FITS = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import torch._dynamo  # noqa: F401  the once-per-process import of Adam's first use, outside the timing
from neucf.datasets import filter_for_split, load
from neucf.models import make_model
from neucf.splits import get_splitter
splitter = get_splitter("movielens")
r = filter_for_split(load(data=os.environ["NEUCF_ML100K"]), splitter)
s = splitter.split(r, fold=1)
train, test = r.subset(s.train), r.subset(s.test)
out = []
for name in sys.argv[2].split(","):
    for _ in range(2):
        t = time.perf_counter()
        model = make_model(name).fit(train)
        out.append({"model": name, "seconds": time.perf_counter() - t, "rmse": model.evaluate(test)["rmse"]})
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="another checkout of neucf")
    parser.add_argument("--models", default="neumf,gmf,mf")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ab_speed.json")
    args = parser.parse_args()
    trees = {"old": args.old.resolve() / "src", "new": HERE.parent / "src"}
    rows = []
    for _ in range(args.rounds):
        for label, src in trees.items():
            done = subprocess.run([sys.executable, "-c", _FITS, str(src), args.models], capture_output=True,
                                  text=True, check=True, env=os.environ)  # fmt: skip
            rows += [{"tree": label, **row} for row in json.loads(done.stdout.strip().splitlines()[-1])]
    summary = []
    for name in args.models.split(","):
        for label in trees:
            sel = [r for r in rows if r["model"] == name and r["tree"] == label]
            summary.append({"model": name, "tree": label, "median_seconds": statistics.median(r["seconds"] for r in sel),
                            "rmse": sel[0]["rmse"], "fits": len(sel)})  # fmt: skip
            print(f"{name:<6} {label:<4} {summary[-1]['median_seconds']:6.2f} s  rmse {summary[-1]['rmse']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python benchmarks/ab_speed.py " + " ".join(sys.argv[1:]),
                                    "old": str(args.old), "rows": rows, "summary": summary}, indent=2))  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
