"""BSR and bank-balanced sparse kernels: Numba vs NumPy reference vs dense vs scipy."""

import numpy as np
import pytest
import scipy.sparse as sp

from refimpl.kernels.block_sparse import (BBSMatrix, BSRMatrix, bbs_from_dense, bbs_matmat,
                                          bsr_from_dense, bsr_matmat)
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


# ------------------------------------------------------------- validation, read-only storage
def _bsr_parts():
    # 4 x 6 matrix, blocks 2 x 3: block-row 0 holds block-columns 1 and 0, block-row 1 column 1
    blocks = np.arange(1.0, 19.0).reshape(3, 2, 3)
    return np.array([0, 2, 3]), np.array([1, 0, 1]), blocks


def test_bsr_stored_arrays_are_read_only_private_copies(backend):
    indptr, indices, blocks = _bsr_parts()
    indices = indices.astype(np.uint32)  # the stored dtype: copied all the same
    A = BSRMatrix(indptr, indices, blocks, (4, 6))
    for name in ("indptr", "indices", "blocks"):
        arr = getattr(A, name)
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0
        with pytest.raises(ValueError):
            arr.setflags(write=True)
    with pytest.raises(ValueError, match="read-only"):
        A.indptr[1] = 10**9  # used to make bsr_matmat segfault
    for given, stored in ((indptr, A.indptr), (indices, A.indices), (blocks, A.blocks)):
        assert given.flags.writeable and not np.shares_memory(given, stored)
    D = A.to_dense()
    blocks[0] = -1.0  # the caller's array changes, A does not
    np.testing.assert_array_equal(A.to_dense(), D)
    X = np.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(bsr_matmat(A, X, backend=backend), D @ X)
    B = bsr_from_dense(np.eye(4), (2, 2))
    assert not (B.indptr.flags.writeable or B.indices.flags.writeable
                or B.blocks.flags.writeable)


def test_bsr_constructor_validates_naming_the_field():
    indptr, indices, blocks = _bsr_parts()
    with pytest.raises(ValueError, match=r"^indices must lie in \[0, 2\)"):
        BSRMatrix(indptr, np.array([1, 2, 0]), blocks, (4, 6))
    with pytest.raises(ValueError, match=r"^indices must lie in \[0, 2\)"):
        BSRMatrix(indptr, np.array([1, -1, 0]), blocks, (4, 6))
    with pytest.raises(ValueError, match="^indptr must be non-decreasing"):
        BSRMatrix(np.array([0, 3, 2]), indices, blocks, (4, 6))
    with pytest.raises(ValueError, match="^indptr must be non-decreasing"):
        BSRMatrix(np.array([0, 1, 2]), indices, blocks, (4, 6))
    with pytest.raises(ValueError, match="^indptr must be an integer array of shape"):
        BSRMatrix(np.array([0, 3]), indices, blocks, (4, 6))
    with pytest.raises(ValueError, match="^indices must have shape"):
        BSRMatrix(indptr, indices[:2], blocks, (4, 6))
    with pytest.raises(ValueError, match="must divide shape"):
        BSRMatrix(indptr, indices, blocks, (5, 6))
    with pytest.raises(TypeError, match="^blocks must be float32 or float64"):
        BSRMatrix(indptr, indices, blocks.astype(int), (4, 6))
    with pytest.raises(ValueError, match="^blocks contains NaN or inf"):
        BSRMatrix(indptr, indices, np.where(blocks == 5.0, np.nan, blocks), (4, 6))
    with pytest.raises(ValueError, match="^shape must be"):
        BSRMatrix(indptr, indices, blocks, (4, 0))


def test_bsr_repeated_block_column_is_summed_everywhere(backend):
    indptr, _, blocks = _bsr_parts()
    A = BSRMatrix(indptr, np.array([1, 1, 0]), blocks, (4, 6))  # block-row 0: column 1 twice
    D = A.to_dense()
    np.testing.assert_array_equal(D[:2, 3:], blocks[0] + blocks[1])
    X = np.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(bsr_matmat(A, X, backend=backend), D @ X)


def test_bbs_validation_read_only_and_repeated_offsets(backend):
    values = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])  # 2 rows, 2 banks
    offsets = np.array([[[0, 3], [1, 1]], [[2, 3], [0, 2]]])  # row 0, bank 1: offset 1 twice
    A = BBSMatrix(values, offsets, 4, (2, 8))
    for name in ("values", "offsets"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(A, name)[...] = 0
        with pytest.raises(ValueError):
            getattr(A, name).setflags(write=True)
    assert not np.shares_memory(values, A.values) and values.flags.writeable
    D = A.to_dense()
    np.testing.assert_array_equal(D, [[1, 0, 0, 2, 0, 7, 0, 0], [0, 0, 5, 6, 7, 0, 8, 0]])
    X = np.arange(16.0).reshape(8, 2)
    np.testing.assert_array_equal(bbs_matmat(A, X, backend=backend), D @ X)
    with pytest.raises(ValueError, match=r"^offsets must lie in \[0, bank_size=4\)"):
        BBSMatrix(values, offsets + 1, 4, (2, 8))
    with pytest.raises(ValueError, match=r"^offsets must lie in \[0, bank_size=4\)"):
        BBSMatrix(values, offsets - 1, 4, (2, 8))
    with pytest.raises(ValueError, match="^values must have shape"):
        BBSMatrix(values, offsets, 2, (2, 8))
    with pytest.raises(ValueError, match="^offsets must have the shape of values"):
        BBSMatrix(values, offsets[..., :1], 4, (2, 8))
    with pytest.raises(ValueError, match="^values contains NaN or inf"):
        BBSMatrix(np.where(values == 3.0, np.inf, values), offsets, 4, (2, 8))
    with pytest.raises(ValueError, match="bank_size=3 must divide"):
        BBSMatrix(values, offsets, 3, (2, 8))
