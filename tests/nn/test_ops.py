"""Every primitive pair of refimpl.nn.ops: gradient checks (float64 central differences against a
random upstream gradient, over shapes with broadcasting), exact edge values, tape properties,
and cross-checks of gelu / layer_norm / log_softmax against torch."""

import numpy as np
import pytest

from refimpl.nn import Tensor, apply_op, custom_op, gradcheck, no_grad, ops
from refimpl.nn import functional as F

R = np.random.default_rng(7)


def _away(x, gap=0.1):
    """Move entries at least ``gap`` away from 0 (the kink of relu/abs/elu)."""
    return x + np.sign(x) * gap + (x == 0) * gap


def _op(fwd, bwd, **kw):
    return lambda *ts: apply_op(fwd, bwd, *ts, **kw)


# (name of the forward in ops, fn of Tensors, list of inputs) — one or more cases per pair
SHAPES_BINARY = [((3, 4), (3, 4)), ((3, 4), (1, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)),
                 ((), (2, 3))]


def _cases():
    c = []
    for sa, sb in SHAPES_BINARY:
        a, b = R.standard_normal(sa), R.standard_normal(sb)
        pos = R.uniform(0.5, 2.0, sb)
        c += [("add", _op(ops.add_forward, ops.add_backward), [a, b]),
              ("sub", _op(ops.sub_forward, ops.sub_backward), [a, b]),
              ("mul", _op(ops.mul_forward, ops.mul_backward), [a, b]),
              ("div", _op(ops.div_forward, ops.div_backward), [a, pos])]
    x = R.standard_normal((3, 4))
    pos = R.uniform(0.5, 2.0, (3, 4))
    c += [
        ("neg", _op(ops.neg_forward, ops.neg_backward), [x]),
        ("pow", _op(ops.pow_forward, ops.pow_backward, p=3.0), [x]),
        ("pow", _op(ops.pow_forward, ops.pow_backward, p=-0.5), [pos]),
        ("exp", _op(ops.exp_forward, ops.exp_backward), [x]),
        ("log", _op(ops.log_forward, ops.log_backward), [pos]),
        ("sqrt", _op(ops.sqrt_forward, ops.sqrt_backward), [pos]),
        ("abs", _op(ops.abs_forward, ops.abs_backward), [_away(x)]),
        ("clip", _op(ops.clip_forward, ops.clip_backward, lo=-0.5, hi=0.5),
         [np.array([-2.0, -0.3, 0.1, 0.45, 1.7])]),
        ("tanh", _op(ops.tanh_forward, ops.tanh_backward), [x]),
        ("sigmoid", _op(ops.sigmoid_forward, ops.sigmoid_backward), [x * 3]),
        ("relu", _op(ops.relu_forward, ops.relu_backward), [_away(x)]),
        ("gelu", _op(ops.gelu_forward, ops.gelu_backward), [x * 2]),
        ("elu", _op(ops.elu_forward, ops.elu_backward, alpha=0.7), [_away(x)]),
        ("softmax", _op(ops.softmax_forward, ops.softmax_backward, axis=-1), [x]),
        ("softmax", _op(ops.softmax_forward, ops.softmax_backward, axis=0),
         [R.standard_normal((3, 2, 4))]),
        ("log_softmax", _op(ops.log_softmax_forward, ops.log_softmax_backward, axis=-1), [x]),
        ("log_softmax", _op(ops.log_softmax_forward, ops.log_softmax_backward, axis=1),
         [R.standard_normal((2, 5, 3))]),
        ("layer_norm", _op(ops.layer_norm_forward, ops.layer_norm_backward),
         [R.standard_normal((2, 3, 5)), R.standard_normal(5), R.standard_normal(5)]),
        ("dropout", lambda a: apply_op(ops.dropout_forward, ops.dropout_backward, a, p=0.4,
                                       rng=np.random.default_rng(1)), [x]),  # same mask
        ("mask", _op(ops.mask_forward, ops.mask_backward, mask=(x > 0).astype(float)), [x]),
        ("mask", _op(ops.mask_forward, ops.mask_backward, mask=np.array([1.0, 0, 1, 0.5])),
         [x]),
        ("masked_fill", _op(ops.masked_fill_forward, ops.masked_fill_backward, mask=x > 0,
                            value=-3.0), [x]),
        ("reshape", _op(ops.reshape_forward, ops.reshape_backward, shape=(2, 6)), [x]),
        ("transpose", _op(ops.transpose_forward, ops.transpose_backward, axes=None), [x]),
        ("transpose", _op(ops.transpose_forward, ops.transpose_backward, axes=(1, 2, 0)),
         [R.standard_normal((2, 3, 4))]),
        ("getitem", _op(ops.getitem_forward, ops.getitem_backward, index=(slice(1, 3), 2)),
         [x]),
        ("getitem", _op(ops.getitem_forward, ops.getitem_backward,
                        index=np.array([0, 2, 2, 1])), [x]),  # repeated rows accumulate
        ("sum", _op(ops.sum_forward, ops.sum_backward), [x]),
        ("sum", _op(ops.sum_forward, ops.sum_backward, axis=1), [x]),
        ("sum", _op(ops.sum_forward, ops.sum_backward, axis=(0, 2), keepdims=True),
         [R.standard_normal((2, 3, 4))]),
        ("mean", _op(ops.mean_forward, ops.mean_backward), [x]),
        ("mean", _op(ops.mean_forward, ops.mean_backward, axis=0, keepdims=True), [x]),
        ("max", _op(ops.max_forward, ops.max_backward, axis=1), [x]),
        ("max", _op(ops.max_forward, ops.max_backward), [x]),
        ("concat", _op(ops.concat_forward, ops.concat_backward, axis=1),
         [x, R.standard_normal((3, 2))]),
        ("stack", _op(ops.stack_forward, ops.stack_backward, axis=1), [x, x * 2.0]),
    ]
    # matmul over shapes, incl. vectors and broadcast batch axes
    for sa, sb in [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
                   ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2))]:
        c.append(("matmul", _op(ops.matmul_forward, ops.matmul_backward),
                  [R.standard_normal(sa), R.standard_normal(sb)]))
    W, b = R.standard_normal((5, 4)), R.standard_normal(5)
    c += [("linear", _op(ops.linear_forward, ops.linear_backward), [x, W, b]),
          ("linear", _op(ops.linear_forward, ops.linear_backward),
           [R.standard_normal((2, 3, 4)), W, b]),
          ("linear", lambda a, w: apply_op(lambda a_, w_: ops.linear_forward(a_, w_),
                                           lambda d, cc: ops.linear_backward(d, cc)[:2], a, w),
           [x, W])]
    idx = np.array([[0, 1, 1], [4, 0, 2]])
    c.append(("embedding", lambda w: apply_op(lambda w_: ops.embedding_forward(w_, idx),
                                              lambda d, cc: ops.embedding_backward(d, cc)[:1],
                                              w), [W]))
    cond = x > 0.3
    c.append(("where", lambda a, bb: apply_op(lambda a_, b_: ops.where_forward(cond, a_, b_),
                                              lambda d, cc: ops.where_backward(d, cc)[1:],
                                              a, bb), [x, R.standard_normal((1, 4))]))
    gidx = np.array([[0, 3], [3, 3], [1, 2]])  # duplicates along the axis accumulate
    c.append(("gather", lambda a: apply_op(lambda a_: ops.gather_forward(a_, gidx, 1),
                                           lambda d, cc: ops.gather_backward(d, cc)[:1], a),
              [x]))
    ce_y = np.array([0, 3, 3, 1, 2])
    c.append(("cross_entropy",
              lambda a: apply_op(lambda a_: ops.cross_entropy_forward(a_, ce_y),
                                 lambda d, cc: ops.cross_entropy_backward(d, cc)[:1], a),
              [R.standard_normal((5, 4)) * 3]))
    # fused recurrences: with and without padding, both directions
    B, T, H = 3, 4, 2
    valid = np.arange(T)[None, :] < np.array([4, 2, 1])[:, None]
    for v in (None, valid):
        for rev in (False, True):
            c.append(("rnn_seq", _op(ops.rnn_seq_forward, ops.rnn_seq_backward, valid=v,
                                     reverse=rev),
                      [R.standard_normal((B, T, H)), R.standard_normal((B, H)),
                       R.standard_normal((H, H))]))
            c.append(("lstm_seq", _op(ops.lstm_seq_forward, ops.lstm_seq_backward, valid=v,
                                      reverse=rev),
                      [R.standard_normal((B, T, 4 * H)), R.standard_normal((B, H)),
                       R.standard_normal((B, H)), R.standard_normal((4 * H, H))]))
            c.append(("gru_seq", _op(ops.gru_seq_forward, ops.gru_seq_backward, valid=v,
                                     reverse=rev),
                      [R.standard_normal((B, T, 3 * H)), R.standard_normal((B, H)),
                       R.standard_normal((3 * H, H)), R.standard_normal(3 * H)]))
    c.append(("rnn_seq", _op(ops.rnn_seq_forward, ops.rnn_seq_backward, valid=valid,
                             nonlinearity="relu"),
              [_away(R.standard_normal((B, T, H))), np.abs(R.standard_normal((B, H))),
               R.standard_normal((H, H)) * 0.3]))
    return c


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_gradcheck_primitive(case):
    name, fn, inputs = case
    res = gradcheck(fn, inputs, rng=3, atol=1e-7, rtol=1e-5)
    assert res["max_abs_err"] < 1e-6, res


def test_every_primitive_pair_is_gradchecked():
    pairs = {n[:-len("_forward")] for n in dir(ops) if n.endswith("_forward")
             and not n.startswith("_") and hasattr(ops, n[:-len("_forward")] + "_backward")}
    covered = {c[0] for c in CASES}
    assert pairs, "no primitive pairs found"
    assert pairs <= covered, f"not gradchecked: {sorted(pairs - covered)}"


def test_activations_and_recurrences_keep_float32():
    # (gelu_forward currently promotes float32 to float64 via its float64 constants)
    x = R.standard_normal((3, 4)).astype(np.float32)
    for fwd in (ops.relu_forward, ops.sigmoid_forward, ops.tanh_forward):
        assert fwd(x)[0].dtype == np.float32, fwd.__name__
    out, _ = ops.lstm_seq_forward(R.standard_normal((2, 3, 8)).astype(np.float32),
                                  np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32),
                                  R.standard_normal((8, 2)).astype(np.float32))
    assert out.dtype == np.float32


# ------------------------------------------------------------------ exact edge values
def test_sigmoid_at_large_magnitudes_is_finite_and_exact():
    out, _ = ops.sigmoid_forward(np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0]))
    assert np.all(np.isfinite(out))
    assert out[0] == 0.0 and out[2] == 0.5 and out[4] == 1.0
    np.testing.assert_allclose(out[1], np.exp(-40.0), rtol=1e-12)
    # the fused recurrences' sigmoid (via tanh) agrees and stays finite
    np.testing.assert_allclose(ops._sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


def test_softmax_rows_sum_to_one_even_for_huge_logits():
    x = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0], [-5e3, 3.0, 3.0]])
    s, _ = ops.softmax_forward(x)
    np.testing.assert_allclose(s.sum(axis=-1), 1.0, atol=1e-15)
    np.testing.assert_array_equal(s[0], [0.5, 0.5, 0.0])


def test_log_softmax_of_equal_logits_is_minus_log_n():
    out, _ = ops.log_softmax_forward(np.full((2, 5), 123.0))
    np.testing.assert_allclose(out, -np.log(5.0), rtol=0, atol=1e-15)


def test_cross_entropy_pair_hand_values():
    out, _ = ops.cross_entropy_forward(np.array([[0.0, 0.0], [1000.0, 0.0]]), np.array([1, 0]))
    np.testing.assert_allclose(out, [np.log(2.0), 0.0], atol=1e-15)
    out, _ = ops.cross_entropy_forward(np.array([[1000.0, 0.0]]), np.array([1]))
    assert out[0] == 1000.0  # finite for huge margins


def test_layer_norm_output_has_zero_mean_unit_variance():
    x = R.standard_normal((4, 16)) * 7 + 3
    out, _ = ops.layer_norm_forward(x, np.ones(16), np.zeros(16), eps=0.0)
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-14)
    np.testing.assert_allclose(out.var(-1), 1.0, atol=1e-12)


def test_max_ties_share_gradient_and_abs_at_zero_is_zero():
    x = Tensor(np.array([[2.0, 2.0, 1.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.5, 0.5, 0.0]])
    z = Tensor(np.array([0.0, -1.0]), requires_grad=True)
    z.abs().sum().backward()
    np.testing.assert_array_equal(z.grad, [0.0, -1.0])


def test_gelu_hand_values():
    out, _ = ops.gelu_forward(np.array([0.0, 1.0, -1.0]))
    # GELU(1) = Φ(1) = 0.8413447460685429
    np.testing.assert_allclose(out, [0.0, 0.8413447460685429, -0.15865525393145707],
                               rtol=1e-14)


def test_lstm_seq_padded_steps_carry_the_state():
    rng = np.random.default_rng(0)
    xg, W = rng.standard_normal((2, 5, 8)), rng.standard_normal((8, 2))
    valid = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    out, _ = ops.lstm_seq_forward(xg, np.zeros((2, 2)), np.zeros((2, 2)), W, valid)
    short, _ = ops.lstm_seq_forward(xg[1:, :2], np.zeros((1, 2)), np.zeros((1, 2)), W)
    np.testing.assert_allclose(out[:, 1, 4], short[:, 0, 1], rtol=1e-13)  # (h, c), last real step
    np.testing.assert_array_equal(out[:, 1, 2], out[:, 1, 1])


# ------------------------------------------------------------------ tape properties
def test_tensor_used_twice_accumulates():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    y = F.tanh(x)
    (y * y + y).sum().backward()
    t = np.tanh(x.data)
    np.testing.assert_allclose(x.grad, (2 * t + 1) * (1 - t * t), rtol=1e-14)


def test_no_grad_records_nothing_and_retain_grad():
    x = Tensor(R.standard_normal(3), requires_grad=True)
    with no_grad():
        y = F.sigmoid(x) * 2.0
    assert not y.requires_grad and y._backward is None
    h = F.tanh(x).retain_grad()
    (h * 3.0).sum().backward()
    np.testing.assert_array_equal(h.grad, np.full(3, 3.0))
    np.testing.assert_allclose(x.grad, 3.0 * (1 - np.tanh(x.data) ** 2))


def test_custom_op_and_straight_through_with_clip():
    sq = custom_op(lambda a: (a * a, a), lambda d, a: (2 * a * d,), name="square")
    res = gradcheck(lambda a: sq(a), [R.standard_normal(4)])
    assert res["max_abs_err"] < 1e-7
    w = Tensor(np.array([0.3, -0.7, 1.5, -2.0]), requires_grad=True)
    out = F.straight_through(w, np.sign, clip_at=1.0)
    np.testing.assert_array_equal(out.data, [1.0, -1.0, 1.0, -1.0])
    (out * np.array([1.0, 2.0, 3.0, 4.0])).sum().backward()
    np.testing.assert_array_equal(w.grad, [1.0, 2.0, 0.0, 0.0])


# ------------------------------------------------------------------ torch cross-checks
def test_gelu_layer_norm_log_softmax_match_torch(torch):
    x = R.standard_normal((3, 7))
    g, b = R.standard_normal(7), R.standard_normal(7)
    dout = R.standard_normal((3, 7))
    tx = torch.tensor(x, requires_grad=True)
    tg, tb = torch.tensor(g, requires_grad=True), torch.tensor(b, requires_grad=True)
    for name, ours, theirs in [
        ("gelu", lambda a: F.gelu(a), lambda a: torch.nn.functional.gelu(a)),
        ("log_softmax", lambda a: F.log_softmax(a, axis=-1),
         lambda a: torch.log_softmax(a, dim=-1)),
        ("layer_norm", lambda a: F.layer_norm(a, Tensor(g), Tensor(b)),
         lambda a: torch.nn.functional.layer_norm(a, (7,), tg, tb, eps=1e-5)),
    ]:
        a = Tensor(x, requires_grad=True)
        out = ours(a)
        out.backward(dout)
        tx.grad = None
        tout = theirs(tx)
        tout.backward(torch.tensor(dout))
        err_f = np.abs(out.data - tout.detach().numpy()).max()
        err_b = np.abs(a.grad - tx.grad.numpy()).max()
        assert err_f < 1e-12 and err_b < 1e-12, f"{name}: forward {err_f:.2e} backward {err_b:.2e}"
    # layer-norm parameter gradients
    tg.grad = tb.grad = None
    gt, bt = Tensor(g, requires_grad=True), Tensor(b, requires_grad=True)
    F.layer_norm(Tensor(x), gt, bt).backward(dout)
    torch.nn.functional.layer_norm(torch.tensor(x), (7,), tg, tb).backward(torch.tensor(dout))
    np.testing.assert_allclose(gt.grad, tg.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(bt.grad, tb.grad.numpy(), atol=1e-12)


# ------------------------------------------------------------------ properties (hypothesis)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_rows = hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
                   elements=st.floats(-50, 50))


@settings(max_examples=25, deadline=None)
@given(_rows, st.floats(-1e3, 1e3))
def test_softmax_family_is_shift_invariant(x, c):
    s1, _ = ops.softmax_forward(x)
    s2, _ = ops.softmax_forward(x + c)
    np.testing.assert_allclose(s1, s2, atol=1e-12)
    np.testing.assert_allclose(s1.sum(-1), 1.0, atol=1e-12)
    l1, _ = ops.log_softmax_forward(x)
    np.testing.assert_allclose(np.exp(l1), s1, atol=1e-12)
    y = np.zeros(x.shape[0], np.int64)
    ce, _ = ops.cross_entropy_forward(x + c, y)
    np.testing.assert_allclose(ce, -l1[:, 0], atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, (3, 5), elements=st.floats(-10, 10)), st.floats(0.1, 10),
       st.floats(-10, 10))
def test_layer_norm_is_invariant_to_affine_rescaling(x, a, b):
    x = x + np.arange(5)  # rows are never constant
    y1, _ = ops.layer_norm_forward(x, np.ones(5), np.zeros(5), eps=0.0)
    y2, _ = ops.layer_norm_forward(a * x + b, np.ones(5), np.zeros(5), eps=0.0)
    np.testing.assert_allclose(y1, y2, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, (2, 4, 8), elements=st.floats(-20, 20)))
def test_lstm_states_are_bounded(xg):
    out, _ = ops.lstm_seq_forward(xg, np.zeros((2, 2)), np.zeros((2, 2)), np.ones((8, 2)))
    h, c = out
    assert np.all(np.abs(h) <= 1.0) and np.all(np.abs(c) <= np.arange(1, 5)[None, :, None])
