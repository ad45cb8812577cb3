"""Low-bit weight × float activation products (refimpl.kernels.lowbit_gemv): the AVX-512 kernel,
the portable Numba loops and the NumPy reference agree exactly where every partial sum is exact
(small integers, power-of-two scales), and within the float32 rounding bound otherwise; edge
shapes, dtype rules, bad input, and the small-batch dispatch of ``bitpack.kbit_matmul``."""

import numpy as np
import pytest

from refimpl.kernels import bitpack as bp
from refimpl.kernels import lowbit_gemv as lg
from refimpl.kernels import record_calls

U32 = 2.0 ** -24  # float32 unit roundoff
U64 = 2.0 ** -53

# K: one code; fewer codes than one word; one full block of 16 words plus a partial block for
# every width (per = 64, 32, 21, 16 codes per word); not a multiple of 8/32/64 or of per
KS = [1, 37, 300, 1100]
# M: batch chunks 8 / 4 / 2 / 1 and their mixtures; N: one row, an odd row count (the last row
# paired with itself), more than one 64-row block with a ragged last block
MS = [1, 2, 7, 8, 9, 64]
NS = [1, 3, 130]


ISAS = ["avx512", "avx2", "portable"]


def _force_isa(monkeypatch, isa):
    """Force the Numba backend onto one kernel through ``$REFIMPL_LOWBIT_ISA`` (skip when the
    CPU lacks it) and check that the switch took."""
    if lg._ISA_RANK[None if isa == "portable" else isa] > lg._ISA_RANK[lg.cpu_isa()]:
        pytest.skip(f"no {isa} on this CPU")
    monkeypatch.setenv(lg.ISA_ENV, isa)
    assert lg.fast_path_isa() == (None if isa == "portable" else isa)


@pytest.fixture(params=ISAS)
def path(request, monkeypatch):
    """For the Numba backend: the AVX-512 kernel, the AVX2 kernel (each skipped on CPUs
    without it) or the portable loops, forced through ``$REFIMPL_LOWBIT_ISA``."""
    _force_isa(monkeypatch, request.param)
    return request.param


def _codes_case(rng, bits, M, N, K, scale=True):
    codes = rng.integers(0, 2 ** bits, (N, K))
    cb = rng.integers(-8, 9, 2 ** bits).astype(np.float32)
    X = rng.integers(-4, 5, (M, K)).astype(np.float32)
    s = (2.0 ** rng.integers(-3, 4, N)).astype(np.float32) if scale else None
    ref = X.astype(np.float64) @ cb[codes].T.astype(np.float64)
    if scale:
        ref = ref * s
    return codes, cb, X, s, ref


def _run_backends(fn, backend):
    with record_calls() as log:
        Y = fn(backend)
    return Y, log


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("K", KS)
def test_kbit_gemv_exact_on_integers(backend, rng, bits, K):
    for M in MS:
        for N in NS:
            codes, cb, X, s, ref = _codes_case(rng, bits, M, N, K)
            P = bp.pack_codes(codes, bits, backend)
            Y = lg.kbit_gemv(X, P, bits, K, cb, s, backend=backend)
            assert Y.dtype == np.float32 and Y.shape == (M, N)
            np.testing.assert_array_equal(Y, ref, err_msg=f"M={M} N={N} K={K} bits={bits}")


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("K", [300, 1100])
def test_kbit_gemv_both_numba_paths_exact(path, rng, bits, K):
    for M in (1, 7, 9):
        codes, cb, X, s, ref = _codes_case(rng, bits, M, 67, K)
        Y = lg.kbit_gemv(X, bp.pack_codes(codes, bits), bits, K, cb, s, backend="numba")
        np.testing.assert_array_equal(Y, ref, err_msg=f"{path} M={M} bits={bits}")


@pytest.mark.parametrize("K", KS)
def test_binary_and_ternary_exact_on_integers(backend, rng, K):
    for M in MS:
        N = 67
        B = rng.choice([-1.0, 1.0], (N, K))
        T = rng.choice([-1.0, 0.0, 1.0], (N, K))
        X = rng.integers(-4, 5, (M, K)).astype(np.float32)
        alpha = (2.0 ** rng.integers(-3, 4, N)).astype(np.float32)
        Yb = lg.binary_weight_gemv(X, bp.pack_signs(B, backend), K, alpha, backend=backend)
        np.testing.assert_array_equal(Yb, (X.astype(float) @ B.T) * alpha, err_msg=f"M={M}")
        Yt = lg.ternary_weight_gemv(X, bp.pack_ternary(T, backend), K, alpha, backend=backend)
        np.testing.assert_array_equal(Yt, (X.astype(float) @ T.T) * alpha, err_msg=f"M={M}")


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("words", [16, 32, 40])
def test_kbit_gemv_whole_blocks_and_partial_last_block_exact(path, rng, bits, words):
    """Rows of exactly 16 or 32 words (whole blocks of 16 and of 8 words: no partial block,
    no masked load) and of 40 words (a partial last block of 8 on 16 lanes), every batch
    chunk (one-row chunks take the weight rows one at a time, larger ones in pairs), an odd
    row count."""
    K = words * (64 // bits)
    for M in (1, 2, 9):
        codes, cb, X, s, ref = _codes_case(rng, bits, M, 67, K)
        P = bp.pack_codes(codes, bits)
        assert P.shape == (67, words)
        Y = lg.kbit_gemv(X, P, bits, K, cb, s, backend="numba")
        np.testing.assert_array_equal(Y, ref, err_msg=f"{path} M={M} bits={bits} K={K}")
        T = rng.choice([-1.0, 0.0, 1.0], (67, K))
        Yt = lg.ternary_weight_gemv(X, bp.pack_ternary(T), K, s, backend="numba")
        np.testing.assert_array_equal(Yt, (X.astype(float) @ T.T) * s, err_msg=f"{path} M={M}")


def test_binary_and_ternary_both_numba_paths_exact(path, rng):
    K, N = 1100, 67
    B = rng.choice([-1.0, 1.0], (N, K))
    T = rng.choice([-1.0, 0.0, 1.0], (N, K))
    for M in (1, 9):
        X = rng.integers(-4, 5, (M, K)).astype(np.float32)
        np.testing.assert_array_equal(
            lg.binary_weight_gemv(X, bp.pack_signs(B), K, backend="numba"), X @ B.T)
        np.testing.assert_array_equal(
            lg.ternary_weight_gemv(X, bp.pack_ternary(T), K, backend="numba"), X @ T.T)


def _bound(absW, X, s, K, u):
    """Rounding bound of a float sum of K products in any order (γ_K, Higham Thm. 3.1 with
    FMAs or not), one rounding of the row scale, and the float32 inputs taken as exact."""
    g = (K + 1) * u / (1 - (K + 1) * u)
    return g * (np.abs(X).astype(np.float64) @ absW.T) * np.abs(s)[None, :] * (1 + u)


@pytest.mark.parametrize("bits", [1, 3, 4])
@pytest.mark.parametrize("M", [1, 8, 64])
def test_kbit_gemv_random_within_rounding_bound(backend, rng, bits, M):
    N, K = 70, 1100
    codes = rng.integers(0, 2 ** bits, (N, K))
    cb = rng.standard_normal(2 ** bits).astype(np.float32)
    X = rng.standard_normal((M, K)).astype(np.float32)
    s = rng.uniform(0.5, 2, N).astype(np.float32)
    W = cb[codes].astype(np.float64)
    ref = (X.astype(np.float64) @ W.T) * s  # float64 reference of the float32 inputs
    Y = lg.kbit_gemv(X, bp.pack_codes(codes, bits, backend), bits, K, cb, s, backend=backend)
    err = np.abs(Y - ref)
    bound = _bound(np.abs(W), X, s, K, U32) + U32 * np.abs(ref)
    assert np.all(err <= bound), f"max err/bound {(err / bound).max():.3f}"
    assert err.max() > 0  # float32 sums of random values do round: the bound is exercised


def test_float64_input_float64_result_within_bound(backend, rng):
    N, K, M = 40, 300, 3
    codes = rng.integers(0, 8, (N, K))
    cb = rng.standard_normal(8)
    X = rng.standard_normal((M, K))
    Y = lg.kbit_gemv(X, bp.pack_codes(codes, 3, backend), 3, K, cb, backend=backend)
    assert Y.dtype == np.float64
    W = cb[codes]
    ref = X @ W.T
    bound = _bound(np.abs(W), X, np.ones(N), K, U64) + U64 * np.abs(ref)
    assert np.all(np.abs(Y - ref) <= bound)


def test_edge_cases_zero_x_extreme_codes(backend):
    K, N = 1100, 5
    for bits in (1, 2, 3, 4):
        top = 2 ** bits - 1
        cb = np.arange(2 ** bits, dtype=np.float32) - 2.0
        for code in (0, top):
            P = bp.pack_codes(np.full((N, K), code), bits, backend)
            # all-zero activations give exact zeros
            np.testing.assert_array_equal(
                lg.kbit_gemv(np.zeros((3, K), np.float32), P, bits, K, cb, backend=backend),
                np.zeros((3, N)))
            X = np.ones((2, K), np.float32)
            np.testing.assert_array_equal(lg.kbit_gemv(X, P, bits, K, cb, backend=backend),
                                          np.full((2, N), K * cb[code]))
    # binary all −1 / all +1, ternary all −1 (both planes all ones in the valid bits)
    X = np.ones((1, K), np.float32)
    for v in (-1.0, 1.0):
        np.testing.assert_array_equal(
            lg.binary_weight_gemv(X, bp.pack_signs(np.full((N, K), v), backend), K,
                                  backend=backend),
            np.full((1, N), v * K))
        np.testing.assert_array_equal(
            lg.ternary_weight_gemv(X, bp.pack_ternary(np.full((N, K), v), backend), K,
                                   backend=backend),
            np.full((1, N), v * K))


def test_layouts_and_dtypes(backend, rng):
    N, K = 9, 100
    codes = rng.integers(0, 16, (N, K))
    P = bp.pack_codes(codes, 4, backend)
    cb = np.arange(16, dtype=np.float32) - 8
    big = rng.integers(-3, 4, (5, 2 * K)).astype(np.float32)
    X = big[:, ::2]  # non-contiguous
    ref = X @ cb[codes].T
    X0 = X.copy()
    np.testing.assert_array_equal(lg.kbit_gemv(X, P, 4, K, cb, backend=backend), ref)
    np.testing.assert_array_equal(X, X0)  # not mutated
    XT = np.asfortranarray(X)
    np.testing.assert_array_equal(lg.kbit_gemv(XT, P, 4, K, cb, backend=backend), ref)
    y = lg.kbit_gemv(X[0], P, 4, K, cb, backend=backend)  # one vector
    assert y.shape == (N,)
    np.testing.assert_array_equal(y, ref[0])
    Yi = lg.kbit_gemv(X.astype(np.int64), P, 4, K, cb, backend=backend)  # integers → float64
    assert Yi.dtype == np.float64
    np.testing.assert_array_equal(Yi, ref)
    # a scalar scale, and a float64 codebook rounded to float32 for float32 X
    np.testing.assert_array_equal(lg.kbit_gemv(X, P, 4, K, cb.astype(float), 0.5,
                                               backend=backend), 0.5 * ref)


def test_deterministic(rng):
    codes = rng.integers(0, 16, (300, 1000))
    P = bp.pack_codes(codes, 4)
    cb = rng.standard_normal(16).astype(np.float32)
    X = rng.standard_normal((9, 1000)).astype(np.float32)
    a = lg.kbit_gemv(X, P, 4, 1000, cb, backend="numba")
    assert np.array_equal(a, lg.kbit_gemv(X, P, 4, 1000, cb, backend="numba"))


def test_bad_inputs():
    K = 70
    P = bp.pack_codes(np.zeros((3, K), int), 4)
    X = np.ones((2, K), np.float32)
    cb = np.zeros(16)
    with pytest.raises(ValueError, match="X must have K=70"):
        lg.kbit_gemv(np.ones((2, 69)), P, 4, K, cb)
    with pytest.raises(ValueError, match="bits"):
        lg.kbit_gemv(X, P, 5, K, np.zeros(32))
    with pytest.raises(ValueError, match="bits"):
        lg.kbit_gemv(X, P, 0, K, cb)
    with pytest.raises(ValueError, match="packed must have 5 words"):
        lg.kbit_gemv(X, P[:, :4], 4, K, cb)
    with pytest.raises(TypeError, match="packed"):
        lg.kbit_gemv(X, P.astype(np.int64), 4, K, cb)
    with pytest.raises(ValueError, match="codebook"):
        lg.kbit_gemv(X, P, 4, K, np.zeros(8))
    with pytest.raises(ValueError, match="codebook contains NaN"):
        lg.kbit_gemv(X, P, 4, K, np.full(16, np.nan))
    with pytest.raises(ValueError, match="X contains NaN"):
        lg.kbit_gemv(np.full((1, K), np.nan), P, 4, K, cb)
    with pytest.raises(ValueError, match="scale must be a scalar or have shape"):
        lg.kbit_gemv(X, P, 4, K, cb, scale=np.ones(4))
    with pytest.raises(ValueError, match="scale contains NaN"):
        lg.kbit_gemv(X, P, 4, K, cb, scale=np.full(3, np.nan))
    with pytest.raises(TypeError, match="X must be a real"):
        lg.kbit_gemv(X.astype(complex), P, 4, K, cb)
    with pytest.raises(ValueError, match="X must not be empty"):
        lg.kbit_gemv(np.ones((0, K)), P, 4, K, cb)
    Wp = bp.pack_signs(np.ones((3, K)))
    with pytest.raises(ValueError, match="Wp must have 4 words"):
        lg.binary_weight_gemv(np.ones((1, 200)), Wp, 200)
    nz, sg = bp.pack_ternary(np.ones((3, K)))
    with pytest.raises(ValueError, match="sign.*3 rows"):
        lg.ternary_weight_gemv(X, (nz, sg[:2]), K)
    with pytest.raises(TypeError, match="W_planes"):
        lg.ternary_weight_gemv(X, nz, K)


@pytest.mark.parametrize("be", ["numba", "numpy"])
def test_kbit_matmul_dispatches_small_float32_batches(rng, be):
    N, K = 20, 90
    codes = rng.integers(0, 8, (N, K))
    P = bp.pack_codes(codes, 3)
    cb = (np.arange(8) - 4).astype(np.float32)
    for M, dtype, bits, expect in [(1, np.float32, 3, "kbit_gemv"),
                                   (lg.SMALL_BATCH, np.float32, 3, "kbit_gemv"),
                                   (lg.SMALL_BATCH + 1, np.float32, 3, "kbit_matmul"),
                                   (8, np.float64, 3, "kbit_matmul")]:
        X = rng.integers(-3, 4, (M, K)).astype(dtype)
        with record_calls() as log:
            Y = bp.kbit_matmul(X, P, bits, K, cb, backend=be)
        assert log == [(expect, be)], (M, dtype, log)
        assert Y.dtype == dtype
        np.testing.assert_array_equal(Y, X @ cb[codes].T)
    # 5-bit codes are beyond the table kernel: the decode + BLAS path
    c5 = rng.integers(0, 32, (N, K))
    with record_calls() as log:
        bp.kbit_matmul(np.ones((1, K), np.float32), bp.pack_codes(c5, 5), 5, K,
                       np.zeros(32), backend=be)
    assert log[-1] == ("kbit_matmul", be)


def test_portable_path_runs_with_jit_disabled():
    """NUMBA_DISABLE_JIT=1: the portable loops run as plain Python and stay exact."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np\nfrom refimpl.kernels import bitpack as bp, lowbit_gemv as lg\n"
            "assert not lg.fast_path_available() and lg.cpu_isa() is None\n"
            "rng = np.random.default_rng(0)\n"
            "c = rng.integers(0, 8, (3, 50)); x = rng.integers(-3, 4, (2, 50)).astype('f4')\n"
            "cb = np.arange(8, dtype='f4') - 4\n"
            "y = lg.kbit_gemv(x, bp.pack_codes(c, 3), 3, 50, cb, backend='numba')\n"
            "assert np.array_equal(y, x @ cb[c].T)\n"
            "T = rng.choice([-1., 0., 1.], (3, 50))\n"
            "assert np.array_equal(lg.ternary_weight_gemv(x, bp.pack_ternary(T), 50, "
            "backend='numba'), x @ T.T)\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
@pytest.mark.parametrize("serial_macs", [0, 1 << 40])
def test_threaded_and_single_thread_drivers_agree(rng, monkeypatch, serial_macs, isa):
    _force_isa(monkeypatch, isa)
    monkeypatch.setattr(lg, "_SERIAL_MACS", serial_macs)  # force one driver or the other
    monkeypatch.setattr(lg, "_FRONT_ON", False)  # (the compiled front has its own threshold)
    codes, cb, X, s, ref = _codes_case(rng, 4, 9, 130, 300)
    Y = lg.kbit_gemv(X, bp.pack_codes(codes, 4), 4, 300, cb, s, backend="numba")
    np.testing.assert_array_equal(Y, ref)


@pytest.mark.parametrize("isa", ISAS)
def test_dispatch_runs_the_forced_kernel(rng, monkeypatch, isa):
    """Exactly the kernel of the forced ISA runs (spies on the four drivers and the loops),
    for a product small enough for the serial driver and one large enough for the threaded
    one."""
    _force_isa(monkeypatch, isa)
    monkeypatch.setattr(lg, "_FRONT_ON", False)  # the compiled front calls the drivers unspied
    names = ["_lowbit_team512", "_lowbit_avx512_serial", "_lowbit_team2", "_lowbit_avx2_serial",
             "_lowbit_generic"]
    ran = []
    for name in names:
        real = getattr(lg, name)
        monkeypatch.setattr(lg, name, lambda *a, _r=real, _n=name: ran.append(_n) or _r(*a))
    for M, N, K in [(1, 3, 70), (9, 300, 1100)]:  # M N K below / above _SERIAL_MACS
        codes, cb, X, s, ref = _codes_case(rng, 3, M, N, K)
        ran.clear()
        Y = lg.kbit_gemv(X, bp.pack_codes(codes, 3), 3, K, cb, s, backend="numba")
        np.testing.assert_array_equal(Y, ref)
        small = M * N * K < lg._SERIAL_MACS
        want = {"avx512": "_lowbit_team512", "avx2": "_lowbit_team2",
                "portable": "_lowbit_generic"}[isa]
        if isa != "portable" and small:
            want = want.replace("team", "avx") + "_serial"
        assert ran == [want], (M, N, K, ran)
    # float64 activations always take the portable loops
    ran.clear()
    lg.kbit_gemv(X.astype(np.float64), bp.pack_codes(codes, 3), 3, K, cb, backend="numba")
    assert ran == ["_lowbit_generic"]


def test_isa_switch_and_cpu_features(monkeypatch):
    monkeypatch.setenv(lg.ISA_ENV, "sse9")
    with pytest.raises(ValueError, match="REFIMPL_LOWBIT_ISA must be one of"):
        lg.fast_path_isa()
    monkeypatch.setattr(lg, "cpu_isa", lambda: "avx2")
    monkeypatch.setenv(lg.ISA_ENV, "avx512")  # more than the CPU has: refused
    with pytest.raises(ValueError, match="has only avx2"):
        lg.fast_path_isa()
    monkeypatch.setenv(lg.ISA_ENV, "portable")
    assert lg.fast_path_isa() is None and not lg.fast_path_available()
    monkeypatch.delenv(lg.ISA_ENV)
    assert lg.fast_path_isa() == "avx2" and lg.fast_path_available()
    monkeypatch.undo()
    # NUMBA_CPU_FEATURES decides when set: AVX2 needs FMA too
    monkeypatch.delenv(lg.ISA_ENV, raising=False)
    for feats, want in [("+avx2,+fma,-avx512f", "avx2"), ("+avx2,-fma", None),
                        ("+avx2,+fma,+avx512f", "avx512"), ("-avx2,+sse4.2", None)]:
        monkeypatch.setattr(lg.numba.config, "CPU_FEATURES", feats)
        assert lg.cpu_isa() == want, feats


@pytest.mark.parametrize("K", [1, 63, 64, 65, 1100])
def test_packed_binary_and_ternary_gemv_exact(backend, rng, K):
    for M in (1, 2, 7):
        N = 130
        A, B = rng.choice([-1.0, 1.0], (M, K)), rng.choice([-1.0, 1.0], (N, K))
        C = lg.binary_gemv(bp.pack_signs(A, backend), bp.pack_signs(B, backend), K,
                           backend=backend)
        assert C.dtype == np.int32
        np.testing.assert_array_equal(C, (A @ B.T).astype(np.int64))
        TA, TB = rng.choice([-1.0, 0.0, 1.0], (M, K)), rng.choice([-1.0, 0.0, 1.0], (N, K))
        C = lg.ternary_gemv(bp.pack_ternary(TA, backend), bp.pack_ternary(TB, backend),
                            backend=backend)
        np.testing.assert_array_equal(C, (TA @ TB.T).astype(np.int64))
    # extremes: every product −1 (saturated popcounts)
    ones = np.ones((1, K))
    np.testing.assert_array_equal(
        lg.binary_gemv(bp.pack_signs(ones, backend), bp.pack_signs(-ones, backend), K,
                       backend=backend), [[-K]])


@pytest.mark.parametrize("be", ["numba", "numpy"])
def test_packed_products_dispatch_small_batches(rng, be):
    K, N = 100, 9
    B = rng.choice([-1.0, 1.0], (N, K))
    Bp, Bt = bp.pack_signs(B, be), bp.pack_ternary(B, be)
    for M in (1, lg.SMALL_BATCH_PACKED, lg.SMALL_BATCH_PACKED + 1):
        A = rng.choice([-1.0, 1.0], (M, K))
        small = M <= lg.SMALL_BATCH_PACKED
        with record_calls() as log:
            C = bp.binary_gemm(bp.pack_signs(A, be), Bp, K, backend=be)
        assert log[-1] == ("binary_gemv" if small else "binary_gemm", be)
        np.testing.assert_array_equal(C, A @ B.T)
        with record_calls() as log:
            C = bp.ternary_gemm(bp.pack_ternary(A, be), Bt, backend=be)
        assert log[-1] == ("ternary_gemv" if small else "ternary_gemm", be)
        np.testing.assert_array_equal(C, A @ B.T)


def test_avx2_kernel_compiled_for_a_haswell_is_exact(tmp_path):
    """The AVX2 path as an AVX2-only CPU gets it: Numba compiles for Haswell (no AVX-512
    instructions can be emitted), the ISA query picks ``avx2`` by itself, the generated code has
    no zmm register, and every kind of weight is exact on small integers."""
    import os
    import subprocess
    import sys

    feats = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,"
             "+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,-avx512f")
    code = (
        "import numpy as np\nfrom refimpl.kernels import bitpack as bp, lowbit_gemv as lg\n"
        "assert lg.cpu_isa() == 'avx2' and lg.fast_path_isa() == 'avx2', lg.cpu_isa()\n"
        "rng = np.random.default_rng(0)\n"
        "for K in (37, 300):\n"
        "  for M in (1, 3, 5):\n"
        "    X = rng.integers(-4, 5, (M, K)).astype('f4')\n"
        "    for bits in (1, 2, 3, 4):\n"
        "      c = rng.integers(0, 2 ** bits, (67, K)); cb = rng.integers(-8, 9, 2 ** bits)"
        ".astype('f4')\n"
        "      y = lg.kbit_gemv(X, bp.pack_codes(c, bits), bits, K, cb, backend='numba')\n"
        "      assert np.array_equal(y, X @ cb[c].T), (K, M, bits)\n"
        "    T = rng.choice([-1., 0., 1.], (67, K))\n"
        "    assert np.array_equal(lg.ternary_weight_gemv(X, bp.pack_ternary(T), K, "
        "backend='numba'), X @ T.T)\n"
        "    B = rng.choice([-1., 1.], (67, K))\n"
        "    assert np.array_equal(lg.binary_weight_gemv(X, bp.pack_signs(B), K, "
        "backend='numba'), X @ B.T)\n"
        "asm = '\\n'.join(lg._avx2_tasks.inspect_asm().values())\n"
        "assert 'vpermps' in asm and 'ymm' in asm and 'zmm' not in asm\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=feats,
               NUMBA_CACHE_DIR=str(tmp_path))
    env.pop(lg.ISA_ENV, None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


# ------------------------------------------------------------------ int8 × int8 (VNNI)
def test_quantize_rows_int8_hand_worked():
    X = np.array([[0.0, 1.27, -2.54, 0.005], [0.0, 0.0, 0.0, 0.0]], np.float32)
    q, s = lg.quantize_rows_int8(X)
    assert q.dtype == np.int8 and s.dtype == np.float32
    np.testing.assert_array_equal(s, np.float32([2.54 / 127, 1.0]))
    np.testing.assert_array_equal(q, [[0, 64, -127, 0], [0, 0, 0, 0]])  # 63.5 -> 64 (rint)
    q1, s1 = lg.quantize_rows_int8(X[0])
    np.testing.assert_array_equal(q1, q[0])
    assert s1 == s[0]


@pytest.mark.parametrize("K", [1, 63, 64, 65, 255, 257, 1100])
@pytest.mark.parametrize("M", [1, 2, 7, 9])
def test_int8_gemv_exact_integer_sum_and_one_rescale(backend, rng, K, M):
    N = 67
    Wq = rng.integers(-127, 128, (N, K)).astype(np.int8)
    ws = rng.uniform(0.01, 0.1, N).astype(np.float32)
    X = rng.standard_normal((M, K)).astype(np.float32)
    Y = lg.int8_gemv(X, Wq, ws, backend=backend)
    assert Y.dtype == np.float32 and Y.shape == (M, N)
    q, s = lg.quantize_rows_int8(X)
    acc = q.astype(np.int64) @ Wq.T.astype(np.int64)  # the exact integer sums
    ref = acc.astype(np.float32) * (s[:, None] * ws[None, :])
    np.testing.assert_array_equal(Y, ref)


def test_int8_gemv_extremes_and_zero_rows(backend):
    K, N = 300, 5
    Wq = np.full((N, K), -127, np.int8)
    X = np.ones((3, K), np.float32)
    X[1] = -1.0
    X[2] = 0.0
    Y = lg.int8_gemv(X, Wq, 1.0, backend=backend)
    s = np.float32(1 / 127)
    np.testing.assert_array_equal(Y[0], np.float32(-127 * 127 * K) * s)
    np.testing.assert_array_equal(Y[1], np.float32(127 * 127 * K) * s)
    np.testing.assert_array_equal(Y[2], np.zeros(N))


def test_int8_gemv_error_is_the_activation_rounding(rng):
    """|Y − X Ŵᵀ| ≤ (s_m / 2) Σ_k |Ŵ[n, k]| plus float32 rounding: the contract's only
    approximation is the activation quantisation."""
    M, N, K = 4, 50, 700
    W = rng.standard_normal((N, K)).astype(np.float32)
    Wq, ws = lg.quantize_rows_int8(W)
    What = Wq.astype(np.float64) * ws[:, None]
    X = rng.standard_normal((M, K)).astype(np.float32)
    Y = lg.int8_gemv(X, Wq, ws)
    _, s = lg.quantize_rows_int8(X)
    exact = X.astype(np.float64) @ What.T
    bound = s[:, None] / 2 * np.abs(What).sum(axis=1)[None, :] * (1 + 1e-6) + \
        4 * 2.0 ** -24 * (np.abs(X).astype(np.float64) @ np.abs(What).T + np.abs(exact))
    assert np.all(np.abs(Y - exact) <= bound)
    assert np.abs(Y - exact).max() > 0


def test_int8_gemv_vnni_and_loops_agree(rng, monkeypatch):
    if not lg.vnni_available():
        pytest.skip("no AVX-512 VNNI on this CPU")
    M, N, K = 9, 130, 1000
    Wq = rng.integers(-127, 128, (N, K)).astype(np.int8)
    X = rng.standard_normal((M, K)).astype(np.float32)
    ran = []
    for name in ("_int8_vnni", "_int8_loops"):
        real = getattr(lg, name)
        monkeypatch.setattr(lg, name, lambda *a, _r=real, _n=name: ran.append(_n) or _r(*a))
    Y = lg.int8_gemv(X, Wq, 0.5, backend="numba")
    assert ran == ["_int8_vnni"]
    monkeypatch.setenv(lg.ISA_ENV, "avx2")  # forcing a lower ISA turns VNNI off
    assert not lg.vnni_available()
    np.testing.assert_array_equal(lg.int8_gemv(X, Wq, 0.5, backend="numba"), Y)
    assert ran == ["_int8_vnni", "_int8_loops"]


def test_int8_gemv_bad_input():
    Wq = np.zeros((3, 10), np.int8)
    with pytest.raises(TypeError, match="Wq must be a 2-d int8"):
        lg.int8_gemv(np.ones(10), Wq.astype(np.int16), 1.0)
    with pytest.raises(ValueError, match="X must have K=10"):
        lg.int8_gemv(np.ones(11), Wq, 1.0)
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        lg.int8_gemv(np.ones(10), np.full((3, 10), -128, np.int8), 1.0)
    with pytest.raises(ValueError, match="X contains NaN"):
        lg.int8_gemv(np.full(10, np.nan), Wq, 1.0)
    with pytest.raises(ValueError, match="scale must be"):
        lg.int8_gemv(np.ones(10), Wq, np.ones(2))
    X = np.ones((2, 10))
    X0 = X.copy()
    lg.int8_gemv(X, Wq, 1.0)
    np.testing.assert_array_equal(X, X0)


@pytest.mark.parametrize("isa", ISAS)
def test_fast_call_path_same_bits_and_same_errors(rng, monkeypatch, isa):
    """float32 C-contiguous arguments take ``_fast`` (the driver's first compiled step checks
    finiteness and builds the table from the codebook): the same bits as the full path (float64 scale, Fortran X), and NaN/inf
    in X, codebook or scale raise the full path's messages."""
    _force_isa(monkeypatch, isa)
    monkeypatch.setattr(lg, "_FRONT_ON", False)  # spies on the drivers the front calls compiled
    codes, cb, X, s, ref = _codes_case(rng, 3, 5, 67, 300)
    P = bp.pack_codes(codes, 3)
    assert lg._fast("kbit_gemv", 3, X, P, P, 300, cb, 8, s, "numba") is not None
    assert lg._fast("kbit_gemv", 3, np.asfortranarray(X), P, P, 300, cb, 8, s, "numba") is None
    assert lg._fast("kbit_gemv", 3, X, P, P, 300, cb, 8, s.astype(np.float64), "numba") is None
    assert lg._fast("kbit_gemv", 3, X, P, P, 300, cb, 8, s, "numpy") is None
    taken = []
    real_cb, real_vector = lg._lowbit_cb, lg._lowbit_vector

    # the fast path passes the codebook (nc = 2^bits), the full one the table (nc = 16); with
    # a vector ISA the fast path calls the kernel selection directly, else through _lowbit_cb
    def spy_cb(*a):
        if a[6] != 16 and lg.fast_path_isa() is None:
            taken.append(a[0].shape)
        return real_cb(*a)

    def spy_vector(*a):
        if a[7] != 16:
            taken.append(a[1].shape)
        return real_vector(*a)

    monkeypatch.setattr(lg, "_lowbit_cb", spy_cb)
    monkeypatch.setattr(lg, "_lowbit_vector", spy_vector)
    a = lg.kbit_gemv(X, P, 3, 300, cb, s, backend="numba")
    b = lg.kbit_gemv(np.asfortranarray(X), P, 3, 300, cb.astype(np.float64),
                     s.astype(np.float64), backend="numba")
    assert taken == [(5, 300)]  # a took the fast path, b the full one
    np.testing.assert_array_equal(a, ref)
    np.testing.assert_array_equal(b, ref)
    np.testing.assert_array_equal(lg.kbit_gemv(X[2], P, 3, 300, cb, backend="numba"),
                                  ref[2] / s)
    T = rng.choice([-1.0, 0.0, 1.0], (67, 300))
    B = rng.choice([-1.0, 1.0], (67, 300))
    np.testing.assert_array_equal(
        lg.ternary_weight_gemv(X, bp.pack_ternary(T), 300, s, backend="numba"), (X @ T.T) * s)
    np.testing.assert_array_equal(
        lg.binary_weight_gemv(X, bp.pack_signs(B), 300, s, backend="numba"), (X @ B.T) * s)
    for bad in (np.nan, -np.inf):
        Xb = X.copy()
        Xb[4, 0] = bad
        cbb = cb.copy()
        cbb[7] = bad
        sb = s.copy()
        sb[66] = bad
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            lg.kbit_gemv(Xb, P, 3, 300, cb, s, backend="numba")
        with pytest.raises(ValueError, match="codebook contains NaN or inf"):
            lg.kbit_gemv(X, P, 3, 300, cbb, s, backend="numba")
        with pytest.raises(ValueError, match="scale contains NaN or inf"):
            lg.kbit_gemv(X, P, 3, 300, cb, sb, backend="numba")
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            lg.binary_weight_gemv(Xb, bp.pack_signs(B), 300, backend="numba")
        with pytest.raises(ValueError, match="scale contains NaN or inf"):
            lg.ternary_weight_gemv(X, bp.pack_ternary(T), 300, sb, backend="numba")
    assert len(taken) == 1 + 1 + 2 + 5 * 2  # a, the 1-d call, ternary and binary, 10 NaN calls


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_compiled_front_same_bits_fallbacks_and_errors(rng, monkeypatch, isa):
    """The compiled front (``_front``: one compiled call checks the shapes, issue #19's cold
    call) serves 2-d float32 calls once ``_fast`` has served their signature: the same bits as
    the NumPy reference for every kind, serial and threaded sizes, with and without a scale;
    what it cannot serve (1-d or Fortran ``X``, float64 scale, wrong shapes, another ISA)
    falls back and raises the full path's messages; NaN raises from the front itself."""
    _force_isa(monkeypatch, isa)
    taken = []
    real_add = lg._front_add

    def spy_add(*a):  # wrap the compiled entry so each call it serves is counted
        real_add(*a)
        tm, entry, args = lg._FRONT[a[0]]

        def served(*b):
            r = entry(*b)  # a signature not compiled raises TypeError here: not counted
            taken.append((b[3], int(r[1])))  # (kind, bad): bad −1 = shapes declined
            return r

        lg._FRONT[a[0]] = (tm, served, args)

    monkeypatch.setattr(lg, "_front_add", spy_add)
    monkeypatch.setattr(lg, "_FRONT", {})
    for M, N, K in [(1, 3, 70), (9, 300, 1100), (2, 67, 300)]:  # serial, threaded, threaded
        for bits in (1, 2, 3, 4):
            codes, cb, X, s, ref = _codes_case(rng, bits, M, N, K)
            P = bp.pack_codes(codes, bits)
            for _ in range(2):  # the first call compiles the signature, the second is served
                np.testing.assert_array_equal(lg.kbit_gemv(X, P, bits, K, cb, s), ref)
            np.testing.assert_array_equal(lg.kbit_gemv(X, P, bits, K, cb), ref / s)
            ref64 = lg.kbit_gemv(X, P, bits, K, cb, s, backend="numpy")
            np.testing.assert_array_equal(lg.kbit_gemv(X, P, bits, K, cb.astype(np.float64),
                                                       s), ref64)
        T = rng.choice([-1.0, 0.0, 1.0], (N, K))
        B = rng.choice([-1.0, 1.0], (N, K))
        X = rng.integers(-4, 5, (M, K)).astype(np.float32)
        for _ in range(2):
            np.testing.assert_array_equal(
                lg.ternary_weight_gemv(X, bp.pack_ternary(T), K), X @ T.T)
            np.testing.assert_array_equal(lg.binary_weight_gemv(X, bp.pack_signs(B), K),
                                          X @ B.T)
    assert taken.count((4, 0)) >= 3 * 3 and taken.count((0, 0)) >= 3 and \
        taken.count((1, 0)) >= 3 * 2, taken
    # fallbacks: the front declines, the full path answers or raises its own message
    codes, cb, X, s, ref = _codes_case(rng, 4, 3, 67, 300)
    P = bp.pack_codes(codes, 4)
    lg.kbit_gemv(X, P, 4, 300, cb, s)
    n = len(taken)
    np.testing.assert_array_equal(lg.kbit_gemv(X[1], P, 4, 300, cb, s), ref[1])
    np.testing.assert_array_equal(lg.kbit_gemv(np.asfortranarray(X), P, 4, 300, cb, s), ref)
    np.testing.assert_array_equal(lg.kbit_gemv(X, P, 4, 300, cb, s.astype(np.float64)), ref)
    assert len(taken) == n  # none of these three reached the front
    with pytest.raises(ValueError, match="X must have K=301 columns"):
        lg.kbit_gemv(X, P, 4, 301, cb, s)
    with pytest.raises(ValueError, match="packed must have 20 words per row"):
        lg.kbit_gemv(np.zeros((3, 312), np.float32), P, 4, 312, cb, s)
    with pytest.raises(ValueError, match="codebook must have 2\\^bits = 16"):
        lg.kbit_gemv(X, P, 4, 300, cb[:8], s)
    with pytest.raises(ValueError, match="scale must be a scalar or have shape \\(67,\\)"):
        lg.kbit_gemv(X, P, 4, 300, cb, s[:5])
    with pytest.raises(TypeError, match="K must be an integer"):  # a float K never reaches it
        lg.kbit_gemv(X, P, 4, 300.0, cb, s)
    assert taken[n:] == [(4, -1)] * 4  # the wrong shapes reached it and were declined
    Xb = X.copy()
    Xb[2, 7] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        lg.kbit_gemv(Xb, P, 4, 300, cb, s)
    assert taken[n + 4:] == [(4, 1)]
    n += 5
    np.testing.assert_array_equal(X, np.asarray(X))  # inputs untouched
    monkeypatch.setenv("REFIMPL_BACKEND", "numpy")  # the default backend is respected
    lg.kbit_gemv(X, P, 4, 300, cb, s)
    assert len(taken) == n


def test_compiled_front_that_cannot_compile_leaves_the_call_alone(rng, monkeypatch):
    """Installing the compiled front is a shortcut: when it fails (here: typing the
    arguments) the call that the checked path has served still returns its result, and no
    front is filed."""
    if lg.fast_path_isa() is None:
        pytest.skip("needs a vector kernel")
    fronts = {}
    monkeypatch.setattr(lg, "_FRONT", fronts)

    def broken(value):
        raise RuntimeError("no typing today")

    monkeypatch.setattr(lg.numba, "typeof", broken)
    codes, cb, X, s, ref = _codes_case(rng, 4, 2, 9, 300)
    P = bp.pack_codes(codes, 4)
    for _ in range(2):
        np.testing.assert_array_equal(lg.kbit_gemv(X, P, 4, 300, cb, s), ref)
    assert fronts == {}
