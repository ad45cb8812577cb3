"""§6.2: differentiated softmax and WEST."""

import numpy as np
import pytest

from refimpl.decomposition import (
    DifferentiatedSoftmax,
    block_diag,
    dsoftmax_dense_weight,
    dsoftmax_num_params,
    frequency_partition,
    truncated_svd,
    west_factorize,
    west_num_params,
)
from refimpl.nn import gradcheck


def test_frequency_partition_hand_worked():
    parts = frequency_partition(np.array([5, 50, 1, 20, 7]), [2, 3])
    np.testing.assert_array_equal(parts[0], [1, 3])
    np.testing.assert_array_equal(parts[1], [4, 0, 2])
    with pytest.raises(ValueError, match="sizes"):
        frequency_partition(np.ones(5), [2, 2])


def test_dsoftmax_equals_block_sparse_dense_and_counts():
    rng = np.random.default_rng(0)
    parts = frequency_partition(rng.integers(0, 100, 30), [5, 10, 15])
    ds = DifferentiatedSoftmax(parts, [6, 3, 1], rng=0)
    h = rng.standard_normal((4, 10))
    W = dsoftmax_dense_weight(ds)
    np.testing.assert_allclose(ds(h).data, h @ W.T + ds.c.data, atol=1e-14)
    assert (W != 0).sum() == 5 * 6 + 10 * 3 + 15 * 1
    assert ds.num_parameters() == dsoftmax_num_params([5, 10, 15], [6, 3, 1]) == 75 + 30
    assert ds.num_parameters_full() == 30 * 10 + 30

    def f(w0, w2, hh):
        ds.W0, ds.W2 = w0, w2
        return ds(hh)

    gradcheck(f, [ds.W0.data, ds.W2.data, h])
    with pytest.raises(ValueError, match="h"):
        ds(np.ones((2, 9)))
    with pytest.raises(ValueError, match="partition"):
        DifferentiatedSoftmax([np.array([0, 1]), np.array([1])], [2, 1])


def test_west_is_per_block_svd_and_optimal():
    rng = np.random.default_rng(0)
    E = rng.standard_normal((30, 12))
    C, D, blocks = west_factorize(E, 6, 3)
    assert C.shape == (30, 6) and D.shape == (6, 12)
    np.testing.assert_array_equal(D, block_diag(blocks))
    assert np.count_nonzero(D[:2, 4:]) == 0  # off-diagonal blocks are zero
    # optimal: error equals the sum of per-block Eckart–Young errors
    err = np.linalg.norm(E - C @ D) ** 2
    ey = sum(np.linalg.norm(E[:, 4 * b:4 * b + 4]
                            - np.prod(truncated_svd(E[:, 4 * b:4 * b + 4], 2)[0:1], axis=0)
                            @ truncated_svd(E[:, 4 * b:4 * b + 4], 2)[1]) ** 2
             for b in range(3))
    assert err == pytest.approx(ey)
    # and no worse than a random block-diagonal D with least-squares C
    Dr = block_diag([rng.standard_normal((2, 4)) for _ in range(3)])
    Cr = np.linalg.lstsq(Dr.T, E.T, rcond=None)[0].T
    assert err <= np.linalg.norm(E - Cr @ Dr) ** 2
    assert west_num_params(30, 12, 6, 3) == 30 * 6 + 6 * 12 // 3
    # full code: exact
    C, D, _ = west_factorize(E, 12, 3)
    np.testing.assert_allclose(C @ D, E, atol=1e-12)
    with pytest.raises(ValueError, match="n_blocks"):
        west_factorize(E, 6, 5)
    with pytest.raises(ValueError, match="code_dim"):
        west_factorize(E, 5, 3)
