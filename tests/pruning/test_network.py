"""Pruning masks on refimpl.nn models (refimpl.pruning.network)."""

import numpy as np
import pytest

from refimpl import nn
from refimpl.nn import functional as F
from refimpl.pruning import network as pnet
from refimpl.pruning.storage import encode_delta_csr


class _Clf(nn.Module):
    def __init__(self, rng):
        self.emb = nn.Embedding(30, 8, rng=rng)
        self.mha = nn.MultiHeadAttention(8, 2, rng=rng)
        self.fc1 = nn.Linear(8, 16, rng=rng)
        self.out = nn.Linear(16, 2, rng=rng)

    def forward(self, X, head_mask=None):
        h = self.mha(self.emb(X), head_mask=head_mask)  # (B, T, 8)
        return self.out(F.relu(self.fc1(h.mean(axis=1))))


def _data(rng, n=64):
    X = rng.integers(0, 30, size=(n, 5))
    y = (X[:, 0] > 15).astype(int)
    return X, y


def _train(model, X, y, steps, after_step):
    opt = nn.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad() if hasattr(opt, "zero_grad") else model.zero_grad()
        loss = nn.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        after_step(model)
    return float(loss.data)


def test_masks_survive_adam_and_bits_are_exact(rng):
    m = _Clf(rng)
    X, y = _data(rng)
    masks = pnet.magnitude_masks(m, 0.7, scheme="class-blind")
    assert "fc1.W" in masks and "fc1.b" not in masks
    total = sum(k.size for k in masks.values())
    assert sum((~k).sum() for k in masks.values()) == round(0.7 * total)
    pnet.apply_masks_(m, masks)
    _train(m, X, y, 15, pnet.mask_after_step(masks))
    params = dict(m.named_parameters())
    for n, k in masks.items():
        assert np.all(params[n].data[~k] == 0), n
    assert pnet.model_sparsity(m) >= round(0.7 * total) / total
    bits, stored = pnet.model_bits(m, masks, index_bits=4)
    want = sum(encode_delta_csr(np.where(masks[n], p.data, 0), 4).bits()
               if n in masks else 32 * p.size for n, p in params.items())
    assert bits == want and stored < m.num_parameters()


def test_gradual_pruner_reaches_final_sparsity(rng):
    m = _Clf(rng)
    X, y = _data(rng)
    gp = pnet.GradualPruner(m, 0.8, n_prunes=4, frequency=3, names=["fc1.W", "out.W"])
    _train(m, X, y, 15, gp)
    assert (~gp.masks["fc1.W"]).sum() == round(0.8 * 128) and gp.step == 15
    assert pnet.model_sparsity(m, ["fc1.W", "out.W"]) >= (102 + 26) / 160


def test_gradual_pruner_as_fit_callback_equals_after_step(rng):
    X, y = _data(rng)
    states = []
    for how in ("after_step", "callbacks"):
        m = _Clf(np.random.default_rng(5))
        gp = pnet.GradualPruner(m, 0.8, n_prunes=3, frequency=2, names=["fc1.W"])
        kw = {"after_step": gp} if how == "after_step" else {"callbacks": [gp]}
        nn.fit(m, (X, y), epochs=3, batch_size=16, lr=1e-2, rng=0, progress=False, **kw)
        assert gp.step == 12 and (~gp.masks["fc1.W"]).sum() == round(0.8 * 128)
        states.append(m.fc1.W.data.copy())
    assert np.array_equal(states[0], states[1])


def test_scheme_variants_and_errors(rng):
    m = _Clf(rng)
    bb = pnet.magnitude_masks(m, 0.5, scheme="bank-balanced", bank_size=2,
                              names=["fc1.W", "out.W"])
    assert np.all(bb["fc1.W"].reshape(16, 4, 2).sum(2) == 1)
    bl = pnet.magnitude_masks(m, 0.5, scheme="block", block_shape=(2, 2), names=["fc1.W"])
    assert (~bl["fc1.W"]).mean() == 0.5
    with pytest.raises(ValueError, match="bank_size"):
        pnet.magnitude_masks(m, 0.5, scheme="bank-balanced")
    with pytest.raises(ValueError, match="names"):
        pnet.magnitude_masks(m, 0.5, names=["nope"])
    with pytest.raises(ValueError, match="sparsity"):
        pnet.magnitude_masks(m, 1.2)


def test_head_importance_on_nn_transformer_equals_single_example_gate_gradients(rng):
    """The tour's head importance (Eq. (18)) on a TransformerClassifier: Σ_x |∂L(x)/∂ξ_h|
    from per-example gates equals one backward pass per example."""
    from refimpl.pruning.heads_layers import head_importance

    m = nn.TransformerClassifier(vocab_size=30, d_model=8, num_heads=2, d_ff=16, num_layers=2,
                                 max_len=5, n_classes=2, rng=0)
    X, y = _data(rng, 3)
    L = np.full(3, 5)
    total = np.zeros((2, 2))
    for b in range(3):
        xi = nn.Tensor(np.ones((2, 2)), requires_grad=True)
        loss = nn.cross_entropy(m(X[b:b + 1], L[b:b + 1], head_mask=xi), y[b:b + 1])
        loss.backward()
        total += np.abs(xi.grad)
    imp = head_importance(m, X, L, y)
    assert np.allclose(imp * 3, total, atol=1e-12), (imp, total)
