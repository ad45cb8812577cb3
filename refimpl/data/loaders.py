"""Loaders for the user's own text: a CSV/TSV classification file and a plain-text LM corpus.

They turn real text into the same containers the embedded tasks use
(:class:`~refimpl.data.tasks.ClassificationTask`, :class:`~refimpl.data.tasks.LMTask`), so every
compression method of the survey (§2–§7) can be tried on one's own data. Malformed input gets a
``ValueError`` that names the file, the line and what is wrong: a missing column, an empty file,
a ragged row, an empty cell, or a label with a single example (which cannot be split into
train and evaluation data).

The builders :func:`build_classification_task` and :func:`build_lm_task` are shared with the
stdlib-docstring corpora (:mod:`refimpl.data.corpora`).
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from refimpl.data.tasks import ClassificationTask, LMTask
from refimpl.data.vocab import Vocab, pad_sequences, tokenize_chars, tokenize_words
from refimpl.utils import as_rng, check_choice, check_float, check_int

__all__ = ["load_text_classification", "load_text_lm", "build_classification_task",
           "build_lm_task", "TOKENIZERS"]

#: Tokenisers selectable by name.
TOKENIZERS = {"word": tokenize_words, "char": tokenize_chars}


def _fractions(val_fraction, test_fraction):
    v = check_float(val_fraction, "val_fraction", 0.0, 1.0, hi_open=True)
    t = check_float(test_fraction, "test_fraction", 0.0, 1.0, hi_open=True)
    if v + t >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {v} + {t}")
    return v, t


def _stratified_split(y: np.ndarray, n_classes: int, val_fraction: float, test_fraction: float,
                      rng: np.random.Generator):
    """Per-class shuffled split; every class keeps >= 1 training example."""
    parts = {"train": [], "val": [], "test": []}
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(idx.size)]
        n = idx.size
        n_test = int(round(test_fraction * n))
        n_val = int(round(val_fraction * n))
        while n_test + n_val > n - 1:  # keep at least one training example
            if n_val >= n_test and n_val > 0:
                n_val -= 1
            else:
                n_test -= 1
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    out = {}
    for k, v in parts.items():
        idx = np.concatenate(v).astype(np.int64)
        out[k] = idx[rng.permutation(idx.size)]
    return out


def build_classification_task(texts: Sequence[str], labels: Sequence, name: str = "text",
                              tokenizer: str = "word", val_fraction: float = 0.1,
                              test_fraction: float = 0.1, min_count: int = 1,
                              max_vocab: int | None = None, max_len: int | None = None,
                              label_names: Sequence[str] | None = None, rng=0,
                              where: str = "texts") -> ClassificationTask:
    """Tokenise, split (stratified, seeded), build the vocabulary on train, pad.

    Parameters
    ----------
    texts : sequence of str
    labels : sequence of hashable
        One per text. Classes are the sorted distinct labels (as strings) unless
        ``label_names`` fixes the order.
    name : str
    tokenizer : {"word", "char"}
    val_fraction, test_fraction : float
        Per-class fractions (rounded; every class keeps at least one training example).
    min_count, max_vocab :
        Vocabulary cut-offs (see :meth:`Vocab.from_corpus`); ``max_vocab`` includes specials.
    max_len : int, optional
        Truncate to this many tokens (default: the longest text).
    label_names : sequence of str, optional
    rng : int or Generator
    where : str
        How to refer to the input in error messages (e.g. the file name).

    Returns
    -------
    ClassificationTask
        Arrays of shape (N_split, max_len) int64; ``texts_*`` hold the raw texts.
    """
    check_choice(tokenizer, "tokenizer", TOKENIZERS)
    val_fraction, test_fraction = _fractions(val_fraction, test_fraction)
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{where}: texts and labels must have the same length, got "
                         f"{len(texts)} and {len(labels)}")
    if not texts:
        raise ValueError(f"{where}: no examples")
    tok = TOKENIZERS[tokenizer]
    tokens = [tok(t) for t in texts]
    for i, t in enumerate(tokens):
        if not t:
            raise ValueError(f"{where}: example {i} has an empty text")
    str_labels = [str(lab) for lab in labels]
    if label_names is None:
        label_names = sorted(set(str_labels))
    label_names = [str(x) for x in label_names]
    index = {lab: i for i, lab in enumerate(label_names)}
    missing = sorted(set(str_labels) - set(index))
    if missing:
        raise ValueError(f"{where}: labels {missing[:5]} are not in label_names")
    y = np.array([index[lab] for lab in str_labels], dtype=np.int64)
    counts = np.bincount(y, minlength=len(label_names))
    if len(label_names) < 2:
        raise ValueError(f"{where}: need at least 2 distinct labels, got {label_names}")
    single = [label_names[c] for c in np.flatnonzero(counts == 1)]
    if single:
        raise ValueError(f"{where}: label {single[0]!r} has only one example; every label needs "
                         "at least 2 (one to train on, one to evaluate) — drop or merge it"
                         + (f" (also: {single[1:5]})" if len(single) > 1 else ""))
    empty = [label_names[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise ValueError(f"{where}: label_names {empty[:5]} have no examples")
    rng = as_rng(rng)
    idx = _stratified_split(y, len(label_names), val_fraction, test_fraction, rng)
    vocab = Vocab.from_corpus([tokens[i] for i in idx["train"]], min_count=min_count,
                              max_size=max_vocab)
    if max_len is None:
        max_len = max(len(t) for t in tokens)
    max_len = check_int(max_len, "max_len", 1)
    arrays = {}
    for k, ix in idx.items():
        X, L = pad_sequences([vocab.encode(tokens[i]) for i in ix] or [[0]], max_len=max_len)
        if ix.size == 0:
            X, L = X[:0], L[:0]
        arrays[k] = (X, L, y[ix], [texts[i] for i in ix])
    return ClassificationTask(
        name=name, vocab=vocab,
        X_train=arrays["train"][0], len_train=arrays["train"][1], y_train=arrays["train"][2],
        X_val=arrays["val"][0], len_val=arrays["val"][1], y_val=arrays["val"][2],
        X_test=arrays["test"][0], len_test=arrays["test"][1], y_test=arrays["test"][2],
        n_classes=len(label_names), label_names=label_names,
        texts_train=arrays["train"][3], texts_val=arrays["val"][3],
        texts_test=arrays["test"][3],
        meta=dict(tokenizer=tokenizer, val_fraction=val_fraction, test_fraction=test_fraction,
                  min_count=min_count, max_vocab=max_vocab, max_len=max_len))


def build_lm_task(sentences: Sequence[Sequence[str]], name: str = "text_lm",
                  val_fraction: float = 0.1, test_fraction: float = 0.1, min_count: int = 1,
                  max_vocab: int | None = None, max_len: int = 64,
                  where: str = "sentences", meta: dict | None = None) -> LMTask:
    """Split tokenised sentences contiguously (train, then valid, then test) into an LMTask.

    Sentences longer than ``max_len`` tokens are cut into consecutive pieces of at most
    ``max_len`` (nothing is dropped). The vocabulary is built on train; unseen tokens in
    valid/test map to ``<unk>``. Rows are ``<bos> tokens <eos>``, width ``max_len + 2``.

    Parameters
    ----------
    sentences : sequence of sequences of str
    name : str
    val_fraction, test_fraction : float
        Fractions of the sentences (in order) for validation and test.
    min_count, max_vocab :
        Vocabulary cut-offs.
    max_len : int
    where : str
        How to refer to the input in error messages.

    Returns
    -------
    LMTask
        With ``bayes_nll=None`` (real text has no known generator).
    """
    val_fraction, test_fraction = _fractions(val_fraction, test_fraction)
    max_len = check_int(max_len, "max_len", 1)
    pieces = []
    for s in sentences:
        s = list(s)
        for i in range(0, len(s), max_len):
            pieces.append(s[i:i + max_len])
    n = len(pieces)
    if n < 3:
        raise ValueError(f"{where}: need at least 3 non-empty sentences/lines (train, valid and "
                         f"test each get one), got {n}")
    n_test = max(1, int(round(test_fraction * n))) if test_fraction > 0 else 0
    n_val = max(1, int(round(val_fraction * n))) if val_fraction > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{where}: too few sentences ({n}) for the requested fractions")
    parts = dict(train=pieces[:n_train], valid=pieces[n_train:n_train + n_val],
                 test=pieces[n_train + n_val:])
    vocab = Vocab.from_corpus(parts["train"], min_count=min_count, max_size=max_vocab)
    rows = {}
    for k, p in parts.items():
        if p:
            rows[k] = pad_sequences([vocab.encode(s, add_bos=True, add_eos=True) for s in p],
                                    max_len=max_len + 2)
        else:
            rows[k] = (np.zeros((0, max_len + 2), dtype=np.int64), np.zeros(0, dtype=np.int64))
    return LMTask(name=name, vocab=vocab,
                  train=rows["train"][0], len_train=rows["train"][1],
                  valid=rows["valid"][0], len_valid=rows["valid"][1],
                  test=rows["test"][0], len_test=rows["test"][1],
                  bayes_nll=None,
                  meta=dict(val_fraction=val_fraction, test_fraction=test_fraction,
                            min_count=min_count, max_vocab=max_vocab, max_len=max_len,
                            **(meta or {})))


def _read_text(path, encoding):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"path {path!r} is a directory, expected a file")
    try:
        with open(path, encoding=encoding, newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid {encoding} text ({e.reason} at byte {e.start}); "
                         f"pass encoding=...") from None
    if not text.strip():
        raise ValueError(f"{path}: file is empty")
    return path, text


def load_text_classification(path, text_column: str = "text", label_column: str = "label",
                             delimiter: str | None = None, encoding: str = "utf-8",
                             tokenizer: str = "word", val_fraction: float = 0.1,
                             test_fraction: float = 0.1, min_count: int = 1,
                             max_vocab: int | None = None, max_len: int | None = None,
                             rng=0) -> ClassificationTask:
    """Load a text-classification CSV/TSV with a header row.

    Parameters
    ----------
    path : str or PathLike
    text_column, label_column : str
        Header names of the text and label columns (other columns are ignored).
    delimiter : str, optional
        Field separator; default tab for ``.tsv`` files, comma otherwise. Quoted fields
        (RFC 4180) may contain the delimiter and newlines.
    encoding : str
    tokenizer : {"word", "char"}
    val_fraction, test_fraction, min_count, max_vocab, max_len, rng :
        See :func:`build_classification_task`.

    Returns
    -------
    ClassificationTask
        Named after the file; classes are the sorted distinct labels.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Empty file, no data rows, a missing column, a row with a different number of fields
        than the header, an empty text or label cell, fewer than two labels, or a label with a
        single example — each message names the file and, where it applies, the line.
    """
    path, text = _read_text(path, encoding)
    if delimiter is None:
        delimiter = "\t" if path.lower().endswith(".tsv") else ","
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be a single character, got {delimiter!r}")
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    try:
        header = next(reader)
    except csv.Error as e:  # pragma: no cover - csv rarely fails on the first line
        raise ValueError(f"{path}: cannot parse the header: {e}") from None
    header = [h.strip() for h in header]
    for arg, col in (("text_column", text_column), ("label_column", label_column)):
        if col not in header:
            raise ValueError(f"{path}: {arg} {col!r} not found in the header {header}"
                             + (" (is the delimiter right?)" if len(header) == 1 else ""))
    ti, li = header.index(text_column), header.index(label_column)
    texts, labels = [], []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue  # blank line
            if len(row) != len(header):
                raise ValueError(f"{path}: line {line} has {len(row)} fields, the header has "
                                 f"{len(header)} (ragged row; quote fields that contain "
                                 f"{delimiter!r})")
            t, lab = row[ti].strip(), row[li].strip()
            if not t:
                raise ValueError(f"{path}: line {line} has an empty {text_column!r} cell")
            if not lab:
                raise ValueError(f"{path}: line {line} has an empty {label_column!r} cell")
            texts.append(t)
            labels.append(lab)
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV near line {reader.line_num}: {e}") from None
    if not texts:
        raise ValueError(f"{path}: no data rows after the header")
    name = os.path.splitext(os.path.basename(path))[0]
    return build_classification_task(texts, labels, name=name, tokenizer=tokenizer,
                                     val_fraction=val_fraction, test_fraction=test_fraction,
                                     min_count=min_count, max_vocab=max_vocab, max_len=max_len,
                                     rng=rng, where=path)


def load_text_lm(path, tokenizer: str = "word", encoding: str = "utf-8",
                 val_fraction: float = 0.1, test_fraction: float = 0.1, min_count: int = 1,
                 max_vocab: int | None = None, max_len: int = 64) -> LMTask:
    """Load a plain-text file as a language-modelling corpus, one sentence per non-empty line.

    Lines are split in file order: the first ``1 - val_fraction - test_fraction`` go to
    train, then valid, then test (as for PTB/WikiText, so no test line leaks into training).

    Parameters
    ----------
    path : str or PathLike
    tokenizer : {"word", "char"}
        ``"char"`` keeps case and spaces (a char-level LM).
    encoding : str
    val_fraction, test_fraction, min_count, max_vocab, max_len :
        See :func:`build_lm_task`.

    Returns
    -------
    LMTask
        ``bayes_nll`` is None.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing path, an empty file, undecodable bytes, or fewer than 3 non-empty lines.
    """
    check_choice(tokenizer, "tokenizer", TOKENIZERS)
    path, text = _read_text(path, encoding)
    tok = TOKENIZERS[tokenizer]
    sents = [tok(line.strip() if tokenizer == "word" else line.rstrip("\r\n"))
             for line in text.splitlines()]
    sents = [s for s in sents if s and (tokenizer == "word" or "".join(s).strip())]
    name = os.path.splitext(os.path.basename(path))[0]
    return build_lm_task(sents, name=name, val_fraction=val_fraction,
                         test_fraction=test_fraction, min_count=min_count, max_vocab=max_vocab,
                         max_len=max_len, where=path, meta=dict(tokenizer=tokenizer))
