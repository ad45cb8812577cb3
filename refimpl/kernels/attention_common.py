"""Shared parts of the attention kernels (Survey §7): argument checks, the BLAS thread limit
and the vectorised softmax ``exp``.

Used by :mod:`refimpl.kernels.sliding_window` (Longformer, §7.2),
:mod:`refimpl.kernels.block_sparse_attention` (BlockBERT, Sparse Transformer, §7.1) and
:mod:`refimpl.kernels.causal_linear` (linear Transformer, §7.2):

- :func:`_check_qkv`, :func:`_check_finite`: shapes, dtypes and the NaN policy (a public entry
  point refuses non-finite inputs with a ``ValueError`` naming the argument, in both backends);
- :func:`_one_blas_thread`: BLAS limited to one thread around kernels that call many small
  GEMMs from Numba's parallel tasks;
- :func:`_gemm`: SciPy's BLAS ``sgemm``/``dgemm`` called directly from compiled code, on views
  (leading dimensions, transposes, accumulation), which ``np.dot`` in Numba cannot do;
- :func:`_nonfinite`: the NaN policy inside a kernel's own pass over its rows;
- :func:`_exp_shift_sum` (float32/float64 twins), :func:`_row_max`, :func:`_lane_sum`,
  :func:`_scale_rows`: the softmax pieces of the band kernels (fixed summation order, the same
  bits on every CPU); :func:`_exp_approx` exposes the ``exp`` for tests.

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
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

_BLAS_LIBS = None


# ------------------------------------------------------------------------------ direct GEMM
# SciPy's BLAS (the library Numba's np.dot calls), called directly: np.dot needs contiguous
# operands and allocates its result, while a band kernel wants to write into slices (strided
# views of a score block, the output rows) and to accumulate (beta = 1). Fortran BLAS takes
# every argument by pointer; the scalars go through the small work arrays of _gemm_work.
def _register_blas(name: str) -> types.ExternalFunction:
    """SciPy's ``cython_blas`` ``name`` as an external symbol ``refimpl_<name>`` for compiled
    code (registered with LLVM by address at import, so that cached kernels link again)."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS)
    from llvmlite import binding
    from numba.extending import get_cython_function_address

    symbol = f"refimpl_{name}"
    binding.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_blas", name))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * 13)))


_SGEMM = _register_blas("sgemm")
_DGEMM = _register_blas("dgemm")


@intrinsic
def _ptr(typingctx, arr):
    """The data pointer of an array (its first element) as ``void *``."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, ir.IntType(8).as_pointer())

    return types.voidptr(arr), codegen


@numba.njit(cache=True)
def _gemm_work(dtype_like):
    """Work arrays of :func:`_gemm` (one set per caller that may run concurrently with others,
    e.g. per parallel task): the integer arguments, the two transpose flags, alpha and beta in
    the operands' dtype."""
    return (np.empty(6, dtype=np.int32), np.empty(2, dtype=np.uint8),
            np.empty(2, dtype=dtype_like.dtype))


@numba.njit(cache=True)
def _gemm(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc, work):
    """BLAS ``?gemm`` in its own (column-major) terms: ``C ← op(A) op(B) + beta·C`` with
    ``op(A)`` m × k, ``op(B)`` k × n, ``C`` m × n, ``ta``/``tb`` = ``ord('N')`` or ``ord('T')``,
    leading dimensions ``lda``, ``ldb``, ``ldc``; ``A``, ``B``, ``C`` are arrays whose first
    element is the operand's first element (any views: only their data pointers are passed,
    the caller guarantees the extents). float32 → sgemm, float64 → dgemm.

    A row-major product ``Y (r × c) = X (r × q) · Z (q × c)`` is ``Yᵀ = Zᵀ Xᵀ`` column-major:
    ``_gemm(N, N, c, r, q, Z, ldz, X, ldx, 0, Y, ldy)``.
    """
    ints, flags, ab = work
    flags[0] = ta
    flags[1] = tb
    ints[0] = m
    ints[1] = n
    ints[2] = k
    ints[3] = max(lda, 1)
    ints[4] = max(ldb, 1)
    ints[5] = max(ldc, 1)
    ab[0] = 1
    ab[1] = beta
    args = (_ptr(flags), _ptr(flags[1:]), _ptr(ints), _ptr(ints[1:]), _ptr(ints[2:]), _ptr(ab),
            _ptr(A), _ptr(ints[3:]), _ptr(B), _ptr(ints[4:]), _ptr(ab[1:]), _ptr(C),
            _ptr(ints[5:]))
    if C.itemsize == 4:  # float32 (the callers pass float32 or float64 operands)
        _SGEMM(*args)
    else:
        _DGEMM(*args)


if numba.config.DISABLE_JIT:  # the intrinsics cannot run as Python: a NumPy stand-in

    def _gemm(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc, work):  # noqa: F811
        """:func:`_gemm`'s semantics on strided views of the operands' memory (Python mode)."""
        def op(X, rows, cols, ld, t):  # op(X): rows × cols, X column-major with ld
            it = X.itemsize
            shape = (rows, cols) if t == ord("N") else (cols, rows)
            M = np.lib.stride_tricks.as_strided(X, shape, (it, max(ld, 1) * it),
                                                writeable=False)
            return M if t == ord("N") else M.T

        Cv = np.lib.stride_tricks.as_strided(C, (m, n), (C.itemsize, max(ldc, 1) * C.itemsize))
        prod = op(A, m, k, lda, ta) @ op(B, k, n, ldb, tb)
        Cv[...] = prod if beta == 0 else prod + beta * Cv


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


def _check_qkv(Q, K, V, names=("Q", "K", "V"), finite=True):
    # local validation (kernels import nothing from the chapters); finite=False leaves the NaN
    # policy to the caller (a kernel that checks the inputs as it reads them: _nonfinite)
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
    if finite:
        for nm, a in zip(names, (Q, K, V)):
            _check_finite(a, nm)
    dt = np.result_type(Q.dtype, K.dtype, V.dtype)
    return (np.ascontiguousarray(Q, dtype=dt), np.ascontiguousarray(K, dtype=dt),
            np.ascontiguousarray(V, dtype=dt))


@numba.njit(cache=True, fastmath={"reassoc"})
def _nonfinite(x):
    # 1 if the 2-D array x holds a NaN or ±inf, else 0: x·0 is ±0 for a finite x and NaN
    # otherwise, and NaN survives any summation order (``reassoc`` lets LLVM vectorise the sum;
    # without ``nnan``/``nsz`` it may not fold x·0 to 0). A kernel calls it on the rows it is
    # about to read, so the NaN policy costs no separate pass over cold memory.
    if x.shape[0] == 0 or x.shape[1] == 0:
        return 0
    acc = x[0, 0] * 0  # a zero of x's dtype (or NaN)
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            acc += x[r, c] * 0
    return 0 if acc == 0 else 1


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


@intrinsic
def _bits_as_float(typingctx, v):
    """The float with the bits of ``v`` (int32 -> float32, int64 -> float64): a bitcast, which
    LLVM vectorises inside a loop (a NumPy ``view`` needs an array)."""
    if v == types.int32:
        sig, fty = types.float32(types.int32), ir.FloatType()
    elif v == types.int64:
        sig, fty = types.float64(types.int64), ir.DoubleType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], fty)

    return sig, codegen


if numba.config.DISABLE_JIT:

    def _bits_as_float(v):  # noqa: F811  (Python mode)
        v = np.asarray(v)
        return v.view(np.float32 if v.dtype == np.int32 else np.float64)[()]


@numba.njit(cache=True, fastmath={"contract", "arcp", "nsz"})
def _exp_shift_sum_f32(x, mx, scale):
    # x[c] <- exp(scale * (x[c] - mx)) in place (contiguous float32 row, no gathers), returns
    # the sum (_lane_sum). One loop: exp(r) times 2^k, assembled from its exponent bits by a
    # bitcast (before: 2^k stored to a scratch row and multiplied in a second loop; the same
    # bits, 1.6 -> 1.3 ms per 8192 rows of 257, one thread).
    # No ``nnan``/``ninf``: a NaN score stays NaN in its numerator and in the sum.
    for c in range(x.shape[0]):
        t = (x[c] - mx) * scale
        tc = max(t, np.float32(_EXP_MIN32))
        ki = np.int32(tc * np.float32(_LOG2E) - np.float32(0.5))  # round(tc/ln2), tc <= 0
        k = np.float32(ki)
        r = (tc - k * np.float32(0.693359375)) - k * np.float32(-2.12194440e-4)  # ln2 = C1 + C2
        z = r * r
        p = ((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
               + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
             + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
        # 2^k as float32 bits; 0.0 below the range; a NaN argument gives NaN (0x7fc00000)
        bits = ((ki + np.int32(127)) << np.int32(23)) if t >= np.float32(_EXP_MIN32) \
            else (np.int32(0) if t < np.float32(_EXP_MIN32) else np.int32(0x7FC00000))
        x[c] = (p * z + r + np.float32(1.0)) * _bits_as_float(np.int32(bits))  # exp(r)·2^k
    return _lane_sum(x, np.float32(0.0))


@numba.njit(cache=True, fastmath={"contract", "arcp", "nsz"})
def _exp_shift_sum_f64(x, mx, scale):
    # float64 twin of _exp_shift_sum_f32; exp(r) by Cephes' Padé form
    # 1 + 2 r P(r²) / (Q(r²) − r P(r²)).
    for c in range(x.shape[0]):
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
        bits = ((np.int64(ki) + np.int64(1023)) << np.int64(52)) if t >= _EXP_MIN64 \
            else (np.int64(0) if t < _EXP_MIN64 else np.int64(0x7FF8000000000000))
        x[c] = (1.0 + 2.0 * px / (qx - px)) * _bits_as_float(np.int64(bits))
    return _lane_sum(x, 0.0)


@numba.njit(cache=True, fastmath={"contract", "arcp", "nsz"})
def _lane_sum(x, zero):
    # The sum of a contiguous row in a fixed order: eight explicit partial sums (lane j adds
    # the elements c ≡ j mod 8), the lanes then pairwise, the < 8 leftovers last — the same
    # bits on every CPU, and no 4-cycle dependency chain per element (one running sum took
    # ~40 % of the softmax: 8192 rows of 257, 2.3 -> 1.8 ms, one thread). ``zero``: 0 in x's
    # dtype.
    m = x.shape[0]
    m8 = m - m % 8
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    for c in range(0, m8, 8):
        s0, s1, s2, s3 = s0 + x[c], s1 + x[c + 1], s2 + x[c + 2], s3 + x[c + 3]
        s4, s5, s6, s7 = s4 + x[c + 4], s5 + x[c + 5], s6 + x[c + 6], s7 + x[c + 7]
    s = ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))
    for c in range(m8, m):
        s += x[c]
    return s


@numba.njit(cache=True, fastmath={"nsz"})
def _row_max(x):
    # max of a contiguous row, no gathers. Eight explicit running maxima (lane j sees the
    # elements c ≡ j mod 8; max is exact, so the order does not change the result): one running
    # maximum was a 4-cycle chain per element, 1.8 -> 0.6 ms per 8192 rows of 257 (one thread).
    # A padded key is -inf and a row of padding returns -inf; no ``ninf``/``nnan`` (NaN inputs
    # are refused by the public entry points). ``x`` must not be empty.
    m = x.shape[0]
    m8 = m - m % 8
    if m8 == 0:  # shorter than the lanes: the tail loop below from the second element
        return _max_from(x, x[0], 1)
    a0, a1, a2, a3, a4, a5, a6, a7 = x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]
    for c in range(8, m8, 8):
        v0, v1, v2, v3, v4, v5, v6, v7 = x[c], x[c + 1], x[c + 2], x[c + 3], x[c + 4], \
            x[c + 5], x[c + 6], x[c + 7]
        a0, a1, a2, a3 = (v0 if v0 > a0 else a0), (v1 if v1 > a1 else a1), \
            (v2 if v2 > a2 else a2), (v3 if v3 > a3 else a3)
        a4, a5, a6, a7 = (v4 if v4 > a4 else a4), (v5 if v5 > a5 else a5), \
            (v6 if v6 > a6 else a6), (v7 if v7 > a7 else a7)
    a0, a1, a2, a3 = (a4 if a4 > a0 else a0), (a5 if a5 > a1 else a1), (a6 if a6 > a2 else a2), \
        (a7 if a7 > a3 else a3)
    a0, a1 = (a2 if a2 > a0 else a0), (a3 if a3 > a1 else a1)
    return _max_from(x, a1 if a1 > a0 else a0, m8)


@numba.njit(cache=True, fastmath={"nsz"})
def _max_from(x, mx, start):
    # max(mx, x[start:]) by a plain running maximum (the < 8 elements after the lanes)
    for c in range(start, x.shape[0]):
        v = x[c]
        mx = v if v > mx else mx
    return mx


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _scale_rows(o, zs):
    # o[r] /= zs[r]: normalise the d_v outputs, not the band of scores
    for r in range(o.shape[0]):
        inv = 1 / zs[r]
        for c in range(o.shape[1]):
            o[r, c] *= inv


def _exp_shift_sum(x, mx, scale):
    """exp(scale·(x − mx)) in place, returns the sum (dtype-dispatched; this body runs only
    with ``NUMBA_DISABLE_JIT=1``, compiled code uses the overload below)."""
    if x.dtype == np.float32:
        return _exp_shift_sum_f32(x, mx, scale)
    return _exp_shift_sum_f64(x, mx, scale)


@overload(_exp_shift_sum)
def _exp_shift_sum_ol(x, mx, scale):
    if x.dtype == numba.types.float32:
        return lambda x, mx, scale: _exp_shift_sum_f32(x, mx, scale)
    return lambda x, mx, scale: _exp_shift_sum_f64(x, mx, scale)


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
        _exp_shift_sum_f32(x, np.float32(0), np.float32(1))
    else:
        _exp_shift_sum_f64(x, 0.0, 1.0)
    return x

