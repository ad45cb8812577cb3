"""Model surgery shared by the chapters' tour methods: swap sub-modules, and store a recurrent
weight matrix as a child module that computes it (a factorised, hashed or structured layer).

Both work on any :mod:`refimpl.nn` model in place and keep training on the tape: the
replacement's parameters are what the optimiser updates and what ``num_parameters`` counts.
"""

from __future__ import annotations

import re

import numpy as np

from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor

__all__ = ["replace_modules", "factorize_recurrent_weights_"]


def replace_modules(model: Module, predicate, make) -> list[str]:
    """Replace every sub-module ``m`` with ``predicate(m)`` by ``make(m)`` (``None`` keeps it),
    in place; returns the dotted names replaced."""
    done = []
    for pname, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if predicate(child):
                new = make(child)
                if new is not None:
                    setattr(parent, name, new)
                    done.append(f"{pname}.{name}" if pname else name)
    return done


_RECURRENT_W = re.compile(r"^W_(ih|hh)_l\d+(_reverse)?$")


def factorize_recurrent_weights_(model: Module, make_child) -> list[str]:
    """Store every recurrent weight ``W_ih_l*`` / ``W_hh_l*`` of the ``refimpl.nn`` RNN/LSTM/GRU
    modules inside ``model`` as a factorised child module (in place).

    ``make_child(W)`` returns a bias-free module ``y = x Wᵀ`` (e.g. :class:`LowRankLinear`,
    :class:`TTLinear`, :class:`BTLinear`) initialised from the trained ``W``, or ``None`` to
    keep ``W``. The dense Parameter is replaced by a non-stored placeholder and the module's
    ``weight_transform`` hook rebuilds ``W`` from the child on the tape (``child(I)ᵀ``), so
    training updates the factors and ``num_parameters`` counts only what is stored.
    """
    done = []
    for mname, mod in list(model.named_modules()):
        if not hasattr(mod, "weight_transform") or type(mod).__name__ not in (
                "RNN", "LSTM", "GRU"):
            continue
        children = {}
        for name in [k for k, v in vars(mod).items()
                     if isinstance(v, Parameter) and _RECURRENT_W.match(k)]:
            W = getattr(mod, name).data
            child = make_child(W)
            if child is None:
                continue
            setattr(mod, f"factors_{name}", child)
            setattr(mod, name, Tensor(np.broadcast_to(np.zeros((), W.dtype), W.shape)))
            children[name] = child
            done.append(f"{mname}.{name}" if mname else name)
        if children:
            prev = mod.weight_transform

            def transform(name, W, _mod=mod, _names=tuple(children), _prev=prev):
                if name in _names:
                    child = getattr(_mod, f"factors_{name}")
                    W = child(np.eye(child.in_features)).T  # (out, in), on the tape
                return W if _prev is None else _prev(name, W)

            mod.weight_transform = transform
    return done
