"""BSR and bank-balanced sparse kernels: Numba vs NumPy reference vs dense vs scipy."""

import numpy as np
import pytest
import scipy.sparse as sp

from refimpl.kernels.block_sparse import (bbs_from_dense, bbs_matmat, bsr_from_dense,
                                          bsr_matmat)
from refimpl.pruning.blocks import bank_balanced_mask, block_mask

from _numerics import err_message as _err




@pytest.mark.parametrize("shape,bs,sparsity", [((8, 12), (2, 3), 0.5), ((16, 16), (4, 4), 0.9),
                                               ((6, 4), (1, 1), 0.3), ((64, 96), (4, 8), 0.75)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bsr_matches_dense_and_scipy(backend, rng, shape, bs, sparsity, dtype):
    W = rng.normal(size=shape).astype(dtype)
    W = W * block_mask(W, bs, sparsity)
    A = bsr_from_dense(W, bs)
    X = rng.normal(size=(shape[1], 5)).astype(dtype)
    Y = bsr_matmat(A, X, backend=backend)
    assert Y.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-12
    ref = sp.bsr_matrix(W, blocksize=bs) @ X
    assert np.allclose(Y, ref, atol=tol), _err(Y, ref)
    assert np.allclose(Y, W @ X, atol=tol)
    y = bsr_matmat(A, X[:, 0], backend=backend)
    assert y.shape == (shape[0],) and np.allclose(y, W @ X[:, 0], atol=tol)
    assert np.array_equal(A.to_dense(), W)
    assert A.nnzb == sp.bsr_matrix(W, blocksize=bs).nnz // (bs[0] * bs[1]) or sparsity == 0


@pytest.mark.parametrize("bank,sparsity", [(4, 0.5), (8, 0.875), (16, 0.75)])
def test_bbs_matches_dense(backend, rng, bank, sparsity):
    W = rng.normal(size=(12, 4 * bank))
    M = bank_balanced_mask(W, bank, sparsity)
    A = bbs_from_dense(W * M, bank, M)
    assert A.k == bank - round(sparsity * bank)
    X = rng.normal(size=(4 * bank, 3))
    Y = bbs_matmat(A, X, backend=backend)
    assert np.allclose(Y, (W * M) @ X, atol=1e-12), _err(Y, (W * M) @ X)
    assert np.array_equal(A.to_dense(), W * M)
    assert A.bits(32) == A.nnz * (32 + int(np.log2(bank)))


def test_large_parallel_path(backend, rng):
    W = rng.normal(size=(256, 256))
    W = W * block_mask(W, (4, 4), 0.5)
    X = rng.normal(size=(256, 64))
    assert np.allclose(bsr_matmat(bsr_from_dense(W, (4, 4)), X, backend=backend), W @ X,
                       atol=1e-10)
    A = bsr_from_dense(W, (4, 4))
    assert np.allclose(bsr_matmat(A, X[:, 0], backend=backend), W @ X[:, 0], atol=1e-10)
    M = bank_balanced_mask(W + 1e-3, 16, 0.5)
    B = bbs_from_dense(W * M, 16, M)
    assert np.allclose(bbs_matmat(B, X[:, 0], backend=backend), (W * M) @ X[:, 0], atol=1e-10)
    assert np.allclose(bbs_matmat(bbs_from_dense(W * M, 16, M), X, backend=backend),
                       (W * M) @ X, atol=1e-10)


def test_bad_input(rng):
    with pytest.raises(ValueError, match="blocksize"):
        bsr_from_dense(np.ones((4, 6)), (4, 4))
    with pytest.raises(ValueError, match="bank-balanced"):
        bbs_from_dense(np.array([[1.0, 0.0, 1.0, 1.0]]), 2)
    with pytest.raises(ValueError, match="bank_size"):
        bbs_from_dense(np.ones((2, 6)), 4)
    A = bsr_from_dense(np.eye(4), (2, 2))
    with pytest.raises(ValueError, match="X"):
        bsr_matmat(A, np.ones((3, 2)))
    with pytest.raises(ValueError, match="X contains NaN"):
        bsr_matmat(A, np.full(4, np.nan))
    with pytest.raises(TypeError, match="BSRMatrix"):
        bsr_matmat(np.eye(4), np.ones(4))
