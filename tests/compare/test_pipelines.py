"""Composable pipelines (Survey §8.1): storage that composes exactly (byte counts worked by
hand), agreement with the chapters' own counters, order rules, Huffman streams that round-trip
and match the ledger, the frontier verdict."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.compare.pipelines import (
    INDEX_BITS,
    PIPELINES,
    Compressed,
    Distil,
    HashRecurrent,
    Huffman,
    LowRank,
    Pipeline,
    Prune,
    PruneHeadsFFN,
    Quantize,
    Record,
    TTEmbed,
    frontier_verdict,
    parts_label,
)
from refimpl.compare.tour import config_for, load_task, make_model
from refimpl.registry import TourContext
from refimpl.utils import as_rng

assert INDEX_BITS == 5  # the hand counts below assume 5-bit relative indices


class _Param:
    def __init__(self, a):
        self.data = a
        self.size, self.shape, self.ndim = a.size, a.shape, a.ndim


class _Model:
    """Stands in for a Module: named_parameters only."""

    def __init__(self, **arrays):
        self.arrays = {k: _Param(v) for k, v in arrays.items()}

    def named_parameters(self):
        return list(self.arrays.items())


def _sparse_2x8():
    mask = np.zeros((2, 8), bool)
    mask[0, [1, 3]] = True
    mask[1, 7] = True
    return mask


def test_hand_count_csr_float_values():
    # 3 entries, gaps 2, 2, 8 fit in 5 bits (no fillers); 3 row pointers
    cm = Compressed(_Model(W=np.zeros((2, 8)), b=np.zeros(8)), "lstm",
                    records={"W": Record(mask=_sparse_2x8())})
    assert cm.storage()["W"] == {"pointers": 3 * 32, "indices": 3 * 5, "values": 3 * 32}
    assert cm.storage()["b"] == {"values": 8 * 32}
    assert cm.bits == 96 + 15 + 96 + 256


def test_hand_count_csr_codes_and_huffman():
    rec = Record(mask=_sparse_2x8(), codes=np.array([1, 2, 1]), bits=2,
                 codebook=np.array([0.0, -1.0, 1.0, 2.0]), scheme="kmeans", implicit_zero=True)
    cm = Compressed(_Model(W=np.zeros((2, 8))), "lstm", records={"W": rec})
    # codes 3 × 2 bits; codebook 2^2 − 1 = 3 float32 (code 0 is the implicit zero)
    assert cm.storage()["W"] == {"pointers": 96, "indices": 15, "codes": 6, "codebook": 96}
    cm.huffman = True
    # gap stream (d − 1) = [1, 1, 7]: two used symbols → 1 bit each, 3 bits; table 32 × 6
    # code stream [1, 2, 1]: 1 bit each, 3 bits; table 4 × 6
    assert cm.storage()["W"] == {"pointers": 96, "indices": 3, "huffman_tables": 192 + 24,
                                 "codes": 3, "codebook": 96}
    assert cm.bits == 96 + 3 + 216 + 3 + 96
    assert cm.huffman_round_trip(backend="numpy") == 3 + 3


def test_hand_count_fillers_get_the_implicit_zero_code():
    mask = np.zeros((1, 40), bool)
    mask[0, [0, 39]] = True  # gaps 1 and 39 > 32: one filler at column 32
    rec = Record(mask=mask, codes=np.array([3, 2]), bits=2, codebook=np.arange(4.0),
                 scheme="kmeans", implicit_zero=True)
    cm = Compressed(_Model(W=np.zeros((1, 40))), "lstm", records={"W": rec})
    assert cm.storage()["W"] == {"pointers": 64, "indices": 3 * 5, "codes": 3 * 2,
                                 "codebook": 3 * 32}
    assert cm.params == 3
    cm.huffman = True
    # code stream [3, 0, 2]: lengths 1, 2, 2 (5 bits); gap stream [0, 31, 6]: 5 bits
    parts = cm.storage()["W"]
    assert parts["codes"] == 5 and parts["indices"] == 5
    assert parts["huffman_tables"] == 32 * 6 + 4 * 6


def test_hand_count_structured_and_uniform():
    mask = np.zeros((4, 3), bool)
    mask[[0, 2]] = True  # two kept rows of 3: 6 entries stored densely
    rec = Record(mask=mask, structured=True, codes=np.arange(6) % 4, bits=8,
                 codebook=np.linspace(0, 1, 256), scheme="uniform")
    cm = Compressed(_Model(W=np.zeros((4, 3))), "transformer", records={"W": rec},
                    extra_bits={"tables": 4})
    assert cm.storage()["W"] == {"codes": 48, "scales": 64}
    assert cm.bits == 48 + 64 + 4
    assert cm.params == 6


# -------------------------------------------------------------------- real models, no fit
@pytest.fixture(scope="module")
def ctx():
    cfg = config_for(tiny=True)
    task = load_task(cfg, as_rng(0))
    calls = []

    def fit(model, after_step=None, **kw):  # no training: run the hook once, as fit would
        calls.append(kw)
        if after_step is not None:
            after_step(model)

    def mk(kind=None, **kw):
        return make_model(kind or "lstm", task, cfg, as_rng(2), **kw)

    base = {k: make_model(k, task, cfg, as_rng(1)) for k in ("lstm", "transformer")}
    return TourContext(task=task, baseline=base["lstm"], baseline_kind="lstm", quick=True,
                       seed=0, fit=fit, evaluate=lambda m: 0.0, make_model=mk,
                       baselines=base, config=cfg)


def test_dense_model_costs_32_bits_per_parameter(ctx):
    m = ctx.copy_baseline()
    assert Compressed(m, "lstm").bits == 32 * m.num_parameters()


def test_prune_only_matches_the_chapter_counter(ctx):
    from refimpl.pruning.network import model_bits

    cm = Pipeline("p", [Prune(0.8)]).run(ctx)
    masks = {n: r.mask for n, r in cm.records.items()}
    assert cm.bits == model_bits(cm.model, masks, index_bits=INDEX_BITS)[0]
    assert cm.params == model_bits(cm.model, masks, index_bits=INDEX_BITS)[1]


def test_deep_compression_composes_exactly(ctx):
    cm = PIPELINES["deep-compression"].run(ctx)
    assert cm.steps == ["prune(0.9)", "kmeans-4bit", "huffman"]
    params = dict(cm.model.named_parameters())
    for n, rec in cm.records.items():
        W = params[n].data
        assert np.all(W[~rec.mask] == 0)  # pruned entries stay zero
        # every kept weight is its code's centroid; at most 15 learned values + the zero
        np.testing.assert_array_equal(W[rec.mask], rec.codebook[rec.codes])
        assert rec.codebook[0] == 0.0 and rec.codes.min() >= 1
    br = cm.breakdown()
    # the ledger's Huffman streams are what the coder writes, bit for bit
    assert cm.huffman_round_trip() == br["codes"] + br["indices"]
    # the total is the sum of the parts, and every 1-D parameter is float32
    one_d = sum(p.size for p in params.values() if p.ndim == 1)
    assert br["values"] == 32 * one_d
    assert cm.bits == sum(br.values())
    # each stage shrinks the model: prune only < dense, + codes < prune only
    pruned = Pipeline("p", [Prune(0.9)]).run(ctx)
    coded = Pipeline("pq", [Prune(0.9), Quantize(4)]).run(ctx)
    assert cm.bits < coded.bits < pruned.bits < 32 * ctx.baseline.num_parameters()


def test_uniform_codes_reproduce_the_uniform_quantiser(ctx):
    from refimpl.quantization.uniform import quantize_uniform

    base = ctx.copy_baseline()
    cm = Pipeline("u", [Quantize(8, "uniform")]).run(ctx)
    for n, p in base.named_parameters():
        if p.ndim == 2:
            rec = cm.records[n]
            np.testing.assert_allclose(rec.codebook[rec.codes].reshape(p.shape),
                                       quantize_uniform(p.data, 8), rtol=0, atol=1e-12)
            assert cm.storage()[n] == {"codes": 8 * p.size, "scales": 64}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_survey_pipeline_runs_and_counts(ctx, name):
    cm = PIPELINES[name].run(ctx)
    assert cm.bits == sum(cm.breakdown().values()) > 0
    assert len(cm.steps) == len(PIPELINES[name].steps)


def test_hashed_seeds_and_fastformers_tables(ctx):
    cm = PIPELINES["tt-hashed"].run(ctx)
    assert cm.extra_bits["seeds"] == 2 * 32 * 2  # W_ih and W_hh, two seeds each
    ff = PIPELINES["fastformers"].run(ctx)
    L = len(ff.model.layers)
    H = ff.model.layers[0].self_attn.num_heads
    d_ff = ff.model.layers[0].linear1.W.shape[0]
    assert ff.extra_bits["tables"] == L * (H + d_ff)
    for lay in ff.model.layers:  # half the units are exactly zero rows/columns
        dead = np.all(lay.linear1.W.data == 0, axis=1)
        assert dead.sum() == d_ff // 2
        assert np.all(lay.linear2.W.data[:, dead] == 0)


@pytest.mark.parametrize("steps, match", [
    ([], "empty"),
    ([Quantize(4), LowRank()], "cannot follow kmeans-4bit: it re-parameterises"),
    ([Quantize(4), TTEmbed()], "bit-packed"),
    ([Prune(0.5), HashRecurrent()], "already pruned"),
    ([Quantize(4), Prune(0.5)], "already k-bit codes"),
    ([Prune(0.5), Distil()], "put it first"),
    ([Huffman()], "quantise or prune first"),
    ([Prune(0.5), Huffman(), Quantize(4)], "entropy-coded"),
    ([Prune(0.5), Huffman(), Huffman()], "Huffman twice"),
])
def test_impossible_orders_are_refused(steps, match):
    with pytest.raises(ValueError, match=match):
        Pipeline("bad", steps)


def test_bad_step_arguments():
    with pytest.raises(ValueError, match="sparsity"):
        Prune(1.5)
    with pytest.raises(ValueError, match="bits"):
        Quantize(0)
    with pytest.raises(ValueError, match="scheme"):
        Quantize(4, "log")
    with pytest.raises(TypeError, match="Step objects"):
        Pipeline("x", ["prune"])
    with pytest.raises(ValueError, match="heads"):
        PruneHeadsFFN(heads=float("nan"))


def test_structured_pruning_needs_a_transformer(ctx):
    with pytest.raises(ValueError, match="needs a Transformer"):
        Pipeline("x", [PruneHeadsFFN()], base="lstm").run(ctx)


def test_frontier_verdict():
    combo = {"method": "c", "bytes": 100, "accuracy": 0.80}
    a = {"method": "a", "bytes": 200, "accuracy": 0.79}
    b = {"method": "b", "bytes": 300, "accuracy": 0.70}
    assert frontier_verdict(combo, [a, b]) == "beats its parts"
    assert frontier_verdict(combo, [{"method": "d", "bytes": 90, "accuracy": 0.8}]) == \
        "dominated by d"
    assert frontier_verdict(combo, [{"method": "e", "bytes": 90, "accuracy": 0.7}]) == \
        "trade-off: not the smallest, +0.100 accuracy vs e"
    # smaller than every part but 5 points below the best part: not a win
    assert frontier_verdict(combo, [{"method": "g", "bytes": 150, "accuracy": 0.85}]) == \
        "trade-off: smaller than every part, -0.050 accuracy vs g"
    # within one point of the best part and smaller: a win
    assert frontier_verdict(combo, [{"method": "h", "bytes": 150, "accuracy": 0.805}]) == \
        "beats its parts"
    assert frontier_verdict(combo, [{"method": "f", "bytes": None, "accuracy": None}]) == \
        "no parts measured"


def test_parts_label_names_only_the_parts_that_ran():
    assert parts_label(("a", "b"), {"a": 1, "b": 2}) == " (a, b)"
    assert parts_label(("a", "b"), {"a": 1}) == " (a; parts not run: b)"
    assert parts_label(("a", "b"), {}) == " (parts not run: a, b)"


def test_lm_verdict_does_not_name_a_part_that_did_not_run():
    from refimpl.compare.lm_tour import _lm_parts, _lm_verdicts

    name, parts = next((n, p) for n, p in _lm_parts().items() if len(p) >= 2)
    rows = [{"method": name, "bytes": 100, "perplexity": 50.0},
            {"method": parts[0], "bytes": 200, "perplexity": 51.0}]
    _lm_verdicts(rows)
    label = rows[0]["frontier"]
    assert label.endswith(f"({parts[0]}; parts not run: {', '.join(parts[1:])})"), label


@pytest.mark.parametrize("lm", [False, True])
def test_mutual_learning_peers_start_apart(lm):
    """DML's peers must start from different initialisations: identical peers get identical
    gradients and the KL terms stay exactly 0 (plain training of one small model)."""
    from refimpl.compare.pipelines import MutualLearning
    from refimpl.compare.tour import tour_context
    from refimpl.nn import cross_entropy

    if lm:
        from refimpl.compare.lm_tour import lm_config, lm_context
        from refimpl.data import load_task as load

        cfg = lm_config(tiny=True)
        task = load("hmm_lm", quick=True, rng=0, **cfg.task_kwargs)
        ctx = lm_context(cfg, task, None)
        teacher = ctx.make_model()
        X, L = task.train[:8], task.len_train[:8]
        y = None
    else:
        ctx = tour_context(config_for(tiny=True))
        teacher = ctx.make_model("lstm")
        X, L, y = ctx.task.X_train[:8], ctx.task.len_train[:8], ctx.task.y_train[:8]
    seen = {}

    def fake_fit(model, forward=None, loss_fn=None, **kw):  # one look at the objective
        from refimpl.compare.pipelines import _lm_token_logits

        seen["pair"] = model
        seen["loss"] = float(loss_fn(forward(model, X, L), y).data)
        seen["ce"] = sum(float((m.loss(X, L) if lm else cross_entropy(m(X, L), y)).data)
                         for m in model)
        if lm:  # the LM form scores the same positions as the LM's own loss
            assert _lm_token_logits(model[0], X, L)[0].shape[0] == int((L - 1).sum())

    ctx.fit = fake_fit
    cm = MutualLearning()(Compressed(teacher, "lstm"), ctx)
    p0, p1 = seen["pair"]
    assert cm.model is p0
    assert any(not np.array_equal(a.data, b.data)
               for (_, a), (_, b) in zip(p0.named_parameters(), p1.named_parameters()))
    assert seen["loss"] > seen["ce"] * (1 + 1e-9)  # CE + strictly positive KL terms
