"""Survey §3.3.3 — k-means based quantisation: static k-means weight sharing (Muller & Indiveri
2015), trained k-means weight sharing with per-cluster gradient sums (Han et al. 2016), product
and residual quantisation (Gong et al. 2014), and their compression rates (Eqs. 49–51) with
exact bit counts of the stored arrays.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.nn import Tensor, custom_op
from refimpl.utils import (as_rng, check_array, check_choice, check_int, validate_arrays,
                           validate_scalars)

__all__ = [
    "lloyd_kmeans", "kmeans_plus_plus", "kmeans_quantize", "shared_weights", "cluster_grad_sums",
    "product_quantize", "pq_reconstruct", "residual_quantize", "rq_reconstruct",
    "index_bits", "kmeans_rate", "kmeans_stored_bits", "pq_rate", "pq_stored_bits",
    "rq_rate", "rq_rate_survey_printed", "rq_stored_bits",
]


def _check_k(k, n):
    k = check_int(k, "k", 1)
    if k > n:
        raise ValueError(f"k must be at most the number of weights/vectors ({n}), got {k}")
    return k


def kmeans_plus_plus(X, k: int, rng=None) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``(k, d)`` initial centroids.

    Each new centre is drawn with probability proportional to the squared distance to the
    nearest centre chosen so far.

    Part of Survey §3.3.3 (k-means weight sharing).

    References
    ----------
    .. [1] D. Arthur, S. Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
    """
    X = np.asarray(X, dtype=np.float64)
    rng = as_rng(rng)
    n = X.shape[0]
    C = np.empty((k, X.shape[1]))
    C[0] = X[rng.integers(n)]
    d2 = ((X - C[0]) ** 2).sum(1)  # (n,)
    for j in range(1, k):
        tot = d2.sum()
        if tot <= 0:  # fewer distinct points than k: repeat a point
            C[j] = X[rng.integers(n)]
        else:
            C[j] = X[min(int(np.searchsorted(np.cumsum(d2), rng.random() * tot, "right")),
                         n - 1)]
        d2 = np.minimum(d2, ((X - C[j]) ** 2).sum(1))
    return C


def _assign(X, C):
    # squared distances (n, k) via ‖x‖² − 2x·c + ‖c‖²
    D = (X * X).sum(1)[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]
    lab = D.argmin(1)
    return lab, np.maximum(D[np.arange(X.shape[0]), lab], 0.0)


@validate_scalars(max_iter=(1, None), tol=(0, None), n_init=(1, None))
def lloyd_kmeans(X, k: int, rng=None, n_init: int = 1, max_iter: int = 300, tol: float = 1e-10,
           init="k-means++") -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means with k-means++ seeding; the best of ``n_init`` runs.

    Parameters
    ----------
    X : ndarray of shape (n,) or (n, d)
        Points (a 1-d array is treated as ``n`` scalars).
    k : int, 1 <= k <= n
    rng : Generator or int, optional
    n_init : int
    max_iter : int
    tol : float
        Stop when the inertia improves by less than ``tol`` (relative).
    init : {"k-means++", "linear"} or ndarray of shape (k, d)
        ``"linear"`` spaces the centroids evenly between min and max (Han et al.'s choice for
        scalars; first coordinate only for ``d > 1``).

    Returns
    -------
    centroids : ndarray of shape (k, d) (``(k,)`` for 1-d input)
    labels : ndarray of int64, shape (n,)
    inertia : float
        ``Σ_i ‖x_i − c_{label_i}‖²``.

    Notes
    -----
    Survey §3.3.3 (static k-means weight sharing).

    References
    ----------
    .. [1] S. P. Lloyd, "Least Squares Quantization in PCM", IEEE Trans. Inf. Theory 28(2), 1982.
    .. [2] D. Arthur, S. Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
    """
    X0 = check_array(X, "X", ndim=(1, 2))
    flat = X0.ndim == 1
    X = X0.reshape(-1, 1).astype(np.float64) if flat else X0.astype(np.float64)
    k = _check_k(k, X.shape[0])
    n_init = check_int(n_init, "n_init", 1)
    rng = as_rng(rng)
    best = None
    for _ in range(n_init):
        if isinstance(init, str):
            check_choice(init, "init", ("k-means++", "linear"))
            if init == "linear":
                C = np.repeat(X.mean(0, keepdims=True), k, 0)
                C[:, 0] = np.linspace(X[:, 0].min(), X[:, 0].max(), k)
            else:
                C = kmeans_plus_plus(X, k, rng)
        else:
            C = check_array(init, "init", shape=(k, X.shape[1])).astype(np.float64).copy()
        prev = np.inf
        for _ in range(max_iter):
            lab, d2 = _assign(X, C)
            inertia = float(d2.sum())
            cnt = np.bincount(lab, minlength=k)  # (k,)
            sums = np.zeros_like(C)
            np.add.at(sums, lab, X)
            nonempty = cnt > 0
            C[nonempty] = sums[nonempty] / cnt[nonempty, None]
            if prev - inertia <= tol * max(inertia, 1e-300):
                break
            prev = inertia
        lab, d2 = _assign(X, C)
        inertia = float(d2.sum())
        if best is None or inertia < best[2]:
            best = (C.copy(), lab, inertia)
    C, lab, inertia = best
    return (C[:, 0] if flat else C), lab.astype(np.int64), inertia


@validate_scalars
def kmeans_quantize(W, k: int, rng=None, n_init: int = 1,
                    init="k-means++") -> tuple[np.ndarray, np.ndarray]:
    """Static k-means weight sharing (Muller & Indiveri 2015; Han et al. 2016), §3.3.3.

    Cluster the scalar weights into ``k`` centroids; every weight is replaced by its centroid.

    Returns
    -------
    codebook : ndarray of shape (k,)
    labels : ndarray of int64, shape of ``W``
        ``codebook[labels]`` is the quantised ``W``.
    """
    W = check_array(W, "W")
    C, lab, _ = lloyd_kmeans(W.ravel(), k, rng=rng, n_init=n_init, init=init)
    return C, lab.reshape(W.shape)


@validate_scalars
def cluster_grad_sums(dW, labels, k: int) -> np.ndarray:
    """Han et al.'s shared-weight gradient: ``∂L/∂c_j = Σ_{i: label_i = j} ∂L/∂W_i`` (§3.3.3).

    Parameters
    ----------
    dW : ndarray of any shape
        Gradient with respect to the shared weights ``W = codebook[labels]``.
    labels : ndarray of int of the shape of ``dW``
        Cluster indices in ``[0, k)``.
    k : int >= 1
        Number of clusters.

    Returns ndarray of shape (k,).
    """
    dW = check_array(dW, "dW")
    k = check_int(k, "k", 1)
    labels = check_array(labels, "labels", dtype_kind="iu")
    if labels.shape != dW.shape:
        raise ValueError(f"labels must have the shape of dW {dW.shape}, got {labels.shape}")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must be cluster indices in [0, {k - 1}] (k = {k}), got values "
                         f"in [{labels.min()}, {labels.max()}]")
    return np.bincount(labels.ravel(), weights=dW.ravel(), minlength=k)


def _shared_fwd(codebook, labels):
    return codebook[labels], (labels, codebook.shape[0])


def _shared_bwd(d, cache):
    labels, k = cache
    return np.bincount(labels.ravel(), weights=d.ravel(), minlength=k), None


_shared_op = custom_op(_shared_fwd, _shared_bwd, name="shared_weights")


@validate_scalars
@validate_arrays(labels={"dtype_kind": "iu"})
@validate_arrays(codebook={})
def shared_weights(codebook: Tensor, labels) -> Tensor:
    """Trained k-means weight sharing as a tape op: ``W = codebook[labels]``; the backward pass
    groups the gradients by cluster index and sums them (Han et al. 2016), so an optimiser step
    on ``codebook`` fine-tunes the shared centroids.

    Parameters
    ----------
    codebook : Tensor of shape (k,)
    labels : ndarray of int, any shape

    Returns
    -------
    Tensor of the shape of ``labels``

    Notes
    -----
    Survey §3.3.3 (trained k-means weight sharing).

    References
    ----------
    .. [1] Han, Mao, Dally, "Deep Compression", ICLR 2016.
    """
    return _shared_op(codebook, np.asarray(labels))


# ------------------------------------------------------------------ PQ and RQ (Gong et al.)
@validate_scalars
def product_quantize(W, s: int, k: int, rng=None, n_init: int = 1):
    """Product quantisation of a matrix (Gong et al. 2014), Survey §3.3.3.

    ``W = [W^1, ..., W^s]`` split by columns into ``s`` blocks of shape ``(m, n/s)``; the ``m``
    rows of each block (sub-vectors of length ``n/s``) are clustered into ``k`` centroids.

    Parameters
    ----------
    W : ndarray of shape (m, n), ``n`` divisible by ``s``
    s : int
        Number of sub-spaces.
    k : int, at most ``m``

    Returns
    -------
    codebooks : ndarray of shape (s, k, n/s)
    codes : ndarray of int64, shape (m, s)
    """
    W = check_array(W, "W", ndim=2)
    m, n = W.shape
    s = check_int(s, "s", 1)
    if n % s:
        raise ValueError(f"s must divide the number of columns n={n}, got s={s}")
    k = _check_k(k, m)
    rng = as_rng(rng)
    d = n // s
    books = np.empty((s, k, d))
    codes = np.empty((m, s), dtype=np.int64)
    for i in range(s):
        C, lab, _ = lloyd_kmeans(W[:, i * d:(i + 1) * d], k, rng=rng, n_init=n_init)
        books[i], codes[:, i] = C, lab
    return books, codes


@validate_scalars
@validate_arrays(codebooks={"ndim": 3}, codes={"ndim": 2, "dtype_kind": "iu"})
def pq_reconstruct(codebooks, codes) -> np.ndarray:
    """``Ŵ = [Ŵ^1, ..., Ŵ^s]`` with ``Ŵ^i_j = c^i_{code_{j,i}}``: shape (m, n).

    Survey §3.3.3 (product quantisation).

    References
    ----------
    .. [1] Y. Gong, L. Liu, M. Yang, L. Bourdev, "Compressing Deep Convolutional Networks using
       Vector Quantization", arXiv 1412.6115, 2014.
    """
    books = np.asarray(codebooks)
    codes = np.asarray(codes)
    s = books.shape[0]
    return np.concatenate([books[i][codes[:, i]] for i in range(s)], axis=1)  # (m, n)


@validate_scalars
def residual_quantize(W, t: int, k: int, rng=None, n_init: int = 1):
    """Residual quantisation of the rows of a matrix (Gong et al. 2014), Survey §3.3.3.

    Quantise the ``m`` row vectors into ``k`` centres, then the residuals ``w − c`` into ``k``
    centres, ``t`` times; ``ŵ = c^1_{j_1} + ... + c^t_{j_t}``.

    Returns
    -------
    codebooks : ndarray of shape (t, k, n)
    codes : ndarray of int64, shape (m, t)
    """
    W = check_array(W, "W", ndim=2)
    m, n = W.shape
    t = check_int(t, "t", 1)
    k = _check_k(k, m)
    rng = as_rng(rng)
    R = W.astype(np.float64).copy()
    books = np.empty((t, k, n))
    codes = np.empty((m, t), dtype=np.int64)
    for i in range(t):
        C, lab, _ = lloyd_kmeans(R, k, rng=rng, n_init=n_init)
        books[i], codes[:, i] = C, lab
        R = R - C[lab]
    return books, codes


@validate_scalars
@validate_arrays(codebooks={"ndim": 3}, codes={"ndim": 2, "dtype_kind": "iu"})
def rq_reconstruct(codebooks, codes) -> np.ndarray:
    """``Σ_i c^i_{code_{j,i}}``: shape (m, n).

    Survey §3.3.3 (residual quantisation).

    References
    ----------
    .. [1] Y. Gong, L. Liu, M. Yang, L. Bourdev, "Compressing Deep Convolutional Networks using
       Vector Quantization", arXiv 1412.6115, 2014.
    """
    books = np.asarray(codebooks)
    codes = np.asarray(codes)
    return sum(books[i][codes[:, i]] for i in range(books.shape[0]))


# ------------------------------------------------------------------ rates, Eqs. (49)–(51)
def index_bits(k: int) -> int:
    """Bits of one stored cluster index: ``⌈log2 k⌉`` (0 for ``k = 1``).

    Part of Survey §3.3.3 (exact storage of k-means based quantisation).
    """
    k = check_int(k, "k", 1)
    return int(math.ceil(math.log2(k))) if k > 1 else 0


@validate_scalars(n=(1, None), k=(1, None), b=(1, None))
def kmeans_rate(n: int, k: int, b: int = 32) -> float:
    """Survey Eq. (49): ``r = n b / (n log2 k + k b)`` (Han et al. 2016)."""
    return n * b / (n * math.log2(k) + k * b)


@validate_scalars(b=(1, None))
@validate_arrays(labels={"dtype_kind": "iu"}, codebook={"ndim": (1, 2)})
def kmeans_stored_bits(labels, codebook, b: int = 32) -> int:
    """Exact bits of a stored weight-sharing layer: every index at ``⌈log2 k⌉`` bits plus the
    ``k`` centroids at ``b`` bits.

    Part of Survey §3.3.3 (exact storage of k-means based quantisation).
    """
    k = int(np.asarray(codebook).shape[0])
    return int(np.asarray(labels).size) * index_bits(k) + k * b


@validate_scalars(m=(1, None), n=(1, None), s=(1, None), k=(1, None))
def pq_rate(m: int, n: int, s: int, k: int) -> float:
    """Survey Eq. (50): ``r = 32 m n / (32 k n + log2(k) m s)``."""
    return 32 * m * n / (32 * k * n + math.log2(k) * m * s)


@validate_scalars(b=(1, None))
@validate_arrays(codebooks={"ndim": 3}, codes={"ndim": 2, "dtype_kind": "iu"})
def pq_stored_bits(codebooks, codes, b: int = 32) -> int:
    """Exact bits of stored PQ: ``s`` codebooks of ``k × n/s`` floats plus ``m · s`` indices.

    Part of Survey §3.3.3 (exact storage of k-means based quantisation).
    """
    books = np.asarray(codebooks)
    return int(books.size) * b + int(np.asarray(codes).size) * index_bits(books.shape[1])


@validate_scalars(m=(1, None), n=(1, None), t=(1, None), k=(1, None), b=(1, None))
def rq_rate(m: int, n: int, t: int, k: int, b: int = 32) -> float:
    """Corrected RQ rate from the stored arrays: ``r = b m n / (b t k n + t m log2 k)``.

    The corrected form of Survey Eq. (51), §3.3.3 (the printed one is
    :func:`rq_rate_survey_printed`).

    References
    ----------
    .. [1] Y. Gong, L. Liu, M. Yang, L. Bourdev, "Compressing Deep Convolutional Networks using
       Vector Quantization", arXiv 1412.6115, 2014.
    """
    return b * m * n / (b * t * k * n + t * m * math.log2(k))


def rq_rate_survey_printed(m: int, n: int, t: int, k: int) -> float:
    """Survey Eq. (51) as printed: ``r = m / (t k + log2(k) t n)``."""
    return m / (t * k + math.log2(k) * t * n)


@validate_scalars(b=(1, None))
@validate_arrays(codebooks={"ndim": 3}, codes={"ndim": 2, "dtype_kind": "iu"})
def rq_stored_bits(codebooks, codes, b: int = 32) -> int:
    """Exact bits of stored RQ: ``t`` codebooks of ``k × n`` floats plus ``m · t`` indices.

    Part of Survey §3.3.3 (exact storage of k-means based quantisation).
    """
    books = np.asarray(codebooks)
    return int(books.size) * b + int(np.asarray(codes).size) * index_bits(books.shape[1])
