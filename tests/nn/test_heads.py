"""BERT's MLM head tied to the embedding matrix (refimpl.nn.heads): torch twins of the head and
of the tied gradient (input lookup + output decoder), a gradient check, the ``rows`` window, a
whole MaskedLanguageModel against Hugging Face's BertForMaskedLM, and bad input."""

import numpy as np
import pytest

from refimpl.nn import Embedding, LayerNorm, gradcheck
from refimpl.nn.heads import IGNORE_INDEX, MaskedLanguageModel, MaskedLMHead, embedding_matrix

TOL = 1e-10  # float64 on both sides; the products are of length <= 16


def _head(d=6, V=11, seed=0):
    rng = np.random.default_rng(seed)
    head = MaskedLMHead(d, V, rng=seed)
    head.bias.data[:] = rng.standard_normal(V)
    head.norm.gamma.data[:] = 1 + 0.1 * rng.standard_normal(d)
    head.norm.beta.data[:] = 0.1 * rng.standard_normal(d)
    return head


def test_tied_head_and_gradient_match_torch(torch):
    """logits = LN(gelu(W LN0(E[ids]) + c)) Eᵀ + b; E gets the lookup's and the decoder's
    gradient, as one torch Parameter used twice."""
    rng = np.random.default_rng(1)
    V, d, B, n = 11, 6, 2, 4
    emb = Embedding(V, d, rng=3)
    ln0 = LayerNorm(d)
    head = _head(d, V)
    ids = rng.integers(0, V, (B, n))
    dout = rng.standard_normal((B, n, V))
    logits = head(ln0(emb(ids)), embedding_matrix(emb))
    (logits * dout).sum().backward()

    E = torch.tensor(emb.W.data, requires_grad=True)
    W = torch.tensor(head.dense.W.data, requires_grad=True)
    c = torch.tensor(head.dense.b.data, requires_grad=True)
    b = torch.tensor(head.bias.data, requires_grad=True)
    x = torch.nn.functional.layer_norm(E[torch.tensor(ids)], (d,), eps=1e-5)
    t = torch.nn.functional.gelu(x @ W.T + c)
    t = torch.nn.functional.layer_norm(t, (d,), torch.tensor(head.norm.gamma.data),
                                       torch.tensor(head.norm.beta.data), eps=1e-12)
    ref = t @ E.T + b  # the decoder is E itself (tied)
    (ref * torch.tensor(dout)).sum().backward()
    assert np.abs(logits.data - ref.detach().numpy()).max() < TOL
    for mine, theirs in ((emb.W.grad, E.grad), (head.dense.W.grad, W.grad),
                         (head.bias.grad, b.grad)):
        assert np.abs(mine - theirs.numpy()).max() < TOL


def test_head_gradcheck_and_rows_window():
    rng = np.random.default_rng(2)
    head = _head()
    h, E = rng.standard_normal((3, 6)), rng.standard_normal((11, 6))
    g = gradcheck(lambda a, e: head(a, e, rows=(4, 9)), [h, E])
    assert g["max_abs_err"] < 1e-7
    full = head(h, E).data
    np.testing.assert_array_equal(head(h, E, rows=(4, 9)).data, full[:, 4:9])


def test_mlm_loss_is_cross_entropy_at_labelled_positions():
    rng = np.random.default_rng(3)
    m = MaskedLanguageModel(vocab_size=13, d_model=8, num_heads=2, d_ff=16, num_layers=1,
                            max_position=6, rng=0)
    ids = rng.integers(1, 13, (2, 5))
    labels = np.full((2, 5), IGNORE_INDEX)
    labels[0, 1], labels[1, 3] = 4, 7
    z = m(ids).data  # (2, 5, 13)
    want = 0.0
    for (i, j) in ((0, 1), (1, 3)):
        zz = z[i, j]
        want += np.log(np.exp(zz - zz.max()).sum()) + zz.max() - zz[labels[i, j]]
    assert abs(m.mlm_loss(ids, labels).item() - want / 2) < 1e-12
    # the decoder is the word table: no separate output weight exists
    names = [k for k, _ in m.named_parameters()]
    assert "embeddings.word.W" in names and not any("decoder" in k for k in names)


def test_masked_language_model_matches_transformers_bert(torch):
    transformers = _require("transformers")  # in the test extra through sentence-transformers
    rng = np.random.default_rng(4)
    V, d, H, d_ff, L, n, B = 17, 8, 2, 12, 2, 6, 2
    m = MaskedLanguageModel(vocab_size=V, d_model=d, num_heads=H, d_ff=d_ff, num_layers=L,
                            max_position=n, rng=0)
    m.head.bias.data[:] = rng.standard_normal(V)
    cfg = transformers.BertConfig(vocab_size=V, hidden_size=d, num_hidden_layers=L,
                                  num_attention_heads=H, intermediate_size=d_ff,
                                  max_position_embeddings=n, type_vocab_size=1,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                  layer_norm_eps=1e-12, hidden_act="gelu", pad_token_id=0,
                                  tie_word_embeddings=True)
    hf = transformers.BertForMaskedLM(cfg).double().eval()
    sd = {}
    e, p = m.embeddings, "bert.embeddings."
    sd[p + "word_embeddings.weight"] = e.word.W.data
    sd[p + "position_embeddings.weight"] = e.position.W.data
    sd[p + "token_type_embeddings.weight"] = e.token_type.W.data
    sd[p + "LayerNorm.weight"], sd[p + "LayerNorm.bias"] = e.norm.gamma.data, e.norm.beta.data
    for i, lay in enumerate(m.encoder.layers):
        p = f"bert.encoder.layer.{i}."
        att = lay.self_attn
        Wq, Wk, Wv = att.W_q.W.data, att.W_k.W.data, att.W_v.W.data
        bq, bk, bv = att.W_q.b.data, att.W_k.b.data, att.W_v.b.data
        sd[p + "attention.self.query.weight"], sd[p + "attention.self.query.bias"] = Wq, bq
        sd[p + "attention.self.key.weight"], sd[p + "attention.self.key.bias"] = Wk, bk
        sd[p + "attention.self.value.weight"], sd[p + "attention.self.value.bias"] = Wv, bv
        sd[p + "attention.output.dense.weight"] = att.W_o.W.data
        sd[p + "attention.output.dense.bias"] = att.W_o.b.data
        sd[p + "attention.output.LayerNorm.weight"] = lay.norm1.gamma.data
        sd[p + "attention.output.LayerNorm.bias"] = lay.norm1.beta.data
        sd[p + "intermediate.dense.weight"] = lay.linear1.W.data
        sd[p + "intermediate.dense.bias"] = lay.linear1.b.data
        sd[p + "output.dense.weight"], sd[p + "output.dense.bias"] = (lay.linear2.W.data,
                                                                       lay.linear2.b.data)
        sd[p + "output.LayerNorm.weight"] = lay.norm2.gamma.data
        sd[p + "output.LayerNorm.bias"] = lay.norm2.beta.data
    p = "cls.predictions."
    sd[p + "transform.dense.weight"] = m.head.dense.W.data
    sd[p + "transform.dense.bias"] = m.head.dense.b.data
    sd[p + "transform.LayerNorm.weight"] = m.head.norm.gamma.data
    sd[p + "transform.LayerNorm.bias"] = m.head.norm.beta.data
    sd[p + "bias"] = m.head.bias.data
    state = hf.state_dict()
    for k, v in (("decoder.bias", m.head.bias.data), ("decoder.weight", e.word.W.data)):
        if p + k in state:  # tied entries, listed by some transformers versions
            sd[p + k] = v
    missing = [k for k in sd if k not in state]
    assert not missing, missing
    hf.load_state_dict({**state, **{k: torch.tensor(v) for k, v in sd.items()}})
    assert hf.cls.predictions.decoder.weight.data_ptr() == \
        hf.bert.embeddings.word_embeddings.weight.data_ptr()  # tied in the reference too
    ids = rng.integers(1, V, (B, n))
    ids[1, 4:] = 0
    mask = (ids != 0).astype(np.int64)
    ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    got = m(ids, mask).data
    err = np.abs(got - ref.detach().numpy())[mask.astype(bool)].max()
    assert err < 1e-9, f"max abs err {err:.3e}"


def _require(name):
    import importlib
    import os

    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)  # never skipped in CI
    return pytest.importorskip(name)


def test_bad_input():
    head = _head()
    with pytest.raises(ValueError, match="embedding"):
        head(np.zeros((2, 6)), np.zeros((10, 6)))
    with pytest.raises(ValueError, match="rows"):
        head(np.zeros((2, 6)), np.zeros((11, 6)), rows=(5, 5))
    with pytest.raises(TypeError, match="rows"):
        head(np.zeros((2, 6)), np.zeros((11, 6)), rows="ab")
    with pytest.raises(ValueError, match="h"):
        head(np.full((2, 6), np.nan), np.zeros((11, 6)))
    m = MaskedLanguageModel(vocab_size=9, d_model=4, num_heads=2, d_ff=8, num_layers=1,
                            max_position=5, rng=0)
    with pytest.raises(ValueError, match="ids"):
        m(np.array([[1, 9]]))
    with pytest.raises(TypeError, match="ids"):
        m(np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="labels"):
        m.mlm_loss(np.array([[1, 2]]), np.full((1, 2), IGNORE_INDEX))
    with pytest.raises(TypeError, match="module"):
        embedding_matrix(head)
