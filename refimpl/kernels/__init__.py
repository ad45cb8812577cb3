"""Numba kernels, each beside its pure-NumPy reference (``backend="numba" | "numpy"``).

| kernel | module | used by |
|---|---|---|
| CSR sparse × dense vector / matrix (SpMV, SpMM, ``X @ W.T``) | :mod:`refimpl.kernels.sparse` | §2 pruning |

See :mod:`refimpl.kernels._backend` for the switch (``REFIMPL_BACKEND``) and how tests assert
which backend ran.
"""

from refimpl.kernels._backend import (
    BACKENDS,
    default_backend,
    dispatch,
    record_calls,
    resolve_backend,
)
from refimpl.kernels.sparse import (
    CSRMatrix,
    csr_from_dense,
    csr_matmat,
    csr_matvec,
    dense_x_csr_T,
)

__all__ = ["BACKENDS", "default_backend", "dispatch", "record_calls", "resolve_backend",
           "CSRMatrix", "csr_from_dense", "csr_matvec", "csr_matmat", "dense_x_csr_T"]
