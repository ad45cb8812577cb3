r"""Survey §5.3, parameter sharing in Transformers: ALBERT (Lan et al. 2020).

ALBERT makes BERT smaller in two ways:

* **factorised embedding**: tokens are embedded in a small space of size ``E`` and projected to
  the hidden size ``H``, ``V·E + E·H`` parameters instead of ``V·H``
  (:class:`AlbertEmbeddings`);
* **cross-layer sharing**: the ``L`` encoder layers share their parameters — all of them
  (ALBERT's default), only the attention block, or only the feed-forward block
  (:class:`AlbertEncoder`, ``share = "all" | "attention" | "ffn" | "none"``).

Both build on :class:`refimpl.nn.BertEmbeddings` and :class:`refimpl.nn.TransformerEncoderLayer`.
A shared module is one object used by several layers, so the tape sums the gradients of its uses
and :meth:`refimpl.nn.Module.num_parameters` counts it once; :func:`albert_num_params` gives the
same counts by formula.

What each sharing mode ties (as ALBERT's code groups them): ``"attention"`` the self-attention
projections and the LayerNorm after the attention block (``self_attn``, ``norm1``); ``"ffn"`` the
two feed-forward layers and the LayerNorm after them (``linear1``, ``linear2``, ``norm2``).

References
----------
.. [1] Z. Lan, M. Chen, S. Goodman, K. Gimpel, P. Sharma, R. Soricut, "ALBERT: a lite BERT for
   self-supervised learning of language representations", ICLR 2020, §3.1, Table 4.
"""

from __future__ import annotations

from refimpl.nn.layers import Linear
from refimpl.nn.module import Module, ModuleList
from refimpl.nn.tensor import Tensor
from refimpl.nn.transformer import BertEmbeddings, TransformerEncoderLayer
from refimpl.utils import as_rng, check_bool, check_choice, check_float, check_int

__all__ = ["AlbertEmbeddings", "AlbertEncoder", "albert_num_params"]

SHARE_MODES = ("all", "attention", "ffn", "none")


class AlbertEmbeddings(Module):
    r"""ALBERT's factorised embedding: BERT's embedding block in size ``E``, then ``E → H``.

    ``h = LN(word[ids] + position + token_type) W_pᵀ + b_p`` with tables of width
    ``embed_dim`` (Survey §5.3; Lan et al. 2020, §3.1): ``(V + P + T)·E + 2E + E·H + H``
    parameters.

    Parameters
    ----------
    vocab_size, embed_dim, d_model, max_position : int (keyword-only)
        ``V``, ``E``, ``H``, ``P``.
    type_vocab_size : int
    padding_idx : int or None
    rng : Generator or int, optional

    Attributes
    ----------
    embeddings : BertEmbeddings of width embed_dim
    projection : Linear (embed_dim -> d_model)
    """

    def __init__(self, *, vocab_size: int, embed_dim: int, d_model: int, max_position: int,
                 type_vocab_size: int = 2, padding_idx: int | None = 0, rng=None):
        vocab_size = check_int(vocab_size, "vocab_size", 1)
        max_position = check_int(max_position, "max_position", 1)
        type_vocab_size = check_int(type_vocab_size, "type_vocab_size", 1)
        if padding_idx is not None:
            padding_idx = check_int(padding_idx, "padding_idx", 0, vocab_size - 1)
        rng = as_rng(rng)
        self.embed_dim = check_int(embed_dim, "embed_dim", 1)
        self.d_model = check_int(d_model, "d_model", 1)
        self.embeddings = BertEmbeddings(vocab_size=vocab_size, d_model=self.embed_dim,
                                         max_position=max_position,
                                         type_vocab_size=type_vocab_size,
                                         padding_idx=padding_idx, rng=rng)
        self.projection = Linear(self.embed_dim, self.d_model, rng=rng)

    def forward(self, input_ids, token_type_ids=None, position_ids=None) -> Tensor:
        """Token ids (B, n) -> (B, n, d_model)."""
        e = self.embeddings(input_ids, token_type_ids, position_ids)   # (B, n, E)
        return self.projection(e)                                       # (B, n, H)


class AlbertEncoder(Module):
    """A stack of ``num_layers`` encoder layers with ALBERT's cross-layer sharing (Survey §5.3).

    Parameters
    ----------
    num_layers, d_model, num_heads, d_ff : int (keyword-only)
    share : {"all", "attention", "ffn", "none"}
        ``"all"``: one :class:`refimpl.nn.TransformerEncoderLayer` applied ``num_layers``
        times (or one per group, see ``num_groups``); ``"attention"`` / ``"ffn"``: separate layers whose attention block
        (``self_attn``, ``norm1``) / feed-forward block (``linear1``, ``linear2``, ``norm2``) is
        one shared object; ``"none"``: BERT.
    num_groups : int
        ALBERT's ``num_hidden_groups`` G (with ``share="all"``; must divide ``num_layers``):
        ``G`` distinct layers, layer ``l`` (0-based) using group ``⌊l·G/L⌋`` as ALBERT's code
        does (``int(layer_idx / (num_hidden_layers / num_hidden_groups))``). 1 is ALBERT's
        default; ``G = L`` is BERT.
    activation, norm_first, layer_norm_eps : passed to every layer
    rng : Generator or int, optional

    Attributes
    ----------
    layers : ModuleList of TransformerEncoderLayer, length num_layers (the same object ``L`` times
        when ``share="all"``, ``L/G`` times each with groups)
    """

    def __init__(self, *, num_layers: int, d_model: int, num_heads: int, d_ff: int,
                 share: str = "all", num_groups: int = 1, activation: str = "gelu",
                 norm_first: bool = False, layer_norm_eps: float = 1e-12, rng=None):
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.share = check_choice(share, "share", SHARE_MODES)
        self.num_groups = check_int(num_groups, "num_groups", 1, self.num_layers)
        if self.num_layers % self.num_groups:
            raise ValueError(f"num_groups ({num_groups}) must divide num_layers ({num_layers})")
        if self.num_groups > 1 and self.share != "all":
            raise ValueError(f"num_groups > 1 needs share='all', got share={share!r}")
        norm_first = check_bool(norm_first, "norm_first")
        d_model = check_int(d_model, "d_model", 1)
        num_heads = check_int(num_heads, "num_heads", 1)
        d_ff = check_int(d_ff, "d_ff", 1)
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        activation = check_choice(activation, "activation", ("gelu", "relu"))
        layer_norm_eps = check_float(layer_norm_eps, "layer_norm_eps", 0.0, lo_open=True)
        rng = as_rng(rng)

        def make():
            return TransformerEncoderLayer(d_model=d_model, num_heads=num_heads, d_ff=d_ff,
                                           activation=activation, norm_first=norm_first,
                                           layer_norm_eps=layer_norm_eps, rng=rng)

        if self.share == "all":
            groups = [make() for _ in range(self.num_groups)]
            G, L = self.num_groups, self.num_layers
            # layer l uses group ⌊l·G/L⌋ (one object, L/G uses each)
            self.layers = ModuleList([groups[(l * G) // L] for l in range(L)])  # noqa: E741
        else:
            self.layers = ModuleList([make() for _ in range(self.num_layers)])
            first = self.layers[0]
            tied = {"attention": ("self_attn", "norm1"),
                    "ffn": ("linear1", "linear2", "norm2"), "none": ()}[self.share]
            for layer in self.layers[1:]:
                for name in tied:
                    setattr(layer, name, getattr(first, name))

    def forward(self, x, mask=None, key_padding_mask=None) -> Tensor:
        """(B, n, d_model) -> (B, n, d_model): the layers in order."""
        for layer in self.layers:
            x = layer(x, mask=mask, key_padding_mask=key_padding_mask)
        return x


def albert_num_params(*, vocab_size: int, embed_dim: int | None, d_model: int, d_ff: int,
                      num_layers: int, max_position: int, type_vocab_size: int = 2,
                      share: str = "all", num_groups: int = 1) -> dict:
    r"""Exact parameter counts of ALBERT's embedding and encoder (Survey §5.3), by formula.

    Parameters
    ----------
    vocab_size, d_model, d_ff, num_layers, max_position, type_vocab_size : int (keyword-only)
    embed_dim : int or None
        ``E`` of the factorised embedding; None for BERT's unfactorised ``V × H`` tables.
    share : {"all", "attention", "ffn", "none"}
    num_groups : int
        ALBERT's hidden groups (``share="all"``): ``G(a + f)`` for the encoder.

    Returns
    -------
    dict
        ``embeddings``: ``(V + P + T)·E + 2E + E·H + H`` (factorised) or ``(V + P + T)·H + 2H``;
        ``encoder``: with ``a = 4(H² + H) + 2H`` (attention + its LayerNorm) and
        ``f = 2·H·F + F + H + 2H`` (FFN + its LayerNorm), ``L(a + f)`` unshared, ``a + f`` for
        ``"all"``, ``a + L f`` for ``"attention"``, ``L a + f`` for ``"ffn"``; ``total``.
    """
    V = check_int(vocab_size, "vocab_size", 1)
    H = check_int(d_model, "d_model", 1)
    Fd = check_int(d_ff, "d_ff", 1)
    L = check_int(num_layers, "num_layers", 1)
    P = check_int(max_position, "max_position", 1)
    T = check_int(type_vocab_size, "type_vocab_size", 1)
    share = check_choice(share, "share", SHARE_MODES)
    G = check_int(num_groups, "num_groups", 1, L)
    if L % G or (G > 1 and share != "all"):
        raise ValueError(f"num_groups ({G}) must divide num_layers ({L}) and needs share='all'")
    if embed_dim is None:
        emb = (V + P + T) * H + 2 * H
    else:
        E = check_int(embed_dim, "embed_dim", 1)
        emb = (V + P + T) * E + 2 * E + E * H + H
    a = 4 * (H * H + H) + 2 * H
    f = 2 * H * Fd + Fd + H + 2 * H
    enc = {"none": L * (a + f), "all": G * (a + f), "attention": a + L * f,
           "ffn": L * a + f}[share]
    return {"embeddings": emb, "encoder": enc, "total": emb + enc}
