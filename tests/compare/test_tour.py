"""The tour's machinery on a fake model (independent of refimpl.nn's models): rows for
baselines, the float16 sanity method, error and timeout rows, budgets, table and files."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

from refimpl.compare import registry, tour
from refimpl.compare.registry import MethodResult, register_method
from refimpl.nn import Module, Parameter, Tensor


class FakeBow(Module):
    """Sum of embeddings -> linear; 'trained' in closed form by the fake fit."""

    def __init__(self, vocab_size, n_classes, rng, d=4):
        self.E = Parameter(rng.standard_normal((vocab_size, d)) * 0.1)
        self.W = Parameter(rng.standard_normal((n_classes, d)))

    def forward(self, X, lengths):
        h = self.E.data[X].sum(axis=1)  # (B, d)
        return Tensor(h @ self.W.data.T)  # (B, C)


def fake_make_model(kind, task, cfg, rng, **overrides):
    return FakeBow(len(task.vocab), task.n_classes, rng, d=8 if kind == "lstm" else 4)


def fake_fit(model, task, cfg, **kw):
    # least squares on one-hot targets: a real fit, cheap and deterministic
    H = model.E.data[task.X_train].sum(axis=1)  # (N, d)
    Y = np.eye(task.n_classes)[task.y_train]  # (N, C)
    model.W.data = np.linalg.lstsq(H, Y, rcond=None)[0].T  # (C, d)
    return {"loss": [0.0]}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(tour, "make_model", fake_make_model)
    monkeypatch.setattr(tour, "_fit", fake_fit)
    registry.load_all_methods()
    own = {"baseline-float16": registry._METHODS["baseline-float16"]}
    monkeypatch.setattr(registry, "_METHODS", own)
    return own


def tiny_cfg(**kw):
    return tour.config_for(tiny=True, **kw)


def test_float16_error_and_timeout_rows(fake, tmp_path):
    @register_method("t-broken", family="pruning", section="2.1.2")
    def _broken(ctx):
        raise RuntimeError("kaboom")

    @register_method("t-slow", family="quantization", section="3.3")
    def _slow(ctx):
        time.sleep(3)
        return MethodResult(ctx.copy_baseline(), bits=1, params=1)

    @register_method("t-badresult", family="sharing", section="5")
    def _bad(ctx):
        return "not a MethodResult"

    @register_method("t-half", family="pruning", section="2.1.2")
    def _half(ctx):
        m = ctx.copy_baseline()
        assert m is not ctx.baseline and ctx.baselines["bow"] is not None
        n = m.num_parameters()
        return MethodResult(m, bits=16 * n, params=n, notes="pretend")

    @register_method("t-on-bow", family="pruning", section="2.1.2")
    def _on_bow(ctx):
        m = ctx.copy_baseline("bow")
        n = m.num_parameters()
        return MethodResult(m, bits=8 * n, params=n)

    @register_method("t-wrong-vs", family="pruning", section="2.1.2")
    def _wrong_vs(ctx):
        return MethodResult(ctx.copy_baseline(), bits=8, params=1, extra={"baseline": "cnn"})

    run = tour.run_tour(tiny_cfg(method_budget=0.5), log=lambda s: None)
    rows = {r["method"]: r for r in run.rows}
    assert list(rows) == ["baseline-lstm", "baseline-bow", "baseline-float16", "t-broken",
                          "t-slow", "t-badresult", "t-half", "t-on-bow", "t-wrong-vs"]
    base = rows["baseline-lstm"]
    assert base["bits"] == 32 * base["params"] and base["compression"] == 1.0
    assert base["delta"] == 0.0 and 0.0 <= base["accuracy"] <= 1.0
    f16 = rows["baseline-float16"]
    assert f16["status"] == "ok" and f16["bits"] == 16 * base["params"]
    assert f16["compression"] == 2.0
    assert abs(f16["delta"]) < 0.05, f16  # float16 rounding barely moves accuracy
    assert rows["t-broken"]["status"] == "error"
    assert rows["t-broken"]["notes"] == "RuntimeError: kaboom"
    assert rows["t-slow"]["status"] == "timeout" and rows["t-slow"]["seconds"] < 2.0
    assert rows["t-badresult"]["status"] == "error" and "MethodResult" in \
        rows["t-badresult"]["notes"]
    assert rows["t-half"]["compression"] == 2.0 and rows["t-half"]["latency_ms"] > 0
    assert rows["t-half"]["vs"] == "lstm" and rows["baseline-bow"]["vs"] == "lstm"
    assert rows["baseline-bow"]["compression"] == pytest.approx(2.0)  # d=4 vs d=8

    on_bow = rows["t-on-bow"]  # compared with the baseline it copied
    assert on_bow["vs"] == "bow" and on_bow["compression"] == 4.0
    assert on_bow["delta"] == pytest.approx(on_bow["accuracy"] - rows["baseline-bow"]["accuracy"])
    assert rows["t-wrong-vs"]["status"] == "error" and "'cnn'" in rows["t-wrong-vs"]["notes"]

    files = tour.write_outputs(run, tmp_path / "out")
    with open(files["csv"], newline="") as f:
        got = list(csv.DictReader(f))
    assert [r["method"] for r in got] == list(rows)
    md = open(files["md"]).read()
    assert "| method | family | § | vs baseline | parameters | bytes | compression ×" in md
    assert md.count("\n| ") == len(rows) + 1
    assert (tmp_path / "out" / "tour.png").stat().st_size > 1000
    text = tour.format_table(run.rows)
    assert "kaboom" in text and "timeout" in text


def test_total_budget_is_shared_and_exhausted_methods_are_skipped(fake):
    @register_method("t-eater", family="pruning", section="2")
    def _eat(ctx):
        time.sleep(10)

    @register_method("t-after", family="pruning", section="2")
    def _after(ctx):
        return MethodResult(ctx.copy_baseline(), bits=8, params=1)

    cfg = tiny_cfg(total_budget=0.0, method_budget=5.0)
    run = tour.run_tour(cfg, log=lambda s: None)
    status = {r["method"]: r["status"] for r in run.rows}
    assert status["t-eater"] == "skipped" and status["t-after"] == "skipped"

    t0 = time.perf_counter()
    run = tour.run_tour(tiny_cfg(total_budget=None, method_budget=0.3), only=["t-eater"],
                        log=lambda s: None)
    assert time.perf_counter() - t0 < 8
    assert [r["status"] for r in run.rows][-1] == "timeout"


def test_only_unknown_method_is_a_clear_error(fake):
    with pytest.raises(ValueError, match="not registered"):
        tour.run_tour(tiny_cfg(), only=["nope"], log=lambda s: None)


def test_time_limit_outside_main_thread_does_not_interrupt():
    import threading

    out = []

    def work():
        with tour.time_limit(0.01):
            time.sleep(0.05)
            out.append("done")

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert out == ["done"]
    with pytest.raises(tour.MethodTimeout, match="time budget"):
        with tour.time_limit(0.05):
            time.sleep(1)


def test_presets():
    q = tour.config_for(quick=True)
    assert q.quick and q.total_budget is not None and q.total_budget <= 100
    t = tour.config_for(tiny=True)
    assert t.tiny and t.epochs == 1
    full = tour.config_for()
    assert not full.quick and full.total_budget is None
    assert tour.config_for(quick=True, seed=3).seed == 3
