"""Differentiable building blocks shared by the §6 modules: an ``einsum`` op on the tape and the
hard-concrete gate of FLOP (Survey Eq. (67), §6.1).

``einsum`` is written with :func:`refimpl.nn.custom_op`; the hard-concrete gates are re-exported
from :mod:`refimpl.nn.gates` (the one implementation, shared with §2.4.1's L0 head gates), so
the factorised layers of §6 (TT-layer, TT-embedding, BT-layer, multi-linear attention, FLOP) get
gradients without hand-written model-level backward passes.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import Tensor, custom_op
from refimpl.nn.gates import (HC_BETA, HC_GAMMA, HC_ZETA, hard_concrete_deterministic,
                              hard_concrete_prob_nonzero, hard_concrete_sample)

__all__ = ["einsum", "hard_concrete_sample", "hard_concrete_deterministic",
           "hard_concrete_l0", "HC_BETA", "HC_GAMMA", "HC_ZETA"]


def _parse(subscripts: str, n: int):
    if "->" not in subscripts:
        raise ValueError(f"subscripts must be explicit ('ab,bc->ac'), got {subscripts!r}")
    lhs, out = subscripts.replace(" ", "").split("->")
    ins = lhs.split(",")
    if len(ins) != n:
        raise ValueError(f"subscripts name {len(ins)} operands, got {n}")
    for s in ins:
        if len(set(s)) != len(s) or "." in s:
            raise ValueError(f"subscripts: the einsum op supports neither repeated indices within an "
                             f"operand nor ellipses, got {subscripts!r}")
    return ins, out


def _einsum_forward(*arrays, subscripts):
    ins, out = _parse(subscripts, len(arrays))
    y = np.einsum(subscripts, *arrays, optimize=True)
    return y, (arrays, ins, out)


def _einsum_backward(dout, cache):
    arrays, ins, out = cache
    grads = []
    for i, (a, s) in enumerate(zip(arrays, ins)):
        others = [ins[j] for j in range(len(ins)) if j != i]
        available = set(out).union(*others) if others else set(out)
        present = "".join(c for c in s if c in available)
        spec = ",".join([out] + others) + "->" + present
        g = np.einsum(spec, dout, *[arrays[j] for j in range(len(arrays)) if j != i],
                      optimize=True)
        if present != s:  # an index summed only inside this operand: broadcast back
            shape = [a.shape[k] if c in available else 1 for k, c in enumerate(s)]
            # g has the axes of `present`, which are s's axes in order minus the missing ones
            g = np.broadcast_to(g.reshape(shape), a.shape)
        grads.append(np.ascontiguousarray(g))
    return tuple(grads)


_einsum_op = custom_op(_einsum_forward, _einsum_backward, name="einsum")


def einsum(subscripts: str, *operands) -> Tensor:
    """Differentiable ``np.einsum`` with explicit output subscripts.

    Parameters
    ----------
    subscripts : str
        E.g. ``"bjnr,smnr->bjsm"``; no ellipses, no index repeated inside one operand.
    *operands : Tensor or ndarray
        Arrays are constants.

    Returns
    -------
    Tensor
        The contraction; its backward is the einsum of ``dout`` with the other operands.
    """
    return _einsum_op(*operands, subscripts=subscripts)


# ------------------------------------------------------------------ hard-concrete gates (FLOP)
# One implementation, in refimpl.nn.gates (shared with §2.4.1's L0 head gates); these names stay
# for the §6 modules. ``hard_concrete_l0`` here is the per-gate P(z_k ≠ 0) (sum it for the
# expected L0 norm, Survey Eq. (67)).
hard_concrete_l0 = hard_concrete_prob_nonzero
