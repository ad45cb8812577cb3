"""Small training helpers for the §3 miniature experiments: Adam (exposing its second moment,
which loss-aware binarisation needs), cross-entropy, a minibatch loop with a time budget, and
the tiny models the claims use (an LSTM classifier with pluggable weight quantisers, a bag of
embeddings, a one-layer Transformer classifier).

Kept inside ``refimpl.quantization`` so the chapter's checks depend only on the tape core of
:mod:`refimpl.nn`.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from refimpl.nn import Module, Parameter, Tensor, no_grad
from refimpl.nn import functional as F
from refimpl.nn.attention import MultiHeadAttention
from refimpl.nn.layers import Embedding, LayerNorm, Linear
from refimpl.nn.recurrent import lstm_cell
from refimpl.utils import as_rng

__all__ = ["Adam", "cross_entropy", "fit_classifier", "accuracy", "QuantLSTMClassifier",
           "BagOfEmbeddings", "TinyTransformerClassifier", "weight_quantizer", "sentiment_task",
           "trained_tiny_transformer"]


class Adam:
    """Adam (Kingma & Ba 2015) over a list of Parameters; ``d(p)`` is ``sqrt(v̂) + ε``, the
    diagonal curvature estimate of loss-aware binarisation (Hou et al. 2017)."""

    def __init__(self, params, lr: float = 1e-2, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = {id(p): np.zeros_like(p.data) for p in self.params}
        self.v = {id(p): np.zeros_like(p.data) for p in self.params}
        self.t = 0

    def d(self, p) -> np.ndarray:
        if self.t == 0:
            return np.ones_like(p.data)
        return np.sqrt(self.v[id(p)] / (1 - self.b2 ** self.t)) + self.eps

    def step(self) -> None:
        self.t += 1
        for p in self.params:
            if p.grad is None:
                continue
            k = id(p)
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * p.grad
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * p.grad ** 2
            mh = self.m[k] / (1 - self.b1 ** self.t)
            vh = self.v[k] / (1 - self.b2 ** self.t)
            p.data = p.data - self.lr * mh / (np.sqrt(vh) + self.eps)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def cross_entropy(logits: Tensor, y) -> Tensor:
    """Mean cross-entropy of integer labels ``y`` (B,) under ``logits`` (B, C)."""
    lp = F.log_softmax(logits, axis=-1)  # (B, C)
    B = lp.shape[0]
    onehot = np.zeros(lp.shape)
    onehot[np.arange(B), np.asarray(y)] = 1.0
    return -(lp * onehot).sum() / B


def accuracy(model, X, L, y, batch: int = 512) -> float:
    """Classification accuracy of ``model(X, L)``."""
    with no_grad():
        pred = np.concatenate([model(X[i:i + batch], L[i:i + batch]).data.argmax(-1)
                               for i in range(0, len(X), batch)])
    return float((pred == np.asarray(y)).mean())


def fit_classifier(model, X, L, y, *, epochs: int = 3, lr: float = 1e-2, batch: int = 64,
                   rng=0, max_seconds: float | None = None, opt: Adam | None = None,
                   after_step: Callable | None = None) -> list[float]:
    """Minibatch Adam on cross-entropy; stops early at ``max_seconds``. Returns batch losses."""
    rng = as_rng(rng)
    opt = opt or Adam(model.parameters(), lr)
    t0 = time.perf_counter()
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for i in range(0, len(X), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = cross_entropy(model(X[idx], L[idx]), y[idx])
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            losses.append(float(loss.data))
            if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                return losses
    return losses


def weight_quantizer(kind: str, opt_ref: list | None = None) -> Callable[[Tensor], Tensor]:
    """A weight quantiser ``Tensor -> Tensor`` (straight-through gradient) by name.

    ``"float"`` (identity), ``"binary"`` (BinaryConnect: ``sign(W)``, ±1 unscaled),
    ``"bwn"`` (``mean|W| · sign(W)``, Eqs. 22–24), ``"twn"`` (Eqs. 30–34), ``"lab"``
    (loss-aware, ``‖d⊙W‖₁/‖d‖₁ · sign(W)`` with ``d`` from the Adam in ``opt_ref[0]``,
    Eqs. 25–26), ``"uniform<k>"`` (Eq. 39), ``"alt<k>"`` (alternating multi-bit, Eqs. 55–56).
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
            d = opt_ref[0].d(W) if opt_ref else np.ones_like(W.data)

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
    forward pass (full-precision weights kept for the updates) → linear on the last state."""

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


class BagOfEmbeddings(Module):
    """Mean of (optionally quantised) word embeddings → linear: the §3.3.5 embedding model."""

    def __init__(self, vocab_size: int, d_emb: int, n_classes: int,
                 quant: Callable[[Tensor], Tensor] | None = None, rng=0):
        rng = as_rng(rng)
        self.emb = Embedding(vocab_size, d_emb, rng=rng)
        self.out = Linear(d_emb, n_classes, rng=rng)
        self.quant = quant or (lambda W: W)

    def forward(self, X, lengths):
        X = np.asarray(X)
        E = F.embedding(self.quant(self.emb.W), X)  # (B, T, d)
        m = (X != 0).astype(float)[:, :, None]  # (B, T, 1)
        pooled = (E * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)  # (B, d)
        return self.out(pooled)


class TinyTransformerClassifier(Module):
    """One post-LN Transformer encoder layer (MHA + ReLU FFN) with mean pooling."""

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, d_ff: int, max_len: int,
                 n_classes: int, rng=0):
        rng = as_rng(rng)
        self.emb = Embedding(vocab_size, d_model, rng=rng)
        self.pos = Parameter(rng.normal(0, 0.1, (max_len, d_model)))
        self.mha = MultiHeadAttention(d_model, num_heads, rng=rng)
        self.ln1 = LayerNorm(d_model)
        self.ff1 = Linear(d_model, d_ff, rng=rng)
        self.ff2 = Linear(d_ff, d_model, rng=rng)
        self.ln2 = LayerNorm(d_model)
        self.out = Linear(d_model, n_classes, rng=rng)

    def forward(self, X, lengths):
        X = np.asarray(X)
        B, T = X.shape
        x = self.emb(X) + self.pos[:T]  # (B, T, d)
        pad = X == 0
        x = self.ln1(x + self.mha(x, key_padding_mask=pad))
        x = self.ln2(x + self.ff2(F.relu(self.ff1(x))))
        m = (~pad).astype(float)[:, :, None]
        return self.out((x * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0))


def sentiment_task(quick: bool = True):
    """The small ``make_sentiment`` task every §3 miniature uses (1000 training sentences in
    quick mode, 4000 otherwise; vocabulary 300; length ≤ 16)."""
    from refimpl.data import make_sentiment

    return make_sentiment(n_train=1000 if quick else 4000, n_val=100,
                          n_test=400 if quick else 1000, vocab_size=300, max_len=16, rng=0)


_CACHE: dict = {}


def trained_tiny_transformer(quick: bool = True):
    """A :class:`TinyTransformerClassifier` trained on :func:`sentiment_task` (deterministic;
    trained once per process and cached). Returns ``(task, model, state_dict)`` with a fresh
    model loaded from the cached state."""
    if quick not in _CACHE:
        task = sentiment_task(quick)
        m = TinyTransformerClassifier(len(task.vocab), 16, 2, 32, task.X_train.shape[1],
                                      task.n_classes, rng=0)
        fit_classifier(m, task.X_train, task.len_train, task.y_train,
                       epochs=6 if quick else 15, lr=0.01, rng=0)
        _CACHE[quick] = (task, m.state_dict())
    task, state = _CACHE[quick]
    m = TinyTransformerClassifier(len(task.vocab), 16, 2, 32, task.X_train.shape[1],
                                  task.n_classes, rng=0)
    m.load_state_dict(state)
    return task, m, state
