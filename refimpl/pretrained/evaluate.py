"""How chapter 9 measures a (compressed) sentence encoder on real text, the same way for every row:

* **fidelity** — the mean cosine between an encoder's embeddings and the original model's on
  held-out real English text (paragraphs of the Python standard library's docstrings,
  :func:`real_text`), 1.0 for an exact copy;
* **retrieval** — each docstring's summary line is a query, its body the relevant document among
  a few thousand others (:func:`docstring_retrieval_pairs`); recall@1 and mean reciprocal rank
  (:func:`retrieval_scores`, :func:`evaluate_retrieval`);
* **STS-B** — Spearman's ρ × 100 between the cosine of the two sentences' embeddings and the
  human score, on CSV files the user provides (:func:`stsb_spearman`,
  :func:`refimpl.data.load_stsb`), as sentence-transformers' ``EmbeddingSimilarityEvaluator``.

An *encoder* is anything with ``encode(list of str, batch_size=...) -> (N, d) array``:
:class:`refimpl.pretrained.MiniLM`, a compressed copy, or a ``SentenceTransformer`` (for
cross-checks). Everything is deterministic: the texts are chosen by sorted file order and fixed
rules, not by a random draw.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

from refimpl.data.corpora import stdlib_docstrings
from refimpl.utils import check_array, check_choice, check_int

__all__ = ["mean_cosine", "fidelity", "real_text", "docstring_retrieval_pairs",
           "RetrievalPairs", "retrieval_scores", "evaluate_retrieval", "spearman",
           "stsb_spearman"]


# ---------------------------------------------------------------- text from the stdlib
_WORD = re.compile(r"[(\"'`*]*[A-Za-z][a-z'\-]*[.,;:!?)\"'`*]*")


def _prose(p: str, min_words: int) -> bool:
    """English-looking prose: at least ``min_words`` plain words (letters with optional
    punctuation around), making up at least 70 % of the whitespace-separated tokens; no
    doctest, table or directive."""
    if p.startswith((">>>", "...", "$ ", "|", "+-", "==", "--", "..")) or p.endswith("::"):
        return False
    tokens = p.split()
    words = sum(1 for t in tokens if _WORD.fullmatch(t))
    return words >= min_words and words >= 0.7 * len(tokens)


def _paragraphs(doc: str) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", doc) if p.strip()]


def _held_out(package: str) -> bool:
    """One top-level stdlib module or package in five is held out, chosen by a hash of its
    name (stable across runs and Python versions)."""
    return hashlib.sha256(package.encode()).digest()[0] % 5 == 0


def real_text(n: int = 1000, split: str = "heldout", *, min_words: int = 8,
              max_chars: int = 600) -> list[str]:
    """Paragraphs of real English prose from the installed standard library's docstrings.

    Paragraphs (blank-line separated, whitespace collapsed) of at most ``max_chars``
    characters with at least ``min_words`` plain words that make up 70 % of their tokens (no
    doctests, URLs, tables or code), each distinct; in sorted file order, then every k-th so that ``n`` of them spread
    over the whole library (about 1400 held-out and 6900 training paragraphs on CPython
    3.11). The ``"heldout"`` split uses one top-level module or package in
    five (chosen by a hash of its name), ``"train"`` the other four: unlabelled text for distillation or
    head-importance calibration never overlaps the evaluation text.

    Parameters
    ----------
    n : int
        Number of paragraphs (fewer if the library has fewer).
    split : {"heldout", "train"}
    min_words, max_chars : int

    Returns
    -------
    list of str
    """
    n = check_int(n, "n", 1)
    split = check_choice(split, "split", ("heldout", "train"))
    min_words = check_int(min_words, "min_words", 1)
    max_chars = check_int(max_chars, "max_chars", 20)
    parts: dict[bool, dict[str, None]] = {True: {}, False: {}}  # ordered sets
    for top, _, doc in stdlib_docstrings():
        for p in _paragraphs(doc):
            if len(p) <= max_chars and _prose(p, min_words):
                parts[_held_out(top)].setdefault(p, None)
    held, train = parts[True], parts[False]
    if split == "heldout":  # a paragraph that also occurs in a training module is not held out
        out = [p for p in held if p not in train]
    else:
        out = list(train)
    step = max(1, len(out) // n)
    return out[::step][:n]


@dataclass
class RetrievalPairs:
    """Queries and their relevant documents: ``queries[i]`` ↔ ``documents[i]``.

    Attributes
    ----------
    queries : list of str
        Docstring summary lines.
    documents : list of str
        The rest of the same docstrings.
    names : list of str
        Qualified names of the documented objects (``json.decoder.JSONDecoder.decode``).
    """

    queries: list
    documents: list
    names: list

    def __len__(self) -> int:
        return len(self.queries)


def docstring_retrieval_pairs(n: int = 2000, *, min_query_words: int = 4,
                              min_doc_words: int = 15, max_doc_chars: int = 1000
                              ) -> RetrievalPairs:
    """A retrieval task with free labels: a docstring's summary line against its body.

    Rules (documented so a reader can rebuild the set): a docstring is used when its first
    paragraph (the summary, whitespace collapsed) has ``min_query_words`` to 40 words and is
    at most 300 characters, and the rest (the body, paragraphs joined by a space, cut to
    ``max_doc_chars`` characters at a word boundary) has at least ``min_doc_words`` words;
    docstrings whose summary or body occurs more than once in the library are dropped
    entirely (inherited or copied docstrings would make two documents equally right); a body
    that repeats the summary verbatim is dropped. From the items in sorted file order, every
    k-th is kept so that ``n`` of them span the library.

    Parameters
    ----------
    n : int
    min_query_words, min_doc_words, max_doc_chars : int

    Returns
    -------
    RetrievalPairs
    """
    n = check_int(n, "n", 2)
    items = []
    for _, qual, doc in stdlib_docstrings():
        paras = _paragraphs(doc)
        if len(paras) < 2:
            continue
        q = paras[0]
        nq = len(q.split())
        if not (min_query_words <= nq <= 40 and len(q) <= 300):
            continue
        body = " ".join(paras[1:])
        if len(body) > max_doc_chars:
            cut = body.rfind(" ", 0, max_doc_chars)
            body = body[:cut if cut > 0 else max_doc_chars]
        if len(body.split()) < min_doc_words or q in body:
            continue
        items.append((q, body, qual))
    qc: dict[str, int] = {}
    dc: dict[str, int] = {}
    for q, d, _ in items:
        qc[q] = qc.get(q, 0) + 1
        dc[d] = dc.get(d, 0) + 1
    items = [it for it in items if qc[it[0]] == 1 and dc[it[1]] == 1]
    step = max(1, len(items) // n)
    items = items[::step][:n]
    return RetrievalPairs([q for q, _, _ in items], [d for _, d, _ in items],
                          [name for _, _, name in items])


# ---------------------------------------------------------------- metrics
def _unit(x, name):
    x = check_array(x, name, ndim=2).astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mean_cosine(a, b) -> float:
    """Mean over rows of ``cos(a_i, b_i)``; ``a``, ``b`` of shape (N, d)."""
    a, b = _unit(a, "a"), _unit(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    return float(np.mean(np.sum(a * b, axis=1)))


def fidelity(encoder, reference, texts, batch_size: int = 64) -> float:
    """Mean cosine between ``encoder``'s embeddings of ``texts`` and ``reference``'s.

    Parameters
    ----------
    encoder : object with ``encode(texts, batch_size=...)``
    reference : encoder, or ndarray of shape (N, d)
        The original model, or its embeddings of ``texts`` computed once.
    texts : list of str
        E.g. :func:`real_text` (held-out split).

    Returns
    -------
    float in [-1, 1]; 1.0 for an identical encoder.
    """
    ours = encoder.encode(list(texts), batch_size=batch_size)
    ref = reference if isinstance(reference, np.ndarray) else \
        reference.encode(list(texts), batch_size=batch_size)
    return mean_cosine(ours, ref)


def retrieval_scores(query_emb, doc_emb) -> dict:
    """Recall@1 and mean reciprocal rank when ``doc_emb[i]`` is the one relevant document of
    ``query_emb[i]``, ranking all documents by cosine similarity.

    The rank of the relevant document is ``1 + #{j : s_ij > s_ii}`` (ties counted in its
    favour). ``recall@1 = mean(rank == 1)``, ``MRR = mean(1 / rank)``.

    Parameters
    ----------
    query_emb, doc_emb : ndarray of shape (N, d)

    Returns
    -------
    dict with ``recall_at_1``, ``mrr`` (floats in [0, 1]) and ``ranks`` (int ndarray (N,))
    """
    q, d = _unit(query_emb, "query_emb"), _unit(doc_emb, "doc_emb")
    if q.shape != d.shape:
        raise ValueError(f"query_emb and doc_emb must have the same shape, got {q.shape} "
                         f"and {d.shape}")
    S = q @ d.T  # (N, N) cosine similarities
    ranks = 1 + np.sum(S > np.diag(S)[:, None], axis=1)
    return {"recall_at_1": float(np.mean(ranks == 1)), "mrr": float(np.mean(1.0 / ranks)),
            "ranks": ranks}


def evaluate_retrieval(encoder, pairs: RetrievalPairs, batch_size: int = 64) -> dict:
    """:func:`retrieval_scores` of ``encoder`` on ``pairs`` (recall@1, MRR, ranks)."""
    q = encoder.encode(list(pairs.queries), batch_size=batch_size)
    d = encoder.encode(list(pairs.documents), batch_size=batch_size)
    return retrieval_scores(q, d)


def _rank(x):
    """Ranks 1..N with ties given their average rank."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks (ties get their
    average rank), as ``scipy.stats.spearmanr``."""
    x = check_array(x, "x", ndim=1).astype(np.float64)
    y = check_array(y, "y", ndim=1).astype(np.float64)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got {x.shape} and "
                         f"{y.shape}")
    rx, ry = _rank(x) - (x.size + 1) / 2, _rank(y) - (y.size + 1) / 2
    den = np.sqrt(np.sum(rx * rx) * np.sum(ry * ry))
    if den == 0:
        raise ValueError("spearman is undefined for a constant input")
    return float(np.sum(rx * ry) / den)


def stsb_spearman(encoder, data, batch_size: int = 64) -> float:
    """STS-B score: 100 × Spearman's ρ between ``cos(e(s1), e(s2))`` and the gold scores.

    Parameters
    ----------
    encoder : object with ``encode(texts, batch_size=...)``
    data : refimpl.data.STSBSplit
        From :func:`refimpl.data.load_stsb`.

    Returns
    -------
    float
        all-MiniLM-L6-v2 (sentence-transformers, float32) scores 82.03 on the test split.
    """
    e1 = encoder.encode(list(data.sentence1), batch_size=batch_size)
    e2 = encoder.encode(list(data.sentence2), batch_size=batch_size)
    cos = np.sum(_unit(e1, "e1") * _unit(e2, "e2"), axis=1)
    return 100.0 * spearman(cos, data.scores)
