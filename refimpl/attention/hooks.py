"""Differentiable (tape) attention hooks for :class:`refimpl.nn.MultiHeadAttention`, Survey §7.

A hook is called as ``hook(q, k, v, mask)`` with Tensors ``q, k, v`` of shape
``(B, H, n, d_head)`` and an optional constant boolean ``mask`` broadcastable to
``(B, H, n, n)`` (``True`` = may attend, e.g. a key-padding mask), and returns the
``(B, H, n, d_head)`` Tensor. Each hook here is composed from :mod:`refimpl.nn.functional` ops,
so gradients come from the tape (gradient-checked in ``tests/attention/test_hooks.py``), and
its forward output equals the array-level function of :mod:`refimpl.attention` it is named
after (tested).

==============================  =========================================================
hook                            array-level twin
==============================  =========================================================
:class:`DenseHook`              :func:`~refimpl.attention.dense.dense_attention`, Eq. (68)
:class:`LongformerHook`         :func:`~refimpl.attention.linear.longformer_attention`
:class:`LinformerHook`          :func:`~refimpl.attention.linear.linformer_attention`
                                (a :class:`~refimpl.nn.Module` owning ``E``/``F``)
:class:`LinearAttentionHook`    :func:`~refimpl.attention.linear.linear_attention`
:class:`LSHHook`                :func:`~refimpl.attention.superlinear.lsh_attention`
:class:`BlockBERTHook`          :func:`~refimpl.attention.superlinear.blockbert_attention`
:class:`SparseTransformerHook`  ``superlinear.sparse_transformer_attention``
:class:`EfficientAttentionHook` :func:`~refimpl.attention.linear.efficient_attention`,
                                Eq. (69)
:class:`StarHook`               :func:`~refimpl.attention.linear.star_attention` (one cycle)
==============================  =========================================================

The sparse hooks (Longformer, LSH) train through masked dense attention: the same function
and gradients as the sparse computation, but with the ``n × n`` scores in memory. Their
``O(n·w)`` / ``O(n log n)`` forward passes are the array-level functions and kernels; the
memory the sparse forward needs is reported by :meth:`attention_memory`.
"""

from __future__ import annotations

import numpy as np

from refimpl.attention.dense import dense_attention_t
from refimpl.attention.linear import longformer_mask, star_attention_mask
from refimpl.attention.superlinear import (blockbert_mask, lsh_attention_mask,
                                           sparse_transformer_mask)
from refimpl.nn import functional as F
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, data_of
from refimpl.utils import as_rng, check_choice, check_int

__all__ = ["DenseHook", "LongformerHook", "LinformerHook", "LinearAttentionHook", "LSHHook",
           "BlockBERTHook", "SparseTransformerHook", "EfficientAttentionHook", "StarHook",
           "key_keep"]


def _combine(mask, extra):
    if mask is None:
        return extra
    m = np.asarray(data_of(mask), dtype=bool)
    return m if extra is None else (m & extra)


def key_keep(mask, n: int):
    """Which keys a (padding) mask keeps, as a ``(B, 1, n, 1)``-broadcastable float array.

    A key counts as kept when any query may attend to it. ``None`` keeps every key.

    Part of Survey §7 (padding in the attention hooks).
    """
    if mask is None:
        return None
    m = np.asarray(data_of(mask), dtype=bool)
    m = np.broadcast_to(m, m.shape[:-2] + (m.shape[-2], n))
    keep = m.any(axis=-2)  # (..., n)
    return keep[..., :, None].astype(np.float64)  # (..., n, 1)


class DenseHook:
    """Eq. (68) as a hook (the reference the variants are compared with)."""

    name = "dense"

    def __call__(self, q, k, v, mask=None) -> Tensor:
        return dense_attention_t(q, k, v, mask)

    def attention_memory(self, n: int, num_heads: int = 1) -> int:
        """Floats held by the score matrix of one sequence: ``H n²``."""
        return num_heads * n * n


class LongformerHook:
    """Longformer sliding window (+ dilation, + global tokens) as a hook, Survey §7.2.

    Parameters
    ----------
    window, dilation, global_idx
        As in :func:`~refimpl.attention.linear.longformer_attention`. Negative entries of
        ``global_idx`` count from the end (``-1`` is the last position, e.g. the query token
        of a read-out-at-the-end classifier).
    """

    name = "longformer"

    def __init__(self, window: int, dilation: int = 1, global_idx=()):
        self.window = int(window)
        self.dilation = int(dilation)
        self.global_idx = tuple(int(g) for g in global_idx)

    def mask(self, n: int) -> np.ndarray:
        g = [gi % n for gi in self.global_idx]
        return longformer_mask(n, min(self.window, n - n % 2), self.dilation, g)

    def __call__(self, q, k, v, mask=None) -> Tensor:
        n = data_of(q).shape[2]
        return dense_attention_t(q, k, v, _combine(mask, self.mask(n)))

    def attention_memory(self, n: int, num_heads: int = 1) -> int:
        """Floats of scores the sparse forward holds: ``H (n (w + 1 + g) + g n)``."""
        g = len(self.global_idx)
        return num_heads * (n * (self.window + 1 + g) + g * n)


class LinformerHook(Module):
    """Linformer's learned projections ``E, F`` (``k × n``) as a hook module, Survey §7.2.

    Parameters
    ----------
    n : int
        Maximum sequence length (shorter inputs use the first columns of ``E``/``F``).
    k : int
        Projected length.
    num_heads : int
    sharing : {"headwise", "key-value", "none"}
        Head-wise ``E, F`` shared by the heads; key-value ``E = F``; ``"none"``: one pair per
        head. (Layer-wise sharing: pass the same hook object to every layer.)
    rng : Generator or int
    """

    name = "linformer"

    def __init__(self, n: int, k: int, num_heads: int = 1, sharing: str = "headwise", rng=None):
        super().__init__()
        self.n = check_int(n, "n", 1)
        self.k = check_int(k, "k", 1, n)
        self.sharing = check_choice(sharing, "sharing", ("headwise", "key-value", "none"))
        rng = as_rng(rng)
        shape = (num_heads, k, n) if sharing == "none" else (k, n)
        self.E = Parameter(rng.standard_normal(shape) / np.sqrt(k))
        if sharing != "key-value":
            self.F = Parameter(rng.standard_normal(shape) / np.sqrt(k))

    def _proj(self, P, n):
        return P if n == self.n else P[..., :, :n]

    def __call__(self, q, k, v, mask=None) -> Tensor:
        return self.forward(q, k, v, mask)

    def forward(self, q, k, v, mask=None) -> Tensor:
        n = data_of(q).shape[2]
        if n > self.n:
            raise ValueError(f"q must have length <= n={self.n} for this Linformer hook, got {n}")
        keep = key_keep(mask, n)
        if keep is not None:  # padded keys/values must not leak into the projections
            k = F.mask(k, keep)
            v = F.mask(v, keep)
        E = self._proj(self.E, n)
        Fm = E if self.sharing == "key-value" else self._proj(self.F, n)
        # (k, n) or per-head (H, k, n) broadcasts against (B, H, n, d)
        Kp, Vp = F.matmul(E, k), F.matmul(Fm, v)  # (B, H, k, d)
        return dense_attention_t(q, Kp, Vp)

    def attention_memory(self, n: int, num_heads: int = 1) -> int:
        """Floats of the ``n × k`` context map per head: ``H n k``."""
        return num_heads * n * self.k


class LinearAttentionHook:
    """Linear Transformer attention with ``φ = elu + 1`` as a hook, Survey §7.2.

    Non-causal (the classifier's encoder); padded keys are dropped from the sums.
    """

    name = "linear"

    def __init__(self, eps: float = 1e-6):
        self.eps = float(eps)

    def __call__(self, q, k, v, mask=None) -> Tensor:
        phq = F.elu(q) + 1.0
        phk = F.elu(k) + 1.0  # (B, H, n, d)
        keep = key_keep(mask, data_of(k).shape[2])
        if keep is not None:
            phk = F.mask(phk, keep)
        KV = F.matmul(F.transpose(phk, (0, 1, 3, 2)), v)  # (B, H, d, d_v)
        z = F.sum(phk, axis=2, keepdims=True)  # (B, H, 1, d)
        den = F.sum(phq * z, axis=-1, keepdims=True) + self.eps  # (B, H, n, 1)
        return F.matmul(phq, KV) / den

    def attention_memory(self, n: int, num_heads: int = 1, d_head: int = 16) -> int:
        """Floats of the ``d × d_v`` state per head (independent of ``n``)."""
        return num_heads * (d_head * d_head + d_head)


class LSHHook:
    """Reformer shared-QK LSH attention as a hook, Survey §7.1.

    Uses ``q`` as both queries and keys (``k`` is ignored: the shared-QK Transformer), keys
    normalised to unit length, and the hashed key set of
    :func:`~refimpl.attention.superlinear.lsh_attention_mask` (fresh random rotations per call
    from ``rng``, as in Reformer's training).
    """

    name = "lsh"

    def __init__(self, n_buckets: int = 4, n_hashes: int = 2, chunk_size=None, rng=None):
        self.n_buckets = n_buckets
        self.n_hashes = n_hashes
        self.chunk_size = chunk_size
        self.rng = as_rng(rng)

    def key_set(self, q) -> np.ndarray:
        n = data_of(q).shape[2]
        cs = self.chunk_size
        if cs is None or n % cs:
            cs = n // self.n_buckets if n >= self.n_buckets and n % self.n_buckets == 0 else n
        return lsh_attention_mask(data_of(q), self.n_buckets, self.n_hashes, cs, rng=self.rng)

    def __call__(self, q, k, v, mask=None) -> Tensor:
        m = self.key_set(q)
        kn = q / F.sqrt(F.sum(q * q, axis=-1, keepdims=True) + 1e-12)  # unit keys
        return dense_attention_t(q, kn, v, _combine(mask, m))

    def attention_memory(self, n: int, num_heads: int = 1) -> int:
        """Floats of chunked scores per round: ``H n_hashes n 2c`` with ``c = n / n_buckets``."""
        c = max(1, n // self.n_buckets)
        return num_heads * self.n_hashes * n * 2 * c


class BlockBERTHook:
    """BlockBERT block attention as a hook, Survey §7.1 (masked dense on the tape).

    ``permutations`` of shape ``(num_heads, n_blocks)`` (default identity). A sequence whose
    length ``n`` is not a multiple of ``n_blocks`` (a trimmed batch) uses blocks of
    ``ceil(n / n_blocks)`` positions, the last one shorter.
    """

    name = "blockbert"

    def __init__(self, n_blocks: int, permutations=None):
        self.n_blocks = check_int(n_blocks, "n_blocks", 1)
        self.permutations = None if permutations is None else np.asarray(permutations)

    def mask(self, n: int, num_heads: int) -> np.ndarray:
        if n % self.n_blocks == 0:
            return blockbert_mask(n, self.n_blocks, self.permutations, num_heads)[:, 0][None]
        size = -(-n // self.n_blocks)
        nb = -(-n // size)
        m = blockbert_mask(nb * size, nb, None if self.permutations is None else
                           self.permutations[..., :nb] % nb, num_heads)
        return m[:, 0, :n, :n][None]  # (1, H, n, n)

    def __call__(self, q, k, v, mask=None) -> Tensor:
        _, H, n, _ = data_of(q).shape
        return dense_attention_t(q, k, v, _combine(mask, self.mask(n, H)))


class SparseTransformerHook:
    """Sparse Transformer strided / fixed pattern as a hook, Survey §7.1 (masked dense).

    ``causal=False`` by default here (an encoder classifier); see
    :func:`~refimpl.attention.superlinear.sparse_transformer_mask`.
    """

    name = "sparse-transformer"

    def __init__(self, pattern: str = "strided", stride: int = 4, c: int = 1,
                 causal: bool = False, component=None):
        self.pattern, self.stride, self.c = pattern, stride, c
        self.causal, self.component = causal, component

    def __call__(self, q, k, v, mask=None) -> Tensor:
        n = data_of(q).shape[2]
        m = sparse_transformer_mask(n, self.pattern, min(self.stride, n), c=min(self.c,
                                    min(self.stride, n)), causal=self.causal,
                                    component=self.component)
        return dense_attention_t(q, k, v, _combine(mask, m))


class EfficientAttentionHook:
    """Efficient attention ρ_q(Q)(ρ_k(K)ᵀV) as a hook, Survey Eq. (69) (Shen et al.).

    Padded keys get ``-1e30`` before the softmax over positions, so their weight is zero.
    """

    name = "efficient"

    def __call__(self, q, k, v, mask=None) -> Tensor:
        keep = key_keep(mask, data_of(k).shape[2])
        if keep is not None:
            k = F.masked_fill(k, np.broadcast_to(keep == 0, data_of(k).shape), -1e30)
        rho_q = F.softmax(q, axis=-1)  # (B, H, n, d) over features
        rho_k = F.softmax(k, axis=-2)  # (B, H, m, d) over positions
        context = F.matmul(F.transpose(rho_k, (0, 1, 3, 2)), v)  # (B, H, d, d_v)
        return F.matmul(rho_q, context)


class StarHook:
    """Star-Transformer's satellite update (one cycle) as a hook, Survey §7.2.

    Each position attends to its ring neighbours, itself, its own embedding (its ``k, v``
    again, as in Guo et al.'s context ``[h_{i-1}; h_i; h_{i+1}; e_i; s]``) and a relay whose
    key and value are the mean over the real (unpadded) positions — dense attention over
    ``[k; k; mean(k)]`` under :func:`~refimpl.attention.linear.star_attention_mask`. Padded
    positions are dropped from the ring and the relay. Needs ``n >= 3``.
    """

    name = "star"

    def __call__(self, q, k, v, mask=None) -> Tensor:
        B, H, n, _ = data_of(q).shape
        keep = key_keep(mask, n)  # (B, 1, n, 1) or None
        if keep is None:
            ks = F.mean(k, axis=2, keepdims=True)  # (B, H, 1, d) relay
            vs = F.mean(v, axis=2, keepdims=True)
        else:
            cnt = np.maximum(keep.sum(axis=2, keepdims=True), 1.0)
            ks = F.sum(F.mask(k, keep), axis=2, keepdims=True) / cnt
            vs = F.sum(F.mask(v, keep), axis=2, keepdims=True) / cnt
        K_aug = F.concat([k, k, ks], axis=2)  # (B, H, 2n+1, d)
        V_aug = F.concat([v, v, vs], axis=2)
        M = star_attention_mask(n)[None, None]  # (1, 1, n, 2n+1)
        if keep is not None:
            kp = keep[..., 0].astype(bool)[:, :, None, :]  # (B, 1, 1, n)
            kp = np.concatenate([kp, kp, np.ones(kp.shape[:-1] + (1,), bool)], axis=-1)
            M = M & kp
        return dense_attention_t(q, K_aug, V_aug, M)
