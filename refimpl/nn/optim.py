"""Optimisers matching ``torch.optim`` step for step (SGD with momentum/Nesterov, Adam, AdamW)
and global-norm gradient clipping.

Parameters are updated in place (``p.data``) from ``p.grad``; parameters whose ``grad`` is
None are skipped, as in PyTorch.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter
from refimpl.utils import check_float

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm_"]


def _params(params) -> list[Parameter]:
    if isinstance(params, Module):
        return params.parameters()
    ps = list(params)
    if not ps:
        raise ValueError("params must contain at least one Parameter, got an empty list")
    for p in ps:
        if not isinstance(p, Parameter):
            raise TypeError(f"params must be Parameters (or a Module), got {type(p).__name__}")
    return ps


class Optimizer:
    """Base class: holds the parameter list and the learning rate ``lr`` (settable)."""

    def __init__(self, params, lr: float):
        self.params = _params(params)
        self.lr = check_float(lr, "lr", 0.0)
        self.state: dict[int, dict] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's formulation.

    ``g = ∇ + wd·p``; with momentum μ: ``buf = g`` at the first step, else
    ``buf = μ·buf + (1 − dampening)·g``; ``g = g + μ·buf`` (Nesterov) or ``g = buf``;
    ``p ← p − lr·g``.
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, dampening: float = 0.0):
        super().__init__(params, lr)
        self.momentum = check_float(momentum, "momentum", 0.0)
        self.weight_decay = check_float(weight_decay, "weight_decay", 0.0)
        self.dampening = check_float(dampening, "dampening", 0.0, 1.0)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)

    def step(self) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            g = p.grad.astype(p.dtype, copy=False)
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                st = self.state.setdefault(id(p), {})
                if "buf" not in st:
                    st["buf"] = g.copy()
                else:
                    st["buf"] = self.momentum * st["buf"] + (1.0 - self.dampening) * g
                g = g + self.momentum * st["buf"] if self.nesterov else st["buf"]
            p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's arithmetic (L2 ``weight_decay`` added to the
    gradient; ``decoupled=True`` gives AdamW).

    ``m ← β₁m + (1−β₁)g``, ``v ← β₂v + (1−β₂)g²``,
    ``p ← p − (lr / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + eps)``.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False):
        super().__init__(params, lr)
        b1, b2 = betas
        self.betas = (check_float(b1, "betas[0]", 0.0, 1.0, hi_open=True),
                      check_float(b2, "betas[1]", 0.0, 1.0, hi_open=True))
        self.eps = check_float(eps, "eps", 0.0)
        self.weight_decay = check_float(weight_decay, "weight_decay", 0.0)
        self.decoupled = bool(decoupled)

    def step(self) -> None:
        b1, b2 = self.betas
        for p in self.params:
            if p.grad is None:
                continue
            g = p.grad.astype(p.dtype, copy=False)
            if self.weight_decay:
                if self.decoupled:
                    p.data *= 1.0 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p.data
            st = self.state.setdefault(id(p), {})
            if not st:
                st["t"] = 0
                st["m"] = np.zeros_like(p.data)
                st["v"] = np.zeros_like(p.data)
            st["t"] += 1
            t = st["t"]
            m, v = st["m"], st["v"]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            bc1 = 1.0 - b1 ** t
            bc2 = 1.0 - b2 ** t
            denom = np.sqrt(v) / np.sqrt(bc2) + self.eps
            p.data -= (self.lr / bc1) * (m / denom)


    def preconditioner(self, p: Parameter) -> np.ndarray:
        """Adam's diagonal curvature estimate ``d = √v̂ + eps`` for parameter ``p``, with the
        bias-corrected second moment ``v̂ = v / (1 − β₂ᵗ)`` (ones before ``p``'s first step).

        Loss-aware binarisation (Hou et al. 2017; Survey Eqs. (25)–(26), §3.2) scales
        ``sign(W)`` by ``‖d ⊙ W‖₁ / ‖d‖₁`` with this ``d``.

        Returns
        -------
        ndarray of the shape of ``p``
        """
        st = self.state.get(id(p))
        if not st or st["t"] == 0:
            return np.ones_like(p.data)
        return np.sqrt(st["v"] / (1.0 - self.betas[1] ** st["t"])) + self.eps


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``
    (default ``weight_decay=0.01``)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)


def clip_grad_norm_(params: Iterable, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    Same rule as ``torch.nn.utils.clip_grad_norm_``: ``coef = max_norm / (‖g‖ + 1e-6)``,
    gradients multiplied by ``coef`` when it is below 1.

    Returns
    -------
    float
        The global norm before clipping.
    """
    max_norm = check_float(max_norm, "max_norm", 0.0, lo_open=True)
    ps = [p for p in _params(params) if p.grad is not None]
    if not ps:
        return 0.0
    total = float(np.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in ps)))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for p in ps:
            p.grad = p.grad * coef
    return total
