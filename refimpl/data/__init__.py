"""Embedded tasks (seeded generators, no downloads), corpus loaders, tokenisers and vocabularies.

Everything is generated in code from a seed (``rng``); the same seed gives bit-identical arrays.

=====================  ==========================================================  ============
name                   what it models                                              survey use
=====================  ==========================================================  ============
:func:`make_sentiment` order-dependent sentiment (negation scope, intensifiers,    §2–§6
                       "but" contrast) over a Zipfian vocabulary; bag-of-words     classifiers
                       tops out ~70 %, the exact rule reads 100 %
:func:`make_hmm_lm`    word-level language from a Zipfian-emission HMM with the    §2–§4 LMs
                       exact Bayes-optimal test perplexity (the floor)
=====================  ==========================================================  ============

Containers (:mod:`refimpl.data.tasks`): :class:`ClassificationTask`, :class:`LMTask`,
:class:`Seq2SeqTask`, :class:`SequenceTask`. Token arrays are int64 ``(N, T)`` padded with
``0 = <pad>`` plus ``(N,)`` lengths; specials are ``<pad>=0, <unk>=1, <bos>=2, <eos>=3``.
"""

from refimpl.data.lm import (hmm_length_mass, hmm_log_likelihood, lm_sentence_nll, make_hmm,
                             make_hmm_lm, sample_hmm, unigram_nll)
from refimpl.data.sentiment import make_sentiment, sentiment_rule_label, sentiment_score
from refimpl.data.tasks import ClassificationTask, LMTask, Seq2SeqTask, SequenceTask, lm_targets
from refimpl.data.vocab import (BOS, EOS, PAD, SPECIALS, UNK, Vocab, pad_sequences,
                                tokenize_chars, tokenize_words)

__all__ = [
    "BOS", "EOS", "PAD", "UNK", "SPECIALS", "Vocab", "tokenize_words", "tokenize_chars",
    "pad_sequences",
    "ClassificationTask", "LMTask", "Seq2SeqTask", "SequenceTask", "lm_targets",
    "make_sentiment", "sentiment_rule_label", "sentiment_score",
    "make_hmm_lm", "make_hmm", "sample_hmm", "hmm_log_likelihood", "hmm_length_mass",
    "unigram_nll", "lm_sentence_nll",
]
