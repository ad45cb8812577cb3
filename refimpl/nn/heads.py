"""BERT's masked-language-model head with the output layer tied to the input embedding matrix,
and a small BERT for masked-language modelling built from the one Transformer
(:class:`~refimpl.nn.BertEmbeddings` + :class:`~refimpl.nn.TransformerEncoder`).

The head is Hugging Face's ``BertLMPredictionHead`` (Devlin et al. 2019, §3.1, Appendix A.1)::

    t = LN(gelu(W_t h + b_t))                  (B, n, d) -> (B, n, d)      "transform"
    logits = t Eᵀ + b                          E the word-embedding matrix (V, d), b (V,)

so the decoder has no weight of its own: ``E`` is the input embedding table (tied, Press & Wolf
2017), and its gradient is the sum of the input lookup's and the output layer's. A ``rows``
window restricts the softmax to a contiguous block of the table, which is what mixed-vocabulary
training (Survey §4.4, Zhao et al.) needs: one softmax per vocabulary over a joint table.

References
----------
.. [1] J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, "BERT: Pre-training of Deep Bidirectional
   Transformers for Language Understanding", NAACL 2019.
.. [2] O. Press, L. Wolf, "Using the Output Embedding to Improve Language Models", EACL 2017.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.layers import LayerNorm, Linear, check_features, transformed
from refimpl.nn.losses import cross_entropy
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, as_tensor, data_of
from refimpl.nn.transformer import BertEmbeddings, TransformerEncoder
from refimpl.utils import as_rng, check_int

__all__ = ["MaskedLMHead", "MaskedLanguageModel", "embedding_matrix", "IGNORE_INDEX"]

#: Label of a position that is not predicted (PyTorch's and Hugging Face's convention).
IGNORE_INDEX = -100


def embedding_matrix(module: Module) -> Tensor:
    """The full ``(V, d)`` word-embedding matrix of an embedding module, as a tape Tensor.

    An :class:`~refimpl.nn.Embedding` gives its table ``W`` (after its ``weight_transform``); a
    module that composes its table (e.g. a joint table of two vocabularies) provides
    ``joint_table()``.
    """
    if hasattr(module, "joint_table"):
        return module.joint_table()
    if hasattr(module, "W"):
        return transformed(module, "W", module.W)
    raise TypeError(f"module must be an Embedding or have joint_table(), got "
                    f"{type(module).__name__}")


def _rows(rows, V: int) -> tuple[int, int]:
    if rows is None:
        return 0, V
    try:
        lo, hi = (int(r) for r in rows)
    except (TypeError, ValueError):
        raise TypeError(f"rows must be a pair (lo, hi) of ints, got {rows!r}") from None
    if not 0 <= lo < hi <= V:
        raise ValueError(f"rows must satisfy 0 <= lo < hi <= {V}, got ({lo}, {hi})")
    return lo, hi


class MaskedLMHead(Module):
    """BERT's MLM head ``logits = LN(gelu(W_t h + b_t)) Eᵀ + b`` with the decoder tied to the
    embedding matrix ``E`` passed to :meth:`forward` (Devlin et al. 2019; Hugging Face
    ``BertLMPredictionHead``).

    Parameters
    ----------
    d_model : int
    vocab_size : int
        Length of the output bias ``b`` (rows of the tied table).
    layer_norm_eps : float
        BERT: 1e-12.
    rng : Generator or int, optional

    Attributes
    ----------
    dense : Linear (d_model -> d_model)
    norm : LayerNorm
    bias : Parameter of shape (vocab_size,), initialised to 0
    """

    def __init__(self, d_model: int, vocab_size: int, *, layer_norm_eps: float = 1e-12,
                 rng=None):
        self.d_model = check_int(d_model, "d_model", 1)
        self.vocab_size = check_int(vocab_size, "vocab_size", 1)
        self.dense = Linear(d_model, d_model, rng=as_rng(rng))
        self.norm = LayerNorm(d_model, eps=layer_norm_eps)
        self.bias = Parameter(np.zeros(vocab_size))

    def transform(self, h) -> Tensor:
        """``LN(gelu(W_t h + b_t))``: (..., d_model) -> (..., d_model)."""
        return self.norm(F.gelu(self.dense(h)))

    def forward(self, h, embedding, rows=None) -> Tensor:
        """Logits over the vocabulary (or the block ``rows = (lo, hi)`` of it).

        Parameters
        ----------
        h : Tensor or ndarray of shape (..., d_model)
        embedding : Tensor or ndarray of shape (vocab_size, d_model)
            The tied word-embedding matrix ``E`` (a Tensor receives the decoder's gradient).
        rows : pair of int, optional
            Only rows ``lo:hi`` of ``E`` and ``b`` (one vocabulary of a joint table).

        Returns
        -------
        Tensor of shape (..., hi − lo)
        """
        E = as_tensor(embedding)
        if E.ndim != 2 or E.shape != (self.vocab_size, self.d_model):
            raise ValueError(f"embedding must have shape ({self.vocab_size}, {self.d_model}), "
                             f"got {E.shape}")
        lo, hi = _rows(rows, self.vocab_size)
        t = self.transform(check_features(h, "h", self.d_model))  # (..., d)
        if (lo, hi) == (0, self.vocab_size):
            return F.linear(t, E, self.bias)  # t Eᵀ + b
        return F.linear(t, E[lo:hi], self.bias[lo:hi])  # (..., hi − lo)

    def __repr__(self) -> str:
        return f"MaskedLMHead(d_model={self.d_model}, vocab_size={self.vocab_size})"


class MaskedLanguageModel(Module):
    """A BERT for masked-language modelling: :class:`BertEmbeddings` (word + position, one
    segment) -> :class:`TransformerEncoder` (post-norm, GELU, BERT's LayerNorm ε) ->
    :class:`MaskedLMHead` tied to the word-embedding matrix.

    Parameters
    ----------
    vocab_size, d_model, num_heads, d_ff, num_layers, max_position : int (keyword-only)
    dropout : float
    layer_norm_eps : float
        BERT: 1e-12.
    rng : Generator or int, optional

    Attributes
    ----------
    embeddings : BertEmbeddings (its ``word`` table is the tied output matrix)
    encoder : TransformerEncoder
    head : MaskedLMHead
    """

    def __init__(self, *, vocab_size: int, d_model: int, num_heads: int, d_ff: int,
                 num_layers: int, max_position: int, dropout: float = 0.0,
                 layer_norm_eps: float = 1e-12, rng=None):
        rng = as_rng(rng)
        self.vocab_size = check_int(vocab_size, "vocab_size", 2)
        self.d_model = check_int(d_model, "d_model", 1)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.embeddings = BertEmbeddings(vocab_size=vocab_size, d_model=d_model,
                                         max_position=max_position, type_vocab_size=1,
                                         layer_norm_eps=layer_norm_eps, dropout=dropout,
                                         padding_idx=0, rng=rng)
        self.encoder = TransformerEncoder(num_layers=num_layers, d_model=d_model,
                                          num_heads=num_heads, d_ff=d_ff, dropout=dropout,
                                          activation="gelu", layer_norm_eps=layer_norm_eps,
                                          rng=rng)
        self.head = MaskedLMHead(d_model, vocab_size, layer_norm_eps=layer_norm_eps, rng=rng)

    def word_embeddings(self) -> Tensor:
        """The tied ``(vocab_size, d_model)`` matrix (input lookup and output decoder)."""
        return embedding_matrix(self.embeddings.word)

    def encode(self, ids, attention_mask=None, *, output_hidden_states: bool = False):
        """Hidden states of the top layer.

        Parameters
        ----------
        ids : int ndarray of shape (B, n)
        attention_mask : int or bool ndarray of shape (B, n), optional
            1 for real tokens, 0 for padding (default: ``ids != 0``).
        output_hidden_states : bool
            Return the :class:`EncoderOutput` with every layer's states (``num_layers + 1``).

        Returns
        -------
        Tensor of shape (B, n, d_model), or EncoderOutput
        """
        ids = np.asarray(data_of(ids))
        if ids.dtype.kind not in "iu" or ids.ndim != 2 or ids.size == 0:
            raise TypeError(f"ids must be a non-empty integer array of shape (B, n), got "
                            f"{ids.dtype} of shape {ids.shape}")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got values in "
                             f"[{ids.min()}, {ids.max()}]")
        valid = ids != 0 if attention_mask is None else np.asarray(attention_mask).astype(bool)
        if valid.shape != ids.shape:
            raise ValueError(f"attention_mask must have shape {ids.shape}, got {valid.shape}")
        out = self.encoder(self.embeddings(ids), key_padding_mask=~valid,
                           output_hidden_states=output_hidden_states)
        return out

    def forward(self, ids, attention_mask=None, rows=None) -> Tensor:
        """Logits ``(B, n, V)`` (or ``(B, n, hi − lo)`` with ``rows``) at every position."""
        h = self.encode(ids, attention_mask)
        return self.head(h, self.word_embeddings(), rows)

    def mlm_loss(self, ids, labels, attention_mask=None) -> Tensor:
        """Mean cross-entropy at the positions whose label is not :data:`IGNORE_INDEX`
        (BERT's MLM loss); the head runs on those positions only.

        Parameters
        ----------
        ids : int ndarray of shape (B, n)
            The corrupted input (``[MASK]``, random or kept tokens at the predicted positions).
        labels : int ndarray of shape (B, n)
            The original ids at predicted positions, ``IGNORE_INDEX`` elsewhere.
        """
        labels = np.asarray(labels)
        if labels.shape != np.shape(ids):
            raise ValueError(f"labels must have shape {np.shape(ids)}, got {labels.shape}")
        pos = labels != IGNORE_INDEX
        if not pos.any():
            raise ValueError("labels must mark at least one position (all are IGNORE_INDEX)")
        h = self.encode(ids, attention_mask)
        logits = self.head(h[pos], self.word_embeddings())  # (N, V)
        return cross_entropy(logits, labels[pos])

    def __repr__(self) -> str:
        return (f"MaskedLanguageModel(vocab_size={self.vocab_size}, d_model={self.d_model}, "
                f"num_layers={self.num_layers})")

