"""Where the CLI runners find the source checkout's folders (``chapters/``, ``benchmarks/``)."""

from __future__ import annotations

from pathlib import Path


def checkout_dir(name: str, pattern: str | None = None) -> Path | None:
    """``name/`` of the source checkout refimpl was imported from, else of the cwd; with
    ``pattern``, only a folder holding a file that matches it. None when neither exists."""
    import refimpl

    for c in (Path(refimpl.__file__).resolve().parents[1] / name, Path.cwd() / name):
        if c.is_dir() and (pattern is None or any(c.glob(pattern))):
            return c
    return None
