"""LightRNN word allocation (Survey §5.2): matching vs greedy, properties, errors."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import check
from refimpl.sharing import lightrnn_allocate, lightrnn_cost_matrix


@pytest.mark.parametrize("seed", [0, 1])
def test_registered_check(seed):
    check.verify("lightrnn-allocation", seed=seed)


def test_cost_matrix_layout():
    rl, cl = np.array([[1.0, 2.0]]), np.array([[10.0, 20.0, 30.0]])
    assert lightrnn_cost_matrix(rl, cl).tolist() == [[11, 21, 31, 12, 22, 32]]  # slot r·C + c


@pytest.mark.parametrize("seed", range(3))
def test_properties_on_larger_tables(seed):
    rng = np.random.default_rng(seed)
    V, R, C = 40, 7, 6
    rl, cl = rng.random((V, R)), rng.random((V, C))
    rows_e, cols_e, cost_e = lightrnn_allocate(rl, cl)
    rows_g, cols_g, cost_g = lightrnn_allocate(rl, cl, method="greedy")
    for rows, cols in ((rows_e, cols_e), (rows_g, cols_g)):
        assert len(set(zip(rows.tolist(), cols.tolist()))) == V
    # both totals are sums of V costs in [0, 2]: rounding ≤ V·eps·2V
    assert cost_e <= cost_g + 2 * V * V * np.finfo(float).eps
    again = lightrnn_allocate(rl, cl)
    assert np.array_equal(again[0], rows_e) and again[2] == cost_e


def test_full_table_is_a_permutation():
    rng = np.random.default_rng(5)
    rows, cols, _ = lightrnn_allocate(rng.random((6, 2)), rng.random((6, 3)))
    assert sorted(rows * 3 + cols) == list(range(6))


def test_bad_input():
    with pytest.raises(ValueError, match="R·C must be"):
        lightrnn_allocate(np.zeros((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="row_loss contains NaN"):
        lightrnn_allocate(np.array([[np.nan, 0.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="col_loss contains NaN"):
        lightrnn_allocate(np.zeros((1, 2)), np.array([[np.inf, 0.0]]))
    with pytest.raises(ValueError, match="col_loss must have one row per word"):
        lightrnn_allocate(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="method"):
        lightrnn_allocate(np.zeros((2, 2)), np.zeros((2, 2)), method="mcmf")
