"""Tests for refimpl.pruning.weights (Survey §2.1)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
def _lsq_problem(rng):
    X = rng.normal(size=(100, 10))
    y = X @ rng.normal(size=10)

    def lg(p):
        r = X @ p["w"] - y
        return 0.5 * float(r @ r) / 100, {"w": X.T @ r / 100}

    return lg


def test_prune_train_reaches_target_and_no_revival(rng):
    lg = _lsq_problem(rng)
    p0 = {"w": rng.normal(size=10)}
    sched = lambda t: pw.zhu_gupta_sparsity(t, 0.6, n_prunes=5, frequency=2)  # noqa: E731
    p, M, hist = pw.prune_train(p0, lg, 30, 0.1, sparsity_fn=sched)
    assert (~M["w"]).sum() == 6 and np.all(p["w"][~M["w"]] == 0)
    assert np.array_equal(p0["w"], p0["w"])  # input not replaced
    assert len(hist) == 30


def test_prune_train_revival_lets_weights_return(rng):
    # start with the largest-true weights masked: without revival they stay pruned
    X = np.eye(4)
    y = np.array([5.0, 0.1, 0.1, 0.1])

    def lg(p):
        r = X @ p["w"] - y
        return 0.5 * float(r @ r), {"w": X.T @ r}

    init = {"w": np.array([0.0, 1.0, 1.0, 1.0])}
    masks = {"w": np.array([False, True, True, True])}
    thr = lambda t: 0.5  # noqa: E731
    p_no, M_no, _ = pw.prune_train(init, lg, 20, 0.3, threshold_fn=thr, masks=masks)
    p_yes, M_yes, _ = pw.prune_train(init, lg, 20, 0.3, threshold_fn=thr, masks=masks,
                                     revive=True)
    assert not M_no["w"][0] and M_yes["w"][0]
    assert p_yes["w"][0] > 4.0


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
    lg = _lsq_problem(rng)
    p, sparse, hist = pw.dsd_train({"w": rng.normal(size=10)}, lg, 0.5, steps=(20, 20, 20),
                                   lr=0.1)
    assert (sparse["w"] == 0).sum() == 5 and np.count_nonzero(p["w"]) == 10
    assert len(hist) == 60 and hist[-1] < hist[0]


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
