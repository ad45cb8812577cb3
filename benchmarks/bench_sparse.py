"""CSR sparse × dense (refimpl.kernels.sparse) vs dense NumPy BLAS and scipy.sparse.

Survey §2.1.2 stores pruned weights in CSR; §8 warns that unstructured sparsity only pays off at
high sparsity. This script measures where it does, on this machine, as speed-up ratios against
the honest baselines in the same run:

* SpMV   ``y = W @ x``        (W: n × n, x: n)
* SpMM   ``Y = W @ X``        (X: n × 32)
* Linear ``Y = X @ W.T``      (X: 32 × n, W in CSR: a pruned layer's forward pass)

for float32 and float64 over sparsity 50–99%, at n = 1024 and n = 4096. ``×dense`` and
``×scipy`` are ``t_baseline / t_refimpl`` (> 1: refimpl is faster). The NumPy reference
(``backend="numpy"``) is shown at n = 1024 for scale. Issue targets (2 cores, OpenBLAS variables
unset): CSR SpMV ≥ 2.5× dense and ≥ 2× scipy.sparse at 90% sparsity, n = 4096.

Run the headline as::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_sparse.py [--quick]

Measured on 2026-11-23 (2 vCPUs, AMD EPYC (Zen 1); OpenBLAS 0.3.31 'Haswell' kernel, 2 threads;
numba 0.68.1, 2 threads; OPENBLAS_* unset). Headline, SpMV at 90% sparsity, n = 4096
(targets 2.5x dense, 2x scipy.sparse), ``--headline`` twice on an idle machine, 16:06 UTC, after
the four-accumulator unsigned row loop and uint16 column indices:

    float32: 4.01x / 4.42x dense, 3.02x / 3.43x scipy.sparse    (1 thread: 1.59x / 1.60x scipy)
    float64: 6.89x / 6.16x dense, 2.51x / 2.45x scipy.sparse    (1 thread: 1.34x / 1.44x scipy)

Both targets are met in both precisions. (Before that change, 15:01 UTC: float32 1.98x,
float64 1.84x scipy.sparse: the plain loop is bound by the 3-cycle latency of its single
add chain, exactly like scipy's.) The --quick run of 16:32 UTC (idle) repeats the headline
(float32 2.94x scipy / 4.02x dense, float64 2.41x / 6.68x). Where CSR loses (same run):
  * 50% sparsity: 0.3-0.9x dense for every op, except float64 SpMV at n = 4096 (1.41x);
  * n = 1024 SpMV: the 4 MB matrix sits in cache and dense gemv takes 0.056 ms, so float32
    CSR only breaks even at 90% (1.05x) and loses at 80% (0.52x) and 95% (0.76x, timer-level
    noise at 0.06 ms); float64 wins from 80%;
  * it wins at n = 4096 from 90% (SpMV 4.3x / 6.9x, SpMM 3.1x / 3.5x, X@W.T 2.7x / 2.7x dense,
    float32 / float64) and is 2.0-3.4x scipy.sparse there; at 99% sparsity and n = 1024 the
    scipy kernel's lower call overhead wins (0.5-0.6x for SpMV).

Issue #19: the best peer and the machine's limit. ``torch.sparse_csr`` (``to_sparse_csr``,
int64 indices; ``T @ x``, ``T @ X``, ``(T @ Xᵀ)ᵀ``) joins scipy and dense BLAS in every row
(torch with Numba's thread count; in the headline with 1 and with 2 threads like the others),
and every case prints its achieved GB/s (compulsory traffic: values, column indices and row
pointers once, the dense operand and output once) as a fraction of the STREAM-like bandwidth
measured in the same run; the SpMM / X@W.T rows with 32 columns are compute-bound by the
balance point. At n = 4096, 90 % sparse, the float32 matrix is 10 MiB (values + uint16
indices): it fits the 32 MiB L3, so between calls the kernel reads it from cache and may
exceed the DRAM bandwidth (printed "in LLC"). Target: CSR >= 2x ``torch.sparse_csr``.

Measured 6 Dec 2026 (2 vCPUs AMD EPYC Zen 4 (LLVM znver4; AVX-512 incl. VNNI, BF16, VPOPCNTDQ; 32 MiB L3), NumPy's OpenBLAS 0.3.31 'SkylakeX' kernel, 2 threads, numba 0.68.1 with 2 threads, torch 2.13 CPU with ``torch.set_num_threads(2)``, OPENBLAS_* unset); shared machine:

    ``--headline --repeat 9``, 20:22 UTC, load 1.1 (best times, ms):
      threads dtype    dense  scipy  torch  refimpl | x dense  x scipy  x torch
      1       float32  2.94   1.44   2.15   1.15    | 2.56     1.25     1.87
      1       float64  5.55   1.89   2.27   0.927   | 5.99     2.04     2.45
      2       float32  4.00   1.29   0.474  0.649   | 6.16     1.98     0.73
      2       float64  3.59   1.35   1.00   0.412   | 8.72     3.29     2.43
      -> vs torch.sparse_csr the >= 2x target is met in float64 and NOT in float32 (1.87x
         on one thread, 0.73x on two: torch's 2-thread float32 SpMV was the best peer);
         the refimpl float32 kernel ran at 0.65 ms here against 0.29 ms measured quietly
         for the issue, so this spell was not quiet either. Roofline: 28.4 GB/s, 100
         GFLOP/s; refimpl float32 15.6 GB/s, float64 41 GB/s (the matrix sits in the L3).
    ``refimpl bench --quick``, 21:00-21:08 UTC, load 11-15: float32, 1 thread 0.663 ms vs
      torch 1.50 ms (2.27x), 2 threads 0.806 ms vs torch 46 ms (even torch's best of 21
      samples stalled) — under that load the 2-thread torch peer is not measurable, so
      the 2-thread ratio is not quoted.

Issue #19 item 2, which cases lose to ``torch.sparse_csr``: the coordinator's quiet ``--quick``
run (2026-12-06 23:31 UTC, load 0.47, before the SpMM kernel below; best/best): SpMV n = 4096
90 % on 2 threads 0.92× (0.62 vs 0.57 ms; 1 thread 2.36×); every batch-32 product at n = 1024
from 80 % sparsity (SpMM 0.50–0.88×, X@W.T 0.18–0.63×); at n = 4096, X@W.T 90 % 0.90× (4.56 vs
4.09 ms), SpMM 90 % 1.15×, and at 99 % SpMV 0.33×, SpMM 0.80×, X@W.T 0.46×. The SpMM / X@W.T
loop nest was the weak point: LLVM reloaded and stored ``Y[i, :]`` for every stored value.

After the IR row kernel (``refimpl.kernels.sparse._spmm_row``: batch columns in registers, 4
accumulator chains, 256-bit tail), ``--torch-batches`` (n = 4096, 90 %, float32, interleaved
rounds with 0.3 s idle before each call, 9 rounds; AMD EPYC Zen 4, OpenBLAS SkylakeX; the
machine shared with 5 other sessions, load 12–14 — figures provisional until re-run quiet):

    2026-12-07 00:13 UTC, 2 threads, wall (best ms, refimpl / torch; ×torch best/best, medians):
      batch  1 SpMV   1.15 / 1.71   1.48× (medians 2.40×)
      batch  8 X@W.T  1.84 / 5.33   2.90× (11.6×)
      batch 32 X@W.T  3.38 / 20.8   6.16× (6.55×)
      batch 64 X@W.T  6.45 / 36.0   5.57× (8.10×)
    00:14 UTC, ``--one-thread --cpu-time`` (CPU ms, the steadiest figure under load):
      batch  1 SpMV   1.17 / 1.76   1.51× (1.60×)
      batch  8 X@W.T  1.86 / 2.97   1.60× (1.39×)
      batch 32 X@W.T  3.43 / 6.38   1.86× (1.93×)
      batch 64 X@W.T  9.42 / 15.0   1.59× (1.61×)

So per core refimpl is 1.5–1.9× torch.sparse_csr at every batch, and the ≥ 2× target is not
met on CPU time; the 2-thread wall ratios (2.9–6.2× for batches ≥ 8) mostly show torch's
threads suffering more from the load and are not evidence. SpMV (batch 1) is unchanged from
the scalar four-accumulator loop (512-bit gathers were slower, see the kernel's docstring); in
the quiet run its two threads gained little over one (0.62 vs 0.67 ms), which a quiet re-run
should look at. Same session, one thread, the kernel alone (CPU ms, 4096², 90 %): old loop nest
5.6 / 6.1 / 6.4 ms at batch 1 / 8 / 32, IR rows 0.79 / 1.27 / 2.4 ms.

Caveat, measured: with another process on one of the 2 cores, or right after an OpenBLAS call
whose worker threads still spin, a 2-thread kernel (BLAS or Numba prange) loses whole 4 ms
scheduler ticks; timings then collapse to multiples of 4 ms (e.g. 7.76 ms instead of 1.1 ms in
the 15:08 run). The script idles 0.3 s before each measurement, times slow calls one by one,
and reports best and median; read the load average it prints before trusting 2-thread rows.

Why the second thread adds little to SpMV (issue #19 follow-up, 2026-12-07 00:47–01:03 UTC,
same machine, load 1.1–1.7 — another session's tests held one core much of the time):

* The headline times calls back to back (``time_fn``), and every parallel call on Numba's
  ``workqueue`` layer wakes the worker threads: an empty 2-iteration ``prange`` costs 75 µs
  (the iterations start 44 and 54 µs after the call; the calling thread only waits), 120–180
  µs after 0.3 s idle. The float32 SpMV kernel takes ~0.6 ms on one core, so two threads can
  at best reach ~0.3 + 0.05–0.08 ms; per-step timing of the public call (4096², 90 %): checks
  0.04 ms, row blocks and the output 0.02 ms, kernel 0.88 ms (other core busy).
* Mid-size SpMVs lost to the wake-up outright: the quiet 23:30 run had the threaded kernel at
  0.154 ms for 1024², 90 % (105 k values) against 0.039 ms serial at 95 % (52 k values), and
  0.263 ms at 4096², 99 % (168 k). ``csr_matvec`` now runs serially below
  ``SPMV_PARALLEL_MIN_NNZ`` = 2^17 stored values (was 2^16; the fitted crossover is near
  500 k values, but ``tests/kernels/test_fork_safety.py`` needs its 160 k-value SpMV threaded).
* TBB instead of ``workqueue`` (the ``tbb`` wheel loaded through ``LD_LIBRARY_PATH`` for the
  test only): launches in 2 µs back to back, but its workers spin after a call and fight
  torch's OpenMP threads: ``--headline`` 01:03 UTC, 2 threads, float32 refimpl 0.954 ms and
  torch.sparse_csr 12.0 ms under TBB against 0.416 / 0.453 ms under ``workqueue`` one minute
  later (load 1.05 → 1.71). Not adopted.

``--headline``, 01:02 and 01:03 UTC (workqueue, load 1.1–1.7, best ms; ×torch best/best,
medians): 1 thread float32 0.65 / 0.681 vs torch 1.25 / 1.16 → 1.93× / 1.71× (medians 1.89×,
1.74×); 2 threads float32 0.562 / 0.416 vs torch 0.582 / 0.453 → 1.04× / 1.09× (medians 1.53×,
1.77×); float64 2 threads 1.48× / 2.26×. The ≥ 2× torch.sparse_csr target is NOT met in
float32 on 2 threads: the wake-up is ~15–25 % of a 2-thread call, and torch (OpenMP, spinning
workers) pays none back to back.

Issue #19, 2026-12-07 02:25–03:00 UTC (same machine; shared with 4 other sessions, load 2.4–10
throughout, so 2-thread figures are provisional until the coordinator's quiet re-run):

* One core first. The scalar four-accumulator rows issue three loads per stored value (value,
  index, ``x[j]``), and with the matrix in the L3 that load rate, not bandwidth, bounds SpMV.
  The rows are now LLVM IR (``sparse._spmv_row``): 16 values per step as one vector load, the
  16 ``uint16`` indices as four 64-bit loads split by shifts, the 16 ``x[j]`` inserted into a
  vector, one vector ``fmuladd`` — 21 loads per 16 values instead of 48. One thread, kernel
  alone, CPU time, best of 300: float32 0.34–0.38 vs 0.56–0.57 ms, float64 0.54 vs 0.74 ms
  (load 1.2–2.7). The same rows with ``vgatherdps`` for ``x`` (16 or 2 × 8 lanes): 0.59–0.61
  vs 0.33–0.35 ms for the inserts (load 6).
* Where the 2-thread time went (``--spmv-split``, load 2.4, back to back / 0.3 s idle, best
  ms): one-thread kernel 0.342 / 0.476; an empty ``prange`` 0.036 / 0.055; the same rows under
  ``prange`` 0.41 / 0.55 — no faster than one thread here: the calling thread only waits while
  ``workqueue`` wakes both workers, and the ``prange`` split is static, so the worker that
  wakes later (or shares its core with another process) sets the time.
* The threaded SpMV is now a team (``sparse._SpmvTeam`` then, :mod:`refimpl.kernels._team`
  since 2026-12-07, with its helpers pinned off the caller's CPU): the calling thread starts on the
  rows at once, a helper thread (nogil kernel, asleep on a queue between calls: woken in 13–49
  µs against 38–101 µs for the empty ``prange``, load 6.9) joins, and both claim blocks of
  rows of equal work (64 blocks) from one atomic counter, so neither waits for the other's
  start and a late helper only takes fewer blocks: about ``(T1 + wake) / 2`` instead of
  ``wake + T1 / 2``. The per-thread split is printed: under load 2.4–6.6 the helper finished
  a median of 4–5 of 64 blocks back to back and 0 after idle — the other core was held by
  another process, and (presumably, not verified) the woken helper waits for that process's
  time slice (Linux 6.18, EEVDF scheduler); then the team costs what one thread costs (team rows 0.347 vs serial 0.342 back to back),
  where the ``prange`` driver was slower than one thread (0.41 / 0.55).
* With a core free, three ``--spmv-split`` runs at 02:58–03:04 UTC (load 1.2–1.6; back to
  back / 0.3 s idle, best ms):

      run    serial  prange rows  team rows  public call  torch.sparse_csr  team split
      02:58  0.343   0.424/0.434  0.186/0.478  0.208/0.643  0.648/1.41      34:30 / 39:25
      02:59  0.345   0.387/0.834  0.369/0.766  0.587/0.859  1.32/1.48       31.5:32.5 / 64:0
      03:03  0.468   0.594/0.589  0.350/0.458  0.372/0.658  1.26/1.51       52.5:11.5 / 30.5:33.5

  The 02:58 run is the one with the second core free: the team halves the one-thread time
  (0.186 vs 0.343 ms; the public call 0.208 ms) and is 3.1× torch.sparse_csr back to back
  (0.648 ms), 2.2–2.7× against the 0.45–0.57 ms torch took in the quieter runs of
  2026-12-06/07 above. In the 02:59 run the split was even but the team was no faster than
  one thread: both cores were shared with another process. ``--headline`` right after each
  run (load 1.2–2.4): float32, 1 thread 0.375 / 0.388 ms vs torch 1.60 / 1.73 (4.3× / 4.5×)
  and scipy 1.35 / 1.43 (3.6× / 3.7×); 2 threads 0.583 / 0.408 ms vs torch 12.0 / 13.6 ms —
  torch's OpenMP threads collapse when a core is taken, so that 2-thread ratio (20–33×) is
  not evidence; the coordinator's quiet re-run decides the ≥ 2× target.
* ``refimpl bench --quick --json`` (sparse only), 03:04–03:06 UTC, load 1.5 → 1.1: the
  headline case "CSR SpMV n=4096 float32 90% sparse, 2 thread(s)" 0.223 ms vs torch.sparse_csr
  0.914 ms (4.09×, medians 4.17×), 7.76× dense BLAS; 1 thread float32 0.625 vs torch 2.14 ms
  (3.43×), float64 1.17 vs 3.44 ms (2.93×). 03:10–03:11 UTC, load 1.1 → 0.8: ``--spmv-split``
  public call 0.219 ms back to back (split 33:31), torch 0.84 ms; ``--headline`` float32 2
  threads 0.275 vs torch 0.879 ms (3.19×, medians 3.12×), 1 thread 0.362 vs 1.44 ms (3.96×).
  Torch's 2-thread times here (0.84–0.91 ms) are above the 0.45–0.57 ms it took on the quieter
  machine of the earlier runs; against those the 2-thread SpMV (0.19–0.22 ms when it has a core
  free) is 2.0–3.0×. float64 one-thread times swing 0.68–1.6 ms from call to call at load ~1:
  its 16.8 MB (values + uint16 indices) no longer stay in the shared 32 MiB L3 when other
  processes run, and the old scalar rows swing the same way (1.4–1.6 ms in the same run).
Session of 2026-12-07 18:23–21:20 UTC, on another machine: a 2-vCPU Intel Xeon with AMX and
AVX512-FP16 under KVM (LLVM names it "rocketlake"), 4 MiB L2 per core, NumPy's OpenBLAS 0.3.31
'SkylakeX' kernel, torch 2.13 CPU, OPENBLAS_* unset, load 0.1–0.9.

* Before any change, ``--headline --quick``: float32 2 threads 0.367–0.381 ms vs torch
  0.636–0.686 (1.73–1.80×), 1 thread 0.58–0.59 ms; float64 2 threads 0.43–0.46 vs torch
  0.77–0.78 (1.67–1.82×). ``--spmv-split`` (back to back, best): one-thread kernel 0.444 ms,
  team rows 0.288, public ``csr_matvec`` 0.381, torch 1.07: the public call spent ~90 µs in
  Python steps that run from cold caches after the matrix has streamed through L2.
* Two changes (``refimpl.kernels.sparse``): the row kernel loads the 16 ``x`` values with one
  ``vgatherdps`` on CPUs with AVX512-FP16 (``SPMV_GATHER``; one thread 0.42–0.44 vs
  0.53–0.56 ms here, float64 0.64 vs 0.66; on Zen 4 the inserts stay), and a compiled front
  (``_spmv_front``) replaces the Python steps after the first call of given types.
* After, two ``--headline --quick`` runs alternated with the old tree: float32 2 threads
  0.29–0.30 ms vs torch 0.69–0.70 (**2.30–2.41×**), 1 thread 0.42–0.45 vs 1.29–1.33
  (2.9–3.1×); float64 2 threads 0.40 ms vs torch 0.76–0.78 (1.91–1.94×: still below 2×; its
  16.8 MB come from L3 at ~42 GB/s, near what two cores draw here). ``refimpl bench --quick``
  18:37–18:48 UTC: the headline case 0.322 ms vs torch 0.69 ms (2.14×), 3.76× dense BLAS;
  18:55–19:05 UTC: 0.308 vs 0.696 ms (2.26×).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import scipy.sparse as sp
from _common import (
    note_missing_peer,
    parse_args,
    print_cases,
    print_environment,
    print_table,
    ratio,
    record,
    time_fn,
    torch_or_none,
    write_json,
)

from refimpl.kernels.sparse import csr_from_dense, csr_matmat, csr_matvec, dense_x_csr_T

BATCH = 32
TARGET_DENSE = 2.5
TARGET_SCIPY = 2.0
TARGET_TORCH = 2.0


def random_sparse(rng, n: int, sparsity: float, dtype) -> np.ndarray:
    """An n × n Gaussian matrix with exactly round(sparsity * n²) zeros at random positions."""
    W = rng.standard_normal((n, n)).astype(dtype)
    flat = W.reshape(-1)  # (n*n,) view
    k = int(round(sparsity * flat.size))
    flat[rng.permutation(flat.size)[:k]] = 0
    return W


def _torch_ops(torch, W, x, X, Xb):
    """torch's CSR peer (``Tensor.to_sparse_csr``, int64 indices) for the three products:
    ``T @ x``, ``T @ X`` and ``X @ W.T`` as ``(T @ Xᵀ)ᵀ`` (a view; torch has no CSR on the
    right of a dense product on CPU that is faster)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        T = torch.from_numpy(W).to_sparse_csr()
    xt, Xt, XbT = torch.from_numpy(x), torch.from_numpy(X), torch.from_numpy(Xb.T.copy())
    return {"SpMV": lambda: T @ xt, "SpMM": lambda: T @ Xt, "X@W.T": lambda: (T @ XbT).T}


def _traffic(A, op, n, itemsize):
    """Compulsory bytes of one product with refimpl's CSR: the matrix (values, uint16/uint32
    column indices, row pointers) read once, the dense operand read once, the output written
    once; flops = 2 · nnz · columns."""
    cols = 1 if op == "SpMV" else BATCH
    mat = A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
    return mat + 2 * n * cols * itemsize, 2 * A.data.size * cols


def bench_one(rng, n, dtype, sparsity, repeat, with_reference, only_op=None, torch=None,
              quick=True, tag="", headline_case=False):
    W = random_sparse(rng, n, sparsity, dtype)
    A = csr_from_dense(W)
    S = sp.csr_matrix(W)  # scipy: int32 indices, same values
    x = rng.standard_normal(n).astype(dtype)
    X = rng.standard_normal((n, BATCH)).astype(dtype)  # (n, batch)
    Xb = np.ascontiguousarray(X.T)  # (batch, n): a batch of layer inputs
    St = S.T.tocsr()  # scipy's best layout for X @ W.T: (W.T)ᵀ products via S.T on the right
    t_ops = _torch_ops(torch, W, x, X, Xb) if torch is not None else {}
    ops = {
        "SpMV": (lambda: W @ x, lambda: S @ x, lambda: csr_matvec(A, x, backend="numba"),
                 lambda: csr_matvec(A, x, backend="numpy")),
        "SpMM": (lambda: W @ X, lambda: S @ X, lambda: csr_matmat(A, X, backend="numba"),
                 lambda: csr_matmat(A, X, backend="numpy")),
        "X@W.T": (lambda: Xb @ W.T, lambda: Xb @ St, lambda: dense_x_csr_T(Xb, A, backend="numba"),
                  lambda: dense_x_csr_T(Xb, A, backend="numpy")),
    }
    rows = []
    for op, (f_dense, f_scipy, f_ours, f_ref) in ops.items():
        if only_op and op != only_op:
            continue
        # correctness first: a fast wrong kernel is worthless
        ref = np.asarray(f_dense(), dtype=np.float64)
        err = np.max(np.abs(np.asarray(f_ours(), dtype=np.float64) - ref))
        scale = np.max(np.abs(ref)) or 1.0
        assert err <= (1e-4 if dtype == np.float32 else 1e-10) * scale, (op, err)
        t_dense = time_fn(f_dense, repeat=repeat)
        t_scipy = time_fn(f_scipy, repeat=repeat)
        t_ours = time_fn(f_ours, repeat=repeat)
        t_torch = None
        if op in t_ops:
            got = np.asarray(t_ops[op](), dtype=np.float64).reshape(ref.shape)
            assert np.max(np.abs(got - ref)) <= (1e-4 if dtype == np.float32 else 1e-10) * \
                scale, ("torch", op)
            t_torch = time_fn(t_ops[op], repeat=repeat)
        row = {"n": n, "dtype": np.dtype(dtype).name, "sparsity": sparsity, "op": op,
               "dense_ms": t_dense.best * 1e3, "scipy_ms": t_scipy.best * 1e3,
               "refimpl_ms": t_ours.best * 1e3,
               "x_dense": ratio(t_dense.best, t_ours.best),
               "x_scipy": ratio(t_scipy.best, t_ours.best),
               "x_dense_med": ratio(t_dense.median, t_ours.median),
               "x_scipy_med": ratio(t_scipy.median, t_ours.median)}
        if t_torch is not None:
            row["torch_ms"] = t_torch.best * 1e3
            row["x_torch"] = ratio(t_torch.best, t_ours.best)
            row["x_torch_med"] = ratio(t_torch.median, t_ours.median)
        nbytes, flops = _traffic(A, op, n, np.dtype(dtype).itemsize)
        peers = {"numpy dense BLAS": t_dense, "scipy.sparse CSR": t_scipy,
                 "torch.sparse_csr": t_torch}
        row["case"] = record(
            "sparse", f"CSR {op} n={n} {np.dtype(dtype).name} {sparsity:.0%} sparse{tag}",
            "refimpl csr (numba)", t_ours, peers=peers, numpy_baseline="numpy dense BLAS",
            bytes_moved=nbytes, flops=flops, quick=quick,
            params={"n": n, "dtype": np.dtype(dtype).name, "sparsity": sparsity, "op": op,
                    "batch": 1 if op == "SpMV" else BATCH},
            headline=headline_case)
        if with_reference:
            t_ref = time_fn(f_ref, repeat=max(3, repeat // 3), min_sample=0)
            row["numpy_ref_ms"] = t_ref.best * 1e3
        rows.append(row)
    return rows


def headline(rng, repeat, torch=None, quick=True) -> list[dict]:
    """SpMV at 90% sparsity, n = 4096, with 1 thread everywhere and with all threads."""
    import numba
    from threadpoolctl import threadpool_limits

    out = []
    n_threads = numba.config.NUMBA_NUM_THREADS
    for threads in (1, n_threads):
        numba.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        with threadpool_limits(limits=threads):
            for dtype in (np.float32, np.float64):
                for r in bench_one(rng, 4096, dtype, 0.9, repeat, False, only_op="SpMV",
                                   torch=torch, quick=quick, tag=f", {threads} thread(s)",
                                   headline_case=(threads == n_threads
                                                  and dtype == np.float32)):
                    r["threads"] = threads
                    out.append(r)
    numba.set_num_threads(n_threads)
    if torch is not None:
        torch.set_num_threads(n_threads)
    return out


TORCH_BATCHES = (1, 8, 32, 64)


def _interleaved(fns: dict, rounds: int, clock, settle: float = 0.3) -> dict:
    """``{name: (best, median)}`` seconds per call, the functions called in turn (one call each
    per round, ``settle`` s idle before each), so a busy spell hits every one alike. Calls
    under 2 ms are looped to last ~2 ms per sample (clock resolution)."""
    loops = {}
    for k, f in fns.items():  # warm-up (JIT, caches, torch's first-call setup) and loop count
        f()
        t0 = time.perf_counter()
        f()
        loops[k] = max(1, min(64, int(2e-3 / max(time.perf_counter() - t0, 1e-7))))
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            time.sleep(settle)
            t0 = clock()
            for _ in range(loops[k]):
                f()
            times[k].append((clock() - t0) / loops[k])
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def torch_batches(rng, rounds: int, torch, clock, threads: int, quick=True) -> list[dict]:
    """refimpl's CSR against ``torch.sparse_csr`` at n = 4096, 90 % sparse, float32: SpMV and
    the pruned-layer product ``X @ W.T`` at each batch of :data:`TORCH_BATCHES`, interleaved
    rounds (issue #19 target: ≥ 2× torch.sparse_csr)."""
    n, sparsity, dtype = 4096, 0.9, np.float32
    W = random_sparse(rng, n, sparsity, dtype)
    A = csr_from_dense(W)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        T = torch.from_numpy(W).to_sparse_csr()
    rows = []
    for batch in TORCH_BATCHES:
        Xb = rng.standard_normal((batch, n)).astype(dtype)  # (batch, in_features)
        XbT = torch.from_numpy(np.ascontiguousarray(Xb.T))  # (in_features, batch) for torch
        if batch == 1:
            x = Xb[0]
            xt = torch.from_numpy(x.copy())
            fns = {"refimpl": lambda x=x: csr_matvec(A, x, backend="numba"),
                   "torch": lambda xt=xt: T @ xt}
            op = "SpMV"
        else:
            fns = {"refimpl": lambda Xb=Xb: dense_x_csr_T(Xb, A, backend="numba"),
                   "torch": lambda XbT=XbT: (T @ XbT).T}
            op = "X@W.T"
        ref = Xb.astype(np.float64) @ W.T.astype(np.float64)  # (batch, n)
        absref = np.abs(Xb).astype(np.float64) @ np.abs(W).T.astype(np.float64)
        K = int(np.count_nonzero(W, axis=1).max()) + 2
        for k, f in fns.items():  # both within the float32 rounding bound of the product
            got = np.asarray(f(), dtype=np.float64).reshape(ref.shape)
            assert np.all(np.abs(got - ref) <= K * 2.0 ** -24 * absref + 1e-30), k
        load0 = os.getloadavg()[0]
        t = _interleaved(fns, rounds, clock)
        load1 = os.getloadavg()[0]
        r = {"batch": batch, "op": op, "threads": threads, "refimpl_ms": t["refimpl"][0] * 1e3,
             "torch_ms": t["torch"][0] * 1e3, "refimpl_med_ms": t["refimpl"][1] * 1e3,
             "torch_med_ms": t["torch"][1] * 1e3,
             "x_torch": ratio(t["torch"][0], t["refimpl"][0]),
             "x_torch_med": ratio(t["torch"][1], t["refimpl"][1]),
             "load": f"{load0:.2f}->{load1:.2f}"}
        nbytes, flops = _traffic(A, "SpMV" if batch == 1 else "SpMM", n, 4)
        if batch != 1:
            nbytes += 2 * n * batch * 4 - 2 * n * BATCH * 4  # _traffic assumes BATCH columns
            flops = 2 * A.nnz * batch
        r["case"] = record(
            "sparse", f"CSR {op} vs torch n={n} float32 90% sparse batch={batch}, "
            f"{threads} thread(s), {clock.__name__}", "refimpl csr (numba)", t["refimpl"],
            peers={"torch.sparse_csr": t["torch"]}, bytes_moved=nbytes, flops=flops,
            quick=quick, params={"n": n, "batch": batch, "threads": threads,
                                 "clock": clock.__name__})
        rows.append(r)
    return rows


def spmv_split(rng, rounds: int, torch=None) -> dict:
    """Where the 2-thread SpMV time goes (issue #19), n = 4096, 90 % sparse, float32, Numba's
    thread count: the one-thread kernel (``_csr_matvec_serial``), an empty ``prange`` and the
    same rows under ``prange`` on Numba's layer (a comparison driver defined here, not used by
    the library), the library's team driver (caller + helper threads claiming row blocks) and
    the public call, plus ``torch.sparse_csr``; each back to back (``time_fn``) and after
    0.3 s idle (interleaved rounds). The team's per-thread split is the median number of
    the 64 row blocks each thread finished (the caller, then the helper of each CPU)."""
    import numba

    from refimpl.kernels import _team as T
    from refimpl.kernels import sparse as S

    @numba.njit(parallel=True)
    def prange_rows(indptr, indices, data, x, y, bounds, gather):
        for t in numba.prange(bounds.shape[0] - 1):
            for i in range(bounds[t], bounds[t + 1]):
                if gather:
                    y[i] = S._spmv_row(indptr, indices, data, x, i, True)
                else:
                    y[i] = S._spmv_row(indptr, indices, data, x, i, False)

    @numba.njit(parallel=True)
    def empty_prange(a):
        for t in numba.prange(a.shape[0]):
            a[t] += 1.0

    n, threads = 4096, numba.get_num_threads()
    W = random_sparse(rng, n, 0.9, np.float32)
    A = csr_from_dense(W)
    x = rng.standard_normal(n).astype(np.float32)
    ip, y, e = S._uindptr(A), np.zeros(n, np.float32), np.zeros(threads)
    b_pr, b_team = S._row_blocks(A), S._row_blocks(A, S._TEAM_BLOCKS)
    team = T.team()
    g = S.SPMV_GATHER
    splits = []
    fns = {"serial kernel (1 thread)": lambda: S._csr_matvec_serial(ip, A.indices, A.data, x, y, g),
           "empty prange": lambda: empty_prange(e),
           "prange rows": lambda: prange_rows(ip, A.indices, A.data, x, y, b_pr, g),
           "team rows": lambda: splits.append(team.run(
               S._csr_matvec_team, (ip, A.indices, A.data, x, y, b_team, g),
               len(b_team) - 1, threads - 1)),
           "public csr_matvec": lambda: csr_matvec(A, x, backend="numba")}
    if torch is not None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            T = torch.from_numpy(W).to_sparse_csr()
        xt = torch.from_numpy(x)
        fns["torch.sparse_csr"] = lambda: T @ xt
    ref = csr_matvec(A, x, backend="numba")
    fns["team rows"]()
    assert np.array_equal(y, ref)  # the team's rows are the public result, bit for bit
    load0 = os.getloadavg()[0]
    b2b = {k: time_fn(f, repeat=rounds * 5) for k, f in fns.items()}
    split_b2b = np.median(np.array(splits), axis=0)
    splits.clear()
    idle = _interleaved(fns, rounds, time.perf_counter)
    split_idle = np.median(np.array(splits[1:]), axis=0)  # (the warm-up call excluded)
    load1 = os.getloadavg()[0]
    rows = [{"driver": k, "b2b_best_ms": b2b[k].best * 1e3, "b2b_med_ms": b2b[k].median * 1e3,
             "idle_best_ms": idle[k][0] * 1e3, "idle_med_ms": idle[k][1] * 1e3} for k in fns]
    return {"rows": rows, "threads": threads, "split_b2b": split_b2b.tolist(),
            "split_idle": split_idle.tolist(), "blocks": len(b_team) - 1,
            "load": f"{load0:.2f}->{load1:.2f}"}


def _main_spmv_split(args) -> int:
    env = print_environment()
    torch = torch_or_none()
    r = spmv_split(np.random.default_rng(0), args.repeat or 15, torch)
    print(f"\n## Where the {r['threads']}-thread SpMV time goes (4096², 90 %, float32; load "
          f"{r['load']})")
    print_table(r["rows"], ["driver", "b2b_best_ms", "b2b_med_ms", "idle_best_ms",
                            "idle_med_ms"], floatfmt=".3g")
    print(f"  team split (median blocks of {r['blocks']}, caller first): back to back "
          f"{r['split_b2b']}, after idle {r['split_idle']}")
    if args.json:
        write_json("bench_sparse_split", {"environment": env, **r})
    return 0


def main(argv=None) -> int:
    args = parse_args(__doc__.split("\n")[0], argv,
                      extra=[("--headline", "only the headline SpMV measurement"),
                             ("--torch-batches", "only refimpl vs torch.sparse_csr at batch "
                              "1 / 8 / 32 / 64 (interleaved rounds)"),
                             ("--one-thread", "with --torch-batches: Numba and torch on one "
                              "thread"),
                             ("--cpu-time", "with --one-thread: time by the process's CPU "
                              "seconds (time.process_time)"),
                             ("--spmv-split", "only where the 2-thread SpMV time goes: "
                              "serial, prange and team drivers, wake-up, per-thread split")])
    if args.torch_batches:
        return _main_torch_batches(args)
    if args.spmv_split:
        return _main_spmv_split(args)
    env = print_environment()
    torch = torch_or_none()
    if torch is None:
        note_missing_peer("sparse", "torch.sparse_csr", "torch not installed")
    rng = np.random.default_rng(0)
    repeat = args.repeat or (9 if args.quick else 21)
    sparsities = [0.5, 0.8, 0.9, 0.95, 0.99] if args.quick else [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]
    rows = []
    for n in (() if args.headline else (1024, 4096)):
        for dtype in (np.float32, np.float64):
            for s in sparsities:
                if args.quick and n == 4096 and s not in (0.5, 0.9, 0.99):
                    continue
                rows += bench_one(rng, n, dtype, s, repeat, with_reference=(n == 1024),
                                  torch=torch, quick=args.quick)
    cols = ["n", "dtype", "sparsity", "op", "dense_ms", "scipy_ms", "refimpl_ms", "x_dense",
            "x_scipy", "x_dense_med", "x_scipy_med"]
    if torch is not None:
        cols[6:6] = ["torch_ms"]
        cols += ["x_torch", "x_torch_med"]
    print("\n# times are the best of the samples; x_dense, x_scipy = baseline / refimpl from "
          "best times (> 1: refimpl faster); *_med from median times")
    for op in ("SpMV", "SpMM", "X@W.T") if rows else ():
        print(f"\n## {op}" + ("" if op == "SpMV" else f"  (batch {BATCH})"))
        sel = [r for r in rows if r["op"] == op]
        extra = ["numpy_ref_ms"] if any("numpy_ref_ms" in r for r in sel) else []
        print_table(sel, cols + extra, floatfmt=".3g")

    head = headline(rng, max(repeat, 21), torch=torch, quick=args.quick)
    print("\n## Headline: CSR SpMV at 90% sparsity, n = 4096 "
          f"(targets: ≥ {TARGET_DENSE}× dense, ≥ {TARGET_SCIPY}× scipy.sparse; scipy is "
          "single-threaded)")
    hcols = ["threads", "dtype", "dense_ms", "scipy_ms", "refimpl_ms", "x_dense", "x_scipy",
             "x_dense_med", "x_scipy_med"]
    if torch is not None:
        hcols[4:4] = ["torch_ms"]
        hcols += ["x_torch", "x_torch_med"]
    print_table(head, hcols, floatfmt=".3g")
    for r in head:
        ok_d = "meets" if r["x_dense"] >= TARGET_DENSE else "MISSES"
        ok_s = "meets" if r["x_scipy"] >= TARGET_SCIPY else "MISSES"
        line = (f"  {r['threads']} thread(s), {r['dtype']}: {r['x_dense']:.2f}× dense ({ok_d}), "
                f"{r['x_scipy']:.2f}× scipy.sparse ({ok_s})")
        if "x_torch" in r:
            ok_t = "meets" if r["x_torch"] >= TARGET_TORCH else "MISSES"
            line += f", {r['x_torch']:.2f}× torch.sparse_csr ({ok_t})"
        c = r["case"]
        line += (f"; best peer {c['best_peer']} ({c['ratio_best_peer']:.2f}×); "
                 f"{c['gb_per_s']:.1f} GB/s = {c['fraction_of_limit']:.0%} of memory bandwidth")
        print(line)
    print("\n## Every case against its best peer and the machine's limit (best times)")
    print_cases([r["case"] for r in rows + head])
    losers = [r for r in rows if r["x_dense"] < 1]
    if losers:
        print("\n## Where CSR loses to dense BLAS (x_dense < 1, best times):")
        for r in losers:
            print(f"  {r['op']:6s} n={r['n']} {r['dtype']} sparsity {r['sparsity']:.2f}: "
                  f"{r['x_dense']:.2f}×")
    if args.json:
        write_json("bench_sparse", {"environment": env, "rows": rows, "headline": head})
    # (the rows' "case" dicts are the records; write_json stores them too)
    return 0


def _main_torch_batches(args) -> int:
    import numba

    threads = numba.config.NUMBA_NUM_THREADS
    if args.one_thread:
        from threadpoolctl import threadpool_limits

        threads = 1
        threadpool_limits(1)
        numba.set_num_threads(1)
    env = print_environment()
    torch = torch_or_none(threads)
    if torch is None:
        note_missing_peer("sparse", "torch.sparse_csr", "torch not installed")
        return 0
    clock = time.process_time if (args.cpu_time and args.one_thread) else time.perf_counter
    rounds = args.repeat or (9 if args.quick else 21)
    from refimpl.kernels import sparse as S

    print(f"# refimpl vs torch.sparse_csr, n = 4096, 90 % sparse, float32, {threads} thread(s), "
          f"clock {clock.__name__}, {rounds} interleaved rounds; SpMM row chains: "
          f"{S._CHAINS}")
    rows = torch_batches(np.random.default_rng(0), rounds, torch, clock, threads, args.quick)
    print_table(rows, ["batch", "op", "threads", "refimpl_ms", "torch_ms", "x_torch",
                       "refimpl_med_ms", "torch_med_ms", "x_torch_med", "load"],
                floatfmt=".3g")
    for r in rows:
        ok = "meets" if r["x_torch"] >= TARGET_TORCH else "MISSES"
        print(f"  batch {r['batch']}: {r['x_torch']:.2f}x torch.sparse_csr (best/best, {ok} "
              f"the >= {TARGET_TORCH}x target), medians {r['x_torch_med']:.2f}x")
    if args.json:
        write_json("bench_sparse_torch", {"environment": env, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
