"""Recurrent layers :class:`RNN`, :class:`GRU`, :class:`LSTM` and single-step cells, with
PyTorch's gate order and weight layout so weights copy across to ``torch.nn``.

Gate conventions (what §3's quantised cells and §6's decomposed cells must follow)
--------------------------------------------------------------------------------------
``H`` is the hidden size, ``x_t`` of shape (B, D), ``h, c`` of shape (B, H). The stacked weights
are ``W_ih`` of shape (G·H, D), ``W_hh`` of shape (G·H, H), ``b_ih, b_hh`` of shape (G·H,), with
the gate blocks stacked in this order along the first axis:

* RNN (G = 1): ``h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)`` (or ReLU).
* LSTM (G = 4, blocks ``i, f, g, o``)::

      [a_i a_f a_g a_o] = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh
      i = σ(a_i), f = σ(a_f), g = tanh(a_g), o = σ(a_o)
      c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')

* GRU (G = 3, blocks ``r, z, n``), PyTorch's variant where ``r`` gates ``W_hn h + b_hn``::

      r = σ(W_ir x + b_ir + W_hr h + b_hr)
      z = σ(W_iz x + b_iz + W_hz h + b_hz)
      n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
      h' = (1 − z) ⊙ n + z ⊙ h

:func:`rnn_cell`, :func:`lstm_cell` and :func:`gru_cell` implement one step as a readable
composition of tape ops (copy them to build a quantised or decomposed cell). The layers run a
fused whole-sequence primitive pair (:func:`refimpl.nn.ops.lstm_seq_forward` and friends: one
tape node per layer and direction) unless ``fused=False``, which unrolls the cells on the tape;
the tests check both paths against each other and against ``torch.nn``.

Parameter names follow PyTorch's (``weight_ih_l0`` → ``W_ih_l0``, ``bias_hh_l1_reverse`` →
``b_hh_l1_reverse``); ``W_ih, W_hh, b_ih, b_hh`` are aliases of layer 0's forward direction.

References
----------
Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997.
Cho et al., "Learning phrase representations using RNN encoder-decoder", EMNLP 2014.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn import ops
from refimpl.nn.layers import check_features, transformed
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, apply_op, as_tensor, data_of
from refimpl.utils import as_rng, check_choice, check_float, check_int

__all__ = ["RNN", "GRU", "LSTM", "rnn_cell", "lstm_cell", "gru_cell", "check_lengths",
           "length_mask"]


# ---------------------------------------------------------------------------------------------
# single-step cells (readable compositions of tape ops)
# ---------------------------------------------------------------------------------------------

def _affine(x, W, b):
    return F.linear(x, W, b)


def rnn_cell(x, h, W_ih, W_hh, b_ih=None, b_hh=None, nonlinearity: str = "tanh") -> Tensor:
    """One Elman-RNN step ``h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)``.

    Parameters
    ----------
    x : Tensor of shape (B, D)
    h : Tensor of shape (B, H)
    W_ih : Tensor of shape (H, D)
    W_hh : Tensor of shape (H, H)
    b_ih, b_hh : Tensor of shape (H,), optional
    nonlinearity : {"tanh", "relu"}

    Returns
    -------
    Tensor of shape (B, H)
    """
    a = _affine(x, W_ih, b_ih) + _affine(h, W_hh, b_hh)
    return F.tanh(a) if nonlinearity == "tanh" else F.relu(a)


def lstm_cell(x, state, W_ih, W_hh, b_ih=None, b_hh=None) -> tuple[Tensor, Tensor]:
    """One LSTM step with PyTorch's gate order ``i, f, g, o`` (see the module docstring).

    Parameters
    ----------
    x : Tensor of shape (B, D)
    state : tuple (h, c) of Tensors of shape (B, H)
    W_ih : Tensor of shape (4H, D)
    W_hh : Tensor of shape (4H, H)
    b_ih, b_hh : Tensor of shape (4H,), optional

    Returns
    -------
    (h', c') : Tensors of shape (B, H)
    """
    h, c = state
    a = _affine(x, W_ih, b_ih) + _affine(h, W_hh, b_hh)  # (B, 4H)
    a_i, a_f, a_g, a_o = F.split(a, 4, axis=-1)
    i, f, g, o = F.sigmoid(a_i), F.sigmoid(a_f), F.tanh(a_g), F.sigmoid(a_o)
    c_new = f * c + i * g          # c' = f ⊙ c + i ⊙ g
    h_new = o * F.tanh(c_new)      # h' = o ⊙ tanh(c')
    return h_new, c_new


def gru_cell(x, h, W_ih, W_hh, b_ih=None, b_hh=None) -> Tensor:
    """One GRU step with PyTorch's gate order ``r, z, n`` (see the module docstring).

    Parameters
    ----------
    x : Tensor of shape (B, D)
    h : Tensor of shape (B, H)
    W_ih : Tensor of shape (3H, D)
    W_hh : Tensor of shape (3H, H)
    b_ih, b_hh : Tensor of shape (3H,), optional

    Returns
    -------
    Tensor of shape (B, H)
    """
    xr, xz, xn = F.split(_affine(x, W_ih, b_ih), 3, axis=-1)
    hr, hz, hn = F.split(_affine(h, W_hh, b_hh), 3, axis=-1)
    r = F.sigmoid(xr + hr)
    z = F.sigmoid(xz + hz)
    n = F.tanh(xn + r * hn)        # r gates (W_hn h + b_hn)
    return (1.0 - z) * n + z * h   # h' = (1 − z) ⊙ n + z ⊙ h


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def check_lengths(lengths, B: int, T: int, name: str = "lengths") -> np.ndarray:
    """Validate sequence lengths: integers of shape (B,) in ``[1, T]``."""
    L = np.asarray(data_of(lengths))
    if L.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {L.dtype}")
    if L.shape != (B,):
        raise ValueError(f"{name} must have shape ({B},), got {L.shape}")
    if L.size and (L.min() < 1 or L.max() > T):
        raise ValueError(f"{name} must lie in [1, T={T}], got values in [{L.min()}, {L.max()}]")
    return L.astype(np.int64, copy=False)


def length_mask(lengths, T: int) -> np.ndarray:
    """Boolean mask of shape (B, T), True at real steps ``t < lengths[b]``."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def _take(x: Tensor, index) -> Tensor:
    """Basic indexing ``x[index]`` with a cheap backward (``dx[index] = dout``)."""

    def fwd(a):
        return a[index], (a.shape, a.dtype)

    def bwd(dout, cache):
        shape, dtype = cache
        dx = np.zeros(shape, dtype=dout.dtype)
        dx[index] = dout
        return (dx,)

    return apply_op(fwd, bwd, x, name="take")


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------

class _RecurrentBase(Module):
    _gates = 1
    _mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 rng=None):
        self.input_size = check_int(input_size, "input_size", 1)
        self.hidden_size = H = check_int(hidden_size, "hidden_size", 1)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = check_float(dropout, "dropout", 0.0, 1.0, hi_open=True)
        self.bidirectional = bool(bidirectional)
        self.fused = True
        self.weight_transform = None
        rng = as_rng(rng)
        self._dropout_rng = np.random.default_rng(rng.integers(2**63))
        G = self._gates * H
        bound = 1.0 / np.sqrt(H)  # PyTorch: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))
        dirs = 2 if self.bidirectional else 1
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else H * dirs
            for d in range(dirs):
                sfx = self._suffix(layer, d)
                setattr(self, "W_ih" + sfx, Parameter(rng.uniform(-bound, bound, (G, d_in))))
                setattr(self, "W_hh" + sfx, Parameter(rng.uniform(-bound, bound, (G, H))))
                if self.bias:
                    setattr(self, "b_ih" + sfx, Parameter(rng.uniform(-bound, bound, G)))
                    setattr(self, "b_hh" + sfx, Parameter(rng.uniform(-bound, bound, G)))

    # aliases of layer 0, forward direction
    W_ih = property(lambda self: self.W_ih_l0)
    W_hh = property(lambda self: self.W_hh_l0)
    b_ih = property(lambda self: getattr(self, "b_ih_l0", None))
    b_hh = property(lambda self: getattr(self, "b_hh_l0", None))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def weights(self, layer: int, direction: int = 0):
        """``(W_ih, W_hh, b_ih, b_hh)`` Tensors of one layer and direction, after
        ``weight_transform`` (biases are None when ``bias=False``)."""
        sfx = self._suffix(layer, direction)
        W_ih = transformed(self, "W_ih" + sfx, getattr(self, "W_ih" + sfx))
        W_hh = transformed(self, "W_hh" + sfx, getattr(self, "W_hh" + sfx))
        return W_ih, W_hh, getattr(self, "b_ih" + sfx, None), getattr(self, "b_hh" + sfx, None)

    # -------------------------------------------------------------- forward
    def forward(self, x, lengths=None, state=None):
        """Run the stacked (bi)directional recurrence.

        Parameters
        ----------
        x : Tensor or ndarray of shape (B, T, input_size) (``(T, B, ·)`` if not batch_first)
        lengths : int ndarray of shape (B,), optional
            Real lengths in ``[1, T]``; padded steps do not update the state, outputs there are
            zero, and the final state is each sequence's state at its last real step (the
            reverse direction starts at the last real step), as with PyTorch packed sequences.
        state : optional
            Initial state, each of shape (num_layers * num_directions, B, H): ``h0`` for
            RNN/GRU, ``(h0, c0)`` for LSTM. Default zeros.

        Returns
        -------
        outputs : Tensor of shape (B, T, H * num_directions)
        final : Tensor of shape (num_layers * num_directions, B, H), or ``(h_n, c_n)`` for LSTM
        """
        x = check_features(x, "x", self.input_size, ndim=3)
        if not self.batch_first:
            x = x.transpose(1, 0, 2)
        B, T, _ = x.shape
        valid = None
        if lengths is not None:
            L = check_lengths(lengths, B, T)
            if np.any(L < T):
                valid = length_mask(L, T)  # (B, T)
        H, dirs = self.hidden_size, self.num_directions
        n_states = 2 if self._mode == "lstm" else 1
        init = self._initial_state(state, B, x.dtype, n_states)
        finals: list[list[Tensor]] = [[] for _ in range(n_states)]
        inp = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                s0 = [None if s is None else _take(s, k) if isinstance(s, Tensor) else s[k]
                      for s in init]
                seq, fin = self._run(inp, [np.zeros((B, H), x.dtype) if s is None else s
                                           for s in s0], layer, d, valid)
                outs.append(seq)
                for j in range(n_states):
                    finals[j].append(fin[j])
            inp = outs[0] if dirs == 1 else F.concat(outs, axis=-1)  # (B, T, H*dirs)
            if valid is not None:
                inp = F.mask(inp, valid[:, :, None].astype(inp.dtype))
            if self.dropout and self.training and layer < self.num_layers - 1:
                inp = F.dropout(inp, self.dropout, rng=self._dropout_rng)
        final = [F.stack(f, axis=0) for f in finals]  # (L*dirs, B, H)
        out = inp if self.batch_first else inp.transpose(1, 0, 2)
        return out, (tuple(final) if self._mode == "lstm" else final[0])

    def _initial_state(self, state, B, dtype, n_states):
        if state is None:
            return [None] * n_states
        states = list(state) if n_states == 2 else [state]
        if n_states == 2 and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise ValueError("state must be a tuple (h0, c0) for LSTM")
        want = (self.num_layers * self.num_directions, B, self.hidden_size)
        out = []
        for s in states:
            if tuple(np.shape(data_of(s))) != want:
                raise ValueError(f"state must have shape {want}, got {np.shape(data_of(s))}")
            out.append(s if isinstance(s, Tensor) else np.asarray(s, dtype=dtype))
        return out

    def _run(self, x, s0, layer, d, valid):
        W_ih, W_hh, b_ih, b_hh = self.weights(layer, d)
        reverse = bool(d)
        T = x.shape[1]
        if not self.fused:
            return self._run_unfused(x, s0, (W_ih, W_hh, b_ih, b_hh), reverse, valid)
        if self._mode == "gru":
            xg = F.linear(x, W_ih, b_ih)  # (B, T, 3H)
            bh = b_hh if b_hh is not None else np.zeros(W_hh.shape[0], x.dtype)
            seq = apply_op(ops.gru_seq_forward, ops.gru_seq_backward, xg, s0[0], W_hh, bh,
                           valid=valid, reverse=reverse, name="gru_seq")
            last = (slice(None), 0 if reverse else T - 1)
            return seq, [_take(seq, last)]
        xg = F.linear(x, W_ih, b_ih)  # (B, T, G*H)
        if b_hh is not None:
            xg = xg + b_hh
        last = (slice(None), 0 if reverse else T - 1)
        if self._mode == "lstm":
            hc = apply_op(ops.lstm_seq_forward, ops.lstm_seq_backward, xg, s0[0], s0[1], W_hh,
                          valid=valid, reverse=reverse, name="lstm_seq")  # (2, B, T, H)
            seq = _take(hc, 0)
            last = (slice(None),) + last
            fin = _take(hc, last)  # (2, B, H)
            return seq, [_take(fin, 0), _take(fin, 1)]
        seq = apply_op(ops.rnn_seq_forward, ops.rnn_seq_backward, xg, s0[0], W_hh, valid=valid,
                       reverse=reverse, nonlinearity=self.nonlinearity, name="rnn_seq")
        return seq, [_take(seq, last)]

    def _run_unfused(self, x, s0, w, reverse, valid):
        T = x.shape[1]
        state = [as_tensor(s) for s in s0]
        hs: list = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            xt = _take(x, (slice(None), t))
            new = self._cell(xt, state, w)
            if valid is not None:
                m = valid[:, t, None]
                new = [F.where(m, n, s) for n, s in zip(new, state)]
            state = new
            hs[t] = state[0]
        return F.stack(hs, axis=1), state  # (B, T, H)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class RNN(_RecurrentBase):
    """Elman RNN (PyTorch ``nn.RNN``), ``h_t = act(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)``.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
    nonlinearity : {"tanh", "relu"}
    bias, batch_first, dropout, bidirectional, rng
        As in PyTorch; ``batch_first`` defaults to True here; ``dropout`` acts between layers.

    Attributes
    ----------
    W_ih_l{k}[_reverse] : Parameter of shape (H, D_k)
    W_hh_l{k}[_reverse] : Parameter of shape (H, H)
    b_ih_l{k}[_reverse], b_hh_l{k}[_reverse] : Parameter of shape (H,)
    """

    _gates = 1
    _mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = True,
                 dropout: float = 0.0, bidirectional: bool = False, rng=None):
        self.nonlinearity = check_choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, rng)

    def _cell(self, x, state, w):
        return [rnn_cell(x, state[0], *w, nonlinearity=self.nonlinearity)]


class LSTM(_RecurrentBase):
    """LSTM (PyTorch ``nn.LSTM``), gate order ``i, f, g, o`` (see the module docstring).

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
    bias, batch_first, dropout, bidirectional, rng
        As in PyTorch; ``batch_first`` defaults to True here; ``dropout`` acts between layers.

    Attributes
    ----------
    W_ih_l{k}[_reverse] : Parameter of shape (4H, D_k)
    W_hh_l{k}[_reverse] : Parameter of shape (4H, H)
    b_ih_l{k}[_reverse], b_hh_l{k}[_reverse] : Parameter of shape (4H,)

    Examples
    --------
    >>> import numpy as np
    >>> lstm = LSTM(3, 5, rng=0)
    >>> out, (h, c) = lstm(np.ones((2, 4, 3)), lengths=np.array([4, 2]))
    >>> out.shape, h.shape
    ((2, 4, 5), (1, 2, 5))
    """

    _gates = 4
    _mode = "lstm"

    def _cell(self, x, state, w):
        return list(lstm_cell(x, tuple(state), *w))


class GRU(_RecurrentBase):
    """GRU (PyTorch ``nn.GRU``), gate order ``r, z, n`` (see the module docstring).

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int
    bias, batch_first, dropout, bidirectional, rng
        As in PyTorch; ``batch_first`` defaults to True here; ``dropout`` acts between layers.

    Attributes
    ----------
    W_ih_l{k}[_reverse] : Parameter of shape (3H, D_k)
    W_hh_l{k}[_reverse] : Parameter of shape (3H, H)
    b_ih_l{k}[_reverse], b_hh_l{k}[_reverse] : Parameter of shape (3H,)
    """

    _gates = 3
    _mode = "gru"

    def _cell(self, x, state, w):
        return [gru_cell(x, state[0], *w)]
