"""Every defect of ../shared/notes/reliability-probe.md, reproduced and checked fixed.

CLI cases run in-process through ``main``; signals run the real ``neucf`` in a subprocess.
"""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run, synthetic_ratings, write_ratings


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_ratings(folder / "small.csv", synthetic_ratings(n_users=60, n_items=40))
    return folder


def one_line(err: str) -> bool:
    """Stricter than conftest's: the error line is all that is printed."""
    return err.count("\n") == 1 and err.startswith("error: ") and "unexpected" not in err and "Traceback" not in err


# 1. an output folder never destroys the input --------------------------------------------
def test_out_holding_the_input_is_refused(data, tmp_path, capsys):
    folder = tmp_path / "userdir"
    folder.mkdir()
    (folder / "train.csv").write_bytes((data / "small.csv").read_bytes())
    before = (folder / "train.csv").read_bytes()
    code, _, err = run(capsys, "data", "split", "--data", folder / "train.csv", "--split", "random", "--out", folder)
    assert code == 2 and one_line(err) and "holds the input" in err
    (folder / "config.json").write_text('{"my": "notes"}')
    for force in ([], ["--force"]):
        code, _, err = run(capsys, "train", "--data", folder / "train.csv", "--split", "random", "--model", "bias",
                           "--out", folder, *force)  # fmt: skip
        assert code == 2 and "holds the input" in err
    assert (folder / "train.csv").read_bytes() == before and (folder / "config.json").read_text() == '{"my": "notes"}'


def test_a_foreign_non_empty_folder_needs_force_and_is_replaced_only_when_complete(data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run(
        capsys, "train", "--data", data / "small.csv", "--split", "random", "--model", "bias", "--out", out
    )
    assert code == 2 and "--force" in err and (out / "notes.txt").exists()
    code, _, _ = run(capsys, "train", "--data", data / "small.csv", "--split", "random", "--model", "bias",
                     "--out", out, "--force")  # fmt: skip
    assert code == 0 and not (out / "notes.txt").exists() and (out / "model.pt").exists()
    # a previous run folder is replaced without --force, but a run folder is not a split folder
    assert (
        run(capsys, "train", "--data", data / "small.csv", "--split", "random", "--model", "mean", "--out", out)[0] == 0
    )
    code, _, err = run(capsys, "data", "split", "--data", data / "small.csv", "--out", out)
    assert code == 2 and "a neucf run folder, not a split folder" in err


# 2. whole-folder atomicity and signals -----------------------------------------------------
def _neucf(*args, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "neucf", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)  # fmt: skip


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_mid_run_leaves_the_old_run_whole_and_no_temp_files(data, tmp_path, capsys, sig, code, word):
    out = tmp_path / "run"
    assert (
        run(capsys, "train", "--data", data / "small.csv", "--split", "random", "--model", "bias", "--out", out)[0] == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _neucf("train", "--data", data / "small.csv", "--split", "random", "--model", "gmf", "--epochs", "100000",
                  "--patience", "0", "--progress", "--out", out)  # fmt: skip
    while "epoch 1:" not in proc.stderr.readline():  # training is under way (its epoch lines are logged)
        assert proc.poll() is None
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == f"error: {word}; nothing was written" and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_signal_during_start_up_is_one_line(data, tmp_path):
    proc = _neucf("data", "describe", "--data", data / "small.csv")
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # start-up was faster than the signal: nothing to check
        pytest.skip("the command finished before the signal")
    assert proc.returncode == 130 and err.strip() == "error: interrupted; nothing was written", err


def test_temp_folders_of_a_killed_run_are_removed_by_the_next(data, tmp_path, capsys):
    stale = tmp_path / ".run.tmp-neucf-999999-abc"  # pid 999999: not alive
    stale.mkdir()
    (stale / "model.pt").write_bytes(b"half")
    assert run(capsys, "train", "--data", data / "small.csv", "--split", "random", "--model", "mean",
               "--out", tmp_path / "run")[0] == 0  # fmt: skip
    assert not stale.exists()


# 3. and 4. readers -------------------------------------------------------------------------
def test_a_byte_order_mark_is_stripped(data, tmp_path, capsys):
    frame = (data / "small.csv").read_text().splitlines()
    swapped = ["movieId,userId,rating"] + [
        ",".join([r.split(",")[1], r.split(",")[0], r.split(",")[2]]) for r in frame[1:]
    ]
    (tmp_path / "plain.csv").write_text("\n".join(swapped) + "\n")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.csv").read_bytes())
    (tmp_path / "bom_nohdr.csv").write_bytes(b"\xef\xbb\xbf" + "\n".join(frame[1:]).encode() + b"\n")
    described = {}
    for name in ("plain", "bom", "bom_nohdr"):
        code, out, _ = run(capsys, "data", "describe", "--data", tmp_path / f"{name}.csv", "--json")
        assert code == 0
        described[name] = json.loads(out)
    assert described["bom"] == described["plain"]
    assert (described["bom_nohdr"]["users"], described["bom_nohdr"]["items"]) == (
        described["plain"]["users"], described["plain"]["items"])  # fmt: skip


def test_a_role_named_twice_is_refused(data, capsys):
    code, _, err = run(capsys, "data", "describe", "--data", data / "small.csv", "--columns", "user,item,rating,rating")
    assert code == 2 and one_line(err) and "names rating twice" in err


def test_compressed_piped_and_standard_input(data, tmp_path):
    raw = (data / "small.csv").read_bytes()
    (tmp_path / "r.csv.gz").write_bytes(gzip.compress(raw))
    expected = None
    for args, stdin in ((["--data", tmp_path / "r.csv.gz"], None), (["--data", "-"], raw)):
        proc = subprocess.run([sys.executable, "-m", "neucf", "data", "describe", *map(str, args), "--json"],
                              input=stdin, capture_output=True, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        expected = expected or got
        assert got == expected and got["ratings"] == len(raw.splitlines()) - 1
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = _neucf("data", "describe", "--data", fifo, "--json")
    with open(fifo, "wb") as handle:
        handle.write(raw)
    out, _ = proc.communicate(timeout=60)
    assert json.loads(out) == expected


def test_devices_and_binary_files_are_refused_at_once(tmp_path, capsys):
    code, _, err = run(capsys, "data", "describe", "--data", "/dev/zero")
    assert code == 1 and one_line(err) and "not a regular file or a pipe" in err
    (tmp_path / "bin.csv").write_bytes(b"1,2,3\n\0\0\0")
    code, _, err = run(capsys, "data", "describe", "--data", tmp_path / "bin.csv")
    assert code == 1 and one_line(err) and "NUL byte" in err


# 5. ids as written -------------------------------------------------------------------------
def test_zero_padded_and_64_bit_ids_round_trip_through_runs(tmp_path, capsys):
    rng = np.random.default_rng(0)
    users = [f"{u:010d}" for u in range(30)]  # ISBN-like: only digits, leading zeros
    items = [str(2**64 - 1 - i) for i in range(12)]  # >= 2**63: uint64
    rows = {(u, i) for u in users for i in rng.choice(items, 6, replace=False)}
    text = "user,item,rating\n" + "".join(f"{u},{i},{rng.integers(1, 6)}\n" for u, i in sorted(rows))
    (tmp_path / "ids.csv").write_text(text)
    run_dir = tmp_path / "run"
    assert run(capsys, "train", "--data", tmp_path / "ids.csv", "--split", "random", "--model", "bias",
               "--out", run_dir)[0] == 0  # fmt: skip
    code, out, _ = run(capsys, "evaluate", run_dir)
    assert code == 0 and json.loads(out)["n_fallback"] == 0  # every test id was matched as written
    code, out, err = run(capsys, "predict", run_dir, "--user", users[0], "--item", items[0])
    assert code == 0, err
    code, _, err = run(capsys, "predict", run_dir, "--user", str(int(users[0])), "--item", items[0])
    assert code == 1 and "unknown user id" in err  # "0000000000" is not "0"
    test = (run_dir / "test.csv").read_text()
    assert users[0][:4] == "0000" and any(line.startswith("00000000") for line in test.splitlines())


def test_one_float_looking_id_does_not_change_the_others(tmp_path, capsys):
    (tmp_path / "f.csv").write_text("user,item,rating\n196,1,4\n1.5,1,3\n196,2,5\n7,2,1\n7,1,2\n1.5,2,4\n")
    assert run(capsys, "train", "--data", tmp_path / "f.csv", "--split", "random", "--model", "mean",
               "--out", tmp_path / "run", "--min-item-ratings", "0")[0] in (0, 1)  # fmt: skip
    from neucf.datasets import read_ratings_file

    r = read_ratings_file(tmp_path / "f.csv")
    assert sorted(r.user_ids.tolist()) == ["1.5", "196", "7"] and r.item_ids.dtype.kind == "i"


def test_split_dir_overlap_names_the_files(data, tmp_path, capsys):
    split = tmp_path / "split"
    split.mkdir()
    rows = (data / "small.csv").read_text().splitlines()
    (split / "train.csv").write_text("\n".join(rows[:50]) + "\n")
    (split / "test.csv").write_text("\n".join([rows[0], rows[1], *rows[50:60]]) + "\n")  # rows[1] is in both
    code, _, err = run(capsys, "train", "--split-dir", split, "--model", "mean", "--out", tmp_path / "r")
    assert code == 1 and one_line(err) and "train.csv and test.csv" in err


# 6. tune -----------------------------------------------------------------------------------
def test_tune_resumes_with_new_configurations_and_refuses_another_model(data, tmp_path, capsys):
    base = ["tune", "--data", data / "small.csv", "--split", "random", "--epochs", "1",
            "--storage", f"sqlite:///{tmp_path / 't.db'}", "--study-name", "s", "--out", tmp_path / "t"]  # fmt: skip
    for trials in (1, 2, 3):
        assert run(capsys, *base, "--model", "gmf", "--trials", trials)[0] == 0
    import optuna

    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 't.db'}").trials
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 3
    code, _, err = run(capsys, *base, "--model", "mf", "--trials", 4)
    assert code == 2 and one_line(err) and "model 'gmf' (asked: 'mf')" in err
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert best["model"] == "gmf" and best["params"]["epochs"] == 1


@pytest.mark.parametrize(
    "extra, message",
    [(["--epochs", "0"], "--epochs"), (["--storage", "not-a-url"], "not a database URL"),
     (["--storage", "sqlite:///no/such/dir/t.db"], "cannot create the database")],
)  # fmt: skip
def test_tune_checks_its_flags_before_work(data, tmp_path, capsys, extra, message):
    flags = {"--storage": f"sqlite:///{tmp_path / 't.db'}", "--study-name": "s", "--out": tmp_path / "t",
             "--model": "gmf", "--trials": "2", "--split": "random", "--data": data / "small.csv"}  # fmt: skip
    flags.update(dict(zip(extra[::2], extra[1::2])))
    code, _, err = run(capsys, "tune", *[x for pair in flags.items() for x in pair])
    assert code == 2 and one_line(err) and message in err, err
    assert not (tmp_path / "t").exists()


def test_tune_interrupted_writes_the_finished_trials(data, tmp_path):
    proc = _neucf("tune", "--data", data / "small.csv", "--split", "random", "--model", "gmf", "--trials", "500",
                  "--epochs", "2", "--storage", f"sqlite:///{tmp_path / 't.db'}", "--study-name", "i",
                  "--out", tmp_path / "t")  # fmt: skip
    while "trial 0: validation" not in proc.stderr.readline():  # one trial has finished
        assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: interrupted; wrote best.json and trials.csv")
    assert json.loads((tmp_path / "t" / "best.json").read_text())["model"] == "gmf"


# 7. and 8. paths and flags checked before work, no catch-all -------------------------------
@pytest.mark.parametrize(
    "args, code, message",
    [
        (["train", "--model", "gmf", "--out", "{file}"], 2, "is a file"),
        (["train", "--model", "mean", "--out", "{file}/run"], 2, "cannot create it"),
        (["compare", "--split", "kfold", "--models", "mean", "--folds", "1", "--out", "{file}"], 2, "is a file"),
        (["data", "split", "--split", "random", "--seed", "-1", "--out", "{tmp}/x"], 2, "--seed"),
        (["data", "describe", "--sep", ";;"], 1, "columns per line"),
        (["data", "describe", "--sep", ""], 2, "--sep"),
        (["train", "--model", "mf", "--factors", "-1", "--out", "{tmp}/x"], 2, "factors must be >= 1"),
        (["train", "--model", "nosuch", "--out", "{tmp}/x"], 2, "unknown model"),
        (["train", "--model", "gmf", "--epochs", "0", "--out", "{tmp}/x"], 2, "epochs"),
        (["train", "--model", "gmf", "--patience", "-1", "--out", "{tmp}/x"], 2, "patience"),
        (["train", "--model", "gmf", "--alpha", "nan", "--out", "{tmp}/x"], 2, "alpha"),
        (["train", "--model", "gmf", "--l2-scale", "-1", "--out", "{tmp}/x"], 2, "l2_scale must be >= 0"),
        (["train", "--model", "mf", "--l2-scale", "1", "--out", "{tmp}/x"], 2, "does not take l2_scale"),
        (["train", "--model", "gmf", "--config", "{list_config}", "--out", "{tmp}/x"], 2, "--config"),
        (["train", "--model", "gmf", "--config", "{str_config}", "--out", "{tmp}/x"], 2, "must be a whole number"),
        (["train", "--split", "coverage", "--min-item-ratings", "100000", "--out", "{tmp}/x"], 1, "no rating is left"),
        (["compare", "--models", ",", "--out", "{tmp}/x"], 2, "names nothing"),
        (["compare", "--models", "", "--out", "{tmp}/x"], 2, "names nothing"),
        (["compare", "--split", "kfold", "--models", "mean", "--folds", "1,1", "--out", "{tmp}/x"], 2, "twice"),
        (["data", "describe", "--rating-scale", "1,inf"], 2, "rating scale"),
        (["data", "split", "--min-item-ratings", "-5", "--out", "{tmp}/x"], 2, "--min-item-ratings"),
    ],
)
def test_bad_flags_and_paths_are_one_line_before_any_work(data, tmp_path, capsys, args, code, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    (tmp_path / "str.json").write_text('{"model": "gmf", "params": {"factors": "abc"}}')
    fill = {"file": tmp_path / "file", "tmp": tmp_path, "list_config": tmp_path / "list.json",
            "str_config": tmp_path / "str.json"}  # fmt: skip
    argv = [a.format(**fill) for a in args]
    at = 2 if argv[0] == "data" else 1
    argv[at:at] = ["--data", str(data / "small.csv")]
    got, _, err = run(capsys, *argv)
    assert got == code and one_line(err) and message in err, err


def test_a_damaged_run_folder_is_one_line_and_metrics_do_not_block_use(data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run(capsys, "train", "--data", data / "small.csv", "--split", "random", "--model", "bias",
               "--out", run_dir)[0] == 0  # fmt: skip
    (run_dir / "metrics.json").write_text("{not json")
    user, item = (data / "small.csv").read_text().splitlines()[1].split(",")[:2]
    assert run(capsys, "predict", run_dir, "--user", user, "--item", item)[0] == 0
    assert run(capsys, "evaluate", run_dir)[0] == 0
    code, _, err = run(capsys, "report", run_dir)
    assert code == 1 and one_line(err) and "damaged" in err
    import torch

    from neucf.errors import DataError
    from neucf.models import Recommender

    payload = torch.load(run_dir / "model.pt", weights_only=True)
    del payload["version"]
    torch.save(payload, run_dir / "model.pt")
    code, _, err = run(capsys, "evaluate", run_dir)  # the run's fingerprint of its model no longer matches
    assert code == 1 and one_line(err) and "model.pt: changed since the run wrote it" in err
    with pytest.raises(DataError, match="retrain"):
        Recommender.load(run_dir / "model.pt")


# 9. degenerate data and silent changes -----------------------------------------------------
def test_degenerate_data_is_an_error_not_a_nan_run(tmp_path, capsys):
    (tmp_path / "one.csv").write_text("user,item,rating\n1,1,3\n")
    code, _, err = run(capsys, "train", "--data", tmp_path / "one.csv", "--split", "random", "--model", "bias",
                       "--out", tmp_path / "r")  # fmt: skip
    assert code == 1 and one_line(err) and "train 1, valid 0, test 0" in err and not (tmp_path / "r").exists()
    code, _, err = run(capsys, "diagnose", "noise", "--data", tmp_path / "one.csv", "--out", tmp_path / "d")
    assert code == 1 and one_line(err) and "at least 10 ratings" in err


def test_invalid_timestamps_are_refused(tmp_path, capsys):
    for value in ("inf", "1e30", "1.5"):
        (tmp_path / "t.csv").write_text(f"user,item,rating,timestamp\n1,1,3,100\n2,1,4,{value}\n")
        code, _, err = run(capsys, "data", "describe", "--data", tmp_path / "t.csv")
        assert code == 1 and one_line(err) and "line 3: timestamp" in err, err


def test_movielens_folders_refuse_file_layout_flags(ml100k, capsys):
    code, _, err = run(capsys, "data", "describe", "--data", ml100k, "--columns", "user,item,rating")
    assert code == 2 and one_line(err) and "its own layout" in err
