"""§3 tour methods: exact bit accounting and a tiny end-to-end run."""

import numpy as np
import pytest

from refimpl.quantization import tour


def test_matrix_bits_hand_values():
    assert tour.matrix_bits((10, 100), "binary") == 16 * 64 + 32      # 1000 signs: 16 words
    assert tour.matrix_bits((10, 100), "ternary") == 2 * 16 * 64 + 32
    assert tour.matrix_bits((10, 100), "uniform", 4) == 63 * 64 + 64  # 16 codes per word
    assert tour.matrix_bits((10, 100), "uniform", 3) == 48 * 64 + 64  # 21 codes per word
    assert tour.matrix_bits((10, 100), "kmeans", 4) == 63 * 64 + 16 * 32
    assert tour.matrix_bits((10, 100), "multibit", 2) == 2 * 16 * 64 + 2 * 32 * 10
    with pytest.raises(ValueError, match="scheme"):
        tour.matrix_bits((2, 2), "fp8")


def test_quantizers_hit_their_codebooks(rng):
    W = rng.standard_normal((12, 20))
    assert len(np.unique(tour._bwn(W))) == 2
    assert len(np.unique(tour._twn(W))) == 3
    assert np.all([len(np.unique(r)) <= 4 for r in tour._multibit2(W)])


def test_tour_runs_tiny():
    from refimpl.compare.tour import config_for, run_tour

    names = ["bwn-binary", "twn-ternary", "uniform-4bit", "kmeans-4bit", "multibit-2bit"]
    run = run_tour(config_for(tiny=True, baselines=("lstm",)), only=names, log=lambda *a: None)
    rows = {r["method"]: r for r in run.rows}
    for n in names:
        assert rows[n]["status"] == "ok", rows[n]
    # a 1-bit model is smaller than a 4-bit one, which is smaller than float32
    assert rows["bwn-binary"]["bits"] < rows["uniform-4bit"]["bits"] < \
        rows["baseline-lstm"]["bits"]
