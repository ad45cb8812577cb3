"""§6 tour methods on a small model built from refimpl.nn layers (a stand-in for the baseline)."""

import copy

import numpy as np
import pytest

from refimpl.registry import TourContext, methods
from refimpl.decomposition import tour
from refimpl.nn import Module, functional as F
from refimpl.nn import fit as nn_fit
from refimpl.nn.layers import Embedding, Linear


class _Tiny(Module):
    def __init__(self):
        self.emb = Embedding(1000, 24, rng=0)
        self.fc1 = Linear(24, 32, rng=1)
        self.fc2 = Linear(32, 2, rng=2)

    def forward(self, X, lengths):
        mask = (np.arange(X.shape[1])[None] < np.asarray(lengths)[:, None]).astype(float)
        h = (self.emb(X) * mask[:, :, None]).sum(axis=1) * (1.0 / mask.sum(1, keepdims=True))
        return self.fc2(F.tanh(self.fc1(h)))


def _ctx():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 1000, (64, 6))
    lengths = rng.integers(1, 7, 64)
    y = (X[:, 0] % 2).astype(np.int64)
    base = _Tiny()
    nn_fit(base, (X, lengths, y), epochs=2, lr=1e-2, rng=0, clip_norm=5.0, progress=False)

    def fit(model, epochs=1, lr=1e-3, **kw):
        return nn_fit(model, (X, lengths, y), epochs=epochs, lr=lr, rng=0, clip_norm=5.0,
                      progress=False)

    def evaluate(model):
        return float((model(X, lengths).data.argmax(-1) == y).mean())

    return TourContext(task=None, baseline=base, baseline_kind="bow", quick=True, seed=0,
                       fit=fit, evaluate=evaluate, make_model=lambda **k: _Tiny()), X, lengths


def test_replacements_reproduce_the_dense_model_at_full_rank():
    ctx, X, lengths = _ctx()
    ref = ctx.baseline(X, lengths).data
    m = copy.deepcopy(ctx.baseline)
    assert tour.tt_compress_embeddings(m, rank=10_000) == []  # full rank would not compress
    m.emb = tour.TTEmbedding.from_dense(ctx.baseline.emb.W.data, voc_dims=(10, 10, 10),
                                        emb_dims=(4, 3, 2))
    np.testing.assert_allclose(m(X, lengths).data, ref, atol=1e-9)
    m = copy.deepcopy(ctx.baseline)
    assert tour.tt_compress_linears(m, rank=10_000) == []  # full rank would not compress
    m.fc1 = tour.TTLinear.from_dense(ctx.baseline.fc1.W.data, ctx.baseline.fc1.b.data,
                                     in_dims=(6, 4), out_dims=(8, 4))
    np.testing.assert_allclose(m(X, lengths).data, ref, atol=1e-9)
    m = copy.deepcopy(ctx.baseline)
    assert tour.tt_compress_embeddings(m) == ["emb"] and tour.tt_compress_linears(m) == ["fc1"]
    m = copy.deepcopy(ctx.baseline)
    assert tour.svd_compress_linears(m, rank_fraction=10.0) == ["fc1"]
    np.testing.assert_allclose(m(X, lengths).data, ref, atol=1e-9)


@pytest.mark.parametrize("name", ["svd-low-rank", "tt-embedding", "tt-layer", "btd-layer"])
def test_registered_methods_shrink_the_model(name):
    ctx, X, lengths = _ctx()
    m = {mm.name: mm for mm in methods()}[name]
    res = m.func(ctx)
    assert res.params == res.model.num_parameters() < ctx.baseline.num_parameters()
    assert res.bits == 32 * res.params
    assert res.model(X, lengths).shape == (64, 2)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_factorized_recurrent_weights(cell):
    from refimpl.nn import recurrent

    rnn = getattr(recurrent, cell)(16, 16, rng=0)
    x = np.random.default_rng(0).standard_normal((3, 4, 16))
    ref = rnn(x)[0].data
    m = copy.deepcopy(rnn)
    names = tour.factorize_recurrent_weights_(
        m, lambda W: tour.LowRankLinear.from_dense(W, rank=min(W.shape)))
    assert names == ["W_ih_l0", "W_hh_l0"]
    np.testing.assert_allclose(m(x)[0].data, ref, atol=1e-10)
    G = 4 if cell == "LSTM" else 3
    assert m.num_parameters() == 2 * (G * 16 * 16 + 16 * 16) + 2 * G * 16
    out = m(x)[0].sum()
    out.backward()
    assert m.factors_W_ih_l0.A.grad is not None and np.abs(m.factors_W_hh_l0.B.grad).sum() > 0
    small = copy.deepcopy(rnn)
    tour.svd_compress_linears(small)
    assert small.num_parameters() < rnn.num_parameters()
