"""Vocab, tokenisers and padding."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.data import (BOS, EOS, PAD, SPECIALS, UNK, Vocab, pad_sequences, tokenize_chars,
                          tokenize_words)


def test_specials_have_fixed_ids():
    v = Vocab(["x"])
    assert v.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] == list(SPECIALS)
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert [v.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]
    assert v.token_to_id("x") == 4 and len(v) == 5


def test_from_corpus_orders_by_count_then_alphabet_and_filters():
    corpus = [["b", "a", "c", "a"], ["c", "d", "a"], ["e"]]
    v = Vocab.from_corpus(corpus)
    assert v.itos[4:] == ["a", "c", "b", "d", "e"]  # a:3, c:2, then b,d,e (1) alphabetically
    assert v.counts.tolist() == [0, 0, 0, 0, 3, 2, 1, 1, 1]
    assert Vocab.from_corpus(corpus, min_count=2).itos[4:] == ["a", "c"]
    assert Vocab.from_corpus(corpus, max_size=6).itos[4:] == ["a", "c"]
    np.testing.assert_allclose(v.frequencies.sum(), 1.0)


def test_encode_decode_hand_values():
    v = Vocab.from_corpus([["the", "movie", "the"]])
    ids = v.encode(["the", "movie", "zebra"], add_bos=True, add_eos=True)
    assert ids.dtype == np.int64
    assert ids.tolist() == [2, 4, 5, 1, 3]
    assert v.decode(ids) == ["the", "movie", "<unk>"]
    assert v.decode(ids, strip_special=False) == ["<bos>", "the", "movie", "<unk>", "<eos>"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.sampled_from(list("abcdefg")), min_size=1, max_size=8),
                min_size=1, max_size=6))
def test_encode_decode_round_trip(corpus):
    v = Vocab.from_corpus(corpus)
    for sent in corpus:
        assert v.decode(v.encode(sent, add_bos=True, add_eos=True)) == sent


def test_tokenizers():
    assert tokenize_words("The movie WASN'T good, really!") == \
        ["the", "movie", "wasn't", "good", ",", "really", "!"]
    assert tokenize_words("") == []
    assert tokenize_chars("ab c") == ["a", "b", " ", "c"]


def test_pad_sequences_hand_values_and_truncation():
    X, L = pad_sequences([[5, 6, 7], [8], [9, 10]])
    assert X.dtype == np.int64 and L.dtype == np.int64
    assert X.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert L.tolist() == [3, 1, 2]
    X, L = pad_sequences([[5, 6, 7], [8]], max_len=2)
    assert X.tolist() == [[5, 6], [8, 0]] and L.tolist() == [2, 1]
    X, L = pad_sequences([[5], []], max_len=3)
    assert X.tolist() == [[5, 0, 0], [0, 0, 0]] and L.tolist() == [1, 0]


def test_pad_sequences_does_not_mutate_input():
    seqs = [np.array([4, 5]), np.array([6])]
    pad_sequences(seqs, max_len=1)
    assert seqs[0].tolist() == [4, 5]


def test_bad_inputs_raise_naming_the_argument():
    with pytest.raises(ValueError, match="tokens must be unique"):
        Vocab(["a", "a"])
    with pytest.raises(ValueError, match="special"):
        Vocab(["<pad>"])
    with pytest.raises(ValueError, match="counts"):
        Vocab(["a", "b"], [1])
    with pytest.raises(TypeError, match="corpus"):
        Vocab.from_corpus("just a string")
    with pytest.raises(TypeError, match="corpus"):
        Vocab.from_corpus(["a sentence", "not tokenised"])
    with pytest.raises(ValueError, match="min_count"):
        Vocab.from_corpus([["a"]], min_count=0)
    with pytest.raises(ValueError, match="max_size"):
        Vocab.from_corpus([["a"]], max_size=2)
    v = Vocab(["a"])
    with pytest.raises(TypeError, match="tokens"):
        v.encode("a b")
    with pytest.raises(ValueError, match="ids"):
        v.decode([0, 9])
    with pytest.raises(ValueError, match="sequences"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        pad_sequences([[1], [0.5]])
    with pytest.raises(ValueError, match="max_len"):
        pad_sequences([[1]], max_len=0)
    with pytest.raises(TypeError, match="text"):
        tokenize_words(3)
