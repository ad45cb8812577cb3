"""The order-dependent sentiment task and its labelling rule."""

import numpy as np
import pytest

from refimpl.data import make_sentiment, sentiment_rule_label, sentiment_score
from refimpl.data.vocab import tokenize_words

SMALL = dict(n_train=600, n_val=100, n_test=300, vocab_size=600)


@pytest.mark.parametrize("text, label", [
    ("the movie was good", 1),
    ("the movie was not good", 0),
    ("the movie was bad", 0),
    ("the movie was not bad", 1),
    ("the movie was not at all good", 0),  # negation scopes over the next sentiment word
    ("good but boring", 0),  # the clause after "but" dominates
    ("boring but good", 1),
    ("the plot was boring but the acting was very good", 1),
    ("the plot was good and the acting was very bad", 0),  # intensifier doubles: 1 - 2 < 0
    ("the plot was very good and the acting was bad", 1),
    ("the plot was not good and the acting was great", None),  # -1 + 1 = 0
    ("not good and great", None),
    ("the film was never dull", 1),
    ("it was not not good", 1),  # double negation
    ("the movie was not very good", 0),
    ("the movie was good and not bad", 1),
    ("it was good but the music was not great", 0),
    ("it was bad but not boring", 1),
    ("not boring but", 1),  # an empty last clause does not decide: the earlier one does
])
def test_rule_label_on_hand_written_sentences(text, label):
    if label is None:
        with pytest.raises(ValueError, match="no net sentiment"):
            sentiment_rule_label(text)
        assert sentiment_rule_label(text, n_classes=3) == 1
    else:
        assert sentiment_rule_label(text) == label
        assert sentiment_rule_label(tokenize_words(text)) == label
        assert sentiment_rule_label(text, n_classes=3) == 2 * label


def test_sentiment_score_hand_values():
    assert sentiment_score("very very good") == [4]
    assert sentiment_score("not very good but bad and good") == [-2, 0]
    assert sentiment_score("the plot of the movie") == [0]


def test_shapes_dtypes_and_vocab():
    task = make_sentiment(**SMALL, max_len=20, rng=3)
    for s, n in (("train", 600), ("val", 100), ("test", 300)):
        X, L, y = task.split(s)
        assert X.shape == (n, 20) and X.dtype == np.int64
        assert L.shape == (n,) and L.dtype == np.int64 and y.dtype == np.int64
        assert L.min() >= 1 and L.max() <= 20
        # padding is exactly the tail beyond the length, and no real token is <pad>
        pad = np.arange(20)[None, :] >= L[:, None]
        assert np.all((X == 0) == pad)
        assert X.max() < len(task.vocab)
    assert len(task.vocab) == 600
    # vocab is frequency ordered on train
    c = task.vocab.counts[4:]
    assert np.all(np.diff(c) <= 0)
    assert "sentiment" in task.summary()


def test_labels_equal_the_rule_on_every_sentence():
    task = make_sentiment(**SMALL, rng=1)
    for split in ("train", "val", "test"):
        X, L, y = task.split(split)
        texts = getattr(task, f"texts_{split}")
        for i in range(len(y)):
            toks = task.vocab.decode(X[i, :L[i]])
            assert toks == texts[i].split()
            assert sentiment_rule_label(toks) == y[i]


def test_determinism_and_seed_dependence():
    a = make_sentiment(**SMALL, rng=7)
    b = make_sentiment(**SMALL, rng=7)
    c = make_sentiment(**SMALL, rng=8)
    for k in ("X_train", "len_train", "y_train", "X_test", "y_test"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert a.vocab == b.vocab
    assert not np.array_equal(a.X_train, c.X_train)
    g = np.random.default_rng(7)
    assert np.array_equal(make_sentiment(**SMALL, rng=g).X_train, a.X_train)


def test_label_balance():
    task = make_sentiment(n_train=4000, n_val=10, n_test=10, vocab_size=600, rng=0)
    frac = task.y_train.mean()
    assert 0.46 < frac < 0.54, frac


def test_three_way_and_label_noise():
    task = make_sentiment(**SMALL, n_classes=3, label_noise=0.2, rng=0)
    assert task.n_classes == 3 and task.label_names == ["negative", "neutral", "positive"]
    bal = np.bincount(task.y_test, minlength=3) / len(task.y_test)
    assert np.all(bal > 0.2), bal
    # val/test are clean: they equal the rule
    for i in range(len(task.y_test)):
        assert sentiment_rule_label(task.texts_test[i], n_classes=3) == task.y_test[i]
    # train: the recorded number of noisy labels differ from the rule
    rule = np.array([sentiment_rule_label(t, n_classes=3) for t in task.texts_train])
    n_diff = int((rule != task.y_train).sum())
    assert n_diff == task.meta["n_noisy_train_labels"]
    assert 0.12 * 600 < n_diff < 0.28 * 600


def _bow(X, V):
    """Sparse word-count features (N, V); the <pad> column is dropped."""
    from scipy.sparse import csr_matrix

    rows, cols = np.nonzero(X)
    return csr_matrix((np.ones(rows.size), (rows, X[rows, cols])), shape=(X.shape[0], V))


def test_bag_of_words_is_well_below_the_rule(sklearn):
    """A bag-of-words logistic regression cannot read negation scope or "but": it tops out
    far below the rule's 100 % (with lots of data, ~70 %)."""
    from sklearn.linear_model import LogisticRegression

    task = make_sentiment(n_train=5000, n_val=10, n_test=2000, vocab_size=600, rng=0)
    V = len(task.vocab)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(_bow(task.X_train, V), task.y_train)
    acc_bow = clf.score(_bow(task.X_test, V), task.y_test)
    acc_rule = np.mean([sentiment_rule_label(t) for t in task.texts_test] == task.y_test)
    print(f"bag-of-words test accuracy {acc_bow:.3f}, rule {acc_rule:.3f}")
    assert acc_rule == 1.0
    # well below the rule, yet well above chance (the sentiment words alone are informative,
    # so bag-of-words is a fair baseline rather than a strawman)
    assert 0.6 < acc_bow < 0.82, acc_bow


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_classes"):
        make_sentiment(**SMALL, n_classes=4)
    with pytest.raises(ValueError, match="label_noise"):
        make_sentiment(**SMALL, label_noise=0.7)
    with pytest.raises(ValueError, match="vocab_size"):
        make_sentiment(n_train=5, n_val=5, n_test=5, vocab_size=50)
    with pytest.raises(ValueError, match="p_but"):
        make_sentiment(**SMALL, p_but=1.5)
    with pytest.raises(TypeError, match="n_train"):
        make_sentiment(n_train=2.5)
    with pytest.raises(ValueError, match="n_classes"):
        sentiment_rule_label("good", n_classes=5)
    # every sentence has two clauses of two phrases: none fits in 8 tokens
    with pytest.raises(ValueError, match="max_len=8 rejects"):
        make_sentiment(n_train=5, n_val=1, n_test=1, vocab_size=600, max_len=8, p_and=1.0,
                       p_but=1.0)
