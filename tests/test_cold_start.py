"""Cold start: the cold-start split and the evaluation of each kind of test rating apart."""

import json

import numpy as np
import pytest

from conftest import run, synthetic_ratings, write_ratings
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
