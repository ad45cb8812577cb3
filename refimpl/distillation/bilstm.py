"""Survey §4.4 — distilling a Transformer (or any teacher) into a small BiLSTM (Tang et al. 2019).

=================================  =============================================================
:func:`distilled_bilstm_loss_t`    ``α·CE(z^S, y) + (1 − α)·‖z^B − z^S‖²``: Tang et al.'s logit
                                   MSE (Eq. 2–3), not a KL divergence
:func:`tang_augment`               their task-agnostic augmentation (§3.2): masking, same-class
                                   word replacement (standing in for POS-guided replacement) and
                                   n-gram sampling; the teacher labels the new sentences
=================================  =============================================================

References
----------
.. [1] R. Tang, Y. Lu, L. Liu, L. Mou, O. Vechtomova, J. Lin, "Distilling Task-Specific Knowledge
   from BERT into Simple Neural Networks", arXiv 1903.12136, 2019.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn.losses import cross_entropy
from refimpl.nn.tensor import Tensor, as_tensor, data_of
from refimpl.utils import as_rng, check_array, check_float, check_int, validate_scalars

__all__ = ["distilled_bilstm_loss_t", "tang_augment"]


@validate_scalars
def distilled_bilstm_loss_t(student_logits, teacher_logits, labels=None,
                            alpha: float = 0.0) -> Tensor:
    """Tang et al.'s distillation objective (Survey §4.4; Tang et al. 2019, Eqs. 2–3):

    .. math::

        \\mathcal L = \\alpha\\,\\frac1B\\sum_b \\mathrm{CE}(z^S_b, y_b)
        + (1-\\alpha)\\,\\frac1B\\sum_b \\|z^B_b - z^S_b\\|_2^2

    on the *logits* (Tang et al. found the MSE on logits better than a KL/cross-entropy on
    probabilities; the survey's "KL divergence between student and teacher logits" is an
    erratum — see ``chapters/ERRATA.md``). On augmented sentences there is no label: ``α = 0``,
    ``labels = None``.

    Parameters
    ----------
    student_logits : Tensor of shape (B, C)
    teacher_logits : ndarray of shape (B, C)
    labels : int ndarray of shape (B,), optional (required when ``alpha > 0``)
    alpha : float in [0, 1]

    Returns
    -------
    Tensor (scalar)
    """
    zs = check_array(data_of(student_logits), "student_logits", ndim=2)
    zt = check_array(data_of(teacher_logits), "teacher_logits", ndim=2)
    if zt.shape != zs.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits {zs.shape}, "
                         f"got {zt.shape}")
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    s = as_tensor(student_logits)
    d = s - Tensor(zt)
    loss = (d * d).sum() * ((1.0 - alpha) / zs.shape[0])  # mean_b ‖z^B − z^S‖²
    if alpha > 0.0:
        if labels is None:
            raise ValueError("labels are required when alpha > 0")
        y = np.asarray(data_of(labels))
        if y.dtype.kind not in "iu" or y.shape != (zs.shape[0],):
            raise ValueError(f"labels must be integer class ids of shape ({zs.shape[0]},), "
                             f"got {y.dtype} {y.shape}")
        loss = loss + cross_entropy(s, y) * alpha
    return loss


@validate_scalars
def tang_augment(X, lengths, word_classes, n_iter: int = 2, p_mask: float = 0.1,
                 p_pos: float = 0.1, p_ng: float = 0.25, mask_id: int = 1, rng=None):
    """Tang et al.'s augmentation (Survey §4.4; Tang et al. 2019, §3.2): for each sentence,
    ``n_iter`` new ones are drawn. Per word, with ``u ~ U(0, 1)``: ``u < p_mask`` → the mask
    token; ``p_mask ≤ u < p_mask + p_pos`` → a uniformly drawn *other* word of the same class
    (the paper's POS-guided replacement, with ``word_classes`` standing in for POS tags; words
    of class < 0 are never replaced); then with probability ``p_ng`` only a random n-gram
    (``n`` uniform in 1..5, clipped to the length) is kept. Duplicates of the original are
    kept as they come (the paper discards them; the teacher labels every sample anyway).

    Parameters
    ----------
    X : int ndarray of shape (N, T)
        Token ids, padded with 0.
    lengths : int ndarray of shape (N,)
    word_classes : int ndarray of shape (V,)
        Class of each vocabulary id (e.g. 1 for sentiment adjectives, −1 for words never
        replaced).
    n_iter : int >= 1
    p_mask, p_pos, p_ng : float in [0, 1], ``p_mask + p_pos <= 1``
    mask_id : int >= 0
    rng : Generator or int, optional

    Returns
    -------
    X_aug : int64 ndarray of shape (N · n_iter, T)
    lengths_aug : int64 ndarray of shape (N · n_iter,)
    source : int64 ndarray of shape (N · n_iter,)
        The row each sample was drawn from.
    """
    X = check_array(X, "X", ndim=2, dtype_kind="iu")
    L = check_array(lengths, "lengths", ndim=1, dtype_kind="iu")
    if L.shape != (X.shape[0],) or L.min() < 1 or L.max() > X.shape[1]:
        raise ValueError(f"lengths must have shape ({X.shape[0]},) with values in "
                         f"[1, {X.shape[1]}]")
    wc = check_array(word_classes, "word_classes", ndim=1, dtype_kind="iu")
    if X.max() >= wc.shape[0]:
        raise ValueError(f"word_classes must cover every token id (< {X.max() + 1}), got "
                         f"{wc.shape[0]} entries")
    n_iter = check_int(n_iter, "n_iter", 1)
    p_mask = check_float(p_mask, "p_mask", 0.0, 1.0)
    p_pos = check_float(p_pos, "p_pos", 0.0, 1.0)
    p_ng = check_float(p_ng, "p_ng", 0.0, 1.0)
    if p_mask + p_pos > 1.0:
        raise ValueError(f"p_mask + p_pos must be <= 1, got {p_mask} + {p_pos}")
    mask_id = check_int(mask_id, "mask_id", 0)
    rng = as_rng(rng)
    members = {int(c): np.flatnonzero(wc == c) for c in np.unique(wc) if c >= 0}
    N, T = X.shape
    out = np.zeros((N * n_iter, T), np.int64)
    out_len = np.zeros(N * n_iter, np.int64)
    src = np.repeat(np.arange(N), n_iter)
    for r, i in enumerate(src):
        n = int(L[i])
        row = X[i, :n].astype(np.int64).copy()
        u = rng.random(n)
        for t in range(n):
            if u[t] < p_mask:
                row[t] = mask_id
            elif u[t] < p_mask + p_pos and wc[row[t]] >= 0:
                pool = members[int(wc[row[t]])]
                if len(pool) > 1:
                    other = pool[pool != row[t]]
                    row[t] = other[rng.integers(len(other))]
        if rng.random() < p_ng:  # keep one n-gram, n uniform in 1..5
            k = min(n, int(rng.integers(1, 6)))
            a = int(rng.integers(0, n - k + 1))
            row = row[a:a + k]
        out[r, :len(row)] = row
        out_len[r] = len(row)
    return out, out_len, src
