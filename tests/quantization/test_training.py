"""refimpl.quantization.training: quantisation-aware models on refimpl.nn."""

import numpy as np
import pytest

from refimpl.nn import Adam, BowClassifier, Parameter, fit, no_grad
from refimpl.quantization.training import (QuantBowClassifier, QuantLSTMClassifier,
                                           weight_quantizer)


def test_lab_quantizer_uses_adam_preconditioner():
    W = Parameter(np.array([[0.5, -1.0], [2.0, -0.25]]))
    opt = Adam([W], lr=0.1)
    q = weight_quantizer("lab", [opt])
    # before a step d = 1: alpha = mean |W|
    np.testing.assert_allclose(q(W).data, np.abs(W.data).mean() * np.sign(W.data))
    W.grad = np.array([[1.0, 0.0], [0.0, 3.0]])
    opt.step()
    d = opt.preconditioner(W)
    alpha = np.abs(d * W.data).sum() / d.sum()
    np.testing.assert_allclose(q(W).data, alpha * np.sign(W.data), rtol=1e-12)
    with pytest.raises(ValueError, match="kind"):
        weight_quantizer("nope")


def test_quant_bow_without_quantiser_is_bow_classifier():
    X = np.array([[5, 6, 7, 0], [8, 9, 0, 0]])
    L = np.array([3, 2])
    a = QuantBowClassifier(12, 4, 3, rng=0)
    b = BowClassifier(12, 4, 3, d_hidden=None, rng=0)
    ident = QuantBowClassifier(12, 4, 3, quant=lambda W: W, rng=0)
    with no_grad():
        np.testing.assert_array_equal(a(X, L).data, b(X, L).data)
        np.testing.assert_allclose(ident(X, L).data, b(X, L).data, rtol=1e-12, atol=1e-15)


def test_quant_lstm_trains_with_nn_fit():
    rng = np.random.default_rng(0)
    X = rng.integers(1, 10, (32, 5))
    L = np.full(32, 5)
    y = (X[:, 0] > 5).astype(np.int64)
    m = QuantLSTMClassifier(10, 4, 6, 2, quant=weight_quantizer("bwn"), rng=0)
    h = fit(m, (X, L, y), epochs=3, lr=0.05, batch_size=8, rng=0, progress=False)
    assert h.train_loss[-1] < h.train_loss[0]
