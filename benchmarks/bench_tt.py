"""TT-matrix × matrix and TT-embedding lookup vs dense, in the same run (Survey §6.3).

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_tt.py [--full]

For an (M, N) weight with M = N = 1024 (modes 4·4·8·8) and 4096 (8·8·8·8), at TT-ranks 4–64:
  * matmul: dense ``X @ W.T`` (NumPy BLAS) vs :func:`refimpl.kernels.tt.tt_matmul` (Numba and
    NumPy-einsum backends), batch B;
  * embedding: dense row gather ``E[idx]`` vs :func:`refimpl.kernels.tt.tt_embedding_lookup`;
  * memory: stored float64 numbers, dense vs TT (ratio = dense / TT);
  * the crossover rank: the largest rank at which the TT path is still faster than dense.

Issue #19: TensorLy's TT-matrix as the peer. TensorLy 0.10 has no TT-matrix × matrix
product: its TT-matrix API reconstructs the dense matrix (``tl.tt_matrix_to_matrix``, same
core layout ``(r, m, n, r)``, checked equal), which a TensorLy user then multiplies; that is
the peer timed. Every case prints GFLOP/s (2 × the multiply-adds above) against the roofline
(measured with all threads before ``--threads`` limits BLAS). ``--quick`` is accepted (it
is the default) so ``refimpl bench --quick`` can run this script.

Measured 6 Dec 2026 (2 vCPUs AMD EPYC Zen 4 (LLVM znver4; AVX-512 incl. VNNI, BF16, VPOPCNTDQ; 32 MiB L3), NumPy's OpenBLAS 0.3.31 'SkylakeX' kernel, 2 threads, numba 0.68.1 with 2 threads, torch 2.13 CPU with ``torch.set_num_threads(2)``, OPENBLAS_* unset; BLAS limited to 1 thread), ``refimpl bench --quick``, 21:10 UTC,
load 14 (shared machine), best times: 4096², batch 8: dense 61.9 ms, TensorLy 413-868 ms;
TT (numba) r=4 0.84 ms (74x dense, 493x TensorLy), r=8 2.46 ms (25x / 196x), r=16 27.8 ms
(2.2x / 15x), r=32 177 ms (0.35x / 3.6x), r=64 519 ms (0.12x / 1.7x). 1024², batch 32:
dense 2.31 ms; TT r=4 2.6x, r=8 0.85x, r=16 and up slower than dense (0.03x-0.01x), and
from r=16 slower than TensorLy too (0.48x-0.09x): reconstructing a 1024² matrix is cheap.
The best peer is dense BLAS everywhere; the TT path beats it only for 4096² at r <= 16.

Earlier results (before issue #19):

Results (this machine, 2 shared cores, OpenBLAS 0.3.31 Haswell, 1 BLAS thread, quick run):

  Machine-independent (exact): multiply-adds of the TT path relative to the dense product
  ("MAC ratio") and stored numbers relative to dense ("mem ratio" = dense / TT):

    1024x1024 (4,4,8,8):  r=4: MAC 0.23, mem 655x | r=8: 0.84, 182x | r=16: 3.19, 48x |
                          r=32: 10.3, 14x | r=64: 36.6, 3.7x   -> MAC crossover between r=8 and 16
    4096x4096 (8,8,8,8):  r=4: 0.078, 6554x | r=8: 0.28, 1820x | r=16: 1.06, 482x |
                          r=32: 4.1, 124x | r=64: 16.3, 31x     -> MAC crossover at r~16

  Wall clock, run of 2026-11-23 14:21 UTC (`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`,
  quick, 1 BLAS thread, best of >= 3; the 2 cores were shared with other jobs, load average
  ~4.8, so absolute times are ~2-4x slower than on an idle machine; the ratios are same-run):

    1024x1024, batch 32: dense X @ W.T 5.8 ms.  TT (numba) / dense: r4 0.48, r8 3.9, r16 12.9,
      r32 27.6, r64 73.5 (numpy-einsum reference: 0.46, 4.2, 9.8, 23.6, 74.6).
      Crossover rank (largest rank faster than dense): 4.
    4096x4096, batch 8: dense 83.5 ms.  TT (numba) / dense: r4 0.03, r8 0.17, r16 0.78,
      r32 2.8, r64 8.4 (numpy: 0.04, 0.25, 0.83, 2.25, 8.2).  Crossover rank: 16.
    Embedding row lookup (256 rows): dense gather 0.13 ms (1024 wide) / 1.25 ms (4096 wide);
      TT lookup / gather: 1024: r4 17x ... r64 2950x; 4096: r4 18x ... r64 1100x.
      A gather is a memory copy, so the TT-embedding always costs time; it buys the memory
      ratios above (655x-3.7x and 6554x-31x).

  Reading: TT pays off in *time* only for large matrices at small rank (4096 at r <= 16), in
  line with the MAC ratios; the wall-clock ratios are worse than the MAC ratios at higher rank
  because the TT path is a chain of small, thin GEMMs and transposes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import current_roofline, note_missing_peer, print_cases, record

from refimpl.decomposition.tensor_train import tt_matrix_ranks
from refimpl.kernels.tt import tt_embedding_lookup, tt_matmul


def _best_time(fn, repeats: int, budget: float = 0.3) -> float:
    """Best of at least ``repeats`` runs (more while under ``budget`` seconds, at most 30).

    The minimum is the time least disturbed by the other processes sharing the 2 cores; a
    2-thread BLAS call that loses a core to another process stalls for a scheduler quantum."""
    fn()  # warm-up (and JIT compile)
    ts, total = [], 0.0
    while len(ts) < repeats or (total < budget and len(ts) < 30):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        total += ts[-1]
    return float(np.min(ts))


def _cores(ms, ns, r, rng):
    ranks = tt_matrix_ranks(ms, ns, r)  # feasible: r_k <= prod of (m n) on either side
    return [rng.standard_normal((ranks[k], ms[k], ns[k], ranks[k + 1])) / np.sqrt(ranks[k])
            for k in range(len(ms))]


def tt_matmul_macs(cores, batch: int) -> int:
    """Multiply-adds of the right-to-left TT contraction (see :mod:`refimpl.kernels.tt`)."""
    ms = [c.shape[1] for c in cores]
    ns = [c.shape[2] for c in cores]
    total = 0
    for k, c in enumerate(cores):
        total += (batch * int(np.prod(ns[:k])) * c.shape[0] * ms[k] * ns[k] * c.shape[3]
                  * int(np.prod(ms[k + 1:])))
    return total


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info

        return "; ".join(f"{i.get('internal_api')} {i.get('version')} "
                         f"threads={i.get('num_threads')} core={i.get('architecture')}"
                         for i in threadpool_info() if i.get("user_api") == "blas")
    except Exception as e:  # pragma: no cover - informational only
        return f"threadpoolctl unavailable ({e})"


def tensorly_or_none():
    """TensorLy (NumPy backend), or None with a printed note and a record entry."""
    try:
        import tensorly as tl
    except ImportError:
        note_missing_peer("tt", "TensorLy", "tensorly not installed")
        return None
    tl.set_backend("numpy")
    return tl


def _timing(fn, repeats):
    """(best, median) seconds, as :func:`_best_time` samples them."""
    fn()
    ts, total = [], 0.0
    while len(ts) < repeats or (total < 0.3 and len(ts) < 30):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        total += ts[-1]
    return float(np.min(ts)), float(np.median(ts))


def bench(M_modes, batch, ranks, repeats, rng, tl=None, quick=True, headline_rank=None):
    M = N = int(np.prod(M_modes))
    W = rng.standard_normal((M, N))
    X = rng.standard_normal((batch, N))
    t_dense_bm = _timing(lambda: X @ W.T, repeats)
    t_dense = t_dense_bm[0]
    idx = rng.integers(0, M, size=256)
    t_gather = _best_time(lambda: W[idx], repeats)
    print(f"\n{M}x{N}  modes {M_modes}  batch {batch}: dense matmul {t_dense * 1e3:.3f} ms, "
          f"dense gather of 256 rows {t_gather * 1e3:.3f} ms, dense params {M * N}")
    print(f"{'rank':>5} {'params':>9} {'mem ratio':>10} {'MAC ratio':>10} {'numba ms':>9} "
          f"{'t/dense':>8} "
          f"{'numpy ms':>9} {'t/dense':>8} {'lookup ms':>10} {'t/gather':>9} "
          f"{'tensorly ms':>11} {'t/tensorly':>10}")
    cases = []
    crossover = {"numba": None, "numpy": None}
    for r in ranks:
        cores = _cores(M_modes, M_modes, r, rng)
        params = sum(c.size for c in cores)
        t_nb_bm = _timing(lambda c=cores: tt_matmul(c, X, backend="numba"), repeats)
        t_nb = t_nb_bm[0]
        t_tl = None
        if tl is not None:
            # TensorLy 0.10 has no TT-matrix x matrix product: its TT-matrix API gives the
            # dense matrix (tt_matrix_to_matrix), which a TensorLy user then multiplies
            def f_tl(c=cores):
                return X @ tl.tt_matrix_to_matrix(c).T

            assert np.allclose(f_tl(), tt_matmul(cores, X), rtol=1e-9, atol=1e-9)
            t_tl = _timing(f_tl, repeats)
        t_np = _best_time(lambda c=cores: tt_matmul(c, X, backend="numpy"), repeats)
        t_lk = _best_time(lambda c=cores: tt_embedding_lookup(c, idx, backend="numba"), repeats)
        for name, t in (("numba", t_nb), ("numpy", t_np)):
            if t < t_dense:
                crossover[name] = r
        mac_ratio = tt_matmul_macs(cores, batch) / (batch * M * N)
        print(f"{r:>5} {params:>9} {M * N / params:>10.1f} {mac_ratio:>10.3f} {t_nb * 1e3:>9.3f} "
              f"{t_nb / t_dense:>8.2f} {t_np * 1e3:>9.3f} {t_np / t_dense:>8.2f} "
              f"{t_lk * 1e3:>10.3f} {t_lk / t_gather:>9.1f} "
              + (f"{t_tl[0] * 1e3:>11.3f} {t_nb / t_tl[0]:>10.3f}" if t_tl else
                 f"{'-':>11} {'-':>10}"))
        macs = tt_matmul_macs(cores, batch)
        nbytes = 8 * (params + X.size + batch * M)
        cases.append(record(
            "tt", f"TT-matrix x matrix {M}x{N} rank {r} batch {batch}", "refimpl tt_matmul (numba)",
            t_nb_bm, peers={"numpy dense BLAS": t_dense_bm, "TensorLy to_matrix + matmul": t_tl},
            numpy_baseline="numpy dense BLAS", flops=2.0 * macs, bytes_moved=nbytes,
            params={"M": M, "N": N, "modes": list(M_modes), "rank": r, "batch": batch,
                    "dtype": "float64"}, headline=(r == headline_rank), quick=quick,
            note="float64, BLAS threads limited by --threads (default 1); the roof is float32 "
                 "sgemm on all threads"))
    print(f"crossover rank (largest rank still faster than dense BLAS): numba "
          f"{crossover['numba']}, numpy {crossover['numpy']}")
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="more repeats, larger batches")
    ap.add_argument("--quick", action="store_true", help="the default (fewer repeats, smaller "
                    "batches); accepted so `refimpl bench --quick` can pass it to every script")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads for dense and TT alike (default 1: on 2 shared cores a "
                         "2-thread BLAS call stalls whenever another process holds a core)")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    current_roofline(not args.full)  # the machine's limits, all threads (before the limit)
    threadpool_limits(limits=args.threads, user_api="blas")
    rng = np.random.default_rng(0)
    print("BLAS:", _blas_info())
    tl = tensorly_or_none()
    repeats = 7 if args.full else 3
    ranks = (4, 8, 16, 32, 64)
    cases = bench((4, 4, 8, 8), 64 if args.full else 32, ranks, repeats, rng, tl,
                  quick=not args.full)
    cases += bench((8, 8, 8, 8), 32 if args.full else 8, ranks, repeats, rng, tl,
                   quick=not args.full, headline_rank=16)
    print("\n# against the best peer (dense BLAS, TensorLy) and the machine's limit; float64")
    print_cases(cases)


if __name__ == "__main__":
    main()
