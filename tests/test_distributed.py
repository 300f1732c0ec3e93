"""Data-parallel training under torchrun: 2 gloo processes on CPU train like one process."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import synthetic_ratings, write_ratings
from neucf.cli import main
from neucf.errors import UsageError
from neucf.training import World, join_world

ARGS = ["--split", "random", "--seed", "0", "--model", "neumf", "--factors", "8", "--layers", "2",
        "--epochs", "6", "--batch-size", "512", "--no-ranking", "--no-progress", "--device", "cpu"]  # fmt: skip


def test_alone_without_torchrun():
    assert join_world("cpu") == World(0, 1)


def test_two_gloo_processes_match_one(tmp_path, capsys):
    data = write_ratings(tmp_path / "ratings.csv", synthetic_ratings(n_users=150, n_items=80, density=0.25))
    assert main(["train", "--data", str(data), *ARGS, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "neucf", "train", "--data", str(data), *ARGS, "--out", str(tmp_path / "two")]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("torchrun with 2 gloo processes did not finish in 240 s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1, done.stdout  # rank 0 alone speaks and writes
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert json.loads((tmp_path / "two" / "config.json").read_text())["runtime"]["world_size"] == 2
    assert abs(one["test"]["rmse"] - two["test"]["rmse"]) < 0.005, (one["test"], two["test"])
    assert one["epochs"] == two["epochs"]


def test_more_cuda_processes_than_gpus_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match=r"1 CUDA GPU\(s\).*--nproc-per-node 1, or --device cpu"):
        join_world("cuda")
