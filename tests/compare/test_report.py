"""§8.1 reading of the tour: family ranking by score ÷ size, the Pareto frontier, the plots."""

from __future__ import annotations

from refimpl.compare.report import (
    compare_with_survey,
    pareto_front,
    plot_comparison,
    rank_families,
)

ROWS = [
    {"method": "baseline-lstm", "family": "baseline", "bytes": 1000, "accuracy": 0.9},
    {"method": "kd", "family": "distillation", "bytes": 250, "accuracy": 0.85},
    {"method": "q4", "family": "quantization", "bytes": 125, "accuracy": 0.88},
    {"method": "p90", "family": "pruning", "bytes": 200, "accuracy": 0.70},
    {"method": "p50", "family": "pruning", "bytes": 600, "accuracy": 0.89},
    {"method": "dc", "family": "combination", "bytes": 60, "accuracy": 0.80,
     "kernel_us_b1": 3.0, "kernel_us_b64": 9.0},
    {"method": "bad", "family": "pruning", "bytes": None, "accuracy": None, "status": "error"},
]


def test_rank_families_by_best_ratio():
    rk = rank_families(ROWS)
    # ratios (accuracy ÷ MB): dc 0.80/6e-5, q4 0.88/1.25e-4, kd 0.85/2.5e-4, p90 0.70/2e-4
    assert [d["family"] for d in rk] == ["combination", "quantization", "pruning",
                                         "distillation"]
    prune = rk[2]
    assert prune["best_method"] == "p90" and prune["n"] == 2
    assert prune["quality_range"] == (0.70, 0.89) and prune["bytes_range"] == (200, 600)
    assert abs(rk[1]["ratio"] - 0.88 / 125e-6) < 1e-6
    lines = compare_with_survey(rk)
    assert lines[0] == "quantization: rank 1 here, 2 in §8.1 (agrees on top/bottom half)"
    assert any(ln.startswith("distillation: rank 3 here, 1 in §8.1 (disagrees") for ln in lines)
    assert "not ranked by §8.1: combination" in lines[-1]


def test_pareto_front():
    assert [r["method"] for r in pareto_front(ROWS)] == ["dc", "q4", "p50", "baseline-lstm"]


def test_plot_comparison(tmp_path):
    path = tmp_path / "c.png"
    plot_comparison(ROWS, path)
    assert path.stat().st_size > 10_000
