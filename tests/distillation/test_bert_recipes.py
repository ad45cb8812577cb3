"""§4.4 training recipes: TinyBERT's four losses, DistilBERT's triple loss, student
initialisation from teacher layers, PKD training, BERT-of-Theseus module replacement.
Gradient checks, hand values, properties, cross-checks against torch (mse_loss, KLDivLoss
batchmean × T², cross_entropy, cosine_embedding_loss)."""

import numpy as np
import pytest

from refimpl.distillation import (
    TheseusClassifier,
    TheseusScheduler,
    TinyBertProjections,
    distilbert_loss_t,
    fit_distilbert,
    fit_pkd,
    fit_tinybert,
    init_from_teacher_layers_,
    tinybert_layer_map,
    tinybert_losses_t,
)
from refimpl.nn import (
    AttentionOutputs,
    EncoderOutput,
    Tensor,
    TransformerClassifier,
    fit,
    gradcheck,
    no_grad,
)
from refimpl.nn import functional as F


def _tf(layers, d=8, heads=2, pooling="mean", seed=0, max_len=6):
    return TransformerClassifier(vocab_size=20, d_model=d, num_heads=heads, d_ff=16,
                                 num_layers=layers, max_len=max_len, n_classes=2,
                                 pooling=pooling, rng=seed)


def _data(n=48, T=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(1, 20, (n, T))
    L = rng.integers(2, T + 1, n)
    y = (X[:, 0] % 2).astype(np.int64)
    return X, L, y


def _valid(L, T):
    return np.arange(T)[None, :] < np.asarray(L)[:, None]


# ------------------------------------------------------------------------------ TinyBERT
def test_tinybert_layer_map_hand_values():
    assert tinybert_layer_map(12, 4) == [3, 6, 9, 12]
    assert tinybert_layer_map(6, 6) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="divide"):
        tinybert_layer_map(10, 4)


def test_tinybert_losses_zero_for_a_copy_and_positive_otherwise():
    X, L, _ = _data(6)
    teacher = _tf(2)
    proj = TinyBertProjections(8, 8, rng=0)
    for lin in (proj.W_e, proj.W_h):
        lin.W.data[:] = np.eye(8)
        lin.b.data[:] = 0.0
    with no_grad():
        zt, ot = teacher(X, L, output_hidden_states=True, output_attentions=True)
        zs, os_ = teacher(X, L, output_hidden_states=True, output_attentions=True)
    losses = tinybert_losses_t(os_, ot, zs, zt.data, proj, [1, 2], _valid(L, 6))
    assert losses["embedding"].item() == 0.0 and losses["hidden"].item() == 0.0
    assert losses["attention"].item() == 0.0
    # the prediction loss at a copy is the teacher's entropy, H(p) = −Σ p log p / B
    p = np.exp(zt.data - zt.data.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert losses["prediction"].item() == pytest.approx(-(p * np.log(p)).sum() / 6, rel=1e-12)
    student = _tf(1, seed=3)
    with no_grad():
        zs, os_ = student(X, L, output_hidden_states=True, output_attentions=True)
    losses = tinybert_losses_t(os_, ot, zs, zt.data, proj, [2], _valid(L, 6))
    assert all(v.item() > 0 for v in losses.values())


def _fake_out(h0, h1, q, k):
    att = AttentionOutputs(probs=None, context=q, query=q, key=k, value=k)
    return EncoderOutput(h1, hidden_states=(h0, h1), attentions=(att,))


def test_tinybert_losses_gradcheck():
    rng = np.random.default_rng(1)
    B, n, H, dh, ds, dt = 2, 3, 2, 2, 3, 4
    valid = np.array([[True, True, False], [True, True, True]])
    teacher = _fake_out(*(Tensor(rng.standard_normal(s)) for s in
                          ((B, n, dt), (B, n, dt), (B, H, n, dh), (B, H, n, dh))))
    zt = rng.standard_normal((B, 3))
    We, Wh = rng.standard_normal((2, dt, ds))

    def loss(h0, h1, q, k, z, We_, Wh_):
        def proj(h, which):
            return F.linear(h, We_ if which == "embedding" else Wh_)
        L = tinybert_losses_t(_fake_out(h0, h1, q, k), teacher, z, zt, proj, [1], valid, T=2.0)
        return L["embedding"] + L["hidden"] * 0.7 + L["attention"] * 1.3 + L["prediction"]

    args = [rng.standard_normal(s) for s in ((B, n, ds), (B, n, ds), (B, H, n, dh),
                                             (B, H, n, dh), (B, 3))] + [We, Wh]
    assert gradcheck(loss, args)["max_abs_err"] < 1e-7


def test_tinybert_losses_match_torch(torch):
    rng = np.random.default_rng(2)
    B, n, H, dh, d = 2, 4, 2, 3, 5
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    arrs = [rng.standard_normal(s) for s in ((B, n, d), (B, n, d), (B, H, n, dh), (B, H, n, dh))]
    arrt = [rng.standard_normal(s) for s in ((B, n, d), (B, n, d), (B, H, n, dh), (B, H, n, dh))]
    zs, zt = rng.standard_normal((2, B, 3))
    W = rng.standard_normal((d, d))

    def proj(h, which):
        return F.linear(h, W)

    got = tinybert_losses_t(_fake_out(*map(Tensor, arrs)), _fake_out(*map(Tensor, arrt)),
                            Tensor(zs), zt, proj, [1], valid)
    tt = [torch.tensor(a) for a in arrs + arrt]
    Wt = torch.tensor(W)
    mse = torch.nn.functional.mse_loss
    keep = torch.tensor(valid)[:, None, None, :]

    def scores(q, k):  # TinyBERT's code: raw scores, masked keys at -1e4 replaced by 0
        s = q @ k.transpose(-1, -2) / np.sqrt(dh) + (~keep) * -1e4
        return torch.where(s <= -1e2, torch.zeros_like(s), s)

    want_attn = mse(scores(tt[2], tt[3]), scores(tt[6], tt[7]))
    want_emb = mse(tt[0] @ Wt.T, tt[4])
    want_hid = mse(tt[1] @ Wt.T, tt[5])
    pt = torch.softmax(torch.tensor(zt), -1)
    want_pred = (-pt * torch.log_softmax(torch.tensor(zs), -1)).sum(-1).mean()
    for key, want in (("attention", want_attn), ("embedding", want_emb), ("hidden", want_hid),
                      ("prediction", want_pred)):
        assert got[key].item() == pytest.approx(float(want), rel=1e-12), key


def test_fit_tinybert_reduces_intermediate_loss_teacher_untouched():
    X, L, y = _data()
    teacher = _tf(4, d=8, seed=0)
    fit(teacher, (X, L, y), epochs=2, lr=1e-2, rng=0, progress=False)
    before = {k: v.data.copy() for k, v in teacher.named_parameters()}
    student = _tf(2, d=4, seed=5)
    h1, h2 = fit_tinybert(student, teacher, (X, L, y), epochs_intermediate=3,
                          epochs_prediction=1, lr=1e-2, rng=0, progress=False)
    assert h1.train_loss[-1] < h1.train_loss[0]
    assert len(h2.train_loss) == 1
    for k, v in teacher.named_parameters():
        np.testing.assert_array_equal(v.data, before[k])


# ------------------------------------------------------------------------------ DistilBERT
def test_distilbert_loss_matches_torch(torch):
    rng = np.random.default_rng(3)
    B, n, d, C, T = 3, 4, 5, 3, 2.0
    zs, zt = rng.standard_normal((2, B, C))
    y = np.array([0, 2, 1])
    hs, ht = rng.standard_normal((2, B, n, d))
    valid = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    got = distilbert_loss_t(Tensor(zs), zt, y, Tensor(hs), ht, valid, T=T).item()
    Fn = torch.nn.functional
    tzs, tzt = torch.tensor(zs), torch.tensor(zt)
    soft = torch.nn.KLDivLoss(reduction="batchmean")(Fn.log_softmax(tzs / T, -1),
                                                     Fn.softmax(tzt / T, -1)) * T * T
    hard = Fn.cross_entropy(tzs, torch.tensor(y))
    m = torch.tensor(valid)
    cos = Fn.cosine_embedding_loss(torch.tensor(hs)[m], torch.tensor(ht)[m],
                                   torch.ones(int(valid.sum()), dtype=torch.float64))
    want = 5.0 * soft + 2.0 * hard + 1.0 * cos
    assert got == pytest.approx(float(want), rel=1e-12)


def test_distilbert_loss_gradcheck_and_edges():
    rng = np.random.default_rng(4)
    zt, ht = rng.standard_normal((3, 2)), rng.standard_normal((3, 4, 2))
    y = np.array([0, 1, 1])
    valid = np.ones((3, 4), bool)
    r = gradcheck(lambda z, h: distilbert_loss_t(z, zt, y, h, ht, valid),
                  [rng.standard_normal((3, 2)), rng.standard_normal((3, 4, 2))])
    assert r["max_abs_err"] < 1e-7
    # a scaled copy of the teacher's states costs nothing in the cosine term
    only_cos = distilbert_loss_t(Tensor(zt), zt, y, Tensor(3 * ht), ht, valid, alpha_ce=0.0,
                                 alpha_task=0.0)
    assert only_cos.item() == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="valid"):
        distilbert_loss_t(Tensor(zt), zt, y, Tensor(ht), ht, np.zeros((3, 4), bool))
    with pytest.raises(ValueError, match="teacher_hidden"):
        distilbert_loss_t(Tensor(zt), zt, y, Tensor(ht), ht[:, :2], valid)


def test_init_from_teacher_layers_every_other_and_fit_distilbert():
    X, L, y = _data()
    teacher = _tf(4, seed=0)
    student = _tf(2, seed=9)
    init_from_teacher_layers_(student, teacher, [0, 2])
    for j, i in enumerate([0, 2]):
        for (_, a), (_, b) in zip(student.layers[j].named_parameters(),
                                  teacher.layers[i].named_parameters()):
            np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(student.fc.W.data, teacher.fc.W.data)
    # all layers copied in order: the same function
    full = _tf(4, seed=7)
    init_from_teacher_layers_(full, teacher, [0, 1, 2, 3])
    with no_grad():
        np.testing.assert_array_equal(full(X, L).data, teacher(X, L).data)
    hist = fit_distilbert(student, teacher, (X, L, y), epochs=2, lr=1e-2, rng=0, progress=False)
    assert np.isfinite(hist.train_loss).all() and hist.train_loss[-1] < hist.train_loss[0]
    with pytest.raises(ValueError, match="layers"):
        init_from_teacher_layers_(student, teacher, [0, 5])
    with pytest.raises(ValueError, match="counterpart"):
        init_from_teacher_layers_(_tf(2, d=4), teacher, [0, 1])


# ------------------------------------------------------------------------------ PKD
def test_fit_pkd_runs_both_strategies():
    X, L, y = _data()
    teacher = _tf(4, pooling="cls", seed=0)
    for strategy in ("skip", "last"):
        student = _tf(2, pooling="cls", seed=1)
        init_from_teacher_layers_(student, teacher, [0, 1])
        hist = fit_pkd(student, teacher, (X, L, y), strategy=strategy, epochs=2, lr=1e-2,
                       beta=10.0, rng=0, progress=False)
        assert hist.train_loss[-1] < hist.train_loss[0]
    with pytest.raises(ValueError, match="pooling"):
        fit_pkd(_tf(2), _tf(4), (X, L, y))


# ------------------------------------------------------------------------------ Theseus
def test_theseus_rate_extremes_and_eval_is_the_successor():
    X, L, y = _data(8)
    pred = _tf(4, seed=0)
    th = TheseusClassifier(pred, n_modules=2, replace_rate=0.0, rng=0)
    th.train()
    with no_grad():
        np.testing.assert_allclose(th(X, L).data, pred(X, L).data, rtol=0, atol=1e-12)
    assert not th.last_draw.any()
    th.replace_rate = 1.0
    with no_grad():
        out1 = th(X, L).data
    assert th.last_draw.all()
    th.eval()
    with no_grad():
        np.testing.assert_array_equal(th(X, L).data, out1)
        np.testing.assert_array_equal(th.successor_model()(X, L).data, out1)
    # successor initialised from the predecessor's first S layers
    for (_, a), (_, b) in zip(th.successor[1].named_parameters(),
                              pred.layers[1].named_parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    # only the successor is trainable
    assert th.num_parameters() == sum(lay.num_parameters() for lay in th.successor)


def test_theseus_training_with_scheduler_keeps_predecessor():
    X, L, y = _data()
    pred = _tf(4, seed=0)
    before = {k: v.data.copy() for k, v in pred.named_parameters()}
    th = TheseusClassifier(pred, n_modules=2, rng=0)
    sched = TheseusScheduler(th, k=0.2, b=0.3)
    s0 = th.successor[0].linear1.W.data.copy()
    fit(th, (X, L, y), epochs=2, lr=1e-2, batch_size=16, rng=0, progress=False,
        callbacks=[sched])
    assert sched.rates == [pytest.approx(min(1.0, 0.2 * t + 0.3)) for t in range(1, 7)]
    assert not np.array_equal(th.successor[0].linear1.W.data, s0)
    for k, v in pred.named_parameters():
        np.testing.assert_array_equal(v.data, before[k])
    with pytest.raises(ValueError, match="n_modules"):
        TheseusClassifier(pred, n_modules=3)


# ------------------------------------------------------------------------------ multi-task
def test_multitask_distillation_hand_value_gradcheck_and_torch(torch):
    from refimpl.distillation import multitask_distillation_loss_t

    z = [np.zeros((2, 2)), np.array([[1.0, 0.0]])]
    y = [np.array([0, 1]), np.array([0])]
    p = [np.array([[0.5, 0.5], [0.9, 0.1]]), None]
    # task 0: ½(log 2 + log 2); task 1 (no teacher): CE = log(1 + e^-1)
    want = np.log(2) + np.log1p(np.exp(-1.0))
    assert multitask_distillation_loss_t(z, y, p).item() == pytest.approx(want, rel=1e-14)
    rng = np.random.default_rng(5)
    z0, z1 = rng.standard_normal((3, 4)), rng.standard_normal((2, 3))
    y0, y1 = np.array([0, 3, 1]), np.array([2, 0])
    p0 = rng.dirichlet(np.ones(4), 3)
    p1 = rng.dirichlet(np.ones(3), 2)
    r = gradcheck(lambda a, b: multitask_distillation_loss_t([a, b], [y0, y1], [p0, p1]),
                  [z0, z1])
    assert r["max_abs_err"] < 1e-8
    Fn = torch.nn.functional
    ref = sum(0.5 * (Fn.cross_entropy(torch.tensor(zz), torch.tensor(yy))
                     + Fn.cross_entropy(torch.tensor(zz), torch.tensor(pp)))
              for zz, yy, pp in ((z0, y0, p0), (z1, y1, p1)))
    assert multitask_distillation_loss_t([z0, z1], [y0, y1], [p0, p1]).item() == pytest.approx(
        float(ref), rel=1e-12)
    with pytest.raises(ValueError, match="task_labels"):
        multitask_distillation_loss_t([z0, z1], [y0], [p0, p1])
    with pytest.raises(ValueError, match="task_teacher_probs"):
        multitask_distillation_loss_t([z0], [y0], [p1])


# ------------------------------------------------------------------------------ BERT-EMD
def test_bert_emd_update_weights_hand_value():
    from refimpl.distillation import bert_emd_update_weights

    flow = np.array([[0.5, 0.0], [0.0, 0.5]])
    cost = np.array([[1.0, 9.0], [9.0, 3.0]])
    wt, ws = bert_emd_update_weights(flow, cost, np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    # transported per layer (0.5, 1.5) / 0.5 = (1, 3); Σ/c = (4, 4/3) -> (0.75, 0.25)
    np.testing.assert_allclose(wt, [0.75, 0.25], rtol=1e-15)
    np.testing.assert_allclose(ws, [0.75, 0.25], rtol=1e-15)
    with pytest.raises(ValueError, match="cost"):
        bert_emd_update_weights(flow, cost[:1], np.array([0.5, 0.5]), np.array([0.5, 0.5]))


def test_bert_emd_losses_value_zero_and_gradcheck():
    from refimpl.distillation import bert_emd_losses_t

    rng = np.random.default_rng(7)
    B, n, H, dh, d = 2, 3, 2, 2, 4
    valid = np.array([[True, True, False], [True, True, True]])

    def out(seed_arrs):
        h = [Tensor(a) for a in seed_arrs[:3]]
        atts = [AttentionOutputs(None, Tensor(q), Tensor(q), Tensor(k), Tensor(k))
                for q, k in (seed_arrs[3:5], seed_arrs[5:7])]
        return EncoderOutput(h[-1], hidden_states=tuple(h), attentions=tuple(atts))

    shapes = [(B, n, d)] * 3 + [(B, H, n, dh)] * 4
    t_arrs = [rng.standard_normal(s) for s in shapes]
    teacher = out(t_arrs)

    def ident(h, which):
        return h

    w = {"hidden": (np.array([0.5, 0.5]), np.array([0.5, 0.5])),
         "attention": (np.array([0.5, 0.5]), np.array([0.5, 0.5]))}
    same = bert_emd_losses_t(teacher, teacher, ident, w, valid)
    assert same["hidden"].item() == 0.0 and same["attention"].item() == 0.0
    np.testing.assert_allclose(same["flow_hidden"], np.eye(2) / 2, atol=1e-12)
    # a one-layer student: the plan is fixed by the marginals (f_i1 = w_t_i), so the loss is
    # Σ_i w_t_i D_i1 and differentiable in the student's states
    wt = np.array([0.3, 0.7])
    w1 = {"hidden": (wt, np.ones(1)), "attention": (wt, np.ones(1))}
    s_arrs = [rng.standard_normal(s) for s in ((B, n, d), (B, n, d), (B, H, n, dh),
                                               (B, H, n, dh))]

    def student(h0, h1, q, k):
        return EncoderOutput(h1, hidden_states=(h0, h1),
                             attentions=(AttentionOutputs(None, q, q, k, k),))

    got = bert_emd_losses_t(student(*map(Tensor, s_arrs)), teacher, ident, w1, valid)
    want_h = sum(wt[i] * np.mean((s_arrs[1] - t_arrs[i + 1]) ** 2) for i in range(2))
    assert got["hidden"].item() == pytest.approx(want_h, rel=1e-12)

    def loss(h0, h1, q, k):
        L = bert_emd_losses_t(student(h0, h1, q, k), teacher, ident, w1, valid)
        return L["hidden"] + L["attention"]

    assert gradcheck(loss, s_arrs)["max_abs_err"] < 1e-8


def test_fit_bert_emd_runs_and_keeps_weights_normalised():
    from refimpl.distillation import fit_bert_emd

    X, L, y = _data(32)
    teacher = _tf(4, d=8, seed=0)
    before = {k: v.data.copy() for k, v in teacher.named_parameters()}
    student = _tf(2, d=4, seed=5)
    h1, h2, w = fit_bert_emd(student, teacher, (X, L, y), epochs_intermediate=2,
                             epochs_prediction=1, lr=1e-2, rng=0, progress=False)
    assert h1.train_loss[-1] < h1.train_loss[0] and len(h2.train_loss) == 1
    for k in ("hidden", "attention"):
        wt, ws = w[k]
        assert wt.shape == (4,) and ws.shape == (2,)
        assert abs(wt.sum() - 1) < 1e-12 and abs(ws.sum() - 1) < 1e-12
    for k, v in teacher.named_parameters():
        np.testing.assert_array_equal(v.data, before[k])


# ------------------------------------------------------------------------------ SqueezeBERT
def test_squeezebert_student_counts_and_trains():
    from refimpl.distillation import fit_with_teacher, kd_loss_t, squeezebert_student_
    from refimpl.nn.grouped import GroupedLinear

    X, L, y = _data(32)
    s = _tf(2, d=8, seed=3)
    n0 = s.num_parameters()
    removed = squeezebert_student_(s, groups=4, rng=0)
    d, d_ff, g = 8, 16, 4
    assert removed == 2 * (1 - 1 / g) * (3 * d * d + 2 * d * d_ff) == n0 - s.num_parameters()
    lay = s.layers[0]
    assert all(isinstance(m, GroupedLinear) for m in (lay.self_attn.W_q, lay.self_attn.W_k,
                                                      lay.self_attn.W_v, lay.linear1,
                                                      lay.linear2))
    assert not isinstance(lay.self_attn.W_o, GroupedLinear)
    teacher = _tf(2, d=8, seed=0)
    hist = fit_with_teacher(s, teacher, (X, L, y),
                            lambda sz, so, tz, to, v, yy: kd_loss_t(sz, tz, 2.0, yy, 0.5),
                            need_intermediates=False, epochs=2, lr=1e-2, rng=0, progress=False)
    assert hist.train_loss[-1] < hist.train_loss[0]
    with pytest.raises(ValueError, match="groups"):
        squeezebert_student_(_tf(1, d=8), groups=3)


# ------------------------------------------------------------------------------ MobileBERT
def test_mobilebert_transfer_values_and_gradcheck():
    from refimpl.distillation import attention_kl, mobilebert_transfer_losses_t

    rng = np.random.default_rng(8)
    B, n, H, dh, d = 2, 4, 2, 2, 4
    valid = np.array([[True, True, True, False], [True, True, True, True]])
    qt, kt = rng.standard_normal((2, B, H, n, dh))
    st_ = qt @ np.swapaxes(kt, -1, -2) / np.sqrt(dh)
    st_ = np.where(valid[:, None, None, :], st_, -np.inf)
    At = np.exp(st_ - st_.max(-1, keepdims=True))
    At /= At.sum(-1, keepdims=True)
    ht = rng.standard_normal((B, n, d))
    teacher = EncoderOutput(Tensor(ht), hidden_states=(Tensor(ht), Tensor(ht)),
                            attentions=(AttentionOutputs(Tensor(At), Tensor(qt), Tensor(qt),
                                                         Tensor(kt), Tensor(kt)),))

    def student(h, q, k):
        return EncoderOutput(h, hidden_states=(h, h),
                             attentions=(AttentionOutputs(None, q, q, k, k),))

    hs, qs, ks = rng.standard_normal((B, n, d)), *rng.standard_normal((2, B, H, n, dh))
    got = mobilebert_transfer_losses_t(student(*map(Tensor, (hs, qs, ks))), teacher, 1, valid)
    want_fmt = ((hs - ht) ** 2)[valid].mean()
    ss = qs @ np.swapaxes(ks, -1, -2) / np.sqrt(dh)
    ss = np.where(valid[:, None, None, :], ss, -np.inf)
    As = np.exp(ss - ss.max(-1, keepdims=True))
    As /= As.sum(-1, keepdims=True)
    rows = [attention_kl(At[b:b + 1, h:h + 1, i:i + 1], As[b:b + 1, h:h + 1, i:i + 1])
            for b in range(B) for h in range(H) for i in range(n) if valid[b, i]]
    assert got["feature_map"].item() == pytest.approx(want_fmt, rel=1e-12)
    assert got["attention"].item() == pytest.approx(np.mean(rows), rel=1e-10)

    def loss(h, q, k):
        d_ = mobilebert_transfer_losses_t(student(h, q, k), teacher, 1, valid)
        return d_["feature_map"] + d_["attention"]

    assert gradcheck(loss, [hs, qs, ks])["max_abs_err"] < 1e-8


def test_fit_mobilebert_progressive_freezes_lower_layers():
    from refimpl.distillation import fit_mobilebert_progressive

    X, L, y = _data(32)
    teacher = _tf(2, d=8, seed=0)
    student = TransformerClassifier(vocab_size=20, d_model=8, num_heads=2, d_ff=8,
                                    num_layers=2, max_len=6, n_classes=2, rng=4)
    before = {k: v.data.copy() for k, v in student.named_parameters()}
    hist = fit_mobilebert_progressive(student, teacher, (X, L, y), epochs_per_layer=1,
                                      epochs_final=0, lr=1e-2, rng=0, progress=False)
    assert len(hist) == 3
    changed = {k for k, v in student.named_parameters() if not np.array_equal(v.data, before[k])}
    # the stages train the layers and the token embeddings only: the position table receives
    # gradients in every stage but is in no stage, so it stays frozen; the classifier too
    assert any(k.startswith("layers.0") for k in changed)
    assert any(k.startswith("layers.1") for k in changed)
    assert "embedding.W" in changed
    assert "pos" not in changed and not any(k.startswith("fc") for k in changed)
    with pytest.raises(ValueError, match="depth"):
        fit_mobilebert_progressive(_tf(1, d=8), teacher, (X, L, y))


def test_mobilebert_bottleneck_student_and_progressive_transfer():
    from refimpl.distillation import fit_mobilebert_progressive, mobilebert_student_
    from refimpl.nn.bottleneck import BottleneckEncoderLayer

    X, L, y = _data(32)
    teacher = _tf(2, d=8, seed=0)
    student = _tf(2, d=8, seed=6)
    n0 = student.num_parameters()
    removed = mobilebert_student_(student, d_inner=4, rng=0)
    assert all(isinstance(lay, BottleneckEncoderLayer) for lay in student.layers)
    assert removed == n0 - student.num_parameters() > 0
    hist = fit_mobilebert_progressive(student, teacher, (X, L, y), epochs_per_layer=2,
                                      epochs_final=1, lr=1e-2, rng=0, progress=False)
    assert len(hist) == 3 and hist[0].train_loss[-1] < hist[0].train_loss[0]
    assert student(X, L).shape == (32, 2)
    with pytest.raises(ValueError, match="d_inner"):
        mobilebert_student_(_tf(1, d=8), d_inner=3)
