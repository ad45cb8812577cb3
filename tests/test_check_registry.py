"""Run EVERY registered check (equations, named checks, claims) in quick mode, one test each.

This is the test-suite side of the registry the chapter notebooks call, so a notebook verdict
and the test suite can never disagree. Equation and named checks must verify; claim checks must
run with sane numbers (``passed``) and give an honest verdict (``reproduced`` True or False —
"inconclusive" is not accepted: a claim check must decide).
"""

from __future__ import annotations

import importlib

import pytest

from refimpl import check

ENTRIES = check.registered()


def _resolve(dotted: str):
    """Import ``a.b.c.attr`` (module prefix + attribute chain); raise if it does not exist."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("entry", [
    pytest.param(e, id=e.key, marks=[pytest.mark.slow] if e.slow else []) for e in ENTRIES])
def test_registered_check(entry):
    result = entry.run(seed=0, quick=True)
    assert result.passed, result.line()
    if entry.kind == "claim":
        assert result.reproduced in (True, False), (
            f"claim check must decide reproduced=True/False: {result.line()}")
    print(result.line())


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.key for e in ENTRIES])
def test_entry_metadata(entry):
    assert entry.title and entry.section, entry.key
    if entry.kind == "equation":
        assert 1 <= entry.number <= check.N_EQUATIONS
    for dotted in entry.implements:
        assert dotted.startswith("refimpl."), (entry.key, dotted)
        _resolve(dotted)  # the coverage map must point at functions that exist


def test_registry_is_not_empty():
    assert ENTRIES, "no checks registered: refimpl.check.load_all() found no checks modules"
