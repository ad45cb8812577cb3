"""A quantised linear layer stored as bit-packed k-bit codes and applied with the k-bit kernel
(Survey §3.1–§3.3).

:class:`PackedLinear` keeps a weight matrix as integer codes packed ``64 // bits`` per
``uint64`` word (:func:`refimpl.kernels.bitpack.pack_codes`) together with what decodes them:

.. math:: \\hat W_{nk} = s_n \\, c[\\mathrm{code}_{nk}] + o_n

a codebook ``c`` of ``2^bits`` values (k-means centroids, or ``±1`` / ``{0, ±1}``) and optional
per-row scale ``s`` and offset ``o``. ``forward`` computes ``x Ŵᵀ + b`` with
:func:`refimpl.kernels.bitpack.kbit_matmul` (codes decoded block by block into a float buffer,
one BLAS product per block) and the per-row affine terms applied afterwards:
``x Ŵᵀ = (x C̃ᵀ) ⊙ s + (Σ_k x_k) o``, where ``C̃ = c[code]``. Constructors:

=====================================  ==========================================================
:meth:`PackedLinear.uniform`           affine uniform k-bit per row, Eqs. (37)–(39) (``c`` = the
                                       integer levels ``0..2^k−1``, implicit, not stored;
                                       ``s = α_n/(2^k − 1)``, ``o = β_n``)
:meth:`PackedLinear.kmeans`            k-means weight sharing per matrix, Eq. (49) (Han et al.):
                                       ``2^k`` float32 centroids
:meth:`PackedLinear.binary`            BWN per row, Eqs. (22)–(24): 1-bit signs, ``s = α_n``
:meth:`PackedLinear.ternary`           TWN per row, Eqs. (30)–(34): 2-bit codes of ``{0, +1, −1}``,
                                       ``s = α_n``
=====================================  ==========================================================

Storage (:meth:`PackedLinear.stored_bits`), exactly: the packed words (padding included,
:func:`~refimpl.kernels.bitpack.packed_bits`), the stored codebook, the per-row vectors and
the bias, each float32 value 32 bits.

:func:`scalar_kmeans` is Lloyd's algorithm on scalars with Han et al.'s linear initialisation,
computed on the sorted weights (one sort, then ``O(k log n)`` per iteration: scalar clusters are
intervals, their sums differences of a cumulative sum) instead of the ``n × k`` distance
matrix of :func:`refimpl.quantization.kmeans.lloyd_kmeans`, which it matches on scalar data, so
that the 30 522 × 384 embedding table with 256 centroids is clustered in seconds.
"""

from __future__ import annotations

import numpy as np

from refimpl.kernels._backend import resolve_backend
from refimpl.kernels.bitpack import kbit_matmul, pack_codes, packed_bits, unpack_codes
from refimpl.nn.module import Module
from refimpl.nn.tensor import Tensor, data_of
from refimpl.quantization.binary import bwn
from refimpl.quantization.ternary import twn
from refimpl.quantization.uniform import uniform_codes
from refimpl.utils import check_array, check_choice, check_int

__all__ = ["PackedLinear", "PackedEmbedding", "quantize_rows", "scalar_kmeans"]


def scalar_kmeans(w, k: int, *, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on the scalars of ``w`` with linear initialisation (Survey §3.3.3).

    Parameters
    ----------
    w : ndarray of any shape
    k : int, 1 ≤ k ≤ w.size
    max_iter : int

    Returns
    -------
    centroids : ndarray of float64, shape (k,), sorted ascending
    labels : ndarray of int64, shape of ``w``

    Notes
    -----
    Han et al. (2016) initialise the centroids evenly between ``min w`` and ``max w``; each
    iteration assigns every weight to the nearest centroid (by the sorted midpoints, ties to
    the lower centroid, as ``argmin`` does) and moves each non-empty centroid to its cluster
    mean; it stops when no label changes. Deterministic (no random seeding). Cluster sums come
    from a cumulative sum of the sorted weights (rounding ~ n ε max|w|, far below the centroid
    spacing).

    References
    ----------
    .. [1] S. Han, H. Mao, W. J. Dally, "Deep Compression", ICLR 2016.
    .. [2] S. P. Lloyd, "Least Squares Quantization in PCM", IEEE Trans. Inf. Theory 1982.
    """
    w = check_array(w, "w")
    flat = w.ravel().astype(np.float64)
    k = check_int(k, "k", 1, flat.size)
    max_iter = check_int(max_iter, "max_iter", 1)
    xs = np.sort(flat)  # clusters of scalars are intervals of the sorted values
    csum = np.concatenate([[0.0], np.cumsum(xs)])  # interval sums in O(1)
    C = np.linspace(xs[0], xs[-1], k)
    prev = None
    for _ in range(max_iter):
        order = np.argsort(C, kind="stable")
        Cs = C[order]
        mid = (Cs[1:] + Cs[:-1]) / 2  # (k-1,) boundaries; x == mid goes to the lower centroid
        bnd = np.concatenate([[0], np.searchsorted(xs, mid, side="right"), [xs.size]])
        if prev is not None and np.array_equal(bnd, prev):
            break  # no weight changed cluster
        prev = bnd
        cnt = np.diff(bnd)  # (k,) cluster sizes, sorted-centroid order
        sums = csum[bnd[1:]] - csum[bnd[:-1]]
        ok = cnt > 0
        Cs[ok] = sums[ok] / cnt[ok]  # each non-empty centroid to its cluster mean
        C[order] = Cs
    order = np.argsort(C, kind="stable")
    Cs = C[order]
    lab = np.searchsorted((Cs[1:] + Cs[:-1]) / 2, flat, side="left")  # index into sorted C
    return Cs, lab.astype(np.int64).reshape(w.shape)


SCHEMES = ("uniform", "kmeans", "binary", "ternary")


def quantize_rows(W, scheme: str, bits: int | None = None, *, max_iter: int = 100) -> dict:
    """Codes and decoders of a matrix for :class:`PackedLinear` / :class:`PackedEmbedding`.

    Parameters
    ----------
    W : ndarray of shape (rows, cols)
    scheme : {"uniform", "kmeans", "binary", "ternary"}
        ``"uniform"``: affine uniform ``bits``-bit codes per row, ``α_n = max − min``,
        ``β_n = min`` of row ``n`` (Survey Eqs. (37)–(39), §3.3.1); ``"kmeans"``: ``2^bits``
        shared values per matrix by :func:`scalar_kmeans` (Eq. (49), §3.3.3); ``"binary"``:
        BWN per row, ``α_n sign(W_n)``, ``α_n = mean |W_n|`` (Eqs. (22)–(24), §3.1.3);
        ``"ternary"``: TWN per row, ``Δ_n = 0.7 mean |W_n|`` (Eqs. (30)–(34), §3.2.2).
    bits : int, optional
        Required for uniform and k-means (1 for binary, 2 for ternary).

    Returns
    -------
    dict with ``codes`` (int64, shape of W), ``bits``, ``codebook`` (ndarray or None for the
    implicit levels ``0..2^bits−1``), ``row_scale`` and ``row_offset`` (ndarray (rows,) or None)
    """
    W = check_array(W, "W", ndim=2)
    scheme = check_choice(scheme, "scheme", SCHEMES)
    out = {"row_scale": None, "row_offset": None}
    if scheme in ("uniform", "kmeans"):
        if bits is None:
            raise ValueError(f"bits is required for scheme={scheme!r}")
        bits = check_int(bits, "bits", 1, 16)
    if scheme == "uniform":
        codes = np.empty(W.shape, dtype=np.int64)
        alpha = np.empty(W.shape[0])
        beta = np.empty(W.shape[0])
        for n, row in enumerate(W):
            c, alpha[n], beta[n] = uniform_codes(row, bits)  # Eq. (38) per row
            codes[n] = c
        out.update(codes=codes, bits=bits, codebook=None, row_scale=alpha / (2 ** bits - 1),
                   row_offset=beta)
    elif scheme == "kmeans":
        C, lab = scalar_kmeans(W, min(2 ** bits, W.size), max_iter=max_iter)
        out.update(codes=lab, bits=bits, codebook=C)
    elif scheme == "binary":
        alpha, B = bwn(W, axis=1)  # alpha (rows, 1), B in {±1}
        out.update(codes=(B > 0).astype(np.int64), bits=1, codebook=np.array([-1.0, 1.0]),
                   row_scale=alpha[:, 0])
    else:
        codes = np.empty(W.shape, dtype=np.int64)
        alpha = np.empty(W.shape[0])
        for n, row in enumerate(W):
            alpha[n], T, _ = twn(row)
            codes[n] = np.where(T > 0, 1, np.where(T < 0, 2, 0))  # 0, +1, −1
        out.update(codes=codes, bits=2, codebook=np.array([0.0, 1.0, -1.0]), row_scale=alpha)
    return out


class PackedLinear(Module):
    """``y = x Ŵᵀ + b`` with ``Ŵ_{nk} = s_n c[code_{nk}] + o_n`` stored as packed k-bit codes.

    Parameters
    ----------
    codes : int ndarray of shape (out_features, in_features), values in [0, 2^bits)
    bits : int in [1, 16]
    codebook : ndarray of shape (≤ 2^bits,) or None
        Values of the codes (padded to ``2^bits`` with zeros for the kernel). None: the
        integer levels ``0 .. 2^bits − 1`` (implicit, not stored).
    row_scale, row_offset : ndarray of shape (out_features,), optional
    b : ndarray of shape (out_features,), optional
    dtype : numpy dtype
        Compute and storage dtype of the float parts (default float32).
    backend : {"numba", "numpy"}, optional

    Notes
    -----
    Survey §3.1–§3.3. ``forward`` is inference-only (a constant Tensor; train through a
    quantiser with a straight-through estimator first, :mod:`refimpl.quantization.training`).
    """

    def __init__(self, codes, bits: int, codebook=None, *, row_scale=None, row_offset=None,
                 b=None, dtype=np.float32, backend: str | None = None):
        self.bits = check_int(bits, "bits", 1, 16)
        codes = check_array(codes, "codes", ndim=2, dtype_kind="iu")
        self.out_features, self.in_features = codes.shape
        self.dtype = np.dtype(dtype)
        self.packed = pack_codes(codes, self.bits)
        n_levels = 2 ** self.bits
        self.stored_codebook = codebook is not None
        if codebook is None:
            cb = np.arange(n_levels, dtype=self.dtype)
        else:
            cb = check_array(codebook, "codebook", ndim=1)
            if cb.size > n_levels:
                raise ValueError(f"codebook must have at most {n_levels} entries for "
                                 f"bits={self.bits}, got {cb.size}")
            if codes.max() >= cb.size:
                raise ValueError(f"codes must index the codebook of {cb.size} entries")
            cb = np.concatenate([cb, np.zeros(n_levels - cb.size)]).astype(self.dtype)
        self.codebook_size = n_levels if codebook is None else int(np.size(codebook))
        self.codebook = cb
        N = self.out_features
        self.row_scale = None if row_scale is None else \
            check_array(row_scale, "row_scale", shape=(N,)).astype(self.dtype)
        self.row_offset = None if row_offset is None else \
            check_array(row_offset, "row_offset", shape=(N,)).astype(self.dtype)
        self.bias = None if b is None else check_array(b, "b", shape=(N,)).astype(self.dtype)
        if backend is not None:
            resolve_backend(backend)  # a clear error naming backend now, not at the first call
        self.backend = backend

    # ------------------------------------------------------------------ constructors
    @classmethod
    def quantize(cls, linear, scheme: str, bits: int | None = None,
                 backend: str | None = None, *, max_iter: int = 100) -> "PackedLinear":
        """Quantise ``linear.W`` with ``scheme`` (see :func:`quantize_rows`; ``max_iter`` bounds
        the k-means iterations); the bias stays float. ``linear`` is not changed."""
        W = np.asarray(linear.W.data)
        b = None if getattr(linear, "b", None) is None else np.asarray(linear.b.data)
        q = quantize_rows(W, scheme, bits, max_iter=max_iter)
        return cls(q.pop("codes"), q.pop("bits"), q.pop("codebook"), b=b, dtype=W.dtype,
                   backend=backend, **q)

    @classmethod
    def uniform(cls, linear, bits: int, backend: str | None = None) -> "PackedLinear":
        """Affine uniform codes per row (Survey Eqs. (37)–(39))."""
        return cls.quantize(linear, "uniform", bits, backend)

    @classmethod
    def kmeans(cls, linear, bits: int, backend: str | None = None) -> "PackedLinear":
        """k-means weight sharing per matrix (Survey Eq. (49))."""
        return cls.quantize(linear, "kmeans", bits, backend)

    @classmethod
    def binary(cls, linear, backend: str | None = None) -> "PackedLinear":
        """BWN per row (Survey Eqs. (22)–(24)): one bit per weight."""
        return cls.quantize(linear, "binary", 1, backend)

    @classmethod
    def ternary(cls, linear, backend: str | None = None) -> "PackedLinear":
        """TWN per row (Survey Eqs. (30)–(34)): two bits per weight."""
        return cls.quantize(linear, "ternary", 2, backend)

    # ------------------------------------------------------------------ use
    def codes(self) -> np.ndarray:
        """The integer codes, (out_features, in_features)."""
        return unpack_codes(self.packed, self.bits, self.in_features)

    def weight(self) -> np.ndarray:
        """The dense ``Ŵ`` in float64 (references and tests only)."""
        W = self.codebook.astype(np.float64)[self.codes()]
        if self.row_scale is not None:
            W = W * self.row_scale.astype(np.float64)[:, None]
        if self.row_offset is not None:
            W = W + self.row_offset.astype(np.float64)[:, None]
        return W

    def stored_bits(self) -> int:
        """Exact bits held: packed words, stored codebook entries, per-row vectors, bias."""
        fb = self.dtype.itemsize * 8
        bits = packed_bits(self.packed)
        if self.stored_codebook:
            bits += self.codebook_size * fb
        for v in (self.row_scale, self.row_offset, self.bias):
            bits += 0 if v is None else v.size * fb
        return bits

    def forward(self, x) -> Tensor:
        """``x`` of shape (..., in_features) -> Tensor of shape (..., out_features)."""
        X = np.asarray(data_of(x))
        if X.ndim == 0 or X.shape[-1] != self.in_features:
            raise ValueError(f"x must have last dimension {self.in_features}, got shape "
                             f"{X.shape}")
        lead = X.shape[:-1]
        X2 = np.ascontiguousarray(X.reshape(-1, self.in_features), dtype=self.dtype)
        Y = kbit_matmul(X2, self.packed, self.bits, self.in_features, self.codebook,
                        backend=self.backend)  # (N, out) = X c[code]ᵀ
        if self.row_scale is not None:
            Y *= self.row_scale
        if self.row_offset is not None:
            Y += X2.sum(axis=1, keepdims=True) * self.row_offset  # (Σ_k x_k) o_n
        if self.bias is not None:
            Y += self.bias
        return Tensor(Y.reshape(*lead, self.out_features))

    def __repr__(self) -> str:
        return (f"PackedLinear(in_features={self.in_features}, "
                f"out_features={self.out_features}, bits={self.bits})")


class PackedEmbedding(PackedLinear):
    """An embedding table ``E`` (num_embeddings, dim) stored like :class:`PackedLinear`'s
    weight: row ``v`` is ``s_v c[code_v] + o_v``, decoded only for the looked-up rows.

    Survey §3.3.5 (quantised embeddings, e.g. Q8BERT quantises BERT's embedding tables too).
    Build it with :meth:`from_embedding`; ``forward(idx)`` returns the rows as a constant
    Tensor of shape ``idx.shape + (dim,)``.
    """

    @classmethod
    def from_embedding(cls, embedding, scheme: str, bits: int | None = None,
                       backend: str | None = None, *, max_iter: int = 100
                       ) -> "PackedEmbedding":
        """Quantise ``embedding.W`` (V, D) with :func:`quantize_rows`; not changed in place."""
        W = np.asarray(embedding.W.data)
        q = quantize_rows(W, scheme, bits, max_iter=max_iter)
        return cls(q.pop("codes"), q.pop("bits"), q.pop("codebook"), dtype=W.dtype,
                   backend=backend, **q)

    @property
    def num_embeddings(self) -> int:
        return self.out_features

    @property
    def dim(self) -> int:
        return self.in_features

    def forward(self, idx) -> Tensor:
        """Integer ids of any shape -> Tensor of shape ``idx.shape + (dim,)``."""
        idx = np.asarray(data_of(idx))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx must be an integer array, got dtype {idx.dtype}")
        flat = idx.reshape(-1).astype(np.int64)
        if flat.size and (flat.min() < 0 or flat.max() >= self.out_features):
            raise ValueError(f"idx must lie in [0, {self.out_features})")
        codes = unpack_codes(self.packed[flat], self.bits, self.in_features,
                             backend=self.backend)  # (n, D) codes of the looked-up rows
        E = self.codebook[codes]  # (n, D)
        if self.row_scale is not None:
            E *= self.row_scale[flat, None]
        if self.row_offset is not None:
            E += self.row_offset[flat, None]
        return Tensor(E.reshape(*idx.shape, self.in_features))

    def __repr__(self) -> str:
        return (f"PackedEmbedding(num_embeddings={self.out_features}, dim={self.in_features}, "
                f"bits={self.bits})")
