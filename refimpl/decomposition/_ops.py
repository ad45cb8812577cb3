"""Differentiable building blocks shared by the §6 modules: an ``einsum`` op on the tape and the
hard-concrete gate of FLOP (Survey Eq. (67), §6.1).

Both are written with :func:`refimpl.nn.custom_op` (einsum) or by composing tape ops (hard
concrete), so the factorised layers of §6 (TT-layer, TT-embedding, BT-layer, multi-linear
attention, FLOP) get gradients without hand-written model-level backward passes.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import Tensor, custom_op
from refimpl.nn import functional as F

__all__ = ["einsum", "hard_concrete_sample", "hard_concrete_deterministic",
           "hard_concrete_l0", "HC_BETA", "HC_GAMMA", "HC_ZETA"]


def _parse(subscripts: str, n: int):
    if "->" not in subscripts:
        raise ValueError(f"subscripts must be explicit ('ab,bc->ac'), got {subscripts!r}")
    lhs, out = subscripts.replace(" ", "").split("->")
    ins = lhs.split(",")
    if len(ins) != n:
        raise ValueError(f"subscripts name {len(ins)} operands, got {n}")
    for s in ins:
        if len(set(s)) != len(s) or "." in s:
            raise ValueError(f"subscripts: the einsum op supports neither repeated indices within an "
                             f"operand nor ellipses, got {subscripts!r}")
    return ins, out


def _einsum_forward(*arrays, subscripts):
    ins, out = _parse(subscripts, len(arrays))
    y = np.einsum(subscripts, *arrays, optimize=True)
    return y, (arrays, ins, out)


def _einsum_backward(dout, cache):
    arrays, ins, out = cache
    grads = []
    for i, (a, s) in enumerate(zip(arrays, ins)):
        others = [ins[j] for j in range(len(ins)) if j != i]
        available = set(out).union(*others) if others else set(out)
        present = "".join(c for c in s if c in available)
        spec = ",".join([out] + others) + "->" + present
        g = np.einsum(spec, dout, *[arrays[j] for j in range(len(arrays)) if j != i],
                      optimize=True)
        if present != s:  # an index summed only inside this operand: broadcast back
            shape = [a.shape[k] if c in available else 1 for k, c in enumerate(s)]
            # g has the axes of `present`, which are s's axes in order minus the missing ones
            g = np.broadcast_to(g.reshape(shape), a.shape)
        grads.append(np.ascontiguousarray(g))
    return tuple(grads)


_einsum_op = custom_op(_einsum_forward, _einsum_backward, name="einsum")


def einsum(subscripts: str, *operands) -> Tensor:
    """Differentiable ``np.einsum`` with explicit output subscripts.

    Parameters
    ----------
    subscripts : str
        E.g. ``"bjnr,smnr->bjsm"``; no ellipses, no index repeated inside one operand.
    *operands : Tensor or ndarray
        Arrays are constants.

    Returns
    -------
    Tensor
        The contraction; its backward is the einsum of ``dout`` with the other operands.
    """
    return _einsum_op(*operands, subscripts=subscripts)


# ------------------------------------------------------------------ hard-concrete gates (FLOP)
#: Hard-concrete constants of Louizos et al. (2018), used by Wang et al. (2019) for FLOP.
HC_BETA, HC_GAMMA, HC_ZETA = 2.0 / 3.0, -0.1, 1.1


def hard_concrete_sample(log_alpha, rng, *, beta: float = HC_BETA, gamma: float = HC_GAMMA,
                         zeta: float = HC_ZETA) -> Tensor:
    r"""Sample hard-concrete gates ``z`` (differentiable in ``log_alpha``, reparameterised).

    Notes
    -----
    Louizos et al. (2018), Eq. (10)–(11); the gates :math:`z_k` of FLOP, Survey Eq. (67), §6.1:

    .. math::
        u \sim U(0,1),\quad s = \sigma\big((\log u - \log(1-u) + \log\alpha)/\beta\big),\quad
        z = \min(1, \max(0, s(\zeta-\gamma)+\gamma)).

    Parameters
    ----------
    log_alpha : Tensor or ndarray of shape (r,)
    rng : numpy.random.Generator

    Returns
    -------
    Tensor of shape (r,), entries in [0, 1] with exact zeros and ones with positive probability.

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    """
    la = log_alpha if isinstance(log_alpha, Tensor) else Tensor(np.asarray(log_alpha, float))
    u = rng.uniform(1e-6, 1.0 - 1e-6, size=la.shape)
    noise = np.log(u) - np.log1p(-u)
    s = F.sigmoid((la + noise) * (1.0 / beta))
    return F.clip(s * (zeta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_deterministic(log_alpha, *, gamma: float = HC_GAMMA,
                                zeta: float = HC_ZETA) -> Tensor:
    r"""Test-time gates :math:`\hat z = \min(1,\max(0,\sigma(\log\alpha)(\zeta-\gamma)+\gamma))`
    (Louizos et al. 2018, Eq. 13). Shape of ``log_alpha``."""
    la = log_alpha if isinstance(log_alpha, Tensor) else Tensor(np.asarray(log_alpha, float))
    return F.clip(F.sigmoid(la) * (zeta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_l0(log_alpha, *, beta: float = HC_BETA, gamma: float = HC_GAMMA,
                     zeta: float = HC_ZETA) -> Tensor:
    r"""Per-gate probability of being non-zero, :math:`P(z_k \ne 0)`; its sum is the expected L0
    norm of the gates (the FLOP penalty, Survey Eq. (67), §6.1).

    .. math:: P(z_k \ne 0) = \sigma\big(\log\alpha_k - \beta \log(-\gamma/\zeta)\big)

    (Louizos et al. 2018, Eq. 12). Differentiable in ``log_alpha`` (shape (r,)).
    """
    la = log_alpha if isinstance(log_alpha, Tensor) else Tensor(np.asarray(log_alpha, float))
    return F.sigmoid(la - beta * np.log(-gamma / zeta))
