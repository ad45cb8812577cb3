"""Numerical comparison helpers shared by the test modules (on ``sys.path`` through the
``pythonpath`` setting of ``[tool.pytest.ini_options]``)."""

from __future__ import annotations

import numpy as np


def err_message(a, b) -> str:
    """``"max abs err …, max rel err …"`` of ``a`` against the reference ``b`` (elementwise)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = np.abs(a - b)
    return f"max abs err {d.max():.3e}, max rel err {(d / np.maximum(np.abs(b), 1e-300)).max():.3e}"


def assert_close(a, b, tol: float = 1e-12) -> None:
    """Assert ``max |a − b| ≤ tol``; the message gives the absolute and relative errors."""
    err = np.abs(a - b).max()
    assert err <= tol, err_message(a, b)
