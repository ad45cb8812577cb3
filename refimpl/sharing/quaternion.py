r"""Survey §5.3, Quaternion layers (Tay et al. 2019, "Lightweight and efficient neural natural
language processing with quaternion networks"): weights and activations are quaternions and the
layer multiplies them with the Hamilton product, which shares each real weight across four
entries of the equivalent real matrix, so a layer stores ¼ of the weights of a real one.

For quaternions :math:`p = p_r + p_i\mathbf{i} + p_j\mathbf{j} + p_k\mathbf{k}` (stored in
``(r, i, j, k)`` order) the Hamilton product is

.. math::
    p \otimes q = (p_r q_r - p_i q_i - p_j q_j - p_k q_k)
    + (p_r q_i + p_i q_r + p_j q_k - p_k q_j)\,\mathbf{i}
    + (p_r q_j - p_i q_k + p_j q_r + p_k q_i)\,\mathbf{j}
    + (p_r q_k + p_i q_j - p_j q_i + p_k q_r)\,\mathbf{k}.

A quaternion linear layer ``W ⊗ x`` with ``W = W_r + W_i i + W_j j + W_k k`` (four real
``(out/4, in/4)`` matrices) and ``x = [x_r, x_i, x_j, x_k]`` (four contiguous blocks of
``in/4`` features) is the real block matrix

.. math::
    \begin{bmatrix} y_r\\ y_i\\ y_j\\ y_k \end{bmatrix} =
    \begin{bmatrix} W_r & -W_i & -W_j & -W_k\\ W_i & W_r & -W_k & W_j\\
                    W_j & W_k & W_r & -W_i\\ W_k & -W_j & W_i & W_r \end{bmatrix}
    \begin{bmatrix} x_r\\ x_i\\ x_j\\ x_k \end{bmatrix}.

References
----------
.. [1] Y. Tay, A. Zhang, L. A. Tuan, J. Rao, S. Zhang, S. Wang, J. Fu, S. C. Hui, "Lightweight
   and efficient neural natural language processing with quaternion networks", ACL 2019.
.. [2] T. Parcollet et al., "Quaternion recurrent neural networks", ICLR 2019.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, as_tensor
from refimpl.utils import as_rng, check_array, check_bool, check_int

__all__ = ["hamilton_product", "QuaternionLinear", "quaternion_block_matrix"]


def hamilton_product(p, q) -> np.ndarray:
    r"""Hamilton product :math:`p \otimes q` of quaternions in ``(r, i, j, k)`` order (Survey §5.3).

    Parameters
    ----------
    p, q : ndarray of shape (..., 4)
        Broadcastable quaternion arrays, components ``(r, i, j, k)`` on the last axis.

    Returns
    -------
    ndarray of shape (broadcast ..., 4)

    References
    ----------
    .. [1] Tay et al., ACL 2019, Eq. (2).
    """
    p = check_array(p, "p")
    q = check_array(q, "q")
    for name, a in (("p", p), ("q", q)):
        if a.ndim < 1 or a.shape[-1] != 4:
            raise ValueError(f"{name} must have shape (..., 4) in (r, i, j, k) order, got "
                             f"{a.shape}")
    pr, pi, pj, pk = np.moveaxis(p, -1, 0)
    qr, qi, qj, qk = np.moveaxis(q, -1, 0)
    return np.stack([pr * qr - pi * qi - pj * qj - pk * qk,
                     pr * qi + pi * qr + pj * qk - pk * qj,
                     pr * qj - pi * qk + pj * qr + pk * qi,
                     pr * qk + pi * qj - pj * qi + pk * qr], axis=-1)


def quaternion_block_matrix(W_r, W_i, W_j, W_k):
    """The real ``(4·out, 4·in)`` block matrix of the quaternion weight ``W_r + W_i i + W_j j +
    W_k k`` (each ``(out, in)``, arrays or Tensors; a Tensor in gives a Tensor on the tape).

    Returns
    -------
    ndarray or Tensor of shape (4·out, 4·in)
        Block rows ``[W_r -W_i -W_j -W_k; W_i W_r -W_k W_j; W_j W_k W_r -W_i;
        W_k -W_j W_i W_r]``.
    """
    tape = any(isinstance(a, Tensor) for a in (W_r, W_i, W_j, W_k))
    if not tape:
        W_r, W_i, W_j, W_k = (check_array(a, n, ndim=2) for a, n in
                              ((W_r, "W_r"), (W_i, "W_i"), (W_j, "W_j"), (W_k, "W_k")))
    shapes = {tuple(a.shape) for a in (W_r, W_i, W_j, W_k)}
    if len(shapes) != 1:
        raise ValueError(f"W_r, W_i, W_j, W_k must have one shape, got {sorted(shapes)}")
    if tape:
        rows = [[W_r, -W_i, -W_j, -W_k], [W_i, W_r, -W_k, W_j],
                [W_j, W_k, W_r, -W_i], [W_k, -W_j, W_i, W_r]]
        return F.concat([F.concat([as_tensor(b) for b in row], axis=1) for row in rows], axis=0)
    return np.block([[W_r, -W_i, -W_j, -W_k], [W_i, W_r, -W_k, W_j],
                     [W_j, W_k, W_r, -W_i], [W_k, -W_j, W_i, W_r]])


class QuaternionLinear(Module):
    r"""Quaternion linear layer ``y = W ⊗ x + b`` (Survey §5.3; Tay et al. 2019).

    Inputs and outputs are four contiguous blocks ``[r, i, j, k]`` of ``in_features/4`` and
    ``out_features/4`` features. Stores four real ``(out/4, in/4)`` matrices:
    ``in·out/4`` weights, ¼ of a real :class:`refimpl.nn.Linear` of the same size (plus the
    ``out_features`` bias in both).

    Parameters
    ----------
    in_features, out_features : int, positive multiples of 4
    bias : bool
    rng : Generator or int, optional
        Initialisation ``U(−1/√in, 1/√in)`` on every component (as :class:`refimpl.nn.Linear`).

    Attributes
    ----------
    W_r, W_i, W_j, W_k : Parameter of shape (out_features/4, in_features/4)
    b : Parameter of shape (out_features,) or None
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, rng=None):
        self.in_features = check_int(in_features, "in_features", 4)
        self.out_features = check_int(out_features, "out_features", 4)
        for name, v in (("in_features", self.in_features), ("out_features", self.out_features)):
            if v % 4:
                raise ValueError(f"{name} must be divisible by 4 (four quaternion components), "
                                 f"got {v}")
        bias = check_bool(bias, "bias")
        rng = as_rng(rng)
        m, n = self.out_features // 4, self.in_features // 4
        bound = 1.0 / np.sqrt(self.in_features)
        self.W_r, self.W_i, self.W_j, self.W_k = (
            Parameter(rng.uniform(-bound, bound, (m, n))) for _ in range(4))
        self.b = Parameter(rng.uniform(-bound, bound, self.out_features)) if bias else None

    def weight(self) -> Tensor:
        """The real block matrix, a Tensor of shape (out_features, in_features)."""
        return quaternion_block_matrix(self.W_r, self.W_i, self.W_j, self.W_k)

    def forward(self, x) -> Tensor:
        """x of shape (..., in_features) -> (..., out_features)."""
        x = as_tensor(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have last dimension in_features={self.in_features}, got "
                             f"shape {x.shape}")
        return F.linear(x, self.weight(), self.b)
