"""``refimpl chapters``: execute the chapter notebooks headless, optionally render HTML.

Each ``chapters/NN_name.ipynb`` is run with nbclient on the ``python3`` kernel in ``chapters/``
(its own directory), and its time and pass/fail are reported. Every numeric statement in a
notebook is a ``refimpl.check`` call that raises when it does not verify, so "passed" means
every equation and claim cell in it ran and verified. The committed notebooks are never
modified: executed copies are only rendered to ``chapters/_build/NN_name.html`` with
``--html`` (needs nbconvert: ``pip install nbconvert``, or the ``notebooks`` extra).

Notebook selection: ``refimpl chapters 02`` (number prefix), ``refimpl chapters 02_pruning``
(file stem) or ``refimpl chapters pruning`` (part of the name); no names runs them all.

The kernel is started by :func:`quiet_kernel_manager_class` (shared with ``tests/test_notebooks.py``), so
that a headless run prints nothing from the Jupyter transport: ipykernel ≥ 7 warns "Kernel is
running over TCP without encryption" on every start unless the manager provisions CurveZMQ
keys (``transport_encryption="auto"``, which the ``python3`` kernelspec declares it supports)
or the transport is IPC; on Python ≥ 3.11 the kernel also gets ``-Xfrozen_modules=off`` (as
``ipykernel install`` writes it) so that debugpy does not warn about frozen modules.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from refimpl.cli._paths import checkout_dir

__all__ = ["find_chapters_dir", "select_notebooks", "quiet_kernel_manager_class",
           "run_notebook", "main"]


def find_chapters_dir() -> Path | None:
    """``chapters/`` of the source checkout refimpl was imported from, else of the cwd."""
    return checkout_dir("chapters")


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


def quiet_kernel_manager_class():
    """The ``AsyncKernelManager`` subclass for headless runs: pass it to nbclient as
    ``NotebookClient(nb, kernel_manager_class=quiet_kernel_manager_class(), ...)`` (nbclient
    then owns the manager and shuts the kernel down after the run).

    * Transport: CurveZMQ keys provisioned by the manager when pyzmq has Curve and the
      kernelspec declares ``supported_encryption: curve`` (ipykernel's does); otherwise the IPC
      transport on POSIX, with its sockets in Jupyter's private runtime folder. Either way the
      kernel does not print its "running over TCP without encryption" warning, and the channels
      are private to this user.
    * On Python ≥ 3.11 the kernel's interpreter gets ``-Xfrozen_modules=off`` when its
      kernelspec lacks it — the flag ``ipykernel install`` itself writes — so debugpy's "frozen
      modules" warning cannot appear.
    """
    global _QUIET_KM
    if _QUIET_KM is not None:
        return _QUIET_KM
    import zmq
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelSpecManager(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            spec = super().get_kernel_spec(kernel_name)
            argv = list(spec.argv)
            if (sys.version_info >= (3, 11) and argv and "python" in Path(argv[0]).name
                    and not any(a.startswith("-Xfrozen_modules") for a in argv)):
                spec.argv = [argv[0], "-Xfrozen_modules=off", *argv[1:]]
            return spec

    class QuietKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            kw.setdefault("kernel_spec_manager", QuietKernelSpecManager())
            super().__init__(**kw)
            declared = self.kernel_spec.metadata.get("supported_encryption") or []
            declared = [declared] if isinstance(declared, str) else list(declared)
            if zmq.has("curve") and "curve" in [str(d).lower() for d in declared]:
                self.transport_encryption = "auto"
            elif os.name == "posix":  # sockets as files in Jupyter's private runtime folder
                import uuid

                from jupyter_core.paths import jupyter_runtime_dir

                Path(jupyter_runtime_dir()).mkdir(mode=0o700, parents=True, exist_ok=True)
                self.transport = "ipc"
                self.ip = str(Path(jupyter_runtime_dir())
                              / f"refimpl-{uuid.uuid4().hex[:12]}-ipc")

    _QUIET_KM = QuietKernelManager
    return _QUIET_KM


_QUIET_KM = None


def run_notebook(path: Path, timeout: int = 1800, html: bool = False) -> dict:
    """Execute one notebook; return ``{"name", "passed", "seconds", "error", "html"}``."""
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     kernel_manager_class=quiet_kernel_manager_class(),
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
    timeout = int(getattr(args, "timeout", 1800))
    if timeout <= 0:
        print(f"refimpl chapters: --timeout must be a positive number of seconds per cell, "
              f"got {timeout}", file=sys.stderr)
        return 2
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
    # the kernels inherit this: Jupyter's inline backend (headless) turns plots into outputs,
    # which --html renders
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
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
    if n_ok < len(results):
        print(f"refimpl chapters: {len(results) - n_ok} of {len(results)} notebooks failed",
              file=sys.stderr)
    return 0 if n_ok == len(results) else 1
