"""Importing or using the library leaves the caller's process as it was; files get normal permissions."""

import os
import subprocess
import sys

from conftest import synthetic_ratings
from neucf.files import atomic_write

_PROBE = """
import json, sys, warnings
import matplotlib, matplotlib.figure, numpy, pandas, scipy.sparse, torch, tqdm, typer  # their own import-time filters
# read the raw setting: matplotlib.get_backend() would itself resolve it through pyplot
backend = lambda: repr(dict.__getitem__(matplotlib.rcParams, "backend"))
before = {"backend": backend(), "filters": len(warnings.filters)}
import neucf, neucf.runs, neucf.plots, neucf.models.layers, neucf.cli, neucf.compare, neucf.diagnostics
from neucf.models import GMF
from neucf.splits import random_split
sys.path.insert(0, sys.argv[1])
from conftest import synthetic_ratings
r = synthetic_ratings(n_users=20, n_items=15)
s = random_split(len(r), seed=0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    GMF(factors=2, epochs=1, batch_size=32).fit(r.subset(s.train), r.subset(s.valid))
from neucf.plots import learning_curve
import tempfile, pathlib
learning_curve([{"epoch": 1, "train_mse": 1.0, "valid_rmse": 1.0}], pathlib.Path(tempfile.mkdtemp()) / "c.png")
after = {"backend": backend(), "filters": len(warnings.filters)}
print(json.dumps({"before": before, "after": after, "pyplot": "matplotlib.pyplot" in sys.modules,
                  "warnings": [str(w.message) for w in caught]}))
"""


def test_importing_and_using_the_library_changes_no_global_state():
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    tests_dir = os.path.dirname(__file__)
    out = subprocess.run([sys.executable, "-c", _PROBE, tests_dir], capture_output=True, text=True, env=env, check=True)
    import json

    state = json.loads(out.stdout.strip().splitlines()[-1])
    assert state["before"] == state["after"]  # backend not switched, no process-wide warning filter added
    assert not state["pyplot"]  # figures never go through pyplot's global state
    assert not any("Sparse CSR" in w for w in state["warnings"]), state["warnings"]


def test_files_are_created_with_the_umask_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt", "w") as handle:
            handle.write("x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        with atomic_write(tmp_path / "b.txt", "w") as handle:
            handle.write("x")
        assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_a_run_folder_is_readable_by_others_under_a_usual_umask(tmp_path):
    from neucf.models import GlobalMean
    from neucf.runs import fit_and_score, write_run

    old = os.umask(0o022)
    try:
        r = synthetic_ratings(n_users=20, n_items=15)
        model, metrics = fit_and_score(GlobalMean(), r, None, r)
        out = write_run(tmp_path / "run", model, metrics, {"model": "mean"}, r)
        modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
        assert set(modes.values()) == {0o644}, modes
    finally:
        os.umask(old)
