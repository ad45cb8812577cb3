"""§2 methods in ``refimpl tour``: magnitude, gradual, bank-balanced, head pruning, LayerDrop.

Every method copies a trained baseline, prunes it with :mod:`refimpl.pruning.network`,
fine-tunes briefly with the tour's shared loop (``ctx.fit``) while an ``after_step`` hook keeps
the pruned weights at zero, and reports the exact storage:

* unstructured masks: CSR with 5-bit relative indices and filler zeros (Han et al.), float32
  values, 32-bit row pointers (:func:`refimpl.pruning.network.model_bits`);
* bank-balanced masks: ``nnz (32 + log2 bank_size)`` bits (values and in-bank offsets, no row
  pointers) for the pruned matrices;
* heads and layers: the pruned heads' rows of ``W_q, W_k, W_v`` (and biases) and columns of
  ``W_o``, or the dropped layers' parameters, are simply not stored.

``heads-50`` and ``layerdrop-every-other`` also run on the causal Transformer LM of
``refimpl tour --task lm``: Eq. (18)'s importance then scores each training sentence's mean
next-token NLL (:func:`importance_rows`, :func:`refimpl.pruning.heads_layers.structure_importance`
with ``y=None``).
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.registry import MethodResult, TourContext, register_method
from refimpl.pruning.blocks import bank_balanced_mask
from refimpl.pruning.heads_layers import head_importance
from refimpl.pruning.network import (GradualPruner, apply_masks_, magnitude_masks,
                                     mask_after_step, model_bits, prunable_weights)

__all__ = ["FINETUNE_EPOCHS", "bank_size_for", "importance_rows"]

#: Fine-tuning epochs after pruning (the tour's quick mode is short on time).
FINETUNE_EPOCHS = 1


def _fit(ctx, model, **kw):
    return ctx.fit(model, epochs=kw.pop("epochs", FINETUNE_EPOCHS), **kw)


@register_method("magnitude-90", family="pruning", section="2.1.2",
                 description="one-shot magnitude pruning of every weight matrix to 90% "
                             "(class-uniform), fine-tuned with the mask fixed")
def magnitude_90(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline()
    masks = magnitude_masks(model, 0.9, scheme="class-uniform")
    apply_masks_(model, masks)
    _fit(ctx, model, after_step=mask_after_step(masks))
    bits, params = model_bits(model, masks, index_bits=5)
    return MethodResult(model, bits=bits, params=params,
                        notes="sparsity 0.90 per matrix, CSR 5-bit relative indices")


def _steps_per_epoch(ctx) -> int:
    cfg = getattr(ctx, "config", None)
    bs = getattr(cfg, "batch_size", 64) or 64
    return max(1, math.ceil(len(ctx.task.y_train) / bs))


@register_method("gradual-90", family="pruning", section="2.1.3",
                 description="gradual pruning to 90% on Zhu & Gupta's cubic schedule (Eq. 7) "
                             "during fine-tuning")
def gradual_90(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline()
    epochs = FINETUNE_EPOCHS + 1
    n_steps = epochs * _steps_per_epoch(ctx)
    n_prunes = 8
    freq = max(1, n_steps // (2 * n_prunes))  # reach the target half-way, then recover
    pruner = GradualPruner(model, 0.9, n_prunes=n_prunes, frequency=freq)
    _fit(ctx, model, epochs=epochs, after_step=pruner)
    # if the loop ran fewer steps than planned, finish the schedule at its end point
    final = magnitude_masks(model, 0.9, scheme="class-uniform", names=pruner.names)
    masks = {n: pruner.masks[n] & final[n] for n in pruner.names} \
        if pruner.step < n_prunes * freq else pruner.masks
    apply_masks_(model, masks)
    bits, params = model_bits(model, masks, index_bits=5)
    return MethodResult(model, bits=bits, params=params,
                        notes=f"cubic schedule, {n_prunes} pruning steps every {freq} steps")


def bank_size_for(n_cols: int, preferred: int = 16) -> int:
    """The largest power of two ``≤ preferred`` dividing ``n_cols`` (1 if none)."""
    b = preferred
    while b > 1 and n_cols % b:
        b //= 2
    return b


@register_method("bbs-75", family="pruning", section="2.3",
                 description="bank-balanced sparsity 75% (banks of up to 16 columns, Cao et "
                             "al.), fine-tuned with the mask fixed")
def bbs_75(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline()
    W = prunable_weights(model)
    masks, banks = {}, {}
    for n, p in W.items():
        b = bank_size_for(p.shape[1])
        if b < 4:  # 75% needs at least 4 columns per bank
            continue
        banks[n] = b
        masks[n] = bank_balanced_mask(p.data, b, 0.75)
    apply_masks_(model, masks)
    _fit(ctx, model, after_step=mask_after_step(masks))
    bits, params = 0, 0
    for n, p in model.named_parameters():
        if n in masks:
            nnz = int(masks[n].sum())
            bits += nnz * (32 + int(math.log2(banks[n])))
            params += nnz
        else:
            bits += 32 * p.size
            params += p.size
    return MethodResult(model, bits=bits, params=params,
                        notes=f"{len(masks)} matrices bank-balanced (k = bank/4 per bank)")


def _transformer(ctx):
    """A copy of the trained Transformer baseline (the primary one, or ``baselines``)."""
    if ctx.baseline_kind == "transformer":
        return ctx.copy_baseline()
    try:
        return ctx.copy_baseline("transformer")
    except (TypeError, KeyError) as e:
        raise ValueError("head pruning and LayerDrop need a trained Transformer baseline") from e


def _mhas(model):
    from refimpl.nn import MultiHeadAttention

    return [m for m in model.modules() if isinstance(m, MultiHeadAttention)]


def _head_params(mha) -> int:
    """Parameters owned by one head: its rows of W_q, W_k, W_v (+ biases), columns of W_o."""
    d, dh = mha.d_model, mha.d_head
    bias = sum(lin.b is not None for lin in (mha.W_q, mha.W_k, mha.W_v)) \
        if hasattr(mha.W_q, "b") else 0
    return 4 * dh * d + bias * dh


def importance_rows(ctx: TourContext, model, n: int = 512):
    """The first ``n`` training rows Eq. (18)'s importance is measured on, as
    ``(X, lengths, y)``: a classifier's ``X_train, len_train, y_train``; a causal
    :class:`refimpl.nn.TransformerLanguageModel`'s ``<bos> … <eos>`` rows ``train, len_train``
    with ``y = None`` (its loss is each sentence's mean next-token NLL), trimmed to the longest
    of them."""
    from refimpl.nn import TransformerLanguageModel

    t = ctx.task
    if isinstance(model, TransformerLanguageModel):
        X, lengths = np.asarray(t.train)[:n], np.asarray(t.len_train)[:n]
        return X[:, :int(lengths.max())], lengths, None
    n = min(n, len(t.y_train))
    return t.X_train[:n], t.len_train[:n], t.y_train[:n]


@register_method("heads-50", family="pruning", section="2.4.1",
                 description="prune the half of the attention heads with the lowest importance "
                             "I_h (Eq. 18, Michel et al.), then fine-tune")
def heads_50(ctx: TourContext) -> MethodResult:
    model = _transformer(ctx)
    mhas = _mhas(model)
    if not mhas:
        raise ValueError("the baseline has no MultiHeadAttention layers")
    # Eq. (18) on per-example head gates, normalised per layer (Michel et al.)
    imp = head_importance(model, *importance_rows(ctx, model), normalize=True)
    flat = imp.ravel()
    k = flat.size // 2
    drop = np.argsort(flat, kind="stable")[:k]
    mask = np.ones(flat.size)
    mask[drop] = 0.0
    mask = mask.reshape(imp.shape)
    for m, row in zip(mhas, mask):
        m.head_mask = row.copy()
    _fit(ctx, model)
    removed = sum(int((row == 0).sum()) * _head_params(m) for m, row in zip(mhas, mask))
    params = model.num_parameters() - removed
    return MethodResult(model, bits=32 * params, params=params,
                        notes=f"{k} of {flat.size} heads pruned by I_h")


@register_method("layerdrop-every-other", family="pruning", section="2.4.2",
                 description="fine-tune with LayerDrop p=0.5, then keep every other layer "
                             "(Fan et al.)")
def layerdrop_every_other(ctx: TourContext) -> MethodResult:
    from refimpl.nn import ModuleList
    from refimpl.pruning.heads_layers import every_other_keep, layerdrop_gates

    model = _transformer(ctx)
    layers = list(getattr(model, "layers", []))
    if not layers:
        raise ValueError("the baseline has no `layers` of Transformer blocks")
    rng = np.random.default_rng(ctx.seed)
    num_layers = len(layers)

    def forward(m, X, lengths):  # LayerDrop: each layer skipped with p = 0.5 at every step
        return m(X, lengths, layer_mask=layerdrop_gates(num_layers, 0.5, rng))

    _fit(ctx, model, forward=forward)
    keep = every_other_keep(num_layers, 0.5)
    # pruned at inference: the dropped layers leave the encoder (= layer_mask 0 at every call)
    model.layers = ModuleList(layer for layer, kp in zip(layers, keep) if kp)
    model.num_layers = len(model.layers)
    params = model.num_parameters()
    return MethodResult(model, bits=32 * params, params=params,
                        notes=f"kept layers {np.flatnonzero(keep).tolist()} of {len(layers)}")
