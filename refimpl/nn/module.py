"""The :class:`Module` base: parameter discovery, train/eval mode, and ``state_dict`` saved with
``np.savez`` (never pickle).

State files and ``load_state_dict``:

* :meth:`Module.save` / :func:`save_state_dict` write an ``.npz`` archive; like
  :func:`numpy.savez`, ``".npz"`` is appended to a path that does not end in it, and
  :meth:`Module.load` / :func:`load_state_dict_file` apply the same rule, so ``save("model")``
  and ``load("model")`` name the same file ``model.npz``.
* A file that is not such an archive (truncated, a ``.npy``, a pickle, an archive holding object
  arrays) is a ``ValueError`` naming the path: "not a valid refimpl state file".
* :meth:`Module.load_state_dict` is atomic: every key is validated (shape, a real numeric dtype
  that casts safely to the parameter's, finite values) before any parameter changes, so a bad
  entry leaves the module as it was. The given arrays are copied, never modified.
* It returns :class:`LoadResult` ``(missing_keys, unexpected_keys)`` like PyTorch's
  ``load_state_dict``; with ``strict=True`` (the default) either being non-empty is an error.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Mapping
from typing import Iterator, NamedTuple

import numpy as np

from refimpl.nn.tensor import Parameter, Tensor

__all__ = ["Module", "ModuleList", "LoadResult", "save_state_dict", "load_state_dict_file",
           "state_file_path"]


class LoadResult(NamedTuple):
    """What :meth:`Module.load_state_dict` did not match (PyTorch's ``_IncompatibleKeys``).

    Attributes
    ----------
    missing_keys : list of str
        Parameters of the module that the state did not contain (left unchanged).
    unexpected_keys : list of str
        Keys of the state that name no parameter (ignored).
    """

    missing_keys: list
    unexpected_keys: list


def _checked_entry(key: str, arr, param: Parameter) -> np.ndarray:
    """A fresh copy of ``arr`` in ``param``'s dtype, or a ``ValueError``/``TypeError`` naming
    ``state_dict[key]`` (shape, dtype kind, unsafe cast, non-finite values)."""
    where = f"state_dict[{key!r}]"
    if isinstance(arr, Tensor):
        arr = arr.data
    arr = np.asarray(arr)
    if arr.dtype.kind == "c":
        raise TypeError(f"{where} is complex ({arr.dtype}); parameters are real "
                        f"({param.dtype})")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{where} must be a real numeric array, got dtype {arr.dtype}")
    if not np.can_cast(arr.dtype, param.dtype, casting="safe"):
        raise TypeError(f"{where} has dtype {arr.dtype}, which does not cast safely to the "
                        f"parameter's {param.dtype} (convert it explicitly, or the module with "
                        f"astype, first)")
    if arr.shape != param.shape:
        raise ValueError(f"{where} has shape {arr.shape}, parameter has shape {param.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{where} contains {bad} non-finite value(s) (NaN or inf)")
    return np.array(arr, dtype=param.dtype, copy=True)


class Module:
    """Base class of layers and models.

    Sub-modules and :class:`Parameter` attributes are discovered by attribute walk (in insertion
    order), so ``named_parameters()`` keys look like PyTorch's (``"encoder.0.W"``).
    """

    training: bool = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for k, v in vars(self).items():
            if isinstance(v, Module):
                yield k, v

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for k, m in self.named_children():
            yield from m.named_modules(f"{prefix}.{k}" if prefix else k)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for mname, m in self.named_modules(prefix):
            for k, v in vars(m).items():
                if isinstance(v, Parameter) and id(v) not in seen:
                    seen.add(id(v))
                    yield (f"{mname}.{k}" if mname else k), v

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        """Number of scalar parameters (shared parameters counted once)."""
        return int(sum(p.size for p in self.parameters()))

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter's array, keyed by dotted name."""
        return {k: p.data.copy() for k, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping, strict: bool = True) -> LoadResult:
        """Copy arrays into the parameters, all or nothing.

        Parameters
        ----------
        state : mapping of str to array_like
            E.g. from :meth:`state_dict` or :func:`load_state_dict_file`; not modified (the
            arrays are copied).
        strict : bool, default True
            Require exactly the module's keys (``KeyError`` listing the missing and unexpected
            ones otherwise). With ``False`` the matching keys are loaded and the others
            reported in the result.

        Returns
        -------
        LoadResult
            ``(missing_keys, unexpected_keys)``, sorted lists of str (both empty when strict).

        Raises
        ------
        KeyError
            ``strict`` and the keys differ.
        ValueError
            An entry has the wrong shape or contains NaN/inf.
        TypeError
            ``state`` is not a mapping, or an entry is complex, not numeric, or of a dtype that
            does not cast safely to its parameter's (e.g. float64 into a float32 parameter).

        Notes
        -----
        Every entry is checked before any parameter is assigned, so on any error the module is
        unchanged.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping of name -> array, got "
                            f"{type(state).__name__}")
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(str(k) for k in set(state) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        # validate and copy everything first, then assign: atomic
        new = {k: _checked_entry(k, state[k], own[k]) for k in own if k in state}
        for k, arr in new.items():
            own[k].data = arr
        return LoadResult(missing, unexpected)

    def save(self, path: str | os.PathLike) -> None:
        """Save ``state_dict()`` to an ``.npz`` file (``".npz"`` appended if missing, as
        :func:`numpy.savez` does)."""
        save_state_dict(self.state_dict(), path)

    def load(self, path: str | os.PathLike, strict: bool = True) -> LoadResult:
        """Load parameters saved by :meth:`save` (same path rule: ``load("model")`` reads
        ``model.npz``); see :meth:`load_state_dict` for ``strict``, the checks and the result.
        ``ValueError`` naming the path if the file is not a valid state file."""
        return self.load_state_dict(load_state_dict_file(path), strict=strict)

    def astype(self, dtype) -> "Module":
        """Convert every parameter to ``dtype`` in place (e.g. float32 for speed)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
        return self


class ModuleList(Module):
    """A list of modules whose parameters are discovered (keys ``"0"``, ``"1"``, ...)."""

    def __init__(self, modules=()):
        self._n = 0
        for m in modules:
            self.append(m)

    def append(self, m: Module) -> None:
        if not isinstance(m, Module):
            raise TypeError(f"ModuleList holds Modules, got {type(m).__name__}")
        setattr(self, str(self._n), m)
        self._n += 1

    def __getitem__(self, i: int) -> Module:
        if isinstance(i, slice):
            return [getattr(self, str(j)) for j in range(self._n)[i]]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return getattr(self, str(i))

    def __setitem__(self, i: int, m: Module) -> None:
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        setattr(self, str(i), m)

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        return (getattr(self, str(j)) for j in range(self._n))


def state_file_path(path):
    """The file :func:`save_state_dict` writes for ``path``: ``".npz"`` appended to a str or
    path-like that does not end in it (:func:`numpy.savez`'s rule); file objects unchanged."""
    if isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        return p if p.endswith(".npz") else p + ".npz"
    return path


def save_state_dict(state: Mapping, path) -> None:
    """Write ``state`` (name -> array) to ``path`` as an uncompressed ``.npz`` archive
    (``".npz"`` appended if missing; never pickled: object arrays are refused)."""
    arrays = {k: np.asarray(v.data if isinstance(v, Tensor) else v) for k, v in state.items()}
    for k, a in arrays.items():
        if a.dtype.hasobject:
            raise TypeError(f"state[{k!r}] is an object array; state files hold numeric arrays")
    np.savez(state_file_path(path), **arrays)


def load_state_dict_file(path) -> dict[str, np.ndarray]:
    """Read a state file written by :func:`save_state_dict` / :meth:`Module.save`.

    Parameters
    ----------
    path : str, path-like or binary file object
        ``".npz"`` is appended to a path that does not end in it, as when saving; if that file
        does not exist but ``path`` itself does, ``path`` is read.

    Returns
    -------
    dict of str to ndarray

    Raises
    ------
    FileNotFoundError
        Neither ``path`` nor ``path + ".npz"`` exists.
    ValueError
        The file is not an ``.npz`` archive of plain arrays (truncated, ``.npy``, pickle,
        object arrays): "... is not a valid refimpl state file".
    """
    target = state_file_path(path)
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(target):
        if os.path.isfile(path):
            target = os.fspath(path)
        else:
            raise FileNotFoundError(f"no state file at {target!r} (nor at {os.fspath(path)!r})")
    name = target if isinstance(target, str) else getattr(target, "name", repr(target))
    bad = (f"{name!r} is not a valid refimpl state file (an .npz archive of numeric arrays "
           f"written by Module.save / save_state_dict)")
    try:
        z = np.load(target, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        # e.g. numpy's "Cannot load file containing pickled data" for any non-npy, non-zip file
        raise ValueError(f"{bad} ({type(e).__name__}: {e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):  # a bare .npy array
        raise ValueError(f"{bad} (it holds a single .npy array)")
    try:
        with z:
            return {k: np.array(z[k]) for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        # truncated or corrupt members, object arrays (refused: never unpickled)
        raise ValueError(f"{bad} ({type(e).__name__}: {e})") from None


_ = Tensor  # re-exported for type hints in subclasses
