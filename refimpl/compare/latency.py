"""Latency through the kernels a compressed model actually stores (Survey §8; issue #19 item 5,
issue #16 item 1).

The tour's ``ms`` column times the :mod:`refimpl.nn` forward pass, which multiplies dense float
arrays whatever the method stores — a pruned or 4-bit model looks exactly as fast as the
baseline there. This module times what a deployment would run instead: every stored operator
of the model applied once to a batch of ``B`` inputs, each through the kernel of its stored
format. Three kinds of operator:

* **weights** (``kind="weight"``): every stored weight matrix applied to ``B`` input vectors
  (one token step of serving);
* **embedding lookups** (``kind="embedding"``): ``B`` token ids looked up in every embedding
  table (token and position tables; one token step);
* **attention** (``kind="attention"``): the attention of every encoder layer on ``B``
  sequences of the model's length ``n`` (``max_len``, + 1 with [CLS] pooling), with ``Q, K, V``
  of shape (B, H, n, d_head), ``H`` the kept heads — through the function the layer's §7 hook
  names, never a masked dense simulation of it.

=============================  =================================================================
stored format                  kernel
=============================  =================================================================
dense float32                  BLAS ``X @ W.T``
unstructured sparse            CSR :func:`refimpl.kernels.sparse.dense_x_csr_T` (values decoded
                               from the codebook when quantised: the CSR kernel has no codes)
bank-balanced sparse           :func:`refimpl.kernels.block_sparse.bbs_matmat` (values and
                               in-bank offsets, no row pointers)
k-bit codes + codebook         :func:`refimpl.kernels.bitpack.kbit_matmul` on the packed codes
(k-means, uniform)
binary / ternary α·s (BWN,     sign bit planes through :func:`refimpl.kernels.lowbit_gemv.
TWN)                           binary_weight_gemv` / ``ternary_weight_gemv``
multi-bit Σ_i α_i b_i per row  ``k`` sign bit planes with per-row ``α_i``: ``k`` calls of
(Xu et al., ``multibit<k>``)   :func:`~refimpl.kernels.lowbit_gemv.binary_weight_gemv`, summed
structured (heads/units cut)   the smaller dense (or k-bit) matrix of the kept rows/columns
low-rank ``A B``               two BLAS products
TT-matrix                      :func:`refimpl.kernels.tt.tt_matmul` on the cores
HashedNets                     :func:`refimpl.kernels.hashing.hashed_matmul` (no matrix formed)
other factorised layers        the layer's own forward on its stored factors (block-term,
(own parameters)               quaternion, ...; format: the class name)
embedding, dense               row gather ``W[ids]`` (``gather``)
embedding, CSR                 the rows' ``indptr`` slices scattered into dense rows
                               (``gather-csr``)
embedding, k-bit               gather of the packed rows, then
                               :func:`refimpl.kernels.bitpack.unpack_codes` and the codebook
                               (``gather-kbit<k>``)
embedding, multi-bit           gather of the ``k`` packed sign rows and their ``α_i``, then
                               ``Σ_i α_i (2 unpack_codes(·, 1) − 1)`` (``gather-multibit<k>``)
TT-embedding                   :func:`refimpl.kernels.tt.tt_embedding_lookup` on the cores
LightRNN / sub-vector table    gather of the ``B`` shared sub-vectors by the allocation table
                               (``gather-subvec``)
attention, dense               :func:`refimpl.attention.dense.dense_attention` (``attn-dense``)
Longformer window              :func:`refimpl.kernels.sliding_window.sliding_window_attention`
                               (``attn-window``, never ``n × n``)
Linformer                      :func:`refimpl.attention.linear.linformer_attention` with the
                               stored ``E, F`` (``attn-linformer``)
linear attention               :func:`refimpl.attention.linear.linear_attention`
                               (``attn-linear``, ``O(n d²)``)
Reformer LSH                   :func:`refimpl.attention.superlinear.lsh_attention`
                               (``attn-lsh``, sorted chunks)
other hooks                    the hook itself on constant tensors (``attn-<name>``)
=============================  =================================================================

A model from a chapter's tour method carries no format record, so the format of each dense
weight (or embedding) matrix is inferred from its values: at least half exact zeros → CSR; at
most ``2^k`` distinct values (k ≤ 8) → k-bit codes with those values as the codebook; every
row ``±α`` or ``±p, ±q`` (symmetric, at most two magnitudes per row: Xu et al.'s per-row
multi-bit form, :func:`multibit_planes`) → one or two sign planes with per-row scales; else
dense. Records from a pipeline (:class:`refimpl.compare.pipelines.Record`) say it exactly.

Both batch sizes matter (issue #19): at ``B = 1`` the products are memory-bound and a packed
format should win; at ``B = 64`` BLAS's compute throughput usually wins. The tour shows both,
so a row never claims a size gain while hiding a speed loss. Times are the best of ``repeat``
runs of the whole set of operators, with one BLAS thread and one Numba thread (every format
under the same condition, and robust to other processes on a shared CPU — multi-threaded BLAS
on an oversubscribed machine was measured up to 10^4 × slower at batch 64 here); ratios only
mean something within one run (``benchmarks/`` has the kernel-level ratios, multi-threaded).
:func:`stored_latency` also reports each kind's share (``weight_ms_b<B>``,
``embedding_ms_b<B>``, ``attention_ms_b<B>``), so a §7 row's attention time can be read apart
from its (unchanged) weight products.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

__all__ = ["WeightOp", "stored_ops", "infer_format", "stored_latency", "OP_KINDS",
           "multibit_planes"]

#: The kinds of stored operator (module docstring).
OP_KINDS = ("weight", "embedding", "attention")


@dataclass
class WeightOp:
    """One stored operator ``y = op(x)`` with its kernel.

    Attributes
    ----------
    name : str
    fmt : str
        ``"dense"``, ``"csr"``, ``"kbit<k>"``, ``"low-rank"``, ``"tt"``, ``"hashed"``; for
        lookups ``"gather"``, ``"gather-csr"``, ``"gather-kbit<k>"``, ``"tt-lookup"``,
        ``"gather-subvec"``; for attention ``"attn-dense"``, ``"attn-window"``,
        ``"attn-linformer"``, ``"attn-linear"``, ``"attn-lsh"``, ``"attn-<hook>"``.
    in_features : int
        Width of a weight operator's input vectors; the table size ``V`` of a lookup; the
        sequence length ``n`` of an attention operator.
    run : callable
        ``run(x)`` on the input :attr:`make_input` builds.
    kind : str
        One of :data:`OP_KINDS`.
    make_input : callable or None
        ``make_input(B, rng)``: the input of a batch of ``B`` (default: float32 ``(B,
        in_features)`` normal vectors).
    """

    name: str
    fmt: str
    in_features: int
    run: object
    kind: str = "weight"
    make_input: object = None

    def input(self, B: int, rng) -> object:
        """The input of a batch of ``B`` (see :attr:`make_input`)."""
        if self.make_input is not None:
            return self.make_input(B, rng)
        return rng.standard_normal((B, self.in_features)).astype(np.float32)


def infer_format(W: np.ndarray, max_bits: int = 4) -> tuple[str, object]:
    """The stored format a chapter method's dense weight implies: ``("binary", α)`` for values
    ``{−α, +α}`` and ``("ternary", α)`` for ``{−α, 0, +α}`` (BWN / TWN: sign bit planes and
    one scale, Survey §3.1–3.2); else, when at least half the entries are exactly 0,
    ``("bbs", bank_size)`` if every bank of 16 (8, 4) columns holds the same number of them
    (bank-balanced sparsity, §2.3) or ``("csr", None)``; ``("kbit", (bits, codes, codebook))`` when there are at most ``2^bits``
    distinct values (``bits ≤ max_bits``); else ``("dense", None)``. A level count only
    counts with at least 4 entries per level (a small dense matrix has few distinct values by
    chance)."""
    vals, codes = np.unique(W, return_inverse=True)
    if W.size >= 4 * 3 and vals.size == 3 and vals[1] == 0 and vals[0] == -vals[2]:
        return "ternary", float(vals[2])
    if W.size >= 4 * 2 and vals.size == 2 and vals[0] == -vals[1] and vals[1] > 0:
        return "binary", float(vals[1])
    if W.ndim == 2 and np.count_nonzero(W) <= W.size // 2:
        for b in (16, 8, 4):  # bank-balanced (Cao et al.): the same count in every bank
            if W.shape[1] % b == 0 and W.shape[1] > b:
                nnz = np.count_nonzero(W.reshape(W.shape[0], -1, b), axis=-1)
                if 0 < nnz.min() == nnz.max() < b:
                    return "bbs", b
    if np.count_nonzero(W) <= W.size // 2:
        return "csr", None
    for bits in (1, 2, 3, 4, 8):
        if bits <= max_bits and vals.size <= (1 << bits) and W.size >= 4 * (1 << bits):
            cb = np.zeros(1 << bits)
            cb[:vals.size] = vals
            return "kbit", (bits, codes.reshape(W.shape), cb)
    planes = multibit_planes(W)
    if planes is not None:
        return "multibit", planes
    return "dense", None


def multibit_planes(W):
    """The per-row multi-bit form ``W[r] = Σ_i α[r, i] B[r, i]`` (``B ∈ {−1, +1}``) a matrix's
    values imply, or None.

    Xu et al.'s alternating multi-bit quantisation (Survey §3.3.4, Eqs. (55)–(56); the tour's
    ``multibit-2bit``) stores ``k`` sign planes and ``k`` float scales per row, so each row
    takes at most ``2^k`` values ``Σ_i ±α_i``, at most ``2^(k−1)`` magnitudes. For ``k ≤ 2``
    the form is recovered from the values alone (any row whose entries have at most two
    magnitudes has it): a row with magnitudes ``{p}`` is ``α₁ = p`` (one
    plane); a row with magnitudes ``{q < p}`` is ``α₁ = (p + q)/2, α₂ = (p − q)/2`` with
    ``b₁ = sign(w)`` (``+1`` at 0, as :func:`~refimpl.kernels.bitpack.pack_signs`) and
    ``b₂ = b₁`` where ``|w| = p``, ``−b₁`` where ``|w| = q``.

    Parameters
    ----------
    W : ndarray of shape (rows, n)

    Returns
    -------
    tuple (alphas, B) or None
        ``alphas`` float64 (rows, k), ``B`` float64 (rows, k, n) in {−1, +1}, ``k = 1`` when
        every row has one magnitude, else 2 (a one-magnitude row then has ``α₂ = 0``).
        ``Σ_i α_i B_i`` equals ``W`` up to the rounding of ``(p ± q)/2`` (a few ulps of
        ``p``). None when a row has more than two magnitudes or rows are shorter than 4
        entries per level (``n < 4 · 2^k``: few distinct values by chance).
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.size == 0 or not np.all(np.isfinite(W)):
        return None
    R, n = W.shape
    mags = np.sort(np.abs(W), axis=1)
    p, q = mags[:, -1], mags[:, 0]
    if np.any((mags != p[:, None]) & (mags != q[:, None])):
        return None  # more than two magnitudes in some row
    k = 1 if np.array_equal(p, q) else 2
    if n < 4 * (1 << k):
        return None
    b1 = np.where(W >= 0, 1.0, -1.0)
    if k == 1:
        return p[:, None].copy(), b1[:, None, :]
    a1, a2 = (p + q) / 2, (p - q) / 2
    b2 = np.where(np.abs(W) == p[:, None], b1, -b1)
    return np.stack([a1, a2], axis=1), np.stack([b1, b2], axis=1)


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


def _signs_op(name, W, kind, alpha):
    """BWN / TWN weights ``α·s`` as sign bit planes through the packed-weight GEMV kernels
    (:func:`refimpl.kernels.lowbit_gemv.binary_weight_gemv` / ``ternary_weight_gemv``)."""
    from refimpl.kernels.bitpack import pack_signs, pack_ternary
    from refimpl.kernels.lowbit_gemv import binary_weight_gemv, ternary_weight_gemv

    K = W.shape[1]
    S = np.sign(np.asarray(W, dtype=np.float64))  # (out, in) in {-1, 0, +1}
    a = np.float32(alpha)
    if kind == "binary":
        Wp = pack_signs(S)
        return WeightOp(name, "binary", K, lambda X: binary_weight_gemv(X, Wp, K, a))
    planes = pack_ternary(S)
    return WeightOp(name, "ternary", K, lambda X: ternary_weight_gemv(X, planes, K, a))


def _multibit_op(name, alphas, B):
    """Xu et al.'s multi-bit weights ``Σ_i α_i ⊙ B_i`` as what they store: ``k`` sign bit
    planes and ``k`` per-row scales, ``k`` calls of
    :func:`refimpl.kernels.lowbit_gemv.binary_weight_gemv` summed."""
    from refimpl.kernels.bitpack import pack_signs
    from refimpl.kernels.lowbit_gemv import binary_weight_gemv

    K = B.shape[2]
    planes = [pack_signs(B[:, i]) for i in range(B.shape[1])]
    scales = [np.ascontiguousarray(alphas[:, i], dtype=np.float32)
              for i in range(B.shape[1])]

    def run(X):
        Y = binary_weight_gemv(X, planes[0], K, scales[0].astype(X.dtype))
        for Wp, a in zip(planes[1:], scales[1:]):
            Y += binary_weight_gemv(X, Wp, K, a.astype(X.dtype))
        return Y

    return WeightOp(name, f"multibit{len(planes)}", K, run)


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
    if fmt in ("binary", "ternary"):
        return [_signs_op(name, W, fmt, info)]
    if fmt == "bbs":
        from refimpl.kernels.block_sparse import bbs_from_dense, bbs_matmat

        A = bbs_from_dense(np.asarray(W, dtype=np.float32), info)
        return [WeightOp(name, "bbs", W.shape[1], lambda X: bbs_matmat(A, X.T).T)]
    if fmt == "csr":
        return [_csr_op(name, W)]
    if fmt == "kbit":
        bits, codes, cb = info
        return [_kbit_op(name, bits, codes, cb)]
    if fmt == "multibit":
        return [_multibit_op(name, *info)]
    return [_dense_op(name, W)]


def _levels(W):
    """``(bits, codes, codebook)`` of a matrix with at most 4 distinct values."""
    vals, codes = np.unique(W, return_inverse=True)
    bits = 1 if vals.size <= 2 else 2
    cb = np.zeros(1 << bits)
    cb[:vals.size] = vals
    return bits, codes.reshape(W.shape), cb


def _ids_input(V):
    return lambda B, rng: rng.integers(0, V, size=B)


def _embedding_ops(name, W, rec=None):
    """The lookup of one stored embedding table ``W`` (V, D), from its record or its values."""
    W = np.asarray(W)
    V, D = W.shape
    fmt, info = "dense", None
    if rec is not None and rec.mask is not None and not rec.structured:
        fmt = "csr"
    elif rec is not None and rec.codes is not None and rec.mask is None:
        fmt, info = "kbit", (rec.bits, np.asarray(rec.codes).reshape(W.shape), rec.codebook)
    elif rec is None:
        fmt, info = infer_format(W)
        if fmt in ("binary", "ternary"):  # a lookup of sign planes = 1- / 2-bit code rows
            fmt, info = "kbit", _levels(W)
        elif fmt == "bbs":  # a row of a bank-balanced table: its stored entries, as CSR's
            fmt = "csr"
    if fmt == "csr":
        from refimpl.kernels.sparse import csr_from_dense

        A = csr_from_dense(np.asarray(W, dtype=np.float32))
        indptr, indices, data = A.indptr, A.indices, A.data

        def run(ids):
            out = np.zeros((ids.size, D), dtype=np.float32)
            for r, i in enumerate(ids):  # the row's stored entries, scattered
                s, e = indptr[i], indptr[i + 1]
                out[r, indices[s:e]] = data[s:e]
            return out

        return WeightOp(name, "gather-csr", V, run, "embedding", _ids_input(V))
    if fmt == "multibit":
        from refimpl.kernels.bitpack import pack_signs, unpack_codes

        alphas, B = info
        k = B.shape[1]
        planes = np.stack([pack_signs(B[:, i]) for i in range(k)], axis=1)  # (V, k, words)
        al = np.ascontiguousarray(alphas, dtype=np.float32)  # (V, k)

        def run(ids):
            bits = unpack_codes(planes[ids].reshape(ids.size * k, -1), 1, D)  # 1 ⇔ +1
            signs = (2 * bits - 1).astype(np.float32).reshape(ids.size, k, D)
            return np.einsum("bk,bkd->bd", al[ids], signs)

        return WeightOp(name, f"gather-multibit{k}", V, run, "embedding", _ids_input(V))
    if fmt == "kbit":
        from refimpl.kernels.bitpack import pack_codes, unpack_codes

        bits, codes, cb = info
        packed = pack_codes(np.asarray(codes, dtype=np.int64), bits)  # (V, words)
        cb = np.asarray(cb, dtype=np.float32)
        return WeightOp(name, f"gather-kbit{bits}", V,
                        lambda ids: cb[unpack_codes(packed[ids], bits, D)], "embedding",
                        _ids_input(V))
    Wc = np.ascontiguousarray(W, dtype=np.float32)
    return WeightOp(name, "gather", V, lambda ids: Wc[ids], "embedding", _ids_input(V))


def _lookup_op(mname, mod, pname, records):
    """The lookup operator of an embedding module, or None when ``mod`` is not a table."""
    cls = type(mod).__name__
    if cls == "Embedding":
        return _embedding_ops(pname.get(id(mod.W), mname + ".W"), mod.W.data,
                              records.get(pname.get(id(mod.W))))
    if cls == "TTEmbedding":
        from refimpl.kernels.tt import tt_embedding_lookup

        cores = [np.asarray(G.data, dtype=np.float32) for G in mod.cores]
        V = mod.num_embeddings
        return WeightOp(mname, "tt-lookup", V, lambda ids, c=cores: tt_embedding_lookup(c, ids),
                        "embedding", _ids_input(V))
    if cls == "SubvectorEmbedding":  # LightRNN / Slim Embeddings: B shared sub-vector tables
        Bk, K, V = mod.num_blocks, mod.num_refs, mod.num_embeddings
        R = np.ascontiguousarray(np.asarray(mod.R.data, dtype=np.float32).reshape(Bk * K, -1))
        rows = (np.arange(Bk) * K + mod.assignment).astype(np.int64)  # (V, B) rows of R

        return WeightOp(mname, "gather-subvec", V,
                        lambda ids: R[rows[ids]].reshape(ids.size, -1), "embedding",
                        _ids_input(V))
    return None


def _module_op(mname, mod):
    """A factorised layer no dedicated kernel covers (block-term, quaternion, ...): its own
    forward on its stored factors (format: the class name, lower case)."""
    from refimpl.nn import Tensor, no_grad

    def run(X):
        with no_grad():
            return mod(Tensor(X))

    return WeightOp(mname, type(mod).__name__.lower(), int(mod.in_features), run)


def _seq_len(model) -> int:
    n = int(getattr(model, "max_len", 0) or 0)
    return max(1, n + (getattr(model, "pooling", "mean") == "cls")) if n else 64


def _attention_op(mname, mha, n):
    """The attention of one :class:`refimpl.nn.MultiHeadAttention` on sequences of length
    ``n``, through the function its hook names (module docstring)."""
    from refimpl.attention.dense import dense_attention

    H = mha.num_heads
    hm = getattr(mha, "head_mask", None)
    if hm is not None:  # pruned heads are not computed at inference
        from refimpl.nn.tensor import data_of

        H = max(1, int(np.count_nonzero(np.asarray(data_of(hm)))))
    dh = mha.d_head

    def make(B, rng):
        return tuple(rng.standard_normal((B, H, n, dh)).astype(np.float32) for _ in range(3))

    hook = mha.attention
    name = getattr(hook, "name", None) if hook is not None else "dense"
    if hook is None or name == "dense":
        return WeightOp(mname, "attn-dense", n, lambda a: dense_attention(*a), "attention", make)
    if name == "longformer":
        from refimpl.kernels.sliding_window import sliding_window_attention

        w = min(hook.window, n - n % 2)
        g = tuple(sorted({gi % n for gi in hook.global_idx}))
        causal = bool(getattr(hook, "causal", False))  # the left-only window of a causal LM
        return WeightOp(mname, "attn-window-causal" if causal else "attn-window", n,
                        lambda a: sliding_window_attention(*a, w, hook.dilation, g,
                                                           causal=causal),
                        "attention", make)
    if name == "linformer":
        from refimpl.attention.linear import linformer_attention

        E = np.asarray(hook.E.data, dtype=np.float32)[..., :n]
        Fp = None if hook.sharing == "key-value" else \
            np.asarray(hook.F.data, dtype=np.float32)[..., :n]
        if E.ndim == 3:  # one pair per head: keep the heads that are computed
            E = E[:H]
            Fp = None if Fp is None else Fp[:H]
        return WeightOp(mname, "attn-linformer", n,
                        lambda a: linformer_attention(*a, E, Fp), "attention", make)
    if name == "linear":
        from refimpl.attention.linear import linear_attention

        return WeightOp(mname, "attn-linear", n, lambda a: linear_attention(*a, eps=hook.eps),
                        "attention", make)
    if name == "lsh":
        from refimpl.attention.superlinear import lsh_attention

        nb = hook.n_buckets
        cs = hook.chunk_size
        if cs is None or n % cs:  # as LSHHook.key_set chooses the chunk
            cs = n // nb if n >= nb and n % nb == 0 else n
        return WeightOp(mname, "attn-lsh", n,
                        lambda a: lsh_attention(a[0], a[2], nb, hook.n_hashes, cs, rng=0),
                        "attention", make)
    from refimpl.nn import Tensor, no_grad

    def run(a):
        with no_grad():
            return hook(*(Tensor(x) for x in a))

    return WeightOp(mname, f"attn-{name}", n, run, "attention", make)


def stored_ops(model, records: dict | None = None, kinds=OP_KINDS) -> list[WeightOp]:
    """Every stored operator of ``model`` of the given ``kinds`` — weight products, embedding
    lookups, attention — each with the kernel of its stored format (module docstring).

    Parameters
    ----------
    model : refimpl.nn.Module
    records : dict of str to Record, optional
        Parameter name → how it is stored (from a pipeline); others are inferred.
    kinds : sequence of str
        Subset of :data:`OP_KINDS` (default all three).
    """
    from refimpl.utils import check_choice

    kinds = tuple(check_choice(k, "kinds", OP_KINDS) for k in kinds)
    records = records or {}
    pname = {id(p): n for n, p in model.named_parameters()}
    n_seq = _seq_len(model)
    ops: list[WeightOp] = []
    for mname, mod in model.named_modules():
        cls = type(mod).__name__
        if cls in ("AlbertEmbeddings", "BertEmbeddings"):
            continue  # containers: their Embedding children are looked up one by one
        if cls in ("Embedding", "TTEmbedding", "SubvectorEmbedding"):
            if "embedding" in kinds:
                op = _lookup_op(mname, mod, pname, records)
                if op is not None:
                    ops.append(op)
            continue
        if cls == "MultiHeadAttention":
            if "attention" in kinds:
                ops.append(_attention_op(mname, mod, n_seq))
            # its projections are Linear children, visited as weights
            continue
        if "weight" not in kinds:
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
        if cls != "Linear" and isinstance(getattr(mod, "in_features", None), (int, np.integer)) \
                and any(id(v) in pname for v in vars(mod).values()):
            ops.append(_module_op(mname, mod))  # BT-layers, quaternion layers, ...
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
                   rng=0, select=None, kinds=OP_KINDS) -> dict:
    """Best-of-``repeat`` time to apply every stored operator once to a batch of ``B``
    inputs, single-threaded (BLAS and Numba): weight products on ``B`` vectors, lookups of
    ``B`` ids, attention on ``B`` sequences (module docstring).

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
        Seed of the random inputs.
    select : callable, optional
        ``select(operator name) -> bool`` keeps only some operators (e.g. one component).
    kinds : sequence of str
        Which operator kinds to time (:data:`OP_KINDS`; default all).

    Returns
    -------
    dict
        ``{"ms_b<B>": milliseconds of all operators, "<kind>_ms_b<B>": the kind's share (best
        of the runs, so the shares may sum to slightly less), ..., "formats": "csr×3,
        kbit4×2, gather×1", "n_ops": int}``.

    Notes
    -----
    Survey §8 (the comparison's latency column); issue #19 item 5, issue #16 item 2.
    """
    from refimpl.utils import as_rng, check_int

    import numba
    from threadpoolctl import threadpool_limits

    repeat = check_int(repeat, "repeat", 1)
    rng = as_rng(rng)
    ops = stored_ops(model, records, kinds=kinds)
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
        Xs = [op.input(B, rng) for op in ops]
        for op, X in zip(ops, Xs):  # warm-up (and JIT compilation)
            op.run(X)
        times = np.zeros((repeat, len(ops)))
        for r in range(repeat):
            for i, (op, X) in enumerate(zip(ops, Xs)):
                t0 = time.perf_counter()
                op.run(X)
                times[r, i] = time.perf_counter() - t0
        out[f"ms_b{B}"] = float(times.sum(axis=1).min()) * 1e3
        for kind in OP_KINDS:
            sel = [i for i, op in enumerate(ops) if op.kind == kind]
            out[f"{kind}_ms_b{B}"] = float(times[:, sel].sum(axis=1).min()) * 1e3 if sel else 0.0
