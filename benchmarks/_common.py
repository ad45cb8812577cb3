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
* :func:`roofline` — the machine's limits, measured in the same run: memory bandwidth (a
  STREAM-like copy (NumPy ``copyto``) and triad ``a = b + s·c`` (a Numba ``prange`` loop) on
  float64 arrays of 64 MiB each quick / 128 MiB full, far beyond the 32 MiB LLC; best of
  several passes; STREAM's byte counts, 2 and 3 arrays per element, no write-allocate) and
  float32 GEMM throughput (BLAS ``sgemm`` on a 2048² product, best of several, ``2 n³``
  flops). :func:`machine_info` — CPU model, ISA flags, BLAS kernel,
  thread counts.
* :func:`torch_or_none` — the optional peer library: torch with the same thread count as
  Numba, or ``None`` and a note ("torch not installed") in the printed output and the record.
* :func:`record` — one measured case of a benchmark, with its peers, the work it did (bytes
  moved and/or flops), the limit that applies (memory- or compute-bound) and the achieved
  fraction of that limit; returned as a dict and, when the runner asks for it, appended to
  the run's record file (the convention below). :func:`print_cases` prints them.

The record convention (``refimpl bench --json PATH``): the runner measures :func:`roofline`
and :func:`machine_info` once (``python benchmarks/_common.py --machine``), then runs every
``bench_*.py`` with two environment variables set: ``REFIMPL_BENCH_ROOFLINE`` (the roofline
as JSON, so each script uses the same limits instead of re-measuring) and
``REFIMPL_BENCH_RECORD`` (a file path). Every :func:`record` / :func:`note_missing_peer`
call appends one JSON object per line to that file; the runner collects the lines into one
JSON document (see ``refimpl/cli/bench.py``). A script run on its own measures the roofline
itself at its first :func:`record` and only prints. A new benchmark joins by calling
:func:`record` once per case it wants in the record (``headline=True`` for the README table).

Every benchmark prints ratios against the honest baseline measured in the same run, and
against the best peer (torch, scipy, TensorLy) where one exists.
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


# ----------------------------------------------------------------------- machine and roofline
RECORD_ENV = "REFIMPL_BENCH_RECORD"
ROOFLINE_ENV = "REFIMPL_BENCH_ROOFLINE"
#: SIMD / bit-manipulation flags worth knowing when reading the kernels' numbers.
ISA_FLAGS = ("sse4_2", "popcnt", "avx", "avx2", "fma", "bmi2", "f16c", "avx512f", "avx512dq",
             "avx512cd", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512vbmi",
             "avx512_vbmi2", "avx512_bitalg", "avx512_vpopcntdq", "avx_vnni", "amx_tile",
             "amx_int8", "amx_bf16", "sve", "asimd", "neon")


def cpu_info() -> dict:
    """CPU model and ISA flags: from ``/proc/cpuinfo`` (Linux), else LLVM's host features
    (llvmlite, which Numba compiles for); ``llvm_cpu`` is the CPU name LLVM targets."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "Hardware") and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    llvm_cpu = None
    try:
        import llvmlite.binding as llvm

        llvm_cpu = llvm.get_host_cpu_name()
        if not flags:
            flags = {k.replace("avx512bf16", "avx512_bf16") for k, v in
                     llvm.get_host_cpu_features().items() if v}
    except Exception:  # noqa: BLE001 - informational only
        pass
    return {"model": model, "llvm_cpu": llvm_cpu,
            "isa_flags": [f for f in ISA_FLAGS if f in flags], "llc_bytes": llc_bytes()}


def llc_bytes() -> int | None:
    """Size of the last-level cache in bytes (Linux sysfs), or None."""
    best = None
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (d / "type").read_text().strip() == "Instruction":
                continue
            size = (d / "size").read_text().strip().upper()
            level = int((d / "level").read_text())
        except (OSError, ValueError):
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        value = int(size.rstrip("KMG")) * mult
        if best is None or level > best[0]:
            best = (level, value)
    return best[1] if best else None


def blas_kernel(env: dict | None = None) -> str:
    """The BLAS kernel NumPy's BLAS runs, e.g. ``"openblas 0.3.31 SkylakeX"``."""
    libs = (env or environment())["blas"]
    for lib in libs:
        if lib.get("user_api") == "blas":
            core = lib.get("architecture") or lib.get("coretype") or "?"
            return f"{lib.get('internal_api')} {lib.get('version')} {core}"
    return "unknown"


def machine_info() -> dict:
    """:func:`environment` plus :func:`cpu_info`, the BLAS kernel and the thread counts."""
    env = environment()
    blas_threads = [lib.get("num_threads") for lib in env["blas"]
                    if lib.get("user_api") == "blas"]
    return {**env, "cpu": cpu_info(), "blas_kernel": blas_kernel(env),
            "threads": {"numba": env["numba_threads"],
                        "blas": blas_threads[0] if blas_threads else None,
                        "torch": _torch_threads()}}


def _torch_threads():
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


_TRIAD = None


def _triad_kernel():
    """``a[i] = b[i] + s * c[i]`` over all Numba threads (compiled once per process)."""
    global _TRIAD
    if _TRIAD is None:
        import numba

        @numba.njit(parallel=True, cache=False)
        def triad(a, b, c, s):  # pragma: no cover - compiled
            for i in numba.prange(a.size):
                a[i] = b[i] + s * c[i]

        _TRIAD = triad
    return _TRIAD


def roofline(quick: bool = True, *, n_elements: int | None = None, gemm_n: int | None = None,
             passes: int | None = None) -> dict:
    """The machine's limits, measured now: memory bandwidth in GB/s and float32 GEMM GFLOP/s.

    ``copy_gbs``: ``np.copyto(b, a)`` on float64 arrays of ``n_elements`` (default 8 Mi = 64
    MiB quick, 16 Mi = 128 MiB full: each far beyond a 32 MiB LLC), 16 bytes per element;
    ``triad_gbs``: ``a = b + s * c`` by a Numba ``prange`` loop (all Numba threads), 24 bytes
    per element; the best of ``passes`` passes each (STREAM's convention: write-allocate
    traffic not counted). ``memory_gbs`` is the larger of the two, the bandwidth limit a
    memory-bound kernel is compared with. ``sgemm_gflops``: ``2 n³ / t`` of a float32
    ``A @ B`` with ``n = gemm_n`` (default 2048) through NumPy's BLAS, best of
    ``passes``. ``balance`` = flops per byte at which the two limits meet. Small sizes are for
    tests only (the numbers then measure caches, not memory).
    """
    import numpy as np

    n = int((1 << 23 if quick else 1 << 24) if n_elements is None else n_elements)
    g = int(2048 if gemm_n is None else gemm_n)
    passes = int((10 if quick else 20) if passes is None else passes)
    if n < 1 or g < 1 or passes < 1:
        raise ValueError("n_elements, gemm_n and passes must be positive")
    a = np.ones(n)
    b = np.full(n, 2.0)
    c = np.full(n, 0.5)
    triad = _triad_kernel()
    triad(a[:16], b[:16], c[:16], 3.0)  # compile outside the timing

    def best(fn):
        fn()
        ts = []
        for _ in range(passes):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return max(min(ts), 1e-9)

    t_copy = best(lambda: np.copyto(b, a))
    t_triad = best(lambda: triad(a, b, c, 3.0))
    a = b = c = None  # free 3 x 64-128 MiB before the GEMM
    rng = np.random.default_rng(0)
    A = rng.standard_normal((g, g), dtype=np.float32)
    B = rng.standard_normal((g, g), dtype=np.float32)
    t_gemm = best(lambda: A @ B)
    copy_gbs = 16 * n / t_copy / 1e9
    triad_gbs = 24 * n / t_triad / 1e9
    sgemm = 2 * g ** 3 / t_gemm / 1e9
    mem = max(copy_gbs, triad_gbs)
    return {"copy_gbs": copy_gbs, "triad_gbs": triad_gbs, "memory_gbs": mem,
            "sgemm_gflops": sgemm, "balance_flops_per_byte": sgemm / mem,
            "array_mib": 8 * n / 2 ** 20, "gemm_n": g, "passes": passes,
            "method": "copy: np.copyto float64 (16 B/elem); triad: numba prange a=b+s*c "
                      "(24 B/elem); sgemm: NumPy float32 A @ B (2 n^3 flops); best of passes"}


_ROOF: dict | None = None


def current_roofline(quick: bool = True) -> dict:
    """The roofline of this run: the runner's (``REFIMPL_BENCH_ROOFLINE``) or measured once."""
    global _ROOF
    if _ROOF is None:
        given = os.environ.get(ROOFLINE_ENV)
        _ROOF = json.loads(given) if given else roofline(quick)
        print_roofline(_ROOF)
    return _ROOF


def print_roofline(roof: dict) -> None:
    print(f"# roofline (this run{', from the runner' if os.environ.get(ROOFLINE_ENV) else ''}): memory {roof['memory_gbs']:.1f} GB/s (copy "
          f"{roof['copy_gbs']:.1f}, triad {roof['triad_gbs']:.1f}; {roof['array_mib']:.0f} "
          f"MiB arrays), float32 GEMM {roof['sgemm_gflops']:.1f} GFLOP/s (n = "
          f"{roof['gemm_n']}); balance {roof['balance_flops_per_byte']:.1f} flop/byte")


def torch_or_none(threads: int | None = None):
    """``torch`` with ``threads`` intra-op threads (default: Numba's count, the kernels'), or
    ``None`` when it is not installed (then a line says so; the record notes it)."""
    try:
        import torch
    except ImportError:
        print("# torch not installed: the torch peers are skipped (pip install torch, or the "
              "'test' extra)")
        return None
    if threads is None:
        import numba

        threads = numba.config.NUMBA_NUM_THREADS
    torch.set_num_threads(int(threads))
    return torch


def _emit(obj: dict) -> None:
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(obj, default=_json_default) + "\n")


def _json_default(o):
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def note_missing_peer(benchmark: str, peer: str, reason: str) -> dict:
    """Record (and print) that a peer could not be measured, e.g. torch not installed."""
    obj = {"type": "missing_peer", "benchmark": benchmark, "peer": peer, "reason": reason}
    print(f"# {benchmark}: peer {peer} not measured: {reason}")
    _emit(obj)
    return obj


def _secs(t) -> tuple[float, float]:
    """``(best, median)`` seconds from a :class:`Timing`, a ``(median, best)``-free float or a
    ``(best, median)`` pair."""
    if isinstance(t, Timing):
        return float(t.best), float(t.median)
    if isinstance(t, (tuple, list)):
        return float(t[0]), float(t[1])
    return float(t), float(t)


def record(benchmark: str, case: str, kernel: str, time, *, peers: dict | None = None,
           numpy_baseline: str | None = None, bytes_moved: float | None = None,
           flops: float | None = None, bound: str | None = None, params: dict | None = None,
           headline: bool = False, note: str | None = None, quick: bool = True) -> dict:
    """One measured case: refimpl's ``kernel`` took ``time`` (a :class:`Timing`, seconds, or
    ``(best, median)`` seconds); ``peers`` maps each peer's name to its time (same forms).

    Ratios are ``t_peer / t_kernel`` (> 1: refimpl faster), from best times (``ratio_*``) and
    from medians (``ratio_*_median``): against every peer, against ``numpy_baseline`` (the
    name of the NumPy/BLAS peer) and against the fastest peer (``best_peer``). The work done
    gives the achieved rate: ``bytes_moved`` (the compulsory traffic: every operand read once,
    the output written once) → GB/s; ``flops`` → GFLOP/s. ``bound`` (``"memory"`` or
    ``"compute"``; default from the arithmetic intensity against the machine's balance point)
    picks the limit; ``fraction_of_limit`` = achieved / limit, from :func:`current_roofline`.
    Appended to the run's record when ``REFIMPL_BENCH_RECORD`` is set; returned.
    """
    import math

    best, median = _secs(time)
    if not (best > 0 and math.isfinite(best)):
        raise ValueError(f"time must be positive and finite, got {best}")
    peers = peers or {}
    roof = current_roofline(quick)
    out_peers = {}
    for name, t in peers.items():
        if t is None:
            continue
        pb, pm = _secs(t)
        out_peers[name] = {"time_s": pb, "median_s": pm, "ratio": pb / best,
                           "ratio_median": pm / median}
    best_peer = min(out_peers, key=lambda k: out_peers[k]["time_s"]) if out_peers else None
    if bound is None:
        if flops and bytes_moved:
            bound = ("compute" if flops / bytes_moved >= roof["balance_flops_per_byte"]
                     else "memory")
        else:
            bound = "compute" if flops else "memory"
    if bound not in ("memory", "compute"):
        raise ValueError(f"bound must be 'memory' or 'compute', got {bound!r}")
    gbs = bytes_moved / best / 1e9 if bytes_moved else None
    llc = llc_bytes()
    if bound == "memory" and bytes_moved and llc and bytes_moved < llc:
        fits = (f"working set {bytes_moved / 2**20:.1f} MiB fits in the {llc / 2**20:.0f} MiB "
                "LLC: the DRAM bandwidth does not bound it between calls")
        note = f"{note}; {fits}" if note else fits
    gflops = flops / best / 1e9 if flops else None
    if bound == "memory":
        achieved, limit, unit = gbs, roof["memory_gbs"], "GB/s"
    else:
        achieved, limit, unit = gflops, roof["sgemm_gflops"], "GFLOP/s"
    obj = {
        "type": "case", "benchmark": benchmark, "case": case, "kernel": kernel,
        "time_s": best, "median_s": median, "params": params or {},
        "peers": out_peers, "best_peer": best_peer,
        "ratio_best_peer": out_peers[best_peer]["ratio"] if best_peer else None,
        "ratio_best_peer_median": out_peers[best_peer]["ratio_median"] if best_peer else None,
        "numpy_baseline": numpy_baseline if numpy_baseline in out_peers else None,
        "ratio_numpy": out_peers[numpy_baseline]["ratio"] if numpy_baseline in out_peers
        else None,
        "bytes": bytes_moved, "flops": flops, "gb_per_s": gbs, "gflop_per_s": gflops,
        "bound": bound, "limit": limit, "limit_unit": unit,
        "fraction_of_limit": achieved / limit if achieved is not None else None,
        "headline": bool(headline), "note": note,
    }
    _emit(obj)
    return obj


def print_cases(cases: Sequence[dict]) -> None:
    """One line per recorded case: time, ratio to the best peer and to NumPy, achieved rate as
    a fraction of the machine's limit, memory- or compute-bound."""
    rows = []
    for c in cases:
        rate = (f"{c['gb_per_s']:.1f} GB/s" if c["bound"] == "memory" and c["gb_per_s"]
                else f"{c['gflop_per_s']:.1f} GFLOP/s" if c["gflop_per_s"] else "")
        frac = c["fraction_of_limit"]
        rows.append({
            "case": c["case"], "kernel": c["kernel"], "ms": c["time_s"] * 1e3,
            "best peer": c["best_peer"] or "-",
            "x best peer": c["ratio_best_peer"] if c["ratio_best_peer"] else "-",
            "x numpy": c["ratio_numpy"] if c["ratio_numpy"] else "-",
            "achieved": rate,
            "of limit": (f"{frac:.0%}" + (" (in LLC)" if "LLC" in (c["note"] or "") else "")
                         if frac is not None else "-"),
            "bound": c["bound"]})
    print_table(rows, floatfmt=".3g")


if __name__ == "__main__":
    # the runner's probe: machine info and roofline as one JSON line on stdout
    if "--machine" in sys.argv[1:]:
        info = machine_info()
        info["roofline"] = roofline(quick="--quick" in sys.argv[1:])
        print(json.dumps(info, default=_json_default))
