"""The third reliability probe's cases (issue 35), each reproduced on generated data and checked
fixed: ids in any script, outputs that would overwrite inputs or nest in other outputs, full
disks, streams, thresholds, histories, comparisons, edited runs, late signals and memory.

CLI cases run in-process through ``main``; standard input, pipes and signals run the real
``neucf`` in subprocesses.
"""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line, rewrite_config, run, synthetic_ratings, write_ratings
from neucf.files import MARKER, output_kind

IDS_USERS = [f"user {k}, the ünïcode" for k in range(12)] + [f"日本語{k}" for k in range(6)] + ["café", "emoji🎬"]
IDS_ITEMS = ["日本語", "café", "emoji🎬", "a, b", "007", "naïve"] + [f"it{k}ü" for k in range(14)]


def quoted(text: str) -> str:
    return f'"{text}"' if "," in text else text


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    rated = synthetic_ratings(n_users=60, n_items=40)
    write_ratings(folder / "rated.csv", rated)
    frame = rated.to_frame()
    frame[["user", "item", "timestamp"]].to_csv(folder / "plays.csv", index=False)
    frame.assign(count=np.arange(len(frame)) % 4 + 1)[["user", "item", "count", "timestamp"]].to_csv(
        folder / "counts.csv", index=False
    )
    rng = np.random.default_rng(0)
    lines = ["user,item,timestamp"]
    for u in IDS_USERS:
        lines += [f"{quoted(u)},{quoted(i)},{len(lines)}" for i in rng.choice(IDS_ITEMS, 10, replace=False)]
    (folder / "ids.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def implicit_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ease"
    assert run_quiet("train", "--data", data / "plays.csv", "--model", "ease", "--out", out) == 0
    return out


@pytest.fixture(scope="module")
def ids_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ids"
    assert run_quiet("train", "--data", data / "ids.csv", "--split", "leave-last-out", "--model", "ease",
                     "--out", out) == 0  # fmt: skip
    return out


def run_quiet(*args) -> int:
    from neucf.cli import main

    return main([str(a) for a in args])


def neucf(*args, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "neucf", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kwargs)  # fmt: skip


# ---- ids in any script ----------------------------------------------------------------------
def test_non_ascii_ids_come_back_exactly_as_written(data, ids_run, tmp_path, capsys):
    import pandas as pd

    code, _, _ = run(capsys, "recommend", ids_run, "--all-users", "-k", "3", "--out", tmp_path / "all.csv")
    assert code == 0
    lists = pd.read_csv(tmp_path / "all.csv", dtype=str, encoding="utf-8")
    assert set(lists["user"]) <= set(IDS_USERS) and set(lists["item"]) <= set(IDS_ITEMS)
    test = pd.read_csv(ids_run / "test.csv", dtype=str, encoding="utf-8")
    assert set(test["user"]) <= set(IDS_USERS)
    # the run's own files read back as written: evaluate gives the figures train recorded
    code, out, _ = run(capsys, "evaluate", ids_run)
    recorded = json.loads((ids_run / "metrics.json").read_text())["test"]["ranking"]
    assert code == 0 and json.loads(out)["ranking"]["ndcg"] == pytest.approx(recorded["ndcg"])
    code, out, err = run(capsys, "recommend", ids_run, "--user", "user 3, the ünïcode", "-k", "3", "--json")
    assert code == 0 and {r["item"] for r in json.loads(out)} <= set(IDS_ITEMS), err
    code, out, err = run(capsys, "predict", ids_run, "--user", "user 3, the ünïcode", "--item", "日本語")
    assert code == 0 and float(out) == float(out), err
    (tmp_path / "pairs.csv").write_text('user,item\n"user 3, the ünïcode",日本語\n', encoding="utf-8")
    code, out, _ = run(capsys, "predict", ids_run, "--pairs", tmp_path / "pairs.csv")
    assert code == 0 and out.splitlines()[1].startswith('"user 3, the ünïcode",日本語,')
    (tmp_path / "hist.csv").write_text('user,item\nnewü,日本語\nnewü,"a, b"\n', encoding="utf-8")
    code, out, err = run(capsys, "recommend", ids_run, "--user", "newü", "--history", tmp_path / "hist.csv", "--json")
    assert code == 0 and len(json.loads(out)) == 10, err
    # the mis-decoded form of an id is not an id
    code, _, err = run(capsys, "recommend", ids_run, "--user", "user 0, the Ã¼nÃ¯code")
    assert code == 1 and one_line(err) and "unknown user" in err


def test_files_that_are_not_utf8_are_read_as_latin1_and_said_so(tmp_path, capsys):
    (tmp_path / "latin.csv").write_bytes("user,item,rating\nzoë,café,4\nzoë,thé,2\nbob,café,5\n".encode("latin-1"))
    code, out, err = run(capsys, "data", "describe", "--data", tmp_path / "latin.csv", "--json")
    assert code == 0 and json.loads(out)["users"] == 2
    assert "not UTF-8 text" in err and "Latin-1" in err
    (tmp_path / "utf8.csv").write_text("user,item,rating\nzoë,café,4\nzoë,thé,2\nbob,café,5\n", encoding="utf-8")
    code, out, err = run(capsys, "data", "describe", "--data", tmp_path / "utf8.csv", "--json")
    assert code == 0 and "Latin-1" not in err


def test_a_file_that_turns_out_not_to_be_utf8_past_its_head_is_read_as_latin1():
    from neucf.datasets import read_ratings_file

    body = "".join(f"u{k},i{k % 50},3\n" for k in range(8000)).encode()  # past the 64 KB head
    ratings = read_ratings_file(b"user,item,rating\n" + body + "zo\xeb,caf\xe9,4\n".encode("latin-1"))
    assert "zoë" in set(ratings.user_ids) and "café" in set(ratings.item_ids)


# ---- outputs: inputs, nesting, links ----------------------------------------------------------
def test_an_output_that_is_the_runs_training_data_is_refused(data, tmp_path, capsys):
    source = tmp_path / "plays.csv"
    source.write_bytes((data / "plays.csv").read_bytes())
    out = tmp_path / "runs" / "pop"
    assert run(capsys, "train", "--data", source, "--model", "pop", "--split", "user-ratio", "--out", out)[0] == 0
    assert json.loads((out / "config.json").read_text())["source"]["path"] == str(source.resolve())
    before = source.read_bytes()
    os.link(source, tmp_path / "hard.csv")
    os.symlink(source, tmp_path / "soft.csv")
    for target in (source, tmp_path / "hard.csv", tmp_path / "soft.csv"):
        code, _, err = run(capsys, "recommend", out, "--all-users", "--out", target)
        assert code == 2 and one_line(err) and "is an input" in err, err
        pairs = tmp_path / "pairs.csv"
        pairs.write_text("user,item\n1,100\n")
        code, _, err = run(capsys, "predict", out, "--pairs", pairs, "--fallback", "--out", target)
        assert code == 2 and one_line(err) and "is an input" in err, err
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--model", "pop", "--split", "user-ratio", "--out", "{run}/sub"],
        ["data", "split", "--split", "user-ratio", "--out", "{run}/sub/deeper"],
        ["tune", "--task", "ranking", "--model", "ease", "--trials", "1", "--split", "user-ratio",
         "--storage", "sqlite:///{tmp}/t.db", "--study-name", "s", "--out", "{run}/tune"],
        ["tune", "--task", "ranking", "--model", "ease", "--trials", "1", "--split", "user-ratio",
         "--storage", "sqlite:///{run}/t.db", "--study-name", "s", "--out", "{tmp}/tune"],
        ["compare", "--models", "pop", "--folds", "1", "--out", "{run}/cmp"],
    ],
)  # fmt: skip
def test_a_new_output_inside_a_neucf_output_is_refused(data, implicit_run, tmp_path, capsys, command):
    before = sorted(p.name for p in implicit_run.rglob("*"))
    args = [a.format(run=implicit_run, tmp=tmp_path) for a in command]
    code, _, err = run(capsys, *args, "--data", data / "plays.csv")
    assert code == 2 and one_line(err) and "inside the neucf run folder" in err, err
    assert sorted(p.name for p in implicit_run.rglob("*")) == before
    assert not (tmp_path / "t.db").exists() and not (tmp_path / "tune").exists()


def test_an_out_that_is_a_link_is_refused_and_left_as_it_is(data, implicit_run, tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(implicit_run)
    code, _, err = run(capsys, "train", "--data", data / "plays.csv", "--model", "pop", "--out", link)
    assert code == 2 and one_line(err) and f"is a link to {implicit_run}" in err, err
    assert link.is_symlink() and sorted(p.name for p in tmp_path.iterdir()) == ["link"]


def test_a_full_disk_is_said_plainly_whatever_writes(data, tmp_path):
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = neucf("train", "--data", data / "rated.csv", "--model", "bias", "--out", tmp_path / "r", preexec_fn=limit)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and one_line(err) and "error: File too large" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_real_error_of_a_failed_model_write_is_raised(tmp_path, monkeypatch):
    from neucf.models import Biases, persistence

    model = Biases().fit(synthetic_ratings())

    class Full:
        def __init__(self, handle):
            self.handle, self.error = handle, None

        def write(self, data):
            self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise self.error

        def flush(self):
            pass

    monkeypatch.setattr(persistence, "_Writes", Full)
    with pytest.raises(OSError, match="No space left on device"):
        model.save(tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_tune_on_a_full_disk_leaves_no_folder(data, tmp_path, capsys, monkeypatch):
    from neucf import tuning

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tuning, "write_json", full)
    code, _, err = run(capsys, "tune", "--data", data / "plays.csv", "--task", "ranking", "--model", "ease",
                       "--trials", "1", "--storage", f"sqlite:///{tmp_path / 't.db'}", "--study-name", "s",
                       "--out", tmp_path / "tune")  # fmt: skip
    assert code == 1 and one_line(err) and "No space left on device" in err, err
    assert not (tmp_path / "tune").exists()


# ---- streams -------------------------------------------------------------------------------------
def test_data_from_standard_input_trains_and_records_what_was_read(data, tmp_path):
    raw = (data / "rated.csv").read_bytes()
    proc = neucf("train", "--data", "-", "--model", "bias", "--split", "random", "--out", tmp_path / "r",
                 stdin=subprocess.PIPE)  # fmt: skip
    _, err = proc.communicate(raw.decode(), timeout=120)
    assert proc.returncode == 0, err
    source = json.loads((tmp_path / "r" / "config.json").read_text())["source"]
    assert source["sha256"] == hashlib.sha256(raw).hexdigest() and source["path"] is None


def test_data_from_a_pipe_is_read_once_and_checksummed(data, tmp_path, capsys):
    raw = (data / "plays.csv").read_bytes()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(raw))
    writer.start()
    code, _, err = run(capsys, "train", "--data", fifo, "--model", "pop", "--split", "user-ratio", "--out",
                       tmp_path / "r")  # fmt: skip
    writer.join(timeout=30)
    assert code == 0, err
    assert (
        json.loads((tmp_path / "r" / "config.json").read_text())["source"]["sha256"] == hashlib.sha256(raw).hexdigest()
    )


# ---- thresholds, histories, flags ------------------------------------------------------------------
@pytest.mark.parametrize("threshold", ["10", "-1"])
def test_a_relevance_threshold_outside_the_scale_is_refused_at_train(data, tmp_path, capsys, threshold):
    code, _, err = run(capsys, "train", "--data", data / "rated.csv", "--task", "ranking", "--model", "ease",
                       f"--relevant={threshold}", "--out", tmp_path / "r")  # fmt: skip
    assert code == 2 and one_line(err) and "outside the data's rating scale 1..5" in err, err
    assert not (tmp_path / "r").exists()


def test_a_relevance_threshold_on_interactions_names_no_model_it_was_not_given(data, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", data / "plays.csv", "--relevant", "4", "--out", tmp_path / "r")
    assert code == 2 and one_line(err) and "relevant is for rated data" in err and "neumf" not in err, err
    code, _, err = run(capsys, "train", "--data", data / "rated.csv", "--relevant", "4", "--out", tmp_path / "r")
    assert code == 2 and one_line(err) and "for lists pass --task ranking" in err, err


@pytest.mark.parametrize("command", ["recommend", "predict"])
def test_a_history_with_ratings_is_refused_by_a_run_of_interactions(implicit_run, tmp_path, capsys, command):
    (tmp_path / "hist.csv").write_text("user,item,rating\nnewbie,100,1\nnewbie,101,5\n")
    (tmp_path / "pairs.csv").write_text("user,item\nnewbie,102\n")
    where = ["--user", "newbie"] if command == "recommend" else ["--pairs", tmp_path / "pairs.csv"]
    code, _, err = run(capsys, command, implicit_run, *where, "--history", tmp_path / "hist.csv")
    assert code == 1 and one_line(err) and "learnt from interactions without ratings" in err, err
    (tmp_path / "hist.csv").write_text("user,item\nnewbie,100\nnewbie,101\n")
    assert run(capsys, command, implicit_run, *where, "--history", tmp_path / "hist.csv")[0] == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--data", "{data}/plays.csv", "--rating-scale", "1,5"], "--rating-scale is for rated data"),
        (["train", "--data", "{data}/plays.csv", "--model", "ease", "--l2", "1e308"], "l2 must be a positive number up to"),
        (["train", "--data", "{data}/plays.csv", "--task", "ranking", "--model", "neumf", "--decay", "0"], "decay must be in (0, 1]"),
        (["train", "--data", "{data}/plays.csv", "--split", "movielens"], "--split movielens takes MovieLens 100k's own folds"),
        (["data", "split", "--data", "{data}/rated.csv", "--split", "movielens"], "is not that release"),
        (["compare", "--data", "{data}/plays.csv", "--models", "ease,ease"], "--models names ease twice"),
        (["compare", "--data", "{data}/plays.csv", "--models", "ease:l2=-1"], "l2 must be a positive number"),
        (["compare", "--data", "{data}/plays.csv", "--models", "ease:nosuch=1"], "the ease model does not take nosuch"),
        (["train", "--data", "{data}/plays.csv", "--model", "als", "--factors", "1000000"], "more than half of the"),
    ],
)  # fmt: skip
def test_flags_that_cannot_apply_are_usage_errors(data, tmp_path, capsys, args, message):
    code, _, err = run(capsys, *[a.format(data=data) for a in args], "--out", tmp_path / "out")
    assert code == 2 and one_line(err) and message in err, err
    assert not (tmp_path / "out").exists()


def test_negatives_are_for_the_sampled_protocol(implicit_run, capsys):
    code, _, err = run(capsys, "evaluate", implicit_run, "--negatives", "5")
    assert code == 2 and one_line(err) and "--negatives is for --protocol sampled" in err
    code, out, _ = run(capsys, "evaluate", implicit_run, "--protocol", "sampled", "--negatives", "5")
    assert code == 0 and json.loads(out)["ranking"]["negatives"] == 5


def test_compare_takes_each_models_parameters(data, tmp_path, capsys):
    code, _out, err = run(capsys, "compare", "--data", data / "plays.csv", "--models", "ease:l2=10,ease:l2=1000",
                         "--folds", "1", "--out", tmp_path / "c")  # fmt: skip
    assert code == 0, err
    table = json.loads((tmp_path / "c" / "comparison.json").read_text())["table"]
    assert [row["model"] for row in table] == ["ease:l2=10", "ease:l2=1000"]
    assert "ease: lambda 10," in err and "ease: lambda 1000," in err


def test_compare_checks_every_model_before_fitting_any(data, tmp_path, capsys, monkeypatch):
    from neucf.models import memory

    rng = np.random.default_rng(0)
    pairs = {(int(rng.integers(60)), int(rng.integers(80))) for _ in range(400)}
    (tmp_path / "wide.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in sorted(pairs)))
    # room for pop's 400 interactions, not for EASE's 80 x 80 matrices (at most 45 items)
    monkeypatch.setattr(memory, "memory_bytes", lambda: 100_000)
    code, _, err = run(capsys, "compare", "--data", tmp_path / "wide.csv", "--task", "ranking", "--models",
                       "pop,ease", "--folds", "1", "--out", tmp_path / "c")  # fmt: skip
    assert code == 2 and one_line(err) and "EASE needs items x items matrices" in err, err
    assert "[1/2] pop" not in err and not (tmp_path / "c").exists()


def test_the_memory_allowed_is_the_control_groups_where_lower(tmp_path, monkeypatch):
    from neucf.models import memory

    (tmp_path / "memory.max").write_text("1073741824\n")
    (tmp_path / "unlimited").write_text("max\n")
    monkeypatch.setattr(memory, "_CGROUP_LIMITS", (str(tmp_path / "unlimited"), str(tmp_path / "memory.max")))
    assert memory.memory_bytes() == 1 << 30
    with pytest.raises(Exception, match=r"would take about 2 GB, more than half of the 1 GB"):
        memory.check_memory(2 * 10**9, "the fit", "use less")


def test_weights_a_model_does_not_read_are_said_once(data, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", data / "counts.csv", "--model", "ease", "--out", tmp_path / "e")
    warned = [line for line in err.splitlines() if "weights (counts) are not used by ease" in line]
    assert code == 0 and len(warned) == 1 and "read by: als" in warned[0], err
    code, _, err = run(capsys, "train", "--data", data / "counts.csv", "--model", "als", "--factors", "4",
                       "--out", tmp_path / "a")  # fmt: skip
    assert code == 0 and "not used" not in err


# ---- runs edited after they were written ---------------------------------------------------------
@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["params"].update(relevant=10),
        lambda c: c["params"].update(relevant=1),
        lambda c: c.pop("task"),
        lambda c: c.update(task="bogus"),
    ],
)
def test_an_edited_config_is_refused(data, tmp_path, capsys, edit):
    out = tmp_path / "r"
    assert run(capsys, "train", "--data", data / "rated.csv", "--task", "ranking", "--model", "ease",
               "--out", out)[0] == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    edit(config)
    (out / "config.json").write_text(json.dumps(config))
    for command in (["evaluate", out], ["recommend", out, "--user", "1"], ["report", out]):
        code, _, err = run(capsys, *command)
        assert code == 1 and one_line(err) and "config.json: changed since the run wrote it" in err, err


def test_a_run_written_before_config_fingerprints_is_read_with_one_warning(implicit_run, tmp_path, capsys):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(implicit_run, old)
    (old / MARKER).write_text("run\n")  # as 0.6 wrote it
    code, _, err = run(capsys, "evaluate", old)
    assert code == 0 and err.count("warning:") == 1 and "does not fingerprint config.json" in err, err


def test_a_bogus_task_is_named_as_such(implicit_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(implicit_run, copy)
    config = json.loads((copy / "config.json").read_text())
    rewrite_config(copy, {**config, "task": "bogus"})
    code, _, err = run(capsys, "evaluate", copy)
    assert code == 1 and one_line(err) and "task 'bogus' is not a task: choose rating or ranking" in err, err


def test_a_test_part_of_another_kind_than_the_run_is_refused(implicit_run, tmp_path, capsys):
    import shutil

    from neucf.files import checksum

    copy = tmp_path / "copy"
    shutil.copytree(implicit_run, copy)
    lines = (copy / "test.csv").read_text().splitlines()
    header = lines[0].split(",")
    header.insert(2, "rating")
    rows = [",".join([*line.split(",")[:2], "5", *line.split(",")[2:]]) for line in lines[1:]]
    (copy / "test.csv").write_text("\n".join([",".join(header), *rows]) + "\n")
    config = json.loads((copy / "config.json").read_text())
    config["files"]["test.csv"] = checksum(copy / "test.csv")
    rewrite_config(copy, config)
    code, _, err = run(capsys, "evaluate", copy)
    assert code == 1 and one_line(err) and "holds ratings, but the run learnt from interactions" in err, err


def test_train_help_names_every_duplicates_policy(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0 and "sum" in out[out.index("--duplicates") :][:200]


# ---- a signal once the work is done --------------------------------------------------------------
@pytest.mark.parametrize("sig, delay", [(signal.SIGTERM, 0.01), (signal.SIGTERM, 0.15), (signal.SIGINT, 0.05)])
def test_a_signal_just_after_the_run_is_written_is_never_a_silent_kill(data, tmp_path, sig, delay):
    out = tmp_path / "run"
    proc = neucf("train", "--data", data / "plays.csv", "--model", "pop", "--split", "user-ratio", "--out", out)
    while not (out / MARKER).exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.001)
    time.sleep(delay)
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err and "error:" not in err, (proc.returncode, err)
    word = "terminated" if sig == signal.SIGTERM else "interrupted"
    if "after the work was done" in err:  # else the process had ended before the signal came
        assert err.strip().splitlines()[-1] == f"{word} after the work was done: {out} was written"
    assert output_kind(out) == "run"


def test_a_signal_while_the_process_ends_is_said_and_the_exit_status_kept():
    # the signal comes from an exit handler: after the command returned, before the process ends
    script = (
        "import atexit, os, signal\n"
        "from neucf.__main__ import leave\n"
        "from neucf.errors import StopSignals\n"
        "stop = StopSignals()\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "stop.done('runs/u1 was written')\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGTERM))\n"
        "leave(0, stop)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "terminated after the work was done: runs/u1 was written"
