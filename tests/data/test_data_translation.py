"""Synthetic translation and corpus BLEU."""

import math

import numpy as np
import pytest

from refimpl.data import bleu, make_translation, reference_translate


def test_targets_are_the_reference_translation():
    task = make_translation(n_train=300, n_val=20, n_test=50, rng=0)
    for s in ("train", "val", "test"):
        S, SL = getattr(task, f"src_{s}"), getattr(task, f"src_len_{s}")
        T, TL = getattr(task, f"tgt_{s}"), getattr(task, f"tgt_len_{s}")
        assert S.dtype == T.dtype == np.int64
        assert np.all(T[:, 0] == task.bos_id)
        assert np.all(T[np.arange(len(TL)), TL - 1] == task.eos_id)
        assert np.all(S[np.arange(len(SL)), SL - 1] == task.eos_id)
        for i in range(len(SL)):
            src = task.src_vocab.decode(S[i, :SL[i]])
            tgt = task.tgt_vocab.decode(T[i, :TL[i]])
            assert reference_translate(src) == tgt
    refs = task.references("test")
    assert bleu(refs, refs) == 1.0


def test_reordering_hand_example():
    from refimpl.data.translation import _LEX
    src = [_LEX["cat"], _LEX["black"], "ga", _LEX["fish"], "o", _LEX["quickly"], _LEX["saw"]]
    assert reference_translate(src) == ["the", "black", "cat", "saw", "the", "fish", "quickly"]
    with pytest.raises(ValueError, match="src_tokens"):
        reference_translate([_LEX["cat"], _LEX["saw"]])


def test_determinism():
    a, b, c = (make_translation(n_train=200, n_val=10, n_test=10, rng=s) for s in (1, 1, 2))
    assert np.array_equal(a.src_train, b.src_train) and np.array_equal(a.tgt_train, b.tgt_train)
    assert not np.array_equal(a.src_train, c.src_train)


def test_bleu_identical_is_one():
    h = ["the cat sat on the mat", "a b c d e f"]
    assert bleu(h, h) == 1.0
    assert bleu([h[0].split()], [h[0].split()]) == 1.0


def test_bleu_papineni_modified_unigram_precision():
    # Papineni et al. (2002), the "the the the ..." example: clipped unigram precision 2/7
    s, d = bleu(["the the the the the the the"], ["the cat is on the mat"], max_n=1,
                return_details=True)
    assert d["matches"][0] == 2 and d["totals"][0] == 7 and d["bp"] == 1.0
    assert s == pytest.approx(2 / 7, abs=1e-15)
    # with two references the clip is the max count over references (2 from the first)
    s = bleu(["the the the the the the the"],
             [["the cat is on the mat", "there is a cat on the mat"]], max_n=1,
             multi_reference=True)
    assert s == pytest.approx(2 / 7, abs=1e-15)


def test_bleu_hand_values_four_grams():
    # p1..p4 = 4/5, 3/4, 2/3, 1/2 -> geometric mean (1/5)^(1/4), no brevity penalty
    assert bleu(["a b c d e"], ["a b c d f"]) == pytest.approx(5 ** -0.25, abs=1e-15)
    # pooled over the corpus, not averaged per sentence: p1 = (4+2)/(5+2), p2 = (3+1)/(4+1)
    s = bleu(["a b c d e", "x y"], ["a b c d f", "x y"], max_n=2)
    assert s == pytest.approx(math.sqrt(6 / 7 * 4 / 5), abs=1e-15)


def test_bleu_brevity_penalty():
    # c = 2, r = 6: BP = exp(1 - 6/2) = exp(-2); precisions are 1
    assert bleu(["the cat"], ["the cat is on the mat"], max_n=2) == pytest.approx(math.exp(-2))
    # longer hypothesis: no penalty
    s, d = bleu(["a b c d e f g"], ["a b c d"], max_n=1, return_details=True)
    assert d["bp"] == 1.0 and s == pytest.approx(4 / 7)
    # closest reference length, shorter on ties: hyp 4, refs 2 and 6 -> r = 2 (no penalty)
    s, d = bleu(["a b c d"], [["a b", "a b c d x y"]], max_n=1, multi_reference=True,
                return_details=True)
    assert d["ref_len"] == 2 and d["bp"] == 1.0


def test_bleu_zero_and_smoothing():
    # no 4-gram match: plain BLEU is 0, smoothed is not
    h, r = ["a b c x e f"], ["a b c d e f"]
    assert bleu(h, r) == 0.0
    # matches 5/6, 3/5, 1/4, 0/3
    s = bleu(h, r, smooth="floor")  # 0 -> 0.1 / 3
    assert s == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * (0.1 / 3)) ** 0.25)
    s = bleu(h, r, smooth="exp")  # 0 -> 1 / (2 * 3)
    assert s == pytest.approx((5 / 6 * 3 / 5 * 1 / 4 * (1 / 6)) ** 0.25)
    s = bleu(h, r, smooth="add-k")  # n >= 2: (m+1)/(t+1)
    assert s == pytest.approx((5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25)
    # empty hypothesis
    assert bleu([""], ["a b"]) == 0.0


def test_bleu_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        bleu(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="smooth"):
        bleu(["a"], ["a"], smooth="magic")
    with pytest.raises(ValueError, match="max_n"):
        bleu(["a"], ["a"], max_n=0)
    with pytest.raises(TypeError, match="hypotheses"):
        bleu("a b", "a b")
    with pytest.raises(ValueError, match="hypotheses"):
        bleu([], [])


def test_bleu_matches_nltk(nltk):
    """Corpus BLEU equals NLTK's corpus_bleu (uniform 4-gram weights, no smoothing)."""
    task = make_translation(n_train=50, n_val=10, n_test=60, rng=0)
    refs = task.references("test")
    rng = np.random.default_rng(0)
    hyps = []
    for r in refs:  # corrupt references: drop, swap and substitute words
        h = list(r)
        if rng.random() < 0.5 and len(h) > 3:
            del h[rng.integers(len(h))]
        if rng.random() < 0.5:
            i = rng.integers(len(h) - 1)
            h[i], h[i + 1] = h[i + 1], h[i]
        if rng.random() < 0.3:
            h[rng.integers(len(h))] = "zzz"
        hyps.append(h)
    ours = bleu(hyps, refs)
    theirs = nltk.corpus_bleu([[r] for r in refs], hyps)
    assert abs(ours - theirs) < 1e-12, (ours, theirs)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_sent = st.lists(st.sampled_from(list("abcde")), min_size=0, max_size=9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(_sent, _sent), min_size=1, max_size=5), st.randoms())
def test_bleu_properties(pairs, rnd):
    hyps = [h for h, _ in pairs]
    refs = [r for _, r in pairs]
    s = bleu(hyps, refs, smooth="exp")
    assert 0.0 <= s <= 1.0 + 1e-12
    # corpus order does not matter (statistics are pooled)
    order = list(range(len(pairs)))
    rnd.shuffle(order)
    assert bleu([hyps[i] for i in order], [refs[i] for i in order], smooth="exp") == \
        pytest.approx(s, abs=1e-12)
    # a reference scored against itself is perfect once every order has an n-gram
    if sum(len(r) for r in refs) and all(len(r) >= 4 for r in refs if r):
        assert bleu(refs, refs) == pytest.approx(1.0, abs=1e-12)
    # adding the hypothesis itself as a second reference never lowers the score (clip counts
    # are maxima over references; the closest length can only get closer)
    s2 = bleu(hyps, [[r, h] for h, r in pairs], smooth="exp", multi_reference=True)
    assert s2 >= s - 1e-12
