"""§4.4 XtremeDistil (Mukherjee & Awadallah 2020): the projected representation loss (hand
values, padding ignored, gradient check, torch mse_loss), the one-pass BiLSTM states, and the
stage-wise schedule through fit_with_teacher."""

import numpy as np
import pytest

from refimpl.distillation import (XtremeDistilProjection, bilstm_token_states, fit_xtremedistil,
                                  xtremedistil_representation_loss_t)
from refimpl.nn import RNNClassifier, Tensor, TransformerClassifier, gradcheck


def _proj(W, b):
    p = XtremeDistilProjection(W.shape[1], W.shape[0], rng=0)
    p.proj.W.data[...] = W
    p.proj.b.data[...] = b
    return p


def test_hand_values_and_padding():
    # one real token, d = 1: (2·1 + 0 − 3)² = 1; the padded token (value 100) never enters
    p = _proj(np.array([[2.0]]), np.array([0.0]))
    hs = np.array([[[1.0], [100.0]]])
    ht = np.array([[[3.0], [-7.0]]])
    valid = np.array([[True, False]])
    assert xtremedistil_representation_loss_t(hs, ht, p, valid).item() == 1.0
    # identity projection and equal states: exactly 0
    eye = _proj(np.eye(3), np.zeros(3))
    h = np.random.default_rng(0).standard_normal((2, 4, 3))
    assert xtremedistil_representation_loss_t(h, h, eye, np.ones((2, 4), bool)).item() == 0.0
    # width 2 -> 2, two real tokens: mean over 2 tokens × 2 features
    p2 = _proj(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0.0, 1.0]))
    hs2 = np.array([[[1.0, 5.0], [2.0, 5.0]]])
    ht2 = np.zeros((1, 2, 2))
    # projected: [1, 1], [2, 1] -> squares 1 + 1 + 4 + 1 = 7, / 4
    got = xtremedistil_representation_loss_t(hs2, ht2, p2, np.ones((1, 2), bool)).item()
    assert got == 7.0 / 4.0


def test_gradcheck_and_torch(torch):
    rng = np.random.default_rng(1)
    B, T, ds, dt = 2, 5, 4, 3
    hs, ht = rng.standard_normal((B, T, ds)), rng.standard_normal((B, T, dt))
    valid = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    p = XtremeDistilProjection(ds, dt, rng=0)
    W, b = p.proj.W.data.copy(), p.proj.b.data.copy()

    def loss(h, w, bb):
        q = XtremeDistilProjection(ds, dt, rng=0)
        q.proj.W, q.proj.b = w, bb
        return xtremedistil_representation_loss_t(h, ht, q, valid)

    assert gradcheck(loss, [hs, W, b])["max_abs_err"] < 1e-8
    th = torch.nn.functional.linear(torch.tensor(hs), torch.tensor(W), torch.tensor(b))
    m = torch.tensor(valid)
    want = torch.nn.functional.mse_loss(th[m], torch.tensor(ht)[m])
    got = xtremedistil_representation_loss_t(Tensor(hs), ht, p, valid).item()
    assert got == pytest.approx(float(want), rel=1e-12)


def test_bad_input():
    p = XtremeDistilProjection(4, 3, rng=0)
    hs, ht = np.zeros((1, 2, 4)), np.zeros((1, 2, 3))
    ok = np.ones((1, 2), bool)
    with pytest.raises(ValueError, match="projection maps"):
        xtremedistil_representation_loss_t(np.zeros((1, 2, 5)), ht, p, ok)
    with pytest.raises(ValueError, match="teacher_states"):
        xtremedistil_representation_loss_t(hs, np.zeros((1, 3, 3)), p, ok)
    with pytest.raises(ValueError, match="valid"):
        xtremedistil_representation_loss_t(hs, ht, p, np.zeros((1, 2), bool))
    with pytest.raises(ValueError, match="student_states"):
        xtremedistil_representation_loss_t(np.full((1, 2, 4), np.nan), ht, p, ok)
    with pytest.raises(TypeError, match="projection"):
        xtremedistil_representation_loss_t(hs, ht, object(), ok)
    with pytest.raises(ValueError, match="d_student"):
        XtremeDistilProjection(0, 3)


def test_bilstm_token_states_match_forward():
    st = RNNClassifier(vocab_size=20, d_emb=4, d_hidden=3, n_classes=2, bidirectional=True, rng=0)
    X = np.random.default_rng(0).integers(2, 20, (3, 6))
    L = np.array([6, 4, 2])
    z, h = bilstm_token_states(st, X, L)
    assert h.shape == (3, 6, 6) and z.shape == (3, 2)
    np.testing.assert_array_equal(z.data, st(X, L).data)
    np.testing.assert_array_equal(st.features(X, L).data, st.encode(X, L)[1].data)
    with pytest.raises(TypeError, match="RNNClassifier"):
        bilstm_token_states(object(), X, L)


def _setup(seed=0):
    rng = np.random.default_rng(seed)
    N, T, V = 64, 6, 20
    X = rng.integers(2, V, (N, T))
    L = rng.integers(2, T + 1, N)
    y = (X[:, 0] > V // 2).astype(np.int64)
    teacher = TransformerClassifier(vocab_size=V, d_model=8, num_heads=2, d_ff=16, num_layers=2,
                                    max_len=T, n_classes=2, pooling="cls", rng=1)
    student = RNNClassifier(vocab_size=V, d_emb=4, d_hidden=3, n_classes=2, bidirectional=True,
                            rng=2)
    return (X, L, y), teacher, student


def test_stagewise_fit_reduces_representation_loss_and_is_deterministic():
    arrays, teacher, student = _setup()
    X, L, y = arrays
    t_before = {k: v.copy() for k, v in teacher.state_dict().items()}
    proj = XtremeDistilProjection(6, 8, rng=3)
    _, out = teacher(X, L, output_hidden_states=True)
    ht = out.hidden_states[1].data[:, 1:]  # (N, T, 8), [CLS] dropped
    valid = np.arange(X.shape[1])[None] < L[:, None]

    def rep():
        return xtremedistil_representation_loss_t(bilstm_token_states(student, X, L)[1], ht,
                                                  proj, valid).item()

    before = rep()
    p, hist = fit_xtremedistil(student, teacher, arrays, projection=proj, teacher_layer=1,
                               epochs_representation=20, epochs_logits=1, epochs_labels=1,
                               rng=0, progress=False)
    assert p is proj and all(h is not None for h in hist)
    # the representation stage lowered its loss (checked right after stage 1 below)
    arrays2, teacher2, student2 = _setup()
    proj2 = XtremeDistilProjection(6, 8, rng=3)
    fit_xtremedistil(student2, teacher2, arrays2, projection=proj2, teacher_layer=1,
                     epochs_representation=20, epochs_logits=0, epochs_labels=0, rng=0,
                     progress=False)
    student, proj = student2, proj2
    # measured: 1.157 -> 0.735 (x 0.64); asserted: at least a 20 % drop
    assert rep() < 0.8 * before
    for k, v in teacher.state_dict().items():  # the teacher is never trained
        np.testing.assert_array_equal(v, t_before[k])
    # same seed -> bit-identical student
    arrays3, teacher3, student3 = _setup()
    fit_xtremedistil(student3, teacher3, arrays3, projection=XtremeDistilProjection(6, 8, rng=3),
                     teacher_layer=1, epochs_representation=20, epochs_logits=0, epochs_labels=0,
                     rng=0, progress=False)
    for k, v in student2.state_dict().items():
        np.testing.assert_array_equal(v, student3.state_dict()[k])


def test_fit_bad_input():
    arrays, teacher, student = _setup()
    with pytest.raises(TypeError, match="student"):
        fit_xtremedistil(teacher, teacher, arrays)
    with pytest.raises(TypeError, match="teacher"):
        fit_xtremedistil(student, student, arrays)
    with pytest.raises(ValueError, match="teacher_layer"):
        fit_xtremedistil(student, teacher, arrays, teacher_layer=3)
    with pytest.raises(ValueError, match="epochs_logits"):
        fit_xtremedistil(student, teacher, arrays, epochs_logits=-1)
    with pytest.raises(TypeError, match="projection"):
        fit_xtremedistil(student, teacher, arrays, projection=object())
