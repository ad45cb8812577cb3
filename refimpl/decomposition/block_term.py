"""Block-term decomposition, BT-RNN and Tucker-based multi-linear attention — Survey §6.3
(second half).

=============================  ==========================================================
:func:`btd_als`                BTD: ``X ≈ Σ_{n=1}^N G_n ×_1 U_n^(1) … ×_d U_n^(d)``
                               (sum of N Tucker terms; De Lathauwer 2008), block-wise ALS
:func:`btd_to_full`            reconstruct
:func:`btd_num_params`         ``N (∏ R_k + Σ n_k R_k)``
:func:`bt_matrix`              BTD of a weight reshaped as ``(m_1 n_1, …, m_d n_d)``
:class:`BTLinear`              BT-layer (Ye et al. 2018): ``y = x W^T``, ``W`` in BT format
:class:`BTRNN`                 BT-GRU / BT-LSTM: input-to-hidden matrix is a BT-layer
:class:`MultiLinearAttention`  Tucker single-block attention and its BTD multi-head form
                               (Ma et al. 2019)
=============================  ==========================================================
"""

from __future__ import annotations

import math
import string

import numpy as np

from refimpl.decomposition._ops import einsum
from refimpl.decomposition.cp_tucker import (
    _leading_left_vectors,
    check_tucker_ranks,
    hooi,
    mode_dot,
    tucker_to_full,
    unfold,
)
from refimpl.decomposition.tensor_train import FactorizedRNN, _check_dims
from refimpl.nn import Module, Parameter, Tensor
from refimpl.nn import functional as F
from refimpl.utils import (as_rng, check_array, check_float, check_int, validate_arrays,
                           validate_scalars)

__all__ = ["btd_als", "btd_to_full", "btd_num_params", "bt_matrix", "bt_matrix_to_full",
           "bt_matrix_num_params", "BTLinear", "BTRNN", "MultiLinearAttention",
           "single_block_attention"]


@validate_scalars
@validate_arrays(cores={"sequence": True})
@validate_arrays(factors={"kind": "sequence"})
def btd_to_full(cores, factors) -> np.ndarray:
    """``Σ_n G_n ×_1 U_n^(1) … ×_d U_n^(d)``; ``cores[n]`` (R_1..R_d), ``factors[n][k]``
    (n_k, R_k).

    Part of Survey §6.3 (BTD, De Lathauwer 2008). Returns the full tensor of shape (n_1, ..., n_d).
    """
    if len(cores) == 0 or len(cores) != len(factors):
        raise ValueError("cores and factors must be non-empty lists of the same length N")
    return sum(tucker_to_full(G, U) for G, U in zip(cores, factors))


@validate_scalars
@validate_arrays(shape={"kind": "dims"}, ranks={"kind": "ranks"})
def btd_num_params(shape, ranks, n_blocks: int) -> int:
    """``N (∏ R_k + Σ n_k R_k)`` stored numbers.

    Part of Survey §6.3 (BTD).
    """
    ranks = check_tucker_ranks(ranks, shape)
    n_blocks = check_int(n_blocks, "n_blocks", 1)
    return int(n_blocks * (np.prod(ranks) + sum(n * r for n, r in zip(shape, ranks))))


@validate_scalars
@validate_arrays(ranks={"kind": "ranks"})
def btd_als(X, ranks, n_blocks: int, *, n_iter: int = 50, tol: float = 1e-10,
            method: str = "als", init: str = "greedy", rng=None):
    r"""Block-term decomposition (rank-(R_1..R_d) terms) by block-wise alternating least squares.

    Parameters
    ----------
    X : ndarray of shape (n_1, ..., n_d), d ≥ 2
    ranks : int or sequence of d ints, ``1 ≤ R_k ≤ n_k`` (the same for every block)
    n_blocks : int in [1, ∏_k ⌈n_k / R_k⌉]
        ``N``, the number of Tucker terms (Ye et al. call it the CP-rank). The upper bound is
        the number of ``R_1 × … × R_d`` tiles of ``X``, an exact BTD: more blocks are refused.
    n_iter : int
        Sweeps over the blocks.
    tol : float
        Stop when the relative error changes by less than ``tol``.
    method : {"als", "bcd"}
        ``"als"``: each sweep first solves the joint least-squares problem for the mode-k
        factors of *all* blocks (De Lathauwer 2008, ALS), mode by mode, then refits every core;
        ``"bcd"``: block-coordinate descent only (each block refit to its residual by one HOOI
        sweep). Both never increase the error.
    init : {"greedy", "random"}
        Greedy: block ``n`` starts as the HOOI fit of the residual of blocks ``< n``. Random:
        random orthonormal factors (then each core is the projection of the residual).
    rng : Generator or seed
        For ``init="random"``.

    Returns
    -------
    cores : list of N ndarrays (R_1..R_d)
    factors : list of N lists of ndarrays (n_k, R_k) with orthonormal columns
    errors : list of float
        Relative error after each sweep; non-increasing.

    Notes
    -----
    Survey §6.3: "BTD decomposes a high-order tensor into a sum of several Tucker decompositions"

    .. math:: X \approx \sum_{n=1}^{N} G_n \times_1 U_n^{(1)} \times_2 \cdots \times_d U_n^{(d)}.

    Algorithm: greedy initialisation (block ``n`` = HOSVD/HOOI of the residual of blocks
    ``< n``), then sweeps. ALS sweep: for every mode ``k``, the stacked factor
    :math:`[U_1^{(k)}\cdots U_N^{(k)}]` is the least-squares solution of
    :math:`X_{(k)} \approx [U_1^{(k)}\cdots U_N^{(k)}]\,[M_1; \dots; M_N]` with
    :math:`M_n = (G_n \times_{j\ne k} U_n^{(j)})_{(k)}` (then re-orthonormalised by QR, the
    triangular factor moved into the core); finally each core is refit to its residual,
    :math:`G_n = (X - \sum_{m\ne n}\text{term}_m) \times_k U_n^{(k)\top}`. Every update
    minimises the error over the variables it changes, so the error is non-increasing.

    References
    ----------
    .. [1] L. De Lathauwer, "Decompositions of a Higher-Order Tensor in Block Terms — Part II",
       SIAM J. Matrix Anal. Appl. 30(3), 2008.
    .. [2] J. Ye et al., "Learning Compact Recurrent Neural Networks with Block-Term Tensor
       Decomposition", CVPR 2018.
    """
    X = check_array(X, "X", dtype=np.float64)
    if X.ndim < 2:
        raise ValueError(f"X must have at least 2 dimensions, got shape {X.shape}")
    ranks = check_tucker_ranks(ranks, X.shape)
    # the prod_k ceil(n_k / R_k) tiles of X (each a rank-(R) term with selector factors) are an
    # exact BTD: more blocks are never needed
    max_blocks = int(np.prod([-(-n // r) for n, r in zip(X.shape, ranks)]))
    n_blocks = check_int(n_blocks, "n_blocks", 1, max_blocks)
    n_iter = check_int(n_iter, "n_iter", 1)
    tol = check_float(tol, "tol", 0.0)
    if method not in ("als", "bcd"):
        raise ValueError(f"method must be 'als' or 'bcd', got {method!r}")
    d = X.ndim
    normX = float(np.linalg.norm(X))
    if normX == 0.0:
        raise ValueError("X must not be all zeros")
    cores, factors, terms = [], [], []
    res = X.copy()
    if init not in ("greedy", "random"):
        raise ValueError(f"init must be 'greedy' or 'random', got {init!r}")
    rng = as_rng(rng)
    for _ in range(n_blocks):  # greedy: HOSVD/HOOI of the residual; random: random subspaces
        if init == "greedy":
            G, U, _ = hooi(res, ranks, n_iter=2)
        else:
            U = [np.linalg.qr(rng.standard_normal((nk, r)))[0] for nk, r in zip(X.shape, ranks)]
            G = res
            for k in range(d):
                G = mode_dot(G, U[k].T, k)
        T = tucker_to_full(G, U)
        cores.append(G)
        factors.append(U)
        terms.append(T)
        res = res - T
    errors = [float(np.linalg.norm(res)) / normX]
    for _ in range(n_iter):
        if method == "als":
            for k in range(d):
                # joint LS for the mode-k factors of all blocks:
                # X_(k) ≈ [U_1^(k) … U_N^(k)] · vstack_n (G_n ×_{j≠k} U_n^(j))_(k)
                Ms = []
                for n in range(n_blocks):
                    Y = cores[n]
                    for j in range(d):
                        if j != k:
                            Y = mode_dot(Y, factors[n][j], j)
                    Ms.append(unfold(Y, k))  # (R_k, ∏_{j≠k} n_j)
                M = np.vstack(Ms)  # (N R_k, ∏_{j≠k} n_j)
                Uk = np.linalg.lstsq(M.T, unfold(X, k).T, rcond=None)[0].T  # (n_k, N R_k)
                for n in range(n_blocks):
                    U = Uk[:, n * ranks[k]:(n + 1) * ranks[k]]
                    Q, Rm = np.linalg.qr(U)  # keep factors orthonormal, push R into the core
                    factors[n][k] = Q
                    cores[n] = mode_dot(cores[n], Rm, k)
            terms = [tucker_to_full(G, U) for G, U in zip(cores, factors)]
            res = X - sum(terms)
        for n in range(n_blocks):
            R_n = res + terms[n]  # residual without block n
            U = factors[n]
            if method == "bcd":
                for k in range(d):
                    Y = R_n
                    for j in range(d):
                        if j != k:
                            Y = mode_dot(Y, U[j].T, j)
                    U[k] = _leading_left_vectors(unfold(Y, k), ranks[k])
            G = R_n
            for k in range(d):
                G = mode_dot(G, U[k].T, k)  # optimal core for orthonormal factors
            cores[n] = G
            terms[n] = tucker_to_full(G, U)
            res = R_n - terms[n]
        errors.append(float(np.linalg.norm(res)) / normX)
        if abs(errors[-2] - errors[-1]) < tol:
            break
    return cores, factors, errors


# ------------------------------------------------------------------ BT matrices / layers
@validate_scalars
@validate_arrays(row_dims={"kind": "dims"}, col_dims={"kind": "dims"}, ranks={"kind": "ranks"})
def bt_matrix(W, row_dims, col_dims, ranks, n_blocks: int, *, n_iter: int = 30):
    r"""BTD of a weight ``W`` (M, N) reshaped as the d-way tensor ``(m_1 n_1, …, m_d n_d)``
    (the same reshape as :func:`refimpl.decomposition.tensor_train.tt_matrix`).

    Returns
    -------
    cores : list of N ndarrays (R, ..., R)
    factors : list of N lists of ndarrays (m_k, n_k, R_k) — Ye et al.'s 3-way factor tensors
    errors : list of float

    Notes
    -----
    Survey §6.3: the weight of a BT-layer.

    References
    ----------
    .. [1] L. De Lathauwer, "Decompositions of a higher-order tensor in block terms — Part II:
       definitions and uniqueness", SIAM J. Matrix Anal. Appl. 30(3), 2008.
    .. [2] J. Ye et al., "Learning Compact Recurrent Neural Networks with Block-Term Tensor
       Decomposition", CVPR 2018.
    """
    W = check_array(W, "W", ndim=2, dtype=np.float64)
    ms = _check_dims(row_dims, "row_dims", W.shape[0])
    ns = _check_dims(col_dims, "col_dims", W.shape[1])
    if len(ms) != len(ns):
        raise ValueError("row_dims and col_dims must have the same length")
    d = len(ms)
    T = W.reshape(ms + ns).transpose([a for k in range(d) for a in (k, d + k)])
    T = T.reshape([m * n for m, n in zip(ms, ns)])  # (m_1 n_1, ..., m_d n_d)
    cores, factors, errors = btd_als(T, ranks, n_blocks, n_iter=n_iter)
    factors = [[U.reshape(m, n, U.shape[1]) for U, m, n in zip(Us, ms, ns)] for Us in factors]
    return cores, factors, errors


@validate_scalars
@validate_arrays(cores={"sequence": True})
@validate_arrays(factors={"kind": "sequence"})
def bt_matrix_to_full(cores, factors) -> np.ndarray:
    """Dense ``(∏ m_k, ∏ n_k)`` matrix of BT-layer cores and 3-way factors (m_k, n_k, R_k).

    Part of Survey §6.3 (BT-layer, Ye et al. 2018).
    """
    ms = [A.shape[0] for A in factors[0]]
    ns = [A.shape[1] for A in factors[0]]
    d = len(ms)
    flat = [[A.reshape(-1, A.shape[2]) for A in Us] for Us in factors]
    T = btd_to_full(cores, flat).reshape([a for m, n in zip(ms, ns) for a in (m, n)])
    perm = [2 * k for k in range(d)] + [2 * k + 1 for k in range(d)]
    return T.transpose(perm).reshape(int(np.prod(ms)), int(np.prod(ns)))


@validate_scalars(rank=(1, None), n_blocks=(1, None))
@validate_arrays(row_dims={"kind": "dims"}, col_dims={"kind": "dims"})
def bt_matrix_num_params(row_dims, col_dims, rank: int, n_blocks: int) -> int:
    """Ye et al.'s count ``N (R^d + Σ_k m_k n_k R)``.

    Part of Survey §6.3 (BT-layer).
    """
    d = len(row_dims)
    return int(n_blocks * (rank ** d + sum(m * n * rank for m, n in zip(row_dims, col_dims))))


class BTLinear(Module):
    r"""BT-layer (Ye et al. 2018; Survey §6.3): ``y = x W^T + b`` with ``W`` (out, in) in
    block-term format, never formed.

    .. math::
        W = \sum_{n=1}^{N} G_n \times_1 A_n^{(1)} \times_2 \cdots \times_d A_n^{(d)},\quad
        G_n \in \mathbb{R}^{R\times\cdots\times R},\ A_n^{(k)} \in
        \mathbb{R}^{m_k \times n_k \times R}

    Parameters
    ----------
    in_dims : sequence of d ints (``∏ n_k = in_features``)
    out_dims : sequence of d ints (``∏ m_k = out_features``)
    rank : int
        Tucker rank R of every mode.
    n_blocks : int
        N (the "CP-rank" of Ye et al.).
    bias : bool
    rng : Generator or seed

    Notes
    -----
    Parameters ``N (R^d + Σ_k m_k n_k R)`` (+ bias). The forward contracts mode ``k`` of the
    tensorised input with ``A_n^{(k)}`` and the core's mode ``k`` at once, so no intermediate is
    larger than ``B · ∏ (mixed modes) · R^{d-1}``.

    References
    ----------
    .. [1] J. Ye, L. Wang, G. Li, D. Chen, S. Zhe, X. Chu, Z. Xu, "Learning Compact Recurrent
       Neural Networks with Block-Term Tensor Decomposition", CVPR 2018.
    """

    @validate_scalars
    @validate_arrays(in_dims={"kind": "dims"}, out_dims={"kind": "dims"})
    def __init__(self, in_dims, out_dims, rank: int, n_blocks: int, bias: bool = True,
                 rng=None):
        self.in_dims = _check_dims(in_dims, "in_dims")
        self.out_dims = _check_dims(out_dims, "out_dims")
        if len(self.in_dims) != len(self.out_dims):
            raise ValueError("in_dims and out_dims must have the same length")
        self.rank = check_int(rank, "rank", 1)
        self.n_blocks = check_int(n_blocks, "n_blocks", 1)
        if len(self.in_dims) > 8:
            raise ValueError(f"in_dims may have at most 8 modes, got {len(self.in_dims)}")
        self.d = len(self.in_dims)
        self.in_features = int(np.prod(self.in_dims))
        self.out_features = int(np.prod(self.out_dims))
        rng = as_rng(rng)
        d, R = self.d, self.rank
        # var(W_ij) = N * R^d * var_G * prod var_A  ~  1 / in_features
        per = (1.0 / (self.in_features * self.n_blocks * R ** d)) ** (1.0 / (d + 1))
        for n in range(self.n_blocks):
            setattr(self, f"core{n}", Parameter(rng.standard_normal((R,) * d) * math.sqrt(per)))
            for k in range(d):
                setattr(self, f"factor{n}_{k}", Parameter(
                    rng.standard_normal((self.out_dims[k], self.in_dims[k], R)) * math.sqrt(per)))
        self.b = Parameter(np.zeros(self.out_features)) if bias else None

    @classmethod
    def from_dense(cls, W, b=None, *, in_dims, out_dims, rank: int, n_blocks: int,
                   n_iter: int = 30) -> "BTLinear":
        """BTD a trained dense weight ``W`` (out, in) into a BT-layer (same bias)."""
        cores, factors, _ = bt_matrix(W, out_dims, in_dims, rank, n_blocks, n_iter=n_iter)
        layer = cls(in_dims, out_dims, rank, n_blocks, bias=b is not None)
        for n in range(n_blocks):
            setattr(layer, f"core{n}", Parameter(cores[n]))
            for k in range(layer.d):
                setattr(layer, f"factor{n}_{k}", Parameter(factors[n][k]))
        if b is not None:
            layer.b = Parameter(check_array(b, "b", shape=(layer.out_features,)).copy())
        return layer

    def block(self, n: int):
        return (getattr(self, f"core{n}"),
                [getattr(self, f"factor{n}_{k}") for k in range(self.d)])

    def weight(self) -> np.ndarray:
        """The dense ``(out, in)`` matrix (checks only)."""
        cores, factors = [], []
        for n in range(self.n_blocks):
            G, A = self.block(n)
            cores.append(G.data)
            factors.append([a.data for a in A])
        return bt_matrix_to_full(cores, factors)

    def num_parameters_dense(self) -> int:
        return self.in_features * self.out_features + (self.out_features
                                                       if self.b is not None else 0)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(np.asarray(x, dtype=np.float64))
        lead = x.shape[:-1]
        B = int(np.prod(lead)) if lead else 1
        d = self.d
        I = string.ascii_lowercase[:d]        # input modes n_k  # noqa: E741
        J = string.ascii_lowercase[8:8 + d]   # output modes m_k
        Rl = string.ascii_uppercase[:d]       # core modes R_k
        X = x.reshape(B, *self.in_dims)  # (B, n_1..n_d)
        y = None
        for n in range(self.n_blocks):
            G, A = self.block(n)
            # mode 1 with its factor and the whole core: (B, m_1, n_2..n_d, R_2..R_d)
            T = einsum(f"z{I},{J[0]}{I[0]}{Rl[0]},{Rl}->z{J[0]}{I[1:]}{Rl[1:]}", X, A[0], G)
            for k in range(1, d):
                # contract n_k and R_k with A^(k) (m_k, n_k, R_k)
                T = einsum(f"z{J[:k]}{I[k:]}{Rl[k:]},{J[k]}{I[k]}{Rl[k]}"
                           f"->z{J[:k + 1]}{I[k + 1:]}{Rl[k + 1:]}", T, A[k])
            y = T if y is None else y + T  # (B, m_1..m_d)
        y = y.reshape(B, self.out_features)
        if self.b is not None:
            y = y + self.b
        return y.reshape(*lead, self.out_features)


class BTRNN(FactorizedRNN):
    """BT-GRU / BT-LSTM (Ye et al. 2018; Survey §6.3): the input-to-hidden matrix (gates·H, D)
    is one :class:`BTLinear`; PyTorch gate order; ``forward(x (B, T, D), lengths=None) ->
    (outputs (B, T, H), h_last (B, H))``.

    References
    ----------
    .. [1] J. Ye et al., "Learning Compact Recurrent Neural Networks with Block-Term Tensor
       Decomposition", CVPR 2018.
    """

    @validate_scalars
    @validate_arrays(in_dims={"kind": "dims"}, out_dims={"kind": "dims"})
    def __init__(self, in_dims, out_dims, hidden_size: int, rank: int, n_blocks: int,
                 cell: str = "lstm", rng=None):
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', got {cell!r}")
        rng = as_rng(rng)
        super().__init__(BTLinear(in_dims, out_dims, rank, n_blocks, rng=rng), hidden_size,
                         cell, rng=rng)


# ------------------------------------------------------------------ multi-linear attention
@validate_scalars
@validate_arrays(Q={}, K={}, V={}, g={})
def single_block_attention(Q, K, V, g) -> Tensor:
    r"""Tucker single-block attention of Ma et al. (2019), Eq. (7), with a diagonal core:

    .. math::
        \text{Atten}_{TD}(G; Q, K, V) = G \times_1 Q \times_2 K \times_3 V
        = \sum_{r=1}^{R} g_r\, Q_{:,r} \circ K_{:,r} \circ V_{:,r}

    Parameters
    ----------
    Q, K, V : Tensor or ndarray of shape (B, N, R)
    g : Tensor or ndarray of shape (R,)
        The diagonal of the core :math:`G \in \mathbb{R}^{R\times R\times R}`.

    Returns
    -------
    Tensor of shape (B, N, N, N)
        ``T[b, i, j, m] = Σ_r g_r Q[b,i,r] K[b,j,r] V[b,m,r]``.
    """
    return einsum("bir,bjr,bmr,r->bijm", Q, K, V, g)


class MultiLinearAttention(Module):
    r"""Multi-linear attention of the Tensorized Transformer (Ma et al. 2019; Survey §6.3):
    ``h`` single-block (Tucker) attentions sharing the factor matrices, averaged — a block-term
    decomposition with ``h`` blocks — then split, concatenated and projected.

    .. math::
        \text{MultiLinear} = \text{SplitConcat}\big(\tfrac1h (T_1 + \dots + T_h)\big) W^O,\quad
        T_j = \text{Atten}_{TD}(G_j; QW^q, KW^k, VW^v)

    Parameters
    ----------
    d_model : int
    seq_len : int
        ``N``: SplitConcat turns the (N, N, N) tensor into (N, N·N), so ``W^O`` has shape
        (d_model, N·N), as in the paper's formulation.
    num_blocks : int
        ``h``: number of cores (heads).
    rank : int
        ``R``: columns of the shared factor matrices (the core is R×R×R, diagonal).
    rng : Generator or seed

    Notes
    -----
    The cores are diagonal with trainable, randomly initialised entries (Ma et al. §3.2:
    "the core tensor is trainable and randomly initialised"). Parameters:
    ``3 d_model R + h R + N² d_model`` against ``4 d_model²`` for standard multi-head attention.

    References
    ----------
    .. [1] X. Ma, P. Zhang, S. Zhang, N. Duan, Y. Hou, D. Song, M. Zhou, "A Tensorized
       Transformer for Language Modeling", NeurIPS 2019.
    """

    @validate_scalars
    def __init__(self, d_model: int, seq_len: int, num_blocks: int, rank: int, rng=None):
        self.d_model = check_int(d_model, "d_model", 1)
        self.seq_len = check_int(seq_len, "seq_len", 1)
        self.num_blocks = check_int(num_blocks, "num_blocks", 1)
        self.rank = check_int(rank, "rank", 1)
        rng = as_rng(rng)
        s = 1.0 / math.sqrt(d_model)
        self.W_q = Parameter(rng.standard_normal((rank, d_model)) * s)
        self.W_k = Parameter(rng.standard_normal((rank, d_model)) * s)
        self.W_v = Parameter(rng.standard_normal((rank, d_model)) * s)
        self.cores = Parameter(rng.uniform(0.0, 1.0, size=(num_blocks, rank)))
        self.W_o = Parameter(rng.standard_normal((d_model, seq_len * seq_len))
                             / math.sqrt(seq_len * seq_len))

    def forward(self, q, k, v):
        """``q, k, v`` of shape (B, N, d_model) -> (B, N, d_model)."""
        q, k, v = (t if isinstance(t, Tensor) else Tensor(np.asarray(t, float)) for t in (q, k, v))
        B, N, _ = q.shape
        if N != self.seq_len:
            raise ValueError(f"q must have seq_len = {self.seq_len} positions, got {N}")
        Q = F.linear(q, self.W_q)  # (B, N, R)
        K = F.linear(k, self.W_k)
        V = F.linear(v, self.W_v)
        g = self.cores.sum(axis=0) * (1.0 / self.num_blocks)  # (R,): (1/h) Σ_j T_j is linear
        T = single_block_attention(Q, K, V, g)  # (B, N, N, N)
        T = T.reshape(B, N, N * N)  # SplitConcat: (B, N, N·N)
        return F.linear(T, self.W_o)  # (B, N, d_model)
