"""Transformers with sub-quadratic complexity, Survey §7.

====================================  ==============  ====================================
function                              survey          paper
====================================  ==============  ====================================
:func:`dense_attention`               Eq. (68), §7.1  Vaswani et al., 2017 (the reference)
:func:`blockbert_attention`           §7.1            Qiu et al., 2020 (BlockBERT)
:func:`sparse_transformer_attention`  §7.1            Child et al., 2019 (strided, fixed)
:func:`lsh_attention`                 §7.1            Kitaev et al., 2020 (Reformer)
:func:`star_attention`                §7.2            Guo et al., 2019 (Star-Transformer)
:func:`linformer_attention`           §7.2            Wang et al., 2020 (Linformer)
:func:`sinkhorn_attention`            §7.2            Tay et al., 2020 (Sinkhorn, SortCut)
:func:`efficient_attention`           Eq. (69), §7.2  Shen et al., 2018
:func:`linear_attention`              §7.2            Katharopoulos et al., 2020
:func:`longformer_attention`          §7.2            Beltagy et al., 2020 (Longformer)
====================================  ==============  ====================================

Every function takes ``Q, K, V`` of shape ``(batch, heads, n, d)`` and returns the
``(batch, heads, n, d_v)`` array dense attention returns. Exact variants have a ``*_mask``
companion: :func:`dense_attention` under it gives the same output. Kernels that never form the
``n × n`` matrix live in :mod:`refimpl.kernels.attention`; Tensor-level (differentiable) hooks
for :class:`refimpl.nn.MultiHeadAttention` are in :mod:`refimpl.attention.hooks`."""

from refimpl.attention.dense import (
    attention_weights,
    causal_mask,
    dense_attention,
    dense_attention_t,
)
from refimpl.attention.linear import (
    efficient_attention,
    efficient_attention_quadratic,
    efficient_attention_survey_form,
    elu_feature_map,
    linear_attention,
    linear_attention_quadratic,
    linformer_attention,
    linformer_projections,
    longformer_attention,
    longformer_mask,
    sinkhorn_attention,
    sinkhorn_normalize,
    sinkhorn_sort_matrix,
    star_attention,
    star_attention_mask,
)
from refimpl.attention.superlinear import (
    blockbert_attention,
    blockbert_mask,
    lsh_attention,
    lsh_attention_mask,
    lsh_hash,
    sparse_transformer_attention,
    sparse_transformer_mask,
)

__all__ = [
    "attention_weights", "causal_mask", "dense_attention", "dense_attention_t",
    "blockbert_attention", "blockbert_mask", "sparse_transformer_attention",
    "sparse_transformer_mask", "lsh_attention", "lsh_attention_mask", "lsh_hash",
    "star_attention", "star_attention_mask", "linformer_attention", "linformer_projections",
    "sinkhorn_attention", "sinkhorn_normalize", "sinkhorn_sort_matrix", "efficient_attention",
    "efficient_attention_quadratic", "efficient_attention_survey_form", "elu_feature_map",
    "linear_attention", "linear_attention_quadratic", "longformer_attention", "longformer_mask",
]
