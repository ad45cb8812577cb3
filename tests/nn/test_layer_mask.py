"""TransformerClassifier(layer_mask=...): the per-layer gate LayerDrop (§2.4.2) needs."""

import numpy as np
import pytest

from refimpl.nn import Tensor, TransformerClassifier, gradcheck, no_grad


def _model(num_layers=3, norm_first=False):
    return TransformerClassifier(vocab_size=30, d_model=8, num_heads=2, d_ff=16,
                                 num_layers=num_layers, max_len=10, n_classes=3,
                                 norm_first=norm_first, rng=0)


def _batch():
    rng = np.random.default_rng(1)
    X = rng.integers(1, 30, (4, 7))
    L = np.array([7, 5, 3, 1])
    X[np.arange(7)[None, :] >= L[:, None]] = 0
    return X, L


@pytest.mark.parametrize("norm_first", [False, True])
def test_ones_equal_no_mask(norm_first):
    m = _model(norm_first=norm_first)
    X, L = _batch()
    with no_grad():
        a = m(X, L).data
        b = m(X, L, layer_mask=np.ones(3)).data
    np.testing.assert_array_equal(a, b)


def test_zero_skips_layer_exactly():
    m = _model()
    X, L = _batch()
    with no_grad():
        h_full, _ = m.encode(X, L, layer_mask=np.array([1.0, 0.0, 1.0]))
        # reference: run the layers by hand, leaving out layer 1
        h = m.embedding(X) + m.pos[:X.shape[1]]
        valid = np.arange(X.shape[1])[None, :] < L[:, None]
        for i in (0, 2):
            h = m.layers[i](h, key_padding_mask=~valid)
    err = np.abs(h_full.data - h.data).max()
    assert err == 0.0, f"max abs error {err}"
    with no_grad():
        h0, _ = m.encode(X, L, layer_mask=np.zeros(3))
    np.testing.assert_array_equal(h0.data, (m.embedding(X) + m.pos[:7]).data)


def test_features_and_encode_accept_layer_mask():
    m = _model()
    X, L = _batch()
    lm = np.array([0.0, 1.0, 1.0])
    with no_grad():
        f = m.features(X, L, layer_mask=lm).data
        logits = m(X, L, layer_mask=lm).data
        full = m(X, L).data
    np.testing.assert_allclose(m.fc(Tensor(f)).data, logits, rtol=1e-12, atol=1e-12)
    assert np.abs(logits - full).max() > 1e-6  # skipping a layer changes the output


def test_tensor_gate_gradient():
    m = _model(num_layers=2)
    X, L = _batch()

    def f(g):
        return m(X, L, layer_mask=g).sum()

    gradcheck(f, [np.array([0.3, 0.8])])


def test_bad_layer_mask():
    m = _model()
    X, L = _batch()
    with pytest.raises(ValueError, match="layer_mask"):
        m(X, L, layer_mask=np.ones(2))
    with pytest.raises(ValueError, match="layer_mask"):
        m(X, L, layer_mask=np.array([1.0, np.nan, 1.0]))
