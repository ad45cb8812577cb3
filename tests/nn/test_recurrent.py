"""RNN / GRU / LSTM against torch.nn (outputs, final states, parameter and input gradients to
1e-6 in float64), fused vs unrolled-cell paths, lengths semantics, and bad input."""

import numpy as np
import pytest

from refimpl.nn import GRU, LSTM, RNN, Tensor, gradcheck, gru_cell, lstm_cell, rnn_cell

TOL = 1e-6


def _copy_to_torch(ours, theirs, torch):
    with torch.no_grad():
        for k, p in theirs.named_parameters():
            p.copy_(torch.tensor(getattr(ours, k.replace("weight_", "W_").replace("bias_", "b_"))
                                 .data))


def _run_torch(theirs, x, lengths, torch):
    xt = torch.tensor(x, requires_grad=True)
    if lengths is None:
        out, st = theirs(xt)
    else:
        pk = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
        out, st = theirs(pk)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                        total_length=x.shape[1])
    return xt, out, st


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (2, False),
                                                      (2, True)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_matches_torch_outputs_and_gradients(torch, kind, num_layers, bidirectional,
                                             with_lengths):
    rng = np.random.default_rng(num_layers * 10 + bidirectional)
    D, H, B, T = 3, 4, 4, 6
    kw = dict(num_layers=num_layers, bidirectional=bidirectional)
    if kind == "lstm":
        ours, theirs = LSTM(D, H, rng=1, **kw), torch.nn.LSTM(D, H, batch_first=True, **kw)
    elif kind == "gru":
        ours, theirs = GRU(D, H, rng=1, **kw), torch.nn.GRU(D, H, batch_first=True, **kw)
    else:
        nl = kind.split("_")[1]
        ours = RNN(D, H, nonlinearity=nl, rng=1, **kw)
        theirs = torch.nn.RNN(D, H, nonlinearity=nl, batch_first=True, **kw)
    _copy_to_torch(ours, theirs, torch)
    x = rng.standard_normal((B, T, D))
    lengths = np.array([6, 3, 1, 5]) if with_lengths else None
    xo = Tensor(x, requires_grad=True)
    out, st = ours(xo, lengths=lengths)
    xt, tout, tst = _run_torch(theirs, x, lengths, torch)
    hs, ths = (list(st), list(tst)) if kind == "lstm" else ([st], [tst])
    errs = {"out": np.abs(out.data - tout.detach().numpy()).max()}
    for i, (a, b) in enumerate(zip(hs, ths)):
        errs[f"state{i}"] = np.abs(a.data - b.detach().numpy()).max()
    dout = rng.standard_normal(out.shape)
    dst = [rng.standard_normal(h.shape) for h in hs]
    loss = (out * dout).sum()
    for h, d in zip(hs, dst):
        loss = loss + (h * d).sum()
    loss.backward()
    tl = (tout * torch.tensor(dout)).sum()
    for h, d in zip(ths, dst):
        tl = tl + (h * torch.tensor(d)).sum()
    tl.backward()
    errs["dx"] = np.abs(xo.grad - xt.grad.numpy()).max()
    for k, p in theirs.named_parameters():
        mine = getattr(ours, k.replace("weight_", "W_").replace("bias_", "b_"))
        errs["d" + k] = np.abs(mine.grad - p.grad.numpy()).max()
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, f"max abs errors above {TOL}: {bad}"


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_fused_and_unrolled_cells_agree(cls):
    rng = np.random.default_rng(0)
    m = cls(3, 4, num_layers=2, bidirectional=True, rng=2)
    x = rng.standard_normal((3, 5, 3))
    L = np.array([5, 2, 4])
    grads = []
    outs = []
    for fused in (True, False):
        m.fused = fused
        m.zero_grad()
        out, st = m(x, lengths=L)
        h = st[0] if isinstance(st, tuple) else st
        ((out * out).sum() + h.sum()).backward()
        outs.append(out.data)
        grads.append({k: p.grad.copy() for k, p in m.named_parameters()})
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-13)
    for k in grads[0]:
        np.testing.assert_allclose(grads[0][k], grads[1][k], atol=1e-12, err_msg=k)


def test_lstm_layer_gradcheck_through_initial_state_and_input():
    m = LSTM(2, 3, rng=0)
    L = np.array([3, 1])

    def f(x, h0, c0):
        out, (h, c) = m(x, lengths=L, state=(h0, c0))
        return out.sum() + (h * c).sum()

    rng = np.random.default_rng(1)
    res = gradcheck(f, [rng.standard_normal((2, 3, 2)), rng.standard_normal((1, 2, 3)),
                        rng.standard_normal((1, 2, 3))])
    assert res["max_abs_err"] < 1e-7


def test_cells_match_hand_formulas():
    rng = np.random.default_rng(3)
    B, D, H = 2, 3, 2
    x, h, c = rng.standard_normal((B, D)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    W_ih, W_hh = rng.standard_normal((4 * H, D)), rng.standard_normal((4 * H, H))
    b_ih, b_hh = rng.standard_normal(4 * H), rng.standard_normal(4 * H)
    hn, cn = lstm_cell(Tensor(x), (Tensor(h), Tensor(c)), Tensor(W_ih), Tensor(W_hh),
                       Tensor(b_ih), Tensor(b_hh))
    a = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh
    i, f, g, o = sig(a[:, :H]), sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), sig(a[:, 3 * H:])
    np.testing.assert_allclose(cn.data, f * c + i * g, rtol=1e-13)
    np.testing.assert_allclose(hn.data, o * np.tanh(f * c + i * g), rtol=1e-13)
    W_ih, W_hh = rng.standard_normal((3 * H, D)), rng.standard_normal((3 * H, H))
    b_ih, b_hh = rng.standard_normal(3 * H), rng.standard_normal(3 * H)
    hg = gru_cell(Tensor(x), Tensor(h), Tensor(W_ih), Tensor(W_hh), Tensor(b_ih), Tensor(b_hh))
    gi, gh = x @ W_ih.T + b_ih, h @ W_hh.T + b_hh
    r, z = sig(gi[:, :H] + gh[:, :H]), sig(gi[:, H:2 * H] + gh[:, H:2 * H])
    n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    np.testing.assert_allclose(hg.data, (1 - z) * n + z * h, rtol=1e-13)
    hr = rnn_cell(Tensor(x), Tensor(h), Tensor(W_ih[:H]), Tensor(W_hh[:H]))
    np.testing.assert_allclose(hr.data, np.tanh(x @ W_ih[:H].T + h @ W_hh[:H].T), rtol=1e-13)


def test_lengths_final_state_is_state_at_last_real_step():
    m = LSTM(2, 3, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 2))
    out, (h, c) = m(x, lengths=np.array([5, 2]))
    out_short, (h_s, c_s) = m(x[1:, :2])
    np.testing.assert_allclose(h.data[0, 1], h_s.data[0, 0], rtol=1e-13)
    np.testing.assert_allclose(c.data[0, 1], c_s.data[0, 0], rtol=1e-13)
    assert np.all(out.data[1, 2:] == 0.0)  # padded outputs are zero


def test_aliases_batch_first_false_and_float32():
    m = GRU(3, 2, rng=0)
    assert m.W_ih is m.W_ih_l0 and m.b_hh is m.b_hh_l0
    assert m.W_ih.shape == (6, 3) and m.W_hh.shape == (6, 2)
    x = np.random.default_rng(0).standard_normal((4, 5, 3))
    out, _ = m(x)
    m2 = GRU(3, 2, batch_first=False, rng=0)
    out2, _ = m2(x.transpose(1, 0, 2))
    np.testing.assert_allclose(out2.data.transpose(1, 0, 2), out.data, rtol=1e-14)
    m.astype(np.float32)
    out32, h32 = m(x.astype(np.float32))
    assert out32.dtype == np.float32 and h32.dtype == np.float32
    np.testing.assert_allclose(out32.data, out.data, atol=1e-5)


def test_same_seed_same_weights():
    a, b = LSTM(3, 4, num_layers=2, rng=5), LSTM(3, 4, num_layers=2, rng=5)
    for (k, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=k)
    assert len(a.parameters()) == 8


def test_bad_input_names_the_argument():
    m = LSTM(3, 4, rng=0)
    with pytest.raises(ValueError, match="x must have ndim"):
        m(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="last dimension 3"):
        m(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="lengths must lie in"):
        m(np.zeros((2, 5, 3)), lengths=np.array([6, 2]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        m(np.zeros((2, 5, 3)), lengths=np.array([0, 2]))
    with pytest.raises(ValueError, match="lengths must have shape"):
        m(np.zeros((2, 5, 3)), lengths=np.array([5]))
    with pytest.raises(TypeError, match="lengths must be an integer"):
        m(np.zeros((2, 5, 3)), lengths=np.array([5.0, 2.0]))
    with pytest.raises(ValueError, match="x contains NaN"):
        m(np.full((2, 5, 3), np.nan))
    with pytest.raises(ValueError, match="state must have shape"):
        m(np.zeros((2, 5, 3)), state=(np.zeros((1, 3, 4)), np.zeros((1, 3, 4))))
    with pytest.raises(ValueError, match="hidden_size"):
        LSTM(3, 0)
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 2, nonlinearity="sigmoid")


def test_weight_transform_hook_trains_through_a_straight_through_quantiser():
    """§3's quantised RNNs: forward with sign(W), gradient straight through to W."""
    from refimpl.nn import functional as F

    m = LSTM(3, 2, rng=0)
    ref = LSTM(3, 2, rng=0)
    for p in (ref.W_ih, ref.W_hh):
        p.data = np.sign(p.data)
    m.weight_transform = lambda name, W: F.straight_through(W, np.sign)
    x = np.random.default_rng(0).standard_normal((2, 4, 3))
    out, _ = m(x)
    out_ref, _ = ref(x)
    np.testing.assert_allclose(out.data, out_ref.data, rtol=1e-14)
    out.sum().backward()
    out_ref.sum().backward()
    np.testing.assert_allclose(m.W_hh.grad, ref.W_hh.grad, rtol=1e-12)  # STE: identity grad
