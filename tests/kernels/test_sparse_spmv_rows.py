"""The vector SpMV row kernel (``sparse._spmv_row``, issue #19): bit for bit against a NumPy
twin of its documented summation order, for uint16 and uint32 column indices, every row length
around the 16-value step, both float dtypes, serial and threaded drivers."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from refimpl.kernels import record_calls
from refimpl.kernels import sparse as S
from refimpl.kernels.sparse import CSRMatrix, csr_matvec


def _fma(a, b, c, dtype):
    """``a * b + c`` computed exactly (Python fractions) and rounded once to ``dtype``, to
    nearest with ties to even (the nearest of the float32 candidates around the float64
    rounding, compared exactly, so no double rounding)."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    f = np.float64(float(exact))
    if dtype == np.float64:
        return f
    r = np.float32(f)
    cands = [np.nextafter(r, np.float32(-np.inf)), r, np.nextafter(r, np.float32(np.inf))]
    dist = [abs(Fraction(float(t)) - exact) for t in cands]
    best = min(dist)
    ties = [t for t, d in zip(cands, dist) if d == best]
    return min(ties, key=lambda t: int(np.float32(t).view(np.uint32)) & 1)


def _row_twin(vals, xs, dtype):
    """The documented order: lane l takes positions 16 q + l (full steps), float64's two
    8-lane accumulators are added, lanes are added pairwise (l, l + h) halving h, then the
    tail is fused-multiply-added one by one."""
    step = S._SPMV_STEP
    lanes = 16 if dtype == np.float32 else 8
    chains = step // lanes
    n = len(vals)
    full = n // step * step
    acc = np.zeros((chains, lanes), dtype=dtype)
    for q in range(0, full, step):
        for c in range(chains):
            for lane in range(lanes):
                k = q + c * lanes + lane
                acc[c, lane] = _fma(vals[k], xs[k], acc[c, lane], dtype)
    v = acc[0]
    for c in range(1, chains):
        v = (v + acc[c]).astype(dtype)
    while v.size > 1:
        h = v.size // 2
        v = (v[:h] + v[h:]).astype(dtype)
    s = dtype(v[0])
    for k in range(full, n):
        s = _fma(vals[k], xs[k], s, dtype)
    return s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_cols", [300, (1 << 16) + 5])  # uint16 and uint32 indices
def test_spmv_rows_bit_exact_against_the_order_twin(dtype, n_cols):
    rng = np.random.default_rng(n_cols)
    lengths = list(range(0, 50)) + [63, 64, 65, 200]
    indptr = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    nnz = int(indptr[-1])
    # random (not integer) values: every rounding shows, so the order must match exactly
    indices = np.concatenate([np.sort(rng.choice(n_cols, m, replace=False)) for m in lengths])
    data = rng.standard_normal(nnz).astype(dtype)
    x = rng.standard_normal(n_cols).astype(dtype)
    A = CSRMatrix(indptr, indices, data, (len(lengths), n_cols))
    assert A.indices.dtype == (np.uint16 if n_cols <= 1 << 16 else np.uint32)
    want = np.array([_row_twin(data[indptr[i]:indptr[i + 1]], x[indices[indptr[i]:indptr[i + 1]]],
                               dtype) for i in range(len(lengths))], dtype=dtype)
    for gather in (False, True):  # x by scalar loads and inserts, or by one gather
        y_ser = np.zeros(len(lengths), dtype)
        y_par = np.zeros(len(lengths), dtype)
        S._csr_matvec_serial(S._uindptr(A), A.indices, A.data, x, y_ser, gather)
        S._csr_matvec_threaded(S._uindptr(A), A.indices, A.data, x, y_par,
                               S._row_blocks(A, 32), gather)
        np.testing.assert_array_equal(y_ser, want)
        np.testing.assert_array_equal(y_par, want)
    with record_calls() as log:
        np.testing.assert_array_equal(csr_matvec(A, x, backend="numba"), want)
    assert log == [("csr_matvec", "numba")]
    np.testing.assert_array_equal(csr_matvec(A, x), want)  # the compiled front, when filed
    # and within the rounding bound of the exact product (the NumPy backend is the reference)
    ref = csr_matvec(A, x.astype(np.float64), backend="numpy")
    u = 2.0 ** -24 if dtype == np.float32 else 2.0 ** -53
    bound = (max(lengths) + 2) * u * csr_matvec(
        CSRMatrix(indptr, indices, np.abs(data).astype(np.float64), A.shape), np.abs(x),
        backend="numpy")
    assert np.all(np.abs(want.astype(np.float64) - ref) <= bound)


def test_twin_differs_from_a_plain_left_to_right_sum():
    """The twin is not vacuous: on random float32 rows of 200 values its order gives a
    different float than a left-to-right sum for some rows."""
    rng = np.random.default_rng(1)
    differs = 0
    for _ in range(20):
        v = rng.standard_normal(200).astype(np.float32)
        xs = rng.standard_normal(200).astype(np.float32)
        s = np.float32(0)
        for a, b in zip(v, xs):
            s = _fma(a, b, s, np.float32)
        differs += _row_twin(v, xs, np.float32) != s
    assert differs > 0
