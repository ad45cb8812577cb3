"""Pruning attention heads, layers and general structures (Survey §2.4).

=====================================  =======================================================
function                               survey § / equation, paper
=====================================  =======================================================
:func:`head_importance_from_outputs`   §2.4.1, Eq. (18), second form ``|Att_hᵀ ∂L/∂Att_h|``
:func:`head_importance`                §2.4.1, Eq. (18), both forms on a gated model
                                       (Michel et al. 2019)
:func:`iterative_head_pruning`         §2.4.1 — prune the least important heads step by step
:func:`head_confidence`                §2.4.1 — Voita et al. 2019, mean max attention weight
:func:`hard_concrete_gate`,
:func:`l0_penalty`,
:func:`hard_concrete_deterministic`    §2.4.1 — stochastic L0 head gates (Louizos et al. 2018,
                                       used by Voita et al. 2019)
:func:`layerdrop_gates`                §2.4.2 — LayerDrop training (Fan et al. 2019)
:func:`every_other_keep`               §2.4.2 — "every other" inference-time pruning
:func:`search_layers_validation`       §2.4.2 — search the kept layers on validation data
:func:`data_driven_drop_rates`,
:func:`data_driven_keep`               §2.4.2 — learned per-layer drop rates p_d, mean p,
                                       top-k layers at inference
:func:`structure_importance`,
:func:`joint_prune_masks`              §2.4.3 — joint FFN + head masks (Prasanna et al. 2020)
:func:`ffn_gates_to_mask`              §2.4.3 — a whole-FFN gate ν_l as the model's ``ffn_mask``
:func:`gated_accuracy`,
:func:`gated_loss`                     §2.4 — evaluate a model under constant masks
:func:`fit_gated`                      §2.4 — :func:`refimpl.nn.fit` with gates resampled each step
=====================================  =======================================================

The methods act on a :class:`refimpl.nn.TransformerClassifier` (``model.num_layers`` layers of
``model.num_heads`` heads), and Eq. (18)'s importance (:func:`structure_importance`,
:func:`head_importance`, :func:`gated_loss`) also on a causal
:class:`refimpl.nn.TransformerLanguageModel` (its loss: each sentence's mean next-token NLL,
``y=None``), through its gates: ``model(X, lengths, head_mask=ξ, ffn_mask=m,
layer_mask=g)`` with ``ξ`` of shape ``(num_layers, num_heads)`` or ``(num_layers, batch,
num_heads)`` (one gate per example, for Eq. (18)'s ``E_x |∂L(x)/∂ξ_h|`` in one backward pass),
``m`` of shape ``(num_layers, d_ff)`` (or per example), ``g`` of shape ``(num_layers,)``
(LayerDrop: ``h ← h + g_l (layer_l(h) − h)``). Prasanna et al.'s gate ``ν_l`` of a whole FFN is
``m = ν_l`` on all of layer ``l``'s hidden units (:func:`ffn_gates_to_mask`): it scales
``W_2 act(W_1 x + b_1)`` but not the output bias ``b_2``. :func:`gated_accuracy` and
:func:`gated_loss` evaluate a model under constant masks. The hard-concrete gates are those of
:mod:`refimpl.nn.gates`, returned here as arrays where an array is what a caller needs.
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from refimpl.nn import (Adam, Parameter, Tensor, TransformerLanguageModel, batches,
                        cross_entropy, fit, no_grad)
from refimpl.nn import functional as F
from refimpl.nn import gates as _gates
from refimpl.utils import (as_rng, check_array, check_choice, check_float, check_fraction,
                           check_int, check_values, validate_arrays,
                           validate_scalars)

__all__ = ["ffn_gates_to_mask", "gated_accuracy", "gated_loss",
           "head_importance_from_outputs", "head_importance", "iterative_head_pruning",
           "head_confidence", "HC_BETA", "HC_GAMMA", "HC_ZETA", "hard_concrete_gate",
           "l0_penalty", "hard_concrete_deterministic", "prob_nonzero", "layerdrop_gates",
           "every_other_keep", "search_layers_validation", "data_driven_drop_rates",
           "data_driven_keep", "structure_importance", "joint_prune_masks"]


# ---------------------------------------------------------------------------------------------
# Head importance (Eq. 18)
# ---------------------------------------------------------------------------------------------

@validate_scalars
def head_importance_from_outputs(att, datt) -> np.ndarray:
    """``I_h = E_x |Att_h(x)ᵀ ∂L(x)/∂Att_h(x)|`` (Survey Eq. (18), second form, §2.4.1).

    Parameters
    ----------
    att : ndarray of shape (B, H, T, d_head)
        Each head's output ``Att_h(x)`` for ``B`` examples.
    datt : ndarray of shape (B, H, T, d_head)
        ``∂L(x_b)/∂Att_h(x_b)`` of each example's own loss (not of a batch mean).

    Returns
    -------
    ndarray of shape (H,)

    Notes
    -----
    With the head's output gated as ``ξ_h Att_h(x)``, the chain rule at ``ξ_h = 1`` gives
    ``∂L/∂ξ_h = Σ_{t,d} Att_h(x)_{td} ∂L/∂Att_h(x)_{td}``: the two forms of Eq. (18) agree.

    References
    ----------
    .. [1] P. Michel, O. Levy, G. Neubig, "Are Sixteen Heads Really Better than One?",
       NeurIPS 2019.
    """
    att = check_array(att, "att", ndim=4)
    datt = check_array(datt, "datt", shape=att.shape)
    per_example = np.einsum("bhtd,bhtd->bh", att, datt)  # (B, H): Att_hᵀ ∂L/∂Att_h
    return np.abs(per_example).mean(axis=0)


def _check_transformer(model) -> tuple[int, int, int]:
    """``(num_layers, num_heads, d_ff)`` of a :class:`refimpl.nn.TransformerClassifier`."""
    layers = getattr(model, "layers", None)
    if not (hasattr(model, "num_layers") and hasattr(model, "num_heads") and layers):
        raise TypeError("model must be a refimpl.nn.TransformerClassifier (with num_layers, "
                        f"num_heads and layers), got {type(model).__name__}")
    return int(model.num_layers), int(model.num_heads), int(layers[0].d_ff)


def ffn_gates_to_mask(model, ffn_gates):
    """Prasanna et al.'s per-FFN gates ``ν`` as the model's per-hidden-unit ``ffn_mask``.

    Parameters
    ----------
    model : refimpl.nn.TransformerClassifier
    ffn_gates : ndarray or Tensor of shape (num_layers,) or (num_layers, B)
        One gate per layer's FFN (or per layer and example).

    Returns
    -------
    ndarray or Tensor of shape (num_layers, d_ff) or (num_layers, B, d_ff)
        ``ν_l`` repeated over layer ``l``'s ``d_ff`` hidden units (a Tensor stays on the tape,
        so ``∂L/∂ν_l`` is the sum of ``∂L/∂m`` over the units).

    Notes
    -----
    Survey §2.4.3 (joint FFN + head pruning, Prasanna et al. 2020).
    """
    L, _, d_ff = _check_transformer(model)
    shape = tuple(np.shape(ffn_gates.data if isinstance(ffn_gates, Tensor) else ffn_gates))
    if len(shape) not in (1, 2) or shape[0] != L:
        raise ValueError(f"ffn_gates must have shape ({L},) or ({L}, B), got {shape}")
    ones = np.ones(d_ff)
    if isinstance(ffn_gates, Tensor):
        return ffn_gates.reshape(*shape, 1) * ones  # (L[, B], d_ff)
    g = check_array(ffn_gates, "ffn_gates", dtype_kind="fbiu").astype(np.float64)
    return g[..., None] * ones  # (L[, B], d_ff)


def _nn_masks(model, head_mask=None, ffn_mask=None, layer_mask=None) -> dict:
    """Keyword masks for ``model(...)``; a 1-D ``ffn_mask`` holds per-FFN gates ν."""
    kw = {}
    if head_mask is not None:
        kw["head_mask"] = np.asarray(head_mask, dtype=np.float64)
    if ffn_mask is not None:
        fm = np.asarray(ffn_mask, dtype=np.float64)
        kw["ffn_mask"] = ffn_gates_to_mask(model, fm) if fm.ndim == 1 else fm
    if layer_mask is not None:
        kw["layer_mask"] = np.asarray(layer_mask, dtype=np.float64)
    return kw


def _lm_rows(model, X, lengths, y):
    """``(X, lengths, y)`` checked against the model kind: a causal LM scores ``X`` itself
    (``y`` must be None, every row needs ``<bos>`` and one target), a classifier needs ``y``."""
    X, lengths = np.asarray(X), np.asarray(lengths)
    if isinstance(model, TransformerLanguageModel):
        if y is not None:
            raise ValueError("y must be None for a language model: its targets are the next "
                             "tokens X[:, 1:]")
        if X.ndim != 2 or X.shape[1] < 2 or lengths.shape != (len(X),) or lengths.min() < 2:
            raise ValueError(f"lengths must be >= 2 for a language model (<bos> and at least "
                             f"one predicted token), got shape {X.shape} and minimum "
                             f"{lengths.min() if lengths.size else None}")
        return X, lengths, None
    if y is None:
        raise ValueError(f"y must be given for a classifier ({type(model).__name__}); only a "
                         f"refimpl.nn.TransformerLanguageModel takes y=None")
    y = np.asarray(y)
    if y.shape != (len(X),):
        raise ValueError(f"y must have shape ({len(X)},), got {y.shape}")
    return X, lengths, y


def _summed_example_loss(model, X, lengths, y, **kw):
    """``(Σ_b L(x_b), forward extras)`` on the tape: a classifier's cross-entropy against
    ``y``; a causal LM's per-sentence mean next-token NLL
    ``L(x) = (1/n_x) Σ_{t+1 < len(x)} −log p(x_{t+1} | x_{≤t})`` (the positions
    :meth:`refimpl.nn.TransformerLanguageModel.loss` and ``token_nll`` score; ``n_x`` targets).
    ``kw`` are the model's gate keywords; with ``output_attentions`` the second value is the
    :class:`refimpl.nn.EncoderOutput`."""
    if y is not None:
        out = model(X, lengths, **kw)
        logits, extra = out if isinstance(out, tuple) else (out, None)
        return cross_entropy(logits, y) * float(len(y)), extra
    T = X.shape[1]
    enc = model.encode(X[:, :-1], lengths - 1, **kw)  # states of x_{≤t}, (B, T-1, d_model)
    extra = enc if not isinstance(enc, Tensor) else None
    h = enc if extra is None else enc.last_hidden_state
    valid = np.arange(1, T)[None, :] < lengths[:, None]  # (B, T-1): a real target
    rows = np.flatnonzero(valid)
    # as TransformerLanguageModel.loss: the output layer at the real targets only
    h = h.reshape(-1, h.shape[-1])[rows]  # (n_targets, d_model)
    nll = cross_entropy(model.output(model.dropout(h)), X[:, 1:].reshape(-1)[rows],
                        reduction="none")  # (n_targets,): −log p(x_{t+1} | x_{≤t})
    w = (1.0 / valid.sum(axis=1))[rows // valid.shape[1]]  # 1/n_x for each target of x
    return (nll * w).sum(), extra


def gated_loss(model, X, lengths, y=None, *, head_mask=None, ffn_mask=None,
               layer_mask=None) -> float:
    """Mean loss of ``model(X, lengths)`` under constant masks (no gradients).

    A classifier: the mean cross-entropy against ``y``; a causal
    :class:`refimpl.nn.TransformerLanguageModel` (``y=None``): the mean over the rows
    ``<bos> … <eos>`` of each row's mean next-token NLL (the ``L(x)`` of
    :func:`structure_importance`). ``head_mask`` (num_layers, num_heads), ``ffn_mask``
    (num_layers,) per-FFN gates or (num_layers, d_ff), ``layer_mask`` (num_layers,). Part of
    Survey §2.4 (the evaluation of a pruned head/FFN/layer pattern).
    """
    X, lengths, y = _lm_rows(model, X, lengths, y)
    kw = _nn_masks(model, head_mask, ffn_mask, layer_mask)
    with no_grad():
        return float(_summed_example_loss(model, X, lengths, y, **kw)[0].data) / len(X)


def gated_accuracy(model, X, lengths, y, *, head_mask=None, ffn_mask=None, layer_mask=None,
                   batch_size: int = 512) -> float:
    """Accuracy of ``model(X, lengths)`` under constant masks (eval mode, no gradients).

    Masks as in :func:`gated_loss`. Part of Survey §2.4.
    """
    kw = _nn_masks(model, head_mask, ffn_mask, layer_mask)
    y = np.asarray(y)
    was = model.training
    model.eval()
    correct = 0
    try:
        with no_grad():
            for xb, lb, yb in batches((np.asarray(X), np.asarray(lengths), y), batch_size,
                                      shuffle=False, trim_to_lengths=True):
                correct += int((model(xb, lb, **kw).data.argmax(1) == yb).sum())
    finally:
        model.train(was)
    return correct / max(len(y), 1)


def _gates_default(model, head_mask, ffn_mask):
    L, H, _ = _check_transformer(model)
    hm = np.ones((L, H)) if head_mask is None else check_array(head_mask, "head_mask",
                                                               shape=(L, H), dtype_kind="fbiu")
    fm = np.ones(L) if ffn_mask is None else check_array(ffn_mask, "ffn_mask", shape=(L,),
                                                         dtype_kind="fbiu")
    return hm.astype(np.float64), fm.astype(np.float64)


@validate_scalars(batch_size=(1, None))
@validate_arrays(X={"ndim": 2, "dtype_kind": "iu"}, lengths={"ndim": 1, "dtype_kind": "iu"},
                 y={"ndim": 1, "dtype_kind": "iu", "optional": True})
@validate_arrays(model={"kind": "module"})
def structure_importance(model, X, lengths, y=None, *, head_mask=None, ffn_mask=None,
                         form: str = "gate", batch_size: int = 256):
    """Expected absolute sensitivity of the loss to each head gate and FFN gate.

    ``I_h = E_x |∂L(x)/∂ξ_h|`` (Survey Eq. (18), Michel et al.) and the same for each layer's FFN
    gate ``ν_l`` (Prasanna et al. 2020), evaluated at the current masks (gates of pruned
    structures are 0, so a pruned structure still gets a score). ``form="activation"`` computes
    the heads by the second form of Eq. (18) (:func:`head_importance_from_outputs`) instead.

    Parameters
    ----------
    model : refimpl.nn.TransformerClassifier or refimpl.nn.TransformerLanguageModel
    X : ndarray of shape (N, T), int
        A language model's rows are ``<bos> … <eos>`` (the :func:`refimpl.nn.fit_lm` layout).
    lengths : ndarray of shape (N,)
    y : ndarray of shape (N,), or None for a language model
    head_mask : ndarray of shape (num_layers, num_heads), optional
    ffn_mask : ndarray of shape (num_layers,), optional
        Per-FFN gates ν (see :func:`ffn_gates_to_mask`).
    form : {"gate", "activation"}
    batch_size : int

    Returns
    -------
    head_imp : ndarray of shape (num_layers, num_heads)
    ffn_imp : ndarray of shape (num_layers,)

    Notes
    -----
    The one Eq. (18) path of refimpl: per-example head gates ``ξ`` of shape
    ``(num_layers, B, num_heads)`` on :class:`refimpl.nn.TransformerClassifier`; because
    ``ξ_{l,b,h}`` only affects example ``b``, the gradient of the *summed* loss is each
    example's own ``∂L(x_b)/∂ξ_h = Att_h(x_b)ᵀ ∂L(x_b)/∂Att_h`` (Survey Eq. (18), §2.4.1).

    The causal LM form: an example is one sentence ``x`` and its loss the mean next-token NLL
    over its ``n_x`` predicted tokens,

    .. math::

        L(x) = \\frac{1}{n_x} \\sum_{t=0}^{n_x-1} -\\log p(x_{t+1} \\mid x_{\\le t}),

    so ``I_h = E_x |∂L(x)/∂ξ_h|`` over sentences, with the same per-example gates (a gate
    ``ξ_{l,b,h}`` scales head ``h`` of layer ``l`` at every position of sentence ``b``).

    References
    ----------
    .. [1] P. Michel, O. Levy, G. Neubig, "Are Sixteen Heads Really Better than One?",
       NeurIPS 2019.
    .. [2] S. Prasanna, A. Rogers, A. Rumshisky, "When BERT Plays the Lottery, All Tickets Are
       Winning", EMNLP 2020.
    """
    check_choice(form, "form", ("gate", "activation"))
    X = check_array(X, "X", ndim=2, dtype_kind="iu")
    X, lengths, y = _lm_rows(model, X, lengths, y)
    hm, fm = _gates_default(model, head_mask, ffn_mask)
    L, H = hm.shape
    hsum = np.zeros((L, H))
    fsum = np.zeros(L)
    with threadpool_limits(1, user_api="blas"):  # small products: threads only contend (as fit)
        _importance_batches(model, X, lengths, y, hm, fm, form, batch_size, hsum, fsum)
    n = len(X)
    return hsum / n, fsum / n


def _importance_batches(model, X, lengths, y, hm, fm, form, batch_size, hsum, fsum) -> None:
    """Accumulate ``Σ_x |∂L(x)/∂ξ|`` into ``hsum`` (L, H) and ``Σ_x |∂L(x)/∂ν|`` into ``fsum``
    (L,), batch by batch (the loop of :func:`structure_importance`)."""
    L, H = hm.shape
    for s in range(0, len(X), batch_size):
        sl = slice(s, s + batch_size)
        Xb, lb, yb = X[sl], lengths[sl], None if y is None else y[sl]
        if y is None:  # causal LM: the columns after the longest row change nothing
            Xb = Xb[:, :int(lb.max())]
        B = len(Xb)
        # one gate per example, so the summed loss's gradient is each example's own ∂L(x)/∂ξ
        xi = Tensor(np.broadcast_to(hm[:, None, :], (L, B, H)).copy(), requires_grad=True)
        nu = Tensor(np.broadcast_to(fm[:, None], (L, B)).copy(), requires_grad=True)
        loss, enc = _summed_example_loss(  # Σ_x L(x)
            model, Xb, lb, yb, head_mask=xi, ffn_mask=ffn_gates_to_mask(model, nu),
            output_attentions=True)
        if form == "activation":
            for att in enc.attentions:
                att.context.retain_grad()  # Att_h(x), (B, H, T, d_head), before the gate
        loss.backward()
        fsum += np.abs(nu.grad).sum(axis=1)
        if form == "gate":
            hsum += np.abs(xi.grad).sum(axis=1)
        else:
            for layer, att in enumerate(enc.attentions):
                ctx = att.context
                # gate ξ multiplies Att_h: ∂L/∂(ξ Att_h) · ξ = ∂L/∂Att_h
                hsum[layer] += B * head_importance_from_outputs(ctx.data, ctx.grad)


@validate_scalars
@validate_arrays(X={"ndim": 2, "dtype_kind": "iu"}, lengths={"ndim": 1, "dtype_kind": "iu"},
                 y={"ndim": 1, "dtype_kind": "iu", "optional": True})
@validate_arrays(model={"kind": "module"})
def head_importance(model, X, lengths, y=None, *, head_mask=None, form: str = "gate",
                    normalize: bool = False) -> np.ndarray:
    """Head importance ``I_h = E_x |∂L(x)/∂ξ_h|`` of every head (Survey Eq. (18), §2.4.1).

    A :class:`refimpl.nn.TransformerClassifier` with labels ``y``, or a causal
    :class:`refimpl.nn.TransformerLanguageModel` with ``y=None`` (``L(x)``: the sentence's
    mean next-token NLL; see :func:`structure_importance`).
    ``form="gate"`` differentiates the loss with respect to per-example gates ``ξ_h``;
    ``form="activation"`` uses ``|Att_h(x)ᵀ ∂L/∂Att_h(x)|``. ``normalize=True`` divides each
    layer's scores by their L2 norm, as Michel et al. do before ranking heads across layers.

    Returns
    -------
    ndarray of shape (num_layers, num_heads)
    """
    imp, _ = structure_importance(model, X, lengths, y, head_mask=head_mask, form=form)
    if normalize:
        imp = imp / np.maximum(np.linalg.norm(imp, axis=1, keepdims=True), 1e-20)
    return imp


@validate_scalars
@validate_arrays(X={"ndim": 2, "dtype_kind": "iu"}, lengths={"ndim": 1, "dtype_kind": "iu"},
                 y={"ndim": 1, "dtype_kind": "iu", "optional": True})
@validate_arrays(model={"kind": "module"}, eval_fn={"kind": "callable"})
def iterative_head_pruning(model, X, lengths, y, eval_fn: Callable[[np.ndarray], float], *,
                           step_fraction: float = 0.1, n_steps: int | None = None):
    """Michel et al.'s iterative pruning: drop the least important heads step by step.

    At each step ``I_h`` is recomputed with the current mask (normalised per layer) and the
    ``ceil(step_fraction · total)`` lowest-scoring remaining heads are masked; at least one
    head is always kept.

    Parameters
    ----------
    model : refimpl.nn.TransformerClassifier
    X, lengths, y : importance data
    eval_fn : callable
        ``eval_fn(head_mask) -> float`` (e.g. validation accuracy with the mask applied).
    step_fraction : float in (0, 1)
    n_steps : int, optional
        Default: until one head remains.

    Returns
    -------
    masks : list of ndarray of shape (num_layers, num_heads)
        The mask after each step (``masks[0]`` all ones).
    scores : list of float
        ``eval_fn`` of each mask.

    Notes
    -----
    Survey §2.4.1.

    References
    ----------
    .. [1] P. Michel, O. Levy, G. Neubig, "Are Sixteen Heads Really Better than One?", NeurIPS 2019.
    """
    step_fraction = check_float(step_fraction, "step_fraction", 0.0, 1.0, lo_open=True,
                                hi_open=True)
    L, H = model.num_layers, model.num_heads
    total = L * H
    per_step = max(1, int(np.ceil(step_fraction * total)))
    max_steps = int(np.ceil((total - 1) / per_step))
    n_steps = max_steps if n_steps is None else check_int(n_steps, "n_steps", 0, max_steps)
    mask = np.ones((L, H))
    masks, scores = [mask.copy()], [float(eval_fn(mask))]
    for _ in range(n_steps):
        imp = head_importance(model, X, lengths, y, head_mask=mask, normalize=True)
        imp = np.where(mask > 0, imp, np.inf).ravel()
        n_alive = int(mask.sum())
        k = min(per_step, n_alive - 1)
        if k <= 0:
            break
        drop = np.argsort(imp, kind="stable")[:k]
        mask = mask.copy().ravel()
        mask[drop] = 0.0
        mask = mask.reshape(L, H)
        masks.append(mask.copy())
        scores.append(float(eval_fn(mask)))
    return masks, scores


@validate_scalars
@validate_arrays(lengths={"ndim": 1, "dtype_kind": "iu"})
def head_confidence(attn, lengths, exclude_last: bool = False) -> np.ndarray:
    """Voita et al.'s head confidence: the mean over tokens of the head's max attention weight.

    Parameters
    ----------
    attn : ndarray of shape (B, H, T, T)
        Attention probabilities (rows = queries).
    lengths : ndarray of shape (B,)
    exclude_last : bool
        Leave out each sentence's last token as a query (Voita et al. exclude the
        end-of-sentence token).

    Returns
    -------
    ndarray of shape (H,)

    Notes
    -----
    Survey §2.4.1.

    References
    ----------
    .. [1] E. Voita, D. Talbot, F. Moiseev, R. Sennrich, I. Titov, "Analyzing Multi-Head
       Self-Attention: Specialized Heads Do the Heavy Lifting, the Rest Can Be Pruned",
       ACL 2019.
    """
    attn = check_array(attn, "attn", ndim=4)
    B, H, T, _ = attn.shape
    lengths = np.asarray(lengths)
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {lengths.shape}")
    stop = lengths - (1 if exclude_last else 0)
    q_valid = np.arange(T)[None, :] < stop[:, None]  # (B, T)
    mx = attn.max(axis=-1)  # (B, H, T)
    w = q_valid[:, None, :].astype(np.float64)
    return (mx * w).sum(axis=(0, 2)) / max(w.sum(), 1.0)


# ---------------------------------------------------------------------------------------------
# Hard-concrete L0 gates
# ---------------------------------------------------------------------------------------------

HC_BETA, HC_GAMMA, HC_ZETA = _gates.HC_BETA, _gates.HC_GAMMA, _gates.HC_ZETA


@validate_scalars
def hard_concrete_gate(log_alpha, rng=None, *, beta: float = HC_BETA, gamma: float = HC_GAMMA,
                       zeta: float = HC_ZETA):
    """Sample a hard-concrete gate ``z ∈ [0, 1]`` (Louizos et al. 2018; Voita et al. 2019).

    ``u ~ U(0, 1)``, ``s = σ((log u - log(1-u) + log α) / β)``, ``z = clip(s (ζ - γ) + γ, 0, 1)``.
    ``z`` is exactly 0 or 1 with positive probability, yet differentiable in ``log α`` where
    ``0 < z < 1`` (the tape carries the gradient through ``σ`` and ``clip``).

    Parameters
    ----------
    log_alpha : Tensor or ndarray of any shape
    rng : Generator or int
    beta, gamma, zeta : float
        Temperature and stretch interval ``(γ, ζ)``, ``γ < 0 < 1 < ζ``.

    Returns
    -------
    Tensor of the shape of ``log_alpha``

    Notes
    -----
    Survey §2.4.1 (stochastic L0 head gates).

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    """
    return _gates.hard_concrete_sample(log_alpha, rng, beta=beta, gamma=gamma, zeta=zeta)


def prob_nonzero(log_alpha, *, beta: float = HC_BETA, gamma: float = HC_GAMMA,
                 zeta: float = HC_ZETA) -> np.ndarray:
    """``P(z ≠ 0) = σ(log α - β log(-γ/ζ))`` of :func:`hard_concrete_gate` (closed form).

    Survey §2.4.1 (stochastic L0 head gates). Same shape as ``log_alpha``.

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    """
    return _gates.hard_concrete_prob_nonzero(log_alpha, beta=beta, gamma=gamma, zeta=zeta).data


@validate_scalars
def l0_penalty(log_alpha, *, beta: float = HC_BETA, gamma: float = HC_GAMMA,
               zeta: float = HC_ZETA):
    """Expected number of open gates ``Σ_h σ(log α_h - β log(-γ/ζ))`` (differentiable L0).

    Survey §2.4.1 (stochastic L0 head gates). Returns a scalar Tensor.

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    .. [2] E. Voita et al., "Analyzing Multi-Head Self-Attention: Specialized Heads Do the Heavy
       Lifting, the Rest Can Be Pruned", ACL 2019.
    """
    return _gates.hard_concrete_l0(log_alpha, beta=beta, gamma=gamma, zeta=zeta)


@validate_scalars
def hard_concrete_deterministic(log_alpha, *, gamma: float = HC_GAMMA,
                                zeta: float = HC_ZETA) -> np.ndarray:
    """Test-time gate ``clip(σ(log α)(ζ - γ) + γ, 0, 1)`` (Louizos et al., Eq. 13), as an array.

    Survey §2.4.1; :func:`refimpl.nn.gates.hard_concrete_deterministic` on the tape.
    """
    return _gates.hard_concrete_deterministic(log_alpha, gamma=gamma, zeta=zeta).data


# ---------------------------------------------------------------------------------------------
# LayerDrop (§2.4.2)
# ---------------------------------------------------------------------------------------------

@validate_scalars
def layerdrop_gates(num_layers: int, p, rng=None) -> np.ndarray:
    """Training-time LayerDrop: each layer is skipped with probability ``p`` (or ``p[d]``).

    Returns
    -------
    ndarray of shape (num_layers,), entries 0 (dropped) or 1

    Notes
    -----
    Survey §2.4.2.

    References
    ----------
    .. [1] A. Fan, E. Grave, A. Joulin, "Reducing Transformer Depth on Demand with Structured
       Dropout", ICLR 2020 (arXiv 1909.11556, 2019).
    """
    num_layers = check_int(num_layers, "num_layers", 1)
    p = check_values(p, "p", 0.0, 1.0, hi_open=True, ndim=(0, 1))
    if p.ndim == 1 and p.shape != (num_layers,):
        raise ValueError(f"p must be a number or have shape ({num_layers},), got {p.shape}")
    p = np.broadcast_to(p, (num_layers,))
    return (as_rng(rng).random(num_layers) >= p).astype(np.float64)


@validate_scalars
def every_other_keep(num_layers: int, p: float) -> np.ndarray:
    """"Every other" pruning at inference: drop layers ``d`` with ``d ≡ 0 (mod ⌊1/p⌋)``.

    Layers are counted from 1, so ``p = 0.5`` on 6 layers drops 2, 4, 6 and ``p = 1/3`` on 12
    layers drops every third layer (Fan et al. 2019, §5).

    Returns
    -------
    ndarray of bool of shape (num_layers,) (``True`` = kept)
    """
    num_layers = check_int(num_layers, "num_layers", 1)
    p = check_fraction(p, "p")
    keep = np.ones(num_layers, dtype=bool)
    if p > 0:
        step = int(np.floor(1.0 / p + 1e-9))
        keep[np.arange(1, num_layers + 1) % step == 0] = False
    return keep


@validate_scalars
@validate_arrays(eval_fn={"kind": "callable"})
def search_layers_validation(eval_fn: Callable[[np.ndarray], float], num_layers: int,
                             n_keep: int):
    """Try every set of ``n_keep`` kept layers and return the best on validation data.

    Parameters
    ----------
    eval_fn : callable
        ``eval_fn(keep) -> float`` (higher is better), ``keep`` bool of shape (num_layers,).
    num_layers, n_keep : int

    Returns
    -------
    keep : ndarray of bool of shape (num_layers,)
    score : float

    Notes
    -----
    Survey §2.4.2.

    References
    ----------
    .. [1] A. Fan, E. Grave, A. Joulin, "Reducing Transformer Depth on Demand with Structured
       Dropout", ICLR 2020 (arXiv 1909.11556, 2019).
    """
    num_layers = check_int(num_layers, "num_layers", 1)
    n_keep = check_int(n_keep, "n_keep", 1, num_layers)
    best, best_s = None, -np.inf
    for combo in itertools.combinations(range(num_layers), n_keep):
        keep = np.zeros(num_layers, dtype=bool)
        keep[list(combo)] = True
        s = float(eval_fn(keep))
        if s > best_s:
            best, best_s = keep, s
    return best, best_s


@validate_scalars
@validate_arrays(theta={"ndim": 1})
def data_driven_drop_rates(theta, p: float):
    """Per-layer drop rates with mean ``p``: ``p_d = L p softmax(θ)_d`` (Fan et al. 2019).

    Parameters
    ----------
    theta : Tensor or ndarray of shape (num_layers,)
        Learned layer scores (higher → dropped more often).
    p : float
        Target average drop rate, in ``(0, 1)``; needs ``L p softmax(θ)_d < 1``.

    Returns
    -------
    Tensor of shape (num_layers,) whose mean is exactly ``p``.

    Notes
    -----
    Survey §2.4.2.

    References
    ----------
    .. [1] A. Fan, E. Grave, A. Joulin, "Reducing Transformer Depth on Demand with Structured
       Dropout", ICLR 2020 (arXiv 1909.11556, 2019).
    """
    p = check_float(p, "p", 0.0, 1.0, lo_open=True, hi_open=True)
    th = theta if isinstance(theta, Tensor) else Tensor(np.asarray(theta, float))
    return F.softmax(th, axis=-1) * (th.shape[0] * p)


@validate_scalars
@validate_arrays(theta={"ndim": 1})
def data_driven_keep(theta, n_keep: int) -> np.ndarray:
    """Inference: keep the ``n_keep`` layers with the lowest learned drop rate.

    Survey §2.4.2. ``theta`` of shape (num_layers,) -> boolean keep mask of shape (num_layers,).

    References
    ----------
    .. [1] A. Fan, E. Grave, A. Joulin, "Reducing Transformer Depth on Demand with Structured
       Dropout", ICLR 2020 (arXiv 1909.11556, 2019).
    """
    th = np.asarray(theta.data if isinstance(theta, Tensor) else theta, float)
    n_keep = check_int(n_keep, "n_keep", 1, th.shape[0])
    keep = np.zeros(th.shape[0], dtype=bool)
    keep[np.argsort(th, kind="stable")[:n_keep]] = True
    return keep


@validate_scalars
@validate_arrays(drop_rates={"ndim": 1})
def relaxed_layer_gates(drop_rates, rng=None, temperature: float = 0.5):
    """Concrete (relaxed Bernoulli) keep-gates with keep probability ``1 - p_d``, differentiable
    in ``p_d`` (used to learn data-driven LayerDrop rates).

    Part of Survey §2.4.2 (data-driven LayerDrop, Fan et al. 2019).
    """
    rng = as_rng(rng)
    temperature = check_float(temperature, "temperature", 0.0, lo_open=True)
    pd = drop_rates if isinstance(drop_rates, Tensor) else Tensor(np.asarray(drop_rates, float))
    u = rng.uniform(1e-6, 1 - 1e-6, pd.shape)
    pd = F.clip(pd, 1e-4, 1 - 1e-4)
    logit_keep = F.log(1.0 - pd) - F.log(pd)
    return F.sigmoid((logit_keep + (np.log(u) - np.log1p(-u))) * (1.0 / temperature))


__all__.append("relaxed_layer_gates")


# ---------------------------------------------------------------------------------------------
# Joint FFN + head masks (§2.4.3)
# ---------------------------------------------------------------------------------------------

@validate_scalars
@validate_arrays(X={"ndim": 2, "dtype_kind": "iu"}, lengths={"ndim": 1, "dtype_kind": "iu"},
                 y={"ndim": 1, "dtype_kind": "iu", "optional": True})
@validate_arrays(model={"kind": "module"}, eval_fn={"kind": "callable"})
def joint_prune_masks(model, X, lengths, y, eval_fn: Callable[[np.ndarray, np.ndarray], float],
                      *, head_fraction: float = 0.1, ffn_per_step: int = 1,
                      min_score: float | None = None, max_steps: int = 100):
    """Prasanna et al.'s structured pruning of heads and FFNs together by gate sensitivity.

    Each step recomputes ``E|∂L/∂ξ_h|`` and ``E|∂L/∂ν_l|`` (:func:`structure_importance`) at the
    current masks, masks the ``ceil(head_fraction · n_heads)`` least important remaining heads
    and the ``ffn_per_step`` least important remaining FFNs, and stops before the score
    ``eval_fn(head_mask, ffn_mask)`` would fall below ``min_score`` (Prasanna et al. use 90% of
    the full model's score).

    Returns
    -------
    head_mask : ndarray of shape (num_layers, num_heads)
    ffn_mask : ndarray of shape (num_layers,)
    history : list of (n_heads_kept, n_ffn_kept, score)

    Notes
    -----
    Survey §2.4.3.

    References
    ----------
    .. [1] S. Prasanna, A. Rogers, A. Rumshisky, "When BERT Plays the Lottery, All Tickets Are
       Winning", EMNLP 2020.
    """
    head_fraction = check_float(head_fraction, "head_fraction", 0.0, 1.0, lo_open=True,
                                hi_open=True)
    ffn_per_step = check_int(ffn_per_step, "ffn_per_step", 0)
    L, H = model.num_layers, model.num_heads
    hm, fm = np.ones((L, H)), np.ones(L)
    base = float(eval_fn(hm, fm))
    min_score = 0.9 * base if min_score is None else float(min_score)
    hist = [(int(hm.sum()), int(fm.sum()), base)]
    n_h = max(1, int(np.ceil(head_fraction * L * H)))
    for _ in range(check_int(max_steps, "max_steps", 0)):
        hi, fi = structure_importance(model, X, lengths, y, head_mask=hm, ffn_mask=fm)
        hi = hi / np.maximum(np.linalg.norm(hi, axis=1, keepdims=True), 1e-20)
        new_h, new_f = hm.copy().ravel(), fm.copy()
        alive = np.flatnonzero(new_h > 0)
        k = min(n_h, alive.size - 1)
        if k > 0:
            new_h[alive[np.argsort(hi.ravel()[alive], kind="stable")[:k]]] = 0.0
        alive_f = np.flatnonzero(new_f > 0)
        kf = min(ffn_per_step, alive_f.size)
        if kf > 0:
            new_f[alive_f[np.argsort(fi[alive_f], kind="stable")[:kf]]] = 0.0
        new_h = new_h.reshape(L, H)
        if k <= 0 and kf <= 0:
            break
        s = float(eval_fn(new_h, new_f))
        if s < min_score:
            break
        hm, fm = new_h, new_f
        hist.append((int(hm.sum()), int(fm.sum()), s))
    return hm, fm, hist


# ---------------------------------------------------------------------------------------------
# Training the gates: L0 head gates (Voita et al.) and data-driven LayerDrop rates (Fan et al.)
# ---------------------------------------------------------------------------------------------

def fit_gated(model, X, lengths, y, *, epochs: int = 5, lr: float = 3e-3,
              batch_size: int = 64, rng=None, gate_fn: Callable | None = None,
              extra_loss: Callable | None = None, extra_params=(),
              after_step: Callable | None = None):
    """Train a :class:`refimpl.nn.TransformerClassifier` with :func:`refimpl.nn.fit` (Adam on
    cross-entropy), under gates that change every step.

    ``gate_fn(rng) -> dict`` gives each step's mask keyword arguments of the model
    (``{"layer_mask": ...}`` for LayerDrop, ``{"head_mask": ...}`` for hard-concrete head
    gates); it draws from the same Generator that
    shuffles the batches. ``extra_loss(model) -> Tensor`` is added to the loss (the L0
    penalty); ``extra_params`` are further Tensors Adam updates (gate parameters);
    ``after_step(model)`` runs after each update.

    Returns
    -------
    refimpl.nn.History

    Notes
    -----
    Part of Survey §2.4 (the training loop of the gated head and layer methods).
    """
    rng = as_rng(rng)
    X = check_array(X, "X", ndim=2, dtype_kind="iu")
    params = model.parameters() + list(extra_params)

    def forward(m, xb, lb):
        return m(xb, lb, **(gate_fn(rng) if gate_fn is not None else {}))

    def loss_fn(out, yb):
        loss = cross_entropy(out, yb)
        return loss if extra_loss is None else loss + extra_loss(model)

    return fit(model, (X, np.asarray(lengths), np.asarray(y)), epochs=epochs,
               batch_size=batch_size, optimizer=Adam(params, lr=lr), rng=rng, forward=forward,
               loss_fn=loss_fn, after_step=after_step, progress=False)


@validate_scalars(epochs=(1, None), lr=(0, None, "(]"), batch_size=(1, None), lam=(0, None))
@validate_arrays(X={"ndim": 2, "dtype_kind": "iu"}, lengths={"ndim": 1, "dtype_kind": "iu"},
                 y={"ndim": 1, "dtype_kind": "iu"})
@validate_arrays(model={"kind": "module"})
def train_l0_head_gates(model, X, lengths, y, *, lam: float = 0.05, epochs: int = 2,
                        lr: float = 3e-3, batch_size: int = 64, init: float = 2.0, rng=None):
    """Learn stochastic hard-concrete head gates with an L0 penalty, jointly with the model.

    Each step samples ``ξ = hard_concrete_gate(log α)`` (shape ``(num_layers, num_heads)``) and
    minimises ``cross-entropy + lam · Σ_h P(ξ_h ≠ 0)`` (Voita et al. 2019, following Louizos et
    al. 2018). At test time the gates are :func:`hard_concrete_deterministic`; heads whose gate
    is 0 are pruned.

    Returns
    -------
    log_alpha : ndarray of shape (num_layers, num_heads)
    gates : ndarray of shape (num_layers, num_heads)
        Deterministic test-time gates.

    Notes
    -----
    Survey §2.4.1.

    References
    ----------
    .. [1] C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    .. [2] E. Voita et al., "Analyzing Multi-Head Self-Attention: Specialized Heads Do the Heavy
       Lifting, the Rest Can Be Pruned", ACL 2019.
    """
    lam = check_float(lam, "lam", 0.0)
    L, H = model.num_layers, model.num_heads
    la = Parameter(np.full((L, H), float(init)))
    fit_gated(model, X, lengths, y, epochs=epochs, lr=lr, batch_size=batch_size, rng=rng,
              gate_fn=lambda r: {"head_mask": hard_concrete_gate(la, r)},
              extra_loss=lambda m: l0_penalty(la) * lam, extra_params=[la])
    return la.data.copy(), hard_concrete_deterministic(la.data)


@validate_scalars(epochs=(1, None), lr=(0, None, "(]"), batch_size=(1, None),
                  temperature=(0, None, "(]"))
@validate_arrays(X={"ndim": 2, "dtype_kind": "iu"}, lengths={"ndim": 1, "dtype_kind": "iu"},
                 y={"ndim": 1, "dtype_kind": "iu"})
@validate_arrays(model={"kind": "module"})
def learn_layer_drop_rates(model, X, lengths, y, *, p: float = 0.5, epochs: int = 2,
                           lr: float = 3e-3, batch_size: int = 64, temperature: float = 0.5,
                           rng=None) -> np.ndarray:
    """Data-driven LayerDrop (Fan et al. 2019): learn per-layer drop rates ``p_d`` with mean ``p``.

    ``p_d = L p softmax(θ)_d`` (:func:`data_driven_drop_rates`); each step samples relaxed
    Bernoulli keep-gates (:func:`relaxed_layer_gates`) so that ``θ`` gets a gradient, and trains
    it with the model. At inference keep the top-k layers by lowest ``p_d``
    (:func:`data_driven_keep`).

    Returns
    -------
    theta : ndarray of shape (num_layers,)

    Notes
    -----
    Survey §2.4.2.

    References
    ----------
    .. [1] A. Fan, E. Grave, A. Joulin, "Reducing Transformer Depth on Demand with Structured
       Dropout", ICLR 2020 (arXiv 1909.11556, 2019).
    """
    check_float(p, "p", 0.0, 1.0, lo_open=True, hi_open=True)
    theta = Parameter(np.zeros(model.num_layers))
    fit_gated(model, X, lengths, y, epochs=epochs, lr=lr, batch_size=batch_size, rng=rng,
              gate_fn=lambda r: {"layer_mask": relaxed_layer_gates(
                  data_driven_drop_rates(theta, p), r, temperature)},
              extra_params=[theta])
    return theta.data.copy()


__all__ += ["train_l0_head_gates", "learn_layer_drop_rates", "fit_gated"]
