"""Pruning (Survey §2): weights (§2.1), neurons (§2.2), blocks (§2.3), heads and layers (§2.4).

=============================  ===========================================================
module                         methods (survey §, equations, papers)
=============================  ===========================================================
:mod:`.weights`                §2.1 — OBD saliency (Eq. 1, LeCun et al. 1990); OBS saliency,
                               update and recursive inverse Hessian (Eqs. 2–3, Hassibi &
                               Stork 1993); one-shot magnitude pruning (Han et al. 2015);
                               class-blind/-uniform/-distribution allocation (See et al.
                               2016); Narang et al.'s threshold schedule (Eqs. 4–6); Zhu &
                               Gupta's cubic schedule (Eq. 7); iterative pruning with and
                               without revival; RPP (Eq. 8, Guo et al. 2019); DSD (Han et al.
                               2016b); grow-and-prune (Dai et al. 2018)
:mod:`.storage`                §2.1.2 — CSR with relative (delta) indices, filler zeros and an
                               exact, packed bit count (Han et al. 2016)
:mod:`.neurons`                §2.2 — entropy (Eq. 9), onorm, inorm (He et al. 2014); row L2 /
                               L∞ regularisers (Eqs. 10–11, Murray & Chiang 2015); redundant
                               neuron merging (Eqs. 12–15, Srinivas & Babu 2015)
:mod:`.blocks`                 §2.3 — block pruning and the N_b^(1/4) slope (Eq. 16), group
                               lasso (Eq. 17) (Narang et al. 2017b); bank-balanced sparsity
                               (Cao et al. 2019)
:mod:`.network`                masks on :mod:`refimpl.nn` models (``after_step`` hooks,
                               gradual pruner, exact CSR bits)
:mod:`.heads_layers`           §2.4 — head importance (Eq. 18, Michel et al. 2019; per-example
                               head gates of :class:`refimpl.nn.TransformerClassifier`), head
                               confidence and hard-concrete L0 gates (Voita et al. 2019;
                               :mod:`refimpl.nn.gates`),
                               iterative head pruning; LayerDrop (Fan et al. 2019); joint FFN
                               + head masks (Prasanna et al. 2020)
=============================  ===========================================================

Kernels for the sparse formats: :mod:`refimpl.kernels.sparse` (CSR) and
:mod:`refimpl.kernels.block_sparse` (BSR, bank-balanced).
"""

from refimpl.pruning.blocks import (bank_balanced_mask, block_mask, block_norms, block_slope,
                                    block_threshold_mask, group_lasso_penalty,
                                    group_lasso_prox)
from refimpl.pruning.heads_layers import (data_driven_drop_rates, data_driven_keep,
                                          every_other_keep, hard_concrete_deterministic,
                                          hard_concrete_gate, head_confidence,
                                          head_importance, head_importance_from_outputs,
                                          iterative_head_pruning, joint_prune_masks,
                                          l0_penalty, layerdrop_gates,
                                          learn_layer_drop_rates, relaxed_layer_gates,
                                          search_layers_validation, structure_importance,
                                          train_l0_head_gates)
from refimpl.pruning.network import (GradualPruner, apply_masks_, magnitude_masks,
                                     mask_after_step, model_bits, model_sparsity,
                                     prunable_weights)
from refimpl.pruning.neurons import (inorm, merge_neurons, neuron_entropy,
                                     neuron_pair_saliency, onorm, prune_redundant_neurons,
                                     remove_neurons, row_l2_penalty, row_linf_penalty)
from refimpl.pruning.sparse_linear import CSRLinear
from refimpl.pruning.storage import DeltaCSR, decode_delta_csr, encode_delta_csr
from refimpl.pruning.weights import (allocate_pruning, apply_mask, dsd_train,
                                     grow_and_prune_step, hassibi_inverse_hessian, hessian_fd,
                                     magnitude_mask, magnitude_prune, narang_q, narang_slope,
                                     narang_threshold, obd_saliency, obs_prune, obs_saliency,
                                     obs_update, prune_train, reweighted_l1_alpha, rpp_step,
                                     soft_threshold, zhu_gupta_sparsity)

__all__ = [
    "obd_saliency", "obs_saliency", "obs_update", "obs_prune", "hassibi_inverse_hessian",
    "hessian_fd", "magnitude_mask", "magnitude_prune", "apply_mask", "allocate_pruning",
    "narang_slope", "narang_threshold", "narang_q", "zhu_gupta_sparsity", "prune_train",
    "reweighted_l1_alpha", "soft_threshold", "rpp_step", "dsd_train", "grow_and_prune_step",
    "DeltaCSR", "encode_delta_csr", "decode_delta_csr",
    "neuron_entropy", "onorm", "inorm", "row_l2_penalty", "row_linf_penalty", "remove_neurons",
    "neuron_pair_saliency", "merge_neurons", "prune_redundant_neurons",
    "block_norms", "block_mask", "block_threshold_mask", "block_slope", "group_lasso_penalty",
    "group_lasso_prox", "bank_balanced_mask",
    "head_importance_from_outputs", "head_importance", "structure_importance",
    "iterative_head_pruning", "head_confidence", "hard_concrete_gate", "l0_penalty",
    "hard_concrete_deterministic", "layerdrop_gates", "every_other_keep",
    "search_layers_validation", "data_driven_drop_rates", "data_driven_keep",
    "joint_prune_masks", "train_l0_head_gates", "learn_layer_drop_rates", "relaxed_layer_gates",
    "prunable_weights", "magnitude_masks", "apply_masks_", "mask_after_step", "GradualPruner",
    "model_sparsity", "model_bits",
    "CSRLinear",
]
