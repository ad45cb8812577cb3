"""A small tape: :class:`Tensor` records the primitive ``forward/backward`` pairs of
:mod:`refimpl.nn.ops` so models compose and get gradients without hand-written backward passes.

The idea is micrograd's, at array level: each op application creates a node that remembers its
inputs and a closure calling the op's backward with the saved cache. ``loss.backward()`` walks
the graph in reverse topological order and accumulates ``.grad`` on every tensor that
``requires_grad``. Masks, gates and straight-through estimators are ops like any other (see
:func:`custom_op` and :func:`refimpl.nn.functional.straight_through`).

Examples
--------
>>> import numpy as np
>>> from refimpl.nn import Tensor
>>> x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
>>> y = (x * x).sum()
>>> y.backward()
>>> x.grad
array([ 2., -4.])
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np

from refimpl.nn import ops

__all__ = ["Tensor", "Parameter", "apply_op", "custom_op", "no_grad", "is_grad_enabled",
           "as_tensor", "data_of"]

_GRAD_ENABLED = [True]


def is_grad_enabled() -> bool:
    """Whether new ops are recorded on the tape."""
    return _GRAD_ENABLED[-1]


@contextlib.contextmanager
def no_grad():
    """Context manager: ops inside are not recorded (inference, weight updates)."""
    _GRAD_ENABLED.append(False)
    try:
        yield
    finally:
        _GRAD_ENABLED.pop()


class Tensor:
    """An ndarray with an optional gradient and a link to the op that produced it.

    Parameters
    ----------
    data : array_like
        Converted with ``np.asarray``; Python floats and ints become float64 (integer arrays
        stay integer, for indices).
    requires_grad : bool
        Whether ``.grad`` is accumulated for this tensor.
    name : str, optional
        For debugging and ``state_dict`` keys.

    Attributes
    ----------
    data : ndarray
    grad : ndarray or None
        Same shape as ``data`` after :meth:`backward`.
    """

    __array_priority__ = 1000  # so ndarray <op> Tensor defers to Tensor's reflected ops

    def __init__(self, data, requires_grad: bool = False, name: str | None = None,
                 _parents: Sequence["Tensor"] = (), _backward: Callable | None = None,
                 _op: str = ""):
        if isinstance(data, Tensor):
            data = data.data
        arr = np.asarray(data)
        if arr.dtype.kind in "iu" and requires_grad:
            raise TypeError("an integer Tensor cannot require gradients; "
                            "convert data to float first")
        if arr.dtype == object:
            raise TypeError("Tensor data must be numeric, got dtype object")
        self.data = arr
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self.name = name
        self._parents = tuple(_parents)
        self._backward = _backward
        self._op = _op

    # ------------------------------------------------------------------ array-like
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying array (not a copy)."""
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        """A new leaf tensor sharing the data, with no gradient history."""
        return Tensor(self.data)

    def __repr__(self) -> str:
        g = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}{g})"

    # ------------------------------------------------------------------ autograd
    def zero_grad(self) -> None:
        self.grad = None

    def backward(self, grad=None) -> None:
        """Back-propagate from this tensor, accumulating ``.grad`` on every tensor that needs it.

        Parameters
        ----------
        grad : array_like, optional
            Upstream gradient, same shape as ``self``; defaults to 1 for a scalar.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input of the graph has requires_grad=True)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"grad must be given for a non-scalar tensor of shape "
                                 f"{self.shape}")
            grad = np.ones_like(self.data, dtype=np.result_type(self.data, np.float64)
                                if self.data.dtype.kind != "f" else self.data.dtype)
        grad = np.asarray(grad)
        if grad.shape != self.shape:
            raise ValueError(f"grad must have shape {self.shape}, got {grad.shape}")

        order: list[Tensor] = []
        seen: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:  # iterative DFS (deep RNN graphs would overflow recursion)
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for p in node._parents:
                if p.requires_grad and id(p) not in seen:
                    stack.append((p, False))

        grads: dict[int, np.ndarray] = {id(self): grad}
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf: accumulate
                node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            if node._retain:
                node.grad = g.copy() if node.grad is None else node.grad + g
            for p, pg in zip(node._parents, node._backward(g)):
                if pg is None or not p.requires_grad:
                    continue
                if pg.shape != p.shape:
                    raise RuntimeError(f"op {node._op!r} returned a gradient of shape {pg.shape}"
                                       f" for an input of shape {p.shape}")
                k = id(p)
                grads[k] = pg if k not in grads else grads[k] + pg

    _retain = False

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this non-leaf tensor after :meth:`backward` (e.g. ∂L/∂Att_h)."""
        self._retain = True
        return self

    # ------------------------------------------------------------------ operators
    def __add__(self, o):
        return apply_op(ops.add_forward, ops.add_backward, self, o, name="add")

    def __radd__(self, o):
        return apply_op(ops.add_forward, ops.add_backward, o, self, name="add")

    def __sub__(self, o):
        return apply_op(ops.sub_forward, ops.sub_backward, self, o, name="sub")

    def __rsub__(self, o):
        return apply_op(ops.sub_forward, ops.sub_backward, o, self, name="sub")

    def __mul__(self, o):
        return apply_op(ops.mul_forward, ops.mul_backward, self, o, name="mul")

    def __rmul__(self, o):
        return apply_op(ops.mul_forward, ops.mul_backward, o, self, name="mul")

    def __truediv__(self, o):
        return apply_op(ops.div_forward, ops.div_backward, self, o, name="div")

    def __rtruediv__(self, o):
        return apply_op(ops.div_forward, ops.div_backward, o, self, name="div")

    def __neg__(self):
        return apply_op(ops.neg_forward, ops.neg_backward, self, name="neg")

    def __pow__(self, p):
        if isinstance(p, Tensor):
            raise TypeError("exponent must be a constant number, not a Tensor")
        return apply_op(ops.pow_forward, ops.pow_backward, self, p=float(p), name="pow")

    def __matmul__(self, o):
        return apply_op(ops.matmul_forward, ops.matmul_backward, self, o, name="matmul")

    def __rmatmul__(self, o):
        return apply_op(ops.matmul_forward, ops.matmul_backward, o, self, name="matmul")

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        return apply_op(ops.getitem_forward, ops.getitem_backward, self, index=index,
                        name="getitem")

    # comparisons return plain boolean arrays (no gradient)
    def __lt__(self, o):
        return self.data < data_of(o)

    def __le__(self, o):
        return self.data <= data_of(o)

    def __gt__(self, o):
        return self.data > data_of(o)

    def __ge__(self, o):
        return self.data >= data_of(o)

    __hash__ = object.__hash__

    # ------------------------------------------------------------------ methods
    @property
    def T(self) -> "Tensor":
        return self.transpose()

    def transpose(self, *axes) -> "Tensor":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return apply_op(ops.transpose_forward, ops.transpose_backward, self,
                        axes=axes or None, name="transpose")

    def swapaxes(self, a: int, b: int) -> "Tensor":
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return self.transpose(tuple(axes))

    def reshape(self, *shape) -> "Tensor":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return apply_op(ops.reshape_forward, ops.reshape_backward, self, shape=shape,
                        name="reshape")

    def sum(self, axis=None, keepdims: bool = False) -> "Tensor":
        return apply_op(ops.sum_forward, ops.sum_backward, self, axis=axis, keepdims=keepdims,
                        name="sum")

    def mean(self, axis=None, keepdims: bool = False) -> "Tensor":
        return apply_op(ops.mean_forward, ops.mean_backward, self, axis=axis,
                        keepdims=keepdims, name="mean")

    def max(self, axis=None, keepdims: bool = False) -> "Tensor":
        return apply_op(ops.max_forward, ops.max_backward, self, axis=axis, keepdims=keepdims,
                        name="max")

    def exp(self) -> "Tensor":
        return apply_op(ops.exp_forward, ops.exp_backward, self, name="exp")

    def log(self) -> "Tensor":
        return apply_op(ops.log_forward, ops.log_backward, self, name="log")

    def sqrt(self) -> "Tensor":
        return apply_op(ops.sqrt_forward, ops.sqrt_backward, self, name="sqrt")

    def abs(self) -> "Tensor":
        return apply_op(ops.abs_forward, ops.abs_backward, self, name="abs")

    def tanh(self) -> "Tensor":
        return apply_op(ops.tanh_forward, ops.tanh_backward, self, name="tanh")

    def sigmoid(self) -> "Tensor":
        return apply_op(ops.sigmoid_forward, ops.sigmoid_backward, self, name="sigmoid")

    def relu(self) -> "Tensor":
        return apply_op(ops.relu_forward, ops.relu_backward, self, name="relu")

    def astype(self, dtype) -> "Tensor":
        """A float dtype conversion that keeps the gradient path."""
        return apply_op(lambda a: (a.astype(dtype), a.dtype),
                        lambda d, c: (d.astype(c),), self, name="astype")


class Parameter(Tensor):
    """A leaf tensor that a :class:`refimpl.nn.Module` owns and an optimiser updates."""

    def __init__(self, data, name: str | None = None):
        arr = np.asarray(data)
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float64)
        super().__init__(arr, requires_grad=True, name=name)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


def data_of(x):
    """The array behind a Tensor, or ``x`` itself."""
    return x.data if isinstance(x, Tensor) else x


def as_tensor(x) -> Tensor:
    """Wrap an array (or number) as a constant Tensor; Tensors pass through."""
    return x if isinstance(x, Tensor) else Tensor(x)


def apply_op(forward: Callable, backward: Callable, *inputs, name: str = "", **kwargs) -> Tensor:
    """Apply a primitive pair to Tensors/arrays and record it on the tape.

    Parameters
    ----------
    forward : callable
        ``forward(*arrays, **kwargs) -> (out, cache)``.
    backward : callable
        ``backward(dout, cache) -> tuple`` of one gradient per positional input (or None).
    *inputs : Tensor, ndarray or number
        Positional inputs; non-Tensors are constants.
    name : str
        The op's name, shown in error messages.
    **kwargs
        Non-differentiable keyword arguments passed to ``forward``.
    """
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    out, cache = forward(*arrays, **kwargs)
    tensors = [x for x in inputs if isinstance(x, Tensor)]
    if not (is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return Tensor(out)
    positions = [i for i, x in enumerate(inputs) if isinstance(x, Tensor)]

    def _bw(dout):
        grads = backward(dout, cache)
        if not isinstance(grads, tuple):
            grads = (grads,)
        if len(grads) < len(inputs):
            raise RuntimeError(f"backward of op {name!r} returned {len(grads)} gradients for "
                               f"{len(inputs)} inputs")
        return [grads[i] for i in positions]

    return Tensor(out, requires_grad=True, _parents=tensors, _backward=_bw, _op=name)


def custom_op(forward: Callable, backward: Callable, name: str = "custom") -> Callable:
    """Turn a ``forward/backward`` pair into a function of Tensors recorded on the tape.

    This is how chapters add their own differentiable pieces (quantisers with a
    straight-through gradient, hard-concrete gates, ...) without touching the tape.

    Examples
    --------
    >>> import numpy as np
    >>> sign_ste = custom_op(lambda w: (np.sign(w), np.abs(w) <= 1),
    ...                      lambda d, keep: (d * keep,), name="sign_ste")
    >>> w = Tensor(np.array([0.5, -2.0]), requires_grad=True)
    >>> sign_ste(w).sum().backward(); w.grad
    array([1., 0.])
    """

    def op(*inputs, **kwargs):
        return apply_op(forward, backward, *inputs, name=name, **kwargs)

    op.__name__ = name
    op.__doc__ = forward.__doc__
    return op
