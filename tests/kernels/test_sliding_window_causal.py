"""Causal (left-only) sliding-window attention, Longformer's autoregressive setting (Beltagy et
al. 2020 §4; Survey §7.2): ``sliding_window_attention_fwd`` / ``_bwd`` with ``causal=True``
(Numba and NumPy twins) against masked dense attention under ``longformer_mask ∧ tril(n)`` on the
tape, forward and gradients, with dilation, global tokens and key padding; a hand-worked
``n = 3``; ``causal=False`` unchanged; bad input; the causal ``LongformerHook``."""

import numpy as np
import pytest

from refimpl.attention import longformer_mask
from refimpl.attention.dense import dense_attention_t
from refimpl.attention.hooks import LongformerHook
from refimpl.kernels.attention import (sliding_window_attention, sliding_window_attention_bwd,
                                       sliding_window_attention_fwd)
from refimpl.nn import Tensor, gradcheck

from _numerics import assert_close as _close

# (n, window, dilation, global positions): plain, dilated, globals at the ends and the middle,
# window = n, dilation wider than the window, a long sequence crossing 64-row tasks
CASES = [(40, 0, 1, ()), (40, 6, 1, ()), (40, 8, 3, (0, 17, 39)), (40, 40, 1, (5,)),
         (40, 2, 7, (1, 2, 3)), (150, 10, 2, (7, 100))]


def _qkv(rng, B=2, H=2, n=40, d=5, dv=3):
    return tuple(rng.standard_normal(s) for s in ((B, H, n, d), (B, H, n, d), (B, H, n, dv)))


def _keep(B, n):
    keep = np.ones((B, 1, n), dtype=bool)
    keep[0, :, n - 7:] = False  # trailing padding
    keep[-1, :, 3:9] = False  # a hole: some causal windows see only padding
    return keep


def _dense_causal(Q, K, V, window, dilation, g, keep, dout):
    """Masked dense attention on the tape under longformer_mask ∧ tril(n) (∧ key padding)."""
    n = Q.shape[2]
    M = (longformer_mask(n, window, dilation, g) & np.tril(np.ones((n, n), bool)))[None, None]
    if keep is not None:
        M = M & keep[:, :, None, :]
    ts = [Tensor(x, requires_grad=True) for x in (Q, K, V)]
    out = dense_attention_t(*ts, M)
    out.backward(dout)
    S = np.where(M, Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1]), -np.inf)
    with np.errstate(divide="ignore"):
        lse = np.logaddexp.reduce(S, axis=-1)
    return out.data, [t.grad for t in ts], lse


def _tol(*arrays, terms):
    # float64 rounding bound of a softmax-weighted sum of `terms` products: a few ulps per
    # term on the largest magnitude involved
    return 8 * terms * np.finfo(np.float64).eps * max(np.abs(a).max() for a in arrays) ** 2


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("n,window,dilation,g", CASES)
def test_causal_matches_masked_dense(backend, n, window, dilation, g, padded):
    rng = np.random.default_rng(3 * n + window + dilation)
    Q, K, V = _qkv(rng, n=n)
    keep = _keep(2, n) if padded else None
    dout = rng.standard_normal(Q.shape[:3] + (V.shape[3],))
    out_ref, grads_ref, lse_ref = _dense_causal(Q, K, V, window, dilation, g, keep, dout)
    out, lse = sliding_window_attention_fwd(Q, K, V, window, dilation, g, keep, causal=True,
                                            backend=backend)
    tol = _tol(Q, K, V, dout, terms=n * Q.shape[-1])
    _close(out, out_ref, tol)
    fin = np.isfinite(lse_ref)
    assert np.array_equal(np.isfinite(lse), fin)
    _close(np.where(fin, lse, 0), np.where(fin, lse_ref, 0), tol)
    grads = sliding_window_attention_bwd(dout, Q, K, V, out, lse, window, dilation, g, keep,
                                         causal=True, backend=backend)
    for got, ref in zip(grads, grads_ref):
        _close(got, ref, tol)
    if keep is None:  # the forward-only API runs the same kernel
        assert np.array_equal(sliding_window_attention(Q, K, V, window, dilation, g,
                                                       causal=True, backend=backend), out)


def test_causal_outputs_ignore_the_future(backend):
    # changing keys/values after position t changes no output at or before t
    rng = np.random.default_rng(5)
    Q, K, V = _qkv(rng, n=50)
    out = sliding_window_attention(Q, K, V, 8, 2, (0, 30), causal=True, backend=backend)
    K2, V2 = K.copy(), V.copy()
    K2[:, :, 31:] += 5.0
    V2[:, :, 31:] -= 3.0
    out2 = sliding_window_attention(Q, K2, V2, 8, 2, (0, 30), causal=True, backend=backend)
    assert np.array_equal(out[:, :, :31], out2[:, :, :31])
    assert not np.array_equal(out[:, :, 31:], out2[:, :, 31:])


def test_hand_worked_n3_window2(backend):
    # n = 3, w = 2 (one key each side), causal: row 0 sees {0}, row 1 {0, 1}, row 2 {1, 2}.
    # Q = 0 makes every allowed score 0: uniform weights over the allowed keys.
    Q = np.zeros((1, 1, 3, 2))
    K = np.arange(6, dtype=float).reshape(1, 1, 3, 2)
    V = np.array([1.0, 2.0, 4.0]).reshape(1, 1, 3, 1)
    out, lse = sliding_window_attention_fwd(Q, K, V, 2, causal=True, backend=backend)
    assert np.array_equal(out[0, 0, :, 0], [1.0, 1.5, 3.0])
    _close(lse[0, 0], np.log([1.0, 2.0, 2.0]), 4 * np.finfo(float).eps)
    # non-causal: row 0 sees {0, 1}, row 2 {1, 2}, row 1 all three
    out_nc = sliding_window_attention(Q, K, V, 2, backend=backend)
    _close(out_nc[0, 0, :, 0], [1.5, 7.0 / 3.0, 3.0], 4 * np.finfo(float).eps)
    # a global position 2: seen by no earlier query under causality; it sees 0, 1, 2 itself
    out_g = sliding_window_attention(Q, K, V, 2, 1, (2,), causal=True, backend=backend)
    _close(out_g[0, 0, :, 0], [1.0, 1.5, 7.0 / 3.0], 4 * np.finfo(float).eps)
    # dout = 1 on row 1 only: dV = P^T dout = (1/2, 1/2, 0)
    dout = np.zeros_like(out)
    dout[0, 0, 1] = 1.0
    _, _, dV = sliding_window_attention_bwd(dout, Q, K, V, out, lse, 2, causal=True,
                                            backend=backend)
    assert np.array_equal(dV[0, 0, :, 0], [0.5, 0.5, 0.0])


@pytest.mark.parametrize("n,window,dilation,g", CASES[:4])
def test_default_is_non_causal_bit_for_bit(backend, n, window, dilation, g):
    rng = np.random.default_rng(n)
    Q, K, V = _qkv(rng, n=n)
    a = sliding_window_attention_fwd(Q, K, V, window, dilation, g, backend=backend)
    b = sliding_window_attention_fwd(Q, K, V, window, dilation, g, causal=False, backend=backend)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    if window:  # and causal really differs
        c = sliding_window_attention_fwd(Q, K, V, window, dilation, g, causal=True,
                                         backend=backend)
        assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("bad", [1, "yes", None, 1.0])
def test_causal_must_be_bool(backend, bad):
    rng = np.random.default_rng(0)
    Q, K, V = _qkv(rng, n=8)
    with pytest.raises(TypeError, match="causal"):
        sliding_window_attention_fwd(Q, K, V, 2, causal=bad, backend=backend)
    with pytest.raises(TypeError, match="causal"):
        sliding_window_attention(Q, K, V, 2, causal=bad, backend=backend)
    out, lse = sliding_window_attention_fwd(Q, K, V, 2, backend=backend)
    with pytest.raises(TypeError, match="causal"):
        sliding_window_attention_bwd(out, Q, K, V, out, lse, 2, causal=bad, backend=backend)
    with pytest.raises(TypeError, match="causal"):
        LongformerHook(2, causal=bad)


# ------------------------------------------------------------------ the causal LongformerHook
def _hook_grads(hook, Q, K, V, mask, dout):
    ts = [Tensor(x, requires_grad=True) for x in (Q, K, V)]
    out = hook(*ts, mask)
    out.backward(dout)
    return out.data, [t.grad for t in ts]


def _lm_masks(B, n):
    # what TransformerLanguageModel passes: tril(n), alone or with key padding
    tril = np.tril(np.ones((n, n), dtype=bool))[None, None]
    pad = np.ones((B, 1, 1, n), dtype=bool)
    pad[1, ..., n - 4:] = False
    return [None, tril, tril & pad, pad]


@pytest.mark.parametrize("window,dilation,g", [(4, 1, ()), (6, 2, (0, 5)), (20, 1, (3,))])
def test_causal_hook_fused_equals_masked_dense(backend, window, dilation, g):
    rng = np.random.default_rng(window + dilation)
    Q, K, V = _qkv(rng, n=15)
    dout = rng.standard_normal((2, 2, 15, 3))
    tol = _tol(Q, K, V, dout, terms=15 * 5)
    for m in _lm_masks(2, 15):
        o_d, g_d = _hook_grads(LongformerHook(window, dilation, g, causal=True), Q, K, V, m,
                               dout)
        o_f, g_f = _hook_grads(LongformerHook(window, dilation, g, fused=True, causal=True,
                                              backend=backend), Q, K, V, m, dout)
        _close(o_f, o_d, tol)
        for a, b in zip(g_f, g_d):
            _close(a, b, tol)


@pytest.mark.parametrize("padded", [False, True])
def test_causal_hook_gradcheck(backend, padded):
    rng = np.random.default_rng(11)
    Q, K, V = _qkv(rng, B=1, H=1, n=7, d=3, dv=2)
    mask = np.tril(np.ones((7, 7), dtype=bool))[None, None]
    if padded:
        mask = mask & (np.arange(7) < 5)[None, None, None, :]
    hook = LongformerHook(2, 2, (1,), fused=True, causal=True, backend=backend)
    res = gradcheck(lambda q, k, v: hook(q, k, v, mask), [Q, K, V])
    assert res["max_abs_err"] < 1e-7


def test_causal_hook_refuses_other_masks():
    rng = np.random.default_rng(8)
    Q, K, V = _qkv(rng, n=8)
    ts = [Tensor(x) for x in (Q, K, V)]
    with pytest.raises(ValueError, match="mask"):  # anti-causal: not tril
        LongformerHook(2, fused=True, causal=True)(
            *ts, np.triu(np.ones((8, 8), dtype=bool)))
    with pytest.raises(ValueError, match="causal=True"):  # the causal mask, non-causal hook
        LongformerHook(2, fused=True)(*ts, np.tril(np.ones((8, 8), bool)))


def test_causal_hook_in_a_transformer_lm(backend, monkeypatch):
    """A causal LM with the fused causal Longformer hook: same loss and parameter gradients as
    the masked-dense causal hook, and no output depends on a later token."""
    from refimpl.nn import TransformerLanguageModel

    monkeypatch.setenv("REFIMPL_BACKEND", backend)
    rng = np.random.default_rng(4)
    X = rng.integers(1, 10, size=(3, 12))
    L = np.array([12, 9, 6])  # with key padding: the hook receives tril(n) ∧ padding
    X[1, 9:] = 0
    X[2, 6:] = 0

    def run(fused):
        return TransformerLanguageModel(
            vocab_size=10, d_model=8, num_heads=2, d_ff=16, num_layers=2, max_len=12, rng=0,
            attention=LongformerHook(4, causal=True, fused=fused, backend=backend))

    models = [run(False), run(True)]
    logits = [m(X, L) for m in models]
    for lg in logits:
        (lg * lg).sum().backward()
    _close(logits[1].data, logits[0].data, 1e-10)
    pa, pb = models[0].parameters(), models[1].parameters()
    assert len(pa) == len(pb)
    for a, b in zip(pa, pb):
        _close(b.grad, a.grad, 1e-10)
    X2 = X.copy()
    X2[:, 5:] = np.where(X2[:, 5:] > 0, 1 + X2[:, 5:] % 9, 0)
    assert np.array_equal(models[1](X2, L).data[:, :5], logits[1].data[:, :5])


def test_torch_twin(backend, torch):
    """torch's scaled_dot_product_attention under the boolean mask longformer_mask ∧ tril(n)
    (float64 autograd): output and the gradients of q, k, v."""
    rng = np.random.default_rng(21)
    n, window, dilation, g = 70, 8, 2, (0, 33)
    Q, K, V = _qkv(rng, n=n)
    dout = rng.standard_normal(Q.shape[:3] + (V.shape[3],))
    M = longformer_mask(n, window, dilation, g) & np.tril(np.ones((n, n), bool))
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (Q, K, V))
    to = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv,
                                                          attn_mask=torch.tensor(M))
    to.backward(torch.tensor(dout))
    out, lse = sliding_window_attention_fwd(Q, K, V, window, dilation, g, causal=True,
                                            backend=backend)
    grads = sliding_window_attention_bwd(dout, Q, K, V, out, lse, window, dilation, g,
                                         causal=True, backend=backend)
    tol = _tol(Q, K, V, dout, terms=n * Q.shape[-1])
    _close(out, to.detach().numpy(), tol)
    for got, t in zip(grads, (tq, tk, tv)):
        _close(got, t.grad.numpy(), tol)
