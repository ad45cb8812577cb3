"""Survey §4.4 — XtremeDistil's projection of a BiLSTM student's states onto a teacher layer
(Mukherjee & Awadallah 2020).

=====================================  ==========================================================
:class:`XtremeDistilProjection`        the learned linear map ``f(h) = W h + b`` from the
                                       student's BiLSTM states (width ``2H``) to the teacher's
                                       hidden width ``d_model``
:func:`bilstm_token_states`            a :class:`refimpl.nn.RNNClassifier`'s logits and its
                                       per-token BiLSTM states in one pass
:func:`xtremedistil_representation_loss_t`  the representation loss: MSE between the projected
                                       student states and a teacher layer's states, over real
                                       tokens
:func:`fit_xtremedistil`               their stage-wise schedule through
                                       :func:`~refimpl.distillation.fit_with_teacher`:
                                       representations, then logits, then hard labels
=====================================  ==========================================================

References
----------
.. [1] S. Mukherjee, A. H. Awadallah, "XtremeDistil: Multi-stage Distillation for Massive
   Multilingual Models", ACL 2020 (arXiv 2004.05686).
"""

from __future__ import annotations

import numpy as np

from refimpl.distillation.bert_recipes import _check_tf, fit_with_teacher
from refimpl.distillation.bilstm import distilled_bilstm_loss_t
from refimpl.distillation.architectures import check_train_arrays
from refimpl.nn.layers import Linear
from refimpl.nn.losses import cross_entropy
from refimpl.nn.module import Module
from refimpl.nn.tensor import Tensor, as_tensor, data_of
from refimpl.utils import check_array, check_int, validate_scalars

__all__ = ["XtremeDistilProjection", "bilstm_token_states", "xtremedistil_representation_loss_t",
           "fit_xtremedistil"]


class XtremeDistilProjection(Module):
    """XtremeDistil's learned projection ``f(h) = W h + b`` of the student's BiLSTM states
    (``d_student = 2H``) onto the teacher's hidden width ``d_teacher`` (Survey §4.4; Mukherjee &
    Awadallah 2020, §3, representation transfer). ``d_student·d_teacher + d_teacher`` parameters.

    Parameters
    ----------
    d_student, d_teacher : int >= 1
    rng : Generator or int, optional
    """

    def __init__(self, d_student: int, d_teacher: int, rng=None):
        self.d_student = check_int(d_student, "d_student", 1)
        self.d_teacher = check_int(d_teacher, "d_teacher", 1)
        self.proj = Linear(d_student, d_teacher, rng=rng)

    def forward(self, h) -> Tensor:
        """``h`` (..., d_student) -> (..., d_teacher)."""
        return self.proj(h)


def _check_rnn(model, name):
    if not (hasattr(model, "rnn") and hasattr(model, "embedding") and hasattr(model, "fc")):
        raise TypeError(f"{name} must be a refimpl.nn.RNNClassifier, got {type(model).__name__}")
    return model


def bilstm_token_states(student, X, lengths=None):
    """The student's logits and its top recurrent layer's per-token states, one pass.

    Parameters
    ----------
    student : RNNClassifier
    X : int ndarray of shape (B, T)
    lengths : int ndarray of shape (B,), optional (default: full length)

    Returns
    -------
    logits : Tensor of shape (B, n_classes)
    states : Tensor of shape (B, T, d_hidden · num_directions)
    """
    _check_rnn(student, "student")
    states, pooled = student.encode(X, lengths)
    return student.fc(student.dropout(pooled)), states


def xtremedistil_representation_loss_t(student_states, teacher_states, projection,
                                       valid) -> Tensor:
    """XtremeDistil's representation loss (Survey §4.4; Mukherjee & Awadallah 2020, §3):

    .. math::

        \\mathcal L_{RL} = \\frac{1}{|\\mathcal V|\\,d}\\sum_{(b,t)\\in\\mathcal V}
        \\bigl\\|W h^S_{b,t} + \\mathbf b - h^T_{b,t}\\bigr\\|_2^2

    the mean squared error between the projected student states and a teacher layer's states
    over the real tokens ``V`` (padding never enters), ``d`` the teacher width.

    Parameters
    ----------
    student_states : Tensor or ndarray of shape (B, T, d_student)
    teacher_states : Tensor or ndarray of shape (B, T, d_teacher)
        Treated as a constant target.
    projection : XtremeDistilProjection (d_student -> d_teacher)
    valid : bool ndarray of shape (B, T)

    Returns
    -------
    Tensor (scalar)
    """
    hs = check_array(data_of(student_states), "student_states", ndim=3)
    ht = check_array(data_of(teacher_states), "teacher_states", ndim=3)
    if not isinstance(projection, XtremeDistilProjection):
        raise TypeError(f"projection must be an XtremeDistilProjection, got "
                        f"{type(projection).__name__}")
    if hs.shape[-1] != projection.d_student or ht.shape[-1] != projection.d_teacher:
        raise ValueError(f"projection maps {projection.d_student} -> {projection.d_teacher}, "
                         f"got student_states width {hs.shape[-1]}, teacher_states width "
                         f"{ht.shape[-1]}")
    if ht.shape[:2] != hs.shape[:2]:
        raise ValueError(f"teacher_states must have (B, T) = {hs.shape[:2]}, got {ht.shape[:2]}")
    valid = np.asarray(valid)
    if valid.dtype != bool or valid.shape != hs.shape[:2] or not valid.any():
        raise ValueError(f"valid must be a bool mask of shape {hs.shape[:2]} with a True entry")
    m = valid[:, :, None].astype(hs.dtype)  # (B, T, 1)
    d = (projection(as_tensor(student_states)) - Tensor(ht)) * m  # (B, T, d_teacher)
    return (d * d).sum() * (1.0 / (valid.sum() * ht.shape[-1]))


@validate_scalars(lr=(0.0, None, "(]"), batch_size=(1, None))
def fit_xtremedistil(student, teacher, train_arrays, *, projection=None, teacher_layer: int = -1,
                     epochs_representation: int = 2, epochs_logits: int = 2,
                     epochs_labels: int = 1, lr: float = 1e-2, batch_size: int = 32, rng=None,
                     progress=None):
    """XtremeDistil's stage-wise distillation of a Transformer into a BiLSTM (Survey §4.4;
    Mukherjee & Awadallah 2020, §3–4): (1) the representation loss
    :func:`xtremedistil_representation_loss_t` between the projected BiLSTM states and teacher
    layer ``teacher_layer`` (hidden state index, 0 = embeddings, −1 = top), student and
    projection trained; (2) the logit MSE ``‖z^T − z^S‖²`` (as in Tang et al.,
    :func:`distilled_bilstm_loss_t` with ``α = 0``); (3) cross-entropy on the hard labels. Each
    stage runs through :func:`fit_with_teacher`. The paper's gradual unfreezing within stages
    and its unlabelled transfer set are not reproduced (the stages use ``train_arrays``).

    Parameters
    ----------
    student : RNNClassifier
        Its top layer's token states align with the teacher's token positions (the teacher's
        [CLS] slot, if any, is dropped).
    teacher : TransformerClassifier
    train_arrays : tuple ``(X, lengths, y)``
    projection : XtremeDistilProjection, optional
        Created (``2H`` -> teacher ``d_model``) when None.
    teacher_layer : int in [−(L+1), L]
    epochs_representation, epochs_logits, epochs_labels : int >= 0
    lr, batch_size, rng, progress : as :func:`refimpl.nn.fit`

    Returns
    -------
    projection : XtremeDistilProjection
    histories : tuple of three History (None for a stage with 0 epochs)
    """
    _check_rnn(student, "student")
    _check_tf(teacher, "teacher")
    train_arrays = check_train_arrays(train_arrays)
    L = teacher.num_layers
    teacher_layer = check_int(teacher_layer, "teacher_layer", -(L + 1), L)
    e1 = check_int(epochs_representation, "epochs_representation", 0)
    e2 = check_int(epochs_logits, "epochs_logits", 0)
    e3 = check_int(epochs_labels, "epochs_labels", 0)
    d_s = student.fc.in_features  # 2H for a BiLSTM
    if projection is None:
        projection = XtremeDistilProjection(d_s, teacher.d_model, rng=rng)
    elif not isinstance(projection, XtremeDistilProjection):
        raise TypeError(f"projection must be an XtremeDistilProjection, got "
                        f"{type(projection).__name__}")
    skip = 1 if teacher.pooling == "cls" else 0

    def representation(sz, so, tz, to, valid, y):
        ht = data_of(to.hidden_states[teacher_layer])[:, skip:]  # (B, T, d_teacher)
        return xtremedistil_representation_loss_t(so, ht, projection, valid)

    def logits(sz, so, tz, to, valid, y):
        return distilled_bilstm_loss_t(sz, tz)

    def labels(sz, so, tz, to, valid, y):
        return cross_entropy(sz, y)

    def plain(model, X, lengths):
        return model(X, lengths)  # logits only

    common = dict(lr=lr, batch_size=batch_size, rng=rng, progress=progress)
    hist = []
    for epochs, loss, extra, inter, fwd in (
            (e1, representation, [projection], True, bilstm_token_states),
            (e2, logits, [], False, plain), (e3, labels, [], False, plain)):
        hist.append(fit_with_teacher(student, teacher, train_arrays, loss, extra_modules=extra,
                                     need_intermediates=inter, epochs=epochs,
                                     student_forward=fwd, **common) if epochs else None)
    return projection, tuple(hist)
