"""§4.4 distilled BiLSTM (Tang et al. 2019): the logit-MSE objective (hand values, gradient
check, torch mse_loss) and the augmentation (masking, same-class replacement, n-gram sampling:
hand-checked extremes and frequencies)."""

import numpy as np
import pytest

from refimpl.distillation import distilled_bilstm_loss_t, tang_augment
from refimpl.nn import Tensor, gradcheck


def test_logit_mse_hand_value_and_alpha():
    zs = np.array([[1.0, 0.0], [0.0, 2.0]])
    zt = np.array([[0.0, 0.0], [1.0, 1.0]])
    # mean over the batch of ‖z^B − z^S‖² = (1 + 2) / 2
    assert distilled_bilstm_loss_t(zs, zt).item() == pytest.approx(1.5, rel=1e-15)
    y = np.array([0, 1])
    ce = np.mean([np.log(1 + np.exp(-1.0)), np.log(1 + np.exp(-2.0))])
    assert distilled_bilstm_loss_t(zs, zt, y, alpha=1.0).item() == pytest.approx(ce, rel=1e-13)
    assert distilled_bilstm_loss_t(zs, zt, y, alpha=0.25).item() == pytest.approx(
        0.25 * ce + 0.75 * 1.5, rel=1e-13)
    # a constant shift of the logits changes the MSE but not the softmax (not a KL)
    assert distilled_bilstm_loss_t(zt + 3.0, zt).item() == pytest.approx(9.0 * 2, rel=1e-15)
    with pytest.raises(ValueError, match="labels"):
        distilled_bilstm_loss_t(zs, zt, alpha=0.5)


def test_logit_mse_gradcheck_and_torch(torch):
    rng = np.random.default_rng(0)
    zs, zt = rng.standard_normal((2, 5, 3))
    y = rng.integers(0, 3, 5)
    assert gradcheck(lambda z: distilled_bilstm_loss_t(z, zt, y, 0.3), [zs])["max_abs_err"] < 1e-8
    Fn = torch.nn.functional
    want = 0.3 * Fn.cross_entropy(torch.tensor(zs), torch.tensor(y)) + 0.7 * Fn.mse_loss(
        torch.tensor(zs), torch.tensor(zt), reduction="sum") / 5
    assert distilled_bilstm_loss_t(Tensor(zs), zt, y, 0.3).item() == pytest.approx(float(want),
                                                                                   rel=1e-12)


def _sents(N=200, T=8, V=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(4, V, (N, T))
    L = rng.integers(3, T + 1, N)
    X[np.arange(T)[None] >= L[:, None]] = 0
    return X, L


def test_augment_extremes():
    X, L = _sents()
    wc = -np.ones(30, np.int64)
    Xa, La, src = tang_augment(X, L, wc, n_iter=1, p_mask=0.0, p_pos=0.0, p_ng=0.0, rng=0)
    np.testing.assert_array_equal(Xa, X)  # no operation: the originals
    np.testing.assert_array_equal(La, L)
    Xa, La, _ = tang_augment(X, L, wc, n_iter=1, p_mask=1.0, p_pos=0.0, p_ng=0.0, mask_id=1,
                             rng=0)
    assert np.all(Xa[np.arange(8)[None] < La[:, None]] == 1)  # every word masked
    Xa, La, src = tang_augment(X, L, wc, n_iter=3, p_mask=0.0, p_pos=0.0, p_ng=1.0, rng=0)
    assert np.all((La >= 1) & (La <= np.minimum(5, L[src])))  # n-grams of 1..5 words
    for i in range(len(Xa)):  # each is a contiguous piece of its source
        row, s = Xa[i, :La[i]], X[src[i], :L[src[i]]]
        assert any(np.array_equal(row, s[a:a + La[i]]) for a in range(L[src[i]] - La[i] + 1))


def test_augment_same_class_replacement_and_frequencies():
    X, L = _sents(N=400)
    wc = -np.ones(30, np.int64)
    wc[4:10] = 0   # class 0: ids 4..9
    wc[10:20] = 1  # class 1: ids 10..19; ids 20..29 never replaced
    Xa, La, src = tang_augment(X, L, wc, n_iter=1, p_mask=0.0, p_pos=1.0, p_ng=0.0, rng=1)
    real = np.arange(8)[None] < L[:, None]
    orig, new = X[real], Xa[real]
    fixed = wc[orig] < 0
    assert np.all(new[fixed] == orig[fixed])
    assert np.all(new[~fixed] != orig[~fixed]) and np.all(wc[new[~fixed]] == wc[orig[~fixed]])
    Xa, La, _ = tang_augment(X, L, wc, n_iter=1, p_mask=0.3, p_pos=0.0, p_ng=0.0, mask_id=1,
                             rng=2)
    freq = float((Xa[real] == 1).mean())
    n = int(real.sum())
    assert abs(freq - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    a = tang_augment(X, L, wc, rng=5)
    b = tang_augment(X, L, wc, rng=5)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="p_mask"):
        tang_augment(X, L, wc, p_mask=0.7, p_pos=0.5)
    with pytest.raises(ValueError, match="word_classes"):
        tang_augment(X, L, wc[:10])
