import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import synthetic_ratings
from neucf import training
from neucf.datasets import Ratings
from neucf.errors import DataError, TrainingError, UsageError
from neucf.models import (
    GMF,
    MLP,
    Biases,
    BiasFit,
    GlobalMean,
    MatrixFactorization,
    MLPConfig,
    NeuMF,
    RatingVectorNet,
    Recommender,
    layers,
    make_model,
    model_class,
    model_names,
)
from neucf.models.layers import SparseRowProjection
from neucf.splits import random_split

FAST = dict(epochs=3, batch_size=64)


def neumf(matrix, scale, config, batch_size=512):
    return RatingVectorNet(
        matrix, matrix.T.tocsr(), scale, config, config.factors, config.factors, batch_size=batch_size
    )


@pytest.fixture(scope="module")
def parts():
    r = synthetic_ratings(n_users=50, n_items=30, density=0.3)
    s = random_split(len(r), seed=0)
    return r.subset(s.train), r.subset(s.valid), r.subset(s.test)


def small_matrix(seed=1):
    m = sp.random(30, 20, density=0.3, format="csr", dtype=np.float32, random_state=seed)
    m.data = np.round(m.data * 4 + 1)
    return m


def two_channels(m):
    """User rows and item rows of ``m`` as input_matrices makes them: [values | rated]."""
    rated = m.copy()
    rated.data[:] = 1.0
    return sp.hstack([m, rated], format="csr"), sp.hstack([m.T, rated.T], format="csr")


def without_entry(m, u, i):
    lil = m.tolil()
    lil[u, i] = 0
    out = lil.tocsr()
    out.eliminate_zeros()
    return out


@pytest.mark.parametrize("mode", ["full", "bag"])
@pytest.mark.parametrize("norm", [0.0, 0.5])
def test_masking_gives_exactly_the_input_without_the_target(mode, norm):
    m = small_matrix()
    rows, cols = m.nonzero()
    full = SparseRowProjection(m, 5, mode=mode, norm=norm).eval()
    for k in (0, 7, 19):
        u, i = rows[k], cols[k]
        reduced = SparseRowProjection(without_entry(m, u, i), 5, mode=mode, norm=norm).eval()
        reduced.load_state_dict(full.state_dict())
        masked = full(torch.tensor([u]), torch.tensor([i]))
        expected = reduced(torch.tensor([u]))
        torch.testing.assert_close(masked, expected)
        # without the mask the target IS in the input: the outputs differ
        assert (full(torch.tensor([u])) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("norm", [0.0, 0.5])
def test_a_training_step_takes_its_whole_batchs_targets_out_of_every_row(norm):
    """A small batch's step (``batch_masking``) sees the matrix without all of its pairs."""
    m = small_matrix()
    rows, cols = m.nonzero()
    batch = [0, 3, 4, 7, 19, 25, 30]  # row 0 loses three entries, row 5 two
    full = SparseRowProjection(m, 5, mode="full", norm=norm, batch_size=len(batch))
    assert full.batch_masking
    reduced_matrix = m.tolil()
    for k in batch:
        reduced_matrix[rows[k], cols[k]] = 0
    reduced_matrix = reduced_matrix.tocsr()
    reduced_matrix.eliminate_zeros()
    reduced = SparseRowProjection(reduced_matrix, 5, mode="full", norm=norm).eval()
    reduced.load_state_dict(full.state_dict())
    u, i = torch.from_numpy(rows[batch]).long(), torch.from_numpy(cols[batch]).long()
    taken = full.train()(u, i)
    torch.testing.assert_close(taken, reduced(u))
    # predicting, each pair loses only its own entry
    per_pair = full.eval()(u, i)
    assert (per_pair - taken).abs().max() > 1e-3
    for k in range(len(batch)):
        torch.testing.assert_close(per_pair[k : k + 1], full(u[k : k + 1], i[k : k + 1]))


@pytest.mark.parametrize("mode", ["full", "bag"])
def test_masking_hides_the_target_in_every_channel(mode):
    """With [residual | rated] input rows, a masked pair is exactly as if it were absent."""

    m = small_matrix()
    rows, cols = m.nonzero()
    config = MLPConfig(factors=4, layers=2, input_dropout=0.0, projection=mode)
    torch.manual_seed(0)
    net = RatingVectorNet(*two_channels(m), (1, 5), config, gmf_factors=4, mlp_factors=4).eval()
    for k in (0, 7, 19):
        u, i = torch.tensor([rows[k]]), torch.tensor([cols[k]])
        reduced = RatingVectorNet(*two_channels(without_entry(m, rows[k], cols[k])), (1, 5), config, 4, 4).eval()
        reduced.load_state_dict(net.state_dict())
        reduced.mask_target = False
        torch.testing.assert_close(net(u, i), reduced(u, i))


def test_positions_are_found_in_every_channel_with_one_search():
    m = small_matrix()
    rated = m.copy()
    rated.data[:] = 1.0
    both = sp.hstack([m, rated], format="csr")
    proj = SparseRowProjection(both, 3, channels=2)
    rows, cols = both.nonzero()
    keys = rows * both.shape[1] + cols
    expected = {int(k): p for p, k in enumerate(np.sort(keys))}
    r = torch.arange(30).repeat_interleave(20)
    c = torch.arange(20).repeat(30)
    found = proj.position(r, torch.stack([c, c + 20], 1))
    for k in range(len(r)):
        for channel in (0, 1):
            key = int(r[k]) * 40 + int(c[k]) + 20 * channel
            assert int(found[k, channel]) == expected.get(key, -1)
    # mixed columns in one call are searched one by one, with the same answers
    mixed = proj.position(r, torch.stack([c, (c + 3) % 20 + 20], 1))
    assert torch.equal(mixed[:, 0], found[:, 0])
    with pytest.raises(ValueError, match="same columns"):
        SparseRowProjection(sp.hstack([m, small_matrix(seed=2)], format="csr"), 3, channels=2)


def test_a_step_with_its_targets_located_before_equals_one_that_searches():
    m = small_matrix()
    config = MLPConfig(factors=4, layers=2, input_dropout=0.3)
    net = RatingVectorNet(*two_channels(m), (1, 5), config, 4, 4, batch_size=8).train()
    rated, unrated = sp.csr_matrix(m).nonzero(), np.nonzero(m.toarray() == 0)
    # rated pairs and pairs outside the matrix (as a trainer's held-out ratings), mixed
    users, items = (torch.from_numpy(np.concatenate([a[:6], b[:3]]).astype(np.int64)) for a, b in zip(rated, unrated))
    located = net.locate(users, items)
    assert located.dtype == torch.int32 and (located[:6] >= 0).all() and (located[6:] == -1).all()
    states = []
    for given in (None, located):
        torch.manual_seed(1)  # the same dropout draws
        states.append(net.step_state(users, items, given))
    for searched, found in zip(*states):
        assert torch.equal(searched, found)
    net.mask_target = False
    assert net.locate(users, items) is None  # nothing to take out


@pytest.mark.parametrize("training", [False, True])
def test_masking_in_the_network_hides_the_rating_itself(training):
    m = small_matrix()
    u, i = (int(x[0]) for x in m.nonzero())

    def prediction(value, mask_target):
        # one set of weights (the initial scale depends on the data), two inputs
        config = MLPConfig(factors=4, layers=2, input_dropout=0.0, mask_target=mask_target, projection="full")
        torch.manual_seed(0)
        reference = neumf(m, (1, 5), config, batch_size=1)
        changed = m.copy()
        changed[u, i] = value
        net = neumf(changed, (1, 5), config, batch_size=1).train(training)
        assert net.user_projection.batch_masking
        net.load_state_dict(reference.state_dict())
        return net(torch.tensor([u]), torch.tensor([i])).item()

    masked = [prediction(value, True) for value in (1.0, 5.0)]
    assert masked[0] == pytest.approx(masked[1], abs=1e-6), "the prediction of r_ui must not depend on r_ui"
    leaky = [prediction(value, False) for value in (1.0, 5.0)]
    assert leaky[0] != pytest.approx(leaky[1], abs=1e-6)


@pytest.mark.parametrize("mask_target", [True, False])
@pytest.mark.parametrize("branches,layers", [((4, 4), 2), ((4, 0), 2), ((0, 4), 2), ((0, 4), 0)])
def test_a_step_computed_once_per_row_equals_the_per_pair_forward(mask_target, branches, layers):
    m = small_matrix()
    config = MLPConfig(factors=4, layers=layers, input_dropout=0.3, mask_target=mask_target, ids=True)
    torch.manual_seed(0)
    net = RatingVectorNet(m, m.T.tocsr(), (1, 5), config, *branches, batch_size=8).train()
    for parameter in net.parameters():  # ids and the output start at 0: give them a gradient path
        torch.nn.init.normal_(parameter, std=0.3)
    users, items = (torch.from_numpy(a[:8].astype(np.int64)) for a in m.nonzero())
    assert net._by_row()

    def step():
        net.zero_grad()
        torch.manual_seed(1)  # the same dropout draws
        state = net.step_state(users, items)  # as a step taken in chunks
        out = net(users, items, state)
        (out**2).sum().backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    by_row, grads = step()
    net._by_row = lambda: False
    per_pair, per_pair_grads = step()
    torch.testing.assert_close(by_row, per_pair)
    for a, b in zip(grads, per_pair_grads):
        torch.testing.assert_close(a, b)


def test_sampled_projection_is_unbiased_and_only_while_training():
    m = small_matrix()
    torch.manual_seed(0)
    proj = SparseRowProjection(m, 4, sample=2, norm=0.5)
    rows = torch.arange(m.shape[0])
    exact = proj.eval()(rows)
    proj.train()
    with torch.no_grad():
        draws = torch.stack([proj(rows) for _ in range(3000)])
    # within 5 standard errors of the whole-row product, entry by entry
    standard_error = draws.std(0) / 3000**0.5
    assert ((draws.mean(0) - exact).abs() <= 5 * standard_error + 1e-6).all()
    assert not torch.equal(proj(rows), proj(rows))  # it does sample
    torch.testing.assert_close(proj.eval()(rows), exact)  # predicting uses whole rows


def test_full_and_bag_projections_agree():
    m = small_matrix()
    torch.manual_seed(0)
    a = SparseRowProjection(m, 6, mode="full", norm=0.5)
    b = SparseRowProjection(m, 6, mode="bag", norm=0.5)
    b.load_state_dict(a.state_dict())
    rows, cols = torch.tensor([0, 3, 3, 29]), torch.tensor([1, 2, 5, 19])
    out_a, out_b = a(rows, cols), b(rows, cols)
    torch.testing.assert_close(out_a, out_b)
    out_a.sum().backward()
    out_b.sum().backward()
    torch.testing.assert_close(a.weight.grad, b.weight.grad)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_dropout_keeps_each_entry_independently_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    n = 400_003  # not a multiple of the four draws taken from each random integer
    keep = layers._keep_mask(n, p, torch.device("cpu")).double()
    assert keep.shape == (n,)
    standard_error = (p * (1 - p) / n) ** 0.5
    assert abs(keep.mean().item() - (1 - p)) < 5 * standard_error
    # the four 16-bit slices of one integer, and neighbours across integers, are uncorrelated
    for lag in (1, 2, 3, 4):
        corr = torch.corrcoef(torch.stack([keep[:-lag], keep[lag:]]))[0, 1].item()
        assert abs(corr) < 5 / n**0.5


def test_products_in_column_blocks_equal_the_whole_product(monkeypatch):
    m = small_matrix()
    rows, cols = torch.tensor([0, 3, 3, 29, 7]), torch.tensor([1, 2, 5, 19, 0])
    torch.manual_seed(0)
    whole = SparseRowProjection(m, 6, mode="full", norm=0.5)
    monkeypatch.setattr(layers, "BLOCK_BYTES", 6 * 4 * 3)  # three rows of the dense operand a block
    blocked = SparseRowProjection(m, 6, mode="full", norm=0.5)
    assert len(whole.blocks.edges) == len(whole.t_blocks.edges) == 2
    assert len(blocked.blocks.edges) - 1 == 7 and len(blocked.t_blocks.edges) - 1 == 10
    blocked.load_state_dict(whole.state_dict())
    out_whole, out_blocked = whole(rows, cols), blocked(rows, cols)
    torch.testing.assert_close(out_blocked, out_whole)
    expected = torch.from_numpy(m.toarray()) / torch.from_numpy(np.diff(m.indptr)).clamp(min=1)[:, None] ** 0.5
    torch.testing.assert_close(blocked(torch.arange(30)), expected @ whole.weight + whole.bias)
    grad = torch.randn_like(out_whole)
    out_whole.backward(grad)
    out_blocked.backward(grad)
    torch.testing.assert_close(blocked.weight.grad, whole.weight.grad)


@pytest.mark.parametrize(("block_bytes", "several"), [(layers.BLOCK_BYTES, False), (6 * 4 * 3, True)])
def test_the_blocked_product_equals_the_dense_product(block_bytes, several, monkeypatch):
    m = small_matrix()
    monkeypatch.setattr(layers, "BLOCK_BYTES", block_bytes)
    proj = SparseRowProjection(m, 6, mode="full")
    assert (len(proj.blocks.edges) > 2) == several
    values = torch.from_numpy(m.data)
    torch.manual_seed(0)
    for blocks, dense, matrix in ((proj.blocks, torch.randn(20, 6), m), (proj.t_blocks, torch.randn(30, 6), m.T)):
        torch.testing.assert_close(blocks.product(values, dense), torch.from_numpy(matrix.toarray()) @ dense)


@pytest.mark.parametrize("batch", ["quarter", "all"])  # targets taken out per step / per pair
@pytest.mark.parametrize("factory", [GMF, NeuMF])
def test_a_batch_taken_in_chunks_has_the_whole_batchs_loss_and_gradient(factory, batch, parts, monkeypatch):
    train, _, _ = parts
    size = len(train) // 4 if batch == "quarter" else len(train)
    model = factory(factors=4, projection="full", input_dropout=0.3, **{**FAST, "batch_size": size})
    net = model._build(train)
    assert net.user_projection.batch_masking == (batch == "quarter")
    net.train()
    torch.nn.init.normal_(net.output.weight)  # reach the layers below from the first step
    users, items = torch.from_numpy(train.users).long(), torch.from_numpy(train.items).long()
    ratings = torch.from_numpy(train.ratings).float()
    idx = torch.randperm(len(users), generator=torch.Generator().manual_seed(0))[:size]
    results = []
    for chunk in (len(idx), 37):  # whole, then in chunks (the last one short)
        monkeypatch.setattr(training, "CHUNK", chunk)
        net.zero_grad()
        with training.seeded(0, torch.device("cpu")):  # the same dropout masks both times
            train = (users, items, ratings, net.locate(users, items))
            losses = training._backward_in_chunks(net, train, idx, 1e-3)
        results.append((losses, {n: p.grad.clone() for n, p in net.named_parameters()}))
    (whole, whole_grads), (chunked, chunked_grads) = results
    torch.testing.assert_close(chunked, whole)
    assert whole_grads.keys() == chunked_grads.keys()
    for name, grad in whole_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)
        assert grad.abs().sum() > 0, name


@pytest.mark.parametrize("factory", [GMF, MLP, NeuMF])
def test_gradients_reach_every_layer(factory, parts):
    train, _, _ = parts
    tower = {"layers": 2} if "layers" in factory.parameters() else {}
    model = factory(factors=4, input_dropout=0.0, **tower, **FAST)
    net = model._build(train)
    net.train()
    users, items = torch.from_numpy(train.users[:32]).long(), torch.from_numpy(train.items[:32]).long()
    # the output unit starts at zero (the net starts as its bias baseline), which blocks
    # gradients to the layers below for the first step only: start it elsewhere here
    torch.nn.init.normal_(net.output.weight)
    pred, penalty = net.predict_and_penalty(users, items, 1e-3)
    loss = ((pred - torch.from_numpy(train.ratings[:32])) ** 2).mean() + penalty
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_neumf_overfits_200_ratings(parts):
    """The seed's sanity check: with no regularisation a model can memorise a tiny set."""
    train, _, _ = parts
    tiny = train.subset(np.arange(200))
    model = NeuMF(
        factors=32,
        layers=2,
        input_dropout=0.0,
        mask_target=False,
        l2=0.0,
        lr=5e-3,
        epochs=300,
        batch_size=50,
        patience=0,
        seed=0,
    )
    model.fit(tiny, tiny)
    assert model.evaluate(tiny)["rmse"] < 0.1


@pytest.mark.parametrize("name", model_names("rating"))
def test_every_model_fits_predicts_and_round_trips(name, parts, tmp_path):
    train, valid, test = parts
    cls = model_class(name)
    small = dict(FAST, factors=4)
    model = cls(**{k: v for k, v in small.items() if k in cls.parameters()}).fit(train, valid)
    scores = model.evaluate(test)
    assert 0 < scores["rmse"] < 2 and scores["n"] == len(test)
    raw_u, raw_i = test.user_ids[test.users], test.item_ids[test.items]
    by_raw = model.predict(raw_u, raw_i)
    by_index = model.predict_index(test.users, test.items)
    np.testing.assert_array_equal(by_raw, by_index)
    assert (by_raw >= 1).all() and (by_raw <= 5).all()
    path = model.save(tmp_path / f"{name}.pt")
    loaded = Recommender.load(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(raw_u, raw_i), by_raw)
    top = model.recommend(raw_u[0], k=5)
    assert len(top) == 5 and list(top.columns[:2]) == ["item", "prediction"]
    seen = set(train.item_ids[train.items[train.users == test.users[0]]])
    assert not seen & set(top["item"])
    assert top["prediction"].is_monotonic_decreasing


def test_same_seed_same_model_and_different_seed_differs(parts):
    train, valid, test = parts
    a = NeuMF(factors=4, layers=2, seed=3, **FAST).fit(train, valid).predict_index(test.users, test.items)
    b = NeuMF(factors=4, layers=2, seed=3, **FAST).fit(train, valid).predict_index(test.users, test.items)
    c = NeuMF(factors=4, layers=2, seed=4, **FAST).fit(train, valid).predict_index(test.users, test.items)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_float64_option(parts):
    train, valid, test = parts
    model = GMF(factors=4, dtype="float64", **FAST).fit(train, valid)
    assert next(model.net.parameters()).dtype == torch.float64
    assert np.isfinite(model.evaluate(test)["rmse"])


def test_unknown_ids_error_or_fall_back(parts):
    train, valid, _ = parts
    model = Biases().fit(train, valid)
    with pytest.raises(DataError, match="unknown user id 424242"):
        model.predict([424242], [train.item_ids[0]])
    fallback = Biases(unknown="fallback").fit(train, valid)
    item = train.item_ids[0]
    expected = fallback.mean_ + fallback.item_bias_[0]
    assert fallback.predict([424242], [item])[0] == pytest.approx(expected, abs=1e-5)
    assert fallback.predict(["nobody"], ["nothing"])[0] == pytest.approx(fallback.mean_, abs=1e-5)
    # an id in the map but without training ratings is unknown too
    r = Ratings.from_arrays([1, 1, 2, 3], [1, 2, 1, 9], [4.0, 3.0, 5.0, 2.0])
    m = GlobalMean().fit(r.subset(np.arange(3)))
    with pytest.raises(DataError, match="user 3 has no training rating"):
        m.predict([3], [1])


def test_bad_arguments_are_clear(parts, tmp_path):
    train, valid, _ = parts
    with pytest.raises(UsageError, match="the neumf model does not take factor; it takes factors, "):
        NeuMF(factor=3)
    with pytest.raises(UsageError, match="the gmf model does not take layers"):
        GMF(layers=3)
    with pytest.raises(UsageError, match="the mean model does not take factors; it takes no parameters"):
        GlobalMean(factors=3)
    with pytest.raises(UsageError, match="learning rate"):
        NeuMF(lr=-1)
    with pytest.raises(UsageError, match="input_dropout"):
        NeuMF(input_dropout=1.5)
    with pytest.raises(UsageError, match="optimizer must be adam or sgd"):
        NeuMF(optimizer="lbfgs")
    with pytest.raises(UsageError, match="steps_per_epoch"):
        NeuMF(steps_per_epoch=-1)
    with pytest.raises(UsageError, match="full_train_share must be >= 0"):
        MatrixFactorization(full_train_share=-0.5)
    with pytest.raises(UsageError, match="not fitted"):
        NeuMF().predict([1], [1])
    with pytest.raises(UsageError, match="k must be"):
        GlobalMean().fit(train).recommend(train.user_ids[0], k=0)
    with pytest.raises(UsageError, match="no CUDA"):
        if torch.cuda.is_available():
            raise UsageError("no CUDA (skipped: this machine has one)")
        GMF(**FAST).fit(train, valid, device="cuda")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(DataError, match="not a neucf model file"):
        Recommender.load(bad)
    GlobalMean().fit(train).save(tmp_path / "mean.pt")
    with pytest.raises(DataError, match="holds a 'mean' model"):
        NeuMF.load(tmp_path / "mean.pt")
    # siblings are not subclasses of each other: a GMF file is not a NeuMF
    GMF(factors=2, **FAST).fit(train, valid).save(tmp_path / "gmf.pt")
    with pytest.raises(DataError, match="holds a 'gmf' model, not a neumf"):
        NeuMF.load(tmp_path / "gmf.pt")
    assert type(GMF.load(tmp_path / "gmf.pt")) is GMF


def test_nan_loss_stops_with_a_clear_message(parts):
    train, valid, _ = parts
    with pytest.raises(TrainingError, match="lower the learning rate"):
        MatrixFactorization(lr=1e30, init_std=1e10, **FAST).fit(train, valid)


def test_training_without_validation_holds_out_part_of_train(parts, tmp_path):
    train, _, _ = parts
    model = GMF(factors=4, **FAST).fit(train)
    assert model.held_out_validation
    assert np.isfinite(model.history.best_valid_rmse)
    # a network that masks each target reads the held-out ratings as inputs, but its input
    # biases (and so validation's baseline) are fitted without them
    assert len(model.inputs_[0]) == len(train)
    kept = train.subset(np.flatnonzero(~model.held_out_))
    assert model.input_biases_.user_bias == pytest.approx(BiasFit.of(kept).user_bias)
    # one that does not mask would read a held-out rating when predicting it: it reads the rest
    unmasked = GMF(factors=4, mask_target=False, **FAST).fit(train)
    assert len(unmasked.inputs_[0]) == len(kept)
    model.save(tmp_path / "gmf.pt")
    loaded = GMF.load(tmp_path / "gmf.pt")
    assert len(loaded.inputs_[0]) == len(train)
    np.testing.assert_array_equal(
        loaded.predict_index(train.users, train.items), model.predict_index(train.users, train.items)
    )
    # a file of neucf 0.5 (no such record): its network read train less the held-out share
    state = model._state()
    del state["inputs_held_out"]
    loaded._restore(state, "cpu")
    assert len(loaded.inputs_[0]) == len(kept)


def test_progress_logs_the_seed_status_figures(parts, caplog):
    train, valid, _ = parts
    with caplog.at_level("INFO", logger="neucf"):
        GMF(factors=4, epochs=2, batch_size=64).fit(train, valid, progress=True)
    assert "epoch 1: train mse" in caplog.text and "train mse + reg" in caplog.text and "valid rmse" in caplog.text


def test_steps_per_epoch_grows_the_batch_and_learning_rate_on_larger_data(parts, caplog, monkeypatch):
    train, valid, _ = parts
    steps = []
    monkeypatch.setattr(training._FunctionalOptimizer, "step", lambda self: steps.append(self.lr))
    with caplog.at_level("INFO", logger="neucf"):
        GMF(factors=4, epochs=1, batch_size=64, lr=0.01, steps_per_epoch=4).fit(train, valid)
    batch = -(-len(train) // 4)
    assert f"{len(train)} training ratings: batch {batch}" in caplog.text
    assert len(steps) == 4 and steps[0] == pytest.approx(0.01 * (batch / 64) ** 0.5)
    steps.clear()
    GMF(factors=4, epochs=1, batch_size=len(train), lr=0.01, steps_per_epoch=4).fit(train, valid)
    assert steps == [0.01]  # data smaller than batch x steps: the batch and rate as given


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_the_trainers_optimizer_gives_torch_optims_numbers(kind):
    def steps(make):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
        net[0].bias.requires_grad_(False)  # a frozen parameter is left alone
        opt = make(net.parameters())
        x = torch.randn(16, 3)
        for i in range(3):
            opt.zero_grad()
            (net(x[: 8 + 4 * i]) ** 2).mean().backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()]

    fused = {"fused": True} if kind == "adam" else {}  # on CPU since torch 2.4, as pinned
    torch_kind = torch.optim.Adam if kind == "adam" else torch.optim.SGD
    ours = steps(lambda params: training._FunctionalOptimizer(params, kind, lr=0.05))
    theirs = steps(lambda params: torch_kind([p for p in params if p.requires_grad], lr=0.05, **fused))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert not torch.equal(ours[0], steps(lambda params: training._FunctionalOptimizer(params, kind, lr=0.0))[0])


def test_weight_averaging_keeps_the_moving_average_of_the_iterates(monkeypatch):
    from neucf.models import BiasedMFNet

    torch.manual_seed(0)
    net = BiasedMFNet(4, 3, factors=2, mean=3.0)
    average = [p.detach().clone() for p in net.parameters()]
    step = training._FunctionalOptimizer.step

    def recording(self):
        step(self)
        for a, p in zip(average, net.parameters()):
            a.mul_(0.6).add_(0.4 * p.detach())

    monkeypatch.setattr(training._FunctionalOptimizer, "step", recording)
    u, i, r = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([0, 1, 0, 2, 2, 1]), torch.tensor([3.0, 4, 5, 1, 2, 5])
    # without validation the epoch of lowest training loss is kept: the one epoch, as its average
    training.Trainer(training.TrainConfig(epochs=1, batch_size=2, lr=0.1, average=0.6)).fit(net, (u, i, r))
    for a, p in zip(average, net.parameters()):
        torch.testing.assert_close(p.detach(), a)
    with pytest.raises(UsageError, match="average must be in"):
        training.TrainConfig(average=1.0)


def test_a_step_trainer_can_stop_on_validation_rmse():
    net = torch.nn.Linear(1, 1)
    scores = iter([3.0, 2.0, 4.0, 5.0, 1.0])
    steps = lambda epoch: iter([net.weight.sum() * 0.0 + 1.0])
    history = training.StepTrainer(lr=0.1, epochs=5, patience=2, metric="rmse").fit(net, steps, lambda: next(scores))
    assert (history.best_epoch, history.best_valid_rmse, len(history.epochs)) == (2, 2.0, 4)
    assert [e.valid_rmse for e in history.epochs] == [3.0, 2.0, 4.0, 5.0]
    with pytest.raises(UsageError, match="metric must be"):
        training.StepTrainer(lr=0.1, epochs=1, patience=0, metric="mae")


def test_autorec_takes_only_the_training_settings_it_uses(parts, tmp_path):
    with pytest.raises(UsageError, match="does not take average"):
        make_model("autorec", average=0.9)
    train, valid, test = parts
    model = make_model("autorec", hidden=8, epochs=3, reg=10.0).fit(train, valid)
    assert "optimizer" not in model.get_params() and model.get_params()["reg"] == 10.0
    again = Recommender.load(model.save(tmp_path / "autorec.pt"))
    np.testing.assert_array_equal(
        again.predict_index(test.users, test.items), model.predict_index(test.users, test.items)
    )


def test_a_fit_does_not_import_dynamo():
    # torch.optim.Optimizer's wrappers import it: 1.4-1.8 s of a fresh process's fit here
    code = (
        "import sys; from conftest import synthetic_ratings; from neucf.models import NeuMF\n"
        "NeuMF(factors=4, epochs=2, batch_size=64).fit(synthetic_ratings(300, seed=0))\n"
        "print('torch._dynamo' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("factory", [NeuMF, MatrixFactorization])
def test_a_fit_reads_no_memory_it_did_not_write(factory, parts, monkeypatch):
    # the trainer turns off deterministic mode's NaN fill of new tensors: no number may depend on it
    train, valid, test = parts
    fill = torch.utils.deterministic
    fill.fill_uninitialized_memory = True
    unfilled = factory(seed=0, **FAST).fit(train, valid).predict_index(test.users, test.items)
    assert fill.fill_uninitialized_memory  # the caller's setting, given back

    @contextlib.contextmanager
    def filling():
        training._set_deterministic(True, warn_only=True)
        try:
            yield
        finally:
            training._set_deterministic(False, warn_only=False)

    monkeypatch.setattr(training, "_deterministic", filling)
    filled = factory(seed=0, **FAST).fit(train, valid).predict_index(test.users, test.items)
    np.testing.assert_array_equal(unfilled, filled)


def test_run_time_options_are_not_saved(parts, tmp_path):
    train, valid, _ = parts
    seen = []
    model = GMF(factors=2, **FAST).fit(train, valid, progress=False, device="cpu", callbacks=[seen.append])
    assert [s.epoch for s in seen] == [e.epoch for e in model.history.epochs]
    params = model.get_params()
    assert "progress" not in params and "device" not in params and params["epochs"] == 3
    loaded = GMF.load(model.save(tmp_path / "m.pt"))
    assert loaded.get_params() == params and loaded.seed == model.seed


def test_an_older_model_file_says_to_retrain(parts, tmp_path):
    train, _, _ = parts
    path = GlobalMean().fit(train).save(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    payload["version"] = 1
    del payload["neucf_version"]
    torch.save(payload, path)
    with pytest.raises(DataError, match=r"written by neucf 0\.1\.0 \(model format 1\).*retrain"):
        Recommender.load(path)


def test_fitting_leaves_the_callers_random_state_alone(parts):
    train, valid, _ = parts
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    GMF(factors=2, **FAST).fit(train, valid)
    assert torch.equal(torch.rand(3), expected)


def test_prediction_cache_follows_weight_updates():
    m = small_matrix()
    proj = SparseRowProjection(m, 4, mode="full").eval()
    rows = torch.tensor([0, 1, 2])
    with torch.no_grad():
        first = proj(rows).clone()
        proj.weight.add_(1.0)  # an optimiser step changes the weights in place
        second = proj(rows)
    expected = SparseRowProjection(m, 4, mode="bag").eval()
    expected.load_state_dict(proj.state_dict())
    torch.testing.assert_close(second, expected(rows).detach())
    assert not torch.allclose(first, second)


def residual_sums(model, train):
    """Each user's and each item's sum of ``r - prediction`` (the network's, unclipped) over train."""
    users, items = torch.from_numpy(train.users).long(), torch.from_numpy(train.items).long()
    with torch.no_grad():
        residual = torch.from_numpy(train.ratings).double() - training.predict_batches(model.net, users, items).double()
    by_user = torch.zeros(train.n_users, dtype=torch.float64).index_add_(0, users, residual)
    return by_user, torch.zeros(train.n_items, dtype=torch.float64).index_add_(0, items, residual)


def user_bias_gap(model, train) -> float:
    """How far the users' biases are from the least-squares optimum on ``train``: the largest
    ``|sum of a user's residuals - shrinkage x bias|`` (0 where they were solved there)."""
    by_user, _ = residual_sums(model, train)
    terms = model.net.baseline
    return float((by_user - terms.reg_user * terms.user_bias.detach().double()).abs().max())


@pytest.mark.parametrize("name", ["neumf", "mf"])
def test_biases_are_solved_on_all_of_train_after_early_stopping_held_a_share_out(name, parts):
    train, _, _ = parts
    model = model_class(name)(factors=4, **FAST).fit(train)
    assert model.held_out_validation
    terms = model.net.baseline
    by_user, by_item = residual_sums(model, train)
    # the least-squares optimum on every training rating, held-out ones included: each
    # user's residuals sum to its shrinkage times its bias (the last step solved the users
    # exactly; the items after ten alternating steps, nearly)
    bu, bi = terms.user_bias.detach().double(), terms.item_bias.detach().double()
    torch.testing.assert_close(by_user, terms.reg_user * bu, atol=1e-3, rtol=0)
    torch.testing.assert_close(by_item, terms.reg_item * bi, atol=0.05, rtol=0)
    assert float(by_user.sum()) == pytest.approx(0.0, abs=1e-2)  # the mean, too


def test_an_ensemble_that_held_a_share_out_solves_its_members_biases_on_all_of_train(parts):
    train, valid, _ = parts
    model = make_model("ensemble", members="gmf,bias", seeds=1).fit(train)
    assert user_bias_gap(model.members_[0], train) <= 1e-3
    # given a validation part, nothing was held out: the biases stay as trained
    given = make_model("ensemble", members="gmf", seeds=1).fit(train, valid).members_[0]
    assert user_bias_gap(given, train) > 1e-2


def test_id_vectors_are_held_by_their_penalty_and_absent_when_switched_off(parts):
    train, valid, _ = parts
    norms = []
    for id_reg in (0.01, 10.0):
        net = NeuMF(factors=4, id_reg=id_reg, **FAST).fit(train, valid).net
        norms.append(float(net.user_projection.row_embedding.detach().norm()))
    assert norms[0] > 2 * norms[1] > 0
    net = NeuMF(factors=4, ids=False, **FAST).fit(train, valid).net
    assert net.user_projection.row_embedding is None and net.item_projection.row_embedding is None
    assert not any("row_embedding" in name for name, _ in net.named_parameters())


def test_mf_trains_on_its_held_out_share_after_early_stopping(parts):
    train = synthetic_ratings(n_users=100, n_items=60, density=0.5)
    held_out_rmse, fits = [], []
    for share in (0.0, 1.0):
        # Adam (dense gradients) learns this set within a few epochs; SGD's default rate not
        model = MatrixFactorization(factors=4, full_train_share=share, optimizer="adam", lr=0.01, batch_size=64)
        model.fit(train)
        held_out_rmse.append(model.evaluate(train.subset(np.flatnonzero(model.held_out_)))["rmse"])
        fits.append(model.history)
    assert fits[0].full_train_epochs == 0 and fits[1].best_epoch > 0
    assert fits[1].full_train_epochs == fits[1].best_epoch
    # the held-out ratings were trained on at the end: the model fits them better
    assert held_out_rmse[1] < held_out_rmse[0] - 0.03, held_out_rmse
    # a given validation part holds nothing out: nothing to train on after
    given = MatrixFactorization(factors=4, full_train_share=1.0, **FAST).fit(parts[0], parts[1])
    assert given.history.full_train_epochs == 0


def test_mf_without_the_bias_prior_keeps_the_biases_its_l2_held(parts):
    train, _, _ = parts
    model = MatrixFactorization(factors=4, bias_prior=False, **FAST).fit(train)
    # its terms have no shrinkage of their own (0): solved again, they would be unregularised,
    # and every user's residuals would sum to 0
    by_user, _ = residual_sums(model, train)
    assert not model.net.shrunk_biases and float(by_user.abs().max()) > 0.1
