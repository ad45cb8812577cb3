"""Knowledge distillation, Survey §4 (chapter 4). First part: §4.3 multi-teacher distillation.

- :func:`rd_triplet_loss` (+ ``_grad``, ``_t``) — Eq. (57), §4.3; You et al., KDD 2017.
- :func:`majority_vote_order` — the triplet order of Eq. (57) by the teachers' majority vote.
- :func:`collapse_to_specialist`, :func:`active_set` — dustbin classes and the active set
  ``A_k`` of Eq. (58); Hinton et al. 2015, §5.
- :func:`specialist_loss` (+ ``_grad``, ``_t``), :func:`combine_specialists` — Eq. (58), §4.3;
  Hinton et al. 2015, §5.4.
- :func:`multi_teacher_ce`, :func:`average_teacher_probs` — CE to the teachers' average,
  §4.3 (Fig. 4(G)).
- :func:`top_k_teacher_probs` — top-K teacher probabilities, §4.3; Tan et al., ICLR 2019.

Not implemented yet: §4.1 (architectures: logit regression, Hinton soft/hard loss, FitNets,
sequence-level KD, ...), §4.2 (mutual learning, co-distillation), teacher assistants and the
multilingual threshold τ of §4.3, and §4.4 (distilling Transformers). The module map is in
``ARCHITECTURE.md`` (``architectures.py``, ``collaborative.py``, ``transformers.py``).
"""

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
    specialist_loss,
    specialist_loss_grad,
    specialist_loss_t,
    top_k_teacher_probs,
)

__all__ = [
    "DISTANCES", "TripletOrder", "active_set", "average_teacher_probs", "collapse_matrix",
    "collapse_to_specialist", "combine_specialists", "kl_divergence", "majority_vote_order",
    "multi_teacher_ce", "pairwise_distance", "pairwise_distance_grad", "rd_triplet_loss",
    "rd_triplet_loss_grad", "rd_triplet_loss_t", "specialist_loss", "specialist_loss_grad",
    "specialist_loss_t", "top_k_teacher_probs",
]
