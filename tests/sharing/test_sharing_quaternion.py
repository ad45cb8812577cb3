"""Quaternion layers (Survey §5.3): Hamilton product, the layer's block form, counts, errors."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import check
from refimpl.nn import Linear, gradcheck
from refimpl.sharing import QuaternionLinear, hamilton_product, quaternion_block_matrix


@pytest.mark.parametrize("seed", [0, 1])
def test_registered_check(seed):
    check.verify("quaternion", seed=seed)


def test_hand_values_and_broadcast():
    assert hamilton_product([0, 1, 0, 0], [0, 0, 1, 0]).tolist() == [0, 0, 0, 1]   # ij = k
    assert hamilton_product([1, 2, 3, 4], [5, 6, 7, 8]).tolist() == [-60, 12, 30, 24]
    p = np.random.default_rng(0).standard_normal((3, 1, 4))
    q = np.random.default_rng(1).standard_normal((5, 4))
    out = hamilton_product(p, q)
    assert out.shape == (3, 5, 4)
    np.testing.assert_array_equal(out[2, 4], hamilton_product(p[2, 0], q[4]))
    # conjugate: q q* = |q|² (real)
    conj = q * np.array([1, -1, -1, -1])
    qq = hamilton_product(q, conj)
    np.testing.assert_allclose(qq[:, 0], (q ** 2).sum(-1), rtol=4 * np.finfo(float).eps)
    np.testing.assert_allclose(qq[:, 1:], 0, atol=4 * np.finfo(float).eps * (q ** 2).sum())


def test_layer_block_matrix_and_counts():
    layer = QuaternionLinear(16, 8, rng=0)
    W = layer.weight().data
    assert W.shape == (8, 16)
    np.testing.assert_array_equal(W, quaternion_block_matrix(
        layer.W_r.data, layer.W_i.data, layer.W_j.data, layer.W_k.data))
    np.testing.assert_array_equal(W[:2, 4:8], -layer.W_i.data)
    np.testing.assert_array_equal(W[6:8, 4:8], -layer.W_j.data)
    real = Linear(16, 8, rng=0)
    assert layer.num_parameters() - 8 == (real.num_parameters() - 8) // 4 == 32
    assert QuaternionLinear(16, 8, bias=False, rng=0).num_parameters() == 32


def test_layer_gradcheck():
    layer = QuaternionLinear(4, 8, rng=1)
    rng = np.random.default_rng(2)

    def fn(x, a, b, c, d, bias):
        layer.W_r, layer.W_i, layer.W_j, layer.W_k, layer.b = a, b, c, d, bias
        return layer(x)

    gradcheck(fn, [rng.standard_normal((2, 3, 4))] + [rng.standard_normal((2, 1))
                                                      for _ in range(4)]
              + [rng.standard_normal(8)], rng=0)


def test_same_seed_same_layer():
    a, b = QuaternionLinear(8, 8, rng=3), QuaternionLinear(8, 8, rng=3)
    np.testing.assert_array_equal(a.weight().data, b.weight().data)


def test_bad_input():
    with pytest.raises(ValueError, match="in_features must be divisible by 4"):
        QuaternionLinear(6, 8)
    with pytest.raises(ValueError, match="out_features must be divisible by 4"):
        QuaternionLinear(8, 10)
    with pytest.raises(ValueError, match="q must have shape"):
        hamilton_product(np.ones(4), np.ones(3))
    with pytest.raises(ValueError, match="in_features"):
        QuaternionLinear(8, 4)(np.ones((2, 4)))
    with pytest.raises(ValueError, match="W_r, W_i"):
        quaternion_block_matrix(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 3)), np.ones((2, 2)))
