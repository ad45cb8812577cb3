"""The check registry's machinery: Outcome numbers, verdict lines, errata and claims, errors,
the coverage map and decorator validation. Runs on an isolated, empty registry."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import check
from refimpl.check import CheckFailed, Outcome, Result


@pytest.fixture
def registry(monkeypatch):
    """An empty registry that the real one is swapped back in for after the test."""
    fresh: dict = {}
    monkeypatch.setattr(check, "_REGISTRY", fresh)
    monkeypatch.setattr(check, "_LOADED", True)
    return fresh


# ----------------------------------------------------------------------------- Outcome.compare
def test_compare_records_exact_errors():
    o = Outcome.compare([1.0, 2.5, -4.0], [1.0, 2.0, -4.0], atol=0.5, n=3)
    assert o.passed
    assert o.numbers["max_abs_err"] == 0.5
    assert o.numbers["max_rel_err"] == 0.25
    assert o.numbers["atol"] == 0.5 and "rtol" not in o.numbers
    assert o.numbers["n"] == 3


def test_compare_tolerance_boundary_and_rtol():
    assert not Outcome.compare([1.0, 2.5], [1.0, 2.0], atol=0.49).passed
    o = Outcome.compare([100.0, 1.0], [101.0, 1.0], atol=0.0, rtol=0.01)  # |d| = 1 <= 0.01*101
    assert o.passed and o.numbers["rtol"] == 0.01 and "atol" not in o.numbers
    assert not Outcome.compare([100.0], [102.0], atol=0.0, rtol=0.01).passed


def test_compare_shape_mismatch_nan_and_empty():
    o = Outcome.compare(np.ones(3), np.ones(4))
    assert not o.passed and o.numbers["shape_actual"] == (3,) and o.detail == "shapes differ"
    assert not Outcome.compare([np.nan], [np.nan], atol=np.inf).passed  # NaN never passes
    e = Outcome.compare(np.zeros(0), np.zeros(0))
    assert e.passed and e.numbers["max_abs_err"] == 0.0


def test_all_of_merges_numbers_with_suffixes():
    a = Outcome.compare([1.0], [1.0], detail="first")
    b = Outcome.compare([1.0], [2.0], atol=0.1, detail="second")
    both = Outcome.all_of(a, b)
    assert not both.passed
    assert both.numbers["max_abs_err"] == 0.0 and both.numbers["max_abs_err_1"] == 1.0
    assert both.detail == "first; second"
    assert Outcome.all_of(a, a).passed
    assert Outcome.all_of(a, b, detail="mine").detail == "mine"


def test_number_formatting():
    assert check._fmt(0.0) == "0"
    assert check._fmt(0.5) == "0.5"
    assert check._fmt(1.23456789) == "1.235"
    assert check._fmt(1e-12) == "1.000e-12"
    assert check._fmt(3e7) == "3.000e+07"
    assert check._fmt(np.int64(7)) == "7"
    assert check._fmt(np.bool_(True)) == "True"
    assert check._fmt((2, 3)) == "(2, 3)"


# ------------------------------------------------------------------------------ verdict lines
def _result(kind, passed, reproduced=None, erratum=False, numbers=None, detail=""):
    return Result("Eq. (5)/x" if kind == "equation" else f"{kind}:x", "a title", "2.1.3", kind,
                  Outcome(passed, numbers or {}, detail, reproduced), erratum)


@pytest.mark.parametrize("kind,passed,reproduced,erratum,verdict,mark", [
    ("equation", True, None, False, "verified", "✓"),
    ("equation", False, None, False, "FAILED", "✗"),
    ("equation", True, None, True, "erratum confirmed", "✓"),
    ("equation", False, None, True, "FAILED (erratum not shown)", "✗"),
    ("check", True, None, False, "verified", "✓"),
    ("claim", True, True, False, "reproduced", "✓"),
    ("claim", True, False, False, "NOT reproduced", "≠"),
    ("claim", True, None, False, "inconclusive", "✓"),
    ("claim", False, True, False, "FAILED", "✗"),
])
def test_verdicts_and_marks(kind, passed, reproduced, erratum, verdict, mark):
    r = _result(kind, passed, reproduced, erratum)
    assert r.verdict == verdict
    assert r.line().startswith(f"{mark} ")
    assert f"— {verdict}" in r.line()


def test_line_shows_numbers_and_detail():
    r = _result("equation", True, numbers={"max_abs_err": 1e-12, "n": 10}, detail="vs brute")
    assert r.line() == ("✓ Eq. (5)/x §2.1.3 a title — verified  [max_abs_err=1.000e-12, n=10]"
                        "  vs brute")
    assert repr(r) == str(r) == r.line()
    assert _result("equation", True).line() == "✓ Eq. (5)/x §2.1.3 a title — verified"


# ------------------------------------------------------------------ running registered checks
def test_equation_runs_all_checks_of_a_number_and_raises_on_failure(registry):
    @check.register_equation(7, "good", section="2.1.3")
    def _good(rng, quick):
        return Outcome.compare([1.0], [1.0])

    @check.register_equation(7, "bad", section="2.1.3", name="bad-one")
    def _bad(rng, quick):
        return Outcome.compare([1.0], [2.0], atol=0.1)

    assert set(registry) == {"Eq. (7)/good", "Eq. (7)/bad-one"}
    with pytest.raises(CheckFailed, match=r"Eq\. \(7\)/bad-one"):
        check.equation(7)
    res = check.equation(7, raise_on_fail=False)
    assert [r.passed for r in res] == [False, True]  # sorted by key
    assert "\n" in repr(res)
    only = check.equation(7, "good")
    assert len(only) == 1 and only[0].passed and only[0].kind == "equation"


def test_key_errors_name_what_is_registered(registry):
    @check.register_equation(3, "x", section="2.1.1", name="obs")
    def _x(rng, quick):
        return Outcome(True)

    with pytest.raises(KeyError, match=r"no check is registered for Eq\. \(4\)"):
        check.equation(4)
    with pytest.raises(KeyError, match=r"registered for Eq\. \(3\): \['obs'\]"):
        check.equation(3, "nope")
    with pytest.raises(KeyError, match="no claim 'nope'"):
        check.claim("nope")
    with pytest.raises(KeyError, match="no check 'nope'"):
        check.verify("nope")


def test_claim_not_reproduced_does_not_raise_but_failure_does(registry):
    @check.register_claim("gradual-beats-oneshot", "gradual > one-shot", section="2.1.3")
    def _c(rng, quick):
        return Outcome(True, {"acc_gradual": 0.8, "acc_oneshot": 0.81}, reproduced=False)

    @check.register_claim("broken", "ran badly", section="2.1.3")
    def _b(rng, quick):
        return Outcome(False, {"acc": float("nan")})

    r = check.claim("gradual-beats-oneshot")
    assert r.passed and r.reproduced is False and r.verdict == "NOT reproduced"
    assert "acc_gradual=0.8" in r.line()
    with pytest.raises(CheckFailed, match="broken"):
        check.claim("broken")
    assert check.claim("broken", raise_on_fail=False).verdict == "FAILED"


def test_erratum_check_verdict(registry):
    @check.register_equation(29, "survey sign is wrong", section="3.2.1", erratum=True)
    def _e(rng, quick):
        return Outcome(True, {"survey_err": 0.5, "fixed_err": 0.0})

    (r,) = check.equation(29)
    assert r.erratum and r.verdict == "erratum confirmed"
    cov = {row["number"]: row for row in check.coverage()}
    assert cov[29]["status"] == "erratum"


def test_quick_defaults_to_environment(registry, monkeypatch):
    seen = []

    @check.register_claim("q", "q", section="1")
    def _q(rng, quick):
        seen.append(quick)
        return Outcome(True, reproduced=True)

    monkeypatch.setenv("REFIMPL_QUICK", "0")
    check.claim("q")
    monkeypatch.setenv("REFIMPL_QUICK", "1")
    check.claim("q")
    monkeypatch.delenv("REFIMPL_QUICK")
    check.claim("q")
    check.claim("q", quick=False)
    assert seen == [False, True, True, False]


def test_run_and_run_all_order_and_slow_filter(registry):
    for n in (12, 2):
        check.register_equation(n, f"eq{n}", section="2", name=f"e{n}")(
            lambda rng, quick: Outcome(True))
    check.register_claim("c", "c", section="2", slow=True)(
        lambda rng, quick: Outcome(True, reproduced=True))
    check.register_check("k", "k", section="2")(lambda rng, quick: Outcome(True))
    keys = [r.key for r in check.run_all(progress=False)]
    assert keys == ["Eq. (2)/e2", "Eq. (12)/e12", "check:k", "claim:c"]
    assert [r.key for r in check.run_all(include_slow=False, progress=False)] == keys[:3]
    assert [r.key for r in check.run_all("claim", progress=False)] == ["claim:c"]
    assert check.run("check:k").passed
    assert check.run_all(progress=False)[0].seconds >= 0.0


# -------------------------------------------------------------------------------- coverage map
def test_coverage_has_one_row_per_equation(registry):
    @check.register_equation(1, "obd", section="2.1.1", implements=["refimpl.b", "refimpl.a"])
    def _one(rng, quick):
        return Outcome(True)

    @check.register_equation(1, "obd2", section="2.1.1", name="two", implements=["refimpl.a"])
    def _two(rng, quick):
        return Outcome(True)

    rows = check.coverage()
    assert [r["number"] for r in rows] == list(range(1, 70))
    assert len(rows) == check.N_EQUATIONS == 69
    assert rows[0] == {"number": 1, "section": "2.1.1", "functions": ["refimpl.a", "refimpl.b"],
                       "checks": ["one", "two"], "status": "checked"}
    assert all(r["status"] == "missing" and r["checks"] == [] for r in rows[1:])


def test_real_coverage_map_is_well_formed():
    rows = check.coverage()
    assert [r["number"] for r in rows] == list(range(1, 70))
    assert {r["status"] for r in rows} <= {"checked", "erratum", "missing"}


# ------------------------------------------------------------------------ decorator validation
@pytest.mark.parametrize("number", [0, 70, -1, "3", 3.0, None])
def test_register_equation_rejects_bad_numbers(number, registry):
    with pytest.raises(ValueError, match="number must be an integer in"):
        check.register_equation(number, "t", section="1")
    assert registry == {}


@pytest.mark.parametrize("deco", [check.register_claim, check.register_check])
@pytest.mark.parametrize("name", ["", None, 3])
def test_named_registrations_reject_bad_names(deco, name, registry):
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        deco(name, "t", section="1")


def test_default_name_strips_underscores_hyphenates_and_numpy_ints_are_accepted(registry):
    @check.register_equation(np.int64(9), "t", section="2.2.1")
    def _entropy_importance(rng, quick):
        return Outcome(True)

    assert list(registry) == ["Eq. (9)/entropy-importance"]
    assert registry["Eq. (9)/entropy-importance"].number == 9


def test_non_outcome_return_is_a_type_error(registry):
    @check.register_equation(5, "t", section="2.1.3")
    def _bad(rng, quick):
        return 1.0

    with pytest.raises(TypeError, match="expected refimpl.check.Outcome"):
        check.equation(5)


@pytest.mark.parametrize("bad", ["snake_case", "Upper", "trailing-", "-lead", "two--dashes", ""])
def test_names_are_kebab_case(registry, bad):
    with pytest.raises(ValueError, match="name"):
        check.register_claim(bad, "t", section="1")
    with pytest.raises(ValueError, match="name"):
        check.register_equation(1, "t", section="1", name=bad)
