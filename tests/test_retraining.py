"""Retraining a run on its feedback store (``neucf retrain``, :mod:`neucf.retraining`)."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import synthetic_ratings, write_ratings
from neucf.cli import main
from neucf.datasets import Ratings
from neucf.feedback import Event, FeedbackStore
from neucf.retraining import live_scores, retraining_data, rows_of, training_ratings
from neucf.runs import read_run


def test_the_data_adds_the_events_replaces_pairs_leaves_out_the_erased_and_holds_out_the_newest(rated):
    run, _ = rated
    model = read_run(run)
    train = rows_of(training_ratings(model))
    user, other = train["user"].iloc[0], train["user"].iloc[-1]
    rated_item = train[train["user"] == user]["item"].iloc[0]
    events = [Event(user, rated_item, 1.0, 10.0), Event(user, "brand-new", 5.0, 20.0), Event("visitor", "3", 4.0, 5.0)]
    data = retraining_data(model, None, events, erased={other})
    assert [(e.user, e.item) for e in data.held_out] == [(user, "brand-new")]  # the visitor has one event only
    assert [(e.item, e.rating) for e in data.others[user]] == [(rated_item, 1.0)]
    rows = rows_of(data.train)
    mine = rows[(rows["user"] == user) & (rows["item"] == rated_item)]
    assert mine["rating"].tolist() == [1.0]  # the stored event replaced the training rating
    assert not (rows["user"] == other).any() and data.erased_rows == (train["user"] == other).sum()
    assert ((rows["user"] == user) & (rows["item"] == "brand-new")).sum() == 0  # held out
    assert len(rows) == len(train) - data.erased_rows + 1  # + the visitor's event


def test_the_live_run_is_judged_with_new_items_folded_in_as_its_server_folds_them(rated):
    run, _ = rated
    model = read_run(run)
    users = [str(u) for u in model.user_ids[model.known_users][:6]]
    events = [Event(u, "premiere", 5.0, 10.0 + n) for n, u in enumerate(users[:5])]
    events += [Event(users[5], "1", 3.0, 1.0), Event(users[5], "premiere", 5.0, 50.0)]
    data = retraining_data(model, None, events, erased=set())
    assert [(e.user, e.item) for e in data.held_out] == [(users[5], "premiere")]
    assert len(data.kept) == 6  # the stored events not held out
    scores = live_scores(model, data)
    served = read_run(run)  # what its server predicts, having folded the item in from the five
    served.add_items(interactions=pd.DataFrame({"user": users[:5], "item": "premiere", "rating": 5.0}))
    want = served.predict([users[5]], ["premiere"])[0]
    assert scores["rmse"] == pytest.approx(5.0 - want) and want != pytest.approx(model.mean_)


def test_the_validation_part_is_read_by_the_training_parts_id_maps(rated):
    # a model reads its validation part's indices by the training part's maps: parts with maps
    # of their own paired wrong users and items, and early stopping followed noise
    run, _ = rated
    model = read_run(run)
    valid = Ratings.from_arrays(["visitor", "1"], ["new-item", "2"], [4.0, 2.0], scale=model.scale)
    data = retraining_data(model, valid, [], erased=set())
    assert data.valid.user_ids is data.train.user_ids and data.valid.item_ids is data.train.item_ids
    pairs = list(
        zip(data.train.user_ids[data.valid.users].astype(str), data.train.item_ids[data.valid.items].astype(str))
    )
    assert pairs == [("visitor", "new-item"), ("1", "2")] and data.valid.ratings.tolist() == [4.0, 2.0]


def test_retrain_writes_a_run_judged_beside_the_live_one(rated, tmp_path, capsys):
    run, data = rated
    model = read_run(run)
    rng = np.random.default_rng(0)
    store = FeedbackStore(tmp_path / "feedback.db")
    users = [str(u) for u in data.user_ids[:6]]
    items = [str(i) for i in data.item_ids]
    store.add([Event(u, items[j], float(rng.integers(1, 6)), float(t)) for u in users
               for t, j in enumerate(rng.choice(len(items), 3, replace=False))])  # fmt: skip
    store.add([Event("visitor", items[j], 5.0, float(t)) for t, j in enumerate(range(4))])
    store.erase(str(data.user_ids[10]))
    out = tmp_path / "run2"
    assert main(["retrain", str(run), "--store", str(tmp_path / "feedback.db"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "newest stored event of 7 users" in printed and f"wrote {out}" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    judged = metrics["retrain"]
    assert judged["held_out"] == 7 and judged["events"] == 22 and judged["erased_users"] == 1
    assert judged["new"]["n"] == judged["live"]["n"] == 7
    assert 0 < judged["new"]["rmse"] < 4 and 0 < judged["live"]["rmse"] < 4
    new = read_run(out)
    assert "visitor" in {str(x) for x in new.user_ids[new.known_users]}
    assert str(data.user_ids[10]) not in {str(x) for x in new.user_ids[new.known_users]}
    config = json.loads((out / "config.json").read_text())
    assert config["params"] == json.loads((run / "config.json").read_text())["params"]
    assert config["retrained"]["events"] == 22
    assert len(model.train_[0]) > 0


def test_retrain_judges_a_ranking_run_by_its_lists(tmp_path, capsys):
    data = synthetic_ratings(n_users=40, n_items=25, density=0.4)
    path = write_ratings(tmp_path / "ratings.csv", data)
    run, store_path = tmp_path / "run", tmp_path / "feedback.db"
    assert main(["train", "--data", str(path), "--task", "ranking", "--model", "ease", "--out", str(run)]) == 0
    store = FeedbackStore(store_path)
    store.add(
        [Event(str(u), str(i), None, float(t)) for u in data.user_ids[:5] for t, i in enumerate(data.item_ids[:2])]
    )
    assert main(["retrain", str(run), "--store", str(store_path), "--out", str(tmp_path / "r2")]) == 0
    judged = json.loads((tmp_path / "r2" / "metrics.json").read_text())["retrain"]
    assert judged["held_out"] == 5 and 0 <= judged["new"]["ndcg@10"] <= 1 and 0 <= judged["live"]["ndcg@10"] <= 1
    capsys.readouterr()


def test_retrain_refuses_bad_setups_in_one_line(rated, tmp_path, capsys):
    run, _ = rated
    assert main(["retrain", str(run), "--store", str(tmp_path / "none.db"), "--out", str(tmp_path / "x")]) == 2
    assert "no such feedback store" in capsys.readouterr().err
    FeedbackStore(tmp_path / "feedback.db")
    assert main(["retrain", str(run), "--store", str(tmp_path / "feedback.db"), "--out", str(run / "inside")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inside" in err
