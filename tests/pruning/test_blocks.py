"""Tests for refimpl.pruning.blocks (Survey §2.3)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.pruning import blocks as pb
from refimpl.pruning.weights import magnitude_mask


def test_block_mask_hand_case():
    W = np.array([[1.0, 0.1, 5.0, 0.0], [0.2, 0.3, 0.0, 0.0]])
    m = pb.block_mask(W, (2, 2), 0.5)
    assert m.tolist() == [[False, False, True, True], [False, False, True, True]]


def test_block_1x1_is_magnitude(rng):
    W = rng.normal(size=(6, 8))
    assert np.array_equal(pb.block_mask(W, (1, 1), 0.7), magnitude_mask(W, 0.7))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 999), s=st.floats(0, 0.95), bh=st.sampled_from([1, 2, 4]),
       bw=st.sampled_from([1, 2, 3]))
def test_block_properties(seed, s, bh, bw):
    W = np.random.default_rng(seed).normal(size=(4 * bh, 3 * bw))
    m = pb.block_mask(W, (bh, bw), s)
    blocks = m.reshape(4, bh, 3, bw).transpose(0, 2, 1, 3).reshape(12, -1)
    assert np.all(blocks.all(1) | ~blocks.any(1))  # whole blocks
    assert (~blocks.any(1)).sum() == int(round(s * 12))


def test_block_threshold():
    W = np.array([[1.0, 0.1], [0.2, 0.3]])
    assert pb.block_threshold_mask(W, (1, 2), 0.5).tolist() == [[True, True], [False, False]]


def test_block_slope():
    assert pb.block_slope(0.02, 16) == pytest.approx(0.04)
    assert pb.block_slope(0.02, 1) == 0.02


def test_group_lasso_grad_and_prox(rng):
    W = rng.normal(size=(4, 6))
    W[:2, :3] = 0.0  # a zero block
    pen, g = pb.group_lasso_penalty(W, (2, 3), lam=0.7)
    norms = [np.linalg.norm(W[i:i + 2, j:j + 3]) for i in (0, 2) for j in (0, 3)]
    assert pen == pytest.approx(0.7 * sum(norms))
    assert np.all(g[:2, :3] == 0)
    # finite differences away from the zero block
    for (i, j) in [(3, 4), (0, 5), (2, 0)]:
        E = np.zeros_like(W)
        E[i, j] = 1e-6
        fd = (pb.group_lasso_penalty(W + E, (2, 3), 0.7)[0]
              - pb.group_lasso_penalty(W - E, (2, 3), 0.7)[0]) / 2e-6
        assert abs(fd - g[i, j]) < 1e-7
    P = pb.group_lasso_prox(W, (2, 3), tau=1e9)
    assert np.all(P == 0)
    P = pb.group_lasso_prox(W, (2, 3), tau=0.0)
    assert np.allclose(P, W)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 999), bank=st.sampled_from([2, 4, 8]), k=st.integers(0, 7))
def test_bank_balanced_properties(seed, bank, k):
    s = min(k, bank - 1) / bank
    W = np.random.default_rng(seed).normal(size=(3, 4 * bank))
    m = pb.bank_balanced_mask(W, bank, s)
    per_bank = m.reshape(3, 4, bank).sum(2)
    assert np.all(per_bank == bank - round(s * bank))
    # within a bank, kept magnitudes dominate pruned ones
    A = np.abs(W).reshape(3, 4, bank)
    M = m.reshape(3, 4, bank)
    for r in range(3):
        for b in range(4):
            if M[r, b].any() and (~M[r, b]).any():
                assert A[r, b][M[r, b]].min() >= A[r, b][~M[r, b]].max()


def test_bad_shapes():
    with pytest.raises(ValueError, match="block_shape"):
        pb.block_mask(np.ones((4, 6)), (3, 3), 0.5)
    with pytest.raises(ValueError, match="bank_size"):
        pb.bank_balanced_mask(np.ones((4, 6)), 4, 0.5)
    with pytest.raises(ValueError, match="sparsity"):
        pb.bank_balanced_mask(np.ones((4, 8)), 4, 1.0)
    with pytest.raises(ValueError, match="W contains NaN"):
        pb.block_mask(np.full((2, 2), np.nan), (1, 1), 0.5)
