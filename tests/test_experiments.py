"""Diagnostics, comparisons, tuning and reports on small synthetic data."""

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from conftest import synthetic_ratings, write_ratings
from neucf.cli import main
from neucf.compare import compare, write_comparison
from neucf.diagnostics import noise, noise_like, overfit
from neucf.report import write_report

FAST = dict(factors=8, epochs=15, batch_size=128)


@pytest.fixture(scope="module")
def ratings():
    return synthetic_ratings(n_users=120, n_items=80, density=0.3, seed=5)


def test_overfit_passes_on_a_working_model_and_fails_when_it_cannot(ratings, tmp_path):
    verdict = overfit(ratings, model="mlp", fraction=0.05, epochs=200, out=tmp_path)
    assert verdict.passed, verdict.line
    assert verdict.line.startswith("PASS") and (tmp_path / "overfit.png").is_file()
    starved = overfit(ratings, model="mlp", fraction=0.05, epochs=1, out=None)
    assert not starved.passed and starved.line.startswith("FAIL")


def test_noise_keeps_shape_and_scale(ratings):
    fake = noise_like(ratings, seed=1)
    np.testing.assert_array_equal(fake.users, ratings.users)
    np.testing.assert_array_equal(fake.items, ratings.items)
    np.testing.assert_array_equal(np.sort(fake.ratings), np.sort(ratings.ratings))
    assert not np.array_equal(fake.ratings, ratings.ratings)


def test_noise_check_separates_signal_from_noise(ratings, tmp_path):
    verdict = noise(ratings, model="gmf", seed=0, out=tmp_path, factors=8, epochs=60, batch_size=128, lr=1e-2)
    assert verdict.passed, verdict.line
    assert verdict.figures["real"]["valid_rmse"] < verdict.figures["noise"]["valid_rmse"]
    assert (tmp_path / "noise.png").is_file()
    # a model that predicts the mean cannot beat noise: the check must say FAIL
    assert not noise(ratings, model="mean", seed=0).passed


def test_compare_is_reproducible_and_writes_everything(ratings, tmp_path):
    a = compare(ratings, "kfold", ["mean", "bias", "gmf"], folds=[1, 2], seed=3, params=FAST)
    b = compare(ratings, "kfold", ["mean", "bias", "gmf"], folds=[1, 2], seed=3, params=FAST)
    np.testing.assert_array_equal(a.table["rmse_mean"], b.table["rmse_mean"])
    assert list(a.table["model"]) == ["mean", "bias", "gmf"] and (a.table["folds"] == 2).all()
    assert a.table.set_index("model").loc["gmf", "rmse_mean"] < a.table.set_index("model").loc["mean", "rmse_mean"]
    files = write_comparison(a, tmp_path)
    assert all(p.is_file() for p in files)
    assert "| gmf | 2 |" in (tmp_path / "comparison.md").read_text()
    report = write_report(tmp_path)
    assert_self_contained(report.read_text(), images=1)


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.sources = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.sources.append(attrs[key])


def assert_self_contained(page: str, images: int):
    parser = _Collector()
    parser.feed(page)
    assert parser.tags.count("img") >= images and "table" in parser.tags
    assert all(src.startswith("data:image/png;base64,") for src in parser.sources), "a report must not link out"


def test_cli_experiments_end_to_end(ratings, tmp_path, capsys):
    data = write_ratings(tmp_path / "r.csv", ratings)
    out = tmp_path / "diag"
    assert (
        main(
            [
                "diagnose",
                "overfit",
                "--data",
                str(data),
                "--model",
                "mlp",
                "--fraction",
                "0.05",
                "--epochs",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "PASS overfit" in capsys.readouterr().out
    assert (
        main(
            [
                "diagnose",
                "overfit",
                "--data",
                str(data),
                "--model",
                "gmf",
                "--fraction",
                "0.05",
                "--epochs",
                "1",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "FAIL overfit" in capsys.readouterr().out

    cmp_dir = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "--data",
                str(data),
                "--split",
                "random",
                "--folds",
                "1,2",
                "--models",
                "mean,bias",
                "--out",
                str(cmp_dir),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "bias" in captured.out and "[1/4] mean on random fold 1" in captured.err and "left" in captured.err
    assert {p.name for p in cmp_dir.iterdir()} >= {
        "comparison.md",
        "comparison.csv",
        "comparison.json",
        "comparison.png",
    }
    assert main(["compare", "--data", str(data), "--models", "mean,svd", "--out", str(cmp_dir)]) == 2
    assert "unknown model 'svd'" in capsys.readouterr().err

    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--split", "random", "--model", "bias", "--out", str(run)]) == 0
    assert main(["report", str(run)]) == 0
    assert_self_contained((run / "report.html").read_text(), images=1)
    assert main(["report", str(tmp_path)]) == 1


def test_tune_resumes_from_storage_and_writes_a_train_config(ratings, tmp_path, capsys):
    data = write_ratings(tmp_path / "r.csv", ratings)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [
        "tune",
        "--data",
        str(data),
        "--split",
        "random",
        "--model",
        "gmf",
        "--epochs",
        "3",
        "--storage",
        storage,
        "--study-name",
        "s",
        "--out",
        str(tmp_path / "tune"),
    ]
    assert main([*args, "--trials", "2"]) == 0
    assert main([*args, "--trials", "3"]) == 0
    captured = capsys.readouterr()
    assert "has 2 finished trials; running 1 more" in captured.err
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert best["model"] == "gmf" and best["trials"] == 3 and best["valid_rmse"] > 0
    run = tmp_path / "tuned"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--split",
                "random",
                "--config",
                str(tmp_path / "tune" / "best.json"),
                "--out",
                str(run),
            ]
        )
        == 0
    )
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "gmf" and config["params"]["factors"] == best["params"]["factors"]
