"""The kernel backend switch: resolution, the environment default, and call recording."""

import pytest

from refimpl.kernels import _backend


def test_resolve_and_default(monkeypatch):
    monkeypatch.delenv("REFIMPL_BACKEND", raising=False)
    assert _backend.resolve_backend(None) == "numba"
    monkeypatch.setenv("REFIMPL_BACKEND", "numpy")
    assert _backend.resolve_backend(None) == "numpy"
    assert _backend.resolve_backend("numba") == "numba"
    monkeypatch.setenv("REFIMPL_BACKEND", "cuda")
    with pytest.raises(ValueError, match="REFIMPL_BACKEND"):
        _backend.default_backend()
    with pytest.raises(ValueError, match="backend must be one of"):
        _backend.resolve_backend("fortran")


def test_dispatch_calls_the_chosen_impl_and_records():
    with _backend.record_calls() as log:
        a = _backend.dispatch("k", "numba", lambda x: ("nb", x), lambda x: ("np", x), 1)
        b = _backend.dispatch("k", "numpy", lambda x: ("nb", x), lambda x: ("np", x), 2)
    assert a == ("nb", 1) and b == ("np", 2)
    assert log == [("k", "numba"), ("k", "numpy")]
    # recording stops outside the context
    _backend.dispatch("k", "numpy", lambda: 0, lambda: 0)
    assert len(log) == 2
