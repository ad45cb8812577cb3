"""The compiled SpMV front (``sparse._front`` / ``_spmv_front``, issue #19): once the checked
path has served a call of given types, the next such call is one compiled call (checks, the
serial rows or the thread team woken from compiled code, blocks of equal work). The same bits
as the checked path for both value and index dtypes, serial and threaded, with the ``x``
values gathered or inserted; what it cannot serve falls back, and errors keep their messages.
Also the CPU choice of gathers (``$REFIMPL_SPMV_GATHER``) and the compiled blocks."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from refimpl.kernels import record_calls
from refimpl.kernels import sparse as S
from refimpl.kernels.sparse import CSRMatrix, csr_from_dense, csr_matvec


def _matrix(rng, n_rows, n_cols, sparsity, dtype):
    W = rng.standard_normal((n_rows, n_cols)).astype(dtype)
    W[rng.random(W.shape) < sparsity] = 0
    W[::5] = 0  # empty rows
    return csr_from_dense(W), W


@pytest.fixture
def spy(monkeypatch):
    """Count the calls the front's compiled entry serves: ``(code, bad)``."""
    taken = []
    real_add = S._spmv_front_add

    def spy_add(A, x):
        real_add(A, x)
        for code, (tm, entry, args) in list(S._FRONT.items()):
            if getattr(entry, "_spy", False):
                continue

            def served(*b, _entry=entry):
                r = _entry(*b)  # an uncompiled signature raises TypeError: not counted
                taken.append((b[6], int(r[1])))
                return r

            served._spy = True
            S._FRONT[code] = (tm, served, args)

    monkeypatch.setattr(S, "_spmv_front_add", spy_add)
    monkeypatch.setattr(S, "_FRONT", {})
    return taken


@pytest.mark.parametrize("gather", [False, True])
def test_front_same_bits_as_the_checked_path(rng, monkeypatch, spy, gather):
    monkeypatch.setattr(S, "SPMV_GATHER", gather)
    for dtype in (np.float32, np.float64):
        for n_cols in (300, (1 << 16) + 3):  # uint16 and uint32 column indices
            A, W = _matrix(rng, 120, n_cols, 0.5 if n_cols < 1000 else 0.995, dtype)
            x = rng.standard_normal(n_cols).astype(dtype)
            code = S._SPMV_CODES[(A.data.dtype, A.indices.dtype)]
            for threshold in (1 << 60, 1):  # serial rows, then the thread team
                monkeypatch.setattr(S, "SPMV_PARALLEL_MIN_NNZ", threshold)
                with record_calls():  # the checked path (a recorder keeps the front away)
                    want = csr_matvec(A, x)
                n = len(spy)
                for _ in range(3):
                    y = csr_matvec(A, x)
                    assert y.dtype == dtype and y.shape == (120,)
                    np.testing.assert_array_equal(y, want)
                assert spy[n:] == [(code, 0)] * 3, (dtype, n_cols, threshold, spy[n:])
            ref = W.astype(np.float64) @ x.astype(np.float64)
            tol = 64 * np.finfo(dtype).eps * (np.abs(W) @ np.abs(x)).max()
            assert np.max(np.abs(want - ref)) <= tol


def test_front_splits_the_work_with_the_helpers(rng, monkeypatch, spy):
    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: no helper")
    monkeypatch.setattr(S, "SPMV_PARALLEL_MIN_NNZ", 1)
    A, _ = _matrix(rng, 2000, 400, 0.5, np.float32)
    x = rng.standard_normal(400).astype(np.float32)
    want = csr_matvec(A, x)
    team = S._TEAM[0]
    for _ in range(5):
        np.testing.assert_array_equal(csr_matvec(A, x), want)
        counts = team.counts()
        assert counts.sum() == S._TEAM_BLOCKS * numba.get_num_threads()  # every block once
    assert spy and all(bad == 0 for _, bad in spy)


def test_front_fallbacks_and_errors(rng, monkeypatch, spy):
    A, W = _matrix(rng, 60, 50, 0.5, np.float32)
    x = rng.standard_normal(50).astype(np.float32)
    want = csr_matvec(A, x)
    np.testing.assert_array_equal(csr_matvec(A, x), want)
    n = len(spy)
    assert n == 1
    # what the front does not serve takes the checked path, with its own result dtype
    x2 = np.zeros(100, np.float32)
    x2[::2] = x
    np.testing.assert_array_equal(csr_matvec(A, x2[::2]), want)  # strided
    x64 = x.astype(np.float64)
    y64 = csr_matvec(A, x64)
    assert y64.dtype == np.float64
    np.testing.assert_array_equal(y64, csr_matvec(A, x64, backend="numba"))
    xl = [float(v) for v in x]  # a list: the checked path makes it a float64 array
    np.testing.assert_array_equal(csr_matvec(A, xl), csr_matvec(A, np.array(xl), backend="numba"))
    xr = x.copy()
    xr.flags.writeable = False
    np.testing.assert_array_equal(csr_matvec(A, xr), want)
    with record_calls() as log:
        csr_matvec(A, x, backend="numpy")
        csr_matvec(A, x)
    assert log == [("csr_matvec", "numpy"), ("csr_matvec", "numba")]
    monkeypatch.setenv("REFIMPL_BACKEND", "numpy")
    with record_calls() as log:
        np.testing.assert_array_equal(csr_matvec(A, x), csr_matvec(A, x, backend="numpy"))
    assert log == [("csr_matvec", "numpy")] * 2
    monkeypatch.delenv("REFIMPL_BACKEND")
    assert len(spy) == n  # none of these reached the front
    # a length or a value the front declines raises the checked path's message
    with pytest.raises(ValueError, match="x"):
        csr_matvec(A, np.zeros(49, np.float32))
    bad = x.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="x"):
        csr_matvec(A, bad)
    bad[7] = np.inf
    with pytest.raises(ValueError, match="x"):
        csr_matvec(A, bad)
    assert spy[n:] == [(0, 1)] * 3  # each reached the front and was declined
    assert not np.isnan(x).any()  # the input is not mutated
    with pytest.raises(TypeError, match="A must be a CSRMatrix"):
        csr_matvec(W, x)


def test_front_off_switch_and_the_numpy_twin(rng, monkeypatch, spy):
    A, W = _matrix(rng, 40, 30, 0.3, np.float64)
    x = rng.standard_normal(30)
    csr_matvec(A, x)
    monkeypatch.setattr(S, "_FRONT_ON", False)
    y = csr_matvec(A, x)
    assert spy == []
    monkeypatch.setattr(S, "_FRONT_ON", True)
    np.testing.assert_array_equal(csr_matvec(A, x), y)
    assert spy == [(2, 0)]
    np.testing.assert_allclose(y, csr_matvec(A, x, backend="numpy"), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n_blocks", [1, 2, 7, 64])
def test_work_bounds_are_the_first_rows_reaching_each_share(rng, n_blocks):
    lengths = rng.integers(0, 40, 333)
    lengths[100:150] = 0
    indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    b = S._work_bounds(indptr.view(np.uint64), n_blocks)
    cost = indptr + np.arange(len(indptr))  # exact integers
    total = int(cost[-1])
    want = [0] + [int(np.argmax(cost * n_blocks >= total * t)) for t in range(1, n_blocks)] + \
        [len(lengths)]
    assert b.dtype == np.int64 and b.tolist() == want
    A = CSRMatrix(indptr, np.zeros(indptr[-1], np.uint32), np.ones(indptr[-1]), (333, 5))
    assert S._row_blocks(A, 3).tolist() == S._work_bounds(
        indptr.view(np.uint64), 3 * S.num_threads()).tolist()


def test_gather_choice_from_the_environment(monkeypatch):
    monkeypatch.setenv("REFIMPL_SPMV_GATHER", "1")
    assert S._spmv_gather_default() is True
    monkeypatch.setenv("REFIMPL_SPMV_GATHER", "0")
    assert S._spmv_gather_default() is False
    monkeypatch.setenv("REFIMPL_SPMV_GATHER", "yes")
    with pytest.raises(ValueError, match="REFIMPL_SPMV_GATHER must be '0' or '1'"):
        S._spmv_gather_default()
    monkeypatch.delenv("REFIMPL_SPMV_GATHER")
    assert S._spmv_gather_default() is ("avx512fp16" in S.host_features())
    assert isinstance(S.SPMV_GATHER, bool)
