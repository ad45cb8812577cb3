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
                                (``causal=True``: the prefix-sum op
                                :data:`causal_linear_attention_t`)
:class:`LSHHook`                :func:`~refimpl.attention.superlinear.lsh_attention`
:class:`BlockBERTHook`          :func:`~refimpl.attention.superlinear.blockbert_attention`
:class:`SparseTransformerHook`  ``superlinear.sparse_transformer_attention``
:class:`EfficientAttentionHook` :func:`~refimpl.attention.linear.efficient_attention`,
                                Eq. (69)
:class:`StarHook`               :func:`~refimpl.attention.linear.star_attention` (one cycle)
:class:`SinkhornHook`           :func:`~refimpl.attention.linear.sinkhorn_attention`
                                (Sinkhorn and SortCut; a :class:`~refimpl.nn.Module`
                                owning the sorting network ``W_sort`` when learned)
==============================  =========================================================

The sparse hooks (Longformer, LSH) train through masked dense attention by default: the same
function and gradients as the sparse computation, but with the ``n × n`` scores in memory. Their
``O(n·w)`` / ``O(n log n)`` forward passes are the array-level functions and kernels; the
memory the sparse forward needs is reported by :meth:`attention_memory`.
``LongformerHook(..., fused=True)`` trains through :data:`sliding_window_attention_t`, a
custom op whose forward and backward kernels
(:func:`~refimpl.kernels.attention.sliding_window_attention_fwd` / ``_bwd``) never form the
``n × n`` matrix (``causal=True``: Longformer's left-only window for language models, the same
kernels with the keys ``j <= i`` only); ``LinearAttentionHook(causal=True)`` trains through
:data:`causal_linear_attention_t`, whose forward and backward are prefix sums
(:func:`~refimpl.kernels.attention.causal_linear_attention` / ``_bwd``). The Sinkhorn hook
never forms an ``n × n`` matrix on the tape: its block sort, Sinkhorn balancing and block
attention are all small tape ops.
"""

from __future__ import annotations

import numpy as np

from refimpl.attention.dense import dense_attention_t
from refimpl.attention.linear import longformer_mask, star_attention_mask
from refimpl.attention.superlinear import (blockbert_mask, lsh_attention_mask,
                                           sparse_transformer_mask)
from refimpl.kernels._backend import resolve_backend
from refimpl.kernels.attention import (causal_linear_attention, causal_linear_attention_bwd,
                                       sliding_window_attention_bwd,
                                       sliding_window_attention_fwd)
from refimpl.nn import functional as F
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, custom_op, data_of
from refimpl.utils import as_rng, check_array, check_choice, check_float, check_int

__all__ = ["DenseHook", "LongformerHook", "LinformerHook", "LinearAttentionHook", "LSHHook",
           "BlockBERTHook", "SparseTransformerHook", "EfficientAttentionHook", "StarHook",
           "SinkhornHook", "key_keep", "sliding_window_attention_t",
           "causal_linear_attention_t"]


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


def _swa_forward(q, k, v, *, window, dilation, global_idx, keep, backend, causal=False):
    out, lse = sliding_window_attention_fwd(q, k, v, window, dilation, global_idx, keep,
                                            causal=causal, backend=backend)
    return out, (q, k, v, out, lse, window, dilation, global_idx, keep, causal, backend)


def _swa_backward(dout, cache):
    q, k, v, out, lse, window, dilation, global_idx, keep, causal, backend = cache
    return sliding_window_attention_bwd(dout, q, k, v, out, lse, window, dilation, global_idx,
                                        keep, causal=causal, backend=backend)


#: Differentiable Longformer attention on the tape, ``(q, k, v) -> (B, H, n, d_v)`` with
#: keywords ``window, dilation, global_idx, keep, backend`` and ``causal`` (default False:
#: keys ``j <= i`` only when True): forward
#: :func:`~refimpl.kernels.attention.sliding_window_attention_fwd` (saving the output and the
#: row log-sum-exp), backward :func:`~refimpl.kernels.attention.sliding_window_attention_bwd`;
#: neither forms the ``n × n`` matrix. Survey §7.2.
sliding_window_attention_t = custom_op(_swa_forward, _swa_backward,
                                       name="sliding_window_attention")


class LongformerHook:
    """Longformer sliding window (+ dilation, + global tokens) as a hook, Survey §7.2.

    Parameters
    ----------
    window, dilation, global_idx
        As in :func:`~refimpl.attention.linear.longformer_attention`. Negative entries of
        ``global_idx`` count from the end (``-1`` is the last position, e.g. the query token
        of a read-out-at-the-end classifier).
    fused : bool
        ``False`` (default): masked dense attention on the tape (``n × n`` scores and weights).
        ``True``: the fused op :data:`sliding_window_attention_t`, whose forward and backward
        kernels never form the ``n × n`` matrix (same outputs and gradients to ~1e-15 in
        float64, tested). The fused path honours key-padding masks only (a mask whose rows
        differ between queries raises), and with ``causal=True`` also the causal mask
        ``tril(n)`` combined with key padding (what
        :class:`~refimpl.nn.TransformerLanguageModel` passes).
    backend : {"numba", "numpy", None}
        Kernel backend of the fused path.
    causal : bool
        Left-only attention (keys ``j <= i``), Longformer's autoregressive language-model
        setting (Beltagy et al. 2020, §4: text8 / enwik8): the window's right half is dropped,
        a global key ``g`` is seen only by queries ``i >= g`` and a global query only sees
        keys ``j <= g``. Fused: the kernels' ``causal=True`` (still ``O(n w)``); masked dense:
        ``tril(n)`` joins :meth:`mask`. The flag, not the mask, decides (the hook never infers
        causality from the mask it is given).
    """

    name = "longformer"

    def __init__(self, window: int, dilation: int = 1, global_idx=(), fused: bool = False,
                 backend=None, causal: bool = False):
        if not isinstance(causal, (bool, np.bool_)):
            raise TypeError(f"causal must be a bool, got {causal!r}")
        self.window = int(window)
        self.dilation = int(dilation)
        self.global_idx = tuple(int(g) for g in global_idx)
        self.fused = bool(fused)
        self.backend = backend
        self.causal = bool(causal)

    def mask(self, n: int) -> np.ndarray:
        """The ``(n, n)`` attended set: :func:`~refimpl.attention.linear.longformer_mask`
        (``∧ tril(n)`` when causal)."""
        g = [gi % n for gi in self.global_idx]
        M = longformer_mask(n, min(self.window, n - n % 2), self.dilation, g)
        return np.tril(M) if self.causal else M

    def __call__(self, q, k, v, mask=None) -> Tensor:
        n = data_of(q).shape[2]
        if not self.fused:
            return dense_attention_t(q, k, v, _combine(mask, self.mask(n)))
        keep = None
        if mask is not None:
            m = np.asarray(data_of(mask), dtype=bool)
            keep = m.any(axis=-2)  # (..., n): keys some query may attend to
            if m.shape[-2] != 1:
                full = np.broadcast_to(m, m.shape[:-2] + (m.shape[-2], n))
                padding = np.broadcast_to(keep[..., None, :], full.shape)
                if np.array_equal(full, padding):
                    pass  # a key-padding mask (every query sees the same keys)
                elif self.causal and m.shape[-2] == n and np.array_equal(
                        full, padding & np.tril(np.ones((n, n), dtype=bool))):
                    pass  # the causal mask (and key padding): what the causal LM passes
                elif self.causal:
                    raise ValueError("mask must be a key-padding mask, optionally combined "
                                     "with the causal mask tril(n), with fused=True; use "
                                     "fused=False for general masks")
                else:
                    raise ValueError("mask must be a key-padding mask (the same keys for every "
                                     "query) with fused=True; use fused=False for general "
                                     "masks (a causal mask? use causal=True)")
        g = tuple(gi % n for gi in self.global_idx)
        return sliding_window_attention_t(q, k, v, window=min(self.window, n - n % 2),
                                          dilation=self.dilation, global_idx=g, keep=keep,
                                          backend=self.backend, causal=self.causal)

    def attention_memory(self, n: int, num_heads: int = 1) -> int:
        """Floats of attention scores the sparse computation evaluates per sequence:
        ``H (n (w + 1 + g) + g n)`` (a window of ``w + 1`` keys and ``g`` global keys per
        query, plus ``g`` global rows of ``n``); causal: ``H (n (w/2 + 1 + g) + g n)`` (the
        left half of the window; an upper bound on the global parts).

        With ``fused=True`` training holds no more than that: the tape keeps only the output
        and the row log-sum-exp (``H n (d_v + 1)``), the backward pass recomputes the band
        scores 64 rows at a time (``O(w)`` scratch per Numba task) and the global ones as
        ``O(g n)`` products. The default masked-dense path instead keeps the ``H n²`` scores
        and weights on the tape.
        """
        g = len(self.global_idx)
        w = self.window // 2 if self.causal else self.window
        return num_heads * (n * (w + 1 + g) + g * n)


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


def _cla_forward(phq, phk, v, *, eps, backend):
    return causal_linear_attention(phq, phk, v, eps=eps, backend=backend), \
        (phq, phk, v, eps, backend)


def _cla_backward(dout, cache):
    phq, phk, v, eps, backend = cache
    return causal_linear_attention_bwd(dout, phq, phk, v, eps=eps, backend=backend)


#: Differentiable causal linear attention on the tape, ``(phiQ, phiK, V) -> (B, H, n, d_v)``
#: with keywords ``eps, backend`` (Katharopoulos et al., 2020; Survey §7.2): forward
#: :func:`~refimpl.kernels.attention.causal_linear_attention` (prefix sums), backward
#: :func:`~refimpl.kernels.attention.causal_linear_attention_bwd` (a forward and a reverse
#: prefix sum); both ``O(n d d_v)``, neither forms the ``n × n`` matrix, and the tape keeps only
#: the inputs. ``phiQ``, ``phiK`` are the feature-mapped (non-negative) queries and keys.
causal_linear_attention_t = custom_op(_cla_forward, _cla_backward,
                                      name="causal_linear_attention")


def _linear_keep(mask, n: int, causal: bool, nq: int | None = None):
    """The ``(B|1, 1|H, n, 1)`` key-keep array of a mask :class:`LinearAttentionHook` accepts
    (None when every key is kept), or ValueError naming ``mask``."""
    if mask is None:
        return None
    nq = n if nq is None else nq
    m = np.asarray(data_of(mask), dtype=bool)
    if m.ndim < 2 or m.ndim > 4 or m.shape[-2:] not in ((1, n), (nq, n)):
        raise ValueError(f"mask must be broadcastable to (B, H, {nq}, {n}), got {m.shape}")
    full = np.broadcast_to(m, m.shape[:-2] + (nq, n))
    keep = full.any(axis=-2)  # (..., n): keys some query may attend to
    padding = np.broadcast_to(keep[..., None, :], full.shape)
    if np.array_equal(full, padding):  # a key-padding mask (every query sees the same keys)
        pass
    elif causal and np.array_equal(full, padding & np.tril(np.ones((n, n), dtype=bool))):
        pass  # the causal mask (and key padding): what TransformerLanguageModel passes
    elif causal:
        raise ValueError("mask must be a key-padding mask, optionally combined with the causal "
                         "mask tril(n) (keys j <= i), for LinearAttentionHook(causal=True); "
                         "other masks (windows, blocks, arbitrary patterns) are not supported "
                         "by the prefix-sum form")
    else:
        raise ValueError("mask must be a key-padding mask (the same keys for every query) for "
                         "LinearAttentionHook(causal=False); its rows differ between queries "
                         "(a causal mask? use LinearAttentionHook(causal=True))")
    if keep.all():
        return None
    return keep[..., :, None].astype(np.float64)  # (..., n, 1)


class LinearAttentionHook:
    """Linear Transformer attention with ``φ = elu + 1`` as a hook, Survey §7.2.

    Katharopoulos et al. (2020), "Transformers are RNNs":
    :math:`o_i = \\phi(q_i)^T\\sum_j \\phi(k_j)v_j^T / (\\phi(q_i)^T\\sum_j\\phi(k_j)
    + \\varepsilon)` with the sums over every ``j`` (``causal=False``, an encoder: two
    :mod:`refimpl.nn.functional` matmuls) or over ``j <= i`` (``causal=True``, a decoder or
    language model: :data:`causal_linear_attention_t`, the prefix-sum kernels forward and
    backward, ``O(n d d_v)`` time and no ``n × n`` matrix in either pass).

    Parameters
    ----------
    eps : float
        Added to the denominator (finite, ``>= 0``; 1e-6 as in the authors' code).
    causal : bool
        Attend to keys ``j <= i`` only. The flag, not the mask, decides: the hook never infers
        causality from the mask it is given.
    backend : {"numba", "numpy", None}
        Kernel backend of the causal path.

    Notes
    -----
    Masks. ``q, k, v`` are ``(B, H, n, d)`` (self-attention: one length ``n``). Supported:
    ``None``; a key-padding mask (every query row the same, e.g. the ``(B, 1, 1, n)`` mask
    :class:`~refimpl.nn.MultiHeadAttention` builds from ``key_padding_mask``); and, with
    ``causal=True``, the causal mask ``tril(n)`` combined with key padding (what
    :class:`~refimpl.nn.TransformerLanguageModel` passes) or alone. Padded keys are removed
    from both sums (their ``φ(k_j)`` is zeroed), which is exact. A query left without any key
    gets a zero output (as :func:`~refimpl.attention.dense.dense_attention_t`); with ``eps = 0``
    that would be 0/0, so ``eps = 0`` with such a mask raises. ``causal=True`` with a
    key-padding-only mask attends to the kept keys ``j <= i``. Any other mask (rows that
    differ between queries in another way; a causal mask given to ``causal=False``) raises a
    ``ValueError`` naming ``mask``: it would otherwise be ignored silently.

    References
    ----------
    .. [1] A. Katharopoulos, A. Vyas, N. Pappas, F. Fleuret, "Transformers are RNNs: Fast
       Autoregressive Transformers with Linear Attention", ICML 2020.
    """

    name = "linear"

    def __init__(self, eps: float = 1e-6, causal: bool = False, backend=None):
        self.eps = check_float(eps, "eps", 0.0)
        if not isinstance(causal, (bool, np.bool_)):
            raise TypeError(f"causal must be a bool, got {causal!r}")
        self.causal = bool(causal)
        self.backend = resolve_backend(backend) if backend is not None else None
        if self.causal:
            self.name = "linear-causal"

    def __call__(self, q, k, v, mask=None) -> Tensor:
        n = data_of(k).shape[2]
        if self.causal and (data_of(q).shape[2] != n or data_of(v).shape[2] != n):
            raise ValueError(f"q and v must have the length n={n} of k for causal linear "
                             f"attention (self-attention), got {data_of(q).shape[2]} and "
                             f"{data_of(v).shape[2]}")
        keep = _linear_keep(mask, n, self.causal, data_of(q).shape[2])
        if keep is not None and self.eps == 0:
            kk = keep[..., 0] > 0  # (..., n)
            empty = ~kk[..., 0] if self.causal else ~kk.any(axis=-1)
            if np.any(empty):
                raise ValueError("eps must be > 0 when the mask leaves a query without keys "
                                 "(its output would be 0/0)")
        phq = F.elu(q) + 1.0
        phk = F.elu(k) + 1.0  # (B, H, n, d)
        if keep is not None:
            phk = F.mask(phk, keep)
        if self.causal:
            return causal_linear_attention_t(phq, phk, v, eps=self.eps, backend=self.backend)
        KV = F.matmul(F.transpose(phk, (0, 1, 3, 2)), v)  # (B, H, d, d_v)
        z = F.sum(phk, axis=2, keepdims=True)  # (B, H, 1, d)
        den = F.sum(phq * z, axis=-1, keepdims=True) + self.eps  # (B, H, n, 1)
        return F.matmul(phq, KV) / den

    def attention_memory(self, n: int, num_heads: int = 1, d_head: int = 16) -> int:
        """Floats of the ``d × d_v`` state per head (independent of ``n``): ``H (d² + d)``.

        Causal training keeps no more on the tape than the inputs; the backward pass holds the
        state and the reverse state (``2 (d² + d)``) and ``n (d_v + 1)`` floats of scratch.
        """
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


class SinkhornHook(Module):
    """Sparse Sinkhorn attention and SortCut as a differentiable hook module, Survey §7.2.

    The tape twin of :func:`~refimpl.attention.linear.sinkhorn_attention`: the sequence is cut
    into ``n_blocks`` blocks of ``b = n / n_blocks`` positions; a meta sorting network scores
    block pairs from block means, ``R = relu(k̄ W_sort)`` (Tay et al.'s one-layer sorting
    network, ``learned=True``) or the parameter-free ``R_ij = q̄_i · k̄_j / √d``
    (``learned=False``); log-domain Sinkhorn balancing turns ``R / temperature`` into a soft
    block permutation ``S`` (``n_iters`` alternating row/column ``log_softmax`` steps, exactly
    :func:`~refimpl.attention.linear.sinkhorn_normalize`); the sorted key/value blocks
    ``K̃_[i] = Σ_j S_ij K_[j]`` are one ``(nb × nb) @ (nb × b d)`` matmul; then each query block
    attends to its own block and its sorted block (``2b`` keys), or, with ``sortcut=k``, every
    query attends to the first ``k`` sorted blocks (``k b`` keys). Every step is a
    :mod:`refimpl.nn.functional` op, so gradients reach ``q``, ``k``, ``v`` *through the sort*
    and ``W_sort``; no ``n × n`` matrix is formed.

    Parameters
    ----------
    n_blocks : int
        Number of blocks; must divide the sequence length ``n`` at call time.
    sortcut : int, optional
        SortCut budget ``k`` in ``[1, n_blocks]`` (``None``: Sinkhorn local + sorted attention).
    n_iters : int
        Sinkhorn iterations (>= 0).
    temperature : float
        > 0; smaller → closer to a hard permutation.
    learned : bool
        Own the sorting network ``W_sort`` (a :class:`~refimpl.nn.Parameter` of shape
        ``(d_head, n_blocks)``, initialised ``N(0, 1/d_head)``); needs ``d_head``.
    d_head : int, optional
        Head width (required when ``learned``).
    sort_matrix : ndarray of shape (n_blocks, n_blocks) or (B, H, n_blocks, n_blocks), optional
        A constant block permutation (e.g. a hard permutation matrix) used instead of the
        Sinkhorn one (then ``learned`` must be False).
    rng : Generator or int, optional
        Seeds ``W_sort``.

    Notes
    -----
    Padding. Only the key-padding part of the hook's ``mask`` is used (:func:`key_keep`; in
    self-attention the same positions are taken as padded queries). Padded keys and values are
    zeroed before sorting, block means ``q̄, k̄`` average the real positions only (an all-padded
    block has mean 0), local attention skips padded keys, and a sorted key slot ``s`` of block
    ``i`` enters the softmax with weight ``w_is = Σ_j S_ij keep_js / Σ_j S_ij``, the share of
    real keys mixed into it (``+ log w`` on its score; ``w = 0`` removes it). With a hard
    permutation ``S`` this is exactly "attend to the real keys of blocks {i, π(i)}"; rows left
    without any key give a zero context, as in :func:`~refimpl.attention.dense.dense_attention_t`.
    Without padding (or with an all-True mask) the output equals
    :func:`~refimpl.attention.linear.sinkhorn_attention` (tested to ~1e-15 in float64).

    References
    ----------
    .. [1] Y. Tay, D. Bahri, L. Yang, D. Metzler, D.-C. Juan, "Sparse Sinkhorn Attention",
       ICML 2020.
    """

    name = "sinkhorn"

    def __init__(self, n_blocks: int, sortcut: int | None = None, *, n_iters: int = 8,
                 temperature: float = 1.0, learned: bool = False, d_head: int | None = None,
                 sort_matrix=None, rng=None):
        super().__init__()
        self.n_blocks = check_int(n_blocks, "n_blocks", 1)
        self.sortcut = None if sortcut is None else check_int(sortcut, "sortcut", 1,
                                                              self.n_blocks)
        self.n_iters = check_int(n_iters, "n_iters", 0)
        self.temperature = check_float(temperature, "temperature", 0.0, lo_open=True)
        self.learned = bool(learned)
        self.sort_matrix = None
        if sort_matrix is not None:
            if self.learned:
                raise ValueError("sort_matrix replaces the sorting network: pass learned=False "
                                 "with a sort_matrix")
            S = check_array(sort_matrix, "sort_matrix", ndim=(2, 4))
            if S.shape[-2:] != (self.n_blocks, self.n_blocks):
                raise ValueError(f"sort_matrix must be ({self.n_blocks}, {self.n_blocks}) in "
                                 f"its last two axes, got {S.shape}")
            self.sort_matrix = S.copy()
        if self.learned:
            if d_head is None:
                raise ValueError("d_head is required when learned=True (W_sort has shape "
                                 "(d_head, n_blocks))")
            d_head = check_int(d_head, "d_head", 1)
            self.W_sort = Parameter(as_rng(rng).standard_normal((d_head, self.n_blocks))
                                    / np.sqrt(d_head))

    # ------------------------------------------------------------------ pieces
    def _blocks(self, n: int) -> int:
        if self.n_blocks > n or n % self.n_blocks:
            raise ValueError(f"n_blocks must divide the sequence length n={n}, "
                             f"got {self.n_blocks}")
        return n // self.n_blocks

    def sort_matrix_t(self, q, k, keep=None) -> Tensor:
        """The soft block permutation ``S`` as a Tensor of shape (B, H, n_blocks, n_blocks).

        Mirrors :func:`~refimpl.attention.linear.sinkhorn_sort_matrix` (block means over the
        real positions when ``keep``, a ``(B|1, H|1, n, 1)`` float array, marks padding).
        """
        B, H, n, d = data_of(k).shape
        nb = self.n_blocks
        b = self._blocks(n)
        if keep is None:
            kbar = F.mean(F.reshape(k, (B, H, nb, b, d)), axis=3)  # (B, H, nb, d)
        else:
            kb = keep.reshape(keep.shape[:2] + (nb, b, 1))  # (B|1, H|1, nb, b, 1)
            cnt = np.maximum(kb.sum(axis=3), 1.0)  # (B|1, H|1, nb, 1)
            kbar = F.sum(F.mask(F.reshape(k, (B, H, nb, b, d)), kb), axis=3) / cnt
        if self.learned:
            if self.W_sort.shape[0] != d:
                raise ValueError(f"q, k must have d_head={self.W_sort.shape[0]} (W_sort's rows) "
                                 f"for this Sinkhorn hook, got {d}")
            # Tay et al.'s meta sorting network: R = relu(k̄ W_sort)
            R = F.relu(F.matmul(kbar, self.W_sort))  # (B, H, nb, nb)
        else:
            if keep is None:
                qbar = F.mean(F.reshape(q, (B, H, nb, b, d)), axis=3)  # (B, H, nb, d)
            else:
                qbar = F.sum(F.mask(F.reshape(q, (B, H, nb, b, d)), kb), axis=3) / cnt
            # R_ij = q̄_i · k̄_j / √d
            R = F.matmul(qbar, F.transpose(kbar, (0, 1, 3, 2))) / np.sqrt(d)  # (B, H, nb, nb)
        # log-domain Sinkhorn: L ← L − lse_rows(L); L ← L − lse_cols(L)  (Tay et al., Eq. 6)
        L = R / self.temperature
        for _ in range(self.n_iters):
            L = F.log_softmax(L, axis=-1)  # rows sum to 1
            L = F.log_softmax(L, axis=-2)  # columns sum to 1
        return F.exp(L)

    def __call__(self, q, k, v, mask=None) -> Tensor:
        return self.forward(q, k, v, mask)

    def forward(self, q, k, v, mask=None) -> Tensor:
        B, H, n, d = data_of(q).shape
        if data_of(k).shape[2] != n or data_of(v).shape[2] != n:
            raise ValueError(f"k and v must have the length n={n} of q (self-attention), got "
                             f"{data_of(k).shape[2]} and {data_of(v).shape[2]}")
        dv = data_of(v).shape[-1]
        nb = self.n_blocks
        b = self._blocks(n)
        keep = key_keep(mask, n)  # (B|1, 1, n, 1) or None
        if keep is not None and keep.all():
            keep = None
        if keep is not None:
            keep = keep.reshape((1,) * (4 - keep.ndim) + keep.shape)  # (B|1, H|1, n, 1)
        if keep is not None:
            k = F.mask(k, keep)  # padded keys/values must not leak into the sorted blocks
            v = F.mask(v, keep)
        if self.sort_matrix is None:
            S = self.sort_matrix_t(q, k, keep)  # (B, H, nb, nb)
        else:
            S = Tensor(np.broadcast_to(self.sort_matrix, (B, H, nb, nb)))
        kc = nb if self.sortcut is None else self.sortcut
        if kc < nb:  # SortCut needs only the first k sorted blocks: O(k n d)
            S = S[:, :, :kc]  # (B, H, k, nb)
        Kb = F.reshape(k, (B, H, nb, b * d))  # (B, H, nb, b d)
        Vb = F.reshape(v, (B, H, nb, b * dv))
        # K̃_[i] = Σ_j S_ij K_[j]
        Ks = F.reshape(F.matmul(S, Kb), (B, H, kc, b, d))  # (B, H, kc, b, d)
        Vs = F.reshape(F.matmul(S, Vb), (B, H, kc, b, dv))
        logw = allow_s = None
        if keep is not None:  # share of real keys in each sorted slot
            Sd = data_of(S)
            kb = np.broadcast_to(keep.reshape(keep.shape[:2] + (nb, b)), (B, H, nb, b))
            num = F.matmul(S, kb)  # (B, H, kc, b)
            w = num / F.sum(S, axis=-1, keepdims=True)
            allow_s = (Sd @ kb) > 0  # (B, H, kc, b)
            logw = F.log(F.where(allow_s, w, np.ones(allow_s.shape)))
        scale = 1.0 / np.sqrt(d)
        if self.sortcut is None:
            Qb = F.reshape(q, (B, H, nb, b, d))  # (B, H, nb, b, d)
            Kc = F.concat([F.reshape(k, (B, H, nb, b, d)), Ks], axis=3)  # (B, H, nb, 2b, d)
            Vc = F.concat([F.reshape(v, (B, H, nb, b, dv)), Vs], axis=3)
            Sc = F.matmul(Qb, F.transpose(Kc, (0, 1, 2, 4, 3))) * scale  # (B, H, nb, b, 2b)
            if keep is None:
                P = F.softmax(Sc, axis=-1)
            else:
                loc = np.broadcast_to(keep.reshape(keep.shape[:2] + (nb, 1, b)) > 0,
                                      (B, H, nb, 1, b))
                allow = np.concatenate([loc, allow_s[:, :, :, None, :]], axis=-1)
                bias = F.concat([np.zeros((B, H, nb, 1, b)), F.reshape(logw, (B, H, nb, 1, b))],
                                axis=-1)  # (B, H, nb, 1, 2b)
                allow = np.broadcast_to(allow, Sc.shape)
                Sc = F.masked_fill(Sc + bias, ~allow, -1e30)
                P = F.mask(F.softmax(Sc, axis=-1), allow.any(axis=-1, keepdims=True)
                           .astype(Sc.dtype))  # empty rows -> 0
            return F.reshape(F.matmul(P, Vc), (B, H, n, dv))  # (B, H, n, d_v)
        Kt = F.reshape(Ks, (B, H, kc * b, d))  # first k sorted blocks (B, H, kb, d)
        Vt = F.reshape(Vs, (B, H, kc * b, dv))
        Sc = F.matmul(q, F.transpose(Kt, (0, 1, 3, 2))) * scale  # (B, H, n, kb)
        if keep is None:
            P = F.softmax(Sc, axis=-1)
        else:
            allow = np.broadcast_to(allow_s.reshape(B, H, 1, kc * b), Sc.shape)
            Sc = F.masked_fill(Sc + F.reshape(logw, (B, H, 1, kc * b)), ~allow, -1e30)
            P = F.mask(F.softmax(Sc, axis=-1), allow.any(axis=-1, keepdims=True)
                       .astype(Sc.dtype))
        return F.matmul(P, Vt)  # (B, H, n, d_v)

    def attention_memory(self, n: int, num_heads: int = 1) -> int:
        """Floats of scores one sequence holds: ``H (2 n b + nb²)`` for Sinkhorn attention
        (each query scores its own and its sorted block, ``b = n / nb``, plus the ``nb × nb``
        sort matrix), ``H (n k b + nb²)`` for SortCut with budget ``k``."""
        b = self._blocks(check_int(n, "n", 1))
        per_query = 2 * b if self.sortcut is None else self.sortcut * b
        return num_heads * (n * per_query + self.n_blocks ** 2)
