"""MultiHeadAttention and TransformerEncoderLayer against torch.nn (outputs and parameter
gradients to 1e-6 in float64), the attention hook, head gates ξ_h (Eq. 18) and bad input."""

import numpy as np
import pytest
from _torch_twins import copy_mha_to_torch

from refimpl.nn import MultiHeadAttention, Tensor, TransformerEncoderLayer, gradcheck
from refimpl.nn.attention import scaled_dot_product_attention

TOL = 1e-6


def _copy_mha(ours, t_mha, torch):
    copy_mha_to_torch(ours, t_mha, torch)


def _mha_grads(ours):
    return (np.concatenate([ours.W_q.W.grad, ours.W_k.W.grad, ours.W_v.W.grad]),
            np.concatenate([ours.W_q.b.grad, ours.W_k.b.grad, ours.W_v.b.grad]),
            ours.W_o.W.grad, ours.W_o.b.grad)


def _masks(B, n, rng):
    allow = np.tril(np.ones((n, n), bool))  # causal, True = may attend
    kp = np.zeros((B, n), bool)
    kp[1, n - 2:] = True  # padding keys of the second sequence
    return allow, kp


@pytest.mark.parametrize("use_mask,use_kp", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_mha_matches_torch(torch, use_mask, use_kp):
    rng = np.random.default_rng(0)
    B, n, d, H = 2, 5, 8, 2
    ours = MultiHeadAttention(d, H, rng=1)
    t_mha = torch.nn.MultiheadAttention(d, H, batch_first=True)
    _copy_mha(ours, t_mha, torch)
    allow, kp = _masks(B, n, rng)
    mask = allow if use_mask else None
    kpm = kp if use_kp else None
    x = rng.standard_normal((B, n, d))
    xo = Tensor(x, requires_grad=True)
    out, att = ours(xo, mask=mask, key_padding_mask=kpm, return_attention=True)
    xt = torch.tensor(x, requires_grad=True)
    tout, tw = t_mha(xt, xt, xt, key_padding_mask=None if kpm is None else torch.tensor(kpm),
                     attn_mask=None if mask is None else torch.tensor(~mask),  # torch: True=blocked
                     need_weights=True, average_attn_weights=False)
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    tout.backward(torch.tensor(dout))
    errs = {"out": np.abs(out.data - tout.detach().numpy()).max(),
            "attn": np.abs(att.probs.data - tw.detach().numpy()).max(),
            "dx": np.abs(xo.grad - xt.grad.numpy()).max()}
    tg = (t_mha.in_proj_weight.grad, t_mha.in_proj_bias.grad, t_mha.out_proj.weight.grad,
          t_mha.out_proj.bias.grad)
    for name, a, b in zip(["dW_in", "db_in", "dW_o", "db_o"], _mha_grads(ours), tg):
        errs[name] = np.abs(a - b.numpy()).max()
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, f"max abs errors above {TOL}: {bad}"


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_encoder_layer_matches_torch(torch, norm_first, activation):
    rng = np.random.default_rng(1)
    B, n, d, H, d_ff = 2, 5, 8, 2, 12
    ours = TransformerEncoderLayer(d, H, d_ff, activation=activation, norm_first=norm_first,
                                   rng=3)
    t = torch.nn.TransformerEncoderLayer(d, H, d_ff, dropout=0.0, activation=activation,
                                         batch_first=True, norm_first=norm_first)
    _copy_mha(ours.self_attn, t.self_attn, torch)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(t, name).weight.copy_(torch.tensor(getattr(ours, name).W.data))
            getattr(t, name).bias.copy_(torch.tensor(getattr(ours, name).b.data))
        for name in ("norm1", "norm2"):
            getattr(t, name).weight.copy_(torch.tensor(
                getattr(ours, name).gamma.data + rng.standard_normal(d) * 0.1))
            getattr(t, name).bias.copy_(torch.tensor(rng.standard_normal(d) * 0.1))
            getattr(ours, name).gamma.data = getattr(t, name).weight.detach().numpy().copy()
            getattr(ours, name).beta.data = getattr(t, name).bias.detach().numpy().copy()
    t.eval()
    ours.eval()
    allow, kp = _masks(B, n, rng)
    x = rng.standard_normal((B, n, d))
    xo = Tensor(x, requires_grad=True)
    out = ours(xo, mask=allow, key_padding_mask=kp)
    xt = torch.tensor(x, requires_grad=True)
    tout = t(xt, src_mask=torch.tensor(~allow), src_key_padding_mask=torch.tensor(kp))
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    tout.backward(torch.tensor(dout))
    errs = {"out": np.abs(out.data - tout.detach().numpy()).max(),
            "dx": np.abs(xo.grad - xt.grad.numpy()).max()}
    tg = (t.self_attn.in_proj_weight.grad, t.self_attn.in_proj_bias.grad,
          t.self_attn.out_proj.weight.grad, t.self_attn.out_proj.bias.grad)
    for name, a, b in zip(["dW_in", "db_in", "dW_o", "db_o"], _mha_grads(ours.self_attn), tg):
        errs[name] = np.abs(a - b.numpy()).max()
    for name in ("linear1", "linear2"):
        errs["d" + name] = np.abs(getattr(ours, name).W.grad
                                  - getattr(t, name).weight.grad.numpy()).max()
    for name in ("norm1", "norm2"):
        errs["d" + name] = np.abs(getattr(ours, name).gamma.grad
                                  - getattr(t, name).weight.grad.numpy()).max()
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, f"max abs errors above {TOL}: {bad}"


def test_attention_hook_receives_heads_and_combined_mask():
    seen = {}

    def hook(q, k, v, mask):
        seen["shape"], seen["mask"] = q.shape, mask
        return scaled_dot_product_attention(q, k, v, mask)

    a = MultiHeadAttention(8, 4, rng=0)
    b = MultiHeadAttention(8, 4, attention=hook, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 8))
    kp = np.array([[False, False, True], [False, False, False]])
    np.testing.assert_allclose(b(x, key_padding_mask=kp).data, a(x, key_padding_mask=kp).data,
                               rtol=1e-14)
    assert seen["shape"] == (2, 4, 3, 2)
    assert seen["mask"].shape == (2, 1, 1, 3) and not seen["mask"][0, 0, 0, 2]
    _, att = b(x, key_padding_mask=kp, return_attention=True)
    assert att.probs is None and att.context.shape == (2, 4, 3, 2)
    assert not hasattr(b, "last_attn") and not hasattr(b, "last_context")  # nothing stashed


def test_head_mask_gradient_is_context_dot_its_gradient():
    """∂L/∂ξ_h = Σ Att_h ⊙ ∂L/∂(ξ_h Att_h) (Eq. 18's two forms agree at ξ = 1)."""
    mha = MultiHeadAttention(8, 4, rng=0)
    x = np.random.default_rng(2).standard_normal((2, 3, 8))
    xi = Tensor(np.ones(4), requires_grad=True)
    out, att = mha(x, head_mask=xi, return_attention=True)
    att.context.retain_grad()
    (out * out).sum().backward()
    ctx = att.context
    np.testing.assert_allclose(xi.grad, (ctx.data * ctx.grad).sum(axis=(0, 2, 3)), rtol=1e-12)
    # a zero gate removes the head exactly
    mha.head_mask = np.array([1.0, 0.0, 1.0, 1.0])
    y0 = mha(x).data
    mha.W_v.W.data[2:4] += 10.0  # head 1's value rows (d_head = 2)
    np.testing.assert_allclose(mha(x).data, y0, rtol=1e-14)


def test_mha_gradcheck_and_fully_masked_rows_are_zero_not_nan():
    mha = MultiHeadAttention(4, 2, rng=0)
    allow = np.array([[True, False, False], [True, True, False], [False, False, False]])
    res = gradcheck(lambda x: mha(x, mask=allow),
                    [np.random.default_rng(0).standard_normal((1, 3, 4))])
    assert res["max_abs_err"] < 1e-7
    _, att = mha(np.ones((1, 3, 4)), mask=allow, return_attention=True)
    assert np.all(att.probs.data[0, :, 2] == 0.0)


def test_ffn_mask_zeroes_units():
    layer = TransformerEncoderLayer(8, 2, 6, rng=0)
    x = np.random.default_rng(0).standard_normal((1, 4, 8))
    m = np.array([1.0, 0, 1, 0, 1, 1])
    y = layer(x, ffn_mask=m).data
    layer.linear1.W.data[[1, 3]] += 5.0  # pruned units' weights do not matter
    np.testing.assert_allclose(layer(x, ffn_mask=m).data, y, rtol=1e-13)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="num_heads must divide d_model"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="x must have ndim"):
        mha(np.zeros((3, 8)))
    with pytest.raises(ValueError, match="x must have last dimension 8"):
        mha(np.zeros((1, 3, 7)))
    with pytest.raises(ValueError, match="key_padding_mask must have shape"):
        mha(np.zeros((1, 3, 8)), key_padding_mask=np.zeros((1, 4), bool))
    with pytest.raises(TypeError, match="mask must be a boolean"):
        mha(np.zeros((1, 3, 8)), mask=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="mask must be broadcastable"):
        mha(np.zeros((1, 3, 8)), mask=np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="head_mask must have shape"):
        mha(np.zeros((1, 3, 8)), head_mask=np.ones(3))
    with pytest.raises(ValueError, match="activation"):
        TransformerEncoderLayer(8, 2, 16, activation="tanh")
    with pytest.raises(ValueError, match="ffn_mask must have shape"):
        TransformerEncoderLayer(8, 2, 16)(np.zeros((1, 2, 8)), ffn_mask=np.ones(8))


def test_cross_attention_matches_torch(torch):
    rng = np.random.default_rng(5)
    B, n, m, d, H = 2, 3, 5, 8, 4
    ours = MultiHeadAttention(d, H, rng=2)
    t_mha = torch.nn.MultiheadAttention(d, H, batch_first=True)
    _copy_mha(ours, t_mha, torch)
    x, kv = rng.standard_normal((B, n, d)), rng.standard_normal((B, m, d))
    kp = np.zeros((B, m), bool)
    kp[0, 3:] = True
    kvo = Tensor(kv, requires_grad=True)
    out, att = ours(x, kv=kvo, key_padding_mask=kp, return_attention=True)
    kvt = torch.tensor(kv, requires_grad=True)
    tout, _ = t_mha(torch.tensor(x), kvt, kvt, key_padding_mask=torch.tensor(kp))
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    tout.backward(torch.tensor(dout))
    assert np.abs(out.data - tout.detach().numpy()).max() < TOL
    assert np.abs(kvo.grad - kvt.grad.numpy()).max() < TOL
    assert att.probs.shape == (B, H, n, m)


def test_keep_heads_is_the_gated_dense_twin_and_holds_fewer_heads():
    """Heads sliced out (d_head independent of d_model) = the dense module with those heads
    gated to 0, exactly up to float64 rounding; gradients by central differences."""
    rng = np.random.default_rng(3)
    mha = MultiHeadAttention(12, 4, rng=0)  # d_head = 3
    x = rng.standard_normal((2, 5, 12))
    kp = np.zeros((2, 5), bool)
    kp[1, 3:] = True
    keep = [0, 2]
    small = mha.keep_heads(keep)
    assert (small.num_heads, small.d_head, small.d_model) == (2, 3, 12)
    assert small.W_q.W.shape == (6, 12) and small.W_o.W.shape == (12, 6)
    dense = mha(x, key_padding_mask=kp, head_mask=np.array([1.0, 0, 1, 0])).data
    np.testing.assert_allclose(small(x, key_padding_mask=kp).data, dense, rtol=1e-13,
                               atol=1e-15)
    # the same module built directly with num_heads * d_head != d_model
    direct = MultiHeadAttention(12, 2, rng=0, d_head=3)
    for name in ("W_q", "W_k", "W_v", "W_o"):
        getattr(direct, name).W.data = getattr(small, name).W.data.copy()
        getattr(direct, name).b.data = getattr(small, name).b.data.copy()
    np.testing.assert_array_equal(direct(x, key_padding_mask=kp).data,
                                  small(x, key_padding_mask=kp).data)
    res = gradcheck(lambda t: small(t, key_padding_mask=kp), [x])
    assert res["max_abs_err"] < 1e-7
    # persistent gates are restricted to the kept heads; the original is unchanged
    mha.head_mask = np.array([1.0, 0.5, 0.25, 0.0])
    np.testing.assert_array_equal(mha.keep_heads([2, 1]).head_mask, [0.25, 0.5])
    assert mha.num_heads == 4 and mha.W_q.W.shape == (12, 12)
    with pytest.raises(ValueError, match="keep"):
        mha.keep_heads([])
    with pytest.raises(ValueError, match="keep"):
        mha.keep_heads([1, 1])
    with pytest.raises(ValueError, match="keep"):
        mha.keep_heads([4])
    with pytest.raises(TypeError, match="keep"):
        mha.keep_heads(2)
    with pytest.raises(ValueError, match="d_head"):
        MultiHeadAttention(12, 5, d_head=0)
