"""A bottleneck Transformer block (MobileBERT's, Survey §4.4; Sun et al. 2020, §3.1, without its
stacked FFNs and NoNorm): the block's input and output have the wide ``d_outer`` width while the
attention and FFN run at a narrow ``d_inner``::

    h = LN_in(x W_downᵀ + b_down)                    (B, n, d_inner)
    h = TransformerEncoderLayer(h)                   (B, n, d_inner)
    y = LN_out(x + h W_upᵀ + b_up)                    (B, n, d_outer)

so a narrow student keeps the teacher's width at every block boundary (what MobileBERT's
feature-map transfer compares).
"""

from __future__ import annotations

from refimpl.nn.layers import LayerNorm, Linear, check_features
from refimpl.nn.module import Module
from refimpl.nn.transformer import TransformerEncoderLayer
from refimpl.utils import as_rng, check_int

__all__ = ["BottleneckEncoderLayer"]


class BottleneckEncoderLayer(Module):
    """MobileBERT-style bottleneck block, a drop-in for :class:`TransformerEncoderLayer` in
    :func:`refimpl.nn.transformer.encode_layers` (same call signature; returns the inner
    layer's :class:`AttentionOutputs` with ``return_attention``).

    Parameters
    ----------
    d_outer, d_inner, num_heads, d_ff : int
    layer_norm_eps : float
    rng : Generator or int, optional

    Attributes
    ----------
    down : Linear (d_outer -> d_inner); norm_in : LayerNorm (d_inner)
    inner : TransformerEncoderLayer (d_inner, post-norm)
    up : Linear (d_inner -> d_outer); norm_out : LayerNorm (d_outer)
    """

    def __init__(self, d_outer: int, d_inner: int, num_heads: int, d_ff: int, *,
                 layer_norm_eps: float = 1e-5, rng=None):
        rng = as_rng(rng)
        self.d_model = check_int(d_outer, "d_outer", 1)
        self.d_inner = check_int(d_inner, "d_inner", 1)
        self.down = Linear(d_outer, d_inner, rng=rng)
        self.norm_in = LayerNorm(d_inner, eps=layer_norm_eps)
        self.inner = TransformerEncoderLayer(d_inner, num_heads, d_ff,
                                             layer_norm_eps=layer_norm_eps, rng=rng)
        self.up = Linear(d_inner, d_outer, rng=rng)
        self.norm_out = LayerNorm(d_outer, eps=layer_norm_eps)

    @property
    def num_heads(self) -> int:
        return self.inner.num_heads

    @property
    def d_ff(self) -> int:
        return self.inner.d_ff

    @property
    def self_attn(self):
        return self.inner.self_attn

    def forward(self, x, mask=None, key_padding_mask=None, head_mask=None, ffn_mask=None,
                layer_gate=None, *, return_attention: bool = False):
        """``x`` (B, n, d_outer) → (B, n, d_outer) [, AttentionOutputs of the inner layer].
        Masks and gates as :meth:`TransformerEncoderLayer.forward` (``layer_gate`` must be
        None: a bottleneck block is not skipped)."""
        if layer_gate is not None:
            raise ValueError("layer_gate is not supported by BottleneckEncoderLayer")
        x = check_features(x, "x", self.d_model, ndim=3)
        h = self.norm_in(self.down(x))  # (B, n, d_inner)
        h, att = self.inner(h, mask=mask, key_padding_mask=key_padding_mask,
                            head_mask=head_mask, ffn_mask=ffn_mask, return_attention=True)
        y = self.norm_out(x + self.up(h))  # (B, n, d_outer)
        return (y, att) if return_attention else y

    def __repr__(self) -> str:
        return (f"BottleneckEncoderLayer(d_outer={self.d_model}, d_inner={self.d_inner}, "
                f"num_heads={self.num_heads}, d_ff={self.d_ff})")
