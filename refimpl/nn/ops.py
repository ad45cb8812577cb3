"""Primitive operations as explicit ``op_forward(...) -> (out, cache)`` / ``op_backward(dout,
cache) -> grads`` pairs, in the style of cs231n's layers.

Every function here takes and returns plain NumPy arrays; :mod:`refimpl.nn.tensor` records them
on a tape so that models compose without hand-written model-level backward passes. A backward
function returns one gradient per differentiable input of its forward, in order (``None`` for an
input that has no gradient, e.g. integer indices). Each pair is gradient-checked by central
differences in float64 (``tests/nn/test_ops.py``).

Shapes follow PyTorch: a linear layer's weight is ``(out_features, in_features)`` and
``y = x @ W.T + b``.
"""

from __future__ import annotations

import numpy as np

from refimpl.kernels.gelu import gelu as _gelu_kernel
from refimpl.kernels.gelu import gelu_grad as _gelu_grad_kernel


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting."""
    if grad.shape == tuple(shape):
        return grad
    ndiff = grad.ndim - len(shape)
    if ndiff > 0:
        grad = grad.sum(axis=tuple(range(ndiff)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


# ---------------------------------------------------------------- element-wise arithmetic
def add_forward(a, b):
    return a + b, (np.shape(a), np.shape(b))


def add_backward(dout, cache):
    sa, sb = cache
    return unbroadcast(dout, sa), unbroadcast(dout, sb)


def sub_forward(a, b):
    return a - b, (np.shape(a), np.shape(b))


def sub_backward(dout, cache):
    sa, sb = cache
    return unbroadcast(dout, sa), unbroadcast(-dout, sb)


def mul_forward(a, b):
    return a * b, (a, b)


def mul_backward(dout, cache):
    a, b = cache
    return unbroadcast(dout * b, np.shape(a)), unbroadcast(dout * a, np.shape(b))


def div_forward(a, b):
    return a / b, (a, b)


def div_backward(dout, cache):
    a, b = cache
    return unbroadcast(dout / b, np.shape(a)), unbroadcast(-dout * a / (b * b), np.shape(b))


def neg_forward(a):
    return -a, None


def neg_backward(dout, cache):
    return (-dout,)


def pow_forward(a, p: float):
    """``a ** p`` for a constant exponent ``p``."""
    return a ** p, (a, p)


def pow_backward(dout, cache):
    a, p = cache
    return (dout * p * a ** (p - 1),)


def exp_forward(a):
    out = np.exp(a)
    return out, out


def exp_backward(dout, cache):
    return (dout * cache,)


def log_forward(a):
    return np.log(a), a


def log_backward(dout, cache):
    return (dout / cache,)


def sqrt_forward(a):
    out = np.sqrt(a)
    return out, out


def sqrt_backward(dout, cache):
    return (dout / (2.0 * cache),)


def abs_forward(a):
    """``|a|``; the subgradient at 0 is taken as 0."""
    return np.abs(a), np.sign(a)


def abs_backward(dout, cache):
    return (dout * cache,)


def clip_forward(a, lo, hi):
    """``clip(a, lo, hi)``; gradient 1 strictly inside, 0 where clipped."""
    out = np.clip(a, lo, hi)
    return out, (out == a)


def clip_backward(dout, cache):
    return (dout * cache,)


# ---------------------------------------------------------------- linear algebra
#: Below this many multiply-adds per matrix (16.8 M, ~10 ms on one core), a stacked product
#: runs on one BLAS thread.
_SMALL_GEMM = 1 << 24


def _stacked_small(a, b) -> bool:
    """A stack of small products (e.g. per-head attention scores, (B, H, n, d) @ (B, H, d, n)):
    NumPy calls the BLAS once per matrix, and a multi-threaded BLAS pays a thread hand-off per
    call that costs more than the product (measured 100x on a loaded 2-core machine)."""
    sa, sb = np.shape(a), np.shape(b)
    if (len(sa) < 3 and len(sb) < 3) or not sa or not sb:
        return False
    m = sa[-2] if len(sa) > 1 else 1
    n = sb[-1] if len(sb) > 1 else 1
    return m * sa[-1] * n < _SMALL_GEMM


def matmul_forward(a, b):
    """Batched matrix product ``a @ b`` with NumPy broadcasting over leading axes."""
    if _stacked_small(a, b):
        with single_thread_blas():
            return a @ b, (a, b)
    return a @ b, (a, b)


def matmul_backward(dout, cache):
    a, b = cache
    if _stacked_small(a, b):
        with single_thread_blas():
            return _matmul_backward(dout, a, b)
    return _matmul_backward(dout, a, b)


def _matmul_backward(dout, a, b):
    if a.ndim == 1 and b.ndim == 1:
        return dout * b, dout * a
    if a.ndim == 1:  # (k,) @ (..., k, n) -> (..., n)
        da = (b @ dout[..., None])[..., 0]
        db = a[:, None] * dout[..., None, :]
        return unbroadcast(da, a.shape), unbroadcast(db, b.shape)
    if b.ndim == 1:  # (..., m, k) @ (k,) -> (..., m)
        da = dout[..., :, None] * b
        db = np.swapaxes(a, -1, -2) @ dout[..., None]
        return unbroadcast(da, a.shape), unbroadcast(db[..., 0], b.shape)
    da = dout @ np.swapaxes(b, -1, -2)
    db = np.swapaxes(a, -1, -2) @ dout
    return unbroadcast(da, a.shape), unbroadcast(db, b.shape)


def linear_forward(x, W, b=None):
    """Affine map ``y = x @ W.T + b``.

    Parameters
    ----------
    x : ndarray of shape (..., in_features)
    W : ndarray of shape (out_features, in_features)
    b : ndarray of shape (out_features,) or None

    Returns
    -------
    out : ndarray of shape (..., out_features)
    cache : tuple
    """
    # one 2-D GEMM over all leading axes: NumPy's stacked (B, n, k) @ (k, m) calls the BLAS
    # once per batch entry, and a multi-threaded BLAS then pays a thread hand-off per call
    # (measured 25x slower on a loaded 2-core machine for (64, 128, 384) @ (384, 384))
    out = (x.reshape(-1, x.shape[-1]) @ W.T).reshape(*x.shape[:-1], W.shape[0])
    if b is not None:
        out = out + b
    return out, (x, W, b is not None)


def linear_backward(dout, cache):
    """Gradients ``(dx, dW, db)`` of :func:`linear_forward` (``db`` is None without bias)."""
    x, W, has_b = cache
    x2 = x.reshape(-1, x.shape[-1])
    d2 = dout.reshape(-1, dout.shape[-1])
    dx = (d2 @ W).reshape(x.shape)  # one 2-D GEMM (see linear_forward)
    dW = d2.T @ x2  # (out, in)
    db = d2.sum(axis=0) if has_b else None
    return dx, dW, db


# ---------------------------------------------------------------- activations
def tanh_forward(a):
    out = np.tanh(a)
    return out, out


def tanh_backward(dout, cache):
    return (dout * (1.0 - cache * cache),)


def sigmoid_forward(a):
    # numerically stable: never exponentiates a large positive number
    out = np.empty_like(a, dtype=np.result_type(a, np.float32))
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    ea = np.exp(a[~pos])
    out[~pos] = ea / (1.0 + ea)
    return out, out


def sigmoid_backward(dout, cache):
    return (dout * cache * (1.0 - cache),)


def relu_forward(a):
    return np.maximum(a, 0), a > 0


def relu_backward(dout, cache):
    return (dout * cache,)


def gelu_forward(a):
    """Exact GELU ``x Φ(x)``, ``Φ(x) = ½(1 + erf(x/√2))`` (PyTorch's default,
    ``approximate='none'``), through the vectorised kernel :func:`refimpl.kernels.gelu.gelu`
    (float32: evaluated in float64 and rounded once; ``backend`` from ``REFIMPL_BACKEND``)."""
    out, cdf = _gelu_kernel(a)
    return out, (a, cdf)


def gelu_backward(dout, cache):
    """``dout · (Φ(x) + x φ(x))`` in one pass (:func:`refimpl.kernels.gelu.gelu_grad`)."""
    a, cdf = cache
    return (_gelu_grad_kernel(dout, a, cdf),)


def elu_forward(a, alpha: float = 1.0):
    out = np.where(a > 0, a, alpha * np.expm1(np.minimum(a, 0)))
    return out, (a, out, alpha)


def elu_backward(dout, cache):
    a, out, alpha = cache
    return (dout * np.where(a > 0, 1.0, out + alpha),)


def softmax_forward(a, axis: int = -1):
    z = a - a.max(axis=axis, keepdims=True)
    e = np.exp(z)
    out = e / e.sum(axis=axis, keepdims=True)
    return out, (out, axis)


def softmax_backward(dout, cache):
    s, axis = cache
    return (s * (dout - (dout * s).sum(axis=axis, keepdims=True)),)


def log_softmax_forward(a, axis: int = -1):
    z = a - a.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    out = z - lse
    return out, (out, axis)


def log_softmax_backward(dout, cache):
    out, axis = cache
    return (dout - np.exp(out) * dout.sum(axis=axis, keepdims=True),)


# ---------------------------------------------------------------- normalisation, lookup, dropout
def layer_norm_forward(x, gamma, beta, eps: float = 1e-5):
    """Layer normalisation over the last axis.

    Parameters
    ----------
    x : ndarray of shape (..., d)
    gamma, beta : ndarray of shape (d,)
    """
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv
    return xhat * gamma + beta, (xhat, inv, gamma)


def layer_norm_backward(dout, cache):
    xhat, inv, gamma = cache
    d = xhat.shape[-1]
    dgamma = (dout * xhat).reshape(-1, d).sum(axis=0)
    dbeta = dout.reshape(-1, d).sum(axis=0)
    dxhat = dout * gamma
    dx = inv * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def embedding_forward(W, idx):
    """Row lookup ``W[idx]``.

    Parameters
    ----------
    W : ndarray of shape (num_embeddings, dim)
    idx : integer ndarray of any shape

    Returns
    -------
    out : ndarray of shape idx.shape + (dim,)
    """
    return W[idx], (W.shape, idx)


def embedding_backward(dout, cache):
    shape, idx = cache
    dW = np.zeros(shape, dtype=dout.dtype)
    np.add.at(dW, idx.reshape(-1), dout.reshape(-1, shape[1]))
    return dW, None


def dropout_forward(x, p: float, rng: np.random.Generator):
    """Inverted dropout: zero each element with probability ``p`` and scale the rest by 1/(1-p)."""
    if p == 0.0:
        mask = np.ones_like(x)
    else:
        mask = (rng.random(x.shape) >= p).astype(x.dtype) / (1.0 - p)
    return x * mask, mask


def dropout_backward(dout, cache):
    return (dout * cache,)


def mask_forward(x, mask):
    """Element-wise gate ``x * mask`` where ``mask`` is a constant (no gradient)."""
    return x * mask, mask


def mask_backward(dout, cache):
    return (unbroadcast(dout * cache, dout.shape),)


def where_forward(cond, a, b):
    """``np.where(cond, a, b)``; ``cond`` is a constant boolean array."""
    return np.where(cond, a, b), (cond, np.shape(a), np.shape(b))


def where_backward(dout, cache):
    cond, sa, sb = cache
    return None, unbroadcast(np.where(cond, dout, 0.0), sa), unbroadcast(np.where(cond, 0.0, dout), sb)


def masked_fill_forward(x, mask, value: float):
    """Set ``x`` to ``value`` where the boolean ``mask`` is True (no gradient there)."""
    return np.where(mask, value, x), mask


def masked_fill_backward(dout, cache):
    return (np.where(cache, 0.0, dout),)


# ---------------------------------------------------------------- shape and indexing
def reshape_forward(x, shape):
    return x.reshape(shape), x.shape


def reshape_backward(dout, cache):
    return (dout.reshape(cache),)


def transpose_forward(x, axes=None):
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(axes)
    return np.transpose(x, axes), axes


def transpose_backward(dout, cache):
    return (np.transpose(dout, np.argsort(cache)),)


def getitem_forward(x, index):
    """Basic or advanced indexing ``x[index]`` (slices, integers, integer arrays)."""
    return x[index], (x.shape, x.dtype, index)


def getitem_backward(dout, cache):
    shape, dtype, index = cache
    dx = np.zeros(shape, dtype=dout.dtype)
    np.add.at(dx, index, dout)
    return (dx,)


def gather_forward(x, idx, axis: int = -1):
    """``np.take_along_axis(x, idx, axis)`` (e.g. pick the target class's log-probability)."""
    return np.take_along_axis(x, idx, axis=axis), (x.shape, idx, axis)


def gather_backward(dout, cache):
    shape, idx, axis = cache
    dx = np.zeros(shape, dtype=dout.dtype)
    # accumulate (duplicate indices along the axis add up)
    idx_full = np.indices(idx.shape, sparse=True)
    ax = axis % len(shape)
    index = tuple(idx if i == ax else idx_full[i] for i in range(len(shape)))
    np.add.at(dx, index, dout)
    return dx, None


def concat_forward(*xs, axis: int = -1):
    """Concatenate along ``axis``; backward splits ``dout`` back into the pieces."""
    sizes = [x.shape[axis] for x in xs]
    return np.concatenate(xs, axis=axis), (sizes, axis)


def concat_backward(dout, cache):
    sizes, axis = cache
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.split(dout, cuts, axis=axis))


def stack_forward(*xs, axis: int = 0):
    return np.stack(xs, axis=axis), (len(xs), axis)


def stack_backward(dout, cache):
    n, axis = cache
    return tuple(np.take(dout, i, axis=axis) for i in range(n))


# ---------------------------------------------------------------- reductions
def sum_forward(x, axis=None, keepdims: bool = False):
    return x.sum(axis=axis, keepdims=keepdims), (x.shape, axis, keepdims)


def sum_backward(dout, cache):
    shape, axis, keepdims = cache
    if axis is not None and not keepdims:
        dout = np.expand_dims(dout, axis)
    return (np.broadcast_to(dout, shape).copy(),)


def mean_forward(x, axis=None, keepdims: bool = False):
    out = x.mean(axis=axis, keepdims=keepdims)
    n = x.size // max(np.size(out), 1) if x.size else 1
    return out, (x.shape, axis, keepdims, n)


def mean_backward(dout, cache):
    shape, axis, keepdims, n = cache
    if axis is not None and not keepdims:
        dout = np.expand_dims(dout, axis)
    return (np.broadcast_to(dout / n, shape).copy(),)


def max_forward(x, axis=None, keepdims: bool = False):
    """Maximum along ``axis``; ties share the gradient equally."""
    out = x.max(axis=axis, keepdims=True)
    sel = (x == out).astype(x.dtype)
    sel /= sel.sum(axis=axis, keepdims=True)
    res = out if keepdims else (out.reshape(()) if axis is None else np.squeeze(out, axis))
    return res, (sel, axis, keepdims)


def max_backward(dout, cache):
    sel, axis, keepdims = cache
    if axis is not None and not keepdims:
        dout = np.expand_dims(dout, axis)
    return (sel * dout,)


# ---------------------------------------------------------------- fused recurrences
# One tape node per (layer, direction) instead of ~15 tiny ops per time step: the forward loops
# over time and keeps what the backward needs (cs231n's rnn/lstm_step, unrolled over the
# sequence). Gate order and weight layout are PyTorch's, so weights copy across:
#   LSTM  gates a = [i | f | g | o]   (4H),  GRU  gates [r | z | n]   (3H).
# ``valid`` (bool (B, T)) marks real steps; at a padded step the state is carried over unchanged,
# so the state after the last step equals the state at each sequence's last real step (and, for
# ``reverse=True``, a right-padded sequence starts from h0 at its last real token, as PyTorch's
# packed sequences do).

_BLAS_CONTROLLER = []


def single_thread_blas():
    """Context manager limiting BLAS to one thread (for loops of small matrix products).

    The per-step products of a recurrence are small (e.g. (64, 64) @ (64, 256)); OpenBLAS
    still splits them over threads, and on a loaded 2-core machine the thread hand-off costs
    10-20x the product itself. Entering this costs ~0.07 ms (one ``threadpoolctl`` controller
    is created on first use and reused).
    """
    if not _BLAS_CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def _sigmoid(a):
    """σ(a) = 1 / (1 + e^{−a}) with one ``np.exp`` (NumPy's float64 ``tanh`` is ~4x slower
    than ``exp`` on this hardware). ``e^{−a}`` overflows to inf for a << 0, giving exactly 0;
    the overflow warning is silenced. Relative error ≤ a few ulp."""
    with np.errstate(over="ignore"):
        e = np.exp(-a)
    e += 1.0
    return np.reciprocal(e, out=e)


def _tanh(a):
    """tanh(a) = 2σ(2a) − 1; absolute error ≤ ~2e-16 (relative error grows like eps/|a| for
    |a| << 1, harmless next to the O(1) gate values it feeds)."""
    out = _sigmoid(2.0 * a)
    out *= 2.0
    out -= 1.0
    return out


def _time_order(T: int, reverse: bool):
    return range(T - 1, -1, -1) if reverse else range(T)


def rnn_seq_forward(xg, h0, W_hh, valid=None, reverse: bool = False,
                    nonlinearity: str = "tanh"):
    """Elman RNN over a whole sequence, ``h_t = act(xg_t + h_{t-1} W_hhᵀ)``.

    Parameters
    ----------
    xg : ndarray of shape (B, T, H)
        Input projections ``x_t W_ihᵀ + b_ih + b_hh`` for every step.
    h0 : ndarray of shape (B, H)
    W_hh : ndarray of shape (H, H)
    valid : bool ndarray of shape (B, T), optional
        False at padded steps (state carried over).
    reverse : bool
        Run from ``t = T-1`` down to 0.
    nonlinearity : {"tanh", "relu"}

    Returns
    -------
    out : ndarray of shape (B, T, H)
        The state after each step (carried over at padded steps).
    cache : tuple
    """
    with single_thread_blas():
        return _rnn_seq_forward(xg, h0, W_hh, valid, reverse, nonlinearity)


def _rnn_seq_forward(xg, h0, W_hh, valid, reverse, nonlinearity):
    B, T, H = xg.shape
    hs = np.empty((T, B, H), dtype=xg.dtype)
    hprev = np.empty((T, B, H), dtype=xg.dtype)
    h = h0
    for t in _time_order(T, reverse):
        hprev[t] = h
        a = xg[:, t] + h @ W_hh.T
        hn = _tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
        if valid is not None:
            hn = np.where(valid[:, t, None], hn, h)
        hs[t] = h = hn
    return hs.transpose(1, 0, 2), (hs, hprev, W_hh, valid, reverse, nonlinearity)


def rnn_seq_backward(dout, cache):
    """Gradients ``(dxg, dh0, dW_hh)`` of :func:`rnn_seq_forward` (BPTT)."""
    with single_thread_blas():
        return _rnn_seq_backward(dout, cache)


def _rnn_seq_backward(dout, cache):
    hs, hprev, W_hh, valid, reverse, nonlinearity = cache
    T, B, H = hs.shape
    dout = dout.transpose(1, 0, 2)  # (T, B, H)
    da_all = np.zeros_like(hs)
    dh_next = np.zeros((B, H), dtype=hs.dtype)
    for t in _time_order(T, not reverse):
        dh = dout[t] + dh_next
        if valid is not None:
            m = valid[:, t, None]
            dpass = np.where(m, 0.0, dh)
            dh = np.where(m, dh, 0.0)
        # tanh' = 1 - h^2 ; relu' = [h > 0]
        da = dh * (1.0 - hs[t] * hs[t]) if nonlinearity == "tanh" else dh * (hs[t] > 0)
        if valid is not None:
            da = np.where(m, da, 0.0)
        da_all[t] = da
        dh_next = da @ W_hh
        if valid is not None:
            dh_next = dh_next + dpass
    dW_hh = da_all.reshape(-1, H).T @ hprev.reshape(-1, H)  # (H, H)
    return da_all.transpose(1, 0, 2), dh_next, dW_hh


def lstm_seq_forward(xg, h0, c0, W_hh, valid=None, reverse: bool = False):
    """LSTM over a whole sequence with PyTorch's gate order ``i, f, g, o``.

    For every step (Hochreiter & Schmidhuber 1997; PyTorch ``nn.LSTM``)::

        a   = xg_t + h_{t-1} W_hhᵀ                    (B, 4H), xg_t = x_t W_ihᵀ + b_ih + b_hh
        i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o)
        c_t = f ⊙ c_{t-1} + i ⊙ g
        h_t = o ⊙ tanh(c_t)

    Parameters
    ----------
    xg : ndarray of shape (B, T, 4H)
    h0, c0 : ndarray of shape (B, H)
    W_hh : ndarray of shape (4H, H)
    valid : bool ndarray of shape (B, T), optional
    reverse : bool

    Returns
    -------
    out : ndarray of shape (2, B, T, H)
        ``out[0]`` the hidden states h_t, ``out[1]`` the cell states c_t.
    cache : tuple
    """
    with single_thread_blas():
        return _lstm_seq_forward(xg, h0, c0, W_hh, valid, reverse)


def _lstm_seq_forward(xg, h0, c0, W_hh, valid, reverse):
    B, T, G = xg.shape
    H = G // 4
    dt = xg.dtype
    hs = np.empty((T, B, H), dtype=dt)
    cs = np.empty((T, B, H), dtype=dt)
    hprev = np.empty((T, B, H), dtype=dt)
    cprev = np.empty((T, B, H), dtype=dt)
    acts = np.empty((T, B, G), dtype=dt)  # [i f g o] after their nonlinearities
    tcs = np.empty((T, B, H), dtype=dt)   # tanh(c_t) before carrying
    h, c = h0, c0
    for t in _time_order(T, reverse):
        hprev[t], cprev[t] = h, c
        a = xg[:, t] + h @ W_hh.T  # (B, 4H)
        act = acts[t]
        a[:, 2 * H:3 * H] *= 2.0
        act[:] = _sigmoid(a)
        act[:, 2 * H:3 * H] *= 2.0
        act[:, 2 * H:3 * H] -= 1.0  # g = tanh(a_g) = 2σ(2a_g) − 1
        i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
        cn = f * c + i * g
        tcs[t] = _tanh(cn)
        hn = o * tcs[t]
        if valid is not None:
            m = valid[:, t, None]
            hn = np.where(m, hn, h)
            cn = np.where(m, cn, c)
        hs[t] = h = hn
        cs[t] = c = cn
    out = np.stack([hs, cs]).transpose(0, 2, 1, 3)  # (2, B, T, H)
    return out, (hprev, cprev, acts, tcs, W_hh, valid, reverse)


def lstm_seq_backward(dout, cache):
    """Gradients ``(dxg, dh0, dc0, dW_hh)`` of :func:`lstm_seq_forward` (BPTT)."""
    with single_thread_blas():
        return _lstm_seq_backward(dout, cache)


def _lstm_seq_backward(dout, cache):
    hprev, cprev, acts, tcs, W_hh, valid, reverse = cache
    T, B, H = hprev.shape
    dt = acts.dtype
    dhs = dout[0].transpose(1, 0, 2)  # (T, B, H)
    dcs = dout[1].transpose(1, 0, 2)
    i, f, g, o = acts[..., :H], acts[..., H:2 * H], acts[..., 2 * H:3 * H], acts[..., 3 * H:]
    # local derivatives for all steps at once (vectorised over T, not inside the loop):
    # σ' = s(1 − s) for i, f, o; tanh' = 1 − g² for g; ∂h/∂c through h = o tanh(c)
    dact = acts * (1.0 - acts)                    # (T, B, 4H)
    dact[..., 2 * H:3 * H] = 1.0 - g * g
    odtc = o * (1.0 - tcs * tcs)                  # (T, B, H)
    fm = f
    if valid is not None:
        # a padded step passes dh, dc through unchanged and has no local gradient
        mT = valid.T[:, :, None].astype(dt)       # (T, B, 1)
        dact *= mT
        odtc = odtc * mT
        fm = f * mT + (1.0 - mT)
        nm = 1.0 - mT
    da_all = np.empty_like(acts)
    dh_next = np.zeros((B, H), dtype=dt)
    dc_next = np.zeros((B, H), dtype=dt)
    for t in _time_order(T, not reverse):
        dh = dhs[t] + dh_next
        dc = dcs[t] + dc_next
        dc += dh * odtc[t]                        # through h_t = o ⊙ tanh(c_t)
        u = da_all[t]                             # upstream of each gate's activation
        np.multiply(dc, g[t], out=u[:, :H])       # di = dc ⊙ g
        np.multiply(dc, cprev[t], out=u[:, H:2 * H])      # df = dc ⊙ c_{t-1}
        np.multiply(dc, i[t], out=u[:, 2 * H:3 * H])      # dg = dc ⊙ i
        np.multiply(dh, tcs[t], out=u[:, 3 * H:])         # do = dh ⊙ tanh(c_t)
        u *= dact[t]                              # da = d(act) ⊙ act'(a)
        dh_next = u @ W_hh
        if valid is not None:
            dh_next += dh * nm[t]
        dc_next = dc * fm[t]                      # dc_{t-1} = dc ⊙ f (1 at padded steps)
    dW_hh = da_all.reshape(-1, 4 * H).T @ hprev.reshape(-1, H)  # (4H, H)
    return da_all.transpose(1, 0, 2), dh_next, dc_next, dW_hh


def gru_seq_forward(xg, h0, W_hh, b_hh, valid=None, reverse: bool = False):
    """GRU over a whole sequence with PyTorch's gate order ``r, z, n``.

    For every step (Cho et al. 2014; PyTorch ``nn.GRU``)::

        xg_t = x_t W_ihᵀ + b_ih,   hh = h_{t-1} W_hhᵀ + b_hh          (B, 3H) each
        r = σ(xg_r + hh_r),  z = σ(xg_z + hh_z)
        n = tanh(xg_n + r ⊙ hh_n)          # r gates (W_hn h + b_hn), PyTorch's form
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

    Parameters
    ----------
    xg : ndarray of shape (B, T, 3H)
    h0 : ndarray of shape (B, H)
    W_hh : ndarray of shape (3H, H)
    b_hh : ndarray of shape (3H,)
    valid : bool ndarray of shape (B, T), optional
    reverse : bool

    Returns
    -------
    out : ndarray of shape (B, T, H)
    cache : tuple
    """
    with single_thread_blas():
        return _gru_seq_forward(xg, h0, W_hh, b_hh, valid, reverse)


def _gru_seq_forward(xg, h0, W_hh, b_hh, valid, reverse):
    B, T, G = xg.shape
    H = G // 3
    dt = xg.dtype
    hs = np.empty((T, B, H), dtype=dt)
    hprev = np.empty((T, B, H), dtype=dt)
    acts = np.empty((T, B, G), dtype=dt)   # [r z n]
    hhn = np.empty((T, B, H), dtype=dt)    # W_hn h + b_hn
    h = h0
    for t in _time_order(T, reverse):
        hprev[t] = h
        hh = h @ W_hh.T + b_hh  # (B, 3H)
        act = acts[t]
        act[:, :2 * H] = _sigmoid(xg[:, t, :2 * H] + hh[:, :2 * H])
        r, z = act[:, :H], act[:, H:2 * H]
        hhn[t] = hh[:, 2 * H:]
        act[:, 2 * H:] = n = _tanh(xg[:, t, 2 * H:] + r * hh[:, 2 * H:])
        hn = (1.0 - z) * n + z * h
        if valid is not None:
            hn = np.where(valid[:, t, None], hn, h)
        hs[t] = h = hn
    return hs.transpose(1, 0, 2), (hprev, acts, hhn, W_hh, valid, reverse)


def gru_seq_backward(dout, cache):
    """Gradients ``(dxg, dh0, dW_hh, db_hh)`` of :func:`gru_seq_forward` (BPTT)."""
    with single_thread_blas():
        return _gru_seq_backward(dout, cache)


def _gru_seq_backward(dout, cache):
    hprev, acts, hhn, W_hh, valid, reverse = cache
    T, B, H = hprev.shape
    dout = dout.transpose(1, 0, 2)
    dxg = np.zeros_like(acts)
    dhh_all = np.zeros_like(acts)
    dh_next = np.zeros((B, H), dtype=acts.dtype)
    for t in _time_order(T, not reverse):
        dh = dout[t] + dh_next
        if valid is not None:
            m = valid[:, t, None]
            dpass = np.where(m, 0.0, dh)
            dh = np.where(m, dh, 0.0)
        act = acts[t]
        r, z, n = act[:, :H], act[:, H:2 * H], act[:, 2 * H:]
        dan = dh * (1.0 - z) * (1.0 - n * n)        # through n = tanh(.)
        dar = dan * hhn[t] * r * (1.0 - r)
        daz = dh * (hprev[t] - n) * z * (1.0 - z)
        dxg[t, :, :H], dxg[t, :, H:2 * H], dxg[t, :, 2 * H:] = dar, daz, dan
        dhh = dhh_all[t]
        dhh[:, :H], dhh[:, H:2 * H], dhh[:, 2 * H:] = dar, daz, dan * r
        dh_next = dhh @ W_hh + dh * z
        if valid is not None:
            dh_next = dh_next + dpass
    dW_hh = dhh_all.reshape(-1, 3 * H).T @ hprev.reshape(-1, H)  # (3H, H)
    db_hh = dhh_all.reshape(-1, 3 * H).sum(axis=0)
    return dxg.transpose(1, 0, 2), dh_next, dW_hh, db_hh


# ---------------------------------------------------------------- fused softmax cross-entropy
def cross_entropy_forward(logits, y):
    """Per-row negative log-likelihood ``−log softmax(logits)[y]``, fused for speed.

    Parameters
    ----------
    logits : ndarray of shape (N, C)
    y : int ndarray of shape (N,)
        Target classes in ``[0, C)``.

    Returns
    -------
    out : ndarray of shape (N,)
        ``logsumexp(logits_n) − logits_n[y_n]``.
    cache : tuple
    """
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=-1, keepdims=True)
    rows = np.arange(logits.shape[0])
    out = np.log(s[:, 0]) - z[rows, y]
    return out, (e / s, y)


def cross_entropy_backward(dout, cache):
    """``dlogits = dout[:, None] (softmax(logits) − onehot(y))``; no gradient for ``y``."""
    p, y = cache
    d = p * dout[:, None]
    d[np.arange(p.shape[0]), y] -= dout
    return d, None
