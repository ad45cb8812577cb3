"""Claims of Survey §7 in miniature: small Transformer classifiers trained with §7 attention
hooks on the embedded long-range task (:func:`refimpl.data.longrange.make_needle`).

The task: a sequence of ``seq_len`` filler tokens with one needle ``n<c>`` somewhere; the label
is ``c``. The classifier reads out at a learned ``[CLS]`` vector prepended at position 0
(``pooling="cls"``), so the read-out sees the needle only through attention: a sliding window of
half-width ``h`` stacked over ``L`` layers reaches positions ``<= L h`` and is at chance beyond,
while dense attention (Survey Eq. (68)) — and Longformer's global attention on ``[CLS]`` —
reach everything.

:func:`run_needle_model` trains one model; :func:`dense_needle_model` caches the dense baseline
so the three claims of the chapter train it once per (quick, seed).
"""

from __future__ import annotations

import functools

import numpy as np

from refimpl.attention.hooks import LinearAttentionHook, LinformerHook, LongformerHook
from refimpl.utils import check_int

__all__ = ["NeedleSetup", "needle_setup", "run_needle_model", "dense_needle_model",
           "accuracy_by_mask", "window_reach_ceiling"]


def _nn():
    from refimpl.nn.models import TransformerClassifier
    from refimpl.nn.train import fit, predict_logits

    return TransformerClassifier, fit, predict_logits


class NeedleSetup:
    """Task and model sizes for the §7 claims (quick: 1 layer, d_model 16, 2 epochs of 3000
    sequences: a few seconds per trained model)."""

    def __init__(self, quick: bool, seed: int):
        from refimpl.data import load_task

        self.quick = bool(quick)
        self.seed = int(seed)
        self.task = load_task("needle", quick=quick, rng=seed)
        self.seq_len = self.task.X_train.shape[1]
        self.n = self.seq_len + 1  # with [CLS]
        self.d_model = 16 if quick else 32
        self.num_heads = 2
        self.num_layers = 1 if quick else 2
        self.epochs = 2 if quick else 6
        self.lr = 5e-3


@functools.lru_cache(maxsize=4)
def needle_setup(quick: bool, seed: int) -> NeedleSetup:
    """The shared :class:`NeedleSetup` for ``(quick, seed)`` (cached, at most 4).

    Part of the Survey §7 claims in miniature.

    Parameters
    ----------
    quick : bool
        Small model and few epochs when True.
    seed : int
        Seed of the task and of the models.

    Returns
    -------
    NeedleSetup
        The needle task and the classifier's sizes, epochs and learning rate.
    """
    return NeedleSetup(quick, seed)


def run_needle_model(setup: NeedleSetup, attention=None, *, epochs: int | None = None):
    """Train a ``TransformerClassifier`` with the given attention hook; return (model, test
    accuracy, per-example correctness on the test split).

    Part of the Survey §7 claims in miniature.
    """
    TransformerClassifier, fit, predict_logits = _nn()
    t = setup.task
    model = TransformerClassifier(vocab_size=len(t.vocab), d_model=setup.d_model,
                                  num_heads=setup.num_heads,
                                  d_ff=2 * setup.d_model, num_layers=setup.num_layers,
                                  max_len=setup.seq_len,
                                  n_classes=t.n_classes, pooling="cls", attention=attention,
                                  rng=setup.seed)
    fit(model, t, epochs=check_int(epochs or setup.epochs, "epochs", 1), lr=setup.lr,
        batch_size=64, rng=setup.seed, progress=False)
    model.eval()
    pred = predict_logits(model, t.X_test, t.len_test).argmax(-1)
    correct = pred == t.y_test
    return model, float(correct.mean()), correct


@functools.lru_cache(maxsize=4)
def dense_needle_model(quick: bool, seed: int):
    """The dense-attention baseline (cached per (quick, seed)).

    Dense attention (Survey Eq. (68), §7.1): the baseline of the Survey §7 claims.
    """
    return run_needle_model(needle_setup(quick, seed), None)


def window_reach_ceiling(setup: NeedleSetup, half: int) -> tuple[float, np.ndarray]:
    """Best accuracy of a read-out at ``[CLS]`` (position 0) through a window of half-width
    ``half`` stacked over the layers, and which test examples it can see.

    Part of the Survey §7.2 Longformer claim (:func:`longformer_claim`).
    """
    pos = setup.seq_len - 1 - setup.task.dist_test + 1  # needle position after [CLS]
    visible = pos <= setup.num_layers * half
    return float(visible.mean() + (~visible).mean() / setup.task.n_classes), visible


def accuracy_by_mask(correct, mask) -> float:
    """Accuracy over the test examples selected by ``mask``.

    Part of the Survey §7 claims in miniature.

    Parameters
    ----------
    correct : ndarray of bool, shape (n_test,)
        Per-example correctness, as returned by :func:`run_needle_model`.
    mask : array_like of bool, shape (n_test,)

    Returns
    -------
    float
        Mean of ``correct[mask]``, NaN when ``mask`` selects nothing.
    """
    mask = np.asarray(mask, dtype=bool)
    return float(correct[mask].mean()) if mask.any() else float("nan")


def longformer_claim(quick: bool, seed: int) -> dict:
    """Survey §7.2 claim in miniature: Longformer windows against dense attention.

    Trains the needle classifier with a sliding window of width 4, without and with one global
    token (position 0, ``[CLS]``), and compares with the dense baseline and the window's reach.

    Parameters
    ----------
    quick : bool
    seed : int

    Returns
    -------
    dict
        ``acc_dense``, ``acc_window``, ``acc_window_global``, ``window_ceiling`` (from
        :func:`window_reach_ceiling`), ``acc_window_beyond_reach`` (window model on needles out
        of its reach), ``chance``, ``n`` and ``window``.

    References
    ----------
    .. [1] I. Beltagy, M. E. Peters, A. Cohan, "Longformer: The Long-Document Transformer",
       arXiv 2004.05150, 2020.
    """
    s = needle_setup(quick, seed)
    _, acc_dense, _ = dense_needle_model(quick, seed)
    window = 4
    _, acc_w, corr_w = run_needle_model(s, LongformerHook(window))
    _, acc_wg, _ = run_needle_model(s, LongformerHook(window, 1, (0,)))
    ceiling, visible = window_reach_ceiling(s, window // 2)
    return dict(acc_dense=acc_dense, acc_window=acc_w, acc_window_global=acc_wg,
                window_ceiling=ceiling, acc_window_beyond_reach=accuracy_by_mask(corr_w,
                                                                                ~visible),
                chance=1.0 / s.task.n_classes, n=s.n, window=window)


def linformer_claim(quick: bool, seed: int) -> dict:
    """Survey §7.2 claim in miniature: Linformer against dense attention.

    Trains the needle classifier with head-wise shared ``E, F`` projections to ``k = 8`` (one
    epoch more than the dense baseline, since ``E, F`` learn from scratch).

    Parameters
    ----------
    quick : bool
    seed : int

    Returns
    -------
    dict
        ``acc_dense``, ``acc_linformer``, ``k``, ``n`` and ``score_memory_ratio`` = n² / (n k).

    References
    ----------
    .. [1] S. Wang et al., "Linformer: Self-Attention with Linear Complexity",
       arXiv 2006.04768, 2020.
    """
    s = needle_setup(quick, seed)
    _, acc_dense, _ = dense_needle_model(quick, seed)
    k = 8
    hook = LinformerHook(s.n, k, s.num_heads, sharing="headwise", rng=seed)
    _, acc_lin, _ = run_needle_model(s, hook, epochs=s.epochs + 1)  # E, F learn from scratch
    return dict(acc_dense=acc_dense, acc_linformer=acc_lin, k=k, n=s.n,
                score_memory_ratio=(s.n * s.n) / (s.n * k))


def linear_attention_claim(quick: bool, seed: int) -> dict:
    """Survey §7.2 claim in miniature: linear attention against softmax.

    (a) The trained dense model with every layer's attention swapped for linear attention, no
    retraining; (b) the same classifier trained from scratch with linear attention.

    Parameters
    ----------
    quick : bool
    seed : int

    Returns
    -------
    dict
        ``acc_dense``, ``acc_linear_trained``, ``acc_linear_dropin`` and
        ``layer1_context_rel_err``: relative Frobenius error of the first layer's attention
        context, linear against softmax, on the first 128 test examples.

    References
    ----------
    .. [1] A. Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with
       Linear Attention", ICML 2020.
    """
    import copy

    from refimpl.nn.tensor import no_grad

    s = needle_setup(quick, seed)
    dense_model, acc_dense, _ = dense_needle_model(quick, seed)
    # (a) drop-in: the trained dense weights with linear attention, no retraining
    swapped = copy.deepcopy(dense_model)
    for layer in swapped.layers:
        layer.self_attn.attention = LinearAttentionHook()
    _, _, predict_logits = _nn()
    t = s.task
    acc_dropin = float((predict_logits(swapped, t.X_test, t.len_test).argmax(-1)
                        == t.y_test).mean())
    with no_grad():
        Xb, Lb = t.X_test[:128], t.len_test[:128]
        _, out_soft = dense_model(Xb, Lb, output_attentions=True)
        ctx_soft = out_soft.attentions[0].context.data  # layer 1's per-head contexts
        _, out_lin = swapped(Xb, Lb, output_attentions=True)
        ctx_lin = out_lin.attentions[0].context.data
    err = float(np.linalg.norm(ctx_lin - ctx_soft) / np.linalg.norm(ctx_soft))
    # (b) trained from scratch with linear attention
    _, acc_lin, _ = run_needle_model(s, LinearAttentionHook())
    return dict(acc_dense=acc_dense, acc_linear_trained=acc_lin, acc_linear_dropin=acc_dropin,
                layer1_context_rel_err=err)
