"""Budget planner (Survey §8.3): exact against brute force, predicted bytes = measured bytes,
clear errors for impossible budgets."""

from __future__ import annotations

import re

import numpy as np
import pytest

from refimpl.compare.planner import (
    ComponentPlan,
    apply_plan,
    brute_force_plan,
    measure_sensitivity,
    plan_components,
    plan_from_rows,
)
from refimpl.compare.tour import config_for, tour_context

ROWS = [
    {"method": "base", "bytes": 1000, "accuracy": 0.90, "kernel_us_b1": 5.0,
     "kernel_us_b64": 9.0, "status": "ok"},
    {"method": "q4", "bytes": 150, "accuracy": 0.89, "kernel_us_b1": 50.0,
     "kernel_us_b64": 60.0, "status": "ok"},
    {"method": "p90", "bytes": 200, "accuracy": 0.80, "kernel_us_b1": 20.0,
     "kernel_us_b64": 30.0, "status": "ok"},
    {"method": "dc", "bytes": 60, "accuracy": 0.70, "kernel_us_b1": 40.0,
     "kernel_us_b64": 45.0, "status": "ok"},
    {"method": "broken", "bytes": None, "accuracy": None, "status": "error"},
]


def test_plan_from_rows():
    assert plan_from_rows(ROWS, 2000)["method"] == "base"
    assert plan_from_rows(ROWS, 999)["method"] == "q4"
    assert plan_from_rows(ROWS, 100)["method"] == "dc"
    assert plan_from_rows(ROWS, 999, max_latency_us=30)["method"] == "p90"
    # CSV rows are strings
    as_str = [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in ROWS]
    assert plan_from_rows(as_str, 999)["method"] == "q4"


def test_plan_from_rows_impossible():
    with pytest.raises(ValueError, match="smallest measured model is dc at 60 bytes"):
        plan_from_rows(ROWS, 59)
    with pytest.raises(ValueError, match="fastest that fits is p90 at 20.0 µs"):
        plan_from_rows(ROWS, 500, max_latency_us=10)
    for bad in (0, -5, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="max_bytes"):
            plan_from_rows(ROWS, bad)
    with pytest.raises(ValueError, match="batch"):
        plan_from_rows(ROWS, 500, batch=8)


def _random_plan(rng, n_comp, n_opt):
    table = {f"c{i}": {f"o{j}": (float(rng.integers(1, 200)), float(rng.random()))
                       for j in range(n_opt)} for i in range(n_comp)}
    return ComponentPlan(table, 0.9, int(rng.integers(0, 50)))


@pytest.mark.parametrize("seed", range(20))
def test_frontier_merge_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    plan = _random_plan(rng, int(rng.integers(1, 5)), int(rng.integers(1, 6)))
    lo = plan.fixed_bytes + sum(min(b for b, _ in o.values()) for o in plan.table.values())
    hi = plan.fixed_bytes + sum(max(b for b, _ in o.values()) for o in plan.table.values())
    for budget in np.linspace(lo, hi, 7):
        bf = brute_force_plan(plan, budget)
        plan_components(plan, budget)
        d = sum(plan.table[c][o][1] for c, o in plan.choice.items())
        b = plan.fixed_bytes + sum(plan.table[c][o][0] for c, o in plan.choice.items())
        assert b <= budget
        assert d == pytest.approx(bf[0], abs=1e-12)  # same optimum (ties may differ)
        assert plan.predicted_accuracy == pytest.approx(0.9 - bf[0], abs=1e-12)


def test_impossible_component_budget():
    plan = ComponentPlan({"a": {"x": (10.0, 0.0), "y": (5.0, 0.1)},
                          "b": {"x": (7.0, 0.0), "y": (3.0, 0.2)}}, 0.9, 2)
    with pytest.raises(ValueError, match="smallest achievable is 10 bytes"):
        plan_components(plan, 9.5)
    plan_components(plan, 10)
    assert plan.choice == {"a": "y", "b": "y"}


def test_measured_plan_on_a_real_model():
    ctx = tour_context(config_for(tiny=True))
    plan = measure_sensitivity(ctx, options=("float32", "kmeans-4", "prune-0.9"))
    assert set(plan.table) == {"embedding", "recurrent", "output"}
    dense = sum(b for b, _ in (o["float32"] for o in plan.table.values()))
    assert dense + plan.fixed_bytes == 4 * ctx.baselines["lstm"].num_parameters()
    plan_components(plan, dense / 4)
    apply_plan(ctx, plan)
    # the ledger is additive over parameters, so predicted bytes are exact
    assert plan.measured_bytes == plan.predicted_bytes <= dense / 4
    assert 0.0 <= plan.measured_accuracy <= 1.0
    with pytest.raises(ValueError, match="no weight matrix"):
        measure_sensitivity(ctx, components=["attention"])


def test_cli_plan(tmp_path, capsys):
    import csv

    from refimpl import cli

    path = tmp_path / "tour.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROWS[0]) + ["notes"])
        w.writeheader()
        for r in ROWS:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    assert cli.main(["plan", "--bytes", "999", "--from", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert "q4" in out and "150 bytes, accuracy 0.890" in out
    assert cli.main(["plan", "--bytes", "10", "--from", str(path)]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("refimpl plan: no method fits 10 bytes") and "Traceback" not in err
    assert cli.main(["plan", "--bytes", "999", "--from", str(tmp_path / "none.csv")]) == 2
    _, err = capsys.readouterr()
    assert "run `refimpl tour --quick` first" in err


def test_cli_tour_plan_bytes(tmp_path, capsys):
    from refimpl import cli

    args = ["tour", "--quick", "--tiny", "--out", str(tmp_path), "--methods",
            "baseline-float16"]
    assert cli.main(args + ["--budget", "1e9"]) == 0
    out, _ = capsys.readouterr()
    assert re.search(r"within 1e\+09 bytes \(§8.3\): baseline-(lstm|float16), \d+ bytes", out)
    assert cli.main(args + ["--plan-bytes", "10"]) == 0
    out, _ = capsys.readouterr()
    assert "within 10 bytes (§8.3): no method fits 10 bytes: the smallest measured model is " \
           "baseline-float16" in out
    assert cli.main(args + ["--plan-bytes", "-1"]) == 2
    _, err = capsys.readouterr()
    assert "--budget must be a positive number" in err


@pytest.mark.parametrize("seed", range(15))
def test_frontier_merge_with_latency_equals_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    table = {f"c{i}": {f"o{j}": (float(rng.integers(1, 200)), float(rng.random()),
                                 float(rng.integers(1, 50)))
                       for j in range(int(rng.integers(1, 6)))}
             for i in range(int(rng.integers(1, 5)))}
    plan = ComponentPlan(table, 0.9, 10, fixed_latency_us=3.0)
    hi_b = 10 + sum(max(v[0] for v in o.values()) for o in table.values())
    hi_l = 3 + sum(max(v[2] for v in o.values()) for o in table.values())
    for fb, fl in ((1.0, 0.5), (0.6, 0.8), (0.8, 0.4), (1.0, 1.0)):
        bf = brute_force_plan(plan, fb * hi_b, fl * hi_l)
        if bf is None:
            with pytest.raises(ValueError, match="no plan fits"):
                plan_components(plan, fb * hi_b, fl * hi_l)
            continue
        plan_components(plan, fb * hi_b, fl * hi_l)
        es = [table[c][o] for c, o in plan.choice.items()]
        assert 10 + sum(e[0] for e in es) <= fb * hi_b
        assert 3 + sum(e[2] for e in es) <= fl * hi_l
        assert plan.predicted_latency_us == pytest.approx(3 + sum(e[2] for e in es))
        assert sum(e[1] for e in es) == pytest.approx(bf[0], abs=1e-12)


def test_impossible_latency_budget():
    plan = ComponentPlan({"a": {"x": (10.0, 0.0, 5.0), "y": (5.0, 0.1, 9.0)}}, 0.9, 0)
    with pytest.raises(ValueError, match="no plan fits 100 bytes and 4 µs: the smallest "
                                         "achievable is 5 bytes, the fastest 5.0 µs"):
        plan_components(plan, 100, 4)
    plan_components(plan, 100, 6)
    assert plan.choice == {"a": "x"}


def test_measured_latency_per_component():
    ctx = tour_context(config_for(tiny=True))
    plan = measure_sensitivity(ctx, options=("float32", "kmeans-4"), latency=True,
                               components=["recurrent", "output"])
    for opts in plan.table.values():
        for b, _d, lat in opts.values():
            assert b > 0 and lat > 0
