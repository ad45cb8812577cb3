"""Eq. (18) head and FFN-gate importance on a causal Transformer LM (Survey §2.4.1, §2.4.3):
the LM form of :func:`refimpl.pruning.heads_layers.structure_importance`."""

import numpy as np
import pytest

from refimpl import nn
from refimpl.nn import Tensor, TransformerLanguageModel, gradcheck
from refimpl.pruning import heads_layers as hl

#: Central-difference step and its error bound: truncation O(h²) plus rounding of a loss of
#: size ~|L| ≈ 3 nats, ~20 ulps each way (a float64 forward pass of a few hundred terms):
#: 20 · 2.2e-16 · 3 / 1e-6 ≈ 1.3e-8.
_H = 1e-6
_FD_ATOL = 2e-8


def _lm(rng=1, num_layers=2, num_heads=4, max_len=7):
    return TransformerLanguageModel(vocab_size=20, d_model=8, num_heads=num_heads, d_ff=8,
                                    num_layers=num_layers, max_len=max_len, activation="relu",
                                    rng=rng)


def _rows(rng, n=6, T=7):
    """``<bos> … `` rows of random tokens with lengths in [2, T], zero-padded."""
    rng = np.random.default_rng(rng)
    X = rng.integers(4, 20, size=(n, T))
    X[:, 0] = 2
    lengths = rng.integers(2, T + 1, size=n)
    X[np.arange(T)[None, :] >= lengths[:, None]] = 0
    return X, lengths


@pytest.fixture(scope="module")
def tiny():
    X, L = _rows(0)
    return _lm(), X, L


def _fd_importance(m, X, L):
    """``E_x |∂L(x)/∂ξ_h|`` and ``E_x |∂L(x)/∂ν_l|`` by central differences, one sentence at a
    time through :func:`gated_loss` (no tape)."""
    nl, H = m.num_layers, m.num_heads
    hd, fd = np.zeros((nl, H)), np.zeros(nl)
    for n in range(len(X)):
        sl = slice(n, n + 1)
        for layer in range(nl):
            for h in range(H):
                hp, hn = np.ones((nl, H)), np.ones((nl, H))
                hp[layer, h] += _H
                hn[layer, h] -= _H
                d = (hl.gated_loss(m, X[sl], L[sl], head_mask=hp)
                     - hl.gated_loss(m, X[sl], L[sl], head_mask=hn)) / (2 * _H)
                hd[layer, h] += abs(d) / len(X)
            fp, fn = np.ones(nl), np.ones(nl)
            fp[layer] += _H
            fn[layer] -= _H
            d = (hl.gated_loss(m, X[sl], L[sl], ffn_mask=fp)
                 - hl.gated_loss(m, X[sl], L[sl], ffn_mask=fn)) / (2 * _H)
            fd[layer] += abs(d) / len(X)
    return hd, fd


def test_lm_gate_sensitivities_match_central_differences(tiny):
    m, X, L = tiny
    hi, fi = hl.structure_importance(m, X, L)
    hd, fd = _fd_importance(m, X, L)
    np.testing.assert_allclose(hi, hd, atol=_FD_ATOL, rtol=0)
    np.testing.assert_allclose(fi, fd, atol=_FD_ATOL, rtol=0)
    assert hi.min() > 1e-4 and fi.min() > 1e-4  # the check is not vacuous


def test_lm_per_example_gates_gradcheck(tiny):
    """The tape gradient of Σ_b L(x_b) w.r.t. per-example head gates (L, B, H) and FFN gates
    (L, B) against float64 central differences (refimpl.nn.gradcheck)."""
    m, X, L = tiny
    B = len(X)

    def f(xi, nu):
        return hl._summed_example_loss(m, X, L, None, head_mask=xi,
                                       ffn_mask=hl.ffn_gates_to_mask(m, nu))[0]

    rng = np.random.default_rng(3)
    err = gradcheck(f, [rng.uniform(0.5, 1.5, (2, B, 4)), rng.uniform(0.5, 1.5, (2, B))],
                    atol=_FD_ATOL, rtol=1e-6)
    assert err["max_abs_err"] < _FD_ATOL


def test_lm_activation_form_equals_gate_form(tiny):
    m, X, L = tiny
    a = hl.head_importance(m, X, L, form="gate")
    b = hl.head_importance(m, X, L, form="activation")
    np.testing.assert_allclose(a, b, atol=1e-14, rtol=0)
    # at a partly pruned mask the forms agree on the kept heads (ξ = 1); a pruned head (ξ = 0)
    # keeps a gate score, while its activation score is 0 (∂L/∂Att_h = ξ_h ∂L/∂(ξ_h Att_h))
    hm = np.ones((2, 4))
    hm[0, 1] = hm[1, 3] = 0.0
    a = hl.head_importance(m, X, L, head_mask=hm, form="gate")
    b = hl.head_importance(m, X, L, head_mask=hm, form="activation")
    np.testing.assert_allclose(a[hm == 1], b[hm == 1], atol=1e-14, rtol=0)
    assert np.all(b[hm == 0] == 0.0) and np.all(a[hm == 0] > 1e-4)


def test_lm_head_with_zero_output_projection_has_importance_zero(tiny):
    """Hand case: W_o's columns of head h are zero ⇒ ∂L/∂Att_h = W_o[:, h]ᵀ dout = 0 exactly ⇒
    I_h = 0 in both forms, while the other heads keep a positive score."""
    m0, X, L = tiny
    m = _lm()
    m.load_state_dict(m0.state_dict())
    dh = m.layers[1].self_attn.d_head
    m.layers[1].self_attn.W_o.W.data[:, 2 * dh:3 * dh] = 0.0  # layer 1, head 2
    for form in ("gate", "activation"):
        imp = hl.head_importance(m, X, L, form=form)
        assert imp[1, 2] == 0.0
        assert np.delete(imp.ravel(), 1 * 4 + 2).min() > 0


def test_lm_loss_is_each_sentence_mean_token_nll(tiny):
    """gated_loss of an LM = mean over sentences of the mean of the LM's own token_nll."""
    m, X, L = tiny
    per = m.token_nll(X, L)  # (B, T-1), NaN where there is no target
    expect = float(np.mean(np.nanmean(per, axis=1)))
    assert hl.gated_loss(m, X, L) == pytest.approx(expect, rel=1e-13)
    # a single sentence: L(x) is that sentence's mean NLL; all-ones gates change nothing
    assert hl.gated_loss(m, X[:1], L[:1], head_mask=np.ones((2, 4)),
                         ffn_mask=np.ones(2)) == pytest.approx(np.nanmean(per[0]), rel=1e-13)


def test_lm_importance_ignores_padding_columns_and_batching(tiny):
    m, X, L = tiny
    a = hl.structure_importance(m, X, L)
    Xp = np.concatenate([X, np.zeros((len(X), 0), int)], axis=1)
    b = hl.structure_importance(m, Xp, L, batch_size=2)
    np.testing.assert_allclose(a[0], b[0], atol=1e-15)
    np.testing.assert_allclose(a[1], b[1], atol=1e-15)


def test_lm_is_causal_per_example(tiny):
    """Changing a token after a sentence's last target changes nothing (causal mask + its
    length), so its importance is that of the truncated row."""
    m, X, L = tiny
    X2 = X.copy()
    short = np.flatnonzero(L < X.shape[1])[0]
    X2[short, L[short]:] = 7  # junk after <eos>: not read, not predicted
    np.testing.assert_allclose(hl.structure_importance(m, X, L)[0],
                               hl.structure_importance(m, X2, L)[0], atol=1e-15)


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(y=np.zeros(6, int)), ValueError, "y must be None"),
    (dict(lengths=np.ones(6, int)), ValueError, "lengths must be >= 2"),
])
def test_lm_bad_input(tiny, kw, exc, msg):
    m, X, L = tiny
    args = {"X": X, "lengths": L, **kw}
    with pytest.raises(exc, match=msg):
        hl.structure_importance(m, **args)


def test_classifier_still_needs_labels():
    m = nn.TransformerClassifier(vocab_size=20, d_model=8, num_heads=4, d_ff=8, num_layers=2,
                                 max_len=6, n_classes=2, rng=0)
    X, L = _rows(1, T=6)
    with pytest.raises(ValueError, match="y must be given"):
        hl.head_importance(m, X, L)


def test_lm_inputs_not_mutated(tiny):
    m, X, L = tiny
    X0, L0 = X.copy(), L.copy()
    w0 = {k: v.copy() for k, v in m.state_dict().items()}
    hl.structure_importance(m, X, L, form="activation")
    assert np.array_equal(X, X0) and np.array_equal(L, L0)
    assert all(np.array_equal(w0[k], v) for k, v in m.state_dict().items())
    assert all(p.grad is None or isinstance(p, Tensor) for p in m.parameters())
