"""Two low-rank factors — Survey §6.1: replace ``W`` by ``W_1 W_2``.

==================================  ==========================================================
:func:`truncated_svd`               best rank-r factors ``W ≈ A B`` (Eckart–Young)
:func:`eckart_young_error`          the optimal errors ``√Σ_{i>r} σ_i²`` and ``σ_{r+1}``
:func:`rank_for_explained_variance` smallest r with ``Σ_{i≤r} σ_i² ≥ τ Σ σ_i²``
:class:`LowRankLinear`              a Linear stored as two factors
:func:`joint_svd`                   Eqs. (62)–(65): ``W_h = Z_h P``, ``W_x = Z_x P``
                                    (Prabhavalkar et al. 2016)
:func:`stacked_rnn_classifier`      the multi-layer RNN of Eqs. (62)–(63) on ``refimpl.nn``
:func:`rnn_layer_matrices`          its ``W_h^l, W_x^l, b^l`` per layer
:class:`ProjectedRNNClassifier`     the same with shared recurrent projections: built by
                                    joint SVD, or trained from random init (LSTMP-style
                                    projection layers, Sak et al. 2014)
:func:`sparse_code`                 Eq. (66), codes for a fixed dictionary (FISTA)
:func:`sparse_coding`               Eq. (66), dictionary and codes (Faruqui et al. 2015),
                                    optional non-negativity
:func:`compositional_codes`         M codebooks × K codewords, one code per word
                                    (Shu & Nakayama 2017), alternating fit
:class:`FLOPLinear`                 Eq. (67): ``W = P G Q`` with hard-concrete L0 gates
                                    (Wang et al. 2019)
==================================  ==========================================================

Parameter counts (exact): rank-r factors of an (m, n) matrix store ``r (m + n)`` numbers
(smaller than ``mn`` iff ``r < mn/(m+n)``).
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.decomposition._ops import (
    hard_concrete_deterministic,
    hard_concrete_l0,
    hard_concrete_sample,
)
from refimpl.nn import Module, Parameter, RNNClassifier, Tensor
from refimpl.nn import functional as F
from refimpl.nn.low_rank import LowRankLinear as _NNLowRankLinear
from refimpl.utils import (as_rng, check_array, check_float, check_int, validate_arrays,
                           validate_scalars)

__all__ = ["truncated_svd", "eckart_young_error", "rank_for_explained_variance",
           "low_rank_num_params", "LowRankLinear", "joint_svd", "joint_projection_lstsq",
           "stacked_rnn_classifier", "rnn_layer_matrices", "ProjectedRNNClassifier",
           "sparse_code", "sparse_coding_objective", "sparse_coding", "binarize_codes", "compositional_codes",
           "compositional_decode", "compositional_code_bits", "compositional_codes_gumbel",
           "CompositionalCodeAutoencoder",
           "flop_weight", "FLOPLinear"]


# ------------------------------------------------------------------ truncated SVD
def _svd(W):
    return np.linalg.svd(W, full_matrices=False)


@validate_scalars
@validate_arrays(s={"ndim": 1})
def rank_for_explained_variance(s, fraction: float) -> int:
    r"""Smallest ``r ≥ 1`` with :math:`\sum_{i\le r}\sigma_i^2 \ge \tau \sum_i \sigma_i^2`.

    Prabhavalkar et al. (2016) pick each layer's rank so that the retained singular values
    explain a fraction τ of the variance (τ = 0.6 gives their 3× smaller model, Survey §6.4).
    """
    fraction = check_float(fraction, "fraction", 0.0, 1.0, lo_open=True)
    s = np.asarray(s, dtype=np.float64)
    e = np.cumsum(s ** 2)
    if e[-1] == 0:
        return 1
    return int(np.searchsorted(e / e[-1], fraction - 1e-12) + 1)


def _choose_rank(W, s, rank, explained_variance, name="rank"):
    if (rank is None) == (explained_variance is None):
        raise ValueError("give exactly one of rank and explained_variance")
    if rank is not None:
        rank = check_int(rank, name, 1)
        if rank > min(W.shape):
            raise ValueError(f"{name} = {rank} exceeds min(W.shape) = {min(W.shape)} "
                             f"(W has shape {W.shape})")
        return rank
    return rank_for_explained_variance(s, explained_variance)


@validate_scalars
def truncated_svd(W, rank: int | None = None, *, explained_variance: float | None = None):
    r"""Best rank-r factorisation ``W ≈ A @ B`` (Survey §6.1, "replace W by W_1 × W_2").

    Parameters
    ----------
    W : ndarray of shape (m, n)
    rank : int, 1 ≤ rank ≤ min(m, n)
    explained_variance : float in (0, 1], alternative to ``rank``
        See :func:`rank_for_explained_variance`.

    Returns
    -------
    A : ndarray of shape (m, r)  — ``U_r Σ_r``
    B : ndarray of shape (r, n)  — ``V_r^T`` (orthonormal rows)

    Notes
    -----
    Eckart–Young–Mirsky: :math:`A B = U_r\Sigma_r V_r^\top` minimises both
    :math:`\|W - Y\|_F` and :math:`\|W - Y\|_2` over rank-r matrices ``Y``, with minima
    :math:`\sqrt{\sum_{i>r}\sigma_i^2}` and :math:`\sigma_{r+1}`. Storage ``r(m+n)`` vs ``mn``.

    References
    ----------
    .. [1] C. Eckart, G. Young, "The approximation of one matrix by another of lower rank",
       Psychometrika 1(3), 1936.
    """
    W = check_array(W, "W", ndim=2, dtype=np.float64)
    U, s, Vt = _svd(W)
    r = _choose_rank(W, s, rank, explained_variance)
    return U[:, :r] * s[:r], Vt[:r].copy()


@validate_scalars(rank=(0, None))
def eckart_young_error(W, rank: int) -> tuple[float, float]:
    """``(‖W − W_r‖_F, ‖W − W_r‖_2)`` of the optimal rank-r approximation, from the singular
    values alone: ``(√Σ_{i>r} σ_i², σ_{r+1})`` (0 when ``rank ≥ min(m, n)``).

    Part of Survey §6.1.
    """
    W = check_array(W, "W", ndim=2, dtype=np.float64)
    rank = check_int(rank, "rank", 0)
    s = np.linalg.svd(W, compute_uv=False)
    tail = s[rank:]
    return float(np.sqrt(np.sum(tail ** 2))), float(tail[0]) if tail.size else 0.0


@validate_scalars(m=(1, None), n=(1, None), rank=(1, None))
def low_rank_num_params(m: int, n: int, rank: int) -> int:
    """``rank (m + n)`` numbers for rank-r factors of an (m, n) matrix.

    Part of Survey §6.1.
    """
    return int(rank * (m + n))


class LowRankLinear(_NNLowRankLinear):
    """``y = (x B^T) A^T + b``: a Linear with ``W = A B`` stored as ``A`` (out, r), ``B`` (r, in)
    (Survey §6.1); the layer is :class:`refimpl.nn.LowRankLinear`, this adds
    ``from_dense(W, b, rank=...)``, which initialises by :func:`truncated_svd`."""

    @classmethod
    def from_dense(cls, W, b=None, *, rank=None, explained_variance=None) -> "LowRankLinear":
        A, B = truncated_svd(W, rank, explained_variance=explained_variance)
        layer = cls(B.shape[1], A.shape[0], A.shape[1], bias=b is not None)
        layer.A.data, layer.B.data = A, B
        if b is not None:
            layer.b.data = np.array(b, dtype=np.float64)
        return layer


# ------------------------------------------------------------------ joint SVD, Eqs. (62)–(65)
@validate_scalars
def joint_projection_lstsq(P, W_x) -> np.ndarray:
    r"""Eq. (65): :math:`Z_x = \arg\min_Y \|Y P - W_x\|_F^2` by a general least-squares solve
    (``lstsq(P^T, W_x^T)``), not assuming orthonormal rows of ``P``.

    Parameters
    ----------
    P : ndarray of shape (r, N)
    W_x : ndarray of shape (M, N)

    Returns
    -------
    Z_x : ndarray of shape (M, r)
    """
    P = check_array(P, "P", ndim=2, dtype=np.float64)
    W_x = check_array(W_x, "W_x", ndim=2, dtype=np.float64)
    if W_x.shape[1] != P.shape[1]:
        raise ValueError(f"W_x must have {P.shape[1]} columns (P's), got shape {W_x.shape}")
    return np.linalg.lstsq(P.T, W_x.T, rcond=None)[0].T


@validate_scalars
def joint_svd(W_h, W_x, rank: int | None = None, *, explained_variance: float | None = None):
    r"""Joint compression of a layer's recurrent and inter-layer matrices, Survey Eqs. (62)–(65),
    §6.1 (Prabhavalkar et al. 2016).

    Both matrices multiply the same state :math:`h^l` (Eqs. 62–63: :math:`W_h^l h^l_{t-1}` and
    :math:`W_x^l h^l_t`), so they can share one projection :math:`P^l` (r, N_l):

    .. math::
        W_h^l = (U_h^l\Sigma_h^l)(V_h^l)^\top = Z_h^l P^l \quad (64),\qquad
        Z_x^l = \arg\min_Y \|Y P^l - W_x^l\|_2^2 \quad (65).

    Parameters
    ----------
    W_h : ndarray of shape (N, N)
        Recurrent matrix of layer l.
    W_x : ndarray of shape (M, N)
        Inter-layer matrix from layer l to layer l+1 (or to the output layer).
    rank : int, optional
        r < N.
    explained_variance : float, optional
        Choose r by :func:`rank_for_explained_variance` on W_h's singular values (τ).

    Returns
    -------
    Z_h : ndarray (N, r), Z_x : ndarray (M, r), P : ndarray (r, N) with orthonormal rows

    Notes
    -----
    Because ``P`` has orthonormal rows, the least-squares solution of (65) is
    ``Z_x = W_x P^T`` (checked against :func:`joint_projection_lstsq` in ``checks.py``).
    Storage ``r (2N + M)`` against ``N (N + M)``.

    References
    ----------
    .. [1] R. Prabhavalkar, O. Alsharif, A. Bruguier, I. McGraw, "On the compression of
       recurrent neural networks with an application to LVCSR acoustic modeling for embedded
       speech recognition", ICASSP 2016.
    """
    W_h = check_array(W_h, "W_h", ndim=2, dtype=np.float64)
    W_x = check_array(W_x, "W_x", ndim=2, dtype=np.float64)
    if W_h.shape[0] != W_h.shape[1]:
        raise ValueError(f"W_h must be square (N, N), got {W_h.shape}")
    if W_x.shape[1] != W_h.shape[1]:
        raise ValueError(f"W_x must have N = {W_h.shape[1]} columns (it multiplies the same "
                         f"state as W_h), got shape {W_x.shape}")
    U, s, Vt = _svd(W_h)
    r = _choose_rank(W_h, s, rank, explained_variance)
    Z_h = U[:, :r] * s[:r]  # (N, r) = U_h Σ_h (truncated)          Eq. (64)
    P = Vt[:r].copy()       # (r, N) = V_h^T (truncated)
    Z_x = W_x @ P.T         # (M, r): argmin_Y ||Y P - W_x||, P P^T = I   Eq. (65)
    return Z_h, Z_x, P


@validate_scalars(vocab_size=(1, None), embed_dim=(1, None), hidden_size=(1, None),
                  num_layers=(1, None), n_classes=(1, None))
def stacked_rnn_classifier(vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int,
                           n_classes: int, rng=None) -> RNNClassifier:
    r"""The multi-layer RNN of Survey Eqs. (62)–(63), §6.1, as a :mod:`refimpl.nn` sequence
    classifier: an :class:`refimpl.nn.RNNClassifier` whose recurrence is a tanh
    :class:`refimpl.nn.RNN` with ``num_layers`` layers.

    .. math:: h_t^{l} = \tanh(W_x^{l-1} h_t^{l-1} + W_h^{l} h_{t-1}^{l} + b^{l}),
              \quad h_t^0 = \text{embedding}(x_t)

    followed by logits ``W_x^L h_T^L + b_out`` at each sequence's last real step. In the
    :mod:`refimpl.nn` names (PyTorch's): :math:`W_x^{l-1}` is ``rnn.W_ih_l{l-1}``,
    :math:`W_h^l` is ``rnn.W_hh_l{l-1}``, :math:`b^l` is ``rnn.b_ih_l{l-1} + rnn.b_hh_l{l-1}``
    and the output matrix :math:`W_x^L` is ``fc.W`` (:func:`rnn_layer_matrices` reads them).
    :meth:`ProjectedRNNClassifier.from_dense` compresses a trained one by joint SVD
    (Prabhavalkar et al. 2016).

    Initialisation (tanh RNNs train poorly from PyTorch's uniform recurrent init): embedding
    rows ``N(0, 0.5²)`` (the padding row 0), ``W_x^{l-1} ~ U(±1/√N_{l-1})``, ``W_h^l = 0.9 Q``
    with ``Q`` a random orthogonal matrix, biases zero; the output layer is the
    :class:`refimpl.nn.Linear` default.

    Parameters
    ----------
    vocab_size, embed_dim : int
    hidden_size : int
        ``N_l`` of every layer (:class:`refimpl.nn.RNN` has one hidden size).
    num_layers : int
        ``L``.
    n_classes : int
    rng : Generator or int, optional

    Returns
    -------
    RNNClassifier
        Called as ``model(X, lengths)`` with ``X`` (B, T) int64 → logits (B, n_classes);
        ``model.cell == "rnn"``.

    References
    ----------
    .. [1] R. Prabhavalkar, O. Alsharif, A. Bruguier, I. McGraw, ICASSP 2016 (see
       :func:`joint_svd`).
    """
    from refimpl.nn import RNN

    rng = as_rng(rng)
    # nn.RNNClassifier builds LSTM/GRU only: take a GRU one and put a tanh nn.RNN in its place
    # (its final state (L, B, N) is read the same way as a GRU's)
    m = RNNClassifier(vocab_size=vocab_size, d_emb=embed_dim, d_hidden=hidden_size,
                      n_classes=n_classes, cell="gru", num_layers=num_layers, rng=rng)
    m.rnn = RNN(embed_dim, hidden_size, num_layers=num_layers, nonlinearity="tanh", rng=rng)
    m.cell = "rnn"
    E = rng.standard_normal((vocab_size, embed_dim)) * 0.5
    E[0] = 0.0  # padding row
    m.embedding.W.data = E
    for k in range(num_layers):
        d_in = embed_dim if k == 0 else hidden_size
        b = 1.0 / math.sqrt(d_in)
        getattr(m.rnn, f"W_ih_l{k}").data = rng.uniform(-b, b, (hidden_size, d_in))
        # orthogonal-ish recurrent init keeps tanh RNNs trainable
        Q = np.linalg.qr(rng.standard_normal((hidden_size, hidden_size)))[0]
        getattr(m.rnn, f"W_hh_l{k}").data = 0.9 * Q
        getattr(m.rnn, f"b_ih_l{k}").data = np.zeros(hidden_size)
        getattr(m.rnn, f"b_hh_l{k}").data = np.zeros(hidden_size)
    m.fc.b.data = np.zeros(n_classes)
    return m


def rnn_layer_matrices(model) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The survey's per-layer matrices of a :func:`stacked_rnn_classifier` (Eqs. 62–63).

    Parameters
    ----------
    model : RNNClassifier
        With a unidirectional tanh :class:`refimpl.nn.RNN` with biases as ``model.rnn``.

    Returns
    -------
    list of ``(W_h, W_x, b)`` for l = 1..L
        ``W_h^l`` (N, N) = ``rnn.W_hh_l{l-1}``; ``W_x^l`` — the matrix *leaving* layer l, which
        multiplies the same :math:`h_t^l` (Eq. 63): ``rnn.W_ih_l{l}`` (N, N), or ``fc.W``
        (n_classes, N) for the top layer; ``b^l`` (N,) = ``b_ih_l{l-1} + b_hh_l{l-1}``.
        Copies.
    """
    from refimpl.nn import RNN

    rnn = getattr(model, "rnn", None)
    if not isinstance(rnn, RNN) or rnn.nonlinearity != "tanh" or rnn.bidirectional \
            or not rnn.bias or not hasattr(model, "embedding") or not hasattr(model, "fc"):
        raise TypeError("model must be an RNNClassifier with a unidirectional tanh nn.RNN "
                        "with biases (see stacked_rnn_classifier), got "
                        f"{type(model).__name__} with rnn={rnn!r}")
    out = []
    L = rnn.num_layers
    for k in range(L):
        W_h = getattr(rnn, f"W_hh_l{k}").data.copy()
        W_x = (getattr(rnn, f"W_ih_l{k + 1}") if k + 1 < L else model.fc.W).data.copy()
        b = getattr(rnn, f"b_ih_l{k}").data + getattr(rnn, f"b_hh_l{k}").data
        out.append((W_h, W_x, b))
    return out


class ProjectedRNNClassifier(Module):
    r"""The RNN of Eqs. (62)–(63) with a shared projection per layer (Survey §6.1):
    :math:`W_h^l = Z_h^l P^l`, :math:`W_x^l = Z_x^l P^l`. Only :math:`p^l_t = P^l h^l_t`
    (r_l numbers) is passed on, both to the next step and to the next layer:

    .. math:: h_t^{l} = \tanh(Z_x^{l-1} p_t^{l-1} + Z_h^{l} p_{t-1}^{l} + b^{l})

    (for l = 1 the input matrix acts on the embedding: ``W_x0`` stays dense).

    Two ways to get one: :meth:`from_dense` applies :func:`joint_svd` to a trained
    :func:`stacked_rnn_classifier` (Prabhavalkar et al. 2016); the constructor initialises the
    factors randomly for training from scratch, as the recurrent projection layers of Sak et
    al. (2014) (their LSTMP; here on the tanh RNN of Eq. 62).

    Parameters
    ----------
    vocab_size, embed_dim : int
    hidden_sizes : sequence of int (N_1..N_L)
    ranks : sequence of int (r_1..r_L)
    n_classes : int
    rng : Generator or seed

    References
    ----------
    .. [1] R. Prabhavalkar et al., ICASSP 2016 (see :func:`joint_svd`).
    .. [2] H. Sak, A. Senior, F. Beaufays, "Long Short-Term Memory Recurrent Neural Network
       Architectures for Large Scale Acoustic Modeling", Interspeech 2014.
    """

    @validate_scalars(vocab_size=(1, None), embed_dim=(1, None), n_classes=(1, None))
    @validate_arrays(hidden_sizes={"kind": "dims"}, ranks={"kind": "dims"})
    def __init__(self, vocab_size: int, embed_dim: int, hidden_sizes, ranks, n_classes: int,
                 rng=None):
        rng = as_rng(rng)
        self.hidden_sizes = tuple(check_int(h, "hidden_sizes", 1) for h in hidden_sizes)
        self.ranks = tuple(check_int(r, "ranks", 1) for r in ranks)
        self.L = len(self.hidden_sizes)
        if len(self.ranks) != self.L:
            raise ValueError(f"ranks must have one entry per layer ({self.L}), got "
                             f"{len(self.ranks)}")
        for l, (r, N) in enumerate(zip(self.ranks, self.hidden_sizes)):  # noqa: E741
            if r > N:
                raise ValueError(f"ranks[{l}] = {r} exceeds hidden_sizes[{l}] = {N}")
        self.emb = Parameter(rng.standard_normal((vocab_size, embed_dim)) * 0.5)
        sizes = (embed_dim,) + self.hidden_sizes + (n_classes,)
        k = 1.0 / math.sqrt(embed_dim)
        self.W_x0 = Parameter(rng.uniform(-k, k, (sizes[1], embed_dim)))
        for l in range(1, self.L + 1):  # noqa: E741
            N, r, M = sizes[l], self.ranks[l - 1], sizes[l + 1]
            Q = np.linalg.qr(rng.standard_normal((N, N)))[0]
            setattr(self, f"P{l}", Parameter(Q[:r].copy()))                        # (r, N)
            setattr(self, f"Z_h{l}", Parameter(0.9 * Q[:, :r]))                    # (N, r)
            setattr(self, f"Z_x{l}", Parameter(rng.uniform(-1, 1, (M, r)) / math.sqrt(r)))
            setattr(self, f"b{l}", Parameter(np.zeros(N)))
        self.b_out = Parameter(np.zeros(n_classes))

    @classmethod
    def from_dense(cls, model, ranks=None, *,
                   explained_variance: float | None = None) -> "ProjectedRNNClassifier":
        """Joint SVD (Eqs. 64–65) of every layer of a trained :func:`stacked_rnn_classifier`:
        ``P^l`` from ``W_h^l``, ``Z_x^l`` for the matrix leaving layer ``l``
        (:func:`rnn_layer_matrices`); embedding, ``W_x^0`` and biases are copied."""
        layers = rnn_layer_matrices(model)
        L = len(layers)
        if ranks is not None and len(ranks) != L:
            raise ValueError(f"ranks must have one entry per layer ({L}), got {len(ranks)}")
        facs = [joint_svd(W_h, W_x, None if ranks is None else ranks[k],
                          explained_variance=explained_variance if ranks is None else None)
                for k, (W_h, W_x, _) in enumerate(layers)]
        vocab, E = model.embedding.W.shape
        N = model.rnn.hidden_size
        new = cls(vocab, E, [N] * L, [f[2].shape[0] for f in facs], model.fc.W.shape[0])
        new.emb.data = model.embedding.W.data.copy()
        new.W_x0.data = model.rnn.W_ih_l0.data.copy()
        for l, ((Z_h, Z_x, P), (_, _, b)) in enumerate(zip(facs, layers), start=1):  # noqa: E741
            getattr(new, f"P{l}").data = P
            getattr(new, f"Z_h{l}").data = Z_h
            getattr(new, f"Z_x{l}").data = Z_x
            getattr(new, f"b{l}").data = b
        new.b_out.data = model.fc.b.data.copy()
        return new

    def forward(self, X, lengths=None):
        X = np.asarray(X)
        B, T = X.shape
        lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
        pre = F.linear(F.embedding(self.emb, X), self.W_x0, self.b1)  # (B, T, N_1)
        for l in range(1, self.L + 1):  # noqa: E741
            P, Z_h = getattr(self, f"P{l}"), getattr(self, f"Z_h{l}")
            p = Tensor(np.zeros((B, P.shape[0])))  # p_{t-1}^l = P^l h_{t-1}^l
            ps = []
            for t in range(T):
                keep = (t < lengths)[:, None].astype(np.float64)
                h = F.tanh(pre[:, t] + F.linear(p, Z_h))  # Eq. (62) with W_h = Z_h P
                p = F.linear(h, P) * keep + p * (1.0 - keep)  # (B, r_l)
                ps.append(p)
            Z_x = getattr(self, f"Z_x{l}")
            if l < self.L:
                pre = F.linear(F.stack(ps, axis=1), Z_x, getattr(self, f"b{l + 1}"))  # Eq. (63)
        return F.linear(p, Z_x, self.b_out)  # (B, C): W_x^L = Z_x^L P^L


# ------------------------------------------------------------------ sparse coding, Eq. (66)
@validate_scalars(lam=(0, None), tau=(0, None))
@validate_arrays(X={"ndim": 2}, D={"ndim": 2}, A={"ndim": 2})
def sparse_coding_objective(X, D, A, lam: float, tau: float = 0.0) -> float:
    r"""Eq. (66): :math:`\sum_i \|x_i - D a_i\|_2^2 + \lambda \|a_i\|_1 + \tau \|D\|_2^2`
    (``‖D‖`` is the Frobenius norm) with ``X`` (L, V), ``D`` (L, K), ``A`` (K, V)."""
    R = np.asarray(X) - np.asarray(D) @ np.asarray(A)
    return float(np.sum(R ** 2) + lam * np.abs(A).sum() + tau * np.sum(np.asarray(D) ** 2))


@validate_scalars(lam=(0, None), tol=(0, None), n_iter=(1, None))
def sparse_code(X, D, lam: float, *, nonneg: bool = False, n_iter: int = 500,
                tol: float = 1e-10, A0=None) -> np.ndarray:
    r"""Sparse codes for a fixed dictionary: the ``A``-step of Survey Eq. (66), §6.1.

    Solves, for every column ``x_i`` of ``X`` at once,
    :math:`\min_{a_i} \|x_i - D a_i\|_2^2 + \lambda\|a_i\|_1` (optionally with :math:`a_i \ge 0`)
    by FISTA (Beck & Teboulle 2009) with step :math:`1/L`, :math:`L = 2\sigma_{\max}(D)^2`.

    Parameters
    ----------
    X : ndarray of shape (L, V)   — word vectors as columns
    D : ndarray of shape (L, K)   — dictionary
    lam : float ≥ 0
    nonneg : bool
        Non-negative codes (Faruqui et al.'s interpretable variant): the prox becomes
        ``max(a − λ/L, 0)``.
    n_iter, tol
        Stop when the relative change of ``A`` is below ``tol``.
    A0 : ndarray (K, V), optional warm start

    Returns
    -------
    A : ndarray of shape (K, V)

    References
    ----------
    .. [1] M. Faruqui, Y. Tsvetkov, D. Yogatama, C. Dyer, N. Smith, "Sparse Overcomplete Word
       Vector Representations", ACL 2015.
    .. [2] A. Beck, M. Teboulle, "A Fast Iterative Shrinkage-Thresholding Algorithm", SIAM J.
       Imaging Sci. 2(1), 2009.
    """
    X = check_array(X, "X", ndim=2, dtype=np.float64)
    D = check_array(D, "D", ndim=2, dtype=np.float64)
    if D.shape[0] != X.shape[0]:
        raise ValueError(f"D must have L = {X.shape[0]} rows (X's), got shape {D.shape}")
    lam = check_float(lam, "lam", 0.0)
    n_iter = check_int(n_iter, "n_iter", 1)
    K, V = D.shape[1], X.shape[1]
    Lc = 2.0 * np.linalg.norm(D, 2) ** 2
    if Lc == 0:
        return np.zeros((K, V))
    DtD, DtX = D.T @ D, D.T @ X
    A = np.zeros((K, V)) if A0 is None else check_array(A0, "A0", shape=(K, V)).copy()
    Y, t = A.copy(), 1.0
    thr = lam / Lc
    for _ in range(n_iter):
        G = 2.0 * (DtD @ Y - DtX)  # gradient of ||X - D Y||^2
        Z = Y - G / Lc
        A_new = np.maximum(Z - thr, 0.0) if nonneg else np.sign(Z) * np.maximum(np.abs(Z) - thr,
                                                                                0.0)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        Y = A_new + ((t - 1.0) / t_new) * (A_new - A)
        change = np.linalg.norm(A_new - A) / max(np.linalg.norm(A_new), 1e-300)
        A, t = A_new, t_new
        if change < tol:
            break
    return A


@validate_scalars(lam=(0, None), tau=(0, None), n_iter=(1, None), code_iter=(1, None))
def sparse_coding(X, n_atoms: int, lam: float, tau: float = 1e-5, *, nonneg: bool = False,
                  n_iter: int = 30, code_iter: int = 200, rng=None):
    r"""Dictionary and sparse codes of an embedding matrix, Survey Eq. (66), §6.1
    (Faruqui et al. 2015):

    .. math:: \arg\min_{D,A}\sum_{i=1}^{V}\|x_i - D a_i\|_2^2 + \lambda\|a_i\|_1
              + \tau\|D\|_2^2

    Parameters
    ----------
    X : ndarray of shape (L, V)
        The embedding matrix with one word vector per column (Survey: :math:`X\in R^{L\times V}`).
    n_atoms : int
        ``K`` (Faruqui et al. use overcomplete K > L).
    lam, tau : float ≥ 0
    nonneg : bool
        Constrain ``A ≥ 0`` and ``D ≥ 0`` (the interpretable variant).
    n_iter : int
        Alternations. ``A``-step: :func:`sparse_code` (FISTA); ``D``-step: the ridge solution
        :math:`D = X A^\top (A A^\top + \tau I)^{-1}` (non-negative: projected gradient steps).
    code_iter : int
    rng : Generator or seed (initial dictionary: random columns of X plus noise)

    Returns
    -------
    D : ndarray (L, K), A : ndarray (K, V), objective : list of float (after each alternation)

    Notes
    -----
    Faruqui et al. optimise with online AdaGrad; alternating minimisation reaches the same
    kind of stationary point and makes every step checkable (each step cannot increase the
    objective: the D-step is exact, FISTA is warm-started from the previous codes).
    """
    X = check_array(X, "X", ndim=2, dtype=np.float64)
    K = check_int(n_atoms, "n_atoms", 1)
    lam = check_float(lam, "lam", 0.0)
    tau = check_float(tau, "tau", 0.0)
    rng = as_rng(rng)
    Lr, V = X.shape
    D = X[:, rng.integers(0, V, size=K)] + 0.01 * rng.standard_normal((Lr, K))
    if nonneg:
        D = np.abs(D)
    A = np.zeros((K, V))
    obj = []
    for _ in range(check_int(n_iter, "n_iter", 1)):
        A = sparse_code(X, D, lam, nonneg=nonneg, n_iter=code_iter, A0=A)
        if not nonneg:
            D = np.linalg.solve(A @ A.T + tau * np.eye(K) + 1e-12 * np.eye(K), A @ X.T).T
        else:
            Lc = 2.0 * (np.linalg.norm(A, 2) ** 2 + tau)
            for _ in range(50):  # projected gradient on D >= 0
                Gd = 2.0 * ((D @ A - X) @ A.T + tau * D)
                D = np.maximum(D - Gd / Lc, 0.0)
        obj.append(sparse_coding_objective(X, D, A, lam, tau))
    return D, A, obj


@validate_scalars
@validate_arrays(A={"ndim": 2})
def binarize_codes(A) -> np.ndarray:
    """Faruqui et al.'s binarised codes: 1 where ``a > 0`` (non-negative codes), as uint8.

    Survey §6.1 (sparse coding of word embeddings). ``A`` of shape (V, K) -> (V, K).

    References
    ----------
    .. [1] M. Faruqui et al., "Sparse Overcomplete Word Vector Representations", ACL 2015.
    """
    return (np.asarray(A) > 0).astype(np.uint8)


# ------------------------------------------------------------------ compositional codes
@validate_scalars
@validate_arrays(codes={"ndim": 2, "dtype_kind": "iu"}, codebooks={"ndim": 3})
def compositional_decode(codes, codebooks) -> np.ndarray:
    """``E[w] = Σ_m codebooks[m, codes[w, m]]``; codes (V, M) ints, codebooks (M, K, D).

    Survey §6.1 (compositional codes). Returns shape (V, D).

    References
    ----------
    .. [1] R. Shu, H. Nakayama, "Compressing Word Embeddings via Deep Compositional Code Learning",
       ICLR 2018.
    """
    codes = np.asarray(codes)
    M = codebooks.shape[0]
    return sum(codebooks[m][codes[:, m]] for m in range(M))


@validate_scalars(V=(1, None), M=(1, None), K=(1, None), D=(1, None), float_bits=(1, None))
def compositional_code_bits(V: int, M: int, K: int, D: int, float_bits: int = 32) -> int:
    """Exact storage: ``V M log2(K)`` code bits plus ``M K D`` codebook floats.

    Part of Survey §6.1 (compositional codes, Shu & Nakayama 2018).
    """
    return int(V * M * math.ceil(math.log2(K)) + M * K * D * float_bits)


@validate_scalars
def compositional_codes(E, n_codebooks: int, n_codewords: int, *, n_iter: int = 10,
                        rng=None):
    r"""Compositional (one-hot) codes for an embedding matrix (Shu & Nakayama 2017; Survey §6.1):
    every word gets ``M`` indices into ``M`` codebooks of ``K`` vectors, and its embedding is
    the sum of the chosen vectors.

    .. math:: E_w \approx \sum_{m=1}^{M} A_m^\top d_w^m,\quad d_w^m \in \{0,1\}^K \text{ one-hot}

    Parameters
    ----------
    E : ndarray of shape (V, D)
    n_codebooks : int
        ``M``.
    n_codewords : int
        ``K`` (≤ V).
    n_iter : int
        Alternations.
    rng : Generator or seed

    Returns
    -------
    codes : ndarray of shape (V, M), dtype int64, entries in [0, K)
    codebooks : ndarray of shape (M, K, D)
    errors : list of float, ``‖E − Ê‖_F / ‖E‖_F`` after each alternation (non-increasing)

    Notes
    -----
    What is implemented: Shu & Nakayama learn the codes end-to-end with a Gumbel-softmax
    autoencoder that reconstructs the embeddings (that is
    :func:`compositional_codes_gumbel`). This function minimises the *same* reconstruction
    objective by an additive-quantisation style alternation: initialise with residual k-means
    (codebook m quantises the residual left by codebooks < m), then alternate (i) codebooks
    given codes by exact least squares on the one-hot design matrix and (ii) codes given
    codebooks by one pass of coordinate descent (each word's m-th index set to the codeword
    best fitting its residual without codebook m). Both steps never increase the error.

    References
    ----------
    .. [1] R. Shu, H. Nakayama, "Compressing Word Embeddings via Deep Compositional Code
       Learning", ICLR 2018 (arXiv:1711.01068, 2017).
    """
    E = check_array(E, "E", ndim=2, dtype=np.float64)
    V, D = E.shape
    M = check_int(n_codebooks, "n_codebooks", 1)
    K = check_int(n_codewords, "n_codewords", 1)
    if K > V:
        raise ValueError(f"n_codewords = {K} exceeds the number of rows V = {V}")
    rng = as_rng(rng)
    codes = np.zeros((V, M), dtype=np.int64)
    books = np.zeros((M, K, D))
    res = E.copy()
    for m in range(M):  # residual k-means initialisation
        C = res[rng.choice(V, size=K, replace=False)].copy()
        for _ in range(10):
            d2 = (res ** 2).sum(1)[:, None] - 2 * res @ C.T + (C ** 2).sum(1)[None, :]
            a = d2.argmin(1)
            for k in range(K):
                sel = a == k
                if sel.any():
                    C[k] = res[sel].mean(0)
        codes[:, m] = a
        books[m] = C
        res = res - C[a]
    normE = np.linalg.norm(E)
    errors = []
    for _ in range(check_int(n_iter, "n_iter", 1)):
        # (i) codebooks by least squares: E ≈ B C, B (V, M K) one-hot
        Bm = np.zeros((V, M * K))
        Bm[np.arange(V)[:, None], np.arange(M)[None, :] * K + codes] = 1.0
        sol = np.linalg.lstsq(Bm, E, rcond=None)[0]  # (M K, D)
        books = sol.reshape(M, K, D)
        # (ii) codes by coordinate descent
        Ehat = compositional_decode(codes, books)
        for m in range(M):
            r = E - (Ehat - books[m][codes[:, m]])  # residual without codebook m
            d2 = -2 * r @ books[m].T + (books[m] ** 2).sum(1)[None, :]
            new = d2.argmin(1)
            Ehat = Ehat - books[m][codes[:, m]] + books[m][new]
            codes[:, m] = new
        errors.append(float(np.linalg.norm(E - Ehat) / normE))
    return codes, books, errors


class CompositionalCodeAutoencoder(Module):
    r"""Shu & Nakayama's code-learning autoencoder (Survey §6.1): Gumbel-softmax code layers
    between an encoder of the embedding and a sum of codebook rows.

    Encoder :math:`h = \tanh(E_w \theta^\top + b)`, :math:`\alpha^m =
    \text{softplus}(h\,\theta_m'^\top + b'_m) \in \mathbb{R}^K`; in training the code layer is
    :math:`d^m = \text{softmax}((\log\alpha^m + g)/\tau)` with Gumbel noise ``g``; in eval
    mode it is the one-hot :math:`\arg\max_k \alpha^m[k]` (the stored code). The decoder is
    :math:`\hat E_w = \sum_m A_m^\top d^m`.

    Parameters
    ----------
    d, n_codebooks, n_codewords : int
        Embedding width ``D``, ``M`` and ``K``.
    hidden : int
    tau : float > 0
        Gumbel-softmax temperature.
    scale : float > 0
        Standard deviation of the initial codebooks (the embedding's, / √M).
    rng : Generator or int, optional

    Attributes
    ----------
    enc_W (hidden, D), enc_b (hidden,), code_W (M K, hidden), code_b (M K,),
    books (M K, D) : Parameter
    """

    @validate_scalars
    def __init__(self, d: int, n_codebooks: int, n_codewords: int, *, hidden: int = 64,
                 tau: float = 1.0, scale: float = 1.0, rng=None):
        D = check_int(d, "d", 1)
        self.M = check_int(n_codebooks, "n_codebooks", 1)
        self.K = check_int(n_codewords, "n_codewords", 2)
        hidden = check_int(hidden, "hidden", 1)
        self.tau = check_float(tau, "tau", 0.0, lo_open=True)
        scale = check_float(scale, "scale", 0.0, lo_open=True)
        rng = as_rng(rng)
        M, K = self.M, self.K
        self.enc_W = Parameter(rng.standard_normal((hidden, D)) / math.sqrt(D))
        self.enc_b = Parameter(np.zeros(hidden))
        self.code_W = Parameter(rng.standard_normal((M * K, hidden)) / math.sqrt(hidden))
        self.code_b = Parameter(np.zeros(M * K))
        self.books = Parameter(rng.standard_normal((M * K, D)) * (scale / math.sqrt(M)))
        self._rng = rng

    def log_alpha(self, x) -> Tensor:
        """``log α`` of shape (B, M, K) for embeddings ``x`` of shape (B, D)."""
        h = F.tanh(F.linear(x, self.enc_W, self.enc_b))  # (B, hidden)
        a = F.linear(h, self.code_W, self.code_b)  # (B, M K)
        softplus = F.log(F.exp(F.clip(a, -30.0, 30.0)) + 1.0)  # α > 0
        return F.log(softplus + 1e-9).reshape(x.shape[0], self.M, self.K)  # (B, M, K)

    def forward(self, x) -> Tensor:
        """Reconstruction (B, D) of the embeddings ``x`` (B, D)."""
        la = self.log_alpha(x)
        if self.training:
            u = self._rng.uniform(1e-9, 1.0 - 1e-9, size=la.shape)
            d = F.softmax((la + (-np.log(-np.log(u)))) * (1.0 / self.tau), axis=-1)  # (B,M,K)
        else:
            d = np.eye(self.K)[la.data.argmax(-1)]  # (B, M, K) one-hot codes
        return F.matmul(d.reshape(x.shape[0], self.M * self.K), self.books)  # Σ_m A_mᵀ d^m

    def codes(self, E) -> np.ndarray:
        """The stored codes ``c_w^m = argmax_k α_w^m[k]``: (V, M) int64."""
        from refimpl.nn import no_grad

        with no_grad():
            return self.log_alpha(Tensor(np.asarray(E, float))).data.argmax(-1).astype(np.int64)

    def codebooks(self) -> np.ndarray:
        """The codebooks ``A_m``: (M, K, D)."""
        return self.books.data.reshape(self.M, self.K, -1).copy()


@validate_scalars(steps=(1, None), lr=(0, None, "(]"), hidden=(1, None), batch_size=(1, None),
                  tau=(0, None, "(]"))
def compositional_codes_gumbel(E, n_codebooks: int, n_codewords: int, *, hidden: int = 64,
                               steps: int = 300, batch_size: int = 128, lr: float = 1e-2,
                               tau: float = 1.0, rng=None):
    r"""Compositional codes learned end-to-end as in Shu & Nakayama (2017): the
    :class:`CompositionalCodeAutoencoder` trained with :func:`refimpl.nn.fit` (Adam) on
    ``steps`` mini-batches of ``batch_size`` words drawn at random, minimising
    :math:`\|\hat E_w - E_w\|^2` (the paper's Eqs. 5–8). After training the code of word ``w``
    is :math:`c_w^m = rg\max_k lpha_w^m[k]` and the codebooks are the decoder's :math:`A_m`.

    Parameters
    ----------
    E : ndarray of shape (V, D)
    n_codebooks, n_codewords : int
        ``M`` and ``K``.
    hidden, steps, batch_size, lr, tau
        Encoder width, Adam steps, words per step, learning rate, Gumbel temperature.
    rng : Generator or seed

    Returns
    -------
    codes : ndarray (V, M) int64, codebooks : ndarray (M, K, D), losses : list of float
        ``losses`` are the mini-batch reconstruction losses during training.

    Notes
    -----
    Survey §6.1.

    References
    ----------
    .. [1] R. Shu, H. Nakayama, "Compressing Word Embeddings via Deep Compositional Code Learning",
       ICLR 2018.
    """
    from refimpl.nn import fit

    E = check_array(E, "E", ndim=2, dtype=np.float64)
    V, D = E.shape
    steps = check_int(steps, "steps", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    rng = as_rng(rng)
    model = CompositionalCodeAutoencoder(D, n_codebooks, n_codewords, hidden=hidden, tau=tau,
                                         scale=float(np.std(E)) or 1.0, rng=rng)
    B = min(batch_size, V)
    words = rng.integers(0, V, size=steps * B)  # the random words of every step, in order
    hist = fit(model, (E[words], E[words]), epochs=1, batch_size=B, lr=lr,
               loss_fn=lambda out, y: ((out - y) ** 2).sum() * (1.0 / B),
               rng=int(rng.integers(2**31)), progress=False)
    losses = list(hist.step_loss)
    model.eval()
    return model.codes(E), model.codebooks(), losses


# ------------------------------------------------------------------ FLOP, Eq. (67)
@validate_scalars
@validate_arrays(P={"ndim": 2}, z={"ndim": 1}, Q={"ndim": 2})
def flop_weight(P, z, Q) -> np.ndarray:
    r"""Eq. (67): :math:`W = P G Q = \sum_k z_k\, p_k q_k` with ``P`` (m, r), ``z`` (r,),
    ``Q`` (r, n); computed as ``(P * z) @ Q``."""
    return (np.asarray(P) * np.asarray(z)[None, :]) @ np.asarray(Q)


class FLOPLinear(Module):
    r"""Factorised L0 pruning (FLOP), Survey Eq. (67), §6.1 (Wang et al. 2019):
    ``y = x (P G Q)^T + b`` with a diagonal gate matrix ``G = diag(z)`` of hard-concrete
    variables on the rank components.

    .. math:: W = PGQ = \sum_{k=1}^{r} z_k\,(p_k q_k)

    Training samples ``z`` (reparameterised, :func:`hard_concrete_sample`); evaluation uses the
    deterministic gates. :meth:`expected_l0` is the differentiable expected number of
    components kept, :meth:`expected_params` the expected stored size ``Σ_k P(z_k≠0)(m+n)``,
    to be added to the loss (Wang et al. use it inside a Lagrangian with a target size).
    :meth:`compress` keeps the components with non-zero gates and absorbs ``z`` into ``P``.

    Parameters
    ----------
    in_features, out_features, rank : int
    bias : bool
    rng : Generator or seed
    init_keep : float
        Initial ``P(z ≠ 0)`` of every gate (sets ``log_alpha``).

    References
    ----------
    .. [1] Z. Wang, J. Wohlwend, T. Lei, "Structured Pruning of Large Language Models",
       arXiv:1910.04732, 2019.
    .. [2] C. Louizos, M. Welling, D. Kingma, "Learning Sparse Neural Networks through L0
       Regularization", ICLR 2018.
    """

    @validate_scalars
    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 rng=None, init_keep: float = 0.95):
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self.rank = check_int(rank, "rank", 1)
        init_keep = check_float(init_keep, "init_keep", 0.0, 1.0, lo_open=True, hi_open=True)
        self.rng = as_rng(rng)
        self.P = Parameter(self.rng.standard_normal((out_features, rank)) / math.sqrt(rank))
        self.Q = Parameter(self.rng.standard_normal((rank, in_features))
                           / math.sqrt(in_features))
        from refimpl.decomposition._ops import HC_BETA, HC_GAMMA, HC_ZETA
        la = math.log(init_keep / (1 - init_keep)) + HC_BETA * math.log(-HC_GAMMA / HC_ZETA)
        self.log_alpha = Parameter(np.full(rank, la))
        self.b = Parameter(np.zeros(out_features)) if bias else None

    @classmethod
    def from_dense(cls, W, b=None, *, rank=None, rng=None, init_keep: float = 0.95):
        """SVD initialisation ``P = U_r Σ_r^{1/2}``, ``Q = Σ_r^{1/2} V_r^T`` (Wang et al.)."""
        W = check_array(W, "W", ndim=2, dtype=np.float64)
        rank = min(W.shape) if rank is None else rank
        U, s, Vt = _svd(W)
        r = _choose_rank(W, s, rank, None)
        layer = cls(W.shape[1], W.shape[0], r, bias=b is not None, rng=rng, init_keep=init_keep)
        layer.P.data = U[:, :r] * np.sqrt(s[:r])
        layer.Q.data = np.sqrt(s[:r])[:, None] * Vt[:r]
        if b is not None:
            layer.b.data = np.array(b, dtype=np.float64)
        return layer

    def gates(self) -> Tensor:
        """Sampled gates in training mode, deterministic ones in eval mode; shape (r,)."""
        if self.training:
            return hard_concrete_sample(self.log_alpha, self.rng)
        return hard_concrete_deterministic(self.log_alpha)

    def expected_l0(self) -> Tensor:
        """``Σ_k P(z_k ≠ 0)`` (scalar Tensor)."""
        return hard_concrete_l0(self.log_alpha).sum()

    def expected_params(self) -> Tensor:
        """Expected stored numbers ``Σ_k P(z_k≠0)(m + n)``."""
        return self.expected_l0() * float(self.in_features + self.out_features)

    def forward(self, x):
        z = self.gates()  # (r,)
        u = F.linear(x, self.Q) * z  # (..., r): G Q x
        y = F.linear(u, self.P)  # (..., m): P G Q x
        return y + self.b if self.b is not None else y

    def compress(self) -> tuple[np.ndarray, np.ndarray]:
        """``(P', Q')`` with only the components whose deterministic gate is non-zero, ``z``
        absorbed into ``P'`` — the smaller dense factors stored after training."""
        z = hard_concrete_deterministic(self.log_alpha).data
        keep = z > 0
        return self.P.data[:, keep] * z[keep][None, :], self.Q.data[keep].copy()
