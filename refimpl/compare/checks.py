"""Claims about the small networks themselves (chapter 1), run in miniature.

- ``claim:lstm-beats-bow`` — on the embedded sentiment task, whose labels depend on word order,
  an LSTM beats a bag-of-words classifier (by at least 5 accuracy points).
- ``claim:lstm-lm-near-bayes-floor`` — a small LSTM language model trained on the HMM language
  closes most (≥ 75 %) of the gap between the unigram model and the exact Bayes-optimal
  perplexity, and does not go below the floor (beyond sampling noise).
"""

from __future__ import annotations

import math

from refimpl.check import Outcome, register_claim


@register_claim("lstm-beats-bow", "an order-aware LSTM beats bag-of-words on the sentiment task",
                section="—", implements=["refimpl.nn.RNNClassifier", "refimpl.nn.BowClassifier",
                                         "refimpl.data.make_sentiment"])
def _lstm_beats_bow(rng, quick):
    from refimpl.compare.baselines import sentiment_baselines

    res = sentiment_baselines(quick, 0)
    bow, lstm = res["bow"].test_metric, res["lstm"].test_metric
    sane = 0.4 <= bow <= 1.0 and 0.4 <= lstm <= 1.0
    return Outcome(sane, {"acc_bow": bow, "acc_lstm": lstm, "gap": lstm - bow,
                          "params_bow": res["bow"].params, "params_lstm": res["lstm"].params},
                   "test accuracy; reproduced when the LSTM leads by >= 0.05",
                   reproduced=lstm - bow >= 0.05)


@register_claim("lstm-lm-near-bayes-floor",
                "an LSTM LM approaches the Bayes-optimal perplexity of the HMM language",
                section="—", implements=["refimpl.nn.LSTMLanguageModel", "refimpl.nn.fit_lm",
                                         "refimpl.data.make_hmm_lm"])
def _lm_floor(rng, quick):
    from refimpl.compare.baselines import lm_baseline
    from refimpl.data import unigram_nll

    base, task = lm_baseline(quick, 0)
    nll_model = math.log(base.test_metric)
    nll_bayes = task.bayes_nll
    nll_uni = unigram_nll(task, "test")
    closed = (nll_uni - nll_model) / (nll_uni - nll_bayes)
    # a finite test set can put a model slightly below the floor by chance, never far below
    sane = math.isfinite(nll_model) and nll_model > nll_bayes - 0.05
    return Outcome(sane, {"ppl_lstm": base.test_metric, "ppl_bayes": task.bayes_perplexity,
                          "ppl_unigram": math.exp(nll_uni), "gap_nats": nll_model - nll_bayes,
                          "gap_closed": closed},
                   "test perplexity; reproduced when >= 75% of the unigram-to-Bayes gap is closed",
                   reproduced=closed >= 0.75)
