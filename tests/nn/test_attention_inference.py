"""The inference paths of refimpl.nn (under ``no_grad``): MultiHeadAttention's fused Q/K/V
product and in-place attention, Linear's in-place bias and LayerNorm's in-place scale and shift,
against the taped path and torch.

The in-place attention, linear and layer norm run the taped ops' operations in the same order,
so they must be bit-identical. The fused product sums each q/k/v entry over the same
``d_model`` terms as the three separate products, possibly in another order: two computed dot
products of length k differ by at most ``2 γ_k (|x| |W|ᵀ)`` entry-wise (Higham, Accuracy and Stability, Eq. (3.5);
``γ_k = k u / (1 − k u)``), the bound the tests use.
"""

from __future__ import annotations

import numpy as np
import pytest
from _torch_twins import copy_mha_to_torch

from refimpl.nn import (LayerNorm, Linear, MultiHeadAttention, Tensor, TransformerEncoderLayer,
                        no_grad)
from refimpl.nn.attention import _attention_no_grad, scaled_dot_product_attention


def _gamma(k: int, dtype) -> float:
    u = np.finfo(dtype).eps / 2
    return k * u / (1 - k * u)


def _mha(dtype, rng=1, d=16, H=4):
    return MultiHeadAttention(d, H, rng=rng).astype(dtype)


def _inputs(dtype, B=3, n=7, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, n, d)).astype(dtype)
    kp = np.zeros((B, n), bool)
    kp[1, 4:] = True
    kp[2, :] = True  # a sequence with every key padded: zero context, not NaN
    causal = np.tril(np.ones((n, n), bool))
    return x, kp, causal


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masks", ["none", "padding", "causal+padding"])
def test_in_place_attention_is_bit_identical_to_the_taped_one(dtype, masks):
    rng = np.random.default_rng(3)
    B, H, n, m, dh = 2, 3, 5, 6, 4
    q, k, v = (rng.standard_normal((B, H, r, dh)).astype(dtype) for r in (n, m, m))
    allow = None
    if masks != "none":
        kp = np.zeros((B, m), bool)
        kp[0, 4:] = True
        kp[1, :] = True
        allow = ~kp[:, None, None, :]
        if masks == "causal+padding":
            allow = allow & np.tril(np.ones((n, m), bool))
    qt = Tensor(q, requires_grad=True)  # recorded: the taped path
    out, P = scaled_dot_product_attention(qt, Tensor(k), Tensor(v), allow, return_weights=True)
    out2, P2 = _attention_no_grad(q, k, v, allow)
    assert out2.dtype == P2.dtype == dtype
    np.testing.assert_array_equal(P2, P.data)
    np.testing.assert_array_equal(out2, out.data)
    if masks != "none":
        assert not np.isnan(out2).any() and (out2[1] == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_grad_forward_equals_the_taped_forward(dtype):
    mha = _mha(dtype)
    x, kp, causal = _inputs(dtype)
    hm = np.array([1.0, 0.0, 0.5, 1.0])
    with no_grad():
        out, att = mha(x, key_padding_mask=kp, mask=causal, head_mask=hm, return_attention=True)
    taped, tatt = mha(Tensor(x, requires_grad=True), key_padding_mask=kp, mask=causal,
                      head_mask=hm, return_attention=True)
    assert out.dtype == dtype and att.query.shape == (3, 4, 7, 4)
    # q, k, v: one fused product vs three, within 2 γ_k |x| |W|ᵀ entry-wise
    for name, lin in (("query", mha.W_q), ("key", mha.W_k), ("value", mha.W_v)):
        a, b = getattr(att, name).data, getattr(tatt, name).data
        bound = 2 * _gamma(16 + 1, dtype) * (np.abs(x) @ np.abs(lin.W.data).T
                                              + np.abs(lin.b.data))  # (B, n, H·dh)
        bound = bound.reshape(3, 7, 4, 4).transpose(0, 2, 1, 3)
        assert (np.abs(a - b) <= bound).all(), name
    # the rest is the same arithmetic on (nearly) the same q, k, v: float rounding only
    tol = {np.float32: 1e-5, np.float64: 1e-13}[dtype]
    np.testing.assert_allclose(out.data, taped.data, rtol=0, atol=tol)
    np.testing.assert_allclose(att.probs.data, tatt.probs.data, rtol=0, atol=tol)
    assert (out.data[2] == mha.W_o.b.data).all()  # every key padded: only the output bias


def test_fused_path_only_for_plain_projections():
    mha = _mha(np.float64)
    x, _, _ = _inputs(np.float64)
    with no_grad():
        base = mha(x).data
    assert mha._fused_qkv(Tensor(x), 3, 7) is not None
    # a weight transform (a quantiser, a pruning mask) must be applied: the general path
    mha.W_k.weight_transform = lambda name, W: W * 0.0
    assert mha._fused_qkv(Tensor(x), 3, 7) is None
    with no_grad():
        gated = mha(x).data
    ref = mha(Tensor(x, requires_grad=True)).data
    np.testing.assert_allclose(gated, ref, rtol=0, atol=1e-13)
    assert np.abs(gated - base).max() > 1e-3
    mha.W_k.weight_transform = None
    # an in-place edit of a weight is seen at the next call (weights are not cached)
    mha.W_v.W.data[:] *= 2.0
    with no_grad():
        edited = mha(x).data
    np.testing.assert_allclose(edited, mha(Tensor(x, requires_grad=True)).data, rtol=0,
                               atol=1e-13)
    assert np.abs(edited - base).max() > 1e-3
    # no biases anywhere: still fused, same numbers; mixed biases: not fused
    nob = MultiHeadAttention(16, 4, bias=False, rng=2)
    with no_grad():
        np.testing.assert_allclose(nob(x).data, nob(Tensor(x, requires_grad=True)).data,
                                   rtol=0, atol=1e-13)
    nob.W_q.b = mha.W_q.b
    assert nob._fused_qkv(Tensor(x), 3, 7) is None


def test_cross_attention_and_training_dropout_take_the_general_path():
    mha = MultiHeadAttention(16, 4, rng=4, dropout=0.5).eval()
    x, kp, _ = _inputs(np.float64)
    kv = np.random.default_rng(9).standard_normal((3, 5, 16))
    with no_grad():
        a = mha(x, kv).data
    np.testing.assert_allclose(a, mha(Tensor(x, requires_grad=True), kv).data, rtol=0,
                               atol=1e-13)
    mha.train()  # eval mode drew no dropout masks: both generators are still fresh
    twin = MultiHeadAttention(16, 4, rng=4, dropout=0.5).train()
    with no_grad():
        d1 = mha(x).data
    d2 = twin(Tensor(x, requires_grad=True)).data  # same rng state: same dropout masks
    np.testing.assert_allclose(d1, d2, rtol=0, atol=1e-13)
    with no_grad():
        mha.eval()
        assert np.abs(d1 - mha(x).data).max() > 1e-3  # dropout did act


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_grad_layer_matches_torch(torch, dtype):
    """The inference path of a post-LN GELU encoder layer against torch in eval mode."""
    d, H, d_ff = 16, 4, 32
    ours = TransformerEncoderLayer(d, H, d_ff, layer_norm_eps=1e-12, rng=5).astype(dtype)
    t = torch.nn.TransformerEncoderLayer(d, H, d_ff, dropout=0.0, activation="gelu",
                                         batch_first=True, layer_norm_eps=1e-12)
    t = t.double() if dtype == np.float64 else t.float()
    t.eval()
    copy_mha_to_torch(ours.self_attn, t.self_attn, torch)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(t, name).weight.copy_(torch.tensor(getattr(ours, name).W.data))
            getattr(t, name).bias.copy_(torch.tensor(getattr(ours, name).b.data))
    x, kp, _ = _inputs(dtype, d=d)
    kp[2, 0] = False  # torch's fast path rejects a fully padded sequence
    with no_grad():
        out = ours(x, key_padding_mask=kp).data
    with torch.inference_mode():
        ref = t(torch.tensor(x), src_key_padding_mask=torch.tensor(kp)).numpy()
    valid = ~kp
    tol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]
    err = np.abs(out[valid] - ref[valid]).max()
    assert out.dtype == dtype and err <= tol, f"max abs error {err:.2e}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_no_grad_linear_is_bit_identical_and_leaves_inputs_alone(dtype, bias):
    lin = Linear(12, 20, bias=bias, rng=0).astype(dtype)
    x = np.random.default_rng(1).standard_normal((3, 5, 12)).astype(dtype)
    x0, W0 = x.copy(), lin.W.data.copy()
    with no_grad():
        out = lin(x).data
    taped = lin(Tensor(x, requires_grad=True)).data
    assert out.dtype == dtype and out.shape == (3, 5, 20)
    np.testing.assert_array_equal(out, taped)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(lin.W.data, W0)
    if bias:  # a wider bias than the product: promoted, out of place, as the taped op
        lin.b.data = lin.b.data.astype(np.float64)
        with no_grad():
            wide = lin(x).data
        np.testing.assert_array_equal(wide, lin(Tensor(x, requires_grad=True)).data)
        assert wide.dtype == np.float64
    # a weight transform is applied on the inference path too
    lin.weight_transform = lambda name, W: W * 0.0
    with no_grad():
        zero = lin(x).data
    np.testing.assert_array_equal(zero, np.broadcast_to(0.0 if lin.b is None else lin.b.data,
                                                        zero.shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_grad_layer_norm_is_bit_identical_and_leaves_inputs_alone(dtype):
    ln = LayerNorm(16, eps=1e-12)
    rng = np.random.default_rng(2)
    ln.gamma.data = rng.standard_normal(16)
    ln.beta.data = rng.standard_normal(16)
    ln.astype(dtype)
    x = (rng.standard_normal((4, 6, 16)) * 3 + 1).astype(dtype)
    x0 = x.copy()
    with no_grad():
        out = ln(x).data
    np.testing.assert_array_equal(out, ln(Tensor(x, requires_grad=True)).data)
    np.testing.assert_array_equal(x, x0)
    assert out.dtype == dtype
    if dtype == np.float32:  # float64 γ, β with float32 x: promoted, as the taped op
        ln.gamma.data = ln.gamma.data.astype(np.float64)
        with no_grad():
            wide = ln(x).data
        np.testing.assert_array_equal(wide, ln(Tensor(x, requires_grad=True)).data)
        assert wide.dtype == np.float64
