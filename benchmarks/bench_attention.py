"""Scaling of the §7 attention variants: time and peak memory vs sequence length n (d = 64).

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_attention.py [--quick]
        [--n 1024 2048 4096 8192 16384] [--window 256] [--dtype float32]

For every variant it prints the time (best of ``--repeat``), the peak NumPy memory traced by
``tracemalloc`` (Numba's small per-row scratch is not traced; every O(n) / O(n²) array is a
NumPy allocation), the ratio to the dense baseline at the same n, and the log-log slope fitted
over the three largest n next to the theoretical one. The dense baseline is a lean NumPy/BLAS
implementation (in-place softmax, one n×n buffer) — the honest best dense code in NumPy, not
the validated :func:`refimpl.attention.dense_attention` (which is slower). torch's CPU
``scaled_dot_product_attention`` is timed too when torch is installed.

Measured (short run: ``--quick``, n = 1024…8192, float32, w = 256, B = H = 1, OpenBLAS
variables unset, 2 cores shared with other jobs — load average ≈ 8 during the run):

    see the table printed at the end of the run; the numbers from the last recorded run are in
    the MEASURED block below.

MEASURED (filled in from the last short run; re-run to reproduce)::

    (pending)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from refimpl.attention.scaling import default_variants, loglog_slope, measure_scaling


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="n = 1024..8192, one repeat")
    ap.add_argument("--n", type=int, nargs="+", default=None)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--skip", nargs="*", default=[], help="substrings of variants to skip")
    args = ap.parse_args(argv)
    ns = args.n or ([1024, 2048, 4096, 8192] if args.quick else [1024, 2048, 4096, 8192, 16384])
    repeat = args.repeat or (1 if args.quick else 2)
    dtype = np.dtype(args.dtype)

    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        print(f"# {info.get('internal_api')} {info.get('version')} "
              f"{info.get('architecture', '')} threads={info.get('num_threads')}")
    print(f"# d=64, B=H=1, dtype={dtype}, n={ns}, repeat={repeat}")

    variants = [v for v in default_variants(args.window)
                if not any(s in v.name for s in args.skip)]
    res = {"n": [], "variants": {v.name: {"time": [], "memory": [],
                                          "time_slope": v.time_slope,
                                          "memory_slope": v.memory_slope} for v in variants}}
    torch_t = []
    try:  # optional second baseline
        import torch

        torch.set_num_threads(2)
    except ImportError:
        torch = None
    for n in ns:
        r = measure_scaling([n], variants, d=64, repeat=repeat, dtype=dtype, rng=n)
        res["n"].append(n)
        for name, v in r["variants"].items():
            res["variants"][name]["time"] += v["time"]
            res["variants"][name]["memory"] += v["memory"]
            print(f"n={n:6d}  {name:36s} {v['time'][0] * 1e3:10.1f} ms  peak "
                  f"{v['memory'][0] / 2**20:9.1f} MiB", flush=True)
        if torch is not None:
            x = torch.randn(1, 1, n, 64, dtype=getattr(torch, args.dtype))
            t0 = time.perf_counter()
            torch.nn.functional.scaled_dot_product_attention(x, x, x)
            torch_t.append(time.perf_counter() - t0)
            print(f"n={n:6d}  {'torch SDPA (CPU)':36s} {torch_t[-1] * 1e3:10.1f} ms", flush=True)

    dense = res["variants"]["dense"]["time"]
    dense_mem = res["variants"]["dense"]["memory"]
    print("\n| variant | " + " | ".join(f"n={n} ms (dense/variant)" for n in ns) +
          " | peak MiB at n_max (dense/variant) | slope time, memory (theory) |")
    print("|---|" + "---|" * (len(ns) + 2))
    for name, v in res["variants"].items():
        t, m = v["time"], v["memory"]
        cells = " | ".join(f"{ti * 1e3:.1f} ({di / ti:.1f}×)" for ti, di in zip(t, dense))
        print(f"| {name} | {cells} | {m[-1] / 2**20:.1f} ({dense_mem[-1] / max(m[-1], 1):.1f}×)"
              f" | {loglog_slope(ns, t):.2f}, {loglog_slope(ns, m):.2f} "
              f"({v['time_slope']:g}, {v['memory_slope']:g}) |")
    if torch_t:
        print("| torch SDPA (CPU) | " + " | ".join(f"{ti * 1e3:.1f} ({di / ti:.1f}×)"
                                                  for ti, di in zip(torch_t, dense)) + " | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
