"""``refimpl bench``: run the benchmark scripts ``benchmarks/bench_*.py`` of a source checkout.

The benchmarks are scripts, not part of the installed package: ``refimpl bench`` finds the
``benchmarks/`` folder next to the ``refimpl`` package (an editable install or a checkout) or in
the current directory, and runs each selected script in a subprocess with the same Python,
forwarding ``--quick``. Installed from a wheel there is no ``benchmarks/``: the command says so
and exits with status 2.

Speed numbers on machines that set ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` understate
OpenBLAS; the command only warns — take headline numbers with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE refimpl bench``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from refimpl.cli._paths import checkout_dir

__all__ = ["find_benchmarks_dir", "select_benchmarks", "main"]


def find_benchmarks_dir() -> Path | None:
    """``benchmarks/`` of the checkout refimpl was imported from, else of the cwd."""
    return checkout_dir("benchmarks", "bench_*.py")


def select_benchmarks(folder: Path, names) -> list[Path]:
    """Scripts matching ``names`` (``sparse``, ``bench_sparse`` or ``bench_sparse.py``)."""
    scripts = sorted(folder.glob("bench_*.py"))
    if not names:
        return scripts
    by_key = {p.stem.removeprefix("bench_"): p for p in scripts}
    chosen = []
    for name in names:
        key = Path(str(name)).stem.removeprefix("bench_")
        if key not in by_key:
            raise ValueError(f"no benchmark named {name!r}; available: {sorted(by_key)}")
        if by_key[key] not in chosen:
            chosen.append(by_key[key])
    return chosen


def main(args) -> int:
    """Entry point of ``refimpl bench`` (``args``: ``names``, ``quick``)."""
    folder = find_benchmarks_dir()
    if folder is None:
        print("refimpl bench: no benchmarks/ folder with bench_*.py scripts found next to the "
              "refimpl package or in the current directory. The benchmarks ship with the "
              "source repository, not the wheel: clone it, `pip install -e .`, and run "
              "`refimpl bench` there.", file=sys.stderr)
        return 2
    try:
        scripts = select_benchmarks(folder, getattr(args, "names", None) or [])
    except ValueError as err:
        print(f"refimpl bench: {err}", file=sys.stderr)
        return 2
    set_vars = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ]
    if set_vars:
        print(f"note: {', '.join(set_vars)} set; for headline numbers run "
              "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE refimpl bench`", flush=True)
    extra = ["--quick"] if getattr(args, "quick", False) else []
    results = []
    for script in scripts:
        print(f"\n=== {script.name} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, str(script), *extra], cwd=folder.parent).returncode
        results.append((script.name, rc, time.perf_counter() - t0))
    print(f"\n{'benchmark':<28} {'exit':>4} {'seconds':>8}")
    for name, rc, dt in results:
        print(f"{name:<28} {rc:>4} {dt:>8.1f}")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1
