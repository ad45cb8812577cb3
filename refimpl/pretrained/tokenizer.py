"""BERT's uncased tokenizer from scratch: BasicTokenizer (normalise, split on whitespace and
punctuation) followed by WordPiece (greedy longest-match-first sub-words), giving the same ids as
the Hugging Face ``tokenizers`` library's ``BertNormalizer`` + ``BertPreTokenizer`` +
``WordPiece`` + ``[CLS] … [SEP]`` template.

The steps, in the order the ``tokenizers`` library applies them (Devlin et al. 2019; Wu et al.
2016 for WordPiece):

1. *clean text*: drop U+0000, U+FFFD and every "other" character (Unicode categories Cc, Cf, Cs,
   Co, Cn) except tab, newline and carriage return; then map every white-space character
   (tab/LF/CR and the Unicode ``White_Space`` property) to a space;
2. *CJK*: put spaces around every CJK Unified Ideograph (so each becomes its own word);
3. *strip accents* (on, because the model is lower-cased): NFD, then drop non-spacing marks (Mn);
4. *lower-case*, character by character (Unicode full lower-case mapping, no final-sigma rule);
5. *pre-tokenise*: split on white space; every punctuation character (ASCII punctuation or a
   Unicode P* category) is a word of its own;
6. *WordPiece*: each word longer than 100 characters becomes ``[UNK]``; otherwise repeatedly take
   the longest vocabulary entry that prefixes the rest (``##`` marks a continuation); if at some
   point none matches, the whole word is ``[UNK]``;
Special tokens written in the text (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[UNK]``, ``[MASK]``) are
matched verbatim before step 1 and keep their ids, as the ``tokenizers`` library's added tokens.

7. ``[CLS] pieces [SEP]``; with ``max_length`` the pieces are cut to ``max_length − 2`` (the
   "longest first" truncation of a single sequence keeps the first pieces).

All of it is plain Python (``unicodedata``); a per-word cache makes repeated words cheap.

References
----------
.. [1] J. Devlin, M.-W. Chang, K. Lee, K. Toutanova, "BERT: Pre-training of Deep Bidirectional
   Transformers for Language Understanding", NAACL 2019 (``tokenization.py``).
.. [2] Y. Wu et al., "Google's Neural Machine Translation System", 2016 (WordPiece).
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from typing import Sequence

import numpy as np

from refimpl.utils import check_int

__all__ = ["WordPieceTokenizer", "load_vocab", "basic_tokenize", "normalize_bert"]

#: Unicode ``White_Space`` characters (Rust's ``char::is_whitespace``, used by ``tokenizers``).
_WHITE_SPACE = frozenset(
    [chr(c) for c in (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029,
                      0x202F, 0x205F, 0x3000)] + [chr(c) for c in range(0x2000, 0x200B)])
_OTHER = frozenset(("Cc", "Cf", "Cs", "Co"))  # not Cn: unassigned code points are kept
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
#: CJK ideograph blocks isolated by ``handle_chinese_chars``, exactly as the ``tokenizers``
#: library lists them (its sixth range starts at U+2B920; Google's BERT has U+2B820).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))

#: Characters that Python's Unicode database (14.0 on CPython 3.11) classifies as a non-spacing
#: mark (Mn), punctuation (P*) or format character (Cf), but that the ``tokenizers`` library's
#: older category tables (the ``unicode_categories`` crate, Unicode 8.0) do not know: they were
#: added in Unicode 9.0-14.0, and ``tokenizers`` treats them as ordinary letters (kept, not
#: split off, not stripped). Found by running both tokenizers on every code point
#: (``tests/pretrained/test_tokenizer.py`` repeats that comparison).
_LEGACY_PLAIN = frozenset(c for lo, hi in (
    (0x61D, 0x61D), (0x7FD, 0x7FD), (0x890, 0x891), (0x898, 0x89F), (0x8CA, 0x8E2), (0x9FD,
    0x9FE), (0xA76, 0xA76), (0xAFA, 0xAFF), (0xB55, 0xB55), (0xC04, 0xC04), (0xC3C, 0xC3C),
    (0xC77, 0xC77), (0xC84, 0xC84), (0xD00, 0xD00), (0xD3B, 0xD3C), (0xD81, 0xD81), (0xEBA,
    0xEBA), (0x180F, 0x180F), (0x1885, 0x1886), (0x1ABF, 0x1ACE), (0x1B7D, 0x1B7E), (0x1DF6,
    0x1DFB), (0x2E43, 0x2E4F), (0x2E52, 0x2E5D), (0xA82C, 0xA82C), (0xA8C5, 0xA8C5), (0xA8FF,
    0xA8FF), (0xA9BD, 0xA9BD), (0x10D24, 0x10D27), (0x10EAB, 0x10EAD), (0x10F46, 0x10F50),
    (0x10F55, 0x10F59), (0x10F82, 0x10F89), (0x11070, 0x11070), (0x11073, 0x11074), (0x110C2,
    0x110C2), (0x110CD, 0x110CD), (0x111CF, 0x111CF), (0x1123E, 0x1123E), (0x1133B, 0x1133B),
    (0x11438, 0x1143F), (0x11442, 0x11444), (0x11446, 0x11446), (0x1144B, 0x1144F), (0x1145A,
    0x1145B), (0x1145D, 0x1145E), (0x11660, 0x1166C), (0x116B9, 0x116B9), (0x1182F, 0x11837),
    (0x11839, 0x1183B), (0x1193B, 0x1193C), (0x1193E, 0x1193E), (0x11943, 0x11946), (0x119D4,
    0x119D7), (0x119DA, 0x119DB), (0x119E0, 0x119E0), (0x119E2, 0x119E2), (0x11A01, 0x11A0A),
    (0x11A33, 0x11A38), (0x11A3B, 0x11A47), (0x11A51, 0x11A56), (0x11A59, 0x11A5B), (0x11A8A,
    0x11A96), (0x11A98, 0x11A9C), (0x11A9E, 0x11AA2), (0x11C30, 0x11C36), (0x11C38, 0x11C3D),
    (0x11C3F, 0x11C3F), (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11C92, 0x11CA7), (0x11CAA,
    0x11CB0), (0x11CB2, 0x11CB3), (0x11CB5, 0x11CB6), (0x11D31, 0x11D36), (0x11D3A, 0x11D3A),
    (0x11D3C, 0x11D3D), (0x11D3F, 0x11D45), (0x11D47, 0x11D47), (0x11D90, 0x11D91), (0x11D95,
    0x11D95), (0x11D97, 0x11D97), (0x11EF3, 0x11EF4), (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF),
    (0x12FF1, 0x12FF2), (0x13430, 0x13438), (0x16E97, 0x16E9A), (0x16F4F, 0x16F4F), (0x16FE2,
    0x16FE2), (0x16FE4, 0x16FE4), (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46), (0x1E000, 0x1E006),
    (0x1E008, 0x1E018), (0x1E01B, 0x1E021), (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E130,
    0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF), (0x1E944, 0x1E94A), (0x1E95E, 0x1E95F),
) for c in range(lo, hi + 1))
#: Characters whose category changed since Unicode 8.0: U+166D and U+111C9 were punctuation
#: (Po), U+1734 a non-spacing mark (Mn).
_LEGACY_PUNCT = frozenset((0x166D, 0x111C9))
_LEGACY_MN = frozenset((0x1734,))


@functools.lru_cache(maxsize=65536)
def _char_class(c: str) -> int:
    """0 keep, 1 drop (control), 2 white space, 3 CJK (isolate), 4 punctuation (isolate)."""
    o = ord(c)
    if c in "\t\n\r":
        return 2
    if o in _LEGACY_PLAIN:
        return 0
    if o in _LEGACY_PUNCT:
        return 4
    if o == 0 or o == 0xFFFD or unicodedata.category(c) in _OTHER:
        return 1
    if c in _WHITE_SPACE:
        return 2
    if any(lo <= o <= hi for lo, hi in _CJK_RANGES):
        return 3
    if c in _ASCII_PUNCT or unicodedata.category(c)[0] == "P":
        return 4
    return 0


@functools.lru_cache(maxsize=65536)
def _is_mark(c: str) -> bool:
    """A non-spacing mark (Mn) in the ``tokenizers`` library's tables (stripped with accents)."""
    o = ord(c)
    if o in _LEGACY_MN:
        return True
    return (o not in _LEGACY_PLAIN and o not in _LEGACY_PUNCT
            and unicodedata.category(c) == "Mn")


def normalize_bert(text: str, *, lowercase: bool = True, strip_accents: bool | None = None,
                   tokenize_chinese_chars: bool = True) -> str:
    """``BertNormalizer``: clean text, isolate CJK ideographs, strip accents, lower-case.

    ``strip_accents=None`` follows ``lowercase`` (BERT uncased: both on).
    """
    out = []
    for c in text:
        k = _char_class(c)
        if k == 1:
            continue
        if k == 2:
            out.append(" ")
        elif k == 3 and tokenize_chinese_chars:
            out.append(f" {c} ")
        else:
            out.append(c)
    s = "".join(out)
    if lowercase if strip_accents is None else strip_accents:
        s = "".join(c for c in unicodedata.normalize("NFD", s) if not _is_mark(c))
    if lowercase:
        s = "".join(c.lower() for c in s)  # per character: no context-dependent final sigma
    return s


def basic_tokenize(normalized: str) -> list[str]:
    """``BertPreTokenizer``: split a normalised string on white space and isolate every
    punctuation character."""
    words: list[str] = []
    cur: list[str] = []
    for c in normalized:
        k = _char_class(c)
        if k == 2:
            if cur:
                words.append("".join(cur))
                cur = []
        elif k == 4:
            if cur:
                words.append("".join(cur))
                cur = []
            words.append(c)
        else:
            cur.append(c)
    if cur:
        words.append("".join(cur))
    return words


def load_vocab(path) -> dict[str, int]:
    """A WordPiece ``vocab.txt`` (one token per line, id = line number) as token -> id.

    Raises ``ValueError`` naming the file if it is empty or lists a token twice.
    """
    with open(path, encoding="utf-8") as f:
        tokens = f.read().split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if not tokens:
        raise ValueError(f"{os.fspath(path)}: empty vocabulary file")
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        if t in vocab:
            raise ValueError(f"{os.fspath(path)}: token {t!r} appears twice (lines "
                             f"{vocab[t] + 1} and {i + 1})")
        vocab[t] = i
    return vocab


class WordPieceTokenizer:
    """BERT's uncased BasicTokenizer + WordPiece with ``[CLS]``/``[SEP]`` (see the module
    docstring for every step).

    Parameters
    ----------
    vocab : dict of str to int, or path of a ``vocab.txt``
    lowercase : bool
        BERT uncased (all-MiniLM-L6-v2): True; accents are stripped with it.
    max_input_chars_per_word : int
        Longer words become ``[UNK]`` (``tokenizers``' default 100).
    max_length : int
        Default truncation length of :meth:`__call__` / :meth:`batch_encode`, special tokens
        included (sentence-transformers' ``max_seq_length`` for all-MiniLM-L6-v2: 256).

    Attributes
    ----------
    vocab : dict of str to int
    inv_vocab : list of str
    cls_id, sep_id, pad_id, unk_id : int
    """

    def __init__(self, vocab, *, lowercase: bool = True, max_input_chars_per_word: int = 100,
                 max_length: int = 256, unk_token: str = "[UNK]", cls_token: str = "[CLS]",
                 sep_token: str = "[SEP]", pad_token: str = "[PAD]", mask_token: str = "[MASK]"):
        if not isinstance(vocab, dict):
            vocab = load_vocab(vocab)
        self.vocab = vocab
        self.inv_vocab = [""] * (max(vocab.values()) + 1)
        for t, i in vocab.items():
            self.inv_vocab[i] = t
        for name, tok in (("unk_token", unk_token), ("cls_token", cls_token),
                          ("sep_token", sep_token), ("pad_token", pad_token)):
            if tok not in vocab:
                raise ValueError(f"{name} {tok!r} is not in the vocabulary")
        self.unk_token = unk_token
        self.unk_id, self.cls_id = vocab[unk_token], vocab[cls_token]
        self.sep_id, self.pad_id = vocab[sep_token], vocab[pad_token]
        self.lowercase = bool(lowercase)
        self.max_input_chars_per_word = check_int(max_input_chars_per_word,
                                                  "max_input_chars_per_word", 1)
        self.max_length = check_int(max_length, "max_length", 2)
        self._word_cache: dict[str, tuple[int, ...]] = {}
        specials = [t for t in (pad_token, unk_token, cls_token, sep_token, mask_token)
                    if t in vocab]
        self._special_re = re.compile("(" + "|".join(map(re.escape, specials)) + ")")

    @classmethod
    def from_file(cls, path, **kwargs) -> "WordPieceTokenizer":
        """From a ``vocab.txt``."""
        return cls(load_vocab(path), **kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.inv_vocab)

    # ------------------------------------------------------------------ the steps
    def wordpiece(self, word: str) -> tuple[int, ...]:
        """Greedy longest-match-first WordPiece ids of one pre-tokenised word."""
        hit = self._word_cache.get(word)
        if hit is not None:
            return hit
        if len(word) > self.max_input_chars_per_word:
            ids: tuple[int, ...] = (self.unk_id,)
        else:
            out = []
            start, n = 0, len(word)
            while start < n:
                end = n
                cur = None
                while start < end:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    cur = self.vocab.get(piece)
                    if cur is not None:
                        break
                    end -= 1
                if cur is None:  # no prefix of the rest is in the vocabulary
                    out = [self.unk_id]
                    break
                out.append(cur)
                start = end
            ids = tuple(out)
        if len(self._word_cache) < 500_000:
            self._word_cache[word] = ids
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text`` (no special tokens, no truncation)."""
        return [self.inv_vocab[i] for i in self._piece_ids(text)]

    def _piece_ids(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        # special tokens written in the text ("[SEP]") are matched verbatim first, as the
        # tokenizers library does with its added tokens (not normalised, not split)
        for k, part in enumerate(self._special_re.split(text)):
            if k % 2:
                ids.append(self.vocab[part])
                continue
            for w in basic_tokenize(normalize_bert(part, lowercase=self.lowercase)):
                ids.extend(self.wordpiece(w))
        return ids

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """``[CLS] pieces [SEP]`` ids of one text.

        Parameters
        ----------
        text : str
        max_length : int, optional
            Truncate to this many ids, specials included (the first ``max_length − 2`` pieces
            are kept); default no truncation.
        """
        ids = self._piece_ids(text)
        if max_length is not None:
            ids = ids[:check_int(max_length, "max_length", 2) - 2]
        return [self.cls_id, *ids, self.sep_id]

    def batch_encode(self, texts: Sequence[str], max_length: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Encode and right-pad a batch to its longest sequence.

        Parameters
        ----------
        texts : sequence of str
        max_length : int, optional
            Truncation length, specials included (default ``self.max_length``).

        Returns
        -------
        ids : int64 ndarray of shape (N, n)
            Padded with ``pad_id`` (0).
        attention_mask : int64 ndarray of shape (N, n)
            1 for real tokens, 0 for padding.
        """
        texts = _check_texts(texts)
        m = self.max_length if max_length is None else check_int(max_length, "max_length", 2)
        seqs = [self.encode(t, m) for t in texts]
        n = max(len(s) for s in seqs)
        ids = np.full((len(seqs), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), n), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
            mask[i, :len(s)] = 1
        return ids, mask

    __call__ = batch_encode

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Join tokens back into text (``##`` pieces glued to the previous token)."""
        special = {self.cls_id, self.sep_id, self.pad_id}
        out = ""
        for i in ids:
            i = int(i)
            if skip_special_tokens and i in special:
                continue
            t = self.inv_vocab[i]
            out += t[2:] if t.startswith("##") else (" " + t if out else t)
        return out

    def __repr__(self) -> str:
        return (f"WordPieceTokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
                f"max_length={self.max_length})")


def _check_texts(texts) -> list[str]:
    """A non-empty list of str, else TypeError/ValueError naming ``sentences``."""
    if isinstance(texts, str):
        raise TypeError("sentences must be a list of str, got a single str (wrap it in a list)")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"sentences must be a list of str, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError("sentences must not be empty")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"sentences[{i}] must be a str, got {type(t).__name__}")
    return texts
