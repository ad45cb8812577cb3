"""Tests for refimpl.pruning.weights (Survey §2.1)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import nn
from refimpl.pruning import weights as pw

from _numerics import err_message as _err




def _quadratic(rng, n=60, d=6):
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    return X, y, w


# --------------------------------------------------------------------------- MLP, Hessian
def test_mlp_gradient_matches_finite_differences(rng):
    X = rng.normal(size=(20, 3))
    y = rng.normal(size=20)
    w = pw.mlp_init(3, 4, rng)
    _, g = pw.mlp_loss_grad(w, X, y, 4)
    fd = np.array([(pw.mlp_loss_grad(w + e, X, y, 4)[0] - pw.mlp_loss_grad(w - e, X, y, 4)[0])
                   / 2e-6 for e in np.eye(w.size) * 1e-6])
    assert np.allclose(g, fd, atol=1e-8), _err(g, fd)


def test_output_jacobian_matches_finite_differences(rng):
    X = rng.normal(size=(5, 3))
    w = pw.mlp_init(3, 4, rng)
    J = pw.mlp_output_jacobian(w, X, 4)
    fd = np.stack([(pw.mlp_forward(w + e, X, 4) - pw.mlp_forward(w - e, X, 4)) / 2e-6
                   for e in np.eye(w.size) * 1e-6], axis=1)
    assert np.allclose(J, fd, atol=1e-8), _err(J, fd)


def test_hessian_fd_exact_on_quadratic(rng):
    X, y, w = _quadratic(rng)
    H = pw.hessian_fd(lambda v: X.T @ (X @ v - y) / len(y), w)
    assert np.allclose(H, X.T @ X / len(y), atol=1e-9)


# --------------------------------------------------------------------------- OBD / OBS
def test_obd_hand_value():
    assert pw.obd_saliency(np.array([2.0, -1.0]), np.array([3.0, 4.0])).tolist() == [6.0, 2.0]


def test_obd_equals_loss_change_on_separable_quadratic(rng):
    # diagonal Hessian: OBD is exact
    X = rng.normal(size=(200, 4)) * np.array([1.0, 2.0, 0.5, 3.0])
    X = np.linalg.qr(X)[0] * np.array([1.0, 2.0, 0.5, 3.0])  # orthogonal columns
    y = X @ np.array([1.0, -2.0, 0.5, 0.1]) + 0.01 * rng.normal(size=200)
    w = np.linalg.lstsq(X, y, rcond=None)[0]
    loss = lambda v: 0.5 * np.mean((X @ v - y) ** 2)  # noqa: E731
    h = np.diag(X.T @ X / 200)
    s = pw.obd_saliency(w, h)
    true = [loss(np.where(np.arange(4) == i, 0.0, w)) - loss(w) for i in range(4)]
    assert np.allclose(s, true, rtol=1e-8), _err(s, true)


def test_obs_update_zeroes_weight_and_matches_refit(rng):
    X, y, w = _quadratic(rng)
    Hinv = np.linalg.inv(X.T @ X / len(y))
    loss = lambda v: 0.5 * np.mean((X @ v - y) ** 2)  # noqa: E731
    for i in range(w.size):
        wn, Li = pw.obs_update(w, Hinv, i)
        assert wn[i] == 0.0
        keep = np.arange(w.size) != i
        refit = np.zeros_like(w)
        refit[keep] = np.linalg.lstsq(X[:, keep], y, rcond=None)[0]
        assert np.allclose(wn, refit, atol=1e-10), _err(wn, refit)
        assert abs(loss(wn) - loss(w) - Li) < 1e-12
    assert np.allclose(pw.obs_saliency(w, Hinv), w ** 2 / (2 * np.diag(Hinv)))


def test_obs_prune_iterated_equals_refit(rng):
    X, y, w = _quadratic(rng, d=8)
    Hinv = np.linalg.inv(X.T @ X / len(y))
    wp, mask, sal = pw.obs_prune(w, Hinv, 4)
    assert mask.sum() == 4 and np.all(wp[~mask] == 0) and len(sal) == 4
    refit = np.linalg.lstsq(X[:, mask], y, rcond=None)[0]
    assert np.allclose(wp[mask], refit, atol=1e-10), _err(wp[mask], refit)


def test_hassibi_recursion_equals_damped_inverse(rng):
    J = rng.normal(size=(30, 5))
    got = pw.hassibi_inverse_hessian(J, alpha=1e-3)
    want = np.linalg.inv(1e-3 * np.eye(5) + J.T @ J / 30)
    assert np.allclose(got, want, rtol=1e-9), _err(got, want)


def test_obs_rejects_bad_hinv():
    with pytest.raises(ValueError, match="H_inv"):
        pw.obs_saliency(np.ones(2), -np.eye(2))
    with pytest.raises(ValueError, match="H_inv"):
        pw.obs_saliency(np.ones(2), np.eye(3))


# --------------------------------------------------------------------------- magnitude
def test_magnitude_hand_value():
    W = np.array([[0.1, -3.0], [0.5, -0.2]])
    m = pw.magnitude_mask(W, 0.5)
    assert m.tolist() == [[False, True], [True, False]]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), s=st.floats(0, 0.99), seed=st.integers(0, 1000))
def test_magnitude_properties(n, s, seed):
    W = np.random.default_rng(seed).normal(size=n)
    m = pw.magnitude_mask(W, s)
    assert m.dtype == bool
    assert (~m).sum() == int(round(s * n))  # exact target
    if m.any() and (~m).any():
        assert np.abs(W[m]).min() >= np.abs(W[~m]).max()
    once = pw.apply_mask(W, m)
    assert np.array_equal(pw.apply_mask(once, m), once)  # idempotent


def test_magnitude_vs_torch_l1_unstructured(torch, rng):
    import torch.nn.utils.prune as tprune

    for s in (0.0, 0.3, 0.5, 0.9):
        W = rng.permutation(np.linspace(-1, 1, 200) + 1e-3)  # tie-free
        W = W.reshape(10, 20)
        lin = torch.nn.Linear(20, 10, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W))
        tprune.l1_unstructured(lin, "weight", amount=s)
        tm = lin.weight_mask.numpy().astype(bool)
        assert np.array_equal(pw.magnitude_mask(W, s), tm)


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1])
def test_bad_sparsity(bad):
    with pytest.raises(ValueError, match="sparsity"):
        pw.magnitude_mask(np.ones(4), bad)


def test_nan_weights_rejected():
    with pytest.raises(ValueError, match="W contains NaN"):
        pw.magnitude_mask(np.array([1.0, np.nan]), 0.5)


def test_allocation_schemes(rng):
    W = {"emb": rng.normal(0, 0.1, (20, 10)), "softmax": rng.normal(0, 1.0, (5, 10))}
    total = 250
    for scheme in ("class-blind", "class-uniform", "class-distribution"):
        M = pw.allocate_pruning(W, 0.6, scheme)
        pruned = sum((~m).sum() for m in M.values())
        assert pruned == round(0.6 * total)
    blind = pw.allocate_pruning(W, 0.6, "class-blind")
    # class-blind prunes the small-magnitude class much more
    assert (~blind["emb"]).mean() > (~blind["softmax"]).mean()
    uni = pw.allocate_pruning(W, 0.6, "class-uniform")
    assert (~uni["emb"]).mean() == (~uni["softmax"]).mean() == 0.6
    dist = pw.allocate_pruning(W, 0.6, "class-distribution")
    # |w| / sigma_c is identically distributed: both classes near 60 %
    assert abs((~dist["emb"]).mean() - 0.6) < 0.15 and abs((~dist["softmax"]).mean() - 0.6) < 0.2
    with pytest.raises(ValueError, match="scheme"):
        pw.allocate_pruning(W, 0.5, "blind")


# --------------------------------------------------------------------------- schedules
def test_narang_threshold_hand_values():
    # q=1, f=1, s=10, r=30, e=50: theta = 2/(40+60) = 0.02, phi = 0.03
    th = pw.narang_slope(1.0, 1, 10, 30, 50)
    assert th == pytest.approx(0.02)
    vals = [pw.narang_threshold(i, 1.0, 1, 10, 30, 50) for i in (9, 10, 29, 30, 49, 99)]
    assert vals == pytest.approx([0.0, 0.02, 0.4, 0.02 * 21 + 0.03, 1.02, 1.02])
    # monotone
    seq = [pw.narang_threshold(i, 1.0, 2, 10, 30, 50) for i in range(80)]
    assert np.all(np.diff(seq) >= 0)


def test_narang_bad_input():
    with pytest.raises(ValueError, match="ramp_itr"):
        pw.narang_threshold(0, 1.0, 1, 10, 5, 50)


def test_zhu_gupta_endpoints_and_monotone():
    f = lambda t: pw.zhu_gupta_sparsity(t, 0.9, 0.1, begin_step=5, n_prunes=4,  # noqa: E731
                                        frequency=3)
    assert f(0) == 0.1 and f(5) == pytest.approx(0.1) and f(17) == pytest.approx(0.9)
    assert f(100) == pytest.approx(0.9)
    assert f(8) == pytest.approx(0.9 - 0.8 * 0.75 ** 3)
    assert np.all(np.diff([f(t) for t in range(30)]) >= 0)
    with pytest.raises(ValueError, match="final_sparsity"):
        pw.zhu_gupta_sparsity(0, 1.0)


# --------------------------------------------------------------------------- iterative
class _Lin(nn.Module):
    """``f(X) = X w`` with one parameter vector ``w``."""

    def __init__(self, w):
        self.w = nn.Parameter(np.array(w, dtype=np.float64))

    def forward(self, X):
        return (self.w * X).sum(axis=1)


def _mse(out, y):
    r = out - y
    return (r * r).mean() * 0.5


def _half_sse(out, y):
    r = out - y
    return (r * r).sum() * 0.5


def _lsq_problem(rng):
    X = rng.normal(size=(100, 10))
    return X, X @ rng.normal(size=10)


def test_prune_train_reaches_target_and_no_revival(rng):
    X, y = _lsq_problem(rng)
    w0 = rng.normal(size=10)
    m = _Lin(w0)
    sched = lambda t: pw.zhu_gupta_sparsity(t, 0.6, n_prunes=5, frequency=2)  # noqa: E731
    M, hist = pw.prune_train(m, (X, y), epochs=30, lr=0.1, sparsity_fn=sched, names=["w"],
                             loss_fn=_mse)
    assert (~M["w"]).sum() == 6 and np.all(m.w.data[~M["w"]] == 0)
    assert len(hist.step_loss) == 30 and hist.step_loss[-1] < hist.step_loss[0]
    # without revival the masks only shrink: the kept set is a subset of the first mask's
    first = pw.magnitude_mask(w0, sched(0))
    assert np.all(first | ~M["w"])


def test_prune_train_equals_the_masked_sgd_recursion(rng):
    """Hand-unrolled: prune at step 0 and every 2 steps, masked gradient steps between."""
    X, y = _lsq_problem(rng)
    w0 = rng.normal(size=10)
    sched = lambda t: min(0.1 * t, 0.5)  # noqa: E731
    M, _ = pw.prune_train(m := _Lin(w0), (X, y), epochs=7, lr=0.05, sparsity_fn=sched,
                          prune_every=2, names=["w"], loss_fn=_mse)
    w, mask = w0.copy(), np.ones(10, bool)
    for t in range(7):
        if t % 2 == 0:
            mask &= pw.magnitude_mask(np.where(mask, w, 0.0), sched(t))
        w = np.where(mask, w, 0.0)
        w = np.where(mask, w - 0.05 * X.T @ (X @ w - y) / 100, 0.0)
    np.testing.assert_allclose(m.w.data, w, atol=1e-12)
    assert np.array_equal(M["w"], mask)


def test_prune_train_revival_lets_weights_return(rng):
    # start with the largest-true weights masked: without revival they stay pruned
    X = np.eye(4)
    y = np.array([5.0, 0.1, 0.1, 0.1])
    masks = {"w": np.array([False, True, True, True])}
    thr = lambda t: 0.5  # noqa: E731
    out = {}
    for revive in (False, True):
        m = _Lin([0.0, 1.0, 1.0, 1.0])
        M, _ = pw.prune_train(m, (X, y), epochs=20, lr=0.3, threshold_fn=thr, masks=masks,
                              names=["w"], revive=revive, loss_fn=_half_sse)
        out[revive] = (m.w.data.copy(), M["w"])
    assert not out[False][1][0] and out[True][1][0]
    assert out[False][0][0] == 0.0 and out[True][0][0] > 4.0
    assert masks["w"].tolist() == [False, True, True, True]  # the input mask is not modified


def test_prune_train_errors_name_the_argument(rng):
    X, y = _lsq_problem(rng)
    with pytest.raises(ValueError, match="exactly one of sparsity_fn and threshold_fn"):
        pw.prune_train(_Lin(np.ones(10)), (X, y), epochs=1, lr=0.1, names=["w"])
    with pytest.raises(ValueError, match="names contains parameters the model does not have"):
        pw.prune_train(_Lin(np.ones(10)), (X, y), epochs=1, lr=0.1, names=["v"],
                       sparsity_fn=lambda t: 0.5)
    with pytest.raises(ValueError, match="masks"):
        pw.prune_train(_Lin(np.ones(10)), (X, y), epochs=1, lr=0.1, names=["w"],
                       sparsity_fn=lambda t: 0.5, masks={"w": np.ones(3, bool)})


def test_rpp_prox_is_exact_minimiser(rng):
    w = rng.normal(size=50)
    g = rng.normal(size=50)
    alpha = pw.reweighted_l1_alpha(w, 0.1)
    lr, gamma = 0.3, 0.2
    out = pw.rpp_step(w, g, lr, gamma, alpha)
    v = w - lr * g
    grid = np.linspace(-4, 4, 80001)
    obj = (grid[None, :] - v[:, None]) ** 2 / (2 * lr) + gamma * alpha[:, None] * np.abs(grid)
    brute = grid[obj.argmin(1)]
    assert np.allclose(out, brute, atol=2e-4), _err(out, brute)
    assert np.allclose(alpha, 1 / (np.abs(w) + 0.1))


def test_dsd_phases(rng):
    X, y = _lsq_problem(rng)
    m = _Lin(rng.normal(size=10))
    sparse, masks, hist = pw.dsd_train(m, (X, y), 0.5, epochs=(20, 20, 20), lr=0.1,
                                       names=["w"], loss_fn=_mse)
    assert (sparse["w"] == 0).sum() == 5 and np.count_nonzero(m.w.data) == 10
    assert np.array_equal(sparse["w"] != 0, masks["w"])
    assert len(hist.step_loss) == 60 and hist.step_loss[-1] < hist.step_loss[0]


def test_dsd_equals_three_hand_phases(rng):
    X, y = _lsq_problem(rng)
    w0 = rng.normal(size=10)
    m = _Lin(w0)
    sparse, masks, _ = pw.dsd_train(m, (X, y), 0.3, epochs=(3, 4, 2), lr=0.05, names=["w"],
                                    loss_fn=_mse)

    def sgd(w, n, mask=None):
        for _ in range(n):
            w = w - 0.05 * X.T @ (X @ w - y) / 100
            w = w if mask is None else np.where(mask, w, 0.0)
        return w

    w = sgd(w0, 3)
    mask = pw.magnitude_mask(w, 0.3)
    ws = sgd(np.where(mask, w, 0.0), 4, mask)
    np.testing.assert_allclose(sparse["w"], ws, atol=1e-12)
    np.testing.assert_allclose(m.w.data, sgd(ws, 2), atol=1e-12)
    assert np.array_equal(masks["w"], mask)
    with pytest.raises(ValueError, match="epochs must have three entries"):
        pw.dsd_train(_Lin(w0), (X, y), 0.3, epochs=(1, 2), names=["w"], loss_fn=_mse)


def test_grow_and_prune_hand_case():
    W = np.array([[0.0, 1.0, 0.05, 2.0]])
    dW = np.array([[5.0, 0.1, 0.0, 0.2]])
    mask = np.array([[False, True, True, True]])
    Wn, mn = pw.grow_and_prune_step(W, dW, mask, grow_rate=0.5, prune_rate=0.3, lr=0.1)
    # grow: |grad| > median(0.15) and dormant -> index 0; prune: |w| < 30th pct of active
    assert mn.tolist() == [[True, True, False, True]]
    assert Wn[0, 0] == pytest.approx(-0.5) and Wn[0, 2] == 0.0


@pytest.mark.parametrize("tau,exc,msg", [("0.5", TypeError, "tau must have dtype kind"),
                                         (None, TypeError, "tau must be an array"),
                                         (-0.1, ValueError, "tau must have every value in"),
                                         (np.nan, ValueError, "tau contains NaN"),
                                         (1j, TypeError, "tau must be a real array")])
def test_soft_threshold_validates_tau(tau, exc, msg):
    """Issue #12: soft_threshold(tau="0.5") used to be accepted."""
    with pytest.raises(exc, match=msg):
        pw.soft_threshold(np.ones(3), tau)


def test_obd_mlp_runs_on_the_tape_and_equals_the_closed_form():
    """The §2.1.1 MLP is refimpl.nn ops on a flat vector; its tape gradient and per-sample
    Jacobian equal the closed-form derivatives of f(x) = aᵀ tanh(W1 x + b1) + c."""
    from refimpl.pruning import weights as pw

    rng = np.random.default_rng(0)
    N, D, H = 30, 3, 4
    X, y = rng.normal(size=(N, D)), rng.normal(size=N)
    w = pw.mlp_init(D, H, rng)
    W1, b1, a, c = w[:H * D].reshape(H, D), w[H * D:H * D + H], w[H * D + H:-1], w[-1]
    Z = np.tanh(X @ W1.T + b1)  # (N, H)
    r = Z @ a + c - y
    dr = r / N
    dpre = np.outer(dr, a) * (1 - Z ** 2)
    grad = np.concatenate([(dpre.T @ X).ravel(), dpre.sum(0), Z.T @ dr, [dr.sum()]])
    loss, g = pw.mlp_loss_grad(w, X, y, H)
    assert loss == pytest.approx(0.5 * float(r @ r) / N, rel=1e-14)
    np.testing.assert_allclose(g, grad, rtol=0, atol=1e-15)
    dp = a[None, :] * (1 - Z ** 2)
    J = np.concatenate([(dp[:, :, None] * X[:, None, :]).reshape(N, -1), dp, Z,
                        np.ones((N, 1))], axis=1)
    np.testing.assert_allclose(pw.mlp_output_jacobian(w, X, H), J, rtol=0, atol=1e-15)
    np.testing.assert_allclose(pw.mlp_forward(w, X, H), Z @ a + c, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="w must have shape"):
        pw.mlp_forward(w[:-1], X, H)
