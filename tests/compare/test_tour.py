"""The tour's machinery on a fake model (independent of refimpl.nn's models): rows for
baselines, the float16 sanity method, error and timeout rows, budgets, table and files."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest

from refimpl import registry
from refimpl.compare import tour
from refimpl.registry import MethodResult, register_method
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


def burn(seconds):
    """Spend ``seconds`` of CPU time (the tour's budgets are CPU seconds: sleeping costs none)."""
    c0 = time.process_time()
    x = 0
    while time.process_time() - c0 < seconds:
        x += 1
    return x


def tiny_cfg(**kw):
    return tour.config_for(tiny=True, **kw)


def test_float16_error_and_timeout_rows(fake, tmp_path):
    @register_method("t-broken", family="pruning", section="2.1.2")
    def _broken(ctx):
        raise RuntimeError("kaboom")

    @register_method("t-slow", family="quantization", section="3.3")
    def _slow(ctx):
        burn(3)
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
    assert rows["t-slow"]["status"] == "timeout" and rows["t-slow"]["cpu_seconds"] < 2.0
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
        burn(10)

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
            burn(1)
    with tour.time_limit(0.05):  # CPU seconds: waiting (another job's turn) costs none
        time.sleep(0.2)


def test_presets():
    q = tour.config_for(quick=True)
    assert q.quick and q.total_budget is not None and q.total_budget <= 100
    t = tour.config_for(tiny=True)
    assert t.tiny and t.epochs == 1
    full = tour.config_for()
    assert not full.quick and full.total_budget is None
    assert tour.config_for(quick=True, seed=3).seed == 3


def test_only_trains_the_baselines_used_on_demand_and_not_on_the_clock(fake, monkeypatch):
    made = []

    def slow_fit(model, task, cfg, **kw):
        burn(0.6)  # longer than the method's budget: must not count against it
        return fake_fit(model, task, cfg, **kw)

    monkeypatch.setattr(tour, "_fit", slow_fit)
    monkeypatch.setattr(tour, "make_model", lambda kind, *a, **kw: made.append(kind) or
                        fake_make_model(kind, *a, **kw))

    @register_method("t-needs-bow", family="pruning", section="2")
    def _needs_bow(ctx):
        assert "bow" in ctx.baselines and "transformer" not in ctx.baselines  # tiny: 2 kinds
        m = ctx.copy_baseline("bow")
        return MethodResult(m, bits=16 * m.num_parameters(), params=m.num_parameters())

    run = tour.run_tour(tiny_cfg(method_budget=0.4), only=["t-needs-bow"], log=lambda s: None)
    assert made == ["bow"]  # the primary lstm is never trained
    rows = {r["method"]: r for r in run.rows}
    assert list(rows) == ["baseline-bow", "t-needs-bow"]
    assert rows["t-needs-bow"]["status"] == "ok", rows["t-needs-bow"]
    assert rows["t-needs-bow"]["seconds"] < 0.4 and rows["baseline-bow"]["seconds"] >= 0.6
    assert rows["t-needs-bow"]["compression"] == 2.0 and rows["t-needs-bow"]["vs"] == "bow"
    assert rows["baseline-bow"]["vs"] == "bow"  # no primary baseline was trained


def test_progress_lines_and_bar(fake):
    import io

    lines = []
    run = tour.run_tour(tiny_cfg(), log=lines.append)
    assert [ln.split("]")[0] + "]" for ln in lines] == ["[1/3]", "[2/3]", "[3/3]"]
    assert lines[0].startswith("[1/3] baseline lstm: accuracy ")
    assert lines[2].startswith("[3/3] baseline-float16: accuracy ") and "ETA 0:00)" in lines[2]
    assert len(run.rows) == 3

    buf = io.StringIO()
    p = tour.TourProgress(2, enabled=True, stream=buf)
    p.step("a", "done", 1.0)
    p.add_steps(1)
    p.step("b", "done", 2.0)
    p.close()
    text = buf.getvalue()
    assert "[1/2] a: done (1.0 s; elapsed 0:00, ETA" in text
    assert "[2/3] b: done (2.0 s;" in text
    assert "tour: step 2/3" in text and "elapsed, ETA" in text  # the overall bar
    assert tour._clock(75.2) == "1:15" and tour._clock(3725) == "1:02:05"
    assert tour._clock(float("nan")) == "?"


def _rows_like_a_full_tour():
    rows = [tour._row("baseline-lstm", "baseline", "—", 100, 3200, 0.9, 3200, 0.9, 0.002, 1.0,
                      vs="lstm"),
            tour._row("longformer-w4-cls", "efficient attention", "7.2", 100, 3200, 0.8,
                      3200, 0.85, 0.007, 0.8, vs="transformer",
                      extra={"attn_floats_n4096": 10, "attn_memory_ratio": 585.14}),
            tour._row("a-method-with-a-very-long-registered-name-indeed", "pruning", "2.4.2",
                      10, 320, 0.7, 3200, 0.9, 0.001, 0.3, "over budget (30 s)", "x" * 300,
                      vs="transformer"),
            tour._row("t-broken", "pruning", "2.1.2", None, None, None, None, None, None, 0.1,
                      "error", "RuntimeError: " + "kaboom " * 40)]
    return rows


def test_printed_table_fits_in_100_columns_with_a_legend_and_reasons():
    rows = _rows_like_a_full_tour()
    text = tour.format_table(rows)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[0].split()[:3] == ["method", "§", "vs"]
    long_row = next(ln for ln in lines if ln.startswith("a-method-with"))
    assert "…" in long_row and "over budget" in long_row  # name cut, status shortened
    mem = next(ln for ln in lines if ln.startswith("longformer"))
    assert "585×" in mem and "1.0×" in mem  # memory gain beside the bytes ratio
    assert "n = 4096 tokens" in text  # the stated sequence length
    assert "t-broken (error): RuntimeError: kaboom" in text
    assert "a-method-with-a-very-long-registered-name-indeed (over budget (30 s)): xxx" in text
    # the Markdown file keeps every column
    md = tour.format_table(rows, markdown=True)
    assert md.splitlines()[0].startswith("| method | family | § | vs baseline | parameters")
    assert "| attention memory ÷ |" in md and "585×" in md and "x" * 300 in md


def test_plot_labels_never_overlap():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    xs = np.concatenate([np.full(8, 1e4), 10 ** rng.uniform(3, 6, 16)])  # 8 coincident points
    ys = np.concatenate([np.full(8, 0.62), rng.uniform(0.6, 0.95, 16)])
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter(xs, ys)
    ax.set_xscale("log")
    ax.set_xlim(5e2, 2e6)
    ax.set_ylim(0.55, 1.0)
    labels = tour.place_labels(ax, xs, ys, [str(i + 1) for i in range(len(xs))])
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [a.get_window_extent(r) for a in labels]
    assert len(boxes) == 24
    for i in range(len(boxes)):
        for j in range(i):
            assert not boxes[i].overlaps(boxes[j]), (labels[i].get_text(), labels[j].get_text())
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    for b in boxes:  # no label covers a marker's centre
        assert not any(b.contains(x, y) for x, y in pts)
    plt.close(fig)


def test_memory_column_comes_from_the_method_and_the_transformer_baseline():
    from refimpl import nn

    m = nn.TransformerClassifier(vocab_size=20, n_classes=2, d_model=8, num_heads=2,
                                 num_layers=2, d_ff=16, max_len=6, rng=0)
    extra = tour._dense_attention_extra(m)
    assert extra == {"attn_memory_ratio": 1.0, "attn_floats_n4096": 2 * 2 * 4096 ** 2}
    assert tour._dense_attention_extra(nn.BowClassifier(vocab_size=20, d_emb=4, n_classes=2, rng=0)) == {}
    row = tour._row("x", "f", "7", 1, 32, 0.5, 32, 0.5, 0.001, 0.1,
                    extra={"attn_floats_n4096": 5, "attn_memory_ratio": 7.5})
    assert row["attn_memory_ratio"] == 7.5 and row["attn_memory_n"] == 4096
