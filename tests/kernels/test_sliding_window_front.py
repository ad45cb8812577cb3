"""The compiled front of ``sliding_window_attention`` (issue #19): the plain case in one
compiled call, the same bits as the checked path, and every other call on the checked path."""

import numpy as np
import pytest

from refimpl.kernels import sliding_window as sw
from refimpl.kernels.attention import sliding_window_attention


def _qkv(rng, B=2, H=3, n=200, d=8, dv=5, dtype=np.float32):
    return tuple(rng.standard_normal(s).astype(dtype)
                 for s in ((B, H, n, d), (B, H, n, d), (B, H, n, dv)))


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of the checked path (``_sliding_window_forward``)."""
    calls = []
    real = sw._sliding_window_forward

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(sw, "_sliding_window_forward", counted)
    return calls


def _checked(monkeypatch, *args, **kwargs):
    monkeypatch.setattr(sw, "_FRONT_ON", False)
    try:
        return sliding_window_attention(*args, **kwargs)
    finally:
        monkeypatch.setattr(sw, "_FRONT_ON", True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,window", [(200, 16), (64, 0), (130, 130), (1, 0), (300, 256)])
def test_front_same_bits_as_checked_path(monkeypatch, spy, dtype, n, window):
    rng = np.random.default_rng(n + window)
    Q, K, V = _qkv(rng, n=n, dtype=dtype)
    out = sliding_window_attention(Q, K, V, window)
    assert spy == [], "the plain case must take the compiled front"
    assert out.dtype == dtype and out.shape == (2, 3, n, 5)
    ref = _checked(monkeypatch, Q, K, V, window)
    assert len(spy) == 1
    assert np.array_equal(out, ref)
    assert np.array_equal(sliding_window_attention(Q, K, V, window, backend="numba"), out)


def test_front_fallbacks_take_the_checked_path(monkeypatch, spy):
    rng = np.random.default_rng(1)
    Q, K, V = _qkv(rng)
    ro = Q.copy()
    ro.flags.writeable = False
    cases = [
        ((Q, K, V, 16, 2), {}),  # dilation
        ((Q, K, V, 16, 1, (3,)), {}),  # a global position
        ((Q, K, V, 16, 1, np.array([], dtype=np.int64)), {}),  # an array of positions
        ((Q, K, V, 16), {"causal": True}),
        ((Q, K.astype(np.float64), V, 16), {}),  # mixed dtypes
        ((np.asfortranarray(Q), K, V, 16), {}),
        ((ro, K, V, 16), {}),  # read-only
        ((Q, K, V, np.int64(16)), {}),  # a NumPy integer window
        ((Q, K, V, 16), {"backend": "numpy"}),
    ]
    for args, kwargs in cases:
        before = len(spy)
        sliding_window_attention(*args, **kwargs)
        assert len(spy) == before + 1, (args[3:], kwargs)
    monkeypatch.setenv("REFIMPL_BACKEND", "numpy")
    sliding_window_attention(Q, K, V, 16)
    assert len(spy) == len(cases) + 1
    monkeypatch.delenv("REFIMPL_BACKEND")
    from refimpl.kernels import record_calls

    with record_calls() as log:  # a recorder sees the dispatch: the checked path
        sliding_window_attention(Q, K, V, 16)
    assert log == [("sliding_window_attention", "numba")]


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_front_refuses_nonfinite_naming_the_argument(spy, which, bad):
    rng = np.random.default_rng(2)
    args = list(_qkv(rng))
    args[which][1, 2, 150, 0] = bad
    with pytest.raises(ValueError, match=f"^{'QKV'[which]} contains NaN or inf$"):
        sliding_window_attention(*args, 16)
    assert spy == []  # raised by the front


def test_front_declines_shapes_and_the_checked_path_raises(spy):
    rng = np.random.default_rng(3)
    Q, K, V = _qkv(rng)
    with pytest.raises(ValueError, match="must share"):
        sliding_window_attention(Q, K[:, :, :100].copy(), V, 16)
    with pytest.raises(ValueError, match="same last dimension"):
        sliding_window_attention(Q, K[..., :4].copy(), V, 16)
    with pytest.raises(ValueError, match="window must be <= the sequence length"):
        sliding_window_attention(Q, K, V, 202)
    with pytest.raises(ValueError, match="non-negative even"):
        sliding_window_attention(Q, K, V, 7)
    assert len(spy) == 4  # each declined (by the front's shape test or before it)


@pytest.mark.parametrize("shape", [(0, 1, 10, 4), (1, 0, 10, 4), (1, 1, 0, 4), (1, 1, 10, 0)])
def test_front_empty_axes_as_the_checked_path(monkeypatch, shape):
    Q = np.zeros(shape, dtype=np.float32)
    V = np.ones(shape[:3] + (3,), dtype=np.float32)
    with np.errstate(divide="ignore"):  # d = 0: the checked path's scale 1/√0
        ref = _checked(monkeypatch, Q, Q.copy(), V, 0)
        out = sliding_window_attention(Q, Q.copy(), V, 0)
    assert out.shape == ref.shape == shape[:3] + (3,)
    assert np.array_equal(out, ref, equal_nan=True)
