"""§4.1 and §4.4 distillation objectives: hand-worked values, gradient checks, properties, and
cross-checks against torch (KLDivLoss batchmean × T², cross_entropy, mse_loss, kl_div),
scipy.optimize.linear_sum_assignment and POT's ot.emd."""

import numpy as np
import pytest

from refimpl.distillation import (
    attention_kl,
    attention_kl_t,
    emd_layer_mapping,
    fsp_loss,
    fsp_loss_t,
    fsp_matrix,
    kd_loss,
    kd_loss_t,
    logit_regression_loss,
    noisy_teacher_logits,
    pkd_layer_map,
    pkd_loss_t,
    theseus_replace_rate,
    value_relation,
    value_relation_t,
)
from refimpl.nn import Tensor, gradcheck


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------ kd_loss
def test_kd_loss_hand_values():
    s = np.array([[0.0, 0.0]])
    t = np.array([[np.log(3.0), 0.0]])  # softmax(t) = (3/4, 1/4)
    want = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.5)
    assert kd_loss(s, t) == pytest.approx(want, rel=1e-14)
    # T = 2: softmax(t/2) = (√3, 1)/(√3 + 1), times T² = 4
    p = np.array([np.sqrt(3.0), 1.0]) / (np.sqrt(3.0) + 1.0)
    assert kd_loss(s, t, T=2.0) == pytest.approx(4 * np.sum(p * np.log(p / 0.5)), rel=1e-14)
    # with labels: α soft + (1 − α) CE; CE of uniform logits = log 2
    assert kd_loss(s, t, T=1.0, labels=np.array([1]), alpha=0.25) == pytest.approx(
        0.25 * want + 0.75 * np.log(2.0), rel=1e-14)
    assert kd_loss(t, t, T=3.0) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("T,alpha", [(1.0, 1.0), (2.0, 0.5), (4.0, 0.1)])
def test_kd_loss_matches_torch(torch, T, alpha):
    rng = np.random.default_rng(0)
    s, t = rng.standard_normal((6, 5)) * 2, rng.standard_normal((6, 5)) * 2
    y = rng.integers(0, 5, 6)
    F = torch.nn.functional
    st = torch.tensor(s, requires_grad=True)
    soft = torch.nn.KLDivLoss(reduction="batchmean")(F.log_softmax(st / T, -1),
                                                     F.softmax(torch.tensor(t) / T, -1))
    want = alpha * T * T * soft + (1 - alpha) * F.cross_entropy(st, torch.tensor(y))
    want.backward()
    assert kd_loss(s, t, T, y, alpha) == pytest.approx(float(want.detach()), rel=1e-12,
                                                     abs=1e-14)
    so = Tensor(s, requires_grad=True)
    kd_loss_t(so, t, T, y, alpha).backward()
    np.testing.assert_allclose(so.grad, st.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_kd_loss_gradcheck_and_T2_keeps_the_gradient_scale():
    rng = np.random.default_rng(1)
    s, t = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    y = rng.integers(0, 6, 4)
    assert gradcheck(lambda a: kd_loss_t(a, t, 3.0, y, 0.7), [s])["max_rel_err"] < 1e-5

    def soft_grad_norm(T, scale=True):
        so = Tensor(s - s.mean(-1, keepdims=True), requires_grad=True)
        tt = t - t.mean(-1, keepdims=True)
        from refimpl.nn.losses import kl_div_with_temperature

        kl_div_with_temperature(so, tt, T, scale_by_T2=scale).backward()
        return np.linalg.norm(so.grad)

    # with T²: ∂L/∂s = T (p_T^s − p_T^t) / B → (s − t) / (C B) for centred logits, with an
    # O(1/T) correction: the gradient's scale converges instead of vanishing
    limit = np.linalg.norm((s - s.mean(-1, keepdims=True)) - (t - t.mean(-1, keepdims=True))) / (
        6 * 4)
    err = [abs(soft_grad_norm(T) / limit - 1) for T in (20.0, 80.0, 320.0)]
    assert err[2] < 1e-3
    assert 3.5 < err[0] / err[1] < 4.5 and 3.5 < err[1] / err[2] < 4.5  # O(1/T)
    # without T² it falls off as 1/T²
    g_no = [soft_grad_norm(T, scale=False) for T in (20.0, 80.0)]
    assert g_no[0] / g_no[1] == pytest.approx(16.0, rel=0.02)


@pytest.mark.parametrize("kw,match", [
    (dict(T=0.0), "T"), (dict(T=-1.0), "T"), (dict(alpha=1.5), "alpha"),
    (dict(alpha=-0.1), "alpha"), (dict(labels=np.array([0, 7])), "labels"),
    (dict(labels=np.array([0.0, 1.0])), "labels"),
])
def test_kd_loss_bad_input(kw, match):
    s, t = np.zeros((2, 3)), np.ones((2, 3))
    with pytest.raises(ValueError, match=match):
        kd_loss(s, t, **kw)


def test_kd_loss_bad_arrays():
    with pytest.raises(ValueError, match="teacher_logits"):
        kd_loss(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="student_logits"):
        kd_loss(np.array([[np.nan, 0.0]]), np.zeros((1, 2)))


# ------------------------------------------------------------------------------ §4.1 others
def test_logit_regression_matches_torch_mse(torch):
    rng = np.random.default_rng(2)
    s, t = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    want = float(torch.nn.functional.mse_loss(torch.tensor(s), torch.tensor(t))) * 4 / 2
    assert logit_regression_loss(s, t) == pytest.approx(want, rel=1e-13)


def test_noisy_teacher_is_additive_seeded_and_does_not_mutate():
    z = np.arange(12.0).reshape(4, 3)
    z0 = z.copy()
    np.testing.assert_array_equal(noisy_teacher_logits(z, 1.0, 0.0, rng=0), z)
    a = noisy_teacher_logits(z, 0.5, 1.0, rng=3)
    np.testing.assert_array_equal(a, noisy_teacher_logits(z, 0.5, 1.0, rng=3))
    np.testing.assert_array_equal(z, z0)
    big = noisy_teacher_logits(np.zeros((20000, 3)), 0.5, 0.3, rng=1)
    drawn = np.any(big != 0, axis=1)
    assert abs(drawn.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 20000)
    assert abs(big[drawn].std() - 0.5) < 0.01  # additive, independent of the logit's size
    with pytest.raises(ValueError, match="sigma"):
        noisy_teacher_logits(z, -1.0, 0.5)


def test_fsp_matrix_hand_value_and_loss_gradcheck():
    F1 = np.array([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])  # (1, 3, 2)
    F2 = np.array([[[1.0], [1.0], [2.0]]])  # (1, 3, 1)
    np.testing.assert_allclose(fsp_matrix(F1, F2), [[[3.0 / 3], [4.0 / 3]]], rtol=1e-15)
    rng = np.random.default_rng(4)
    t1, t2 = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 4))
    s1, s2 = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 4))
    r = gradcheck(lambda a, b: fsp_loss_t([(t1, t2)], [(a, b)]), [s1, s2])
    assert r["max_rel_err"] < 1e-5
    Gt, Gs = fsp_matrix(t1, t2), fsp_matrix(s1, s2)
    assert fsp_loss([(t1, t2)], [(s1, s2)]) == pytest.approx(((Gt - Gs) ** 2).sum() / 2,
                                                            rel=1e-13)
    with pytest.raises(ValueError, match="F2"):
        fsp_matrix(t1, rng.standard_normal((2, 4, 4)))


# ------------------------------------------------------------------------------ MiniLM
def test_value_relation_matches_torch_and_gradcheck(torch):
    rng = np.random.default_rng(5)
    V = rng.standard_normal((2, 3, 4, 5))
    R = value_relation(V)
    Vt = torch.tensor(V)
    want = torch.softmax(Vt @ Vt.transpose(-1, -2) / np.sqrt(5), dim=-1).numpy()
    np.testing.assert_allclose(R, want, rtol=1e-12, atol=1e-15)
    assert gradcheck(lambda v: (value_relation_t(v) ** 2).sum(), [V])["max_rel_err"] < 1e-5


def test_attention_kl_hand_values_and_zero_log_zero():
    At = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])  # (1, 1, 2, 2)
    As = np.array([[[[0.5, 0.5], [0.25, 0.75]]]])
    row0 = np.log(2.0)  # 1·log(1/0.5) + 0·log 0
    row1 = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)
    assert attention_kl(At, As) == pytest.approx((row0 + row1) / 2, rel=1e-14)
    assert attention_kl(At, At) == 0.0
    assert attention_kl(As, np.array([[[[1.0, 0.0], [0.25, 0.75]]]])) == np.inf
    with pytest.raises(ValueError, match="A_student"):
        attention_kl(At, As * 2)


def test_attention_kl_matches_torch_and_its_tape_twin(torch):
    rng = np.random.default_rng(6)
    At = _softmax(rng.standard_normal((2, 2, 3, 4)))
    scores = rng.standard_normal((2, 2, 3, 4))
    As = _softmax(scores)
    tk = torch.nn.functional.kl_div(torch.log(torch.tensor(As)), torch.tensor(At),
                                    reduction="sum") / (2 * 2 * 3)
    assert attention_kl(At, As) == pytest.approx(float(tk), rel=1e-12)
    assert float(attention_kl_t(At, scores).data) == pytest.approx(float(tk), rel=1e-12)
    assert gradcheck(lambda s: attention_kl_t(At, s), [scores])["max_rel_err"] < 1e-5


# ------------------------------------------------------------------------------ BERT-EMD
def test_emd_matches_pot_and_its_constraints(pot):
    rng = np.random.default_rng(7)
    for M, N in ((12, 6), (6, 4), (3, 7)):
        D = rng.uniform(0, 2, (M, N))
        wt, ws = rng.uniform(0.1, 1, M), rng.uniform(0.1, 1, N)
        flow, total = emd_layer_mapping(D, wt, ws)
        a, b = wt / wt.sum(), ws / ws.sum()
        np.testing.assert_allclose(flow.sum(1), a, atol=1e-9)
        np.testing.assert_allclose(flow.sum(0), b, atol=1e-9)
        want = pot.emd2(a, b, D)
        assert total == pytest.approx(float(want), rel=1e-9, abs=1e-12)


def test_emd_with_uniform_square_weights_is_an_assignment():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(8)
    D = rng.uniform(0, 1, (5, 5))
    r, c = linear_sum_assignment(D)
    _, total = emd_layer_mapping(D, np.ones(5), np.ones(5))
    assert total == pytest.approx(D[r, c].sum() / 5, rel=1e-9)
    _, zero = emd_layer_mapping(1 - np.eye(4), np.ones(4), np.ones(4))
    assert zero == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("args,match", [
    ((-np.ones((2, 2)), np.ones(2), np.ones(2)), "cost"),
    ((np.ones((2, 3)), np.ones(3), np.ones(3)), "teacher_weights"),
    ((np.ones((2, 3)), np.ones(2), -np.ones(3)), "student_weights"),
    ((np.ones((2, 3)), np.zeros(2), np.ones(3)), "teacher_weights"),
])
def test_emd_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        emd_layer_mapping(*args)


# ------------------------------------------------------------------------------ Theseus, PKD
def test_theseus_schedule():
    assert theseus_replace_rate(0, 0.001, 0.3) == 0.3
    assert theseus_replace_rate(200, 0.001, 0.3) == pytest.approx(0.5)
    assert theseus_replace_rate(10**6, 0.001, 0.3) == 1.0
    with pytest.raises(ValueError, match="b"):
        theseus_replace_rate(0, 0.1, 1.5)
    with pytest.raises(ValueError, match="step"):
        theseus_replace_rate(-1, 0.1, 0.5)


def test_pkd_layer_maps_and_loss():
    assert pkd_layer_map(12, 6, "skip") == [2, 4, 6, 8, 10]
    assert pkd_layer_map(12, 6, "last") == [7, 8, 9, 10, 11]
    assert pkd_layer_map(12, 3, "skip") == [4, 8]
    assert pkd_layer_map(6, 1) == []
    with pytest.raises(ValueError, match="divide"):
        pkd_layer_map(12, 5, "skip")
    with pytest.raises(ValueError, match="strategy"):
        pkd_layer_map(12, 6, "middle")
    rng = np.random.default_rng(9)
    t = [rng.standard_normal((3, 4)) for _ in range(2)]
    s = [rng.standard_normal((3, 4)) for _ in range(2)]
    assert gradcheck(lambda a, b: pkd_loss_t([a, b], t), s)["max_rel_err"] < 1e-5
    # only directions count: a positively scaled copy of the teacher costs 0
    assert float(pkd_loss_t([Tensor(2.5 * t[0])], [t[0]]).data) == pytest.approx(0, abs=1e-14)
