"""Linear, Embedding, LayerNorm, Dropout: PyTorch layout and init, torch cross-checks, the
weight_transform hook, and bad input."""

import numpy as np
import pytest

from refimpl.nn import Dropout, Embedding, LayerNorm, Linear, Tensor, gradcheck
from refimpl.nn import functional as F


def test_linear_layout_init_and_torch(torch):
    lin = Linear(5, 3, rng=0)
    assert lin.W.shape == (3, 5) and lin.b.shape == (3,)
    bound = 1 / np.sqrt(5)
    assert np.all(np.abs(lin.W.data) <= bound) and np.all(np.abs(lin.b.data) <= bound)
    x = np.random.default_rng(1).standard_normal((2, 4, 5))
    t = torch.nn.Linear(5, 3)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(lin.W.data))
        t.bias.copy_(torch.tensor(lin.b.data))
    xt = torch.tensor(x, requires_grad=True)
    xo = Tensor(x, requires_grad=True)
    out = lin(xo)
    dout = np.random.default_rng(2).standard_normal(out.shape)
    out.backward(dout)
    t(xt).backward(torch.tensor(dout))
    np.testing.assert_allclose(out.data, t(xt).detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(lin.W.grad, t.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(lin.b.grad, t.bias.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), atol=1e-12)
    assert Linear(5, 3, bias=False).b is None


def test_linear_weight_transform_hook_masks_and_passes_gradient():
    lin = Linear(4, 2, rng=0)
    m = np.array([[1.0, 0, 1, 0], [0, 1, 1, 1]])
    lin.weight_transform = lambda name, W: F.mask(W, m)
    x = np.random.default_rng(0).standard_normal((3, 4))
    out = lin(x)
    np.testing.assert_allclose(out.data, x @ (lin.W.data * m).T + lin.b.data, rtol=1e-14)
    out.sum().backward()
    assert np.all(lin.W.grad[m == 0] == 0) and np.all(lin.W.grad[m == 1] != 0)


def test_embedding_lookup_padding_idx_and_torch(torch):
    emb = Embedding(6, 3, padding_idx=0, rng=0)
    assert np.all(emb.W.data[0] == 0)
    idx = np.array([[1, 0, 5], [5, 5, 2]])
    out = emb(idx)
    np.testing.assert_array_equal(out.data, emb.W.data[idx])
    dout = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(dout)
    t = torch.nn.Embedding(6, 3, padding_idx=0)
    with torch.no_grad():
        t.weight.copy_(torch.tensor(emb.W.data))
    t(torch.tensor(idx)).backward(torch.tensor(dout))
    np.testing.assert_allclose(emb.W.grad, t.weight.grad.numpy(), atol=1e-14)
    assert np.all(emb.W.grad[0] == 0)  # padding row untrained
    np.testing.assert_allclose(emb.W.grad[5], dout[0, 2] + dout[1, 0] + dout[1, 1])


def test_layer_norm_and_dropout():
    ln = LayerNorm(4)
    res = gradcheck(lambda x, g, b: F.layer_norm(x, g, b, eps=ln.eps),
                    [np.random.default_rng(0).standard_normal((3, 4)), np.ones(4), np.zeros(4)])
    assert res["max_abs_err"] < 1e-7
    d = Dropout(0.5, rng=3)
    x = np.ones((200, 50))
    y = d(x).data
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs((y == 0).mean() - 0.5) < 0.02
    assert np.array_equal(Dropout(0.5, rng=3)(x).data, y)  # same seed, same mask
    d.eval()
    assert np.array_equal(d(x).data, x)


def test_bad_input_names_the_argument():
    lin = Linear(4, 2)
    with pytest.raises(ValueError, match="x must have last dimension 4"):
        lin(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="x contains NaN"):
        lin(np.array([[np.nan, 0, 0, 0]]))
    with pytest.raises(TypeError, match="x must be a float"):
        lin(np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 3)
    emb = Embedding(5, 2)
    with pytest.raises(ValueError, match=r"idx \(token ids\) must lie in \[0, 5\)"):
        emb(np.array([[1, 5]]))
    with pytest.raises(ValueError, match="idx"):
        emb(np.array([-1]))
    with pytest.raises(TypeError, match="idx"):
        emb(np.array([1.0]))
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(5, 2, padding_idx=5)
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="eps"):
        LayerNorm(3, eps=0.0)
