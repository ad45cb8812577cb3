"""Hard-concrete gates: stochastic, differentiable gates that are exactly 0 or 1 with positive
probability (Louizos et al. 2018), the one implementation used by §2 and §6.

=====================================  ========================================================
function                               what it is
=====================================  ========================================================
:func:`hard_concrete_sample`           a reparameterised sample ``z ∈ [0, 1]`` (training)
:func:`hard_concrete_prob_nonzero`     the closed form ``P(z ≠ 0)`` of each gate
:func:`hard_concrete_l0`               the expected L0 norm ``Σ_k P(z_k ≠ 0)`` (the penalty)
:func:`hard_concrete_deterministic`    the test-time gate ``clip(σ(log α)(ζ − γ) + γ, 0, 1)``
=====================================  ========================================================

Used by Voita et al.'s L0 head gates (Survey §2.4.1, :func:`refimpl.pruning.train_l0_head_gates`)
and by FLOP's rank gates (Survey Eq. (67), §6.1, :class:`refimpl.decomposition.FLOPLinear`).
All four are built from tape ops, so they take ``log α`` as a Tensor (to train it) or an array,
and return Tensors.

With ``u ~ U(0, 1)``, temperature ``β`` and stretch interval ``(γ, ζ)``, ``γ < 0 < 1 < ζ``
(Louizos et al., Eqs. (10)–(13))::

    s = σ((log u − log(1 − u) + log α) / β)         binary concrete
    z = min(1, max(0, s (ζ − γ) + γ))                stretched and clipped
    P(z ≠ 0) = σ(log α − β log(−γ / ζ))
    ẑ = min(1, max(0, σ(log α)(ζ − γ) + γ))          at test time

References
----------
.. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
   Regularization", ICLR 2018.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.tensor import Tensor
from refimpl.utils import as_rng, check_array, check_float

__all__ = ["HC_BETA", "HC_GAMMA", "HC_ZETA", "hard_concrete_sample",
           "hard_concrete_prob_nonzero", "hard_concrete_l0", "hard_concrete_deterministic"]

#: Louizos et al.'s defaults: temperature β = 2/3, stretch interval (γ, ζ) = (−0.1, 1.1).
HC_BETA, HC_GAMMA, HC_ZETA = 2.0 / 3.0, -0.1, 1.1

#: ``u`` is drawn from ``U(1e-6, 1 − 1e-6)`` so that ``log u − log(1 − u)`` stays finite.
_U_EPS = 1e-6


def _log_alpha(log_alpha) -> Tensor:
    """``log_alpha`` as a Tensor (the same one if given a Tensor), finite and real."""
    if isinstance(log_alpha, Tensor):
        check_array(log_alpha.data, "log_alpha")
        return log_alpha
    return Tensor(check_array(log_alpha, "log_alpha", dtype=np.float64))


def _stretch(beta, gamma, zeta):
    """Temperature ``β > 0`` and stretch interval ``γ < 0``, ``ζ > 1``."""
    return (check_float(beta, "beta", 0.0, lo_open=True),
            check_float(gamma, "gamma", hi=0.0, hi_open=True),
            check_float(zeta, "zeta", 1.0, lo_open=True))


def hard_concrete_sample(log_alpha, rng=None, *, beta: float = HC_BETA,
                         gamma: float = HC_GAMMA, zeta: float = HC_ZETA) -> Tensor:
    r"""Sample hard-concrete gates ``z`` (reparameterised: differentiable in ``log α``).

    Parameters
    ----------
    log_alpha : Tensor or ndarray of any shape
        Location parameters ``log α`` (one gate per entry).
    rng : Generator or int, optional
        Draws ``u ~ U(1e-6, 1 − 1e-6)`` of the shape of ``log_alpha``.
    beta : float
        Temperature ``β > 0``.
    gamma, zeta : float
        Stretch interval, ``γ < 0`` and ``ζ > 1``.

    Returns
    -------
    Tensor of the shape of ``log_alpha``
        Entries in ``[0, 1]``; exactly 0 or 1 with positive probability. The gradient flows
        through ``σ`` and the clip (zero where ``z`` is clipped).

    Notes
    -----
    Louizos et al. (2018), Eqs. (10)–(11); Voita et al.'s head gates (Survey §2.4.1) and FLOP's
    rank gates (Survey Eq. (67), §6.1):

    .. math::
        u \sim U(0,1),\quad s = \sigma\big((\log u - \log(1-u) + \log\alpha)/\beta\big),\quad
        z = \min(1, \max(0, s(\zeta-\gamma)+\gamma)).

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    """
    la = _log_alpha(log_alpha)
    beta, gamma, zeta = _stretch(beta, gamma, zeta)
    u = as_rng(rng).uniform(_U_EPS, 1.0 - _U_EPS, la.shape)
    s = F.sigmoid((la + (np.log(u) - np.log1p(-u))) * (1.0 / beta))  # binary concrete
    return F.clip(s * (zeta - gamma) + gamma, 0.0, 1.0)  # stretch, then clip to [0, 1]


def hard_concrete_prob_nonzero(log_alpha, *, beta: float = HC_BETA, gamma: float = HC_GAMMA,
                               zeta: float = HC_ZETA) -> Tensor:
    r"""``P(z ≠ 0)`` of each gate of :func:`hard_concrete_sample`, in closed form.

    Parameters
    ----------
    log_alpha : Tensor or ndarray of any shape
    beta, gamma, zeta : float
        As in :func:`hard_concrete_sample`.

    Returns
    -------
    Tensor of the shape of ``log_alpha`` (differentiable in ``log α``)

    Notes
    -----
    Louizos et al. (2018), Eq. (12): ``z > 0`` iff ``s > −γ/(ζ − γ)``, i.e.

    .. math:: P(z \ne 0) = \sigma\big(\log\alpha - \beta \log(-\gamma/\zeta)\big).

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    """
    la = _log_alpha(log_alpha)
    beta, gamma, zeta = _stretch(beta, gamma, zeta)
    return F.sigmoid(la - beta * np.log(-gamma / zeta))


def hard_concrete_l0(log_alpha, *, beta: float = HC_BETA, gamma: float = HC_GAMMA,
                     zeta: float = HC_ZETA) -> Tensor:
    r"""Expected L0 norm of the gates, ``Σ_k P(z_k ≠ 0)`` (a scalar Tensor).

    The differentiable L0 penalty of Louizos et al. (2018), Eq. (12), summed over every entry
    of ``log_alpha`` (Voita et al.'s head-gate penalty, Survey §2.4.1; FLOP's, Survey
    Eq. (67), §6.1). See :func:`hard_concrete_prob_nonzero`.

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    """
    return hard_concrete_prob_nonzero(log_alpha, beta=beta, gamma=gamma, zeta=zeta).sum()


def hard_concrete_deterministic(log_alpha, *, gamma: float = HC_GAMMA,
                                zeta: float = HC_ZETA) -> Tensor:
    r"""Test-time gates ``ẑ = min(1, max(0, σ(log α)(ζ − γ) + γ))`` (Louizos et al., Eq. 13).

    Parameters
    ----------
    log_alpha : Tensor or ndarray of any shape
    gamma, zeta : float
        Stretch interval, ``γ < 0`` and ``ζ > 1``.

    Returns
    -------
    Tensor of the shape of ``log_alpha``: 0 for ``log α ≤ log(−γ/ζ)``, 1 for
    ``log α ≥ log((1 − γ)/(ζ − 1))``.

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    """
    la = _log_alpha(log_alpha)
    _, gamma, zeta = _stretch(HC_BETA, gamma, zeta)
    return F.clip(F.sigmoid(la) * (zeta - gamma) + gamma, 0.0, 1.0)
