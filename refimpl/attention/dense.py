"""Dense scaled dot-product attention, Survey Eq. (68), §7.1 — the reference every §7 variant
is compared with.

.. math::

    \\mathrm{Attention}(Q, K, V) = \\mathrm{softmax}\\!\\left(\\frac{QK^T}{\\sqrt d}\\right) V
    \\qquad \\text{(Survey Eq. (68), §7.1)}

Every function of :mod:`refimpl.attention` takes ``Q, K, V`` of shape ``(batch, heads, n, d)``
(``K``/``V`` may have their own length ``m``; ``V`` its own width ``d_v``) and returns the
``(batch, heads, n, d_v)`` array dense attention returns. A boolean ``mask`` (``True`` = may
attend, PyTorch's ``scaled_dot_product_attention`` convention) turns dense attention into the
masked reference that every exact variant of §7 equals (:func:`dense_attention` with the
variant's ``*_mask``).

Rows whose mask allows no key produce zeros (their weights are all zero), instead of the NaN a
naive ``softmax`` of ``-inf`` gives.

References
----------
.. [1] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.tensor import Tensor, data_of
from refimpl.utils import check_array, validate_arrays, validate_scalars

__all__ = ["check_qkv", "attention_weights", "dense_attention", "dense_attention_t",
           "causal_mask", "as_mask"]


def check_qkv(Q, K, V, *, same_length: bool = False):
    """Validate ``Q, K, V`` of shapes ``(B, H, n, d)``, ``(B, H, m, d)``, ``(B, H, m, d_v)``.

    Raises
    ------
    ValueError
        Naming ``Q``/``K``/``V`` when a shape is wrong: not 4-D, ``d`` of ``Q`` and ``K``
        differ, ``K`` and ``V`` disagree in batch/heads/length, or (``same_length``) ``n != m``.

    Notes
    -----
    Part of Survey §7: the input check shared by every attention variant. Returns
    ``Q, K, V`` cast to one floating dtype (at least float32).
    """
    Q = check_array(Q, "Q", ndim=4)
    K = check_array(K, "K", ndim=4)
    V = check_array(V, "V", ndim=4)
    if Q.shape[-1] != K.shape[-1]:
        raise ValueError(f"K must have the same last dimension d as Q, got Q {Q.shape} and "
                         f"K {K.shape} (d mismatch)")
    if Q.shape[:2] != K.shape[:2]:
        raise ValueError(f"K must have the same (batch, heads) as Q, got Q {Q.shape} and "
                         f"K {K.shape}")
    if K.shape[:3] != V.shape[:3]:
        raise ValueError(f"V must have the same (batch, heads, length) as K, got K {K.shape} "
                         f"and V {V.shape}")
    if same_length and Q.shape[2] != K.shape[2]:
        raise ValueError(f"K must have the same length n as Q for self-attention, got Q "
                         f"{Q.shape} and K {K.shape}")
    dt = np.result_type(Q.dtype, K.dtype, V.dtype, np.float32)
    return Q.astype(dt, copy=False), K.astype(dt, copy=False), V.astype(dt, copy=False)


def as_mask(mask, n: int, m: int, name: str = "mask") -> np.ndarray:
    """Validate a boolean mask broadcastable to ``(B, H, n, m)`` (``True`` = may attend).

    Part of Survey §7 (masks of the exact variants). Returns the mask as a boolean
    ndarray.
    """
    mk = np.asarray(mask)
    if mk.dtype != bool:
        raise TypeError(f"{name} must be a boolean array (True = may attend), got dtype "
                        f"{mk.dtype}")
    if mk.ndim < 2 or mk.shape[-2:] not in ((n, m), (1, m), (n, 1), (1, 1)) or mk.ndim > 4:
        raise ValueError(f"{name} must be broadcastable to (batch, heads, {n}, {m}), got shape "
                         f"{mk.shape}")
    return mk


@validate_scalars(n=(1, None), m=(1, None))
def causal_mask(n: int, m: int | None = None) -> np.ndarray:
    """Lower-triangular boolean mask ``j <= i`` of shape ``(n, m)`` (autoregressive attention).

    Part of Survey §7, used with dense attention (Survey Eq. (68), §7.1).
    """
    m = n if m is None else m
    return np.tril(np.ones((n, m), dtype=bool))


@validate_scalars(scale=(0, None, "(]"))
def attention_weights(Q, K, mask=None, *, scale: float | None = None) -> np.ndarray:
    """The attention matrix ``softmax(Q K^T / sqrt(d))`` of Survey Eq. (68), §7.1.

    Parameters
    ----------
    Q : ndarray of shape (B, H, n, d)
    K : ndarray of shape (B, H, m, d)
    mask : ndarray of bool, broadcastable to (B, H, n, m), optional
        ``True`` where query ``i`` may attend to key ``j``.
    scale : float, optional
        Multiplies the scores; default ``1/sqrt(d)``.

    Returns
    -------
    ndarray of shape (B, H, n, m)
        Row-stochastic where the mask allows at least one key; rows the mask empties are zero.
    """
    Q = check_array(Q, "Q", ndim=4)
    K = check_array(K, "K", ndim=4)
    if Q.shape[-1] != K.shape[-1]:
        raise ValueError(f"K must have the same last dimension d as Q, got Q {Q.shape} and "
                         f"K {K.shape} (d mismatch)")
    d = Q.shape[-1]
    scale = 1.0 / np.sqrt(d) if scale is None else float(scale)
    S = (Q @ np.swapaxes(K, -1, -2)) * scale  # (B, H, n, m)
    if mask is None:
        S = S - S.max(axis=-1, keepdims=True)
        P = np.exp(S)
        return P / P.sum(axis=-1, keepdims=True)
    mk = np.broadcast_to(as_mask(mask, Q.shape[2], K.shape[2]), S.shape)
    S = np.where(mk, S, -np.inf)
    row_max = S.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    P = np.where(mk, np.exp(S - row_max), 0.0)
    Z = P.sum(axis=-1, keepdims=True)
    return P / np.where(Z > 0, Z, 1.0)


@validate_scalars(scale=(0, None, "(]"))
def dense_attention(Q, K, V, mask=None, *, scale: float | None = None,
                    return_weights: bool = False):
    """Scaled dot-product attention, Survey Eq. (68), §7.1 (Vaswani et al., 2017).

    Parameters
    ----------
    Q : ndarray of shape (B, H, n, d)
        Queries.
    K : ndarray of shape (B, H, m, d)
        Keys.
    V : ndarray of shape (B, H, m, d_v)
        Values.
    mask : ndarray of bool, broadcastable to (B, H, n, m), optional
        ``True`` where query ``i`` may attend to key ``j`` (PyTorch's boolean ``attn_mask``).
        Every exact §7 variant equals this function under its own mask.
    scale : float, optional
        Score scale; default ``1/sqrt(d)`` as in Eq. (68).
    return_weights : bool
        Also return the ``(B, H, n, m)`` attention matrix.

    Returns
    -------
    out : ndarray of shape (B, H, n, d_v)
    weights : ndarray of shape (B, H, n, m)
        Only with ``return_weights=True``.

    Notes
    -----
    .. math:: \\mathrm{Attention}(Q,K,V)=\\mathrm{softmax}\\left(\\frac{QK^T}{\\sqrt d}\\right)V
       \\quad \\text{(Survey Eq. (68), §7.1)}

    Time :math:`O(n m d)` and memory :math:`O(n m)` per head: the quadratic cost §7 removes.

    References
    ----------
    .. [1] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """
    Q, K, V = check_qkv(Q, K, V)
    P = attention_weights(Q, K, mask, scale=scale)  # (B, H, n, m)
    out = P @ V  # (B, H, n, d_v)
    return (out, P) if return_weights else out


@validate_scalars(scale=(0, None, "(]"))
@validate_arrays(q={}, k={}, v={})
def dense_attention_t(q, k, v, mask=None, *, scale: float | None = None) -> Tensor:
    """Differentiable (tape) version of :func:`dense_attention` on Tensors ``(B, H, n, d)``.

    ``mask`` is a constant boolean array broadcastable to ``(B, H, n, m)``, ``True`` = may
    attend. Composed from :mod:`refimpl.nn.functional` ops, so gradients come from the tape.

    Survey Eq. (68), §7.1. Returns a Tensor of shape (B, H, n, d_v).

    References
    ----------
    .. [1] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    """
    d = data_of(q).shape[-1]
    scale = 1.0 / np.sqrt(d) if scale is None else float(scale)
    S = F.matmul(q, F.transpose(k, (0, 1, 3, 2))) * scale  # (B, H, n, m)
    if mask is not None:
        mk = np.broadcast_to(np.asarray(data_of(mask), dtype=bool), S.shape)
        S = F.masked_fill(S, ~mk, -1e30)
        P = F.mask(F.softmax(S, axis=-1), mk.astype(S.dtype))  # empty rows -> 0
    else:
        P = F.softmax(S, axis=-1)
    return F.matmul(P, v)  # (B, H, n, d_v)
