"""§3 Quantization: binary, ternary and general k-bit quantisers, their training-time
straight-through variants, quantised recurrent cells and compression-rate accounting.

===============================  =======  =========================================================
module                           §        methods (paper)
===============================  =======  =========================================================
``binary``                       3.1      deterministic / stochastic binarisation, hard sigmoid and
                                          STE, Eqs. (20)–(21) (BinaryConnect, Courbariaux et al.
                                          2015); BS-Fixed
                                          (Lam 2018); BS-Flexible, Eq. (19) (Cheong & Daniel 2019);
                                          BWN, Eqs. (22)–(24) (Rastegari et al. 2016); LAB, loss-aware
                                          binarisation, Eqs. (25)–(26) (Hou et al. 2017)
``ternary``                      3.2      ternary connect, Eqs. (27)–(28) (Lin et al. 2016);
                                          Bernoulli ternary (Wang et al. 2018); Gaussian ternary,
                                          Eq. (29) (Alom et al. 2018); TWN, Eqs. (30)–(34) (Li et al.
                                          2016); loss-aware step size with Lloyd–Max init (Hwang &
                                          Sung 2014); TTQ (Zhu et al. 2017)
``uniform``                      3.3.1–2  uniform k-bit, Eqs. (36)–(39) (Hubara et al. 2017; He et
                                          al. 2016); power-of-two, Eqs. (46)–(48) (Ott et al. 2016)
``recurrent``                    3.2.3,   quantised GRU, Eqs. (40)–(45) (He et al. 2016); quantised
                                 3.3.1    LSTM; HitNet LSTM, Eq. (35) (Wang et al. 2018)
``balanced``                     3.3.2    balanced quantisation (Zhou et al. 2017)
``kmeans``                       3.3.3    static / trained k-means weight sharing (Muller & Indiveri
                                          2015; Han et al. 2016); PQ and RQ (Gong et al. 2014);
                                          rates, Eqs. (49)–(51)
``multibit``                     3.3.4    greedy / refined greedy, Eqs. (52)–(54) (Guo et al. 2017);
                                          alternating, Eqs. (55)–(56) (Xu et al. 2018)
``embeddings_transformers``      3.3.5    quantised word embeddings during vs after training (Lam
                                          2018); k-means Transformer weights (Cheong & Daniel 2019);
                                          Q-BERT, Hessian-based mixed precision (Shen et al. 2020)
``training``                     3.2–3.3  quantisation-aware training on refimpl.nn for the claims:
                                          weight quantisers by name (BinaryConnect, BWN, TWN, LAB,
                                          uniform, alternating multi-bit) as ``weight_transform``
                                          hooks of nn layers (a quantised-LSTM nn.RNNClassifier), a
                                          bag-of-embeddings classifier, a tiny nn Transformer;
                                          trained with refimpl.nn.fit
===============================  =======  =========================================================

Named in the survey but not implemented here: LAQ / LAT, loss-aware quantisation and
ternarisation, the multi-bit extensions of LAB (Hou & Kwok 2018); Q8BERT, 8-bit symmetric
quantisation-aware fine-tuning of BERT (Zafrir et al. 2019) — ``quantize_uniform(W, 8)`` is the
closest (affine, not symmetric).

Kernels: :mod:`refimpl.kernels.bitpack` (bit packing, XNOR-popcount binary GEMM, ternary GEMM,
k-bit packed weight × float matmul); :mod:`refimpl.kernels.lowbit_gemv` (small-batch products
with packed k-bit codebook, binary and ternary weights × float activations).
"""

from refimpl.quantization.training import trained_tiny_transformer
from refimpl.quantization.balanced import balanced_codes, balanced_quantize, recursive_split_edges
from refimpl.quantization.binary import (
    LossAwareBinarizer,
    binarize,
    binarize_stochastic,
    bs_fixed,
    bs_flexible,
    bs_flexible_init,
    bs_flexible_ste,
    bwn,
    bwn_ste,
    hard_sigmoid,
    lab_binarize,
    sign_ste,
)
from refimpl.quantization.embeddings_transformers import (
    assign_mixed_precision,
    embedding_quantizer,
    group_sensitivities,
    group_sensitivities_model,
    group_sizes,
    hessian_vector_product,
    quantize_embedding_after,
    quantize_groups_uniform as quantize_groups_uniform,  # deprecated alias
    quantize_groups_uniform_,
    quantize_model_weights as quantize_model_weights,  # deprecated alias
    quantize_model_weights_,
    top_hessian_eigenvalue,
    transformer_groups,
)
from refimpl.quantization.kmeans import (
    cluster_grad_sums,
    lloyd_kmeans,
    kmeans_quantize,
    kmeans_rate,
    kmeans_stored_bits,
    pq_rate,
    pq_reconstruct,
    pq_stored_bits,
    product_quantize,
    residual_quantize,
    rq_rate,
    rq_reconstruct,
    rq_stored_bits,
    shared_weights,
)
from refimpl.quantization.multibit import (
    multibit_alternating,
    multibit_alternating_rows,
    multibit_error,
    multibit_greedy,
    multibit_reconstruct,
    multibit_refined,
    multibit_ste,
)
from refimpl.quantization.packed_linear import (
    PackedEmbedding,
    PackedLinear,
    quantize_rows,
    scalar_kmeans,
)
from refimpl.quantization.recurrent import (
    HitNetLSTM,
    QuantGRU,
    QuantLSTM,
    act_quant,
    btq,
    hitnet_lstm_cell,
    quant_gru_cell,
    quant_lstm_cell,
)
from refimpl.quantization.ternary import (
    lloyd_max_step,
    loss_aware_step_search,
    ternarize,
    ternary_bernoulli,
    ternary_connect,
    ternary_gaussian,
    ternary_stochastic,
    ttq_normalize,
    ttq_quantize,
    ttq_ste,
    ttq_threshold,
    ttq_threshold_sparsity,
    twn,
    twn_exact,
)
from refimpl.quantization.uniform import (
    affine_params,
    q_signed,
    q_unit,
    quantize_pow2,
    quantize_uniform,
    quantize_uniform_ste,
    uniform_codes,
)

__all__ = [
    "binarize", "binarize_stochastic", "bs_fixed", "bs_flexible", "bs_flexible_init",
    "bs_flexible_ste", "bwn", "bwn_ste", "hard_sigmoid", "lab_binarize", "sign_ste",
    "LossAwareBinarizer",
    "ternarize", "ternary_connect", "ternary_stochastic", "ternary_bernoulli", "ternary_gaussian",
    "twn", "twn_exact", "lloyd_max_step", "loss_aware_step_search", "ttq_normalize",
    "ttq_quantize", "ttq_ste", "ttq_threshold", "ttq_threshold_sparsity",
    "q_signed", "q_unit", "quantize_uniform", "uniform_codes", "affine_params",
    "quantize_uniform_ste", "quantize_pow2",
    "balanced_codes", "balanced_quantize", "recursive_split_edges",
    "lloyd_kmeans", "kmeans_quantize", "shared_weights", "cluster_grad_sums", "product_quantize",
    "pq_reconstruct", "residual_quantize", "rq_reconstruct", "kmeans_rate", "kmeans_stored_bits",
    "pq_rate", "pq_stored_bits", "rq_rate", "rq_stored_bits",
    "multibit_greedy", "multibit_refined", "multibit_alternating", "multibit_reconstruct",
    "multibit_error", "multibit_ste", "multibit_alternating_rows",
    "QuantGRU", "QuantLSTM", "HitNetLSTM", "act_quant", "btq", "quant_gru_cell",
    "quant_lstm_cell", "hitnet_lstm_cell",
    "embedding_quantizer", "quantize_embedding_after", "quantize_model_weights_",
    "hessian_vector_product", "top_hessian_eigenvalue", "group_sensitivities",
    "group_sensitivities_model", "transformer_groups", "assign_mixed_precision",
    "quantize_groups_uniform_", "group_sizes", "trained_tiny_transformer",
    "PackedLinear", "PackedEmbedding", "quantize_rows", "scalar_kmeans",
]
