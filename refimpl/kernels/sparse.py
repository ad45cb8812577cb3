"""CSR sparse × dense kernels: the storage and compute behind pruned layers (Survey §2.1.2).

Magnitude pruning (Survey §2.1.2; Han et al., 2015/2016) leaves a weight matrix with most
entries zero. Stored in *compressed sparse row* (CSR) form it keeps, for an ``(n_rows, n_cols)``
matrix with ``nnz`` non-zeros:

* ``data``    — the ``nnz`` non-zero values, row by row, shape ``(nnz,)``;
* ``indices`` — the column of each value, shape ``(nnz,)``: unsigned (no negative-index
  wraparound logic in the Numba gather loop) and as narrow as the column count allows,
  ``uint16`` for ``n_cols <= 65536`` (2 bytes less traffic per value), else ``uint32``;
* ``indptr``  — row ``i``'s values are ``data[indptr[i]:indptr[i+1]]``, shape ``(n_rows + 1,)``.

The compute a pruned network needs is sparse × dense:

* :func:`csr_matvec` — ``y = A @ x`` (SpMV), ``x`` of shape ``(n_cols,)``;
* :func:`csr_matmat` — ``Y = A @ X`` (SpMM), ``X`` of shape ``(n_cols, batch)``;
* :func:`dense_x_csr_T` — ``Y = X @ W.T`` with ``W`` in CSR, ``X`` of shape
  ``(batch, in_features)``: the forward pass of a pruned :class:`refimpl.nn.Linear`
  (PyTorch layout, ``W`` is ``(out_features, in_features)``).

Each exists as a Numba kernel (``cache=True``; a serial version for small problems and a
``prange`` version over rows for large ones) beside a pure-NumPy reference with the same
signature, selected by ``backend="numba" | "numpy"`` (default ``$REFIMPL_BACKEND``).
float32 and float64 are supported; the result has the promoted dtype of the two operands
(float32 × float32 → float32).

Design notes, measured on the project's 2-core machine (4096 × 4096, 90% sparsity, SpMV,
OpenBLAS variables unset; ``benchmarks/bench_sparse.py`` has the full table):

* The row dot product uses four independent accumulators *and* an unsigned loop counter
  (:func:`_row_dot`). With one accumulator every add waits for the previous one (3-cycle
  latency: 1.03 ns per stored value, level with scipy.sparse's 1.05 ns); four accumulators with
  a signed counter gained nothing (the negative-index wraparound test on each of the four
  loads ate the gain); both together: 0.60 ns per value serial, 0.37 ns with ``prange``
  (float32, best of 40 calls, idle machine).
* ``uint16`` column indices when ``n_cols <= 65536`` (6 instead of 8 bytes per float32 value):
  0.354 vs 0.367 ns per value (float32), 0.511 vs 0.555 (float64, where the stream is wider).
* ``prange`` over rows vs serial: the second core roughly halves the time. Below
  :data:`PARALLEL_MIN_WORK` multiply-adds the serial kernel is used.
* Headline, ``bench_sparse.py --headline`` twice on an idle machine (16:06 UTC 2026-11-23):
  float32 3.0–3.4× scipy.sparse and 4.0–4.4× dense BLAS; float64 2.45–2.5× scipy.sparse and
  6.2–6.9× dense (1 thread: 1.6× scipy float32, 1.3–1.4× float64).
* A ``prange`` kernel called right after an OpenBLAS call (whose worker threads spin for a
  while) or on a busy machine can lose whole scheduler ticks (4 ms) waiting for its second
  thread; in a network that interleaves BLAS calls this is a real cost.
* Threading layer: the numbers above were taken on GNU OpenMP; the kernels now run on Numba's
  fork-safe ``workqueue`` layer (:mod:`refimpl.kernels._backend`, issue #12), whose threads
  sleep rather than spin between calls: about 45 µs more per parallel call. Headline
  2026-12-06 18:27 UTC, same machine, busy (load 1.8): float32 0.344 ms (3.7× scipy.sparse,
  3.8–4.9× dense) vs 0.298 ms on OpenMP; float64 0.42–0.73 ms (2.2–3.3× scipy). Both targets
  are still met.

The bit-exact storage cost of CSR with relative-index (delta) encoding is accounted in
:mod:`refimpl.sizes`; the encoding itself lives with pruning (``refimpl.pruning``).

References
----------
.. [1] S. Han, H. Mao, W. J. Dally, "Deep Compression: Compressing Deep Neural Networks with
   Pruning, Trained Quantization and Huffman Coding", ICLR 2016.
.. [2] Y. Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed., SIAM 2003, §3.4 (CSR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from refimpl.kernels._backend import dispatch
from refimpl.utils import check_array, check_float

__all__ = ["CSRMatrix", "index_dtype", "frozen_copy", "csr_from_dense", "csr_matvec", "csr_matmat",
           "dense_x_csr_T"]

#: Below this many multiply-adds the serial Numba kernel is used: spawning the ``prange``
#: threads costs a few microseconds, more than a small product takes.
PARALLEL_MIN_WORK = 1 << 16


def frozen_copy(a: np.ndarray, dtype) -> np.ndarray:
    """A C-contiguous copy of ``a`` in ``dtype`` that cannot be written: a view of a read-only
    base, so neither item assignment nor ``setflags(write=True)`` is allowed (numpy refuses to
    make a view writeable when its base is not). Never shares memory with ``a``."""
    base = np.array(a, dtype=dtype, order="C", copy=True)
    base.setflags(write=False)
    return base.view()


def index_dtype(n_cols: int) -> np.dtype:
    """The narrowest unsigned dtype holding column indices ``0 .. n_cols - 1``: ``uint16`` up to
    65536 columns, else ``uint32`` (fewer bytes streamed per stored value in SpMV)."""
    return np.dtype(np.uint16) if n_cols <= 1 << 16 else np.dtype(np.uint32)


@dataclass(frozen=True, eq=False)
class CSRMatrix:
    """A matrix in compressed sparse row (CSR) form.

    Parameters
    ----------
    indptr : ndarray of shape (n_rows + 1,), int64
        Row pointers: row ``i`` holds ``data[indptr[i]:indptr[i+1]]``; ``indptr[0] == 0``,
        non-decreasing, ``indptr[-1] == nnz``.
    indices : ndarray of shape (nnz,), uint16 or uint32
        Column index of each stored value, in ``[0, n_cols)``; stored as ``uint16`` when
        ``n_cols <= 65536``, else ``uint32`` (:func:`index_dtype`).
    data : ndarray of shape (nnz,), float32 or float64
        The stored values (finite).
    shape : tuple of int
        ``(n_rows, n_cols)``.

    Notes
    -----
    The constructor validates everything (monotone ``indptr``, column range, finite data) once,
    on private copies of the given arrays, and stores those copies **read-only** (views of a
    read-only base, so ``setflags(write=True)`` is refused too): the kernels rely on the
    validation and do no bounds checks, so an ``indptr`` or ``indices`` changed afterwards
    could make them read out of bounds. Assigning into ``A.indptr[...]`` raises ``ValueError``;
    the caller's arrays are copied, never frozen or modified. Build a new matrix to change one.
    Duplicate ``(row, column)`` entries are allowed and mean their sum, as in SciPy (the
    kernels and :meth:`to_dense` sum them). Build one from a dense matrix with
    :func:`csr_from_dense`.
    """

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple

    def __post_init__(self):
        if not isinstance(self.shape, tuple) or len(self.shape) != 2 or not all(
                isinstance(s, (int, np.integer)) and s >= 1 for s in self.shape):
            raise ValueError(f"shape must be a tuple of two positive ints, got {self.shape!r}")
        n_rows, n_cols = (int(s) for s in self.shape)
        if n_cols > np.iinfo(np.uint32).max:
            raise ValueError(f"shape[1] must be < 2**32 for uint32 indices, got {n_cols}")
        object.__setattr__(self, "shape", (n_rows, n_cols))
        indptr = np.asarray(self.indptr)
        indices = np.asarray(self.indices)
        data = np.asarray(self.data)
        if indptr.ndim != 1 or indptr.shape[0] != n_rows + 1 or indptr.dtype.kind not in "iu":
            raise ValueError(f"indptr must be an integer array of shape ({n_rows + 1},), got "
                             f"{indptr.dtype} of shape {indptr.shape}")
        if data.dtype not in (np.float32, np.float64):
            raise TypeError(f"data must be float32 or float64, got {data.dtype}")
        if data.ndim != 1 or indices.ndim != 1 or indices.shape != data.shape:
            raise ValueError(f"indices and data must be 1-D of equal length, got shapes "
                             f"{indices.shape} and {data.shape}")
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array, got {indices.dtype}")
        nnz = data.shape[0]
        if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
            raise ValueError(f"indptr must be non-decreasing from 0 to nnz={nnz}, got "
                             f"indptr[0]={indptr[0]}, indptr[-1]={indptr[-1]}")
        if nnz and (indices.min() < 0 or indices.max() >= n_cols):
            raise ValueError(f"indices must lie in [0, {n_cols}), got range "
                             f"[{indices.min()}, {indices.max()}]")
        if nnz and not np.all(np.isfinite(data)):
            raise ValueError("data contains NaN or inf")
        # validated values, now private read-only copies (the range checks above make the
        # casts exact)
        object.__setattr__(self, "indptr", frozen_copy(indptr, np.int64))
        object.__setattr__(self, "indices", frozen_copy(indices, index_dtype(n_cols)))
        object.__setattr__(self, "data", frozen_copy(data, data.dtype))

    @property
    def nnz(self) -> int:
        """Number of stored values."""
        return int(self.data.shape[0])

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def density(self) -> float:
        """``nnz / (n_rows * n_cols)``."""
        return self.nnz / (self.shape[0] * self.shape[1])

    @property
    def sparsity(self) -> float:
        """Fraction of zeros, ``1 - density``."""
        return 1.0 - self.density

    def to_dense(self) -> np.ndarray:
        """The dense matrix, ndarray of shape ``(n_rows, n_cols)`` and dtype ``data.dtype``
        (duplicate entries summed, like ``scipy.sparse.csr_matrix(...).toarray()``)."""
        out = np.zeros(self.shape, dtype=self.data.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))  # (nnz,)
        np.add.at(out, (rows, self.indices), self.data)  # duplicates add up, as in SciPy
        return out

    def to_scipy(self):
        """The same matrix as a :class:`scipy.sparse.csr_matrix` (shares no memory)."""
        import scipy.sparse as sp

        return sp.csr_matrix((self.data.copy(), self.indices.astype(np.int32),
                              self.indptr.astype(np.int32)), shape=self.shape)

    def __matmul__(self, other):
        other = np.asarray(other)
        return csr_matvec(self, other) if other.ndim == 1 else csr_matmat(self, other)

    def __repr__(self) -> str:
        return (f"CSRMatrix(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, "
                f"sparsity={self.sparsity:.3f})")


def csr_from_dense(W, threshold: float = 0.0) -> CSRMatrix:
    """Store the entries of ``W`` with ``|W_ij| > threshold`` in CSR form.

    Parameters
    ----------
    W : array_like of shape (n_rows, n_cols)
        A (pruned) weight matrix, float32 or float64 (integers are promoted to float64).
    threshold : float, default 0
        Entries with ``|W_ij| <= threshold`` are dropped; with 0 exactly the non-zeros are kept.
        (This is magnitude pruning by threshold, Survey §2.1.2 — the pruning package chooses the
        threshold for a target sparsity.)

    Returns
    -------
    CSRMatrix
        With ``data.dtype == W.dtype``.
    """
    W = check_array(W, "W", ndim=2)
    if W.dtype not in (np.float32, np.float64):
        W = W.astype(np.float64)
    threshold = check_float(threshold, "threshold", 0.0)
    keep = np.abs(W) > threshold  # (n_rows, n_cols) bool
    counts = keep.sum(axis=1)  # (n_rows,)
    indptr = np.zeros(W.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    rows, cols = np.nonzero(keep)  # row-major order, so each row's columns are sorted
    return CSRMatrix(indptr, cols.astype(np.uint32), W[rows, cols].copy(), W.shape)


# ----------------------------------------------------------------------------------------------
# input validation shared by the public functions
# ----------------------------------------------------------------------------------------------
def _check_csr(A) -> CSRMatrix:
    if not isinstance(A, CSRMatrix):
        raise TypeError(f"A must be a CSRMatrix (see csr_from_dense), got {type(A).__name__}")
    return A


def _as_operand(x, name: str, shape: tuple, A: CSRMatrix) -> tuple[np.ndarray, np.dtype]:
    x = check_array(x, name, shape=shape, dtype_kind="fiub")  # also rejects NaN / inf
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    dtype = np.result_type(A.data.dtype, x.dtype)
    return np.ascontiguousarray(x, dtype=dtype), dtype


def _uindptr(A: CSRMatrix) -> np.ndarray:
    """``indptr`` viewed as uint64 (no copy; the values are >= 0): the loop counter over a row's
    entries is then unsigned, so Numba drops the negative-index wraparound test on every
    ``data[k]`` / ``indices[k]`` load."""
    return A.indptr.view(np.uint64)


# ----------------------------------------------------------------------------------------------
# SpMV: y = A @ x
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _row_dot(indices, data, x, start, stop, zero):
    """``sum_k data[k] * x[indices[k]]`` for ``k`` in ``[start, stop)`` (unsigned ``k``).

    Four independent accumulators break the floating-point add dependency chain (one add per
    3-cycle latency otherwise); the loop counter is unsigned so no load needs the
    negative-index wraparound test. The summation order is fixed (``k mod 4`` lanes, then
    ``(a0 + a1) + (a2 + a3)``), so results are deterministic.
    """
    one = np.uint64(1)
    two = np.uint64(2)
    three = np.uint64(3)
    four = np.uint64(4)
    a0 = zero
    a1 = zero
    a2 = zero
    a3 = zero
    k = start
    while k + four <= stop:
        a0 += data[k] * x[indices[k]]
        a1 += data[k + one] * x[indices[k + one]]
        a2 += data[k + two] * x[indices[k + two]]
        a3 += data[k + three] * x[indices[k + three]]
        k += four
    while k < stop:
        a0 += data[k] * x[indices[k]]
        k += one
    return (a0 + a1) + (a2 + a3)


@numba.njit(cache=True)
def _csr_matvec_serial(indptr, indices, data, x, y):
    for i in range(y.shape[0]):
        # y_i = sum_k A_ik x_k over the stored k of row i (y arrives zeroed: a typed zero)
        y[i] = _row_dot(indices, data, x, indptr[i], indptr[i + 1], y[i])


@numba.njit(cache=True, parallel=True)
def _csr_matvec_parallel(indptr, indices, data, x, y):
    for i in numba.prange(y.shape[0]):
        y[i] = _row_dot(indices, data, x, indptr[i], indptr[i + 1], y[i])


def _csr_matvec_numba(A: CSRMatrix, x: np.ndarray, dtype) -> np.ndarray:
    data = A.data if A.data.dtype == dtype else A.data.astype(dtype)
    y = np.zeros(A.shape[0], dtype=dtype)
    kern = _csr_matvec_parallel if A.nnz >= PARALLEL_MIN_WORK else _csr_matvec_serial
    kern(_uindptr(A), A.indices, data, x, y)
    return y


def _csr_matvec_numpy(A: CSRMatrix, x: np.ndarray, dtype) -> np.ndarray:
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))  # (nnz,) row of each value
    y = np.zeros(A.shape[0], dtype=dtype)
    np.add.at(y, rows, A.data.astype(dtype, copy=False) * x[A.indices])  # y_i += A_ik x_k
    return y


def csr_matvec(A: CSRMatrix, x, backend: str | None = None) -> np.ndarray:
    """Sparse matrix × dense vector, ``y = A @ x`` (SpMV).

    Parameters
    ----------
    A : CSRMatrix of shape (n_rows, n_cols)
    x : array_like of shape (n_cols,)
        Any memory layout; must be finite.
    backend : {"numba", "numpy"} or None
        ``None`` reads ``$REFIMPL_BACKEND``.

    Returns
    -------
    y : ndarray of shape (n_rows,)
        dtype ``np.result_type(A.dtype, x.dtype)`` (float32 stays float32).

    Notes
    -----
    :math:`y_i = \\sum_{k:\\,A_{ik}\\neq 0} A_{ik} x_k` — work and memory traffic proportional to
    ``nnz`` rather than ``n_rows * n_cols``: the speed-up a pruned layer can buy (Survey §2.1.2
    and the §8 caveat that unstructured sparsity only pays off at high sparsity).
    """
    A = _check_csr(A)
    x, dtype = _as_operand(x, "x", (A.shape[1],), A)
    return dispatch("csr_matvec", backend, _csr_matvec_numba, _csr_matvec_numpy, A, x, dtype)


# ----------------------------------------------------------------------------------------------
# SpMM: Y = A @ X, X of shape (n_cols, batch)
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _csr_matmat_serial(indptr, indices, data, X, Y):
    n_batch = X.shape[1]
    for i in range(Y.shape[0]):
        for b in range(n_batch):
            Y[i, b] = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            v = data[k]
            j = indices[k]
            # Y[i, :] += A_ij X[j, :]   (contiguous rows of X and Y)
            for b in range(n_batch):
                Y[i, b] += v * X[j, b]


@numba.njit(cache=True, parallel=True)
def _csr_matmat_parallel(indptr, indices, data, X, Y):
    n_batch = X.shape[1]
    for i in numba.prange(Y.shape[0]):
        for b in range(n_batch):
            Y[i, b] = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            v = data[k]
            j = indices[k]
            for b in range(n_batch):
                Y[i, b] += v * X[j, b]


def _csr_matmat_numba(A: CSRMatrix, X: np.ndarray, dtype) -> np.ndarray:
    data = A.data if A.data.dtype == dtype else A.data.astype(dtype)
    Y = np.empty((A.shape[0], X.shape[1]), dtype=dtype)
    big = A.nnz * X.shape[1] >= PARALLEL_MIN_WORK
    (_csr_matmat_parallel if big else _csr_matmat_serial)(_uindptr(A), A.indices, data, X, Y)
    return Y


def _csr_matmat_numpy(A: CSRMatrix, X: np.ndarray, dtype) -> np.ndarray:
    rows = np.repeat(np.arange(A.shape[0]), np.diff(A.indptr))  # (nnz,)
    Y = np.zeros((A.shape[0], X.shape[1]), dtype=dtype)
    # Y[i, :] += A_ij X[j, :] for every stored (i, j)
    np.add.at(Y, rows, A.data.astype(dtype, copy=False)[:, None] * X[A.indices])  # (nnz, batch)
    return Y


def csr_matmat(A: CSRMatrix, X, backend: str | None = None) -> np.ndarray:
    """Sparse matrix × dense matrix, ``Y = A @ X`` (SpMM).

    Parameters
    ----------
    A : CSRMatrix of shape (n_rows, n_cols)
    X : array_like of shape (n_cols, batch)
        Any memory layout (copied to C order if needed); must be finite.
    backend : {"numba", "numpy"} or None

    Returns
    -------
    Y : ndarray of shape (n_rows, batch)
        dtype ``np.result_type(A.dtype, X.dtype)``.
    """
    A = _check_csr(A)
    X, dtype = _as_operand(X, "X", (A.shape[1], None), A)
    return dispatch("csr_matmat", backend, _csr_matmat_numba, _csr_matmat_numpy, A, X, dtype)


def dense_x_csr_T(X, W: CSRMatrix, backend: str | None = None) -> np.ndarray:
    """``Y = X @ W.T`` with ``W`` in CSR: the forward pass of a pruned linear layer.

    Parameters
    ----------
    X : array_like of shape (batch, in_features)
    W : CSRMatrix of shape (out_features, in_features)
        PyTorch layout, as :class:`refimpl.nn.Linear` stores it.
    backend : {"numba", "numpy"} or None

    Returns
    -------
    Y : ndarray of shape (batch, out_features), C-contiguous
        dtype ``np.result_type(W.dtype, X.dtype)``.

    Notes
    -----
    Computed as ``(W @ X.T).T`` with :func:`csr_matmat` on a C-ordered copy of ``X.T`` (shape
    ``(in_features, batch)``), so the inner loop runs over contiguous batch rows.
    """
    W = _check_csr(W)
    X = check_array(X, "X", shape=(None, W.shape[1]), dtype_kind="fiub")
    Xt = X.T  # (in_features, batch)
    Yt = csr_matmat(W, Xt, backend=backend)  # (out_features, batch)
    return np.ascontiguousarray(Yt.T)  # (batch, out_features)
