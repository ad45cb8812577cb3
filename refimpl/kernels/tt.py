"""TT-matrix kernels (Survey §6.3): multiply by a TT-matrix and look up TT-embedding rows without
ever forming the dense matrix. Each Numba kernel sits beside its NumPy reference.

A TT-matrix ``W`` of shape ``(M, N)`` with ``M = ∏ m_k``, ``N = ∏ n_k`` is stored as ``d`` cores
``G_k`` of shape ``(r_{k-1}, m_k, n_k, r_k)``, ``r_0 = r_d = 1``:

.. math::
    W[(i_1..i_d), (j_1..j_d)] = G_1[:, i_1, j_1, :] G_2[:, i_2, j_2, :] \\cdots G_d[:, i_d, j_d, :]

(Oseledets 2011, §4; Novikov et al. 2015, Eq. 3), with row-major multi-indices (``i_1`` slowest),
matching ``W.reshape(m_1, ..., m_d, n_1, ..., n_d)``.

``Y = X @ W.T`` for ``X`` of shape ``(B, N)`` is computed right to left: the running tensor has
shape ``(B, n_1..n_k, r_k, m_{k+1}..m_d)`` and step ``k`` contracts ``n_k`` and ``r_k`` with
``G_k``, costing ``B · (∏_{j<k} n_j) · r_{k-1} m_k n_k r_k · (∏_{j>k} m_j)`` multiply-adds.

The public functions (both backends) refuse NaN/inf in ``X`` or a core with a ``ValueError``
naming it (``X``, ``cores[k]``), like the :mod:`refimpl.decomposition` wrappers.
"""

from __future__ import annotations

import numba
import numpy as np

from refimpl.kernels._backend import dispatch

__all__ = ["tt_matmul", "tt_matmul_numpy", "tt_matmul_numba", "tt_embedding_lookup",
           "tt_embedding_lookup_numpy", "tt_embedding_lookup_numba", "validate_tt_matrix_cores"]


def validate_tt_matrix_cores(cores, name: str = "cores"):
    """Check TT-matrix cores: 4-d arrays, matching ranks, boundary ranks 1; return (m, n, ranks)."""
    if not isinstance(cores, (list, tuple)) or len(cores) == 0:
        raise ValueError(f"{name} must be a non-empty list of 4-d arrays")
    ms, ns, ranks = [], [], [1]
    for k, G in enumerate(cores):
        G = np.asarray(G)
        if G.ndim != 4:
            raise ValueError(f"{name}[{k}] must have shape (r_prev, m, n, r_next), got {G.shape}")
        if G.shape[0] != ranks[-1]:
            raise ValueError(f"{name}[{k}] has left rank {G.shape[0]}, expected {ranks[-1]} "
                             f"(the right rank of {name}[{k - 1}])" if k else
                             f"{name}[0] must have left rank 1, got {G.shape[0]}")
        if G.size == 0:
            raise ValueError(f"{name}[{k}] must not be empty, got shape {G.shape}")
        ms.append(G.shape[1])
        ns.append(G.shape[2])
        ranks.append(G.shape[3])
    if ranks[-1] != 1:
        raise ValueError(f"{name}[-1] must have right rank 1, got {ranks[-1]}")
    return tuple(ms), tuple(ns), tuple(ranks)


def _check_real_finite(a: np.ndarray, name: str) -> None:
    """The kernels' NaN policy: public entry points refuse non-finite (and non-numeric or
    complex) inputs with an error naming the argument, in both backends; one O(size) pass."""
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")


def _check_cores_finite(cores) -> None:
    for k, G in enumerate(cores):
        _check_real_finite(np.asarray(G), f"cores[{k}]")


def _prep(cores, X):
    ms, ns, _ = validate_tt_matrix_cores(cores)
    X = np.asarray(X)
    if X.ndim not in (1, 2):
        raise ValueError(f"X must have shape (N,) or (B, N), got {X.shape}")
    N = int(np.prod(ns))
    if X.shape[-1] != N:
        raise ValueError(f"X must have last dimension N = prod(n) = {N}, got {X.shape}")
    _check_real_finite(X, "X")
    _check_cores_finite(cores)
    dtype = np.result_type(X.dtype, *[np.asarray(G).dtype for G in cores], np.float32)
    return ms, ns, X, dtype


def tt_matmul_numpy(cores, X):
    """NumPy reference of :func:`tt_matmul` (one ``einsum`` per core)."""
    ms, ns, X, dtype = _prep(cores, X)
    vec = X.ndim == 1
    X2 = np.atleast_2d(X).astype(dtype, copy=False)
    B = X2.shape[0]
    d = len(cores)
    T = X2.reshape(B, -1, 1, 1)  # (B, n_1..n_d, r_d=1, m_{d+1..}=1)
    for k in range(d - 1, -1, -1):
        G = np.asarray(cores[k], dtype=dtype)  # (r_{k-1}, m_k, n_k, r_k)
        Ir = T.shape[3]
        T = T.reshape(B, -1, ns[k], G.shape[3], Ir)  # (B, n_<k, n_k, r_k, m_>k)
        T = np.einsum("bjnrI,smnr->bjsmI", T, G, optimize=True)  # (B, n_<k, r_{k-1}, m_k, m_>k)
        T = T.reshape(B, T.shape[1], G.shape[0], -1)  # (B, n_<k, r_{k-1}, m_>=k)
    Y = T.reshape(B, -1)  # (B, M)
    return Y[0] if vec else Y


@numba.njit(cache=True)
def _tt_step(T, G2, G2T, out):
    """One core: ``out[b, j, (s, m), I] = Σ_{(n, r)} G2[(s, m), (n, r)] T[b, j, (n, r), I]``.

    ``T`` (B, J, NR, Ir), ``G2`` (S·M, NR) and its transpose ``G2T``, ``out`` (B, J, S·M, Ir),
    all C-contiguous. The contraction is one GEMM through Numba's ``np.dot`` (BLAS); the
    Numba loops do the two transposes around it without temporaries from NumPy."""
    B, J, NR, Ir = T.shape
    SM = G2.shape[0]
    BJ = B * J
    if Ir == 1:
        # one GEMM over all (b, j): (B·J, NR) @ (NR, S·M)
        out.reshape(BJ, SM)[:, :] = np.dot(T.reshape(BJ, NR), G2T)
        return
    # one GEMM for all (b, j, I): G2 (S·M, NR) @ T' (NR, B·J·Ir), T' = T with NR moved first
    Tt = np.empty((NR, BJ, Ir), dtype=T.dtype)
    T3 = T.reshape(BJ, NR, Ir)
    for q in range(NR):
        for bj in range(BJ):
            for i in range(Ir):
                Tt[q, bj, i] = T3[bj, q, i]
    R = np.dot(G2, Tt.reshape(NR, BJ * Ir)).reshape(SM, BJ, Ir)  # (S·M, B·J, Ir)
    O3 = out.reshape(BJ, SM, Ir)
    for bj in range(BJ):
        for sm in range(SM):
            for i in range(Ir):
                O3[bj, sm, i] = R[sm, bj, i]


def tt_matmul_numba(cores, X):
    """Numba twin of :func:`tt_matmul_numpy` (one compiled contraction per core)."""
    ms, ns, X, dtype = _prep(cores, X)
    vec = X.ndim == 1
    X2 = np.ascontiguousarray(np.atleast_2d(X), dtype=dtype)
    B = X2.shape[0]
    d = len(cores)
    T = X2.reshape(B, -1, 1, 1)
    for k in range(d - 1, -1, -1):
        G = np.ascontiguousarray(cores[k], dtype=dtype)  # (r_{k-1}, m_k, n_k, r_k)
        S, Rk = G.shape[0], G.shape[3]
        G2 = G.reshape(S * ms[k], ns[k] * Rk)  # ((r_{k-1}, m_k), (n_k, r_k))
        Ir = T.shape[3]
        T4 = T.reshape(B, -1, ns[k] * Rk, Ir)  # (B, n_<k, (n_k, r_k), m_>k)
        out = np.empty((B, T4.shape[1], S * ms[k], Ir), dtype=dtype)
        _tt_step(T4, G2, np.ascontiguousarray(G2.T), out)  # (B, n_<k, (r_{k-1}, m_k), m_>k)
        T = out.reshape(B, out.shape[1], S, -1)  # (B, n_<k, r_{k-1}, m_>=k)
    Y = T.reshape(B, -1)
    return Y[0] if vec else Y


def tt_matmul(cores, X, backend: str | None = None):
    """``Y = X @ W.T`` for a TT-matrix ``W`` given by its cores, without forming ``W``.

    Survey §6.3 (TT-layer, Novikov et al. 2015; Tjandra et al. 2017).

    Parameters
    ----------
    cores : list of ndarray, core k of shape (r_{k-1}, m_k, n_k, r_k)
        ``W`` has shape ``(M, N) = (∏ m_k, ∏ n_k)``.
    X : ndarray of shape (B, N) or (N,)
    backend : {"numba", "numpy"} or None

    Returns
    -------
    ndarray of shape (B, M) or (M,)
        In the common dtype of ``X`` and the cores (at least float32).

    Raises
    ------
    ValueError
        ``X`` or a core contains NaN or inf (named: ``X``, ``cores[k]``), or shapes mismatch.
    TypeError
        ``X`` or a core is complex or not numeric.

    References
    ----------
    .. [1] A. Novikov, D. Podoprikhin, A. Osokin, D. Vetrov, "Tensorizing Neural Networks",
       NeurIPS 2015.
    """
    return dispatch("tt_matmul", backend, tt_matmul_numba, tt_matmul_numpy, cores, X)


# ------------------------------------------------------------------ TT-embedding lookup
def _prep_lookup(cores, idx):
    vs, ds, _ = validate_tt_matrix_cores(cores)
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"idx must be an integer array, got dtype {idx.dtype}")
    V = int(np.prod(vs))
    if idx.size and (idx.min() < 0 or idx.max() >= V):
        raise ValueError(f"idx must be in [0, {V}), got range [{idx.min()}, {idx.max()}]")
    _check_cores_finite(cores)
    dtype = np.result_type(*[np.asarray(G).dtype for G in cores], np.float32)
    # mixed-radix digits, i_1 slowest: (n_idx, d)
    digits = np.zeros((idx.size, len(vs)), dtype=np.int64)
    rest = idx.reshape(-1).astype(np.int64)
    for k in range(len(vs) - 1, -1, -1):
        digits[:, k] = rest % vs[k]
        rest = rest // vs[k]
    return vs, ds, idx, digits, dtype


def tt_embedding_lookup_numpy(cores, idx):
    """NumPy reference of :func:`tt_embedding_lookup`."""
    vs, ds, idx, digits, dtype = _prep_lookup(cores, idx)
    n = digits.shape[0]
    R = np.ones((n, 1, 1), dtype=dtype)  # (n_idx, prod d_<k, r_{k-1})
    for k, G in enumerate(cores):
        Gk = np.asarray(G, dtype=dtype)[:, digits[:, k]]  # (r_{k-1}, n_idx, d_k, r_k)
        R = np.einsum("bpr,rbqs->bpqs", R, Gk, optimize=True)  # (n_idx, p, d_k, r_k)
        R = R.reshape(n, R.shape[1] * R.shape[2], Gk.shape[3])  # explicit: n_idx may be 0
    return R.reshape(*idx.shape, int(np.prod(ds)))  # (..., D)


@numba.njit(cache=True)
def _tt_lookup_kernel(digits, cores_flat, offsets, shapes, out):
    n, d = digits.shape
    # the running (p, r) product has at most max_k(prod d_<=k * r_k) entries: the caller
    # passes that scratch width in shapes[d, 0]
    scratch = shapes[d, 0]
    cur = np.empty(scratch, dtype=out.dtype)
    nxt = np.empty(scratch, dtype=out.dtype)
    for b in range(n):
        cur[0] = 1.0
        P = 1
        Rp = 1
        for k in range(d):
            vk = shapes[k, 1]
            dk = shapes[k, 2]
            r1 = shapes[k, 3]
            base = offsets[k] + digits[b, k] * dk * r1
            # G[s, i, q, t] flat = ((s * vk + i) * dk + q) * r1 + t: the (q, t) slab of one
            # (s, i) is contiguous, so accumulate nxt[p, q, t] += cur[p, s] * G[s, i, q, t]
            w = dk * r1
            for j in range(P * w):
                nxt[j] = 0.0
            for p in range(P):
                for s in range(Rp):
                    c = cur[p * Rp + s]
                    g0 = base + s * vk * w
                    o0 = p * w
                    for j in range(w):
                        nxt[o0 + j] += c * cores_flat[g0 + j]
            P = P * dk
            Rp = r1
            tmp = cur
            cur = nxt
            nxt = tmp
        for p in range(P):
            out[b, p] = cur[p]


def tt_embedding_lookup_numba(cores, idx):
    """Numba twin of :func:`tt_embedding_lookup_numpy` (one pass per requested row)."""
    vs, ds, idx, digits, dtype = _prep_lookup(cores, idx)
    d = len(cores)
    shapes = np.zeros((d + 1, 4), dtype=np.int64)
    flat, offsets, off, P, scratch = [], np.zeros(d, dtype=np.int64), 0, 1, 1
    for k, G in enumerate(cores):
        G = np.asarray(G, dtype=dtype)
        shapes[k] = G.shape
        offsets[k] = off
        off += G.size
        flat.append(G.reshape(-1))
        P *= G.shape[2]
        scratch = max(scratch, P * G.shape[3])
    shapes[d, 0] = scratch
    out = np.empty((digits.shape[0], int(np.prod(ds))), dtype=dtype)
    _tt_lookup_kernel(digits, np.concatenate(flat), offsets, shapes, out)
    return out.reshape(*idx.shape, int(np.prod(ds)))


def tt_embedding_lookup(cores, idx, backend: str | None = None):
    """Rows ``E[idx]`` of a TT-embedding matrix ``E`` of shape ``(V, D)`` without forming ``E``.

    Survey §6.3, TT-embedding (Khrulkov et al. 2019): row ``i = (i_1..i_d)`` (mixed radix over
    ``v_k``, ``i_1`` slowest) is the chain product of the slices ``G_k[:, i_k, :, :]``, reshaped
    to length ``D = ∏ d_k``. Cost per row: ``Σ_k (∏_{j≤k} d_j) r_{k-1} r_k`` multiply-adds.

    Parameters
    ----------
    cores : list of ndarray, core k of shape (r_{k-1}, v_k, d_k, r_k)
    idx : int ndarray of any shape, entries in [0, ∏ v_k)
    backend : {"numba", "numpy"} or None

    Returns
    -------
    ndarray of shape idx.shape + (D,)

    Raises
    ------
    ValueError
        A core contains NaN or inf (named ``cores[k]``), or ``idx`` is out of range.

    References
    ----------
    .. [1] V. Khrulkov, O. Hrinchuk, L. Mirvakhabova, I. Oseledets, "Tensorized Embedding
       Layers for Efficient Model Compression", 2019 (arXiv:1901.10787).
    """
    return dispatch("tt_embedding_lookup", backend, tt_embedding_lookup_numba,
                    tt_embedding_lookup_numpy, cores, idx)
