"""Gradient checking by float64 central differences against a random upstream gradient.

For a function ``f`` of arrays and a random upstream gradient ``g`` (same shape as the output),
the scalar ``L = Σ f(x) * g`` has ``∂L/∂x`` equal to what the backward pass returns for
``dout = g``. Central differences ``(L(x + h e_i) − L(x − h e_i)) / 2h`` estimate it with error
O(h²); in float64 with h = 1e-6 agreement to ~1e-8 relative is expected for smooth ops.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from refimpl.nn.tensor import Tensor
from refimpl.utils import as_rng

__all__ = ["numerical_grad", "gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def numerical_grad(f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray,
                   h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of ``Σ f() * dout`` with respect to ``x`` (modified in place
    during the computation and restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = np.sum(np.asarray(f()) * dout)
        x[i] = old - h
        fm = np.sum(np.asarray(f()) * dout)
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
        it.iternext()
    return grad


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[np.ndarray], *, rng=0,
              h: float = 1e-6, atol: float = 1e-7, rtol: float = 1e-5,
              wrt: Sequence[int] | None = None) -> dict:
    """Check the tape gradients of ``fn(*tensors)`` against central differences.

    Parameters
    ----------
    fn : callable
        Takes one Tensor per input and returns a Tensor.
    inputs : sequence of ndarray
        Float inputs; converted to float64 copies (the caller's arrays are not modified).
    rng : Generator or int
        Seed for the random upstream gradient.
    wrt : sequence of int, optional
        Which inputs to check (default: every floating input).

    Returns
    -------
    dict
        ``max_abs_err`` and ``max_rel_err`` over all checked inputs.

    Raises
    ------
    GradcheckError
        When any entry differs by more than ``atol + rtol * |numerical|``.
    """
    rng = as_rng(rng)
    arrays = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in inputs]
    if wrt is None:
        wrt = [i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    tensors = [Tensor(a, requires_grad=(i in wrt)) for i, a in enumerate(arrays)]
    out = fn(*tensors)
    dout = rng.standard_normal(out.shape)
    out.backward(dout)

    def f():
        return fn(*[Tensor(a) for a in arrays]).data

    worst_abs = worst_rel = 0.0
    for i in wrt:
        num = numerical_grad(f, arrays[i], dout, h)
        ana = tensors[i].grad if tensors[i].grad is not None else np.zeros_like(arrays[i])
        err = np.abs(ana - num)
        rel = err / np.maximum(np.abs(num), 1e-12)
        worst_abs = max(worst_abs, float(err.max(initial=0.0)))
        worst_rel = max(worst_rel, float(np.where(err > atol, rel, 0.0).max(initial=0.0)))
        if np.any(err > atol + rtol * np.abs(num)):
            raise GradcheckError(f"input {i}: max abs err {err.max():.3e}, "
                                 f"max rel err {rel.max():.3e} (atol={atol}, rtol={rtol})")
    return {"max_abs_err": worst_abs, "max_rel_err": worst_rel}
