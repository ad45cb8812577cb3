"""Quantised GRU (Eqs. 40–45), quantised LSTM and HitNet LSTM (Eq. 35)."""

import numpy as np
import pytest

from refimpl.nn import Tensor, gradcheck
from refimpl.quantization import recurrent as qr


def _sig(a):
    return 1 / (1 + np.exp(-a))


def _gru_by_hand(X, Wz, Wr, W, bz, br, b):
    B, T, _ = X.shape
    h = np.zeros((B, Wz.shape[0]))
    for t in range(T):
        hx = np.concatenate([h, X[:, t]], 1)
        z = _sig(hx @ Wz.T + bz)                                        # Eq. (40)
        r = _sig(hx @ Wr.T + br)
        ht = np.tanh(np.concatenate([r * h, X[:, t]], 1) @ W.T + b)   # Eq. (41)
        h = (1 - z) * h + z * ht
    return h


def test_quant_gru_full_precision_equals_eqs_40_41(rng):
    g = qr.QuantGRU(3, 4, rng=0)
    X = rng.uniform(-1, 1, (2, 5, 3))
    _, h = g(X)
    ref = _gru_by_hand(X, g.W_z.data, g.W_r.data, g.W.data, g.b_z.data, g.b_r.data, g.b.data)
    np.testing.assert_allclose(h.data, ref, atol=1e-12)


def test_quant_gru_states_on_grid_and_weights_quantised(rng):
    g = qr.QuantGRU(3, 4, weight_bits=2, act_bits=2, rng=0)
    out, h = g(rng.uniform(-1, 1, (2, 6, 3)))
    grid = 2 * np.arange(4) / 3 - 1
    assert np.all(np.isclose(out.data[..., None], grid).any(-1))
    # gradients flow to the full-precision weights through the STE
    (out * out).sum().backward()
    assert g.W.grad is not None and np.abs(g.W.grad).sum() > 0


def test_quant_gru_cell_gradcheck(rng):
    x, h = rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (2, 4))
    Ws = [rng.normal(0, 0.5, (4, 7)) for _ in range(3)]
    gradcheck(lambda x_, h_, a, b_, c: qr.quant_gru_cell(x_, h_, a, b_, c), [x, h, *Ws])


def test_quant_lstm_grid(rng):
    m = qr.QuantLSTM(3, 5, weight_bits=3, act_bits=3, rng=1)
    out, (h, c) = m(rng.uniform(-1, 1, (2, 4, 3)))
    grid = 2 * np.arange(8) / 7 - 1
    assert np.all(np.isclose(out.data[..., None], grid).any(-1))
    assert np.all(np.isclose(c.data[..., None], grid).any(-1))
    m2 = qr.QuantLSTM(3, 5, rng=1)
    out2, _ = m2(rng.uniform(-1, 1, (2, 4, 3)))
    assert np.all(np.abs(out2.data) < 1)


def test_hitnet_binary_states_and_ttq_grads(rng):
    m = qr.HitNetLSTM(3, 4, rng=0)
    out, _ = m(rng.uniform(-1, 1, (2, 5, 3)))
    assert set(np.unique(out.data)) <= {0.0, 1.0}
    (out.sum() + _[1].sum()).backward()
    assert m.scales.grad is not None and np.abs(m.scales.grad).sum() > 0
    Wx = m.quantized_weights()[0].data
    assert len(np.unique(Wx)) <= 3
    m.eval()
    o1, _ = m(np.ones((1, 3, 3)))
    o2, _ = m(np.ones((1, 3, 3)))
    np.testing.assert_array_equal(o1.data, o2.data)  # deterministic at inference


def test_bad_bits():
    with pytest.raises(ValueError, match="weight_bits"):
        qr.QuantGRU(2, 2, weight_bits=0)


def test_act_quant_equals_eq36(rng):
    from refimpl.quantization.uniform import q_signed

    x = rng.uniform(-1, 1, 100)
    np.testing.assert_allclose(qr.act_quant(Tensor(x), 3).data, q_signed(x, 3), atol=1e-12)


def test_quant_lstm_full_precision_equals_nn_lstm_cell(rng):
    from refimpl.nn.recurrent import lstm_cell

    m = qr.QuantLSTM(3, 4, rng=2)
    X = rng.uniform(-1, 1, (2, 5, 3))
    out, (h, c) = m(X)
    hr, cr = Tensor(np.zeros((2, 4))), Tensor(np.zeros((2, 4)))
    for t in range(5):
        hr, cr = lstm_cell(Tensor(X[:, t]), (hr, cr), m.W_ih, m.W_hh, m.b)
    np.testing.assert_allclose(h.data, hr.data, atol=1e-12)
    np.testing.assert_allclose(c.data, cr.data, atol=1e-12)
