"""The instructor source: a chapter notebook with nbgrader cell metadata and markers.

A chapter notebook is the one source of an assignment. Its graded exercises are cells with
nbgrader metadata (``metadata.nbgrader``, schema version 3):

* an **answer cell** (``solution: true, grade: false``): code whose worked answer sits between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
* a **test cell** (``grade: true, solution: false, locked: true, points: P``) right after its
  answer cell(s): plain ``assert`` / ``numpy.testing`` code (never printed output), with the
  tests a student must not see between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``;
* a **written answer** (a Markdown cell with ``solution: true, grade: true, points: 0``): a
  model answer between the solution markers, not autograded.

Every answer cell belongs to the next test cell; the test cell's ``grade_id`` names the question
(stable, unique: ``ch02-q1-obd``), its ``points`` are the question's points, and the question is
scored all or nothing: full points when the test cell (visible and hidden tests) raises nothing.

The markers are nbgrader's (``### BEGIN SOLUTION`` is what nbgrader's ``ClearSolutions`` and
``ClearHiddenTests`` look for, case-sensitive, after the comment sign). This module parses them and
derives the student cells and the test functions; it only reads notebooks (``nbformat``
NotebookNodes) and never executes them.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import re
import symtable
import textwrap
from dataclasses import dataclass, field

__all__ = ["BEGIN_SOLUTION", "END_SOLUTION", "BEGIN_HIDDEN", "END_HIDDEN", "CODE_STUB",
           "TEXT_STUB", "Question", "Assignment", "AssignmentError", "parse_assignment",
           "strip_solution", "strip_hidden_tests", "split_hidden_tests", "test_function_source",
           "free_names", "nbgrader_meta"]

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
BEGIN_HIDDEN = "### BEGIN HIDDEN TESTS"
END_HIDDEN = "### END HIDDEN TESTS"
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
_GRADE_ID = re.compile(r"^[a-zA-Z0-9_\-]+$")  # nbgrader's schema (v3.json), non-empty


class AssignmentError(ValueError):
    """The instructor notebook's markers or nbgrader metadata are inconsistent."""


@dataclass(frozen=True)
class Question:
    """One autograded question: its answer cells, its test cell and its points.

    Attributes
    ----------
    grade_id : str
        The test cell's nbgrader ``grade_id``; names the question everywhere (tables, JSON,
        pytest function names, otter test files).
    points : float
        All-or-nothing points.
    title : str
        The first line of the Markdown cell just above the question's first answer cell.
    answer_ids : tuple of str
        ``grade_id`` of each answer cell, in notebook order.
    visible : str
        The test code a student sees.
    hidden : str
        The test code only the grader runs (may be empty).
    """

    grade_id: str
    points: float
    title: str
    answer_ids: tuple[str, ...]
    visible: str
    hidden: str

    @property
    def test_code(self) -> str:
        """Visible then hidden tests: what the grader runs."""
        return self.visible.rstrip() + ("\n" + self.hidden.rstrip() if self.hidden.strip()
                                        else "") + "\n"

    @property
    def cell_ids(self) -> tuple[str, ...]:
        """Every ``grade_id`` the question depends on: answers then the test cell."""
        return (*self.answer_ids, self.grade_id)


@dataclass
class Assignment:
    """A parsed instructor notebook.

    Attributes
    ----------
    name : str
        The notebook's stem (``02_pruning``).
    questions : list of Question
        Autograded questions in notebook order.
    written : list of str
        ``grade_id`` of the written (0-point, manually read) answers.
    order : list of str
        Every graded ``grade_id`` (answers, tests, written answers) in notebook order.
    """

    name: str
    questions: list[Question] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    @property
    def max_score(self) -> float:
        """The sum of the questions' points."""
        return float(sum(q.points for q in self.questions))

    def question(self, grade_id: str) -> Question:
        """The question whose test cell has ``grade_id`` (KeyError if none)."""
        for q in self.questions:
            if q.grade_id == grade_id:
                return q
        raise KeyError(grade_id)


def nbgrader_meta(cell) -> dict | None:
    """The cell's nbgrader metadata (a dict) if it marks the cell graded, solution or locked."""
    meta = cell.get("metadata", {}).get("nbgrader")
    if not isinstance(meta, dict):
        return None
    if not (meta.get("grade") or meta.get("solution") or meta.get("locked")
            or meta.get("task")):
        return None
    return meta


def _regions(lines: list[str], begin: str, end: str, where: str):
    """(start, stop) line indices of each ``begin``/``end`` region; raises on bad nesting."""
    out, start = [], None
    for i, line in enumerate(lines):
        s = line.strip()
        if s == begin:
            if start is not None:
                raise AssignmentError(f"{where}: nested {begin!r} at line {i + 1}")
            start = i
        elif s == end:
            if start is None:
                raise AssignmentError(f"{where}: {end!r} without {begin!r} at line {i + 1}")
            out.append((start, i))
            start = None
    if start is not None:
        raise AssignmentError(f"{where}: {begin!r} at line {start + 1} is never closed")
    return out


def strip_solution(source: str, cell_type: str = "code", where: str = "cell") -> str:
    """Replace each solution region by nbgrader's stub, keeping the marker line's indentation
    (code: ``# YOUR CODE HERE`` / ``raise NotImplementedError()``; Markdown: ``YOUR ANSWER
    HERE``). A solution cell without markers is replaced whole, as nbgrader does."""
    lines = source.split("\n")
    regions = _regions(lines, BEGIN_SOLUTION, END_SOLUTION, where)
    stub = CODE_STUB if cell_type == "code" else TEXT_STUB
    if not regions:
        return stub
    out, pos = [], 0
    for start, stop in regions:
        out += lines[pos:start]
        indent = lines[start][:len(lines[start]) - len(lines[start].lstrip())]
        out += [indent + s for s in stub.split("\n")]
        pos = stop + 1
    out += lines[pos:]
    return "\n".join(out)


def split_hidden_tests(source: str, where: str = "cell") -> tuple[str, str]:
    """``(visible, hidden)`` code of a test cell: the hidden blocks (markers excluded) are
    moved out, dedented to the marker's indentation."""
    lines = source.split("\n")
    regions = _regions(lines, BEGIN_HIDDEN, END_HIDDEN, where)
    visible, hidden, pos = [], [], 0
    for start, stop in regions:
        visible += lines[pos:start]
        hidden.append(textwrap.dedent("\n".join(lines[start + 1:stop])))
        pos = stop + 1
    visible += lines[pos:]
    return "\n".join(visible).rstrip() + "\n", "\n".join(h for h in hidden if h.strip())


def strip_hidden_tests(source: str, where: str = "cell") -> str:
    """The test cell as a student sees it: hidden blocks removed, markers included."""
    return split_hidden_tests(source, where)[0]


def free_names(code: str) -> list[str]:
    """Global names ``code`` reads when run as a function body (builtins excluded): the
    notebook variables a test needs, passed to the test function as arguments."""
    src = "def _t():\n" + textwrap.indent(code, "    ") + "\n    pass\n"
    table = symtable.symtable(src, "<test>", "exec").get_children()[0]
    names: set[str] = set()

    def walk(t):
        names.update(t.get_globals() if hasattr(t, "get_globals") else
                     [s.get_name() for s in t.get_symbols() if s.is_global()])
        for child in t.get_children():
            walk(child)

    walk(table)
    return sorted(n for n in names if not hasattr(builtins, n))


def test_function_source(question: Question, name: str | None = None, *,
                         hidden: bool = True) -> str:
    """``def <name>(<free names>): <tests>``: the question's tests as one plain function that
    raises on failure (its arguments are the notebook variables the tests read)."""
    code = question.test_code if hidden else question.visible
    name = name or "test_" + question.grade_id.replace("-", "_")
    args = ", ".join(free_names(code))
    return f"def {name}({args}):\n" + textwrap.indent(code.rstrip() + "\n", "    ")


def _title_above(cells, index: int) -> str:
    """The last heading (else the first line) of the nearest Markdown cell above ``index``."""
    for j in range(index - 1, -1, -1):
        if cells[j].cell_type == "markdown":
            lines = [ln.strip() for ln in cells[j].source.splitlines() if ln.strip()]
            heads = [ln for ln in lines if ln.startswith("#")]
            return (heads[-1] if heads else lines[0] if lines else "").lstrip("#").strip()
    return ""


def parse_assignment(nb, name: str = "notebook") -> Assignment:
    """Read the graded questions of an instructor notebook.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        The instructor notebook (version 4).
    name : str
        Its stem, used in messages.

    Returns
    -------
    Assignment

    Raises
    ------
    AssignmentError
        Unbalanced markers, a duplicate or malformed ``grade_id``, a grade cell without
        ``points``, hidden tests outside a grade cell, an answer cell not followed by a test
        cell, or a test whose code does not compile.
    """
    out = Assignment(name=name)
    seen: set[str] = set()
    pending: list[str] = []
    first_answer: int | None = None
    for i, cell in enumerate(nb.cells):
        where = f"{name} cell {i}"
        meta = nbgrader_meta(cell)
        src = cell.source
        has_solution = any(line.strip() == BEGIN_SOLUTION for line in src.split("\n"))
        _regions(src.split("\n"), BEGIN_SOLUTION, END_SOLUTION, where)
        hidden_regions = _regions(src.split("\n"), BEGIN_HIDDEN, END_HIDDEN, where)
        if meta is None:
            if hidden_regions:
                raise AssignmentError(f"{where}: hidden tests in a cell that is not an nbgrader "
                                      f"grade cell")
            continue
        gid = meta.get("grade_id", "")
        if not isinstance(gid, str) or not _GRADE_ID.match(gid):
            raise AssignmentError(f"{where}: grade_id must be non-empty letters, digits, '_' "
                                  f"or '-', got {gid!r}")
        if gid in seen:
            raise AssignmentError(f"{where}: duplicate grade_id {gid!r}")
        seen.add(gid)
        out.order.append(gid)
        grade, solution = bool(meta.get("grade")), bool(meta.get("solution"))
        if hidden_regions and not (grade and not solution):
            raise AssignmentError(f"{where} ({gid}): hidden tests belong in a test cell "
                                  f"(grade: true, solution: false)")
        if solution and cell.cell_type == "markdown":
            if not grade:
                raise AssignmentError(f"{where} ({gid}): a Markdown answer must be a grade cell "
                                      f"(nbgrader requires it); give it points: 0")
            out.written.append(gid)
            continue
        if solution and cell.cell_type == "code":
            if grade:
                raise AssignmentError(f"{where} ({gid}): put the tests of an answer in the "
                                      f"test cell after it (grade: true, solution: false)")
            if not has_solution:
                raise AssignmentError(f"{where} ({gid}): an answer cell needs a "
                                      f"{BEGIN_SOLUTION!r} region")
            if first_answer is None:
                first_answer = i
            pending.append(gid)
            continue
        if grade and cell.cell_type == "code":
            points = meta.get("points")
            if not isinstance(points, (int, float)) or isinstance(points, bool) or points <= 0:
                raise AssignmentError(f"{where} ({gid}): a test cell needs points > 0, got "
                                      f"{points!r}")
            if not pending:
                raise AssignmentError(f"{where} ({gid}): a test cell needs an answer cell "
                                      f"before it")
            visible, hidden = split_hidden_tests(src, where)
            q = Question(grade_id=gid, points=float(points),
                         title=_title_above(nb.cells, first_answer), answer_ids=tuple(pending),
                         visible=visible, hidden=hidden)
            try:
                compile(test_function_source(q), f"<{gid}>", "exec")
            except SyntaxError as err:
                raise AssignmentError(f"{where} ({gid}): the tests do not compile: {err}") \
                    from None
            out.questions.append(q)
            pending, first_answer = [], None
    if pending:
        raise AssignmentError(f"{name}: answer cells {pending} have no test cell after them")
    return out


def source_digest(nb) -> str:
    """A short hash of the graded cells (answers and tests, solutions included): names the
    version of an assignment a student notebook was made from."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if nbgrader_meta(cell) is not None:
            h.update(cell.source.encode())
    return h.hexdigest()[:16]


def copy_cell(cell):
    """A deep copy of a cell without outputs or execution count."""
    c = copy.deepcopy(cell)
    if c.cell_type == "code":
        c.outputs = []
        c.execution_count = None
    return c
