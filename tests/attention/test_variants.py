"""§7 attention variants: exactness against masked dense attention (Eq. 68), properties,
bad input, and cross-checks against torch's scaled_dot_product_attention."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.attention import (
    attention_weights,
    blockbert_attention,
    blockbert_mask,
    causal_mask,
    dense_attention,
    dense_attention_t,
    efficient_attention,
    efficient_attention_quadratic,
    efficient_attention_survey_form,
    elu_feature_map,
    linear_attention,
    linear_attention_quadratic,
    linformer_attention,
    linformer_projections,
    longformer_attention,
    longformer_mask,
    lsh_attention,
    lsh_attention_mask,
    sinkhorn_attention,
    sinkhorn_normalize,
    sparse_transformer_attention,
    sparse_transformer_mask,
    star_attention,
    star_attention_mask,
)
from refimpl.nn import gradcheck

from _numerics import assert_close as _close


def _qkv(rng, B=2, H=3, n=24, d=8, dv=None):
    dv = d if dv is None else dv
    return (rng.standard_normal((B, H, n, d)), rng.standard_normal((B, H, n, d)),
            rng.standard_normal((B, H, n, dv)))




# ------------------------------------------------------------------------------ dense, Eq. (68)
def test_dense_hand_worked():
    # two keys with scores 0 and log(3)*sqrt(d)/... : weights 1/4, 3/4
    d = 4
    Q = np.zeros((1, 1, 1, d))
    Q[..., 0] = 1.0
    K = np.zeros((1, 1, 2, d))
    K[0, 0, 1, 0] = np.log(3.0) * np.sqrt(d)
    V = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
    out, W = dense_attention(Q, K, V, return_weights=True)
    _close(W[0, 0, 0], np.array([0.25, 0.75]))
    _close(out[0, 0, 0], np.array([0.25, 0.75]))


def test_dense_mask_empty_row_gives_zero(rng):
    Q, K, V = _qkv(rng, n=5)
    mask = np.ones((5, 5), dtype=bool)
    mask[2] = False
    out, W = dense_attention(Q, K, V, mask, return_weights=True)
    assert np.all(out[:, :, 2] == 0) and np.all(W[:, :, 2] == 0)
    _close(W.sum(-1)[:, :, [0, 1, 3, 4]], np.ones((2, 3, 4)))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(1, 12), seed=st.integers(0, 1000),
       scale=st.floats(0.1, 30.0))
def test_attention_rows_sum_to_one(n, m, seed, scale):
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((1, 2, n, 4)) * scale
    K = rng.standard_normal((1, 2, m, 4)) * scale
    W = attention_weights(Q, K)
    assert np.all(W >= 0)
    np.testing.assert_allclose(W.sum(-1), 1.0, atol=1e-12)


def test_dense_permutation_equivariance(rng):
    Q, K, V = _qkv(rng)
    p = rng.permutation(Q.shape[2])
    _close(dense_attention(Q[:, :, p], K[:, :, p], V[:, :, p]), dense_attention(Q, K, V)[:, :, p])
    # keys/values permuted together: output unchanged (a set function of the keys)
    _close(dense_attention(Q, K[:, :, p], V[:, :, p]), dense_attention(Q, K, V))


@pytest.mark.parametrize("masked", [False, True])
def test_dense_vs_torch_sdpa(torch, rng, masked):
    Q, K, V = _qkv(rng, n=10, d=6, dv=5)
    mask = rng.random((10, 10)) < 0.6 if masked else None
    if masked:
        mask[np.arange(10), np.arange(10)] = True
    ref = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(Q), torch.from_numpy(K), torch.from_numpy(V),
        attn_mask=None if mask is None else torch.from_numpy(mask)).numpy()
    _close(dense_attention(Q, K, V, mask), ref, 1e-12)


def test_dense_causal_vs_torch(torch, rng):
    Q, K, V = _qkv(rng, n=9)
    ref = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(Q), torch.from_numpy(K), torch.from_numpy(V), is_causal=True).numpy()
    _close(dense_attention(Q, K, V, causal_mask(9)), ref)


def test_dense_t_matches_and_gradchecks(rng):
    Q, K, V = _qkv(rng, B=1, H=2, n=5, d=3)
    mask = np.tril(np.ones((5, 5), dtype=bool))
    from refimpl.nn import Tensor
    _close(dense_attention_t(Tensor(Q), Tensor(K), Tensor(V), mask).data,
           dense_attention(Q, K, V, mask))
    gradcheck(lambda q, k, v: dense_attention_t(q, k, v, mask), [Q, K, V])


def test_bad_input_names_argument(rng):
    Q, K, V = _qkv(rng)
    with pytest.raises(ValueError, match="d mismatch"):
        dense_attention(Q, K[..., :4], V)
    with pytest.raises(ValueError, match="Q"):
        dense_attention(Q[0], K, V)
    with pytest.raises(ValueError, match="V"):
        dense_attention(Q, K, V[:, :, :5])
    with pytest.raises(TypeError, match="mask"):
        dense_attention(Q, K, V, np.ones((24, 24)))
    with pytest.raises(ValueError, match="Q"):
        dense_attention(np.full_like(Q, np.nan), K, V)
    with pytest.raises(ValueError, match="window"):
        longformer_attention(Q, K, V, window=26)
    with pytest.raises(ValueError, match="window"):
        longformer_attention(Q, K, V, window=3)
    with pytest.raises(ValueError, match="dilation"):
        longformer_attention(Q, K, V, window=4, dilation=0)
    with pytest.raises(ValueError, match="global_idx"):
        longformer_attention(Q, K, V, window=4, global_idx=[24])
    with pytest.raises(ValueError, match="n_buckets"):
        lsh_attention(Q, V, n_buckets=6)
    with pytest.raises(ValueError, match="chunk_size"):
        lsh_attention(Q, V, n_buckets=4, chunk_size=5)
    with pytest.raises(ValueError, match="n_blocks"):
        blockbert_attention(Q, K, V, n_blocks=5)
    with pytest.raises(ValueError, match="permutations"):
        blockbert_attention(Q, K, V, n_blocks=4, permutations=[0, 0, 1, 2])
    with pytest.raises(ValueError, match="stride"):
        sparse_transformer_attention(Q, K, V, stride=0)
    with pytest.raises(ValueError, match="pattern"):
        sparse_transformer_attention(Q, K, V, pattern="diagonal")
    with pytest.raises(ValueError, match="E"):
        linformer_attention(Q, K, V, np.eye(4, 23))
    with pytest.raises(ValueError, match="k"):
        linformer_projections(24, 25)
    with pytest.raises(ValueError, match="sortcut"):
        sinkhorn_attention(Q, K, V, 4, sortcut=5)
    with pytest.raises(ValueError, match="V"):
        star_attention(Q, K, V[..., :4])
    with pytest.raises(ValueError, match="n >= 3"):
        star_attention(Q[:, :, :2], K[:, :, :2], V[:, :, :2])


# ------------------------------------------------------------------------------ exact variants
@pytest.mark.parametrize("perms", [None, [1, 2, 3, 0], [[0, 1, 2, 3], [1, 0, 3, 2], [3, 2, 1, 0]]])
def test_blockbert_equals_masked_dense(rng, perms):
    Q, K, V = _qkv(rng, dv=5)
    m = blockbert_mask(24, 4, perms, num_heads=3)[:, 0][None]  # (1, H, n, n)
    _close(blockbert_attention(Q, K, V, 4, perms), dense_attention(Q, K, V, m))


def test_blockbert_one_block_is_dense(rng):
    Q, K, V = _qkv(rng)
    _close(blockbert_attention(Q, K, V, 1), dense_attention(Q, K, V))


@pytest.mark.parametrize("pattern", ["strided", "fixed"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("component", [None, 1, 2])
@pytest.mark.parametrize("stride,n", [(5, 24), (4, 16), (1, 7), (7, 7)])
def test_sparse_transformer_equals_masked_dense(rng, pattern, causal, component, stride, n):
    Q, K, V = _qkv(rng, B=1, n=n, dv=3)
    c = min(2, stride)
    m = sparse_transformer_mask(n, pattern, stride, c=c, causal=causal, component=component)
    out = sparse_transformer_attention(Q, K, V, pattern, stride, c=c, causal=causal,
                                       component=component)
    _close(out, dense_attention(Q, K, V, m))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("block", [1, 5, 9])
def test_sparse_transformer_band_blocks_cover_every_query(rng, monkeypatch, causal, block):
    # the band is scored and applied block by block; blocks smaller and larger than the
    # stride, and a ragged last block, must all give masked dense attention
    from refimpl.attention import superlinear

    monkeypatch.setattr(superlinear, "_BAND_BLOCK", block)
    Q, K, V = _qkv(rng, B=2, n=23, dv=3)
    for component in (None, 1):
        m = sparse_transformer_mask(23, "strided", 4, causal=causal, component=component)
        out = sparse_transformer_attention(Q, K, V, "strided", 4, causal=causal,
                                           component=component)
        _close(out, dense_attention(Q, K, V, m))


def test_sparse_transformer_bidirectional_fast_path_float32(rng):
    # non-causal strided: band on the sliding-window kernel, residue merged by log-sum-exp
    Q, K, V = (x.astype(np.float32) for x in _qkv(rng, B=2, n=50, dv=3))
    out = sparse_transformer_attention(Q, K, V, "strided", 6, causal=False)
    assert out.dtype == np.float32
    m = sparse_transformer_mask(50, "strided", 6, causal=False)
    ref = dense_attention(*(x.astype(np.float64) for x in (Q, K, V)), m)
    np.testing.assert_allclose(out, ref, atol=2e-6)


def test_sparse_transformer_mask_hand_worked():
    m = sparse_transformer_mask(6, "strided", 2, causal=True)
    # strided l=2: previous position or same parity
    expect = np.array([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
                       [0, 1, 1, 1, 0, 0], [1, 0, 1, 1, 1, 0], [0, 1, 0, 1, 1, 1]], bool)
    np.testing.assert_array_equal(m, expect)
    f = sparse_transformer_mask(6, "fixed", 3, c=1, causal=False)
    # own block of 3, plus column 2 and 5 (the last of each block)
    assert f[0].tolist() == [True, True, True, False, False, True]
    assert f[4].tolist() == [False, False, True, True, True, True]


@pytest.mark.parametrize("n_hashes", [1, 2, 4])
@pytest.mark.parametrize("chunk_size", [None, 3, 8, 24])
def test_lsh_equals_dense_under_its_key_set(rng, n_hashes, chunk_size):
    QK, _, V = _qkv(rng)
    out = lsh_attention(QK, V, 4, n_hashes, chunk_size, rng=7)
    m = lsh_attention_mask(QK, 4, n_hashes, chunk_size, rng=7)
    Kn = QK / np.linalg.norm(QK, axis=-1, keepdims=True)
    _close(out, dense_attention(QK, Kn, V, m))
    assert not np.any(np.diagonal(m, axis1=-2, axis2=-1) & (m.sum(-1) > 1))  # no self


def test_lsh_seed_determinism_and_buckets(rng):
    QK, _, V = _qkv(rng)
    a, b1 = lsh_attention(QK, V, 8, 2, rng=3, return_buckets=True)
    b, b2 = lsh_attention(QK, V, 8, 2, rng=3, return_buckets=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b1, b2)
    assert b1.shape == (2, 2, 3, 24) and b1.min() >= 0 and b1.max() < 8


def test_lsh_one_bucket_is_dense_without_self(rng):
    # 2 buckets but identical vectors -> one bucket; one chunk: full attention except self
    QK = np.repeat(rng.standard_normal((1, 1, 1, 4)), 8, axis=2) * np.arange(1, 9)[None, None,
                                                                                  :, None]
    V = rng.standard_normal((1, 1, 8, 3))
    out = lsh_attention(QK, V, 2, 1, chunk_size=8, rng=0)
    Kn = QK / np.linalg.norm(QK, axis=-1, keepdims=True)
    _close(out, dense_attention(QK, Kn, V, ~np.eye(8, dtype=bool)))


def test_star_first_cycle_equals_masked_dense(rng):
    Q, K, V = _qkv(rng)
    Ka = np.concatenate([K, K, K.mean(2, keepdims=True)], axis=2)
    Va = np.concatenate([V, V, V.mean(2, keepdims=True)], axis=2)
    sat, relay = star_attention(Q, K, V, return_relay=True)
    _close(sat, dense_attention(Q, Ka, Va, star_attention_mask(24)))
    # relay: attends to [s0; H1]
    rk = np.concatenate([K.mean(2, keepdims=True), sat], axis=2)
    rv = np.concatenate([V.mean(2, keepdims=True), sat], axis=2)
    _close(relay, dense_attention(Q.mean(2, keepdims=True), rk, rv))


def test_star_blocks_join_the_ring_across_block_edges(rng, monkeypatch):
    # blocked satellite updates (block 5 over n = 24: a ragged last block) equal one block
    from refimpl.attention import linear

    Q, K, V = _qkv(rng)
    whole = star_attention(Q, K, V, 3, return_relay=True)
    monkeypatch.setattr(linear, "_STAR_BLOCK", 5)
    blocked = star_attention(Q, K, V, 3, return_relay=True)
    for a, b in zip(whole, blocked):
        np.testing.assert_array_equal(a, b)


def test_star_cycles_change_output_and_equivariance_under_rotation(rng):
    Q, K, V = _qkv(rng)
    one, three = star_attention(Q, K, V, 1), star_attention(Q, K, V, 3)
    assert np.abs(one - three).max() > 1e-3
    # the ring is invariant to cyclic shifts: shifting inputs shifts outputs
    _close(star_attention(np.roll(Q, 5, 2), np.roll(K, 5, 2), np.roll(V, 5, 2), 3),
           np.roll(three, 5, 2))


@pytest.mark.parametrize("sharing", ["none", "headwise", "key-value", "layerwise"])
def test_linformer_sharing_and_identity(rng, sharing):
    Q, K, V = _qkv(rng)
    layers, n_params = linformer_projections(24, 6, num_heads=3, num_layers=2, sharing=sharing,
                                             rng=0)
    expect = {"none": 2 * 2 * 3 * 6 * 24, "headwise": 2 * 2 * 6 * 24, "key-value": 2 * 6 * 24,
              "layerwise": 6 * 24}[sharing]
    assert n_params == expect
    if sharing in ("key-value", "layerwise"):
        assert all(E is F for E, F in layers)
    if sharing == "layerwise":
        assert layers[0][0] is layers[1][0]
    E, F = layers[0]
    assert linformer_attention(Q, K, V, E, F).shape == V.shape
    _close(linformer_attention(Q, K, V, np.eye(24)), dense_attention(Q, K, V))


def test_linformer_per_head_projection(rng):
    Q, K, V = _qkv(rng)
    E = rng.standard_normal((3, 5, 24))
    out = linformer_attention(Q, K, V, E)
    for h in range(3):
        ref = dense_attention(Q[:, h:h + 1], E[h] @ K[:, h:h + 1], E[h] @ V[:, h:h + 1])
        _close(out[:, h:h + 1], ref)


def test_sinkhorn_with_hard_permutation_is_exact(rng):
    Q, K, V = _qkv(rng)
    nb, perm = 4, np.array([2, 3, 1, 0])  # no fixed point
    S = np.eye(nb)[perm]
    blk = np.arange(24) // 6
    m = (blk[None, :] == blk[:, None]) | (blk[None, :] == perm[blk][:, None])
    _close(sinkhorn_attention(Q, K, V, nb, sort_matrix=S), dense_attention(Q, K, V, m))
    for k in range(1, nb + 1):
        mk = np.broadcast_to(np.isin(blk, perm[:k])[None, :], (24, 24))
        _close(sinkhorn_attention(Q, K, V, nb, sort_matrix=S, sortcut=k),
               dense_attention(Q, K, V, mk))
    _close(sinkhorn_attention(Q, K, V, nb, sort_matrix=S, sortcut=nb), dense_attention(Q, K, V))


def test_sinkhorn_normalize_doubly_stochastic(rng):
    P = sinkhorn_normalize(rng.standard_normal((2, 5, 5)), n_iters=200)
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-8)
    np.testing.assert_allclose(P.sum(-2), 1.0, atol=1e-12)
    # low temperature -> a hard permutation
    L = np.eye(4)[[1, 0, 3, 2]] * 2.0 + 0.1 * rng.standard_normal((4, 4))
    P = sinkhorn_normalize(L, n_iters=30, temperature=0.05)
    np.testing.assert_allclose(P, np.eye(4)[[1, 0, 3, 2]], atol=1e-6)


def test_efficient_attention_associativity_and_rows(rng):
    Q, K, V = _qkv(rng, dv=5)
    out, A = efficient_attention_quadratic(Q, K, V, return_weights=True)
    _close(efficient_attention(Q, K, V), out)
    np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-12)  # rows of ρ_q ρ_kᵀ sum to 1
    # the survey's printed form is another function
    assert np.abs(efficient_attention_survey_form(Q, K, V) - out).max() > 1e-2


def test_efficient_attention_hand_worked():
    # n = 1: ρ_k(K) = 1 (softmax over one position), so E = softmax(q) · (1 · v) summed = v
    Q = np.array([[[[0.3, -1.0]]]])
    K = np.array([[[[2.0, 5.0]]]])
    V = np.array([[[[4.0, -2.0, 1.0]]]])
    _close(efficient_attention(Q, K, V), V)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_equals_quadratic(rng, causal):
    Q, K, V = _qkv(rng, dv=5)
    _close(linear_attention(Q, K, V, causal=causal), linear_attention_quadratic(Q, K, V,
                                                                               causal=causal))


def test_linear_attention_first_causal_row_is_v0_and_feature_map(rng):
    Q, K, V = _qkv(rng)
    out = linear_attention(Q, K, V, causal=True, eps=0.0)
    _close(out[:, :, 0], V[:, :, 0], 1e-12)
    x = np.array([-2.0, 0.0, 3.0])
    _close(elu_feature_map(x), np.array([np.exp(-2.0), 1.0, 4.0]))


def test_linear_attention_permutation_equivariance(rng):
    Q, K, V = _qkv(rng)
    p = rng.permutation(24)
    for f in (linear_attention, efficient_attention):
        _close(f(Q[:, :, p], K[:, :, p], V[:, :, p]), f(Q, K, V)[:, :, p])


@pytest.mark.parametrize("window,dilation,g", [(0, 1, ()), (4, 1, ()), (4, 2, (0, 5)),
                                               (6, 3, (23,)), (24, 1, (1, 2)), (2, 5, (0,))])
def test_longformer_equals_masked_dense(rng, window, dilation, g):
    Q, K, V = _qkv(rng, dv=5)
    _close(longformer_attention(Q, K, V, window, dilation, g),
           dense_attention(Q, K, V, longformer_mask(24, window, dilation, g)))


@pytest.mark.parametrize("window,dilation,g", [(0, 1, ()), (4, 1, ()), (4, 2, (0, 5)),
                                               (6, 3, (23,)), (24, 1, (1, 2)), (2, 5, (0,))])
def test_causal_longformer_equals_masked_dense(rng, window, dilation, g):
    """The autoregressive Longformer: the same pattern and ``j <= i``; no output depends on a
    later token (perturbing token 20 leaves rows 0–19 unchanged, bit for bit)."""
    Q, K, V = _qkv(rng, dv=5)
    M = longformer_mask(24, window, dilation, g, causal=True)
    assert np.array_equal(M, longformer_mask(24, window, dilation, g) & np.tri(24, dtype=bool))
    out = longformer_attention(Q, K, V, window, dilation, g, causal=True)
    _close(out, dense_attention(Q, K, V, M))
    K2, V2 = K.copy(), V.copy()
    K2[:, :, 20] += 1.0
    V2[:, :, 20] -= 2.0
    out2 = longformer_attention(Q, K2, V2, window, dilation, g, causal=True)
    np.testing.assert_array_equal(out2[:, :, :20], out[:, :, :20])


def test_causal_longformer_separate_global_projections_and_errors(rng):
    Q, K, V = _qkv(rng)
    Qg, Kg, Vg = _qkv(rng)
    out = longformer_attention(Q, K, V, 4, 1, [3], Qg=Qg, Kg=Kg, Vg=Vg, causal=True)
    _close(out[:, :, 3], dense_attention(Qg, Kg, Vg, np.tri(24, dtype=bool))[:, :, 3])
    with pytest.raises(TypeError, match="causal must be a bool"):
        longformer_attention(Q, K, V, 4, causal=1)
    with pytest.raises(TypeError, match="causal must be a bool"):
        longformer_mask(24, 4, causal="yes")


def test_longformer_separate_global_projections(rng):
    Q, K, V = _qkv(rng)
    Qg, Kg, Vg = _qkv(rng)
    out = longformer_attention(Q, K, V, 4, 1, [3], Qg=Qg, Kg=Kg, Vg=Vg)
    ref = longformer_attention(Q, K, V, 4, 1, [3])
    _close(out[:, :, 3], dense_attention(Qg, Kg, Vg)[:, :, 3])
    rows = np.arange(24) != 3
    _close(out[:, :, rows], ref[:, :, rows])


def test_longformer_window_n_middle_row_is_dense(rng):
    # w = n = 10: position 5 sees offsets -5..5, i.e. every position 0..9
    Q, K, V = _qkv(rng, n=10)
    _close(longformer_attention(Q, K, V, 10)[:, :, 5], dense_attention(Q, K, V)[:, :, 5])
    # a global token at every position is dense attention
    _close(longformer_attention(Q, K, V, 2, 1, range(10)), dense_attention(Q, K, V))


def test_lsh_hash_blocked_memory_and_same_buckets():
    """Issue #12: lsh_hash formed [xR; -xR] for all n positions at once, O(n * n_buckets)
    memory against lsh_attention's promised O(n c). It now hashes blocks of positions; the
    buckets are those of the direct argmax, ties included."""
    import tracemalloc

    from refimpl.attention import lsh_hash
    from refimpl.attention import superlinear as sl

    def direct(X, R):
        xR = np.einsum("bhnd,rdk->rbhnk", X, R)
        return np.argmax(np.concatenate([xR, -xR], axis=-1), axis=-1)

    rng = np.random.default_rng(3)
    for (B, H, n, d, nb, r) in [(1, 2, 300, 5, 256, 2), (2, 1, 64, 3, 2, 1), (1, 1, 999, 4, 16, 3)]:
        X, R = rng.standard_normal((B, H, n, d)), rng.standard_normal((r, d, nb // 2))
        np.testing.assert_array_equal(lsh_hash(X, nb, R), direct(X, R))
        Xi, Ri = np.round(X), np.round(R)  # many exact ties
        np.testing.assert_array_equal(lsh_hash(Xi, nb, Ri), direct(Xi, Ri))
    n, nb = 8192, 2048
    X, R = rng.standard_normal((1, 1, n, 8)), rng.standard_normal((1, 8, nb // 2))
    tracemalloc.start()
    try:
        lsh_hash(X, nb, R)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    full = n * (nb // 2) * 8  # bytes of xR for all positions at once (134 MB)
    assert peak < 8 * (n * 8 + sl._HASH_BLOCK * 8) < full / 10, peak
