"""Attention kernels that never form the ``n × n`` matrix (Survey §7).

=================================  ===========================================  ==============
kernel                             what                                         used by
=================================  ===========================================  ==============
:func:`sliding_window_attention`   sliding-window (+ dilated, + global)         Longformer
                                   attention, O(n·w) time and memory            (§7.2)
:func:`block_sparse_attention`     attention restricted to a block layout,      BlockBERT,
                                   O(nnz blocks · b²) time                      Sparse Tr. (§7.1)
:func:`causal_linear_attention`    causal linear attention by prefix sums,      linear Transf.
                                   O(n·d·d_v) time, O(d·d_v) state              (§7.2)
=================================  ===========================================  ==============

Each exists as a Numba function (``cache=True``, ``prange`` over rows) beside a pure-NumPy
reference with the same signature, chosen by ``backend="numba" | "numpy"`` (default
``$REFIMPL_BACKEND``). The NumPy references are themselves sub-quadratic: they process blocks
of queries with BLAS and never allocate an ``n × n`` array. Inputs are ``(B, H, n, d)``; float32
and float64 are supported and the output has the inputs' (promoted) dtype. Non-finite inputs
(NaN, ±inf) are refused with a ``ValueError`` naming the argument, in both backends (one
``O(size)`` check; the row log-sum-exp given to the backward pass may be ``-inf``, for rows
without keys).

References
----------
.. [1] I. Beltagy, M. E. Peters, A. Cohan, "Longformer: The Long-Document Transformer", 2020.
.. [2] R. Child et al., "Generating Long Sequences with Sparse Transformers", 2019.
.. [3] A. Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with
   Linear Attention", ICML 2020.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
from numba.extending import overload

from refimpl.kernels._backend import dispatch

__all__ = ["sliding_window_attention", "block_sparse_attention", "causal_linear_attention",
           "check_window"]

_BLAS_LIBS = None


@contextlib.contextmanager
def _one_blas_thread():
    """Limit BLAS to one thread for the duration: the kernels call many small GEMMs, from
    Numba's parallel tasks or a Python loop, where BLAS threads only oversubscribe the cores.
    (threadpoolctl's library handles are looked up once; setting the count is a C call.)"""
    global _BLAS_LIBS
    if _BLAS_LIBS is None:
        # Numba's np.dot calls SciPy's BLAS (scipy.linalg.cython_blas, its own OpenBLAS beside
        # NumPy's), loaded lazily by the first kernel call: load it first, or the controller
        # misses it and every per-block GEMM of a prange task spawns BLAS threads of its own
        # (4 busy threads on 2 cores; measured 2x slower than one Numba thread)
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _BLAS_LIBS = [lc for lc in ThreadpoolController().lib_controllers
                      if lc.user_api == "blas"]
    old = [lc.num_threads for lc in _BLAS_LIBS]
    for lc in _BLAS_LIBS:
        lc.set_num_threads(1)
    try:
        yield
    finally:
        for lc, k in zip(_BLAS_LIBS, old):
            lc.set_num_threads(k)


def _check_finite(a: np.ndarray, name: str) -> None:
    """The kernels' NaN policy: a public entry point refuses non-finite inputs (``ValueError``
    naming the argument), in both backends, as the chapter wrappers do; one O(size) pass."""
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")


def _check_qkv(Q, K, V, names=("Q", "K", "V")):
    # local validation (kernels import nothing from the chapters)
    for nm, a in zip(names, (Q, K, V)):
        if not isinstance(a, np.ndarray) or a.ndim != 4:
            raise ValueError(f"{nm} must be a 4-D ndarray (batch, heads, n, d), got "
                             f"{getattr(a, 'shape', type(a).__name__)}")
        if a.dtype.kind != "f":
            raise TypeError(f"{nm} must be a float array, got dtype {a.dtype}")
    q, k, v = names
    if Q.shape[-1] != K.shape[-1]:
        raise ValueError(f"{k} must have the same last dimension d as {q}, got {q} {Q.shape} "
                         f"and {k} {K.shape} (d mismatch)")
    if Q.shape[:3] != K.shape[:3] or K.shape[:3] != V.shape[:3]:
        raise ValueError(f"{q}, {k} and {v} must share (batch, heads, n), got {Q.shape}, "
                         f"{K.shape}, {V.shape}")
    for nm, a in zip(names, (Q, K, V)):
        _check_finite(a, nm)
    dt = np.result_type(Q.dtype, K.dtype, V.dtype)
    return (np.ascontiguousarray(Q, dtype=dt), np.ascontiguousarray(K, dtype=dt),
            np.ascontiguousarray(V, dtype=dt))


def check_window(window, dilation, global_idx, n: int):
    """Validate Longformer's window arguments; returns ``(half, dilation, global_idx)``."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise TypeError(f"window must be an integer, got {window!r}")
    window = int(window)
    if window < 0 or window % 2:
        raise ValueError(f"window must be a non-negative even integer (w/2 keys on each side),"
                         f" got {window}")
    if window > n:
        raise ValueError(f"window must be <= the sequence length n={n}, got {window}")
    if isinstance(dilation, bool) or not isinstance(dilation, (int, np.integer)) or dilation < 1:
        raise ValueError(f"dilation must be an integer >= 1, got {dilation!r}")
    g = np.asarray(global_idx if global_idx is not None else (), dtype=np.int64).ravel()
    if g.size and (g.min() < 0 or g.max() >= n):
        raise ValueError(f"global_idx must lie in [0, {n}), got {g.tolist()}")
    if np.unique(g).size != g.size:
        raise ValueError(f"global_idx must not repeat a position, got {g.tolist()}")
    return window // 2, int(dilation), np.sort(g)


# ------------------------------------------------------------------------------ sliding window
# Vectorisable exp for the softmax numerators (STYLE: ``math.exp``/scalar ``np.exp`` is a slow
# libm call per element; Numba has no SVML here). Cody-Waite range reduction
# exp(t) = 2^k · exp(r), k = round(t / ln 2), |r| <= ln2/2, then a polynomial for exp(r) and
# 2^k assembled from its exponent bits. Arguments are <= 0 (the row maximum is subtracted), so
# 2^k never overflows; arguments below the smallest normal's log return 0 (absolute error
# < 1.2e-38 (float32) / 2.3e-308 (float64) against numerators of which the largest is 1); a NaN
# argument returns NaN.
# Maximum relative error against ``np.exp`` (float64) on the used range, measured on a dense grid
# by tests/kernels/test_attention_kernels.py::test_exp_approximation_error:
#   float32 (Cephes expf polynomial, degree 7):        8.3e-8 on [-87, 0]  (test bound 2e-7)
#   float64 (Cephes exp Padé form, rational in r²):    3.1e-16 on [-708, 0] (test bound 1e-15)
_LOG2E = 1.4426950408889634
_EXP_MIN32 = -87.0  # exp(-87.3) is float32's smallest normal
_EXP_MIN64 = -708.0  # exp(-708.4) is float64's smallest normal


@numba.njit(cache=True, fastmath={"contract", "arcp", "nsz"})
def _exp_shift_sum_f32(x, mx, scale, scratch):
    # x[c] <- exp(scale * (x[c] - mx)) in place (contiguous float32 row, no gathers), returns
    # the sum. ``scratch``: float32, length >= len(x), holds the 2^k factors.
    # No ``nnan``/``ninf``: a NaN score stays NaN in its numerator and in the sum.
    m = x.shape[0]
    pow2 = scratch[:m]
    bits = pow2.view(np.int32)
    for c in range(m):
        t = (x[c] - mx) * scale
        tc = max(t, np.float32(_EXP_MIN32))
        ki = np.int32(tc * np.float32(_LOG2E) - np.float32(0.5))  # round(tc/ln2), tc <= 0
        k = np.float32(ki)
        r = (tc - k * np.float32(0.693359375)) - k * np.float32(-2.12194440e-4)  # ln2 = C1 + C2
        z = r * r
        p = ((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
               + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
             + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
        x[c] = p * z + r + np.float32(1.0)  # exp(r)
        # 2^k as float32 bits; 0.0 below the range; a NaN argument gives NaN (0x7fc00000)
        bits[c] = ((ki + np.int32(127)) << np.int32(23)) if t >= np.float32(_EXP_MIN32) \
            else (np.int32(0) if t < np.float32(_EXP_MIN32) else np.int32(0x7FC00000))
    s = np.float32(0.0)
    for c in range(m):
        v = x[c] * pow2[c]
        x[c] = v
        s += v
    return s


@numba.njit(cache=True, fastmath={"contract", "arcp", "nsz"})
def _exp_shift_sum_f64(x, mx, scale, scratch):
    # float64 twin of _exp_shift_sum_f32; exp(r) by Cephes' Padé form
    # 1 + 2 r P(r²) / (Q(r²) − r P(r²)).
    m = x.shape[0]
    pow2 = scratch[:m]
    bits = pow2.view(np.int64)
    for c in range(m):
        t = (x[c] - mx) * scale
        tc = max(t, _EXP_MIN64)
        # (LLVM leaves this float64 loop scalar on AVX2 — no packed int64 conversion — but it
        # is still a few multiply-adds instead of a libm call; float32 is the vectorised path)
        ki = np.int32(tc * _LOG2E - 0.5)
        k = np.float64(ki)
        r = (tc - k * 6.93145751953125e-1) - k * 1.42860682030941723212e-6  # ln2 = C1 + C2
        z = r * r
        px = r * ((1.26177193074810590878e-4 * z + 3.02994407707441961300e-2) * z
                  + 9.99999999999999999910e-1)
        qx = ((3.00198505138664455042e-6 * z + 2.52448340349684104192e-3) * z
              + 2.27265548208155028766e-1) * z + 2.00000000000000000009e0
        x[c] = 1.0 + 2.0 * px / (qx - px)
        bits[c] = ((np.int64(ki) + np.int64(1023)) << np.int64(52)) if t >= _EXP_MIN64 \
            else (np.int64(0) if t < _EXP_MIN64 else np.int64(0x7FF8000000000000))
    s = 0.0
    for c in range(m):
        v = x[c] * pow2[c]
        x[c] = v
        s += v
    return s


@numba.njit(cache=True, fastmath=True)
def _row_max(x):
    # contiguous row, no gathers (LLVM keeps this reduction scalar, vmaxss: ~1 ms per 8192 rows
    # of 257, not worth unrolling). A NaN in x is still caught: its numerator is NaN, see
    # _exp_shift_sum_f32
    mx = x[0]
    for c in range(1, x.shape[0]):
        mx = max(mx, x[c])
    return mx


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _scale_rows(o, zs):
    # o[r] /= zs[r]: normalise the d_v outputs, not the band of scores
    for r in range(o.shape[0]):
        inv = 1 / zs[r]
        for c in range(o.shape[1]):
            o[r, c] *= inv


def _exp_shift_sum(x, mx, scale, scratch):
    """exp(scale·(x − mx)) in place, returns the sum (dtype-dispatched; this body runs only
    with ``NUMBA_DISABLE_JIT=1``, compiled code uses the overload below)."""
    if x.dtype == np.float32:
        return _exp_shift_sum_f32(x, mx, scale, scratch)
    return _exp_shift_sum_f64(x, mx, scale, scratch)


@overload(_exp_shift_sum)
def _exp_shift_sum_ol(x, mx, scale, scratch):
    if x.dtype == numba.types.float32:
        return lambda x, mx, scale, scratch: _exp_shift_sum_f32(x, mx, scale, scratch)
    return lambda x, mx, scale, scratch: _exp_shift_sum_f64(x, mx, scale, scratch)


def _exp_approx(x):
    """The kernels' vectorised exp on an array of arguments ``<= 0`` (for tests).

    Parameters
    ----------
    x : ndarray of float32 or float64, 1-D, all ``<= 0``

    Returns
    -------
    ndarray like ``x``
        ``exp(x)`` by the range-reduced polynomial used in the sliding-window softmax.
    """
    x = np.array(x, copy=True)
    if x.ndim != 1 or x.dtype not in (np.float32, np.float64):
        raise ValueError(f"x must be a 1-D float32/float64 array, got {x.dtype} {x.shape}")
    if x.size and x.max() > 0:
        raise ValueError("x must be <= 0 (the softmax subtracts the row maximum)")
    if x.dtype == np.float32:
        _exp_shift_sum_f32(x, np.float32(0), np.float32(1), np.empty_like(x))
    else:
        _exp_shift_sum_f64(x, 0.0, 1.0, np.empty_like(x))
    return x


_WARM = 384  # side of the one-time per-thread BLAS warm-up product (see below)


@numba.njit(cache=True, parallel=True)
def _sliding_window_blocked(Qp, Kp, Vp, half, seg, pos, gidx, Kg, Vg, dil, scale, outp,
                            warmed):
    # Qp, Kp, Vp: the sequence reordered so every residue class mod ``dil`` is a contiguous
    # segment [seg[r], seg[r+1]) on which the window is a plain band of half-width ``half``.
    # Query blocks of _BLOCK rows, one prange task each: unscaled scores against the
    # <= _BLOCK + 2 half band keys by one BLAS GEMM (np.dot on contiguous slices), per row the
    # band maximum and the vectorised exp on the contiguous band slice, then one GEMM with the
    # values and a division of the d_v outputs by the row sums.
    B, H, n, d = Qp.shape
    ng = gidx.shape[0]
    n_seg = seg.shape[0] - 1
    # enumerate (segment, block start) pairs
    n_blocks = 0
    for r in range(n_seg):
        n_blocks += (seg[r + 1] - seg[r] + _BLOCK - 1) // _BLOCK
    starts = np.empty(n_blocks, dtype=np.int64)
    segof = np.empty(n_blocks, dtype=np.int64)
    t = 0
    for r in range(n_seg):
        for a in range(seg[r], seg[r + 1], _BLOCK):
            starts[t] = a
            segof[t] = r
            t += 1
    for task in numba.prange(B * H * n_blocks):
        # Measured: SciPy's OpenBLAS (0.3.30, one thread) runs these small GEMMs ~1.6x slower
        # in a thread until that thread has made one call with a dimension >= 384 (256 is not
        # enough; cause inside OpenBLAS not traced). Each worker thread makes one such call,
        # once per process (``warmed`` persists across calls): ~6 ms once, then the band GEMMs
        # of a d = 64, w = 256 window run ~1.6x faster.
        tid = numba.get_thread_id()
        if warmed[tid] == 0:
            warmed[tid] = 1
            Xw = np.zeros((_WARM, _WARM), dtype=Qp.dtype)
            Xw = np.dot(Xw, Xw)
        bh = task // n_blocks
        blk = task % n_blocks
        b = bh // H
        h = bh % H
        a = starts[blk]
        s0, s1 = seg[segof[blk]], seg[segof[blk] + 1]
        e = min(a + _BLOCK, s1)
        ka = max(s0, a - half)
        kb = min(s1, e + half)
        qb = Qp[b, h, a:e]
        S = np.dot(qb, Kp[b, h, ka:kb].T)  # (bq, bk) unscaled scores q·k
        if ng > 0:
            Sg = np.dot(qb, Kg[b, h].T)  # (bq, ng) scores against global keys
        else:
            Sg = np.zeros((e - a, 0), dtype=Qp.dtype)
        scratch = np.empty(kb - ka, dtype=Qp.dtype)  # the exp's 2^k factors
        zs = np.empty(e - a, dtype=Qp.dtype)
        for r in range(e - a):
            i = a + r
            lo = max(ka, i - half) - ka
            hi = min(kb, i + half + 1) - ka
            band = S[r, lo:hi]  # contiguous: the keys of query i
            mx = _row_max(band)
            for g in range(ng):
                off = gidx[g] - pos[i]
                if not (off % dil == 0 and abs(off) <= half * dil) and Sg[r, g] > mx:
                    mx = Sg[r, g]
            S[r, :lo] = 0
            S[r, hi:] = 0
            z = _exp_shift_sum(band, mx, scale, scratch)  # band <- exp((s - mx)/sqrt(d))
            for g in range(ng):  # a few scalar exps per row
                off = gidx[g] - pos[i]
                if off % dil == 0 and abs(off) <= half * dil:
                    Sg[r, g] = 0  # already in the window
                else:
                    w = np.exp((Sg[r, g] - mx) * scale)
                    Sg[r, g] = w
                    z += w
            zs[r] = z
        o = np.dot(S, Vp[b, h, ka:kb])  # (bq, d_v) unnormalised
        if ng > 0:
            o += np.dot(Sg, Vg[b, h])
        _scale_rows(o, zs)
        outp[b, h, a:e] = o


_BLOCK = 64


_WARMED: dict = {}


def _warmed_threads(dtype) -> np.ndarray:
    # per dtype, one flag per Numba thread id: has this thread made its BLAS warm-up call
    if dtype not in _WARMED:
        _WARMED[dtype] = np.zeros(numba.config.NUMBA_NUM_THREADS, dtype=np.int64)
    return _WARMED[dtype]


def _sliding_window_numba(Q, K, V, half, dil, gidx, is_global, out):
    B, H, n, d = Q.shape
    scale = Q.dtype.type(1.0 / np.sqrt(d))  # applied inside the exp: Q is not copied
    if dil > 1:
        perm = np.concatenate([np.arange(r, n, dil) for r in range(dil)])
        Qp, Kp, Vp = (np.ascontiguousarray(x[:, :, perm]) for x in (Q, K, V))  # residue order
        seg = np.cumsum([0] + [len(range(r, n, dil)) for r in range(dil)]).astype(np.int64)
    else:
        perm = np.arange(n)
        Qp, Kp, Vp = Q, K, V
        seg = np.array([0, n], dtype=np.int64)
    Kg = np.ascontiguousarray(K[:, :, gidx])  # (B, H, ng, d)
    Vg = np.ascontiguousarray(V[:, :, gidx])
    outp = np.empty_like(out) if dil > 1 else out
    # chunks of 4 query blocks handed out dynamically: on a shared machine a descheduled thread
    # no longer holds back a static half of the blocks
    with numba.parallel_chunksize(4):
        _sliding_window_blocked(Qp, Kp, Vp, half, seg, perm, gidx, Kg, Vg, dil, scale, outp,
                                _warmed_threads(Q.dtype))
    if dil > 1:
        out[:, :, perm] = outp
    if gidx.size:  # global rows attend to every key (O(g n d))
        S = Q[:, :, gidx] @ np.swapaxes(K, -1, -2) * scale  # (B, H, g, n)
        S = np.exp(S - S.max(axis=-1, keepdims=True))
        out[:, :, gidx] = (S / S.sum(axis=-1, keepdims=True)) @ V


def _sliding_window_numpy(Q, K, V, half, dil, gidx, is_global, out, block: int = 64):
    B, H, n, d = Q.shape
    scale = 1.0 / np.sqrt(d)
    ng = gidx.size
    Kg = K[:, :, gidx]  # (B, H, ng, d)
    Vg = V[:, :, gidx]  # (B, H, ng, d_v)
    # a dilated window is a plain window on each residue class i ≡ r (mod dil)
    for r in range(dil):
        pos = np.arange(r, n, dil)  # original positions of this sub-sequence
        m = pos.size
        for a in range(0, m, block):
            e = min(a + block, m)
            ka, kb = max(0, a - half), min(m, e + half)
            qp, kp = pos[a:e], pos[ka:kb]
            S = Q[:, :, qp] @ np.swapaxes(K[:, :, kp], -1, -2) * scale  # (B, H, bq, bk)
            qi = np.arange(a, e)[:, None]
            ki = np.arange(ka, kb)[None, :]
            M = np.abs(qi - ki) <= half  # (bq, bk) band in sub-sequence units
            parts = [(S, M, V[:, :, kp])]
            if ng:
                Sg = Q[:, :, qp] @ np.swapaxes(Kg, -1, -2) * scale  # (B, H, bq, ng)
                off = gidx[None, :] - qp[:, None]
                Mg = ~((off % dil == 0) & (np.abs(off) <= half * dil))  # not already in window
                parts.append((Sg, Mg, Vg))
            mx = np.max([np.where(Mx, Sx, -np.inf).max(axis=-1, keepdims=True)
                         for Sx, Mx, _ in parts], axis=0)  # (B, H, bq, 1); finite: self is in M
            acc = 0.0
            Z = 0.0
            for Sx, Mx, Vx in parts:
                W = np.exp(np.where(Mx, Sx - mx, -np.inf))
                Z = Z + W.sum(axis=-1, keepdims=True)
                acc = acc + W @ Vx
            out[:, :, qp] = acc / Z
    if ng:  # global rows attend to every key
        gq = np.nonzero(is_global)[0]
        S = Q[:, :, gq] @ np.swapaxes(K, -1, -2) * scale  # (B, H, ng, n)
        S = np.exp(S - S.max(axis=-1, keepdims=True))
        out[:, :, gq] = (S / S.sum(axis=-1, keepdims=True)) @ V


def sliding_window_attention(Q, K, V, window: int, dilation: int = 1, global_idx=(), *,
                             backend=None) -> np.ndarray:
    """Longformer attention: sliding window (+ dilation, + global tokens), never ``n × n``.

    Survey §7.2 (Beltagy et al., 2020). Query ``i`` attends to keys ``i + dilation·o`` for
    ``o`` in ``[-w/2, w/2]`` (those inside ``[0, n)``) and to every global position; a global
    position attends to every key. Scores are ``q·k/√d`` and one softmax runs over the union.

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
    V : ndarray of shape (B, H, n, d_v)
    window : int
        ``w``, even, ``0 <= w <= n`` (``w/2`` keys on each side).
    dilation : int
        Gap between attended positions (1 = contiguous window).
    global_idx : sequence of int
        Positions with symmetric global attention.
    backend : {"numba", "numpy", None}

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        Equal to dense attention under :func:`refimpl.attention.linear.longformer_mask`.

    Raises
    ------
    ValueError
        Q, K or V contains NaN or inf (named in the message), or a shape/argument error.

    Notes
    -----
    Time :math:`O(n (w + g) d + g n d)`, memory :math:`O(n d)` for the output plus
    :math:`O(b (b + w))` scratch per block of ``b = 64`` queries (both backends). A dilated
    window is a plain window on each residue class ``i mod dilation``; the Numba kernel
    reorders the sequence by residue class and runs query blocks in parallel (``prange``,
    dynamic chunks of 4 blocks), each with one BLAS GEMM for its band scores and one for the
    values. The softmax between them works on each query's contiguous band slice: the band
    maximum, then a vectorised (AVX2) range-reduced polynomial ``exp`` (Cody–Waite reduction, Cephes
    polynomials; maximum relative error vs ``np.exp`` about 1e-7 in float32 and 3e-16 in
    float64, tested) instead of a scalar libm call per score; ``1/√d`` is applied inside the
    exponent, so ``Q`` is not copied. Float32 inputs are computed and accumulated in float32
    (agreement with float64 masked dense attention about 1e-6). BLAS (NumPy's and SciPy's,
    which Numba's ``np.dot`` calls) is limited to one thread during the call: many small GEMMs
    run inside the parallel tasks.
    """
    Q, K, V = _check_qkv(Q, K, V)
    n = Q.shape[2]
    half, dil, g = check_window(window, dilation, global_idx, n)
    is_global = np.zeros(n, dtype=np.bool_)
    is_global[g] = True
    out = np.empty(Q.shape[:3] + (V.shape[3],), dtype=Q.dtype)
    with _one_blas_thread():
        dispatch("sliding_window_attention", backend, _sliding_window_numba,
                 _sliding_window_numpy, Q, K, V, half, dil, g, is_global, out)
    return out


# ------------------------------------------------------------------------------ block sparse
@numba.njit(cache=True, parallel=True)
def _block_sparse_numba_impl(Q, Kt, V, layout, bs, scale, out):
    # Kt is K transposed to (B, H, d, n): scores of a query against one active key block are
    # an axpy over that block's contiguous columns (vectorised without fastmath).
    B, H, n, d = Q.shape
    dv = V.shape[3]
    nbq = layout.shape[1]
    nbk = layout.shape[2]
    for task in numba.prange(B * H * nbq):
        bh = task // nbq
        b = bh // H
        h = bh % H
        I = task % nbq
        cols = np.empty(nbk, dtype=np.int64)
        nc = 0
        for J in range(nbk):
            if layout[h, I, J]:
                cols[nc] = J
                nc += 1
        s = np.empty(max(nc * bs, 1), dtype=Q.dtype)
        acc = np.empty(dv, dtype=Q.dtype)
        for i in range(I * bs, (I + 1) * bs):
            if nc == 0:
                for k in range(dv):
                    out[b, h, i, k] = 0
                continue
            s[:] = 0
            for k in range(d):
                qk = Q[b, h, i, k] * scale
                row = Kt[b, h, k]
                for c in range(nc):
                    blk = row[cols[c] * bs:(cols[c] + 1) * bs]
                    sc = s[c * bs:(c + 1) * bs]
                    for t in range(bs):
                        sc[t] += qk * blk[t]
            mx = s[0]
            for t in range(1, nc * bs):
                if s[t] > mx:
                    mx = s[t]
            z = s[0] * 0
            for t in range(nc * bs):
                e = np.exp(s[t] - mx)
                s[t] = e
                z += e
            acc[:] = 0
            for c in range(nc):
                j0 = cols[c] * bs
                for t in range(bs):
                    w = s[c * bs + t] / z
                    vj = V[b, h, j0 + t]
                    for k in range(dv):
                        acc[k] += w * vj[k]
            for k in range(dv):
                out[b, h, i, k] = acc[k]


def _block_sparse_numba(Q, K, V, layout, bs, out):
    Kt = np.ascontiguousarray(np.swapaxes(K, -1, -2))  # (B, H, d, n)
    scale = Q.dtype.type(1.0 / np.sqrt(Q.shape[3]))
    _block_sparse_numba_impl(Q, Kt, V, layout, bs, scale, out)


def _block_sparse_numpy(Q, K, V, layout, bs, out):
    B, H, n, d = Q.shape
    scale = 1.0 / np.sqrt(d)
    for h in range(H):
        for I in range(layout.shape[1]):
            cols = np.nonzero(layout[h, I])[0]
            rows = slice(I * bs, (I + 1) * bs)
            if cols.size == 0:
                out[:, h, rows] = 0.0
                continue
            kidx = (cols[:, None] * bs + np.arange(bs)[None, :]).ravel()  # (nc*bs,)
            S = Q[:, h, rows] @ np.swapaxes(K[:, h, kidx], -1, -2) * scale  # (B, bs, nc*bs)
            S = np.exp(S - S.max(axis=-1, keepdims=True))
            out[:, h, rows] = (S / S.sum(axis=-1, keepdims=True)) @ V[:, h, kidx]


def block_sparse_attention(Q, K, V, layout, block_size: int, *, backend=None) -> np.ndarray:
    """Attention restricted to a block layout: query block ``I`` sees key blocks ``J`` with
    ``layout[h, I, J]`` (Survey §7.1: BlockBERT, Sparse Transformer).

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
    V : ndarray of shape (B, H, n, d_v)
    layout : ndarray of bool, shape (n/b, n/b) or (H, n/b, n/b)
        Active blocks (per head or shared).
    block_size : int
        ``b``, dividing ``n``.
    backend : {"numba", "numpy", None}

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        Equal to dense attention under the element mask ``kron(layout, ones(b, b))``; rows of
        a query block with no active key block are zero.

    Raises
    ------
    ValueError
        Q, K or V contains NaN or inf (named in the message), or a shape/argument error.

    Notes
    -----
    Time :math:`O(\\mathrm{nnz}\\,b^2 d)` for ``nnz`` active blocks; memory :math:`O(n d)`
    plus :math:`O(\\mathrm{nnz}_{row} b)` scratch per query block.
    """
    Q, K, V = _check_qkv(Q, K, V)
    B, H, n, d = Q.shape
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) \
            or block_size < 1 or n % block_size:
        raise ValueError(f"block_size must be a positive integer dividing n={n}, got "
                         f"{block_size!r}")
    nb = n // block_size
    L = np.asarray(layout)
    if L.dtype != bool:
        raise TypeError(f"layout must be a boolean array, got dtype {L.dtype}")
    if L.ndim == 2:
        L = np.broadcast_to(L, (H,) + L.shape)
    if L.shape != (H, nb, nb):
        raise ValueError(f"layout must have shape ({nb}, {nb}) or ({H}, {nb}, {nb}), got "
                         f"{np.asarray(layout).shape}")
    L = np.ascontiguousarray(L)
    out = np.empty(Q.shape[:3] + (V.shape[3],), dtype=Q.dtype)
    dispatch("block_sparse_attention", backend, _block_sparse_numba, _block_sparse_numpy,
             Q, K, V, L, int(block_size), out)
    return out


# ------------------------------------------------------------------------------ causal linear
@numba.njit(cache=True, parallel=True)
def _causal_linear_numba(phiQ, phiK, V, eps, out):
    B, H, n, d = phiQ.shape
    dv = V.shape[3]
    for bh in numba.prange(B * H):
        b = bh // H
        h = bh % H
        S = np.zeros((d, dv), dtype=np.float64)  # running sum of φ(k_j) v_jᵀ
        z = np.zeros(d, dtype=np.float64)  # running sum of φ(k_j)
        for i in range(n):
            for a in range(d):
                ka = phiK[b, h, i, a]
                z[a] += ka
                for c in range(dv):
                    S[a, c] += ka * V[b, h, i, c]
            den = eps
            for a in range(d):
                den += phiQ[b, h, i, a] * z[a]
            for c in range(dv):
                num = 0.0
                for a in range(d):
                    num += phiQ[b, h, i, a] * S[a, c]
                out[b, h, i, c] = num / den


def _causal_linear_numpy(phiQ, phiK, V, eps, out, chunk: int = 64):
    B, H, n, d = phiQ.shape
    S = np.zeros((B, H, d, V.shape[3]), dtype=np.float64)  # state after previous chunks
    z = np.zeros((B, H, d), dtype=np.float64)
    for a in range(0, n, chunk):
        e = min(a + chunk, n)
        q, k, v = phiQ[:, :, a:e], phiK[:, :, a:e], V[:, :, a:e]
        A = np.tril(q @ np.swapaxes(k, -1, -2))  # (B, H, c, c) within the chunk, j <= i
        num = A @ v + q @ S  # (B, H, c, d_v)
        den = A.sum(axis=-1) + np.einsum("bhcd,bhd->bhc", q, z) + eps  # (B, H, c)
        out[:, :, a:e] = num / den[..., None]
        S += np.swapaxes(k, -1, -2) @ v
        z += k.sum(axis=2)


def causal_linear_attention(phiQ, phiK, V, *, eps: float = 1e-6, backend=None) -> np.ndarray:
    """Causal linear attention by prefix sums (Katharopoulos et al., 2020; Survey §7.2).

    .. math:: o_i = \\frac{\\phi(q_i)^T \\sum_{j\\le i}\\phi(k_j)v_j^T}
                         {\\phi(q_i)^T \\sum_{j\\le i}\\phi(k_j) + \\varepsilon}

    Parameters
    ----------
    phiQ, phiK : ndarray of shape (B, H, n, d)
        Feature-mapped queries and keys (non-negative, e.g. ``elu(x) + 1``).
    V : ndarray of shape (B, H, n, d_v)
    eps : float
        Added to the denominator (the reference implementation's 1e-6); finite, ``>= 0``.
    backend : {"numba", "numpy", None}

    Returns
    -------
    ndarray of shape (B, H, n, d_v)

    Raises
    ------
    ValueError
        phiQ, phiK or V contains NaN or inf (named in the message), or a shape/argument error.

    Notes
    -----
    The Numba kernel keeps the running state :math:`S_i` (``d × d_v``) and :math:`z_i`
    (``d``): time :math:`O(n d d_v)`, memory :math:`O(d d_v)` beyond the output. The NumPy
    reference processes chunks of 64 positions with BLAS (quadratic only inside a chunk).
    """
    phiQ, phiK, V = _check_qkv(phiQ, phiK, V, names=("phiQ", "phiK", "V"))
    if np.any(phiQ < 0) or np.any(phiK < 0):
        raise ValueError("phiQ and phiK must be non-negative feature maps (e.g. elu(x) + 1)")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) \
            or not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    out = np.empty(phiQ.shape[:3] + (V.shape[3],), dtype=phiQ.dtype)
    dispatch("causal_linear_attention", backend, _causal_linear_numba, _causal_linear_numpy,
             phiQ, phiK, V, float(eps), out)
    return out


# ------------------------------------------------------------------------------ sliding window,
# differentiable: forward with row log-sum-exp, and backward, never n × n
# Query i's window is a plain band on its residue class i mod dilation, as in
# :func:`sliding_window_attention`: the sequence is reordered by residue class (``perm``), and
# in that order query ``p`` sees keys ``[lo[p], hi[p])`` of its own segment. The band is
# symmetric (key ``j`` is in query ``i``'s window iff ``i`` is in ``j``'s), so the backward
# pass can collect ``dK, dV`` key by key (one row task per key, no scatter, no atomics) and
# ``dQ`` query by query. The band kernels leave out global query rows; global keys outside a
# window and global query rows (``O(n g)`` scores) are NumPy matrix products shared by both
# backends.
__all__ += ["sliding_window_attention_fwd", "sliding_window_attention_bwd"]

_ROWS = 64  # rows per prange task of the differentiable band kernels


def _residue_band(n: int, half: int, dil: int):
    """``perm`` (residue-class order) and each permuted position's key band ``[lo, hi)``."""
    parts = [np.arange(r, n, dil) for r in range(dil)]
    perm = np.concatenate(parts).astype(np.int64)  # (n,)
    sizes = np.array([p.size for p in parts], dtype=np.int64)
    s0 = np.repeat(np.cumsum(sizes) - sizes, sizes)  # segment start of each permuted position
    s1 = s0 + np.repeat(sizes, sizes)
    p = np.arange(n, dtype=np.int64)
    lo = np.maximum(s0, p - half)
    hi = np.minimum(s1, p + half + 1)
    return perm, lo, hi


@numba.njit(cache=True)
def _band_scores(q, Kt, a, e, scale, keep, sc):
    # sc[c] = scale · q·k_{a+c} for real keys, −inf for padded ones (axpy over the contiguous
    # band of the transposed keys: vectorised without fastmath)
    m = e - a
    for c in range(m):
        sc[c] = 0
    for k in range(q.shape[0]):
        qk = q[k]
        row = Kt[k, a:e]
        for c in range(m):
            sc[c] += qk * row[c]
    for c in range(m):
        if keep[a + c]:
            sc[c] *= scale
        else:
            sc[c] = -np.inf


@numba.njit(cache=True)
def _band_width(lo, hi):
    # the widest band [lo[p], hi[p]) (at least 1): the per-task scratch length
    wmax = 1
    for p in range(lo.shape[0]):
        wmax = max(wmax, hi[p] - lo[p])
    return wmax


@numba.njit(cache=True)
def _row_task(task, nch, H, n):
    # task -> (batch b, head h, rows [r0, r1)): nch tasks of _ROWS rows per (b, h)
    bh = task // nch
    r0 = (task % nch) * _ROWS
    return bh // H, bh % H, r0, min(r0 + _ROWS, n)


@numba.njit(cache=True, parallel=True)
def _swa_fwd_band_impl(Qp, Ktp, Vp, keepp, is_gp, lo, hi, scale, one, outp, lsep):
    B, H, n, d = Qp.shape
    dv = Vp.shape[3]
    nch = (n + _ROWS - 1) // _ROWS
    wmax = _band_width(lo, hi)
    for task in numba.prange(B * H * nch):
        b, h, r0, r1 = _row_task(task, nch, H, n)
        s = np.empty(wmax, dtype=Qp.dtype)
        scratch = np.empty(wmax, dtype=Qp.dtype)
        acc = np.empty(dv, dtype=Qp.dtype)
        for p in range(r0, r1):
            if is_gp[p]:  # global rows: attended to every key elsewhere
                outp[b, h, p, :] = 0
                lsep[b, h, p] = -np.inf
                continue
            a, e = lo[p], hi[p]
            sc = s[:e - a]
            _band_scores(Qp[b, h, p], Ktp[b, h], a, e, scale, keepp[b, h], sc)
            mx = sc[0]
            for c in range(1, e - a):
                if sc[c] > mx:
                    mx = sc[c]
            if mx == -np.inf:  # every key of the window is padding
                outp[b, h, p, :] = 0
                lsep[b, h, p] = -np.inf
                continue
            z = _exp_shift_sum(sc, mx, one, scratch)  # sc <- exp(s - max)
            acc[:] = 0
            for c in range(e - a):
                w = sc[c]
                vr = Vp[b, h, a + c]
                for k in range(dv):
                    acc[k] += w * vr[k]
            for k in range(dv):
                outp[b, h, p, k] = acc[k] / z
            lsep[b, h, p] = mx + np.log(z)


@numba.njit(cache=True, parallel=True)
def _swa_bwd_q_impl(Qp, Kp, Ktp, Vtp, dOp, Dp, lsep, keepp, is_gp, lo, hi, scale, one, dQp):
    # query side: dq_i = scale Σ_j P_ij (dO_i·v_j − D_i) k_j over the band of i
    B, H, n, d = Qp.shape
    dv = Vtp.shape[2]
    nch = (n + _ROWS - 1) // _ROWS
    wmax = _band_width(lo, hi)
    for task in numba.prange(B * H * nch):
        b, h, r0, r1 = _row_task(task, nch, H, n)
        s = np.empty(wmax, dtype=Qp.dtype)
        dp = np.empty(wmax, dtype=Qp.dtype)
        scratch = np.empty(wmax, dtype=Qp.dtype)
        dq = np.empty(d, dtype=Qp.dtype)
        for p in range(r0, r1):
            L = lsep[b, h, p]
            if is_gp[p] or L == -np.inf:
                dQp[b, h, p, :] = 0
                continue
            a, e = lo[p], hi[p]
            m = e - a
            sc = s[:m]
            _band_scores(Qp[b, h, p], Ktp[b, h], a, e, scale, keepp[b, h], sc)
            _exp_shift_sum(sc, L, one, scratch)  # sc <- P_ij = exp(s_ij − lse_i)
            for c in range(m):
                dp[c] = 0
            for k in range(dv):
                g = dOp[b, h, p, k]
                row = Vtp[b, h, k, a:e]
                for c in range(m):
                    dp[c] += g * row[c]  # dP_ij = dO_i · v_j
            Di = Dp[b, h, p]
            dq[:] = 0
            for c in range(m):
                ds = sc[c] * (dp[c] - Di) * scale  # dS_ij / √d
                if ds != 0:
                    kr = Kp[b, h, a + c]
                    for k in range(d):
                        dq[k] += ds * kr[k]
            dQp[b, h, p, :] = dq


@numba.njit(cache=True, parallel=True)
def _swa_bwd_kv_impl(Qp, Qtp, Kp, Vp, dOp, dOtp, Dp, lsep, keepp, is_gp, lo, hi, scale, zero,
                     one, dKp, dVp):
    # key side (the band is symmetric): dk_j = scale Σ_i dS_ij q_i, dv_j = Σ_i P_ij dO_i over
    # the non-global queries i whose window holds j
    B, H, n, d = Qp.shape
    dv = Vp.shape[3]
    nch = (n + _ROWS - 1) // _ROWS
    wmax = _band_width(lo, hi)
    for task in numba.prange(B * H * nch):
        b, h, r0, r1 = _row_task(task, nch, H, n)
        s = np.empty(wmax, dtype=Qp.dtype)
        dp = np.empty(wmax, dtype=Qp.dtype)
        scratch = np.empty(wmax, dtype=Qp.dtype)
        dk = np.empty(d, dtype=Qp.dtype)
        dvv = np.empty(dv, dtype=Qp.dtype)
        for j in range(r0, r1):
            if not keepp[b, h, j]:  # a padded key gets no weight, hence no gradient
                dKp[b, h, j, :] = 0
                dVp[b, h, j, :] = 0
                continue
            a, e = lo[j], hi[j]
            m = e - a
            sc = s[:m]
            for c in range(m):
                sc[c] = 0
            for k in range(d):
                kk = Kp[b, h, j, k]
                row = Qtp[b, h, k, a:e]
                for c in range(m):
                    sc[c] += kk * row[c]  # the same products, in the same order, as the forward
            for c in range(m):
                i = a + c
                L = lsep[b, h, i]
                if is_gp[i] or L == -np.inf:
                    sc[c] = -np.inf
                else:
                    sc[c] = sc[c] * scale - L
            _exp_shift_sum(sc, zero, one, scratch)  # sc <- P_ij
            for c in range(m):
                dp[c] = 0
            for k in range(dv):
                vk = Vp[b, h, j, k]
                row = dOtp[b, h, k, a:e]
                for c in range(m):
                    dp[c] += vk * row[c]  # dP_ij = dO_i · v_j
            dk[:] = 0
            dvv[:] = 0
            for c in range(m):
                P = sc[c]
                if P == 0:
                    continue
                i = a + c
                ds = P * (dp[c] - Dp[b, h, i]) * scale
                qr = Qp[b, h, i]
                gr = dOp[b, h, i]
                for k in range(d):
                    dk[k] += ds * qr[k]
                for k in range(dv):
                    dvv[k] += P * gr[k]
            dKp[b, h, j, :] = dk
            dVp[b, h, j, :] = dvv


def _swa_fwd_band_numba(Qp, Kp, Vp, keepp, is_gp, lo, hi, scale, outp, lsep):
    Ktp = np.ascontiguousarray(np.swapaxes(Kp, -1, -2))  # (B, H, d, n)
    dt = Qp.dtype.type
    _swa_fwd_band_impl(Qp, Ktp, Vp, keepp, is_gp, lo, hi, dt(scale), dt(1.0), outp, lsep)


def _swa_fwd_band_numpy(Qp, Kp, Vp, keepp, is_gp, lo, hi, scale, outp, lsep, block: int = 64):
    n = Qp.shape[2]
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        ka, kb = lo[r0:r1].min(), hi[r0:r1].max()
        S = Qp[:, :, r0:r1] @ np.swapaxes(Kp[:, :, ka:kb], -1, -2) * scale  # (B, H, bq, bk)
        c = np.arange(ka, kb)[None, :]
        M = (c >= lo[r0:r1, None]) & (c < hi[r0:r1, None]) & ~is_gp[r0:r1, None]  # band
        M = M & keepp[:, :, None, ka:kb]  # (B, H, bq, bk) real keys of the band
        S = np.where(M, S, -np.inf)
        mx = S.max(axis=-1, keepdims=True)  # (B, H, bq, 1), −inf for an empty row
        E = np.exp(S - np.where(np.isneginf(mx), 0.0, mx))
        z = E.sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            outp[:, :, r0:r1] = np.where(z > 0, (E @ Vp[:, :, ka:kb]) / z, 0.0)
            lsep[:, :, r0:r1] = (mx + np.log(z))[..., 0]


def _swa_bwd_band_numba(Qp, Kp, Vp, dOp, Dp, lsep, keepp, is_gp, lo, hi, scale, dQp, dKp, dVp):
    dt = Qp.dtype.type

    def tr(x):
        return np.ascontiguousarray(np.swapaxes(x, -1, -2))  # (B, H, d, n)
    _swa_bwd_q_impl(Qp, Kp, tr(Kp), tr(Vp), dOp, Dp, lsep, keepp, is_gp, lo, hi, dt(scale),
                    dt(1.0), dQp)
    _swa_bwd_kv_impl(Qp, tr(Qp), Kp, Vp, dOp, tr(dOp), Dp, lsep, keepp, is_gp, lo, hi,
                     dt(scale), dt(0.0), dt(1.0), dKp, dVp)


def _swa_bwd_band_numpy(Qp, Kp, Vp, dOp, Dp, lsep, keepp, is_gp, lo, hi, scale, dQp, dKp, dVp,
                        block: int = 64):
    n = Qp.shape[2]
    dQp[:] = 0
    dKp[:] = 0
    dVp[:] = 0
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        ka, kb = lo[r0:r1].min(), hi[r0:r1].max()
        S = Qp[:, :, r0:r1] @ np.swapaxes(Kp[:, :, ka:kb], -1, -2) * scale  # (B, H, bq, bk)
        c = np.arange(ka, kb)[None, :]
        M = (c >= lo[r0:r1, None]) & (c < hi[r0:r1, None]) & ~is_gp[r0:r1, None]
        L = lsep[:, :, r0:r1, None]  # (B, H, bq, 1)
        M = M & keepp[:, :, None, ka:kb] & np.isfinite(L)
        P = np.where(M, np.exp(np.where(M, S - np.where(M, L, 0.0), -np.inf)), 0.0)
        dP = dOp[:, :, r0:r1] @ np.swapaxes(Vp[:, :, ka:kb], -1, -2)  # dO_i · v_j
        dS = P * (dP - Dp[:, :, r0:r1, None]) * scale  # (B, H, bq, bk), includes 1/√d
        dQp[:, :, r0:r1] = dS @ Kp[:, :, ka:kb]
        dKp[:, :, ka:kb] += np.swapaxes(dS, -1, -2) @ Qp[:, :, r0:r1]
        dVp[:, :, ka:kb] += np.swapaxes(P, -1, -2) @ dOp[:, :, r0:r1]


def _swa_prepare(Q, K, V, window, dilation, global_idx, key_keep):
    Q, K, V = _check_qkv(Q, K, V)
    B, H, n, _ = Q.shape
    half, dil, g = check_window(window, dilation, global_idx, n)
    if key_keep is None:
        keep = np.ones((B, H, n), dtype=np.bool_)
    else:
        kk = np.asarray(key_keep)
        if kk.dtype != np.bool_:
            raise TypeError(f"key_keep must be a boolean array (True = real key), got dtype "
                            f"{kk.dtype}")
        try:
            keep = np.ascontiguousarray(np.broadcast_to(kk, (B, H, n)))
        except ValueError:
            raise ValueError(f"key_keep must be broadcastable to (B, H, n) = {(B, H, n)}, got "
                             f"shape {kk.shape}") from None
    is_global = np.zeros(n, dtype=np.bool_)
    is_global[g] = True
    perm, lo, hi = _residue_band(n, half, dil)
    return Q, K, V, half, dil, g, keep, is_global, perm, lo, hi


def _swa_extra_mask(n, half, dil, g, keep, is_global):
    # non-global query i × global key g outside i's window, g real: (B, H, n, ng)
    off = g[None, :] - np.arange(n)[:, None]  # (n, ng)
    out_win = ~((off % dil == 0) & (np.abs(off) <= half * dil)) & ~is_global[:, None]
    return out_win & keep[:, :, None, g]


def sliding_window_attention_fwd(Q, K, V, window: int, dilation: int = 1, global_idx=(),
                                 key_keep=None, *, backend=None):
    """Sliding-window (+ dilated, + global) attention with key padding, returning the row
    log-sum-exp for :func:`sliding_window_attention_bwd` (Survey §7.2, Longformer).

    The same attention pattern as :func:`sliding_window_attention` (equal to dense attention
    under :func:`refimpl.attention.linear.longformer_mask`), intersected with ``key_keep``:
    padded keys get no weight; a query whose allowed keys are all padding gets a zero output.

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
    V : ndarray of shape (B, H, n, d_v)
    window, dilation, global_idx
        As in :func:`sliding_window_attention`.
    key_keep : bool ndarray broadcastable to (B, H, n), optional
        ``True`` = a real key (default: every key).
    backend : {"numba", "numpy", None}
        The band part's kernel; global keys and rows (``O(n g)``) are NumPy products in both.

    Returns
    -------
    out : ndarray of shape (B, H, n, d_v)
    lse : ndarray of shape (B, H, n)
        :math:`\\log \\sum_{j} \\exp(q_i \\cdot k_j / \\sqrt d)` over the keys query ``i``
        attends to (``-inf`` for a row without keys).

    Raises
    ------
    ValueError
        Q, K or V contains NaN or inf (named in the message), or a shape/argument error.

    Notes
    -----
    Time :math:`O(n (w + g) d + g n d)`; memory :math:`O(n d + n g)` plus :math:`O(w)` scratch
    per row task (Numba) or :math:`O(b (b + 2w))` per block of ``b = 64`` queries (NumPy); no
    ``n × n`` array. The Numba kernel runs tasks of 64 query rows in parallel (``prange``),
    band scores by axpy over the transposed keys and the module's vectorised ``exp``.
    """
    Q, K, V, half, dil, g, keep, is_global, perm, lo, hi = _swa_prepare(
        Q, K, V, window, dilation, global_idx, key_keep)
    B, H, n, d = Q.shape
    scale = float(1.0 / np.sqrt(d))  # a Python float keeps float32 inputs float32
    if dil > 1:
        Qp, Kp, Vp = (np.ascontiguousarray(x[:, :, perm]) for x in (Q, K, V))  # residue order
    else:
        Qp, Kp, Vp = Q, K, V
    outp = np.empty(Q.shape[:3] + (V.shape[3],), dtype=Q.dtype)
    lsep = np.empty(Q.shape[:3], dtype=Q.dtype)
    dispatch("sliding_window_attention_fwd", backend, _swa_fwd_band_numba, _swa_fwd_band_numpy,
             Qp, Kp, Vp, np.ascontiguousarray(keep[:, :, perm]), is_global[perm], lo, hi, scale,
             outp, lsep)
    out, lse = np.empty_like(outp), np.empty_like(lsep)
    out[:, :, perm] = outp
    lse[:, :, perm] = lsep
    if g.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            # global keys outside the window join the rows' softmax: log-sum-exp merge
            M = _swa_extra_mask(n, half, dil, g, keep, is_global)  # (B, H, n, ng)
            Sg = np.where(M, Q @ np.swapaxes(K[:, :, g], -1, -2) * scale, -np.inf)
            lse_all = np.logaddexp(lse, np.logaddexp.reduce(Sg, axis=-1))
            fin = np.isfinite(lse_all)[..., None]
            Lc = np.where(fin, lse_all[..., None], 0.0)
            Pg = np.where(M & fin, np.exp(Sg - Lc), 0.0)  # (B, H, n, ng)
            out = np.where(fin, np.exp(lse[..., None] - Lc) * out, 0.0) + Pg @ V[:, :, g]
            lse = lse_all
            # global rows attend to every real key
            Sr = np.where(keep[:, :, None, :], Q[:, :, g] @ np.swapaxes(K, -1, -2) * scale,
                          -np.inf)  # (B, H, ng, n)
            Lr = np.logaddexp.reduce(Sr, axis=-1)  # (B, H, ng)
            fr = np.isfinite(Lr)[..., None]
            Pr = np.where(keep[:, :, None, :] & fr,
                          np.exp(Sr - np.where(fr, Lr[..., None], 0.0)), 0.0)
            out[:, :, g] = Pr @ V
            lse[:, :, g] = Lr
    return out, lse


def sliding_window_attention_bwd(dout, Q, K, V, out, lse, window: int, dilation: int = 1,
                                 global_idx=(), key_keep=None, *, backend=None):
    """Gradients of :func:`sliding_window_attention_fwd`: ``(dQ, dK, dV)`` from ``dout``.

    Flash-attention style recomputation: with the saved ``out`` and row log-sum-exp ``lse``,
    :math:`P_{ij} = \\exp(s_{ij} - \\mathrm{lse}_i)`, :math:`D_i = dO_i \\cdot o_i`,
    :math:`dS_{ij} = P_{ij}(dO_i \\cdot v_j - D_i)`, and
    :math:`dQ = dS K/\\sqrt d`, :math:`dK = dS^T Q/\\sqrt d`, :math:`dV = P^T dO`, summed over
    the allowed pairs only.

    Parameters
    ----------
    dout : ndarray of shape (B, H, n, d_v)
    Q, K, V, window, dilation, global_idx, key_keep, backend
        As given to :func:`sliding_window_attention_fwd`.
    out : ndarray of shape (B, H, n, d_v)
    lse : ndarray of shape (B, H, n)
        Its outputs.

    Returns
    -------
    dQ, dK, dV : ndarrays shaped like Q, K, V

    Raises
    ------
    ValueError
        Q, K, V, dout or out (or ``lse`` holds NaN or +inf) contains NaN or inf (named in the message), or a shape/argument error.

    Notes
    -----
    Time :math:`O(n (w + g)(d + d_v) + g n (d + d_v))`, memory :math:`O(n (d + d_v + g))`:
    the Numba backend runs a query-side pass (``dQ``, one task per 64 query rows) and a
    key-side pass (``dK, dV``, one task per 64 keys; the window is symmetric, so no two
    tasks write the same row), both recomputing the band scores; no ``n × n`` array.
    """
    Q, K, V, half, dil, g, keep, is_global, perm, lo, hi = _swa_prepare(
        Q, K, V, window, dilation, global_idx, key_keep)
    B, H, n, d = Q.shape
    dv = V.shape[3]
    for nm, a, shp in (("dout", dout, (B, H, n, dv)), ("out", out, (B, H, n, dv)),
                       ("lse", lse, (B, H, n))):
        if np.shape(a) != shp:
            raise ValueError(f"{nm} must have shape {shp}, got {np.shape(a)}")
    dt = Q.dtype
    for nm, a in (("dout", dout), ("out", out), ("lse", lse)):
        if np.asarray(a).dtype.kind not in "fiu":
            raise TypeError(f"{nm} must be a real array, got dtype {np.asarray(a).dtype}")
    dout = np.ascontiguousarray(dout, dtype=dt)
    lse = np.ascontiguousarray(lse, dtype=dt)
    _check_finite(dout, "dout")
    _check_finite(np.asarray(out), "out")
    if np.isnan(lse).any() or np.isposinf(lse).any():  # -inf: a row without keys
        raise ValueError("lse contains NaN or +inf (only -inf, for a row without keys, is "
                         "allowed)")
    scale = float(1.0 / np.sqrt(d))
    D = np.einsum("bhnc,bhnc->bhn", dout, np.asarray(out, dtype=dt))  # D_i = dO_i · o_i
    if dil > 1:
        Qp, Kp, Vp, dOp = (np.ascontiguousarray(x[:, :, perm]) for x in (Q, K, V, dout))
    else:
        Qp, Kp, Vp, dOp = Q, K, V, dout
    dQp, dKp, dVp = np.empty_like(Qp), np.empty_like(Kp), np.empty_like(Vp)
    dispatch("sliding_window_attention_bwd", backend, _swa_bwd_band_numba, _swa_bwd_band_numpy,
             Qp, Kp, Vp, dOp, np.ascontiguousarray(D[:, :, perm]),
             np.ascontiguousarray(lse[:, :, perm]), np.ascontiguousarray(keep[:, :, perm]),
             is_global[perm], lo, hi, scale, dQp, dKp, dVp)
    dQ, dK, dV = np.empty_like(dQp), np.empty_like(dKp), np.empty_like(dVp)
    dQ[:, :, perm] = dQp
    dK[:, :, perm] = dKp
    dV[:, :, perm] = dVp
    if g.size:
        fin = np.isfinite(lse)[..., None]
        Lc = np.where(fin, lse[..., None], 0.0)
        Kg, Vg = K[:, :, g], V[:, :, g]
        with np.errstate(invalid="ignore"):
            # global keys outside the windows of the non-global rows
            M = _swa_extra_mask(n, half, dil, g, keep, is_global) & fin  # (B, H, n, ng)
            Sg = Q @ np.swapaxes(Kg, -1, -2) * scale
            Pg = np.where(M, np.exp(np.where(M, Sg - Lc, -np.inf)), 0.0)
            dSg = Pg * (dout @ np.swapaxes(Vg, -1, -2) - D[..., None]) * scale
            dQ += dSg @ Kg
            dK[:, :, g] += np.swapaxes(dSg, -1, -2) @ Q
            dV[:, :, g] += np.swapaxes(Pg, -1, -2) @ dout
            # global rows (their band gradients were left out above)
            Mr = keep[:, :, None, :] & fin[:, :, g]  # (B, H, ng, n)
            Sr = Q[:, :, g] @ np.swapaxes(K, -1, -2) * scale
            Pr = np.where(Mr, np.exp(np.where(Mr, Sr - Lc[:, :, g], -np.inf)), 0.0)
            dSr = Pr * (dout[:, :, g] @ np.swapaxes(V, -1, -2) - D[:, :, g, None]) * scale
            dQ[:, :, g] = dSr @ K
            dK += np.swapaxes(dSr, -1, -2) @ Q[:, :, g]
            dV += np.swapaxes(Pr, -1, -2) @ dout[:, :, g]
    return dQ, dK, dV
