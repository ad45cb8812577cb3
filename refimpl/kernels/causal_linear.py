"""Causal linear attention by prefix sums, never forming the ``n × n`` matrix (Survey §7.2).

=================================  ===========================================  ==============
kernel                             what                                         used by
=================================  ===========================================  ==============
:func:`causal_linear_attention`    causal linear attention by prefix sums,      linear Transf.
                                   O(n·d·d_v) time, O(d·d_v) state              [1]_ (§7.2)
=================================  ===========================================  ==============

A Numba kernel (``cache=True``, ``prange`` over batch × heads, the running state in float64)
beside a NumPy reference (chunks of 64 positions with BLAS), chosen by
``backend="numba" | "numpy"``. Float32 and float64; non-finite inputs are refused naming the
argument (:func:`refimpl.kernels.attention_common._check_qkv`).

References
----------
.. [1] A. Katharopoulos, A. Vyas, N. Pappas, F. Fleuret, "Transformers are RNNs: Fast
   Autoregressive Transformers with Linear Attention", ICML 2020.
"""

from __future__ import annotations

import numba
import numpy as np

from refimpl.kernels._backend import dispatch
from refimpl.kernels.attention_common import _check_qkv

__all__ = ["causal_linear_attention"]


@numba.njit(cache=True, parallel=True)
def _causal_linear_numba(phiQ, phiK, V, eps, out):
    B, H, n, d = phiQ.shape
    dv = V.shape[3]
    for bh in numba.prange(B * H):
        b = bh // H
        h = bh % H
        S = np.zeros((d, dv), dtype=np.float64)  # running sum of φ(k_j) v_jᵀ
        z = np.zeros(d, dtype=np.float64)  # running sum of φ(k_j)
        for i in range(n):
            for a in range(d):
                ka = phiK[b, h, i, a]
                z[a] += ka
                for c in range(dv):
                    S[a, c] += ka * V[b, h, i, c]
            den = eps
            for a in range(d):
                den += phiQ[b, h, i, a] * z[a]
            for c in range(dv):
                num = 0.0
                for a in range(d):
                    num += phiQ[b, h, i, a] * S[a, c]
                out[b, h, i, c] = num / den


def _causal_linear_numpy(phiQ, phiK, V, eps, out, chunk: int = 64):
    B, H, n, d = phiQ.shape
    S = np.zeros((B, H, d, V.shape[3]), dtype=np.float64)  # state after previous chunks
    z = np.zeros((B, H, d), dtype=np.float64)
    for a in range(0, n, chunk):
        e = min(a + chunk, n)
        q, k, v = phiQ[:, :, a:e], phiK[:, :, a:e], V[:, :, a:e]
        A = np.tril(q @ np.swapaxes(k, -1, -2))  # (B, H, c, c) within the chunk, j <= i
        num = A @ v + q @ S  # (B, H, c, d_v)
        den = A.sum(axis=-1) + np.einsum("bhcd,bhd->bhc", q, z) + eps  # (B, H, c)
        out[:, :, a:e] = num / den[..., None]
        S += np.swapaxes(k, -1, -2) @ v
        z += k.sum(axis=2)


def causal_linear_attention(phiQ, phiK, V, *, eps: float = 1e-6, backend=None) -> np.ndarray:
    """Causal linear attention by prefix sums (Katharopoulos et al., 2020; Survey §7.2).

    .. math:: o_i = \\frac{\\phi(q_i)^T \\sum_{j\\le i}\\phi(k_j)v_j^T}
                         {\\phi(q_i)^T \\sum_{j\\le i}\\phi(k_j) + \\varepsilon}

    Parameters
    ----------
    phiQ, phiK : ndarray of shape (B, H, n, d)
        Feature-mapped queries and keys (non-negative, e.g. ``elu(x) + 1``).
    V : ndarray of shape (B, H, n, d_v)
    eps : float
        Added to the denominator (the reference implementation's 1e-6); finite, ``>= 0``.
    backend : {"numba", "numpy", None}

    Returns
    -------
    ndarray of shape (B, H, n, d_v)

    Raises
    ------
    ValueError
        phiQ, phiK or V contains NaN or inf (named in the message), or a shape/argument error.

    Notes
    -----
    The Numba kernel keeps the running state :math:`S_i` (``d × d_v``) and :math:`z_i`
    (``d``): time :math:`O(n d d_v)`, memory :math:`O(d d_v)` beyond the output. The NumPy
    reference processes chunks of 64 positions with BLAS (quadratic only inside a chunk).
    """
    phiQ, phiK, V = _check_qkv(phiQ, phiK, V, names=("phiQ", "phiK", "V"))
    if np.any(phiQ < 0) or np.any(phiK < 0):
        raise ValueError("phiQ and phiK must be non-negative feature maps (e.g. elu(x) + 1)")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) \
            or not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    out = np.empty(phiQ.shape[:3] + (V.shape[3],), dtype=phiQ.dtype)
    dispatch("causal_linear_attention", backend, _causal_linear_numba, _causal_linear_numpy,
             phiQ, phiK, V, float(eps), out)
    return out
