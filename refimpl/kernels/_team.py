"""A thread team for the memory-bound kernels at small sizes (issue #19): the calling thread
plus helper threads claim tasks (blocks of output rows) from one atomic counter, without a
Numba parallel region and, for the compiled entry points of the low-bit kernels, without a
single Python step between the call and the result.

Why not ``prange``: on Numba's ``workqueue`` layer a parallel region wakes sleeping workers
while the calling thread only waits — 75 µs back to back, 120–180 µs after 0.3 s idle on the
project's 2-core Zen 4 VM, before any row is computed — and, after a pause, the two workers
are often placed on one core (a 4-bit batch-1 product, 4096 × 4096, back to back after 0.1 s
idle: bimodal, 0.42 or 0.85 ms). Here the caller starts on the tasks at once; each helper joins
when the OS has woken it and takes tasks from the same counter, so a late helper delays only
its own share: two threads take about ``(T1 + wake) / 2`` instead of ``wake + T1 / 2``
(``T1``: the one-thread time).

The board
---------
One int64 array per team (:class:`Team`, ``board``) carries a call: word 0 packs the call's
*epoch* (23 bits), its task count (20 bits) and the next task to claim (20 bits), so a claim
(:func:`claim`, a compare-and-swap) succeeds only for the epoch it names and below the count
published with it — a helper that wakes late, after its call has returned and the next one
began, can never take a task of either with the other's arrays. Then the finished-task count,
the job kind (0 none, 1 a Python job, ≥ 2 a compiled family, :func:`register`), the helpers
woken, the helper rows and the semaphores' address, 32 job fields (a compiled family's array
addresses and sizes), the epoch each helper row was woken for, the rows whose helper parked
(:func:`_await`) and the tasks each member finished (member 0: the caller; member ``1 + r``:
the helper of row ``r``).

A call (compiled, ``nogil``)::

    woken = wake(board, sems, cpus, helpers)   # post the helpers first: their OS wake-up
                                               # overlaps the caller's preparation
    ... prepare; write the job fields ...
    epoch = publish(board, n_tasks, kind)      # tasks become claimable
    tasks(..., board, epoch, 0)                # the caller works from the start
    wait_holding(board, n_tasks, (scratch,))   # a helper may still hold its last task: the
                                               # call's own arrays stay alive until then

Every path after :func:`wake` publishes (with 0 tasks when the preparation failed), so a woken
helper never waits for a call that will not come. Helpers sleep on POSIX semaphores
(``sem_wait``; no spinning that takes a core from other processes between calls); woken, a
helper spins until the epoch it was woken for is published (bounded), then runs the job: a
compiled family's *serve* function (``serve(board, epoch, member)``, which rebuilds the arrays
from the fields with ``numba.carray``) or, for a Python job (:meth:`Team.run`), the task
function with the Python arguments the caller left.

Issue #19 measurement (4-bit batch-1 product, 4096 × 4096, after 0.3 s idle interleaved with
float32 BLAS, 2-core Zen 4 VM, 2026-12-07): every separate Python or dispatcher step of the
earlier path (argument checks, the team lookup, the activation layout, a queue put to wake
the helper, the task function's dispatch) cost 15–60 µs after the pause — ~0.25 ms before the
first block against 0.48 ms of blocks; one compiled entry that wakes the helper itself (and
leaner Python checks in front of it) took the public call from 0.79 / 0.72 ms (median / best
of 15) to 0.63–0.72 / 0.57–0.65, equal results.

Placement: each helper thread is pinned to one CPU, and a call wakes helpers on CPUs other
than the one the caller runs on (``sched_getcpu``), so a woken helper does not queue behind
the caller on its core. Measured without it (same product, 41 rounds): in 16 calls the caller
ran all 64 blocks and in most others none — the two threads had shared one core — median
1.03 ms; placed, the caller ran 34 of 64 blocks (median), never ≥ 60, median 0.72 ms. When the
other CPUs are busy the caller simply claims more tasks.

Platforms: the semaphores, ``sched_getcpu`` and ``sched_yield`` are called from compiled code
(external symbols resolved by LLVM in the process), on Linux. Elsewhere, or where a symbol is
missing, the team has no helpers and every call runs on the calling thread (correct, serial;
:data:`THREADED` says which).

Fork: a forked child has no helper threads; :func:`team` builds a new team there
(``os.register_at_fork``). Thread safety: :func:`~refimpl.kernels._backend.dispatch` runs one
kernel at a time; a team is not re-entrant.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["Team", "team", "claim", "finish", "wait_done", "wait_all", "wake", "publish",
           "solo", "register", "ready", "wait_holding", "atomic_add", "atomic_get", "atomic_set", "compare_exchange",
           "address", "num_threads", "helpers_wanted", "THREADED", "FIELD0", "NFIELDS"]

# ------------------------------------------------------------------ board layout
_STATE, _DONE, _KIND, _WOKEN, _COUNT0, _STOP, _ROWS, _SEMS = 0, 1, 2, 3, 4, 5, 6, 7
FIELD0 = 8      #: first job field of the board (a compiled family's addresses and sizes)
NFIELDS = 32    #: job fields
_WAKE0 = FIELD0 + NFIELDS  # per helper row: the epoch it was woken for; then per row: parked
_EPOCH_SHIFT, _N_SHIFT = 40, 20
_LOW20 = (1 << 20) - 1
_EPOCHS = (1 << 23) - 1
MAX_TASKS = _LOW20  #: most tasks one call may have (20 bits of the board's first word)
_PY_JOB = 1
_SPINS = 1 << 17  # a woken helper's polls for its call's publication before it parks
_PARKED = 1 << 40  # a parked slot holds the epoch | _PARKED (never 0)
_SEM_WORDS = 8    # 64 bytes per semaphore (glibc/musl sem_t: 32 bytes), one cache line


def _board_len(rows: int) -> int:
    return _WAKE0 + 3 * rows + 1


# ------------------------------------------------------------------ platform
def _native_symbols() -> bool:
    """True on Linux when libc has ``sem_init/post/wait``, ``sched_getcpu`` and
    ``sched_yield`` (Numba's JIT resolves them in the process, as it does libm's)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        for name in ("sem_init", "sem_post", "sem_wait", "sched_getcpu", "sched_yield"):
            getattr(libc, name)
    except (OSError, AttributeError):
        return False
    return True


#: True when teams have helper threads (Linux; see the module docstring), else every call is
#: serial on the calling thread.
THREADED = _native_symbols()


def _extern(builder, name, ret, args):
    f = builder.module.globals.get(name)
    if f is None:
        f = ir.Function(builder.module, ir.FunctionType(ret, args), name)
    return f


def _sem_ptr(context, builder, aty, a, row):
    arr = context.make_array(aty)(context, builder, a)
    base = builder.gep(arr.data, [builder.mul(row, ir.Constant(ir.IntType(64), _SEM_WORDS))])
    return builder.bitcast(base, ir.IntType(8).as_pointer())


def _sem_intrinsic(name):
    def sem_op(typingctx, sems, row):
        sig = types.int32(sems, types.int64)

        def codegen(context, builder, signature, args):
            if not THREADED:
                return ir.Constant(ir.IntType(32), -1)
            p = _sem_ptr(context, builder, signature.args[0], args[0], args[1])
            return builder.call(_extern(builder, name, ir.IntType(32), [p.type]), [p])

        return sig, codegen

    sem_op.__doc__ = f"``{name}`` on row ``row`` of the semaphore array (int64, (rows, 8))."
    return intrinsic(sem_op)


_sem_post = _sem_intrinsic("sem_post")
_sem_wait = _sem_intrinsic("sem_wait")


@intrinsic
def _getcpu(typingctx):
    """``sched_getcpu()`` (−1 where unavailable)."""
    def codegen(context, builder, signature, args):
        if not THREADED:
            return ir.Constant(ir.IntType(32), -1)
        return builder.call(_extern(builder, "sched_getcpu", ir.IntType(32), []), [])

    return types.int32(), codegen


@intrinsic
def _layer_threads(typingctx):
    """Numba's thread count for the calling thread (``numba.get_num_threads()``, which
    respects ``numba.set_num_threads``), read from the threading layer's own
    ``get_num_threads`` as Numba's parallel code does — callable from cached functions (the
    ``numba.get_num_threads`` overload is not cacheable) and without the per-call Python of
    :func:`num_threads` (~35 µs after a pause on the development VM). The layer is started
    first (:meth:`Team.__init__` does it before any compiled entry is loaded)."""
    from numba.np.ufunc.parallel import _launch_threads

    _launch_threads()

    def codegen(context, builder, signature, args):
        fn = _extern(builder, "get_num_threads", ir.IntType(64), [])
        return builder.call(fn, [])

    return types.int64(), codegen


@numba.njit(cache=True, inline="always")
def helpers_wanted():
    """Helpers a call should wake: Numba's thread count for the calling thread − 1."""
    return _layer_threads() - 1


@intrinsic
def _yield(typingctx):
    """``sched_yield()``."""
    def codegen(context, builder, signature, args):
        if not THREADED:
            return ir.Constant(ir.IntType(32), 0)
        return builder.call(_extern(builder, "sched_yield", ir.IntType(32), []), [])

    return types.int32(), codegen


# ------------------------------------------------------------------ atomics
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


@intrinsic
def atomic_set(typingctx, state, idx, val):
    """``state[idx] = val`` stored atomically (sequentially consistent); ``state`` int64 1-D."""
    sig = types.void(state, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        builder.store_atomic(args[2], builder.gep(arr.data, [args[1]]), "seq_cst", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def compare_exchange(typingctx, state, idx, old, new):
    """``state[idx] = new`` if it equals ``old`` (atomically); True when it did."""
    sig = types.boolean(state, types.intp, types.int64, types.int64)

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        r = builder.cmpxchg(builder.gep(arr.data, [args[1]]), args[2], args[3], "seq_cst",
                            "seq_cst")
        return builder.extract_value(r, 1)

    return sig, codegen


@intrinsic
def address(typingctx, addr):
    """An int64 address as a ``voidptr`` for ``numba.carray(address(a), shape, dtype)``
    (a job field written from ``arr.ctypes.data``)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return types.voidptr(types.int64), codegen


# ------------------------------------------------------------------ claiming
@numba.njit(cache=True, inline="always")
def claim(board, epoch):
    """The next unclaimed task of call ``epoch`` (0, 1, …), or −1 when none is left or the
    board has moved on to another call."""
    while True:
        v = atomic_get(board, _STATE)
        if (v >> _EPOCH_SHIFT) != epoch:
            return -1
        t = v & _LOW20
        if t >= ((v >> _N_SHIFT) & _LOW20):
            return -1
        if compare_exchange(board, _STATE, v, v + 1):
            return t


@numba.njit(cache=True, inline="always")
def finish(board, member):
    """Count one finished task, for ``member`` and then for the call."""
    atomic_add(board, board[_COUNT0] + member, 1)
    atomic_add(board, _DONE, 1)


@numba.njit(cache=True, inline="always")
def wait_done(board, n_tasks, spins):
    """Poll (at most ``spins`` times) until ``n_tasks`` tasks are finished; True when done."""
    for _ in range(spins):
        if atomic_get(board, _DONE) >= n_tasks:
            return True
    return atomic_get(board, _DONE) >= n_tasks


@numba.njit(cache=True, inline="always")
def wait_all(board, n_tasks):
    """Wait until ``n_tasks`` tasks are finished: poll, then yield the CPU between polls (a
    helper still on its last task)."""
    while not wait_done(board, n_tasks, 1 << 14):
        _yield()


@numba.njit(cache=True, nogil=True)
def wait_holding(board, n_tasks, held):
    """:func:`wait_all` with ``held`` — a tuple of the call's own scratch arrays that the
    helpers read (activation layout, tables) — alive until every task has finished. A compiled
    entry must wait through this: Numba frees an array after its last use in a function, which
    for the caller is its own last task, while a helper may still be on one (at batch 64 the
    LUT tables, 8 MiB, were unmapped under a helper: a segmentation fault)."""
    wait_all(board, n_tasks)
    return len(held)


@numba.njit(cache=True, nogil=True)
def _done(board, n_tasks, spins):
    """:func:`wait_done` from Python."""
    return wait_done(board, n_tasks, spins)


@numba.njit(cache=True, inline="always")
def _next_epoch(board):
    return ((atomic_get(board, _STATE) >> _EPOCH_SHIFT) + 1) & _EPOCHS


@numba.njit(cache=True, nogil=True)
def wake(board, sems, cpus, helpers):
    """Post the semaphores of up to ``helpers`` helper rows for the coming call and return how
    many: with placement (``cpus``: the CPU of each row) the rows of the CPUs that follow the
    caller's, never the caller's own; without (``cpus`` empty), rows 0, 1, … Callers pass at
    most their task count − 1 (a post costs the caller ~5–25 µs; a helper without a task
    only wakes)."""
    rows = sems.shape[0]
    e = _next_epoch(board)
    woken = 0
    if helpers > 0 and rows > 0:
        placed = cpus.shape[0] == rows
        cpu = _getcpu() if placed else -1
        start = 0
        if placed:
            for i in range(rows):
                if cpus[i] == cpu:
                    start = i + 1
        for i in range(rows):
            r = (start + i) % rows
            if woken >= helpers:
                break
            if placed and cpus[r] == cpu:
                continue
            atomic_set(board, _WAKE0 + r, e)
            _sem_post(sems, r)
            woken += 1
    board[_WOKEN] = woken
    return woken


@numba.njit(cache=True, nogil=True)
def publish(board, n_tasks, kind):
    """Open the call that :func:`wake` announced: ``n_tasks`` tasks (at most
    :data:`MAX_TASKS`; 0 cancels) of job ``kind``; returns its epoch. The job fields must be
    written before."""
    e = _next_epoch(board)
    board[_DONE] = 0
    c0 = board[_COUNT0]
    for i in range(c0, board.shape[0]):
        board[i] = 0
    board[_KIND] = kind
    atomic_set(board, _STATE, (e << _EPOCH_SHIFT) | (min(n_tasks, _LOW20) << _N_SHIFT))
    rows = board[_ROWS]
    if rows:  # a helper woken for this call that stopped waiting for it: wake it again
        sems = numba.carray(address(board[_SEMS]), (rows, _SEM_WORDS), np.int64)
        for r in range(rows):
            if compare_exchange(board, _WAKE0 + rows + r, e | _PARKED, 0):
                _sem_post(sems, r)
    return e


@numba.njit(cache=True)
def solo(n_tasks):
    """``(board, epoch)`` of a call with ``n_tasks`` tasks for the calling thread alone (the
    serial paths run the same task functions)."""
    board = np.zeros(_WAKE0 + 1, dtype=np.int64)  # no helper rows, one count
    board[_COUNT0] = _WAKE0
    return board, publish(board, n_tasks, 0)


@numba.njit(cache=True, nogil=True)
def _await(board, sems, row, spins):
    """A helper's wait: the epoch of the call it was woken for once that call is published
    (or a later one), −2 to stop, −1 when the call is not published within ``spins`` polls —
    the helper then *parks* (marks its row) and waits on its semaphore again, which
    :func:`publish` posts for parked rows (a long preparation, e.g. the tables of a large
    batch, does not keep a helper spinning, nor lose it)."""
    _sem_wait(sems, row)
    if atomic_get(board, _STOP):
        return -2
    target = atomic_get(board, _WAKE0 + row)
    before = (target - 1) & _EPOCHS
    for _ in range(spins):
        e = atomic_get(board, _STATE) >> _EPOCH_SHIFT
        if e != before:
            return e
    # park: say so, then look once more (with publish's store-then-look, one of the two sees
    # the other: either this thread joins or publish posts the semaphore again)
    park = _WAKE0 + sems.shape[0] + row
    atomic_set(board, park, target | _PARKED)
    e = atomic_get(board, _STATE) >> _EPOCH_SHIFT
    if e != before:
        compare_exchange(board, park, target | _PARKED, 0)  # (lost: one extra post, harmless)
        return e
    return -1


# ------------------------------------------------------------------ families
_FAMILIES: dict = {}


def register(serve) -> int:
    """Register a compiled family's ``serve(board, epoch, member)`` (``nogil``; rebuilds the
    job's arrays from the fields and runs the family's task function) and return its job kind
    for :func:`publish`."""
    for kind, fn in _FAMILIES.items():
        if fn is serve:
            return kind
    kind = _PY_JOB + 1 + len(_FAMILIES)
    _FAMILIES[kind] = serve
    return kind


_SERVE_SIG = (types.Array(types.int64, 1, "C"), types.int64, types.int64)


def ready(kind: int) -> None:
    """Compile (or load from the cache) family ``kind``'s serve function in the calling thread,
    once, before its first job: a helper must never compile (LLVM in two threads at once)
    and would meanwhile leave every task to the caller."""
    serve = _FAMILIES[kind]
    if not serve.signatures:
        serve.compile(_SERVE_SIG)


class _Helper:
    """One helper thread serving the team's board on semaphore row ``row`` (pinned to ``cpu``
    unless None; ``pin_error``: why pinning failed, the thread then serves unpinned).
    ``error``: ``(epoch, exception)`` of the last job that raised here (the thread keeps
    serving; :meth:`Team.run` re-raises it in the caller)."""

    def __init__(self, team, row, cpu):
        self.row, self.cpu = row, cpu
        self.error = None
        self.pin_error = None
        self.tid = None
        started = threading.Event()
        threading.Thread(target=self._serve, args=(team.board, team.sems, team._job, started),
                         daemon=True, name=f"refimpl-team-{row}").start()
        started.wait(10)

    def _serve(self, board, sems, job, started):
        self.tid = threading.get_native_id()
        try:
            if self.cpu is not None:
                os.sched_setaffinity(0, {self.cpu})  # this thread only
        except OSError as e:  # an offline CPU, a sandbox: serve unpinned, say so
            self.pin_error = e
        started.set()
        member = self.row + 1
        while True:
            e = _await(board, sems, self.row, _SPINS)
            if e == -2:
                return
            if e < 0:
                continue
            kind = board[_KIND]
            try:
                if kind == _PY_JOB:
                    got = job[0]
                    if got is not None:  # (another call's job: its claims for e fail)
                        got[0](*got[1], board, e, member)
                    got = None  # drop the arrays of a finished call
                elif kind > _PY_JOB:
                    _FAMILIES[kind](board, e, member)
            except Exception as exc:  # keep serving; the caller finishes the tasks left
                self.error = (e, exc)


class Team:
    """The calling thread plus helper threads (module docstring). With CPU placement (Linux),
    one helper per CPU the process could use when the team was built, pinned to it; without
    (``cpus`` empty), ``rows`` unpinned helpers. Helpers start on first use; ``close`` stops
    them. ``woken``: the helpers the last call woke."""

    def __init__(self, rows: int | None = None):
        from numba.np.ufunc.parallel import _launch_threads

        _launch_threads()  # the layer's get_num_threads, for helpers_wanted()
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        placed = THREADED and len(cpus) >= 2 and rows is None
        if rows is None:
            rows = len(cpus) if placed else max(0, numba.config.NUMBA_NUM_THREADS - 1)
        if rows < 0:
            raise ValueError(f"rows must be >= 0, got {rows}")
        self.rows = rows if THREADED else 0
        self.cpus = np.array(cpus if placed else [], dtype=np.int64)
        self.board = np.zeros(_board_len(self.rows), dtype=np.int64)
        self.board[_COUNT0] = _WAKE0 + 2 * self.rows
        self.sems = np.zeros((self.rows, _SEM_WORDS), dtype=np.int64)
        self._job = [None]  # (fn, args) of the current Python job
        self.helpers_: list = []
        self.board[_ROWS] = self.rows
        self.board[_SEMS] = self.sems.ctypes.data
        if self.rows:
            libc = ctypes.CDLL(None)
            for r in range(self.rows):
                if libc.sem_init(ctypes.c_void_p(self.sems[r].ctypes.data), 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "sem_init failed")
            self.helpers_ = [_Helper(self, r, int(self.cpus[r]) if placed else None)
                             for r in range(self.rows)]

    @property
    def woken(self) -> int:
        return int(self.board[_WOKEN])

    def counts(self) -> np.ndarray:
        """Tasks each member finished in the last call (member 0: the caller; ``1 + r``: the
        helper of row ``r``)."""
        c0 = int(self.board[_COUNT0])
        return self.board[c0:c0 + 1 + self.rows].copy()

    def finished(self) -> int:
        """Tasks finished in the last call."""
        return int(self.board[_DONE])

    def run(self, fn, args: tuple, n_tasks: int, helpers: int | None = None) -> np.ndarray:
        """Run ``fn(*args, board, epoch, member)`` (a ``nogil`` Numba task function that loops
        ``t = claim(board, epoch)`` until −1, does task ``t`` and calls ``finish(board,
        member)``) on the caller and up to ``helpers`` helpers (default Numba's thread count
        − 1) until ``n_tasks`` tasks are finished; returns :meth:`counts`."""
        if not 0 <= n_tasks <= MAX_TASKS:
            raise ValueError(f"n_tasks must be in [0, {MAX_TASKS}], got {n_tasks}")
        if helpers is None:
            helpers = num_threads() - 1
        board = self.board
        woken = wake(board, self.sems, self.cpus, min(helpers, n_tasks - 1)) if n_tasks else 0
        self._job[0] = (fn, args)
        e = publish(board, n_tasks, _PY_JOB if woken else 0)
        if n_tasks:
            fn(*args, board, e, 0)
            while not _done(board, n_tasks, 1 << 14):  # a helper still on its last task
                for h in self.helpers_:
                    if h.error is not None and h.error[0] == e:  # it will never finish
                        err = h.error[1]
                        h.error = None
                        self._job[0] = None
                        raise RuntimeError(f"a thread-team helper raised {err!r}") from err
                os.sched_yield()
        self._job[0] = None
        return self.counts()

    def close(self) -> None:
        """Stop the helper threads (they finish the job they hold first)."""
        if self.rows and not self.board[_STOP]:
            self.board[_STOP] = 1
            for r in range(self.rows):
                _post_py(self.sems, r)


@numba.njit(cache=True)
def _post_py(sems, row):
    _sem_post(sems, row)


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


def team() -> Team:
    """The process's team, built on first use (a forked child builds its own)."""
    t = _TEAM[0]
    if t is None:
        t = _TEAM[0] = Team()
    return t


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_team_in_child)
