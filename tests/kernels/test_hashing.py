"""HashedNets kernels (Survey §5.2): xxHash32 against the xxhash package, products and
gradients without V against the materialised matrix, on both backends."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

from refimpl.kernels.hashing import hashed_dense, hashed_matmul, hashed_matmul_backward, xxh32_pair


@pytest.mark.parametrize("seed", [0, 1, 42, 2**31, 2**32 - 1])
def test_xxh32_bit_identical_to_xxhash(backend, seed):
    xxhash = pytest.importorskip("xxhash")
    rng = np.random.default_rng(seed % 1000)
    i = np.concatenate([[0, 1, 2**32 - 1], rng.integers(0, 2**32, 200)])
    j = np.concatenate([[0, 2**32 - 1, 5], rng.integers(0, 2**32, 200)])
    want = [xxhash.xxh32_intdigest(struct.pack("<II", a, b), seed=seed) for a, b in zip(i, j)]
    got = xxh32_pair(i, j, seed, backend=backend)
    assert got.dtype == np.uint32
    np.testing.assert_array_equal(got, np.array(want, dtype=np.uint32))


def test_xxh32_same_in_a_fresh_process():
    code = ("from refimpl.kernels.hashing import xxh32_pair; import numpy as np;"
            "print(xxh32_pair(np.arange(5), np.arange(5), 7, backend='numpy').tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == str(xxh32_pair(np.arange(5), np.arange(5), 7).tolist())


@pytest.mark.parametrize("m,n,K,B", [(1, 1, 1, 1), (6, 9, 4, 3), (13, 5, 40, 2)])
def test_matmul_and_backward_equal_dense(backend, m, n, K, B):
    rng = np.random.default_rng(m * n)
    w, X, dY = rng.standard_normal(K), rng.standard_normal((B, n)), rng.standard_normal((B, m))
    V = hashed_dense(w, m, n, 3, 4, backend=backend)
    # sums of n (resp. m) products: rounding bound ~ n·eps·Σ|terms|
    eps = np.finfo(float).eps
    Y = hashed_matmul(X, w, m, 3, 4, backend=backend)
    np.testing.assert_allclose(Y, X @ V.T, rtol=0,
                               atol=4 * n * eps * (np.abs(X) @ np.abs(V).T).max())
    dX, dw = hashed_matmul_backward(dY, X, w, 3, 4, backend=backend)
    np.testing.assert_allclose(dX, dY @ V, rtol=0,
                               atol=4 * m * eps * (np.abs(dY) @ np.abs(V)).max())
    # dw[k] = Σ_{h(i,j)=k} ξ(i,j) dV_ij with dV = dYᵀX, ξ·w[k] = V
    k = (xxh32_pair(*np.meshgrid(np.arange(m), np.arange(n), indexing="ij"), 3, backend=backend)
         .astype(np.int64) % K)
    sign = np.sign(V) * np.sign(w[k])
    dV = dY.T @ X
    ref = np.bincount(k.ravel(), weights=(sign * dV).ravel(), minlength=K)
    np.testing.assert_allclose(dw, ref, rtol=0,
                               atol=4 * (m * n * B) * eps * (np.abs(dY).T @ np.abs(X)).sum())


def test_twins_bit_identical():
    rng = np.random.default_rng(1)
    w = rng.standard_normal(6)
    np.testing.assert_array_equal(hashed_dense(w, 5, 8, 1, 2, backend="numba"),
                                  hashed_dense(w, 5, 8, 1, 2, backend="numpy"))
    i = rng.integers(0, 2**32, 50)
    np.testing.assert_array_equal(xxh32_pair(i, i[::-1], 9, backend="numba"),
                                  xxh32_pair(i, i[::-1], 9, backend="numpy"))


def test_entries_are_signed_buckets():
    w = np.array([1.0, 2.0, 3.0])
    V = hashed_dense(w, 20, 20, 0, 1)
    assert set(np.unique(np.abs(V))) <= {1.0, 2.0, 3.0}
    assert (V > 0).any() and (V < 0).any()


def test_bad_input_named():
    with pytest.raises(ValueError, match="w"):
        hashed_dense(np.array([]), 2, 2, 0, 1)
    with pytest.raises(ValueError, match="seed"):
        xxh32_pair(np.arange(2), np.arange(2), -1)
    with pytest.raises(ValueError, match="seed_bucket"):
        hashed_matmul(np.ones((1, 2)), np.ones(3), 2, 2**32, 0)
    with pytest.raises(ValueError, match="i must"):
        xxh32_pair(np.array([-1]), np.array([0]), 0)
    with pytest.raises(ValueError, match="dY"):
        hashed_matmul_backward(np.ones((2, 2)), np.ones((3, 2)), np.ones(3), 0, 1)
