"""Attention kernels (Numba vs NumPy reference vs masked dense attention vs torch SDPA)."""

import numpy as np
import pytest

from refimpl.attention import dense_attention, linear_attention_quadratic, longformer_mask
from refimpl.attention.linear import elu_feature_map
from refimpl.kernels.attention import (
    _exp_approx,
    block_sparse_attention,
    causal_linear_attention,
    sliding_window_attention,
)

from _numerics import assert_close as _close


def _qkv(rng, B=2, H=2, n=40, d=8, dv=6, dtype=np.float64):
    return tuple(rng.standard_normal(s).astype(dtype)
                 for s in ((B, H, n, d), (B, H, n, d), (B, H, n, dv)))




@pytest.mark.parametrize("window,dilation,g", [(0, 1, ()), (6, 1, ()), (8, 3, ()),
                                               (10, 2, (0, 17, 39)), (40, 1, (5,)),
                                               (2, 7, (1, 2, 3))])
def test_sliding_window_matches_masked_dense(backend, window, dilation, g):
    rng = np.random.default_rng(window * 10 + dilation)
    Q, K, V = _qkv(rng)
    out = sliding_window_attention(Q, K, V, window, dilation, g, backend=backend)
    _close(out, dense_attention(Q, K, V, longformer_mask(40, window, dilation, g)))


def test_sliding_window_long_sequence_blocks(backend):
    # longer than the NumPy reference's query block (256) and the Numba row task (64)
    rng = np.random.default_rng(1)
    Q, K, V = _qkv(rng, B=1, H=1, n=600, d=4, dv=3)
    out = sliding_window_attention(Q, K, V, 32, 2, (7, 300), backend=backend)
    _close(out, dense_attention(Q, K, V, longformer_mask(600, 32, 2, (7, 300))))


def test_sliding_window_float32(backend):
    rng = np.random.default_rng(2)
    Q, K, V = _qkv(rng, dtype=np.float32)
    out = sliding_window_attention(Q, K, V, 8, backend=backend)
    assert out.dtype == np.float32
    ref = dense_attention(*(x.astype(np.float64) for x in (Q, K, V)), longformer_mask(40, 8))
    _close(out, ref, 1e-5)


@pytest.mark.parametrize("dtype,lo,tol", [(np.float32, -87.0, 2e-7), (np.float64, -708.0, 1e-15)])
def test_exp_approximation_error(dtype, lo, tol):
    # the Numba softmax's vectorised exp over its whole argument range [lo, 0] (row maximum
    # subtracted); measured maxima: 8.3e-8 (float32), 3.1e-16 (float64)
    x = np.concatenate([np.linspace(lo, 0, 400_001), -np.logspace(-30, np.log10(-lo), 20_001),
                        [0.0, -np.log(2) / 2, lo]]).astype(dtype)
    got = _exp_approx(x)
    assert got.dtype == dtype
    ref = np.exp(x.astype(np.float64))
    rel = np.abs(got - ref) / ref
    assert rel.max() <= tol, f"max rel err {rel.max():.3e} at x={x[rel.argmax()]}"
    assert got[x == 0].tolist() == [1.0] * int(np.sum(x == 0))  # exp(0) is exactly 1
    # below the smallest normal's log: flushed to 0 (true value < 1.2e-38 / 2.3e-308)
    below = _exp_approx(np.array([lo - 0.5, 10 * lo, -np.inf], dtype=dtype))
    assert below.tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(_exp_approx(np.array([-1.0, np.nan], dtype=dtype))[1])
    with pytest.raises(ValueError, match="x must be <= 0"):
        _exp_approx(np.array([0.5], dtype=dtype))


@pytest.mark.parametrize("dilation,g", [(1, ()), (2, (0, 700, 1023))])
def test_sliding_window_float32_benchmark_shape(backend, dilation, g):
    # the benchmark's regime (d = 64, w = 256, several query blocks) in float32, against float64
    # masked dense attention: float32 scores, exp and accumulation give errors ~1e-6
    rng = np.random.default_rng(8)
    Q, K, V = _qkv(rng, B=1, H=2, n=1024, d=64, dv=64, dtype=np.float32)
    out = sliding_window_attention(Q, K, V, 256, dilation, g, backend=backend)
    assert out.dtype == np.float32
    ref = dense_attention(*(x.astype(np.float64) for x in (Q, K, V)),
                          longformer_mask(1024, 256, dilation, g))
    _close(out, ref, 5e-6)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 3e-5)])
def test_sliding_window_wide_score_range(backend, dtype, tol):
    # scores spread over hundreds: most numerators underflow (flushed to 0) and the softmax is
    # nearly one-hot; still equal to masked dense attention (float32: scores of size ~200 are
    # rounded by ~1e-5, so the weights carry relative errors ~1e-5 whatever the exp)
    rng = np.random.default_rng(9)
    Q, K, V = _qkv(rng, B=1, H=1, n=200, d=16, dv=5)
    Q = (Q * 40).astype(dtype)
    K, V = K.astype(dtype), V.astype(dtype)
    out = sliding_window_attention(Q, K, V, 20, 1, (3,), backend=backend)
    ref = dense_attention(*(x.astype(np.float64) for x in (Q, K, V)),
                          longformer_mask(200, 20, 1, (3,)))
    _close(out, ref, tol)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", [0, 1, 2])
def test_nonfinite_inputs_are_refused_naming_the_argument(backend, bad, which):
    # one policy for every public attention kernel, both backends: NaN/inf in an input is a
    # ValueError naming it (the chapter wrappers refuse NaN too); nothing is computed
    rng = np.random.default_rng(10)
    Q, K, V = _qkv(rng, B=1, H=1, n=40, d=8, dv=4, dtype=np.float32)
    args = [Q.copy(), K.copy(), V.copy()]
    args[which][0, 0, 17, 2] = bad
    name = ("Q", "K", "V")[which]
    with pytest.raises(ValueError, match=f"^{name} contains NaN or inf$"):
        sliding_window_attention(*args, 10, backend=backend)
    with pytest.raises(ValueError, match=f"^{name} contains NaN or inf$"):
        sliding_window_attention(*args, 10, 2, (3,), backend=backend)
    with pytest.raises(ValueError, match=f"^{name} contains NaN or inf$"):
        block_sparse_attention(*args, np.ones((8, 8), bool), 5, backend=backend)
    phi = [elu_feature_map(Q), elu_feature_map(K), V.copy()]
    phi[which][0, 0, 17, 2] = abs(bad)  # +inf / NaN: non-negative feature maps stay so
    with pytest.raises(ValueError, match=f"^{('phiQ', 'phiK', 'V')[which]} contains NaN or inf$"):
        causal_linear_attention(*phi, backend=backend)
    # the finite inputs still run, on the requested backend (checked by the fixture)
    out = sliding_window_attention(Q, K, V, 10, backend=backend)
    assert np.isfinite(out).all()


def test_causal_linear_eps_must_be_finite_non_negative(backend):
    rng = np.random.default_rng(11)
    Q, K, V = _qkv(rng, n=8)
    fQ, fK = elu_feature_map(Q), elu_feature_map(K)
    for eps in (np.nan, np.inf, -1e-6, "1e-6", True):
        with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
            causal_linear_attention(fQ, fK, V, eps=eps, backend=backend)
    out = causal_linear_attention(fQ, fK, V, eps=0.0, backend=backend)
    _close(out, linear_attention_quadratic(Q, K, V, causal=True, eps=0.0), 1e-11)


def test_sliding_window_vs_torch_band_mask(backend, torch):
    rng = np.random.default_rng(3)
    Q, K, V = _qkv(rng)
    band = longformer_mask(40, 10)
    ref = torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(Q), torch.from_numpy(K), torch.from_numpy(V),
        attn_mask=torch.from_numpy(band)).numpy()
    _close(sliding_window_attention(Q, K, V, 10, backend=backend), ref)


def test_sliding_window_bad_input(backend):
    rng = np.random.default_rng(4)
    Q, K, V = _qkv(rng, n=8)
    with pytest.raises(ValueError, match="window"):
        sliding_window_attention(Q, K, V, 10, backend=backend)
    with pytest.raises(ValueError, match="d mismatch"):
        sliding_window_attention(Q, K[..., :3], V, 2, backend=backend)
    with pytest.raises(ValueError, match="global_idx"):
        sliding_window_attention(Q, K, V, 2, global_idx=(3, 3), backend=backend)
    sliding_window_attention(Q, K, V, 2, backend=backend)  # the fixture needs one dispatch


@pytest.mark.parametrize("per_head", [False, True])
def test_block_sparse_matches_masked_dense(backend, per_head):
    rng = np.random.default_rng(5)
    Q, K, V = _qkv(rng)
    bs, nb = 5, 8
    layout = rng.random((2, nb, nb) if per_head else (nb, nb)) < 0.35
    layout[..., 0, :] = False  # an empty query block gives zero rows
    out = block_sparse_attention(Q, K, V, layout, bs, backend=backend)
    mask = np.kron(layout, np.ones((bs, bs), dtype=bool))
    _close(out, dense_attention(Q, K, V, mask if not per_head else mask[None]))
    assert np.all(out[:, :, :bs] == 0)


def test_block_sparse_bad_input(backend):
    rng = np.random.default_rng(6)
    Q, K, V = _qkv(rng)
    with pytest.raises(ValueError, match="block_size"):
        block_sparse_attention(Q, K, V, np.ones((3, 3), bool), 7, backend=backend)
    with pytest.raises(ValueError, match="layout"):
        block_sparse_attention(Q, K, V, np.ones((3, 3), bool), 5, backend=backend)
    with pytest.raises(TypeError, match="layout"):
        block_sparse_attention(Q, K, V, np.ones((8, 8)), 5, backend=backend)
    block_sparse_attention(Q, K, V, np.eye(8, dtype=bool), 5, backend=backend)


@pytest.mark.parametrize("n", [1, 63, 64, 150])
def test_causal_linear_matches_quadratic(backend, n):
    rng = np.random.default_rng(n)
    Q, K, V = _qkv(rng, n=n)
    out = causal_linear_attention(elu_feature_map(Q), elu_feature_map(K), V, backend=backend)
    _close(out, linear_attention_quadratic(Q, K, V, causal=True), 1e-11)


def test_causal_linear_float32_and_bad_input(backend):
    rng = np.random.default_rng(7)
    Q, K, V = _qkv(rng, dtype=np.float32)
    out = causal_linear_attention(elu_feature_map(Q), elu_feature_map(K), V, backend=backend)
    assert out.dtype == np.float32
    ref = linear_attention_quadratic(*(x.astype(np.float64) for x in (Q, K, V)), causal=True)
    _close(out, ref, 1e-4)
    with pytest.raises(ValueError, match="non-negative"):
        causal_linear_attention(Q, K, V, backend=backend)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_max_exact_every_length_and_padding(dtype):
    # the softmax's eight-lane row maximum is exact (max has no rounding): equal to np.max for
    # every length around the lane count, with -inf (padded keys) anywhere, and -inf for a row
    # of padding
    from refimpl.kernels.attention_common import _row_max

    rng = np.random.default_rng(3)
    for m in list(range(1, 42)) + [257, 320]:
        x = rng.standard_normal(m).astype(dtype)
        assert _row_max(x) == x.max()
        for pos in {0, m // 2, m - 1}:  # the maximum in the first lane, a middle one, the tail
            y = x.copy()
            y[pos] = 10.0
            assert _row_max(y) == 10.0
        y = x.copy()
        y[::3] = -np.inf
        assert _row_max(y) == y.max()
        assert _row_max(np.full(m, -np.inf, dtype=dtype)) == -np.inf
        assert _row_max(x[::-1].copy()) == x.max()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_sum_fixed_lane_order_twin(dtype):
    # _exp_shift_sum's row sum: eight partial sums (lane j adds the elements c = j mod 8 in
    # order), combined pairwise ((0+4)+(2+6))+((1+5)+(3+7)), then the leftovers; the same bits
    # as this NumPy twin of that order, on any CPU, and the numerators equal _exp_approx's
    from refimpl.kernels.attention_common import _exp_shift_sum_f32, _exp_shift_sum_f64

    f = _exp_shift_sum_f32 if dtype == np.float32 else _exp_shift_sum_f64
    rng = np.random.default_rng(4)
    for m in list(range(1, 30)) + [257]:
        x = (4 * rng.standard_normal(m)).astype(dtype)
        mx, scale = x.max(), dtype(0.3)
        got = x.copy()
        s = f(got, mx, scale)
        assert np.array_equal(got, _exp_approx(((x - mx) * scale).astype(dtype)))
        m8 = m - m % 8
        lanes = [dtype(0)] * 8
        for c in range(0, m8, 8):
            lanes = [lanes[j] + got[c + j] for j in range(8)]
        ref = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + \
            ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
        for c in range(m8, m):
            ref = ref + got[c]
        assert s == ref, (m, s, ref)
        assert abs(s - got.astype(np.float64).sum()) <= m * np.finfo(dtype).eps * s


def test_nonfinite_flags_exact():
    # the kernels' in-pass NaN/inf test: 1 iff a NaN or ±inf, for any position and dtype;
    # huge finite values are finite (x·0 = 0); an empty block is finite
    from refimpl.kernels.attention_common import _nonfinite

    for dtype in (np.float32, np.float64):
        x = np.zeros((5, 7), dtype=dtype)
        assert _nonfinite(x) == 0
        assert _nonfinite(np.full((3, 4), np.finfo(dtype).max, dtype=dtype)) == 0
        assert _nonfinite(np.zeros((0, 4), dtype=dtype)) == 0
        assert _nonfinite(np.zeros((4, 0), dtype=dtype)) == 0
        for bad in (np.nan, np.inf, -np.inf):
            for r, c in ((0, 0), (4, 6), (2, 3)):
                y = x.copy()
                y[r, c] = bad
                assert _nonfinite(y) == 1


@pytest.mark.parametrize("dilation,g,keep_pad", [(1, (), False), (3, (64, 199), False),
                                                 (1, (5,), True)])
def test_sliding_window_refuses_nonfinite_at_every_block_edge(backend, dilation, g, keep_pad):
    # the Numba forward checks each query block's own rows as it reads them (no separate pass):
    # a NaN/inf at the first or last row of any block, of any (b, h), in a global position or a
    # padded key is still refused, naming the first bad argument in the order Q, K, V
    from refimpl.kernels.attention import sliding_window_attention_fwd

    rng = np.random.default_rng(11)
    Q, K, V = _qkv(rng, B=2, H=2, n=200, d=8, dv=4, dtype=np.float32)
    keep = None
    if keep_pad:
        keep = np.ones((2, 2, 200), dtype=bool)
        keep[1, 1, 150:] = False  # padded keys: a NaN there is still refused
    for pos in (0, 63, 64, 127, 128, 199, 150):
        for bh in ((0, 0), (1, 1), (0, 1)):
            for which in range(3):
                args = [Q.copy(), K.copy(), V.copy()]
                args[which][bh + (pos, 1)] = np.nan
                name = "QKV"[which]
                with pytest.raises(ValueError, match=f"^{name} contains NaN or inf$"):
                    sliding_window_attention_fwd(*args, 16, dilation, g, key_keep=keep,
                                                 backend=backend)
    args = [Q.copy(), K.copy(), V.copy()]
    args[2][0, 0, 3, 0] = np.inf
    args[1][1, 0, 190, 0] = -np.inf
    with pytest.raises(ValueError, match="^K contains NaN or inf$"):  # K before V
        sliding_window_attention(*args, 16, dilation, g, backend=backend)
    # the finite inputs run, on the requested backend (checked by the fixture)
    assert np.isfinite(sliding_window_attention(Q, K, V, 16, dilation, g, backend=backend)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_gemm_exact_on_views_transposes_and_accumulation(dtype):
    # _gemm (BLAS ?gemm called from compiled code on views): integer-valued operands make
    # every product and sum exact in floating point, so the results must equal NumPy's
    # bit for bit — for N/T operands, strided views (leading dimensions larger than the
    # extent), beta = 0 overwriting garbage and beta = 1 accumulating
    import numba

    from refimpl.kernels.attention_common import _gemm, _gemm_work

    @numba.njit
    def rowmajor(X, Z, Y, beta, ztrans):
        # Y (r × c) = X (r × q) · Z (q × c) or X · Zᵀ (Z: c × q) in BLAS's column-major terms
        work = _gemm_work(Y)
        r, q = X.shape
        c = Y.shape[1]
        if ztrans:
            _gemm(ord("T"), ord("N"), c, r, q, Z, Z.strides[0] // Z.itemsize, X,
                  X.strides[0] // X.itemsize, beta, Y, Y.strides[0] // Y.itemsize, work)
        else:
            _gemm(ord("N"), ord("N"), c, r, q, Z, Z.strides[0] // Z.itemsize, X,
                  X.strides[0] // X.itemsize, beta, Y, Y.strides[0] // Y.itemsize, work)

    rng = np.random.default_rng(5)
    big = rng.integers(-4, 5, (40, 50)).astype(dtype)
    X = big[3:10, 5:16]  # (7, 11) view, row stride 50
    Z = rng.integers(-4, 5, (11, 9)).astype(dtype)
    Zt = np.ascontiguousarray(Z.T)  # (9, 11)
    for beta in (0.0, 1.0):
        for ztrans in (False, True):
            Ybig = np.full((12, 20), np.nan if beta == 0 else 2.0, dtype=dtype)
            Y = Ybig[1:8, 4:13]  # (7, 9) view, row stride 20
            rowmajor(X, Zt if ztrans else Z, Y, beta, ztrans)
            want = X @ Z + (2.0 if beta else 0.0)
            assert np.array_equal(Y, want)
            assert np.isnan(Ybig[0]).all() if beta == 0 else (Ybig[0] == 2).all()  # untouched


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, None)])
def test_sliding_window_wide_window_blas_parts(backend, dtype, tol):
    # a window wide enough that both band products are split into three BLAS calls
    # (64 · 576 · 64 > 2·10⁶), d = d_v = 64, with dilation and a global position
    rng = np.random.default_rng(12)
    Q, K, V = _qkv(rng, B=1, H=1, n=1100, d=64, dv=64, dtype=dtype)
    for dil, g in ((1, ()), (2, (500,))):
        out = sliding_window_attention(Q, K, V, 512, dil, g, backend=backend)
        ref = dense_attention(*(x.astype(np.float64) for x in (Q, K, V)),
                              longformer_mask(1100, 512, dil, g))
        _close(out, ref, tol) if tol else _close(out, ref)


def test_sliding_window_numba_backend_runs_without_jit():
    # under NUMBA_DISABLE_JIT=1 the kernels run as Python: the intrinsics of the direct BLAS
    # calls and of the exp have NumPy stand-ins, and the results agree with the NumPy backend
    import subprocess
    import sys

    code = """
import numpy as np
from refimpl.kernels.attention import sliding_window_attention as f
rng = np.random.default_rng(0)
for dt, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
    Q, K, V = (rng.standard_normal((1, 2, 150, 8)).astype(dt) for _ in range(3))
    for args in ((8,), (100, 3, (5,))):
        a = f(Q, K, V, *args, backend="numba")
        b = f(Q, K, V, *args, backend="numpy")
        assert a.dtype == dt and np.abs(a - b).max() <= tol, (dt, args, np.abs(a - b).max())
print("ok")
"""
    env = dict(__import__("os").environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
