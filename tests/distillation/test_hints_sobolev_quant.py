"""§4.1 FitNets hints, Sobolev training and quantised distillation; §4.3 teacher assistants and
Tan et al.'s threshold τ: gradient checks, hand-worked values, properties, cross-checks against
torch (mse_loss; torch.func.jvp for the input-derivatives)."""

import numpy as np
import pytest

from refimpl.distillation import (
    directional_derivative_t,
    fit_fitnets,
    fitnets_hint_loss_t,
    quantize_student_,
    selective_distillation_flags,
    sobolev_loss_t,
    teacher_assistant_chain,
)
from refimpl.nn import Linear, RNNClassifier, Tensor, gradcheck, no_grad
from refimpl.nn import functional as F


def _mlp(d_in, d_h, d_out, seed):
    l1, l2 = Linear(d_in, d_h, rng=seed), Linear(d_h, d_out, rng=seed + 1)
    return (lambda x: l2(F.tanh(l1(x)))), (l1, l2)


# ------------------------------------------------------------------------------ FitNets
def test_hint_loss_hand_value_and_zero():
    r = Linear(2, 2, rng=0)
    r.W.data[:] = np.eye(2)
    r.b.data[:] = 0.0
    g = np.array([[1.0, 2.0], [0.0, 0.0]])
    h = np.array([[1.0, 0.0], [3.0, 4.0]])
    # ½ (‖(0, 2)‖² + ‖(−3, −4)‖²) / 2 = ½ (4 + 25) / 2
    assert fitnets_hint_loss_t(g, h, r).item() == pytest.approx(29 / 4, rel=1e-15)
    assert fitnets_hint_loss_t(g, g, r).item() == 0.0


def test_hint_loss_gradcheck_and_regressor_grad():
    rng = np.random.default_rng(1)
    r = Linear(3, 5, rng=1)
    g, h = rng.standard_normal((4, 6, 3)), rng.standard_normal((4, 6, 5))
    assert gradcheck(lambda a: fitnets_hint_loss_t(a, h, r), [g])["max_abs_err"] < 1e-8
    W0 = r.W.data.copy()
    assert gradcheck(lambda W: fitnets_hint_loss_t(g, h, lambda x: F.matmul(x, F.transpose(W))),
                     [W0])["max_abs_err"] < 1e-8


def test_hint_loss_matches_torch(torch):
    rng = np.random.default_rng(2)
    r = Linear(3, 4, rng=2)
    g, h = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    ref = torch.nn.functional.mse_loss(torch.tensor(g @ r.W.data.T + r.b.data), torch.tensor(h),
                                       reduction="sum") / 2 / 5
    assert fitnets_hint_loss_t(g, h, r).item() == pytest.approx(float(ref), rel=1e-13)


def test_hint_loss_bad_input():
    r = Linear(3, 4, rng=0)
    with pytest.raises(ValueError, match="teacher_hint"):
        fitnets_hint_loss_t(np.ones((5, 3)), np.ones((4, 4)), r)
    with pytest.raises(ValueError, match="regressor"):
        fitnets_hint_loss_t(np.ones((5, 3)), np.ones((5, 2)), r)
    with pytest.raises(TypeError, match="regressor"):
        fitnets_hint_loss_t(np.ones((5, 3)), np.ones((5, 4)), "r")


def _toy_task(n=96, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(1, 30, (n, 6))
    L = rng.integers(2, 7, n)
    y = (X[:, 0] % 2).astype(np.int64)
    return X, L, y


def test_fit_fitnets_stage1_moves_only_the_guided_part():
    from refimpl.nn import fit

    X, L, y = _toy_task()
    teacher = RNNClassifier(vocab_size=30, d_emb=8, d_hidden=12, n_classes=2, rng=0)
    fit(teacher, (X, L, y), epochs=2, lr=1e-2, rng=0, progress=False)
    t_before = {k: v.data.copy() for k, v in teacher.named_parameters()}
    student = RNNClassifier(vocab_size=30, d_emb=4, d_hidden=4, n_classes=2, rng=1)
    reg = Linear(4, 12, rng=2)
    fc0 = student.fc.W.data.copy()
    rnn0 = student.rnn.W_ih_l0.data.copy() if hasattr(student.rnn, "W_ih_l0") else None

    def guided(m, X_, L_):
        return m.features(X_, L_)

    def hint(m, X_, L_):
        return m.features(X_, L_)

    with no_grad():
        before = fitnets_hint_loss_t(student.features(X, L), teacher.features(X, L).data,
                                     reg).item()
    h1, h2 = fit_fitnets(student, teacher, (X, L, y), guided=guided, hint=hint, regressor=reg,
                         epochs_hint=3, epochs_kd=0, lr=1e-2, rng=0, progress=False)
    with no_grad():
        after = fitnets_hint_loss_t(student.features(X, L), teacher.features(X, L).data,
                                    reg).item()
    assert after < before  # stage 1 fits the hint
    np.testing.assert_array_equal(student.fc.W.data, fc0)  # above the guided layer: untouched
    if rnn0 is not None:
        assert not np.array_equal(student.rnn.W_ih_l0.data, rnn0)
    for k, v in teacher.named_parameters():
        np.testing.assert_array_equal(v.data, t_before[k])
    assert len(h1.train_loss) == 3 and len(h2.train_loss) == 0
    # stage 2 (KD) then trains the classifier too
    fit_fitnets(student, teacher, (X, L, y), guided=guided, hint=hint, regressor=reg,
                epochs_hint=0, epochs_kd=1, lr=1e-2, rng=0, progress=False)
    assert not np.array_equal(student.fc.W.data, fc0)


# ------------------------------------------------------------------------------ Sobolev
def test_directional_derivative_matches_torch_jvp(torch):
    rng = np.random.default_rng(3)
    f, (l1, l2) = _mlp(4, 6, 3, 5)
    x, v = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    got = directional_derivative_t(f, x, v, eps=1e-4).data
    W1, b1, W2, b2 = (torch.tensor(a) for a in (l1.W.data, l1.b.data, l2.W.data, l2.b.data))

    def tf(xx):
        return torch.tanh(xx @ W1.T + b1) @ W2.T + b2

    _, want = torch.func.jvp(tf, (torch.tensor(x),), (torch.tensor(v),))
    # error of the central difference: ε²/6 · |f'''| with |f'''| ≤ ‖W2‖·max|tanh'''|·‖W1 v‖³
    # (|tanh'''| ≤ 2) plus round-off u·|f|/ε
    bound = (1e-8 / 6) * np.linalg.norm(l2.W.data, 2) * 2 * np.max(
        np.linalg.norm(v @ l1.W.data.T, axis=1)) ** 3 + 1e-16 * 10 / 1e-4
    assert np.abs(got - want.numpy()).max() < bound


def test_sobolev_loss_zero_for_equal_nets_and_beta0_is_logit_regression():
    rng = np.random.default_rng(4)
    f, _ = _mlp(4, 6, 3, 5)
    g, _ = _mlp(4, 6, 3, 9)
    x = rng.standard_normal((7, 4))
    assert sobolev_loss_t(f, f, x, n_directions=3, rng=0).item() == pytest.approx(0.0, abs=1e-20)
    with no_grad():
        d = f(Tensor(x)).data - g(Tensor(x)).data
    assert sobolev_loss_t(f, g, x, beta=0.0).item() == pytest.approx(
        0.5 * (d * d).sum() / 7, rel=1e-14)
    # the derivative term is non-negative: beta > 0 adds to the value term
    assert sobolev_loss_t(f, g, x, beta=1.0, rng=0).item() > sobolev_loss_t(f, g, x,
                                                                             beta=0.0).item()


def test_sobolev_loss_gradcheck_wrt_student_params():
    rng = np.random.default_rng(5)
    g, _ = _mlp(3, 4, 2, 9)
    x = rng.standard_normal((4, 3))
    l1 = Linear(3, 4, rng=1)
    W2 = rng.standard_normal((2, 4))

    def loss(W1, W2_):
        def f(xx):
            return F.matmul(F.tanh(F.linear(xx, W1, l1.b)), F.transpose(W2_))
        return sobolev_loss_t(f, g, x, n_directions=2, beta=0.7, eps=1e-3, rng=0)

    r = gradcheck(loss, [l1.W.data.copy(), W2])
    assert r["max_abs_err"] < 1e-7


def test_sobolev_input_derivatives_are_learned():
    """A student trained with the derivative term matches the teacher's Jacobian better than
    one trained on the values alone, from the same few inputs (Czarnecki et al.'s point)."""
    from refimpl.nn import Adam

    rng = np.random.default_rng(6)
    teacher, _ = _mlp(2, 8, 1, 20)
    x = rng.uniform(-2, 2, (6, 2))
    x_test = rng.uniform(-2, 2, (200, 2))
    errs = {}
    for beta in (0.0, 1.0):
        f, (l1, l2) = _mlp(2, 16, 1, 30)
        opt = Adam([l1.W, l1.b, l2.W, l2.b], lr=1e-2)
        for step in range(600):
            opt.zero_grad()
            sobolev_loss_t(f, teacher, x, n_directions=2, beta=beta, rng=step).backward()
            opt.step()
        v = rng.standard_normal(x_test.shape)
        with no_grad():
            dj = (directional_derivative_t(f, x_test, v).data
                  - directional_derivative_t(teacher, x_test, v).data)
        errs[beta] = float(np.sqrt((dj ** 2).mean()))
    assert errs[1.0] < errs[0.0]


def test_sobolev_bad_input():
    f, _ = _mlp(2, 3, 1, 0)
    with pytest.raises(ValueError, match="v"):
        directional_derivative_t(f, np.ones((3, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="eps"):
        directional_derivative_t(f, np.ones((3, 2)), np.ones((3, 2)), eps=0.0)
    with pytest.raises(ValueError, match="n_directions"):
        sobolev_loss_t(f, f, np.ones((3, 2)), n_directions=0)
    g, _ = _mlp(2, 3, 2, 0)
    with pytest.raises(ValueError, match="shape"):
        sobolev_loss_t(f, g, np.ones((3, 2)))


# ------------------------------------------------------------------------------ quantised KD
def test_quantize_student_forward_uses_quantised_weights():
    from refimpl.quantization import quantize_uniform

    m = RNNClassifier(vocab_size=20, d_emb=4, d_hidden=5, n_classes=2, rng=0)
    X, L = np.array([[1, 2, 3]]), np.array([3])
    with no_grad():
        full = m(X, L).data
    names = quantize_student_(m, bits=2)
    assert "fc" in names and "embedding" in names
    with no_grad():
        q = m(X, L).data
    assert not np.allclose(q, full)
    # the same forward with the weights replaced by Q(W) (and no transform) gives the same logits
    m2 = RNNClassifier(vocab_size=20, d_emb=4, d_hidden=5, n_classes=2, rng=0)
    for (k, p), (_, p2) in zip(m.named_parameters(), m2.named_parameters()):
        if k.split(".")[-1].startswith("W"):
            p2.data[:] = quantize_uniform(p.data, 2)
    with no_grad():
        np.testing.assert_allclose(m2(X, L).data, q, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="bits"):
        quantize_student_(m, bits=0)


# ------------------------------------------------------------------------------ §4.3
def test_selective_distillation_flags_hand_values():
    s = np.array([0.80, 0.90, 0.91, 0.70])
    t = np.array([0.85, 0.89, 0.90, 0.70])
    np.testing.assert_array_equal(selective_distillation_flags(s, t, tau=0.01),
                                  [True, False, False, True])
    np.testing.assert_array_equal(selective_distillation_flags(s, t, tau=0.0),
                                  [True, False, False, False])
    with pytest.raises(ValueError, match="teacher_scores"):
        selective_distillation_flags(s, t[:2])


def test_teacher_assistant_chain_shapes_and_teacher_untouched():
    X, L, y = _toy_task()
    teacher = RNNClassifier(vocab_size=30, d_emb=8, d_hidden=16, n_classes=2, rng=0)
    before = {k: v.data.copy() for k, v in teacher.named_parameters()}
    sizes_seen = []

    def make(size, seed):
        sizes_seen.append(size)
        return RNNClassifier(vocab_size=30, d_emb=4, d_hidden=size, n_classes=2, rng=seed)

    chain = teacher_assistant_chain(teacher, make, [8, 4, 2], (X, L, y), epochs=1, rng=0,
                                    progress=False)
    assert sizes_seen == [8, 4, 2] and [m.rnn.hidden_size for m in chain] == [8, 4, 2]
    for k, v in teacher.named_parameters():
        np.testing.assert_array_equal(v.data, before[k])
    chain2 = teacher_assistant_chain(teacher, make, [8, 4, 2], (X, L, y), epochs=1, rng=0,
                                     progress=False)
    for a, b in zip(chain, chain2):  # same seed, bit-identical
        for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            np.testing.assert_array_equal(p.data, q.data)
    with pytest.raises(ValueError, match="sizes"):
        teacher_assistant_chain(teacher, make, [], (X, L, y))
