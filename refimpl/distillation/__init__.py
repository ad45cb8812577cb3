"""Knowledge distillation, Survey §4 (chapter 4).

§4.1, distillation objectives (``architectures``):

- :func:`kd_loss` (+ ``_t``) — Hinton et al. 2015: soft targets at temperature T with T², plus CE.
- :func:`logit_regression_loss` — Ba & Caruana 2014: L2 on logits.
- :func:`noisy_teacher_logits` — Sau & Balasubramanian 2016: additive Gaussian noise.
- :func:`fsp_matrix`, :func:`fsp_loss` (+ ``_t``) — Yim et al. 2017, FSP adapted to sequences.

§4.4, distilling Transformers (``transformers``):

- :func:`value_relation` (+ ``_t``), :func:`attention_kl` (+ ``_t``) — MiniLM, Wang et al. 2020.
- :func:`emd_layer_mapping` — BERT-EMD, Li et al. 2020 (earth mover's distance, an LP).
- :func:`theseus_replace_rate` — BERT-of-Theseus, Xu et al. 2020.
- :func:`pkd_layer_map`, :func:`pkd_loss_t` — Patient KD, Sun et al. 2019 (Skip / Last).

§4.2, collaborative learning (``collaborative``):

- :func:`mutual_learning_losses` — deep mutual learning, Zhang et al. 2018.
- :class:`StalePredictions`, :func:`codistillation_weight` — codistillation with stale peer
  predictions and a burn-in, Anil et al. 2018.

§4.3, multi-teacher distillation (``multi_teacher``):

- :func:`rd_triplet_loss` (+ ``_grad``, ``_t``) — Eq. (57), §4.3; You et al., KDD 2017.
- :func:`majority_vote_order` — the triplet order of Eq. (57) by the teachers' majority vote.
- :func:`collapse_to_specialist`, :func:`active_set` — dustbin classes and the active set
  ``A_k`` of Eq. (58); Hinton et al. 2015, §5.
- :func:`specialist_loss` (+ ``_grad``, ``_t``), :func:`combine_specialists` — Eq. (58), §4.3;
  Hinton et al. 2015, §5.4.
- :func:`multi_teacher_ce`, :func:`average_teacher_probs` — CE to the teachers' average,
  §4.3 (Fig. 4(G)).
- :func:`top_k_teacher_probs` — top-K teacher probabilities, §4.3; Tan et al., ICLR 2019.

§4.1 and §4.3, training with hints, derivatives, quantisation and assistants:

- :func:`fitnets_hint_loss_t`, :func:`fit_fitnets` — FitNets, Romero et al. 2015 (hints through a
  learned regressor, stage-wise).
- :func:`sobolev_loss_t`, :func:`directional_derivative_t` — Sobolev training, Czarnecki et al.
  2017 (outputs and Jacobian projections).
- :func:`quantize_student_` — a quantised student for KD from a full-precision teacher, Polino
  et al. 2018.
- :func:`teacher_assistant_chain` — teacher assistants, Mirzadeh et al. 2020.
- :func:`selective_distillation_flags` — the multilingual threshold τ, Tan et al. 2019.

§4.1, sequence-level KD (``sequence``): :func:`word_kd_loss_t`, :func:`fit_word_kd`,
:func:`sequence_kd_targets`, :func:`seq_inter_targets` — Kim & Rush 2016.

§4.4, training recipes (``bert_recipes``, ``bilstm``):

- :func:`tinybert_layer_map`, :class:`TinyBertProjections`, :func:`tinybert_losses_t`,
  :func:`fit_tinybert` — TinyBERT, Jiao et al. 2020.
- :func:`distilbert_loss_t`, :func:`fit_distilbert`, :func:`init_from_teacher_layers_` —
  DistilBERT, Sanh et al. 2019.
- :func:`pkd_objective_t`, :func:`fit_pkd` — Patient KD training, Sun et al. 2019.
- :class:`TheseusClassifier`, :class:`TheseusScheduler` — BERT-of-Theseus, Xu et al. 2020.
- :func:`bert_emd_losses_t`, :func:`bert_emd_update_weights`, :func:`fit_bert_emd` — BERT-EMD
  training, Li et al. 2020.
- :func:`multitask_distillation_loss_t` — multi-task distillation, Liu et al. 2019.
- :func:`distilled_bilstm_loss_t`, :func:`tang_augment` — distilled BiLSTM, Tang et al. 2019.
- :func:`fit_with_teacher` — the one training loop the recipes share.

- :func:`squeezebert_student_` — SqueezeBERT's grouped layers as a student, Iandola et al. 2020.

- :func:`mobilebert_student_`, :func:`mobilebert_transfer_losses_t`,
  :func:`fit_mobilebert_progressive` — MobileBERT's bottleneck student (its blocks, with stacked
  FFNs and NoNorm, are :class:`refimpl.nn.bottleneck.BottleneckEncoderLayer` and
  :class:`refimpl.nn.NoNorm`), feature-map and attention transfer, progressive layer-wise
  (Sun et al. 2020).

- :class:`XtremeDistilProjection`, :func:`bilstm_token_states`,
  :func:`xtremedistil_representation_loss_t`, :func:`fit_xtremedistil` — XtremeDistil's projection
  of a BiLSTM student's states onto a teacher layer, stage-wise (Mukherjee & Awadallah 2020).

- :func:`mixed_segmentation`, :class:`MixedVocabEmbedding`, :func:`mixed_vocab_teacher`,
  :func:`mixed_vocab_mlm_loss_t`, :func:`fit_mixed_vocab_teacher`, :func:`mixed_vocab_student`,
  :func:`mixed_vocab_distillation_loss_t`, :func:`fit_mixed_vocab_student`, :func:`mlm_accuracy`
  — mixed-vocabulary training, a student with a smaller WordPiece vocabulary (Zhao et al. 2021;
  the vocabularies from :func:`refimpl.pretrained.wordpiece.learn_wordpiece`).

The module map is in ``docs/architecture.md``.
"""

from refimpl.distillation.architectures import (
    directional_derivative_t,
    fit_fitnets,
    fitnets_hint_loss_t,
    quantize_student_,
    sobolev_loss_t,
    fsp_loss,
    fsp_loss_t,
    fsp_matrix,
    fsp_matrix_t,
    kd_loss,
    kd_loss_t,
    logit_regression_loss,
    noisy_teacher_logits,
)

from refimpl.distillation.bert_recipes import (
    TheseusClassifier,
    TheseusScheduler,
    TinyBertProjections,
    bert_emd_losses_t,
    bert_emd_update_weights,
    distilbert_loss_t,
    fit_bert_emd,
    fit_distilbert,
    fit_pkd,
    fit_tinybert,
    fit_with_teacher,
    fit_mobilebert_progressive,
    init_from_teacher_layers_,
    mobilebert_student_,
    mobilebert_transfer_losses_t,
    multitask_distillation_loss_t,
    pkd_objective_t,
    squeezebert_student_,
    tinybert_layer_map,
    tinybert_losses_t,
)
from refimpl.distillation.bilstm import distilled_bilstm_loss_t, tang_augment
from refimpl.distillation.collaborative import (
    StalePredictions,
    codistillation_weight,
    mutual_learning_losses,
)
from refimpl.distillation.multi_teacher import (
    DISTANCES,
    TripletOrder,
    active_set,
    average_teacher_probs,
    collapse_matrix,
    collapse_to_specialist,
    combine_specialists,
    kl_divergence,
    majority_vote_order,
    multi_teacher_ce,
    pairwise_distance,
    pairwise_distance_grad,
    rd_triplet_loss,
    rd_triplet_loss_grad,
    rd_triplet_loss_t,
    selective_distillation_flags,
    specialist_loss,
    specialist_loss_grad,
    specialist_loss_t,
    teacher_assistant_chain,
    top_k_teacher_probs,
)
from refimpl.distillation.sequence import (
    fit_word_kd,
    seq_inter_targets,
    sequence_kd_targets,
    word_kd_loss_t,
)
from refimpl.distillation.xtremedistil import (
    XtremeDistilProjection,
    bilstm_token_states,
    fit_xtremedistil,
    xtremedistil_representation_loss_t,
)
from refimpl.distillation.mixed_vocab import (
    MixedVocabEmbedding,
    fit_mixed_vocab_student,
    fit_mixed_vocab_teacher,
    mixed_segmentation,
    mixed_vocab_distillation_loss_t,
    mixed_vocab_mlm_loss_t,
    mixed_vocab_student,
    mixed_vocab_teacher,
    mlm_accuracy,
)
from refimpl.distillation.transformers import (
    attention_kl,
    attention_kl_t,
    emd_layer_mapping,
    pkd_layer_map,
    pkd_loss_t,
    theseus_replace_rate,
    value_relation,
    value_relation_t,
)

__all__ = [
    "DISTANCES", "TripletOrder", "active_set", "average_teacher_probs", "collapse_matrix",
    "collapse_to_specialist", "combine_specialists", "kl_divergence", "majority_vote_order",
    "multi_teacher_ce", "pairwise_distance", "pairwise_distance_grad", "rd_triplet_loss",
    "rd_triplet_loss_grad", "rd_triplet_loss_t", "specialist_loss", "specialist_loss_grad",
    "specialist_loss_t", "top_k_teacher_probs",
    "kd_loss", "kd_loss_t", "logit_regression_loss", "noisy_teacher_logits", "fsp_matrix",
    "fsp_matrix_t", "fsp_loss", "fsp_loss_t",
    "value_relation", "value_relation_t", "attention_kl", "attention_kl_t", "emd_layer_mapping",
    "theseus_replace_rate", "pkd_layer_map", "pkd_loss_t",
    "mutual_learning_losses", "StalePredictions", "codistillation_weight",
    "fitnets_hint_loss_t", "fit_fitnets", "directional_derivative_t", "sobolev_loss_t",
    "quantize_student_", "teacher_assistant_chain", "selective_distillation_flags",
    "tinybert_layer_map", "TinyBertProjections", "tinybert_losses_t", "fit_tinybert",
    "distilbert_loss_t", "init_from_teacher_layers_", "pkd_objective_t", "fit_with_teacher",
    "fit_distilbert", "fit_pkd", "TheseusClassifier", "TheseusScheduler",
    "word_kd_loss_t", "fit_word_kd", "sequence_kd_targets", "seq_inter_targets",
    "distilled_bilstm_loss_t", "tang_augment", "multitask_distillation_loss_t",
    "bert_emd_update_weights", "bert_emd_losses_t", "fit_bert_emd", "squeezebert_student_",
    "mobilebert_transfer_losses_t", "fit_mobilebert_progressive", "mobilebert_student_",
    "XtremeDistilProjection", "bilstm_token_states", "xtremedistil_representation_loss_t",
    "fit_xtremedistil",
    "mixed_segmentation", "MixedVocabEmbedding", "mixed_vocab_teacher", "mixed_vocab_mlm_loss_t",
    "fit_mixed_vocab_teacher", "mixed_vocab_student", "mixed_vocab_distillation_loss_t",
    "fit_mixed_vocab_student", "mlm_accuracy",
]
