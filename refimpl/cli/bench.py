"""``refimpl bench``: run the benchmark scripts ``benchmarks/bench_*.py`` of a source checkout.

The benchmarks are scripts, not part of the installed package: ``refimpl bench`` finds the
``benchmarks/`` folder next to the ``refimpl`` package (an editable install or a checkout) or in
the current directory, and runs each selected script in a subprocess with the same Python,
forwarding ``--quick``. Installed from a wheel there is no ``benchmarks/``: the command says so
and exits with status 2.

Speed numbers on machines that set ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` understate
OpenBLAS; the command only warns — take headline numbers with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE refimpl bench``.

One command, one record: ``refimpl bench --json PATH`` first runs the probe
``benchmarks/_common.py --machine`` (CPU model, ISA flags, BLAS kernel, thread counts, and the
roofline: STREAM-like memory bandwidth and float32 GEMM GFLOP/s, measured now), then every
selected script with ``REFIMPL_BENCH_ROOFLINE`` (the probe's roofline, so all scripts use the
same limits) and ``REFIMPL_BENCH_RECORD`` (a scratch file) in their environment, then probes
the roofline again (the record keeps the larger of the two probes of each limit, ``probes``
lists both, and every case's fraction is recomputed against it: on a shared machine one
probe can fall in a busy spell). Each script's ``_common.record(...)`` calls append one JSON
object per line (a measured case, or a ``missing_peer`` note); the runner collects them into
one JSON document at ``PATH``::

    {"schema": "refimpl-bench/1", "date_utc": str, "quick": bool, "command": str,
     "machine": {"cpu": {"model", "llvm_cpu", "isa_flags", "llc_bytes"}, "blas_kernel": str,
                 "threads": {"numba", "blas", "torch"}, "blas": [...], "cpu_count", "loadavg",
                 "openblas_env", "numpy", "scipy", "numba", "python", ...},
     "roofline": {"memory_gbs", "copy_gbs", "triad_gbs", "sgemm_gflops",
                  "balance_flops_per_byte", "array_mib", "gemm_n", "passes", "method"},
     "benchmarks": [{"name", "exit", "seconds", "cases", "missing_peers"}],
     "cases": [{"benchmark", "case", "kernel", "time_s", "median_s", "peers": {name:
                {"time_s", "median_s", "ratio", "ratio_median"}}, "best_peer",
                "ratio_best_peer", "ratio_numpy", "bound": "memory" | "compute",
                "gb_per_s", "gflop_per_s", "limit", "limit_unit", "fraction_of_limit",
                "headline": bool, "params": {...}, "note", ...}],
     "missing_peers": [{"benchmark", "peer", "reason"}]}

``refimpl bench --report PATH`` prints the Markdown table of the headline cases of such a file
(``--all`` every case), with a line saying which CPU and BLAS produced it; the README's
benchmark table is this output. A path that cannot be written (``--json``) or read
(``--report``) is a usage error: exit status 2 and a message, before anything runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from refimpl.cli._paths import checkout_dir

__all__ = ["find_benchmarks_dir", "select_benchmarks", "main", "SCHEMA", "validate_record",
           "report_markdown", "check_output_path"]

SCHEMA = "refimpl-bench/1"
RECORD_ENV = "REFIMPL_BENCH_RECORD"
ROOFLINE_ENV = "REFIMPL_BENCH_ROOFLINE"


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


def check_output_path(path) -> Path:
    """``path`` as a writable JSON output file; raises ValueError naming the problem."""
    p = Path(str(path)).expanduser()
    if p.is_dir():
        raise ValueError(f"--json {path!s}: is a directory; give a file name, e.g. "
                         f"{p / 'bench.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"--json {path!s}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ValueError(f"--json {path!s}: not writable")
    return p


_CASE_KEYS = {"benchmark": str, "case": str, "kernel": str, "time_s": float,
              "median_s": float, "peers": dict, "bound": str, "headline": bool,
              "params": dict}
_TOP_KEYS = {"schema": str, "date_utc": str, "quick": bool, "machine": dict, "roofline": dict,
             "benchmarks": list, "cases": list, "missing_peers": list}
_ROOF_KEYS = ("memory_gbs", "copy_gbs", "triad_gbs", "sgemm_gflops", "balance_flops_per_byte")


def validate_record(doc) -> dict:
    """Check a ``refimpl bench --json`` document: the keys and types of :data:`SCHEMA`;
    returns it, or raises ValueError naming the first bad key."""
    if not isinstance(doc, dict):
        raise ValueError(f"the record must be a JSON object, got {type(doc).__name__}")
    for key, typ in _TOP_KEYS.items():
        if not isinstance(doc.get(key), typ):
            raise ValueError(f"record key {key!r} must be a {typ.__name__}, got "
                             f"{type(doc.get(key)).__name__}")
    if doc["schema"] != SCHEMA:
        raise ValueError(f"record schema {doc['schema']!r} is not {SCHEMA!r}")
    for key in _ROOF_KEYS:
        v = doc["roofline"].get(key)
        if not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
            raise ValueError(f"roofline[{key!r}] must be a positive number, got {v!r}")
    cpu = doc["machine"].get("cpu")
    if not isinstance(cpu, dict) or not isinstance(cpu.get("model"), str) or \
            not isinstance(cpu.get("isa_flags"), list):
        raise ValueError("machine['cpu'] must hold 'model' (str) and 'isa_flags' (list)")
    if not isinstance(doc["machine"].get("blas_kernel"), str):
        raise ValueError("machine['blas_kernel'] must be a str")
    if not isinstance(doc["machine"].get("threads"), dict):
        raise ValueError("machine['threads'] must be a dict")
    for i, c in enumerate(doc["cases"]):
        for key, typ in _CASE_KEYS.items():
            v = c.get(key) if isinstance(c, dict) else None
            if not isinstance(v, typ) or (typ is float and isinstance(v, bool)):
                raise ValueError(f"cases[{i}][{key!r}] must be a {typ.__name__}, got {v!r}")
        if c["bound"] not in ("memory", "compute"):
            raise ValueError(f"cases[{i}]['bound'] must be 'memory' or 'compute', got "
                             f"{c['bound']!r}")
        for key in ("ratio_best_peer", "ratio_numpy", "fraction_of_limit"):
            if c.get(key) is not None and not isinstance(c[key], (int, float)):
                raise ValueError(f"cases[{i}][{key!r}] must be a number or null")
    return doc


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.2f} s"


def _fmt_ratio(x) -> str:
    return "—" if x is None else (f"{x:.3g}×" if x < 10 else f"{x:.0f}×")


def report_markdown(doc: dict, all_cases: bool = False) -> str:
    """The Markdown headline table of a ``--json`` record (every case with ``all_cases``),
    preceded by one line naming the CPU, ISA, BLAS kernel, threads and roofline."""
    doc = validate_record(doc)
    m, roof = doc["machine"], doc["roofline"]
    cpu = m["cpu"]
    simd = [f for f in cpu["isa_flags"] if f.startswith(("avx", "amx", "sve", "asimd"))]
    th = m["threads"]
    lines = [
        f"Measured {doc['date_utc']} by `{doc.get('command') or 'refimpl bench'}` "
        f"({'quick' if doc['quick'] else 'full'} run) on {cpu['model']}"
        + (f" ({cpu['llvm_cpu']})" if cpu.get("llvm_cpu") else "")
        + f", {m.get('cpu_count', '?')} CPUs, {', '.join(simd) or 'no AVX'}; BLAS "
        f"{m['blas_kernel']}; threads: numba {th.get('numba')}, BLAS {th.get('blas')}, torch "
        f"{th.get('torch')}; load average (1, 5, 15 min) at start {_load(m.get('loadavg'))}, "
        f"at end {_load(m.get('loadavg_end'))}{_shared(m)}. Roofline "
        f"measured in the same run: memory {roof['memory_gbs']:.1f} GB/s (STREAM-like copy "
        f"{roof['copy_gbs']:.1f}, triad {roof['triad_gbs']:.1f}), float32 GEMM "
        f"{roof['sgemm_gflops']:.0f} GFLOP/s. Ratios are peer time / refimpl time from best "
        f"times (> 1: refimpl faster).",
        "",
        "| benchmark | case | refimpl | best peer | × best peer | × NumPy | achieved "
        "(of the roof) | bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cases = [c for c in doc["cases"] if all_cases or c["headline"]]
    for c in cases:
        bp = c.get("best_peer")
        peer = f"{bp} ({_fmt_time(c['peers'][bp]['time_s'])})" if bp else "—"
        if c["bound"] == "memory" and c.get("gb_per_s"):
            rate = f"{c['gb_per_s']:.1f} GB/s"
        elif c.get("gflop_per_s"):
            rate = f"{c['gflop_per_s']:.1f} GFLOP/s"
        else:
            rate = ""
        frac = c.get("fraction_of_limit")
        if frac is not None:
            rate += f" ({frac:.0%}" + (", in LLC)" if "LLC" in (c.get("note") or "") else ")")
        lines.append(f"| {c['benchmark']} | {c['case']} | {_fmt_time(c['time_s'])} | {peer} | "
                     f"{_fmt_ratio(c.get('ratio_best_peer'))} | "
                     f"{_fmt_ratio(c.get('ratio_numpy'))} | {rate or '—'} | {c['bound']} |")
    if not cases:
        lines.append("| (no cases recorded) | | | | | | | |")
    bad = [b["name"] for b in doc["benchmarks"] if b.get("exit") != 0]
    if bad:
        lines += ["", f"Failed (exit status ≠ 0): {', '.join(bad)}."]
    if doc["missing_peers"]:
        lines += ["", "Peers not measured: " + "; ".join(
            f"{p['benchmark']}: {p['peer']} ({p['reason']})" for p in doc["missing_peers"])
            + "."]
    return "\n".join(lines) + "\n"


def _load(load) -> str:
    return ", ".join(f"{x:.1f}" for x in load) if isinstance(load, list) else "?"


def _shared(m: dict) -> str:
    """A warning when the 1-minute load exceeded the CPU count during the run."""
    loads = [x[0] for x in (m.get("loadavg"), m.get("loadavg_end")) if isinstance(x, list) and x]
    n = m.get("cpu_count")
    if loads and isinstance(n, int) and max(loads) > n:
        return (f" (a shared machine, busier than its {n} CPUs: absolute times and the "
                "roofline are depressed and the fractions of it unreliable; ratios come from "
                "the same run)")
    return ""


def _probe(folder: Path, quick: bool) -> dict:
    """Machine info and roofline from ``_common.py --machine`` in a subprocess."""
    cmd = [sys.executable, str(folder / "_common.py"), "--machine"] + (["--quick"] if quick
                                                                         else [])
    out = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"machine probe failed (exit {out.returncode}): "
                           f"{out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def _refit(case: dict, roof: dict) -> None:
    """Set a case's ``limit`` and ``fraction_of_limit`` against ``roof`` (its bound kept)."""
    if case.get("bound") == "memory":
        achieved, case["limit"] = case.get("gb_per_s"), roof["memory_gbs"]
    else:
        achieved, case["limit"] = case.get("gflop_per_s"), roof["sgemm_gflops"]
    case["fraction_of_limit"] = achieved / case["limit"] if achieved is not None else None


def _report(args) -> int:
    path = Path(str(args.report)).expanduser()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"refimpl bench: --report {args.report}: no such file", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        print(f"refimpl bench: --report {args.report}: not a readable JSON file ({err})",
              file=sys.stderr)
        return 2
    try:
        text = report_markdown(doc, all_cases=getattr(args, "all", False))
    except ValueError as err:
        print(f"refimpl bench: --report {args.report}: not a `refimpl bench --json` record: "
              f"{err}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def main(args) -> int:
    """Entry point of ``refimpl bench`` (``args``: ``names``, ``quick``, ``json``,
    ``report``, ``all``)."""
    if getattr(args, "report", None):
        if getattr(args, "json", None) or getattr(args, "names", None):
            print("refimpl bench: --report reads a record and runs nothing; it takes no "
                  "benchmark names and no --json", file=sys.stderr)
            return 2
        return _report(args)
    out_path = None
    if getattr(args, "json", None):
        try:
            out_path = check_output_path(args.json)
        except ValueError as err:
            print(f"refimpl bench: {err}", file=sys.stderr)
            return 2
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
    quick = bool(getattr(args, "quick", False))
    extra = ["--quick"] if quick else []
    env = dict(os.environ)
    machine, scratch = None, None
    if out_path is not None:
        try:
            machine = _probe(folder, quick)
        except (RuntimeError, ValueError) as err:
            print(f"refimpl bench: {err}", file=sys.stderr)
            return 1
        roof = machine.pop("roofline")
        print(f"# roofline: memory {roof['memory_gbs']:.1f} GB/s, float32 GEMM "
              f"{roof['sgemm_gflops']:.1f} GFLOP/s; CPU {machine['cpu']['model']} "
              f"({machine['cpu'].get('llvm_cpu')}), BLAS {machine['blas_kernel']}", flush=True)
        fd, name = tempfile.mkstemp(prefix="refimpl-bench-", suffix=".jsonl")
        os.close(fd)
        scratch = Path(name)
        env[ROOFLINE_ENV] = json.dumps(roof)
        env[RECORD_ENV] = str(scratch)
    results, benches = [], []
    seen = 0
    try:
        for script in scripts:
            print(f"\n=== {script.name} {' '.join(extra)}", flush=True)
            t0 = time.perf_counter()
            rc = subprocess.run([sys.executable, str(script), *extra], cwd=folder.parent,
                                env=env).returncode
            dt = time.perf_counter() - t0
            results.append((script.name, rc, dt))
            if scratch is not None:
                lines = _read_lines(scratch)
                mine = lines[seen:]
                seen = len(lines)
                benches.append({"name": script.name, "exit": rc, "seconds": round(dt, 1),
                                "cases": sum(o.get("type") == "case" for o in mine),
                                "missing_peers": [o["peer"] for o in mine
                                                  if o.get("type") == "missing_peer"]})
        print(f"\n{'benchmark':<28} {'exit':>4} {'seconds':>8}")
        for name, rc, dt in results:
            print(f"{name:<28} {rc:>4} {dt:>8.1f}")
        if out_path is not None:
            objs = _read_lines(scratch)
            # the limits again after the run: on a shared machine one probe can fall in a busy
            # spell; the roof is the larger of the two (each is already a best of passes),
            # and every case's fraction is recomputed against it
            probes = [roof]
            try:
                probes.append(_probe(folder, quick)["roofline"])
            except (RuntimeError, ValueError) as err:
                print(f"refimpl bench: second roofline probe failed, keeping the first: {err}",
                      file=sys.stderr)
            roof = {**roof, **{k: max(p[k] for p in probes) for k in
                               ("copy_gbs", "triad_gbs", "memory_gbs", "sgemm_gflops")}}
            roof["balance_flops_per_byte"] = roof["sgemm_gflops"] / roof["memory_gbs"]
            roof["probes"] = [{k: p[k] for k in ("copy_gbs", "triad_gbs", "sgemm_gflops")}
                              for p in probes]
            for o in objs:
                if o.get("type") == "case":
                    _refit(o, roof)
            doc = {
                "schema": SCHEMA,
                "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "quick": quick,
                "command": "refimpl bench" + (" --quick" if quick else "")
                           + "".join(f" {n}" for n in (getattr(args, "names", None) or [])),
                "machine": {**machine, "loadavg_end": list(os.getloadavg())
                            if hasattr(os, "getloadavg") else None},
                "roofline": roof,
                "benchmarks": benches,
                "cases": [o for o in objs if o.get("type") == "case"],
                "missing_peers": [o for o in objs if o.get("type") == "missing_peer"],
            }
            validate_record(doc)
            out_path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
            print(f"# wrote {out_path} ({len(doc['cases'])} cases); "
                  f"`refimpl bench --report {out_path}` prints the headline table")
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
    return 0 if all(rc == 0 for _, rc, _ in results) else 1
