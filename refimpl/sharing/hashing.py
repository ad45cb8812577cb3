r"""Survey §5.2, HashedNets (Chen et al. 2015): a weight matrix whose entries are drawn from K
shared real parameters by a hash of their position, with a hashed sign.

.. math:: V_{ij} = \xi(i, j)\, w_{h(i, j)}, \qquad h: (i, j) \mapsto \{0, \dots, K-1\},
   \qquad \xi: (i, j) \mapsto \{-1, +1\}

Both hashes are xxHash32 of ``(i, j)`` (two little-endian uint32 words) with two seeds derived
from one integer ``seed``: ``s_h = seed`` for the bucket and
``s_ξ = (seed + 0x9E3779B9) mod 2**32`` for the sign (see :mod:`refimpl.kernels.hashing`). The
hash is a fixed function, so one seed gives bit-identical matrices in every process. The layer
stores only ``w`` (K floats) and the two 32-bit seeds; its forward and backward passes hash
each position on the fly and never form V.

References
----------
.. [1] W. Chen, J. T. Wilson, S. Tyree, K. Q. Weinberger, Y. Chen, "Compressing neural networks
   with the hashing trick", ICML 2015.
"""

from __future__ import annotations

import numpy as np

from refimpl.kernels._backend import resolve_backend
from refimpl.kernels.hashing import hashed_dense, hashed_matmul, hashed_matmul_backward
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, apply_op, as_tensor
from refimpl.utils import as_rng, check_array, check_bool, check_int

__all__ = ["hashed_matrix", "hash_seeds", "HashedLinear"]

_GOLDEN = 0x9E3779B9
_SEED_BITS = 32


def hash_seeds(seed: int) -> tuple[int, int]:
    """The two 32-bit seeds ``(s_h, s_ξ)`` of the bucket and sign hashes derived from ``seed``.

    Parameters
    ----------
    seed : int in [0, 2**32)

    Returns
    -------
    (int, int)
        ``(seed, (seed + 0x9E3779B9) mod 2**32)``.
    """
    seed = check_int(seed, "seed", 0, 2**32 - 1)
    return seed, (seed + _GOLDEN) % 2**32


def hashed_matrix(w, shape, seed: int, *, backend: str | None = None) -> np.ndarray:
    r"""The virtual matrix V of HashedNets, :math:`V_{ij} = \xi(i,j)\,w_{h(i,j)}` (Survey §5.2).

    Parameters
    ----------
    w : ndarray of shape (K,), K ≥ 1
        The shared real parameters.
    shape : (int, int)
        ``(out_features, in_features)`` of V.
    seed : int in [0, 2**32)
        Seed of both hashes (see :func:`hash_seeds`).
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    ndarray of shape ``shape``; every entry is ``+w[k]`` or ``-w[k]`` for some k.

    References
    ----------
    .. [1] Chen et al., "Compressing neural networks with the hashing trick", ICML 2015, §4.
    """
    w = check_array(w, "w", ndim=1)
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"shape must be a pair (out_features, in_features), got {shape!r}")
    m = check_int(shape[0], "shape[0]", 1)
    n = check_int(shape[1], "shape[1]", 1)
    return hashed_dense(w, m, n, *hash_seeds(seed), backend=backend)


def _hashed_fwd(X, w, out_features, seeds, backend):
    return hashed_matmul(X, w, out_features, *seeds, backend=backend), (X, w, seeds, backend)


def _hashed_bwd(dY, cache):
    X, w, seeds, backend = cache
    return hashed_matmul_backward(dY, X, w, *seeds, backend=backend)


class HashedLinear(Module):
    r"""A linear layer with a HashedNets weight: ``y = x V^T + b`` with V hashed from K numbers.

    Survey §5.2 (Chen et al. 2015). The layer stores ``w`` (K,), the bias and two 32-bit
    seeds; forward and backward hash positions on the fly (:mod:`refimpl.kernels.hashing`), so
    V is never materialised. The gradient into ``w`` is the sign-weighted sum of
    :math:`\partial L/\partial V_{ij}` over each bucket (Chen et al., Eq. 9).

    Parameters
    ----------
    in_features, out_features : int ≥ 1
    K : int ≥ 1
        Number of real parameters of the weight (the buckets).
    bias : bool
    seed : int in [0, 2**32)
        Seed of the hashes.
    rng : Generator or int, optional
        Initialisation: ``w, b ~ U(−1/√in, 1/√in)`` like :class:`refimpl.nn.Linear`.
    backend : {"numba", "numpy"}, optional
        Kernel backend of the product.

    Attributes
    ----------
    w : Parameter of shape (K,)
    b : Parameter of shape (out_features,) or None
    """

    def __init__(self, in_features: int, out_features: int, K: int, *, bias: bool = True,
                 seed: int = 0, rng=None, backend: str | None = None):
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self.K = check_int(K, "K", 1)
        bias = check_bool(bias, "bias")
        self.seeds = hash_seeds(seed)
        self.seed = self.seeds[0]
        if backend is not None:
            resolve_backend(backend)                                # refuse a bad name now
        self.backend = backend
        rng = as_rng(rng)
        bound = 1.0 / np.sqrt(self.in_features)
        self.w = Parameter(rng.uniform(-bound, bound, self.K))
        self.b = Parameter(rng.uniform(-bound, bound, self.out_features)) if bias else None

    def virtual_weight(self) -> np.ndarray:
        """V materialised, shape (out_features, in_features) (for checks; forward never does)."""
        return hashed_dense(self.w.data, self.out_features, self.in_features, *self.seeds,
                            backend=self.backend)

    def forward(self, x) -> Tensor:
        """x of shape (..., in_features) -> (..., out_features)."""
        x = as_tensor(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have last dimension in_features={self.in_features}, got "
                             f"shape {x.shape}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)                       # (B, in)
        y = apply_op(_hashed_fwd, _hashed_bwd, x2, self.w, name="hashed_linear",
                     out_features=self.out_features, seeds=self.seeds, backend=self.backend)
        if self.b is not None:
            y = y + self.b                                          # (B, out)
        return y.reshape(*lead, self.out_features)

    def storage_bits(self, float_bits: int = 32) -> int:
        """Exact storage: ``(K + out_features·[bias]) · float_bits + 2 · 32`` (the two seeds).

        The shape ``(out_features, in_features)`` is architecture, not stored per weight.
        """
        fb = check_int(float_bits, "float_bits", 1, 64)
        return self.num_parameters() * fb + 2 * _SEED_BITS

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, K={self.K}, "
                f"bias={self.b is not None}, seed={self.seed}")
