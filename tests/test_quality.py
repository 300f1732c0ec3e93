"""Accuracy properties on generated data (neucf.datasets.synthetic): the neural models contain
their bias baseline, learn an interaction where there is one, stay in the rating scale and
are deterministic under a seed. Models run with their own defaults: what a user gets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neucf.datasets.synthetic import PRESETS, SyntheticSpec, generate_ratings
from neucf.errors import UsageError
from neucf.models import Biases, bias_regularisation, fit_biases, make_model
from neucf.splits import random_split

NEURAL = ["gmf", "mlp", "neumf"]


def parts(spec: SyntheticSpec, seed: int = 0):
    r = generate_ratings(spec, seed=seed)
    s = random_split(len(r), seed=seed)
    return r.subset(s.train), r.subset(s.valid), r.subset(s.test)


def test_rmse(model, test) -> float:
    return model.evaluate(test)["rmse"]


test_rmse.__test__ = False  # a helper, not a test

BIAS_ONLY = parts(SyntheticSpec(n_users=300, n_items=250, n_ratings=8000))
LOW_RANK = parts(SyntheticSpec(n_users=300, n_items=200, n_ratings=15000, rank=3, factor_std=0.8, noise_std=0.4))


@pytest.mark.parametrize("name", NEURAL)
def test_on_bias_only_data_a_network_is_as_good_as_the_bias_baseline(name):
    train, valid, test = BIAS_ONLY
    bias = test_rmse(Biases().fit(train, valid), test)
    neural = test_rmse(make_model(name).fit(train, valid), test)
    assert abs(neural - bias) < 0.005, (neural, bias)


@pytest.mark.parametrize("name", [*NEURAL, "autorec"])
def test_on_low_rank_data_a_network_beats_the_bias_baseline_clearly(name):
    train, valid, test = LOW_RANK
    bias = test_rmse(Biases().fit(train, valid), test)
    neural = test_rmse(make_model(name).fit(train, valid), test)
    assert neural < bias - 0.03, (neural, bias)


def test_the_seed_faithful_network_is_still_available():
    train, valid, test = LOW_RANK
    model = make_model("neumf", baseline=False, inputs="ratings").fit(train, valid)
    assert model.net.baseline is None and model.net.channels == 1
    assert np.isfinite(test_rmse(model, test))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scale=st.sampled_from([(0.5, 4.0), (1.0, 5.0), (-10.0, 10.0), (0.0, 1.0)]),
    step=st.sampled_from([0.0, 0.5]),
    name=st.sampled_from([*NEURAL, "mf", "bias", "autorec"]),
    seed=st.integers(0, 100),
)
def test_predictions_stay_inside_the_rating_scale(scale, step, name, seed):
    low, high = scale
    span = high - low
    spec = SyntheticSpec(n_users=40, n_items=30, n_ratings=600, rank=2, mean=(low + high) / 2, user_std=span / 3,
                         item_std=span / 3, factor_std=span / 3, noise_std=span / 10, scale=scale,
                         step=step if step < span / 4 else 0.0)  # fmt: skip
    train = generate_ratings(spec, seed=seed)
    model = make_model(name, **({"epochs": 3} if name != "bias" else {})).fit(train)
    users, items = np.meshgrid(np.arange(train.n_users), np.arange(train.n_items))
    pred = model.predict_index(users.ravel(), items.ravel())
    assert np.isfinite(pred).all()
    assert pred.min() >= low and pred.max() <= high


@pytest.mark.parametrize("name", [*NEURAL, "autorec"])
def test_the_same_seed_gives_the_same_numbers(name):
    train, valid, _ = BIAS_ONLY

    def predictions(seed):
        return make_model(name, epochs=2, seed=seed).fit(train, valid).predict_index(train.users, train.items)

    a, b, c = predictions(5), predictions(5), predictions(6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_estimated_bias_shrinkage_beats_surprises_constants_on_sparse_data():
    train, _, test = BIAS_ONLY

    def rmse(mean, bu, bi):
        pred = np.clip(mean + bu[test.users] + bi[test.items], *train.scale)
        return float(np.sqrt(np.mean((pred - test.ratings) ** 2)))

    reg_user, reg_item = bias_regularisation(train)
    assert 0 < reg_user < 15 and 0 < reg_item < 10
    assert rmse(*fit_biases(train)) < rmse(*fit_biases(train, 15.0, 10.0))


def test_generated_data_is_seeded_and_checked():
    a, b = generate_ratings(PRESETS["bias-only"], seed=1), generate_ratings(PRESETS["bias-only"], seed=1)
    assert len(a) == PRESETS["bias-only"].n_ratings
    assert np.array_equal(a.ratings, b.ratings) and np.array_equal(a.users, b.users)
    assert set(np.unique(a.ratings * 2)) <= set(range(1, 9))  # half stars 0.5..4
    with pytest.raises(UsageError, match="do not fit"):
        SyntheticSpec(n_users=2, n_items=2, n_ratings=5)


def test_an_ensemble_weighs_its_members_on_validation_and_round_trips(tmp_path):
    train, valid, test = LOW_RANK
    model = make_model("ensemble", members="gmf,bias", seeds=2).fit(train, valid)
    assert len(model.members_) == 4 and (model.weights_ >= 0).all()
    ours = test_rmse(model, test)
    # fitted on validation, the blend is no worse than its best member there, up to noise on test
    assert ours <= min(test_rmse(m, test) for m in model.members_) + 0.005
    path = model.save(tmp_path / "ensemble.pt")
    again = make_model("ensemble").load(path)
    np.testing.assert_array_equal(
        again.predict_index(test.users, test.items), model.predict_index(test.users, test.items)
    )
    items, ratings = model._training_row(0)
    folded = model._predict_folded(model._fold_in(items, ratings), np.arange(5))
    assert folded.shape == (5,) and np.isfinite(folded).all()


def test_an_ensemble_names_bad_members():
    with pytest.raises(UsageError, match="members must name"):
        make_model("ensemble", members="ensemble")
    with pytest.raises(UsageError):
        make_model("ensemble", members="neumf,nosuch")
    with pytest.raises(UsageError, match="name:key=value"):
        make_model("ensemble", members="gmf:factors")
    with pytest.raises(UsageError, match="does not take bogus"):
        make_model("ensemble", members="gmf:bogus=1")
    with pytest.raises(UsageError, match="factors must be a whole number"):
        make_model("ensemble", members="gmf:factors=many")


def test_an_ensembles_members_take_their_own_parameters():
    train, valid, _ = LOW_RANK
    config = make_model("ensemble", members=" gmf:factors=3:ids=false:epochs=2 , bias").config
    assert config.specs() == [("gmf", {"factors": 3, "ids": False, "epochs": 2}), ("bias", {})]
    model = make_model("ensemble", members="gmf:factors=3:epochs=2,gmf:factors=5:epochs=2", seeds=2).fit(train, valid)
    assert [(m.config.factors, m.seed) for m in model.members_] == [(3, 0), (3, 1), (5, 0), (5, 1)]


def test_mf_chooses_its_l2_weight_on_validation():
    train, valid, _ = LOW_RANK
    fast = dict(epochs=8, patience=3)
    chosen = make_model("mf", **fast).fit(train, valid)
    assert chosen.training.l2 in chosen.l2_candidates
    # each candidate fitted alone: the one kept is the best on validation
    scores = {
        l2: make_model("mf", l2=l2, **fast).fit(train, valid).history.best_valid_rmse for l2 in chosen.l2_candidates
    }
    assert chosen.training.l2 == min(scores, key=scores.get)
    assert chosen.history.best_valid_rmse == pytest.approx(min(scores.values()))
    # a given l2 is used as it is: no search
    assert make_model("mf", l2=0.07, **fast).fit(train, valid).training.l2 == 0.07
