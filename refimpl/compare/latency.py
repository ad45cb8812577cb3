"""Latency through the kernels a compressed model actually stores (Survey §8; issue #19 item 5).

The tour's ``ms`` column times the :mod:`refimpl.nn` forward pass, which multiplies dense float
arrays whatever the method stores — a pruned or 4-bit model looks exactly as fast as the
baseline there. This module times what a deployment would run instead: every stored weight
operator of the model applied once to a batch of ``B`` input vectors (one token step of
serving), each through the kernel of its stored format:

=============================  =================================================================
stored format                  kernel
=============================  =================================================================
dense float32                  BLAS ``X @ W.T``
unstructured sparse            CSR :func:`refimpl.kernels.sparse.dense_x_csr_T` (values decoded
                               from the codebook when quantised: the CSR kernel has no codes)
k-bit codes + codebook         :func:`refimpl.kernels.bitpack.kbit_matmul` on the packed codes
(k-means, uniform, binary α·s)
structured (heads/units cut)   the smaller dense (or k-bit) matrix of the kept rows/columns
low-rank ``A B``               two BLAS products
TT-matrix                      :func:`refimpl.kernels.tt.tt_matmul` on the cores
HashedNets                     :func:`refimpl.kernels.hashing.hashed_matmul` (no matrix formed)
=============================  =================================================================

Embedding tables are row gathers (no product) and are left out. A model from a chapter's tour
method carries no format record, so the format of each dense weight matrix is inferred from
its values: at least half exact zeros → CSR; at most ``2^k`` distinct values (k ≤ 8) → k-bit
codes with those values as the codebook; else dense. Records from a pipeline
(:class:`refimpl.compare.pipelines.Record`) say it exactly.

Both batch sizes matter (issue #19): at ``B = 1`` the products are memory-bound and a packed
format should win; at ``B = 64`` BLAS's compute throughput usually wins. The tour shows both,
so a row never claims a size gain while hiding a speed loss. Times are the best of ``repeat``
runs of the whole set of operators, with one BLAS thread and one Numba thread (every format
under the same condition, and robust to other processes on a shared CPU — multi-threaded BLAS
on an oversubscribed machine was measured up to 10^4 × slower at batch 64 here); ratios only
mean something within one run (``benchmarks/`` has the kernel-level ratios, multi-threaded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["WeightOp", "stored_ops", "infer_format", "stored_latency"]


@dataclass
class WeightOp:
    """One stored weight operator ``y = op(x)`` with its kernel.

    Attributes
    ----------
    name : str
    fmt : str
        ``"dense"``, ``"csr"``, ``"kbit<k>"``, ``"low-rank"``, ``"tt"``, ``"hashed"``.
    in_features : int
    run : callable
        ``run(X) -> Y`` for ``X`` of shape (B, in_features), float32.
    """

    name: str
    fmt: str
    in_features: int
    run: object


def infer_format(W: np.ndarray, max_bits: int = 4) -> tuple[str, object]:
    """The stored format a chapter method's dense weight implies: ``("csr", None)`` when at
    least half the entries are exactly 0; ``("kbit", (bits, codes, codebook))`` when there are
    at most ``2^bits`` distinct values (``bits ≤ max_bits``) and at least 4 entries per
    distinct value (a small dense matrix has few distinct values by chance); else
    ``("dense", None)``."""
    if np.count_nonzero(W) <= W.size // 2:
        return "csr", None
    vals, codes = np.unique(W, return_inverse=True)
    for bits in (1, 2, 3, 4, 8):
        if bits <= max_bits and vals.size <= (1 << bits) and W.size >= 4 * (1 << bits):
            cb = np.zeros(1 << bits)
            cb[:vals.size] = vals
            return "kbit", (bits, codes.reshape(W.shape), cb)
    return "dense", None


def _dense_op(name, W):
    Wt = np.ascontiguousarray(W.T, dtype=np.float32)  # (in, out): X @ W.T as one GEMM
    return WeightOp(name, "dense", W.shape[1], lambda X: X @ Wt)


def _csr_op(name, W):
    from refimpl.kernels.sparse import csr_from_dense, dense_x_csr_T

    A = csr_from_dense(np.asarray(W, dtype=np.float32))
    return WeightOp(name, "csr", W.shape[1], lambda X: dense_x_csr_T(X, A))


def _kbit_op(name, bits, codes, codebook):
    from refimpl.kernels.bitpack import kbit_matmul, pack_codes

    K = codes.shape[1]
    packed = pack_codes(np.asarray(codes, dtype=np.int64), bits)
    cb = np.asarray(codebook, dtype=np.float32)
    return WeightOp(name, f"kbit{bits}", K, lambda X: kbit_matmul(X, packed, bits, K, cb))


def _matrix_ops(name, W, rec=None):
    """Operators of one stored 2-D weight ``W`` (out, in), from its record or its values."""
    W = np.asarray(W)
    if rec is not None and rec.mask is not None and rec.structured:
        rows = rec.mask.any(axis=1)
        cols = rec.mask.any(axis=0)
        sub = W[np.ix_(rows, cols)]  # (kept out, kept in): what is stored
        if rec.codes is not None:
            full = np.zeros(W.shape, dtype=np.int64)
            full[rec.mask] = rec.codes
            return [_kbit_op(name, rec.bits, full[np.ix_(rows, cols)], rec.codebook)]
        return [_dense_op(name, sub)]
    if rec is not None and rec.mask is not None:
        return [_csr_op(name, W)]
    if rec is not None and rec.codes is not None:
        return [_kbit_op(name, rec.bits, np.asarray(rec.codes).reshape(W.shape), rec.codebook)]
    if rec is not None:
        return [_dense_op(name, W)]
    fmt, info = infer_format(W)
    if fmt == "csr":
        return [_csr_op(name, W)]
    if fmt == "kbit":
        bits, codes, cb = info
        return [_kbit_op(name, bits, codes, cb)]
    return [_dense_op(name, W)]


def stored_ops(model, records: dict | None = None) -> list[WeightOp]:
    """Every stored weight operator of ``model`` (embeddings excluded), each with the kernel of
    its stored format (see the module docstring).

    Parameters
    ----------
    model : refimpl.nn.Module
    records : dict of str to Record, optional
        Parameter name → how it is stored (from a pipeline); others are inferred.
    """
    records = records or {}
    pname = {id(p): n for n, p in model.named_parameters()}
    ops: list[WeightOp] = []
    for mname, mod in model.named_modules():
        cls = type(mod).__name__
        if cls in ("Embedding", "TTEmbedding", "AlbertEmbeddings", "BertEmbeddings"):
            continue
        if cls == "LowRankLinear":
            A, B = mod.A.data, mod.B.data  # (out, r), (r, in)
            ops += _matrix_ops(pname.get(id(mod.B), mname + ".B"), B, records.get(
                pname.get(id(mod.B))))
            ops += _matrix_ops(pname.get(id(mod.A), mname + ".A"), A, records.get(
                pname.get(id(mod.A))))
            continue
        if cls == "TTLinear":
            from refimpl.kernels.tt import tt_matmul

            cores = [np.asarray(G.data, dtype=np.float32) for G in mod.cores]
            ops.append(WeightOp(mname, "tt", mod.in_features,
                                lambda X, c=cores: tt_matmul(c, X)))
            continue
        if cls == "HashedLinear":
            from refimpl.kernels.hashing import hashed_matmul

            w = np.asarray(mod.w.data, dtype=np.float32)
            sb, ss = mod.seeds
            ops.append(WeightOp(mname, "hashed", mod.in_features,
                                lambda X, w=w, o=mod.out_features, a=sb, b=ss:
                                hashed_matmul(X, w, o, a, b)))
            continue
        # a Linear's W, or an RNN's dense W_ih_l*/W_hh_l* (factorised ones are child modules)
        for attr, val in list(vars(mod).items()):
            if id(val) not in pname or getattr(val, "ndim", 0) != 2:
                continue
            n = pname[id(val)]
            if cls == "Linear" and attr == "W" or attr.startswith(("W_ih", "W_hh")):
                ops += _matrix_ops(n, val.data, records.get(n))
    return ops


def stored_latency(model, records: dict | None = None, batches=(1, 64), repeat: int = 9,
                   rng=0, select=None) -> dict:
    """Best-of-``repeat`` time to apply every stored weight operator once to a batch of ``B``
    vectors, single-threaded (BLAS and Numba).

    Parameters
    ----------
    model : refimpl.nn.Module
    records : dict, optional
        See :func:`stored_ops`.
    batches : tuple of int
        Batch sizes ``B`` (default 1 and 64: memory-bound serving and a throughput batch).
    repeat : int
        Timed runs per batch size (after one warm-up run that also compiles the kernels).
    rng : int or Generator
        Seed of the random float32 inputs.
    select : callable, optional
        ``select(operator name) -> bool`` keeps only some operators (e.g. one component).

    Returns
    -------
    dict
        ``{"ms_b<B>": milliseconds, ..., "formats": "csr×3, kbit4×2", "n_ops": int}``.

    Notes
    -----
    Survey §8 (the comparison's latency column); issue #19 item 5.
    """
    from refimpl.utils import as_rng, check_int

    import numba
    from threadpoolctl import threadpool_limits

    repeat = check_int(repeat, "repeat", 1)
    rng = as_rng(rng)
    ops = stored_ops(model, records)
    if select is not None:
        ops = [op for op in ops if select(op.name)]
    out = {}
    n_threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            _time_ops(ops, batches, repeat, rng, out)
    finally:
        numba.set_num_threads(n_threads)
    fmts: dict = {}
    for op in ops:
        fmts[op.fmt] = fmts.get(op.fmt, 0) + 1
    out["formats"] = ", ".join(f"{k}×{v}" for k, v in fmts.items())
    out["n_ops"] = len(ops)
    return out


def _time_ops(ops, batches, repeat, rng, out):
    from refimpl.utils import check_int

    for B in batches:
        B = check_int(B, "batches", 1)
        Xs = [rng.standard_normal((B, op.in_features)).astype(np.float32) for op in ops]
        for op, X in zip(ops, Xs):  # warm-up (and JIT compilation)
            op.run(X)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for op, X in zip(ops, Xs):
                op.run(X)
            times.append(time.perf_counter() - t0)
        out[f"ms_b{B}"] = float(np.min(times)) * 1e3
