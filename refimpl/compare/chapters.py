"""``refimpl chapters``: execute the chapter notebooks headless, optionally render HTML.

Each ``chapters/NN_name.ipynb`` is run with nbclient on the ``python3`` kernel in ``chapters/``
(its own directory), and its time and pass/fail are reported. Every numeric statement in a
notebook is a ``refimpl.check`` call that raises when it does not verify, so "passed" means
every equation and claim cell in it ran and verified. The committed notebooks are never
modified: executed copies are only rendered to ``chapters/_build/NN_name.html`` with
``--html`` (needs nbconvert: ``pip install nbconvert``, or the ``notebooks`` extra).

Notebook selection: ``refimpl chapters 02`` (number prefix), ``refimpl chapters 02_pruning``
(file stem) or ``refimpl chapters pruning`` (part of the name); no names runs them all.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

__all__ = ["find_chapters_dir", "select_notebooks", "run_notebook", "main"]


def find_chapters_dir() -> Path | None:
    """``chapters/`` of the source checkout refimpl was imported from, else of the cwd."""
    import refimpl

    candidates = [Path(refimpl.__file__).resolve().parents[1] / "chapters",
                  Path.cwd() / "chapters"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def select_notebooks(chapters: Path, names) -> list[Path]:
    """Notebooks in ``chapters`` matching ``names`` (all when empty); raises on an unknown name."""
    all_nbs = sorted(chapters.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return all_nbs
    chosen: list[Path] = []
    for name in names:
        stem = Path(str(name)).stem
        if stem.isdigit():
            hits = [p for p in all_nbs if p.stem.split("_")[0] == stem.zfill(2)]
        else:
            hits = [p for p in all_nbs if p.stem == stem] or \
                   [p for p in all_nbs if stem.lower() in p.stem.lower()]
        if not hits:
            raise ValueError(f"no chapter notebook matches {name!r}; available: "
                             f"{[p.stem for p in all_nbs]}")
        chosen += [p for p in hits if p not in chosen]
    return chosen


def run_notebook(path: Path, timeout: int = 1800, html: bool = False) -> dict:
    """Execute one notebook; return ``{"name", "passed", "seconds", "error", "html"}``."""
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    error = ""
    try:
        client.execute()
    except CellExecutionError as err:
        error = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # drop ANSI colours
    except Exception as err:  # kernel died, timeout, ...
        error = f"{type(err).__name__}: {err}"
    out = {"name": path.name, "passed": not error, "seconds": time.perf_counter() - t0,
           "error": error, "html": None}
    if html:
        out["html"] = render_html(nb, path)
    return out


def render_html(nb, path: Path) -> str | None:
    """Render an executed notebook to ``chapters/_build/<stem>.html``; None without nbconvert."""
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    body, _ = HTMLExporter().from_notebook_node(nb)
    build = path.parent / "_build"
    build.mkdir(exist_ok=True)
    target = build / f"{path.stem}.html"
    target.write_text(body, encoding="utf-8")
    return str(target)


def main(args) -> int:
    """Entry point of ``refimpl chapters`` (``args``: ``names``, ``html``, ``timeout``)."""
    chapters = find_chapters_dir()
    if chapters is None:
        print("refimpl chapters: no chapters/ folder found next to the refimpl package or in "
              "the current directory. The notebooks ship with the source repository: clone it "
              "and run `refimpl chapters` from the checkout.", file=sys.stderr)
        return 2
    try:
        notebooks = select_notebooks(chapters, getattr(args, "names", None) or [])
    except ValueError as err:
        print(f"refimpl chapters: {err}", file=sys.stderr)
        return 2
    if not notebooks:
        print(f"refimpl chapters: no notebooks in {chapters}", file=sys.stderr)
        return 2
    html = bool(getattr(args, "html", False))
    if html:
        try:
            import nbconvert  # noqa: F401
        except ImportError:
            print("refimpl chapters --html: HTML rendering needs nbconvert, which is not "
                  "installed (`pip install nbconvert`, or `pip install \".[notebooks]\"`); "
                  "executing without rendering.", file=sys.stderr)
            html = False
    os.environ.setdefault("REFIMPL_PROGRESS", "0")
    os.environ.setdefault("MPLBACKEND", "Agg")
    timeout = int(getattr(args, "timeout", 1800))
    results = []
    for path in notebooks:
        print(f"running {path.name} ...", flush=True)
        r = run_notebook(path, timeout=timeout, html=html)
        results.append(r)
        status = "passed" if r["passed"] else "FAILED"
        print(f"  {status} in {r['seconds']:.1f} s" + (f"  -> {r['html']}" if r["html"] else ""),
              flush=True)
        if r["error"]:
            lines = r["error"].strip().splitlines()
            print("    " + "\n    ".join(lines[-25:]))
    n_ok = sum(r["passed"] for r in results)
    print(f"\n{'notebook':<32} {'status':<7} {'seconds':>8}")
    for r in results:
        print(f"{r['name']:<32} {'ok' if r['passed'] else 'FAILED':<7} {r['seconds']:>8.1f}")
    print(f"\n{n_ok}/{len(results)} notebooks passed")
    return 0 if n_ok == len(results) else 1
