"""Attention kernels that never form the ``n × n`` matrix (Survey §7): a re-export.

The kernels live in one module per method; this module re-exports them so that
``from refimpl.kernels.attention import ...`` keeps working (the chapters, hooks and benchmarks
import from here). New code may import from either.

=====================================  ======================================  ==================
kernel                                 what                                    module (survey)
=====================================  ======================================  ==================
:func:`sliding_window_attention`       sliding-window (+ dilated, + global)    :mod:`~refimpl.
                                       attention, O(n·w) time and memory       kernels.sliding_
:func:`sliding_window_attention_fwd`   ... with key padding and the row        window`
                                       log-sum-exp                             (§7.2, Longformer)
:func:`sliding_window_attention_bwd`   its gradients by recomputation
:func:`check_window`                   Longformer's window arguments
:func:`block_sparse_attention`         attention restricted to a block         :mod:`~refimpl.
                                       layout, O(nnz blocks · b²) time         kernels.block_
                                                                               sparse_attention`
                                                                               (§7.1, BlockBERT,
                                                                               Sparse Transf.)
:func:`causal_linear_attention`        causal linear attention by prefix       :mod:`~refimpl.
                                       sums, O(n·d·d_v) time, O(d·d_v) state   kernels.causal_
:func:`causal_linear_attention_bwd`    its gradients by reverse prefix sums,   linear` (§7.2)
                                       O(n·d·d_v) time
=====================================  ======================================  ==================

Shared checks, the BLAS thread limit and the vectorised softmax ``exp`` are in
:mod:`refimpl.kernels.attention_common`. Each kernel is a Numba function (``cache=True``,
``prange``) beside a pure-NumPy reference with the same signature, chosen by
``backend="numba" | "numpy"`` (default ``$REFIMPL_BACKEND``); the NumPy references are
sub-quadratic too. Inputs are ``(B, H, n, d)``, float32 or float64; non-finite inputs are
refused with a ``ValueError`` naming the argument, in both backends.

References
----------
.. [1] I. Beltagy, M. E. Peters, A. Cohan, "Longformer: The Long-Document Transformer", 2020.
.. [2] J. Qiu et al., "Blockwise Self-Attention for Long Document Understanding", 2020.
.. [3] R. Child et al., "Generating Long Sequences with Sparse Transformers", 2019.
.. [4] A. Katharopoulos et al., "Transformers are RNNs: Fast Autoregressive Transformers with
   Linear Attention", ICML 2020.
"""

from __future__ import annotations

from refimpl.kernels.attention_common import _exp_approx  # noqa: F401  (for the tests)
from refimpl.kernels.block_sparse_attention import block_sparse_attention
from refimpl.kernels.causal_linear import causal_linear_attention, causal_linear_attention_bwd
from refimpl.kernels.sliding_window import (
    check_window,
    sliding_window_attention,
    sliding_window_attention_bwd,
    sliding_window_attention_fwd,
)

__all__ = ["sliding_window_attention", "sliding_window_attention_fwd",
           "sliding_window_attention_bwd", "check_window", "block_sparse_attention",
           "causal_linear_attention", "causal_linear_attention_bwd"]

