"""Table lookup on the activations (T-MAC-style LUT GEMV) for 1- and 2-bit weights: binary,
ternary and 2-bit codebook weights times float32 activations at small batch (Survey §3.1–3.3;
issue #19).

What is computed
----------------
For weights with ``N`` rows and ``K`` columns stored as ``b``-bit codes ``c`` (``b`` = 1 or 2),
a codebook ``cb`` of ``2^b`` values, activations ``X`` (M, K) and an optional scale per row
``s`` (N,):

.. math:: Y[m, n] = s_n \\sum_k \\mathrm{cb}[c_{nk}]\\, X[m, k]

exactly the product of :func:`refimpl.kernels.lowbit_gemv.kbit_gemv` (binary weights: ``b = 1``,
``cb = (−1, +1)``, BinaryConnect / BWN, Survey Eqs. (20)–(24); ternary weights: the 2-bit code
``nz + 2·sign`` with ``cb = (0, +1, 0, −1)``, TWN, Survey Eqs. (27)–(34); 2-bit k-means or
uniform codebooks, Survey Eqs. (49) and (39)).

How: a table of partial sums per group of activations
-----------------------------------------------------
Group the columns in runs of ``g = 4 / b`` (4 binary weights, 2 two-bit weights): the ``g``
codes of one row in group ``G`` form a 4-bit index ``i = Σ_t c_{n, gG+t} · 2^{bt}``, and

.. math:: \\sum_{t<g} \\mathrm{cb}[c_{n,gG+t}]\\, x_{gG+t} = T_G[i], \\qquad
          T_G[i] = \\sum_{t<g} \\mathrm{cb}[(i \\gg bt) \\bmod 2^b]\\, x_{gG+t}

— a 16-entry table per group, computed once per call for every row of ``X`` (K/g · 16 values:
``g`` vector FMAs per group) and shared by all ``N`` weight rows (T-MAC, Wei et al. 2024;
the codebook form works for non-uniform codebooks because a table entry is just the sum of
the code values times the activations). The product is then one table lookup and one add per
``g`` weights, instead of one lookup and one multiply-add per weight. On AVX-512 one
``vpermps`` looks up 16 rows at once in one group's table held in a register, so 16 rows'
indices for the same group must sit in the 16 lanes of one vector: the *LUT layout*.

The LUT layout (:func:`lut_pack`)
---------------------------------
``words`` is a uint32 array of shape ``(ceil(N/16), C, 16)`` with ``C = ceil(K·b/32)``:
``words[t, c, l]`` holds the ``32/b`` codes of row ``16t + l`` for columns ``(32/b)·c … (32/b)·c +
32/b − 1``, code ``j`` of the chunk at bits ``b·j`` — that is, 32-bit half ``c mod 2`` of word
``c // 2`` of :func:`bitpack.pack_codes` (``pack_signs`` for binary), so nibble ``j`` of a lane
is the index of group ``8c + j``. Rows past ``N`` are zero. Bytes: ``64 · ceil(N/16) · C``
(4096 × 4096: 2 MiB binary, 4 MiB 2-bit/ternary — the same as the packed codes, a ternary
matrix's two 1-bit planes included). The repack is done once, offline (like T-MAC's), and is
undone exactly by :func:`lut_unpack`.

The kernel (AVX-512, 16 lanes)
------------------------------
Per pair of row tiles (2 × 16 rows) and chunk: load the two tiles' 16 words, then for nibble
``j`` = 0 … 7 shift them right by ``4j`` (``vpermps`` reads only the low 4 bits of each lane, so
no mask), and for every batch row in the chunk look up both tiles in that row's table of
group ``8c + j`` (one 64-byte load, shared by the two tiles) and add to the accumulators
(4 independent chains per tile for 1 batch row, 2 for 2, 1 for 4 and 8). Lane ``l`` of a
tile's accumulator is output ``16t + l``: no horizontal sums. The columns are blocked so that
the tables of one block of columns and one batch chunk stay within 16 KiB (L1), and all the
tiles of a task run through that block before the next. The tasks run on the thread team of
:mod:`refimpl.kernels._team` (the calling thread and helpers claim them from one counter):
256-row tasks for batches up to 8, and for larger batches one block of rows per thread (at
least 256 rows), since every task reads the tables of all batch rows once (with 256-row tasks,
batch 64 at 2 bits read 16 × 8 MiB of tables and ran 1.7× slower than the decode kernel). Per 16 rows × 4 binary (2 two-bit) weights: one shift, one ``vpermps``, one
add, against one shift, one ``vpermps`` and one FMA per 16 weights in
:func:`lowbit_gemv.kbit_gemv`'s decode kernel: 4× (2×) fewer vector operations.

AVX2 (8 lanes): a tile is processed as two 8-lane halves; ``vpermps`` looks up an 8-entry
table, so a 4-bit index takes two permutes (low and high halves of the table) and a
``vblendvps`` on bit 3. Other CPUs, ``NUMBA_DISABLE_JIT=1`` and float64 activations run plain
Numba loops over the same layout and tables. :func:`lowbit_gemv.fast_path_isa` (and
``$REFIMPL_LOWBIT_ISA``) chooses, as for the decode kernel.

Exactness: the sums run in a different order from the NumPy reference (table entries, then
per-lane chains), so the results agree bit for bit when every partial sum is exact (small
integers, dyadic values) and otherwise lie within the float32 rounding bound
``γ_K Σ_k |cb[c_{nk}]| |X[m, k]|`` (plus the scale's rounding), as the tests check.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from refimpl.kernels import _backend, bitpack
from refimpl.kernels._backend import dispatch, env, resolve_backend
from refimpl.kernels._team import (_TEAM, FIELD0, address, claim, finish, helpers_wanted,
                                    publish, ready, register, solo, team,
                                    wait_holding, wake)
from refimpl.kernels.lowbit_gemv import (_F32, _NO_SCALE, _check_words, _decode_numpy, _fn,
                                         _front_install, _i64, _prepare_scale, _prepare_x,
                                         _splat32, _vt, fast_path_isa)
from refimpl.utils import check_array, check_int

__all__ = ["LutWeights", "lut_pack", "lut_pack_binary", "lut_pack_ternary", "lut_unpack",
           "lut_gemv", "BINARY_CODEBOOK", "TERNARY_CODEBOOK"]

#: Codebook of binary weights stored as 1-bit codes (:func:`bitpack.pack_signs`: bit 1 ⇔ +1).
BINARY_CODEBOOK = np.array([-1.0, 1.0])
#: Codebook of ternary weights stored as the 2-bit code ``nz + 2·sign``.
TERNARY_CODEBOOK = np.array([0.0, 1.0, 0.0, -1.0])

_TILE = 16          # rows per tile (lanes of the layout)
_MIN_TASK_TILES = 16  # at least 256 rows per task
_SMALL_M = 8  # batches up to this many rows: tasks of _MIN_TASK_TILES tiles
_L1_TABLE_BYTES = 16384  # tables of one column block and one batch chunk
_BCS = {16: (8, 4, 2, 1), 8: (4, 2, 1)}
#: Products with fewer table lookups (``M · ceil(N/16) · 8C``, one per 16 rows and group; ~2
#: cycles each) than this run on one thread: 2^17 ≈ 0.1 ms of one core. Larger ones run on the
#: thread team (:mod:`refimpl.kernels._team`: the caller starts at once, a helper pinned to
#: another CPU joins when woken), so at 4096 × 4096 batch 1 (binary 2^18, 2-bit and ternary
#: 2^19 lookups) is threaded. Measured 2026-12-07 06:30 UTC (2 cores, load ~0.5, public calls
#: after 0.3 s idle interleaved with float32 BLAS, 21 rounds, median / best ms): binary serial
#: 0.455 / 0.421, team 0.473 / 0.406; ternary 0.642 / 0.613 vs 0.605 / 0.508; 2-bit 0.638 /
#: 0.600 vs 0.607 / 0.519. (Under ``prange`` the threaded driver had lost at batch 1: binary
#: public calls 0.53 / 0.45 serial vs 0.71 / 0.64 — waking Numba's workqueue threads after a
#: pause cost more than the halved work saved.)
_SERIAL_LOOKUPS = 1 << 17


class LutWeights(NamedTuple):
    """Weights in the LUT layout (module docstring): ``words`` uint32 of shape
    ``(ceil(N/16), ceil(K·bits/32), 16)``, ``bits`` (1 or 2), the matrix shape ``N`` × ``K``,
    the ``codebook`` (float64, ``2^bits`` values) and ``kind`` ("binary", "ternary" or
    "codes")."""

    words: np.ndarray
    bits: int
    N: int
    K: int
    codebook: np.ndarray
    kind: str

    @property
    def nbytes(self) -> int:
        """Bytes of the stored layout (the words; the codebook's few bytes not counted)."""
        return int(self.words.nbytes)


def _chunks(K, bits):
    return -(-K * bits // 32)


def lut_pack(packed, bits: int, K: int, codebook) -> LutWeights:
    """Repack :func:`bitpack.pack_codes` output (1- or 2-bit codes) into the LUT layout.

    Parameters
    ----------
    packed : ndarray of uint64, shape (N, ceil(K / (64 // bits)))
    bits : int in {1, 2}
    K : int
    codebook : array of shape (≥ 2^bits,), finite (entries past 2^bits ignored)

    Returns
    -------
    LutWeights
    """
    bits = check_int(bits, "bits", 1, 2)
    K = check_int(K, "K", 1)
    P = _check_words(packed, "packed", -(-K // (64 // bits)))
    cb = check_array(codebook, "codebook", ndim=1)
    if cb.size < 2 ** bits:
        raise ValueError(f"codebook must have 2^bits = {2 ** bits} entries, got {cb.size}")
    cb = np.array(cb[: 2 ** bits], dtype=np.float64)
    return LutWeights(_to_layout(P, bits, K), bits, P.shape[0], K, cb, "codes")


def lut_pack_binary(Wp, K: int) -> LutWeights:
    """:func:`bitpack.pack_signs` weights (N, ceil(K/64)) in the LUT layout (1-bit codes,
    codebook (−1, +1))."""
    lw = lut_pack(Wp, 1, K, BINARY_CODEBOOK)
    return lw._replace(kind="binary")


def lut_pack_ternary(planes, K: int) -> LutWeights:
    """:func:`bitpack.pack_ternary` planes ``(nz, sign)`` in the LUT layout: the 2-bit code
    ``nz + 2·sign`` per weight, codebook (0, +1, 0, −1)."""
    K = check_int(K, "K", 1)
    if not isinstance(planes, (tuple, list)) or len(planes) != 2:
        raise TypeError("planes must be the (nz, sign) pair from pack_ternary")
    nz = _check_words(planes[0], "planes[0] (nz)", -(-K // 64))
    sg = _check_words(planes[1], "planes[1] (sign)", -(-K // 64), nz.shape[0])
    codes = _decode_numpy(0, nz, sg, K)  # (N, K): nz + 2 sign
    # the NumPy packer directly: an offline repack, not a kernel call through dispatch
    lw = lut_pack(bitpack._pack_codes_numpy(codes, 2), 2, K, TERNARY_CODEBOOK)
    return lw._replace(kind="ternary")


def _to_layout(P, bits, K):
    N, Kw = P.shape
    C = _chunks(K, bits)
    halves = np.empty((N, 2 * Kw), dtype=np.uint32)
    halves[:, 0::2] = (P & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    halves[:, 1::2] = (P >> np.uint64(32)).astype(np.uint32)
    nt = -(-N // _TILE)
    words = np.zeros((nt * _TILE, C), dtype=np.uint32)
    words[:N] = halves[:, :C]
    return np.ascontiguousarray(words.reshape(nt, _TILE, C).transpose(0, 2, 1))


def lut_unpack(lw: LutWeights) -> np.ndarray:
    """The :func:`bitpack.pack_codes` words (N, ceil(K / (64 // bits))) uint64 of a
    :class:`LutWeights` — the exact inverse of :func:`lut_pack`."""
    w = _check_lut(lw)
    N, K, bits = lw.N, lw.K, lw.bits
    Kw = -(-K // (64 // bits))
    halves = np.zeros((N, 2 * Kw), dtype=np.uint64)
    C = w.shape[1]
    halves[:, :C] = w.transpose(0, 2, 1).reshape(-1, C)[:N]
    return halves[:, 0::2] | (halves[:, 1::2] << np.uint64(32))


def _check_lut(lw):
    if not isinstance(lw, LutWeights):
        raise TypeError(f"lw must be a LutWeights (from lut_pack*), got {type(lw).__name__}")
    w = np.asarray(lw.words)
    if lw.bits not in (1, 2):
        raise ValueError(f"lw.bits must be 1 or 2, got {lw.bits}")
    want = (-(-lw.N // _TILE), _chunks(lw.K, lw.bits), _TILE)
    if w.dtype != np.uint32 or w.shape != want:
        raise ValueError(f"lw.words must be uint32 of shape {want}, got {w.dtype} {w.shape}")
    return np.ascontiguousarray(w)


# ------------------------------------------------------------------ tables
@numba.njit(cache=True)
def _lut_tables(X, bits, C, cb):
    """``T[m, G, i] = Σ_{t<g} cb[(i >> bits·t) mod 2^bits] · X[m, gG + t]`` (0 past K), shape
    (M, 8C, 16), X's dtype (float32 or float64)."""
    M, K = X.shape
    g = 4 // bits
    mask = (1 << bits) - 1
    cv = np.empty((g, 16), dtype=X.dtype)
    for t in range(g):
        for i in range(16):
            cv[t, i] = cb[(i >> (bits * t)) & mask]
    G = 8 * C
    Xp = np.zeros((M, g * G), dtype=X.dtype)  # zero past K
    Xp[:, :K] = X
    if M <= 8:
        # one small GEMM (M·G, g) @ (g, 16): 6–45 µs at K = 4096 (M = 1–8), where loops took
        # 12–30 µs per row
        return np.dot(Xp.reshape(M * G, g), cv).reshape(M, G, 16)
    # one GEMM per batch row: the single GEMM took 10–16 ms at M = 64, these 0.75–1.6 ms
    T = np.empty((M, G, 16), dtype=X.dtype)
    for m in range(M):
        T[m] = np.dot(Xp[m].reshape(G, g), cv)
    return T


# ------------------------------------------------------------------ portable loops
@numba.njit(cache=True, parallel=True)
def _lut_generic(X, words, cb, bits, scale, N):
    M = X.shape[0]
    nt, C, _ = words.shape
    T = _lut_tables(X, bits, C, cb)
    out = np.zeros((M, nt * 16), dtype=X.dtype)
    for t in prange(nt):
        for m in range(M):
            for c in range(C):
                for lane in range(16):
                    w = words[t, c, lane]
                    s = out[m, 16 * t + lane]
                    for j in range(8):
                        s += T[m, 8 * c + j, (w >> numba.uint32(4 * j)) & numba.uint32(15)]
                    out[m, 16 * t + lane] = s
    res = np.empty((M, N), dtype=X.dtype)
    for m in range(M):
        for n in range(N):
            res[m, n] = out[m, n] * scale[n]
    return res


# ------------------------------------------------------------------ vector kernel
def _make_lut_rows(L):
    """The LUT product over one tile pair (L = 16: tiles ``t0``, ``t1``; L = 8: the two
    8-lane halves of tile ``t0``), chunks ``c0 <= c < c1`` and batch rows ``b0 .. b0 + bc −
    1``, added into ``out``."""

    def rows_intrinsic(typingctx, T, W, out, t0, t1, c0, c1, b0, bc):
        sig = types.void(T, W, out, types.int64, types.int64, types.int64, types.int64,
                         types.int64, types.int64)

        def codegen(context, builder, signature, args):
            ta = context.make_array(signature.args[0])(context, builder, args[0])
            wa = context.make_array(signature.args[1])(context, builder, args[1])
            oa = context.make_array(signature.args[2])(context, builder, args[2])
            t0, t1, c0, c1, b0, bc = args[3:]
            F, I, _ = _vt(L)
            G = cgutils.unpack_tuple(builder, ta.shape, 3)[1]
            C = cgutils.unpack_tuple(builder, wa.shape, 3)[1]
            Np = cgutils.unpack_tuple(builder, oa.shape, 2)[1]
            tbase = builder.bitcast(ta.data, ir.FloatType().as_pointer())
            wbase = builder.bitcast(wa.data, ir.IntType(32).as_pointer())
            obase = builder.bitcast(oa.data, ir.FloatType().as_pointer())
            if L == 16:
                wrow = [builder.mul(builder.mul(t, C), _i64(16)) for t in (t0, t1)]
                orow = [builder.mul(t, _i64(16)) for t in (t0, t1)]
            else:
                w0 = builder.mul(builder.mul(t0, C), _i64(16))
                wrow = [w0, builder.add(w0, _i64(8))]
                o0 = builder.mul(t0, _i64(16))
                orow = [o0, builder.add(o0, _i64(8))]
            nslots = max(b * max(1, 4 // b) for b in _BCS[L])
            accs = [[cgutils.alloca_once(builder, F) for _ in range(nslots)] for _ in range(2)]
            fzero = ir.Constant(F, [ir.Constant(ir.FloatType(), 0.0)] * L)
            if L == 16:
                perm = _fn(builder, "llvm.x86.avx512.permvar.sf.512", F, [F, I])
            else:
                perm = _fn(builder, "llvm.x86.avx2.permps", F, [F, I])
                blend = _fn(builder, "llvm.x86.avx.blendv.ps.256", F, [F, F, F])
            done = builder.append_basic_block("lut.done")
            sw = builder.switch(bc, done)
            for BC in _BCS[L]:
                bb = builder.append_basic_block(f"lut.b{BC}")
                sw.add_case(_i64(BC), bb)
                builder.position_at_end(bb)
                nacc = max(1, 4 // BC)
                for r in range(2):
                    for a in range(BC * nacc):
                        builder.store(fzero, accs[r][a])
                with cgutils.for_range(builder, builder.sub(c1, c0)) as loop:
                    c = builder.add(c0, loop.index)
                    wv = []
                    for r in range(2):
                        p = builder.gep(wbase, [builder.add(wrow[r], builder.mul(c, _i64(16)))])
                        wv.append(builder.load(builder.bitcast(p, I.as_pointer()), align=4))
                    acc = [[builder.load(accs[r][a]) for a in range(BC * nacc)]
                           for r in range(2)]
                    for j in range(8):
                        idx = [builder.lshr(v, _splat32(4 * j, L)) if j else v for v in wv]
                        grp = builder.add(builder.mul(c, _i64(8)), _i64(j))
                        for b in range(BC):
                            row = builder.add(builder.mul(builder.add(b0, _i64(b)), G), grp)
                            tp = builder.gep(tbase, [builder.mul(row, _i64(16))])
                            if L == 16:
                                tv = builder.load(builder.bitcast(tp, F.as_pointer()), align=4)
                            else:
                                tlo = builder.load(builder.bitcast(tp, F.as_pointer()), align=4)
                                thi = builder.load(builder.bitcast(
                                    builder.gep(tp, [_i64(8)]), F.as_pointer()), align=4)
                            for r in range(2):
                                if L == 16:
                                    v = builder.call(perm, [tv, idx[r]])
                                else:
                                    lo = builder.call(perm, [tlo, idx[r]])
                                    hi = builder.call(perm, [thi, idx[r]])
                                    sel = builder.bitcast(builder.shl(idx[r], _splat32(28, L)),
                                                          F)
                                    v = builder.call(blend, [lo, hi, sel])
                                a = b * nacc + j % nacc
                                acc[r][a] = builder.fadd(acc[r][a], v)
                    for r in range(2):
                        for a in range(BC * nacc):
                            builder.store(acc[r][a], accs[r][a])
                # all loads of out before the stores: a tile paired with itself (t1 == t0)
                # then stores the same sum twice instead of adding it twice
                news, ptrs = [], []
                for r in range(2):
                    for b in range(BC):
                        parts = [builder.load(accs[r][b * nacc + a]) for a in range(nacc)]
                        while len(parts) > 1:
                            parts = [builder.fadd(parts[i], parts[i + 1])
                                     for i in range(0, len(parts), 2)]
                        o = builder.add(builder.mul(builder.add(b0, _i64(b)), Np), orow[r])
                        op = builder.bitcast(builder.gep(obase, [o]), F.as_pointer())
                        news.append(builder.fadd(builder.load(op, align=4), parts[0]))
                        ptrs.append(op)
                for v, op in zip(news, ptrs):
                    builder.store(v, op, align=4)
                builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    rows_intrinsic.__doc__ = (
        f"LUT product, {L} lanes: ``out[b, rows] += Σ_c Σ_j T[b, 8c + j, nibble_j(W[t, c])]`` "
        f"for a tile pair, chunks ``c0 <= c < c1``, batch rows ``b0 .. b0 + bc − 1`` (``bc`` "
        f"in {_BCS[L]}). T: (M, 8C, 16) float32; W: (nt, C, 16) uint32; out: (M, 16 nt) "
        "float32.")
    return intrinsic(rows_intrinsic)


_lut_rows16 = _make_lut_rows(16)
_lut_rows8 = _make_lut_rows(8)


@numba.njit(cache=True)
def _tiles_per_task(N, M):
    """Tiles (16 rows) per task of the thread team. Batches of up to ``_SMALL_M`` rows:
    ``_MIN_TASK_TILES`` (at N = 4096, 16 tasks the caller and a helper woken late share by
    claiming them); larger batches: one task per thread (rounded to tile pairs), at least
    ``_MIN_TASK_TILES`` — every task reads the tables of all batch rows once, so fewer,
    larger tasks read them fewer times (at batch 64, 2-bit, K = 4096: 8 MiB of tables per
    task). Compiled (Numba's thread count: helpers + 1), for the checked path and the
    compiled fronts alike."""
    if M <= _SMALL_M:
        return _MIN_TASK_TILES
    nt = (N + _TILE - 1) // _TILE
    th = max(1, helpers_wanted() + 1)
    per = (nt + th - 1) // th
    return max(_MIN_TASK_TILES, per + per % 2)


def _task_doc(L):
    return (f"Tiles ``tpt · task …`` ({L}-lane kernel): batch chunks, then column blocks whose "
            "tables (one batch chunk) fit in 16 KiB, then tile pairs.")


# Batch chunks outermost in a task: a batch larger than one chunk is a sequence of chunk-sized
# passes whose output rows and tables stay in L1/L2 (column blocks outermost made batch 64,
# 2-bit, 2.5× slower than the decode kernel: all 1 MiB of outputs were re-read per 4-chunk
# column block). The 16- and 8-lane tasks and drivers are separate functions so that an AVX2
# build never contains an AVX-512 instruction (LLVM cannot select one for Haswell).
@numba.njit(cache=True, inline="always")
def _lut_task16(T, words, out, task, tpt):
    M = T.shape[0]
    nt, C, _ = words.shape
    ta = task * tpt
    tb = min(nt, ta + tpt)
    b = 0
    while b < M:
        left = M - b
        bc = 8 if left >= 8 else (4 if left >= 4 else (2 if left >= 2 else 1))
        kb = max(1, _L1_TABLE_BYTES // (512 * bc))
        for c0 in range(0, C, kb):
            c1 = min(C, c0 + kb)
            for t in range(ta, tb, 2):
                t1 = t + 1 if t + 1 < tb else t
                _lut_rows16(T, words, out, t, t1, c0, c1, b, bc)
        b += bc


@numba.njit(cache=True, inline="always")
def _lut_task8(T, words, out, task, tpt):
    M = T.shape[0]
    nt, C, _ = words.shape
    ta = task * tpt
    tb = min(nt, ta + tpt)
    b = 0
    while b < M:
        left = M - b
        bc = 4 if left >= 4 else (2 if left >= 2 else 1)
        kb = max(1, _L1_TABLE_BYTES // (512 * bc))
        for c0 in range(0, C, kb):
            c1 = min(C, c0 + kb)
            for t in range(ta, tb):
                _lut_rows8(T, words, out, t, t, c0, c1, b, bc)
        b += bc


_lut_task16.__doc__ = _task_doc(16)
_lut_task8.__doc__ = _task_doc(8)


@numba.njit(cache=True, inline="always")
def _first_bad(X, scale, cb):
    """0 when ``X``, ``scale`` and ``cb`` are finite, else 1 / 2 / 3 for the first that is
    not (the argument checks of the fast call path, in compiled code: after a pause each
    NumPy check costs 35–120 µs on the development machine, this loop a few)."""
    for m in range(X.shape[0]):
        for k in range(X.shape[1]):
            if not np.isfinite(X[m, k]):
                return 1
    for n in range(scale.shape[0]):
        if not np.isfinite(scale[n]):
            return 2
    for i in range(cb.shape[0]):
        if not np.isfinite(cb[i]):
            return 3
    return 0


_BAD = {1: "X contains NaN or inf", 2: "scale contains NaN or inf",
        3: "lw.codebook contains NaN or inf"}


@numba.njit(cache=True)
def _lut_prepare(X, words, cb, bits, scale):
    """One compiled step before the products: ``(T, out, bad)`` — the tables
    (:func:`_lut_tables`), the zeroed (M, 16·tiles) float32 output and the finiteness flag of
    :func:`_first_bad` (non-zero: nothing else is valid)."""
    bad = _first_bad(X, scale, cb)
    if bad:
        return np.empty((0, 0, 16), dtype=np.float32), np.empty((0, 0), dtype=np.float32), bad
    T = _lut_tables(X, bits, words.shape[1], cb.astype(np.float32))
    out = np.zeros((X.shape[0], words.shape[0] * 16), dtype=np.float32)
    return T, out, 0


@numba.njit(cache=True, inline="always")
def _scale_tiles(out, scale, ta, tb):
    """``out[m, n] *= scale[n]`` for the rows of tiles ``ta … tb − 1`` below N."""
    r1 = min(scale.shape[0], 16 * tb)
    for m in range(out.shape[0]):
        for n in range(16 * ta, r1):
            out[m, n] *= scale[n]


@numba.njit(cache=True, nogil=True)
def _lut_tasks16(T, words, out, scale, tpt, board, epoch, member):
    """A member of the thread team (:mod:`refimpl.kernels._team`): claims tasks of ``tpt``
    tiles (16 lanes) of call ``epoch``, computes and scales their rows."""
    while True:
        t = claim(board, epoch)
        if t < 0:
            return
        _lut_task16(T, words, out, t, tpt)
        _scale_tiles(out, scale, t * tpt, min(words.shape[0], (t + 1) * tpt))
        finish(board, member)


@numba.njit(cache=True, nogil=True)
def _lut_tasks8(T, words, out, scale, tpt, board, epoch, member):
    """:func:`_lut_tasks16` on the 8-lane kernel."""
    while True:
        t = claim(board, epoch)
        if t < 0:
            return
        _lut_task8(T, words, out, t, tpt)
        _scale_tiles(out, scale, t * tpt, min(words.shape[0], (t + 1) * tpt))
        finish(board, member)


@numba.njit(cache=True, inline="always")
def _put_job(board, T, words, out, scale, tpt):
    """The job fields of a call: sizes, then the arrays' addresses (alive until the call has
    returned, after every task finished)."""
    f = FIELD0
    board[f] = T.shape[0]
    board[f + 1] = T.shape[1]
    board[f + 2] = words.shape[0]
    board[f + 3] = words.shape[1]
    board[f + 4] = scale.shape[0]
    board[f + 5] = tpt
    board[f + 6] = T.ctypes.data
    board[f + 7] = words.ctypes.data
    board[f + 8] = out.ctypes.data
    board[f + 9] = scale.ctypes.data


@numba.njit(cache=True, inline="always")
def _get_job(board):
    """The arrays of :func:`_put_job` as views, for a helper."""
    f = FIELD0
    M, G, nt, C, N = board[f], board[f + 1], board[f + 2], board[f + 3], board[f + 4]
    T = numba.carray(address(board[f + 6]), (M, G, 16), np.float32)
    words = numba.carray(address(board[f + 7]), (nt, C, 16), np.uint32)
    out = numba.carray(address(board[f + 8]), (M, 16 * nt), np.float32)
    scale = numba.carray(address(board[f + 9]), (N,), np.float32)
    return T, words, out, scale, board[f + 5]


# The threaded drivers: single compiled calls (``nogil``) on the thread team — wake the
# helpers, prepare (:func:`_lut_prepare`), publish, work from the start, wait (see
# :mod:`refimpl.kernels._team` and ``lowbit_gemv._lowbit_team512``).
@numba.njit(cache=True, nogil=True)
def _open_call(X, words, cb, bits, scale, tpt, board, sems, cpus, job):
    """The part of a threaded call before the products, the same for both lane widths: wake
    the helpers (at most the tasks − 1), build the tables, write the job fields and publish the
    call — or cancel it (0 tasks) when a value is bad. Returns ``(T, out, bad, tasks,
    epoch)``."""
    ntask = (words.shape[0] + tpt - 1) // tpt
    wake(board, sems, cpus, min(helpers_wanted(), ntask - 1))
    T, out, bad = _lut_prepare(X, words, cb, bits, scale)
    if bad:
        return T, out, bad, ntask, publish(board, 0, 0)
    _put_job(board, T, words, out, scale, tpt)
    return T, out, bad, ntask, publish(board, ntask, job)


@numba.njit(cache=True, nogil=True)
def _lut_team16(X, words, cb, bits, scale, tpt, board, sems, cpus, job):
    """16 lanes: the calling thread and the team's helpers claim tasks of ``tpt`` tiles."""
    T, out, bad, ntask, e = _open_call(X, words, cb, bits, scale, tpt, board, sems, cpus, job)
    if bad == 0:
        _lut_tasks16(T, words, out, scale, tpt, board, e, 0)
        wait_holding(board, ntask, (T,))
    return out, bad


@numba.njit(cache=True, nogil=True)
def _lut_serve16(board, epoch, member):
    """A helper's share of a :func:`_lut_team16` call."""
    T, words, out, scale, tpt = _get_job(board)
    _lut_tasks16(T, words, out, scale, tpt, board, epoch, member)


@numba.njit(cache=True, nogil=True)
def _lut_team8(X, words, cb, bits, scale, tpt, board, sems, cpus, job):
    """:func:`_lut_team16` on the 8-lane kernel."""
    T, out, bad, ntask, e = _open_call(X, words, cb, bits, scale, tpt, board, sems, cpus, job)
    if bad == 0:
        _lut_tasks8(T, words, out, scale, tpt, board, e, 0)
        wait_holding(board, ntask, (T,))
    return out, bad


@numba.njit(cache=True, nogil=True)
def _lut_serve8(board, epoch, member):
    """A helper's share of a :func:`_lut_team8` call."""
    T, words, out, scale, tpt = _get_job(board)
    _lut_tasks8(T, words, out, scale, tpt, board, epoch, member)


_JOB16 = register(_lut_serve16)
_JOB8 = register(_lut_serve8)


@numba.njit(cache=True)
def _rows(out, N):
    """The first N columns of the kernel's output, C-contiguous (compiled: the checked path and
    the compiled fronts share it)."""
    return out if out.shape[1] == N else np.ascontiguousarray(out[:, :N])


def _lut_avx512(X, words, cb, bits, scale, N, tpt):
    """16 lanes: the calling thread and the team's helpers claim tasks of ``tpt`` tiles."""
    tm = _TEAM[0] or team()
    if not _lut_serve16.signatures:
        ready(_JOB16)
    out, bad = _lut_team16(X, words, cb, bits, scale, tpt, tm.board, tm.sems, tm.cpus, _JOB16)
    return (out, bad) if bad else (_rows(out, N), 0)


@numba.njit(cache=True)
def _lut_serial16(X, words, cb, bits, scale, tpt):
    T, out, bad = _lut_prepare(X, words, cb, bits, scale)
    if bad == 0:
        board, e = solo((words.shape[0] + tpt - 1) // tpt)
        _lut_tasks16(T, words, out, scale, tpt, board, e, 0)
    return out, bad


def _lut_avx512_serial(X, words, cb, bits, scale, N, tpt):
    """16 lanes, one thread."""
    out, bad = _lut_serial16(X, words, cb, bits, scale, tpt)
    return (out, bad) if bad else (_rows(out, N), 0)


def _lut_avx2(X, words, cb, bits, scale, N, tpt):
    """8 lanes: the calling thread and the team's helpers claim tasks of ``tpt`` tiles."""
    tm = _TEAM[0] or team()
    if not _lut_serve8.signatures:
        ready(_JOB8)
    out, bad = _lut_team8(X, words, cb, bits, scale, tpt, tm.board, tm.sems, tm.cpus, _JOB8)
    return (out, bad) if bad else (_rows(out, N), 0)


@numba.njit(cache=True)
def _lut_serial8(X, words, cb, bits, scale, tpt):
    T, out, bad = _lut_prepare(X, words, cb, bits, scale)
    if bad == 0:
        board, e = solo((words.shape[0] + tpt - 1) // tpt)
        _lut_tasks8(T, words, out, scale, tpt, board, e, 0)
    return out, bad


def _lut_avx2_serial(X, words, cb, bits, scale, N, tpt):
    """8 lanes, one thread."""
    out, bad = _lut_serial8(X, words, cb, bits, scale, tpt)
    return (out, bad) if bad else (_rows(out, N), 0)


def _lut_numba(X, words, cb, bits, scale, N, K, checked=True):
    """The vector kernel of :func:`fast_path_isa` for float32 ``X`` (which also checks that
    ``X``, ``scale`` and ``cb`` are finite, in compiled code), else the portable loops
    (``checked=False``: the finiteness checks first, in NumPy)."""
    isa = fast_path_isa() if X.dtype == np.float32 else None
    if isa is None:
        if not checked:
            check_array(X, "X")
            check_array(scale, "scale")
            check_array(cb, "lw.codebook")
        return _lut_generic(X, words, cb.astype(X.dtype), bits, scale, N)
    small = X.shape[0] * words.shape[0] * 8 * words.shape[1] < _SERIAL_LOOKUPS
    if isa == "avx512":
        kern = _lut_avx512_serial if small else _lut_avx512
    else:
        kern = _lut_avx2_serial if small else _lut_avx2
    Y, bad = kern(X, words, cb, bits, scale, N,
                  words.shape[0] if small else _tiles_per_task(N, X.shape[0]))
    if bad:
        raise ValueError(_BAD[bad])
    return Y


# ------------------------------------------------------------------ the compiled front
# As :mod:`refimpl.kernels.lowbit_gemv`'s front (issue #19, cold single calls): after a few
# type tests, one compiled call checks the shapes of the layout and the arguments, picks the
# serial or the team driver and returns the (M, N) rows; its dispatcher compiles only the
# signatures the checked path (:func:`_fast_args`) has served, other arguments raise its
# ``TypeError`` and take that path.
@numba.njit(cache=True, inline="always")
def _front_shapes_ok(X, words, cb, bits, scale, N, K):
    """The shape conditions of :func:`_check_lut` and :func:`_fast_args`."""
    return ((bits == 1 or bits == 2) and K >= 1 and N >= 1 and X.shape[0] >= 1 and
            X.shape[1] == K and words.shape[0] == (N + _TILE - 1) // _TILE and
            words.shape[1] == (K * bits + 31) // 32 and words.shape[2] == _TILE and
            cb.shape[0] == (1 << bits) and (scale.shape[0] == N or scale.shape[0] == 0))


@numba.njit(cache=True, nogil=True)
def _lut_front16(X, words, cb, bits, scale, N, K, board, sems, cpus, job):
    """``(Y, bad)`` of :func:`_lut_numba`'s 16-lane choice for arguments of the fast path's
    types; ``bad = −1`` when a shape does not fit; an empty ``scale`` stands for ones."""
    if not _front_shapes_ok(X, words, cb, bits, scale, N, K):
        return np.empty((0, 0), dtype=np.float32), -1
    if scale.shape[0] == 0:
        scale = np.ones(N, dtype=np.float32)
    if X.shape[0] * words.shape[0] * 8 * words.shape[1] < _SERIAL_LOOKUPS:
        out, bad = _lut_serial16(X, words, cb, bits, scale, words.shape[0])
    else:
        out, bad = _lut_team16(X, words, cb, bits, scale, _tiles_per_task(N, X.shape[0]),
                               board, sems, cpus, job)
    return (out, bad) if bad else (_rows(out, N), bad)


@numba.njit(cache=True, nogil=True)
def _lut_front8(X, words, cb, bits, scale, N, K, board, sems, cpus, job):
    """:func:`_lut_front16` on the 8-lane kernel."""
    if not _front_shapes_ok(X, words, cb, bits, scale, N, K):
        return np.empty((0, 0), dtype=np.float32), -1
    if scale.shape[0] == 0:
        scale = np.ones(N, dtype=np.float32)
    if X.shape[0] * words.shape[0] * 8 * words.shape[1] < _SERIAL_LOOKUPS:
        out, bad = _lut_serial8(X, words, cb, bits, scale, words.shape[0])
    else:
        out, bad = _lut_team8(X, words, cb, bits, scale, _tiles_per_task(N, X.shape[0]),
                              board, sems, cpus, job)
    return (out, bad) if bad else (_rows(out, N), bad)


#: ISA -> (team, compiled front, (board, sems, cpus, job)), as lowbit_gemv's ``_FRONT``.
_FRONT: dict = {}
#: Switch for tests that spy on the Python-level drivers.
_FRONT_ON = True


def _front(X, lw, scale, backend):
    """The product through the compiled front, or None (then the checked path decides); the
    same lines as :func:`refimpl.kernels.lowbit_gemv._front` (inline there and here: see its
    docstring)."""
    if backend is not None and backend != "numba":
        return None
    if type(lw) is not LutWeights or type(X) is not np.ndarray or X.dtype is not _F32 or \
            X.ndim != 2:
        return None
    words, bits, N, K, cb, _ = lw
    if type(words) is not np.ndarray or type(cb) is not np.ndarray or type(bits) is not int \
            or type(N) is not int or type(K) is not int:
        return None
    if scale is None:
        scale = _NO_SCALE
    elif type(scale) is not np.ndarray:
        return None
    b = env("REFIMPL_BACKEND") if backend is None else None
    if (b is not None and b.strip().lower() not in ("", "numba")) or _backend._recorders or \
            not _FRONT_ON:
        return None
    f = _FRONT.get(fast_path_isa())
    if f is None or f[0] is not _TEAM[0]:
        return None
    try:
        with _backend._numba_lock:
            Y, bad = f[1](X, words, cb, bits, scale, N, K, *f[2])
    except TypeError:  # a signature not compiled: the dispatcher's "no matching definition"
        return None
    if bad < 0:
        return None
    if bad:
        raise ValueError(_BAD[bad])
    return Y


def _front_add(isa, X, words, cb, bits, scale, N, K):
    """Compile the front of ``isa`` for these (checked) arguments' types."""
    tm = _TEAM[0] or team()
    if isa == "avx512" and not _lut_serve16.signatures:
        ready(_JOB16)
    elif isa == "avx2" and not _lut_serve8.signatures:
        ready(_JOB8)
    _front_install(_FRONT, isa, _lut_front16 if isa == "avx512" else _lut_front8,
                   (X, words, cb, bits, _NO_SCALE if scale is None else scale, N, K), tm,
                   (tm.board, tm.sems, tm.cpus, _JOB16 if isa == "avx512" else _JOB8))


def _lut_numpy(X, words, cb, bits, scale, N, K, checked=True):
    """Reference: unpack the layout to codes, decode to a float matrix, one BLAS product."""
    lw = LutWeights(words, bits, N, K, cb, "codes")
    codes = _decode_numpy(bits, lut_unpack(lw), None, K)  # (N, K)
    W = cb.astype(X.dtype)[codes]
    return (X @ W.T) * scale[None, :]


def _fast_args(X, lw, scale, backend):
    """``(X as (M, K), one, scale as (N,))`` when the call can skip the NumPy argument checks
    (Numba backend; ``X`` a non-empty float32 C-contiguous 1-d or 2-d array with ``K``
    columns; ``scale`` None or float32 C-contiguous of shape (N,); the codebook a float64
    array of 2^bits values); else None (the full checks)."""
    if resolve_backend(backend) != "numba" or type(X) is not np.ndarray:
        return None
    if X.dtype != np.float32 or X.ndim not in (1, 2) or not X.flags.c_contiguous or \
            X.shape[-1] != lw.K or X.size == 0:
        return None
    cb = lw.codebook
    if type(cb) is not np.ndarray or cb.dtype != np.float64 or cb.shape != (2 ** lw.bits,):
        return None
    if scale is None:
        s = np.ones(lw.N, dtype=np.float32)
    elif type(scale) is np.ndarray and scale.dtype == np.float32 and \
            scale.shape == (lw.N,) and scale.flags.c_contiguous:
        s = scale
    else:
        return None
    return (X.reshape(1, -1) if X.ndim == 1 else X), X.ndim == 1, s


def lut_gemv(X, lw: LutWeights, scale=None, backend: str | None = None) -> np.ndarray:
    """T-MAC-style table-lookup product ``X @ Ŵ.T`` with 1- or 2-bit weights in the LUT layout,
    ``Ŵ[n, k] = s_n · codebook[code[n, k]]``: binary, ternary or 2-bit codebook weights.

    Parameters
    ----------
    X : ndarray of shape (M, K) or (K,)
        float32 (vector kernel) or float64 activations; integers are taken as float64.
    lw : LutWeights
        From :func:`lut_pack`, :func:`lut_pack_binary` or :func:`lut_pack_ternary` (N × K).
    scale : float or ndarray of shape (N,), optional
        One scale per weight row (α of BWN / TWN), applied after the sum; default 1.
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of shape (M, N) (or (N,) for 1-d ``X``), ``X``'s dtype (float64 for integers)

    Notes
    -----
    .. math:: Y_{mn} = s_n \\sum_{G} T^{(m)}_G\\big[i_{nG}\\big], \\quad
              T^{(m)}_G[i] = \\sum_{t<g} \\mathrm{cb}[(i \\gg bt) \\bmod 2^b]\\, X_{m, gG+t}

    with ``g = 4/b`` columns per group and ``i_{nG}`` the 4-bit index of row ``n``'s codes in
    group ``G``: the table-lookup GEMV of T-MAC (Wei et al. 2024) on float tables. Binary
    weights: Survey Eqs. (20)–(24), §3.1; ternary: Eqs. (27)–(34), §3.2; 2-bit k-means or
    uniform codebooks: Eqs. (49), (39), §3.3. See the module docstring for the kernel and the
    layout.
    """
    Y = _front(X, lw, scale, backend)
    if Y is not None:
        return Y
    words = _check_lut(lw)
    fast = _fast_args(X, lw, scale, backend)
    if fast is not None:
        # float32 C-contiguous arrays of the right shapes for the Numba backend: the
        # finiteness checks run inside the kernel's driver (one compiled call instead of
        # three NumPy checks)
        X2, one, s = fast
        Y = dispatch("lut_gemv", backend, _lut_numba, _lut_numpy, X2, words, lw.codebook,
                     lw.bits, s, lw.N, lw.K, checked=False)
        isa = fast_path_isa()
        if not one and X.dtype is _F32 and isa is not None and _FRONT_ON and \
                not _backend._recorders and words is lw.words:  # the next such call: front
            _front_add(isa, X2, words, lw.codebook, lw.bits, scale, lw.N, lw.K)
        return Y[0] if one else Y
    cb = check_array(lw.codebook, "lw.codebook", ndim=1)
    if cb.size != 2 ** lw.bits:
        raise ValueError(f"lw.codebook must have {2 ** lw.bits} entries, got {cb.size}")
    X, one = _prepare_x(X, lw.K)
    scale = _prepare_scale(scale, lw.N, X.dtype)
    cb = np.ascontiguousarray(cb, dtype=np.float64)
    Y = dispatch("lut_gemv", backend, _lut_numba, _lut_numpy, X, words, cb, lw.bits, scale,
                 lw.N, lw.K)
    return Y[0] if one else Y
