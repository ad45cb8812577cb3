"""Transformer encoder layers and stacks on the tape, matching ``torch.nn.TransformerEncoderLayer``
(post-norm by default, ``norm_first=True`` for pre-norm) and the BERT layer, with every gate and
every intermediate the later chapters need:

* per-head gates ξ_h in the attention, shared ``(H,)`` or per example ``(B, H)`` (Survey Eq. (18),
  §2.4.1, Michel et al. 2019);
* per-hidden-unit gates of the feed-forward block, ``(d_ff,)`` or ``(B, d_ff)`` (§2.2, §2.4.3);
* one layer gate ``g`` (LayerDrop, Survey §2.4.2, Fan et al. 2019): ``h ← h + g (layer(h) − h)``,
  so a constant ``g = 0`` skips the whole layer, its LayerNorms included (fairseq's
  ``if not dropped: x = layer(x)``), ``g = 1`` applies it, and a Tensor gate gets ``∂L/∂g``;
* the attention probabilities, per-head contexts, queries, keys and values of every layer, and
  every layer's hidden states, as tape Tensors (``output_attentions`` / ``output_hidden_states``,
  as in the Hugging Face models), for the intermediate-layer losses of §4.4 (PKD, TinyBERT,
  MiniLM, MobileBERT);
* a BERT-style embedding block (word + position + token-type embeddings, LayerNorm, dropout) and
  [CLS] / masked-mean pooling.

Post-norm (Vaswani et al. 2017; PyTorch's default; BERT)::

    x = LN1(x + Drop(MHA(x)))
    x = LN2(x + Drop(FFN(x))),      FFN(x) = W_2 Drop(act(W_1 x + b_1) ⊙ m) + b_2

Pre-norm (``norm_first=True``)::

    x = x + Drop(MHA(LN1(x)))
    x = x + Drop(FFN(LN2(x)))

``m`` is ``ffn_mask`` (all ones by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.attention import MultiHeadAttention
from refimpl.nn.layers import Dropout, Embedding, LayerNorm, Linear, check_features
from refimpl.nn.module import Module, ModuleList
from refimpl.nn.tensor import Tensor, data_of
from refimpl.utils import as_rng, check_choice, check_float, check_int

__all__ = ["TransformerEncoderLayer", "TransformerEncoder", "EncoderOutput", "BertEmbeddings",
           "cls_pool", "masked_mean_pool", "encode_layers"]


def _layer_gate(g):
    """``None`` (apply), ``0.0`` (skip), or the gate to blend with (float or Tensor)."""
    if g is None or isinstance(g, Tensor):
        return g
    arr = np.asarray(g)
    if arr.shape != () or arr.dtype.kind not in "iuf":
        raise TypeError(f"layer_gate must be a real scalar or a 0-d Tensor, got {g!r}")
    g = float(arr)
    if not np.isfinite(g):
        raise ValueError(f"layer_gate must be finite, got {g}")
    return None if g == 1.0 else g


class TransformerEncoderLayer(Module):
    """One encoder block: self-attention and a two-layer feed-forward network.

    With ``norm_first=False, activation="gelu", layer_norm_eps=1e-12`` this is exactly BERT's
    layer (``BertAttention`` + ``BertIntermediate`` + ``BertOutput``); with
    ``activation="relu", layer_norm_eps=1e-5`` it is ``torch.nn.TransformerEncoderLayer``.

    Parameters
    ----------
    d_model, num_heads, d_ff : int
    dropout : float
        Dropout after attention, inside the FFN and after the FFN (as PyTorch; training only),
        and on the attention probabilities.
    activation : {"gelu", "relu"}
        Default "gelu" (exact erf GELU, as BERT); PyTorch's default is "relu".
    norm_first : bool
        Pre-norm instead of post-norm.
    attention : callable, optional
        Passed to :class:`MultiHeadAttention` (§7 variants).
    layer_norm_eps : float
        ε of both LayerNorms (PyTorch 1e-5, BERT 1e-12).
    bias : bool
        Biases in the Q/K/V/O projections (the FFN always has biases).
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

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, dropout: float = 0.0,
                 activation: str = "gelu", norm_first: bool = False,
                 attention: Callable | None = None, layer_norm_eps: float = 1e-5,
                 bias: bool = True, rng=None):
        self.d_model = check_int(d_model, "d_model", 1)
        self.d_ff = check_int(d_ff, "d_ff", 1)
        self.dropout = check_float(dropout, "dropout", 0.0, 1.0, hi_open=True)
        self.activation = check_choice(activation, "activation", ("gelu", "relu"))
        self.norm_first = bool(norm_first)
        rng = as_rng(rng)
        self.self_attn = MultiHeadAttention(d_model, num_heads, bias=bool(bias),
                                            attention=attention, dropout=dropout, rng=rng)
        self.linear1 = Linear(d_model, d_ff, rng=rng)
        self.linear2 = Linear(d_ff, d_model, rng=rng)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps)
        self.ffn_mask = None
        self._rng = np.random.default_rng(rng.integers(2**63))

    @property
    def num_heads(self) -> int:
        return self.self_attn.num_heads

    def _drop(self, x):
        return F.dropout(x, self.dropout, rng=self._rng, training=self.training)

    def _ffn(self, x, ffn_mask):
        h = self.linear1(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)  # (B, n, d_ff)
        m = self.ffn_mask if ffn_mask is None else ffn_mask
        if m is not None:
            B = h.shape[0]
            shape = tuple(np.shape(data_of(m)))
            if shape not in ((self.d_ff,), (B, self.d_ff)):
                raise ValueError(f"ffn_mask must have shape ({self.d_ff},) or "
                                 f"({B}, {self.d_ff}), got {shape}")
            if isinstance(m, Tensor):
                h = h * m.reshape(-1, 1, self.d_ff)  # (1 or B, 1, d_ff)
            else:
                m = np.asarray(m, dtype=h.dtype)
                if not np.all(np.isfinite(m)):
                    raise ValueError("ffn_mask must be finite")
                h = F.mask(h, m.reshape(-1, 1, self.d_ff))
        return self.linear2(self._drop(h))

    def forward(self, x, mask=None, key_padding_mask=None, head_mask=None, ffn_mask=None,
                layer_gate=None, *, return_attention: bool = False):
        """Apply the block.

        Parameters
        ----------
        x : Tensor or ndarray of shape (B, n, d_model)
        mask : bool ndarray broadcastable to (B, num_heads, n, n), optional
            True = may attend.
        key_padding_mask : bool ndarray of shape (B, n), optional
            True = padding.
        head_mask : ndarray or Tensor of shape (num_heads,) or (B, num_heads), optional
            Head gates ξ (Survey Eq. (18)).
        ffn_mask : ndarray or Tensor of shape (d_ff,) or (B, d_ff), optional
            FFN hidden-unit gates.
        layer_gate : float or 0-d Tensor, optional
            LayerDrop gate ``g`` (Survey §2.4.2): the output is ``x + g (layer(x) − x)``;
            ``g = 0`` returns ``x`` without evaluating the layer (norms included).
        return_attention : bool
            Also return the layer's :class:`AttentionOutputs` (None when the layer was
            skipped by ``layer_gate = 0``).

        Returns
        -------
        Tensor of shape (B, n, d_model) [, AttentionOutputs or None]
        """
        x = check_features(x, "x", self.d_model, ndim=3)
        g = _layer_gate(layer_gate)
        if isinstance(g, float) and g == 0.0:  # LayerDrop: the whole layer is skipped
            return (x, None) if return_attention else x
        kw = dict(mask=mask, key_padding_mask=key_padding_mask, head_mask=head_mask,
                  return_attention=True)
        if self.norm_first:
            a, att = self.self_attn(self.norm1(x), **kw)
            h = x + self._drop(a)
            out = h + self._drop(self._ffn(self.norm2(h), ffn_mask))
        else:
            a, att = self.self_attn(x, **kw)
            h = self.norm1(x + self._drop(a))
            out = self.norm2(h + self._drop(self._ffn(h, ffn_mask)))
        if g is not None:
            out = x + (out - x) * g  # h + g (layer(h) − h)
        return (out, att) if return_attention else out

    def __repr__(self) -> str:
        return (f"TransformerEncoderLayer(d_model={self.d_model}, "
                f"num_heads={self.self_attn.num_heads}, d_ff={self.d_ff}, "
                f"activation={self.activation!r}, norm_first={self.norm_first})")


@dataclass
class EncoderOutput:
    """What :class:`TransformerEncoder` returns when asked for intermediates (the Hugging Face
    ``BaseModelOutput`` fields, as tape Tensors).

    Attributes
    ----------
    last_hidden_state : Tensor of shape (B, n, d_model)
        The top layer's output (after the final LayerNorm, if the stack has one).
    hidden_states : tuple of Tensor of shape (B, n, d_model), or None
        ``num_layers + 1`` entries: the input of layer 0, then each layer's output (before any
        final LayerNorm). A layer skipped by LayerDrop repeats its input. Set with
        ``output_hidden_states=True``.
    attentions : tuple of AttentionOutputs (or None for a skipped layer), or None
        One per layer: probabilities ``(B, H, n, n)``, contexts, queries, keys, values. Set with
        ``output_attentions=True``.
    """

    last_hidden_state: Tensor
    hidden_states: tuple | None = None
    attentions: tuple | None = None


def _per_layer(arr, name: str, L: int):
    if arr is None:
        return [None] * L
    n = np.shape(data_of(arr))
    if len(n) == 0 or n[0] != L:
        raise ValueError(f"{name} must have num_layers={L} rows (one per layer), "
                         f"got shape {tuple(n)}")
    return [arr[i] for i in range(L)]


def encode_layers(layers, x, *, mask=None, key_padding_mask=None, head_mask=None,
                  ffn_mask=None, layer_mask=None, final_norm=None,
                  output_hidden_states: bool = False, output_attentions: bool = False):
    """Run a stack of :class:`TransformerEncoderLayer` (the one loop every encoder uses).

    Parameters
    ----------
    layers : sequence of TransformerEncoderLayer
    x : Tensor of shape (B, n, d_model)
    mask, key_padding_mask : see :meth:`TransformerEncoderLayer.forward` (shared by all layers)
    head_mask : ndarray or Tensor of shape (L, H) or (L, B, H), optional
    ffn_mask : ndarray or Tensor of shape (L, d_ff) or (L, B, d_ff), optional
    layer_mask : ndarray or Tensor of shape (L,), optional
        LayerDrop gates, one per layer (see :meth:`TransformerEncoderLayer.forward`).
    final_norm : LayerNorm, optional
        Applied to the top layer's output (pre-norm stacks).
    output_hidden_states, output_attentions : bool

    Returns
    -------
    EncoderOutput
    """
    L = len(layers)
    heads = _per_layer(head_mask, "head_mask", L)
    ffns = _per_layer(ffn_mask, "ffn_mask", L)
    if layer_mask is not None:
        lm = np.asarray(data_of(layer_mask))
        if lm.shape != (L,):
            raise ValueError(f"layer_mask must have shape ({L},), got {lm.shape}")
        if lm.dtype.kind not in "iufb" or not np.all(np.isfinite(lm.astype(np.float64))):
            raise ValueError("layer_mask must hold finite real gates")
    gates = _per_layer(layer_mask, "layer_mask", L)
    hidden = [x] if output_hidden_states else None
    atts = [] if output_attentions else None
    h = x
    for layer, hm, fm, g in zip(layers, heads, ffns, gates):
        h, att = layer(h, mask=mask, key_padding_mask=key_padding_mask, head_mask=hm,
                       ffn_mask=fm, layer_gate=g, return_attention=True)
        if hidden is not None:
            hidden.append(h)
        if atts is not None:
            atts.append(att)
    if final_norm is not None:
        h = final_norm(h)
    return EncoderOutput(h, None if hidden is None else tuple(hidden),
                         None if atts is None else tuple(atts))


class TransformerEncoder(Module):
    """A stack of ``num_layers`` :class:`TransformerEncoderLayer` (PyTorch's
    ``nn.TransformerEncoder``; with ``output_hidden_states``/``output_attentions`` the Hugging
    Face ``BertEncoder``).

    Parameters
    ----------
    num_layers, d_model, num_heads, d_ff : int (keyword-only)
    dropout, activation, norm_first, attention, layer_norm_eps, bias :
        Passed to every :class:`TransformerEncoderLayer`.
    final_norm : bool, optional
        A LayerNorm after the top layer; default ``norm_first`` (pre-norm stacks need one).
    rng : Generator or int, optional

    Attributes
    ----------
    layers : ModuleList of TransformerEncoderLayer
    norm : LayerNorm or None
    """

    def __init__(self, *, num_layers: int, d_model: int, num_heads: int, d_ff: int,
                 dropout: float = 0.0, activation: str = "gelu", norm_first: bool = False,
                 attention: Callable | None = None, layer_norm_eps: float = 1e-5,
                 bias: bool = True, final_norm: bool | None = None, rng=None):
        rng = as_rng(rng)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.d_model = check_int(d_model, "d_model", 1)
        self.layers = ModuleList(
            TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=dropout,
                                    activation=activation, norm_first=norm_first,
                                    attention=attention, layer_norm_eps=layer_norm_eps,
                                    bias=bias, rng=rng) for _ in range(self.num_layers))
        final = norm_first if final_norm is None else bool(final_norm)
        self.norm = LayerNorm(d_model, eps=layer_norm_eps) if final else None

    def forward(self, x, mask=None, key_padding_mask=None, head_mask=None, ffn_mask=None,
                layer_mask=None, *, output_hidden_states: bool = False,
                output_attentions: bool = False):
        """``x`` (B, n, d_model) -> Tensor (B, n, d_model), or :class:`EncoderOutput` when
        ``output_hidden_states`` or ``output_attentions`` is set (gates: see
        :func:`encode_layers`)."""
        x = check_features(x, "x", self.d_model, ndim=3)
        out = encode_layers(self.layers, x, mask=mask, key_padding_mask=key_padding_mask,
                            head_mask=head_mask, ffn_mask=ffn_mask, layer_mask=layer_mask,
                            final_norm=self.norm, output_hidden_states=output_hidden_states,
                            output_attentions=output_attentions)
        if output_hidden_states or output_attentions:
            return out
        return out.last_hidden_state


class BertEmbeddings(Module):
    """BERT's input block: ``LN(word[ids] + position[pos] + token_type[types])``, then dropout
    (Devlin et al. 2019; Hugging Face ``BertEmbeddings``).

    Parameters
    ----------
    vocab_size, d_model, max_position : int (keyword-only)
    type_vocab_size : int
        Number of segment ids (BERT: 2).
    layer_norm_eps : float
        BERT: 1e-12.
    dropout : float
    padding_idx : int or None
        Row of the word table that is zero and gets no gradient (BERT: 0).
    rng : Generator or int, optional
        Tables drawn from N(0, 0.02²) (BERT's initialiser range).

    Attributes
    ----------
    word : Embedding (vocab_size, d_model)
    position : Embedding (max_position, d_model)
    token_type : Embedding (type_vocab_size, d_model)
    norm : LayerNorm
    """

    def __init__(self, *, vocab_size: int, d_model: int, max_position: int,
                 type_vocab_size: int = 2, layer_norm_eps: float = 1e-12,
                 dropout: float = 0.0, padding_idx: int | None = 0, rng=None):
        rng = as_rng(rng)
        self.d_model = check_int(d_model, "d_model", 1)
        self.max_position = check_int(max_position, "max_position", 1)
        self.word = Embedding(vocab_size, d_model, padding_idx=padding_idx, rng=rng)
        self.position = Embedding(max_position, d_model, rng=rng)
        self.token_type = Embedding(type_vocab_size, d_model, rng=rng)
        for e in (self.word, self.position, self.token_type):
            e.W.data *= 0.02
        self.norm = LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout = Dropout(dropout, rng=np.random.default_rng(rng.integers(2**63)))

    def forward(self, input_ids, token_type_ids=None, position_ids=None) -> Tensor:
        """Token ids (B, n) [, segment ids (B, n), positions (B, n) or (n,)] -> (B, n, d_model).

        Positions default to ``0..n-1``; segment ids to 0.
        """
        ids = np.asarray(data_of(input_ids))
        if ids.dtype.kind not in "iu" or ids.ndim != 2:
            raise TypeError(f"input_ids must be an integer array of shape (B, n), got "
                            f"{ids.dtype} of shape {ids.shape}")
        B, n = ids.shape
        if n > self.max_position:
            raise ValueError(f"input_ids has n={n} positions, more than max_position="
                             f"{self.max_position}")
        pos = np.arange(n) if position_ids is None else np.asarray(position_ids)
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids)
        if types.shape != ids.shape:
            raise ValueError(f"token_type_ids must have shape {ids.shape}, got {types.shape}")
        h = self.word(ids) + self.position(np.broadcast_to(pos, (B, n))) \
            + self.token_type(types)  # (B, n, d)
        return self.dropout(self.norm(h))


def cls_pool(h) -> Tensor:
    """The first position's state (the [CLS] token): (B, n, d) -> (B, d)."""
    return h[:, 0]


def masked_mean_pool(h, valid) -> Tensor:
    """Mean of ``h`` (B, n, d) over the positions where ``valid`` (B, n) is True -> (B, d)
    (sentence-transformers' mean pooling with the attention mask)."""
    valid = np.asarray(data_of(valid), dtype=bool)
    if valid.shape != tuple(h.shape[:2]):
        raise ValueError(f"valid must have shape {tuple(h.shape[:2])}, got {valid.shape}")
    if not valid.any(axis=1).all():
        raise ValueError("valid must mark at least one position per row")
    w = (valid / valid.sum(axis=1, keepdims=True)).astype(h.dtype)  # (B, n)
    return F.mask(h, w[:, :, None]).sum(axis=1)
