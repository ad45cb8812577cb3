"""Pruning blocks of weights (Survey §2.3): block pruning, group lasso, bank-balanced sparsity.

=====================================  =======================================================
function                               survey § / equation, paper
=====================================  =======================================================
:func:`block_norms`                    per-block max |w| (Narang et al.) or L2 norm
:func:`block_mask`,
:func:`block_threshold_mask`           §2.3 — block pruning by block magnitude (Narang 2017b)
:func:`block_slope`                    §2.3, Eq. (16) — θ_b = θ · N_b^(1/4)
:func:`group_lasso_penalty`,
:func:`group_lasso_prox`               §2.3, Eq. (17) — group lasso over blocks
:func:`bank_balanced_mask`             §2.3 — bank-balanced sparsity, BBS (Cao et al. 2019)
=====================================  =======================================================

A block shape ``(bh, bw)`` must divide the matrix shape; a bank size must divide the number of
columns. Masks are boolean arrays, ``True`` = kept. The matching compute kernels (BSR matmul,
bank-balanced matmul) are in :mod:`refimpl.kernels.block_sparse`.
"""

from __future__ import annotations

import numpy as np

from refimpl.pruning.weights import n_to_prune
from refimpl.utils import (check_array, check_choice, check_float, check_fraction, check_int,
                           validate_arrays, validate_scalars)

__all__ = ["check_block_shape", "block_norms", "block_mask", "block_threshold_mask",
           "block_slope", "group_lasso_penalty", "group_lasso_prox", "bank_balanced_mask"]


def check_block_shape(shape, block_shape, name: str = "block_shape") -> tuple[int, int]:
    """Validate that ``block_shape = (bh, bw)`` divides the 2-D ``shape``.

    Part of Survey §2.3. Returns ``(bh, bw)`` as ints.
    """
    if not isinstance(block_shape, (tuple, list)) or len(block_shape) != 2:
        raise ValueError(f"{name} must be a pair (bh, bw), got {block_shape!r}")
    bh, bw = (check_int(b, name, 1) for b in block_shape)
    if shape[0] % bh or shape[1] % bw:
        raise ValueError(f"{name}={tuple(block_shape)} must divide the matrix shape {shape}")
    return bh, bw


def _blocks(W, block_shape):
    W = check_array(W, "W", ndim=2)
    bh, bw = check_block_shape(W.shape, block_shape)
    B = W.reshape(W.shape[0] // bh, bh, W.shape[1] // bw, bw).transpose(0, 2, 1, 3)
    return W, B, bh, bw  # B: (n_block_rows, n_block_cols, bh, bw)


@validate_scalars
def block_norms(W, block_shape, kind: str = "max") -> np.ndarray:
    """Per-block magnitude: ``"max"`` = ``max |w|`` (Narang et al. 2017b) or ``"l2"`` norm.

    Returns
    -------
    ndarray of shape (n_rows // bh, n_cols // bw)

    Notes
    -----
    Survey §2.3 (block pruning).

    References
    ----------
    .. [1] S. Narang, E. Undersander, G. Diamos, "Block-Sparse Recurrent Neural Networks", arXiv
       1711.02782, 2017.
    """
    check_choice(kind, "kind", ("max", "l2"))
    _, B, _, _ = _blocks(W, block_shape)
    if kind == "max":
        return np.abs(B).max(axis=(2, 3))
    return np.sqrt((B ** 2).sum(axis=(2, 3)))


def _expand(block_keep, bh, bw):
    return np.repeat(np.repeat(block_keep, bh, axis=0), bw, axis=1)


@validate_scalars
def block_mask(W, block_shape, sparsity: float, kind: str = "max") -> np.ndarray:
    """Mask that zeroes the ``round(sparsity · n_blocks)`` blocks of smallest magnitude.

    Block pruning (Survey §2.3; Narang et al. 2017b): a block is pruned as a whole when its
    largest ``|w|`` is small. With ``block_shape=(1, 1)`` this is
    :func:`~refimpl.pruning.weights.magnitude_mask`.

    Parameters
    ----------
    W : ndarray of shape (n_rows, n_cols)
    block_shape : (int, int)
        Must divide ``W.shape``.
    sparsity : float in [0, 1)
    kind : {"max", "l2"}

    Returns
    -------
    ndarray of bool, shape (n_rows, n_cols)

    References
    ----------
    .. [1] S. Narang, E. Undersander, G. Diamos, "Block-Sparse Recurrent Neural Networks",
       arXiv 1711.02782, 2017.
    """
    norms = block_norms(W, block_shape, kind)
    bh, bw = check_block_shape(np.shape(W), block_shape)
    k = n_to_prune(norms.size, sparsity)
    keep = np.ones(norms.size, dtype=bool)
    if k:
        keep[np.argsort(norms.ravel(), kind="stable")[:k]] = False
    return _expand(keep.reshape(norms.shape), bh, bw)


@validate_scalars
@validate_arrays(W={"ndim": 2})
def block_threshold_mask(W, block_shape, threshold: float) -> np.ndarray:
    """Zero every block whose max ``|w|`` is below ``threshold`` (Narang et al. 2017b).

    Survey §2.3. ``W`` of shape (n_rows, n_cols) -> boolean mask of the same shape
    (``True`` = kept).

    References
    ----------
    .. [1] S. Narang, E. Undersander, G. Diamos, "Block-Sparse Recurrent Neural Networks", arXiv
       1711.02782, 2017.
    """
    threshold = check_float(threshold, "threshold", 0.0)
    bh, bw = check_block_shape(np.shape(W), block_shape)
    return _expand(block_norms(W, block_shape, "max") >= threshold, bh, bw)


@validate_scalars
def block_slope(theta: float, n_block: int) -> float:
    """Block-pruning start slope ``θ_b = θ · N_b^(1/4)`` (Survey Eq. (16), §2.3).

    Parameters
    ----------
    theta : float
        The weight-pruning slope of Eq. (4) (:func:`~refimpl.pruning.weights.narang_slope`).
    n_block : int
        ``N_b``, the number of elements in a block (16 for 4×4).
    """
    theta = check_float(theta, "theta", 0.0)
    n_block = check_int(n_block, "n_block", 1)
    return theta * n_block ** 0.25


@validate_scalars
def group_lasso_penalty(W, block_shape, lam: float = 1.0) -> tuple[float, np.ndarray]:
    """Group lasso over blocks ``λ_g Σ_g ‖w^(g)‖₂`` and its (sub)gradient (Survey Eq. (17)).

    The gradient of a non-zero block is ``λ_g w^(g) / ‖w^(g)‖₂``; at an all-zero block the
    minimum-norm subgradient 0 is returned.

    Parameters
    ----------
    W : ndarray of shape (n_rows, n_cols)
    block_shape : (int, int)
    lam : float

    Returns
    -------
    penalty : float
    grad : ndarray of shape (n_rows, n_cols)
    """
    lam = check_float(lam, "lam", 0.0)
    W, B, bh, bw = _blocks(W, block_shape)
    norms = np.sqrt((B ** 2).sum(axis=(2, 3)))  # (nbr, nbc)
    safe = np.where(norms > 0, norms, 1.0)
    G = B / safe[:, :, None, None] * (norms > 0)[:, :, None, None]
    grad = G.transpose(0, 2, 1, 3).reshape(W.shape)
    return lam * float(norms.sum()), lam * grad


@validate_scalars
def group_lasso_prox(W, block_shape, tau: float) -> np.ndarray:
    """Proximal operator of ``τ Σ_g ‖w^(g)‖₂``: block soft-thresholding.

    ``w^(g) ← max(0, 1 - τ / ‖w^(g)‖₂) w^(g)``: blocks with norm ≤ τ become exactly zero.

    The proximal step of the group lasso of Survey Eq. (17), §2.3.

    References
    ----------
    .. [1] S. Narang, E. Undersander, G. Diamos, "Block-Sparse Recurrent Neural Networks", arXiv
       1711.02782, 2017.
    """
    tau = check_float(tau, "tau", 0.0)
    W, B, bh, bw = _blocks(W, block_shape)
    norms = np.sqrt((B ** 2).sum(axis=(2, 3)))
    scale = np.maximum(0.0, 1.0 - tau / np.where(norms > 0, norms, 1.0)) * (norms > 0)
    return (B * scale[:, :, None, None]).transpose(0, 2, 1, 3).reshape(W.shape)


@validate_scalars
def bank_balanced_mask(W, bank_size: int, sparsity: float) -> np.ndarray:
    """Bank-balanced sparsity: prune each bank of each row to the same sparsity (Cao et al.).

    Every row of ``W`` is split into ``n_cols / bank_size`` equal banks of consecutive columns;
    in each bank the ``round(sparsity · bank_size)`` smallest-magnitude weights are pruned, so
    every bank keeps the same number ``k`` of non-zeros (e.g. keeping the top 2 of each bank of
    4 is 50% sparsity). Survey §2.3.

    Parameters
    ----------
    W : ndarray of shape (n_rows, n_cols)
    bank_size : int
        Must divide ``n_cols``.
    sparsity : float in [0, 1)

    Returns
    -------
    ndarray of bool, shape (n_rows, n_cols)
        Every bank has exactly ``bank_size - round(sparsity · bank_size)`` True entries.

    References
    ----------
    .. [1] S. Cao, C. Zhang, Z. Yao, W. Xiao, L. Nie, D. Zhan, Y. Liu, M. Wu, L. Zhang,
       "Efficient and Effective Sparse LSTM on FPGA with Bank-Balanced Sparsity", FPGA 2019.
    """
    W = check_array(W, "W", ndim=2)
    bank_size = check_int(bank_size, "bank_size", 1)
    if W.shape[1] % bank_size:
        raise ValueError(f"bank_size={bank_size} must divide the number of columns "
                         f"{W.shape[1]}")
    sparsity = check_fraction(sparsity, "sparsity")
    k_prune = n_to_prune(bank_size, sparsity)
    banks = np.abs(W).reshape(W.shape[0], -1, bank_size)  # (rows, n_banks, bank_size)
    keep = np.ones(banks.shape, dtype=bool)
    if k_prune:
        idx = np.argsort(banks, axis=2, kind="stable")[:, :, :k_prune]
        np.put_along_axis(keep, idx, False, axis=2)
    return keep.reshape(W.shape)
