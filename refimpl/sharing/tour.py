"""§5 methods in ``refimpl tour``: parameter sharing.

``hashednets-lstm`` stores every recurrent weight matrix of the trained LSTM baseline as a
HashedNets layer (Chen et al. 2015) with an eighth of its entries as real parameters: the
virtual matrix ``V_ij = ξ(i,j)·w[h(i,j)]`` is never formed (the forward and backward run through
the hashed kernels), ``w`` starts at the least-squares projection of the trained matrix onto the
hashed span (``w_k`` = mean of ``ξ·W`` over the entries of bucket ``k``), and the model is
fine-tuned with the tour's loop. The stored size counts ``w``, every other parameter and the
two 32-bit hash seeds of every hashed matrix.

``albert-share-all`` (§5.3, Lan et al. 2020) ties every encoder layer of the trained Transformer
baseline to one layer whose parameters start at the mean of the L trained layers', then
fine-tunes: the encoder stores one layer instead of L.

``quaternion-ffn`` (§5.3, Tay et al. 2019) replaces both feed-forward matrices of every encoder
layer by :class:`~refimpl.sharing.QuaternionLinear` layers (¼ of the weights), initialised by
the least-squares projection of the trained matrix onto the quaternion block structure
(:func:`quaternion_projection`), then fine-tunes; ``quaternion-transformer`` does the same for
the Q/K/V/O projections too (Tay et al.'s Quaternion Transformer).

``lightrnn-embedding`` (§5.2, Li et al. 2016) stores the LSTM baseline's embedding as LightRNN's
2-component shared table: ``2⌈√V⌉`` half-size vectors (rows and columns) and a table putting
each word in a distinct cell. The cells come from LightRNN's allocation step (a minimum-weight
matching, :func:`~refimpl.sharing.lightrnn_allocate`) with the loss of a word in a row (column)
= the squared distance of its trained half-vector to the row's (column's) k-means centroid;
the vectors are then the least-squares means of their words' halves, and the model is
fine-tuned. Stored: the vectors, the rest of the model and ``V·2⌈log2 K⌉`` table bits.
"""


from __future__ import annotations

import numpy as np

from refimpl.kernels.hashing import xxh32_pair
from refimpl.nn.surgery import factorize_recurrent_weights_
from refimpl.registry import MethodResult, TourContext, register_method
from refimpl.nn.module import ModuleList
from refimpl.sharing.hashing import HashedLinear, hash_seeds
from refimpl.sharing.lightrnn import lightrnn_allocate
from refimpl.sharing.quaternion import QuaternionLinear
from refimpl.sharing.subvectors import SubvectorEmbedding, block_kmeans

__all__ = ["hashed_projection", "hash_recurrent_weights_", "quaternion_projection",
           "share_all_layers_", "quaternion_ffn_", "lightrnn_embedding_"]

_SEED_BITS = 32


def hashed_projection(W, K: int, seed: int) -> np.ndarray:
    """The ``w`` (K,) whose hashed matrix is closest to ``W`` in Frobenius norm (Survey §5.2).

    The buckets partition the entries, so ``V(w) = Σ_k w_k S_k`` with disjoint signed supports
    and the least-squares solution is ``w_k = Σ_{(i,j) ∈ k} ξ_ij W_ij / |k|`` (0 for an empty
    bucket).

    Parameters
    ----------
    W : ndarray of shape (out_features, in_features)
    K : int >= 1
    seed : int
        As in :class:`refimpl.sharing.HashedLinear` (the bucket and sign seeds derive from it).

    Returns
    -------
    ndarray of shape (K,)
    """
    W = np.asarray(W, dtype=np.float64)
    out_f, in_f = W.shape
    s_h, s_xi = hash_seeds(seed)
    i = np.repeat(np.arange(out_f, dtype=np.uint64), in_f)
    j = np.tile(np.arange(in_f, dtype=np.uint64), out_f)
    k = xxh32_pair(i, j, s_h).astype(np.int64) % K  # bucket of every entry, row-major
    xi = 1.0 - 2.0 * (xxh32_pair(i, j, s_xi) & 1).astype(np.float64)  # sign of every entry
    total = np.bincount(k, weights=xi * W.ravel(), minlength=K)
    count = np.bincount(k, minlength=K)
    return np.divide(total, count, out=np.zeros(K), where=count > 0)


def hash_recurrent_weights_(model, fraction: float = 1 / 8, seed: int = 0) -> list:
    """Store every ``W_ih``/``W_hh`` of the model's recurrent layers as a
    :class:`~refimpl.sharing.HashedLinear` with ``K = fraction · size`` real weights, initialised
    by :func:`hashed_projection` (in place). Returns the hashed layers."""
    layers = []

    def make(W):
        out_f, in_f = W.shape
        K = max(1, int(fraction * W.size))
        layer = HashedLinear(in_f, out_f, K, bias=False, seed=seed + len(layers))
        layer.w.data = hashed_projection(W, K, layer.seed).astype(W.dtype)
        layers.append(layer)
        return layer

    factorize_recurrent_weights_(model, make)
    return layers


@register_method("hashednets-lstm", family="sharing", section="5.2",
                 description="recurrent weights -> HashedNets layers with 1/8 of the entries as "
                             "real weights (least-squares init from the trained matrices), "
                             "fine-tuned")
def _hashednets_lstm(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline("lstm")
    layers = hash_recurrent_weights_(model, 1 / 8, seed=ctx.seed)
    ctx.fit(model)
    bits = 32 * model.num_parameters() + 2 * _SEED_BITS * len(layers)
    return MethodResult(model, bits=bits, params=model.num_parameters(),
                        notes=f"{len(layers)} recurrent matrices hashed, K = 1/8 of each; "
                              "2 seeds each",
                        extra={"baseline": "lstm"})


# ------------------------------------------------------------------ ALBERT sharing (§5.3)
def share_all_layers_(model) -> None:
    """Tie every layer of ``model.layers`` to one layer (in place) whose parameters are the mean
    of the layers' trained parameters (ALBERT's all-shared encoder, Survey §5.3)."""
    layers = list(model.layers)
    first = layers[0]
    for name, p in first.named_parameters():
        others = [dict(layer.named_parameters())[name].data for layer in layers]
        p.data = np.mean(others, axis=0)
    model.layers = ModuleList([first] * len(layers))            # one object, L uses


@register_method("albert-share-all", family="sharing", section="5.3",
                 description="all encoder layers tied to one (ALBERT), initialised at the mean "
                             "of the trained layers, fine-tuned")
def _albert_share_all(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline("transformer")
    L = len(model.layers)
    share_all_layers_(model)
    ctx.fit(model)
    return MethodResult(model, bits=32 * model.num_parameters(), params=model.num_parameters(),
                        notes=f"{L} layers -> 1 shared layer", extra={"baseline": "transformer"})


# ------------------------------------------------------------------ quaternion FFN (§5.3)
def quaternion_projection(W):
    r"""The quaternion weight ``(W_r, W_i, W_j, W_k)`` whose real block matrix
    (:func:`~refimpl.sharing.quaternion_block_matrix`) is closest to ``W`` in Frobenius norm.

    Each component appears in four disjoint ``(out/4, in/4)`` blocks with a sign, so the least
    squares solution is the mean of the four signed blocks: e.g. ``W_i = ¼(W_10 − W_01 − W_23 +
    W_32)`` with ``W_ab`` the block in block-row a, block-column b.

    Parameters
    ----------
    W : ndarray of shape (out_features, in_features), both multiples of 4

    Returns
    -------
    tuple of four ndarrays of shape (out_features/4, in_features/4)
    """
    W = np.asarray(W, dtype=np.float64)
    o, i = W.shape[0] // 4, W.shape[1] // 4
    if W.ndim != 2 or W.shape != (4 * o, 4 * i) or o == 0 or i == 0:
        raise ValueError(f"W must be 2-D with both sizes positive multiples of 4, got {W.shape}")
    blk = W.reshape(4, o, 4, i).transpose(0, 2, 1, 3)           # (4, 4, o, i): blk[a, b]
    W_r = (blk[0, 0] + blk[1, 1] + blk[2, 2] + blk[3, 3]) / 4
    W_i = (blk[1, 0] - blk[0, 1] - blk[2, 3] + blk[3, 2]) / 4
    W_j = (blk[2, 0] - blk[0, 2] + blk[1, 3] - blk[3, 1]) / 4
    W_k = (blk[3, 0] - blk[0, 3] - blk[1, 2] + blk[2, 1]) / 4
    return W_r, W_i, W_j, W_k


def _to_quaternion(lin) -> QuaternionLinear:
    q = QuaternionLinear(lin.in_features, lin.out_features, bias=lin.b is not None, rng=0)
    for attr, comp in zip(("W_r", "W_i", "W_j", "W_k"), quaternion_projection(lin.W.data)):
        getattr(q, attr).data = comp.astype(lin.W.data.dtype)
    if lin.b is not None:
        q.b.data = lin.b.data.copy()
    return q


def quaternion_ffn_(model, attention: bool = False) -> list:
    """Replace ``linear1``/``linear2`` of every layer of ``model.layers`` (and, with
    ``attention``, the Q/K/V/O projections of its self-attention: Tay et al.'s Quaternion
    Transformer) by QuaternionLinear layers initialised by :func:`quaternion_projection` (in
    place). Returns the new layers.

    The attention scores stay the real dot products ``q·k``; for quaternions that is
    ``Σ_u Re(q_u ⊗ k̄_u)`` (the real part of the Hamilton product with the conjugate), so the
    quaternion attention needs no other change."""
    new = []
    for layer in model.layers:
        names = [(layer, "linear1"), (layer, "linear2")]
        if attention:
            names += [(layer.self_attn, n) for n in ("W_q", "W_k", "W_v", "W_o")]
        for owner, name in names:
            q = _to_quaternion(getattr(owner, name))
            setattr(owner, name, q)
            new.append(q)
    return new


@register_method("quaternion-ffn", family="sharing", section="5.3",
                 description="every FFN matrix of the Transformer as a quaternion layer (1/4 of "
                             "the weights), least-squares init from the trained matrix, "
                             "fine-tuned")
def _quaternion_ffn(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline("transformer")
    layers = quaternion_ffn_(model)
    ctx.fit(model)
    return MethodResult(model, bits=32 * model.num_parameters(), params=model.num_parameters(),
                        notes=f"{len(layers)} FFN matrices as quaternion layers",
                        extra={"baseline": "transformer"})


# ------------------------------------------------------------------ LightRNN embedding (§5.2)
def lightrnn_embedding_(model, seed: int = 0) -> SubvectorEmbedding:
    """Replace ``model.embedding`` (V, d), d even, by a LightRNN 2-component table (in place):
    ``K = ⌈√V⌉`` row and column vectors of size d/2, words to distinct cells by the exact
    matching of their halves' squared distances to the k-means centroids. Returns the new
    embedding (a :class:`~refimpl.sharing.SubvectorEmbedding` with B = 2)."""
    W = model.embedding.W.data
    V, d = W.shape
    if d % 2:
        raise ValueError(f"the embedding size must be even, got {d}")
    K = int(np.ceil(np.sqrt(V)))
    _, cent = block_kmeans(W, 2, min(K, V), rng=seed)            # (2, K, d/2)
    halves = W.reshape(V, 2, d // 2)
    row_loss = ((halves[:, 0, None, :] - cent[0][None]) ** 2).sum(-1)   # (V, K)
    col_loss = ((halves[:, 1, None, :] - cent[1][None]) ** 2).sum(-1)   # (V, K)
    rows, cols, _ = lightrnn_allocate(row_loss, col_loss, "exact")     # distinct cells
    pad = getattr(model.embedding, "padding_idx", None)
    emb = SubvectorEmbedding(V, d, num_blocks=2, num_refs=cent.shape[1],
                             assignment=np.stack([rows, cols], 1), padding_idx=pad, rng=seed)
    R = emb.R.data
    for b, idx in enumerate((rows, cols)):                       # least squares: the means
        keep = np.ones(V, bool) if pad is None else np.arange(V) != pad
        sums = np.zeros_like(R[b])
        np.add.at(sums, idx[keep], halves[keep, b])
        counts = np.bincount(idx[keep], minlength=R.shape[1])[:, None]
        R[b] = np.where(counts > 0, sums / np.maximum(counts, 1), cent[b])
    model.embedding = emb
    return emb


@register_method("lightrnn-embedding", family="sharing", section="5.2",
                 description="the LSTM's embedding as LightRNN's row/column table (2 sqrt(V) "
                             "half vectors, words placed by the exact matching), fine-tuned")
def _lightrnn_embedding(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline("lstm")
    emb = lightrnn_embedding_(model, seed=ctx.seed)
    ctx.fit(model)
    table_bits = emb.storage_bits(32) - 32 * emb.num_parameters()
    return MethodResult(model, bits=32 * model.num_parameters() + table_bits,
                        params=model.num_parameters(),
                        notes=f"{emb.num_embeddings} words in a {emb.num_refs}x{emb.num_refs} "
                              "table", extra={"baseline": "lstm"})


@register_method("quaternion-transformer", family="sharing", section="5.3",
                 description="Tay et al.'s Quaternion Transformer: attention projections and FFN "
                             "of every layer as quaternion layers (1/4 of the weights), "
                             "least-squares init, fine-tuned")
def _quaternion_transformer(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline("transformer")
    layers = quaternion_ffn_(model, attention=True)
    ctx.fit(model)
    return MethodResult(model, bits=32 * model.num_parameters(), params=model.num_parameters(),
                        notes=f"{len(layers)} matrices (Q/K/V/O and FFN) as quaternion layers",
                        extra={"baseline": "transformer"})
