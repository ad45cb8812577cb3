"""MobileBERT's bottleneck block (refimpl.nn.bottleneck): NoNorm (hand-worked values and
gradients, torch and Hugging Face twins, gradient check); the block with stacked FFNs and
LayerNorm or NoNorm against Hugging Face's MobileBertLayer and a torch composition; gradient
checks; exact parameter counts; old behaviour unchanged; bad input."""

import importlib
import os

import numpy as np
import pytest

from refimpl.nn import LayerNorm, NoNorm, TransformerEncoderLayer, gradcheck
from refimpl.nn.bottleneck import BottleneckEncoderLayer, ResidualFFN
from refimpl.nn.layers import Linear
from refimpl.nn.tensor import Tensor
from refimpl.utils import as_rng


def _require(name):
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)  # fail loudly in CI
    return pytest.importorskip(name)


@pytest.fixture(scope="module")
def hf_mobilebert(torch):
    """Hugging Face's MobileBERT modules (transformers arrives with sentence-transformers,
    pinned in the test extra)."""
    return _require("transformers.models.mobilebert.modeling_mobilebert")


def _randomise_norms_(m, rng):
    """Give every NoNorm / LayerNorm of ``m`` random γ, β (so they are not the identity)."""
    for mod in m.modules():
        if isinstance(mod, (NoNorm, LayerNorm)):
            mod.gamma.data[...] = rng.uniform(0.5, 1.5, mod.gamma.shape)
            mod.beta.data[...] = 0.1 * rng.standard_normal(mod.beta.shape)


def _n_params(d_o, d_i, d_ff, k):
    """The hand formula of the docstring: 2 d_o d_i + 3 d_o + 4 d_i² + 9 d_i
    + k (2 d_i d_ff + d_ff + 3 d_i)."""
    return 2 * d_o * d_i + 3 * d_o + 4 * d_i * d_i + 9 * d_i + k * (2 * d_i * d_ff + d_ff + 3 * d_i)


# ------------------------------------------------------------------------------------ NoNorm
def test_nonorm_hand_worked_values_and_gradients():
    m = NoNorm(2)
    m.gamma.data[...] = [2.0, -0.5]
    m.beta.data[...] = [0.5, 0.0]
    x = Tensor(np.array([[1.0, 2.0], [3.0, -4.0]]), requires_grad=True)
    y = m(x)
    # γ ∘ x + β, row by row: [2·1 + 0.5, −0.5·2 + 0] and [2·3 + 0.5, −0.5·(−4) + 0]
    np.testing.assert_array_equal(y.data, [[2.5, -1.0], [6.5, 2.0]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[2.0, -0.5], [2.0, -0.5]])  # dx = dout ∘ γ
    np.testing.assert_array_equal(m.gamma.grad, [4.0, -2.0])  # dγ = Σ_rows x
    np.testing.assert_array_equal(m.beta.grad, [2.0, 2.0])  # dβ = Σ_rows dout
    # a fresh NoNorm is the identity; unlike LayerNorm it keeps a shift of the input
    x = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(NoNorm(3)(x).data, x)
    np.testing.assert_array_equal(NoNorm(3)(x + 10.0).data, x + 10.0)
    np.testing.assert_allclose(LayerNorm(3)(x + 10.0).data, LayerNorm(3)(x).data, atol=1e-12)
    assert NoNorm(3).num_parameters() == 6 and repr(NoNorm(3)) == "NoNorm(3)"


def test_nonorm_gradcheck():
    rng = np.random.default_rng(0)
    x, g, b = rng.standard_normal((2, 3, 4)), rng.standard_normal(4), rng.standard_normal(4)
    m = NoNorm(4)

    def f(a, gamma, beta):
        m.gamma, m.beta = gamma, beta
        return m(a)

    assert gradcheck(f, [x, g, b])["max_abs_err"] < 1e-8


def test_nonorm_matches_torch_and_hugging_face(torch, hf_mobilebert):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5))
    dout = rng.standard_normal((2, 3, 5))
    m = NoNorm(5)
    m.gamma.data[...] = rng.standard_normal(5)
    m.beta.data[...] = rng.standard_normal(5)
    xt = Tensor(x, requires_grad=True)
    y = m(xt)
    y.backward(dout)
    hf = hf_mobilebert.NoNorm(5).double()
    with torch.no_grad():
        hf.weight.copy_(torch.tensor(m.gamma.data))
        hf.bias.copy_(torch.tensor(m.beta.data))
    xr = torch.tensor(x, requires_grad=True)
    yr = hf(xr)
    yr.backward(torch.tensor(dout))
    # one multiply and one add per entry, and sums of 6 products for dγ, dβ: exact up to the
    # summation order (a few ulp of the O(1) sums)
    np.testing.assert_array_equal(y.data, yr.detach().numpy())
    np.testing.assert_array_equal(xt.grad, xr.grad.numpy())
    np.testing.assert_allclose(m.gamma.grad, hf.weight.grad.numpy(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(m.beta.grad, hf.bias.grad.numpy(), rtol=0, atol=1e-14)


def test_nonorm_bad_input():
    with pytest.raises(ValueError, match="d"):
        NoNorm(0)
    m = NoNorm(3)
    with pytest.raises(ValueError, match="x"):
        m(np.ones((2, 4)))
    with pytest.raises(ValueError, match="x"):
        m(np.array([1.0, np.nan, 0.0]))
    with pytest.raises(TypeError, match="x"):
        m(np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="x"):
        m(np.ones(3, dtype=complex))
    x = np.ones((2, 3))
    m(x)
    np.testing.assert_array_equal(x, 1.0)  # not mutated


# ------------------------------------------------------------------------- the bottleneck block
def _load_hf_layer_(hf, m, torch):
    """Copy the weights of ``m`` (num_ffn = k) into a Hugging Face ``MobileBertLayer`` with
    use_bottleneck_attention=True. HF runs ffn[0..k−2] then intermediate/output; here inner's
    FFN is first and ffns[0..k−2] follow (a relabelling: every FFN has the same form)."""
    t = lambda a: torch.tensor(np.asarray(a))  # noqa: E731

    def lin(dst, src):
        dst.weight.copy_(t(src.W.data))
        dst.bias.copy_(t(src.b.data))

    def norm(dst, src):
        dst.weight.copy_(t(src.gamma.data))
        dst.bias.copy_(t(src.beta.data))

    a = m.inner.self_attn
    with torch.no_grad():
        lin(hf.bottleneck.input.dense, m.down)
        norm(hf.bottleneck.input.LayerNorm, m.norm_in)
        lin(hf.attention.self.query, a.W_q)
        lin(hf.attention.self.key, a.W_k)
        lin(hf.attention.self.value, a.W_v)
        lin(hf.attention.output.dense, a.W_o)
        norm(hf.attention.output.LayerNorm, m.inner.norm1)
        # our FFNs in order: inner's, then ffns[0..k-2]; HF's: ffn[0..k-2], then the output one
        ours = [(m.inner.linear1, m.inner.linear2, m.inner.norm2)]
        ours += [(f.linear1, f.linear2, f.norm) for f in m.ffns]
        theirs = [(f.intermediate.dense, f.output.dense, f.output.LayerNorm)
                  for f in getattr(hf, "ffn", [])]
        theirs.append((hf.intermediate.dense, hf.output.dense, hf.output.LayerNorm))
        assert len(ours) == len(theirs) == m.num_ffn
        for (l1, l2, nn_), (h1, h2, hn) in zip(ours, theirs):
            lin(h1, l1)
            lin(h2, l2)
            norm(hn, nn_)
        lin(hf.output.bottleneck.dense, m.up)
        norm(hf.output.bottleneck.LayerNorm, m.norm_out)


@pytest.mark.parametrize("num_ffn, norm", [(1, "nonorm"), (4, "nonorm"), (3, "layernorm")])
def test_matches_hugging_face_mobilebert_layer(torch, hf_mobilebert, num_ffn, norm):
    from transformers import MobileBertConfig

    rng = np.random.default_rng(2)
    d_o, d_i, H, d_ff, B, n = 8, 4, 2, 6, 2, 5
    m = BottleneckEncoderLayer(d_o, d_i, H, d_ff, num_ffn=num_ffn, norm=norm, activation="relu",
                               rng=3)
    _randomise_norms_(m, rng)
    cfg = MobileBertConfig(vocab_size=10, hidden_size=d_o, num_hidden_layers=1,
                           num_attention_heads=H, intermediate_size=d_ff, hidden_act="relu",
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                           embedding_size=d_o, trigram_input=False, use_bottleneck=True,
                           intra_bottleneck_size=d_i, use_bottleneck_attention=True,
                           key_query_shared_bottleneck=False, num_feedforward_networks=num_ffn,
                           normalization_type={"nonorm": "no_norm", "layernorm": "layer_norm"}[norm],
                           layer_norm_eps=1e-5)
    cfg._attn_implementation = "eager"
    hf = hf_mobilebert.MobileBertLayer(cfg).double().eval()
    # exact parameter counts: the hand formula, refimpl's count and Hugging Face's agree
    want_n = _n_params(d_o, d_i, d_ff, num_ffn)
    assert m.num_parameters() == want_n == sum(p.numel() for p in hf.parameters())
    _load_hf_layer_(hf, m, torch)
    x = rng.standard_normal((B, n, d_o))
    pad = np.array([[False] * n, [False, False, False, True, True]])
    additive = torch.zeros(B, 1, 1, n, dtype=torch.float64)
    additive[torch.tensor(pad)[:, None, None, :]] = -torch.inf
    with torch.no_grad():
        want = hf(torch.tensor(x), attention_mask=additive)
        want = (want[0] if isinstance(want, tuple) else want).numpy()
    got = m(x, key_padding_mask=pad).data
    keep = ~pad
    # O(10) float64 operations of O(1) values per output, no cancellation beyond the norms':
    # agreement to 1e-12 of the output scale
    tol = 1e-12 * max(1.0, float(np.abs(want[keep]).max()))
    np.testing.assert_allclose(got[keep], want[keep], rtol=0, atol=tol)


def test_matches_torch_composition(torch):
    """num_ffn = 1, LayerNorm: nn.Linear, nn.LayerNorm and nn.TransformerEncoderLayer."""
    rng = np.random.default_rng(0)
    m = BottleneckEncoderLayer(8, 4, 2, 6, activation="relu", rng=0)
    x = rng.standard_normal((2, 5, 8))
    pad = np.array([[False] * 5, [False, False, False, True, True]])
    T = torch.nn
    down, up = T.Linear(8, 4).double(), T.Linear(4, 8).double()
    ln_in, ln_out = T.LayerNorm(4).double(), T.LayerNorm(8).double()
    enc = T.TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=True).double()
    t = lambda a: torch.tensor(np.asarray(a))  # noqa: E731
    with torch.no_grad():
        for lin, ref in ((down, m.down), (up, m.up)):
            lin.weight.copy_(t(ref.W.data))
            lin.bias.copy_(t(ref.b.data))
        a = m.inner.self_attn
        enc.self_attn.in_proj_weight.copy_(t(np.concatenate([a.W_q.W.data, a.W_k.W.data,
                                                             a.W_v.W.data])))
        enc.self_attn.in_proj_bias.copy_(t(np.concatenate([a.W_q.b.data, a.W_k.b.data,
                                                           a.W_v.b.data])))
        enc.self_attn.out_proj.weight.copy_(t(a.W_o.W.data))
        enc.self_attn.out_proj.bias.copy_(t(a.W_o.b.data))
        enc.linear1.weight.copy_(t(m.inner.linear1.W.data))
        enc.linear1.bias.copy_(t(m.inner.linear1.b.data))
        enc.linear2.weight.copy_(t(m.inner.linear2.W.data))
        enc.linear2.bias.copy_(t(m.inner.linear2.b.data))
    enc.eval()
    with torch.no_grad():
        xt = t(x)
        h = ln_in(down(xt))
        h = enc(h, src_key_padding_mask=t(pad))
        want = ln_out(xt + up(h)).numpy()
    got = m(x, key_padding_mask=pad).data
    keep = ~pad  # torch's fast path may leave padded rows unspecified; compare real rows
    np.testing.assert_allclose(got[keep], want[keep], rtol=0, atol=1e-12)


def test_default_block_is_the_old_block():
    """num_ffn = 1 with LayerNorm draws its weights as the block did before stacked FFNs and
    NoNorm existed (down, inner layer, up from one generator), so old seeds give old models."""
    m = BottleneckEncoderLayer(8, 4, 2, 6, rng=5)
    rng = as_rng(5)
    down = Linear(8, 4, rng=rng)
    inner = TransformerEncoderLayer(4, 2, 6, rng=rng)
    up = Linear(4, 8, rng=rng)
    for a, b in ((m.down, down), (m.inner.linear1, inner.linear1),
                 (m.inner.self_attn.W_v, inner.self_attn.W_v), (m.up, up)):
        np.testing.assert_array_equal(a.W.data, b.W.data)
    assert isinstance(m.norm_in, LayerNorm) and isinstance(m.inner.norm2, LayerNorm)
    assert len(m.ffns) == 0 and m.inner.activation == "gelu"


@pytest.mark.parametrize("norm, activation", [("nonorm", "gelu"), ("layernorm", "gelu"),
                                              ("nonorm", "relu")])
def test_stacked_block_gradcheck(norm, activation):
    rng = np.random.default_rng(4)
    m = BottleneckEncoderLayer(6, 4, 2, 5, num_ffn=3, norm=norm, activation=activation, rng=4)
    _randomise_norms_(m, rng)
    x = rng.standard_normal((2, 3, 6))
    pad = np.array([[False, False, False], [False, False, True]])
    assert gradcheck(lambda a: m(a, key_padding_mask=pad), [x])["max_abs_err"] < 1e-7
    # the parameters of the last stacked FFN and its norm, and the output norm
    f = m.ffns[-1]
    params = [f.linear1.W.data.copy(), f.norm.gamma.data.copy(), f.norm.beta.data.copy(),
              m.norm_out.gamma.data.copy()]

    def g(W1, gamma, beta, gamma_out):
        f.linear1.W, f.norm.gamma, f.norm.beta, m.norm_out.gamma = W1, gamma, beta, gamma_out
        return m(x, key_padding_mask=pad)

    assert gradcheck(g, params)["max_abs_err"] < 1e-7


def test_residual_ffn_gradcheck_and_value():
    rng = np.random.default_rng(6)
    f = ResidualFFN(4, 3, activation="relu", norm="nonorm", rng=6)
    _randomise_norms_(f, rng)
    h = rng.standard_normal((2, 3, 4))
    # Norm(h + W₂ relu(W₁ h + b₁) + b₂) written out in NumPy
    a = np.maximum(h @ f.linear1.W.data.T + f.linear1.b.data, 0.0)
    want = (h + a @ f.linear2.W.data.T + f.linear2.b.data) * f.norm.gamma.data + f.norm.beta.data
    np.testing.assert_allclose(f(h).data, want, rtol=0, atol=1e-14)
    g = ResidualFFN(4, 3, rng=7)
    assert gradcheck(lambda a: g(a), [h])["max_abs_err"] < 1e-8
    assert f.num_parameters() == 2 * 4 * 3 + 3 + 4 + 2 * 4


@pytest.mark.parametrize("d_o, d_i, H, d_ff, k", [(8, 4, 2, 6, 1), (8, 4, 2, 6, 4),
                                                   (12, 6, 3, 24, 2), (512, 128, 4, 512, 4)])
def test_parameter_count_is_the_hand_formula(d_o, d_i, H, d_ff, k):
    for norm in ("layernorm", "nonorm"):
        m = BottleneckEncoderLayer(d_o, d_i, H, d_ff, num_ffn=k, norm=norm, rng=0)
        assert m.num_parameters() == _n_params(d_o, d_i, d_ff, k)
        assert len(m.ffns) == k - 1
        norms = [m.norm_in, m.inner.norm1, m.inner.norm2, m.norm_out] + [f.norm for f in m.ffns]
        assert all(type(z) is {"layernorm": LayerNorm, "nonorm": NoNorm}[norm] for z in norms)


def test_shapes_seed_and_no_mutation():
    rng = np.random.default_rng(7)
    m = BottleneckEncoderLayer(6, 4, 2, 5, num_ffn=4, norm="nonorm", activation="relu", rng=8)
    x = rng.standard_normal((3, 5, 6))
    x0 = x.copy()
    y, att = m(x, return_attention=True)
    assert y.shape == (3, 5, 6) and att.probs.shape == (3, 2, 5, 5)
    np.testing.assert_array_equal(x, x0)
    m2 = BottleneckEncoderLayer(6, 4, 2, 5, num_ffn=4, norm="nonorm", activation="relu", rng=8)
    np.testing.assert_array_equal(m2(x).data, y.data)  # same seed, bit-identical
    assert "num_ffn=4" in repr(m) and "'nonorm'" in repr(m)


def test_gradcheck_and_bad_input():
    rng = np.random.default_rng(1)
    m = BottleneckEncoderLayer(6, 4, 2, 4, rng=1)
    x = rng.standard_normal((2, 3, 6))
    assert gradcheck(lambda a: m(a), [x])["max_abs_err"] < 1e-7
    y, att = m(x, return_attention=True)
    assert y.shape == (2, 3, 6) and att.probs.shape == (2, 2, 3, 3)
    with pytest.raises(ValueError, match="x"):
        m(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="x"):
        m(np.full((2, 3, 6), np.nan))
    with pytest.raises(ValueError, match="layer_gate"):
        m(x, layer_gate=0.5)
    m(x, ffn_mask=np.ones(4))  # one FFN: its hidden units may be gated
    with pytest.raises(ValueError, match="ffn_mask"):
        BottleneckEncoderLayer(6, 4, 2, 4, num_ffn=2, rng=1)(x, ffn_mask=np.ones(4))
    with pytest.raises(ValueError, match="num_ffn"):
        BottleneckEncoderLayer(6, 4, 2, 4, num_ffn=0)
    with pytest.raises(ValueError, match="norm"):
        BottleneckEncoderLayer(6, 4, 2, 4, norm="batchnorm")
    with pytest.raises(ValueError, match="activation"):
        BottleneckEncoderLayer(6, 4, 2, 4, num_ffn=2, activation="tanh")
    with pytest.raises(ValueError, match="d_ff"):
        ResidualFFN(4, 0)
