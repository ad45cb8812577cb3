"""TinyBERT and BERT-of-Theseus on causal Transformer language models (Survey §4.4): the LM
forms of refimpl.distillation.bert_recipes."""

import copy

import numpy as np
import pytest

from refimpl.distillation import bert_recipes as br
from refimpl.nn import Tensor, TransformerClassifier, TransformerLanguageModel, gradcheck
from refimpl.nn.gradcheck import numerical_grad
from refimpl.nn.module import ModuleList


def _lm(d_model=8, num_layers=2, rng=0):
    return TransformerLanguageModel(vocab_size=15, d_model=d_model, num_heads=2, d_ff=8,
                                    num_layers=num_layers, max_len=7, rng=rng)


def _rows(rng=0, n=5, T=7):
    rng = np.random.default_rng(rng)
    X = rng.integers(4, 15, size=(n, T))
    X[:, 0] = 2
    lengths = rng.integers(2, T + 1, size=n)
    lengths[0] = T
    X[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return X, lengths


def _tinybert(student, teacher, proj, X, L):
    gm = br.tinybert_layer_map(teacher.num_layers, student.num_layers)
    s, t, valid = br._forward_pair(student, teacher, X, L)
    return br.tinybert_losses_t(s[1], t[1], s[0], t[0].data, proj, gm, valid, causal=True), \
        valid, s, t


def test_forward_pair_reads_the_next_token_positions():
    X, L = _rows()
    t, s = _lm(), _lm(d_model=4, num_layers=1, rng=1)
    so, to, valid = br._forward_pair(s, t, X, L)
    assert so[0].shape == (5, 6, 15) and to[0].shape == (5, 6, 15)
    np.testing.assert_array_equal(valid, np.arange(6)[None, :] < (L - 1)[:, None])
    np.testing.assert_array_equal(to[0].data, t(X[:, :-1], L - 1).data)


def test_per_token_prediction_loss_hand_value_and_gradcheck():
    """L_pred = −(1/N_v) Σ_{real (b,t)} Σ_v softmax(z^T/T) log softmax(z^S/T): by hand, and
    the tape gradient against float64 central differences."""
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    valid = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    T = 2.0

    def logsm(z):
        z = z / T
        return z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True))
                                                       .sum(-1, keepdims=True))

    want = -(np.exp(logsm(zt)) * logsm(zs)).sum(-1)[valid].mean()
    assert float(br._soft_ce(zs, zt, T, valid).data) == pytest.approx(want, rel=1e-14)
    # padded positions do not matter
    zs2 = zs.copy()
    zs2[~valid] = 99.0
    assert float(br._soft_ce(zs2, zt, T, valid).data) == float(br._soft_ce(zs, zt, T,
                                                                            valid).data)
    err = gradcheck(lambda z: br._soft_ce(z, zt, T, valid), [zs], atol=1e-9, rtol=1e-6)
    assert err["max_abs_err"] < 1e-9


def test_causal_scores_zero_future_and_padded_keys():
    X, L = _rows()
    m = _lm()
    _, enc = m(X[:, :-1], L - 1, output_attentions=True)
    valid = br.valid_positions(m, X[:, :-1], L - 1)
    att = enc.attentions[0]
    s = br._scores(att, valid, causal=True).data  # (B, H, n, n)
    raw = att.query.data @ np.swapaxes(att.key.data, -1, -2) / np.sqrt(att.query.shape[-1])
    keep = valid[:, None, None, :] & np.tril(np.ones((6, 6), bool))[None, None]
    np.testing.assert_array_equal(s[~np.broadcast_to(keep, s.shape)], 0.0)
    np.testing.assert_allclose(s[np.broadcast_to(keep, s.shape)],
                               raw[np.broadcast_to(keep, s.shape)], rtol=1e-14, atol=1e-15)
    # the non-causal form keeps the future keys' scores
    assert np.any(br._scores(att, valid).data != s)


def test_identical_student_has_zero_layer_losses_and_entropy_prediction_loss():
    """Hand case: student = teacher and identity projections ⇒ L_emb = L_hidn = L_attn = 0
    exactly, L_pred = the teacher's mean per-token entropy."""
    X, L = _rows()
    t = _lm()
    s = copy.deepcopy(t)
    proj = br.TinyBertProjections(8, 8, rng=0)
    for lin in (proj.W_e, proj.W_h):
        lin.W.data[...] = np.eye(8)
        lin.b.data[...] = 0.0
    d, valid, _, to = _tinybert(s, t, proj, X, L)
    assert float(d["embedding"].data) == 0.0
    assert float(d["hidden"].data) == 0.0 and float(d["attention"].data) == 0.0
    z = to[0].data
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    H = -(p * np.log(p)).sum(-1)[valid].mean()
    assert float(d["prediction"].data) == pytest.approx(H, rel=1e-12)


def test_tinybert_lm_losses_gradient_matches_central_differences():
    """Σ of the four LM losses: tape gradients w.r.t. the student's W_q, W_k (the causal
    attention-score term), its output layer and W_h against float64 central differences."""
    X, L = _rows(1)
    t = _lm()
    s = _lm(d_model=4, num_layers=1, rng=2)
    proj = br.TinyBertProjections(4, 8, rng=3)

    def total():
        d = _tinybert(s, t, proj, X, L)[0]
        return d["embedding"] + d["hidden"] + d["attention"] + d["prediction"]

    for p in s.parameters() + proj.parameters():
        p.grad = None
    total().backward()
    mha = s.layers[0].self_attn
    for P in (mha.W_q.W, mha.W_k.W, s.out.W, proj.W_h.W):
        num = numerical_grad(lambda: float(total().data), P.data, np.array(1.0))
        np.testing.assert_allclose(P.grad, num, atol=2e-8, rtol=1e-6)
        assert np.abs(num).max() > 1e-4


def test_fit_tinybert_on_a_language_model_pair():
    X, L = _rows(2, n=32)
    t = _lm()
    s = _lm(d_model=4, num_layers=1, rng=5)
    proj = br.TinyBertProjections(4, 8, rng=0)
    before = {k: v.copy() for k, v in t.state_dict().items()}
    h1, h2 = br.fit_tinybert(s, t, (X, L, np.zeros(32, int)), projections=proj,
                             epochs_intermediate=3, epochs_prediction=3, lr=1e-2,
                             batch_size=8, rng=0, progress=False)
    assert h1.train_loss[-1] < h1.train_loss[0] and h2.train_loss[-1] < h2.train_loss[0]
    assert all(np.array_equal(before[k], v) for k, v in t.state_dict().items())
    with pytest.raises(TypeError, match="must both be classifiers or both causal language models"):
        br.fit_with_teacher(TransformerClassifier(vocab_size=15, d_model=8, num_heads=2, d_ff=8,
                                                  num_layers=1, max_len=7, n_classes=2), t,
                            (X, L, np.zeros(32, int)), lambda *a: None)


def test_theseus_lm_forward_forms():
    """A TransformerLanguageModel predecessor: eval mode (all successors) equals the
    successor model; replace rate 0 in training equals the predecessor; logits are causal."""
    X, L = _rows(3)
    p = _lm(num_layers=2)
    th = br.TheseusClassifier(p, n_modules=1, replace_rate=0.0, rng=0)
    th.train()
    np.testing.assert_allclose(th(X, L).data, p(X, L).data, rtol=1e-13, atol=1e-13)
    assert not th.last_draw.any()
    th.successor[0].linear1.W.data += 0.1  # the successor differs from its initial copy
    th.eval()
    sm = th.successor_model()
    assert isinstance(sm, TransformerLanguageModel) and sm.num_layers == 1
    np.testing.assert_allclose(th(X, L).data, sm(X, L).data, rtol=1e-13, atol=1e-13)
    X2 = X.copy()
    X2[:, 4:] = 7  # later tokens change: logits at positions 0..3 do not
    np.testing.assert_array_equal(th(X2, L).data[:, :4], th(X, L).data[:, :4])
    assert sm.num_parameters() == p.num_parameters() - p.layers[1].num_parameters()


def test_theseus_scheduler_after_step_form_equals_callback_form():
    p = _lm(num_layers=2)
    a = br.TheseusScheduler(br.TheseusClassifier(p, 1, rng=0), k=0.25, b=0.1)
    b = br.TheseusScheduler(br.TheseusClassifier(p, 1, rng=0), k=0.25, b=0.1)
    a.on_train_begin(None)
    for step in range(1, 6):
        a.on_step_end(None, step)
        b(None)
    assert a.rates == b.rates == [0.35, 0.6, 0.85, 1.0, 1.0]
    assert b.model.replace_rate == 1.0


def test_theseus_lm_trains_successor_through_the_tape():
    X, L = _rows(4, n=16)
    p = _lm(num_layers=2)
    th = br.TheseusClassifier(p, n_modules=1, replace_rate=1.0, rng=0)
    th.train()
    logits = th(X, L)
    logits.backward(np.ones(logits.shape))
    assert all(q.grad is not None and np.abs(q.grad).max() > 0 for q in th.successor.parameters())
    # the predecessor is frozen: not a parameter of the Theseus module
    assert isinstance(th.successor, ModuleList) and len(th.parameters()) == \
        len(th.successor.parameters())
    assert isinstance(logits, Tensor) and logits.shape == (16, 7, 15)


def test_tinybert_causal_losses_match_torch(torch):
    """The LM form against torch: TinyBERT's released-code masking (−1e4 at masked keys, then
    0) with a GPT-style causal mask added, and the per-token prediction loss as torch's
    cross-entropy with probability targets over the real positions."""
    from refimpl.nn import AttentionOutputs, EncoderOutput
    from refimpl.nn import functional as F

    def fake(h0, h1, q, k):
        att = AttentionOutputs(probs=None, context=q, query=q, key=k, value=k)
        return EncoderOutput(h1, hidden_states=(h0, h1), attentions=(att,))

    rng = np.random.default_rng(4)
    B, n, H, dh, d, V, T = 2, 4, 2, 3, 5, 6, 2.0
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    shapes = ((B, n, d), (B, n, d), (B, H, n, dh), (B, H, n, dh))
    arrs = [rng.standard_normal(s) for s in shapes]
    arrt = [rng.standard_normal(s) for s in shapes]
    zs, zt = rng.standard_normal((2, B, n, V))
    W = rng.standard_normal((d, d))
    got = br.tinybert_losses_t(fake(*map(Tensor, arrs)), fake(*map(Tensor, arrt)), Tensor(zs),
                               zt, lambda h, which: F.linear(h, W), [1], valid, T=T,
                               causal=True)
    tt = [torch.tensor(a) for a in arrs + arrt]
    Wt = torch.tensor(W)
    mse = torch.nn.functional.mse_loss
    masked = ~(torch.tensor(valid)[:, None, None, :] & torch.tril(torch.ones(n, n, dtype=bool)))

    def scores(q, k):
        s = q @ k.transpose(-1, -2) / np.sqrt(dh) + masked * -1e4
        return torch.where(s <= -1e2, torch.zeros_like(s), s)

    vt = torch.tensor(valid)
    want = {"attention": mse(scores(tt[2], tt[3]), scores(tt[6], tt[7])),
            "embedding": mse(tt[0] @ Wt.T, tt[4]), "hidden": mse(tt[1] @ Wt.T, tt[5]),
            "prediction": torch.nn.functional.cross_entropy(
                torch.tensor(zs)[vt] / T, torch.softmax(torch.tensor(zt)[vt] / T, -1))}
    for key, w in want.items():
        assert got[key].item() == pytest.approx(float(w), rel=1e-12), key
