"""Shared parts of the attention kernels (Survey §7): argument checks, the BLAS thread limit
and the vectorised softmax ``exp``.

Used by :mod:`refimpl.kernels.sliding_window` (Longformer, §7.2),
:mod:`refimpl.kernels.block_sparse_attention` (BlockBERT, Sparse Transformer, §7.1) and
:mod:`refimpl.kernels.causal_linear` (linear Transformer, §7.2):

- :func:`_check_qkv`, :func:`_check_finite`: shapes, dtypes and the NaN policy (a public entry
  point refuses non-finite inputs with a ``ValueError`` naming the argument, in both backends);
- :func:`_one_blas_thread`: BLAS limited to one thread around kernels that call many small
  GEMMs from Numba's parallel tasks;
- :func:`_exp_shift_sum` (float32/float64 twins), :func:`_row_max`, :func:`_scale_rows`: the
  softmax pieces of the band kernels; :func:`_exp_approx` exposes the ``exp`` for tests.

References
----------
.. [1] W. J. Cody, W. Waite, "Software Manual for the Elementary Functions", Prentice-Hall,
   1980 (the range reduction of the ``exp``).
.. [2] S. L. Moshier, Cephes Mathematical Library (the ``exp``/``expf`` polynomials).
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
from numba.extending import overload

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


# ------------------------------------------------------------------------------ softmax exp
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


@numba.njit(cache=True, fastmath={"nsz", "arcp", "contract", "reassoc"})
def _row_max(x):
    # contiguous row, no gathers (LLVM keeps this reduction scalar, vmaxss: ~1 ms per 8192 rows
    # of 257, not worth unrolling). No ``ninf``: padded keys are -inf, and a row of padding
    # returns -inf. (NaN inputs are refused by the public entry points.)
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

