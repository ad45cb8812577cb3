"""§8 — comparing compression methods: the ``refimpl tour`` and its helpers.

=====================  ====================================================================
``registry``           ``@register_method`` / :class:`MethodResult` / :class:`TourContext`:
                       how chapters plug their methods into the tour
``sizes``              exact size accounting: dense, CSR with relative indices and filler
                       zeros (Han et al.), codebooks, bits per weight, compression ratio
``tour``               ``refimpl tour``: train baselines, run every method, table + plot
``chapters``           ``refimpl chapters``: execute the chapter notebooks (optionally HTML)
``bench``              ``refimpl bench``: run ``benchmarks/bench_*.py`` from a checkout
=====================  ====================================================================

Survey §8 compares the families on model size and task quality; the tour measures both the
same way for every method (exact bits from :mod:`refimpl.compare.sizes`, accuracy and latency
measured by the tour itself).
"""

from refimpl.compare import sizes
from refimpl.compare.registry import MethodResult, TourContext, methods, register_method
from refimpl.compare.sizes import (
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
