"""Survey §3.3.1–3.3.2 — uniform k-bit quantisation (Eqs. 36–39) and exponential (power-of-two)
quantisation, deterministic and stochastic (Eqs. 46–48).

Rounding: Eq. (37) rounds by ``floor(y + 1/2)`` (half up); Eq. (36)'s ``round`` is implemented
the same way so the two agree on ``[0, 1]`` (``q36(x) = 2 q37((x + 1)/2) - 1``). Ties have
measure zero for real-valued weights.

Mapping to PyTorch's ``fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax)``
(``(clamp(round(x/scale) + zp, qmin, qmax) - zp) · scale``, round half to even): with
``α = max − min``, ``β = min``, ``scale = α / (2^k − 1)``, ``qmin = 0``, ``qmax = 2^k − 1``,

    quantize_uniform(X, k) == fake_quantize(X − β, scale, 0, 0, 2^k − 1) + β

exactly (up to ties). Passing ``zero_point = −β/scale`` directly is exact only when ``β/scale``
is an integer; :func:`affine_params` returns the *nudged* zero point ``zp = round(−β/scale)``
(β moved onto the grid). That is what PyTorch's ``MinMaxObserver`` computes when
``min ≤ 0 ≤ max``; the observer also widens ``[min, max]`` to contain 0, which this quantiser
does not, so for all-positive or all-negative data the two differ (see :func:`affine_params`).
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import Tensor
from refimpl.nn import functional as F
from refimpl.utils import (as_rng, check_array, check_choice, check_int, validate_arrays,
                           validate_scalars)

__all__ = [
    "q_signed", "q_unit", "quantize_uniform", "uniform_codes", "dequantize_uniform",
    "affine_params", "quantize_uniform_ste", "quantize_pow2", "pow2_p",
]


def _bits(bits):
    return check_int(bits, "bits", 1, 16)


@validate_scalars
def q_unit(x, bits: int) -> np.ndarray:
    """Uniform k-bit quantiser on ``[0, 1]``, Survey Eq. (37), §3.3.1.

    .. math:: q_k(x) = \\frac{1}{2^k - 1} \\lfloor (2^k - 1) x + \\tfrac12 \\rfloor

    ``x`` is clipped to ``[0, 1]`` first. ``2^k`` levels ``j/(2^k − 1)``.
    """
    x = check_array(x, "x")
    n = 2 ** _bits(bits) - 1
    return np.floor(np.clip(x, 0.0, 1.0) * n + 0.5) / n


@validate_scalars
def q_signed(x, bits: int) -> np.ndarray:
    """Uniform k-bit quantiser on ``[-1, 1]``, Survey Eq. (36), §3.3.1.

    .. math:: q_k(x) = 2\\left(\\frac{\\mathrm{round}[(2^k-1)\\frac{x+1}{2}]}{2^k-1}
              - \\frac12\\right)

    ``x`` is clipped to ``[-1, 1]``; ``2^k`` levels ``2j/(2^k − 1) − 1``.

    References
    ----------
    .. [1] Hubara et al., "Quantized Neural Networks", JMLR 2017; He et al., "Effective
       Quantization Methods for Recurrent Neural Networks", arXiv 1611.10176, 2016.
    """
    x = check_array(x, "x")
    n = 2 ** _bits(bits) - 1
    return 2.0 * (np.floor(n * (np.clip(x, -1.0, 1.0) + 1.0) / 2.0 + 0.5) / n - 0.5)


@validate_scalars
def uniform_codes(X, bits: int) -> tuple[np.ndarray, float, float]:
    """Integer codes of the affine uniform quantiser, Survey Eqs. (37)–(39).

    Returns
    -------
    codes : ndarray of uint16, shape of ``X``, values in ``[0, 2^k − 1]``
    alpha : float
        ``max(X) − min(X)`` (Eq. 38).
    beta : float
        ``min(X)``.
    """
    X = check_array(X, "X")
    bits = _bits(bits)
    n = 2 ** bits - 1
    beta = float(X.min())
    alpha = float(X.max()) - beta
    if alpha == 0.0:
        return np.zeros(X.shape, dtype=np.uint16), 0.0, beta
    Xt = (X - beta) / alpha  # Eq. (38), in [0, 1]
    return np.floor(np.clip(Xt, 0.0, 1.0) * n + 0.5).astype(np.uint16), alpha, beta


def dequantize_uniform(codes, alpha: float, beta: float, bits: int) -> np.ndarray:
    """``α · codes/(2^k − 1) + β`` (Eq. 39 from stored codes)."""
    n = 2 ** _bits(bits) - 1
    return alpha * (np.asarray(codes, dtype=np.float64) / n) + beta


@validate_scalars
def quantize_uniform(X, bits: int, scheme: str = "affine") -> np.ndarray:
    """Uniform k-bit quantisation, Survey Eqs. (36)–(39), §3.3.1.

    Parameters
    ----------
    X : ndarray of any shape
    bits : int in [1, 16]
    scheme : {"affine", "signed", "unit"}
        ``"affine"``: Eqs. (38)–(39), ``Q(X) = α q_k((X − β)/α) + β`` with ``α = max − min``,
        ``β = min``. ``"signed"``: Eq. (36) on ``[-1, 1]`` (inputs clipped). ``"unit"``:
        Eq. (37) on ``[0, 1]`` (inputs clipped).

    Returns
    -------
    ndarray of the shape of ``X`` (float64 for integer input, else ``X``'s dtype)
    """
    X = check_array(X, "X")
    bits = _bits(bits)
    check_choice(scheme, "scheme", ("affine", "signed", "unit"))
    dt = np.result_type(X.dtype, np.float32)
    if scheme == "signed":
        return q_signed(X, bits).astype(dt)
    if scheme == "unit":
        return q_unit(X, bits).astype(dt)
    codes, alpha, beta = uniform_codes(X, bits)
    if alpha == 0.0:
        return X.astype(dt, copy=True)
    return dequantize_uniform(codes, alpha, beta, bits).astype(dt)  # Eq. (39)


@validate_scalars
def affine_params(X, bits: int) -> tuple[float, int, int, int]:
    """PyTorch-style ``(scale, zero_point, quant_min, quant_max)`` of this module's affine
    quantiser (Eqs. 38–39) on ``[min X, max X]``.

    ``scale = (max − min)/(2^k − 1)`` (1.0 for constant ``X``) and ``zero_point =
    round(−min/scale)``, the nudged zero point; ``quant_min = 0``, ``quant_max = 2^k − 1``. See
    the module docstring for the exact mapping to Eq. (39).

    Parameters
    ----------
    X : ndarray of any shape, finite, non-empty
    bits : int in [1, 16]

    Returns
    -------
    scale : float
    zero_point : int
        May lie outside ``[quant_min, quant_max]``: when ``0 ∉ [min X, max X]`` the real 0 is
        not on this quantiser's grid (``zero_point < 0`` for all-positive data, ``> 2^k − 1``
        for all-negative data).
    quant_min, quant_max : int

    Notes
    -----
    Equal to ``torch.ao.quantization.MinMaxObserver(quant_min=0, quant_max=2^k − 1)``'s
    ``calculate_qparams()`` (up to its float32 scale) **only when** ``min X ≤ 0 ≤ max X``:
    the observer first widens the range to ``[min(min X, 0), max(max X, 0)]`` so that 0 is
    exactly representable, and clamps the zero point into ``[quant_min, quant_max]``. This
    function keeps the quantiser's own range (Eq. 38: ``β = min X``, ``α = max X − min X``),
    so for all-positive or all-negative data its scale is finer than the observer's.
    """
    X = check_array(X, "X")
    bits = _bits(bits)
    n = 2 ** bits - 1
    lo, hi = float(X.min()), float(X.max())
    scale = (hi - lo) / n if hi > lo else 1.0
    return scale, int(np.round(-lo / scale)), 0, n


@validate_scalars
@validate_arrays(x={})
def quantize_uniform_ste(x: Tensor, bits: int, scheme: str = "signed") -> Tensor:
    """:func:`quantize_uniform` in the forward pass, straight-through gradient (inside the
    clipping range for ``"signed"``/``"unit"``).

    Survey Eqs. (36)–(39), §3.3.1, with a straight-through gradient. Same shape as ``x``.
    """
    clip_at = 1.0 if scheme == "signed" else None
    return F.straight_through(x, lambda a: quantize_uniform(a, bits, scheme), clip_at=clip_at,
                              name=f"uniform{bits}_ste")


# ------------------------------------------------------------------ Eqs. (46)–(48)
def pow2_p(W) -> np.ndarray:
    """Survey Eq. (46): ``p = |W| / 2^{⌊log2|W|⌋} − 1`` (in ``[0, 1)``; 0 where ``W = 0``)."""
    W = check_array(W, "W")
    a = np.abs(W).astype(np.float64)
    with np.errstate(divide="ignore"):
        f = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    return np.where(a > 0, a / 2.0 ** f - 1.0, 0.0)


@validate_scalars
def quantize_pow2(W, stochastic: bool = False, rng=None, min_exp: int | None = None,
                  max_exp: int | None = None) -> np.ndarray:
    """Exponential (power-of-two) quantisation, Survey Eqs. (46)–(48), §3.3.2 (Ott et al. 2016).

    ``W_q = sign(W) · 2^e`` with ``e = ⌈log2|W|⌉`` if ``p > 0.5`` else ``⌊log2|W|⌋``
    (deterministic, Eq. 47: the nearest power of two in linear distance), or ``e = ⌈log2|W|⌉``
    with probability ``p`` (stochastic, Eq. 48: unbiased, ``E[W_q] = W``). Zeros stay zero.

    Parameters
    ----------
    W : ndarray of any shape
    stochastic : bool
    rng : Generator or int, optional
        Used when ``stochastic``.
    min_exp, max_exp : int, optional
        Clip the exponent (a finite number of stored exponents: ``max_exp − min_exp + 1``
        values plus sign and zero); integers with ``min_exp <= max_exp``.

    References
    ----------
    .. [1] Ott, Lin, Zhang, Liu, Bengio, "Recurrent Neural Networks With Limited Numerical
       Precision", arXiv 1608.06902, 2016.
    """
    W = check_array(W, "W")
    if not isinstance(stochastic, (bool, np.bool_)):
        raise TypeError(f"stochastic must be a bool, got {stochastic!r}")
    if min_exp is not None:
        min_exp = check_int(min_exp, "min_exp", -1074, 1023)
    if max_exp is not None:
        max_exp = check_int(max_exp, "max_exp", -1074, 1023)
    if min_exp is not None and max_exp is not None and min_exp > max_exp:
        raise ValueError(f"min_exp must be <= max_exp, got min_exp={min_exp} > max_exp={max_exp}")
    a = np.abs(W).astype(np.float64)
    nz = a > 0
    f = np.floor(np.log2(np.where(nz, a, 1.0)))  # ⌊log2|W|⌋
    p = np.where(nz, a / 2.0 ** f - 1.0, 0.0)  # Eq. (46)
    up = (as_rng(rng).random(W.shape) < p) if stochastic else (p > 0.5)  # Eqs. (48) / (47)
    e = f + up  # ⌈log2|W|⌉ = ⌊log2|W|⌋ + 1 whenever p > 0
    if min_exp is not None or max_exp is not None:
        e = np.clip(e, -np.inf if min_exp is None else min_exp,
                    np.inf if max_exp is None else max_exp)
    out = np.where(nz, np.sign(W) * 2.0 ** e, 0.0)
    return out.astype(np.result_type(W.dtype, np.float32))
