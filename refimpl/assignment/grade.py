"""``refimpl assignment grade``: run a submission headless and score every question.

How a submission is graded
--------------------------
1. The questions, their points and their tests (visible *and* hidden) come from the instructor
   notebook, never from the submission: a student who edits a test cell changes nothing.
2. Structure: each question's answer cells and test cell are found by nbgrader ``grade_id``. A
   question whose cell is missing, duplicated, of another type, or out of the instructor's order
   (cells not on the longest run of graded cells that keeps the instructor's order) scores 0,
   with the reason.
3. Execution: every code cell of the submission runs in a fresh ``python3`` kernel (nbclient),
   in the submission's folder, with a time limit per cell (the kernel is interrupted on timeout).
   A test cell's code is replaced by the question's tests wrapped in one function whose
   arguments are the notebook variables the tests read, so a test neither sees nor changes the
   student's other variables. A cell that raises or times out does not stop the run.
4. Score: a question gets its points when its test function raised nothing, else 0.

Grading never raises for a bad submission (unreadable JSON, a dead kernel, a missing cell): the
report says why each question scored what it did.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from refimpl.utils import temporary_environ
from refimpl.assignment.source import (Assignment, free_names, parse_assignment,
                                       source_digest, test_function_source)

__all__ = ["QuestionResult", "GradeReport", "grade_notebook", "structure_problems",
           "format_table"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class QuestionResult:
    """One question's verdict: ``score`` is 0 or ``points``; ``status`` one of ``passed``,
    ``failed`` (a test raised), ``error`` (cells missing, moved, timed out, kernel died)."""

    grade_id: str
    title: str
    points: float
    score: float = 0.0
    status: str = "failed"
    message: str = ""


@dataclass
class GradeReport:
    """The result of grading one submission (``to_dict()`` is the ``--json`` output)."""

    submission: str
    assignment: str
    score: float
    max_score: float
    questions: list[QuestionResult] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report as JSON-ready data: ``score``, ``max_score``, ``questions`` (one dict per
        question: ``grade_id``, ``title``, ``points``, ``score``, ``status``, ``message``),
        ``submission``, ``assignment``, ``seconds`` and ``notes``."""
        return {"submission": self.submission, "assignment": self.assignment,
                "score": self.score, "max_score": self.max_score,
                "questions": [asdict(q) for q in self.questions],
                "seconds": round(self.seconds, 2), "notes": list(self.notes)}


def _lis_keep(positions: list[int]) -> set[int]:
    """Indices (into ``positions``) of one longest strictly increasing subsequence."""
    import bisect

    tails, tails_idx, prev = [], [], [-1] * len(positions)
    for i, p in enumerate(positions):
        k = bisect.bisect_left(tails, p)
        if k == len(tails):
            tails.append(p)
            tails_idx.append(i)
        else:
            tails[k] = p
            tails_idx[k] = i
        prev[i] = tails_idx[k - 1] if k else -1
    keep, i = set(), tails_idx[-1] if tails_idx else -1
    while i >= 0:
        keep.add(i)
        i = prev[i]
    return keep


def structure_problems(assignment: Assignment, instructor_cells: dict, cells) -> dict:
    """``{grade_id of a question: reason}`` for questions whose graded cells in ``cells`` (a
    submission's) are missing, duplicated, changed type, or out of the instructor's order.

    ``instructor_cells`` maps every graded ``grade_id`` to its cell type in the instructor
    notebook."""
    order = {gid: k for k, gid in enumerate(assignment.order)}
    seen: dict[str, list[int]] = {}
    sequence = []  # (cell index, grade_id) of known graded cells, submission order
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        if gid in order:
            seen.setdefault(gid, []).append(i)
            sequence.append((i, gid))
    bad: dict[str, str] = {}
    for gid in order:
        if gid not in seen:
            bad[gid] = "cell deleted"
        elif len(seen[gid]) > 1:
            bad[gid] = f"cell duplicated (cells {seen[gid]})"
        elif cells[seen[gid][0]].cell_type != instructor_cells[gid]:
            bad[gid] = f"cell type changed to {cells[seen[gid][0]].cell_type}"
    single = [(i, gid) for i, gid in sequence if len(seen[gid]) == 1]
    keep = _lis_keep([order[gid] for _, gid in single])
    for k, (i, gid) in enumerate(single):
        if k not in keep and gid not in bad:
            bad[gid] = f"cell moved (now cell {i})"
    out = {}
    for q in assignment.questions:
        reasons = [f"{gid}: {bad[gid]}" for gid in q.cell_ids if gid in bad]
        if reasons:
            out[q.grade_id] = "; ".join(reasons)
    return out


def _test_cell_code(question) -> str:
    """The code run in place of a test cell: the tests as one function of the notebook
    variables they read, then a call that names any variable the notebook lacks."""
    fn = "_refimpl_grade_" + question.grade_id.replace("-", "_")
    names = free_names(question.test_code)
    return (test_function_source(question, fn) +
            f"_refimpl_missing = [_n for _n in {names!r} if _n not in globals()]\n"
            f"if _refimpl_missing:\n"
            f"    raise NameError('the notebook defines no ' + ', '.join(_refimpl_missing))\n"
            f"{fn}(**{{_n: globals()[_n] for _n in {names!r}}})\n")


def _error_text(outputs) -> str:
    for out in outputs:
        if out.get("output_type") == "error":
            return _ANSI.sub("", f"{out.get('ename', '')}: {out.get('evalue', '')}").strip()
    return ""


def grade_notebook(submission, source, *, timeout: int = 600, quick: bool = True,
                   kernel_manager_class=None, kernel_name: str = "python3") -> GradeReport:
    """Grade one submission against the instructor notebook ``source``.

    Parameters
    ----------
    submission : str or Path
        The student's ``.ipynb``.
    source : str or Path or NotebookNode
        The instructor notebook (a chapter notebook, or ``autograder/NN_name.ipynb``).
    timeout : int
        Seconds allowed per cell; a cell over it is interrupted and counts as raising.
    quick : bool
        Run the chapter at its quick sizes (``REFIMPL_QUICK=1`` in the kernel).
    kernel_manager_class : type, optional
        Passed to nbclient (``refimpl.cli.chapters.quiet_kernel_manager_class()`` in the CLI).

    Returns
    -------
    GradeReport
    """
    import nbformat

    t0 = time.perf_counter()
    if isinstance(source, (str, Path)):
        src_nb = nbformat.read(Path(source), as_version=4)
        name = Path(source).stem
    else:
        src_nb, name = source, source.metadata.get("refimpl_assignment", {}).get("name", "source")
    assignment = parse_assignment(src_nb, name)
    instructor_cells = {}
    for cell in src_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if meta.get("grade_id") in assignment.order:
            instructor_cells[meta["grade_id"]] = cell.cell_type
    results = {q.grade_id: QuestionResult(q.grade_id, q.title, q.points)
               for q in assignment.questions}
    report = GradeReport(str(submission), name, 0.0, assignment.max_score,
                         list(results.values()))
    try:
        nb = nbformat.read(Path(submission), as_version=4)
    except Exception as err:  # noqa: BLE001 - an unreadable submission scores 0
        for r in results.values():
            r.status, r.message = "error", f"submission unreadable: {type(err).__name__}: {err}"
        report.notes.append(f"could not read the submission: {err}")
        report.seconds = time.perf_counter() - t0
        return report
    made_from = nb.metadata.get("refimpl_assignment", {})
    if isinstance(made_from, dict) and made_from.get("digest") not in (None,
                                                                        source_digest(src_nb)):
        report.notes.append("the submission was made from another version of the instructor "
                            "notebook (its graded cells changed since); grading with the "
                            "current tests")
    problems = structure_problems(assignment, instructor_cells, nb.cells)
    for gid, why in problems.items():
        results[gid].status, results[gid].message = "error", why
    by_test = {q.grade_id: q for q in assignment.questions}
    # the cells to run: the submission's code cells, test cells replaced by the real tests
    plan = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        gid = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        if gid in by_test:
            if gid in problems:
                continue
            plan.append((i, gid, _test_cell_code(by_test[gid])))
        else:
            plan.append((i, None, cell.source))
    ran = _run_cells(plan, Path(submission).resolve().parent, timeout, quick,
                     kernel_manager_class, kernel_name, report)
    for gid, (ok, message) in ran.items():
        r = results[gid]
        r.status, r.message = ("passed", "") if ok else ("failed", message)
        r.score = r.points if ok else 0.0
    for gid, r in results.items():
        if gid not in ran and gid not in problems:
            r.status = "error"
            r.message = r.message or "not run: " + (report.notes[-1] if report.notes
                                                    else "the kernel stopped")
    report.score = float(sum(r.score for r in results.values()))
    report.seconds = time.perf_counter() - t0
    return report


def _run_cells(plan, cwd: Path, timeout: int, quick: bool, kernel_manager_class,
               kernel_name: str, report: GradeReport) -> dict:
    """Run ``plan`` (cell index, test grade_id or None, code) in one kernel; return
    ``{grade_id: (passed, message)}`` for the test cells that ran."""
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": "Python 3",
                                 "language": "python"}
    for _, _, code in plan:
        nb.cells.append(nbformat.v4.new_code_cell(code))
    env_set = {"REFIMPL_QUICK": "1" if quick else "0", "REFIMPL_PROGRESS": "0",
               "MPLBACKEND": "Agg"}
    kw = {"kernel_manager_class": kernel_manager_class} if kernel_manager_class else {}
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                     allow_errors=True, interrupt_on_timeout=True,
                                     resources={"metadata": {"path": str(cwd)}}, **kw)
    out: dict = {}
    with temporary_environ(env_set):  # the kernel inherits this process's environment
        try:
            with client.setup_kernel():
                for k, (i, gid, _) in enumerate(plan):
                    cell = nb.cells[k]
                    try:
                        client.execute_cell(cell, k)
                        err = _error_text(cell.outputs)
                    except CellTimeoutError:
                        err = f"cell {i} exceeded the time limit of {timeout} s"
                    except CellExecutionError as e:
                        err = _ANSI.sub("", str(e)).strip().splitlines()[-1]
                    if err.startswith("KeyboardInterrupt"):  # nbclient interrupts on timeout
                        err = f"cell {i} exceeded the time limit of {timeout} s"
                    if gid is not None:
                        out[gid] = (not err, err)
        except DeadKernelError as e:
            report.notes.append(f"the kernel died: {e}")
        except Exception as e:  # noqa: BLE001 - the kernel could not start, ...
            report.notes.append(f"execution stopped: {type(e).__name__}: {e}")
    return out


def format_table(report: GradeReport) -> str:
    """The per-question score table printed by ``refimpl assignment grade``."""
    w = max([len(q.grade_id) for q in report.questions] + [8])
    lines = [f"{'question':<{w}}  {'score':>11}  status  detail"]
    for q in report.questions:
        detail = q.message.replace("\n", " ")
        lines.append(f"{q.grade_id:<{w}}  {q.score:>5g} / {q.points:<3g}  "
                     f"{q.status:<6}  {detail[:90]}")
    lines.append(f"{'total':<{w}}  {report.score:>5g} / {report.max_score:<3g}  "
                 f"({report.seconds:.1f} s)")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def report_json(report: GradeReport) -> str:
    """``report.to_dict()`` as indented JSON (what ``--json`` prints)."""
    return json.dumps(report.to_dict(), indent=1)
