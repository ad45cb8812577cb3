"""Multi-teacher distillation, Survey §4.3: Eqs. (57)–(58) and the simple baselines.

- :func:`rd_triplet_loss` (NumPy), :func:`rd_triplet_loss_grad`, :func:`rd_triplet_loss_t`
  (tape op) — Eq. (57), the relative-dissimilarity (RD) triplet hinge
  ``max(0, d(p, p⁺) − d(p, p⁻) + δ)`` (You et al. 2017).
- :func:`majority_vote_order` — which candidate of each triplet is the positive: the one closer
  to the anchor in the majority of the teachers' intermediate layers.
- :func:`collapse_to_specialist`, :func:`collapse_matrix` — a full distribution onto a
  specialist's classes plus one dustbin class (Hinton et al. 2015, §5).
- :func:`active_set` — ``A_k``, the specialists whose confusable subset meets the generalist's
  top-k classes.
- :func:`specialist_loss`, :func:`specialist_loss_grad`, :func:`specialist_loss_t` — Eq. (58),
  ``KL(p^g‖q) + Σ_{m∈A_k} KL(p^m‖C_m q)``.
- :func:`combine_specialists` — Hinton et al.'s use of Eq. (58): the q that minimises it.
- :func:`average_teacher_probs`, :func:`multi_teacher_ce` — cross-entropy to the teachers'
  mean prediction (Fig. 4(G)).
- :func:`top_k_teacher_probs` — top-K teacher probabilities, renormalised (Tan et al. 2019).
- :func:`teacher_assistant_chain` — multi-step distillation through teacher assistants
  (Mirzadeh et al. 2020), e.g. 10 → 6 → 4 → 2 layers.
- :func:`selective_distillation_flags` — Tan et al.'s threshold τ: a task stops being
  distilled once the student beats its teacher by τ.

Conventions: ``KL(p‖q) = Σ_c p_c (log p_c − log q_c)`` with ``0 log 0 = 0``; the teacher (target)
distribution is always the first argument, as printed in Eq. (58) and as in Hinton et al.'s Eq. (5)
("KL(p^g, q)"). Feature batches are ``(N, d)``; probability batches ``(N, C)``.

References
----------
.. [1] S. You, C. Xu, C. Xu, D. Tao, "Learning from Multiple Teacher Networks", KDD 2017.
.. [2] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network", NIPS Deep
   Learning Workshop 2015, §5 (ensembles of specialists).
.. [3] X. Tan, Y. Ren, D. He, T. Qin, Z. Zhao, T.-Y. Liu, "Multilingual Neural Machine
   Translation with Knowledge Distillation", ICLR 2019.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.tensor import Tensor, as_tensor, custom_op
from refimpl.utils import (check_array, check_choice, check_float, check_int, validate_arrays,
                           validate_scalars)

__all__ = [
    "DISTANCES", "pairwise_distance", "pairwise_distance_grad",
    "rd_triplet_loss", "rd_triplet_loss_grad", "rd_triplet_loss_t",
    "TripletOrder", "majority_vote_order",
    "collapse_to_specialist", "collapse_matrix", "active_set", "kl_divergence",
    "specialist_loss", "specialist_loss_grad", "specialist_loss_t", "combine_specialists",
    "average_teacher_probs", "multi_teacher_ce", "top_k_teacher_probs",
    "teacher_assistant_chain", "selective_distillation_flags",
]

#: The distance functions ``d`` accepted by Eq. (57).
DISTANCES = ("euclidean", "sqeuclidean", "cosine")

_REDUCTIONS = ("mean", "sum", "none")


# =============================================================================================
# Eq. (57): relative dissimilarity
# =============================================================================================
def _check_distance(distance):
    return check_choice(distance, "distance", DISTANCES)


def _feature_pair(x, y, xname, yname):
    x = check_array(x, xname, ndim=2)
    y = check_array(y, yname, ndim=2)
    if x.shape != y.shape:
        raise ValueError(f"{yname} must have the shape of {xname} {x.shape}, got {y.shape}")
    return x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)


def _norms(x, name):
    n = np.linalg.norm(x, axis=1)  # (N,)
    if np.any(n == 0):
        raise ValueError(f"{name} has a zero row: the cosine distance is undefined there")
    return n


@validate_scalars
def pairwise_distance(x, y, distance: str = "euclidean") -> np.ndarray:
    """Row-wise distance ``d(x_i, y_i)`` used by Eq. (57), §4.3.

    Parameters
    ----------
    x, y : ndarray of shape (N, d)
    distance : {"euclidean", "sqeuclidean", "cosine"}
        ``‖x − y‖₂``, ``‖x − y‖₂²`` or ``1 − x·y / (‖x‖ ‖y‖)`` (zero rows are rejected for
        "cosine").

    Returns
    -------
    ndarray of shape (N,)
    """
    _check_distance(distance)
    x, y = _feature_pair(x, y, "x", "y")
    diff = x - y  # (N, d)
    if distance == "euclidean":
        return np.sqrt(np.einsum("nd,nd->n", diff, diff))
    if distance == "sqeuclidean":
        return np.einsum("nd,nd->n", diff, diff)
    nx, ny = _norms(x, "x"), _norms(y, "y")
    return 1.0 - np.einsum("nd,nd->n", x, y) / (nx * ny)


@validate_scalars
def pairwise_distance_grad(x, y, distance: str = "euclidean") -> tuple[np.ndarray, np.ndarray]:
    """Gradients ``(∂d(x_i, y_i)/∂x_i, ∂d(x_i, y_i)/∂y_i)`` of :func:`pairwise_distance`.

    For "euclidean" at ``x_i = y_i`` (where ``‖·‖`` has no derivative) the subgradient 0 is
    returned.

    Returns
    -------
    dx, dy : ndarray of shape (N, d)
    """
    _check_distance(distance)
    x, y = _feature_pair(x, y, "x", "y")
    diff = x - y  # (N, d)
    if distance == "sqeuclidean":
        return 2.0 * diff, -2.0 * diff
    if distance == "euclidean":
        dist = np.sqrt(np.einsum("nd,nd->n", diff, diff))[:, None]  # (N, 1)
        g = np.divide(diff, dist, out=np.zeros_like(diff), where=dist > 0)
        return g, -g
    nx, ny = _norms(x, "x")[:, None], _norms(y, "y")[:, None]  # (N, 1)
    cos = np.einsum("nd,nd->n", x, y)[:, None] / (nx * ny)
    # d = 1 − cos;  ∂cos/∂x = y/(‖x‖‖y‖) − cos·x/‖x‖²
    dx = -(y / (nx * ny) - cos * x / nx**2)
    dy = -(x / (nx * ny) - cos * y / ny**2)
    return dx, dy


def _rd_parts(p, p_pos, p_neg, delta, distance):
    _check_distance(distance)
    delta = check_float(delta, "delta", 0.0)
    p = check_array(p, "p", ndim=2).astype(np.float64, copy=False)
    p_pos = check_array(p_pos, "p_pos", ndim=2).astype(np.float64, copy=False)
    p_neg = check_array(p_neg, "p_neg", ndim=2).astype(np.float64, copy=False)
    for name, a in (("p_pos", p_pos), ("p_neg", p_neg)):
        if a.shape != p.shape:
            raise ValueError(f"{name} must have the shape of p {p.shape}, got {a.shape}")
    if distance == "cosine":
        _norms(p, "p"), _norms(p_pos, "p_pos"), _norms(p_neg, "p_neg")
    # Eq. (57): h_i = d(p_i, p_i⁺) − d(p_i, p_i⁻) + δ
    h = pairwise_distance(p, p_pos, distance) - pairwise_distance(p, p_neg, distance) + delta
    return p, p_pos, p_neg, delta, h


@validate_scalars
def rd_triplet_loss(p, p_pos, p_neg, delta: float, distance: str = "euclidean",
                    reduction: str = "mean"):
    """Relative-dissimilarity (RD) triplet loss, Survey Eq. (57), §4.3 (You et al. 2017).

    .. math:: \\text{Loss}_i = \\max\\bigl(0,\\ d(p_i, p_i^+) - d(p_i, p_i^-) + \\delta\\bigr)

    ``p_i`` is the student's intermediate output for the anchor ``x_i``; ``x_i^+`` is the
    example that the teachers place closer to ``x_i`` than ``x_i^-`` in their intermediate
    layers (see :func:`majority_vote_order`). The loss is zero once the student agrees with
    that order by a margin ``δ``.

    Parameters
    ----------
    p, p_pos, p_neg : ndarray of shape (N, d)
        Student features of the anchors, positives and negatives.
    delta : float >= 0
        The margin δ ("a small constant that prevents the trivial solution" p = p⁺ = p⁻).
    distance : {"euclidean", "sqeuclidean", "cosine"}
        The distance ``d`` (the survey leaves it open; refimpl defaults to the Euclidean
        distance, the usual choice of triplet losses).
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    float, or ndarray of shape (N,) for ``reduction="none"``

    Notes
    -----
    With ``distance="euclidean"`` this is PyTorch's ``triplet_margin_loss(p, p_pos, p_neg,
    margin=delta, p=2, eps=0)`` (cross-checked in ``tests/distillation``).

    References
    ----------
    .. [1] S. You, C. Xu, C. Xu, D. Tao, "Learning from Multiple Teacher Networks", KDD 2017.
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    *_, h = _rd_parts(p, p_pos, p_neg, delta, distance)
    per = np.maximum(h, 0.0)  # (N,)
    if reduction == "none":
        return per
    return float(per.sum() if reduction == "sum" else per.mean())


@validate_scalars
def rd_triplet_loss_grad(p, p_pos, p_neg, delta: float, distance: str = "euclidean",
                         reduction: str = "mean"):
    """Gradient of :func:`rd_triplet_loss` (Eq. (57)) with respect to ``p, p⁺, p⁻``.

    Where the hinge is active (``h_i > 0``):
    ``∂/∂p_i = ∂d(p_i,p_i⁺)/∂p_i − ∂d(p_i,p_i⁻)/∂p_i``, ``∂/∂p_i⁺ = ∂d(p_i,p_i⁺)/∂p_i⁺``,
    ``∂/∂p_i⁻ = −∂d(p_i,p_i⁻)/∂p_i⁻``; zero elsewhere (subgradient 0 at ``h_i = 0``). With
    ``reduction="mean"`` every row is divided by N; ``"none"`` gives the per-triplet
    gradients (of ``Σ_i Loss_i``, i.e. as for "sum").

    Returns
    -------
    dp, dp_pos, dp_neg : ndarray of shape (N, d)
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    p, p_pos, p_neg, delta, h = _rd_parts(p, p_pos, p_neg, delta, distance)
    return _rd_backward(np.ones(len(p)) / (len(p) if reduction == "mean" else 1.0),
                        (p, p_pos, p_neg, distance, h > 0))


def _rd_backward(dper, cache):
    p, p_pos, p_neg, distance, active = cache
    w = (dper * active)[:, None]  # (N, 1)
    dx1, dy1 = pairwise_distance_grad(p, p_pos, distance)
    dx2, dy2 = pairwise_distance_grad(p, p_neg, distance)
    return w * (dx1 - dx2), w * dy1, -w * dy2


def _rd_fwd(p, p_pos, p_neg, delta, distance):
    p, p_pos, p_neg, delta, h = _rd_parts(p, p_pos, p_neg, delta, distance)
    return np.maximum(h, 0.0), (p, p_pos, p_neg, distance, h > 0)


_rd_op = custom_op(_rd_fwd, _rd_backward, name="rd_triplet_loss")


@validate_scalars
@validate_arrays(p={}, p_pos={}, p_neg={})
def rd_triplet_loss_t(p, p_pos, p_neg, delta: float, distance: str = "euclidean",
                      reduction: str = "mean") -> Tensor:
    """Eq. (57) as a tape op (forward :func:`rd_triplet_loss`, backward
    :func:`rd_triplet_loss_grad`), so a student's intermediate layer can be trained with it.

    Parameters
    ----------
    p, p_pos, p_neg : Tensor or ndarray of shape (N, d)
        Gradients flow to every argument that is a Tensor requiring grad (in training all three
        are the student's outputs for the three examples of each triplet).
    delta : float >= 0
    distance : {"euclidean", "sqeuclidean", "cosine"}
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    Tensor, scalar (or of shape (N,) for ``reduction="none"``)
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    per = _rd_op(as_tensor(p), as_tensor(p_pos), as_tensor(p_neg), delta=delta,
                 distance=distance)  # (N,)
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


@dataclass
class TripletOrder:
    """The teachers' verdict on a batch of candidate triplets ``(x_i, a_i, b_i)``.

    Attributes
    ----------
    a_is_positive : bool ndarray of shape (N,)
        True where the majority of teachers put ``a_i`` closer to ``x_i`` than ``b_i``.
    kept : bool ndarray of shape (N,)
        False for undecided triplets (a tie in the vote with ``ties="drop"``).
    votes_a, votes_b : int ndarray of shape (N,)
        Teachers voting "a closer" / "b closer" (a teacher with equal distances abstains).
    """

    a_is_positive: np.ndarray
    kept: np.ndarray
    votes_a: np.ndarray
    votes_b: np.ndarray

    def apply(self, p, p_a, p_b):
        """Order the student's features by the vote: returns ``(p, p⁺, p⁻)`` for the kept
        triplets (in their original order), each of shape (N_kept, d), ready for
        :func:`rd_triplet_loss`. Works on ndarrays and on Tensors (row indexing and the
        selection are recorded on the tape, so gradients reach ``p``, ``p_a`` and ``p_b``).
        If no triplet is kept (every vote tied) the outputs have 0 rows, and
        :func:`rd_triplet_loss` rejects them: skip such a batch."""
        idx = np.flatnonzero(self.kept)
        cond = self.a_is_positive[idx][:, None]  # (N_kept, 1)
        if any(isinstance(t, Tensor) for t in (p, p_a, p_b)):
            p, p_a, p_b = as_tensor(p), as_tensor(p_a), as_tensor(p_b)
            a, b = p_a[idx], p_b[idx]
            cond = np.broadcast_to(cond, a.shape)
            return p[idx], F.where(cond, a, b), F.where(cond, b, a)
        p, p_a, p_b = np.asarray(p), np.asarray(p_a), np.asarray(p_b)
        a, b = p_a[idx], p_b[idx]
        return p[idx], np.where(cond, a, b), np.where(cond, b, a)


@validate_scalars
def majority_vote_order(teacher_feats_anchor: Sequence, teacher_feats_a: Sequence,
                        teacher_feats_b: Sequence, distance: str = "euclidean",
                        ties: str = "drop") -> TripletOrder:
    """Decide each triplet's positive by a majority vote of the teachers, §4.3, Eq. (57).

    Teacher ``t`` votes for candidate ``a_i`` when ``d(q^t(x_i), q^t(a_i)) <
    d(q^t(x_i), q^t(b_i))`` in its chosen intermediate layer, for ``b_i`` when the inequality
    is reversed, and abstains on equality. The candidate with more votes is ``x_i⁺``, the other
    ``x_i⁻`` (survey §4.3: for several teachers "the order between x⁺ and x⁻ given x is decided
    by a majority vote among the teachers"; You et al. 2017 call it a voting strategy). How to
    treat abstentions and tied votes is refimpl's choice, documented here.

    Parameters
    ----------
    teacher_feats_anchor, teacher_feats_a, teacher_feats_b : sequence of M ndarrays
        For teacher ``t``, arrays of shape (N, d_t) (the width may differ between teachers):
        its intermediate features of the anchors ``x_i`` and the two candidates.
    distance : {"euclidean", "sqeuclidean", "cosine"}
    ties : {"drop", "a"}
        A tied vote (an even number of teachers split, or every teacher abstaining) makes the
        triplet uninformative: "drop" marks it ``kept=False`` (the default: no order is
        imposed that the teachers do not support); "a" keeps it with ``a`` as the positive.

    Returns
    -------
    TripletOrder
    """
    _check_distance(distance)
    check_choice(ties, "ties", ("drop", "a"))
    seqs = {"teacher_feats_anchor": teacher_feats_anchor, "teacher_feats_a": teacher_feats_a,
            "teacher_feats_b": teacher_feats_b}
    for name, s in seqs.items():
        if isinstance(s, np.ndarray) or not isinstance(s, (list, tuple)):
            raise TypeError(f"{name} must be a list or tuple of per-teacher (N, d_t) arrays, "
                            f"got {type(s).__name__}")
    M = len(teacher_feats_anchor)
    if M == 0:
        raise ValueError("teacher_feats_anchor must hold at least one teacher, got 0")
    for name, s in seqs.items():
        if len(s) != M:
            raise ValueError(f"{name} must hold {M} teachers (as teacher_feats_anchor), "
                             f"got {len(s)}")
    votes_a = votes_b = None
    for t in range(M):
        q = check_array(teacher_feats_anchor[t], f"teacher_feats_anchor[{t}]", ndim=2)
        qa = check_array(teacher_feats_a[t], f"teacher_feats_a[{t}]", ndim=2)
        qb = check_array(teacher_feats_b[t], f"teacher_feats_b[{t}]", ndim=2)
        for name, a in ((f"teacher_feats_a[{t}]", qa), (f"teacher_feats_b[{t}]", qb)):
            if a.shape != q.shape:
                raise ValueError(f"{name} must have the shape of teacher_feats_anchor[{t}] "
                                 f"{q.shape}, got {a.shape}")
        if votes_a is None:
            N = q.shape[0]
            votes_a, votes_b = np.zeros(N, np.int64), np.zeros(N, np.int64)
        elif q.shape[0] != len(votes_a):
            raise ValueError(f"teacher_feats_anchor[{t}] must have {len(votes_a)} rows (as "
                             f"teacher 0), got {q.shape[0]}")
        da = pairwise_distance(q, qa, distance)  # (N,)
        db = pairwise_distance(q, qb, distance)
        votes_a += da < db
        votes_b += db < da
    tie = votes_a == votes_b
    a_pos = votes_a >= votes_b  # ties -> a (only kept with ties="a")
    kept = ~tie if ties == "drop" else np.ones_like(tie)
    return TripletOrder(a_pos, kept, votes_a, votes_b)


# =============================================================================================
# Eq. (58): specialists with dustbin classes
# =============================================================================================
def _check_subset(subset, C, name):
    s = np.asarray(subset)
    if s.ndim != 1 or s.dtype.kind not in "iu":
        raise TypeError(f"{name} must be a 1-D integer array of class ids, got "
                        f"dtype {s.dtype} shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} must not be empty")
    if s.min() < 0 or s.max() >= C:
        raise ValueError(f"{name} must hold class ids in [0, {C}), got values in "
                         f"[{s.min()}, {s.max()}]")
    if len(np.unique(s)) != s.size:
        raise ValueError(f"{name} must not repeat a class, got {s.tolist()}")
    return s.astype(np.int64)


def _check_probs(p, name, ndim=(1, 2)):
    p = check_array(p, name, ndim=ndim).astype(np.float64, copy=False)
    if np.any(p < 0) or not np.allclose(p.sum(axis=-1), 1.0, atol=1e-6):
        raise ValueError(f"{name} must be non-negative and sum to 1 over its last axis")
    return p


@validate_scalars
def collapse_matrix(subset, n_classes: int) -> np.ndarray:
    """The 0/1 matrix ``C_m`` of shape (n_classes, |S_m| + 1) with ``q @ C_m =
    collapse_to_specialist(q, S_m)``: column ``j < |S_m|`` picks class ``S_m[j]``, the last
    column sums every class outside ``S_m`` (the dustbin)."""
    n_classes = check_int(n_classes, "n_classes", 1)
    s = _check_subset(subset, n_classes, "subset")
    Cm = np.zeros((n_classes, s.size + 1))
    Cm[s, np.arange(s.size)] = 1.0
    rest = np.setdiff1d(np.arange(n_classes), s)
    Cm[rest, -1] = 1.0
    return Cm


@validate_scalars
def collapse_to_specialist(q, subset) -> np.ndarray:
    """Collapse a distribution over all classes onto a specialist's classes plus a dustbin.

    Hinton et al. 2015, §5: a specialist's softmax covers its subset ``S_m`` of confusable
    classes and "a single dustbin class" for all others; to compare a full distribution ``q``
    with it "we sum all of the probabilities that the full q distribution assigns to all the
    classes in m's dustbin". Used by Eq. (58), §4.3.

    Parameters
    ----------
    q : ndarray of shape (..., C)
        Probabilities over all C classes.
    subset : int array of shape (|S_m|,)
        The specialist's classes (distinct ids in [0, C)); their order is the specialist's
        output order.

    Returns
    -------
    ndarray of shape (..., |S_m| + 1)
        ``[q[..., S_m[0]], ..., q[..., S_m[-1]], Σ_{c ∉ S_m} q[..., c]]``.
    """
    q = check_array(q, "q", ndim=(1, 2, 3)).astype(np.float64, copy=False)
    s = _check_subset(subset, q.shape[-1], "subset")
    rest = np.ones(q.shape[-1], bool)
    rest[s] = False
    return np.concatenate([q[..., s], q[..., rest].sum(axis=-1, keepdims=True)], axis=-1)


@validate_scalars
@validate_arrays(subsets={"kind": "sequence"})
def active_set(p_generalist, subsets: Sequence, k: int) -> np.ndarray:
    """The active specialists ``A_k`` of Eq. (58), §4.3 (Hinton et al. 2015, §5.4).

    For each example, take the generalist's ``k`` most probable classes; specialist ``m`` is
    active when its confusable subset ``S_m`` has a non-empty intersection with them. Ties in
    the generalist's probabilities are broken towards the lower class id (a stable sort).

    Parameters
    ----------
    p_generalist : ndarray of shape (N, C)
    subsets : sequence of M int arrays
    k : int in [1, C]

    Returns
    -------
    bool ndarray of shape (N, M)
    """
    pg = _check_probs(p_generalist, "p_generalist", ndim=2)
    N, C = pg.shape
    k = check_int(k, "k", 1, C)
    subs = [_check_subset(s, C, f"subsets[{m}]") for m, s in enumerate(subsets)]
    top = np.argsort(-pg, axis=1, kind="stable")[:, :k]  # (N, k)
    in_top = np.zeros((N, C), bool)
    np.put_along_axis(in_top, top, True, axis=1)
    return np.stack([in_top[:, s].any(axis=1) for s in subs], axis=1) if subs \
        else np.zeros((N, 0), bool)


@validate_scalars
def kl_divergence(p, q) -> np.ndarray:
    """``KL(p‖q) = Σ_c p_c (log p_c − log q_c)`` over the last axis, with ``0 log 0 = 0``
    (``+inf`` where ``q_c = 0 < p_c``).

    Parameters
    ----------
    p, q : ndarray of shape (..., C)

    Returns
    -------
    ndarray of shape (...)
    """
    p = check_array(p, "p").astype(np.float64, copy=False)
    q = check_array(q, "q").astype(np.float64, copy=False)
    if p.shape != q.shape:
        raise ValueError(f"q must have the shape of p {p.shape}, got {q.shape}")
    pos = p > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pos, p * (np.log(np.where(pos, p, 1.0)) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def _log_softmax(z):
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def _specialist_inputs(q, p_generalist, specialist_probs, subsets, k, from_logits):
    if from_logits:
        z = check_array(q, "q", ndim=2).astype(np.float64, copy=False)
        logq = _log_softmax(z)
    else:
        qp = _check_probs(q, "q", ndim=2)
        with np.errstate(divide="ignore"):
            logq = np.log(qp)
    N, C = logq.shape
    pg = _check_probs(p_generalist, "p_generalist", ndim=2)
    if pg.shape != (N, C):
        raise ValueError(f"p_generalist must have the shape of q {(N, C)}, got {pg.shape}")
    if isinstance(specialist_probs, np.ndarray) or not isinstance(specialist_probs, (list, tuple)):
        raise TypeError("specialist_probs must be a list of per-specialist (N, |S_m|+1) arrays, "
                        f"got {type(specialist_probs).__name__}")
    if len(specialist_probs) != len(subsets):
        raise ValueError(f"specialist_probs must hold one array per subset ({len(subsets)}), "
                         f"got {len(specialist_probs)}")
    subs = [_check_subset(s, C, f"subsets[{m}]") for m, s in enumerate(subsets)]
    pms = []
    for m, (pm, s) in enumerate(zip(specialist_probs, subs)):
        pm = _check_probs(pm, f"specialist_probs[{m}]", ndim=2)
        if pm.shape != (N, s.size + 1):
            raise ValueError(f"specialist_probs[{m}] must have shape {(N, s.size + 1)} "
                             f"(N, |S_m| + 1 dustbin), got {pm.shape}")
        pms.append(pm)
    active = active_set(pg, subs, k)  # (N, M)
    return logq, pg, pms, subs, active


def _xlogx(p):
    pos = p > 0
    return np.where(pos, p * np.log(np.where(pos, p, 1.0)), 0.0)


def _specialist_forward(logq, pg, pms, subs, active):
    q = np.exp(logq)  # (N, C)
    # KL(p^g ‖ q)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = (_xlogx(pg) - np.where(pg > 0, pg * logq, 0.0)).sum(axis=1)  # (N,)
    Qs = []
    for m, (pm, s) in enumerate(zip(pms, subs)):
        Qm = collapse_to_specialist(q, s)  # (N, |S_m|+1): q on S_m, then the dustbin mass
        with np.errstate(divide="ignore", invalid="ignore"):
            klm = (_xlogx(pm) - np.where(pm > 0, pm * np.log(Qm), 0.0)).sum(axis=1)  # (N,)
        per = per + np.where(active[:, m], klm, 0.0)  # Σ_{m ∈ A_k}
        Qs.append(Qm)
    return per, q, Qs


def _specialist_dz(q, pg, pms, subs, active, Qs):
    """∂(per-row loss)/∂z for q = softmax(z): (q − p^g) + Σ_{m∈A_k} q_c (1 − p^m_{j(c)}/Q^m_{j(c)})
    where j(c) is the specialist output (own class or dustbin) that class c falls into."""
    dz = q - pg  # (N, C)
    for m, (pm, s) in enumerate(zip(pms, subs)):
        ratio = np.divide(pm, Qs[m], out=np.zeros_like(pm), where=pm > 0)  # (N, |S_m|+1)
        spread = ratio @ collapse_matrix(s, q.shape[1]).T  # (N, C): p^m_{j(c)} / Q^m_{j(c)}
        dz = dz + active[:, m:m + 1] * q * (1.0 - spread)
    return dz


@validate_scalars
@validate_arrays(subsets={"kind": "sequence"})
def specialist_loss(q, p_generalist, specialist_probs: Sequence, subsets: Sequence, k: int,
                    from_logits: bool = True, reduction: str = "mean"):
    """The generalist + specialists objective, Survey Eq. (58), §4.3 (Hinton et al. 2015, §5.4).

    .. math::

        \\text{Loss} = KL(p^g\\,\\|\\,q) + \\sum_{m\\in A_k} KL(p^m\\,\\|\\,C_m q),\\qquad
        (C_m q)_j = \\begin{cases} q_{S_m[j]} & j < |S_m| \\\\
                                  \\sum_{c\\notin S_m} q_c & j = |S_m| \\text{ (dustbin)}
                    \\end{cases}

    ``p^m`` is a distribution over specialist m's classes plus one dustbin class, so it is
    compared with ``q`` collapsed the same way (the survey prints ``KL(p^m, q)``; see
    ``chapters/ERRATA.md``). ``A_k`` is :func:`active_set`.

    Parameters
    ----------
    q : ndarray of shape (N, C)
        Logits ``z`` of ``q = softmax(z)`` (``from_logits=True``) or probabilities.
    p_generalist : ndarray of shape (N, C)
        The generalist's distribution ``p^g``.
    specialist_probs : list of M ndarrays, shape (N, |S_m| + 1)
        Specialist m's distribution ``p^m``; last column = dustbin.
    subsets : list of M int arrays
        ``S_m``, in the order of the specialists' outputs.
    k : int
        Number of the generalist's most probable classes that decide ``A_k``.
    from_logits : bool
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    float, or ndarray of shape (N,) for ``reduction="none"``

    References
    ----------
    .. [1] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network", 2015,
       §5.4, Eq. (5).
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    per, _, _ = _specialist_forward(*_specialist_inputs(q, p_generalist, specialist_probs,
                                                        subsets, k, from_logits))
    if reduction == "none":
        return per
    return float(per.sum() if reduction == "sum" else per.mean())


@validate_scalars
@validate_arrays(z={"ndim": 2}, subsets={"kind": "sequence"})
def specialist_loss_grad(z, p_generalist, specialist_probs: Sequence, subsets: Sequence, k: int,
                         reduction: str = "mean") -> np.ndarray:
    """Gradient of :func:`specialist_loss` (Eq. (58)) with respect to the logits ``z``.

    .. math::

        \\frac{\\partial\\,\\text{Loss}}{\\partial z_c} = (q_c - p^g_c)
        + \\sum_{m\\in A_k} q_c\\Bigl(1 - \\frac{p^m_{j_m(c)}}{(C_m q)_{j_m(c)}}\\Bigr)

    where ``j_m(c)`` is class c's own output in specialist m, or the dustbin. (For each term
    ``−Σ_j p_j log Q_j`` with block sums ``Q_j`` of ``q = softmax(z)``:
    ``∂Q_j/∂z_c = q_c(1[c ∈ B_j] − Q_j)`` and ``Σ_j p_j = 1``.)

    Parameters
    ----------
    z : ndarray of shape (N, C)
    reduction : {"mean", "sum", "none"}
        "mean" divides by N; "sum"/"none" give the gradient of the summed loss.

    Returns
    -------
    ndarray of shape (N, C)
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    logq, pg, pms, subs, active = _specialist_inputs(z, p_generalist, specialist_probs, subsets,
                                                     k, True)
    _, q, Qs = _specialist_forward(logq, pg, pms, subs, active)
    dz = _specialist_dz(q, pg, pms, subs, active, Qs)
    return dz / len(z) if reduction == "mean" else dz


def _spec_fwd(z, p_generalist, specialist_probs, subsets, k):
    logq, pg, pms, subs, active = _specialist_inputs(z, p_generalist, specialist_probs, subsets,
                                                     k, True)
    per, q, Qs = _specialist_forward(logq, pg, pms, subs, active)
    return per, (q, pg, pms, subs, active, Qs)


def _spec_bwd(dper, cache):
    return (dper[:, None] * _specialist_dz(*cache),)


_spec_op = custom_op(_spec_fwd, _spec_bwd, name="specialist_loss")


@validate_scalars
@validate_arrays(z={}, subsets={"kind": "sequence"})
def specialist_loss_t(z, p_generalist, specialist_probs: Sequence, subsets: Sequence, k: int,
                      reduction: str = "mean") -> Tensor:
    """Eq. (58) as a tape op on the student's logits ``z`` (Tensor of shape (N, C)); the
    teachers' distributions are constants. Forward :func:`specialist_loss`, backward
    :func:`specialist_loss_grad`."""
    check_choice(reduction, "reduction", _REDUCTIONS)
    per = _spec_op(as_tensor(z), p_generalist=p_generalist, specialist_probs=specialist_probs,
                   subsets=subsets, k=k)  # (N,)
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


@validate_scalars
@validate_arrays(subsets={"kind": "sequence"})
def combine_specialists(p_generalist, specialist_probs: Sequence, subsets: Sequence, k: int,
                        method: str = "em", steps: int = 500, lr: float = 1.0,
                        tol: float = 1e-12, z0=None):
    """Hinton et al.'s use of Eq. (58): the full distribution q that minimises it.

    Hinton et al. (2015, §5.4) combine a generalist with its active specialists *at inference*:
    Eq. (5) "does not have a general closed form solution", so they write ``q = softmax(z)``
    and run gradient descent on ``z`` for each test case (``method="gd"``). The objective is
    convex in q (a sum of ``−log`` of linear functions of q, strictly convex through the
    generalist's term where ``p^g > 0``), so any method that converges finds the same q.
    ``method="em"`` (default, much faster) iterates the fixed point of the stationarity
    condition, which is EM for a distribution observed through coarsened (dustbin) outcomes:

    .. math:: q_c \\leftarrow \\frac{1}{1 + |A_k|}\\Bigl(p^g_c + \\sum_{m\\in A_k}
              q_c\\,\\frac{p^m_{j_m(c)}}{(C_m q)_{j_m(c)}}\\Bigr)

    (equivalently ``q ← q − ∂Loss/∂z / (1 + |A_k|)``, see :func:`specialist_loss_grad`). When
    every teacher covers all classes (no dustbin mass) the minimiser is the arithmetic mean of
    the teachers' distributions, as Hinton et al. note; the checks use that.

    Parameters
    ----------
    p_generalist, specialist_probs, subsets, k
        As in :func:`specialist_loss`.
    method : {"em", "gd"}
    steps : int
        Maximum number of iterations.
    lr : float > 0
        Step size of "gd".
    tol : float
        Stop when the largest change of q ("em") or gradient entry ("gd") is below ``tol``.
    z0 : ndarray of shape (N, C), optional
        Initial logits (default ``log p^g``).

    Returns
    -------
    q : ndarray of shape (N, C)
    loss : ndarray of shape (N,)
        Eq. (58) at the returned q.
    """
    check_choice(method, "method", ("em", "gd"))
    steps = check_int(steps, "steps", 0)
    lr = check_float(lr, "lr", 0.0, lo_open=True)
    tol = check_float(tol, "tol", 0.0)
    pg = _check_probs(p_generalist, "p_generalist", ndim=2)
    if z0 is None:
        with np.errstate(divide="ignore"):
            z = np.maximum(np.log(pg), -30.0)
    else:
        z = check_array(z0, "z0", shape=pg.shape).astype(np.float64)  # a copy
    logq, pg, pms, subs, active = _specialist_inputs(z, pg, specialist_probs, subsets, k, True)
    n_teach = 1.0 + active.sum(axis=1, keepdims=True)  # (N, 1): generalist + |A_k|
    q = np.exp(logq)
    for _ in range(steps):
        _, q, Qs = _specialist_forward(np.log(np.maximum(q, 1e-300)), pg, pms, subs, active)
        g = _specialist_dz(q, pg, pms, subs, active, Qs)  # (N, C) = ∂Loss/∂z
        if method == "em":
            q_new = np.maximum(q - g / n_teach, 0.0)
            q_new /= q_new.sum(axis=1, keepdims=True)
            done = np.abs(q_new - q).max() < tol
            q = q_new
        else:
            done = np.abs(g).max() < tol
            z = np.log(np.maximum(q, 1e-300)) - lr * g
            q = np.exp(_log_softmax(z))
        if done:
            break
    with np.errstate(divide="ignore"):
        per, _, _ = _specialist_forward(np.log(q), pg, pms, subs, active)
    return q, per


# =============================================================================================
# Simple multi-teacher baselines, §4.3
# =============================================================================================
def _teacher_stack(teacher_probs):
    tp = check_array(teacher_probs, "teacher_probs", ndim=3).astype(np.float64, copy=False)
    if np.any(tp < 0) or not np.allclose(tp.sum(axis=-1), 1.0, atol=1e-6):
        raise ValueError("teacher_probs must be non-negative and sum to 1 over the last axis")
    return tp


@validate_scalars
def average_teacher_probs(teacher_probs) -> np.ndarray:
    """The teachers' mean prediction ``p̄ = (1/M) Σ_t p^t``, §4.3 (Fig. 4(G)).

    Parameters
    ----------
    teacher_probs : ndarray of shape (M, N, C)

    Returns
    -------
    ndarray of shape (N, C)
    """
    return _teacher_stack(teacher_probs).mean(axis=0)


@validate_scalars
@validate_arrays(student_logits={})
def multi_teacher_ce(student_logits, teacher_probs, T: float = 1.0) -> Tensor:
    """Cross-entropy between the student and the teachers' average prediction, §4.3.

    .. math::

        \\mathcal L = -\\frac{T^2}{N}\\sum_{i}\\sum_c \\bar p_{ic}\\,
        \\log\\operatorname{softmax}(z_i/T)_c,\\qquad \\bar p = \\frac1M\\sum_t p^t

    "A simple way to use multiple teachers is to train with the cross-entropy between the
    student's prediction and the average prediction of the teachers" (survey §4.3; You et al.
    2017 average the teachers' softened outputs). It differs from ``T² KL(p̄ ‖ softmax(z/T))``
    by the constant ``T² H(p̄)``, so the gradients are equal. The ``T²`` factor keeps the
    gradient scale independent of T (Hinton et al. 2015); with ``T = 1`` it is plain soft-target
    cross-entropy.

    Parameters
    ----------
    student_logits : Tensor or ndarray of shape (N, C)
    teacher_probs : ndarray of shape (M, N, C)
        Each teacher's (already softened) probabilities.
    T : float > 0
        Temperature applied to the student.

    Returns
    -------
    Tensor, scalar
    """
    T = check_float(T, "T", 0.0, lo_open=True)
    z = as_tensor(student_logits)
    check_array(z.data, "student_logits", ndim=2)
    pbar = average_teacher_probs(teacher_probs)  # (N, C)
    if pbar.shape != z.shape:
        raise ValueError(f"teacher_probs must have shape (M, {z.shape[0]}, {z.shape[1]}), got "
                         f"{np.shape(teacher_probs)}")
    logq = F.log_softmax(z * (1.0 / T), axis=-1)  # (N, C)
    return -(logq * pbar).sum() * (T * T / z.shape[0])


@validate_scalars
def top_k_teacher_probs(probs, K: int, return_sparse: bool = False):
    """Keep each row's K largest teacher probabilities and renormalise them to sum to 1, §4.3.

    Tan et al. (2019) store only the top-K entries of each teacher distribution offline (memory
    K instead of |V| per token) and renormalise them for distillation. Ties at the K-th value
    are broken towards the lower class id (stable sort).

    Parameters
    ----------
    probs : ndarray of shape (..., C)
    K : int in [1, C]
    return_sparse : bool
        Also return the stored form: the indices (..., K) int64 and values (..., K), largest
        first.

    Returns
    -------
    ndarray of shape (..., C)
        Zero outside each row's top K; the kept entries are ``p_c / Σ_{top K} p``.
    (idx, vals) : tuple of ndarrays of shape (..., K), only with ``return_sparse``.
    """
    p = check_array(probs, "probs", ndim=(1, 2, 3)).astype(np.float64, copy=False)
    if np.any(p < 0):
        raise ValueError("probs must be non-negative")
    K = check_int(K, "K", 1, p.shape[-1])
    idx = np.argsort(-p, axis=-1, kind="stable")[..., :K]  # (..., K)
    vals = np.take_along_axis(p, idx, axis=-1)
    mass = vals.sum(axis=-1, keepdims=True)
    if np.any(mass <= 0):
        raise ValueError("probs has a row whose top-K mass is 0: cannot renormalise")
    vals = vals / mass
    out = np.zeros_like(p)
    np.put_along_axis(out, idx, vals, axis=-1)
    return (out, (idx.astype(np.int64), vals)) if return_sparse else out


# =============================================================================================
# Teacher assistants (Mirzadeh et al.) and the multilingual threshold τ (Tan et al.)
def teacher_assistant_chain(teacher, make_model, sizes, train_arrays, *, T: float = 4.0,
                            alpha: float = 0.5, epochs: int = 2, lr: float = 1e-2,
                            batch_size: int = 64, rng=None, progress=None) -> list:
    """Multi-step distillation through teacher assistants (Survey §4.3; Mirzadeh et al. 2020,
    "TAKD"): the teacher is distilled into an assistant of size ``sizes[0]``, that assistant
    into one of size ``sizes[1]``, …, the last being the student (e.g. a 10-layer teacher and
    ``sizes = [6, 4, 2]``: 10 → 6 → 4 → 2). Every step trains with Hinton's loss
    (:func:`refimpl.distillation.kd_loss_t`, temperature ``T``, soft weight ``alpha``) on the
    previous model's logits, through :func:`refimpl.nn.fit`.

    Parameters
    ----------
    teacher : Module
        ``teacher(*inputs) -> logits (B, C)``; not modified.
    make_model : callable
        ``make_model(size, seed) -> Module``, an untrained model of the given size.
    sizes : sequence of int
        Sizes of the assistants, then the student (at least one entry).
    train_arrays : tuple ``(*inputs, y)``
    T, alpha, epochs, lr, batch_size : as :func:`refimpl.nn.fit` and ``kd_loss_t``
    rng : Generator or int, optional

    Returns
    -------
    list of Module
        The trained models, one per entry of ``sizes`` (the student last).

    References
    ----------
    .. [1] S. I. Mirzadeh, M. Farajtabar, A. Li, N. Levine, A. Matsukawa, H. Ghasemzadeh,
       "Improved Knowledge Distillation via Teacher Assistant", AAAI 2020.
    """
    from refimpl.distillation.architectures import check_train_arrays, kd_loss_t
    from refimpl.nn import fit, no_grad
    from refimpl.utils import as_rng

    if not hasattr(teacher, "named_parameters"):
        raise TypeError(f"teacher must be a refimpl.nn Module, got {type(teacher).__name__}")
    if not callable(make_model):
        raise TypeError(f"make_model must be callable, got {type(make_model).__name__}")
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or not sizes:
        raise ValueError(f"sizes must be a non-empty sequence of sizes, got {sizes!r}")
    sizes = [check_int(s, f"sizes[{i}]", 1) for i, s in enumerate(sizes)]
    train_arrays = check_train_arrays(train_arrays)
    T = check_float(T, "T", 0.0, lo_open=True)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    epochs = check_int(epochs, "epochs", 0)
    lr = check_float(lr, "lr", 0.0, lo_open=True)
    batch_size = check_int(batch_size, "batch_size", 1)
    rng = as_rng(rng)
    prev, chain = teacher, []
    soft = {}
    for size in sizes:
        model = make_model(size, int(rng.integers(2**31)))
        prev.eval()

        def forward(m, *inputs, _prev=prev):
            with no_grad():
                soft["z"] = _prev(*inputs).data  # the previous model's logits are the targets
            return m(*inputs)

        fit(model, train_arrays, epochs=epochs, lr=lr, batch_size=batch_size, rng=rng,
            progress=progress, forward=forward,
            loss_fn=lambda out, y: kd_loss_t(out, soft["z"], T, y, alpha))
        chain.append(model)
        prev = model
    return chain


@validate_arrays(student_scores={"ndim": 1}, teacher_scores={"ndim": 1})
@validate_scalars
def selective_distillation_flags(student_scores, teacher_scores, tau: float = 1.0) -> np.ndarray:
    """Tan et al.'s selective distillation of a multilingual (multi-task) student (Survey §4.3):
    keep distilling task ``l`` while the student's validation score is below its teacher's plus
    ``τ``; once ``score_S(l) ≥ score_T(l) + τ`` the task is trained on the ground truth alone
    (Algorithm 1 of Tan et al. 2019, checked every ``T_check`` steps, so a task whose student
    falls back below the line is distilled again).

    Parameters
    ----------
    student_scores, teacher_scores : ndarray of shape (L,)
        Per-task validation accuracy or BLEU of the multilingual student and of task ``l``'s
        own teacher.
    tau : float
        The threshold (in the scores' units; may be negative: stop before reaching the
        teacher).

    Returns
    -------
    bool ndarray of shape (L,)
        True where task ``l`` is still distilled.

    References
    ----------
    .. [1] X. Tan, Y. Ren, D. He, T. Qin, Z. Zhao, T.-Y. Liu, "Multilingual Neural Machine
       Translation with Knowledge Distillation", ICLR 2019, Algorithm 1.
    """
    s = np.asarray(student_scores, float)
    t = np.asarray(teacher_scores, float)
    if s.shape != t.shape:
        raise ValueError(f"teacher_scores must have the shape of student_scores {s.shape}, "
                         f"got {t.shape}")
    return s < t + tau
