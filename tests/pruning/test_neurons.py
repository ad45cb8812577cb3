"""Tests for refimpl.pruning.neurons (Survey §2.2)."""

import numpy as np
import pytest

from refimpl.pruning import neurons as pn


def test_entropy_hand_values():
    H = np.array([[0.9, 0.1, 0.9], [0.9, 0.1, 0.2], [0.9, 0.1, 0.7], [0.9, 0.1, 0.3]])
    e = pn.neuron_entropy(H)
    assert e.tolist() == [0.0, 0.0, 1.0]
    assert np.array_equal(pn.neuron_entropy_survey_form(H), -e)
    H2 = np.array([[0.9], [0.1], [0.1], [0.1]])
    assert pn.neuron_entropy(H2)[0] == pytest.approx(-(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75)))


def test_onorm_inorm():
    W_in = np.array([[1.0, -3.0], [0.0, 2.0]])
    W_out = np.array([[2.0, 0.0], [-4.0, 1.0], [0.0, 2.0]])
    assert pn.inorm(W_in).tolist() == [2.0, 1.0]
    assert pn.onorm(W_out).tolist() == [2.0, 1.0]


def test_row_penalties_and_gradients(rng):
    W = rng.normal(size=(4, 5))
    W[2] = 0.0
    p2, g2 = pn.row_l2_penalty(W)
    pi, gi = pn.row_linf_penalty(W)
    assert p2 == pytest.approx(np.linalg.norm(W, axis=1).sum())
    assert pi == pytest.approx(np.abs(W).max(1).sum())
    assert np.all(g2[2] == 0) and np.all(gi[2] == 0)
    for (i, j) in [(0, 1), (3, 4), (1, int(np.abs(W[1]).argmax()))]:
        E = np.zeros_like(W)
        E[i, j] = 1e-6
        for f, g in ((pn.row_l2_penalty, g2), (pn.row_linf_penalty, gi)):
            fd = (f(W + E)[0] - f(W - E)[0]) / 2e-6
            assert abs(fd - g[i, j]) < 1e-6


def test_linf_subgradient_splits_ties():
    _, g = pn.row_linf_penalty(np.array([[2.0, -2.0, 1.0]]))
    assert g.tolist() == [[0.5, -0.5, 0.0]]


def _net(rng, n=6):
    W_in = rng.normal(size=(n, 3))
    b_in = rng.normal(size=n)
    W_out = rng.normal(size=(2, n))
    return W_in, b_in, W_out


def _forward(W_in, b_in, W_out, X):
    return np.tanh(X @ W_in.T + b_in) @ W_out.T


def test_merge_twins_leaves_output_unchanged(rng):
    W_in, b_in, W_out = _net(rng)
    W_in[4], b_in[4] = W_in[1], b_in[1]  # twins 1 and 4
    X = rng.normal(size=(10, 3))
    S = pn.neuron_pair_saliency(W_in, b_in, W_out)
    assert S[1, 4] == 0 and S[4, 1] == 0 and np.isinf(S[0, 0])
    Wi, bi, Wo = pn.merge_neurons(W_in, b_in, W_out, 1, 4)
    assert Wi.shape == (5, 3) and Wo.shape == (2, 5)
    assert np.allclose(_forward(Wi, bi, Wo, X), _forward(W_in, b_in, W_out, X), atol=1e-14)
    Wi2, bi2, Wo2, merged = pn.prune_redundant_neurons(W_in, b_in, W_out, 1)
    assert merged[0] in [(1, 4), (4, 1)]
    assert np.allclose(_forward(Wi2, bi2, Wo2, X), _forward(W_in, b_in, W_out, X), atol=1e-14)


def test_saliency_formula(rng):
    W_in, b_in, W_out = _net(rng)
    S = pn.neuron_pair_saliency(W_in, b_in, W_out)
    i, j = 2, 5
    eps = np.append(W_in[i] - W_in[j], b_in[i] - b_in[j])
    assert S[i, j] == pytest.approx(np.mean(W_out[:, j] ** 2) * eps @ eps)


def test_bad_input(rng):
    W_in, b_in, W_out = _net(rng)
    with pytest.raises(ValueError, match="i and j"):
        pn.merge_neurons(W_in, b_in, W_out, 2, 2)
    with pytest.raises(ValueError, match="W_out"):
        pn.neuron_pair_saliency(W_in, b_in, W_out[:, :3])
    with pytest.raises(ValueError, match="H contains NaN"):
        pn.neuron_entropy(np.array([[np.nan]]))


def test_remove_neurons_refuses_bad_indices():
    """Issue #12: negative (wrapping) and repeated (duplicating) indices were accepted."""
    rng = np.random.default_rng(0)
    W_in, b_in, W_out = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(2, 4))
    a, b, c = pn.remove_neurons(W_in, b_in, W_out, [2, 0])
    np.testing.assert_array_equal(a, W_in[[2, 0]])
    assert pn.remove_neurons(W_in, b_in, W_out, [])[0].shape == (0, 3)
    with pytest.raises(ValueError, match=r"keep must hold indices in \[0, 3\], got values in "
                                         r"\[-1, 0\]"):
        pn.remove_neurons(W_in, b_in, W_out, [-1, 0])
    with pytest.raises(ValueError, match="keep must hold indices in"):
        pn.remove_neurons(W_in, b_in, W_out, [4])
    with pytest.raises(ValueError, match="keep must hold distinct indices"):
        pn.remove_neurons(W_in, b_in, W_out, [1, 1])
    with pytest.raises(TypeError, match="keep must have dtype kind"):
        pn.remove_neurons(W_in, b_in, W_out, [0.5, 1.0])
