"""Survey §3.2 — ternarised networks: ternary connect (Eq. 27), stochastic and Bernoulli ternary
(Eq. 28), Gaussian ternary (Eq. 29), Ternary Weight Networks (Eqs. 30–34) with the exact argmax
of Eq. (33), loss-aware step-size search with Lloyd–Max initialisation (Hwang & Sung 2014) and
Trained Ternary Quantisation (Zhu et al. 2017) with both threshold heuristics.

HitNet's LSTM (Eq. 35) is in :mod:`refimpl.quantization.recurrent`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from refimpl.nn import Tensor, custom_op
from refimpl.utils import (as_rng, check_array, check_float, check_fraction, check_int,
                           validate_arrays, validate_scalars)

__all__ = [
    "ternary_connect", "ternary_stochastic", "ternary_bernoulli", "ternary_gaussian",
    "ternary_gaussian_survey_printed", "ternarize", "twn", "twn_exact", "twn_objective",
    "lloyd_max_step", "uniform_step_quantize", "loss_aware_step_search",
    "ttq_threshold", "ttq_threshold_sparsity", "ttq_normalize", "ttq_quantize", "ttq_ste",
]


def _fdtype(W):
    return np.result_type(W.dtype, np.float32)


@validate_scalars
def ternarize(W, delta: float) -> np.ndarray:
    """Threshold ternary function, Survey Eq. (32), §3.2.2.

    ``+1`` if ``w > Δ``; ``0`` if ``-Δ < w <= Δ``; ``-1`` if ``w <= -Δ``.
    """
    W = check_array(W, "W")
    delta = check_float(delta, "delta", 0.0)
    return np.select([W > delta, W <= -delta], [1.0, -1.0], 0.0).astype(_fdtype(W))


@validate_scalars
def ternary_connect(W) -> np.ndarray:
    """Deterministic ternary connect, Survey Eq. (27), §3.2.1 (thresholds ±0.5).

    References
    ----------
    .. [1] Lin, Courbariaux, Memisevic, Bengio, "Neural Networks with Few Multiplications",
       ICLR 2016.
    """
    return ternarize(W, 0.5)


@validate_scalars
def ternary_stochastic(W, rng=None) -> np.ndarray:
    """Stochastic ternary connect, Survey Eq. (28), §3.2.1.

    For ``w ∈ (0, 1]``: ``+1`` with probability ``w``, else ``0``; for ``w ∈ [-1, 0]``: ``-1``
    with probability ``-w``, else ``0``. Weights are first clipped to ``[-1, 1]`` (the survey
    assumes they are normalised). Unbiased: ``E[w_t] = w`` on ``[-1, 1]``.
    """
    W = check_array(W, "W")
    Wc = np.clip(W, -1.0, 1.0)
    u = as_rng(rng).random(W.shape)
    return (np.sign(Wc) * (u < np.abs(Wc))).astype(_fdtype(W))


@validate_scalars
def ternary_bernoulli(W, rng=None) -> np.ndarray:
    """Bernoulli ternary quantisation (BTQ; Wang et al. 2018), Survey §3.2.1 / §3.2.3.

    ``w_t = sign(w) · z`` with ``z ~ Bernoulli(|w|)`` (``|w|`` clipped to 1). Same distribution
    as :func:`ternary_stochastic`, written as HitNet writes it; for activations in ``[0, 1]`` it
    gives values in {0, 1}.
    """
    W = check_array(W, "W")
    p = np.minimum(np.abs(W), 1.0)
    z = as_rng(rng).binomial(1, p)
    return (np.sign(W) * z).astype(_fdtype(W))


@validate_scalars
def ternary_gaussian(W) -> np.ndarray:
    """Gaussian ternary weights (Alom et al. 2018), Survey Eq. (29), §3.2.1 — corrected form.

    With ``μ, σ`` the mean and standard deviation of ``W`` and ``Δ = μ + σ/2``:
    ``+1`` if ``w > Δ``; ``0`` if ``-Δ < w <= Δ``; ``-1`` if ``w <= -Δ``.

    The survey prints the first case as ``w > -(μ + σ/2)``, which overlaps the middle case
    (see :func:`ternary_gaussian_survey_printed` and ``chapters/ERRATA.md``).

    References
    ----------
    .. [1] Alom, Moody, Maruyama, Van Essen, Taha, "Effective Quantization Approaches for
       Recurrent Neural Networks", IJCNN 2018.
    """
    W = check_array(W, "W")
    delta = float(W.mean() + W.std() / 2)
    if delta < 0:
        raise ValueError(f"W has mean + std/2 = {delta:.3g} < 0; the Gaussian ternary threshold "
                         "needs a non-negative Δ")
    return ternarize(W, delta)


def ternary_gaussian_survey_printed(W) -> np.ndarray:
    """Eq. (29) exactly as printed (cases tested in order): ``+1`` if ``w > -(μ + σ/2)``.

    Kept only to show the erratum numerically; use :func:`ternary_gaussian`.
    """
    W = check_array(W, "W")
    t = float(W.mean() + W.std() / 2)
    return np.select([W > -t, (W > -t) & (W <= t), W <= -t], [1.0, 0.0, -1.0], 0.0).astype(
        _fdtype(W))


@validate_scalars
def twn(W, ratio: float = 0.7) -> tuple[float, np.ndarray, float]:
    """Ternary Weight Networks with the rule of thumb, Survey Eqs. (30)–(34), §3.2.2.

    ``Δ = 0.7 · E|W|`` (Eq. 34, where the survey's ``E(W)`` means the mean of ``|W_i|``),
    ``T = ternarize(W, Δ)`` (Eq. 32) and ``α = mean_{i ∈ I_Δ} |W_i|`` with
    ``I_Δ = {i : |W_i| > Δ}``.

    Parameters
    ----------
    W : ndarray of any shape
    ratio : float
        The constant of Eq. (34).

    Returns
    -------
    alpha : float
    T : ndarray of the shape of ``W``, entries in {-1, 0, +1}
    delta : float

    References
    ----------
    .. [1] Li, Zhang, Liu, "Ternary Weight Networks", arXiv 1605.04711, 2016.
    """
    W = check_array(W, "W")
    ratio = check_float(ratio, "ratio", 0.0)
    delta = ratio * float(np.abs(W).mean())
    T = ternarize(W, delta)
    nz = T != 0
    alpha = float(np.abs(W[nz]).mean()) if nz.any() else 0.0
    return alpha, T, delta


def twn_objective(W, delta: float) -> float:
    """The objective of Eq. (33): ``(Σ_{i∈I_Δ} |W_i|)² / |I_Δ|`` (0 when ``I_Δ`` is empty)."""
    a = np.abs(check_array(W, "W"))
    sel = a > delta
    k = int(sel.sum())
    return float(a[sel].sum() ** 2 / k) if k else 0.0


@validate_scalars
def twn_exact(W) -> tuple[float, np.ndarray, float]:
    """Exact solution of Eqs. (30)–(31) via the exact argmax of Eq. (33), §3.2.2.

    Sort ``|W|`` in decreasing order; for a support of the ``k`` largest magnitudes the best
    ``α`` is their mean and the error is ``‖W‖² − S_k²/k`` with ``S_k`` the cumulative sum, so
    scanning all ``k`` (all thresholds) and taking ``argmax S_k²/k`` solves the problem exactly
    (O(n log n)). The returned ``Δ`` is the ``(k+1)``-th largest magnitude (0 when ``k = n``), so
    ``I_Δ = {|W_i| > Δ}`` is the optimal support (ties at the boundary are kept together).

    Returns
    -------
    alpha : float
    T : ndarray of the shape of ``W``, entries in {-1, 0, +1}
    delta : float
    """
    W = check_array(W, "W")
    a = np.sort(np.abs(W).ravel())[::-1]  # (n,) decreasing
    S = np.cumsum(a)
    k = np.arange(1, a.size + 1)
    obj = S ** 2 / k
    # only supports closed under ties are realisable by a threshold: a[k-1] > a[k]
    valid = np.ones(a.size, dtype=bool)
    valid[:-1] = a[:-1] > a[1:]
    obj = np.where(valid, obj, -np.inf)
    kb = int(np.argmax(obj)) + 1
    delta = float(a[kb]) if kb < a.size else 0.0
    if kb == a.size and a[-1] == 0.0:
        delta = 0.0
    T = np.where(np.abs(W) > delta, np.sign(W), 0.0).astype(_fdtype(W))
    nz = T != 0
    alpha = float(np.abs(W[nz]).mean()) if nz.any() else 0.0
    return alpha, T, delta


# ------------------------------------------------------------------ Hwang & Sung (2014)
def uniform_step_quantize(W, step: float, n_levels: int = 3) -> np.ndarray:
    """Symmetric uniform quantiser with ``n_levels`` (odd) levels ``{-L..L}·step``, ``L=(M-1)/2``.

    Ternary is ``n_levels=3`` (levels ``-Δ, 0, Δ``; threshold ``Δ/2``).

    Part of Survey §3.2.2 (the loss-aware step-size search, Hwang & Sung 2014).

    References
    ----------
    .. [1] K. Hwang, W. Sung, "Fixed-point feedforward deep neural network design using weights +1,
       0, and −1", IEEE SiPS 2014.
    """
    W = check_array(W, "W")
    n_levels = check_int(n_levels, "n_levels", 2)
    step = check_float(step, "step", 0.0, lo_open=True)
    if n_levels % 2 == 1:
        L = (n_levels - 1) // 2
        return np.clip(np.floor(W / step + 0.5), -L, L) * step
    L = n_levels // 2  # even: mid-rise levels ±(j - 1/2)·step
    return (np.clip(np.floor(W / step), -L, L - 1) + 0.5) * step


@validate_scalars(max_iter=(1, None), tol=(0, None), n_starts=(1, None))
def lloyd_max_step(W, n_levels: int = 3, max_iter: int = 100, tol: float = 1e-12,
                   n_starts: int = 8) -> float:
    """Lloyd–Max step size of a uniform quantiser (Hwang & Sung 2014, Survey §3.2.2).

    Alternates the nearest-level assignment ``q_i`` and the least-squares step
    ``Δ = Σ w_i q_i / Σ q_i²`` (levels are ``q·Δ``), which decreases ``‖W − Q(W)‖²`` monotonically
    (Lloyd 1982 with the codebook restricted to a uniform grid). Lloyd iterations can stop at a
    local optimum, so ``n_starts`` initial steps spaced geometrically between
    ``max|W|/(10 L)`` and ``max|W|/L`` are tried and the lowest-error result is returned.
    """
    W = check_array(W, "W").ravel().astype(np.float64)
    n_levels = check_int(n_levels, "n_levels", 2)
    L = max((n_levels - 1) / 2, 0.5)
    amax = float(np.abs(W).max())
    if amax == 0:
        return 1.0
    best = (np.inf, amax / L)
    for step in np.geomspace(amax / (10 * L), amax / L, check_int(n_starts, "n_starts", 1)):
        prev = err = np.inf
        for _ in range(max_iter):
            q = uniform_step_quantize(W, step, n_levels) / step  # integer (or half) levels
            den = float(q @ q)
            if den == 0:
                break
            step = float(W @ q) / den
            err = float(((W - uniform_step_quantize(W, step, n_levels)) ** 2).sum())
            if prev - err <= tol * max(prev, 1e-300):
                break
            prev = err
        if err < best[0]:
            best = (err, step)
    return float(best[1])


@validate_scalars
@validate_arrays(loss_fn={"kind": "callable"}, weights={"sequence": True},
                 factors={"kind": "sequence"})
def loss_aware_step_search(loss_fn: Callable[[Sequence[np.ndarray]], float], weights,
                           n_levels: int = 3,
                           factors: Sequence[float] = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3,
                                                       1.5)) -> tuple[list, list]:
    """Loss-aware layer-wise step-size search (Hwang & Sung 2014), Survey §3.2.2.

    Layer by layer from the input to the output: initialise the step with
    :func:`lloyd_max_step`, try ``factor · step`` for each factor, keep the step with the
    smallest ``loss_fn`` (the network output error on the training set, with the earlier
    layers already quantised), quantise that layer and move on. (Re-training afterwards is the
    caller's.)

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(list of weight arrays) -> float``.
    weights : list of ndarray
        Full-precision weights, input layer first.

    Returns
    -------
    quantized : list of ndarray
    steps : list of float
    """
    cur = [check_array(W, f"weights[{i}]").astype(np.float64) for i, W in enumerate(weights)]
    steps = []
    for li in range(len(cur)):
        s0 = lloyd_max_step(cur[li], n_levels)
        best = (np.inf, s0)
        for f in factors:
            trial = list(cur)
            trial[li] = uniform_step_quantize(cur[li], s0 * f, n_levels)
            val = float(loss_fn(trial))
            if val < best[0]:
                best = (val, s0 * f)
        cur[li] = uniform_step_quantize(cur[li], best[1], n_levels)
        steps.append(best[1])
    return cur, steps


# ------------------------------------------------------------------ TTQ (Zhu et al. 2017)
@validate_scalars
def ttq_normalize(W) -> np.ndarray:
    """Scale full-precision weights to ``[-1, 1]`` by their maximum magnitude (TTQ, §3.2.2)."""
    W = check_array(W, "W")
    m = float(np.abs(W).max())
    return W / m if m > 0 else W.copy()


@validate_scalars
def ttq_threshold(W, t: float = 0.05) -> float:
    """TTQ threshold heuristic (1): ``Δ_l = t · max|w_l|`` (Zhu et al. 2017), Survey §3.2.2."""
    W = check_array(W, "W")
    t = check_float(t, "t", 0.0, 1.0)
    return t * float(np.abs(W).max())


@validate_scalars
def ttq_threshold_sparsity(W, sparsity: float) -> float:
    """TTQ threshold heuristic (2): the ``Δ`` that zeroes a fraction ``sparsity`` of ``w_l``.

    ``Δ`` is the ``sparsity``-quantile of ``|w_l|`` (lower interpolation), so exactly
    ``ceil``-rounded ``sparsity · n`` weights satisfy ``|w| <= Δ`` when magnitudes are distinct.

    Survey §3.2.2 (Trained Ternary Quantisation).

    References
    ----------
    .. [1] C. Zhu, S. Han, H. Mao, W. J. Dally, "Trained Ternary Quantization", ICLR 2017.
    """
    W = check_array(W, "W")
    sparsity = check_fraction(sparsity, "sparsity")
    a = np.sort(np.abs(W).ravel())
    k = int(round(sparsity * a.size))
    if k == 0:
        return float(np.nextafter(a[0], -np.inf)) if a[0] > 0 else -0.0
    return float(a[k - 1])


@validate_scalars
def ttq_quantize(W, wp: float, wn: float, delta: float) -> np.ndarray:
    """TTQ forward: ``W_p`` if ``w > Δ``, ``-W_n`` if ``w < -Δ``, else 0 (Zhu et al. 2017).

    Survey §3.2.2 (Trained Ternary Quantisation). Same shape as ``W``.

    Parameters
    ----------
    W : ndarray of any shape
    wp, wn : float >= 0
        The positive and negative scales (``-W_n`` is the negative value).
    delta : float >= 0
        The threshold ``Δ``.

    References
    ----------
    .. [1] C. Zhu, S. Han, H. Mao, W. J. Dally, "Trained Ternary Quantization", ICLR 2017.
    """
    W = check_array(W, "W")
    wp = check_float(wp, "wp", 0.0)
    wn = check_float(wn, "wn", 0.0)
    delta = check_float(delta, "delta", 0.0)
    return _ttq_fwd(W, wp, wn, delta)[0]


def _ttq_fwd(w, wp, wn, delta=0.0):
    """The one TTQ forward (used by :func:`ttq_quantize` and the :func:`ttq_ste` op):
    values and the cache ``(I_p, I_n, W_p, W_n)`` of :func:`_ttq_bwd`."""
    # Zhu et al. Eq. (6): w_t = W_p on I_p = {w > Δ}, −W_n on I_n = {w < −Δ}, 0 otherwise
    pos, neg = w > delta, w < -delta
    wp, wn = float(wp), float(wn)
    out = np.where(pos, wp, 0.0) - np.where(neg, wn, 0.0)
    return out.astype(_fdtype(w)), (pos, neg, wp, wn)


def _ttq_bwd(d, cache):
    pos, neg, wp, wn = cache
    # Zhu et al. Eqs. (7)–(8): ∂L/∂W_p = Σ_{I_p} ∂L/∂w_t, ∂L/∂W_n = Σ_{I_n} ∂L/∂w_t (value −W_n)
    dwp = np.asarray(d[pos].sum())
    dwn = np.asarray(-d[neg].sum())
    # scaled straight-through gradient to the latent weights: W_p·d on I_p, d on I_z, W_n·d on I_n
    dw = np.where(pos, wp * d, np.where(neg, wn * d, d))
    return dw, dwp, dwn


_ttq_op = custom_op(_ttq_fwd, _ttq_bwd, name="ttq")


@validate_scalars(delta=(0, None))
@validate_arrays(W={}, wp={}, wn={})
def ttq_ste(W: Tensor, wp: Tensor, wn: Tensor, delta: float) -> Tensor:
    """Trained ternary quantisation as a tape op (Zhu et al. 2017), Survey §3.2.2.

    Parameters
    ----------
    W : Tensor of any shape
        Latent full-precision weights (normalised to ``[-1, 1]`` by :func:`ttq_normalize`).
    wp, wn : Tensor of shape ()
        The trained positive and negative scales (``-W_n`` is the negative value).
    delta : float
        Threshold from :func:`ttq_threshold` or :func:`ttq_threshold_sparsity`.

    References
    ----------
    .. [1] Zhu, Han, Mao, Dally, "Trained Ternary Quantization", ICLR 2017.
    """
    return _ttq_op(W, wp, wn, delta=float(delta))
