"""``refimpl assignment``: make a student version of a chapter, grade a submission.

``refimpl assignment make 04 --out DIR`` writes DIR/student (the hand-out notebook and otter's
public tests), DIR/autograder (instructor notebook, pytest autograder, otter tests with the hidden
ones) and DIR/README.md; see :mod:`refimpl.assignment.make`.

``refimpl assignment grade SUBMISSION.ipynb [--json]`` executes the submission headless and
prints a per-question score table (or JSON with ``score``, ``max_score``, ``questions``). The
instructor notebook is found from the submission's metadata (``refimpl_assignment.name``), else
from its file name, in the checkout's ``chapters/``; ``--source`` names it explicitly. Exit status
0 whenever grading completed, whatever the score; 2 for a usage error (unknown chapter, missing
file, a source notebook whose markers are inconsistent).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from refimpl.cli.chapters import find_chapters_dir, quiet_kernel_manager_class, select_notebooks

__all__ = ["main", "add_parser"]


def _fail(msg: str) -> int:
    print(f"refimpl assignment: {msg}", file=sys.stderr)
    return 2


def _chapter(name: str) -> Path:
    """A chapter notebook by number, stem or part of the name (ValueError if none or several)."""
    chapters = find_chapters_dir()
    if chapters is None:
        raise ValueError("no chapters/ folder found next to the refimpl package or in the "
                         "current directory (clone the repository and run from the checkout)")
    hits = select_notebooks(chapters, [name])
    if len(hits) != 1:
        raise ValueError(f"{name!r} matches {len(hits)} chapters: {[p.stem for p in hits]}")
    return hits[0]


def _source_for(submission: Path, source: str | None) -> Path:
    if source:
        p = Path(source)
        return p if p.suffix == ".ipynb" and p.exists() else _chapter(source)
    import nbformat

    try:
        meta = nbformat.read(submission, as_version=4).metadata.get("refimpl_assignment", {})
        name = meta.get("name") if isinstance(meta, dict) else None
    except Exception:  # noqa: BLE001 - an unreadable submission is graded (0), not refused
        name = None
    name = name or submission.stem.split("-")[0]
    return _chapter(name)


def _cmd_make(args) -> int:
    from refimpl.assignment import AssignmentError, make_assignment

    try:
        nb = _chapter(args.chapter)
    except ValueError as err:
        return _fail(str(err))
    out = Path(args.out)
    try:
        info = make_assignment(nb, out)
    except AssignmentError as err:
        return _fail(f"{nb.name}: {err}")
    except OSError as err:
        return _fail(f"cannot write to --out {out}: {err}")
    print(f"{info['name']}: {len(info['questions'])} autograded questions, "
          f"{info['max_score']:g} points, {len(info['written'])} written answers")
    for f in info["files"]:
        print(f"  {out / f}")
    return 0


def _cmd_grade(args) -> int:
    from refimpl.assignment import AssignmentError, format_table, grade_notebook

    sub = Path(args.submission)
    if not sub.is_file():
        return _fail(f"no such submission file: {sub}")
    if args.timeout <= 0:
        return _fail(f"--timeout must be a positive number of seconds per cell, got "
                     f"{args.timeout}")
    try:
        source = _source_for(sub, args.source)
    except ValueError as err:
        return _fail(f"cannot find the instructor notebook for {sub.name}: {err}; name it with "
                     f"--source")
    try:
        report = grade_notebook(sub, source, timeout=args.timeout, quick=not args.full,
                                kernel_manager_class=quiet_kernel_manager_class())
    except AssignmentError as err:
        return _fail(f"{source.name}: {err}")
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"{sub.name} graded against {source.name}")
        print(format_table(report))
    return 0


def add_parser(sub) -> None:
    """Add ``assignment make`` / ``assignment grade`` to the ``refimpl`` sub-parsers."""
    a = sub.add_parser("assignment", help="make student versions of a chapter, grade them",
                       description="Course assignments from the chapter notebooks (see "
                                   "docs/teaching.md).")
    asub = a.add_subparsers(dest="action", required=True, metavar="ACTION",
                            help="make: write a student version and its autograder; grade: "
                                 "score a submission")
    m = asub.add_parser("make", help="write the student notebook, the autograder tests and an "
                                     "otter-grader layout",
                        description="From chapters/NN_name.ipynb write OUT/student (hand-out "
                                    "notebook, visible otter tests), OUT/autograder (instructor "
                                    "notebook, pytest autograder, otter tests with hidden tests) "
                                    "and OUT/README.md.")
    m.add_argument("chapter", metavar="CHAPTER",
                   help="chapter number (04), file stem (04_distillation) or part of the name")
    m.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    m.set_defaults(func=_cmd_make)
    g = asub.add_parser("grade", help="execute a submission headless and score each question",
                        description="Run SUBMISSION.ipynb in a fresh kernel with a time limit "
                                    "per cell, run the visible and hidden tests of each question "
                                    "and print a score table. Exit status 0 whenever grading "
                                    "completed.")
    g.add_argument("submission", metavar="SUBMISSION.ipynb",
                   help="the student's notebook (it is executed in a fresh kernel, not modified)")
    g.add_argument("--source", default=None, metavar="NOTEBOOK",
                   help="the instructor notebook (a path, or a chapter name); default: from the "
                        "submission's metadata")
    g.add_argument("--json", action="store_true",
                   help="print JSON (score, max_score, questions) instead of the table")
    g.add_argument("--timeout", type=int, default=600, metavar="SECONDS",
                   help="seconds allowed per cell (default: %(default)s)")
    g.add_argument("--full", action="store_true",
                   help="run the chapter at full sizes (default: REFIMPL_QUICK=1)")
    g.set_defaults(func=_cmd_grade)


def main(args) -> int:
    """Entry point of ``refimpl assignment`` (dispatches on ``args.func``)."""
    return int(args.func(args) or 0)
