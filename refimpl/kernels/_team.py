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

Placement: each helper thread is pinned to one CPU, and a call wakes helpers on CPUs other
than the one the caller runs on (``sched_getcpu``; Linux), so a woken helper does not queue
behind the caller on its core. Measured without it (4-bit batch-1 product, 4096 × 4096,
interleaved with float32 BLAS after 0.3 s idle, 41 rounds): in 16 calls the caller ran all 64
blocks and in most others none — the two threads had shared one core — median 1.03 ms;
placed, the caller ran 34 of 64 blocks (median), never ≥ 60, median 0.72 ms. When the other
CPUs are busy the caller simply claims more tasks. Elsewhere (no ``sched_setaffinity``) the
helpers are not pinned.

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

__all__ = ["Team", "team", "claim", "finish", "wait_done", "atomic_add", "atomic_get",
           "new_state", "num_threads"]


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


@numba.njit(cache=True, inline="always")
def wait_done(state, n_tasks, spins):
    """Poll (at most ``spins`` times) until ``state[1] >= n_tasks``; True when done. Task
    functions call it at the end of member 0 (the caller), which saves :meth:`Team.run` a
    compiled call to wait for a helper still on its last task."""
    for _ in range(spins):
        if atomic_get(state, 1) >= n_tasks:
            return True
    return atomic_get(state, 1) >= n_tasks


@numba.njit(cache=True, nogil=True)
def _done(state, n_tasks, spins):
    """:func:`wait_done` from Python."""
    return wait_done(state, n_tasks, spins)


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


class _Helper:
    """A daemon thread serving jobs ``(fn, args, member)`` from its queue, pinned to ``cpu``
    (None: not pinned; ``pin_error``: why pinning failed, the thread then serves unpinned).
    ``error``: the exception the current job raised here (the thread keeps serving);
    :meth:`Team.run` re-raises it in the caller instead of waiting for the task the job held."""

    def __init__(self, cpu, name):
        self.cpu = cpu
        self.queue = queue.SimpleQueue()
        self.error = None
        self.pin_error = None
        self.tid = None
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True, name=name).start()
        started.wait(10)

    def _serve(self, started):
        self.tid = threading.get_native_id()
        try:
            if self.cpu is not None:
                os.sched_setaffinity(0, {self.cpu})  # this thread only
        except OSError as e:  # an offline CPU, a sandbox: serve unpinned, say so
            self.pin_error = e
        started.set()
        while True:
            fn, args, member = self.queue.get()
            try:
                fn(*args, member)
            except Exception as e:  # keep serving; the caller finishes the tasks left
                self.error = e
            del fn, args  # drop the arrays of a finished call


class Team:
    """The calling thread plus ``helpers`` helper threads running task functions (module
    docstring). ``run`` returns the state array; tasks are finished when it returns.

    With CPU placement (Linux), there is one helper thread per CPU the process could use when
    the team was built, pinned to that CPU and made on first use; a call wakes the helpers of
    the ``helpers`` CPUs that follow the caller's CPU in that list (never the caller's own).
    (At most one helper per other CPU: ``helpers`` beyond that are not woken.) Without
    placement, ``helpers`` unpinned threads. ``woken``: the helpers the last call woke."""

    def __init__(self, helpers: int):
        if helpers < 0:
            raise ValueError(f"helpers must be >= 0, got {helpers}")
        self.helpers = helpers
        self._getcpu = _sched_getcpu() if helpers else None
        self.cpus = sorted(os.sched_getaffinity(0)) if self._getcpu is not None else []
        if len(self.cpus) < 2:
            self._getcpu = None
        self._pinned: dict = {}  # CPU -> _Helper
        self._by_cpu: dict = {}  # the caller's CPU -> the helpers a call from there wakes
        self.woken = 0
        self._unpinned = [] if self._getcpu is not None else [
            _Helper(None, f"refimpl-team-{m}") for m in range(1, helpers + 1)]

    def _helper_on(self, cpu) -> _Helper:
        h = self._pinned.get(cpu)
        if h is None:
            h = self._pinned[cpu] = _Helper(cpu, f"refimpl-team-cpu{cpu}")
        return h

    def members(self) -> list:
        """The helpers a call from the current CPU wakes, member 1, 2, … in order."""
        if self._getcpu is None:
            return self._unpinned
        cpu = self._getcpu()
        got = self._by_cpu.get(cpu)
        if got is None:
            cpus = self.cpus
            start = cpus.index(cpu) + 1 if cpu in cpus else 0
            chosen = [cpus[(start + i) % len(cpus)] for i in range(len(cpus))]
            chosen = [c for c in chosen if c != cpu][: self.helpers]
            got = self._by_cpu[cpu] = [self._helper_on(c) for c in chosen]
        return got

    def run(self, fn, args: tuple, n_tasks: int, state=None) -> np.ndarray:
        """Run ``fn(*args, state, member)`` on every member until ``n_tasks`` tasks are
        finished; returns ``state`` (``state[2 + m]``: tasks member ``m`` finished; the
        helpers may still add their last, failed claim to ``state[0]`` after the return).
        ``state``: a fresh (all-zero) :func:`new_state` array with room for every member
        (made here when omitted; only its length is checked — a NumPy reduction per call
        costs 10–20 µs after a pause)."""
        if state is None:
            state = new_state(1 + self.helpers)
        elif len(state) != 3 + self.helpers:
            raise ValueError(f"state must be a fresh new_state({1 + self.helpers}) array, "
                             f"got length {len(state)}")
        if n_tasks <= 0:
            return state
        args = args + (state,)
        woken = self.members()
        self.woken = len(woken)
        for member, h in enumerate(woken, 1):
            h.error = None
            h.queue.put((fn, args, member))
        fn(*args, 0)
        if state[1] < n_tasks:
            while not _done(state, n_tasks, 1 << 14):  # a helper still on its last task
                for h in woken:
                    if h.error is not None:  # it will never finish the task it held
                        raise RuntimeError(f"a thread-team helper raised {h.error!r}") \
                            from h.error
                os.sched_yield()
        return state


_TEAM: list = [None]


def _forget_team_in_child() -> None:
    _TEAM[0] = None


def num_threads() -> int:
    """``numba.get_num_threads()`` (which respects ``numba.set_num_threads`` in this thread),
    without its per-call lock once the threading layer runs: that lock is a
    ``multiprocessing`` lock, 50–70 µs after 0.3 s idle on the development machine, against
    a few µs for the layer's own counter."""
    from numba.np.ufunc import parallel

    get = getattr(parallel, "_get_num_threads", None)
    if getattr(parallel, "_is_initialized", False) and get is not None:
        n = get()
        if n > 0:
            return n
    return numba.get_num_threads()


def team(helpers: int | None = None) -> Team:
    """The process's team with ``helpers`` helper threads (default: Numba's thread count − 1),
    built on first use and rebuilt when the count changes (old helpers idle on their
    queues)."""
    if helpers is None:
        helpers = num_threads() - 1
    t = _TEAM[0]
    if t is None or t.helpers != helpers:
        t = _TEAM[0] = Team(helpers)
    return t


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_team_in_child)
