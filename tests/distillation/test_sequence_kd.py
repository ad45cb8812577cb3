"""§4.1 sequence-level KD (Kim & Rush 2016): word-level KD loss (hand values, gradient check,
torch cross-check), sequence-level targets = the teacher's beam top-1, Seq-Inter = the beam
hypothesis with the best sentence BLEU (brute force), and the word-KD trainer."""

import numpy as np
import pytest

from refimpl.data import bleu, make_translation
from refimpl.distillation import (
    fit_word_kd,
    seq_inter_targets,
    sequence_kd_targets,
    word_kd_loss_t,
)
from refimpl.nn import Seq2Seq, Tensor, fit_seq2seq, gradcheck


@pytest.fixture(scope="module")
def task():
    return make_translation(n_train=64, n_val=8, n_test=8, rng=0)


def _s2s(task, d=8, seed=0):
    return Seq2Seq(src_vocab=len(task.src_vocab), tgt_vocab=len(task.tgt_vocab), d_emb=d,
                   d_hidden=d, rng=seed)


def test_word_kd_hand_values():
    V = 4
    zs = np.zeros((1, 2, V))
    zt = np.zeros((1, 2, V))
    valid = np.array([[True, False]])
    # uniform teacher and student: cross-entropy log V
    assert word_kd_loss_t(zs, zt, valid).item() == pytest.approx(np.log(V), rel=1e-15)
    # one-hot-like teacher (large logit) → NLL of that word
    zt[0, 0, 2] = 50.0
    zs[0, 0] = [0.0, 1.0, 2.0, 0.5]
    p = np.exp(zs[0, 0]) / np.exp(zs[0, 0]).sum()
    assert word_kd_loss_t(zs, zt, valid).item() == pytest.approx(-np.log(p[2]), rel=1e-12)
    with pytest.raises(ValueError, match="valid"):
        word_kd_loss_t(zs, zt, np.zeros((1, 2), bool))
    with pytest.raises(ValueError, match="teacher_logits"):
        word_kd_loss_t(zs, zt[:, :1], valid)


def test_word_kd_gradcheck_and_torch(torch):
    rng = np.random.default_rng(0)
    zs, zt = rng.standard_normal((2, 3, 4, 5))
    valid = rng.random((3, 4)) < 0.7
    valid[0, 0] = True
    assert gradcheck(lambda z: word_kd_loss_t(z, zt, valid, T=2.0),
                     [zs])["max_abs_err"] < 1e-8
    Fn = torch.nn.functional
    m = torch.tensor(valid)
    q = Fn.softmax(torch.tensor(zt) / 2.0, -1)[m]
    want = -(q * Fn.log_softmax(torch.tensor(zs) / 2.0, -1)[m]).sum(-1).mean()
    assert word_kd_loss_t(Tensor(zs), zt, valid, T=2.0).item() == pytest.approx(float(want),
                                                                                 rel=1e-12)


def test_sequence_kd_targets_are_the_beam_top1(task):
    teacher = _s2s(task, 16)
    fit_seq2seq(teacher, task, epochs=2, rng=0, progress=False)
    src, sl = task.src_train[:10], task.src_len_train[:10]
    tgt, tl = sequence_kd_targets(teacher, src, sl, beam_size=3, max_len=12, batch_size=4)
    toks, scores, lens = teacher.beam_search(src, sl, beam_size=3, max_len=12)
    assert np.all(tgt[:, 0] == teacher.bos)
    for i in range(10):
        np.testing.assert_array_equal(tgt[i, 1:tl[i]], toks[i, 0, :lens[i, 0]])
        assert np.all(tgt[i, tl[i]:] == 0)


def test_seq_inter_picks_the_max_bleu_hypothesis(task):
    teacher = _s2s(task, 16)
    fit_seq2seq(teacher, task, epochs=1, rng=0, progress=False)
    src, sl = task.src_train[:12], task.src_len_train[:12]
    ref, rl = task.tgt_train[:12], task.tgt_len_train[:12]
    tgt, tl, rank = seq_inter_targets(teacher, src, sl, ref, rl, beam_size=4, max_len=12)
    toks, scores, lens = teacher.beam_search(src, sl, beam_size=4, max_len=12)
    for i in range(12):
        r = [int(t) for t in ref[i, 1:rl[i] - 1]]
        sims = [bleu([[int(t) for t in toks[i, k, :lens[i, k]] if t != 3]], [r], smooth="add-k")
                for k in range(4) if np.isfinite(scores[i, k])]
        assert rank[i] == int(np.argmax(sims))
        np.testing.assert_array_equal(tgt[i, 1:tl[i]], toks[i, rank[i], :lens[i, rank[i]]])
    with pytest.raises(ValueError, match="tgt"):
        seq_inter_targets(teacher, src, sl, ref[:3], rl[:3])


def test_fit_word_kd_alpha0_is_fit_seq2seq_and_teacher_untouched(task):
    teacher = _s2s(task, 16)
    fit_seq2seq(teacher, task, epochs=1, rng=0, progress=False)
    before = {k: v.data.copy() for k, v in teacher.named_parameters()}
    a, b = _s2s(task, seed=3), _s2s(task, seed=3)
    fit_word_kd(a, teacher, task, alpha=0.0, epochs=1, rng=0, progress=False)
    fit_seq2seq(b, task, epochs=1, rng=0, progress=False, val=None)
    for (k, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=0, atol=1e-12, err_msg=k)
    hist = fit_word_kd(_s2s(task, seed=4), teacher, task, alpha=0.5, epochs=2, rng=0,
                       progress=False)
    assert hist.train_loss[-1] < hist.train_loss[0]
    for k, v in teacher.named_parameters():
        np.testing.assert_array_equal(v.data, before[k])
