import json
import math

import pytest

from conftest import synthetic_ratings, write_ratings
from neucf.cli import main

FAST = ["--epochs", "2", "--batch-size", "64", "--factors", "4", "--layers", "2"]


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory):
    return write_ratings(tmp_path_factory.mktemp("data") / "ratings.csv", synthetic_ratings())


@pytest.fixture(scope="module")
def run_dir(ratings_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "neumf"
    code = main(
        ["train", "--data", str(ratings_file), "--split", "random", "--model", "neumf", "--out", str(out), *FAST]
    )
    assert code == 0
    return out


def test_train_writes_a_complete_run_folder(run_dir):
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.json",
        "model.pt",
        "learning_curve.png",
        "metrics.json",
        "test.csv",
    }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("epochs", "train_seconds", "seconds_per_epoch", "history"):
        assert key in metrics
    assert set(metrics["test"]) >= {"rmse", "mae"} and "rmse" in metrics["valid"]
    assert metrics["epochs"] == len(metrics["history"]) == 2
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "neumf" and config["params"]["factors"] == 4


def test_evaluate_matches_the_training_metrics(run_dir, capsys):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rmse"] == pytest.approx(metrics["test"]["rmse"], abs=1e-6)
    assert result["mae"] == pytest.approx(metrics["test"]["mae"], abs=1e-6)


def test_predict_and_recommend(run_dir, capsys):
    user, item = 1, 100  # raw ids of the synthetic data
    assert main(["predict", str(run_dir), "--user", str(user), "--item", str(item)]) == 0
    value = float(capsys.readouterr().out)
    assert 1 <= value <= 5
    assert main(["recommend", str(run_dir), "--user", str(user), "-k", "3", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)
    assert len(top) == 3 and top[0]["prediction"] >= top[-1]["prediction"]
    assert main(["recommend", str(run_dir), "--user", str(user), "-k", "3"]) == 0
    assert capsys.readouterr().out.startswith("  1. ")


def test_unknown_ids_and_bad_run_dirs_are_one_line_errors(run_dir, tmp_path, capsys):
    assert main(["predict", str(run_dir), "--user", "99999", "--item", "100"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown user id '99999'" in err
    assert main(["predict", str(run_dir), "--user", "99999", "--item", "100", "--fallback"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path)]) == 1
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["mean", "bias", "mf", "gmf", "mlp"])
def test_every_model_trains_from_a_split_dir(model, ratings_file, tmp_path, capsys):
    split = tmp_path / "split"
    assert (
        main(["data", "split", "--data", str(ratings_file), "--split", "kfold", "--fold", "2", "--out", str(split)])
        == 0
    )
    capsys.readouterr()
    out = tmp_path / model
    args = ["train", "--split-dir", str(split), "--model", model, "--out", str(out)]
    trained_by_gradient = model not in ("mean", "bias")
    if trained_by_gradient:
        args += ["--epochs", "2", "--batch-size", "64", "--factors", "4"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert f"{model}: test RMSE" in captured.out
    assert ("holding out a seeded 5% of train" in captured.err) == trained_by_gradient
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["rmse"] > 0
    # mf ends with a fifth of its best epochs on all of train, held-out share included
    assert metrics["full_train_epochs"] == math.ceil((0.2 if model == "mf" else 0) * metrics["best_epoch"])
    assert ("on all of train" in captured.out) == (metrics["full_train_epochs"] > 0)


def test_config_file_and_bad_flags(ratings_file, tmp_path, capsys):
    config = tmp_path / "best.json"
    config.write_text(json.dumps({"model": "gmf", "params": {"factors": 3, "epochs": 1, "batch_size": 64}}))
    out = tmp_path / "run"
    assert (
        main(["train", "--data", str(ratings_file), "--split", "random", "--config", str(config), "--out", str(out)])
        == 0
    )
    assert json.loads((out / "config.json").read_text())["model"] == "gmf"
    capsys.readouterr()
    cases = [
        (["--model", "svd"], 2, "unknown model 'svd'"),
        (["--lr", "-1"], 2, "learning rate"),
        (["--device", "tpu"], 2, "device"),
        (["--input-dropout", "2"], 2, "input_dropout"),
        (["--model", "bias", "--factors", "10"], 2, "the bias model does not take factors; it takes reg_user"),
        (["--model", "mf", "--layers", "3"], 2, "the mf model does not take layers"),
        (["--model", "gmf", "--layers", "3"], 2, "the gmf model does not take layers"),
    ]
    for extra, code, message in cases:
        assert (
            main(["train", "--data", str(ratings_file), "--split", "random", "--out", str(tmp_path / "x"), *extra])
            == code
        )
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_flags_override_the_config_and_the_config_overrides_defaults(ratings_file, tmp_path, capsys):
    config = tmp_path / "best.json"
    config.write_text(json.dumps({"model": "gmf", "params": {"factors": 3, "epochs": 1, "batch_size": 64}}))
    base = ["train", "--data", str(ratings_file), "--split", "random", "--config", str(config)]
    assert main([*base, "--factors", "5", "--out", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["model"] == "gmf" and saved["params"]["factors"] == 5 and saved["params"]["epochs"] == 1
    # an explicit --model wins over the config's; the config's parameters it does not take are dropped, saying so
    assert main([*base, "--model", "mf", "--out", str(tmp_path / "b")]) == 0
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["model"] == "mf" and saved["params"]["factors"] == 3 and saved["params"]["epochs"] == 1
    assert "ignoring" not in capsys.readouterr().err
    # a flag left unset keeps each model's own default
    assert (
        main(
            [
                "train",
                "--data",
                str(ratings_file),
                "--split",
                "random",
                "--model",
                "mf",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "c" / "config.json").read_text())["params"]["factors"] == 100


def test_a_run_records_versions_checksum_and_run_time_options(run_dir, ratings_file):
    import hashlib

    config = json.loads((run_dir / "config.json").read_text())
    assert set(config["environment"]) >= {"neucf", "torch", "python"}
    assert config["source"]["sha256"] == hashlib.sha256(ratings_file.read_bytes()).hexdigest()
    assert config["runtime"]["device"] == "auto" and "progress" not in config["params"]


def test_version_verbosity_and_threads(ratings_file, tmp_path, capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip().startswith("neucf ")
    args = ["data", "split", "--data", str(ratings_file), "--split", "coverage"]
    assert main(["-q", *args, "--out", str(tmp_path / "q")]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == "" and "wrote" in quiet.out
    assert main([*args, "--out", str(tmp_path / "v")]) == 0
    assert "dropping items with fewer than 3 ratings" in capsys.readouterr().err
    assert main(["--threads", "0", "models"]) == 2
    assert main(["--threads", "1", "models"]) == 0
    assert "neumf" in capsys.readouterr().out
