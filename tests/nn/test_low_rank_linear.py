"""refimpl.nn.LowRankLinear (W = A B stored as two factors): torch twin, gradient check, exact
parameter count, the decomposition subclass, factorised recurrent weights, bad input."""

import numpy as np
import pytest

from refimpl.nn import LowRankLinear, RNNClassifier, Tensor, gradcheck
from refimpl.nn.surgery import factorize_recurrent_weights_


def test_low_rank_linear_matches_torch_sequential(torch):
    lay = LowRankLinear(5, 4, rank=2, rng=0)
    lay.b.data = np.random.default_rng(3).standard_normal(4)
    assert lay.A.shape == (4, 2) and lay.B.shape == (2, 5)
    t = torch.nn.Sequential(torch.nn.Linear(5, 2, bias=False), torch.nn.Linear(2, 4))
    with torch.no_grad():
        t[0].weight.copy_(torch.tensor(lay.B.data))
        t[1].weight.copy_(torch.tensor(lay.A.data))
        t[1].bias.copy_(torch.tensor(lay.b.data))
    x = np.random.default_rng(1).standard_normal((2, 3, 5))
    xo, xt = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = lay(xo)
    dout = np.random.default_rng(2).standard_normal(out.shape)
    out.backward(dout)
    tout = t(xt)
    tout.backward(torch.tensor(dout))
    # entries are sums of <= 10 products of O(1) numbers: float64 rounding is ~1e-15
    np.testing.assert_allclose(out.data, tout.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(lay.A.grad, t[1].weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(lay.B.grad, t[0].weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(lay.b.grad, t[1].bias.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(out.data, x @ lay.weight().T + lay.b.data, atol=1e-12)


def test_low_rank_linear_gradcheck_and_exact_count():
    lay = LowRankLinear(4, 3, rank=2, rng=0)
    x = np.random.default_rng(0).standard_normal((5, 4))

    def fn(x, A, B, b):
        lay.A, lay.B, lay.b = A, B, b
        return lay(x)

    gradcheck(fn, [x, lay.A.data, lay.B.data, np.arange(3.0)])
    assert LowRankLinear(7, 5, rank=3, bias=False).num_parameters() == 3 * (7 + 5)
    assert LowRankLinear(7, 5, rank=3).num_parameters() == 3 * (7 + 5) + 5


def test_low_rank_linear_init_is_seeded():
    a, b = LowRankLinear(6, 4, 2, rng=7), LowRankLinear(6, 4, 2, rng=7)
    assert np.array_equal(a.weight(), b.weight()) and not np.any(a.b.data)


def test_decomposition_low_rank_linear_is_the_nn_layer():
    from refimpl.decomposition import LowRankLinear as DecompLowRank

    assert issubclass(DecompLowRank, LowRankLinear)
    W = np.random.default_rng(0).standard_normal((6, 5))
    lay = DecompLowRank.from_dense(W, rank=5)            # full rank: exact
    np.testing.assert_allclose(lay.weight(), W, atol=1e-12)


def test_factorized_recurrent_weights_store_only_the_factors():
    m = RNNClassifier(vocab_size=10, d_emb=4, d_hidden=3, n_classes=2, rng=0)
    factorize_recurrent_weights_(m, lambda W: LowRankLinear(W.shape[1], W.shape[0], 1,
                                                            bias=False, rng=0))
    stored = sum(p.size for n, p in m.rnn.named_parameters() if n.startswith("factors_"))
    assert stored == 1 * (12 + 4) + 1 * (12 + 3)
    out = m(np.array([[1, 2, 3]]), np.array([3]))
    out.sum().backward()
    assert np.any(m.rnn.factors_W_hh_l0.A.grad)


@pytest.mark.parametrize("kw", [dict(in_features=0), dict(out_features=-1), dict(rank=0),
                                dict(rank=1.5)])
def test_low_rank_linear_bad_input(kw):
    args = dict(in_features=3, out_features=2, rank=1) | kw
    with pytest.raises((ValueError, TypeError), match=next(iter(kw))):
        LowRankLinear(**args)
