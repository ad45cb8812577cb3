"""Mixed-vocabulary training (Survey §4.4; Zhao et al.): the mixed segmentation worked by hand,
the joint embedding table, stage I's per-vocabulary MLM loss (loop, gradient check, torch twin),
stage II's objective (parts, gradient check, edge weights), BERT masking, both training stages
in miniature (loss falls, embeddings copied, bit-identical reruns), and bad input."""

import numpy as np
import pytest

from refimpl.distillation import (
    MixedVocabEmbedding,
    fit_mixed_vocab_student,
    fit_mixed_vocab_teacher,
    kd_loss,
    mixed_segmentation,
    mixed_vocab_distillation_loss_t,
    mixed_vocab_mlm_loss_t,
    mixed_vocab_student,
    mixed_vocab_teacher,
    mlm_accuracy,
)
from refimpl.distillation.mixed_vocab import _corrupt
from refimpl.nn import Linear, gradcheck
from refimpl.nn.heads import IGNORE_INDEX, MaskedLMHead
from refimpl.pretrained.evaluate import real_text
from refimpl.pretrained.tokenizer import WordPieceTokenizer
from refimpl.pretrained.wordpiece import learn_wordpiece

SP = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _toks():
    teacher = SP + ["the", "cat", "sat", "##s"]                       # V_t = 9
    student = SP + ["c", "s", "t", "##a", "##e", "##h", "##s", "##t"]  # V_s = 13
    return (WordPieceTokenizer({t: i for i, t in enumerate(teacher)}),
            WordPieceTokenizer({t: i for i, t in enumerate(student)}))


def test_segmentation_by_hand():
    tt, ts = _toks()
    text = ["The cats sat"]
    ids, src = mixed_segmentation(text, tt, ts, p=0.0, rng=0)
    assert ids.tolist() == [[2, 5, 6, 8, 7, 3]] and not src.any()
    ids, src = mixed_segmentation(text, tt, ts, p=1.0, rng=0)
    # t ##h ##e | c ##a ##t ##s | s ##a ##t, each + V_t = 9; [CLS]/[SEP] the teacher's
    assert ids.tolist() == [[2, 16, 19, 18, 14, 17, 21, 20, 15, 17, 21, 3]]
    assert src.tolist() == [[False] + [True] * 10 + [False]]
    u = np.random.default_rng(0).random(3)  # 0.637, 0.270, 0.041
    assert u[0] >= 0.5 > u[1] and u[2] < 0.5
    ids, src = mixed_segmentation(text, tt, ts, p=0.5, rng=0)
    assert ids.tolist() == [[2, 5, 14, 17, 21, 20, 15, 17, 21, 3]]
    assert src.tolist() == [[False, False] + [True] * 7 + [False]]


def test_segmentation_properties():
    tt, ts = _toks()
    texts = ["the cat sat", "cats", "the the the cat sat sat"]
    a, sa = mixed_segmentation(texts, tt, ts, p=0.4, rng=7)
    b, sb = mixed_segmentation(texts, tt, ts, p=0.4, rng=7)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    # p = 0 is the teacher tokenizer; student ids all lie at or above V_t
    t0, _ = mixed_segmentation(texts, tt, ts, p=0.0, rng=0)
    np.testing.assert_array_equal(t0, tt.batch_encode(texts)[0])
    assert (a[sa] >= tt.vocab_size).all() and (a[~sa] < tt.vocab_size).all()
    # truncation keeps [SEP] last
    c, _ = mixed_segmentation(texts, tt, ts, p=1.0, max_length=4, rng=0)
    assert c.shape == (3, 4) and (c[:, -1] == 3).all()


def test_mixed_embedding_lookup_and_joint_table():
    emb = MixedVocabEmbedding(7, 5, 6, 3, rng=0)
    ids = np.array([[0, 3, 7, 11], [8, 1, 6, 0]])
    Et, Es, U = emb.teacher.W.data, emb.student.W.data, emb.projection.W.data
    want = np.array([[Et[i] if i < 7 else U @ Es[i - 7] for i in r] for r in ids])
    np.testing.assert_allclose(emb(ids).data, want, atol=1e-15)
    J = emb.joint_table().data
    np.testing.assert_allclose(J, np.vstack([Et, Es @ U.T]), atol=1e-15)
    np.testing.assert_array_equal(J[0], 0.0)  # [PAD] of the teacher
    np.testing.assert_array_equal(J[7], 0.0)  # [PAD] of the student, projected
    g = gradcheck(lambda u: _lookup_with(emb, u, ids), [U.copy()])
    assert g["max_abs_err"] < 1e-8


def _lookup_with(emb, U, ids):
    e = MixedVocabEmbedding(7, 5, 6, 3, rng=0)
    e.teacher.W.data[...] = emb.teacher.W.data
    e.student.W.data[...] = emb.student.W.data
    e.projection.W = U
    return e(ids)


def _stage1_case(seed=0):
    rng = np.random.default_rng(seed)
    Vt, Vs, D = 7, 5, 6
    head = MaskedLMHead(D, Vt + Vs, rng=1)
    head.bias.data[:] = rng.standard_normal(Vt + Vs)
    h = rng.standard_normal((8, D))
    E = rng.standard_normal((Vt + Vs, D))
    y = np.array([0, 6, 7, 11, 3, 9, 2, 8])
    return head, h, E, y, Vt


def test_stage1_loss_loop_and_gradcheck():
    head, h, E, y, Vt = _stage1_case()
    t = head.transform(h).data
    want = 0.0
    for i in range(len(y)):
        lo, hi = (0, Vt) if y[i] < Vt else (Vt, len(E))
        z = t[i] @ E[lo:hi].T + head.bias.data[lo:hi]
        want += np.log(np.exp(z - z.max()).sum()) + z.max() - z[y[i] - lo]
    assert abs(mixed_vocab_mlm_loss_t(h, head, E, y, Vt).item() - want / len(y)) < 1e-12
    g = gradcheck(lambda a, b: mixed_vocab_mlm_loss_t(a, head, b, y, Vt), [h, E])
    assert g["max_abs_err"] < 1e-7


def test_stage1_loss_matches_torch(torch):
    head, h, E, y, Vt = _stage1_case(3)
    th, tE = torch.tensor(h, requires_grad=True), torch.tensor(E, requires_grad=True)
    W, c = torch.tensor(head.dense.W.data), torch.tensor(head.dense.b.data)
    t = torch.nn.functional.layer_norm(torch.nn.functional.gelu(th @ W.T + c), (6,),
                                       eps=1e-12)
    b = torch.tensor(head.bias.data)
    yt = torch.tensor(y)
    tmask = yt < Vt
    ce = torch.nn.functional.cross_entropy
    ref = (ce(t[tmask] @ tE[:Vt].T + b[:Vt], yt[tmask], reduction="sum")
           + ce(t[~tmask] @ tE[Vt:].T + b[Vt:], yt[~tmask] - Vt, reduction="sum")) / len(y)
    ref.backward()
    from refimpl.nn import Tensor

    a, e = Tensor(h, requires_grad=True), Tensor(E, requires_grad=True)
    loss = mixed_vocab_mlm_loss_t(a, head, e, y, Vt)
    loss.backward()
    assert abs(loss.item() - ref.item()) < 1e-12
    assert np.abs(a.grad - th.grad.numpy()).max() < 1e-12
    assert np.abs(e.grad - tE.grad.numpy()).max() < 1e-12


def _stage2_case():
    rng = np.random.default_rng(5)
    zs, zt = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    lab = np.array([1, 0, 5, 2])
    hs = [rng.standard_normal((2, 3, 4)) for _ in range(2)]
    ht = [rng.standard_normal((2, 3, 5)) for _ in range(2)]
    valid = np.array([[True, True, False], [True, True, True]])
    return zs, zt, lab, hs, ht, valid, Linear(4, 5, bias=False, rng=2)


def test_stage2_loss_parts_edges_and_gradcheck():
    zs, zt, lab, hs, ht, valid, proj = _stage2_case()
    P = proj.W.data
    layer = np.mean([(((x @ P.T - z) ** 2).sum(-1) * valid).sum() / (valid.sum() * 5)
                     for x, z in zip(hs, ht)])
    got = mixed_vocab_distillation_loss_t(zs, zt, lab, hs, ht, proj, valid, alpha=0.3,
                                          beta=0.7, T=2.0).item()
    assert abs(got - (kd_loss(zs, zt, T=2.0, labels=lab, alpha=0.3) + 0.7 * layer)) < 1e-12
    # beta = 0: Hinton's loss alone; alpha = 0, beta = 0: plain cross-entropy
    only_kd = mixed_vocab_distillation_loss_t(zs, zt, lab, hs, ht, proj, valid, alpha=0.3,
                                              beta=0.0, T=2.0).item()
    assert abs(only_kd - kd_loss(zs, zt, T=2.0, labels=lab, alpha=0.3)) < 1e-12
    ce = mixed_vocab_distillation_loss_t(zs, zt, lab, hs, ht, proj, valid, alpha=0.0,
                                         beta=0.0).item()
    m = zs.max(1, keepdims=True)
    want = np.mean(np.log(np.exp(zs - m).sum(1)) + m[:, 0] - zs[np.arange(4), lab])
    assert abs(ce - want) < 1e-12

    def f(s, x0, x1, w):
        p = Linear(4, 5, bias=False, rng=2)
        p.W = w
        return mixed_vocab_distillation_loss_t(s, zt, lab, [x0, x1], ht, p, valid, alpha=0.3,
                                               beta=0.7, T=2.0)

    assert gradcheck(f, [zs, hs[0], hs[1], P.copy()])["max_abs_err"] < 1e-7


def test_bert_masking():
    rng = np.random.default_rng(0)
    ids = np.array([[2, 5, 6, 7, 8, 3, 0], [2, 9, 5, 3, 0, 0, 0]])
    cand = (ids > 4)
    out, lab = _corrupt(ids, cand, 5, 10, 4, rng, 1.0)  # every candidate chosen
    np.testing.assert_array_equal(lab, np.where(cand, ids, IGNORE_INDEX))
    np.testing.assert_array_equal(out[~cand], ids[~cand])  # specials and padding untouched
    assert set(out[cand].tolist()) <= {4} | set(range(5, 10))
    # a row with candidates always gets one prediction, even at a tiny rate
    _, lab = _corrupt(ids, cand, 5, 10, 4, np.random.default_rng(1), 1e-9)
    assert ((lab != IGNORE_INDEX).sum(1) == 1).all()
    big = np.full((200, 50), 7)
    out, lab = _corrupt(big, np.ones_like(big, bool), 5, 10, 4, np.random.default_rng(2), 0.15)
    chosen = lab != IGNORE_INDEX
    assert 0.13 < chosen.mean() < 0.17  # 10 000 draws: 15 % ± 5 standard deviations
    assert 0.76 < (out[chosen] == 4).mean() < 0.84


@pytest.fixture(scope="module")
def tiny():
    texts = real_text(40, "train")
    tt = WordPieceTokenizer(learn_wordpiece(texts, 200))
    ts = WordPieceTokenizer(learn_wordpiece(texts, 120))
    return texts, tt, ts


def _teacher(tt, ts, seed=0):
    return mixed_vocab_teacher(n_teacher=tt.vocab_size, n_student=ts.vocab_size, d_model=16,
                               d_student=8, num_heads=2, d_ff=32, num_layers=2,
                               max_position=24, rng=seed)


def test_two_stages_in_miniature(tiny):
    texts, tt, ts = tiny
    keep = list(texts)
    teacher = _teacher(tt, ts)
    h = fit_mixed_vocab_teacher(teacher, texts, tt, ts, p=0.3, max_length=24, epochs=3,
                                lr=3e-3, batch_size=16, rng=0, progress=False)
    assert h.train_loss[-1] < h.train_loss[0]
    st = mixed_vocab_student(teacher, num_heads=2, d_ff=16, num_layers=1, rng=1)
    np.testing.assert_array_equal(st.embeddings.word.W.data,
                                  teacher.embeddings.word.student.W.data)
    rnd = mixed_vocab_student(teacher, num_heads=2, d_ff=16, num_layers=1, init="random", rng=1)
    assert not np.array_equal(rnd.embeddings.word.W.data, st.embeddings.word.W.data)
    frozen = {k: v.copy() for k, v in teacher.state_dict().items()}
    proj, h2 = fit_mixed_vocab_student(st, teacher, texts, tt, ts, max_length=24, epochs=2,
                                       lr=3e-3, batch_size=16, rng=2, progress=False)
    assert h2.train_loss[-1] < h2.train_loss[0]
    assert proj.in_features == 8 and proj.out_features == 16
    for k, v in teacher.state_dict().items():  # the teacher is not trained in stage II
        np.testing.assert_array_equal(v, frozen[k])
    assert texts == keep
    r = mlm_accuracy(st, texts[:10], ts, max_length=24, rng=0)
    assert 0.0 <= r["accuracy"] <= 1.0 and 1.0 < r["perplexity"] < ts.vocab_size
    assert r == mlm_accuracy(st, texts[:10], ts, max_length=24, rng=0)


def test_same_seed_same_weights(tiny):
    texts, tt, ts = tiny
    runs = []
    for _ in range(2):
        t = _teacher(tt, ts, seed=3)
        fit_mixed_vocab_teacher(t, texts[:16], tt, ts, max_length=24, epochs=1, batch_size=8,
                                rng=4, progress=False)
        runs.append(t.state_dict())
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k])


def test_bad_input(tiny):
    texts, tt, ts = tiny
    with pytest.raises(ValueError, match="p"):
        mixed_segmentation(texts, tt, ts, p=1.5)
    with pytest.raises(ValueError, match="max_length"):
        mixed_segmentation(texts, tt, ts, max_length=2)
    with pytest.raises(TypeError, match="student_tokenizer"):
        mixed_segmentation(texts, tt, {"a": 0})
    with pytest.raises(ValueError, match="texts"):
        mixed_segmentation([], tt, ts)
    with pytest.raises(TypeError, match="texts"):
        mixed_segmentation("one text", tt, ts)
    teacher = _teacher(tt, ts)
    with pytest.raises(ValueError, match="tokenizers"):
        fit_mixed_vocab_teacher(teacher, texts, ts, tt, epochs=0)
    with pytest.raises(TypeError, match="teacher"):
        mixed_vocab_student(Linear(2, 2), num_heads=1, d_ff=4, num_layers=1)
    with pytest.raises(ValueError, match="init"):
        mixed_vocab_student(teacher, num_heads=2, d_ff=4, num_layers=1, init="zeros")
    head, h, E, y, Vt = _stage1_case()
    with pytest.raises(ValueError, match="labels"):
        mixed_vocab_mlm_loss_t(h, head, E, y[:3], Vt)
    with pytest.raises(ValueError, match="n_teacher"):
        mixed_vocab_mlm_loss_t(h, head, E, y, 12)
    with pytest.raises(ValueError, match="states"):
        mixed_vocab_mlm_loss_t(np.full_like(h, np.nan), head, E, y, Vt)
    zs, zt, lab, hs, ht, valid, proj = _stage2_case()
    with pytest.raises(ValueError, match="alpha"):
        mixed_vocab_distillation_loss_t(zs, zt, lab, hs, ht, proj, valid, alpha=1.5)
    with pytest.raises(ValueError, match="T"):
        mixed_vocab_distillation_loss_t(zs, zt, lab, hs, ht, proj, valid, T=0.0)
    with pytest.raises(ValueError, match="student_states"):
        mixed_vocab_distillation_loss_t(zs, zt, lab, hs[:1], ht, proj, valid)
    with pytest.raises(ValueError, match="valid"):
        mixed_vocab_distillation_loss_t(zs, zt, lab, hs, ht, proj, valid.astype(int))
