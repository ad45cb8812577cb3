"""ALBERT (Survey §5.3): counts, sharing modes, the torch cross-check of a shared layer."""

from __future__ import annotations

import numpy as np
import pytest
from _torch_twins import copy_layer_to_torch

from refimpl import check
from refimpl.nn import Tensor
from refimpl.sharing import AlbertEmbeddings, AlbertEncoder, albert_num_params


@pytest.mark.parametrize("seed", [0, 1])
def test_registered_check(seed):
    check.verify("albert", seed=seed)


def test_albert_base_counts_by_hand():
    # ALBERT-base: V = 30000, E = 128, H = 768, F = 3072, L = 12, P = 512, T = 2
    c = albert_num_params(vocab_size=30000, embed_dim=128, d_model=768, d_ff=3072,
                          num_layers=12, max_position=512, share="all")
    assert c["embeddings"] == (30000 + 512 + 2) * 128 + 2 * 128 + 128 * 768 + 768
    a = 4 * (768 * 768 + 768) + 2 * 768
    f = 2 * 768 * 3072 + 3072 + 768 + 2 * 768
    assert c["encoder"] == a + f == 7_087_872
    bert = albert_num_params(vocab_size=30000, embed_dim=None, d_model=768, d_ff=3072,
                             num_layers=12, max_position=512, share="none")
    assert bert["encoder"] == 12 * (a + f)


def test_sharing_modes_tie_the_right_modules():
    kw = dict(num_layers=3, d_model=8, num_heads=2, d_ff=12, rng=0)
    att = AlbertEncoder(share="attention", **kw)
    ffn = AlbertEncoder(share="ffn", **kw)
    for i in (1, 2):
        assert att.layers[i].self_attn is att.layers[0].self_attn
        assert att.layers[i].norm1 is att.layers[0].norm1
        assert att.layers[i].linear1 is not att.layers[0].linear1
        assert ffn.layers[i].linear2 is ffn.layers[0].linear2
        assert ffn.layers[i].self_attn is not ffn.layers[0].self_attn


def test_embeddings_shape_and_seed():
    a = AlbertEmbeddings(vocab_size=20, embed_dim=3, d_model=8, max_position=6, rng=4)
    b = AlbertEmbeddings(vocab_size=20, embed_dim=3, d_model=8, max_position=6, rng=4)
    ids = np.array([[1, 2, 3], [4, 5, 0]])
    assert a(ids).shape == (2, 3, 8)
    assert np.array_equal(a(ids).data, b(ids).data)


def test_shared_layer_applied_L_times_matches_torch(torch):
    rng = np.random.default_rng(0)
    B, n, d, heads, d_ff, L = 2, 5, 8, 2, 12, 4
    ours = AlbertEncoder(num_layers=L, d_model=d, num_heads=heads, d_ff=d_ff, share="all",
                         activation="relu", layer_norm_eps=1e-5, rng=1)
    t = torch.nn.TransformerEncoderLayer(d, heads, d_ff, dropout=0.0, activation="relu",
                                         batch_first=True, layer_norm_eps=1e-5)
    one = ours.layers[0]
    copy_layer_to_torch(one, t, torch)
    t.eval()
    x = rng.standard_normal((B, n, d))
    xo = Tensor(x, requires_grad=True)
    out = ours(xo)
    xt = torch.tensor(x, requires_grad=True)
    h = xt
    for _ in range(L):                       # one torch module reused L times
        h = t(h)
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    h.backward(torch.tensor(dout))
    # float64 on both sides; post-norm layers keep activations O(1): error ~ L·depth·eps
    tol = 1e-11
    assert np.abs(out.data - h.detach().numpy()).max() < tol
    assert np.abs(xo.grad - xt.grad.numpy()).max() < tol
    assert np.abs(one.linear1.W.grad - t.linear1.weight.grad.numpy()).max() < tol
    assert np.abs(one.self_attn.W_q.W.grad - t.self_attn.in_proj_weight.grad[:d].numpy()).max() \
        < tol


def test_bad_input():
    with pytest.raises(ValueError, match="share"):
        AlbertEncoder(num_layers=2, d_model=4, num_heads=2, d_ff=4, share="layers")
    with pytest.raises(ValueError, match="embed_dim"):
        AlbertEmbeddings(vocab_size=5, embed_dim=0, d_model=4, max_position=3)
    with pytest.raises(ValueError, match="num_layers"):
        albert_num_params(vocab_size=5, embed_dim=2, d_model=4, d_ff=4, num_layers=0,
                          max_position=3)


def test_albert_hidden_groups():
    from refimpl.sharing import AlbertEncoder, albert_num_params

    enc = AlbertEncoder(num_layers=6, d_model=8, num_heads=2, d_ff=12, share="all", num_groups=3,
                        rng=0)
    ids = [id(layer) for layer in enc.layers]
    assert ids[0] == ids[1] != ids[2] == ids[3] != ids[4] == ids[5] and len(set(ids)) == 3
    one = AlbertEncoder(num_layers=6, d_model=8, num_heads=2, d_ff=12, share="all", rng=0)
    assert enc.num_parameters() == 3 * one.num_parameters() == albert_num_params(
        vocab_size=10, embed_dim=4, d_model=8, d_ff=12, num_layers=6, max_position=5,
        num_groups=3)["encoder"]
    with pytest.raises(ValueError, match="num_groups"):
        AlbertEncoder(num_layers=6, d_model=8, num_heads=2, d_ff=12, num_groups=4)
    with pytest.raises(ValueError, match="num_groups"):
        AlbertEncoder(num_layers=6, d_model=8, num_heads=2, d_ff=12, share="ffn", num_groups=2)
