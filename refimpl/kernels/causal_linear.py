"""Causal linear attention by prefix sums, never forming the ``n × n`` matrix (Survey §7.2).

=====================================  =======================================  ==============
kernel                                 what                                     used by
=====================================  =======================================  ==============
:func:`causal_linear_attention`        causal linear attention by prefix sums,  linear Transf.
                                       O(n·d·d_v) time, O(d·d_v) state          [1]_ (§7.2)
:func:`causal_linear_attention_bwd`    its gradients by a forward and a         the tape op
                                       reverse prefix sum, O(n·d·d_v) time,     ``causal_linear
                                       O(d·d_v) state + O(n·d_v) scratch        _attention_t``
=====================================  =======================================  ==============

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
from refimpl.kernels.attention_common import _check_finite, _check_qkv

__all__ = ["causal_linear_attention", "causal_linear_attention_bwd"]


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


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) \
            or not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


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
    eps = _check_eps(eps)
    out = np.empty(phiQ.shape[:3] + (V.shape[3],), dtype=phiQ.dtype)
    dispatch("causal_linear_attention", backend, _causal_linear_numba, _causal_linear_numpy,
             phiQ, phiK, V, eps, out)
    return out


# ------------------------------------------------------------------------------ backward
# With S_i = Σ_{j<=i} φk_j v_jᵀ, z_i = Σ_{j<=i} φk_j, den_i = φq_i·z_i + ε, o_i = φq_iᵀS_i/den_i
# and G_i = ∂L/∂o_i:  g_i = G_i / den_i (d_v),  γ_i = -(G_i·o_i) / den_i (scalar),
#   ∂L/∂φq_i = S_i g_i + γ_i z_i                    (forward prefix sums S_i, z_i)
#   ∂L/∂φk_j = R_j v_j + r_j,  ∂L/∂v_j = R_jᵀ φk_j             (reverse prefix sums)
# where R_j = Σ_{i>=j} φq_i g_iᵀ (d × d_v) and r_j = Σ_{i>=j} γ_i φq_i (d).
@numba.njit(cache=True, parallel=True)
def _causal_linear_bwd_numba(dout, phiQ, phiK, V, eps, dQ, dK, dV):
    B, H, n, d = phiQ.shape
    dv = V.shape[3]
    for bh in numba.prange(B * H):
        b = bh // H
        h = bh % H
        S = np.zeros((d, dv), dtype=np.float64)
        z = np.zeros(d, dtype=np.float64)
        g = np.empty((n, dv), dtype=np.float64)  # G_i / den_i
        gam = np.empty(n, dtype=np.float64)  # -(G_i · o_i) / den_i
        num = np.empty(dv, dtype=np.float64)
        for i in range(n):  # forward sweep: S_i, z_i, o_i, g_i, γ_i, ∂φq_i
            for a in range(d):
                ka = phiK[b, h, i, a]
                z[a] += ka
                for c in range(dv):
                    S[a, c] += ka * V[b, h, i, c]
            den = eps
            for a in range(d):
                den += phiQ[b, h, i, a] * z[a]
            for c in range(dv):
                acc = 0.0
                for a in range(d):
                    acc += phiQ[b, h, i, a] * S[a, c]
                num[c] = acc
            go = 0.0
            for c in range(dv):
                go += dout[b, h, i, c] * num[c]
            gam[i] = -go / (den * den)  # o_i = num / den
            for c in range(dv):
                g[i, c] = dout[b, h, i, c] / den
            for a in range(d):
                acc = gam[i] * z[a]
                for c in range(dv):
                    acc += S[a, c] * g[i, c]
                dQ[b, h, i, a] = acc
        R = np.zeros((d, dv), dtype=np.float64)
        r = np.zeros(d, dtype=np.float64)
        for j in range(n - 1, -1, -1):  # reverse sweep: R_j, r_j, ∂φk_j, ∂v_j
            for a in range(d):
                qa = phiQ[b, h, j, a]
                r[a] += gam[j] * qa
                for c in range(dv):
                    R[a, c] += qa * g[j, c]
            for a in range(d):
                acc = r[a]
                for c in range(dv):
                    acc += R[a, c] * V[b, h, j, c]
                dK[b, h, j, a] = acc
            for c in range(dv):
                acc = 0.0
                for a in range(d):
                    acc += R[a, c] * phiK[b, h, j, a]
                dV[b, h, j, c] = acc


def _causal_linear_bwd_numpy(dout, phiQ, phiK, V, eps, dQ, dK, dV, chunk: int = 64):
    B, H, n, d = phiQ.shape
    dv = V.shape[3]
    T = np.swapaxes
    g = np.empty(dout.shape, dtype=np.float64)  # G_i / den_i
    gam = np.empty((B, H, n), dtype=np.float64)  # -(G_i · o_i) / den_i
    S = np.zeros((B, H, d, dv), dtype=np.float64)  # state after previous chunks
    z = np.zeros((B, H, d), dtype=np.float64)
    for a in range(0, n, chunk):  # forward sweep over chunks
        e = min(a + chunk, n)
        q, k, v, G = phiQ[:, :, a:e], phiK[:, :, a:e], V[:, :, a:e], dout[:, :, a:e]
        A = np.tril(q @ T(k, -1, -2))  # (B, H, c, c): φq_i·φk_j, j <= i
        den = A.sum(axis=-1) + np.einsum("bhcd,bhd->bhc", q, z) + eps  # (B, H, c)
        o = (A @ v + q @ S) / den[..., None]
        gc = G / den[..., None]
        gm = -np.einsum("bhcv,bhcv->bhc", G, o) / den
        g[:, :, a:e], gam[:, :, a:e] = gc, gm
        # M_ij = g_i·v_j + γ_i for j <= i:  ∂φq_i = Σ_{j<=i} M_ij φk_j + S g_i + γ_i z
        M = np.tril(gc @ T(v, -1, -2) + gm[..., None])
        dQ[:, :, a:e] = M @ k + gc @ T(S, -1, -2) + gm[..., None] * z[:, :, None, :]
        S += T(k, -1, -2) @ v
        z += k.sum(axis=2)
    R = np.zeros((B, H, d, dv), dtype=np.float64)  # Σ over positions after the chunk
    r = np.zeros((B, H, d), dtype=np.float64)
    for a in reversed(range(0, n, chunk)):  # reverse sweep over the same chunks
        e = min(a + chunk, n)
        q, k, v = phiQ[:, :, a:e], phiK[:, :, a:e], V[:, :, a:e]
        gc, gm = g[:, :, a:e], gam[:, :, a:e]
        A = np.tril(q @ T(k, -1, -2))
        M = np.tril(gc @ T(v, -1, -2) + gm[..., None])
        dK[:, :, a:e] = T(M, -1, -2) @ q + v @ T(R, -1, -2) + r[:, :, None, :]
        dV[:, :, a:e] = T(A, -1, -2) @ gc + k @ R
        R += T(q, -1, -2) @ gc
        r += np.einsum("bhc,bhcd->bhd", gm, q)


def causal_linear_attention_bwd(dout, phiQ, phiK, V, *, eps: float = 1e-6, backend=None):
    """Gradients of :func:`causal_linear_attention`: ``(dphiQ, dphiK, dV)`` from ``dout``.

    Katharopoulos et al. (2020) derive the causal gradients as prefix sums so that training
    needs constant memory per position (their §3.3.1); Survey §7.2. With
    :math:`S_i=\\sum_{j\\le i}\\phi(k_j)v_j^T`, :math:`z_i=\\sum_{j\\le i}\\phi(k_j)`,
    :math:`g_i = \\bar o_i / D_i` and :math:`\\gamma_i = -\\bar o_i\\cdot o_i / D_i`
    (:math:`D_i = \\phi(q_i)^Tz_i+\\varepsilon`, :math:`\\bar o_i = \\partial L/\\partial o_i`):

    .. math:: \\overline{\\phi(q_i)} = S_i g_i + \\gamma_i z_i, \\qquad
              \\overline{\\phi(k_j)} = R_j v_j + r_j, \\qquad \\bar v_j = R_j^T\\phi(k_j),

    with the reverse prefix sums :math:`R_j=\\sum_{i\\ge j}\\phi(q_i)g_i^T` and
    :math:`r_j=\\sum_{i\\ge j}\\gamma_i\\phi(q_i)`. The paper writes these for the
    numerator only; the denominator's terms (:math:`\\gamma`, :math:`z`, :math:`r`) are
    added here because the forward normalises.

    Parameters
    ----------
    dout : ndarray of shape (B, H, n, d_v)
        :math:`\\partial L/\\partial o`.
    phiQ, phiK : ndarray of shape (B, H, n, d)
        The forward's non-negative feature-mapped queries and keys.
    V : ndarray of shape (B, H, n, d_v)
    eps : float
        The forward's ``eps`` (finite, ``>= 0``).
    backend : {"numba", "numpy", None}

    Returns
    -------
    dphiQ, dphiK : ndarray of shape (B, H, n, d)
    dV : ndarray of shape (B, H, n, d_v)

    Raises
    ------
    ValueError
        Any input contains NaN or inf (named), phiQ/phiK negative, a shape mismatch, or eps
        not a finite number >= 0.
    TypeError
        A non-float array.

    Notes
    -----
    Two sweeps: the forward one recomputes :math:`S_i, z_i` (so nothing but the inputs is
    saved by the tape) and stores :math:`g, \\gamma` (``n (d_v + 1)`` floats), the reverse one
    accumulates :math:`R_j, r_j`. Time :math:`O(n d d_v)`; no ``n × n`` array (the NumPy
    twin forms ``64 × 64`` blocks inside a chunk, as its forward does). The Numba kernel keeps
    the states in float64.
    """
    phiQ, phiK, V = _check_qkv(phiQ, phiK, V, names=("phiQ", "phiK", "V"))
    if np.any(phiQ < 0) or np.any(phiK < 0):
        raise ValueError("phiQ and phiK must be non-negative feature maps (e.g. elu(x) + 1)")
    eps = _check_eps(eps)
    shp = V.shape
    if not isinstance(dout, np.ndarray) or dout.shape != shp:
        raise ValueError(f"dout must be an ndarray of shape {shp} (that of V), got "
                         f"{getattr(dout, 'shape', type(dout).__name__)}")
    if dout.dtype.kind not in "fiu":
        raise TypeError(f"dout must be a real array, got dtype {dout.dtype}")
    dout = np.ascontiguousarray(dout, dtype=phiQ.dtype)
    _check_finite(dout, "dout")
    dQ, dK, dV = np.empty_like(phiQ), np.empty_like(phiK), np.empty_like(V)
    dispatch("causal_linear_attention_bwd", backend, _causal_linear_bwd_numba,
             _causal_linear_bwd_numpy, dout, phiQ, phiK, V, eps, dQ, dK, dV)
    return dQ, dK, dV
