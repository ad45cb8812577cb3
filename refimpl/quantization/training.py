"""Quantisation-aware models for the §3 claims in miniature, built on :mod:`refimpl.nn`.

Training uses :func:`refimpl.nn.fit` with :class:`refimpl.nn.Adam` (whose
:meth:`~refimpl.nn.Adam.preconditioner` is the curvature ``d`` of loss-aware binarisation,
Survey Eqs. (25)–(26)); the models are :mod:`refimpl.nn` models where one exists
(:class:`refimpl.nn.TransformerClassifier`, and :func:`quantized_bow_classifier`, a
:class:`refimpl.nn.BowClassifier` whose embedding table goes through a quantiser). What
:mod:`refimpl.nn` lacks, and this module adds:

* :func:`weight_quantizer` — the §3.2–3.3 weight quantisers as straight-through ``Tensor ->
  Tensor`` maps, by name;
* :func:`as_weight_transform` — such a quantiser as a layer's ``weight_transform`` hook, and
  :func:`quantized_lstm_classifier`, a :class:`refimpl.nn.RNNClassifier` whose LSTM weights
  ``W_ih, W_hh`` pass through it in every forward pass;
* :func:`tiny_transformer` and :func:`trained_tiny_transformer`, a one-layer Transformer and a
  cached trained one on the shared sentiment task (:func:`refimpl.data.load_task`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from refimpl.data import load_task
from refimpl.nn import BowClassifier, RNNClassifier, Tensor, TransformerClassifier, fit
from refimpl.nn import functional as F
from refimpl.utils import validate_scalars

__all__ = ["weight_quantizer", "as_weight_transform", "quantized_lstm_classifier",
           "quantized_bow_classifier", "tiny_transformer", "trained_tiny_transformer"]


def weight_quantizer(kind: str, opt_ref: list | None = None) -> Callable[[Tensor], Tensor]:
    """A weight quantiser ``Tensor -> Tensor`` (straight-through gradient) by name.

    Survey §3.1–3.3 quantisation-aware training (BinaryConnect's scheme: quantised forward,
    full-precision updates). Kinds:

    * ``"float"`` — identity;
    * ``"binary"`` — BinaryConnect, ``sign(W)`` (±1 unscaled; Courbariaux et al. 2015);
    * ``"bwn"`` — BWN, ``mean|W| · sign(W)``, Eqs. (22)–(24) (Rastegari et al. 2016);
    * ``"twn"`` — TWN, Eqs. (30)–(34) (Li et al. 2016);
    * ``"lab"`` — LAB, loss-aware binarisation ``‖d⊙W‖₁/‖d‖₁ · sign(W)`` with ``d`` the
      :meth:`refimpl.nn.Adam.preconditioner` of the Adam in ``opt_ref[0]``, Eqs. (25)–(26)
      (Hou et al. 2017);
    * ``"uniform<k>"`` — uniform k-bit, Eq. (39);
    * ``"alt<k>"`` — alternating multi-bit, row by row, Eqs. (55)–(56) (Xu et al. 2018).

    Parameters
    ----------
    kind : str
    opt_ref : list, optional
        For ``"lab"``: a list whose first item (appended after the optimiser is built) is the
        :class:`refimpl.nn.Adam` training the weights.

    Returns
    -------
    callable ``Tensor -> Tensor``
        Same shape; straight-through gradient (BinaryConnect's clipped at ``|W| ≤ 1``). Wrap
        it with :func:`as_weight_transform` for an nn layer's ``weight_transform``.
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


def as_weight_transform(quant: Callable[[Tensor], Tensor],
                        prefixes: tuple[str, ...] = ("W",)) -> Callable[[str, Tensor], Tensor]:
    """Wrap a ``Tensor -> Tensor`` quantiser as a layer's ``weight_transform(name, W)``.

    Quantisation-aware training on :mod:`refimpl.nn` layers (Survey §3): set
    ``layer.weight_transform = as_weight_transform(weight_quantizer("twn"))`` and every forward
    pass uses the quantised weights while the optimiser updates the full-precision ones
    (BinaryConnect's scheme; the gradient is the quantiser's straight-through estimator). On an
    :class:`refimpl.nn.LSTM` the transform sees ``W_ih_l{k}``/``W_hh_l{k}`` of every layer and
    direction (the biases stay full precision), on a :class:`refimpl.nn.Linear` ``W``.

    Parameters
    ----------
    quant : callable
        ``quant(W) -> Tensor`` of the same shape, e.g. :func:`weight_quantizer`.
    prefixes : tuple of str
        Only weights whose name starts with one of these are quantised.

    Returns
    -------
    callable ``(name, W) -> Tensor``

    Examples
    --------
    >>> from refimpl.nn import RNNClassifier
    >>> m = RNNClassifier(vocab_size=20, d_emb=4, d_hidden=6, n_classes=2, rng=0)
    >>> m.rnn.weight_transform = as_weight_transform(weight_quantizer("bwn"))
    """
    if not callable(quant):
        raise TypeError(f"quant must be a callable Tensor -> Tensor, got {type(quant).__name__}")
    if isinstance(prefixes, str) or not all(isinstance(p, str) for p in prefixes):
        raise TypeError(f"prefixes must be a tuple of str, got {prefixes!r}")
    prefixes = tuple(prefixes)

    def transform(name: str, W: Tensor) -> Tensor:
        return quant(W) if name.startswith(prefixes) else W

    return transform


def quantized_lstm_classifier(vocab_size: int, d_emb: int, d_hidden: int, n_classes: int,
                              quant: Callable[[Tensor], Tensor] | None = None,
                              rng=0) -> RNNClassifier:
    """An :class:`refimpl.nn.RNNClassifier` (embedding → one LSTM layer → linear on the last
    state) whose recurrent weights ``W_ih, W_hh`` pass through ``quant`` in every forward pass.

    The §3.1–3.2 quantised LSTMs of the claims in miniature (BinaryConnect, BWN, TWN, LAB —
    loss-aware binarisation — and multi-bit): the LSTM is :class:`refimpl.nn.LSTM` with
    ``weight_transform = as_weight_transform(quant)``; embedding, biases and the output layer
    stay full precision (as in Ott et al. 2016 and Hou et al. 2017).

    Parameters
    ----------
    vocab_size, d_emb, d_hidden, n_classes : int
    quant : callable, optional
        ``Tensor -> Tensor`` (:func:`weight_quantizer`); None trains in full precision.
    rng : Generator or int

    Returns
    -------
    RNNClassifier
        Called as ``model(X, lengths)`` with ``X`` (B, T) int64 → logits (B, n_classes).
    """
    m = RNNClassifier(vocab_size=vocab_size, d_emb=d_emb, d_hidden=d_hidden,
                      n_classes=n_classes, cell="lstm", rng=rng)
    if quant is not None:
        m.rnn.weight_transform = as_weight_transform(quant)
    return m


@validate_scalars
def quantized_bow_classifier(*, vocab_size: int, d_emb: int, n_classes: int,
                             quant: Callable[[Tensor], Tensor] | None = None,
                             rng=0) -> BowClassifier:
    """Mean of (optionally quantised) word embeddings → linear: the §3.3.5 embedding model.

    A :class:`refimpl.nn.BowClassifier` without hidden layer (``logits = W mean_t E[x_t] + b``)
    whose table ``E`` passes through ``quant`` (a straight-through ``Tensor -> Tensor`` map,
    e.g. :func:`refimpl.quantization.embeddings_transformers.embedding_quantizer`) in every
    forward pass, through the embedding's ``weight_transform``; the full-precision table is what
    the optimiser updates.

    Parameters
    ----------
    vocab_size, d_emb, n_classes : int
    quant : callable, optional
    rng : Generator or int, optional

    Returns
    -------
    BowClassifier
    """
    m = BowClassifier(vocab_size=vocab_size, d_emb=d_emb, n_classes=n_classes, d_hidden=None,
                      rng=rng)
    if quant is not None:
        if not callable(quant):
            raise TypeError(f"quant must be callable or None, got {type(quant).__name__}")
        m.embedding.weight_transform = as_weight_transform(quant)
    return m


def tiny_transformer(task, rng=0) -> TransformerClassifier:
    """One post-LN encoder layer (d_model 16, 2 heads, ReLU FFN of 32) with mean pooling: a
    :class:`refimpl.nn.TransformerClassifier` sized for ``task`` (its vocabulary, padded
    width ``T`` and classes).

    The model of the §3.3.5 Transformer claims in miniature (k-means weights after Cheong &
    Daniel 2019; Q-BERT's Hessian mixed precision, Shen et al. 2020).

    Parameters
    ----------
    task : ClassificationTask
        ``X_train`` of shape (N, T) sets ``max_len = T``.
    rng : Generator or int

    Returns
    -------
    TransformerClassifier
    """
    return TransformerClassifier(vocab_size=len(task.vocab), d_model=16, num_heads=2, d_ff=32,
                                 num_layers=1, max_len=task.X_train.shape[1],
                                 n_classes=task.n_classes, activation="relu", rng=rng)


_CACHE: dict = {}


@validate_scalars
def trained_tiny_transformer(quick: bool = True):
    """:func:`tiny_transformer` trained on the shared sentiment task
    (``refimpl.data.load_task("sentiment", quick=quick, rng=0)``) with :func:`refimpl.nn.fit`
    (Adam, lr 0.01, 6 epochs quick / 15 full; deterministic; trained once per process and
    cached). Returns ``(task, model, state_dict)`` with a fresh model loaded from the cached
    state.

    Part of the Survey §3 claims in miniature.
    """
    if quick not in _CACHE:
        task = load_task("sentiment", quick=quick, rng=0)
        m = tiny_transformer(task)
        fit(m, (task.X_train, task.len_train, task.y_train), epochs=6 if quick else 15,
            lr=0.01, rng=0, progress=False)
        _CACHE[quick] = (task, m.state_dict())
    task, state = _CACHE[quick]
    m = tiny_transformer(task)
    m.load_state_dict(state)
    m.eval()
    return task, m, state
