"""Tensor-train decomposition and TT layers — Survey §6.3 (first half).

=========================  ==============================================================
:func:`tt_svd`             TT-SVD with a rank cap and/or a relative error bound ε
                           (Oseledets 2011, Alg. 1)
:func:`tt_to_full`         contract TT cores back to the full tensor
:func:`tt_matrix`          reshape a weight ``(M, N)`` into TT-matrix cores
                           ``(r_{k-1}, m_k, n_k, r_k)`` (Novikov et al. 2015)
:func:`tt_matrix_to_full`  the dense matrix of TT-matrix cores
:func:`tt_matvec`          ``X @ W.T`` without forming ``W`` (kernel :mod:`refimpl.kernels.tt`)
:class:`TTLinear`          TT-layer (a Linear whose weight is a TT-matrix)
:class:`TTEmbedding`       TT-embedding (Khrulkov et al. 2019)
:class:`TTRNN`             TT-GRU / TT-LSTM: input-to-hidden matrix is a TT-matrix
                           (Yang et al. 2017; Tjandra et al. 2017)
=========================  ==============================================================

Parameter counts (exact): a TT tensor with mode sizes ``n_k`` and ranks ``r_k`` stores
``Σ_k r_{k-1} n_k r_k`` numbers; a TT-matrix ``Σ_k r_{k-1} m_k n_k r_k`` against ``∏m_k ∏n_k``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from refimpl.decomposition._ops import einsum
from refimpl.kernels.tt import (
    tt_embedding_lookup,
    tt_matmul,
    validate_tt_matrix_cores,
)
from refimpl.nn import Module, Parameter, Tensor
from refimpl.nn import functional as F
from refimpl.utils import (as_rng, check_array, check_float, check_int, validate_arrays,
                           validate_scalars)

__all__ = ["tt_svd", "tt_to_full", "tt_ranks", "tt_num_params", "tt_matrix",
           "tt_matrix_to_full", "tt_matrix_num_params", "tt_matrix_ranks", "tt_matvec", "tt_embedding_rows",
           "factorize_dim", "compression_ratio", "TTLinear", "TTEmbedding", "TTRNN", "FactorizedRNN", "rnn_scan",
           "random_tt", "truncation_rank"]


# ------------------------------------------------------------------ helpers
@validate_scalars(dense_params=(1, None), compressed_params=(1, None))
def compression_ratio(dense_params: int, compressed_params: int) -> float:
    """``dense_params / compressed_params`` (how many times smaller).

    Part of Survey §6.3.
    """
    return float(dense_params) / float(compressed_params)


@validate_scalars
def factorize_dim(n: int, d: int) -> tuple[int, ...]:
    """Split ``n`` into ``d`` integer factors with product exactly ``n``, as balanced as possible.

    Used to tensorise a dimension for TT/BT layers (Novikov et al. 2015 reshape ``M = ∏ m_k``).
    Raises ``ValueError`` (naming ``n``) if ``n`` has too few prime factors to give ``d``
    factors > 1 — then pad the dimension, as Khrulkov et al. (2019) pad the vocabulary.

    Part of Survey §6.3.
    """
    n = check_int(n, "n", 1)
    d = check_int(d, "d", 1)
    primes, m, p = [], n, 2
    while p * p <= m:
        while m % p == 0:
            primes.append(p)
            m //= p
        p += 1
    if m > 1:
        primes.append(m)
    if len(primes) < d:
        raise ValueError(f"n = {n} does not factor into d = {d} factors > 1 "
                         f"(prime factors {primes}); pad it to a composite size")
    factors = [1] * d
    for q in sorted(primes, reverse=True):  # greedy: give the next prime to the smallest factor
        i = int(np.argmin(factors))
        factors[i] *= q
    return tuple(sorted(factors, reverse=True))


def truncation_rank(s: np.ndarray, delta: float) -> int:
    """Smallest ``r ≥ 1`` with ``sqrt(Σ_{i≥r} s_i²) ≤ delta`` (the δ-truncated SVD rank).

    Part of Survey §6.3 (TT-SVD, Oseledets 2011, Alg. 1). ``s`` of shape (k,), sorted descending.
    """
    tail = np.sqrt(np.maximum(np.cumsum((s ** 2)[::-1])[::-1], 0.0))  # tail[i] = ||s[i:]||
    ok = np.nonzero(tail <= delta)[0]
    r = int(ok[0]) if ok.size else len(s)
    return max(r, 1)


def _max_ranks(shape: Sequence[int]) -> list[int]:
    """Largest feasible TT-ranks r_1..r_{d-1}: min(∏_{j≤k} n_j, ∏_{j>k} n_j)."""
    d = len(shape)
    return [int(min(np.prod(shape[:k + 1]), np.prod(shape[k + 1:]))) for k in range(d - 1)]


def _rank_caps(max_rank, shape, name: str = "max_rank") -> list[int]:
    d = len(shape)
    bound = _max_ranks(shape)
    if max_rank is None:
        return bound
    if isinstance(max_rank, (int, np.integer)) and not isinstance(max_rank, bool):
        r = check_int(max_rank, name, 1)
        return [min(r, b) for b in bound]
    if isinstance(max_rank, (str, bytes)) or not hasattr(max_rank, "__iter__"):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {max_rank!r}")
    ranks = list(max_rank)
    if len(ranks) == d + 1:  # tensorly style, with the boundary ranks 1
        if ranks[0] != 1 or ranks[-1] != 1:
            raise ValueError(f"{name} with d+1 entries must start and end with 1, got {ranks}")
        ranks = ranks[1:-1]
    if len(ranks) != d - 1:
        raise ValueError(f"{name} must be an int or a sequence of d-1 = {d - 1} ranks, "
                         f"got {len(ranks)} entries")
    out = []
    for k, (r, b) in enumerate(zip(ranks, bound)):
        r = check_int(r, f"{name}[{k}]", 1)
        if r > b:
            raise ValueError(f"{name}[{k}] = {r} exceeds the largest possible TT-rank {b} "
                             f"for shape {tuple(shape)} (min of the products of modes on each "
                             f"side of the cut)")
        out.append(r)
    return out


# ------------------------------------------------------------------ TT tensors
@validate_scalars
def tt_svd(X, max_rank=None, eps: float | None = None) -> list[np.ndarray]:
    r"""TT-SVD: decompose a ``d``-way tensor into a train of 3-way cores.

    Parameters
    ----------
    X : ndarray of shape (n_1, ..., n_d)
        Real, finite, non-empty, ``d ≥ 1``.
    max_rank : int or sequence of int, optional
        Cap on the TT-ranks: one int for all, or ``d-1`` ranks ``(r_1..r_{d-1})`` (or ``d+1``
        with the boundary 1s, as TensorLy takes them). An explicit rank above the largest
        possible one (``min(∏_{j≤k} n_j, ∏_{j>k} n_j)``) is an error; an int cap is clipped.
    eps : float, optional
        Relative error bound: each step uses the δ-truncated SVD with
        :math:`\delta = \varepsilon / \sqrt{d-1}\,\|X\|_F`, so that
        :math:`\|X - \hat X\|_F \le \varepsilon \|X\|_F` (Oseledets 2011, Thm. 2.2) — when no
        rank cap binds. With neither argument the decomposition is exact (full ranks).

    Returns
    -------
    list of ndarray
        ``d`` cores, core ``k`` of shape ``(r_{k-1}, n_k, r_k)``, ``r_0 = r_d = 1``.

    Notes
    -----
    Survey §6.3: "TTD decomposes a high-dimensional tensor into several 2-d and 3-d tensors
    that multiply to reconstruct it" — Oseledets (2011), Algorithm 1:

    .. math:: X(i_1,\dots,i_d) = G_1[i_1] G_2[i_2] \cdots G_d[i_d],\quad
              G_k[i_k] \in \mathbb{R}^{r_{k-1}\times r_k}.

    References
    ----------
    .. [1] I. V. Oseledets, "Tensor-Train Decomposition", SIAM J. Sci. Comput. 33(5), 2011.
    """
    X = check_array(X, "X", dtype=np.float64)
    if X.ndim < 1:
        raise ValueError(f"X must have at least one dimension, got shape {X.shape}")
    shape = X.shape
    d = len(shape)
    caps = _rank_caps(max_rank, shape)
    if eps is not None:
        eps = check_float(eps, "eps", 0.0)
    if d == 1:
        return [X.reshape(1, shape[0], 1).copy()]
    delta = 0.0 if eps is None else eps / math.sqrt(d - 1) * float(np.linalg.norm(X))
    cores = []
    C = X
    r_prev = 1
    for k in range(d - 1):
        C = C.reshape(r_prev * shape[k], -1)  # (r_{k-1} n_k, n_{k+1}..n_d)
        U, s, Vt = np.linalg.svd(C, full_matrices=False)
        r = caps[k] if eps is None else min(truncation_rank(s, delta), caps[k])
        r = min(r, len(s))
        cores.append(U[:, :r].reshape(r_prev, shape[k], r))  # (r_{k-1}, n_k, r_k)
        C = s[:r, None] * Vt[:r]  # (r_k, n_{k+1}..n_d)
        r_prev = r
    cores.append(C.reshape(r_prev, shape[-1], 1))
    return cores


def _check_tt_cores(cores, name="cores"):
    if not isinstance(cores, (list, tuple)) or len(cores) == 0:
        raise ValueError(f"{name} must be a non-empty list of 3-d arrays")
    r = 1
    for k, G in enumerate(cores):
        G = np.asarray(G)
        if G.ndim != 3:
            raise ValueError(f"{name}[{k}] must have shape (r_prev, n, r_next), got {G.shape}")
        if G.shape[0] != r:
            raise ValueError(f"{name}[{k}] has left rank {G.shape[0]}, expected {r}")
        if G.size == 0:
            raise ValueError(f"{name}[{k}] must not be empty, got shape {G.shape}")
        r = G.shape[2]
    if r != 1:
        raise ValueError(f"{name}[-1] must have right rank 1, got {r}")


@validate_scalars
def tt_to_full(cores) -> np.ndarray:
    """Contract TT cores ``(r_{k-1}, n_k, r_k)`` into the full tensor of shape ``(n_1..n_d)``.

    Survey §6.3.

    References
    ----------
    .. [1] I. V. Oseledets, "Tensor-Train Decomposition", SIAM J. Sci. Comput. 33(5), 2011.
    """
    _check_tt_cores(cores)
    out = np.asarray(cores[0])
    shape = [out.shape[1]]
    out = out.reshape(shape[0], -1)  # (n_1, r_1)
    for G in cores[1:]:
        G = np.asarray(G)
        shape.append(G.shape[1])
        out = out @ G.reshape(G.shape[0], -1)  # (n_1..n_k, n_{k+1} r_{k+1})
        out = out.reshape(-1, G.shape[2])
    return out.reshape(shape)


@validate_scalars
@validate_arrays(cores={"sequence": True, "ndim": (3, 4)})
def tt_ranks(cores) -> tuple[int, ...]:
    """``(1, r_1, ..., r_{d-1}, 1)`` of TT (3-d) or TT-matrix (4-d) cores.

    Part of Survey §6.3.
    """
    return (1,) + tuple(int(np.shape(G)[-1]) for G in cores)


@validate_scalars
@validate_arrays(cores={"sequence": True, "ndim": (3, 4)})
def tt_num_params(cores) -> int:
    """Exact number of stored numbers: ``Σ_k size(G_k)``.

    Part of Survey §6.3.
    """
    return int(sum(np.size(G) for G in cores))


@validate_scalars
@validate_arrays(shape={"kind": "dims"})
def random_tt(shape, rank, rng=None) -> list[np.ndarray]:
    """Random TT cores with the given ranks (``rank`` int or ``d-1`` ranks), Gaussian entries
    scaled so the full tensor has entries of order 1. A known-rank test tensor.

    Part of Survey §6.3. Returns cores of shape (r_{k-1}, n_k, r_k).
    """
    rng = as_rng(rng)
    d = len(shape)
    caps = _rank_caps(rank, shape, "rank")
    ranks = [1] + caps + [1]
    return [rng.standard_normal((ranks[k], shape[k], ranks[k + 1])) / math.sqrt(ranks[k])
            for k in range(d)]


# ------------------------------------------------------------------ TT matrices
def _check_dims(dims, name, total=None):
    dims = tuple(int(check_int(v, f"{name}[{i}]", 1)) for i, v in enumerate(dims))
    if not dims:
        raise ValueError(f"{name} must be a non-empty sequence of positive ints")
    if total is not None and int(np.prod(dims)) != total:
        raise ValueError(f"{name} = {dims} must multiply to {total}, got {int(np.prod(dims))}")
    return dims


@validate_scalars
@validate_arrays(row_dims={"kind": "dims"}, col_dims={"kind": "dims"})
def tt_matrix(W, row_dims, col_dims, max_rank=None, eps=None) -> list[np.ndarray]:
    r"""Reshape a weight ``W`` of shape ``(M, N)`` into TT-matrix cores and TT-SVD it.

    Parameters
    ----------
    W : ndarray of shape (M, N)
    row_dims : sequence of d ints with ``∏ m_k = M``
    col_dims : sequence of d ints with ``∏ n_k = N``
    max_rank, eps
        As in :func:`tt_svd` (applied to the ``(m_1 n_1, ..., m_d n_d)`` tensor).

    Returns
    -------
    list of ndarray, core k of shape (r_{k-1}, m_k, n_k, r_k)

    Notes
    -----
    Survey §6.3: "first represent the matrix as a multi-dimensional tensor by a simple reshape,
    then apply TTD". Novikov et al. (2015), Eq. (3):
    :math:`W((i_1,j_1),\dots,(i_d,j_d)) = G_1[i_1,j_1]\cdots G_d[i_d,j_d]`.

    References
    ----------
    .. [1] A. Novikov et al., "Tensorizing Neural Networks", NeurIPS 2015.
    """
    W = check_array(W, "W", ndim=2, dtype=np.float64)
    M, N = W.shape
    ms = _check_dims(row_dims, "row_dims", M)
    ns = _check_dims(col_dims, "col_dims", N)
    if len(ms) != len(ns):
        raise ValueError(f"row_dims and col_dims must have the same length, got {len(ms)} and "
                         f"{len(ns)}")
    d = len(ms)
    T = W.reshape(ms + ns)  # (m_1..m_d, n_1..n_d)
    perm = [a for k in range(d) for a in (k, d + k)]
    T = T.transpose(perm).reshape([m * n for m, n in zip(ms, ns)])  # (m_1 n_1, ..., m_d n_d)
    cores = tt_svd(T, max_rank=max_rank, eps=eps)
    return [G.reshape(G.shape[0], m, n, G.shape[2]) for G, m, n in zip(cores, ms, ns)]


@validate_scalars
def tt_matrix_to_full(cores) -> np.ndarray:
    """The dense ``(M, N)`` matrix of TT-matrix cores ``(r_{k-1}, m_k, n_k, r_k)``.

    Survey §6.3.

    References
    ----------
    .. [1] A. Novikov et al., "Tensorizing Neural Networks", NeurIPS 2015.
    """
    ms, ns, _ = validate_tt_matrix_cores(cores)
    d = len(ms)
    full = tt_to_full([np.asarray(G).reshape(G.shape[0], -1, G.shape[3]) for G in cores])
    full = full.reshape([a for m, n in zip(ms, ns) for a in (m, n)])  # (m_1, n_1, ..., m_d, n_d)
    perm = [2 * k for k in range(d)] + [2 * k + 1 for k in range(d)]
    return full.transpose(perm).reshape(int(np.prod(ms)), int(np.prod(ns)))


@validate_scalars
@validate_arrays(row_dims={"kind": "dims"}, col_dims={"kind": "dims"})
def tt_matrix_ranks(row_dims, col_dims, rank) -> tuple[int, ...]:
    """Feasible TT-ranks ``(1, r_1, ..., r_{d-1}, 1)`` of a TT-matrix with an int rank cap:
    ``r_k = min(rank, ∏_{j≤k} m_j n_j, ∏_{j>k} m_j n_j)`` (what :func:`tt_matrix` returns for
    a generic matrix).

    Part of Survey §6.3.
    """
    caps = _rank_caps(rank, [m * n for m, n in zip(row_dims, col_dims)], "rank")
    return (1,) + tuple(caps) + (1,)


@validate_scalars
@validate_arrays(row_dims={"kind": "dims"}, col_dims={"kind": "dims"}, ranks={"kind": "dims"})
def tt_matrix_num_params(row_dims, col_dims, ranks) -> int:
    """``Σ_k r_{k-1} m_k n_k r_k`` for ranks ``(1, r_1, ..., r_{d-1}, 1)``, or for one int cap
    (clipped to the feasible ranks, :func:`tt_matrix_ranks`).

    Part of Survey §6.3.
    """
    d = len(row_dims)
    if isinstance(ranks, (int, np.integer)):
        ranks = tt_matrix_ranks(row_dims, col_dims, ranks)
    if len(ranks) != d + 1:
        raise ValueError(f"ranks must have d+1 = {d + 1} entries (1, r_1, ..., 1), got {ranks}")
    return int(sum(ranks[k] * row_dims[k] * col_dims[k] * ranks[k + 1] for k in range(d)))


@validate_scalars
def tt_matvec(cores, X, backend: str | None = None) -> np.ndarray:
    """``X @ W.T`` for a TT-matrix ``W`` without forming it; see
    :func:`refimpl.kernels.tt.tt_matmul`. ``X`` of shape (B, N) or (N,).

    Survey §6.3 (TT-layer). Returns shape (B, M) or (M,).

    References
    ----------
    .. [1] A. Novikov et al., "Tensorizing Neural Networks", NeurIPS 2015.
    """
    return tt_matmul(cores, X, backend=backend)


@validate_scalars
def tt_embedding_rows(cores, idx, backend: str | None = None) -> np.ndarray:
    """Rows ``E[idx]`` of a TT-embedding; see :func:`refimpl.kernels.tt.tt_embedding_lookup`.

    Survey §6.3 (TT-embedding). Returns shape idx.shape + (D,).

    References
    ----------
    .. [1] V. Khrulkov et al., "Tensorized Embedding Layers for Efficient Model Compression", arXiv
       1901.10787, 2019.
    """
    return tt_embedding_lookup(cores, idx, backend=backend)


# ------------------------------------------------------------------ differentiable layers
def _tt_matmul_tensor(cores: Sequence[Tensor], x: Tensor, ms, ns) -> Tensor:
    """Tape version of the kernel's contraction: ``x`` (B, N) -> (B, M)."""
    B = x.shape[0]
    T = x.reshape(B, -1, 1, 1)
    for k in range(len(cores) - 1, -1, -1):
        G = cores[k]  # (r_{k-1}, m_k, n_k, r_k)
        Ir = T.shape[3]
        T = T.reshape(B, -1, ns[k], G.shape[3], Ir)  # (B, n_<k, n_k, r_k, m_>k)
        T = einsum("bjnrI,smnr->bjsmI", T, G)  # (B, n_<k, r_{k-1}, m_k, m_>k)
        T = T.reshape(B, T.shape[1], G.shape[0], -1)
    return T.reshape(B, -1)  # (B, M)


def _init_cores(ms, ns, rank, rng, fan_in):
    d = len(ms)
    caps = _rank_caps(rank, [m * n for m, n in zip(ms, ns)], "rank")
    ranks = [1] + caps + [1]
    # W_ij is a sum over prod_k r_k rank paths of products of d independent core entries of
    # variance `per`, so var(W_ij) = (prod_k r_k) per^d; pick per so that var(W_ij) = 1/fan_in
    target = 1.0 / fan_in
    prod_r = float(np.prod(ranks[1:-1]))
    per = (target / prod_r) ** (1.0 / d)
    return [rng.standard_normal((ranks[k], ms[k], ns[k], ranks[k + 1])) * math.sqrt(per)
            for k in range(d)], tuple(ranks)


class TTLinear(Module):
    r"""TT-layer: ``y = x W^T + b`` with ``W`` (out, in) a TT-matrix (Survey §6.3).

    Parameters
    ----------
    in_dims : sequence of int
        ``in_features = ∏ n_k``.
    out_dims : sequence of int
        ``out_features = ∏ m_k`` (same length ``d`` as ``in_dims``).
    rank : int or sequence of d-1 ints
        TT-ranks.
    bias : bool
    rng : Generator or seed

    Attributes
    ----------
    cores : list of Parameter, core k of shape (r_{k-1}, m_k, n_k, r_k)
        Also attributes ``core0``, ``core1``, ... so ``named_parameters`` finds them.
    b : Parameter of shape (out_features,) or None

    Notes
    -----
    Parameters: :math:`\sum_k r_{k-1} m_k n_k r_k` (+ bias) against :math:`MN` dense.

    References
    ----------
    .. [1] A. Novikov et al., "Tensorizing Neural Networks", NeurIPS 2015.
    """

    @validate_scalars
    @validate_arrays(in_dims={"kind": "dims"}, out_dims={"kind": "dims"}, rank={"kind": "ranks"})
    def __init__(self, in_dims, out_dims, rank, bias: bool = True, rng=None):
        self.in_dims = _check_dims(in_dims, "in_dims")
        self.out_dims = _check_dims(out_dims, "out_dims")
        if len(self.in_dims) != len(self.out_dims):
            raise ValueError(f"in_dims and out_dims must have the same length, got "
                             f"{len(self.in_dims)} and {len(self.out_dims)}")
        self.in_features = int(np.prod(self.in_dims))
        self.out_features = int(np.prod(self.out_dims))
        rng = as_rng(rng)
        cores, self.ranks = _init_cores(self.out_dims, self.in_dims, rank, rng, self.in_features)
        self._set_cores(cores)
        self.b = Parameter(np.zeros(self.out_features)) if bias else None

    def _set_cores(self, cores):
        self.d = len(cores)
        for k, G in enumerate(cores):
            setattr(self, f"core{k}", Parameter(np.asarray(G, dtype=np.float64)))

    @property
    def cores(self) -> list[Parameter]:
        return [getattr(self, f"core{k}") for k in range(self.d)]

    @classmethod
    def from_dense(cls, W, b=None, *, in_dims, out_dims, rank=None, eps=None) -> "TTLinear":
        """TT-SVD a trained dense weight ``W`` (out, in) into a TT-layer (same bias)."""
        W = check_array(W, "W", ndim=2)
        cores = tt_matrix(W, out_dims, in_dims, max_rank=rank, eps=eps)
        layer = cls(in_dims, out_dims, rank=1, bias=b is not None)
        layer._set_cores(cores)
        layer.ranks = tt_ranks(cores)
        if b is not None:
            layer.b = Parameter(check_array(b, "b", shape=(layer.out_features,)).copy())
        return layer

    def weight(self) -> np.ndarray:
        """The dense ``(out, in)`` matrix (for checks only; forward never forms it)."""
        return tt_matrix_to_full([G.data for G in self.cores])

    def num_parameters_dense(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.b is not None else 0)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64))
        lead = x.shape[:-1]
        y = _tt_matmul_tensor(self.cores, x.reshape(-1, self.in_features), self.out_dims,
                              self.in_dims)  # (B, out)
        if self.b is not None:
            y = y + self.b
        return y.reshape(*lead, self.out_features)


class TTEmbedding(Module):
    r"""TT-embedding (Khrulkov et al. 2019; Survey §6.3): an embedding matrix ``E`` (V, D) stored
    as TT-matrix cores ``(r_{k-1}, v_k, d_k, r_k)`` with ``∏ v_k ≥ V`` (padded) and
    ``∏ d_k = D``. A lookup multiplies the ``d`` core slices of the row's digits.

    Parameters
    ----------
    num_embeddings : int
        ``V``; rows beyond ``V`` in the padded ``∏ v_k`` are never looked up.
    voc_dims : sequence of int with ``∏ v_k ≥ V``
    emb_dims : sequence of int (same length), ``D = ∏ d_k``
    rank : int or sequence
    rng : Generator or seed

    Notes
    -----
    Parameters :math:`\sum_k r_{k-1} v_k d_k r_k` against :math:`VD`. Khrulkov et al. initialise
    the cores so the full matrix has a target variance; we use a Glorot-like scale.

    References
    ----------
    .. [1] V. Khrulkov et al., "Tensorized Embedding Layers for Efficient Model Compression",
       arXiv:1901.10787, 2019.
    """

    @validate_scalars
    @validate_arrays(voc_dims={"kind": "dims"}, emb_dims={"kind": "dims"}, rank={"kind": "ranks"})
    def __init__(self, num_embeddings: int, voc_dims, emb_dims, rank, rng=None):
        self.num_embeddings = check_int(num_embeddings, "num_embeddings", 1)
        self.voc_dims = _check_dims(voc_dims, "voc_dims")
        self.emb_dims = _check_dims(emb_dims, "emb_dims")
        if len(self.voc_dims) != len(self.emb_dims):
            raise ValueError("voc_dims and emb_dims must have the same length")
        if int(np.prod(self.voc_dims)) < self.num_embeddings:
            raise ValueError(f"voc_dims = {self.voc_dims} must multiply to at least "
                             f"num_embeddings = {self.num_embeddings}")
        self.embedding_dim = int(np.prod(self.emb_dims))
        rng = as_rng(rng)
        cores, self.ranks = _init_cores(self.voc_dims, self.emb_dims, rank, rng,
                                        self.embedding_dim)
        self.d = len(cores)
        for k, G in enumerate(cores):
            setattr(self, f"core{k}", Parameter(G))

    @property
    def cores(self) -> list[Parameter]:
        return [getattr(self, f"core{k}") for k in range(self.d)]

    @classmethod
    def from_dense(cls, E, *, voc_dims, emb_dims, rank=None, eps=None) -> "TTEmbedding":
        """TT-SVD a dense embedding ``E`` (V, D), zero-padding rows up to ``∏ v_k``."""
        E = check_array(E, "E", ndim=2)
        V, D = E.shape
        Vp = int(np.prod(voc_dims))
        if Vp < V:
            raise ValueError(f"voc_dims = {tuple(voc_dims)} must multiply to at least V = {V}")
        Ep = np.zeros((Vp, D))
        Ep[:V] = E
        cores = tt_matrix(Ep, voc_dims, emb_dims, max_rank=rank, eps=eps)
        m = cls(V, voc_dims, emb_dims, rank=1)
        for k, G in enumerate(cores):
            setattr(m, f"core{k}", Parameter(G))
        m.ranks = tt_ranks(cores)
        return m

    def weight(self) -> np.ndarray:
        """The dense ``(V, D)`` matrix (checks only)."""
        return tt_matrix_to_full([G.data for G in self.cores])[: self.num_embeddings]

    def num_parameters_dense(self) -> int:
        return self.num_embeddings * self.embedding_dim

    def forward(self, idx):
        idx = np.asarray(idx.data if isinstance(idx, Tensor) else idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx must be an integer array, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise ValueError(f"idx must be in [0, {self.num_embeddings})")
        flat = idx.reshape(-1).astype(np.int64)
        n = flat.size
        digits = np.zeros((n, self.d), dtype=np.int64)
        rest = flat.copy()
        for k in range(self.d - 1, -1, -1):
            digits[:, k] = rest % self.voc_dims[k]
            rest //= self.voc_dims[k]
        R = Tensor(np.ones((n, 1, 1)))
        for k, G in enumerate(self.cores):
            Gk = G[:, digits[:, k]]  # (r_{k-1}, n, d_k, r_k)
            R = einsum("bpr,rbqs->bpqs", R, Gk)  # (n, p, d_k, r_k)
            R = R.reshape(n, -1, G.shape[3])
        return R.reshape(*idx.shape, self.embedding_dim)


def rnn_scan(gi_all, W_hh, b_hh, hidden_size: int, cell: str, lengths=None):
    """Run a GRU/LSTM (PyTorch gate order: GRU r, z, n; LSTM i, f, g, o) over precomputed
    input projections ``gi_all`` (B, T, gates·H); returns ``(outputs (B, T, H), h_last (B, H))``.
    Padded steps (``t ≥ lengths[b]``) keep the last valid state.

    Part of Survey §6.3 (the recurrence of TT-RNN and BT-RNN).
    """
    B, T, _ = gi_all.shape
    H = hidden_size
    h = Tensor(np.zeros((B, H)))
    c = Tensor(np.zeros((B, H)))
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    outs = []
    for t in range(T):
        gi = gi_all[:, t]  # (B, gates*H)
        gh = F.linear(h, W_hh, b_hh)  # (B, gates*H)
        keep = (t < lengths)[:, None].astype(np.float64)  # (B, 1)
        if cell == "gru":
            r = F.sigmoid(gi[:, :H] + gh[:, :H])
            z = F.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = F.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            h_new = (1.0 - z) * n + z * h
        else:
            g = gi + gh
            i_, f_ = F.sigmoid(g[:, :H]), F.sigmoid(g[:, H:2 * H])
            g_, o_ = F.tanh(g[:, 2 * H:3 * H]), F.sigmoid(g[:, 3 * H:])
            c_new = f_ * c + i_ * g_
            h_new = o_ * F.tanh(c_new)
            c = c_new * keep + c * (1.0 - keep)
        h = h_new * keep + h * (1.0 - keep)
        outs.append(h)
    return F.stack(outs, axis=1), h


class FactorizedRNN(Module):
    """A GRU/LSTM whose input-to-hidden map ``W_ih`` is any module ``(..., D) -> (..., gates·H)``
    (a :class:`TTLinear`, a BT-layer, ...); ``W_hh`` (gates·H, H) stays dense.

    ``forward(x (B, T, D), lengths=None) -> (outputs (B, T, H), h_last (B, H))``.

    Survey §6.3: TT-RNN and BT-RNN.

    References
    ----------
    .. [1] Y. Yang, D. Krompass, V. Tresp, "Tensor-Train Recurrent Neural Networks for Video
       Classification", ICML 2017.
    .. [2] J. Ye et al., "Learning Compact Recurrent Neural Networks with Block-Term Tensor
       Decomposition", CVPR 2018.
    """

    @validate_scalars
    @validate_arrays(W_ih={"kind": "module"})
    def __init__(self, W_ih: Module, hidden_size: int, cell: str = "gru", rng=None):
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        self.cell = cell
        self.hidden_size = check_int(hidden_size, "hidden_size", 1)
        gates = 3 if cell == "gru" else 4
        if W_ih.out_features != gates * self.hidden_size:
            raise ValueError(f"W_ih must have out_features = {gates} * hidden_size = "
                             f"{gates * self.hidden_size} for a {cell.upper()}, got "
                             f"{W_ih.out_features} (out_dims must multiply to it)")
        rng = as_rng(rng)
        self.W_ih = W_ih
        H = self.hidden_size
        k = 1.0 / math.sqrt(H)
        self.W_hh = Parameter(rng.uniform(-k, k, size=(gates * H, H)))
        self.b_hh = Parameter(np.zeros(gates * H))
        self.input_size = W_ih.in_features

    def forward(self, x, lengths=None):
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64))
        gi_all = self.W_ih(x)  # (B, T, gates*H): one factorised matmul for every step
        return rnn_scan(gi_all, self.W_hh, self.b_hh, self.hidden_size, self.cell, lengths)


class TTRNN(FactorizedRNN):
    r"""TT-GRU / TT-LSTM (Yang et al. 2017; Tjandra et al. 2017; Survey §6.3): a GRU or LSTM whose
    input-to-hidden matrix ``W_ih`` (gates·H, D) is one TT-matrix (:class:`TTLinear`, all gates
    at once); the hidden-to-hidden matrix stays dense.

    Gate order and equations are PyTorch's (GRU r, z, n; LSTM i, f, g, o).

    Parameters
    ----------
    in_dims : sequence of int, ``D = ∏ n_k``
    out_dims : sequence of int, ``∏ m_k = gates · hidden_size`` (gates 3 for GRU, 4 for LSTM)
    hidden_size : int
    rank : int or sequence
    cell : {"gru", "lstm"}
    rng : Generator or seed

    Inputs ``x`` (B, T, D) batch-first, optional ``lengths`` (B,). ``forward`` returns
    ``(outputs (B, T, H), h_last (B, H))``.

    References
    ----------
    .. [1] Y. Yang, D. Krompass, V. Tresp, "Tensor-Train Recurrent Neural Networks for Video
       Classification", ICML 2017.
    .. [2] A. Tjandra, S. Sakti, S. Nakamura, "Compressing Recurrent Neural Network with Tensor
       Train", IJCNN 2017.
    """

    @validate_scalars
    @validate_arrays(in_dims={"kind": "dims"}, out_dims={"kind": "dims"}, rank={"kind": "ranks"})
    def __init__(self, in_dims, out_dims, hidden_size: int, rank, cell: str = "gru", rng=None):
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        rng = as_rng(rng)
        super().__init__(TTLinear(in_dims, out_dims, rank, bias=True, rng=rng), hidden_size,
                         cell, rng=rng)
