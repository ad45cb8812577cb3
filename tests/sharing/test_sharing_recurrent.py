"""Tests of Survey Eq. (59), §5.2: low-rank recurrent layers with factors shared across layers
(refimpl.sharing.recurrent)."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.nn import Tensor, gradcheck
from refimpl.sharing import SharedLowRankRNN, shared_low_rank_num_params

D, N, R = 3, [5, 4, 4], [2, 3, 2]


def _by_hand(model, x, act, state=None):
    """Eq. (59) with explicit loops over layers, batch rows and steps."""
    B, T, _ = x.shape
    inp = x
    for l in range(1, model.num_layers + 1):  # noqa: E741
        W_a, W_b, U_a, U_b, b = (p.data for p in model.factors(l))
        out = np.zeros((B, T, W_a.shape[0]))
        for i in range(B):
            h = np.zeros(W_a.shape[0]) if state is None else state[l - 1][i]
            for t in range(T):
                h = act(W_a @ W_b @ inp[i, t] + U_a @ U_b @ h + b)
                out[i, t] = h
        inp = out
    return inp


@pytest.mark.parametrize("nonlinearity,act", [("tanh", np.tanh),
                                              ("sigmoid", lambda z: 1 / (1 + np.exp(-z)))])
@pytest.mark.parametrize("share", [True, False])
def test_forward_equals_explicit_loop(nonlinearity, act, share):
    m = SharedLowRankRNN(D, N, R, share=share, nonlinearity=nonlinearity, rng=1)
    for p in m.parameters():
        p.data = p.data + 0.1                              # non-zero biases too
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, D))
    state = [rng.standard_normal((2, n)) for n in N]
    out, finals = m(x, state=state)
    want = _by_hand(m, x, act, state)
    np.testing.assert_allclose(out.data, want, atol=1e-13)
    np.testing.assert_allclose(finals[-1].data, want[:, -1], atol=1e-13)
    assert [f.shape for f in finals] == [(2, n) for n in N]


def test_tie_is_the_same_parameter_object():
    m = SharedLowRankRNN(D, N, R, share=True, rng=0)
    assert m.W_b_l2 is m.U_b_l1 and m.W_b_l3 is m.U_b_l2
    assert m.W_b_l2.shape == (R[0], N[0])                   # (r_{l-1}, N_{l-1})
    names = [n for n, _ in m.named_parameters()]
    assert "W_b_l2" not in names and "W_b_l3" not in names and "W_b_l1" in names
    u = SharedLowRankRNN(D, N, R, share=False, rng=0)
    assert u.W_b_l2 is not u.U_b_l1 and u.W_b_l2.shape == u.U_b_l1.shape


def test_gradcheck_shared_model():
    m = SharedLowRankRNN(D, [4, 3], [2, 2], share=True, rng=2)
    names = [n for n, _ in m.named_parameters()]
    x = np.random.default_rng(1).standard_normal((2, 3, D))

    def fn(xt, *params):
        for n, p in zip(names, params):
            setattr(m, n, p)
        m.W_b_l2 = m.U_b_l1                                  # keep the tie on the tensors
        return m(xt)[0]

    res = gradcheck(fn, [x] + [p.data for _, p in m.named_parameters()], rng=0)
    assert res["max_abs_err"] < 1e-7, res


def test_shared_gradient_is_sum_of_both_uses():
    shared = SharedLowRankRNN(D, N, R, share=True, rng=3)
    unshared = SharedLowRankRNN(D, N, R, share=False, rng=3)
    for name, p in unshared.named_parameters():
        l = int(name.rsplit("_l", 1)[1])  # noqa: E741
        src = f"U_b_l{l - 1}" if name.startswith("W_b") and l >= 2 else name
        p.data = getattr(shared, src).data.copy()
    x = np.random.default_rng(4).standard_normal((3, 5, D))
    dout = np.random.default_rng(5).standard_normal((3, 5, N[-1]))
    out_s, _ = shared(x)
    out_u, _ = unshared(x)
    np.testing.assert_array_equal(out_s.data, out_u.data)
    out_s.backward(dout)
    out_u.backward(dout)
    for l in (2, 3):  # noqa: E741
        want = getattr(unshared, f"U_b_l{l - 1}").grad + getattr(unshared, f"W_b_l{l}").grad
        np.testing.assert_allclose(getattr(shared, f"U_b_l{l - 1}").grad, want, atol=1e-13)
        assert np.abs(getattr(unshared, f"W_b_l{l}").grad).max() > 1e-6   # both uses count


def test_matches_torch(torch):
    m = SharedLowRankRNN(D, N, R, share=True, rng=6)
    x = np.random.default_rng(7).standard_normal((2, 4, D))
    out, _ = m(x)
    dout = np.random.default_rng(8).standard_normal(out.shape)
    out.backward(dout)
    tp = {n: torch.tensor(p.data, requires_grad=True) for n, p in m.named_parameters()}
    h_in = torch.tensor(x)
    for l in range(1, 4):  # noqa: E741
        W_b = tp["W_b_l1"] if l == 1 else tp[f"U_b_l{l - 1}"]
        W = tp[f"W_a_l{l}"] @ W_b
        U = tp[f"U_a_l{l}"] @ tp[f"U_b_l{l}"]
        h = torch.zeros(2, N[l - 1])
        outs = []
        for t in range(4):
            h = torch.tanh(h_in[:, t] @ W.T + h @ U.T + tp[f"b_l{l}"])
            outs.append(h)
        h_in = torch.stack(outs, 1)
    h_in.backward(torch.tensor(dout))
    np.testing.assert_allclose(out.data, h_in.detach().numpy(), atol=1e-12)
    for n, p in m.named_parameters():
        g = tp[n].grad.numpy()
        np.testing.assert_allclose(p.grad, g, atol=1e-12, err_msg=f"{n}: "
                                   f"max abs err {np.abs(p.grad - g).max():.3e}")


@pytest.mark.parametrize("D_,N_,R_,s1", [(3, [5, 4, 4], [2, 3, 2], None), (16, [32], [8], 4),
                                         (10, [20, 30], [5, 6], 7)])
def test_parameter_counts_formula_vs_counting(D_, N_, R_, s1):
    for share in (True, False):
        m = SharedLowRankRNN(D_, N_, R_, input_rank=s1, share=share, rng=0)
        assert m.num_parameters() == shared_low_rank_num_params(D_, N_, R_, input_rank=s1,
                                                                share=share)
    sizes = [D_] + N_
    full = sum(sizes[i + 1] * sizes[i] + sizes[i + 1] ** 2 + sizes[i + 1]
               for i in range(len(N_)))
    assert shared_low_rank_num_params(D_, N_, R_, full_rank=True) == full
    saved = sum(R_[i] * N_[i] for i in range(len(N_) - 1))   # Σ_{l≥2} r_{l-1} N_{l-1}
    assert (shared_low_rank_num_params(D_, N_, R_, input_rank=s1, share=False)
            - shared_low_rank_num_params(D_, N_, R_, input_rank=s1, share=True)) == saved


def test_parameter_counts_hand_worked():
    # D=2, N=(4, 4), r=(1, 1), s_1=1: layer 1: W_a 4 + W_b 2 + U_a 4 + U_b 4 + b 4 = 18;
    # layer 2: W_a 4 + (W_b 4 unless shared) + U_a 4 + U_b 4 + b 4 = 16 (+4)
    assert shared_low_rank_num_params(2, [4, 4], [1, 1], share=True) == 34
    assert shared_low_rank_num_params(2, [4, 4], [1, 1], share=False) == 38
    # full: 4·2 + 16 + 4 + 4·4 + 16 + 4 = 64
    assert shared_low_rank_num_params(2, [4, 4], [1, 1], full_rank=True) == 64


def test_bad_input():
    with pytest.raises(ValueError, match="ranks"):
        SharedLowRankRNN(3, [4, 4], [2])
    with pytest.raises(ValueError, match="ranks"):
        SharedLowRankRNN(3, [4], [0])
    with pytest.raises(ValueError, match="hidden_sizes"):
        SharedLowRankRNN(3, [], [])
    with pytest.raises(ValueError, match="input_size"):
        SharedLowRankRNN(0, [4], [2])
    with pytest.raises(ValueError, match="nonlinearity"):
        SharedLowRankRNN(3, [4], [2], nonlinearity="relu6")
    m = SharedLowRankRNN(3, [4], [2], rng=0)
    with pytest.raises(ValueError, match="x"):
        m(np.ones((2, 5, 4)))
    with pytest.raises(ValueError, match="x"):
        m(np.full((2, 5, 3), np.nan))
    with pytest.raises(TypeError, match="x"):
        m(np.ones((2, 5, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="state"):
        m(np.ones((2, 5, 3)), state=[np.ones((3, 4))])


def test_same_seed_same_model():
    a = SharedLowRankRNN(3, [4, 5], [2, 2], rng=9).state_dict()
    b = SharedLowRankRNN(3, [4, 5], [2, 2], rng=9).state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert isinstance(SharedLowRankRNN(3, [4], [2], rng=0)(np.ones((1, 2, 3)))[0], Tensor)
