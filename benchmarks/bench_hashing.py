"""HashedNets product ``Y = X Vᵀ`` without forming V vs the dense BLAS product, across sizes
(Survey §5.2; Chen et al. 2015), in the same run.

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_hashing.py [--quick]

For square ``n × n`` virtual matrices with ``K = n²/8`` real weights and a batch of 32 rows:

* dense: ``X @ V.T`` with V materialised (NumPy BLAS) — the honest baseline, which stores
  ``n²`` floats;
* hashed: :func:`refimpl.kernels.hashing.hashed_matmul` (Numba, and the NumPy reference at the
  smaller sizes), which recomputes both xxHash32 values of every entry on every call and stores
  only ``K`` floats and two seeds;
* the crossover size: the smallest n at which the hashed kernel is at least as fast as dense
  (None when it never is in the measured range).

Reading: the hashed product does ~25 integer operations (two xxHash32) per virtual entry that
the dense product does not, so it cannot beat a BLAS GEMM in time; what it buys is memory (8×
fewer stored numbers here). The ratios say how much time that memory costs.

Results, run of 2026-12-06 20:39 UTC (AMD EPYC, OpenBLAS 0.3.30 SkylakeX kernel, 1 BLAS thread,
float32, full sizes; the 2 cores were shared, load average ~12, so absolute times are noisy; the
ratios are same-run): hashed forward / dense time = 7.9x (n=128), 8.1x (256), 8.5x (512), 28x
(1024), 12x (2048); backward 26x-108x. No crossover. From n = 1024 the K = n²/8 weights (512 KiB
in float32) no longer fit in L2 and every virtual entry is a random gather (the scatter of dw in
the backward), which is where the ratio jumps. Before this benchmark the kernels indexed
``X[b, j]``/``Y[b, i]`` with power-of-two strides (L1 set aliasing): n = 512 took 98 ms; the
transposed, batch-contiguous loops take 2.4 ms.
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits
from _common import parse_args, print_cases, print_environment, record, time_fn

from refimpl.kernels.hashing import hashed_matmul, hashed_matmul_backward
from refimpl.sharing import hash_seeds, hashed_matrix


def main(argv=None) -> list[dict]:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_environment()
    # one BLAS thread: a 2-thread GEMM on the shared 2 cores stalls for a scheduler quantum
    # whenever another process holds a core, which would make the dense baseline look slow
    threadpool_limits(limits=1, user_api="blas")
    sizes = (128, 256, 512) if args.quick else (128, 256, 512, 1024, 2048)
    batch, cases, crossover = 32, [], None
    rng = np.random.default_rng(0)
    sb, ss = hash_seeds(7)
    for n in sizes:
        K = n * n // 8
        w = rng.standard_normal(K).astype(np.float32)
        X = rng.standard_normal((batch, n)).astype(np.float32)
        V = hashed_matrix(w, (n, n), 7)                       # (n, n) for the dense baseline
        Y = hashed_matmul(X, w, n, sb, ss, backend="numba")
        err = float(np.abs(Y - X @ V.T).max() / (np.abs(X).sum(1).max() * np.abs(w).max()))
        assert err < 1e-5, f"hashed product disagrees with dense (relative {err:.2e})"
        t_dense = time_fn(lambda X=X, V=V: X @ V.T, repeat=args.repeat or 7)
        t_hash = time_fn(lambda X=X, w=w, n=n: hashed_matmul(X, w, n, sb, ss,
                                                             backend="numba"),
                         repeat=args.repeat or 5)
        peers = {"numpy_dense_blas": t_dense}
        if n <= 512:
            peers["hashed_numpy_reference"] = time_fn(
                lambda X=X, w=w, n=n: hashed_matmul(X, w, n, sb, ss, backend="numpy"),
                repeat=3)
        cases.append(record("hashing", f"n={n} K=n^2/8 B={batch}", "hashed_matmul[numba]",
                            t_hash, peers=peers, numpy_baseline="numpy_dense_blas",
                            flops=2.0 * batch * n * n, bytes_moved=4.0 * (K + 2 * batch * n),
                            params={"n": n, "K": K, "batch": batch,
                                    "stored_floats_dense": n * n, "stored_floats_hashed": K},
                            headline=n == 1024, quick=args.quick))
        # backward: dX = dY V and dw (bucket sums of ξ·dYᵀX) vs the dense dX = dY V, dV = dYᵀX
        dY = rng.standard_normal((batch, n)).astype(np.float32)
        t_bwd_dense = time_fn(lambda dY=dY, X=X, V=V: (dY @ V, dY.T @ X), repeat=args.repeat or 7)
        t_bwd = time_fn(lambda dY=dY, X=X, w=w: hashed_matmul_backward(dY, X, w, sb, ss,
                                                                      backend="numba"),
                        repeat=args.repeat or 5)
        cases.append(record("hashing", f"backward n={n} K=n^2/8 B={batch}",
                            "hashed_matmul_backward[numba]", t_bwd,
                            peers={"numpy_dense_blas": t_bwd_dense},
                            numpy_baseline="numpy_dense_blas", flops=4.0 * batch * n * n,
                            params={"n": n, "K": K, "batch": batch}, quick=args.quick))
        if crossover is None and t_hash.best <= t_dense.best:
            crossover = n
    print_cases(cases)
    print(f"# crossover size (hashed at least as fast as dense BLAS): {crossover}; memory "
          "ratio dense / hashed = 8 at every size")
    return cases


if __name__ == "__main__":
    main()
