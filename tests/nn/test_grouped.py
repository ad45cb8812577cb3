"""GroupedLinear (SqueezeBERT's 1×1 grouped convolution): torch Conv1d(groups=g) twin,
gradient check, groups = 1 is a Linear, block-diagonal structure, bad input."""

import numpy as np
import pytest

from refimpl.nn import gradcheck
from refimpl.nn.grouped import GroupedLinear


def test_matches_torch_conv1d_groups(torch):
    rng = np.random.default_rng(0)
    m = GroupedLinear(8, 12, groups=4, rng=0)
    x = rng.standard_normal((3, 5, 8))
    conv = torch.nn.Conv1d(8, 12, kernel_size=1, groups=4).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(m.W.data.reshape(12, 2, 1)))
        conv.bias.copy_(torch.tensor(m.b.data))
    want = conv(torch.tensor(x).transpose(1, 2)).transpose(1, 2).detach().numpy()
    np.testing.assert_allclose(m(x).data, want, rtol=0, atol=1e-13)


def test_gradcheck_and_groups1_is_linear():
    rng = np.random.default_rng(1)
    m = GroupedLinear(6, 4, groups=2, rng=1)
    x = rng.standard_normal((2, 3, 6))
    mg = GroupedLinear(6, 4, groups=2, rng=1)  # its W, b are replaced by gradcheck's inputs
    r = gradcheck(lambda a, W, b: _apply(mg, a, W, b), [x, m.W.data.copy(), m.b.data.copy()])
    assert r["max_abs_err"] < 1e-8
    one = GroupedLinear(6, 4, groups=1, rng=2)
    np.testing.assert_allclose(one(x).data, x @ one.W.data[0].T + one.b.data, atol=1e-14)
    # block diagonal: the first half of the outputs does not depend on the second half of x
    x2 = x.copy()
    x2[..., 3:] += 1.0
    np.testing.assert_array_equal(m(x).data[..., :2], m(x2).data[..., :2])
    assert m.num_parameters() == 6 * 4 // 2 + 4


def _apply(m, a, W, b):
    m.W, m.b = W, b
    return m(a)


def test_bad_input():
    with pytest.raises(ValueError, match="groups"):
        GroupedLinear(6, 4, groups=4)
    with pytest.raises(ValueError, match="groups"):
        GroupedLinear(6, 4, groups=0)
    with pytest.raises(ValueError, match="x"):
        GroupedLinear(6, 4, groups=2)(np.ones((2, 5)))
