"""CP (ALS), Tucker (HOSVD/HOOI), block-term decomposition, BT-layer, BT-RNN, multi-linear
attention (Survey §6, §6.3)."""

import numpy as np
import pytest

from refimpl.decomposition import (
    BTRNN,
    BTLinear,
    MultiLinearAttention,
    bt_matrix,
    bt_matrix_num_params,
    bt_matrix_to_full,
    btd_als,
    btd_num_params,
    btd_to_full,
    cp_als,
    cp_num_params,
    cp_to_full,
    hooi,
    hosvd,
    single_block_attention,
    tucker_num_params,
    tucker_to_full,
)
from refimpl.decomposition.cp_tucker import fold, khatri_rao, mode_dot, unfold
from refimpl.nn import gradcheck


def test_unfold_fold_mode_dot():
    X = np.arange(24.0).reshape(2, 3, 4)
    for k in range(3):
        np.testing.assert_array_equal(fold(unfold(X, k), k, X.shape), X)
    A = np.random.default_rng(0).standard_normal((5, 3))
    np.testing.assert_allclose(mode_dot(X, A, 1), np.einsum("ijk,mj->imk", X, A))
    B, C = np.ones((2, 2)), np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(khatri_rao([B, C]), [[1, 2], [3, 4], [1, 2], [3, 4]])


def test_cp_exact_rank_recovered_and_monotone():
    rng = np.random.default_rng(0)
    facs = [rng.standard_normal((n, 3)) for n in (5, 6, 4)]
    X = cp_to_full(np.ones(3), facs)
    w, f, errs = cp_als(X, 3, n_iter=500, tol=1e-16)
    assert errs[-1] < 1e-6, errs[-1]
    assert all(b <= a + 1e-10 for a, b in zip(errs, errs[1:]))
    assert cp_num_params((5, 6, 4), 3) == 3 * 16
    Y = rng.standard_normal((4, 5, 3))
    prev = np.inf
    for r in (1, 2, 4, 8):  # best error over ranks: not guaranteed, but ALS from SVD init is
        e = min(cp_als(Y, r, rng=s, init="random")[2][-1] for s in range(2))
        assert e <= prev + 0.02
        prev = e


def test_tucker_exact_and_monotone():
    rng = np.random.default_rng(0)
    core = rng.standard_normal((2, 3, 2))
    facs = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in ((5, 2), (6, 3), (4, 2))]
    X = tucker_to_full(core, facs)
    G, U = hosvd(X, (2, 3, 2))
    np.testing.assert_allclose(tucker_to_full(G, U), X, atol=1e-12)
    Y = rng.standard_normal((5, 6, 4))
    errs = []
    for r in (1, 2, 3, 4):
        G, U, e = hooi(Y, r)
        G0, U0 = hosvd(Y, r)
        e0 = np.linalg.norm(Y - tucker_to_full(G0, U0)) / np.linalg.norm(Y)
        assert e[-1] <= e0 + 1e-12  # HOOI never worse than its HOSVD start
        assert all(b <= a + 1e-12 for a, b in zip(e, e[1:]))
        errs.append(e[-1])
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))
    assert tucker_num_params((5, 6, 4), (2, 3, 2)) == 12 + 10 + 18 + 8
    with pytest.raises(ValueError, match=r"ranks\[1\]"):
        hosvd(Y, (2, 7, 2))
    with pytest.raises(ValueError, match="ranks"):
        hosvd(Y, (2, 2))
    with pytest.raises(ValueError, match="X"):
        hosvd(np.ones(3), 1)


def test_btd_monotone_and_single_block_is_tucker():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 6, 4))
    cores, facs, errs = btd_als(X, 2, 3, n_iter=20)
    assert len(cores) == 3 and cores[0].shape == (2, 2, 2) and facs[1][2].shape == (4, 2)
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))
    np.testing.assert_allclose(np.linalg.norm(X - btd_to_full(cores, facs)) / np.linalg.norm(X),
                               errs[-1], atol=1e-12)
    _, _, e1 = btd_als(X, 2, 1, n_iter=30)
    _, _, eh = hooi(X, 2, n_iter=30)
    assert e1[-1] == pytest.approx(eh[-1], abs=1e-6)
    assert btd_num_params((5, 6, 4), 2, 3) == 3 * (8 + 30)
    # more blocks never hurt (greedy init adds terms to the previous fit)
    assert btd_als(X, 2, 4, n_iter=20)[2][-1] <= errs[-1] + 1e-12
    with pytest.raises(ValueError, match="n_blocks"):
        btd_als(X, 2, 0)
    with pytest.raises(ValueError, match="ranks"):
        btd_als(X, 7, 2)


def test_bt_layer_forward_gradients_counts():
    rng = np.random.default_rng(0)
    layer = BTLinear((4, 5), (3, 4), rank=2, n_blocks=2, rng=0)
    x = rng.standard_normal((3, 20))
    np.testing.assert_allclose(layer(x).data, x @ layer.weight().T, atol=1e-12)
    assert layer.num_parameters() == bt_matrix_num_params((3, 4), (4, 5), 2, 2) + 12
    assert bt_matrix_num_params((3, 4), (4, 5), 2, 2) == 2 * (4 + 2 * (12 + 20))

    def f(g0, a00, a11, xx):
        layer.core0, layer.factor0_0, layer.factor1_1 = g0, a00, a11
        return layer(xx)

    gradcheck(f, [layer.core0.data, layer.factor0_0.data, layer.factor1_1.data, x])
    W, b = rng.standard_normal((12, 20)), rng.standard_normal(12)
    cores, facs, errs = bt_matrix(W, (3, 4), (4, 5), 2, 2)
    dense = bt_matrix_to_full(cores, facs)
    assert np.linalg.norm(dense - W) / np.linalg.norm(W) == pytest.approx(errs[-1], abs=1e-12)
    lay = BTLinear.from_dense(W, b, in_dims=(4, 5), out_dims=(3, 4), rank=2, n_blocks=2)
    np.testing.assert_allclose(lay(x).data, x @ dense.T + b, atol=1e-12)
    full = BTLinear.from_dense(W, in_dims=(4, 5), out_dims=(3, 4), rank=12, n_blocks=1)
    np.testing.assert_allclose(full.weight(), W, atol=1e-10)  # full Tucker rank: exact


def test_bt_layer_three_modes():
    rng = np.random.default_rng(1)
    layer = BTLinear((2, 3, 2), (2, 2, 3), rank=2, n_blocks=3, rng=0)
    x = rng.standard_normal((2, 4, 12))
    np.testing.assert_allclose(layer(x).data, x @ layer.weight().T, atol=1e-12)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_bt_rnn_runs_and_matches_dense_recurrence(cell):
    gates = 3 if cell == "gru" else 4
    rnn = BTRNN((2, 3), (gates, 2), 2, rank=2, n_blocks=2, cell=cell, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 4, 6))
    out, h = rnn(x)
    assert out.shape == (2, 4, 2)
    # one step by hand with the dense W_ih
    rnn.b_hh.data = np.random.default_rng(1).standard_normal(rnn.b_hh.shape)
    out, h = rnn(x)
    W = rnn.W_ih.weight()
    gi = x[:, 0] @ W.T + rnn.W_ih.b.data  # (B, gates*H)
    gh = rnn.b_hh.data  # W_hh h_0 = 0
    H = 2

    def sig(a):
        return 1 / (1 + np.exp(-a))

    if cell == "gru":
        r, z = sig(gi[:, :H] + gh[:H]), sig(gi[:, H:2 * H] + gh[H:2 * H])
        h1 = (1 - z) * np.tanh(gi[:, 2 * H:] + r * gh[2 * H:])
    else:
        g = gi + gh
        h1 = sig(g[:, 3 * H:]) * np.tanh(sig(g[:, :H]) * np.tanh(g[:, 2 * H:3 * H]))
    np.testing.assert_allclose(out.data[:, 0], h1, atol=1e-12)


def test_multilinear_attention():
    rng = np.random.default_rng(0)
    Q, K, V = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    g = rng.standard_normal(4)
    T = single_block_attention(Q, K, V, g).data
    brute = np.zeros((2, 3, 3, 3))
    for r in range(4):
        brute += g[r] * np.einsum("bi,bj,bm->bijm", Q[..., r], K[..., r], V[..., r])
    np.testing.assert_allclose(T, brute, atol=1e-12)
    mla = MultiLinearAttention(d_model=6, seq_len=3, num_blocks=2, rank=4, rng=0)
    x = rng.standard_normal((2, 3, 6))
    y = mla(x, x, x).data
    # the explicit average of the h single-block attentions
    Qp, Kp, Vp = (x @ W.data.T for W in (mla.W_q, mla.W_k, mla.W_v))
    Ts = [single_block_attention(Qp, Kp, Vp, mla.cores.data[j]).data for j in range(2)]
    ref = (sum(Ts) / 2).reshape(2, 3, 9) @ mla.W_o.data.T
    np.testing.assert_allclose(y, ref, atol=1e-12)
    assert mla.num_parameters() == 3 * 6 * 4 + 2 * 4 + 6 * 9

    def f(wq, cores):
        mla.W_q, mla.cores = wq, cores
        return mla(x, x, x)

    gradcheck(f, [mla.W_q.data, mla.cores.data])
    with pytest.raises(ValueError, match="seq_len"):
        mla(rng.standard_normal((1, 4, 6)), x[:1], x[:1])


def test_btd_recovers_an_exact_block_term_tensor():
    rng = np.random.default_rng(0)
    cores = [rng.standard_normal((2, 2, 2)) for _ in range(2)]
    facs = [[rng.standard_normal((n, 2)) for n in (6, 7, 5)] for _ in range(2)]
    Y = btd_to_full(cores, facs)
    errs = [btd_als(Y, 2, 2, n_iter=200, init="random", rng=s)[2] for s in range(4)]
    assert all(all(b <= a + 1e-12 for a, b in zip(e, e[1:])) for e in errs)
    assert min(e[-1] for e in errs) < 1e-6, [e[-1] for e in errs]
    with pytest.raises(ValueError, match="method"):
        btd_als(Y, 2, 2, method="newton")
    with pytest.raises(ValueError, match="init"):
        btd_als(Y, 2, 2, init="svd")


def test_empty_and_bad_tensors_name_the_argument():
    for fn in (lambda X: cp_als(X, 2), lambda X: hosvd(X, 1), lambda X: btd_als(X, 1, 1)):
        with pytest.raises(ValueError, match="X"):
            fn(np.ones((0, 3, 2)))
        with pytest.raises(ValueError, match="X"):
            fn(np.full((2, 3, 2), np.inf))
    with pytest.raises(ValueError, match="rank"):
        cp_als(np.ones((2, 3)), 0)
    with pytest.raises(ValueError, match="X"):
        btd_als(np.zeros((2, 3, 2)), 1, 1)
    with pytest.raises(ValueError, match="in_dims"):
        BTLinear((4, 0), (3, 4), 2, 2)


def test_btd_als_bounds_n_blocks_by_the_shape():
    """Issue #12: btd_als(n_blocks=10**9) ran for ever; prod ceil(n_k / R_k) tiles of X are an
    exact BTD, so more blocks are refused."""
    X = np.random.default_rng(0).standard_normal((4, 5, 3))
    with pytest.raises(ValueError, match=r"n_blocks must be an integer in \[1, 12\], got 1000000000"):
        btd_als(X, 2, 10 ** 9)
    cores, _, errs = btd_als(X, 2, 12, n_iter=3)  # the largest allowed N: 2 * 3 * 2 tiles
    assert len(cores) == 12 and errs[-1] < 1e-6
    with pytest.raises(ValueError, match="tol must be in"):
        btd_als(X, 2, 2, tol=-1.0)


@pytest.mark.parametrize("fn", [lambda X: cp_als(X, 1), lambda X: hosvd(X, 1),
                                lambda X: hooi(X, 1), lambda X: btd_als(X, 1, 1)])
def test_complex_tensors_refused(fn):
    """Issue #12: complex input used to lose its imaginary part with a ComplexWarning."""
    with pytest.raises(TypeError, match="X must be a real array"):
        fn(np.ones((2, 3, 2)) * (1 + 1j))
