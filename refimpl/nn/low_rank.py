"""A linear layer stored as two low-rank factors, ``W = A B`` (Survey §6.1, used as a
baseline in §5.2): the one implementation of the mechanism.

:class:`refimpl.decomposition.LowRankLinear` subclasses it and adds ``from_dense`` (truncated
SVD); :func:`refimpl.nn.surgery.factorize_recurrent_weights_` stores recurrent matrices with it.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor
from refimpl.utils import as_rng, check_int, validate_scalars

__all__ = ["LowRankLinear"]


class LowRankLinear(Module):
    """Low-rank (factorised) linear layer ``y = (x Bᵀ) Aᵀ + b`` with ``W = A B`` of rank ≤ r
    (Survey §6.1, "low-rank factorization"; e.g. Sainath et al. 2013, Denil et al. 2013).

    Stores ``r (in + out)`` numbers (plus ``out`` for the bias) instead of ``in · out``, and
    computes the product through the factors, ``O(r (in + out))`` per input row, never
    forming ``W``. It is PyTorch's ``nn.Sequential(nn.Linear(in, r, bias=False),
    nn.Linear(r, out, bias))`` with weights ``B`` and ``A`` (checked in the tests).

    Parameters
    ----------
    in_features, out_features, rank : int
        ``rank`` ≥ 1 (any value; it is a factorisation only when ``r < in·out/(in+out)``).
    bias : bool
    rng : Generator or int, optional
        Initialisation ``A ~ N(0, 1/r)``, ``B ~ N(0, 1/in)`` (so ``Var W_ij = 1/in``), ``b = 0``.

    Attributes
    ----------
    A : Parameter of shape (out_features, rank)
    B : Parameter of shape (rank, in_features)
    b : Parameter of shape (out_features,) or None
    """

    @validate_scalars
    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 rng=None):
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self.rank = check_int(rank, "rank", 1)
        rng = as_rng(rng)
        self.A = Parameter(rng.standard_normal((out_features, rank)) / math.sqrt(rank))
        self.B = Parameter(rng.standard_normal((rank, in_features)) / math.sqrt(in_features))
        self.b = Parameter(np.zeros(out_features)) if bias else None

    def forward(self, x) -> Tensor:
        """``x`` of shape (..., in_features) -> Tensor of shape (..., out_features)."""
        y = F.linear(F.linear(x, self.B), self.A)
        return y + self.b if self.b is not None else y

    def weight(self) -> np.ndarray:
        """The dense ``W = A B``, shape (out_features, in_features) (a copy, off the tape)."""
        return self.A.data @ self.B.data

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(in_features={self.in_features}, "
                f"out_features={self.out_features}, rank={self.rank}, "
                f"bias={self.b is not None})")
