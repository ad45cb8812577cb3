"""§3 methods in ``refimpl tour``: BWN binary, TWN ternary, uniform 4-bit, k-means 4-bit and
alternating 2-bit multi-bit quantisation of every weight matrix.

Every method copies the trained baseline, installs a quantiser with a straight-through gradient
as the ``weight_transform`` of every layer (quantisation-aware fine-tuning with the tour's
``ctx.fit``), then bakes the quantised values into the parameters. Biases, LayerNorm gains and
other vectors stay float32.

Storage is counted exactly, in whole ``uint64`` words, per weight matrix of ``n`` entries and
``rows`` rows (codes packed over the whole matrix, as :mod:`refimpl.kernels.bitpack` packs a
row):

* binary (BWN): one sign plane, ``⌈n/64⌉ · 64`` bits, + one float32 α;
* ternary (TWN): two planes (non-zero, sign), ``2 · ⌈n/64⌉ · 64``, + α;
* uniform k-bit: codes packed ``64 // k`` per word, + float32 α and β (Eq. 39);
* k-means with ``2^k`` centroids: codes as above + a ``2^k``-entry float32 codebook (Eq. 49);
* multi-bit (alternating, ``k`` codes per row, Xu et al.): ``k`` sign planes + ``k`` float32
  scales per row.

Everything else is 32 bits per parameter.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from refimpl.registry import MethodResult, TourContext, register_method
from refimpl.nn import functional as F
from refimpl.quantization.kmeans import kmeans_quantize
from refimpl.quantization.multibit import multibit_alternating_rows
from refimpl.quantization.ternary import twn
from refimpl.quantization.uniform import quantize_uniform

__all__ = ["FINETUNE_EPOCHS", "quantize_and_finetune", "matrix_bits"]

#: Quantisation-aware fine-tuning epochs.
FINETUNE_EPOCHS = 1


def _words(cols: int, per: int) -> int:
    return -(-cols // per)


def matrix_bits(shape, scheme: str, bits: int = 1) -> int:
    """Exact stored bits of one quantised matrix (see the module docstring).

    Codes are packed contiguously over the whole matrix (``64 // bits`` codes per ``uint64``
    word, the last word padded), so short rows do not waste a word each.
    """
    n = int(np.prod(shape))
    rows = int(np.prod(shape[:-1]))
    if scheme == "binary":
        return _words(n, 64) * 64 + 32
    if scheme == "ternary":
        return 2 * _words(n, 64) * 64 + 32
    if scheme == "uniform":
        return _words(n, 64 // bits) * 64 + 64
    if scheme == "kmeans":
        return _words(n, 64 // bits) * 64 + (2 ** bits) * 32
    if scheme == "multibit":
        return bits * _words(n, 64) * 64 + bits * 32 * rows
    raise ValueError(f"scheme must be binary, ternary, uniform, kmeans or multibit, "
                     f"got {scheme!r}")


def _bwn(a):
    return np.abs(a).mean() * np.where(a >= 0, 1.0, -1.0)


def _twn(a):
    alpha, T, _ = twn(a)
    return alpha * T


def _multibit2(a):
    alphas, B = multibit_alternating_rows(a.reshape(-1, a.shape[-1]), 2)
    return np.einsum("ri,rin->rn", alphas, B).reshape(a.shape)  # (rows, cols)


class _KMeansShared:
    """Static k-means codebook per matrix (computed once from the baseline); during fine-tuning
    every latent weight maps to its nearest centroid; at the end the centroids are refreshed to
    their cluster means (one Lloyd step), so each matrix still holds ``k`` distinct values."""

    def __init__(self, model, k: int = 16):
        self.books = {}
        for _, p in model.named_parameters():
            if p.ndim >= 2:
                cb, _ = kmeans_quantize(p.data, min(k, p.size), rng=0)
                self.books[id(p)] = np.sort(cb)

    def _nearest(self, a, cb):
        mid = (cb[1:] + cb[:-1]) / 2
        return np.searchsorted(mid, a)  # index of the nearest sorted centroid

    def __call__(self, a, key):
        cb = self.books[key]
        return cb[self._nearest(a, cb)]

    def bake(self, a, key):
        cb = self.books[key].copy()
        lab = self._nearest(a, cb)
        for j in range(cb.size):
            if np.any(lab == j):
                cb[j] = a[lab == j].mean()
        return cb[lab]


def _install(model, fn: Callable) -> None:
    def transform(name, W):
        if W.ndim < 2:
            return W
        key = id(W)
        return F.straight_through(W, lambda a: np.asarray(fn(a, key), dtype=a.dtype),
                                  name="quant")

    for m in model.modules():
        if hasattr(m, "weight_transform"):
            m.weight_transform = transform


def _bake(model, fn) -> tuple[list, int]:
    """Quantise every ≥2-d parameter in place; returns their shapes and the other params."""
    for m in model.modules():
        if hasattr(m, "weight_transform"):
            m.weight_transform = None
    shapes, other = [], 0
    for _, p in model.named_parameters():
        if p.ndim >= 2:
            p.data = np.asarray(fn(p.data, id(p)), dtype=p.data.dtype)
            shapes.append(p.shape)
        else:
            other += p.size
    return shapes, other


def quantize_and_finetune(ctx: TourContext, fn, scheme: str, bits: int, notes: str,
                          finetune: bool = True, bake=None, model=None) -> MethodResult:
    """Copy the baseline, fine-tune through ``fn(array, key)`` (STE), bake with ``bake`` (default
    ``fn``), and count the stored bits."""
    model = ctx.copy_baseline() if model is None else model
    if finetune:
        _install(model, fn)
        ctx.fit(model, epochs=FINETUNE_EPOCHS)
    shapes, other = _bake(model, bake or fn)
    total = sum(matrix_bits(s, scheme, bits) for s in shapes) + 32 * other
    params = int(sum(int(np.prod(s)) for s in shapes) + other)
    return MethodResult(model, bits=int(total), params=params, notes=notes,
                        extra={"quantised_matrices": len(shapes)})


@register_method("bwn-binary", family="quantization", section="3.1.3",
                 description="BWN: α·sign(W) per weight matrix (Eqs. 22–24), STE fine-tuning")
def bwn_binary(ctx: TourContext) -> MethodResult:
    return quantize_and_finetune(ctx, lambda a, key: _bwn(a), "binary", 1,
                                 "1-bit signs + float32 α per matrix")


@register_method("twn-ternary", family="quantization", section="3.2.2",
                 description="TWN: α·T with Δ = 0.7·E|W| per matrix (Eqs. 30–34), STE "
                             "fine-tuning")
def twn_ternary(ctx: TourContext) -> MethodResult:
    return quantize_and_finetune(ctx, lambda a, key: _twn(a), "ternary", 2,
                                 "two bit planes + float32 α per matrix")


@register_method("uniform-4bit", family="quantization", section="3.3.1",
                 description="affine uniform 4-bit per matrix (Eqs. 36–39), STE fine-tuning")
def uniform_4bit(ctx: TourContext) -> MethodResult:
    return quantize_and_finetune(ctx, lambda a, key: quantize_uniform(a, 4), "uniform", 4,
                                 "4-bit codes + float32 α, β per matrix")


@register_method("kmeans-4bit", family="quantization", section="3.3.3",
                 description="k-means weight sharing, 16 centroids per matrix (Eq. 49): "
                             "codebook from the baseline, STE fine-tuning of the assignments, "
                             "centroids refreshed to cluster means")
def kmeans_4bit(ctx: TourContext) -> MethodResult:
    model = ctx.copy_baseline()
    km = _KMeansShared(model, 16)
    return quantize_and_finetune(ctx, km, "kmeans", 4,
                                 "4-bit indices + 16 float32 centroids per matrix",
                                 bake=km.bake, model=model)


@register_method("multibit-2bit", family="quantization", section="3.3.4",
                 description="alternating 2-bit multi-bit quantisation per row (Xu et al.), "
                             "STE fine-tuning (Eqs. 55–56)")
def multibit_2bit(ctx: TourContext) -> MethodResult:
    return quantize_and_finetune(ctx, lambda a, key: _multibit2(a), "multibit", 2,
                                 "2 sign planes + 2 float32 scales per row")
