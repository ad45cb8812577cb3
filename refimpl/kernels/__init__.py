"""Numba kernels, each beside its pure-NumPy reference (``backend="numba" | "numpy"``).

.. list-table::
   :header-rows: 1
   :widths: 50 25 25

   * - kernel
     - module
     - used by
   * - CSR sparse × dense vector / matrix (SpMV, SpMM, ``X @ W.T``)
     - :mod:`refimpl.kernels.sparse`
     - §2 pruning
   * - block-sparse (BSR) and bank-balanced (BBS) sparse × dense
     - :mod:`refimpl.kernels.block_sparse`
     - §2.3 pruning
   * - sign / ternary / k-bit packing; XNOR-popcount binary GEMM, ternary GEMM on two bit planes, k-bit packed × float matmul
     - :mod:`refimpl.kernels.bitpack`
     - §3 quantization
   * - small-batch products with packed 1–4-bit codebook, binary and ternary weights × float activations (codes decoded in registers: AVX-512 ``vpermps`` + FMA, portable loops elsewhere); XOR-popcount GEMV for a few packed rows
     - :mod:`refimpl.kernels.lowbit_gemv`
     - §3 quantization (serving, batch ≤ 64)
   * - T-MAC-style table lookup on the activations for 1- and 2-bit (binary, ternary, 2-bit codebook) weights in a 16-row interleaved layout (one ``vpermps`` per 16 rows × 4 binary / 2 two-bit weights)
     - :mod:`refimpl.kernels.lut_gemv`
     - §3 quantization (serving, batch 1–8)
   * - TT-matrix × matrix without forming the matrix; TT-embedding row lookup
     - :mod:`refimpl.kernels.tt`
     - §6.3 decomposition
   * - xxHash32 of index pairs; hashed-matrix products and their gradients without forming V
     - :mod:`refimpl.kernels.hashing`
     - §5.2 HashedNets
   * - sliding-window (+dilated, +global, key padding) attention without the n×n matrix: forward, forward with log-sum-exp, backward (one band kernel)
     - :mod:`refimpl.kernels.sliding_window`
     - §7.2 Longformer
   * - block-sparse attention over a block layout
     - :mod:`refimpl.kernels.block_sparse_attention`
     - §7.1 BlockBERT, Sparse Transformer
   * - causal linear attention (prefix sums)
     - :mod:`refimpl.kernels.causal_linear`
     - §7.2 linear Transformer
   * - canonical Huffman code lengths, encode to a packed bit stream, decode
     - :mod:`refimpl.kernels.huffman`
     - §8 Deep Compression (compare), §2/§3 storage
   * - erf, exact GELU and its gradient, element-wise (float32: vectorised float64 polynomials, rounded once, ≤ 1 ulp)
     - :mod:`refimpl.kernels.gelu`
     - :mod:`refimpl.nn.ops` (every Transformer's FFN; §9 MiniLM)

The chapter kernels are imported from their modules (``from refimpl.kernels.bitpack import
binary_matmul``) so that ``import refimpl.kernels`` stays light. :mod:`refimpl.kernels.attention`
re-exports the three attention modules (the import path the chapters use);
:mod:`refimpl.kernels.attention_common` holds their shared checks, BLAS thread limit and
softmax ``exp``.

See :mod:`refimpl.kernels._backend` for the switch (``REFIMPL_BACKEND``), how tests assert
which backend ran, and the threading layer: importing the kernels asks Numba for a fork-safe one
(TBB if installed, else ``workqueue``; :func:`threading_layer_status`), so ``fork``-started
``multiprocessing`` workers can call parallel kernels after the parent did.

Public kernel entry points refuse non-finite inputs (``ValueError`` naming the argument, both
backends); sparse matrix containers store validated, read-only copies of their arrays.
"""

from refimpl.kernels._backend import (
    BACKENDS,
    default_backend,
    dispatch,
    record_calls,
    resolve_backend,
    threading_layer_status,
)
from refimpl.kernels.sparse import (
    CSRMatrix,
    csr_from_dense,
    csr_matmat,
    csr_matvec,
    dense_x_csr_T,
)

__all__ = ["BACKENDS", "default_backend", "dispatch", "record_calls", "resolve_backend",
           "threading_layer_status",
           "CSRMatrix", "csr_from_dense", "csr_matvec", "csr_matmat", "dense_x_csr_T"]
