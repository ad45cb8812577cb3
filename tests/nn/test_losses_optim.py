"""Losses against torch.nn.functional (values and gradients), Hinton's T² scaling, optimisers
against torch.optim step for step, gradient clipping, and bad input."""

import numpy as np
import pytest

from refimpl.nn import (SGD, Adam, AdamW, Linear, Parameter, Tensor, clip_grad_norm_,
                        cross_entropy, distillation_loss, gradcheck, kl_div_with_temperature,
                        mse, nll)
from refimpl.nn import functional as F

R = np.random.default_rng(0)


def _grad_of(fn, x):
    t = Tensor(x, requires_grad=True)
    out = fn(t)
    out.backward()
    return out.item(), t.grad


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore", [None, 0])
def test_cross_entropy_and_nll_match_torch(torch, shape, reduction, ignore):
    logits = R.standard_normal(shape) * 3
    y = R.integers(0, shape[-1], shape[:-1])
    y.flat[0] = 0
    y.flat[-1] = 1
    tf = torch.nn.functional
    ii = -100 if ignore is None else ignore
    tl = torch.tensor(logits, requires_grad=True)
    flat = tl.reshape(-1, shape[-1])
    ref = tf.cross_entropy(flat, torch.tensor(y.reshape(-1)), ignore_index=ii,
                           reduction=reduction)
    ref.backward()
    val, g = _grad_of(lambda t: cross_entropy(t, y, ignore_index=ignore, reduction=reduction),
                      logits)
    assert abs(val - ref.item()) < 1e-12
    np.testing.assert_allclose(g, tl.grad.numpy(), atol=1e-12)
    val2, g2 = _grad_of(lambda t: nll(F.log_softmax(t), y, ignore_index=ignore,
                                      reduction=reduction), logits)
    assert abs(val2 - val) < 1e-12
    np.testing.assert_allclose(g2, g, atol=1e-12)


def test_cross_entropy_none_and_gradcheck():
    y = np.array([1, 0, 2])
    per = cross_entropy(Tensor(np.zeros((3, 3))), y, reduction="none")
    np.testing.assert_allclose(per.data, np.log(3.0), rtol=1e-15)
    res = gradcheck(lambda t: cross_entropy(t, y, ignore_index=0), [R.standard_normal((3, 3))])
    assert res["max_abs_err"] < 1e-8


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_kl_with_temperature_matches_torch(torch, T):
    s, t = R.standard_normal((6, 5)), R.standard_normal((6, 5)) * 2
    tf = torch.nn.functional
    ts = torch.tensor(s, requires_grad=True)
    ref = tf.kl_div(tf.log_softmax(ts / T, -1), tf.softmax(torch.tensor(t) / T, -1),
                    reduction="batchmean") * T * T
    ref.backward()
    val, g = _grad_of(lambda a: kl_div_with_temperature(a, t, T), s)
    assert abs(val - ref.item()) < 1e-12
    np.testing.assert_allclose(g, ts.grad.numpy(), atol=1e-12)
    # without the T² factor, and with teacher probabilities
    val_nos, _ = _grad_of(lambda a: kl_div_with_temperature(a, t, T, scale_by_T2=False), s)
    assert abs(val_nos * T * T - val) < 1e-12
    p = np.exp(t / T) / np.exp(t / T).sum(-1, keepdims=True)
    val_p, g_p = _grad_of(lambda a: kl_div_with_temperature(a, p, T, teacher_is_probs=True), s)
    assert abs(val_p - val) < 1e-12
    np.testing.assert_allclose(g_p, g, atol=1e-12)


def test_kl_gradient_is_T_times_prob_difference_and_zero_at_equal_logits():
    """∂(T² KL)/∂z_s = T (p_s − p_t) / N (Hinton et al. 2015, §2)."""
    s, t, T = R.standard_normal((3, 4)), R.standard_normal((3, 4)), 3.0
    _, g = _grad_of(lambda a: kl_div_with_temperature(a, t, T), s)
    sm = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(g, T * (sm(s / T) - sm(t / T)) / 3, atol=1e-13)
    v, g0 = _grad_of(lambda a: kl_div_with_temperature(a, s, T), s)
    assert abs(v) < 1e-14 and np.abs(g0).max() < 1e-14
    # one-hot teacher probabilities: 0 log 0 = 0, KL = CE
    p = np.eye(4)[[0, 2, 3]]
    kl, _ = _grad_of(lambda a: kl_div_with_temperature(a, p, 1.0, teacher_is_probs=True), s)
    assert abs(kl - cross_entropy(Tensor(s), np.array([0, 2, 3])).item()) < 1e-12


def test_mse_and_distillation_loss(torch):
    a, b = R.standard_normal((4, 3)), R.standard_normal((4, 3))
    val, g = _grad_of(lambda t: mse(t, b), a)
    ta = torch.tensor(a, requires_grad=True)
    ref = torch.nn.functional.mse_loss(ta, torch.tensor(b))
    ref.backward()
    assert abs(val - ref.item()) < 1e-14
    np.testing.assert_allclose(g, ta.grad.numpy(), atol=1e-14)
    y = np.array([0, 1, 2, 0])
    s = Tensor(a)
    d = distillation_loss(s, b, y, T=2.0, alpha=0.3).item()
    want = 0.3 * kl_div_with_temperature(s, b, 2.0).item() + 0.7 * cross_entropy(s, y).item()
    assert abs(d - want) < 1e-14


def test_losses_bad_input_names_the_argument():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="logits contains NaN"):
        cross_entropy(np.full((3, 4), np.nan), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\)"):
        cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="y must have shape"):
        cross_entropy(x, np.array([0, 1]))
    with pytest.raises(TypeError, match="y must be an integer"):
        cross_entropy(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(x, np.zeros(3, int), reduction="avg")
    with pytest.raises(ValueError, match="ignore_index"):
        cross_entropy(x, np.zeros(3, int), ignore_index=0)
    with pytest.raises(ValueError, match="target contains NaN"):
        mse(x, np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="target must have the shape"):
        mse(x, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="T must be in"):
        kl_div_with_temperature(x, x, T=0.0)
    with pytest.raises(ValueError, match="teacher contains NaN"):
        kl_div_with_temperature(x, np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="teacher probabilities"):
        kl_div_with_temperature(x, np.ones((3, 4)), teacher_is_probs=True)
    with pytest.raises(ValueError, match="student_logits contains NaN"):
        kl_div_with_temperature(np.full((3, 4), np.inf), x)


# ------------------------------------------------------------------ optimisers
def _run_both(torch, make_ours, make_theirs, steps=5):
    rng = np.random.default_rng(1)
    W0 = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(steps)]
    p = Parameter(W0.copy())
    opt = make_ours([p])
    tp = torch.nn.Parameter(torch.tensor(W0.copy()))
    topt = make_theirs([tp])
    for g in grads:
        p.grad = g.copy()
        opt.step()
        tp.grad = torch.tensor(g)
        topt.step()
    return np.abs(p.data - tp.detach().numpy()).max()


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.1, momentum=0.9),
                                dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                                dict(lr=0.1, momentum=0.5, dampening=0.3)])
def test_sgd_matches_torch(torch, kw):
    err = _run_both(torch, lambda ps: SGD(ps, **kw), lambda ps: torch.optim.SGD(ps, **kw))
    assert err < 1e-14, err


@pytest.mark.parametrize("kw", [dict(lr=1e-2), dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6),
                                dict(lr=1e-2, weight_decay=0.1)])
def test_adam_and_adamw_match_torch(torch, kw):
    err = _run_both(torch, lambda ps: Adam(ps, **kw), lambda ps: torch.optim.Adam(ps, **kw))
    assert err < 1e-14, err
    err = _run_both(torch, lambda ps: AdamW(ps, **kw), lambda ps: torch.optim.AdamW(ps, **kw))
    assert err < 1e-14, err


def test_clip_grad_norm_matches_torch(torch):
    rng = np.random.default_rng(2)
    gs = [rng.standard_normal((3, 2)) * 5, rng.standard_normal(4)]
    ps = [Parameter(np.zeros_like(g)) for g in gs]
    for p, g in zip(ps, gs):
        p.grad = g.copy()
    tps = [torch.nn.Parameter(torch.zeros(g.shape)) for g in gs]
    for p, g in zip(tps, gs):
        p.grad = torch.tensor(g)
    n = clip_grad_norm_(ps, 1.5)
    tn = torch.nn.utils.clip_grad_norm_(tps, 1.5)
    assert abs(n - tn.item()) < 1e-12
    for p, tpp in zip(ps, tps):
        np.testing.assert_allclose(p.grad, tpp.grad.numpy(), atol=1e-14)
    assert abs(np.sqrt(sum((p.grad ** 2).sum() for p in ps)) - 1.5) < 1e-5
    assert clip_grad_norm_(ps, 100.0) == pytest.approx(1.5, abs=1e-5)  # no-op below max


def test_optimizer_trains_a_linear_regression_and_bad_input():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]])
    lin = Linear(3, 1, rng=0)
    opt = Adam(lin.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        mse(lin(X), y).backward()
        opt.step()
    np.testing.assert_allclose(lin.W.data, [[1.0, -2.0, 0.5]], atol=1e-3)
    with pytest.raises(ValueError, match="lr"):
        SGD(lin.parameters(), lr=-1.0)
    with pytest.raises(ValueError, match="params must contain"):
        Adam([], lr=0.1)
    with pytest.raises(TypeError, match="params must be Parameters"):
        Adam([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        Adam(lin.parameters(), betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="nesterov"):
        SGD(lin.parameters(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(lin.parameters(), 0.0)
