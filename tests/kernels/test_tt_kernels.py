"""TT-matrix × matrix and TT-embedding lookup kernels: Numba vs NumPy reference vs dense."""

import numpy as np
import pytest

from refimpl.decomposition import tt_matrix_to_full
from refimpl.kernels.tt import tt_embedding_lookup, tt_matmul


def _cores(ms, ns, r, rng, dtype=np.float64):
    d = len(ms)
    ranks = [1] + [r] * (d - 1) + [1]
    return [rng.standard_normal((ranks[k], ms[k], ns[k], ranks[k + 1])).astype(dtype)
            for k in range(d)]


@pytest.mark.parametrize("ms,ns,r", [((2, 3, 4), (3, 2, 2), 3), ((4, 4), (2, 8), 5),
                                     ((5,), (7,), 1), ((2, 2, 2, 2), (2, 2, 2, 2), 2)])
def test_tt_matmul_matches_dense(backend, ms, ns, r):
    rng = np.random.default_rng(0)
    cores = _cores(ms, ns, r, rng)
    W = tt_matrix_to_full(cores)
    X = rng.standard_normal((6, W.shape[1]))
    Y = tt_matmul(cores, X, backend=backend)
    ref = X @ W.T
    err = np.abs(Y - ref).max()
    assert err < 1e-11 * max(1.0, np.abs(ref).max()), f"max abs err {err:.3e}"
    y1 = tt_matmul(cores, X[0], backend=backend)
    assert y1.shape == (W.shape[0],)
    np.testing.assert_allclose(y1, ref[0], atol=1e-11)


def test_tt_matmul_float32(backend):
    rng = np.random.default_rng(1)
    cores = _cores((4, 4), (4, 4), 3, rng, np.float32)
    X = rng.standard_normal((3, 16)).astype(np.float32)
    Y = tt_matmul(cores, X, backend=backend)
    assert Y.dtype == np.float32
    ref = X.astype(np.float64) @ tt_matrix_to_full([c.astype(np.float64) for c in cores]).T
    np.testing.assert_allclose(Y, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("vs,ds,r", [((3, 4), (2, 3), 2), ((2, 3, 2), (2, 2, 3), 4),
                                     ((6,), (5,), 1)])
def test_tt_embedding_lookup_matches_dense_rows(backend, vs, ds, r):
    rng = np.random.default_rng(0)
    cores = _cores(vs, ds, r, rng)
    E = tt_matrix_to_full(cores)
    idx = rng.integers(0, E.shape[0], size=(4, 5))
    rows = tt_embedding_lookup(cores, idx, backend=backend)
    assert rows.shape == (4, 5, E.shape[1])
    np.testing.assert_allclose(rows, E[idx], atol=1e-12)


def test_kernel_bad_input(backend):
    rng = np.random.default_rng(0)
    cores = _cores((2, 3), (3, 2), 2, rng)
    with pytest.raises(ValueError, match="X"):
        tt_matmul(cores, np.ones((2, 5)), backend=backend)
    with pytest.raises(ValueError, match="idx"):
        tt_embedding_lookup(cores, np.array([6]), backend=backend)
    with pytest.raises(TypeError, match="idx"):
        tt_embedding_lookup(cores, np.array([0.5]), backend=backend)
    with pytest.raises(ValueError, match=r"cores\[1\]"):
        tt_matmul([cores[0], cores[1][:1]], np.ones(6), backend=backend)
    tt_matmul(cores, np.ones(6), backend=backend)  # a kernel ran on this backend


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_inputs_are_refused_naming_the_argument(backend, bad):
    # the kernels' NaN policy (as the decomposition wrappers): ValueError naming X or cores[k]
    rng = np.random.default_rng(2)
    cores = _cores((2, 3), (3, 2), 2, rng)
    X = rng.standard_normal((2, 6))
    Xb = X.copy()
    Xb[1, 4] = bad
    with pytest.raises(ValueError, match=r"^X contains NaN or inf$"):
        tt_matmul(cores, Xb, backend=backend)
    for k in range(2):
        cb = [c.copy() for c in cores]
        cb[k].flat[3] = bad
        with pytest.raises(ValueError, match=rf"^cores\[{k}\] contains NaN or inf$"):
            tt_matmul(cb, X, backend=backend)
        with pytest.raises(ValueError, match=rf"^cores\[{k}\] contains NaN or inf$"):
            tt_embedding_lookup(cb, np.array([0, 5]), backend=backend)
    with pytest.raises(TypeError, match="X must be a real numeric array"):
        tt_matmul(cores, X.astype(complex), backend=backend)
    Y = tt_matmul(cores, X, backend=backend)  # finite inputs still run on this backend
    np.testing.assert_allclose(Y, X @ tt_matrix_to_full(cores).T, atol=1e-12)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 2)])
def test_tt_embedding_lookup_of_no_indices(backend, shape):
    rng = np.random.default_rng(3)
    cores = _cores((3, 4), (2, 3), 2, rng)
    rows = tt_embedding_lookup(cores, np.zeros(shape, dtype=np.int64), backend=backend)
    assert rows.shape == shape + (6,) and rows.dtype == np.float64
