"""Execute every chapter notebook end to end (one test per ``chapters/*.ipynb``) and check that
every notebook is committed stripped of outputs.

Notebooks run with nbclient on the ``python3`` kernel, in ``chapters/`` as the working
directory, with ``REFIMPL_QUICK=1`` (small sizes), ``REFIMPL_PROGRESS=0`` and
Jupyter's inline matplotlib backend, on the quiet kernel manager of ``refimpl chapters``
(:func:`refimpl.cli.chapters.quiet_kernel_manager_class`: no Jupyter transport
warnings). With ``REFIMPL_EXECUTED_DIR`` set (``.ci/run`` sets it), each executed notebook is
written there for ``refimpl book --executed``. Every numeric statement in a notebook is a
``refimpl.check`` call that raises when it does not verify, so a cell error is a failed verification: the test shows the
failing cell's source and traceback. CI additionally runs ``nbstripout --verify``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
NOTEBOOKS = sorted(CHAPTERS.glob("*.ipynb"))
# Jupyter's inline backend (headless, Agg underneath): plots become image/png outputs, which the
# executed copies keep for the book (REFIMPL_EXECUTED_DIR)
NOTEBOOK_ENV = {"REFIMPL_QUICK": "1", "REFIMPL_PROGRESS": "0",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
TIMEOUT = 900  # seconds per cell

pytestmark = pytest.mark.notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError

    from refimpl.cli.chapters import quiet_kernel_manager_class

    for k, v in NOTEBOOK_ENV.items():
        monkeypatch.setenv(k, v)  # the kernel inherits this process's environment
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                     kernel_manager_class=quiet_kernel_manager_class(),
                                     resources={"metadata": {"path": str(CHAPTERS)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        # the error text carries the failing cell's source and the kernel's traceback
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # drop ANSI colours
        pytest.fail(f"{path.name}: a cell raised\n{text}", pytrace=False)
    print(f"{path.name}: executed in {time.perf_counter() - t0:.1f} s")
    keep = os.environ.get("REFIMPL_EXECUTED_DIR")
    if keep:  # .ci/run keeps the executed notebooks for `refimpl book --executed` (issue #20)
        Path(keep).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, Path(keep) / path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} carry outputs or an execution count; "
                       f"strip them with `nbstripout {path}`")


def test_notebook_names_follow_the_chapter_scheme():
    bad = [p.name for p in NOTEBOOKS if not (p.stem[:2].isdigit() and p.stem[2] == "_")]
    assert not bad, f"notebooks must be named chapters/NN_name.ipynb, got {bad}"
