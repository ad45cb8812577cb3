"""Real text without a download: the docstrings of the installed Python standard library.

The source files under ``sysconfig.get_paths()["stdlib"]`` are *parsed* with :mod:`ast` (never
imported, so no module code runs), in sorted path order, and the docstrings of modules,
classes and functions are collected. Test suites, ``site-packages`` and deprecated packages are
skipped; files that fail to parse are skipped. Everything is deterministic on a given Python
installation (the numbers change slightly between Python versions, as the stdlib does).

Two tasks come out of it:

- :func:`load_stdlib_docstrings_chars` — a character-level language-modelling corpus (the
  survey's character-aware models and char-level LMs, §5.1, and LM compression in §2–§4 on
  real rather than generated text); there is no known generator, so ``bayes_nll`` is None.
- :func:`load_stdlib_topics` — classify a docstring by the stdlib package it comes from
  (``email``, ``logging``, ``xml``, ...), a real-text counterpart of the synthetic sentiment
  task for the classifiers of §2–§6.

Measured on CPython 3.11.7 (seed 0): ``stdlib_topics`` keeps 100 docstrings per class (the
smallest class, ``urllib``), 560/120/120 train/val/test; a bag-of-words logistic regression
(scikit-learn, C in {1, 10, 100}) scores 75.8–76.7 % test accuracy (chance 12.5 %).
``stdlib_chars`` with 400k characters (the full preset) has 324k training characters and 99
symbols; an add-one unigram model has test perplexity 27.4 (30.5 on the 50k quick preset).
"""

from __future__ import annotations

import ast
import functools
import os
import re
import sysconfig
import warnings

import numpy as np

from refimpl.data.loaders import build_classification_task, build_lm_task
from refimpl.data.tasks import ClassificationTask, LMTask
from refimpl.utils import as_rng, check_int

__all__ = ["stdlib_root", "stdlib_files", "stdlib_docstrings", "load_stdlib_docstrings_chars",
           "load_stdlib_topics", "DEFAULT_TOPICS"]

#: Packages used as topic classes: present in every CPython >= 3.10, each with 100+ docstrings.
DEFAULT_TOPICS = ("email", "http", "importlib", "logging", "multiprocessing", "unittest",
                  "urllib", "xml")

_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__",
              "lib2to3", "distutils", "turtledemo", "ensurepip", "venv", "pydoc_data"}


def stdlib_root() -> str:
    """Path of the pure-Python standard library of the running interpreter."""
    return sysconfig.get_paths()["stdlib"]


@functools.lru_cache(maxsize=None)
def stdlib_files(root: str | None = None) -> tuple[str, ...]:
    """Relative paths of the stdlib ``.py`` files used, sorted (deterministic).

    Skips test suites, ``site-packages``, build configuration and deprecated/removed packages
    (``lib2to3``, ``distutils``).
    """
    root = stdlib_root() if root is None else root
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        parts = [] if rel == "." else rel.split(os.sep)
        if any(p in _SKIP_DIRS or p.startswith("config-") for p in parts):
            dirnames[:] = []
            continue
        dirnames.sort()
        for f in sorted(filenames):
            if f.endswith(".py") and not f.startswith("test_"):
                out.append(os.path.join(*parts, f) if parts else f)
    return tuple(sorted(out))


@functools.lru_cache(maxsize=4096)
def _file_docstrings(path: str) -> tuple[tuple[str, str], ...]:
    """``(qualified name, docstring)`` pairs of one file, in source order; () on failure."""
    try:
        with open(path, encoding="utf-8") as f:
            src = f.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(src)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return ()
    out = []

    def visit(node, prefix):
        doc = ast.get_docstring(node, clean=True)
        if doc and doc.strip():
            out.append((prefix, doc))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{prefix}.{child.name}")

    visit(tree, "")
    return tuple(out)


def _module_name(rel: str) -> str:
    mod = rel[:-3].replace(os.sep, ".")
    return mod[: -len(".__init__")] if mod.endswith(".__init__") else mod


def stdlib_docstrings(packages=None, root: str | None = None) -> list[tuple[str, str, str]]:
    """All docstrings of the selected stdlib files, deterministic order.

    Parameters
    ----------
    packages : iterable of str, optional
        Top-level module/package names to include (default: everything used).
    root : str, optional
        Library root (default :func:`stdlib_root`).

    Returns
    -------
    list of (top-level package, qualified name, docstring)
        In sorted file order, then source order within a file.
    """
    root = stdlib_root() if root is None else root
    want = None if packages is None else set(packages)
    out = []
    for rel in stdlib_files(root):
        mod = _module_name(rel)
        top = mod.split(".")[0]
        if want is not None and top not in want:
            continue
        for qual, doc in _file_docstrings(os.path.join(root, rel)):
            out.append((top, mod + qual, doc))
    return out


def _paragraphs(doc: str, max_len: int) -> list[str]:
    """Split a docstring into whitespace-normalised paragraphs of at most ``max_len`` chars."""
    out = []
    for para in re.split(r"\n\s*\n", doc):
        para = " ".join(para.split())
        while len(para) > max_len:
            cut = para.rfind(" ", 0, max_len + 1)
            cut = max_len if cut <= 0 else cut
            out.append(para[:cut])
            para = para[cut:].lstrip()
        if para:
            out.append(para)
    return out


def load_stdlib_docstrings_chars(max_chars: int = 200_000, max_len: int = 128, rng=0,
                                 val_fraction: float = 0.1, test_fraction: float = 0.1,
                                 ascii_only: bool = True) -> LMTask:
    """Character-level LM corpus from stdlib docstrings.

    Files are visited in a seeded random order (so a small ``max_chars`` still samples many
    modules, and only the files needed are parsed); their docstrings are split into paragraphs
    (whitespace collapsed, long paragraphs wrapped at ``max_len`` characters) until
    ``max_chars`` characters are collected. Each paragraph is one row
    ``<bos> c_1 ... c_n <eos>``. The split is contiguous in that order: train, then valid, then
    test, so a docstring never straddles two splits unless it is the boundary one.

    Parameters
    ----------
    max_chars : int
        Approximate corpus size in characters.
    max_len : int
        Longest row in characters (rows are ``max_len + 2`` wide).
    rng : int or Generator
        Seeds the file order.
    val_fraction, test_fraction : float
    ascii_only : bool
        Replace non-ASCII characters by ``?`` (keeps the alphabet small: ~95 symbols).

    Returns
    -------
    LMTask
        ``bayes_nll=None``; ``meta["files"]`` lists the files used.
    """
    max_chars = check_int(max_chars, "max_chars", 100)
    max_len = check_int(max_len, "max_len", 8)
    rng = as_rng(rng)
    root = stdlib_root()
    files = stdlib_files(root)
    order = rng.permutation(len(files))
    paras: list[str] = []
    used = []
    total = 0
    for i in order:
        if total >= max_chars:
            break
        docs = _file_docstrings(os.path.join(root, files[i]))
        if not docs:
            continue
        used.append(files[i])
        for _, doc in docs:
            for p in _paragraphs(doc, max_len):
                if ascii_only:
                    p = p.encode("ascii", "replace").decode("ascii")
                paras.append(p)
                total += len(p)
            if total >= max_chars:
                break
    return build_lm_task([list(p) for p in paras], name="stdlib_chars",
                         val_fraction=val_fraction, test_fraction=test_fraction,
                         max_len=max_len, where="stdlib docstrings",
                         meta=dict(source=root, files=used, n_chars=total, tokenizer="char"))


def load_stdlib_topics(topics=DEFAULT_TOPICS, max_per_class: int | None = None,
                       max_len: int = 64, min_count: int = 2, max_vocab: int | None = 5000,
                       val_fraction: float = 0.15, test_fraction: float = 0.15,
                       rng=0) -> ClassificationTask:
    """Classify stdlib docstrings by their top-level package.

    Each docstring of a module, class or function under one of ``topics`` is an example
    labelled with that package. Duplicate docstrings are dropped (all copies, if they occur
    under different packages). Classes are balanced by keeping ``max_per_class`` examples per
    class (default: the size of the smallest class), chosen with ``rng``.

    Parameters
    ----------
    topics : sequence of str
        Top-level stdlib packages, one class each (sorted into label order).
    max_per_class : int, optional
    max_len : int
        Texts are word-tokenised and truncated to this many tokens.
    min_count, max_vocab :
        Vocabulary cut-offs on the training split.
    val_fraction, test_fraction : float
        Stratified split fractions.
    rng : int or Generator

    Returns
    -------
    ClassificationTask
        ``label_names`` are the package names.
    """
    topics = sorted(set(topics))
    if len(topics) < 2:
        raise ValueError(f"topics must name at least 2 packages, got {topics}")
    docs = stdlib_docstrings(topics)
    found = {t for t, _, _ in docs}
    missing = [t for t in topics if t not in found]
    if missing:
        raise ValueError(f"topics {missing} have no docstrings in this Python's stdlib "
                         f"({stdlib_root()})")
    owner: dict[str, set] = {}
    for top, _, doc in docs:
        owner.setdefault(doc, set()).add(top)
    seen = set()
    by_class: dict[str, list[str]] = {t: [] for t in topics}
    for top, _, doc in docs:
        if doc in seen or len(owner[doc]) > 1:
            continue
        seen.add(doc)
        by_class[top].append(doc)
    rng = as_rng(rng)
    n_min = min(len(v) for v in by_class.values())
    cap = n_min if max_per_class is None else check_int(max_per_class, "max_per_class", 2)
    texts, labels = [], []
    for t in topics:
        d = by_class[t]
        keep = np.sort(rng.permutation(len(d))[:cap])
        texts += [d[i] for i in keep]
        labels += [t] * len(keep)
    task = build_classification_task(texts, labels, name="stdlib_topics", tokenizer="word",
                                     val_fraction=val_fraction, test_fraction=test_fraction,
                                     min_count=min_count, max_vocab=max_vocab, max_len=max_len,
                                     label_names=topics, rng=rng, where="stdlib docstrings")
    task.meta.update(source=stdlib_root(), per_class=cap,
                     available={t: len(v) for t, v in by_class.items()})
    return task
