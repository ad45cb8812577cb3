"""Universal Transformer with ACT (Survey §5.3): registered check, torch twin of the shared
layer applied recurrently, training moves the ponder cost, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from _torch_twins import copy_layer_to_torch
from refimpl import check
from refimpl.nn import Adam
from refimpl.sharing import UniversalTransformerEncoder, timing_signal


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_registered_check(seed):
    check.verify("universal-transformer-act", seed=seed)


def test_fixed_steps_torch_twin(torch):
    ut = UniversalTransformerEncoder(d_model=8, num_heads=2, d_ff=12, max_steps=3, act=False,
                                     rng=0)
    t = torch.nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
    copy_layer_to_torch(ut.layer, t, torch)
    t.eval()
    x = np.random.default_rng(1).standard_normal((2, 5, 8))
    h = torch.tensor(x)
    for step in range(1, 4):                      # one torch layer reused: weights shared
        h = t(h + torch.tensor(timing_signal(5, 8, step)))
    np.testing.assert_allclose(ut(x).hidden.data, h.detach().numpy(), atol=1e-12)


def test_padding_and_ponder_training():
    ut = UniversalTransformerEncoder(d_model=4, num_heads=2, d_ff=6, max_steps=6, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    kpm = np.array([[False, False, True], [False, False, False]])
    out = ut(x, key_padding_mask=kpm)
    real = ~kpm
    assert out.ponder_cost.item() == pytest.approx(
        ((out.n_updates + out.remainders.data) * real).sum() / real.sum(), abs=1e-14)
    # minimising the ponder cost alone lowers it (fewer steps, larger remainders are traded)
    opt = Adam(ut.parameters(), lr=0.05)
    start = ut(x).ponder_cost.item()
    for _ in range(30):
        opt.zero_grad()
        ut(x).ponder_cost.backward()
        opt.step()
    assert ut(x).ponder_cost.item() < start


def test_bad_input():
    with pytest.raises(ValueError, match="max_steps"):
        UniversalTransformerEncoder(d_model=4, num_heads=2, d_ff=4, max_steps=0)
    with pytest.raises(ValueError, match="epsilon"):
        UniversalTransformerEncoder(d_model=4, num_heads=2, d_ff=4, epsilon=1.0)
    with pytest.raises(ValueError, match="num_heads"):
        UniversalTransformerEncoder(d_model=5, num_heads=2, d_ff=4)
    with pytest.raises(ValueError, match="step"):
        timing_signal(3, 4, 0)
    ut = UniversalTransformerEncoder(d_model=4, num_heads=2, d_ff=4, rng=0)
    with pytest.raises(ValueError, match="x"):
        ut(np.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match="key_padding_mask"):
        ut(np.zeros((1, 2, 4)), key_padding_mask=np.zeros((1, 3), bool))


def test_tagger_shapes_padding_and_training():
    from refimpl.nn import cross_entropy, fit
    from refimpl.sharing import UniversalTransformerTagger
    from refimpl.sharing.claims import _pointer_task

    X, Y = _pointer_task(64, 6, np.random.default_rng(0))
    m = UniversalTransformerTagger(vocab_size=12, n_tags=2, d_model=8, num_heads=2, d_ff=16,
                                   max_steps=3, rng=0)
    logits, act = m(X)
    assert logits.shape == (64, 6, 2) and act.n_updates.shape == (64, 6)
    Xp = X.copy()
    Xp[:, -1] = 0                                  # padding is masked out of the attention
    assert m(Xp)[0].shape == (64, 6, 2)

    def loss(out, y):
        return cross_entropy(out[0].reshape(-1, 2), y.reshape(-1)) + 1e-3 * out[1].ponder_cost

    hist = fit(m, (X, np.full(64, 6), Y), forward=lambda mm, x, _l: mm(x), loss_fn=loss,
               epochs=4, lr=1e-2, rng=0, progress=False, trim_batches=False)
    assert hist.train_loss[-1] < hist.train_loss[0]
    with pytest.raises(TypeError, match="X"):
        m(X.astype(float))
