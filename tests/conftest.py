"""Shared fixtures.

- ``backend``: parametrised over ``"numba"`` and ``"numpy"``; after the test it asserts that at
  least one kernel ran and that every kernel call used the requested backend (an environment
  matrix alone can silently run one path twice).
- ``torch``, ``tensorly``, ``sklearn``, ``nltk``, ``pot``: the cross-check libraries. Locally a missing one skips
  the test; with ``REFIMPL_REQUIRE_CROSSCHECKS=1`` (set by ``.ci/run``) it fails instead, so a
  cross-check is never silently skipped in CI.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

os.environ.setdefault("REFIMPL_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("REFIMPL_QUICK", "1")


def _require(name: str):
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)  # fail loudly in CI
    return pytest.importorskip(name)


@pytest.fixture(scope="session")
def torch():
    t = _require("torch")
    t.set_default_dtype(t.float64)
    t.set_num_threads(1)
    return t


@pytest.fixture(scope="session")
def tensorly():
    return _require("tensorly")


@pytest.fixture(scope="session")
def sklearn():
    return _require("sklearn")


@pytest.fixture(scope="session")
def pot():
    """POT (Python Optimal Transport), for the earth mover's distance cross-check (§4.4)."""
    return _require("ot")


@pytest.fixture(scope="session")
def nltk():
    """NLTK's BLEU module (``nltk.translate.bleu_score``), for the corpus-BLEU cross-check."""
    return _require("nltk.translate.bleu_score")


@pytest.fixture(params=["numba", "numpy"])
def backend(request):
    from refimpl.kernels import record_calls

    with record_calls() as log:
        yield request.param
    assert log, "the test used the backend fixture but no kernel was dispatched"
    wrong = [(k, b) for k, b in log if b != request.param]
    assert not wrong, f"kernels ran on the wrong backend: {wrong[:5]}"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
