"""Models: pooling semantics, padding invariance, head/FFN gates, tied LM weights, seq2seq
teacher forcing vs step-by-step decoding, beam search properties, bad input."""

import numpy as np
import pytest

from refimpl.nn import Tensor, no_grad
from refimpl.nn import functional as F
from refimpl.nn.models import (BowClassifier, LSTMLanguageModel, RNNClassifier, Seq2Seq,
                               TransformerClassifier)

V = 20


def _tokens(rng, B=4, T=6, lengths=(6, 3, 1, 5), V=V, low=4):
    L = np.array(lengths)
    X = rng.integers(low, V, (B, T))
    X[np.arange(T)[None, :] >= L[:, None]] = 0
    return X, L


def _models():
    return {
        "bow": BowClassifier(vocab_size=V, d_emb=8, n_classes=3, d_hidden=6, rng=0),
        "bow_linear": BowClassifier(vocab_size=V, d_emb=8, n_classes=3, d_hidden=None, rng=0),
        "lstm": RNNClassifier(vocab_size=V, d_emb=8, d_hidden=5, n_classes=3, rng=0),
        "bigru2": RNNClassifier(vocab_size=V, d_emb=8, d_hidden=5, n_classes=3, cell="gru", num_layers=2, bidirectional=True,
                                rng=0),
        "lstm_mean": RNNClassifier(vocab_size=V, d_emb=8, d_hidden=5, n_classes=3, pooling="mean", bidirectional=True, rng=0),
        "lstm_max": RNNClassifier(vocab_size=V, d_emb=8, d_hidden=5, n_classes=3, pooling="max", rng=0),
        "trf_mean": TransformerClassifier(vocab_size=V, d_model=8, num_heads=2, d_ff=12,
                                          num_layers=2, max_len=10, n_classes=3, rng=0),
        "trf_cls": TransformerClassifier(vocab_size=V, d_model=8, num_heads=2, d_ff=12,
                                         num_layers=1, max_len=10, n_classes=3, pooling="cls",
                                         norm_first=True,
                                         rng=0),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_classifiers_shape_and_padding_invariance(name):
    m = _models()[name]
    X, L = _tokens(np.random.default_rng(0))
    out = m(X, L)
    assert out.shape == (4, 3)
    Xp = np.concatenate([X, np.zeros((4, 3), np.int64)], axis=1)  # extra padding columns
    np.testing.assert_allclose(m(Xp, L).data, out.data, atol=1e-12)
    np.testing.assert_allclose(m(X).data, out.data, atol=1e-12)  # lengths from X != 0
    # every parameter gets a gradient
    out.sum().backward()
    missing = [k for k, p in m.named_parameters() if p.grad is None]
    assert not missing, missing


def test_bow_is_mean_of_embeddings_and_order_blind():
    m = BowClassifier(vocab_size=V, d_emb=4, n_classes=2, d_hidden=None, rng=0)
    X = np.array([[5, 6, 7, 0]])
    f = m.features(X, np.array([3])).data
    np.testing.assert_allclose(f[0], m.embedding.W.data[[5, 6, 7]].mean(0), rtol=1e-14)
    np.testing.assert_allclose(m(np.array([[7, 5, 6, 0]])).data, m(X).data, rtol=1e-14)


def test_rnn_classifier_last_pooling_is_final_state():
    m = RNNClassifier(vocab_size=V, d_emb=4, d_hidden=3, n_classes=2, bidirectional=True, rng=1)
    X, L = _tokens(np.random.default_rng(1))
    out, (h, _) = m.rnn(m.embedding(X), lengths=L)
    f = m.features(X, L).data
    np.testing.assert_allclose(f, np.concatenate([h.data[0], h.data[1]], axis=1), rtol=1e-14)
    # forward direction's final state = forward output at the last real step
    np.testing.assert_allclose(f[:, :3], out.data[np.arange(4), L - 1, :3], rtol=1e-14)


def test_transformer_head_mask_gradient_and_ffn_mask():
    m = TransformerClassifier(vocab_size=V, d_model=8, num_heads=2, d_ff=12, num_layers=2,
                              max_len=10, n_classes=3, rng=0)
    X, L = _tokens(np.random.default_rng(2))
    xi = Tensor(np.ones((2, 2)), requires_grad=True)
    out = m(X, L, head_mask=xi)
    np.testing.assert_allclose(out.data, m(X, L).data, rtol=1e-14)
    F.log_softmax(out).sum().backward()
    assert xi.grad.shape == (2, 2) and np.all(np.abs(xi.grad) > 0)
    hm = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert not np.allclose(m(X, L, head_mask=hm).data, out.data)
    fm = np.ones((2, 12))
    np.testing.assert_allclose(m(X, L, ffn_mask=fm).data, out.data, rtol=1e-14)
    with pytest.raises(ValueError, match="head_mask must have num_layers=2 rows"):
        m(X, L, head_mask=np.ones((3, 2)))


def test_lm_loss_token_nll_tied_weights_and_state_carry():
    rng = np.random.default_rng(3)
    X, L = _tokens(rng, lengths=(6, 3, 2, 5))
    X[:, 0] = 2
    X[np.arange(4), L - 1] = 3
    m = LSTMLanguageModel(vocab_size=V, d_emb=6, d_hidden=6, num_layers=2, tie_weights=True, rng=0)
    per = m.token_nll(X, L)
    assert per.shape == (4, 5) and np.isnan(per[1, 2]) and np.isfinite(per[1, 1])
    np.testing.assert_allclose(m.loss(X, L).item(), np.nanmean(per), rtol=1e-12)
    untied = LSTMLanguageModel(vocab_size=V, d_emb=6, d_hidden=6, num_layers=2, rng=0)
    assert untied.num_parameters() - m.num_parameters() == V * 6
    # running in two windows with the carried state equals one pass
    full = m(X[:, :5], np.full(4, 5)).data
    a, st = m(X[:, :2], np.full(4, 2), return_state=True)
    b = m(X[:, 2:5], np.full(4, 3), state=st)
    np.testing.assert_allclose(np.concatenate([a.data, b.data], axis=1), full, atol=1e-13)
    with pytest.raises(ValueError, match="tie_weights requires d_emb == d_hidden"):
        LSTMLanguageModel(vocab_size=V, d_emb=6, d_hidden=7, tie_weights=True)


def _s2s_data(rng, B=3):
    src, sl = _tokens(rng, B=B, T=5, lengths=(5, 2, 4)[:B])
    tgt, tl = _tokens(rng, B=B, T=6, lengths=(6, 4, 3)[:B])
    tgt[:, 0] = 2
    tgt[np.arange(B), tl - 1] = 3
    return src, sl, tgt, tl


@pytest.mark.parametrize("cell,attention", [("gru", True), ("lstm", True), ("gru", False)])
def test_seq2seq_teacher_forcing_equals_stepwise_decoding(cell, attention):
    m = Seq2Seq(src_vocab=V, tgt_vocab=V, d_emb=6, d_hidden=5, cell=cell, attention=attention, rng=0)
    src, sl, tgt, tl = _s2s_data(np.random.default_rng(4))
    logits = m(src, sl, tgt[:, :-1]).data  # (B, 5, V)
    with no_grad():
        enc, state, valid = m.encode(src, sl)
        for t in range(5):
            lp, state = m._step(tgt[:, t], state, enc, valid)
            ref = logits[:, t] - np.log(np.exp(logits[:, t]).sum(-1, keepdims=True))
            np.testing.assert_allclose(lp, ref, atol=1e-12)
    loss = m.loss(src, sl, tgt, tl)
    loss.backward()
    missing = [k for k, p in m.named_parameters() if p.grad is None]
    assert not missing and np.isfinite(loss.item()), missing


def test_beam_search_scores_sorted_consistent_and_beam1_is_greedy():
    m = Seq2Seq(src_vocab=V, tgt_vocab=V, d_emb=6, d_hidden=8, rng=1)
    src, sl, _, _ = _s2s_data(np.random.default_rng(5))
    greedy, gl = m.greedy_decode(src, sl, max_len=7)
    b1, s1, l1 = m.beam_search(src, sl, beam_size=1, max_len=7)
    np.testing.assert_array_equal(b1[:, 0], greedy)
    np.testing.assert_array_equal(l1[:, 0], gl)
    toks, scores, lens = m.beam_search(src, sl, beam_size=3, max_len=7)
    assert np.all(np.diff(scores, axis=1) <= 1e-12)  # best first
    assert np.all(scores[:, 0] >= s1[:, 0] - 1e-12)  # a wider beam finds no worse a sequence
    # a score is the sum of the log-probabilities of its tokens (teacher forcing)
    for b in range(3):
        for k in range(3):
            seq = toks[b, k, :lens[b, k]]
            tin = np.concatenate([[2], seq[:-1]])[None, :]
            lp = F.log_softmax(m(src[b:b + 1], sl[b:b + 1], tin)).data[0]
            np.testing.assert_allclose(lp[np.arange(len(seq)), seq].sum(), scores[b, k],
                                       atol=1e-10)


def test_models_bad_input_names_the_argument():
    m = RNNClassifier(vocab_size=V, d_emb=4, d_hidden=3, n_classes=2)
    X, L = _tokens(np.random.default_rng(0))
    with pytest.raises(TypeError, match="X must be an integer array"):
        m(X.astype(float), L)
    with pytest.raises(ValueError, match=r"X token ids must lie in \[0, 20\)"):
        m(X + 20, L)
    with pytest.raises(ValueError, match="X must have shape"):
        m(X[0], L)
    with pytest.raises(ValueError, match="lengths must lie in"):
        m(X, L + 1)
    with pytest.raises(ValueError, match="lengths must have shape"):
        m(X, L[:2])
    t = TransformerClassifier(vocab_size=V, d_model=8, num_heads=2, d_ff=12, num_layers=1,
                              max_len=4, n_classes=3)
    with pytest.raises(ValueError, match="max_len=4"):
        t(X, L)
    with pytest.raises(ValueError, match="num_heads must divide d_model"):
        TransformerClassifier(vocab_size=V, d_model=8, num_heads=3, d_ff=12, num_layers=1,
                              max_len=4, n_classes=3)
    with pytest.raises(ValueError, match="cell"):
        RNNClassifier(vocab_size=V, d_emb=4, d_hidden=3, n_classes=2, cell="rnn")
    with pytest.raises(ValueError, match="src token ids"):
        Seq2Seq(src_vocab=V, tgt_vocab=V, d_emb=4, d_hidden=4).greedy_decode(X + 20, L)


@pytest.mark.parametrize("name", ["bow", "lstm", "lstm_mean", "lstm_max", "bigru2"])
def test_float32_models_stay_float32(name):
    m64 = _models()[name]
    X, L = _tokens(np.random.default_rng(0))
    ref = m64(X, L).data
    m = _models()[name].astype(np.float32)
    out = m(X, L)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, ref, atol=1e-4)
    out.sum().backward()
    assert {p.grad.dtype for p in m.parameters()} == {np.dtype(np.float32)}


def test_float32_transformer_with_relu_stays_float32():
    m = TransformerClassifier(vocab_size=V, d_model=8, num_heads=2, d_ff=12, num_layers=2,
                              max_len=10, n_classes=3, activation="relu", pooling="cls",
                              rng=0).astype(np.float32)
    X, L = _tokens(np.random.default_rng(0))
    assert m(X, L).dtype == np.float32


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_batched_beam_search_equals_one_source_at_a_time(alpha):
    m = Seq2Seq(src_vocab=15, tgt_vocab=12, d_emb=6, d_hidden=8, cell="lstm", rng=3)
    rng = np.random.default_rng(6)
    src = rng.integers(4, 15, (5, 5))
    sl = np.array([5, 3, 1, 4, 2])
    toks, scores, lens = m.beam_search(src, sl, beam_size=3, max_len=6, length_penalty=alpha)
    for b in range(5):
        t1, s1, l1 = m.beam_search(src[b:b + 1], sl[b:b + 1], beam_size=3, max_len=6,
                                   length_penalty=alpha)
        np.testing.assert_array_equal(t1[0], toks[b])
        np.testing.assert_array_equal(l1[0], lens[b])
        np.testing.assert_allclose(s1[0], scores[b], atol=1e-12)


def test_lm_sample_is_seeded_and_follows_a_peaked_model():
    m = LSTMLanguageModel(vocab_size=8, d_emb=4, d_hidden=4, rng=0)
    X1, L1 = m.sample(6, max_len=5, rng=1)
    X2, L2 = m.sample(6, max_len=5, rng=1)
    np.testing.assert_array_equal(X1, X2)
    assert np.all(X1[:, 0] == 2)
    for i in range(6):
        assert np.all(X1[i, L1[i]:] == 0) and np.all(X1[i, 1:L1[i]] != 0)
        if L1[i] <= 5:
            assert X1[i, L1[i] - 1] == 3
    # a model whose output always says "5 then <eos>": bias dominates
    m.out.W.data[:] = 0.0
    m.out.b.data[:] = -50.0
    m.out.b.data[5] = 50.0
    X, L = m.sample(3, max_len=4, rng=0)
    np.testing.assert_array_equal(X[:, 1:], 5)
    np.testing.assert_array_equal(L, 5)
