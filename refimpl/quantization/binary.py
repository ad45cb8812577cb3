"""Survey §3.1 — binarised networks: deterministic and stochastic binarisation, BS-Fixed and
BS-Flexible (Eq. 19), the hard sigmoid and straight-through estimator (Eqs. 20–21), Binary
Weight Networks (Eqs. 22–24) and loss-aware binarisation (Eqs. 25–26).

Array-level quantisers take and return NumPy arrays; the ``*_ste`` functions are tape ops
(:class:`refimpl.nn.Tensor` in, Tensor out) whose backward pass is the straight-through
estimator, for quantisation-aware training.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import Tensor, custom_op
from refimpl.nn import functional as F
from refimpl.utils import as_rng, check_array, check_float, validate_arrays, validate_scalars

__all__ = [
    "binarize", "bs_fixed", "bs_flexible", "bs_flexible_init", "bs_flexible_ste",
    "hard_sigmoid", "binarize_stochastic", "sign_ste", "bwn", "bwn_ste",
    "lab_binarize", "LossAwareBinarizer",
]


@validate_scalars
def binarize(W) -> np.ndarray:
    """Deterministic binarisation: ``+1`` for ``W >= 0``, ``-1`` otherwise (Survey §3.1.1).

    Parameters
    ----------
    W : ndarray of any shape

    Returns
    -------
    B : ndarray of the same shape and float dtype, entries in {-1, +1}

    References
    ----------
    .. [1] Courbariaux, Bengio, David, "BinaryConnect", NeurIPS 2015.
    """
    W = check_array(W, "W")
    return np.where(W >= 0, 1.0, -1.0).astype(np.result_type(W.dtype, np.float32))


@validate_scalars
def bs_fixed(W, c1: float, c2: float) -> np.ndarray:
    """BS-Fixed (Lam 2018): non-negative weights become ``c1``, negative weights ``c2``.

    Survey §3.1.1. ``c1`` and ``c2`` are hyper-parameters; the full-precision weights are kept
    for training and replaced by the masked value in the forward pass.

    Parameters
    ----------
    W : ndarray of any shape
    c1, c2 : float
        The two stored values.

    Returns
    -------
    ndarray of the shape of ``W``, entries in {c1, c2}

    References
    ----------
    .. [1] Lam, "Word2Bits — Quantized Word Vectors", arXiv 1803.05651, 2018.
    """
    W = check_array(W, "W")
    c1 = check_float(c1, "c1")
    c2 = check_float(c2, "c2")
    return np.where(W >= 0, c1, c2).astype(np.result_type(W.dtype, np.float32))


@validate_scalars(max_iter=(1, None))
def bs_flexible_init(W, rng=None, max_iter: int = 100) -> tuple[float, float]:
    """Initial ``(c1, c2)`` of BS-Flexible: 2-means of the weights, ``c1 > c2`` (Survey §3.1.1).

    Lloyd's algorithm on the scalar weights, started from the means of the non-negative and the
    negative weights (deterministic; ``rng`` is only used if all weights are equal-signed and the
    two halves would be empty). In one dimension two clusters are separated by a single
    threshold ``(c1 + c2)/2``, exactly Eq. (19).

    Returns
    -------
    c1, c2 : float
        Upper and lower centroid.
    """
    W = check_array(W, "W").ravel().astype(np.float64)
    as_rng(rng)  # validated; the 2-means below is deterministic
    if W.size < 2:
        raise ValueError(f"W must have at least 2 weights for 2-means, got {W.size}")
    lo, hi = W[W < 0], W[W >= 0]
    if lo.size == 0 or hi.size == 0:  # start from the extremes instead
        c1, c2 = float(W.max()), float(W.min())
    else:
        c1, c2 = float(hi.mean()), float(lo.mean())
    for _ in range(max_iter):
        up = W >= (c1 + c2) / 2
        n1, n2 = c1, c2
        if up.any():
            n1 = float(W[up].mean())
        if (~up).any():
            n2 = float(W[~up].mean())
        if n1 == c1 and n2 == c2:
            break
        c1, c2 = n1, n2
    return (c1, c2) if c1 >= c2 else (c2, c1)


@validate_scalars
def bs_flexible(W, c1: float, c2: float) -> np.ndarray:
    """BS-Flexible quantiser, Survey Eq. (19), §3.1.1.

    .. math:: w_b = c_1 \\text{ if } w \\ge (c_1 + c_2)/2 \\text{ else } c_2

    Parameters
    ----------
    W : ndarray of any shape
    c1, c2 : float
        Centroids (``c1 > c2``), from :func:`bs_flexible_init` and then learned
        (:func:`bs_flexible_ste`).

    References
    ----------
    .. [1] Cheong & Daniel, "transformers.zip: Compressing Transformers with Pruning and
       Quantization", Stanford CS224N report, 2019.
    """
    W = check_array(W, "W")
    c1 = check_float(c1, "c1")
    c2 = check_float(c2, "c2")
    t = (c1 + c2) / 2
    return np.where(W >= t, c1, c2).astype(np.result_type(W.dtype, np.float32))


def _bsflex_fwd(w, c):
    # c: array (2,) = [c1, c2]; Eq. (19)
    up = w >= (c[0] + c[1]) / 2
    return np.where(up, c[0], c[1]).astype(w.dtype), up


def _bsflex_bwd(d, up):
    # STE for w; c1 receives the sum of the upstream gradient over its weights, c2 likewise
    return d, np.array([d[up].sum(), d[~up].sum()])


_bs_flexible_op = custom_op(_bsflex_fwd, _bsflex_bwd, name="bs_flexible")


@validate_scalars
@validate_arrays(W={}, c={})
def bs_flexible_ste(W: Tensor, c: Tensor) -> Tensor:
    """BS-Flexible as a tape op: Eq. (19) forward; ∂/∂c1, ∂/∂c2 are per-centroid gradient sums,
    and the straight-through estimator passes the gradient to the full-precision ``W``.

    Parameters
    ----------
    W : Tensor of any shape
    c : Tensor of shape (2,)
        ``[c1, c2]``, learned by back-propagation (Cheong & Daniel 2019).
    """
    return _bs_flexible_op(W, c)


@validate_scalars
def hard_sigmoid(x) -> np.ndarray:
    """Hard sigmoid, Survey Eq. (21), §3.1.2: ``clip((x + 1)/2, 0, 1)``."""
    x = check_array(x, "x")
    return np.clip((x + 1.0) / 2.0, 0.0, 1.0)


@validate_scalars
def binarize_stochastic(W, rng=None) -> np.ndarray:
    """Stochastic binarisation, Survey Eqs. (20)–(21), §3.1.2.

    ``+1`` with probability ``p = σ(w)`` (the hard sigmoid), ``-1`` with probability ``1 - p``.
    Unbiased on ``[-1, 1]``: ``E[w_b] = 2σ(w) - 1 = w``.

    Parameters
    ----------
    W : ndarray of any shape
    rng : Generator or int, optional

    References
    ----------
    .. [1] Courbariaux, Bengio, David, "BinaryConnect", NeurIPS 2015.
    """
    W = check_array(W, "W")
    p = hard_sigmoid(W)
    u = as_rng(rng).random(W.shape)
    return np.where(u < p, 1.0, -1.0).astype(np.result_type(W.dtype, np.float32))


@validate_scalars(clip_at=(0, None, "(]"))
@validate_arrays(x={})
def sign_ste(x: Tensor, clip_at: float | None = 1.0) -> Tensor:
    """Binarise in the forward pass, straight-through estimator in the backward pass (§3.1.2).

    Forward ``binarize(x)``; backward passes ``dout`` unchanged where ``|x| <= clip_at`` (the
    hard-tanh STE of Bengio et al. 2013 / Hubara et al. 2016) and zero elsewhere.
    """
    return F.straight_through(x, lambda a: np.where(a >= 0, 1.0, -1.0), clip_at=clip_at,
                              name="sign_ste")


@validate_scalars
def bwn(W, axis: int | None = None) -> tuple[np.ndarray | float, np.ndarray]:
    """Binary Weight Networks: ``W ≈ α B``, Survey Eqs. (22)–(24), §3.1.3.

    .. math:: B^* = \\operatorname{sign}(W), \\qquad \\alpha^* = \\frac{1}{n}\\sum_i |W_i|

    the exact minimiser of ``‖W − αB‖²`` over ``α ≥ 0`` and ``B ∈ {±1}^n`` (Eq. 23 expands the
    norm to ``α²n − 2αWᵀB + WᵀW``).

    Parameters
    ----------
    W : ndarray of any shape
    axis : int, optional
        ``None``: one α for the whole array. An int: one α per slice along the other axes
        reduced over ``axis`` (e.g. ``axis=1`` on an ``(out, in)`` weight: one α per row).

    Returns
    -------
    alpha : float, or ndarray broadcastable against ``W``
    B : ndarray of the shape of ``W``, entries in {-1, +1}

    References
    ----------
    .. [1] Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net", ECCV 2016.
    """
    W = check_array(W, "W")
    B = np.where(W >= 0, 1.0, -1.0).astype(np.result_type(W.dtype, np.float32))
    if axis is None:
        return float(np.abs(W).mean()), B
    return np.abs(W).mean(axis=axis, keepdims=True), B


def _bwn_fwd(w):
    alpha = np.abs(w).mean()
    return (alpha * np.where(w >= 0, 1.0, -1.0)).astype(w.dtype), None


_bwn_op = custom_op(_bwn_fwd, lambda d, c: (d,), name="bwn_ste")


@validate_scalars
@validate_arrays(W={})
def bwn_ste(W: Tensor) -> Tensor:
    """``α* sign(W)`` (Eqs. 22–24) with the straight-through estimator as its gradient.

    Survey Eqs. (22)–(24), §3.1.3 (Binary Weight Networks). Same shape as ``W``.

    References
    ----------
    .. [1] M. Rastegari et al., "XNOR-Net: ImageNet Classification Using Binary Convolutional Neural
       Networks", ECCV 2016.
    """
    return _bwn_op(W)


@validate_scalars
def lab_binarize(w, d) -> tuple[float, np.ndarray]:
    """Loss-aware binarisation step, Survey Eqs. (25)–(26), §3.1.3 (Hou, Yao, Kwok 2017).

    The proximal Newton step with diagonal curvature ``D = diag(d)`` binarises the
    full-precision weights ``w`` by solving

    .. math:: \\min_{\\alpha>0,\\, b\\in\\{\\pm1\\}^n} (\\alpha b - w)^T D (\\alpha b - w)

    whose exact solution is ``b = sign(w)``, ``α = ‖d ⊙ w‖₁ / ‖d‖₁`` (Hou et al., Prop. 3.1).
    In Hou et al. ``d`` is Adam's second-moment denominator ``sqrt(v̂) + ε``.

    Parameters
    ----------
    w : ndarray of shape (n,) or any shape
        Full-precision weights of one layer.
    d : ndarray of the shape of ``w``, positive
        Diagonal curvature estimate.

    Returns
    -------
    alpha : float
    b : ndarray of the shape of ``w``, entries in {-1, +1}

    References
    ----------
    .. [1] Hou, Yao, Kwok, "Loss-aware Binarization of Deep Networks", ICLR 2017.
    """
    w = check_array(w, "w")
    d = check_array(d, "d", shape=w.shape)
    if np.any(d <= 0):
        raise ValueError("d must be positive (a diagonal curvature estimate)")
    alpha = float(np.abs(d * w).sum() / d.sum())
    return alpha, np.where(w >= 0, 1.0, -1.0)


class LossAwareBinarizer:
    """Loss-aware binarised training (LAB), Hou et al. 2017, Algorithm 1 — Survey §3.1.3.

    Keeps full-precision weights ``w_l`` and Adam moments per layer. Each :meth:`step` takes the
    gradient of the loss **at the binarised weights** ``ŵ_l = α_l b_l``, updates the moments,
    takes an Adam step on ``w_l`` and re-binarises with :func:`lab_binarize` using
    ``d_l = sqrt(v̂_l) + ε``.

    Parameters
    ----------
    weights : list of ndarray
        Initial full-precision weights (copied).
    lr, beta1, beta2, eps : float
        Adam hyper-parameters.

    Attributes
    ----------
    w : list of ndarray
        Full-precision weights.
    binary : list of ndarray
        The current binarised weights ``α_l b_l`` (use these in the forward pass).
    """

    @validate_scalars(lr=(0, None, "(]"), beta1=(0, 1, "[)"), beta2=(0, 1, "[)"),
                      eps=(0, None, "(]"))
    @validate_arrays(weights={"sequence": True})
    def __init__(self, weights, lr: float = 1e-2, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        self.w = [check_array(W, f"weights[{i}]").astype(np.float64).copy()
                  for i, W in enumerate(weights)]
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(W) for W in self.w]
        self.v = [np.zeros_like(W) for W in self.w]
        self.t = 0
        # before any curvature is known, d = 1 gives α = mean|w| (BWN)
        self.binary = [self._bin(W, np.ones_like(W)) for W in self.w]

    @staticmethod
    def _bin(W, d):
        alpha, b = lab_binarize(W, d)
        return alpha * b

    def step(self, grads) -> list[np.ndarray]:
        """One LAB update from the gradients at the binarised weights; returns the new ``ŵ``."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        for i, g in enumerate(grads):
            g = np.asarray(g, dtype=np.float64)
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            mhat = self.m[i] / (1 - b1 ** self.t)
            vhat = self.v[i] / (1 - b2 ** self.t)
            d = np.sqrt(vhat) + self.eps
            self.w[i] = self.w[i] - self.lr * mhat / d
            self.binary[i] = self._bin(self.w[i], d)
        return self.binary
