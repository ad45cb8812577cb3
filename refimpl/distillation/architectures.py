"""Survey §4.1 — distillation objectives between a teacher and a student of any architecture.

=============================  =================================================================
:func:`kd_loss` / ``_t``       Hinton et al. 2015: soft targets at temperature ``T`` with the
                               ``T²`` factor, plus the hard-label cross-entropy
:func:`logit_regression_loss`  Ba & Caruana 2014: L2 regression on the teacher's logits
:func:`noisy_teacher_logits`   Sau & Balasubramanian 2016: the teacher's logits perturbed by
                               zero-mean Gaussian noise for a random subset of examples
:func:`fsp_matrix` / ``_t``    Yim et al. 2017 (FSP, "flow of solution procedure"), adapted to
:func:`fsp_loss` / ``_t``      sequences: ``G = F₁ᵀF₂ / n`` over positions, and the L2 loss
                               between teacher and student FSP matrices over layer pairs
=============================  =================================================================

The NumPy functions (float out) and the ``_t`` tape twins (Tensor out, for training a student
with :func:`refimpl.nn.fit`) share one implementation: the NumPy function runs the tape function
on constants.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.losses import cross_entropy, kl_div_with_temperature
from refimpl.nn.tensor import Tensor, as_tensor, data_of, no_grad
from refimpl.utils import as_rng, check_array, check_float, validate_arrays, validate_scalars

__all__ = ["kd_loss", "kd_loss_t", "logit_regression_loss", "noisy_teacher_logits",
           "fsp_matrix", "fsp_matrix_t", "fsp_loss", "fsp_loss_t"]


def _logits_pair(student_logits, teacher_logits):
    s = data_of(student_logits)
    t = data_of(teacher_logits)
    check_array(s, "student_logits", ndim=2)
    check_array(t, "teacher_logits", ndim=2)
    if np.shape(s) != np.shape(t):
        raise ValueError(f"teacher_logits must have the shape of student_logits "
                         f"{np.shape(s)}, got {np.shape(t)}")


@validate_scalars
def kd_loss_t(student_logits, teacher_logits, T: float = 1.0, labels=None,
              alpha: float = 1.0) -> Tensor:
    """Hinton's distillation loss on the tape (Survey §4.1; Hinton, Vinyals & Dean 2015).

    .. math::

        \\mathcal L = \\alpha\\,T^2\\,\\frac1B\\sum_b \\mathrm{KL}\\big(\\mathrm{softmax}(t_b/T)
        \\,\\|\\,\\mathrm{softmax}(s_b/T)\\big) + (1-\\alpha)\\,\\frac1B\\sum_b
        \\mathrm{CE}(s_b, y_b)

    The second term only when ``labels`` are given. ``T²`` keeps the soft term's gradient
    ``T (p_T^s − p_T^t)`` on the scale of the hard term's whatever ``T`` (Hinton et al., §2);
    at test time the student is used at ``T = 1``.

    Parameters
    ----------
    student_logits : Tensor or ndarray of shape (B, C)
    teacher_logits : ndarray or Tensor of shape (B, C)
        Constant unless it is a Tensor that requires grad (mutual learning, §4.2).
    T : float > 0
    labels : int ndarray of shape (B,), optional
    alpha : float in [0, 1]
        Weight of the soft term.

    Returns
    -------
    Tensor (scalar)

    Notes
    -----
    References differ: PyTorch's ``KLDivLoss(reduction="batchmean")`` times ``T²`` is the soft
    term here; TextBrewer's soft cross-entropy omits ``T²``; PKD's code averages the KL over
    classes (``reduction="mean"``), dividing it by ``C``. refimpl follows Hinton et al.
    """
    _logits_pair(student_logits, teacher_logits)
    T = check_float(T, "T", 0.0, lo_open=True)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    s = as_tensor(student_logits)
    soft = kl_div_with_temperature(s, teacher_logits, T, reduction="batchmean")
    if labels is None:
        return soft * alpha
    y = np.asarray(data_of(labels))
    if y.dtype.kind not in "iu" or y.shape != (s.shape[0],):
        raise ValueError(f"labels must be integer class ids of shape ({s.shape[0]},), got "
                         f"{y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must lie in [0, {s.shape[1]}), got values in "
                         f"[{y.min()}, {y.max()}]")
    return soft * alpha + cross_entropy(s, y) * (1.0 - alpha)


@validate_scalars
def kd_loss(student_logits, teacher_logits, T: float = 1.0, labels=None,
            alpha: float = 1.0) -> float:
    """:func:`kd_loss_t` as a float: ``α·T²·mean_b KL(softmax(t/T) ‖ softmax(s/T)) +
    (1 − α)·mean_b CE(s, y)`` (Survey §4.1; Hinton et al. 2015).

    Parameters
    ----------
    student_logits, teacher_logits : ndarray of shape (B, C)
    T : float > 0
    labels : int ndarray of shape (B,), optional
    alpha : float in [0, 1]

    Returns
    -------
    float
    """
    with no_grad():
        return float(kd_loss_t(np.asarray(student_logits), np.asarray(teacher_logits), T,
                               labels, alpha).data)


@validate_scalars
def logit_regression_loss(student_logits, teacher_logits) -> float:
    """Ba & Caruana's logit matching: ``1/(2B) Σ_b ‖s_b − t_b‖²`` (Survey §4.1).

    Parameters
    ----------
    student_logits, teacher_logits : ndarray of shape (B, C)

    Returns
    -------
    float

    References
    ----------
    .. [1] J. Ba, R. Caruana, "Do Deep Nets Really Need to be Deep?", NeurIPS 2014.
    """
    _logits_pair(student_logits, teacher_logits)
    d = np.asarray(student_logits, float) - np.asarray(teacher_logits, float)
    return float(0.5 * np.sum(d * d) / d.shape[0])


@validate_scalars
def noisy_teacher_logits(teacher_logits, sigma: float, alpha: float, rng=None) -> np.ndarray:
    """The noisy teacher of Sau & Balasubramanian (Survey §4.1): each example is drawn with
    probability ``alpha``; a drawn example's logits get zero-mean Gaussian noise of standard
    deviation ``sigma`` added, ``z̃ = z + ξ``, ``ξ ~ N(0, σ² I)``.

    The survey states the additive form used here; several re-implementations scale the logits
    instead (``z (1 + ξ)``), which makes the perturbation grow with the logit's size.

    Parameters
    ----------
    teacher_logits : ndarray of shape (B, C)
    sigma : float >= 0
    alpha : float in [0, 1]
        Probability that an example is perturbed.
    rng : Generator or int, optional

    Returns
    -------
    ndarray of shape (B, C)
        A new array (the input is not modified).

    References
    ----------
    .. [1] B. B. Sau, V. N. Balasubramanian, "Deep Model Compression: Distilling Knowledge from
       Noisy Teachers", arXiv 1610.09650, 2016.
    """
    z = check_array(teacher_logits, "teacher_logits", ndim=2)
    sigma = check_float(sigma, "sigma", 0.0)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    rng = as_rng(rng)
    drawn = rng.random(z.shape[0]) < alpha  # (B,)
    noise = rng.normal(0.0, 1.0, z.shape) * sigma
    return z + noise * drawn[:, None]


@validate_scalars
def fsp_matrix_t(F1, F2) -> Tensor:
    """FSP matrix ``G = F₁ᵀ F₂ / n`` per example, on the tape (Survey §4.1; Yim et al. 2017,
    adapted to sequences: the sum runs over the ``n`` positions instead of the h × w pixels).

    Parameters
    ----------
    F1 : Tensor or ndarray of shape (B, n, d1)
        Features of the first layer of a pair.
    F2 : Tensor or ndarray of shape (B, n, d2)

    Returns
    -------
    Tensor of shape (B, d1, d2)
    """
    a, b = data_of(F1), data_of(F2)
    check_array(a, "F1", ndim=3)
    check_array(b, "F2", ndim=3)
    if np.shape(a)[:2] != np.shape(b)[:2]:
        raise ValueError(f"F2 must have the batch and length of F1 {np.shape(a)[:2]}, got "
                         f"{np.shape(b)[:2]}")
    n = np.shape(a)[1]
    return F.matmul(F.transpose(as_tensor(F1), (0, 2, 1)), as_tensor(F2)) * (1.0 / n)


@validate_scalars
def fsp_matrix(F1, F2) -> np.ndarray:
    """:func:`fsp_matrix_t` as an array: (B, n, d₁), (B, n, d₂) → (B, d₁, d₂) = F₁ᵀF₂ / n."""
    with no_grad():
        return fsp_matrix_t(np.asarray(F1), np.asarray(F2)).data


@validate_arrays(teacher_pairs={"kind": "sequence"}, student_pairs={"kind": "sequence"},
                 weights={"optional": True, "ndim": 1})
def fsp_loss_t(teacher_pairs, student_pairs, weights=None) -> Tensor:
    """Yim et al.'s FSP loss ``Σ_i λ_i · 1/B Σ_b ‖G_i^T(x_b) − G_i^S(x_b)‖²_F`` over layer pairs
    ``i`` (Survey §4.1), on the tape.

    Parameters
    ----------
    teacher_pairs, student_pairs : sequence of (F1, F2)
        Matching layer pairs; each ``F`` of shape (B, n, d); teacher and student FSP matrices
        of a pair must have the same shape (d₁, d₂).
    weights : sequence of float, optional
        ``λ_i`` (default 1).

    Returns
    -------
    Tensor (scalar)

    References
    ----------
    .. [1] J. Yim, D. Joo, J. Bae, J. Kim, "A Gift from Knowledge Distillation: Fast
       Optimization, Network Minimization and Transfer Learning", CVPR 2017.
    """
    tp, sp = list(teacher_pairs), list(student_pairs)
    if not tp or len(tp) != len(sp):
        raise ValueError(f"student_pairs must have as many (F1, F2) pairs as teacher_pairs "
                         f"(at least one), got {len(sp)} and {len(tp)}")
    lam = np.ones(len(tp)) if weights is None else check_array(weights, "weights", ndim=1)
    if lam.shape != (len(tp),):
        raise ValueError(f"weights must have shape ({len(tp)},), got {lam.shape}")
    total = None
    for i, ((t1, t2), (s1, s2)) in enumerate(zip(tp, sp)):
        Gt, Gs = fsp_matrix_t(t1, t2), fsp_matrix_t(s1, s2)
        if Gt.shape != Gs.shape:
            raise ValueError(f"student_pairs[{i}] gives an FSP matrix of shape {Gs.shape[1:]}, "
                             f"the teacher's is {Gt.shape[1:]}")
        d = Gt - Gs
        term = (d * d).sum() * (float(lam[i]) / Gt.shape[0])
        total = term if total is None else total + term
    return total


@validate_arrays(teacher_pairs={"kind": "sequence"}, student_pairs={"kind": "sequence"},
                 weights={"optional": True, "ndim": 1})
def fsp_loss(teacher_pairs, student_pairs, weights=None) -> float:
    """:func:`fsp_loss_t` as a float."""
    with no_grad():
        tp = [(np.asarray(a), np.asarray(b)) for a, b in teacher_pairs]
        sp = [(np.asarray(a), np.asarray(b)) for a, b in student_pairs]
        return float(fsp_loss_t(tp, sp, weights).data)
