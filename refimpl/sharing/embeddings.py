r"""Survey §5.2, parameter sharing in the embedding matrix: rare-word embeddings as sparse
combinations of frequent-word embeddings (Chen et al. 2016), Survey Eqs. (60)–(61).

The vocabulary :math:`V` is split into frequent words :math:`B` and rare words :math:`C`. Each
frequent word keeps a dense embedding, a column of :math:`U \in \mathbb{R}^{E\times|B|}`; a rare
word :math:`w` stores only a sparse code :math:`x \in \mathbb{R}^{|B|}` and its embedding is

.. math:: \text{embedding}(w) = \sum_{j=1}^{|B|} x_j U_j = U x
   \qquad\text{(Survey Eq. (60))}

where the code is fitted to the rare word's own (pre-trained) embedding :math:`A` by

.. math:: \min_x \|Ux - A\|_2^2 + \alpha\|x\|_1 + \beta|1^\top x - 1|
          + \gamma\, 1^\top \max(0, -x)
   \qquad\text{(Survey Eq. (61))}

(the last two terms prefer codes that sum to one and are non-negative).

=================================  ==============================================================
:func:`rare_word_embedding`        Eq. (60): ``U @ x`` for one code or a batch of codes
:func:`sparse_code_objective`      Eq. (61): the objective, per rare word
:func:`sparse_code`                Eq. (61): the minimiser, by ADMM with an exact polishing step
:func:`kkt_residual`               the subgradient optimality residual of a candidate code
:func:`sparse_code_embeddings`     code every rare row of a (V, E) table over its frequent rows
:func:`sparse_embedding_bits`      storage: |B| dense embeddings + CSR codes vs the |V|×E table
=================================  ==============================================================

Layout: this module follows the survey and the paper, with embeddings as *columns* of ``U``
(shape (E, |B|)) and rare-word targets as columns of ``A`` (shape (E, n_rare)); codes are
columns of ``X`` (shape (|B|, n_rare)). :func:`sparse_code_embeddings` takes and returns the
row layout (V, E) of :class:`refimpl.nn.Embedding`.

References
----------
.. [1] Y. Chen, L. Mou, Y. Xu, G. Li, Z. Jin, "Compressing neural language models by sparse
   word representations", ACL 2016.
.. [2] S. Boyd, N. Parikh, E. Chu, B. Peleato, J. Eckstein, "Distributed optimization and
   statistical learning via the alternating direction method of multipliers", Foundations and
   Trends in Machine Learning 3(1), 2011 (ADMM, stopping rule §3.3, residual balancing §3.4.1).
.. [3] B. Stellato et al., "OSQP: an operator splitting solver for quadratic programs",
   Math. Prog. Comp. 2020 (solution polishing, the idea reused in :func:`sparse_code`).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.optimize

from refimpl.utils import check_array, check_float, check_int, validate_scalars

__all__ = [
    "rare_word_embedding",
    "sparse_code_objective",
    "sparse_code",
    "kkt_residual",
    "sparse_code_embeddings",
    "sparse_embedding_bits",
]


# ---------------------------------------------------------------------------------- validation
def _check_penalties(alpha, beta, gamma):
    return (check_float(alpha, "alpha", 0.0), check_float(beta, "beta", 0.0),
            check_float(gamma, "gamma", 0.0))


def _check_UA(U, A):
    U = check_array(U, "U", ndim=2, dtype=np.float64)
    A = check_array(A, "A", ndim=(1, 2), dtype=np.float64)
    if A.shape[0] != U.shape[0]:
        raise ValueError(f"A must have E = U.shape[0] = {U.shape[0]} rows (one embedding per "
                         f"column), got shape {A.shape}")
    return U, A


def _check_X(X, n_frequent, name="x"):
    X = check_array(X, name, ndim=(1, 2), dtype=np.float64)
    if X.shape[0] != n_frequent:
        raise ValueError(f"{name} must have |B| = {n_frequent} rows (one coefficient per "
                         f"frequent word), got shape {X.shape}")
    return X


# ---------------------------------------------------------------------------------- Eq. (60)
@validate_scalars
def rare_word_embedding(x, U) -> np.ndarray:
    r"""Embedding of rare words from their sparse codes, Survey Eq. (60), §5.2.

    Parameters
    ----------
    x : ndarray of shape (|B|,) or (|B|, n_rare)
        Sparse code(s) over the frequent words (columns are words).
    U : ndarray of shape (E, |B|)
        Frequent-word embeddings as columns.

    Returns
    -------
    ndarray of shape (E,) or (E, n_rare)

    Notes
    -----
    .. math:: \text{embedding}(w) = \sum_{j=1}^{|B|} x_j U_j \qquad \text{Survey Eq. (60), §5.2}

    with :math:`U_j` the j-th column of :math:`U`, i.e. the matrix-vector product :math:`Ux`.

    References
    ----------
    Chen et al., "Compressing neural language models by sparse word representations", ACL 2016.
    """
    U = check_array(U, "U", ndim=2, dtype=np.float64)
    x = _check_X(x, U.shape[1], "x")
    # Σ_j x_j U_j  (Eq. 60)
    return U @ x  # (E,) or (E, n_rare)


# ---------------------------------------------------------------------------------- Eq. (61)
@validate_scalars
def sparse_code_objective(X, U, A, alpha: float, beta: float, gamma: float) -> np.ndarray:
    r"""The objective of Survey Eq. (61), §5.2, for one code or a batch of codes.

    Parameters
    ----------
    X : ndarray of shape (|B|,) or (|B|, n_rare)
    U : ndarray of shape (E, |B|)
    A : ndarray of shape (E,) or (E, n_rare)
        The rare words' own embeddings, as columns (same ndim as ``X``).
    alpha, beta, gamma : float >= 0
        Weights of the L1, sum-to-one and non-negativity penalties.

    Returns
    -------
    float or ndarray of shape (n_rare,)

    Notes
    -----
    .. math:: f(x) = \|Ux - A\|_2^2 + \alpha\|x\|_1 + \beta|1^\top x - 1|
                     + \gamma\,1^\top\max(0, -x) \qquad \text{Survey Eq. (61), §5.2}
    """
    alpha, beta, gamma = _check_penalties(alpha, beta, gamma)
    U, A = _check_UA(U, A)
    X = _check_X(X, U.shape[1], "X")
    if X.ndim != A.ndim or (X.ndim == 2 and X.shape[1] != A.shape[1]):
        raise ValueError(f"X and A must hold the same number of words, got X {X.shape} and "
                         f"A {A.shape}")
    R = U @ X - A  # (E, n_rare) residuals
    f = (np.sum(R * R, axis=0) + alpha * np.sum(np.abs(X), axis=0)
         + beta * np.abs(np.sum(X, axis=0) - 1.0) + gamma * np.sum(np.maximum(0.0, -X), axis=0))
    return float(f) if X.ndim == 1 else f


def _prox_phi(Z, t_pos, t_neg):
    """Prox of φ(z) = t_pos·max(z, 0) + t_neg·max(−z, 0): an asymmetric soft threshold."""
    return np.where(Z > t_pos, Z - t_pos, np.where(Z < -t_neg, Z + t_neg, 0.0))


def _polish(x, U, a, alpha, beta, gamma):
    """Candidates that solve the stationarity equations exactly on the support and signs of
    ``x`` (OSQP-style polishing): with the sum-to-one term active (1ᵀx = 1, τ free) and with
    τ = ±1 fixed (1ᵀx > 1 or < 1). Returns a list of candidate codes; the caller keeps the one
    with the lowest objective."""
    S = np.flatnonzero(x)
    if S.size == 0:
        return []
    Us = U[:, S]                                      # (E, |S|)
    c = np.where(x[S] > 0, alpha, -(alpha + gamma))   # ∂φ on the support
    G = 2.0 * Us.T @ Us                               # (|S|, |S|)
    r = 2.0 * Us.T @ a - c
    out = []
    for tau in ((-1.0, 1.0) if beta > 0 else (0.0,)):
        xs = np.linalg.lstsq(G, r - beta * tau, rcond=None)[0]
        cand = np.zeros_like(x)
        cand[S] = xs
        out.append(cand)
    if beta > 0:
        # [G β1; 1ᵀ 0] [x_S; τ] = [r; 1]   (1ᵀx = 1 with multiplier τ ∈ [−1, 1])
        K = np.zeros((S.size + 1, S.size + 1))
        K[:-1, :-1] = G
        K[:-1, -1] = beta
        K[-1, :-1] = 1.0
        sol = np.linalg.lstsq(K, np.append(r, 1.0), rcond=None)[0]
        cand = np.zeros_like(x)
        cand[S] = sol[:-1]
        out.append(cand)
    return out


@validate_scalars
def sparse_code(U, A, alpha: float, beta: float, gamma: float, *, rho: float | None = None,
                eps_abs: float = 1e-10, eps_rel: float = 1e-10, max_iter: int = 10_000,
                polish: bool = True, return_info: bool = False):
    r"""Sparse codes of rare words over frequent-word embeddings, Survey Eq. (61), §5.2.

    Solves, independently for every column ``a`` of ``A``,

    .. math:: \min_x \|Ux - a\|_2^2 + \alpha\|x\|_1 + \beta|1^\top x - 1|
              + \gamma\,1^\top\max(0, -x)

    Parameters
    ----------
    U : ndarray of shape (E, |B|)
        Frequent-word embeddings as columns.
    A : ndarray of shape (E,) or (E, n_rare)
        Rare-word embeddings to approximate, as columns.
    alpha, beta, gamma : float >= 0
        L1 weight, sum-to-one weight, non-negativity weight.
    rho : float > 0, optional
        Initial ADMM penalty; default ``2 · mean_j ‖U_j‖²`` (the scale of the quadratic's
        curvature), adapted by residual balancing during the first 200 iterations only.
    eps_abs, eps_rel : float > 0
        ADMM stopping tolerances (Boyd et al. §3.3.1).
    max_iter : int
        Maximum ADMM iterations.
    polish : bool
        Re-solve the stationarity equations on the ADMM support (see Notes).
    return_info : bool
        Also return a dict with ``n_iter``, ``converged`` (per word), ``rho``, ``polished``
        (per word) and ``objective`` (per word).

    Returns
    -------
    X : ndarray of shape (|B|,) or (|B|, n_rare)
        The codes (exact zeros off the support). Inputs are not modified.
    info : dict, only if ``return_info``

    Notes
    -----
    Implements Survey Eq. (61), §5.2 (Chen et al. 2016, their Eq. (4)). The objective is convex:
    a convex quadratic plus the separable penalty
    :math:`\varphi(x_i) = \alpha|x_i| + \gamma\max(0, -x_i)` (slope α for x_i > 0 and α+γ for
    x_i < 0) plus :math:`h(1^\top x) = \beta|1^\top x - 1|`. The solver is two-block ADMM
    (Boyd et al. 2011) on the split

    .. math:: \min_{x, y, s}\ \|Ux - a\|^2 + \textstyle\sum_i\varphi(y_i) + \beta|s - 1|
              \quad\text{s.t.}\quad x = y,\ 1^\top x = s

    whose steps are closed form: the x-step solves
    :math:`(2U^\top U + \rho I + \rho 11^\top)x = 2U^\top a + \rho(y - u) + \rho(s - v)1`
    (one Cholesky factorisation per ρ, shared by all rare words), the y-step is the asymmetric
    soft threshold (prox of φ/ρ), the s-step is ``1 + soft(1ᵀx + v − 1, β/ρ)``. Two-block ADMM
    converges for any fixed ρ > 0 on closed proper convex functions; ρ is only adapted
    (residual balancing, factor 2 when the residuals differ by 10×) during the first 200
    iterations, so the fixed-ρ theorem applies to the tail.

    Stopping rule (Boyd et al. §3.3.1), per word: primal residual
    :math:`\|(x - y, 1^\top x - s)\| \le \sqrt{|B|+1}\,\epsilon_{abs} +
    \epsilon_{rel}\max(\|(x, 1^\top x)\|, \|(y, s)\|)` and dual residual
    :math:`\rho\|\Delta y + 1\Delta s\| \le \sqrt{|B|}\,\epsilon_{abs} +
    \epsilon_{rel}\rho\|u + 1 v\|`; the loop stops when every word meets both, or after
    ``max_iter`` iterations (``info["converged"]`` says which).

    Polishing: on the support and signs of the ADMM iterate ``y``, the optimality conditions
    are linear (``2U_Sᵀ(U_S x_S − a) + c_S + βτ1 = 0`` with ``c_i = α`` or ``−(α+γ)``, and
    either τ = sign(1ᵀx − 1) or the constraint 1ᵀx = 1 with τ free); their solution is
    accepted only when it lowers the objective, so polishing can never make a code worse.

    References
    ----------
    Chen et al., ACL 2016; Boyd et al. 2011; Stellato et al. (OSQP) 2020.
    """
    alpha, beta, gamma = _check_penalties(alpha, beta, gamma)
    U, A = _check_UA(U, A)
    eps_abs = check_float(eps_abs, "eps_abs", 0.0, lo_open=True)
    eps_rel = check_float(eps_rel, "eps_rel", 0.0)
    max_iter = check_int(max_iter, "max_iter", 1)
    single = A.ndim == 1
    Am = A[:, None] if single else A                 # (E, m)
    E, n = U.shape
    m = Am.shape[1]
    UtU2 = 2.0 * U.T @ U                             # (n, n)
    UtA2 = 2.0 * U.T @ Am                            # (n, m)
    if rho is None:
        rho = max(float(np.mean(np.diag(UtU2))), 1e-8)
    rho = check_float(rho, "rho", 0.0, lo_open=True)
    ones = np.ones(n)

    def factor(r):
        # explicit inverse of the SPD x-step matrix via Cholesky: |B| is small here, and one
        # matmul per iteration is cheaper than a triangular solve pair
        cf = scipy.linalg.cho_factor(UtU2 + r * np.eye(n) + r * np.outer(ones, ones))
        return scipy.linalg.cho_solve(cf, np.eye(n))   # (n, n)

    cf = factor(rho)
    X = np.zeros((n, m))
    Y = np.zeros((n, m))
    s = np.zeros(m)
    Uu = np.zeros((n, m))                            # scaled dual of x = y
    v = np.zeros(m)                                  # scaled dual of 1ᵀx = s
    converged = np.zeros(m, dtype=bool)
    k = 0
    for k in range(1, max_iter + 1):
        X = cf @ (UtA2 + rho * (Y - Uu) + rho * (s - v)[None, :])  # (n, m)
        sx = X.sum(axis=0)                           # 1ᵀx, (m,)
        Y_new = _prox_phi(X + Uu, alpha / rho, (alpha + gamma) / rho)
        z = sx + v - 1.0
        s_new = 1.0 + np.sign(z) * np.maximum(np.abs(z) - beta / rho, 0.0)
        Uu += X - Y_new
        v += sx - s_new
        r_pri = np.sqrt(np.sum((X - Y_new) ** 2, axis=0) + (sx - s_new) ** 2)
        r_dual = rho * np.linalg.norm((Y_new - Y) + (s_new - s)[None, :], axis=0)
        Y, s = Y_new, s_new
        eps_pri = math.sqrt(n + 1) * eps_abs + eps_rel * np.maximum(
            np.sqrt(np.sum(X**2, axis=0) + sx**2), np.sqrt(np.sum(Y**2, axis=0) + s**2))
        eps_dual = math.sqrt(n) * eps_abs + eps_rel * rho * np.linalg.norm(Uu + v[None, :],
                                                                            axis=0)
        converged = (r_pri <= eps_pri) & (r_dual <= eps_dual)
        if converged.all():
            break
        if k <= 200 and k % 10 == 0:                 # residual balancing (Boyd §3.4.1)
            p, d = float(r_pri.max()), float(r_dual.max())
            scale = 2.0 if p > 10 * d else 0.5 if d > 10 * p else 1.0
            if scale != 1.0:
                rho *= scale
                Uu /= scale                          # scaled duals u = λ/ρ
                v /= scale
                cf = factor(rho)
    out = Y.copy()                                   # the prox iterate: exact zeros
    f = sparse_code_objective(out, U, Am, alpha, beta, gamma)
    polished = np.zeros(m, dtype=bool)
    if polish:
        for j in range(m):
            for cand in _polish(out[:, j], U, Am[:, j], alpha, beta, gamma):
                fc = sparse_code_objective(cand, U, Am[:, j], alpha, beta, gamma)
                if fc < f[j]:
                    out[:, j], f[j], polished[j] = cand, fc, True
    X_out = out[:, 0] if single else out
    if return_info:
        return X_out, {"n_iter": k, "converged": converged, "rho": rho, "polished": polished,
                       "objective": f}
    return X_out


@validate_scalars(alpha=(0, None), beta=(0, None), gamma=(0, None), zero_tol=(0, None),
                  sum_tol=(0, None))
def kkt_residual(x, U, a, alpha: float, beta: float, gamma: float, *,
                 zero_tol: float = 0.0, sum_tol: float = 1e-9) -> float:
    r"""Violation of the subgradient optimality condition of Survey Eq. (61) at ``x``.

    ``x`` minimises Eq. (61) iff :math:`0 \in 2U^\top(Ux - a) + \partial\varphi(x) +
    \beta\tau 1` for some :math:`\tau \in \partial|1^\top x - 1|`, where
    :math:`\partial\varphi(x_i) = \{\alpha\}` if x_i > 0, :math:`\{-(\alpha+\gamma)\}` if
    x_i < 0 and :math:`[-(\alpha+\gamma), \alpha]` if x_i = 0. With
    :math:`g = 2U^\top(Ux - a) + \beta\tau 1` the per-coordinate violation is
    :math:`|g_i + \alpha|` (x_i > 0), :math:`|g_i - \alpha - \gamma|` (x_i < 0) and
    :math:`\max(0, -\alpha - g_i, g_i - \alpha - \gamma)` (x_i = 0). When
    :math:`1^\top x = 1` (within ``sum_tol``), τ is free in [−1, 1] and chosen to minimise the
    largest violation (a 1-D convex problem, solved by bounded Brent).

    Parameters
    ----------
    x : ndarray of shape (|B|,)
    U : ndarray of shape (E, |B|)
    a : ndarray of shape (E,)
    alpha, beta, gamma : float >= 0
    zero_tol : float
        Entries with ``|x_i| <= zero_tol`` count as zero (use > 0 for solutions from a generic
        optimiser that has no exact zeros).
    sum_tol : float
        ``|1ᵀx − 1| <= sum_tol`` counts as on the kink of the sum-to-one term.

    Returns
    -------
    float
        The largest violation (0 at an exact minimiser).
    """
    alpha, beta, gamma = _check_penalties(alpha, beta, gamma)
    a = check_array(a, "a")  # named here: _check_UA calls it A
    if a.ndim != 1:
        raise ValueError(f"a must be one embedding of shape (E,), got {a.shape}")
    U, a = _check_UA(U, a)
    if a.ndim != 1:
        raise ValueError(f"a must be one embedding of shape (E,), got {a.shape}")
    x = _check_X(x, U.shape[1], "x")
    if x.ndim != 1:
        raise ValueError(f"x must be one code of shape (|B|,), got {x.shape}")
    g0 = 2.0 * U.T @ (U @ x - a)
    pos, neg = x > zero_tol, x < -zero_tol
    zero = ~(pos | neg)

    def viol(tau):
        g = g0 + beta * tau
        r = np.zeros_like(g)
        r[pos] = np.abs(g[pos] + alpha)
        r[neg] = np.abs(g[neg] - alpha - gamma)
        gz = g[zero]
        r[zero] = np.maximum(0.0, np.maximum(-alpha - gz, gz - alpha - gamma))
        return float(r.max(initial=0.0))

    dev = float(x.sum() - 1.0)
    if beta == 0.0:
        return viol(0.0)
    if abs(dev) > sum_tol:
        return viol(np.sign(dev))
    res = scipy.optimize.minimize_scalar(viol, bounds=(-1.0, 1.0), method="bounded",
                                         options={"xatol": 1e-13})
    return min(viol(-1.0), viol(1.0), viol(float(res.x)))


# ---------------------------------------------------------------------------------- whole table
@validate_scalars
def sparse_code_embeddings(W, frequent, alpha: float, beta: float, gamma: float, **kwargs):
    r"""Code every rare row of an embedding table over its frequent rows (Survey §5.2).

    Parameters
    ----------
    W : ndarray of shape (V, E)
        A (pre-trained) embedding table in the row layout of :class:`refimpl.nn.Embedding`.
    frequent : int ndarray of shape (|B|,)
        Distinct row indices of the frequent words; every other row is a rare word.
    alpha, beta, gamma : float >= 0
        Penalty weights of Survey Eq. (61).
    **kwargs
        Passed to :func:`sparse_code`.

    Returns
    -------
    W_hat : ndarray of shape (V, E)
        Frequent rows copied, rare rows replaced by ``U x`` (Survey Eq. (60)).
    codes : ndarray of shape (n_rare, |B|)
        One sparse code per rare row (rows in increasing vocabulary order).
    rare : int ndarray of shape (n_rare,)
        The rare row indices.
    """
    W = check_array(W, "W", ndim=2, dtype=np.float64)
    V = W.shape[0]
    frequent = np.asarray(frequent)
    if frequent.ndim != 1 or frequent.dtype.kind not in "iu" or frequent.size == 0:
        raise ValueError(f"frequent must be a non-empty 1-D integer array, got {frequent!r}")
    if frequent.min() < 0 or frequent.max() >= V or np.unique(frequent).size != frequent.size:
        raise ValueError(f"frequent must hold distinct row indices in [0, {V}), got values in "
                         f"[{frequent.min()}, {frequent.max()}]")
    is_rare = np.ones(V, dtype=bool)
    is_rare[frequent] = False
    rare = np.flatnonzero(is_rare)
    U = W[frequent].T                                  # (E, |B|) columns = frequent words
    W_hat = W.copy()
    if rare.size == 0:
        return W_hat, np.zeros((0, frequent.size)), rare
    X = sparse_code(U, W[rare].T, alpha, beta, gamma, **kwargs)  # (|B|, n_rare)
    W_hat[rare] = rare_word_embedding(X, U).T          # (n_rare, E)
    return W_hat, X.T.copy(), rare


@validate_scalars
def sparse_embedding_bits(vocab_size: int, n_frequent: int, embed_dim: int, nnz: int, *,
                          float_bits: int = 32) -> dict:
    r"""Storage of the sparse-code representation vs the full embedding table (Survey §5.2).

    Dense table: :math:`|V| E b` bits. Compressed: the |B| frequent embeddings
    (:math:`|B| E b`) plus the rare words' codes in CSR form — ``nnz`` values (b bits each),
    ``nnz`` column indices (:math:`\lceil\log_2|B|\rceil` bits each) and
    :math:`|C| + 1` row pointers (:math:`\lceil\log_2(nnz+1)\rceil` bits each), with
    :math:`|C| = |V| - |B|`.

    Parameters
    ----------
    vocab_size, n_frequent, embed_dim : int
        |V|, |B| (1 <= |B| <= |V|) and E.
    nnz : int
        Total number of non-zero code entries over all rare words.
    float_bits : int
        Bits per stored real number.

    Returns
    -------
    dict
        ``dense_bits``, ``frequent_bits``, ``code_bits``, ``total_bits``, ``ratio``
        (dense / total), ``index_bits``, ``pointer_bits``.
    """
    V = check_int(vocab_size, "vocab_size", 1)
    B = check_int(n_frequent, "n_frequent", 1, V)
    E = check_int(embed_dim, "embed_dim", 1)
    C = V - B
    nnz = check_int(nnz, "nnz", 0, C * B)
    b = check_int(float_bits, "float_bits", 1, 64)
    index_bits = max(1, math.ceil(math.log2(B)))
    pointer_bits = max(1, math.ceil(math.log2(nnz + 1)))
    dense = V * E * b
    frequent = B * E * b
    codes = nnz * (b + index_bits) + (C + 1) * pointer_bits if C else 0
    total = frequent + codes
    return {"dense_bits": dense, "frequent_bits": frequent, "code_bits": codes,
            "total_bits": total, "ratio": dense / total, "index_bits": index_bits,
            "pointer_bits": pointer_bits}
