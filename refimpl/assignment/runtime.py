"""What the generated pytest autograder needs at run time: run a notebook's code in this process
and call a test function with the notebook variables it reads.

``refimpl assignment grade`` runs submissions in a Jupyter kernel instead (a time limit per cell,
a crash cannot take the grader down); this module is for ``python -m pytest
autograder/test_NN_name.py``, where the notebook runs once per test module.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import traceback
from pathlib import Path

__all__ = ["execute_notebook", "call_with_env"]


def _code_of(source: str) -> str:
    """Cell source without IPython magics and shell escapes (``%...``, ``!...``)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.split("\n"))


def execute_notebook(path, skip_grade_ids=()) -> dict:
    """Run the code cells of a notebook in a fresh namespace, in the notebook's folder.

    Parameters
    ----------
    path : str or Path
        The ``.ipynb`` file.
    skip_grade_ids : iterable of str
        nbgrader ``grade_id`` of cells not to run (the test cells: the autograder runs its own
        copy of the tests).

    Returns
    -------
    dict
        The notebook's global variables. A cell that raises is recorded (its traceback in
        ``env["__cell_errors__"]``, a list of ``(cell index, text)``) and execution goes on, so
        a broken answer costs only the questions that read what it should have defined.
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    skip = set(skip_grade_ids)
    env: dict = {"__name__": "__main__", "__file__": str(path)}
    errors: list = []
    old = Path.cwd()
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.chdir(path.parent)
    try:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in skip:
                continue
            try:
                with contextlib.redirect_stdout(None):
                    exec(compile(_code_of(cell.source), f"<{path.name} cell {i}>", "exec"), env)
            except (Exception, SystemExit):  # noqa: BLE001 - recorded; tests that need it fail
                errors.append((i, traceback.format_exc(limit=3)))
    finally:
        os.chdir(old)
    env["__cell_errors__"] = errors
    return env


def call_with_env(fn, env: dict):
    """Call ``fn`` with ``env[name]`` for each of its parameter names (otter-grader's rule for
    exception-based tests; a parameter named ``env`` gets the whole dict). A name the notebook
    never defined raises ``NameError`` naming it."""
    kwargs = {}
    for name in inspect.signature(fn).parameters:
        if name == "env":
            kwargs[name] = env
        elif name in env:
            kwargs[name] = env[name]
        else:
            raise NameError(f"the notebook defines no {name!r} (a cell above raised, or the "
                            f"answer was not written)")
    return fn(**kwargs)
