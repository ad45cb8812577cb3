"""A thread team for the memory-bound kernels at small sizes (issue #19): the calling thread
plus helper threads claim tasks (blocks of output rows) from one atomic counter, without a
Numba parallel region.

Why not ``prange``: on Numba's ``workqueue`` layer a parallel region wakes sleeping workers
while the calling thread only waits — 75 µs back to back, 120–180 µs after 0.3 s idle on the
project's 2-core Zen 4 VM, before any row is computed — and, after a pause, the two workers
are often placed on one core (a 4-bit batch-1 product, 4096 × 4096, back to back after 0.1 s
idle: bimodal, 0.42 or 0.85 ms). Here the caller starts on the tasks at once; each helper,
blocked on its queue, joins when the OS has woken it and takes tasks from the same counter,
so a late helper delays only its own share: two threads take about ``(T1 + wake) / 2``
instead of ``wake + T1 / 2`` (``T1``: the one-thread time).

Placement: before waking the helpers, :meth:`Team.run` restricts them to the CPUs the caller
may use minus the one it is running on (``sched_getcpu`` / ``sched_setaffinity``, Linux only,
1.6 µs a call), so a woken helper does not queue behind the caller on its core. Same kernel
after 0.1 s idle, medians of 40: 0.57 ms with the helper kept off the caller's core, 0.92 ms
without (the caller then ran every block in some calls). When every other CPU is busy the
caller simply claims more tasks. Elsewhere (no ``sched_setaffinity``) placement is skipped.

Members: a task function is a ``nogil`` Numba function ``fn(*args, state, member)`` that
loops ``t = claim(state)`` until ``t`` reaches the task count, does task ``t`` and calls
``finish(state, member)``; member 0 is the caller. ``state`` (int64, built by :meth:`run`) is
``[next task to claim, tasks finished, tasks finished by member 0, 1, …]``. Results must not
depend on which member ran a task (each task writes its own outputs). The helpers sleep on
their queues between calls (no spinning that takes a core from other processes).

Fork: a forked child has no helper threads; :func:`team` builds a new team there
(``os.register_at_fork``). Thread safety: :func:`~refimpl.kernels._backend.dispatch` runs one
kernel at a time; a team is not re-entrant.
"""

from __future__ import annotations

import os
import queue
import threading

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

__all__ = ["Team", "team", "claim", "finish", "atomic_add", "atomic_get", "new_state"]


@intrinsic
def atomic_add(typingctx, state, idx, val):
    """``state[idx] += val`` atomically (sequentially consistent); returns the old value.
    ``state`` int64 1-D C-contiguous."""
    sig = types.int64(state, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.atomic_rmw("add", builder.gep(arr.data, [args[1]]), args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_get(typingctx, state, idx):
    """``state[idx]`` read atomically (sequentially consistent); ``state`` int64 1-D."""
    sig = types.int64(state, types.intp)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(arr.data, [args[1]]), "seq_cst", 8)

    return sig, codegen


@numba.njit(cache=True, inline="always")
def claim(state):
    """The next unclaimed task (tasks are numbered 0, 1, …; a number ≥ the task count means
    none is left)."""
    return atomic_add(state, 0, 1)


@numba.njit(cache=True, inline="always")
def finish(state, member):
    """Count one finished task, for the team and for ``member``."""
    atomic_add(state, 2 + member, 1)
    atomic_add(state, 1, 1)


@numba.njit(cache=True, nogil=True)
def _done(state, n_tasks, spins):
    """Poll (at most ``spins`` times) until ``state[1] >= n_tasks``; True when done."""
    for _ in range(spins):
        if atomic_get(state, 1) >= n_tasks:
            return True
    return atomic_get(state, 1) >= n_tasks


def new_state(members: int) -> np.ndarray:
    """A fresh counter array for ``members`` members (the caller alone: ``members=1``)."""
    return np.zeros(2 + members, dtype=np.int64)


def _sched_getcpu():
    """libc's ``sched_getcpu`` through ctypes, or None where it (or ``sched_setaffinity``)
    does not exist."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = []
    return fn


class Team:
    """The calling thread plus ``helpers`` daemon threads running task functions (module
    docstring). ``run`` returns the state array; tasks are finished when it returns."""

    def __init__(self, helpers: int):
        if helpers < 0:
            raise ValueError(f"helpers must be >= 0, got {helpers}")
        self.helpers = helpers
        self.queues = [queue.SimpleQueue() for _ in range(helpers)]
        self.tids: list = [None] * helpers
        self._getcpu = _sched_getcpu()
        self._placed_for = None  # (caller CPU, allowed CPUs) of the last placement
        started = [threading.Event() for _ in range(helpers)]
        for member, (q, ev) in enumerate(zip(self.queues, started), 1):
            threading.Thread(target=self._serve, args=(q, member, ev), daemon=True,
                             name=f"refimpl-team-{member}").start()
        for ev in started:
            ev.wait(10)

    def _serve(self, q, member, started):
        self.tids[member - 1] = threading.get_native_id()
        started.set()
        while True:
            fn, args = q.get()
            fn(*args, member)
            del fn, args  # drop the arrays of a finished call

    def _place(self) -> None:
        """Keep the helpers off the CPU the caller runs on (module docstring)."""
        if self._getcpu is None or not self.helpers:
            return
        try:
            cpu = self._getcpu()
            allowed = os.sched_getaffinity(0)
            key = (cpu, frozenset(allowed))
            if key == self._placed_for:
                return
            others = allowed - {cpu}
            if cpu < 0 or not others:
                return
            for tid in self.tids:
                if tid is not None:
                    os.sched_setaffinity(tid, others)
            self._placed_for = key
        except OSError:  # a helper gone, or a sandbox that refuses affinity: run unplaced
            self._getcpu = None

    def run(self, fn, args: tuple, n_tasks: int) -> np.ndarray:
        """Run ``fn(*args, state, member)`` on every member until ``n_tasks`` tasks are
        finished; returns ``state`` (``state[2 + m]``: tasks member ``m`` finished; the
        helpers may still add their last, failed claim to ``state[0]`` after the return)."""
        state = new_state(1 + self.helpers)
        if n_tasks <= 0:
            return state
        self._place()
        job = (fn, args + (state,))
        for q in self.queues:
            q.put(job)
        fn(*args, state, 0)
        while not _done(state, n_tasks, 1 << 14):  # a helper still on its last task
            os.sched_yield()
        return state


_TEAM: list = [None]


def _forget_team_in_child() -> None:
    _TEAM[0] = None


def team(helpers: int | None = None) -> Team:
    """The process's team with ``helpers`` helper threads (default: Numba's thread count − 1),
    built on first use and rebuilt when the count changes (old helpers idle on their
    queues)."""
    if helpers is None:
        helpers = numba.get_num_threads() - 1
    t = _TEAM[0]
    if t is None or t.helpers != helpers:
        t = _TEAM[0] = Team(helpers)
    return t


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_team_in_child)
