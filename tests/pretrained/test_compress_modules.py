"""The kernel-backed inference modules chapter 9 stores compressed weights in: CSRLinear (§2.1.2),
PackedLinear / PackedEmbedding (§3.1–§3.3), scalar k-means (§3.3.3) — kernel path vs the dense
reference of the same stored weights, exact bit counts by hand, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.nn import Embedding, Linear
from refimpl.pruning.sparse_linear import CSRLinear
from refimpl.quantization.kmeans import lloyd_kmeans
from refimpl.quantization.packed_linear import (PackedEmbedding, PackedLinear, quantize_rows,
                                                scalar_kmeans)

EPS32 = np.finfo(np.float32).eps


def _linear(n_in, n_out, seed=0, dtype=np.float64):
    lin = Linear(n_in, n_out, rng=seed)
    lin.W.data = lin.W.data.astype(dtype)
    lin.b.data = lin.b.data.astype(dtype)
    return lin


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csr_linear_equals_dense_reference(backend, dtype):
    rng = np.random.default_rng(1)
    lin = _linear(37, 23, dtype=dtype)
    mask = rng.random(lin.W.shape) < 0.3
    layer = CSRLinear.from_linear(lin, mask, backend=backend)
    X = rng.standard_normal((2, 5, 37)).astype(dtype)
    ref = X @ np.where(mask, lin.W.data, 0).T + lin.b.data  # dense, same stored weights
    got = layer(X).data
    assert got.shape == (2, 5, 23) and got.dtype == dtype
    # a sum of 37 products: forward error ≤ 37 ε Σ|x||w| (Higham, Thm 3.5)
    bound = 37 * np.finfo(dtype).eps * (np.abs(X) @ np.abs(lin.W.data).T + np.abs(lin.b.data))
    assert np.all(np.abs(got - ref) <= bound)
    assert layer.nnz == int(mask.sum())
    np.testing.assert_array_equal(layer.weight(), np.where(mask, lin.W.data, 0))


def test_csr_linear_bits_by_hand_and_input_unchanged():
    lin = _linear(6, 4, dtype=np.float32)
    W0 = lin.W.data.copy()
    mask = np.zeros((4, 6), dtype=bool)
    mask[0, :3] = mask[2, 1] = mask[3, [0, 5, 2]] = True  # 7 kept
    layer = CSRLinear.from_linear(lin, mask)
    # 7 float32 values + 7 uint16 columns + 5 int64 row pointers + 4 float32 biases
    assert layer.stored_bits() == 7 * 32 + 7 * 16 + 5 * 64 + 4 * 32
    np.testing.assert_array_equal(lin.W.data, W0)
    with pytest.raises(ValueError, match="mask"):
        CSRLinear.from_linear(lin, np.ones((3, 6), dtype=bool))
    with pytest.raises(ValueError, match="last dimension 6"):
        layer(np.ones((2, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="CSRMatrix"):
        CSRLinear(np.ones((2, 2)))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("scheme,bits", [("uniform", 8), ("uniform", 4), ("kmeans", 4),
                                         ("kmeans", 3), ("binary", None), ("ternary", None)])
def test_packed_linear_equals_dense_reference(scheme, bits, backend):
    rng = np.random.default_rng(2)
    lin = _linear(70, 19, seed=3)
    layer = PackedLinear.quantize(lin, scheme, bits, backend=backend)
    X = rng.standard_normal((3, 4, 70))
    W_hat = layer.weight()
    ref = X @ W_hat.T + lin.b.data
    got = layer(X).data
    # the kernel computes (x c[code]ᵀ) s + (Σx) o: both parts are 70-term sums
    parts = np.abs(X) @ np.abs(layer.codebook[layer.codes()]).T
    if layer.row_scale is not None:
        parts = parts * np.abs(layer.row_scale)
    if layer.row_offset is not None:
        parts = parts + np.abs(X).sum(-1, keepdims=True) * np.abs(layer.row_offset)
    bound = 80 * np.finfo(np.float64).eps * (parts + np.abs(X) @ np.abs(W_hat).T + 1)
    assert np.all(np.abs(got - ref) <= bound)
    n_levels = len(np.unique(W_hat[0]))
    assert n_levels <= 2 ** layer.bits


def test_packed_linear_quantisers_match_their_chapter_functions():
    from refimpl.quantization.binary import bwn
    from refimpl.quantization.ternary import twn
    from refimpl.quantization.uniform import quantize_uniform

    lin = _linear(50, 7, seed=4)
    W = lin.W.data
    u = PackedLinear.uniform(lin, 4).weight()
    np.testing.assert_allclose(u, np.stack([quantize_uniform(r, 4) for r in W]), atol=1e-12)
    alpha, B = bwn(W, axis=1)
    np.testing.assert_allclose(PackedLinear.binary(lin).weight(), alpha * B, atol=1e-15)
    t = np.stack([(lambda a, T, d: a * T)(*twn(r)) for r in W])
    np.testing.assert_allclose(PackedLinear.ternary(lin).weight(), t, atol=1e-15)


def test_packed_linear_bits_by_hand():
    lin = _linear(70, 3, dtype=np.float32)
    # uniform 4-bit: 16 codes per uint64 → ⌈70/16⌉ = 5 words per row; α/(2^k−1), β, bias
    assert PackedLinear.uniform(lin, 4).stored_bits() == 3 * 5 * 64 + 3 * 32 * 3
    # binary: ⌈70/64⌉ = 2 words per row, codebook {−1, +1}, α per row, bias
    assert PackedLinear.binary(lin).stored_bits() == 3 * 2 * 64 + 2 * 32 + 3 * 32 + 3 * 32
    # ternary: 2 bits, 32 codes per word → 3 words per row, codebook {0, 1, −1}
    assert PackedLinear.ternary(lin).stored_bits() == 3 * 3 * 64 + 3 * 32 + 3 * 32 + 3 * 32
    # k-means 3 bits: 21 codes per word → 4 words per row, 8 centroids, bias
    assert PackedLinear.kmeans(lin, 3).stored_bits() == 3 * 4 * 64 + 8 * 32 + 3 * 32


def test_packed_embedding_lookup():
    emb = Embedding(40, 12, rng=0)
    emb.W.data = emb.W.data.astype(np.float32)
    W0 = emb.W.data.copy()
    pe = PackedEmbedding.from_embedding(emb, "uniform", 8)
    idx = np.array([[0, 5, 39], [7, 7, 1]])
    got = pe(idx).data
    assert got.dtype == np.float32 and got.shape == (2, 3, 12)
    # float32 s·c + o: two roundings of terms bounded by |s c| + |o|
    scale = (np.abs(pe.row_scale[:, None] * pe.codebook[pe.codes()])
             + np.abs(pe.row_offset[:, None]))
    assert np.all(np.abs(got - pe.weight()[idx]) <= 2 * EPS32 * scale[idx])
    # 8-bit affine codes per row: error ≤ half a step (α/255)/2 per entry
    step = (W0.max(1) - W0.min(1)) / 255
    assert np.all(np.abs(pe.weight() - W0) <= step[:, None] / 2 * (1 + 1e-5) + 1e-6)
    np.testing.assert_array_equal(emb.W.data, W0)
    assert pe.stored_bits() == 40 * 2 * 64 + 40 * 32 * 2  # 8 codes per word: 2 words per row
    with pytest.raises(ValueError, match="idx"):
        pe(np.array([40]))
    with pytest.raises(TypeError, match="idx"):
        pe(np.array([0.5]))


def test_scalar_kmeans_matches_lloyd():
    w = np.random.default_rng(5).standard_normal(3000)
    C, lab = scalar_kmeans(w, 16, max_iter=1000)
    C2, lab2, _ = lloyd_kmeans(w, 16, init="linear", tol=0.0, max_iter=1000)
    order = np.argsort(C2.ravel())
    np.testing.assert_allclose(C, C2.ravel()[order], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(lab, np.argsort(order)[lab2])
    # hand case: two clusters
    C, lab = scalar_kmeans(np.array([0.0, 0.1, 0.9, 1.0]), 2)
    np.testing.assert_allclose(C, [0.05, 0.95])
    np.testing.assert_array_equal(lab, [0, 0, 1, 1])


def test_quantize_rows_bad_input():
    W = np.ones((3, 4))
    with pytest.raises(ValueError, match="scheme"):
        quantize_rows(W, "fp8", 8)
    with pytest.raises(ValueError, match="bits"):
        quantize_rows(W, "uniform")
    with pytest.raises(ValueError, match="bits"):
        quantize_rows(W, "uniform", 0)
    with pytest.raises(ValueError, match="W"):
        quantize_rows(np.ones(4), "binary")
    with pytest.raises(ValueError, match="k"):
        scalar_kmeans(np.ones(3), 4)
