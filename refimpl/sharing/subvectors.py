r"""Survey §5.2, embeddings built from shared sub-vectors: shared reference vectors (Suzuki &
Nagata 2016) and Slim Embeddings (Li et al. 2018).

Each embedding of size ``D`` is split into ``B`` blocks of size ``C = D / B``; block ``b`` of
word ``w`` is one of ``K`` reference sub-vectors of that block,

.. math:: e_w = [\, R_{1,a(w,1)} \;;\; R_{2,a(w,2)} \;;\; \dots \;;\; R_{B,a(w,B)} \,],
   \qquad R \in \mathbb{R}^{B\times K\times C},\; a(w, b) \in \{0,\dots,K-1\},

so ``B·K·C = K·D`` numbers replace the ``V·D`` of a table (Survey §5.2: "K reference vectors for
each block, K×B reference vectors of size C").

* **Shared reference vectors** (Suzuki & Nagata): the sharing constraint is imposed on the input
  *and* output embeddings of skip-gram with negative sampling (:class:`SkipGramNS`). refimpl
  obtains the assignment ``a`` by block-wise k-means of an embedding (:func:`block_kmeans`, also
  the paper's post-processing baseline), or by the nearest-reference step
  :meth:`SubvectorEmbedding.reassign_`, and trains ``R`` by SGNS under the constraint. The
  paper updates the assignments during SGNS training; alternating ``reassign_`` with SGNS epochs
  is our approximation of that schedule, not the paper's exact update.
* **Slim Embeddings** (Li et al.): the assignment is *random* (``assignment="random"``), drawn
  from a seed, so only the seed is stored, and ``K``, ``B`` set the compression ratio freely;
  the sub-vectors are trained through an RNN LM (use it as the ``embedding`` of
  :class:`refimpl.nn.LSTMLanguageModel`).

References
----------
.. [1] J. Suzuki, M. Nagata, "Learning compact neural word embeddings by parameter space
   sharing", IJCAI 2016.
.. [2] Z. Li, R. Kulhanek, S. Wang, Y. Zhao, S. Wu, "Slim embedding layers for recurrent neural
   language models", AAAI 2018.
.. [3] T. Mikolov, I. Sutskever, K. Chen, G. Corrado, J. Dean, "Distributed representations of
   words and phrases and their compositionality", NeurIPS 2013 (SGNS).
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.layers import Embedding
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, data_of
from refimpl.utils import as_rng, check_array, check_float, check_int

__all__ = ["SubvectorEmbedding", "random_assignment", "block_kmeans", "SkipGramNS",
           "skipgram_pairs"]

_SEED_BITS = 32


def random_assignment(num_embeddings: int, num_blocks: int, num_refs: int,
                      seed: int) -> np.ndarray:
    """Slim Embeddings' random sharing: ``a(w, b)`` uniform in ``[0, K)``, distinct rows.

    Rows that repeat an earlier row are redrawn (deterministically) while ``K^B >= V``, so no two
    words share all their sub-vectors.

    Parameters
    ----------
    num_embeddings, num_blocks, num_refs : int
        ``V``, ``B``, ``K``.
    seed : int in [0, 2**32)

    Returns
    -------
    int64 ndarray of shape (V, B)
    """
    V = check_int(num_embeddings, "num_embeddings", 1)
    B = check_int(num_blocks, "num_blocks", 1)
    K = check_int(num_refs, "num_refs", 1)
    seed = check_int(seed, "seed", 0, 2**32 - 1)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, K, (V, B))
    if K ** B < V:
        return a
    while True:
        _, first = np.unique(a, axis=0, return_index=True)
        dup = np.setdiff1d(np.arange(V), first)
        if dup.size == 0:
            return a
        a[dup] = rng.integers(0, K, (dup.size, B))


def block_kmeans(E, num_blocks: int, num_refs: int, *, iters: int = 50, rng=None):
    """Block-wise k-means of an embedding table (Suzuki & Nagata's post-processing baseline;
    refimpl's initial assignment for shared reference vectors), Lloyd's algorithm per block.

    Parameters
    ----------
    E : ndarray of shape (V, D), ``D`` divisible by ``num_blocks``
    num_blocks, num_refs : int
        ``B`` and ``K <= V``.
    iters : int
    rng : Generator or int, optional
        Initial centroids: ``K`` distinct rows of each block, drawn without replacement.

    Returns
    -------
    assignment : int64 ndarray of shape (V, B)
    R : ndarray of shape (B, K, D / B)
    """
    E = check_array(E, "E", ndim=2)
    V, D = E.shape
    B = check_int(num_blocks, "num_blocks", 1)
    K = check_int(num_refs, "num_refs", 1, V)
    iters = check_int(iters, "iters", 1)
    if D % B:
        raise ValueError(f"num_blocks ({B}) must divide the embedding size ({D})")
    rng = as_rng(rng)
    C = D // B
    blocks = E.reshape(V, B, C)                                    # (V, B, C)
    assign = np.zeros((V, B), dtype=np.int64)
    R = np.zeros((B, K, C))
    for b in range(B):
        X = blocks[:, b]
        cent = X[rng.choice(V, K, replace=False)].copy()
        for _ in range(iters):
            d2 = ((X[:, None, :] - cent[None]) ** 2).sum(-1)         # (V, K)
            lab = d2.argmin(1)
            for k in range(K):
                members = X[lab == k]
                if len(members):
                    cent[k] = members.mean(0)
        assign[:, b] = ((X[:, None, :] - cent[None]) ** 2).sum(-1).argmin(1)
        R[b] = cent
    return assign, R


class SubvectorEmbedding(Module):
    r"""An embedding whose rows are concatenations of shared sub-vectors (Survey §5.2).

    ``e_w = [R_{1,a(w,1)}; …; R_{B,a(w,B)}]`` (Suzuki & Nagata 2016; Li et al. 2018).

    Parameters
    ----------
    num_embeddings, dim : int
        ``V`` and ``D``.
    num_blocks, num_refs : int (keyword-only)
        ``B`` (divides ``D``) and ``K``.
    assignment : "random" or int ndarray of shape (V, B)
        ``"random"``: Slim Embeddings, drawn by :func:`random_assignment` from ``seed`` (only the
        seed is stored); an array: e.g. :func:`block_kmeans` (stored, ``⌈log2 K⌉`` bits each).
    seed : int
        Seed of the random assignment.
    padding_idx : int or None
        That word's vector is zero (and receives no gradient).
    rng : Generator or int, optional
        ``R ~ N(0, 1)`` like :class:`refimpl.nn.Embedding`.

    Attributes
    ----------
    R : Parameter of shape (B, K, D / B)
    assignment : int64 ndarray of shape (V, B)
    """

    def __init__(self, num_embeddings: int, dim: int, *, num_blocks: int, num_refs: int,
                 assignment="random", seed: int = 0, padding_idx: int | None = None, rng=None):
        self.num_embeddings = V = check_int(num_embeddings, "num_embeddings", 1)
        self.dim = D = check_int(dim, "dim", 1)
        self.num_blocks = B = check_int(num_blocks, "num_blocks", 1)
        self.num_refs = K = check_int(num_refs, "num_refs", 1)
        if D % B:
            raise ValueError(f"num_blocks ({B}) must divide dim ({D})")
        self.seed = check_int(seed, "seed", 0, 2**32 - 1)
        if isinstance(assignment, str):
            if assignment != "random":
                raise ValueError(f"assignment must be 'random' or an int array, got "
                                 f"{assignment!r}")
            self.random = True
            self.assignment = random_assignment(V, B, K, self.seed)
        else:
            a = check_array(assignment, "assignment", shape=(V, B), dtype_kind="iu")
            if a.min() < 0 or a.max() >= K:
                raise ValueError(f"assignment must lie in [0, {K}), got [{a.min()}, {a.max()}]")
            self.random = False
            self.assignment = a.astype(np.int64)
        if padding_idx is not None:
            padding_idx = check_int(padding_idx, "padding_idx", 0, V - 1)
        self.padding_idx = padding_idx
        self.R = Parameter(as_rng(rng).standard_normal((B, K, D // B)))

    def forward(self, idx) -> Tensor:
        """Integer ids of any shape -> Tensor of shape ``idx.shape + (dim,)``."""
        idx = np.asarray(data_of(idx))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx (token ids) must be an integer array, got dtype {idx.dtype}")
        V, B, K = self.num_embeddings, self.num_blocks, self.num_refs
        if idx.size and (idx.min() < 0 or idx.max() >= V):
            raise ValueError(f"idx (token ids) must lie in [0, {V}), got values in "
                             f"[{idx.min()}, {idx.max()}]")
        C = self.dim // B
        flat = np.arange(B) * K + self.assignment[idx]               # (..., B): rows of R
        sub = F.embedding(F.reshape(self.R, (B * K, C)), flat)      # (..., B, C)
        e = F.reshape(sub, idx.shape + (self.dim,))                  # concatenate the blocks
        if self.padding_idx is not None:
            keep = (idx != self.padding_idx)[..., None].astype(float)
            e = F.mask(e, keep)
        return e

    def virtual_weight(self) -> np.ndarray:
        """The (V, D) table the sub-vectors stand for (for inspection; never stored)."""
        W = self.R.data[np.arange(self.num_blocks), self.assignment].reshape(self.num_embeddings,
                                                                               self.dim)
        if self.padding_idx is not None:
            W[self.padding_idx] = 0.0
        return W

    def reassign_(self, E) -> int:
        """Nearest-reference step: ``a(w, b) ← argmin_k ‖E_{w,b} − R_{b,k}‖`` (in place).

        Parameters
        ----------
        E : ndarray of shape (V, D)

        Returns
        -------
        int
            How many ``(w, b)`` changed. Makes the assignment explicit (``random`` becomes
            False: it must then be stored).
        """
        E = check_array(E, "E", shape=(self.num_embeddings, self.dim))
        B = self.num_blocks
        blocks = E.reshape(self.num_embeddings, B, -1)                # (V, B, C)
        d2 = ((blocks[:, :, None, :] - self.R.data[None]) ** 2).sum(-1)   # (V, B, K)
        new = d2.argmin(-1)
        changed = int((new != self.assignment).sum())
        self.assignment = new.astype(np.int64)
        self.random = False
        return changed

    def storage_bits(self, float_bits: int = 32) -> int:
        """Exact storage: ``B·K·C·float_bits`` plus the assignment: one 32-bit seed when random
        (Slim Embeddings), else ``V·B·⌈log2 K⌉`` bits."""
        fb = check_int(float_bits, "float_bits", 1, 64)
        index_bits = max(1, math.ceil(math.log2(self.num_refs))) if self.num_refs > 1 else 0
        assign = _SEED_BITS if self.random else self.num_embeddings * self.num_blocks * index_bits
        return self.R.size * fb + assign

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.dim}, num_blocks={self.num_blocks}, "
                f"num_refs={self.num_refs}, random={self.random}")


# ------------------------------------------------------------------ skip-gram with negatives
def skipgram_pairs(tokens, *, window: int, num_negatives: int, num_words: int, rng=None,
                   power: float = 0.75):
    """(center, context, negatives) triples of SGNS (Mikolov et al. 2013) from a token stream.

    Every pair within ``window`` positions; negatives drawn from the unigram distribution to
    the ``power`` (0.75), over ids ``[0, num_words)``.

    Parameters
    ----------
    tokens : int ndarray of shape (n,)
    window, num_negatives, num_words : int
    rng : Generator or int, optional
    power : float >= 0

    Returns
    -------
    centers : int64 ndarray of shape (P,)
    contexts : int64 ndarray of shape (P,)
    negatives : int64 ndarray of shape (P, num_negatives)
    """
    t = check_array(tokens, "tokens", ndim=1, dtype_kind="iu").astype(np.int64)
    window = check_int(window, "window", 1)
    k = check_int(num_negatives, "num_negatives", 1)
    V = check_int(num_words, "num_words", 1)
    if t.min() < 0 or t.max() >= V:
        raise ValueError(f"tokens must lie in [0, {V})")
    power = check_float(power, "power", 0.0)
    rng = as_rng(rng)
    cen, ctx = [], []
    for off in range(1, window + 1):
        cen += [t[:-off], t[off:]]
        ctx += [t[off:], t[:-off]]
    centers, contexts = np.concatenate(cen), np.concatenate(ctx)
    counts = np.bincount(t, minlength=V).astype(float) ** float(power)
    negatives = rng.choice(V, (centers.size, k), p=counts / counts.sum())
    return centers, contexts, negatives


class SkipGramNS(Module):
    r"""Skip-gram with negative sampling: ``ℓ = −log σ(u_oᵀv_c) − Σ_k log σ(−u_{n_k}ᵀv_c)``,
    averaged over the pairs, with input vectors ``v`` and output vectors ``u`` from any two
    embedding modules (Survey §5.2: Suzuki & Nagata apply the sharing to both).

    Parameters
    ----------
    input_embedding, output_embedding : Embedding or SubvectorEmbedding
        Same ``dim``.

    Call ``model(centers, contexts, negatives)`` -> scalar loss Tensor; train with
    ``refimpl.nn.fit(model, (c, o, n, dummy), forward=..., loss_fn=lambda out, _: out)``.
    """

    def __init__(self, input_embedding, output_embedding):
        for name, m in (("input_embedding", input_embedding),
                        ("output_embedding", output_embedding)):
            if not isinstance(m, (Embedding, SubvectorEmbedding)):
                raise TypeError(f"{name} must be an Embedding or SubvectorEmbedding, got "
                                f"{type(m).__name__}")
        if input_embedding.dim != output_embedding.dim:
            raise ValueError(f"input_embedding and output_embedding must have the same dim, got "
                             f"{input_embedding.dim} and {output_embedding.dim}")
        self.input_embedding, self.output_embedding = input_embedding, output_embedding

    def forward(self, centers, contexts, negatives) -> Tensor:
        """centers, contexts (P,), negatives (P, k) -> mean SGNS loss (scalar Tensor)."""
        v = self.input_embedding(centers)                             # (P, D)
        u_o = self.output_embedding(contexts)                         # (P, D)
        u_n = self.output_embedding(negatives)                        # (P, k, D)
        pos = F.sum(u_o * v, axis=-1)                                 # (P,)
        neg = F.sum(u_n * F.reshape(v, (v.shape[0], 1, v.shape[1])), axis=-1)   # (P, k)
        # −log σ(x) = log(1 + e^{−x}), written stably through log_softmax of (0, −x)
        zeros_p = np.zeros(pos.shape + (1,))
        zeros_n = np.zeros(neg.shape + (1,))
        lp = F.log_softmax(F.concat([zeros_p, F.reshape(pos, pos.shape + (1,))], -1), -1)
        ln = F.log_softmax(F.concat([zeros_n, F.reshape(-neg, neg.shape + (1,))], -1), -1)
        loss = -(F.sum(lp[..., 1]) + F.sum(ln[..., 1])) / pos.shape[0]
        return loss
