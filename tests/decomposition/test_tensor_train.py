"""TT-SVD, TT-matrix, TT-layer, TT-embedding, TT-RNN (Survey §6.3)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.decomposition import (
    TTRNN,
    TTEmbedding,
    TTLinear,
    factorize_dim,
    random_tt,
    tt_matrix,
    tt_matrix_num_params,
    tt_matrix_to_full,
    tt_matvec,
    tt_num_params,
    tt_ranks,
    tt_svd,
    tt_to_full,
)
from refimpl.nn import Tensor, gradcheck

from _numerics import err_message as _err




shapes = st.lists(st.integers(2, 4), min_size=2, max_size=4)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), r=st.integers(1, 3))
def test_known_rank_tt_reconstructs_to_1e9(shape, seed, r):
    cores = random_tt(shape, r, rng=seed)
    X = tt_to_full(cores)
    for kw in ({}, {"max_rank": r}, {"eps": 1e-12}):
        Xh = tt_to_full(tt_svd(X, **kw))
        assert np.linalg.norm(Xh - X) <= 1e-9 * max(1.0, np.linalg.norm(X)), _err(Xh, X)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), eps=st.floats(0.01, 0.9))
def test_tt_svd_respects_error_bound(shape, seed, eps):
    X = np.random.default_rng(seed).standard_normal(shape)
    err = np.linalg.norm(tt_to_full(tt_svd(X, eps=eps)) - X)
    assert err <= eps * np.linalg.norm(X) * (1 + 1e-12), (err, eps * np.linalg.norm(X))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), r=st.integers(1, 5))
def test_rank_capped_outputs_have_requested_ranks(shape, seed, r):
    X = np.random.default_rng(seed).standard_normal(shape)
    cores = tt_svd(X, max_rank=r)
    d = len(shape)
    expected = [min(r, int(np.prod(shape[:k + 1])), int(np.prod(shape[k + 1:])))
                for k in range(d - 1)]
    # the cap propagates: r_k <= r_{k-1} n_k
    ranks = list(tt_ranks(cores))
    for k in range(1, d):
        expected[k - 1] = min(expected[k - 1], ranks[k - 1] * shape[k - 1])
    assert ranks == [1] + expected + [1]
    for k, G in enumerate(cores):
        assert G.shape == (ranks[k], shape[k], ranks[k + 1])


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000))
def test_error_non_increasing_in_rank(shape, seed):
    X = np.random.default_rng(seed).standard_normal(shape)
    errs = [np.linalg.norm(tt_to_full(tt_svd(X, max_rank=r)) - X) for r in range(1, 8)]
    assert all(b <= a + 1e-10 for a, b in zip(errs, errs[1:])), errs


def test_hand_worked_rank_one_tensor():
    a, b, c = np.array([1.0, 2.0]), np.array([3.0, -1.0, 0.5]), np.array([2.0, 4.0])
    X = np.einsum("i,j,k->ijk", a, b, c)
    cores = tt_svd(X, eps=1e-12)
    assert tt_ranks(cores) == (1, 1, 1, 1)
    assert tt_num_params(cores) == 2 + 3 + 2
    np.testing.assert_allclose(tt_to_full(cores), X, atol=1e-12)


def test_tt_svd_d1_and_exact():
    x = np.arange(5.0)
    np.testing.assert_array_equal(tt_to_full(tt_svd(x)), x)
    X = np.random.default_rng(0).standard_normal((3, 4, 5))
    assert tt_ranks(tt_svd(X)) == (1, 3, 5, 1)


def test_tt_bad_input():
    X = np.ones((3, 4, 5))
    with pytest.raises(ValueError, match=r"max_rank\[0\]"):
        tt_svd(X, max_rank=[4, 2])  # r_1 <= min(3, 20) = 3
    with pytest.raises(ValueError, match="max_rank"):
        tt_svd(X, max_rank=[2, 2, 2])
    with pytest.raises(ValueError, match="max_rank"):
        tt_svd(X, max_rank=0)
    with pytest.raises(ValueError, match="X"):
        tt_svd(np.ones((0, 3)))
    with pytest.raises(ValueError, match="X"):
        tt_svd(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="eps"):
        tt_svd(X, eps=-0.1)
    with pytest.raises(ValueError, match="row_dims"):
        tt_matrix(np.ones((12, 10)), (3, 5), (2, 5))
    with pytest.raises(ValueError, match="col_dims"):
        tt_matrix(np.ones((12, 10)), (3, 4), (3, 3))
    with pytest.raises(ValueError, match="n = 7"):
        factorize_dim(7, 2)
    with pytest.raises(ValueError, match="cores"):
        tt_to_full([np.ones((2, 3, 1))])


def test_factorize_dim():
    assert factorize_dim(1024, 4) == (8, 8, 4, 4)
    assert factorize_dim(256, 4) == (4, 4, 4, 4)
    assert factorize_dim(1000, 3) == (10, 10, 10)
    assert int(np.prod(factorize_dim(96, 3))) == 96


@pytest.mark.parametrize("seed", [0, 1])
def test_tt_matrix_round_trip_and_counts(seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((24, 20))
    cores = tt_matrix(W, (2, 3, 4), (5, 2, 2))
    np.testing.assert_allclose(tt_matrix_to_full(cores), W, atol=1e-12)
    capped = tt_matrix(W, (2, 3, 4), (5, 2, 2), max_rank=3)
    ranks = tt_ranks(capped)
    assert ranks == (1, 3, 3, 1)
    assert tt_num_params(capped) == tt_matrix_num_params((2, 3, 4), (5, 2, 2), ranks)
    assert tt_num_params(capped) == 1 * 10 * 3 + 3 * 6 * 3 + 3 * 8 * 1
    X = rng.standard_normal((7, 20))
    np.testing.assert_allclose(tt_matvec(capped, X, backend="numpy"),
                               X @ tt_matrix_to_full(capped).T, atol=1e-12)


def test_tt_linear_forward_and_gradients():
    rng = np.random.default_rng(0)
    layer = TTLinear((4, 5), (3, 4), rank=2, rng=0)
    x = rng.standard_normal((3, 20))
    np.testing.assert_allclose(layer(x).data, x @ layer.weight().T, atol=1e-12)
    assert layer.num_parameters() == 1 * 3 * 4 * 2 + 2 * 4 * 5 * 1 + 12
    c0, c1, b = layer.core0.data, layer.core1.data, layer.b.data

    def f(a0, a1, bb, xx):
        layer.core0, layer.core1, layer.b = a0, a1, bb
        return layer(xx)

    gradcheck(f, [c0, c1, b, x])


def test_tt_linear_from_dense():
    rng = np.random.default_rng(1)
    W, b = rng.standard_normal((12, 20)), rng.standard_normal(12)
    layer = TTLinear.from_dense(W, b, in_dims=(4, 5), out_dims=(3, 4))
    x = rng.standard_normal((2, 5, 20))
    np.testing.assert_allclose(layer(x).data, x @ W.T + b, atol=1e-10)


def test_tt_embedding_lookup_and_gradients():
    rng = np.random.default_rng(0)
    emb = TTEmbedding(10, (3, 4), (2, 3), rank=2, rng=0)
    idx = np.array([[1, 9, 9], [0, 3, 1]])
    np.testing.assert_allclose(emb(idx).data, emb.weight()[idx], atol=1e-14)
    assert emb.num_parameters() == 1 * 3 * 2 * 2 + 2 * 4 * 3 * 1

    def f(a0, a1):
        emb.core0, emb.core1 = a0, a1
        return emb(idx)

    gradcheck(f, [emb.core0.data, emb.core1.data])
    with pytest.raises(ValueError, match="idx"):
        emb(np.array([10]))
    with pytest.raises(ValueError, match="voc_dims"):
        TTEmbedding(13, (3, 4), (2, 3), rank=2)
    E = rng.standard_normal((10, 6))
    emb2 = TTEmbedding.from_dense(E, voc_dims=(3, 4), emb_dims=(2, 3))
    np.testing.assert_allclose(emb2(np.arange(10)).data, E, atol=1e-12)


@pytest.mark.parametrize("cell,gates", [("gru", 3), ("lstm", 4)])
def test_tt_rnn_matches_dense_cell_on_torch_layout(cell, gates, torch):
    rng = np.random.default_rng(0)
    H, D = 4, 6
    out_dims = (gates, 4)
    rnn = TTRNN((2, 3), out_dims, H, rank=4, cell=cell, rng=0)  # full rank: exact dense
    W_ih = rnn.W_ih.weight()
    x = rng.standard_normal((2, 3, D))
    mod = (torch.nn.GRU if cell == "gru" else torch.nn.LSTM)(D, H, batch_first=True)
    with torch.no_grad():
        mod.weight_ih_l0.copy_(torch.tensor(W_ih))
        mod.weight_hh_l0.copy_(torch.tensor(rnn.W_hh.data))
        mod.bias_ih_l0.copy_(torch.tensor(rnn.W_ih.b.data))
        mod.bias_hh_l0.copy_(torch.tensor(rnn.b_hh.data))
        ref = mod(torch.tensor(x))[0].numpy()
    out, h = rnn(x)
    np.testing.assert_allclose(out.data, ref, atol=1e-10, err_msg=_err(out.data, ref))
    np.testing.assert_allclose(h.data, ref[:, -1], atol=1e-10)
    with pytest.raises(ValueError, match="out_features"):
        TTRNN((2, 3), (5, 4), H, rank=2, cell=cell)


def test_tt_rnn_lengths_keep_last_valid_state():
    rnn = TTRNN((2, 3), (3, 4), 4, rank=2, cell="gru", rng=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 6))
    out, h = rnn(x, lengths=[5, 2])
    np.testing.assert_allclose(h.data[1], out.data[1, 1], atol=0)
    out2, h2 = rnn(x[1:, :2])
    np.testing.assert_allclose(h.data[1], h2.data[0], atol=1e-14)
    assert isinstance(out, Tensor)


def test_rank_errors_name_the_argument_given():
    """Issue #12: random_tt(rank=0) said "max_rank"; the argument is ``rank``."""
    with pytest.raises(ValueError, match=r"^rank must be an integer >= 1, got 0"):
        random_tt((2, 3, 4), 0)
    with pytest.raises(ValueError, match=r"^rank\[1\] = 9 exceeds"):
        random_tt((2, 3, 4), [2, 9])
    with pytest.raises(TypeError, match=r"^rank must be an int or a sequence of ints"):
        random_tt((2, 3, 4), 2.5)
    with pytest.raises(ValueError, match=r"^max_rank must be an integer >= 1, got 0"):
        tt_svd(np.ones((2, 3, 4)), max_rank=0)
    with pytest.raises(TypeError, match="X must be a real array"):
        tt_svd(np.ones((2, 3, 4)) * 1j)
