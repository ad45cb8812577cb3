"""Conv1d and Highway (refimpl.nn.conv): hand values, gradcheck, torch twins, bad input."""

import numpy as np
import pytest

from refimpl.nn import Tensor, gradcheck
from refimpl.nn.conv import Conv1d, Highway, conv1d, conv1d_backward, conv1d_forward

EPS = np.finfo(float).eps


def test_conv1d_hand_values():
    # one channel, width 2, W = [1, 10]: y_t = x_t + 10 x_{t+1} + b
    x = np.array([[[1.0], [2.0], [3.0]]])                 # (1, 3, 1)
    W = np.array([[[1.0, 10.0]]])                          # (1, 1, 2)
    y, _ = conv1d_forward(x, W, np.array([0.5]))
    assert y.tolist() == [[[21.5], [32.5]]]
    # width = L: one output step; width 1 is a per-step linear map
    assert conv1d_forward(x, np.ones((1, 1, 3)))[0].tolist() == [[[6.0]]]
    W1 = np.random.default_rng(0).standard_normal((4, 1, 1))
    np.testing.assert_array_equal(conv1d_forward(x, W1)[0], x @ W1[:, :, 0].T)


def test_conv1d_against_explicit_loop_and_backward():
    rng = np.random.default_rng(1)
    x, W, b = rng.standard_normal((3, 7, 4)), rng.standard_normal((5, 4, 3)), rng.standard_normal(5)
    y, cache = conv1d_forward(x, W, b)
    loop = np.zeros((3, 5, 5))
    for n in range(3):
        for t in range(5):
            for o in range(5):
                loop[n, t, o] = (x[n, t:t + 3, :].T * W[o]).sum() + b[o]
    bound = 16 * 12 * EPS * np.abs(x).max() * np.abs(W).max()
    assert np.abs(y - loop).max() <= bound
    dout = rng.standard_normal(y.shape)
    dx, dW, db = conv1d_backward(dout, cache)
    assert dx.shape == x.shape and dW.shape == W.shape
    np.testing.assert_allclose(db, dout.sum((0, 1)), rtol=1e-14)


def test_conv1d_gradcheck():
    rng = np.random.default_rng(2)
    gradcheck(lambda x, W, b: conv1d(x, W, b), [rng.standard_normal((2, 5, 3)),
                                                rng.standard_normal((4, 3, 2)),
                                                rng.standard_normal(4)], rng=0)
    gradcheck(lambda x, W: conv1d(x, W), [rng.standard_normal((2, 4, 2)),
                                          rng.standard_normal((3, 2, 4))], rng=0)


def test_conv1d_torch_twin(torch):
    layer = Conv1d(4, 6, 3, rng=0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 4))
    t = torch.nn.Conv1d(4, 6, 3)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(layer.W.data))
        t.bias.copy_(torch.tensor(layer.b.data))
    xo, xt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = layer(xo)
    ref = t(xt.transpose(1, 2)).transpose(1, 2)           # torch is channels-first
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out.data, ref.detach().numpy(), atol=1e-13)
    np.testing.assert_allclose(layer.W.grad, t.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(layer.b.grad, t.bias.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), atol=1e-12)
    assert layer.num_parameters() == 6 * 4 * 3 + 6


def test_highway_identity_and_gate_offset():
    hw = Highway(3, rng=0)
    y = np.random.default_rng(4).standard_normal((2, 3))
    # gate weights and bias zero: t = σ(−2) exactly, the offset is not a parameter
    hw.T_l0.W.data[:] = 0.0
    hw.T_l0.b.data[:] = 0.0
    t = 1 / (1 + np.exp(2.0))
    g = np.maximum(y @ hw.H_l0.W.data.T + hw.H_l0.b.data, 0)
    np.testing.assert_allclose(hw(y).data, t * g + (1 - t) * y, rtol=1e-14, atol=1e-15)
    assert hw.num_parameters() == 2 * (9 + 3)
    # a large negative offset carries y through unchanged (t -> 0)
    carry = Highway(3, gate_offset=-800.0, rng=0)
    np.testing.assert_array_equal(carry(y).data, y)


def test_highway_gradcheck_and_torch_twin(torch):
    hw = Highway(4, num_layers=2, rng=1)
    rng = np.random.default_rng(5)
    names = [n for n, _ in hw.named_parameters()]

    def fn(y, *ps):
        for name, p in zip(names, ps):
            mod, attr = name.split(".")
            setattr(getattr(hw, mod), attr, p)
        return hw(y)

    gradcheck(fn, [rng.standard_normal((3, 4))] + [p.data for p in hw.parameters()], rng=0)

    y = rng.standard_normal((3, 4))
    yt = torch.tensor(y)
    for k in range(2):                                   # Kim et al.'s HighwayMLP in torch
        H, T = getattr(hw, f"H_l{k}"), getattr(hw, f"T_l{k}")
        g = torch.relu(yt @ torch.tensor(H.W.data).T + torch.tensor(H.b.data))
        t = torch.sigmoid(yt @ torch.tensor(T.W.data).T + torch.tensor(T.b.data) - 2.0)
        yt = t * g + (1 - t) * yt
    np.testing.assert_allclose(fn(y, *[p.data for p in hw.parameters()]).data, yt.numpy(),
                               atol=1e-14)


def test_bad_input():
    with pytest.raises(ValueError, match="width"):
        Conv1d(2, 3, 4, rng=0)(np.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="x"):
        Conv1d(2, 3, 1, rng=0)(np.zeros((1, 3, 5)))
    with pytest.raises(ValueError, match="width"):
        Conv1d(2, 3, 0)
    with pytest.raises(ValueError, match="gate_offset"):
        Highway(3, gate_offset=np.nan)
    with pytest.raises(ValueError, match="activation"):
        Highway(3, activation="sigmoid")
