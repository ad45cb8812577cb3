"""§5 tour method hashednets-lstm: the least-squares projection onto the hashed span, the hashed
recurrent weights equal their materialised virtual matrices on the tape, exact sizes."""

import copy

import numpy as np
import pytest

from refimpl.nn import RNNClassifier
from refimpl.nn import fit as nn_fit
from refimpl.registry import TourContext, methods
from refimpl.sharing import HashedLinear
from refimpl.sharing.tour import hash_recurrent_weights_, hashed_projection


def test_hashed_projection_is_the_least_squares_solution():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((9, 6))
    K = 11
    layer = HashedLinear(6, 9, K, bias=False, seed=3)
    w = hashed_projection(W, K, layer.seed)
    # normal equations: ∂‖V(w) − W‖²/∂w_k = 2 Σ_{bucket k} ξ (V − W) = 0, through the layer's
    # own backward (dw of ½‖V − W‖² is the hashed gradient of the residual)
    layer.w.data = w
    R = layer.virtual_weight() - W  # (out, in)
    from refimpl.nn import Tensor

    x = Tensor(np.eye(6))
    y = layer(x)  # I Vᵀ = Vᵀ, (in, out)
    y.backward(R.T)
    np.testing.assert_allclose(layer.w.grad, 0.0, atol=1e-12)
    # and it beats any perturbation
    base = np.linalg.norm(R)
    for _ in range(5):
        layer.w.data = w + 1e-2 * rng.standard_normal(K)
        assert np.linalg.norm(layer.virtual_weight() - W) > base


def test_hashed_recurrent_weights_equal_their_virtual_matrices():
    rng = np.random.default_rng(1)
    X = rng.integers(1, 20, (8, 5))
    L = rng.integers(1, 6, 8)
    m = RNNClassifier(vocab_size=20, d_emb=6, d_hidden=8, n_classes=2, rng=0)
    dense = copy.deepcopy(m)
    layers = hash_recurrent_weights_(m, 1 / 4, seed=7)
    assert len(layers) == 2  # W_ih_l0, W_hh_l0
    dense.rnn.W_ih_l0.data = layers[0].virtual_weight()
    dense.rnn.W_hh_l0.data = layers[1].virtual_weight()
    np.testing.assert_allclose(m(X, L).data, dense(X, L).data, rtol=0, atol=1e-12)
    stored = sum(layer.K for layer in layers)
    assert m.num_parameters() == dense.num_parameters() - (32 * 6 + 32 * 8) + stored


def test_hashednets_tour_method_reports_exact_bits():
    rng = np.random.default_rng(2)
    X = rng.integers(1, 30, (64, 6))
    lengths = rng.integers(1, 7, 64)
    y = (X[:, 0] % 2).astype(np.int64)
    base = RNNClassifier(vocab_size=30, d_emb=8, d_hidden=16, n_classes=2, rng=0)
    nn_fit(base, (X, lengths, y), epochs=2, lr=1e-2, rng=0, progress=False)

    def fit(model, **kw):
        return nn_fit(model, (X, lengths, y), epochs=1, lr=1e-2, rng=0, progress=False)

    ctx = TourContext(task=None, baseline=base, baseline_kind="lstm", quick=True, seed=0,
                      fit=fit, evaluate=lambda m: 0.0, make_model=None, baselines={"lstm": base})
    res = {m.name: m for m in methods()}["hashednets-lstm"].func(ctx)
    assert res.bits == 32 * res.params + 2 * 32 * 2
    assert res.params < base.num_parameters()


def _tiny_transformer_ctx():
    from refimpl.nn import TransformerClassifier

    rng = np.random.default_rng(3)
    X = rng.integers(1, 30, (64, 6))
    lengths = rng.integers(1, 7, 64)
    y = (X[:, 0] % 2).astype(np.int64)
    base = TransformerClassifier(vocab_size=30, d_model=8, num_heads=2, d_ff=16, num_layers=3,
                                 max_len=6, n_classes=2, rng=0)
    nn_fit(base, (X, lengths, y), epochs=1, lr=1e-2, rng=0, progress=False)

    def fit(model, **kw):
        return nn_fit(model, (X, lengths, y), epochs=1, lr=1e-2, rng=0, progress=False)

    ctx = TourContext(task=None, baseline=base, baseline_kind="transformer", quick=True, seed=0,
                      fit=fit, evaluate=lambda m: 0.0, make_model=None,
                      baselines={"transformer": base})
    return ctx, base, (X, lengths)


def test_quaternion_projection_is_the_least_squares_solution():
    from refimpl.sharing import quaternion_block_matrix
    from refimpl.sharing.tour import quaternion_projection

    rng = np.random.default_rng(4)
    comps = [rng.standard_normal((2, 3)) for _ in range(4)]
    for a, b in zip(quaternion_projection(quaternion_block_matrix(*comps)), comps):
        np.testing.assert_allclose(a, b, atol=1e-15)         # a quaternion matrix is a fixed point
    W = rng.standard_normal((8, 12))
    P = quaternion_projection(W)
    R = W - quaternion_block_matrix(*P)
    # the residual is orthogonal to every quaternion direction (normal equations)
    for c in range(4):
        for idx in np.ndindex(2, 3):
            E = [np.zeros((2, 3)) for _ in range(4)]
            E[c][idx] = 1.0
            assert abs((R * quaternion_block_matrix(*E)).sum()) < 1e-13
    with pytest.raises(ValueError, match="W"):
        quaternion_projection(np.ones((6, 8)))


def test_albert_and_quaternion_tour_methods_report_exact_bits():
    from refimpl.sharing import QuaternionLinear
    from refimpl.sharing.tour import share_all_layers_

    ctx, base, (X, lengths) = _tiny_transformer_ctx()
    m = copy.deepcopy(base)
    layer_params = m.layers[0].num_parameters()
    mean_W1 = np.mean([layer.linear1.W.data for layer in m.layers], axis=0)
    share_all_layers_(m)
    assert all(layer is m.layers[0] for layer in m.layers)
    np.testing.assert_allclose(m.layers[0].linear1.W.data, mean_W1, atol=1e-15)
    assert m.num_parameters() == base.num_parameters() - 2 * layer_params

    by_name = {meth.name: meth for meth in methods()}
    res = by_name["albert-share-all"].func(ctx)
    assert res.params == base.num_parameters() - 2 * layer_params and res.bits == 32 * res.params
    res = by_name["quaternion-ffn"].func(ctx)
    qs = [mod for layer in res.model.layers for mod in (layer.linear1, layer.linear2)]
    assert all(isinstance(q, QuaternionLinear) for q in qs)
    saved = 3 * 2 * (8 * 16 - 8 * 16 // 4)                  # 3/4 of both FFN matrices, 3 layers
    assert res.params == base.num_parameters() - saved and res.bits == 32 * res.params
    assert res.model(X, lengths).shape == (64, 2)


def test_lightrnn_embedding_tour_method():
    from refimpl.sharing import SubvectorEmbedding
    from refimpl.sharing.tour import lightrnn_embedding_

    rng = np.random.default_rng(5)
    X = rng.integers(1, 30, (64, 6))
    lengths = rng.integers(1, 7, 64)
    y = (X[:, 0] % 2).astype(np.int64)
    base = RNNClassifier(vocab_size=30, d_emb=8, d_hidden=16, n_classes=2, rng=0)
    nn_fit(base, (X, lengths, y), epochs=1, lr=1e-2, rng=0, progress=False)
    m = copy.deepcopy(base)
    emb = lightrnn_embedding_(m, seed=0)
    assert isinstance(m.embedding, SubvectorEmbedding) and emb.num_refs == 6  # ⌈√30⌉
    cells = set(map(tuple, emb.assignment.tolist()))
    assert len(cells) == 30                                     # distinct cells
    halves = base.embedding.W.data.reshape(30, 2, 4)
    for b in range(2):                                          # vectors = their words' means
        for k in range(6):
            members = [w for w in range(1, 30) if emb.assignment[w, b] == k]
            if members:
                np.testing.assert_allclose(emb.R.data[b, k], halves[members, b].mean(0),
                                           atol=1e-14)
    assert np.all(m.embedding(np.array([0])).data == 0)         # padding stays zero

    def fit(model, **kw):
        return nn_fit(model, (X, lengths, y), epochs=1, lr=1e-2, rng=0, progress=False)

    ctx = TourContext(task=None, baseline=base, baseline_kind="lstm", quick=True, seed=0,
                      fit=fit, evaluate=lambda m: 0.0, make_model=None, baselines={"lstm": base})
    res = {meth.name: meth for meth in methods()}["lightrnn-embedding"].func(ctx)
    assert res.params == base.num_parameters() - 30 * 8 + 2 * 6 * 4
    assert res.bits == 32 * res.params + 30 * 2 * 3             # ⌈log2 6⌉ = 3 bits per index
    assert res.model(X, lengths).shape == (64, 2)


def test_quaternion_transformer_tour_method():
    from refimpl.sharing import QuaternionLinear

    ctx, base, (X, lengths) = _tiny_transformer_ctx()
    res = {meth.name: meth for meth in methods()}["quaternion-transformer"].func(ctx)
    layers = res.model.layers
    mods = [m for layer in layers for m in (layer.linear1, layer.linear2, layer.self_attn.W_q,
                                            layer.self_attn.W_k, layer.self_attn.W_v,
                                            layer.self_attn.W_o)]
    assert all(isinstance(m, QuaternionLinear) for m in mods)
    saved = 3 * (2 * (8 * 16 - 8 * 16 // 4) + 4 * (8 * 8 - 8 * 8 // 4))   # 3/4 of each matrix
    assert res.params == base.num_parameters() - saved and res.bits == 32 * res.params
    assert res.model(X, lengths).shape == (64, 2)
