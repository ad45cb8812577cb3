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

from _numerics import assert_close


def _close(a, b, tol=1e-10):
    assert_close(a, b, tol)


def _qkv(rng, B=2, H=2, n=8, d=4):
    return tuple(rng.standard_normal((B, H, n, d)) for _ in range(3))




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


# ------------------------------------------------------------------ Sinkhorn / SortCut hook
@pytest.mark.parametrize("sortcut", [None, 1, 2, 3])
@pytest.mark.parametrize("learned", [False, True])
def test_sinkhorn_hook_matches_array_level(rng, sortcut, learned):
    from refimpl.attention import sinkhorn_attention
    from refimpl.attention.hooks import SinkhornHook

    Q, K, V = _qkv(rng, n=12)
    h = SinkhornHook(3, sortcut, learned=learned, d_head=4, temperature=0.7, n_iters=5, rng=1)
    assert [n for n, _ in h.named_parameters()] == (["W_sort"] if learned else [])
    ref = sinkhorn_attention(Q, K, V, 3, sortcut=sortcut, temperature=0.7, n_iters=5,
                             W_sort=h.W_sort.data if learned else None)
    _close(h(*_t(Q, K, V)).data, ref, 1e-12)
    # an all-True padding mask is no padding
    _close(h(*_t(Q, K, V), np.ones((2, 1, 1, 12), bool)).data, ref, 1e-12)


def test_sinkhorn_hook_sort_matrix_matches_hard_permutation(rng):
    from refimpl.attention import dense_attention, sinkhorn_attention
    from refimpl.attention.hooks import SinkhornHook

    Q, K, V = _qkv(rng, n=12)
    P = np.eye(4)[[2, 3, 1, 0]]  # π = (2, 3, 1, 0): no fixed point, blocks of 3
    for sc in (None, 2):
        h = SinkhornHook(4, sc, sort_matrix=P)
        _close(h(*_t(Q, K, V)).data, sinkhorn_attention(Q, K, V, 4, sort_matrix=P, sortcut=sc),
               1e-13)
    # hard permutation: exactly masked dense attention over {own block, block π(i)}
    blk = np.arange(12) // 3
    allow = (blk[:, None] == blk[None, :]) | (np.array([2, 3, 1, 0])[blk][:, None] == blk)
    _close(SinkhornHook(4, sort_matrix=P)(*_t(Q, K, V)).data, dense_attention(Q, K, V, allow),
           1e-13)
    # SortCut k = n_blocks with a hard permutation is dense attention
    _close(SinkhornHook(4, 4, sort_matrix=P)(*_t(Q, K, V)).data, dense_attention(Q, K, V),
           1e-13)


def test_sinkhorn_hook_padding_equals_truncated_sequence_with_hard_sort(rng):
    """With a hard permutation, padded block 2 (positions 8..11) is invisible: the real
    positions equal the length-8 sequence with the matching permutation."""
    from refimpl.attention import sinkhorn_attention
    from refimpl.attention.hooks import SinkhornHook

    Q, K, V = _qkv(rng, B=1, n=12)
    keep = np.ones((1, 1, 1, 12), bool)
    keep[..., 8:] = False
    short = (Q[:, :, :8], K[:, :, :8], V[:, :, :8])
    P3, P2 = np.eye(3)[[1, 0, 2]], np.eye(2)[[1, 0]]
    out = SinkhornHook(3, sort_matrix=P3)(*_t(Q, K, V), keep).data
    _close(out[:, :, :8], sinkhorn_attention(*short, 2, sort_matrix=P2))
    # padded block sorted to itself: its queries see no real key -> zero context
    assert np.abs(out[:, :, 8:]).max() == 0.0
    # SortCut: sorted blocks π = (1, 2, 0), k = 2 keeps blocks 1 and (padded) 2
    P3c = np.eye(3)[[1, 2, 0]]
    out = SinkhornHook(3, 2, sort_matrix=P3c)(*_t(Q, K, V), keep).data
    _close(out[:, :, :8], sinkhorn_attention(*short, 2, sort_matrix=P2, sortcut=1))


@pytest.mark.parametrize("sortcut", [None, 2])
@pytest.mark.parametrize("learned", [False, True])
def test_sinkhorn_hook_ignores_padded_values(rng, sortcut, learned):
    from refimpl.attention.hooks import SinkhornHook

    Q, K, V = _qkv(rng, n=12)
    keep = np.ones((2, 1, 1, 12), dtype=bool)
    keep[0, ..., 7:] = False  # a partly padded block and a fully padded one
    h = SinkhornHook(3, sortcut, learned=learned, d_head=4, rng=3)
    Q2, K2, V2 = Q.copy(), K.copy(), V.copy()
    Q2[0, :, 7:] *= -4.0
    K2[0, :, 7:] += 5.0
    V2[0, :, 7:] -= 3.0
    a = h(*_t(Q, K, V), keep).data
    b = h(*_t(Q2, K2, V2), keep).data
    _close(a[0, :, :7], b[0, :, :7], 1e-12)
    _close(a[1], b[1], 1e-12)
    assert np.all(np.isfinite(a))
    # ... and padding changes the result (the test can fail)
    assert np.abs(a[0, :, :7] - h(*_t(Q, K, V)).data[0, :, :7]).max() > 1e-6


@pytest.mark.parametrize("sortcut", [None, 1, 2])
@pytest.mark.parametrize("learned", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_sinkhorn_hook_gradcheck(rng, sortcut, learned, padded):
    from refimpl.attention.hooks import SinkhornHook

    Q, K, V = _qkv(rng, B=1, H=2, n=6, d=3)
    h = SinkhornHook(3, sortcut, learned=learned, d_head=3, temperature=0.8, rng=2)
    keep = None
    if padded:
        keep = np.ones((1, 1, 1, 6), dtype=bool)
        keep[..., 3:] = False
        keep[..., 4] = True  # block 1 half padded, block 2 half padded
    gradcheck(lambda q, k, v: h(q, k, v, keep), [Q, K, V])
    if learned:
        W0 = h.W_sort.data.copy()

        def f(W):
            h.W_sort = W
            return h(*_t(Q, K, V), keep)
        gradcheck(f, [W0])


def test_sinkhorn_hook_gradient_flows_through_the_sort(rng):
    """The gradient reaches W_sort (only through S) and is not zero."""
    from refimpl.attention.hooks import SinkhornHook

    Q, K, V = _qkv(rng, n=12)
    h = SinkhornHook(3, learned=True, d_head=4, rng=0)
    out = h(*_t(Q, K, V))
    (out * rng.standard_normal(out.shape)).sum().backward()
    assert h.W_sort.grad is not None and np.abs(h.W_sort.grad).max() > 1e-4


def test_sinkhorn_hook_trains_in_transformer_classifier(rng):
    from refimpl.attention.hooks import SinkhornHook
    from refimpl.nn import TransformerClassifier, cross_entropy
    from refimpl.nn.optim import Adam

    model = TransformerClassifier(vocab_size=12, d_model=8, num_heads=2, d_ff=16, num_layers=2,
                                  max_len=8, n_classes=2, rng=0)
    for layer in model.layers:
        layer.self_attn.attention = SinkhornHook(4, learned=True, d_head=4, rng=1)
    names = [n for n, _ in model.named_parameters()]
    assert "layers.0.self_attn.attention.W_sort" in names
    X = rng.integers(1, 12, size=(6, 8))
    lengths = np.array([8, 8, 6, 5, 8, 7])
    X[np.arange(8)[None, :] >= lengths[:, None]] = 0
    y = (X[:, 0] > 6).astype(int)
    opt = Adam(model.parameters(), lr=1e-2)
    W0 = model.layers[0].self_attn.attention.W_sort.data.copy()
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = cross_entropy(model(X, lengths), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.05, losses
    assert np.abs(model.layers[0].self_attn.attention.W_sort.data - W0).max() > 1e-4


def test_sinkhorn_hook_bad_input(rng):
    from refimpl.attention.hooks import SinkhornHook

    Q, K, V = _qkv(rng, n=12)
    with pytest.raises(ValueError, match="n_blocks"):
        SinkhornHook(5)(*_t(Q, K, V))
    with pytest.raises(ValueError, match="n_blocks"):
        SinkhornHook(24)(*_t(Q, K, V))
    with pytest.raises(ValueError, match="n_blocks"):
        SinkhornHook(0)
    with pytest.raises(ValueError, match="sortcut"):
        SinkhornHook(3, 4)
    with pytest.raises(ValueError, match="sortcut"):
        SinkhornHook(3, 0)
    with pytest.raises(ValueError, match="temperature"):
        SinkhornHook(3, temperature=0.0)
    with pytest.raises(ValueError, match="d_head"):
        SinkhornHook(3, learned=True)
    with pytest.raises(ValueError, match="d_head"):
        SinkhornHook(3, learned=True, d_head=5)(*_t(Q, K, V))
    with pytest.raises(ValueError, match="sort_matrix"):
        SinkhornHook(3, sort_matrix=np.eye(4))
    with pytest.raises(ValueError, match="n_blocks"):
        SinkhornHook(5).attention_memory(12)
    with pytest.raises(ValueError, match="k and v"):  # self-attention only
        SinkhornHook(3)(*_t(Q, K[:, :, :6], V[:, :, :6]))


@pytest.mark.parametrize("learned", [False, True])
def test_sinkhorn_hook_sort_matrix_is_balanced(rng, learned):
    from refimpl.attention import sinkhorn_sort_matrix
    from refimpl.attention.hooks import SinkhornHook

    Q, K, _ = _qkv(rng, n=12)
    row_err = []
    for it in (1, 4, 30):
        h = SinkhornHook(4, learned=learned, d_head=4, n_iters=it, rng=0)
        S = h.sort_matrix_t(*_t(Q, K)).data
        _close(S, sinkhorn_sort_matrix(Q, K, 4, n_iters=it,
                                       W_sort=h.W_sort.data if learned else None), 1e-13)
        _close(S.sum(axis=-2), np.ones((2, 2, 4)), 1e-12)  # columns: the last step
        row_err.append(np.abs(S.sum(axis=-1) - 1).max())
    assert row_err[-1] < 1e-6 and row_err[-1] < row_err[0], row_err


def test_sinkhorn_hook_attention_memory():
    from refimpl.attention.hooks import DenseHook, SinkhornHook

    # n = 1024, nb = 32 blocks of b = 32: H (2 n b + nb²) and H (n k b + nb²)
    assert SinkhornHook(32).attention_memory(1024, 2) == 2 * (2 * 1024 * 32 + 32 * 32)
    assert SinkhornHook(32, 4).attention_memory(1024, 2) == 2 * (1024 * 4 * 32 + 32 * 32)
    assert SinkhornHook(32).attention_memory(1024) < DenseHook().attention_memory(1024) / 10
