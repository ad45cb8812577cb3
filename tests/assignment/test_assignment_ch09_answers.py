"""Chapter 9's graded questions on the real model, without a kernel: each worked answer passes its
visible and hidden tests, and typical wrong answers (each a one-line change of a worked answer)
fail them — the hidden tests are what catches most of them.

The notebook's setup (all-MiniLM-L6-v2 and the quick texts) is loaded once; each case runs the
question's answer cells, edited, then its tests as the grader runs them (one function of the
notebook variables). The whole chapter under the grader is ``test_assignment_chapters.py``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import nbformat
import numpy as np
import pytest

from refimpl.assignment import call_with_env, parse_assignment
from refimpl.assignment import source as S  # (its test_function_source is not a test)
from refimpl.nn import GradcheckError

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[2] / "chapters" / "09_real_model.ipynb"

#: (question, text of the worked answer, replacement): the classic slips
WRONG = [
    ("ch09-q1-layernorm", "eps=1e-12):", "eps=1e-5):"),  # PyTorch's default ε
    ("ch09-q1-layernorm",  # ε outside the square root
     "r = 1.0 / np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)",
     "r = 1.0 / (np.sqrt((xc * xc).mean(axis=-1, keepdims=True)) + eps)"),
    ("ch09-q1-layernorm",  # dgamma, dbeta summed over the first axis only
     "(dy * xhat).reshape(-1, d).sum(axis=0), dy.reshape(-1, d).sum(axis=0)",
     "(dy * xhat).sum(axis=0), dy.sum(axis=0)"),
    ("ch09-q1-layernorm",  # the variance's path dropped from the backward pass
     "              - xhat * (g * xhat).mean(axis=-1, keepdims=True))", "              )"),
    ("ch09-q2-mean-pooling", "u = (h * w).sum(axis=1) / w.sum(axis=1)",
     "u = h.mean(axis=1)"),  # padding counted
    ("ch09-q2-mean-pooling",  # no floor: a zero mean becomes NaN
     "return u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)",
     "return u / np.linalg.norm(u, axis=1, keepdims=True)"),
    ("ch09-q3-head-importance",  # |E_x ∂L/∂ξ| instead of E_x |∂L/∂ξ|
     "return np.abs(xi.grad).mean(axis=1)", "return np.abs(xi.grad.mean(axis=1))"),
    ("ch09-q4-twn-erratum",  # the "printed" rule silently corrected
     "return 0.7 * W.mean(axis=1)  ", "return 0.7 * np.abs(W).mean(axis=1)  "),
    ("ch09-q4-twn-erratum",  # α over every weight, not the kept ones
     "alpha = (np.abs(W) * keep).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)",
     "alpha = np.abs(W).mean(axis=1)"),
    ("ch09-q4-twn-erratum", "keep = np.abs(W) > np.asarray(delta)[:, None]",
     "keep = W > np.asarray(delta)[:, None]"),  # negative weights never kept
    ("ch09-q5-8bit-ffn",  # one range per matrix, not per row (fidelity 0.990)
     "lo, hi = W.min(axis=1, keepdims=True), W.max(axis=1, keepdims=True)",
     "lo, hi = W.min(), W.max()"),
    ("ch09-q5-8bit-ffn", "codes = np.rint(", "codes = np.floor("),  # up to a whole step off
    ("ch09-q5-8bit-ffn", "ffn8 = model.copy()", "ffn8 = model"),  # the original modified
    ("ch09-q5-8bit-ffn", "fake_quantize_rows(lin.W.data, 8)",
     "fake_quantize_rows(lin.W.data, 6)"),  # 6 bits: fidelity 0.986
]


@pytest.fixture(scope="module")
def chapter():
    from refimpl.pretrained import compress as C
    from refimpl.pretrained import load_minilm

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assignment = parse_assignment(nb, NOTEBOOK.stem)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    model = load_minilm()
    env = {"__name__": "__main__", "np": np, "C": C, "model": model,
           "data": C.prepare_data(model.tokenizer, C.QUICK)}
    return assignment, cells, env


def _run(chapter, gid, old=None, new=None):
    """Run question ``gid``'s answer cells (``old`` replaced by ``new``), then its tests."""
    assignment, cells, env0 = chapter
    q = assignment.question(gid)
    env = dict(env0, model=env0["model"].copy())  # an answer may modify the model
    hits = 0
    for aid in q.answer_ids:
        src = cells[aid]
        if old is not None:
            hits += src.count(old)
            src = src.replace(old, new)
        # (a wrong answer may divide by zero: the test's verdict matters, not the warning)
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(invalid="ignore"):
            exec(compile(src, aid, "exec"), env)
    assert old is None or hits == 1, f"{old!r} occurs {hits} times in {gid}'s answer"
    ns: dict = {}
    exec(S.test_function_source(q, "_tests"), ns)
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(invalid="ignore"):
        call_with_env(ns["_tests"], env)


@pytest.mark.parametrize("gid", ["ch09-q1-layernorm", "ch09-q2-mean-pooling",
                                 "ch09-q4-twn-erratum", "ch09-q5-8bit-ffn"])
def test_worked_answer_passes(chapter, gid):
    _run(chapter, gid)  # q3 (the slowest) is graded with the whole chapter


@pytest.mark.parametrize("gid, old, new", WRONG, ids=[f"{g}-{i}" for i, (g, _, _) in
                                                       enumerate(WRONG)])
def test_wrong_answer_fails(chapter, gid, old, new):
    with pytest.raises((AssertionError, GradcheckError)):  # a test's verdict, not a crash
        _run(chapter, gid, old, new)
