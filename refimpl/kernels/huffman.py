r"""Canonical Huffman coding, from scratch (Survey §8.1 and §2.1.2: the third stage of Deep
Compression, Han et al. 2016).

Deep Compression stores a pruned, weight-shared layer as three streams — the k-bit codebook
indices of the surviving weights, the relative (delta) column indices, and the codebook — and
Huffman-codes the first two, because their distributions are far from uniform (Han et al.
report 20–30 % fewer bits). This module is that coder:

* :func:`huffman_code_lengths` — optimal code lengths from symbol frequencies (Huffman 1952:
  repeatedly merge the two lightest subtrees, a binary heap, ties broken by a running counter
  so the result is deterministic);
* :func:`canonical_codes` — the canonical code with those lengths (shorter codes first,
  symbols of equal length in increasing order; the DEFLATE convention, RFC 1951 §3.2.2), so the
  decoder needs only the lengths, never the tree;
* :func:`huffman_encode` / :func:`huffman_decode` — a symbol stream to a packed bit stream
  (MSB first within each byte) and back; Numba kernels beside pure-NumPy/Python references
  (``backend="numba" | "numpy"``);
* :class:`HuffmanCode` bundles the three and counts the stored bits exactly:
  the stream's bits plus the code-length table (one :data:`LENGTH_FIELD_BITS`-bit length per
  alphabet symbol).

Bounds (Shannon 1948; Cover & Thomas Thm. 5.4.1 and 5.8.1). With ``p_i = f_i / N`` the empirical
distribution of the stream, ``H = -Σ p_i log2 p_i`` and ``L̄ = Σ p_i l_i`` the mean code length,

.. math:: H \le \bar L < H + 1,

and no prefix code has a smaller ``Σ f_i l_i``. The one exception is an alphabet with a single
used symbol: ``H = 0`` but a code word needs one bit (``L̄ = 1``); this module gives it length 1
so the stream stays self-delimiting.

Code lengths are capped at :data:`MAX_CODE_LENGTH` = 63 bits (a 64-bit register holds any code
word and the length fits in the 6-bit table field). Frequencies whose optimal code is deeper —
possible only when the total count exceeds about φ^63 ≈ 1.6e13, e.g. Fibonacci frequencies —
are refused with a ValueError.

References
----------
.. [1] D. A. Huffman, "A method for the construction of minimum-redundancy codes", Proc. IRE
   40(9), 1952.
.. [2] E. S. Schwartz, B. Kallick, "Generating a canonical prefix encoding", CACM 7(3), 1964.
.. [3] P. Deutsch, "DEFLATE Compressed Data Format Specification version 1.3", RFC 1951, 1996
   (§3.2.2, canonical codes from lengths).
.. [4] S. Han, H. Mao, W. J. Dally, "Deep Compression: Compressing Deep Neural Networks with
   Pruning, Trained Quantization and Huffman Coding", ICLR 2016 (§4).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numba
import numpy as np

from refimpl.kernels._backend import dispatch
from refimpl.utils import check_int

__all__ = ["MAX_CODE_LENGTH", "LENGTH_FIELD_BITS", "huffman_code_lengths", "canonical_codes",
           "huffman_encode", "huffman_decode", "entropy_bits", "HuffmanCode"]

#: Longest code word allowed (bits).
MAX_CODE_LENGTH = 63
#: Bits per entry of the stored code-length table (lengths 0..63).
LENGTH_FIELD_BITS = 6


# ----------------------------------------------------------------------------- validation
def _check_freqs(freqs) -> np.ndarray:
    f = np.asarray(freqs)
    if f.ndim != 1:
        raise ValueError(f"freqs must be a 1-D array of counts, got shape {f.shape}")
    if f.dtype.kind == "b" or f.dtype.kind not in "iuf":
        raise TypeError(f"freqs must be non-negative integer counts, got dtype {f.dtype}")
    if f.dtype.kind == "f":
        if not np.all(np.isfinite(f)) or np.any(f != np.floor(f)):
            raise ValueError("freqs must be finite whole numbers (counts)")
    if np.any(f < 0):
        raise ValueError(f"freqs must be non-negative counts, got minimum {f.min()}")
    return f.astype(np.int64)


def _check_lengths(lengths) -> np.ndarray:
    L = np.asarray(lengths)
    if L.ndim != 1 or L.dtype.kind not in "iu":
        raise TypeError(f"lengths must be a 1-D integer array, got shape {L.shape}, dtype "
                        f"{L.dtype}")
    if L.size and (L.min() < 0 or L.max() > MAX_CODE_LENGTH):
        raise ValueError(f"lengths must lie in [0, {MAX_CODE_LENGTH}], got "
                         f"[{L.min()}, {L.max()}]")
    L = L.astype(np.int64)
    # Kraft: Σ 2^-l ≤ 1 for a prefix code (exact in integers at the deepest level)
    used = L[L > 0]
    if used.size:
        m = int(used.max())
        kraft = sum(1 << (m - int(v)) for v in used)
        if kraft > (1 << m):
            raise ValueError(f"lengths violate the Kraft inequality (Σ 2^-l = "
                             f"{kraft / (1 << m):.6g} > 1): no prefix code has them")
    return L


def _check_symbols(symbols, n_symbols: int) -> np.ndarray:
    s = np.asarray(symbols)
    if s.ndim != 1:
        raise ValueError(f"symbols must be a 1-D array, got shape {s.shape}")
    if s.size == 0:
        return s.astype(np.int64)
    if s.dtype.kind not in "iu" or s.dtype.kind == "b":
        raise TypeError(f"symbols must be integers, got dtype {s.dtype}")
    if s.min() < 0 or s.max() >= n_symbols:
        raise ValueError(f"symbols must lie in [0, {n_symbols}), got [{s.min()}, {s.max()}]")
    return s.astype(np.int64)


# ------------------------------------------------------------------------ code lengths
def huffman_code_lengths(freqs) -> np.ndarray:
    """Optimal prefix-code lengths for symbol counts ``freqs`` (Huffman's algorithm).

    Parameters
    ----------
    freqs : array_like of shape (n_symbols,)
        Non-negative counts; symbol ``i`` occurs ``freqs[i]`` times.

    Returns
    -------
    lengths : ndarray of shape (n_symbols,), int64
        Code length of each symbol in bits; 0 for symbols that never occur. A single used
        symbol gets length 1; no used symbol (or ``n_symbols = 0``) gives all zeros.

    Notes
    -----
    Huffman's greedy merge: keep the subtrees in a binary heap keyed by (weight, creation
    order); pop the two lightest, push their union; a symbol's length is its depth in the
    final tree. ``Σ f_i l_i`` is minimal over all prefix codes, and the mean length lies in
    ``[H, H + 1)`` (module docstring). Survey §8.1 / §2.1.2 (Deep Compression's third stage).

    References
    ----------
    .. [1] D. A. Huffman, "A method for the construction of minimum-redundancy codes", 1952.

    Examples
    --------
    >>> huffman_code_lengths([5, 2, 1, 1]).tolist()
    [1, 2, 3, 3]
    """
    f = _check_freqs(freqs)
    n = f.size
    lengths = np.zeros(n, dtype=np.int64)
    used = np.flatnonzero(f)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used[0]] = 1
        return lengths
    # nodes 0..n_used-1 are leaves; parent[k] of every node, built bottom-up
    parent = np.full(2 * used.size - 1, -1, dtype=np.int64)
    heap = [(int(f[s]), k, k) for k, s in enumerate(used)]  # (weight, tie, node)
    heapq.heapify(heap)
    nxt, tie = used.size, used.size
    while len(heap) > 1:
        w1, _, a = heapq.heappop(heap)
        w2, _, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        heapq.heappush(heap, (w1 + w2, tie, nxt))
        nxt += 1
        tie += 1
    # depth of each node: parents have larger ids, so walk ids downwards from the root
    depth = np.zeros(parent.size, dtype=np.int64)
    for k in range(parent.size - 2, -1, -1):
        depth[k] = depth[parent[k]] + 1
    lengths[used] = depth[:used.size]
    if lengths.max() > MAX_CODE_LENGTH:
        raise ValueError(f"freqs need a code word of {int(lengths.max())} bits, more than "
                         f"MAX_CODE_LENGTH = {MAX_CODE_LENGTH} (total count "
                         f"{int(f.sum())}); merge rare symbols first")
    return lengths


def canonical_codes(lengths) -> np.ndarray:
    """The canonical prefix code with the given lengths (RFC 1951 §3.2.2).

    Symbols are ordered by (length, symbol); the first gets the all-zero code word, each next
    one ``(previous + 1) << (its length - previous length)``.

    Parameters
    ----------
    lengths : array_like of int, shape (n_symbols,)
        Code lengths in ``[0, 63]`` (0: the symbol has no code word), satisfying Kraft's
        inequality ``Σ 2^-l ≤ 1``.

    Returns
    -------
    codes : ndarray of shape (n_symbols,), uint64
        Code word of symbol ``i`` in the low ``lengths[i]`` bits (0 where the length is 0).

    Notes
    -----
    Survey §8.1 / §2.1.2 (Deep Compression stores only the lengths).

    References
    ----------
    .. [1] E. S. Schwartz, B. Kallick, "Generating a canonical prefix encoding", CACM 1964.

    Examples
    --------
    >>> canonical_codes([1, 2, 3, 3]).tolist()
    [0, 2, 6, 7]
    """
    L = _check_lengths(lengths)
    codes = np.zeros(L.size, dtype=np.uint64)
    order = np.lexsort((np.arange(L.size), L))  # by length, then symbol
    order = order[L[order] > 0]
    code, prev = 0, 0
    for k, s in enumerate(order):
        ln = int(L[s])
        if k:
            code = (code + 1) << (ln - prev)
        else:
            code = 0
        codes[s] = code
        prev = ln
    return codes


def _decode_tables(L: np.ndarray):
    """Canonical decoding tables: per length ``l``: ``first[l]`` (first code), ``count[l]``,
    ``offset[l]`` (index into ``sorted_symbols``); and the symbols in canonical order."""
    count = np.bincount(L[L > 0], minlength=MAX_CODE_LENGTH + 1).astype(np.int64)
    count[0] = 0
    first = np.zeros(MAX_CODE_LENGTH + 2, dtype=np.int64)
    offset = np.zeros(MAX_CODE_LENGTH + 2, dtype=np.int64)
    code = 0
    top = int(L.max()) if L.size else 0
    for ln in range(1, MAX_CODE_LENGTH + 1):
        offset[ln + 1] = offset[ln] + count[ln]
        if ln <= top:  # beyond the longest length count is 0 and first stays 0 (no match)
            code = (code + int(count[ln - 1])) << 1 if ln > 1 else 0
            first[ln] = code
    order = np.lexsort((np.arange(L.size), L))
    sorted_symbols = order[L[order] > 0].astype(np.int64)
    return first, count, offset, sorted_symbols


# -------------------------------------------------------------------------------- encode
def _encode_numpy(symbols, lengths, codes, n_bits):
    """Reference: the bits of every code word scattered into a 0/1 array, then packed."""
    Ls = lengths[symbols]  # (n,)
    Cs = codes[symbols]  # (n,) uint64
    starts = np.cumsum(Ls) - Ls  # first bit of each code word
    bits = np.zeros(n_bits, dtype=np.uint8)
    for b in range(int(Ls.max()) if Ls.size else 0):  # bit b of each code word, MSB first
        sel = Ls > b
        shift = (Ls[sel] - 1 - b).astype(np.uint64)
        bits[starts[sel] + b] = ((Cs[sel] >> shift) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits)


@numba.njit(cache=True)
def _encode_numba(symbols, lengths, codes, n_bits):
    out = np.zeros((n_bits + 7) // 8, dtype=np.uint8)
    pos = 0
    for k in range(symbols.size):
        s = symbols[k]
        ln = lengths[s]
        c = codes[s]
        for b in range(ln):
            bit = (c >> np.uint64(ln - 1 - b)) & np.uint64(1)
            if bit:
                out[pos >> 3] |= np.uint8(128 >> (pos & 7))
            pos += 1
    return out


def huffman_encode(symbols, lengths, backend: str | None = None) -> tuple[np.ndarray, int]:
    """Encode a symbol stream with the canonical code of ``lengths``.

    Parameters
    ----------
    symbols : array_like of int, shape (n,)
        The stream; every symbol must have a code word (``lengths[s] > 0``).
    lengths : array_like of int, shape (n_symbols,)
        Code lengths (e.g. from :func:`huffman_code_lengths`).
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    payload : ndarray of shape (ceil(n_bits / 8),), uint8
        The code words back to back, most significant bit first, the last byte zero-padded.
    n_bits : int
        ``Σ lengths[symbols]``, the exact stream length.

    Notes
    -----
    Survey §8.1 / §2.1.2 (Deep Compression, Han et al. 2016, §4).
    """
    L = _check_lengths(lengths)
    s = _check_symbols(symbols, L.size)
    if s.size and np.any(L[s] == 0):
        bad = int(s[np.flatnonzero(L[s] == 0)[0]])
        raise ValueError(f"symbols contains {bad}, which has no code word (lengths[{bad}] = 0)")
    codes = canonical_codes(L)
    n_bits = int(L[s].sum())
    payload = dispatch("huffman_encode", backend, _encode_numba, _encode_numpy, s, L, codes,
                       n_bits)
    return payload, n_bits


# -------------------------------------------------------------------------------- decode
def _decode_numpy(payload, n_bits, first, count, offset, sorted_symbols):
    """Reference: read one bit at a time; after ``l`` bits the code word is complete when
    ``code - first[l] < count[l]`` (canonical codes of one length are consecutive)."""
    bits = np.unpackbits(payload)[:n_bits]
    out = []
    code, ln = 0, 0
    for b in bits.tolist():
        code = (code << 1) | b
        ln += 1
        if ln > MAX_CODE_LENGTH:
            raise ValueError("payload is not a stream of this code (no code word matched)")
        if code - first[ln] < count[ln]:
            out.append(sorted_symbols[offset[ln] + code - first[ln]])
            code, ln = 0, 0
    if ln:
        raise ValueError("payload ends inside a code word (n_bits does not match the stream)")
    return np.asarray(out, dtype=np.int64)


@numba.njit(cache=True)
def _decode_numba_core(payload, n_bits, first, count, offset, sorted_symbols):
    out = np.empty(n_bits, dtype=np.int64)  # at most one symbol per bit
    n_out = 0
    code = 0
    ln = 0
    for pos in range(n_bits):
        bit = (payload[pos >> 3] >> (7 - (pos & 7))) & 1
        code = (code << 1) | bit
        ln += 1
        if ln > 63:
            return out[:0], -1
        if code - first[ln] < count[ln]:
            out[n_out] = sorted_symbols[offset[ln] + code - first[ln]]
            n_out += 1
            code = 0
            ln = 0
    if ln:
        return out[:0], -2
    return out[:n_out], 0


def _decode_numba(payload, n_bits, first, count, offset, sorted_symbols):
    out, status = _decode_numba_core(payload, n_bits, first, count, offset, sorted_symbols)
    if status == -1:
        raise ValueError("payload is not a stream of this code (no code word matched)")
    if status == -2:
        raise ValueError("payload ends inside a code word (n_bits does not match the stream)")
    return out


def huffman_decode(payload, n_bits: int, lengths, backend: str | None = None) -> np.ndarray:
    """Decode a :func:`huffman_encode` bit stream back into symbols (exact inverse).

    Parameters
    ----------
    payload : bytes or ndarray of uint8
    n_bits : int
        The exact stream length (padding bits after it are ignored).
    lengths : array_like of int, shape (n_symbols,)
        The code lengths the stream was encoded with.
    backend : {"numba", "numpy"}, optional

    Returns
    -------
    symbols : ndarray of shape (n,), int64

    Notes
    -----
    Canonical decoding needs only, per length ``l``, the first code word and the number of
    code words (RFC 1951 §3.2.2); no tree is built. Survey §8.1 / §2.1.2.
    """
    L = _check_lengths(lengths)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        payload = np.frombuffer(payload, dtype=np.uint8)
    payload = np.asarray(payload)
    if payload.ndim != 1 or payload.dtype != np.uint8:
        raise TypeError(f"payload must be bytes or a 1-D uint8 array, got dtype "
                        f"{payload.dtype}, shape {payload.shape}")
    n_bits = check_int(n_bits, "n_bits", 0, 8 * payload.size)
    if n_bits and not np.any(L):
        raise ValueError("lengths has no code word but n_bits > 0")
    first, count, offset, sorted_symbols = _decode_tables(L)
    return dispatch("huffman_decode", backend, _decode_numba, _decode_numpy,
                    np.ascontiguousarray(payload), n_bits, first, count, offset,
                    sorted_symbols)


# ----------------------------------------------------------------------------- accounting
def entropy_bits(freqs) -> float:
    """Shannon entropy ``H = -Σ p_i log2 p_i`` (bits per symbol) of the counts ``freqs``.

    Notes
    -----
    The lower bound on the mean length of any prefix code (module docstring). Survey §8.1.
    """
    f = _check_freqs(freqs)
    n = f.sum()
    if n == 0:
        return 0.0
    p = f[f > 0] / n
    return float(-(p * np.log2(p)).sum())


@dataclass(frozen=True)
class HuffmanCode:
    """A canonical Huffman code fitted to a symbol stream, with exact bit accounting.

    Attributes
    ----------
    lengths : ndarray of shape (n_symbols,), int64
        Code length per alphabet symbol (0: unused).
    freqs : ndarray of shape (n_symbols,), int64
        The counts the code was built from.

    Notes
    -----
    Stored size of a stream of ``N`` symbols: ``Σ f_i l_i`` bits of code words plus the table,
    ``n_symbols × LENGTH_FIELD_BITS`` bits (canonical codes need only the lengths). Survey §8.1,
    Deep Compression's Huffman stage (Han et al. 2016, §4).

    Examples
    --------
    >>> hc = HuffmanCode.fit([0, 0, 0, 1, 2, 0], n_symbols=4)
    >>> hc.lengths.tolist(), hc.stream_bits, hc.table_bits
    ([1, 2, 2, 0], 8, 24)
    """

    lengths: np.ndarray
    freqs: np.ndarray

    @classmethod
    def fit(cls, symbols, n_symbols: int | None = None) -> "HuffmanCode":
        """The code of the stream ``symbols`` over the alphabet ``0 .. n_symbols - 1``
        (default: ``max(symbols) + 1``)."""
        s = np.asarray(symbols)
        if n_symbols is None:
            n_symbols = int(s.max()) + 1 if s.size else 0
        n_symbols = check_int(n_symbols, "n_symbols", 0)
        s = _check_symbols(s, max(n_symbols, 1))
        freqs = np.bincount(s, minlength=n_symbols).astype(np.int64)
        return cls(huffman_code_lengths(freqs), freqs)

    @property
    def n_symbols(self) -> int:
        return int(self.lengths.size)

    @property
    def stream_bits(self) -> int:
        """Bits of the encoded stream, ``Σ f_i l_i``."""
        return int((self.freqs * self.lengths).sum())

    @property
    def table_bits(self) -> int:
        """Bits of the stored code-length table, ``n_symbols × LENGTH_FIELD_BITS``."""
        return self.n_symbols * LENGTH_FIELD_BITS

    @property
    def bits(self) -> int:
        """Total stored bits: stream + table."""
        return self.stream_bits + self.table_bits

    @property
    def mean_length(self) -> float:
        """``L̄ = Σ f_i l_i / Σ f_i`` (0 for an empty stream)."""
        n = int(self.freqs.sum())
        return self.stream_bits / n if n else 0.0

    @property
    def entropy(self) -> float:
        return entropy_bits(self.freqs)

    def codes(self) -> np.ndarray:
        """The canonical code words, ndarray of shape (n_symbols,), uint64."""
        return canonical_codes(self.lengths)

    def encode(self, symbols, backend: str | None = None) -> tuple[np.ndarray, int]:
        return huffman_encode(symbols, self.lengths, backend=backend)

    def decode(self, payload, n_bits: int, backend: str | None = None) -> np.ndarray:
        return huffman_decode(payload, n_bits, self.lengths, backend=backend)

