"""Size accounting: hand counts, Han et al.'s worked numbers, a brute-force encoder, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import sizes


def brute_force_fillers(W, index_bits, per_row=True):
    """Walk the pattern like an encoder: emit a filler whenever the gap exceeds 2**index_bits."""
    W = np.asarray(W)
    rows = W.reshape(1, -1) if (W.ndim == 1 or not per_row) else W
    span = 2 ** index_bits
    fillers = 0
    for row in rows:
        last = -1  # the virtual entry before column 0
        for p in np.flatnonzero(row):
            while p - last > span:
                last += span  # a filler zero stored at column `last`
                fillers += 1
            last = p
    return fillers


def test_dense_bits():
    assert sizes.dense_bits(10) == 320
    assert sizes.dense_bits(10, bits=16) == 160
    assert sizes.dense_bits(0) == 0

    class M:
        def num_parameters(self):
            return 7

    assert sizes.dense_bits(M(), 8) == 56


def test_csr_bits_hand_count():
    # 3 stored values of 32+4 bits, 2 rows -> 3 pointers of 32 bits
    assert sizes.csr_bits(3, 2, 32, 4) == 3 * 36 + 3 * 32 == 204
    assert sizes.csr_bits(3, 2, 32, 4, n_fillers=2, pointer_bits=16) == 5 * 36 + 3 * 16
    assert sizes.csr_bits(0, 1, 8, 8) == 2 * 32  # empty matrix: just the pointers


def test_fillers_han_et_al_figure():
    # Deep Compression Fig. 2 style: 3-bit gaps (1..8 fit); entries at columns 1, 4, 15
    row = np.zeros(16)
    row[[1, 4, 15]] = [3.4, 0.9, 1.7]
    # gaps 2, 3, 11 -> only 11 > 8 needs one filler
    assert sizes.relative_index_fillers(row, 3) == 1
    assert sizes.csr_bits_of(row[None, :], 32, 3) == (3 + 1) * 35 + 2 * 32


@pytest.mark.parametrize("pos,fillers", [(0, 0), (7, 0), (8, 1), (15, 1), (16, 2), (24, 3)])
def test_fillers_at_the_span_boundary(pos, fillers):
    row = np.zeros(40)
    row[pos] = 1.0  # first gap is pos + 1; 3 bits fit gaps up to 8
    assert sizes.relative_index_fillers(row, 3) == fillers == brute_force_fillers(row, 3)


def test_per_row_versus_flattened():
    W = np.array([[1, 0, 0, 0], [0, 0, 0, 1]])
    # per row: gaps 1 | 4 -> (4-1)//2 = 1 filler; flattened: columns 0, 7 -> gaps 1, 7 -> 3
    assert sizes.relative_index_fillers(W, 1) == 1
    assert sizes.relative_index_fillers(W, 1, per_row=False) == 3
    assert sizes.relative_index_fillers(np.zeros((3, 5)), 1) == 0


@settings(max_examples=25, deadline=None)
@given(n_rows=st.integers(1, 6), n_cols=st.integers(1, 70), density=st.floats(0, 1),
       index_bits=st.integers(1, 5), seed=st.integers(0, 2**16), per_row=st.booleans())
def test_fillers_match_a_brute_force_encoder(n_rows, n_cols, density, index_bits, seed, per_row):
    rng = np.random.default_rng(seed)
    W = (rng.random((n_rows, n_cols)) < density) * rng.standard_normal((n_rows, n_cols))
    got = sizes.relative_index_fillers(W, index_bits, per_row=per_row)
    assert got == brute_force_fillers(W, index_bits, per_row=per_row)
    nnz = np.count_nonzero(W)
    assert sizes.csr_bits_of(W, 32, index_bits) == sizes.csr_bits(
        nnz, n_rows, 32, index_bits, n_fillers=sizes.relative_index_fillers(W, index_bits))


def test_codebook_bits_and_han_compression_rate():
    assert sizes.codebook_bits(100, 2) == 100 * 2 + 4 * 32
    assert sizes.codebook_bits(100, 2, codebook_size=3, value_bits=16) == 200 + 48
    # Deep Compression §3: a 4x4 matrix shared into 4 clusters compresses 16*32/(16*2+4*32)=3.2x
    r = sizes.compression_ratio(sizes.dense_bits(16), sizes.codebook_bits(16, 2))
    assert r == pytest.approx(3.2, abs=0, rel=1e-15)


def test_bits_per_weight_ratio_bytes_and_formatting():
    assert sizes.bits_per_weight(328, 100) == pytest.approx(3.28)
    assert sizes.compression_ratio(320, 10) == 32.0
    assert sizes.bits_to_bytes(0) == 0
    assert sizes.bits_to_bytes(8) == 1
    assert sizes.bits_to_bytes(9) == 2
    assert sizes.format_bytes(0) == "0 B"
    assert sizes.format_bytes(512) == "512 B"
    assert sizes.format_bytes(1536) == "1.50 KiB"
    assert sizes.format_bytes(3 * 1024**2) == "3.00 MiB"
    assert sizes.format_bytes(5 * 1024**3) == "5.00 GiB"


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="index_bits"):
        sizes.csr_bits(3, 2, 32, 0)
    with pytest.raises(ValueError, match="nnz"):
        sizes.csr_bits(-1, 2, 32, 4)
    with pytest.raises(ValueError, match="n_rows"):
        sizes.csr_bits(1, 0, 32, 4)
    with pytest.raises(TypeError, match="n_params"):
        sizes.dense_bits(2.5)
    with pytest.raises(ValueError, match="bits"):
        sizes.dense_bits(10, bits=0)
    with pytest.raises(ValueError, match="index_bits"):
        sizes.relative_index_fillers(np.ones(3), 0)
    with pytest.raises(ValueError, match="W contains NaN"):
        sizes.relative_index_fillers(np.array([1.0, np.nan]), 2)
    with pytest.raises(ValueError, match="W must have ndim"):
        sizes.csr_bits_of(np.ones(3), 32, 4)
    with pytest.raises(ValueError, match="codebook_size"):
        sizes.codebook_bits(10, 2, codebook_size=5)
    with pytest.raises(ValueError, match="compressed_bits"):
        sizes.compression_ratio(10, 0)
    with pytest.raises(ValueError, match="n_bytes"):
        sizes.format_bytes(-1)
    with pytest.raises(ValueError, match="n_params"):
        sizes.bits_per_weight(10, 0)
