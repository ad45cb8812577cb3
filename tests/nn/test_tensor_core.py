"""The tape core: accumulation, no_grad, retain_grad, custom ops, error messages."""

import numpy as np
import pytest

from refimpl.nn import Tensor, custom_op, no_grad
from refimpl.nn import functional as F


def test_gradient_accumulates_when_a_tensor_is_used_twice():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    y = (x * x + x * 3.0).sum()  # dy/dx = 2x + 3
    y.backward()
    np.testing.assert_array_equal(x.grad, [5.0, 7.0, 9.0])


def test_backward_twice_accumulates_into_leaf_grad():
    x = Tensor(np.array([2.0]), requires_grad=True)
    (x * 4.0).sum().backward()
    (x * 4.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [8.0])


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y._parents == ()


def test_retain_grad_on_intermediate():
    x = Tensor(np.array([1.0, -1.0]), requires_grad=True)
    h = (x * 3.0).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_array_equal(h.grad, [6.0, -6.0])
    np.testing.assert_array_equal(x.grad, [18.0, -18.0])


def test_custom_op_and_straight_through_clip():
    sign_ste = custom_op(lambda w: (np.sign(w), np.abs(w) <= 1), lambda d, k: (d * k,))
    w = Tensor(np.array([0.5, -2.0, -0.3]), requires_grad=True)
    sign_ste(w).sum().backward()
    np.testing.assert_array_equal(w.grad, [1.0, 0.0, 1.0])

    w2 = Tensor(np.array([0.5, -2.0]), requires_grad=True)
    out = F.straight_through(w2, np.sign, clip_at=1.0)
    np.testing.assert_array_equal(out.data, [1.0, -1.0])
    out.sum().backward()
    np.testing.assert_array_equal(w2.grad, [1.0, 0.0])


def test_deep_chain_does_not_overflow_recursion():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0])


def test_inputs_are_not_mutated():
    a = np.array([[1.0, -2.0], [3.0, 4.0]])
    keep = a.copy()
    t = Tensor(a, requires_grad=True)
    (F.relu(t) * 2.0).sum().backward()
    np.testing.assert_array_equal(a, keep)


def test_errors_are_clear():
    with pytest.raises(TypeError, match="integer Tensor"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(ValueError, match="grad must be given"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="grad must have shape"):
        (x * 2.0).backward(np.ones(3))
    with pytest.raises(IndexError, match="idx must lie"):
        F.embedding(Tensor(np.ones((3, 2))), np.array([3]))
    with pytest.raises(ValueError, match="sections"):
        F.split(Tensor(np.ones((2, 5))), 2, axis=1)
    with pytest.raises(ValueError, match="p must be"):
        F.dropout(Tensor(np.ones(2)), 1.0)


def test_dropout_same_seed_bit_identical():
    x = Tensor(np.ones((4, 5)))
    a = F.dropout(x, 0.3, rng=5).data
    b = F.dropout(x, 0.3, rng=5).data
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0 / 0.7}


def test_float32_stays_float32_through_activations():
    from refimpl.nn import ops

    x = np.linspace(-2, 2, 7, dtype=np.float32)
    for fwd, bwd in [(ops.gelu_forward, ops.gelu_backward), (ops.tanh_forward, ops.tanh_backward),
                     (ops.sigmoid_forward, ops.sigmoid_backward),
                     (ops.softmax_forward, ops.softmax_backward)]:
        out, cache = fwd(x)
        assert out.dtype == np.float32, fwd.__name__
        assert bwd(x, cache)[0].dtype == np.float32, bwd.__name__
