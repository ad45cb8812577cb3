"""Module state: ``state_dict`` / ``load_state_dict`` (atomic, checked, PyTorch-like result) and
state files (``save`` / ``load``: the ``.npz`` suffix rule, clear errors for bad files)."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from refimpl.nn import Linear, Module
from refimpl.nn.module import LoadResult, load_state_dict_file, save_state_dict, state_file_path


class Net(Module):
    def __init__(self, seed=0):
        self.a = Linear(3, 4, rng=seed)
        self.b = Linear(4, 2, rng=seed + 1)


def _params(m):
    return {k: p.data.copy() for k, p in m.named_parameters()}


def _assert_params(m, expected):
    got = _params(m)
    assert list(got) == list(expected)
    for k in got:
        assert got[k].dtype == expected[k].dtype
        np.testing.assert_array_equal(got[k], expected[k])


# ----------------------------------------------------------------------- round trip, suffix
@pytest.mark.parametrize("name", ["model", "model.npz", "dir.v2/model"])
def test_save_then_load_with_the_same_path_round_trips(tmp_path, name):
    (tmp_path / "dir.v2").mkdir()
    src, dst = Net(0), Net(7)
    path = str(tmp_path / name)
    src.save(path)
    written = path if path.endswith(".npz") else path + ".npz"  # numpy.savez's rule
    assert sorted(p.name for p in (tmp_path / name).parent.iterdir() if p.is_file()) == \
        [written.rsplit("/", 1)[1]]
    assert state_file_path(path) == written
    assert dst.load(path) == LoadResult([], [])
    _assert_params(dst, _params(src))
    dst2 = Net(8)
    dst2.load(tmp_path / name)  # a pathlib.Path works the same
    _assert_params(dst2, _params(src))


def test_load_reads_a_suffixless_file_that_exists_and_file_objects(tmp_path):
    src = Net(0)
    buf = io.BytesIO()
    save_state_dict(src.state_dict(), buf)  # file objects: no suffix rule
    raw = tmp_path / "weights"  # an npz archive without the suffix (written by hand)
    raw.write_bytes(buf.getvalue())
    dst = Net(3)
    dst.load(raw)
    _assert_params(dst, _params(src))
    buf.seek(0)
    dst = Net(4)
    dst.load(buf)
    _assert_params(dst, _params(src))


def test_missing_file_names_both_candidates(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz.*nope'"):
        Net().load(tmp_path / "nope")


# ------------------------------------------------------------------------------ bad files
def _bad_files(tmp_path, good: bytes):
    yield "truncated", good[: len(good) // 2]
    yield "empty", b""
    yield "text", b"hello, I am not an archive\n"
    yield "pickle", pickle.dumps({"a.W": [1, 2, 3]})
    npy = io.BytesIO()
    np.save(npy, np.ones(3))
    yield "npy", npy.getvalue()
    obj = io.BytesIO()
    np.savez(obj, **{"a.W": np.array([{"x": 1}], dtype=object)})  # pickled inside the zip
    yield "object", obj.getvalue()
    zb = io.BytesIO()
    with zipfile.ZipFile(zb, "w") as z:
        z.writestr("a.W.npy", b"\x93NUMPY garbage")
    yield "corrupt member", zb.getvalue()


def test_a_file_that_is_not_a_state_file_is_a_clear_value_error(tmp_path):
    good_path = tmp_path / "good.npz"
    Net(0).save(good_path)
    good = good_path.read_bytes()
    for label, data in _bad_files(tmp_path, good):
        path = tmp_path / f"bad_{label.replace(' ', '_')}.npz"
        path.write_bytes(data)
        m = Net(5)
        before = _params(m)
        with pytest.raises(ValueError) as ei:
            m.load(path)
        msg = str(ei.value)
        assert msg.startswith(f"{str(path)!r} is not a valid refimpl state file"), (label, msg)
        _assert_params(m, before)  # nothing loaded


# ------------------------------------------------------------------ load_state_dict checks
def test_load_is_atomic_a_bad_last_key_changes_nothing():
    m = Net(0)
    before = _params(m)
    state = Net(9).state_dict()
    keys = list(state)
    state[keys[-1]] = np.zeros((5, 5))  # the last key is bad; the earlier ones are fine
    with pytest.raises(ValueError, match=rf"state_dict\['{keys[-1]}'\] has shape \(5, 5\)"):
        m.load_state_dict(state)
    _assert_params(m, before)


def test_load_state_dict_never_mutates_or_aliases_its_input():
    m = Net(0)
    state = Net(9).state_dict()
    ref = {k: v.copy() for k, v in state.items()}
    m.load_state_dict(state)
    for k, p in m.named_parameters():
        assert not np.shares_memory(p.data, state[k])
        p.data[...] = 0.0  # training the module later must not write into the given arrays
    for k in ref:
        np.testing.assert_array_equal(state[k], ref[k])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad, tmp_path):
    m = Net(0)
    before = _params(m)
    state = Net(9).state_dict()
    state["b.W"][1, 2] = bad
    with pytest.raises(ValueError, match=r"^state_dict\['b\.W'\] contains 1 non-finite value"):
        m.load_state_dict(state)
    save_state_dict(state, tmp_path / "nan")
    with pytest.raises(ValueError, match=r"^state_dict\['b\.W'\] contains 1 non-finite value"):
        m.load(tmp_path / "nan")
    _assert_params(m, before)


@pytest.mark.parametrize("arr,msg", [
    (np.ones((4, 3), dtype=np.complex128), r"^state_dict\['a\.W'\] is complex \(complex128\)"),
    (np.ones((4, 3), dtype=bool), r"^state_dict\['a\.W'\] must be a real numeric array, got "
                                  r"dtype bool"),
    (np.full((4, 3), "x"), r"^state_dict\['a\.W'\] must be a real numeric array, got dtype <U1"),
    (np.ones((4, 3), dtype=np.int64), None),  # int64 -> float64 is safe: loads exactly
    (np.ones((4, 3), dtype=np.float32), None),  # float32 -> float64: safe
    (np.ones((4, 3), dtype=np.longdouble), r"^state_dict\['a\.W'\] has dtype float128, which "
                                           r"does not cast safely to the parameter's float64"),
])
def test_dtype_rules(arr, msg):
    m = Net(0)
    before = _params(m)
    state = m.state_dict()
    state["a.W"] = arr
    if msg is None:
        m.load_state_dict(state)
        assert m.a.W.data.dtype == np.float64
        np.testing.assert_array_equal(m.a.W.data, np.ones((4, 3)))
        return
    if np.dtype(np.longdouble).itemsize <= 8 and "float128" in msg:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match=msg):
        m.load_state_dict(state)
    _assert_params(m, before)


def test_float64_state_into_a_float32_module_is_refused():
    m = Net(0).astype(np.float32)
    before = _params(m)
    with pytest.raises(TypeError, match=r"float64, which does not cast safely to the "
                                        r"parameter's float32"):
        m.load_state_dict(Net(1).state_dict())
    _assert_params(m, before)
    m.load_state_dict(Net(1).astype(np.float32).state_dict())  # the same dtype loads
    _assert_params(m, Net(1).astype(np.float32).state_dict())


# ------------------------------------------------------------------- strict and the result
def test_strict_false_reports_missing_and_unexpected_keys(tmp_path):
    m = Net(0)
    before = _params(m)
    src = Net(9).state_dict()
    state = {"a.W": src["a.W"], "b.b": src["b.b"], "extra.W": np.ones(2), "zz": np.ones(1)}
    with pytest.raises(KeyError, match=r"missing \['a\.b', 'b\.W'\], unexpected "
                                       r"\['extra\.W', 'zz'\]"):
        m.load_state_dict(state)
    _assert_params(m, before)  # strict refusal changes nothing
    res = m.load_state_dict(state, strict=False)
    assert res == LoadResult(missing_keys=["a.b", "b.W"], unexpected_keys=["extra.W", "zz"])
    assert res.missing_keys == ["a.b", "b.W"] and res.unexpected_keys == ["extra.W", "zz"]
    expected = dict(before, **{"a.W": src["a.W"], "b.b": src["b.b"]})
    _assert_params(m, expected)
    save_state_dict(state, tmp_path / "partial")
    m2 = Net(0)
    assert m2.load(tmp_path / "partial", strict=False) == res
    _assert_params(m2, expected)


def test_state_must_be_a_mapping():
    with pytest.raises(TypeError, match="state must be a mapping"):
        Net().load_state_dict([("a.W", np.ones((4, 3)))])


def test_round_trip_through_a_file_is_bit_exact_for_float32(tmp_path):
    src = Net(2).astype(np.float32)
    src.save(tmp_path / "f32")
    assert load_state_dict_file(tmp_path / "f32")["a.W"].dtype == np.float32
    dst = Net(3).astype(np.float32)
    dst.load(tmp_path / "f32")
    _assert_params(dst, _params(src))
