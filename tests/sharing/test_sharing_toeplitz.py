"""Toeplitz-like matrices (Survey §5.2): displacement, FFT products, scipy cross-check, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from refimpl import check
from refimpl.nn import gradcheck
from refimpl.sharing import (
    ToeplitzLikeLinear,
    displacement,
    f_circulant,
    toeplitz_generators,
    toeplitz_like_matrix,
    toeplitz_like_matvec,
)

EPS = np.finfo(float).eps


@pytest.mark.parametrize("seed", [0, 1])
def test_registered_check(seed):
    check.verify("toeplitz-like", seed=seed)


@pytest.mark.parametrize("n", [1, 2, 3, 8, 33])
def test_toeplitz_matches_scipy(n):
    rng = np.random.default_rng(n)
    c, r = rng.standard_normal(n), rng.standard_normal(n)
    G, H = toeplitz_generators(c, r)
    assert G.shape == H.shape == (n, 2)
    T = scipy.linalg.toeplitz(c, r)
    np.testing.assert_allclose(toeplitz_like_matrix(G, H), T, rtol=0,
                               atol=8 * n * EPS * np.abs(T).max())
    X = rng.standard_normal((4, n))
    ref = scipy.linalg.matmul_toeplitz((c, r), X.T).T
    np.testing.assert_allclose(toeplitz_like_matvec(G, H, X), ref, rtol=0,
                               atol=64 * max(np.log2(n), 1) * n * EPS
                               * np.abs(T).max() * np.abs(X).sum(1).max())


def test_circulant_is_rank_one_case():
    # r = 1, H = e_{n-1}-reversal picks Z_{-1}(e_0) = I: M = ½ Z_1(g)
    n = 6
    g = np.arange(1.0, n + 1)
    h = np.zeros(n)
    h[-1] = 1.0                                   # J h = e_0
    M = toeplitz_like_matrix(g[:, None], h[:, None])
    np.testing.assert_array_equal(M, 0.5 * f_circulant(g, 1))
    # Z_1 I − I Z_{−1} = Z_1 − Z_{−1}: only the corner differs, 1 − (−1) = 2
    np.testing.assert_array_equal(displacement(np.eye(3)), [[0, 0, 2], [0, 0, 0], [0, 0, 0]])


def test_batch_shapes_and_determinism():
    rng = np.random.default_rng(0)
    G, H = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    X = rng.standard_normal((2, 3, 5))
    Y = toeplitz_like_matvec(G, H, X)
    assert Y.shape == (2, 3, 5)
    assert np.array_equal(Y, toeplitz_like_matvec(G, H, X))


@pytest.mark.parametrize("n,rank", [(1, 1), (4, 1), (7, 3)])
def test_layer_gradcheck(n, rank):
    layer = ToeplitzLikeLinear(n, rank, rng=n)
    rng = np.random.default_rng(rank)

    def fn(x, G, H, b):
        layer.G, layer.H, layer.b = G, H, b
        return layer(x)

    gradcheck(fn, [rng.standard_normal((2, 2, n)), rng.standard_normal((n, rank)),
                   rng.standard_normal((n, rank)), rng.standard_normal(n)], rng=0)


def test_layer_counts():
    assert ToeplitzLikeLinear(64, 4, rng=0).num_parameters() == 2 * 64 * 4 + 64
    assert ToeplitzLikeLinear(64, 4, bias=False, rng=0).num_parameters() == 2 * 64 * 4


def test_bad_input():
    with pytest.raises(ValueError, match="rank"):
        ToeplitzLikeLinear(4, 0)
    with pytest.raises(ValueError, match="last dimension n=4"):
        ToeplitzLikeLinear(4, 1)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="G and H"):
        toeplitz_like_matrix(np.ones((4, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="X must have last dimension"):
        toeplitz_like_matvec(np.ones((4, 1)), np.ones((4, 1)), np.ones(3))
    with pytest.raises(ValueError, match="f must be"):
        f_circulant(np.ones(3), 2)
    with pytest.raises(ValueError, match="M must be square"):
        displacement(np.ones((2, 3)))
    with pytest.raises(ValueError, match="G contains NaN"):
        toeplitz_like_matrix(np.full((2, 1), np.nan), np.ones((2, 1)))
