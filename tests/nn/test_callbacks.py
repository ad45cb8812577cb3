"""The callback interface of refimpl.nn.fit: order, step counts, after_step kept, errors."""

import numpy as np
import pytest

from refimpl import nn
from refimpl.nn.models import BowClassifier
from refimpl.nn.train import Callback, fit


def _data(n=20, T=4, V=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(1, V, (n, T))
    return X, np.full(n, T), rng.integers(0, 2, n)


class _Recorder(Callback):
    def __init__(self, tag, log):
        self.tag, self.log = tag, log

    def on_train_begin(self, model):
        self.log.append((self.tag, "begin"))

    def on_step_end(self, model, step):
        self.log.append((self.tag, "step", step))

    def on_epoch_end(self, model, epoch, history):
        self.log.append((self.tag, "epoch", epoch, len(history.train_loss)))

    def on_train_end(self, model, history):
        self.log.append((self.tag, "end", len(history.epoch)))


def test_hooks_run_in_order_with_1_based_steps_and_after_step_first():
    X, L, y = _data()
    log = []
    m = BowClassifier(vocab_size=10, d_emb=4, n_classes=2, rng=0)
    fit(m, (X, L, y), epochs=2, batch_size=8, rng=0, progress=False,
        after_step=lambda model: log.append(("after_step",)),
        callbacks=[_Recorder("a", log), _Recorder("b", log)])
    # 20 examples in batches of 8: 3 steps per epoch, 6 in all
    want = [("a", "begin"), ("b", "begin")]
    for ep in (1, 2):
        for k in range(3):
            step = 3 * (ep - 1) + k + 1
            want += [("after_step",), ("a", "step", step), ("b", "step", step)]
        want += [("a", "epoch", ep, ep), ("b", "epoch", ep, ep)]
    want += [("a", "end", 2), ("b", "end", 2)]
    assert log == want


def test_partial_duck_typed_callback_and_mask_kept_after_each_step():
    """A plain object with only on_step_end: the pruning use (re-apply a mask every step)."""
    X, L, y = _data()
    m = BowClassifier(vocab_size=10, d_emb=4, n_classes=2, rng=0)
    keep = np.random.default_rng(1).random(m.fc.W.shape) > 0.5

    class Mask:
        steps = 0

        def on_step_end(self, model, step):
            model.fc.W.data *= keep
            Mask.steps = step

    fit(m, (X, L, y), epochs=3, batch_size=5, optimizer="adam", lr=0.1, rng=0,
        progress=False, callbacks=[Mask()])
    assert Mask.steps == 12 and np.all(m.fc.W.data[~keep] == 0)
    assert np.any(m.fc.W.data[keep] != 0)


def test_callbacks_do_not_change_training():
    X, L, y = _data()
    a, b = BowClassifier(vocab_size=10, d_emb=4, n_classes=2, rng=0), BowClassifier(vocab_size=10, d_emb=4, n_classes=2, rng=0)
    fit(a, (X, L, y), epochs=2, batch_size=8, rng=3, progress=False)
    fit(b, (X, L, y), epochs=2, batch_size=8, rng=3, progress=False, callbacks=[Callback()])
    for (k, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert np.array_equal(p.data, q.data), k


def test_zero_epochs_still_begin_and_end():
    X, L, y = _data()
    log = []
    fit(BowClassifier(vocab_size=10, d_emb=4, n_classes=2, rng=0), (X, L, y), epochs=0, progress=False,
        callbacks=[_Recorder("a", log)])
    assert log == [("a", "begin"), ("a", "end", 0)]


def test_bad_callback_is_named():
    X, L, y = _data()
    with pytest.raises(TypeError, match=r"callbacks\[1\] must have on_train_begin"):
        fit(BowClassifier(vocab_size=10, d_emb=4, n_classes=2, rng=0), (X, L, y), epochs=1, progress=False,
            callbacks=[Callback(), object()])
    assert nn.Callback is Callback
