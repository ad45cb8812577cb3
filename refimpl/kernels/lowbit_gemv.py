"""Low-bit weight × float activation products for small batches (Survey §3.1–3.3): k-bit
codebook weights (k = 1 … 4: k-means weight sharing, uniform codes + codebook), binary and
ternary weights with one scale per row, multiplied by float32 activations without decoding
the weights to a float matrix.

This is the serving case — one token (batch 1) or a handful of requests (batch ≤ 8, up to ~64)
through a quantised ``Linear`` on a CPU — where the product is memory-bound and the packed
weights, 8–32× smaller than float32, should make it *faster* than float32 BLAS, not slower
(issue #19). The large-batch products stay in :mod:`refimpl.kernels.bitpack`
(``kbit_matmul``, which now calls this kernel for small float32 batches).

What is computed
----------------
For packed weights with ``N`` rows and ``K`` columns, activations ``X`` of shape ``(M, K)``
and an optional scale per row ``s`` of shape ``(N,)``:

.. math:: Y[m, n] = s_n \\sum_k \\mathrm{cb}[c_{nk}]\\, X[m, k]

(the scale is applied after the sum). ``c`` are k-bit codes as :func:`bitpack.pack_codes`
packs them (``64 // k`` per ``uint64`` word, a code never straddles two words), ``cb`` the
codebook. Binary weights (:func:`bitpack.pack_signs`, bit 1 ⇔ +1) are 1-bit codes with
``cb = (−1, +1)`` (BinaryConnect / BWN with its per-row α, Survey Eqs. (20)–(24)); ternary
weights (:func:`bitpack.pack_ternary`: a non-zero plane and a sign plane) take ``cb(nz, s) =
nz (1 − 2s)`` (TWN / ternary connect, Survey Eqs. (27)–(34)); k-means codebooks are Survey
Eq. (49), the affine uniform codebook Eq. (39).

How (the AVX-512 path)
----------------------
The weights stay packed. Sixteen consecutive words of a row are loaded as two registers of
16 32-bit lanes — the low and the high half of each word in adjacent lanes, as they lie in
memory, so no instruction splits the words — and code ``j`` of every half is brought to the
low bits of its lane by one shift; ``vpermps`` then looks the 16 codes up in a 16-entry table
held in one register (the codebook, repeated modulo ``2^k`` so the bits above the code never
matter: no mask) — the "decode in registers" route, fused with the FMA: the decoded vector
multiplies the matching activations of every batch row in the chunk (up to 8, with 2 weight
rows at a time, 16 accumulators; a one-row chunk takes the weight rows one at a time, so the
words are read as one ascending stream, :data:`_ONE_ROW_BCS`). (3-bit words: the high
half's codes start at bit 1, so one variable shift per register aligns them; code 10, which
straddles the halves, comes down with one 64-bit shift by 30.) The activations are laid out
once per call in that order (:func:`_layout_x`, O(M·K), zero where a position decodes
nothing); full blocks of words are plain loads and only a partial last block is read with a
masked load (which meets zero-padded activations; a masked load for every block made the
one-thread 4-bit product 21 % slower); each row's words are prefetched 3 KiB ahead
(``_PREFETCH``). Reading the halves in place instead of splitting the
words first (two ``vpmovqd`` per 8 words, a shift and an insert: 16 of the 76 shuffle-unit
operations per 512 4-bit weights) took the one-thread 4-bit product at batch 1, 4096 × 4096,
from 0.73 to 0.63–0.67 ms (calls back to back, 2026-12-07). Ternary words are first
interleaved bit by bit (non-zero bit ``i`` → bit ``2i``, sign bit → ``2i + 1``, per 16-bit
quarter) so that every code is again a 2-bit field. The loops are LLVM IR (a numba
``@intrinsic``, as in :mod:`bitpack`), run over blocks of 64 output rows by the calling thread
and the helpers of the thread team (:mod:`refimpl.kernels._team`, blocks claimed from an atomic
counter). A threaded product is one compiled ``nogil`` call (:func:`_lowbit_team512`): it wakes
the helper first (a semaphore post, so the helper's OS wake-up overlaps the preparation), lays
out the activations, builds the table, publishes the job on the team's board and works on the
blocks from the start; the public function in front of it does only type and shape checks in
Python (:func:`_fast`). The table-on-activations form (T-MAC-style: a 16-entry table of partial sums per group of 4 binary / 2 two-bit activations, indexed by the
weight bits of 16 rows) saves lookups for 1- and 2-bit weights but needs 16 rows' words in one
register: with :func:`bitpack.pack_codes`' row-major layout that is a gather per word, so it
lives in :mod:`refimpl.kernels.lut_gemv` on its own stored layout (16 rows interleaved,
:func:`lut_gemv.lut_pack`, repacked once). One thread, CPU time, 4096 × 4096 (load ~5): batch 1
binary 0.22 vs 0.62 ms here, 2-bit 0.45 vs 0.68, ternary 0.45 vs 0.90; for 3- and 4-bit codes it
gives nothing (4-bit, one code per lookup: 1.01 vs 1.02 ms at batch 1, slower at batch 8), so
they stay here: on this core a 512-bit ``vpermps`` issues every ~2 cycles, and both kernels do
one lookup per 16 weights.

The AVX2 path
-------------
CPUs with AVX2 and FMA3 but without AVX-512 run the same kernel on 8-lane blocks (8 words per
block, one ``<8 x i64>`` load = two ymm registers of 8 half words; :func:`_layout_x` with
``L = 8``). AVX2's
``vpermps`` (``llvm.x86.avx2.permps``) looks up an 8-entry table with the low 3 bits of each
lane, which holds the whole table for binary, ternary, 2- and 3-bit codes (the table repeats
modulo 2^bits, so the bits above the code still never matter); 4-bit codes look up the low
and the high 8 entries with two permutes and pick per lane with ``vblendvps`` on bit 3
(shifted to the sign bit). With 16 ymm registers the batch chunks are at most 4 rows (2
weight rows × 4 = 8 accumulators). The summation order is the AVX-512 kernel's with 8 lane
partial sums instead of 16. :func:`fast_path_isa` says which kernel runs; setting
``REFIMPL_LOWBIT_ISA=avx2`` (or ``portable``) forces a lower path, which is how the AVX2
kernel is tested (exactly, against the NumPy reference) on an AVX-512 machine.

Portable fallback
-----------------
CPUs with neither (and ``NUMBA_DISABLE_JIT=1``, and float64 activations) run a plain Numba
loop nest (row blocks in ``prange``, codes decoded one by one with shifts, the table looked up
per weight, the activations transposed so the batch loop is contiguous): correct everywhere,
not fast. :func:`fast_path_available` / :func:`fast_path_isa` say which path a call takes.

dtype rules
-----------
``X`` float32 → computed and returned in float32 (fast path when available); float64 → the
portable loop in float64, returned as float64; integer / bool ``X`` → float64. The codebook and
scales are cast to ``X``'s dtype. ``X`` may be 1-d (one vector, returns shape ``(N,)``) or
2-d, any strides (copied into the kernel's layout).

Exactness: the kernel sums in a different order from the NumPy reference (16 or 8 lane partial
sums per row, then a tree), so the two agree bit for bit only when every partial sum is exact (e.g.
small integers or dyadic values) and otherwise within the float32 rounding bound
``γ_K Σ_k |cb[c_{nk}]| |X[m, k]|`` (tests).
"""

from __future__ import annotations

import functools
import os

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from refimpl.kernels import _backend
from refimpl.kernels._backend import default_backend, dispatch, env
from refimpl.kernels._backend import host_features as _host_features
from refimpl.kernels._team import (_TEAM, FIELD0, address, claim, finish, helpers_wanted, publish,
                                    ready, register, solo, team, wait_holding, wake)
from refimpl.kernels import bitpack
from refimpl.kernels.bitpack import popcount64 as _popcount
from refimpl.utils import check_array, check_int

__all__ = ["kbit_gemv", "binary_weight_gemv", "ternary_weight_gemv", "binary_gemv",
           "ternary_gemv", "fast_path_available", "fast_path_isa", "cpu_isa", "ISA_ENV",
           "SMALL_BATCH", "SMALL_BATCH_PACKED", "int8_gemv", "quantize_rows_int8",
           "vnni_available"]

#: Largest batch (rows of ``X``) for which :func:`bitpack.kbit_matmul` calls this kernel.
#: Measured at 4096 × 4096, 4-bit, one thread each, CPU ms per call (shared machine, load ~15):
#: batch 64 / 128 / 256 / 512: this kernel 24 / 50 / 98 / 197, float32 BLAS 34 / 57 / 98 /
#: 180, the decode-then-BLAS path of ``kbit_matmul`` 950 / 910 / 1150 / 260.
SMALL_BATCH = 512
#: Largest batch (rows of ``Ap``) for which :func:`bitpack.binary_gemm` and
#: :func:`bitpack.ternary_gemm` call :func:`binary_gemv` / :func:`ternary_gemv`: below 8 rows
#: their 4 × 4 (2 × 2) row tiles leave one of the two threads idle (M ≤ 4) or unbalanced.
SMALL_BATCH_PACKED = 7

_ROW_BLOCK = 64  # output rows per task (thread team, prange)
_TERNARY = 0     # the "kind" of a ternary product; k-bit codes use kind = bits


# ------------------------------------------------------------------ ISA
#: Environment variable that forces a lower kernel path than the CPU allows: ``avx2`` (the
#: 8-lane kernel on an AVX-512 CPU) or ``portable`` (the plain loops); ``avx512`` / unset: the
#: best the CPU has. Forcing a path the CPU lacks raises ``ValueError``. For tests and
#: benchmarks (an AVX-512 machine checks the AVX2 kernel exactly this way).
ISA_ENV = "REFIMPL_LOWBIT_ISA"
_ISA_RANK = {None: 0, "avx2": 1, "avx512": 2}


_CPU_ISA: dict = {}  # (numba's DISABLE_JIT, CPU_FEATURES, CPU_NAME) -> (the ISA,)


def cpu_isa() -> str | None:
    """The widest vector ISA of the CPU Numba compiles for that the hand-written kernels use:
    ``"avx512"`` (AVX-512F), ``"avx2"`` (AVX2 and FMA3), or ``None`` (neither, or the JIT is
    off). ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` are respected (a named CPU other than
    ``host`` without explicit features counts as neither)."""
    cfg = numba.config
    key = (cfg.DISABLE_JIT, cfg.CPU_FEATURES, cfg.CPU_NAME)
    got = _CPU_ISA.get(key)
    if got is None:
        got = _CPU_ISA[key] = (_cpu_isa(),)
    return got[0]


def _cpu_isa() -> str | None:
    if numba.config.DISABLE_JIT:
        return None
    feats = numba.config.CPU_FEATURES
    if feats:  # the user told Numba which features to compile for
        have = {f[1:] for f in str(feats).split(",") if f.startswith("+")}
    else:
        name = numba.config.CPU_NAME
        if name and name != "host":
            return None
        have = _host_features()
    if "avx512f" in have:
        return "avx512"
    if "avx2" in have and "fma" in have:
        return "avx2"
    return None


def fast_path_isa() -> str | None:
    """The kernel float32 products take: ``"avx512"`` (16-lane ``vpermps``), ``"avx2"``
    (8-lane ``vpermps``, two of them and a blend for 4-bit codes) or ``None`` (the portable
    loops): :func:`cpu_isa`, lowered by ``$REFIMPL_LOWBIT_ISA`` when set."""
    isa = cpu_isa()
    want = (env(ISA_ENV) or "").strip().lower()
    if not want:
        return isa
    if want not in ("avx512", "avx2", "portable"):
        raise ValueError(f"{ISA_ENV} must be one of 'avx512', 'avx2', 'portable', got {want!r}")
    want = None if want == "portable" else want
    if _ISA_RANK[want] > _ISA_RANK[isa]:
        raise ValueError(f"{ISA_ENV}={want} but the CPU Numba compiles for has only "
                         f"{isa or 'neither AVX2+FMA nor AVX-512F'}")
    return want


def fast_path_available() -> bool:
    """True when float32 products take a vector kernel (AVX-512 or AVX2,
    :func:`fast_path_isa`), False for the portable loops."""
    return fast_path_isa() is not None


def _per(kind: int) -> int:
    return 64 if kind == _TERNARY else 64 // kind


@numba.njit(cache=True, inline="always")
def _per_jit(kind):
    """:func:`_per` inside compiled code."""
    return 64 if kind == 0 else 64 // kind


def _table(kind: int, codebook, dtype) -> np.ndarray:
    """The 16-entry lookup table: the codebook repeated modulo ``2^bits`` (code + 2·sign for a
    ternary product: ``(0, +1, 0, −1)``)."""
    if kind == _TERNARY:
        return _table16(np.array([0.0, 1.0, 0.0, -1.0]), 4, dtype)
    return _table16(codebook, 2 ** kind, dtype)


def _table16(cb, nc, dtype) -> np.ndarray:
    """``cb[i mod nc]`` for i = 0 … 15, through float64, in ``dtype``."""
    return np.ascontiguousarray(np.asarray(cb, dtype=np.float64)[np.arange(16) % nc],
                                dtype=dtype)


# ------------------------------------------------------------------ NumPy reference
def _decode_numpy(kind, packed, sign, K):
    """Integer codes (N, K) of the weights (ternary: ``nz + 2 sign``)."""
    bits = 1 if kind == _TERNARY else kind
    per = 64 // bits
    shifts = (np.arange(per, dtype=np.uint64) * np.uint64(bits))[None, None, :]
    mask = np.uint64((1 << bits) - 1)
    N, Kw = packed.shape
    codes = ((packed[:, :, None] >> shifts) & mask).reshape(N, Kw * per)[:, :K]
    if kind == _TERNARY:
        s = ((sign[:, :, None] >> shifts) & mask).reshape(N, Kw * per)[:, :K]
        codes = codes + 2 * s
    return codes.astype(np.intp)


def _lowbit_numpy(X, packed, sign, kind, K, table, scale):
    """Reference: decode the weights to a float matrix, one BLAS product, then the row scale."""
    W = table[_decode_numpy(kind, packed, sign, K)]  # (N, K)
    Y = X @ W.T  # (M, N)
    return Y * scale[None, :]


# ------------------------------------------------------------------ portable Numba kernel
@numba.njit(cache=True, parallel=True)
def _lowbit_generic(X, packed, sign, kind, K, table, scale):
    """Plain loops, any CPU and dtype: per block of 64 rows, codes decoded one by one."""
    M = X.shape[0]
    N, Kw = packed.shape
    bits = 1 if kind == 0 else kind
    per = 64 // bits
    mask = numba.uint64((1 << bits) - 1)
    Xt = np.ascontiguousarray(X.T)  # (K, M): the batch loop innermost and contiguous
    out = np.empty((M, N), dtype=X.dtype)
    nblk = (N + 63) // 64
    for blk in prange(nblk):
        acc = np.zeros(M, dtype=X.dtype)
        for n in range(blk * 64, min(N, blk * 64 + 64)):
            acc[:] = 0
            for w in range(Kw):
                word = packed[n, w]
                sw = sign[n, w] if kind == 0 else numba.uint64(0)
                base = w * per
                for j in range(min(per, K - base)):
                    sh = numba.uint64(j * bits)
                    c = (word >> sh) & mask
                    if kind == 0:
                        c += ((sw >> sh) & mask) << numba.uint64(1)
                    v = table[c]
                    if v != 0:
                        for m in range(M):
                            acc[m] += v * Xt[base + j, m]
            for m in range(M):
                out[m, n] = acc[m] * scale[n]
    return out


# ------------------------------------------------------------------ AVX-512 kernel
#: Code positions per 32-bit half word (the kernel's inner steps per register): 4-bit 8,
#: 3-bit 11 (codes 0–9 and the code 10 that straddles the halves in the low half; 11–20 in the
#: high half, whose position 10 meets a zero activation), 2-bit 16, binary 32, ternary 32
#: (two 16-bit quarters of 16 two-bit fields after the bit interleave).
_NPOS = {_TERNARY: 32, 1: 32, 2: 16, 3: 11, 4: 8}


@numba.njit(cache=True, inline="always")
def _code_of(kind, j, h):
    """The code (bit field) of a word that position ``j`` of half ``h`` (0: bits 0–31, 1: bits
    32–63) decodes, or −1 (the unused position 10 of a 3-bit high half). Ternary: the bit
    index of the (non-zero, sign) pair."""
    if kind == 3:
        if h == 0:
            return j
        return 11 + j if j < 10 else -1
    if kind == 0:
        return 32 * h + j
    return j + (32 // kind) * h


@numba.njit(cache=True)
def _layout_x(X, kind, Kw, L):
    """The activations in the order the kernel decodes a block of ``L`` words (16 for AVX-512,
    8 for AVX2): the block's words are read as two registers of ``L`` 32-bit lanes (register
    ``r``, lane ``l``: word ``L/2 · r + l // 2`` of the block, its low half for even ``l``, high
    half for odd), so ``xl[m, q, j, r, l] = X[m, per · (L q + w) + c]`` with ``c`` the code of
    position ``j`` in that half (:func:`_code_of`; 0 beyond K and for unused positions); shape
    (M, ceil(Kw/L), npos, 2, L)."""
    M, K = X.shape
    per = _per_jit(kind)
    npos = 32 if kind == 0 else (11 if kind == 3 else 32 // kind)
    nq = (Kw + L - 1) // L
    xl = np.zeros((M, nq, npos, 2, L), dtype=np.float32)
    half = L // 2
    for m in range(M):
        for q in range(nq):
            for r in range(2):
                for l in range(L):
                    base = per * (L * q + half * r + l // 2)
                    for j in range(npos):
                        c = _code_of(kind, j, l % 2)
                        if c >= 0 and base + c < K:
                            xl[m, q, j, r, l] = X[m, base + c]
    return xl


def _i32(v):
    return ir.Constant(ir.IntType(32), v)


def _i64(v):
    return ir.Constant(ir.IntType(64), v)


def _vt(L):
    """(float, int32, int64) vector types of ``L`` lanes."""
    return (ir.VectorType(ir.FloatType(), L), ir.VectorType(ir.IntType(32), L),
            ir.VectorType(ir.IntType(64), L))


def _splat32(c, L=16):
    return ir.Constant(ir.VectorType(ir.IntType(32), L), [_i32(c)] * L)


def _fn(builder, name, ret, argtys):
    m = builder.module
    f = m.globals.get(name)
    if f is None:
        f = ir.Function(m, ir.FunctionType(ret, argtys), name)
    return f


def _opaque(builder, v):
    """``v`` through an empty inline-asm register copy: LLVM cannot look through it, so it
    does not rewrite ``lshr(trunc(w), s)`` as ``trunc(lshr(w, s))`` — 64-bit shifts of both
    halves, two ``vpmovqd`` and an insert per code instead of one 32-bit shift (measured in
    the generated assembly)."""
    return builder.asm(ir.FunctionType(v.type, [v.type]), "", "=v,0", [v], False)


def _spread16(builder, x, L=16):
    """Bits 0..15 of each lane to the even bits 0, 2, …, 30 (a Morton interleave step)."""
    for sh, msk in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333), (1, 0x55555555)):
        x = builder.and_(builder.or_(x, builder.shl(x, _splat32(sh, L))), _splat32(msk, L))
    return x


def _lookup(builder, ctx, idx):
    """``table[idx mod 16]`` per lane (bits of ``idx`` above the code are ignored).

    AVX-512 (16 lanes): one ``vpermps`` on the 16-entry table (it reads the low 4 bits).
    AVX2 (8 lanes): ``vpermps`` reads the low 3 bits of an 8-entry table, which is the whole
    table for ternary, 1-, 2- and 3-bit codes (the table repeats modulo 2^bits); 4-bit codes
    look up both halves and ``vblendvps`` picks the high half where bit 3 is set (moved to
    the sign bit by a shift)."""
    L = ctx["L"]
    F, I, _ = _vt(L)
    if L == 16:
        perm = _fn(builder, "llvm.x86.avx512.permvar.sf.512", F, [F, I])
        return builder.call(perm, [ctx["table"], idx])
    perm = _fn(builder, "llvm.x86.avx2.permps", F, [F, I])
    lo = builder.call(perm, [ctx["table"], idx])
    if ctx["kind"] != 4:
        return lo
    hi = builder.call(perm, [ctx["table_hi"], idx])
    blend = _fn(builder, "llvm.x86.avx.blendv.ps.256", F, [F, F, F])
    sel = builder.bitcast(builder.shl(idx, _splat32(28, L)), F)  # bit 3 → sign bit
    return builder.call(blend, [lo, hi, sel])


def _emit_rows(builder, ctx, rows, BC):
    """Emit the products of the weight rows ``rows`` (a tuple of row indices) with batch rows
    ``b0 .. b0 + BC − 1`` into ``out``: the full blocks of ``L`` words, a masked partial last
    block, then the row sums."""
    RB = len(rows)
    kind, L = ctx["kind"], ctx["L"]
    F, I, Q = _vt(L)
    zero = ir.Constant(F, [ir.Constant(ir.FloatType(), 0.0)] * L)
    accs = ctx["accs"]
    # independent accumulator chains: an FMA waits ~4 cycles for its accumulator, so with
    # fewer than 8 chains (2 rows × 1–2 batch rows) code j goes to accumulator j mod nacc
    nacc = max(1, 4 // BC)
    for r in range(RB):
        for a in range(BC * nacc):
            builder.store(zero, accs[r][a])
    row_w = [builder.mul(rows[r], ctx["Kw"]) for r in range(RB)]
    fma = _fn(builder, f"llvm.fma.v{L}f32", F, [F, F, F])

    def load_words(base_ptr, off, mask):
        p = builder.bitcast(builder.gep(base_ptr, [off]), Q.as_pointer())
        if mask is None:
            return builder.load(p, align=8)
        name = f"llvm.masked.load.v{L}i64." + ("p0" if ctx["opaque"] else f"p0v{L}i64")
        mload = _fn(builder, name, Q, [p.type, ir.IntType(32),
                                       ir.VectorType(ir.IntType(1), L), Q])
        return builder.call(mload, [p, _i32(8), mask, ir.Constant(Q, [_i64(0)] * L)])

    def prefetch(base_ptr, off):
        # the cache lines of the block _PREFETCH · 16 words (3 KiB) ahead in the packed
        # array (a prefetch past the end does not fault)
        i8p = ir.IntType(8).as_pointer()
        name = "llvm.prefetch." + ("p0" if ctx["opaque"] else "p0i8")
        for line in range(L // 8):
            p = builder.bitcast(builder.gep(base_ptr, [builder.add(
                off, _i64(16 * _PREFETCH + 8 * line))]), i8p)
            fn = _fn(builder, name, ir.VoidType(), [p.type, ir.IntType(32), ir.IntType(32),
                                                    ir.IntType(32)])
            builder.call(fn, [p, _i32(0), _i32(3), _i32(1)])

    def split(v):
        """An ``<L x i64>`` value as two ``<L x i32>`` registers (no instruction)."""
        d = builder.bitcast(v, ir.VectorType(ir.IntType(32), 2 * L))
        return [_opaque(builder, builder.shuffle_vector(
            d, d, ir.Constant(I, [_i32(L * r + i) for i in range(L)]))) for r in range(2)]

    npos = _NPOS[kind]

    def block(q, mask):
        # the L words of each weight row as two registers of L 32-bit lanes (low and high
        # halves of each word in adjacent lanes, :func:`_layout_x`): no split of the words
        regs = []
        for r in range(RB):
            off = builder.add(row_w[r], builder.mul(q, _i64(L)))
            if _PREFETCH:
                prefetch(ctx["pk"], off)
                if kind == _TERNARY:
                    prefetch(ctx["sg"], off)
            wv = load_words(ctx["pk"], off, mask)
            if kind == _TERNARY:  # interleave nz (even bits) and sign (odd bits) per quarter
                sv = load_words(ctx["sg"], off, mask)
                quarters = []
                for a_, s_ in zip(split(wv), split(sv)):
                    qs = []
                    for qv in range(2):
                        if qv == 0:
                            a16 = builder.and_(a_, _splat32(0xFFFF, L))
                            s16 = builder.and_(s_, _splat32(0xFFFF, L))
                        else:
                            a16 = builder.lshr(a_, _splat32(16, L))
                            s16 = builder.lshr(s_, _splat32(16, L))
                        qs.append(_opaque(builder, builder.or_(
                            _spread16(builder, a16, L),
                            builder.shl(_spread16(builder, s16, L), _splat32(1, L)))))
                    quarters.append(qs)
                regs.append(quarters)
            elif kind == 3:
                # the high halves' codes 11-20 start at bit 1: one variable shift per register
                # aligns them with the low halves' (codes 0-9 at bits 3j); code 10 straddles the
                # halves, and a 64-bit shift by 30 brings it down in the low lanes
                odd = ir.Constant(I, [_i32(i % 2) for i in range(L)])
                aligned = [_opaque(builder, builder.lshr(v, odd)) for v in split(wv)]
                straddle = split(builder.lshr(wv, ir.Constant(Q, [_i64(30)] * L)))
                regs.append(list(zip(aligned, straddle)))
            else:
                regs.append(split(wv))
        acc = [[builder.load(accs[r][a]) for a in range(BC * nacc)] for r in range(RB)]
        # xl[b0 + b, q, j, reg, :] at (((b0 + b) nq + q) npos + j) 2L + L reg
        xoff = [builder.mul(builder.add(builder.mul(builder.add(ctx["b0"], _i64(b)), ctx["nq"]),
                                        q), _i64(npos * 2 * L)) for b in range(BC)]
        xptr = [builder.bitcast(builder.gep(ctx["xl"], [xoff[b]]), F.as_pointer())
                for b in range(BC)]
        for j in range(npos):
            for reg in range(2):
                ws = []
                for r in range(RB):
                    if kind == _TERNARY:
                        v, sh = regs[r][reg][j // 16], 2 * (j % 16)
                        idx = builder.lshr(v, _splat32(sh, L)) if sh else v
                    elif kind == 3:
                        v, straddle = regs[r][reg]
                        if j == 10:
                            idx = straddle
                        else:
                            idx = builder.lshr(v, _splat32(3 * j, L)) if j else v
                    else:
                        v, sh = regs[r][reg], kind * j
                        idx = builder.lshr(v, _splat32(sh, L)) if sh else v
                    ws.append(_lookup(builder, ctx, idx))
                t = 2 * j + reg
                for b in range(BC):
                    xv = builder.load(builder.gep(xptr[b], [_i64(t)]), align=4)  # t-th vector
                    for r in range(RB):
                        a = b * nacc + t % nacc
                        acc[r][a] = builder.call(fma, [ws[r], xv, acc[r][a]])
        for r in range(RB):
            for a in range(BC * nacc):
                builder.store(acc[r][a], accs[r][a])

    # the full blocks with plain loads, then a partial last block (if any) with a masked load
    # (lanes l < Kw − L q). One masked copy serving every block was 21 % slower on Zen 4
    # (4-bit, batch 1, 4096 × 4096, one thread, weights in L2: 19.3 vs 15.2 µs per 128 rows)
    nfull = builder.sdiv(ctx["Kw"], _i64(L))
    with cgutils.for_range(builder, nfull) as loop:
        block(loop.index, None)
    left = builder.sub(ctx["Kw"], builder.mul(nfull, _i64(L)))
    with builder.if_then(builder.icmp_signed(">", left, _i64(0))):
        lanes_idx = ir.Constant(Q, [_i64(i) for i in range(L)])
        tv = builder.insert_element(ir.Constant(Q, ir.Undefined), left, _i32(0))
        tv = builder.shuffle_vector(tv, tv, ir.Constant(I, [_i32(0)] * L))
        block(nfull, builder.icmp_signed("<", lanes_idx, tv))
    # row sums: a tree over the L lanes, then the store
    for r in range(RB):
        for b in range(BC):
            parts = [builder.load(accs[r][b * nacc + a]) for a in range(nacc)]
            while len(parts) > 1:  # (a0 + a1) + (a2 + a3)
                parts = [builder.fadd(parts[i], parts[i + 1]) for i in range(0, len(parts), 2)]
            v = parts[0]
            width = L
            while width > 1:
                width //= 2
                a = builder.shuffle_vector(v, v, ir.Constant(
                    ir.VectorType(ir.IntType(32), width), [_i32(i) for i in range(width)]))
                c = builder.shuffle_vector(v, v, ir.Constant(
                    ir.VectorType(ir.IntType(32), width),
                    [_i32(width + i) for i in range(width)]))
                v = builder.fadd(a, c)
            s = builder.extract_element(v, _i32(0))
            o = builder.add(builder.mul(builder.add(ctx["b0"], _i64(b)), ctx["N"]), rows[r])
            builder.store(s, builder.gep(ctx["out"], [o]))


_KINDS = (_TERNARY, 1, 2, 3, 4)
#: Software prefetch distance in blocks of 16 words (0: none): 24 blocks = 3 KiB ahead in the
#: packed array. Batch 1, 4096 × 4096, one thread, CPU ms after 0.3 s idle (weights from DRAM),
#: 4-bit / 2-bit, best of 9 (shared machine, load ~12): none 1.79–1.82 / 1.30; 8 blocks
#: 1.39–1.51 / 0.97–1.06; 16: 1.23–1.37 / 0.89–0.93; 24: 1.03–1.23 / 0.89–1.00; 32: 1.17 /
#: 0.96; 48: 1.31 / 0.93 (float32 BLAS 2.98–3.29 in the same runs).
_PREFETCH = 24
#: Batch chunks per lane width: 16 lanes (AVX-512, 32 zmm registers) up to 8 batch rows × 2
#: weight rows = 16 accumulators; 8 lanes (AVX2, 16 ymm registers) up to 4 × 2 = 8, so the
#: accumulators, the table halves, the codes and the activations fit without spills.
_BCS = {16: (8, 4, 2, 1), 8: (4, 2, 1)}
#: Batch chunks whose rows are processed one at a time instead of in pairs, so the packed words
#: are read as one ascending stream, which the hardware prefetcher follows (two interleaved
#: rows of 2 KiB: ~10 GB/s from DRAM on one core of the development VM, one stream 24 GB/s).
#: 4-bit, batch 1, 4096 × 4096, two threads, public call after 0.3 s idle, median / best of 15,
#: four alternated runs each (2026-12-07): 0.59–0.66 / 0.53–0.56 ms vs 0.66–0.68 / 0.56–0.61
#: in pairs. Larger chunks keep the pairs: each activation load serves two weight rows.
_ONE_ROW_BCS = (1,)


def _make_rows(L):
    """The row-pair product as a numba ``@intrinsic`` for blocks of ``L`` words (16: AVX-512,
    8: AVX2)."""

    def rows_intrinsic(typingctx, xl, packed, sign, table, out, kind, r0, r1, b0, bc):
        sig = types.void(xl, packed, sign, table, out, types.int64, types.int64,
                         types.int64, types.int64, types.int64)

        def codegen(context, builder, signature, args):
            xa = context.make_array(signature.args[0])(context, builder, args[0])
            pa = context.make_array(signature.args[1])(context, builder, args[1])
            sa = context.make_array(signature.args[2])(context, builder, args[2])
            ta = context.make_array(signature.args[3])(context, builder, args[3])
            oa = context.make_array(signature.args[4])(context, builder, args[4])
            kind, r0, r1, b0, bc = args[5:]
            F, _, Q = _vt(L)
            shp = cgutils.unpack_tuple(builder, xa.shape, 5)
            pshp = cgutils.unpack_tuple(builder, pa.shape, 2)
            oshp = cgutils.unpack_tuple(builder, oa.shape, 2)
            Kw = pshp[1]
            tptr = builder.bitcast(ta.data, F.as_pointer())
            table = builder.load(tptr, align=4)
            table_hi = builder.load(builder.gep(tptr, [_i64(1)]), align=4) if L == 8 else None
            nslots = max(bc_ * max(1, 4 // bc_) for bc_ in _BCS[L])  # accumulators per row
            accs = [[cgutils.alloca_once(builder, F) for _ in range(nslots)] for _ in range(2)]
            opaque = bool(getattr(Q.as_pointer(), "is_opaque", False))
            done = builder.append_basic_block("lowbit.done")
            sw = builder.switch(builder.add(builder.mul(kind, _i64(16)), bc), done)
            for k in _KINDS:
                for BC in _BCS[L]:
                    bb = builder.append_basic_block(f"lowbit.k{k}.b{BC}")
                    sw.add_case(_i64(16 * k + BC), bb)
                    builder.position_at_end(bb)
                    ctx = {"kind": k, "per": _per(k), "L": L, "accs": accs, "Kw": Kw,
                           "pk": pa.data, "sg": sa.data, "xl": xa.data, "table": table,
                           "table_hi": table_hi, "out": oa.data, "b0": b0, "nq": shp[1],
                           "N": oshp[1], "opaque": opaque}
                    if BC in _ONE_ROW_BCS:
                        # one row at a time: the words are read as one ascending stream
                        with cgutils.for_range(builder, builder.sub(r1, r0)) as loop:
                            _emit_rows(builder, ctx, (builder.add(r0, loop.index),), BC)
                        builder.branch(done)
                        continue
                    # pairs of rows; an odd last row is paired with itself (computed twice,
                    # the same sums stored twice), so no single-row copy of the code is needed
                    npairs = builder.sdiv(builder.add(builder.sub(r1, r0), _i64(1)), _i64(2))
                    with cgutils.for_range(builder, npairs) as loop:
                        n = builder.add(r0, builder.mul(loop.index, _i64(2)))
                        n2 = builder.add(n, _i64(1))
                        n2 = builder.select(builder.icmp_signed("<", n2, r1), n2, n)
                        _emit_rows(builder, ctx, (n, n2), BC)
                    builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    rows_intrinsic.__doc__ = (
        f"``out[b, n] = Σ_k table[c_nk] x[b, k]`` for rows ``r0 <= n < r1`` and batch rows "
        f"``b0 <= b < b0 + bc`` (``bc`` in {_BCS[L]}), ``kind`` = bits (1–4) or 0 (ternary), "
        f"blocks of {L} words. ``xl``: (M, nq, npos, 2, {L}) float32 from :func:`_layout_x`; "
        "``packed``, ``sign``: (N, Kw) uint64 (``sign`` read only for a ternary product); "
        "``table``: (16,) float32; ``out``: (M, N) float32. Two weight rows at a time; the "
        "code for every kind and batch chunk is emitted once and chosen by a switch.")
    return intrinsic(rows_intrinsic)


_lowbit_rows = _make_rows(16)
_lowbit_rows_avx2 = _make_rows(8)


@numba.njit(cache=True, inline="always")
def _avx512_block(xl, packed, sign, kind, table, out, blk):
    """Output rows ``64 blk .. 64 blk + 63``, batch chunks of 8 (then 4, 2, 1)."""
    M = xl.shape[0]
    r0 = blk * _ROW_BLOCK
    r1 = min(packed.shape[0], r0 + _ROW_BLOCK)
    b = 0
    while b < M:
        left = M - b
        bc = 8 if left >= 8 else (4 if left >= 4 else (2 if left >= 2 else 1))
        _lowbit_rows(xl, packed, sign, table, out, kind, r0, r1, b, bc)
        b += bc


@numba.njit(cache=True, inline="always")
def _avx2_block(xl, packed, sign, kind, table, out, blk):
    """Output rows ``64 blk .. 64 blk + 63``, batch chunks of 4 (then 2, 1)."""
    M = xl.shape[0]
    r0 = blk * _ROW_BLOCK
    r1 = min(packed.shape[0], r0 + _ROW_BLOCK)
    b = 0
    while b < M:
        left = M - b
        bc = 4 if left >= 4 else (2 if left >= 2 else 1)
        _lowbit_rows_avx2(xl, packed, sign, table, out, kind, r0, r1, b, bc)
        b += bc


@numba.njit(cache=True)
def _fast_table(X, cb, nc, scale):
    """``(table, bad)``: the 16-entry float32 table ``cb[i mod nc]`` and 0, or 1 / 2 / 3 when
    ``X`` / ``cb`` / ``scale`` has a NaN or inf (then the table is unused)."""
    table = np.empty(16, dtype=np.float32)
    for m in range(X.shape[0]):
        for k in range(X.shape[1]):
            if not np.isfinite(X[m, k]):
                return table, 1
    for i in range(cb.shape[0]):
        if not np.isfinite(cb[i]):
            return table, 2
    for n in range(scale.shape[0]):
        if not np.isfinite(scale[n]):
            return table, 3
    for i in range(16):
        table[i] = np.float32(np.float64(cb[i % nc]))
    return table, 0


@numba.njit(cache=True)
def _prepare(X, cb, nc, scale, kind, Kw, N, L):
    """Everything a call needs before the products, in one compiled step: ``(xl, out,
    table, bad)`` — the activations in the kernel's layout (:func:`_layout_x`), the output
    (M, N) float32, the 16-entry table of ``cb[:nc]`` and the finiteness flag of
    :func:`_fast_table` (non-zero: nothing else is valid)."""
    table, bad = _fast_table(X, cb, nc, scale)
    xl = _layout_x(X, kind, Kw, L)
    out = np.empty((X.shape[0], N), dtype=np.float32)
    return xl, out, table, bad


@numba.njit(cache=True, inline="always")
def _scale_block(out, scale, blk):
    """``out[m, n] *= scale[n]`` for the rows of block ``blk`` (exact when the scale is 1)."""
    r0 = blk * _ROW_BLOCK
    r1 = min(out.shape[1], r0 + _ROW_BLOCK)
    for m in range(out.shape[0]):
        for n in range(r0, r1):
            out[m, n] *= scale[n]


@numba.njit(cache=True, nogil=True)
def _avx512_tasks(xl, packed, sign, kind, table, scale, out, board, epoch, member):
    """A member of the thread team (:mod:`refimpl.kernels._team`): claims blocks of 64 output
    rows of call ``epoch``, computes and scales them."""
    while True:
        t = claim(board, epoch)
        if t < 0:
            return
        _avx512_block(xl, packed, sign, kind, table, out, t)
        _scale_block(out, scale, t)
        finish(board, member)


@numba.njit(cache=True, nogil=True)
def _avx2_tasks(xl, packed, sign, kind, table, scale, out, board, epoch, member):
    """:func:`_avx512_tasks` on 8-lane blocks."""
    while True:
        t = claim(board, epoch)
        if t < 0:
            return
        _avx2_block(xl, packed, sign, kind, table, out, t)
        _scale_block(out, scale, t)
        finish(board, member)


@numba.njit(cache=True, inline="always")
def _put_job(board, xl, packed, sign, kind, table, scale, out):
    """The job fields of a call (:data:`refimpl.kernels._team.FIELD0` on): sizes, then the
    arrays' addresses (alive until the call has returned, after every task finished)."""
    f = FIELD0
    board[f] = xl.shape[0]
    board[f + 1] = xl.shape[1]
    board[f + 2] = xl.shape[2]
    board[f + 3] = xl.shape[4]
    board[f + 4] = packed.shape[0]
    board[f + 5] = packed.shape[1]
    board[f + 6] = kind
    board[f + 7] = xl.ctypes.data
    board[f + 8] = packed.ctypes.data
    board[f + 9] = sign.ctypes.data
    board[f + 10] = table.ctypes.data
    board[f + 11] = scale.ctypes.data
    board[f + 12] = out.ctypes.data


@numba.njit(cache=True, inline="always")
def _get_job(board):
    """The arrays of :func:`_put_job` as views, for a helper."""
    f = FIELD0
    M, nq, npos, L, N, Kw = board[f], board[f + 1], board[f + 2], board[f + 3], board[f + 4], \
        board[f + 5]
    xl = numba.carray(address(board[f + 7]), (M, nq, npos, 2, L), np.float32)
    packed = numba.carray(address(board[f + 8]), (N, Kw), np.uint64)
    sign = numba.carray(address(board[f + 9]), (N, Kw), np.uint64)
    table = numba.carray(address(board[f + 10]), (16,), np.float32)
    scale = numba.carray(address(board[f + 11]), (N,), np.float32)
    out = numba.carray(address(board[f + 12]), (M, N), np.float32)
    return xl, packed, sign, board[f + 6], table, scale, out


# The threaded drivers are single compiled calls (``nogil``) on the thread team of
# :mod:`refimpl.kernels._team`: wake the helpers, prepare (:func:`_prepare`: checks, table,
# activation layout), publish the job, work on the blocks from the start, wait for a helper's
# last block. They take the activations ``X`` (M, K), the codebook ``cb`` (its first ``nc``
# entries), the row scales and the team's board, semaphores, CPUs and this family's job kind
# (helpers: Numba's thread count − 1), and return ``(out, bad)`` (``bad``: :func:`_fast_table`).
# Issue #19 measurement (4-bit, batch 1, 4096 × 4096, after 0.3 s idle interleaved with float32
# BLAS, 2026-12-07): every separate NumPy / Numba / Python step of a call cost 15–60 µs after
# the pause instead of 2–10; the earlier path's steps before the first block (argument checks
# 41 µs, backend 37, type checks 30, ISA 24, team lookup 30, a separate compiled ``_prepare``
# 58, the queue put that woke the helper 24; medians) came to ~0.25 ms beside 0.48 ms of
# blocks. This driver and the leaner checks took the public call from 0.79 / 0.72 ms (median /
# best of 15) to 0.63–0.72 / 0.57–0.65; the driver alone 0.51–0.62 / 0.49–0.53. Inside it
# (rdtsc stamps, medians of 15): the wake-up post 23 µs, preparation done at 50 µs, the helper
# on its first block at 106 µs, the caller's 34 blocks done at 565, the helper's 30 at 578 —
# 15 µs per 64-row block against 9.7 back to back (weights from DRAM after the pause). (A
# ``prange`` driver before the team took 0.66–0.93 / 0.58–0.62 ms, one thread 0.87 / 0.81.)
@numba.njit(cache=True, nogil=True)
def _open_call(X, packed, sign, kind, cb, nc, scale, board, sems, cpus, job, L):
    """The part of a threaded call before the products, the same for both ISAs: wake the
    helpers (at most the blocks − 1), prepare for ``L``-lane blocks, write the job fields and
    publish the call — or cancel it (0 tasks) when the preparation found a bad value. Returns
    ``(xl, out, table, bad, blocks, epoch)``."""
    nblk = (packed.shape[0] + _ROW_BLOCK - 1) // _ROW_BLOCK
    wake(board, sems, cpus, min(helpers_wanted(), nblk - 1))
    xl, out, table, bad = _prepare(X, cb, nc, scale, kind, packed.shape[1], packed.shape[0],
                                   L)
    if bad:
        return xl, out, table, bad, nblk, publish(board, 0, 0)
    _put_job(board, xl, packed, sign, kind, table, scale, out)
    return xl, out, table, bad, nblk, publish(board, nblk, job)


@numba.njit(cache=True, nogil=True)
def _lowbit_team512(X, packed, sign, kind, cb, nc, scale, board, sems, cpus, job):
    """The calling thread and the team's helpers over blocks of 64 output rows."""
    xl, out, table, bad, nblk, e = _open_call(X, packed, sign, kind, cb, nc, scale, board,
                                              sems, cpus, job, 16)
    if bad == 0:
        _avx512_tasks(xl, packed, sign, kind, table, scale, out, board, e, 0)
        wait_holding(board, nblk, (xl, table))
    return out, bad


@numba.njit(cache=True, nogil=True)
def _serve512(board, epoch, member):
    """A helper's share of a :func:`_lowbit_team512` call."""
    xl, packed, sign, kind, table, scale, out = _get_job(board)
    _avx512_tasks(xl, packed, sign, kind, table, scale, out, board, epoch, member)


@numba.njit(cache=True, nogil=True)
def _lowbit_team2(X, packed, sign, kind, cb, nc, scale, board, sems, cpus, job):
    """:func:`_lowbit_team512` on 8-lane blocks."""
    xl, out, table, bad, nblk, e = _open_call(X, packed, sign, kind, cb, nc, scale, board,
                                              sems, cpus, job, 8)
    if bad == 0:
        _avx2_tasks(xl, packed, sign, kind, table, scale, out, board, e, 0)
        wait_holding(board, nblk, (xl, table))
    return out, bad


@numba.njit(cache=True, nogil=True)
def _serve2(board, epoch, member):
    """A helper's share of a :func:`_lowbit_team2` call."""
    xl, packed, sign, kind, table, scale, out = _get_job(board)
    _avx2_tasks(xl, packed, sign, kind, table, scale, out, board, epoch, member)


_JOB512 = register(_serve512)
_JOB2 = register(_serve2)


@numba.njit(cache=True)
def _lowbit_avx512_serial(X, packed, sign, kind, cb, nc, scale):
    """One thread, for small products (waking a helper costs more than the work)."""
    xl, out, table, bad = _prepare(X, cb, nc, scale, kind, packed.shape[1], packed.shape[0],
                                   16)
    if bad == 0:
        board, e = solo((packed.shape[0] + _ROW_BLOCK - 1) // _ROW_BLOCK)
        _avx512_tasks(xl, packed, sign, kind, table, scale, out, board, e, 0)
    return out, bad


@numba.njit(cache=True)
def _lowbit_avx2_serial(X, packed, sign, kind, cb, nc, scale):
    """One thread, 8-lane blocks."""
    xl, out, table, bad = _prepare(X, cb, nc, scale, kind, packed.shape[1], packed.shape[0],
                                   8)
    if bad == 0:
        board, e = solo((packed.shape[0] + _ROW_BLOCK - 1) // _ROW_BLOCK)
        _avx2_tasks(xl, packed, sign, kind, table, scale, out, board, e, 0)
    return out, bad


#: Products with fewer multiply-adds (M · N · K) than this run on one thread: at ~10^4
#: multiply-adds per µs on one core that is ~0.1 ms, about what waking a helper thread
#: costs on the shared 2-core development machine.
_SERIAL_MACS = 1 << 20


def _lowbit_vector(isa, X, packed, sign, kind, K, cb, nc, scale):
    """``(Y, bad)`` from the AVX-512 (``isa="avx512"``) or AVX2 kernel: one thread for small
    products, else the thread team's compiled driver."""
    wide = isa == "avx512"
    if X.shape[0] * packed.shape[0] * K < _SERIAL_MACS:
        kern = _lowbit_avx512_serial if wide else _lowbit_avx2_serial
        return kern(X, packed, sign, kind, cb, nc, scale)
    tm = _TEAM[0] or team()
    if wide:
        if not _serve512.signatures:
            ready(_JOB512)
        return _lowbit_team512(X, packed, sign, kind, cb, nc, scale, tm.board, tm.sems,
                               tm.cpus, _JOB512)
    if not _serve2.signatures:
        ready(_JOB2)
    return _lowbit_team2(X, packed, sign, kind, cb, nc, scale, tm.board, tm.sems, tm.cpus,
                         _JOB2)


# ------------------------------------------------------------------ the compiled front
# Issue #19, cold single calls (4-bit, batch 1, 4096 × 4096, after 0.3 s idle interleaved with
# float32 BLAS, 2-core Zen 4 VM, 2026-12-07 15:00 UTC, medians / best of 15–25): the Python of
# the public call before the driver took 85–91 µs (the attribute checks of :func:`_fast`: a
# call of an empty Python function alone takes 8–9 µs after the pause, three attribute tests
# 25–30) and the step into the driver (:func:`_lowbit_vector`, the dispatcher's typing of 11
# arguments) 28–30 µs, beside 0.42–0.46 ms in the driver. One compiled entry that checks the
# shapes itself, reached after a few type tests, took the call from 0.61 / 0.54 ms to
# 0.53 / 0.46 (prototype, same run). Its dispatcher compiles only the signatures
# :func:`_fast` has accepted (compilation is disabled in between), so arguments of any other
# type, layout or alignment raise the dispatcher's ``TypeError`` and take :func:`_fast`.
@numba.njit(cache=True, inline="always")
def _front_shapes_ok(X, packed, sign, kind, K, cb, nc, scale):
    """The shape conditions of :func:`_fast` (the types are the signature's)."""
    N, Kw = packed.shape
    per = 64 if kind == 0 else 64 // kind
    return (K >= 1 and X.shape[0] >= 1 and X.shape[1] == K and N >= 1 and
            Kw == (K + per - 1) // per and sign.shape[0] == N and sign.shape[1] == Kw and
            cb.shape[0] >= nc and (scale.shape[0] == N or scale.shape[0] == 0))


@numba.njit(cache=True, nogil=True)
def _front512(X, packed, sign, kind, K, cb, nc, scale, board, sems, cpus, job):
    """:func:`_lowbit_vector`'s AVX-512 choice for arguments of the fast path's types:
    ``(Y, bad)``, ``bad = −1`` when a shape does not fit (the full checks then raise); an
    empty ``scale`` stands for ones."""
    if not _front_shapes_ok(X, packed, sign, kind, K, cb, nc, scale):
        return np.empty((0, 0), dtype=np.float32), -1
    if scale.shape[0] == 0:
        scale = np.ones(packed.shape[0], dtype=np.float32)
    if X.shape[0] * packed.shape[0] * K < _SERIAL_MACS:
        return _lowbit_avx512_serial(X, packed, sign, kind, cb, nc, scale)
    return _lowbit_team512(X, packed, sign, kind, cb, nc, scale, board, sems, cpus, job)


@numba.njit(cache=True, nogil=True)
def _front2(X, packed, sign, kind, K, cb, nc, scale, board, sems, cpus, job):
    """:func:`_front512` on the AVX2 kernel."""
    if not _front_shapes_ok(X, packed, sign, kind, K, cb, nc, scale):
        return np.empty((0, 0), dtype=np.float32), -1
    if scale.shape[0] == 0:
        scale = np.ones(packed.shape[0], dtype=np.float32)
    if X.shape[0] * packed.shape[0] * K < _SERIAL_MACS:
        return _lowbit_avx2_serial(X, packed, sign, kind, cb, nc, scale)
    return _lowbit_team2(X, packed, sign, kind, cb, nc, scale, board, sems, cpus, job)


#: An empty float32 array: "no scale" for the compiled front (one signature for both).
_NO_SCALE = np.empty(0, dtype=np.float32)
#: ISA -> (team, compiled front, (board, sems, cpus, job)) once :func:`_fast` has served a call
#: of that ISA (the team is rebuilt in a forked child: the entry is then stale).
_FRONT: dict = {}
#: Switch for tests that spy on the Python-level drivers (the front calls them compiled).
_FRONT_ON = True


def _front(kind, X, packed, sign, K, cb, nc, scale, backend):
    """The product through the compiled front, or None (then :func:`_fast` decides): only for
    the Numba backend, a 2-d float32 ``X`` and arrays of the signatures compiled so far.

    Its tail repeats :func:`refimpl.kernels.lut_gemv._front`'s on purpose: the shared lines as
    two helper functions made the cold calls 20–40 µs slower (binary LUT 290–311 → 327–344 µs
    best, three alternated process pairs, 2026-12-07 15:57 UTC) — after a pause each Python
    call is a step from cold caches."""
    if backend is not None and backend != "numba":
        return None
    if type(X) is not np.ndarray or X.dtype is not _F32 or X.ndim != 2 or \
            type(K) is not int or type(packed) is not np.ndarray or \
            type(sign) is not np.ndarray or type(cb) is not np.ndarray:
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
            Y, bad = f[1](X, packed, sign, kind, K, cb, nc, scale, *f[2])
    except TypeError:  # a signature not compiled: the dispatcher's "no matching definition"
        return None
    if bad < 0:
        return None
    if bad:
        raise ValueError(_FAST_BAD[bad])
    return Y


def _front_install(fronts: dict, isa: str, entry, args: tuple, tm, team_args: tuple) -> None:
    """Compile the front ``entry`` for the types of ``args + team_args`` (arguments the checked
    path has just served), keep its compilation at call time disabled, and file it in
    ``fronts`` under ``isa`` (this module's or :mod:`refimpl.kernels.lut_gemv`'s table)."""
    with _backend._numba_lock:
        try:
            sig = tuple(numba.typeof(a) for a in args + team_args)
            if sig not in entry.overloads:
                entry.disable_compile(False)
                try:
                    entry.compile(sig)
                finally:
                    entry.disable_compile(True)
        except Exception:  # an optional shortcut: a call the checked path served never fails
            return         # for it (such arguments keep taking the checked path)
        fronts[isa] = (tm, entry, team_args)


def _front_add(isa, X, packed, sign, kind, K, cb, nc, scale):
    """Compile the front of ``isa`` for these arguments' types (accepted by :func:`_fast`)."""
    tm = _TEAM[0] or team()
    if isa == "avx512" and not _serve512.signatures:
        ready(_JOB512)
    elif isa == "avx2" and not _serve2.signatures:
        ready(_JOB2)
    _front_install(_FRONT, isa, _front512 if isa == "avx512" else _front2,
                   (X, packed, sign, kind, K, cb, nc, _NO_SCALE if scale is None else scale),
                   tm, (tm.board, tm.sems, tm.cpus, _JOB512 if isa == "avx512" else _JOB2))


def _lowbit_cb(X, packed, sign, kind, K, cb, nc, scale):
    """``(Y, bad)`` for the codebook's first ``nc`` entries: the AVX-512 or AVX2 kernel for
    float32 ``X`` where available (:func:`fast_path_isa`), else the portable loops."""
    isa = fast_path_isa() if X.dtype == np.float32 else None
    if isa is not None:
        return _lowbit_vector(isa, X, packed, sign, kind, K, cb, nc, scale)
    bad = _fast_table(X, cb, nc, scale)[1]
    if bad:
        return None, bad
    return _lowbit_generic(X, packed, sign, kind, K, _table16(cb, nc, X.dtype), scale), 0


def _lowbit_numba(X, packed, sign, kind, K, table, scale):
    """The Numba product for checked arguments and the 16-entry ``table``."""
    return _lowbit_cb(X, packed, sign, kind, K, table, 16, scale)[0]


def _lowbit_numpy_cb(X, packed, sign, kind, K, cb, nc, scale):
    """The NumPy reference with the arguments of :func:`_lowbit_cb`."""
    return _lowbit_numpy(X, packed, sign, kind, K, _table16(cb, nc, X.dtype), scale), 0


# ------------------------------------------------------------------ public API
def _prepare_x(X, K):
    X = check_array(X, "X", ndim=(1, 2))
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    one = X.ndim == 1
    X2 = X.reshape(1, -1) if one else X
    if X2.shape[1] != K:
        raise ValueError(f"X must have K={K} columns, got shape {X.shape}")
    return np.ascontiguousarray(X2), one


def _check_words(P, name, Kw, N=None):
    P = np.asarray(P)
    if P.dtype != np.uint64 or P.ndim != 2:
        raise TypeError(f"{name} must be a 2-d uint64 array of packed words, got {P.dtype} "
                        f"with shape {P.shape}")
    if P.shape[1] != Kw:
        raise ValueError(f"{name} must have {Kw} words per row, got shape {P.shape}")
    if N is not None and P.shape[0] != N:
        raise ValueError(f"{name} must have {N} rows like the first plane, got {P.shape}")
    if P.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row, got shape {P.shape}")
    return np.ascontiguousarray(P)


def _prepare_scale(scale, N, dtype):
    if scale is None:
        return np.ones(N, dtype=dtype)
    s = check_array(scale, "scale", ndim=(0, 1))
    s = np.broadcast_to(s, (N,)) if s.ndim == 0 else s
    if s.shape != (N,):
        raise ValueError(f"scale must be a scalar or have shape ({N},) (one per weight row), "
                         f"got {s.shape}")
    return np.ascontiguousarray(s, dtype=dtype)


# The fast call path. After a pause every NumPy step of a call runs from cold caches (35–120 µs
# each on the development machine): the argument checks and the table of a 4096 × 4096 call
# (check_array of X, codebook and scale, _table) took ~0.3 ms of a 1.1–1.3 ms 3-/4-bit call
# after 0.3 s idle (driver alone 0.73–0.95 ms, load 0.5). Arguments that already have the
# kernel's types and layout skip them: the driver (:func:`_prepare` inside it) checks
# finiteness and builds the table, with the same error messages (a separate compiled check
# before the driver cost 0.06–0.07 ms after the pause). The checks here are plain attribute
# tests (``bits`` and ``K`` as ``int``, dtypes against dtype objects, no ``check_int``), the
# environment is read through :func:`refimpl.kernels._backend.env`, the CPU's ISA is cached,
# and the Numba branch of ``dispatch`` is taken inline (same lock) unless calls are recorded.
# the dtypes of the fast path, as dtype objects (a comparison with ``np.float32`` converts
# the scalar type to a dtype at every call)
_F32, _F64, _U64 = np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint64)
_BINARY_CB = np.array([-1.0, 1.0])
_TERNARY_CB = np.array([0.0, 1.0, 0.0, -1.0])  # code nz + 2·sign
_FAST_BAD = {1: "X contains NaN or inf", 2: "codebook contains NaN or inf",
             3: "scale contains NaN or inf"}


def _fast(name, kind, X, packed, sign, K, cb, nc, scale, backend):
    """The product through the fast path, or None when an argument needs the full checks
    (Numba backend; X a non-empty float32 C-contiguous 1-d/2-d array with K columns; the
    words uint64 C-contiguous (N, Kw); the codebook a 1-d float32/float64 array; the scale
    None or float32 C-contiguous (N,))."""
    if type(K) is not int or K < 1 or \
            (backend if backend is not None else default_backend()) != "numba" or \
            type(X) is not np.ndarray or X.dtype != _F32 or not 1 <= X.ndim <= 2 or \
            not X.flags.c_contiguous or X.shape[-1] != K or X.size == 0:
        return None
    Kw = -(-K // _per(kind))
    if type(packed) is not np.ndarray or packed.dtype != _U64 or packed.ndim != 2 or \
            not packed.flags.c_contiguous or packed.shape[1] != Kw or packed.shape[0] == 0:
        return None
    N = packed.shape[0]
    if sign is not packed and (
            type(sign) is not np.ndarray or sign.dtype != _U64 or
            sign.shape != packed.shape or not sign.flags.c_contiguous):
        return None
    if type(cb) is not np.ndarray or cb.ndim != 1 or (cb.dtype != _F32 and
                                                       cb.dtype != _F64) or cb.size < nc:
        return None
    if scale is None:
        scale = np.ones(N, dtype=np.float32)
    elif type(scale) is not np.ndarray or scale.dtype != _F32 or scale.ndim != 1 or \
            scale.shape[0] != N or not scale.flags.c_contiguous:
        return None
    X2 = X.reshape(1, -1) if X.ndim == 1 else X
    isa = None if _backend._recorders else fast_path_isa()
    if isa is not None:  # dispatch's Numba branch without its layers (same lock)
        with _backend._numba_lock:
            Y, bad = _lowbit_vector(isa, X2, packed, sign, kind, K, cb, nc, scale)
            if X.ndim == 2 and X.dtype is _F32 and _FRONT_ON:  # the next such call
                _front_add(isa, X, packed, sign, kind, K, cb, nc, scale)  # takes the front
    else:
        Y, bad = dispatch(name, backend, _lowbit_cb, _lowbit_numpy_cb, X2, packed, sign, kind,
                          K, cb, nc, scale)
    if bad:
        raise ValueError(_FAST_BAD[bad])
    return Y[0] if X.ndim == 1 else Y


def _run(name, kind, X, packed, sign, K, table, scale, one, backend):
    Y = dispatch(name, backend, _lowbit_numba, _lowbit_numpy, X, packed, sign, kind, K, table,
                 scale)
    return Y[0] if one else Y


def kbit_gemv(X, packed, bits: int, K: int, codebook, scale=None,
              backend: str | None = None) -> np.ndarray:
    """Small-batch product ``X @ Ŵ.T`` with k-bit codebook weights kept packed,
    ``Ŵ[n, k] = s_n · codebook[code[n, k]]`` (k-means weight sharing, uniform k-bit codes).

    Parameters
    ----------
    X : ndarray of shape (M, K) or (K,)
        float32 (fast path) or float64 activations; integers are taken as float64.
    packed : ndarray of uint64, shape (N, ceil(K / (64 // bits)))
        :func:`refimpl.kernels.bitpack.pack_codes` of the (N, K) codes.
    bits : int in [1, 4]
    K : int
        Columns of the weight matrix.
    codebook : ndarray of shape (≥ 2^bits,)
        Values of the codes (finite; entries past ``2^bits`` are ignored).
    scale : float or ndarray of shape (N,), optional
        One scale per weight row, applied after the sum (default 1).
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of shape (M, N) (or (N,) for 1-d ``X``), ``X``'s dtype (float64 for integers)

    Notes
    -----
    .. math:: Y_{mn} = s_n \\sum_k \\mathrm{cb}[c_{nk}] X_{mk}

    Codebooks: k-means centroids, Survey Eq. (49), §3.3.3 (Han et al. 2016); the affine
    uniform quantiser's ``α j / (2^k − 1) + β``, Survey Eq. (39), §3.3.1. See the module
    docstring for the kernel.
    """
    if type(bits) is int and 1 <= bits <= 4:  # the fast paths check K (an int >= 1)
        Y = _front(bits, X, packed, packed, K, codebook, 1 << bits, scale, backend)
        if Y is not None:
            return Y
        Y = _fast("kbit_gemv", bits, X, packed, packed, K, codebook, 1 << bits, scale, backend)
        if Y is not None:
            return Y
    bits = check_int(bits, "bits", 1, 4)
    K = check_int(K, "K", 1)
    X, one = _prepare_x(X, K)
    per = 64 // bits
    packed = _check_words(packed, "packed", (K + per - 1) // per)
    cb = check_array(codebook, "codebook", ndim=1)
    if cb.size < 2 ** bits:
        raise ValueError(f"codebook must have 2^bits = {2 ** bits} entries (pad unused codes), "
                         f"got {cb.size}")
    table = _table(bits, cb, X.dtype)
    scale = _prepare_scale(scale, packed.shape[0], X.dtype)
    return _run("kbit_gemv", bits, X, packed, packed, K, table, scale, one, backend)


def binary_weight_gemv(X, Wp, K: int, scale=None, backend: str | None = None) -> np.ndarray:
    """Small-batch product ``X @ (α ⊙ sign(W)).T`` with binary weights kept packed (one bit per
    weight) and float activations.

    Parameters
    ----------
    X : ndarray of shape (M, K) or (K,)
    Wp : ndarray of uint64, shape (N, ceil(K/64))
        :func:`refimpl.kernels.bitpack.pack_signs` of the (N, K) weights (bit 1 ⇔ +1).
    K : int
    scale : float or ndarray of shape (N,), optional
        α per row (BWN, Survey Eq. (23)); default 1.
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of shape (M, N) (or (N,)), ``X``'s dtype

    Notes
    -----
    .. math:: Y_{mn} = \\alpha_n \\sum_k b_{nk} X_{mk}, \\quad b_{nk} \\in \\{-1, +1\\}

    Binary weights: BinaryConnect, Survey Eqs. (20)–(21), §3.1 (Courbariaux et al. 2015); BWN,
    Survey Eqs. (22)–(24) (Rastegari et al. 2016).
    """
    Y = _front(1, X, Wp, Wp, K, _BINARY_CB, 2, scale, backend)
    if Y is None:
        Y = _fast("binary_weight_gemv", 1, X, Wp, Wp, K, _BINARY_CB, 2, scale, backend)
    if Y is not None:
        return Y
    K = check_int(K, "K", 1)
    X, one = _prepare_x(X, K)
    Wp = _check_words(Wp, "Wp", (K + 63) // 64)
    table = _table(1, np.array([-1.0, 1.0]), X.dtype)
    scale = _prepare_scale(scale, Wp.shape[0], X.dtype)
    return _run("binary_weight_gemv", 1, X, Wp, Wp, K, table, scale, one, backend)


def ternary_weight_gemv(X, W_planes, K: int, scale=None,
                        backend: str | None = None) -> np.ndarray:
    """Small-batch product ``X @ (α ⊙ T).T`` with ternary weights ``T ∈ {−1, 0, 1}`` kept as
    two bit planes, and float activations.

    Parameters
    ----------
    X : ndarray of shape (M, K) or (K,)
    W_planes : tuple (nz, sign) of uint64 arrays, shape (N, ceil(K/64)) each
        :func:`refimpl.kernels.bitpack.pack_ternary` of the (N, K) weights.
    K : int
    scale : float or ndarray of shape (N,), optional
        α per row (TWN, Survey Eq. (31)); default 1.
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of shape (M, N) (or (N,)), ``X``'s dtype

    Notes
    -----
    .. math:: Y_{mn} = \\alpha_n \\sum_k T_{nk} X_{mk}

    Ternary weights: ternary connect, Survey Eqs. (27)–(28), §3.2 (Lin et al. 2016); TWN,
    Survey Eqs. (30)–(34) (Li et al. 2016).
    """
    if type(W_planes) in (tuple, list) and len(W_planes) == 2:
        Y = _front(_TERNARY, X, W_planes[0], W_planes[1], K, _TERNARY_CB, 4, scale, backend)
        if Y is not None:
            return Y
        Y = _fast("ternary_weight_gemv", _TERNARY, X, W_planes[0], W_planes[1], K,
                  _TERNARY_CB, 4, scale, backend)
        if Y is not None:
            return Y
    K = check_int(K, "K", 1)
    X, one = _prepare_x(X, K)
    if not isinstance(W_planes, (tuple, list)) or len(W_planes) != 2:
        raise TypeError("W_planes must be the (nz, sign) pair from pack_ternary")
    nz = _check_words(W_planes[0], "W_planes[0] (nz)", (K + 63) // 64)
    sg = _check_words(W_planes[1], "W_planes[1] (sign)", (K + 63) // 64, nz.shape[0])
    table = _table(_TERNARY, None, X.dtype)
    scale = _prepare_scale(scale, nz.shape[0], X.dtype)
    return _run("ternary_weight_gemv", _TERNARY, X, nz, sg, K, table, scale, one, backend)


# ------------------------------------------------------------------ both operands packed
# Binary (and ternary) activations × binary (ternary) weights, XOR-popcount as in
# :func:`bitpack.binary_gemm`, for a few activation rows: parallel over blocks of 64 weight
# rows (bitpack's register-tiled kernel is parallel over blocks of 4 activation rows, so a
# batch of 1–4 ran on one thread). The activation rows stay in L1; each weight row is read once
# from memory and M times from L1.
@numba.njit(cache=True, parallel=True)
def _binary_gemv_numba(Ap, Bp, K):
    M, Kw = Ap.shape
    N = Bp.shape[0]
    out = np.empty((M, N), dtype=np.int32)
    for blk in prange((N + _ROW_BLOCK - 1) // _ROW_BLOCK):
        for j in range(blk * _ROW_BLOCK, min(N, blk * _ROW_BLOCK + _ROW_BLOCK)):
            for i in range(M):
                c = numba.uint64(0)
                for w in range(Kw):  # a · b = K − 2 popcount(a ⊕ b)
                    c += _popcount(Ap[i, w] ^ Bp[j, w])
                out[i, j] = K - 2 * numba.int64(c)
    return out


@numba.njit(cache=True, parallel=True)
def _ternary_gemv_numba(Anz, As, Bnz, Bs):
    M, Kw = Anz.shape
    N = Bnz.shape[0]
    out = np.empty((M, N), dtype=np.int32)
    for blk in prange((N + _ROW_BLOCK - 1) // _ROW_BLOCK):
        for j in range(blk * _ROW_BLOCK, min(N, blk * _ROW_BLOCK + _ROW_BLOCK)):
            for i in range(M):
                p = numba.uint64(0)
                q = numba.uint64(0)
                for w in range(Kw):  # a · b = popcount(nz) − 2 popcount(nz & (s_a ⊕ s_b))
                    m = Anz[i, w] & Bnz[j, w]
                    p += _popcount(m)
                    q += _popcount(m & (As[i, w] ^ Bs[j, w]))
                out[i, j] = numba.int64(p) - 2 * numba.int64(q)
    return out


def binary_gemv(Ap, Bp, K: int, backend: str | None = None) -> np.ndarray:
    """Binary ``A @ B.T`` for a few packed ±1 activation rows (Survey §3.1.1, XNOR-popcount),
    parallel over the weight rows; :func:`bitpack.binary_gemm` calls it for small batches.

    Parameters
    ----------
    Ap : ndarray of uint64, shape (M, ceil(K/64))
        :func:`bitpack.pack_signs` of the activations (M small).
    Bp : ndarray of uint64, shape (N, ceil(K/64))
        :func:`bitpack.pack_signs` of the weights.
    K : int
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of int32, shape (M, N), equal to ``A @ B.T`` exactly.
    """
    K = check_int(K, "K", 1)
    Ap = _check_words(Ap, "Ap", (K + 63) // 64)
    Bp = _check_words(Bp, "Bp", (K + 63) // 64)
    return dispatch("binary_gemv", backend, _binary_gemv_numba, bitpack._binary_gemm_numpy, Ap, Bp, K)


def ternary_gemv(A_planes, B_planes, backend: str | None = None) -> np.ndarray:
    """Ternary ``A @ B.T`` (entries in {−1, 0, 1}, two bit planes each, Survey §3.2) for a few
    activation rows, parallel over the weight rows; :func:`bitpack.ternary_gemm` calls it for
    small batches.

    Parameters
    ----------
    A_planes, B_planes : tuple (nz, sign) of uint64 arrays, shapes (M, Kw) and (N, Kw)
        :func:`bitpack.pack_ternary` of the activations and of the weights.
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of int32, shape (M, N), equal to ``A @ B.T`` exactly.
    """
    Anz = _check_words(A_planes[0], "A_nz", np.asarray(A_planes[0]).shape[-1])
    Kw = Anz.shape[1]
    As = _check_words(A_planes[1], "A_sign", Kw, Anz.shape[0])
    Bnz = _check_words(B_planes[0], "B_nz", Kw)
    Bs = _check_words(B_planes[1], "B_sign", Kw, Bnz.shape[0])
    return dispatch("ternary_gemv", backend, _ternary_gemv_numba, bitpack._ternary_gemm_numpy,
                    Anz, As, Bnz, Bs)


# ------------------------------------------------------------------ int8 × int8 (VNNI)
# The "moonshot" contract of torch's dynamic int8 Linear (fbgemm), stated: activations are
# quantised to int8 per row at call time (symmetric, s_m = max_k |X[m, k]| / 127), weights are
# int8 with one scale per output row, the products are accumulated exactly in int32, and
# there is one float rescale at the end:
#     Y[m, n] = fl32( fl32(Σ_k q(X)[m, k] Wq[n, k]) · fl32(s_m · w_n) ).
# So Y differs from X @ W.T by the activation rounding (≤ s_m / 2 per entry), unlike the
# float-activation kernels above. Measured (4096 × 4096, one thread, CPU time, shared machine at
# load 13–17, 2026-12-07 00:05 UTC, Zen 4): the VNNI kernel alone 0.42–0.44 ms at batch 1 and
# 0.42 ms at batch 2 (16 MiB of int8 weights, ~38 GB/s), 1.3 ms at batch 4, 2.3 ms at batch 8;
# the whole call (quantising X included) 0.64–1.09 / 3.5–3.8 / 10.5–15.8 ms at batch 1 / 8 /
# 64 against torch's fbgemm dynamic int8 Linear 0.41–0.55 / 0.88 / 6.0 ms and float32 BLAS
# 3.0 / 16 / 34 ms. So: level with fbgemm at batch 1–2, 2.5–4× slower from batch 4 on, where
# the batch rows' activation chunks (4 KiB per row) are re-read from L2 for every weight row
# (not blocked over weight rows yet; two accumulator chains per batch row and a row stride off
# 4 KiB were tried and changed nothing).
def quantize_rows_int8(X):
    """Symmetric per-row int8 quantisation (dynamic activation quantisation, Survey §3.3.1
    Eq. (39) with a symmetric range): ``s_m = max_k |X[m, k]| / 127`` (1 for an all-zero row),
    ``q = rint(X / s_m)`` in ``[-127, 127]`` (round half to even).

    Parameters
    ----------
    X : ndarray of shape (M, K) or (K,), real

    Returns
    -------
    q : ndarray of int8, X's shape
    scale : ndarray of float32, shape (M,) (or a 0-d array for 1-d ``X``)
    """
    X = check_array(X, "X", ndim=(1, 2))
    X2 = np.atleast_2d(X).astype(np.float32)  # (M, K)
    amax = np.max(np.abs(X2), axis=1)  # (M,)
    s = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(X2 / s[:, None]), -127, 127).astype(np.int8)  # (M, K)
    if X.ndim == 1:
        return q[0], s[0]
    return q, s


@functools.cache
def _has_vnni() -> bool:
    return cpu_isa() == "avx512" and "avx512vnni" in _host_features() and (
        not numba.config.CPU_FEATURES or "+avx512vnni" in str(numba.config.CPU_FEATURES))


def vnni_available() -> bool:
    """True when :func:`int8_gemv` runs the AVX-512 VNNI (``vpdpbusd``) kernel."""
    return not numba.config.DISABLE_JIT and _has_vnni() and \
        os.environ.get(ISA_ENV, "").strip().lower() in ("", "avx512")


@intrinsic
def _vnni_rows(typingctx, xu, wq, acc_out, r0, r1, b0, bc):
    """``acc_out[b, n] = Σ_k (xu[b, k] − 128) · wq[n, k]`` (uint8 × int8, exact int32; the
    offset's share ``Σ_k 128 wq[n, k]`` is summed by the same instruction) for weight rows
    ``r0 <= n < r1`` and batch rows ``b0 <= b < b0 + bc`` (bc in {1, 2, 4, 8}): 64 bytes of a
    weight row per ``vpdpbusd`` (4 products summed into each of 16 int32 lanes), the last
    chunks through a masked load (zero weights past K); ``xu`` (M, Kp) uint8 (rows any byte
    stride, unit column stride) with Kp a multiple of 256 (4 chunks: the accumulator chains of a batch row), padded with 128 (q = 0)."""
    sig = types.void(xu, wq, acc_out, types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        xa = context.make_array(signature.args[0])(context, builder, args[0])
        wa = context.make_array(signature.args[1])(context, builder, args[1])
        oa = context.make_array(signature.args[2])(context, builder, args[2])
        r0, r1, b0, bc = args[3:]
        I = ir.VectorType(ir.IntType(32), 16)
        B64 = ir.VectorType(ir.IntType(8), 64)
        M64 = ir.VectorType(ir.IntType(1), 64)
        Kp = cgutils.unpack_tuple(builder, xa.shape, 2)[1]
        xstride = cgutils.unpack_tuple(builder, xa.strides, 2)[0]  # bytes between xu rows
        K = cgutils.unpack_tuple(builder, wa.shape, 2)[1]
        N = cgutils.unpack_tuple(builder, oa.shape, 2)[1]
        dp = _fn(builder, "llvm.x86.avx512.vpdpbusd.512", I, [I, I, I])
        mname = "llvm.masked.load.v64i8." + ("p0" if getattr(B64.as_pointer(), "is_opaque",
                                                              False) else "p0v64i8")
        mload = _fn(builder, mname, B64, [B64.as_pointer(), ir.IntType(32), M64, B64])
        zero = ir.Constant(I, None)
        accs = [cgutils.alloca_once(builder, I) for _ in range(8)]
        accw = [cgutils.alloca_once(builder, I) for _ in range(4)]  # Σ 128 w, per chain
        c128 = ir.Constant(I, [_i32(-2139062144)] * 16)  # bytes 0x80 = 128 unsigned
        i8 = ir.IntType(8)
        lanes = ir.Constant(ir.VectorType(i8, 64), [ir.Constant(i8, i) for i in range(64)])
        nch = builder.sdiv(Kp, _i64(64))
        done = builder.append_basic_block("vnni.done")
        sw = builder.switch(bc, done)
        for BC in (8, 4, 2, 1):
            bb = builder.append_basic_block(f"vnni.b{BC}")
            sw.add_case(_i64(BC), bb)
            builder.position_at_end(bb)
            nacc = max(1, 4 // BC)  # chunk c of batch row b into accumulator b·nacc + c mod nacc
            with cgutils.for_range(builder, builder.sub(r1, r0)) as rl:
                n = builder.add(r0, rl.index)
                wrow = builder.gep(wa.data, [builder.mul(n, K)])
                for a in range(BC * nacc):
                    builder.store(zero, accs[a])
                for u in range(nacc):
                    builder.store(zero, accw[u])
                with cgutils.for_range(builder, builder.sdiv(nch, _i64(nacc))) as cl:
                    for u in range(nacc):
                        c = builder.add(builder.mul(cl.index, _i64(nacc)), _i64(u))
                        off = builder.mul(c, _i64(64))
                        # weight bytes past K read as 0: lanes l < min(max(K − off, 0), 64)
                        left = builder.sub(K, off)
                        left = builder.select(builder.icmp_signed("<", left, _i64(0)), _i64(0),
                                              left)
                        left = builder.select(builder.icmp_signed("<", left, _i64(64)), left,
                                              _i64(64))
                        tv = builder.insert_element(ir.Constant(ir.VectorType(i8, 64),
                                                                ir.Undefined),
                                                    builder.trunc(left, i8), _i32(0))
                        tv = builder.shuffle_vector(tv, tv, ir.Constant(
                            ir.VectorType(ir.IntType(32), 64), [_i32(0)] * 64))
                        mask = builder.icmp_unsigned("<", lanes, tv)
                        wp = builder.bitcast(builder.gep(wrow, [off]), B64.as_pointer())
                        wv = builder.bitcast(builder.call(mload, [wp, _i32(1), mask,
                                                                  ir.Constant(B64, None)]), I)
                        # the offset's share, Σ_k 128 w[n, k], with the same instruction
                        builder.store(builder.call(dp, [builder.load(accw[u]), c128, wv]),
                                      accw[u])
                        for b in range(BC):
                            xrow = builder.add(builder.mul(builder.add(b0, _i64(b)), xstride),
                                               off)
                            xp = builder.bitcast(builder.gep(xa.data, [xrow]), I.as_pointer())
                            xv = builder.load(xp, align=1)
                            a = accs[b * nacc + u]
                            builder.store(builder.call(dp, [builder.load(a), xv, wv]), a)
                wsum = builder.load(accw[0])
                for u in range(1, nacc):
                    wsum = builder.add(wsum, builder.load(accw[u]))
                for b in range(BC):
                    parts = [builder.load(accs[b * nacc + u]) for u in range(nacc)]
                    v = builder.sub(parts[0], wsum)  # Σ (q + 128) w − Σ 128 w = Σ q w
                    for p_ in parts[1:]:
                        v = builder.add(v, p_)
                    width = 16
                    while width > 1:
                        width //= 2
                        lo = builder.shuffle_vector(v, v, ir.Constant(
                            ir.VectorType(ir.IntType(32), width), [_i32(i) for i in range(width)]))
                        hi = builder.shuffle_vector(v, v, ir.Constant(
                            ir.VectorType(ir.IntType(32), width),
                            [_i32(width + i) for i in range(width)]))
                        v = builder.add(lo, hi)
                    o = builder.add(builder.mul(builder.add(b0, _i64(b)), N), n)
                    builder.store(builder.extract_element(v, _i32(0)), builder.gep(oa.data, [o]))
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, parallel=True)
def _int8_vnni(xu, wq):
    """Σ_k (xu[m, k] − 128) wq[n, k] (int32, exact), parallel over blocks of 64 weight
    rows."""
    M = xu.shape[0]
    N = wq.shape[0]
    acc = np.empty((M, N), dtype=np.int32)
    for blk in prange((N + _ROW_BLOCK - 1) // _ROW_BLOCK):
        r0 = blk * _ROW_BLOCK
        r1 = min(N, r0 + _ROW_BLOCK)
        b = 0
        while b < M:
            left = M - b
            bc = 8 if left >= 8 else (4 if left >= 4 else (2 if left >= 2 else 1))
            _vnni_rows(xu, wq, acc, r0, r1, b, bc)
            b += bc
    return acc


@numba.njit(cache=True, parallel=True)
def _int8_loops(xq, wq):
    """Σ_k xq[m, k] wq[n, k] in int32 (exact for K · 127² < 2^31), plain loops."""
    M, K = xq.shape
    N = wq.shape[0]
    acc = np.empty((M, N), dtype=np.int32)
    for n in prange(N):
        for m in range(M):
            s = np.int32(0)
            for k in range(K):
                s += np.int32(xq[m, k]) * np.int32(wq[n, k])
            acc[m, n] = s
    return acc


def _int8_rescale(acc, xs, ws):
    """The one float rescale: ``fl32(fl32(acc) · fl32(s_m · w_n))``."""
    c = xs[:, None] * ws[None, :]  # (M, N) float32
    return acc.astype(np.float32) * c


def _int8_numba(xq, xs, wq, ws):
    if vnni_available():
        K = wq.shape[1]
        Kp = -(-K // 256) * 256
        # u8 = q + 128 (vpdpbusd multiplies unsigned by signed bytes); the padding (q = 0)
        # meets zero weights from the masked load; the kernel subtracts Σ_k 128 · w[n, k]
        xu = np.full((xq.shape[0], Kp), 128, dtype=np.uint8)
        xu[:, :K] = (xq.astype(np.int16) + 128).astype(np.uint8)
        acc = _int8_vnni(xu, wq)
    else:
        acc = _int8_loops(xq, wq)
    return _int8_rescale(acc, xs, ws)


def _int8_numpy(xq, xs, wq, ws):
    acc = (xq.astype(np.int64) @ wq.T.astype(np.int64)).astype(np.int32)  # exact integers
    return _int8_rescale(acc, xs, ws)


def int8_gemv(X, Wq, w_scale, backend: str | None = None) -> np.ndarray:
    """``X @ Ŵ.T`` with int8 weights ``Ŵ[n] = w_scale[n] · Wq[n]`` and dynamically int8-quantised
    activations: the contract of torch's dynamic int8 ``Linear`` (symmetric variant).

    Parameters
    ----------
    X : ndarray of shape (M, K) or (K,)
        Real activations, quantised per row by :func:`quantize_rows_int8` at each call.
    Wq : ndarray of int8, shape (N, K)
        Weights in ``[-127, 127]`` (e.g. ``quantize_rows_int8(W)[0]``).
    w_scale : ndarray of shape (N,) or float
        One scale per weight row.
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of float32, shape (M, N) (or (N,))

    Notes
    -----
    .. math:: Y_{mn} = \\mathrm{fl}\\big(\\mathrm{fl}(\\textstyle\\sum_k q_{mk} W^q_{nk})\\,
              \\mathrm{fl}(s_m w_n)\\big), \\quad q_{mk} = \\mathrm{rint}(X_{mk} / s_m),
              \\; s_m = \\max_k |X_{mk}| / 127

    The integer sum is exact (int32; K ≤ 2^31 / 127² ≈ 133 000), so both backends give the
    same bits. Uniform symmetric quantisation, Survey Eq. (39), §3.3.1; the int8 GEMM with
    dynamic activation ranges is Jacob et al. (2018) / fbgemm. On AVX-512 VNNI CPUs the sum is
    one ``vpdpbusd`` per 64 weight bytes (activations offset to unsigned bytes, the offset's
    contribution ``128 Σ_k W^q_{nk}`` subtracted after).
    """
    X = check_array(X, "X", ndim=(1, 2))
    one = X.ndim == 1
    Wq = np.asarray(Wq)
    if Wq.dtype != np.int8 or Wq.ndim != 2:
        raise TypeError(f"Wq must be a 2-d int8 array, got {Wq.dtype} with shape {Wq.shape}")
    K = Wq.shape[1]
    if np.atleast_2d(X).shape[1] != K:
        raise ValueError(f"X must have K={K} columns, got shape {X.shape}")
    if K > (2 ** 31 - 1) // (255 * 128):
        raise ValueError(f"Wq has K={K} columns: the int32 sum could overflow (K must be "
                         f"<= {(2 ** 31 - 1) // (255 * 128)})")
    if Wq.size and Wq.min() < -127:
        raise ValueError("Wq must lie in [-127, 127] (symmetric int8)")
    ws = _prepare_scale(w_scale, Wq.shape[0], np.float32)
    xq, xs = quantize_rows_int8(np.atleast_2d(X))
    Wq = np.ascontiguousarray(Wq)
    Y = dispatch("int8_gemv", backend, _int8_numba, _int8_numpy, xq, xs, Wq, ws)
    return Y[0] if one else Y
