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
:func:`fitnets_hint_loss_t`    Romero et al. 2015 (FitNets): hint loss through a learned
:func:`fit_fitnets`            regressor; stage-wise training (hints, then KD)
:func:`sobolev_loss_t`         Czarnecki et al. 2017: outputs and input-derivatives matched
                               (projections ``J v``, :func:`directional_derivative_t`)
:func:`quantize_student_`      Polino et al. 2018: a quantised student (uniform, straight-through)
                               to distil into from a full-precision teacher
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
from refimpl.utils import (as_rng, check_array, check_choice, check_float, check_int,
                           validate_arrays, validate_scalars)

__all__ = ["kd_loss", "kd_loss_t", "logit_regression_loss", "noisy_teacher_logits",
           "fsp_matrix", "fsp_matrix_t", "fsp_loss", "fsp_loss_t", "fitnets_hint_loss_t",
           "fit_fitnets", "directional_derivative_t", "sobolev_loss_t", "quantize_student_"]


def check_train_arrays(train_arrays, name: str = "train_arrays") -> tuple:
    """``(*inputs, y)``: a tuple or list of at least two arrays with the same first length."""
    if not isinstance(train_arrays, (tuple, list)) or len(train_arrays) < 2:
        raise TypeError(f"{name} must be a tuple (*inputs, y) of at least 2 arrays, got "
                        f"{type(train_arrays).__name__}")
    n = {len(np.asarray(data_of(a))) if np.ndim(data_of(a)) else -1 for a in train_arrays}
    if len(n) != 1 or -1 in n or 0 in n:
        raise ValueError(f"{name} must hold non-empty arrays with the same number of rows")
    return tuple(train_arrays)


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


# ------------------------------------------------------------------ FitNets (Romero et al.)
@validate_scalars
def fitnets_hint_loss_t(student_guided, teacher_hint, regressor) -> Tensor:
    """FitNets' hint loss ``½ · 1/B Σ_b ‖u_h(x_b) − r(v_g(x_b))‖²`` on the tape (Survey §4.1;
    Romero et al. 2015, Eq. 3): the teacher's *hint* layer ``u_h`` is regressed from the
    student's *guided* layer ``v_g`` through a learned regressor ``r`` (here any callable, e.g. a
    :class:`refimpl.nn.Linear` from the student's width to the teacher's; Romero et al. use a
    convolution for image feature maps, a linear map is its sequence/vector analogue).

    Parameters
    ----------
    student_guided : Tensor of shape (B, ..., d_s)
        The guided layer's output (gradient flows into the student up to this layer).
    teacher_hint : ndarray or Tensor of shape (B, ..., d_t)
        The hint layer's output (a constant target).
    regressor : callable
        ``regressor(student_guided) -> Tensor`` of the hint's shape.

    Returns
    -------
    Tensor (scalar)

    References
    ----------
    .. [1] A. Romero, N. Ballas, S. E. Kahou, A. Chassang, C. Gatta, Y. Bengio, "FitNets: Hints
       for Thin Deep Nets", ICLR 2015.
    """
    if not callable(regressor):
        raise TypeError(f"regressor must be callable, got {type(regressor).__name__}")
    g = check_array(data_of(student_guided), "student_guided")
    h = check_array(data_of(teacher_hint), "teacher_hint")
    if g.ndim < 2 or h.ndim != g.ndim or g.shape[:-1] != h.shape[:-1]:
        raise ValueError(f"teacher_hint must have the leading shape of student_guided "
                         f"{g.shape[:-1]} (and the same ndim >= 2), got {h.shape}")
    r = regressor(as_tensor(student_guided))
    if tuple(r.shape) != h.shape:
        raise ValueError(f"regressor output has shape {tuple(r.shape)}, teacher_hint has "
                         f"{h.shape}")
    d = r - as_tensor(teacher_hint)
    # L_HT = ½ ‖u_h − r(v_g)‖², averaged over the batch
    return (d * d).sum() * (0.5 / g.shape[0])


def fit_fitnets(student, teacher, train_arrays, *, guided, hint, regressor, epochs_hint: int = 2,
                epochs_kd: int = 2, T: float = 4.0, alpha: float = 0.5, lr: float = 1e-2,
                batch_size: int = 64, rng=None, progress=None):
    """FitNets' two-stage training (Survey §4.1; Romero et al. 2015, §2.2 and Algorithm 1).

    Stage 1 (hint-based training): the student's layers up to the guided layer and the
    regressor minimise :func:`fitnets_hint_loss_t`; parameters above the guided layer get no
    gradient. Stage 2: the whole student is trained with Hinton's loss (:func:`kd_loss_t`,
    temperature ``T``, weight ``alpha``; Romero et al.'s KD stage). Both stages run through
    :func:`refimpl.nn.fit`; the regressor is discarded afterwards.

    Parameters
    ----------
    student, teacher : Module
        Called as ``model(*inputs)`` → logits (B, C); the teacher is not modified.
    train_arrays : tuple ``(*inputs, y)``
    guided : callable
        ``guided(student, *inputs) -> Tensor (B, d_s)``: the guided layer (e.g.
        ``lambda m, X, L: m.features(X, L)``).
    hint : callable
        ``hint(teacher, *inputs) -> Tensor (B, d_t)``: the hint layer.
    regressor : Module
        Maps (B, d_s) → (B, d_t); trained in stage 1 only.
    epochs_hint, epochs_kd : int >= 0
    T : float > 0
    alpha : float in [0, 1]
    lr : float > 0
    batch_size : int >= 1
    rng : Generator or int, optional

    Returns
    -------
    (History, History)
        The two stages' histories.
    """
    from refimpl.nn import ModuleList, fit

    for name, m in (("student", student), ("teacher", teacher), ("regressor", regressor)):
        if not hasattr(m, "named_parameters"):
            raise TypeError(f"{name} must be a refimpl.nn Module, got {type(m).__name__}")
    for name, f in (("guided", guided), ("hint", hint)):
        if not callable(f):
            raise TypeError(f"{name} must be callable, got {type(f).__name__}")
    train_arrays = check_train_arrays(train_arrays)
    epochs_hint = check_int(epochs_hint, "epochs_hint", 0)
    epochs_kd = check_int(epochs_kd, "epochs_kd", 0)
    T = check_float(T, "T", 0.0, lo_open=True)
    alpha = check_float(alpha, "alpha", 0.0, 1.0)
    lr = check_float(lr, "lr", 0.0, lo_open=True)
    batch_size = check_int(batch_size, "batch_size", 1)
    rng = as_rng(rng)
    teacher.eval()
    pair = ModuleList([student, regressor])
    target = {}

    def hint_forward(model, *inputs):
        with no_grad():
            target["h"] = hint(teacher, *inputs).data
        return guided(model[0], *inputs)

    h1 = fit(pair, train_arrays, epochs=epochs_hint, lr=lr, batch_size=batch_size, rng=rng,
             progress=progress, forward=hint_forward,
             loss_fn=lambda out, y: fitnets_hint_loss_t(out, target["h"], regressor))

    def kd_forward(model, *inputs):
        with no_grad():
            target["z"] = teacher(*inputs).data
        return model(*inputs)

    h2 = fit(student, train_arrays, epochs=epochs_kd, lr=lr, batch_size=batch_size, rng=rng,
             progress=progress, forward=kd_forward,
             loss_fn=lambda out, y: kd_loss_t(out, target["z"], T, y, alpha))
    return h1, h2


# ------------------------------------------------------------------ Sobolev training
@validate_scalars
def directional_derivative_t(fn, x, v, eps: float = 1e-4) -> Tensor:
    """``J_f(x) v`` by central differences *on the tape*: ``(f(x + εv) − f(x − εv)) / (2ε)``,
    a Tensor that is differentiable with respect to the parameters of ``f`` (the tape has no
    second-order mode, so this is how the student's input-derivative is trained; its error is
    ``ε²/6 · ‖f'''[v, v, v]‖``, and float64 round-off adds ``≈ u‖f‖/ε``).

    Parameters
    ----------
    fn : callable
        ``fn(Tensor of shape (B, d)) -> Tensor of shape (B, C)``.
    x : ndarray of shape (B, d)
    v : ndarray of shape (B, d)
        Directions (one per example).
    eps : float > 0

    Returns
    -------
    Tensor of shape (B, C)
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    X = check_array(data_of(x), "x", ndim=2)
    V = check_array(data_of(v), "v", ndim=2)
    if V.shape != X.shape:
        raise ValueError(f"v must have the shape of x {X.shape}, got {V.shape}")
    eps = check_float(eps, "eps", 0.0, lo_open=True)
    return (fn(Tensor(X + eps * V)) - fn(Tensor(X - eps * V))) * (1.0 / (2 * eps))


@validate_scalars
def sobolev_loss_t(student_fn, teacher_fn, x, n_directions: int = 1, beta: float = 1.0,
                   eps: float = 1e-4, rng=None) -> Tensor:
    """Sobolev training for distillation (Survey §4.1; Czarnecki et al. 2017): match the
    teacher's outputs *and* its input-derivatives,

    .. math::

        \\mathcal L = \\frac1{2B}\\sum_b \\|f_s(x_b) - f_t(x_b)\\|^2
        + \\beta\\,\\frac1{2BK}\\sum_b\\sum_{k=1}^K \\|J_{f_s}(x_b)v_{bk} - J_{f_t}(x_b)v_{bk}\\|^2

    with random unit directions ``v`` (Czarnecki et al.'s *stochastic* Sobolev training, §3:
    projections of the Jacobians instead of the full matrices, which cost one extra pass per
    direction). Both Jacobian-vector products are :func:`directional_derivative_t`.

    Parameters
    ----------
    student_fn, teacher_fn : callable
        ``(Tensor (B, d)) -> Tensor (B, C)``; the teacher is evaluated without gradients.
    x : ndarray of shape (B, d)
        Continuous inputs (for text models: the embedded tokens, flattened).
    n_directions : int >= 1
    beta : float >= 0
        Weight of the derivative term (0: Ba & Caruana's logit regression).
    eps : float > 0
    rng : Generator or int, optional
        Draws the directions.

    Returns
    -------
    Tensor (scalar)

    References
    ----------
    .. [1] W. M. Czarnecki, S. Osindero, M. Jaderberg, G. Świrszcz, R. Pascanu, "Sobolev
       Training for Neural Networks", NeurIPS 2017.
    """
    for name, f in (("student_fn", student_fn), ("teacher_fn", teacher_fn)):
        if not callable(f):
            raise TypeError(f"{name} must be callable, got {type(f).__name__}")
    X = check_array(data_of(x), "x", ndim=2)
    K = check_int(n_directions, "n_directions", 1)
    beta = check_float(beta, "beta", 0.0)
    eps = check_float(eps, "eps", 0.0, lo_open=True)
    rng = as_rng(rng)
    B = X.shape[0]
    fs = student_fn(Tensor(X))
    with no_grad():
        ft = teacher_fn(Tensor(X)).data
    if tuple(fs.shape) != ft.shape:
        raise ValueError(f"student and teacher outputs differ in shape: {tuple(fs.shape)} vs "
                         f"{ft.shape}")
    d = fs - Tensor(ft)
    loss = (d * d).sum() * (0.5 / B)
    if beta == 0.0:
        return loss
    for _ in range(K):
        v = rng.standard_normal(X.shape)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)  # unit directions
        js = directional_derivative_t(student_fn, X, v, eps)
        with no_grad():
            jt = directional_derivative_t(teacher_fn, X, v, eps).data
        dj = js - Tensor(jt)
        loss = loss + (dj * dj).sum() * (0.5 * beta / (B * K))
    return loss


# ------------------------------------------------------------------ KD + quantisation
def quantize_student_(student, bits: int = 4, kind: str = "uniform"):
    """Make every weight matrix of ``student`` pass through a ``bits``-bit quantiser with a
    straight-through gradient in each forward pass (the quantised student of Polino et al.'s
    *quantized distillation*, Survey §4.1): full-precision shadow weights are what the optimiser
    updates, the forward pass (and so the distillation loss) sees ``Q(W)``.

    Uses :func:`refimpl.quantization.training.weight_quantizer` (``"uniform<bits>"``, Survey Eq. (39),
    the uniform quantiser Polino et al. use) through each layer's ``weight_transform`` hook
    (linear, recurrent and embedding weights); biases and LayerNorms stay full precision.

    Parameters
    ----------
    student : Module
        Modified in place (the trailing ``_``).
    bits : int in [1, 16]
    kind : {"uniform"}

    Returns
    -------
    list of str
        Names of the modules whose weights are now quantised.

    References
    ----------
    .. [1] A. Polino, R. Pascanu, D. Alistarh, "Model Compression via Distillation and
       Quantization", ICLR 2018.
    """
    from refimpl.quantization.training import as_weight_transform, weight_quantizer

    if not hasattr(student, "named_modules"):
        raise TypeError(f"student must be a refimpl.nn Module, got {type(student).__name__}")
    bits = check_int(bits, "bits", 1, 16)
    check_choice(kind, "kind", ("uniform",))
    transform = as_weight_transform(weight_quantizer(f"uniform{bits}"))
    done = []
    for name, m in student.named_modules():
        if hasattr(m, "weight_transform"):
            m.weight_transform = transform
            done.append(name)
    return done
