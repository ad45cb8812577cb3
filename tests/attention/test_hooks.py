"""Tensor-level hooks: forward equals the array-level twin; gradients pass gradcheck."""

import numpy as np
import pytest

from refimpl.attention import (
    dense_attention,
    linear_attention,
    linformer_attention,
    longformer_attention,
    lsh_attention,
)
from refimpl.attention.hooks import (
    DenseHook,
    LinearAttentionHook,
    LinformerHook,
    LongformerHook,
    LSHHook,
)
from refimpl.nn import Tensor, gradcheck


def _qkv(rng, B=2, H=2, n=8, d=4):
    return tuple(rng.standard_normal((B, H, n, d)) for _ in range(3))


def _close(a, b, tol=1e-10):
    err = np.abs(a - b).max()
    assert err <= tol, f"max abs err {err:.3e}, max rel err {err / np.abs(b).max():.3e}"


def _t(*xs):
    return [Tensor(x) for x in xs]


def test_dense_and_longformer_hooks_match(rng):
    Q, K, V = _qkv(rng)
    _close(DenseHook()(*_t(Q, K, V)).data, dense_attention(Q, K, V))
    h = LongformerHook(2, 1, (-1,))
    _close(h(*_t(Q, K, V)).data, longformer_attention(Q, K, V, 2, 1, (7,)))


def test_linformer_hook_matches_and_shares(rng):
    Q, K, V = _qkv(rng)
    h = LinformerHook(8, 3, num_heads=2, sharing="headwise", rng=0)
    _close(h(*_t(Q, K, V)).data, linformer_attention(Q, K, V, h.E.data, h.F.data))
    kv = LinformerHook(8, 3, sharing="key-value", rng=0)
    assert [n for n, _ in kv.named_parameters()] == ["E"]
    _close(kv(*_t(Q, K, V)).data, linformer_attention(Q, K, V, kv.E.data))
    per = LinformerHook(8, 3, num_heads=2, sharing="none", rng=0)
    _close(per(*_t(Q, K, V)).data, linformer_attention(Q, K, V, per.E.data, per.F.data))
    # shorter input uses the first n columns
    _close(h(*_t(Q[:, :, :6], K[:, :, :6], V[:, :, :6])).data,
           linformer_attention(Q[:, :, :6], K[:, :, :6], V[:, :, :6], h.E.data[:, :6],
                               h.F.data[:, :6]))
    with pytest.raises(ValueError, match="q"):
        LinformerHook(4, 2)(*_t(Q, K, V))


def test_linformer_hook_ignores_padded_keys(rng):
    Q, K, V = _qkv(rng)
    keep = np.ones((2, 1, 1, 8), dtype=bool)
    keep[0, ..., 6:] = False
    h = LinformerHook(8, 3, rng=0)
    K2, V2 = K.copy(), V.copy()
    K2[0, :, 6:] += 5.0
    V2[0, :, 6:] -= 3.0
    _close(h(*_t(Q, K, V), keep).data, h(*_t(Q, K2, V2), keep).data, 1e-12)


def test_linear_hook_matches(rng):
    Q, K, V = _qkv(rng)
    _close(LinearAttentionHook()(*_t(Q, K, V)).data, linear_attention(Q, K, V))


def test_lsh_hook_matches_lsh_attention(rng):
    Q, _, V = _qkv(rng, n=16)
    h = LSHHook(4, 2, rng=5)
    out = h(*_t(Q, Q, V)).data
    _close(out, lsh_attention(Q, V, 4, 2, 4, rng=5))


@pytest.mark.parametrize("make", [lambda: DenseHook(), lambda: LongformerHook(2, 1, (0,)),
                                  lambda: LinformerHook(5, 2, num_heads=1, rng=0),
                                  lambda: LinearAttentionHook()])
def test_hooks_gradcheck(rng, make):
    Q, K, V = _qkv(rng, B=1, H=1, n=5, d=3)
    hook = make()
    keep = np.ones((1, 1, 1, 5), dtype=bool)
    keep[..., 4] = False
    gradcheck(lambda q, k, v: hook(q, k, v, keep), [Q, K, V])


def test_lsh_hook_gradcheck(rng):
    Q, _, V = _qkv(rng, B=1, H=1, n=8, d=3)

    def f(q, v):
        return LSHHook(2, 2, rng=1)(q, q, v)  # same rotations each call: a fixed key set
    gradcheck(f, [Q, V])


def test_linformer_hook_param_gradcheck(rng):
    Q, K, V = _qkv(rng, B=1, H=1, n=5, d=3)
    h = LinformerHook(5, 2, rng=0)
    E0 = h.E.data.copy()

    def f(E):
        h.E = E
        return h(*_t(Q, K, V))
    gradcheck(f, [E0])


def test_mask_hooks_match_array_level(rng):
    from refimpl.attention import (blockbert_attention, efficient_attention,
                                   sparse_transformer_attention)
    from refimpl.attention.hooks import (BlockBERTHook, EfficientAttentionHook,
                                         SparseTransformerHook)

    Q, K, V = _qkv(rng, n=12)
    P = [[1, 2, 0], [0, 1, 2]]
    _close(BlockBERTHook(3, P)(*_t(Q, K, V)).data, blockbert_attention(Q, K, V, 3, P))
    _close(SparseTransformerHook("fixed", 4, 2, causal=True)(*_t(Q, K, V)).data,
           sparse_transformer_attention(Q, K, V, "fixed", 4, c=2, causal=True))
    _close(EfficientAttentionHook()(*_t(Q, K, V)).data, efficient_attention(Q, K, V))
    # trimmed length not divisible by n_blocks: blocks of ceil(n / n_blocks)
    out = BlockBERTHook(3)(*_t(Q[:, :, :10], K[:, :, :10], V[:, :, :10])).data
    assert out.shape == (2, 2, 10, 4) and np.all(np.isfinite(out))


def test_efficient_hook_ignores_padded_keys(rng):
    from refimpl.attention import efficient_attention
    from refimpl.attention.hooks import EfficientAttentionHook

    Q, K, V = _qkv(rng)
    keep = np.ones((2, 1, 1, 8), dtype=bool)
    keep[:, ..., 6:] = False
    out = EfficientAttentionHook()(*_t(Q, K, V), keep).data
    _close(out, efficient_attention(Q, K[:, :, :6], V[:, :, :6]))


@pytest.mark.parametrize("which", ["blockbert", "sparse", "efficient"])
def test_mask_hooks_gradcheck(rng, which):
    from refimpl.attention.hooks import (BlockBERTHook, EfficientAttentionHook,
                                         SparseTransformerHook)

    hook = {"blockbert": BlockBERTHook(2, [1, 0]), "sparse": SparseTransformerHook("strided", 2),
            "efficient": EfficientAttentionHook()}[which]
    Q, K, V = _qkv(rng, B=1, H=1, n=6, d=3)
    gradcheck(lambda q, k, v: hook(q, k, v), [Q, K, V])


def test_star_hook_matches_first_cycle_and_gradchecks(rng):
    from refimpl.attention import star_attention
    from refimpl.attention.hooks import StarHook

    Q, K, V = _qkv(rng, n=7)
    _close(StarHook()(*_t(Q, K, V)).data, star_attention(Q, K, V))
    keep = np.ones((2, 1, 1, 7), dtype=bool)
    keep[1, ..., 5:] = False
    out = StarHook()(*_t(Q, K, V), keep).data
    # interior positions 1..3 of the padded sequence see the same ring and relay as the
    # truncated length-5 sequence (positions 0 and 4 wrap around differently)
    ref = star_attention(Q[1:, :, :5], K[1:, :, :5], V[1:, :, :5])[0]
    _close(out[1, :, 1:4], ref[:, 1:4])
    assert np.abs(out[1, :, 0] - ref[:, 0]).max() > 1e-6
    Qs, Ks, Vs = _qkv(rng, B=1, H=1, n=4, d=3)
    gradcheck(lambda q, k, v: StarHook()(q, k, v), [Qs, Ks, Vs])
