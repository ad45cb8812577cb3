"""Shared helpers for the benchmark scripts in ``benchmarks/`` (scripts, not tests).

* :func:`time_fn` — robust timing: warm-up calls (JIT compilation, caches), then the median of
  ``repeat`` samples, each sample looping enough calls to last at least ``min_sample`` seconds.
* :func:`print_environment` — which BLAS NumPy and SciPy actually use, read from
  ``threadpoolctl.threadpool_info()`` (internal_api, version, num_threads, architecture /
  coretype), whether ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` are set (they slow OpenBLAS
  down on this machine: take headline numbers with ``env -u OPENBLAS_CORETYPE -u
  OPENBLAS_L2_SIZE``), Numba's thread count, the CPU count and the load average (other
  processes on a shared machine distort multi-threaded timings).
* :func:`print_table` — an aligned text table; :func:`ratio` — a speed-up ``baseline / ours``.
* :func:`write_json` — optionally store a run in ``benchmarks/results/`` (git-ignored).

Every benchmark prints ratios against the honest baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass
class Timing:
    """Seconds per call: best (minimum), median and inter-quartile range over the samples.

    On a shared machine another process can deschedule one of a multi-threaded call's threads
    for a whole scheduler slice (milliseconds); the minimum is the undisturbed time, the median
    shows how often that happened.
    """

    best: float
    median: float
    q25: float
    q75: float
    calls_per_sample: int
    samples: int

    def __str__(self) -> str:
        return (f"best {format_seconds(self.best)}, median {format_seconds(self.median)} "
                f"(IQR {format_seconds(self.q25)}–{format_seconds(self.q75)})")


#: Seconds to idle before each measurement. After a call, OpenBLAS's worker threads spin for
#: ~2**28 cycles (OPENBLAS_THREAD_TIMEOUT, ~0.1 s) and OpenMP workers spin too; a Numba
#: ``prange`` kernel timed right after a BLAS call then fights a spinning thread for the second
#: core and loses whole 4 ms scheduler ticks. Idling first measures each library in its own
#: steady state (mixing them in one pipeline is a real cost this does not show).
SETTLE = 0.3


def time_fn(fn: Callable[[], object], *, repeat: int = 15, warmup: int = 2,
            min_sample: float = 2e-3, settle: float = SETTLE, budget: float = 0.15) -> Timing:
    """Time ``fn()``: ``warmup`` calls, then samples; returns seconds per call.

    Calls of 20 µs or more are timed one by one, ``max(repeat, budget / t_call)`` times (at
    most 200), so a sample hit by a scheduler stall does not hide the undisturbed ones. Faster
    calls are looped ``n`` times per sample, ``n`` chosen so a sample lasts ``min_sample``.
    Ratios in the benchmarks use ``best`` (see :class:`Timing`); ``median`` is reported too.
    """
    time.sleep(settle)
    for _ in range(max(warmup, 1)):
        fn()
    t0 = time.perf_counter()
    fn()
    t_call = time.perf_counter() - t0
    if t_call >= 20e-6:
        n = 1
        repeat = max(repeat, min(200, int(budget / t_call)))
    else:
        n = 1
        while True:
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            dt = time.perf_counter() - t0
            if dt >= min_sample or n >= 1 << 20:
                break
            n = max(n * 2, int(n * min_sample / max(dt, 1e-9)) + 1)
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else samples * 3
    return Timing(min(samples), statistics.median(samples), q[0], q[-1], n, repeat)


def format_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def ratio(baseline: float, ours: float) -> float:
    """Speed-up of ``ours`` over ``baseline`` (> 1: ours is faster)."""
    return baseline / ours if ours > 0 else float("inf")


def blas_info() -> list[dict]:
    """The BLAS / OpenMP libraries loaded in this process, as threadpoolctl reports them."""
    import numpy as np  # noqa: F401  (load NumPy's BLAS before asking)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    return threadpool_info()


def environment() -> dict:
    """Everything needed to interpret the timings, as a JSON-able dict."""
    import numba
    import numpy as np
    import scipy

    libs = []
    for lib in blas_info():
        libs.append({k: lib.get(k) for k in ("user_api", "internal_api", "version",
                                             "num_threads", "architecture", "threading_layer",
                                             "prefix", "coretype") if lib.get(k) is not None})
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg": load,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "openblas_env": {v: os.environ.get(v) for v in OPENBLAS_VARS},
        "blas": libs,
    }


def print_environment(env: dict | None = None) -> dict:
    """Print :func:`environment` in a few lines and return it."""
    env = env or environment()
    print(f"# {env['date_utc']}  python {env['python']} on {env['machine']}, "
          f"{env['cpu_count']} CPUs, load average {env['loadavg']}")
    print(f"# numpy {env['numpy']}, scipy {env['scipy']}, numba {env['numba']} "
          f"({env['numba_threads']} threads)")
    for lib in env["blas"]:
        core = lib.get("coretype") or lib.get("architecture") or "?"
        print(f"# {lib.get('user_api')}: {lib.get('internal_api')} {lib.get('version')}, "
              f"{lib.get('num_threads')} threads, kernel {core}  [{lib.get('prefix')}]")
    set_vars = {k: v for k, v in env["openblas_env"].items() if v is not None}
    if set_vars:
        print(f"# WARNING: {set_vars} set: OpenBLAS may run a slower kernel; headline numbers "
              f"are taken with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`")
    else:
        print("# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset (OpenBLAS picks its kernel)")
    return env


def print_table(rows: Sequence[dict], columns: Sequence[str] | None = None,
                floatfmt: str = ".2f") -> None:
    """Print ``rows`` (dicts) as an aligned table; floats use ``floatfmt``."""
    if not rows:
        print("(no rows)")
        return
    columns = list(columns or rows[0].keys())

    def cell(v):
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def write_json(name: str, payload: dict) -> Path:
    """Write ``payload`` to ``benchmarks/results/<name>-<UTC timestamp>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=1, default=float))
    print(f"# wrote {path}")
    return path


def parse_args(description: str, argv=None, extra=()) -> argparse.Namespace:
    """Common flags: ``--quick`` (fewer sizes), ``--json`` (write results), ``--repeat``;
    ``extra``: further ``(flag, help)`` boolean flags."""
    p = argparse.ArgumentParser(description=description)
    for flag, help_ in extra:
        p.add_argument(flag, action="store_true", help=help_)
    p.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    p.add_argument("--json", action="store_true", help="write results to benchmarks/results/")
    p.add_argument("--repeat", type=int, default=None, help="timing samples per measurement")
    return p.parse_args(sys.argv[1:] if argv is None else argv)
