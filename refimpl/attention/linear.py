"""Transformers with linear complexity, Survey §7.2.

=================================  ============================================  ===========
function                           method                                        cost
=================================  ============================================  ===========
:func:`star_attention`             Star-Transformer ring + relay (Guo et al.,    O(n)
                                   2019)
:func:`linformer_attention`        Linformer E/F projections k × n (Wang et      O(nk)
                                   al., 2020), :func:`linformer_projections`
                                   for head-wise / key-value / layer-wise
                                   sharing
:func:`sinkhorn_attention`         Sparse Sinkhorn attention and SortCut (Tay    O(n b),
                                   et al., 2020)                                 O(n k b)
:func:`efficient_attention`        Shen et al.'s ρ_q(Q)(ρ_k(K)ᵀV), Survey        O(n d²)
                                   Eq. (69); the survey's printed form is
                                   ``efficient_attention_survey_form``
:func:`linear_attention`           linear Transformer, φ(x) = elu(x) + 1,        O(n d²)
                                   non-causal and causal (prefix sums)
                                   (Katharopoulos et al., 2020)
:func:`longformer_attention`       Longformer sliding window + dilation +        O(n w)
                                   global tokens (Beltagy et al., 2020)
=================================  ============================================  ===========

Arrays are ``(batch, heads, n, d)``. Exact variants come with a ``*_mask`` function (dense
attention, Survey Eq. (68), under it gives the same output); approximate ones are compared with
dense attention in :mod:`refimpl.attention.checks`.

References
----------
.. [1] Q. Guo et al., "Star-Transformer", NAACL 2019.
.. [2] S. Wang et al., "Linformer: Self-Attention with Linear Complexity", arXiv 2006.04768.
.. [3] Y. Tay et al., "Sparse Sinkhorn Attention", ICML 2020.
.. [4] Z. Shen et al., "Efficient Attention: Attention with Linear Complexities", WACV 2021
   (arXiv 1812.01243, 2018).
.. [5] A. Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with
   Linear Attention", ICML 2020.
.. [6] I. Beltagy, M. E. Peters, A. Cohan, "Longformer: The Long-Document Transformer", 2020.
"""

from __future__ import annotations

import numbers

import numpy as np

from refimpl.attention.dense import check_qkv
from refimpl.kernels._backend import resolve_backend
from refimpl.kernels.attention import (
    causal_linear_attention,
    check_window,
    sliding_window_attention,
)
from refimpl.utils import (as_rng, check_array, check_choice, check_float, check_int,
                           validate_arrays, validate_scalars)

__all__ = [
    "star_attention", "star_attention_mask",
    "linformer_attention", "linformer_projections",
    "sinkhorn_normalize", "sinkhorn_sort_matrix", "sinkhorn_attention",
    "efficient_attention", "efficient_attention_quadratic", "efficient_attention_survey_form",
    "elu_feature_map", "linear_attention", "linear_attention_quadratic",
    "longformer_mask", "longformer_attention",
]


def _softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _lse(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# ------------------------------------------------------------------------------ Star-Transformer
def _attend(q, k, v, scale):
    """softmax(q kᵀ scale) v over the last-but-one axis of k (small dense helper)."""
    S = np.einsum("...d,...jd->...j", q, k) * scale
    return np.einsum("...j,...je->...e", _softmax(S), v)


@validate_scalars
def star_attention_mask(n: int) -> np.ndarray:
    """Star-Transformer's satellite pattern over ``[satellites (n); embeddings (n); relay]``.

    Returns
    -------
    ndarray of bool, shape (n, 2n + 1)
        Satellite ``i`` sees satellites ``i-1, i, i+1`` (a ring: indices mod ``n``), its own
        embedding ``e_i`` and the relay. Dense attention of the satellites against the
        concatenated keys ``[K; K; mean(K)]`` under this mask is the first cycle of
        :func:`star_attention`.

    Notes
    -----
    Survey §7.2.

    References
    ----------
    .. [1] Q. Guo et al., "Star-Transformer", NAACL 2019.
    """
    n = check_int(n, "n", 3)
    i = np.arange(n)
    M = np.zeros((n, 2 * n + 1), dtype=bool)
    for o in (-1, 0, 1):
        M[i, (i + o) % n] = True
    M[i, n + i] = True
    M[:, 2 * n] = True
    return M


#: Satellites updated per block in :func:`star_attention`: the ``(B, H, block, 5, d)`` contexts
#: then stay in cache, so the time stays linear in ``n`` (one ``(n, 5, d)`` stack measured a
#: time slope of 1.21 over n = 4096…16384 as it outgrew the caches), and the memory is the
#: O(n d) inputs and outputs plus an O(block · d) scratch.
_STAR_BLOCK = 256


def _star_satellites(hq, hk, hv, K, V, sk, sv, scale):
    """One satellite update of :func:`star_attention`, block by block along ``n``.

    Satellite ``i`` attends to its context :math:`C_i = [h_{i-1}; h_i; h_{i+1}; e_i; s]`
    (ring indices mod ``n``): keys/values of shape ``(B, H, block, 5, d)`` per block.
    """
    B, H, n, d = hq.shape
    out = []
    for a in range(0, n, _STAR_BLOCK):
        i = np.arange(a, min(a + _STAR_BLOCK, n))
        prev, nxt, here = (i - 1) % n, (i + 1) % n, slice(a, a + i.size)
        shape = (B, H, i.size, d)
        ck = np.stack([hk[:, :, prev], hk[:, :, here], hk[:, :, nxt], K[:, :, here],
                       np.broadcast_to(sk, shape)], axis=3)  # (B, H, block, 5, d)
        cv = np.stack([hv[:, :, prev], hv[:, :, here], hv[:, :, nxt], V[:, :, here],
                       np.broadcast_to(sv, shape)], axis=3)
        out.append(_attend(hq[:, :, here], ck, cv, scale))  # (B, H, block, d)
    return out[0] if len(out) == 1 else np.concatenate(out, axis=2)


@validate_scalars
def star_attention(Q, K, V, cycles: int = 1, *, return_relay: bool = False):
    """Star-Transformer attention: ring connections plus a shared relay node, Survey §7.2.

    Guo et al. (2019). The relay starts as the average of the nodes,
    ``s⁰ = mean_i(·)``; each cycle ``t`` first updates every satellite from its context
    :math:`C_i^t = [h_{i-1}^{t-1}; h_i^{t-1}; h_{i+1}^{t-1}; e_i; s^{t-1}]` (ring neighbours,
    itself, its embedding, the relay) and then the relay from
    :math:`[s^{t-1}; H^t]`:

    .. math:: h_i^t = \\mathrm{Att}(h_i^{t-1}, C_i^t), \\qquad
              s^t = \\mathrm{Att}(s^{t-1}, [s^{t-1}; H^t]).

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
        Queries and keys of the satellites at cycle 1 (the embeddings ``e_i`` keep ``K``/``V``).
    V : ndarray of shape (B, H, n, d)
        Values (``d_v == d``: a cycle's output is the next cycle's query, key and value).
    cycles : int
        Number of ring + relay updates ``T`` (>= 1).
    return_relay : bool
        Also return the relay state ``(B, H, 1, d)``.

    Returns
    -------
    satellites : ndarray of shape (B, H, n, d)
    relay : ndarray of shape (B, H, 1, d)
        Only with ``return_relay=True``.

    Notes
    -----
    This is the attention pattern with identity projections between cycles (the paper's
    multi-head attention, layer norm and ReLU inside a cycle belong to the layer). Each node
    sees 5 keys and the relay ``n + 1``: :math:`O(n d)` per cycle. The first cycle's
    satellites equal dense attention under :func:`star_attention_mask`.

    References
    ----------
    .. [1] Q. Guo, X. Qiu, P. Liu, Y. Shao, X. Xue, Z. Zhang, "Star-Transformer", NAACL 2019.
    """
    Q, K, V = check_qkv(Q, K, V, same_length=True)
    B, H, n, d = Q.shape
    if V.shape[-1] != d:
        raise ValueError(f"V must have the same last dimension as Q (d={d}) for the "
                         f"Star-Transformer's cycles, got {V.shape}")
    if n < 3:
        raise ValueError(f"Q must have a sequence length n >= 3 for the ring, got n={n}")
    cycles = check_int(cycles, "cycles", 1)
    scale = 1.0 / np.sqrt(d)
    hq, hk, hv = Q, K, V  # satellites at t-1
    sq, sk, sv = Q.mean(2, keepdims=True), K.mean(2, keepdims=True), V.mean(2, keepdims=True)
    for _ in range(cycles):
        Hs = _star_satellites(hq, hk, hv, K, V, sk, sv, scale)  # (B, H, n, d)
        # relay: s = Att(s, [s; H^t]) with H^t as keys and values (identity projections)
        rk = np.concatenate([sk, Hs], axis=2)  # (B, H, n+1, d)
        rv = np.concatenate([sv, Hs], axis=2)
        s_new = _attend(sq[:, :, 0], rk, rv, scale)[:, :, None]  # (B, H, 1, d)
        hq = hk = hv = Hs
        sq = sk = sv = s_new
    return (hq, sq) if return_relay else hq


# ------------------------------------------------------------------------------ Linformer
@validate_scalars
def linformer_projections(n: int, k: int, *, num_heads: int = 1, num_layers: int = 1,
                          sharing: str = "headwise", rng=None):
    """Linformer's projection matrices ``E_i, F_i`` (``k × n``) with a sharing scheme.

    Survey §7.2 (Wang et al., 2020): (1) head-wise sharing ``E_i = E, F_i = F`` over a layer's
    heads; (2) key-value sharing ``E_i = F_i = E``; (3) layer-wise sharing: one ``E`` for keys
    and values of every head of every layer. ``"none"`` gives each head its own pair.

    Parameters
    ----------
    n : int
        Sequence length.
    k : int
        Projected length, ``1 <= k <= n``.
    num_heads, num_layers : int
    sharing : {"none", "headwise", "key-value", "layerwise"}
    rng : Generator or int, optional
        Entries are ``N(0, 1/k)`` (the Johnson–Lindenstrauss scaling of Linformer's Theorem 1).

    Returns
    -------
    layers : list of (E, F)
        One pair per layer; ``E``/``F`` have shape ``(num_heads, k, n)`` (``"none"``) or
        ``(k, n)``. Shared matrices are the *same* array objects.
    n_params : int
        Distinct projection parameters stored.
    """
    n = check_int(n, "n", 1)
    k = check_int(k, "k", 1, n)
    num_heads = check_int(num_heads, "num_heads", 1)
    num_layers = check_int(num_layers, "num_layers", 1)
    sharing = check_choice(sharing, "sharing", ("none", "headwise", "key-value", "layerwise"))
    rng = as_rng(rng)

    def draw(*shape):
        return rng.standard_normal(shape) / np.sqrt(k)

    layers = []
    if sharing == "layerwise":
        E = draw(k, n)
        layers = [(E, E) for _ in range(num_layers)]
        return layers, E.size
    for _ in range(num_layers):
        if sharing == "none":
            layers.append((draw(num_heads, k, n), draw(num_heads, k, n)))
        elif sharing == "headwise":
            layers.append((draw(k, n), draw(k, n)))
        else:  # key-value
            E = draw(k, n)
            layers.append((E, E))
    n_params = sum(E.size + (0 if F is E else F.size) for E, F in layers)
    return layers, n_params


def _check_proj(E, name, H, n):
    E = check_array(E, name, ndim=(2, 3))
    if E.shape[-1] != n or (E.ndim == 3 and E.shape[0] != H):
        raise ValueError(f"{name} must have shape (k, {n}) or ({H}, k, {n}), got {E.shape}")
    return E


@validate_scalars
def linformer_attention(Q, K, V, E, F=None):
    """Linformer attention with low-rank projections of keys and values, Survey §7.2.

    Wang et al. (2020): keys and values of length ``n`` are projected to length ``k`` by
    ``E_i, F_i`` (stored here as ``k × n``, applied on the left), then ordinary scaled
    dot-product attention runs against ``k`` keys:

    .. math:: \\mathrm{head}_i = \\mathrm{softmax}\\Big(\\frac{Q (E_i K)^T}{\\sqrt d}\\Big)
              (F_i V)

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
    V : ndarray of shape (B, H, n, d_v)
    E : ndarray of shape (k, n) or (H, k, n)
        Key projection; ``(k, n)`` is shared by all heads (head-wise sharing).
    F : ndarray of shape (k, n) or (H, k, n), optional
        Value projection; ``None`` means key-value sharing ``F = E``.

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        With ``k = n`` and ``E = F = I`` (or any permutation matrix) exactly dense attention.

    Notes
    -----
    Time and memory :math:`O(n k)` per head (the context matrix is ``n × k``).

    References
    ----------
    .. [1] S. Wang, B. Z. Li, M. Khabsa, H. Fang, H. Ma, "Linformer: Self-Attention with
       Linear Complexity", arXiv 2006.04768, 2020.
    """
    Q, K, V = check_qkv(Q, K, V, same_length=True)
    B, H, n, d = Q.shape
    E = _check_proj(E, "E", H, n)
    F = E if F is None else _check_proj(F, "F", H, n)
    if F.shape[-2] != E.shape[-2]:
        raise ValueError(f"F must project to the same k as E, got E {E.shape} and F {F.shape}")
    Kp = (E if E.ndim == 2 else E[None]) @ K  # (B, H, k, d)
    Vp = (F if F.ndim == 2 else F[None]) @ V  # (B, H, k, d_v)
    S = Q @ np.swapaxes(Kp, -1, -2) / np.sqrt(d)  # (B, H, n, k): the n × k context map
    return _softmax(S) @ Vp  # (B, H, n, d_v)


# ------------------------------------------------------------------------------ Sinkhorn
@validate_scalars(n_iters=(0, None))
def sinkhorn_normalize(logits, n_iters: int = 8, temperature: float = 1.0) -> np.ndarray:
    """Log-domain Sinkhorn balancing: alternately normalise rows and columns of
    ``exp(logits / temperature)`` (Tay et al., 2020, Eq. 6; Adams & Zemel, 2011).

    Parameters
    ----------
    logits : ndarray of shape (..., N, N)
    n_iters : int
    temperature : float
        > 0; smaller → closer to a hard permutation.

    Returns
    -------
    ndarray of shape (..., N, N)
        Approximately doubly stochastic (columns sum to 1 exactly after the last step).
    """
    L = check_array(logits, "logits", ndim=(2, 3, 4))
    if L.shape[-1] != L.shape[-2]:
        raise ValueError(f"logits must be square in its last two axes, got {L.shape}")
    n_iters = check_int(n_iters, "n_iters", 0)
    tau = check_float(temperature, "temperature", 0.0, lo_open=True)
    L = L / tau
    for _ in range(n_iters):
        L = L - _lse(L, -1)  # rows sum to 1
        L = L - _lse(L, -2)  # columns sum to 1
    return np.exp(L)


@validate_scalars(n_iters=(0, None))
def sinkhorn_sort_matrix(Q, K, n_blocks: int, *, n_iters: int = 8, temperature: float = 1.0,
                         W_sort=None) -> np.ndarray:
    """The soft block permutation ``S`` of Sparse Sinkhorn attention.

    The meta sorting network scores block pairs from block summaries (the mean of each block):
    with ``W_sort`` of shape ``(d, n_blocks)`` the logits are ``R = relu(mean_blocks(K) W)``
    (Tay et al.'s sorting network, one layer); without it a parameter-free scorer
    ``R_ij = q̄_i · k̄_j / √d`` lets query block ``i`` pick the key block it matches best. ``R``
    is then Sinkhorn-balanced (:func:`sinkhorn_normalize`).

    Returns
    -------
    ndarray of shape (B, H, n_blocks, n_blocks)
        Row ``i`` weights the key blocks that sorted block ``i`` mixes.

    Notes
    -----
    Survey §7.2.

    References
    ----------
    .. [1] Y. Tay et al., "Sparse Sinkhorn Attention", ICML 2020.
    """
    Q = check_array(Q, "Q", ndim=4)
    K = check_array(K, "K", ndim=4)
    B, H, n, d = K.shape
    n_blocks = check_int(n_blocks, "n_blocks", 1, n)
    if n % n_blocks:
        raise ValueError(f"n_blocks must divide the sequence length n={n}, got {n_blocks}")
    kbar = K.reshape(B, H, n_blocks, -1, d).mean(3)  # (B, H, nb, d)
    if W_sort is None:
        qbar = Q.reshape(B, H, n_blocks, -1, d).mean(3)
        R = qbar @ np.swapaxes(kbar, -1, -2) / np.sqrt(d)  # (B, H, nb, nb)
    else:
        W = check_array(W_sort, "W_sort", shape=(d, n_blocks))
        R = np.maximum(kbar @ W, 0.0)
    return sinkhorn_normalize(R, n_iters, temperature)


@validate_scalars(n_iters=(0, None))
def sinkhorn_attention(Q, K, V, n_blocks: int, *, sort_matrix=None, sortcut: int | None = None,
                       n_iters: int = 8, temperature: float = 1.0, W_sort=None):
    """Sparse Sinkhorn attention and SortCut, Survey §7.2 (Tay et al., 2020).

    The sequence is cut into ``n_blocks`` blocks of size ``b = n / n_blocks``; a (soft)
    block permutation ``S`` (from :func:`sinkhorn_sort_matrix`) re-orders the key and value
    blocks, :math:`\\tilde K_{[i]} = \\sum_j S_{ij} K_{[j]}`. Then

    * Sinkhorn attention (``sortcut=None``): query block ``i`` attends to its own block and
      to the sorted block :math:`\\tilde K_{[i]}` — quasi-global attention with local windows,
      memory :math:`O(B^2 + (n/B)^2)` per block pair;
    * SortCut (``sortcut=k``): every query attends to the first ``k`` sorted blocks only,
      :math:`\\mathrm{softmax}(Q\\tilde K_{[:kb]}^T/\\sqrt d)\\tilde V_{[:kb]}`, time
      :math:`O(n k b)`.

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
    V : ndarray of shape (B, H, n, d_v)
    n_blocks : int
        Dividing ``n``.
    sort_matrix : ndarray of shape (n_blocks, n_blocks) or (B, H, n_blocks, n_blocks), optional
        Use this ``S`` (e.g. a hard permutation matrix) instead of the Sinkhorn one.
    sortcut : int, optional
        ``k`` in ``[1, n_blocks]``: the SortCut budget.
    n_iters, temperature, W_sort
        Passed to :func:`sinkhorn_sort_matrix`.

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        With a hard permutation ``S`` (``π(i) = argmax_j S_ij``): dense attention over
        ``{own block, block π(i)}`` (Sinkhorn; exact when ``π`` has no fixed point, otherwise
        the own block counts twice as in the paper's concatenation), or over blocks
        ``π(0..k-1)`` (SortCut; ``k = n_blocks`` is exactly dense attention).

    References
    ----------
    .. [1] Y. Tay, D. Bahri, L. Yang, D. Metzler, D.-C. Juan, "Sparse Sinkhorn Attention",
       ICML 2020.
    """
    Q, K, V = check_qkv(Q, K, V, same_length=True)
    B, H, n, d = Q.shape
    dv = V.shape[-1]
    n_blocks = check_int(n_blocks, "n_blocks", 1, n)
    if n % n_blocks:
        raise ValueError(f"n_blocks must divide the sequence length n={n}, got {n_blocks}")
    b = n // n_blocks
    if sort_matrix is None:
        S = sinkhorn_sort_matrix(Q, K, n_blocks, n_iters=n_iters, temperature=temperature,
                                 W_sort=W_sort)
    else:
        S = check_array(sort_matrix, "sort_matrix", ndim=(2, 4))
        if S.shape[-2:] != (n_blocks, n_blocks):
            raise ValueError(f"sort_matrix must be ({n_blocks}, {n_blocks}) in its last two "
                             f"axes, got {S.shape}")
    Kb = K.reshape(B, H, n_blocks, b, d)  # (B, H, nb, b, d)
    Vb = V.reshape(B, H, n_blocks, b, dv)
    if sortcut is not None:
        sortcut = check_int(sortcut, "sortcut", 1, n_blocks)
    S = np.broadcast_to(S, (B, H, n_blocks, n_blocks))
    if sortcut is not None:  # SortCut needs only the first k sorted blocks: O(k n d)
        S = S[:, :, :sortcut]
    Ks = np.einsum("bhij,bhjsd->bhisd", S, Kb)  # sorted blocks (B, H, nb or k, b, d)
    Vs = np.einsum("bhij,bhjsd->bhisd", S, Vb)
    scale = 1.0 / np.sqrt(d)
    if sortcut is None:
        Qb = Q.reshape(B, H, n_blocks, b, d)
        Kc = np.concatenate([Kb, Ks], axis=3)  # (B, H, nb, 2b, d): local + sorted
        Vc = np.concatenate([Vb, Vs], axis=3)
        W = _softmax(Qb @ np.swapaxes(Kc, -1, -2) * scale)  # (B, H, nb, b, 2b)
        return (W @ Vc).reshape(B, H, n, dv)
    k = sortcut
    Kt = Ks[:, :, :k].reshape(B, H, k * b, d)  # first k sorted blocks (B, H, kb, d)
    Vt = Vs[:, :, :k].reshape(B, H, k * b, dv)
    return _softmax(Q @ np.swapaxes(Kt, -1, -2) * scale) @ Vt  # (B, H, n, d_v)


# ------------------------------------------------------------------------------ Eq. (69)
@validate_scalars
def efficient_attention(Q, K, V):
    """Efficient attention of Shen et al., Survey Eq. (69), §7.2 — the original paper's form.

    .. math:: E(Q, K, V) = \\rho_q(Q)\\,\\big(\\rho_k(K)^T V\\big)

    with :math:`\\rho_q` a softmax along each row of ``Q`` (over the ``d`` features) and
    :math:`\\rho_k` a softmax along each column of ``K`` (over the ``n`` positions). By
    associativity this equals :math:`(\\rho_q(Q)\\rho_k(K)^T)V`, whose implicit ``n × n``
    attention matrix has rows summing to 1 — but ``ρ_k(K)ᵀV`` is only ``d × d_v``, so the cost
    is :math:`O(n d d_v)`. (The scaling factor is dropped, as in the paper and the survey.)

    Parameters
    ----------
    Q : ndarray of shape (B, H, n, d)
    K : ndarray of shape (B, H, m, d)
    V : ndarray of shape (B, H, m, d_v)

    Returns
    -------
    ndarray of shape (B, H, n, d_v)

    Notes
    -----
    The survey prints :math:`\\mathrm{softmax}_r(Q)(\\mathrm{softmax}_c(K^TV))`, normalising
    the ``d × d_v`` product instead of ``K``; that is a different function
    (:func:`efficient_attention_survey_form`; see ``chapters/ERRATA.md``).

    References
    ----------
    .. [1] Z. Shen, M. Zhang, H. Zhao, S. Yi, H. Li, "Efficient Attention: Attention with
       Linear Complexities", arXiv 1812.01243 (2018), WACV 2021, Eq. (4).
    """
    Q, K, V = check_qkv(Q, K, V)
    rho_q = _softmax(Q, axis=-1)  # (B, H, n, d): each row over features
    rho_k = _softmax(K, axis=-2)  # (B, H, m, d): each column over positions
    context = np.swapaxes(rho_k, -1, -2) @ V  # (B, H, d, d_v): global context vectors
    return rho_q @ context  # (B, H, n, d_v)


@validate_scalars
def efficient_attention_quadratic(Q, K, V, *, return_weights: bool = False):
    """The same function as :func:`efficient_attention` evaluated the quadratic way,
    ``(ρ_q(Q) ρ_k(K)ᵀ) V`` with the explicit ``n × m`` matrix (for checking associativity).

    Survey Eq. (69), §7.2. ``Q`` (B, H, n, d), ``K`` (B, H, m, d), ``V`` (B, H, m, d_v) ->
    (B, H, n, d_v) (and the (B, H, n, m) weights when ``return_weights``).

    References
    ----------
    .. [1] Z. Shen et al., "Efficient Attention: Attention with Linear Complexities", WACV 2021
       (arXiv 1812.01243).
    """
    Q, K, V = check_qkv(Q, K, V)
    A = _softmax(Q, axis=-1) @ np.swapaxes(_softmax(K, axis=-2), -1, -2)  # (B, H, n, m)
    return (A @ V, A) if return_weights else A @ V


@validate_scalars
def efficient_attention_survey_form(Q, K, V):
    """Survey Eq. (69) *as printed*: :math:`\\mathrm{softmax}_r(Q)\\,
    \\mathrm{softmax}_c(K^TV)` (softmax over the columns of the ``d × d_v`` product).

    Kept to show the erratum numerically; use :func:`efficient_attention` (Shen et al.).

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
    """
    Q, K, V = check_qkv(Q, K, V)
    KtV = np.swapaxes(K, -1, -2) @ V  # (B, H, d, d_v)
    return _softmax(Q, axis=-1) @ _softmax(KtV, axis=-2)


# ------------------------------------------------------------------------------ linear Transformer
@validate_scalars
@validate_arrays(X={})
def elu_feature_map(X) -> np.ndarray:
    """:math:`\\phi(x) = \\mathrm{elu}(x) + 1` (Katharopoulos et al., 2020, Eq. 7): positive."""
    X = np.asarray(X)
    return np.where(X > 0, X + 1.0, np.exp(np.minimum(X, 0.0)))


@validate_scalars(eps=(0, None))
def linear_attention_quadratic(Q, K, V, *, causal: bool = False, eps: float = 1e-6):
    """Linear attention evaluated the quadratic way:
    :math:`o_i=\\sum_j \\phi(q_i)^T\\phi(k_j) v_j / (\\sum_j \\phi(q_i)^T\\phi(k_j)+\\varepsilon)`,
    with ``j <= i`` when ``causal`` (the reference :func:`linear_attention` must equal).

    Survey §7.2. ``Q`` (B, H, n, d), ``K`` (B, H, m, d), ``V`` (B, H, m, d_v) -> (B, H, n, d_v).

    References
    ----------
    .. [1] A. Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with
       Linear Attention", ICML 2020.
    """
    Q, K, V = check_qkv(Q, K, V)
    A = elu_feature_map(Q) @ np.swapaxes(elu_feature_map(K), -1, -2)  # (B, H, n, m)
    if causal:
        A = np.tril(A)
    return (A @ V) / (A.sum(-1, keepdims=True) + eps)


@validate_scalars(eps=(0, None))
def linear_attention(Q, K, V, *, causal: bool = False, eps: float = 1e-6, backend=None):
    """Linear Transformer attention with the ``elu + 1`` feature map, Survey §7.2.

    Katharopoulos et al. (2020) write attention as a kernel :math:`\\phi(q)^T\\phi(k)` and use
    associativity:

    .. math:: o_i = \\frac{\\phi(q_i)^T \\sum_j \\phi(k_j) v_j^T}
                         {\\phi(q_i)^T \\sum_j \\phi(k_j)}, \\qquad
              \\phi(x) = \\mathrm{elu}(x) + 1 .

    Non-causal: the sums run over all ``j`` and are computed once, :math:`O(n d d_v)`.
    Causal: over ``j <= i`` by prefix sums
    (:func:`refimpl.kernels.attention.causal_linear_attention`), an RNN with state ``d × d_v``.

    Parameters
    ----------
    Q : ndarray of shape (B, H, n, d)
    K : ndarray of shape (B, H, m, d)  (``m = n`` when ``causal``)
    V : ndarray of shape (B, H, m, d_v)
    causal : bool
    eps : float
        Added to the denominator (1e-6 as in the authors' code).
    backend : {"numba", "numpy", None}
        For the causal kernel.

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        Equal to :func:`linear_attention_quadratic` (exact); an approximation of softmax
        attention only in the sense that both are normalised kernel smoothers.

    References
    ----------
    .. [1] A. Katharopoulos, A. Vyas, N. Pappas, F. Fleuret, "Transformers are RNNs: Fast
       Autoregressive Transformers with Linear Attention", ICML 2020.
    """
    Q, K, V = check_qkv(Q, K, V, same_length=causal)
    eps = check_float(eps, "eps", 0.0)
    backend = resolve_backend(backend)  # validated even where no kernel runs (causal=False)
    phq, phk = elu_feature_map(Q), elu_feature_map(K)
    if causal:
        return causal_linear_attention(phq, phk, V, eps=eps, backend=backend)
    KV = np.swapaxes(phk, -1, -2) @ V  # (B, H, d, d_v)
    z = phk.sum(axis=2)  # (B, H, d)
    den = np.einsum("bhnd,bhd->bhn", phq, z) + eps  # (B, H, n)
    return (phq @ KV) / den[..., None]


# ------------------------------------------------------------------------------ Longformer
def _check_global_idx(global_idx):
    """Global positions: a sequence/array of ints or one int (None means none, as ``()``)."""
    if global_idx is None:
        return ()
    if isinstance(global_idx, (bool, np.bool_, str, bytes)) or not isinstance(
            global_idx, (list, tuple, range, np.ndarray, numbers.Integral, np.integer)):
        raise TypeError(f"global_idx must be a sequence of int positions, got {global_idx!r:.60}")
    g = np.asarray(global_idx)
    if g.size and g.dtype.kind not in "iu":
        raise TypeError(f"global_idx must hold int positions, got dtype {g.dtype}")
    return global_idx


@validate_scalars(window=(0, None))
def longformer_mask(n: int, window: int, dilation: int = 1, global_idx=(), *,
                    causal: bool = False) -> np.ndarray:
    """Longformer's attention pattern as an ``(n, n)`` boolean mask.

    ``mask[i, j]`` is True when ``j = i + dilation·o`` with ``|o| <= window/2``, or ``i`` or
    ``j`` is a global position (global attention is symmetric). ``causal=True`` (the
    autoregressive Longformer of a language model): that pattern and ``j <= i``.

    Survey §7.2.

    References
    ----------
    .. [1] I. Beltagy, M. E. Peters, A. Cohan, "Longformer: The Long-Document Transformer", arXiv
       2004.05150, 2020.
    """
    n = check_int(n, "n", 1)
    causal = _check_causal(causal)
    half, dil, g = check_window(window, dilation, _check_global_idx(global_idx), n)
    off = np.arange(n)[None, :] - np.arange(n)[:, None]  # j - i
    M = (off % dil == 0) & (np.abs(off) <= half * dil)
    M[g, :] = True
    M[:, g] = True
    return M & (off <= 0) if causal else M


def _check_causal(causal) -> bool:
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, got {causal!r}")
    return bool(causal)


@validate_scalars(window=(0, None))
def longformer_attention(Q, K, V, window: int, dilation: int = 1, global_idx=(), *,
                         Qg=None, Kg=None, Vg=None, causal: bool = False, backend=None):
    """Longformer attention: sliding window, dilated window and global tokens, Survey §7.2.

    Beltagy et al. (2020). Each token attends to ``w/2`` tokens on each side (every
    ``dilation``-th token for a dilated window) and to the global tokens; global tokens attend
    to every token. Computed by :func:`refimpl.kernels.attention.sliding_window_attention`,
    which never forms the ``n × n`` matrix.

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
        The sliding-window projections :math:`Q_s, K_s`.
    V : ndarray of shape (B, H, n, d_v)
    window : int
        ``w``: even, ``0 <= w <= n``.
    dilation : int
        Gap ``d`` of the dilated window (1: contiguous).
    global_idx : sequence of int
        Positions with global attention (e.g. ``[CLS]``).
    Qg, Kg, Vg : ndarray, optional
        Separate global projections :math:`Q_g, K_g, V_g` (same shapes as ``Q, K, V``) used
        for the rows of global tokens, as in the paper; default the local ones.
    causal : bool
        Autoregressive Longformer (a language model): token ``i`` sees only keys ``j <= i`` —
        the left half of its window, the global tokens ``g <= i`` — and a global token ``g``
        only the keys ``j <= g`` (the kernels' ``causal=True``, still ``O(n w)``).
    backend : {"numba", "numpy", None}

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        Without ``Qg/Kg/Vg``, equal to dense attention under :func:`longformer_mask` with the
        same ``causal`` (exact).

    Notes
    -----
    Time :math:`O(n(w+g)d + gnd)`; memory :math:`O(nd)` — linear in ``n`` for fixed ``w``
    and ``g``.

    References
    ----------
    .. [1] I. Beltagy, M. E. Peters, A. Cohan, "Longformer: The Long-Document Transformer",
       arXiv 2004.05150, 2020.
    """
    Q, K, V = check_qkv(Q, K, V, same_length=True)
    causal = _check_causal(causal)
    n = Q.shape[2]
    _, _, g = check_window(window, dilation, _check_global_idx(global_idx), n)
    out = sliding_window_attention(Q, K, V, window, dilation, g, causal=causal,
                                   backend=backend)
    if g.size and (Qg is not None or Kg is not None or Vg is not None):
        Qg_ = Q if Qg is None else check_array(Qg, "Qg", shape=Q.shape)
        Kg_ = K if Kg is None else check_array(Kg, "Kg", shape=K.shape)
        Vg_ = V if Vg is None else check_array(Vg, "Vg", shape=V.shape)
        S = Qg_[:, :, g] @ np.swapaxes(Kg_, -1, -2) / np.sqrt(Q.shape[-1])  # (B, H, g, n)
        if causal:  # global query g sees the keys j <= g
            S = np.where(np.arange(n)[None, :] <= g[:, None], S, -np.inf)
        out[:, :, g] = _softmax(S) @ Vg_  # (B, H, g, d_v)
    return out
