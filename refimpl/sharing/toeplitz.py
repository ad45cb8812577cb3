r"""Survey §5.2, Toeplitz-like matrices (Lu, Sindhwani & Sainath 2016; Sindhwani, Sainath &
Kumar 2015): an ``n × n`` weight of displacement rank ``r``, stored as ``2nr`` numbers and
multiplied in ``O(r n log n)`` through the FFT.

With the unit ``f``-circulant shift :math:`Z_f` (ones on the sub-diagonal, ``f`` in the top-right
corner) and :math:`Z_f(v) = [v, Z_f v, \dots, Z_f^{n-1} v]` the ``f``-circulant matrix with first
column ``v``, a matrix ``M`` is Toeplitz-like of displacement rank ``r`` when

.. math:: Z_1 M - M Z_{-1} = G H^\top, \qquad G, H \in \mathbb{R}^{n \times r},

and then (Sindhwani et al. 2015, Theorem 3.2)

.. math:: M = \tfrac12 \sum_{k=1}^{r} Z_1(g_k)\, Z_{-1}(J h_k),

with ``J`` the reversal. :math:`Z_1(g)` is a circulant (diagonalised by the DFT) and
:math:`Z_{-1}(v) = D^{-1} Z_1(Dv) D` with :math:`D = \mathrm{diag}(\eta^k)`,
:math:`\eta = e^{i\pi/n}`, so each term costs two FFT products. Every Toeplitz matrix has
displacement rank at most 2 under this operator pair (:func:`toeplitz_generators`); ``r = 1``
gives a circulant times a skew-circulant.

References
----------
.. [1] Z. Lu, V. Sindhwani, T. N. Sainath, "Learning compact recurrent neural networks",
   ICASSP 2016.
.. [2] V. Sindhwani, T. N. Sainath, S. Kumar, "Structured transforms for small-footprint deep
   learning", NeurIPS 2015, §3.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, apply_op, as_tensor
from refimpl.utils import as_rng, check_array, check_bool, check_int

__all__ = ["toeplitz_like_matrix", "toeplitz_like_matvec", "toeplitz_generators",
           "displacement", "f_circulant", "ToeplitzLikeLinear"]


def _check_gh(G, H):
    G = check_array(G, "G", ndim=2)
    H = check_array(H, "H", ndim=2)
    if G.shape != H.shape:
        raise ValueError(f"G and H must both have shape (n, r), got {G.shape} and {H.shape}")
    return G, H


def f_circulant(v, f: float) -> np.ndarray:
    """The ``f``-circulant matrix :math:`Z_f(v)` with first column ``v``, shape (n, n).

    ``Z_f(v)[i, j] = v[i - j]`` for ``i ≥ j`` and ``f · v[n + i - j]`` above the diagonal.
    """
    v = check_array(v, "v", ndim=1)
    if f not in (1, -1, 1.0, -1.0):
        raise ValueError(f"f must be 1 or -1, got {f!r}")
    n = v.size
    i, j = np.indices((n, n))
    return np.where(i >= j, 1.0, float(f)) * v[(i - j) % n]


def displacement(M) -> np.ndarray:
    r"""The displacement :math:`Z_1 M - M Z_{-1}` of an ``(n, n)`` matrix (its rank is the
    displacement rank)."""
    M = check_array(M, "M", ndim=2)
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be square, got {M.shape}")
    Z1M = np.roll(M, 1, axis=0)                      # (Z_1 M)[i] = M[i-1], row 0 = M[n-1]
    MZm1 = np.roll(M, -1, axis=1)                    # (M Z_{-1})[:, j] = M[:, j+1] ...
    MZm1[:, -1] = -M[:, 0]                           # ... and the last column = -M[:, 0]
    return Z1M - MZm1


def toeplitz_like_matrix(G, H) -> np.ndarray:
    r"""Dense :math:`M = \frac12\sum_k Z_1(g_k) Z_{-1}(J h_k)` (Survey §5.2), shape (n, n).

    Parameters
    ----------
    G, H : ndarray of shape (n, r)
        The ``2nr`` stored numbers; ``Z_1 M − M Z_{−1} = G Hᵀ``.
    """
    G, H = _check_gh(G, H)
    n, r = G.shape
    M = np.zeros((n, n))
    for k in range(r):
        M += f_circulant(G[:, k], 1) @ f_circulant(H[::-1, k], -1)
    return 0.5 * M


def _circ_mul(v, X):
    """Z_1(v) applied to the rows of X: circular convolution, X (..., n) -> (..., n)."""
    n = v.shape[-1]
    return np.fft.irfft(np.fft.rfft(v) * np.fft.rfft(X, axis=-1), n=n, axis=-1)


def _skew_mul(v, X):
    """Z_{-1}(v) applied to the rows of X: D^{-1} Z_1(Dv) D, D = diag(e^{iπk/n})."""
    n = v.shape[-1]
    d = np.exp(1j * np.pi * np.arange(n) / n)        # (n,)
    y = np.fft.ifft(np.fft.fft(d * v) * np.fft.fft(d * X, axis=-1), axis=-1)
    return (y / d).real


def toeplitz_like_matvec(G, H, X) -> np.ndarray:
    r"""``M x`` for every row ``x`` of ``X`` through the FFT, never forming M (Survey §5.2).

    :math:`M x = \frac12 \sum_k Z_1(g_k)\,(Z_{-1}(J h_k)\, x)`: two FFT products per term,
    ``O(r n log n)`` per row.

    Parameters
    ----------
    G, H : ndarray of shape (n, r)
    X : ndarray of shape (..., n)

    Returns
    -------
    ndarray of shape (..., n), equal to ``X @ M.T``.
    """
    G, H = _check_gh(G, H)
    X = check_array(X, "X")
    n, r = G.shape
    if X.ndim < 1 or X.shape[-1] != n:
        raise ValueError(f"X must have last dimension n={n}, got shape {X.shape}")
    Y = np.zeros(X.shape)
    for k in range(r):
        Y += _circ_mul(G[:, k], _skew_mul(H[::-1, k], X))   # (..., n)
    return 0.5 * Y


def toeplitz_generators(c, r) -> tuple[np.ndarray, np.ndarray]:
    r"""Generators ``(G, H)`` of shape (n, 2) of the Toeplitz matrix with first column ``c`` and
    first row ``r`` (``r[0]`` ignored, as ``scipy.linalg.toeplitz``).

    The displacement of a Toeplitz ``T`` is zero except in its first row and last column:
    :math:`Z_1 T - T Z_{-1} = e_0 u^\top + v e_{n-1}^\top` with
    ``u_j = T[n-1, j] − T[0, j+1]`` (``j < n−1``), ``u_{n−1} = T[n-1, n-1] + T[0, 0]``,
    ``v_i = T[i-1, n-1] + T[i, 0]`` (``i ≥ 1``), ``v_0 = 0``; so ``G = [e_0, v]``,
    ``H = [u, e_{n−1}]``.
    """
    c = check_array(c, "c", ndim=1)
    r = check_array(r, "r", ndim=1)
    if c.size != r.size:
        raise ValueError(f"c and r must have one length (square Toeplitz), got {c.size} and "
                         f"{r.size}")
    n = c.size
    row = np.concatenate([[c[0]], r[1:]])             # T[0, j]
    last_row = c[::-1]                                # T[n-1, j] = c[n-1-j]
    last_col = np.concatenate([r[:0:-1], [c[0]]])     # T[i, n-1] = r[n-1-i], T[n-1, n-1] = c[0]
    u = np.empty(n)
    u[:-1] = last_row[:-1] - row[1:]
    u[-1] = last_row[-1] + row[0]
    v = np.zeros(n)
    v[1:] = last_col[:-1] + c[1:]
    G = np.zeros((n, 2))
    H = np.zeros((n, 2))
    G[0, 0], G[:, 1] = 1.0, v
    H[:, 0], H[-1, 1] = u, 1.0
    return G, H


def _circ_T(v):
    """First column of Z_1(v)ᵀ: (v_0, v_{n-1}, ..., v_1) (works on (..., n))."""
    return np.roll(v[..., ::-1], 1, axis=-1)


def _skew_T(v):
    """First column of Z_{-1}(v)ᵀ: (v_0, −v_{n-1}, ..., −v_1) (works on (..., n))."""
    t = -np.roll(v[..., ::-1], 1, axis=-1)
    t[..., 0] = v[..., 0]
    return t


def toeplitz_like_forward(G, H, X):
    """``Y = X Mᵀ`` through the FFT, with the cache for :func:`toeplitz_like_backward`.

    G, H (n, r); X (B, n) -> Y (B, n).
    """
    n, r = G.shape
    U = [_skew_mul(H[::-1, k], X) for k in range(r)]        # u_k = Z_{-1}(J h_k) x, (B, n)
    Y = 0.5 * sum(_circ_mul(G[:, k], U[k]) for k in range(r))
    return Y, (G, H, X, U)


def toeplitz_like_backward(dY, cache):
    r"""Gradients of :func:`toeplitz_like_forward`, all through the FFT.

    With :math:`u_k = Z_{-1}(Jh_k)x` and :math:`y = \frac12\sum_k Z_1(g_k)u_k`:
    circular and negacyclic convolutions commute (:math:`Z_1(g)u = Z_1(u)g`,
    :math:`Z_{-1}(v)x = Z_{-1}(x)v`) and their transposes are the same kinds of matrices, so
    ``dg_k = ½ Σ_b Z_1(u_kb)ᵀ dy_b``, ``du_k = ½ Z_1(g_k)ᵀ dy``,
    ``dx = Σ_k Z_{-1}(Jh_k)ᵀ du_k``, ``d(Jh_k) = Σ_b Z_{-1}(x_b)ᵀ du_kb``.

    Returns
    -------
    dG, dH : ndarray of shape (n, r)
    dX : ndarray of shape (B, n)
    """
    G, H, X, U = cache
    n, r = G.shape
    dG, dH, dX = np.zeros_like(G), np.zeros_like(H), np.zeros(X.shape)
    for k in range(r):
        dG[:, k] = 0.5 * _circ_mul(_circ_T(U[k]), dY).sum(0)      # rows: Z_1(u_b)ᵀ dy_b
        dU = 0.5 * _circ_mul(_circ_T(G[:, k]), dY)                # (B, n)
        dX += _skew_mul(_skew_T(H[::-1, k]), dU)
        dv = _skew_mul(_skew_T(X), dU).sum(0)                     # d(J h_k)
        dH[:, k] = dv[::-1]
    return dG, dH, dX


class ToeplitzLikeLinear(Module):
    r"""``y = M x + b`` with a Toeplitz-like ``M`` of displacement rank ``rank`` (Survey §5.2).

    Stores ``G, H`` (``2·n·rank`` numbers) and the bias; forward and backward run through the
    FFT (:func:`toeplitz_like_forward` / :func:`toeplitz_like_backward`), ``O(rank·n log n)``
    per row, never forming M.

    Parameters
    ----------
    n : int ≥ 1
        Input and output size.
    rank : int ≥ 1
    bias : bool
    rng : Generator or int, optional
        ``G, H ~ N(0, 1/n)`` (each term of M then has entries of size ``O(1/√n)``).

    Attributes
    ----------
    G, H : Parameter of shape (n, rank)
    b : Parameter of shape (n,) or None
    """

    def __init__(self, n: int, rank: int, *, bias: bool = True, rng=None):
        self.n = check_int(n, "n", 1)
        self.rank = check_int(rank, "rank", 1)
        bias = check_bool(bias, "bias")
        rng = as_rng(rng)
        self.G = Parameter(rng.standard_normal((self.n, self.rank)) / np.sqrt(self.n))
        self.H = Parameter(rng.standard_normal((self.n, self.rank)) / np.sqrt(self.n))
        self.b = Parameter(np.zeros(self.n)) if bias else None

    def matrix(self) -> np.ndarray:
        """M materialised, shape (n, n) (for checks)."""
        return toeplitz_like_matrix(self.G.data, self.H.data)

    def forward(self, x) -> Tensor:
        """x of shape (..., n) -> (..., n)."""
        x = as_tensor(x)
        if x.ndim < 1 or x.shape[-1] != self.n:
            raise ValueError(f"x must have last dimension n={self.n}, got shape {x.shape}")
        lead = x.shape[:-1]
        y = apply_op(toeplitz_like_forward, toeplitz_like_backward, self.G, self.H,
                     x.reshape(-1, self.n), name="toeplitz_like")      # (B, n)
        if self.b is not None:
            y = y + self.b
        return y.reshape(*lead, self.n)
