"""The grader on the chapters themselves (each grading executes a whole chapter at its quick
sizes, so these run with the notebook tests): the instructor notebook scores full marks on every
converted chapter, the untouched student notebook scores 0 without crashing, one deliberately
wrong answer loses exactly that question's points, and the same submission graded twice gets the
same per-question scores."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from refimpl.assignment import grade_notebook, make_assignment
from refimpl.cli.chapters import quiet_kernel_manager_class

pytestmark = pytest.mark.notebook

CHAPTERS = Path(__file__).resolve().parents[2] / "chapters"
#: Chapters with graded Exercises (every chapter notebook).
CONVERTED = ["01_networks", "02_pruning", "03_quantization", "04_distillation", "05_sharing",
             "06_decomposition", "07_subquadratic", "08_comparison", "09_real_model"]
TIMEOUT = 900  # seconds per cell, as in tests/test_notebooks.py


def _grade(submission, stem):
    return grade_notebook(submission, CHAPTERS / f"{stem}.ipynb", timeout=TIMEOUT,
                          kernel_manager_class=quiet_kernel_manager_class())


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = {}
    for stem in CONVERTED:
        d = tmp_path_factory.mktemp(stem)
        out[stem] = (make_assignment(CHAPTERS / f"{stem}.ipynb", d), d)
    return out


@pytest.mark.parametrize("stem", CONVERTED)
def test_instructor_notebook_scores_full_marks(stem, made):
    info, d = made[stem]
    r = _grade(d / "autograder" / f"{stem}.ipynb", stem)
    failed = {q.grade_id: q.message for q in r.questions if q.status != "passed"}
    assert not failed, failed
    assert r.score == r.max_score == info["max_score"] > 0


@pytest.mark.parametrize("stem", CONVERTED)
def test_untouched_student_notebook_scores_zero(stem, made):
    info, d = made[stem]
    r = _grade(d / "student" / f"{stem}.ipynb", stem)
    assert r.score == 0.0 and r.max_score == info["max_score"]
    assert [q.grade_id for q in r.questions] == list(info["questions"])
    # every question ran and failed on the stub (or on what the stub left undefined)
    assert all(q.status == "failed" for q in r.questions), r.to_dict()
    assert all("NotImplementedError" in q.message or "defines no" in q.message
               for q in r.questions), r.to_dict()


def test_one_wrong_answer_loses_exactly_its_points_and_grading_repeats(made, tmp_path):
    stem = "03_quantization"
    info, d = made[stem]
    nb = nbformat.read(d / "autograder" / f"{stem}.ipynb", as_version=4)
    cell = next(c for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "ch03-q2-twn-answer")
    assert "delta = ratio * float(np.abs(W).mean())" in cell.source
    # the classic slip the erratum of Eq. (34) invites: E(W) instead of E|W|
    cell.source = cell.source.replace("delta = ratio * float(np.abs(W).mean())",
                                      "delta = ratio * abs(float(W.mean()))")
    sub = tmp_path / f"{stem}.ipynb"
    nbformat.write(nb, sub)
    first, second = _grade(sub, stem), _grade(sub, stem)
    lost = {q.grade_id: q.points - q.score for q in first.questions if q.score < q.points}
    assert lost == {"ch03-q2-twn": info["questions"]["ch03-q2-twn"]}, first.to_dict()
    assert first.score == info["max_score"] - info["questions"]["ch03-q2-twn"]
    assert [(q.grade_id, q.score, q.status) for q in second.questions] == \
        [(q.grade_id, q.score, q.status) for q in first.questions]
