"""Survey §3.3.4 — multi-bit (loss-aware / distortion-aware) quantisation
``w ≈ Σ_{i=1}^k α_i b_i`` with ``b_i ∈ {±1}^n``: greedy (Eqs. 52–53), refined greedy (Eq. 54;
Guo et al. 2017) and alternating minimisation (Xu et al. 2018), plus the bilevel training of
Eqs. (55)–(56) through a straight-through estimator.
"""

from __future__ import annotations

import itertools

import numpy as np

from refimpl.nn import Tensor, custom_op
from refimpl.utils import check_array, check_int, validate_arrays, validate_scalars

__all__ = ["multibit_greedy", "multibit_refined", "multibit_alternating", "multibit_alternating_rows",
           "multibit_reconstruct",
           "multibit_error", "multibit_ste", "optimal_codes"]


def _sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def _prep(w, bits):
    w = check_array(w, "w").astype(np.float64)
    return w.ravel(), check_int(bits, "bits", 1, 16)


def _check_alphas_B(alphas, B):
    alphas = check_array(alphas, "alphas", ndim=1)
    B = check_array(B, "B", ndim=2)
    if B.shape[0] != alphas.shape[0]:
        raise ValueError(f"B must have one row per alpha, shape ({alphas.shape[0]}, n), got "
                         f"{B.shape}")
    return alphas, B


@validate_scalars
def multibit_reconstruct(alphas, B) -> np.ndarray:
    """``Σ_i α_i b_i``: ``alphas`` of shape (k,), ``B`` of shape (k, n) → shape (n,).

    Part of Survey §3.3.4.
    """
    alphas, B = _check_alphas_B(alphas, B)
    return alphas @ B


@validate_scalars
def multibit_error(w, alphas, B) -> float:
    """The objective of Eq. (52): ``‖w − Σ α_i b_i‖²`` (``w`` of any shape with ``n`` entries,
    ``alphas`` (k,), ``B`` (k, n))."""
    w = check_array(w, "w")
    alphas, B = _check_alphas_B(alphas, B)
    if w.size != B.shape[1]:
        raise ValueError(f"w must have n = {B.shape[1]} entries (B's columns), got shape {w.shape}")
    return float(((np.ravel(w) - alphas @ B) ** 2).sum())


@validate_scalars
def multibit_greedy(w, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy multi-bit quantisation, Survey Eqs. (52)–(53), §3.3.4.

    For ``i = 1..k``: residual ``r_{i−1} = w − Σ_{j<i} α_j b_j`` (Eq. 53),
    ``b_i = sign(r_{i−1})``, ``α_i = ‖r_{i−1}‖₁ / n``.

    Parameters
    ----------
    w : ndarray of any shape (flattened to ``(n,)``)
    bits : int in [1, 16]
        ``k``, the number of binary codes.

    Returns
    -------
    alphas : ndarray of shape (k,)
    B : ndarray of shape (k, n), entries in {-1, +1}

    References
    ----------
    .. [1] Guo, Yao, Yu, Chen, "Network Sketching", CVPR 2017.
    """
    w, k = _prep(w, bits)
    n = w.size
    alphas, B = np.zeros(k), np.zeros((k, n))
    r = w.copy()
    for i in range(k):
        B[i] = _sign(r)
        alphas[i] = np.abs(r).sum() / n
        r = r - alphas[i] * B[i]  # Eq. (53)
    return alphas, B


def _lsq(Bj, w):
    # Eq. (54): α = (BᵀB)⁻¹ Bᵀ w with B = [b_1..b_j] as columns (lstsq copes with repeats)
    return np.linalg.lstsq(Bj.T, w, rcond=None)[0]


@validate_scalars
def multibit_refined(w, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Refined greedy multi-bit quantisation, Survey Eq. (54), §3.3.4 (Guo et al. 2017).

    As :func:`multibit_greedy`, but after choosing ``α_j, b_j`` all ``α_1..α_j`` are replaced by
    the least-squares solution ``((B_jᵀB_j)⁻¹B_jᵀw)ᵀ`` before the next residual is formed.

    Returns
    -------
    alphas : ndarray of shape (k,)
    B : ndarray of shape (k, n)
    """
    w, k = _prep(w, bits)
    n = w.size
    alphas, B = np.zeros(k), np.zeros((k, n))
    r = w.copy()
    for j in range(k):
        B[j] = _sign(r)
        alphas[j] = np.abs(r).sum() / n
        alphas[: j + 1] = _lsq(B[: j + 1], w)  # Eq. (54)
        r = w - alphas[: j + 1] @ B[: j + 1]
    return alphas, B


def optimal_codes(w, alphas) -> np.ndarray:
    """For fixed ``α``, the optimal ``B``: each ``w_t`` takes the nearest of the ``2^k`` values
    ``Σ α_i b_i`` (Xu et al. 2018 use a binary search tree over the sorted values).

    Returns ndarray of shape (k, n).

    Survey §3.3.4 (alternating multi-bit quantisation).

    References
    ----------
    .. [1] C. Xu et al., "Alternating Multi-bit Quantization for Recurrent Neural Networks", ICLR
       2018.
    """
    w = np.ravel(w)
    k = len(alphas)
    combos = np.array(list(itertools.product((-1.0, 1.0), repeat=k)))  # (2^k, k)
    vals = combos @ np.asarray(alphas)  # (2^k,)
    order = np.argsort(vals)
    sv = vals[order]
    mid = (sv[1:] + sv[:-1]) / 2
    idx = order[np.searchsorted(mid, w)]  # nearest value (binary search on midpoints)
    return combos[idx].T  # (k, n)


@validate_scalars
def multibit_alternating(w, bits: int, n_cycles: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Alternating multi-bit quantisation (Xu et al. 2018), Survey §3.3.4.

    Start from :func:`multibit_refined`, then alternate ``n_cycles`` times: the optimal codes
    ``B`` for fixed ``α`` (:func:`optimal_codes`) and the least-squares ``α`` for fixed ``B``
    (Eq. 54). Each half-step cannot increase ``‖w − Σ α_i b_i‖²``, so the error is at most the
    refined greedy error. Xu et al. found two cycles enough.

    Returns
    -------
    alphas : ndarray of shape (k,)
    B : ndarray of shape (k, n)

    References
    ----------
    .. [1] Xu, Wang, Zhang, Wang, Lin, Zha, "Alternating Multi-bit Quantization for Recurrent
       Neural Networks", ICLR 2018.
    """
    w, k = _prep(w, bits)
    n_cycles = check_int(n_cycles, "n_cycles", 0)
    alphas, B = multibit_refined(w, k)
    for _ in range(n_cycles):
        B = optimal_codes(w, alphas)
        a_new = _lsq(B, w)
        if multibit_error(w, a_new, B) <= multibit_error(w, alphas, B):
            alphas = a_new
    return alphas, B


_METHODS = {"greedy": multibit_greedy, "refined": multibit_refined,
            "alternating": multibit_alternating}


def _mb_fwd(w, bits=2, method="alternating", axis=None):
    f = _METHODS[method]
    if axis is None:
        a, B = f(w, bits)
        return multibit_reconstruct(a, B).reshape(w.shape).astype(w.dtype), None
    rows = [multibit_reconstruct(*f(r, bits)) for r in w.reshape(w.shape[0], -1)]
    return np.stack(rows).reshape(w.shape).astype(w.dtype), None


_mb_op = custom_op(_mb_fwd, lambda d, c: (d,), name="multibit_ste")


@validate_scalars
@validate_arrays(w={})
def multibit_ste(w: Tensor, bits: int, method: str = "alternating",
                 per_row: bool = True) -> Tensor:
    """Bilevel multi-bit quantisation in training, Survey Eqs. (55)–(56), §3.3.4.

    Forward: the inner problem Eq. (56) solved for the current full-precision ``w`` (per row of
    a matrix when ``per_row``, as Xu et al. do); backward: the straight-through estimator, so
    the outer loss Eq. (55) is minimised over the full-precision ``w``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {tuple(_METHODS)}, got {method!r}")
    check_int(bits, "bits", 1, 16)
    return _mb_op(w, bits=bits, method=method, axis=0 if per_row and w.ndim > 1 else None)


@validate_scalars
def multibit_alternating_rows(W, bits: int, n_cycles: int = 2) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """:func:`multibit_alternating` applied to every row of a matrix, vectorised over rows.

    Same algorithm (refined greedy start, then ``n_cycles`` of optimal codes / least-squares
    scales); the small ``k × k`` normal equations are solved in a batch with a ``1e-12``
    ridge so that repeated codes do not make them singular.

    Parameters
    ----------
    W : ndarray of shape (rows, n)
    bits : int in [1, 16]

    Returns
    -------
    alphas : ndarray of shape (rows, k)
    B : ndarray of shape (rows, k, n)

    Notes
    -----
    Survey §3.3.4 (alternating multi-bit quantisation).

    References
    ----------
    .. [1] C. Xu et al., "Alternating Multi-bit Quantization for Recurrent Neural Networks", ICLR
       2018.
    """
    W = check_array(W, "W", ndim=2).astype(np.float64)
    k = check_int(bits, "bits", 1, 16)
    n_cycles = check_int(n_cycles, "n_cycles", 0)
    R, n = W.shape
    B = np.zeros((R, k, n))
    alphas = np.zeros((R, k))

    def lsq(Bj):
        G = np.einsum("rin,rjn->rij", Bj, Bj) + 1e-12 * n * np.eye(Bj.shape[1])  # (R, j, j)
        return np.linalg.solve(G, np.einsum("rin,rn->ri", Bj, W)[..., None])[..., 0]

    r = W.copy()
    for j in range(k):
        B[:, j] = _sign(r)
        alphas[:, : j + 1] = lsq(B[:, : j + 1])  # Eq. (54), per row
        r = W - np.einsum("ri,rin->rn", alphas[:, : j + 1], B[:, : j + 1])
    combos = np.array(list(itertools.product((-1.0, 1.0), repeat=k)))  # (2^k, k)
    for _ in range(n_cycles):
        vals = alphas @ combos.T  # (R, 2^k)
        idx = np.abs(W[:, :, None] - vals[:, None, :]).argmin(-1)  # (R, n)
        Bn = np.transpose(combos[idx], (0, 2, 1))  # (R, k, n)
        an = lsq(Bn)
        err_new = ((W - np.einsum("ri,rin->rn", an, Bn)) ** 2).sum(1)
        err_old = ((W - np.einsum("ri,rin->rn", alphas, Bn)) ** 2).sum(1)
        keep = err_new <= err_old
        B = Bn
        alphas = np.where(keep[:, None], an, alphas)
    return alphas, B
