"""Quantisation-aware models for the §3 claims in miniature, built on :mod:`refimpl.nn`.

Training uses :func:`refimpl.nn.fit` with :class:`refimpl.nn.Adam` (whose
:meth:`~refimpl.nn.Adam.preconditioner` is the curvature ``d`` of loss-aware binarisation,
Survey Eqs. (25)–(26)); the models are :mod:`refimpl.nn` models where one exists
(:class:`refimpl.nn.TransformerClassifier`, and :class:`QuantBowClassifier`, a
:class:`refimpl.nn.BowClassifier` whose embedding table goes through a quantiser). What
:mod:`refimpl.nn` lacks, and this module adds:

* :func:`weight_quantizer` — the §3.2–3.3 weight quantisers as straight-through ``Tensor ->
  Tensor`` maps, by name;
* :class:`QuantLSTMClassifier` — an LSTM classifier whose ``W_ih, W_hh`` pass through such a
  quantiser in every forward pass (``refimpl.nn.LSTM`` reads its weights directly, so it has
  no hook for this);
* :func:`sentiment_task` and :func:`trained_tiny_transformer`, the shared miniature task and a
  cached trained one-layer Transformer.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from refimpl.nn import (BowClassifier, Embedding, Linear, Module, Parameter, Tensor,
                        TransformerClassifier, fit)
from refimpl.nn import functional as F
from refimpl.nn.recurrent import lstm_cell
from refimpl.utils import as_rng, validate_scalars

__all__ = ["weight_quantizer", "QuantLSTMClassifier", "QuantBowClassifier", "sentiment_task",
           "tiny_transformer", "trained_tiny_transformer"]


def weight_quantizer(kind: str, opt_ref: list | None = None) -> Callable[[Tensor], Tensor]:
    """A weight quantiser ``Tensor -> Tensor`` (straight-through gradient) by name.

    ``"float"`` (identity), ``"binary"`` (BinaryConnect: ``sign(W)``, ±1 unscaled),
    ``"bwn"`` (``mean|W| · sign(W)``, Eqs. 22–24), ``"twn"`` (Eqs. 30–34), ``"lab"``
    (loss-aware, ``‖d⊙W‖₁/‖d‖₁ · sign(W)`` with ``d`` the
    :meth:`refimpl.nn.Adam.preconditioner` of the Adam in ``opt_ref[0]``, Eqs. 25–26), ``"uniform<k>"`` (Eq. 39), ``"alt<k>"`` (alternating multi-bit, Eqs. 55–56).
    """
    from refimpl.quantization.multibit import multibit_alternating, multibit_reconstruct
    from refimpl.quantization.ternary import twn
    from refimpl.quantization.uniform import quantize_uniform

    if kind == "float":
        return lambda W: W
    if kind == "binary":
        return lambda W: F.straight_through(W, lambda a: np.where(a >= 0, 1.0, -1.0),
                                            clip_at=1.0, name="binaryconnect")
    if kind == "bwn":
        return lambda W: F.straight_through(
            W, lambda a: np.abs(a).mean() * np.where(a >= 0, 1.0, -1.0), name="bwn")
    if kind == "twn":
        def _twn(a):
            alpha, T, _ = twn(a)
            return alpha * T
        return lambda W: F.straight_through(W, _twn, name="twn")
    if kind == "lab":
        def _lab(W):
            d = opt_ref[0].preconditioner(W) if opt_ref else np.ones_like(W.data)

            def fn(a):
                return float(np.abs(d * a).sum() / d.sum()) * np.where(a >= 0, 1.0, -1.0)
            return F.straight_through(W, fn, name="lab")
        return _lab
    if kind.startswith("uniform"):
        k = int(kind[7:])
        return lambda W: F.straight_through(W, lambda a: quantize_uniform(a, k), name=kind)
    if kind.startswith("alt"):
        k = int(kind[3:])

        def _alt(a):
            rows = [multibit_reconstruct(*multibit_alternating(r, k)) for r in a]
            return np.stack(rows).reshape(a.shape)
        return lambda W: F.straight_through(W, _alt, name=kind)
    raise ValueError(f"kind must be float, binary, bwn, twn, lab, uniform<k> or alt<k>, "
                     f"got {kind!r}")


class QuantLSTMClassifier(Module):
    """Embedding → one LSTM layer whose ``W_ih, W_hh`` pass through a weight quantiser in every
    forward pass (full-precision weights kept for the updates) → linear on the last state.

    Part of the Survey §3 claims in miniature.
    """

    def __init__(self, vocab_size: int, d_emb: int, hidden: int, n_classes: int,
                 quant: Callable[[Tensor], Tensor] | None = None, rng=0):
        rng = as_rng(rng)
        self.emb = Embedding(vocab_size, d_emb, rng=rng)
        s = 1 / np.sqrt(hidden)
        self.W_ih = Parameter(rng.uniform(-s, s, (4 * hidden, d_emb)))
        self.W_hh = Parameter(rng.uniform(-s, s, (4 * hidden, hidden)))
        self.b = Parameter(np.zeros(4 * hidden))
        self.out = Linear(hidden, n_classes, rng=rng)
        self.hidden = hidden
        self.quant = quant or (lambda W: W)

    def forward(self, X, lengths):
        X = np.asarray(X)
        B, T = X.shape
        E = self.emb(X)  # (B, T, d_emb)
        Wi, Wh = self.quant(self.W_ih), self.quant(self.W_hh)
        h = Tensor(np.zeros((B, self.hidden)))
        c = Tensor(np.zeros((B, self.hidden)))
        mask = (np.arange(T)[None, :] < np.asarray(lengths)[:, None]).astype(float)  # (B, T)
        for t in range(T):
            hn, cn = lstm_cell(E[:, t, :], (h, c), Wi, Wh, self.b)
            m = mask[:, t:t + 1]  # (B, 1): keep the state after the end of a sentence
            h = hn * m + h * (1.0 - m)
            c = cn * m + c * (1.0 - m)
        return self.out(h)


class QuantBowClassifier(BowClassifier):
    """Mean of (optionally quantised) word embeddings → linear: the §3.3.5 embedding model.

    A :class:`refimpl.nn.BowClassifier` without hidden layer (``logits = W mean_t E[x_t] + b``)
    whose table ``E`` passes through ``quant`` (a straight-through ``Tensor -> Tensor`` map,
    e.g. :func:`refimpl.quantization.embeddings_transformers.embedding_quantizer`) in every
    forward pass; the full-precision table is what the optimiser updates.

    Parameters
    ----------
    vocab_size, d_emb, n_classes : int
    quant : callable, optional
    rng : Generator or int, optional
    """

    def __init__(self, vocab_size: int, d_emb: int, n_classes: int,
                 quant: Callable[[Tensor], Tensor] | None = None, rng=0):
        super().__init__(vocab_size, d_emb, n_classes, d_hidden=None, rng=rng)
        self.quant = quant

    def features(self, X, lengths=None) -> Tensor:
        """The pooled sentence vector (B, d_emb) from the (quantised) table."""
        if self.quant is None:
            return super().features(X, lengths)
        from refimpl.nn import models
        from refimpl.nn.recurrent import length_mask

        # the pooling BowClassifier uses (public ``masked_mean_pool`` in newer refimpl.nn)
        pool = getattr(models, "masked_mean_pool", None) or models._masked_mean
        X, L = models.check_tokens(X, lengths, self.vocab_size)
        E = F.embedding(self.quant(self.embedding.W), X)  # (B, T, d_emb)
        return pool(E, length_mask(L, X.shape[1]))


@validate_scalars
def sentiment_task(quick: bool = True):
    """The small ``make_sentiment`` task every §3 miniature uses (1000 training sentences in
    quick mode, 4000 otherwise; vocabulary 300; length ≤ 16)."""
    from refimpl.data import make_sentiment

    return make_sentiment(n_train=1000 if quick else 4000, n_val=100,
                          n_test=400 if quick else 1000, vocab_size=300, max_len=16, rng=0)


def tiny_transformer(task, rng=0) -> TransformerClassifier:
    """One post-LN encoder layer (d_model 16, 2 heads, ReLU FFN of 32) with mean pooling: a
    :class:`refimpl.nn.TransformerClassifier` sized for ``task``.

    Part of the Survey §3 claims in miniature.
    """
    return TransformerClassifier(len(task.vocab), 16, 2, 32, 1, task.X_train.shape[1],
                                 task.n_classes, activation="relu", rng=rng)


_CACHE: dict = {}


@validate_scalars
def trained_tiny_transformer(quick: bool = True):
    """:func:`tiny_transformer` trained on :func:`sentiment_task` with :func:`refimpl.nn.fit`
    (Adam, lr 0.01, 6 epochs quick / 15 full; deterministic; trained once per process and
    cached). Returns ``(task, model, state_dict)`` with a fresh model loaded from the cached
    state.

    Part of the Survey §3 claims in miniature.
    """
    if quick not in _CACHE:
        task = sentiment_task(quick)
        m = tiny_transformer(task)
        fit(m, (task.X_train, task.len_train, task.y_train), epochs=6 if quick else 15,
            lr=0.01, rng=0, progress=False)
        _CACHE[quick] = (task, m.state_dict())
    task, state = _CACHE[quick]
    m = tiny_transformer(task)
    m.load_state_dict(state)
    m.eval()
    return task, m, state
