"""Tests for §3.1 binarisation and §3.2 ternarisation."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.nn import Tensor, gradcheck
from refimpl.quantization import binary as qb
from refimpl.quantization import ternary as qt

from _numerics import err_message as _err

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)
vec = arrays(np.float64, st.integers(2, 40), elements=finite)




# ------------------------------------------------------------------ binary
def test_binarize_hand_values():
    np.testing.assert_array_equal(qb.binarize([-2.0, -0.0, 0.0, 3.0]), [-1, 1, 1, 1])
    np.testing.assert_array_equal(qb.bs_fixed([-2.0, 0.0, 3.0], 0.5, -0.25), [-0.25, 0.5, 0.5])


def test_bs_flexible_eq19_threshold():
    # threshold (c1 + c2)/2 = 0.25: w = 0.25 goes to c1 (>=), 0.2499 to c2
    out = qb.bs_flexible([0.25, 0.2499, -3.0, 9.0], 1.0, -0.5)
    np.testing.assert_array_equal(out, [1.0, -0.5, -0.5, 1.0])


def test_bs_flexible_init_is_2means_fixed_point(rng):
    W = np.concatenate([rng.normal(-2, 0.3, 300), rng.normal(1, 0.5, 200)])
    c1, c2 = qb.bs_flexible_init(W)
    up = W >= (c1 + c2) / 2
    assert c1 > c2
    assert abs(c1 - W[up].mean()) < 1e-12 and abs(c2 - W[~up].mean()) < 1e-12


def test_bs_flexible_ste_grads(rng):
    W = rng.standard_normal(20)
    c = Tensor(np.array([0.8, -0.6]), requires_grad=True)
    Wt = Tensor(W, requires_grad=True)
    dout = rng.standard_normal(20)
    out = qb.bs_flexible_ste(Wt, c)
    (out * dout).sum().backward()
    up = W >= 0.1
    np.testing.assert_allclose(c.grad, [dout[up].sum(), dout[~up].sum()], atol=1e-12)
    np.testing.assert_allclose(Wt.grad, dout)  # straight-through


def test_hard_sigmoid_and_stochastic_unbiased():
    np.testing.assert_allclose(qb.hard_sigmoid([-3.0, -1.0, 0.0, 0.5, 2.0]),
                               [0.0, 0.0, 0.5, 0.75, 1.0])
    w = np.array([-0.8, -0.2, 0.0, 0.4, 0.9])
    draws = np.stack([qb.binarize_stochastic(w, rng=s) for s in range(4000)])
    assert set(np.unique(draws)) <= {-1.0, 1.0}
    # E[w_b] = 2σ(w) − 1 = w on [−1, 1]; 4000 draws: s.e. ≤ 1/sqrt(4000) ≈ 0.016
    assert np.max(np.abs(draws.mean(0) - w)) < 5 / np.sqrt(4000), _err(draws.mean(0), w)


def test_stochastic_same_seed_identical():
    w = np.linspace(-1, 1, 50)
    np.testing.assert_array_equal(qb.binarize_stochastic(w, 3), qb.binarize_stochastic(w, 3))


def test_sign_ste_gradient_clipped():
    x = Tensor(np.array([0.5, -2.0, -0.3, 1.5]), requires_grad=True)
    qb.sign_ste(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("n", [1, 5, 9])
def test_bwn_equals_brute_force(rng, n):
    W = rng.standard_normal(n)
    alpha, B = qb.bwn(W)
    best = np.inf
    for signs in itertools.product((-1.0, 1.0), repeat=n):
        b = np.array(signs)
        a = max(W @ b / n, 0.0)  # optimal α for fixed B
        best = min(best, ((W - a * b) ** 2).sum())
    assert abs(((W - alpha * B) ** 2).sum() - best) < 1e-12


def test_bwn_per_row(rng):
    W = rng.standard_normal((4, 7))
    alpha, B = qb.bwn(W, axis=1)
    assert alpha.shape == (4, 1)
    np.testing.assert_allclose(alpha[:, 0], np.abs(W).mean(1))


def test_lab_closed_form_is_weighted_optimum(rng):
    n = 8
    w, d = rng.standard_normal(n), rng.uniform(0.1, 3.0, n)
    alpha, b = qb.lab_binarize(w, d)
    obj = lambda a, bb: ((a * bb - w) ** 2 * d).sum()  # noqa: E731
    best = min(obj(max((d * w) @ np.array(s) / d.sum(), 0), np.array(s))
               for s in itertools.product((-1.0, 1.0), repeat=n))
    assert abs(obj(alpha, b) - best) < 1e-12
    # with d = 1 LAB reduces to BWN
    assert abs(qb.lab_binarize(w, np.ones(n))[0] - qb.bwn(w)[0]) < 1e-15


def test_loss_aware_binarizer_reduces_loss(rng):
    A = rng.standard_normal((64, 16))
    w_true = np.sign(rng.standard_normal(16)) * 0.7
    y = A @ w_true
    lab = qb.LossAwareBinarizer([rng.standard_normal(16) * 0.1], lr=0.05)
    loss = lambda w: float(((A @ w - y) ** 2).mean())  # noqa: E731
    l0 = loss(lab.binary[0])
    for _ in range(200):
        g = 2 * A.T @ (A @ lab.binary[0] - y) / len(y)
        lab.step([g])
    assert loss(lab.binary[0]) < 1e-3 * max(l0, 1.0), (l0, loss(lab.binary[0]))
    assert len(np.unique(np.abs(lab.binary[0]))) == 1


def test_bwn_ste_gradcheck_of_surrogate(rng):
    # the STE is an identity gradient: d/dW sum(bwn_ste(W) * g) == g
    W = Tensor(rng.standard_normal(6), requires_grad=True)
    g = rng.standard_normal(6)
    (qb.bwn_ste(W) * g).sum().backward()
    np.testing.assert_allclose(W.grad, g)


@pytest.mark.parametrize("fn", [qb.binarize, qb.bwn, qt.ternary_connect, qt.twn, qt.twn_exact])
def test_bad_input_nan(fn):
    with pytest.raises(ValueError, match="W"):
        fn(np.array([1.0, np.nan]))


def test_lab_bad_d():
    with pytest.raises(ValueError, match="d"):
        qb.lab_binarize(np.ones(3), np.array([1.0, 0.0, 1.0]))


@settings(max_examples=25, deadline=None)
@given(vec)
def test_bwn_idempotent_and_in_codebook(W):
    alpha, B = qb.bwn(W)
    Q = alpha * B
    a2, B2 = qb.bwn(Q)
    np.testing.assert_allclose(a2 * B2, Q, atol=1e-12)
    assert set(np.unique(B)) <= {-1.0, 1.0}


# ------------------------------------------------------------------ ternary
def test_ternary_connect_eq27_boundaries():
    w = np.array([-0.5, -0.4999, 0.5, 0.5001, -2.0])
    np.testing.assert_array_equal(qt.ternary_connect(w), [-1, 0, 0, 1, -1])


def test_stochastic_and_bernoulli_ternary_unbiased():
    w = np.array([-0.9, -0.3, 0.0, 0.2, 0.7])
    S = np.stack([qt.ternary_stochastic(w, rng=s) for s in range(4000)])
    Bt = np.stack([qt.ternary_bernoulli(w, rng=s) for s in range(4000)])
    for D in (S, Bt):
        assert set(np.unique(D)) <= {-1.0, 0.0, 1.0}
        assert np.max(np.abs(D.mean(0) - w)) < 5 / np.sqrt(4000), _err(D.mean(0), w)
        # never the opposite sign
        assert not np.any(D * np.sign(w) < 0)


def test_gaussian_ternary_corrected_and_printed(rng):
    W = rng.standard_normal(10000)
    T = qt.ternary_gaussian(W)
    delta = W.mean() + W.std() / 2
    np.testing.assert_array_equal(T, np.select([W > delta, W <= -delta], [1.0, -1.0], 0.0))
    # symmetric weights: about equal numbers of +1 and −1 (≈ 31% each for N(0,1))
    assert abs((T == 1).mean() - (T == -1).mean()) < 0.03
    P = qt.ternary_gaussian_survey_printed(W)
    assert (P == 1).mean() > 0.6 and (P == 0).mean() == 0.0


@pytest.mark.parametrize("n", [1, 4, 7])
def test_twn_exact_equals_brute_force(rng, n):
    W = rng.standard_normal(n)
    alpha, T, delta = qt.twn_exact(W)
    best = np.inf
    for t in itertools.product((-1.0, 0.0, 1.0), repeat=n):
        t = np.array(t)
        if not t.any():
            best = min(best, (W ** 2).sum())
            continue
        a = max(W @ t / (t @ t), 0.0)
        best = min(best, ((W - a * t) ** 2).sum())
    assert abs(((W - alpha * T) ** 2).sum() - best) < 1e-12
    np.testing.assert_array_equal(T, np.where(np.abs(W) > delta, np.sign(W), 0))


def test_twn_exact_ties():
    W = np.array([1.0, -1.0, 1.0, 0.1])
    alpha, T, delta = qt.twn_exact(W)
    np.testing.assert_array_equal(T, [1, -1, 1, 0])
    assert alpha == 1.0


def test_twn_rule_of_thumb_hand_value():
    W = np.array([0.1, -0.2, 0.9, -1.2])  # mean|W| = 0.6, Δ = 0.42
    alpha, T, delta = qt.twn(W)
    assert abs(delta - 0.42) < 1e-12
    np.testing.assert_array_equal(T, [0, 0, 1, -1])
    assert abs(alpha - 1.05) < 1e-12


def test_twn_exact_threshold_uniform_and_normal():
    rng = np.random.default_rng(1)
    U = rng.uniform(-1, 1, 100_000)
    N = rng.standard_normal(100_000)
    assert abs(qt.twn_exact(U)[2] - 1 / 3) < 0.01
    assert abs(qt.twn_exact(N)[2] - 0.6) < 0.03  # the exact optimum is ≈ 0.612σ


def test_lloyd_max_and_step_search(rng):
    W = rng.standard_normal(5000)
    s = qt.lloyd_max_step(W, 4)
    assert abs(s - 0.9957) < 0.03  # Max (1960): optimum uniform 4-level step for N(0,1)
    err = lambda st_: ((W - qt.uniform_step_quantize(W, st_, 4)) ** 2).sum()  # noqa: E731
    assert err(s) <= min(err(s * 0.9), err(s * 1.1))
    # loss-aware search on a two-layer linear net
    X = rng.standard_normal((200, 8))
    W1, W2 = rng.standard_normal((8, 8)), rng.standard_normal((8, 1))
    y = X @ W1 @ W2
    loss = lambda ws: float(((X @ ws[0] @ ws[1] - y) ** 2).mean())  # noqa: E731
    q, steps = qt.loss_aware_step_search(loss, [W1, W2], n_levels=3)
    q_lm = [qt.uniform_step_quantize(W1, steps[0], 3), qt.uniform_step_quantize(
        W2, qt.lloyd_max_step(W2, 3), 3)]
    assert loss(q) <= loss(q_lm) + 1e-12
    for Wq, stp in zip(q, steps):
        assert set(np.round(np.unique(Wq) / stp, 9)) <= {-1.0, 0.0, 1.0}


def test_ttq_thresholds_and_grads(rng):
    W = rng.standard_normal(1000)
    assert abs(qt.ttq_threshold(W, 0.05) - 0.05 * np.abs(W).max()) < 1e-15
    d = qt.ttq_threshold_sparsity(W, 0.3)
    assert (np.abs(W) <= d).sum() == 300
    Wn = qt.ttq_normalize(W)
    assert abs(np.abs(Wn).max() - 1) < 1e-15
    # grads of W_p, W_n are gradient sums over their sets; latent grads scaled
    w = Tensor(np.array([0.5, -0.7, 0.01, 0.9]), requires_grad=True)
    wp = Tensor(np.array(1.5), requires_grad=True)
    wn = Tensor(np.array(0.8), requires_grad=True)
    out = qt.ttq_ste(w, wp, wn, delta=0.1)
    np.testing.assert_allclose(out.data, [1.5, -0.8, 0.0, 1.5])
    g = np.array([1.0, 2.0, 3.0, 4.0])
    (out * g).sum().backward()
    assert wp.grad == 5.0 and wn.grad == -2.0
    np.testing.assert_allclose(w.grad, [1.5, 1.6, 3.0, 6.0])


def test_ttq_wp_wn_gradcheck(rng):
    # W_p and W_n enter linearly: the TTQ op is differentiable in them
    w = rng.standard_normal(10)
    gradcheck(lambda wp, wn: qt.ttq_ste(Tensor(w), wp, wn, delta=0.3),
              [np.array(1.2), np.array(0.7)])


def test_ternary_bad_inputs():
    with pytest.raises(ValueError, match="sparsity"):
        qt.ttq_threshold_sparsity(np.ones(4), 1.5)
    with pytest.raises(ValueError, match="delta"):
        qt.ternarize(np.ones(3), -1.0)
    with pytest.raises(ValueError, match="W"):
        qt.ternary_gaussian(np.array([]))


@settings(max_examples=25, deadline=None)
@given(vec)
def test_twn_exact_idempotent(W):
    alpha, T, _ = qt.twn_exact(W)
    Q = alpha * T
    a2, T2, _ = qt.twn_exact(Q)
    np.testing.assert_allclose(a2 * T2, Q, atol=1e-9)
    assert set(np.unique(T)) <= {-1.0, 0.0, 1.0}
    # exact ≤ rule of thumb
    a1, T1, _ = qt.twn(W)
    assert ((W - Q) ** 2).sum() <= ((W - a1 * T1) ** 2).sum() + 1e-9


@pytest.mark.parametrize("fn", [qb.bwn, qt.twn, qb.binarize, qt.twn_exact])
def test_complex_weights_refused(fn):
    """Issue #12: bwn/twn used to return complex "binary"/"ternary" weights."""
    W = np.array([[1.0 + 2j, -0.5], [0.3, -2.0]])
    with pytest.raises(TypeError, match="W must be a real array"):
        fn(W)


def test_ttq_quantize_refuses_bad_threshold_and_scales():
    """Issue #12: delta < 0 and negative/None scales used to be accepted (or fail obscurely)."""
    W = np.array([0.5, -0.5, 0.01])
    np.testing.assert_allclose(qt.ttq_quantize(W, 2.0, 3.0, 0.1), [2.0, -3.0, 0.0])
    for kw, exc, msg in [({"delta": -0.1}, ValueError, r"delta must be in \[0, inf\], got -0.1"),
                         ({"wp": -1.0}, ValueError, r"wp must be in \[0, inf\]"),
                         ({"wn": None}, TypeError, "wn must be a real number, got None"),
                         ({"wn": float("nan")}, ValueError, "wn must be in"),
                         ({"delta": "0.1"}, TypeError, "delta must be a real number")]:
        args = {"wp": 2.0, "wn": 3.0, "delta": 0.1} | kw
        with pytest.raises(exc, match=msg):
            qt.ttq_quantize(W, **args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ttq_quantize_and_ttq_ste_share_one_forward(rng, dtype):
    """Issue #13: the array function and the tape op are one TTQ forward; boundaries ±Δ are
    zero (strict inequalities of Zhu et al. Eq. 6), the dtype is the input's."""
    W = np.concatenate([rng.uniform(-1, 1, 50), [0.25, -0.25, 0.0]]).astype(dtype)
    q = qt.ttq_quantize(W, 1.5, 0.5, 0.25)
    t = qt.ttq_ste(Tensor(W), Tensor(np.array(1.5)), Tensor(np.array(0.5)), 0.25)
    assert q.dtype == dtype and t.data.dtype == dtype
    np.testing.assert_array_equal(q, t.data)
    np.testing.assert_array_equal(q[-3:], [0.0, 0.0, 0.0])
    assert set(np.unique(q)) <= {1.5, 0.0, -0.5}
    # integer weights come back as floats
    np.testing.assert_array_equal(qt.ttq_quantize(np.array([2, -2, 0]), 1.0, 2.0, 1.0),
                                  [1.0, -2.0, 0.0])
