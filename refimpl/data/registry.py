"""The registry of embedded tasks, so the CLI (``refimpl tour --task NAME``) can pick one.

``load_task(name, quick=False, rng=0)`` builds a task by name with either its full size or a
quick size (each quick task generates in well under a second).

The quick sizes are chosen so the tasks stay learnable in miniature. Measured with a 2-layer
PyTorch Transformer (d_model 64, 4 heads, read-out at the last position, Adam 1e-3, seed 0) on
the quick long-range tasks: full attention reaches 100 % test accuracy on ``recall``, ``copy``
and ``needle`` within 5 epochs of 3000 examples (with 1000 examples ``recall`` stalls at
~78 %), while the same model restricted to a causal window of 3 (receptive field 5 after two
layers) gets 37.7 % on ``recall``, at its :func:`~refimpl.data.longrange.sliding_window_ceiling`
of 35 % (chance 25 %).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from refimpl.data.corpora import load_stdlib_docstrings_chars, load_stdlib_topics
from refimpl.data.lm import make_hmm_lm
from refimpl.data.longrange import make_associative_recall, make_copy, make_needle
from refimpl.data.sentiment import make_sentiment
from refimpl.data.translation import make_translation

__all__ = ["TaskSpec", "TASKS", "load_task"]


@dataclass(frozen=True)
class TaskSpec:
    """How to build one embedded task.

    Attributes
    ----------
    name : str
    kind : {"classification", "lm", "seq2seq", "sequence"}
        The container type returned (ClassificationTask, LMTask, Seq2SeqTask, SequenceTask).
    description : str
    factory : callable
        ``factory(**kwargs, rng=rng)``.
    full, quick : dict
        Keyword arguments for the full and the quick size.
    """

    name: str
    kind: str
    description: str
    factory: Callable
    full: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)

    def __call__(self, quick: bool = False, rng=0, **overrides):
        kwargs = {**(self.quick if quick else self.full), **overrides}
        return self.factory(**kwargs, rng=rng)


TASKS: dict[str, TaskSpec] = {
    "sentiment": TaskSpec(
        "sentiment", "classification",
        "order-dependent sentiment (negation scope, intensifiers, 'but'); Zipfian vocabulary",
        make_sentiment,
        full=dict(n_train=4000, n_val=500, n_test=1000, vocab_size=3000),
        quick=dict(n_train=1500, n_val=300, n_test=500, vocab_size=1000)),
    "hmm_lm": TaskSpec(
        "hmm_lm", "lm",
        "word-level language from a Zipfian-emission HMM with the exact Bayes-optimal perplexity",
        make_hmm_lm,
        full=dict(n_states=16, vocab_size=2000, n_train_tokens=50_000, n_valid_tokens=5_000,
                  n_test_tokens=10_000),
        quick=dict(n_states=8, vocab_size=300, n_train_tokens=20_000, n_valid_tokens=2_000,
                   n_test_tokens=5_000, max_len=20)),
    "recall": TaskSpec(
        "recall", "sequence",
        "associative recall: key-value pairs, then a query key -> its value",
        make_associative_recall,
        full=dict(n_train=4000, n_val=400, n_test=1000, n_pairs=16, n_keys=32, n_values=8),
        quick=dict(n_train=3000, n_val=200, n_test=300, n_pairs=6, n_keys=12, n_values=4)),
    "copy": TaskSpec(
        "copy", "sequence",
        "copy after a delay: recall the prefix symbol at a queried slot",
        make_copy,
        full=dict(n_train=4000, n_val=400, n_test=1000, prefix_len=8, max_delay=48),
        quick=dict(n_train=3000, n_val=200, n_test=300, prefix_len=4, max_delay=12)),
    "needle": TaskSpec(
        "needle", "sequence",
        "needle at distance d: one marker token in filler decides the label",
        make_needle,
        full=dict(n_train=4000, n_val=400, n_test=1000, seq_len=128),
        quick=dict(n_train=3000, n_val=200, n_test=300, seq_len=32)),
    "translation": TaskSpec(
        "translation", "seq2seq",
        "synthetic SOV->SVO translation with adjective-noun swap (BLEU)",
        make_translation,
        full=dict(n_train=4000, n_val=300, n_test=500),
        quick=dict(n_train=1000, n_val=100, n_test=200)),
    "stdlib_topics": TaskSpec(
        "stdlib_topics", "classification",
        "real text: classify a stdlib docstring by its package (email, logging, xml, ...)",
        load_stdlib_topics, full=dict(), quick=dict()),
    "stdlib_chars": TaskSpec(
        "stdlib_chars", "lm",
        "real text: character-level LM on stdlib docstrings",
        load_stdlib_docstrings_chars,
        full=dict(max_chars=400_000), quick=dict(max_chars=50_000)),
}


def load_task(name: str, quick: bool = False, rng=0, **overrides):
    """Build an embedded task by name.

    Parameters
    ----------
    name : str
        A key of :data:`TASKS`.
    quick : bool
        Use the quick size (generates in well under a second; for tests, notebooks with
        ``REFIMPL_QUICK=1`` and ``refimpl tour --quick``).
    rng : int or Generator
    **overrides
        Keyword arguments passed on to the generator, overriding the size preset.

    Returns
    -------
    ClassificationTask, LMTask, Seq2SeqTask or SequenceTask
    """
    if name not in TASKS:
        raise ValueError(f"name must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name](quick=quick, rng=rng, **overrides)
