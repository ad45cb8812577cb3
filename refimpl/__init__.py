"""refimpl — a from-scratch NumPy reference implementation of the survey *Compression of Deep
Learning Models for Text* (Gupta & Agrawal, arXiv 2008.05221).

Subpackages map onto the survey's sections:

========================  =====================================================
``refimpl.nn``            small NumPy networks (tape autograd, layers, models)
``refimpl.data``          embedded seeded tasks, corpus loaders, BLEU
``refimpl.kernels``       Numba kernels beside their NumPy references
``refimpl.pruning``       §2 pruning
``refimpl.quantization``  §3 quantization
``refimpl.distillation``  §4 knowledge distillation
``refimpl.sharing``       §5 parameter sharing
``refimpl.decomposition`` §6 tensor decomposition
``refimpl.attention``     §7 sub-quadratic Transformers
``refimpl.compare``       §8 the tour: baselines, every method, tables and plots
``refimpl.check``         the equation/claim registry shared by notebooks and tests
``refimpl.registry``      the method registry chapters put their tour methods in
``refimpl.sizes``         exact size accounting (bits of dense, CSR, codebooks)
``refimpl.cli``           the ``refimpl`` command and its runners
========================  =====================================================
"""

__version__ = "0.1.0"
