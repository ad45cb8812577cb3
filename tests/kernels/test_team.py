"""The thread team of ``refimpl.kernels._team`` (issue #19): task claiming, counts, helper
placement off the caller's CPU, and argument errors. The SpMV and low-bit kernels that run on
it are tested in ``test_sparse_team.py`` and ``test_lowbit_gemv.py``."""

from __future__ import annotations

import os
import time

import numba
import numpy as np
import pytest

from refimpl.kernels import _team as T


@numba.njit(nogil=True)
def _square_tasks(x, out, state, member):
    """Task t: out[t] = x[t]², and who ran it."""
    n = x.shape[0]
    while True:
        t = T.claim(state)
        if t >= n:
            return
        out[t, 0] = x[t] * x[t]
        out[t, 1] = member
        T.finish(state, member)


@pytest.mark.parametrize("helpers", [0, 1, 2])
@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_every_task_runs_once(helpers, n):
    x = np.arange(n, dtype=np.float64)
    out = np.full((n, 2), -1.0)
    state = T.Team(helpers).run(_square_tasks, (x, out), n)
    np.testing.assert_array_equal(out[:, 0], x * x)
    assert state.shape == (3 + helpers,) and state[1] == n and state[2:].sum() == n
    assert set(out[:, 1].astype(int)) <= set(range(helpers + 1))


def test_helpers_must_not_be_negative():
    with pytest.raises(ValueError, match="helpers must be >= 0"):
        T.Team(-1)


def test_team_follows_numba_thread_count():
    threads = numba.get_num_threads()
    assert T.team().helpers == threads - 1
    assert T.team(0).helpers == 0 and T._TEAM[0].helpers == 0
    assert T.team().helpers == threads - 1  # rebuilt for the default count


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="CPU placement needs Linux and two usable CPUs")
def test_helpers_are_pinned_off_the_callers_cpu():
    team = T.Team(1)
    x = np.arange(50.0)
    out = np.zeros((50, 2))
    for _ in range(5):
        team.run(_square_tasks, (x, out), 50)
        np.testing.assert_array_equal(out[:, 0], x * x)
    cpu = team._getcpu()
    (h,) = team.members()
    assert h.cpu != cpu and h.cpu in os.sched_getaffinity(0)
    assert h.pin_error is None and os.sched_getaffinity(h.tid) == {h.cpu}
    assert len(team._pinned) <= len(team.cpus)


def test_a_late_helper_only_delays_its_share():
    """With the helper's job dropped, the caller runs every task alone and returns."""
    team = T.Team(1)
    x = np.arange(20.0)
    out = np.zeros((20, 2))

    class _Dropped:
        class queue:  # noqa: N801 - stands in for a helper's queue
            @staticmethod
            def put(job):  # the helper never gets the job
                pass

    team.members = lambda: [_Dropped()]
    t0 = time.monotonic()
    state = team.run(_square_tasks, (x, out), 20)
    assert state[2] == 20 and state[3] == 0 and time.monotonic() - t0 < 30
    np.testing.assert_array_equal(out[:, 0], x * x)


def test_a_fresh_state_is_required():
    team = T.Team(1)
    x = np.arange(5.0)
    out = np.zeros((5, 2))
    with pytest.raises(ValueError, match="state must be a fresh new_state"):
        team.run(_square_tasks, (x, out), 5, np.zeros(3, np.int64))  # room for 1 member, not 2


def test_thread_count_without_the_lock_matches_numba():
    threads = numba.get_num_threads()
    try:
        for t in {1, threads}:
            numba.set_num_threads(t)
            assert T.num_threads() == numba.get_num_threads() == t
    finally:
        numba.set_num_threads(threads)


@numba.njit(nogil=True)
def _helper_raises(x, state, member):
    """Member 1 claims a task and raises; member 0 waits (bounded) for that claim, then runs
    the rest."""
    n = x.shape[0]
    if member == 1:
        T.claim(state)
        raise ValueError("helper failed")
    for _ in range(200_000_000):
        if T.atomic_get(state, 0) > 0:
            break
    while True:
        t = T.claim(state)
        if t >= n:
            return
        x[t] = 1.0
        T.finish(state, member)


def test_a_helper_that_raises_is_reported_not_waited_for():
    team = T.Team(1)
    if not team.members():
        pytest.skip("no helper to wake")
    x = np.zeros(8)
    with pytest.raises(RuntimeError, match="thread-team helper raised"):
        team.run(_helper_raises, (x,), 8)
    y = np.arange(5.0)  # the helper still serves
    out = np.zeros((5, 2))
    team.run(_square_tasks, (y, out), 5)
    np.testing.assert_array_equal(out[:, 0], y * y)
