"""Transformer encoder layer on the tape, matching ``torch.nn.TransformerEncoderLayer``
(post-norm by default, ``norm_first=True`` for pre-norm), with the gates later chapters prune:
per-head ξ_h in the attention (Survey Eq. (18), §2.4.1) and a per-hidden-unit mask of the
feed-forward block (§2.2, §2.4).

Post-norm (Vaswani et al. 2017; PyTorch's default)::

    x = LN1(x + Drop(MHA(x)))
    x = LN2(x + Drop(FFN(x))),      FFN(x) = W_2 Drop(act(W_1 x + b_1) ⊙ m) + b_2

Pre-norm (``norm_first=True``)::

    x = x + Drop(MHA(LN1(x)))
    x = x + Drop(FFN(LN2(x)))

``m`` is ``ffn_mask`` (all ones by default).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.attention import MultiHeadAttention
from refimpl.nn.layers import LayerNorm, Linear, check_features
from refimpl.nn.module import Module
from refimpl.nn.tensor import Tensor, data_of
from refimpl.utils import as_rng, check_choice, check_float, check_int

__all__ = ["TransformerEncoderLayer"]


class TransformerEncoderLayer(Module):
    """One encoder block: self-attention and a two-layer feed-forward network.

    Parameters
    ----------
    d_model, num_heads, d_ff : int
    dropout : float
        Dropout after attention, inside the FFN and after the FFN (as PyTorch; training only).
    activation : {"gelu", "relu"}
        Default "gelu" (exact erf GELU); PyTorch's default is "relu".
    norm_first : bool
        Pre-norm instead of post-norm.
    attention : callable, optional
        Passed to :class:`MultiHeadAttention` (§7 variants).
    layer_norm_eps : float
    rng : Generator or int, optional

    Attributes
    ----------
    self_attn : MultiHeadAttention
    linear1 : Linear (d_model -> d_ff)
    linear2 : Linear (d_ff -> d_model)
    norm1, norm2 : LayerNorm
    ffn_mask : ndarray or Tensor of shape (d_ff,) or None
        Persistent per-hidden-unit gate of the FFN (0 = pruned unit), used when ``forward``
        gets no ``ffn_mask``. A Tensor with ``requires_grad`` receives a gradient.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 activation: str = "gelu", norm_first: bool = False,
                 attention: Callable | None = None, layer_norm_eps: float = 1e-5, rng=None):
        self.d_model = check_int(d_model, "d_model", 1)
        self.d_ff = check_int(d_ff, "d_ff", 1)
        self.dropout = check_float(dropout, "dropout", 0.0, 1.0, hi_open=True)
        self.activation = check_choice(activation, "activation", ("gelu", "relu"))
        self.norm_first = bool(norm_first)
        rng = as_rng(rng)
        self.self_attn = MultiHeadAttention(d_model, num_heads, attention=attention,
                                            dropout=dropout, rng=rng)
        self.linear1 = Linear(d_model, d_ff, rng=rng)
        self.linear2 = Linear(d_ff, d_model, rng=rng)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.ffn_mask = None
        self._rng = np.random.default_rng(rng.integers(2**63))

    def _drop(self, x):
        return F.dropout(x, self.dropout, rng=self._rng, training=self.training)

    def _ffn(self, x, ffn_mask):
        h = self.linear1(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)  # (B, n, d_ff)
        m = self.ffn_mask if ffn_mask is None else ffn_mask
        if m is not None:
            if tuple(np.shape(data_of(m))) != (self.d_ff,):
                raise ValueError(f"ffn_mask must have shape ({self.d_ff},), "
                                 f"got {np.shape(data_of(m))}")
            h = h * m if isinstance(m, Tensor) else F.mask(h, np.asarray(m, dtype=h.dtype))
        return self.linear2(self._drop(h))

    def forward(self, x, mask=None, key_padding_mask=None, head_mask=None,
                ffn_mask=None) -> Tensor:
        """Apply the block.

        Parameters
        ----------
        x : Tensor or ndarray of shape (B, n, d_model)
        mask : bool ndarray broadcastable to (B, num_heads, n, n), optional
            True = may attend.
        key_padding_mask : bool ndarray of shape (B, n), optional
            True = padding.
        head_mask : ndarray or Tensor of shape (num_heads,), optional
        ffn_mask : ndarray or Tensor of shape (d_ff,), optional

        Returns
        -------
        Tensor of shape (B, n, d_model)
        """
        x = check_features(x, "x", self.d_model, ndim=3)
        kw = dict(mask=mask, key_padding_mask=key_padding_mask, head_mask=head_mask)
        if self.norm_first:
            x = x + self._drop(self.self_attn(self.norm1(x), **kw))
            return x + self._drop(self._ffn(self.norm2(x), ffn_mask))
        x = self.norm1(x + self._drop(self.self_attn(x, **kw)))
        return self.norm2(x + self._drop(self._ffn(x, ffn_mask)))

    def __repr__(self) -> str:
        return (f"TransformerEncoderLayer(d_model={self.d_model}, "
                f"num_heads={self.self_attn.num_heads}, d_ff={self.d_ff}, "
                f"activation={self.activation!r}, norm_first={self.norm_first})")
