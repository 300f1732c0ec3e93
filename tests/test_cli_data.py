import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import synthetic_ratings, write_ratings
from neucf.cli import main


@pytest.fixture
def ratings_file(tmp_path):
    return write_ratings(tmp_path / "ratings.csv", synthetic_ratings())


def test_describe_json(ratings_file, capsys):
    assert main(["data", "describe", "--data", str(ratings_file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    expected = synthetic_ratings()
    assert summary["ratings"] == len(expected)
    assert summary["users"] == expected.n_users and summary["items"] == expected.n_items
    assert (summary["rating_min"], summary["rating_max"]) == (1.0, 5.0)


@pytest.mark.parametrize(
    "split,parts", [("coverage", 3), ("random", 3), ("kfold", 2), ("temporal", 3), ("movielens", 2)]
)
def test_split_writes_csvs_that_cover_the_data(ratings_file, tmp_path, capsys, split, parts):
    out = tmp_path / "split"
    if split == "movielens":  # MovieLens 100k's own folds: for its u.data only
        (tmp_path / "ml").mkdir()
        ratings_file = Path(shutil.copy(ratings_file, tmp_path / "ml" / "u.data"))
    assert main(["data", "split", "--data", str(ratings_file), "--split", split, "--out", str(out), "--seed", "3"]) == 0
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert len(files) == parts and "train.csv" in files and "test.csv" in files
    frames = [pd.read_csv(out / f) for f in files]
    assert all(list(f.columns) == ["user", "item", "rating", "timestamp"] for f in frames)
    joined = pd.concat(frames)
    original = pd.read_csv(ratings_file)
    assert len(joined) == len(original)
    assert set(map(tuple, joined[["user", "item"]].to_numpy())) == set(
        map(tuple, original[["user", "item"]].to_numpy())
    )


def test_split_is_deterministic_under_seed(ratings_file, tmp_path):
    for name in ("a", "b"):
        main(
            [
                "data",
                "split",
                "--data",
                str(ratings_file),
                "--split",
                "random",
                "--seed",
                "7",
                "--out",
                str(tmp_path / name),
            ]
        )
    assert (tmp_path / "a" / "test.csv").read_bytes() == (tmp_path / "b" / "test.csv").read_bytes()


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["data", "describe", "--dataset", "ml-7k"], 2, "known datasets: ml-100k"),
        (["data", "describe"], 2, "exactly one of --data"),
        (["data", "describe", "--data", "x.csv", "--dataset", "ml-100k"], 2, "exactly one"),
        (["data", "describe", "--data", "RATINGS", "--duplicates", "first"], 2, "--duplicates"),
        (["data", "describe", "--data", "RATINGS", "--rating-scale", "5"], 2, "--rating-scale"),
        (["data", "describe", "--data", "RATINGS", "--rating-scale", "1,3"], 1, "outside the scale"),
        (["data", "describe", "--frobnicate"], 2, "--frobnicate"),
        (["data", "split", "--data", "RATINGS", "--split", "nope", "--out", "OUT"], 2, "unknown split"),
        (["data", "split", "--data", "RATINGS", "--split", "kfold", "--fold", "9", "--out", "OUT"], 2, "--fold"),
        (
            [
                "data",
                "split",
                "--data",
                "RATINGS",
                "--split",
                "coverage",
                "--min-item-ratings",
                "0",
                "--min-user-ratings",
                "0",
                "--out",
                "OUT",
            ],
            0,
            "",
        ),
    ],
)
def test_errors_are_one_line_with_exit_codes(ratings_file, tmp_path, capsys, args, code, message):
    args = [str(ratings_file) if a == "RATINGS" else str(tmp_path / "o") if a == "OUT" else a for a in args]
    assert main(args) == code
    err = capsys.readouterr().err
    if code:
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_coverage_without_filter_on_sparse_items_is_a_data_error(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(f"{u},{i},3\n" for u in range(5) for i in range(4)) + "9,99,4\n")
    assert main(["data", "split", "--data", str(path), "--min-item-ratings", "0", "--out", str(tmp_path / "o")]) == 1
    assert "--min-item-ratings 3" in capsys.readouterr().err
    assert not (tmp_path / "o" / "train.csv").exists()


def test_duplicates_error_names_the_pair_and_the_option(tmp_path, capsys):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n1,2,3\n1,2,4\n")
    assert main(["data", "describe", "--data", str(path)]) == 1
    err = capsys.readouterr().err
    assert "item 2 by user 1" in err and "--duplicates" in err
    assert main(["data", "describe", "--data", str(path), "--duplicates", "mean", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rating_min"] == 3.5


def test_console_script_runs(ratings_file):
    result = subprocess.run(
        [sys.executable, "-m", "neucf", "data", "describe", "--data", str(ratings_file), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ratings"] > 0


def test_split_dir_round_trip_keeps_the_parts(ratings_file, tmp_path):
    from neucf.datasets import load_split_dir

    for split, expected in (("kfold", {"valid": 0}), ("random", {})):
        out = tmp_path / split
        assert main(["data", "split", "--data", str(ratings_file), "--split", split, "--out", str(out)]) == 0
        _, parts = load_split_dir(out)
        for name, size in parts.sizes().items():
            path = out / f"{name}.csv"
            assert size == (len(pd.read_csv(path)) if path.exists() else 0)
            assert expected.get(name, size) == size
