"""Small models used by the §2 checks, claims and tour (not part of the survey's methods).

Training goes through :func:`refimpl.nn.fit` / :class:`refimpl.nn.Adam` (see
:func:`refimpl.pruning.heads_layers.fit_gated`); this module keeps only the two models
:mod:`refimpl.nn` does not provide:

* a two-layer softmax MLP on bag-of-words *count* features as plain NumPy dicts with a
  hand-written gradient (:func:`clf_params`, :func:`clf_loss_grad`, :func:`clf_accuracy`) — the
  weight-pruning claims prune, revive and re-train its matrices thousands of times, at
  milliseconds per step, which the tape (and :class:`refimpl.nn.BowClassifier`, an embedding
  mean rather than count features) would make many times slower;
* :class:`TinyTransformer`, a Transformer classifier whose heads, FFN blocks and layers carry
  gates that may differ *per example* (``head_gates`` of shape ``(n_layers, B, num_heads)``,
  ``ffn_gates`` of shape ``(B, 1, 1)`` per layer): Eq. (18)'s ``E_x |∂L(x)/∂ξ_h|`` needs each
  example's own gate gradient in one batched backward pass, and Prasanna et al.'s FFN gate
  scales the whole FFN output. :class:`refimpl.nn.TransformerClassifier` has one gate per head
  (``head_mask``), per FFN hidden unit (``ffn_mask``) and per layer (``layer_mask``), shared
  by the batch.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import Module, Parameter, Tensor, cross_entropy, no_grad
from refimpl.nn import functional as F
from refimpl.utils import as_rng

__all__ = ["bow_features", "clf_params", "clf_logits", "clf_loss_grad", "clf_accuracy",
           "sentiment_bow", "TinyTransformer", "accuracy", "mean_loss", "small_sentiment"]


# ---------------------------------------------------------------------------------------------
# bag-of-words MLP
# ---------------------------------------------------------------------------------------------

def bow_features(X, lengths, n_features: int) -> np.ndarray:
    """Normalised token counts over the ``n_features`` most frequent ids (ids ≥ 4).

    Parameters
    ----------
    X : ndarray of shape (N, T), int
    lengths : ndarray of shape (N,)
    n_features : int

    Returns
    -------
    ndarray of shape (N, n_features)

    Notes
    -----
    Part of the Survey §2 checks and claims in miniature (a test model, not a survey method).
    """
    X = np.asarray(X)
    N, T = X.shape
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    ids = X - 4
    keep = valid & (ids >= 0) & (ids < n_features)
    out = np.zeros((N, n_features))
    rows = np.repeat(np.arange(N), T).reshape(N, T)
    np.add.at(out, (rows[keep], ids[keep]), 1.0)
    return out / np.maximum(np.asarray(lengths), 1)[:, None] * 4.0


def small_sentiment(rng=0, quick: bool = True):
    """The embedded sentiment task at a size the §2 claims can afford."""
    from refimpl.data import make_sentiment

    n = 1500 if quick else 4000
    return make_sentiment(n_train=n, n_val=300, n_test=600, vocab_size=300, max_len=12,
                          rng=rng)


def sentiment_bow(task, n_features: int = 128):
    """``(Xtr, ytr, Xte, yte)`` bag-of-words features of a sentiment task.

    Part of the Survey §2 checks and claims in miniature (a test model, not a survey method).
    """
    f = lambda X, L: bow_features(X, L, n_features)  # noqa: E731
    return (f(task.X_train, task.len_train), task.y_train, f(task.X_test, task.len_test),
            task.y_test)


def clf_params(n_in: int, n_hidden: int, n_out: int, rng=None) -> dict:
    """``{"W1": (H, D), "b1": (H,), "W2": (C, H), "b2": (C,)}``, He-initialised.

    Part of the Survey §2 checks and claims in miniature (a test model, not a survey method).
    """
    rng = as_rng(rng)
    return {"W1": rng.normal(0, np.sqrt(2.0 / n_in), (n_hidden, n_in)),
            "b1": np.zeros(n_hidden),
            "W2": rng.normal(0, np.sqrt(1.0 / n_hidden), (n_out, n_hidden)),
            "b2": np.zeros(n_out)}


def clf_logits(p: dict, X) -> np.ndarray:
    """``relu(X W1ᵀ + b1) W2ᵀ + b2``, shape (N, C).

    Part of the Survey §2 checks and claims in miniature (a test model, not a survey method).
    """
    return np.maximum(X @ p["W1"].T + p["b1"], 0.0) @ p["W2"].T + p["b2"]


def clf_loss_grad(p: dict, X, y) -> tuple[float, dict]:
    """Mean softmax cross-entropy of :func:`clf_logits` and its exact gradient.

    Part of the Survey §2 checks and claims in miniature (a test model, not a survey method).
    """
    N = X.shape[0]
    Z = X @ p["W1"].T + p["b1"]  # (N, H)
    A = np.maximum(Z, 0.0)
    S = A @ p["W2"].T + p["b2"]  # (N, C)
    S = S - S.max(1, keepdims=True)
    P = np.exp(S)
    P /= P.sum(1, keepdims=True)
    loss = -float(np.log(P[np.arange(N), y] + 1e-300).mean())
    dS = P.copy()
    dS[np.arange(N), y] -= 1.0
    dS /= N  # (N, C)
    dA = dS @ p["W2"]  # (N, H)
    dZ = dA * (Z > 0)
    return loss, {"W1": dZ.T @ X, "b1": dZ.sum(0), "W2": dS.T @ A, "b2": dS.sum(0)}


def clf_accuracy(p: dict, X, y) -> float:
    """Accuracy of the two-layer classifier :func:`clf_logits`.

    Part of the Survey §2 checks and claims in miniature (a test model, not a survey method).

    Parameters
    ----------
    p : dict
        Parameters as from :func:`clf_params`.
    X : ndarray of shape (N, D)
    y : ndarray of int, shape (N,)

    Returns
    -------
    float
        Fraction of rows whose arg-max logit equals ``y``.
    """
    return float((clf_logits(p, X).argmax(1) == y).mean())


# ---------------------------------------------------------------------------------------------
# a gated Transformer classifier on the tape
# ---------------------------------------------------------------------------------------------

class TinyTransformer(Module):
    """A post-LN Transformer encoder classifier whose heads, FFNs and layers are gated.

    ``logits = model(X, lengths, head_gates=ξ, ffn_gates=..., layer_gates=...)``. The output of
    head ``h`` in layer ``l`` is ``ξ_{l,h} Att_h(x)`` (Michel et al.'s mask variable); layer
    ``l`` computes ``x ← LN(x + g_l · MHA(x))`` and ``x ← LN(x + f_l g_l · FFN(x))``; a constant
    ``layer_gates[l] = 0`` skips the whole layer, LayerNorms included (LayerDrop, Fan et al.),
    while a Tensor gate keeps this continuous form (the relaxed gates of data-driven LayerDrop
    rates), and ``ffn_gates[l] = 0`` drops its FFN (Prasanna et al.). ``last_heads[l]`` is None
    for a skipped layer. Gates may be arrays (constants) or Tensors (to get ``∂L/∂ξ``).

    After a forward pass ``last_heads[l]`` is the Tensor ``Att_h(x)`` of shape
    ``(B, H, T, d_head)`` (before the gate; ``retain_grad`` is set) and ``last_attn[l]`` the
    attention probabilities ``(B, H, T, T)``.

    The gated model of Survey §2.4 (heads §2.4.1, layers §2.4.2, joint FFN + head pruning
    §2.4.3).
    """

    def __init__(self, vocab_size: int, n_classes: int, d_model: int = 16, num_heads: int = 4,
                 n_layers: int = 2, d_ff: int = 32, max_len: int = 64, rng=None):
        rng = as_rng(rng)
        if d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}")
        self.num_heads, self.n_layers, self.d_model = num_heads, n_layers, d_model
        s = 1.0 / np.sqrt(d_model)
        self.E = Parameter(rng.normal(0, 0.5, (vocab_size, d_model)))
        self.P = Parameter(rng.normal(0, 0.1, (max_len, d_model)))
        for layer in range(n_layers):
            for nm, shp in (("Wq", (d_model, d_model)), ("Wk", (d_model, d_model)),
                            ("Wv", (d_model, d_model)), ("Wo", (d_model, d_model)),
                            ("W1", (d_ff, d_model)), ("W2", (d_model, d_ff))):
                setattr(self, f"{nm}_{layer}", Parameter(rng.normal(0, s, shp)))
            setattr(self, f"b1_{layer}", Parameter(np.zeros(d_ff)))
            setattr(self, f"b2_{layer}", Parameter(np.zeros(d_model)))
            for k in ("a", "f"):
                setattr(self, f"g{k}_{layer}", Parameter(np.ones(d_model)))
                setattr(self, f"be{k}_{layer}", Parameter(np.zeros(d_model)))
        self.Wc = Parameter(rng.normal(0, s, (n_classes, d_model)))
        self.bc = Parameter(np.zeros(n_classes))
        self.last_heads: list = []
        self.last_attn: list = []

    def forward(self, X, lengths, head_gates=None, ffn_gates=None, layer_gates=None):
        X = np.asarray(X)
        B, T = X.shape
        H, dh = self.num_heads, self.d_model // self.num_heads
        pad = np.arange(T)[None, :] >= np.asarray(lengths)[:, None]  # (B, T)
        x = F.embedding(self.E, X) + self.P[:T]  # (B, T, d)
        self.last_heads, self.last_attn = [], []
        for layer in range(self.n_layers):
            g = lambda nm, layer=layer: getattr(self, f"{nm}_{layer}")  # noqa: E731
            lg = 1.0 if layer_gates is None else layer_gates[layer]
            if not isinstance(lg, Tensor) and float(np.asarray(lg)) == 0.0:
                # LayerDrop (Fan et al. 2019): a dropped layer is skipped whole, its
                # LayerNorms included (fairseq's ``if not dropped: x = layer(x)``)
                self.last_heads.append(None)
                self.last_attn.append(None)
                continue

            def heads(W, x=x):
                return (x @ W.T).reshape(B, T, H, dh).transpose(0, 2, 1, 3)  # (B, H, T, dh)

            q, k, v = heads(g("Wq")), heads(g("Wk")), heads(g("Wv"))
            scores = q @ k.transpose(0, 1, 3, 2) * (1.0 / np.sqrt(dh))  # (B, H, T, T)
            scores = F.masked_fill(scores, np.broadcast_to(pad[:, None, None, :], scores.shape),
                                   -1e9)
            A = F.softmax(scores, axis=-1)
            att = A @ v  # (B, H, T, dh): Att_h(x)
            if isinstance(att, Tensor) and att.requires_grad:
                att.retain_grad()
            self.last_heads.append(att)
            self.last_attn.append(A.data)
            if head_gates is not None:
                xi = head_gates[layer]  # (H,) shared, or (B, H) one gate per example
                if not isinstance(xi, Tensor):
                    xi = np.asarray(xi, dtype=np.float64)
                xi = xi.reshape(-1, H, 1, 1)  # (1 or B, H, 1, 1)
                att = att * xi
            ctx = att.transpose(0, 2, 1, 3).reshape(B, T, self.d_model)  # (B, T, d)
            x = F.layer_norm(x + (ctx @ g("Wo").T) * lg, g("ga"), g("bea"))
            ff = F.relu(x @ g("W1").T + g("b1")) @ g("W2").T + g("b2")  # (B, T, d)
            fg = lg if ffn_gates is None else ffn_gates[layer] * lg
            x = F.layer_norm(x + ff * fg, g("gf"), g("bef"))
        valid = (~pad).astype(np.float64)[:, :, None]  # (B, T, 1)
        pooled = (x * valid).sum(axis=1) * (1.0 / valid.sum(axis=1))  # (B, d)
        return pooled @ self.Wc.T + self.bc


def mean_loss(model, X, lengths, y, **gates) -> float:
    """Mean cross-entropy of ``model(X, lengths, **gates)`` (no gradients).

    Part of the Survey §2 checks and claims in miniature (a test model, not a survey method).
    """
    with no_grad():
        return float(cross_entropy(model(X, lengths, **gates), np.asarray(y)).data)


def accuracy(model, X, lengths, y, batch: int = 512, **gates) -> float:
    """Classification accuracy of ``model(X, lengths, **gates)``.

    Part of the Survey §2 checks and claims in miniature (a test model, not a survey method).
    """
    correct = 0
    with no_grad():
        for i in range(0, len(y), batch):
            lg = model(X[i:i + batch], lengths[i:i + batch], **gates).data
            correct += int((lg.argmax(1) == y[i:i + batch]).sum())
    return correct / len(y)
