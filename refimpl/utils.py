"""Small shared helpers: seeding, argument validation with clear messages, progress bars.

Everything here is below every other layer of refimpl (it imports only NumPy and tqdm).
The validators raise ``ValueError``/``TypeError`` naming the argument, what was given and what
is allowed, e.g. ``bits must be an integer in [1, 16], got 0``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import numbers
import os
import sys
from typing import Iterable, Mapping

import numpy as np

__all__ = [
    "as_rng",
    "check_array",
    "check_int",
    "check_float",
    "check_fraction",
    "check_choice",
    "check_values",
    "check_bool",
    "check_str",
    "validate_scalars",
    "validate_arrays",
    "progress_bar",
    "temporary_environ",
]


def as_rng(rng=None) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from a Generator, an int seed, or None (seed 0).

    Every stochastic function in refimpl takes ``rng``; the same seed gives bit-identical
    results. ``None`` means seed 0 (deterministic by default), never OS entropy.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng must be a non-negative integer seed or a Generator, got {rng}")
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, "
                    f"got {type(rng).__name__}")


def check_array(x, name: str, *, ndim: int | tuple[int, ...] | None = None,
                shape: tuple | None = None, dtype_kind: str | None = "f",
                finite: bool = True, allow_empty: bool = False,
                dtype=None) -> np.ndarray:
    """Validate an array argument and return it as an ndarray (no copy when possible).

    Parameters
    ----------
    x : array_like
    name : str
        The argument's name, used in error messages.
    ndim : int or tuple of int, optional
        Allowed numbers of dimensions.
    shape : tuple, optional
        Required shape; ``None`` entries match any length.
    dtype_kind : str or None
        Allowed ``dtype.kind`` characters (``"f"`` float, ``"c"`` complex, ``"i"``/``"u"``
        integer, ``"b"`` bool). The default ``"f"`` takes real floating arrays and promotes
        integer and bool arrays to float64; complex arrays are refused with a ``TypeError``
        (refimpl's methods are real-valued: a complex array would otherwise lose its imaginary
        part or come back as complex "binary" weights). ``None`` skips the check.
    finite : bool
        Reject NaN/inf (floating arrays only).
    allow_empty : bool
        Accept arrays with zero elements.
    dtype : optional
        Convert to this dtype after validation.
    """
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    arr = np.asarray(x)
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got dtype object")
    if dtype_kind is not None and arr.dtype.kind not in dtype_kind:
        # ints are fine where floats are wanted: promote
        if "f" in dtype_kind and arr.dtype.kind in "iub":
            arr = arr.astype(np.float64)
        elif arr.dtype.kind == "c":
            raise TypeError(f"{name} must be a real array (dtype kind in {dtype_kind!r}), got "
                            f"complex dtype {arr.dtype}")
        else:
            raise TypeError(f"{name} must have dtype kind in {dtype_kind!r}, got {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            raise ValueError(f"{name} must have ndim in {allowed}, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if finite and arr.dtype.kind in "fc" and arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def check_int(value, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """Validate an integer in ``[lo, hi]`` (either bound may be None)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer{_range(lo, hi)}, got {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be an integer{_range(lo, hi)}, got {v}")
    return v


def check_float(value, name: str, lo: float | None = None, hi: float | None = None, *,
                lo_open: bool = False, hi_open: bool = False) -> float:
    """Validate a finite real number in the interval given by ``lo``/``hi`` and openness."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    bad = not np.isfinite(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        lo_s = "-inf" if lo is None else f"{lo:g}"
        hi_s = "inf" if hi is None else f"{hi:g}"
        raise ValueError(f"{name} must be in {left}{lo_s}, {hi_s}{right}, got {value!r}")
    return v


def check_fraction(value, name: str = "sparsity", *, allow_one: bool = False) -> float:
    """Validate a fraction in ``[0, 1)`` (or ``[0, 1]`` with ``allow_one``), e.g. a sparsity."""
    return check_float(value, name, 0.0, 1.0, hi_open=not allow_one)


def check_values(x, name: str, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False, **kwargs) -> np.ndarray:
    """Validate a real scalar or array whose every entry lies in the interval ``lo``/``hi``.

    For hyper-parameters that may be a number or an element-wise array (``tau``, ``p``,
    ``alpha``): strings, None and complex values raise ``TypeError``, NaN/inf and values
    outside the interval ``ValueError``, each naming the argument. ``kwargs`` go to
    :func:`check_array` (``ndim``, ``shape``, ``allow_empty``, ...). Returns a float ndarray
    (0-d for a scalar).
    """
    arr = check_array(x, name, **kwargs)
    if arr.size:
        bad = np.zeros(arr.shape, dtype=bool)
        if lo is not None:
            bad |= arr <= lo if lo_open else arr < lo
        if hi is not None:
            bad |= arr >= hi if hi_open else arr > hi
        if np.any(bad):
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            lo_s = "-inf" if lo is None else f"{lo:g}"
            hi_s = "inf" if hi is None else f"{hi:g}"
            got = arr if arr.ndim == 0 else arr[bad].ravel()[0]
            raise ValueError(f"{name} must have every value in {left}{lo_s}, {hi_s}{right}, "
                             f"got {float(got)!r}")
    return arr


def check_choice(value, name: str, choices: Iterable):
    """Validate that ``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """Validate a flag: ``True``/``False`` (or a NumPy bool), not a string, number or None."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_str(value, name: str) -> str:
    """Validate a string argument (a name or choice)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r}")
    return value


_SCALAR_CHECKS = {
    "int": check_int,
    "float": check_float,
    "bool": check_bool,
    "str": check_str,
}


def _scalar_kind(param: inspect.Parameter):
    """``(check, allow_none)`` from a parameter's annotation, or None if it is not a scalar."""
    ann = param.annotation
    if ann is inspect.Parameter.empty:
        return None
    if not isinstance(ann, str):
        ann = getattr(ann, "__name__", str(ann))
    parts = {a.strip() for a in ann.split("|")}
    allow_none = "None" in parts or param.default is None
    parts.discard("None")
    if len(parts) != 1 or next(iter(parts)) not in _SCALAR_CHECKS:
        return None
    return _SCALAR_CHECKS[next(iter(parts))], allow_none


def validate_scalars(fn=None, /, **bounds):
    """Decorator: check the scalar arguments of a function against their annotations.

    Parameters annotated ``int``, ``float``, ``bool`` or ``str`` (optionally ``| None``, or with
    a ``None`` default) are validated on every call with :func:`check_int`,
    :func:`check_float` (finite real), :func:`check_bool` or :func:`check_str`, so a string,
    None, a complex number or NaN given for a number raises a ``TypeError``/``ValueError``
    naming the argument. Arguments left at their defaults are not checked; values are passed
    on unchanged.

    ``bounds`` add ranges for numeric parameters: ``name=(lo, hi)`` (inclusive; either may be
    None) or ``name=(lo, hi, "(]")`` with the interval's brackets, e.g.
    ``@validate_scalars(n_iter=(1, None), lr=(0, None, "(]"))``.
    """
    if fn is None:
        return functools.partial(_validate_scalars, bounds=bounds)
    return _validate_scalars(fn, bounds=bounds)


def _validate_scalars(fn, bounds):
    sig = inspect.signature(fn)
    names, checks = [], {}
    for name, p in sig.parameters.items():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(name)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        kind = _scalar_kind(p)
        if kind is not None:
            checks[name] = kind + (bounds.get(name),)
    unknown = set(bounds) - {n for n, c in checks.items() if c[0] in (check_int, check_float)}
    if unknown:
        raise TypeError(f"validate_scalars: bounds for {sorted(unknown)} of {fn.__qualname__}, "
                        f"which are not int/float parameters")
    if not checks:
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for name, value in zip(names, args):
            if name in checks:
                _check_scalar(checks[name], value, name)
        for name, value in kwargs.items():
            if name in checks:
                _check_scalar(checks[name], value, name)
        return fn(*args, **kwargs)

    wrapper.__validated_scalars__ = tuple(checks)
    return wrapper


def validate_arrays(**specs):
    """Decorator: validate array arguments with :func:`check_array` before every call.

    ``specs`` map a parameter name to the keyword arguments of :func:`check_array` (``ndim``,
    ``dtype_kind``, ``allow_empty``, ...), e.g. ``@validate_arrays(P={"ndim": 2})``; the extra
    key ``"sequence": True`` checks every element of a list/tuple argument instead (named
    ``name[i]``), and ``"optional": True`` lets None through. ``"kind"`` checks other argument
    types: ``"module"`` (has ``named_parameters``), ``"callable"``, ``"dims"`` (a non-empty
    sequence of positive ints), ``"ranks"`` (a positive int or such a sequence),
    ``"sequence"`` (a non-empty list/tuple), ``"mapping"`` (a dict). A Tensor is checked through its ``.data``. Only validation: the arguments are passed on unchanged, so results of valid
    calls do not change; a string, None, a complex array, NaN/inf, an empty array or a wrong
    ``ndim`` raise ``TypeError``/``ValueError`` naming the argument.
    """
    def deco(fn):
        sig = inspect.signature(fn)
        names = [n for n, p in sig.parameters.items()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = set(specs) - set(sig.parameters)
        if unknown:
            raise TypeError(f"validate_arrays: {fn.__qualname__} has no parameters "
                            f"{sorted(unknown)}")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for name, value in zip(names, args):
                if name in specs:
                    _check_array_arg(value, name, specs[name])
            for name, value in kwargs.items():
                if name in specs:
                    _check_array_arg(value, name, specs[name])
            return fn(*args, **kwargs)

        return wrapper
    return deco


def _check_array_arg(value, name, spec):
    spec = dict(spec)
    kind = spec.pop("kind", "array")
    sequence = spec.pop("sequence", False)
    if spec.pop("optional", False) and value is None:
        return
    if kind == "module":
        if not callable(getattr(value, "named_parameters", None)):
            raise TypeError(f"{name} must be a refimpl.nn Module, got {type(value).__name__}")
        return
    if kind == "mapping":
        if not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a mapping (dict), got {type(value).__name__}")
        return
    if kind == "callable":
        if not callable(value):
            raise TypeError(f"{name} must be callable, got {value!r:.60}")
        return
    if kind in ("dims", "ranks"):
        if kind == "ranks" and isinstance(value, (numbers.Integral, np.integer)):
            check_int(value, name, 1)
            return
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
            raise TypeError(f"{name} must be a sequence of positive ints"
                            f"{' or an int' if kind == 'ranks' else ''}, got {value!r:.60}")
        if len(value) == 0:
            raise ValueError(f"{name} must not be empty")
        for i, v in enumerate(value):
            check_int(v, f"{name}[{i}]", 1)
        return
    if kind == "sequence" or sequence:
        if isinstance(value, (str, bytes, np.ndarray)) or not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list, got {type(value).__name__}")
        if not value:
            raise ValueError(f"{name} must not be empty")
        if kind == "sequence":
            return
        for i, v in enumerate(value):
            check_array(v.data if _is_tensor(v) else v, f"{name}[{i}]", **spec)
        return
    check_array(value.data if _is_tensor(value) else value, name, **spec)


def _is_tensor(v) -> bool:
    return type(v).__name__ in ("Tensor", "Parameter") and hasattr(v, "data")


def _check_scalar(kind, value, name):
    check, allow_none, bound = kind
    if value is None and allow_none:
        return
    if bound is None:
        check(value, name)
        return
    lo, hi = bound[0], bound[1]
    brackets = bound[2] if len(bound) > 2 else "[]"
    if check is check_int:
        lo = None if lo is None else lo + (brackets[0] == "(")
        hi = None if hi is None else hi - (brackets[1] == ")")
        check_int(value, name, lo, hi)
    else:
        check_float(value, name, lo, hi, lo_open=brackets[0] == "(", hi_open=brackets[1] == ")")


def _range(lo, hi) -> str:
    if lo is None and hi is None:
        return ""
    if hi is None:
        return f" >= {lo}"
    if lo is None:
        return f" <= {hi}"
    return f" in [{lo}, {hi}]"


def progress_bar(iterable=None, *, total=None, desc: str | None = None,
                 progress: bool | None = None, **kwargs):
    """A tqdm progress bar; ``progress=None`` shows it only when stderr is a terminal.

    ``REFIMPL_PROGRESS=0`` turns bars off everywhere (the test suite sets it).
    """
    from tqdm.auto import tqdm

    if progress is None:
        env = os.environ.get("REFIMPL_PROGRESS")
        progress = (env not in ("0", "false", "")) if env is not None else sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, disable=not progress, leave=False, **kwargs)


@contextlib.contextmanager
def temporary_environ(env: Mapping[str, str]):
    """Set the environment variables ``env`` for the ``with`` block, then restore each to its
    previous value (or remove it if it was unset), also when the block raises.

    Used where a child process (a Jupyter kernel) must inherit settings such as
    ``REFIMPL_QUICK``: ``refimpl book`` and the assignment grader.

    Parameters
    ----------
    env : mapping of str to str
        The variables to set inside the block.
    """
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
