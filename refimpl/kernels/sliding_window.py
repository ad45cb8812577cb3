"""Sliding-window (+ dilated, + global) attention: Longformer's attention pattern without the
``n × n`` matrix, forward and backward (Survey §7.2).

=====================================  =======================================  ===============
kernel                                 what                                     used by
=====================================  =======================================  ===============
:func:`sliding_window_attention`       the output, O(n (w + g) d) time,         Longformer [1]_
                                       O(n d) memory                            (§7.2)
:func:`sliding_window_attention_fwd`   the output and the row log-sum-exp, for  ``LongformerHook
                                       the backward pass; key padding           (fused=True)``
:func:`sliding_window_attention_bwd`   ``dQ, dK, dV`` by recomputation from the
                                       saved output and log-sum-exp [2]_
=====================================  =======================================  ===============

Query ``i`` attends to keys ``i + dilation·o``, ``o`` in ``[-w/2, w/2]`` (inside ``[0, n)``),
and to every global position; a global position attends to every key; ``key_keep`` removes
padded keys from every row; ``causal=True`` keeps only the keys ``j <= i`` of every row (the
left half of the band, Longformer's autoregressive setting). One softmax runs over the union
of a row's keys.

One band implementation. A dilated window is a plain band on each residue class
``i mod dilation``, so the sequence is reordered by residue class (``perm``) and in that order
query ``p`` sees the keys ``[lo[p], hi[p])`` of its own segment (:func:`_residue_band`).

- Forward (both public forward functions): :func:`_swa_fwd_band_numba` /
  :func:`_swa_fwd_band_numpy` compute, per block of 64 queries of one segment, the band
  scores by BLAS products, the scores against the global keys outside each window by
  another, the softmax of each row over both (key padding applied), the output by more
  products, and the row log-sum-exp. The Numba kernel calls SciPy's BLAS directly
  (:func:`refimpl.kernels.attention_common._gemm`): the band products are split into parts of
  at most ``10⁶`` multiply-adds, the size OpenBLAS runs without packing, and the value product
  writes into the output rows; it also checks the inputs for NaN/inf on each block's own rows
  as it reads them.
  :func:`sliding_window_attention` returns the output and drops the log-sum-exp. Global query
  rows (``O(g n d)``) are NumPy products shared by both backends.
- Backward: ``dQ`` is collected query by query and ``dK, dV`` key by key (one row task each,
  no scatter, no atomics), recomputing ``P = exp(s − lse)``; key ``j``'s queries are a
  contiguous range too (the band itself, which is symmetric; causal: ``[j, j + w/2]`` in
  residue order); the global parts are NumPy products shared by both backends.

Every kernel is a Numba function (``cache=True``, ``prange``) beside a pure-NumPy reference with
the same signature, chosen by ``backend="numba" | "numpy"``; the NumPy references never form
``n × n`` arrays either. Float32 and float64 (computed in the inputs' dtype); non-finite inputs
are refused with a ``ValueError`` naming the argument.

References
----------
.. [1] I. Beltagy, M. E. Peters, A. Cohan, "Longformer: The Long-Document Transformer",
   arXiv 2004.05150, 2020.
.. [2] T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Ré, "FlashAttention: Fast and Memory-Efficient
   Exact Attention with IO-Awareness", NeurIPS 2022 (the backward by recomputation).
"""

from __future__ import annotations

import numba
import numpy as np

from refimpl.kernels import _backend
from refimpl.kernels._backend import dispatch, env, resolve_backend
from refimpl.kernels.attention_common import (
    _check_finite,
    _check_qkv,
    _exp_shift_sum,
    _gemm,
    _gemm_work,
    _nonfinite,
    _one_blas_thread,
    _row_max,
    _scale_rows,
)

__all__ = ["sliding_window_attention", "sliding_window_attention_fwd",
           "sliding_window_attention_bwd", "check_window"]

_BLOCK = 64  # queries per prange task of the forward kernel (one segment's consecutive rows)
_ROWS = 64  # rows per prange task of the backward kernels
_GEMM_PART = 1_000_000  # m·n·k of one BLAS call of the forward's products, at most
_N, _T = ord("N"), ord("T")  # BLAS transpose flags
_WARM = 384  # side of the one-time per-thread BLAS warm-up product (see _swa_fwd_band_impl)


def check_window(window, dilation, global_idx, n: int):
    """Validate Longformer's window arguments (Survey §7.2).

    Parameters
    ----------
    window : int
        ``w``: even, ``0 <= w <= n`` (``w/2`` keys on each side).
    dilation : int
        ``>= 1``.
    global_idx : sequence of int or None
        Distinct positions in ``[0, n)``.
    n : int
        The sequence length.

    Returns
    -------
    half : int
        ``w / 2``.
    dilation : int
    global_idx : int64 ndarray of shape (g,)
        Sorted.

    Raises
    ------
    TypeError, ValueError
        Naming the argument, the value given and what is allowed.
    """
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
    if global_idx is None or (type(global_idx) in (tuple, list) and not global_idx):
        return window // 2, int(dilation), np.empty(0, dtype=np.int64)  # the common case, fast
    raw = np.asarray(global_idx, dtype=object).ravel()
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))
               for i in raw):
        raise TypeError(f"global_idx must be a sequence of integer positions or None, "
                        f"got {global_idx!r}")
    g = raw.astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= n):
        raise ValueError(f"global_idx must lie in [0, {n}), got {g.tolist()}")
    if np.unique(g).size != g.size:
        raise ValueError(f"global_idx must not repeat a position, got {g.tolist()}")
    return window // 2, int(dilation), np.sort(g)


def _swa_prepare(Q, K, V, window, dilation, global_idx, key_keep, causal=False, finite=True):
    # the checks and index arrays shared by the forward and backward passes (finite=False:
    # the caller applies the NaN policy, see _sliding_window_forward)
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    Q, K, V = _check_qkv(Q, K, V, finite=finite)
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
    perm, seg, lo, hi = _residue_band(n, half, dil)
    # klo, khi: key j (residue order) is in the band of the queries [klo[j], khi[j]); the
    # non-causal band is symmetric. Causal: query p keeps the keys [lo[p], p] (same residue
    # class, so original positions <= its own), and key j is seen by the queries [j, hi[j]).
    if causal:
        klo, khi = np.arange(n, dtype=np.int64), hi
        hi = np.minimum(hi, np.arange(1, n + 1, dtype=np.int64))
    else:
        klo, khi = lo, hi
    return Q, K, V, half, dil, g, keep, is_global, perm, seg, lo, hi, klo, khi


@numba.njit(cache=True)
def _residue_band(n, half, dil):
    """The residue-class order and the band of every position in it (compiled: one call
    instead of a dozen NumPy steps, ~0.3 ms of a cold call at n = 8192).

    Returns
    -------
    perm : int64 ndarray of shape (n,)
        ``perm[p]``: the original position of position ``p`` in residue-class order
        (``0, dil, 2 dil, …, 1, 1 + dil, …``).
    seg : int64 ndarray of shape (dil + 1,)
        Residue class ``r`` occupies positions ``[seg[r], seg[r + 1])`` of that order.
    lo, hi : int64 ndarrays of shape (n,)
        Position ``p`` attends to the keys ``[lo[p], hi[p])`` (same order) of its window.
    """
    perm = np.empty(n, dtype=np.int64)
    seg = np.empty(dil + 1, dtype=np.int64)
    lo = np.empty(n, dtype=np.int64)
    hi = np.empty(n, dtype=np.int64)
    p = 0
    for r in range(dil):
        seg[r] = p
        size = (n - r + dil - 1) // dil if r < n else 0  # positions r, r + dil, … < n
        s0, s1 = p, p + size
        for t in range(size):
            perm[p] = r + t * dil
            lo[p] = max(s0, p - half)
            hi[p] = min(s1, p + half + 1)
            p += 1
    seg[dil] = p
    return perm, seg, lo, hi


# ------------------------------------------------------------------------------ forward
@numba.njit(cache=True, inline="always")
def _n_parts(m, n, k):
    """BLAS calls for an m × n × k product split along ``n`` (the keys) into parts of at most
    :data:`_GEMM_PART` multiply-adds (part ``j`` of ``p``: columns ``j n // p`` to
    ``(j + 1) n // p``)."""
    return (m * n * k + _GEMM_PART - 1) // _GEMM_PART


@numba.njit(cache=True, parallel=True)
def _swa_fwd_band_impl(Qp, Kp, Vp, keepp, padded, is_gp, lo, hi, seg, pos, gidx, Kg, Vg,
                       keepg, dil, half, causal, scale, outp, lsep, warmed):
    # Qp, Kp, Vp: residue-class order; keepp (B, H, n) real keys in that order, padded (B, H):
    # whether a (b, h) has padding at all; is_gp (n,) global query rows (left to the caller);
    # pos (n,) original positions; gidx (ng,) global keys (original positions), Kg, Vg their
    # keys and values, keepg (B, H, ng) which of them are real; causal: a global key joins
    # only the rows of queries at or after it (the band [lo, hi) is already left-only).
    # Query blocks of _BLOCK rows of one segment, one prange task each: unscaled scores against
    # the block's keys [lo[a], hi[e-1]) by direct BLAS calls (_gemm, in parts), per row the
    # band maximum and the vectorised exp on the contiguous band slice, then the value product
    # (_gemm, in parts) into the output rows and a division of the d_v outputs by the row sums.
    # Returns 0, or 1, 2, 3 when a block finds a NaN/inf in its own rows of Qp, Kp, Vp (the first
    # of the three that has one).
    B, H, n, d = Qp.shape
    dv = Vp.shape[3]
    ng = gidx.shape[0]
    n_seg = seg.shape[0] - 1
    n_blocks = 0
    for r in range(n_seg):
        n_blocks += (seg[r + 1] - seg[r] + _BLOCK - 1) // _BLOCK
    starts = np.empty(n_blocks, dtype=np.int64)
    ends = np.empty(n_blocks, dtype=np.int64)
    t = 0
    for r in range(n_seg):
        for a in range(seg[r], seg[r + 1], _BLOCK):
            starts[t] = a
            ends[t] = min(a + _BLOCK, seg[r + 1])
            t += 1
    bad_q = bad_k = bad_v = 0  # blocks whose rows of Qp, Kp, Vp hold a NaN or inf
    for task in numba.prange(B * H * n_blocks):
        # Measured: SciPy's OpenBLAS (0.3.30, one thread) runs these small GEMMs ~1.6x slower
        # in a thread until that thread has made one call with a dimension >= 384 (256 is not
        # enough; cause inside OpenBLAS not traced). Each worker thread makes one such call,
        # once per process (``warmed`` persists across calls): ~6 ms once, then the band GEMMs
        # of a d = 64, w = 256 window run ~1.6x faster.
        work = _gemm_work(Qp)
        tid = numba.get_thread_id()
        if warmed[tid] == 0:
            warmed[tid] = 1
            Xw = np.zeros((_WARM, _WARM), dtype=Qp.dtype)
            Xw = np.dot(Xw, Xw)
        bh = task // n_blocks
        blk = task % n_blocks
        b = bh // H
        h = bh % H
        a, e = starts[blk], ends[blk]
        ka, kb = lo[a], hi[e - 1]  # the block's keys: the union of its rows' bands
        qb = Qp[b, h, a:e]
        # the NaN policy on the rows this block owns (the blocks partition the positions),
        # read here while they are about to be used anyway
        bad_q += _nonfinite(qb)
        bad_k += _nonfinite(Kp[b, h, a:e])
        bad_v += _nonfinite(Vp[b, h, a:e])
        bq, bk = e - a, kb - ka
        # S (bq, bk) = qb · K[ka:kb]ᵀ, the unscaled scores q·k (column-major: Sᵀ = K[ka:kb]
        # qbᵀ), in parts of the keys from a transposed copy of qb: OpenBLAS's small-matrix
        # kernel takes this "TT" form (not "TN", its test refuses m·n > 1200 there): two
        # 160-key parts in 23 µs against 39 µs for one TN product of all 320 (one thread)
        qT = np.empty((d, bq), dtype=Qp.dtype)
        for r in range(bq):
            for k in range(d):
                qT[k, r] = qb[r, k]
        S = np.empty((bq, bk), dtype=Qp.dtype)
        parts = _n_parts(bq, bk, d)
        for j in range(parts):
            c0, c1 = j * bk // parts, (j + 1) * bk // parts
            _gemm(_T, _T, c1 - c0, bq, d, Kp[b, h, ka + c0:ka + c1], d, qT, bq, 0.0, S[:, c0:],
                  bk, work)
        if ng > 0:
            Sg = np.dot(qb, Kg[b, h].T)  # (bq, ng) scores against the global keys
        else:
            Sg = np.zeros((e - a, 0), dtype=Qp.dtype)
        zs = np.empty(e - a, dtype=Qp.dtype)
        pad = padded[b, h]
        for r in range(e - a):
            i = a + r
            c0, c1 = lo[i] - ka, hi[i] - ka  # query i's keys: S[r, c0:c1]
            S[r, :c0] = 0  # the block's corners outside this row's band
            S[r, c1:] = 0
            band = S[r, c0:c1]  # contiguous
            if is_gp[i]:  # a global row attends to every key: computed by the caller
                band[:] = 0
                Sg[r, :] = 0
                zs[r] = 1
                lsep[b, h, i] = -np.inf
                continue
            if pad:
                for c in range(c1 - c0):
                    if not keepp[b, h, ka + c0 + c]:
                        band[c] = -np.inf  # a padded key: weight exp(-inf) = 0
            mx = _row_max(band)
            for g in range(ng):  # global keys outside the window join the softmax
                off = gidx[g] - pos[i]
                if keepg[b, h, g] and not (off % dil == 0 and abs(off) <= half * dil) \
                        and not (causal and off > 0) and Sg[r, g] > mx:
                    mx = Sg[r, g]
            if mx == -np.inf:  # every key of the row is padding: output 0, lse -inf
                band[:] = 0
                Sg[r, :] = 0
                zs[r] = 1
                lsep[b, h, i] = -np.inf
                continue
            z = _exp_shift_sum(band, mx, scale)  # band <- exp((s - mx)/sqrt(d))
            for g in range(ng):  # a few scalar exps per row
                off = gidx[g] - pos[i]
                if keepg[b, h, g] and not (off % dil == 0 and abs(off) <= half * dil) \
                        and not (causal and off > 0):
                    w = np.exp((Sg[r, g] - mx) * scale)
                    Sg[r, g] = w
                    z += w
                else:
                    Sg[r, g] = 0  # padding, or already in the window
            zs[r] = z
            lsep[b, h, i] = mx * scale + np.log(z)  # log Σ_j exp(q_i·k_j / sqrt(d))
        # o (bq, d_v) = S · V[ka:kb], unnormalised, straight into the output rows, in parts of
        # the keys: OpenBLAS's small-matrix GEMM (no packing; SkylakeX: m·n·k <= 100³) runs
        # two 64×160×64 parts in 18 µs against 28 µs for one 64×320×64 (one thread)
        o = outp[b, h, a:e]
        parts = _n_parts(bq, bk, dv)
        for j in range(parts):
            c0, c1 = j * bk // parts, (j + 1) * bk // parts
            _gemm(_N, _N, dv, bq, c1 - c0, Vp[b, h, ka + c0:ka + c1], dv, S[:, c0:], bk,
                  0.0 if j == 0 else 1.0, o, dv, work)
        if ng > 0:
            o += np.dot(Sg, Vg[b, h])
        _scale_rows(o, zs)
    # 0, or the first of Q, K, V with a NaN or inf (1, 2, 3: the checked path's order)
    return 1 if bad_q else (2 if bad_k else (3 if bad_v else 0))


_WARMED: dict = {}


def _warmed_threads(dtype) -> np.ndarray:
    # per dtype, one flag per Numba thread id: has this thread made its BLAS warm-up call
    if dtype not in _WARMED:
        _WARMED[dtype] = np.zeros(numba.config.NUMBA_NUM_THREADS, dtype=np.int64)
    return _WARMED[dtype]


def _swa_fwd_band_numba(Qp, Kp, Vp, keepp, padded, is_gp, lo, hi, seg, pos, gidx, Kg, Vg,
                        keepg, dil, half, causal, scale, outp, lsep):
    # chunks of 4 query blocks handed out dynamically: on a shared machine a descheduled thread
    # no longer holds back a static half of the blocks
    with numba.parallel_chunksize(4):
        return _swa_fwd_band_impl(Qp, Kp, Vp, keepp, padded, is_gp, lo, hi, seg, pos, gidx, Kg,
                                  Vg, keepg, dil, half, bool(causal), scale, outp, lsep,
                                  _warmed_threads(Qp.dtype))


def _raise_nonfinite(code: int) -> None:
    """The forward's NaN/inf error for the Numba kernel's non-zero ``code`` (1, 2, 3: Q, K,
    V)."""
    raise ValueError(f"{'QKV'[code - 1]} contains NaN or inf")


# ------------------------------------------------------------------ the compiled front
# Issue #19: after a pause every Python step of a call runs from cold caches (~1 ms of a 6 ms
# call at n = 8192: the checks, the index arrays, the 21-argument dispatch). The plain case —
# contiguous writeable float32/float64 Q, K, V of one dtype, no dilation, no global position,
# no padding, not causal — goes through one compiled call instead; anything else, and any
# shape it cannot serve, takes the checked path with its messages.
@numba.njit(cache=True)
def _swa_front(Q, K, V, half, warmed):
    """``(out, code)``: :func:`sliding_window_attention`'s output for a plain window of half
    width ``half`` (``code`` 0), or ``code`` 1/2/3 when Q/K/V holds a NaN or inf, or −1 when
    the shapes do not fit (the checked path then raises its message)."""
    B, H, n, d = Q.shape
    dv = V.shape[3]
    if K.shape[0] != B or K.shape[1] != H or K.shape[2] != n or K.shape[3] != d or \
            V.shape[0] != B or V.shape[1] != H or V.shape[2] != n or 2 * half > n or d == 0:
        return np.empty((0, 0, 0, 0), dtype=Q.dtype), -1  # (d = 0: the checked path's 1/√0)
    perm, seg, lo, hi = _residue_band(n, half, 1)
    scale = np.empty(1, dtype=Q.dtype)
    scale[0] = 1.0 / np.sqrt(d)  # as the checked path: float64, then the inputs' dtype
    outp = np.empty((B, H, n, dv), dtype=Q.dtype)
    lsep = np.empty((B, H, n), dtype=Q.dtype)
    code = _swa_fwd_band_impl(Q, K, V, np.ones((B, H, n), dtype=np.bool_),
                             np.zeros((B, H), dtype=np.bool_), np.zeros(n, dtype=np.bool_), lo,
                             hi, seg, perm, np.empty(0, dtype=np.int64),
                             np.empty((B, H, 0, d), dtype=Q.dtype),
                             np.empty((B, H, 0, dv), dtype=Q.dtype),
                             np.empty((B, H, 0), dtype=np.bool_), 1, half, False, scale[0], outp,
                             lsep, warmed)
    return outp, code


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
#: Switch for tests that spy on the checked path.
_FRONT_ON = True


def _front(Q, K, V, window, dilation, global_idx, causal, backend):
    """:func:`sliding_window_attention` through :func:`_swa_front`, or None (then the checked
    path runs)."""
    if backend is not None and backend != "numba":
        return None
    if type(Q) is not np.ndarray or type(K) is not np.ndarray or type(V) is not np.ndarray or \
            type(window) is not int or type(dilation) is not int or dilation != 1 or \
            causal is not False or not (global_idx is None or
                                        (type(global_idx) is tuple and not global_idx)):
        return None
    dt = Q.dtype
    if (dt is not _F32 and dt is not _F64) or K.dtype is not dt or V.dtype is not dt or \
            Q.ndim != 4 or K.ndim != 4 or V.ndim != 4 or window < 0 or window % 2:
        return None
    for x in (Q, K, V):
        f = x.flags
        if not (f.c_contiguous and f.writeable and f.aligned):
            return None
    b = env("REFIMPL_BACKEND") if backend is None else None
    if (b is not None and b.strip().lower() not in ("", "numba")) or _backend._recorders or \
            not _FRONT_ON:
        return None
    # (the chunk size as _swa_fwd_band_numba's; set here: inside compiled code it would
    # keep _swa_front out of Numba's cache)
    with _backend._numba_lock, _one_blas_thread(), numba.parallel_chunksize(4):
        out, code = _swa_front(Q, K, V, window // 2, _warmed_threads(dt))
    if code < 0:
        return None
    if code:  # (no Python call on the normal path: each step costs after a pause)
        _raise_nonfinite(code)
    return out


def _swa_fwd_band_numpy(Qp, Kp, Vp, keepp, padded, is_gp, lo, hi, seg, pos, gidx, Kg, Vg,
                        keepg, dil, half, causal, scale, outp, lsep, block: int = _BLOCK):
    # the same blocks as _swa_fwd_band_impl, vectorised over (B, H) with masks instead of slices
    ng = gidx.size
    for r in range(seg.size - 1):
        for a in range(seg[r], seg[r + 1], block):
            e = min(a + block, seg[r + 1])
            ka, kb = lo[a], hi[e - 1]
            qb = Qp[:, :, a:e]  # (B, H, bq, d)
            c = np.arange(ka, kb)[None, :]
            M = (c >= lo[a:e, None]) & (c < hi[a:e, None]) & ~is_gp[a:e, None]  # (bq, bk) band
            parts = [(qb @ np.swapaxes(Kp[:, :, ka:kb], -1, -2) * scale,  # (B, H, bq, bk)
                      M & keepp[:, :, None, ka:kb], Vp[:, :, ka:kb])]
            if ng:
                off = gidx[None, :] - pos[a:e, None]  # (bq, ng)
                Mg = ~((off % dil == 0) & (np.abs(off) <= half * dil)) & ~is_gp[a:e, None]
                if causal:
                    Mg &= off <= 0  # a global key after the query: not seen
                parts.append((qb @ np.swapaxes(Kg, -1, -2) * scale,  # (B, H, bq, ng)
                              Mg & keepg[:, :, None, :], Vg))
            mx = np.full(qb.shape[:3] + (1,), -np.inf, dtype=Qp.dtype)  # (B, H, bq, 1)
            for Sx, Mx, _ in parts:
                mx = np.maximum(mx, np.where(Mx, Sx, -np.inf).max(axis=-1, keepdims=True))
            m0 = np.where(np.isneginf(mx), 0, mx)  # −inf: a row without keys
            acc, z = 0, 0
            for Sx, Mx, Vx in parts:
                W = np.exp(np.where(Mx, Sx - m0, -np.inf))
                z = z + W.sum(axis=-1, keepdims=True)
                acc = acc + W @ Vx  # (B, H, bq, d_v)
            with np.errstate(divide="ignore", invalid="ignore"):
                outp[:, :, a:e] = np.where(z > 0, acc / z, 0)
                lsep[:, :, a:e] = (mx + np.log(z))[..., 0]


def _sliding_window_forward(name, Q, K, V, window, dilation, global_idx, key_keep, backend,
                            causal=False):
    # the one forward path of sliding_window_attention and sliding_window_attention_fwd.
    # The Numba kernel applies the NaN policy itself, on each block's rows as it reads them
    # (no separate pass over Q, K, V: ~0.5 ms of a 7 ms call at n = 8192 on a cold machine);
    # nothing else reads the inputs before it, and its outputs are dropped if it reports one.
    fused = resolve_backend(backend) == "numba"
    Q, K, V, half, dil, g, keep, is_global, perm, seg, lo, hi, _, _ = _swa_prepare(
        Q, K, V, window, dilation, global_idx, key_keep, causal, finite=not fused)
    B, H, n, d = Q.shape
    scale = Q.dtype.type(1.0 / np.sqrt(d))  # in the inputs' dtype: float32 stays float32
    if dil > 1:
        Qp, Kp, Vp, keepp = (np.ascontiguousarray(x[:, :, perm]) for x in (Q, K, V, keep))
    else:
        Qp, Kp, Vp, keepp = Q, K, V, keep  # perm is the identity: no copies
    outp = np.empty(Q.shape[:3] + (V.shape[3],), dtype=Q.dtype)  # (B, H, n, d_v)
    lsep = np.empty(Q.shape[:3], dtype=Q.dtype)  # (B, H, n)
    # (no padding / no global position: the kernel's arguments without NumPy passes, which
    # cost ~0.1 ms each on a cold call)
    padded = np.zeros((B, H), dtype=np.bool_) if key_keep is None else ~keepp.all(axis=-1)
    if g.size:
        Kg, Vg, keepg = (np.ascontiguousarray(x[:, :, g]) for x in (K, V, keep))
        is_gp = is_global[perm]
    else:
        Kg, Vg = np.empty((B, H, 0, d), dtype=K.dtype), np.empty((B, H, 0, V.shape[3]), V.dtype)
        keepg, is_gp = np.empty((B, H, 0), dtype=np.bool_), is_global
    with _one_blas_thread():  # many small GEMMs inside the parallel tasks
        code = dispatch(name, backend, _swa_fwd_band_numba, _swa_fwd_band_numpy,
                       Qp, Kp, Vp, keepp, padded, is_gp, lo, hi, seg, perm, g, Kg, Vg, keepg,
                       dil, half, bool(causal), scale, outp, lsep)
    if fused and code:
        _raise_nonfinite(code)
    if dil > 1:
        out, lse = np.empty_like(outp), np.empty_like(lsep)
        out[:, :, perm] = outp  # back to the original order
        lse[:, :, perm] = lsep
    else:
        out, lse = outp, lsep
    if g.size:  # global rows attend to every real key (causal: every key j <= g): O(g n d)
        Mr = keep[:, :, None, :]  # (B, H, 1 | ng, n)
        if causal:
            Mr = Mr & (np.arange(n)[None, :] <= g[:, None])
        S = np.where(Mr, Q[:, :, g] @ np.swapaxes(K, -1, -2) * scale, -np.inf)  # (B, H, ng, n)
        mx = S.max(axis=-1, keepdims=True)  # (B, H, ng, 1), −inf for a row without keys
        E = np.exp(S - np.where(np.isneginf(mx), 0, mx))
        z = E.sum(axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, :, g] = np.where(z > 0, (E @ V) / z, 0)  # (B, H, ng, d_v)
            lse[:, :, g] = (mx + np.log(z))[..., 0]
    return out, lse


def sliding_window_attention(Q, K, V, window: int, dilation: int = 1, global_idx=(), *,
                             causal: bool = False, backend=None) -> np.ndarray:
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
    causal : bool
        Left-only (autoregressive) attention, as Longformer's character-level language
        models (Beltagy et al. §4): the attended set above intersected with ``{j <= i}``:
        the band keys right of the query are dropped, a global key ``g`` is seen only by
        queries ``i >= g``, and a global query ``g`` sees only the keys ``j <= g``.
        Default ``False``.
    backend : {"numba", "numpy", None}

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        Equal to dense attention under :func:`refimpl.attention.linear.longformer_mask`
        (``causal=True``: that mask ``∧ tril(n)``).

    Raises
    ------
    ValueError
        Q, K or V contains NaN or inf (named in the message), or a shape/argument error.

    Notes
    -----
    :func:`sliding_window_attention_fwd` without key padding, its row log-sum-exp dropped:
    the same kernels. Time :math:`O(n (w + g) d + g n d)`, memory :math:`O(n d)` for the
    output plus :math:`O(b (b + w))` scratch per block of ``b = 64`` queries (both backends).
    A dilated window is a plain window on each residue class ``i mod dilation``; the Numba
    kernel reorders the sequence by residue class and runs query blocks in parallel
    (``prange``, dynamic chunks of 4 blocks), each with direct BLAS calls for its band scores
    and for the values (in parts of at most 10⁶ multiply-adds: OpenBLAS's small-matrix
    kernels, without packing). The softmax between them works on each query's contiguous
    band slice: the band maximum, then a vectorised range-reduced polynomial ``exp`` (Cody–Waite
    reduction, Cephes polynomials; maximum relative error vs ``np.exp`` about 1e-7 in float32
    and 3e-16 in float64, tested) instead of a scalar libm call per score; ``1/√d`` is applied
    inside the exponent, so ``Q`` is not copied. Float32 inputs are computed and accumulated
    in float32 (agreement with float64 masked dense attention about 1e-6). BLAS (NumPy's and
    SciPy's, which Numba's ``np.dot`` calls) is limited to one thread during the call: many
    small GEMMs run inside the parallel tasks.
    """
    out = _front(Q, K, V, window, dilation, global_idx, causal, backend)
    if out is not None:
        return out
    return _sliding_window_forward("sliding_window_attention", Q, K, V, window, dilation,
                                   global_idx, None, backend, causal)[0]


def sliding_window_attention_fwd(Q, K, V, window: int, dilation: int = 1, global_idx=(),
                                 key_keep=None, *, causal: bool = False, backend=None):
    """Sliding-window (+ dilated, + global) attention with key padding, returning the row
    log-sum-exp for :func:`sliding_window_attention_bwd` (Survey §7.2, Longformer).

    The same attention pattern as :func:`sliding_window_attention` (equal to dense attention
    under :func:`refimpl.attention.linear.longformer_mask`), intersected with ``key_keep``:
    padded keys get no weight; a query whose allowed keys are all padding gets a zero output.

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
    V : ndarray of shape (B, H, n, d_v)
    window, dilation, global_idx, causal
        As in :func:`sliding_window_attention` (``causal=True``: keys ``j <= i`` only).
    key_keep : bool ndarray broadcastable to (B, H, n), optional
        ``True`` = a real key (default: every key).
    backend : {"numba", "numpy", None}
        The kernel of the window rows (band and global keys); global rows (``O(n g)``) are
        NumPy products in both.

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
    The kernels of :func:`sliding_window_attention` (see there), with padded keys set to
    :math:`-\\infty` before the softmax and the row log-sum-exp
    :math:`\\max_i/\\sqrt d + \\log z_i` kept. Time :math:`O(n (w + g) d + g n d)`; memory
    :math:`O(n (d + g))` plus :math:`O(b (b + w))` scratch per block of ``b = 64`` queries;
    no ``n × n`` array.
    """
    return _sliding_window_forward("sliding_window_attention_fwd", Q, K, V, window, dilation,
                                   global_idx, key_keep, backend, causal)


# ------------------------------------------------------------------------------ backward
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
            _exp_shift_sum(sc, L, one)  # sc <- P_ij = exp(s_ij − lse_i)
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
    # key side: dk_j = scale Σ_i dS_ij q_i, dv_j = Σ_i P_ij dO_i over the non-global queries
    # i whose window holds j, i in [lo[j], hi[j]) (the caller passes the queries-of-a-key
    # ranges: the band itself when symmetric, [j, j + w/2] when causal)
    B, H, n, d = Qp.shape
    dv = Vp.shape[3]
    nch = (n + _ROWS - 1) // _ROWS
    wmax = _band_width(lo, hi)
    for task in numba.prange(B * H * nch):
        b, h, r0, r1 = _row_task(task, nch, H, n)
        s = np.empty(wmax, dtype=Qp.dtype)
        dp = np.empty(wmax, dtype=Qp.dtype)
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
                    sc[c] += kk * row[c]  # the same products, in the same order, as _band_scores
            for c in range(m):
                i = a + c
                L = lsep[b, h, i]
                if is_gp[i] or L == -np.inf:
                    sc[c] = -np.inf
                else:
                    sc[c] = sc[c] * scale - L
            _exp_shift_sum(sc, zero, one)  # sc <- P_ij
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



def _swa_extra_mask(n, half, dil, g, keep, is_global, causal=False):
    # non-global query i × global key g outside i's window, g real (causal: g <= i):
    # (B, H, n, ng)
    off = g[None, :] - np.arange(n)[:, None]  # (n, ng)
    out_win = ~((off % dil == 0) & (np.abs(off) <= half * dil)) & ~is_global[:, None]
    if causal:
        out_win &= off <= 0
    return out_win & keep[:, :, None, g]



def _swa_bwd_band_numba(Qp, Kp, Vp, dOp, Dp, lsep, keepp, is_gp, lo, hi, klo, khi, scale, dQp,
                        dKp, dVp):
    # lo, hi: the keys of each query; klo, khi: the queries of each key (see _swa_prepare)
    dt = Qp.dtype.type

    def tr(x):
        return np.ascontiguousarray(np.swapaxes(x, -1, -2))  # (B, H, d, n)
    _swa_bwd_q_impl(Qp, Kp, tr(Kp), tr(Vp), dOp, Dp, lsep, keepp, is_gp, lo, hi, dt(scale),
                    dt(1.0), dQp)
    _swa_bwd_kv_impl(Qp, tr(Qp), Kp, Vp, dOp, tr(dOp), Dp, lsep, keepp, is_gp, klo, khi,
                     dt(scale), dt(0.0), dt(1.0), dKp, dVp)


def _swa_bwd_band_numpy(Qp, Kp, Vp, dOp, Dp, lsep, keepp, is_gp, lo, hi, klo, khi, scale, dQp,
                        dKp, dVp, block: int = 64):
    # klo, khi unused: the keys' gradients are scattered from the query blocks
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


def sliding_window_attention_bwd(dout, Q, K, V, out, lse, window: int, dilation: int = 1,
                                 global_idx=(), key_keep=None, *, causal: bool = False,
                                 backend=None):
    """Gradients of :func:`sliding_window_attention_fwd`: ``(dQ, dK, dV)`` from ``dout``.

    Flash-attention style recomputation: with the saved ``out`` and row log-sum-exp ``lse``,
    :math:`P_{ij} = \\exp(s_{ij} - \\mathrm{lse}_i)`, :math:`D_i = dO_i \\cdot o_i`,
    :math:`dS_{ij} = P_{ij}(dO_i \\cdot v_j - D_i)`, and
    :math:`dQ = dS K/\\sqrt d`, :math:`dK = dS^T Q/\\sqrt d`, :math:`dV = P^T dO`, summed over
    the allowed pairs only.

    Parameters
    ----------
    dout : ndarray of shape (B, H, n, d_v)
    Q, K, V, window, dilation, global_idx, key_keep, causal, backend
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
        Q, K, V, dout or out contains NaN or inf, or ``lse`` holds NaN or +inf (named in
        the message), or a shape/argument error.

    Notes
    -----
    Time :math:`O(n (w + g)(d + d_v) + g n (d + d_v))`, memory :math:`O(n (d + d_v + g))`:
    the Numba backend runs a query-side pass (``dQ``, one task per 64 query rows) and a
    key-side pass (``dK, dV``, one task per 64 keys; the window is symmetric, so no two
    tasks write the same row), both recomputing the band scores (by axpy over the transposed
    keys or queries; the forward's BLAS scores agree with them to rounding, so
    :math:`\\sum_j P_{ij} = 1` to rounding); no ``n × n`` array.
    """
    Q, K, V, half, dil, g, keep, is_global, perm, _, lo, hi, klo, khi = _swa_prepare(
        Q, K, V, window, dilation, global_idx, key_keep, causal)
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
             is_global[perm], lo, hi, klo, khi, scale, dQp, dKp, dVp)
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
            M = _swa_extra_mask(n, half, dil, g, keep, is_global, causal) & fin  # (B, H, n, ng)
            Sg = Q @ np.swapaxes(Kg, -1, -2) * scale
            Pg = np.where(M, np.exp(np.where(M, Sg - Lc, -np.inf)), 0.0)
            dSg = Pg * (dout @ np.swapaxes(Vg, -1, -2) - D[..., None]) * scale
            dQ += dSg @ Kg
            dK[:, :, g] += np.swapaxes(dSg, -1, -2) @ Q
            dV[:, :, g] += np.swapaxes(Pg, -1, -2) @ dout
            # global rows (their band gradients were left out above)
            Mr = keep[:, :, None, :] & fin[:, :, g]  # (B, H, ng, n)
            if causal:
                Mr = Mr & (np.arange(n)[None, :] <= g[:, None])
            Sr = Q[:, :, g] @ np.swapaxes(K, -1, -2) * scale
            Pr = np.where(Mr, np.exp(np.where(Mr, Sr - Lc[:, :, g], -np.inf)), 0.0)
            dSr = Pr * (dout[:, :, g] @ np.swapaxes(V, -1, -2) - D[:, :, g, None]) * scale
            dQ[:, :, g] = dSr @ K
            dK += np.swapaxes(dSr, -1, -2) @ Q[:, :, g]
            dV += np.swapaxes(Pr, -1, -2) @ dout[:, :, g]
    return dQ, dK, dV
