"""Survey §5, parameter sharing. This first part implements the numbered equations of §5.2:

=================================  =============================================================
``recurrent``                      Eq. (59), §5.2: low-rank recurrent layers whose factors are
                                   shared across layers, W_b^l = U_b^{l-1} (Lu, Sindhwani &
                                   Sainath, ICASSP 2016): :class:`SharedLowRankRNN`,
                                   :func:`shared_low_rank_num_params`
``embeddings``                     Eqs. (60)–(61), §5.2: rare-word embeddings as sparse
                                   combinations of frequent-word embeddings (Chen et al., ACL
                                   2016): :func:`sparse_code` (ADMM + polishing),
                                   :func:`rare_word_embedding`, :func:`sparse_code_objective`,
                                   :func:`kkt_residual`, :func:`sparse_code_embeddings`,
                                   :func:`sparse_embedding_bits`
``hashing``                        §5.2 HashedNets (Chen et al., ICML 2015): V_ij = ξ(i,j)
                                   w[h(i,j)] from K shared numbers, xxHash32 bucket and sign
                                   hashes: :func:`hashed_matrix`, :func:`hash_seeds`,
                                   :class:`HashedLinear` (forward/backward without forming V,
                                   kernels in :mod:`refimpl.kernels.hashing`)
``quaternion``                     §5.3 Quaternion layers (Tay et al., ACL 2019): the Hamilton
                                   product :func:`hamilton_product`, the real block form
                                   :func:`quaternion_block_matrix`, :class:`QuaternionLinear`
                                   (¼ of the weights of a real Linear)
``lightrnn``                       §5.2 LightRNN (Li et al., NeurIPS 2016): words to the cells
                                   of the shared row/column table as a minimum-weight matching
                                   (or greedily): :func:`lightrnn_allocate`,
                                   :func:`lightrnn_cost_matrix`; the LM that reads row and
                                   column vectors alternately and predicts the row, then the
                                   column: :class:`LightRNNLanguageModel` (``reallocate_``)
``toeplitz``                       §5.2 Toeplitz-like matrices (Lu, Sindhwani & Sainath 2016;
                                   Sindhwani et al. 2015): displacement rank r, 2nr numbers,
                                   FFT products: :func:`toeplitz_like_matrix`,
                                   :func:`toeplitz_like_matvec`, :func:`toeplitz_generators`,
                                   :func:`displacement`, :func:`f_circulant`,
                                   :class:`ToeplitzLikeLinear` (FFT forward and backward)
``transformers``                   §5.3 ALBERT (Lan et al., ICLR 2020): factorised embedding
                                   :class:`AlbertEmbeddings` (V·E + E·H), cross-layer sharing
                                   :class:`AlbertEncoder` (all / attention / FFN / none),
                                   :func:`albert_num_params`
=================================  =============================================================

``characters``                     §5.1 character-aware models: C2W (Ling et al., EMNLP 2015)
                                   :class:`C2W`; Kim et al.'s char CNN + highway (AAAI 2016)
                                   :class:`CharCNN`, :func:`char_aware_lm`; Jozefowicz et al.'s
                                   (2016) :class:`CNNSoftmax` and :class:`CharLSTMOutput`;
                                   :class:`CharWordEmbedding` (each distinct word composed once
                                   per batch), :func:`char_table`, :func:`c2w_num_params`,
                                   :func:`char_cnn_num_params`

``subvectors``                     §5.2 shared reference vectors (Suzuki & Nagata, IJCAI 2016) and
                                   Slim Embeddings (Li et al., AAAI 2018): rows concatenated from
                                   B blocks of K shared sub-vectors :class:`SubvectorEmbedding`
                                   (random / k-means assignment), :func:`random_assignment`,
                                   :func:`block_kmeans`, skip-gram :class:`SkipGramNS`,
                                   :func:`skipgram_pairs`
``universal``                      §5.3 Universal Transformer (Dehghani et al., ICLR 2019): one
                                   shared layer applied recurrently with the position-and-step
                                   signal :func:`timing_signal` and per-position ACT halting
                                   (Graves 2016) :class:`UniversalTransformerEncoder`,
                                   :class:`ACTOutput`, :class:`UniversalTransformerTagger`
"""

from refimpl.sharing.characters import (
    C2W,
    CharCNN,
    CharLSTMOutput,
    CharWordEmbedding,
    CNNSoftmax,
    c2w_num_params,
    char_aware_lm,
    char_cnn_num_params,
    char_table,
)
from refimpl.sharing.embeddings import (
    kkt_residual,
    rare_word_embedding,
    sparse_code,
    sparse_code_embeddings,
    sparse_code_objective,
    sparse_embedding_bits,
)
from refimpl.sharing.hashing import HashedLinear, hash_seeds, hashed_matrix
from refimpl.sharing.lightrnn import (
    LightRNNLanguageModel,
    lightrnn_allocate,
    lightrnn_cost_matrix,
)
from refimpl.sharing.quaternion import QuaternionLinear, hamilton_product, quaternion_block_matrix
from refimpl.sharing.subvectors import (
    SkipGramNS,
    SubvectorEmbedding,
    block_kmeans,
    random_assignment,
    skipgram_pairs,
)
from refimpl.sharing.universal import (
    ACTOutput,
    UniversalTransformerEncoder,
    UniversalTransformerTagger,
    timing_signal,
)
from refimpl.sharing.transformers import AlbertEmbeddings, AlbertEncoder, albert_num_params
from refimpl.sharing.toeplitz import (
    ToeplitzLikeLinear,
    displacement,
    f_circulant,
    toeplitz_generators,
    toeplitz_like_matrix,
    toeplitz_like_matvec,
)
from refimpl.sharing.recurrent import SharedLowRankRNN, shared_low_rank_num_params

__all__ = [
    "SharedLowRankRNN", "shared_low_rank_num_params", "rare_word_embedding", "sparse_code",
    "sparse_code_objective", "kkt_residual", "sparse_code_embeddings", "sparse_embedding_bits",
    "hashed_matrix", "hash_seeds", "HashedLinear", "hamilton_product", "quaternion_block_matrix",
    "QuaternionLinear", "lightrnn_allocate", "lightrnn_cost_matrix", "toeplitz_like_matrix",
    "toeplitz_like_matvec", "toeplitz_generators", "displacement", "f_circulant",
    "AlbertEmbeddings", "AlbertEncoder", "albert_num_params", "ToeplitzLikeLinear",
    "char_table", "C2W", "CharCNN", "CharWordEmbedding", "CNNSoftmax", "CharLSTMOutput",
    "char_aware_lm", "c2w_num_params", "char_cnn_num_params", "SubvectorEmbedding",
    "random_assignment", "block_kmeans", "SkipGramNS", "skipgram_pairs", "timing_signal",
    "UniversalTransformerEncoder", "ACTOutput", "UniversalTransformerTagger",
    "LightRNNLanguageModel",
]
