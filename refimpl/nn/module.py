"""The :class:`Module` base: parameter discovery, train/eval mode, and ``state_dict`` saved with
``np.savez`` (never pickle)."""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from refimpl.nn.tensor import Parameter, Tensor

__all__ = ["Module", "ModuleList", "save_state_dict", "load_state_dict_file"]


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

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into the parameters (shapes must match; ``strict`` requires same keys)."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        for k, arr in state.items():
            if k not in own:
                continue
            arr = np.asarray(arr)
            if arr.shape != own[k].shape:
                raise ValueError(f"state_dict[{k!r}] has shape {arr.shape}, "
                                 f"parameter has shape {own[k].shape}")
            own[k].data = arr.astype(own[k].dtype, copy=True)

    def save(self, path: str | os.PathLike) -> None:
        """Save ``state_dict()`` to an ``.npz`` file."""
        save_state_dict(self.state_dict(), path)

    def load(self, path: str | os.PathLike, strict: bool = True) -> None:
        """Load parameters saved by :meth:`save`."""
        self.load_state_dict(load_state_dict_file(path), strict=strict)

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


def save_state_dict(state: dict, path) -> None:
    np.savez(path, **{k: np.asarray(v) for k, v in state.items()})


def load_state_dict_file(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


_ = Tensor  # re-exported for type hints in subclasses
