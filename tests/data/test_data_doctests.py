"""The examples in the refimpl.data docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = ["refimpl.data.vocab", "refimpl.data.sentiment", "refimpl.data.tasks",
           "refimpl.data.lm", "refimpl.data.translation", "refimpl.data.longrange"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0, f"{res.failed} of {res.attempted} doctest examples failed in {name}"


def test_there_are_doctest_examples():
    total = sum(doctest.testmod(importlib.import_module(m)).attempted for m in MODULES)
    assert total >= 8
