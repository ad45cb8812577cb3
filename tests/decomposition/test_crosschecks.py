"""Cross-checks against TensorLy (TT, CP, Tucker), SciPy (SVD) and scikit-learn (sparse coding).

CP and Tucker are compared by reconstruction error (factors are unique only up to scaling,
permutation and rotation)."""

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse.linalg

from refimpl.decomposition import (
    cp_als,
    cp_to_full,
    eckart_young_error,
    hooi,
    sparse_code,
    sparse_coding_objective,
    truncated_svd,
    tt_ranks,
    tt_svd,
    tt_to_full,
)


def _rel(X, Xh):
    return np.linalg.norm(X - Xh) / np.linalg.norm(X)


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_tt_svd_vs_tensorly(tensorly, rank):
    from tensorly.decomposition import tensor_train

    X = np.random.default_rng(rank).standard_normal((4, 5, 3, 4))
    ours = tt_svd(X, max_rank=rank)
    tl_tt = tensor_train(tensorly.tensor(X), rank=[1, rank, rank, rank, 1])
    theirs = [np.asarray(f) for f in tl_tt.factors]
    assert tt_ranks(ours) == tuple(f.shape[0] for f in theirs) + (1,)
    e_ours, e_tl = _rel(X, tt_to_full(ours)), _rel(X, tensorly.tt_to_tensor(tl_tt))
    assert abs(e_ours - e_tl) < 1e-10, (e_ours, e_tl)


@pytest.mark.parametrize("rank", [2, 3])
def test_cp_vs_tensorly(tensorly, rank):
    from tensorly.decomposition import parafac

    rng = np.random.default_rng(rank)
    X = cp_to_full(np.ones(rank), [rng.standard_normal((n, rank)) for n in (5, 4, 6)])
    X = X + 0.01 * rng.standard_normal(X.shape)
    w, f, errs = cp_als(X, rank, n_iter=500, tol=1e-14)
    cp = parafac(tensorly.tensor(X), rank, n_iter_max=500, tol=1e-14, init="svd")
    e_tl = _rel(X, tensorly.cp_to_tensor(cp))
    assert abs(errs[-1] - e_tl) < 1e-3, (errs[-1], e_tl)
    assert errs[-1] == pytest.approx(_rel(X, cp_to_full(w, f)))


@pytest.mark.parametrize("ranks", [(2, 2, 2), (3, 2, 4)])
def test_tucker_vs_tensorly(tensorly, ranks):
    from tensorly.decomposition import tucker

    X = np.random.default_rng(0).standard_normal((5, 6, 4))
    core, factors, errs = hooi(X, ranks, n_iter=100, tol=1e-14)
    tk = tucker(tensorly.tensor(X), rank=list(ranks), n_iter_max=100, tol=1e-14, init="svd")
    e_tl = _rel(X, tensorly.tucker_to_tensor(tk))
    assert abs(errs[-1] - e_tl) < 1e-6, (errs[-1], e_tl)


@pytest.mark.parametrize("ranks", [(2, 3, 1), (1, 3, 2), (2, 2, 4)])
def test_tucker_unattainable_rank_shapes_match_tensorly(tensorly, ranks):
    """Issue #12: a rank R_k > prod of the other ranks cannot be attained; hooi used to return
    a smaller core than requested. Now it returns the requested (R_1, ..., R_d) core, like
    hosvd, tucker_num_params and TensorLy's tucker, with the same fit."""
    import warnings

    from tensorly.decomposition import tucker

    from refimpl.decomposition import hosvd, tucker_num_params, tucker_to_full

    X = np.random.default_rng(1).standard_normal((3, 4, 5))
    core, factors, errs = hooi(X, ranks, n_iter=100, tol=1e-14)
    assert core.shape == tuple(ranks) == hosvd(X, ranks)[0].shape
    assert [U.shape for U in factors] == [(n, r) for n, r in zip(X.shape, ranks)]
    for U in factors:
        np.testing.assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-12)
    assert core.size + sum(U.size for U in factors) == tucker_num_params(X.shape, ranks)
    assert _rel(X, tucker_to_full(core, factors)) == pytest.approx(errs[-1], abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorLy warns that the rank cannot be reached
        tk = tucker(tensorly.tensor(X), rank=list(ranks), n_iter_max=100, tol=1e-14, init="svd")
    assert tk.core.shape == core.shape
    assert [f.shape for f in tk.factors] == [U.shape for U in factors]
    assert abs(errs[-1] - _rel(X, tensorly.tucker_to_tensor(tk))) < 1e-6


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_truncated_svd_vs_scipy(rank):
    W = np.random.default_rng(rank).standard_normal((12, 9))
    A, B = truncated_svd(W, rank)
    U, s, Vt = scipy.linalg.svd(W, full_matrices=False)
    ref = (U[:, :rank] * s[:rank]) @ Vt[:rank]
    np.testing.assert_allclose(A @ B, ref, atol=1e-12)
    Us, ss, Vts = scipy.sparse.linalg.svds(W, k=rank, random_state=0)
    np.testing.assert_allclose(np.sort(np.linalg.svd(A @ B, compute_uv=False)[:rank]),
                               np.sort(ss), atol=1e-10)
    np.testing.assert_allclose(A @ B, (Us * ss) @ Vts, atol=1e-10)
    assert eckart_young_error(W, rank)[0] == pytest.approx(np.sqrt(np.sum(s[rank:] ** 2)))


@pytest.mark.parametrize("nonneg", [False, True])
def test_sparse_code_objective_vs_sklearn(sklearn, nonneg):
    from sklearn.decomposition import SparseCoder
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(0)
    L, K, V, lam = 8, 12, 20, 0.6
    X, D = rng.standard_normal((L, V)), rng.standard_normal((L, K))
    A = sparse_code(X, D, lam, nonneg=nonneg, n_iter=5000, tol=1e-14)
    ours = sparse_coding_objective(X, D, A, lam)
    # sklearn Lasso: (1/2n)||y - Xw||² + α||w||₁ with n = L  ->  α = λ / (2L)
    lasso = Lasso(alpha=lam / (2 * L), fit_intercept=False, tol=1e-12, max_iter=100_000,
                  positive=nonneg)
    A_sk = np.stack([lasso.fit(D, X[:, i]).coef_.copy() for i in range(V)], axis=1)
    ref = sparse_coding_objective(X, D, A_sk, lam)
    assert abs(ours - ref) <= 1e-6 * ref, (ours, ref)
    if not nonneg:
        # SparseCoder(lasso_cd) uses alpha / n_features internally: transform_alpha = λ / 2
        coder = SparseCoder(dictionary=D.T, transform_algorithm="lasso_cd",
                            transform_alpha=lam / 2, transform_max_iter=100_000)
        A_sc = coder.transform(X.T).T
        ref2 = sparse_coding_objective(X, D, A_sc, lam)
        assert abs(ours - ref2) <= 1e-5 * ref2, (ours, ref2)
