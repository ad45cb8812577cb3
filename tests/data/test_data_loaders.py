"""User CSV/TSV and plain-text loaders: happy path and clear errors on malformed input."""

import numpy as np
import pytest

from refimpl.data import BOS, EOS, load_text_classification, load_text_lm

GOOD = "text,label,extra\n" + "".join(
    f"\"sample {i}, with a comma\",{'pos' if i % 2 else 'neg'},x\n" for i in range(40))


def _write(tmp_path, name, content, mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def test_csv_happy_path(tmp_path):
    p = _write(tmp_path, "reviews.csv", GOOD)
    task = load_text_classification(p, rng=0)
    assert task.name == "reviews"
    assert task.label_names == ["neg", "pos"] and task.n_classes == 2
    n = len(task.y_train) + len(task.y_val) + len(task.y_test)
    assert n == 40 and len(task.y_test) == 4 and len(task.y_val) == 4
    assert np.all(np.bincount(task.y_test) == 2)  # stratified
    for X, L, _y in (task.split(s) for s in ("train", "val", "test")):
        assert X.dtype == np.int64 and X.shape[1] == 6  # sample, i, ",", with, a, comma
        assert np.all(L == 6)
    # texts survive, and the quoted comma stays inside the text
    t = task.texts_test[0]
    assert t.startswith("sample ") and t.endswith("with a comma")
    toks = task.vocab.decode(task.X_train[0, :task.len_train[0]])
    assert toks[0] == "sample" and toks[2:] == [",", "with", "a", "comma"]
    # deterministic, and the split depends on the seed
    again = load_text_classification(p, rng=0)
    assert np.array_equal(again.X_train, task.X_train) and again.texts_test == task.texts_test
    other = load_text_classification(p, rng=1)
    assert other.texts_test != task.texts_test


def test_tsv_and_column_names(tmp_path):
    p = _write(tmp_path, "data.tsv", "label\tsentence\n" + "".join(
        f"{c}\tword{i} and more\n" for i in range(12) for c in "abc"))
    task = load_text_classification(p, text_column="sentence", val_fraction=0.25,
                                    test_fraction=0.25)
    assert task.label_names == ["a", "b", "c"]
    assert len(task.y_test) == 9 and len(task.y_val) == 9 and len(task.y_train) == 18


@pytest.mark.parametrize("content, match", [
    ("", "file is empty"),
    ("   \n\n", "file is empty"),
    ("text,label\n", "no data rows"),
    ("review,label\nok,a\nfine,b\n", "text_column 'text' not found"),
    ("text,class\nok,a\nfine,b\n", "label_column 'label' not found"),
    ("text;label\nok;a\nfine;b\n", "is the delimiter right"),
    ("text,label\nok,a\nfine,b,extra\nmore,a\n", "line 3 has 3 fields, the header has 2"),
    ("text,label\nok\n", "line 2 has 1 fields"),
    ("text,label\n,a\nx,b\n", "line 2 has an empty 'text' cell"),
    ("text,label\nx,a\ny,\n", "line 3 has an empty 'label' cell"),
    ("text,label\nx,a\ny,a\nz,b\n", "label 'b' has only one example"),
    ("text,label\nx,a\ny,a\n", "at least 2 distinct labels"),
    ("text,label\n!!!,a\n...,a\nz,b\nw,b\n", None),  # punctuation is a token: fine
])
def test_csv_errors(tmp_path, content, match):
    p = _write(tmp_path, "bad.csv", content)
    if match is None:
        assert load_text_classification(p).n_classes == 2
        return
    with pytest.raises(ValueError, match=match) as e:
        load_text_classification(p)
    assert "bad.csv" in str(e.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_classification(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="is a directory"):
        load_text_lm(tmp_path)
    p = _write(tmp_path, "latin.csv", "text,label\ncaf\xe9,a\n".encode("latin-1"), mode="wb")
    with pytest.raises(ValueError, match="not valid utf-8"):
        load_text_classification(p)
    p = _write(tmp_path, "ok.csv", GOOD)
    with pytest.raises(ValueError, match="tokenizer"):
        load_text_classification(p, tokenizer="bpe")
    with pytest.raises(ValueError, match="val_fraction"):
        load_text_classification(p, val_fraction=0.6, test_fraction=0.5)
    with pytest.raises(ValueError, match="delimiter"):
        load_text_classification(p, delimiter="::")


def test_text_lm_word_and_char(tmp_path):
    lines = [f"line number {i} says hello" for i in range(20)]
    p = _write(tmp_path, "corpus.txt", "\n".join(lines[:10]) + "\n\n" + "\n".join(lines[10:]))
    task = load_text_lm(p, max_len=4)
    # each 5-word line is cut into 4 + 1 words: 40 rows, split 32/4/4 in file order
    assert (len(task.len_train), len(task.len_valid), len(task.len_test)) == (32, 4, 4)
    assert task.train.shape[1] == 6 and np.all(task.train[:, 0] == BOS)
    assert np.all(task.test[np.arange(4), task.len_test - 1] == EOS)
    assert task.vocab.decode(task.train[0]) == ["line", "number", "0", "says"]
    assert task.bayes_nll is None
    # numbers 18, 19 only appear in valid/test -> <unk>
    assert "<unk>" in task.vocab.decode(task.test[-2])
    c = load_text_lm(p, tokenizer="char", max_len=200)
    assert "".join(c.vocab.decode(c.train[0])) == lines[0]


def test_text_lm_errors(tmp_path):
    with pytest.raises(ValueError, match="file is empty"):
        load_text_lm(_write(tmp_path, "e.txt", "\n \n"))
    with pytest.raises(ValueError, match="at least 3 non-empty"):
        load_text_lm(_write(tmp_path, "two.txt", "a b\n\nc d\n"))
    with pytest.raises(ValueError, match="max_len"):
        load_text_lm(_write(tmp_path, "ok.txt", "a\nb\nc\n"), max_len=0)
