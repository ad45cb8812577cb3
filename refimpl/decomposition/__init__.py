"""§6 Tensor decomposition: low-rank factors, block-diagonal factors, tensor-train, CP, Tucker
and block-term formats, each with exact parameter counts.

==========================  =====  ==============================================================
module                      §      methods (paper)
==========================  =====  ==============================================================
``low_rank``                6.1    truncated SVD (Eckart–Young); joint SVD of recurrent and
                                   inter-layer matrices, Eqs. (62)–(65) (Prabhavalkar et al.
                                   2016) and projection layers (Sak et al. 2014); sparse coding
                                   of embeddings, Eq. (66) (Faruqui et al. 2015); compositional
                                   codes (Shu & Nakayama 2017); FLOP, Eq. (67) (Wang et al. 2019)
``block_diagonal``          6.2    differentiated softmax (Chen et al. 2015); WEST (Variani et
                                   al. 2019)
``tensor_train``            6.3    TT-SVD (Oseledets 2011); TT-matrix / TT-layer (Novikov et al.
                                   2015); TT-embedding (Khrulkov et al. 2019); TT-GRU/LSTM (Yang
                                   et al. 2017, Tjandra et al. 2017)
``cp_tucker``               6      CP by ALS (Carroll & Chang 1970); Tucker by HOSVD / HOOI
                                   (Tucker 1966; De Lathauwer et al. 2000)
``block_term``              6.3    block-term decomposition (De Lathauwer 2008); BT-layer and
                                   BT-RNN (Ye et al. 2018); multi-linear attention (Ma et al. 2019)
==========================  =====  ==============================================================

Kernels: :mod:`refimpl.kernels.tt` (TT-matrix × matrix, TT-embedding row lookup).
"""

from refimpl.decomposition.block_diagonal import (
    DifferentiatedSoftmax,
    block_diag,
    dsoftmax_dense_weight,
    dsoftmax_num_params,
    frequency_partition,
    west_factorize,
    west_num_params,
)
from refimpl.decomposition.block_term import (
    BTLinear,
    BTRNN,
    MultiLinearAttention,
    bt_matrix,
    bt_matrix_num_params,
    bt_matrix_to_full,
    btd_als,
    btd_num_params,
    btd_to_full,
    single_block_attention,
)
from refimpl.decomposition.cp_tucker import (
    cp_als,
    cp_num_params,
    cp_to_full,
    hooi,
    hosvd,
    tucker_num_params,
    tucker_to_full,
)
from refimpl.decomposition.low_rank import (
    FLOPLinear,
    LowRankLinear,
    ProjectedRNNClassifier,
    binarize_codes,
    compositional_code_bits,
    compositional_codes,
    CompositionalCodeAutoencoder,
    compositional_codes_gumbel,
    compositional_decode,
    eckart_young_error,
    flop_weight,
    joint_projection_lstsq,
    joint_svd,
    low_rank_num_params,
    rank_for_explained_variance,
    rnn_layer_matrices,
    sparse_code,
    sparse_coding,
    sparse_coding_objective,
    stacked_rnn_classifier,
    truncated_svd,
)
from refimpl.decomposition.tensor_train import (
    TTRNN,
    FactorizedRNN,
    TTEmbedding,
    TTLinear,
    compression_ratio,
    factorize_dim,
    random_tt,
    tt_embedding_rows,
    tt_matrix,
    tt_matrix_num_params,
    tt_matrix_ranks,
    tt_matrix_to_full,
    tt_matvec,
    tt_num_params,
    tt_ranks,
    tt_svd,
    tt_to_full,
)

__all__ = [
    "DifferentiatedSoftmax", "block_diag", "dsoftmax_dense_weight", "dsoftmax_num_params",
    "frequency_partition", "west_factorize", "west_num_params",
    "BTLinear", "BTRNN", "MultiLinearAttention", "bt_matrix", "bt_matrix_num_params",
    "bt_matrix_to_full", "btd_als", "btd_num_params", "btd_to_full", "single_block_attention",
    "cp_als", "cp_num_params", "cp_to_full", "hooi", "hosvd", "tucker_num_params",
    "tucker_to_full",
    "FLOPLinear", "LowRankLinear", "ProjectedRNNClassifier", "stacked_rnn_classifier",
    "rnn_layer_matrices",
    "binarize_codes", "compositional_code_bits", "compositional_codes", "compositional_codes_gumbel",
    "CompositionalCodeAutoencoder",
    "compositional_decode",
    "eckart_young_error", "flop_weight", "joint_projection_lstsq", "joint_svd",
    "low_rank_num_params", "rank_for_explained_variance", "sparse_code", "sparse_coding",
    "sparse_coding_objective", "truncated_svd",
    "TTRNN", "FactorizedRNN", "TTEmbedding", "TTLinear", "compression_ratio", "factorize_dim",
    "random_tt", "tt_embedding_rows", "tt_matrix", "tt_matrix_num_params", "tt_matrix_ranks",
    "tt_matrix_to_full",
    "tt_matvec", "tt_num_params", "tt_ranks", "tt_svd", "tt_to_full",
]
