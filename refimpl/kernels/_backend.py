"""The kernel backend switch.

Every kernel in :mod:`refimpl.kernels` exists twice: a Numba function (``cache=True``) and a
pure-NumPy reference with the same signature. The public function takes ``backend="numba" |
"numpy"``; ``None`` means the default, read from the ``REFIMPL_BACKEND`` environment variable
(``"numba"`` when unset). Setting ``NUMBA_DISABLE_JIT=1`` runs the Numba path as plain Python,
for stepping through a kernel in a debugger.

Each dispatch is recorded, so a test can assert which backend actually ran
(:func:`record_calls`); an environment matrix alone can silently test one path twice.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

__all__ = ["BACKENDS", "default_backend", "resolve_backend", "dispatch", "record_calls"]

BACKENDS = ("numba", "numpy")

_recorders: list[list[tuple[str, str]]] = []


def default_backend() -> str:
    """The backend used when a kernel is called with ``backend=None`` (``$REFIMPL_BACKEND``)."""
    b = os.environ.get("REFIMPL_BACKEND", "numba").strip().lower() or "numba"
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
    """Call ``numba_impl`` or ``numpy_impl`` with the arguments, recording which one ran."""
    b = resolve_backend(backend)
    for rec in _recorders:
        rec.append((name, b))
    impl = numba_impl if b == "numba" else numpy_impl
    return impl(*args, **kwargs)


@contextlib.contextmanager
def record_calls():
    """Context manager yielding a list that collects ``(kernel_name, backend)`` per dispatch."""
    log: list[tuple[str, str]] = []
    _recorders.append(log)
    try:
        yield log
    finally:
        _recorders.remove(log)
