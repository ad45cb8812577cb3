"""The kernel backend switch.

Every kernel in :mod:`refimpl.kernels` exists twice: a Numba function (``cache=True``) and a
pure-NumPy reference with the same signature. The public function takes ``backend="numba" |
"numpy"``; ``None`` means the default, read from the ``REFIMPL_BACKEND`` environment variable
(``"numba"`` when unset). Setting ``NUMBA_DISABLE_JIT=1`` runs the Numba path as plain Python,
for stepping through a kernel in a debugger.

Each dispatch is recorded, so a test can assert which backend actually ran
(:func:`record_calls`); an environment matrix alone can silently test one path twice.

Threading layer (fork safety)
-----------------------------
Numba's default threading layer on Linux without TBB is GNU OpenMP, and ``libgomp`` is not
fork-safe: once a ``parallel=True`` kernel has run (or merely been compiled or loaded from the
cache, which starts the layer), a child of ``multiprocessing``'s ``fork`` start method that
calls a parallel kernel is terminated by Numba ("fork() called from a process already using
GNU OpenMP") and the pool waits for it for ever. Importing this module therefore asks Numba for
its ``"forksafe"`` layer — TBB when the ``tbb`` package is installed, else Numba's built-in
``workqueue`` — unless the user chose one (``NUMBA_THREADING_LAYER`` or
``numba.config.THREADING_LAYER`` set before) or Numba's threads already run (then nothing can
be changed; :func:`threading_layer_status` says what is in use).

``workqueue`` is fork-safe but not thread-safe (two Python threads launching parallel kernels
at once make Numba abort the process), so :func:`dispatch` runs the Numba backend under a
process-wide re-entrant lock: concurrent kernel calls from several threads are serialised
(each already uses every core). The lock is re-created in a forked child, so a fork while
another thread is inside a kernel cannot leave the child's lock held. Cost: one uncontended
lock per call (~0.1 µs). Measured on the 2-core development machine: ``workqueue`` wakes its
threads in ~60 µs more than spinning OpenMP threads (SpMV 4096², 90% sparse, float32: best
0.36 vs 0.30 ms); larger kernels are level within the noise.

Issue #19 (2026-12-07, same machine): an empty 2-iteration ``prange`` on ``workqueue`` costs
75 µs back to back — both iterations run on woken worker threads, the calling thread waits —
and 120–180 µs after 0.3 s idle; GNU OpenMP 1.7 µs back to back; TBB 2 µs back to back and
91–95 µs after 0.3 s idle. TBB (what "forksafe" picks once the ``tbb`` package is installed)
was tried and not adopted: its workers spin after a call and, in the same process as torch's
OpenMP threads on 2 cores, made ``torch.sparse_csr`` SpMV 12 ms instead of 0.45 ms and the
refimpl kernel 0.95 instead of 0.42 ms (``benchmarks/bench_sparse.py`` docstring). Kernels
whose work is below a few hundred µs therefore keep a serial path (``sparse.
SPMV_PARALLEL_MIN_NNZ``, ``lowbit_gemv._SERIAL_MACS``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from typing import Callable

import numba

__all__ = ["BACKENDS", "env", "default_backend", "resolve_backend", "dispatch", "record_calls",
           "threading_layer_status"]

BACKENDS = ("numba", "numpy")

_recorders: list[list[tuple[str, str]]] = []


def _numba_threads_started() -> bool:
    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    return True


#: What this module did to Numba's threading layer at import: ``"set forksafe"``, or why not.
_LAYER_ACTION = "user choice kept"
if str(numba.config.THREADING_LAYER).lower() == "default":
    if _numba_threads_started():
        _LAYER_ACTION = "too late: Numba's threads were already running"
    else:
        numba.config.THREADING_LAYER = "forksafe"
        _LAYER_ACTION = "set forksafe"


def threading_layer_status() -> dict:
    """Numba's threading-layer request and, once a parallel kernel ran, the layer in use.

    Returns
    -------
    dict
        ``{"requested": numba.config.THREADING_LAYER, "action": what importing
        refimpl.kernels did, "active": numba.threading_layer() or None before the first
        parallel kernel}``.
    """
    try:
        active = numba.threading_layer()
    except ValueError:
        active = None
    return {"requested": str(numba.config.THREADING_LAYER), "action": _LAYER_ACTION,
            "active": active}


_numba_lock = threading.RLock()


def _new_lock_in_child() -> None:
    global _numba_lock
    _numba_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


# os.environ's own mapping (bytes keys on POSIX): one dict lookup per read. ``os.environ.get``
# runs four Python frames (Mapping.get, __getitem__, encodekey, encode), which after a pause
# cost ~10-30 µs on the development VM per read (issue #19: a 4-bit batch-1 product reads two
# variables per call). os.environ updates it on every assignment and deletion.
_ENVIRON = getattr(os.environ, "_data", None)
_ENVIRON = _ENVIRON if os.name == "posix" and isinstance(_ENVIRON, dict) else None
_FS_ENCODING = sys.getfilesystemencoding()


def env(name: str) -> str | None:
    """``os.environ.get(name)``, read through :data:`os.environ`'s mapping where that is
    one dict lookup (POSIX)."""
    if _ENVIRON is None:
        return os.environ.get(name)
    v = _ENVIRON.get(name.encode(_FS_ENCODING, "surrogateescape"))
    return None if v is None else v.decode(_FS_ENCODING, "surrogateescape")


@functools.cache
def host_features() -> frozenset:
    """The CPU features LLVM reports as on for this host (``llvmlite``'s query), once per
    process (~0.5 ms); empty when LLVM cannot tell."""
    import llvmlite.binding as llvm

    try:
        return frozenset(k for k, v in llvm.get_host_cpu_features().items() if v)
    except RuntimeError:
        return frozenset()


def default_backend() -> str:
    """The backend used when a kernel is called with ``backend=None`` (``$REFIMPL_BACKEND``)."""
    b = (env("REFIMPL_BACKEND") or "numba").strip().lower() or "numba"
    if b not in BACKENDS:
        raise ValueError(f"REFIMPL_BACKEND must be one of {BACKENDS}, got {b!r}")
    return b


def resolve_backend(backend: str | None) -> str:
    """Validate ``backend`` (``None`` → :func:`default_backend`)."""
    if backend is None:
        return default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    return backend


def dispatch(name: str, backend: str | None, numba_impl: Callable, numpy_impl: Callable,
             *args, **kwargs):
    """Call ``numba_impl`` or ``numpy_impl`` with the arguments, recording which one ran
    (the Numba one under the process-wide kernel lock, see the module docstring)."""
    b = resolve_backend(backend)
    for rec in _recorders:
        rec.append((name, b))
    if b == "numpy":
        return numpy_impl(*args, **kwargs)
    with _numba_lock:  # workqueue is not thread-safe: one kernel launch at a time
        return numba_impl(*args, **kwargs)


@contextlib.contextmanager
def record_calls():
    """Context manager yielding a list that collects ``(kernel_name, backend)`` per dispatch."""
    log: list[tuple[str, str]] = []
    _recorders.append(log)
    try:
        yield log
    finally:
        # by identity: a nested recorder's log may compare equal to this one
        for i in range(len(_recorders) - 1, -1, -1):
            if _recorders[i] is log:
                del _recorders[i]
                break
