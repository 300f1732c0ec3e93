import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import synthetic_ratings
from neucf.errors import DataError, UsageError
from neucf.splits import Split, coverage_split, kfold_split, movielens_split, random_split, temporal_split


def assert_disjoint_cover(split: Split, n: int):
    joined = np.concatenate([split.train, split.valid, split.test])
    assert len(joined) == n, "parts must hold every rating exactly once"
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


@st.composite
def rating_tables(draw, min_per_item=3, min_per_user=3):
    """Random users/items arrays in which every item has >= min_per_item ratings and every
    user >= min_per_user (the table is wide and tall enough for both)."""
    n_users = draw(st.integers(max(3, min_per_item), 25))
    n_items = draw(st.integers(max(3, min_per_user), 25))
    seed = draw(st.integers(0, 2**16))
    density = draw(st.floats(0.05, 1.0))
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    for u in range(n_users):
        mask[u, rng.choice(n_items, min(min_per_user, n_items), replace=False)] = True
    for i in range(n_items):
        mask[rng.choice(n_users, min(min_per_item, n_users), replace=False), i] = True
    users, items = np.nonzero(mask)
    order = rng.permutation(len(users))
    return users[order], items[order], seed


def assert_covers_everyone(split, users, items):
    assert_disjoint_cover(split, len(users))
    for part in (split.train, split.valid, split.test):
        assert set(users[part]) == set(users), "a user is missing from a part"
        assert set(items[part]) == set(items), "an item is missing from a part"


@settings(max_examples=60, deadline=None)
@given(rating_tables(min_per_item=4, min_per_user=6), st.integers(0, 1000))
def test_coverage_puts_every_user_and_item_in_every_part(table, seed):
    users, items, _ = table
    assert_covers_everyone(coverage_split(users, items, seed=seed), users, items)


@settings(max_examples=60, deadline=None)
@given(rating_tables(min_per_item=3, min_per_user=3), st.integers(0, 1000))
def test_coverage_on_tight_data_succeeds_or_says_why(table, seed):
    """With only 3 ratings per user some tables admit no such split; then a clear error, never a broken split."""
    users, items, _ = table
    try:
        split = coverage_split(users, items, seed=seed)
    except DataError as exc:
        assert "coverage split impossible" in str(exc)
        return
    assert_covers_everyone(split, users, items)


@settings(max_examples=30, deadline=None)
@given(rating_tables(min_per_item=4, min_per_user=6), st.integers(0, 1000))
def test_coverage_is_deterministic(table, seed):
    users, items, _ = table
    a, b = coverage_split(users, items, seed=seed), coverage_split(users, items, seed=seed)
    for p in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(a, p), getattr(b, p))


def test_coverage_respects_fractions_on_the_remainder():
    r = synthetic_ratings(n_users=200, n_items=100, density=0.3)
    split = coverage_split(r.users, r.items, seed=1)
    sizes = split.sizes()
    # 3 ratings per item are fixed; the rest is 80/20 plus a few moved ratings
    rest = len(r) - 3 * r.n_items
    assert abs(sizes["train"] - (r.n_items + 0.8 * rest)) < 0.02 * len(r)
    assert sizes["valid"] < r.n_items + r.n_users


def test_coverage_impossible_cases_say_how_to_fix():
    with pytest.raises(DataError, match="fewer than 3 ratings.*--min-item-ratings 3"):
        coverage_split(np.array([0, 1, 2, 0, 1]), np.array([0, 0, 0, 1, 1]))
    with pytest.raises(DataError, match="--min-user-ratings 3"):
        coverage_split(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3]), np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1]))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(0, 1000), st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.0, 0.5), (0.7, 0.3, 0.0)]))
def test_random_split_is_a_cover_with_the_right_sizes(n, seed, fractions):
    split = random_split(n, seed=seed, fractions=fractions)
    assert_disjoint_cover(split, n)
    assert abs(len(split.test) - fractions[2] * n) <= 1
    again = random_split(n, seed=seed, fractions=fractions)
    np.testing.assert_array_equal(split.test, again.test)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 200), st.integers(2, 10), st.integers(0, 100))
def test_kfold_tests_every_rating_exactly_once(n, k, seed):
    k = min(k, n)
    folds = kfold_split(n, k=k, seed=seed)
    for split in folds:
        assert_disjoint_cover(split, n)
    tested = np.concatenate([s.test for s in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(n))


def test_movielens_folds_follow_mku_sh():
    users = np.repeat(np.arange(50), 40)  # 2000 rows
    for i in range(1, 6):
        s = movielens_split(users, i)
        np.testing.assert_array_equal(s.test, np.arange((i - 1) * 400, i * 400))
        assert len(s.valid) == 0
        assert_disjoint_cover(s, len(users))
    shuffled = np.random.default_rng(0).permutation(users)
    ua, ub = movielens_split(shuffled, "a"), movielens_split(shuffled, "ub")
    assert (np.bincount(shuffled[ua.test]) == 10).all() and (np.bincount(shuffled[ub.test]) == 10).all()
    assert not set(ua.test) & set(ub.test)
    # ua takes each user's first ten ratings in file order
    first_rows = [np.flatnonzero(shuffled == u)[:10] for u in range(50)]
    np.testing.assert_array_equal(np.sort(np.concatenate(first_rows)), ua.test)
    with pytest.raises(UsageError):
        movielens_split(users, 6)


@settings(max_examples=40, deadline=None)
@given(rating_tables(min_per_item=1, min_per_user=1), st.integers(0, 100))
def test_temporal_holds_out_each_users_latest(table, seed):
    users, _, tseed = table
    times = np.random.default_rng(tseed).integers(0, 50, len(users))
    split = temporal_split(users, times, seed=seed)
    assert_disjoint_cover(split, len(users))
    for u in np.unique(users):
        train_t = times[split.train][users[split.train] == u]
        test_t = times[split.test][users[split.test] == u]
        if len(train_t) and len(test_t):
            assert train_t.max() <= test_t.min()


def test_bad_fractions_and_missing_timestamps():
    with pytest.raises(UsageError):
        random_split(10, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(DataError, match="timestamps"):
        temporal_split(np.zeros(3, dtype=int), None)
    with pytest.raises(UsageError):
        kfold_split(3, k=5)


def test_the_cold_split_is_the_issues_protocol_to_the_row():
    """Issue 36's cold-start split, written out literally on raw text ids, against cold_split."""
    from neucf.datasets import Ratings
    from neucf.splits import get_splitter

    gen = np.random.default_rng(5)
    raw_users = np.array([f"u{k:03d}" for k in gen.integers(0, 120, 3000)], dtype=object)
    raw_items = np.array([f"i{k}" for k in gen.integers(0, 90, 3000)], dtype=object)
    keep = ~pd.DataFrame({"u": raw_users, "i": raw_items}).duplicated().to_numpy()
    raw_users, raw_items = raw_users[keep], raw_items[keep]
    ratings = Ratings.from_arrays(raw_users, raw_items, gen.integers(1, 6, len(raw_users)).astype(float))

    rng = np.random.default_rng(0)
    users, items = sorted(set(raw_users)), sorted(set(raw_items))
    new_users = set(rng.permutation(users)[: int(0.2 * len(users))])
    new_items = set(rng.permutation(items)[: int(0.2 * len(items))])
    old_user = np.array([u not in new_users for u in raw_users])
    old_item = np.array([i not in new_items for i in raw_items])
    warm = np.flatnonzero(old_user & old_item)
    perm = rng.permutation(len(warm))
    cut = int(0.8 * len(warm))
    train = np.sort(warm[perm[:cut]])
    test_warm = warm[perm[cut:]]
    test_warm = test_warm[
        np.isin(raw_users[test_warm], raw_users[train]) & np.isin(raw_items[test_warm], raw_items[train])
    ]
    cold = np.flatnonzero(~(old_user & old_item))

    split = get_splitter("cold").split(ratings, fold=1, seed=0)
    assert split.train.tolist() == train.tolist() and len(split.valid) == 0
    assert split.test.tolist() == np.sort(np.concatenate([test_warm, cold])).tolist()
