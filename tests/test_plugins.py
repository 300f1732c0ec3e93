"""A model registered in one file (tests/plugins) runs through every command that takes a model."""

import json

import pytest

from conftest import synthetic_ratings, write_ratings
from neucf.cli import main
from neucf.models import model_names


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory):
    return write_ratings(tmp_path_factory.mktemp("data") / "ratings.csv", synthetic_ratings())


def neucf(command: str, ratings_file, out) -> int:
    """Run ``neucf COMMAND --data RATINGS --out OUT`` in-process; returns the exit code."""
    return main([*command.split(), "--data", str(ratings_file), "--out", str(out)])


def test_a_plugin_model_runs_through_train_compare_tune_and_diagnose(plugin_model, ratings_file, tmp_path, capsys):
    assert "shrunk-item-mean" in model_names()
    run = tmp_path / "run"
    # its own parameter became a flag; training flags apply since it is trained by gradient
    assert neucf("train --split random --model shrunk-item-mean --shrinkage 3 --epochs 3", ratings_file, run) == 0
    assert json.loads((run / "config.json").read_text())["params"]["shrinkage"] == 3
    assert main(["evaluate", str(run)]) == 0
    compare = "compare --split random --folds 1,2 --models bias,shrunk-item-mean"
    assert neucf(compare, ratings_file, tmp_path / "cmp") == 0
    assert "shrunk-item-mean" in (tmp_path / "cmp" / "comparison.md").read_text()
    storage = f"sqlite:///{tmp_path / 't.db'}"
    tune = f"tune --split random --model shrunk-item-mean --trials 2 --epochs 2 --storage {storage} --study-name p"
    assert neucf(tune, ratings_file, tmp_path / "tune") == 0
    assert "shrinkage" in json.loads((tmp_path / "tune" / "best.json").read_text())["params"]
    assert neucf("diagnose noise --model shrunk-item-mean", ratings_file, tmp_path / "d") in (0, 1)
    overfit = "diagnose overfit --model shrunk-item-mean --epochs 5 --fraction 0.2"
    assert neucf(overfit, ratings_file, tmp_path / "d") in (0, 1)
    out = capsys.readouterr()
    assert "noise: shrunk-item-mean" in out.out and "overfit: shrunk-item-mean" in out.out
    assert "Traceback" not in out.err and "unexpected" not in out.err
    # a parameter it does not take is refused by name
    assert neucf("train --split random --model shrunk-item-mean --layers 2", ratings_file, tmp_path / "x") == 2
    assert "the shrunk-item-mean model does not take layers" in capsys.readouterr().err


def test_parameter_less_models_run_everywhere_and_say_what_they_cannot_do(ratings_file, tmp_path, capsys):
    assert neucf("diagnose noise --model mean", ratings_file, tmp_path / "d") == 1  # FAIL, not an error
    assert "FAIL noise: mean" in capsys.readouterr().out
    tune = f"tune --split random --model mean --trials 1 --storage sqlite:///{tmp_path / 't.db'} --study-name m"
    assert neucf(tune, ratings_file, tmp_path / "t") == 2
    assert "has no hyper-parameters to tune" in capsys.readouterr().err
    assert neucf("diagnose overfit --model bias", ratings_file, tmp_path / "d") == 2
    assert "closed form" in capsys.readouterr().err
