"""§3.3.5: embedding quantisers, Hessian power iteration, mixed-precision allocation."""

import numpy as np
import pytest

from refimpl.nn import Tensor, cross_entropy
from refimpl.quantization import embeddings_transformers as et
from refimpl.quantization.training import quantized_bow_classifier


def test_embedding_quantizer_levels_and_ste(rng):
    W = rng.standard_normal((10, 4))
    q1 = et.quantize_embedding_after(W, 1, c=1 / 3)
    np.testing.assert_allclose(np.abs(q1), 1 / 3)
    np.testing.assert_array_equal(np.sign(q1), np.where(W >= 0, 1, -1))
    q2 = et.quantize_embedding_after(W, 2, c=0.5)
    assert set(np.unique(q2)) <= {-1.5, -0.5, 0.5, 1.5}
    t = Tensor(W, requires_grad=True)
    (et.embedding_quantizer(2)(t) * 2.0).sum().backward()
    np.testing.assert_allclose(t.grad, 2.0)  # straight-through
    with pytest.raises(ValueError, match="bits"):
        et.embedding_quantizer(3)


def test_top_eigenvalue_quadratic(rng):
    A = rng.standard_normal((8, 8))
    H = A @ A.T
    lam = et.top_hessian_eigenvalue(lambda w: H @ w, rng.standard_normal(8), n_iter=500,
                                    tol=1e-13, rng=0)
    ref = np.linalg.eigvalsh(H).max()
    assert abs(lam - ref) < 1e-6 * ref, (lam, ref)
    # a group restricts to its diagonal block
    lam_g = et.top_hessian_eigenvalue(lambda w: H @ w, np.zeros(8),
                                      mask=np.arange(8) < 3, n_iter=500, tol=1e-13, rng=0)
    assert abs(lam_g - np.linalg.eigvalsh(H[:3, :3]).max()) < 1e-6 * ref


def test_hvp_finite_difference_matches_model_hessian(rng):
    # softmax-regression: HVP by differences of tape gradients vs a float64 second difference
    m = quantized_bow_classifier(vocab_size=20, d_emb=3, n_classes=2, rng=0)
    X = rng.integers(1, 20, (16, 5))
    y = rng.integers(0, 2, 16)
    params = [m.fc.W]
    w0, g, restore, _ = et.flat_grad_fn(params, lambda: cross_entropy(m(X, None), y))
    v = rng.standard_normal(w0.size)
    hv1 = et.hessian_vector_product(g, w0, v, eps=1e-4)
    hv2 = et.hessian_vector_product(g, w0, v, eps=1e-3)
    restore()
    np.testing.assert_allclose(hv1, hv2, rtol=1e-4, atol=1e-8)
    np.testing.assert_array_equal(m.fc.W.data.ravel(), w0)


def test_assign_mixed_precision_budget():
    bits = et.assign_mixed_precision([5.0, 1.0, 3.0], [10, 10, 10], 3.0, choices=(2, 4))
    np.testing.assert_array_equal(bits, [4, 2, 2])  # only one group fits 4 bits in budget 90
    bits = et.assign_mixed_precision([5.0, 1.0, 3.0], [10, 10, 10], 3.5, choices=(2, 3, 4))
    assert (bits * 10).sum() <= 105 and bits[0] == 4
    with pytest.raises(ValueError, match="avg_bits"):
        et.assign_mixed_precision([1.0], [1], 1.0)
    with pytest.raises(ValueError, match="sizes"):
        et.assign_mixed_precision([1.0, 2.0], [1], 3.0)


def test_quantize_groups_uniform_rows(rng):
    m = quantized_bow_classifier(vocab_size=10, d_emb=4, n_classes=3, rng=0)
    W = m.fc.W.data.copy()
    et.quantize_groups_uniform_(m, [("fc.W", slice(0, 1)), ("fc.W", slice(1, 3))], [1, 16])
    assert len(np.unique(m.fc.W.data[0])) <= 2
    np.testing.assert_allclose(m.fc.W.data[1:], W[1:], atol=1e-4)


def test_transformer_groups_cover_heads_and_neurons():
    from refimpl.nn import TransformerClassifier

    m = TransformerClassifier(vocab_size=30, d_model=8, num_heads=2, d_ff=12, num_layers=1,
                              max_len=6, n_classes=2, activation="relu", rng=0)
    layer_groups = et.transformer_groups(m, "layer")
    assert len(layer_groups) == 7 and layer_groups[-1][0] == "fc.W"
    named = dict(m.named_parameters())
    assert all(pn in named for _, members in layer_groups for pn, _ in members)
    heads = et.transformer_groups(m, "head")
    assert [n for n, _ in heads] == ["head0", "head1"]
    assert heads[1][1][0] == ("layers.0.self_attn.W_q.W", slice(4, 8))
    two = TransformerClassifier(vocab_size=30, d_model=8, num_heads=2, d_ff=12, num_layers=2,
                                max_len=6, n_classes=2, rng=0)
    assert [n for n, _ in et.transformer_groups(two, "head")] == [
        "layer0.head0", "layer0.head1", "layer1.head0", "layer1.head1"]
    neurons = et.transformer_groups(m, "neuron", n_neuron_groups=3)
    assert [idx for _, [(_, idx)] in neurons] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    with pytest.raises(ValueError, match="granularity"):
        et.transformer_groups(m, "block")
    X = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 0, 0]])
    L = np.array([3, 4])
    y = np.array([0, 1])
    W_before = m.layers[0].self_attn.W_q.W.data.copy()
    s = et.group_sensitivities_model(m, lambda: cross_entropy(m(X, L), y), heads, n_iter=3,
                                     rng=0)
    assert s.shape == (2,) and np.all(s >= 0)
    np.testing.assert_array_equal(m.layers[0].self_attn.W_q.W.data, W_before)  # restored


def test_assign_mixed_precision_refuses_nan_and_bad_choices():
    """Issue #12: NaN sensitivities used to be accepted (and silently ranked)."""
    with pytest.raises(ValueError, match="sensitivity contains NaN"):
        et.assign_mixed_precision([np.nan, 1.0], [10, 10], 4)
    with pytest.raises(ValueError, match="sizes must have every value in"):
        et.assign_mixed_precision([2.0, 1.0], [10, -10], 4)
    with pytest.raises(TypeError, match="avg_bits must be a real number"):
        et.assign_mixed_precision([2.0, 1.0], [10, 10], "4")
    with pytest.raises(ValueError, match="choices must be an integer in"):
        et.assign_mixed_precision([2.0, 1.0], [10, 10], 4, choices=(0, 4))
    with pytest.raises(TypeError, match="choices must be a non-empty sequence"):
        et.assign_mixed_precision([2.0, 1.0], [10, 10], 4, choices=())


def test_in_place_model_quantisers_are_named_with_underscore():
    """Issue #12: the model-level quantisers modify the model: the names now end in ``_``; the
    old names are deprecated aliases that still work."""
    import refimpl.quantization as q

    assert "quantize_model_weights_" in q.__all__ and "quantize_model_weights" not in q.__all__
    assert "quantize_groups_uniform_" in q.__all__ and "quantize_groups_uniform" not in q.__all__
    m = quantized_bow_classifier(vocab_size=10, d_emb=4, n_classes=3, rng=0)
    W = m.fc.W.data.copy()
    n = et.quantize_model_weights_(m, np.sign)
    assert n == sum(p.size for _, p in m.named_parameters() if p.ndim >= 2)
    np.testing.assert_array_equal(m.fc.W.data, np.sign(W))
    m2 = quantized_bow_classifier(vocab_size=10, d_emb=4, n_classes=3, rng=0)
    with pytest.warns(DeprecationWarning, match="quantize_model_weights_"):
        assert q.quantize_model_weights(m2, np.sign) == n
    np.testing.assert_array_equal(m2.fc.W.data, m.fc.W.data)
    with pytest.warns(DeprecationWarning, match="quantize_groups_uniform_"):
        q.quantize_groups_uniform(m2, [("fc.W", slice(None))], [1])
    assert len(np.unique(m2.fc.W.data)) <= 2
    with pytest.raises(TypeError, match="model must be a refimpl.nn Module"):
        et.quantize_model_weights_(None, np.sign)
    with pytest.raises(TypeError, match="quantize must be callable"):
        et.quantize_model_weights_(m, "sign")
    with pytest.raises(ValueError, match="bits must give one bit-width per group"):
        et.quantize_groups_uniform_(m, [("fc.W", slice(None))], [1, 2])
    with pytest.raises(ValueError, match=r"bits must be an integer in \[1, 16\], got 0"):
        et.quantize_groups_uniform_(m, [("fc.W", slice(None))], [0])
    with pytest.raises(ValueError, match="groups must hold"):
        et.quantize_groups_uniform_(m, [("nope", slice(None))], [4])
