"""Registered verification checks for the small networks (chapter 1).

``check:nn-gradcheck-ops`` gradient-checks every primitive pair of :mod:`refimpl.nn.ops` through
the tape in float64 (central differences against a random upstream gradient), so chapter 1 and
the test suite run the same check.
"""

from __future__ import annotations

import numpy as np

from refimpl.check import Outcome, register_check
from refimpl.nn import functional as F
from refimpl.nn.gradcheck import GradcheckError, gradcheck


def _op_cases(rng):
    """(name, fn of Tensors, inputs) for every primitive op; inputs avoid kinks (relu at 0...)."""
    x = rng.standard_normal((3, 4))
    y = rng.standard_normal((3, 4))
    row = rng.standard_normal((1, 4))
    pos = rng.uniform(0.5, 2.0, (3, 4))
    W = rng.standard_normal((5, 4))
    b = rng.standard_normal(5)
    g = rng.standard_normal(4)
    away = x + np.sign(x) * 0.1  # no entry within 0.1 of the relu/abs kink
    idx = np.array([[0, 1, 1], [4, 0, 2]])
    return [
        ("add (broadcast)", lambda a, c: a + c, [x, row]),
        ("sub (broadcast)", lambda a, c: a - c, [x, row]),
        ("mul (broadcast)", lambda a, c: a * c, [x, row]),
        ("div", lambda a, c: a / c, [x, pos]),
        ("neg", lambda a: -a, [x]),
        ("pow", lambda a: a ** 3, [x]),
        ("exp", lambda a: a.exp(), [x]),
        ("log", lambda a: a.log(), [pos]),
        ("sqrt", lambda a: a.sqrt(), [pos]),
        ("abs", lambda a: a.abs(), [away]),
        ("clip", lambda a: F.clip(a, -0.5, 0.5), [away * 3]),
        ("matmul", lambda a, c: a @ c.T, [x, y]),
        ("matmul (batched)", lambda a, c: a @ c, [rng.standard_normal((2, 3, 4)),
                                                  rng.standard_normal((4, 2))]),
        ("linear", lambda a, w, c: F.linear(a, w, c), [x, W, b]),
        ("tanh", F.tanh, [x]),
        ("sigmoid", F.sigmoid, [x]),
        ("relu", F.relu, [away]),
        ("gelu", F.gelu, [x]),
        ("elu", F.elu, [away]),
        ("softmax", lambda a: F.softmax(a, axis=-1), [x]),
        ("log_softmax", lambda a: F.log_softmax(a, axis=0), [x]),
        ("layer_norm", lambda a, gm, bt: F.layer_norm(a, gm, bt), [x, g, rng.standard_normal(4)]),
        ("embedding", lambda w: F.embedding(w, idx), [W]),
        ("dropout", lambda a: F.dropout(a, 0.5, rng=3), [x]),
        ("mask", lambda a: F.mask(a, (x > 0).astype(float)), [y]),
        ("where", lambda a, c: F.where(x > 0, a, c), [x, y]),
        ("masked_fill", lambda a: F.masked_fill(a, x > 0, -5.0), [y]),
        ("concat", lambda a, c: F.concat([a, c], axis=0), [x, y]),
        ("stack", lambda a, c: F.stack([a, c], axis=1), [x, y]),
        ("split", lambda a: F.split(a, [1, 3], axis=1)[1], [x]),
        ("reshape", lambda a: a.reshape(2, 6), [x]),
        ("transpose", lambda a: a.transpose(1, 0), [x]),
        ("getitem", lambda a: a[np.array([0, 0, 2]), 1:3], [x]),
        ("gather", lambda a: F.gather(a, np.array([[0], [3], [3]]), axis=1), [x]),
        ("sum", lambda a: a.sum(axis=1), [x]),
        ("mean", lambda a: a.mean(axis=0, keepdims=True), [x]),
        ("max", lambda a: a.max(axis=1), [x]),
    ]


@register_check("nn-gradcheck-ops", "every primitive op's backward matches central differences",
                section="—", implements=["refimpl.nn.ops", "refimpl.nn.tensor.Tensor.backward"])
def _gradcheck_ops(rng, quick):
    worst, failed = 0.0, []
    cases = _op_cases(rng)
    for name, fn, inputs in cases:
        try:
            r = gradcheck(fn, inputs, rng=rng)
            worst = max(worst, r["max_abs_err"])
        except GradcheckError as e:
            failed.append(f"{name}: {e}")
    return Outcome(not failed, {"ops": len(cases), "max_abs_err": worst},
                   "; ".join(failed) if failed else "float64, h=1e-6, random upstream gradient")
