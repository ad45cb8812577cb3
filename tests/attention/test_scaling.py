"""The scaling helper behind the chapter's time/memory plot and bench_attention."""

import time

import numpy as np
import pytest

from refimpl.attention.scaling import Variant, dense_baseline, loglog_slope, measure_scaling
from refimpl.attention import dense_attention


def test_loglog_slope_exact_on_power_laws():
    ns = [128, 256, 512, 1024]
    assert abs(loglog_slope(ns, [3.0 * n ** 1.5 for n in ns]) - 1.5) < 1e-12
    assert abs(loglog_slope(ns, [7.0 * n for n in ns], last=2) - 1.0) < 1e-12


def test_dense_baseline_equals_reference(rng):
    Q, K, V = (rng.standard_normal((1, 2, 33, 8)) for _ in range(3))
    np.testing.assert_allclose(dense_baseline(Q, K, V), dense_attention(Q, K, V), atol=1e-12)


def test_measure_scaling_memory_slopes():
    variants = [Variant("dense", dense_baseline, 2.0, 2.0),
                Variant("copy", lambda Q, K, V: V * 2.0, 1.0, 1.0)]
    r = measure_scaling([256, 512, 1024], variants, d=16, threads=1, dtype=np.float64)
    assert r["n"] == [256, 512, 1024]
    mem = r["variants"]["dense"]["memory"]
    # the n×n float64 buffer dominates: at least n² · 8 bytes
    assert all(m >= 8 * n * n for m, n in zip(mem, r["n"]))
    assert abs(loglog_slope(r["n"], mem) - 2.0) < 0.15
    assert abs(loglog_slope(r["n"], r["variants"]["copy"]["memory"]) - 1.0) < 0.05
    assert all(t > 0 for t in r["variants"]["copy"]["time"])


def test_measure_scaling_bad_input():
    with pytest.raises(ValueError, match="n"):
        measure_scaling([1])
    with pytest.raises(ValueError, match="repeat"):
        measure_scaling([64], repeat=0)
    with pytest.raises(ValueError, match="pause"):
        measure_scaling([64], pause=-0.1)


def test_measure_scaling_pause_idles_before_each_timed_call():
    calls = []

    def record(Q, K, V):
        calls.append(time.perf_counter())
        return V

    measure_scaling([64], [Variant("rec", record, 1.0, 1.0)], d=4, repeat=2, pause=0.05)
    # warm-up, two timed calls (each after a 0.05 s pause), one traced-memory call
    assert len(calls) == 4
    assert calls[2] - calls[1] >= 0.05
