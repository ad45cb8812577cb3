"""§8 — comparing compression methods: the ``refimpl tour`` and its helpers.

=====================  ====================================================================
``tour``               ``refimpl tour``: train baselines, run every method, table + plot
``baselines``          the baselines the tour trains once and every method compresses
``pipelines``          §8.1 combinations as composable steps, exact composed storage
``latency``            latency through the kernels each stored format uses (batch 1 / 64)
``lm_tour``            ``refimpl tour --task lm``: perplexity against the Bayes floor
``report``             §8.1 family ranking by score ÷ size; frontier and plots
``planner``            §8.3 budget planner (``refimpl plan``)
``checks``             registered checks: size accounting, Huffman, planner; claims
=====================  ====================================================================

The method registry (``@register_method``, :class:`MethodResult`, :class:`TourContext`) lives on
the ground floor in :mod:`refimpl.registry`, beside :mod:`refimpl.check`, so a chapter
registers its tour methods without importing ``compare``; the exact size accounting is
:mod:`refimpl.sizes`. Both are re-exported here for §8 users. The CLI runners are in
:mod:`refimpl.cli`.

Survey §8 compares the families on model size and task quality; the tour measures both the
same way for every method (exact bits from :mod:`refimpl.sizes`, accuracy and latency
measured by the tour itself).
"""

from refimpl import sizes
from refimpl.registry import MethodResult, TourContext, methods, register_method
from refimpl.sizes import (
    bits_per_weight,
    codebook_bits,
    compression_ratio,
    csr_bits,
    csr_bits_of,
    format_bytes,
    relative_index_fillers,
)

__all__ = ["MethodResult", "TourContext", "register_method", "methods", "sizes", "csr_bits",
           "csr_bits_of", "relative_index_fillers", "codebook_bits", "bits_per_weight",
           "compression_ratio", "format_bytes"]
