"""Tests of Survey Eqs. (60)–(61), §5.2: rare-word embeddings as sparse combinations of
frequent-word embeddings (refimpl.sharing.embeddings)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.sharing import (
    kkt_residual,
    rare_word_embedding,
    sparse_code,
    sparse_code_embeddings,
    sparse_code_objective,
    sparse_embedding_bits,
)

from _numerics import err_message as _err




# ------------------------------------------------------------------ Eq. (60)
def test_rare_word_embedding_hand_worked():
    U = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])      # E=2, |B|=3
    x = np.array([0.5, 0.0, 2.0])
    # 0.5·(1, 0) + 2·(0, −1) = (0.5, −2)
    np.testing.assert_array_equal(rare_word_embedding(x, U), [0.5, -2.0])
    X = np.stack([x, [0.0, 1.0, 0.0]], axis=1)              # (|B|, 2)
    np.testing.assert_array_equal(rare_word_embedding(X, U), [[0.5, 2.0], [-2.0, 1.0]])


def test_rare_word_embedding_bad_input():
    U = np.ones((2, 3))
    with pytest.raises(ValueError, match="x"):
        rare_word_embedding(np.ones(4), U)
    with pytest.raises(ValueError, match="U"):
        rare_word_embedding(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="U"):
        rare_word_embedding(np.ones(3), np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="x"):
        rare_word_embedding(np.zeros((3, 0)), U)


# ------------------------------------------------------------------ Eq. (61): objective
def test_objective_hand_worked_and_batch():
    U = np.array([[1.0, 0.0], [0.0, 2.0]])
    a = np.array([1.0, 1.0])
    x = np.array([0.5, -1.0])
    # ‖(−0.5, −3)‖² = 9.25; α‖x‖₁ = 1.5α; β|−0.5 − 1| = 1.5β; γ·max(0, 1) = γ
    assert sparse_code_objective(x, U, a, 0.1, 0.2, 0.3) == pytest.approx(
        9.25 + 0.15 + 0.3 + 0.3, abs=1e-14)
    X = np.stack([x, np.zeros(2)], axis=1)
    A = np.stack([a, a], axis=1)
    f = sparse_code_objective(X, U, A, 0.1, 0.2, 0.3)
    assert f.shape == (2,)
    assert f[1] == pytest.approx(2.0 + 0.2, abs=1e-14)   # x = 0: ‖a‖² + β


@pytest.mark.parametrize("kw,name", [({"alpha": -1.0}, "alpha"), ({"beta": np.nan}, "beta"),
                                     ({"gamma": "1"}, "gamma")])
def test_penalties_validated(kw, name):
    args = {"alpha": 0.1, "beta": 0.1, "gamma": 0.1, **kw}
    with pytest.raises((ValueError, TypeError), match=name):
        sparse_code(np.eye(2), np.ones(2), **args)
    with pytest.raises((ValueError, TypeError), match=name):
        sparse_code_objective(np.ones(2), np.eye(2), np.ones(2), **args)


def test_sparse_code_bad_input():
    with pytest.raises(ValueError, match="A"):
        sparse_code(np.eye(3), np.ones(2), 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="U"):
        sparse_code(np.ones(3), np.ones(3), 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="U"):
        sparse_code(np.array([[np.inf, 0.0], [0.0, 1.0]]), np.ones(2), 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="max_iter"):
        sparse_code(np.eye(2), np.ones(2), 0.1, 0.1, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="rho"):
        sparse_code(np.eye(2), np.ones(2), 0.1, 0.1, 0.1, rho=0.0)
    with pytest.raises(ValueError, match="A"):
        sparse_code(np.eye(2), np.ones((2, 0)), 0.1, 0.1, 0.1)


# ------------------------------------------------------------------ Eq. (61): minimiser
@pytest.mark.parametrize("a", [np.array([3.0, -2.0, 0.1, -0.2, 0.7]),
                               np.array([-5.0, 0.4, 2.0, -0.9, 0.0])])
def test_orthonormal_U_is_asymmetric_soft_threshold(a):
    """U = I, β = 0: separable, x_i = a_i − α/2 (a_i > α/2), a_i + (α+γ)/2 (a_i < −(α+γ)/2),
    else 0."""
    alpha, gamma = 0.6, 1.0
    want = np.where(a > alpha / 2, a - alpha / 2,
                    np.where(a < -(alpha + gamma) / 2, a + (alpha + gamma) / 2, 0.0))
    x = sparse_code(np.eye(5), a, alpha, 0.0, gamma)
    np.testing.assert_allclose(x, want, atol=1e-12, err_msg=_err(x, want))
    assert np.all(x[want == 0] == 0)                        # exact zeros
    assert kkt_residual(want, np.eye(5), a, alpha, 0.0, gamma) < 1e-14
    # a non-optimal point has a clearly positive residual
    assert kkt_residual(want + 0.1, np.eye(5), a, alpha, 0.0, gamma) > 0.1


def _qp_trust_constr(U, a, alpha, beta, gamma):
    """Independent solution of Eq. (61): z = (p, q, s⁺, s⁻) >= 0, x = p − q,
    1ᵀx − 1 = s⁺ − s⁻, smooth objective; scipy trust-constr."""
    n = U.shape[1]
    Q = U.T @ U

    def f(z):
        x = z[:n] - z[n:2 * n]
        r = U @ x - a
        return r @ r + alpha * z[:2 * n].sum() + gamma * z[n:2 * n].sum() + beta * z[-2:].sum()

    def g(z):
        r = 2.0 * (Q @ (z[:n] - z[n:2 * n]) - U.T @ a)
        return np.concatenate([r + alpha, -r + alpha + gamma, [beta, beta]])

    def h(z):
        H = np.zeros((2 * n + 2, 2 * n + 2))
        H[:n, :n] = H[n:2 * n, n:2 * n] = 2 * Q
        H[:n, n:2 * n] = H[n:2 * n, :n] = -2 * Q
        return H

    J = np.concatenate([np.ones(n), -np.ones(n), [-1.0, 1.0]])[None, :]
    res = scipy.optimize.minimize(
        f, np.full(2 * n + 2, 0.1), jac=g, hess=h, method="trust-constr",
        constraints=[scipy.optimize.LinearConstraint(J, 1.0, 1.0)],
        bounds=scipy.optimize.Bounds(0.0, np.inf),
        options={"gtol": 1e-12, "xtol": 1e-14, "maxiter": 5000})
    return res.x[:n] - res.x[n:2 * n]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_trust_constr(seed):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((7, 4))
    a = rng.standard_normal(7)
    alpha, beta, gamma = rng.uniform(0.05, 1.0, 3)
    x = sparse_code(U, a, alpha, beta, gamma)
    x_ref = _qp_trust_constr(U, a, alpha, beta, gamma)
    np.testing.assert_allclose(x, x_ref, atol=1e-6, err_msg=_err(x, x_ref))
    assert (sparse_code_objective(x, U, a, alpha, beta, gamma)
            <= sparse_code_objective(x_ref, U, a, alpha, beta, gamma) + 1e-12)
    assert kkt_residual(x, U, a, alpha, beta, gamma) < 1e-7


def test_overcomplete_batch_kkt_and_columns_independent():
    """|B| > E (the paper's regime): every column meets the optimality conditions, and a batch
    solve equals per-word solves."""
    rng = np.random.default_rng(3)
    U = rng.standard_normal((6, 15))
    A = rng.standard_normal((6, 4))
    A_copy, U_copy = A.copy(), U.copy()
    X, info = sparse_code(U, A, 0.5, 1.0, 1.0, return_info=True)
    assert X.shape == (15, 4) and info["converged"].all()
    np.testing.assert_array_equal(A, A_copy)                # inputs untouched
    np.testing.assert_array_equal(U, U_copy)
    for j in range(4):
        assert kkt_residual(X[:, j], U, A[:, j], 0.5, 1.0, 1.0) < 1e-7
        xj = sparse_code(U, A[:, j], 0.5, 1.0, 1.0)
        fj = sparse_code_objective(xj, U, A[:, j], 0.5, 1.0, 1.0)
        assert abs(fj - info["objective"][j]) < 1e-9
    assert np.count_nonzero(X) < X.size                     # the L1 term makes codes sparse
    X2 = sparse_code(U, A, 0.5, 1.0, 1.0)
    np.testing.assert_array_equal(X, X2)                    # deterministic


def test_penalty_limits():
    rng = np.random.default_rng(4)
    U = rng.standard_normal((5, 8))
    A = rng.standard_normal((5, 3))
    beta = 0.5
    big_alpha = float(np.abs(2 * U.T @ A).max()) + beta     # then x = 0 satisfies the KKT
    np.testing.assert_array_equal(sparse_code(U, A, big_alpha, beta, 0.0), 0.0)
    just_below = sparse_code(U, A, 0.5 * big_alpha, beta, 0.0)
    assert np.count_nonzero(just_below) > 0
    xb = sparse_code(U, A, 0.01, 1e4, 0.0)
    np.testing.assert_allclose(xb.sum(axis=0), 1.0, atol=1e-9)
    xg = sparse_code(U, A, 0.01, 0.0, 1e4)
    assert xg.min() >= 0.0
    x0 = sparse_code(U, A, 0.01, 0.0, 0.0)
    assert x0.min() < 0 and np.abs(x0.sum(axis=0) - 1).max() > 1e-3   # the penalties matter


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(0.0, 2.0), beta=st.floats(0.0, 2.0),
       gamma=st.floats(0.0, 2.0))
def test_never_worse_than_scipy_slsqp(seed, alpha, beta, gamma):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((5, 4))
    a = rng.standard_normal(5)
    x = sparse_code(U, a, alpha, beta, gamma)
    f = sparse_code_objective(x, U, a, alpha, beta, gamma)
    # SLSQP on the non-smooth objective from several starts gives an upper bound on f*
    for x0 in (np.zeros(4), np.linalg.lstsq(U, a, rcond=None)[0]):
        r = scipy.optimize.minimize(lambda z: sparse_code_objective(z, U, a, alpha, beta, gamma),
                                    x0, method="Powell", options={"xtol": 1e-10, "ftol": 1e-14})
        assert f <= r.fun + 1e-9
    assert kkt_residual(x, U, a, alpha, beta, gamma) < 1e-6


def test_kkt_residual_bad_input():
    with pytest.raises(ValueError, match="a must be one"):
        kkt_residual(np.ones(2), np.eye(2), np.ones((2, 2)), 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="x"):
        kkt_residual(np.ones(3), np.eye(2), np.ones(2), 0.1, 0.1, 0.1)


# ------------------------------------------------------------------ whole table and bits
def test_sparse_code_embeddings_table():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((20, 6))
    frequent = np.array([0, 3, 7, 9, 11, 12, 19])
    W_copy = W.copy()
    W_hat, codes, rare = sparse_code_embeddings(W, frequent, 0.2, 0.5, 0.5)
    np.testing.assert_array_equal(W, W_copy)
    np.testing.assert_array_equal(rare, np.setdiff1d(np.arange(20), frequent))
    np.testing.assert_array_equal(W_hat[frequent], W[frequent])
    np.testing.assert_allclose(W_hat[rare], codes @ W[frequent], atol=1e-12)
    assert codes.shape == (13, 7)
    # a rare word equal to a frequent one is coded (almost) as that word alone
    W2 = W.copy()
    W2[5] = W[3]
    _, codes2, rare2 = sparse_code_embeddings(W2, frequent, 0.01, 1.0, 1.0)
    c = codes2[list(rare2).index(5)]
    assert np.argmax(c) == 1 and c[1] > 0.95
    with pytest.raises(ValueError, match="frequent"):
        sparse_code_embeddings(W, np.array([1, 1]), 0.1, 0.1, 0.1)
    with pytest.raises(ValueError, match="frequent"):
        sparse_code_embeddings(W, np.array([25]), 0.1, 0.1, 0.1)


def test_sparse_embedding_bits_hand_worked_and_counted():
    # |V| = 10, |B| = 4, E = 8, nnz = 9, 32-bit floats: dense 10·8·32 = 2560;
    # frequent 4·8·32 = 1024; codes 9·(32 + 2) + 7·⌈log2 10⌉ = 306 + 28 = 334
    b = sparse_embedding_bits(10, 4, 8, 9)
    assert (b["dense_bits"], b["frequent_bits"], b["code_bits"], b["total_bits"]) == (
        2560, 1024, 334, 1358)
    assert b["ratio"] == pytest.approx(2560 / 1358)
    rng = np.random.default_rng(6)
    codes = rng.standard_normal((6, 4)) * (rng.random((6, 4)) < 0.4)
    csr = scipy.sparse.csr_matrix(codes)
    counted = 4 * 8 * 32 + csr.nnz * 32 + csr.indices.size * 2 + csr.indptr.size * int(
        np.ceil(np.log2(csr.nnz + 1)))
    assert sparse_embedding_bits(10, 4, 8, csr.nnz)["total_bits"] == counted
    with pytest.raises(ValueError, match="n_frequent"):
        sparse_embedding_bits(10, 11, 8, 0)
    with pytest.raises(ValueError, match="nnz"):
        sparse_embedding_bits(10, 4, 8, 25)
    with pytest.raises(TypeError, match="embed_dim"):
        sparse_embedding_bits(10, 4, 8.0, 1)


def test_info_reports_non_convergence_and_single_word_shapes():
    rng = np.random.default_rng(7)
    U = rng.standard_normal((6, 15))
    a = rng.standard_normal(6)
    x, info = sparse_code(U, a, 0.5, 1.0, 1.0, max_iter=2, polish=False, return_info=True)
    assert x.shape == (15,) and info["n_iter"] == 2 and not info["converged"].any()
    x_full, info_full = sparse_code(U, a, 0.5, 1.0, 1.0, return_info=True)
    assert info_full["converged"].all() and info_full["n_iter"] > 2
    assert info_full["objective"][0] == pytest.approx(
        sparse_code_objective(x_full, U, a, 0.5, 1.0, 1.0), abs=1e-14)
    assert info_full["objective"][0] < sparse_code_objective(x, U, a, 0.5, 1.0, 1.0)
