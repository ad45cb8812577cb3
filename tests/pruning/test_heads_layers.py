"""Tests for refimpl.pruning.heads_layers (Survey §2.4)."""

import numpy as np
import pytest

from refimpl.nn import Tensor
from refimpl.pruning import heads_layers as hl
from refimpl.pruning._models import TinyTransformer, accuracy, mean_loss


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    m = TinyTransformer(20, 2, d_model=8, num_heads=4, n_layers=2, d_ff=8, max_len=6, rng=1)
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
                d = (mean_loss(m, X[n:n + 1], L[n:n + 1], y[n:n + 1], head_gates=hp)
                     - mean_loss(m, X[n:n + 1], L[n:n + 1], y[n:n + 1], head_gates=hn)) / 2e-6
                fd[layer, h] += abs(d) / len(y)
    assert np.allclose(a, fd, atol=1e-7), np.abs(a - fd).max()
    nrm = hl.head_importance(m, X, L, y, normalize=True)
    assert np.allclose(np.linalg.norm(nrm, axis=1), 1.0)


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
        m, X, L, y, lambda hm: accuracy(m, X, L, y, head_gates=hm), step_fraction=0.25)
    assert [int(mk.sum()) for mk in masks] == [8, 6, 4, 2, 1]
    assert len(scores) == 5 and all(0 <= s <= 1 for s in scores)
    with pytest.raises(ValueError, match="step_fraction"):
        hl.iterative_head_pruning(m, X, L, y, lambda hm: 0.0, step_fraction=1.0)


def test_joint_prune_masks(tiny):
    m, X, L, y = tiny
    hm, fm, hist = hl.joint_prune_masks(
        m, X, L, y, lambda h, f: accuracy(m, X, L, y, head_gates=h, ffn_gates=f),
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
    from refimpl.pruning._models import TinyTransformer

    rng = np.random.default_rng(1)
    X = rng.integers(4, 20, size=(32, 6))
    L = np.full(32, 6)
    y = rng.integers(0, 2, size=32)
    outs = {}
    for lam in (0.0, 5.0):
        m = TinyTransformer(20, 2, d_model=8, num_heads=4, n_layers=2, d_ff=8, max_len=6,
                            rng=1)
        la, gates = hl.train_l0_head_gates(m, X, L, y, lam=lam, epochs=6, lr=0.05,
                                           batch_size=16, rng=0)
        outs[lam] = (la, gates)
    assert outs[5.0][0].mean() < outs[0.0][0].mean() - 0.5
    assert np.all((outs[0.0][1] >= 0) & (outs[0.0][1] <= 1))
    assert outs[5.0][1].sum() < outs[0.0][1].sum()


def test_learn_layer_drop_rates_changes_theta():
    from refimpl.pruning._models import TinyTransformer

    rng = np.random.default_rng(2)
    X = rng.integers(4, 20, size=(32, 6))
    L = np.full(32, 6)
    y = (X[:, 0] > 11).astype(int)
    m = TinyTransformer(20, 2, d_model=8, num_heads=2, n_layers=3, d_ff=8, max_len=6, rng=1)
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
