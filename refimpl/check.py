"""The registry of equation checks and claim checks shared by the notebooks and the tests.

Every numbered equation (1)–(69) of the survey gets one or more *equation checks*: a function
that computes the equation with refimpl and compares it with an independent computation (brute
force on a tiny case, a finite difference, an exact bit count, another library). Every
unnumbered method gets named *verification checks* (:func:`register_check`), and every
qualitative finding the survey reports gets a *claim check*: a miniature experiment whose
verdict is "reproduced" or "not reproduced", with the numbers.

A chapter notebook runs a check with one line and shows a one-line verdict::

    >>> from refimpl import check
    >>> check.equation(22)                       # doctest: +SKIP
    ✓ Eq. (22) §3.1.3 BWN: α*, B* equal brute force over all 2^n sign vectors  [max_abs_err=0, n=10]

and the test suite runs the same registry (``tests/test_check_registry.py``), so a notebook and
the tests can never disagree.

Writing a check
---------------
Checks live in ``refimpl/<chapter>/checks.py`` and are registered with a decorator::

    @register_equation(22, "BWN: α*, B* equal brute force", section="3.1.3",
                       implements=["refimpl.quantization.binary.bwn"])
    def _bwn_brute_force(rng, quick):
        ...
        return Outcome.compare(alpha, alpha_brute, atol=1e-12, n=n)

Its key is ``Eq. (22)/bwn-brute-force``: every name in the registry is lower-case words joined by
hyphens (a function's name, its underscores turned into hyphens, unless ``name=`` is given), and
claims and named checks are keyed ``claim:<name>`` and ``check:<name>``.

A check receives ``rng`` (a seeded :class:`numpy.random.Generator`) and ``quick`` (True in
the test suite and ``--quick`` runs: smaller sizes, same logic) and returns an
:class:`Outcome`. An equation check passes when its independent computation agrees. A claim
check *passes* when the experiment ran and its numbers are sane; whether the survey's claim was
reproduced is a separate field, because a claim that does not reproduce in miniature is a valid
result, not a bug.

Errata
------
Where the survey's printed formula is wrong, register a check with ``erratum=True``: it passes
when the discrepancy between the survey's form and the corrected form is shown numerically, and
``chapters/ERRATA.md`` records it.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

__all__ = [
    "Outcome",
    "Result",
    "CheckFailed",
    "register_equation",
    "register_claim",
    "register_check",
    "equation",
    "verify",
    "claim",
    "run",
    "run_all",
    "registered",
    "coverage",
    "load_all",
    "N_EQUATIONS",
]

#: The survey numbers its equations (1)–(69).
N_EQUATIONS = 69


class CheckFailed(AssertionError):
    """Raised when an equation check does not verify (or a claim check errors)."""


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v == 0.0:
            return "0"
        if 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


@dataclass
class Outcome:
    """What a check function returns.

    Parameters
    ----------
    passed : bool
        Equation checks: the independent computation agrees (or, for an erratum check, the
        discrepancy is shown). Claim checks: the experiment ran and produced sane numbers.
    numbers : dict
        The measured numbers behind the verdict (errors, accuracies, sizes). Shown on the
        verdict line.
    detail : str
        One short sentence shown after the numbers, e.g. what was compared.
    reproduced : bool or None
        Claim checks only: whether the survey's claim held in miniature.
    """

    passed: bool
    numbers: dict = field(default_factory=dict)
    detail: str = ""
    reproduced: bool | None = None

    @classmethod
    def compare(cls, actual, expected, *, atol: float = 1e-10, rtol: float = 0.0,
                detail: str = "", **numbers) -> "Outcome":
        """Outcome of an element-wise comparison ``|actual - expected| <= atol + rtol*|expected|``.

        Records ``max_abs_err`` and ``max_rel_err`` (over the entries whose expected value is
        non-zero) among the numbers.
        """
        a = np.asarray(actual, dtype=np.float64)
        e = np.asarray(expected, dtype=np.float64)
        if a.shape != e.shape:
            return cls(False, {"shape_actual": a.shape, "shape_expected": e.shape, **numbers},
                       detail or "shapes differ")
        diff = np.abs(a - e)
        max_abs = float(diff.max()) if diff.size else 0.0
        nz = np.abs(e) > 0  # a relative error against an exact 0 means nothing: skip those
        max_rel = float((diff[nz] / np.abs(e[nz])).max()) if nz.any() else 0.0
        ok = bool(np.all(diff <= atol + rtol * np.abs(e))) and bool(np.all(np.isfinite(a)))
        nums = {"max_abs_err": max_abs, "max_rel_err": max_rel, **numbers}
        if rtol == 0.0:
            nums["atol"] = atol
        else:
            nums["rtol"] = rtol
        return cls(ok, nums, detail)

    @classmethod
    def all_of(cls, *outcomes: "Outcome", detail: str = "") -> "Outcome":
        """Combine several outcomes: passes when all pass; numbers are merged with prefixes."""
        nums: dict = {}
        for i, o in enumerate(outcomes):
            for k, v in o.numbers.items():
                nums[k if k not in nums else f"{k}_{i}"] = v
        return cls(all(o.passed for o in outcomes), nums,
                   detail or "; ".join(o.detail for o in outcomes if o.detail))


@dataclass
class Result:
    """A check that ran: the registry entry plus its outcome, printed as one verdict line."""

    key: str
    title: str
    section: str
    kind: str  # "equation" | "check" | "claim"
    outcome: Outcome
    erratum: bool = False
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.outcome.passed

    @property
    def reproduced(self) -> bool | None:
        return self.outcome.reproduced

    @property
    def verdict(self) -> str:
        if self.kind == "claim":
            if not self.passed:
                return "FAILED"
            return {True: "reproduced", False: "NOT reproduced", None: "inconclusive"}[
                self.outcome.reproduced]
        if self.erratum:
            return "erratum confirmed" if self.passed else "FAILED (erratum not shown)"
        return "verified" if self.passed else "FAILED"

    def line(self) -> str:
        mark = "✓" if self.passed else "✗"
        if self.kind == "claim" and self.passed and self.outcome.reproduced is False:
            mark = "≠"
        nums = ", ".join(f"{k}={_fmt(v)}" for k, v in self.outcome.numbers.items())
        s = f"{mark} {self.key} §{self.section} {self.title} — {self.verdict}"
        if nums:
            s += f"  [{nums}]"
        if self.outcome.detail:
            s += f"  {self.outcome.detail}"
        return s

    __str__ = line

    def __repr__(self) -> str:  # a notebook cell shows the verdict line
        return self.line()


@dataclass
class _Entry:
    key: str
    kind: str
    number: int | None
    name: str
    title: str
    section: str
    func: Callable
    implements: tuple[str, ...]
    erratum: bool
    slow: bool

    def run(self, seed: int = 0, quick: bool = True) -> Result:
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        out = self.func(rng, quick)
        dt = time.perf_counter() - t0
        if not isinstance(out, Outcome):
            raise TypeError(f"check {self.key} ({self.func.__qualname__}) returned "
                            f"{type(out).__name__}, expected refimpl.check.Outcome")
        return Result(self.key, self.title, self.section, self.kind, out, self.erratum, dt)


_REGISTRY: dict[str, _Entry] = {}


_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _check_name(name) -> None:
    """One style for every registry key: lower-case words joined by hyphens (kebab-case), e.g.
    ``check:kd-loss-by-hand``, ``claim:most-heads-can-go``, ``Eq. (22)/bwn-brute``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"name must be lower-case words joined by hyphens (e.g. "
                         f"'most-heads-can-go'), got {name!r}")


def _eq_key(number: int, name: str) -> str:
    return f"Eq. ({number})" + (f"/{name}" if name else "")


def register_equation(number: int, title: str, *, section: str, implements: Iterable[str] = (),
                      name: str | None = None, erratum: bool = False, slow: bool = False):
    """Decorator: register ``func(rng, quick) -> Outcome`` as a check of survey Eq. (``number``).

    Parameters
    ----------
    number : int
        The survey's equation number, 1–69.
    title : str
        What is verified, in a few words.
    section : str
        The survey section, e.g. ``"3.1.3"``.
    implements : iterable of str
        Dotted names of the refimpl functions that implement the equation (for the coverage map).
    name : str, optional
        Distinguishes several checks of one equation; defaults to the function's name with
        underscores turned into hyphens. Names are lower-case words joined by hyphens.
    erratum : bool
        True when the check demonstrates that the survey's printed form is wrong.
    slow : bool
        True for checks that take more than a few seconds even with ``quick=True``.
    """
    if not isinstance(number, (int, np.integer)) or not 1 <= number <= N_EQUATIONS:
        raise ValueError(f"number must be an integer in [1, {N_EQUATIONS}], got {number!r}")

    if name is not None:
        _check_name(name)

    def deco(func):
        nm = name or func.__name__.lstrip("_").replace("_", "-")
        _check_name(nm)
        key = _eq_key(int(number), nm)
        _REGISTRY[key] = _Entry(key, "equation", int(number), nm, title, section, func,
                                tuple(implements), erratum, slow)
        return func

    return deco


def register_claim(name: str, title: str, *, section: str, implements: Iterable[str] = (),
                   slow: bool = False):
    """Decorator: register ``func(rng, quick) -> Outcome`` as a claim check named ``name``.

    The outcome's ``reproduced`` field carries the verdict on the survey's claim; ``passed``
    only says the experiment ran and its numbers are sane.
    """
    _check_name(name)

    def deco(func):
        key = f"claim:{name}"
        _REGISTRY[key] = _Entry(key, "claim", None, name, title, section, func,
                                tuple(implements), False, slow)
        return func

    return deco


def register_check(name: str, title: str, *, section: str, implements: Iterable[str] = (),
                   slow: bool = False):
    """Decorator: register ``func(rng, quick) -> Outcome`` as a named verification check.

    For verified statements that have no equation number: the unnumbered methods the survey
    describes (a CSR bit count, a TT-SVD error bound), gradient checks of the network ops, or
    cross-implementation agreements. Passes like an equation check; run with :func:`verify`.
    """
    _check_name(name)

    def deco(func):
        key = f"check:{name}"
        _REGISTRY[key] = _Entry(key, "check", None, name, title, section, func,
                                tuple(implements), False, slow)
        return func

    return deco


_LOADED = False


def load_all() -> None:
    """Import every ``refimpl.<subpackage>.checks`` module so their checks register.

    Discovery is by package walk, so this module imports nothing from the chapters by name.
    """
    global _LOADED
    if _LOADED:
        return
    import refimpl

    for mod in pkgutil.iter_modules(refimpl.__path__):
        if not mod.ispkg:
            continue
        full = f"refimpl.{mod.name}.checks"
        try:
            spec = importlib.util.find_spec(full)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            importlib.import_module(full)
    _LOADED = True


def registered(kind: str | None = None) -> list[_Entry]:
    """All registered entries (after :func:`load_all`), equations in number order, then claims."""
    load_all()
    entries = [e for e in _REGISTRY.values() if kind is None or e.kind == kind]
    order = {"equation": 0, "check": 1, "claim": 2}
    return sorted(entries, key=lambda e: (order[e.kind], e.number or 0, e.key))


def _raise_if_failed(results: list[Result]) -> None:
    bad = [r for r in results if not r.passed]
    if bad:
        raise CheckFailed("\n".join(r.line() for r in bad))


class Results(list):
    """A list of :class:`Result` that prints one verdict line per result."""

    def __repr__(self) -> str:
        return "\n".join(r.line() for r in self)

    __str__ = __repr__


def equation(number: int, name: str | None = None, *, seed: int = 0, quick: bool | None = None,
             raise_on_fail: bool = True) -> Results:
    """Run the checks registered for survey Eq. (``number``) and return their verdicts.

    Raises :class:`CheckFailed` if any check does not verify (unless ``raise_on_fail=False``),
    so a notebook cell that calls this is an assertion.
    """
    load_all()
    if name is not None:
        key = _eq_key(number, name)
        if key not in _REGISTRY:
            raise KeyError(f"no check {key!r}; registered for Eq. ({number}): "
                           f"{[e.name for e in registered('equation') if e.number == number]}")
        entries = [_REGISTRY[key]]
    else:
        entries = [e for e in registered("equation") if e.number == number]
        if not entries:
            raise KeyError(f"no check is registered for Eq. ({number})")
    res = Results(e.run(seed, _quick(quick)) for e in entries)
    if raise_on_fail:
        _raise_if_failed(res)
    return res


def _run_named(kind: str, name: str, seed: int, quick: bool | None,
               raise_on_fail: bool) -> Result:
    """Run the ``kind`` entry ``name`` (``"claim"`` or ``"check"``), raising if it failed."""
    load_all()
    key = f"{kind}:{name}"
    if key not in _REGISTRY:
        raise KeyError(f"no {kind} {name!r}; registered: "
                       f"{[e.name for e in registered(kind)]}")
    r = _REGISTRY[key].run(seed, _quick(quick))
    if raise_on_fail:
        _raise_if_failed([r])
    return r


def claim(name: str, *, seed: int = 0, quick: bool | None = None,
          raise_on_fail: bool = True) -> Result:
    """Run the claim check ``name``; its verdict says whether the survey's claim reproduced."""
    return _run_named("claim", name, seed, quick, raise_on_fail)


def verify(name: str, *, seed: int = 0, quick: bool | None = None,
           raise_on_fail: bool = True) -> Result:
    """Run the named verification check ``name`` (see :func:`register_check`)."""
    return _run_named("check", name, seed, quick, raise_on_fail)


def run(key: str, *, seed: int = 0, quick: bool | None = None) -> Result:
    """Run one registry entry by its key (``"Eq. (22)/bwn-brute"``, ``"check:name"`` or
    ``"claim:name"``)."""
    load_all()
    return _REGISTRY[key].run(seed, _quick(quick))


def run_all(kind: str | None = None, *, seed: int = 0, quick: bool | None = None,
            include_slow: bool = True, progress: bool | None = None) -> Results:
    """Run every registered check (optionally of one ``kind``) and return the verdicts."""
    from refimpl.utils import progress_bar

    entries = [e for e in registered(kind) if include_slow or not e.slow]
    out = Results()
    for e in progress_bar(entries, desc="checks", progress=progress):
        out.append(e.run(seed, _quick(quick)))
    return out


def _quick(quick: bool | None) -> bool:
    if quick is not None:
        return bool(quick)
    import os

    return os.environ.get("REFIMPL_QUICK", "1") not in ("0", "false", "False", "")


def coverage() -> list[dict]:
    """The coverage map for Eqs. (1)–(69): equation → implementing functions → checks.

    Returns one dict per equation with keys ``number``, ``functions``, ``checks`` and
    ``status`` (``"checked"``, ``"erratum"`` or ``"missing"``).
    """
    eqs = registered("equation")
    rows = []
    for n in range(1, N_EQUATIONS + 1):
        mine = [e for e in eqs if e.number == n]
        funcs = sorted({f for e in mine for f in e.implements})
        status = "missing" if not mine else ("erratum" if any(e.erratum for e in mine)
                                              else "checked")
        rows.append({"number": n, "section": mine[0].section if mine else "",
                     "functions": funcs, "checks": [e.name for e in mine], "status": status})
    return rows
