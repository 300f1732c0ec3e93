"""Checks on the real MovieLens 100k (skipped unless NEUCF_ML100K points at it)."""

import numpy as np

from neucf.datasets import filter_min_ratings, load
from neucf.splits import coverage_split, movielens_split


def test_ml100k_loads_with_the_published_counts(ml100k):
    r = load(data=ml100k)
    assert (len(r), r.n_users, r.n_items) == (100_000, 943, 1_682)
    assert r.scale == (1.0, 5.0) and r.timestamps is not None
    assert r.item_titles[r.item_index([1])[0]] == "Toy Story (1995)"


def test_ml100k_min3_filter_and_coverage_split(ml100k):
    r = filter_min_ratings(load(data=ml100k), min_item=3)
    assert (len(r), r.n_users, r.n_items) == (99_723, 943, 1_473)
    split = coverage_split(r.users, r.items, seed=0)
    sizes = split.sizes()
    print(f"ml-100k coverage split (seed 0): {sizes}")
    assert sum(sizes.values()) == len(r)
    assert len(np.unique(np.concatenate([split.train, split.valid, split.test]))) == len(r)
    for part in (split.train, split.valid, split.test):
        assert len(np.unique(r.users[part])) == 943
        assert len(np.unique(r.items[part])) == 1_473


def test_ml100k_u1_is_the_first_20000_rows(ml100k):
    r = load(data=ml100k)
    split = movielens_split(r.users, 1)
    np.testing.assert_array_equal(split.test, np.arange(20_000))
    # u1.test starts (sorted) with user 1's ratings of items 6, 10, 12 in the real release
    test_pairs = set(zip(r.user_ids[r.users[split.test]].tolist(), r.item_ids[r.items[split.test]].tolist()))
    assert {(1, 6), (1, 10), (1, 12)} <= test_pairs
