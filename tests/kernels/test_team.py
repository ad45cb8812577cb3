"""The thread team of ``refimpl.kernels._team`` (issue #19): task claiming on the board (epochs,
counts), helper placement off the caller's CPU, a late or failing helper, compiled entry
points, and argument errors. The SpMV and low-bit kernels that run on it are tested in
``test_sparse_team.py``, ``test_lowbit_gemv.py`` and ``test_lowbit_lut.py``."""

from __future__ import annotations

import os
import time

import numba
import numpy as np
import pytest

from refimpl.kernels import _team as T

needs_threads = pytest.mark.skipif(not T.THREADED, reason="no helper threads here (not Linux)")


@numba.njit(nogil=True)
def _square_tasks(x, out, board, epoch, member):
    """Task t: out[t] = x[t]², and who ran it."""
    while True:
        t = T.claim(board, epoch)
        if t < 0:
            return
        out[t, 0] = x[t] * x[t]
        out[t, 1] = member
        T.finish(board, member)


@pytest.fixture
def team():
    tm = T.Team()
    yield tm
    tm.close()


@pytest.mark.parametrize("helpers", [0, 1, 2])
@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_every_task_runs_once(team, helpers, n):
    x = np.arange(n, dtype=np.float64)
    out = np.full((n, 2), -1.0)
    counts = team.run(_square_tasks, (x, out), n, helpers)
    np.testing.assert_array_equal(out[:, 0], x * x)
    assert counts.shape == (1 + team.rows,) and counts.sum() == n == team.finished()
    assert team.woken <= min(helpers, max(team.rows - 1, 0)) or not team.cpus.size
    members = set(out[:, 1].astype(int))
    assert members <= set(range(team.rows + 1))
    for m in range(team.rows + 1):
        assert counts[m] == np.sum(out[:, 1] == m)  # each member's count is its tasks


def test_unpinned_rows_and_their_errors():
    tm = T.Team(rows=2)
    try:
        assert tm.cpus.size == 0 and tm.rows == (2 if T.THREADED else 0)
        x = np.arange(40.0)
        out = np.zeros((40, 2))
        assert tm.run(_square_tasks, (x, out), 40, 2).sum() == 40
        np.testing.assert_array_equal(out[:, 0], x * x)
    finally:
        tm.close()
    with pytest.raises(ValueError, match="rows must be >= 0"):
        T.Team(rows=-1)


def test_task_count_is_bounded(team):
    with pytest.raises(ValueError, match="n_tasks must be in"):
        team.run(_square_tasks, (np.zeros(1), np.zeros((1, 2))), T.MAX_TASKS + 1)


@numba.njit
def _claims(board, epoch, k):
    got = np.empty(k, np.int64)
    for i in range(k):
        got[i] = T.claim(board, epoch)
    return got


def test_claims_stop_at_the_count_and_at_another_epoch():
    """Hand-worked: a call of 3 tasks hands out 0, 1, 2 and then −1; a claim for another
    epoch (a helper from an earlier call) gets −1 and changes nothing."""
    board, e = T.solo(3)
    assert e == 1
    np.testing.assert_array_equal(_claims(board, e + 1, 2), [-1, -1])
    np.testing.assert_array_equal(_claims(board, e, 5), [0, 1, 2, -1, -1])
    word = board[0]
    assert word == (1 << 40) | (3 << 20) | 3  # epoch | count | next: failed claims leave it
    board2, e2 = T.solo(0)
    assert _claims(board2, e2, 1)[0] == -1


def test_team_is_one_per_process_and_follows_numba_thread_count():
    assert T.team() is T.team()
    threads = numba.get_num_threads()
    try:
        for t in {1, threads}:
            numba.set_num_threads(t)
            assert T.num_threads() == numba.get_num_threads() == t
            assert _wanted() == t - 1  # what a compiled entry reads
    finally:
        numba.set_num_threads(threads)


@numba.njit(cache=False)
def _wanted():
    return T.helpers_wanted()


@needs_threads
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="CPU placement needs Linux and two usable CPUs")
def test_helpers_are_pinned_off_the_callers_cpu(team):
    x = np.arange(50.0)
    out = np.zeros((50, 2))
    allowed = os.sched_getaffinity(0)
    assert team.rows == len(allowed) and team.cpus.size == team.rows
    try:
        for cpu in sorted(allowed)[:2]:
            os.sched_setaffinity(0, {cpu})  # the caller on `cpu` for the test
            for _ in range(3):
                team.run(_square_tasks, (x, out), 50, 1)
                np.testing.assert_array_equal(out[:, 0], x * x)
                assert team.woken == 1
                epoch = team.board[0] >> 40
                (row,) = [r for r in range(team.rows) if team.board[T._WAKE0 + r] == epoch]
                assert team.cpus[row] != cpu  # never the helper of the caller's CPU
    finally:
        os.sched_setaffinity(0, allowed)
    for h in team.helpers_:
        assert h.pin_error is None and os.sched_getaffinity(h.tid) == {h.cpu}


def test_a_late_helper_only_delays_its_share(team, monkeypatch):
    """With the helpers never posted, the caller runs every task alone and returns."""
    monkeypatch.setattr(T, "wake", lambda board, sems, cpus, helpers: 0)
    x = np.arange(20.0)
    out = np.zeros((20, 2))
    t0 = time.monotonic()
    counts = team.run(_square_tasks, (x, out), 20, 1)
    assert counts[0] == 20 and counts.sum() == 20 and time.monotonic() - t0 < 30
    np.testing.assert_array_equal(out[:, 0], x * x)


@numba.njit(nogil=True)
def _helper_raises(x, board, epoch, member):
    """A helper claims a task and raises; member 0 waits (bounded) for that claim, then runs
    the rest."""
    if member > 0:
        T.claim(board, epoch)
        raise ValueError("helper failed")
    for _ in range(200_000_000):
        if T.atomic_get(board, 0) & 0xFFFFF > 0:
            break
    while True:
        t = T.claim(board, epoch)
        if t < 0:
            return
        x[t] = 1.0
        T.finish(board, member)


@needs_threads
def test_a_helper_that_raises_is_reported_not_waited_for(team):
    if team.rows < 2 and team.cpus.size:
        pytest.skip("no helper to wake")
    x = np.zeros(8)
    with pytest.raises(RuntimeError, match="thread-team helper raised"):
        team.run(_helper_raises, (x,), 8, 1)
    y = np.arange(5.0)  # the helper still serves
    out = np.zeros((5, 2))
    team.run(_square_tasks, (y, out), 5, 1)
    np.testing.assert_array_equal(out[:, 0], y * y)


@numba.njit(nogil=True)
def _serve_squares(board, epoch, member):
    """A compiled family's serve function: the arrays from the job fields."""
    f = T.FIELD0
    n = board[f]
    x = numba.carray(T.address(board[f + 1]), (n,), np.float64)
    out = numba.carray(T.address(board[f + 2]), (n, 2), np.float64)
    _square_tasks(x, out, board, epoch, member)


_SQUARES = T.register(_serve_squares)


@numba.njit(nogil=True)
def _squares_entry(x, board, sems, cpus, helpers, job, fail, yield_first, prepare_polls=0):
    """A compiled entry point: wake, prepare, publish (0 tasks when ``fail``), work, wait
    (``yield_first``: the caller first waits, bounded, for a helper's first claim;
    ``prepare_polls``: a long preparation, the board polled that many times)."""
    T.wake(board, sems, cpus, helpers)
    for _ in range(prepare_polls):
        T.atomic_get(board, 1)
    out = np.full((x.shape[0], 2), -1.0)
    if fail:
        T.publish(board, 0, 0)
        return out
    f = T.FIELD0
    board[f] = x.shape[0]
    board[f + 1] = x.ctypes.data
    board[f + 2] = out.ctypes.data
    e = T.publish(board, x.shape[0], job)
    if yield_first:
        for _ in range(2_000_000_000):
            if T.atomic_get(board, 0) & 0xFFFFF > 0:
                break
    _square_tasks(x, out, board, e, 0)
    T.wait_all(board, x.shape[0])
    return out


def test_compiled_entry_points_and_cancelled_calls(team):
    """A family registered once (the same kind twice); its calls and cancelled ones (a
    woken helper finds nothing to do) alternate without a task lost or run twice."""
    assert T.register(_serve_squares) == _SQUARES >= 2
    T.ready(_SQUARES)
    can_help = T.THREADED and team.rows >= 2
    for i in range(40):
        x = np.arange(2000.0 + i)
        fail = i % 3 == 2
        out = _squares_entry(x, team.board, team.sems, team.cpus, 1, _SQUARES, fail,
                             can_help and i % 3 == 1)
        if fail:
            assert (out == -1).all()
            continue
        np.testing.assert_array_equal(out[:, 0], x * x)
        counts = team.counts()
        assert counts.sum() == x.size == team.finished()
        if can_help and i % 3 == 1:  # the caller waited for the helper's first claim
            assert counts[1:].sum() > 0
        time.sleep(0.002 * (i % 2))


@needs_threads
def test_a_helper_parked_during_a_long_preparation_is_woken_again(team):
    """The caller prepares for far longer than a woken helper polls (``_SPINS``): the helper
    parks, ``publish`` posts it again, and it joins the call (the caller waits for its claim)."""
    if team.rows < 2 and team.cpus.size:
        pytest.skip("no helper to wake")
    T.ready(_SQUARES)
    for _ in range(3):
        x = np.arange(3000.0)
        out = _squares_entry(x, team.board, team.sems, team.cpus, 1, _SQUARES, False, True,
                             64 * T._SPINS)
        np.testing.assert_array_equal(out[:, 0], x * x)
        assert team.counts()[1:].sum() > 0
        rows = team.rows
        assert not team.board[T._WAKE0 + rows:T._WAKE0 + 2 * rows].any()  # no row left parked
