"""Chapter 9's compression rows on a tiny random model of MiniLM's structure (fast): exact bytes by
hand, the kernel path against a dense model of the same stored weights, Eq. (18) against central
differences, the original never mutated, the same seed giving the same table, bad input."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from pretrained._ch9_tiny import TinyModel
from refimpl.nn import Embedding, Linear, no_grad
from refimpl.nn.surgery import replace_modules
from refimpl.pretrained import compress as C
from refimpl.pruning.sparse_linear import CSRLinear
from refimpl.quantization.packed_linear import PackedEmbedding, PackedLinear

CFG = replace(C.QUICK, n_eval=12, n_retrieval=12, n_train=16, n_importance=6, max_len=20,
              distil_batch=8, latency_small=2, latency_large=4, large_batch=4, repeat=1,
              window=6)


@pytest.fixture(scope="module")
def data():
    return C.prepare_data(TinyModel().tokenizer, CFG)


@pytest.fixture(scope="module")
def tiny64():
    return TinyModel(dtype=np.float64)


def _state(model):
    return {k: v.data.copy() for m in (model.embeddings, model.encoder)
            for k, v in m.named_parameters()}


def _n_params(V=300, d=24, dff=48, L=6, P=64, T=2):
    emb = (V + P + T) * d + 2 * d
    layer = 4 * (d * d + d) + (d * dff + dff) + (dff * d + d) + 4 * d
    return emb + L * layer


def test_original_bits_by_hand():
    m = TinyModel()
    assert C.stored_bits(m) == 32 * _n_params()
    assert C.stored_bits(TinyModel(dtype=np.float64)) == 64 * _n_params()


def test_head_pruned_bits_by_hand():
    m = TinyModel()
    imp = np.tile([4.0, 3.0, 2.0, 1.0], (6, 1))  # head 3 of each layer is least important
    mask = C.prune_heads_(m, imp, 0.25)  # 6 of 24 heads
    np.testing.assert_array_equal(mask[:, 3], 0)
    assert mask.sum() == 18
    d, dh = 24, 6
    per_head = 3 * (dh * d + dh) + d * dh  # rows of W_q, W_k, W_v (+ biases), columns of W_o
    assert C.stored_bits(m) == 32 * (_n_params() - 6 * per_head)


def test_pruned_heads_are_sliced_out_and_equal_the_gated_model(tiny64, data):
    """Heads removed by prune_heads_ (fewer heads, smaller W_q/W_k/W_v/W_o) give the same
    embeddings as the dense model with those heads gated to 0 (float64, rounding only); a
    layer losing every head keeps one head gated to 0."""
    imp = np.arange(24, dtype=float).reshape(6, 4)[::-1].copy()
    imp[0] = [0.0, 0.0, 0.0, 0.0]  # layer 1 loses every head
    m = copy.deepcopy(tiny64)
    mask = C.prune_heads_(m, imp, 0.5)
    assert mask[0].sum() == 0
    gated = copy.deepcopy(tiny64)
    for layer, row in zip(gated.encoder.layers, mask):
        layer.self_attn.head_mask = row
    for layer, row in zip(m.encoder.layers, mask):
        h = max(1, int(row.sum()))
        assert layer.self_attn.num_heads == h and layer.self_attn.W_k.W.shape == (6 * h, 24)
    np.testing.assert_allclose(C.embed(m, data.eval), C.embed(gated, data.eval),
                               rtol=0, atol=1e-12)
    d, dh = 24, 6
    per_head = 3 * (dh * d + dh) + d * dh
    assert C.stored_bits(m) == 64 * (_n_params() - int((mask == 0).sum()) * per_head)


def test_head_pruned_packed_bits_by_hand():
    m = TinyModel()
    C.prune_heads_(m, np.tile([1.0, 1.0, 0.0, 1.0], (6, 1)), 0.25)  # head 2 everywhere
    mha = m.encoder.layers[0].self_attn
    for name in ("W_q", "W_k", "W_v", "W_o"):
        setattr(mha, name, PackedLinear.uniform(getattr(mha, name), 4))
    # q, k, v keep 18 rows of 24 codes: 16 codes per word → 2 words; + α, β, bias per row
    qkv = 3 * (18 * 2 * 64 + 18 * 3 * 32)
    # o keeps 24 rows of 18 columns → 2 words per row; + α, β, bias per row
    o = 24 * 2 * 64 + 24 * 3 * 32
    others = C.stored_bits(m) - (qkv + o)
    m2 = TinyModel()
    C.prune_heads_(m2, np.tile([1.0, 1.0, 0.0, 1.0], (6, 1)), 0.25)
    float_attn = 32 * (3 * (18 * 24 + 18) + 24 * 18 + 24)
    assert others == C.stored_bits(m2) - float_attn


def _densify(model):
    """The same stored weights as plain dense modules (the reference of the kernel path)."""
    from refimpl.attention.hooks import LongformerHook

    m = copy.deepcopy(model)

    def dense(layer):
        lin = Linear(layer.in_features, layer.out_features)
        lin.W.data = np.asarray(layer.weight(), dtype=np.float64)
        b = layer.bias
        lin.b.data = np.zeros(layer.out_features) if b is None else np.asarray(b, np.float64)
        return lin

    replace_modules(m.encoder, lambda x: isinstance(x, (CSRLinear, PackedLinear)), dense)
    w = m.embeddings.word
    if isinstance(w, PackedEmbedding):
        e = Embedding(w.out_features, w.in_features)
        e.W.data = w.weight()
        m.embeddings.word = e
    elif isinstance(w, C.TTWordEmbedding):
        m.embeddings.word = w.tt  # the TT module's own tape forward
    for layer in m.encoder.layers:
        hook = layer.self_attn.attention
        if isinstance(hook, LongformerHook):
            layer.self_attn.attention = LongformerHook(hook.window, hook.dilation,
                                                       hook.global_idx, fused=False)
    return m


KERNEL_METHODS = ["magnitude-80", "uniform-4", "kmeans-4", "binary-ffn", "ternary-ffn",
                  "tt-embedding", "sliding-window", "fastformers", "uniform-8"]


@pytest.mark.parametrize("name", KERNEL_METHODS)
def test_kernel_path_equals_dense_reference(name, tiny64, data):
    m, _ = C.compress(tiny64, name, data, CFG)
    ref = _densify(m)
    E, E_ref = C.embed(m, data.eval), C.embed(ref, data.eval)
    # float64 throughout: the two paths differ only in summation order (≈ 1e-15 per op,
    # amplified by at most the network's conditioning; 1e-9 leaves a wide margin)
    np.testing.assert_allclose(E, E_ref, rtol=0, atol=1e-9)
    kinds = {type(x).__name__ for x in m.encoder.modules()} | {type(m.embeddings.word).__name__}
    expect = {"magnitude-80": "CSRLinear", "uniform-4": "PackedEmbedding",
              "kmeans-4": "PackedLinear", "binary-ffn": "PackedLinear",
              "ternary-ffn": "PackedLinear", "tt-embedding": "TTWordEmbedding",
              "sliding-window": "TransformerEncoderLayer", "fastformers": "PackedLinear",
              "uniform-8": "PackedLinear"}[name]
    assert expect in kinds


@pytest.mark.parametrize("name", list(C.METHODS))
def test_every_method_runs_and_leaves_the_original_alone(name, data):
    model = TinyModel()
    before = _state(model)
    ref = C.embed(model, data.eval)
    m, notes = C.compress(model, name, data, CFG)
    after = _state(model)
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    np.testing.assert_array_equal(C.embed(model, data.eval), ref)
    E = C.embed(m, data.eval)
    assert E.shape == ref.shape and np.all(np.isfinite(E))
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-6)
    assert isinstance(notes, str) and notes
    bits = C.stored_bits(m)
    if name in ("original", "sliding-window"):
        assert bits == C.stored_bits(model)
    else:
        assert bits < C.stored_bits(model)


def test_layerdrop_and_distil_keep_every_other_layer(data):
    model = TinyModel()
    m, _ = C.compress(model, "layerdrop-every-other", data, CFG)
    assert len(m.encoder.layers) == 3
    np.testing.assert_array_equal(m.encoder.layers[1].linear1.W.data,
                                  model.encoder.layers[2].linear1.W.data)


def test_distillation_lowers_its_loss(data):
    model = TinyModel()
    cfg = replace(CFG, distil_epochs=6, distil_lr=3e-3)
    student, info = C.distil_student(model, data, cfg)
    assert len(student.encoder.layers) == 3 and len(model.encoder.layers) == 6
    assert info["steps"] == 6 * 2
    assert info["epoch_loss"][-1] < info["epoch_loss"][0]
    # the embeddings are frozen: the student's table is the teacher's
    np.testing.assert_array_equal(student.embeddings.word.W.data,
                                  model.embeddings.word.W.data)


def test_fastformers_structure(data):
    model = TinyModel()
    m, notes = C.compress(model, "fastformers", data, CFG)
    assert len(m.encoder.layers) == 3
    for layer in m.encoder.layers:
        assert layer.d_ff == 24 and isinstance(layer.linear1, PackedLinear)
        assert layer.linear1.out_features == 24 and layer.linear2.in_features == 24
    heads = [lyr.self_attn.num_heads for lyr in m.encoder.layers]
    assert sum(heads) == 9 and all(lyr.self_attn.head_mask is None for lyr in m.encoder.layers)
    for lyr, h in zip(m.encoder.layers, heads):  # the pruned heads are sliced out of W_q, W_o
        assert isinstance(lyr.self_attn.W_q, PackedLinear)
        assert lyr.self_attn.W_q.out_features == h * 6 and lyr.self_attn.W_o.in_features == h * 6
    assert "3/12 heads removed" in notes


def test_gate_importance_is_the_gate_derivative(tiny64, data):
    """Eq. (18): I_h = E_x |∂L(x)/∂ξ_h|, checked by central differences of one pair's loss."""
    a, b = data.pair_a.take([0]), data.pair_b.take([0])
    imp, ffn = C.gate_importance(tiny64, a, b, ffn=True)
    assert imp.shape == (6, 4) and ffn.shape == (6, 48)

    def loss(xi):
        with no_grad():
            ea = C._pooled(tiny64, a.ids, a.mask, head_mask=xi).data[0]
            eb = C._pooled(tiny64, b.ids, b.mask, head_mask=xi).data[0]
        return 1 - ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb)

    h = 1e-6
    for layer, head in [(0, 0), (2, 3), (5, 1)]:
        up, dn = np.ones((6, 1, 4)), np.ones((6, 1, 4))
        up[layer, 0, head] += h
        dn[layer, 0, head] -= h
        fd = (loss(up) - loss(dn)) / (2 * h)
        assert abs(abs(fd) - imp[layer, head]) <= 1e-6 * max(1.0, abs(fd))


def test_same_seed_same_table(data):
    names = ["heads-25", "magnitude-50", "kmeans-4", "distil-3l"]
    r1 = C.compress_table(TinyModel(), data, CFG, methods=names)
    r2 = C.compress_table(TinyModel(), data, CFG, methods=names)
    assert [r.method for r in r1] == ["original"] + names
    for a, b in zip(r1, r2):
        assert (a.bytes, a.fidelity, a.recall1, a.mrr, a.notes.split(" in ")[0]) == \
               (b.bytes, b.fidelity, b.recall1, b.mrr, b.notes.split(" in ")[0])
    assert r1[0].fidelity == pytest.approx(1.0, abs=1e-6) and r1[0].ratio == 1.0
    assert all(r.ms_batch1 > 0 and r.ms_batch_large > 0 for r in r1)


def test_table_outputs(tmp_path, data):
    rows = C.compress_table(TinyModel(), data, CFG, methods=["magnitude-90"])
    md = C.rows_to_markdown(rows, CFG)
    assert md.count("\n") == 3 and "| magnitude-90 | 2.1.2 |" in md
    paths = C.write_outputs(rows, tmp_path, CFG)
    text = open(paths["csv"]).read().splitlines()
    assert text[0].startswith("method,section,bytes") and len(text) == 3
    assert open(paths["png"], "rb").read(4) == b"\x89PNG"


def test_a_failing_method_is_a_row(data, monkeypatch):
    def boom(ctx):
        raise RuntimeError("no luck")

    monkeypatch.setitem(C.METHODS, "boom", C._Method("boom", "x", boom))
    rows = C.compress_table(TinyModel(), data, CFG, methods=["boom"])
    assert rows[1].notes == "FAILED: RuntimeError: no luck" and np.isnan(rows[1].fidelity)


def test_texts_are_evaluates_selection_and_training_is_disjoint(data):
    """One implementation: the texts are refimpl.pretrained.evaluate's; the training and
    importance texts share nothing with the fidelity or retrieval texts."""
    from refimpl.pretrained.evaluate import docstring_retrieval_pairs, real_text

    t = data.texts
    assert t["eval"] == real_text(CFG.n_eval, "heldout")
    ret = docstring_retrieval_pairs(CFG.n_retrieval)
    assert t["retrieval"].queries == ret.queries and t["retrieval"].documents == ret.documents
    assert len(data.eval) == CFG.n_eval and len(data.queries) == CFG.n_retrieval
    assert len(data.train) == CFG.n_train and len(data.pair_a) == CFG.n_importance
    evaluation = "\n".join(t["eval"] + ret.queries + ret.documents)
    imp = [x for pair in t["importance"] for x in pair]
    assert not any(x in evaluation for x in t["train"])
    assert not set(imp) & set(ret.queries + ret.documents)
    assert not any(h in x or x in h for h in t["eval"] for x in imp)
    assert not any(x in "\n".join(imp) for x in t["train"])


def test_evaluate_embeddings_by_hand():
    I = np.eye(3)
    Q = np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]])
    ev = C.evaluate_embeddings(I, I, Q, I)
    assert ev["fidelity"] == 1.0
    # query 2 scores 1 on doc 0 and 0 on its own doc and on doc 1 (a tie counts in the
    # query's favour, as refimpl.pretrained.evaluate.retrieval_scores): rank 2
    assert ev["recall1"] == pytest.approx(2 / 3) and ev["mrr"] == pytest.approx((1 + 1 + 1 / 2) / 3)
    a = np.array([[1.0, 0], [1, 0], [1, 0]])
    b = np.array([[1.0, 0], [0.6, 0.8], [0, 1]])
    ev = C.evaluate_embeddings(I, I, Q, I, (a, b, np.array([5.0, 3.0, 1.0])))
    assert ev["stsb"] == pytest.approx(100.0)


def test_bad_input(tmp_path, data):
    with pytest.raises(ValueError, match="methods"):
        C.compress_table(TinyModel(), data, CFG, methods=["nope"])
    with pytest.raises(ValueError, match="max_len"):
        C.tokenize(TinyModel().tokenizer, ["a"], 1)
    bad = tmp_path / "bad.csv"
    bad.write_text("only,two\n")
    with pytest.raises(ValueError, match="columns"):
        C.prepare_data(TinyModel().tokenizer, CFG, stsb=bad)
    with pytest.raises(FileNotFoundError):
        C.prepare_data(TinyModel().tokenizer, CFG, stsb=tmp_path / "missing")
    with pytest.raises(ValueError, match="needs"):
        C.prepare_data(TinyModel().tokenizer, replace(CFG, n_train=10 ** 7))
    with pytest.raises(ValueError, match="same positive number"):
        C.gate_importance(TinyModel(), data.pair_a, data.pair_b.take([0]))
