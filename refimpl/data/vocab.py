"""Vocabularies, tokenisers and padding for the embedded text tasks.

Every task in :mod:`refimpl.data` stores token ids in a :class:`Vocab` whose first four ids are
the special tokens ``<pad>=0``, ``<unk>=1``, ``<bos>=2``, ``<eos>=3``, followed by the regular
tokens in decreasing frequency (ties broken alphabetically, so the order is deterministic).
Frequency order matters to the embedding-compression methods of the survey (§3.3.5 quantised
embeddings, §5.2 shared/hashed embeddings, §6.1 low-rank embedding factorisation), several of
which treat frequent and rare words differently.

Sequences are batched as ``(N, T)`` int64 arrays padded with ``0 = <pad>`` on the right, with an
``(N,)`` int64 array of true lengths (:func:`pad_sequences`) — the layout ``refimpl.nn``
classifiers take as ``model(X, lengths)``.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from refimpl.utils import check_int

__all__ = [
    "PAD", "UNK", "BOS", "EOS", "SPECIALS",
    "Vocab", "tokenize_words", "tokenize_chars", "pad_sequences",
]

PAD, UNK, BOS, EOS = 0, 1, 2, 3
#: The special tokens, in id order.
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")

_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize_words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words and single punctuation marks.

    A word is a run of ASCII letters/digits with an optional apostrophe suffix (``"isn't"``
    stays one token); every other non-space character is its own token.

    >>> tokenize_words("The movie wasn't good, really!")
    ['the', 'movie', "wasn't", 'good', ',', 'really', '!']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _WORD_RE.findall(text.lower())


def tokenize_chars(text: str) -> list[str]:
    """Split ``text`` into characters (no normalisation).

    >>> tokenize_chars("ab c")
    ['a', 'b', ' ', 'c']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return list(text)


class Vocab:
    """A token <-> id mapping with the four special tokens first and frequency counts.

    Parameters
    ----------
    tokens : iterable of str
        Regular tokens in id order (ids start at 4). Duplicates and special tokens are rejected.
    counts : iterable of int, optional
        Frequency of each regular token (same order as ``tokens``); defaults to zeros.

    Attributes
    ----------
    itos : list of str
        ``itos[i]`` is the token with id ``i`` (``itos[:4] == SPECIALS``).
    stoi : dict of str to int
        Inverse of ``itos``.
    counts : ndarray of shape (len(vocab),), int64
        Frequency of each id in the corpus the vocabulary was built from (0 for specials unless
        set by the builder).

    Examples
    --------
    >>> v = Vocab.from_corpus([["a", "b", "a"], ["c", "a"]])
    >>> v.itos
    ['<pad>', '<unk>', '<bos>', '<eos>', 'a', 'b', 'c']
    >>> v.encode(["a", "zzz"]).tolist()
    [4, 1]
    >>> v.decode([2, 4, 6, 3])
    ['a', 'c']
    """

    pad_id, unk_id, bos_id, eos_id = PAD, UNK, BOS, EOS

    def __init__(self, tokens: Iterable[str] = (), counts: Iterable[int] | None = None):
        tokens = list(tokens)
        for t in tokens:
            if not isinstance(t, str):
                raise TypeError(f"tokens must be strings, got {type(t).__name__} {t!r}")
        if len(set(tokens)) != len(tokens):
            dup = [t for t, c in Counter(tokens).items() if c > 1][:5]
            raise ValueError(f"tokens must be unique, got duplicates {dup}")
        clash = set(tokens) & set(SPECIALS)
        if clash:
            raise ValueError(f"tokens must not contain special tokens, got {sorted(clash)}")
        self.itos = list(SPECIALS) + tokens
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        c = np.zeros(len(self.itos), dtype=np.int64)
        if counts is not None:
            counts = np.asarray(list(counts), dtype=np.int64)
            if counts.shape != (len(tokens),):
                raise ValueError(f"counts must have one entry per token ({len(tokens)}), "
                                 f"got shape {counts.shape}")
            if np.any(counts < 0):
                raise ValueError("counts must be non-negative")
            c[len(SPECIALS):] = counts
        self.counts = c

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_corpus(cls, corpus: Iterable[Sequence[str]], min_count: int = 1,
                    max_size: int | None = None) -> "Vocab":
        """Build a vocabulary from tokenised sentences.

        Parameters
        ----------
        corpus : iterable of sequences of str
            Tokenised sentences (e.g. the output of :func:`tokenize_words` per line).
        min_count : int
            Keep tokens seen at least this often.
        max_size : int, optional
            Keep at most this many ids *including* the four specials (the most frequent tokens
            win; ties broken alphabetically).

        Returns
        -------
        Vocab
            Regular tokens sorted by decreasing count, then alphabetically.
        """
        min_count = check_int(min_count, "min_count", 1)
        if max_size is not None:
            max_size = check_int(max_size, "max_size", len(SPECIALS))
        if isinstance(corpus, str):
            raise TypeError("corpus must be an iterable of token sequences, got a str "
                            "(tokenise it first, e.g. [tokenize_words(line) for line in text])")
        counter: Counter = Counter()
        for sent in corpus:
            if isinstance(sent, str):
                raise TypeError("corpus must contain token sequences, got a str sentence "
                                f"{sent[:30]!r} (tokenise it first)")
            counter.update(t for t in sent if t not in SPECIALS)
        items = sorted(((t, n) for t, n in counter.items() if n >= min_count),
                       key=lambda tn: (-tn[1], tn[0]))
        if max_size is not None:
            items = items[: max_size - len(SPECIALS)]
        return cls([t for t, _ in items], [n for _, n in items])

    # ------------------------------------------------------------------ mapping
    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        head = ", ".join(self.itos[len(SPECIALS):len(SPECIALS) + 6])
        return f"Vocab(size={len(self)}, tokens=[{head}, ...])"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Vocab) and self.itos == other.itos
                and np.array_equal(self.counts, other.counts))

    __hash__ = None  # mutable-ish container; equality by content

    def token_to_id(self, token: str) -> int:
        """The id of ``token`` (``<unk>``'s id 1 if unknown)."""
        return self.stoi.get(token, UNK)

    def id_to_token(self, idx: int) -> str:
        """The token with id ``idx``."""
        idx = check_int(idx, "idx", 0, len(self) - 1)
        return self.itos[idx]

    def encode(self, tokens: Sequence[str], add_bos: bool = False,
               add_eos: bool = False) -> np.ndarray:
        """Map tokens to ids (unknown tokens -> ``<unk>`` = 1).

        Parameters
        ----------
        tokens : sequence of str
        add_bos, add_eos : bool
            Prepend ``<bos>`` = 2 / append ``<eos>`` = 3.

        Returns
        -------
        ndarray of shape (len(tokens) + add_bos + add_eos,), int64
        """
        if isinstance(tokens, str):
            raise TypeError("tokens must be a sequence of tokens, got a str "
                            "(tokenise it first with tokenize_words or tokenize_chars)")
        ids = [self.stoi.get(t, UNK) for t in tokens]
        if add_bos:
            ids.insert(0, BOS)
        if add_eos:
            ids.append(EOS)
        return np.asarray(ids, dtype=np.int64)

    def decode(self, ids, strip_special: bool = True) -> list[str]:
        """Map ids back to tokens.

        Parameters
        ----------
        ids : array_like of int, shape (n,)
        strip_special : bool
            Drop ``<pad>``, ``<bos>`` and ``<eos>`` (``<unk>`` is kept so unknowns stay visible).

        Returns
        -------
        list of str
        """
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a 1-D integer array, got shape {arr.shape} "
                             f"dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            raise ValueError(f"ids must be in [0, {len(self) - 1}], got range "
                             f"[{arr.min()}, {arr.max()}]")
        drop = {PAD, BOS, EOS} if strip_special else set()
        return [self.itos[i] for i in arr.tolist() if i not in drop]

    @property
    def frequencies(self) -> np.ndarray:
        """Relative frequencies of the ids, shape (len(vocab),), summing to 1 (zeros if no counts)."""
        tot = self.counts.sum()
        return self.counts / tot if tot > 0 else np.zeros(len(self))


def pad_sequences(sequences: Sequence[Sequence[int]], max_len: int | None = None,
                  pad_id: int = PAD) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id sequences into a rectangular int64 array.

    Parameters
    ----------
    sequences : sequence of sequences of int
        Token ids, one sequence per example.
    max_len : int, optional
        Width ``T`` of the output; longer sequences are truncated (their length is reported as
        ``max_len``). Defaults to the longest sequence.
    pad_id : int
        Padding id (``0 = <pad>``).

    Returns
    -------
    X : ndarray of shape (N, T), int64
        ``X[i, :lengths[i]]`` holds sequence ``i``; the rest is ``pad_id``.
    lengths : ndarray of shape (N,), int64

    Examples
    --------
    >>> X, lengths = pad_sequences([[5, 6, 7], [8]])
    >>> X.tolist(), lengths.tolist()
    ([[5, 6, 7], [8, 0, 0]], [3, 1])
    """
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        sequences = list(sequences)
    seqs = [np.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError("sequences must not be empty")
    for i, s in enumerate(seqs):
        if s.ndim != 1 or (s.size and s.dtype.kind not in "iu"):
            raise ValueError(f"sequences[{i}] must be a 1-D sequence of integer ids, "
                             f"got shape {s.shape} dtype {s.dtype}")
    lengths = np.array([s.size for s in seqs], dtype=np.int64)
    if max_len is None:
        max_len = max(int(lengths.max()), 1)
    max_len = check_int(max_len, "max_len", 1)
    lengths = np.minimum(lengths, max_len)
    X = np.full((len(seqs), max_len), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        X[i, : lengths[i]] = s[: lengths[i]]
    return X, lengths
