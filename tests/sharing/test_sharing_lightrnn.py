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


@pytest.mark.parametrize("seed", [0, 1])
def test_lightrnn_lm_registered_check(seed):
    from refimpl import check

    check.verify("lightrnn-lm", seed=seed)


def test_lightrnn_lm_trains_and_reallocates():
    from refimpl.nn import fit_lm, perplexity
    from refimpl.sharing import LightRNNLanguageModel

    rng = np.random.default_rng(0)
    X = np.concatenate([np.full((40, 1), 2), rng.integers(4, 16, (40, 5)), np.full((40, 1), 3)],
                       1)
    L = np.full(40, 7)
    m = LightRNNLanguageModel(vocab_size=16, num_rows=4, num_cols=4, d_emb=4, d_hidden=8,
                              rng=0)
    before = perplexity(m, X, L)
    fit_lm(m, (X, L), epochs=3, batch_size=8, lr=1e-2, rng=0, progress=False)
    assert perplexity(m, X, L) < before
    m.reallocate_(X, L)
    assert len(set(zip(m.rows.tolist(), m.cols.tolist()))) == 16
    assert m.storage_bits(32) == 32 * m.num_parameters() + 16 * 4


def test_lightrnn_lm_bad_input():
    from refimpl.sharing import LightRNNLanguageModel

    with pytest.raises(ValueError, match="num_rows"):
        LightRNNLanguageModel(vocab_size=10, num_rows=3, num_cols=3, d_emb=2, d_hidden=2)
    m = LightRNNLanguageModel(vocab_size=9, num_rows=3, num_cols=3, d_emb=2, d_hidden=2, rng=0)
    with pytest.raises(ValueError, match="lengths"):
        m.loss(np.array([[2, 4, 3]]), np.array([4]))
    with pytest.raises(ValueError, match="X"):
        m.loss(np.array([[2, 9, 3]]), np.array([3]))
    with pytest.raises(TypeError, match="X"):
        m.loss(np.array([[2.0, 4, 3]]), np.array([3]))
