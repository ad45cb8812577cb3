"""The §2 tour methods on a small refimpl.nn Transformer with a stand-in tour context."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from refimpl import nn
from refimpl.registry import methods
from refimpl.pruning import tour
from refimpl.pruning.storage import encode_delta_csr


def _ctx(rng):
    X = rng.integers(0, 20, size=(40, 5))
    y = (X[:, 0] > 9).astype(int)
    L = np.full(40, 5)
    task = SimpleNamespace(X_train=X, len_train=L, y_train=y)
    model = nn.TransformerClassifier(vocab_size=20, d_model=8, num_heads=2, d_ff=16, num_layers=2,
                                     max_len=5, n_classes=2, rng=rng)

    def fit(m, epochs=1, after_step=None, forward=None, **kw):
        opt = nn.Adam(m.parameters(), lr=1e-2)
        for _ in range(epochs * 2):
            for p in m.parameters():
                p.grad = None
            loss = nn.cross_entropy(m(X, L) if forward is None else forward(m, X, L), y)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(m)

    return SimpleNamespace(task=task, baseline=model, baseline_kind="transformer", seed=0,
                           fit=fit, copy_baseline=lambda kind=None: copy.deepcopy(model),
                           config=SimpleNamespace(batch_size=20))


def test_registered():
    names = {m.name for m in methods()}
    assert {"magnitude-90", "gradual-90", "bbs-75", "heads-50",
            "layerdrop-every-other"} <= names


def test_magnitude_and_gradual_bits(rng):
    ctx = _ctx(rng)
    for fn in (tour.magnitude_90, tour.gradual_90):
        res = fn(ctx)
        params = dict(res.model.named_parameters())
        want = 0
        for n, p in params.items():
            if p.data.ndim == 2:
                assert (p.data == 0).sum() >= round(0.9 * p.size), (fn.__name__, n)
                want += encode_delta_csr(p.data, 5).bits()
            else:
                want += 32 * p.size
        assert res.bits == want
        assert res.params < res.model.num_parameters()


def test_bbs_heads_layerdrop(rng):
    ctx = _ctx(rng)
    res = tour.bbs_75(ctx)
    W = dict(res.model.named_parameters())["layers.0.linear1.W"].data  # (16, 8): banks of 8
    assert np.all((W != 0).reshape(16, 1, 8).sum(2) <= 2)
    res = tour.heads_50(ctx)
    masks = [m.self_attn.head_mask for m in res.model.layers]
    assert sum(int((m == 0).sum()) for m in masks) == 2
    assert res.params == res.model.num_parameters() - 2 * (4 * 4 * 8 + 3 * 4)
    X = ctx.task.X_train[:3]
    res = tour.layerdrop_every_other(ctx)
    out = res.model(X, None)
    assert out.shape == (3, 2)
    n_base = len(ctx.baseline.layers)
    assert len(res.model.layers) == n_base - n_base // 2
    assert res.params == res.model.num_parameters() < ctx.baseline.num_parameters()
    assert res.params == ctx.baseline.num_parameters() - ctx.baseline.layers[1].num_parameters()
    # layer 2 pruned: the kept model equals the fine-tuned one with layer_mask [1, 0]
    full = copy.deepcopy(res.model)
    full.layers = nn.ModuleList([res.model.layers[0], copy.deepcopy(ctx.baseline.layers[1])])
    full.num_layers = 2
    np.testing.assert_array_equal(full(X, None, layer_mask=np.array([1.0, 0.0])).data,
                                  out.data)


def test_bank_size_for():
    assert tour.bank_size_for(48) == 16 and tour.bank_size_for(12) == 4
    assert tour.bank_size_for(7) == 1
    with pytest.raises(ValueError, match="Transformer"):
        tour._transformer(SimpleNamespace(baseline_kind="lstm",
                                          copy_baseline=lambda kind=None: (_ for _ in ()).throw(
                                              KeyError(kind))))
