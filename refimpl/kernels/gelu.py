r"""The error function and the exact GELU as element-wise kernels (Survey §1, the Transformer
feed-forward activation of BERT and every model compressed in §2-§8; Hendrycks & Gimpel 2016).

The exact (``approximate="none"``) Gaussian Error Linear Unit and its derivative are

.. math:: \mathrm{GELU}(x) = x\,\Phi(x), \qquad \Phi(x) = \tfrac12\bigl(1 + \mathrm{erf}(x/\sqrt2)
   \bigr), \qquad \mathrm{GELU}'(x) = \Phi(x) + x\,\varphi(x), \quad
   \varphi(x) = e^{-x^2/2}/\sqrt{2\pi}.

``scipy.special.erf`` computes this one scalar at a time (Cephes), about 0.14 µs per float32
element on the development machine — for BERT-sized activations several times the cost of the
GEMM before it. The Numba kernels here are branch-free loops that LLVM vectorises (no libm
call in the float32 path), parallel over elements with ``prange`` for large arrays.

float32 path (the one BERT inference runs)
------------------------------------------
Each float32 input is widened to float64, ``erf`` is evaluated in float64 by two polynomials,
and the result is rounded once to float32:

* ``|x| < 1``: ``erf(x) = x · A(x²)``, ``A`` of degree 7 in ``x²`` (relative error 4e-11);
* ``1 ≤ |x| < 3.92``: ``erf(|x|) = B(t)``, ``t = (|x| − 2.46)/1.46 ∈ [−1, 1]``, ``B`` of
  degree 16 (absolute error 5e-10 where ``erf ≥ 0.84``, i.e. < 0.01 float32 ulp);
* ``|x| ≥ 3.92``: ``±1`` — the float32 ``erf`` is exactly ±1 from ``|x| ≥ 3.9192`` on
  (``erfc(3.9192) < 2^{-25}``, half an ulp below 1).

The coefficients are Chebyshev least-squares fits (at 4000 / 6000 Chebyshev nodes) to
``scipy.special.erf`` in float64, converted to the monomial basis (all coefficients ≤ 1 in
magnitude, so Horner's rule is stable). The float64 error before the final rounding is far
below half a float32 ulp, so the float32 result is the correctly rounded ``erf`` except where
the exact value lies within ~1e-3 ulp of a rounding boundary: measured max error 1 ulp
against ``scipy.special.erf`` evaluated in float64 and rounded (``tests/kernels/test_gelu.py``
checks ≤ 1 ulp on a dense grid and at 0, ±tiny, subnormals, ±large, ±inf, NaN).
``gelu`` and ``gelu_grad`` also compute ``x·Φ(x)`` and ``Φ(x) + x·φ(x)`` in float64 and round
once. ``Φ``'s absolute error before rounding is at most 5e-10/2 + erfc(3.92)/2 ≈ 1.5e-8 (the
second term from the saturation: ``Φ(x) = 0`` for ``x < −3.92·√2``), so in GELU's far negative
tail the float32 result has an absolute, not a relative, error of ≤ 1.5e-8·|x| — still several
times smaller than that of PyTorch's float32 GELU, whose ``Φ`` is off by up to ~3.6e-7 there; ``φ`` uses a vectorisable ``exp`` (Cody-Waite reduction ``t = k ln2 + r`` with a
two-part ``ln 2``, degree-12 Taylor polynomial for ``e^{-r}``, ``2^{-k}`` as a product of
``2^{-2^j}`` over the bits of ``k``; relative error ~1e-15).

float64 path
------------
Not from scratch: the Numba kernel calls the C library's ``erf`` and ``exp`` (``math.erf``;
glibc's, < 1 ulp), parallel over elements, and agrees with ``scipy.special.erf`` (Cephes) within 2 ulp, as the tests check. A from-scratch float64 ``erf`` to 1 ulp needs
the fdlibm-style split of ``exp(-x²)`` and was not worth it here: BERT runs in float32.

The NumPy twins evaluate ``scipy.special.erf`` and ``numpy.exp`` in float64 (so for float32
inputs they are the correctly rounded reference up to one rounding) — same signatures, same
output dtypes.

Inputs: float32 arrays keep float32; every other real dtype (float64, float16, integers, bool)
is computed in float64. Complex or object arrays raise ``TypeError``. NaN propagates and
``erf(±inf) = ±1`` (these are element-wise mathematical functions like ``numpy.exp``, so
non-finite values are not refused); ``gelu`` follows its formula ``x·Φ(x)``: ``+inf → +inf``,
``-inf → nan`` (``-inf · 0``), as the previous SciPy-based :func:`refimpl.nn.ops.gelu_forward`.
Inputs are never modified.

References
----------
.. [1] D. Hendrycks, K. Gimpel, "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415, 2016.
.. [2] W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
   (1969) 631-637 (the range split and the rational/polynomial approach).
.. [3] W. J. Cody, W. Waite, "Software Manual for the Elementary Functions", 1980 (exp range
   reduction).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy.special import erf as _scipy_erf

from refimpl.kernels._backend import dispatch

__all__ = ["erf", "erf_numpy", "erf_numba", "gelu", "gelu_numpy", "gelu_numba",
           "gelu_grad", "gelu_grad_numpy", "gelu_grad_numba", "PARALLEL_MIN_SIZE"]

#: Arrays with at least this many elements run the ``prange`` kernels; smaller ones a serial
#: loop (thread wake-up costs ~10-60 µs, more than the whole loop below this size).
PARALLEL_MIN_SIZE = 1 << 15

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SAT = 3.92  # float32 erf(x) == 1 for x >= 3.9192 (erfc < 2**-25)
_MID, _HALF = 2.46, 1.46  # region B: t = (|x| - 2.46) / 1.46 maps [1, 3.92] to [-1, 1]
_LN2_HI = 0.693145751953125  # 2-part ln 2 (Cody-Waite): k * _LN2_HI is exact for k < 2**11
_LN2_LO = 1.4286068203094172321e-06
_INV_LN2 = 1.0 / math.log(2.0)
_T_MAX = 110.0  # e^{-110} · 110 < 1e-45: x·φ(x) is 0 in float32 beyond (exp argument clamp)


# ------------------------------------------------------------------ scalar float64 pieces
@numba.njit(inline="always", fastmath={"contract"})
def _erf64_poly(x):
    """erf(x) in float64 arithmetic, accurate to ~5e-10 absolute / 4e-11 relative (|x| < 1)."""
    ax = abs(x)
    s = x * x
    # region A, |x| < 1: erf(x) = x * A(2 x^2 - 1), A in Horner form (degree 7)
    u = 2.0 * s - 1.0
    pa = -7.557495289256732e-08
    pa = pa * u + 1.2316406895252401e-06
    pa = pa * u - 1.753682465058603e-05
    pa = pa * u + 0.0002175119891122529
    pa = pa * u - 0.002285485656969898
    pa = pa * u + 0.019852497722973015
    pa = pa * u - 0.1405360890155277
    pa = pa * u + 0.9654687386375432
    ra = x * pa
    # region B, 1 <= |x| < 3.92: erf(|x|) = B((|x| - 2.46) / 1.46) (degree 16)
    t = (min(ax, 3.92) - 2.46) / 1.46
    pb = -3.5910945160193147e-06
    pb = pb * t - 0.00010715298851488478
    pb = pb * t + 0.00023320607610282016
    pb = pb * t + 0.00041481019812418497
    pb = pb * t - 0.0016492075136092
    pb = pb * t + 0.0009846714599913383
    pb = pb * t + 0.0033567675793681404
    pb = pb * t - 0.008570699139328532
    pb = pb * t + 0.0073383774172292235
    pb = pb * t + 0.0063068956577412
    pb = pb * t - 0.02844529053787627
    pb = pb * t + 0.04514657785642339
    pb = pb * t - 0.04504755663410586
    pb = pb * t + 0.030596281061643495
    pb = pb * t - 0.01392896983899345
    pb = pb * t + 0.003878204231763334
    pb = pb * t + 0.9994966462827133
    rb = pb if ax < 3.92 else 1.0
    rb = rb if x >= 0.0 else -rb
    r = ra if ax < 1.0 else rb
    return r if x == x else x  # NaN propagates


@numba.njit(inline="always", fastmath={"contract"})
def _exp_neg64(t):
    """e^{-t} for 0 <= t <= 110 (vectorisable: no libm call), relative error ~1e-15."""
    kf = math.floor(t * 1.4426950408889634 + 0.5)
    r = (t - kf * 0.693145751953125) - kf * 1.4286068203094172321e-06  # |r| <= ln2/2
    # e^{-r}: Taylor degree 12 (|r|^13/13! < 3e-16)
    p = 1.0 / 479001600.0
    p = p * (-r) + 1.0 / 39916800.0
    p = p * (-r) + 1.0 / 3628800.0
    p = p * (-r) + 1.0 / 362880.0
    p = p * (-r) + 1.0 / 40320.0
    p = p * (-r) + 1.0 / 5040.0
    p = p * (-r) + 1.0 / 720.0
    p = p * (-r) + 1.0 / 120.0
    p = p * (-r) + 1.0 / 24.0
    p = p * (-r) + 1.0 / 6.0
    p = p * (-r) + 0.5
    p = p * (-r) + 1.0
    p = p * (-r) + 1.0
    k = np.int64(kf)  # 0 <= k <= 159
    # 2^{-k} = prod_j (2^{-2^j})^{bit j of k}, branch-free
    p *= 1.0 - 0.5 * (k & 1)
    p *= 1.0 - 0.75 * ((k >> 1) & 1)
    p *= 1.0 - 0.9375 * ((k >> 2) & 1)
    p *= 1.0 - (1.0 - 2.0 ** -8) * ((k >> 3) & 1)
    p *= 1.0 - (1.0 - 2.0 ** -16) * ((k >> 4) & 1)
    p *= 1.0 - (1.0 - 2.0 ** -32) * ((k >> 5) & 1)
    p = p * 2.0 ** -64 if (k >> 6) & 1 else p
    p = p * 2.0 ** -128 if (k >> 7) & 1 else p
    return p


@numba.njit(inline="always", fastmath={"contract"})
def _gelu_grad64_f32(g, x, c):
    t = min(0.5 * x * x, 110.0)
    pdf = 0.3989422804014327 * _exp_neg64(t)
    return g * (c + x * pdf)


# ------------------------------------------------------------------ Numba loops
@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def _erf_f32_par(x, out):
    for i in numba.prange(x.size):
        out[i] = np.float32(_erf64_poly(np.float64(x[i])))


@numba.njit(cache=True, fastmath={"contract"})
def _erf_f32_ser(x, out):
    for i in range(x.size):
        out[i] = np.float32(_erf64_poly(np.float64(x[i])))


@numba.njit(cache=True, parallel=True)
def _erf_f64_par(x, out):
    for i in numba.prange(x.size):
        out[i] = math.erf(x[i])


@numba.njit(cache=True)
def _erf_f64_ser(x, out):
    for i in range(x.size):
        out[i] = math.erf(x[i])


@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def _gelu_f32_par(x, out, cdf):
    for i in numba.prange(x.size):
        xi = np.float64(x[i])
        c = 0.5 * (1.0 + _erf64_poly(xi * 0.7071067811865476))
        cdf[i] = np.float32(c)
        out[i] = np.float32(xi * c)


@numba.njit(cache=True, fastmath={"contract"})
def _gelu_f32_ser(x, out, cdf):
    for i in range(x.size):
        xi = np.float64(x[i])
        c = 0.5 * (1.0 + _erf64_poly(xi * 0.7071067811865476))
        cdf[i] = np.float32(c)
        out[i] = np.float32(xi * c)


@numba.njit(cache=True, parallel=True)
def _gelu_f64_par(x, out, cdf):
    for i in numba.prange(x.size):
        c = 0.5 * (1.0 + math.erf(x[i] * 0.7071067811865476))
        cdf[i] = c
        out[i] = x[i] * c


@numba.njit(cache=True)
def _gelu_f64_ser(x, out, cdf):
    for i in range(x.size):
        c = 0.5 * (1.0 + math.erf(x[i] * 0.7071067811865476))
        cdf[i] = c
        out[i] = x[i] * c


@numba.njit(cache=True, parallel=True, fastmath={"contract"})
def _grad_f32_par(g, x, c, out):
    for i in numba.prange(x.size):
        out[i] = np.float32(_gelu_grad64_f32(np.float64(g[i]), np.float64(x[i]),
                                             np.float64(c[i])))


@numba.njit(cache=True, fastmath={"contract"})
def _grad_f32_ser(g, x, c, out):
    for i in range(x.size):
        out[i] = np.float32(_gelu_grad64_f32(np.float64(g[i]), np.float64(x[i]),
                                             np.float64(c[i])))


@numba.njit(cache=True, parallel=True)
def _grad_f64_par(g, x, c, out):
    for i in numba.prange(x.size):
        out[i] = g[i] * (c[i] + x[i] * (0.3989422804014327 * math.exp(-0.5 * x[i] * x[i])))


@numba.njit(cache=True)
def _grad_f64_ser(g, x, c, out):
    for i in range(x.size):
        out[i] = g[i] * (c[i] + x[i] * (0.3989422804014327 * math.exp(-0.5 * x[i] * x[i])))


# ------------------------------------------------------------------ input handling
def _as_real(x, name: str) -> np.ndarray:
    """``x`` as a float32 (kept) or float64 ndarray; complex/object/str raise TypeError."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real (float or integer) array, got dtype {x.dtype}")
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    return x


def _common(*arrays_and_names):
    arrs = [_as_real(a, n) for a, n in arrays_and_names]
    dt = np.result_type(*arrs)
    shape = arrs[0].shape
    for (a, n) in zip(arrs[1:], [n for _, n in arrays_and_names[1:]]):
        if a.shape != shape:
            raise ValueError(f"{n} must have shape {shape} (that of "
                             f"{arrays_and_names[0][1]}), got {a.shape}")
    return [a.astype(dt, copy=False) for a in arrs], dt


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


# ------------------------------------------------------------------ erf
def erf_numpy(x) -> np.ndarray:
    """NumPy/SciPy reference of :func:`erf` (``scipy.special.erf`` in float64, rounded)."""
    x = _as_real(x, "x")
    return _scipy_erf(x.astype(np.float64)).astype(x.dtype)


def erf_numba(x) -> np.ndarray:
    """Numba twin of :func:`erf_numpy` (same signature and dtype; see the module docstring)."""
    x = _as_real(x, "x")
    out = np.empty(x.shape, x.dtype)
    xf, of = _flat(x), out.reshape(-1)
    par = x.size >= PARALLEL_MIN_SIZE
    if x.dtype == np.float32:
        (_erf_f32_par if par else _erf_f32_ser)(xf, of)
    else:
        (_erf_f64_par if par else _erf_f64_ser)(xf, of)
    return out


def erf(x, *, backend: str | None = None) -> np.ndarray:
    r"""The error function :math:`\mathrm{erf}(x) = \frac{2}{\sqrt\pi}\int_0^x e^{-t^2}\,dt`,
    element-wise.

    float32 in, float32 out (within 1 ulp of the correctly rounded value); any other real dtype
    is computed in float64 (within 2 ulp of ``scipy.special.erf``). NaN propagates,
    ``erf(±inf) = ±1``.

    Parameters
    ----------
    x : array_like of real numbers, any shape
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray, the shape of ``x``, float32 for float32 ``x`` else float64
    """
    return dispatch("erf", backend, erf_numba, erf_numpy, x)


# ------------------------------------------------------------------ GELU forward
def gelu_numpy(x) -> tuple[np.ndarray, np.ndarray]:
    """NumPy/SciPy reference of :func:`gelu` (float64 evaluation, rounded once)."""
    x = _as_real(x, "x")
    x64 = x.astype(np.float64)
    c = 0.5 * (1.0 + _scipy_erf(x64 * _SQRT1_2))
    with np.errstate(invalid="ignore"):  # -inf · 0 = nan, as in the Numba kernel
        y = x64 * c
    return y.astype(x.dtype), c.astype(x.dtype)


def gelu_numba(x) -> tuple[np.ndarray, np.ndarray]:
    """Numba twin of :func:`gelu_numpy` (same signature and dtypes)."""
    x = _as_real(x, "x")
    out = np.empty(x.shape, x.dtype)
    cdf = np.empty(x.shape, x.dtype)
    args = (_flat(x), out.reshape(-1), cdf.reshape(-1))
    par = x.size >= PARALLEL_MIN_SIZE
    if x.dtype == np.float32:
        (_gelu_f32_par if par else _gelu_f32_ser)(*args)
    else:
        (_gelu_f64_par if par else _gelu_f64_ser)(*args)
    return out, cdf


def gelu(x, *, backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact GELU (Hendrycks & Gimpel 2016; PyTorch's ``gelu(approximate="none")``) and the
    Gaussian CDF it multiplies, element-wise: ``y = x·Φ(x)``, ``Φ(x) = ½(1 + erf(x/√2))``.

    The activation of BERT's feed-forward block (Survey §1; every compressed Transformer of
    §2-§8). ``Φ`` is returned because the backward (:func:`gelu_grad`) needs it.

    Parameters
    ----------
    x : array_like of real numbers, any shape
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    y, cdf : ndarray, each the shape of ``x``; float32 for float32 ``x`` (each computed in
        float64 and rounded once), else float64
    """
    return dispatch("gelu", backend, gelu_numba, gelu_numpy, x)


# ------------------------------------------------------------------ GELU backward
def gelu_grad_numpy(dout, x, cdf) -> np.ndarray:
    """NumPy reference of :func:`gelu_grad` (float64 evaluation, rounded once)."""
    (dout, x, cdf), dt = _common((dout, "dout"), (x, "x"), (cdf, "cdf"))
    x64 = x.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # ±inf · 0 = nan, as in Numba
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * x64 * x64)
        return (dout.astype(np.float64) * (cdf.astype(np.float64) + x64 * pdf)).astype(dt)


def gelu_grad_numba(dout, x, cdf) -> np.ndarray:
    """Numba twin of :func:`gelu_grad_numpy` (same signature and dtype)."""
    (dout, x, cdf), dt = _common((dout, "dout"), (x, "x"), (cdf, "cdf"))
    out = np.empty(x.shape, dt)
    args = (_flat(dout), _flat(x), _flat(cdf), out.reshape(-1))
    par = x.size >= PARALLEL_MIN_SIZE
    if dt == np.float32:
        (_grad_f32_par if par else _grad_f32_ser)(*args)
    else:
        (_grad_f64_par if par else _grad_f64_ser)(*args)
    return out


def gelu_grad(dout, x, cdf, *, backend: str | None = None) -> np.ndarray:
    r"""Gradient of the exact GELU: ``dx = dout · (Φ(x) + x·φ(x))``, ``φ(x) = e^{-x²/2}/√(2π)``.

    One pass: ``φ`` is computed in the same loop from ``x`` (``Φ`` comes from :func:`gelu`'s
    forward, so it is not recomputed).

    Parameters
    ----------
    dout, x, cdf : array_like of real numbers, all the same shape (``cdf`` = ``gelu(x)[1]``)
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray, the shape of ``x``; float32 when all three are float32 (computed in float64 and
    rounded once), else float64
    """
    return dispatch("gelu_grad", backend, gelu_grad_numba, gelu_grad_numpy, dout, x, cdf)
