"""Embedded tasks (seeded generators, no downloads), corpus loaders, tokenisers and vocabularies.

Everything is generated in code from a seed (``rng``); the same seed gives bit-identical arrays.
``load_task(name, quick=...)`` builds any of them by name (:data:`TASKS`).

- :func:`make_sentiment` (``"sentiment"``) — order-dependent sentiment: negation scope,
  intensifiers, "but" contrast, over a Zipfian vocabulary; bag-of-words ~70 %, the exact rule
  100 %. The default classification task of §2–§6.
- :func:`make_hmm_lm` (``"hmm_lm"``) — a word-level language from a Zipfian-emission HMM with
  the exact Bayes-optimal test perplexity (the floor for the LM experiments of §2–§4).
- :func:`make_associative_recall` (``"recall"``), :func:`make_copy` (``"copy"``),
  :func:`make_needle` (``"needle"``) — long-range dependencies at a controllable distance; a
  window of width w fails beyond its reach (:func:`sliding_window_ceiling`). For §7.
- :func:`make_translation` (``"translation"``) — SOV -> SVO translation with reordering, and
  corpus :func:`bleu` from scratch (§4.1 sequence-level KD; the BLEU rows of the tables).
- :func:`load_stdlib_docstrings_chars` (``"stdlib_chars"``), :func:`load_stdlib_topics`
  (``"stdlib_topics"``) — real text with no download: the installed stdlib's docstrings as a
  char-level LM corpus and a docstring -> package classification set (§5.1, §2–§6).
- :func:`load_text_classification`, :func:`load_text_lm` — the user's own CSV/TSV or
  plain-text files, with clear errors on malformed input.
- :func:`load_stsb` — the STS Benchmark from CSV files the user points to (never shipped):
  sentence pairs and gold similarity scores for sentence encoders (chapter 9).

Containers (:mod:`refimpl.data.tasks`): :class:`ClassificationTask`, :class:`LMTask`,
:class:`Seq2SeqTask`, :class:`SequenceTask`. Token arrays are int64 ``(N, T)`` padded with
``0 = <pad>`` plus ``(N,)`` int64 lengths; specials are ``<pad>=0, <unk>=1, <bos>=2, <eos>=3``.
"""

from refimpl.data.corpora import (DEFAULT_TOPICS, load_stdlib_docstrings_chars,
                                  load_stdlib_topics, stdlib_docstrings)
from refimpl.data.lm import (hmm_length_mass, hmm_log_likelihood, lm_sentence_nll, make_hmm,
                             make_hmm_lm, sample_hmm, unigram_nll)
from refimpl.data.loaders import (build_classification_task, build_lm_task,
                                  load_text_classification, load_text_lm)
from refimpl.data.longrange import (make_associative_recall, make_copy, make_needle,
                                    sliding_window_ceiling)
from refimpl.data.registry import TASKS, TaskSpec, load_task
from refimpl.data.sentiment import make_sentiment, sentiment_rule_label, sentiment_score
from refimpl.data.stsb import STSB_ENV, STSBSplit, load_stsb
from refimpl.data.tasks import ClassificationTask, LMTask, Seq2SeqTask, SequenceTask, lm_targets
from refimpl.data.translation import bleu, make_translation, reference_translate
from refimpl.data.vocab import (BOS, EOS, PAD, SPECIALS, UNK, Vocab, pad_sequences,
                                tokenize_chars, tokenize_words)

__all__ = [
    "BOS", "EOS", "PAD", "UNK", "SPECIALS", "Vocab", "tokenize_words", "tokenize_chars",
    "pad_sequences",
    "ClassificationTask", "LMTask", "Seq2SeqTask", "SequenceTask", "lm_targets",
    "make_sentiment", "sentiment_rule_label", "sentiment_score",
    "make_hmm_lm", "make_hmm", "sample_hmm", "hmm_log_likelihood", "hmm_length_mass",
    "unigram_nll", "lm_sentence_nll",
    "make_associative_recall", "make_copy", "make_needle", "sliding_window_ceiling",
    "make_translation", "reference_translate", "bleu",
    "load_stdlib_docstrings_chars", "load_stdlib_topics", "stdlib_docstrings", "DEFAULT_TOPICS",
    "load_text_classification", "load_text_lm", "build_classification_task", "build_lm_task",
    "TASKS", "TaskSpec", "load_task", "load_stsb", "STSBSplit", "STSB_ENV",
]
