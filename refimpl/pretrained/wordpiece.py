"""Learning a WordPiece vocabulary from text, from scratch, for :class:`WordPieceTokenizer`.

The corpus is normalised and pre-tokenised exactly as the tokenizer does it (BERT's
``BertNormalizer`` + ``BertPreTokenizer``, :func:`~refimpl.pretrained.tokenizer.normalize_bert`
and :func:`~refimpl.pretrained.tokenizer.basic_tokenize`), so every word the tokenizer will see
was counted. Then, bottom-up (Schuster & Nakajima 2012; Wu et al. 2016, §4.1):

1. the vocabulary starts with the special tokens, every character of the corpus (sorted by code
   point) and, for every character seen inside a word, its continuation form ``##c``;
2. every word is split into its characters (``c₁ ##c₂ ##c₃ …``), weighted by its count;
3. repeatedly the best adjacent pair ``(a, b)`` is merged into one new token ``a + b`` (the
   ``##`` of ``b`` dropped), in every word, until the vocabulary has ``vocab_size`` entries or
   no pair is left (or none occurs ``min_frequency`` times).

"Best" is the ``criterion``:

* ``"score"`` (default) — WordPiece's likelihood criterion: merge the pair that most increases
  the likelihood of the training data under a unigram model of the current tokens,
  approximated, as in the Hugging Face course's description of WordPiece, by

  .. math:: \\mathrm{score}(a, b) = \\frac{\\mathrm{freq}(ab)}{\\mathrm{freq}(a)\\,\\mathrm{freq}(b)}

  (freq = count in the current segmentation of the corpus). It prefers pairs whose parts are
  rare on their own. Google never released its WordPiece trainer, so this is the standard
  public reading of it, not a bit-exact copy.
* ``"frequency"`` — the pair count ``freq(ab)`` alone, i.e. byte-pair encoding with a ``##``
  prefix. This is what the Hugging Face ``tokenizers`` library's ``WordPieceTrainer`` does: it
  is a ``BpeTrainer`` with ``continuing_subword_prefix="##"`` (``models/wordpiece/trainer.rs``),
  *not* the score above.

Ties are broken by the smallest ``(id(a), id(b))``, as ``tokenizers``' BPE trainer does; its ids
of the ``##c`` tokens follow a hash map's iteration order, so on a tie the two can pick different
(equally frequent) pairs, and ``tokenizers`` itself can differ between runs. The learned
vocabulary (special tokens first, ``[PAD]`` = 0) works with
:class:`~refimpl.pretrained.tokenizer.WordPieceTokenizer` as is.

References
----------
.. [1] M. Schuster, K. Nakajima, "Japanese and Korean Voice Search", ICASSP 2012 (WordPiece).
.. [2] Y. Wu et al., "Google's Neural Machine Translation System", 2016, §4.1.
.. [3] Hugging Face, NLP course, chapter 6, "WordPiece tokenization" (the score).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

from refimpl.pretrained.tokenizer import basic_tokenize, normalize_bert
from refimpl.utils import check_choice, check_int, progress_bar

__all__ = ["SPECIAL_TOKENS", "word_counts", "learn_wordpiece", "save_vocab"]

#: BERT's special tokens, in the order they get ids 0..4 (``[PAD]`` = 0 as refimpl's models pad
#: with 0).
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_PREFIX = "##"


def word_counts(texts: Iterable[str], *, lowercase: bool = True) -> dict[str, int]:
    """How often each pre-tokenised word occurs in ``texts`` (BERT normalisation and
    pre-tokenisation, as :class:`~refimpl.pretrained.tokenizer.WordPieceTokenizer`).

    Parameters
    ----------
    texts : iterable of str
    lowercase : bool

    Returns
    -------
    dict of str to int, sorted by word
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a list of str, got a single str (wrap it in a list)")
    c: Counter = Counter()
    n = 0
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        c.update(basic_tokenize(normalize_bert(t, lowercase=bool(lowercase))))
        n += 1
    if n == 0:
        raise ValueError("texts must not be empty")
    return dict(sorted(c.items()))


def _check_counts(counts: Mapping) -> dict[str, int]:
    out = {}
    for w, k in counts.items():
        if not isinstance(w, str) or not w:
            raise TypeError(f"texts (word counts) must map non-empty str to int, got key {w!r}")
        out[w] = check_int(k, f"texts[{w!r}]", 1)
    if not out:
        raise ValueError("texts must not be empty")
    return dict(sorted(out.items()))


def learn_wordpiece(texts, vocab_size: int, *, criterion: str = "score",
                    min_frequency: int = 0, special_tokens: Iterable[str] = SPECIAL_TOKENS,
                    lowercase: bool = True, progress: bool | None = None) -> dict[str, int]:
    """Learn a WordPiece vocabulary bottom-up by merging pairs (see the module docstring).

    Parameters
    ----------
    texts : iterable of str, or mapping of str to int
        Raw texts (normalised and pre-tokenised as BERT's tokenizer does), or ready word counts.
    vocab_size : int
        Target size, special tokens and the alphabet included (the alphabet is always kept, so
        the result can be larger when the corpus has more characters).
    criterion : {"score", "frequency"}
        ``freq(ab) / (freq(a) freq(b))`` (WordPiece's likelihood criterion) or ``freq(ab)``
        (BPE with ``##``, the ``tokenizers`` library's ``WordPieceTrainer``).
    min_frequency : int
        A pair must occur at least this often to be merged (``tokenizers``' default 0).
    special_tokens : iterable of str
        Ids ``0, 1, …`` in this order.
    lowercase : bool
        Only for raw texts.
    progress : bool, optional

    Returns
    -------
    dict of str to int
        Token -> id (special tokens, characters, ``##`` characters, then merges in order).
    """
    vocab_size = check_int(vocab_size, "vocab_size", 1)
    criterion = check_choice(criterion, "criterion", ("score", "frequency"))
    min_frequency = check_int(min_frequency, "min_frequency", 0)
    counts = _check_counts(texts) if isinstance(texts, Mapping) else \
        word_counts(texts, lowercase=lowercase)
    tokens: list[str] = []
    for s in special_tokens:
        if not isinstance(s, str) or not s:
            raise TypeError(f"special_tokens must be non-empty str, got {s!r}")
        if s not in tokens:
            tokens.append(s)
    ids: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    def add(t: str) -> int:
        if t not in ids:
            ids[t] = len(tokens)
            tokens.append(t)
        return ids[t]

    # 1. the alphabet, then the continuation characters, each sorted by code point
    for c in sorted({c for w in counts for c in w}):
        add(c)
    for c in sorted({c for w in counts for c in w[1:]}):
        add(_PREFIX + c)
    # 2. every word as its characters
    words = [[ids[w[0]]] + [ids[_PREFIX + c] for c in w[1:]] for w in counts]
    freq = list(counts.values())
    pair_count: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    tok_count: Counter = Counter()

    def account(i: int, sign: int) -> None:
        """Add (sign=+1) or remove (−1) word i's tokens and adjacent pairs from the counts."""
        w, f = words[i], freq[i] * sign
        for t in w:
            tok_count[t] += f
        for p in zip(w, w[1:]):
            n = pair_count.get(p, 0) + f
            if n:
                pair_count[p] = n
                if sign > 0:
                    where.setdefault(p, set()).add(i)
            else:
                del pair_count[p]

    for i in range(len(words)):
        account(i, +1)

    def best() -> tuple[int, int] | None:
        if not pair_count:
            return None
        if criterion == "frequency":
            # the largest count, then the smallest (id(a), id(b)) (tokenizers' tie-break)
            p = max(pair_count, key=lambda q: (pair_count[q], -q[0], -q[1]))
        else:
            p = max(pair_count, key=lambda q: (pair_count[q] / (tok_count[q[0]]
                                                                * tok_count[q[1]]),
                                               pair_count[q], -q[0], -q[1]))
        return p if pair_count[p] >= max(min_frequency, 1) else None

    # 3. merges
    bar = progress_bar(total=max(vocab_size - len(tokens), 0), desc="wordpiece merges",
                       progress=progress)
    while len(tokens) < vocab_size:
        p = best()
        if p is None:
            break
        a, b = tokens[p[0]], tokens[p[1]]
        before = len(tokens)
        new = add(a + (b[len(_PREFIX):] if b.startswith(_PREFIX) else b))
        bar.update(len(tokens) - before)
        for i in sorted(where.pop(p, ())):
            w = words[i]
            if not any(x == p for x in zip(w, w[1:])):
                continue  # a stale entry: the pair left this word in an earlier merge
            account(i, -1)
            out, k = [], 0
            while k < len(w):  # left to right, non-overlapping (as tokenizers' Word::merge)
                if k + 1 < len(w) and (w[k], w[k + 1]) == p:
                    out.append(new)
                    k += 2
                else:
                    out.append(w[k])
                    k += 1
            words[i] = out
            account(i, +1)
        if p in pair_count:  # every occurrence was merged; anything else is a bookkeeping bug
            raise RuntimeError(f"pair {a!r} + {b!r} still counted after its merge")
    bar.close()
    return dict(ids)


def save_vocab(vocab: Mapping[str, int], path) -> None:
    """Write ``vocab`` as a ``vocab.txt`` (one token per line, in id order), readable by
    :func:`~refimpl.pretrained.tokenizer.load_vocab`."""
    inv = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in inv] != list(range(len(inv))):
        raise ValueError("vocab ids must be 0..len(vocab)-1")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t, _ in inv))
