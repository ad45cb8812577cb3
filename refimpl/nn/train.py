"""Training loops: :func:`fit` (minibatch training of any model with a loss), :func:`fit_lm`
(language models: per-sentence batches or truncated BPTT on a token stream), and evaluation
helpers (:func:`evaluate_accuracy`, :func:`predict_logits`, :func:`perplexity`).

Determinism: every random choice (shuffling, dropout masks inside the model's own generators)
is seeded, so the same ``rng`` and the same initial model give bit-identical histories and
weights.

Speed: the models here are small, so the loop limits BLAS to one thread by default
(``blas_threads=1``): on a shared 2-core machine OpenBLAS's thread hand-off costs more than the
small matrix products themselves.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from refimpl.nn.losses import cross_entropy
from refimpl.nn.module import Module
from refimpl.nn.optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm_
from refimpl.nn.tensor import Tensor, no_grad
from refimpl.utils import as_rng, check_int, progress_bar

__all__ = ["History", "Callback", "fit", "fit_lm", "fit_seq2seq", "seq2seq_loss", "batches",
           "evaluate_accuracy", "predict_logits", "perplexity", "make_optimizer"]


class Callback:
    """Hooks :func:`fit` calls while it trains; subclass and override what you need.

    The pruning methods of Survey §2 live here: re-apply a mask after every optimiser step
    (:func:`refimpl.pruning.mask_after_step`), recompute masks on a schedule
    (:func:`refimpl.pruning.prune_train`, Zhu & Gupta's Eq. (7)), switch phases
    (:func:`refimpl.pruning.dsd_train`). Any object with some of these methods works (duck
    typing); missing ones are skipped.

    Order within one :func:`fit` call::

        on_train_begin(model)                         before the first step
        for each epoch e = 1..epochs:
            for each batch:
                zero_grad, forward, loss, backward, [clip], optimizer.step()
                after_step(model)                     the plain-callable hook, if given
                on_step_end(model, step)              step = 1, 2, ... (steps done in this fit)
            [validation metric]
            on_epoch_end(model, e, history)
        on_train_end(model, history)                  after the last epoch (before restore_best)
    """

    def on_train_begin(self, model: Module) -> None:
        """Before the first optimiser step."""

    def on_step_end(self, model: Module, step: int) -> None:
        """After optimiser step number ``step`` (1-based, counted within this :func:`fit`)."""

    def on_epoch_end(self, model: Module, epoch: int, history: "History") -> None:
        """After epoch ``epoch`` (1-based) and its validation metric (in ``history``)."""

    def on_train_end(self, model: Module, history: "History") -> None:
        """After the last epoch."""


def _hooks(callbacks, name: str) -> list:
    return [getattr(cb, name) for cb in callbacks if callable(getattr(cb, name, None))]


@dataclass
class History:
    """Per-epoch training record (plot ``train_loss`` and ``val_metric`` against ``epoch``).

    Attributes
    ----------
    epoch : list of int
    train_loss : list of float
        Mean training loss of each epoch (over its minibatches, weighted by batch size).
    val_metric : list of float
        Validation metric after each epoch (empty without validation data).
    step_loss : list of float
        Loss of every optimiser step.
    seconds : list of float
        Wall time of each epoch.
    metric_name : str
    """

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_metric: list = field(default_factory=list)
    step_loss: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    metric_name: str = "metric"

    @property
    def best(self) -> float | None:
        """Best validation metric (max; min for perplexity/loss metrics)."""
        if not self.val_metric:
            return None
        lower = self.metric_name in ("perplexity", "loss", "nll")
        return min(self.val_metric) if lower else max(self.val_metric)

    def as_dict(self) -> dict:
        return dict(epoch=list(self.epoch), train_loss=list(self.train_loss),
                    val_metric=list(self.val_metric), seconds=list(self.seconds),
                    metric_name=self.metric_name)

    def plot(self, ax=None):
        """Training loss (left axis) and validation metric (right axis) per epoch."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        ax.plot(self.epoch, self.train_loss, "o-", label="train loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss")
        if self.val_metric:
            ax2 = ax.twinx()
            ax2.plot(self.epoch, self.val_metric, "s--", color="C1", label=f"val {self.metric_name}")
            ax2.set_ylabel(f"val {self.metric_name}")
        return ax


def _blas(threads):
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads, user_api="blas")


def batches(arrays: Sequence[np.ndarray], batch_size: int, *, shuffle: bool = True, rng=None,
            drop_last: bool = False, trim_to_lengths: bool = False) -> Iterator[tuple]:
    """Yield minibatches (tuples of array slices) of ``arrays`` (same first dimension).

    Parameters
    ----------
    arrays : sequence of ndarray
    batch_size : int
    shuffle : bool
        Permute the rows with ``rng`` (seeded: same rng, same batches).
    drop_last : bool
        Skip a final incomplete batch.
    trim_to_lengths : bool
        ``arrays[0]`` is (N, T) tokens and ``arrays[1]`` the lengths: cut each batch's token
        matrix to its longest row (padding-only columns cost time and change nothing).
    """
    batch_size = check_int(batch_size, "batch_size", 1)
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("arrays must contain at least one array")
    N = len(arrays[0])
    for i, a in enumerate(arrays):
        if len(a) != N:
            raise ValueError(f"arrays[{i}] has {len(a)} rows, arrays[0] has {N}")
    order = as_rng(rng).permutation(N) if shuffle else np.arange(N)
    for start in range(0, N, batch_size):
        idx = order[start:start + batch_size]
        if drop_last and len(idx) < batch_size:
            break
        out = [a[idx] for a in arrays]
        if trim_to_lengths:
            out[0] = out[0][:, :int(out[1].max())]
        yield tuple(out)


def make_optimizer(optimizer, model: Module, lr: float, weight_decay: float = 0.0) -> Optimizer:
    """An :class:`Optimizer` from a name ("adam", "adamw", "sgd", "momentum") or pass-through."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    params = model.parameters()
    if optimizer == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "adamw":
        return AdamW(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "sgd":
        return SGD(params, lr=lr, weight_decay=weight_decay)
    if optimizer == "momentum":
        return SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'adam', 'adamw', 'sgd', 'momentum' or an Optimizer, "
                     f"got {optimizer!r}")


def _split_task(data, which: str):
    """(X, lengths, y) of a ClassificationTask-like object, or the tuple itself."""
    if hasattr(data, "X_train"):
        return (getattr(data, f"X_{which}"), getattr(data, f"len_{which}"),
                getattr(data, f"y_{which}"))
    return data


def _is_tokens_lengths(arrays) -> bool:
    return (len(arrays) >= 2 and np.asarray(arrays[0]).ndim == 2
            and np.asarray(arrays[0]).dtype.kind in "iu" and np.asarray(arrays[1]).ndim == 1
            and np.asarray(arrays[1]).dtype.kind in "iu")


def fit(model: Module, train_arrays, *, loss_fn: Callable | None = None, epochs: int = 5,
        batch_size: int = 64, optimizer="adam", lr: float = 1e-3, weight_decay: float = 0.0,
        clip_norm: float | None = None, val_arrays=None, metric: Callable | None = None,
        metric_name: str | None = None, after_step: Callable | None = None, rng=None,
        progress: bool | None = None, blas_threads: int | None = 1,
        forward: Callable | None = None, restore_best: bool = False,
        trim_batches: bool = True, callbacks: Sequence | None = None) -> History:
    """Minibatch training.

    Each step: ``loss = loss_fn(model(*inputs), y)``, ``loss.backward()``, optional clipping,
    ``optimizer.step()``, then ``after_step(model)`` and every callback's
    ``on_step_end(model, step)`` (chapters re-apply pruning masks or projections there; see
    :class:`Callback` for the full order).

    Parameters
    ----------
    model : Module
    train_arrays : tuple ``(*inputs, y)`` or a ClassificationTask
        E.g. ``(X, lengths, y)`` for the classifiers (the model is called as
        ``model(X, lengths)``). A task object gives its train split (and its val split when
        ``val_arrays`` is None).
    loss_fn : callable, optional
        ``loss_fn(output, y) -> scalar Tensor``; default :func:`cross_entropy`.
    epochs, batch_size : int
    optimizer : {"adam", "adamw", "sgd", "momentum"} or Optimizer
    lr, weight_decay : float
    clip_norm : float, optional
        Clip the global gradient norm (:func:`clip_grad_norm_`).
    val_arrays : tuple, optional
        Evaluated after every epoch with ``metric``.
    metric : callable, optional
        ``metric(model, val_arrays) -> float``; default accuracy for ``(X, lengths, y)``.
    after_step : callable, optional
        ``after_step(model)`` after each optimiser step.
    rng : Generator or int, optional
        Seeds the shuffling.
    progress : bool or None
        tqdm bar (None: only on a terminal; ``REFIMPL_PROGRESS=0`` disables).
    blas_threads : int or None
        BLAS threads during training (None leaves the setting alone).
    forward : callable, optional
        ``forward(model, *inputs) -> output`` replacing ``model(*inputs)`` (e.g. a
        distillation step that also runs a teacher, or ``model.loss``).
    restore_best : bool
        At the end, load the weights of the epoch with the best validation metric (higher is
        better unless ``metric_name`` is "perplexity", "loss" or "nll").
    trim_batches : bool
        When the inputs start with ``(X, lengths)``, cut each batch's ``X`` to its longest row
        (faster; set False for a model that needs the full padded width).
    callbacks : sequence of Callback, optional
        Objects with any of ``on_train_begin(model)``, ``on_step_end(model, step)``,
        ``on_epoch_end(model, epoch, history)``, ``on_train_end(model, history)``, called in
        list order (see :class:`Callback`).

    Returns
    -------
    History
    """
    epochs = check_int(epochs, "epochs", 0)
    callbacks = [] if callbacks is None else list(callbacks)
    for i, cb in enumerate(callbacks):
        if not any(callable(getattr(cb, n, None)) for n in
                   ("on_train_begin", "on_step_end", "on_epoch_end", "on_train_end")):
            raise TypeError(f"callbacks[{i}] must have on_train_begin, on_step_end, "
                            f"on_epoch_end or on_train_end, got {type(cb).__name__}")
    step_hooks = _hooks(callbacks, "on_step_end")
    if hasattr(train_arrays, "X_train"):
        if val_arrays is None:
            val_arrays = _split_task(train_arrays, "val")
        train_arrays = _split_task(train_arrays, "train")
    train_arrays = tuple(train_arrays)
    if len(train_arrays) < 2:
        raise ValueError("train_arrays must be a tuple (*inputs, y) with at least 2 arrays")
    loss_fn = cross_entropy if loss_fn is None else loss_fn
    if metric is None and val_arrays is not None:
        def metric(m, v):
            if len(v) != 3:
                raise ValueError("the default metric needs val_arrays = (X, lengths, y); "
                                 "pass metric=")
            return evaluate_accuracy(m, *v, trim=trim_batches)
        metric_name = metric_name or "accuracy"
    rng = as_rng(rng)
    opt = make_optimizer(optimizer, model, lr, weight_decay)
    trim = trim_batches and _is_tokens_lengths(train_arrays)
    hist = History(metric_name=metric_name or "metric")
    n_step = 0
    with _blas(blas_threads):
        for hook in _hooks(callbacks, "on_train_begin"):
            hook(model)
        for ep in progress_bar(range(epochs), desc="epochs", progress=progress):
            t0 = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for batch in batches(train_arrays, batch_size, rng=rng, trim_to_lengths=trim):
                *inputs, y = batch
                opt.zero_grad()
                out = model(*inputs) if forward is None else forward(model, *inputs)
                loss = loss_fn(out, y)
                if not isinstance(loss, Tensor) or loss.size != 1:
                    raise TypeError("loss_fn must return a scalar Tensor")
                loss.backward()
                if clip_norm is not None:
                    clip_grad_norm_(opt.params, clip_norm)
                opt.step()
                n_step += 1
                if after_step is not None:
                    after_step(model)
                for hook in step_hooks:
                    hook(model, n_step)
                lv = float(loss.item())
                if not math.isfinite(lv):
                    raise FloatingPointError(f"training loss became {lv} at epoch {ep}; "
                                             "lower lr or set clip_norm")
                hist.step_loss.append(lv)
                total += lv * len(y)
                count += len(y)
            hist.epoch.append(ep + 1)
            hist.train_loss.append(total / max(count, 1))
            if val_arrays is not None:
                model.eval()
                hist.val_metric.append(float(metric(model, tuple(val_arrays))))
                if restore_best and hist.val_metric[-1] == hist.best:
                    best_state = model.state_dict()
            hist.seconds.append(time.perf_counter() - t0)
            for hook in _hooks(callbacks, "on_epoch_end"):
                hook(model, ep + 1, hist)
        for hook in _hooks(callbacks, "on_train_end"):
            hook(model, hist)
    if restore_best and hist.val_metric:
        model.load_state_dict(best_state)
    model.train()
    return hist


def predict_logits(model: Module, X, lengths=None, batch_size: int = 256,
                   trim: bool = True) -> np.ndarray:
    """Logits of a classifier ``model(X, lengths)`` in eval mode, without gradients
    (``trim``: cut each batch to its longest row).

    Returns
    -------
    ndarray of shape (N, n_classes)
    """
    X = np.asarray(X)
    lengths = np.maximum((X != 0).sum(axis=1), 1) if lengths is None else np.asarray(lengths)
    was = model.training
    model.eval()
    outs = []
    try:
        with no_grad():
            for xb, lb in batches((X, lengths), batch_size, shuffle=False, trim_to_lengths=trim):
                outs.append(model(xb, lb).data)
    finally:
        model.train(was)
    return np.concatenate(outs, axis=0)


def evaluate_accuracy(model: Module, X, lengths, y, batch_size: int = 256,
                      trim: bool = True) -> float:
    """Fraction of rows whose argmax logit equals ``y`` (see :func:`predict_logits`)."""
    y = np.asarray(y)
    if len(y) != len(X):
        raise ValueError(f"y must have {len(X)} entries, got {len(y)}")
    return float((predict_logits(model, X, lengths, batch_size, trim).argmax(axis=1) == y)
                 .mean())


# ---------------------------------------------------------------------------------------------
# language models
# ---------------------------------------------------------------------------------------------

def _lm_arrays(data, which):
    if hasattr(data, "len_train"):  # an LMTask
        name = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}[which]
        return getattr(data, name), getattr(data, f"len_{name}")
    return data


def perplexity(model: Module, tokens, lengths=None, *, batch_size: int = 128,
               bptt: int = 128) -> float:
    """``exp`` of the mean per-token NLL (nats).

    Parameters
    ----------
    model : LSTMLanguageModel
        Or any model with ``token_nll`` / ``forward(X, ..., state=, return_state=True)``.
    tokens : int ndarray
        Either (N, T) rows ``<bos> ... <eos>`` with ``lengths`` (per-sentence evaluation: the
        mean is over every predicted token, as :class:`refimpl.data.LMTask` defines it), or a
        1-D stream evaluated left to right in windows of ``bptt`` tokens carrying the state.
    lengths : int ndarray of shape (N,), optional
    """
    tokens = np.asarray(tokens)
    was = model.training
    model.eval()
    try:
        if tokens.ndim == 2:
            if lengths is None:
                raise ValueError("lengths must be given with 2-D tokens")
            total, n = 0.0, 0
            for xb, lb in batches((tokens, np.asarray(lengths)), batch_size, shuffle=False,
                                  trim_to_lengths=True):
                per = model.token_nll(xb, lb)
                total += float(np.nansum(per))
                n += int(np.isfinite(per).sum())
            return float(np.exp(total / n))
        if tokens.ndim != 1 or tokens.size < 2:
            raise ValueError(f"tokens must be (N, T) rows or a 1-D stream of >= 2 tokens, got "
                             f"shape {tokens.shape}")
        from refimpl.nn.losses import cross_entropy as ce

        total, n, state = 0.0, 0, None
        with no_grad():
            for s in range(0, tokens.size - 1, bptt):
                x = tokens[s:s + bptt][None, :]
                y = tokens[s + 1:s + 1 + bptt][None, :]
                x = x[:, :y.shape[1]]
                logits, state = model(x, state=state, return_state=True)
                total += ce(logits, y, reduction="sum").item()
                n += y.size
        return float(np.exp(total / n))
    finally:
        model.train(was)


def _detach_state(state):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(Tensor(s.data) for s in state)
    return Tensor(state.data)


def fit_lm(model: Module, train, *, epochs: int = 5, batch_size: int = 32, lr: float = 2e-3,
           optimizer="adam", bptt: int | None = None, clip_norm: float | None = 1.0,
           val=None, after_step: Callable | None = None, rng=None, progress: bool | None = None,
           blas_threads: int | None = 1) -> History:
    """Train a language model; the validation metric is perplexity.

    Parameters
    ----------
    model : LSTMLanguageModel
    train : LMTask, or ``(X, lengths)`` rows ``<bos> ... <eos>``, or a 1-D token stream
        Rows are trained with per-sentence batches (``model.loss(X, lengths)``), a stream
        (needs ``bptt``) with truncated back-propagation through time: ``batch_size``
        parallel streams, windows of ``bptt`` tokens, the state carried across windows and
        detached.
    val : same kinds as ``train``, optional (an LMTask gives its ``valid`` split by default)
    bptt : int, optional
    clip_norm : float or None
    Other parameters as :func:`fit`.

    Returns
    -------
    History (``val_metric`` = validation perplexity)
    """
    if hasattr(train, "len_train"):
        if val is None:
            val = _lm_arrays(train, "valid")
        train = _lm_arrays(train, "train")
    val_fn = None
    if val is not None:
        val_fn = (lambda m, v: perplexity(m, v[0], v[1])) if isinstance(val, tuple) else \
            (lambda m, v: perplexity(m, v, bptt=bptt or 128))
    if isinstance(train, tuple):
        X, L = train
        return fit(model, (X, L, np.zeros(len(X))), forward=lambda m, xb, lb: m.loss(xb, lb),
                   loss_fn=lambda out, _y: out,
                   epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                   clip_norm=clip_norm, val_arrays=val,
                   metric=val_fn, metric_name="perplexity", after_step=after_step, rng=rng,
                   progress=progress, blas_threads=blas_threads)
    stream = np.asarray(train)
    if stream.ndim != 1:
        raise ValueError(f"train must be an LMTask, (X, lengths) or a 1-D stream, got shape "
                         f"{stream.shape}")
    if bptt is None:
        raise ValueError("bptt must be given to train on a 1-D token stream")
    bptt = check_int(bptt, "bptt", 1)
    epochs = check_int(epochs, "epochs", 0)
    n_per = (stream.size - 1) // batch_size
    if n_per < 1:
        raise ValueError(f"the stream of {stream.size} tokens is too short for "
                         f"batch_size={batch_size}")
    xs = stream[:n_per * batch_size].reshape(batch_size, n_per)          # (B, n_per)
    ys = stream[1:n_per * batch_size + 1].reshape(batch_size, n_per)
    opt = make_optimizer(optimizer, model, lr)
    hist = History(metric_name="perplexity")
    with _blas(blas_threads):
        for ep in progress_bar(range(epochs), desc="epochs", progress=progress):
            t0 = time.perf_counter()
            model.train()
            state, total, count = None, 0.0, 0
            for s in range(0, n_per, bptt):
                x, y = xs[:, s:s + bptt], ys[:, s:s + bptt]
                opt.zero_grad()
                logits, state = model(x, state=_detach_state(state), return_state=True)
                loss = cross_entropy(logits, y)
                loss.backward()
                if clip_norm is not None:
                    clip_grad_norm_(opt.params, clip_norm)
                opt.step()
                if after_step is not None:
                    after_step(model)
                hist.step_loss.append(loss.item())
                total += loss.item() * y.size
                count += y.size
            hist.epoch.append(ep + 1)
            hist.train_loss.append(total / count)
            if val_fn is not None:
                hist.val_metric.append(val_fn(model, val))
            hist.seconds.append(time.perf_counter() - t0)
    model.train()
    return hist



# ---------------------------------------------------------------------------------------------
# sequence to sequence
# ---------------------------------------------------------------------------------------------

def _s2s_arrays(data, which):
    if hasattr(data, "src_train"):  # a Seq2SeqTask
        return (getattr(data, f"src_{which}"), getattr(data, f"src_len_{which}"),
                getattr(data, f"tgt_{which}"), getattr(data, f"tgt_len_{which}"))
    arrays = tuple(data)
    if len(arrays) != 4:
        raise ValueError("seq2seq data must be a Seq2SeqTask or (src, src_len, tgt, tgt_len)")
    return arrays


def seq2seq_loss(model: Module, data, batch_size: int = 256) -> float:
    """Mean token cross-entropy of ``model.loss`` over ``(src, src_len, tgt, tgt_len)``
    (weighted by the number of target tokens), in eval mode without gradients."""
    src, sl, tgt, tl = _s2s_arrays(data, "val")
    was = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        with no_grad():
            for s_, sl_, t_, tl_ in batches((src, sl, tgt, tl), batch_size, shuffle=False,
                                            trim_to_lengths=True):
                k = int((np.asarray(tl_) - 1).sum())
                total += model.loss(s_, sl_, t_, tl_).item() * k
                n += k
    finally:
        model.train(was)
    return total / n


def fit_seq2seq(model: Module, train, *, epochs: int = 5, batch_size: int = 32,
                lr: float = 3e-3, optimizer="adam", clip_norm: float | None = 1.0, val=None,
                metric: Callable | None = None, metric_name: str | None = None,
                after_step: Callable | None = None, rng=None, progress: bool | None = None,
                blas_threads: int | None = 1) -> History:
    """Teacher-forced training of a :class:`refimpl.nn.Seq2Seq` (token cross-entropy).

    Parameters
    ----------
    model : Seq2Seq (anything with ``loss(src, src_len, tgt, tgt_len)``)
    train : Seq2SeqTask or ``(src, src_len, tgt, tgt_len)``
        A task gives its train split (and its val split when ``val`` is None). Targets are
        ``<bos> ... <eos>`` rows; for sequence-level KD pass the teacher's beam outputs here.
    val : same kinds, optional
    metric : callable, optional
        ``metric(model, val) -> float``; default the validation token loss
        (:func:`seq2seq_loss`, metric_name "loss"). Pass e.g. a BLEU function of
        ``model.greedy_decode`` outputs for a task metric.
    Other parameters as :func:`fit`.
    """
    if hasattr(train, "src_train") and val is None:
        val = _s2s_arrays(train, "val")
    src, sl, tgt, tl = _s2s_arrays(train, "train")
    if val is not None:
        val = _s2s_arrays(val, "val")
        if metric is None:
            metric, metric_name = seq2seq_loss, metric_name or "loss"
    return fit(model, (src, sl, tgt, tl, np.zeros(len(src))),
               forward=lambda m, s_, sl_, t_, tl_: m.loss(s_, sl_, t_, tl_),
               loss_fn=lambda out, _y: out, epochs=epochs, batch_size=batch_size,
               optimizer=optimizer, lr=lr, clip_norm=clip_norm, val_arrays=val, metric=metric,
               metric_name=metric_name, after_step=after_step, rng=rng, progress=progress,
               blas_threads=blas_threads)
