"""Pruning individual weights (Survey §2.1): Hessian-based, magnitude, iterative, densifying.

=====================================  =======================================================
function                               survey § / equation, paper
=====================================  =======================================================
:func:`hessian_fd`                     exact Hessian of a small loss by central differences of
                                       its analytic gradient (used by OBD/OBS checks)
:func:`mlp_loss_grad`,                 a one-hidden-layer tanh MLP with hand-written gradient
:func:`mlp_output_jacobian`            and per-sample output Jacobian (the "small network")
:func:`obd_saliency`                   §2.1.1, Eq. (1) — LeCun et al. 1990 (OBD)
:func:`obs_saliency`, :func:`obs_update`,
:func:`obs_prune`                      §2.1.1, Eqs. (2)–(3) — Hassibi & Stork 1993 (OBS)
:func:`hassibi_inverse_hessian`        §2.1.1 — OBS's recursive outer-product H⁻¹
:func:`magnitude_mask`,
:func:`magnitude_prune`                §2.1.2 — Han et al. 2015 (one-shot magnitude pruning)
:func:`allocate_pruning`               §2.1.2 — See et al. 2016 (class-blind / -uniform /
                                       -distribution)
:func:`narang_slope`,
:func:`narang_threshold`               §2.1.3, Eqs. (4)–(6) — Narang et al. 2017a
:func:`zhu_gupta_sparsity`             §2.1.3, Eq. (7) — Zhu & Gupta 2017
:func:`prune_train`,                   §2.1.3 — iterative (gradual) pruning, with or without
:class:`IterativePruning`              revival of pruned weights (``refimpl.nn.fit`` + callback)
:func:`reweighted_l1_alpha`,
:func:`rpp_step`                       §2.1.3, Eq. (8) — Guo et al. 2019 (RPP)
:func:`dsd_train`                      §2.1.4 — Han et al. 2016b (dense–sparse–dense; one
                                       ``refimpl.nn.fit`` run, phases switched by a callback)
:func:`grow_and_prune_step`            §2.1.4 — Dai et al. 2018 (grow by gradient percentile,
                                       prune by magnitude percentile)
=====================================  =======================================================

Masks are boolean arrays of the weight's shape, ``True`` = kept. CSR storage with relative
(delta) indices is in :mod:`refimpl.pruning.storage`.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.tensor import Tensor, no_grad
from refimpl.nn.train import Callback
from refimpl.utils import (as_rng, check_array, check_choice, check_float, check_fraction,
                           check_int, check_values, validate_arrays,
                           validate_scalars)

__all__ = [
    "hessian_fd", "mlp_init", "mlp_forward", "mlp_loss_grad", "mlp_output_jacobian",
    "obd_saliency", "obs_saliency", "obs_update", "obs_prune", "hassibi_inverse_hessian",
    "n_to_prune", "magnitude_mask", "magnitude_prune", "apply_mask", "allocate_pruning",
    "narang_slope", "narang_threshold", "narang_q", "zhu_gupta_sparsity", "prune_train",
    "reweighted_l1_alpha", "soft_threshold", "rpp_step", "dsd_train", "grow_and_prune_step",
    "IterativePruning",
]


# ---------------------------------------------------------------------------------------------
# A small network with an exact Hessian (for OBD / OBS)
# ---------------------------------------------------------------------------------------------

@validate_scalars
@validate_arrays(grad_fn={"kind": "callable"})
def hessian_fd(grad_fn: Callable[[np.ndarray], np.ndarray], w, eps: float = 1e-5) -> np.ndarray:
    """Hessian of a scalar loss by central differences of its analytic gradient.

    ``H[:, j] = (g(w + eps e_j) - g(w - eps e_j)) / (2 eps)``, then symmetrised. With an exact
    analytic gradient the error is ``O(eps^2)`` (about 1e-9 in float64 for eps = 1e-5).

    Parameters
    ----------
    grad_fn : callable
        ``grad_fn(w) -> ndarray of shape (P,)``, the gradient of the loss.
    w : ndarray of shape (P,)
    eps : float

    Returns
    -------
    ndarray of shape (P, P)

    Notes
    -----
    Part of Survey §2.1.1 (the exact Hessian of the OBD / OBS checks).
    """
    w = check_array(w, "w", ndim=1).astype(np.float64)
    eps = check_float(eps, "eps", 0.0, lo_open=True)
    P = w.shape[0]
    H = np.empty((P, P))
    for j in range(P):
        e = np.zeros(P)
        e[j] = eps
        H[:, j] = (np.asarray(grad_fn(w + e)) - np.asarray(grad_fn(w - e))) / (2 * eps)
    return 0.5 * (H + H.T)


def _mlp_unpack(w, d_in: int, d_hidden: int):
    n1 = d_hidden * d_in
    W1 = w[:n1].reshape(d_hidden, d_in)  # (H, D)
    b1 = w[n1:n1 + d_hidden]  # (H,)
    a = w[n1 + d_hidden:n1 + 2 * d_hidden]  # (H,)
    c = w[n1 + 2 * d_hidden:]  # (1,)
    return W1, b1, a, c


def _mlp_out(wt: Tensor, X: np.ndarray, d_hidden: int) -> Tensor:
    """``f(x) = aᵀ tanh(W1 x + b1) + c`` on the tape from the flat parameter Tensor ``wt``."""
    N, D = X.shape
    P = d_hidden * D + 2 * d_hidden + 1
    if wt.shape != (P,):
        raise ValueError(f"w must have shape ({P},) = (d_hidden*d_in + 2*d_hidden + 1,), "
                         f"got {wt.shape}")
    W1, b1, a, c = _mlp_unpack(wt, D, d_hidden)
    Z = F.tanh(F.matmul(X, W1.T) + b1)  # (N, H)
    return F.matmul(Z, a) + c  # (N,)


def mlp_init(d_in: int, d_hidden: int, rng=None, scale: float = 0.5) -> np.ndarray:
    """Flat parameter vector of :func:`mlp_forward`: ``[W1 (H*D), b1 (H), a (H), c (1)]``.

    Part of Survey §2.1.1 (the small network of the OBD / OBS checks).
    """
    d_in = check_int(d_in, "d_in", 1)
    d_hidden = check_int(d_hidden, "d_hidden", 1)
    rng = as_rng(rng)
    return rng.normal(0.0, scale, d_hidden * d_in + 2 * d_hidden + 1)


def mlp_forward(w, X, d_hidden: int) -> np.ndarray:
    """``f(x) = a^T tanh(W1 x + b1) + c`` for every row of ``X``, on :mod:`refimpl.nn`'s tape.

    The OBD/OBS checks need the parameters as one flat vector (for ``scipy.optimize`` and
    :func:`hessian_fd`); the network itself is :mod:`refimpl.nn` ops on slices of that vector.

    Parameters
    ----------
    w : ndarray of shape (H*D + 2H + 1,)
        Flat parameters (see :func:`mlp_init`).
    X : ndarray of shape (N, D)
    d_hidden : int

    Returns
    -------
    ndarray of shape (N,)

    Notes
    -----
    Part of Survey §2.1.1 (the small network of the OBD / OBS checks).
    """
    X = check_array(X, "X", ndim=2)
    w = check_array(w, "w", ndim=1)
    with no_grad():
        return _mlp_out(Tensor(w), X, check_int(d_hidden, "d_hidden", 1)).data


def mlp_loss_grad(w, X, y, d_hidden: int) -> tuple[float, np.ndarray]:
    """Loss ``E = 1/(2N) sum_n (f(x_n) - y_n)^2`` of :func:`mlp_forward` and its gradient from
    the tape (one backward pass).

    Returns
    -------
    loss : float
    grad : ndarray of shape (P,)

    Notes
    -----
    Part of Survey §2.1.1 (the small network of the OBD / OBS checks).
    """
    X = check_array(X, "X", ndim=2)
    y = check_array(y, "y", ndim=1, shape=(X.shape[0],))
    w = check_array(w, "w", ndim=1)
    N = X.shape[0]
    wt = Tensor(np.array(w, dtype=np.float64), requires_grad=True)
    r = _mlp_out(wt, X, check_int(d_hidden, "d_hidden", 1)) - y  # (N,)
    loss = (r * r).sum() * (0.5 / N)
    loss.backward()
    return float(loss.data), wt.grad.copy()


def mlp_output_jacobian(w, X, d_hidden: int) -> np.ndarray:
    """Per-sample gradient of the network output, ``J[n] = df(x_n)/dw`` (OBS's ``X_k``): one
    tape backward pass per sample.

    Returns
    -------
    ndarray of shape (N, P)

    Notes
    -----
    Part of Survey §2.1.1 (OBS's Hessian approximation).

    References
    ----------
    .. [1] B. Hassibi, D. G. Stork, "Second Order Derivatives for Network Pruning: Optimal Brain
       Surgeon", NeurIPS 1993.
    """
    X = check_array(X, "X", ndim=2)
    w = check_array(w, "w", ndim=1)
    d_hidden = check_int(d_hidden, "d_hidden", 1)
    rows = []
    for n in range(X.shape[0]):
        wt = Tensor(np.array(w, dtype=np.float64), requires_grad=True)
        _mlp_out(wt, X[n:n + 1], d_hidden).sum().backward()
        rows.append(wt.grad.copy())
    return np.stack(rows)  # (N, P)


# ---------------------------------------------------------------------------------------------
# OBD / OBS (§2.1.1)
# ---------------------------------------------------------------------------------------------

@validate_scalars
def obd_saliency(w, hess_diag) -> np.ndarray:
    """Optimal Brain Damage saliency ``s_i = ½ h_ii u_i²`` (Survey Eq. (1), §2.1.1).

    Deleting parameter ``u_i`` is the perturbation ``δu_i = -u_i``; with the loss at a minimum
    (zero gradient) and the Hessian taken diagonal, the second-order Taylor expansion of the
    loss change is ``½ h_ii δu_i²``.

    Parameters
    ----------
    w : ndarray of any shape
        Parameters ``u``.
    hess_diag : ndarray of the same shape
        Diagonal of the Hessian, ``h_ii = ∂²E/∂u_i²``.

    Returns
    -------
    ndarray of the same shape as ``w``

    Notes
    -----
    The survey prints ``s(u_i) = ½ Σ_i h_ii δu_i²`` with ``h_ii = ∂²E/(∂u_i ∂u_j)``; the
    diagonal element is ``∂²E/∂u_i²`` (LeCun et al., Eq. 4–5), and the per-parameter saliency
    has no sum (see ``chapters/ERRATA.md``).

    References
    ----------
    .. [1] Y. LeCun, J. S. Denker, S. A. Solla, "Optimal Brain Damage", NeurIPS 1990.
    """
    w = check_array(w, "w")
    h = check_array(hess_diag, "hess_diag", shape=w.shape)
    return 0.5 * h * w ** 2


def _check_hinv(H_inv, P: int) -> np.ndarray:
    H_inv = check_array(H_inv, "H_inv", shape=(P, P))
    if np.any(np.diag(H_inv) <= 0):
        raise ValueError("H_inv must have a positive diagonal (an inverse of a positive-"
                         "definite Hessian)")
    return H_inv


@validate_scalars
def obs_saliency(w, H_inv) -> np.ndarray:
    """Optimal Brain Surgeon saliency ``L_i = w_i² / (2 [H⁻¹]_ii)`` (Survey Eq. (2), §2.1.1).

    ``L_i`` is the smallest second-order loss increase over all perturbations ``δw`` that set
    ``w_i`` to zero: ``min ½ δwᵀ H δw`` subject to ``e_iᵀ δw + w_i = 0``.

    Parameters
    ----------
    w : ndarray of shape (P,)
    H_inv : ndarray of shape (P, P)
        Inverse Hessian (exact, or :func:`hassibi_inverse_hessian`).

    Returns
    -------
    ndarray of shape (P,)

    References
    ----------
    .. [1] B. Hassibi, D. G. Stork, "Second order derivatives for network pruning: Optimal
       Brain Surgeon", NeurIPS 1993.
    """
    w = check_array(w, "w", ndim=1)
    H_inv = _check_hinv(H_inv, w.shape[0])
    return w ** 2 / (2.0 * np.diag(H_inv))


@validate_scalars
def obs_update(w, H_inv, i: int) -> tuple[np.ndarray, float]:
    """Delete weight ``i`` and update all others (Survey Eq. (3), §2.1.1).

    ``δw = -(w_i / [H⁻¹]_ii) H⁻¹ e_i``; the new ``w_i`` is set to exactly 0 (it is 0 up to
    rounding by construction).

    Parameters
    ----------
    w : ndarray of shape (P,)
    H_inv : ndarray of shape (P, P)
    i : int

    Returns
    -------
    w_new : ndarray of shape (P,)
    L_i : float
        The predicted loss increase, Eq. (2).
    """
    w = check_array(w, "w", ndim=1)
    P = w.shape[0]
    H_inv = _check_hinv(H_inv, P)
    i = check_int(i, "i", 0, P - 1)
    hii = H_inv[i, i]
    # Eq. (3): δw = -(w_i / [H^-1]_ii) H^-1 e_i
    dw = -(w[i] / hii) * H_inv[:, i]
    w_new = w + dw
    w_new[i] = 0.0
    return w_new, float(w[i] ** 2 / (2 * hii))


@validate_scalars
def obs_prune(w, H_inv, n_prune: int) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Iterated OBS: delete ``n_prune`` weights one at a time, each with the smallest ``L_i``.

    After deleting ``w_i`` the inverse Hessian of the remaining weights (with ``w_i`` held at
    zero) is ``H⁻¹ - H⁻¹ e_i e_iᵀ H⁻¹ / [H⁻¹]_ii`` (row and column ``i`` become zero).

    Parameters
    ----------
    w : ndarray of shape (P,)
    H_inv : ndarray of shape (P, P)
    n_prune : int
        In ``[0, P)``.

    Returns
    -------
    w : ndarray of shape (P,)
        Pruned and updated weights.
    mask : ndarray of shape (P,), bool
        ``False`` at the deleted weights.
    saliencies : list of float
        ``L_i`` of each deletion, in order.

    Notes
    -----
    Survey Eqs. (2)–(3), §2.1.1.

    References
    ----------
    .. [1] B. Hassibi, D. G. Stork, "Second Order Derivatives for Network Pruning: Optimal Brain
       Surgeon", NeurIPS 1993.
    """
    w = check_array(w, "w", ndim=1).astype(np.float64).copy()
    P = w.shape[0]
    H_inv = _check_hinv(H_inv, P).astype(np.float64).copy()
    n_prune = check_int(n_prune, "n_prune", 0, P - 1)
    mask = np.ones(P, dtype=bool)
    sal = []
    for _ in range(n_prune):
        d = np.diag(H_inv)
        L = np.full(P, np.inf)
        L[mask] = w[mask] ** 2 / (2 * d[mask])
        i = int(np.argmin(L))
        w, Li = obs_update(w, H_inv, i) if d[i] > 0 else (w, 0.0)
        col = H_inv[:, i].copy()
        H_inv -= np.outer(col, col) / col[i]
        H_inv[i, :] = 0.0
        H_inv[:, i] = 0.0
        H_inv[i, i] = 1.0  # keeps the diagonal positive; w_i is masked out of further choices
        w[~mask] = 0.0
        mask[i] = False
        sal.append(Li)
    return w, mask, sal


@validate_scalars
def hassibi_inverse_hessian(jacobian, alpha: float = 1e-6) -> np.ndarray:
    """OBS's recursive outer-product inverse Hessian (Hassibi & Stork 1993, Eq. 12–13).

    For the loss ``E = 1/(2P) Σ_k (f(x_k) - y_k)²`` near a minimum the Hessian is
    ``H ≈ (1/P) Σ_k X_k X_kᵀ`` with ``X_k = ∂f(x_k)/∂w``. Its inverse is built one sample at a
    time with the Sherman–Morrison (Woodbury) identity::

        H⁻¹_{m+1} = H⁻¹_m - H⁻¹_m X_{m+1} X_{m+1}ᵀ H⁻¹_m / (P + X_{m+1}ᵀ H⁻¹_m X_{m+1})
        H⁻¹_0 = α⁻¹ I

    so the result is exactly ``(α I + (1/P) Σ_k X_k X_kᵀ)⁻¹``.

    Parameters
    ----------
    jacobian : ndarray of shape (P_samples, n_params)
        Row ``k`` is ``X_k`` (e.g. :func:`mlp_output_jacobian`).
    alpha : float
        Small damping, ``1e-8 ≤ α ≤ 1e-4`` in the paper.

    Returns
    -------
    ndarray of shape (n_params, n_params)
    """
    J = check_array(jacobian, "jacobian", ndim=2)
    alpha = check_float(alpha, "alpha", 0.0, lo_open=True)
    P, n = J.shape
    H_inv = np.eye(n) / alpha
    for k in range(P):
        v = H_inv @ J[k]  # (n,)
        H_inv -= np.outer(v, v) / (P + J[k] @ v)
    return H_inv


# ---------------------------------------------------------------------------------------------
# Magnitude pruning and class allocation (§2.1.2)
# ---------------------------------------------------------------------------------------------

def n_to_prune(n: int, sparsity: float) -> int:
    """Number of weights pruned to reach ``sparsity`` of ``n``: ``round(sparsity * n)``.

    The same rounding as ``torch.nn.utils.prune`` for a float amount.

    Part of Survey §2.1.
    """
    return int(round(check_fraction(sparsity, "sparsity") * check_int(n, "n", 0)))


@validate_scalars
def magnitude_mask(W, sparsity: float) -> np.ndarray:
    """Mask keeping all but the ``round(sparsity * W.size)`` smallest-magnitude weights.

    One-shot magnitude pruning (Survey §2.1.2; Han et al. 2015). Ties in ``|W|`` are broken by
    position (a stable sort: the earlier flat index is pruned first), so the target count is
    reached exactly.

    Parameters
    ----------
    W : ndarray of any shape
        Finite weights.
    sparsity : float
        Fraction to prune, in ``[0, 1)``.

    Returns
    -------
    ndarray of bool, same shape as ``W`` (``True`` = kept)

    References
    ----------
    .. [1] S. Han, J. Pool, J. Tran, W. J. Dally, "Learning both Weights and Connections for
       Efficient Neural Networks", NeurIPS 2015.
    """
    W = check_array(W, "W")
    k = n_to_prune(W.size, sparsity)
    mask = np.ones(W.size, dtype=bool)
    if k:
        order = np.argsort(np.abs(W).ravel(), kind="stable")
        mask[order[:k]] = False
    return mask.reshape(W.shape)


@validate_scalars
def apply_mask(W, mask) -> np.ndarray:
    """``W * mask`` as a new array (idempotent: applying a mask twice changes nothing).

    Part of Survey §2.1. ``W`` and ``mask`` of the same shape.
    """
    W = check_array(W, "W")
    mask = check_array(mask, "mask", shape=W.shape, dtype_kind="bfiu")
    return np.where(mask.astype(bool), W, 0.0).astype(W.dtype, copy=False)


@validate_scalars
def magnitude_prune(W, sparsity: float) -> tuple[np.ndarray, np.ndarray]:
    """One-shot magnitude pruning: ``(W * mask, mask)`` with :func:`magnitude_mask`.

    Survey §2.1.2.

    References
    ----------
    .. [1] S. Han, J. Pool, J. Tran, W. J. Dally, "Learning both Weights and Connections for
       Efficient Neural Networks", NeurIPS 2015.
    """
    mask = magnitude_mask(W, sparsity)
    return apply_mask(W, mask), mask


@validate_scalars
def allocate_pruning(weights: Mapping[str, np.ndarray], sparsity: float,
                     scheme: str = "class-blind") -> dict[str, np.ndarray]:
    """Distribute a pruning budget across weight classes (See et al. 2016; Survey §2.1.2).

    * ``"class-blind"``: rank all weights of all classes together by ``|w|`` and prune the
      smallest ``x%`` overall (classes end up with different sparsities);
    * ``"class-uniform"``: prune ``x%`` of every class by magnitude;
    * ``"class-distribution"``: prune weights with ``|w| < λ σ_c`` where ``σ_c`` is the
      standard deviation of class ``c``; ``λ`` is chosen so that ``x%`` is pruned overall
      (implemented exactly as a class-blind ranking of ``|w| / σ_c``).

    Parameters
    ----------
    weights : mapping of str to ndarray
        The weight classes (e.g. ``"src_embedding"``, ``"layer1"``, ``"softmax"``).
    sparsity : float
        Overall fraction to prune, in ``[0, 1)``; exactly ``round(sparsity * total)`` weights
        are pruned (class-uniform: ``round`` per class).
    scheme : {"class-blind", "class-uniform", "class-distribution"}

    Returns
    -------
    dict of str to ndarray of bool
        A mask per class.

    References
    ----------
    .. [1] A. See, M.-T. Luong, C. D. Manning, "Compression of Neural Machine Translation
       Models via Pruning", CoNLL 2016.
    """
    check_choice(scheme, "scheme", ("class-blind", "class-uniform", "class-distribution"))
    if not isinstance(weights, Mapping) or not weights:
        raise TypeError("weights must be a non-empty mapping of name -> array")
    arrs = {k: check_array(v, f"weights[{k!r}]") for k, v in weights.items()}
    sparsity = check_fraction(sparsity, "sparsity")
    if scheme == "class-uniform":
        return {k: magnitude_mask(v, sparsity) for k, v in arrs.items()}
    scores = []
    for v in arrs.values():
        s = np.abs(v).ravel()
        if scheme == "class-distribution":
            sd = float(np.std(v))
            s = s / sd if sd > 0 else np.zeros_like(s)
        scores.append(s)
    flat = np.concatenate(scores)
    keep = magnitude_mask(flat, sparsity)
    out, pos = {}, 0
    for k, v in arrs.items():
        out[k] = keep[pos:pos + v.size].reshape(v.shape)
        pos += v.size
    return out


# ---------------------------------------------------------------------------------------------
# Schedules (§2.1.3): pure functions of the step
# ---------------------------------------------------------------------------------------------

def _check_narang(s, r, e, f):
    s = check_int(s, "start_itr", 0)
    r = check_int(r, "ramp_itr", s)
    e = check_int(e, "end_itr", r)
    if 2 * (r - s) + 3 * (e - r) == 0:
        raise ValueError("end_itr must be greater than start_itr")
    f = check_int(f, "freq", 1)
    return s, r, e, f


@validate_scalars
def narang_slope(q: float, freq: int, start_itr: int, ramp_itr: int, end_itr: int) -> float:
    """Initial slope ``θ = 2 q f / (2 (r - s) + 3 (e - r))`` (Survey Eq. (4), §2.1.3).

    With ``φ = 1.5 θ`` the threshold of Eqs. (5)–(6) grows from 0 to ``q`` (plus ``θ/f``) over
    the iterations ``s .. e``.

    Parameters
    ----------
    q : float
        Target threshold: the 90th percentile of ``|W|`` after warm-up (:func:`narang_q`).
    freq : int
        ``f``, iterations between threshold updates.
    start_itr, ramp_itr, end_itr : int
        ``s ≤ r ≤ e``.

    References
    ----------
    .. [1] S. Narang, E. Elsen, G. Diamos, S. Sengupta, "Exploring Sparsity in Recurrent Neural
       Networks", ICLR 2017.
    """
    q = check_float(q, "q", 0.0)
    s, r, e, f = _check_narang(start_itr, ramp_itr, end_itr, freq)
    return 2.0 * q * f / (2 * (r - s) + 3 * (e - r))


@validate_scalars
def narang_q(W, percentile: float = 90.0) -> float:
    """``q``: the ``percentile``-th percentile of ``|W|`` (Narang et al. use the 90th).

    Part of Survey §2.1.3 (the threshold target of Narang et al.'s schedule, Eqs. (4)–(6)).

    References
    ----------
    .. [1] S. Narang, G. Diamos, S. Sengupta, E. Elsen, "Exploring Sparsity in Recurrent Neural
       Networks", ICLR 2017.
    """
    W = check_array(W, "W")
    return float(np.percentile(np.abs(W), check_float(percentile, "percentile", 0, 100)))


@validate_scalars
def narang_threshold(itr: int, q: float, freq: int, start_itr: int, ramp_itr: int,
                     end_itr: int, phi_ratio: float = 1.5) -> float:
    """Gradual pruning threshold ``ε`` at iteration ``itr`` (Survey Eqs. (4)–(6), §2.1.3).

    ::

        ε = 0                                         itr < s
        ε = θ (itr - s + 1) / f                        s ≤ itr < r      (Eq. 5)
        ε = (θ (r - s + 1) + φ (itr - r + 1)) / f      r ≤ itr < e      (Eq. 6)
        ε = (θ (r - s + 1) + φ (e - r)) / f            itr ≥ e          (held)

    with ``θ`` from Eq. (4) and ``φ = phi_ratio · θ``. The phase boundaries follow Narang et
    al.'s Table 1 (``r ≤ itr < e`` for Eq. 6; the survey writes "from r+1 to e").

    Parameters
    ----------
    itr : int
        Iteration (training step), ``>= 0``.
    q, freq, start_itr, ramp_itr, end_itr : see :func:`narang_slope`
    phi_ratio : float, default 1.5

    Returns
    -------
    float
        Weights with ``|w| < ε`` are pruned.
    """
    itr = check_int(itr, "itr", 0)
    theta = narang_slope(q, freq, start_itr, ramp_itr, end_itr)
    s, r, e, f = _check_narang(start_itr, ramp_itr, end_itr, freq)
    phi = check_float(phi_ratio, "phi_ratio", 0.0) * theta
    if itr < s:
        return 0.0
    if itr < r:
        return theta * (itr - s + 1) / f  # Eq. (5)
    i = min(itr, e - 1) if e > r else r - 1
    return (theta * (r - s + 1) + phi * (i - r + 1)) / f  # Eq. (6)


@validate_scalars
def zhu_gupta_sparsity(step: int, final_sparsity: float, initial_sparsity: float = 0.0, *,
                       begin_step: int = 0, n_prunes: int = 10, frequency: int = 1) -> float:
    """Cubic sparsity schedule (Survey Eq. (7), §2.1.3; Zhu & Gupta 2017, Eq. 1).

    ``s_t = s_f + (s_0 - s_f) (1 - (t - t_0) / (n Δt))³`` for ``t_0 ≤ t ≤ t_0 + n Δt``;
    ``s_0`` before ``t_0`` and ``s_f`` after. The survey prints the argument as ``i / (n f)``,
    which equals ``(t - t_0)/(n Δt)`` only when ``i`` counts *training steps* since ``t_0``
    (see ``chapters/ERRATA.md``).

    Parameters
    ----------
    step : int
        Training step ``t``.
    final_sparsity : float
        ``s_f`` in ``[0, 1)``.
    initial_sparsity : float
        ``s_0`` in ``[0, 1)``.
    begin_step : int
        ``t_0``.
    n_prunes : int
        ``n``, the number of pruning steps.
    frequency : int
        ``Δt``, training steps between pruning steps.

    Returns
    -------
    float

    References
    ----------
    .. [1] M. Zhu, S. Gupta, "To prune, or not to prune: exploring the efficacy of pruning for
       model compression", arXiv 1710.01878, 2017.
    """
    step = check_int(step, "step", 0)
    s_f = check_fraction(final_sparsity, "final_sparsity")
    s_0 = check_fraction(initial_sparsity, "initial_sparsity")
    t0 = check_int(begin_step, "begin_step", 0)
    n = check_int(n_prunes, "n_prunes", 1)
    dt = check_int(frequency, "frequency", 1)
    if step < t0:
        return s_0
    frac = min((step - t0) / (n * dt), 1.0)
    if frac >= 1.0:
        return s_f  # the endpoint exactly (avoids rounding in s_f + (s_0 - s_f) * 0)
    if frac == 0.0:
        return s_0
    return s_f + (s_0 - s_f) * (1.0 - frac) ** 3


# ---------------------------------------------------------------------------------------------
# Iterative pruning, RPP, DSD, grow-and-prune (§2.1.3–§2.1.4)
# ---------------------------------------------------------------------------------------------

def _model_params(model, names) -> tuple[dict, list]:
    """``{name: Parameter}`` of ``model`` and the names to prune (default: every matrix)."""
    if not (hasattr(model, "named_parameters") and callable(model.named_parameters)):
        raise TypeError(f"model must be a refimpl.nn Module, got {type(model).__name__}")
    params = dict(model.named_parameters())
    if names is None:
        names = [n for n, p in params.items() if p.data.ndim == 2]
    else:
        names = [names] if isinstance(names, str) else list(names)
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"names contains parameters the model does not have: {missing}")
    if not names:
        raise ValueError("names must select at least one parameter to prune")
    return params, names


class IterativePruning(Callback):
    """:func:`refimpl.nn.fit` callback (:class:`refimpl.nn.Callback`): magnitude masks recomputed on a schedule (Survey §2.1.3).

    Before the first step (``step = 0``) and after every step ``t`` with ``t % prune_every ==
    0`` (and ``t < last_step``) the mask of each parameter in ``names`` is recomputed, either
    to the sparsity ``sparsity_fn(t)`` (per matrix; e.g. :func:`zhu_gupta_sparsity`) or with
    the threshold ``|w| ≥ threshold_fn(t)`` (e.g. :func:`narang_threshold`); after every step
    the pruned weights are set to 0 again.

    * ``revive=False``: the new mask is the old mask AND the magnitude mask of the surviving
      weights, so a pruned weight stays pruned (its update is discarded).
    * ``revive=True``: dense "shadow" weights ``W`` receive every update the optimiser makes to
      the masked weights (computed with the masked forward pass); the mask is recomputed from
      ``|W|``, so a pruned weight whose updates push it over the threshold comes back (Narang
      et al.: "gradients of pruned weights are not modified").

    Attributes
    ----------
    masks : dict of str to ndarray of bool (True = kept)
    shadow : dict of str to ndarray (``revive=True`` only)
    """

    def __init__(self, model, *, sparsity_fn: Callable[[int], float] | None = None,
                 threshold_fn: Callable[[int], float] | None = None, prune_every: int = 1,
                 names=None, revive: bool = False, masks: Mapping | None = None,
                 last_step: int | None = None):
        if (sparsity_fn is None) == (threshold_fn is None):
            raise ValueError("exactly one of sparsity_fn and threshold_fn must be given")
        for nm, fn in (("sparsity_fn", sparsity_fn), ("threshold_fn", threshold_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{nm} must be callable, got {type(fn).__name__}")
        params, self.names = _model_params(model, names)
        self.sparsity_fn, self.threshold_fn = sparsity_fn, threshold_fn
        self.prune_every = check_int(prune_every, "prune_every", 1)
        self.revive = bool(revive)
        self.last_step = None if last_step is None else check_int(last_step, "last_step", 0)
        self.masks = {}
        for n in self.names:
            shape = params[n].shape
            if masks is not None and n in masks:
                m = check_array(masks[n], f"masks[{n!r}]", shape=shape, dtype_kind="b").copy()
            else:
                m = np.ones(shape, bool)
            self.masks[n] = m
        self.shadow = {}

    def _params(self, model) -> dict:
        params = dict(model.named_parameters())
        return {n: params[n] for n in self.names}

    def _prune(self, model, step: int) -> None:
        for n, p in self._params(model).items():
            src = self.shadow[n] if self.revive else np.where(self.masks[n], p.data, 0.0)
            if self.sparsity_fn is not None:
                new = magnitude_mask(src, self.sparsity_fn(step))
            else:
                new = np.abs(src) >= self.threshold_fn(step)
            self.masks[n] = new if self.revive else (self.masks[n] & new)

    def _apply(self, model) -> None:
        for n, p in self._params(model).items():
            src = self.shadow[n] if self.revive else p.data
            p.data[...] = np.where(self.masks[n], src, 0.0)

    def on_train_begin(self, model) -> None:
        if self.revive:
            self.shadow = {n: p.data.astype(np.float64, copy=True)
                           for n, p in self._params(model).items()}
        self._prune(model, 0)
        self._apply(model)
        self._before = {n: p.data.copy() for n, p in self._params(model).items()}

    def on_step_end(self, model, step: int) -> None:
        if self.revive:  # the shadow weights take the optimiser's update of the masked ones
            for n, p in self._params(model).items():
                self.shadow[n] += p.data - self._before[n]
        if step % self.prune_every == 0 and (self.last_step is None or step < self.last_step):
            self._prune(model, step)
        self._apply(model)
        if self.revive:
            self._before = {n: p.data.copy() for n, p in self._params(model).items()}


def _check_train_arrays(train_arrays) -> tuple:
    """``(*inputs, y)``: at least two arrays with the same number of rows."""
    if not isinstance(train_arrays, (tuple, list)) or len(train_arrays) < 2:
        raise TypeError("train_arrays must be a tuple (*inputs, y) of at least 2 arrays, got "
                        f"{type(train_arrays).__name__}")
    out = tuple(np.asarray(a) if np.asarray(a).dtype.kind in "iub"
                else check_array(a, f"train_arrays[{i}]")  # floats: finite, real
                for i, a in enumerate(train_arrays))
    n = len(out[-1]) if out[-1].ndim else 0
    if n == 0 or any(a.ndim == 0 or len(a) != n for a in out):
        raise ValueError("train_arrays must hold arrays with the same number of rows (>= 1), "
                         f"got shapes {[a.shape for a in out]}")
    return out


def _fit_steps(train_arrays, batch_size):
    """``(batch_size, steps per epoch)``; ``None`` = the full batch."""
    n = len(train_arrays[-1])
    bs = n if batch_size is None else check_int(batch_size, "batch_size", 1)
    return bs, -(-n // bs)


@validate_scalars
@validate_arrays(model={"kind": "module"}, sparsity_fn={"kind": "callable", "optional": True},
                 threshold_fn={"kind": "callable", "optional": True},
                 loss_fn={"kind": "callable", "optional": True})
def prune_train(model, train_arrays, *, epochs: int, lr: float,
                sparsity_fn: Callable[[int], float] | None = None,
                threshold_fn: Callable[[int], float] | None = None, prune_every: int = 1,
                names=None, revive: bool = False, masks: Mapping | None = None,
                batch_size: int | None = None, optimizer="sgd", loss_fn: Callable | None = None,
                rng=None):
    """Iterative (gradual) magnitude pruning while training (Survey §2.1.3), in place.

    Trains ``model`` with :func:`refimpl.nn.fit` and the :class:`IterativePruning` callback:
    every ``prune_every`` optimiser steps the masks of the parameters in ``names`` are
    recomputed to the target sparsity ``sparsity_fn(step)`` (e.g. :func:`zhu_gupta_sparsity`,
    per matrix) or with the threshold ``threshold_fn(step)`` (e.g. :func:`narang_threshold`),
    and the pruned weights are kept at 0 after every step.

    * ``revive=False``: once pruned a weight stays pruned.
    * ``revive=True``: dense shadow weights keep receiving the (masked-forward) updates and the
      mask is recomputed from them, so a pruned weight can come back (Narang et al.).

    Parameters
    ----------
    model : refimpl.nn.Module
        Trained and pruned in place; ends with its pruned weights at 0.
    train_arrays : tuple ``(*inputs, y)``
        As for :func:`refimpl.nn.fit` (``model(*inputs)``).
    epochs : int
    lr : float
    sparsity_fn, threshold_fn : callable ``step -> float``, exactly one of them
    prune_every : int
    names : iterable of str, optional
        Parameters to prune (default: every 2-D parameter).
    revive : bool
    masks : mapping of str to ndarray of bool, optional
        Initial masks (default all ones).
    batch_size : int, optional
        Default: the full batch (one step per epoch, so steps = epochs).
    optimizer : {"sgd", "adam", ...} or refimpl.nn.Optimizer
        Default plain SGD.
    loss_fn : callable, optional
        ``loss_fn(output, y) -> scalar Tensor`` (default cross-entropy).
    rng : Generator or int, optional
        Shuffling of the minibatches.

    Returns
    -------
    masks : dict of str to ndarray of bool
    history : refimpl.nn.History
        ``history.step_loss`` has the loss of every step.

    References
    ----------
    .. [1] S. Narang, E. Elsen, G. Diamos, S. Sengupta, "Exploring Sparsity in Recurrent Neural
       Networks", ICLR 2017.
    .. [2] M. Zhu, S. Gupta, "To prune, or not to prune: exploring the efficacy of pruning for
       model compression", arXiv 1710.01878, 2017.
    """
    from refimpl.nn import fit

    epochs = check_int(epochs, "epochs", 0)
    lr = check_float(lr, "lr", 0.0, lo_open=True)
    train_arrays = _check_train_arrays(train_arrays)
    bs, per_epoch = _fit_steps(train_arrays, batch_size)
    pruner = IterativePruning(model, sparsity_fn=sparsity_fn, threshold_fn=threshold_fn,
                              prune_every=prune_every, names=names, revive=revive, masks=masks,
                              last_step=epochs * per_epoch)
    hist = fit(model, train_arrays, epochs=epochs, batch_size=bs, optimizer=optimizer, lr=lr,
               loss_fn=loss_fn, rng=rng, progress=False, callbacks=[pruner])
    return pruner.masks, hist


class _DSDPhases(Callback):
    """:func:`dsd_train`'s callback: after ``dense_steps`` steps prune to ``sparsity`` and keep
    the mask for ``sparse_steps`` steps, then release it (Han et al. 2016b)."""

    def __init__(self, names, sparsity, dense_steps, sparse_steps):
        self.names, self.sparsity = names, sparsity
        self.start, self.stop = dense_steps, dense_steps + sparse_steps
        self.masks: dict = {}
        self.sparse_state: dict = {}

    def _params(self, model):
        params = dict(model.named_parameters())
        return {n: params[n] for n in self.names}

    def _enter_sparse(self, model):
        for n, p in self._params(model).items():
            self.masks[n] = magnitude_mask(p.data, self.sparsity)
            p.data[...] = np.where(self.masks[n], p.data, 0.0)

    def on_train_begin(self, model):
        if self.start == 0:
            self._enter_sparse(model)
        if self.start == self.stop:
            self.sparse_state = {n: p.data.copy() for n, p in model.named_parameters()}

    def on_step_end(self, model, step):
        if self.start < step <= self.stop:  # sparse phase: pruned weights stay at 0
            for n, p in self._params(model).items():
                p.data[...] = np.where(self.masks[n], p.data, 0.0)
        if step == self.start and step > 0:
            self._enter_sparse(model)
        if step == self.stop and step > 0:  # end of the sparse phase: released from here on
            self.sparse_state = {n: p.data.copy() for n, p in model.named_parameters()}


@validate_scalars
@validate_arrays(model={"kind": "module"}, epochs={"kind": "sequence"},
                 loss_fn={"kind": "callable", "optional": True})
def dsd_train(model, train_arrays, sparsity: float, epochs=(100, 100, 100), lr: float = 0.1, *,
              names=None, batch_size: int | None = None, optimizer="sgd",
              loss_fn: Callable | None = None, rng=None):
    """Dense–Sparse–Dense training (Han et al. 2016b; Survey §2.1.4), in place.

    One :func:`refimpl.nn.fit` run whose callback switches phases: train dense for
    ``epochs[0]``; prune each parameter in ``names`` to ``sparsity`` by magnitude and train the
    sparse network (pruned weights kept at 0 after every step) for ``epochs[1]``; release the
    mask (pruned weights restart from zero) and train dense again for ``epochs[2]``.

    Parameters
    ----------
    model : refimpl.nn.Module
    train_arrays : tuple ``(*inputs, y)``
    sparsity : float in [0, 1]
    epochs : sequence of 3 ints
        Dense, sparse, dense (with the default full batch, one step per epoch).
    lr : float
    names : iterable of str, optional
        Default: every 2-D parameter.
    batch_size, optimizer, loss_fn, rng :
        As in :func:`prune_train`.

    Returns
    -------
    sparse_state : dict of str to ndarray
        Every parameter at the end of the sparse phase.
    masks : dict of str to ndarray of bool
        The sparse phase's masks.
    history : refimpl.nn.History
        Of the whole run (``step_loss`` has every step).

    References
    ----------
    .. [1] S. Han et al., "DSD: Dense-Sparse-Dense Training for Deep Neural Networks",
       ICLR 2017 (arXiv 1607.04381, 2016).
    """
    from refimpl.nn import fit

    _, names = _model_params(model, names)
    sparsity = check_fraction(sparsity, "sparsity")
    if len(epochs) != 3:
        raise ValueError(f"epochs must have three entries (dense, sparse, dense), got {epochs}")
    d1, s1, d2 = (check_int(e, "epochs", 0) for e in epochs)
    lr = check_float(lr, "lr", 0.0, lo_open=True)
    train_arrays = _check_train_arrays(train_arrays)
    bs, per_epoch = _fit_steps(train_arrays, batch_size)
    phases = _DSDPhases(names, sparsity, d1 * per_epoch, s1 * per_epoch)
    hist = fit(model, train_arrays, epochs=d1 + s1 + d2, batch_size=bs, optimizer=optimizer,
               lr=lr, loss_fn=loss_fn, rng=rng, progress=False, callbacks=[phases])
    return phases.sparse_state, phases.masks, hist


@validate_scalars
def reweighted_l1_alpha(w, eps: float = 1e-3) -> np.ndarray:
    """RPP's weights ``α_i = 1 / (|w_i| + ε)``, inversely proportional to ``|w_i|`` (Eq. (8)).

    References
    ----------
    .. [1] F.-M. Guo, S. Liu, F. S. Mungall, X. Lin, Y. Wang, "Reweighted Proximal Pruning for
       Large-Scale Language Representation", arXiv 1909.12486, 2019.
    .. [2] E. J. Candès, M. B. Wakin, S. P. Boyd, "Enhancing sparsity by reweighted ℓ1
       minimization", J. Fourier Anal. Appl. 2008.
    """
    w = check_array(w, "w")
    eps = check_float(eps, "eps", 0.0, lo_open=True)
    return 1.0 / (np.abs(w) + eps)


@validate_scalars
def soft_threshold(v, tau) -> np.ndarray:
    """``sign(v) max(|v| - τ, 0)``, the proximal operator of ``τ |·|`` (element-wise ``τ``).

    Part of Survey §2.1.3 (the proximal step of RPP, Eq. (8)). Same shape as ``v``.
    """
    v = check_array(v, "v")
    tau = check_values(tau, "tau", 0.0)
    return np.sign(v) * np.maximum(np.abs(v) - tau, 0.0)


@validate_scalars
def rpp_step(w, grad, lr: float, gamma: float, alpha) -> np.ndarray:
    """One reweighted proximal step for ``min_w f(w) + γ Σ_i α_i |w_i|`` (Survey Eq. (8)).

    ``w⁺ = prox_{lr γ Σ α_i|·|}(w - lr ∇f(w)) = soft_threshold(w - lr ∇f(w), lr γ α)``, the
    exact minimiser of ``‖u - (w - lr ∇f)‖² / (2 lr) + γ Σ α_i |u_i|``. RPP decouples the
    sparsity penalty (handled exactly by the prox) from the loss's gradient step.

    Parameters
    ----------
    w, grad : ndarray of the same shape
    lr, gamma : float
    alpha : ndarray of the same shape or float, >= 0
        Re-weights, usually :func:`reweighted_l1_alpha` of the previous iterate.

    Returns
    -------
    ndarray
    """
    w = check_array(w, "w")
    grad = check_array(grad, "grad", shape=w.shape)
    lr = check_float(lr, "lr", 0.0, lo_open=True)
    gamma = check_float(gamma, "gamma", 0.0)
    alpha = check_values(alpha, "alpha", 0.0, dtype=np.float64)
    try:
        alpha = np.broadcast_to(alpha, w.shape)
    except ValueError:
        raise ValueError(f"alpha must be a number or broadcast to the shape of w {w.shape}, "
                         f"got shape {alpha.shape}") from None
    return soft_threshold(w - lr * grad, lr * gamma * alpha)


@validate_scalars
def grow_and_prune_step(W, dW, mask, grow_rate: float, prune_rate: float,
                        lr: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """One grow-and-prune update of a connection mask (Dai et al. 2018; Survey §2.1.4).

    * grow: a dormant ``w`` (mask False) is activated iff ``|∂L/∂w|`` exceeds the
      ``(100 α)``-th percentile of all ``|∂L/∂W|`` (``α = grow_rate``); its weight starts at
      ``-lr ∂L/∂w`` (one gradient step from zero);
    * prune: an active ``w`` is removed iff ``|w|`` is below the ``(100 β)``-th percentile of
      the active ``|W|`` (``β = prune_rate``; the percentile is taken over active weights so
      that zeros of already-pruned weights do not pin it at 0).

    Parameters
    ----------
    W, dW : ndarray of shape (n_out, n_in)
        Weights and their gradient.
    mask : ndarray of bool, same shape
    grow_rate, prune_rate : float in [0, 1)
    lr : float

    Returns
    -------
    W_new : ndarray
    mask_new : ndarray of bool

    References
    ----------
    .. [1] X. Dai, H. Yin, N. K. Jha, "Grow and Prune Compact, Fast, and Accurate LSTMs",
       IEEE Trans. Computers 2019 (arXiv 1805.11797, 2018).
    """
    W = check_array(W, "W")
    dW = check_array(dW, "dW", shape=W.shape)
    mask = check_array(mask, "mask", shape=W.shape, dtype_kind="b")
    a = check_fraction(grow_rate, "grow_rate")
    b = check_fraction(prune_rate, "prune_rate")
    lr = check_float(lr, "lr", 0.0)
    g_thr = np.percentile(np.abs(dW), 100 * a)
    grow = (~mask) & (np.abs(dW) > g_thr)
    active = np.abs(W[mask])
    p_thr = np.percentile(active, 100 * b) if active.size else 0.0
    prune = mask & (np.abs(W) < p_thr)
    new_mask = (mask & ~prune) | grow
    W_new = np.where(new_mask, W, 0.0)
    W_new[grow] = -lr * dW[grow]
    return W_new, new_mask
