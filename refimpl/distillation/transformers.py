"""Survey §4.4 — distilling Transformers: the layer-level objectives and schedules.

=================================  =============================================================
:func:`value_relation` / ``_t``    MiniLM (Wang et al. 2020): ``softmax(V Vᵀ / √d_k)`` per head
:func:`attention_kl` / ``_t``      MiniLM's KL between teacher and student self-attention
                                   distributions, averaged over (batch, heads, query rows)
:func:`emd_layer_mapping`          BERT-EMD (Li et al. 2020): many-to-many layer mapping as the
                                   earth mover's distance between layer weights (a linear
                                   program)
:func:`theseus_replace_rate`       BERT-of-Theseus (Xu et al. 2020): the linear replacement
                                   schedule ``min(1, k·t + b)``
:func:`pkd_layer_map`              Patient KD (Sun et al. 2019): PKD-Skip / PKD-Last teacher layers
:func:`pkd_loss_t`                 PKD's normalised [CLS] hidden-state MSE
=================================  =============================================================

The NumPy functions share one implementation with their ``_t`` tape twins.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from refimpl.nn import functional as F
from refimpl.nn.losses import kl_div_with_temperature
from refimpl.nn.tensor import Tensor, as_tensor, data_of, no_grad
from refimpl.utils import (check_array, check_choice, check_float, check_int, validate_arrays,
                           validate_scalars)

__all__ = ["value_relation", "value_relation_t", "attention_kl", "attention_kl_t",
           "emd_layer_mapping", "theseus_replace_rate", "pkd_layer_map", "pkd_loss_t"]

_PROB_ATOL = 1e-6  # probabilities are checked to sum to 1 within this (float32 rounding)


@validate_scalars
def value_relation_t(V) -> Tensor:
    """MiniLM's value relation ``softmax(V Vᵀ / √d_k)`` over the last axis, on the tape
    (Survey §4.4; Wang et al. 2020, Eq. 6).

    Parameters
    ----------
    V : Tensor or ndarray of shape (B, H, n, d_k)
        Per-head values (e.g. ``AttentionOutputs.value`` of :class:`refimpl.nn.MultiHeadAttention`).

    Returns
    -------
    Tensor of shape (B, H, n, n)
    """
    v = data_of(V)
    check_array(v, "V", ndim=4)
    d = np.shape(v)[-1]
    Vt = as_tensor(V)
    S = F.matmul(Vt, F.transpose(Vt, (0, 1, 3, 2))) * (1.0 / np.sqrt(d))  # (B, H, n, n)
    return F.softmax(S, axis=-1)


@validate_scalars
def value_relation(V) -> np.ndarray:
    """:func:`value_relation_t` as an array: (B, H, n, d) → (B, H, n, n)."""
    with no_grad():
        return value_relation_t(np.asarray(V)).data


def _check_probs(A, name: str) -> np.ndarray:
    A = check_array(A, name, ndim=4)
    if np.any(A < 0) or not np.allclose(A.sum(axis=-1), 1.0, rtol=0, atol=_PROB_ATOL):
        raise ValueError(f"{name} must hold probabilities: non-negative, each row summing to 1 "
                         f"(within {_PROB_ATOL}) over the last axis")
    return A


@validate_scalars
def attention_kl(A_teacher, A_student) -> float:
    """MiniLM's self-attention transfer: the mean over (B, H, query rows) of
    ``Σ_j A_t log(A_t / A_s)``, with ``0 · log 0 = 0`` (Survey §4.4; Wang et al. 2020, Eq. 5).

    Parameters
    ----------
    A_teacher, A_student : ndarray of shape (B, H, n, m)
        Attention probabilities (rows sum to 1). ``+inf`` where the student gives 0 to a key the
        teacher attends to.

    Returns
    -------
    float
    """
    At = _check_probs(A_teacher, "A_teacher")
    As = _check_probs(A_student, "A_student")
    if At.shape != As.shape:
        raise ValueError(f"A_student must have the shape of A_teacher {At.shape}, got {As.shape}")
    pos = At > 0
    with np.errstate(divide="ignore"):
        terms = np.where(pos, At * (np.log(np.where(pos, At, 1.0))
                                    - np.log(np.where(pos, As, 1.0))), 0.0)
    terms[pos & (As == 0)] = np.inf
    return float(terms.sum(axis=-1).mean())


@validate_scalars
def attention_kl_t(A_teacher, student_scores, mask=None) -> Tensor:
    """:func:`attention_kl` on the tape, from the student's *scores* (pre-softmax, masked keys
    at a large negative value) for numerical stability: ``KL(A_t ‖ softmax(scores))`` averaged
    over (B, H, query rows).

    Parameters
    ----------
    A_teacher : ndarray of shape (B, H, n, m)
        Teacher attention probabilities (constant).
    student_scores : Tensor of shape (B, H, n, m)
    mask : bool ndarray of shape (B, H, n), optional
        Query rows to average over (e.g. real tokens).

    Returns
    -------
    Tensor (scalar)
    """
    At = _check_probs(A_teacher, "A_teacher")
    if tuple(np.shape(data_of(student_scores))) != At.shape:
        raise ValueError(f"student_scores must have the shape of A_teacher {At.shape}, got "
                         f"{np.shape(data_of(student_scores))}")
    return kl_div_with_temperature(student_scores, At, 1.0, teacher_is_probs=True,
                                   scale_by_T2=False, reduction="mean", mask=mask)


@validate_scalars
def emd_layer_mapping(cost, teacher_weights, student_weights):
    """BERT-EMD's many-to-many layer mapping: the earth mover's distance between the teacher's
    and the student's layer weights under a layer-to-layer cost (Survey §4.4; Li et al. 2020).

    .. math::

        \\min_{f \\ge 0} \\sum_{i,j} f_{ij} D_{ij}\\quad\\text{s.t.}\\quad
        \\sum_j f_{ij} = w^T_i,\\ \\sum_i f_{ij} = w^S_j

    with both weight vectors normalised to sum 1 (so the problem is balanced), solved as a
    linear program (``scipy.optimize.linprog``, HiGHS).

    Parameters
    ----------
    cost : ndarray of shape (M, N)
        ``D_ij``: the distance between teacher layer ``i`` and student layer ``j`` (e.g. their
        hidden-state MSE); non-negative and finite.
    teacher_weights : ndarray of shape (M,)
        Non-negative, not all zero (normalised here).
    student_weights : ndarray of shape (N,)

    Returns
    -------
    flow : ndarray of shape (M, N)
        The optimal transport plan; rows sum to the normalised teacher weights, columns to the
        student's.
    total : float
        ``Σ f_ij D_ij``, the earth mover's distance.

    References
    ----------
    .. [1] J. Li, X. Liu, H. Zhao, R. Xu, M. Yang, Y. Jin, "BERT-EMD: Many-to-Many Layer Mapping
       for BERT Compression with Earth Mover's Distance", EMNLP 2020.
    """
    D = check_array(cost, "cost", ndim=2)
    if np.any(D < 0):
        raise ValueError("cost must be non-negative")
    M, N = D.shape
    wt = check_array(teacher_weights, "teacher_weights", ndim=1)
    ws = check_array(student_weights, "student_weights", ndim=1)
    for w, name, k in ((wt, "teacher_weights", M), (ws, "student_weights", N)):
        if w.shape != (k,):
            raise ValueError(f"{name} must have shape ({k},) to match cost {D.shape}, "
                             f"got {w.shape}")
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"{name} must be non-negative with a positive sum")
    wt, ws = wt / wt.sum(), ws / ws.sum()
    # equality constraints on the flattened plan f (row-major, f[i*N + j]): row and column sums
    A_rows = np.kron(np.eye(M), np.ones((1, N)))  # (M, M N)
    A_cols = np.kron(np.ones((1, M)), np.eye(N))  # (N, M N)
    res = linprog(D.ravel(), A_eq=np.vstack([A_rows, A_cols]), b_eq=np.concatenate([wt, ws]),
                  bounds=(0, None), method="highs")
    if res.status != 0:  # pragma: no cover - balanced transport problems are always feasible
        raise RuntimeError(f"the transport LP did not solve: {res.message}")
    flow = np.maximum(res.x.reshape(M, N), 0.0)
    return flow, float((flow * D).sum())


@validate_scalars
def theseus_replace_rate(step, k: float, b: float) -> float:
    """BERT-of-Theseus' linear curriculum: the probability of replacing a predecessor module by
    its successor at training step ``t`` is ``p_t = min(1, k·t + b)`` (Survey §4.4; Xu et al.
    2020, Eq. 5).

    Parameters
    ----------
    step : int >= 0
    k : float >= 0
        Slope per step.
    b : float in [0, 1]
        Rate at step 0.

    Returns
    -------
    float in [0, 1]

    References
    ----------
    .. [1] C. Xu, W. Zhou, T. Ge, F. Wei, M. Zhou, "BERT-of-Theseus: Compressing BERT by
       Progressive Module Replacing", EMNLP 2020.
    """
    step = check_int(step, "step", 0)
    k = check_float(k, "k", 0.0)
    b = check_float(b, "b", 0.0, 1.0)
    return float(min(1.0, k * step + b))


@validate_scalars
def pkd_layer_map(num_teacher_layers: int, num_student_layers: int,
                  strategy: str = "skip") -> list[int]:
    """Patient KD's teacher layers for the student's ``M − 1`` intermediate layers (Survey §4.4;
    Sun et al. 2019): PKD-Skip takes every ``k``-th teacher layer, ``k = N / M`` (layers
    ``k, 2k, …, (M−1)k``), PKD-Last the last ``M − 1`` below the top (``N−M+1, …, N−1``).
    The top layers are matched through the prediction loss, not here. Layers are 1-based, as in
    the paper.

    Parameters
    ----------
    num_teacher_layers : int N
    num_student_layers : int M, with 1 <= M <= N (Skip: M must divide N)
    strategy : {"skip", "last"}

    Returns
    -------
    list of int (length M − 1)
    """
    N = check_int(num_teacher_layers, "num_teacher_layers", 1)
    M = check_int(num_student_layers, "num_student_layers", 1, N)
    strategy = check_choice(strategy, "strategy", ("skip", "last"))
    if strategy == "skip":
        if N % M:
            raise ValueError(f"PKD-Skip needs num_student_layers to divide num_teacher_layers, "
                             f"got {M} and {N}")
        k = N // M
        return [k * j for j in range(1, M)]
    return list(range(N - M + 1, N))


@validate_arrays(student_cls={"kind": "sequence"}, teacher_cls={"kind": "sequence"})
def pkd_loss_t(student_cls, teacher_cls) -> Tensor:
    """PKD's patient loss: ``Σ_j mean_b ‖h_s/‖h_s‖ − h_t/‖h_t‖‖²`` over the mapped layers' [CLS]
    states (Survey §4.4; Sun et al. 2019, Eq. 5).

    Parameters
    ----------
    student_cls : sequence of Tensor of shape (B, d)
    teacher_cls : sequence of ndarray or Tensor of shape (B, d)

    Returns
    -------
    Tensor (scalar)

    References
    ----------
    .. [1] S. Sun, Y. Cheng, Z. Gan, J. Liu, "Patient Knowledge Distillation for BERT Model
       Compression", EMNLP 2019.
    """
    ss, ts = list(student_cls), list(teacher_cls)
    if not ss or len(ss) != len(ts):
        raise ValueError(f"teacher_cls must have one entry per student layer (at least one), "
                         f"got {len(ts)} and {len(ss)}")
    total = None
    for i, (s, t) in enumerate(zip(ss, ts)):
        s, t = as_tensor(s), as_tensor(t)
        if s.ndim != 2 or s.shape != t.shape:
            raise ValueError(f"student_cls[{i}] and teacher_cls[{i}] must both have shape "
                             f"(B, d), got {s.shape} and {t.shape}")
        sn = s / ((s * s).sum(axis=-1, keepdims=True) ** 0.5)
        tn = t / ((t * t).sum(axis=-1, keepdims=True) ** 0.5)
        d = sn - tn
        term = (d * d).sum() * (1.0 / s.shape[0])
        total = term if total is None else total + term
    return total
