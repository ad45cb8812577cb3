"""Measured time and memory of every §7 attention variant as the sequence length grows.

Used by the chapter notebook (a small ``n`` range in quick mode) and by
``benchmarks/bench_attention.py`` (n = 1k…16k). Time is the best wall-clock time of
``repeat`` calls; memory is the peak of NumPy allocations traced by :mod:`tracemalloc` during
one call (every ``O(n)``/``O(n²)`` array of these implementations is a NumPy allocation; the
Numba kernels' per-block scratch of ``O(b (b + w))`` floats is not traced). The log-log slope of time or
memory against ``n`` is compared with the theoretical exponent of each method (Survey §7).
"""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable

import numpy as np

from refimpl.utils import as_rng, check_float, check_int

__all__ = ["Variant", "dense_baseline", "default_variants", "measure_scaling", "loglog_slope"]


@dataclass(frozen=True)
class Variant:
    """One attention method to time: ``fn(Q, K, V)`` and its theoretical exponents in ``n``.

    Part of Survey §7 (the measured scaling of the variants).
    """

    name: str
    fn: Callable
    time_slope: float
    memory_slope: float


def dense_baseline(Q, K, V):
    """Lean dense attention (Survey Eq. (68)): one ``n × n`` buffer, in-place softmax, BLAS.

    The honest dense baseline for timing (the validated
    :func:`refimpl.attention.dense.dense_attention` does extra masking and checking).
    """
    d = Q.shape[-1]
    S = Q @ np.swapaxes(K, -1, -2)  # (B, H, n, n)
    S *= Q.dtype.type(1.0 / np.sqrt(d))
    S -= S.max(axis=-1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    return S @ V


def default_variants(window: int = 256, block: int = 64, linformer_k: int = 256,
                     lsh_buckets: int = 64) -> list:
    """Every §7 variant with the budget that makes it sub-quadratic, and its theory exponents.

    Parameters
    ----------
    window : int
        Longformer's ``w`` (fixed: O(n w)).
    block : int
        Block size of Reformer chunks and Sinkhorn blocks (fixed: O(n b)).
    linformer_k : int
        Linformer's ``k`` (fixed: O(n k)); clipped to ``n``.
    lsh_buckets : int
        Reformer's number of hash buckets (fixed; at most ``n / block``), so that hashing is
        O(n d) and the time is the sort's O(n log n) plus the chunks' O(n · block · d).
    """
    from refimpl import attention as at
    from refimpl.kernels.attention import block_sparse_attention, sliding_window_attention

    def blockbert(Q, K, V):  # 4 blocks: a constant-factor saving, still quadratic
        # the Numba kernel, whatever $REFIMPL_BACKEND says: its one-row-of-scores memory is
        # what is measured (the NumPy reference holds the n²/4 block scores, slope 2)
        n = Q.shape[2]
        return block_sparse_attention(Q, K, V, np.eye(4, dtype=bool), n // 4, backend="numba")

    def linformer(Q, K, V):
        n = Q.shape[2]
        k = min(linformer_k, n)
        E = as_rng(0).standard_normal((k, n)).astype(Q.dtype) / np.sqrt(k)
        return at.linformer_attention(Q, K, V, E)

    def lsh(Q, K, V):
        # a fixed number of buckets: hashing costs O(n d n_buckets) (random rotations), so
        # buckets growing with n (n / block) would add an O(n² d / block) term — measured
        # time slope 1.23 over n = 4096…16384 with n / 64 buckets, 1.11 with 64 (the
        # sort's n log n: 1 + 1/ln n ≈ 1.11 there)
        n = Q.shape[2]
        return at.lsh_attention(Q, V, n_buckets=min(lsh_buckets, max(2, n // block)),
                                n_hashes=1, chunk_size=min(block, n), rng=0)

    def strided(Q, K, V):
        return at.sparse_transformer_attention(Q, K, V, "strided",
                                               int(round(np.sqrt(Q.shape[2]))))

    def window_for(n):
        return min(window, n - n % 2)

    return [
        Variant("dense", dense_baseline, 2.0, 2.0),
        Variant(f"sliding window w={window} (numba)",
                lambda Q, K, V: sliding_window_attention(Q, K, V, window_for(Q.shape[2]),
                                                         backend="numba"), 1.0, 1.0),
        Variant(f"sliding window w={window} (numpy)",
                lambda Q, K, V: sliding_window_attention(Q, K, V, window_for(Q.shape[2]),
                                                         backend="numpy"), 1.0, 1.0),
        Variant("Longformer w + 2 global",
                lambda Q, K, V: at.longformer_attention(Q, K, V, window_for(Q.shape[2]), 1,
                                                        (0, Q.shape[2] - 1)), 1.0, 1.0),
        Variant("BlockBERT 4 blocks", blockbert, 2.0, 1.0),
        Variant("Sparse Transformer strided l=√n", strided, 1.5, 1.5),
        Variant(f"Reformer LSH {lsh_buckets} buckets, chunk {block}", lsh, 1.0, 1.0),
        Variant("Star-Transformer", lambda Q, K, V: at.star_attention(Q, K, V), 1.0, 1.0),
        Variant(f"Linformer k={linformer_k}", linformer, 1.0, 1.0),
        # B = √n blocks of √n (rounded to powers of two): the soft sort mixes B blocks of n/B
        # keys per block, O(B n d) = O(n^1.5 d); local + sorted scores O(n · 2n/B)
        Variant("Sinkhorn B=√n blocks",
                lambda Q, K, V: at.sinkhorn_attention(Q, K, V, _sqrt_blocks(Q.shape[2])),
                1.5, 1.5),
        Variant(f"SortCut 4 blocks of {block}",
                lambda Q, K, V: at.sinkhorn_attention(Q, K, V, Q.shape[2] // block,
                                                      sortcut=min(4, Q.shape[2] // block)),
                1.0, 1.0),
        Variant("efficient attention Eq. 69",
                lambda Q, K, V: at.efficient_attention(Q, K, V), 1.0, 1.0),
        Variant("linear attention elu+1", lambda Q, K, V: at.linear_attention(Q, K, V), 1.0,
                1.0),
        Variant("causal linear attention",
                lambda Q, K, V: at.linear_attention(Q, K, V, causal=True), 1.0, 1.0),
    ]


def _sqrt_blocks(n: int) -> int:
    nb = 2 ** int(np.log2(n) // 2)
    while n % nb:
        nb //= 2
    return max(nb, 1)


def _measure(fn, Q, K, V, repeat, pause=0.0):
    best = np.inf
    for _ in range(repeat):
        if pause:
            time.sleep(pause)
        t0 = time.perf_counter()
        fn(Q, K, V)
        best = min(best, time.perf_counter() - t0)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn(Q, K, V)
    peak = tracemalloc.get_traced_memory()[1] - base
    if started:
        tracemalloc.stop()
    return best, peak


def measure_scaling(ns, variants=None, *, d: int = 64, repeat: int = 1, dtype=np.float32,
                    rng=0, threads: int | None = None, pause: float = 0.0,
                    progress=None) -> dict:
    """Time and peak memory of each variant for each sequence length.

    Parameters
    ----------
    ns : sequence of int
        Sequence lengths (multiples of 64 for the block-based variants).
    variants : list of Variant, optional
        Default :func:`default_variants`.
    d : int
        Head dimension (one batch, one head).
    repeat : int
        Best-of repeats for the time.
    dtype : numpy dtype
    rng : Generator or int
    threads : int, optional
        Limit BLAS and Numba to this many threads while measuring (``1`` gives stable
        numbers on a shared machine); ``None`` leaves both alone.
    pause : float
        Seconds of idle before each timed call (>= 0). After a multi-threaded BLAS call
        OpenBLAS's worker threads keep spinning for ~0.1 s and take a core from whatever runs
        next; a pause of ~0.3 s times every variant on a quiet machine instead of in the
        dense baseline's wake. ``0`` times back to back.
    progress : bool, optional
        Progress bar over ``ns`` (default: shown on a terminal).

    Returns
    -------
    dict
        ``{"n": [...], "variants": {name: {"time": [s...], "memory": [bytes...],
        "time_slope": theory, "memory_slope": theory}}}``.

    Notes
    -----
    Part of Survey §7: the measured counterpart of the cost columns of §7.1 and §7.2.
    """
    from refimpl.utils import progress_bar

    ns = [check_int(n, "n", 2) for n in ns]
    repeat = check_int(repeat, "repeat", 1)
    pause = check_float(pause, "pause", 0.0)
    variants = default_variants() if variants is None else variants
    rng = as_rng(rng)
    res = {"n": list(ns), "variants": {v.name: {"time": [], "memory": [],
                                                "time_slope": v.time_slope,
                                                "memory_slope": v.memory_slope}
                                       for v in variants}}
    import contextlib

    import numba
    from threadpoolctl import threadpool_limits

    old_numba = numba.get_num_threads()
    ctx = threadpool_limits(threads) if threads is not None else contextlib.nullcontext()
    with ctx:
        if threads is not None:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            small = [rng.standard_normal((1, 1, min(ns), d)).astype(dtype) for _ in range(3)]
            for v in variants:  # warm-up: load/compile Numba kernels outside the timed calls
                v.fn(*small)
            for n in progress_bar(ns, desc="n", progress=progress):
                Q, K, V = (rng.standard_normal((1, 1, n, d)).astype(dtype) for _ in range(3))
                for v in variants:
                    t, m = _measure(v.fn, Q, K, V, repeat, pause)
                    res["variants"][v.name]["time"].append(t)
                    res["variants"][v.name]["memory"].append(m)
        finally:
            numba.set_num_threads(old_numba)
    return res


def loglog_slope(ns, values, last: int = 3) -> float:
    """Least-squares slope of ``log(values)`` against ``log(ns)`` over the ``last`` points.

    Part of Survey §7 (the measured exponent of the cost in ``n``). ``ns``, ``values`` of shape
    (len(ns),); returns a float.
    """
    x = np.log(np.asarray(ns, dtype=float)[-last:])
    y = np.log(np.maximum(np.asarray(values, dtype=float)[-last:], 1e-300))
    return float(np.polyfit(x, y, 1)[0])
