"""Block-sparse attention: query block ``I`` attends to the key blocks ``J`` of a layout, never
forming the ``n × n`` matrix (Survey §7.1).

=================================  ===========================================  ==============
kernel                             what                                         used by
=================================  ===========================================  ==============
:func:`block_sparse_attention`     attention restricted to a block layout,      BlockBERT [1]_,
                                   O(nnz blocks · b²) time, one row of scores   Sparse
                                   per query in the Numba kernel                Transformer [2]_
=================================  ===========================================  ==============

(The sparse *matrices* of §2.3 pruning, BSR and bank-balanced, are in
:mod:`refimpl.kernels.block_sparse`.) A Numba kernel (``cache=True``, ``prange`` over query
blocks) beside a NumPy reference (one BLAS product per query block), chosen by
``backend="numba" | "numpy"``. Float32 and float64; non-finite inputs are refused naming the
argument (:func:`refimpl.kernels.attention_common._check_qkv`).

References
----------
.. [1] J. Qiu et al., "Blockwise Self-Attention for Long Document Understanding", Findings of
   EMNLP 2020.
.. [2] R. Child et al., "Generating Long Sequences with Sparse Transformers", 2019.
"""

from __future__ import annotations

import numba
import numpy as np

from refimpl.kernels._backend import dispatch
from refimpl.kernels.attention_common import _check_qkv

__all__ = ["block_sparse_attention"]


@numba.njit(cache=True, parallel=True)
def _block_sparse_numba_impl(Q, Kt, V, layout, bs, scale, out):
    # Kt is K transposed to (B, H, d, n): scores of a query against one active key block are
    # an axpy over that block's contiguous columns (vectorised without fastmath).
    B, H, n, d = Q.shape
    dv = V.shape[3]
    nbq = layout.shape[1]
    nbk = layout.shape[2]
    for task in numba.prange(B * H * nbq):
        bh = task // nbq
        b = bh // H
        h = bh % H
        I = task % nbq
        cols = np.empty(nbk, dtype=np.int64)
        nc = 0
        for J in range(nbk):
            if layout[h, I, J]:
                cols[nc] = J
                nc += 1
        s = np.empty(max(nc * bs, 1), dtype=Q.dtype)
        acc = np.empty(dv, dtype=Q.dtype)
        for i in range(I * bs, (I + 1) * bs):
            if nc == 0:
                for k in range(dv):
                    out[b, h, i, k] = 0
                continue
            s[:] = 0
            for k in range(d):
                qk = Q[b, h, i, k] * scale
                row = Kt[b, h, k]
                for c in range(nc):
                    blk = row[cols[c] * bs:(cols[c] + 1) * bs]
                    sc = s[c * bs:(c + 1) * bs]
                    for t in range(bs):
                        sc[t] += qk * blk[t]
            mx = s[0]
            for t in range(1, nc * bs):
                if s[t] > mx:
                    mx = s[t]
            z = s[0] * 0
            for t in range(nc * bs):
                e = np.exp(s[t] - mx)
                s[t] = e
                z += e
            acc[:] = 0
            for c in range(nc):
                j0 = cols[c] * bs
                for t in range(bs):
                    w = s[c * bs + t] / z
                    vj = V[b, h, j0 + t]
                    for k in range(dv):
                        acc[k] += w * vj[k]
            for k in range(dv):
                out[b, h, i, k] = acc[k]


def _block_sparse_numba(Q, K, V, layout, bs, out):
    Kt = np.ascontiguousarray(np.swapaxes(K, -1, -2))  # (B, H, d, n)
    scale = Q.dtype.type(1.0 / np.sqrt(Q.shape[3]))
    _block_sparse_numba_impl(Q, Kt, V, layout, bs, scale, out)


def _block_sparse_numpy(Q, K, V, layout, bs, out):
    B, H, n, d = Q.shape
    scale = 1.0 / np.sqrt(d)
    for h in range(H):
        for I in range(layout.shape[1]):
            cols = np.nonzero(layout[h, I])[0]
            rows = slice(I * bs, (I + 1) * bs)
            if cols.size == 0:
                out[:, h, rows] = 0.0
                continue
            kidx = (cols[:, None] * bs + np.arange(bs)[None, :]).ravel()  # (nc*bs,)
            S = Q[:, h, rows] @ np.swapaxes(K[:, h, kidx], -1, -2) * scale  # (B, bs, nc*bs)
            S = np.exp(S - S.max(axis=-1, keepdims=True))
            out[:, h, rows] = (S / S.sum(axis=-1, keepdims=True)) @ V[:, h, kidx]


def block_sparse_attention(Q, K, V, layout, block_size: int, *, backend=None) -> np.ndarray:
    """Attention restricted to a block layout: query block ``I`` sees key blocks ``J`` with
    ``layout[h, I, J]`` (Survey §7.1: BlockBERT, Sparse Transformer).

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
    V : ndarray of shape (B, H, n, d_v)
    layout : ndarray of bool, shape (n/b, n/b) or (H, n/b, n/b)
        Active blocks (per head or shared).
    block_size : int
        ``b``, dividing ``n``.
    backend : {"numba", "numpy", None}

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        Equal to dense attention under the element mask ``kron(layout, ones(b, b))``; rows of
        a query block with no active key block are zero.

    Raises
    ------
    ValueError
        Q, K or V contains NaN or inf (named in the message), or a shape/argument error.

    Notes
    -----
    Time :math:`O(\\mathrm{nnz}\\,b^2 d)` for ``nnz`` active blocks; memory :math:`O(n d)`
    plus :math:`O(\\mathrm{nnz}_{row} b)` scratch per query block.
    """
    Q, K, V = _check_qkv(Q, K, V)
    B, H, n, d = Q.shape
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) \
            or block_size < 1 or n % block_size:
        raise ValueError(f"block_size must be a positive integer dividing n={n}, got "
                         f"{block_size!r}")
    nb = n // block_size
    L = np.asarray(layout)
    if L.dtype != bool:
        raise TypeError(f"layout must be a boolean array, got dtype {L.dtype}")
    if L.ndim == 2:
        L = np.broadcast_to(L, (H,) + L.shape)
    if L.shape != (H, nb, nb):
        raise ValueError(f"layout must have shape ({nb}, {nb}) or ({H}, {nb}, {nb}), got "
                         f"{np.asarray(layout).shape}")
    L = np.ascontiguousarray(L)
    out = np.empty(Q.shape[:3] + (V.shape[3],), dtype=Q.dtype)
    dispatch("block_sparse_attention", backend, _block_sparse_numba, _block_sparse_numpy,
             Q, K, V, L, int(block_size), out)
    return out
