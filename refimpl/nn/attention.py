"""Multi-head attention on the tape (Vaswani et al. 2017), with the two hooks later chapters
need: a replaceable attention function (§7's efficient variants) and a per-head gate ξ_h
(Survey Eq. (18), §2.4.1, Michel et al. 2019).

Mask conventions (the same as :mod:`refimpl.attention`)
-------------------------------------------------------
* ``mask``: boolean, broadcastable to ``(B, num_heads, n, m)``, **True = may attend** (PyTorch's
  ``scaled_dot_product_attention`` convention; note ``torch.nn.MultiheadAttention``'s boolean
  ``attn_mask`` is the opposite, True = blocked).
* ``key_padding_mask``: boolean ``(B, m)``, **True = padding** (PyTorch's convention): those keys
  are never attended to.

Both are combined into one "may attend" mask of shape ``(B, 1, n, m)`` before the attention
function is called. Query rows whose mask allows no key get a zero context (not NaN).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn import ops
from refimpl.nn.layers import Linear, check_features, linear_no_grad
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, as_tensor, data_of, is_grad_enabled
from refimpl.utils import as_rng, check_float, check_int

__all__ = ["MultiHeadAttention", "AttentionOutputs", "scaled_dot_product_attention",
           "combine_masks", "apply_head_gates"]

_NEG = -1e30  # finite "minus infinity": exp underflows to exactly 0 in float32 and float64


def scaled_dot_product_attention(q, k, v, mask=None, *, dropout: float = 0.0, rng=None,
                                 training: bool = False, return_weights: bool = False):
    """``softmax(q kᵀ / √d_head) v`` per head (Survey Eq. (68), §7.1).

    Parameters
    ----------
    q : Tensor of shape (B, H, n, d_head)
    k, v : Tensor of shape (B, H, m, d_head)
    mask : bool ndarray broadcastable to (B, H, n, m), optional
        True where query ``i`` may attend to key ``j``.
    dropout : float
        Dropout on the attention probabilities (training only).
    return_weights : bool
        Also return the probabilities (Tensor (B, H, n, m)).

    Returns
    -------
    Tensor of shape (B, H, n, d_head) [, Tensor of shape (B, H, n, m)]
    """
    d = data_of(q).shape[-1]
    S = F.matmul(q, F.transpose(k, (0, 1, 3, 2))) * float(1.0 / np.sqrt(d))  # (B, H, n, m)
    if mask is not None:
        allow = np.broadcast_to(np.asarray(data_of(mask), dtype=bool), S.shape)
        S = F.masked_fill(S, ~allow, _NEG)
        P = F.softmax(S, axis=-1)
        if not allow.any(axis=-1).all():  # rows with no allowed key -> zero weights
            P = F.mask(P, allow.any(axis=-1, keepdims=True).astype(S.dtype))
    else:
        P = F.softmax(S, axis=-1)
    Pd = F.dropout(P, dropout, rng=rng, training=training) if dropout else P
    out = F.matmul(Pd, v)  # (B, H, n, d_head)
    return (out, P) if return_weights else out


def _attention_no_grad(q, k, v, allow):
    """:func:`scaled_dot_product_attention` without dropout, on arrays, in place (inference).

    The same operations in the same order as the taped function (so the result is
    bit-identical), but the (B, H, n, m) scores are scaled, masked, exponentiated and
    normalised in the one array the product allocated, instead of five new ones.

    Parameters
    ----------
    q : ndarray of shape (B, H, n, d_head)
    k, v : ndarray of shape (B, H, m, d_head)
    allow : bool ndarray broadcastable to (B, H, n, m), or None

    Returns
    -------
    out : ndarray of shape (B, H, n, d_head)
    P : ndarray of shape (B, H, n, m)
    """
    d = q.shape[-1]
    S = ops.matmul_forward(q, np.swapaxes(k, -1, -2))[0]  # (B, H, n, m), a new array
    S *= S.dtype.type(1.0 / np.sqrt(d))  # as F.matmul(...) * float(1/√d)
    if allow is not None:
        allow = np.broadcast_to(np.asarray(allow, dtype=bool), S.shape)
        np.copyto(S, S.dtype.type(_NEG), where=~allow)  # masked_fill
    # softmax over the keys: z = S − max, e = exp(z), P = e / Σ e
    S -= S.max(axis=-1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    if allow is not None and not allow.any(axis=-1).all():  # rows with no allowed key -> 0
        S *= allow.any(axis=-1, keepdims=True).astype(S.dtype)
    return ops.matmul_forward(S, v)[0], S  # (B, H, n, d_head)


def combine_masks(mask, key_padding_mask, B: int, n: int, m: int):
    """One boolean "may attend" mask of shape (B or 1, H or 1, n, m), or None.

    Raises ``ValueError`` naming ``mask``/``key_padding_mask`` for wrong shapes or dtypes.
    """
    allow = None
    if mask is not None:
        mk = np.asarray(data_of(mask))
        if mk.dtype != bool:
            raise TypeError(f"mask must be a boolean array (True = may attend), got {mk.dtype}")
        try:
            mk = np.broadcast_to(mk, np.broadcast_shapes(mk.shape, (1, 1, n, m)))
        except ValueError:
            raise ValueError(f"mask must be broadcastable to (B, num_heads, {n}, {m}), "
                             f"got shape {mk.shape}") from None
        if mk.ndim > 4:
            raise ValueError(f"mask must have at most 4 dimensions, got shape {mk.shape}")
        allow = mk.reshape((1,) * (4 - mk.ndim) + mk.shape)
    if key_padding_mask is not None:
        kp = np.asarray(data_of(key_padding_mask))
        if kp.dtype != bool:
            raise TypeError(f"key_padding_mask must be a boolean array (True = padding), "
                            f"got {kp.dtype}")
        if kp.shape != (B, m):
            raise ValueError(f"key_padding_mask must have shape ({B}, {m}), got {kp.shape}")
        kpa = ~kp[:, None, None, :]  # (B, 1, 1, m)
        allow = kpa if allow is None else (allow & kpa)
    return allow


@dataclass
class AttentionOutputs:
    """The intermediates of one :class:`MultiHeadAttention` call, as tape Tensors.

    Returned by ``mha(x, return_attention=True)`` (and collected per layer by
    :class:`refimpl.nn.TransformerEncoder` with ``output_attentions=True``), so a loss on them —
    a distillation loss on a student's attention maps or value relations (Survey §4.4:
    TinyBERT, MiniLM, MobileBERT), a head-importance score (Eq. (18)) — backpropagates into the
    model that produced them.

    Attributes
    ----------
    probs : Tensor of shape (B, num_heads, n, m) or None
        Attention probabilities ``softmax(q kᵀ / √d_head)`` after masking (before dropout).
        None when a custom ``attention`` function replaced the default.
    context : Tensor of shape (B, num_heads, n, d_head)
        Each head's output ``Att_h = probs · v`` *before* the head gate ξ_h.
    query : Tensor of shape (B, num_heads, n, d_head)
    key, value : Tensor of shape (B, num_heads, m, d_head)
        The projected, head-split inputs of the attention.
    """

    probs: Tensor | None
    context: Tensor
    query: Tensor
    key: Tensor
    value: Tensor


def apply_head_gates(ctx: Tensor, gates, num_heads: int, batch: int,
                     name: str = "head_mask") -> Tensor:
    """Multiply each head's context by its gate ξ: ``(B, H, n, d_head) * ξ``.

    ``gates`` has shape ``(num_heads,)`` (one gate per head) or ``(batch, num_heads)`` (one per
    example and head: with ξ = 1 and ``requires_grad``, ``∂L/∂ξ_{b,h} = Att_h(x_b)ᵀ ∂L/∂Att_h``,
    the per-example term of Michel et al.'s head importance, Survey Eq. (18)). A Tensor gate
    receives a gradient; an array is a constant mask.
    """
    shape = tuple(np.shape(data_of(gates)))
    if shape not in ((num_heads,), (batch, num_heads)):
        raise ValueError(f"{name} must have shape ({num_heads},) or ({batch}, {num_heads}), "
                         f"got {shape}")
    if isinstance(gates, Tensor):
        return ctx * gates.reshape(-1, num_heads, 1, 1)  # ξ_h Att_h, gradient to ξ
    g = np.asarray(gates, dtype=ctx.dtype)
    if not np.all(np.isfinite(g)):
        raise ValueError(f"{name} must be finite")
    return F.mask(ctx, g.reshape(-1, num_heads, 1, 1))


class MultiHeadAttention(Module):
    """Multi-head (self- or cross-) attention with separate projections ``W_q, W_k, W_v, W_o``.

    .. math::

        \\mathrm{MHA}(x) = \\Big[\\xi_1 \\mathrm{Att}_1(x); \\dots; \\xi_H \\mathrm{Att}_H(x)
        \\Big] W_o^T + b_o,\\quad \\mathrm{Att}_h = \\mathrm{attention}(x W_{q,h}^T,
        x W_{k,h}^T, x W_{v,h}^T)

    with the gates ξ_h of Survey Eq. (18), §2.4.1 (all 1 by default). ``∂L/∂ξ_h`` is Michel et
    al.'s head importance; pass ``head_mask`` as a Tensor with ``requires_grad=True`` to get it.

    Parameters
    ----------
    d_model : int
    num_heads : int
        Must divide ``d_model`` unless ``d_head`` is given; ``d_head = d_model // num_heads``.
    bias : bool
        Biases in the four projections.
    attention : callable, optional
        ``attention(q, k, v, mask) -> Tensor`` on Tensors of shape (B, num_heads, n, d_head)
        (``k, v`` with length m), ``mask`` the combined boolean "may attend" mask
        broadcastable to (B, num_heads, n, m) or None. Default
        :func:`scaled_dot_product_attention`. §7 variants plug in here.
    rng : Generator or int, optional
    dropout : float
        Dropout on the attention probabilities (default attention only, training mode).
    d_head : int, optional (keyword-only)
        Width of each head, independent of ``d_model``: Q/K/V project ``d_model ->
        num_heads · d_head`` and ``W_o`` projects back to ``d_model``. A model whose pruned
        heads are sliced out (Survey §2.4.1, Michel et al. 2019) keeps ``H' < d_model / d_head``
        heads this way. Default ``d_model // num_heads``.

    Attributes
    ----------
    W_q, W_k, W_v : Linear (d_model -> num_heads · d_head)
    W_o : Linear (num_heads · d_head -> d_model)
    head_mask : array or Tensor of shape (num_heads,) or None
        Persistent gates ξ used when ``forward`` gets no ``head_mask`` (pruned heads = 0).

    The intermediates (probabilities, each head's context before ξ_h, queries, keys, values)
    are returned by ``forward(..., return_attention=True)`` as :class:`AttentionOutputs`, never
    kept on the module: call ``outputs.context.retain_grad()`` before ``backward()`` to read
    ``∂L/∂Att_h``, or pass a per-example gate Tensor ξ of ones, shape (B, num_heads), whose
    gradient is ``Att_hᵀ ∂L/∂Att_h`` (Eq. (18)).

    Under :func:`~refimpl.nn.no_grad` (inference) self-attention with plain :class:`Linear`
    projections computes ``q, k, v`` with one GEMM over the concatenated ``[W_q; W_k; W_v]``,
    and the default attention scales, masks and normalises its scores in place; the results
    equal the taped path's up to the order of the GEMM's sums (the attention itself is
    bit-identical).

    References
    ----------
    .. [1] A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    .. [2] P. Michel, O. Levy, G. Neubig, "Are Sixteen Heads Really Better than One?",
       NeurIPS 2019.
    """

    def __init__(self, d_model: int, num_heads: int, bias: bool = True,
                 attention: Callable | None = None, rng=None, dropout: float = 0.0, *,
                 d_head: int | None = None):
        self.d_model = check_int(d_model, "d_model", 1)
        self.num_heads = check_int(num_heads, "num_heads", 1)
        if d_head is None and d_model % num_heads:
            raise ValueError(f"num_heads must divide d_model, got d_model={d_model}, "
                             f"num_heads={num_heads}")
        if attention is not None and not callable(attention):
            raise TypeError(f"attention must be callable or None, got {type(attention).__name__}")
        self.d_head = d_model // num_heads if d_head is None else check_int(d_head, "d_head", 1)
        inner = self.num_heads * self.d_head  # d_model unless d_head is given
        rng = as_rng(rng)
        self.W_q = Linear(d_model, inner, bias, rng=rng)
        self.W_k = Linear(d_model, inner, bias, rng=rng)
        self.W_v = Linear(d_model, inner, bias, rng=rng)
        self.W_o = Linear(inner, d_model, bias, rng=rng)
        self.attention = attention
        self.dropout = check_float(dropout, "dropout", 0.0, 1.0, hi_open=True)
        self._rng = np.random.default_rng(rng.integers(2**63))
        self.head_mask = None

    def _heads(self, t: Tensor, B: int, n: int) -> Tensor:
        return t.reshape(B, n, self.num_heads, self.d_head).transpose(0, 2, 1, 3)  # (B,H,n,dh)

    def _fused_qkv(self, x: Tensor, B: int, n: int):
        """Self-attention under ``no_grad``: ``q, k, v`` from one GEMM ``x [W_q; W_k; W_v]ᵀ``.

        One (B·n, d_model) × (d_model, 3·H·d_head) product reads ``x`` once instead of three
        times. Only for three plain :class:`Linear` projections without a
        ``weight_transform`` (a replaced projection — CSR, k-bit packed, low rank — runs its own
        kernel in :meth:`forward`'s general path); otherwise None. The weights are concatenated
        per call (a copy of 3·H·d_head·d_model entries, small next to the product), so an
        in-place edit of ``W_q.W.data`` is always seen.

        Returns
        -------
        (q, k, v) : three ndarray views of shape (B, H, n, d_head), or None
        """
        lins = (self.W_q, self.W_k, self.W_v)
        if any(type(lin) is not Linear or lin.weight_transform is not None for lin in lins):
            return None
        if len({lin.b is None for lin in lins}) != 1:
            return None
        W = np.concatenate([lin.W.data for lin in lins])  # (3·H·dh, d_model)
        b = None if lins[0].b is None else np.concatenate([lin.b.data for lin in lins])
        y = linear_no_grad(x.data, W, b)  # (B, n, 3·H·dh)
        qkv = y.reshape(B, n, 3, self.num_heads, self.d_head).transpose(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]  # each (B, H, n, dh)

    def keep_heads(self, keep) -> "MultiHeadAttention":
        """A new attention holding only heads ``keep`` (the others sliced out, not gated).

        Survey §2.4.1 (Michel et al. 2019): the kept heads' rows of ``W_q, W_k, W_v`` (and
        biases) and columns of ``W_o`` are copied; ``b_o`` is unchanged. The result equals this
        module with the other heads gated to 0 (and any persistent ``head_mask`` restricted
        to ``keep``). ``self`` is not changed.

        Parameters
        ----------
        keep : sequence of int
            Distinct head indices in ``[0, num_heads)``, at least one.

        Returns
        -------
        MultiHeadAttention with ``num_heads = len(keep)``, the same ``d_head`` and ``d_model``.
        """
        if isinstance(keep, (str, bytes)) or not hasattr(keep, "__len__"):
            raise TypeError(f"keep must be a sequence of head indices, got {type(keep).__name__}")
        idx = np.asarray(keep)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
            raise ValueError(f"keep must be a non-empty 1-D sequence of ints, got {keep!r}")
        if idx.min() < 0 or idx.max() >= self.num_heads or np.unique(idx).size != idx.size:
            raise ValueError(f"keep must hold distinct heads in [0, {self.num_heads}), got "
                             f"{idx.tolist()}")
        dh = self.d_head
        cols = (idx[:, None] * dh + np.arange(dh)[None, :]).ravel()  # kept q/k/v features
        new = copy.copy(self)  # attention hook, dropout, rng, training flag shared
        new.num_heads = int(idx.size)
        for name in ("W_q", "W_k", "W_v"):
            old = getattr(self, name)
            lin = copy.copy(old)
            lin.W = Parameter(old.W.data[cols].copy())
            lin.b = None if old.b is None else Parameter(old.b.data[cols].copy())
            lin.out_features = cols.size
            setattr(new, name, lin)
        lin = copy.copy(self.W_o)
        lin.W = Parameter(self.W_o.W.data[:, cols].copy())
        lin.b = None if self.W_o.b is None else Parameter(self.W_o.b.data.copy())
        lin.in_features = cols.size
        new.W_o = lin
        if self.head_mask is not None:
            hm = self.head_mask
            new.head_mask = hm[idx] if isinstance(hm, Tensor) else np.asarray(hm)[idx].copy()
        return new

    def forward(self, x, kv=None, mask=None, key_padding_mask=None, head_mask=None, *,
                return_attention: bool = False):
        """Attend from ``x`` to ``kv`` (default ``x``: self-attention).

        Parameters
        ----------
        x : Tensor or ndarray of shape (B, n, d_model)
        kv : Tensor or ndarray of shape (B, m, d_model), optional
        mask : bool ndarray broadcastable to (B, num_heads, n, m), optional
            True = may attend (e.g. a causal mask ``tril``).
        key_padding_mask : bool ndarray of shape (B, m), optional
            True = padding key.
        head_mask : ndarray or Tensor of shape (num_heads,) or (B, num_heads), optional
            Gates ξ_h multiplying each head's context (Survey Eq. (18)); per example with
            shape (B, num_heads). Default: the persistent ``self.head_mask`` (None = all 1).
        return_attention : bool
            Also return the :class:`AttentionOutputs` (probabilities, per-head context,
            queries, keys, values) as tape Tensors.

        Returns
        -------
        Tensor of shape (B, n, d_model) [, AttentionOutputs]
        """
        x = check_features(x, "x", self.d_model, ndim=3)
        kv = x if kv is None else check_features(kv, "kv", self.d_model, ndim=3)
        B, n, _ = x.shape
        m = kv.shape[1]
        if kv.shape[0] != B:
            raise ValueError(f"kv must have batch size {B}, got shape {kv.shape}")
        allow = combine_masks(mask, key_padding_mask, B, n, m)
        # inference (nothing recorded): fused Q/K/V product and in-place attention, the same
        # numbers as the taped path below (tests/nn/test_attention_inference.py)
        inference = not is_grad_enabled()
        qkv = self._fused_qkv(x, B, n) if inference and kv is x else None
        if qkv is not None:
            q, k, v = (Tensor(t) for t in qkv)  # (B, H, n, dh)
        else:
            q = self._heads(self.W_q(x), B, n)   # (B, H, n, dh)
            k = self._heads(self.W_k(kv), B, m)  # (B, H, m, dh)
            v = self._heads(self.W_v(kv), B, m)  # (B, H, m, dh)
        if self.attention is None and inference and not (self.training and self.dropout):
            ctx, P = (Tensor(t) for t in _attention_no_grad(q.data, k.data, v.data, allow))
        elif self.attention is None:
            ctx, P = scaled_dot_product_attention(q, k, v, allow, dropout=self.dropout,
                                                  rng=self._rng, training=self.training,
                                                  return_weights=True)
        else:
            ctx = as_tensor(self.attention(q, k, v, allow))
            if ctx.shape != q.shape:
                raise ValueError(f"attention must return shape {q.shape}, got {ctx.shape}")
            P = None
        xi = self.head_mask if head_mask is None else head_mask
        gated = ctx if xi is None else apply_head_gates(ctx, xi, self.num_heads, B)
        out = self.W_o(gated.transpose(0, 2, 1, 3).reshape(B, n, self.num_heads * self.d_head))
        if return_attention:
            return out, AttentionOutputs(P, ctx, q, k, v)
        return out

    def __repr__(self) -> str:
        return (f"MultiHeadAttention(d_model={self.d_model}, num_heads={self.num_heads}, "
                f"d_head={self.d_head}, attention={getattr(self.attention, '__name__', self.attention)})")
