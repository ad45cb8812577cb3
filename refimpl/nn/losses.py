"""Losses on the tape: cross-entropy, NLL, MSE and Hinton's temperature-softened KL divergence
used by knowledge distillation (Survey §4, Eq. (30)-(31) family).

Every loss validates its inputs (shapes, integer targets in range, no NaN/inf) and raises a
``ValueError``/``TypeError`` naming the argument.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn import ops
from refimpl.nn.tensor import Tensor, apply_op, as_tensor, data_of
from refimpl.utils import check_choice, check_float

__all__ = ["cross_entropy", "nll", "mse", "kl_div_with_temperature", "distillation_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _finite(t: Tensor, name: str) -> None:
    if t.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array or Tensor, got dtype {t.dtype}")
    if t.size and not np.all(np.isfinite(t.data)):
        raise ValueError(f"{name} contains NaN or inf")


def _targets(y, lead_shape: tuple, C: int, ignore_index, name: str = "y"):
    y = np.asarray(data_of(y))
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array of class ids, got dtype {y.dtype}")
    if y.shape != lead_shape:
        raise ValueError(f"{name} must have shape {lead_shape} (the logits' leading axes), "
                         f"got {y.shape}")
    valid = np.ones(y.shape, bool) if ignore_index is None else (y != ignore_index)
    yv = y[valid]
    if yv.size and (yv.min() < 0 or yv.max() >= C):
        raise ValueError(f"{name} must lie in [0, {C}) (or equal ignore_index), got values in "
                         f"[{yv.min()}, {yv.max()}]")
    return np.where(valid, y, 0).astype(np.int64), valid


def _reduce(per: Tensor, valid: np.ndarray, reduction: str) -> Tensor:
    if reduction == "none":
        return F.mask(per, valid.astype(per.dtype)) if not valid.all() else per
    if not valid.all():
        per = F.mask(per, valid.astype(per.dtype))
    total = per.sum()
    if reduction == "sum":
        return total
    n = int(valid.sum())
    if n == 0:
        raise ValueError("every target equals ignore_index: the mean loss is undefined")
    return total * (1.0 / n)


def cross_entropy(logits, y, ignore_index: int | None = None, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy ``−log softmax(logits)[y]`` (PyTorch ``F.cross_entropy``).

    Parameters
    ----------
    logits : Tensor of shape (..., C)
    y : int ndarray of shape (...)
    ignore_index : int, optional
        Targets equal to it contribute nothing (e.g. 0 = <pad> in language modelling); the mean
        is over the other targets, as in PyTorch.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    Tensor, scalar (or of shape (...) for ``reduction="none"``, 0 at ignored targets)

    Notes
    -----
    Uses the fused pair :func:`refimpl.nn.ops.cross_entropy_forward` (gradient
    ``softmax − onehot``), which is equal to ``−gather(log_softmax(logits), y)``.
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    logits = as_tensor(logits)
    _finite(logits, "logits")
    if logits.ndim < 1:
        raise ValueError(f"logits must have at least 1 dimension (classes), got {logits.shape}")
    C = logits.shape[-1]
    ys, valid = _targets(y, logits.shape[:-1], C, ignore_index)
    flat = logits.reshape(-1, C)  # (N, C)
    per = apply_op(lambda a: ops.cross_entropy_forward(a, ys.reshape(-1)),
                   lambda d, c: ops.cross_entropy_backward(d, c)[:1], flat,
                   name="cross_entropy")  # (N,)
    per = per.reshape(ys.shape)
    return _reduce(per, valid, reduction)


def nll(log_probs, y, ignore_index: int | None = None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood ``−log_probs[..., y]`` of given log-probabilities (PyTorch
    ``F.nll_loss``); for language models that already output ``log_softmax``.

    Parameters
    ----------
    log_probs : Tensor of shape (..., C)
    y : int ndarray of shape (...)
    ignore_index : int, optional
    reduction : {"mean", "sum", "none"}
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    log_probs = as_tensor(log_probs)
    _finite(log_probs, "log_probs")
    ys, valid = _targets(y, log_probs.shape[:-1], log_probs.shape[-1], ignore_index)
    per = -F.gather(log_probs, ys[..., None], axis=-1).reshape(ys.shape)
    return _reduce(per, valid, reduction)


def mse(pred, target, reduction: str = "mean") -> Tensor:
    """Mean squared error ``mean((pred − target)²)`` (PyTorch ``F.mse_loss``).

    ``target`` may be a Tensor (gradients flow to both, e.g. hint/feature distillation) or an
    array of the same shape.
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    pred, target = as_tensor(pred), as_tensor(target)
    _finite(pred, "pred")
    _finite(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"target must have the shape of pred {pred.shape}, got {target.shape}")
    d = pred - target
    sq = d * d
    if reduction == "none":
        return sq
    return sq.sum() if reduction == "sum" else sq.mean()


def kl_div_with_temperature(student_logits, teacher, T: float = 1.0, *,
                            teacher_is_probs: bool = False, scale_by_T2: bool = True,
                            reduction: str = "batchmean", mask=None) -> Tensor:
    """Hinton's soft-target loss ``T² · KL(p_T^teacher ‖ p_T^student)``.

    .. math::

        p^{t}_T = \\mathrm{softmax}(z^t / T),\\quad p^{s}_T = \\mathrm{softmax}(z^s / T),\\quad
        \\mathcal L_{soft} = T^2 \\sum_c p^{t}_{T,c}\\,(\\log p^{t}_{T,c} - \\log p^{s}_{T,c})

    The factor ``T²`` (included by default, ``scale_by_T2=False`` drops it) keeps the soft
    gradients' magnitude independent of ``T`` (Hinton et al. 2015, §2): ``∂L/∂z^s =
    T (p^s_T − p^t_T)``, which for large ``T`` tends to ``(z^s − z^t) / N_classes`` after
    mean-centring the logits.

    Parameters
    ----------
    student_logits : Tensor of shape (..., C)
    teacher : Tensor or ndarray of shape (..., C)
        Teacher logits (softened here with ``T``), or probabilities with
        ``teacher_is_probs=True`` (used as given, ``T`` then only softens the student).
        Gradients flow into a teacher Tensor that requires grad (mutual learning, §4.2);
        pass an array or a detached Tensor for a fixed teacher.
    T : float > 0
    scale_by_T2 : bool
    reduction : {"batchmean", "mean", "sum", "none"}
        "batchmean" divides the summed KL by ``student_logits.shape[0]`` (PyTorch's
        ``kl_div(..., reduction="batchmean")``); "mean" averages the per-row KL over all
        leading axes (over the rows where ``mask`` is True); "none" returns the per-row KL.
    mask : bool ndarray of shape (...), optional
        Rows to include (e.g. real tokens of padded sequences).

    Returns
    -------
    Tensor

    References
    ----------
    .. [1] G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network",
       NIPS Deep Learning Workshop 2015.
    """
    check_choice(reduction, "reduction", ("batchmean", "mean", "sum", "none"))
    T = check_float(T, "T", 0.0, lo_open=True)
    s = as_tensor(student_logits)
    t = as_tensor(teacher)
    _finite(s, "student_logits")
    _finite(t, "teacher")
    if s.shape != t.shape:
        raise ValueError(f"teacher must have the shape of student_logits {s.shape}, "
                         f"got {t.shape}")
    log_ps = F.log_softmax(s * (1.0 / T), axis=-1)
    if teacher_is_probs:
        p = t.data
        if np.any(p < 0) or not np.allclose(p.sum(axis=-1), 1.0, atol=1e-6):
            raise ValueError("teacher probabilities must be non-negative and sum to 1 over the "
                             "last axis")
        pos = p > 0
        log_pt_const = np.where(pos, np.log(np.where(pos, p, 1.0)), 0.0)  # 0 log 0 = 0
        per = (t * (log_pt_const - log_ps)).sum(axis=-1)
    else:
        log_pt = F.log_softmax(t * (1.0 / T), axis=-1)
        per = (F.exp(log_pt) * (log_pt - log_ps)).sum(axis=-1)  # (...)
    if scale_by_T2:
        per = per * (T * T)
    valid = np.ones(per.shape, bool)
    if mask is not None:
        valid = np.asarray(data_of(mask))
        if valid.dtype != bool or valid.shape != per.shape:
            raise ValueError(f"mask must be a boolean array of shape {per.shape}, got "
                             f"{valid.dtype} {valid.shape}")
        per = F.mask(per, valid.astype(per.dtype))
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if reduction == "batchmean":
        return per.sum() * (1.0 / s.shape[0])
    n = int(valid.sum())
    if n == 0:
        raise ValueError("mask selects no rows: the mean loss is undefined")
    return per.sum() * (1.0 / n)


def distillation_loss(student_logits, teacher_logits, y, T: float = 2.0,
                      alpha: float = 0.5) -> Tensor:
    """Hinton's combined objective ``α T² KL(p_T^t ‖ p_T^s) + (1 − α) CE(z^s, y)``.

    Parameters
    ----------
    student_logits, teacher_logits : Tensor/ndarray of shape (N, C)
    y : int ndarray of shape (N,)
    T : float > 0
    alpha : float in [0, 1]
        Weight of the soft (teacher) term.
    """
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    soft = kl_div_with_temperature(student_logits, teacher_logits, T)
    hard = cross_entropy(student_logits, y)
    return soft * alpha + hard * (1.0 - alpha)
