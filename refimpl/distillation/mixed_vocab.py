"""Survey §4.4 — mixed-vocabulary training (Zhao, Gupta, Song & Zhou, "Extremely Small BERT
Models from Mixed-Vocabulary Training", EACL 2021, arXiv 1909.11687).

The student has its own, much smaller WordPiece vocabulary (learned on the same corpus,
:func:`refimpl.pretrained.wordpiece.learn_wordpiece`) and a smaller width ``d_s``, so neither
its input embeddings nor its MLM softmax line up with the teacher's. Two stages align them:

**Stage I (teacher).** The teacher is trained with masked-language modelling on a *mixed*
segmentation: each word of the input is split by the teacher's vocabulary or, with
probability ``p``, by the student's (:func:`mixed_segmentation`). The student's tokens get
rows of their own in the teacher — at the student's width ``d_s``, lifted into the teacher's
width ``D`` by a trainable projection ``U`` (:class:`MixedVocabEmbedding`) — and the teacher
predicts a masked student token with a softmax over the student vocabulary and a masked
teacher token with one over the teacher vocabulary (the survey: "a different softmax layer
depending on which vocabulary segmented the word"; :func:`mixed_vocab_mlm_loss_t`). Context
in one vocabulary predicts words in the other, so the student embeddings are learned aligned
with the teacher's.

**Stage II (student).** The student's embedding table is initialised from those ``d_s``-wide
student rows (:func:`mixed_vocab_student`) and trained on input segmented with the student
vocabulary only. Because the stage-I teacher reads student tokens too, it gets the *same*
student-segmented input, position for position, and (:func:`mixed_vocab_distillation_loss_t`):

* its softmax over the student vocabulary gives soft targets at the masked positions (KD with
  temperature T, :func:`~refimpl.distillation.kd_loss_t`), mixed with the hard MLM labels;
* its hidden states are matched layer by layer (uniform map ``g(m) = m·N/M``) through one
  projection ``d_s → D`` shared by all layers (after the "shared projections" of the paper's
  first version; the survey: "in addition to distilling only the final layer, layer-wise teacher
  parameters can be used to optimise the corresponding student layers").

Both output layers are tied to the embedding tables (:class:`refimpl.nn.MaskedLMHead`); for
the teacher the tied matrix is the joint table ``[E_t; E_s Uᵀ]`` of shape ``(V_t + V_s, D)``.

What is refimpl's choice rather than the paper's: the paper further trains a pretrained
BERT-LARGE with mixed vocabulary (a student vocabulary of about 5K WordPieces); here the teacher
is trained from scratch on the mixed segmentation at a tiny size. Stage I follows the survey's
description closely. Stage II is refimpl's reading: the survey names the student's MLM on its own
segmentation and a layer-wise transfer that may act on the teacher's *parameters*; refimpl matches
layer *outputs* (hidden states) through one shared projection and adds soft targets from the
teacher's student-vocabulary softmax, which the shared input makes possible. The weights ``α, β``,
``p`` and the layer map are ours; special tokens are always the teacher's in the teacher's input.

References
----------
.. [1] S. Zhao, R. Gupta, Y. Song, D. Zhou, "Extremely Small BERT Models from Mixed-Vocabulary
   Training", EACL 2021 (arXiv 1909.11687; v1 "Extreme Language Model Compression with Optimal
   Subwords and Shared Projections", 2019).
.. [2] J. Devlin et al., "BERT", NAACL 2019 (masked-language modelling, 80/10/10 masking).
"""

from __future__ import annotations

import numpy as np

from refimpl.distillation.architectures import kd_loss_t
from refimpl.distillation.bert_recipes import tinybert_layer_map
from refimpl.nn import functional as F
from refimpl.nn.heads import IGNORE_INDEX, MaskedLanguageModel, MaskedLMHead
from refimpl.nn.layers import Embedding, Linear, check_token_ids
from refimpl.nn.losses import cross_entropy
from refimpl.nn.module import Module
from refimpl.nn.tensor import Tensor, as_tensor, data_of, no_grad
from refimpl.nn.train import fit
from refimpl.pretrained.tokenizer import WordPieceTokenizer, basic_tokenize, normalize_bert
from refimpl.utils import as_rng, check_array, check_float, check_int, validate_scalars

__all__ = ["mixed_segmentation", "MixedVocabEmbedding", "mixed_vocab_teacher",
           "mixed_vocab_mlm_loss_t", "fit_mixed_vocab_teacher", "mixed_vocab_student",
           "mixed_vocab_distillation_loss_t", "fit_mixed_vocab_student", "mlm_accuracy"]


# ------------------------------------------------------------------ inputs
def _check_tok(tok, name: str) -> WordPieceTokenizer:
    if not isinstance(tok, WordPieceTokenizer):
        raise TypeError(f"{name} must be a refimpl.pretrained.WordPieceTokenizer, got "
                        f"{type(tok).__name__}")
    if "[MASK]" not in tok.vocab:
        raise ValueError(f"{name} must have a [MASK] token")
    return tok


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of str, got a single str (wrap it in a list)")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of str, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError("texts must not be empty")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
    return texts


def _pad(seqs: list[list[int]], flags: list[list[bool]]):
    n = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), n), np.int64)  # 0 = [PAD] of both vocabularies
    src = np.zeros((len(seqs), n), bool)
    for i, (s, f) in enumerate(zip(seqs, flags)):
        ids[i, :len(s)] = s
        src[i, :len(f)] = f
    return ids, src


@validate_scalars(p=(0.0, 1.0, "[]"), max_length=(3, None))
def mixed_segmentation(texts, teacher_tokenizer, student_tokenizer, *, p: float = 0.1,
                       max_length: int = 64, rng=None):
    """Mixed-vocabulary segmentation (Survey §4.4; Zhao et al., stage I): each word by the
    teacher's WordPiece vocabulary or, with probability ``p``, by the student's.

    Words come from BERT's normalisation and pre-tokenisation (the tokenizers'). One uniform
    draw ``u_j ~ U[0, 1)`` per word, in reading order over all texts (every word of a text is
    drawn for, also those cut by ``max_length``); word ``j`` is split by the student vocabulary
    iff ``u_j < p``. Student ids are offset by ``V_t`` (teacher vocabulary size) into the joint
    table ``[teacher | student]``. Each row is ``[CLS] pieces [SEP]`` with the teacher's special
    tokens, cut to ``max_length`` ids and right-padded with 0 (``[PAD]``).

    Parameters
    ----------
    texts : list of str
    teacher_tokenizer, student_tokenizer : WordPieceTokenizer
        Both with ``[PAD]`` = 0 (as :func:`refimpl.pretrained.wordpiece.learn_wordpiece` gives).
    p : float in [0, 1]
        ``p = 0``: the teacher segmentation; ``p = 1``: every word by the student vocabulary.
    max_length : int >= 3
    rng : Generator or int, optional

    Returns
    -------
    ids : int64 ndarray of shape (N, n)
        Joint ids in ``[0, V_t + V_s)``.
    from_student : bool ndarray of shape (N, n)
        True where the token is a student-vocabulary piece.
    """
    texts = _check_texts(texts)
    tt = _check_tok(teacher_tokenizer, "teacher_tokenizer")
    ts = _check_tok(student_tokenizer, "student_tokenizer")
    if tt.pad_id != 0 or ts.pad_id != 0:
        raise ValueError("teacher_tokenizer and student_tokenizer must have [PAD] = 0")
    rng = as_rng(rng)
    Vt = tt.vocab_size
    seqs, flags = [], []
    for text in texts:
        words = basic_tokenize(normalize_bert(text, lowercase=tt.lowercase))
        u = rng.random(len(words))  # (n_words,)
        ids, fl = [tt.cls_id], [False]
        for w, uj in zip(words, u):
            if uj < p:
                pieces = [Vt + i for i in ts.wordpiece(w)]
            else:
                pieces = list(tt.wordpiece(w))
            ids.extend(pieces)
            fl.extend([bool(uj < p)] * len(pieces))
        ids, fl = ids[:max_length - 1] + [tt.sep_id], fl[:max_length - 1] + [False]
        seqs.append(ids)
        flags.append(fl)
    return _pad(seqs, flags)


def _student_rows(texts, ts: WordPieceTokenizer, max_length: int):
    """The student segmentation of ``texts``: ``[CLS] pieces [SEP]`` student ids (N, n)."""
    ids, _ = ts.batch_encode(texts, max_length=max_length)
    return ids


def _corrupt(ids, candidates, lo, hi, mask_id, rng, mask_prob):
    """BERT's masking (Devlin et al. 2019, §3.1): each candidate position is chosen with
    probability ``mask_prob``; a chosen token becomes ``mask_id`` (80 %), a uniform random id
    of its own vocabulary ``[lo, hi)`` (scalars or per-position arrays) (10 %) or stays (10 %). Returns the corrupted ids and
    the labels (the original id at chosen positions, ``IGNORE_INDEX`` elsewhere). At least one
    position per row is chosen when the row has a candidate."""
    u = rng.random(ids.shape)
    chosen = candidates & (u < mask_prob)
    for i in np.flatnonzero(candidates.any(axis=1) & ~chosen.any(axis=1)):
        j = np.flatnonzero(candidates[i])
        chosen[i, j[rng.integers(len(j))]] = True
    r = rng.random(ids.shape)
    rand = lo + np.floor(rng.random(ids.shape) * (hi - lo)).astype(np.int64)
    out = ids.copy()
    out[chosen & (r < 0.8)] = mask_id
    sel = chosen & (r >= 0.8) & (r < 0.9)
    out[sel] = rand[sel]
    labels = np.where(chosen, ids, IGNORE_INDEX)
    return out, labels


# ------------------------------------------------------------------ stage I: the teacher
class MixedVocabEmbedding(Module):
    """The teacher's input table for two vocabularies (Survey §4.4; Zhao et al., stage I):
    teacher tokens ``E_t`` (V_t, D); student tokens ``E_s`` (V_s, d_s) lifted into the teacher's
    width by the trainable projection ``U`` (a bias-free ``d_s → D`` linear map). Joint id
    ``i < V_t`` reads ``E_t[i]``, ``i ≥ V_t`` reads ``U E_s[i − V_t]``.

    Parameters
    ----------
    n_teacher, n_student : int
        ``V_t``, ``V_s``.
    d_model, d_student : int
        ``D``, ``d_s``.
    rng : Generator or int, optional
        Tables N(0, 0.02²) (BERT's range), row 0 (``[PAD]``) zero and frozen in both.

    Attributes
    ----------
    teacher : Embedding (V_t, D)
    student : Embedding (V_s, d_s)
    projection : Linear (d_s -> D, no bias)
    """

    def __init__(self, n_teacher: int, n_student: int, d_model: int, d_student: int,
                 rng=None):
        rng = as_rng(rng)
        self.n_teacher = check_int(n_teacher, "n_teacher", 2)
        self.n_student = check_int(n_student, "n_student", 2)
        self.d_model = check_int(d_model, "d_model", 1)
        self.d_student = check_int(d_student, "d_student", 1)
        self.teacher = Embedding(n_teacher, d_model, padding_idx=0, rng=rng)
        self.student = Embedding(n_student, d_student, padding_idx=0, rng=rng)
        for e in (self.teacher, self.student):
            e.W.data *= 0.02
        self.projection = Linear(d_student, d_model, bias=False, rng=rng)

    @property
    def num_embeddings(self) -> int:
        return self.n_teacher + self.n_student

    def joint_table(self) -> Tensor:
        """``[E_t; E_s Uᵀ]`` of shape (V_t + V_s, D): the tied MLM output matrix."""
        return F.concat([self.teacher.W, self.projection(self.student.W)], axis=0)

    def forward(self, idx) -> Tensor:
        """Joint ids of any shape -> Tensor of shape ``idx.shape + (D,)``."""
        idx = check_token_ids(idx, self.num_embeddings)
        s = idx >= self.n_teacher  # student pieces
        et = self.teacher(np.where(s, 0, idx))  # (..., D)
        es = self.projection(self.student(np.where(s, idx - self.n_teacher, 0)))  # (..., D)
        return F.where(s[..., None], es, et)

    def __repr__(self) -> str:
        return (f"MixedVocabEmbedding(n_teacher={self.n_teacher}, n_student={self.n_student}, "
                f"d_model={self.d_model}, d_student={self.d_student})")


@validate_scalars
def mixed_vocab_teacher(*, n_teacher: int, n_student: int, d_model: int, d_student: int,
                        num_heads: int, d_ff: int, num_layers: int, max_position: int = 64,
                        dropout: float = 0.0, rng=None) -> MaskedLanguageModel:
    """A BERT teacher for mixed-vocabulary training (Survey §4.4; Zhao et al.): a
    :class:`~refimpl.nn.MaskedLanguageModel` over the joint vocabulary ``V_t + V_s`` whose word
    table is a :class:`MixedVocabEmbedding` (student rows at width ``d_student``, projected),
    with the MLM head tied to the joint table.

    Returns
    -------
    MaskedLanguageModel (``vocab_size = n_teacher + n_student``)
    """
    rng = as_rng(rng)
    m = MaskedLanguageModel(vocab_size=check_int(n_teacher, "n_teacher", 2)
                            + check_int(n_student, "n_student", 2), d_model=d_model,
                            num_heads=num_heads, d_ff=d_ff, num_layers=num_layers,
                            max_position=max_position, dropout=dropout, rng=rng)
    m.embeddings.word = MixedVocabEmbedding(n_teacher, n_student, d_model, d_student, rng=rng)
    return m


def _teacher_parts(teacher):
    if not (isinstance(teacher, MaskedLanguageModel)
            and isinstance(teacher.embeddings.word, MixedVocabEmbedding)):
        raise TypeError(f"teacher must be a MaskedLanguageModel from mixed_vocab_teacher, got "
                        f"{type(teacher).__name__}")
    return teacher.embeddings.word


def mixed_vocab_mlm_loss_t(states, head, embedding, labels, n_teacher: int) -> Tensor:
    """Mixed-vocabulary MLM loss (Survey §4.4; Zhao et al., stage I): a masked teacher token is
    predicted with the softmax over the teacher rows, a masked student token with the softmax
    over the student rows of the joint tied table ``E = [E_t; E_s Uᵀ]``:

    .. math::

        \\mathcal L = -\\frac1N \\sum_{i=1}^N \\log
        \\frac{\\exp(t_i\\cdot E_{y_i} + b_{y_i})}{\\sum_{j \\in \\mathcal V(y_i)}
        \\exp(t_i\\cdot E_j + b_j)},\\qquad t_i = \\mathrm{LN}(\\mathrm{gelu}(W h_i + c))

    with ``V(y) = [0, V_t)`` for a teacher label and ``[V_t, V_t + V_s)`` for a student label.

    Parameters
    ----------
    states : Tensor or ndarray of shape (N, D)
        Top-layer states at the N masked positions.
    head : MaskedLMHead (D, V_t + V_s)
    embedding : Tensor or ndarray of shape (V_t + V_s, D)
        The joint tied table.
    labels : int ndarray of shape (N,)
        Joint ids of the original tokens.
    n_teacher : int
        ``V_t``.

    Returns
    -------
    Tensor (scalar)
    """
    if not isinstance(head, MaskedLMHead):
        raise TypeError(f"head must be a MaskedLMHead, got {type(head).__name__}")
    h = check_array(data_of(states), "states", ndim=2)
    V = head.vocab_size
    Vt = check_int(n_teacher, "n_teacher", 1, V - 1)
    y = np.asarray(labels)
    if y.dtype.kind not in "iu" or y.shape != (h.shape[0],):
        raise ValueError(f"labels must be an integer array of shape ({h.shape[0]},), got "
                         f"{y.dtype} of shape {y.shape}")
    if y.size == 0 or y.min() < 0 or y.max() >= V:
        raise ValueError(f"labels must be non-empty ids in [0, {V})")
    check_array(data_of(embedding), "embedding", shape=(V, h.shape[1]))
    E = as_tensor(embedding)
    states = as_tensor(states)
    total = None
    for sel, lo, hi in ((y < Vt, 0, Vt), (y >= Vt, Vt, V)):
        if sel.any():
            logits = head(states[sel], E, rows=(lo, hi))  # (N_v, hi − lo)
            part = cross_entropy(logits, y[sel] - lo, reduction="sum")
            total = part if total is None else total + part
    return total * (1.0 / y.size)


def _first_plain(tok) -> int:
    """The first id after the special tokens (random replacements are drawn from the rest, so
    they are never [PAD] or [MASK])."""
    return 1 + max(tok.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
                   if t in tok.vocab)


def _valid_candidates(ids, specials):
    return (ids != 0) & ~np.isin(ids, np.asarray(sorted(specials)))


def _stage1_arrays(texts, tt, ts, p, max_length, mask_prob, dupe_factor, rng):
    """``dupe_factor`` copies of the corpus, each with its own mixed segmentation and masks
    (BERT's static masking with a duplication factor)."""
    Vt, Vs = tt.vocab_size, ts.vocab_size
    specials = {tt.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
                if t in tt.vocab} | {Vt + ts.unk_id}
    xs, ys = [], []
    for _ in range(dupe_factor):
        ids, src = mixed_segmentation(texts, tt, ts, p=p, max_length=max_length, rng=rng)
        # a teacher token is replaced at random by a teacher id, a student one by a student id
        lo = np.where(src, Vt + _first_plain(ts), _first_plain(tt))  # (N, n)
        hi = np.where(src, Vt + Vs, Vt)
        out, lab = _corrupt(ids, _valid_candidates(ids, specials), lo, hi, tt.vocab["[MASK]"],
                            rng, mask_prob)
        xs.append(out)
        ys.append(lab)
    n = max(x.shape[1] for x in xs)
    X = np.concatenate([np.pad(x, ((0, 0), (0, n - x.shape[1]))) for x in xs])
    Y = np.concatenate([np.pad(y, ((0, 0), (0, n - y.shape[1])), constant_values=IGNORE_INDEX)
                        for y in ys])
    keep = (Y != IGNORE_INDEX).any(axis=1)
    return X[keep], Y[keep]


@validate_scalars(p=(0.0, 1.0, "[]"), mask_prob=(0.0, 1.0, "(]"), lr=(0.0, None, "(]"),
                  max_length=(3, None), dupe_factor=(1, None), batch_size=(1, None))
def fit_mixed_vocab_teacher(teacher, texts, teacher_tokenizer, student_tokenizer, *,
                            p: float = 0.1, max_length: int = 64, mask_prob: float = 0.15,
                            dupe_factor: int = 2, epochs: int = 3, lr: float = 1e-3,
                            batch_size: int = 32, rng=None, progress=None):
    """Stage I of mixed-vocabulary training (Survey §4.4; Zhao et al.): masked-language
    modelling of the teacher on the mixed segmentation (:func:`mixed_segmentation`), each
    masked token predicted in its own vocabulary (:func:`mixed_vocab_mlm_loss_t`), through
    :func:`refimpl.nn.fit`. Trains the teacher, its student rows and the projection ``U`` in
    place.

    Parameters
    ----------
    teacher : MaskedLanguageModel from :func:`mixed_vocab_teacher`
    texts : list of str
    teacher_tokenizer, student_tokenizer : WordPieceTokenizer
    p : float in [0, 1]
        Probability that a word is split by the student vocabulary.
    max_length : int
    mask_prob : float in (0, 1]
        BERT's 15 %, with 80/10/10 ``[MASK]``/random/kept.
    dupe_factor : int
        Copies of the corpus, each with its own segmentation draw and masks.
    epochs, lr, batch_size, rng, progress : as :func:`refimpl.nn.fit`

    Returns
    -------
    History
    """
    emb = _teacher_parts(teacher)
    texts = _check_texts(texts)
    tt = _check_tok(teacher_tokenizer, "teacher_tokenizer")
    ts = _check_tok(student_tokenizer, "student_tokenizer")
    if (tt.vocab_size, ts.vocab_size) != (emb.n_teacher, emb.n_student):
        raise ValueError(f"the tokenizers have {tt.vocab_size} and {ts.vocab_size} tokens, the "
                         f"teacher's table {emb.n_teacher} and {emb.n_student}")
    epochs = check_int(epochs, "epochs", 0)
    rng = as_rng(rng)
    X, Y = _stage1_arrays(texts, tt, ts, p, max_length, mask_prob, dupe_factor, rng)
    Vt = emb.n_teacher

    def step(model, xb, yb):
        pos = yb != IGNORE_INDEX
        h = model.encode(xb)  # (B, n, D)
        return mixed_vocab_mlm_loss_t(h[pos], model.head, model.word_embeddings(), yb[pos], Vt)

    return fit(teacher, (X, Y, np.zeros(len(X))), forward=step, loss_fn=lambda out, _y: out,
               epochs=epochs, batch_size=batch_size, lr=lr, rng=rng, progress=progress,
               trim_batches=False)


# ------------------------------------------------------------------ stage II: the student
@validate_scalars
def mixed_vocab_student(teacher, *, num_heads: int, d_ff: int, num_layers: int,
                        init: str = "teacher", max_position: int | None = None,
                        dropout: float = 0.0, rng=None) -> MaskedLanguageModel:
    """The student of mixed-vocabulary training (Survey §4.4; Zhao et al., stage II): a
    :class:`~refimpl.nn.MaskedLanguageModel` over the student vocabulary ``V_s`` at the width
    ``d_s`` of the teacher's student rows, its (tied) word table initialised from them.

    Parameters
    ----------
    teacher : MaskedLanguageModel from :func:`mixed_vocab_teacher` (after stage I)
    num_heads, d_ff, num_layers : int
    init : {"teacher", "random"}
        ``"teacher"``: copy ``E_s`` (V_s, d_s) from the teacher; ``"random"``: BERT's
        N(0, 0.02²) (the baseline of the claim).
    max_position : int, optional
        Default the teacher's.
    dropout : float
    rng : Generator or int, optional

    Returns
    -------
    MaskedLanguageModel (vocab_size V_s, d_model d_s)
    """
    emb = _teacher_parts(teacher)
    if init not in ("teacher", "random"):
        raise ValueError(f"init must be 'teacher' or 'random', got {init!r}")
    mp = teacher.embeddings.max_position if max_position is None else \
        check_int(max_position, "max_position", 1)
    s = MaskedLanguageModel(vocab_size=emb.n_student, d_model=emb.d_student,
                            num_heads=num_heads, d_ff=d_ff, num_layers=num_layers,
                            max_position=mp, dropout=dropout, rng=rng)
    if init == "teacher":
        s.embeddings.word.W.data[...] = emb.student.W.data  # (V_s, d_s)
    return s


def mixed_vocab_distillation_loss_t(student_logits, teacher_logits, labels, student_states,
                                    teacher_states, projection, valid, *, alpha: float = 0.5,
                                    beta: float = 1.0, T: float = 1.0) -> Tensor:
    """Stage-II objective of mixed-vocabulary training (Survey §4.4; Zhao et al.):

    .. math::

        \\mathcal L = (1-\\alpha)\\,\\mathrm{CE}(z^S, y) + \\alpha\\,T^2\\,
        \\mathrm{KL}\\bigl(\\mathrm{softmax}(z^T/T)\\,\\|\\,\\mathrm{softmax}(z^S/T)\\bigr)
        + \\frac{\\beta}{M} \\sum_{m=1}^{M} \\frac{1}{|\\mathcal V|\\,D}
        \\sum_{(b,t) \\in \\mathcal V} \\bigl\\| U' h^S_{m,b,t} - h^T_{g(m),b,t} \\bigr\\|^2

    ``z`` are the MLM logits over the *student* vocabulary at the masked positions (the
    teacher's from its student-vocabulary softmax), ``y`` the masked student ids, ``U'`` one
    projection ``d_s → D`` shared by all layers, ``V`` the real tokens.

    Parameters
    ----------
    student_logits : Tensor of shape (N, V_s)
    teacher_logits : ndarray or Tensor of shape (N, V_s)
        Constant targets.
    labels : int ndarray of shape (N,)
    student_states : sequence of Tensor of shape (B, n, d_s)
        The M student layers to match (already mapped).
    teacher_states : sequence of ndarray or Tensor of shape (B, n, D)
        The teacher layers ``g(m)``, constant.
    projection : Linear (d_s -> D)
    valid : bool ndarray of shape (B, n)
    alpha : float in [0, 1]
        Weight of the soft term (``kd_loss_t``'s convention).
    beta : float >= 0
        Weight of the layer-wise term.
    T : float > 0

    Returns
    -------
    Tensor (scalar)
    """
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    beta = check_float(beta, "beta", 0.0)
    T = check_float(T, "T", 0.0, lo_open=True)
    if not isinstance(projection, Linear):
        raise TypeError(f"projection must be a refimpl.nn.Linear, got {type(projection).__name__}")
    if labels is None:
        raise TypeError("labels (the masked student ids) must be given, got None")
    loss = kd_loss_t(student_logits, data_of(teacher_logits), T=T, labels=labels, alpha=alpha)
    for nm, v in (("student_states", student_states), ("teacher_states", teacher_states)):
        if not isinstance(v, (list, tuple)):
            raise TypeError(f"{nm} must be a list of (B, n, d) arrays, one per matched layer, "
                            f"got {type(v).__name__}")
    hs, ht = list(student_states), list(teacher_states)
    if not hs or len(hs) != len(ht):
        raise ValueError(f"student_states and teacher_states must be non-empty and of equal "
                         f"length, got {len(hs)} and {len(ht)}")
    valid = np.asarray(valid)
    if valid.dtype != bool or valid.ndim != 2 or not valid.any():
        raise ValueError("valid must be a bool mask of shape (B, n) with a True entry")
    if beta == 0.0:
        return loss
    m = valid[:, :, None].astype(np.float64)  # (B, n, 1)
    layer = None
    for a, b in zip(hs, ht):
        check_array(data_of(a), "student_states", ndim=3)
        a = as_tensor(a)
        b = check_array(data_of(b), "teacher_states", ndim=3)
        if a.shape[:2] != valid.shape or b.shape[:2] != valid.shape:
            raise ValueError(f"student_states and teacher_states must have (B, n) = "
                             f"{valid.shape}, got {a.shape[:2]} and {b.shape[:2]}")
        d = (projection(a) - Tensor(b)) * m  # (B, n, D)
        term = (d * d).sum() * (1.0 / (valid.sum() * b.shape[-1]))
        layer = term if layer is None else layer + term
    return loss + layer * (beta / len(hs))


def _to_teacher_ids(ids, ts: WordPieceTokenizer, tt: WordPieceTokenizer, Vt: int):
    """Student ids -> joint ids for the teacher: pieces offset by V_t, special tokens mapped to
    the teacher's."""
    out = ids + Vt
    for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"):
        out[ids == ts.vocab[t]] = tt.vocab[t]
    return out


@validate_scalars(mask_prob=(0.0, 1.0, "(]"), lr=(0.0, None, "(]"), max_length=(3, None),
                  dupe_factor=(1, None), batch_size=(1, None))
def fit_mixed_vocab_student(student, teacher, texts, teacher_tokenizer, student_tokenizer, *,
                            projection=None, alpha: float = 0.5, beta: float = 1.0,
                            T: float = 1.0, max_length: int = 64, mask_prob: float = 0.15,
                            dupe_factor: int = 2, epochs: int = 3, lr: float = 1e-3,
                            batch_size: int = 32, rng=None, progress=None):
    """Stage II of mixed-vocabulary training (Survey §4.4; Zhao et al.): the student reads the
    student segmentation (BERT masking, ``dupe_factor`` static copies); the frozen stage-I
    teacher reads the same ids (offset into its joint table) and gives, per step,
    :func:`mixed_vocab_distillation_loss_t`'s soft targets over the student vocabulary and its
    hidden states at the uniformly mapped layers. Trains the student and ``projection`` through
    :func:`refimpl.nn.fit`.

    Parameters
    ----------
    student : MaskedLanguageModel over the student vocabulary (:func:`mixed_vocab_student`)
    teacher : MaskedLanguageModel from :func:`mixed_vocab_teacher`
    texts : list of str
    teacher_tokenizer, student_tokenizer : WordPieceTokenizer
    projection : Linear (d_s -> D), optional
        Created (no bias) when None.
    alpha, beta, T : see :func:`mixed_vocab_distillation_loss_t`
    max_length, mask_prob, dupe_factor : as :func:`fit_mixed_vocab_teacher`
    epochs, lr, batch_size, rng, progress : as :func:`refimpl.nn.fit`

    Returns
    -------
    projection : Linear
    history : History
    """
    emb = _teacher_parts(teacher)
    if not isinstance(student, MaskedLanguageModel):
        raise TypeError(f"student must be a MaskedLanguageModel, got {type(student).__name__}")
    texts = _check_texts(texts)
    tt = _check_tok(teacher_tokenizer, "teacher_tokenizer")
    ts = _check_tok(student_tokenizer, "student_tokenizer")
    if ts.vocab_size != student.vocab_size or ts.vocab_size != emb.n_student or \
            tt.vocab_size != emb.n_teacher:
        raise ValueError("student_tokenizer must match the student's and the teacher's student "
                         "vocabulary, teacher_tokenizer the teacher's")
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    beta = check_float(beta, "beta", 0.0)
    T = check_float(T, "T", 0.0, lo_open=True)
    epochs = check_int(epochs, "epochs", 0)
    rng = as_rng(rng)
    d_s, D = student.d_model, teacher.d_model
    if projection is None:
        projection = Linear(d_s, D, bias=False, rng=rng)
    elif not isinstance(projection, Linear) or (projection.in_features,
                                                projection.out_features) != (d_s, D):
        raise TypeError(f"projection must be a refimpl.nn.Linear ({d_s} -> {D})")
    layer_map = tinybert_layer_map(teacher.num_layers, student.num_layers)
    Vt, Vs = emb.n_teacher, emb.n_student
    specials = {ts.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
                if t in ts.vocab}
    base = _student_rows(texts, ts, max_length)
    xs, ys = [], []
    for _ in range(dupe_factor):
        x, y = _corrupt(base, _valid_candidates(base, specials), _first_plain(ts), Vs,
                        ts.vocab["[MASK]"], rng, mask_prob)
        xs.append(x)
        ys.append(y)
    X, Y = np.concatenate(xs), np.concatenate(ys)
    keep = (Y != IGNORE_INDEX).any(axis=1)
    X, Y = X[keep], Y[keep]
    was = teacher.training
    teacher.eval()

    class _Both(Module):  # the student and the projection, trained together
        def __init__(self):
            self.student, self.projection = student, projection

    both = _Both()

    def step(model, xb, yb):
        pos = yb != IGNORE_INDEX
        valid = xb != 0
        with no_grad():
            to = teacher.encode(_to_teacher_ids(xb, ts, tt, Vt), valid,
                                output_hidden_states=True)
            zt = teacher.head(to.last_hidden_state.data[pos], teacher.word_embeddings().data,
                              rows=(Vt, Vt + Vs)).data  # (N, V_s)
        so = student.encode(xb, valid, output_hidden_states=True)
        zs = student.head(so.last_hidden_state[pos], student.word_embeddings())  # (N, V_s)
        hs = [so.hidden_states[m] for m in range(1, student.num_layers + 1)]
        ht = [to.hidden_states[n].data for n in layer_map]
        return mixed_vocab_distillation_loss_t(zs, zt, yb[pos], hs, ht, projection, valid,
                                               alpha=alpha, beta=beta, T=T)

    try:
        hist = fit(both, (X, Y, np.zeros(len(X))), forward=step, loss_fn=lambda out, _y: out,
                   epochs=epochs, batch_size=batch_size, lr=lr, rng=rng, progress=progress,
                   trim_batches=False)
    finally:
        teacher.train(was)
    return projection, hist


@validate_scalars(max_length=(3, None), mask_prob=(0.0, 1.0, "(]"))
def mlm_accuracy(model, texts, tokenizer, *, max_length: int = 64, mask_prob: float = 0.15,
                 rng=0) -> dict:
    """Masked-token accuracy and perplexity of a masked language model on ``texts``, scored
    on BERT masks drawn with a fixed ``rng`` (two models get the same masks).

    Parameters
    ----------
    model : MaskedLanguageModel
        Over ``tokenizer``'s vocabulary.
    texts : list of str
    tokenizer : WordPieceTokenizer
    max_length : int
    mask_prob : float in (0, 1]
    rng : Generator or int

    Returns
    -------
    dict
        ``accuracy`` (top-1 at the masked positions), ``perplexity`` (exp of their mean NLL),
        ``n_masked``.
    """
    if not isinstance(model, MaskedLanguageModel):
        raise TypeError(f"model must be a MaskedLanguageModel, got {type(model).__name__}")
    texts = _check_texts(texts)
    tok = _check_tok(tokenizer, "tokenizer")
    if tok.vocab_size != model.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} tokens, the model {model.vocab_size}")
    base = _student_rows(texts, tok, max_length)
    specials = {tok.vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
                if t in tok.vocab}
    x, y = _corrupt(base, _valid_candidates(base, specials), _first_plain(tok), tok.vocab_size,
                    tok.vocab["[MASK]"], as_rng(rng), mask_prob)
    pos = y != IGNORE_INDEX
    was = model.training
    model.eval()
    try:
        with no_grad():
            h = model.encode(x, x != 0)
            z = model.head(h.data[pos], model.word_embeddings().data).data  # (N, V)
    finally:
        model.train(was)
    target = y[pos]
    zmax = z.max(axis=1, keepdims=True)
    logp = z - zmax - np.log(np.exp(z - zmax).sum(axis=1, keepdims=True))  # (N, V)
    nll = -logp[np.arange(len(target)), target]
    return {"accuracy": float((z.argmax(axis=1) == target).mean()),
            "perplexity": float(np.exp(nll.mean())), "n_masked": int(pos.sum())}
