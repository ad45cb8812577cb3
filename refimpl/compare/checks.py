"""Claims about the small networks themselves (chapter 1), run in miniature.

- ``claim:lstm-beats-bow`` — on the embedded sentiment task, whose labels depend on word order,
  an LSTM beats a bag-of-words classifier (by at least 5 accuracy points).
- ``claim:lstm-lm-near-bayes-floor`` — a small LSTM language model trained on the HMM language
  closes most (≥ 75 %) of the gap between the unigram model and the exact Bayes-optimal
  perplexity, and does not go below the floor (beyond sampling noise).
"""

from __future__ import annotations

import math

from refimpl.check import Outcome, register_check, register_claim
from refimpl.compare.baselines import sentiment_baselines


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


# ------------------------------------------------------------------- §8: combinations
_HUF = "refimpl.kernels.huffman"
_PL = "refimpl.compare.pipelines"
_PLAN = "refimpl.compare.planner"


@register_check("huffman-code", "canonical Huffman coder: hand lengths/codes, optimal Σ f·l "
                "against brute force over all Kraft-feasible lengths, H ≤ L̄ < H + 1 on random "
                "and skewed streams, exact round trip on both backends, 2^16-symbol alphabet",
                section="8.1", implements=[f"{_HUF}.huffman_code_lengths",
                                           f"{_HUF}.canonical_codes", f"{_HUF}.huffman_encode",
                                           f"{_HUF}.huffman_decode", f"{_HUF}.HuffmanCode"])
def _check_huffman(rng, quick):
    import itertools

    import numpy as np

    from refimpl.kernels.huffman import HuffmanCode, canonical_codes, huffman_code_lengths

    hand = (huffman_code_lengths([5, 2, 1, 1]).tolist() == [1, 2, 3, 3]
            and canonical_codes([1, 2, 3, 3]).tolist() == [0, 2, 6, 7])
    optimal = True
    for _ in range(6):  # brute force over every length vector with Σ 2^-l ≤ 1
        f = rng.integers(1, 20, size=int(rng.integers(2, 6)))
        n = f.size
        best = min(sum(a * b for a, b in zip(f, ls))
                   for ls in itertools.product(range(1, n), repeat=n)
                   if sum(2.0 ** -x for x in ls) <= 1.0)
        optimal &= int((huffman_code_lengths(f) * f).sum()) == best
    worst_slack, round_trip = np.inf, True
    streams = [rng.geometric(0.3, size=4000) - 1, rng.integers(0, 5, size=3000),
               np.where(rng.random(3000) < 0.99, 0, rng.integers(1, 50, size=3000)),
               rng.integers(0, 1 << 16, size=20000 if quick else 200000)]
    for s in streams:
        hc = HuffmanCode.fit(s)
        H, L = hc.entropy, hc.mean_length
        worst_slack = min(worst_slack, L - H, H + 1 - L)
        for backend in ("numba", "numpy"):
            payload, nb = hc.encode(s, backend=backend)
            round_trip &= nb == hc.stream_bits and np.array_equal(
                hc.decode(payload, nb, backend=backend), s)
    ok = hand and optimal and round_trip and worst_slack >= -1e-12
    return Outcome(ok, {"hand": hand, "optimal_vs_brute_force": optimal,
                        "round_trip": round_trip, "min_bound_slack_bits": float(worst_slack)},
                   "Huffman lengths are optimal, within the entropy bound, and lossless")


def _no_fit_context(seed: int = 0):
    """A TourContext on the tiny sentiment task whose ``fit`` only runs ``after_step`` once
    (the storage checks need real models, not training)."""
    from refimpl.compare.tour import config_for, load_task, make_model
    from refimpl.registry import TourContext
    from refimpl.utils import as_rng

    cfg = config_for(tiny=True, seed=seed)
    task = load_task(cfg, as_rng(seed))

    def fit(model, after_step=None, **kw):
        if after_step is not None:
            after_step(model)

    base = {k: make_model(k, task, cfg, as_rng(seed + 1)) for k in ("lstm", "transformer")}
    return TourContext(task=task, baseline=base["lstm"], baseline_kind="lstm", quick=True,
                       seed=seed, fit=fit, evaluate=lambda m: 0.0,
                       make_model=lambda kind=None, rng=None, **kw: make_model(
                           kind or "lstm", task, cfg, as_rng(seed + 2 if rng is None else rng),
                           **kw),
                       baselines=base, config=cfg)


@register_check("composed-storage-bits", "pipelines' storage composes exactly: a hand-worked "
                "CSR + 2-bit codes + Huffman count, prune-only = pruning.network.model_bits, "
                "the ledger's Huffman bits = the coder's streams, every code is its centroid, "
                "each Deep Compression stage shrinks the model", section="8.1",
                implements=[f"{_PL}.Compressed", f"{_PL}.Pipeline", f"{_PL}.Prune",
                            f"{_PL}.Quantize", f"{_PL}.Huffman"])
def _check_composed_bits(rng, quick):
    import numpy as np

    from refimpl.compare.pipelines import INDEX_BITS, Compressed, Pipeline, Prune, Quantize, \
        Record
    from refimpl.pruning.network import model_bits

    class _P:
        def __init__(self, a):
            self.data, self.size, self.shape, self.ndim = a, a.size, a.shape, a.ndim

    class _M:
        def named_parameters(self):
            return [("W", _P(np.zeros((2, 8))))]

    mask = np.zeros((2, 8), bool)
    mask[0, [1, 3]] = True
    mask[1, 7] = True
    rec = Record(mask=mask, codes=np.array([1, 2, 1]), bits=2, codebook=np.arange(4.0),
                 scheme="kmeans", implicit_zero=True)
    cm = Compressed(_M(), "lstm", records={"W": rec})
    # 3 pointers × 32 + 3 gaps × 5 + 3 codes × 2 + 3 centroids × 32
    hand_fixed = cm.bits == 96 + 15 + 6 + 96
    cm.huffman = True
    # gap stream [1, 1, 7] and code stream [1, 2, 1]: 3 bits each; tables 32·6 + 4·6
    hand_huff = cm.bits == 96 + 3 + 3 + 96 + 32 * 6 + 4 * 6
    ctx = _no_fit_context(int(rng.integers(0, 1000)))
    dense = 32 * ctx.baseline.num_parameters()
    pruned = Pipeline("p", [Prune(0.9)]).run(ctx)
    masks = {n: r.mask for n, r in pruned.records.items()}
    vs_chapter = pruned.bits == model_bits(pruned.model, masks, index_bits=INDEX_BITS)[0]
    coded = Pipeline("pq", [Prune(0.9), Quantize(4)]).run(ctx)
    dc = Pipeline("dc", [Prune(0.9), Quantize(4)]).run(ctx)
    dc.huffman = True
    br = dc.breakdown()
    streams = dc.huffman_round_trip() == br["codes"] + br["indices"]
    params = dict(dc.model.named_parameters())
    centroids = all(np.array_equal(params[n].data[r.mask], r.codebook[r.codes])
                    for n, r in dc.records.items())
    shrinks = dc.bits < coded.bits < pruned.bits < dense
    ok = hand_fixed and hand_huff and vs_chapter and streams and centroids and shrinks
    return Outcome(ok, {"hand_fixed_width": hand_fixed, "hand_huffman": hand_huff,
                        "prune_eq_model_bits": vs_chapter, "huffman_streams_eq_ledger": streams,
                        "dense_bits": dense, "pruned_bits": pruned.bits,
                        "pruned_4bit_bits": coded.bits, "deep_compression_bits": dc.bits},
                   "bits of each stage composed from the ledger, checked by hand and by "
                   "the chapter's counter")


@register_check("budget-planner", "per-component budget planner: the Pareto-frontier merge "
                "finds the same optimum as brute force over every assignment, within the "
                "byte (and latency) budget; impossible budgets are refused", section="8.3",
                implements=[f"{_PLAN}.plan_components", f"{_PLAN}.brute_force_plan",
                            f"{_PLAN}.plan_from_rows"])
def _check_planner(rng, quick):
    from refimpl.compare.planner import ComponentPlan, brute_force_plan, plan_components

    agree, worst = True, 0.0
    n_cases = 0
    for _ in range(10 if quick else 40):
        table = {f"c{i}": {f"o{j}": (float(rng.integers(1, 300)), float(rng.random()))
                           for j in range(int(rng.integers(1, 7)))}
                 for i in range(int(rng.integers(1, 5)))}
        plan = ComponentPlan(table, 0.9, int(rng.integers(0, 100)))
        lo = plan.fixed_bytes + sum(min(b for b, _ in o.values()) for o in table.values())
        hi = plan.fixed_bytes + sum(max(b for b, _ in o.values()) for o in table.values())
        for budget in (lo, (lo + hi) / 2, hi):
            bf = brute_force_plan(plan, budget)
            plan_components(plan, budget)
            d = sum(table[c][o][1] for c, o in plan.choice.items())
            b = plan.fixed_bytes + sum(table[c][o][0] for c, o in plan.choice.items())
            worst = max(worst, abs(d - bf[0]))
            agree &= b <= budget and abs(d - bf[0]) <= 1e-12
            n_cases += 1
        try:
            plan_components(plan, lo - 1)
            refused = False
        except ValueError:
            refused = True
        agree &= refused
        # with a latency budget too: (bytes, drop, µs) per option, 3-D frontier merge
        lat_table = {c: {o: (b, d, float(rng.integers(1, 40))) for o, (b, d) in opts.items()}
                     for c, opts in table.items()}
        lplan = ComponentPlan(lat_table, 0.9, plan.fixed_bytes)
        hi_l = sum(max(v[2] for v in o.values()) for o in lat_table.values())
        bf = brute_force_plan(lplan, hi, 0.6 * hi_l)
        if bf is None:
            try:
                plan_components(lplan, hi, 0.6 * hi_l)
                agree = False
            except ValueError:
                pass
        else:
            plan_components(lplan, hi, 0.6 * hi_l)
            d = sum(lat_table[c][o][1] for c, o in lplan.choice.items())
            worst = max(worst, abs(d - bf[0]))
            agree &= abs(d - bf[0]) <= 1e-12 and lplan.predicted_latency_us <= 0.6 * hi_l
            n_cases += 1
    return Outcome(agree, {"cases": n_cases, "max_objective_difference": worst},
                   "frontier merge = brute force; a budget below the smallest plan is refused")


@register_check("lm-budget-planner", "the §8.3 planner on the LSTM language model "
                "(quality = perplexity; per-component drop = NLL increase in nats/token): "
                "frontier merge = brute force over every assignment, predicted bytes = "
                "measured bytes, a one-component plan's predicted perplexity = its measured "
                "one, an impossible budget refused naming the smallest size", section="8.3",
                implements=[f"{_PLAN}.measure_sensitivity", f"{_PLAN}.plan_components",
                            f"{_PLAN}.brute_force_plan", f"{_PLAN}.apply_plan",
                            f"{_PLAN}.quality_score"])
def _check_lm_planner(rng, quick):
    import numpy as np

    from refimpl import nn
    from refimpl.compare.lm_tour import lm_config, lm_context
    from refimpl.compare.planner import (apply_plan, brute_force_plan, measure_sensitivity,
                                         plan_components)
    from refimpl.data import load_task

    cfg = lm_config(tiny=quick, quick=True)  # tiny LM (quick) / the LM tour's quick LM (full)
    task = load_task("hmm_lm", quick=True, rng=0, **cfg.task_kwargs)
    base = nn.LSTMLanguageModel(vocab_size=len(task.vocab), d_emb=cfg.d_emb,
                                d_hidden=cfg.d_hidden, rng=1)
    nn.fit_lm(base, task, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, rng=0,
              progress=False)
    ctx = lm_context(cfg, task, base)
    plan = measure_sensitivity(ctx, options=("float32", "uniform-8", "kmeans-4", "kmeans-2",
                                             "prune-0.9"), quality="perplexity")
    base_ppl = float(ctx.evaluate(base))
    lo = plan.fixed_bytes + sum(min(v[0] for v in o.values()) for o in plan.table.values())
    hi = plan.fixed_bytes + sum(max(v[0] for v in o.values()) for o in plan.table.values())
    agree, worst, n = True, 0.0, 0
    for budget in np.linspace(lo, hi, 12):
        bf = brute_force_plan(plan, budget)
        plan_components(plan, budget)
        d = sum(plan.table[c][o][1] for c, o in plan.choice.items())
        worst = max(worst, abs(d - bf[0]))
        agree &= plan.predicted_bytes <= math.ceil(budget) and abs(d - bf[0]) <= 1e-12
        agree &= math.isclose(plan.predicted_quality, base_ppl * math.exp(bf[0]),
                              rel_tol=1e-12)
        n += 1
    try:
        plan_components(plan, lo - 1)
        refused = False
    except ValueError as err:
        refused = f"smallest achievable is {lo:.0f} bytes" in str(err)
    plan_components(plan, (lo + hi) / 4)
    apply_plan(ctx, plan)
    bytes_exact = plan.measured_bytes == plan.predicted_bytes
    mid = {"choice": dict(plan.choice), "predicted_ppl": plan.predicted_quality,
           "measured_ppl": plan.measured_quality}
    plan.choice = {c: ("kmeans-4" if c == "embedding" else "float32") for c in plan.table}
    apply_plan(ctx, plan)
    one = base_ppl * math.exp(plan.table["embedding"]["kmeans-4"][1])
    one_exact = math.isclose(plan.measured_quality, one, rel_tol=1e-12)
    return Outcome(agree and refused and bytes_exact and one_exact,
                   {"budgets": n, "max_objective_difference": worst,
                    "base_ppl": base_ppl, "bayes_ppl": task.bayes_perplexity,
                    "smallest_bytes": lo, "plan_at_quarter_range": mid["choice"],
                    "predicted_ppl": mid["predicted_ppl"], "measured_ppl": mid["measured_ppl"],
                    "predicted_bytes_equal_measured": bytes_exact},
                   "frontier merge = brute force on the measured LM table; additive model "
                   "exact for one component, measured beside the prediction for several")


@register_claim("deep-compression-in-miniature",
                "pruning + quantisation + Huffman (Deep Compression) compresses ≥ 20× with at "
                "most 1 point of accuracy lost, beating pruning or quantisation alone in size",
                section="8.1", implements=[f"{_PL}.Pipeline", f"{_PL}.PIPELINES"])
def _claim_deep_compression(rng, quick):
    from refimpl.compare.pipelines import Huffman, Pipeline, Prune, Quantize

    ctx = _chapter1_context(quick)
    base_acc = ctx.evaluate(ctx.baseline)
    dense = 32 * ctx.baseline.num_parameters()
    res = {}
    for name, steps in (("prune-90", [Prune(0.9)]), ("kmeans-4bit", [Quantize(4)]),
                        ("deep-compression", [Prune(0.9), Quantize(4), Huffman()])):
        cm = Pipeline(name, steps).run(ctx)
        res[name] = (cm.bits, ctx.evaluate(cm.model))
    dc_bits, dc_acc = res["deep-compression"]
    ratio = dense / dc_bits
    smaller = all(dc_bits < b for k, (b, _) in res.items() if k != "deep-compression")
    sane = all(0.3 <= a <= 1.0 for _, a in res.values())
    numbers = {"acc_baseline": base_acc, "compression_dc": ratio}
    for k, (b, a) in res.items():
        numbers[f"acc_{k}"] = a
        numbers[f"x_{k}"] = dense / b
    return Outcome(sane, numbers, "LSTM of chapter 1 on the sentiment task; reproduced when "
                   "Deep Compression is >= 20x smaller than float32, smaller than each part, and "
                   "within 0.01 of the baseline's accuracy",
                   reproduced=ratio >= 20 and smaller and dc_acc >= base_acc - 0.01)


def _chapter1_context(quick: bool):
    """A TourContext around chapter 1's trained LSTM (cached by
    :func:`refimpl.compare.baselines.sentiment_baselines`), fine-tuning with ``nn.fit``."""
    from refimpl import nn
    from refimpl.data import load_task
    from refimpl.registry import TourContext

    base = sentiment_baselines(quick, 0)["lstm"].model
    task = load_task("sentiment", quick=quick, rng=0)

    def fit(model, epochs=1, lr=3e-3, **kw):
        return nn.fit(model, task, epochs=epochs, lr=lr, rng=0, progress=False, **kw)

    return TourContext(task=task, baseline=base, baseline_kind="lstm", quick=quick, seed=0,
                       fit=fit,
                       evaluate=lambda m: float(nn.evaluate_accuracy(m, task.X_test,
                                                                     task.len_test,
                                                                     task.y_test)),
                       make_model=lambda kind=None, **kw: None, baselines={"lstm": base})


_LAT = "refimpl.compare.latency"


@register_check("stored-kernel-latency", "the latency column runs each stored format through "
                "its own kernel: CSR product, packed k-bit embedding rows, TT-embedding lookup, "
                "Longformer's sliding-window kernel — each exact against the dense reference "
                "it replaces, none a dense simulation", section="8.1",
                implements=[f"{_LAT}.stored_ops", f"{_LAT}.stored_latency"])
def _check_stored_kernels(rng, quick):
    import numpy as np

    from refimpl.attention.dense import dense_attention
    from refimpl.attention.hooks import LongformerHook
    from refimpl.attention.linear import longformer_mask
    from refimpl.compare.latency import stored_latency, stored_ops
    from refimpl.decomposition.tensor_train import TTEmbedding
    from refimpl.kernels import record_calls
    from refimpl.nn import Embedding, Linear, Module, TransformerClassifier

    m = Module()
    m.fc = Linear(40, 24, rng=0)
    W = rng.standard_normal((24, 40)) * (rng.random((24, 40)) < 0.2)  # 80 % zeros: CSR
    m.fc.W.data = W
    m.emb = Embedding(30, 16, rng=0)
    cb = np.array([-0.75, -0.25, 0.25, 0.75])
    codes = rng.integers(0, 4, (30, 16))
    m.emb.W.data = cb[codes]  # 4 distinct values: 2-bit packed rows
    m.tt = TTEmbedding(50, voc_dims=(4, 4, 4), emb_dims=(2, 2, 2), rank=3, rng=1)
    ops = {op.fmt: op for op in stored_ops(m)}
    X = rng.standard_normal((5, 40)).astype(np.float32)
    ids = rng.integers(0, 30, 9)
    with record_calls() as log:
        y = ops["csr"].run(X)
        e = ops["gather-kbit2"].run(ids)
        t = ops["tt-lookup"].run(ids)
    kernels = {k for k, _ in log}
    X64 = X.astype(np.float64)
    bound = 40 * np.finfo(np.float32).eps * (np.abs(X64) @ np.abs(W).T)
    exact = (bool(np.all(np.abs(y - X64 @ W.T) <= bound))
             and np.array_equal(e, cb[codes][ids].astype(np.float32))
             and bool(np.allclose(t, m.tt.weight()[ids], rtol=0,
                                  atol=1e-5 * np.abs(m.tt.weight()).max())))
    tf = TransformerClassifier(vocab_size=20, d_model=16, num_heads=2, d_ff=16, num_layers=1,
                               max_len=32, n_classes=2, rng=0)
    tf.layers[0].self_attn.attention = LongformerHook(4, 1, (0,), fused=True)
    (att,) = stored_ops(tf, kinds=("attention",))
    Q, K, V = att.input(2, rng)
    with record_calls() as log2:
        o = att.run((Q, K, V))
    ref = dense_attention(*(a.astype(np.float64) for a in (Q, K, V)),
                          longformer_mask(32, 4, 1, (0,)))
    att_err = float(np.abs(o - ref).max())
    kernels |= {k for k, _ in log2}
    want = ("csr", "unpack_codes", "tt_embedding_lookup", "sliding_window")
    ran = {w: any(w in k for k in kernels) for w in want}
    lat = stored_latency(tf, batches=(1, 4), repeat=2)
    ok = exact and all(ran.values()) and att_err <= 1e-5 and att.fmt == "attn-window" \
        and lat["attention_ms_b4"] > 0 and "attn-window×1" in lat["formats"]
    return Outcome(ok, {"exact": exact, "kernels_ran": ran, "attention_max_err": att_err,
                        "formats": lat["formats"]},
                   "every stored format is timed through its own kernel and computes the "
                   "same result as the dense reference")
