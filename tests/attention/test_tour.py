"""§7 tour methods on a stand-in context (tiny needle task, tiny Transformer baseline)."""

import numpy as np
import pytest

from refimpl.registry import MethodResult, TourContext, methods


@pytest.fixture(scope="module")
def ctx():
    from refimpl.data import load_task
    from refimpl.nn import TransformerClassifier, fit
    from refimpl.nn.train import evaluate_accuracy

    task = load_task("needle", quick=True, rng=0, n_train=256, n_val=32, n_test=64,
                     seq_len=16)

    def make_model(kind=None, **kw):
        return TransformerClassifier(vocab_size=len(task.vocab), d_model=8, num_heads=2, d_ff=16,
                                     num_layers=1, max_len=task.X_train.shape[1],
                                     n_classes=task.n_classes, pooling="cls", rng=0)

    def fit_(model, epochs=1, **kw):
        return fit(model, task, epochs=epochs, lr=5e-3, rng=0, progress=False, **kw)

    base = make_model()
    fit_(base)
    return TourContext(task=task, baseline=base, baseline_kind="transformer", quick=True,
                       seed=0, fit=fit_, make_model=make_model,
                       evaluate=lambda m: evaluate_accuracy(m, task.X_test, task.len_test,
                                                            task.y_test))


@pytest.mark.parametrize("name", ["longformer-w4-cls", "linformer-k-n/4", "linear-attention",
                                  "reformer-lsh"])
def test_tour_method(ctx, name):
    m = {x.name: x for x in methods()}[name]
    assert m.section.startswith("7")
    res = m.func(ctx)
    assert isinstance(res, MethodResult)
    assert res.bits == 32 * res.model.num_parameters()
    acc = ctx.evaluate(res.model)
    assert 0.0 <= acc <= 1.0
    assert res.extra["attn_memory_ratio"] > 1.0
    hooks = [layer.self_attn.attention for layer in res.model.layers]
    assert all(h is not None for h in hooks)
    # the baseline was not modified
    assert ctx.baseline.layers[0].self_attn.attention is None
    if name.startswith("linformer"):
        n_base = ctx.baseline.num_parameters()
        assert res.model.num_parameters() > n_base  # E, F are stored
    out = res.model(ctx.task.X_test[:4], ctx.task.len_test[:4]).data
    assert out.shape == (4, ctx.task.n_classes) and np.all(np.isfinite(out))
