"""T-MAC-style table-lookup products (refimpl.kernels.lut_gemv): the LUT layout round-trips and
is what its docstring says; the AVX-512 kernel, the AVX2 kernel, the portable loops and the
NumPy reference agree exactly where every partial sum is exact (small integers, power-of-two
scales) and within the float32 rounding bound otherwise; hand-worked tables; dispatch; bad
input; a torch cross-check."""

import numpy as np
import pytest

from refimpl.kernels import bitpack as bp
from refimpl.kernels import lowbit_gemv as lg
from refimpl.kernels import lut_gemv as lu
from refimpl.kernels import record_calls

U32 = 2.0 ** -24

# K: one column; less than one 32-bit chunk; several chunks and a partial one (32 binary /
# 16 two-bit columns per chunk), not a multiple of 4 (a partial group)
KS = [1, 37, 300, 1101]
# M: batch chunks 8 / 4 / 2 / 1 and mixtures; N: one row, < one tile, one tile pair + 1
# (a tile paired with itself), more than one 256-row task with a ragged end
MS = [1, 2, 3, 7, 8, 9, 21]
NS = [1, 15, 33, 300]
ISAS = ["avx512", "avx2", "portable"]


def _force_isa(monkeypatch, isa):
    if lg._ISA_RANK[None if isa == "portable" else isa] > lg._ISA_RANK[lg.cpu_isa()]:
        pytest.skip(f"no {isa} on this CPU")
    monkeypatch.setenv(lg.ISA_ENV, isa)
    assert lg.fast_path_isa() == (None if isa == "portable" else isa)


@pytest.fixture(params=ISAS)
def path(request, monkeypatch):
    _force_isa(monkeypatch, request.param)
    return request.param


def _case(rng, kind, M, N, K, backend=None):
    """Small-integer weights of ``kind`` ("binary", "ternary", 1 or 2 bits), their LUT layout,
    integer activations, power-of-two scales and the exact float64 product."""
    if kind == "binary":
        Wf = rng.choice([-1.0, 1.0], (N, K))
        lw = lu.lut_pack_binary(bp.pack_signs(Wf, backend), K)
    elif kind == "ternary":
        Wf = rng.choice([-1.0, 0.0, 1.0], (N, K))
        lw = lu.lut_pack_ternary(bp.pack_ternary(Wf, backend), K)
    else:
        codes = rng.integers(0, 2 ** kind, (N, K))
        cb = rng.integers(-8, 9, 2 ** kind).astype(np.float32)
        Wf = cb[codes].astype(np.float64)
        lw = lu.lut_pack(bp.pack_codes(codes, kind, backend), kind, K, cb)
    X = rng.integers(-4, 5, (M, K)).astype(np.float32)
    s = (2.0 ** rng.integers(-3, 4, N)).astype(np.float32)
    return lw, Wf, X, s, (X.astype(np.float64) @ Wf.T) * s


# ------------------------------------------------------------------ the layout
@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("N", [1, 15, 16, 17, 40])
@pytest.mark.parametrize("K", [1, 31, 32, 33, 64, 65, 300])
def test_layout_round_trip_and_definition(rng, bits, N, K):
    codes = rng.integers(0, 2 ** bits, (N, K))
    P = bp.pack_codes(codes, bits)
    lw = lu.lut_pack(P, bits, K, np.arange(2 ** bits))
    per = 32 // bits
    C = -(-K // per)
    assert lw.words.dtype == np.uint32 and lw.words.shape == (-(-N // 16), C, 16)
    assert lw.nbytes == 64 * (-(-N // 16)) * C
    np.testing.assert_array_equal(lu.lut_unpack(lw), P)  # exact inverse
    # the definition: lane l of (t, c) holds code j of row 16t + l, column per·c + j, at bits
    # bits·j; rows past N are zero
    for t in range(lw.words.shape[0]):
        for c in range(C):
            for lane in range(16):
                n, w = 16 * t + lane, int(lw.words[t, c, lane])
                for j in range(per):
                    k = per * c + j
                    want = codes[n, k] if (n < N and k < K) else 0
                    assert (w >> (bits * j)) & (2 ** bits - 1) == want


def test_ternary_layout_is_the_two_bit_code_nz_plus_two_sign(rng):
    T = rng.choice([-1.0, 0.0, 1.0], (20, 70))
    lw = lu.lut_pack_ternary(bp.pack_ternary(T), 70)
    assert lw.bits == 2 and lw.kind == "ternary"
    codes = bp._unpack_codes_numpy(lu.lut_unpack(lw), 2, 70)
    np.testing.assert_array_equal(codes, (T != 0) + 2 * (T < 0))
    np.testing.assert_array_equal(lu.TERNARY_CODEBOOK[codes], T)
    Wp = bp.pack_signs(np.where(T < 0, -1.0, 1.0))
    lb = lu.lut_pack_binary(Wp, 70)
    assert lb.kind == "binary" and lb.bits == 1
    # 2 tiles; ceil(70 / 32) = 3 binary chunks, ceil(140 / 32) = 5 two-bit chunks
    assert (lb.nbytes, lw.nbytes) == (2 * 3 * 64, 2 * 5 * 64)


def test_tables_hand_worked():
    """Binary, x = (1, 2, 4, 8): T[i] = Σ_t (2 bit_t(i) − 1) x_t, e.g. T[0b1101] = 1 − 2 + 4
    + 8 = 11, T[0] = −15; two-bit codebook (10, 20, 30, 40), x = (1, 100): T[c0 + 4 c1] =
    cb[c0] + 100 cb[c1]; columns past K count as 0."""
    X = np.array([[1.0, 2.0, 4.0, 8.0, 3.0]], np.float32)
    T = lu._lut_tables(X, 1, 1, np.array([-1.0, 1.0], np.float32))
    assert T.shape == (1, 8, 16)
    assert T[0, 0, 0b1101] == 11 and T[0, 0, 0] == -15 and T[0, 0, 15] == 15
    np.testing.assert_array_equal(T[0, 1], np.where(np.arange(16) % 2, 3.0, -3.0))
    np.testing.assert_array_equal(T[0, 2:], 0)
    cb = np.array([10.0, 20.0, 30.0, 40.0], np.float32)
    T2 = lu._lut_tables(np.array([[1.0, 100.0]], np.float32), 2, 1, cb)
    i = np.arange(16)
    np.testing.assert_array_equal(T2[0, 0], cb[i % 4] + 100 * cb[i // 4])
    # one row, binary weights (+1, −1, +1, +1) · x = 11, scale 0.5
    Wp = bp.pack_signs(np.array([[1.0, -1.0, 1.0, 1.0, -1.0]]))
    Y = lu.lut_gemv(X[0], lu.lut_pack_binary(Wp, 5), scale=0.5, backend="numba")
    np.testing.assert_array_equal(Y, [0.5 * (11 - 3)])


# ------------------------------------------------------------------ exactness
@pytest.mark.parametrize("kind", ["binary", "ternary", 1, 2])
@pytest.mark.parametrize("K", KS)
def test_exact_on_integers(backend, rng, kind, K):
    for M in MS:
        for N in NS:
            lw, _, X, s, ref = _case(rng, kind, M, N, K, backend)
            Y = lu.lut_gemv(X, lw, s, backend=backend)
            assert Y.dtype == np.float32 and Y.shape == (M, N)
            np.testing.assert_array_equal(Y, ref, err_msg=f"{kind} M={M} N={N} K={K}")


@pytest.mark.parametrize("kind", ["binary", "ternary", 2])
def test_every_numba_path_exact(path, rng, kind):
    for M, N, K in [(1, 33, 1101), (9, 300, 300), (21, 17, 65)]:
        lw, _, X, s, ref = _case(rng, kind, M, N, K)
        np.testing.assert_array_equal(lu.lut_gemv(X, lw, s, backend="numba"), ref,
                                      err_msg=f"{path} {kind} M={M}")


def _bound(absW, X, s, K):
    g = (K + 1) * U32 / (1 - (K + 1) * U32)
    return g * (np.abs(X).astype(np.float64) @ absW.T) * np.abs(s)[None, :] * (1 + U32)


@pytest.mark.parametrize("bits", [1, 2])
@pytest.mark.parametrize("M", [1, 8, 64])
def test_random_within_rounding_bound(backend, rng, bits, M):
    N, K = 70, 1100
    codes = rng.integers(0, 2 ** bits, (N, K))
    cb = rng.standard_normal(2 ** bits).astype(np.float32)
    X = rng.standard_normal((M, K)).astype(np.float32)
    s = rng.uniform(0.5, 2, N).astype(np.float32)
    W = cb[codes].astype(np.float64)
    ref = (X.astype(np.float64) @ W.T) * s
    Y = lu.lut_gemv(X, lu.lut_pack(bp.pack_codes(codes, bits, backend), bits, K, cb), s,
                    backend=backend)
    err = np.abs(Y - ref)
    bound = _bound(np.abs(W), X, s, K) + U32 * np.abs(ref)
    assert np.all(err <= bound), f"max err/bound {(err / bound).max():.3f}"
    assert err.max() > 0  # the float32 sums do round: the bound is exercised


def test_float64_and_integer_activations(backend, rng):
    lw, Wf, X, s, ref = _case(rng, 2, 3, 40, 300, backend)
    X64 = rng.standard_normal((3, 300))
    Y = lu.lut_gemv(X64, lw, s, backend=backend)
    assert Y.dtype == np.float64
    ref64 = (X64 @ Wf.T) * s
    g = 302 * 2.0 ** -53
    assert np.all(np.abs(Y - ref64) <= g * (np.abs(X64) @ np.abs(Wf).T) * s + 1e-300)
    Yi = lu.lut_gemv(X.astype(np.int64), lw, s, backend=backend)
    assert Yi.dtype == np.float64
    np.testing.assert_array_equal(Yi, ref)
    y1 = lu.lut_gemv(X[0], lw, s, backend=backend)  # 1-d X → (N,)
    assert y1.shape == (40,)
    np.testing.assert_array_equal(y1, ref[0])
    Xs = np.asfortranarray(X)
    np.testing.assert_array_equal(lu.lut_gemv(Xs, lw, s, backend=backend), ref)


def test_inputs_not_mutated_and_deterministic(rng):
    lw, _, X, s, ref = _case(rng, "ternary", 9, 300, 1101)
    Xr = rng.standard_normal(X.shape).astype(np.float32)
    copies = (Xr.copy(), lw.words.copy(), s.copy())
    a = lu.lut_gemv(Xr, lw, s, backend="numba")
    assert np.array_equal(a, lu.lut_gemv(Xr, lw, s, backend="numba"))
    for before, after in zip(copies, (Xr, lw.words, s)):
        np.testing.assert_array_equal(before, after)


def test_agrees_with_kbit_gemv_on_random_floats(rng):
    """The LUT kernel and the decode kernel compute the same product (within both bounds)."""
    codes = rng.integers(0, 4, (90, 700))
    cb = rng.standard_normal(4).astype(np.float32)
    X = rng.standard_normal((5, 700)).astype(np.float32)
    P = bp.pack_codes(codes, 2)
    a = lu.lut_gemv(X, lu.lut_pack(P, 2, 700, cb))
    b = lg.kbit_gemv(X, P, 2, 700, cb)
    absW = np.abs(cb[codes]).astype(np.float64)
    assert np.all(np.abs(a - b) <= 2 * _bound(absW, X, np.ones(90), 700))


def test_cross_check_torch(torch, rng):
    """Against torch's float64 matmul of the decoded weights."""
    T = rng.choice([-1.0, 0.0, 1.0], (50, 333))
    X = rng.standard_normal((4, 333)).astype(np.float32)
    Y = lu.lut_gemv(X, lu.lut_pack_ternary(bp.pack_ternary(T), 333))
    ref = (torch.from_numpy(X.astype(np.float64)) @ torch.from_numpy(T).T).numpy()
    assert np.all(np.abs(Y - ref) <= _bound(np.abs(T), X, np.ones(50), 333))


# ------------------------------------------------------------------ dispatch
@pytest.mark.parametrize("isa", ISAS)
def test_dispatch_runs_the_forced_kernel(rng, monkeypatch, isa):
    _force_isa(monkeypatch, isa)
    monkeypatch.setattr(lu, "_SERIAL_LOOKUPS", 5000)  # the small case below, the large above
    monkeypatch.setattr(lu, "_FRONT_ON", False)  # the compiled front calls the drivers unspied
    ran = []
    names = ["_lut_avx512", "_lut_avx512_serial", "_lut_avx2", "_lut_avx2_serial",
             "_lut_generic"]
    for name in names:
        real = getattr(lu, name)
        monkeypatch.setattr(lu, name, lambda *a, _r=real, _n=name: ran.append(_n) or _r(*a))
    for M, N, K in [(1, 3, 70), (9, 300, 1100)]:  # below / above _SERIAL_LOOKUPS
        lw, _, X, s, ref = _case(rng, 2, M, N, K)
        ran.clear()
        with record_calls() as log:
            np.testing.assert_array_equal(lu.lut_gemv(X, lw, s, backend="numba"), ref)
        assert log == [("lut_gemv", "numba")]
        small = M * lw.words.shape[0] * 8 * lw.words.shape[1] < lu._SERIAL_LOOKUPS
        want = {"avx512": "_lut_avx512", "avx2": "_lut_avx2", "portable": "_lut_generic"}[isa]
        if isa != "portable" and small:
            want += "_serial"
        assert ran == [want], (M, N, K, ran)
    ran.clear()
    lu.lut_gemv(X.astype(np.float64), lw, s, backend="numba")
    assert ran == ["_lut_generic"]


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
@pytest.mark.parametrize("serial_macs", [0, 1 << 40])
def test_threaded_and_single_thread_drivers_agree(rng, monkeypatch, serial_macs, isa):
    _force_isa(monkeypatch, isa)
    monkeypatch.setattr(lu, "_SERIAL_LOOKUPS", serial_macs)
    monkeypatch.setattr(lu, "_FRONT_ON", False)  # (the compiled front has its own threshold)
    lw, _, X, s, ref = _case(rng, "binary", 9, 600, 300)
    np.testing.assert_array_equal(lu.lut_gemv(X, lw, s, backend="numba"), ref)


def test_portable_path_runs_with_jit_disabled():
    import os
    import subprocess
    import sys

    code = ("import numpy as np\nfrom refimpl.kernels import bitpack as bp, lut_gemv as lu\n"
            "rng = np.random.default_rng(0)\n"
            "T = rng.choice([-1., 0., 1.], (3, 50)); x = rng.integers(-3, 4, (2, 50))"
            ".astype('f4')\n"
            "y = lu.lut_gemv(x, lu.lut_pack_ternary(bp.pack_ternary(T), 50), backend='numba')\n"
            "assert np.array_equal(y, x @ T.T)\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


# ------------------------------------------------------------------ bad input
def test_bad_inputs():
    K = 70
    P = bp.pack_codes(np.zeros((3, K), int), 2)
    lw = lu.lut_pack(P, 2, K, np.arange(4.0))
    X = np.ones((2, K), np.float32)
    with pytest.raises(ValueError, match="bits"):
        lu.lut_pack(bp.pack_codes(np.zeros((3, K), int), 3), 3, K, np.arange(8.0))
    with pytest.raises(ValueError, match="packed must have 3 words"):
        lu.lut_pack(P[:, :2], 2, K, np.arange(4.0))
    with pytest.raises(TypeError, match="packed"):
        lu.lut_pack(P.astype(np.int64), 2, K, np.arange(4.0))
    with pytest.raises(ValueError, match="codebook must have 2\\^bits = 4"):
        lu.lut_pack(P, 2, K, np.arange(2.0))
    with pytest.raises(ValueError, match="codebook contains NaN"):
        lu.lut_pack(P, 2, K, np.full(4, np.nan))
    with pytest.raises(TypeError, match="codebook must be a real"):
        lu.lut_pack(P, 2, K, np.arange(4.0) + 1j)
    with pytest.raises(ValueError, match="K"):
        lu.lut_pack(P, 2, 0, np.arange(4.0))
    with pytest.raises(TypeError, match="planes"):
        lu.lut_pack_ternary(P, K)
    with pytest.raises(ValueError, match="X must have K=70"):
        lu.lut_gemv(np.ones((2, 69)), lw)
    with pytest.raises(ValueError, match="X contains NaN"):
        lu.lut_gemv(np.full((1, K), np.nan), lw)
    with pytest.raises(ValueError, match="X must not be empty"):
        lu.lut_gemv(np.ones((0, K)), lw)
    with pytest.raises(ValueError, match="scale must be a scalar or have shape"):
        lu.lut_gemv(X, lw, scale=np.ones(4))
    with pytest.raises(TypeError, match="lw must be a LutWeights"):
        lu.lut_gemv(X, P)
    with pytest.raises(ValueError, match="lw.words must be uint32"):
        lu.lut_gemv(X, lw._replace(words=lw.words[:, :1]))
    with pytest.raises(ValueError, match="lw.codebook must have 4"):
        lu.lut_gemv(X, lw._replace(codebook=np.zeros(3)))


def test_avx2_kernel_compiled_for_a_haswell_is_exact(tmp_path):
    """The AVX2 LUT kernel as an AVX2-only CPU gets it: Numba compiles for Haswell, the ISA
    query picks ``avx2`` by itself, the driver's code has no zmm register, and binary, ternary
    and 2-bit weights are exact on small integers (threaded and serial drivers)."""
    import os
    import subprocess
    import sys

    feats = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,"
             "+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,-avx512f")
    code = (
        "import numpy as np\nfrom refimpl.kernels import bitpack as bp, lowbit_gemv as lg, "
        "lut_gemv as lu\n"
        "assert lg.fast_path_isa() == 'avx2', lg.cpu_isa()\n"
        "rng = np.random.default_rng(0)\n"
        "lu._SERIAL_LOOKUPS = 20000  # the larger cases through the threaded driver\n"
        "for K, N in ((37, 40), (300, 300), (1101, 700)):\n"
        "  for M in (1, 3, 5, 9):\n"
        "    X = rng.integers(-4, 5, (M, K)).astype('f4')\n"
        "    c = rng.integers(0, 4, (N, K)); cb = rng.integers(-8, 9, 4).astype('f4')\n"
        "    y = lu.lut_gemv(X, lu.lut_pack(bp.pack_codes(c, 2), 2, K, cb), backend='numba')\n"
        "    assert np.array_equal(y, X @ cb[c].T), (K, M)\n"
        "    T = rng.choice([-1., 0., 1.], (N, K))\n"
        "    assert np.array_equal(lu.lut_gemv(X, lu.lut_pack_ternary(bp.pack_ternary(T), K), "
        "backend='numba'), X @ T.T)\n"
        "    B = rng.choice([-1., 1.], (N, K))\n"
        "    assert np.array_equal(lu.lut_gemv(X, lu.lut_pack_binary(bp.pack_signs(B), K), "
        "backend='numba'), X @ B.T)\n"
        "asm = '\\n'.join(lu._lut_tasks8.inspect_asm().values())\n"
        "assert ('vpermps' in asm or 'vpermd' in asm) and 'ymm' in asm and 'zmm' not in asm\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=feats,
               NUMBA_CACHE_DIR=str(tmp_path))
    env.pop(lg.ISA_ENV, None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_fast_call_path_checks_in_the_kernel_and_matches_the_full_path(path, rng):
    """float32 C-contiguous arguments skip the NumPy checks (``_fast_args``); the driver then
    refuses NaN/inf in X, scale and codebook itself, with the same messages, on every path;
    the fast and the full path give the same bits."""
    lw, _, X, s, ref = _case(rng, "ternary", 3, 40, 300)
    assert lu._fast_args(X, lw, s, "numba") is not None
    assert lu._fast_args(np.asfortranarray(X), lw, s, "numba") is None
    assert lu._fast_args(X, lw, s.astype(np.float64), "numba") is None
    assert lu._fast_args(X, lw, s, "numpy") is None
    np.testing.assert_array_equal(lu.lut_gemv(X, lw, s, backend="numba"), ref)
    np.testing.assert_array_equal(lu.lut_gemv(np.asfortranarray(X), lw, s.astype(np.float64),
                                              backend="numba"), ref)
    np.testing.assert_array_equal(lu.lut_gemv(X[1], lw, None, backend="numba"), ref[1] / s)
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[2, 299] = bad
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            lu.lut_gemv(Xb, lw, s, backend="numba")
        sb = s.copy()
        sb[39] = bad
        with pytest.raises(ValueError, match="scale contains NaN or inf"):
            lu.lut_gemv(X, lw, sb, backend="numba")
        with pytest.raises(ValueError, match="codebook contains NaN or inf"):
            lu.lut_gemv(X, lw._replace(codebook=np.array([0.0, 1.0, bad, -1.0])),
                        backend="numba")


def test_large_batch_with_helpers_equals_the_reference(rng):
    """Batch 64 splits the rows into one task per thread, and the tables (2 MiB here) are the
    caller's own array that a helper reads: they must live until the helper's task is done
    (``_team.wait_holding``; freed after the caller's last task they were unmapped under a
    helper at 4096 × 4096). Exact on integer data, call after call."""
    N = K = 2048
    codes = rng.integers(0, 4, (N, K))
    cb = np.array([-2.0, -1.0, 1.0, 3.0])
    lw = lu.lut_pack(bp.pack_codes(codes, 2), 2, K, cb)
    X = rng.integers(-3, 4, (64, K)).astype(np.float32)
    want = X.astype(np.float64) @ cb[codes].T
    for _ in range(4):
        np.testing.assert_array_equal(lu.lut_gemv(X, lw, backend="numba"), want)


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_compiled_front_same_bits_fallbacks_and_errors(rng, monkeypatch, isa):
    """The compiled front (``_front``, issue #19's cold call) serves 2-d float32 calls once the
    checked path has served their signature: the same bits for binary, ternary and 2-bit
    layouts, serial, threaded and batch > 8 task sizes, with and without a scale; 1-d or
    Fortran ``X``, a float64 scale, a float32 codebook or another backend fall back; wrong
    shapes are declined by it and raise the full path's messages; NaN raises from it."""
    _force_isa(monkeypatch, isa)
    taken = []
    real_add = lu._front_add

    def spy_add(*a):
        real_add(*a)
        tm, entry, args = lu._FRONT[a[0]]

        def served(*b):
            r = entry(*b)  # a signature not compiled raises TypeError here: not counted
            taken.append(int(r[1]))
            return r

        lu._FRONT[a[0]] = (tm, served, args)

    monkeypatch.setattr(lu, "_front_add", spy_add)
    monkeypatch.setattr(lu, "_FRONT", {})
    for M, N, K in [(1, 3, 70), (3, 600, 1100), (12, 300, 333)]:
        for kind in ("binary", "ternary", 2):
            lw, _, X, s, ref = _case(rng, kind, M, N, K)
            for _ in range(2):  # the first call compiles the signature, the second is served
                np.testing.assert_array_equal(lu.lut_gemv(X, lw, s), ref)
            np.testing.assert_array_equal(lu.lut_gemv(X, lw), ref / s)
    assert taken.count(0) >= 3 * 3 * 2, taken
    lw, _, X, s, ref = _case(rng, 2, 3, 40, 300)
    lu.lut_gemv(X, lw, s)
    n = len(taken)
    np.testing.assert_array_equal(lu.lut_gemv(X[1], lw, s), ref[1])
    np.testing.assert_array_equal(lu.lut_gemv(np.asfortranarray(X), lw, s), ref)
    np.testing.assert_array_equal(lu.lut_gemv(X, lw, s.astype(np.float64)), ref)
    np.testing.assert_array_equal(
        lu.lut_gemv(X, lw._replace(codebook=lw.codebook.astype(np.float32)), s), ref)
    np.testing.assert_array_equal(lu.lut_gemv(X, lw, s, backend="numpy"), ref)
    assert len(taken) == n  # none of these reached the front
    with pytest.raises(ValueError, match="X must have K=300 columns"):
        lu.lut_gemv(X[:, :299].copy(), lw, s)
    with pytest.raises(ValueError, match="lw.words must be uint32 of shape"):
        lu.lut_gemv(X, lw._replace(N=49), s[:1].repeat(49))
    with pytest.raises(ValueError, match="lw.codebook must have 4 entries"):
        lu.lut_gemv(X, lw._replace(codebook=lw.codebook[:2]), s)
    with pytest.raises(ValueError, match="scale must be a scalar or have shape \\(40,\\)"):
        lu.lut_gemv(X, lw, s[:5])
    assert taken[n:] == [-1] * 4  # the wrong shapes reached it and were declined
    Xb = X.copy()
    Xb[2, 7] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        lu.lut_gemv(Xb, lw, s)
    assert taken[n + 4:] == [1]
