"""§6.1: truncated SVD, joint SVD (Eqs. 62–65), sparse coding (Eq. 66), compositional codes,
FLOP (Eq. 67)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.decomposition import (
    FLOPLinear,
    LowRankLinear,
    ProjectedRNNClassifier,
    rnn_layer_matrices,
    stacked_rnn_classifier,
    binarize_codes,
    compositional_code_bits,
    compositional_codes,
    compositional_decode,
    eckart_young_error,
    flop_weight,
    joint_projection_lstsq,
    joint_svd,
    low_rank_num_params,
    rank_for_explained_variance,
    sparse_code,
    sparse_coding,
    sparse_coding_objective,
    truncated_svd,
)
from refimpl.decomposition._ops import (
    einsum,
    hard_concrete_deterministic,
    hard_concrete_l0,
    hard_concrete_sample,
)
from refimpl.nn import Tensor, gradcheck


@settings(max_examples=25, deadline=None)
@given(m=st.integers(2, 8), n=st.integers(2, 8), seed=st.integers(0, 10_000))
def test_truncated_svd_eckart_young_and_monotone(m, n, seed):
    W = np.random.default_rng(seed).standard_normal((m, n))
    prev = np.inf
    for r in range(1, min(m, n) + 1):
        A, B = truncated_svd(W, r)
        assert A.shape == (m, r) and B.shape == (r, n)
        fro, spec = eckart_young_error(W, r)
        E = W - A @ B
        assert abs(np.linalg.norm(E) - fro) < 1e-9
        assert abs(np.linalg.norm(E, 2) - spec) < 1e-9
        assert fro <= prev + 1e-12
        prev = fro
    assert prev < 1e-9


def test_truncated_svd_beats_random_rank_r_matrices():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 5))
    A, B = truncated_svd(W, 2)
    best = np.linalg.norm(W - A @ B)
    for _ in range(200):
        Y = rng.standard_normal((6, 2)) @ rng.standard_normal((2, 5))
        Y = Y * (np.sum(Y * W) / np.sum(Y * Y))  # best scaling of a random rank-2 matrix
        assert np.linalg.norm(W - Y) >= best - 1e-12


def test_hand_worked_svd_and_counts():
    W = np.diag([3.0, 2.0, 1.0])
    A, B = truncated_svd(W, 2)
    np.testing.assert_allclose(A @ B, np.diag([3.0, 2.0, 0.0]), atol=1e-14)
    assert eckart_young_error(W, 1) == pytest.approx((np.sqrt(5.0), 2.0))
    assert low_rank_num_params(100, 50, 10) == 1500
    assert rank_for_explained_variance([3.0, 2.0, 1.0], 9 / 14) == 1
    assert rank_for_explained_variance([3.0, 2.0, 1.0], 0.65) == 2
    assert rank_for_explained_variance([3.0, 2.0, 1.0], 1.0) == 3


def test_low_rank_bad_input():
    with pytest.raises(ValueError, match="rank"):
        truncated_svd(np.ones((3, 4)), 4)
    with pytest.raises(ValueError, match="W"):
        truncated_svd(np.ones((0, 4)), 1)
    with pytest.raises(ValueError, match="W"):
        truncated_svd(np.full((2, 2), np.nan), 1)
    with pytest.raises(ValueError, match="exactly one"):
        truncated_svd(np.ones((3, 4)))
    with pytest.raises(ValueError, match="fraction"):
        rank_for_explained_variance([1.0], 1.5)
    with pytest.raises(ValueError, match="W_x"):
        joint_svd(np.ones((4, 4)), np.ones((3, 5)), 2)
    with pytest.raises(ValueError, match="W_h"):
        joint_svd(np.ones((4, 3)), np.ones((3, 3)), 2)


def test_low_rank_linear_gradients():
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((5, 7)), rng.standard_normal(5)
    layer = LowRankLinear.from_dense(W, b, rank=3)
    x = rng.standard_normal((4, 7))
    A, B = truncated_svd(W, 3)
    np.testing.assert_allclose(layer(x).data, x @ (A @ B).T + b, atol=1e-12)

    def f(a, bb, xx):
        layer.A, layer.B = a, bb
        return layer(xx)

    gradcheck(f, [layer.A.data, layer.B.data, x])


def test_joint_svd_eqs_62_65():
    rng = np.random.default_rng(0)
    W_h, W_x = rng.standard_normal((8, 8)), rng.standard_normal((5, 8))
    Z_h, Z_x, P = joint_svd(W_h, W_x, 3)
    assert Z_h.shape == (8, 3) and Z_x.shape == (5, 3) and P.shape == (3, 8)
    np.testing.assert_allclose(P @ P.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(Z_x, joint_projection_lstsq(P, W_x), atol=1e-12)
    A, B = truncated_svd(W_h, 3)
    np.testing.assert_allclose(Z_h @ P, A @ B, atol=1e-12)
    # full rank: lossless
    Z_h, Z_x, P = joint_svd(W_h, W_x, 8)
    np.testing.assert_allclose(Z_h @ P, W_h, atol=1e-12)
    np.testing.assert_allclose(Z_x @ P, W_x, atol=1e-12)


def test_projected_rnn_equals_dense_at_full_rank_and_counts():
    rng = np.random.default_rng(0)
    m = stacked_rnn_classifier(20, 6, 8, 2, 3, rng=0)
    for name, p in m.named_parameters():  # the init zeroes biases: make them count
        if name.startswith(("rnn.b_", "fc.b")):
            p.data = rng.standard_normal(p.shape)
    X = rng.integers(1, 20, (3, 5))
    lengths = np.array([5, 2, 4])
    X[np.arange(5)[None, :] >= lengths[:, None]] = 0
    pm = ProjectedRNNClassifier.from_dense(m, [8, 8])
    np.testing.assert_allclose(pm(X, lengths).data, m(X, lengths).data, atol=1e-12)
    pr = ProjectedRNNClassifier.from_dense(m, [2, 3])
    # emb + W_x0 + b1 ; layer 1: P (2,8) Z_h (8,2) Z_x (8,2) b2 ; layer 2: P (3,8) Z_h (8,3)
    # Z_x (3,3) ; b_out
    expected = 20 * 6 + 8 * 6 + 8 + (16 + 16 + 16 + 8) + (24 + 24 + 9) + 3
    assert pr.num_parameters() == expected
    with pytest.raises(ValueError, match="ranks"):
        ProjectedRNNClassifier(20, 6, [8, 7], [9, 3], 3)


def test_projected_rnn_gradients():
    rng = np.random.default_rng(0)
    pm = ProjectedRNNClassifier(10, 3, [4], [2], 2, rng=0)
    X = rng.integers(0, 10, (2, 3))

    def f(P, Z_h, Z_x):
        pm.P1, pm.Z_h1, pm.Z_x1 = P, Z_h, Z_x
        return pm(X, np.array([3, 2]))

    gradcheck(f, [pm.P1.data, pm.Z_h1.data, pm.Z_x1.data])


def test_sparse_code_kkt_and_nonneg():
    rng = np.random.default_rng(0)
    X, D, lam = rng.standard_normal((6, 15)), rng.standard_normal((6, 10)), 0.8
    A = sparse_code(X, D, lam, n_iter=5000, tol=1e-14)
    G = 2 * D.T @ (D @ A - X)  # gradient of the smooth part
    nz = A != 0
    np.testing.assert_allclose(G[nz], -lam * np.sign(A[nz]), atol=1e-6)
    assert np.all(np.abs(G[~nz]) <= lam + 1e-6)
    An = sparse_code(X, D, lam, nonneg=True, n_iter=5000, tol=1e-14)
    assert An.min() >= 0
    Gn = 2 * D.T @ (D @ An - X)
    np.testing.assert_allclose(Gn[An > 0], -lam, atol=1e-6)
    assert np.all(Gn[An == 0] >= -lam - 1e-6)
    # lam = 0 with a square invertible dictionary: exact solve
    Dq = rng.standard_normal((6, 6))
    np.testing.assert_allclose(Dq @ sparse_code(X, Dq, 0.0, n_iter=20000, tol=1e-15), X,
                               atol=1e-6)
    # huge lam: all zero
    assert not sparse_code(X, D, 1e6).any()


def test_sparse_coding_objective_decreases():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 40))
    for nonneg in (False, True):
        D, A, obj = sparse_coding(X, 12, 0.5, 1e-3, nonneg=nonneg, n_iter=10, rng=0)
        assert D.shape == (8, 12) and A.shape == (12, 40)
        assert all(b <= a + 1e-8 for a, b in zip(obj, obj[1:])), obj
        assert obj[-1] == pytest.approx(sparse_coding_objective(X, D, A, 0.5, 1e-3))
        if nonneg:
            assert A.min() >= 0 and D.min() >= 0
            assert set(np.unique(binarize_codes(A))) <= {0, 1}
    with pytest.raises(ValueError, match="D"):
        sparse_code(X, np.ones((3, 4)), 1.0)
    with pytest.raises(ValueError, match="lam"):
        sparse_code(X, np.ones((8, 4)), -1.0)


def test_compositional_codes():
    rng = np.random.default_rng(0)
    # an exactly representable embedding: sums of codewords
    books = rng.standard_normal((2, 4, 5))
    codes = np.stack([rng.permutation(np.repeat(np.arange(4), 10)) for _ in range(2)], 1)
    E = compositional_decode(codes, books)
    c, b, err = compositional_codes(E, 2, 4, n_iter=10, rng=0)
    assert c.shape == (40, 2) and b.shape == (2, 4, 5) and c.max() < 4
    assert all(y <= x + 1e-12 for x, y in zip(err, err[1:]))
    assert err[-1] < 0.35
    assert compositional_code_bits(1000, 16, 32, 100) == 1000 * 16 * 5 + 16 * 32 * 100 * 32
    with pytest.raises(ValueError, match="n_codewords"):
        compositional_codes(E, 2, 41)


def test_einsum_op_gradients():
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    gradcheck(lambda x, y, z: einsum("ij,jk,k->ik", x, y, z), [a, b, c])
    gradcheck(lambda x: einsum("ijk->i", x), [rng.standard_normal((2, 3, 4))])
    gradcheck(lambda x, y: einsum("ij,k->ik", x, y), [a, c])
    with pytest.raises(ValueError, match="subscripts"):
        einsum("ii->i", Tensor(np.ones((2, 2))))


def test_hard_concrete():
    la = np.array([-3.0, 0.0, 3.0])
    # P(z != 0) = sigmoid(log_alpha - beta log(-gamma/zeta)), hand value at log_alpha = 0
    p0 = 1 / (1 + np.exp(2 / 3 * np.log(0.1 / 1.1)))
    assert hard_concrete_l0(la).data[1] == pytest.approx(p0)
    rng = np.random.default_rng(0)
    z = np.stack([hard_concrete_sample(la, rng).data for _ in range(20000)])
    assert z.min() >= 0 and z.max() <= 1
    np.testing.assert_allclose((z > 0).mean(0), hard_concrete_l0(la).data, atol=0.015)
    zd = hard_concrete_deterministic(la).data
    assert zd[0] == 0.0 and zd[2] == 1.0
    gradcheck(lambda x: hard_concrete_l0(x), [la])
    gradcheck(lambda x: hard_concrete_deterministic(x), [np.array([-0.2, 0.1])])


def test_flop_eq67_and_compress():
    rng = np.random.default_rng(0)
    P, Q, z = rng.standard_normal((5, 4)), rng.standard_normal((4, 6)), np.array([1, 0, .5, 0])
    outer = sum(z[k] * np.outer(P[:, k], Q[k]) for k in range(4))
    np.testing.assert_allclose(flop_weight(P, z, Q), outer, atol=1e-14)
    np.testing.assert_allclose(flop_weight(P, z, Q), P @ np.diag(z) @ Q, atol=1e-14)
    W = rng.standard_normal((5, 6))
    layer = FLOPLinear.from_dense(W, rank=5, rng=0)
    layer.log_alpha.data = np.array([5.0, -5.0, 5.0, -5.0, 0.3])
    layer.eval()
    x = rng.standard_normal((3, 6))
    Pc, Qc = layer.compress()
    assert Pc.shape == (5, 3) and Qc.shape == (3, 6)
    np.testing.assert_allclose(layer(x).data, x @ (Pc @ Qc).T, atol=1e-12)
    layer.log_alpha.data[:] = 10.0
    np.testing.assert_allclose(layer(x).data, x @ W.T, atol=1e-10)
    assert layer.expected_params().data == pytest.approx(
        hard_concrete_l0(layer.log_alpha.data).data.sum() * 11)
    layer.train()

    def f(Pp, Qq, la):
        layer.P, layer.Q, layer.log_alpha = Pp, Qq, la
        layer.rng = np.random.default_rng(3)  # same noise on every evaluation
        return layer(x)

    gradcheck(f, [layer.P.data, layer.Q.data, np.array([0.1, -0.3, 0.2, 0.4, 0.0])])


def test_same_seed_bit_identical():
    rng = np.random.default_rng(0)
    E, X = rng.standard_normal((60, 8)), rng.standard_normal((6, 30))
    a = compositional_codes(E, 3, 4, rng=7)
    b = compositional_codes(E, 3, 4, rng=7)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    a = sparse_coding(X, 8, 0.3, rng=5, n_iter=3)
    b = sparse_coding(X, 8, 0.3, rng=5, n_iter=3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    la = np.zeros(4)
    za = hard_concrete_sample(la, np.random.default_rng(3)).data
    zb = hard_concrete_sample(la, np.random.default_rng(3)).data
    assert np.array_equal(za, zb)
    from refimpl.decomposition import TTEmbedding, cp_als

    assert np.array_equal(TTEmbedding(10, (3, 4), (2, 2), 2, rng=1).core1.data,
                          TTEmbedding(10, (3, 4), (2, 2), 2, rng=1).core1.data)
    Y = rng.standard_normal((3, 4, 5))
    assert np.array_equal(cp_als(Y, 2, init="random", rng=4, n_iter=5)[1][0],
                          cp_als(Y, 2, init="random", rng=4, n_iter=5)[1][0])


def test_inputs_not_mutated():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((6, 5))
    W0 = W.copy()
    truncated_svd(W, 2)
    joint_svd(rng.standard_normal((5, 5)), W, 2)
    sparse_code(W0.T[:, :4].copy(), W.T, 0.1)
    assert np.array_equal(W, W0)


def test_compositional_codes_gumbel_learns():
    from refimpl.decomposition import compositional_codes_gumbel

    rng = np.random.default_rng(0)
    books = rng.standard_normal((2, 4, 6))
    codes = rng.integers(0, 4, size=(80, 2))
    E = compositional_decode(codes, books)
    c, b, losses = compositional_codes_gumbel(E, 2, 4, steps=400, rng=0)
    assert c.shape == (80, 2) and b.shape == (2, 4, 6) and c.min() >= 0 and c.max() < 4
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20]), (losses[:3], losses[-3:])
    rel = np.linalg.norm(compositional_decode(c, b) - E) / np.linalg.norm(E)
    assert rel < 0.6, rel
    with pytest.raises(ValueError, match="tau"):
        compositional_codes_gumbel(E, 2, 4, tau=0.0)


def test_truncated_svd_refuses_complex():
    """Issue #12: complex W used to lose its imaginary part with a warning."""
    with pytest.raises(TypeError, match="W must be a real array"):
        truncated_svd(np.ones((3, 3)) * (1 + 1j), 1)


def test_stacked_rnn_classifier_is_nn_rnn_with_survey_matrices():
    """Issue #13: the §6.1 multi-layer RNN is an nn.RNNClassifier over a tanh nn.RNN;
    rnn_layer_matrices names its W_h^l, W_x^l (the matrix leaving layer l), b^l."""
    from refimpl.nn import RNN, RNNClassifier

    m = stacked_rnn_classifier(15, 4, 5, 3, 2, rng=0)
    assert isinstance(m, RNNClassifier) and isinstance(m.rnn, RNN) and m.cell == "rnn"
    assert m.rnn.num_layers == 3 and m.rnn.nonlinearity == "tanh"
    layers = rnn_layer_matrices(m)
    assert [tuple(W_x.shape) for _, W_x, _ in layers] == [(5, 5), (5, 5), (2, 5)]
    for W_h, _, b in layers:  # init: 0.9 × orthogonal, zero biases
        np.testing.assert_allclose(W_h @ W_h.T, 0.81 * np.eye(5), atol=1e-12)
        assert not b.any()
    np.testing.assert_array_equal(layers[-1][1], m.fc.W.data)
    np.testing.assert_array_equal(m.embedding.W.data[0], 0.0)  # padding row
    # same seed, same model; training moves the nn parameters
    m2 = stacked_rnn_classifier(15, 4, 5, 3, 2, rng=0)
    for (k, p), (_, q) in zip(m.named_parameters(), m2.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=k)
    with pytest.raises(ValueError, match="num_layers"):
        stacked_rnn_classifier(15, 4, 5, 0, 2)
    from refimpl.nn import RNNClassifier as C

    with pytest.raises(TypeError, match="model must be an RNNClassifier with a unidirectional"):
        rnn_layer_matrices(C(vocab_size=10, d_emb=3, d_hidden=4, n_classes=2, rng=0))


def test_stacked_rnn_classifier_gradients():
    rng = np.random.default_rng(1)
    m = stacked_rnn_classifier(10, 3, 4, 2, 2, rng=0)
    X = rng.integers(1, 10, (3, 4))
    L = np.array([4, 2, 3])
    X[np.arange(4)[None, :] >= L[:, None]] = 0

    def f(W_hh1, W_ih1):
        m.rnn.W_hh_l1, m.rnn.W_ih_l1 = W_hh1, W_ih1
        return m(X, L)

    gradcheck(f, [m.rnn.W_hh_l1.data, m.rnn.W_ih_l1.data])


def test_compositional_code_autoencoder_trains_through_fit_and_eval_uses_the_codes():
    """compositional_codes_gumbel = the autoencoder module trained by refimpl.nn.fit: exactly
    ``steps`` Adam steps (one loss each); in eval mode the reconstruction is the decoded codes."""
    from refimpl.decomposition import CompositionalCodeAutoencoder, compositional_codes_gumbel
    from refimpl.nn import gradcheck

    rng = np.random.default_rng(1)
    E = rng.standard_normal((30, 5))
    codes, books, losses = compositional_codes_gumbel(E, 2, 3, steps=7, batch_size=8, rng=0)
    assert len(losses) == 7
    again = compositional_codes_gumbel(E, 2, 3, steps=7, batch_size=8, rng=0)
    np.testing.assert_array_equal(codes, again[0])  # same seed, same result
    assert losses == again[2]
    m = CompositionalCodeAutoencoder(5, 2, 3, hidden=4, rng=0)
    m.eval()
    np.testing.assert_allclose(m(E).data, compositional_decode(m.codes(E), m.codebooks()),
                               rtol=0, atol=1e-13)
    m.train()

    def loss(x):
        m._rng = np.random.default_rng(3)  # the same Gumbel noise in every evaluation
        return ((m(x) - E) ** 2).sum()

    assert gradcheck(loss, [E])["max_rel_err"] < 1e-5
    with pytest.raises(ValueError, match="n_codewords"):
        CompositionalCodeAutoencoder(5, 2, 1)
