"""Differentiable sliding-window attention (Longformer, Survey §7.2): forward + row log-sum-exp
and backward kernels (Numba vs NumPy reference) against masked dense attention on the tape, and
the fused LongformerHook against the masked-dense one."""

import tracemalloc

import numpy as np
import pytest

from refimpl.attention import longformer_mask
from refimpl.attention.dense import dense_attention_t
from refimpl.attention.hooks import LongformerHook
from refimpl.kernels.attention import sliding_window_attention_bwd, sliding_window_attention_fwd
from refimpl.nn import Tensor, gradcheck

from _numerics import assert_close as _close

CASES = [(40, 0, 1, ()), (40, 6, 1, ()), (40, 8, 3, (0, 17, 39)), (40, 40, 1, (5,)),
         (40, 2, 7, (1, 2, 3)), (150, 10, 2, (7, 100))]


def _qkv(rng, B=2, H=2, n=40, d=5, dv=3, dtype=np.float64):
    return tuple(rng.standard_normal(s).astype(dtype)
                 for s in ((B, H, n, d), (B, H, n, d), (B, H, n, dv)))




def _keep(B, n):
    keep = np.ones((B, 1, n), dtype=bool)  # (B, 1, n): True = real key
    keep[0, :, n - 7:] = False  # trailing padding
    keep[-1, :, 3:9] = False  # a hole (some windows see only padding)
    return keep


def _dense(Q, K, V, window, dilation, g, keep, dout):
    """Masked dense attention on the tape: output, gradients, and the row log-sum-exp."""
    n = Q.shape[2]
    M = longformer_mask(n, window, dilation, g)[None, None]
    if keep is not None:
        M = M & keep[:, :, None, :]
    ts = [Tensor(x, requires_grad=True) for x in (Q, K, V)]
    out = dense_attention_t(*ts, M)
    out.backward(dout)
    S = np.where(M, Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1]), -np.inf)
    with np.errstate(divide="ignore"):
        lse = np.logaddexp.reduce(S, axis=-1)
    return out.data, [t.grad for t in ts], lse


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("n,window,dilation,g", CASES)
def test_forward_and_backward_match_masked_dense(backend, n, window, dilation, g, padded):
    rng = np.random.default_rng(n + window + dilation)
    Q, K, V = _qkv(rng, n=n)
    keep = _keep(2, n) if padded else None
    dout = rng.standard_normal(Q.shape[:3] + (V.shape[3],))
    out_ref, grads_ref, lse_ref = _dense(Q, K, V, window, dilation, g, keep, dout)
    out, lse = sliding_window_attention_fwd(Q, K, V, window, dilation, g, keep, backend=backend)
    _close(out, out_ref)
    _close(np.where(np.isfinite(lse_ref), lse, 0), np.where(np.isfinite(lse_ref), lse_ref, 0))
    assert np.array_equal(np.isfinite(lse), np.isfinite(lse_ref))
    grads = sliding_window_attention_bwd(dout, Q, K, V, out, lse, window, dilation, g, keep,
                                         backend=backend)
    for got, ref in zip(grads, grads_ref):
        _close(got, ref)
    if padded:  # padded keys get no gradient; rows whose keys are all padding output zero
        for x in grads[1:]:
            assert np.abs(x[0, :, n - 7:]).max() == 0.0
        if window == 0:
            assert np.abs(out[-1, :, 3:9]).max() == 0.0 and np.all(np.isneginf(lse[-1, :, 3:9]))


def test_long_sequence_crosses_row_tasks(backend):
    # longer than the 64-row tasks / blocks; head-dependent padding
    rng = np.random.default_rng(3)
    Q, K, V = _qkv(rng, B=1, H=2, n=300, d=4, dv=3)
    keep = np.ones((1, 2, 300), dtype=bool)
    keep[0, 1, 250:] = False
    dout = rng.standard_normal((1, 2, 300, 3))
    out_ref, grads_ref, _ = _dense(Q, K, V, 32, 2, (7, 280), keep, dout)
    out, lse = sliding_window_attention_fwd(Q, K, V, 32, 2, (7, 280), keep, backend=backend)
    _close(out, out_ref)
    for got, ref in zip(sliding_window_attention_bwd(dout, Q, K, V, out, lse, 32, 2, (7, 280),
                                                     keep, backend=backend), grads_ref):
        _close(got, ref)


def test_float32(backend):
    rng = np.random.default_rng(4)
    Q, K, V = _qkv(rng, dtype=np.float32)
    dout = rng.standard_normal((2, 2, 40, 3)).astype(np.float32)
    out, lse = sliding_window_attention_fwd(Q, K, V, 8, 2, (3,), backend=backend)
    grads = sliding_window_attention_bwd(dout, Q, K, V, out, lse, 8, 2, (3,), backend=backend)
    assert out.dtype == lse.dtype == np.float32 and all(x.dtype == np.float32 for x in grads)
    out_ref, grads_ref, _ = _dense(*(x.astype(np.float64) for x in (Q, K, V)), 8, 2, (3,), None,
                                   dout.astype(np.float64))
    _close(out, out_ref, 1e-5)
    for got, ref in zip(grads, grads_ref):
        _close(got, ref, 1e-4)


def test_bad_input(backend):
    rng = np.random.default_rng(5)
    Q, K, V = _qkv(rng, n=10)
    with pytest.raises(ValueError, match="window"):
        sliding_window_attention_fwd(Q, K, V, 12, backend=backend)
    with pytest.raises(TypeError, match="key_keep"):
        sliding_window_attention_fwd(Q, K, V, 2, key_keep=np.ones(10), backend=backend)
    with pytest.raises(ValueError, match="key_keep"):
        sliding_window_attention_fwd(Q, K, V, 2, key_keep=np.ones(9, bool), backend=backend)
    out, lse = sliding_window_attention_fwd(Q, K, V, 2, backend=backend)
    with pytest.raises(ValueError, match="dout"):
        sliding_window_attention_bwd(out[..., :2], Q, K, V, out, lse, 2, backend=backend)
    with pytest.raises(ValueError, match="lse"):
        sliding_window_attention_bwd(out, Q, K, V, out, lse[..., :5], 2, backend=backend)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_inputs_are_refused_naming_the_argument(backend, bad):
    # forward and backward refuse NaN/inf in every array argument, naming it; lse may be -inf
    # (a row without keys) but not NaN or +inf
    rng = np.random.default_rng(6)
    Q, K, V = _qkv(rng, n=12)
    keep = np.ones((2, 1, 12), dtype=bool)
    keep[0, :, :5] = False  # rows 0..1 (window 2) see only padding: lse = -inf there
    out, lse = sliding_window_attention_fwd(Q, K, V, 2, key_keep=keep, backend=backend)
    assert np.isneginf(lse).any()
    dout = rng.standard_normal(out.shape)
    sliding_window_attention_bwd(dout, Q, K, V, out, lse, 2, key_keep=keep, backend=backend)
    for i, name in enumerate(("Q", "K", "V")):
        args = [Q.copy(), K.copy(), V.copy()]
        args[i][1, 0, 7, 1] = bad
        with pytest.raises(ValueError, match=f"^{name} contains NaN or inf$"):
            sliding_window_attention_fwd(*args, 2, backend=backend)
        with pytest.raises(ValueError, match=f"^{name} contains NaN or inf$"):
            sliding_window_attention_bwd(dout, *args, out, lse, 2, backend=backend)
    for name in ("dout", "out"):
        arrs = {"dout": dout.copy(), "out": out.copy()}
        arrs[name][0, 1, 3, 0] = bad
        with pytest.raises(ValueError, match=f"^{name} contains NaN or inf$"):
            sliding_window_attention_bwd(arrs["dout"], Q, K, V, arrs["out"], lse, 2,
                                         key_keep=keep, backend=backend)
    for v in (np.nan, np.inf):
        lb = lse.copy()
        lb[1, 1, 4] = v
        with pytest.raises(ValueError, match="^lse contains NaN or \\+inf"):
            sliding_window_attention_bwd(dout, Q, K, V, out, lb, 2, key_keep=keep,
                                         backend=backend)


def test_memory_never_n_squared(backend):
    # n = 2048: one float64 n × n matrix is 33.6 MB; forward + backward must stay far below
    rng = np.random.default_rng(6)
    n = 2048
    Q, K, V = _qkv(rng, B=1, H=1, n=n, d=8, dv=8)
    dout = rng.standard_normal(V.shape)
    sliding_window_attention_fwd(Q[..., :64, :], K[..., :64, :], V[..., :64, :], 16,
                                 backend=backend)  # compile outside the measurement
    tracemalloc.start()
    out, lse = sliding_window_attention_fwd(Q, K, V, 32, 2, (0, 1000), backend=backend)
    sliding_window_attention_bwd(dout, Q, K, V, out, lse, 32, 2, (0, 1000), backend=backend)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * n * 8 / 10, f"peak {peak / 1e6:.1f} MB"


# ------------------------------------------------------------------ the fused LongformerHook
def _hook_grads(hook, Q, K, V, mask, dout):
    ts = [Tensor(x, requires_grad=True) for x in (Q, K, V)]
    out = hook(*ts, mask)
    out.backward(dout)
    return out.data, [t.grad for t in ts]


@pytest.mark.parametrize("window,dilation,g", [(4, 1, (-1,)), (6, 2, (0, 5)), (2, 1, ()),
                                               (20, 1, (3,))])
def test_fused_hook_equals_masked_dense_hook(backend, window, dilation, g):
    rng = np.random.default_rng(window + 10 * dilation)
    Q, K, V = _qkv(rng, n=15)  # odd n: the hook clips the window to n - 1
    mask = np.ones((2, 1, 1, 15), dtype=bool)  # key padding as MultiHeadAttention passes it
    mask[1, ..., 11:] = False
    dout = rng.standard_normal((2, 2, 15, 3))
    for m in (None, mask):
        o_d, g_d = _hook_grads(LongformerHook(window, dilation, g), Q, K, V, m, dout)
        o_f, g_f = _hook_grads(LongformerHook(window, dilation, g, fused=True, backend=backend),
                               Q, K, V, m, dout)
        _close(o_f, o_d, 1e-10)
        for a, b in zip(g_f, g_d):
            _close(a, b, 1e-10)


@pytest.mark.parametrize("padded", [False, True])
def test_fused_hook_gradcheck(backend, padded):
    rng = np.random.default_rng(7)
    Q, K, V = _qkv(rng, B=1, H=1, n=7, d=3, dv=2)
    mask = None
    if padded:
        mask = np.ones((1, 1, 1, 7), dtype=bool)
        mask[..., 5:] = False
    hook = LongformerHook(2, 2, (1,), fused=True, backend=backend)
    res = gradcheck(lambda q, k, v: hook(q, k, v, mask), [Q, K, V])
    assert res["max_abs_err"] < 1e-7


def test_fused_hook_rejects_general_masks(backend):
    rng = np.random.default_rng(8)
    Q, K, V = _qkv(rng, n=8)
    hook = LongformerHook(2, fused=True, backend=backend)
    with pytest.raises(ValueError, match="mask"):
        hook(*(Tensor(x) for x in (Q, K, V)), np.tril(np.ones((8, 8), dtype=bool)))
    # a full-size mask that is a key-padding mask is accepted
    m = np.broadcast_to(np.arange(8) < 6, (2, 1, 8, 8))
    out = hook(*(Tensor(x) for x in (Q, K, V)), m).data
    _close(out, LongformerHook(2)(*(Tensor(x) for x in (Q, K, V)), m).data, 1e-12)


def test_fused_hook_trains_like_dense_in_classifier(backend, monkeypatch):
    """Same model, same batch: the fused and masked-dense Longformer hooks give the same loss
    and the same gradient for every parameter."""
    from refimpl.nn import TransformerClassifier, cross_entropy

    # the whole model on this backend: its GELU dispatches a kernel too (refimpl.kernels.gelu)
    monkeypatch.setenv("REFIMPL_BACKEND", backend)

    rng = np.random.default_rng(9)
    X = rng.integers(1, 12, size=(4, 12))
    lengths = np.array([12, 9, 12, 7])
    X[np.arange(12)[None, :] >= lengths[:, None]] = 0
    y = np.array([0, 1, 1, 0])
    grads = []
    for fused in (False, True):
        model = TransformerClassifier(vocab_size=12, d_model=8, num_heads=2, d_ff=16,
                                      num_layers=2, max_len=12, n_classes=2, rng=0,
                                      attention=LongformerHook(4, 1, (0,), fused=fused,
                                                               backend=backend))
        loss = cross_entropy(model(X, lengths), y)
        loss.backward()
        grads.append((float(loss.data), {k: p.grad for k, p in model.named_parameters()}))
    assert abs(grads[0][0] - grads[1][0]) < 1e-12
    for k, gd in grads[0][1].items():
        _close(grads[1][1][k], gd, 1e-10)
