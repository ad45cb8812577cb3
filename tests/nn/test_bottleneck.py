"""BottleneckEncoderLayer (MobileBERT's block): a torch twin built from nn.Linear, nn.LayerNorm
and nn.TransformerEncoderLayer with the same weights; gradient check; bad input."""

import numpy as np
import pytest

from refimpl.nn import gradcheck
from refimpl.nn.bottleneck import BottleneckEncoderLayer


def test_matches_torch_composition(torch):
    rng = np.random.default_rng(0)
    m = BottleneckEncoderLayer(8, 4, 2, 6, rng=0)
    m.inner.activation = "relu"  # torch's TransformerEncoderLayer default
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


def test_gradcheck_and_bad_input():
    rng = np.random.default_rng(1)
    m = BottleneckEncoderLayer(6, 4, 2, 4, rng=1)
    x = rng.standard_normal((2, 3, 6))
    assert gradcheck(lambda a: m(a), [x])["max_abs_err"] < 1e-7
    y, att = m(x, return_attention=True)
    assert y.shape == (2, 3, 6) and att.probs.shape == (2, 2, 3, 3)
    with pytest.raises(ValueError, match="x"):
        m(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="layer_gate"):
        m(x, layer_gate=0.5)
