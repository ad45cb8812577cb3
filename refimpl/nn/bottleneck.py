"""MobileBERT's bottleneck Transformer block (Survey §4.4; Sun et al. 2020, §3.1–3.4): the
block's input and output have the wide ``d_outer`` width while the attention and the FFNs run
at a narrow ``d_inner``; ``num_ffn`` stacked FFNs follow the attention, each with its residual
connection and norm; the norms are LayerNorms or MobileBERT's :class:`NoNorm`::

    h = Norm_in(x W_downᵀ + b_down)                  (B, n, d_inner)   bottleneck input
    h = Norm_1(h + MHA(h))                           (B, n, d_inner)   attention
    h = Norm_k(h + FFN_k(h)),   k = 1..num_ffn        (B, n, d_inner)   stacked FFNs
    y = Norm_out(x + h W_upᵀ + b_up)                  (B, n, d_outer)   bottleneck output

so a narrow student keeps the teacher's width at every block boundary (what MobileBERT's
feature-map transfer compares). With ``norm="nonorm", activation="relu"`` this is Hugging Face's
``MobileBertLayer`` with ``use_bottleneck_attention=True`` (MobileBERT-TINY's attention; the
released MobileBERT instead computes the values from the wide ``x`` and the queries and keys
from a second, shared bottleneck — not implemented here).
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.layers import LayerNorm, Linear, check_features
from refimpl.nn.module import Module, ModuleList
from refimpl.nn.tensor import Parameter, Tensor
from refimpl.nn.transformer import TransformerEncoderLayer
from refimpl.utils import as_rng, check_choice, check_int

__all__ = ["NoNorm", "ResidualFFN", "BottleneckEncoderLayer"]

NORMS = ("layernorm", "nonorm")


class NoNorm(Module):
    """MobileBERT's *NoNorm* (Survey §4.4; Sun et al. 2020, §3.4): the element-wise
    affine map that replaces layer normalisation in the MobileBERT student,

    .. math:: \\operatorname{NoNorm}(h) = \\gamma \\circ h + \\beta ,

    without the mean and variance statistics (so no reduction over the features at inference;
    Hugging Face's ``NoNorm``, TensorFlow Model Garden's ``normalization_type="no_norm"``).

    Parameters
    ----------
    d : int
        The size of the last axis.

    Attributes
    ----------
    gamma : Parameter of shape (d,), initialised to 1
    beta : Parameter of shape (d,), initialised to 0

    Notes
    -----
    Called on ``x`` of shape ``(..., d)``, returns ``γ ∘ x + β`` of the same shape; the
    gradients are ``dx = dout ∘ γ``, ``dγ = Σ dout ∘ x`` and ``dβ = Σ dout`` over all leading
    axes. Unlike :class:`LayerNorm` it is not invariant to shifting or scaling ``x``.

    References
    ----------
    .. [1] Z. Sun, H. Yu, X. Song, R. Liu, Y. Yang, D. Zhou, "MobileBERT: a Compact
       Task-Agnostic BERT for Resource-Limited Devices", ACL 2020, §3.4.
    """

    def __init__(self, d: int):
        self.d = check_int(d, "d", 1)
        self.gamma = Parameter(np.ones(self.d))
        self.beta = Parameter(np.zeros(self.d))

    def forward(self, x) -> Tensor:
        """``x`` (..., d) → ``γ ∘ x + β`` (..., d)."""
        x = check_features(x, "x", self.d)
        return x * self.gamma + self.beta  # NoNorm(h) = γ ∘ h + β

    def __repr__(self) -> str:
        return f"NoNorm({self.d})"


def make_norm(norm: str, d: int, eps: float = 1e-5) -> Module:
    """A :class:`LayerNorm` (``norm="layernorm"``, with ``eps``) or a :class:`NoNorm`."""
    norm = check_choice(norm, "norm", NORMS)
    return LayerNorm(d, eps=eps) if norm == "layernorm" else NoNorm(d)


class ResidualFFN(Module):
    """One of MobileBERT's stacked feed-forward networks (Sun et al. 2020, §3.3): a
    position-wise FFN with its residual connection and norm (post-norm, as BERT's),

    ``y = Norm(h + W₂ act(W₁ h + b₁) + b₂)``, shapes ``(B, n, d) → (B, n, d)``.

    Parameters
    ----------
    d_model, d_ff : int
    activation : {"gelu", "relu"}
        MobileBERT uses ReLU (§3.4).
    norm : {"layernorm", "nonorm"}
    layer_norm_eps : float
    rng : Generator or int, optional

    Attributes
    ----------
    linear1 : Linear (d_model -> d_ff); linear2 : Linear (d_ff -> d_model)
    norm : LayerNorm or NoNorm (d_model)
    """

    def __init__(self, d_model: int, d_ff: int, *, activation: str = "gelu",
                 norm: str = "layernorm", layer_norm_eps: float = 1e-5, rng=None):
        rng = as_rng(rng)
        self.d_model = check_int(d_model, "d_model", 1)
        self.d_ff = check_int(d_ff, "d_ff", 1)
        self.activation = check_choice(activation, "activation", ("gelu", "relu"))
        self.linear1 = Linear(d_model, d_ff, rng=rng)
        self.linear2 = Linear(d_ff, d_model, rng=rng)
        self.norm = make_norm(norm, d_model, layer_norm_eps)

    def forward(self, h) -> Tensor:
        """``h`` (B, n, d_model) → (B, n, d_model)."""
        h = check_features(h, "h", self.d_model)
        a = self.linear1(h)
        a = F.gelu(a) if self.activation == "gelu" else F.relu(a)  # (B, n, d_ff)
        return self.norm(h + self.linear2(a))  # Norm(h + FFN(h))

    def __repr__(self) -> str:
        return (f"ResidualFFN(d_model={self.d_model}, d_ff={self.d_ff}, "
                f"activation={self.activation!r}, norm={type(self.norm).__name__})")


class BottleneckEncoderLayer(Module):
    """MobileBERT's bottleneck block (Survey §4.4; Sun et al. 2020, §3.1–3.4), a drop-in for
    :class:`TransformerEncoderLayer` in :func:`refimpl.nn.transformer.encode_layers` (same
    call signature; returns the inner layer's :class:`AttentionOutputs` with
    ``return_attention``).

    Parameters
    ----------
    d_outer, d_inner, num_heads, d_ff : int
        The block boundary width (MobileBERT 512), the bottleneck width (128), heads (4) and
        the width of each FFN's hidden layer (512).
    num_ffn : int >= 1
        Stacked FFNs after the attention, each with its residual + norm (MobileBERT: 4, to
        restore the FFN/MHA parameter ratio of the narrow block). Default 1 (one FFN, BERT's
        layer inside the bottleneck).
    norm : {"layernorm", "nonorm"}
        Every norm of the block — bottleneck input and output, after the attention and after
        each FFN — is a :class:`LayerNorm` or a :class:`NoNorm` (MobileBERT: ``"nonorm"``).
    activation : {"gelu", "relu"}
        Of every FFN (MobileBERT: ``"relu"``; default ``"gelu"``, BERT's).
    layer_norm_eps : float
    rng : Generator or int, optional

    Attributes
    ----------
    down : Linear (d_outer -> d_inner); norm_in : LayerNorm or NoNorm (d_inner)
    inner : TransformerEncoderLayer (d_inner, post-norm)
        The attention, its norm ``inner.norm1`` and the first FFN (``inner.linear1/2``,
        ``inner.norm2``).
    ffns : ModuleList of ``num_ffn − 1`` :class:`ResidualFFN`
        The further stacked FFNs, applied after ``inner``.
    up : Linear (d_inner -> d_outer); norm_out : LayerNorm or NoNorm (d_outer)

    Notes
    -----
    All stacked FFNs have the same form ``h ← Norm(h + FFN(h))``, so which parameters play the
    first FFN is a labelling: Hugging Face's ``MobileBertLayer`` runs ``ffn[0..k−2]`` and then
    ``intermediate``/``output``; here ``inner``'s FFN is the first and ``ffns[0..k−2]`` follow
    (``tests/nn/test_bottleneck.py`` maps one onto the other and compares outputs).

    The number of parameters (biases everywhere) is

    .. math:: 2 d_o d_i + 3 d_o + 4 d_i^2 + 9 d_i + k\\,(2 d_i d_{ff} + d_{ff} + 3 d_i),

    ``k = num_ffn``, the same for LayerNorm and NoNorm (γ and β each).

    References
    ----------
    .. [1] Z. Sun, H. Yu, X. Song, R. Liu, Y. Yang, D. Zhou, "MobileBERT: a Compact
       Task-Agnostic BERT for Resource-Limited Devices", ACL 2020.
    """

    def __init__(self, d_outer: int, d_inner: int, num_heads: int, d_ff: int, *,
                 num_ffn: int = 1, norm: str = "layernorm", activation: str = "gelu",
                 layer_norm_eps: float = 1e-5, rng=None):
        rng = as_rng(rng)
        self.d_model = check_int(d_outer, "d_outer", 1)
        self.d_inner = check_int(d_inner, "d_inner", 1)
        self.num_ffn = check_int(num_ffn, "num_ffn", 1)
        self.norm_type = check_choice(norm, "norm", NORMS)
        # draw order (down, inner, up, then the extra FFNs) keeps num_ffn = 1 blocks identical
        # to the blocks built before num_ffn existed, for the same seed
        self.down = Linear(d_outer, d_inner, rng=rng)
        self.norm_in = make_norm(norm, d_inner, layer_norm_eps)
        self.inner = TransformerEncoderLayer(d_inner, num_heads, d_ff, activation=activation,
                                             layer_norm_eps=layer_norm_eps, rng=rng)
        if norm == "nonorm":
            self.inner.norm1, self.inner.norm2 = NoNorm(d_inner), NoNorm(d_inner)
        self.up = Linear(d_inner, d_outer, rng=rng)
        self.norm_out = make_norm(norm, d_outer, layer_norm_eps)
        self.ffns = ModuleList(ResidualFFN(d_inner, d_ff, activation=activation, norm=norm,
                                           layer_norm_eps=layer_norm_eps, rng=rng)
                               for _ in range(self.num_ffn - 1))

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
        Masks and gates as :meth:`TransformerEncoderLayer.forward`; ``ffn_mask`` gates the
        hidden units of a single FFN, so it needs ``num_ffn == 1``; ``layer_gate`` must be
        None (a bottleneck block is not skipped)."""
        if layer_gate is not None:
            raise ValueError("layer_gate is not supported by BottleneckEncoderLayer")
        if ffn_mask is not None and self.num_ffn > 1:
            raise ValueError(f"ffn_mask gates one FFN's hidden units; this block stacks "
                             f"num_ffn={self.num_ffn} FFNs")
        x = check_features(x, "x", self.d_model, ndim=3)
        h = self.norm_in(self.down(x))  # (B, n, d_inner)
        h, att = self.inner(h, mask=mask, key_padding_mask=key_padding_mask,
                            head_mask=head_mask, ffn_mask=ffn_mask, return_attention=True)
        for ffn in self.ffns:  # stacked FFNs 2..num_ffn: h ← Norm(h + FFN(h))
            h = ffn(h)  # (B, n, d_inner)
        y = self.norm_out(x + self.up(h))  # (B, n, d_outer)
        return (y, att) if return_attention else y

    def __repr__(self) -> str:
        return (f"BottleneckEncoderLayer(d_outer={self.d_model}, d_inner={self.d_inner}, "
                f"num_heads={self.num_heads}, d_ff={self.d_ff}, num_ffn={self.num_ffn}, "
                f"norm={self.norm_type!r})")
