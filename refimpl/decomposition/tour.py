"""§6 methods in ``refimpl tour``: low-rank (SVD) layers, TT-embedding, TT-layers and BT-layers.

Each method copies the trained baseline, replaces its :class:`refimpl.nn.Linear` /
:class:`refimpl.nn.Embedding` sub-modules by a factorised module initialised from the trained
weights (truncated SVD, TT-SVD, block-term ALS), fine-tunes briefly with the tour's shared loop
and reports the exact stored size (every remaining parameter at 32 bits).
"""

from __future__ import annotations

import math


from refimpl.registry import MethodResult, TourContext, register_method
from refimpl.decomposition.block_term import BTLinear
from refimpl.decomposition.low_rank import LowRankLinear
from refimpl.decomposition.tensor_train import TTEmbedding, TTLinear, factorize_dim
from refimpl.nn import Module
from refimpl.nn.surgery import factorize_recurrent_weights_, replace_modules

__all__ = ["replace_modules", "factorize_recurrent_weights_", "svd_compress_linears", "tt_compress_embeddings",
           "tt_compress_linears", "bt_compress_linears"]


def _is(kind):
    def pred(m):
        return type(m).__name__ == kind and type(m).__module__.startswith("refimpl.nn")
    return pred


def svd_compress_linears(model: Module, rank_fraction: float = 1 / 3, min_dim: int = 16):
    """Replace each Linear (both dims ≥ ``min_dim``) by :class:`LowRankLinear` with
    ``r = rank_fraction · mn/(m+n)`` (a third of the break-even rank: ~3× fewer weights), and
    factor the recurrent weights of RNN/LSTM/GRU modules the same way."""
    def rank_of(m, n):
        return min(max(1, int(rank_fraction * m * n / (m + n))), m, n)

    def make(lin):
        m, n = lin.W.shape
        if min(m, n) < min_dim:
            return None
        return LowRankLinear.from_dense(lin.W.data, None if lin.b is None else lin.b.data,
                                        rank=rank_of(m, n))

    def make_w(W):
        m, n = W.shape
        return None if min(m, n) < min_dim else LowRankLinear.from_dense(W, rank=rank_of(m, n))

    return (replace_modules(model, _is("Linear"), make)
            + factorize_recurrent_weights_(model, make_w))


def _dims(n: int, d: int):
    try:
        return factorize_dim(n, d)
    except ValueError:
        return None


def tt_compress_linears(model: Module, rank: int = 4, min_dim: int = 16):
    """Replace each Linear whose both sizes factor into 2 modes by a :class:`TTLinear`
    (TT-SVD of the trained weight, TT-rank ``rank``) where that stores fewer numbers; the same
    for the recurrent weights (TT-RNN, Survey §6.3)."""
    def make(lin):
        m, n = lin.W.shape
        if min(m, n) < min_dim:
            return None
        out_dims, in_dims = _dims(m, 2), _dims(n, 2)
        if out_dims is None or in_dims is None:
            return None
        new = TTLinear.from_dense(lin.W.data, None if lin.b is None else lin.b.data,
                                  in_dims=in_dims, out_dims=out_dims, rank=rank)
        return new if new.num_parameters() < lin.num_parameters() else None

    def make_w(W):
        m, n = W.shape
        out_dims, in_dims = _dims(m, 2), _dims(n, 2)
        if min(m, n) < min_dim or out_dims is None or in_dims is None:
            return None
        new = TTLinear.from_dense(W, in_dims=in_dims, out_dims=out_dims, rank=rank)
        return new if new.num_parameters() < W.size else None

    return (replace_modules(model, _is("Linear"), make)
            + factorize_recurrent_weights_(model, make_w))


def bt_compress_linears(model: Module, rank: int = 2, n_blocks: int = 2, min_dim: int = 16):
    """Replace each Linear whose both sizes factor into 2 modes by a :class:`BTLinear`
    (block-term ALS of the trained weight) where that stores fewer numbers; the same for the
    recurrent weights (BT-RNN, Ye et al. 2018)."""
    def make(lin):
        m, n = lin.W.shape
        if min(m, n) < min_dim:
            return None
        out_dims, in_dims = _dims(m, 2), _dims(n, 2)
        if out_dims is None or in_dims is None:
            return None
        R = min(rank, *[a * b for a, b in zip(out_dims, in_dims)])
        new = BTLinear.from_dense(lin.W.data, None if lin.b is None else lin.b.data,
                                  in_dims=in_dims, out_dims=out_dims, rank=R,
                                  n_blocks=n_blocks, n_iter=10)
        return new if new.num_parameters() < lin.num_parameters() else None

    def make_w(W):
        m, n = W.shape
        out_dims, in_dims = _dims(m, 2), _dims(n, 2)
        if min(m, n) < min_dim or out_dims is None or in_dims is None:
            return None
        R = min(rank, *[a * b for a, b in zip(out_dims, in_dims)])
        new = BTLinear.from_dense(W, in_dims=in_dims, out_dims=out_dims, rank=R,
                                  n_blocks=n_blocks, n_iter=10)
        return new if new.num_parameters() < W.size else None

    return (replace_modules(model, _is("Linear"), make)
            + factorize_recurrent_weights_(model, make_w))


def tt_compress_embeddings(model: Module, rank: int = 8, d: int = 3):
    """Replace each Embedding by a :class:`TTEmbedding` (where that stores fewer numbers) (TT-SVD of the trained table, the
    vocabulary padded to ``∏ v_k``, ``v_k = ⌈V^{1/d}⌉``)."""
    def make(emb):
        V, D = emb.W.shape
        emb_dims = _dims(D, d)
        if emb_dims is None:
            return None
        v = int(math.ceil(V ** (1.0 / d) - 1e-9))
        while v ** d < V:
            v += 1
        new = TTEmbedding.from_dense(emb.W.data, voc_dims=(v,) * d, emb_dims=emb_dims,
                                     rank=rank)
        return new if new.num_parameters() < V * D else None  # only where it compresses
    return replace_modules(model, _is("Embedding"), make)


def _result(model, notes, replaced):
    n = int(model.num_parameters())
    return MethodResult(model, bits=32 * n, params=n, notes=notes,
                        extra={"replaced": ", ".join(replaced)})


def _finetune(ctx: TourContext, model):
    ctx.fit(model, epochs=1 if ctx.quick else 3, lr=1e-3)


def _compress_finetune(ctx: TourContext, compress, missing: str, notes) -> MethodResult:
    """Copy the baseline, ``compress`` it in place (returns the replaced names), fine-tune.

    ``missing`` completes "the baseline has no ..." when nothing could be replaced;
    ``notes(n_replaced)`` is the table's note.
    """
    model = ctx.copy_baseline()
    replaced = compress(model)
    if not replaced:
        raise ValueError(f"the baseline has no {missing}")
    _finetune(ctx, model)
    return _result(model, notes(len(replaced)), replaced)


@register_method("svd-low-rank", family="decomposition", section="6.1",
                 description="every Linear and recurrent weight -> truncated-SVD factors at 1/3 "
                             "of the break-even rank, fine-tuned")
def _svd_low_rank(ctx: TourContext) -> MethodResult:
    return _compress_finetune(ctx, svd_compress_linears, "Linear layer with both sizes >= 16",
                              lambda k: f"rank-r SVD factors for {k} weights")


@register_method("tt-embedding", family="decomposition", section="6.3",
                 description="embedding -> TT-embedding (3 cores, TT-rank 8, TT-SVD init), "
                             "fine-tuned")
def _tt_embedding(ctx: TourContext) -> MethodResult:
    return _compress_finetune(ctx, tt_compress_embeddings,
                              "Embedding whose width factors into 3 modes",
                              lambda k: "TT-embedding rank 8")


@register_method("tt-layer", family="decomposition", section="6.3",
                 description="Linear and recurrent weights -> TT-matrices (2 cores, TT-rank 4), "
                             "fine-tuned")
def _tt_layer(ctx: TourContext) -> MethodResult:
    return _compress_finetune(ctx, tt_compress_linears, "Linear layer whose sizes factor",
                              lambda k: f"TT-matrices (rank 4) for {k} weights")


@register_method("btd-layer", family="decomposition", section="6.3",
                 description="Linear and recurrent weights -> block-term format (2 blocks, "
                             "Tucker rank 2), fine-tuned")
def _btd_layer(ctx: TourContext) -> MethodResult:
    return _compress_finetune(ctx, bt_compress_linears, "Linear layer whose sizes factor",
                              lambda k: f"block-term (N=2, R=2) for {k} weights")

