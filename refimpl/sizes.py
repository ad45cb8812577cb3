"""Exact size accounting for compressed models (Survey §8 comparisons; §2.1.2, §3.3 formats).

Every row of ``refimpl tour`` reports the exact storage of a model in bits. These helpers do the
arithmetic once, the same way for every method:

* :func:`dense_bits` — ``n_params * bits`` (float32: 32 bits per parameter);
* :func:`csr_bits` — CSR with *relative* (delta) column indices of a fixed bit-width and the
  filler zeros they need (Han et al. 2015/2016, "Deep Compression", §2 / Fig. 2);
* :func:`relative_index_fillers` — the exact number of those filler zeros for a given sparsity
  pattern; :func:`csr_bits_of` puts both together for an actual matrix;
* :func:`codebook_bits` — weight sharing / k-means quantisation: one ``bits``-wide index per
  weight plus a codebook of ``2**bits`` values (Han et al., Eq. for the compression rate);
* :func:`bits_per_weight`, :func:`compression_ratio`, :func:`format_bytes`.

**Relative-index encoding** (Han et al. [1]_ [2]_). Instead of each non-zero's column, store the *gap* ``d >= 1`` to the previous non-zero of the
row (the first non-zero of a row at 0-based column ``p`` has gap ``p + 1``), as ``d - 1`` in
``index_bits`` bits, so gaps ``1 .. 2**index_bits`` fit. A longer gap is bridged with filler
zeros — stored entries of value 0 placed every ``2**index_bits`` columns — so a gap ``d`` costs
``ceil(d / 2**index_bits)`` entries, i.e. ``(d - 1) // 2**index_bits`` fillers. Each entry
(non-zero or filler) stores ``value_bits + index_bits`` bits; the ``n_rows + 1`` row pointers
cost ``pointer_bits`` each (Han et al.'s "2a + n + 1 numbers").

This module only counts; the encoder itself lives with pruning (``refimpl.pruning``), whose
tests can cross-check their bit counts against these.

References
----------
.. [1] S. Han, H. Mao, W. J. Dally, "Deep Compression: Compressing Deep Neural Networks with
   Pruning, Trained Quantization and Huffman Coding", ICLR 2016.
.. [2] S. Han, J. Pool, J. Tran, W. J. Dally, "Learning both Weights and Connections for
   Efficient Neural Networks", NeurIPS 2015.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from refimpl.utils import check_array, check_int

__all__ = ["dense_bits", "csr_bits", "relative_index_fillers", "csr_bits_of", "codebook_bits",
           "bits_per_weight", "compression_ratio", "bits_to_bytes", "format_bytes"]


def _count(value, name: str) -> int:
    return check_int(value, name, 0)


def dense_bits(n_params, bits: int = 32) -> int:
    """Storage of ``n_params`` dense parameters at ``bits`` bits each.

    Parameters
    ----------
    n_params : int or object with ``num_parameters()``
        A parameter count, or a :class:`refimpl.nn.Module`.
    bits : int, default 32
        Bits per parameter (32 for float32, 16 for float16).

    Returns
    -------
    int
        ``n_params * bits``.
    """
    if hasattr(n_params, "num_parameters"):
        n_params = int(n_params.num_parameters())
    n = _count(n_params, "n_params")
    return n * check_int(bits, "bits", 1, 64)


def csr_bits(nnz: int, n_rows: int, value_bits: int, index_bits: int, *, n_fillers: int = 0,
             pointer_bits: int = 32) -> int:
    """Bits of a CSR matrix with relative (delta) column indices (Han et al.).

    Parameters
    ----------
    nnz : int
        Stored non-zeros.
    n_rows : int
        Rows (the matrix has ``n_rows + 1`` row pointers).
    value_bits : int
        Bits per stored value (32 for float32; fewer after quantisation).
    index_bits : int
        Bits per relative index.
    n_fillers : int, default 0
        Filler zeros needed for gaps longer than ``2**index_bits`` (see
        :func:`relative_index_fillers`).
    pointer_bits : int, default 32
        Bits per row pointer.

    Returns
    -------
    int
        ``(nnz + n_fillers) * (value_bits + index_bits) + (n_rows + 1) * pointer_bits``.
    """
    nnz = _count(nnz, "nnz")
    n_rows = check_int(n_rows, "n_rows", 1)
    value_bits = check_int(value_bits, "value_bits", 1, 64)
    index_bits = check_int(index_bits, "index_bits", 1, 64)
    n_fillers = _count(n_fillers, "n_fillers")
    pointer_bits = check_int(pointer_bits, "pointer_bits", 1, 64)
    return (nnz + n_fillers) * (value_bits + index_bits) + (n_rows + 1) * pointer_bits


def relative_index_fillers(W, index_bits: int, *, per_row: bool = True) -> int:
    """Number of filler zeros relative-index encoding needs for the pattern of ``W``.

    Parameters
    ----------
    W : array_like of shape (n_rows, n_cols) or (n,)
        Weights or a mask: non-zero entries are stored.
    index_bits : int
        Bits per relative index; gaps ``1 .. 2**index_bits`` fit in one entry.
    per_row : bool, default True
        Gaps restart at every row (CSR). ``False`` encodes the flattened (row-major) array as one
        sequence, as Han et al. do for a whole layer.

    Returns
    -------
    int
        ``sum over gaps d of (d - 1) // 2**index_bits``.
    """
    W = check_array(W, "W", ndim=(1, 2), dtype_kind="fiub")
    index_bits = check_int(index_bits, "index_bits", 1, 62)
    span = 1 << index_bits
    rows = W.reshape(1, -1) if (W.ndim == 1 or not per_row) else W  # (rows, cols)
    total = 0
    for row in rows:
        pos = np.flatnonzero(row)  # 0-based columns of the stored entries
        if pos.size == 0:
            continue
        gaps = np.diff(pos, prepend=-1)  # first gap is p + 1
        total += int(((gaps - 1) // span).sum())
    return total


def csr_bits_of(W, value_bits: int, index_bits: int, *, pointer_bits: int = 32) -> int:
    """Exact :func:`csr_bits` of the matrix ``W`` (non-zeros, rows and fillers counted from it)."""
    W = check_array(W, "W", ndim=2, dtype_kind="fiub")
    fillers = relative_index_fillers(W, index_bits, per_row=True)
    return csr_bits(int(np.count_nonzero(W)), W.shape[0], value_bits, index_bits,
                    n_fillers=fillers, pointer_bits=pointer_bits)


def codebook_bits(n_weights: int, bits: int, *, codebook_size: int | None = None,
                  value_bits: int = 32) -> int:
    """Bits of weight sharing with a codebook: an index per weight plus the codebook.

    Han et al.'s compression rate ``r = n b / (n log2 k + k b)`` has this as its denominator
    (``n`` weights, ``k = 2**bits`` shared values stored at ``b = value_bits`` bits).

    Parameters
    ----------
    n_weights : int
    bits : int
        Bits per weight index (``log2 k``).
    codebook_size : int, optional
        Number of codebook entries; default ``2**bits``. Must fit in ``bits`` bits.
    value_bits : int, default 32
        Bits per codebook value.
    """
    n_weights = _count(n_weights, "n_weights")
    bits = check_int(bits, "bits", 1, 32)
    k = (1 << bits) if codebook_size is None else check_int(codebook_size, "codebook_size", 1,
                                                             1 << bits)
    return n_weights * bits + k * check_int(value_bits, "value_bits", 1, 64)


def bits_per_weight(total_bits, n_params) -> float:
    """Average storage per original parameter, ``total_bits / n_params``."""
    n_params = check_int(n_params, "n_params", 1)
    if isinstance(total_bits, bool) or not isinstance(total_bits, numbers.Real) or total_bits < 0:
        raise ValueError(f"total_bits must be a non-negative number, got {total_bits!r}")
    return float(total_bits) / n_params


def compression_ratio(original_bits, compressed_bits) -> float:
    """``original_bits / compressed_bits`` (e.g. 32 for float32 → 1 bit per weight)."""
    for name, v in (("original_bits", original_bits), ("compressed_bits", compressed_bits)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
            raise ValueError(f"{name} must be a positive number, got {v!r}")
    return float(original_bits) / float(compressed_bits)


def bits_to_bytes(bits) -> int:
    """Whole bytes needed for ``bits`` bits, ``ceil(bits / 8)``."""
    bits = _count(bits, "bits")
    return math.ceil(bits / 8)


def format_bytes(n_bytes) -> str:
    """Human-readable size in binary units: ``"512 B"``, ``"1.50 KiB"``, ``"3.20 MiB"``."""
    if isinstance(n_bytes, bool) or not isinstance(n_bytes, numbers.Real) or n_bytes < 0 \
            or not math.isfinite(n_bytes):
        raise ValueError(f"n_bytes must be a non-negative number, got {n_bytes!r}")
    if n_bytes < 1024:
        return f"{n_bytes:.0f} B" if float(n_bytes).is_integer() else f"{n_bytes:.1f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n_bytes /= 1024
        if n_bytes < 1024 or unit == "TiB":
            return f"{n_bytes:.2f} {unit}"
    raise AssertionError("unreachable")
