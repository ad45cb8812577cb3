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
threaded one over blocks of rows of equal work — stored values plus one per row,
:func:`_row_blocks` — for large ones: ``prange`` for SpMM, for SpMV the caller plus helper
threads of :class:`~refimpl.kernels._team.Team`) beside a pure-NumPy reference with the same
signature, selected by ``backend="numba" | "numpy"`` (default ``$REFIMPL_BACKEND``). float32 and float64
are supported; the result has the promoted dtype of the two operands (float32 × float32 →
float32).

SpMV (issue #19, 2026-12-07): rows in LLVM IR (:func:`_spmv_row`): 16 stored values per
step — one vector load of the values, the column indices read as 64-bit words and split by
shifts, the 16 ``x[j]`` loaded one by one into a vector, one vector ``fmuladd`` per 512 bits —
21 loads per 16 values instead of 48, since loads, not bandwidth, bound SpMV while the matrix
sits in the last-level cache (one thread, 4096², 90 %, float32: 0.34–0.38 vs 0.56–0.57 ms CPU
time). Threaded SpMV runs without a Numba parallel region (the thread team of
:mod:`refimpl.kernels._team`, a Python job of :meth:`~refimpl.kernels._team.Team.run`): the
calling thread starts on the rows at once and a helper thread, asleep on a semaphore between
calls (woken in 13–49 µs through the earlier queue, against 38–101 µs for an empty ``prange``
on ``workqueue``, whose calling thread only waits), joins it, both claiming blocks of rows
from one atomic counter.

SpMV on Intel (issue #19, 2026-12-07, a 2-vCPU Intel Xeon with AMX and AVX512-FP16 under KVM,
4 MiB L2 per core): there the 16 inserts per step bind (one shuffle port), and one
``vgatherdps`` per 16 values is faster — one thread 0.42–0.44 vs 0.53–0.56 ms (4096², 90 %,
float32, back to back), float64 0.64 vs 0.66 — so :data:`SPMV_GATHER` picks gathers on CPUs
with AVX512-FP16 and inserts elsewhere (same lanes, same bits). On that machine each Python
step of the public call also ran from cold caches after the matrix had streamed through L2
(0.34–0.38 ms against 0.27–0.29 ms for the driver), so :func:`csr_matvec` goes through a
compiled front (:func:`_spmv_front`) once the checked path has served a call of the same
types: checks, the serial rows or the thread team woken from compiled code, blocks of equal
work computed there (:func:`_work_bounds`). ``bench_sparse.py --headline --quick``, two
alternated runs: float32 two threads 0.38 → 0.29–0.30 ms (1.73–1.80× → 2.30–2.41×
``torch.sparse_csr``), one thread 0.59 → 0.42–0.45 ms; float64 two threads 0.43–0.46 →
0.40 ms (1.67–1.82× → 1.91–1.94× torch).

SpMM and ``X @ W.T`` (batch > 1, issue #19): one row of ``A`` at a time, in LLVM IR
(:func:`_spmm_row`, a numba ``@intrinsic``): the batch columns in passes of two 512-bit
vectors (32 float32 / 16 float64 columns) held in registers, four accumulator chains per
vector (stored position mod 4, so four independent multiply-adds are in flight), ``Y`` written
once per row; the last partial pass is masked, and when at most half a vector of columns is
left it runs on 256-bit vectors (cheaper per stored value on Zen 4: batch 1 0.79 vs 1.45 ms,
batch 8 1.27 vs 1.69 ms, 4096², 90 %, one thread). The previous loop nest (``Y[i, :] += v ·
X[j, :]``, which LLVM compiled with a load and a store of ``Y[i, :]`` per stored value since it
cannot prove ``X`` and ``Y`` apart) stays as the plain path under ``NUMBA_DISABLE_JIT``. The
summation order of every output is fixed by its row alone — ``((c0 + c1) + (c2 + c3))`` of the
four chains, each a left-to-right ``fmuladd`` chain — so results do not depend on the batch
width, the pass, the thread count or the layout of ``Y``: ``dense_x_csr_T`` writes the
transposed view of its C-ordered output directly (masked scatter) and equals
``csr_matmat(W, X.T).T`` bit for bit. On AMD Zen 4, SpMV rows with 512-bit gathers
(``vgatherdps``, 16 stored values per instruction) ran 0.62 vs 0.56 ms (4096², 90 %), 0.046
vs 0.033 (1024², 90 %) and 0.090 vs 0.058 (4096², 99 %) against the scalar four-accumulator
loop, one thread, CPU time: Zen 4's gathers are not faster than three scalar loads per value
(they are used on Intel, above).

Design notes, measured on the project's 2-core machine (4096 × 4096, 90% sparsity, SpMV,
OpenBLAS variables unset; ``benchmarks/bench_sparse.py`` has the full table):

* (History: the compiled SpMV now runs :func:`_spmv_row`, above; this loop is the plain path.)
  The row dot product uses four independent accumulators *and* an unsigned loop counter
  (:func:`_row_dot`). With one accumulator every add waits for the previous one (3-cycle
  latency: 1.03 ns per stored value, level with scipy.sparse's 1.05 ns); four accumulators with
  a signed counter gained nothing (the negative-index wraparound test on each of the four
  loads ate the gain); both together: 0.60 ns per value serial, 0.37 ns with ``prange``
  (float32, best of 40 calls, idle machine).
* ``uint16`` column indices when ``n_cols <= 65536`` (6 instead of 8 bytes per float32 value):
  0.354 vs 0.367 ns per value (float32), 0.511 vs 0.555 (float64, where the stream is wider).
* ``prange`` over rows vs serial: the second core roughly halves the time. Below
  :data:`PARALLEL_MIN_WORK` multiply-adds the serial kernel is used (SpMV: below
  :data:`SPMV_PARALLEL_MIN_NNZ` stored values, since waking the workqueue threads costs
  45-180 µs, issue #19).
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

import llvmlite
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from refimpl.kernels import _backend
from refimpl.kernels._backend import dispatch, env, host_features
from refimpl.kernels._team import (_TEAM, FIELD0, address, claim, finish, helpers_wanted,
                                   num_threads, publish, ready, register, team,
                                   wait_holding, wake)
from refimpl.kernels.lowbit_gemv import _front_install
from refimpl.utils import check_array, check_float

__all__ = ["CSRMatrix", "index_dtype", "frozen_copy", "csr_from_dense", "csr_matvec", "csr_matmat",
           "dense_x_csr_T"]

#: Below this many multiply-adds the serial Numba kernel is used: spawning the ``prange``
#: threads costs a few microseconds, more than a small product takes.
PARALLEL_MIN_WORK = 1 << 16

#: SpMV (:func:`csr_matvec`) runs the serial kernel below this many stored values. A parallel
#: call on Numba's ``workqueue`` layer wakes sleeping worker threads (the calling thread only
#: waits): measured 45-75 µs per launch in a tight loop and 90-180 µs after 0.3 s idle (an
#: empty ``prange`` over 2 iterations, 2-core Zen 4 VM, issue #19), against 0.6 ns per stored
#: value serial. In the quiet benchmark run of 2026-12-06 23:30 UTC (``bench_sparse.py
#: --quick``, 0.3 s idle per call) the parallel SpMV took 0.154 ms at 1024², 90 % (105 k
#: values) while the serial kernel took 0.039 ms at 95 % (52 k values); a line through the
#: parallel times (0.263 ms at 168 k values, 0.502 ms at 1.68 M) crosses the serial one near
#: 500 k values. The threshold stays at 2^17 so that ``tests/kernels/test_fork_safety.py``
#: (160 k values) still exercises the threaded SpMV in a forked child. (Those figures are for
#: the scalar rows under ``prange``; the threaded SpMV now runs on the thread team of
#: :mod:`refimpl.kernels._team`, whose helper wakes in 13-49 µs and delays only its own share, so the crossover is lower; not re-measured
#: quietly, the threshold is unchanged.)
SPMV_PARALLEL_MIN_NNZ = 1 << 17

def _spmv_gather_default() -> bool:
    """Whether the SpMV rows build their vector of ``x`` values with one gather instruction
    (True) or with scalar loads and inserts (False); both give the same bits.

    ``$REFIMPL_SPMV_GATHER`` (``1``/``0``), read when this module is imported, decides when
    set. Otherwise gathers are used on CPUs with AVX512-FP16: Intel Sapphire Rapids and later,
    whose gathers are fast and not slowed by the Gather Data Sampling (Downfall) microcode of
    Skylake to Ice Lake. Measured (issue #19, 4096², 90 %, float32, one thread, calls back to
    back): 2-vCPU Intel Xeon with AMX/AVX512-FP16 (KVM, LLVM "rocketlake"), gathers 0.42 vs
    inserts 0.53 ms; 2-vCPU AMD EPYC Zen 4, gathers 0.59–0.62 vs inserts 0.33–0.35 ms.
    """
    v = (env("REFIMPL_SPMV_GATHER") or "").strip()
    if v:
        if v not in ("0", "1"):
            raise ValueError(f"REFIMPL_SPMV_GATHER must be '0' or '1', got {v!r}")
        return v == "1"
    return "avx512fp16" in host_features()


#: The SpMV row kernel's way to load ``x`` (:func:`_spmv_gather_default`).
SPMV_GATHER = _spmv_gather_default()

#: Blocks of rows per thread claimed one by one by the SpMV thread team
#: (:class:`~refimpl.kernels._team.Team`): small enough that the last block a slow thread holds is a few µs of work.
_TEAM_BLOCKS = 32


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
# LLVM IR row kernel (numba @intrinsic): register-blocked SpMM rows
# ----------------------------------------------------------------------------------------------
def _i32c(v):
    return ir.Constant(ir.IntType(32), v)


def _i64c(v):
    return ir.Constant(ir.IntType(64), v)


def _decl(builder, name, ret, argtys):
    m = builder.module
    f = m.globals.get(name)
    if f is None:
        f = ir.Function(m, ir.FunctionType(ret, argtys), name)
    return f


def _vec_types(context, dtype):
    """(scalar type, lanes, vector type, mask type) of one 512-bit vector of ``dtype``."""
    fty = context.get_data_type(dtype)
    lanes = 16 if dtype == types.float32 else 8
    return fty, lanes, ir.VectorType(fty, lanes), ir.VectorType(ir.IntType(1), lanes)


def _mangle(ty) -> str:
    """A type's part of an overloaded LLVM intrinsic's name: ``v16f32``, ``f64``, ``p0``
    (``p0v16f32`` when llvmlite writes typed pointers), ``v16p0``."""
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_mangle(ty.element)}"
    if isinstance(ty, ir.PointerType):
        typed = llvmlite.ir_layer_typed_pointers_enabled and not ty.is_opaque
        return f"p{ty.addrspace}" + (_mangle(ty.pointee) if typed else "")
    return ty.intrinsic_name


def _splat(builder, value, vty):
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, _i32c(0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), vty.count),
                                                    [_i32c(0)] * vty.count))


def _lane_mask(builder, left, lanes, first=0):
    """``<lanes x i1>``: lane ``l`` is on when ``first + l < left`` (``left``: i64)."""
    q = ir.VectorType(ir.IntType(64), lanes)
    idx = ir.Constant(q, [_i64c(first + i) for i in range(lanes)])
    return builder.icmp_signed("<", idx, _splat(builder, left, q))


def _vload(builder, ptr, vty, mask, align):
    """Load ``vty`` from scalar pointer ``ptr`` (all lanes, or the lanes of ``mask``; masked-off
    lanes are 0 and not read)."""
    p = builder.bitcast(ptr, vty.as_pointer())
    if mask is None:
        return builder.load(p, align=align)
    f = _decl(builder, f"llvm.masked.load.{_mangle(vty)}.{_mangle(p.type)}",
              vty, [p.type, ir.IntType(32), mask.type, vty])
    return builder.call(f, [p, _i32c(align), mask, ir.Constant(vty, None)])


def _vstore(builder, value, ptr, mask, align):
    vty = value.type
    p = builder.bitcast(ptr, vty.as_pointer())
    if mask is None:
        builder.store(value, p, align=align)
        return
    f = _decl(builder, f"llvm.masked.store.{_mangle(vty)}.{_mangle(p.type)}",
              ir.VoidType(), [vty, p.type, ir.IntType(32), mask.type])
    builder.call(f, [value, p, _i32c(align), mask])


_CHAINS = 4  # accumulator chains per vector in the SpMM row kernel (positions mod 4)


@intrinsic
def _spmm_row(typingctx, indptr, indices, data, X, Y, i):
    """``Y[i, :] = Σ_k data[k] X[indices[k], :]`` over the stored ``k`` of row ``i``.

    ``X`` (n_cols, batch) C-contiguous; ``Y`` (n_rows, batch), C-contiguous (vector stores) or
    any strides (a masked scatter per pass: ``dense_x_csr_T`` writes ``Y.T`` of its C-ordered
    (batch, n_rows) output directly); ``indptr`` uint64, ``indices`` uint16/uint32, ``data``
    of ``X``'s float dtype. The batch is covered in passes of two 512-bit vectors (32 float32 /
    16 float64 columns; the last pass masked); within a pass the row's stored values
    alternate between two accumulator chains (positions 0, 2, 4, … and 1, 3, 5, …), so 4
    independent multiply-adds are in flight and each output is ``(Σ_even) + (Σ_odd)``, each a
    left-to-right ``fmuladd`` chain: an order fixed by the row alone (not by the batch width,
    the pass or the thread).
    """
    sig = types.void(indptr, indices, data, X, Y, types.int64)
    y_contig = Y.layout == "C"

    def codegen(context, builder, signature, args):
        ipa, ina, dta, xa, ya = (context.make_array(t)(context, builder, a)
                                 for t, a in zip(signature.args[:5], args[:5]))
        row = args[5]
        fty, VL, _, _ = _vec_types(context, signature.args[2].dtype)
        align = 4 if VL == 16 else 8
        B = cgutils.unpack_tuple(builder, xa.shape, 2)[1]
        start = builder.load(builder.gep(ipa.data, [row]))
        stop = builder.load(builder.gep(ipa.data, [builder.add(row, _i64c(1))]))
        n = builder.sub(stop, start)
        if y_contig:
            yrow = builder.gep(ya.data, [builder.mul(row, B)])
        else:  # element strides of Y
            rs, cs = (builder.sdiv(s, _i64c(align))
                      for s in cgutils.unpack_tuple(builder, ya.strides, 2))
            yrow = builder.gep(ya.data, [builder.mul(row, rs)])

        def width(L, nvec):
            """Types, intrinsics and accumulators for vectors of L lanes."""
            vty = ir.VectorType(fty, L)
            mty = ir.VectorType(ir.IntType(1), L)
            w = {"L": L, "vty": vty, "zero": ir.Constant(vty, None),
                 "fmuladd": _decl(builder, f"llvm.fmuladd.{_mangle(vty)}", vty,
                                  [vty, vty, vty]),
                 "accs": [[cgutils.alloca_once(builder, vty) for _ in range(_CHAINS)]
                          for _ in range(nvec)]}
            if not y_contig:
                qty = ir.VectorType(ir.IntType(64), L)
                pvty = ir.VectorType(yrow.type, L)
                w.update(qty=qty, pvty=pvty, ones=ir.Constant(mty, [ir.Constant(
                    ir.IntType(1), 1)] * L), lanes=ir.Constant(qty, [_i64c(t) for t in range(L)]),
                    scatter=_decl(builder, f"llvm.masked.scatter.{_mangle(vty)}."
                                  f"{_mangle(pvty)}", ir.VoidType(),
                                  [vty, pvty, ir.IntType(32), mty]))
            return w

        full, half = width(VL, 2), width(VL // 2, 1)

        def term(w, k, chain, b0, masks):
            v = _splat(builder, builder.load(builder.gep(dta.data, [k])), w["vty"])
            j = builder.zext(builder.load(builder.gep(ina.data, [k])), ir.IntType(64))
            xrow = builder.gep(xa.data, [builder.add(builder.mul(j, B), b0)])
            for h, mask in enumerate(masks):
                xv = _vload(builder, builder.gep(xrow, [_i64c(h * w["L"])]), w["vty"], mask,
                            align)
                a = w["accs"][h][chain]
                builder.store(builder.call(w["fmuladd"], [v, xv, builder.load(a)]), a)

        def store(w, y, col, mask):
            if y_contig:
                _vstore(builder, y, builder.gep(yrow, [col]), mask, align)
                return
            # Y[i, col + l] at yrow + (col + l) * cs, l < L
            off = builder.mul(builder.add(_splat(builder, col, w["qty"]), w["lanes"]),
                              _splat(builder, cs, w["qty"]))
            ptrs = builder.gep(yrow, [off], source_etype=fty)  # vector GEP: L addresses
            ptrs.type = w["pvty"]
            builder.call(w["scatter"], [y, ptrs, _i32c(align),
                                        w["ones"] if mask is None else mask])

        def one_pass(w, b0, masks):
            """Columns b0 .. b0 + len(masks)·L − 1 (a mask per vector, None: all lanes)."""
            C = _CHAINS
            for h in range(len(masks)):
                for c in range(C):
                    builder.store(w["zero"], w["accs"][h][c])
            with cgutils.for_range(builder, builder.lshr(n, _i64c(C.bit_length() - 1))) as loop:
                k = builder.add(start, builder.mul(loop.index, _i64c(C)))
                for c in range(C):  # position C q + c into chain c
                    term(w, builder.add(k, _i64c(c)), c, b0, masks)
            tail = builder.and_(n, _i64c(C - 1))  # the last n mod C values: positions C q + c
            k = builder.sub(stop, tail)
            for c in range(C - 1):
                with builder.if_then(builder.icmp_signed(">", tail, _i64c(c))):
                    term(w, builder.add(k, _i64c(c)), c, b0, masks)
            for h, mask in enumerate(masks):
                a = [builder.load(w["accs"][h][c]) for c in range(C)]
                while len(a) > 1:  # (c0 + c1) + (c2 + c3)
                    a = [builder.fadd(a[t], a[t + 1]) for t in range(0, len(a), 2)]
                store(w, a[0], builder.add(b0, _i64c(h * w["L"])), mask)

        W = 2 * VL
        nfull = builder.sdiv(B, _i64c(W))
        with cgutils.for_range(builder, nfull) as loop:
            one_pass(full, builder.mul(loop.index, _i64c(W)), (None, None))
        b0 = builder.mul(nfull, _i64c(W))
        left = builder.sub(B, b0)
        # the last columns: one masked half-width vector (256-bit) when at most VL / 2 remain,
        # else one masked full vector when at most VL remain, else a full one and a masked one
        with builder.if_then(builder.icmp_signed(">", left, _i64c(0))):
            with builder.if_else(builder.icmp_signed(">", left, _i64c(VL))) as (two, few):
                with two:
                    one_pass(full, b0, (None, _lane_mask(builder, left, VL, VL)))
                with few:
                    with builder.if_else(builder.icmp_signed(">", left, _i64c(VL // 2))) as (
                            one, small):
                        with one:
                            one_pass(full, b0, (_lane_mask(builder, left, VL),))
                        with small:
                            one_pass(half, b0, (_lane_mask(builder, left, VL // 2),))
        return context.get_dummy_value()

    return sig, codegen


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


#: Stored values per step of the vector SpMV row kernel (:func:`_spmv_row`): one 512-bit
#: vector of float32 (16 lanes, one accumulator) or two of float64 (8 lanes each, two
#: accumulators), so both dtypes take the same 16 values per step.
_SPMV_STEP = 16


@intrinsic(prefer_literal=True)
def _spmv_row(typingctx, indptr, indices, data, x, i, gather):
    """``sum_k data[k] * x[indices[k]]`` over the stored ``k`` of row ``i`` (a scalar of
    ``data``'s dtype): the SpMV row in LLVM IR, 16 stored values per step.

    Per step the 16 values are one vector load of ``data``, the 16 column indices are read as
    64-bit words (4 ``uint16`` or 2 ``uint32`` per word) and split with shifts, and the 16
    ``x[indices[k]]`` are scalar loads inserted into a vector (``vinsertps``-style, no gather
    instruction), then one vector ``fmuladd`` per 512 bits. That is 1 + 4 + 16 = 21 loads per
    16 values (uint16 indices) against 48 for the scalar loop (:func:`_row_dot`: value,
    index and ``x`` each loaded alone), which is what bounds SpMV when the matrix sits in
    cache: one thread, 4096², 90 %, float32, CPU time 0.34–0.38 vs 0.56–0.57 ms (issue #19,
    2-core Zen 4, load 1.2–2.7). The same rows with ``llvm.masked.gather`` for ``x`` (one
    vector load of 16 indices, ``vgatherdps`` on 16 or 2 × 8 lanes) took 0.59–0.61 ms against
    0.33–0.35 ms for the inserts in the same run (CPU time, best of 300, load 6): Zen 4's
    gathers are slower than scalar loads, so the vector of ``x`` values is built by inserts.

    With ``gather`` (a literal ``True``) the 16 ``x`` values are one ``llvm.masked.gather``
    instead (the indices one vector load, zero-extended): faster on Intel CPUs with fast
    gathers (:data:`SPMV_GATHER`), the same lanes and so the same bits.

    Summation order, fixed by the row alone (not by the thread or the block of rows): lane
    ``l`` of the accumulator(s) takes positions ``16 q + l`` in a left-to-right ``fmuladd``
    chain, the lanes are added pairwise (float64: the two accumulators first, then
    ``(l, l + 4)``, ``(l, l + 2)``, ``(l, l + 1)``; float32 the same from ``(l, l + 8)``), and
    the last ``n mod 16`` values are added to that sum one by one in stored order.
    ``indptr`` uint64; ``indices`` uint16 or uint32; ``data`` and ``x`` the same float dtype.
    """
    if not isinstance(gather, types.BooleanLiteral):
        raise numba.errors.TypingError("_spmv_row: gather must be a literal True or False")
    use_gather = gather.literal_value
    sig = data.dtype(indptr, indices, data, x, types.int64, gather)

    def codegen(context, builder, signature, args):
        ipa, ina, dta, xa = (context.make_array(t)(context, builder, a)
                             for t, a in zip(signature.args[:4], args[:4]))
        row = args[4]
        fty, VL, vty, _ = _vec_types(context, signature.args[2].dtype)
        ity = context.get_data_type(signature.args[1].dtype)
        per = 64 // ity.width  # indices per 64-bit word
        size = 4 if VL == 16 else 8  # bytes per value
        chains = _SPMV_STEP // VL
        i64 = ir.IntType(64)
        fma = _decl(builder, f"llvm.fmuladd.{_mangle(vty)}", vty, [vty, vty, vty])
        sfma = _decl(builder, f"llvm.fmuladd.{_mangle(fty)}", fty, [fty, fty, fty])
        start = builder.load(builder.gep(ipa.data, [row]))
        stop = builder.load(builder.gep(ipa.data, [builder.add(row, _i64c(1))]))
        steps = builder.udiv(builder.sub(stop, start), _i64c(_SPMV_STEP))
        accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, None))
                for _ in range(chains)]
        with cgutils.for_range(builder, steps) as loop:
            k0 = builder.add(start, builder.mul(loop.index, _i64c(_SPMV_STEP)))
            for c in range(chains):
                k = builder.add(k0, _i64c(c * VL))
                d = builder.load(builder.bitcast(builder.gep(dta.data, [k]),
                                                 vty.as_pointer()), align=4)
                if use_gather:  # x[indices[k:k + VL]]: one vector of indices, one gather
                    vi = ir.VectorType(i64, VL)
                    iv = builder.zext(builder.load(builder.bitcast(
                        builder.gep(ina.data, [k]), ir.VectorType(ity, VL).as_pointer()),
                        align=ity.width // 8), vi)
                    pty = ir.VectorType(xa.data.type, VL)
                    ptrs = builder.inttoptr(builder.add(
                        _splat(builder, builder.ptrtoint(xa.data, i64), vi),
                        builder.shl(iv, _splat(builder, _i64c(size.bit_length() - 1), vi))),
                        pty)
                    mty = ir.VectorType(ir.IntType(1), VL)
                    gth = _decl(builder, f"llvm.masked.gather.{_mangle(vty)}.{_mangle(pty)}",
                                vty, [pty, ir.IntType(32), mty, vty])
                    xv = builder.call(gth, [ptrs, _i32c(size), ir.Constant(mty, [1] * VL),
                                            ir.Constant(vty, ir.Undefined)])
                    builder.store(builder.call(fma, [d, xv, builder.load(accs[c])]), accs[c])
                    continue
                xv = ir.Constant(vty, ir.Undefined)
                for w in range(VL // per):
                    word = builder.load(builder.bitcast(builder.gep(
                        ina.data, [builder.add(k, _i64c(w * per))]), i64.as_pointer()),
                        align=ity.width // 8)
                    for lane in range(per):  # little endian: index w·per + lane
                        j = builder.zext(builder.trunc(builder.lshr(
                            word, _i64c(lane * ity.width)), ity), i64)
                        xv = builder.insert_element(xv, builder.load(builder.gep(
                            xa.data, [j])), _i32c(w * per + lane))
                builder.store(builder.call(fma, [d, xv, builder.load(accs[c])]), accs[c])
        v = builder.load(accs[0])
        for c in range(1, chains):
            v = builder.fadd(v, builder.load(accs[c]))
        lanes = VL
        while lanes > 1:  # (l, l + lanes/2) pairs
            h = lanes // 2
            pick = [ir.Constant(ir.VectorType(ir.IntType(32), h), [_i32c(t + o) for t in
                                                                  range(h)]) for o in (0, h)]
            v = builder.fadd(builder.shuffle_vector(v, v, pick[0]),
                             builder.shuffle_vector(v, v, pick[1]))
            lanes = h
        acc = cgutils.alloca_once_value(builder, builder.extract_element(v, _i32c(0)))
        k_tail = builder.add(start, builder.mul(steps, _i64c(_SPMV_STEP)))
        with cgutils.for_range(builder, builder.sub(stop, k_tail)) as loop:
            k = builder.add(k_tail, loop.index)
            j = builder.zext(builder.load(builder.gep(ina.data, [k])), i64)
            builder.store(builder.call(sfma, [builder.load(builder.gep(dta.data, [k])),
                                              builder.load(builder.gep(xa.data, [j])),
                                              builder.load(acc)]), acc)
        return builder.load(acc)

    return sig, codegen


@numba.njit(cache=True)
def _csr_matvec_loops(indptr, indices, data, x, y):
    """Plain loops (the path under ``NUMBA_DISABLE_JIT=1``, where the IR row kernel cannot
    run): the scalar four-accumulator :func:`_row_dot` per row."""
    for i in range(y.shape[0]):
        y[i] = _row_dot(indices, data, x, indptr[i], indptr[i + 1], y[i])


@numba.njit(cache=True, nogil=True, inline="always")
def _spmv_rows(indptr, indices, data, x, y, lo, hi, gather):
    """``y[i] = A[i] · x`` for rows ``lo <= i < hi`` with :func:`_spmv_row`, its ``x`` values
    built by one gather per vector (``gather``) or by scalar loads and inserts: the same lanes,
    so the same bits either way."""
    if gather:
        for i in range(lo, hi):
            y[i] = _spmv_row(indptr, indices, data, x, i, True)
    else:
        for i in range(lo, hi):
            # y_i = sum_k A_ik x_k over the stored k of row i
            y[i] = _spmv_row(indptr, indices, data, x, i, False)


@numba.njit(cache=True, nogil=True)
def _csr_matvec_serial(indptr, indices, data, x, y, gather):
    _spmv_rows(indptr, indices, data, x, y, 0, y.shape[0], gather)


@numba.njit(cache=True, nogil=True)
def _csr_matvec_team(indptr, indices, data, x, y, bounds, gather, board, epoch, member):
    """One member of the SpMV thread team (:class:`refimpl.kernels._team.Team`): claim blocks
    of rows (``bounds``, equal work) of call ``epoch`` one at a time from the shared counter
    until none is left. Runs without the GIL, on the calling thread (member 0) and on each
    helper thread; whoever starts first takes more blocks."""
    while True:
        t = claim(board, epoch)
        if t < 0:
            return
        _spmv_rows(indptr, indices, data, x, y, bounds[t], bounds[t + 1], gather)
        finish(board, member)


def _csr_matvec_threaded(indptr, indices, data, x, y, bounds, gather):
    """The threaded SpMV driver: the calling thread and ``numba.get_num_threads() - 1``
    helper threads share the row blocks ``bounds`` (:func:`refimpl.kernels._team.team`)."""
    return team().run(_csr_matvec_team, (indptr, indices, data, x, y, bounds, gather),
                      bounds.shape[0] - 1)


@numba.njit(cache=True, nogil=True)
def _work_bounds(indptr, n_blocks):
    """Row boundaries of ``n_blocks`` blocks of (nearly) equal work, int64 of shape
    ``(n_blocks + 1,)``: the cost of rows ``[0, i)`` is ``indptr[i] + i`` (the stored values
    plus one unit per row for its fixed work), and block ``t`` ends at the first row whose cost
    reaches ``t / n_blocks`` of the total (integer arithmetic, a binary search per block)."""
    n_rows = indptr.shape[0] - 1
    total = np.int64(indptr[n_rows]) + n_rows
    b = np.empty(n_blocks + 1, dtype=np.int64)
    b[0] = 0
    b[n_blocks] = n_rows
    for t in range(1, n_blocks):
        lo, hi = 0, n_rows  # first i in [0, n_rows] with cost(i) * n_blocks >= total * t
        while lo < hi:
            mid = (lo + hi) // 2
            if (np.int64(indptr[mid]) + mid) * n_blocks >= total * t:
                hi = mid
            else:
                lo = mid + 1
        b[t] = lo
    return b


def _row_blocks(A: CSRMatrix, per_thread: int = 4) -> np.ndarray:
    """Row boundaries of ``per_thread × threads`` blocks of (nearly) equal work
    (:func:`_work_bounds`), int64 of shape (blocks + 1,). ``prange`` hands each thread a
    contiguous run of blocks (the SpMV team claims them one at a time), so a matrix with
    uneven rows (pruned rows of very different density) still splits by work, not by row
    count. Cached on the matrix per block count."""
    n_blocks = per_thread * num_threads()
    cache = A.__dict__.setdefault("_row_blocks", {})
    b = cache.get(n_blocks)
    if b is None:
        b = cache[n_blocks] = _work_bounds(_uindptr(A), n_blocks)
    return b


def _csr_matvec_numba(A: CSRMatrix, x: np.ndarray, dtype) -> np.ndarray:
    data = A.data if A.data.dtype == dtype else A.data.astype(dtype)
    y = np.zeros(A.shape[0], dtype=dtype)
    if numba.config.DISABLE_JIT:
        _csr_matvec_loops(_uindptr(A), A.indices, data, x, y)
        return y
    if A.nnz >= SPMV_PARALLEL_MIN_NNZ and num_threads() > 1:
        _csr_matvec_threaded(_uindptr(A), A.indices, data, x, y, _row_blocks(A, _TEAM_BLOCKS),
                             SPMV_GATHER)
    else:
        _csr_matvec_serial(_uindptr(A), A.indices, data, x, y, SPMV_GATHER)
    if data is A.data and _FRONT_ON:  # the next call of these types takes the compiled front
        _spmv_front_add(A, x)
    return y


# ------------------------------------------------------------------ the compiled SpMV front
# Issue #19: after the 10 MiB of a 4096², 90 % float32 matrix have streamed through the 4 MiB L2
# (2-vCPU Intel Xeon with AMX, KVM, 2026-12-07), each Python step of the public call runs from
# cold caches: csr_matvec took 0.34–0.38 ms back to back against 0.27–0.29 ms for the team
# driver it ends in (two ``numba.get_num_threads()``, whose lock is a multiprocessing lock, the
# row blocks lookup, the checks, the dispatch, ``Team.run``). The front below is one compiled
# call after a few type tests: it checks ``x``, allocates ``y``, picks the serial rows or the
# thread team (woken, published and joined from compiled code, like the low-bit kernels'
# drivers) and computes the blocks of equal work itself.
_SPMV_CODES = {(np.dtype(np.float32), np.dtype(np.uint16)): 0,
               (np.dtype(np.float32), np.dtype(np.uint32)): 1,
               (np.dtype(np.float64), np.dtype(np.uint16)): 2,
               (np.dtype(np.float64), np.dtype(np.uint32)): 3}


@numba.njit(cache=True, inline="always")
def _put_spmv_job(board, indptr, indices, data, x, y, bounds, gather, code):
    """The job fields of a threaded SpMV call (sizes, then the arrays' addresses)."""
    f = FIELD0
    board[f] = y.shape[0]
    board[f + 1] = data.shape[0]
    board[f + 2] = x.shape[0]
    board[f + 3] = bounds.shape[0]
    board[f + 4] = 1 if gather else 0
    board[f + 5] = indptr.ctypes.data
    board[f + 6] = indices.ctypes.data
    board[f + 7] = data.ctypes.data
    board[f + 8] = x.ctypes.data
    board[f + 9] = y.ctypes.data
    board[f + 10] = bounds.ctypes.data
    board[f + 11] = code


@numba.njit(cache=True, inline="always")
def _serve_spmv_as(board, epoch, member, ity, fty):
    f = FIELD0
    n, nnz, nc, nb = board[f], board[f + 1], board[f + 2], board[f + 3]
    _csr_matvec_team(numba.carray(address(board[f + 5]), (n + 1,), np.uint64),
                     numba.carray(address(board[f + 6]), (nnz,), ity),
                     numba.carray(address(board[f + 7]), (nnz,), fty),
                     numba.carray(address(board[f + 8]), (nc,), fty),
                     numba.carray(address(board[f + 9]), (n,), fty),
                     numba.carray(address(board[f + 10]), (nb,), np.int64),
                     board[f + 4] != 0, board, epoch, member)


@numba.njit(cache=True, nogil=True)
def _serve_spmv(board, epoch, member):
    """A helper's share of a threaded SpMV call of the front (:func:`_spmv_front`): the arrays
    rebuilt with the dtypes of the call's code (:data:`_SPMV_CODES`)."""
    code = board[FIELD0 + 11]
    if code == 0:
        _serve_spmv_as(board, epoch, member, np.uint16, np.float32)
    elif code == 1:
        _serve_spmv_as(board, epoch, member, np.uint32, np.float32)
    elif code == 2:
        _serve_spmv_as(board, epoch, member, np.uint16, np.float64)
    else:
        _serve_spmv_as(board, epoch, member, np.uint32, np.float64)


_SPMV_JOB = register(_serve_spmv)


@numba.njit(cache=True, nogil=True)
def _spmv_front(indptr, indices, data, x, n_cols, gather, code, min_nnz, per_thread, board,
                sems, cpus, job):
    """:func:`_csr_matvec_numba` in one compiled call for arguments of the types it has served
    (``data`` and ``x`` of one dtype, ``x`` C-contiguous): ``(y, bad)``, ``bad`` 1 when ``x``
    has the wrong length or a value that is not finite (the checked path then raises)."""
    n = indptr.shape[0] - 1
    if x.shape[0] != n_cols:
        return np.empty(0, dtype=data.dtype), 1
    for j in range(n_cols):
        if not np.isfinite(x[j]):
            return np.empty(0, dtype=data.dtype), 1
    y = np.zeros(n, dtype=data.dtype)
    helpers = helpers_wanted()
    if data.shape[0] < min_nnz or helpers < 1:
        _spmv_rows(indptr, indices, data, x, y, 0, n, gather)
        return y, 0
    bounds = _work_bounds(indptr, per_thread * (helpers + 1))
    nb = bounds.shape[0] - 1
    wake(board, sems, cpus, min(helpers, nb - 1))
    _put_spmv_job(board, indptr, indices, data, x, y, bounds, gather, code)
    e = publish(board, nb, job)
    _csr_matvec_team(indptr, indices, data, x, y, bounds, gather, board, e, 0)
    wait_holding(board, nb, (bounds,))
    return y, 0


#: The SpMV front once the checked path has served a call: (team, (board, sems, cpus)).
_FRONT: dict = {}
#: Switch for tests that spy on the Python-level drivers (the front calls them compiled).
_FRONT_ON = True


def _spmv_front_add(A: CSRMatrix, x: np.ndarray) -> None:
    code = _SPMV_CODES.get((A.data.dtype, A.indices.dtype))
    if code is None or x.dtype != A.data.dtype:
        return
    tm = _TEAM[0] or team()
    ready(_SPMV_JOB)
    _front_install(_FRONT, code, _spmv_front,
                   (_uindptr(A), A.indices, A.data, x, A.shape[1], SPMV_GATHER, code,
                    SPMV_PARALLEL_MIN_NNZ, _TEAM_BLOCKS), tm,
                   (tm.board, tm.sems, tm.cpus, _SPMV_JOB))


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
    if type(A) is CSRMatrix and type(x) is np.ndarray and (backend is None or
                                                         backend == "numba"):
        y = _front(A, x, backend)
        if y is not None:
            return y
    A = _check_csr(A)
    x, dtype = _as_operand(x, "x", (A.shape[1],), A)
    return dispatch("csr_matvec", backend, _csr_matvec_numba, _csr_matvec_numpy, A, x, dtype)


def _front(A: CSRMatrix, x: np.ndarray, backend):
    """``A @ x`` through the compiled front (:func:`_spmv_front`), or None (the checked path
    then decides): Numba backend, no call recorder, arguments of the types served so far."""
    b = env("REFIMPL_BACKEND") if backend is None else None
    if (b is not None and b.strip().lower() not in ("", "numba")) or _backend._recorders or \
            not _FRONT_ON:
        return None
    data = A.data
    code = _SPMV_CODES.get((data.dtype, A.indices.dtype))
    f = _FRONT.get(code)
    if f is None or f[0] is not _TEAM[0]:
        return None
    try:
        with _backend._numba_lock:
            y, bad = f[1](A.indptr.view(np.uint64), A.indices, data, x, A.shape[1],
                          SPMV_GATHER, code, SPMV_PARALLEL_MIN_NNZ, _TEAM_BLOCKS, *f[2])
    except TypeError:  # a signature not compiled: the dispatcher's "no matching definition"
        return None
    return None if bad else y


# ----------------------------------------------------------------------------------------------
# SpMM: Y = A @ X, X of shape (n_cols, batch)
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _csr_matmat_loops(indptr, indices, data, X, Y):
    """Plain loops (the path under ``NUMBA_DISABLE_JIT=1``, where the IR row kernel cannot
    run): ``Y[i, :] += A_ij X[j, :]`` in stored order, one chain per output."""
    n_batch = X.shape[1]
    for i in range(Y.shape[0]):
        for b in range(n_batch):
            Y[i, b] = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            v = data[k]
            j = indices[k]
            for b in range(n_batch):
                Y[i, b] += v * X[j, b]


@numba.njit(cache=True)
def _csr_matmat_serial(indptr, indices, data, X, Y):
    for i in range(Y.shape[0]):
        _spmm_row(indptr, indices, data, X, Y, i)


@numba.njit(cache=True, parallel=True)
def _csr_matmat_parallel(indptr, indices, data, X, Y, bounds):
    for t in numba.prange(bounds.shape[0] - 1):  # blocks of rows with equal work
        for i in range(bounds[t], bounds[t + 1]):
            _spmm_row(indptr, indices, data, X, Y, i)


def _csr_matmat_numba(A: CSRMatrix, X: np.ndarray, dtype) -> np.ndarray:
    data = A.data if A.data.dtype == dtype else A.data.astype(dtype)
    Y = np.empty((A.shape[0], X.shape[1]), dtype=dtype)
    args = (_uindptr(A), A.indices, data, X, Y)
    if numba.config.DISABLE_JIT:
        _csr_matmat_loops(*args)
    elif A.nnz * X.shape[1] >= PARALLEL_MIN_WORK:
        _csr_matmat_parallel(*args, _row_blocks(A))
    else:
        _csr_matmat_serial(*args)
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


@numba.njit(cache=True)
def _transpose_into(X, Xt):
    """``Xt[k, b] = X[b, k]`` in blocks of 64 columns of ``X`` (the block of ``Xt`` stays in L1):
    0.09 ms for (32, 4096) float32 against 0.25 ms for NumPy's strided
    ``ascontiguousarray(X.T)`` (one thread, shared machine). (Transposing the (4096, 32) result
    the same way took 0.4 ms — its 16 KiB row stride maps a block's lines onto one L1 set — no
    better than the masked scatter store the row kernel uses instead.)"""
    nb, K = X.shape
    for k0 in range(0, K, 64):
        k1 = min(K, k0 + 64)
        for b in range(nb):
            for k in range(k0, k1):
                Xt[k, b] = X[b, k]


def _dense_x_csr_T_numba(W: CSRMatrix, Xt: np.ndarray, dtype) -> np.ndarray:
    data = W.data if W.data.dtype == dtype else W.data.astype(dtype)
    Y = np.empty((Xt.shape[1], W.shape[0]), dtype=dtype)  # (batch, out_features), C order
    # the row kernel writes Y.T (out_features, batch), a strided view: no transposing copy
    args = (_uindptr(W), W.indices, data, Xt, Y.T)
    if numba.config.DISABLE_JIT:
        _csr_matmat_loops(*args)
    elif W.nnz * Xt.shape[1] >= PARALLEL_MIN_WORK:
        _csr_matmat_parallel(*args, _row_blocks(W))
    else:
        _csr_matmat_serial(*args)
    return Y


def _dense_x_csr_T_numpy(W: CSRMatrix, Xt: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(_csr_matmat_numpy(W, Xt, dtype).T)  # (batch, out_features)


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
    Computed as ``(W @ X.T).T``: the SpMM row kernel of :func:`csr_matmat` on a C-ordered copy
    of ``X.T`` (shape ``(in_features, batch)``, so the vector loads run along the batch),
    writing straight into the transposed view of the C-ordered output (no transposing copy
    of ``Y``). Same summation order as :func:`csr_matmat`, so
    ``dense_x_csr_T(X, W) == csr_matmat(W, X.T).T`` bit for bit.
    """
    W = _check_csr(W)
    X = check_array(X, "X", shape=(None, W.shape[1]), dtype_kind="fiub")  # rejects NaN / inf
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    dtype = np.result_type(W.data.dtype, X.dtype)
    if X.dtype == dtype and X.flags.c_contiguous and X.shape[0] > 1 and \
            not numba.config.DISABLE_JIT:
        Xt = np.empty((X.shape[1], X.shape[0]), dtype=dtype)  # (in_features, batch)
        _transpose_into(X, Xt)
    else:
        Xt = np.ascontiguousarray(X.T, dtype=dtype)  # (in_features, batch)
    return dispatch("dense_x_csr_T", backend, _dense_x_csr_T_numba, _dense_x_csr_T_numpy, W,
                    Xt, dtype)
