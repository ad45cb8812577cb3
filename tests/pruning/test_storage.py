"""Tests for refimpl.pruning.storage (CSR with relative indices, Survey §2.1.2)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.sizes import csr_bits_of, relative_index_fillers
from refimpl.pruning.storage import decode_delta_csr, encode_delta_csr
from refimpl.pruning.weights import magnitude_prune


def test_hand_example_han_fig2():
    # Han et al. Fig. 2 style: 3-bit gaps, a gap of 11 needs one filler
    W = np.zeros((1, 16))
    W[0, 1], W[0, 12] = 1.0, 2.0
    enc = encode_delta_csr(W, 3)
    assert enc.values.tolist() == [1.0, 0.0, 2.0]
    assert (enc.gaps + 1).tolist() == [2, 8, 3]
    assert enc.n_fillers == 1 and enc.nnz == 2
    assert enc.bits(32, 32) == 3 * 35 + 2 * 32


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), s=st.floats(0, 0.98), bits=st.integers(1, 6),
       rows=st.integers(1, 5), cols=st.integers(1, 70))
def test_round_trip_and_exact_bit_count(seed, s, bits, rows, cols):
    W = np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32)
    W, _ = magnitude_prune(W, s)
    enc = encode_delta_csr(W, bits)
    assert np.array_equal(enc.to_dense(), W)
    payload, n_bits = enc.pack()
    assert n_bits == enc.bits(32, 32) == csr_bits_of(W, 32, bits)
    assert len(payload) == -(-n_bits // 8)
    assert enc.n_fillers == relative_index_fillers(W, bits)
    assert np.array_equal(decode_delta_csr(payload, n_bits, W.shape, bits), W)
    assert np.all(enc.gaps < (1 << bits))


def test_matches_scipy_csr(rng):
    import scipy.sparse as sp

    W, _ = magnitude_prune(rng.normal(size=(8, 30)), 0.8)
    enc = encode_delta_csr(W, 8)  # wide enough: no fillers
    S = sp.csr_matrix(W)
    assert enc.n_fillers == 0
    assert np.array_equal(enc.indptr, S.indptr)
    assert np.array_equal(enc.values, S.data)
    cols = np.concatenate([np.cumsum(enc.gaps[a:b].astype(int) + 1) - 1
                           for a, b in zip(enc.indptr[:-1], enc.indptr[1:])])
    assert np.array_equal(cols, S.indices)


def test_bad_input():
    with pytest.raises(ValueError, match="index_bits"):
        encode_delta_csr(np.eye(3), 0)
    with pytest.raises(ValueError, match="W contains NaN"):
        encode_delta_csr(np.array([[np.nan, 1.0]]), 3)
    with pytest.raises(ValueError, match="W must have ndim"):
        encode_delta_csr(np.ones(3), 3)


@pytest.mark.parametrize("bits", [2, 5])
def test_to_csr_feeds_the_spmv_kernel(rng, bits):
    from refimpl.kernels.sparse import csr_matvec

    W, _ = magnitude_prune(rng.normal(size=(7, 90)), 0.9)
    W[3] = 0.0  # empty rows, one of them last
    W[6] = 0.0
    enc = encode_delta_csr(W, bits)
    A = enc.to_csr()
    assert A.nnz == np.count_nonzero(W)
    assert np.array_equal(A.to_dense(), W)
    x = rng.normal(size=90)
    assert np.allclose(csr_matvec(A, x), W @ x, atol=1e-12)
