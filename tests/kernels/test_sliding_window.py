"""The one sliding-window band implementation (Longformer, Survey §7.2): the forward-only API and
the forward with log-sum-exp share their kernels; edge cases of the band kernel (padding beside
global keys, empty residue classes, float32 with padding) against masked dense attention; the
split of the attention kernels into method modules."""

import numpy as np
import pytest

from refimpl.attention import dense_attention, longformer_mask
from refimpl.kernels import attention, block_sparse_attention, causal_linear, record_calls
from refimpl.kernels import sliding_window as sw

from _numerics import assert_close as _close


def _qkv(rng, B=2, H=2, n=40, d=8, dv=6, dtype=np.float64):
    return tuple(rng.standard_normal(s).astype(dtype)
                 for s in ((B, H, n, d), (B, H, n, d), (B, H, n, dv)))


def _dense_lse(Q, K, M):
    S = np.where(M, Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1]), -np.inf)
    with np.errstate(divide="ignore"):
        return np.logaddexp.reduce(S, axis=-1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n,window,dilation,g", [(40, 6, 1, ()), (150, 10, 3, (0, 77, 149)),
                                                 (200, 64, 1, (5,))])
def test_forward_apis_run_the_same_kernel(backend, dtype, n, window, dilation, g):
    # sliding_window_attention is sliding_window_attention_fwd without padding, lse dropped:
    # bit for bit, one dispatch each, under their own names
    rng = np.random.default_rng(n + window)
    Q, K, V = _qkv(rng, n=n, dtype=dtype)
    with record_calls() as log:
        out = sw.sliding_window_attention(Q, K, V, window, dilation, g, backend=backend)
        out_fwd, lse = sw.sliding_window_attention_fwd(Q, K, V, window, dilation, g,
                                                       backend=backend)
    assert [k for k, _ in log] == ["sliding_window_attention", "sliding_window_attention_fwd"]
    assert out.dtype == lse.dtype == dtype
    assert np.array_equal(out, out_fwd)
    M = longformer_mask(n, window, dilation, g)
    ref = dense_attention(*(x.astype(np.float64) for x in (Q, K, V)), M)
    _close(out, ref, 1e-12 if dtype == np.float64 else 1e-5)
    _close(lse, _dense_lse(*(x.astype(np.float64) for x in (Q, K)), M),
           1e-12 if dtype == np.float64 else 1e-5)


def test_padded_window_beside_a_real_global_key(backend):
    # rows whose whole window is padding still attend to a real global key outside it (their
    # output is that key's value, their lse its score); a padded global key gets no weight
    rng = np.random.default_rng(1)
    n = 64
    Q, K, V = _qkv(rng, B=1, H=2, n=n, d=5, dv=3)
    keep = np.ones((1, 2, n), dtype=bool)
    keep[0, 0, 20:40] = False  # head 0: a hole wider than the window (w = 6)
    keep[0, :, 63] = False  # global key 63 is padding
    g = (2, 63)
    out, lse = sw.sliding_window_attention_fwd(Q, K, V, 6, 1, g, keep, backend=backend)
    M = longformer_mask(n, 6, 1, g)[None, None] & keep[:, :, None, :]  # (1, 2, n, n)
    _close(out, dense_attention(Q, K, V, M))
    _close(lse, _dense_lse(Q, K, M))
    _close(out[0, 0, 25:35], np.broadcast_to(V[0, 0, 2], (10, 3)))  # only key 2 is real
    _close(lse[0, 0, 25:35], Q[0, 0, 25:35] @ K[0, 0, 2] / np.sqrt(5))
    V2 = V.copy()
    V2[:, :, 63] = 1e3  # the padded global key's value changes nothing
    assert np.array_equal(sw.sliding_window_attention_fwd(Q, K, V2, 6, 1, g, keep,
                                                          backend=backend)[0], out)


@pytest.mark.parametrize("dilation", [7, 39, 50])
def test_dilation_with_short_and_empty_residue_classes(backend, dilation):
    # dilation close to or above n: residue classes of one position or none (empty segments)
    rng = np.random.default_rng(dilation)
    Q, K, V = _qkv(rng, n=40)
    out = attention.sliding_window_attention(Q, K, V, 4, dilation, (3,), backend=backend)
    _close(out, dense_attention(Q, K, V, longformer_mask(40, 4, dilation, (3,))))


def test_float32_padding_at_the_benchmark_shape(backend):
    # d = 64, w = 256, several query blocks, head-dependent padding and global keys, float32
    # against float64 masked dense attention (the padded band entries go through the
    # vectorised exp as -inf)
    rng = np.random.default_rng(2)
    n = 1024
    Q, K, V = _qkv(rng, B=1, H=2, n=n, d=64, dv=64, dtype=np.float32)
    keep = np.ones((1, 2, n), dtype=bool)
    keep[0, 0, 900:] = False
    keep[0, 1, 100:500:3] = False
    g = (0, 513, 950)
    out, lse = sw.sliding_window_attention_fwd(Q, K, V, 256, 2, g, keep, backend=backend)
    assert out.dtype == lse.dtype == np.float32
    M = longformer_mask(n, 256, 2, g)[None, None] & keep[:, :, None, :]
    Q64, K64, V64 = (x.astype(np.float64) for x in (Q, K, V))
    _close(out, dense_attention(Q64, K64, V64, M), 5e-6)
    _close(lse, _dense_lse(Q64, K64, M), 5e-6)


def test_attention_module_reexports_the_method_modules():
    # refimpl.kernels.attention is a compatibility re-export of one module per method
    assert attention.sliding_window_attention is sw.sliding_window_attention
    assert attention.sliding_window_attention_fwd is sw.sliding_window_attention_fwd
    assert attention.sliding_window_attention_bwd is sw.sliding_window_attention_bwd
    assert attention.check_window is sw.check_window
    assert attention.block_sparse_attention is block_sparse_attention.block_sparse_attention
    assert attention.causal_linear_attention is causal_linear.causal_linear_attention
    assert sorted(attention.__all__) == sorted(sw.__all__ + block_sparse_attention.__all__
                                               + causal_linear.__all__)
    for mod, section in ((sw, "§7.2"), (block_sparse_attention, "§7.1"),
                         (causal_linear, "§7.2")):
        assert section in mod.__doc__ and "References" in mod.__doc__


@pytest.mark.parametrize("bad", ["0", [0.5], [True], "ab"])
def test_check_window_refuses_non_integer_global_idx(bad):
    from refimpl.kernels.sliding_window import check_window

    with pytest.raises(TypeError, match="global_idx"):
        check_window(4, 1, bad, 16)
