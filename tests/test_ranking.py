"""Top-N lists and interactions without ratings (issue 28): the ranking models on data where the
right list is obvious, EASE against a direct solve, fold-in, the sampled protocol by hand, the
new splits and filter, implicit files through every command, and the bad inputs."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import one_line, run, synthetic_ratings, write_ratings
from neucf.cli import main
from neucf.datasets import Ratings, k_core, read_ratings_file
from neucf.errors import DataError, UsageError
from neucf.evaluation import sampled_ranking
from neucf.models import EASE, Popularity, SparseEASE, make_model, model_names
from neucf.serving import RecommendationService, create_app
from neucf.splits import leave_last_out_split, user_ratio_split

FAST = {
    "als": {"factors": 4, "iterations": 5},
    "bpr": {"factors": 8, "epochs": 30, "lr": 0.05, "batch_size": 256},
    "neumf": {"factors": 16, "mlp_factors": 4, "epochs": 40, "lr": 0.01, "batch_size": 32},
    "ease": {},
    "hybrid": {},
    "pop": {},
    "sparse-ease": {"neighbours": 4},
}


def two_groups(n_per_group: int = 30, n_items: int = 12, per_user: int = 4, seed: int = 0) -> Ratings:
    """Users of group A interact with items 0..5, of group B with 6..11, each with ``per_user``
    of them: an unseen item of a user's own group is the right recommendation."""
    rng = np.random.default_rng(seed)
    half = n_items // 2
    users, items = [], []
    for u in range(2 * n_per_group):
        group = u // n_per_group
        chosen = rng.choice(half, per_user, replace=False) + group * half
        users += [f"u{u}"] * per_user
        items += [f"i{int(i):02d}" for i in chosen]
    return Ratings.from_arrays(users, items, implicit=True)


@pytest.fixture(scope="module")
def groups() -> Ratings:
    return two_groups()


def group_of_item(raw: str, n_items: int = 12) -> int:
    return int(raw[1:]) // (n_items // 2)


@pytest.mark.parametrize("name", ["ease", "als", "bpr", "neumf", "hybrid", "sparse-ease"])
def test_each_ranking_model_recommends_the_users_own_group(name, groups):
    model = make_model(name, task="ranking", **FAST[name]).fit(groups)
    hits = 0
    for u in range(0, 60, 6):
        raw = f"u{u}"
        top = model.recommend(raw, k=1)["item"].iloc[0]
        hits += group_of_item(top) == u // 30
        seen = set(groups.item_ids[groups.items[groups.users == groups.user_index([raw])[0]]])
        assert top not in seen
    assert hits == 10, name


def test_ease_matches_a_direct_solve(groups):
    model = EASE(l2=3.0, dropout=0.0).fit(groups)
    x = groups.user_item.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 3.0 * np.eye(x.shape[1]))
    direct = np.eye(x.shape[1]) - p / np.diag(p)  # B = I - P diag(1 / diag(P))
    np.testing.assert_allclose(model.weights_, direct, atol=1e-5)
    assert np.allclose(np.diag(model.weights_), 0)


def test_sparse_ease_with_every_other_item_as_a_neighbour_is_ease():
    """Each item's ridge regression on all the others is EASE's column (here every pair of items
    co-occurs); fewer neighbours keep each item's most similar ones by cosine."""
    from neucf.models.sparse_ease import gram, nearest

    rng = np.random.default_rng(0)
    dense = rng.random((60, 9)) < 0.5
    r = Ratings.from_arrays(*np.nonzero(dense), implicit=True)
    x = r.user_item.toarray().astype(np.float64)
    assert (x.T @ x > 0).all()
    for p in (0.0, 0.5):
        full = SparseEASE(l2=3.0, dropout=p, neighbours=8).fit(r)
        np.testing.assert_allclose(full.b_.toarray(), EASE(l2=3.0, dropout=p).fit(r).weights_, atol=1e-5)
    g = x.T @ x
    cosine = g / np.sqrt(np.outer(np.diag(g), np.diag(g)))
    np.fill_diagonal(cosine, -1)
    index, real = nearest(gram(r.user_item.tocsr().astype(np.float32)), 3)
    assert real.all() and (np.sort(cosine, 1)[:, ::-1][:, :3] == np.take_along_axis(cosine, index, 1)).all()
    few = SparseEASE(l2=3.0, dropout=0.0, neighbours=3).fit(r)
    assert (np.diff(few.b_.tocsc().indptr) <= 3).all() and few.b_.diagonal().sum() == 0


def test_sparse_ease_caps_each_items_row_at_its_strongest_weights():
    """A popular item in every neighbourhood scores at most ``fan_out`` items, keeping its
    largest weights by absolute value; the other weights are those of the uncapped model."""
    rng = np.random.default_rng(1)
    dense = rng.random((200, 30)) < 0.2
    dense[:, 0] = rng.random(200) < 0.9  # item 0 is every item's nearest neighbour
    r = Ratings.from_arrays(*np.nonzero(dense), implicit=True)
    free = SparseEASE(l2=2.0, dropout=0.0, neighbours=5, fan_out=100).fit(r).b_.toarray()
    capped = SparseEASE(l2=2.0, dropout=0.0, neighbours=5, fan_out=3).fit(r).b_.toarray()
    rows = (free != 0).sum(1)
    assert rows.max() > 3 and ((capped != 0).sum(1) == np.minimum(rows, 3)).all()
    kept = capped != 0
    np.testing.assert_array_equal(capped[kept], free[kept])
    for row in np.flatnonzero(rows > 3):
        strongest = np.sort(np.abs(free[row]))[::-1][:3]
        np.testing.assert_array_equal(np.sort(np.abs(capped[row]))[::-1][:3], strongest)
    with pytest.raises(UsageError, match="fan_out must be >= 1"):
        SparseEASE(fan_out=0)


def test_the_default_list_model_picks_its_path_by_the_catalogues_size(groups, monkeypatch, tmp_path):
    """Above DENSE_ITEMS items, 'will they pick it' is the neighbourhood EASE; the choice is in
    the model's params (a replay takes the same path) and in the log."""
    from neucf.models import hybrid

    assert make_model("hybrid", task="ranking").fit(groups).get_params()["pick"] == "ease"
    monkeypatch.setattr(hybrid, "DENSE_ITEMS", 10)  # groups has 12 items
    model = make_model("hybrid", task="ranking", neighbours=4).fit(groups)
    assert model.get_params()["pick"] == "sparse-ease" and isinstance(model.pick_, SparseEASE)
    assert group_of_item(model.recommend("u0", k=1)["item"].iloc[0]) == 0  # its own group
    loaded = type(model).load(model.save(tmp_path / "m.pt"))
    assert loaded.get_params()["pick"] == "sparse-ease"
    assert loaded.recommend("u40", k=3)["item"].tolist() == model.recommend("u40", k=3)["item"].tolist()
    assert make_model("hybrid", task="ranking", pick="ease").fit(groups).get_params()["pick"] == "ease"
    rated = synthetic_ratings(n_users=80, n_items=40, density=0.3)
    both = make_model("hybrid", task="ranking", like="bias", neighbours=8).fit(rated)
    assert isinstance(both.pick_, SparseEASE) and both.like_ is not None and both.slope_ in (0.7, 1.0, 1.4)
    assert (both.pick_relevant_ is not None) == (both.mix_ > 0)
    assert np.isfinite(both.recommend(rated.user_ids[0], k=5)["prediction"]).all()
    # every list through the sparse scores is the list of the dense scores
    for fitted in (model, both):
        sparse = fitted.recommend_all(k=5)
        monkeypatch.setattr(type(fitted), "_sparse_scores", lambda self, users: None)
        dense = fitted.recommend_all(k=5)
        monkeypatch.undo()
        assert sparse[["user", "item", "rank"]].equals(dense[["user", "item", "rank"]])
        np.testing.assert_allclose(sparse["prediction"], dense["prediction"], rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="pick must be one of ease, sparse-ease"):
        make_model("hybrid", task="ranking", pick="dense")


def test_ease_chooses_its_settings_on_validation_and_the_dropout_term_is_edlae(groups):
    model = EASE().fit(groups)
    assert model.l2_ > 0 and model.dropout_ in (0.0, 0.5)
    x = groups.user_item.toarray().astype(np.float64)
    gram = x.T @ x
    edlae = EASE(l2=2.0, dropout=0.5).fit(groups)
    p = np.linalg.inv(gram + np.diag(2.0 + np.diag(gram)))  # p / (1 - p) = 1
    np.testing.assert_allclose(edlae.weights_, np.eye(len(p)) - p / np.diag(p), atol=1e-5)


@pytest.mark.parametrize("name", ["ease", "als", "neumf", "hybrid"])
def test_folding_in_a_known_users_interactions_gives_their_trained_scores(name, groups):
    model = make_model(name, task="ranking", **FAST[name]).fit(groups)
    for raw in ("u3", "u40"):
        u = int(groups.user_index([raw])[0])
        own = list(groups.item_ids[groups.items[groups.users == u]])
        trained = model.recommend(raw, k=6)
        folded = model.recommend(None, k=6, history=own)
        assert list(trained["item"]) == list(folded["item"])
        np.testing.assert_allclose(trained["prediction"], folded["prediction"], rtol=1e-4, atol=1e-5)


def test_bpr_folds_a_new_user_into_their_group(groups):
    model = make_model("bpr", task="ranking", **FAST["bpr"]).fit(groups)
    top = model.recommend(None, k=2, history=["i00", "i01", "i02"])
    assert all(group_of_item(i) == 0 for i in top["item"])


def test_the_sampled_protocol_by_hand():
    # items a, b, c, d with 4, 3, 2, 1 interactions; user x has a (train) and c (test), so the
    # one negative drawn from the unseen known items is b or d
    users = ["x", "y", "y", "y", "z", "z", "w", "w", "v", "x"]
    items = ["a", "a", "b", "c", "a", "b", "a", "b", "d", "c"]
    r = Ratings.from_arrays(users, items, implicit=True)
    model = Popularity(task="ranking").fit(r.subset(np.arange(9)))
    test = r.subset([9])
    drawn = {}
    for seed in range(40):
        result = sampled_ranking(model, test, k=1, negatives=1, seed=seed)
        # against b (3 users) c (1 user in train) ranks second: a miss; against d (1) a tie, which counts
        # against it: a miss too, so hit rate and NDCG@1 are 0; with k=2 it always ranks second
        assert (result["hit_rate"], result["ndcg"], result["pairs"]) == (0.0, 0.0, 1)
        drawn[sampled_ranking(model, test, k=2, negatives=1, seed=seed)["ndcg"]] = True
    assert set(drawn) == {1 / np.log2(3)}
    with pytest.raises(DataError, match="needs 5 unseen items"):
        sampled_ranking(model, test, negatives=5)


def test_leave_last_out_and_user_ratio_on_hand_made_data():
    users = np.array([0, 0, 0, 0, 1, 1, 2, 1])
    stamps = np.array([10, 40, 20, 40, 5, 9, 1, 7])  # user 0's two latest tie: the later line wins
    split = leave_last_out_split(users, stamps)
    assert split.test.tolist() == [3, 5] and split.valid.tolist() == [1, 7] and split.train.tolist() == [0, 2, 4, 6]
    with pytest.raises(DataError, match="needs timestamps"):
        leave_last_out_split(users, None)
    many = np.repeat(np.arange(3), [10, 20, 9])
    split = user_ratio_split(many, seed=1)
    for u, n in enumerate((10, 20, 9)):
        mine = many == u
        assert mine[split.test].sum() == mine[split.valid].sum() == int(0.1 * n)
    assert split.sizes() == {"train": 33, "valid": 3, "test": 3}
    assert np.array_equal(user_ratio_split(many, seed=1).test, split.test)
    assert not np.array_equal(user_ratio_split(many, seed=2).test, split.test)


def test_k_core_repeats_until_stable():
    r = Ratings.from_arrays([1, 1, 2, 2, 3, 4], ["a", "b", "a", "b", "a", "c"], implicit=True)
    core = k_core(r, 2)
    assert sorted(core.user_ids.tolist()) == [1, 2] and sorted(core.item_ids.tolist()) == ["a", "b"]
    with pytest.raises(DataError, match="--k-core 3 leaves nothing"):
        k_core(r, 3)


def test_reading_interactions(tmp_path):
    plays = tmp_path / "plays.csv"
    plays.write_text("user,item,plays,timestamp\n1,a,5,10\n1,b,2,11\n2,a,1,12\n")
    r = read_ratings_file(plays)
    assert r.implicit and r.scale is None and r.ratings.tolist() == [5.0, 2.0, 1.0]
    bare = read_ratings_file(b"u1,a\nu2,b\nu1,b\n")
    assert bare.implicit and bare.ratings.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(DataError, match="weight -1 is not a positive count"):
        read_ratings_file(b"user,item,count\n1,a,-1\n")


# ---- implicit files through every command -------------------------------------------------------


@pytest.fixture(scope="module")
def plays(tmp_path_factory) -> Path:
    """Interactions with timestamps: every user has 10 of the 20 items of their group, in time order."""
    folder = tmp_path_factory.mktemp("plays")
    r = two_groups(n_per_group=40, n_items=40, per_user=10)
    frame = r.to_frame()
    frame["timestamp"] = np.arange(len(frame)) * 60
    frame.to_csv(folder / "plays.csv", index=False)
    return folder / "plays.csv"


def test_data_commands_on_interactions(plays, tmp_path, capsys):
    code, out, _ = run(capsys, "data", "describe", "--data", plays, "--json")
    summary = json.loads(out)
    assert code == 0 and summary["implicit"] and summary["interactions"] == 800 and summary["has_timestamps"]
    for split in ("leave-last-out", "user-ratio", "random"):
        folder = tmp_path / split
        code, out, err = run(capsys, "data", "split", "--data", plays, "--split", split, "--k-core", "2",
                             "--out", folder)  # fmt: skip
        assert code == 0, err
        header = (folder / "train.csv").read_text().splitlines()[0]
        assert header == "user,item,timestamp"
    test = pd.read_csv(tmp_path / "leave-last-out" / "test.csv")
    assert len(test) == 80 and test["user"].is_unique  # each user's latest
    code, _, err = run(capsys, "data", "split", "--data", plays, "--split", "random", "--k-core", "500",
                       "--out", tmp_path / "empty")  # fmt: skip
    assert code == 1 and one_line(err) and "--k-core 500 leaves nothing" in err


@pytest.fixture(scope="module")
def implicit_run(plays, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "hybrid"
    assert main(["train", "--data", str(plays), "--split", "leave-last-out", "--out", str(out)]) == 0
    return out


def test_train_evaluate_predict_recommend_on_interactions(implicit_run, plays, tmp_path, capsys):
    config = json.loads((implicit_run / "config.json").read_text())
    metrics = json.loads((implicit_run / "metrics.json").read_text())
    assert config["model"] == "hybrid" and config["task"] == "ranking"
    assert "rmse" not in metrics["test"] and metrics["test"]["ranking"]["relevant"] is None
    code, out, _ = run(capsys, "evaluate", implicit_run)
    result = json.loads(out)
    assert code == 0 and set(result) == {"ranking"} and result["ranking"]["protocol"] == "full"
    assert result["ranking"]["ndcg"] > 0.3  # the group structure is easy
    code, out, _ = run(capsys, "evaluate", implicit_run, "--protocol", "sampled", "--negatives", "20")
    sampled = json.loads(out)["ranking"]
    assert code == 0 and sampled["protocol"] == "sampled" and sampled["negatives"] == 20
    assert sampled["ndcg"] > result["ranking"]["ndcg"]  # fewer competitors: a kinder figure
    code, _, err = run(capsys, "evaluate", implicit_run, "--protocol", "sampled")
    assert code == 1 and one_line(err) and "needs 99 unseen items per user" in err
    code, _, err = run(capsys, "evaluate", implicit_run, "--relevant", "4")
    assert code == 2 and one_line(err) and "interactions have no ratings" in err
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user,item\nu0,i05\nu0,i25\n")
    code, out, _ = run(capsys, "predict", implicit_run, "--pairs", pairs)
    scores = pd.read_csv(io.StringIO(out))
    assert code == 0 and scores["prediction"][0] > scores["prediction"][1]  # own group first
    history = tmp_path / "history.csv"
    history.write_text("user,item\nnew,i22\nnew,i23\nnew,i24\nnew,unknown\n")
    code, out, _ = run(capsys, "recommend", implicit_run, "--user", "new", "--history", history, "--json")
    top = json.loads(out)
    assert code == 0 and all(group_of_item(x["item"], 40) == 1 for x in top[:3])
    code, _, _ = run(capsys, "recommend", implicit_run, "--all-users", "--out", tmp_path / "all.csv")
    lists = pd.read_csv(tmp_path / "all.csv")
    assert code == 0 and list(lists.columns) == ["user", "item", "rank", "prediction"]
    valid = pd.read_csv(implicit_run / "valid.csv")
    train = pd.read_csv(plays)
    seen = set(zip(valid["user"], valid["item"]))
    assert not seen & set(zip(lists["user"], lists["item"]))  # valid items are never listed
    assert len(train) > len(lists) / 10
    code, _, _ = run(capsys, "report", implicit_run)
    assert code == 0 and "ndcg" in (implicit_run / "report.html").read_text()


def test_rating_task_and_diagnose_on_interactions_are_one_line(plays, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", plays, "--task", "rating", "--out", tmp_path / "r")
    assert code == 2 and one_line(err) and "--task ranking" in err and not (tmp_path / "r").exists()
    code, _, err = run(capsys, "diagnose", "noise", "--data", plays, "--out", tmp_path / "d")
    assert code == 2 and one_line(err) and "diagnose needs ratings" in err and not (tmp_path / "d").exists()
    code, _, err = run(capsys, "train", "--data", plays, "--task", "ranking", "--model", "mf", "--out", tmp_path / "r")
    assert code == 2 and one_line(err) and "not made for the ranking task" in err


def test_compare_and_tune_rank_on_interactions(plays, tmp_path, capsys):
    code, _, err = run(capsys, "compare", "--data", plays, "--split", "user-ratio", "--folds", "1",
                         "--models", "pop,ease", "--out", tmp_path / "cmp")  # fmt: skip
    assert code == 0, err
    table = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["table"]
    assert {row["model"] for row in table} == {"pop", "ease"} and "rmse_mean" not in table[0]
    assert (
        next(r for r in table if r["model"] == "ease")["ndcg_mean"]
        > next(r for r in table if r["model"] == "pop")["ndcg_mean"]
    )
    code, _, err = run(capsys, "tune", "--data", plays, "--split", "user-ratio", "--task", "ranking",
                         "--model", "ease", "--trials", "3", "--storage", f"sqlite:///{tmp_path / 't.db'}",
                         "--study-name", "s", "--out", tmp_path / "t")  # fmt: skip
    assert code == 0, err
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert best["metric"] == "ndcg" and best["task"] == "ranking" and "l2" in best["params"]
    code, _, err = run(capsys, "train", "--data", plays, "--split", "user-ratio", "--config", tmp_path / "t" / "best.json",
                       "--out", tmp_path / "tuned")  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["task"] == "ranking"


def test_serving_an_implicit_run(implicit_run):
    service = RecommendationService.from_run(implicit_run)
    client = TestClient(create_app(service))
    info = client.get("/model").json()
    assert info["task"] == "ranking" and info["implicit"] and info["scale"] is None
    body = client.post("/recommendations", json={"ratings": [{"item": "i00"}, {"item": "new-item"}], "k": 3}).json()
    assert body["ignored"] == ["new-item"] and all(group_of_item(x["item"], 40) == 0 for x in body["items"])
    refused = client.post("/recommendations", json={"ratings": [{"item": "i00", "rating": 5}]})
    assert refused.status_code == 422 and "without a rating" in json.dumps(refused.json())
    assert client.head("/health").status_code == 200


# ---- ranking on rated data ----------------------------------------------------------------------
def test_ranking_on_rated_data_keeps_its_threshold_and_both_models(tmp_path, capsys):
    data = write_ratings(tmp_path / "r.csv", synthetic_ratings(n_users=80, n_items=40, density=0.3))
    code, out, err = run(capsys, "train", "--data", data, "--task", "ranking", "--relevant", "3",
                         "--out", tmp_path / "run")  # fmt: skip
    assert code == 0, err
    assert "test NDCG@10" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["task"] == "ranking" and config["model"] == "hybrid" and config["params"]["relevant"] == 3
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["ranking"]["relevant"] == 3
    history = tmp_path / "h.csv"
    history.write_text("user,item,rating\nnew,100,5\nnew,101,1\nnew,102,\n")  # one interaction without a rating
    code, out, err = run(capsys, "recommend", tmp_path / "run", "--user", "new", "--history", history, "--json")
    assert code == 0 and len(json.loads(out)) == 10, err
    code, out, _ = run(capsys, "train", "--data", data, "--task", "ranking", "--model", "neumf", "--epochs", "3",
                       "--out", tmp_path / "neural")  # fmt: skip
    assert code == 0 and json.loads((tmp_path / "neural" / "config.json").read_text())["params"]["factors"] == 256
    code, out, err = run(capsys, "evaluate", tmp_path / "neural")  # read back as the ranking neumf
    assert code == 0 and json.loads(out)["ranking"]["relevant"] == 4, err  # 3/4 up the scale: no --relevant here


def test_every_ranking_model_round_trips(groups, tmp_path):
    for name in model_names("ranking"):
        model = make_model(name, task="ranking", **FAST[name]).fit(groups)
        path = model.save(tmp_path / f"{name}.pt")
        loaded = type(model).load(path)
        users, items = groups.user_ids[groups.users[:20]], groups.item_ids[groups.items[::-1][:20]]
        np.testing.assert_allclose(loaded.predict(users, items), model.predict(users, items), rtol=1e-5, atol=1e-6)
        assert loaded.task == "ranking" and loaded.implicit


def test_ease_refuses_an_item_count_its_matrices_cannot_hold(groups, monkeypatch):
    from neucf.models import memory

    monkeypatch.setattr(memory, "memory_bytes", lambda: 24 * 10 * 10 * 2)  # room for 10 items
    with pytest.raises(UsageError, match=r"12 items take .* allow at most 10 items.*--model sparse-ease"):
        EASE().fit(groups)


def test_the_taste_group_generator_is_the_shared_scripts_row_for_row(tmp_path):
    """``taste_group_frame`` (at least as many items as its 400 groups) gives the rows of ``../shared/tools/synth_implicit.py`` (the issue's
    generator) for the same arguments, and the same rows for the same seed."""
    import subprocess
    import sys

    from neucf.datasets.synthetic import taste_group_frame

    frame = taste_group_frame(300, 5000, 8, seed=3)
    assert frame.equals(taste_group_frame(300, 5000, 8, seed=3)) and not frame.equals(taste_group_frame(300, 5000, 8))
    assert frame.groupby("user").size().min() >= 1 and frame["item"].max() < 5000
    script = Path(__file__).resolve().parents[2] / "shared" / "tools" / "synth_implicit.py"
    if not script.exists():
        pytest.skip(f"{script} is not here to compare with")
    out = tmp_path / "s.csv"
    subprocess.run([sys.executable, str(script), str(out), "300", "5000", "8", "3"], check=True, capture_output=True)
    assert frame.equals(pd.read_csv(out))


def test_sparse_ease_refuses_data_whose_gram_matrix_cannot_fit(groups, monkeypatch):
    from neucf.models import memory

    monkeypatch.setattr(memory, "memory_bytes", lambda: 10_000)
    with pytest.raises(UsageError, match=r"sparse EASE on 240 interactions would take about .*--neighbours"):
        SparseEASE().fit(groups)
