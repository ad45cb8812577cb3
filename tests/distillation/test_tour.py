"""§4 tour method: the Hinton-KD LSTM student is smaller than its teacher, is trained on the
teacher's soft targets (the loss sees the teacher's logits of each batch) and reports its exact
size."""

import numpy as np
import pytest

from refimpl.nn import RNNClassifier
from refimpl.nn import fit as nn_fit
from refimpl.registry import TourContext, dense_bits, methods


def test_hinton_kd_lstm_student():
    rng = np.random.default_rng(0)
    X = rng.integers(1, 30, (96, 6))
    lengths = rng.integers(1, 7, 96)
    y = (X[:, 0] % 2).astype(np.int64)
    teacher = RNNClassifier(vocab_size=30, d_emb=16, d_hidden=16, n_classes=2, rng=0)
    nn_fit(teacher, (X, lengths, y), epochs=3, lr=1e-2, rng=0, progress=False)
    seen = []

    def fit(model, forward=None, loss_fn=None, **kw):
        def spy(out, yb):
            seen.append(loss_fn(out, yb))
            return seen[-1]

        return nn_fit(model, (X, lengths, y), epochs=1, lr=1e-2, rng=0, progress=False,
                      forward=forward, loss_fn=spy)

    class _Cfg:
        model_kwargs = {"lstm": dict(d_emb=16, d_hidden=16)}

    def make_model(kind=None, rng=1, **kw):
        return RNNClassifier(vocab_size=30, n_classes=2, rng=rng, **kw)

    ctx = TourContext(task=None, baseline=teacher, baseline_kind="lstm", quick=True, seed=0,
                      fit=fit, evaluate=lambda m: 0.0, make_model=make_model,
                      baselines={"lstm": teacher}, config=_Cfg())
    before = {k: v.data.copy() for k, v in teacher.named_parameters()}
    method = {m.name: m for m in methods()}["hinton-kd-lstm"]
    res = method.func(ctx)
    student = res.model
    assert student.num_parameters() < teacher.num_parameters() / 2
    assert res.bits == dense_bits(student) == 32 * res.params
    assert res.extra["baseline"] == "lstm" and "T=4" in res.notes
    assert len(seen) == 2 and all(np.isfinite(float(v.data)) for v in seen)  # 96 rows, batch 64
    for k, v in teacher.named_parameters():  # the teacher was copied, not trained
        np.testing.assert_array_equal(v.data, before[k])


def _tf_ctx(layers=2):
    from types import SimpleNamespace

    from refimpl.nn import TransformerClassifier

    rng = np.random.default_rng(3)
    X = rng.integers(1, 30, (64, 6))
    lengths = rng.integers(1, 7, 64)
    y = (X[:, 0] % 2).astype(np.int64)
    kw = dict(vocab_size=30, num_heads=2, max_len=6, n_classes=2)
    base = TransformerClassifier(d_model=8, d_ff=16, num_layers=layers, rng=0, **kw)
    nn_fit(base, (X, lengths, y), epochs=2, lr=1e-2, rng=0, progress=False)
    lstm = RNNClassifier(vocab_size=30, d_emb=16, d_hidden=16, n_classes=2, rng=0)
    calls = []

    def fit(model, epochs=1, **kw2):
        calls.append((type(model).__name__, epochs, sorted(kw2), model))
        return nn_fit(model, (X, lengths, y), epochs=epochs, lr=1e-2, rng=0, progress=False,
                      **kw2)

    def make_model(kind=None, rng=1, **over):
        if kind == "lstm":
            return RNNClassifier(vocab_size=30, n_classes=2, rng=rng, **over)
        return TransformerClassifier(rng=rng, **{**kw, **over})

    cfg = SimpleNamespace(epochs=2, batch_size=64, model_kwargs={"lstm": dict(d_emb=16,
                                                                               d_hidden=16)})
    ctx = TourContext(task=SimpleNamespace(y_train=y), baseline=base,
                      baseline_kind="transformer", quick=True, seed=0, fit=fit,
                      evaluate=lambda m: 0.0, make_model=make_model,
                      baselines={"transformer": base, "lstm": lstm}, config=cfg)
    return ctx, base, (X, lengths), calls


def test_tinybert_tour_student_half_layers_and_width():
    ctx, base, (X, lengths), calls = _tf_ctx(2)
    before = {k: v.data.copy() for k, v in base.named_parameters()}
    res = {m.name: m for m in methods()}["tinybert-transformer"].func(ctx)
    s = res.model
    assert s.num_layers == 1 and s.d_model == 4 and s.num_heads == 2
    assert res.bits == dense_bits(s) == 32 * res.params == 32 * s.num_parameters()
    assert res.extra["baseline"] == "transformer" and "g(m) = [2]" in res.notes
    # stage 1 trains the student with the projections, stage 2 the student alone
    assert [c[0] for c in calls] == ["ModuleList", "TransformerClassifier"]
    assert all("forward" in c[2] and "loss_fn" in c[2] for c in calls)
    assert s(X, lengths).shape == (64, 2)
    for k, v in base.named_parameters():
        np.testing.assert_array_equal(v.data, before[k])


def test_dml_tour_two_peers_keeps_peer0():
    ctx, base, (X, lengths), calls = _tf_ctx(2)
    res = {m.name: m for m in methods()}["dml-lstm"].func(ctx)
    s = res.model
    assert isinstance(s, RNNClassifier) and s.rnn.hidden_size == 4
    assert res.bits == 32 * s.num_parameters() and res.extra["baseline"] == "lstm"
    assert calls[0][0] == "ModuleList"
    assert s(X, lengths).shape == (64, 2)
    # the peers started from different seeds (identical peers make DML's KL terms exactly 0)
    p0, p1 = (dict(p.named_parameters()) for p in calls[0][3])
    assert any(not np.array_equal(p0[k].data, p1[k].data) for k in p0)


def test_theseus_tour_halves_layers_and_needs_even_layers():
    ctx, base, (X, lengths), calls = _tf_ctx(2)
    before = {k: v.data.copy() for k, v in base.named_parameters()}
    res = {m.name: m for m in methods()}["theseus-transformer"].func(ctx)
    s = res.model
    assert s.num_layers == 1 and len(s.layers) == 1
    assert res.params == base.num_parameters() - base.layers[1].num_parameters()
    assert res.bits == 32 * res.params
    assert [c[0] for c in calls] == ["TheseusClassifier", "TransformerClassifier"]
    assert "after_step" in calls[0][2] and "forward" in calls[0][2]  # the schedule, per step
    for k, v in base.named_parameters():
        np.testing.assert_array_equal(v.data, before[k])
    ctx1, *_ = _tf_ctx(1)
    with pytest.raises(ValueError, match="even number of layers"):
        {m.name: m for m in methods()}["theseus-transformer"].func(ctx1)
