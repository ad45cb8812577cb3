"""refimpl.quantization.training: quantisation-aware models on refimpl.nn."""

import numpy as np
import pytest

from refimpl.nn import Adam, BowClassifier, Parameter, Tensor, fit, lstm_cell, no_grad
from refimpl.quantization.training import (quantized_bow_classifier, as_weight_transform,
                                           quantized_lstm_classifier, weight_quantizer)


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
    a = quantized_bow_classifier(vocab_size=12, d_emb=4, n_classes=3, rng=0)
    b = BowClassifier(vocab_size=12, d_emb=4, n_classes=3, d_hidden=None, rng=0)
    ident = quantized_bow_classifier(vocab_size=12, d_emb=4, n_classes=3, quant=lambda W: W, rng=0)
    with no_grad():
        np.testing.assert_array_equal(a(X, L).data, b(X, L).data)
        np.testing.assert_allclose(ident(X, L).data, b(X, L).data, rtol=1e-12, atol=1e-15)


def test_quant_lstm_trains_with_nn_fit():
    rng = np.random.default_rng(0)
    X = rng.integers(1, 10, (32, 5))
    L = np.full(32, 5)
    y = (X[:, 0] > 5).astype(np.int64)
    m = quantized_lstm_classifier(10, 4, 6, 2, quant=weight_quantizer("bwn"), rng=0)
    h = fit(m, (X, L, y), epochs=3, lr=0.05, batch_size=8, rng=0, progress=False)
    assert h.train_loss[-1] < h.train_loss[0]


def _quant_lstm_by_hand(m, quant, X, L):
    """The forward of the deleted private ``QuantLSTMClassifier`` (issue #13): one
    :func:`lstm_cell` per step on ``quant(W_ih), quant(W_hh)``, the state frozen after each
    sentence's end, then the output layer on the last state."""
    E = m.embedding(X)  # (B, T, d_emb)
    Wi, Wh = quant(m.rnn.W_ih_l0), quant(m.rnn.W_hh_l0)
    B, T = X.shape
    H = m.rnn.hidden_size
    h, c = Tensor(np.zeros((B, H))), Tensor(np.zeros((B, H)))
    mask = (np.arange(T)[None, :] < L[:, None]).astype(float)  # (B, T)
    for t in range(T):
        hn, cn = lstm_cell(E[:, t, :], (h, c), Wi, Wh, m.rnn.b_ih_l0, m.rnn.b_hh_l0)
        keep = mask[:, t:t + 1]  # (B, 1)
        h, c = hn * keep + h * (1.0 - keep), cn * keep + c * (1.0 - keep)
    return m.fc(h)


@pytest.mark.parametrize("kind", ["float", "binary", "bwn", "twn", "lab", "uniform2", "alt2"])
@pytest.mark.parametrize("fused", [True, False])
def test_quantized_lstm_classifier_equals_quantised_cell_loop(kind, fused):
    """nn.RNNClassifier + weight_transform = the old private quantised LSTM's forward and
    gradients (checked bit-for-bit against the deleted class before it was removed)."""
    rng = np.random.default_rng(1)
    X = rng.integers(1, 10, (5, 6))
    L = np.array([6, 3, 1, 6, 4])
    X[np.arange(6)[None, :] >= L[:, None]] = 0
    opt_ref: list = []
    quant = weight_quantizer(kind, opt_ref)
    m = quantized_lstm_classifier(10, 4, 6, 2, quant=quant, rng=0)
    opt_ref.append(Adam(m.parameters(), 0.01))
    m.rnn.fused = fused
    g = np.array([1.0, -2.0])
    out = m(X, L)
    (out * g).sum().backward()
    grads = {k: p.grad.copy() for k, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = None
    ref = _quant_lstm_by_hand(m, quant, X, L)
    (ref * g).sum().backward()
    tol = 0 if not fused else 1e-14
    np.testing.assert_allclose(out.data, ref.data, rtol=0, atol=tol)
    for k, p in m.named_parameters():
        np.testing.assert_allclose(grads[k], p.grad, rtol=0, atol=tol, err_msg=k)
    Wq = quant(m.rnn.W_hh_l0).data  # (4H, H): the values the forward pass used
    if kind == "alt2":  # 2 binary codes per row: at most 4 values a row
        assert max(len(np.unique(r)) for r in Wq) <= 4
    elif kind != "float":
        assert len(np.unique(Wq)) <= (4 if kind == "uniform2" else 3)


def test_as_weight_transform_only_named_weights_and_bad_arguments():
    q = as_weight_transform(lambda W: W * 0.0, prefixes=("W_hh",))
    W = Tensor(np.ones((2, 2)))
    assert q("W_hh_l1_reverse", W).data.sum() == 0.0
    assert q("W_ih_l0", W) is W
    with pytest.raises(TypeError, match="quant must be a callable"):
        as_weight_transform(3)
    with pytest.raises(TypeError, match="prefixes must be a tuple of str"):
        as_weight_transform(lambda W: W, prefixes="W")
    m = quantized_lstm_classifier(10, 4, 6, 2, rng=0)
    assert m.rnn.weight_transform is None
