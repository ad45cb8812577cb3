"""Bit-packing kernels (Survey §3): Numba vs NumPy twins, exact equality with the float matmul."""

import numpy as np
import pytest

from refimpl.kernels import bitpack as bp

SHAPES = [(1, 1, 1), (5, 7, 70), (8, 8, 64), (9, 3, 130), (4, 6, 128), (3, 5, 63)]


def _pm1(rng, shape):
    return rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("M,N,K", SHAPES)
def test_binary_gemm_equals_float_matmul(backend, rng, M, N, K):
    A, B = _pm1(rng, (M, K)), _pm1(rng, (N, K))
    C = bp.binary_matmul(A, B, backend=backend)
    ref = A @ B.T
    assert C.dtype == np.int32
    np.testing.assert_array_equal(C, ref.astype(np.int64),
                                  err_msg=f"max abs err {np.abs(C - ref).max()}")


# shapes large enough for the table ("Four Russians") kernel: odd word counts (K = 130 → 3
# words, the last table block has one word), N not a multiple of the 64-row block (N = 65: a
# block with one row; N = 70: the high-nibble lanes, rows 32–63, partly empty), the swapped
# path (N > M: tables from A), K not a multiple of 64 (padding bits)
LUT_SHAPES = [(260, 65, 130), (64, 300, 200), (300, 129, 64), (256, 64, 1000),
              (260, 70, 320)]  # 320: three K blocks, an odd one after the pair


@pytest.mark.parametrize("M,N,K", LUT_SHAPES)
def test_binary_gemm_table_kernel_equals_float_matmul(backend, rng, M, N, K):
    assert bp._lut_pays_off(M, N, K), "shape no longer reaches the table kernel"
    A, B = _pm1(rng, (M, K)), _pm1(rng, (N, K))
    C = bp.binary_matmul(A, B, backend=backend)
    ref = (A @ B.T).astype(np.int64)
    assert C.dtype == np.int32 and C.shape == (M, N)
    np.testing.assert_array_equal(C, ref, err_msg=f"max abs err {np.abs(C - ref).max()}")


def test_binary_gemm_table_kernel_saturated_lanes(backend):
    # every nibble of A is 0xF and of B 0x0: each table lookup adds 4 to every nibble lane, the
    # most a 3-lookup nibble sum (12) and a 32-group block (128 per lane) can hold; the result
    # is exactly −K everywhere
    M, N, K = 256, 70, 1000
    C = bp.binary_matmul(np.ones((M, K)), -np.ones((N, K)), backend=backend)
    np.testing.assert_array_equal(C, np.full((M, N), -K))


@pytest.mark.parametrize("lo_sign", [1.0, -1.0])
def test_binary_gemm_table_kernel_low_and_high_lanes_independent(backend, lo_sign):
    # rows 0–31 of each 64-row block of B go to the low nibble lanes, rows 32–63 to the high
    # ones; saturate one half and leave the other at 0 (both orders): the low-lane sum is
    # decoded as S − 16 H, so a carry between the halves would show here
    M, K = 256, 1000
    half = np.ones((32, K))
    B = np.vstack([lo_sign * half, -lo_sign * half, lo_sign * half])  # 96 rows: 1.5 blocks
    C = bp.binary_matmul(np.ones((M, K)), B, backend=backend)
    np.testing.assert_array_equal(C, np.tile(K * np.repeat([lo_sign, -lo_sign, lo_sign], 32),
                                             (M, 1)).astype(np.int64))


def test_binary_gemm_table_vs_tiled_kernel(rng):
    M, N, K = 300, 100, 777
    Ap = bp.pack_signs(_pm1(rng, (M, K)))
    Bp = bp.pack_signs(_pm1(rng, (N, K)))
    lut = bp._lut_gemm(Ap, Bp, K, 3)
    np.testing.assert_array_equal(lut, bp._binary_gemm_tiled(Ap, Bp, K))
    np.testing.assert_array_equal(lut, bp._binary_gemm_numpy(Ap, Bp, K))


def test_table_kernel_only_where_it_is_exact_and_pays_off():
    assert not bp._lut_pays_off(1024, 1024, 65536)  # uint16 column sums need K < 65536
    assert not bp._lut_pays_off(8, 4096, 4096)  # too few rows to amortise the tables
    assert bp._lut_pays_off(1024, 1024, 4096)


def test_pack_signs_layout(backend):
    x = np.array([[1.0, -1.0, 0.0] + [-1.0] * 61 + [1.0]])  # K = 65: two words
    P = bp.pack_signs(x, backend=backend)
    assert P.dtype == np.uint64 and P.shape == (1, 2)
    assert int(P[0, 0]) == 0b101 and int(P[0, 1]) == 1
    assert bp.packed_bits(P) == 128


def test_pack_signs_twins(rng):
    X = rng.standard_normal((13, 200))
    np.testing.assert_array_equal(bp.pack_signs(X, backend="numba"),
                                  bp.pack_signs(X, backend="numpy"))


@pytest.mark.parametrize("M,N,K", SHAPES)
def test_ternary_gemm_equals_float_matmul(backend, rng, M, N, K):
    T = rng.choice([-1.0, 0.0, 1.0], (M, K))
    U = rng.choice([-1.0, 0.0, 1.0], (N, K))
    C = bp.ternary_gemm(bp.pack_ternary(T, backend), bp.pack_ternary(U, backend),
                        backend=backend)
    np.testing.assert_array_equal(C, (T @ U.T).astype(np.int64))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 16])
def test_pack_codes_roundtrip_and_kbit_matmul(backend, rng, bits):
    N, K, M = 7, 75, 4
    codes = rng.integers(0, 2 ** bits, (N, K))
    P = bp.pack_codes(codes, bits, backend=backend)
    per = 64 // bits
    assert P.shape == (N, -(-K // per))
    np.testing.assert_array_equal(bp.unpack_codes(P, bits, K, backend=backend), codes)
    X = rng.standard_normal((M, K))
    cb = rng.standard_normal(2 ** bits)
    Y = bp.kbit_matmul(X, P, bits, K, cb, backend=backend)
    ref = X @ cb[codes].T
    np.testing.assert_allclose(Y, ref, rtol=1e-12, atol=1e-12,
                               err_msg=f"max abs err {np.abs(Y - ref).max():.3e}")
    Y32 = bp.kbit_matmul(X.astype(np.float32), P, bits, K, cb, backend=backend)
    assert Y32.dtype == np.float32


def test_kbit_matmul_many_rows(backend, rng):
    # more than one 256-row decode tile
    codes = rng.integers(0, 16, (300, 33))
    X = rng.standard_normal((3, 33))
    cb = np.linspace(-1, 1, 16)
    Y = bp.kbit_matmul(X, bp.pack_codes(codes, 4, backend), 4, 33, cb, backend=backend)
    np.testing.assert_allclose(Y, X @ cb[codes].T, atol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="codes"):
        bp.pack_codes(np.array([[0, 4]]), 2)
    with pytest.raises(ValueError, match="bits"):
        bp.pack_codes(np.array([[0, 1]]), 0)
    with pytest.raises(ValueError, match="T"):
        bp.pack_ternary(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="Bp"):
        bp.binary_gemm(np.zeros((2, 2), np.uint64), np.zeros((2, 1), np.uint64), 100)
    with pytest.raises(TypeError, match="Ap"):
        bp.binary_gemm(np.zeros((2, 2)), np.zeros((2, 2), np.uint64), 100)
    with pytest.raises(ValueError, match="codebook"):
        bp.kbit_matmul(np.ones((1, 3)), bp.pack_codes(np.zeros((1, 3), int), 2), 2, 3,
                       np.ones(3))
    with pytest.raises(ValueError, match="A contains NaN"):
        bp.binary_matmul(np.array([[np.nan, 1.0]]), np.ones((1, 2)))


def test_kernels_run_as_plain_python_with_jit_disabled():
    """NUMBA_DISABLE_JIT=1 (for stepping through a kernel) must still give exact results."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np\nfrom refimpl.kernels import bitpack as bp\n"
            "rng = np.random.default_rng(0)\n"
            "A = rng.choice([-1., 1.], (5, 70)); B = rng.choice([-1., 1.], (6, 70))\n"
            "assert np.array_equal(bp.binary_matmul(A, B, 'numba'), (A @ B.T).astype(int))\n"
            "T = rng.choice([-1., 0., 1.], (5, 70))\n"
            "assert np.array_equal(bp.ternary_gemm(bp.pack_ternary(T, 'numba'), "
            "bp.pack_ternary(A, 'numba'), 'numba'), (T @ A.T).astype(int))\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_large_packed_results_are_numpy_allocations(rng, monkeypatch):
    """Packed words of >= ``_HUGE_BYTES`` come back in NumPy's allocation (huge pages on
    Linux, issue #19), equal to the NumPy twin; smaller ones are returned as computed."""
    codes = rng.integers(0, 16, (40, 300))
    signs = rng.standard_normal((40, 300))
    small = bp.pack_codes(codes, 4, backend="numba")
    assert small.nbytes < 8192 and small.base is not None  # Numba's allocation, kept
    monkeypatch.setattr(bp, "_HUGE_BYTES", 64)
    for got, want in [(bp.pack_codes(codes, 4, backend="numba"), bp.pack_codes(codes, 4,
                                                                               backend="numpy")),
                      (bp.pack_signs(signs, backend="numba"), bp.pack_signs(signs,
                                                                            backend="numpy"))]:
        assert got.base is None and got.flags.c_contiguous and got.dtype == np.uint64
        np.testing.assert_array_equal(got, want)
