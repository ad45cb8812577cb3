"""A magnitude-pruned linear layer stored in CSR and applied with the CSR kernel (Survey §2.1.2).

:class:`CSRLinear` is the inference form of a pruned :class:`refimpl.nn.Linear`: only the
non-zero weights are kept, in the :class:`refimpl.kernels.CSRMatrix` of
:mod:`refimpl.kernels.sparse`, and ``forward`` computes ``y = x Wᵀ + b`` with
:func:`refimpl.kernels.dense_x_csr_T` (never forming the dense ``W``). It swaps in for a
``Linear`` anywhere in an ``nn`` model (attention projections, the FFN) with
:func:`refimpl.nn.surgery.replace_modules`.

Storage is what the kernel holds, counted exactly with :func:`refimpl.sizes.csr_bits`:
``nnz`` values of the weight dtype (32 bits in float32), ``nnz`` absolute column indices of the
index dtype (``uint16`` when ``in_features ≤ 65536``, else ``uint32``), ``out_features + 1``
row pointers of 64 bits, plus the dense bias. (Han et al.'s 5-bit relative indices with
filler zeros would be smaller; they are a storage format, not what this kernel reads —
:func:`refimpl.pruning.network.model_bits` counts that format.)

References
----------
.. [1] S. Han, J. Pool, J. Tran, W. J. Dally, "Learning both Weights and Connections for
   Efficient Neural Networks", NeurIPS 2015.
"""

from __future__ import annotations

import numpy as np

from refimpl.kernels._backend import resolve_backend
from refimpl.kernels.sparse import CSRMatrix, csr_from_dense, dense_x_csr_T
from refimpl.nn.module import Module
from refimpl.nn.tensor import Tensor, data_of
from refimpl.sizes import csr_bits
from refimpl.utils import check_array

__all__ = ["CSRLinear"]


class CSRLinear(Module):
    """``y = x Wᵀ + b`` with ``W`` (out_features, in_features) in CSR, for inference.

    Parameters
    ----------
    W : CSRMatrix of shape (out_features, in_features)
    b : ndarray of shape (out_features,), optional
    backend : {"numba", "numpy"}, optional
        Kernel backend (default ``$REFIMPL_BACKEND``).

    Notes
    -----
    Survey §2.1.2 (magnitude pruning, Han et al. 2015): the pruned weights are not stored.
    ``forward`` returns a constant Tensor (no gradient flows through the CSR kernel; fine-tune
    a masked dense ``Linear`` with :func:`refimpl.pruning.network.apply_masks_` first).
    """

    def __init__(self, W: CSRMatrix, b=None, backend: str | None = None):
        if not isinstance(W, CSRMatrix):
            raise TypeError(f"W must be a CSRMatrix, got {type(W).__name__}")
        self.W_csr = W
        self.out_features, self.in_features = W.shape
        if b is not None:
            b = check_array(b, "b", shape=(self.out_features,)).astype(W.dtype)
        self.bias = b
        if backend is not None:
            resolve_backend(backend)  # a clear error naming backend now, not at the first call
        self.backend = backend

    @classmethod
    def from_linear(cls, linear, mask=None, backend: str | None = None) -> "CSRLinear":
        """Store ``linear.W * mask`` (default: its non-zeros) in CSR; ``linear`` is not changed.

        Parameters
        ----------
        linear : refimpl.nn.Linear
        mask : bool ndarray of shape (out_features, in_features), optional
            True = keep.
        """
        W = np.asarray(linear.W.data)
        if mask is not None:
            mask = check_array(mask, "mask", shape=W.shape, dtype_kind="bui")
            W = np.where(mask.astype(bool), W, np.zeros((), W.dtype))
        b = None if getattr(linear, "b", None) is None else np.asarray(linear.b.data)
        return cls(csr_from_dense(W), b, backend)

    @property
    def nnz(self) -> int:
        return self.W_csr.nnz

    def weight(self) -> np.ndarray:
        """The dense ``(out_features, in_features)`` matrix (references and tests only)."""
        return self.W_csr.to_dense()

    def stored_bits(self) -> int:
        """Exact bits held: CSR values, indices and row pointers, plus the bias."""
        A = self.W_csr
        bits = csr_bits(A.nnz, A.shape[0], value_bits=A.data.dtype.itemsize * 8,
                        index_bits=A.indices.dtype.itemsize * 8,
                        pointer_bits=A.indptr.dtype.itemsize * 8)
        return bits + (0 if self.bias is None else self.bias.size * self.bias.dtype.itemsize * 8)

    def forward(self, x) -> Tensor:
        """``x`` of shape (..., in_features) -> Tensor of shape (..., out_features)."""
        X = np.asarray(data_of(x))
        if X.ndim == 0 or X.shape[-1] != self.in_features:
            raise ValueError(f"x must have last dimension {self.in_features}, got shape "
                             f"{X.shape}")
        lead = X.shape[:-1]
        Y = dense_x_csr_T(X.reshape(-1, self.in_features), self.W_csr,
                          backend=self.backend)  # (N, out)
        if self.bias is not None:
            Y += self.bias
        return Tensor(Y.reshape(*lead, self.out_features))

    def __repr__(self) -> str:
        return (f"CSRLinear(in_features={self.in_features}, out_features={self.out_features}, "
                f"nnz={self.nnz}, sparsity={self.W_csr.sparsity:.3f})")
