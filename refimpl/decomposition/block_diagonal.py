"""Decomposition into block-diagonal matrices — Survey §6.2.

=================================  =========================================================
:func:`frequency_partition`        split a vocabulary sorted by frequency into blocks
:class:`DifferentiatedSoftmax`     D-softmax (Chen et al. 2015): frequent words get wider
                                   output embeddings; the output matrix is block-sparse
:func:`dsoftmax_dense_weight`      the equivalent block-sparse dense (V, H) output matrix
:func:`west_factorize`             WEST (Variani et al. 2019): ``E ≈ C D`` with ``D``
                                   block-diagonal — optimal fit by per-block truncated SVD
:func:`block_diag`                 assemble the block-diagonal ``D``
=================================  =========================================================
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.nn import Module, Parameter, Tensor
from refimpl.nn import functional as F
from refimpl.utils import as_rng, check_array, check_int, validate_arrays, validate_scalars

__all__ = ["frequency_partition", "DifferentiatedSoftmax", "dsoftmax_dense_weight",
           "dsoftmax_num_params", "west_factorize", "west_num_params", "block_diag"]


@validate_scalars
@validate_arrays(sizes={"kind": "dims"})
def frequency_partition(counts, sizes) -> list[np.ndarray]:
    """Word ids grouped into blocks by descending frequency.

    Parameters
    ----------
    counts : ndarray of shape (V,)
        Training-set frequency of every word id.
    sizes : sequence of int summing to V
        Block sizes, most frequent block first.

    Returns
    -------
    list of int ndarrays, the word ids of each block

    Notes
    -----
    Survey §6.2: the vocabulary blocks of D-softmax.

    References
    ----------
    .. [1] W. Chen, D. Grangier, M. Auli, "Strategies for Training Large Vocabulary Neural Language
       Models", ACL 2016.
    """
    counts = check_array(counts, "counts", ndim=1)
    sizes = [check_int(s, "sizes", 1) for s in sizes]
    if sum(sizes) != counts.size:
        raise ValueError(f"sizes must sum to V = {counts.size}, got {sum(sizes)}")
    order = np.argsort(-counts, kind="stable")
    return list(np.split(order, np.cumsum(sizes)[:-1]))


@validate_scalars
@validate_arrays(block_sizes={"kind": "dims"}, dims={"kind": "dims"})
def dsoftmax_num_params(block_sizes, dims, bias: bool = True) -> int:
    """``Σ_b |V_b| d_b`` (+ V biases) against ``V · Σ_b d_b`` for a full softmax.

    Part of Survey §6.2 (D-softmax, Chen et al. 2016).
    """
    return int(sum(v * d for v, d in zip(block_sizes, dims)) + (sum(block_sizes) if bias else 0))


class DifferentiatedSoftmax(Module):
    r"""Differentiated softmax output layer (Chen et al. 2015; Survey §6.2).

    The last hidden layer :math:`h \in \mathbb{R}^H`, :math:`H = \sum_b d_b`, is split into
    segments :math:`h_b` of size :math:`d_b`; block ``b`` of the vocabulary (words in
    ``partition[b]``) is scored only from its own segment:

    .. math:: \text{logit}_w = W_b[w]^\top h_b + c_w,\qquad w \in V_b.

    Equivalently, the (V, H) output matrix is block-sparse with blocks :math:`W_b`
    (:func:`dsoftmax_dense_weight`).

    Parameters
    ----------
    partition : list of int arrays
        Word ids of each block (e.g. :func:`frequency_partition`), together a permutation of
        ``range(V)``.
    dims : sequence of int
        Embedding size ``d_b`` of each block (frequent blocks wider).
    rng : Generator or seed

    Attributes
    ----------
    W0, W1, ... : Parameter of shape ``(|V_b|, d_b)``;  c : Parameter of shape ``(V,)``

    References
    ----------
    .. [1] W. Chen, D. Grangier, M. Auli, "Strategies for Training Large Vocabulary Neural
       Language Models", arXiv:1512.04906, 2015.
    """

    @validate_scalars
    @validate_arrays(partition={"kind": "sequence"}, dims={"kind": "dims"})
    def __init__(self, partition, dims, rng=None):
        if len(partition) != len(dims) or len(dims) == 0:
            raise ValueError(f"partition and dims must have the same non-zero length, got "
                             f"{len(partition)} and {len(dims)}")
        self.partition = [np.asarray(p, dtype=np.int64) for p in partition]
        allw = np.concatenate(self.partition)
        self.V = allw.size
        if not np.array_equal(np.sort(allw), np.arange(self.V)):
            raise ValueError("partition must be a permutation of range(V) split into blocks")
        self.dims = tuple(check_int(d, "dims", 1) for d in dims)
        self.H = int(sum(self.dims))
        self.offsets = np.concatenate([[0], np.cumsum(self.dims)])
        rng = as_rng(rng)
        for b, (p, d) in enumerate(zip(self.partition, self.dims)):
            setattr(self, f"W{b}", Parameter(rng.standard_normal((p.size, d)) / math.sqrt(d)))
        self.c = Parameter(np.zeros(self.V))
        # position of every word in the concatenated block order
        self._perm_inv = np.argsort(allw)

    def forward(self, h):
        """``h`` (..., H) -> logits (..., V) in the original word-id order."""
        h = h if isinstance(h, Tensor) else Tensor(np.asarray(h, dtype=np.float64))
        if h.shape[-1] != self.H:
            raise ValueError(f"h must have last dimension H = {self.H}, got {h.shape}")
        parts = []
        for b in range(len(self.dims)):
            seg = h[..., int(self.offsets[b]):int(self.offsets[b + 1])]  # (..., d_b)
            parts.append(F.linear(seg, getattr(self, f"W{b}")))  # (..., |V_b|)
        logits = F.concat(parts, axis=-1)[..., self._perm_inv]  # back to word-id order
        return logits + self.c

    def num_parameters_full(self) -> int:
        """A full softmax with the same H: ``V H + V``."""
        return self.V * self.H + self.V


@validate_scalars
@validate_arrays(model={"kind": "module"})
def dsoftmax_dense_weight(model: DifferentiatedSoftmax) -> np.ndarray:
    """The block-sparse (V, H) output matrix equivalent to a :class:`DifferentiatedSoftmax`.

    Part of Survey §6.2 (D-softmax, Chen et al. 2016).
    """
    W = np.zeros((model.V, model.H))
    for b, p in enumerate(model.partition):
        W[p, model.offsets[b]:model.offsets[b + 1]] = getattr(model, f"W{b}").data
    return W


@validate_scalars
@validate_arrays(blocks={"sequence": True, "ndim": 2})
def block_diag(blocks) -> np.ndarray:
    """Block-diagonal matrix from a list of 2-d blocks.

    Part of Survey §6.2 (WEST's block-diagonal ``D``). Blocks of shape (r_b, c_b) ->
    (Σ r_b, Σ c_b).
    """
    rows = sum(B.shape[0] for B in blocks)
    cols = sum(B.shape[1] for B in blocks)
    out = np.zeros((rows, cols))
    i = j = 0
    for B in blocks:
        out[i:i + B.shape[0], j:j + B.shape[1]] = B
        i += B.shape[0]
        j += B.shape[1]
    return out


@validate_scalars(V=(1, None), H=(1, None), code_dim=(1, None), n_blocks=(1, None))
def west_num_params(V: int, H: int, code_dim: int, n_blocks: int) -> int:
    """``V k + Σ_b k_b H_b = V k + k H / n_blocks`` (equal blocks).

    Part of Survey §6.2 (WEST, Variani et al. 2019).
    """
    return int(V * code_dim + code_dim * H // n_blocks)


@validate_scalars
def west_factorize(E, code_dim: int, n_blocks: int):
    r"""WEST factorisation (Variani et al. 2019; Survey §6.2): ``E ≈ C D`` with ``D``
    block-diagonal.

    Parameters
    ----------
    E : ndarray of shape (V, H)
        Embedding (or output) matrix.
    code_dim : int
        ``k``, columns of ``C``; must be divisible by ``n_blocks``.
    n_blocks : int
        ``H`` must be divisible by it; block ``b`` of ``D`` has shape
        ``(k / n_blocks, H / n_blocks)``.

    Returns
    -------
    C : ndarray (V, k), D : ndarray (k, H) block-diagonal, blocks : list of (k_b, H_b) arrays

    Notes
    -----
    With ``D = diag(D_1, …, D_n)`` the product splits column-block-wise:
    :math:`E_{[:,b]} \approx C_{[:,b]} D_b`, and the blocks share no variables, so the optimal
    fit is a rank-:math:`k_b` truncated SVD of every column block of ``E`` (Eckart–Young per
    block); ``C_{[:,b]} = U_b Σ_b``, ``D_b = V_b^T``. Storage ``V k + k H / n_blocks``.

    References
    ----------
    .. [1] E. Variani, A. T. Suresh, M. Weintraub, "WEST: Word Encoded Sequence Transducers",
       ICASSP 2019.
    """
    E = check_array(E, "E", ndim=2, dtype=np.float64)
    V, H = E.shape
    n_blocks = check_int(n_blocks, "n_blocks", 1)
    code_dim = check_int(code_dim, "code_dim", 1)
    if H % n_blocks:
        raise ValueError(f"n_blocks = {n_blocks} must divide the embedding width H = {H}")
    if code_dim % n_blocks:
        raise ValueError(f"code_dim = {code_dim} must be divisible by n_blocks = {n_blocks}")
    kb, Hb = code_dim // n_blocks, H // n_blocks
    if kb > min(V, Hb):
        raise ValueError(f"code_dim / n_blocks = {kb} exceeds min(V, H / n_blocks) = "
                         f"{min(V, Hb)}")
    Cs, blocks = [], []
    for b in range(n_blocks):
        U, s, Vt = np.linalg.svd(E[:, b * Hb:(b + 1) * Hb], full_matrices=False)
        Cs.append(U[:, :kb] * s[:kb])  # (V, k_b)
        blocks.append(Vt[:kb].copy())  # (k_b, H_b)
    return np.hstack(Cs), block_diag(blocks), blocks
