"""§5 methods in ``refimpl tour``: parameter sharing.

``hashednets-lstm`` stores every recurrent weight matrix of the trained LSTM baseline as a
HashedNets layer (Chen et al. 2015) with an eighth of its entries as real parameters: the
virtual matrix ``V_ij = ξ(i,j)·w[h(i,j)]`` is never formed (the forward and backward run through
the hashed kernels), ``w`` starts at the least-squares projection of the trained matrix onto the
hashed span (``w_k`` = mean of ``ξ·W`` over the entries of bucket ``k``), and the model is
fine-tuned with the tour's loop. The stored size counts ``w``, every other parameter and the
two 32-bit hash seeds of every hashed matrix.
"""

from __future__ import annotations

import numpy as np

from refimpl.kernels.hashing import xxh32_pair
from refimpl.nn.surgery import factorize_recurrent_weights_
from refimpl.registry import MethodResult, TourContext, register_method
from refimpl.sharing.hashing import HashedLinear, hash_seeds

__all__ = ["hashed_projection", "hash_recurrent_weights_"]

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
