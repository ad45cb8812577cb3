"""CSR SpMV / SpMM kernels: both backends vs dense NumPy and scipy.sparse, edge cases, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.kernels import record_calls
from refimpl.kernels import sparse as S
from refimpl.kernels.sparse import (
    CSRMatrix,
    csr_from_dense,
    csr_matmat,
    csr_matvec,
    dense_x_csr_T,
)

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _sparse(rng, shape, sparsity, dtype=np.float64):
    W = rng.standard_normal(shape).astype(dtype)
    W[rng.random(shape) < sparsity] = 0
    return W


def assert_close(actual, expected, rtol, atol, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.abs(actual - expected)
    max_abs = float(err.max()) if err.size else 0.0
    max_rel = float((err / np.maximum(np.abs(expected), 1e-300)).max()) if err.size else 0.0
    assert np.all(err <= atol + rtol * np.abs(expected)), (
        f"{what}: max abs err {max_abs:.3e}, max rel err {max_rel:.3e}")


# ------------------------------------------------------------------------------ exact values
def test_hand_worked_example_with_an_empty_row(backend):
    W = np.array([[0.0, 2.0, 0.0],
                  [0.0, 0.0, 0.0],   # empty row
                  [1.0, 0.0, 3.0]])
    A = csr_from_dense(W)
    np.testing.assert_array_equal(A.indptr, [0, 1, 1, 3])
    np.testing.assert_array_equal(A.indices, [1, 0, 2])
    np.testing.assert_array_equal(A.data, [2.0, 1.0, 3.0])
    assert A.indices.dtype == np.uint16 and A.nnz == 3
    assert A.sparsity == pytest.approx(6 / 9)
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(csr_matvec(A, x, backend=backend), [4.0, 0.0, 10.0])
    X = np.array([[1.0, -1.0], [2.0, 0.5], [3.0, 0.0]])
    np.testing.assert_array_equal(csr_matmat(A, X, backend=backend),
                                  [[4.0, 1.0], [0.0, 0.0], [10.0, -1.0]])


@pytest.mark.parametrize("n_cols, dtype", [(1 << 16, np.uint16), ((1 << 16) + 1, np.uint32)])
def test_index_dtype_boundary(backend, n_cols, dtype):
    # the last column must survive the narrow index type on both sides of the 65536 boundary
    W = np.zeros((2, n_cols))
    W[0, n_cols - 1] = 2.0
    W[1, 0] = -1.0
    W[1, n_cols - 1] = 3.0
    A = csr_from_dense(W)
    assert A.indices.dtype == dtype
    x = np.zeros(n_cols)
    x[0], x[-1] = 5.0, 7.0
    np.testing.assert_array_equal(csr_matvec(A, x, backend=backend), [14.0, 16.0])


@pytest.mark.parametrize("row_len", range(10))
def test_row_lengths_cover_the_unrolled_tail(backend, row_len):
    # rows of 0..9 stored values exercise the 4-way unrolled loop and its remainder
    rng = np.random.default_rng(row_len)
    W = np.zeros((3, 12))
    for i in range(3):
        W[i, rng.choice(12, row_len, replace=False)] = rng.integers(1, 9, row_len)
    x = rng.integers(-4, 5, 12).astype(np.float64)
    # small integers: every summation order gives the exact same float result
    np.testing.assert_array_equal(csr_matvec(csr_from_dense(W), x, backend=backend), W @ x)


def test_one_by_one(backend):
    A = csr_from_dense(np.array([[-3.0]]))
    np.testing.assert_array_equal(csr_matvec(A, np.array([2.0]), backend=backend), [-6.0])
    np.testing.assert_array_equal(csr_matmat(A, np.array([[2.0, 1.0]]), backend=backend),
                                  [[-6.0, -3.0]])
    Z = csr_from_dense(np.array([[0.0]]))
    assert Z.nnz == 0
    np.testing.assert_array_equal(csr_matvec(Z, np.array([5.0]), backend=backend), [0.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_zero_matrix_gives_zeros(backend, dtype):
    A = csr_from_dense(np.zeros((7, 5), dtype=dtype))
    assert A.nnz == 0 and A.sparsity == 1.0
    y = csr_matvec(A, np.ones(5, dtype=dtype), backend=backend)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, np.zeros(7))
    Y = csr_matmat(A, np.ones((5, 3), dtype=dtype), backend=backend)
    np.testing.assert_array_equal(Y, np.zeros((7, 3)))


def test_threshold_keeps_only_larger_magnitudes():
    W = np.array([[0.1, -0.6, 0.5], [0.7, 0.0, -0.2]])
    A = csr_from_dense(W, threshold=0.5)
    np.testing.assert_array_equal(A.to_dense(), [[0.0, -0.6, 0.0], [0.7, 0.0, 0.0]])
    np.testing.assert_array_equal(A.indptr, [0, 1, 2])


# ------------------------------------------------------------------------ vs dense and scipy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,sparsity", [((64, 48), 0.9), ((33, 70), 0.5),
                                            ((300, 300), 0.2)])  # last: > PARALLEL_MIN_WORK
def test_matvec_matmat_match_dense_and_scipy(backend, dtype, shape, sparsity):
    rng = np.random.default_rng(hash((shape, sparsity)) % 2**32)
    W = _sparse(rng, shape, sparsity, dtype)
    A = csr_from_dense(W)
    x = rng.standard_normal(shape[1]).astype(dtype)
    X = rng.standard_normal((shape[1], 5)).astype(dtype)
    y = csr_matvec(A, x, backend=backend)
    Y = csr_matmat(A, X, backend=backend)
    assert y.dtype == dtype and Y.dtype == dtype
    W64, x64, X64 = W.astype(np.float64), x.astype(np.float64), X.astype(np.float64)
    assert_close(y, W64 @ x64, **TOL[dtype], what="matvec vs dense")
    assert_close(Y, W64 @ X64, **TOL[dtype], what="matmat vs dense")
    # cross-check: scipy.sparse builds the same CSR arrays and the same products
    ref = sp.csr_matrix(W)
    np.testing.assert_array_equal(A.indptr, ref.indptr)
    np.testing.assert_array_equal(A.indices, ref.indices)
    np.testing.assert_array_equal(A.data, ref.data)
    assert_close(y, ref @ x, **TOL[dtype], what="matvec vs scipy.sparse")
    assert_close(Y, ref @ X, **TOL[dtype], what="matmat vs scipy.sparse")


def test_parallel_and_serial_kernels_agree():
    rng = np.random.default_rng(3)
    W = _sparse(rng, (400, 300), 0.3)
    A = csr_from_dense(W)
    assert A.nnz >= S.PARALLEL_MIN_WORK  # the public call takes the prange path
    x = rng.standard_normal(300)
    bounds = S._row_blocks(A)
    y_ser = np.zeros(400)
    y_par = np.zeros(400)
    for gather in (False, True):  # x loaded by inserts or by gathers: the same lanes
        S._csr_matvec_serial(S._uindptr(A), A.indices, A.data, x, y_ser, gather)
        S._csr_matvec_threaded(S._uindptr(A), A.indices, A.data, x, y_par,
                               S._row_blocks(A, 32), gather)
        np.testing.assert_array_equal(y_ser, y_par)  # same per-row summation order
    X = rng.standard_normal((300, 37))
    Y_ser = np.empty((400, 37))
    Y_par = np.empty((400, 37))
    S._csr_matmat_serial(S._uindptr(A), A.indices, A.data, X, Y_ser)
    S._csr_matmat_parallel(S._uindptr(A), A.indices, A.data, X, Y_par, bounds)
    np.testing.assert_array_equal(Y_ser, Y_par)
    np.testing.assert_array_equal(S._uindptr(A), A.indptr)  # a view with the same values
    assert np.shares_memory(S._uindptr(A), A.indptr)


def _int_case(rng, n_rows, n_cols, dtype, max_row=None):
    """Small-integer matrix with every row length from 0 up (so the pair loop, the odd last
    value and the tail of fewer than 4 values all occur): every product and partial
    sum is an integer below 2^24, so every summation order gives the same float."""
    W = np.zeros((n_rows, n_cols), dtype=dtype)
    for i in range(n_rows):
        length = i % (min(n_cols, max_row or n_cols) + 1)
        W[i, rng.choice(n_cols, length, replace=False)] = rng.integers(-8, 9, length)
    return W


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 2, 5, 8, 15, 16, 17, 31, 32, 33, 40, 64, 70])
def test_matmat_exact_on_integers_every_batch_width(backend, dtype, batch):
    # batch widths around the 512-bit vector (16 float32 / 8 float64 lanes) and the two-vector
    # pass: full passes, a masked last pass, a pass whose second vector is all masked
    rng = np.random.default_rng(batch)
    W = _int_case(rng, 90, 50, dtype)
    X = rng.integers(-4, 5, (50, batch)).astype(dtype)
    Y = csr_matmat(csr_from_dense(W), X, backend=backend)
    assert Y.dtype == dtype
    np.testing.assert_array_equal(Y, W.astype(np.float64) @ X)
    # the serial and threaded drivers (the public call picks by size) give the same
    A = csr_from_dense(W)
    if backend == "numba":
        Yp = np.empty_like(Y)
        S._csr_matmat_parallel(S._uindptr(A), A.indices, A.data, X, Yp, S._row_blocks(A))
        np.testing.assert_array_equal(Yp, Y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matvec_serial_and_threaded_exact_on_integers(monkeypatch, dtype):
    rng = np.random.default_rng(11)
    W = _int_case(rng, 300, 80, dtype, max_row=70)  # row lengths 0 .. 70
    x = rng.integers(-4, 5, 80).astype(dtype)
    A = csr_from_dense(W)
    for kern in ("serial", "threaded"):
        monkeypatch.setattr(S, "SPMV_PARALLEL_MIN_NNZ", 0 if kern == "threaded" else 1 << 60)
        np.testing.assert_array_equal(csr_matvec(A, x, backend="numba"), W.astype(float) @ x)


def _gamma_bound(W, X, extra=2):
    """|Y - W X| <= γ_n |W| |X| for any order of a sum of at most n products, with or without
    fused multiply-adds (Higham, Thm. 3.1 / Eq. (3.5)), n = longest row + ``extra``."""
    u = 2.0 ** -24 if W.dtype == np.float32 else 2.0 ** -53
    n = int(np.count_nonzero(W, axis=1).max()) + extra
    g = n * u / (1 - n * u)
    return g * (np.abs(W).astype(np.float64) @ np.abs(X).astype(np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_values_within_the_rounding_bound(backend, dtype):
    rng = np.random.default_rng(12)
    W = _sparse(rng, (200, 500), 0.8, dtype)
    A = csr_from_dense(W)
    X = rng.standard_normal((500, 24)).astype(dtype)
    ref = W.astype(np.float64) @ X.astype(np.float64)
    Y = csr_matmat(A, X, backend=backend)
    err = np.abs(Y - ref)
    assert np.all(err <= _gamma_bound(W, X)), (err / _gamma_bound(W, X)).max()
    assert err.max() > 0  # the bound is exercised: random sums do round
    y = csr_matvec(A, X[:, 0], backend=backend)
    assert np.all(np.abs(y - ref[:, 0]) <= _gamma_bound(W, X[:, :1])[:, 0])


def test_matmat_result_does_not_depend_on_batch_width_or_threads():
    """Each output's summation order is fixed by its row alone: computing any subset of the
    columns, or on one thread, gives bit-identical results (deterministic SpMM)."""
    import numba

    rng = np.random.default_rng(13)
    for dtype in DTYPES:
        W = _sparse(rng, (300, 400), 0.7, dtype)
        A = csr_from_dense(W)
        X = rng.standard_normal((400, 70)).astype(dtype)
        Y = csr_matmat(A, X, backend="numba")
        for cols in (slice(0, 1), slice(3, 20), slice(5, 70), slice(40, 41)):
            np.testing.assert_array_equal(csr_matmat(A, X[:, cols], backend="numba"),
                                          Y[:, cols])
        threads = numba.get_num_threads()
        try:
            numba.set_num_threads(1)
            np.testing.assert_array_equal(csr_matmat(A, X, backend="numba"), Y)
        finally:
            numba.set_num_threads(threads)
        np.testing.assert_array_equal(csr_matmat(A, X, backend="numba"), Y)  # and again


def test_row_blocks_split_the_work_evenly():
    rng = np.random.default_rng(14)
    # very uneven rows: the first 50 rows dense, the rest nearly empty
    W = _sparse(rng, (1000, 600), 0.99)
    W[:50] = rng.standard_normal((50, 600))
    A = csr_from_dense(W)
    b = S._row_blocks(A)
    assert b[0] == 0 and b[-1] == 1000 and np.all(np.diff(b) >= 0)
    assert b.dtype == np.int64
    cost = A.indptr + np.arange(1001)
    per_block = np.diff(cost[b])
    longest = np.max(np.diff(A.indptr)) + 1
    assert per_block.sum() == cost[-1]
    assert per_block.max() <= cost[-1] / (len(b) - 1) + longest  # within one row of even
    assert S._row_blocks(A) is b  # cached on the matrix


def test_numba_dispatch_picks_the_row_kernels(monkeypatch):
    """Which driver runs: serial or threaded (row blocks balanced by work) by size, for SpMV,
    for the IR SpMM rows of csr_matmat and for dense_x_csr_T."""
    monkeypatch.setattr(S, "_FRONT_ON", False)  # the compiled front calls them compiled
    ran = []
    for name in ("_csr_matvec_serial", "_csr_matvec_threaded", "_csr_matmat_serial",
                 "_csr_matmat_parallel", "_csr_matmat_loops"):
        real = getattr(S, name)
        monkeypatch.setattr(S, name, lambda *a, _r=real, _n=name: ran.append(_n) or _r(*a))
    rng = np.random.default_rng(15)
    small = csr_from_dense(_sparse(rng, (20, 30), 0.5))
    big = csr_from_dense(_sparse(rng, (400, 400), 0.5))
    assert big.nnz >= S.PARALLEL_MIN_WORK > small.nnz * 3
    # SpMV has its own, higher threshold (waking the threads costs more than a mid-size SpMV)
    bigger = csr_from_dense(_sparse(rng, (600, 600), 0.5))
    assert bigger.nnz >= S.SPMV_PARALLEL_MIN_NNZ > big.nnz
    for A, drv in ((small, "serial"), (big, "serial"), (bigger, "threaded")):
        ran.clear()
        csr_matvec(A, np.ones(A.shape[1]), backend="numba")
        assert ran == [f"_csr_matvec_{drv}"], (drv, ran)
    for A, X, drv in ((small, np.ones((30, 3)), "serial"), (big, np.ones((400, 3)),
                                                             "parallel")):
        ran.clear()
        csr_matmat(A, X, backend="numba")
        assert ran == [f"_csr_matmat_{drv}"]
        ran.clear()
        dense_x_csr_T(X.T, A, backend="numba")
        assert ran == [f"_csr_matmat_{drv}"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3, 16, 33])
def test_dense_x_csr_T_equals_transposed_matmat_bit_for_bit(backend, dtype, batch):
    # the strided (scattered) output store of X @ W.T sums in the same order as csr_matmat
    rng = np.random.default_rng(16)
    W = _sparse(rng, (70, 90), 0.6, dtype)
    A = csr_from_dense(W)
    X = rng.standard_normal((batch, 90)).astype(dtype)
    # (the transposed product first: a record_calls log nested in the backend fixture's must
    # not equal it, since record_calls removes its log from the recorders by equality)
    YT = csr_matmat(A, X.T, backend=backend)
    with record_calls() as log:
        Y = dense_x_csr_T(X, A, backend=backend)
    assert log == [("dense_x_csr_T", backend)]
    assert Y.shape == (batch, 70) and Y.flags.c_contiguous and Y.dtype == dtype
    np.testing.assert_array_equal(Y, YT.T)
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    assert np.all(np.abs(Y - ref) <= _gamma_bound(W, X.T).T)


def test_kernels_run_with_jit_disabled():
    """NUMBA_DISABLE_JIT=1: the IR row kernels cannot run, the plain loops do, exactly."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np\nfrom refimpl.kernels import sparse as S\n"
            "rng = np.random.default_rng(0)\n"
            "W = rng.integers(-3, 4, (40, 30)).astype('f4'); W[rng.random(W.shape) < .6] = 0\n"
            "X = rng.integers(-3, 4, (30, 5)).astype('f4'); A = S.csr_from_dense(W)\n"
            "assert np.array_equal(S.csr_matmat(A, X, backend='numba'), W @ X)\n"
            "assert np.array_equal(S.csr_matvec(A, X[:, 0], backend='numba'), W @ X[:, 0])\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_x_csr_T_is_a_pruned_linear_forward(backend, dtype):
    rng = np.random.default_rng(5)
    W = _sparse(rng, (12, 20), 0.8, dtype)  # (out_features, in_features)
    X = rng.standard_normal((7, 20)).astype(dtype)  # (batch, in_features)
    Y = dense_x_csr_T(X, csr_from_dense(W), backend=backend)
    assert Y.shape == (7, 12) and Y.dtype == dtype and Y.flags.c_contiguous
    assert_close(Y, X.astype(np.float64) @ W.astype(np.float64).T, **TOL[dtype],
                 what="X @ W.T")


def test_non_contiguous_inputs(backend):
    rng = np.random.default_rng(7)
    W = _sparse(rng, (20, 30), 0.7)
    A = csr_from_dense(W[:, :])
    big = rng.standard_normal(60)
    x = big[::2]  # strided view
    assert not x.flags.c_contiguous
    assert_close(csr_matvec(A, x, backend=backend), W @ x, 1e-12, 1e-12, "strided x")
    XF = np.asfortranarray(rng.standard_normal((30, 4)))
    assert_close(csr_matmat(A, XF, backend=backend), W @ XF, 1e-12, 1e-12, "Fortran X")
    XT = rng.standard_normal((4, 30)).T  # transposed view
    assert_close(csr_matmat(A, XT, backend=backend), W @ XT, 1e-12, 1e-12, "X.T view")
    # a non-contiguous dense W converts too
    Wt = np.ascontiguousarray(W.T).T
    np.testing.assert_array_equal(csr_from_dense(Wt).to_dense(), W)


def test_inputs_not_mutated(backend):
    rng = np.random.default_rng(8)
    W = _sparse(rng, (10, 8), 0.5)
    A = csr_from_dense(W)
    arrays = [A.indptr, A.indices, A.data]
    before = [a.copy() for a in arrays]
    x = rng.standard_normal(8)
    x0 = x.copy()
    csr_matvec(A, x, backend=backend)
    csr_matmat(A, x[:, None], backend=backend)
    np.testing.assert_array_equal(x, x0)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------ dtype
@pytest.mark.parametrize("dA,dx,dout", [(np.float32, np.float32, np.float32),
                                        (np.float64, np.float64, np.float64),
                                        (np.float32, np.float64, np.float64),
                                        (np.float64, np.float32, np.float64),
                                        (np.float32, np.int64, np.float64)])
def test_result_dtype_is_the_promoted_input_dtype(backend, dA, dx, dout):
    A = csr_from_dense(np.array([[1.0, 0.0], [0.5, 2.0]], dtype=dA))
    assert A.dtype == dA
    x = np.array([1, 2], dtype=dx)
    y = csr_matvec(A, x, backend=backend)
    assert y.dtype == dout
    np.testing.assert_array_equal(y, [1.0, 4.5])
    assert csr_matmat(A, x[:, None], backend=backend).dtype == dout


def test_integer_matrix_is_promoted_to_float64():
    assert csr_from_dense(np.array([[1, 0], [0, 2]])).dtype == np.float64


# --------------------------------------------------------------------------------- bad input
def test_shape_mismatch_names_the_argument(backend):
    A = csr_from_dense(np.eye(3))
    with pytest.raises(ValueError, match="x must have shape"):
        csr_matvec(A, np.ones(4), backend=backend)
    with pytest.raises(ValueError, match="x must have shape"):
        csr_matvec(A, np.ones((3, 1)), backend=backend)
    with pytest.raises(ValueError, match="X must have shape"):
        csr_matmat(A, np.ones((4, 2)), backend=backend)
    with pytest.raises(ValueError, match="X must have shape"):
        dense_x_csr_T(np.ones((2, 4)), A, backend=backend)
    csr_matvec(A, np.ones(3), backend=backend)  # the fixture wants one real dispatch


def test_nan_is_rejected_naming_the_argument(backend):
    A = csr_from_dense(np.eye(3))
    with pytest.raises(ValueError, match="x contains NaN"):
        csr_matvec(A, np.array([1.0, np.nan, 0.0]), backend=backend)
    with pytest.raises(ValueError, match="X contains NaN"):
        csr_matmat(A, np.array([[1.0], [np.inf], [0.0]]), backend=backend)
    with pytest.raises(ValueError, match="X contains NaN"):
        dense_x_csr_T(np.array([[1.0, np.nan, 0.0]]), A, backend=backend)
    with pytest.raises(ValueError, match="W contains NaN"):
        csr_from_dense(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="data contains NaN"):
        CSRMatrix(np.array([0, 1]), np.array([0]), np.array([np.nan]), (1, 1))
    csr_matvec(A, np.ones(3), backend=backend)


def test_bad_arguments_have_clear_messages():
    with pytest.raises(TypeError, match="A must be a CSRMatrix"):
        csr_matvec(np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="backend must be one of"):
        csr_matvec(csr_from_dense(np.eye(2)), np.ones(2), backend="cuda")
    with pytest.raises(ValueError, match="threshold"):
        csr_from_dense(np.eye(2), threshold=-1)
    with pytest.raises(ValueError, match="W must have ndim"):
        csr_from_dense(np.ones(3))
    with pytest.raises(ValueError, match="W must not be empty"):
        csr_from_dense(np.ones((0, 3)))
    with pytest.raises(ValueError, match="indptr"):
        CSRMatrix(np.array([0, 2, 1]), np.array([0]), np.array([1.0]), (2, 2))
    with pytest.raises(ValueError, match="indptr"):
        CSRMatrix(np.array([0, 1]), np.array([0]), np.array([1.0]), (2, 2))
    with pytest.raises(ValueError, match="indices must lie"):
        CSRMatrix(np.array([0, 1]), np.array([5]), np.array([1.0]), (1, 2))
    with pytest.raises(ValueError, match="shape"):
        CSRMatrix(np.array([0]), np.array([], dtype=int), np.array([]), (0, 2))
    with pytest.raises(TypeError, match="data must be float32 or float64"):
        CSRMatrix(np.array([0, 1]), np.array([0]), np.array([1]), (1, 1))


def test_matmul_operator_and_to_scipy():
    rng = np.random.default_rng(9)
    W = _sparse(rng, (6, 4), 0.5)
    A = csr_from_dense(W)
    x = rng.standard_normal(4)
    np.testing.assert_allclose(A @ x, W @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(A @ x[:, None], W @ x[:, None], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(A.to_scipy().toarray(), W)
    assert "nnz=" in repr(A)


# ------------------------------------------------------------------------------ properties
@settings(max_examples=25, deadline=None)
@given(n_rows=st.integers(1, 12), n_cols=st.integers(1, 12), sparsity=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**16), f32=st.booleans())
def test_round_trip_and_products_hypothesis(n_rows, n_cols, sparsity, seed, f32):
    dtype = np.float32 if f32 else np.float64
    rng = np.random.default_rng(seed)
    W = _sparse(rng, (n_rows, n_cols), sparsity, dtype)
    A = csr_from_dense(W)
    # round trip is exact, nnz is exact, columns sorted within rows
    np.testing.assert_array_equal(A.to_dense(), W)
    assert A.to_dense().dtype == dtype
    assert A.nnz == np.count_nonzero(W)
    for i in range(n_rows):
        cols = A.indices[A.indptr[i]:A.indptr[i + 1]]
        assert np.all(np.diff(cols.astype(np.int64)) > 0)
    x = rng.standard_normal(n_cols).astype(dtype)
    X = rng.standard_normal((n_cols, 3)).astype(dtype)
    for b in ("numba", "numpy"):
        assert_close(csr_matvec(A, x, backend=b), W.astype(np.float64) @ x, **TOL[dtype],
                     what=f"matvec {b}")
        assert_close(csr_matmat(A, X, backend=b), W.astype(np.float64) @ X, **TOL[dtype],
                     what=f"matmat {b}")
    # the two backends agree to rounding
    assert_close(csr_matvec(A, x, backend="numba"), csr_matvec(A, x, backend="numpy"),
                 **TOL[dtype], what="numba vs numpy")


# ------------------------------------------------------------------- immutability, duplicates
def test_stored_arrays_are_read_only_private_copies(backend):
    # the kernels trust the one-time validation (no bounds checks): the validated arrays can
    # not be changed afterwards, and the caller's arrays are copied, not frozen
    indptr = np.array([0, 2, 3], dtype=np.int64)
    indices = np.array([0, 2, 1], dtype=np.uint16)  # already the stored dtype: still copied
    data = np.array([1.0, 2.0, 3.0])
    A = CSRMatrix(indptr, indices, data, (2, 3))
    for name in ("indptr", "indices", "data"):
        arr = getattr(A, name)
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 7
        with pytest.raises(ValueError):  # nor can the flag be turned back on
            arr.setflags(write=True)
    with pytest.raises(ValueError, match="read-only"):
        A.indptr[1] = 10**9  # the change that made the Numba kernel segfault
    for mine, stored in ((indptr, A.indptr), (indices, A.indices), (data, A.data)):
        assert mine.flags.writeable and not np.shares_memory(mine, stored)
    indices[0] = 2  # the caller's arrays stay the caller's: A does not change
    data[0] = 100.0
    np.testing.assert_array_equal(A.to_dense(), [[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    np.testing.assert_array_equal(csr_matvec(A, np.array([1.0, 10.0, 100.0]), backend=backend),
                                  [201.0, 30.0])
    B = csr_from_dense(np.eye(3))
    assert not (B.indptr.flags.writeable or B.indices.flags.writeable or B.data.flags.writeable)


@pytest.mark.parametrize("bad", [[0, 3], [-1, 0], [0, 70000]])
def test_out_of_range_indices_are_refused_naming_indices(bad):
    with pytest.raises(ValueError, match=r"^indices must lie in \[0, 3\)"):
        CSRMatrix(np.array([0, 1, 2]), np.array(bad), np.array([1.0, 2.0]), (2, 3))


def test_to_dense_sums_duplicates_like_scipy_and_the_kernels(backend):
    # row 0 stores column 1 three times, row 2 column 0 twice: the entry is the sum
    indptr = np.array([0, 4, 4, 7])
    indices = np.array([1, 3, 1, 1, 0, 2, 0])
    data = np.array([1.0, 2.0, 0.25, -4.0, 8.0, 16.0, 0.5])
    A = CSRMatrix(indptr, indices, data, (3, 4))
    ref = sp.csr_matrix((data, indices, indptr), shape=(3, 4)).toarray()
    np.testing.assert_array_equal(ref[0], [0.0, -2.75, 0.0, 2.0])  # the sum, not the last
    np.testing.assert_array_equal(A.to_dense(), ref)
    x = np.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_array_equal(csr_matvec(A, x, backend=backend), ref @ x)  # exact here
    X = np.stack([x, -x], axis=1)
    np.testing.assert_array_equal(csr_matmat(A, X, backend=backend), ref @ X)
