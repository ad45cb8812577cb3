"""The chapter-1 baselines: the small networks trained on the embedded tasks.

Shared by the chapter-1 notebook (which plots the curves) and the registered claims
``claim:lstm-beats-bow`` and ``claim:lstm-lm-near-bayes-floor`` (which assert the numbers), so
both see the same trained models. Results are cached per ``(quick, seed)`` within a process.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from refimpl.utils import check_int

__all__ = ["TrainedBaseline", "sentiment_baselines", "lm_baseline"]


@dataclass
class TrainedBaseline:
    """A trained model with its training history and test metric.

    Attributes
    ----------
    name : str
    model : refimpl.nn.Module
    history : refimpl.nn.train.History
        Per-epoch training loss and validation metric (accuracy, or perplexity for LMs).
    test_metric : float
        Test accuracy (classifiers) or test perplexity (language models).
    params : int
        Number of parameters.
    """

    name: str
    model: object
    history: object
    test_metric: float
    params: int


@functools.lru_cache(maxsize=4)
def sentiment_baselines(quick: bool = True, seed: int = 0) -> dict[str, TrainedBaseline]:
    """Train a bag-of-words MLP and an LSTM classifier on the embedded sentiment task.

    Both get the same embedding width, optimiser (Adam), learning rate and epochs; only the
    architecture differs, so the accuracy gap measures what word order is worth on a task whose
    labels depend on negation scope and "but" contrast (:func:`refimpl.data.make_sentiment`).

    Returns
    -------
    dict
        ``{"bow": TrainedBaseline, "lstm": TrainedBaseline}``; ``test_metric`` is accuracy.
    """
    from refimpl import nn
    from refimpl.data import load_task

    seed = check_int(seed, "seed", 0)
    task = load_task("sentiment", quick=quick, rng=seed)
    epochs = 5 if quick else 8
    V, C = len(task.vocab), task.n_classes
    models = {
        "bow": nn.BowClassifier(vocab_size=V, d_emb=32, n_classes=C, rng=seed),
        "lstm": nn.RNNClassifier(vocab_size=V, d_emb=32, d_hidden=64, n_classes=C, cell="lstm", rng=seed),
    }
    out = {}
    for name, model in models.items():
        hist = nn.fit(model, task, epochs=epochs, lr=3e-3, rng=seed)
        acc = nn.evaluate_accuracy(model, task.X_test, task.len_test, task.y_test)
        out[name] = TrainedBaseline(name, model, hist, float(acc), model.num_parameters())
    return out


@functools.lru_cache(maxsize=4)
def lm_baseline(quick: bool = True, seed: int = 0) -> tuple[TrainedBaseline, object]:
    """Train a word-level LSTM language model on the HMM language.

    Returns
    -------
    (TrainedBaseline, LMTask)
        ``test_metric`` is the test perplexity; the task carries ``bayes_perplexity``, the
        exact floor under the true generator.
    """
    from refimpl import nn
    from refimpl.data import load_task

    seed = check_int(seed, "seed", 0)
    task = load_task("hmm_lm", quick=quick, rng=seed)
    model = nn.LSTMLanguageModel(vocab_size=len(task.vocab), d_emb=32, d_hidden=64, rng=seed)
    hist = nn.fit_lm(model, task, epochs=4 if quick else 8, lr=5e-3, rng=seed)
    ppl = nn.perplexity(model, task.test, task.len_test)
    if not math.isfinite(ppl):
        raise RuntimeError(f"LSTM LM test perplexity is not finite: {ppl}")
    return TrainedBaseline("lstm_lm", model, hist, float(ppl), model.num_parameters()), task
