"""Small models on the tape that the chapters compress: a bag-of-words MLP, LSTM/GRU and
Transformer classifiers, an LSTM language model (word- or char-level) and a GRU/LSTM
encoder-decoder with dot attention, greedy decoding and beam search (for sequence-level
distillation, §4.1).

Conventions
-----------
* Token arrays ``X`` are int64 of shape (B, T), right-padded with ``0 = <pad>``; ``lengths``
  (B,) are the real lengths in ``[1, T]`` (computed from ``X != 0`` when omitted).
* Classifiers are called as ``model(X, lengths) -> logits`` Tensor of shape (B, n_classes).
* Every model takes its configuration as keyword arguments only
  (``RNNClassifier(vocab_size=300, d_emb=32, d_hidden=64, n_classes=2)``), never a row of
  positional integers.
* Language-model rows are ``<bos> w_1 ... w_n <eos>`` (:class:`refimpl.data.LMTask`): the model
  reads ``X[:, :-1]`` and predicts ``X[:, 1:]``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.layers import Dropout, Embedding, LayerNorm, Linear
from refimpl.nn.losses import cross_entropy
from refimpl.nn.module import Module, ModuleList
from refimpl.nn.recurrent import GRU, LSTM, length_mask
from refimpl.nn.tensor import Parameter, Tensor, data_of, no_grad
from refimpl.nn.transformer import (
    EncoderOutput,
    TransformerEncoderLayer,
    cls_pool,
    encode_layers,
    masked_mean_pool,
)
from refimpl.utils import as_rng, check_choice, check_float, check_int

__all__ = ["check_tokens", "BowClassifier", "RNNClassifier", "LSTMLanguageModel",
           "TransformerClassifier", "TransformerLanguageModel", "Seq2Seq", "PAD", "BOS",
           "EOS"]

PAD, BOS, EOS = 0, 2, 3  # refimpl.data.vocab's special ids (nn does not import data)


def check_tokens(X, lengths=None, vocab_size: int | None = None, name: str = "X",
                 max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate padded token ids and their lengths.

    Parameters
    ----------
    X : int ndarray of shape (B, T)
    lengths : int ndarray of shape (B,), optional
        Default: the number of non-pad tokens of each row (rows must then be right-padded).
    vocab_size : int, optional
        Ids must lie in ``[0, vocab_size)``.
    max_len : int, optional
        ``T`` must not exceed it (learned position tables).

    Returns
    -------
    X : ndarray of shape (B, T), int64
    lengths : ndarray of shape (B,), int64
    """
    X = np.asarray(data_of(X))
    if X.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of token ids, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (B, T), got {X.shape}")
    B, T = X.shape
    if B == 0 or T == 0:
        raise ValueError(f"{name} must not be empty, got shape {X.shape}")
    if vocab_size is not None and (X.min() < 0 or X.max() >= vocab_size):
        raise ValueError(f"{name} token ids must lie in [0, {vocab_size}), got values in "
                         f"[{X.min()}, {X.max()}]")
    if max_len is not None and T > max_len:
        raise ValueError(f"{name} has T={T} positions, more than max_len={max_len}")
    if lengths is None:
        lengths = np.maximum((X != PAD).sum(axis=1), 1)
    L = np.asarray(data_of(lengths))
    if L.dtype.kind not in "iu":
        raise TypeError(f"lengths must be an integer array, got dtype {L.dtype}")
    if L.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {L.shape}")
    if L.min() < 1 or L.max() > T:
        raise ValueError(f"lengths must lie in [1, T={T}], got values in [{L.min()}, {L.max()}]")
    return X.astype(np.int64, copy=False), L.astype(np.int64, copy=False)


def _token_nll(model, X, lengths) -> np.ndarray:
    """The language models' ``token_nll``: per-token NLL (nats) of ``X[:, 1:]`` given
    ``X[:, :-1]`` under ``model(X, lengths)`` logits, shape (B, T-1), NaN where there is no
    target."""
    X, L = check_tokens(X, lengths, model.vocab_size)
    T = X.shape[1]
    with no_grad():
        logits = model(X[:, :-1], np.maximum(L - 1, 1))
    valid = np.arange(1, T)[None, :] < L[:, None]
    y = np.where(valid, X[:, 1:], 0)
    per = cross_entropy(logits, y, reduction="none").data
    return np.where(valid, per, np.nan)


def _ancestral_sample(model, step, n: int, max_len: int, temperature: float, rng, bos: int,
                      eos: int) -> tuple[np.ndarray, np.ndarray]:
    """The sampling loop of the language models' ``sample``: ``step(X, t, state)`` returns the
    next-token logits (n, V) after position ``t`` and the carried state; a token is drawn from
    softmax(logits / temperature) with padding excluded, rows stop at ``eos``. The model runs in
    eval mode under ``no_grad`` and its training flag is restored."""
    X = np.zeros((n, max_len + 1), np.int64)
    X[:, 0] = bos
    lengths = np.full(n, max_len + 1, np.int64)
    done = np.zeros(n, bool)
    was = model.training
    model.eval()
    state = None
    try:
        with no_grad():
            for t in range(max_len):
                logits, state = step(X, t, state)
                z = logits.astype(np.float64) / temperature
                p = np.exp(z - z.max(axis=1, keepdims=True))
                p[:, PAD] = 0.0  # never emit padding
                p /= p.sum(axis=1, keepdims=True)
                u = rng.random((n, 1))
                tok = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1)
                X[:, t + 1] = np.where(done, PAD, tok)
                ended = (~done) & (tok == eos)
                lengths[ended] = t + 2
                done |= ended
                if done.all():
                    break
    finally:
        model.train(was)
    return X, lengths


def _child_rng(rng) -> np.random.Generator:
    return np.random.default_rng(rng.integers(2**63))


# ---------------------------------------------------------------------------------------------
class BowClassifier(Module):
    """Bag of words: the mean of the embeddings of the real tokens, then an MLP.

    ``logits = W_2 relu(W_1 mean_t E[x_t] + b_1) + b_2`` (or a single linear layer when
    ``d_hidden`` is None). Order-blind by construction: the baseline an order-aware model must
    beat on the sentiment task.

    Parameters
    ----------
    vocab_size, d_emb, n_classes : int
    d_hidden : int or None
    dropout : float
    rng : Generator or int, optional

    Attributes
    ----------
    embedding : Embedding (padding_idx 0)
    fc1 : Linear or None
    fc : Linear (output layer)
    """

    def __init__(self, *, vocab_size: int, d_emb: int, n_classes: int, d_hidden: int | None = 64,
                 dropout: float = 0.0, rng=None):
        rng = as_rng(rng)
        self.vocab_size = check_int(vocab_size, "vocab_size", 1)
        self.n_classes = check_int(n_classes, "n_classes", 1)
        self.embedding = Embedding(vocab_size, d_emb, padding_idx=PAD, rng=rng)
        d = d_emb
        self.fc1 = None
        if d_hidden is not None:
            self.fc1 = Linear(d_emb, check_int(d_hidden, "d_hidden", 1), rng=rng)
            d = d_hidden
        self.dropout = Dropout(dropout, rng=_child_rng(rng))
        self.fc = Linear(d, n_classes, rng=rng)

    def features(self, X, lengths=None) -> Tensor:
        """The pooled sentence vector (B, d_emb)."""
        X, L = check_tokens(X, lengths, self.vocab_size)
        return masked_mean_pool(self.embedding(X), length_mask(L, X.shape[1]))

    def forward(self, X, lengths=None) -> Tensor:
        """``X`` (B, T) int64, ``lengths`` (B,) -> logits (B, n_classes)."""
        h = self.features(X, lengths)
        if self.fc1 is not None:
            h = F.relu(self.fc1(h))
        return self.fc(self.dropout(h))


# ---------------------------------------------------------------------------------------------
class RNNClassifier(Module):
    """Embedding -> (bi)LSTM/GRU -> pooled state -> linear classifier.

    Parameters
    ----------
    vocab_size, d_emb, d_hidden, n_classes : int
    cell : {"lstm", "gru"}
    num_layers : int
    bidirectional : bool
    pooling : {"last", "mean", "max"}
        "last": the final state of the top layer (both directions concatenated) at each
        sequence's last real token; "mean"/"max": over the top layer's outputs at real steps.
    dropout : float
        On the embeddings and before the classifier (and between recurrent layers).
    rng : Generator or int, optional

    Attributes
    ----------
    embedding : Embedding (padding_idx 0)
    rnn : LSTM or GRU
    fc : Linear (d_hidden * num_directions -> n_classes)
    """

    def __init__(self, *, vocab_size: int, d_emb: int, d_hidden: int, n_classes: int,
                 cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
                 pooling: str = "last", dropout: float = 0.0, rng=None):
        rng = as_rng(rng)
        self.vocab_size = check_int(vocab_size, "vocab_size", 1)
        self.n_classes = check_int(n_classes, "n_classes", 1)
        self.cell = check_choice(cell, "cell", ("lstm", "gru"))
        self.pooling = check_choice(pooling, "pooling", ("last", "mean", "max"))
        self.embedding = Embedding(vocab_size, d_emb, padding_idx=PAD, rng=rng)
        cls = LSTM if cell == "lstm" else GRU
        self.rnn = cls(d_emb, d_hidden, num_layers=num_layers, bidirectional=bidirectional,
                       dropout=dropout, rng=rng)
        self.dropout = Dropout(dropout, rng=_child_rng(rng))
        self.fc = Linear(d_hidden * self.rnn.num_directions, n_classes, rng=rng)

    def encode(self, X, lengths=None):
        """The top layer's per-token states (B, T, d_hidden * num_directions) and the pooled
        sentence vector (B, d_hidden * num_directions), from one pass."""
        X, L = check_tokens(X, lengths, self.vocab_size)
        out, state = self.rnn(self.dropout(self.embedding(X)), lengths=L)
        if self.pooling == "mean":
            return out, masked_mean_pool(out, length_mask(L, X.shape[1]))
        if self.pooling == "max":
            valid = length_mask(L, X.shape[1])[:, :, None]
            return out, F.masked_fill(out, ~np.broadcast_to(valid, out.shape), -1e30).max(axis=1)
        h = state[0] if self.cell == "lstm" else state  # (L*dirs, B, H)
        dirs = self.rnn.num_directions
        top = [h[(self.rnn.num_layers - 1) * dirs + d] for d in range(dirs)]
        return out, (top[0] if dirs == 1 else F.concat(top, axis=-1))

    def features(self, X, lengths=None) -> Tensor:
        """The pooled sentence vector (B, d_hidden * num_directions)."""
        return self.encode(X, lengths)[1]

    def forward(self, X, lengths=None) -> Tensor:
        """``X`` (B, T) int64, ``lengths`` (B,) -> logits (B, n_classes)."""
        return self.fc(self.dropout(self.features(X, lengths)))


# ---------------------------------------------------------------------------------------------
class LSTMLanguageModel(Module):
    """Word- or character-level recurrent language model.

    ``logits_t = W_out h_t + b_out`` with ``h_t`` the top LSTM (or GRU) layer's state after
    reading ``x_1..x_t``. With ``tie_weights`` the output matrix is the embedding matrix
    (Press & Wolf 2017; requires ``d_emb == d_hidden``), one of the sharing methods of §5.2.

    Parameters
    ----------
    vocab_size, d_emb, d_hidden : int
    num_layers : int
    tie_weights : bool
    dropout : float
        On embeddings, between layers and before the output layer.
    cell : {"lstm", "gru"}
    rng : Generator or int, optional

    Attributes
    ----------
    embedding : Embedding (padding_idx 0)
    rnn : LSTM or GRU
    out : Linear (d_hidden -> vocab_size), or only its bias ``b_out`` when tied
    """

    def __init__(self, *, vocab_size: int, d_emb: int, d_hidden: int, num_layers: int = 1,
                 tie_weights: bool = False, dropout: float = 0.0, cell: str = "lstm",
                 rng=None):
        rng = as_rng(rng)
        self.vocab_size = check_int(vocab_size, "vocab_size", 1)
        self.cell = check_choice(cell, "cell", ("lstm", "gru"))
        self.tie_weights = bool(tie_weights)
        if tie_weights and d_emb != d_hidden:
            raise ValueError(f"tie_weights requires d_emb == d_hidden, got d_emb={d_emb}, "
                             f"d_hidden={d_hidden}")
        self.embedding = Embedding(vocab_size, d_emb, padding_idx=PAD, rng=rng)
        if tie_weights:  # N(0, 1) rows would make initial logits huge; use the Linear scale
            self.embedding.W.data = rng.uniform(-1, 1, (vocab_size, d_emb)) / np.sqrt(d_emb)
            self.embedding.W.data[PAD] = 0.0
        cls = LSTM if cell == "lstm" else GRU
        self.rnn = cls(d_emb, d_hidden, num_layers=num_layers, dropout=dropout, rng=rng)
        self.dropout = Dropout(dropout, rng=_child_rng(rng))
        if tie_weights:
            self.out = None
            self.b_out = Parameter(np.zeros(vocab_size))
        else:
            self.out = Linear(d_hidden, vocab_size, rng=rng)

    def forward(self, X, lengths=None, state=None, return_state: bool = False):
        """Next-token logits for every position.

        Parameters
        ----------
        X : int ndarray of shape (B, T)
        lengths : int ndarray of shape (B,), optional
        state : initial recurrent state, optional (see :class:`LSTM`)
        return_state : bool
            Also return the final state (for truncated BPTT and generation).

        Returns
        -------
        logits : Tensor of shape (B, T, vocab_size)
        state : optional
        """
        X, L = check_tokens(X, lengths, self.vocab_size)
        h, st = self.rnn(self.dropout(self.embedding(X)), lengths=L, state=state)
        logits = self.output(self.dropout(h))  # (B, T, V)
        return (logits, st) if return_state else logits

    def output(self, h) -> Tensor:
        """Logits ``W_out h + b_out`` (the embedding matrix when tied), ``h`` (..., d_hidden)."""
        return F.linear(h, self.embedding.W, self.b_out) if self.tie_weights else self.out(h)

    def loss(self, X, lengths) -> Tensor:
        """Mean NLL (nats) of ``X[:, 1:]`` given ``X[:, :-1]`` over the predicted tokens
        (``t + 1 < lengths``) of ``<bos> ... <eos>`` rows."""
        X, L = check_tokens(X, lengths, self.vocab_size)
        if X.shape[1] < 2 or L.min() < 2:
            raise ValueError("lengths must be >= 2 (<bos> and at least one predicted token)")
        T = X.shape[1]
        h, _ = self.rnn(self.dropout(self.embedding(X[:, :-1])), lengths=L - 1)
        valid = np.arange(1, T)[None, :] < L[:, None]  # (B, T-1): a real target
        rows = np.flatnonzero(valid)
        h = h.reshape(-1, h.shape[-1])[rows]  # (n_targets, d_hidden): skip padded positions
        return cross_entropy(self.output(self.dropout(h)), X[:, 1:].reshape(-1)[rows])

    def sample(self, n: int, max_len: int = 30, *, temperature: float = 1.0, rng=None,
               bos: int = BOS, eos: int = EOS) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``n`` sequences ``<bos> w_1 ... <eos>`` by ancestral sampling (no gradients).

        Parameters
        ----------
        n, max_len : int
            Number of sequences; maximum tokens after ``<bos>`` (including ``<eos>``).
        temperature : float > 0
            Logits are divided by it (1: the model's distribution).
        rng : Generator or int, optional
        bos, eos : int

        Returns
        -------
        X : int64 ndarray of shape (n, max_len + 1)
            Rows ``<bos> ...`` padded with 0 after ``<eos>``.
        lengths : int64 ndarray of shape (n,)
            Including ``<bos>`` and ``<eos>`` (``max_len + 1`` when no ``<eos>`` was drawn).
        """
        n = check_int(n, "n", 1)
        max_len = check_int(max_len, "max_len", 1)
        temperature = check_float(temperature, "temperature", 0.0, lo_open=True)

        def step(X, t, state):  # one token in, the recurrent state carried
            logits, state = self(X[:, t:t + 1], state=state, return_state=True)
            return logits.data[:, 0], state

        return _ancestral_sample(self, step, n, max_len, temperature, as_rng(rng), bos, eos)

    def token_nll(self, X, lengths) -> np.ndarray:
        """Per-token NLL (nats) of ``X[:, 1:]`` given ``X[:, :-1]``.

        Returns
        -------
        ndarray of shape (B, T-1)
            NaN where there is no target (``t + 1 >= lengths``).
        """
        return _token_nll(self, X, lengths)


# ---------------------------------------------------------------------------------------------
class TransformerClassifier(Module):
    """Token + learned position embeddings -> Transformer encoder layers -> pooling -> linear.

    Parameters
    ----------
    vocab_size, d_model, num_heads, d_ff, num_layers, max_len, n_classes : int
    pooling : {"mean", "cls"}
        "mean": mean of the top layer over real tokens; "cls": a learned ``[CLS]`` vector is
        prepended (position 0) and its top-layer state is classified.
    dropout : float
    attention : callable, optional
        Attention function for every layer (see :class:`MultiHeadAttention`; §7 variants).
    activation : {"gelu", "relu"}
    norm_first : bool
        Pre-norm layers (a final LayerNorm is then applied).
    rng : Generator or int, optional

    Attributes
    ----------
    embedding : Embedding (padding_idx 0)
    pos : Parameter of shape (max_len [+1 with cls], d_model)
    cls : Parameter of shape (d_model,) (``pooling="cls"`` only)
    layers : ModuleList of TransformerEncoderLayer
    fc : Linear (d_model -> n_classes)
    """

    def __init__(self, *, vocab_size: int, d_model: int, num_heads: int, d_ff: int,
                 num_layers: int, max_len: int, n_classes: int, pooling: str = "mean",
                 dropout: float = 0.0, attention: Callable | None = None,
                 activation: str = "gelu", norm_first: bool = False, rng=None):
        rng = as_rng(rng)
        self.vocab_size = check_int(vocab_size, "vocab_size", 1)
        self.max_len = check_int(max_len, "max_len", 1)
        self.n_classes = check_int(n_classes, "n_classes", 1)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.pooling = check_choice(pooling, "pooling", ("mean", "cls"))
        self.d_model = check_int(d_model, "d_model", 1)
        if d_model % check_int(num_heads, "num_heads", 1):
            raise ValueError(f"num_heads must divide d_model, got d_model={d_model}, "
                             f"num_heads={num_heads}")
        self.num_heads = num_heads
        self.embedding = Embedding(vocab_size, d_model, padding_idx=PAD, rng=rng)
        n_pos = max_len + (pooling == "cls")
        self.pos = Parameter(rng.standard_normal((n_pos, d_model)) * 0.1)
        if pooling == "cls":
            self.cls = Parameter(rng.standard_normal(d_model) * 0.1)
        self.layers = ModuleList(
            TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=dropout,
                                    activation=activation, norm_first=norm_first,
                                    attention=attention, rng=rng) for _ in range(num_layers))
        self.final_norm = LayerNorm(d_model) if norm_first else None
        self.dropout = Dropout(dropout, rng=_child_rng(rng))
        self.fc = Linear(d_model, n_classes, rng=rng)

    def encode(self, X, lengths=None, head_mask=None, ffn_mask=None, layer_mask=None, *,
               output_hidden_states: bool = False, output_attentions: bool = False):
        """Top-layer states.

        Parameters
        ----------
        X : int ndarray (B, T); lengths : int ndarray (B,)
        head_mask : array or Tensor of shape (num_layers, num_heads) or
            (num_layers, B, num_heads), optional
            Gates ξ (Survey Eq. (18)); row ``l`` goes to layer ``l``.
        ffn_mask : array or Tensor of shape (num_layers, d_ff) or (num_layers, B, d_ff), optional
        layer_mask : array or Tensor of shape (num_layers,), optional
            Per-layer gate ``g_l`` (LayerDrop, Survey §2.4.2, Fan et al. 2019): layer ``l``
            computes ``h ← h + g_l (layer_l(h) − h)``, so ``g_l = 0`` skips the layer exactly
            (identity; the layer is not evaluated when the gate is a constant 0), ``g_l = 1``
            applies it, and a Tensor gate receives ``∂L/∂g_l`` (relaxed gates).
        output_hidden_states, output_attentions : bool
            Return an :class:`refimpl.nn.EncoderOutput` (every layer's hidden states and
            attention intermediates, as tape Tensors) instead of the top-layer Tensor.

        Returns
        -------
        h : Tensor of shape (B, T [+1 with cls], d_model), or EncoderOutput
        valid : bool ndarray of shape (B, T [+1])
        """
        X, L = check_tokens(X, lengths, self.vocab_size, max_len=self.max_len)
        B, T = X.shape
        valid = length_mask(L, T)
        h = self.embedding(X)  # (B, T, d)
        if self.pooling == "cls":
            c = self.cls.reshape(1, 1, self.d_model) + np.zeros((B, 1, self.d_model),
                                                                dtype=h.dtype)
            h = F.concat([c, h], axis=1)  # (B, T+1, d)
            valid = np.concatenate([np.ones((B, 1), bool), valid], axis=1)
        h = self.dropout(h + self.pos[: h.shape[1]])
        out = encode_layers(self.layers, h, key_padding_mask=~valid, head_mask=head_mask,
                            ffn_mask=ffn_mask, layer_mask=layer_mask,
                            final_norm=self.final_norm,
                            output_hidden_states=output_hidden_states,
                            output_attentions=output_attentions)
        if output_hidden_states or output_attentions:
            return out, valid
        return out.last_hidden_state, valid

    def _pool(self, h, valid) -> Tensor:
        return cls_pool(h) if self.pooling == "cls" else masked_mean_pool(h, valid)

    def features(self, X, lengths=None, head_mask=None, ffn_mask=None,
                 layer_mask=None) -> Tensor:
        """The pooled sentence vector (B, d_model) (masks as in :meth:`encode`)."""
        h, valid = self.encode(X, lengths, head_mask, ffn_mask, layer_mask)
        return self._pool(h, valid)

    def forward(self, X, lengths=None, head_mask=None, ffn_mask=None, layer_mask=None, *,
                output_hidden_states: bool = False, output_attentions: bool = False):
        """``X`` (B, T) int64, ``lengths`` (B,) -> logits (B, n_classes) (masks as in
        :meth:`encode`; ``layer_mask`` (num_layers,) 0 = skip a layer, LayerDrop §2.4.2).

        With ``output_hidden_states`` or ``output_attentions``: ``(logits, EncoderOutput)``.
        """
        flags = dict(output_hidden_states=output_hidden_states,
                     output_attentions=output_attentions)
        h, valid = self.encode(X, lengths, head_mask, ffn_mask, layer_mask, **flags)
        top = h.last_hidden_state if isinstance(h, EncoderOutput) else h
        logits = self.fc(self.dropout(self._pool(top, valid)))
        return (logits, h) if isinstance(h, EncoderOutput) else logits


# ---------------------------------------------------------------------------------------------
class TransformerLanguageModel(Module):
    """Causal (decoder-only, GPT-style) Transformer language model.

    ``logits_t = W_out LN(h_t^{(L)}) + b_out`` where ``h^{(0)}_t = E[x_t] + P[t]`` and every
    layer is the library's :class:`TransformerEncoderLayer` run with a causal mask (position
    ``t`` attends to ``1..t`` only), so it is the same Transformer the chapters compress
    (heads and FFN units gated as in Survey Eq. (18), §2.4; layers dropped as LayerDrop,
    §2.4.2; §7's attention functions through ``attention``) — one implementation, not a second
    Transformer. Same interface as :class:`LSTMLanguageModel` (``forward``, ``loss``,
    ``token_nll``, ``sample``), so :func:`refimpl.nn.fit_lm` trains it on rows and
    :func:`refimpl.nn.perplexity` evaluates it (there is no recurrent ``state``: a 1-D stream
    with carried state is refused).

    Parameters
    ----------
    vocab_size, d_model, num_heads, d_ff, num_layers, max_len : int
        ``max_len``: the longest input (positions have learned embeddings).
    dropout : float
    attention : callable, optional
        Attention function for every layer (see :class:`MultiHeadAttention`); it receives the
        causal "may attend" mask and must honour it (the model checks nothing about it).
    activation : {"gelu", "relu"}
    norm_first : bool
        Pre-norm layers followed by a final LayerNorm (GPT-2); post-norm otherwise.
    tie_weights : bool
        The output matrix is the token embedding matrix (Press & Wolf 2017, §5.2).
    rng : Generator or int, optional

    Attributes
    ----------
    embedding : Embedding (padding_idx 0)
    pos : Parameter of shape (max_len, d_model)
    layers : ModuleList of TransformerEncoderLayer
    final_norm : LayerNorm or None (``norm_first`` only)
    out : Linear (d_model -> vocab_size), or only its bias ``b_out`` when tied
    """

    def __init__(self, *, vocab_size: int, d_model: int, num_heads: int, d_ff: int,
                 num_layers: int, max_len: int, dropout: float = 0.0,
                 attention: Callable | None = None, activation: str = "gelu",
                 norm_first: bool = False, tie_weights: bool = False, rng=None):
        rng = as_rng(rng)
        self.vocab_size = check_int(vocab_size, "vocab_size", 1)
        self.max_len = check_int(max_len, "max_len", 1)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.d_model = check_int(d_model, "d_model", 1)
        if d_model % check_int(num_heads, "num_heads", 1):
            raise ValueError(f"num_heads must divide d_model, got d_model={d_model}, "
                             f"num_heads={num_heads}")
        self.num_heads = num_heads
        self.tie_weights = bool(tie_weights)
        self.embedding = Embedding(vocab_size, d_model, padding_idx=PAD, rng=rng)
        if tie_weights:  # N(0, 1) rows would make initial logits huge; use the Linear scale
            self.embedding.W.data = rng.uniform(-1, 1, (vocab_size, d_model)) / np.sqrt(d_model)
            self.embedding.W.data[PAD] = 0.0
        self.pos = Parameter(rng.standard_normal((max_len, d_model)) * 0.1)
        self.layers = ModuleList(
            TransformerEncoderLayer(d_model, num_heads, d_ff, dropout=dropout,
                                    activation=activation, norm_first=norm_first,
                                    attention=attention, rng=rng) for _ in range(num_layers))
        self.final_norm = LayerNorm(d_model) if norm_first else None
        self.dropout = Dropout(dropout, rng=_child_rng(rng))
        if tie_weights:
            self.out = None
            self.b_out = Parameter(np.zeros(vocab_size))
        else:
            self.out = Linear(d_model, vocab_size, rng=rng)

    def encode(self, X, lengths=None, head_mask=None, ffn_mask=None, layer_mask=None, *,
               output_hidden_states: bool = False, output_attentions: bool = False):
        """Top-layer states under the causal mask.

        Parameters
        ----------
        X : int ndarray (B, T), ``T <= max_len``; lengths : int ndarray (B,), optional
        head_mask, ffn_mask, layer_mask : optional
            As in :meth:`TransformerClassifier.encode` (Survey Eq. (18), §2.4.2).
        output_hidden_states, output_attentions : bool
            Return an :class:`refimpl.nn.EncoderOutput` instead of the top-layer Tensor.

        Returns
        -------
        h : Tensor of shape (B, T, d_model) (after the final LayerNorm), or EncoderOutput
        """
        X, L = check_tokens(X, lengths, self.vocab_size, max_len=self.max_len)
        T = X.shape[1]
        valid = length_mask(L, T)
        h = self.dropout(self.embedding(X) + self.pos[:T])
        causal = np.tril(np.ones((T, T), dtype=bool))  # True = may attend (keys <= query)
        out = encode_layers(self.layers, h, mask=causal, key_padding_mask=~valid,
                            head_mask=head_mask, ffn_mask=ffn_mask, layer_mask=layer_mask,
                            final_norm=self.final_norm,
                            output_hidden_states=output_hidden_states,
                            output_attentions=output_attentions)
        return out if output_hidden_states or output_attentions else out.last_hidden_state

    def forward(self, X, lengths=None, state=None, return_state: bool = False,
                head_mask=None, ffn_mask=None, layer_mask=None, *,
                output_hidden_states: bool = False, output_attentions: bool = False):
        """Next-token logits for every position.

        Parameters
        ----------
        X : int ndarray of shape (B, T)
        lengths : int ndarray of shape (B,), optional
        state : None
            Accepted for the :class:`LSTMLanguageModel` interface; anything but None raises
            (a Transformer has no recurrent state; pass the whole prefix).
        return_state : bool
            Also return ``None`` as the state.
        head_mask, ffn_mask, layer_mask : optional (see :meth:`encode`)
        output_hidden_states, output_attentions : bool
            Return ``(logits, EncoderOutput)`` (every layer's states / attention, as
            :meth:`TransformerClassifier.forward`).

        Returns
        -------
        logits : Tensor of shape (B, T, vocab_size)
        """
        if state is not None:
            raise ValueError("state must be None: a Transformer LM has no recurrent state "
                             "(pass the whole prefix)")
        flags = dict(output_hidden_states=output_hidden_states,
                     output_attentions=output_attentions)
        h = self.encode(X, lengths, head_mask, ffn_mask, layer_mask, **flags)
        top = h.last_hidden_state if isinstance(h, EncoderOutput) else h
        logits = self.output(self.dropout(top))
        if isinstance(h, EncoderOutput):
            return logits, h
        return (logits, None) if return_state else logits

    def output(self, h) -> Tensor:
        """Logits ``W_out h + b_out`` (the embedding matrix when tied), ``h`` (..., d_model)."""
        return F.linear(h, self.embedding.W, self.b_out) if self.tie_weights else self.out(h)

    def loss(self, X, lengths, **masks) -> Tensor:
        """Mean NLL (nats) of ``X[:, 1:]`` given ``X[:, :-1]`` over the predicted tokens
        (``t + 1 < lengths``) of ``<bos> ... <eos>`` rows (``masks``: see :meth:`encode`)."""
        X, L = check_tokens(X, lengths, self.vocab_size)
        if X.shape[1] < 2 or L.min() < 2:
            raise ValueError("lengths must be >= 2 (<bos> and at least one predicted token)")
        T = X.shape[1]
        h = self.encode(X[:, :-1], L - 1, **masks)
        valid = np.arange(1, T)[None, :] < L[:, None]  # (B, T-1): a real target
        rows = np.flatnonzero(valid)
        h = h.reshape(-1, h.shape[-1])[rows]  # (n_targets, d_model): skip padded positions
        return cross_entropy(self.output(self.dropout(h)), X[:, 1:].reshape(-1)[rows])

    def token_nll(self, X, lengths) -> np.ndarray:
        """Per-token NLL (nats) of ``X[:, 1:]`` given ``X[:, :-1]``: (B, T-1), NaN where there
        is no target (``t + 1 >= lengths``)."""
        return _token_nll(self, X, lengths)

    def sample(self, n: int, max_len: int = 30, *, temperature: float = 1.0, rng=None,
               bos: int = BOS, eos: int = EOS) -> tuple[np.ndarray, np.ndarray]:
        """Ancestral sampling as :meth:`LSTMLanguageModel.sample` (the whole prefix is re-read
        at every step; ``max_len + 1 <= self.max_len``)."""
        n = check_int(n, "n", 1)
        max_len = check_int(max_len, "max_len", 1)
        if max_len > self.max_len:
            raise ValueError(f"max_len must be <= the model's max_len {self.max_len}, "
                             f"got {max_len}")
        temperature = check_float(temperature, "temperature", 0.0, lo_open=True)

        def step(X, t, state):  # the whole prefix re-read, no state
            logits = self(X[:, :t + 1], np.full(n, t + 1))
            return logits.data[:, t], None

        return _ancestral_sample(self, step, n, max_len, temperature, as_rng(rng), bos, eos)


# ---------------------------------------------------------------------------------------------
class Seq2Seq(Module):
    """GRU/LSTM encoder-decoder with optional Luong dot attention.

    Encoder: ``enc_t`` = RNN(E_src x_t); the decoder RNN starts from the encoder's final
    state and reads the previous target token. With attention (Luong et al. 2015, "dot")::

        a_{tj} = softmax_j(d_t · enc_j)   over real source positions
        c_t = Σ_j a_{tj} enc_j
        o_t = tanh(W_c [d_t; c_t] + b_c)

    and ``logits_t = W_out o_t + b_out`` (``o_t = d_t`` without attention). Teacher forcing
    and step-by-step decoding give identical logits (tested).

    Parameters
    ----------
    src_vocab, tgt_vocab, d_emb, d_hidden : int
    cell : {"gru", "lstm"}
    attention : bool
    num_layers : int
    dropout : float
    bos, eos : int
        Target start and end ids (refimpl.data's 2 and 3).
    rng : Generator or int, optional
    """

    def __init__(self, *, src_vocab: int, tgt_vocab: int, d_emb: int, d_hidden: int,
                 cell: str = "gru", attention: bool = True, num_layers: int = 1,
                 dropout: float = 0.0, bos: int = BOS, eos: int = EOS, rng=None):
        rng = as_rng(rng)
        self.src_vocab = check_int(src_vocab, "src_vocab", 1)
        self.tgt_vocab = check_int(tgt_vocab, "tgt_vocab", 1)
        self.cell = check_choice(cell, "cell", ("gru", "lstm"))
        self.use_attention = bool(attention)
        self.bos = check_int(bos, "bos", 0, tgt_vocab - 1)
        self.eos = check_int(eos, "eos", 0, tgt_vocab - 1)
        cls = LSTM if cell == "lstm" else GRU
        self.src_embedding = Embedding(src_vocab, d_emb, padding_idx=PAD, rng=rng)
        self.tgt_embedding = Embedding(tgt_vocab, d_emb, padding_idx=PAD, rng=rng)
        self.encoder = cls(d_emb, d_hidden, num_layers=num_layers, dropout=dropout, rng=rng)
        self.decoder = cls(d_emb, d_hidden, num_layers=num_layers, dropout=dropout, rng=rng)
        self.combine = Linear(2 * d_hidden, d_hidden, rng=rng) if attention else None
        self.dropout = Dropout(dropout, rng=_child_rng(rng))
        self.out = Linear(d_hidden, tgt_vocab, rng=rng)

    def encode(self, src, src_len=None):
        """Encoder outputs (B, S, H), final state, and the source validity mask (B, S)."""
        src, SL = check_tokens(src, src_len, self.src_vocab, name="src")
        enc, state = self.encoder(self.dropout(self.src_embedding(src)), lengths=SL)
        return enc, state, length_mask(SL, src.shape[1])

    def _output(self, dec: Tensor, enc: Tensor, src_valid: np.ndarray) -> Tensor:
        """Logits (B, T, V) from decoder states (B, T, H) and encoder outputs (B, S, H)."""
        if self.use_attention:
            scores = F.matmul(dec, enc.transpose(0, 2, 1))  # (B, T, S)
            allow = np.broadcast_to(src_valid[:, None, :], scores.shape)
            a = F.softmax(F.masked_fill(scores, ~allow, -1e30), axis=-1)
            ctx = F.matmul(a, enc)  # (B, T, H)
            dec = F.tanh(self.combine(F.concat([dec, ctx], axis=-1)))
        return self.out(self.dropout(dec))

    def forward(self, src, src_len, tgt_in) -> Tensor:
        """Teacher-forced logits.

        Parameters
        ----------
        src : int ndarray (B, S); src_len : int ndarray (B,)
        tgt_in : int ndarray (B, T)
            Decoder inputs ``<bos> y_1 ... `` (i.e. ``tgt[:, :-1]``).

        Returns
        -------
        Tensor of shape (B, T, tgt_vocab)
        """
        enc, state, src_valid = self.encode(src, src_len)
        tgt_in, _ = check_tokens(tgt_in, np.full(len(tgt_in), np.shape(tgt_in)[1]),
                                 self.tgt_vocab, name="tgt_in")
        if tgt_in.shape[0] != enc.shape[0]:
            raise ValueError(f"tgt_in must have {enc.shape[0]} rows, got {tgt_in.shape[0]}")
        dec, _ = self.decoder(self.dropout(self.tgt_embedding(tgt_in)), state=state)
        return self._output(dec, enc, src_valid)

    def loss(self, src, src_len, tgt, tgt_len) -> Tensor:
        """Mean token cross-entropy of ``tgt[:, 1:]`` (up to each row's ``<eos>``)."""
        tgt, TL = check_tokens(tgt, tgt_len, self.tgt_vocab, name="tgt")
        T = tgt.shape[1]
        logits = self(src, src_len, tgt[:, :-1])
        y = np.where(np.arange(1, T)[None, :] < TL[:, None], tgt[:, 1:], -1)
        return cross_entropy(logits, y, ignore_index=-1)

    def _step(self, y_prev: np.ndarray, state, enc, src_valid):
        """One decoding step: log-probs (N, V) and the new state."""
        x = self.tgt_embedding(y_prev[:, None])  # (N, 1, E)
        dec, state = self.decoder(x, state=state)
        logits = self._output(dec, enc, src_valid)  # (N, 1, V)
        return F.log_softmax(logits, axis=-1).data[:, 0], state

    @staticmethod
    def _select(state, idx):
        if isinstance(state, tuple):
            return tuple(Tensor(s.data[:, idx]) for s in state)
        return Tensor(state.data[:, idx])

    def greedy_decode(self, src, src_len=None, max_len: int = 30):
        """Greedy decoding (no gradients).

        Returns
        -------
        tokens : int64 ndarray of shape (B, max_len)
            Predicted ids after ``<bos>``, up to and including ``<eos>``, padded with 0.
        lengths : int64 ndarray of shape (B,)
            Number of tokens including the ``<eos>`` (``max_len`` if none was produced).
        """
        max_len = check_int(max_len, "max_len", 1)
        was = self.training
        self.eval()
        try:
            with no_grad():
                enc, state, src_valid = self.encode(src, src_len)
                B = enc.shape[0]
                out = np.zeros((B, max_len), np.int64)
                done = np.zeros(B, bool)
                lengths = np.full(B, max_len, np.int64)
                y = np.full(B, self.bos, np.int64)
                for t in range(max_len):
                    lp, state = self._step(y, state, enc, src_valid)
                    y = lp.argmax(axis=-1)
                    out[:, t] = np.where(done, 0, y)
                    new_end = (~done) & (y == self.eos)
                    lengths[new_end] = t + 1
                    done |= new_end
                    if done.all():
                        break
        finally:
            self.train(was)
        return out, lengths

    def beam_search(self, src, src_len=None, beam_size: int = 4, max_len: int = 30,
                    length_penalty: float = 0.0):
        """Beam search (no gradients), the decoder of sequence-level KD (Kim & Rush 2016).

        Hypotheses are ranked by ``Σ log p / len^α`` with ``α = length_penalty`` (0: plain
        sum of log-probabilities); a hypothesis ends at ``<eos>`` (counted in its length).

        Returns
        -------
        tokens : int64 ndarray of shape (B, beam_size, max_len)
            Hypotheses best first, tokens after ``<bos>`` up to and including ``<eos>``,
            padded with 0.
        scores : float ndarray of shape (B, beam_size)
            Their ranking scores (sum of log-probs when ``length_penalty=0``).
        lengths : int64 ndarray of shape (B, beam_size)
        """
        K = check_int(beam_size, "beam_size", 1)
        max_len = check_int(max_len, "max_len", 1)
        alpha = check_float(length_penalty, "length_penalty", 0.0)
        was = self.training
        self.eval()
        try:
            with no_grad():
                enc, state, src_valid = self.encode(src, src_len)
                B = enc.shape[0]
                results = self._beam_batch(state, enc, src_valid, K, max_len, alpha)
        finally:
            self.train(was)
        toks = np.zeros((B, K, max_len), np.int64)
        scores = np.full((B, K), -np.inf)
        lens = np.zeros((B, K), np.int64)
        for b, r in enumerate(results):
            for k, (sc, seq) in enumerate(r[:K]):
                toks[b, k, :len(seq)] = seq
                scores[b, k] = sc
                lens[b, k] = len(seq)
        return toks, scores, lens

    def _beam_batch(self, state, enc, src_valid, K, max_len, alpha):
        """Beam search for all B sources at once (B·K decoder rows per step).

        Each source keeps K live hypotheses (dummies with score −inf while it has fewer) and
        its own list of finished ones. Per step the 2K best expansions of its live
        hypotheses (by sum of log-probs) are visited in order: ``<eos>`` ones finish, the
        others fill the K live slots. A source is done when the K-th best finished score is
        at least the best live score (``α = 0``: sums only decrease) or nothing is live.
        """

        def rank(logp, n):
            return logp / (n ** alpha) if alpha else logp

        B = enc.shape[0]
        V = self.tgt_vocab
        rows = np.repeat(np.arange(B), K)                     # (B*K,) source of each row
        enc_r = Tensor(enc.data[rows])                        # (B*K, S, H)
        valid_r = src_valid[rows]
        st = self._select(state, rows)
        live_scores = np.full((B, K), -np.inf)
        live_scores[:, 0] = 0.0                               # one real hypothesis at start
        live = [[[] for _ in range(K)] for _ in range(B)]     # tokens of each live slot
        finished = [[] for _ in range(B)]
        done = np.zeros(B, bool)
        y = np.full(B * K, self.bos, np.int64)
        for _ in range(max_len):
            lp, st_new = self._step(y, st, enc_r, valid_r)    # (B*K, V)
            cand = (live_scores.reshape(-1, 1) + lp).reshape(B, K * V)
            top = np.argsort(-cand, axis=1, kind="stable")[:, :2 * K]  # (B, 2K)
            new_scores = np.full((B, K), -np.inf)
            new_src = np.zeros((B, K), np.int64)
            new_tok = np.zeros((B, K), np.int64)
            for b in range(B):
                if done[b]:
                    continue
                new_live, n = [], 0
                for f in top[b]:
                    sc = cand[b, f]
                    if sc == -np.inf:
                        break
                    k, tok = divmod(int(f), V)
                    seq = live[b][k] + [tok]
                    if tok == self.eos:
                        finished[b].append((rank(sc, len(seq)), seq))
                    else:
                        new_scores[b, n], new_src[b, n], new_tok[b, n] = sc, k, tok
                        new_live.append(seq)
                        n += 1
                        if n == K:
                            break
                live[b] = new_live + [[] for _ in range(K - n)]
                finished[b].sort(key=lambda r: -r[0])
                best_live = max((rank(new_scores[b, j], len(new_live[j])) for j in range(n)),
                                default=-np.inf)
                if n == 0 or (alpha == 0 and len(finished[b]) >= K
                              and finished[b][K - 1][0] >= best_live):
                    done[b] = True
                    new_scores[b] = -np.inf
            if done.all():
                break
            live_scores = new_scores
            st = self._select(st_new, (np.arange(B)[:, None] * K + new_src).reshape(-1))
            y = new_tok.reshape(-1)
        for b in range(B):  # sources still live at max_len: their unfinished hypotheses
            if not done[b]:
                for j in range(K):
                    if np.isfinite(live_scores[b, j]):
                        finished[b].append((rank(live_scores[b, j], len(live[b][j])),
                                            live[b][j]))
            finished[b].sort(key=lambda r: -r[0])
        return finished
