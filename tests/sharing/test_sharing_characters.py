"""Character-aware models (Survey §5.1): C2W, char CNN + highway, CNN-Softmax, Char-LSTM output.

Registered checks, torch twins of the BiLSTM composition and of the char CNN, hand values of the
character table, counts, same seed -> same model, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import check
from refimpl.nn import BowClassifier, Tensor
from refimpl.sharing import (
    C2W,
    CharCNN,
    CharLSTMOutput,
    CharWordEmbedding,
    CNNSoftmax,
    c2w_num_params,
    char_aware_lm,
    char_cnn_num_params,
    char_table,
)

WORDS = ["<pad>", "cat", "cats", "dog", "a", "catalogue"]


@pytest.mark.parametrize("name", ["c2w", "char-cnn-highway", "cnn-softmax", "char-lstm-output"])
@pytest.mark.parametrize("seed", [0, 1])
def test_registered_checks(name, seed):
    check.verify(name, seed=seed)


def test_char_table_hand_values():
    chars, lengths, alphabet = char_table(["ab", "b", "zq"], alphabet="ab")
    # <bow>=1, <eow>=2, <unk>=3, a=4, b=5, <pad>=0
    assert chars.tolist() == [[1, 4, 5, 2], [1, 5, 2, 0], [1, 3, 3, 2]]
    assert lengths.tolist() == [4, 3, 4] and alphabet == "ab"
    cut, n, _ = char_table(["abab"], alphabet="ab", max_len=4)
    assert cut.tolist() == [[1, 4, 5, 2]] and n.tolist() == [4]
    assert char_table(["ba", "a"])[2] == "ab"


def _torch_c2w(m, chars, lengths, torch):
    """C2W in torch: nn.Embedding + bidirectional nn.LSTM over packed sequences."""
    H = m.D_f.shape[1]
    emb = torch.nn.Embedding(m.num_chars, m.char_embedding.dim)
    lstm = torch.nn.LSTM(m.char_embedding.dim, H, bidirectional=True, batch_first=True)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(m.char_embedding.W.data))
        for name, p in lstm.named_parameters():      # weight_ih_l0_reverse -> W_ih_l0_reverse
            ours = name.replace("weight_", "W_").replace("bias_", "b_")
            p.copy_(torch.tensor(getattr(m.lstm, ours).data))
    packed = torch.nn.utils.rnn.pack_padded_sequence(emb(torch.tensor(chars)),
                                                     torch.tensor(lengths),
                                                     batch_first=True, enforce_sorted=False)
    _, (h, _) = lstm(packed)
    return h[0] @ torch.tensor(m.D_f.data).T + h[1] @ torch.tensor(m.D_b.data).T \
        + torch.tensor(m.b.data), lstm


def test_c2w_torch_twin(torch):
    chars, lengths, alphabet = char_table(WORDS)
    m = C2W(num_chars=4 + len(alphabet), d_char=4, d_hidden=5, d_word=3, rng=0)
    ref, lstm = _torch_c2w(m, chars, lengths, torch)
    out = m(chars, lengths)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), atol=1e-13)
    dout = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(dout)
    ref.backward(torch.tensor(dout))
    for name, p in lstm.named_parameters():
        ours = getattr(m.lstm, name.replace("weight_", "W_").replace("bias_", "b_"))
        np.testing.assert_allclose(ours.grad, p.grad.numpy(), atol=1e-12)


def test_char_cnn_torch_twin(torch):
    chars, lengths, alphabet = char_table(WORDS)
    m = CharCNN(num_chars=4 + len(alphabet), d_char=3, widths=(1, 2, 3), num_filters=(2, 3, 4),
                highway_layers=1, rng=0)
    Q = torch.tensor(m.char_embedding.W.data, requires_grad=True)
    x = Q[torch.tensor(chars)].transpose(1, 2)                       # (N, d_char, L_c)
    feats = []
    for conv in m.convs:
        t = torch.nn.Conv1d(3, conv.out_channels, conv.width)
        with torch.no_grad():
            t.weight.copy_(torch.tensor(conv.W.data))
            t.bias.copy_(torch.tensor(conv.b.data))
        feats.append(torch.tanh(t(x)).max(dim=2).values)
    y = torch.cat(feats, dim=1)
    hw = m.highway
    g = torch.relu(y @ torch.tensor(hw.H_l0.W.data).T + torch.tensor(hw.H_l0.b.data))
    gate = torch.sigmoid(y @ torch.tensor(hw.T_l0.W.data).T + torch.tensor(hw.T_l0.b.data) - 2)
    ref = gate * g + (1 - gate) * y
    out = m(chars)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), atol=1e-13)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    out.backward(dout)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(m.char_embedding.W.grad[1:], Q.grad.numpy()[1:], atol=1e-12)
    assert np.all(m.char_embedding.W.grad[0] == 0)                  # <pad> row not trained


def test_counts_and_formula():
    for C, dc, H, dw in [(5, 1, 1, 1), (30, 8, 12, 16)]:
        assert C2W(num_chars=C, d_char=dc, d_hidden=H, d_word=dw, rng=0).num_parameters() == \
            c2w_num_params(num_chars=C, d_char=dc, d_hidden=H, d_word=dw)
    assert c2w_num_params(num_chars=5, d_char=1, d_hidden=1, d_word=1) == 5 + 2 * 16 + 2 + 1
    m = CharCNN(num_chars=6, d_char=2, widths=(2,), num_filters=(3,), highway_layers=0, rng=0)
    assert m.num_parameters() == 6 * 2 + 3 * 2 * 2 + 3 == char_cnn_num_params(
        num_chars=6, d_char=2, widths=(2,), num_filters=(3,), highway_layers=0)


def test_unseen_words_get_vectors_and_lm_trains():
    words = ["<pad>", "<unk>", "<bos>", "<eos>", "run", "runs", "ran", "sun"]
    lm = char_aware_lm(words=words, d_char=3, widths=(1, 2), num_filters=(3, 3), d_hidden=6,
                       cnn_softmax=True, rng=0)
    assert isinstance(lm.embedding, CharWordEmbedding) and isinstance(lm.out, CNNSoftmax)
    _, _, alphabet = char_table(words)
    v = lm.embedding.embed_words(["nurs", "s"], alphabet)
    assert v.shape == (2, 6) and np.all(np.isfinite(v.data))
    X = np.array([[2, 4, 5, 3], [2, 7, 3, 0]])
    from refimpl.nn import fit_lm
    hist = fit_lm(lm, (X, np.array([4, 3])), epochs=3, batch_size=2, lr=1e-2, rng=0,
                  progress=False)
    assert hist.train_loss[-1] < hist.train_loss[0]


def test_char_word_embedding_in_a_classifier_and_padding():
    chars, lengths, alphabet = char_table(WORDS)
    enc = C2W(num_chars=4 + len(alphabet), d_char=3, d_hidden=4, d_word=5, rng=0)
    clf = BowClassifier(vocab_size=len(WORDS), d_emb=5, n_classes=2, d_hidden=None, rng=0)
    clf.embedding = CharWordEmbedding(enc, chars, lengths)
    out = clf(np.array([[1, 2, 0], [3, 3, 5]]), np.array([2, 3]))
    assert out.shape == (2, 2)
    assert np.all(clf.embedding(np.array([0, 1]))[0].data == 0)      # <pad> is zero


def test_same_seed_same_model():
    a = CharCNN(num_chars=8, d_char=3, rng=5)
    b = CharCNN(num_chars=8, d_char=3, rng=5)
    assert all(np.array_equal(p.data, q.data) for p, q in zip(a.parameters(), b.parameters()))
    c = CharLSTMOutput(num_chars=8, d_char=2, d_context=3, d_hidden=4, rng=5)
    d = CharLSTMOutput(num_chars=8, d_char=2, d_context=3, d_hidden=4, rng=5)
    h = np.ones((1, 3))
    ch = np.array([[1, 4, 2]])
    assert c.log_prob(h, ch).data == d.log_prob(h, ch).data


def test_bad_input():
    chars, lengths, alphabet = char_table(WORDS)
    m = C2W(num_chars=4 + len(alphabet), d_char=2, d_hidden=2, d_word=2, rng=0)
    with pytest.raises(TypeError, match="words"):
        char_table("cat")
    with pytest.raises(TypeError, match="words"):
        char_table([])
    with pytest.raises(TypeError, match="alphabet"):
        char_table(["a"], alphabet=3)
    assert char_table(["ab"], alphabet="aba")[0].tolist() == [[1, 4, 5, 2]]
    with pytest.raises(ValueError, match="chars"):
        m(chars + 100, lengths)
    with pytest.raises(TypeError, match="chars"):
        m(chars.astype(float), lengths)
    with pytest.raises(ValueError, match="lengths"):
        m(chars, lengths + 100)
    with pytest.raises(ValueError, match="num_chars"):
        C2W(num_chars=4, d_char=2, d_hidden=2, d_word=2)
    cnn = CharCNN(num_chars=4 + len(alphabet), d_char=2, widths=(1, 12), num_filters=(2, 2))
    with pytest.raises(ValueError, match="chars"):
        cnn(chars)                                         # narrower than the widest filter
    with pytest.raises(TypeError, match="num_filters"):
        CharCNN(num_chars=8, d_char=2, widths=(1, 2), num_filters=(2,))
    with pytest.raises(TypeError, match="encoder"):
        CharWordEmbedding("c2w", chars, lengths)
    with pytest.raises(TypeError, match="encoder"):
        CNNSoftmax(m, chars, lengths, 4)
    out = CharLSTMOutput(num_chars=8, d_char=2, d_context=3, d_hidden=4)
    with pytest.raises(ValueError, match="h"):
        out(np.full((1, 3), np.nan), np.array([[1, 4, 2]]))
    with pytest.raises(ValueError, match="chars"):
        out(np.ones((2, 3)), np.array([[1, 4, 2]]))
    emb = CharWordEmbedding(m, chars, lengths)
    with pytest.raises(ValueError, match="idx"):
        emb(np.array([len(WORDS)]))
    with pytest.raises(TypeError, match="idx"):
        emb(np.array([0.5]))
    assert isinstance(emb(np.array([[1]])), Tensor)


def test_cnn_softmax_correction_term():
    words = ["<pad>", "<unk>", "run", "runs", "sun"]
    chars, lengths, alphabet = char_table(words)
    enc = CharCNN(num_chars=4 + len(alphabet), d_char=2, widths=(1, 2), num_filters=(2, 3),
                  highway_layers=0, rng=0)
    plain = CNNSoftmax(enc, chars, lengths, 4, rng=3)
    corr = CNNSoftmax(enc, chars, lengths, 4, correction_dim=2, rng=3)
    assert corr.num_parameters() - plain.num_parameters() == 5 * 2 + 4 * 2
    assert corr.correction_projection.W.shape == (4, 2) and plain.correction is None
    h = np.random.default_rng(0).standard_normal((3, 4))
    assert np.array_equal(corr(h).data, plain(h).data)                # corr_w = 0 at init
    corr.correction.data = np.eye(5, 2)
    z = corr(h).data
    e = corr.output_embeddings().data
    np.testing.assert_allclose(e - plain.output_embeddings().data,
                               np.eye(5, 2) @ corr.correction_projection.W.data.T, atol=1e-14)
    np.testing.assert_allclose(z, h @ e.T, atol=1e-13)
    corr(h).sum().backward()
    assert np.any(corr.correction.grad) and np.any(corr.correction_projection.W.grad)
    with pytest.raises(ValueError, match="correction_dim"):
        CNNSoftmax(enc, chars, lengths, 4, correction_dim=0)
    with pytest.raises(TypeError, match="correction_dim"):
        CNNSoftmax(enc, chars, lengths, 4, correction_dim=1.5)


def test_char_aware_lm_with_cnn_softmax_correction():
    words = ["<pad>", "<unk>", "<bos>", "<eos>", "run", "runs", "sun"]
    kw = dict(words=words, d_char=3, widths=(1, 2), num_filters=(3, 3), d_hidden=6,
              cnn_softmax=True, rng=0)
    plain, corr = char_aware_lm(**kw), char_aware_lm(**kw, correction_dim=2)
    assert corr.num_parameters() - plain.num_parameters() == len(words) * 2 + 6 * 2
    X, n = np.array([[2, 4, 5, 3]]), np.array([4])
    assert np.array_equal(corr(X, n).data, plain(X, n).data)        # corr_w = 0 at init
    with pytest.raises(ValueError, match="correction_dim"):
        char_aware_lm(**(kw | dict(cnn_softmax=False)), correction_dim=2)
