"""TransformerLanguageModel: the causal Transformer LM (the library's encoder layers under a
causal mask) against torch's TransformerEncoder + hand-written embedding/output (float64, same
weights), a float64 central-difference gradient check, causality, the LM interface that
``fit_lm`` / ``perplexity`` use, and bad input."""

import numpy as np
import pytest
from _torch_twins import copy_layer_to_torch

from refimpl import nn
from refimpl.nn.gradcheck import numerical_grad

TOL = 1e-6  # float64, O(10) operations deep on O(1) values: rounding is ~1e-14


def _model(norm_first=False, activation="gelu", tie=False, seed=1, **kw):
    return nn.TransformerLanguageModel(vocab_size=17, d_model=8, num_heads=2, d_ff=12,
                                       num_layers=2, max_len=10, norm_first=norm_first,
                                       activation=activation, tie_weights=tie, rng=seed, **kw)


def _rows():
    X = np.array([[2, 5, 6, 7, 9, 3], [2, 4, 11, 3, 0, 0], [2, 8, 3, 0, 0, 0]])
    return X, np.array([6, 4, 3])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_logits_and_gradients_match_torch(torch, norm_first, activation):
    m = _model(norm_first, activation)
    X, L = _rows()
    B, T = X.shape
    layer = torch.nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, activation=activation,
                                             batch_first=True, norm_first=norm_first)
    enc = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(8) if norm_first
                                      else None, enable_nested_tensor=False)
    for o, tl in zip(m.layers, enc.layers):
        copy_layer_to_torch(o, tl, torch)
    enc.eval()
    E = torch.tensor(m.embedding.W.data, requires_grad=True)
    P = torch.tensor(m.pos.data)
    Wo = torch.tensor(m.out.W.data, requires_grad=True)
    bo = torch.tensor(m.out.b.data)
    h = E[torch.tensor(X)] + P[:T]
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # True = blocked
    kp = torch.tensor(np.arange(T)[None, :] >= L[:, None])
    tl = enc(h, mask=causal, src_key_padding_mask=kp) @ Wo.T + bo
    ours = m(X, L)
    valid = np.arange(T)[None, :] < L[:, None]
    assert np.abs(ours.data - tl.detach().numpy())[valid].max() < TOL
    dout = np.random.default_rng(0).standard_normal(ours.shape) * valid[:, :, None]
    ours.backward(dout)
    tl.backward(torch.tensor(dout))
    assert np.abs(m.embedding.W.grad - E.grad.numpy()).max() < TOL
    assert np.abs(m.out.W.grad - Wo.grad.numpy()).max() < TOL


def test_causal_future_tokens_do_not_change_earlier_logits():
    m = _model()
    X, L = _rows()
    a = m(X, L).data
    Y = X.copy()
    Y[0, 4] = 13
    b = m(Y, L).data
    np.testing.assert_array_equal(a[0, :4], b[0, :4])  # exactly: masked keys get weight 0
    assert np.abs(a[0, 4:] - b[0, 4:]).max() > 1e-3
    np.testing.assert_array_equal(a[1:], b[1:])


@pytest.mark.parametrize("norm_first,tie", [(False, False), (True, True)])
def test_loss_gradcheck_float64(norm_first, tie):
    m = _model(norm_first, tie=tie)
    X, L = _rows()
    m.zero_grad()
    m.loss(X, L).backward()
    params = dict(m.named_parameters())
    for name in ("pos", "embedding.W", "layers.0.self_attn.W_q.W", "layers.1.linear1.W"):
        p = params[name]
        num = numerical_grad(lambda: m.loss(X, L).data, p.data, np.ones(()))
        np.testing.assert_allclose(p.grad, num, rtol=1e-5, atol=1e-7, err_msg=name)


def test_loss_equals_mean_token_nll_and_perplexity():
    m = _model()
    X, L = _rows()
    per = m.token_nll(X, L)
    assert per.shape == (3, 5) and np.isnan(per[1, 3:]).all() and np.isfinite(per[0]).all()
    assert abs(m.loss(X, L).item() - np.nanmean(per)) < 1e-12
    assert abs(nn.perplexity(m, X, L) - np.exp(np.nanmean(per))) < 1e-9


def test_fit_lm_trains_it_and_same_seed_is_bit_identical():
    rng = np.random.default_rng(0)
    X = np.full((40, 8), 0)
    X[:, 0] = 2
    X[:, 1:7] = rng.integers(4, 7, (40, 6))
    X[:, 1:7] = np.where(np.arange(6) % 2 == 0, X[:, 1:7], 16)  # every other token is 16
    X[:, 7] = 3
    L = np.full(40, 8)
    out = []
    for _ in range(2):
        m = _model()
        before = m.loss(X, L).item()
        nn.fit_lm(m, (X, L), epochs=3, batch_size=8, lr=1e-2, rng=0, progress=False)
        out.append(m.loss(X, L).item())
    assert out[0] == out[1] and out[0] < 0.7 * before


def test_head_ffn_layer_masks_reach_the_layers():
    m = _model()
    X, L = _rows()
    full = m(X, L).data
    ones = m(X, L, head_mask=np.ones((2, 2)), ffn_mask=np.ones((2, 12)),
             layer_mask=np.ones(2)).data
    np.testing.assert_array_equal(full, ones)
    assert np.abs(m(X, L, head_mask=np.array([[1.0, 0.0], [1.0, 1.0]])).data - full).max() > 0


def test_sample_shapes_and_seed():
    m = _model()
    a, la = m.sample(4, 6, rng=3)
    b, lb = m.sample(4, 6, rng=3)
    assert a.shape == (4, 7) and (a[:, 0] == 2).all()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


@pytest.mark.parametrize("kw,match", [
    (dict(num_heads=3), "num_heads"), (dict(d_model=0), "d_model"),
    (dict(max_len=0), "max_len"), (dict(vocab_size=0), "vocab_size")])
def test_bad_config(kw, match):
    cfg = dict(vocab_size=17, d_model=8, num_heads=2, d_ff=12, num_layers=1, max_len=10)
    cfg.update(kw)
    with pytest.raises((ValueError, TypeError), match=match):
        nn.TransformerLanguageModel(**cfg)


def test_bad_input():
    m = _model()
    X, L = _rows()
    with pytest.raises(ValueError, match="state"):
        m(X, L, state=(np.zeros(1),))
    with pytest.raises((ValueError, TypeError), match="X"):
        m(np.full((1, 11), 4))  # longer than max_len
    with pytest.raises((ValueError, TypeError), match="X"):
        m(np.array([[2, 99]]))  # token id outside the vocabulary
    with pytest.raises((ValueError, TypeError), match="X"):
        m(np.array([[2.5, 3.0]]))
    with pytest.raises(ValueError, match="lengths"):
        m.loss(np.array([[2, 3]]), np.array([1]))
    with pytest.raises(ValueError, match="max_len"):
        m.sample(2, 20)
    X0 = X.copy()
    m.loss(X, L)
    np.testing.assert_array_equal(X, X0)
