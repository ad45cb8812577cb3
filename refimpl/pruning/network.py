"""Pruning masks on :mod:`refimpl.nn` models (Survey §2.1–§2.4 applied to whole networks).

A mask is a constant gate: the pruned weights are set to zero and kept there by re-applying the
mask after every optimiser step (the ``after_step`` hook of a training loop), which is the same
as masking the gradient for SGD and keeps Adam's moment estimates from reviving them.

=====================================  =======================================================
function                               what it does
=====================================  =======================================================
:func:`prunable_weights`               the 2-D weight matrices of a model (biases, LayerNorm
                                       gains and 1-D parameters are never pruned, Narang et al.)
:func:`magnitude_masks`                one-shot masks with See et al.'s class-blind / -uniform /
                                       -distribution allocation, or bank-balanced / block masks
:func:`apply_masks_`                   zero the pruned weights in place
:func:`mask_after_step`                ``after_step`` hook re-applying fixed masks
:class:`GradualPruner`                 ``after_step`` hook recomputing masks on Zhu & Gupta's
                                       cubic schedule (Eq. (7)) with or without revival
:func:`model_sparsity`,
:func:`model_bits`                     non-zeros and exact storage (CSR with relative indices
                                       for pruned matrices, dense float32 for the rest)
=====================================  =======================================================
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from refimpl.pruning.blocks import bank_balanced_mask, block_mask
from refimpl.pruning.storage import encode_delta_csr
from refimpl.pruning.weights import allocate_pruning, magnitude_mask, zhu_gupta_sparsity
from refimpl.utils import check_choice, check_fraction, check_int, validate_arrays, validate_scalars

__all__ = ["prunable_weights", "magnitude_masks", "apply_masks_", "mask_after_step",
           "GradualPruner", "model_sparsity", "model_bits"]


@validate_scalars
@validate_arrays(model={"kind": "module"})
def prunable_weights(model, names: Iterable[str] | None = None, *,
                     include_embeddings: bool = True) -> dict:
    """``{name: Parameter}`` of the model's 2-D weight matrices (or of ``names``).

    Part of Survey §2 (masks on whole networks).
    """
    params = dict(model.named_parameters())
    if names is not None:
        names = list(names)
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"names contains parameters the model does not have: {missing}")
        return {n: params[n] for n in names}
    out = {}
    for n, p in params.items():
        if p.data.ndim != 2:
            continue
        if not include_embeddings and ("embed" in n.lower() or n.split(".")[-1] == "E"):
            continue
        out[n] = p
    return out


@validate_scalars
@validate_arrays(model={"kind": "module"})
def magnitude_masks(model, sparsity: float, *, scheme: str = "class-uniform",
                    names: Iterable[str] | None = None, bank_size: int | None = None,
                    block_shape=None) -> dict:
    """One-shot pruning masks for the model's weight matrices.

    Parameters
    ----------
    model : refimpl.nn.Module
    sparsity : float in [0, 1)
    scheme : {"class-blind", "class-uniform", "class-distribution", "bank-balanced", "block"}
        The first three are See et al.'s allocations across weight classes (each matrix is a
        class); ``"bank-balanced"`` (Cao et al., needs ``bank_size``) and ``"block"`` (Narang et
        al. 2017b, needs ``block_shape``) prune each matrix at ``sparsity``.
    names : iterable of str, optional
        Parameters to prune (default: :func:`prunable_weights`).

    Returns
    -------
    dict of str to ndarray of bool

    Notes
    -----
    Survey §2.1.2 (magnitude pruning, See et al.'s allocations) and §2.3 (block,
    bank-balanced) applied to a whole model.
    """
    check_choice(scheme, "scheme", ("class-blind", "class-uniform", "class-distribution",
                                    "bank-balanced", "block"))
    sparsity = check_fraction(sparsity, "sparsity")
    W = {n: p.data for n, p in prunable_weights(model, names).items()}
    if scheme == "bank-balanced":
        if bank_size is None:
            raise ValueError("bank_size is required for scheme='bank-balanced'")
        return {n: bank_balanced_mask(w, bank_size, sparsity) for n, w in W.items()}
    if scheme == "block":
        if block_shape is None:
            raise ValueError("block_shape is required for scheme='block'")
        return {n: block_mask(w, block_shape, sparsity) for n, w in W.items()}
    return allocate_pruning(W, sparsity, scheme)


@validate_scalars
@validate_arrays(model={"kind": "module"}, masks={"kind": "mapping"})
def apply_masks_(model, masks: dict) -> None:
    """Set the pruned weights of ``model`` to zero, in place.

    Part of Survey §2 (masks on whole networks).
    """
    params = dict(model.named_parameters())
    for n, m in masks.items():
        if n not in params:
            raise ValueError(f"masks has {n!r}, which is not a parameter of the model")
        if m.shape != params[n].shape:
            raise ValueError(f"masks[{n!r}] has shape {m.shape}, parameter has "
                             f"{params[n].shape}")
        params[n].data = np.where(m, params[n].data, 0.0).astype(params[n].dtype)


@validate_scalars
@validate_arrays(masks={"kind": "mapping"})
def mask_after_step(masks: dict) -> Callable:
    """An ``after_step(model)`` hook that re-applies fixed ``masks`` (pruned weights stay 0).

    Part of Survey §2 (masks on whole networks).
    """
    def after_step(model):
        apply_masks_(model, masks)

    return after_step


class GradualPruner:
    """``after_step`` hook (or :func:`refimpl.nn.fit` callback): gradual magnitude pruning on
    Zhu & Gupta's schedule (Eq. (7)).

    Every ``frequency`` steps from ``begin_step`` the masks are recomputed per matrix to the
    target sparsity ``zhu_gupta_sparsity(step, final_sparsity, ...)``; in between they are
    re-applied. With ``revive=False`` a pruned weight stays pruned (new mask = old mask AND
    magnitude mask of the surviving weights); with ``revive=True`` the mask is recomputed from
    the current weights. (Weights pruned by a mask are zeroed, so with a masked forward they
    can only revive through their optimiser update.)

    Attributes
    ----------
    masks : dict of str to ndarray of bool
    step : int
    """

    @validate_scalars
    @validate_arrays(model={"kind": "module"})
    def __init__(self, model, final_sparsity: float, *, n_prunes: int = 10,
                 frequency: int = 10, begin_step: int = 0, initial_sparsity: float = 0.0,
                 names: Iterable[str] | None = None, revive: bool = False):
        self.final_sparsity = check_fraction(final_sparsity, "final_sparsity")
        self.initial_sparsity = check_fraction(initial_sparsity, "initial_sparsity")
        self.n_prunes = check_int(n_prunes, "n_prunes", 1)
        self.frequency = check_int(frequency, "frequency", 1)
        self.begin_step = check_int(begin_step, "begin_step", 0)
        self.names = list(prunable_weights(model, names))
        self.revive = bool(revive)
        self.masks = {n: np.ones(p.shape, bool)
                      for n, p in prunable_weights(model, self.names).items()}
        self.step = 0

    def target(self, step: int) -> float:
        return zhu_gupta_sparsity(step, self.final_sparsity, self.initial_sparsity,
                                  begin_step=self.begin_step, n_prunes=self.n_prunes,
                                  frequency=self.frequency)

    def on_step_end(self, model, step: int) -> None:
        """The :class:`refimpl.nn.Callback` form: ``nn.fit(..., callbacks=[pruner])``."""
        self(model)

    def __call__(self, model) -> None:
        self.step += 1
        t = self.step
        end = self.begin_step + self.n_prunes * self.frequency
        if t >= self.begin_step and (t - self.begin_step) % self.frequency == 0 and t <= end:
            s = self.target(t)
            params = prunable_weights(model, self.names)
            for n, p in params.items():
                w = p.data if self.revive else np.where(self.masks[n], p.data, 0.0)
                new = magnitude_mask(w, s)
                self.masks[n] = new if self.revive else (self.masks[n] & new)
        apply_masks_(model, self.masks)


@validate_scalars
@validate_arrays(model={"kind": "module"})
def model_sparsity(model, names: Iterable[str] | None = None) -> float:
    """Fraction of exact zeros among the prunable weights.

    Part of Survey §2 (masks on whole networks).
    """
    W = prunable_weights(model, names)
    total = sum(p.size for p in W.values())
    zeros = sum(int((p.data == 0).sum()) for p in W.values())
    return zeros / max(total, 1)


@validate_scalars(index_bits=(1, None), value_bits=(1, None), pointer_bits=(1, None))
@validate_arrays(model={"kind": "module"})
def model_bits(model, masks: dict | None = None, *, index_bits: int = 5, value_bits: int = 32,
               pointer_bits: int = 32) -> tuple[int, int]:
    """Exact storage of a pruned model and its stored parameter count.

    Matrices in ``masks`` (default: every prunable matrix with a zero) are stored as CSR with
    ``index_bits``-bit relative indices and filler zeros (Han et al.;
    :func:`refimpl.pruning.storage.encode_delta_csr`); every other parameter densely at
    ``value_bits``.

    Returns
    -------
    bits : int
    params : int
        Stored values (non-zeros plus fillers for the sparse matrices).

    Notes
    -----
    Part of Survey §2.1.2 (CSR storage with relative indices, Han et al.).
    """
    index_bits = check_int(index_bits, "index_bits", 1, 31)
    params = dict(model.named_parameters())
    if masks is None:
        masks = {n: p.data != 0 for n, p in prunable_weights(model).items()
                 if np.any(p.data == 0)}
    bits, stored = 0, 0
    for n, p in params.items():
        if n in masks:
            enc = encode_delta_csr(np.where(masks[n], p.data, 0.0), index_bits)
            bits += enc.bits(value_bits, pointer_bits)
            stored += enc.n_entries
        else:
            bits += p.size * value_bits
            stored += p.size
    return int(bits), int(stored)
