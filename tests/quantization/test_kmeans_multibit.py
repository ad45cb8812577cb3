"""Tests for §3.3.3 (k-means, PQ, RQ, Eqs. 49–51) and §3.3.4 (multi-bit, Eqs. 52–56)."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from refimpl.nn import Tensor, gradcheck
from refimpl.quantization import kmeans as qk
from refimpl.quantization import multibit as qm

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)
vec = arrays(np.float64, st.integers(4, 40), elements=finite)


# ------------------------------------------------------------------ k-means
def test_kmeans_fixed_point_and_seed(rng):
    X = rng.standard_normal((300, 3))
    C, lab, inertia = qk.lloyd_kmeans(X, 5, rng=1)
    C2, lab2, in2 = qk.lloyd_kmeans(X, 5, rng=1)
    np.testing.assert_array_equal(C, C2)
    for j in range(5):  # Lloyd fixed point: centroids are the cluster means
        np.testing.assert_allclose(C[j], X[lab == j].mean(0), atol=1e-10)
    d = ((X[:, None, :] - C[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(lab, d.argmin(1))
    assert abs(inertia - d.min(1).sum()) < 1e-8


def test_kmeans_vs_sklearn_inertia(sklearn, rng):
    from sklearn.cluster import KMeans

    for seed in range(3):
        W = np.concatenate([rng.standard_normal(800), rng.normal(3, 0.3, 200)])
        ours = qk.lloyd_kmeans(W, 8, rng=seed, n_init=4)[2]
        sk = KMeans(8, n_init=4, random_state=seed).fit(W.reshape(-1, 1)).inertia_
        rel = (ours - sk) / sk
        assert rel < 0.02, f"ours {ours:.6g} vs sklearn {sk:.6g}: rel {rel:.3e}"


def test_kmeans_quantize_codebook_and_bad_k(rng):
    W = rng.standard_normal((6, 5))
    cb, lab = qk.kmeans_quantize(W, 4, rng=0)
    assert cb.shape == (4,) and lab.shape == W.shape
    with pytest.raises(ValueError, match="k"):
        qk.kmeans_quantize(W, 31)
    with pytest.raises(ValueError, match="W"):
        qk.kmeans_quantize(np.array([1.0, np.nan, 2.0]), 2)


@settings(max_examples=25, deadline=None)
@given(vec, st.integers(1, 4))
def test_kmeans_quantize_idempotent(W, k):
    k = min(k, W.size)
    cb, lab = qk.kmeans_quantize(W, k, rng=0)
    Q = cb[lab]
    cb2, lab2 = qk.kmeans_quantize(Q, k, rng=0)
    assert np.all(np.isin(np.round(cb2[lab2], 8), np.round(cb, 8)))
    # quantising an already quantised vector changes nothing when the codebook is recovered
    if len(np.unique(Q)) == k:
        np.testing.assert_allclose(cb2[lab2], Q, atol=1e-9)


def test_shared_weights_grad_is_cluster_sum(rng):
    labels = rng.integers(0, 4, (5, 6))
    cb = Tensor(rng.standard_normal(4), requires_grad=True)
    dout = rng.standard_normal((5, 6))
    (qk.shared_weights(cb, labels) * dout).sum().backward()
    np.testing.assert_allclose(cb.grad, [dout[labels == j].sum() for j in range(4)])
    np.testing.assert_allclose(cb.grad, qk.cluster_grad_sums(dout, labels, 4))
    gradcheck(lambda c: qk.shared_weights(c, labels), [rng.standard_normal(4)])


def test_eq49_rate_vs_counted_bits(rng):
    W = rng.standard_normal(1000)
    for k in (2, 4, 16):
        cb, lab = qk.kmeans_quantize(W, k, rng=0)
        bits = qk.kmeans_stored_bits(lab, cb)
        assert bits == 1000 * int(math.log2(k)) + 32 * k
        assert abs(qk.kmeans_rate(1000, k) - 32 * 1000 / bits) < 1e-12


def test_pq_rq_roundtrip_and_rates(rng):
    W = rng.standard_normal((64, 12))
    books, codes = qk.product_quantize(W, 3, 8, rng=0)
    assert books.shape == (3, 8, 4) and codes.shape == (64, 3)
    What = qk.pq_reconstruct(books, codes)
    assert What.shape == W.shape
    # Eq. (50) equals the exact bit count for 32-bit codebooks, power-of-two k
    assert abs(qk.pq_rate(64, 12, 3, 8) - 32 * W.size / qk.pq_stored_bits(books, codes)) < 1e-12
    # with k = m every row is its own centroid: exact reconstruction
    b2, c2 = qk.product_quantize(W[:8], 2, 8, rng=0)
    np.testing.assert_allclose(qk.pq_reconstruct(b2, c2), W[:8], atol=1e-12)
    rb, rc = qk.residual_quantize(W, 3, 4, rng=0)
    errs = [((W - qk.rq_reconstruct(rb[:t], rc[:, :t])) ** 2).sum() for t in (1, 2, 3)]
    assert errs[0] >= errs[1] >= errs[2]
    bits = qk.rq_stored_bits(rb, rc)
    assert bits == 3 * 4 * 12 * 32 + 64 * 3 * 2
    assert abs(qk.rq_rate(64, 12, 3, 4) - 32 * W.size / bits) < 1e-12
    assert abs(qk.rq_rate_survey_printed(64, 12, 3, 4) - 32 * W.size / bits) > 0.5
    with pytest.raises(ValueError, match="s"):
        qk.product_quantize(W, 5, 4)


# ------------------------------------------------------------------ multi-bit
def test_greedy_hand_values():
    w = np.array([3.0, -1.0, 1.0, -3.0])
    a, B = qm.multibit_greedy(w, 2)
    # α1 = mean|w| = 2, b1 = sign(w); r1 = [1, 1, −1, −1], α2 = 1
    np.testing.assert_allclose(a, [2.0, 1.0])
    np.testing.assert_array_equal(B, [[1, -1, 1, -1], [1, 1, -1, -1]])
    assert qm.multibit_error(w, a, B) == 0.0


def test_refined_is_least_squares(rng):
    w = rng.standard_normal(50)
    a, B = qm.multibit_refined(w, 3)
    np.testing.assert_allclose(a, np.linalg.lstsq(B.T, w, rcond=None)[0], atol=1e-12)


def test_alternating_codes_optimal_given_alpha(rng):
    w = rng.standard_normal(30)
    a, B = qm.multibit_alternating(w, 2)
    vals = np.array([a @ np.array(c) for c in itertools.product((-1, 1), repeat=2)])
    best = np.abs(w[:, None] - vals[None]).min(1)
    np.testing.assert_allclose(np.abs(w - a @ B), best, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(vec, st.integers(1, 3))
def test_multibit_ordering(w, k):
    eg = qm.multibit_error(w, *qm.multibit_greedy(w, k))
    er = qm.multibit_error(w, *qm.multibit_refined(w, k))
    ea = qm.multibit_error(w, *qm.multibit_alternating(w, k))
    tol = 1e-9 * (1 + (w ** 2).sum())
    assert ea <= er + tol
    if k <= 2:  # for k ≤ 2 refined greedy shares greedy's codes: its LSQ α cannot be worse
        assert er <= eg + tol


@pytest.mark.parametrize("seed", range(3))
def test_multibit_ordering_gaussian(seed):
    w = np.random.default_rng(seed).standard_normal(500)
    for k in (2, 3, 4):
        e = [qm.multibit_error(w, *f(w, k)) for f in
             (qm.multibit_greedy, qm.multibit_refined, qm.multibit_alternating)]
        assert e[2] <= e[1] <= e[0], e


@settings(max_examples=25, deadline=None)
@given(vec, st.integers(1, 4))
def test_multibit_error_shrinks_with_bits(w, k):
    """What more bits guarantee: greedy and refined greedy never get worse (each adds a code to
    a nested set; refined refits α by least squares over a larger span), and alternating
    (started from refined) is never worse than refined at the same k, hence never worse than
    refined with one bit fewer."""
    tol = 1e-9 * (1 + (w ** 2).sum())
    err = {f.__name__: [qm.multibit_error(w, *f(w, j)) for j in (k, k + 1)]
           for f in (qm.multibit_greedy, qm.multibit_refined, qm.multibit_alternating)}
    assert err["multibit_greedy"][1] <= err["multibit_greedy"][0] + tol
    assert err["multibit_refined"][1] <= err["multibit_refined"][0] + tol
    for j in (0, 1):
        assert err["multibit_alternating"][j] <= err["multibit_refined"][j] + tol
    assert err["multibit_alternating"][1] <= err["multibit_refined"][0] + tol


def test_alternating_is_not_monotone_in_bits():
    """Hand-found counterexample (by hypothesis): Xu et al.'s alternating quantisation is a
    local search from refined greedy, so one more bit can end worse. w = [0.25, 2.5, 6, 3, 0]:
    3 bits reach ‖w − Σα_i b_i‖² = 1/14 (≈ 0.0714), 4 bits stop at refined greedy's 0.125."""
    w = np.array([0.25, 2.5, 6.0, 3.0, 0.0])
    e3 = qm.multibit_error(w, *qm.multibit_alternating(w, 3))
    e4 = qm.multibit_error(w, *qm.multibit_alternating(w, 4))
    assert e3 == pytest.approx(1 / 14, abs=1e-12)
    assert e4 == pytest.approx(0.125, abs=1e-12)
    assert e4 > e3


def test_multibit_ste_per_row(rng):
    W = Tensor(rng.standard_normal((3, 20)), requires_grad=True)
    out = qm.multibit_ste(W, 2)
    for i in range(3):
        a, B = qm.multibit_alternating(W.data[i], 2)
        np.testing.assert_allclose(out.data[i], a @ B)
    g = rng.standard_normal((3, 20))
    (out * g).sum().backward()
    np.testing.assert_allclose(W.grad, g)


def test_multibit_bad_input():
    with pytest.raises(ValueError, match="bits"):
        qm.multibit_greedy(np.ones(4), 0)
    with pytest.raises(ValueError, match="w"):
        qm.multibit_refined(np.array([np.inf, 1.0]), 2)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_alternating_rows_equals_per_row_loop(rng, k):
    W = rng.standard_normal((20, 30))
    a, B = qm.multibit_alternating_rows(W, k)
    assert a.shape == (20, k) and B.shape == (20, k, 30)
    e_rows = ((W - np.einsum("ri,rin->rn", a, B)) ** 2).sum(1)
    e_loop = [qm.multibit_error(w, *qm.multibit_alternating(w, k)) for w in W]
    np.testing.assert_allclose(e_rows, e_loop, rtol=1e-9, atol=1e-12)


def test_cluster_grad_sums_validates_labels_and_k():
    """Issue #12: labels >= k and k = 0 used to be accepted (bincount grew the output)."""
    dW = np.arange(4.0).reshape(2, 2)
    np.testing.assert_allclose(qk.cluster_grad_sums(dW, [[0, 1], [1, 0]], 3), [3.0, 3.0, 0.0])
    with pytest.raises(ValueError, match=r"labels must be cluster indices in \[0, 1\] \(k = 2\)"):
        qk.cluster_grad_sums(dW, np.full((2, 2), 3), 2)
    with pytest.raises(ValueError, match="labels must be cluster indices"):
        qk.cluster_grad_sums(dW, [[0, -1], [0, 0]], 2)
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        qk.cluster_grad_sums(dW, np.zeros((2, 2), int), 0)
    with pytest.raises(TypeError, match="labels must have dtype kind"):
        qk.cluster_grad_sums(dW, np.zeros((2, 2)), 2)
