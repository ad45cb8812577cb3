"""refimpl.utils: seeding and validators whose messages name the argument."""

from __future__ import annotations

import io

import numpy as np
import pytest

from refimpl import utils
from refimpl.utils import (
    as_rng,
    check_array,
    check_choice,
    check_float,
    check_fraction,
    check_int,
    check_values,
    progress_bar,
)


# ---------------------------------------------------------------------------------------- as_rng
def test_as_rng_seeds_and_passthrough():
    g = np.random.default_rng(3)
    assert as_rng(g) is g
    np.testing.assert_array_equal(as_rng(5).random(4), np.random.default_rng(5).random(4))
    np.testing.assert_array_equal(as_rng(np.int64(5)).random(2), as_rng(5).random(2))
    np.testing.assert_array_equal(as_rng(None).random(3), np.random.default_rng(0).random(3))
    ss = np.random.SeedSequence(9)
    np.testing.assert_array_equal(as_rng(ss).random(2),
                                  np.random.default_rng(np.random.SeedSequence(9)).random(2))


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (True, TypeError), (1.5, TypeError),
                                     ("0", TypeError), (np.random.RandomState(0), TypeError)])
def test_as_rng_rejects(bad, exc):
    with pytest.raises(exc, match="rng must be"):
        as_rng(bad)


# ----------------------------------------------------------------------------------- check_array
def test_check_array_returns_without_copy_and_promotes_ints():
    x = np.arange(6.0).reshape(2, 3)
    assert check_array(x, "x") is x
    xi = check_array(np.arange(3), "x")
    assert xi.dtype == np.float64
    assert check_array([1, 2], "x", dtype_kind="iu").dtype.kind == "i"
    assert check_array(x, "x", dtype=np.float32).dtype == np.float32


def test_check_array_messages_name_the_argument():
    with pytest.raises(TypeError, match="W must be an array, got None"):
        check_array(None, "W")
    with pytest.raises(TypeError, match="W must be a numeric array"):
        check_array(np.array([object()]), "W")
    with pytest.raises(TypeError, match=r"W must be a real array \(dtype kind in 'f'\), got complex"):
        check_array(np.array([1 + 2j]), "W", dtype_kind="f")
    with pytest.raises(TypeError, match=r"W must have dtype kind in 'iu', got float64"):
        check_array(np.array([1.5]), "W", dtype_kind="iu")
    with pytest.raises(ValueError, match=r"W must have ndim in \(2,\), got shape \(3,\)"):
        check_array(np.ones(3), "W", ndim=2)
    with pytest.raises(ValueError, match=r"W must have shape \(\*, 4\), got \(2, 3\)"):
        check_array(np.ones((2, 3)), "W", shape=(None, 4))
    with pytest.raises(ValueError, match=r"W must have shape \(2, 3\), got \(3,\)"):
        check_array(np.ones(3), "W", shape=(2, 3))
    with pytest.raises(ValueError, match="W must not be empty"):
        check_array(np.ones((0, 3)), "W")
    with pytest.raises(ValueError, match="W contains NaN or inf"):
        check_array(np.array([1.0, np.nan]), "W")
    with pytest.raises(ValueError, match="W contains NaN or inf"):
        check_array(np.array([np.inf]), "W")


@pytest.mark.parametrize("z", [np.array([1 + 2j]), np.array([1.0 + 0j]), [1j, 2],
                               np.complex64(1), np.ones((2, 2), np.complex128)])
def test_check_array_refuses_complex_by_default(z):
    """Issue #12: complex arrays used to pass the default dtype_kind "fc" (and lose their
    imaginary part further on); every method is real-valued, so the default refuses them."""
    with pytest.raises(TypeError, match="W must be a real array"):
        check_array(z, "W")
    assert check_array(np.array([1 + 2j]), "W", dtype_kind="fc").dtype.kind == "c"  # opt-in


def test_check_values_scalars_and_arrays():
    assert float(check_values(0.5, "tau", 0.0)) == 0.5
    np.testing.assert_array_equal(check_values([0.0, 2.0], "tau", 0.0), [0.0, 2.0])
    assert check_values(3, "p").dtype == np.float64
    for bad, exc, msg in [("0.5", TypeError, "tau must have dtype kind"),
                          (None, TypeError, "tau must be an array, got None"),
                          (1j, TypeError, "tau must be a real array"),
                          (float("nan"), ValueError, "tau contains NaN"),
                          ([1.0, np.inf], ValueError, "tau contains NaN"),
                          (-0.5, ValueError, r"tau must have every value in \[0, inf\], got -0.5"),
                          ([0.1, -2.0], ValueError, r"got -2.0")]:
        with pytest.raises(exc, match=msg):
            check_values(bad, "tau", 0.0)
    with pytest.raises(ValueError, match=r"p must have every value in \[0, 1\), got 1.0"):
        check_values([0.5, 1.0], "p", 0.0, 1.0, hi_open=True)
    with pytest.raises(ValueError, match=r"p must have every value in \(0, 1\]"):
        check_values(0.0, "p", 0.0, 1.0, lo_open=True)
    with pytest.raises(ValueError, match="p must have ndim"):
        check_values(np.ones((2, 2)), "p", ndim=(0, 1))


def test_check_array_options():
    assert check_array(np.ones((0, 3)), "W", allow_empty=True).shape == (0, 3)
    assert np.isnan(check_array(np.array([np.nan]), "W", finite=False)[0])
    assert check_array(np.ones((2, 5)), "W", shape=(2, None)).shape == (2, 5)
    assert check_array(np.ones(3), "W", ndim=(1, 2)).ndim == 1


# ------------------------------------------------------------------------------- scalar checks
def test_check_int():
    assert check_int(3, "bits", 1, 16) == 3
    assert check_int(np.int32(16), "bits", 1, 16) == 16
    with pytest.raises(ValueError, match=r"^bits must be an integer in \[1, 16\], got 0$"):
        check_int(0, "bits", 1, 16)
    with pytest.raises(ValueError, match=r"bits must be an integer in \[1, 16\], got 17"):
        check_int(17, "bits", 1, 16)
    with pytest.raises(TypeError, match=r"bits must be an integer in \[1, 16\], got 2.0"):
        check_int(2.0, "bits", 1, 16)
    with pytest.raises(TypeError, match="rank must be an integer >= 1, got True"):
        check_int(True, "rank", 1)
    with pytest.raises(ValueError, match="rank must be an integer <= 4, got 5"):
        check_int(5, "rank", None, 4)


def test_check_float_and_fraction():
    assert check_float(0.5, "lr", 0, lo_open=True) == 0.5
    assert check_float(np.float32(1), "lr") == 1.0
    with pytest.raises(ValueError, match=r"lr must be in \(0, inf\], got 0"):
        check_float(0, "lr", 0, lo_open=True)
    with pytest.raises(ValueError, match="lr must be in"):
        check_float(float("nan"), "lr")
    with pytest.raises(TypeError, match="lr must be a real number, got '1'"):
        check_float("1", "lr")
    with pytest.raises(TypeError, match="lr must be a real number"):
        check_float(False, "lr")
    assert check_fraction(0.0) == 0.0
    with pytest.raises(ValueError, match=r"^sparsity must be in \[0, 1\), got 1.5$"):
        check_fraction(1.5)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), got 1"):
        check_fraction(1)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got -0.1"):
        check_fraction(-0.1, "p", allow_one=True)
    assert check_fraction(1, "p", allow_one=True) == 1.0


def test_check_choice():
    assert check_choice("lstm", "kind", ["lstm", "gru"]) == "lstm"
    with pytest.raises(ValueError, match=r"kind must be one of \('lstm', 'gru'\), got 'rnn'"):
        check_choice("rnn", "kind", ("lstm", "gru"))


# ------------------------------------------------------------------------------- progress bars
def test_progress_bar_iterates_and_is_off_when_asked(monkeypatch):
    bar = progress_bar(range(4), desc="x", progress=False)
    assert bar.disable and list(bar) == [0, 1, 2, 3]
    monkeypatch.setenv("REFIMPL_PROGRESS", "0")
    assert progress_bar(range(2)).disable
    monkeypatch.setenv("REFIMPL_PROGRESS", "1")
    assert not progress_bar(range(2), file=io.StringIO()).disable
    assert not progress_bar(range(2), progress=True, file=io.StringIO()).disable


def test_everything_exported_exists():
    for name in utils.__all__:
        assert callable(getattr(utils, name)), name


# ------------------------------------------------------------------- declarative validators
def test_validate_scalars_checks_annotated_arguments_and_bounds():
    from refimpl.utils import check_bool, check_str, validate_scalars

    @validate_scalars(n=(1, None), lr=(0, None, "(]"), frac=(0, 1, "[)"))
    def f(x, n: int, lr: float = 0.1, frac: float = 0.5, name: str = "a", flag: bool = False,
          k: int | None = None, m: int = None):
        return x, n, lr

    assert f("anything", 3) == ("anything", 3, 0.1)
    assert f(None, n=np.int64(2), lr=np.float32(1.0), k=None, m=None)[1] == 2
    for kw, exc, msg in [({"n": 0}, ValueError, r"n must be an integer >= 1, got 0"),
                         ({"n": "3"}, TypeError, "n must be an integer"),
                         ({"n": 2.5}, TypeError, "n must be an integer"),
                         ({"n": True}, TypeError, "n must be an integer"),
                         ({"n": 1, "lr": 0.0}, ValueError, r"lr must be in \(0, inf\], got 0.0"),
                         ({"n": 1, "lr": float("nan")}, ValueError, "lr must be in"),
                         ({"n": 1, "lr": 1j}, TypeError, "lr must be a real number"),
                         ({"n": 1, "frac": 1.0}, ValueError, r"frac must be in \[0, 1\)"),
                         ({"n": 1, "name": 3}, TypeError, "name must be a str, got 3"),
                         ({"n": 1, "flag": "yes"}, TypeError, "flag must be a bool"),
                         ({"n": 1, "k": 1.5}, TypeError, "k must be an integer"),
                         ({"n": 1, "m": "x"}, TypeError, "m must be an integer")]:
        with pytest.raises(exc, match=msg):
            f(0, **kw)
    with pytest.raises(TypeError, match="n must be an integer"):
        f(0, "3")  # positional arguments are checked too
    with pytest.raises(TypeError, match="bounds for"):
        validate_scalars(x=(0, 1))(lambda x: x)  # unannotated: a bound would be silently unused
    assert check_bool(np.bool_(True), "b") is True and check_str("s", "s") == "s"


def test_validate_arrays_checks_kinds_without_changing_values():
    from refimpl.nn import Tensor
    from refimpl.utils import validate_arrays

    @validate_arrays(W={"ndim": 2}, xs={"sequence": True, "ndim": 1}, fn={"kind": "callable"},
                     dims={"kind": "dims"}, r={"kind": "ranks"}, m={"kind": "mapping"},
                     opt={"optional": True})
    def g(W, xs=([1.0],), fn=len, dims=(2,), r=1, m=None, opt=None):
        return W

    W = np.arange(4).reshape(2, 2)  # ints: checked, but passed on unchanged
    assert g(W, m={}) is W
    assert g(Tensor(np.ones((2, 2))), r=(1, 2), m={}).shape == (2, 2)
    for kw, exc, msg in [({"W": np.ones(3)}, ValueError, r"W must have ndim in \(2,\)"),
                         ({"W": np.ones((2, 2)) * 1j}, TypeError, "W must be a real array"),
                         ({"W": "W"}, TypeError, "W must have dtype kind"),
                         ({"W": np.full((1, 1), np.nan)}, ValueError, "W contains NaN"),
                         ({"xs": "ab"}, TypeError, "xs must be a list"),
                         ({"xs": []}, ValueError, "xs must not be empty"),
                         ({"xs": [np.ones((1, 1))]}, ValueError, r"xs\[0\] must have ndim"),
                         ({"fn": None}, TypeError, "fn must be callable"),
                         ({"dims": (2, 0)}, ValueError, r"dims\[1\] must be an integer >= 1"),
                         ({"dims": "22"}, TypeError, "dims must be a sequence"),
                         ({"r": 0}, ValueError, "r must be an integer >= 1"),
                         ({"r": 1.5}, TypeError, "r must be a sequence of positive ints or an int"),
                         ({"m": []}, TypeError, "m must be a mapping"),
                         ({"opt": "x"}, TypeError, "opt must have dtype kind")]:
        kw = {"W": np.ones((2, 2)), "m": {}} | kw
        with pytest.raises(exc, match=msg):
            g(**kw)
    with pytest.raises(TypeError, match="has no parameters"):
        validate_arrays(nope={})(lambda W: W)


def test_temporary_environ_restores_set_and_unset_variables(monkeypatch):
    import os

    from refimpl.utils import temporary_environ

    monkeypatch.setenv("REFIMPL_T_SET", "before")
    monkeypatch.delenv("REFIMPL_T_UNSET", raising=False)
    with pytest.raises(RuntimeError):
        with temporary_environ({"REFIMPL_T_SET": "in", "REFIMPL_T_UNSET": "in"}):
            assert os.environ["REFIMPL_T_SET"] == os.environ["REFIMPL_T_UNSET"] == "in"
            raise RuntimeError
    assert os.environ["REFIMPL_T_SET"] == "before" and "REFIMPL_T_UNSET" not in os.environ
