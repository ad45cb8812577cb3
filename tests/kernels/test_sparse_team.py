"""The threaded SpMV driver without a Numba parallel region (the thread team of
``refimpl.kernels._team``, issue #19): the calling thread and helper threads claim blocks of
rows from one atomic counter. Exact
results whoever computes a row, every helper count, the dispatch by thread count, concurrent
callers, and a forked child (``tests/kernels/test_fork_safety.py`` runs it in a pool)."""

from __future__ import annotations

import os
import threading

import numba
import numpy as np
import pytest

from refimpl.kernels import _team as T
from refimpl.kernels import record_calls
from refimpl.kernels import sparse as S
from refimpl.kernels.sparse import csr_from_dense, csr_matvec


def _case(seed=0, n_rows=700, n_cols=500, sparsity=0.5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_rows, n_cols)).astype(dtype)
    W[rng.random(W.shape) < sparsity] = 0
    W[::7] = 0  # empty rows too
    return csr_from_dense(W), rng.standard_normal(n_cols).astype(dtype), W


def _run(team, A, x, y, bounds, helpers=None):
    return team.run(S._csr_matvec_team,
                    (S._uindptr(A), A.indices, A.data, x, y, bounds, S.SPMV_GATHER),
                    len(bounds) - 1, helpers)


def _serial(A, x):
    y = np.zeros(A.shape[0], dtype=x.dtype)
    S._csr_matvec_serial(S._uindptr(A), A.indices, A.data, x, y, S.SPMV_GATHER)
    return y


@pytest.mark.parametrize("helpers", [0, 1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_team_equals_the_serial_kernel_for_any_helper_count(helpers, dtype):
    A, x, W = _case(helpers, dtype=dtype)
    want = _serial(A, x)
    team = T.team()
    for per_thread in (1, 4, 32):
        bounds = S._row_blocks(A, per_thread)
        y = np.zeros(A.shape[0], dtype=dtype)
        counts = _run(team, A, x, y, bounds, helpers)
        np.testing.assert_array_equal(y, want)  # the row order fixes every sum
        assert team.finished() == len(bounds) - 1  # every block finished once
        assert counts.sum() == team.finished()  # by one member each
    ref = W.astype(np.float64) @ x.astype(np.float64)
    assert np.max(np.abs(want - ref)) <= 1e-4 * np.max(np.abs(ref))


def test_helpers_claim_from_the_shared_counter():
    """A helper woken for a call takes part whenever it claims before the blocks run out;
    every block is finished once whoever claims it, and the counter ends at the block count
    (a failed claim does not move it). With CPU placement a call wakes at most one helper per
    other CPU (``team.woken``)."""
    A, x, _ = _case(1)
    team = T.team()
    bounds = S._row_blocks(A, 32)
    n_blocks = len(bounds) - 1
    for _ in range(5):
        y = np.zeros(A.shape[0])
        counts = _run(team, A, x, y, bounds, 2)
        assert team.woken == (min(2, team.rows - 1) if team.cpus.size else min(2, team.rows))
        assert counts.sum() == n_blocks == team.board[0] & 0xFFFFF
        np.testing.assert_array_equal(y, _serial(A, x))


def test_dispatch_uses_the_team_only_with_threads_and_enough_values(monkeypatch):
    A, x, _ = _case(2, n_rows=300)
    assert A.nnz < S.SPMV_PARALLEL_MIN_NNZ  # serial by default
    monkeypatch.setattr(S, "_FRONT_ON", False)  # the compiled front calls them compiled
    ran = []
    for name in ("_csr_matvec_serial", "_csr_matvec_threaded"):
        real = getattr(S, name)
        monkeypatch.setattr(S, name, lambda *a, _r=real, _n=name: ran.append(_n) or _r(*a))
    want = _serial(A, x)
    monkeypatch.setattr(S, "SPMV_PARALLEL_MIN_NNZ", 1)
    threads = numba.get_num_threads()
    try:
        cases = [(1, "_csr_matvec_serial")] + ([(threads, "_csr_matvec_threaded")]
                                                if threads > 1 else [])
        for t, driver in cases:
            numba.set_num_threads(t)
            ran.clear()
            with record_calls() as log:
                np.testing.assert_array_equal(csr_matvec(A, x, backend="numba"), want)
            assert ran == [driver] and log == [("csr_matvec", "numba")]
    finally:
        numba.set_num_threads(threads)


def test_concurrent_callers_get_their_own_results(monkeypatch):
    monkeypatch.setattr(S, "SPMV_PARALLEL_MIN_NNZ", 1)
    cases = [_case(10 + k) for k in range(4)]
    wants = [_serial(A, x) for A, x, _ in cases]
    errors = []

    def work(k):
        A, x, _ = cases[k]
        for _ in range(20):
            if not np.array_equal(csr_matvec(A, x, backend="numba"), wants[k]):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and not any(t.is_alive() for t in threads)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork (POSIX)")
def test_a_forked_child_builds_its_own_team(monkeypatch):
    monkeypatch.setattr(S, "SPMV_PARALLEL_MIN_NNZ", 1)
    A, x, _ = _case(3)
    want = _serial(A, x)
    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: no team")
    csr_matvec(A, x, backend="numba")  # the parent's team exists and its helpers sleep
    parent_team = T._TEAM[0]
    assert parent_team is not None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the parent's helper threads do not exist here
        ok = 0
        try:
            ok = int(T._TEAM[0] is None)
            y = csr_matvec(A, x, backend="numba")
            ok &= int(np.array_equal(y, want) and T._TEAM[0] is not None)
        finally:
            os.write(w, bytes([ok]))
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"\x01"
    assert T._TEAM[0] is parent_team
