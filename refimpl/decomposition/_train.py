"""A small, deterministic training loop for the §6 claims in miniature (mini-batch Adam on the
cross-entropy of a ``model(X, lengths) -> logits`` classifier).

Kept private to the chapter so the claim checks do not depend on the details of
:func:`refimpl.nn.fit`; it uses only the tape (``refimpl.nn``) and is the textbook Adam
(Kingma & Ba 2015).
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import Module, no_grad
from refimpl.nn import functional as F
from refimpl.utils import as_rng

__all__ = ["cross_entropy", "train_classifier", "accuracy", "MeanPoolClassifier"]


def cross_entropy(logits, y):
    """Mean negative log-likelihood of integer labels ``y`` (B,) under ``logits`` (B, C)."""
    logp = F.log_softmax(logits, axis=-1)
    picked = F.gather(logp, np.asarray(y)[:, None], axis=-1)  # (B, 1)
    return -picked.mean()


def train_classifier(model: Module, X, lengths, y, *, epochs: int = 3, lr: float = 1e-2,
                     batch_size: int = 64, rng=0, params=None, clip: float = 5.0) -> list:
    """Adam on cross-entropy; returns the mean loss per epoch. ``params`` defaults to all."""
    rng = as_rng(rng)
    params = model.parameters() if params is None else list(params)
    m = [np.zeros_like(p.data) for p in params]
    v = [np.zeros_like(p.data) for p in params]
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    X, lengths, y = np.asarray(X), np.asarray(lengths), np.asarray(y)
    hist = []
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(y))
        losses = []
        for s in range(0, len(y), batch_size):
            idx = order[s:s + batch_size]
            for p in params:
                p.grad = None
            loss = cross_entropy(model(X[idx], lengths[idx]), y[idx])
            loss.backward()
            grads = [np.zeros_like(p.data) if p.grad is None else p.grad for p in params]
            gn = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
            scale = min(1.0, clip / (gn + 1e-12))
            t += 1
            for i, (p, g) in enumerate(zip(params, grads)):
                g = g * scale
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                mh = m[i] / (1 - b1 ** t)
                vh = v[i] / (1 - b2 ** t)
                p.data = p.data - lr * mh / (np.sqrt(vh) + eps)
            losses.append(float(loss.data))
        hist.append(float(np.mean(losses)))
    model.eval()
    return hist


def accuracy(model: Module, X, lengths, y, batch_size: int = 512) -> float:
    """Fraction of correct argmax predictions."""
    model.eval()
    correct = 0
    with no_grad():
        for s in range(0, len(y), batch_size):
            logits = model(np.asarray(X[s:s + batch_size]), np.asarray(lengths[s:s + batch_size]))
            correct += int(np.sum(logits.data.argmax(-1) == np.asarray(y[s:s + batch_size])))
    return correct / len(y)


class MeanPoolClassifier(Module):
    """``embedding -> masked mean over tokens -> tanh MLP -> logits``; the embedding can be any
    module mapping int ids (B, T) to (B, T, D) (dense :class:`DenseEmbedding` or a TT-embedding).
    """

    def __init__(self, embedding: Module, embed_dim: int, hidden: int, n_classes: int, rng=0):
        from refimpl.nn import Parameter

        rng = as_rng(rng)
        self.embedding = embedding
        self.W1 = Parameter(rng.standard_normal((hidden, embed_dim)) / np.sqrt(embed_dim))
        self.b1 = Parameter(np.zeros(hidden))
        self.W2 = Parameter(rng.standard_normal((n_classes, hidden)) / np.sqrt(hidden))
        self.b2 = Parameter(np.zeros(n_classes))

    def forward(self, X, lengths):
        X = np.asarray(X)
        mask = (np.arange(X.shape[1])[None, :] < np.asarray(lengths)[:, None]).astype(float)
        E = self.embedding(X)  # (B, T, D)
        pooled = (E * mask[:, :, None]).sum(axis=1) * (1.0 / mask.sum(1, keepdims=True))
        return F.linear(F.tanh(F.linear(pooled, self.W1, self.b1)), self.W2, self.b2)


class DenseEmbedding(Module):
    """A plain (V, D) embedding table (so the claims do not depend on ``refimpl.nn.Embedding``)."""

    def __init__(self, V: int, D: int, rng=0):
        from refimpl.nn import Parameter

        self.W = Parameter(as_rng(rng).standard_normal((V, D)) * 0.3)

    def forward(self, idx):
        return F.embedding(self.W, np.asarray(idx))


__all__ += ["DenseEmbedding"]


def adam_minimize(params, loss_fn, *, steps: int = 200, lr: float = 1e-2) -> list:
    """Minimise ``loss_fn() -> scalar Tensor`` over ``params`` with Adam; returns the losses."""
    params = list(params)
    m = [np.zeros_like(p.data) for p in params]
    v = [np.zeros_like(p.data) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    hist = []
    for t in range(1, steps + 1):
        for p in params:
            p.grad = None
        loss = loss_fn()
        loss.backward()
        for i, p in enumerate(params):
            g = np.zeros_like(p.data) if p.grad is None else p.grad
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            p.data = p.data - lr * (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps)
        hist.append(float(loss.data))
    return hist


__all__ += ["adam_minimize"]
