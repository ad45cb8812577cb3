"""Every chapter notebook is committed exactly as ``nbstripout`` would leave it (CI runs
``nbstripout --verify``; this test catches the same thing locally)."""

import glob
import os
import subprocess
import sys

import pytest

NOTEBOOKS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "chapters", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p) for p in NOTEBOOKS])
def test_notebook_is_stripped(path):
    exe = os.path.join(os.path.dirname(sys.executable), "nbstripout")
    if not os.path.exists(exe):
        if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
            pytest.fail("nbstripout is not installed (it is in the test extra)")
        pytest.skip("nbstripout not installed")
    r = subprocess.run([exe, "--verify", path], capture_output=True, text=True)
    assert r.returncode == 0, (f"{os.path.basename(path)} is not stripped; run "
                               f"`nbstripout {path}`\n{r.stdout}{r.stderr}")


def test_chapter_one_exists():
    assert any(p.endswith("01_networks.ipynb") for p in NOTEBOOKS)
