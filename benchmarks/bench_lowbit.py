"""Low-bit weight × float activation products at small batch (refimpl.kernels.lowbit_gemv) vs
float32 BLAS, float32 ``torch.mm`` and torch's int8 dynamic-quantised ``Linear``.

Issue #19, item 1: for 2-, 3- and 4-bit codebook weights, ternary and binary weights, a 4096 ×
4096 weight matrix and batch 1 and 8, the packed product should be ≥ 3× float32 BLAS (``X @
W.T``, BLAS at its best: the faster of NumPy's BLAS and ``torch.mm``); at batch 64 no slower
than float32. The ratio to torch's int8 dynamic ``Linear`` (``quantize_dynamic``, fbgemm) is
the moonshot. All peers and kernels run in the same process on the same activations, timed
interleaved (one call each per round, 0.3 s idle before each call so no library's spinning
threads steal the other's core); medians and best of the rounds are reported, the ratios use
medians (``best/best`` is printed too).

Run the headline as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lowbit.py --quick

Kernels timed: ``kbit_gemv`` at 4, 3, 2 bits (random codes, a 2^k-entry float32 codebook and a
float32 scale per row — the same cost as k-means or uniform codes), ``binary_weight_gemv``
(one sign plane + α per row), ``ternary_weight_gemv`` (two planes + α per row), and, for the
record, the previous ``kbit_matmul`` path (decode 256-row blocks to float, BLAS per block) at
4 bits. ``kbit_matmul`` itself now dispatches float32 batches ≤ 64 to ``kbit_gemv``.

Measured table and protocol: see the end of this docstring (filled in from runs of this
script; the machine is shared with other jobs, so the load average is printed per batch).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from _common import parse_args, print_environment, print_table, ratio, write_json

from refimpl.kernels import bitpack as bp
from refimpl.kernels import lowbit_gemv as lg


def _interleaved(fns: dict, rounds: int, settle: float = 0.3, clock=time.perf_counter) -> dict:
    """``{name: (median, best)}`` seconds per call, the functions called in turn (one call
    each per round, ``settle`` s idle before each) so a busy spell hits all of them alike.
    ``clock``: wall time, or ``time.process_time`` (CPU seconds of the whole process: with one
    thread per library, the work of a call, whatever share of the CPU the scheduler gave it)."""
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up: JIT, caches, torch's first-call setup
        f()
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(settle)
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def _torch_peers(W, threads):
    """float32 ``torch.mm`` and the int8 dynamic-quantised Linear, or None without torch."""
    try:
        import warnings

        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        q = torch.ao.quantization.quantize_dynamic(lin, {torch.nn.Linear}, dtype=torch.qint8)
    return torch, torch.from_numpy(W), q


def _check(name, Y, X, W, s=None):
    """The kernel's result within the float32 rounding bound of the float64 product."""
    ref = X.astype(np.float64) @ W.T.astype(np.float64)
    absref = np.abs(X).astype(np.float64) @ np.abs(W).T.astype(np.float64)
    if s is not None:
        ref, absref = ref * s, absref * np.abs(s)
    K = X.shape[1]
    bound = (K + 2) * 2.0 ** -24 * absref + 2.0 ** -24 * np.abs(ref)
    assert np.all(np.abs(Y - ref) <= bound), f"{name} disagrees with the float64 product"


def _measure(B, N, K, rng, rounds, threads, clock, old_path=False):
    X = rng.standard_normal((B, K)).astype(np.float32)
    W = rng.standard_normal((N, K)).astype(np.float32)
    s = rng.uniform(0.5, 1.5, N).astype(np.float32)
    peers = _torch_peers(W, threads)
    if peers is None:
        print("# torch not installed: torch.mm and int8 Linear peers skipped")
    fns = {"numpy f32": lambda: X @ W.T}
    if peers is not None:
        torch, Wt, q = peers
        Xt = torch.from_numpy(X)

        def tmm():
            return torch.mm(Xt, Wt.T)

        def tint8():
            with torch.no_grad():
                return q(Xt)

        fns["torch f32"] = tmm
        fns["torch int8"] = tint8
    # bytes of weight data each call reads (codes + codebook + scales; int8 weights + scales)
    weights_bytes = {"numpy f32": W.nbytes, "torch f32": W.nbytes, "torch int8": N * K + 4 * N}
    for bits in (4, 3, 2):
        codes = rng.integers(0, 2 ** bits, (N, K))
        cb = np.sort(rng.standard_normal(2 ** bits)).astype(np.float32)
        P = bp.pack_codes(codes, bits)
        _check(f"{bits}-bit", lg.kbit_gemv(X, P, bits, K, cb, s), X, cb[codes], s)
        fns[f"{bits}-bit"] = (lambda P=P, bits=bits, cb=cb: lg.kbit_gemv(X, P, bits, K, cb, s))
        weights_bytes[f"{bits}-bit"] = P.nbytes + cb.nbytes + s.nbytes
        if bits == 4:
            P4, cb4 = P, cb
    signs = rng.choice(np.array([-1.0, 1.0], np.float32), (N, K))
    Wp = bp.pack_signs(signs)
    _check("binary", lg.binary_weight_gemv(X, Wp, K, s), X, signs, s)
    fns["binary"] = lambda: lg.binary_weight_gemv(X, Wp, K, s)
    weights_bytes["binary"] = Wp.nbytes + s.nbytes
    T = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), (N, K))
    Tp = bp.pack_ternary(T)
    _check("ternary", lg.ternary_weight_gemv(X, Tp, K, s), X, T, s)
    fns["ternary"] = lambda: lg.ternary_weight_gemv(X, Tp, K, s)
    weights_bytes["ternary"] = 2 * Tp[0].nbytes + s.nbytes
    if old_path:  # 0.05-1.5 s per call: only on request
        fns["old 4-bit"] = lambda: bp._kbit_matmul_numba(X, P4, 4, K, cb4)
        weights_bytes["old 4-bit"] = weights_bytes["4-bit"]
    load0 = os.getloadavg()[0]
    t = _interleaved(fns, rounds, clock=clock)
    load1 = os.getloadavg()[0]
    f32_name = min((k for k in ("numpy f32", "torch f32") if k in t), key=lambda k: t[k][0])
    f32, f32_best = t[f32_name]
    peer_names = [k for k in ("numpy f32", "torch f32", "torch int8") if k in t]
    best_peer = min(peer_names, key=lambda k: t[k][0])
    rows = []
    for k, (med, best) in t.items():
        row = {"batch": B, "kernel": k, "median ms": med * 1e3, "best ms": best * 1e3,
               "x f32": ratio(f32, med), "best/best": ratio(f32_best, best)}
        if "torch int8" in t:
            row["x int8"] = ratio(t["torch int8"][0], med)
        row["x best peer"] = ratio(t[best_peer][0], med)
        row["weights GB/s"] = weights_bytes[k] / med / 1e9
        rows.append(row)
    print(f"# batch {B}: {rounds} interleaved rounds, load average {load0:.2f} -> {load1:.2f}; "
          f"'x f32' = median of the faster float32 peer ({f32_name}) / median of the row; "
          f"best peer by median: {best_peer}")
    return rows, {"load": (load0, load1)}


def main(argv=None):
    args = parse_args("low-bit weight x float activation products vs float32 BLAS, torch.mm "
                      "and torch int8 dynamic Linear", argv,
                      extra=[("--one-thread", "every library on one thread (BLAS, torch, "
                              "Numba): steadier on a shared machine"),
                             ("--cpu-time", "with --one-thread: time calls by the process's CPU "
                              "seconds (time.process_time), not wall time"),
                             ("--old-path", "also time kbit_matmul's decode-then-BLAS path "
                              "(slow)")])
    import numba

    threads = os.cpu_count() or 1
    if args.one_thread:
        from threadpoolctl import threadpool_limits

        threads = 1
        threadpool_limits(1)
        numba.set_num_threads(1)
    env = print_environment()

    print(f"# lowbit_gemv fast path (AVX-512 vpermps): {lg.fast_path_available()}; threads "
          f"(numba, torch): {numba.get_num_threads()}, {threads}")
    N = K = 4096
    rounds = args.repeat or (7 if args.quick else 21)
    rng = np.random.default_rng(0)
    clock = time.process_time if (args.cpu_time and args.one_thread) else time.perf_counter
    print(f"# clock: {clock.__name__}")
    rows, meta = [], {}
    for B in (1, 8, 64):
        r, m = _measure(B, N, K, rng, rounds, threads, clock, args.old_path)
        rows += r
        meta[B] = m
    print_table(rows)
    if args.json:
        write_json("bench_lowbit", {"env": env, "rows": rows, "meta": meta})



if __name__ == "__main__":
    main()
