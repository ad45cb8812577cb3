"""Registered verification checks for the embedded tasks (chapter 1, "the networks and tasks").

- ``check:hmm-forward-brute-force`` — the scaled forward algorithm equals the sum over all
  state paths on a tiny HMM (so the Bayes floor of the LM task is exact);
- ``check:hmm-bayes-floor`` — the stored Bayes NLL of the HMM LM task is reproduced from the
  generator, and context-free / mis-specified models sit above it;
- ``check:sentiment-needs-order`` — the labelling rule reads the sentiment task perfectly
  while a bag-of-words logistic regression cannot (negation scope and "but" need order);
- ``check:bleu-hand-values`` — corpus BLEU on hand-worked examples (Papineni et al. 2002).
"""

from __future__ import annotations

import itertools

import numpy as np

from refimpl.check import Outcome, register_check
from refimpl.data.lm import (hmm_log_likelihood, lm_sentence_nll, make_hmm, make_hmm_lm,
                             unigram_nll)
from refimpl.data.sentiment import make_sentiment, sentiment_rule_label
from refimpl.data.translation import bleu


@register_check("hmm-forward-brute-force", "scaled forward algorithm equals the sum over all "
                "S^n state paths (tiny HMM)", section="—",
                implements=["refimpl.data.lm.hmm_log_likelihood"])
def _hmm_forward(rng, quick):
    hmm = make_hmm(n_states=3, n_words=4, n_successors=2, mean_length=3.0, rng=rng)
    pi, A, end, B = hmm["pi"], hmm["A"], hmm["end"], hmm["B"]
    lengths = np.array([1, 2, 4, 6])
    words = rng.integers(0, 4, size=(len(lengths), 6))
    got = hmm_log_likelihood(words, lengths, pi, A, end, B)
    want = np.empty(len(lengths))
    for i, n in enumerate(lengths):
        w = words[i, :n]
        tot = 0.0
        for path in itertools.product(range(3), repeat=int(n)):
            p = pi[path[0]] * B[path[0], w[0]]
            for t in range(1, n):
                p *= A[path[t - 1], path[t]] * B[path[t], w[t]]
            tot += p * end[path[-1]]
        want[i] = np.log(tot)
    return Outcome.compare(got, want, atol=1e-12, n_paths=3 ** 6)


@register_check("hmm-bayes-floor", "HMM LM: exact Bayes NLL reproduced; unigram and perturbed "
                "HMMs are above the floor", section="—",
                implements=["refimpl.data.lm.make_hmm_lm", "refimpl.data.lm.lm_sentence_nll",
                            "refimpl.data.lm.unigram_nll"])
def _hmm_floor(rng, quick):
    task = make_hmm_lm(n_states=6, vocab_size=150, n_train_tokens=4000, n_valid_tokens=500,
                       n_test_tokens=3000, max_len=15, rng=rng)
    floor = task.bayes_nll
    again = lm_sentence_nll(task)
    uni = unigram_nll(task)
    g = task.generator
    B = g["B"] * np.exp(0.5 * rng.standard_normal(g["B"].shape))
    B[:, :4] = 0.0
    B /= B.sum(1, keepdims=True)
    other = type(task)(**{**task.__dict__, "generator": {**g, "B": B}})
    perturbed = lm_sentence_nll(other)
    ok = abs(again - floor) < 1e-12 and uni > floor and perturbed > floor
    return Outcome(ok, {"bayes_ppl": float(np.exp(floor)), "unigram_ppl": float(np.exp(uni)),
                        "perturbed_hmm_ppl": float(np.exp(perturbed)),
                        "recompute_err": abs(again - floor)},
                   detail="test-split perplexities")


def _bow_logreg_accuracy(task, l2: float = 1e-2) -> float:
    """Bag-of-words logistic regression (L-BFGS, L2), fit on train, accuracy on test."""
    from scipy.optimize import minimize

    V = len(task.vocab)

    def feats(X):
        M = np.zeros((X.shape[0], V))
        rows = np.repeat(np.arange(X.shape[0]), X.shape[1])
        np.add.at(M, (rows, X.ravel()), 1.0)
        M[:, 0] = 1.0  # the <pad> column becomes the bias
        return M

    F, y = feats(task.X_train), task.y_train.astype(np.float64)

    def loss(w):
        z = F @ w
        # mean logistic loss + l2; log(1 + e^z) - y z, computed stably
        val = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * (w[1:] @ w[1:])
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid
        grad = F.T @ (p - y) / len(y)
        grad[1:] += l2 * w[1:]
        return val, grad

    w = minimize(loss, np.zeros(V), jac=True, method="L-BFGS-B",
                 options=dict(maxiter=500)).x
    return float(np.mean((feats(task.X_test) @ w > 0) == task.y_test))


@register_check("sentiment-needs-order", "sentiment task: the order-aware rule reads 100 %, "
                "bag-of-words logistic regression stays far below", section="—",
                implements=["refimpl.data.sentiment.make_sentiment",
                            "refimpl.data.sentiment.sentiment_rule_label"])
def _sentiment_order(rng, quick):
    n = 1500 if quick else 6000
    task = make_sentiment(n_train=n, n_val=10, n_test=1000, vocab_size=600, rng=rng)
    rule = float(np.mean([sentiment_rule_label(t) for t in task.texts_test] == task.y_test))
    bow = _bow_logreg_accuracy(task)
    return Outcome(rule == 1.0 and bow < 0.85, {"rule_acc": rule, "bow_logreg_acc": bow,
                                                "n_train": n},
                   detail="test accuracy")


@register_check("bleu-hand-values", "corpus BLEU on hand-worked cases: clipped precision 2/7, "
                "(1/5)^(1/4), brevity penalty e^-2, identity 1", section="—",
                implements=["refimpl.data.translation.bleu"])
def _bleu_hand(rng, quick):
    got = np.array([
        bleu(["the the the the the the the"], ["the cat is on the mat"], max_n=1),
        bleu(["a b c d e"], ["a b c d f"]),
        bleu(["the cat"], ["the cat is on the mat"], max_n=2),
        bleu(["the cat sat on the mat"], ["the cat sat on the mat"]),
    ])
    want = np.array([2 / 7, 5 ** -0.25, np.exp(-2.0), 1.0])
    return Outcome.compare(got, want, atol=1e-15)
