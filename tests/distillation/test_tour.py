"""§4 tour method: the Hinton-KD LSTM student is smaller than its teacher, is trained on the
teacher's soft targets (the loss sees the teacher's logits of each batch) and reports its exact
size."""

import numpy as np

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

    def make_model(kind=None, **kw):
        return RNNClassifier(vocab_size=30, n_classes=2, rng=1, **kw)

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
