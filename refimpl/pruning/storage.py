"""CSR storage with relative (delta) column indices in a fixed number of bits (Survey §2.1.2).

Han et al. store a pruned matrix in CSR form but, instead of each non-zero's absolute column,
keep the *gap* to the previous stored entry of the row, in ``index_bits`` bits. A gap that does
not fit is bridged with *filler zeros*: stored entries of value 0 placed every
``2**index_bits`` columns. :func:`encode_delta_csr` builds the encoding, :meth:`DeltaCSR.pack`
writes it to an actual bit stream whose length is the exact bit count, and
:func:`decode_delta_csr` reads it back (a lossless round trip).

Conventions (the same as :mod:`refimpl.sizes`): the first entry of a row at 0-based
column ``p`` has gap ``p + 1``; an entry's gap ``d ∈ [1, 2**index_bits]`` is stored as ``d - 1``;
a gap ``d`` costs ``ceil(d / 2**index_bits)`` entries. Each entry stores ``value_bits`` of
value and ``index_bits`` of gap; the ``n_rows + 1`` row pointers cost ``pointer_bits`` each.

References
----------
.. [1] S. Han, H. Mao, W. J. Dally, "Deep Compression: Compressing Deep Neural Networks with
   Pruning, Trained Quantization and Huffman Coding", ICLR 2016 (§2, Fig. 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refimpl.utils import check_array, check_int, validate_arrays, validate_scalars

__all__ = ["DeltaCSR", "encode_delta_csr", "decode_delta_csr"]


@dataclass(frozen=True, eq=False)
class DeltaCSR:
    """A matrix in CSR form with relative column indices (Han et al.).

    Attributes
    ----------
    values : ndarray of shape (n_entries,)
        Stored values, filler zeros included.
    gaps : ndarray of shape (n_entries,), uint32
        ``d - 1`` for each entry's gap ``d`` (fits in ``index_bits`` bits).
    indptr : ndarray of shape (n_rows + 1,), int64
        Row ``i``'s entries are ``values[indptr[i]:indptr[i+1]]``.
    shape : tuple of int
    index_bits : int
    nnz : int
        Stored non-zeros (entries that are not fillers).

    Notes
    -----
    Survey §2.1.2.

    References
    ----------
    .. [1] S. Han, H. Mao, W. J. Dally, "Deep Compression: Compressing Deep Neural Networks with
       Pruning, Trained Quantization and Huffman Coding", ICLR 2016.
    """

    values: np.ndarray
    gaps: np.ndarray
    indptr: np.ndarray
    shape: tuple
    index_bits: int
    nnz: int

    @property
    def n_entries(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_fillers(self) -> int:
        """Filler zeros added for gaps longer than ``2**index_bits``."""
        return self.n_entries - self.nnz

    def bits(self, value_bits: int = 32, pointer_bits: int = 32) -> int:
        """Exact storage: ``n_entries (value_bits + index_bits) + (n_rows + 1) pointer_bits``."""
        value_bits = check_int(value_bits, "value_bits", 1, 64)
        pointer_bits = check_int(pointer_bits, "pointer_bits", 1, 64)
        return (self.n_entries * (value_bits + self.index_bits)
                + (self.shape[0] + 1) * pointer_bits)

    def to_dense(self) -> np.ndarray:
        """The dense matrix, ndarray of shape ``shape``."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        for i in range(self.shape[0]):
            lo, hi = self.indptr[i], self.indptr[i + 1]
            cols = np.cumsum(self.gaps[lo:hi].astype(np.int64) + 1) - 1  # absolute columns
            out[i, cols] += self.values[lo:hi]
        return out

    def columns(self) -> np.ndarray:
        """Absolute column of every stored entry (fillers included), shape (n_entries,)."""
        cols = np.empty(self.n_entries, dtype=np.int64)
        for i in range(self.shape[0]):
            lo, hi = self.indptr[i], self.indptr[i + 1]
            cols[lo:hi] = np.cumsum(self.gaps[lo:hi].astype(np.int64) + 1) - 1
        return cols

    def to_csr(self):
        """Decode to a :class:`refimpl.kernels.sparse.CSRMatrix` (fillers dropped) for the
        SpMV / SpMM kernels."""
        from refimpl.kernels.sparse import CSRMatrix

        keep = self.values != 0  # (n_entries,)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))  # (n_entries,)
        counts = np.bincount(rows[keep], minlength=self.shape[0])  # non-zeros per row
        indptr = np.zeros(self.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        data = self.values[keep]
        if data.dtype not in (np.float32, np.float64):
            data = data.astype(np.float64)
        return CSRMatrix(indptr, self.columns()[keep].astype(np.uint32), data, self.shape)

    def pack(self, pointer_bits: int = 32) -> tuple[bytes, int]:
        """Serialise to a bit stream: row pointers, then per entry (float32 value, gap).

        Values are stored as IEEE float32 (32 bits). Returns ``(payload, n_bits)`` where
        ``n_bits == self.bits(32, pointer_bits)`` exactly and ``payload`` holds
        ``ceil(n_bits / 8)`` bytes (the last byte zero-padded).
        """
        pointer_bits = check_int(pointer_bits, "pointer_bits", 1, 64)
        if self.indptr[-1] >= (1 << pointer_bits):
            raise ValueError(f"pointer_bits={pointer_bits} is too small for "
                             f"{self.indptr[-1]} entries")
        ptr_bits = _int_bits(self.indptr.astype(np.uint64), pointer_bits)  # (n_rows+1, pb)
        v = self.values.astype(np.float32).view(np.uint32).astype(np.uint64)
        val_bits = _int_bits(v, 32)  # (n_entries, 32)
        gap_bits = _int_bits(self.gaps.astype(np.uint64), self.index_bits)  # (n_entries, ib)
        entries = np.concatenate([val_bits, gap_bits], axis=1).ravel()
        stream = np.concatenate([ptr_bits.ravel(), entries]).astype(np.uint8)
        return np.packbits(stream).tobytes(), int(stream.size)


def _int_bits(x: np.ndarray, width: int) -> np.ndarray:
    """Big-endian binary digits of non-negative integers, shape ``(len(x), width)``."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    return ((x[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)


def _bits_int(b: np.ndarray) -> np.ndarray:
    width = b.shape[1]
    weights = (np.uint64(1) << np.arange(width - 1, -1, -1, dtype=np.uint64))
    return (b.astype(np.uint64) * weights[None, :]).sum(axis=1, dtype=np.uint64)


@validate_scalars
def encode_delta_csr(W, index_bits: int) -> DeltaCSR:
    """Encode ``W`` as CSR with ``index_bits``-bit relative indices and filler zeros.

    Parameters
    ----------
    W : ndarray of shape (n_rows, n_cols)
        A (pruned) matrix; its non-zeros are stored.
    index_bits : int
        Bits per relative index, in ``[1, 31]``.

    Returns
    -------
    DeltaCSR

    Notes
    -----
    Survey §2.1.2.

    References
    ----------
    .. [1] S. Han, H. Mao, W. J. Dally, "Deep Compression: Compressing Deep Neural Networks
       with Pruning, Trained Quantization and Huffman Coding", ICLR 2016.

    Examples
    --------
    A row with non-zeros at columns 1 and 12 and ``index_bits=3`` (gaps up to 8): the gap 11
    to column 12 needs one filler at column 9:

    >>> import numpy as np
    >>> W = np.zeros((1, 16)); W[0, 1] = 1.0; W[0, 12] = 2.0
    >>> enc = encode_delta_csr(W, 3)
    >>> enc.values.tolist(), (enc.gaps + 1).tolist(), enc.n_fillers
    ([1.0, 0.0, 2.0], [2, 8, 3], 1)
    """
    W = check_array(W, "W", ndim=2)
    index_bits = check_int(index_bits, "index_bits", 1, 31)
    span = 1 << index_bits
    values, gaps, indptr = [], [], [0]
    for row in W:
        prev = -1
        for p in np.flatnonzero(row):
            d = int(p) - prev
            while d > span:  # filler zero every `span` columns
                values.append(0.0)
                gaps.append(span - 1)
                d -= span
            values.append(row[p])
            gaps.append(d - 1)
            prev = int(p)
        indptr.append(len(values))
    return DeltaCSR(np.asarray(values, dtype=W.dtype), np.asarray(gaps, dtype=np.uint32),
                    np.asarray(indptr, dtype=np.int64), (int(W.shape[0]), int(W.shape[1])),
                    index_bits, int(np.count_nonzero(W)))


@validate_scalars
@validate_arrays(shape={"kind": "dims"})
def decode_delta_csr(payload: bytes, n_bits: int, shape: tuple, index_bits: int,
                     pointer_bits: int = 32) -> np.ndarray:
    """Read a :meth:`DeltaCSR.pack` bit stream back into a dense float32 matrix.

    Parameters
    ----------
    payload : bytes
    n_bits : int
        The exact stream length returned by ``pack``.
    shape : tuple of int
        ``(n_rows, n_cols)``.
    index_bits, pointer_bits : int

    Returns
    -------
    ndarray of shape ``shape``, float32

    Notes
    -----
    Survey §2.1.2.

    References
    ----------
    .. [1] S. Han, H. Mao, W. J. Dally, "Deep Compression: Compressing Deep Neural Networks with
       Pruning, Trained Quantization and Huffman Coding", ICLR 2016.
    """
    n_rows, n_cols = (check_int(s, "shape", 1) for s in shape)
    index_bits = check_int(index_bits, "index_bits", 1, 31)
    pointer_bits = check_int(pointer_bits, "pointer_bits", 1, 64)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes (from DeltaCSR.pack), got {type(payload).__name__}")
    n_bits = check_int(n_bits, "n_bits", 1, 8 * len(payload))
    stream = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[:n_bits]
    n_ptr = (n_rows + 1) * pointer_bits
    indptr = _bits_int(stream[:n_ptr].reshape(n_rows + 1, pointer_bits)).astype(np.int64)
    width = 32 + index_bits
    ent = stream[n_ptr:]
    if ent.size % width or ent.size // width != indptr[-1]:
        raise ValueError("n_bits does not match shape/index_bits/pointer_bits")
    ent = ent.reshape(-1, width)
    vals = _bits_int(ent[:, :32]).astype(np.uint32).view(np.float32)
    gaps = _bits_int(ent[:, 32:]).astype(np.int64)
    out = np.zeros((n_rows, n_cols), dtype=np.float32)
    for i in range(n_rows):
        lo, hi = indptr[i], indptr[i + 1]
        cols = np.cumsum(gaps[lo:hi] + 1) - 1
        out[i, cols] += vals[lo:hi]
    return out
