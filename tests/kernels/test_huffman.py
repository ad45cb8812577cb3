"""Canonical Huffman coder (Survey §8.1, Deep Compression's third stage): hand values,
optimality against brute force and against bitarray, the entropy bound, exact round trips on
both backends, edge cases and bad input."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

from refimpl.kernels.huffman import (
    LENGTH_FIELD_BITS,
    HuffmanCode,
    canonical_codes,
    entropy_bits,
    huffman_code_lengths,
    huffman_decode,
    huffman_encode,
)


def _bitarray_util():
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        import bitarray.util as u  # fail loudly in CI
        return u
    return pytest.importorskip("bitarray.util")


# ------------------------------------------------------------------------- hand values
def test_hand_worked_lengths_and_codes():
    # 5, 2, 1, 1: merge 1+1 -> 2, then 2+2 -> 4, then 4+5: depths 1, 2, 3, 3
    L = huffman_code_lengths([5, 2, 1, 1])
    assert L.tolist() == [1, 2, 3, 3]
    # canonical: 0, 10, 110, 111
    assert canonical_codes(L).tolist() == [0b0, 0b10, 0b110, 0b111]
    # equal lengths are ordered by symbol; unused symbols get no code word
    assert canonical_codes([2, 0, 2, 1]).tolist() == [0b10, 0, 0b11, 0b0]


def test_hand_worked_stream_bits(backend):
    payload, n = huffman_encode([0, 3, 1, 0], [1, 2, 3, 3], backend=backend)
    # 0 | 111 | 10 | 0  ->  0111 1000 = 0x78, 7 bits
    assert n == 7 and payload.tolist() == [0b01111000]
    assert huffman_decode(payload, n, [1, 2, 3, 3], backend=backend).tolist() == [0, 3, 1, 0]


# ----------------------------------------------------------------- optimality and bound
def _brute_force_cost(f):
    """min Σ f_i l_i over all length vectors with Kraft Σ 2^-l <= 1 (lengths 1..n-1)."""
    used = [x for x in f if x > 0]
    n = len(used)
    if n <= 1:
        return sum(used)
    best = math.inf
    for ls in itertools.product(range(1, n), repeat=n):
        if sum(2.0 ** -x for x in ls) <= 1.0:
            best = min(best, sum(a * b for a, b in zip(used, ls)))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_lengths_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    f = rng.integers(0, 30, size=n)
    f[0] = max(f[0], 1)
    L = huffman_code_lengths(f)
    assert int((L * f).sum()) == _brute_force_cost(f.tolist())


@pytest.mark.parametrize("seed", range(6))
def test_lengths_optimal_against_bitarray(seed):
    util = _bitarray_util()
    rng = np.random.default_rng(seed)
    f = np.maximum(rng.geometric(0.05, size=200) * rng.integers(1, 5, size=200), 1)
    L = huffman_code_lengths(f)
    ref = util.huffman_code({i: int(x) for i, x in enumerate(f)})
    assert int((L * f).sum()) == sum(int(f[i]) * len(c) for i, c in ref.items())


def test_canonical_convention_matches_bitarray(backend):
    """Our stream decodes with bitarray's canonical decoder fed our count/symbol tables."""
    util = _bitarray_util()
    from bitarray import bitarray

    rng = np.random.default_rng(7)
    s = rng.geometric(0.2, size=3000) - 1
    hc = HuffmanCode.fit(s)
    payload, n = hc.encode(s, backend=backend)
    count = np.bincount(hc.lengths[hc.lengths > 0], minlength=hc.lengths.max() + 1)
    count[0] = 0
    order = np.lexsort((np.arange(hc.n_symbols), hc.lengths))
    symbol = [int(x) for x in order if hc.lengths[x] > 0]
    a = bitarray(endian="big")
    a.frombytes(payload.tobytes())
    got = list(util.canonical_decode(a[:n], count.tolist(), symbol))
    np.testing.assert_array_equal(got, s)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("kind", ["uniform", "geometric", "zipf", "skewed"])
def test_entropy_bound(seed, kind):
    rng = np.random.default_rng(seed)
    n_sym = int(rng.integers(2, 300))
    if kind == "uniform":
        f = rng.integers(1, 50, size=n_sym)
    elif kind == "geometric":
        f = np.bincount(rng.geometric(0.3, size=5000) - 1)
    elif kind == "zipf":
        f = np.bincount(np.minimum(rng.zipf(1.5, size=5000), 1000))
    else:  # one symbol takes almost everything
        f = np.ones(n_sym, dtype=np.int64)
        f[0] = 10**9
    hc = HuffmanCode(huffman_code_lengths(f), np.asarray(f, dtype=np.int64))
    H = entropy_bits(f)
    if np.count_nonzero(f) >= 2:
        # H <= L < H + 1; the slack 1e-12 only absorbs rounding of H (a sum of ~300 logs)
        assert H - 1e-12 <= hc.mean_length < H + 1 + 1e-12
    assert hc.stream_bits == int((hc.freqs * hc.lengths).sum())


def test_dyadic_distribution_meets_entropy_exactly():
    f = np.array([8, 4, 2, 1, 1])  # p = 1/2, 1/4, 1/8, 1/16, 1/16
    hc = HuffmanCode(huffman_code_lengths(f), f)
    assert hc.lengths.tolist() == [1, 2, 3, 4, 4]
    assert hc.mean_length == entropy_bits(f) == 15 / 8


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("seed", range(4))
def test_round_trip_random_streams(backend, seed):
    rng = np.random.default_rng(seed)
    s = rng.geometric(0.1 + 0.2 * seed, size=int(rng.integers(1, 20000))) - 1
    s_copy = s.copy()
    hc = HuffmanCode.fit(s)
    payload, n = hc.encode(s, backend=backend)
    assert n == hc.stream_bits and payload.size == -(-n // 8)
    np.testing.assert_array_equal(hc.decode(payload, n, backend=backend), s)
    np.testing.assert_array_equal(s, s_copy)  # input not modified


def test_backends_give_identical_payloads():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 37, size=5000) ** 2 % 37
    hc = HuffmanCode.fit(s)
    p1, n1 = hc.encode(s, backend="numba")
    p2, n2 = hc.encode(s, backend="numpy")
    assert n1 == n2
    np.testing.assert_array_equal(p1, p2)


def test_bytes_payload_and_padding_ignored(backend):
    hc = HuffmanCode.fit([0, 1, 1, 2, 2, 2])
    payload, n = hc.encode([2, 1, 0], backend=backend)
    padded = payload.tobytes() + b"\xff"
    assert hc.decode(padded, n, backend=backend).tolist() == [2, 1, 0]


# ---------------------------------------------------------------------------- edge cases
def test_empty(backend):
    assert huffman_code_lengths([]).tolist() == []
    assert huffman_code_lengths([0, 0]).tolist() == [0, 0]
    payload, n = huffman_encode(np.array([], dtype=np.int64), [0, 0], backend=backend)
    assert n == 0 and payload.size == 0
    assert huffman_decode(payload, 0, [0, 0], backend=backend).size == 0
    hc = HuffmanCode.fit([], n_symbols=3)
    assert hc.bits == 3 * LENGTH_FIELD_BITS and hc.mean_length == 0.0 and hc.entropy == 0.0


def test_one_symbol(backend):
    L = huffman_code_lengths([0, 7, 0])
    assert L.tolist() == [0, 1, 0]  # H = 0 but a code word needs a bit
    payload, n = huffman_encode([1] * 7, L, backend=backend)
    assert n == 7 and payload.tolist() == [0]
    assert huffman_decode(payload, n, L, backend=backend).tolist() == [1] * 7


def test_two_to_the_sixteen_symbols(backend):
    V = 1 << 16
    assert set(huffman_code_lengths(np.full(V, 3)).tolist()) == {16}  # uniform: 16 bits each
    rng = np.random.default_rng(1)
    s = rng.integers(0, V, size=200000)
    hc = HuffmanCode.fit(s, n_symbols=V)
    H = hc.entropy
    assert H <= hc.mean_length < H + 1
    payload, n = hc.encode(s, backend=backend)
    np.testing.assert_array_equal(hc.decode(payload, n, backend=backend), s)


def test_code_too_deep_is_refused():
    fib = [1, 1]
    while len(fib) < 70:
        fib.append(fib[-1] + fib[-2])
    with pytest.raises(ValueError, match="MAX_CODE_LENGTH"):
        huffman_code_lengths(fib)
    assert huffman_code_lengths(fib[:40]).max() == 39  # Fibonacci weights: a path-shaped tree


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("freqs, err, match", [
    ([[1, 2]], ValueError, "1-D"),
    ([1, -1], ValueError, "non-negative"),
    ([1.5, 2], ValueError, "whole numbers"),
    ([np.nan, 1], ValueError, "finite"),
    ([True, False], TypeError, "integer counts"),
    ([1 + 1j], TypeError, "integer counts"),
])
def test_bad_freqs(freqs, err, match):
    with pytest.raises(err, match=match):
        huffman_code_lengths(np.asarray(freqs))


def test_bad_lengths_and_streams(backend):
    with pytest.raises(ValueError, match="Kraft"):
        canonical_codes([1, 1, 1])
    with pytest.raises(ValueError, match=r"\[0, 63\]"):
        canonical_codes([64, 1])
    with pytest.raises(ValueError, match="no code word"):
        huffman_encode([2], [1, 1, 0], backend=backend)
    with pytest.raises(ValueError, match="symbols must lie"):
        huffman_encode([3], [1, 1, 0], backend=backend)
    with pytest.raises(TypeError, match="symbols must be integers"):
        huffman_encode([0.5], [1, 1], backend=backend)
    payload, n = huffman_encode([0, 2, 2], [1, 2, 2], backend=backend)
    with pytest.raises(ValueError, match="inside a code word"):
        huffman_decode(payload, n - 1, [1, 2, 2], backend=backend)
    with pytest.raises(ValueError, match="n_bits"):
        huffman_decode(payload, 9, [1, 2, 2], backend=backend)
    # an incomplete code (Kraft < 1): the unused code word 11 matches nothing
    with pytest.raises(ValueError, match="not a stream of this code"):
        huffman_decode(np.array([0xFF] * 9, np.uint8), 72, [1, 2, 0], backend=backend)
