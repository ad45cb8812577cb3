"""The one Transformer of refimpl.nn: per-example head and FFN gates, the LayerDrop layer gate,
attention intermediates and hidden states as tape Tensors, the encoder stack against
``torch.nn.TransformerEncoder``, and a BERT layer + embeddings against a BERT written from torch
primitives (float64, ≤ 1e-6)."""

import numpy as np
import pytest
from _torch_twins import copy_layer_to_torch

from refimpl.nn import (
    BertEmbeddings,
    EncoderOutput,
    MultiHeadAttention,
    Tensor,
    TransformerClassifier,
    TransformerEncoder,
    TransformerEncoderLayer,
    gradcheck,
    masked_mean_pool,
)

TOL = 1e-6


def _x(B=2, n=5, d=8, seed=0):
    return np.random.default_rng(seed).standard_normal((B, n, d))


# ------------------------------------------------------------------------ head gates (B, H)
def test_per_example_head_gate_gradient_is_michel_importance_term():
    """With ξ = 1 of shape (B, H), ∂L/∂ξ_{b,h} = Att_h(x_b)ᵀ ∂L/∂Att_h(x_b) (Eq. (18))."""
    mha = MultiHeadAttention(8, 4, rng=0)
    x = _x()
    xi = Tensor(np.ones((2, 4)), requires_grad=True)
    out, att = mha(x, head_mask=xi, return_attention=True)
    att.context.retain_grad()
    dout = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(dout)
    want = np.einsum("bhtd,bhtd->bh", att.context.data, att.context.grad)
    np.testing.assert_allclose(xi.grad, want, rtol=1e-12, atol=1e-14)


def test_per_example_head_gate_equals_one_example_at_a_time():
    mha = MultiHeadAttention(8, 4, rng=0)
    x = _x()
    g = np.array([[1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 1.0]])
    both = mha(x, head_mask=g).data
    for b in range(2):
        one = mha(x[b:b + 1], head_mask=g[b]).data
        np.testing.assert_allclose(both[b:b + 1], one, rtol=0, atol=1e-14)


def test_head_gate_gradcheck():
    mha = MultiHeadAttention(6, 3, rng=2)
    x = _x(d=6)
    r = gradcheck(lambda xx, g: mha(xx, head_mask=g).sum() * 1.0,
                  [x, np.random.default_rng(3).uniform(0.2, 1.0, (2, 3))])
    assert r["max_rel_err"] < 1e-5


def test_attention_outputs_are_tape_tensors():
    """A loss on the returned probabilities backpropagates into the projections (a student's
    attention-map distillation loss, §4.4)."""
    mha = MultiHeadAttention(6, 2, rng=4)
    x = _x(d=6)
    kp = np.array([[False] * 4 + [True], [False] * 5])

    def loss(xx):
        _, att = mha(xx, key_padding_mask=kp, return_attention=True)
        return (att.probs * att.probs).sum() + (att.value * att.value).sum() * 0.1

    r = gradcheck(loss, [x])
    assert r["max_rel_err"] < 1e-5
    _, att = mha(x, key_padding_mask=kp, return_attention=True)
    assert att.probs.shape == (2, 2, 5, 5)
    assert att.context.shape == att.query.shape == (2, 2, 5, 3)
    np.testing.assert_allclose(att.probs.data.sum(-1), 1.0, rtol=0, atol=1e-14)
    assert np.all(att.probs.data[0, :, :, 4] == 0.0)  # the padding key gets exactly 0
    # context = probs · value
    np.testing.assert_allclose(att.context.data, att.probs.data @ att.value.data, atol=1e-14)


# ------------------------------------------------------------------------ FFN gates (B, d_ff)
def test_per_example_ffn_gate_equals_one_example_at_a_time_and_gradcheck():
    layer = TransformerEncoderLayer(8, 2, 6, rng=0)
    x = _x()
    g = np.random.default_rng(5).uniform(0, 1, (2, 6))
    both = layer(x, ffn_mask=g).data
    for b in range(2):
        np.testing.assert_allclose(both[b:b + 1], layer(x[b:b + 1], ffn_mask=g[b]).data,
                                   rtol=0, atol=1e-13)
    r = gradcheck(lambda xx, gg: layer(xx, ffn_mask=gg).sum() * 1.0, [x, g])
    assert r["max_rel_err"] < 1e-5


# ------------------------------------------------------------------------ the layer gate
@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_gate_zero_skips_the_whole_layer_norms_included(norm_first):
    layer = TransformerEncoderLayer(8, 2, 6, norm_first=norm_first, rng=0)
    x = _x()
    out, att = layer(x, layer_gate=0.0, return_attention=True)
    assert att is None
    np.testing.assert_array_equal(out.data, x)  # identity, not LN(x)
    np.testing.assert_array_equal(layer(x, layer_gate=1).data, layer(x).data)
    half = layer(x, layer_gate=0.25).data
    np.testing.assert_allclose(half, x + 0.25 * (layer(x).data - x), rtol=0, atol=1e-14)


def test_layer_gate_tensor_gets_its_gradient():
    layer = TransformerEncoderLayer(6, 2, 4, rng=1)
    x = _x(d=6)
    r = gradcheck(lambda xx, g: layer(xx, layer_gate=g).sum() * 1.0, [x, np.array(0.7)])
    assert r["max_rel_err"] < 1e-5
    g = Tensor(np.array(1.0), requires_grad=True)
    dout = np.random.default_rng(0).standard_normal((2, 5, 6))
    layer(x, layer_gate=g).backward(dout)
    # ∂L/∂g at g = 1 is ⟨dout, layer(x) − x⟩
    np.testing.assert_allclose(g.grad, np.sum(dout * (layer(x).data - x)), rtol=1e-12)


# ------------------------------------------------------------------------ the stack
def test_encoder_hidden_states_and_attentions():
    enc = TransformerEncoder(num_layers=3, d_model=8, num_heads=2, d_ff=6, rng=0)
    x = _x()
    kp = np.array([[False] * 3 + [True] * 2, [False] * 5])
    out = enc(x, key_padding_mask=kp, output_hidden_states=True, output_attentions=True,
              layer_mask=np.array([1.0, 0.0, 1.0]))
    assert isinstance(out, EncoderOutput)
    assert len(out.hidden_states) == 4 and len(out.attentions) == 3
    np.testing.assert_array_equal(out.hidden_states[0].data, x)
    h = x
    for i, layer in enumerate(enc.layers):
        if i != 1:
            h = layer(h, key_padding_mask=kp).data
        np.testing.assert_array_equal(out.hidden_states[i + 1].data, h)
    assert out.attentions[1] is None  # skipped by LayerDrop
    np.testing.assert_array_equal(out.last_hidden_state.data, h)
    np.testing.assert_array_equal(enc(x, key_padding_mask=kp, layer_mask=[1, 0, 1]).data, h)


def test_encoder_hidden_state_loss_gradcheck():
    """An intermediate-layer loss (PKD/TinyBERT style) on hidden state 1 and the attention map
    of layer 2 backpropagates through the stack."""
    enc = TransformerEncoder(num_layers=2, d_model=6, num_heads=2, d_ff=4, norm_first=True,
                             rng=3)

    def loss(xx):
        o = enc(xx, output_hidden_states=True, output_attentions=True)
        return (o.hidden_states[1] ** 2).sum() + (o.attentions[1].probs ** 2).sum()

    assert gradcheck(loss, [_x(d=6)])["max_rel_err"] < 1e-5


def test_classifier_returns_intermediates_and_same_logits():
    m = TransformerClassifier(vocab_size=30, d_model=8, num_heads=2, d_ff=12, num_layers=2,
                              max_len=6, n_classes=3, pooling="cls", rng=0)
    X = np.random.default_rng(0).integers(1, 30, (3, 6))
    L = np.array([6, 4, 2])
    logits, out = m(X, L, output_hidden_states=True, output_attentions=True)
    np.testing.assert_array_equal(logits.data, m(X, L).data)
    assert len(out.hidden_states) == 3 and out.attentions[0].probs.shape == (3, 2, 7, 7)
    # head gates per example (L, B, H): zeroing every head of example 0 in both layers
    hm = np.ones((2, 3, 2))
    hm[:, 0] = 0.0
    gated = m(X, L, head_mask=hm).data
    np.testing.assert_array_equal(gated[1:], m(X, L).data[1:])
    assert not np.allclose(gated[0], m(X, L).data[0])


@pytest.mark.parametrize("bad,match", [
    (dict(head_mask=np.ones((3,))), "head_mask"),
    (dict(head_mask=np.ones((2, 5, 2))), "head_mask"),
    (dict(ffn_mask=np.ones((2, 7))), "ffn_mask"),
    (dict(layer_mask=np.ones(3)), "layer_mask"),
    (dict(layer_mask=np.array([1.0, np.nan])), "layer_mask"),
])
def test_encoder_bad_gates_name_the_argument(bad, match):
    enc = TransformerEncoder(num_layers=2, d_model=8, num_heads=2, d_ff=6, rng=0)
    with pytest.raises(ValueError, match=match):
        enc(_x(), **bad)


def test_layer_bad_gate_values():
    layer = TransformerEncoderLayer(8, 2, 6, rng=0)
    with pytest.raises(ValueError, match="layer_gate"):
        layer(_x(), layer_gate=float("nan"))
    with pytest.raises(TypeError, match="layer_gate"):
        layer(_x(), layer_gate="0.5")
    with pytest.raises(ValueError, match="ffn_mask"):
        layer(_x(), ffn_mask=np.full(6, np.inf))
    with pytest.raises(ValueError, match="head_mask"):
        layer(_x(), head_mask=np.full(2, np.nan))
    with pytest.raises(TypeError):
        TransformerEncoderLayer(8, 2, 6, 0.1)  # configuration is keyword-only
    with pytest.raises(TypeError):
        TransformerEncoder(2, 8, 2, 6)  # keyword-only


def test_masked_mean_pool_and_errors():
    h = Tensor(np.arange(12.0).reshape(1, 4, 3))
    np.testing.assert_array_equal(masked_mean_pool(h, np.array([[1, 1, 0, 0]], bool)).data,
                                  [[1.5, 2.5, 3.5]])
    with pytest.raises(ValueError, match="valid"):
        masked_mean_pool(h, np.zeros((1, 4), bool))
    with pytest.raises(ValueError, match="valid"):
        masked_mean_pool(h, np.ones((2, 4), bool))


# ------------------------------------------------------------------------ torch twins
def _copy_layer(ours, t, torch):
    copy_layer_to_torch(ours, t, torch)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_stack_matches_torch(torch, norm_first, activation):
    rng = np.random.default_rng(0)
    B, n, d, H, d_ff, L = 2, 6, 8, 2, 12, 3
    ours = TransformerEncoder(num_layers=L, d_model=d, num_heads=H, d_ff=d_ff,
                              activation=activation, norm_first=norm_first, rng=1)
    layer = torch.nn.TransformerEncoderLayer(d, H, d_ff, dropout=0.0, activation=activation,
                                             batch_first=True, norm_first=norm_first)
    t = torch.nn.TransformerEncoder(layer, L, norm=torch.nn.LayerNorm(d) if norm_first else None,
                                    enable_nested_tensor=False)
    for o, tl in zip(ours.layers, t.layers):
        _copy_layer(o, tl, torch)
    t.eval()
    allow = np.tril(np.ones((n, n), bool))
    kp = np.zeros((B, n), bool)
    kp[1, 4:] = True
    x = rng.standard_normal((B, n, d))
    xo = Tensor(x, requires_grad=True)
    out = ours(xo, mask=allow, key_padding_mask=kp)
    xt = torch.tensor(x, requires_grad=True)
    tout = t(xt, mask=torch.tensor(~allow), src_key_padding_mask=torch.tensor(kp))
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    tout.backward(torch.tensor(dout))
    errs = {"out": np.abs(out.data - tout.detach().numpy()).max(),
            "dx": np.abs(xo.grad - xt.grad.numpy()).max(),
            "dW1_last": np.abs(ours.layers[L - 1].linear1.W.grad
                               - t.layers[L - 1].linear1.weight.grad.numpy()).max(),
            "dWq_first": np.abs(ours.layers[0].self_attn.W_q.W.grad
                                - t.layers[0].self_attn.in_proj_weight.grad[:d].numpy()).max()}
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, f"max abs errors above {TOL}: {bad}"


def _torch_bert(torch, emb, layers, ids, types, attention_mask, head_gates=None, leaves=None):
    """BERT's forward from torch primitives (Hugging Face ``BertModel`` structure: embeddings
    sum + LN; per layer self-attention with an additive extended mask, dense + LN(x + h),
    intermediate dense + exact GELU, output dense + LN(h + ffn)).

    ``head_gates``: optional per-layer gates ξ, indexable as ``head_gates[l]`` of shape (B, H)
    (e.g. a (L, B, H) torch leaf), multiplying head h's context ``p·v`` before ``W_o``, as
    ``MultiHeadAttention`` applies them (Survey Eq. (18)). ``leaves``: optional list; if given,
    every weight becomes a ``requires_grad`` torch leaf and ``(our Parameter, torch leaf)`` pairs
    are appended to it, so the caller can compare weight gradients."""
    F = torch.nn.functional
    T = torch.tensor

    def P(param):  # a weight: constant, or a leaf paired with our Parameter
        if leaves is None:
            return T(param.data)
        t = T(param.data, requires_grad=True)
        leaves.append((param, t))
        return t

    eps = emb.norm.eps
    n = ids.shape[1]
    h = (F.embedding(T(ids), P(emb.word.W)) + F.embedding(T(np.arange(n)), P(emb.position.W))
         + F.embedding(T(types), P(emb.token_type.W)))
    h = F.layer_norm(h, (h.shape[-1],), P(emb.norm.gamma), P(emb.norm.beta), eps)
    ext = (1.0 - T(attention_mask.astype(np.float64)))[:, None, None, :] \
        * torch.finfo(torch.float64).min
    hs, probs = [h], []
    for l, lay in enumerate(layers):
        a = lay.self_attn
        B, n_, d = h.shape
        Hh, dh = a.num_heads, a.d_head

        def split(t, B=B, n_=n_, Hh=Hh, dh=dh):
            return t.view(B, n_, Hh, dh).transpose(1, 2)  # (B, H, n, dh)

        q = split(F.linear(h, P(a.W_q.W), P(a.W_q.b)))
        k = split(F.linear(h, P(a.W_k.W), P(a.W_k.b)))
        v = split(F.linear(h, P(a.W_v.W), P(a.W_v.b)))
        s = q @ k.transpose(-1, -2) / np.sqrt(dh) + ext
        p = torch.softmax(s, dim=-1)
        probs.append(p)
        ctx = p @ v  # (B, H, n, dh): head h's context Att_h
        if head_gates is not None:
            ctx = ctx * head_gates[l][:, :, None, None]  # ξ_{b,h} Att_h, before W_o
        ctx = ctx.transpose(1, 2).reshape(B, n_, Hh * dh)
        h = F.layer_norm(h + F.linear(ctx, P(a.W_o.W), P(a.W_o.b)), (d,),
                         P(lay.norm1.gamma), P(lay.norm1.beta), lay.norm1.eps)
        f = F.gelu(F.linear(h, P(lay.linear1.W), P(lay.linear1.b)))
        h = F.layer_norm(h + F.linear(f, P(lay.linear2.W), P(lay.linear2.b)), (d,),
                         P(lay.norm2.gamma), P(lay.norm2.beta), lay.norm2.eps)
        hs.append(h)
    return hs, probs


def _small_bert(seed, V, d, H, d_ff, L, max_position, lengths, first_b):
    """A BERT embeddings + encoder of random weights (random LayerNorm γ, β too) and a padded
    batch: ``(rng, emb, enc, ids, types, valid)``; example ``b`` has ``lengths[b]`` real tokens
    (``n = max(lengths)``), token type 1 from position ``first_b`` on."""
    rng = np.random.default_rng(seed)
    emb = BertEmbeddings(vocab_size=V, d_model=d, max_position=max_position, rng=seed + 1)
    enc = TransformerEncoder(num_layers=L, d_model=d, num_heads=H, d_ff=d_ff,
                             activation="gelu", layer_norm_eps=1e-12, rng=seed + 2)
    for m in [emb.norm] + [nrm for lay in enc.layers for nrm in (lay.norm1, lay.norm2)]:
        m.gamma.data = 1 + 0.1 * rng.standard_normal(d)
        m.beta.data = 0.1 * rng.standard_normal(d)
    lengths = np.asarray(lengths)
    B, n = lengths.size, int(lengths.max())
    ids = rng.integers(1, V, (B, n))
    valid = np.arange(n)[None, :] < lengths[:, None]
    ids[~valid] = 0
    types = (np.arange(n)[None, :] >= first_b).astype(np.int64).repeat(B, 0)
    return rng, emb, enc, ids, types, valid


def test_bert_layers_and_embeddings_match_torch_primitives(torch):
    _, emb, enc, ids, types, valid = _small_bert(7, V=40, d=12, H=3, d_ff=20, L=2,
                                                 max_position=16, lengths=[7, 5, 2], first_b=3)
    out = enc(emb(ids, types), key_padding_mask=~valid, output_hidden_states=True,
              output_attentions=True)
    hs, probs = _torch_bert(torch, emb, enc.layers, ids, types, valid)
    for i, (a, b) in enumerate(zip(out.hidden_states, hs)):
        err = np.abs(a.data - b.numpy())[valid].max()  # padded positions are not compared
        assert err < TOL, f"hidden state {i}: max abs error {err:.3e}"
    for i, (a, b) in enumerate(zip(out.attentions, probs)):
        err = np.abs(a.probs.data - b.numpy()).max()
        assert err < TOL, f"attention probabilities of layer {i}: max abs error {err:.3e}"
    pooled = masked_mean_pool(out.last_hidden_state, valid).data
    tm = torch.tensor(valid.astype(np.float64))[:, :, None]
    tpool = ((hs[-1] * tm).sum(1) / tm.sum(1)).numpy()
    assert np.abs(pooled - tpool).max() < TOL


def _close(ours, theirs, what, scale=None):
    """float64 agreement independent of the BLAS kernel: relative 1e-9, absolute 1e-12 of
    ``scale`` (default the reference's largest entry)."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    scale = np.abs(theirs).max() if scale is None else scale
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * scale, err_msg=what)


def test_bert_per_example_head_gate_gradients_match_torch_primitives(torch):
    """Head importance through a whole BERT stack against torch autograd (Survey Eq. (18),
    §2.4.1; Michel et al. 2019): per-layer, per-example gates ξ (L, B, H) multiply each head's
    context before ``W_o``; for L = Σ hidden·R the gradients ``∂L/∂ξ_{l,b,h}``, the importance
    ``I_{l,h} = mean_b |∂L/∂ξ_{l,b,h}|``, the hidden states and every weight's gradient agree
    with a BERT written from torch primitives (float64, padded keys masked)."""
    L, B, H, n, d = 2, 3, 2, 5, 8
    rng, emb, enc, ids, types, valid = _small_bert(  # padded keys in 2 examples
        11, V=30, d=d, H=H, d_ff=12, L=L, max_position=8, lengths=[5, 3, 2], first_b=2)
    xi = rng.uniform(0.5, 1.5, (L, B, H))  # not all ones: the gate's placement matters
    R = rng.standard_normal((B, n, d)) * valid[:, :, None]  # a loss on the real tokens only

    gates = Tensor(xi.copy(), requires_grad=True)
    out = enc(emb(ids, types), key_padding_mask=~valid, head_mask=gates,
              output_hidden_states=True)
    (out.last_hidden_state * R).sum().backward()

    tgates = torch.tensor(xi.copy(), requires_grad=True)
    leaves = []
    hs, _ = _torch_bert(torch, emb, enc.layers, ids, types, valid, head_gates=tgates,
                        leaves=leaves)
    (hs[-1] * torch.tensor(R)).sum().backward()

    for i, (a, b) in enumerate(zip(out.hidden_states, hs)):
        _close(a.data, b.detach().numpy(), f"hidden state {i}")
    g_ours, g_torch = gates.grad, tgates.grad.numpy()
    assert np.abs(g_torch).min() > 0  # every (layer, example, head) gate is exercised
    _close(g_ours, g_torch, "dL/dξ (L, B, H)")
    _close(np.abs(g_ours).mean(axis=1), np.abs(g_torch).mean(axis=1),
           "Michel importance I_{l,h} = mean_b |dL/dξ|")
    names = {id(p): name for name, p in [*emb.named_parameters("emb"),
                                         *enc.named_parameters("enc")]}
    assert len(leaves) == len(names)  # every weight of the twin is a leaf
    tgrad = {names[id(param)]: t.grad.numpy() for param, t in leaves}
    for param, _ in leaves:
        name = names[id(param)]
        # the key bias's exact gradient is 0 (softmax ignores the per-query shift q·b_k): both
        # sides hold rounding noise, measured against the key weight's gradient instead
        scale = np.abs(tgrad[name[:-1] + "W"]).max() if name.endswith("W_k.b") else None
        _close(param.grad, tgrad[name], f"gradient of {name}", scale)
    wq = enc.layers[0].self_attn.W_q.W
    assert any(param is wq for param, _ in leaves) and np.abs(wq.grad).max() > 0


def test_bert_embeddings_bad_input():
    emb = BertEmbeddings(vocab_size=10, d_model=4, max_position=5, rng=0)
    with pytest.raises(ValueError, match="max_position"):
        emb(np.ones((1, 6), int))
    with pytest.raises(ValueError, match="token_type_ids"):
        emb(np.ones((1, 3), int), np.zeros((1, 2), int))
    with pytest.raises(TypeError, match="input_ids"):
        emb(np.ones((1, 3)))
    ids = np.array([[1, 2, 3, 0]])
    out = emb(ids)
    assert out.shape == (1, 4, 4)
    np.testing.assert_allclose(out.data.mean(-1), 0.0, atol=1e-12)  # LayerNorm, γ=1, β=0
