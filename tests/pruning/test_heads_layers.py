"""Tests for refimpl.pruning.heads_layers (Survey §2.4)."""

import numpy as np
import pytest

from refimpl.nn import Linear, Tensor, TransformerClassifier, cross_entropy
from refimpl.pruning import heads_layers as hl


def _tf(num_heads=4, num_layers=2, rng=1):
    return TransformerClassifier(vocab_size=20, d_model=8, num_heads=num_heads, d_ff=8,
                                 num_layers=num_layers, max_len=6, n_classes=2,
                                 activation="relu", rng=rng)


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    m = _tf()
    X = rng.integers(4, 20, size=(12, 6))
    lengths = rng.integers(2, 7, size=12)
    X[np.arange(6)[None, :] >= lengths[:, None]] = 0
    y = rng.integers(0, 2, size=12)
    return m, X, lengths, y


def test_eq18_forms_agree_and_match_finite_differences(tiny):
    m, X, L, y = tiny
    a = hl.head_importance(m, X, L, y, form="gate")
    b = hl.head_importance(m, X, L, y, form="activation")
    assert np.allclose(a, b, atol=1e-12), np.abs(a - b).max()
    # E|dL(x)/dxi| by central differences, one example at a time
    fd = np.zeros_like(a)
    for n in range(len(y)):
        for layer in range(2):
            for h in range(4):
                hp, hn = np.ones((2, 4)), np.ones((2, 4))
                hp[layer, h] += 1e-6
                hn[layer, h] -= 1e-6
                d = (hl.gated_loss(m, X[n:n + 1], L[n:n + 1], y[n:n + 1], head_mask=hp)
                     - hl.gated_loss(m, X[n:n + 1], L[n:n + 1], y[n:n + 1],
                                     head_mask=hn)) / 2e-6
                fd[layer, h] += abs(d) / len(y)
    assert np.allclose(a, fd, atol=1e-7), np.abs(a - fd).max()
    nrm = hl.head_importance(m, X, L, y, normalize=True)
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1.0)


def test_eq18_per_example_gate_gradient_identity(tiny):
    """The one Eq. (18) path: with per-example gates ξ = 1 of shape (L, B, H), one backward
    pass of the summed loss gives every example's own ∂L(x_b)/∂ξ_h = Att_h(x_b)ᵀ∂L/∂Att_h,
    equal to B separate single-example backward passes with shared (L, H) gates."""
    m, X, L, y = tiny
    B = len(y)
    xi = Tensor(np.ones((2, B, 4)), requires_grad=True)
    logits, enc = m(X, L, head_mask=xi, output_attentions=True)
    for att in enc.attentions:
        att.context.retain_grad()
    (cross_entropy(logits, y) * float(B)).backward()
    for b in range(B):
        g = Tensor(np.ones((2, 4)), requires_grad=True)
        cross_entropy(m(X[b:b + 1], L[b:b + 1], head_mask=g), y[b:b + 1]).backward()
        np.testing.assert_allclose(xi.grad[:, b], g.grad, atol=1e-12)
    for layer, att in enumerate(enc.attentions):
        per = np.einsum("bhtd,bhtd->bh", att.context.data, att.context.grad)  # (B, H)
        np.testing.assert_allclose(per, xi.grad[layer], atol=1e-12)
    imp = hl.head_importance(m, X, L, y)
    np.testing.assert_allclose(imp, np.abs(xi.grad).mean(axis=1), atol=1e-12)


def test_ffn_gates_to_mask_and_gated_helpers(tiny):
    m, X, L, y = tiny
    fm = hl.ffn_gates_to_mask(m, np.array([1.0, 0.0]))
    assert fm.shape == (2, 8) and fm[0].tolist() == [1.0] * 8 and fm[1].tolist() == [0.0] * 8
    nu = Tensor(np.array([[0.5, 2.0], [1.0, 3.0]]), requires_grad=True)  # (L, B)
    t = hl.ffn_gates_to_mask(m, nu)
    assert t.shape == (2, 2, 8)
    t.sum().backward()
    assert nu.grad.tolist() == [[8.0, 8.0], [8.0, 8.0]]
    # a 1-D ffn_mask is per-FFN gates, 2-D per hidden unit: the same model output
    a = hl.gated_loss(m, X, L, y, ffn_mask=np.array([1.0, 0.0]))
    b = hl.gated_loss(m, X, L, y, ffn_mask=fm)
    assert a == b and a != hl.gated_loss(m, X, L, y)
    acc = hl.gated_accuracy(m, X, L, y, head_mask=np.ones((2, 4)), batch_size=5)
    with_no_masks = float((m(X, L).data.argmax(1) == y).mean())
    assert acc == pytest.approx(with_no_masks, abs=1e-15)
    with pytest.raises(ValueError, match=r"ffn_gates must have shape \(2,\)"):
        hl.ffn_gates_to_mask(m, np.ones(3))
    with pytest.raises(TypeError, match="model must be a refimpl.nn.TransformerClassifier"):
        hl.head_importance(Linear(2, 2), X, L, y)


def test_head_importance_from_outputs_hand():
    att = np.ones((2, 1, 1, 2))
    datt = np.array([[[[1.0, 2.0]]], [[[-3.0, -1.0]]]])
    assert hl.head_importance_from_outputs(att, datt).tolist() == [3.5]


def test_head_confidence_uniform():
    B, H, T = 2, 3, 4
    lengths = np.array([4, 2])
    attn = np.zeros((B, H, T, T))
    for b, n in enumerate(lengths):
        attn[b, :, :, :n] = 1.0 / n
    conf = hl.head_confidence(attn, lengths)
    assert np.allclose(conf, (4 * 0.25 + 2 * 0.5) / 6)
    with pytest.raises(ValueError, match="lengths"):
        hl.head_confidence(attn, np.array([1, 2, 3]))


def test_hard_concrete_gate_probabilities_and_gradient():
    la = np.array([-2.0, 0.0, 3.0])
    rng = np.random.default_rng(0)
    z = hl.hard_concrete_gate(np.broadcast_to(la, (20000, 3)).copy(), rng).data  # (20000, 3)
    assert np.all((z >= 0) & (z <= 1))
    assert np.allclose((z > 0).mean(0), hl.prob_nonzero(la), atol=0.015)
    assert (z == 0).any() and (z == 1).any()
    t = Tensor(la, requires_grad=True)
    (hl.hard_concrete_gate(t, 1).sum() + hl.l0_penalty(t)).backward()
    assert t.grad is not None and np.all(t.grad >= 0)
    assert float(hl.l0_penalty(la).data) == pytest.approx(hl.prob_nonzero(la).sum())
    assert hl.hard_concrete_deterministic(np.array([-10.0, 10.0])).tolist() == [0.0, 1.0]


def test_iterative_head_pruning(tiny):
    m, X, L, y = tiny
    masks, scores = hl.iterative_head_pruning(
        m, X, L, y, lambda hm: hl.gated_accuracy(m, X, L, y, head_mask=hm),
        step_fraction=0.25)
    assert [int(mk.sum()) for mk in masks] == [8, 6, 4, 2, 1]
    assert len(scores) == 5 and all(0 <= s <= 1 for s in scores)
    with pytest.raises(ValueError, match="step_fraction"):
        hl.iterative_head_pruning(m, X, L, y, lambda hm: 0.0, step_fraction=1.0)


def test_joint_prune_masks(tiny):
    m, X, L, y = tiny
    hm, fm, hist = hl.joint_prune_masks(
        m, X, L, y, lambda h, f: hl.gated_accuracy(m, X, L, y, head_mask=h, ffn_mask=f),
        head_fraction=0.25, min_score=0.0)
    assert hm.shape == (2, 4) and fm.shape == (2,)
    assert hm.sum() >= 1 and fm.sum() == 0
    assert hist[0][:2] == (8, 2)


def test_layerdrop_helpers():
    assert hl.layerdrop_gates(5, 0.0, 0).tolist() == [1.0] * 5
    g = np.stack([hl.layerdrop_gates(4, 0.3, s) for s in range(2000)])
    assert abs(1 - g.mean() - 0.3) < 0.03
    assert hl.every_other_keep(6, 0.5).tolist() == [True, False] * 3
    assert hl.every_other_keep(12, 1 / 3).sum() == 8
    assert hl.every_other_keep(3, 0.0).all()
    best, s = hl.search_layers_validation(lambda k: k[0] + 2 * k[3] - k[1], 4, 2)
    assert best.tolist() == [True, False, False, True] and s == 3
    pd = hl.data_driven_drop_rates(np.array([0.1, -0.3, 0.7, 0.0]), 0.25)
    assert float(pd.data.mean()) == pytest.approx(0.25)
    assert hl.data_driven_keep(np.array([0.1, -0.3, 0.7, 0.0]), 2).tolist() == \
        [False, True, False, True]
    gates = hl.relaxed_layer_gates(pd, 0)
    assert np.all((gates.data > 0) & (gates.data < 1))
    with pytest.raises(ValueError, match="p must"):
        hl.layerdrop_gates(3, 1.0)
    with pytest.raises(ValueError, match="n_keep"):
        hl.search_layers_validation(lambda k: 0.0, 3, 4)


def test_train_l0_head_gates_penalty_closes_gates():
    rng = np.random.default_rng(1)
    X = rng.integers(4, 20, size=(32, 6))
    L = np.full(32, 6)
    y = rng.integers(0, 2, size=32)
    outs = {}
    for lam in (0.0, 5.0):
        m = _tf()
        la, gates = hl.train_l0_head_gates(m, X, L, y, lam=lam, epochs=10, lr=0.05,
                                           batch_size=16, rng=0)
        outs[lam] = (la, gates)
    assert outs[5.0][0].mean() < outs[0.0][0].mean() - 0.5
    assert np.all((outs[0.0][1] >= 0) & (outs[0.0][1] <= 1))
    assert outs[5.0][1].sum() < outs[0.0][1].sum()


def test_learn_layer_drop_rates_changes_theta():
    rng = np.random.default_rng(2)
    X = rng.integers(4, 20, size=(32, 6))
    L = np.full(32, 6)
    y = (X[:, 0] > 11).astype(int)
    m = _tf(num_heads=2, num_layers=3)
    theta = hl.learn_layer_drop_rates(m, X, L, y, p=0.3, epochs=3, lr=0.05, batch_size=16,
                                      rng=0)
    assert theta.shape == (3,) and np.abs(theta).max() > 0
    assert float(hl.data_driven_drop_rates(theta, 0.3).data.mean()) == pytest.approx(0.3)
    assert hl.data_driven_keep(theta, 2).sum() == 2


@pytest.mark.parametrize("p,exc,msg", [("0.5", TypeError, "p must have dtype kind"),
                                       (None, TypeError, "p must be an array, got None"),
                                       (float("nan"), ValueError, "p contains NaN"),
                                       (1.0, ValueError, r"p must have every value in \[0, 1\)"),
                                       ([0.1, -0.2, 0.1], ValueError, "p must have every value"),
                                       ([0.1, 0.2], ValueError, r"p must be a number or have "
                                                                r"shape \(3,\)")])
def test_layerdrop_gates_validates_p(p, exc, msg):
    """Issue #12: p="0.5", None and NaN used to be accepted."""
    with pytest.raises(exc, match=msg):
        hl.layerdrop_gates(3, p, 0)


def test_hard_concrete_refuses_none_nan_and_bad_stretch():
    """Issue #12: hard_concrete_gate(None) returned NaN."""
    with pytest.raises(TypeError, match="log_alpha must be an array, got None"):
        hl.hard_concrete_gate(None)
    with pytest.raises(ValueError, match="log_alpha contains NaN"):
        hl.hard_concrete_gate(Tensor(np.array([0.0, np.nan])))
    with pytest.raises(ValueError, match=r"beta must be in \(0, inf\]"):
        hl.hard_concrete_gate(np.zeros(2), beta=0.0)
    with pytest.raises(ValueError, match="gamma must be in"):
        hl.l0_penalty(np.zeros(2), gamma=0.1)
    with pytest.raises(ValueError, match="zeta must be in"):
        hl.hard_concrete_deterministic(np.zeros(2), zeta=0.9)
    with pytest.raises(TypeError, match="log_alpha must be a real array"):
        hl.hard_concrete_deterministic(np.array([1j]))
    z = hl.hard_concrete_gate(np.zeros(5), 0).data
    assert np.all((z >= 0) & (z <= 1))
