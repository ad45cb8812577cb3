"""Transformers with super-linear complexity, Survey §7.1.

=============================  ===================================================  ==========
function                       method                                               cost
=============================  ===================================================  ==========
:func:`blockbert_attention`    BlockBERT block-diagonal attention with per-head     O(N²/n)
                               block permutations (Qiu et al., 2020)
``sparse_transformer_attn``    Sparse Transformer strided / fixed factorised        O(n√n)
                               patterns (Child et al., 2019):
                               :func:`sparse_transformer_attention`
:func:`lsh_attention`          Reformer shared-QK LSH attention: random rotations,  O(n log n)
                               sort into buckets, chunked attention, several
                               hash rounds (Kitaev et al., 2020)
=============================  ===================================================  ==========

Each exact method also has a ``*_mask`` function: dense attention (Survey Eq. (68)) under that
mask gives the same output to rounding (:func:`refimpl.attention.dense.dense_attention`).
Arrays are ``(batch, heads, n, d)`` throughout.

References
----------
.. [1] J. Qiu et al., "Blockwise Self-Attention for Long Document Understanding", Findings of
   EMNLP 2020 (BlockBERT).
.. [2] R. Child, S. Gray, A. Radford, I. Sutskever, "Generating Long Sequences with Sparse
   Transformers", arXiv 1904.10509, 2019.
.. [3] N. Kitaev, Ł. Kaiser, A. Levskaya, "Reformer: The Efficient Transformer", ICLR 2020.
"""

from __future__ import annotations

import numpy as np

from refimpl.attention.dense import check_qkv
from refimpl.utils import (as_rng, check_array, check_choice, check_int, validate_arrays,
                           validate_scalars)

__all__ = [
    "blockbert_mask", "blockbert_attention",
    "sparse_transformer_mask", "sparse_transformer_attention",
    "lsh_hash", "lsh_attention", "lsh_attention_mask",
]


# ------------------------------------------------------------------------------ BlockBERT
def _check_permutations(permutations, num_heads: int, n_blocks: int) -> np.ndarray:
    if permutations is None:
        return np.tile(np.arange(n_blocks), (num_heads, 1))
    P = check_array(permutations, "permutations", dtype_kind="iu", finite=False)
    if P.ndim == 1:
        P = np.tile(P, (num_heads, 1))
    if P.shape != (num_heads, n_blocks):
        raise ValueError(f"permutations must have shape ({n_blocks},) or ({num_heads}, "
                         f"{n_blocks}), got {P.shape}")
    if not np.all(np.sort(P, axis=1) == np.arange(n_blocks)):
        raise ValueError("permutations must hold one permutation of range(n_blocks) per head")
    return P.astype(np.int64)


@validate_scalars(num_heads=(1, None))
def blockbert_mask(n: int, n_blocks: int, permutations=None, num_heads: int = 1) -> np.ndarray:
    """BlockBERT's block-sparse mask: query block ``i`` sees key block ``π_h(i)``.

    Parameters
    ----------
    n : int
        Sequence length ``N``; must be divisible by ``n_blocks``.
    n_blocks : int
        Number of blocks ``n`` of Survey §7.1 (each of size ``N/n``).
    permutations : ndarray of int, shape (n_blocks,) or (num_heads, n_blocks), optional
        ``π_h``; default the identity (block-diagonal) for every head.
    num_heads : int

    Returns
    -------
    ndarray of bool, shape (num_heads, 1, n, n)
        Broadcastable against ``(B, H, n, n)`` after a transpose of the first two axes; use
        ``mask[:, 0][None]`` for shape ``(1, H, n, n)``.
    """
    n = check_int(n, "n", 1)
    n_blocks = check_int(n_blocks, "n_blocks", 1, n)
    if n % n_blocks:
        raise ValueError(f"n_blocks must divide the sequence length n={n}, got {n_blocks}")
    P = _check_permutations(permutations, num_heads, n_blocks)
    bs = n // n_blocks
    blk = np.arange(n) // bs  # block of each position
    # key j is allowed for query i iff blk(j) == π_h(blk(i))
    mask = P[:, blk][:, :, None] == blk[None, None, :]  # (H, n, n)
    return mask[:, None]


@validate_scalars
def blockbert_attention(Q, K, V, n_blocks: int, permutations=None):
    """BlockBERT blockwise attention, Survey §7.1 (Qiu et al., 2020).

    The ``N × N`` attention matrix is cut into ``n × n`` blocks of size ``N/n``; head ``h``
    keeps only the blocks ``(i, π_h(i))`` of a permutation ``π_h``, so query block ``i``
    attends to key block ``π_h(i)`` only. Memory and time drop by a factor ``n``.

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, N, d)
    V : ndarray of shape (B, H, N, d_v)
    n_blocks : int
        ``n``, dividing ``N``.
    permutations : ndarray of int, shape (n_blocks,) or (H, n_blocks), optional
        Block permutation per head; default identity (block-diagonal) for every head. BlockBERT
        assigns the identity to some heads and shifted permutations to the others.

    Returns
    -------
    ndarray of shape (B, H, N, d_v)
        Equal to :func:`~refimpl.attention.dense.dense_attention` under
        :func:`blockbert_mask` (exact).

    Notes
    -----
    .. math:: \\mathrm{Attn}_h(Q,K,V)_{[i]} = \\mathrm{softmax}\\Big(\\frac{Q_{[i]}
       K_{[\\pi_h(i)]}^T}{\\sqrt d}\\Big) V_{[\\pi_h(i)]}

    Cost :math:`O(N^2 d / n)` time, :math:`O(N^2/n)` memory per head.

    References
    ----------
    .. [1] J. Qiu et al., "Blockwise Self-Attention for Long Document Understanding", 2020.
    """
    Q, K, V = check_qkv(Q, K, V, same_length=True)
    B, H, N, d = Q.shape
    n_blocks = check_int(n_blocks, "n_blocks", 1, N)
    if N % n_blocks:
        raise ValueError(f"n_blocks must divide the sequence length n={N}, got {n_blocks}")
    P = _check_permutations(permutations, H, n_blocks)
    bs = N // n_blocks
    Qb = Q.reshape(B, H, n_blocks, bs, d)  # (B, H, nb, bs, d)
    Kb = K.reshape(B, H, n_blocks, bs, d)
    Vb = V.reshape(B, H, n_blocks, bs, V.shape[-1])
    hidx = np.arange(H)[:, None]
    Kp = Kb[:, hidx, P]  # (B, H, nb, bs, d): key block π_h(i) beside query block i
    Vp = Vb[:, hidx, P]  # (B, H, nb, bs, d_v)
    S = Qb @ np.swapaxes(Kp, -1, -2) / np.sqrt(d)  # (B, H, nb, bs, bs)
    S = S - S.max(axis=-1, keepdims=True)
    W = np.exp(S)
    W /= W.sum(axis=-1, keepdims=True)
    return (W @ Vp).reshape(B, H, N, V.shape[-1])  # (B, H, N, d_v)


# ------------------------------------------------------------------------------ Sparse Transformer
def _check_sparse_args(n, pattern, stride, c, component):
    pattern = check_choice(pattern, "pattern", ("strided", "fixed"))
    stride = check_int(stride, "stride", 1, n)
    c = check_int(c, "c", 1, stride)
    if component is not None:
        check_choice(component, "component", (1, 2))
    return pattern, stride, c


@validate_scalars
def sparse_transformer_mask(n: int, pattern: str = "strided", stride: int = 8, *, c: int = 1,
                            causal: bool = True, component: int | None = None) -> np.ndarray:
    """The factorised attention pattern of the Sparse Transformer, as an ``(n, n)`` mask.

    Child et al. (2019), §4.2; Survey §7.1. With stride ``l`` (close to ``√n``):

    * strided: :math:`A^{(1)}_i=\\{j: |i-j|<l\\}`, :math:`A^{(2)}_i=\\{j: (i-j) \\bmod l=0\\}`;
    * fixed: :math:`A^{(1)}_i=\\{j:\\lfloor j/l\\rfloor=\\lfloor i/l\\rfloor\\}`,
      :math:`A^{(2)}_i=\\{j: j \\bmod l \\in \\{l-c,\\dots,l-1\\}\\}`;

    each intersected with :math:`j \\le i` when ``causal``. ``component=1`` or ``2`` gives one
    factorised head's pattern; ``None`` the merged head :math:`A^{(1)}\\cup A^{(2)}`.

    Returns
    -------
    ndarray of bool, shape (n, n)
    """
    n = check_int(n, "n", 1)
    pattern, stride, c = _check_sparse_args(n, pattern, stride, c, component)
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    if pattern == "strided":
        a1 = np.abs(i - j) < stride
        a2 = (i - j) % stride == 0
    else:
        a1 = (i // stride) == (j // stride)
        a2 = np.broadcast_to(j % stride >= stride - c, (n, n))
    m = a1 if component == 1 else a2 if component == 2 else (a1 | a2)
    if causal:
        m = m & (j <= i)
    return np.ascontiguousarray(m)


def _softmax_concat(parts_S, parts_M):
    """Joint softmax over several score blocks along their last axes (masked entries = 0)."""
    mx = None
    for S, M in zip(parts_S, parts_M):
        m_ = np.where(M, S, -np.inf).max(axis=-1, keepdims=True)
        mx = m_ if mx is None else np.maximum(mx, m_)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    Ws = [np.exp(np.where(M, S - mx, -np.inf)) for S, M in zip(parts_S, parts_M)]
    Z = sum(W.sum(axis=-1, keepdims=True) for W in Ws)
    Z = np.where(Z > 0, Z, 1.0)
    return [W / Z for W in Ws]


@validate_scalars
def sparse_transformer_attention(Q, K, V, pattern: str = "strided", stride: int = 8, *,
                                 c: int = 1, causal: bool = True,
                                 component: int | None = None):
    """Sparse Transformer factorised attention without forming the ``n × n`` matrix.

    Survey §7.1 (Child et al., 2019). Query ``i`` attends to the positions
    :func:`sparse_transformer_mask` allows: for ``pattern="strided"`` the previous ``l``
    positions and every ``l``-th position before it; for ``"fixed"`` its own length-``l`` block
    and the last ``c`` "summary" positions of every block. With :math:`l \\approx \\sqrt n`
    each query sees :math:`O(\\sqrt n)` keys: :math:`O(n\\sqrt n\\,d)` time and
    :math:`O(n\\sqrt n)` memory (the band is scored one offset at a time).

    Parameters
    ----------
    Q, K : ndarray of shape (B, H, n, d)
    V : ndarray of shape (B, H, n, d_v)
    pattern : {"strided", "fixed"}
    stride : int
        ``l``, in ``[1, n]``.
    c : int
        Summary positions per block (fixed pattern), in ``[1, l]``.
    causal : bool
        Intersect with ``j <= i`` (the autoregressive setting of the paper).
    component : {None, 1, 2}
        ``None``: the merged head over :math:`A^{(1)} \\cup A^{(2)}`; ``1``/``2``: one
        factorised head (e.g. one head with each, as in the paper's interleaved layout).

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        Equal to dense attention under :func:`sparse_transformer_mask` (exact).

    Notes
    -----
    The keys split into two groups that are gathered without an ``n × n`` array: a band of
    ``2l-1`` offsets (strided :math:`A^{(1)}`) or the own block (fixed :math:`A^{(1)}`), and the
    column group of the same residue ``i mod l`` (strided :math:`A^{(2)}`) or the summary
    positions (fixed :math:`A^{(2)}`). One softmax runs over both groups, with positions in
    both counted once.

    References
    ----------
    .. [1] R. Child, S. Gray, A. Radford, I. Sutskever, "Generating Long Sequences with Sparse
       Transformers", 2019.
    """
    Q, K, V = check_qkv(Q, K, V, same_length=True)
    B, H, n, d = Q.shape
    dv = V.shape[-1]
    pattern, l, c = _check_sparse_args(n, pattern, stride, c, component)
    scale = 1.0 / np.sqrt(d)
    if pattern == "strided" and not causal and component is None and 2 <= l and 2 * l < n:
        return _strided_bidirectional(Q, K, V, l, scale)
    use1 = component in (None, 1)
    use2 = component in (None, 2)
    nb = -(-n // l)  # blocks of length l (the last may be partial)
    i = np.arange(n)
    parts_S, parts_M, parts_V = [], [], []
    if pattern == "strided":
        if use1:  # band: offsets o = j - i in (-l, l)
            offs = np.arange(-(l - 1), 1 if causal else l)  # (w,)
            jj = i[:, None] + offs[None, :]  # (n, w)
            valid = (jj >= 0) & (jj < n)
            layout = _band_layout(n, offs)
            parts_S.append(_band_scores(Q, K, layout, scale))  # (B, H, n, w)
            parts_M.append(valid)
            parts_V.append(layout)  # the band's block layout, for the output
        if use2:  # same residue: i = r*l + s, j = r'*l + s
            Qp, Kp, Vp = (_blocks(X, nb, l) for X in (Q, K, V))  # (B, H, nb, l, ·)
            # with the band, |i-j| < l (t = r) is already there: count it once
            S2, M2 = _residue_scores(Qp, Kp, n, scale, causal, exclude_own=use1)
            parts_S.append(S2.reshape(B, H, nb * l, nb)[:, :, :n])
            parts_M.append(M2.reshape(nb * l, nb)[:n])
            parts_V.append(np.swapaxes(Vp, 2, 3))  # (B, H, l, nb, d_v): column s, row t
    else:  # fixed
        if use1:  # own block
            Qp, Kp = _blocks(Q, nb, l), _blocks(K, nb, l)  # (B, H, nb, l, d)
            S1 = Qp @ np.swapaxes(Kp, -1, -2) * scale  # (B, H, nb, l, l)
            pos = np.arange(nb * l).reshape(nb, l)
            M1 = (pos[:, None, :] < n) & ((pos[:, None, :] <= pos[:, :, None]) if causal
                                          else True)  # (nb, l, l)
            parts_S.append(S1.reshape(B, H, nb * l, l)[:, :, :n])
            parts_M.append(np.broadcast_to(M1, (nb, l, l)).reshape(nb * l, l)[:n])
            parts_V.append(_blocks(V, nb, l))  # (B, H, nb, l, d_v)
        if use2:  # summary columns j mod l >= l - c
            js = np.arange(n)[np.arange(n) % l >= l - c]  # (ns,)
            S2 = Q @ np.swapaxes(K[:, :, js], -1, -2) * scale  # (B, H, n, ns)
            M2 = np.ones((n, js.size), dtype=bool)
            if causal:
                M2 &= js[None, :] <= i[:, None]
            if use1:
                M2 &= (js[None, :] // l) != (i[:, None] // l)  # own block counted once
            parts_S.append(S2)
            parts_M.append(M2)
            parts_V.append(V[:, :, js])  # (B, H, ns, d_v)
    Ws = _softmax_concat(parts_S, parts_M)
    out = np.zeros((B, H, n, dv), dtype=Q.dtype)
    for kind, W, Vg in zip(_kinds(pattern, use1, use2), Ws, parts_V):
        if kind == "band":  # W (B,H,n,w), Vg: the band layout
            _band_output_(out, W, V, Vg)
        elif kind == "residue":  # W (B,H,n,nb), Vg (B,H,l,nb,dv)
            Wp = _blocks(W, nb, l)  # (B, H, nb, l, nb)
            out += np.einsum("bhrst,bhste->bhrse", Wp, Vg).reshape(B, H, nb * l, dv)[:, :, :n]
        elif kind == "block":  # W (B,H,n,l), Vg (B,H,nb,l,dv)
            Wp = _blocks(W, nb, l)  # (B, H, nb, l, l)
            out += (Wp @ Vg).reshape(B, H, nb * l, dv)[:, :, :n]
        else:  # "columns": W (B,H,n,ns), Vg (B,H,ns,dv)
            out += W @ Vg
    return out


#: Fewest queries per block in the Sparse Transformer's band. A block holds
#: ``bq = max(_BAND_BLOCK, w)`` queries for a band of ``w`` offsets; its keys are the
#: ``bq + w - 1`` positions the band reaches, so every block's scores are one small dense
#: product, all blocks in one batched matmul (no Python loop), and the work per query,
#: ``~2w``, grows as the band does: O(n l d) in all. (Scoring one offset at a time instead
#: streamed the whole ``(n, d)`` keys once per offset: time slope 1.6–1.8 over
#: n = 4096…16384 instead of 1.5.)
_BAND_BLOCK = 64


def _blocks(X, nb, l):
    """``X`` (B, H, n, e) as ``nb`` blocks of ``l`` rows, (B, H, nb, l, e), zero-padded only
    when ``l`` does not divide ``n``."""
    B, H, n, e = X.shape
    if nb * l != n:
        X = np.pad(X, ((0, 0), (0, 0), (0, nb * l - n), (0, 0)))
    return X.reshape(B, H, nb, l, e)


def _residue_scores(Qp, Kp, n, scale, causal, exclude_own):
    """Strided ``A^(2)`` scores between positions of equal residue ``s = i mod l``.

    ``Qp, Kp`` are the blocked (B, H, nb, l, d) queries and keys; returns the scores
    ``S[..., r, s, t] = q_{rl+s} · k_{tl+s} · scale`` (B, H, nb, l, nb) and the allowed mask
    (nb, l, nb): real keys (``tl + s < n``), ``t <= r`` when ``causal``, and ``t != r`` (the
    query's own position, which the band holds) when ``exclude_own``.
    """
    nb, l = Qp.shape[2], Qp.shape[3]
    S = np.einsum("bhrsd,bhtsd->bhrst", Qp, Kp) * scale
    r = np.arange(nb)[:, None, None]
    t = np.arange(nb)[None, None, :]
    M = (t * l + np.arange(l)[None, :, None] < n) & ((t <= r) if causal else True)
    if exclude_own:
        M = M & (t != r)
    return S, np.broadcast_to(M, (nb, l, nb))


def _band_layout(n, offs):
    """Block layout of a band of key offsets ``offs`` (``j - i``, increasing, containing 0).

    Returns ``(bq, nb, lo, idx, col)``: ``nb`` blocks of ``bq`` queries; ``idx`` ``(nb, kw)``
    the key positions of each block in a copy of the keys padded with ``lo = -offs[0]`` zero
    rows in front (and zeros after ``n``); ``col`` ``(bq, w)`` the column, within its block's
    ``kw = bq + offs[-1] - offs[0]`` keys, of query ``s``'s key at offset ``t`` (the same for
    every block).
    """
    w = offs.size
    lo, hi = -int(offs[0]), int(offs[-1])
    bq = max(_BAND_BLOCK, w)
    nb = -(-n // bq)
    kw = bq + lo + hi
    idx = np.arange(nb)[:, None] * bq + np.arange(kw)[None, :]  # (nb, kw), padded positions
    col = np.arange(bq)[:, None] + lo + offs[None, :]  # (bq, w)
    return bq, nb, lo, idx, col


def _band_blocks_of(X, n, bq, nb, lo, idx):
    """Keys/values of every block: ``X`` (B, H, n, e) zero-padded to the band's reach and
    gathered into ``(B, H, nb, kw, e)``."""
    pad_after = nb * bq + idx.shape[1] - bq - lo - n
    Xp = np.pad(X, ((0, 0), (0, 0), (lo, max(pad_after, 0)), (0, 0)))
    return Xp[:, :, idx]


def _band_scores(Q, K, layout, scale):
    """Scores ``S[..., i, t] = q_i · k_{i + offs[t]} · scale``, shape ``(B, H, n, w)`` (0 where
    ``i + offs[t]`` is outside ``[0, n)``; the caller masks those); ``layout`` is
    ``_band_layout(n, offs)``."""
    B, H, n, d = Q.shape
    bq, nb, lo, idx, col = layout
    Qb = np.pad(Q, ((0, 0), (0, 0), (0, nb * bq - n), (0, 0))).reshape(B, H, nb, bq, d)
    Kb = _band_blocks_of(K, n, bq, nb, lo, idx)  # (B, H, nb, kw, d)
    Sb = Qb @ np.swapaxes(Kb, -1, -2)  # (B, H, nb, bq, kw)
    S = np.take_along_axis(Sb, np.broadcast_to(col, (B, H, nb) + col.shape), axis=-1)
    return S.reshape(B, H, nb * bq, col.shape[1])[:, :, :n] * scale


def _band_output_(out, W, V, layout):
    """``out[..., i, :] += Σ_t W[..., i, t] v_{i + offs[t]}`` in place (keys outside
    ``[0, n)`` are zero rows): the band weights are scattered into each block's dense
    ``(bq, kw)`` weights and multiplied with the block's values in one batched matmul;
    ``layout`` is ``_band_layout(n, offs)``."""
    B, H, n, w = W.shape
    bq, nb, lo, idx, col = layout
    Wb = np.pad(W, ((0, 0), (0, 0), (0, nb * bq - n), (0, 0))).reshape(B, H, nb, bq, w)
    P = np.zeros((B, H, nb, bq, idx.shape[1]), dtype=W.dtype)
    np.put_along_axis(P, np.broadcast_to(col, (B, H, nb) + col.shape), Wb, axis=-1)
    Vb = _band_blocks_of(V, n, bq, nb, lo, idx)  # (B, H, nb, kw, d_v)
    out += (P @ Vb).reshape(B, H, nb * bq, -1)[:, :, :n]


def _strided_bidirectional(Q, K, V, l, scale):
    """Non-causal strided pattern: the band ``|i − j| < l`` by the sliding-window kernel
    (:func:`refimpl.kernels.attention.sliding_window_attention_fwd`, window ``2(l − 1)``:
    O(n l d), no ``n × n`` array, both cores) and the residue columns ``j ≡ i (mod l)``,
    ``|i − j| ≥ l`` (disjoint from the band) as one batched product, O(n (n / l) d); the two
    partial softmaxes are merged by their row log-sum-exps."""
    from refimpl.kernels.attention import sliding_window_attention_fwd

    B, H, n, d = Q.shape
    dv = V.shape[-1]
    out1, lse1 = sliding_window_attention_fwd(Q, K, V, 2 * (l - 1))  # (B,H,n,dv), (B,H,n)
    nb = -(-n // l)
    Qp, Kp, Vp = (_blocks(X, nb, l) for X in (Q, K, V))  # (B, H, nb, l, ·)
    S2, M2 = _residue_scores(Qp, Kp, n, scale, causal=False, exclude_own=True)
    S2 = np.where(M2, S2, -np.inf)  # real keys, not the query itself
    mx = S2.max(axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    E = np.exp(S2 - mx)
    Z = E.sum(axis=-1, keepdims=True)  # (B, H, nb, l, 1); 0 for a row without residue keys
    out2 = np.einsum("bhrst,bhtse->bhrse", E / np.where(Z > 0, Z, 1.0), Vp)
    out2 = out2.reshape(B, H, nb * l, dv)[:, :, :n]
    with np.errstate(divide="ignore"):
        lse2 = (mx + np.log(Z))[..., 0].reshape(B, H, nb * l)[:, :, :n]  # -inf: no keys
    m = np.maximum(lse1, lse2)  # finite: every query attends to itself in the band
    a1, a2 = np.exp(lse1 - m), np.exp(lse2 - m)
    return ((a1[..., None] * out1 + a2[..., None] * out2) / (a1 + a2)[..., None]).astype(
        Q.dtype, copy=False)


def _kinds(pattern, use1, use2):
    if pattern == "strided":
        return (["band"] if use1 else []) + (["residue"] if use2 else [])
    return (["block"] if use1 else []) + (["columns"] if use2 else [])


# ------------------------------------------------------------------------------ Reformer LSH
def _check_buckets(n_buckets) -> int:
    nb = check_int(n_buckets, "n_buckets", 2)
    if nb & (nb - 1):
        raise ValueError(f"n_buckets must be a power of two (the angular hash argmax[xR; -xR] "
                         f"needs an even count, and chunks stay power-of-two sized), got {nb}")
    return nb


@validate_scalars
def lsh_hash(X, n_buckets: int, rotations) -> np.ndarray:
    """Angular LSH of Reformer: ``h(x) = argmax([xR; -xR])`` for each hash round.

    Parameters
    ----------
    X : ndarray of shape (B, H, n, d)
    n_buckets : int
        A power of two.
    rotations : ndarray of shape (n_hashes, d, n_buckets // 2)
        Random Gaussian matrices ``R`` (one per round).

    Returns
    -------
    ndarray of int64, shape (n_hashes, B, H, n)
        Bucket ids in ``[0, n_buckets)``.

    Notes
    -----
    Survey §7.1. Positions are hashed in blocks of at most ``_HASH_BLOCK / (n_buckets/2)``
    rows, so the projections ``xR`` never take more than ``O(_HASH_BLOCK)`` numbers per
    (round, batch, head) beside the ``O(n)`` output, whatever ``n_buckets``; ``argmax`` over
    ``[xR; -xR]`` is taken without forming the concatenation (the first maximum is in ``xR`` iff
    ``max xR >= -min xR``). Time ``O(n d n_buckets)`` per round.

    References
    ----------
    .. [1] N. Kitaev, Ł. Kaiser, A. Levskaya, "Reformer: The Efficient Transformer", ICLR 2020.
    """
    n_buckets = _check_buckets(n_buckets)
    X = check_array(X, "X", ndim=4)
    R = check_array(rotations, "rotations", ndim=3)
    if R.shape[1:] != (X.shape[-1], n_buckets // 2):
        raise ValueError(f"rotations must have shape (n_hashes, {X.shape[-1]}, "
                         f"{n_buckets // 2}), got {R.shape}")
    n, half = X.shape[2], n_buckets // 2
    out = np.empty((R.shape[0],) + X.shape[:3], dtype=np.int64)  # (n_hashes, B, H, n)
    step = max(1, _HASH_BLOCK // half)
    for s in range(0, n, step):
        xR = np.einsum("bhnd,rdk->rbhnk", X[:, :, s:s + step], R)  # (n_hashes, B, H, step, nb/2)
        # argmax([xR; -xR]) (first maximum): in the first half iff max xR >= max(-xR)
        hi, lo = xR.max(axis=-1), xR.min(axis=-1)
        out[..., s:s + step] = np.where(hi >= -lo, np.argmax(xR, axis=-1),
                                        half + np.argmin(xR, axis=-1))
    return out


#: Rows x buckets/2 per block of :func:`lsh_hash` (bounds its working memory).
_HASH_BLOCK = 1 << 16


#: Score given to a query's own key (Reformer masks self-attention unless nothing else is there).
SELF_SCORE = -1e5


def _lsh_prepare(QK, V, n_buckets, n_hashes, chunk_size, rng, rotations):
    QK, _, V = check_qkv(QK, QK, V, same_length=True)
    B, H, n, d = QK.shape
    n_buckets = _check_buckets(n_buckets)
    n_hashes = check_int(n_hashes, "n_hashes", 1)
    if chunk_size is None:
        chunk_size = max(1, n // n_buckets)
    chunk_size = check_int(chunk_size, "chunk_size", 1, n)
    if n % chunk_size:
        raise ValueError(f"chunk_size must divide the sequence length n={n}, got {chunk_size}")
    if rotations is None:
        rotations = as_rng(rng).standard_normal((n_hashes, d, n_buckets // 2))
    rotations = check_array(rotations, "rotations", shape=(n_hashes, d, n_buckets // 2))
    buckets = lsh_hash(QK, n_buckets, rotations)  # (R, B, H, n)
    return QK, V, n_buckets, n_hashes, chunk_size, buckets


def _lsh_sorted(buckets, n):
    """Per round: sort positions by (bucket, position); return order and rank (inverse)."""
    key = buckets * n + np.arange(n)  # (R, B, H, n): stable bucket sort by position
    order = np.argsort(key, axis=-1, kind="stable")  # (R, B, H, n)
    rank = np.argsort(order, axis=-1, kind="stable")  # position -> place in sorted order
    return order, rank


@validate_scalars
@validate_arrays(QK={"ndim": 4})
def lsh_attention_mask(QK, n_buckets: int, n_hashes: int = 1, chunk_size: int | None = None, *,
                       rng=None, rotations=None) -> np.ndarray:
    """The key set :math:`P_i=\\bigcup_r P_i^{(r)}` that :func:`lsh_attention` attends to.

    :math:`P_i^{(r)}` holds the keys of query ``i``'s bucket in hash round ``r`` that lie in the
    same or the previous chunk (cyclically) of that round's sorted order. Query ``i``'s own
    key is removed unless :math:`P_i` holds nothing else (Reformer's self-mask).

    Returns
    -------
    ndarray of bool, shape (B, H, n, n)
        Dense attention under this mask, with scores of shared QK against the normalised keys,
        equals :func:`lsh_attention` (exact given the hashes).

    Notes
    -----
    Survey §7.1.

    References
    ----------
    .. [1] N. Kitaev, Ł. Kaiser, A. Levskaya, "Reformer: The Efficient Transformer", ICLR 2020.
    """
    QK, _, _, n_hashes, chunk_size, buckets = _lsh_prepare(
        QK, QK, n_buckets, n_hashes, chunk_size, rng, rotations)
    n = QK.shape[2]
    _, rank = _lsh_sorted(buckets, n)
    chunk = rank // chunk_size  # (R, B, H, n)
    n_chunks = n // chunk_size
    same_b = buckets[..., :, None] == buckets[..., None, :]  # (R, B, H, n, n)
    dc = (chunk[..., :, None] - chunk[..., None, :]) % n_chunks
    near = (dc == 0) | (dc == 1)
    M = np.any(same_b & near, axis=0)  # (B, H, n, n)
    eye = np.eye(n, dtype=bool)
    others = (M & ~eye).any(axis=-1, keepdims=True)
    return M & ~(eye & others)


@validate_scalars
@validate_arrays(QK={"ndim": 4})
def lsh_attention(QK, V, n_buckets: int, n_hashes: int = 1, chunk_size: int | None = None, *,
                  rng=None, rotations=None, return_buckets: bool = False):
    """Reformer shared-QK LSH attention, Survey §7.1 (Kitaev et al., 2020).

    Queries and keys share one projection (``Q = K``, Survey §7.1); keys are the queries
    normalised to unit length. For each of ``n_hashes`` rounds:

    1. hash: ``h(x) = argmax([xR; -xR])`` with a random Gaussian ``R`` of shape
       ``(d, n_buckets/2)`` (angular LSH);
    2. sort positions by (bucket, position) and cut the sorted sequence into chunks of
       ``chunk_size``;
    3. each query attends to the keys of its own bucket in its own chunk and the previous chunk
       (cyclically), never to itself unless no other key is there (its score is set to -1e5);

    and the rounds are combined with their log-sum-exp weights,
    :math:`o_i=\\sum_r \\exp(z_i^{(r)} - z_i)\\,o_i^{(r)}` with :math:`z_i=\\log\\sum_r
    \\exp z_i^{(r)}`, each score lowered by :math:`\\log N_{ij}` (the number of rounds in
    which ``j`` is attended) so that a key found in several rounds is counted once.

    Parameters
    ----------
    QK : ndarray of shape (B, H, n, d)
        The shared query/key projection.
    V : ndarray of shape (B, H, n, d_v)
    n_buckets : int
        A power of two (>= 2).
    n_hashes : int
        Hash rounds; more rounds → closer to full attention.
    chunk_size : int, optional
        Dividing ``n``; default ``n // n_buckets`` (the average bucket size).
    rng : Generator or int, optional
        Draws the rotations when ``rotations`` is not given.
    rotations : ndarray of shape (n_hashes, d, n_buckets // 2), optional
    return_buckets : bool
        Also return the ``(n_hashes, B, H, n)`` bucket ids.

    Returns
    -------
    ndarray of shape (B, H, n, d_v)
        Equal to dense attention (scores ``q_i·k̂_j/√d``) under :func:`lsh_attention_mask`.

    Notes
    -----
    Time :math:`O(n \\log n + n c\\, d)` per round with chunk size ``c``, memory
    :math:`O(n c)`; the ``n × n`` matrix is never formed.

    References
    ----------
    .. [1] N. Kitaev, Ł. Kaiser, A. Levskaya, "Reformer: The Efficient Transformer", ICLR 2020.
    """
    QK, V, n_buckets, n_hashes, c, buckets = _lsh_prepare(
        QK, V, n_buckets, n_hashes, chunk_size, rng, rotations)
    B, H, n, d = QK.shape
    dv = V.shape[-1]
    nc = n // c
    Kn = QK / np.maximum(np.linalg.norm(QK, axis=-1, keepdims=True), 1e-12)  # unit keys
    order, rank = _lsh_sorted(buckets, n)  # (R, B, H, n)
    chunk_of = rank // c  # (R, B, H, n): chunk of each position in each round
    outs, lses = [], []
    bi = np.arange(B)[:, None, None]
    hi = np.arange(H)[None, :, None]
    for r in range(n_hashes):
        o = order[r]  # (B, H, n)
        Qs = QK[bi, hi, o].reshape(B, H, nc, c, d)  # sorted queries (B, H, nc, c, d)
        Ks = Kn[bi, hi, o].reshape(B, H, nc, c, d)
        Vs = V[bi, hi, o].reshape(B, H, nc, c, dv)
        bs = buckets[r][bi, hi, o].reshape(B, H, nc, c)
        ps = o.reshape(B, H, nc, c)  # original positions
        # look one chunk back (cyclically): keys = [chunk, previous chunk]
        Kc = np.concatenate([Ks, np.roll(Ks, 1, axis=2)], axis=3)  # (B, H, nc, 2c, d)
        Vc = np.concatenate([Vs, np.roll(Vs, 1, axis=2)], axis=3)  # (B, H, nc, 2c, d_v)
        bc = np.concatenate([bs, np.roll(bs, 1, axis=2)], axis=3)  # (B, H, nc, 2c)
        pc = np.concatenate([ps, np.roll(ps, 1, axis=2)], axis=3)
        if nc == 1:  # the previous chunk is the chunk itself: keep one copy
            Kc, Vc, bc, pc = Ks, Vs, bs, ps
        S = Qs @ np.swapaxes(Kc, -1, -2) / np.sqrt(d)  # (B, H, nc, c, 2c)
        allowed = bs[..., :, None] == bc[..., None, :]
        # N_ij: in how many rounds key j is attended by query i (same bucket, near chunk)
        count = np.zeros(S.shape, dtype=np.float64)
        for r2 in range(n_hashes):
            b2 = buckets[r2]
            ch = chunk_of[r2]
            qb = b2[bi, hi, o].reshape(B, H, nc, c)[..., :, None]
            qc = ch[bi, hi, o].reshape(B, H, nc, c)[..., :, None]
            kb = b2[bi[..., None], hi[..., None], pc]  # (B, H, nc, 2c)
            kc = ch[bi[..., None], hi[..., None], pc]
            dc = (qc - kc[..., None, :]) % nc
            count += (qb == kb[..., None, :]) & ((dc == 0) | (dc == 1))
        is_self = ps[..., :, None] == pc[..., None, :]
        S = np.where(is_self, SELF_SCORE, S) - np.log(np.maximum(count, 1.0))
        S = np.where(allowed, S, -np.inf)
        mx = S.max(axis=-1, keepdims=True)  # finite: the query's own key is always allowed
        E = np.exp(S - mx)
        Z = E.sum(axis=-1, keepdims=True)
        out_s = (E / Z) @ Vc  # (B, H, nc, c, d_v)
        lse_s = (mx + np.log(Z))[..., 0]  # (B, H, nc, c)
        # unsort back to original positions
        rk = rank[r]
        outs.append(out_s.reshape(B, H, n, dv)[bi, hi, rk])
        lses.append(lse_s.reshape(B, H, n)[bi, hi, rk])
    L = np.stack(lses)  # (R, B, H, n)
    Lmax = L.max(axis=0)
    wts = np.exp(L - Lmax)
    wts /= wts.sum(axis=0)  # exp(z_r - z)
    out = np.sum(wts[..., None] * np.stack(outs), axis=0)  # (B, H, n, d_v)
    return (out, buckets) if return_buckets else out
