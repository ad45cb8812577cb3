"""Block-sparse (BSR) and bank-balanced sparse (BBS) matrix × dense kernels (Survey §2.3).

Block pruning (Narang et al. 2017b) zeroes whole ``bh × bw`` blocks; the survivors are stored
in *block sparse row* (BSR) form:

* ``blocks``  — the ``nnzb`` kept blocks, shape ``(nnzb, bh, bw)``, contiguous in memory;
* ``indices`` — each block's block-column, shape ``(nnzb,)``, ``uint32``;
* ``indptr``  — block-row ``r`` holds ``blocks[indptr[r]:indptr[r+1]]``, shape
  ``(n_rows / bh + 1,)``.

Bank-balanced sparsity (BBS, Cao et al. 2019) splits every row into ``n_banks`` banks of
``bank_size`` consecutive columns and keeps exactly ``k`` weights per bank, so storage is
dense-shaped and needs no row pointers:

* ``values``  — shape ``(n_rows, n_banks, k)``;
* ``offsets`` — the column of each value *inside its bank*, shape ``(n_rows, n_banks, k)``,
  ``uint16`` (``log2(bank_size)`` bits of information each).

Every row does the same amount of work — the balance that lets Cao et al.'s FPGA process the
banks of a row in parallel without load imbalance.

Kernels: :func:`bsr_matmat` (``Y = A @ X``) and :func:`bbs_matmat`, each a Numba function
(``cache=True``) beside a pure-NumPy reference, chosen by ``backend="numba" | "numpy"``
(default ``$REFIMPL_BACKEND``). A 1-D ``X`` gives a matrix-vector product.

References
----------
.. [1] S. Narang, E. Undersander, G. Diamos, "Block-Sparse Recurrent Neural Networks",
   arXiv 1711.02782, 2017.
.. [2] S. Cao et al., "Efficient and Effective Sparse LSTM on FPGA with Bank-Balanced
   Sparsity", FPGA 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from refimpl.kernels._backend import dispatch
from refimpl.kernels.sparse import frozen_copy
from refimpl.utils import check_array, check_int

__all__ = ["BSRMatrix", "bsr_from_dense", "bsr_matmat", "BBSMatrix", "bbs_from_dense",
           "bbs_matmat"]

PARALLEL_MIN_WORK = 1 << 16


def _float(W):
    if W.dtype not in (np.float32, np.float64):
        W = W.astype(np.float64)
    return W


def _check_shape(shape) -> tuple[int, int]:
    if not isinstance(shape, tuple) or len(shape) != 2 or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1
            for s in shape):
        raise ValueError(f"shape must be a tuple of two positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


# ----------------------------------------------------------------------------------------------
# BSR
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BSRMatrix:
    """A matrix in block sparse row form (see the module docstring for the fields).

    Attributes
    ----------
    indptr : ndarray of shape (n_rows // bh + 1,), int64
        Non-decreasing from 0 to ``nnzb``.
    indices : ndarray of shape (nnzb,), uint32
        Block-column of each block, in ``[0, n_cols // bw)``.
    blocks : ndarray of shape (nnzb, bh, bw), float32 or float64
        Finite values; ``bh`` and ``bw`` divide ``shape``.
    shape : (int, int)

    Notes
    -----
    The constructor validates every field once, on private copies stored **read-only** (as
    :class:`refimpl.kernels.sparse.CSRMatrix`): the kernels do no bounds checks, so changing
    ``indptr`` or ``indices`` afterwards could make them read out of bounds; assigning into
    them raises ``ValueError``. The caller's arrays are copied, never frozen. A block-column
    repeated within a block-row means the sum of the blocks (the kernels and :meth:`to_dense`
    add them).
    """

    indptr: np.ndarray
    indices: np.ndarray
    blocks: np.ndarray
    shape: tuple

    def __post_init__(self):
        n_rows, n_cols = _check_shape(self.shape)
        object.__setattr__(self, "shape", (n_rows, n_cols))
        blocks = np.asarray(self.blocks)
        if blocks.dtype not in (np.float32, np.float64):
            raise TypeError(f"blocks must be float32 or float64, got {blocks.dtype}")
        if blocks.ndim != 3 or blocks.shape[1] < 1 or blocks.shape[2] < 1:
            raise ValueError(f"blocks must have shape (nnzb, bh, bw) with bh, bw >= 1, got "
                             f"{blocks.shape}")
        nnzb, bh, bw = blocks.shape
        if n_rows % bh or n_cols % bw:
            raise ValueError(f"the block size ({bh}, {bw}) of blocks must divide shape "
                             f"{(n_rows, n_cols)}")
        nbr, nbc = n_rows // bh, n_cols // bw
        indptr = np.asarray(self.indptr)
        indices = np.asarray(self.indices)
        if indptr.ndim != 1 or indptr.shape[0] != nbr + 1 or indptr.dtype.kind not in "iu":
            raise ValueError(f"indptr must be an integer array of shape ({nbr + 1},), got "
                             f"{indptr.dtype} of shape {indptr.shape}")
        if indptr[0] != 0 or indptr[-1] != nnzb or np.any(np.diff(indptr) < 0):
            raise ValueError(f"indptr must be non-decreasing from 0 to nnzb={nnzb}, got "
                             f"indptr[0]={indptr[0]}, indptr[-1]={indptr[-1]}")
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array, got {indices.dtype}")
        if indices.shape != (nnzb,):
            raise ValueError(f"indices must have shape ({nnzb},) (one block-column per block), "
                             f"got {indices.shape}")
        if nnzb and (indices.min() < 0 or indices.max() >= nbc):
            raise ValueError(f"indices must lie in [0, {nbc}) (block-columns), got range "
                             f"[{indices.min()}, {indices.max()}]")
        if blocks.size and not np.isfinite(blocks).all():
            raise ValueError("blocks contains NaN or inf")
        object.__setattr__(self, "indptr", frozen_copy(indptr, np.int64))
        object.__setattr__(self, "indices", frozen_copy(indices, np.uint32))
        object.__setattr__(self, "blocks", frozen_copy(blocks, blocks.dtype))

    @property
    def blocksize(self) -> tuple[int, int]:
        return int(self.blocks.shape[1]), int(self.blocks.shape[2])

    @property
    def nnzb(self) -> int:
        return int(self.blocks.shape[0])

    @property
    def nnz(self) -> int:
        """Stored values (``nnzb * bh * bw``; zeros inside a kept block count)."""
        return int(self.blocks.size)

    @property
    def dtype(self):
        return self.blocks.dtype

    def to_dense(self) -> np.ndarray:
        """The dense matrix (repeated block-columns summed, as the kernels do)."""
        bh, bw = self.blocksize
        out = np.zeros(self.shape, dtype=self.blocks.dtype)
        for r in range(self.shape[0] // bh):
            for p in range(self.indptr[r], self.indptr[r + 1]):
                c = int(self.indices[p])
                out[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] += self.blocks[p]
        return out

    def __matmul__(self, other):
        return bsr_matmat(self, other)


def bsr_from_dense(W, blocksize) -> BSRMatrix:
    """Store the non-zero ``blocksize`` blocks of ``W`` in BSR form.

    Parameters
    ----------
    W : array_like of shape (n_rows, n_cols)
    blocksize : (int, int)
        ``(bh, bw)``; must divide ``W.shape``.

    Returns
    -------
    BSRMatrix
    """
    W = _float(check_array(W, "W", ndim=2))
    if not isinstance(blocksize, (tuple, list)) or len(blocksize) != 2:
        raise ValueError(f"blocksize must be a pair (bh, bw), got {blocksize!r}")
    bh, bw = (check_int(b, "blocksize", 1) for b in blocksize)
    if W.shape[0] % bh or W.shape[1] % bw:
        raise ValueError(f"blocksize={tuple(blocksize)} must divide the matrix shape {W.shape}")
    nbr, nbc = W.shape[0] // bh, W.shape[1] // bw
    B = W.reshape(nbr, bh, nbc, bw).transpose(0, 2, 1, 3)  # (nbr, nbc, bh, bw)
    keep = np.any(B != 0, axis=(2, 3))  # (nbr, nbc)
    indptr = np.zeros(nbr + 1, dtype=np.int64)
    np.cumsum(keep.sum(1), out=indptr[1:])
    r, c = np.nonzero(keep)
    return BSRMatrix(indptr, c.astype(np.uint32), np.ascontiguousarray(B[r, c]),
                     (int(W.shape[0]), int(W.shape[1])))


@numba.njit(cache=True)
def _bsr_mm_serial(indptr, indices, blocks, X, Y):
    bh = blocks.shape[1]
    bw = blocks.shape[2]
    nb = X.shape[1]
    for r in range(indptr.shape[0] - 1):
        for p in range(indptr[r], indptr[r + 1]):
            c0 = indices[p] * bw
            for i in range(bh):
                yi = r * bh + i
                for j in range(bw):
                    a = blocks[p, i, j]
                    # Y[r*bh+i, :] += A_block[i, j] * X[c*bw+j, :]
                    for b in range(nb):
                        Y[yi, b] += a * X[c0 + j, b]


@numba.njit(cache=True, parallel=True)
def _bsr_mm_parallel(indptr, indices, blocks, X, Y):
    bh = blocks.shape[1]
    bw = blocks.shape[2]
    nb = X.shape[1]
    for r in numba.prange(indptr.shape[0] - 1):
        for p in range(indptr[r], indptr[r + 1]):
            c0 = indices[p] * bw
            for i in range(bh):
                yi = r * bh + i
                for j in range(bw):
                    a = blocks[p, i, j]
                    for b in range(nb):
                        Y[yi, b] += a * X[c0 + j, b]


@numba.njit(cache=True)
def _bsr_mv_serial(indptr, indices, blocks, x, y):
    bh = blocks.shape[1]
    bw = blocks.shape[2]
    for r in range(indptr.shape[0] - 1):
        for p in range(indptr[r], indptr[r + 1]):
            c0 = indices[p] * bw
            for i in range(bh):
                acc = y[r * bh + i]
                for j in range(bw):
                    # y_i += A_block[i, j] x[c*bw + j]
                    acc += blocks[p, i, j] * x[c0 + j]
                y[r * bh + i] = acc


@numba.njit(cache=True, parallel=True)
def _bsr_mv_parallel(indptr, indices, blocks, x, y):
    bh = blocks.shape[1]
    bw = blocks.shape[2]
    for r in numba.prange(indptr.shape[0] - 1):
        for p in range(indptr[r], indptr[r + 1]):
            c0 = indices[p] * bw
            for i in range(bh):
                acc = y[r * bh + i]
                for j in range(bw):
                    acc += blocks[p, i, j] * x[c0 + j]
                y[r * bh + i] = acc


def _bsr_numba(A, X, dtype):
    blocks = A.blocks.astype(dtype, copy=False)
    Y = np.zeros((A.shape[0], X.shape[1]), dtype=dtype)
    big = A.nnz * X.shape[1] >= PARALLEL_MIN_WORK
    if X.shape[1] == 1:  # matrix-vector: a scalar accumulator per output row
        y = Y[:, 0]
        (_bsr_mv_parallel if big else _bsr_mv_serial)(A.indptr, A.indices, blocks,
                                                       np.ascontiguousarray(X[:, 0]), y)
        return Y
    (_bsr_mm_parallel if big else _bsr_mm_serial)(A.indptr, A.indices, blocks, X, Y)
    return Y


def _bsr_numpy(A, X, dtype):
    bh, bw = A.blocksize
    nbr = A.shape[0] // bh
    rows = np.repeat(np.arange(nbr), np.diff(A.indptr))  # (nnzb,) block-row of each block
    Xb = X.reshape(A.shape[1] // bw, bw, X.shape[1])  # (nbc, bw, batch)
    # per block: (bh, bw) @ (bw, batch) -> (bh, batch)
    prod = np.einsum("pij,pjb->pib", A.blocks.astype(dtype, copy=False),
                     Xb[A.indices.astype(np.int64)])  # (nnzb, bh, batch)
    Y = np.zeros((nbr, bh, X.shape[1]), dtype=dtype)
    np.add.at(Y, rows, prod)
    return Y.reshape(A.shape[0], X.shape[1])  # (n_rows, batch)


def _operand(X, n_cols, dtype_a):
    X = check_array(X, "X", ndim=(1, 2), dtype_kind="fiub")
    if X.shape[0] != n_cols:
        raise ValueError(f"X must have {n_cols} rows (A's columns), got shape {X.shape}")
    X = _float(X)
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    dtype = np.result_type(dtype_a, X.dtype)
    vec = X.ndim == 1
    X2 = np.ascontiguousarray(X.reshape(n_cols, -1), dtype=dtype)  # (n_cols, batch)
    return X2, dtype, vec


def bsr_matmat(A: BSRMatrix, X, backend: str | None = None) -> np.ndarray:
    """Block-sparse matrix × dense, ``Y = A @ X``.

    Parameters
    ----------
    A : BSRMatrix of shape (n_rows, n_cols)
    X : array_like of shape (n_cols, batch) or (n_cols,)
    backend : {"numba", "numpy"} or None

    Returns
    -------
    ndarray of shape (n_rows, batch) or (n_rows,)
        dtype ``np.result_type(A.dtype, X.dtype)``.
    """
    if not isinstance(A, BSRMatrix):
        raise TypeError(f"A must be a BSRMatrix (see bsr_from_dense), got {type(A).__name__}")
    X2, dtype, vec = _operand(X, A.shape[1], A.dtype)
    Y = dispatch("bsr_matmat", backend, _bsr_numba, _bsr_numpy, A, X2, dtype)
    return Y[:, 0] if vec else Y


# ----------------------------------------------------------------------------------------------
# Bank-balanced sparsity
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BBSMatrix:
    """A bank-balanced sparse matrix: ``k`` values per bank of ``bank_size`` columns.

    Attributes
    ----------
    values : ndarray of shape (n_rows, n_banks, k), float32 or float64
        Finite.
    offsets : ndarray of shape (n_rows, n_banks, k), uint16
        Column of each value within its bank, in ``[0, bank_size)``.
    bank_size : int
        In ``[1, 65535]``; ``n_cols = n_banks * bank_size``.
    shape : (int, int)

    Notes
    -----
    Validated once by the constructor and stored as private read-only copies (see
    :class:`BSRMatrix`); the kernels do no bounds checks on ``offsets``. An offset repeated
    within a bank means the sum of its values (the kernels and :meth:`to_dense` add them).
    """

    values: np.ndarray
    offsets: np.ndarray
    bank_size: int
    shape: tuple

    def __post_init__(self):
        n_rows, n_cols = _check_shape(self.shape)
        object.__setattr__(self, "shape", (n_rows, n_cols))
        bank_size = check_int(self.bank_size, "bank_size", 1, 65535)
        object.__setattr__(self, "bank_size", bank_size)
        if n_cols % bank_size:
            raise ValueError(f"bank_size={bank_size} must divide the number of columns {n_cols}")
        values = np.asarray(self.values)
        offsets = np.asarray(self.offsets)
        if values.dtype not in (np.float32, np.float64):
            raise TypeError(f"values must be float32 or float64, got {values.dtype}")
        n_banks = n_cols // bank_size
        if values.ndim != 3 or values.shape[:2] != (n_rows, n_banks):
            raise ValueError(f"values must have shape ({n_rows}, {n_banks}, k), got "
                             f"{values.shape}")
        if offsets.dtype.kind not in "iu":
            raise TypeError(f"offsets must be an integer array, got {offsets.dtype}")
        if offsets.shape != values.shape:
            raise ValueError(f"offsets must have the shape of values {values.shape}, got "
                             f"{offsets.shape}")
        if offsets.size and (offsets.min() < 0 or offsets.max() >= bank_size):
            raise ValueError(f"offsets must lie in [0, bank_size={bank_size}), got range "
                             f"[{offsets.min()}, {offsets.max()}]")
        if values.size and not np.isfinite(values).all():
            raise ValueError("values contains NaN or inf")
        object.__setattr__(self, "values", frozen_copy(values, values.dtype))
        object.__setattr__(self, "offsets", frozen_copy(offsets, np.uint16))

    @property
    def k(self) -> int:
        return int(self.values.shape[2])

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    @property
    def dtype(self):
        return self.values.dtype

    def to_dense(self) -> np.ndarray:
        n_rows, n_banks, k = self.values.shape
        cols = (np.arange(n_banks)[None, :, None] * self.bank_size
                + self.offsets.astype(np.int64))  # (rows, banks, k)
        out = np.zeros(self.shape, dtype=self.values.dtype)
        rows = np.broadcast_to(np.arange(n_rows)[:, None, None], cols.shape)
        np.add.at(out, (rows, cols), self.values)  # repeated offsets add up, as in the kernels
        return out

    def bits(self, value_bits: int = 32) -> int:
        """Exact storage: ``nnz (value_bits + ceil(log2 bank_size))`` (no row pointers)."""
        value_bits = check_int(value_bits, "value_bits", 1, 64)
        off_bits = max(1, int(np.ceil(np.log2(self.bank_size))))
        return self.nnz * (value_bits + off_bits)

    def __matmul__(self, other):
        return bbs_matmat(self, other)


def bbs_from_dense(W, bank_size: int, mask=None) -> BBSMatrix:
    """Store a bank-balanced matrix: every bank of ``W`` (or of ``mask``) must hold the same
    number of kept entries.

    Parameters
    ----------
    W : array_like of shape (n_rows, n_cols)
    bank_size : int
        Must divide ``n_cols``.
    mask : array_like of bool, optional
        Kept entries (e.g. :func:`refimpl.pruning.blocks.bank_balanced_mask`); default
        ``W != 0``. Kept zeros are stored as values.

    Returns
    -------
    BBSMatrix
    """
    W = _float(check_array(W, "W", ndim=2))
    bank_size = check_int(bank_size, "bank_size", 1, 65535)
    if W.shape[1] % bank_size:
        raise ValueError(f"bank_size={bank_size} must divide the number of columns "
                         f"{W.shape[1]}")
    M = (W != 0) if mask is None else check_array(mask, "mask", shape=W.shape,
                                                    dtype_kind="b")
    n_rows, n_cols = W.shape
    Mb = M.reshape(n_rows, -1, bank_size)  # (rows, banks, bank_size)
    counts = Mb.sum(2)
    k = int(counts.flat[0])
    if np.any(counts != k):
        raise ValueError("mask is not bank-balanced: banks hold between "
                         f"{counts.min()} and {counts.max()} kept entries")
    # kept offsets in increasing order within each bank
    order = np.argsort(~Mb, axis=2, kind="stable")[:, :, :k]  # (rows, banks, k)
    vals = np.take_along_axis(W.reshape(n_rows, -1, bank_size), order, axis=2)
    return BBSMatrix(np.ascontiguousarray(vals), order.astype(np.uint16), bank_size,
                     (int(n_rows), int(n_cols)))


@numba.njit(cache=True)
def _bbs_mm_serial(values, offsets, bank_size, X, Y):
    n_rows, n_banks, k = values.shape
    nb = X.shape[1]
    for i in range(n_rows):
        for g in range(n_banks):
            base = g * bank_size
            for t in range(k):
                a = values[i, g, t]
                c = base + offsets[i, g, t]
                # Y[i, :] += A[i, c] X[c, :]
                for b in range(nb):
                    Y[i, b] += a * X[c, b]


@numba.njit(cache=True, parallel=True)
def _bbs_mm_parallel(values, offsets, bank_size, X, Y):
    n_rows, n_banks, k = values.shape
    nb = X.shape[1]
    for i in numba.prange(n_rows):
        for g in range(n_banks):
            base = g * bank_size
            for t in range(k):
                a = values[i, g, t]
                c = base + offsets[i, g, t]
                for b in range(nb):
                    Y[i, b] += a * X[c, b]


@numba.njit(cache=True)
def _bbs_mv_serial(values, offsets, bank_size, x, y):
    n_rows, n_banks, k = values.shape
    for i in range(n_rows):
        acc = y[i]
        for g in range(n_banks):
            base = g * bank_size
            for t in range(k):
                # y_i += A[i, c] x[c] over the k kept columns c of bank g
                acc += values[i, g, t] * x[base + offsets[i, g, t]]
        y[i] = acc


@numba.njit(cache=True, parallel=True)
def _bbs_mv_parallel(values, offsets, bank_size, x, y):
    n_rows, n_banks, k = values.shape
    for i in numba.prange(n_rows):
        acc = y[i]
        for g in range(n_banks):
            base = g * bank_size
            for t in range(k):
                acc += values[i, g, t] * x[base + offsets[i, g, t]]
        y[i] = acc


def _bbs_numba(A, X, dtype):
    vals = A.values.astype(dtype, copy=False)
    Y = np.zeros((A.shape[0], X.shape[1]), dtype=dtype)
    big = A.nnz * X.shape[1] >= PARALLEL_MIN_WORK
    if X.shape[1] == 1:
        (_bbs_mv_parallel if big else _bbs_mv_serial)(vals, A.offsets, np.int64(A.bank_size),
                                                       np.ascontiguousarray(X[:, 0]), Y[:, 0])
        return Y
    (_bbs_mm_parallel if big else _bbs_mm_serial)(vals, A.offsets, np.int64(A.bank_size), X, Y)
    return Y


def _bbs_numpy(A, X, dtype):
    n_rows, n_banks, k = A.values.shape
    cols = (np.arange(n_banks)[None, :, None] * A.bank_size
            + A.offsets.astype(np.int64)).reshape(n_rows, -1)  # (rows, banks*k)
    # Y[i, :] = sum_t values[i, t] X[cols[i, t], :]
    return np.einsum("rt,rtb->rb", A.values.reshape(n_rows, -1).astype(dtype, copy=False),
                     X[cols])  # X[cols]: (rows, banks*k, batch)


def bbs_matmat(A: BBSMatrix, X, backend: str | None = None) -> np.ndarray:
    """Bank-balanced sparse matrix × dense, ``Y = A @ X``.

    Parameters
    ----------
    A : BBSMatrix of shape (n_rows, n_cols)
    X : array_like of shape (n_cols, batch) or (n_cols,)
    backend : {"numba", "numpy"} or None

    Returns
    -------
    ndarray of shape (n_rows, batch) or (n_rows,)
    """
    if not isinstance(A, BBSMatrix):
        raise TypeError(f"A must be a BBSMatrix (see bbs_from_dense), got {type(A).__name__}")
    X2, dtype, vec = _operand(X, A.shape[1], A.dtype)
    Y = dispatch("bbs_matmat", backend, _bbs_numba, _bbs_numpy, A, X2, dtype)
    return Y[:, 0] if vec else Y
