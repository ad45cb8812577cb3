"""HashedNets (Survey §5.2): the registered check, the layer's gradients and counts, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import check
from refimpl.nn import gradcheck
from refimpl.sharing import HashedLinear, hash_seeds, hashed_matrix


@pytest.mark.parametrize("seed", [0, 1])
def test_registered_check(seed):
    check.verify("hashednets", seed=seed)


def test_hand_worked_seeds_and_counts():
    assert hash_seeds(0) == (0, 0x9E3779B9)
    assert hash_seeds(2**32 - 1) == (2**32 - 1, 0x9E3779B8)
    layer = HashedLinear(100, 50, 64, seed=5, rng=0)
    assert layer.num_parameters() == 64 + 50
    assert layer.storage_bits(32) == (64 + 50) * 32 + 64
    assert HashedLinear(100, 50, 64, bias=False).storage_bits(16) == 64 * 16 + 64


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_layer_gradcheck(backend):
    layer = HashedLinear(4, 3, 5, seed=9, rng=1, backend=backend)
    rng = np.random.default_rng(0)

    def fn(x, w, b):
        layer.w, layer.b = w, b
        return layer(x)

    gradcheck(fn, [rng.standard_normal((2, 2, 4)), layer.w.data, layer.b.data], rng=0)


def test_same_seed_bit_identical_different_seed_not():
    w = np.random.default_rng(0).standard_normal(11)
    a, b = hashed_matrix(w, (9, 7), 3), hashed_matrix(w, (9, 7), 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, hashed_matrix(w, (9, 7), 4))
    l1, l2 = HashedLinear(7, 9, 11, seed=3, rng=2), HashedLinear(7, 9, 11, seed=3, rng=2)
    assert np.array_equal(l1.virtual_weight(), l2.virtual_weight())


def test_bad_input():
    with pytest.raises(ValueError, match="K"):
        HashedLinear(3, 2, 0)
    with pytest.raises(ValueError, match="w"):
        hashed_matrix(np.array([]), (2, 2), 0)
    with pytest.raises(ValueError, match="seed"):
        hashed_matrix(np.ones(2), (2, 2), -1)
    with pytest.raises(ValueError, match="shape"):
        hashed_matrix(np.ones(2), (2,), 0)
    with pytest.raises(ValueError, match="in_features"):
        HashedLinear(3, 2, 4)(np.ones((2, 4)))
