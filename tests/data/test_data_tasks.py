"""Task containers: validation and helpers."""

import numpy as np
import pytest

from refimpl.data import ClassificationTask, LMTask, Vocab, lm_targets


def _cls(**over):
    X = np.array([[4, 5, 0], [5, 0, 0]], dtype=np.int64)
    L = np.array([2, 1], dtype=np.int64)
    y = np.array([0, 1], dtype=np.int64)
    kw = dict(name="t", vocab=Vocab(["a", "b"]), X_train=X, len_train=L, y_train=y, X_val=X,
              len_val=L, y_val=y, X_test=X, len_test=L, y_test=y, n_classes=2,
              label_names=["neg", "pos"])
    kw.update(over)
    return ClassificationTask(**kw)


def test_classification_task_validates():
    t = _cls()
    assert "2 classes" in t.summary()
    with pytest.raises(ValueError, match="X must be int64"):
        _cls(X_val=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="lengths"):
        _cls(len_test=np.array([1], dtype=np.int64))
    with pytest.raises(ValueError, match="label_names"):
        _cls(label_names=["x"])
    with pytest.raises(ValueError, match="which"):
        t.split("dev")


def test_lm_targets_hand_values():
    X = np.array([[2, 7, 8, 3], [2, 9, 3, 0]], dtype=np.int64)
    L = np.array([4, 3])
    inp, tgt, mask = lm_targets(X, L)
    assert inp.tolist() == [[2, 7, 8], [2, 9, 3]]
    assert tgt.tolist() == [[7, 8, 3], [9, 3, 0]]
    assert mask.tolist() == [[True, True, True], [True, True, False]]


def test_lm_task_validates_rows():
    v = Vocab(["a", "b"])
    X = np.array([[2, 4, 3], [2, 3, 0]], dtype=np.int64)
    L = np.array([3, 2], dtype=np.int64)
    t = LMTask("t", v, X, L, X, L, X, L, bayes_nll=1.0)
    assert t.bayes_perplexity == pytest.approx(np.e)
    assert t.n_tokens("test") == 3
    assert t.stream("train").tolist() == [4, 3, 3]
    bad = X.copy()
    bad[0, 0] = 4
    with pytest.raises(ValueError, match="<bos>"):
        LMTask("t", v, bad, L, X, L, X, L)
    bad = X.copy()
    bad[0, 2] = 4
    with pytest.raises(ValueError, match="<eos>"):
        LMTask("t", v, X, L, X, L, bad, L)
    with pytest.raises(ValueError, match="which"):
        t.n_tokens("dev")
