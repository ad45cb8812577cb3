"""Tests for §3.3.1–3.3.2: uniform k-bit (Eqs. 36–39), power-of-two (Eqs. 46–48), balanced."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.quantization import balanced as qbal
from refimpl.quantization import uniform as qu

from _numerics import err_message as _err

finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64)
vec = arrays(np.float64, st.integers(2, 50), elements=finite)




def test_eq36_eq37_hand_values():
    # k = 2: levels −1, −1/3, 1/3, 1 and 0, 1/3, 2/3, 1
    np.testing.assert_allclose(qu.q_signed([-1.0, -0.4, 0.2, 0.9, 5.0], 2),
                               [-1, -1 / 3, 1 / 3, 1, 1])
    np.testing.assert_allclose(qu.q_unit([0.0, 0.16, 0.17, 0.5, 0.99], 2),
                               [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(qu.q_unit([0.3], 1), [0.0])


def test_eq36_is_eq37_affinely(rng):
    x = rng.uniform(-1, 1, 1000)
    for k in (1, 2, 3, 8):
        np.testing.assert_allclose(qu.q_signed(x, k), 2 * qu.q_unit((x + 1) / 2, k) - 1,
                                   atol=1e-12)


def test_affine_eq38_39(rng):
    X = rng.normal(3, 2, (5, 7))
    for k in (1, 2, 4, 8):
        Q = qu.quantize_uniform(X, k)
        step = (X.max() - X.min()) / (2 ** k - 1)
        assert np.max(np.abs(Q - X)) <= step / 2 + 1e-12  # error ≤ step/2
        assert len(np.unique(np.round(Q, 10))) <= 2 ** k
        assert Q.min() == pytest.approx(X.min()) and Q.max() == pytest.approx(X.max())


def test_uniform_codes_roundtrip(rng):
    X = rng.standard_normal(100)
    codes, a, b = qu.uniform_codes(X, 3)
    assert codes.dtype == np.uint16 and codes.max() <= 7
    np.testing.assert_allclose(qu.dequantize_uniform(codes, a, b, 3), qu.quantize_uniform(X, 3))


def test_constant_input_unchanged():
    np.testing.assert_array_equal(qu.quantize_uniform(np.full(5, 2.5), 3), np.full(5, 2.5))


@pytest.mark.parametrize("bits", [0, 17, 2.5])
def test_bad_bits(bits):
    with pytest.raises((ValueError, TypeError), match="bits"):
        qu.quantize_uniform(np.ones(3), bits)


def test_bad_weights():
    with pytest.raises(ValueError, match="X"):
        qu.quantize_uniform(np.array([1.0, np.inf]), 4)
    with pytest.raises(ValueError, match="scheme"):
        qu.quantize_uniform(np.ones(3), 4, scheme="log")


@settings(max_examples=25, deadline=None)
@given(vec, st.integers(1, 8))
def test_uniform_idempotent_and_error_shrinks(X, k):
    Q = qu.quantize_uniform(X, k)
    np.testing.assert_allclose(qu.quantize_uniform(Q, k), Q, atol=1e-9 * (1 + np.abs(X).max()))
    e_k = np.abs(Q - X).max()
    e_k1 = np.abs(qu.quantize_uniform(X, k + 1) - X).max()
    rng_ = X.max() - X.min()
    assert e_k <= rng_ / (2 * (2 ** k - 1)) + 1e-9 * (1 + np.abs(X).max())
    # worst-case bound halves (roughly) with each extra bit
    assert e_k1 <= rng_ / (2 * (2 ** (k + 1) - 1)) + 1e-9 * (1 + np.abs(X).max())


def test_torch_fake_quantize_crosscheck(torch, rng):
    """Eq. (39) == torch fake_quantize on X − β with scale α/(2^k−1), zero_point 0."""
    for k in (2, 4, 8):
        X = rng.normal(0.3, 1.5, 2000)
        ours = qu.quantize_uniform(X, k)
        beta = X.min()
        scale = (X.max() - X.min()) / (2 ** k - 1)
        t = torch.fake_quantize_per_tensor_affine(torch.tensor(X - beta), scale, 0, 0,
                                                  2 ** k - 1).numpy() + beta
        # torch keeps ``scale`` in float32: the integer codes agree exactly, the values to
        # float32 precision of the scale
        s32 = float(np.float32(scale))
        codes_t = np.rint((t - beta) / s32)
        codes, _, _ = qu.uniform_codes(X, k)
        np.testing.assert_array_equal(codes, codes_t)
        assert np.allclose(ours, t, atol=2e-6 * (X.max() - X.min())), _err(ours, t)
        # direct zero-point form: exact when β is on the grid (torch's nudged zero point)
        s2, zp, qmin, qmax = qu.affine_params(X, k)
        Xn = X - X.min() - zp * s2  # shift the data so that min = −zp·scale exactly
        ours_n = qu.quantize_uniform(Xn, k)
        t2 = torch.fake_quantize_per_tensor_affine(torch.tensor(Xn), s2, zp, qmin,
                                                   qmax).numpy()
        assert np.allclose(ours_n, t2, atol=2e-6 * (X.max() - X.min())), _err(ours_n, t2)
    # Eq. (36) on [−1, 1]: fake_quantize(x + 1, 2/(2^k − 1), 0, 0, 2^k − 1) − 1
    x = rng.uniform(-1, 1, 1000)
    t3 = torch.fake_quantize_per_tensor_affine(torch.tensor(x + 1), 2 / 15, 0, 0, 15).numpy() - 1
    np.testing.assert_allclose(qu.q_signed(x, 4), t3, atol=1e-6)


def test_pow2_hand_values_and_deterministic_is_nearest():
    W = np.array([0.3, -0.7, 1.0, 0.0, 3.1, 0.75, -6.0])
    np.testing.assert_allclose(qu.quantize_pow2(W), [0.25, -0.5, 1.0, 0.0, 4.0, 0.5, -4.0])
    np.testing.assert_allclose(qu.pow2_p([3.0, 0.75, 1.0]), [0.5, 0.5, 0.0])
    rng = np.random.default_rng(0)
    X = rng.standard_normal(5000) * 3
    Q = qu.quantize_pow2(X)
    cand = np.sign(X)[:, None] * 2.0 ** np.arange(-30, 10)[None, :]
    best = np.abs(cand - X[:, None]).min(1)
    np.testing.assert_allclose(np.abs(Q - X), best, atol=1e-12)


def test_pow2_stochastic_unbiased_and_exponent_clip():
    W = np.array([0.3, -0.7, 1.6, 5.0])
    S = np.stack([qu.quantize_pow2(W, stochastic=True, rng=s) for s in range(4000)])
    se = np.sqrt(S.var(0) / 4000)
    assert np.all(np.abs(S.mean(0) - W) < 5 * se + 1e-12), _err(S.mean(0), W)
    np.testing.assert_allclose(qu.quantize_pow2(np.array([100.0, 1e-5]), min_exp=-3, max_exp=2),
                               [4.0, 0.125])


def test_recursive_median_edges_are_percentiles(rng):
    W = rng.standard_normal(1024)
    for k in (1, 2, 3):
        codes, edges = qbal.balanced_codes(W, k)
        counts = np.bincount(codes.ravel(), minlength=2 ** k)
        assert np.all(counts == 1024 // 2 ** k), counts
        s = np.sort(W)
        exact = [(s[j * 1024 // 2 ** k - 1] + s[j * 1024 // 2 ** k]) / 2 for j in
                 range(1, 2 ** k)]
        np.testing.assert_allclose(edges, exact, atol=1e-12)


def test_mean_split_approximates_median(rng):
    W = rng.standard_normal(20000)  # symmetric: mean ≈ median
    em = qbal.recursive_split_edges(W, 2, "median")
    ea = qbal.recursive_split_edges(W, 2, "mean")
    assert np.max(np.abs(em - ea)) < 0.15


def test_balanced_beats_uniform_at_2_bits(rng):
    W = rng.standard_normal(4000)
    e_bal = ((qbal.balanced_quantize(W, 2) - W) ** 2).mean()
    e_uni = ((qu.quantize_uniform(W, 2) - W) ** 2).mean()
    assert e_bal < e_uni
    Q = qbal.balanced_quantize(W, 2)
    assert len(np.unique(Q)) == 4


def test_balanced_bad_input():
    with pytest.raises(ValueError, match="bits"):
        qbal.balanced_quantize(np.ones(3), 2)
    with pytest.raises(ValueError, match="split"):
        qbal.recursive_split_edges(np.ones(30), 2, "mode")


def test_affine_params_vs_torch_minmax_observer(torch):
    """Issue #12: affine_params gives MinMaxObserver's (scale, zero_point) only when
    min <= 0 <= max; otherwise the observer widens the range to contain 0 and clamps the zero
    point, while affine_params keeps the quantiser's own range [min, max] (docstring says so)."""
    from torch.ao.quantization import MinMaxObserver

    rng = np.random.default_rng(7)
    for k in (2, 4, 8):
        for loc, contains_zero in ((0.0, True), (4.0, False), (-4.0, False)):
            X = rng.normal(loc, 1.0, 400).astype(np.float32)
            obs = MinMaxObserver(dtype=torch.quint8, quant_min=0, quant_max=2 ** k - 1)
            obs(torch.tensor(X))
            s_t, zp_t = (float(v) for v in obs.calculate_qparams())
            s, zp, qmin, qmax = qu.affine_params(X, k)
            assert (qmin, qmax) == (0, 2 ** k - 1)
            # ours always puts min X on the grid: -zp*scale is min X up to half a step
            assert abs(-zp * s - X.min()) <= s / 2 + 1e-9
            if contains_zero:
                assert s == pytest.approx(s_t, rel=1e-6) and zp == int(zp_t)
            else:
                assert s < s_t  # the observer's range [min(X, 0), max(X, 0)] is wider
                assert zp == int(zp_t) or not qmin <= zp <= qmax
                assert zp < qmin if loc > 0 else zp >= qmax  # 0 is off our grid


def test_pow2_exponent_bounds_validated():
    """Issue #12: min_exp=2.5 used to return 5.657 (2^2.5); min_exp > max_exp was accepted."""
    W = np.array([0.3, -7.0, 100.0])
    with pytest.raises(TypeError, match="min_exp must be an integer"):
        qu.quantize_pow2(W, min_exp=2.5)
    with pytest.raises(TypeError, match="max_exp must be an integer"):
        qu.quantize_pow2(W, max_exp="3")
    with pytest.raises(ValueError, match=r"min_exp must be <= max_exp, got min_exp=3 > max_exp=1"):
        qu.quantize_pow2(W, min_exp=3, max_exp=1)
    with pytest.raises(TypeError, match="stochastic must be a bool"):
        qu.quantize_pow2(W, stochastic="yes")
    np.testing.assert_allclose(qu.quantize_pow2(W, min_exp=2, max_exp=2), [4.0, -4.0, 4.0])
    with pytest.raises(TypeError, match="X must be a real array"):
        qu.affine_params(np.array([1 + 1j, 2.0]), 4)
