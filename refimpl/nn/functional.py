"""Tensor-level functions: each records one primitive pair of :mod:`refimpl.nn.ops` on the tape.

Import as ``import refimpl.nn.functional as F``. Arguments may be Tensors or arrays (arrays are
constants). Shapes are documented on the primitive in :mod:`refimpl.nn.ops`.
"""

from __future__ import annotations

import builtins
from typing import Callable, Sequence

import numpy as np

from refimpl.nn import ops
from refimpl.nn.tensor import Tensor, apply_op, data_of
from refimpl.utils import as_rng

__all__ = [
    "linear", "matmul", "tanh", "sigmoid", "relu", "gelu", "elu", "softmax", "log_softmax",
    "layer_norm", "embedding", "dropout", "concat", "stack", "split", "reshape", "transpose",
    "gather", "where", "masked_fill", "mask", "exp", "log", "sqrt", "abs", "clip", "sum", "mean",
    "max", "straight_through",
]


def linear(x, W, b=None) -> Tensor:
    """``x @ W.T + b`` with ``W`` of shape ``(out, in)`` (PyTorch layout)."""
    if b is None:
        return apply_op(lambda x_, W_: ops.linear_forward(x_, W_, None),
                        lambda d, c: ops.linear_backward(d, c)[:2], x, W, name="linear")
    return apply_op(ops.linear_forward, ops.linear_backward, x, W, b, name="linear")


def matmul(a, b) -> Tensor:
    return apply_op(ops.matmul_forward, ops.matmul_backward, a, b, name="matmul")


def tanh(x) -> Tensor:
    return apply_op(ops.tanh_forward, ops.tanh_backward, x, name="tanh")


def sigmoid(x) -> Tensor:
    return apply_op(ops.sigmoid_forward, ops.sigmoid_backward, x, name="sigmoid")


def relu(x) -> Tensor:
    return apply_op(ops.relu_forward, ops.relu_backward, x, name="relu")


def gelu(x) -> Tensor:
    return apply_op(ops.gelu_forward, ops.gelu_backward, x, name="gelu")


def elu(x, alpha: float = 1.0) -> Tensor:
    return apply_op(ops.elu_forward, ops.elu_backward, x, alpha=alpha, name="elu")


def softmax(x, axis: int = -1) -> Tensor:
    return apply_op(ops.softmax_forward, ops.softmax_backward, x, axis=axis, name="softmax")


def log_softmax(x, axis: int = -1) -> Tensor:
    return apply_op(ops.log_softmax_forward, ops.log_softmax_backward, x, axis=axis,
                    name="log_softmax")


def layer_norm(x, gamma, beta, eps: float = 1e-5) -> Tensor:
    return apply_op(ops.layer_norm_forward, ops.layer_norm_backward, x, gamma, beta, eps=eps,
                    name="layer_norm")


def embedding(W, idx) -> Tensor:
    """Rows ``W[idx]``; ``idx`` is an integer array (or Tensor) of any shape."""
    idx = np.asarray(data_of(idx))
    if idx.dtype.kind not in "iu":
        raise TypeError(f"idx must be an integer array, got dtype {idx.dtype}")
    n = data_of(W).shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"idx must lie in [0, {n}), got values in [{idx.min()}, {idx.max()}]")
    return apply_op(lambda w: ops.embedding_forward(w, idx),
                    lambda d, c: ops.embedding_backward(d, c)[:1], W, name="embedding")


def dropout(x, p: float, rng=None, training: bool = True) -> Tensor:
    """Inverted dropout with probability ``p``; identity when ``training`` is False or p == 0."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x if isinstance(x, Tensor) else Tensor(x)
    return apply_op(ops.dropout_forward, ops.dropout_backward, x, p=p, rng=as_rng(rng),
                    name="dropout")


def concat(xs: Sequence, axis: int = -1) -> Tensor:
    return apply_op(ops.concat_forward, ops.concat_backward, *xs, axis=axis, name="concat")


def stack(xs: Sequence, axis: int = 0) -> Tensor:
    return apply_op(ops.stack_forward, ops.stack_backward, *xs, axis=axis, name="stack")


def split(x, sections: int | Sequence[int], axis: int = -1) -> list[Tensor]:
    """Split into ``sections`` equal parts (int) or parts of the given sizes (list of ints)."""
    n = data_of(x).shape[axis]
    if isinstance(sections, int):
        if n % sections:
            raise ValueError(f"sections={sections} does not divide axis length {n}")
        sizes = [n // sections] * sections
    else:
        sizes = list(sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"sections {sizes} must sum to the axis length {n}")
    out, start = [], 0
    nd = data_of(x).ndim
    ax = axis % nd
    for s in sizes:
        idx = tuple(slice(start, start + s) if i == ax else slice(None) for i in range(nd))
        out.append(x[idx] if isinstance(x, Tensor) else Tensor(np.asarray(x)[idx]))
        start += s
    return out


def reshape(x, shape) -> Tensor:
    return apply_op(ops.reshape_forward, ops.reshape_backward, x, shape=tuple(shape),
                    name="reshape")


def transpose(x, axes=None) -> Tensor:
    return apply_op(ops.transpose_forward, ops.transpose_backward, x, axes=axes,
                    name="transpose")


def gather(x, idx, axis: int = -1) -> Tensor:
    """``take_along_axis(x, idx, axis)``; ``idx`` is a constant integer array."""
    idx = np.asarray(data_of(idx))
    return apply_op(lambda a: ops.gather_forward(a, idx, axis),
                    lambda d, c: ops.gather_backward(d, c)[:1], x, name="gather")


def where(cond, a, b) -> Tensor:
    """``np.where(cond, a, b)`` with gradients flowing to ``a`` and ``b``; ``cond`` is constant."""
    cond = np.asarray(data_of(cond), dtype=bool)
    return apply_op(lambda a_, b_: ops.where_forward(cond, a_, b_),
                    lambda d, c: ops.where_backward(d, c)[1:], a, b, name="where")


def masked_fill(x, mask, value: float) -> Tensor:
    """Replace entries where the boolean ``mask`` is True by ``value`` (e.g. −inf before softmax)."""
    mask = np.asarray(data_of(mask), dtype=bool)
    return apply_op(ops.masked_fill_forward, ops.masked_fill_backward, x, mask=mask,
                    value=value, name="masked_fill")


def mask(x, m) -> Tensor:
    """Element-wise gate ``x * m`` with a constant (non-trainable) mask ``m`` (pruning masks)."""
    m = np.asarray(data_of(m))
    return apply_op(ops.mask_forward, ops.mask_backward, x, mask=m, name="mask")


def exp(x) -> Tensor:
    return apply_op(ops.exp_forward, ops.exp_backward, x, name="exp")


def log(x) -> Tensor:
    return apply_op(ops.log_forward, ops.log_backward, x, name="log")


def sqrt(x) -> Tensor:
    return apply_op(ops.sqrt_forward, ops.sqrt_backward, x, name="sqrt")


def abs(x) -> Tensor:  # noqa: A001 - mirrors numpy's name
    return apply_op(ops.abs_forward, ops.abs_backward, x, name="abs")


def clip(x, lo: float, hi: float) -> Tensor:
    return apply_op(ops.clip_forward, ops.clip_backward, x, lo=lo, hi=hi, name="clip")


def sum(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return apply_op(ops.sum_forward, ops.sum_backward, x, axis=axis, keepdims=keepdims,
                    name="sum")


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    return apply_op(ops.mean_forward, ops.mean_backward, x, axis=axis, keepdims=keepdims,
                    name="mean")


def max(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return apply_op(ops.max_forward, ops.max_backward, x, axis=axis, keepdims=keepdims,
                    name="max")


def straight_through(x, fn: Callable[[np.ndarray], np.ndarray], clip_at: float | None = None,
                     name: str = "ste") -> Tensor:
    """Straight-through estimator: forward ``fn(x)``, backward passes ``dout`` through unchanged.

    With ``clip_at=c`` the gradient is zeroed where ``|x| > c`` (the hard-tanh STE of
    Courbariaux/Hubara et al., Survey §3.1.2, Eq. (21)).

    Parameters
    ----------
    x : Tensor of any shape
    fn : callable
        A (non-differentiable) array function, e.g. ``np.sign`` or a quantiser.
    clip_at : float, optional
    """

    def fwd(a):
        keep = None if clip_at is None else (np.abs(a) <= clip_at)
        return np.asarray(fn(a), dtype=a.dtype), keep

    def bwd(d, keep):
        return (d if keep is None else d * keep,)

    return apply_op(fwd, bwd, x, name=name)
