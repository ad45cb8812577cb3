"""CP (CANDECOMP/PARAFAC) by alternating least squares and Tucker by HOSVD / HOOI — Survey §6
(introduction: "SVD, Tensor Train, CP and Tucker") and the building block of BTD (§6.3).

=====================  ===================================================================
:func:`unfold`         mode-k unfolding ``(n_k, ∏_{j≠k} n_j)`` (Kolda & Bader ordering)
:func:`mode_dot`       ``X ×_k A``
:func:`cp_als`         CP by ALS: ``X ≈ Σ_r λ_r a_r^(1) ∘ … ∘ a_r^(d)``
:func:`cp_to_full`     reconstruct a CP tensor
:func:`hosvd`          truncated higher-order SVD (De Lathauwer et al. 2000)
:func:`hooi`           higher-order orthogonal iteration (De Lathauwer et al. 2000)
:func:`tucker_to_full` ``G ×_1 U_1 … ×_d U_d``
=====================  ===================================================================

Parameter counts: CP ``R (Σ n_k + 1)``; Tucker ``∏ R_k + Σ n_k R_k``.
"""

from __future__ import annotations

import numpy as np

from refimpl.utils import (as_rng, check_array, check_float, check_int, validate_arrays,
                           validate_scalars)

__all__ = ["unfold", "fold", "mode_dot", "khatri_rao", "cp_als", "cp_to_full", "cp_num_params",
           "hosvd", "hooi", "tucker_to_full", "tucker_num_params", "check_tucker_ranks"]


def unfold(X: np.ndarray, mode: int) -> np.ndarray:
    """Mode-``mode`` unfolding: ``(n_mode, ∏_{j≠mode} n_j)``, remaining modes in order (C order,
    as TensorLy).

    Part of Survey §6 (CP / Tucker; the building block of BTD, §6.3).
    """
    return np.moveaxis(X, mode, 0).reshape(X.shape[mode], -1)


def fold(M: np.ndarray, mode: int, shape) -> np.ndarray:
    """Inverse of :func:`unfold`.

    Part of Survey §6 (CP / Tucker; the building block of BTD, §6.3).
    """
    full = [shape[mode]] + [s for i, s in enumerate(shape) if i != mode]
    return np.moveaxis(M.reshape(full), 0, mode)


def mode_dot(X: np.ndarray, A: np.ndarray, mode: int) -> np.ndarray:
    """``X ×_mode A``: multiply mode ``mode`` (size n) by ``A`` of shape (m, n).

    Part of Survey §6 (CP / Tucker; the building block of BTD, §6.3).
    """
    shape = list(X.shape)
    shape[mode] = A.shape[0]
    return fold(A @ unfold(X, mode), mode, shape)


def khatri_rao(mats) -> np.ndarray:
    """Column-wise Kronecker product of matrices ``(n_j, R)`` -> ``(∏ n_j, R)``, first matrix
    slowest (matches :func:`unfold`'s C ordering).

    Part of Survey §6 (CP / Tucker; the building block of BTD, §6.3).
    """
    out = mats[0]
    for A in mats[1:]:
        out = (out[:, None, :] * A[None, :, :]).reshape(-1, A.shape[1])
    return out


def _check_tensor(X, name="X"):
    X = check_array(X, name, dtype=np.float64)
    if X.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions, got shape {X.shape}")
    return X


@validate_scalars
@validate_arrays(weights={"ndim": 1}, factors={"sequence": True, "ndim": 2})
def cp_to_full(weights, factors) -> np.ndarray:
    """``Σ_r λ_r a_r^(1) ∘ … ∘ a_r^(d)`` from ``weights`` (R,) and factors ``(n_k, R)``.

    Part of Survey §6 (CP). Returns the full tensor of shape (n_1, ..., n_d).

    References
    ----------
    .. [1] T. G. Kolda, B. W. Bader, "Tensor Decompositions and Applications", SIAM Review 51(3),
       2009.
    """
    M = khatri_rao(factors[1:]) * np.asarray(weights)[None, :]  # (∏_{k>0} n_k, R)
    return (factors[0] @ M.T).reshape([A.shape[0] for A in factors])


@validate_scalars(rank=(1, None))
@validate_arrays(shape={"kind": "dims"})
def cp_num_params(shape, rank: int) -> int:
    """``R (Σ n_k + 1)`` (factors plus the weights λ).

    Part of Survey §6 (CP).
    """
    return int(rank * (sum(shape) + 1))


@validate_scalars(tol=(0, None))
def cp_als(X, rank: int, *, n_iter: int = 200, tol: float = 1e-10, init: str = "svd",
           rng=None):
    r"""CP decomposition by alternating least squares.

    Parameters
    ----------
    X : ndarray of shape (n_1, ..., n_d), d ≥ 2
    rank : int ≥ 1
    n_iter : int
    tol : float
        Stop when the relative error changes by less than ``tol``.
    init : {"svd", "random"}
        ``"svd"``: leading left singular vectors of each unfolding (random columns appended when
        ``rank > n_k``).
    rng : Generator or seed

    Returns
    -------
    weights : ndarray of shape (R,)
    factors : list of ndarray of shape (n_k, R), unit-norm columns
    errors : list of float
        Relative error ``‖X − X̂‖/‖X‖`` after each sweep (non-increasing up to round-off).

    Notes
    -----
    Each step solves :math:`A^{(k)} = X_{(k)}\, (\odot_{j\ne k} A^{(j)})
    (\ast_{j\ne k} A^{(j)\top} A^{(j)})^{+}` (Kolda & Bader 2009, §3.4).

    References
    ----------
    .. [1] J. D. Carroll, J.-J. Chang, Psychometrika 35, 1970.
    .. [2] T. Kolda, B. Bader, "Tensor Decompositions and Applications", SIAM Review 51, 2009.
    """
    X = _check_tensor(X)
    rank = check_int(rank, "rank", 1)
    n_iter = check_int(n_iter, "n_iter", 1)
    if init not in ("svd", "random"):
        raise ValueError(f"init must be 'svd' or 'random', got {init!r}")
    rng = as_rng(rng)
    d = X.ndim
    factors = []
    for k in range(d):
        if init == "svd":
            U = np.linalg.svd(unfold(X, k), full_matrices=False)[0][:, :rank]
            if U.shape[1] < rank:
                U = np.hstack([U, rng.standard_normal((X.shape[k], rank - U.shape[1]))])
        else:
            U = rng.standard_normal((X.shape[k], rank))
        factors.append(U)
    normX = np.linalg.norm(X)
    errors = []
    weights = np.ones(rank)
    for _ in range(n_iter):
        for k in range(d):
            others = [factors[j] for j in range(d) if j != k]
            V = np.ones((rank, rank))
            for A in others:
                V *= A.T @ A
            A = unfold(X, k) @ khatri_rao(others) @ np.linalg.pinv(V)  # (n_k, R)
            weights = np.linalg.norm(A, axis=0)
            weights = np.where(weights > 0, weights, 1.0)
            factors[k] = A / weights
        err = np.linalg.norm(X - cp_to_full(weights, factors)) / normX
        errors.append(float(err))
        if len(errors) > 1 and abs(errors[-2] - errors[-1]) < tol:
            break
    return weights, factors, errors


def check_tucker_ranks(ranks, shape, name="ranks") -> tuple[int, ...]:
    """Validate Tucker ranks: one per mode, ``1 ≤ R_k ≤ n_k`` (int applies to every mode).

    Part of Survey §6 (CP / Tucker; the building block of BTD, §6.3).
    """
    if isinstance(ranks, (int, np.integer)) and not isinstance(ranks, bool):
        ranks = [int(ranks)] * len(shape)
    ranks = list(ranks)
    if len(ranks) != len(shape):
        raise ValueError(f"{name} must have one rank per mode ({len(shape)}), got {len(ranks)}")
    out = []
    for k, (r, n) in enumerate(zip(ranks, shape)):
        r = check_int(r, f"{name}[{k}]", 1)
        if r > n:
            raise ValueError(f"{name}[{k}] = {r} exceeds the mode size n_{k} = {n}")
        out.append(r)
    return tuple(out)


@validate_scalars
@validate_arrays(core={}, factors={"sequence": True, "ndim": 2})
def tucker_to_full(core, factors) -> np.ndarray:
    """``G ×_1 U_1 ×_2 … ×_d U_d`` with ``core`` (R_1..R_d) and ``factors`` (n_k, R_k).

    Part of Survey §6 (Tucker; each BTD term of §6.3). Returns shape (n_1, ..., n_d).
    """
    X = np.asarray(core)
    for k, U in enumerate(factors):
        X = mode_dot(X, np.asarray(U), k)
    return X


@validate_scalars
@validate_arrays(shape={"kind": "dims"}, ranks={"kind": "ranks"})
def tucker_num_params(shape, ranks) -> int:
    """``∏ R_k + Σ n_k R_k``.

    Part of Survey §6 (CP / Tucker; the building block of BTD, §6.3).
    """
    ranks = check_tucker_ranks(ranks, shape)
    return int(np.prod(ranks) + sum(n * r for n, r in zip(shape, ranks)))


@validate_scalars
@validate_arrays(ranks={"kind": "ranks"})
def hosvd(X, ranks):
    r"""Truncated higher-order SVD.

    Parameters
    ----------
    X : ndarray of shape (n_1, ..., n_d)
    ranks : int or sequence of d ints, ``1 ≤ R_k ≤ n_k``

    Returns
    -------
    core : ndarray of shape (R_1, ..., R_d)
    factors : list of ndarray (n_k, R_k) with orthonormal columns

    Notes
    -----
    :math:`U_k` = leading :math:`R_k` left singular vectors of :math:`X_{(k)}`,
    :math:`G = X \times_1 U_1^\top \cdots \times_d U_d^\top`. Quasi-optimal:
    :math:`\|X-\hat X\| \le \sqrt{d}\,\min_{\text{rank-}(R)}\|X - Y\|`.

    Survey §6 (Tucker), the initialisation of HOOI and of BTD (§6.3).

    References
    ----------
    .. [1] L. De Lathauwer, B. De Moor, J. Vandewalle, "A multilinear singular value
       decomposition", SIAM J. Matrix Anal. Appl. 21(4), 2000.
    .. [2] L. R. Tucker, "Some mathematical notes on three-mode factor analysis",
       Psychometrika 31, 1966.
    """
    X = _check_tensor(X)
    ranks = check_tucker_ranks(ranks, X.shape)
    factors = [np.linalg.svd(unfold(X, k), full_matrices=False)[0][:, :r]
               for k, r in enumerate(ranks)]
    core = X
    for k, U in enumerate(factors):
        core = mode_dot(core, U.T, k)
    return core, factors


def _leading_left_vectors(A, r: int) -> np.ndarray:
    """The ``r`` leading left singular vectors of ``A`` (m, c), ``r <= m``.

    When ``r`` exceeds ``c`` (a HOOI step with ``R_k > ∏_{j≠k} R_j``) the thin SVD has only
    ``c`` vectors: the full SVD completes them with an orthonormal basis of the complement, so
    the factor keeps the requested ``r`` columns (as TensorLy's ``tucker``).
    """
    return np.linalg.svd(A, full_matrices=r > min(A.shape))[0][:, :r]


@validate_scalars
@validate_arrays(ranks={"kind": "ranks"})
def hooi(X, ranks, *, n_iter: int = 50, tol: float = 1e-12):
    r"""Tucker decomposition by higher-order orthogonal iteration, initialised by :func:`hosvd`.

    Each sweep sets :math:`U_k` to the leading :math:`R_k` left singular vectors of
    :math:`(X \times_{j\ne k} U_j^\top)_{(k)}`; the fit :math:`\|G\|` never decreases.

    Parameters
    ----------
    X : ndarray of shape (n_1, ..., n_d)
    ranks : int or sequence of d ints, ``1 ≤ R_k ≤ n_k``
    n_iter : int >= 1
        Maximum number of sweeps.
    tol : float >= 0
        Stop when the relative error changes by less than ``tol``.

    Returns
    -------
    core : ndarray of shape (R_1, ..., R_d)
        Always the requested shape, as :func:`hosvd` and TensorLy's ``tucker`` (and as
        :func:`tucker_num_params` counts).
    factors : list of ndarray (n_k, R_k) with orthonormal columns
    errors : list of float
        The relative error after each sweep.

    Notes
    -----
    A mode-``k`` rank ``R_k > ∏_{j≠k} R_j`` cannot be attained (the core's mode-``k`` unfolding
    has only ``∏_{j≠k} R_j`` columns): the extra columns of ``U_k`` then complete an orthonormal
    basis and the matching core slices are zero (the fit equals that of the attainable ranks).

    Survey §6 (Tucker); each BTD term of §6.3 has this form.

    References
    ----------
    .. [1] L. De Lathauwer, B. De Moor, J. Vandewalle, "On the best rank-1 and rank-(R1, R2, ...,
       RN) approximation of higher-order tensors", SIAM J. Matrix Anal. Appl. 21(4), 2000.
    """
    X = _check_tensor(X)
    ranks = check_tucker_ranks(ranks, X.shape)
    n_iter = check_int(n_iter, "n_iter", 1)
    tol = check_float(tol, "tol", 0.0)
    core, factors = hosvd(X, ranks)
    normX = np.linalg.norm(X)
    errors = []
    for _ in range(n_iter):
        for k in range(X.ndim):
            Y = X
            for j, U in enumerate(factors):
                if j != k:
                    Y = mode_dot(Y, U.T, j)
            factors[k] = _leading_left_vectors(unfold(Y, k), ranks[k])
        core = X
        for k, U in enumerate(factors):
            core = mode_dot(core, U.T, k)
        # orthonormal factors: ||X - X̂||² = ||X||² - ||G||²
        err = np.sqrt(max(normX ** 2 - np.linalg.norm(core) ** 2, 0.0)) / normX
        errors.append(float(err))
        if len(errors) > 1 and abs(errors[-2] - errors[-1]) < tol:
            break
    return core, factors, errors
