r"""HashedNets kernels (Survey §5.2; Chen et al. 2015): xxHash32 of an index pair and products
with a hashed ("virtual") matrix that is never materialised. Each Numba kernel sits beside its
NumPy reference with the same signature.

The virtual matrix ``V`` of shape ``(out_features, in_features)`` has entries

.. math:: V_{ij} = \xi(i, j)\, w_{h(i, j)}, \qquad h(i,j) = \mathrm{xxh32}(i, j; s_h) \bmod K,
   \qquad \xi(i, j) = 1 - 2\,(\mathrm{xxh32}(i, j; s_\xi) \,\&\, 1)

with two independent seeds ``s_h`` (bucket) and ``s_ξ`` (sign). ``xxh32(i, j; s)`` is xxHash32
(Collet) with seed ``s`` of the 8-byte message ``i, j`` as two little-endian uint32 words,
bit-identical to ``xxhash.xxh32_intdigest(struct.pack("<II", i, j), seed=s)``. It is a fixed
function of its inputs (never Python's salted ``hash``), so a seed gives the same matrix in
every process and on every machine.

The NumPy references work one row of ``V`` at a time (``O(in_features)`` extra memory); the
Numba kernels hash each ``(i, j)`` on the fly (``O(1)`` extra memory). All arithmetic is on
uint64 masked to 32 bits, so both backends give identical hashes.

References
----------
.. [1] W. Chen, J. T. Wilson, S. Tyree, K. Q. Weinberger, Y. Chen, "Compressing neural networks
   with the hashing trick", ICML 2015.
.. [2] Y. Collet, "xxHash: extremely fast non-cryptographic hash algorithm", XXH32 specification,
   https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md
"""

from __future__ import annotations

import numba
import numpy as np

from refimpl.kernels._backend import dispatch
from refimpl.utils import check_array, check_int

__all__ = ["xxh32_pair", "xxh32_pair_numpy", "xxh32_pair_numba", "hashed_dense",
           "hashed_dense_numpy", "hashed_dense_numba", "hashed_matmul", "hashed_matmul_numpy",
           "hashed_matmul_numba", "hashed_matmul_backward", "hashed_matmul_backward_numpy",
           "hashed_matmul_backward_numba"]

_MASK = np.uint64(0xFFFFFFFF)
_P2 = np.uint64(2246822519)
_P3 = np.uint64(3266489917)
_P4 = np.uint64(668265263)
_P5 = np.uint64(374761393)
_U32 = 2**32 - 1


# ------------------------------------------------------------------ xxHash32 of (i, j)
def _rotl_np(x, r):
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _MASK


def xxh32_pair_numpy(i, j, seed: int) -> np.ndarray:
    """xxHash32 of the 8-byte message (uint32 LE ``i``, uint32 LE ``j``) with ``seed``.

    Parameters
    ----------
    i, j : ndarray of non-negative ints (broadcastable), each < 2**32
    seed : int in [0, 2**32)

    Returns
    -------
    ndarray of uint32, the broadcast shape of ``i`` and ``j``
    """
    i = np.asarray(i).astype(np.uint64)
    j = np.asarray(j).astype(np.uint64)
    # input length < 16: acc = seed + PRIME5 + len (spec §"Step 1", "Step 4")
    h = (np.uint64(seed) + _P5 + np.uint64(8)) & _MASK
    for word in (i, j):  # two 4-byte lanes (spec "Step 5": remaining input)
        h = (h + word * _P3) & _MASK
        h = (_rotl_np(h, 17) * _P4) & _MASK
    # avalanche (spec "Step 6")
    h = h ^ (h >> np.uint64(15))
    h = (h * _P2) & _MASK
    h = h ^ (h >> np.uint64(13))
    h = (h * _P3) & _MASK
    h = h ^ (h >> np.uint64(16))
    return h.astype(np.uint32)


@numba.njit(inline="always")
def _xxh32_pair_scalar(i, j, seed):
    M = np.uint64(0xFFFFFFFF)
    h = (np.uint64(seed) + np.uint64(374761393) + np.uint64(8)) & M
    h = (h + np.uint64(i) * np.uint64(3266489917)) & M
    h = ((((h << np.uint64(17)) | (h >> np.uint64(15))) & M) * np.uint64(668265263)) & M
    h = (h + np.uint64(j) * np.uint64(3266489917)) & M
    h = ((((h << np.uint64(17)) | (h >> np.uint64(15))) & M) * np.uint64(668265263)) & M
    h = h ^ (h >> np.uint64(15))
    h = (h * np.uint64(2246822519)) & M
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(3266489917)) & M
    h = h ^ (h >> np.uint64(16))
    return h


@numba.njit(cache=True)
def _xxh32_flat(i, j, seed, out):
    for t in range(out.size):
        out[t] = np.uint32(_xxh32_pair_scalar(i[t], j[t], seed))


def xxh32_pair_numba(i, j, seed: int) -> np.ndarray:
    """Numba twin of :func:`xxh32_pair_numpy` (same signature and result)."""
    i, j = np.broadcast_arrays(np.asarray(i).astype(np.uint64), np.asarray(j).astype(np.uint64))
    out = np.empty(i.shape, np.uint32)
    _xxh32_flat(np.ascontiguousarray(i).ravel(), np.ascontiguousarray(j).ravel(),
                np.uint64(seed), out.reshape(-1))
    return out


def _check_index(x, name):
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")
    if x.size and (x.min() < 0 or x.max() > _U32):
        raise ValueError(f"{name} must hold integers in [0, 2**32), got min {x.min()}, "
                         f"max {x.max()}")
    return x


def xxh32_pair(i, j, seed: int, *, backend: str | None = None) -> np.ndarray:
    """xxHash32 of the index pair ``(i, j)`` (two little-endian uint32 words) with ``seed``.

    Bit-identical to ``xxhash.xxh32_intdigest(struct.pack("<II", i, j), seed=seed)``.

    Parameters
    ----------
    i, j : array_like of ints in [0, 2**32), broadcastable
    seed : int in [0, 2**32)
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of uint32, the broadcast shape
    """
    i, j = _check_index(i, "i"), _check_index(j, "j")
    seed = check_int(seed, "seed", 0, _U32)
    return dispatch("xxh32_pair", backend, xxh32_pair_numba, xxh32_pair_numpy, i, j, seed)


# ------------------------------------------------------------------ the virtual matrix
def _row_numpy(i, n_in, w, seed_bucket, seed_sign):
    """Row ``i`` of V: ξ(i, j) w[h(i, j)] for j = 0..n_in-1, shape (n_in,)."""
    j = np.arange(n_in, dtype=np.uint64)
    k = xxh32_pair_numpy(i, j, seed_bucket).astype(np.int64) % w.size
    sign = 1.0 - 2.0 * (xxh32_pair_numpy(i, j, seed_sign) & 1).astype(w.dtype)
    return sign * w[k]


def hashed_dense_numpy(w, out_features, in_features, seed_bucket, seed_sign):
    """Materialise V, shape ``(out_features, in_features)`` (for checks and small layers)."""
    V = np.empty((out_features, in_features), w.dtype)
    for i in range(out_features):
        V[i] = _row_numpy(i, in_features, w, seed_bucket, seed_sign)
    return V


@numba.njit(cache=True)
def _hashed_dense_kernel(w, V, seed_bucket, seed_sign):
    K = np.uint64(w.size)
    for i in range(V.shape[0]):
        for j in range(V.shape[1]):
            k = _xxh32_pair_scalar(i, j, seed_bucket) % K
            s = 1.0 - 2.0 * (_xxh32_pair_scalar(i, j, seed_sign) & np.uint64(1))
            V[i, j] = s * w[k]


def hashed_dense_numba(w, out_features, in_features, seed_bucket, seed_sign):
    """Numba twin of :func:`hashed_dense_numpy`."""
    V = np.empty((out_features, in_features), w.dtype)
    _hashed_dense_kernel(w, V, np.uint64(seed_bucket), np.uint64(seed_sign))
    return V


def _check_common(w, seed_bucket, seed_sign):
    w = check_array(w, "w", ndim=1, dtype_kind="f")
    return (w, check_int(seed_bucket, "seed_bucket", 0, _U32),
            check_int(seed_sign, "seed_sign", 0, _U32))


def hashed_dense(w, out_features: int, in_features: int, seed_bucket: int, seed_sign: int, *,
                 backend: str | None = None) -> np.ndarray:
    r"""The virtual matrix :math:`V_{ij} = \xi(i,j) w_{h(i,j)}` of HashedNets (Survey §5.2).

    Parameters
    ----------
    w : ndarray of shape (K,), float
        The K real parameters (the buckets).
    out_features, in_features : int ≥ 1
    seed_bucket, seed_sign : int in [0, 2**32)
        Seeds of the bucket hash ``h`` and of the sign hash ``ξ``.
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of shape (out_features, in_features), the dtype of ``w``
    """
    w, sb, ss = _check_common(w, seed_bucket, seed_sign)
    m = check_int(out_features, "out_features", 1)
    n = check_int(in_features, "in_features", 1)
    return dispatch("hashed_dense", backend, hashed_dense_numba, hashed_dense_numpy, w, m, n,
                    sb, ss)


# ------------------------------------------------------------------ Y = X V^T without V
def hashed_matmul_numpy(X, w, out_features, seed_bucket, seed_sign):
    """``X @ V.T`` one row of V at a time; X (B, in_features) -> (B, out_features)."""
    Y = np.empty((X.shape[0], out_features), np.result_type(X, w))
    for i in range(out_features):
        Y[:, i] = X @ _row_numpy(i, X.shape[1], w, seed_bucket, seed_sign)
    return Y


@numba.njit(cache=True)
def _hashed_matmul_kernel(Xt, w, Yt, seed_bucket, seed_sign):
    # Xt (n, B) and Yt (m, B): the batch is the contiguous axis, so the inner loop streams one
    # row of each (with X (B, n) the stride between batch rows is a power of two for
    # power-of-two widths and the B rows alias in the L1 sets: 45x slower at n = 512)
    K = np.uint64(w.size)
    n, B = Xt.shape
    for i in range(Yt.shape[0]):
        acc = Yt[i]
        for b in range(B):
            acc[b] = 0.0
        for j in range(n):
            k = _xxh32_pair_scalar(i, j, seed_bucket) % K
            v = (1.0 - 2.0 * (_xxh32_pair_scalar(i, j, seed_sign) & np.uint64(1))) * w[k]
            xj = Xt[j]
            for b in range(B):
                acc[b] += v * xj[b]


def hashed_matmul_numba(X, w, out_features, seed_bucket, seed_sign):
    """Numba twin of :func:`hashed_matmul_numpy`: each V_ij hashed on the fly."""
    dt = np.result_type(X, w)
    Yt = np.empty((out_features, X.shape[0]), dt)                 # (m, B)
    _hashed_matmul_kernel(np.ascontiguousarray(X.T, dt), w.astype(dt), Yt,
                          np.uint64(seed_bucket), np.uint64(seed_sign))
    return np.ascontiguousarray(Yt.T)                             # (B, m)


def hashed_matmul(X, w, out_features: int, seed_bucket: int, seed_sign: int, *,
                  backend: str | None = None) -> np.ndarray:
    r"""``Y = X V^T`` with the hashed matrix V of HashedNets, never materialising V (Survey §5.2).

    Parameters
    ----------
    X : ndarray of shape (batch, in_features), float
    w : ndarray of shape (K,), float
    out_features : int ≥ 1
    seed_bucket, seed_sign : int in [0, 2**32)
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of shape (batch, out_features)
    """
    w, sb, ss = _check_common(w, seed_bucket, seed_sign)
    X = check_array(X, "X", ndim=2, dtype_kind="f", allow_empty=True)
    m = check_int(out_features, "out_features", 1)
    return dispatch("hashed_matmul", backend, hashed_matmul_numba, hashed_matmul_numpy, X, w, m,
                    sb, ss)


def hashed_matmul_backward_numpy(dY, X, w, seed_bucket, seed_sign):
    """Gradients of ``Y = X V^T``: ``dX = dY V`` and ``dw[k] = Σ_{h(i,j)=k} ξ(i,j) (dYᵀX)_ij``."""
    n = X.shape[1]
    dt = np.result_type(dY, X, w)
    dX = np.zeros(X.shape, dt)
    dw = np.zeros(w.shape, dt)
    j = np.arange(n, dtype=np.uint64)
    for i in range(dY.shape[1]):
        k = xxh32_pair_numpy(i, j, seed_bucket).astype(np.int64) % w.size
        sign = 1.0 - 2.0 * (xxh32_pair_numpy(i, j, seed_sign) & 1).astype(dt)
        dX += np.outer(dY[:, i], sign * w[k])              # (B, n): dY[:, i] V[i, :]
        dw += np.bincount(k, weights=sign * (dY[:, i] @ X), minlength=w.size)  # dV[i, :] -> w
    return dX, dw


@numba.njit(cache=True)
def _hashed_matmul_bwd_kernel(dYt, Xt, w, dXt, dw, seed_bucket, seed_sign):
    # transposed operands (batch contiguous), as in _hashed_matmul_kernel
    K = np.uint64(w.size)
    n, B = Xt.shape
    for i in range(dYt.shape[0]):
        dyi = dYt[i]
        for j in range(n):
            k = _xxh32_pair_scalar(i, j, seed_bucket) % K
            s = 1.0 - 2.0 * (_xxh32_pair_scalar(i, j, seed_sign) & np.uint64(1))
            v = s * w[k]
            xj = Xt[j]
            dxj = dXt[j]
            g = 0.0
            for b in range(B):
                dxj[b] += dyi[b] * v
                g += dyi[b] * xj[b]
            dw[k] += s * g


def hashed_matmul_backward_numba(dY, X, w, seed_bucket, seed_sign):
    """Numba twin of :func:`hashed_matmul_backward_numpy`."""
    dt = np.result_type(dY, X, w)
    dXt = np.zeros((X.shape[1], X.shape[0]), dt)                 # (n, B)
    dw = np.zeros(w.shape, dt)
    _hashed_matmul_bwd_kernel(np.ascontiguousarray(dY.T, dt), np.ascontiguousarray(X.T, dt),
                              w.astype(dt), dXt, dw, np.uint64(seed_bucket), np.uint64(seed_sign))
    return np.ascontiguousarray(dXt.T), dw


def hashed_matmul_backward(dY, X, w, seed_bucket: int, seed_sign: int, *,
                           backend: str | None = None):
    r"""Backward of :func:`hashed_matmul` without materialising V (Survey §5.2).

    .. math:: \frac{\partial L}{\partial w_k} = \sum_{i,j:\,h(i,j)=k} \xi(i,j)
       \frac{\partial L}{\partial V_{ij}}, \qquad \frac{\partial L}{\partial V} = dY^\top X

    (Chen et al. 2015, Eq. 9.)

    Parameters
    ----------
    dY : ndarray of shape (batch, out_features)
    X : ndarray of shape (batch, in_features)
    w : ndarray of shape (K,)
    seed_bucket, seed_sign : int in [0, 2**32)
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    dX : ndarray of shape (batch, in_features)
    dw : ndarray of shape (K,)
    """
    w, sb, ss = _check_common(w, seed_bucket, seed_sign)
    X = check_array(X, "X", ndim=2, dtype_kind="f", allow_empty=True)
    dY = check_array(dY, "dY", ndim=2, dtype_kind="f", allow_empty=True)
    if dY.shape[0] != X.shape[0]:
        raise ValueError(f"dY must have batch size {X.shape[0]} (that of X), got {dY.shape[0]}")
    return dispatch("hashed_matmul_backward", backend, hashed_matmul_backward_numba,
                    hashed_matmul_backward_numpy, dY, X, w, sb, ss)
