"""Grouped position-wise linear layer: a 1×1 grouped convolution over a sequence (the building
block of SqueezeBERT, Survey §4.4; Iandola et al. 2020), PyTorch's
``nn.Conv1d(in, out, kernel_size=1, groups=g)`` applied to (B, n, d) inputs.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.layers import check_features
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor
from refimpl.utils import as_rng, check_int

__all__ = ["GroupedLinear"]


class GroupedLinear(Module):
    """``y[..., g·o:(g+1)·o] = x[..., g·i:(g+1)·i] W_gᵀ + b_g`` for each of ``groups`` blocks:
    a block-diagonal linear map with ``in·out/groups`` weights instead of ``in·out``
    (SqueezeBERT's grouped convolutions with kernel size 1, Iandola et al. 2020, §3).

    Parameters
    ----------
    in_features, out_features : int
        Both divisible by ``groups``.
    groups : int >= 1
    bias : bool
    rng : Generator or int, optional
        ``W`` drawn from U(−1/√(in/g), 1/√(in/g)) (PyTorch's Conv1d default bound).

    Attributes
    ----------
    W : Parameter of shape (groups, out_features / groups, in_features / groups)
    b : Parameter of shape (out_features,) or None
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1,
                 bias: bool = True, rng=None):
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self.groups = check_int(groups, "groups", 1)
        if in_features % groups or out_features % groups:
            raise ValueError(f"groups must divide in_features and out_features, got groups="
                             f"{groups} for {in_features} -> {out_features}")
        rng = as_rng(rng)
        gi, go = in_features // groups, out_features // groups
        bound = 1.0 / np.sqrt(gi)
        self.W = Parameter(rng.uniform(-bound, bound, (groups, go, gi)))
        self.b = Parameter(rng.uniform(-bound, bound, out_features)) if bias else None

    def forward(self, x) -> Tensor:
        """``x`` of shape (..., in_features) → Tensor of shape (..., out_features)."""
        x = check_features(x, "x", self.in_features)
        g = self.groups
        lead = tuple(x.shape[:-1])
        xg = F.reshape(x, lead + (g, 1, self.in_features // g))  # (..., g, 1, i)
        y = F.matmul(xg, F.transpose(self.W, (0, 2, 1)))  # (..., g, 1, o)
        y = F.reshape(y, lead + (self.out_features,))  # (..., out)
        return y + self.b if self.b is not None else y

    def __repr__(self) -> str:
        return (f"GroupedLinear(in_features={self.in_features}, "
                f"out_features={self.out_features}, groups={self.groups})")
