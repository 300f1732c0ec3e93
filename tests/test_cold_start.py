"""Cold start: the cold-start split and the evaluation of each kind of test rating apart."""

import json

import numpy as np
import pytest

from conftest import page_of, run, synthetic_ratings, write_ratings
from neucf.evaluation import PART_KINDS, part_kinds, rating_metrics


@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cold") / "ratings.csv"
    return write_ratings(path, synthetic_ratings(n_users=80, n_items=50, density=0.4))


def test_a_cold_split_folder_trains_and_evaluates_each_kind_apart(ratings_file, tmp_path, capsys):
    split = tmp_path / "split"
    code, out, _ = run(capsys, "data", "split", "--data", ratings_file, "--split", "cold", "--out", split)
    assert code == 0 and sorted(p.name for p in split.glob("*.csv")) == ["test.csv", "train.csv"], out
    code, _, err = run(capsys, "train", "--split-dir", split, "--model", "bias", "--out", tmp_path / "run")
    assert code == 0, err
    code, out, _ = run(capsys, "evaluate", tmp_path / "run")
    result = json.loads(out)
    assert code == 0 and set(result["parts"]) == set(PART_KINDS)
    assert sum(part["n"] for part in result["parts"].values()) == result["n"]
    assert result["parts"]["warm"]["rmse"] < result["parts"]["both_new"]["rmse"]
    lists = result["ranking"]["parts"]
    assert lists["new_items"]["ndcg"] == 0.0  # items nobody rated in train are never listed
    assert 0 < lists["warm"]["ndcg"] <= 1
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert recorded["parts"]["warm"]["rmse"] == pytest.approx(result["parts"]["warm"]["rmse"])


def test_parts_are_reported_only_when_a_test_part_mixes_kinds():
    from neucf.models import Biases

    ratings = synthetic_ratings()
    model = Biases().fit(ratings.subset(np.flatnonzero(ratings.items != 0)))  # one item nobody rated
    kinds = part_kinds(model, ratings)
    assert set(kinds.tolist()) == {0, 1}
    assert "parts" not in rating_metrics(model, ratings.subset(np.flatnonzero(kinds == 0)))
    parts = rating_metrics(model, ratings)["parts"]
    assert sorted(parts) == ["new_items", "warm"] and parts["new_items"]["n"] == int((ratings.items == 0).sum())


# ---- attributes --------------------------------------------------------------------------------
def test_attribute_columns_are_typed_as_a_whole_and_overridden():
    from neucf.attributes import read_attributes

    table = read_attributes(
        b"item,title,genres,year,studio,code\n1,Heat,Crime|Drama,1995,WB,007\n2,Babe,Comedy,,Universal,12\n"
        b"3,Up,,2009,,\n",
        {"code": "category"},
    )
    assert table.kinds == {"genres": "labels", "year": "numeric", "studio": "category", "code": "category"}
    assert table.titles.to_dict() == {1: "Heat", 2: "Babe", 3: "Up"}
    features = table.features([3, 1, 99]).toarray()
    assert features.shape == (3, 3 + 2 + 2 + 2)  # 3 genres, year and its missing mark, 2 studios, 2 codes
    assert not features[2].any() and features[0, :3].sum() == 0  # an unknown id; a film without genres


@pytest.mark.parametrize(
    "content, message",
    [
        (b"item,year\n1,1995\n1,1996\n", "items.csv line 3: id 1 has a row already"),
        (b"item,year\n1,1995\n2\n", "line 3: 1 fields, but the header names 2"),
        (b"item,year,year\n1,1,2\n", "line 1: the header names year"),
        (b"item,year\n", "holds a header but no rows"),
        (b"item,age\n1,x1\n", None),
    ],
)
def test_bad_attribute_files_are_one_line_errors(content, message):
    from neucf.attributes import read_attributes
    from neucf.errors import DataError, UsageError

    if message is None:  # a column with text is a category, unless it is said to be numeric
        assert read_attributes(content).kinds == {"age": "category"}
        with pytest.raises(DataError, match=r"line 2: age 'x1' is not a finite number"):
            read_attributes(content, {"age": "numeric"})
        with pytest.raises(UsageError, match="'colour' is not a kind"):
            read_attributes(content, {"age": "colour"})
        return
    with pytest.raises(DataError, match=message):
        read_attributes(content, name="items.csv")


def test_the_movielens_releases_bring_their_attributes(ml100k, tmp_path, capsys):
    from neucf.attributes import movielens_attributes, read_attributes

    items, users = movielens_attributes(ml100k)
    assert (len(items), len(users)) == (1682, 943)
    assert items.kinds == {"genres": "labels", "year": "numeric"} and "zip1" in users.kinds
    code, _, _ = run(capsys, "data", "split", "--data", ml100k, "--split", "cold", "--out", tmp_path / "s")
    assert code == 0
    again = read_attributes(tmp_path / "s" / "items.csv")
    assert again.kinds == items.kinds and again.titles[1] == "Toy Story (1995)"
    assert read_attributes(tmp_path / "s" / "users.csv", {"zip1": "category"}).kinds == users.kinds


# ---- models that read attributes ---------------------------------------------------------------
def taste_data(n_users=120, n_items=80, seed=0, picky=False):
    """Ratings where a user's group and an item's genre decide most of the rating (a learnable
    link between attributes and taste), with both attribute tables; ``picky``: they also
    decide what a user rates (a user rates mostly their group's genre)."""
    from neucf.attributes import read_attributes
    from neucf.datasets import Ratings

    rng = np.random.default_rng(seed)
    group, genre = rng.integers(0, 3, n_users), rng.integers(0, 3, n_items)
    affinity = np.array([[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 2.0]])
    chance = 0.15 + 0.35 * (affinity[group][:, genre] == 2) if picky else 0.3
    users, items = np.nonzero(rng.random((n_users, n_items)) < chance)
    values = np.clip(np.round(3 + affinity[group[users], genre[items]] + rng.normal(0, 0.5, len(users))), 1, 5)
    ratings = Ratings.from_arrays(users + 1, items + 1, values, scale=(1, 5))
    genres = ("Drama", "Comedy", "Horror")
    item_rows = "".join(f"{i + 1},{genres[g]}|Film,{1990 + i % 10}\n" for i, g in enumerate(genre))
    user_rows = "".join(f"{u + 1},g{g}\n" for u, g in enumerate(group))
    items_table = read_attributes(("item,genres,year\n" + item_rows).encode())
    users_table = read_attributes(("user,group\n" + user_rows).encode())
    return ratings.with_attributes(items_table, users_table)


@pytest.fixture(scope="module")
def taste():
    """A taste split: a fifth of the users and of the items have no training rating."""
    from neucf.splits import cold_split

    ratings = taste_data()
    split = cold_split(ratings.users, ratings.items, seed=0)
    return ratings, ratings.subset(split.train), ratings.subset(split.test)


@pytest.fixture(scope="module")
def gmf_fits(taste):
    """GMF fitted on the taste split with and without the attributes (same seed)."""
    from dataclasses import replace

    from neucf.models import GMF

    _, train, _ = taste
    bare = replace(train, item_attributes=None, user_attributes=None)
    return GMF(factors=8, seed=0).fit(train), GMF(factors=8, seed=0, unknown="fallback").fit(bare)


def test_attributes_score_new_users_and_items_and_inform_warm_predictions(taste, gmf_fits):
    from neucf.evaluation import rating_metrics
    from neucf.models import GMF

    _, train, test = taste
    with_attributes, without = gmf_fits
    assert with_attributes.attribute_sides() == ("user", "item") and without.attribute_sides() == ()
    ours, theirs = rating_metrics(with_attributes, test), rating_metrics(without, test)
    assert ours["n_fallback"] == 0 and theirs["n_fallback"] > 0
    for part in ("new_items", "new_users", "both_new"):  # the towers learnt what group and genre say
        assert ours["parts"][part]["rmse"] < theirs["parts"][part]["rmse"] - 0.2, part
    # the first layer reads group and genre beside the rating vectors: known pairs gain too
    assert ours["parts"]["warm"]["rmse"] < theirs["parts"]["warm"]["rmse"] - 0.01
    assert with_attributes.net.item_projection.feature_weight.abs().sum() > 0
    # with those inputs off, the network on known pairs is the one fitted without attributes
    off = GMF(factors=8, seed=0, item_attribute_input=0, user_attribute_input=0).fit(train)
    assert off.net.item_projection.feature_weight is None
    warm = rating_metrics(off, test)["parts"]["warm"]["rmse"]
    assert warm == pytest.approx(theirs["parts"]["warm"]["rmse"], abs=1e-6)


def test_a_known_users_list_scores_new_items_as_pairs_are_scored(gmf_fits):
    model = gmf_fits[0]
    items = np.flatnonzero(model.listable())
    assert (~model.known_items[items]).any()
    for u in np.flatnonzero(model.known_users)[:3]:
        pairs = model.predict_index(np.full(len(items), u), items)
        np.testing.assert_allclose(model._user_scores(int(u), items), pairs, rtol=1e-5, atol=1e-5)


def test_a_model_with_attributes_saves_lists_and_takes_new_ids(taste, gmf_fits, tmp_path):
    from neucf.attributes import read_attributes
    from neucf.models import Recommender

    _, _, test = taste
    model = gmf_fits[0]
    again = Recommender.load(model.save(tmp_path / "m.pt"))
    users, items = test.user_ids[test.users], test.item_ids[test.items]
    assert np.array_equal(again.predict(users, items), model.predict(users, items))
    new_items = set(again.item_ids[~again.known_items].tolist())
    listed = again.recommend_all(k=20)
    assert new_items & set(listed["item"]), "items nobody rated are listed from their attributes"
    added = again.add_items(read_attributes(b"item,genres,year\nnew,Drama,1995\n"))
    assert added.tolist() == ["new"] and again.predict([1], ["new"]).shape == (1,)
    top = again.recommend(1, k=2, candidates=["new", "nowhere"])
    assert top["item"].tolist() == ["new"]
    fresh = again.recommend(user_attributes={"group": "g0"}, k=5)
    assert len(fresh) == 5 and set(fresh["item"]) <= set(again.item_ids.tolist())
    with pytest.raises(Exception, match="'age' is not one the model knows; it knows group"):
        again.recommend(user_attributes={"age": 3})
    assert again.add_users(read_attributes(b"user,group\nsomeone,g1\n")).tolist() == ["someone"]
    assert len(again.recommend("someone", k=3)) == 3


def test_an_ensemble_blends_its_members_cold_scores(taste):
    from neucf.evaluation import rating_metrics
    from neucf.models import Ensemble

    _, train, test = taste
    model = Ensemble(members="gmf:factors=8,bias", seeds=1).fit(train)
    assert model.attribute_sides() == ("user", "item")
    result = rating_metrics(model, test)
    assert result["n_fallback"] == 0 and set(result["parts"]) == set(PART_KINDS)
    with pytest.raises(Exception, match="scores no item from attributes"):
        Ensemble(members="bias", seeds=1).fit(train).add_items(train.item_attributes)


def test_the_command_line_reads_attributes_everywhere(taste, tmp_path, capsys):
    ratings, _, _ = taste
    data = tmp_path / "ratings.csv"
    ratings.write_csv(data)
    ratings.item_attributes.write_csv(tmp_path / "items.csv", "item")
    ratings.user_attributes.write_csv(tmp_path / "users.csv", "user")
    flags = ["--item-attributes", tmp_path / "items.csv", "--user-attributes", tmp_path / "users.csv"]
    split = tmp_path / "split"
    code, _, err = run(capsys, "data", "split", "--data", data, "--split", "cold", "--out", split, *flags)
    assert code == 0, err
    assert json.loads((split / "attributes.json").read_text())["users.csv"] == {"group": "category"}
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", "--split-dir", split, "--model", "gmf", "--factors", "8", "--out", run_dir)
    assert code == 0, err
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert test["n_fallback"] == 0 and set(test["parts"]) == set(PART_KINDS)
    assert {"items.csv", "users.csv", "attributes.json"} <= set(
        json.loads((run_dir / "config.json").read_text())["files"]
    )
    (tmp_path / "new.csv").write_text("item,genres,year\nfresh,Comedy,2001\n")
    (tmp_path / "cands.csv").write_text("item\nfresh\n")
    code, out, err = run(capsys, "recommend", run_dir, "--user", "1", "--item-attributes", tmp_path / "new.csv",
                         "--candidates", tmp_path / "cands.csv")  # fmt: skip
    assert code == 0 and "fresh" in out, err
    code, _, err = run(capsys, "train", "--split-dir", split, "--ignore-attributes", "--model", "bias",
                       "--out", tmp_path / "bare")  # fmt: skip
    assert code == 0 and json.loads((tmp_path / "bare" / "metrics.json").read_text())["test"]["n_fallback"] > 0
    code, _, err = run(capsys, "data", "describe", "--data", data, "--ignore-attributes", *flags[:2])
    assert code == 2 and "--item-attributes or --ignore-attributes" in err
    code, _, err = run(capsys, "data", "describe", "--data", data, *flags, "--attribute-types", "age=category")
    assert code == 2 and "--attribute-types names 'age'" in err


def test_the_api_takes_a_new_users_attributes_and_candidates(gmf_fits):
    from fastapi.testclient import TestClient

    from neucf.serving import RecommendationService, create_app

    model = gmf_fits[0]
    client = TestClient(create_app(RecommendationService(model)))
    cold = [str(x) for x in model.item_ids[~model.known_items]]
    answer = client.post("/recommendations", json={"attributes": {"group": "g2"}, "k": 3})
    assert answer.status_code == 200 and len(answer.json()["items"]) == 3, answer.text
    answer = client.post("/recommendations", json={"attributes": {"group": "g2"}, "candidates": [cold[0], "nowhere"]})
    assert [x["item"] for x in answer.json()["items"]] == [cold[0]] and answer.json()["ignored"] == ["nowhere"]
    answer = client.post("/recommendations", json={"ratings": [{"item": cold[0], "rating": 4}], "candidates": cold})
    body = answer.json()  # an item nobody rated cannot be folded in, but it is listed
    assert (
        answer.status_code == 200
        and body["ignored"] == [cold[0]]
        and set(x["item"] for x in body["items"]) <= set(cold)
    )
    answer = client.post("/predictions", json={"attributes": {"group": "g0"}, "items": cold[:2]})
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == 2, answer.text
    answer = client.post("/predictions", json={"attributes": {"colour": "red", "group": "g0"}, "items": cold[:1]})
    assert answer.status_code == 200 and answer.json()["ignored_attributes"] == ["colour"], answer.text


def test_ranking_models_list_new_items_by_their_attributes(tmp_path):
    from neucf.attributes import read_attributes
    from neucf.models import Recommender, make_model
    from neucf.splits import cold_split

    ratings = taste_data(picky=True)
    train = ratings.subset(cold_split(ratings.users, ratings.items, seed=0).train)
    model = make_model("ease", task="ranking", l2=10.0).fit(train)
    assert model.attribute_sides() == ("user", "item")
    new = np.flatnonzero(~model.known_items)
    old_users = np.flatnonzero(model.known_users)
    scores = model.predict_index(np.repeat(old_users, len(new)), np.tile(new, len(old_users)))
    scores = scores.reshape(len(old_users), len(new))
    genre = {raw: g for raw, g in zip(ratings.item_attributes.ids, ratings.item_attributes.table["genres"])}
    group = {raw: g for raw, g in zip(ratings.user_attributes.ids, ratings.user_attributes.table["group"])}
    liked = {"g0": "Drama|Film", "g1": "Comedy|Film", "g2": "Horror|Film"}  # taste_data's affinities
    mine = np.array([[genre[model.item_ids[i]] == liked[group[model.user_ids[u]]] for i in new] for u in old_users])
    assert (scores * mine).sum(1).mean() / mine.sum(1).mean() > (scores * ~mine).sum(1).mean() / (~mine).sum(1).mean()
    again = Recommender.load(model.save(tmp_path / "ease.pt"))
    assert np.array_equal(again.predict_index(old_users[:3], new[:3]), model.predict_index(old_users[:3], new[:3]))
    assert len(again.recommend(user_attributes={"group": "g1"}, k=4)) == 4
    again.add_items(read_attributes(b"item,genres,year\nnew,Comedy|Film,1995\n"))
    assert again.recommend(history=[1, 2], k=1, candidates=["new"])["item"].tolist() == ["new"]


def test_the_page_offers_the_newest_items_in_chromium(gmf_fits):
    from neucf.serving import RecommendationService, create_app

    model = gmf_fits[0]
    service = RecommendationService(model)
    newest = service.newest(10)
    assert newest and all(not model.known_items[service._items[x["item"]]] for x in newest)
    with page_of(create_app(service)) as (page, base):
        page.goto(base + "/")
        page.wait_for_selector("#newest li")
        assert page.locator("#newest li").count() == len(newest)
        page.locator("#results li").first.locator(".stars button").nth(4).click()
        page.click("#rank-newest")
        page.wait_for_function("document.getElementById('recommendations-title').textContent.includes('newest')")
        shown = page.locator("#recommendations li").all_inner_texts()
        assert len(shown) == len(newest)
        assert {t.split("\n")[0] for t in shown} == {f"item {x['item']}" for x in newest}


def test_a_releases_tags_are_an_opt_in(tmp_path, capsys):
    from neucf.attributes import movielens_attributes

    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,A (1995),Drama\n2,B (1999),(no genres listed)\n")
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,Pixar,1\n2,1,pixar ,2\n2,2,Jun|gle,3\n")
    rows = "".join(f"{u},{i},{1 + (u + i) % 5},{u}\n" for u in range(1, 11) for i in (1, 2))
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + rows)
    items, users = movielens_attributes(tmp_path)
    assert users is None and items.kinds == {"genres": "labels", "year": "numeric"}
    items, _ = movielens_attributes(tmp_path / "ratings.csv", tags=True)
    assert items.table["tags"].tolist() == ["pixar", "jun gle"] and items.table["genres"].tolist() == ["Drama", ""]
    code, _, err = run(capsys, "data", "split", "--data", tmp_path / "ratings.csv", "--split", "random",
                       "--movielens-tags", "--out", tmp_path / "s")  # fmt: skip
    assert code == 0, err
    assert json.loads((tmp_path / "s" / "attributes.json").read_text())["items.csv"]["tags"] == "labels"


# ---- items from their first interactions -------------------------------------------------------
def test_an_item_folds_in_from_its_first_interactions(taste, tmp_path):
    from dataclasses import replace

    import pandas as pd

    from neucf.errors import DataError, UsageError
    from neucf.models import GMF, Recommender, make_model

    _, train, test = taste
    model = GMF(factors=8, seed=0).fit(replace(train, item_attributes=None, user_attributes=None))
    frame = pd.DataFrame({"user": test.user_ids[test.users], "item": test.item_ids[test.items], "rating": test.ratings})
    old = frame[frame["user"].isin(model.user_ids[model.known_users])]
    new = old[~old["item"].isin(model.item_ids[model.known_items])]
    warm = old[old["item"].isin(model.item_ids[model.known_items])]
    before = model.predict(warm["user"], warm["item"])
    first = new.groupby("item").head(5)
    rest = new.drop(first.index)
    baseline = model.mean_ + pd.Series(model.user_bias_, index=model.user_ids)[rest["user"]].to_numpy()
    assert sorted(model.add_items(interactions=first).tolist()) == sorted(first["item"].unique().tolist())
    folded = model.predict(rest["user"], rest["item"])
    rmse = lambda p: float(np.sqrt(np.mean((p - rest["rating"].to_numpy()) ** 2)))
    assert rmse(folded) < rmse(np.clip(baseline, 1, 5)) - 0.03  # their raters' taste says something
    assert np.array_equal(model.predict(warm["user"], warm["item"]), before)  # trained items keep theirs
    one = first["item"].iloc[0]
    assert one in set(model.recommend_all(k=len(model.item_ids))["item"])
    again = Recommender.load(model.save(tmp_path / "m.pt"))
    assert np.array_equal(again.predict(rest["user"], rest["item"]), folded)
    # a table replaces what the model held of the items it names; a stranger's rows do not count
    assert model.add_items(interactions=first[first["item"] == one].head(1)).tolist() == [one]
    assert model.predict(rest["user"][rest["item"] == one], rest["item"][rest["item"] == one]).tolist() != (
        folded[(rest["item"] == one).to_numpy()].tolist()
    )
    stranger = pd.DataFrame({"user": ["nobody"], "item": [one], "rating": [5.0]})
    assert model.add_items(interactions=stranger).tolist() == []
    assert not model.listable()[model.item_ids.tolist().index(one)]
    with pytest.raises(DataError, match="item .* has no training rating"):
        model.predict([model.user_ids[0]], [one])
    with pytest.raises(DataError, match="takes a rating within the scale 1..5"):
        model.add_items(interactions=first.assign(rating=9.0))
    with pytest.raises(UsageError, match="missing: rating"):
        model.add_items(interactions=first[["user", "item"]])
    mf = make_model("mf", epochs=1).fit(replace(train, item_attributes=None, user_attributes=None))
    with pytest.raises(UsageError, match="cannot fold new items in"):
        mf.add_items(interactions=first)


def test_folded_items_take_the_place_of_their_attributes(gmf_fits):
    import copy

    import pandas as pd

    model = copy.deepcopy(gmf_fits[0])
    cold = np.flatnonzero(~model.known_items & model.listable())
    item = model.item_ids[cold[0]]
    user = model.user_ids[np.flatnonzero(model.known_users)[0]]
    by_attributes = model.predict([user], [item])
    model.add_items(
        interactions=pd.DataFrame({"user": model.user_ids[model.known_users][:30], "item": item, "rating": 1.0})
    )
    assert model.predict([user], [item]) < by_attributes  # thirty raters who hated it say more than its genre
    items = np.flatnonzero(model.listable())
    for u in np.flatnonzero(model.known_users)[:3]:  # a list scores it as pairs are scored
        pairs = model.predict_index(np.full(len(items), u), items)
        np.testing.assert_allclose(model._user_scores(int(u), items), pairs, rtol=1e-5, atol=1e-5)


def test_ranking_models_fold_items_in_from_their_first_interactions(tmp_path):
    from dataclasses import replace

    import pandas as pd

    from neucf.errors import DataError, UsageError
    from neucf.models import Recommender, make_model
    from neucf.splits import cold_split

    ratings = taste_data(picky=True)
    split = cold_split(ratings.users, ratings.items, seed=0)
    train, test = ratings.subset(split.train), ratings.subset(split.test)
    train = replace(train, item_attributes=None, user_attributes=None)
    frame = pd.DataFrame({"user": test.user_ids[test.users], "item": test.item_ids[test.items], "rating": test.ratings})
    for name in ("ease", "hybrid"):
        model = make_model(name, task="ranking", seed=0).fit(train)
        old = frame[frame["user"].isin(model.user_ids[model.known_users])]
        new = old[~old["item"].isin(model.item_ids[model.known_items])]
        first = new.groupby("item").head(5)
        rest, candidates = new.drop(first.index), first["item"].unique()
        assert model.folds_items() and len(model.add_items(interactions=first)) == len(candidates)
        found = []  # ranking only the new items: their first users' tastes say which each user likes
        for user, liked in rest[rest["rating"] >= 4].groupby("user"):
            top = model.recommend(user, k=5, candidates=list(candidates))["item"]
            found.append(len(set(top) & set(liked["item"])) / min(5, len(liked)))
        assert np.mean(found) > 5 / len(candidates) + 0.1, name
        assert set(model.recommend_all(k=len(model.item_ids))["item"]) >= set(candidates)
        again = Recommender.load(model.save(tmp_path / f"{name}.pt"))
        user = rest["user"].iloc[0]
        np.testing.assert_allclose(again.predict([user] * len(candidates), candidates),
                                   model.predict([user] * len(candidates), candidates))  # fmt: skip
        seen = old[old["item"].isin(model.item_ids[model.known_items])]
        visitor = seen[seen["user"] == user].assign(user="visitor")  # a folded-in user scores folded items too
        scores = model.predict(["visitor"] * len(candidates), candidates, history=visitor)
        assert np.isfinite(scores).all() and np.ptp(scores) > 0
    with pytest.raises(DataError, match="takes a rating within the scale 1..5"):
        model.add_items(interactions=first.assign(rating=7.0))
    interactions = first[["user", "item"]]  # a ranking model takes interactions without ratings
    assert len(model.add_items(interactions=interactions)) == len(candidates)
    sparse = make_model("sparse-ease", task="ranking").fit(train)
    with pytest.raises(UsageError, match="cannot fold new items in"):
        sparse.add_items(interactions=interactions)


def test_a_part_of_the_hybrid_that_reads_none_of_an_items_rows_leaves_it_out():
    import pandas as pd

    from neucf.datasets import Ratings
    from neucf.models import make_model

    base = taste_data(picky=True)
    users, items = base.user_ids[base.users], base.item_ids[base.items]
    # "grump" rated five items, all 1: the relevant-only EASE knows no such user
    grump = pd.DataFrame({"user": "grump", "item": items[:5], "rating": 1.0})
    frame = pd.concat([pd.DataFrame({"user": users, "item": items, "rating": base.ratings}), grump])
    model = make_model("hybrid", task="ranking", seed=0, mix=0.3).fit(
        Ratings.from_arrays(frame["user"].to_numpy(object), frame["item"].to_numpy(object), frame["rating"].to_numpy())
    )
    assert model.pick_relevant_ is not None
    rows = pd.DataFrame({"user": ["grump", users[0]], "item": ["lonely", "shared"], "rating": [5.0, 2.0]})
    assert sorted(model.add_items(interactions=rows).tolist()) == ["lonely", "shared"]
    assert "lonely" not in set(model.pick_relevant_.item_ids)  # its only row is grump's
    history = pd.DataFrame({"user": "visitor", "item": items[:3], "rating": 5.0})
    listed = model.recommend("visitor", k=len(model.item_ids), history=history)
    assert {"lonely", "shared"} <= set(listed["item"])


def test_autorec_reads_item_attributes_in_its_encoder(taste, tmp_path):
    from dataclasses import replace

    from neucf.evaluation import rating_metrics
    from neucf.models import AutoRec, Recommender

    _, train, test = taste
    bare = replace(train, item_attributes=None, user_attributes=None)
    fits = {
        name: AutoRec(hidden=16, reg=1, seed=0, unknown="fallback", **params).fit(data)
        for name, (data, params) in {
            "with": (train, {}), "without": (bare, {}), "off": (train, {"item_attribute_input": 0}),
        }.items()
    }  # fmt: skip
    warm = {name: rating_metrics(m, test)["parts"]["warm"]["rmse"] for name, m in fits.items()}
    assert warm["with"] < warm["without"] - 0.01, warm  # genre decides much of a rating here
    assert fits["with"].net.feature_encoder.weight.abs().sum() > 0
    assert fits["off"].net.feature_encoder is None and warm["off"] == pytest.approx(warm["without"], abs=1e-6)
    again = Recommender.load(fits["with"].save(tmp_path / "autorec.pt"))
    users, items = test.user_ids[test.users], test.item_ids[test.items]
    assert np.array_equal(again.predict(users, items), fits["with"].predict(users, items))
