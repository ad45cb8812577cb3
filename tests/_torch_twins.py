"""Copying refimpl.nn weights into their torch twins (one helper for every cross-check)."""

import numpy as np


def copy_mha_to_torch(ours, t_mha, torch):
    """refimpl ``MultiHeadAttention`` → ``torch.nn.MultiheadAttention`` (packed in-projection)."""
    with torch.no_grad():
        t_mha.in_proj_weight.copy_(torch.tensor(np.concatenate(
            [ours.W_q.W.data, ours.W_k.W.data, ours.W_v.W.data])))
        t_mha.in_proj_bias.copy_(torch.tensor(np.concatenate(
            [ours.W_q.b.data, ours.W_k.b.data, ours.W_v.b.data])))
        t_mha.out_proj.weight.copy_(torch.tensor(ours.W_o.W.data))
        t_mha.out_proj.bias.copy_(torch.tensor(ours.W_o.b.data))


def copy_layer_to_torch(ours, t, torch):
    """refimpl ``TransformerEncoderLayer`` → ``torch.nn.TransformerEncoderLayer`` (attention and
    FFN; the LayerNorms start at γ = 1, β = 0 on both sides)."""
    copy_mha_to_torch(ours.self_attn, t.self_attn, torch)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(t, name).weight.copy_(torch.tensor(getattr(ours, name).W.data))
            getattr(t, name).bias.copy_(torch.tensor(getattr(ours, name).b.data))
