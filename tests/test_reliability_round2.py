"""The second reliability probe's cases (issue 27), each reproduced and checked fixed.

CLI cases run in-process through ``main``; signals, full disks (a file-size limit) and the
multi-process launcher run the real ``neucf`` in subprocesses. The serving cases are in
``test_serving.py``.
"""

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line, rewrite_config, run, synthetic_ratings, write_ratings
from neucf.cli import main
from neucf.errors import DataError, StopSignals, on_stop_signals
from neucf.files import output_dir, output_kind


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_ratings(folder / "small.csv", synthetic_ratings(n_users=60, n_items=40))
    return folder


@pytest.fixture(scope="module")
def run_dir(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "gmf"
    assert main(["train", "--data", str(data / "small.csv"), "--model", "gmf", "--epochs", "2", "--out", str(out)]) == 0
    return out


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def neucf(*args, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "neucf", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)  # fmt: skip


# ---- data loss: outputs inside neucf folders -------------------------------------------------
@pytest.mark.parametrize("name", ["test.csv", "metrics.json", "config.json", "model.pt", "new.csv"])
def test_outputs_inside_a_run_folder_are_refused(run_dir, data, capsys, name):
    before = snapshot(run_dir)
    code, _, err = run(capsys, "recommend", run_dir, "--all-users", "--out", run_dir / name)
    assert code == 2 and one_line(err) and "inside the neucf run folder" in err, err
    pairs = data / "pairs.csv"
    pairs.write_text("user,item\n" + ",".join((data / "small.csv").read_text().splitlines()[1].split(",")[:2]) + "\n")
    code, _, err = run(capsys, "predict", run_dir, "--pairs", pairs, "--out", run_dir / name)
    assert code == 2 and one_line(err) and "inside the neucf run folder" in err, err
    assert snapshot(run_dir) == before


def test_outputs_inside_another_neucf_folder_are_refused(run_dir, data, tmp_path, capsys):
    split = tmp_path / "split"
    assert run(capsys, "data", "split", "--data", data / "small.csv", "--split", "random", "--out", split)[0] == 0
    before = snapshot(split)
    code, _, err = run(capsys, "recommend", run_dir, "--all-users", "--out", split / "train.csv")
    assert code == 2 and one_line(err) and "inside the neucf split folder" in err
    assert snapshot(split) == before
    code, _, _ = run(capsys, "recommend", run_dir, "--all-users", "--out", tmp_path / "recs.csv")
    assert code == 0 and (tmp_path / "recs.csv").read_text().startswith("user,item,rank,prediction")


# ---- silently wrong: tables, part files, thresholds, fingerprints ------------------------------
@pytest.mark.parametrize(
    "flag, content, message",
    [
        ("--pairs", "user,item\n196,242,5\n302,1\n", "line 2: 3 fields, but the header names 2"),
        ("--pairs", "user,item\n1,2\n3\n", "line 3: 1 field, but the header names 2"),
        ("--pairs", "user,item,user\n1,2,3\n", "names user twice"),
        ("--pairs", "item,rating\n1,2\n", "missing user"),
        ("--history", "user,item,rating\nnew,1\n", "line 2: 2 fields, but the header names 3"),
    ],
)
def test_pairs_and_histories_with_the_wrong_fields_are_one_line(run_dir, tmp_path, capsys, flag, content, message):
    path = tmp_path / "table.csv"
    path.write_text(content)
    pairs = ["--pairs", path] if flag == "--pairs" else ["--pairs", tmp_path / "p.csv"]
    (tmp_path / "p.csv").write_text("user,item\nnew,1\n")
    extra = ["--history", path] if flag == "--history" else []
    code, out, err = run(capsys, "predict", run_dir, *pairs, *extra)
    assert code == 1 and one_line(err) and message in err and out == "", err


@pytest.mark.parametrize(
    "content, message",
    [
        ("user,item,timestamp\n1,100,880000000\n", "hold ratings but valid.csv only interactions"),
        ("a,b,c,d\n1,100,4,0\n", "'a' is not a column neucf knows"),
        ("1,100,4\n2,101,3\n", "expected the header user,item,rating"),
        ("user,item,rating,rating\n1,100,4,3\n", "names rating twice"),
    ],
)
def test_part_files_need_a_header_naming_their_columns(data, tmp_path, capsys, content, message):
    split = tmp_path / "split"
    assert run(capsys, "data", "split", "--data", data / "small.csv", "--split", "random", "--out", split)[0] == 0
    (split / "valid.csv").write_text(content)
    code, _, err = run(capsys, "train", "--split-dir", split, "--model", "mean", "--out", tmp_path / "r")
    assert code == 1 and one_line(err) and "valid.csv" in err and message in err, err


def test_a_run_part_is_read_inside_the_models_scale(run_dir):
    from neucf.datasets import read_part_file

    with pytest.raises(DataError, match="line 2: rating 9 is outside the scale 1..5"):
        read_part_file(b"user,item,rating\n1,100,9\n", scale=(1.0, 5.0))


def test_an_edited_or_copied_run_file_is_found(run_dir, data, tmp_path, capsys):
    import shutil

    other = tmp_path / "bias"
    assert run(capsys, "train", "--data", data / "small.csv", "--model", "bias", "--out", other)[0] == 0
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.copy(other / "model.pt", copy / "model.pt")  # a model of another kind, in a gmf run
    code, _, err = run(capsys, "evaluate", copy)
    assert code == 1 and one_line(err) and "model.pt: changed since the run wrote it" in err
    shutil.copy(run_dir / "model.pt", copy / "model.pt")
    lines = (copy / "test.csv").read_text().splitlines()
    (copy / "test.csv").write_text("\n".join(["user,item,timestamp", *lines[1:]]) + "\n")  # the header edited
    code, _, err = run(capsys, "evaluate", copy)
    assert code == 1 and one_line(err) and "test.csv: changed since the run wrote it" in err
    (copy / "test.csv").write_text("\n".join(lines) + "\n")
    assert run(capsys, "evaluate", copy)[0] == 0
    (copy / "valid.csv").unlink()
    code, _, err = run(capsys, "evaluate", copy)
    assert code == 1 and one_line(err) and "valid.csv: missing; the run folder is incomplete" in err
    (copy / "test.csv").rename(copy / "valid.csv")
    config = json.loads((copy / "config.json").read_text())
    del config["files"]["valid.csv"], config["files"]["test.csv"]
    rewrite_config(copy, config)
    code, _, err = run(capsys, "recommend", copy, "--all-users", "--out", tmp_path / "recs.csv")
    assert code == 1 and one_line(err) and "valid.csv: not written by this run" in err


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf", "100", "0"])
def test_relevance_thresholds_outside_the_scale_are_usage_errors(run_dir, capsys, threshold):
    code, out, err = run(capsys, "evaluate", run_dir, f"--relevant={threshold}")
    assert code == 2 and one_line(err) and "outside the run's rating scale 1..5" in err and out == ""


def test_json_output_never_holds_nan_or_infinity(run_dir, capsys):
    from neucf.cli.runs import echo_json

    echo_json({"ranking": {"ndcg": float("nan"), "users": np.int64(0)}, "rmse": float("inf")})
    assert json.loads(capsys.readouterr().out) == {"ranking": {"ndcg": None, "users": 0}, "rmse": None}
    code, out, _ = run(capsys, "evaluate", run_dir, "--relevant", "5")
    assert code == 0
    json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON output"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c, m: c["params"].update(factors="lots"), "factors must be a whole number"),
        (lambda c, m: c.update(model="nosuch"), "unknown model 'nosuch'"),
        (lambda c, m: m["test"].update(rmse="abc"), "test.rmse is 'abc', not a number"),
        (lambda c, m: m.update(model="bias"), "mixes two runs"),
        (lambda c, m: m.update(history="x"), "no test figures"),
    ],
)
def test_report_checks_what_it_reads(run_dir, tmp_path, capsys, edit, message):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    config, metrics = (json.loads((copy / f).read_text()) for f in ("config.json", "metrics.json"))
    edit(config, metrics)
    rewrite_config(copy, config)
    (copy / "metrics.json").write_text(json.dumps(metrics))
    code, _, err = run(capsys, "report", copy)
    assert code == 1 and one_line(err) and message in err, err
    assert not (copy / "report.html").exists()


def test_empty_columns_flag_is_an_error(data, capsys):
    code, _, err = run(capsys, "data", "describe", "--data", data / "small.csv", "--columns", "")
    assert code == 2 and one_line(err) and "--columns names nothing" in err


def test_the_default_split_follows_the_data_and_the_configs_seed_is_used(data, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", data / "small.csv", "--model", "mean", "--out", tmp_path / "a")
    assert code == 0 and "the random split, the default for this data" in err
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["split"]["name"] == "random" and config["seed"] == 0
    (tmp_path / "c.json").write_text(json.dumps({"model": "mean", "params": {}, "seed": 7}))
    assert run(capsys, "train", "--data", data / "small.csv", "--config", tmp_path / "c.json",
               "--out", tmp_path / "b")[0] == 0  # fmt: skip
    assert json.loads((tmp_path / "b" / "config.json").read_text())["seed"] == 7
    assert run(capsys, "train", "--data", data / "small.csv", "--config", tmp_path / "c.json", "--seed", "3",
               "--out", tmp_path / "b")[0] == 0  # fmt: skip
    assert json.loads((tmp_path / "b" / "config.json").read_text())["seed"] == 3


def test_the_ml100k_release_keeps_its_own_folds(ml100k, tmp_path, capsys):
    code, _, _ = run(capsys, "train", "--data", ml100k, "--model", "mean", "--out", tmp_path / "r")
    assert code == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["split"]["name"] == "movielens"


# ---- tune: concurrent resumers and damaged studies --------------------------------------------
def test_two_processes_resuming_one_study_stop_at_its_total(data, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 't.db'}"
    args = ["tune", "--data", data / "small.csv", "--model", "bias", "--storage", storage, "--study-name", "s"]
    assert main([str(a) for a in args] + ["--trials", "1", "--out", str(tmp_path / "first")]) == 0
    procs = [neucf(*args, "--trials", "9", "--out", tmp_path / f"out{k}") for k in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    trials = optuna.load_study(study_name="s", storage=storage).trials
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 9, [t.state.name for t in trials]


def test_a_damaged_study_is_refused(data, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 't.db'}"
    args = ["tune", "--data", data / "small.csv", "--model", "bias", "--storage", storage, "--study-name", "s",
            "--out", tmp_path / "t"]  # fmt: skip
    assert run(capsys, *args, "--trials", "2")[0] == 0
    with sqlite3.connect(tmp_path / "t.db") as db:
        db.execute("DROP TABLE trial_values")
    code, _, err = run(capsys, *args, "--trials", "4")
    assert code == 1 and one_line(err) and "damaged Optuna database (no trial_values table)" in err
    with sqlite3.connect(tmp_path / "t.db") as db:  # Optuna did not re-create it
        assert "trial_values" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master")}


# ---- signals after the work, full disks, folders moved aside ----------------------------------
def test_a_signal_after_the_commit_is_noted_not_raised(tmp_path):
    stop = StopSignals()
    with on_stop_signals(stop):
        with output_dir(tmp_path / "run", "run", on_commit=lambda: (stop.done("written"), os.kill(os.getpid(), 15))):
            (Path(tmp_path / "run").parent / "x").exists()
        time.sleep(0.05)  # the held signal is handled once the commit is over
    assert stop.late == signal.SIGTERM and output_kind(tmp_path / "run") == "run"


@pytest.mark.parametrize("sig, word", [(signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupted")])
def test_a_signal_once_the_run_folder_is_complete_exits_0_and_says_so(data, tmp_path, sig, word):
    out = tmp_path / "run"
    proc = neucf("train", "--data", data / "small.csv", "--model", "bias", "--out", out)
    while not (out / ".neucf-output").exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err and "error:" not in err, err
    if f"{word} after the work was done" in err:  # else the command had exited before the signal came
        assert err.strip().splitlines()[-1] == f"{word} after the work was done: {out} was written"
    assert output_kind(out) == "run"


def fsize_limited(limit: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


def test_a_full_disk_leaves_no_diagnosis_folder_and_no_database(data, tmp_path):
    proc = neucf("diagnose", "noise", "--data", data / "small.csv", "--model", "bias", "--out", tmp_path / "d",
                 preexec_fn=fsize_limited(3000))  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and one_line(err) and "File too large" in err, err
    proc = neucf("tune", "--data", data / "small.csv", "--model", "bias", "--trials", "2",
                 "--storage", f"sqlite:///{tmp_path / 't.db'}", "--study-name", "s", "--out", tmp_path / "t",
                 preexec_fn=fsize_limited(30000))  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and one_line(err) and "the database failed" in err and "[SQL" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_run_moved_aside_by_a_killed_write_is_put_back_when_read(run_dir, tmp_path, capsys):
    import shutil

    aside = tmp_path / ".run.old-neucf-999999-abc"  # pid 999999: not alive
    shutil.copytree(run_dir, aside / "previous")
    code, out, err = run(capsys, "evaluate", tmp_path / "run")
    assert code == 0 and "put back the previous folder" in err and json.loads(out)["n"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ---- the multi-process launcher ------------------------------------------------------------------
TRAIN = ["--model", "neumf", "--factors", "8", "--layers", "2", "--no-progress", "--device", "cpu", "--no-ranking"]


def test_nproc_per_node_trains_in_two_processes(data, tmp_path):
    proc = neucf("train", "--data", data / "small.csv", *TRAIN, "--epochs", "2", "--out", tmp_path / "r",
                 "--nproc-per-node", "2")  # fmt: skip
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert out.count("wrote ") == 1 and "error" not in err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["runtime"]["world_size"] == 2


def test_nproc_per_node_failures_are_one_line_with_the_right_code(data, tmp_path):
    (tmp_path / "bad.csv").write_text("user,item,rating\n1,2,x\n")
    proc = neucf("train", "--data", tmp_path / "bad.csv", *TRAIN, "--out", tmp_path / "r", "--nproc-per-node", "2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and one_line(err) and "line 2: rating 'x'" in err, err
    proc = neucf("train", "--data", tmp_path / "none.csv", *TRAIN, "--out", tmp_path / "r", "--nproc-per-node", "2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and one_line(err) and "no such file" in err, err


def _training_workers(proc, out: Path):
    """Wait until both workers of ``proc`` are in their epochs; their pids."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if len(children) == 2 and "epoch 1:" in proc.stderr.readline():
            return [int(c) for c in children]


@pytest.mark.parametrize("kill", ["worker", "launcher"])
def test_nproc_per_node_names_a_lost_worker_and_stops_on_sigterm(data, tmp_path, kill):
    proc = neucf("train", "--data", data / "small.csv", *TRAIN, "--epochs", "100000", "--patience", "0",
                 "--progress", "--out", tmp_path / "r", "--nproc-per-node", "2")  # fmt: skip
    workers = _training_workers(proc, tmp_path / "r")
    if kill == "worker":
        os.kill(max(workers), signal.SIGKILL)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if kill == "worker":
        assert proc.returncode == 1 and one_line(err) and "was killed by SIGKILL; nothing was written" in err, err
    else:
        assert proc.returncode == 143 and one_line(err) and "error: terminated; nothing was written" in err, err
    assert not (tmp_path / "r").exists()
