"""Bit-packed quantised matrix products (Survey §3.1–3.3): bit packing into ``uint64`` words,
the XNOR-popcount binary GEMM, a ternary GEMM on two bit planes, and a k-bit packed weight ×
float activation matmul. Each Numba kernel (``cache=True``) sits beside its NumPy reference; the
public functions take ``backend="numba" | "numpy"`` (see :mod:`refimpl.kernels._backend`).

Layout
------
A ±1 matrix of shape ``(R, K)`` is packed row by row into ``Kw = ceil(K/64)`` little-endian
``uint64`` words: bit ``j`` of word ``w`` is 1 iff entry ``64w + j`` is ``+1`` (i.e. ``x >= 0``).
Padding bits are 0 in every operand, so they never count as a mismatch. For two packed rows
``a, b`` of length ``K``:

.. math:: a \\cdot b = K - 2\\,\\mathrm{popcount}(a \\oplus b)

(the XNOR-popcount identity of Rastegari et al. 2016 / Hubara et al. 2016 written with XOR:
``popcount(XNOR) = K − popcount(XOR)`` on the valid bits). A ternary matrix is two planes: a
non-zero mask ``nz`` and a sign plane ``s`` (1 for −1); for ternary rows
``a·b = popcount(nz_a & nz_b) − 2 popcount(nz_a & nz_b & (s_a ⊕ s_b))``.
k-bit codes are packed ``64 // k`` per word (a code never straddles two words).

The Numba binary GEMM switches to a table ("Four Russians") kernel for large products: 16-row
tables of 4-bit-group popcounts per block of 64 rows of B, summed in AVX2 nibble lanes (see
``_binary_gemm_lut``), ~1.8× the register-tiled POPCNT kernel at 1024 × 1024 × 4096.

Storage per weight, exactly: binary ``1`` bit (+ ``32/K`` for a float32 scale per row),
ternary ``2`` bits as two planes (+ scale), k-bit ``64/(64//k)`` bits (``k`` when ``k`` divides
64) plus a ``2^k``-entry float32 codebook per matrix; padding to whole words is counted by
:func:`packed_bits`.
"""

from __future__ import annotations

import contextlib
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from refimpl.kernels._backend import dispatch
from refimpl.utils import check_array, check_int

__all__ = [
    "pack_signs", "pack_ternary", "pack_codes", "unpack_codes", "binary_gemm", "binary_matmul",
    "ternary_gemm", "kbit_matmul", "packed_bits", "popcount64",
]


# ------------------------------------------------------------------ popcount
@intrinsic
def _ctpop(typingctx, x):
    """LLVM ``ctpop.i64`` (compiles to the POPCNT instruction where the CPU has it)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, [args[0]])

    return sig, codegen


if numba.config.DISABLE_JIT:  # plain-Python stepping (NUMBA_DISABLE_JIT=1): no LLVM intrinsic
    def _ctpop(x):  # noqa: F811
        return np.uint64(int(x).bit_count())


@numba.njit(cache=True)
def popcount64(x):
    """Number of set bits of a ``uint64`` (Numba; LLVM ``ctpop``)."""
    return _ctpop(numba.uint64(x))


@contextlib.contextmanager
def _no_autovectorize():
    """Compile (eagerly) with LLVM's loop and SLP vectorisers off.

    LLVM vectorises the popcount loops with the AVX2 ``vpshufb`` nibble-table popcount, which
    on this machine (AMD Zen, 128-bit vector units) is slower than one scalar ``POPCNT`` per
    word: measured 115–128 ms scalar vs 141–147 ms vectorised for the 1024 × 1024 × 4096
    binary GEMM on 2 busy cores. Numba reads these flags when it builds the pass manager of a
    compilation, so flipping them around an eager ``njit(signature)`` affects only that
    function.
    """
    old = (numba.config.LOOP_VECTORIZE, numba.config.SLP_VECTORIZE)
    numba.config.LOOP_VECTORIZE = False
    numba.config.SLP_VECTORIZE = False
    try:
        yield
    finally:
        numba.config.LOOP_VECTORIZE, numba.config.SLP_VECTORIZE = old


_SIG_GEMM = "int32[:, ::1](uint64[:, ::1], uint64[:, ::1], int64)"
_SIG_TGEMM = "int32[:, ::1](uint64[:, ::1], uint64[:, ::1], uint64[:, ::1], uint64[:, ::1])"


class _CompiledOnFirstCall:
    """``njit(signature, cache=True, parallel=True)(py_func)`` under :func:`_no_autovectorize`,
    compiled (or loaded from Numba's cache) on the first call rather than at import.

    Compiling or cache-loading a ``parallel=True`` function starts Numba's threading layer
    (the cache reloader of a parfor calls ``_launch_threads``), so the eager
    ``njit(signature)`` these kernels need (the vectoriser flags are read at compile time) used
    to start the thread pool — GNU OpenMP by default — as a side effect of
    ``import refimpl.kernels.bitpack``. Now importing starts no threads.
    """

    def __init__(self, py_func, signature):
        self.py_func = py_func
        self._signature = signature
        self._fn = None
        self._lock = threading.Lock()
        self.__name__ = py_func.__name__
        self.__doc__ = py_func.__doc__

    def compiled(self):
        """The compiled dispatcher (compiling it if needed)."""
        if self._fn is None:
            with self._lock:
                if self._fn is None:
                    with _no_autovectorize():
                        self._fn = numba.njit(self._signature, cache=True,
                                              parallel=True)(self.py_func)
        return self._fn

    def __call__(self, *args):
        return (self._fn or self.compiled())(*args)


# ------------------------------------------------------------------ packing
def _words(K):
    return (K + 63) // 64


def _pack_signs_numpy(X):
    R, K = X.shape
    bits = np.packbits(X >= 0, axis=1, bitorder="little")  # (R, ceil(K/8)) uint8
    out = np.zeros((R, _words(K) * 8), dtype=np.uint8)
    out[:, : bits.shape[1]] = bits
    return out.view("<u8").astype(np.uint64)  # (R, Kw)


@numba.njit(cache=True)
def _pack_signs_numba(X):
    """Serial on purpose: a full word is a constant 64-trip loop LLVM compiles to compare +
    shift without branches (≈ 2.6 ms for 1024 × 4096 float32 here, as fast as ``np.packbits``);
    a ``prange`` version measured 30–45 ms on the shared 2-core machine (thread wake-ups)."""
    R, K = X.shape
    Kw = (K + 63) // 64
    full = K // 64
    out = np.zeros((R, Kw), dtype=np.uint64)
    for r in range(R):
        for w in range(full):
            acc = numba.uint64(0)
            base = w * 64
            for j in range(64):  # bit j = (x >= 0)
                acc |= numba.uint64(X[r, base + j] >= 0) << numba.uint64(j)
            out[r, w] = acc
        if full < Kw:  # the last, partial word (padding bits stay 0)
            acc = numba.uint64(0)
            base = full * 64
            for j in range(K - base):
                acc |= numba.uint64(X[r, base + j] >= 0) << numba.uint64(j)
            out[r, full] = acc
    return out


def _as_2d(X, name):
    X = check_array(X, name, ndim=(1, 2), dtype_kind="fiub")
    return X.reshape(1, -1) if X.ndim == 1 else X


#: Results of at least this many bytes are handed back in NumPy's allocation (:func:`_owned`).
_HUGE_BYTES = 4 << 20


def _owned(a: np.ndarray) -> np.ndarray:
    """``a`` in memory NumPy allocated: a Numba kernel's result of ≥ 4 MiB is copied once.
    NumPy asks Linux for transparent huge pages on arrays of ≥ 4 MiB (``madvise``), Numba's
    allocator does not, and the packed weights are read whole at every product: issue #19,
    4-bit batch-1 product 4096 × 4096 (8 MiB of words) after 0.3 s idle, 21 rounds, median /
    best: 0.70 / 0.64 ms on Numba's 4 KiB pages, 0.60–0.64 / 0.56–0.58 ms on huge pages (the
    float32 BLAS it is compared with reads a NumPy array, on huge pages)."""
    if a.nbytes >= _HUGE_BYTES and a.base is not None:
        return a.copy()
    return a


def pack_signs(X, backend: str | None = None) -> np.ndarray:
    """Pack the signs of a matrix into ``uint64`` words (bit 1 ⇔ ``x >= 0`` ⇔ ``+1``).

    Parameters
    ----------
    X : ndarray of shape (R, K) (or (K,))
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of uint64, shape (R, ceil(K/64))
    """
    X = _as_2d(X, "X")
    return _owned(dispatch("pack_signs", backend, _pack_signs_numba, _pack_signs_numpy,
                           np.ascontiguousarray(X)))


def pack_ternary(T, backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pack a ternary matrix (entries in {-1, 0, 1}) into a non-zero plane and a sign plane.

    Returns
    -------
    nz, sign : ndarray of uint64, shape (R, ceil(K/64)) each
        ``nz`` bit = 1 for a non-zero entry, ``sign`` bit = 1 for ``-1``.
    """
    T = _as_2d(T, "T")
    if not np.all(np.isin(T, (-1, 0, 1))):
        raise ValueError("T must have entries in {-1, 0, 1}")
    # pack_signs sets a bit for x >= 0: map the wanted bit to +1 and the rest to −1
    nz_src = np.where(T != 0, 1.0, -1.0)
    s_src = np.where(T < 0, 1.0, -1.0)
    return pack_signs(nz_src, backend), pack_signs(s_src, backend)


def _pack_codes_numpy(codes, bits):
    R, K = codes.shape
    per = 64 // bits
    Kw = (K + per - 1) // per
    pad = np.zeros((R, Kw * per), dtype=np.uint64)
    pad[:, :K] = codes
    pad = pad.reshape(R, Kw, per)  # (R, Kw, per)
    shifts = (np.arange(per, dtype=np.uint64) * np.uint64(bits))[None, None, :]
    return np.bitwise_or.reduce(pad << shifts, axis=2)  # (R, Kw)


@numba.njit(cache=True)
def _pack_codes_numba(codes, bits):
    R, K = codes.shape
    per = 64 // bits
    Kw = (K + per - 1) // per
    out = np.zeros((R, Kw), dtype=np.uint64)
    for r in range(R):
        for k in range(K):
            w = k // per
            out[r, w] |= numba.uint64(codes[r, k]) << numba.uint64((k - w * per) * bits)
    return out


def pack_codes(codes, bits: int, backend: str | None = None) -> np.ndarray:
    """Pack integer codes in ``[0, 2^bits)`` row by row, ``64 // bits`` codes per ``uint64``.

    Parameters
    ----------
    codes : ndarray of int, shape (R, K)
    bits : int in [1, 16]

    Returns
    -------
    ndarray of uint64, shape (R, ceil(K / (64 // bits)))
    """
    bits = check_int(bits, "bits", 1, 16)
    codes = _as_2d(codes, "codes")
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes must be an integer array, got {codes.dtype}")
    if codes.min() < 0 or codes.max() >= 2 ** bits:
        raise ValueError(f"codes must lie in [0, {2 ** bits - 1}] for bits={bits}")
    return _owned(dispatch("pack_codes", backend, _pack_codes_numba, _pack_codes_numpy,
                           np.ascontiguousarray(codes.astype(np.int64)), bits))


def _unpack_codes_numpy(packed, bits, K):
    per = 64 // bits
    R, Kw = packed.shape
    shifts = (np.arange(per, dtype=np.uint64) * np.uint64(bits))[None, None, :]
    mask = np.uint64((1 << bits) - 1)
    out = (packed[:, :, None] >> shifts) & mask  # (R, Kw, per)
    return out.reshape(R, Kw * per)[:, :K].astype(np.int64)


@numba.njit(cache=True)
def _unpack_codes_numba(packed, bits, K):
    per = 64 // bits
    R = packed.shape[0]
    mask = numba.uint64((1 << bits) - 1)
    out = np.empty((R, K), dtype=np.int64)
    for r in range(R):
        for k in range(K):
            w = k // per
            out[r, k] = (packed[r, w] >> numba.uint64((k - w * per) * bits)) & mask
    return out


def unpack_codes(packed, bits: int, K: int, backend: str | None = None) -> np.ndarray:
    """Inverse of :func:`pack_codes`: int64 codes of shape (R, K)."""
    bits = check_int(bits, "bits", 1, 16)
    K = check_int(K, "K", 1)
    packed = np.ascontiguousarray(np.asarray(packed, dtype=np.uint64))
    per = 64 // bits
    if packed.ndim != 2 or packed.shape[1] != (K + per - 1) // per:
        raise ValueError(f"packed must have shape (R, {(K + per - 1) // per}) for K={K}, "
                         f"bits={bits}, got {packed.shape}")
    return dispatch("unpack_codes", backend, _unpack_codes_numba, _unpack_codes_numpy,
                    packed, bits, K)


def packed_bits(packed) -> int:
    """Exact storage of a packed array in bits (whole ``uint64`` words, padding included)."""
    return int(np.asarray(packed).size) * 64


# ------------------------------------------------------------------ binary GEMM
def _binary_gemm_numpy(Ap, Bp, K):
    M, N = Ap.shape[0], Bp.shape[0]
    out = np.empty((M, N), dtype=np.int32)
    step = max(1, 2 ** 22 // max(1, N * Ap.shape[1]))
    for i in range(0, M, step):
        x = np.bitwise_xor(Ap[i:i + step, None, :], Bp[None, :, :])  # (m, N, Kw)
        out[i:i + step] = K - 2 * np.bitwise_count(x).sum(-1, dtype=np.int64)
    return out


@numba.njit(cache=True, inline="always")
def _bin_tile_4x4(Ap, Bp, K, i0, j0, out):
    """One 4 × 4 output tile: 16 scalar accumulators, the word loop innermost."""
    Kw = Ap.shape[1]
    c00 = c01 = c02 = c03 = numba.uint64(0)
    c10 = c11 = c12 = c13 = numba.uint64(0)
    c20 = c21 = c22 = c23 = numba.uint64(0)
    c30 = c31 = c32 = c33 = numba.uint64(0)
    for w in range(Kw):
        a0 = Ap[i0, w]
        a1 = Ap[i0 + 1, w]
        a2 = Ap[i0 + 2, w]
        a3 = Ap[i0 + 3, w]
        b0 = Bp[j0, w]
        b1 = Bp[j0 + 1, w]
        b2 = Bp[j0 + 2, w]
        b3 = Bp[j0 + 3, w]
        c00 += _ctpop(a0 ^ b0)
        c01 += _ctpop(a0 ^ b1)
        c02 += _ctpop(a0 ^ b2)
        c03 += _ctpop(a0 ^ b3)
        c10 += _ctpop(a1 ^ b0)
        c11 += _ctpop(a1 ^ b1)
        c12 += _ctpop(a1 ^ b2)
        c13 += _ctpop(a1 ^ b3)
        c20 += _ctpop(a2 ^ b0)
        c21 += _ctpop(a2 ^ b1)
        c22 += _ctpop(a2 ^ b2)
        c23 += _ctpop(a2 ^ b3)
        c30 += _ctpop(a3 ^ b0)
        c31 += _ctpop(a3 ^ b1)
        c32 += _ctpop(a3 ^ b2)
        c33 += _ctpop(a3 ^ b3)
    k = numba.int64(K)
    out[i0, j0] = k - 2 * numba.int64(c00)
    out[i0, j0 + 1] = k - 2 * numba.int64(c01)
    out[i0, j0 + 2] = k - 2 * numba.int64(c02)
    out[i0, j0 + 3] = k - 2 * numba.int64(c03)
    out[i0 + 1, j0] = k - 2 * numba.int64(c10)
    out[i0 + 1, j0 + 1] = k - 2 * numba.int64(c11)
    out[i0 + 1, j0 + 2] = k - 2 * numba.int64(c12)
    out[i0 + 1, j0 + 3] = k - 2 * numba.int64(c13)
    out[i0 + 2, j0] = k - 2 * numba.int64(c20)
    out[i0 + 2, j0 + 1] = k - 2 * numba.int64(c21)
    out[i0 + 2, j0 + 2] = k - 2 * numba.int64(c22)
    out[i0 + 2, j0 + 3] = k - 2 * numba.int64(c23)
    out[i0 + 3, j0] = k - 2 * numba.int64(c30)
    out[i0 + 3, j0 + 1] = k - 2 * numba.int64(c31)
    out[i0 + 3, j0 + 2] = k - 2 * numba.int64(c32)
    out[i0 + 3, j0 + 3] = k - 2 * numba.int64(c33)


@numba.njit(cache=True, inline="always")
def _bin_one(Ap, Bp, K, i, j, out):
    c = numba.uint64(0)
    for w in range(Ap.shape[1]):
        c += _ctpop(Ap[i, w] ^ Bp[j, w])
    out[i, j] = numba.int64(K) - 2 * numba.int64(c)


def _binary_gemm_py(Ap, Bp, K):
    """Register-tiled XOR-popcount GEMM, parallel over blocks of 4 rows of A."""
    M = Ap.shape[0]
    N = Bp.shape[0]
    out = np.empty((M, N), dtype=np.int32)
    Nt = N // 4
    n_row_tiles = (M + 3) // 4
    for it in prange(n_row_tiles):
        i0 = it * 4
        if i0 + 4 <= M:
            for jt in range(Nt):
                _bin_tile_4x4(Ap, Bp, K, i0, jt * 4, out)
            for j in range(Nt * 4, N):
                for i in range(i0, i0 + 4):
                    _bin_one(Ap, Bp, K, i, j, out)
        else:
            for i in range(i0, M):
                for j in range(N):
                    _bin_one(Ap, Bp, K, i, j, out)
    return out


_binary_gemm_tiled = _CompiledOnFirstCall(_binary_gemm_py, _SIG_GEMM)


# ------------------------------------------------------------------ binary GEMM, table kernel
# "Four Russians" form of the XOR-popcount GEMM for large products. Split K into 4-bit groups
# (nibbles). For a block of 64 rows of B and one group g, tabulate all 16 possible nibbles p
# of an A row: T[g, p] holds popcount(p ^ B[j0 + l, group g]) for the 64 rows l as 64 4-bit
# *lanes* in 32 bytes (byte j: row j in the low nibble, row 32 + j in the high nibble). A row
# of A then costs one 32-byte table row per nibble — one AVX2 ``vpaddb`` covers 64 output
# columns × 4 bits of K — instead of 64 scalar XOR + POPCNT + ADD. Nibble lanes hold ≤ 15, so
# three lookups (≤ 12 each lane) are added before they are split into byte sums: S += y and
# H += (y >> 4) & 15 per byte; then the high-nibble (rows 32 + j) sum is H and the low one
# S − 16 H (mod 256, exact because each is ≤ 128 over a block of 32 groups = 2 words). Those
# are widened into uint16 column sums once per block (so K < 65536). A block's 32 tables
# take 16 KiB and stay in the 32 KiB L1 data cache, and building them is a 16-step Gray-code
# walk per group (consecutive p differ in one bit b; flipping it changes each lane by
# ±(1 − 2·bit_b(q)), and the low and high lanes of a byte change together by E_lo + 16 E_hi,
# which byte arithmetic adds exactly because every true value stays in [0, 4 + 16·4]).
# The two inner loops are written in LLVM IR (numba ``@intrinsic``): LLVM's auto-vectoriser
# does not keep the lane accumulators in registers. The last K block writes the int32 output
# rows directly (no second pass over the column sums). Measured on this AMD Zen 1 (AVX2 on
# 128-bit units), 1024 × 1024 × 4096, medians of 21–41 interleaved calls: one thread 15.7 ms,
# two threads 8.6–9.6 ms, against 21.9 ms / 11.5–12.0 ms for the previous kernel of this form
# (8-bit groups, 256-row tables, 32 byte lanes: 128 KiB of tables per block, in L2, and a
# table build costing ~23 % of the time). Tried on the nibble kernel without gain: A
# pre-expanded into byte indices (no shift/mask per lookup: 17.7 vs 17.4 ms before the fused
# output); H without the mask (a 16-bit shift, decoded at the row end: same time); 3 words
# per block (17.2 vs 16.4 ms); dynamic prange chunks (same).
_LUT_LANES = 64  # rows of B per table block: two 4-bit lanes per byte of a 32-byte row
_LUT_WORDS = 2   # K words per block: 32 nibble groups, lane sums <= 32 * 4 = 128 < 256
_LUT_GROUPS = 16 * _LUT_WORDS
_LUT_SUM = 3     # table rows added in the nibble lanes before the byte update (3 * 4 <= 15)


def _i64(v):
    return ir.Constant(ir.IntType(64), v)


def _splat8(c, n=32):
    i8 = ir.IntType(8)
    return ir.Constant(ir.VectorType(i8, n), [ir.Constant(i8, c)] * n)


@intrinsic
def _lut_build(typingctx, BTb, T):
    """``T[g, p, j] = popcount(p ^ q_j) + 16 popcount(p ^ q_{32+j})`` for the 32 nibble groups
    ``g = 2c + h`` of a K block, ``p < 16``, ``j < 32``, with ``q_l = nibble h of BTb[c, l]``.

    ``BTb``: the block's 16 bytes of K for 64 rows of B, transposed, shape (16, 64) uint8.
    ``T``: (32, 16, 32) uint8. Gray-code walk over p, one ``<32 x i8>`` add and store per row.
    """
    sig = types.void(BTb, T)

    def codegen(context, builder, signature, args):
        barr = context.make_array(signature.args[0])(context, builder, args[0])
        tarr = context.make_array(signature.args[1])(context, builder, args[1])
        vty = ir.VectorType(ir.IntType(8), 32)
        bp = builder.bitcast(barr.data, vty.as_pointer())
        tp = builder.bitcast(tarr.data, vty.as_pointer())
        for g in range(_LUT_GROUPS):
            c, h = divmod(g, 2)
            q = [builder.and_(builder.lshr(builder.load(builder.gep(bp, [_i64(2 * c + half)]),
                                                        align=1), _splat8(4 * h)), _splat8(15))
                 for half in (0, 1)]
            row = _splat8(0)
            E = []
            for b in range(4):
                bits = [builder.and_(builder.lshr(x, _splat8(b)), _splat8(1)) for x in q]
                row = builder.add(row, builder.add(bits[0], builder.shl(bits[1], _splat8(4))))
                e = [builder.sub(_splat8(1), builder.shl(x, _splat8(1))) for x in bits]
                E.append(builder.add(e[0], builder.shl(e[1], _splat8(4))))
            builder.store(row, builder.gep(tp, [_i64(16 * g)]), align=1)
            for k in range(1, 16):
                b = (k & -k).bit_length() - 1
                gk = k ^ (k >> 1)
                row = builder.add(row, E[b]) if (gk >> b) & 1 else builder.sub(row, E[b])
                builder.store(row, builder.gep(tp, [_i64(16 * g + gk)]), align=1)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _lut_rows(typingctx, T, Apn, a_off, rows, C, out, o_off, K, final):
    """For ``i < rows``: ``C[i, :] += Σ_g T[g, nibble_g(Apn.flat[a_off + 2i : a_off + 2i + 2])]``
    split into its 64 lanes (row ``j`` of the block → ``C[i, j]``, ``32 + j`` → ``C[i, 32 + j]``).
    With ``final`` (the last K block of a full 64-row block of B) the sums are not stored back
    but finished: ``out.flat[o_off + i N + j] = K − 2 (C[i, j] + lanes_j)`` for ``j < 64``.

    ``T``: (32, 16, 32) uint8 tables of one K block; ``Apn``: A in K-block panels (two words per
    row); ``C``: (rows, 64) uint16 column sums; ``out``: (M, N) int32. The loop over rows is
    part of the IR.
    """
    sig = types.void(T, Apn, types.int64, types.int64, C, out, types.int64, types.int64,
                     types.boolean)

    def codegen(context, builder, signature, args):
        tarr = context.make_array(signature.args[0])(context, builder, args[0])
        aarr = context.make_array(signature.args[1])(context, builder, args[1])
        carr = context.make_array(signature.args[4])(context, builder, args[4])
        oarr = context.make_array(signature.args[5])(context, builder, args[5])
        a_off, rows, o_off, final = args[2], args[3], args[6], args[8]
        i64 = ir.IntType(64)
        vb = ir.VectorType(ir.IntType(8), 32)
        wty = ir.VectorType(ir.IntType(16), 32)
        dty = ir.VectorType(ir.IntType(32), 32)
        tb = builder.bitcast(tarr.data, vb.as_pointer())
        abase = builder.gep(aarr.data, [a_off])
        cbase = builder.bitcast(carr.data, wty.as_pointer())
        obase = builder.gep(oarr.data, [o_off])
        n_cols = builder.extract_value(oarr.shape, 1)
        kvec = builder.insert_element(ir.Constant(dty, ir.Undefined), builder.trunc(args[7],
                                      ir.IntType(32)), ir.Constant(ir.IntType(32), 0))
        kvec = builder.shuffle_vector(kvec, kvec, ir.Constant(dty, [ir.Constant(
            ir.IntType(32), 0)] * 32))
        entry = builder.block
        loop = builder.append_basic_block("lut.rows")
        done = builder.append_basic_block("lut.done")
        builder.cbranch(builder.icmp_signed(">", rows, _i64(0)), loop, done)
        builder.position_at_end(loop)
        i = builder.phi(i64)
        xs = []
        for w in range(_LUT_WORDS):
            a = builder.load(builder.gep(abase, [builder.add(builder.mul(i, _i64(_LUT_WORDS)),
                                                             _i64(w))]))
            for s in range(16):
                p = builder.and_(builder.lshr(a, _i64(4 * s)), _i64(15))
                idx = builder.add(_i64(16 * (16 * w + s)), p)
                xs.append(builder.load(builder.gep(tb, [idx]), align=1))
        S = H = None
        for c in range(0, len(xs), _LUT_SUM):
            y = xs[c]
            for x in xs[c + 1:c + _LUT_SUM]:
                y = builder.add(y, x)  # nibble lanes, each ≤ 12
            h = builder.and_(builder.lshr(y, _splat8(4)), _splat8(15))
            S = y if S is None else builder.add(S, y)
            H = h if H is None else builder.add(H, h)
        lo = builder.sub(S, builder.shl(H, _splat8(4)))
        sums = []
        for half, v in enumerate((lo, H)):
            cptr = builder.gep(cbase, [builder.add(builder.shl(i, _i64(1)), _i64(half))])
            sums.append((cptr, builder.add(builder.load(cptr, align=2), builder.zext(v, wty))))
        keep = builder.append_basic_block("lut.keep")
        fin = builder.append_basic_block("lut.final")
        nxt = builder.append_basic_block("lut.next")
        builder.cbranch(final, fin, keep)
        builder.position_at_end(keep)
        for cptr, v in sums:
            builder.store(v, cptr, align=2)
        builder.branch(nxt)
        builder.position_at_end(fin)
        orow = builder.gep(obase, [builder.mul(i, n_cols)])
        two = ir.Constant(dty, [ir.Constant(ir.IntType(32), 2)] * 32)
        for half, (_, v) in enumerate(sums):
            d = builder.sub(kvec, builder.mul(two, builder.zext(v, dty)))
            optr = builder.bitcast(builder.gep(orow, [_i64(32 * half)]), dty.as_pointer())
            builder.store(d, optr, align=4)
        builder.branch(nxt)
        builder.position_at_end(nxt)
        i2 = builder.add(i, _i64(1))
        i.add_incoming(_i64(0), entry)
        i.add_incoming(i2, nxt)
        builder.cbranch(builder.icmp_signed("<", i2, rows), loop, done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, parallel=True)
def _binary_gemm_lut(Apn, Bb, K, n_chunks):
    """Table ("Four Russians") XOR-popcount GEMM on nibble groups.

    ``Apn`` is A in K-block panels, shape (Kw / 2, M, 2) (each block's two words of all rows
    contiguous); ``Bb`` is ``Bp`` viewed as bytes, shape (N, 8 Kw), Kw even (zero-padded).
    Parallel over (block of 64 rows of B) × (one of ``n_chunks`` row ranges of A); each task
    builds its own tables (32 groups × 16 × 32 bytes = 16 KiB, L1-resident) per K block and
    keeps uint16 column sums, (rows × 128) bytes, in L2.
    """
    n_blk, M, GW = Apn.shape
    if GW != _LUT_WORDS:  # the row loop's IR is unrolled for this block width
        raise ValueError("Apn must have _LUT_WORDS words per block")
    N = Bb.shape[0]
    L = _LUT_LANES
    nJ = (N + L - 1) // L
    out = np.empty((M, N), dtype=np.int32)
    for task in prange(nJ * n_chunks):
        jb = task // n_chunks
        ic = task - jb * n_chunks
        i0 = ic * M // n_chunks
        i1 = (ic + 1) * M // n_chunks
        j0 = jb * L
        T = np.empty((_LUT_GROUPS, 16, 32), dtype=np.uint8)
        BTb = np.zeros((8 * GW, L), dtype=np.uint8)  # the block's bytes of B, transposed
        C = np.zeros((i1 - i0, L), dtype=np.uint16)  # Hamming distances, columns j0 .. j0+L-1
        jn = min(L, N - j0)
        for bk in range(n_blk):
            for l in range(jn):
                for c in range(8 * GW):
                    BTb[c, l] = Bb[j0 + l, 8 * GW * bk + c]
            _lut_build(BTb, T)
            final = bk == n_blk - 1 and jn == L  # finish into ``out`` while the rows are hot
            _lut_rows(T, Apn, (bk * M + i0) * GW, i1 - i0, C, out, i0 * N + j0, K, final)
        if jn < L:
            for i in range(i0, i1):
                for l in range(jn):
                    out[i, j0 + l] = K - 2 * numba.int32(C[i - i0, l])
    return out


def _lut_gemm(Ap, Bp, K, n_chunks):
    """Pad K to whole table blocks (zero words: XOR 0, no count), lay A out in K-block panels
    (each block then reads one contiguous stream of A, ~5 % faster than row-major), run the
    table kernel."""
    M, Kw = Ap.shape
    Kp = -(-Kw // _LUT_WORDS) * _LUT_WORDS
    if Kp != Kw:
        Ap = np.pad(Ap, ((0, 0), (0, Kp - Kw)))
        Bp = np.pad(Bp, ((0, 0), (0, Kp - Kw)))
    Apn = np.ascontiguousarray(Ap.reshape(M, Kp // _LUT_WORDS, _LUT_WORDS).transpose(1, 0, 2))
    return _binary_gemm_lut(Apn, np.ascontiguousarray(Bp).view(np.uint8), K, n_chunks)


def _lut_pays_off(M, N, K):
    """Use the table kernel when its per-block work (gathering 64 rows of B, building 32
    16-row tables, one pass of uint16 column sums) is amortised. Measured against the POPCNT
    kernel on this machine (2 threads): 1.6× at 256 × 256 × 1024, 1.2× at 64 × 1024 × 4096,
    0.64× at 32 × 1024 × 4096 (a half-empty 64-row block), 0.85× at 1024 × 1024 × 64."""
    return (not numba.config.DISABLE_JIT and K < 65536 and max(M, N) >= 256
            and min(M, N) >= 64)


def _binary_gemm_numba(Ap, Bp, K):
    """Numba binary GEMM: the table kernel for large products (tables built from the operand
    with fewer rows), the register-tiled POPCNT kernel otherwise."""
    M, N = Ap.shape[0], Bp.shape[0]
    if not _lut_pays_off(M, N, K):
        return _binary_gemm_tiled(Ap, Bp, K)
    swap = N > M  # tables from the smaller side: C.T = Bp ⊙ Ap
    X, Y = (Bp, Ap) if swap else (Ap, Bp)
    nJ = -(-Y.shape[0] // _LUT_LANES)
    threads = numba.get_num_threads()
    n_chunks = max(1, min(-(-2 * threads // nJ), X.shape[0] // 64))
    C = _lut_gemm(X, Y, K, n_chunks)
    return np.ascontiguousarray(C.T) if swap else C


def _check_packed(P, name, Kw=None):
    P = np.asarray(P)
    if P.dtype != np.uint64 or P.ndim != 2:
        raise TypeError(f"{name} must be a 2-d uint64 array from pack_signs/pack_ternary, "
                        f"got {P.dtype} with shape {P.shape}")
    if Kw is not None and P.shape[1] != Kw:
        raise ValueError(f"{name} must have {Kw} words per row, got shape {P.shape}")
    return np.ascontiguousarray(P)


def binary_gemm(Ap, Bp, K: int, backend: str | None = None) -> np.ndarray:
    """Bit-packed binary GEMM ``A @ B.T`` for ±1 matrices, by XOR-popcount (Survey §3.1.1).

    Parameters
    ----------
    Ap : ndarray of uint64, shape (M, ceil(K/64))
        ``pack_signs(A)`` for ``A`` of shape (M, K).
    Bp : ndarray of uint64, shape (N, ceil(K/64))
        ``pack_signs(B)`` for ``B`` of shape (N, K) (a weight in PyTorch layout).
    K : int
        The true inner dimension.

    Returns
    -------
    ndarray of int32, shape (M, N), equal to ``A @ B.T`` exactly.
    """
    K = check_int(K, "K", 1)
    Kw = _words(K)
    Ap = _check_packed(Ap, "Ap", Kw)
    Bp = _check_packed(Bp, "Bp", Kw)
    from refimpl.kernels import lowbit_gemv

    if 1 <= Ap.shape[0] <= lowbit_gemv.SMALL_BATCH_PACKED:  # a few rows: parallel over B rows
        return lowbit_gemv.binary_gemv(Ap, Bp, K, backend=backend)
    return dispatch("binary_gemm", backend, _binary_gemm_numba, _binary_gemm_numpy, Ap, Bp, K)


def binary_matmul(A, B, backend: str | None = None) -> np.ndarray:
    """``sign(A) @ sign(B).T`` (signs with ``0 → +1``) via packing and :func:`binary_gemm`."""
    A = _as_2d(A, "A")
    B = _as_2d(B, "B")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"A and B must have the same number of columns, got {A.shape} and "
                         f"{B.shape}")
    return binary_gemm(pack_signs(A, backend), pack_signs(B, backend), A.shape[1], backend)


# ------------------------------------------------------------------ ternary GEMM
def _ternary_gemm_numpy(Anz, As, Bnz, Bs):
    M, N = Anz.shape[0], Bnz.shape[0]
    out = np.empty((M, N), dtype=np.int32)
    step = max(1, 2 ** 21 // max(1, N * Anz.shape[1]))
    for i in range(0, M, step):
        nz = Anz[i:i + step, None, :] & Bnz[None, :, :]  # (m, N, Kw)
        neg = nz & (As[i:i + step, None, :] ^ Bs[None, :, :])
        out[i:i + step] = (np.bitwise_count(nz).sum(-1, dtype=np.int64)
                           - 2 * np.bitwise_count(neg).sum(-1, dtype=np.int64))
    return out


@numba.njit(cache=True, inline="always")
def _tern_one(Anz, As, Bnz, Bs, i, j, out):
    p = numba.uint64(0)
    q = numba.uint64(0)
    for w in range(Anz.shape[1]):
        m = Anz[i, w] & Bnz[j, w]
        p += _ctpop(m)
        q += _ctpop(m & (As[i, w] ^ Bs[j, w]))
    out[i, j] = numba.int64(p) - 2 * numba.int64(q)


def _ternary_gemm_py(Anz, As, Bnz, Bs):
    """Two bit planes per operand; 2 × 2 register tile (8 scalar accumulators)."""
    M, Kw = Anz.shape
    N = Bnz.shape[0]
    out = np.empty((M, N), dtype=np.int32)
    Nt = N // 2
    for it in prange((M + 1) // 2):
        i0 = it * 2
        if i0 + 2 <= M:
            for jt in range(Nt):
                j0 = jt * 2
                p00 = p01 = p10 = p11 = numba.uint64(0)
                q00 = q01 = q10 = q11 = numba.uint64(0)
                for w in range(Kw):
                    n0 = Anz[i0, w]
                    s0 = As[i0, w]
                    n1 = Anz[i0 + 1, w]
                    s1 = As[i0 + 1, w]
                    bn0 = Bnz[j0, w]
                    bs0 = Bs[j0, w]
                    bn1 = Bnz[j0 + 1, w]
                    bs1 = Bs[j0 + 1, w]
                    m = n0 & bn0
                    p00 += _ctpop(m)
                    q00 += _ctpop(m & (s0 ^ bs0))
                    m = n0 & bn1
                    p01 += _ctpop(m)
                    q01 += _ctpop(m & (s0 ^ bs1))
                    m = n1 & bn0
                    p10 += _ctpop(m)
                    q10 += _ctpop(m & (s1 ^ bs0))
                    m = n1 & bn1
                    p11 += _ctpop(m)
                    q11 += _ctpop(m & (s1 ^ bs1))
                out[i0, j0] = numba.int64(p00) - 2 * numba.int64(q00)
                out[i0, j0 + 1] = numba.int64(p01) - 2 * numba.int64(q01)
                out[i0 + 1, j0] = numba.int64(p10) - 2 * numba.int64(q10)
                out[i0 + 1, j0 + 1] = numba.int64(p11) - 2 * numba.int64(q11)
            for j in range(Nt * 2, N):
                _tern_one(Anz, As, Bnz, Bs, i0, j, out)
                _tern_one(Anz, As, Bnz, Bs, i0 + 1, j, out)
        else:
            for j in range(N):
                _tern_one(Anz, As, Bnz, Bs, i0, j, out)
    return out


_ternary_gemm_numba = _CompiledOnFirstCall(_ternary_gemm_py, _SIG_TGEMM)


def ternary_gemm(A_planes, B_planes, backend: str | None = None) -> np.ndarray:
    """Ternary GEMM ``A @ B.T`` for matrices with entries in {-1, 0, 1} (Survey §3.2), from two
    bit planes per operand (:func:`pack_ternary`).

    Parameters
    ----------
    A_planes : tuple (nz, sign) of uint64 arrays, shape (M, Kw)
    B_planes : tuple (nz, sign) of uint64 arrays, shape (N, Kw)

    Returns
    -------
    ndarray of int32, shape (M, N), equal to ``A @ B.T`` exactly.
    """
    Anz, As = (_check_packed(P, n) for P, n in zip(A_planes, ("A_nz", "A_sign")))
    Kw = Anz.shape[1]
    As = _check_packed(As, "A_sign", Kw)
    Bnz = _check_packed(B_planes[0], "B_nz", Kw)
    Bs = _check_packed(B_planes[1], "B_sign", Kw)
    from refimpl.kernels import lowbit_gemv

    if 1 <= Anz.shape[0] <= lowbit_gemv.SMALL_BATCH_PACKED:  # a few rows: parallel over B rows
        return lowbit_gemv.ternary_gemv((Anz, As), (Bnz, Bs), backend=backend)
    return dispatch("ternary_gemm", backend, _ternary_gemm_numba, _ternary_gemm_numpy,
                    Anz, As, Bnz, Bs)


# ------------------------------------------------------------------ k-bit × float
def _kbit_matmul_numpy(X, packed, bits, K, codebook):
    codes = _unpack_codes_numpy(packed, bits, K)  # (N, K)
    return X @ codebook[codes].T  # (M, N)


@numba.njit(cache=True)
def _kbit_decode_rows(packed, bits, K, codebook, r0, r1, buf):
    per = 64 // bits
    mask = numba.uint64((1 << bits) - 1)
    for r in range(r0, r1):
        for w in range(packed.shape[1]):
            word = packed[r, w]
            base = w * per
            stop = min(per, K - base)
            for j in range(stop):
                buf[r - r0, base + j] = codebook[(word >> numba.uint64(j * bits)) & mask]


@numba.njit(cache=True)
def _kbit_matmul_numba(X, packed, bits, K, codebook):
    """Decode a block of 256 weight rows into a float buffer, then one BLAS product per block."""
    M = X.shape[0]
    N = packed.shape[0]
    out = np.empty((M, N), dtype=X.dtype)
    tile = 256
    buf = np.empty((tile, K), dtype=X.dtype)
    for r0 in range(0, N, tile):
        r1 = min(N, r0 + tile)
        _kbit_decode_rows(packed, bits, K, codebook, r0, r1, buf)
        out[:, r0:r1] = np.dot(X, buf[: r1 - r0].T)  # (M, r1 − r0)
    return out


def kbit_matmul(X, packed, bits: int, K: int, codebook, backend: str | None = None):
    """``X @ Ŵ.T`` with ``Ŵ[n, k] = codebook[code[n, k]]`` stored as packed k-bit codes.

    Covers the affine uniform quantiser (``codebook = α·j/(2^k − 1) + β``, Eq. 39), k-means
    weight sharing (the centroids) and power-of-two codebooks.

    Parameters
    ----------
    X : ndarray of float32/float64, shape (M, K)
    packed : ndarray of uint64 from :func:`pack_codes`, shape (N, ceil(K / (64 // bits)))
    bits : int in [1, 16]
    K : int
    codebook : ndarray of shape (2^bits,)
        Values of the codes (pad unused codes with anything, e.g. zeros).

    Returns
    -------
    ndarray of X's dtype, shape (M, N)

    Notes
    -----
    float32 ``X`` with at most :data:`refimpl.kernels.lowbit_gemv.SMALL_BATCH` rows and
    ``bits <= 4`` goes to :func:`refimpl.kernels.lowbit_gemv.kbit_gemv` (codes decoded in
    registers, fused with the FMA; recorded as ``"kbit_gemv"``); larger batches, wider codes and
    float64 ``X`` decode blocks of 256 weight rows and call BLAS.
    """
    bits = check_int(bits, "bits", 1, 16)
    X = check_array(X, "X", ndim=2)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    K = check_int(K, "K", 1)
    if X.shape[1] != K:
        raise ValueError(f"X must have K={K} columns, got shape {X.shape}")
    per = 64 // bits
    packed = _check_packed(packed, "packed", (K + per - 1) // per)
    codebook = check_array(codebook, "codebook", ndim=1).astype(X.dtype)
    if codebook.size < 2 ** bits:
        raise ValueError(f"codebook must have 2^bits = {2 ** bits} entries (pad unused codes), "
                         f"got {codebook.size}")
    from refimpl.kernels import lowbit_gemv

    if bits <= 4 and X.dtype == np.float32 and X.shape[0] <= lowbit_gemv.SMALL_BATCH:
        # float32 batch up to 512: the packed-weight kernel, no float copy of the weights
        return lowbit_gemv.kbit_gemv(X, packed, bits, K, codebook, backend=backend)
    return dispatch("kbit_matmul", backend, _kbit_matmul_numba, _kbit_matmul_numpy,
                    np.ascontiguousarray(X), packed, bits, K, codebook)
