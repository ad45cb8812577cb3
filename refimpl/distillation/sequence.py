"""Survey §4.1 — sequence-level knowledge distillation for sequence-to-sequence models
(Kim & Rush 2016), on :class:`refimpl.nn.Seq2Seq`.

=============================  =================================================================
:func:`word_kd_loss_t`         word-level KD: per target position, the cross-entropy to the
                               teacher's next-word distribution (teacher-forced on the reference)
:func:`fit_word_kd`            trains a student with ``(1 − α)·NLL + α·word-KD``
:func:`sequence_kd_targets`    sequence-level KD: the teacher's beam-search output replaces the
                               reference as the training target
:func:`seq_inter_targets`      Seq-Inter: among the teacher's beam, the hypothesis closest to the
                               reference by sentence BLEU
=============================  =================================================================

Targets are returned in the task's layout (``<bos> … <eos>`` rows, padded with 0, and their
lengths), so :func:`refimpl.nn.fit_seq2seq` trains on them unchanged.

References
----------
.. [1] Y. Kim, A. M. Rush, "Sequence-Level Knowledge Distillation", EMNLP 2016.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.tensor import Tensor, as_tensor, data_of, no_grad
from refimpl.utils import check_array, check_float, check_int, validate_scalars

__all__ = ["word_kd_loss_t", "fit_word_kd", "sequence_kd_targets", "seq_inter_targets"]


def _check_s2s(model, name):
    if not (hasattr(model, "beam_search") and hasattr(model, "encode")):
        raise TypeError(f"{name} must be a refimpl.nn.Seq2Seq, got {type(model).__name__}")
    return model


@validate_scalars
def word_kd_loss_t(student_logits, teacher_logits, valid, T: float = 1.0) -> Tensor:
    """Word-level KD (Survey §4.1; Kim & Rush 2016, Eq. 4):

    .. math::

        \\mathcal L_{word} = -\\frac1{|V|}\\sum_{(b,j)\\in V}\\sum_{k}
        q(y_j = k \\mid x, y_{<j})\\,\\log p(y_j = k \\mid x, y_{<j})

    with the teacher's ``q = softmax(z^t / T)`` and the student's ``p = softmax(z^s / T)``,
    both teacher-forced on the same prefix, averaged over the real target positions ``V``
    (``T = 1`` in Kim & Rush).

    Parameters
    ----------
    student_logits : Tensor of shape (B, n, V)
    teacher_logits : ndarray of shape (B, n, V)
    valid : bool ndarray of shape (B, n)
    T : float > 0

    Returns
    -------
    Tensor (scalar)
    """
    zs = check_array(data_of(student_logits), "student_logits", ndim=3)
    zt = check_array(data_of(teacher_logits), "teacher_logits", ndim=3)
    if zt.shape != zs.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits {zs.shape}, "
                         f"got {zt.shape}")
    valid = np.asarray(valid)
    if valid.dtype != bool or valid.shape != zs.shape[:2] or not valid.any():
        raise ValueError(f"valid must be a bool mask of shape {zs.shape[:2]} with a real "
                         f"position")
    T = check_float(T, "T", 0.0, lo_open=True)
    a = zt / T
    q = np.exp(a - a.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)  # (B, n, V) teacher's next-word distributions
    logp = F.log_softmax(as_tensor(student_logits) * (1.0 / T), axis=-1)  # (B, n, V)
    w = (valid / valid.sum())[:, :, None]  # mean over real positions
    return (Tensor(-q * w) * logp).sum()


def _targets_mask(tgt, tgt_len):
    T = tgt.shape[1]
    return np.arange(1, T)[None, :] < np.asarray(tgt_len)[:, None]  # (B, T-1): y_1..<eos>


@validate_scalars(lr=(0.0, None, "(]"), batch_size=(1, None), clip_norm=(0.0, None, "(]"))
def fit_word_kd(student, teacher, train, *, alpha: float = 0.5, T: float = 1.0,
                epochs: int = 2, lr: float = 3e-3, batch_size: int = 32,
                clip_norm: float = 1.0, rng=None, progress=None):
    """Train a :class:`refimpl.nn.Seq2Seq` student with ``(1 − α)·NLL(reference) +
    α·word-KD`` (Survey §4.1; Kim & Rush 2016, Eq. 5), both teacher-forced on the reference,
    through :func:`refimpl.nn.fit`.

    Parameters
    ----------
    student, teacher : Seq2Seq
        Same target vocabulary; the teacher runs without gradients and is not modified.
    train : Seq2SeqTask or tuple ``(src, src_len, tgt, tgt_len)``
    alpha : float in [0, 1]
    T : float > 0
    epochs, lr, batch_size, clip_norm, rng, progress : as :func:`refimpl.nn.fit`

    Returns
    -------
    History
    """
    from refimpl.nn.losses import cross_entropy
    from refimpl.nn.train import _s2s_arrays, fit

    _check_s2s(student, "student")
    _check_s2s(teacher, "teacher")
    if student.tgt_vocab != teacher.tgt_vocab:
        raise ValueError(f"student and teacher need the same target vocabulary, got "
                         f"{student.tgt_vocab} and {teacher.tgt_vocab}")
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    T = check_float(T, "T", 0.0, lo_open=True)
    try:
        src, sl, tgt, tl = _s2s_arrays(train, "train")
    except (ValueError, TypeError):
        raise TypeError("train must be a Seq2SeqTask or (src, src_len, tgt, tgt_len)") from None
    teacher.eval()
    state = {}

    def forward(model, s_, sl_, t_, tl_):
        t_ = np.asarray(t_)
        with no_grad():
            state["zt"] = teacher(s_, sl_, t_[:, :-1]).data
        valid = _targets_mask(t_, tl_)
        state["valid"] = valid
        state["y"] = np.where(valid, t_[:, 1:], -1)
        return model(s_, sl_, t_[:, :-1])

    def loss_fn(out, _y):
        nll = cross_entropy(out, state["y"], ignore_index=-1)
        if alpha == 0.0:
            return nll
        kd = word_kd_loss_t(out, state["zt"], state["valid"], T)
        return nll * (1.0 - alpha) + kd * alpha

    return fit(student, (src, sl, tgt, tl, np.zeros(len(src))), forward=forward,
               loss_fn=loss_fn, epochs=epochs, lr=lr, batch_size=batch_size,
               clip_norm=clip_norm, rng=rng, progress=progress)


def _as_rows(seqs, bos):
    """Token lists (each ending in <eos> or cut at max_len) -> (N, L) <bos> rows and lengths."""
    L = max(len(s) for s in seqs) + 1
    out = np.zeros((len(seqs), L), np.int64)
    lens = np.zeros(len(seqs), np.int64)
    for i, s in enumerate(seqs):
        out[i, 0] = bos
        out[i, 1:len(s) + 1] = s
        lens[i] = len(s) + 1
    return out, lens


@validate_scalars
def sequence_kd_targets(teacher, src, src_len, beam_size: int = 4, max_len: int = 30,
                        batch_size: int = 256):
    """Sequence-level KD's training targets: the teacher's best beam-search translation of
    each source (Survey §4.1; Kim & Rush 2016, Eq. 8, the mode approximated by beam search).

    Parameters
    ----------
    teacher : Seq2Seq
    src : int ndarray of shape (N, S); src_len : int ndarray of shape (N,)
    beam_size, max_len, batch_size : int >= 1

    Returns
    -------
    tgt : int64 ndarray of shape (N, L)
        ``<bos> ŷ_1 … <eos>`` rows padded with 0 (a hypothesis cut at ``max_len`` has no
        ``<eos>``).
    tgt_len : int64 ndarray of shape (N,)
        Lengths including ``<bos>`` (and ``<eos>``).
    """
    hyps = _beam_all(teacher, src, src_len, beam_size, max_len, batch_size)
    return _as_rows([h[0] for h in hyps], teacher.bos)


def _beam_all(teacher, src, src_len, beam_size, max_len, batch_size):
    _check_s2s(teacher, "teacher")
    src = check_array(src, "src", ndim=2, dtype_kind="iu")
    src_len = check_array(src_len, "src_len", ndim=1, dtype_kind="iu")
    if src_len.shape != (src.shape[0],):
        raise ValueError(f"src_len must have shape ({src.shape[0]},), got {src_len.shape}")
    K = check_int(beam_size, "beam_size", 1)
    max_len = check_int(max_len, "max_len", 1)
    bs = check_int(batch_size, "batch_size", 1)
    out = []
    for a in range(0, len(src), bs):
        toks, scores, lens = teacher.beam_search(src[a:a + bs], src_len[a:a + bs],
                                                 beam_size=K, max_len=max_len)
        for b in range(toks.shape[0]):
            out.append([list(toks[b, k, :lens[b, k]]) for k in range(K)
                        if np.isfinite(scores[b, k])])
    return out


@validate_scalars
def seq_inter_targets(teacher, src, src_len, tgt, tgt_len, beam_size: int = 4,
                      max_len: int = 30, batch_size: int = 256):
    """Seq-Inter's targets: of the teacher's ``K`` beam hypotheses, the one with the highest
    sentence BLEU against the reference (Survey §4.1; Kim & Rush 2016, §3.2, Eq. 9 — "the
    sequence on the beam closest to the gold", with sentence-level smoothed BLEU as ``sim``:
    Lin & Och's add-one on orders ≥ 2, :func:`refimpl.data.bleu` with ``smooth="add-k"``).
    Ties go to the higher-ranked hypothesis.

    Parameters
    ----------
    teacher : Seq2Seq
    src : int ndarray (N, S); src_len : int ndarray (N,)
    tgt : int ndarray (N, L); tgt_len : int ndarray (N,)
        The references, ``<bos> … <eos>`` rows.
    beam_size, max_len, batch_size : int >= 1

    Returns
    -------
    tgt : int64 ndarray (N, L'); tgt_len : int64 ndarray (N,); rank : int ndarray (N,)
        The chosen hypotheses in the task's layout and their rank on the beam (0 = best).
    """
    from refimpl.data import bleu

    src = check_array(src, "src", ndim=2, dtype_kind="iu")
    ref = check_array(tgt, "tgt", ndim=2, dtype_kind="iu")
    rl = check_array(tgt_len, "tgt_len", ndim=1, dtype_kind="iu")
    if ref.shape[0] != src.shape[0] or rl.shape != (ref.shape[0],):
        raise ValueError(f"tgt and tgt_len must have one row per source in src "
                         f"({src.shape[0]}), got {ref.shape} and {rl.shape}")
    hyps = _beam_all(teacher, src, src_len, beam_size, max_len, batch_size)
    eos = teacher.eos
    chosen, rank = [], np.zeros(len(hyps), np.int64)
    for i, hs in enumerate(hyps):
        r = [int(t) for t in ref[i, 1:rl[i]] if t != eos]
        scores = [bleu([[int(t) for t in h if t != eos]], [r], smooth="add-k") for h in hs]
        k = int(np.argmax(scores))  # first maximum: the higher-ranked hypothesis on ties
        chosen.append(hs[k])
        rank[i] = k
    rows, lens = _as_rows(chosen, teacher.bos)
    return rows, lens, rank
