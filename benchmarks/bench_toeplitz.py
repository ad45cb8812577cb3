"""Toeplitz-like product by FFT (``O(r n log n)`` per row) vs the dense BLAS product, across sizes
and displacement ranks (Survey §5.2; Lu, Sindhwani & Sainath 2016), in the same run.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_toeplitz.py [--quick]

For ``n × n`` matrices of displacement rank r ∈ {1, 2, 4} (``2nr`` stored numbers) and a batch
of 16 rows:

* dense: ``X @ M.T`` with M materialised (NumPy BLAS), the honest baseline;
* FFT: :func:`refimpl.sharing.toeplitz_like_matvec` (NumPy ``rfft``);
* peer for a plain Toeplitz matrix (r = 2): ``scipy.linalg.matmul_toeplitz`` (also FFT);
* the crossover size per rank: the smallest n at which the FFT path is at least as fast as the
  dense product (None when it never is in the measured range).

Results, run of 2026-12-06 20:42 UTC (AMD EPYC, OpenBLAS 0.3.30 SkylakeX kernel, 1 BLAS thread,
float64, full sizes; 2 shared cores at load average ~11, so single cases are noisy; the ratios
are same-run): dense time / FFT time at n = 64, 256, 1024, 4096 — r=1: 0.06, 0.55, 3.4, 35;
r=2: 0.07, 0.29, 1.8, 24.5; r=4: 0.02, 0.15, 0.86, 4.5. Crossover size: 512 (r=1), 1024 (r=2),
2048 (r=4), i.e. growing about linearly with r as the O(r n log n) count predicts. For a plain
Toeplitz matrix scipy.linalg.matmul_toeplitz (one circulant embedding of size 2n) is 1.1-2.5x
faster than the rank-2 displacement form (two circulant-times-skew-circulant terms).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits
import scipy.linalg
from _common import parse_args, print_cases, print_environment, record, time_fn

from refimpl.sharing import toeplitz_like_matrix, toeplitz_like_matvec


def main(argv=None) -> list[dict]:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_environment()
    # one BLAS thread: a 2-thread GEMM on the shared 2 cores stalls for a scheduler quantum
    # whenever another process holds a core, which would make the dense baseline look slow
    threadpool_limits(limits=1, user_api="blas")
    sizes = (64, 256, 1024) if args.quick else (64, 128, 256, 512, 1024, 2048, 4096)
    batch, cases = 16, []
    crossover: dict = {}
    rng = np.random.default_rng(0)
    for r in (1, 2, 4):
        crossover[r] = None
        for n in sizes:
            G, H = rng.standard_normal((n, r)), rng.standard_normal((n, r))
            M = toeplitz_like_matrix(G, H)                    # (n, n) for the dense baseline
            X = rng.standard_normal((batch, n))
            Y = toeplitz_like_matvec(G, H, X)
            scale = r * np.abs(G).max() * np.abs(H).max() * np.abs(X).sum(1).max() * n
            err = float(np.abs(Y - X @ M.T).max() / scale)
            assert err < 1e-12, f"FFT product disagrees with dense (relative {err:.2e})"
            t_dense = time_fn(lambda X=X, M=M: X @ M.T, repeat=args.repeat or 7)
            t_fft = time_fn(lambda G=G, H=H, X=X: toeplitz_like_matvec(G, H, X),
                            repeat=args.repeat or 7)
            peers = {"numpy_dense_blas": t_dense}
            if r == 2:
                c, row = rng.standard_normal(n), rng.standard_normal(n)
                peers["scipy_matmul_toeplitz"] = time_fn(
                    lambda c=c, row=row, X=X: scipy.linalg.matmul_toeplitz((c, row), X.T),
                    repeat=args.repeat or 7)
            logn = np.log2(n)
            cases.append(record("toeplitz", f"n={n} r={r} B={batch}", "toeplitz_like_matvec",
                                t_fft, peers=peers, numpy_baseline="numpy_dense_blas",
                                flops=batch * r * 4 * 5 * n * logn,
                                bytes_moved=8.0 * (2 * n * r + 2 * batch * n),
                                params={"n": n, "rank": r, "batch": batch,
                                        "stored_dense": n * n, "stored_toeplitz_like": 2 * n * r},
                                headline=(n == 1024 and r == 2), quick=args.quick))
            if crossover[r] is None and t_fft.best <= t_dense.best:
                crossover[r] = n
    print_cases(cases)
    for r, n in crossover.items():
        print(f"# rank {r}: crossover size (FFT at least as fast as dense BLAS): {n}")
    return cases


if __name__ == "__main__":
    main()
