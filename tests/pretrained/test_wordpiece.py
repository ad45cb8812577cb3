"""The from-scratch WordPiece vocabulary learner (refimpl.pretrained.wordpiece): merges worked by
hand for both criteria, properties (every corpus word segments without [UNK], ids 0..V-1,
determinism, min_frequency, no mutation), the learned vocabulary in refimpl's tokenizer, and the
``tokenizers`` library's WordPieceTrainer on real text (never skipped in CI)."""

import importlib
import os

import pytest

from refimpl.pretrained.evaluate import real_text
from refimpl.pretrained.tokenizer import WordPieceTokenizer
from refimpl.pretrained.wordpiece import (SPECIAL_TOKENS, learn_wordpiece, save_vocab,
                                          word_counts)
from refimpl.pretrained.tokenizer import load_vocab

HUG = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
ALPHABET = list(SPECIAL_TOKENS) + list("bghnpsu") + ["##g", "##n", "##s", "##u"]


def _require(name):
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


def test_score_criterion_by_hand():
    # freq: h 15, p 17, b 4, ##u 36, ##g 20, ##n 16, ##s 5. Scores: every pair 1/36 except
    # ##g##s = 5 / (20 · 5) = 1/20 -> "##gs". Then all six pairs score 1/36; the largest count
    # (p ##u, 17) wins -> "pu"; then h ##u = 15 / (15 · 19), b ##u and ##u ##gs tie at 1/19 and
    # the largest count (h ##u, 15) wins -> "hu"
    v = learn_wordpiece(HUG, 19, criterion="score")
    assert list(v) == ALPHABET + ["##gs", "pu", "hu"]
    assert list(v.values()) == list(range(19))


def test_frequency_criterion_by_hand():
    # BPE with ##: ##u##g (20), ##u##n (16), h##ug (15), then p##un (12)
    v = learn_wordpiece(HUG, 20, criterion="frequency")
    assert list(v) == ALPHABET + ["##ug", "##un", "hug", "pun"]


def test_vocabulary_works_in_the_tokenizer(tmp_path):
    v = learn_wordpiece(HUG, 19, criterion="frequency")
    tok = WordPieceTokenizer(v)
    assert tok.tokenize("Hugs puns") == ["hug", "##s", "p", "##un", "##s"]
    save_vocab(v, tmp_path / "vocab.txt")
    assert load_vocab(tmp_path / "vocab.txt") == v


@pytest.mark.parametrize("criterion", ["score", "frequency"])
def test_real_text_properties(criterion):
    texts = real_text(80, "train")
    counts = word_counts(texts)
    before = dict(counts)
    v = learn_wordpiece(counts, 300, criterion=criterion)
    assert counts == before  # not mutated
    assert len(v) == 300 and sorted(v.values()) == list(range(300))
    assert [t for t in v][:5] == list(SPECIAL_TOKENS)
    assert v == learn_wordpiece(texts, 300, criterion=criterion)  # texts or counts: same
    tok = WordPieceTokenizer(v)
    for w in counts:  # every corpus word segments, without [UNK], back to itself
        pieces = tok.tokenize(w)
        assert "[UNK]" not in pieces
        assert "".join(p.removeprefix("##") for p in pieces) == w


def test_min_frequency_stops_early():
    v = learn_wordpiece(HUG, 100, criterion="frequency", min_frequency=15)
    assert list(v)[len(ALPHABET):] == ["##ug", "##un", "hug"]  # the next pair occurs 12 times


def test_matches_tokenizers_wordpiece_trainer_on_real_text():
    """Frequency mode is what ``tokenizers``' WordPieceTrainer does (a BpeTrainer with "##").
    Its tie-break uses ids of the ##c tokens in hash-map order, so equal-count pairs may be
    merged in another order; measured on 300 paragraphs, vocabulary 500: identical alphabet,
    >= 95 % shared tokens, >= 95 % identical segmentations of held-out words."""
    hf = _require("tokenizers")
    texts = real_text(300, "train")
    V = 500
    ours = learn_wordpiece(texts, V, criterion="frequency")
    tk = hf.Tokenizer(hf.models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = hf.normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = hf.pre_tokenizers.BertPreTokenizer()
    tk.train_from_iterator(texts, hf.trainers.WordPieceTrainer(
        vocab_size=V, special_tokens=list(SPECIAL_TOKENS), min_frequency=0,
        show_progress=False))
    theirs = tk.get_vocab()

    def alphabet(v):
        return {t for t in v if len(t) == 1 or (t.startswith("##") and len(t) == 3)}

    assert alphabet(ours) == alphabet(theirs)
    assert len(ours) == len(theirs) == V
    overlap = len(set(ours) & set(theirs)) / V
    assert overlap >= 0.95, overlap
    a, b = WordPieceTokenizer(ours), WordPieceTokenizer(theirs)
    words = list(word_counts(real_text(100, "heldout")))
    agree = sum(a.tokenize(w) == b.tokenize(w) for w in words) / len(words)
    assert agree >= 0.95, agree
    # the score criterion is a different vocabulary (not what tokenizers implements)
    score = learn_wordpiece(texts, V, criterion="score")
    assert len(set(score) & set(theirs)) / V < overlap


def test_bad_input():
    with pytest.raises(ValueError, match="vocab_size"):
        learn_wordpiece(HUG, 0)
    with pytest.raises(ValueError, match="criterion"):
        learn_wordpiece(HUG, 20, criterion="likelihood")
    with pytest.raises(ValueError, match="texts"):
        learn_wordpiece([], 20)
    with pytest.raises(TypeError, match="texts"):
        learn_wordpiece("hug pug", 20)
    with pytest.raises(TypeError, match="texts"):
        learn_wordpiece(["hug", 3], 20)
    with pytest.raises(ValueError, match="texts"):
        learn_wordpiece({"hug": 0}, 20)
    with pytest.raises(ValueError, match="min_frequency"):
        learn_wordpiece(HUG, 20, min_frequency=-1)
    with pytest.raises(TypeError, match="special_tokens"):
        learn_wordpiece(HUG, 20, special_tokens=["[PAD]", ""])
