"""Survey §4.4 — training recipes for distilled Transformer students, on
:class:`refimpl.nn.TransformerClassifier` (its ``output_hidden_states`` / ``output_attentions``
give every layer's hidden states and attention intermediates as tape Tensors).

=================================  =============================================================
:func:`tinybert_layer_map`         TinyBERT's uniform layer mapping ``g(m) = m·N/M``
:class:`TinyBertProjections`       the learned ``W_e`` and ``W_h`` (student width → teacher's)
:func:`tinybert_losses_t`          TinyBERT (Jiao et al. 2020): embedding, hidden-state,
                                   attention-score and prediction-layer losses
:func:`fit_tinybert`               TinyBERT's two steps: intermediate layers, then prediction
:func:`distilbert_loss_t`          DistilBERT (Sanh et al. 2019): soft CE (T²), hard CE, cosine
                                   between hidden states
:func:`init_from_teacher_layers_`  a student initialised from chosen teacher layers (DistilBERT:
                                   every other layer; PKD: the first k)
:func:`fit_distilbert`             DistilBERT's training with the triple loss
:func:`pkd_objective_t`            Patient KD (Sun et al. 2019): (1−α) CE + α soft + β PT loss
:func:`fit_pkd`                    PKD-Skip / PKD-Last training on the [CLS] states
:func:`fit_with_teacher`           one :func:`refimpl.nn.fit` loop for all of the above (the
                                   teacher runs without gradients on each batch)
:class:`TheseusClassifier`         BERT-of-Theseus (Xu et al. 2020): predecessor modules replaced
                                   by successor layers with a Bernoulli draw per module (a
                                   classifier or a causal LM predecessor)
:class:`TheseusScheduler`          the linear replacement schedule as a :class:`refimpl.nn.Callback`
:func:`multitask_distillation_loss_t`  Liu et al. 2019: per task ½ (hard CE + soft CE)
:func:`bert_emd_losses_t`          BERT-EMD (Li et al. 2020): many-to-many hidden/attention
:func:`bert_emd_update_weights`    losses by earth mover's distance, the cost-driven layer-weight
:func:`fit_bert_emd`               update, and its training
:func:`squeezebert_student_`       SqueezeBERT (Iandola et al. 2020): grouped Q/K/V and FFN
:func:`mobilebert_transfer_losses_t`  MobileBERT (Sun et al. 2020): feature-map and attention
:func:`fit_mobilebert_progressive`    transfer, progressive layer-wise
:func:`mobilebert_student_`        MobileBERT's bottleneck student (narrow blocks, wide boundaries;
                                   stacked FFNs and NoNorm as options)
=================================  =============================================================

Teachers and students are :class:`refimpl.nn.TransformerClassifier`; a student may have fewer
layers and (TinyBERT) a smaller ``d_model`` but, for the attention losses, the same number of
heads. TinyBERT (:func:`tinybert_losses_t`, :func:`fit_tinybert`, :func:`fit_with_teacher`) and
BERT-of-Theseus (:class:`TheseusClassifier`) also take causal
:class:`refimpl.nn.TransformerLanguageModel` pairs: both read ``X[:, :-1]`` of ``<bos> … <eos>``
rows, the layer losses compare every real position (attention scores of future keys are 0, as
masked keys are), and the prediction layer is distilled per token over the vocabulary.
"""

from __future__ import annotations

import copy

import numpy as np

from refimpl.distillation.architectures import check_train_arrays, kd_loss_t
from refimpl.distillation.transformers import pkd_loss_t, theseus_replace_rate
from refimpl.nn import functional as F
from refimpl.nn.layers import Linear
from refimpl.nn.losses import mse
from refimpl.nn.models import TransformerLanguageModel
from refimpl.nn.module import Module, ModuleList
from refimpl.nn.recurrent import length_mask
from refimpl.nn.tensor import Tensor, as_tensor, data_of, no_grad
from refimpl.nn.train import Callback, fit
from refimpl.utils import (as_rng, check_array, check_choice, check_float, check_int,
                           validate_scalars)

_FIT_BOUNDS = dict(lr=(0.0, None, "(]"), batch_size=(1, None))

__all__ = ["tinybert_layer_map", "TinyBertProjections", "tinybert_losses_t", "fit_tinybert",
           "distilbert_loss_t", "init_from_teacher_layers_", "pkd_objective_t",
           "fit_with_teacher", "fit_distilbert", "fit_pkd", "TheseusClassifier",
           "TheseusScheduler", "multitask_distillation_loss_t", "bert_emd_update_weights",
           "bert_emd_losses_t", "fit_bert_emd", "squeezebert_student_",
           "mobilebert_transfer_losses_t", "fit_mobilebert_progressive", "mobilebert_student_"]


def _check_tf(model, name, lm: bool = False):
    if lm and isinstance(model, TransformerLanguageModel):
        return model
    if not (hasattr(model, "layers") and hasattr(model, "encode") and hasattr(model, "fc")):
        raise TypeError(f"{name} must be a refimpl.nn.TransformerClassifier"
                        f"{' or TransformerLanguageModel' if lm else ''}, got "
                        f"{type(model).__name__}")
    return model


def valid_positions(model, X, lengths) -> np.ndarray:
    """The (B, n) real-position mask ``model.encode`` uses for input ``X`` (the [CLS] slot
    included; a language model has none)."""
    X = np.asarray(X)
    valid = length_mask(np.asarray(lengths), X.shape[1])
    if getattr(model, "pooling", None) == "cls":
        valid = np.concatenate([np.ones((len(X), 1), bool), valid], axis=1)
    return valid


def _forward_pair(student, teacher, X, lengths, need_intermediates: bool = True):
    """One batch through the frozen teacher (no gradients) and the student, as every recipe
    here reads it: ``(student_out, teacher_out, valid)``. Classifiers read ``X``; causal
    language models read ``X[:, :-1]`` of the ``<bos> … <eos>`` rows (each position predicts
    the next token). ``valid``: the (B, n) real positions of what the models read."""
    flags = dict(output_hidden_states=need_intermediates, output_attentions=need_intermediates)
    if isinstance(teacher, TransformerLanguageModel):
        X, lengths = np.asarray(X)[:, :-1], np.asarray(lengths) - 1  # (B, T-1) inputs
    with no_grad():
        t = teacher(X, lengths, **flags)
    s = student(X, lengths, **flags)
    return s, t, valid_positions(student, X, lengths)


# ------------------------------------------------------------------ TinyBERT
@validate_scalars
def tinybert_layer_map(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """TinyBERT's uniform mapping ``n = g(m) = m · N / M`` from student layer ``m = 1..M`` to
    teacher layer ``n`` (Survey §4.4; Jiao et al. 2020, §3.1 and §4.2: 12 → 4 gives 3, 6, 9,
    12). ``g(0) = 0`` (embeddings) and the prediction layer ``M+1 → N+1`` are implicit.

    Parameters
    ----------
    num_teacher_layers : int N
    num_student_layers : int M, 1 <= M <= N, dividing N

    Returns
    -------
    list of int (length M), 1-based teacher layers
    """
    N = check_int(num_teacher_layers, "num_teacher_layers", 1)
    M = check_int(num_student_layers, "num_student_layers", 1, N)
    if N % M:
        raise ValueError(f"the uniform mapping needs num_student_layers to divide "
                         f"num_teacher_layers, got {M} and {N}")
    return [m * N // M for m in range(1, M + 1)]


class TinyBertProjections(Module):
    """TinyBERT's learned projections of the student's embeddings (``W_e``) and hidden states
    (``W_h``, one matrix shared by all layers, as in the paper's Eq. 9) into the teacher's
    width (Jiao et al. 2020, Eqs. 9–10). Discarded after distillation.

    Parameters
    ----------
    d_student, d_teacher : int
    rng : Generator or int, optional

    Attributes
    ----------
    W_e, W_h : Linear (d_student -> d_teacher)
    """

    def __init__(self, d_student: int, d_teacher: int, rng=None):
        rng = as_rng(rng)
        self.d_student = check_int(d_student, "d_student", 1)
        self.d_teacher = check_int(d_teacher, "d_teacher", 1)
        self.W_e = Linear(d_student, d_teacher, rng=rng)
        self.W_h = Linear(d_student, d_teacher, rng=rng)

    def forward(self, h, which: str = "hidden") -> Tensor:
        """Project (B, n, d_student) → (B, n, d_teacher) with ``W_e`` or ``W_h``."""
        which = check_choice(which, "which", ("embedding", "hidden"))
        return (self.W_e if which == "embedding" else self.W_h)(h)


def _scores(att, valid, causal: bool = False):
    """Attention scores ``q kᵀ / √d_head`` (B, H, n, n), 0 at padded keys (TinyBERT's code
    replaces the −10000 of masked keys by 0 before the MSE) and, ``causal``, at future keys
    (key > query: masked the same way in a causal model)."""
    q, k = att.query, att.key
    d = q.shape[-1]
    n = q.shape[-2]
    s = F.matmul(q, F.transpose(k, (0, 1, 3, 2))) * (1.0 / np.sqrt(d))  # (B, H, n, n)
    keep = valid[:, None, None, :]  # (B, 1, 1, n): real keys
    if causal:
        keep = keep & np.tril(np.ones((n, n), bool))[None, None]  # (B, 1, n, n): keys <= query
    keep = np.broadcast_to(keep, s.shape).astype(s.dtype)
    return F.mask(s, keep)


def tinybert_losses_t(student_out, teacher_out, student_logits, teacher_logits, projections,
                      layer_map, valid, T: float = 1.0, causal: bool = False) -> dict:
    """TinyBERT's four distillation losses (Survey §4.4; Jiao et al. 2020, Eqs. 7–12).

    .. math::

        \\mathcal L_{emb} = \\mathrm{MSE}(E^S W_e, E^T),\\quad
        \\mathcal L_{hidn} = \\sum_{m=1}^M \\mathrm{MSE}(H^S_m W_h, H^T_{g(m)}),\\\\
        \\mathcal L_{attn} = \\sum_{m=1}^M \\frac1h\\sum_{i=1}^h \\mathrm{MSE}(A^S_{m,i},
        A^T_{g(m),i}),\\quad
        \\mathcal L_{pred} = \\mathrm{CE}\\big(\\mathrm{softmax}(z^T/T),
        \\mathrm{softmax}(z^S/T)\\big)

    ``A`` are the attention *scores* ``q kᵀ/√d`` before the softmax (the paper's "attention
    matrix"; its released code compares the unnormalised scores with masked keys set to 0,
    which refimpl follows — MiniLM's :func:`attention_kl_t` compares the probabilities
    instead). MSEs are means over all elements (PyTorch ``mse_loss``), padded positions
    included as in the released code (their states are computed and compared too).

    A causal language model (``causal=True``, logits of shape (B, n, V): the next-token
    distribution at every position): the embedding, hidden-state and attention losses are the
    same per position, with future keys' scores set to 0 like padded keys'; the
    prediction-layer loss is the soft cross-entropy per token over the vocabulary, averaged
    over the ``N_v`` real positions,

    .. math::

        \\mathcal L_{pred} = -\\frac{1}{N_v} \\sum_{(b,t)\\ \\mathrm{real}} \\sum_{v=1}^{V}
        \\mathrm{softmax}(z^T_{bt}/T)_v \\log \\mathrm{softmax}(z^S_{bt}/T)_v

    Parameters
    ----------
    student_out, teacher_out : EncoderOutput
        With ``hidden_states`` (``hidden_states[0]`` is the embedding output) and
        ``attentions``.
    student_logits : Tensor of shape (B, C), or (B, n, V) per position (a language model)
    teacher_logits : ndarray or Tensor of the same shape
    projections : TinyBertProjections
    layer_map : sequence of int
        ``g(m)`` for ``m = 1..M`` (1-based teacher layers, :func:`tinybert_layer_map`).
    valid : bool ndarray of shape (B, n)
        Real positions (padded keys get score 0).
    T : float > 0
        Temperature of the prediction loss (the paper: 1).
    causal : bool
        The models are causal language models: future keys' scores are 0.

    Returns
    -------
    dict of scalar Tensors: ``"embedding"``, ``"hidden"``, ``"attention"``, ``"prediction"``

    References
    ----------
    .. [1] X. Jiao, Y. Yin, L. Shang, X. Jiang, X. Chen, L. Li, F. Wang, Q. Liu, "TinyBERT:
       Distilling BERT for Natural Language Understanding", Findings of EMNLP 2020.
    """
    T = check_float(T, "T", 0.0, lo_open=True)
    for name, o in (("student_out", student_out), ("teacher_out", teacher_out)):
        if not hasattr(o, "hidden_states") or not hasattr(o, "attentions"):
            raise TypeError(f"{name} must be a refimpl.nn.EncoderOutput, got {type(o).__name__}")
    zs_arr = check_array(data_of(student_logits), "student_logits", ndim=(2, 3))
    zt_arr = check_array(data_of(teacher_logits), "teacher_logits", ndim=(2, 3))
    if zt_arr.shape != zs_arr.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits "
                         f"{zs_arr.shape}, got {zt_arr.shape}")
    if not callable(projections):
        raise TypeError(f"projections must be callable, got {type(projections).__name__}")
    if not isinstance(layer_map, (list, tuple, range)):
        raise TypeError(f"layer_map must be a sequence of teacher layers, got "
                        f"{type(layer_map).__name__}")
    hs, ht = student_out.hidden_states, teacher_out.hidden_states
    As, At = student_out.attentions, teacher_out.attentions
    if hs is None or ht is None or As is None or At is None:
        raise ValueError("student_out and teacher_out need hidden_states and attentions "
                         "(output_hidden_states=True, output_attentions=True)")
    gm = [int(g) for g in layer_map]
    if len(gm) != len(As) or min(gm) < 1 or max(gm) > len(At):
        raise ValueError(f"layer_map must give one teacher layer in [1, {len(At)}] per student "
                         f"layer ({len(As)}), got {gm}")
    valid = np.asarray(valid)
    if valid.dtype != bool or valid.shape != tuple(hs[0].shape[:2]):
        raise ValueError(f"valid must be a bool mask of shape {tuple(hs[0].shape[:2])}, got "
                         f"{valid.dtype} {valid.shape}")
    if zs_arr.ndim == 3 and zs_arr.shape[:2] != valid.shape:
        raise ValueError(f"per-position student_logits must have shape {valid.shape} + (V,), "
                         f"got {zs_arr.shape}")
    emb = mse(projections(hs[0], "embedding"), data_of(ht[0]))
    hid = att = None
    for m, g in enumerate(gm, start=1):
        h_term = mse(projections(hs[m], "hidden"), data_of(ht[g]))
        ss, st = _scores(As[m - 1], valid, causal), _scores(At[g - 1], valid, causal)
        if ss.shape != st.shape:
            raise ValueError(f"student layer {m} and teacher layer {g} have attention maps of "
                             f"shapes {ss.shape} and {st.shape} (TinyBERT needs the same "
                             f"number of heads)")
        a_term = mse(ss, st.data)  # mean over (B, H, n, n) = (1/h) Σ_i MSE per head
        hid = h_term if hid is None else hid + h_term
        att = a_term if att is None else att + a_term
    pred = _soft_ce(student_logits, teacher_logits, T, valid if zs_arr.ndim == 3 else None)
    return {"embedding": emb, "hidden": hid, "attention": att, "prediction": pred}


@validate_scalars(**_FIT_BOUNDS)
def fit_with_teacher(student, teacher, train_arrays, loss, *, extra_modules=(),
                     need_intermediates: bool = True, epochs: int = 2, lr: float = 1e-3,
                     batch_size: int = 32, rng=None, progress=None, callbacks=None,
                     student_forward=None):
    """Train ``student`` (and ``extra_modules``, e.g. :class:`TinyBertProjections`) with a
    loss that sees the teacher's outputs on the same batch, through :func:`refimpl.nn.fit`.

    Parameters
    ----------
    student, teacher : TransformerClassifier, or both TransformerLanguageModel
        The teacher runs in eval mode without gradients and is not modified. Causal language
        models read ``X[:, :-1]`` of ``<bos> … <eos>`` rows (``y`` is then ignored) and give
        per-position logits (B, T-1, V).
    train_arrays : tuple ``(X, lengths, y)``
    loss : callable
        ``loss(s_logits, s_out, t_logits, t_out, valid, y) -> scalar Tensor`` where ``*_out``
        are :class:`refimpl.nn.EncoderOutput` (None when ``need_intermediates`` is False) and
        ``valid`` the (B, n) real-position mask.
    extra_modules : sequence of Module
        Trained together with the student.
    epochs, lr, batch_size, rng, progress, callbacks : as :func:`refimpl.nn.fit`
    student_forward : callable, optional
        ``student_forward(student, X, lengths)`` -> what the loss receives for the student
        (``(logits, states)`` when ``need_intermediates``), for a student that is not a
        TransformerClassifier (XtremeDistil's BiLSTM: :func:`bilstm_token_states`); ``valid``
        is then the (B, T) length mask.

    Returns
    -------
    History
    """
    if student_forward is None:
        _check_tf(student, "student", lm=True)
    elif not callable(student_forward):
        raise TypeError(f"student_forward must be callable, got {type(student_forward).__name__}")
    _check_tf(teacher, "teacher", lm=True)
    if (isinstance(student, TransformerLanguageModel) != isinstance(
            teacher, TransformerLanguageModel)) and student_forward is None:
        raise TypeError(f"student and teacher must both be classifiers or both causal language "
                        f"models, got {type(student).__name__} and {type(teacher).__name__}")
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}")
    train_arrays = check_train_arrays(train_arrays)
    if not isinstance(extra_modules, (list, tuple)) or not all(
            hasattr(m, "named_parameters") for m in extra_modules):
        raise TypeError("extra_modules must be a list of refimpl.nn Modules")
    extra = list(extra_modules)
    teacher.eval()
    flags = dict(output_hidden_states=need_intermediates, output_attentions=need_intermediates)
    state = {}

    def forward(model, X, lengths):
        if student_forward is None:
            s, t, state["valid"] = _forward_pair(model[0], teacher, X, lengths,
                                                 need_intermediates)
        else:
            with no_grad():
                t = teacher(X, lengths, **flags)
            s = student_forward(model[0], X, lengths)
            state["valid"] = length_mask(np.asarray(lengths), np.asarray(X).shape[1])
        state["t"] = t
        return s

    def loss_fn(out, y):
        t = state["t"]
        s_logits, s_out = out if need_intermediates else (out, None)
        t_logits, t_out = t if need_intermediates else (t, None)
        return loss(s_logits, s_out, t_logits.data, t_out, state["valid"], y)

    return fit(ModuleList([student] + extra), train_arrays, forward=forward, loss_fn=loss_fn,
               epochs=epochs, lr=lr, batch_size=batch_size, rng=rng, progress=progress,
               callbacks=callbacks)


@validate_scalars(**_FIT_BOUNDS)
def fit_tinybert(student, teacher, train_arrays, *, projections=None, epochs_intermediate: int = 2,
                 epochs_prediction: int = 2, T: float = 1.0, lr: float = 1e-3,
                 batch_size: int = 32, rng=None, progress=None):
    """TinyBERT's task-specific distillation in its two steps (Survey §4.4; Jiao et al. 2020,
    §3.3): first the intermediate layers (``L_emb + L_hidn + L_attn`` through the learned
    projections), then the prediction layer (``L_pred``), with the uniform layer map
    :func:`tinybert_layer_map`. (General distillation on a corpus and data augmentation are
    the same losses on other data.)

    Parameters
    ----------
    student, teacher : TransformerClassifier, or both causal TransformerLanguageModel
        The same number of heads; the student's layer count divides the teacher's. Language
        models are distilled per position (``causal=True`` in :func:`tinybert_losses_t`).
    train_arrays : tuple ``(X, lengths, y)``
        Language models: ``<bos> … <eos>`` rows; ``y`` is ignored.
    projections : TinyBertProjections, optional
        Created (student width → teacher width) when None.
    epochs_intermediate, epochs_prediction : int >= 0
    T : float > 0
    lr, batch_size, rng, progress : as :func:`refimpl.nn.fit`

    Returns
    -------
    (History, History)
    """
    _check_tf(student, "student", lm=True)
    _check_tf(teacher, "teacher", lm=True)
    causal = isinstance(teacher, TransformerLanguageModel)
    e1 = check_int(epochs_intermediate, "epochs_intermediate", 0)
    e2 = check_int(epochs_prediction, "epochs_prediction", 0)
    T = check_float(T, "T", 0.0, lo_open=True)
    rng = as_rng(rng)
    gm = tinybert_layer_map(teacher.num_layers, student.num_layers)
    proj = projections or TinyBertProjections(student.d_model, teacher.d_model, rng=rng)

    def inter(sz, so, tz, to, valid, y):
        L = tinybert_losses_t(so, to, sz, tz, proj, gm, valid, T, causal)
        return L["embedding"] + L["hidden"] + L["attention"]

    def pred(sz, so, tz, to, valid, y):
        return tinybert_losses_t(so, to, sz, tz, proj, gm, valid, T, causal)["prediction"]

    h1 = fit_with_teacher(student, teacher, train_arrays, inter, extra_modules=[proj],
                          epochs=e1, lr=lr, batch_size=batch_size, rng=rng, progress=progress)
    h2 = fit_with_teacher(student, teacher, train_arrays, pred, extra_modules=[proj],
                          epochs=e2, lr=lr, batch_size=batch_size, rng=rng, progress=progress)
    return h1, h2


# ------------------------------------------------------------------ DistilBERT
@validate_scalars
def distilbert_loss_t(student_logits, teacher_logits, labels, student_hidden, teacher_hidden,
                      valid, T: float = 2.0, alpha_ce: float = 5.0, alpha_task: float = 2.0,
                      alpha_cos: float = 1.0) -> Tensor:
    """DistilBERT's triple loss (Survey §4.4; Sanh et al. 2019, §2):

    .. math::

        \\mathcal L = \\alpha_{ce}\\,T^2\\,\\frac1B\\sum_b\\mathrm{KL}(p^t_T\\|p^s_T)
        + \\alpha_{task}\\,\\mathrm{CE}(z^s, y)
        + \\alpha_{cos}\\,\\frac1{|V|}\\sum_{(b,i)\\in V}\\big(1-\\cos(h^s_{bi}, h^t_{bi})\\big)

    over the real positions ``V``. The released code's defaults are ``α_ce = 5, α_mlm = 2,
    α_cos = 1``, ``T = 2``; its task term is the masked-LM loss of pre-training — for a
    classifier student refimpl uses the task's cross-entropy in its place. The KL is PyTorch's
    ``KLDivLoss(reduction="batchmean")`` times ``T²`` as in that code; the cosine term is
    ``cosine_embedding_loss`` with target 1 (mean).

    Parameters
    ----------
    student_logits : Tensor of shape (B, C)
    teacher_logits : ndarray of shape (B, C)
    labels : int ndarray of shape (B,)
    student_hidden : Tensor of shape (B, n, d)
    teacher_hidden : ndarray or Tensor of shape (B, n, d)
        The same width (DistilBERT keeps BERT's hidden size).
    valid : bool ndarray of shape (B, n)
    T, alpha_ce, alpha_task, alpha_cos : float

    Returns
    -------
    Tensor (scalar)

    References
    ----------
    .. [1] V. Sanh, L. Debut, J. Chaumond, T. Wolf, "DistilBERT, a distilled version of BERT:
       smaller, faster, cheaper and lighter", NeurIPS EMC² Workshop 2019.
    """
    if labels is None:
        raise TypeError("labels must be integer class ids of shape (B,), got None")
    T = check_float(T, "T", 0.0, lo_open=True)
    a_ce = check_float(alpha_ce, "alpha_ce", 0.0)
    a_task = check_float(alpha_task, "alpha_task", 0.0)
    a_cos = check_float(alpha_cos, "alpha_cos", 0.0)
    check_array(data_of(student_hidden), "student_hidden", ndim=3)
    check_array(data_of(teacher_hidden), "teacher_hidden", ndim=3)
    hs, ht = as_tensor(student_hidden), np.asarray(data_of(teacher_hidden), dtype=float)
    if tuple(hs.shape) != ht.shape:
        raise ValueError(f"teacher_hidden must have the shape of student_hidden (B, n, d) "
                         f"{tuple(hs.shape)}, got {ht.shape}")
    valid = np.asarray(valid)
    if valid.dtype != bool or valid.shape != ht.shape[:2] or not valid.any():
        raise ValueError(f"valid must be a bool mask of shape {ht.shape[:2]} with a real "
                         f"position")
    # soft term α_ce · T² KL, hard term α_task · CE: kd_loss_t with α = 1 twice
    soft = kd_loss_t(student_logits, teacher_logits, T)
    hard = kd_loss_t(student_logits, teacher_logits, T, labels, 0.0)  # (1 − 0)·CE(s, y)
    # cosine between hidden states at real positions (cosine_embedding_loss, target 1)
    dot = (hs * Tensor(ht)).sum(axis=-1)  # (B, n)
    ns = ((hs * hs).sum(axis=-1)) ** 0.5
    nt = np.sqrt((ht * ht).sum(axis=-1))
    cos = dot / (ns * Tensor(np.maximum(nt, 1e-300)))
    w = valid / valid.sum()
    cos_loss = 1.0 - F.mask(cos, w).sum()
    return soft * a_ce + hard * a_task + cos_loss * a_cos


def init_from_teacher_layers_(student, teacher, layers) -> None:
    """Initialise ``student`` from ``teacher``: embeddings, positions, [CLS] vector, final norm
    and classifier copied, and student layer ``j`` ← teacher layer ``layers[j]`` (0-based).

    DistilBERT takes every other layer (``layers = [0, 2, 4, …]``, Sanh et al. §3); PKD the
    first ``k`` (``layers = range(k)``, Sun et al. §4.1). Widths and heads must match.

    Parameters
    ----------
    student, teacher : TransformerClassifier
        ``student`` is modified in place.
    layers : sequence of int
        One teacher layer per student layer.
    """
    _check_tf(student, "student")
    _check_tf(teacher, "teacher")
    if not isinstance(layers, (list, tuple, range, np.ndarray)):
        raise TypeError(f"layers must be a sequence of teacher layer indices, got "
                        f"{type(layers).__name__}")
    if any(isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer))
           for i in layers):
        raise TypeError(f"layers must hold integer layer indices, got {list(layers)}")
    layers = [int(i) for i in layers]
    if len(layers) != student.num_layers or min(layers, default=0) < 0 \
            or max(layers, default=0) >= teacher.num_layers:
        raise ValueError(f"layers must give {student.num_layers} teacher layers in "
                         f"[0, {teacher.num_layers}), got {layers}")
    t_state = teacher.state_dict()
    s_state = student.state_dict()
    new = {}
    for k, v in s_state.items():
        if k.startswith("layers."):
            _, j, rest = k.split(".", 2)
            src = f"layers.{layers[int(j)]}.{rest}"
        else:
            src = k
        if src not in t_state or t_state[src].shape != v.shape:
            raise ValueError(f"student parameter {k} has no teacher counterpart {src} of shape "
                             f"{v.shape} (the widths and heads must match)")
        new[k] = t_state[src].copy()
    student.load_state_dict(new)


# ------------------------------------------------------------------ Patient KD
@validate_scalars
def pkd_objective_t(student_logits, teacher_logits, labels, student_cls, teacher_cls,
                    T: float = 5.0, alpha: float = 0.5, beta: float = 100.0) -> Tensor:
    """Patient KD's objective ``(1 − α) CE + α L_DS + β L_PT`` (Survey §4.4; Sun et al. 2019,
    Eq. 7), with ``L_DS`` Hinton's soft term (:func:`kd_loss_t`) and ``L_PT`` the normalised
    [CLS] loss over the PKD-Skip / PKD-Last layers (:func:`pkd_loss_t`).

    Sun et al.'s ``L_DS`` is the soft cross-entropy without ``T²`` and their code averages the
    KL over classes; refimpl's soft term is ``T² KL`` (Hinton's scale: the same gradient
    direction, a constant factor ``T²`` apart from the paper's).

    Parameters
    ----------
    student_logits : Tensor (B, C); teacher_logits : ndarray (B, C); labels : int (B,)
    student_cls, teacher_cls : sequences of (B, d)
        The mapped layers' [CLS] states (student layers 1..M−1 and :func:`pkd_layer_map`).
    T : float > 0; alpha : float in [0, 1]; beta : float >= 0

    Returns
    -------
    Tensor (scalar)
    """
    if labels is None:
        raise TypeError("labels must be integer class ids of shape (B,), got None")
    beta = check_float(beta, "beta", 0.0)
    return kd_loss_t(student_logits, teacher_logits, T, labels, alpha) \
        + pkd_loss_t(student_cls, teacher_cls) * beta


@validate_scalars(**_FIT_BOUNDS)
def fit_distilbert(student, teacher, train_arrays, *, T: float = 2.0, alpha_ce: float = 5.0,
                   alpha_task: float = 2.0, alpha_cos: float = 1.0, epochs: int = 2,
                   lr: float = 1e-3, batch_size: int = 32, rng=None, progress=None):
    """Train ``student`` with :func:`distilbert_loss_t` on the top layer's hidden states
    (Survey §4.4; Sanh et al. 2019). Initialise it first with
    :func:`init_from_teacher_layers_` (every other layer) as DistilBERT does.

    Returns
    -------
    History
    """
    args = dict(T=check_float(T, "T", 0.0, lo_open=True),
                alpha_ce=check_float(alpha_ce, "alpha_ce", 0.0),
                alpha_task=check_float(alpha_task, "alpha_task", 0.0),
                alpha_cos=check_float(alpha_cos, "alpha_cos", 0.0))

    def loss(sz, so, tz, to, valid, y):
        return distilbert_loss_t(sz, tz, y, so.hidden_states[-1], to.hidden_states[-1].data,
                                 valid, **args)

    return fit_with_teacher(student, teacher, train_arrays, loss, epochs=epochs, lr=lr,
                            batch_size=batch_size, rng=rng, progress=progress)


@validate_scalars(**_FIT_BOUNDS)
def fit_pkd(student, teacher, train_arrays, *, strategy: str = "skip", T: float = 5.0,
            alpha: float = 0.5, beta: float = 100.0, epochs: int = 2, lr: float = 1e-3,
            batch_size: int = 32, rng=None, progress=None):
    """Patient KD training (Survey §4.4; Sun et al. 2019): :func:`pkd_objective_t` with the
    student's layers ``1..M−1`` matched to the teacher's :func:`pkd_layer_map` layers on the
    [CLS] state (both models need ``pooling="cls"``). Initialise the student first with
    :func:`init_from_teacher_layers_` (``range(M)``) as PKD does.

    Returns
    -------
    History
    """
    from refimpl.distillation.transformers import pkd_layer_map

    _check_tf(student, "student")
    _check_tf(teacher, "teacher")
    if student.pooling != "cls" or teacher.pooling != "cls":
        raise ValueError("PKD matches [CLS] states: student and teacher need pooling='cls'")
    maps = pkd_layer_map(teacher.num_layers, student.num_layers, strategy)
    T = check_float(T, "T", 0.0, lo_open=True)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    beta = check_float(beta, "beta", 0.0)

    def loss(sz, so, tz, to, valid, y):
        s_cls = [so.hidden_states[j][:, 0] for j in range(1, student.num_layers)]
        t_cls = [to.hidden_states[i].data[:, 0] for i in maps]
        if not s_cls:  # a one-layer student: the prediction loss alone
            return kd_loss_t(sz, tz, T, y, alpha)
        return pkd_objective_t(sz, tz, y, s_cls, t_cls, T, alpha, beta)

    return fit_with_teacher(student, teacher, train_arrays, loss, epochs=epochs, lr=lr,
                            batch_size=batch_size, rng=rng, progress=progress)


# ------------------------------------------------------------------ BERT-of-Theseus
class TheseusClassifier(Module):
    """BERT-of-Theseus' progressive module replacing (Survey §4.4; Xu et al. 2020).

    The predecessor's ``N`` layers are split into ``S`` modules of ``N/S`` consecutive layers;
    successor module ``i`` is one :class:`refimpl.nn.TransformerEncoderLayer`, initialised as
    a copy of the predecessor's layer ``i`` (the released code copies the predecessor's first
    ``S`` layers into the successor). In training each module is replaced by its successor
    with probability ``replace_rate`` (a Bernoulli draw per module and step, Eq. 1–3); in eval
    mode the successor runs alone. The predecessor, its embeddings and its classifier are
    frozen (they are not parameters of this module; Xu et al. freeze the predecessor, and the
    successor shares its embedding and output layers).

    A causal :class:`refimpl.nn.TransformerLanguageModel` predecessor is compressed the same
    way: every module, predecessor's or successor's, runs under the LM's causal mask, and the
    output is the LM's next-token logits at every position (train it on the next-token loss
    of whole rows, e.g. ``refimpl tour --task lm``'s ``fit(forward=...)``).

    Parameters
    ----------
    predecessor : TransformerClassifier or TransformerLanguageModel
        Fine-tuned; deep-copied (the caller's model is not touched).
    n_modules : int
        ``S``, dividing the predecessor's layer count.
    replace_rate : float in [0, 1]
    rng : Generator or int, optional

    Attributes
    ----------
    successor : ModuleList of S TransformerEncoderLayer
    """

    def __init__(self, predecessor, n_modules: int, replace_rate: float = 0.5, rng=None):
        _check_tf(predecessor, "predecessor", lm=True)
        S = check_int(n_modules, "n_modules", 1, predecessor.num_layers)
        if predecessor.num_layers % S:
            raise ValueError(f"n_modules must divide the predecessor's {predecessor.num_layers} "
                             f"layers, got {S}")
        self.n_modules = S
        self.replace_rate = check_float(replace_rate, "replace_rate", 0.0, 1.0)
        self._pred = [copy.deepcopy(predecessor)]  # a list: frozen, not a child module
        self._pred[0].eval()
        k = predecessor.num_layers // S
        self.successor = ModuleList(copy.deepcopy(predecessor.layers[i]) for i in range(S))
        self._k = k
        self._rng = as_rng(rng)
        self.last_draw = None

    @property
    def predecessor(self):
        return self._pred[0]

    def forward(self, X, lengths=None):
        """``X`` (B, T), ``lengths`` (B,) → logits (B, C), or a language model's next-token
        logits (B, T, V)."""
        p = self.predecessor
        lm = isinstance(p, TransformerLanguageModel)
        causal = None
        with no_grad():
            out = p.encode(X, lengths, layer_mask=np.zeros(p.num_layers),
                           output_hidden_states=True)
        if lm:  # the LM's encode returns the EncoderOutput alone; its mask is causal
            T = np.shape(X)[1]
            valid = length_mask(np.full(len(X), T) if lengths is None
                                else np.asarray(lengths), T)
            causal = np.tril(np.ones((T, T), dtype=bool))  # True = may attend (keys <= query)
        else:
            out, valid = out
        h = Tensor(out.hidden_states[0].data)  # the embedding output: frozen
        if self.training:
            draw = self._rng.random(self.n_modules) < self.replace_rate  # Bernoulli per module
        else:
            draw = np.ones(self.n_modules, bool)
        self.last_draw = draw
        kpm = ~valid
        for i in range(self.n_modules):
            if draw[i]:
                h = self.successor[i](h, mask=causal, key_padding_mask=kpm)
            else:
                for layer in p.layers[i * self._k:(i + 1) * self._k]:
                    # frozen weights, gradient flows through
                    h = layer(h, mask=causal, key_padding_mask=kpm)
        if p.final_norm is not None:
            h = p.final_norm(h)
        return p.output(h) if lm else p.fc(p._pool(h, valid))

    def successor_model(self):
        """A standalone :class:`TransformerClassifier` (or
        :class:`~refimpl.nn.TransformerLanguageModel`) with the successor's ``S`` layers and
        the predecessor's embeddings and classifier / output layer (copied): the compressed
        model."""
        p = self.predecessor
        m = copy.deepcopy(p)
        m.layers = ModuleList(copy.deepcopy(list(self.successor)))
        m.num_layers = self.n_modules
        return m


class TheseusScheduler(Callback):
    """Sets ``model.replace_rate = min(1, k·t + b)`` after every step ``t``
    (:func:`theseus_replace_rate`, Xu et al. 2020, Eq. 5; the paper's constant-rate variant
    is ``k = 0``). Pass to :func:`refimpl.nn.fit` in ``callbacks``.

    Parameters
    ----------
    model : TheseusClassifier
    k : float >= 0
    b : float in [0, 1]
    """

    def __init__(self, model, k: float, b: float):
        if not isinstance(model, TheseusClassifier):
            raise TypeError(f"model must be a TheseusClassifier, got {type(model).__name__}")
        self.model = model
        self.k = check_float(k, "k", 0.0)
        self.b = check_float(b, "b", 0.0, 1.0)
        self.rates = []
        self._steps = 0

    def on_train_begin(self, model) -> None:
        self._steps = 0
        self.model.replace_rate = theseus_replace_rate(0, self.k, self.b)

    def on_step_end(self, model, step: int) -> None:
        self._steps = step
        self.model.replace_rate = theseus_replace_rate(step, self.k, self.b)
        self.rates.append(self.model.replace_rate)

    def __call__(self, model) -> None:
        """The same schedule as an ``after_step(model)`` hook (for a training loop that takes
        no callbacks): counts the steps itself, ``t = 1, 2, ...``."""
        self.on_step_end(model, self._steps + 1)


# ------------------------------------------------------------------ multi-task distillation
def multitask_distillation_loss_t(task_logits, task_labels, task_teacher_probs) -> Tensor:
    """Multi-task distillation of Liu et al. (2019, MT-DNN-KD; Survey §4.4): for task ``t``
    with a teacher the loss is the *average of the two objectives*, the cross-entropy to the
    correct targets and to the teacher's soft targets,

    .. math::

        \\mathcal L_t = \\tfrac12\\,\\mathrm{CE}(z_t, y_t)
        + \\tfrac12\\Big(-\\frac1{B_t}\\sum_b\\sum_c p^{teacher}_{t,bc}\\log\\mathrm{softmax}(z_{t,b})_c\\Big)

    and the plain cross-entropy for a task without a teacher; the objective is the sum over the
    tasks (MT-DNN trains on one task's mini-batch at a time, so a sum over tasks is what an epoch
    sees).

    Parameters
    ----------
    task_logits : sequence of Tensor of shape (B_t, C_t)
    task_labels : sequence of int ndarray of shape (B_t,)
    task_teacher_probs : sequence of (ndarray of shape (B_t, C_t) or None)
        The teacher's (e.g. an ensemble's averaged) probabilities per task; None where the task
        has no teacher.

    Returns
    -------
    Tensor (scalar)

    References
    ----------
    .. [1] X. Liu, P. He, W. Chen, J. Gao, "Improving Multi-Task Deep Neural Networks via
       Knowledge Distillation for Natural Language Understanding", arXiv 1904.09482, 2019.
    """
    from refimpl.distillation.multi_teacher import multi_teacher_ce

    for name, v in (("task_logits", task_logits), ("task_labels", task_labels),
                    ("task_teacher_probs", task_teacher_probs)):
        if not isinstance(v, (list, tuple)) or not v:
            raise TypeError(f"{name} must be a non-empty list (one entry per task), got "
                            f"{type(v).__name__}")
    if not len(task_logits) == len(task_labels) == len(task_teacher_probs):
        raise ValueError(f"task_labels and task_teacher_probs must have one entry per task "
                         f"({len(task_logits)}), got {len(task_labels)} and "
                         f"{len(task_teacher_probs)}")
    total = None
    for t, (z, y, p) in enumerate(zip(task_logits, task_labels, task_teacher_probs)):
        zs = check_array(data_of(z), f"task_logits[{t}]", ndim=2)
        if p is None:
            term = kd_loss_t(z, zs, 1.0, y, 0.0)  # CE(z, y) alone (the soft weight is 0)
        else:
            pt = check_array(p, f"task_teacher_probs[{t}]", ndim=2)
            if pt.shape != zs.shape:
                raise ValueError(f"task_teacher_probs[{t}] must have shape {zs.shape}, got "
                                 f"{pt.shape}")
            hard = kd_loss_t(z, zs, 1.0, y, 0.0)  # labels are validated here
            soft = multi_teacher_ce(z, pt[None], 1.0)  # −mean_b Σ_c p log softmax(z)
            term = (hard + soft) * 0.5
        total = term if total is None else total + term
    return total


# ------------------------------------------------------------------ BERT-EMD
def bert_emd_update_weights(flow, cost, teacher_weights, student_weights):
    """BERT-EMD's cost-driven layer-weight update (Survey §4.4; Li et al. 2020, §3.3, as in the
    released code's ``get_new_layer_weight``): a layer that is expensive to transport gets a
    smaller weight next step.

    .. math::

        \\bar C^S_j = \\frac{\\sum_i f_{ij} D_{ij}}{w^S_j},\\quad
        w^S_j \\leftarrow \\frac{\\sum_k \\bar C^S_k / \\bar C^S_j}{\\sum_l \\sum_k \\bar C^S_k /
        \\bar C^S_l}

    and the same for the teacher's layers (rows). A layer with zero transported cost keeps a
    zero ratio (as the code, which skips it). The paper's optional softmax temperature is not
    used by that code and not here.

    Parameters
    ----------
    flow, cost : ndarray of shape (N_teacher, M_student)
    teacher_weights : ndarray of shape (N,); student_weights : ndarray of shape (M,)
        Current weights, positive.

    Returns
    -------
    (ndarray (N,), ndarray (M,))
        The new teacher and student weights, each summing to 1.
    """
    f = check_array(flow, "flow", ndim=2)
    D = check_array(cost, "cost", ndim=2)
    if f.shape != D.shape:
        raise ValueError(f"cost must have the shape of flow {f.shape}, got {D.shape}")
    wt = check_array(teacher_weights, "teacher_weights", ndim=1)
    ws = check_array(student_weights, "student_weights", ndim=1)
    if wt.shape != (f.shape[0],) or ws.shape != (f.shape[1],) or np.any(wt <= 0) \
            or np.any(ws <= 0):
        raise ValueError(f"teacher_weights and student_weights must be positive of shapes "
                         f"({f.shape[0]},) and ({f.shape[1]},), got {wt.shape} and {ws.shape}")

    def update(transported, w):
        c = transported / w  # C̄: transported cost per unit weight
        total = c.sum()
        r = np.where(c > 0, total / np.where(c > 0, c, 1.0), 0.0)
        s = r.sum()
        return r / s if s > 0 else np.full_like(w, 1.0 / len(w))

    fd = f * D
    return update(fd.sum(axis=1), wt), update(fd.sum(axis=0), ws)


def bert_emd_losses_t(student_out, teacher_out, projections, weights, valid) -> dict:
    """BERT-EMD's many-to-many intermediate losses (Survey §4.4; Li et al. 2020, Eqs. 6–12):
    with ``D^H_ij = MSE(H^S_j W_h, H^T_i)`` and ``D^A_ij = MSE(A^S_j, A^T_i)`` over all teacher
    layers ``i`` and student layers ``j`` (attention scores as in :func:`tinybert_losses_t`), the
    optimal flows ``F`` of :func:`refimpl.distillation.emd_layer_mapping` between the layer
    weights give ``L = Σ_ij f_ij D_ij`` (the flows are constants; the gradient flows through
    ``D``). Embedding and prediction losses stay one-to-one (:func:`tinybert_losses_t`).

    Parameters
    ----------
    student_out, teacher_out : EncoderOutput
        With hidden states and attentions.
    projections : TinyBertProjections (``W_h`` is used)
    weights : dict
        ``{"hidden": (w_t (N,), w_s (M,)), "attention": (w_t, w_s)}``.
    valid : bool ndarray of shape (B, n)

    Returns
    -------
    dict
        ``"hidden"``, ``"attention"`` (scalar Tensors), and ``"flow_hidden"``,
        ``"cost_hidden"``, ``"flow_attention"``, ``"cost_attention"`` (ndarrays (N, M)) for
        :func:`bert_emd_update_weights`.

    References
    ----------
    .. [1] J. Li, X. Liu, H. Zhao, R. Xu, M. Yang, Y. Jin, "BERT-EMD: Many-to-Many Layer
       Mapping for BERT Compression with Earth Mover's Distance", EMNLP 2020.
    """
    from refimpl.distillation.transformers import emd_layer_mapping

    for name, o in (("student_out", student_out), ("teacher_out", teacher_out)):
        if getattr(o, "hidden_states", None) is None or getattr(o, "attentions", None) is None:
            raise ValueError(f"{name} needs hidden_states and attentions")
    if not callable(projections):
        raise TypeError(f"projections must be callable, got {type(projections).__name__}")
    if not isinstance(weights, dict) or set(weights) != {"hidden", "attention"}:
        raise TypeError("weights must be a dict with keys 'hidden' and 'attention'")
    hs, ht = student_out.hidden_states[1:], teacher_out.hidden_states[1:]
    As, At = student_out.attentions, teacher_out.attentions
    valid = np.asarray(valid)
    if valid.dtype != bool or valid.shape != tuple(hs[0].shape[:2]):
        raise ValueError(f"valid must be a bool mask of shape {tuple(hs[0].shape[:2])}")
    N, M = len(ht), len(hs)
    ps = [projections(h, "hidden") for h in hs]
    ss = [_scores(a, valid) for a in As]
    st = [_scores(a, valid).data for a in At]
    out = {}
    for kind, terms in (("hidden", [[mse(ps[j], data_of(ht[i])) for j in range(M)]
                                    for i in range(N)]),
                        ("attention", [[mse(ss[j], st[i]) for j in range(M)]
                                       for i in range(N)])):
        D = np.array([[t.item() for t in row] for row in terms])  # (N, M) costs
        w_t, w_s = weights[kind]
        flow, _ = emd_layer_mapping(D, w_t, w_s)
        loss = None
        for i in range(N):
            for j in range(M):
                if flow[i, j] > 0:
                    term = terms[i][j] * float(flow[i, j])
                    loss = term if loss is None else loss + term
        out[kind] = loss if loss is not None else terms[0][0] * 0.0
        out[f"flow_{kind}"], out[f"cost_{kind}"] = flow, D
    return out


@validate_scalars(lr=(0.0, None, "(]"), batch_size=(1, None))
def fit_bert_emd(student, teacher, train_arrays, *, projections=None,
                 epochs_intermediate: int = 2, epochs_prediction: int = 2,
                 update_weights: bool = True, lr: float = 1e-3, batch_size: int = 32, rng=None,
                 progress=None):
    """BERT-EMD task distillation (Survey §4.4; Li et al. 2020): as :func:`fit_tinybert`, but
    the hidden-state and attention losses use the many-to-many EMD mapping
    (:func:`bert_emd_losses_t`), with the layer weights updated after every step by
    :func:`bert_emd_update_weights` (``update_weights``); embedding and prediction losses are
    TinyBERT's one-to-one ones.

    Returns
    -------
    (History, History, dict)
        The two steps' histories and the final layer weights
        ``{"hidden": (w_t, w_s), "attention": (w_t, w_s)}``.
    """
    _check_tf(student, "student")
    _check_tf(teacher, "teacher")
    e1 = check_int(epochs_intermediate, "epochs_intermediate", 0)
    e2 = check_int(epochs_prediction, "epochs_prediction", 0)
    rng = as_rng(rng)
    N, M = teacher.num_layers, student.num_layers
    proj = projections or TinyBertProjections(student.d_model, teacher.d_model, rng=rng)
    weights = {k: (np.full(N, 1.0 / N), np.full(M, 1.0 / M)) for k in ("hidden", "attention")}

    def inter(sz, so, tz, to, valid, y):
        emd = bert_emd_losses_t(so, to, proj, weights, valid)
        if update_weights:
            for k in ("hidden", "attention"):
                weights[k] = bert_emd_update_weights(emd[f"flow_{k}"], emd[f"cost_{k}"],
                                                     *weights[k])
        emb = mse(proj(so.hidden_states[0], "embedding"), data_of(to.hidden_states[0]))
        return emb + emd["hidden"] + emd["attention"]

    def pred(sz, so, tz, to, valid, y):
        return _soft_ce(sz, tz)

    h1 = fit_with_teacher(student, teacher, train_arrays, inter, extra_modules=[proj],
                          epochs=e1, lr=lr, batch_size=batch_size, rng=rng, progress=progress)
    h2 = fit_with_teacher(student, teacher, train_arrays, pred, need_intermediates=False,
                          epochs=e2, lr=lr, batch_size=batch_size, rng=rng, progress=progress)
    return h1, h2, weights


def _soft_ce(zs, zt, T: float = 1.0, valid=None) -> Tensor:
    """TinyBERT's prediction loss ``−mean_b Σ_c softmax(z^t/T) log softmax(z^s/T)``; with
    per-position logits (B, n, V) and ``valid`` (B, n), the mean over the real positions."""
    zs = as_tensor(zs)
    zt = np.asarray(data_of(zt), dtype=float)
    if valid is not None:  # per token: the real positions as rows of a classifier over V
        rows = np.flatnonzero(np.asarray(valid))
        zs = zs.reshape(-1, zs.shape[-1])[rows]  # (N_v, V)
        zt = zt.reshape(-1, zt.shape[-1])[rows]
    pt = np.exp(zt / T - (zt / T).max(-1, keepdims=True))
    pt /= pt.sum(-1, keepdims=True)  # (N, C) teacher's soft targets
    return (Tensor(-pt) * F.log_softmax(zs * (1.0 / T), axis=-1)).sum() * (1.0 / zt.shape[0])


# ------------------------------------------------------------------ SqueezeBERT student
@validate_scalars
def squeezebert_student_(model, groups: int = 4, rng=None):
    """Turn a :class:`refimpl.nn.TransformerClassifier` into a SqueezeBERT-style student
    (Survey §4.4; Iandola et al. 2020, §3): in every layer the Q, K, V projections and both
    FFN layers become grouped position-wise layers (:class:`refimpl.nn.grouped.GroupedLinear`,
    a 1×1 grouped convolution, ``groups`` blocks), the post-attention projection ``W_o`` stays
    dense (SqueezeBERT's ``g = 1`` there). The new layers are freshly initialised: the model is
    a student architecture, to be trained (e.g. distilled with :func:`fit_with_teacher`).

    Parameters
    ----------
    model : TransformerClassifier
        Modified in place.
    groups : int >= 1
        Must divide ``d_model`` and ``d_ff`` (SqueezeBERT: 4).
    rng : Generator or int, optional

    Returns
    -------
    int
        The number of weights removed (``(1 − 1/g)`` of each grouped matrix).

    References
    ----------
    .. [1] F. N. Iandola, A. E. Shaw, R. Krishna, K. W. Keutzer, "SqueezeBERT: What can
       computer vision teach NLP about efficient neural networks?", SustaiNLP 2020.
    """
    from refimpl.nn.grouped import GroupedLinear

    _check_tf(model, "model")
    g = check_int(groups, "groups", 1)
    rng = as_rng(rng)
    before = model.num_parameters()
    for layer in model.layers:
        d, d_ff = layer.d_model, layer.d_ff
        if d % g or d_ff % g:
            raise ValueError(f"groups must divide d_model={d} and d_ff={d_ff}, got {g}")
        att = layer.self_attn
        for name in ("W_q", "W_k", "W_v"):
            old = getattr(att, name)
            setattr(att, name, GroupedLinear(d, d, g, bias=old.b is not None, rng=rng))
        layer.linear1 = GroupedLinear(d, d_ff, g, rng=rng)
        layer.linear2 = GroupedLinear(d_ff, d, g, rng=rng)
    return before - model.num_parameters()


# ------------------------------------------------------------------ MobileBERT transfer
def mobilebert_transfer_losses_t(student_out, teacher_out, layer: int, valid) -> dict:
    """MobileBERT's layer-wise knowledge transfer objectives for layer ``ℓ`` (Survey §4.4; Sun
    et al. 2020, §3.2): *feature-map transfer*, the MSE between the student's and the teacher's
    layer-ℓ outputs at the real positions, and *attention transfer*, the KL divergence from the
    teacher's to the student's self-attention distributions of layer ℓ, averaged over heads
    and real query rows (:func:`refimpl.distillation.attention_kl_t`).

    MobileBERT's student is a *bottleneck* network whose block boundaries have the teacher's
    width (512 inside 128-wide blocks): :func:`mobilebert_student_` builds one from a
    :class:`refimpl.nn.TransformerClassifier` with the teacher's ``d_model``, heads and depth.

    Parameters
    ----------
    student_out, teacher_out : EncoderOutput
        With hidden states and attentions.
    layer : int
        ``ℓ`` in ``1..L`` (1-based, as hidden_states[ℓ] is layer ℓ's output).
    valid : bool ndarray of shape (B, n)

    Returns
    -------
    dict of scalar Tensors: ``"feature_map"``, ``"attention"``

    References
    ----------
    .. [1] Z. Sun, H. Yu, X. Song, R. Liu, Y. Yang, D. Zhou, "MobileBERT: a Compact
       Task-Agnostic BERT for Resource-Limited Devices", ACL 2020.
    """
    from refimpl.distillation.transformers import attention_kl_t

    for name, o in (("student_out", student_out), ("teacher_out", teacher_out)):
        if getattr(o, "hidden_states", None) is None or getattr(o, "attentions", None) is None:
            raise ValueError(f"{name} needs hidden_states and attentions")
    L = len(student_out.attentions)
    if len(teacher_out.attentions) != L:
        raise ValueError(f"MobileBERT transfers layer by layer: student and teacher need the same "
                         f"number of layers, got {L} and {len(teacher_out.attentions)}")
    ell = check_int(layer, "layer", 1, L)
    valid = np.asarray(valid)
    hs, ht = student_out.hidden_states[ell], teacher_out.hidden_states[ell]
    if valid.dtype != bool or valid.shape != tuple(hs.shape[:2]):
        raise ValueError(f"valid must be a bool mask of shape {tuple(hs.shape[:2])}")
    if tuple(hs.shape) != tuple(ht.shape):
        raise ValueError(f"layer {ell}'s outputs differ in shape: {tuple(hs.shape)} vs "
                         f"{tuple(ht.shape)} (feature-map transfer needs the teacher's width)")
    d = hs - Tensor(data_of(ht))
    w = (valid / (valid.sum() * hs.shape[-1]))[:, :, None]  # mean over real positions, features
    fmt = F.mask(d * d, w).sum()
    a_s, a_t = student_out.attentions[ell - 1], teacher_out.attentions[ell - 1]
    q, k = a_s.query, a_s.key
    scores = F.matmul(q, F.transpose(k, (0, 1, 3, 2))) * (1.0 / np.sqrt(q.shape[-1]))
    keep = np.broadcast_to(valid[:, None, None, :], scores.shape)
    scores = F.masked_fill(scores, ~keep, -1e30)  # (B, H, n, n), padded keys excluded
    At = data_of(a_t.probs)
    if At is None or tuple(np.shape(At)) != tuple(scores.shape):
        raise ValueError("the teacher's layer needs attention probabilities of the student's "
                         "shape (the same number of heads)")
    rows = np.broadcast_to(valid[:, None, :], scores.shape[:3])
    att = attention_kl_t(np.asarray(At), scores, mask=rows)
    return {"feature_map": fmt, "attention": att}


@validate_scalars(lr=(0.0, None, "(]"), batch_size=(1, None))
def fit_mobilebert_progressive(student, teacher, train_arrays, *, epochs_per_layer: int = 1,
                               epochs_final: int = 2, T: float = 1.0, lr: float = 1e-3,
                               batch_size: int = 32, rng=None, progress=None) -> list:
    """MobileBERT's *progressive knowledge transfer* (Survey §4.4; Sun et al. 2020, §3.5):
    for ``ℓ = 1..L`` only layer ℓ (and the embeddings with ℓ = 1) is trained, on
    :func:`mobilebert_transfer_losses_t` (feature map + attention), the layers below being
    frozen; then the whole student is trained with Hinton's loss on the teacher's logits
    (``T``, soft only) — the paper's pre-training distillation followed by task fine-tuning,
    here on the task's data.

    Parameters
    ----------
    student, teacher : TransformerClassifier
        Same ``d_model``, heads and number of layers.
    train_arrays : tuple ``(X, lengths, y)``
    epochs_per_layer, epochs_final : int >= 0
    T, lr, batch_size, rng, progress : as :func:`fit_with_teacher`

    Returns
    -------
    list of History
        One per stage (``L`` transfer stages, then the final one).
    """
    _check_tf(student, "student")
    _check_tf(teacher, "teacher")
    if (student.num_layers, student.d_model, student.num_heads) != \
            (teacher.num_layers, teacher.d_model, teacher.num_heads):
        raise ValueError("MobileBERT's layer-wise transfer needs the teacher's depth, width and "
                         "heads in the student (the bottleneck keeps the block boundaries at the "
                         "teacher's width)")
    e1 = check_int(epochs_per_layer, "epochs_per_layer", 0)
    e2 = check_int(epochs_final, "epochs_final", 0)
    T = check_float(T, "T", 0.0, lo_open=True)
    train_arrays = check_train_arrays(train_arrays)
    rng = as_rng(rng)
    teacher.eval()
    flags = dict(output_hidden_states=True, output_attentions=True)
    hist, st = [], {}

    def forward(model, X, lengths):
        with no_grad():
            st["t"] = teacher(X, lengths, **flags)
        st["valid"] = valid_positions(student, X, lengths)
        return student(X, lengths, **flags)

    for ell in range(1, student.num_layers + 1):
        trainable = [student.layers[ell - 1]]
        if ell == 1:  # the embeddings learn with the first layer
            trainable.append(student.embedding)
        stage = ModuleList(trainable)

        def loss_fn(out, y, ell=ell):
            d = mobilebert_transfer_losses_t(out[1], st["t"][1], ell, st["valid"])
            return d["feature_map"] + d["attention"]

        hist.append(fit(stage, train_arrays, forward=forward, loss_fn=loss_fn, epochs=e1,
                        lr=lr, batch_size=batch_size, rng=rng, progress=progress))
    hist.append(fit_with_teacher(student, teacher, train_arrays,
                                 lambda sz, so, tz, to, v, y: kd_loss_t(sz, tz, T),
                                 need_intermediates=False, epochs=e2, lr=lr,
                                 batch_size=batch_size, rng=rng, progress=progress))
    return hist


@validate_scalars(num_ffn=(1, None))
def mobilebert_student_(model, d_inner: int, d_ff: int | None = None, rng=None, *,
                        num_ffn: int = 1, norm: str = "layernorm",
                        activation: str = "gelu") -> int:
    """Turn a :class:`refimpl.nn.TransformerClassifier` into a MobileBERT bottleneck student
    (Survey §4.4; Sun et al. 2020, §3.1–3.4): every layer becomes a
    :class:`refimpl.nn.bottleneck.BottleneckEncoderLayer` whose attention and ``num_ffn``
    stacked FFNs run at ``d_inner`` while its input and output keep ``d_model`` (the teacher's
    width, so :func:`mobilebert_transfer_losses_t` can compare the feature maps). Freshly
    initialised.

    MobileBERT itself (Sun et al., Table 1) uses ``d_inner = d_model / 4`` (128 of 512),
    ``d_ff = 4 · d_inner`` (512), ``num_ffn=4``, ``norm="nonorm"`` and ``activation="relu"``:
    pass them explicitly. The defaults below are those of the simplified student this function
    built before the stacked FFNs and NoNorm existed (one FFN of ``2 · d_inner``, LayerNorm,
    GELU), which the ``mobilebert-transfer`` check and the tests keep reproducing.

    Parameters
    ----------
    model : TransformerClassifier
        Modified in place.
    d_inner : int
        Divisible by the number of heads.
    d_ff : int, optional
        The hidden width of each inner FFN (default ``2 · d_inner``; MobileBERT ``4 · d_inner``).
    rng : Generator or int, optional
    num_ffn : int >= 1
        Stacked FFNs per block, each with its residual and norm (MobileBERT: 4).
    norm : {"layernorm", "nonorm"}
        The blocks' norms (MobileBERT: ``"nonorm"``, :class:`refimpl.nn.NoNorm`); with
        ``"nonorm"`` a pre-norm model's final LayerNorm becomes a NoNorm too.
    activation : {"gelu", "relu"}
        Of the FFNs (MobileBERT: ``"relu"``).

    Returns
    -------
    int
        The change in the number of parameters (positive = removed).

    References
    ----------
    .. [1] Z. Sun, H. Yu, X. Song, R. Liu, Y. Yang, D. Zhou, "MobileBERT: a Compact
       Task-Agnostic BERT for Resource-Limited Devices", ACL 2020.
    """
    from refimpl.nn.bottleneck import NORMS, BottleneckEncoderLayer, NoNorm

    _check_tf(model, "model")
    d_inner = check_int(d_inner, "d_inner", 1)
    d_ff = 2 * d_inner if d_ff is None else check_int(d_ff, "d_ff", 1)
    num_ffn = check_int(num_ffn, "num_ffn", 1)
    norm = check_choice(norm, "norm", NORMS)
    activation = check_choice(activation, "activation", ("gelu", "relu"))
    if d_inner % model.num_heads:
        raise ValueError(f"d_inner must be divisible by num_heads={model.num_heads}, got "
                         f"{d_inner}")
    rng = as_rng(rng)
    before = model.num_parameters()
    model.layers = ModuleList(BottleneckEncoderLayer(model.d_model, d_inner, model.num_heads,
                                                     d_ff, num_ffn=num_ffn, norm=norm,
                                                     activation=activation, rng=rng)
                              for _ in range(model.num_layers))
    if norm == "nonorm" and model.final_norm is not None:
        model.final_norm = NoNorm(model.d_model)
    return before - model.num_parameters()
