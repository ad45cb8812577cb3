"""Stdlib-docstring corpora and the task registry."""

import time

import numpy as np
import pytest

from refimpl.data import (TASKS, ClassificationTask, LMTask, Seq2SeqTask, SequenceTask,
                          load_stdlib_docstrings_chars, load_stdlib_topics, load_task,
                          stdlib_docstrings)
from refimpl.data.corpora import _paragraphs, stdlib_files


def test_stdlib_files_skip_tests_and_are_sorted():
    files = stdlib_files()
    assert list(files) == sorted(files) and len(files) > 200
    assert not any("/test/" in f or f.startswith("test/") or "site-packages" in f for f in files)
    assert "json/__init__.py" in files


def test_docstrings_are_real_and_deterministic():
    docs = stdlib_docstrings(["json"])
    assert docs == stdlib_docstrings(["json"])
    assert docs[0][0] == "json"
    names = [n for _, n, _ in docs]
    assert "json.dumps" in names
    doc = dict((n, d) for _, n, d in docs)["json.dumps"]
    import json
    import inspect
    assert doc == inspect.cleandoc(json.dumps.__doc__)


def test_paragraph_wrapping():
    out = _paragraphs("aaa bbb ccc\n  ddd\n\n\neee", max_len=8)
    assert out == ["aaa bbb", "ccc ddd", "eee"]
    assert all(len(p) <= 8 for p in _paragraphs("x" * 30 + " y", 8))


def test_char_corpus():
    a = load_stdlib_docstrings_chars(max_chars=20_000, max_len=64, rng=0)
    b = load_stdlib_docstrings_chars(max_chars=20_000, max_len=64, rng=0)
    c = load_stdlib_docstrings_chars(max_chars=20_000, max_len=64, rng=1)
    assert isinstance(a, LMTask) and a.bayes_nll is None
    assert np.array_equal(a.train, b.train) and a.vocab == b.vocab
    assert not np.array_equal(a.train[:20], c.train[:20]) or a.meta["files"] != c.meta["files"]
    assert a.train.shape[1] == 66 and a.train.dtype == np.int64
    assert 20_000 <= a.meta["n_chars"] < 40_000
    assert len(a.vocab) < 4 + 96  # ASCII only
    row = "".join(a.vocab.decode(a.train[0]))
    assert len(row) <= 64 and row == row.strip() and "  " not in row


def test_topics_balanced_and_deterministic():
    t = load_stdlib_topics(rng=0)
    assert isinstance(t, ClassificationTask)
    assert t.label_names == sorted(t.label_names) and t.n_classes == 8
    assert np.all(np.bincount(t.y_train) == np.bincount(t.y_train)[0])
    assert min(t.meta["available"].values()) == t.meta["per_class"] >= 50
    t2 = load_stdlib_topics(rng=0)
    assert np.array_equal(t.X_train, t2.X_train) and t.texts_test == t2.texts_test
    # no docstring is in two splits
    assert not set(t.texts_train) & set(t.texts_test)
    with pytest.raises(ValueError, match="no docstrings"):
        load_stdlib_topics(topics=("json", "no_such_package_xyz"))
    with pytest.raises(ValueError, match="at least 2"):
        load_stdlib_topics(topics=("json",))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_registry_quick_tasks_are_fast_and_typed(name):
    kind = {"classification": ClassificationTask, "lm": LMTask, "seq2seq": Seq2SeqTask,
            "sequence": SequenceTask}
    load_task(name, quick=True, rng=0)  # warm caches (the stdlib parse is cached per process)
    t0 = time.perf_counter()
    task = load_task(name, quick=True, rng=0)
    dt = time.perf_counter() - t0
    assert isinstance(task, kind[TASKS[name].kind])
    assert dt < 1.0, f"{name} quick generation took {dt:.2f} s"
    assert task.summary()


def test_load_task_errors_and_overrides():
    with pytest.raises(ValueError, match="name must be one of"):
        load_task("imagenet")
    t = load_task("sentiment", quick=True, n_train=50)
    assert len(t.y_train) == 50


_DIGEST = """
import hashlib
from refimpl.data import load_task
h = hashlib.sha256()
for name in ("sentiment", "translation", "stdlib_topics", "stdlib_chars", "hmm_lm"):
    t = load_task(name, quick=True, rng=0)
    for k, v in sorted(vars(t).items()):
        if hasattr(v, "tobytes"):
            h.update(k.encode()); h.update(v.tobytes())
    voc = getattr(t, "vocab", None) or t.tgt_vocab
    h.update("|".join(voc.itos).encode())
print(h.hexdigest())
"""


def test_tasks_identical_across_processes_and_hash_seeds():
    """Same seed -> bit-identical arrays in a fresh interpreter, whatever PYTHONHASHSEED is
    (no dependence on set/dict iteration order of strings)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    r = subprocess.run([sys.executable, "-c", _DIGEST], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(_DIGEST, {})  # this process runs under a different (random or fixed) hash seed
    assert r.stdout.strip() == buf.getvalue().strip() and len(buf.getvalue().strip()) == 64
