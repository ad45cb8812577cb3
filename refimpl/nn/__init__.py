"""Small NumPy networks: the tape :class:`Tensor`, primitive op pairs, layers, models, losses,
optimisers and gradient checking. Everything else in refimpl is built on this package.

=====================  ====================================================================
``ops``                primitive ``op_forward -> (out, cache)`` / ``op_backward`` pairs
``tensor``             :class:`Tensor`, :class:`Parameter`, the tape, :func:`custom_op`
``functional`` (F)     Tensor-level wrappers of the ops, straight-through estimator
``gates``              hard-concrete L0 gates (Louizos et al. 2018): sample, P(z ≠ 0), expected
                       L0, test-time gate (§2.4.1 head gates, §6.1 FLOP)
``gradcheck``          float64 central-difference gradient checking
``module``             :class:`Module` base, ``state_dict`` via ``np.savez``
``layers``             :class:`Linear`, :class:`Embedding`, :class:`LayerNorm`, :class:`Dropout`
``low_rank``           :class:`LowRankLinear` (``W = A B`` stored as two factors)
``bottleneck``         MobileBERT's block: :class:`NoNorm` (γ ∘ h + β), stacked FFNs,
                       ``BottleneckEncoderLayer`` (narrow inside, wide boundaries)
``recurrent``          :class:`RNN`, :class:`GRU`, :class:`LSTM` (PyTorch gate order/layout) and
                       the single-step cells :func:`rnn_cell`, :func:`gru_cell`, :func:`lstm_cell`
``attention``          :class:`MultiHeadAttention` (attention hook, head gates ξ_h, Eq. (18),
                       :class:`AttentionOutputs`: probabilities, contexts, Q/K/V as Tensors)
``transformer``        :class:`TransformerEncoderLayer` (post-/pre-norm, relu/gelu, head/FFN/layer
                       gates), :class:`TransformerEncoder` (hidden states and attentions of every
                       layer), :class:`BertEmbeddings`, :func:`cls_pool`, :func:`masked_mean_pool`
``heads``              :class:`MaskedLMHead` (BERT's MLM head tied to the embedding matrix),
                       :class:`MaskedLanguageModel` (a small BERT for masked-language modelling)
``losses``             :func:`cross_entropy`, :func:`nll`, :func:`mse`,
                       :func:`kl_div_with_temperature` (Hinton), :func:`distillation_loss`
``optim``              :class:`SGD`, :class:`Adam`, :class:`AdamW`, :func:`clip_grad_norm_`
``models``             :class:`BowClassifier`, :class:`RNNClassifier`, :class:`LSTMLanguageModel`,
                       :class:`TransformerClassifier`, :class:`TransformerLanguageModel`,
                       :class:`Seq2Seq` (greedy, beam search)
``train``              :func:`fit` (:class:`Callback` hooks), :func:`fit_lm`, :func:`fit_seq2seq`,
                       :func:`evaluate_accuracy`,
                       :func:`perplexity`, :func:`batches`, :class:`History`
=====================  ====================================================================
"""

from refimpl.nn import functional, ops
from refimpl.nn.gates import (
    hard_concrete_deterministic,
    hard_concrete_l0,
    hard_concrete_prob_nonzero,
    hard_concrete_sample,
)
from refimpl.nn.gradcheck import GradcheckError, gradcheck, numerical_grad
from refimpl.nn.attention import AttentionOutputs, MultiHeadAttention, scaled_dot_product_attention
from refimpl.nn.layers import Dropout, Embedding, LayerNorm, Linear
from refimpl.nn.heads import MaskedLanguageModel, MaskedLMHead
from refimpl.nn.low_rank import LowRankLinear
from refimpl.nn.losses import cross_entropy, distillation_loss, kl_div_with_temperature, mse, nll
from refimpl.nn.models import (
    BowClassifier,
    LSTMLanguageModel,
    RNNClassifier,
    Seq2Seq,
    TransformerClassifier,
    TransformerLanguageModel,
)
from refimpl.nn.module import Module, ModuleList
from refimpl.nn.optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm_
from refimpl.nn.recurrent import GRU, LSTM, RNN, gru_cell, lstm_cell, rnn_cell
from refimpl.nn.train import (
    Callback,
    History,
    batches,
    evaluate_accuracy,
    fit,
    fit_lm,
    fit_seq2seq,
    perplexity,
    predict_logits,
)
from refimpl.nn.transformer import (
    BertEmbeddings,
    EncoderOutput,
    TransformerEncoder,
    TransformerEncoderLayer,
    cls_pool,
    masked_mean_pool,
)
from refimpl.nn.bottleneck import NoNorm
from refimpl.nn.tensor import (
    Parameter,
    Tensor,
    apply_op,
    as_tensor,
    custom_op,
    data_of,
    is_grad_enabled,
    no_grad,
)

__all__ = [
    "functional", "ops", "hard_concrete_sample", "hard_concrete_prob_nonzero",
    "hard_concrete_l0", "hard_concrete_deterministic", "Tensor", "Parameter", "apply_op", "custom_op", "as_tensor", "data_of",
    "no_grad", "is_grad_enabled", "gradcheck", "numerical_grad", "GradcheckError", "Module",
    "ModuleList",
    "Linear", "Embedding", "LayerNorm", "NoNorm", "Dropout", "LowRankLinear",
    "RNN", "GRU", "LSTM", "rnn_cell", "gru_cell", "lstm_cell",
    "MultiHeadAttention", "AttentionOutputs", "scaled_dot_product_attention",
    "TransformerEncoderLayer", "TransformerEncoder", "EncoderOutput", "BertEmbeddings",
    "cls_pool", "masked_mean_pool", "MaskedLMHead", "MaskedLanguageModel",
    "cross_entropy", "nll", "mse", "kl_div_with_temperature", "distillation_loss",
    "Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm_",
    "BowClassifier", "RNNClassifier", "LSTMLanguageModel", "TransformerClassifier", "Seq2Seq",
    "TransformerLanguageModel",
    "History", "Callback", "fit", "fit_lm", "fit_seq2seq", "batches", "evaluate_accuracy", "predict_logits", "perplexity",
]
