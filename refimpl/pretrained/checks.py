"""Registered checks of chapter 9 (the real pretrained model, compressed).

* ``check:chapter9-kernels`` — every kernel-backed module the table stores compressed weights in
  (CSR, k-bit packed linear and embedding, TT row lookup, fused sliding window) equals the dense
  reference of the same stored weights, and the stored bits equal hand counts;
* ``claim:minilm-8bit-lossless-binary-ffn-collapses`` — on the real all-MiniLM-L6-v2, without
  fine-tuning, 8-bit per-row weights keep the embeddings (fidelity > 0.99) while BWN 1-bit FFN
  weights collapse them (fidelity < 0.5) — the survey's observation that binarising a
  pretrained Transformer needs (re)training (§3.1, §3.3.5).
"""

from __future__ import annotations

import numpy as np

from refimpl.check import Outcome, register_check, register_claim

_C = "refimpl.pretrained.compress"


@register_check("chapter9-kernels", "chapter 9's stored formats: CSR, k-bit packed linear and "
                "embedding, TT row lookup and the fused sliding window equal the dense "
                "reference of the same stored weights; bits by hand", section="9",
                implements=["refimpl.pruning.sparse_linear.CSRLinear",
                            "refimpl.quantization.packed_linear.PackedLinear",
                            "refimpl.quantization.packed_linear.PackedEmbedding",
                            f"{_C}.TTWordEmbedding", f"{_C}.stored_bits"])
def _check_kernels(rng, quick):
    from refimpl.attention.hooks import LongformerHook
    from refimpl.nn import Embedding, Linear, TransformerEncoderLayer, no_grad
    from refimpl.pretrained.compress import TTWordEmbedding
    from refimpl.pruning.sparse_linear import CSRLinear
    from refimpl.quantization.packed_linear import PackedEmbedding, PackedLinear

    lin = Linear(70, 24, rng=rng)
    X = rng.standard_normal((5, 70))
    errs = {}
    mask = rng.random(lin.W.shape) < 0.2
    csr = CSRLinear.from_linear(lin, mask)
    errs["csr"] = np.abs(csr(X).data - (X @ np.where(mask, lin.W.data, 0).T + lin.b.data)).max()
    bits_ok = csr.stored_bits() == int(mask.sum()) * (64 + 16) + 25 * 64 + 24 * 64
    for scheme, bits in (("uniform", 8), ("kmeans", 4), ("binary", 1), ("ternary", 2)):
        p = PackedLinear.quantize(lin, scheme, bits)
        errs[scheme] = np.abs(p(X).data - (X @ p.weight().T + lin.b.data)).max()
    # 4-bit uniform: 16 codes per word, ⌈70/16⌉ = 5 words per row; α, β, bias float64 per row
    bits_ok &= PackedLinear.uniform(lin, 4).stored_bits() == 24 * 5 * 64 + 24 * 3 * 64
    emb = Embedding(60, 12, rng=rng)
    idx = rng.integers(0, 60, (3, 4))
    pe = PackedEmbedding.from_embedding(emb, "uniform", 8)
    errs["packed-embedding"] = np.abs(pe(idx).data - pe.weight()[idx]).max()
    tt = TTWordEmbedding.from_dense(emb.W.data, 3, (4, 4, 4), (2, 2, 3))
    with no_grad():
        errs["tt-lookup"] = np.abs(tt(idx).data - tt.tt(idx).data).max()
    layer = TransformerEncoderLayer(12, 3, 24, layer_norm_eps=1e-12, rng=rng)
    h = rng.standard_normal((2, 20, 12))
    pad = np.zeros((2, 20), dtype=bool)
    pad[1, 15:] = True
    outs = []
    for fused in (True, False):
        layer.self_attn.attention = LongformerHook(6, 1, (0,), fused=fused)
        with no_grad():
            outs.append(layer(h, key_padding_mask=pad).data)
    errs["sliding-window"] = np.abs(outs[0] - outs[1])[~pad].max()
    worst = max(errs.values())
    return Outcome(bool(worst <= 1e-12 and bits_ok),
                   {**{k: float(f"{v:.1e}") for k, v in errs.items()}, "bits_by_hand": bits_ok},
                   "float64 kernels vs dense references of the same stored weights")


@register_claim("minilm-8bit-lossless-binary-ffn-collapses", "all-MiniLM-L6-v2 without "
                "fine-tuning: 8-bit per-row weights keep the sentence embeddings (fidelity > "
                "0.99) while BWN 1-bit FFN weights collapse them (fidelity < 0.5)",
                section="3.1", slow=True,
                implements=[f"{_C}.compress_table"])
def _claim_binary_collapse(rng, quick):
    from dataclasses import replace

    from refimpl.pretrained import load_minilm
    from refimpl.pretrained.compress import FULL, QUICK, compress_table, prepare_data

    config = QUICK if quick else FULL
    if quick:
        config = replace(config, latency_small=1, latency_large=2, large_batch=2)
    model = load_minilm()
    data = prepare_data(model.tokenizer, config)
    rows = {r.method: r for r in compress_table(model, data, config,
                                                methods=["uniform-8", "binary-ffn"])}
    u8, b1 = rows["uniform-8"], rows["binary-ffn"]
    numbers = {"fidelity_8bit": round(u8.fidelity, 4), "fidelity_binary_ffn": round(b1.fidelity, 4),
               "R@1_original": round(rows["original"].recall1, 3),
               "R@1_8bit": round(u8.recall1, 3), "R@1_binary_ffn": round(b1.recall1, 3),
               "texts": len(data.eval)}
    sane = all(np.isfinite([u8.fidelity, b1.fidelity]))
    return Outcome(bool(sane), numbers, "mean cosine to the original embeddings, held-out "
                   "stdlib docstrings", reproduced=bool(u8.fidelity > 0.99 > 0.5 > b1.fidelity))
