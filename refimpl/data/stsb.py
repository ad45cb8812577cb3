"""The STS Benchmark (Cer et al. 2017) from CSV files the user provides — never shipped with refimpl.

STS-B pairs two English sentences with a human similarity score in [0, 5]; a sentence encoder is
scored by the Spearman correlation between the cosine of its two embeddings and the gold score
(× 100, as in the sentence-transformers tables). Its texts carry mixed licences, so refimpl reads
them only from a path the user gives (or the ``REFIMPL_STSB_DIR`` environment variable).

Two layouts are read:

* three columns ``sentence1, sentence2, score`` (comma- or tab-separated, optional header row),
  as in the ``stsb-multi-mt`` redistribution (``stsb-en-train.csv`` / ``-dev`` / ``-test``);
* the original tab-separated ``sts-train.csv`` / ``sts-dev.csv`` / ``sts-test.csv``: genre, file,
  year, id, score, sentence1, sentence2 (extra trailing columns ignored).

Anything else — a wrong number of columns, a score that is not a number in [0, 5], an empty
sentence, an empty file — is a ``ValueError`` naming the file and the line.

References
----------
.. [1] D. Cer, M. Diab, E. Agirre, I. Lopez-Gazpio, L. Specia, "SemEval-2017 Task 1: Semantic
   Textual Similarity Multilingual and Cross-lingual Focused Evaluation", SemEval 2017.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refimpl.utils import check_choice

__all__ = ["STSBSplit", "load_stsb", "STSB_ENV"]

#: Environment variable naming a folder with the STS-B CSV files (used when ``path`` is None).
STSB_ENV = "REFIMPL_STSB_DIR"
_NAMES = ("stsb-en-{split}.csv", "sts-{split}.csv", "{split}.csv", "{split}.tsv")


@dataclass
class STSBSplit:
    """One STS-B split.

    Attributes
    ----------
    sentence1, sentence2 : list of str, length N
    scores : float64 ndarray of shape (N,)
        Gold similarity in [0, 5].
    path : str
        The file read.
    """

    sentence1: list
    sentence2: list
    scores: np.ndarray
    path: str

    def __len__(self) -> int:
        return len(self.scores)


def _find(path, split: str) -> Path:
    if path is None:
        env = os.environ.get(STSB_ENV)
        if not env:
            raise FileNotFoundError(
                f"load_stsb needs the folder (or file) of the STS-B CSVs: pass path=... or set "
                f"{STSB_ENV}; refimpl does not ship STS-B (its texts carry mixed licences)")
        path = env
    p = Path(os.fspath(path)).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise FileNotFoundError(f"STS-B path {str(p)!r} does not exist")
    for pat in _NAMES:
        f = p / pat.format(split=split)
        if f.is_file():
            return f
    raise FileNotFoundError(f"no STS-B {split} file in {str(p)!r} (looked for "
                            f"{', '.join(n.format(split=split) for n in _NAMES)})")


def _score(cell: str, where: str) -> float:
    try:
        s = float(cell)
    except ValueError:
        raise ValueError(f"{where}: score {cell!r} is not a number (expected columns "
                         f"sentence1, sentence2, score)") from None
    if not (math.isfinite(s) and 0.0 <= s <= 5.0):
        raise ValueError(f"{where}: score {s} is outside [0, 5]")
    return s


def load_stsb(path=None, split: str = "test") -> STSBSplit:
    """Read one split of STS-B from the user's CSV files.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A folder holding ``stsb-en-{split}.csv`` (or ``sts-{split}.csv``, ``{split}.csv``,
        ``{split}.tsv``), or the file itself. Default: the ``REFIMPL_STSB_DIR`` environment
        variable.
    split : {"train", "dev", "test"}

    Returns
    -------
    STSBSplit

    Raises
    ------
    FileNotFoundError
        No path given and no environment variable, or no such file.
    ValueError
        A malformed file (named, with the line number).
    """
    split = check_choice(split, "split", ("train", "dev", "test"))
    f = _find(path, split)
    with open(f, encoding="utf-8", newline="") as fh:
        text = fh.read()
    if not text.strip():
        raise ValueError(f"{f}: empty file")
    first = text.split("\n", 1)[0]
    delim = "\t" if first.count("\t") >= 2 else ","
    quoting = csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL
    rows = list(csv.reader(text.splitlines(), delimiter=delim, quoting=quoting))
    s1, s2, scores = [], [], []
    for i, row in enumerate(rows, start=1):
        where = f"{f}, line {i}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) == 3:
            a, b, sc = row
        elif len(row) >= 7 and delim == "\t":
            sc, a, b = row[4], row[5], row[6]
        else:
            raise ValueError(f"{where}: {len(row)} columns; expected 3 (sentence1, sentence2, "
                             f"score) or the original tab-separated 7 (genre, file, year, id, "
                             f"score, sentence1, sentence2)")
        if i == 1 and not _is_number(sc):
            continue  # a header row
        score = _score(sc.strip(), where)
        if not a.strip() or not b.strip():
            raise ValueError(f"{where}: empty sentence")
        s1.append(a)
        s2.append(b)
        scores.append(score)
    if not scores:
        raise ValueError(f"{f}: no sentence pairs")
    return STSBSplit(s1, s2, np.asarray(scores, dtype=np.float64), str(f))


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
