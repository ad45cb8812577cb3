"""A from-scratch reader and writer of the *safetensors* format, in NumPy, that never unpickles.

The format (Hugging Face, https://github.com/huggingface/safetensors) is::

    [8 bytes: N, unsigned little-endian]  [N bytes: UTF-8 JSON header]  [byte buffer]

The header maps each tensor name to ``{"dtype": "F32", "shape": [..], "data_offsets": [b, e]}``
with ``b, e`` relative to the start of the byte buffer (little-endian, C order), plus an optional
``"__metadata__"`` mapping of str to str. Nothing in the file is executed: unlike a PyTorch
``.bin`` checkpoint (a pickle), reading it cannot run code.

:func:`load_safetensors` checks everything the format promises before it returns a single
array, so a bad file gives one clear :class:`SafetensorsError` and nothing half-loaded:

* the header length fits in the file, the header is a JSON object of the right fields;
* every dtype is known (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL); every shape is a
  list of non-negative ints and ``prod(shape) · itemsize == e − b``;
* ``0 ≤ b ≤ e ≤`` buffer size (a truncated file fails here), and no two ranges overlap;
* optionally the file's SHA-256 (:func:`sha256_file`) equals an expected digest.

BF16 (bfloat16, the top 16 bits of a float32) has no NumPy dtype; it is widened to float32
exactly (``uint16 << 16``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from typing import Iterable, Mapping

import numpy as np

__all__ = ["SafetensorsError", "DTYPES", "read_safetensors_header", "load_safetensors",
           "save_safetensors", "sha256_file"]

#: safetensors dtype code -> NumPy dtype of the stored bytes (little-endian).
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 on load
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_CODES = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
          np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16",
          np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}

#: Largest header accepted (the reference implementation's limit: 100 MB).
MAX_HEADER_BYTES = 100_000_000


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file (named in the message), or a failed check."""


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _fail(path, msg):
    raise SafetensorsError(f"{os.fspath(path)}: not a valid safetensors file: {msg}")


def _parse_header(path, head: bytes, file_size: int):
    """Validate the header; returns ``(entries, metadata, data_start)`` with entries
    ``{name: (code, shape, begin, end)}`` in header order."""
    if file_size < 8 or len(head) < 8:
        _fail(path, f"{file_size} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER_BYTES:
        _fail(path, f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if 8 + n > file_size:
        _fail(path, f"header length {n} runs past the end of the file ({file_size} bytes); "
                    f"the file is truncated or not safetensors")
    raw = head[8:8 + n]
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(path, f"header is not UTF-8 JSON ({e})")
    if not isinstance(header, dict):
        _fail(path, f"header must be a JSON object, got {type(header).__name__}")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(k, str) and isinstance(v, str)
                                         for k, v in meta.items())):
        _fail(path, "__metadata__ must map str to str")
    data_start = 8 + n
    buf_size = file_size - data_start
    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            _fail(path, f"tensor {name!r}: entry must have exactly dtype, shape and "
                        f"data_offsets, got {info!r}")
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if code not in DTYPES:
            _fail(path, f"tensor {name!r}: unsupported dtype {code!r} (known: "
                        f"{', '.join(DTYPES)})")
        if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
            _fail(path, f"tensor {name!r}: shape must be a list of non-negative integers, "
                        f"got {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2
                and all(type(o) is int and o >= 0 for o in offs)):
            _fail(path, f"tensor {name!r}: data_offsets must be two non-negative integers, "
                        f"got {offs!r}")
        b, e = offs
        if b > e:
            _fail(path, f"tensor {name!r}: data_offsets [{b}, {e}] are reversed")
        want = math.prod(shape) * DTYPES[code].itemsize
        if e - b != want:
            _fail(path, f"tensor {name!r}: shape {shape} of {code} needs {want} bytes, "
                        f"data_offsets [{b}, {e}] hold {e - b}")
        if e > buf_size:
            _fail(path, f"tensor {name!r}: data_offsets [{b}, {e}] run past the end of the "
                        f"data ({buf_size} bytes); the file is truncated")
        entries[name] = (code, tuple(shape), b, e)
    spans = sorted((b, e, name) for name, (_, _, b, e) in entries.items() if e > b)
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            _fail(path, f"tensors {n0!r} [{b0}, {e0}] and {n1!r} [{b1}, {e1}] overlap")
    return entries, (meta or {}), data_start


def read_safetensors_header(path) -> tuple[dict, dict]:
    """The validated header of a safetensors file, without reading the tensors.

    Returns
    -------
    tensors : dict of str to (dtype code, shape tuple)
        In header order.
    metadata : dict of str to str
        The ``__metadata__`` entry (empty if absent).

    Raises
    ------
    SafetensorsError
        Any violation listed in the module docstring (except the SHA-256).
    FileNotFoundError
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) == 8:
            (n,) = struct.unpack("<Q", head)
            head += f.read(min(n, MAX_HEADER_BYTES + 1))
    entries, meta, _ = _parse_header(path, head, size)
    return {k: (c, s) for k, (c, s, _, _) in entries.items()}, meta


def load_safetensors(path, *, names: Iterable[str] | None = None,
                     expected_sha256: str | None = None) -> dict[str, np.ndarray]:
    """Read tensors from a safetensors file into new, writable NumPy arrays.

    Parameters
    ----------
    path : str or os.PathLike
    names : iterable of str, optional
        Only these tensors (``KeyError`` listing the missing ones if any is absent); default
        all.
    expected_sha256 : str, optional
        Hex digest the whole file must have (checked on the bytes read, before parsing).

    Returns
    -------
    dict of str to ndarray
        In header order; float tensors keep their dtype (F16 as float16, BF16 widened to
        float32), integers and bools theirs.

    Raises
    ------
    SafetensorsError
        Malformed, truncated or corrupt file, or a SHA-256 mismatch.
    KeyError
        A requested name is not in the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    if expected_sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != expected_sha256.lower():
            raise SafetensorsError(f"{os.fspath(path)}: SHA-256 {got} does not match the "
                                   f"expected {expected_sha256} (corrupt or a different file)")
    entries, _, start = _parse_header(path, data, len(data))
    if names is not None:
        names = list(names)
        missing = [k for k in names if k not in entries]
        if missing:
            raise KeyError(f"{os.fspath(path)}: tensors {missing} are not in the file "
                           f"(it has {len(entries)} tensors)")
        entries = {k: entries[k] for k in names}
    out = {}
    for name, (code, shape, b, _) in entries.items():
        raw = np.frombuffer(data, dtype=DTYPES[code], count=math.prod(shape),
                            offset=start + b).reshape(shape)
        if code == "BF16":
            arr = (raw.astype(np.uint32) << 16).view(np.float32)  # exact widening
        else:
            arr = raw.astype(raw.dtype.newbyteorder("="), copy=True)
        out[name] = arr
    return out


def save_safetensors(tensors: Mapping[str, np.ndarray], path,
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write arrays to a safetensors file (header sorted by name, contiguous data, 8-byte
    aligned header, as the reference writer does).

    Parameters
    ----------
    tensors : mapping of str to ndarray
        float64/32/16, int64/32/16/8, uint8 or bool arrays.
    path : str or os.PathLike
    metadata : mapping of str to str, optional
    """
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name -> array, got "
                        f"{type(tensors).__name__}")
    header: dict = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name in sorted(tensors):
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"tensor names must be str other than '__metadata__', got {name!r}")
        arr = np.asarray(tensors[name])
        code = _CODES.get(arr.dtype)
        if code is None:
            raise TypeError(f"tensors[{name!r}] has dtype {arr.dtype}, not one of "
                            f"{sorted(str(d) for d in _CODES)}")
        raw = np.ascontiguousarray(arr, dtype=DTYPES[code]).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for raw in blobs:
            f.write(raw)
