"""The method registry behind ``refimpl tour`` (Survey §8: the comparison of methods).

A chapter registers a compression method in its own ``refimpl/<chapter>/tour.py``::

    from refimpl.registry import register_method, MethodResult

    @register_method("magnitude-90", family="pruning", section="2.1.2",
                     description="one-shot magnitude pruning to 90% sparsity, then fine-tune")
    def magnitude_90(ctx):
        model = ctx.copy_baseline()
        ...                                   # compress, optionally ctx.fit(model, ...)
        return MethodResult(model, bits=..., params=...)

The tour discovers every ``refimpl.<pkg>.tour`` module (as :func:`refimpl.check.load_all` does
for checks), trains the baselines once, calls each method with a :class:`TourContext`, and
measures the task metric and latency itself, so every method is measured the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["MethodResult", "TourContext", "register_method", "methods", "load_all_methods",
           "dense_bits"]


@dataclass
class MethodResult:
    """What a registered method returns.

    Parameters
    ----------
    model : object
        The compressed model: a :class:`refimpl.nn.Module` whose ``forward(X, lengths)``
        returns class logits (the tour evaluates it), or any callable with that signature.
    bits : int
        Exact storage of the compressed model in bits, including indices, scales and codebooks
        (the dense float32 baseline is ``32 * params``).
    params : int
        Parameters that must be stored (non-zeros for sparse formats, factors for decompositions).
    notes : str
        One line shown in the table (e.g. "sparsity 0.90, CSR 4-bit deltas").
    extra : dict
        Any further numbers to report.
    """

    model: Any
    bits: int
    params: int
    notes: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class TourContext:
    """Everything a method needs: the task, the trained baseline and the shared training loop.

    Attributes
    ----------
    task : refimpl.data.ClassificationTask
        The embedded task the tour runs on.
    baseline : refimpl.nn.Module
        The trained baseline model (do not modify: use :meth:`copy_baseline`).
    baseline_kind : str
        Which model family the baseline is (``"transformer"``, ``"lstm"``, ``"bow"``).
    quick : bool
        Small sizes and few epochs (``refimpl tour --quick``).
    seed : int
    fit : callable
        ``fit(model, epochs=..., lr=..., after_step=None, loss_fn=None) -> history``; the same
        loop that trained the baseline. ``after_step(model)`` runs after each optimiser step
        (re-apply masks, project to a codebook, ...).
    evaluate : callable
        ``evaluate(model) -> float``: the task metric (accuracy) on the test split.
    make_model : callable
        ``make_model(kind=None, **overrides) -> Module``: a fresh, untrained model of the
        baseline's architecture (or another kind), for methods that train from scratch.
    baselines : dict
        Every trained baseline by kind (``"bow"``, ``"lstm"``, ``"transformer"``).
    config : object
        The tour's configuration (sizes, epochs, budgets).
    copied_kind : str or None
        Which baseline :meth:`copy_baseline` copied last; the tour compares the method's
        result with that baseline unless ``MethodResult.extra["baseline"]`` names another.
    """

    task: Any
    baseline: Any
    baseline_kind: str
    quick: bool
    seed: int
    fit: Callable
    evaluate: Callable
    make_model: Callable
    baselines: dict = field(default_factory=dict)
    config: Any = None
    copied_kind: str | None = None

    def copy_baseline(self, kind: str | None = None):
        """A deep copy of the primary baseline, or of the trained baseline of ``kind``."""
        import copy

        if kind is None or kind == self.baseline_kind:
            self.copied_kind = self.baseline_kind
            return copy.deepcopy(self.baseline)
        if kind not in self.baselines:
            raise KeyError(f"no trained baseline {kind!r}; trained: {sorted(self.baselines)}")
        self.copied_kind = kind
        return copy.deepcopy(self.baselines[kind])


@dataclass
class _Method:
    name: str
    family: str
    section: str
    description: str
    func: Callable[[TourContext], MethodResult]
    quick: bool


_METHODS: dict[str, _Method] = {}


def register_method(name: str, *, family: str, section: str, description: str = "",
                    quick: bool = True):
    """Decorator registering ``func(ctx: TourContext) -> MethodResult`` under ``name``.

    ``quick=False`` leaves the method out of ``refimpl tour --quick``.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"name must be a non-empty string, got {name!r}")

    def deco(func):
        if name in _METHODS and _METHODS[name].func is not func:
            raise ValueError(f"a method named {name!r} is already registered")
        _METHODS[name] = _Method(name, family, section, description or (func.__doc__ or "")
                                 .strip().split("\n")[0], func, quick)
        return func

    return deco


_LOADED = False


def load_all_methods() -> None:
    """Import every ``refimpl.<subpackage>.tour`` module so their methods register."""
    global _LOADED
    if _LOADED:
        return
    import refimpl

    for mod in pkgutil.iter_modules(refimpl.__path__):
        if mod.ispkg and importlib.util.find_spec(f"refimpl.{mod.name}") is not None:
            full = f"refimpl.{mod.name}.tour"
            if importlib.util.find_spec(full) is not None:
                importlib.import_module(full)
    _LOADED = True


def methods(quick: bool | None = None) -> list[_Method]:
    """Registered methods in registration order (``quick=True`` keeps only quick ones)."""
    load_all_methods()
    return [m for m in _METHODS.values() if quick is None or not quick or m.quick]


def dense_bits(model, bits_per_param: int = 32) -> int:
    """Storage of a dense model: ``bits_per_param`` per parameter (float32 by default)."""
    return int(model.num_parameters()) * bits_per_param
