"""Long-range tasks: exact targets, exact distances, the sliding-window ceiling."""

import numpy as np
import pytest

from refimpl.data import (make_associative_recall, make_copy, make_needle,
                          sliding_window_ceiling)


def _solve_recall(task, X, L, window=None):
    """Read the answer from the last `window` tokens (all if None); guess class 0 if absent."""
    v = task.vocab
    out = []
    for x, n in zip(X, L):
        toks = v.decode(x[:n])
        seen = toks if window is None else toks[max(0, n - window):]
        q = toks[-1]
        ans = 0
        for i in range(len(seen) - 2):  # a key followed by its value, both inside the window
            if seen[i] == q and seen[i + 1].startswith("v"):
                ans = int(seen[i + 1][1:])
        out.append(ans)
    return np.array(out)


def test_recall_targets_and_distances_are_exact():
    task = make_associative_recall(n_train=200, n_val=20, n_test=300, n_pairs=6, n_keys=10,
                                   n_values=5, gap=3, rng=0)
    X, L, y, d = task.split("test")
    assert X.shape == (300, 2 * 6 + 3 + 2) and X.dtype == np.int64
    assert np.array_equal(_solve_recall(task, X, L), y)
    # the token `dist` positions before the end is the queried key
    last = L - 1
    assert np.array_equal(X[np.arange(300), last - d], X[:, -1])
    assert set(np.unique(d)) <= {3 + 3, 5 + 3, 7 + 3, 9 + 3, 11 + 3, 13 + 3}
    keys = X[:, 0:12:2]
    assert all(len(set(k)) == 6 for k in keys)  # distinct keys in a sequence


@pytest.mark.parametrize("window", [4, 8, 12])
def test_window_reader_matches_the_ceiling(window):
    task = make_associative_recall(n_train=10, n_val=10, n_test=3000, n_pairs=6, n_keys=10,
                                   n_values=4, rng=1)
    X, L, y, d = task.split("test")
    acc = np.mean(_solve_recall(task, X, L, window=window) == y)
    ceil = sliding_window_ceiling(d, window, task.n_classes)
    inside = d < window
    assert np.all(_solve_recall(task, X[inside], L[inside], window=window) == y[inside])
    assert abs(acc - ceil) < 0.03, (acc, ceil)
    assert ceil < 1.0


def test_recall_distance_range():
    task = make_associative_recall(n_train=50, n_val=5, n_test=5, n_pairs=8, n_keys=8,
                                   min_distance=10, max_distance=13, rng=0)
    assert set(np.unique(task.dist_train)) == {11, 13}
    with pytest.raises(ValueError, match="no pair has a distance"):
        make_associative_recall(n_pairs=2, n_keys=4, min_distance=2, max_distance=2)
    with pytest.raises(ValueError, match="n_pairs"):
        make_associative_recall(n_pairs=20, n_keys=10)


def test_copy_targets_and_distances():
    task = make_copy(n_train=300, n_val=10, n_test=10, prefix_len=5, n_symbols=6, min_delay=2,
                     max_delay=9, rng=0)
    X, L, y, d = task.split("train")
    assert X.shape == (300, 5 + 9 + 1)
    v = task.vocab
    Y = task.meta["Y_copy_train"]
    assert Y.shape == (300, 5)
    for i in range(300):
        toks = v.decode(X[i, :L[i]])
        slot = int(toks[-1][1:])
        assert toks[slot] == f"s{y[i]}" == f"s{Y[i, slot]}"
        assert X[i, L[i] - 1 - d[i]] == X[i, slot]
        assert all(t == "_" for t in toks[5:-1]) and 2 <= len(toks) - 6 <= 9
    assert d.min() >= 1 + 2 and d.max() <= 5 + 9


def test_needle_targets_distances_and_balance():
    task = make_needle(n_train=4000, n_val=10, n_test=10, seq_len=40, n_classes=4,
                       min_distance=5, max_distance=30, rng=0)
    X, L, y, d = task.split("train")
    assert X.shape == (4000, 40) and np.all(L == 40)
    is_needle = X < 4 + 4  # needle ids are the first 4 regular ids
    assert np.all(is_needle.sum(1) == 1)
    pos = is_needle.argmax(1)
    assert np.array_equal(39 - pos, d)
    assert np.array_equal(X[np.arange(4000), pos] - 4, y)
    assert d.min() == 5 and d.max() == 30
    assert np.all(np.abs(np.bincount(y) / 4000 - 0.25) < 0.03)
    # a last-w reader: correct if the needle is inside, else guesses 0
    w = 12
    guess = np.where(d < w, y, 0)
    ceil = sliding_window_ceiling(d, w, 4)
    assert abs(np.mean(guess == y) - ceil) < 0.02


def test_sliding_window_ceiling_hand_values():
    assert sliding_window_ceiling([0, 1, 2, 3], 2, 2) == pytest.approx(0.5 + 0.5 * 0.5)
    assert sliding_window_ceiling([5, 6], 10, 4) == 1.0
    assert sliding_window_ceiling([5, 6], 1, 4) == 0.25
    with pytest.raises(ValueError, match="window"):
        sliding_window_ceiling([1], 0, 2)


@pytest.mark.parametrize("make", [make_associative_recall, make_copy, make_needle])
def test_determinism(make):
    a, b, c = make(rng=3), make(rng=3), make(rng=4)
    for k in ("X_train", "y_train", "dist_train", "X_test"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.X_train, c.X_train)
    assert a.X_train.dtype == np.int64 and a.y_train.dtype == np.int64
    assert "dependency distance" in a.summary()


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_distance"):
        make_needle(seq_len=10, max_distance=10)
    with pytest.raises(ValueError, match="min_distance"):
        make_needle(seq_len=10, min_distance=8, max_distance=3)
    with pytest.raises(ValueError, match="max_delay"):
        make_copy(min_delay=5, max_delay=2)
    with pytest.raises(ValueError, match="n_classes"):
        make_needle(n_classes=1)
