"""Quantised recurrent cells: the quantised GRU of Survey Eqs. (40)–(45), §3.3.1 (He et al.
2016), the analogous quantised LSTM, and HitNet's hybrid-ternary LSTM, Survey Eq. (35), §3.2.3
(Wang et al. 2018).

The GRU here is the survey's (Cho et al.'s) form — the reset gate multiplies ``h_{t−1}`` *before*
the candidate's matrix product, ``h̃ = tanh(W·[r ⊙ h_{t−1}, x_t])``, and
``h_t = (1 − z) h_{t−1} + z h̃`` — which differs from PyTorch's ``nn.GRU`` (reset applied after
``W_hn h``, ``h_t = (1 − z) n + z h``); Eq. (44) needs the survey's order because it quantises
``r ⊙ h_{t−1}`` before the product. Weights act on the concatenation ``[h_{t−1}, x_t]``.

All quantisers use the straight-through estimator, so the cells train with full-precision
shadow weights.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn import Module, Parameter, Tensor
from refimpl.nn import functional as F
from refimpl.quantization.ternary import ttq_ste
from refimpl.quantization.uniform import q_signed, q_unit
from refimpl.utils import as_rng, check_int, validate_arrays, validate_scalars

__all__ = ["act_quant", "weight_quant_signed", "quant_gru_cell", "QuantGRU", "quant_lstm_cell",
           "QuantLSTM", "btq", "hitnet_lstm_cell", "HitNetLSTM"]


@validate_scalars
@validate_arrays(x={})
def act_quant(x: Tensor, bits: int | None) -> Tensor:
    """``2 q_k(x/2 + 1/2) − 1``: the re-quantisation of Eqs. (44)–(45) (Eq. 37 on ``[0, 1]``
    after mapping ``[-1, 1] → [0, 1]``; identical to Eq. (36)). Straight-through gradient inside
    ``[-1, 1]``. ``bits=None`` is the identity."""
    if bits is None:
        return x
    return F.straight_through(x, lambda a: 2.0 * q_unit(a / 2.0 + 0.5, bits) - 1.0,
                              clip_at=1.0, name=f"act{bits}")


def weight_quant_signed(W: Tensor, bits: int | None) -> Tensor:
    """Weights quantised to ``[-1, 1]`` with Eq. (36) (clipped), straight-through gradient."""
    if bits is None:
        return W
    return F.straight_through(W, lambda a: q_signed(a, bits), clip_at=1.0, name=f"w{bits}")


@validate_scalars(act_bits=(1, 16))
@validate_arrays(x={}, h={}, W_z={}, W_r={}, W={}, b_z={"optional": True}, b_r={"optional": True},
                 b={"optional": True})
def quant_gru_cell(x, h, W_z, W_r, W, b_z=None, b_r=None, b=None,
                   act_bits: int | None = None) -> Tensor:
    """One step of the quantised GRU, Survey Eqs. (42)–(45), §3.3.1.

    .. math::
        z_t &= \\sigma(W_z [h_{t-1}, x_t]), \\quad r_t = \\sigma(W_r [h_{t-1}, x_t]) \\\\
        \\tilde h_t &= \\tanh\\big(W [2 q_k(\\tfrac12 r_t h_{t-1} + \\tfrac12) - 1,\\ x_t]\\big) \\\\
        h_t &= 2 q_k\\big(\\tfrac12((1 - z_t) h_{t-1} + z_t \\tilde h_t) + \\tfrac12\\big) - 1

    With ``act_bits=None`` this is the plain GRU of Eqs. (40)–(41).

    Parameters
    ----------
    x : Tensor of shape (B, D)
        Input (already quantised by the caller if wanted).
    h : Tensor of shape (B, H)
    W_z, W_r, W : Tensor of shape (H, H + D)
        (Quantised) weights acting on ``[h, x]``.
    b_z, b_r, b : Tensor of shape (H,), optional
    act_bits : int, optional
        ``k`` of the re-quantisation after the element-wise products.

    Returns
    -------
    Tensor of shape (B, H)

    References
    ----------
    .. [1] He, Wen, Zhou, Wu, Yao, Zou, "Effective Quantization Methods for Recurrent Neural
       Networks", arXiv 1611.10176, 2016.
    """
    hx = F.concat([h, x], axis=-1)  # (B, H + D)
    z = F.sigmoid(F.linear(hx, W_z, b_z))  # Eq. (42)
    r = F.sigmoid(F.linear(hx, W_r, b_r))  # Eq. (43)
    rh = act_quant(r * h, act_bits)  # 2 q_k(½ r h + ½) − 1
    h_tilde = F.tanh(F.linear(F.concat([rh, x], axis=-1), W, b))  # Eq. (44)
    return act_quant((1.0 - z) * h + z * h_tilde, act_bits)  # Eq. (45)


class QuantGRU(Module):
    """Quantised GRU layer (Survey Eqs. 40–45) with k-bit weights, inputs and hidden states.

    Parameters
    ----------
    input_size, hidden_size : int
    weight_bits, act_bits : int or None
        ``None`` keeps full precision. Weights are quantised with Eq. (36) on ``[-1, 1]``
        (clipped), inputs ``x_t`` likewise with ``act_bits``.
    rng : Generator or int, optional

    Attributes
    ----------
    W_z, W_r, W : Parameter of shape (hidden_size, hidden_size + input_size)
    b_z, b_r, b : Parameter of shape (hidden_size,)
    """

    @validate_scalars(weight_bits=(1, 16), act_bits=(1, 16))
    def __init__(self, input_size: int, hidden_size: int, weight_bits: int | None = None,
                 act_bits: int | None = None, rng=None):
        rng = as_rng(rng)
        D = check_int(input_size, "input_size", 1)
        H = check_int(hidden_size, "hidden_size", 1)
        for name, v in (("weight_bits", weight_bits), ("act_bits", act_bits)):
            if v is not None:
                check_int(v, name, 1, 16)
        s = 1 / np.sqrt(H)
        self.W_z = Parameter(rng.uniform(-s, s, (H, H + D)))
        self.W_r = Parameter(rng.uniform(-s, s, (H, H + D)))
        self.W = Parameter(rng.uniform(-s, s, (H, H + D)))
        self.b_z, self.b_r, self.b = (Parameter(np.zeros(H)) for _ in range(3))
        self.hidden_size, self.weight_bits, self.act_bits = H, weight_bits, act_bits

    def forward(self, X, h0=None) -> tuple[Tensor, Tensor]:
        """Run over ``X`` of shape (B, T, D); returns outputs (B, T, H) and the last state."""
        X = X if isinstance(X, Tensor) else Tensor(np.asarray(X, dtype=np.float64))
        B, T, _ = X.shape
        Wz, Wr, W = (weight_quant_signed(w, self.weight_bits) for w in (self.W_z, self.W_r,
                                                                         self.W))
        h = h0 if h0 is not None else Tensor(np.zeros((B, self.hidden_size)))
        outs = []
        for t in range(T):
            x = act_quant(X[:, t, :], self.act_bits)
            h = quant_gru_cell(x, h, Wz, Wr, W, self.b_z, self.b_r, self.b, self.act_bits)
            outs.append(h)
        return F.stack(outs, axis=1), h


@validate_scalars(act_bits=(1, 16))
@validate_arrays(x={}, state={"kind": "sequence"}, W_ih={}, W_hh={}, b={"optional": True})
def quant_lstm_cell(x, state, W_ih, W_hh, b=None, act_bits: int | None = None):
    """One LSTM step (PyTorch gate order i, f, g, o) with the GRU's re-quantisation applied the
    same way (Survey §3.3.1, "similarly we can quantise LSTMs"): the products ``f ⊙ c`` and
    ``i ⊙ g`` and the output ``h = o ⊙ tanh(c)`` are re-quantised with :func:`act_quant`. The
    cell state, which is not bounded, is clipped to ``[-1, 1]`` by the quantiser (He et al.
    2016 likewise bound it).

    Returns
    -------
    (h, c) : Tensors of shape (B, H)
    """
    h, c = state
    a = F.linear(x, W_ih, b) + F.linear(h, W_hh)  # (B, 4H)
    a_i, a_f, a_g, a_o = F.split(a, 4, axis=-1)
    i, f, g, o = F.sigmoid(a_i), F.sigmoid(a_f), F.tanh(a_g), F.sigmoid(a_o)
    c_new = act_quant(act_quant(f * c, act_bits) + act_quant(i * g, act_bits), act_bits)
    h_new = act_quant(o * F.tanh(c_new), act_bits)
    return h_new, c_new


class QuantLSTM(Module):
    """Quantised LSTM layer: Eq. (36) weights, re-quantised states (see
    :func:`quant_lstm_cell`). Attributes ``W_ih`` (4H, D), ``W_hh`` (4H, H), ``b`` (4H,)."""

    @validate_scalars(weight_bits=(1, 16), act_bits=(1, 16))
    def __init__(self, input_size: int, hidden_size: int, weight_bits: int | None = None,
                 act_bits: int | None = None, rng=None):
        rng = as_rng(rng)
        D = check_int(input_size, "input_size", 1)
        H = check_int(hidden_size, "hidden_size", 1)
        s = 1 / np.sqrt(H)
        self.W_ih = Parameter(rng.uniform(-s, s, (4 * H, D)))
        self.W_hh = Parameter(rng.uniform(-s, s, (4 * H, H)))
        self.b = Parameter(np.zeros(4 * H))
        self.hidden_size, self.weight_bits, self.act_bits = H, weight_bits, act_bits

    def forward(self, X, state=None):
        X = X if isinstance(X, Tensor) else Tensor(np.asarray(X, dtype=np.float64))
        B, T, _ = X.shape
        Wi = weight_quant_signed(self.W_ih, self.weight_bits)
        Wh = weight_quant_signed(self.W_hh, self.weight_bits)
        H = self.hidden_size
        h, c = state if state is not None else (Tensor(np.zeros((B, H))), Tensor(np.zeros((B,
                                                                                          H))))
        outs = []
        for t in range(T):
            h, c = quant_lstm_cell(X[:, t, :], (h, c), Wi, Wh, self.b, self.act_bits)
            outs.append(h)
        return F.stack(outs, axis=1), (h, c)


@validate_scalars
@validate_arrays(x={})
def btq(x: Tensor, rng=None, training: bool = True) -> Tensor:
    """Bernoulli ternary quantisation of activations in ``[0, 1]`` (HitNet): ``1`` with
    probability ``x`` (training), ``x > 0.5`` at inference; straight-through gradient.

    Survey §3.2.3 (HitNet). Same shape as ``x``.

    References
    ----------
    .. [1] P. Wang et al., "HitNet: Hybrid Ternary Recurrent Neural Network", NeurIPS 2018.
    """
    rng = as_rng(rng)
    if training:
        return F.straight_through(x, lambda a: (rng.random(a.shape) < np.clip(a, 0, 1)).astype(
            a.dtype), name="btq")
    return F.straight_through(x, lambda a: (a > 0.5).astype(a.dtype), name="btq")


@validate_scalars
@validate_arrays(x={}, state={"kind": "sequence"}, Wx={}, Wh={}, bx={}, bh={})
def hitnet_lstm_cell(x, state, Wx, Wh, bx, bh, rng=None, training: bool = True):
    """One HitNet LSTM step, Survey Eq. (35), §3.2.3 (Wang et al. 2018).

    .. math::
        i, f, g, o &= \\sigma(\\mathrm{TTQ}(W_x) x_t + \\mathrm{TTQ}(b_x) + \\mathrm{TTQ}(W_h)
        h_{t-1} + \\mathrm{TTQ}(b_h)) \\\\
        c_t &= f \\odot c_{t-1} + i \\odot g, \\qquad h_t = \\mathrm{BTQ}(o \\odot \\sigma(c_t))

    The caller passes already-TTQ'd ``Wx, Wh, bx, bh`` (see :class:`HitNetLSTM`). As printed,
    all four gates use σ (so ``g ∈ [0, 1]``) and the output uses ``σ(c_t)``, which keeps
    ``o ⊙ σ(c_t)`` in ``[0, 1]``, the range BTQ expects.
    """
    h, c = state
    a = F.linear(x, Wx, bx) + F.linear(h, Wh, bh)  # (B, 4H)
    a_i, a_f, a_g, a_o = F.split(a, 4, axis=-1)
    i, f, g, o = F.sigmoid(a_i), F.sigmoid(a_f), F.sigmoid(a_g), F.sigmoid(a_o)
    c_new = f * c + i * g
    h_new = btq(o * F.sigmoid(c_new), rng=rng, training=training)
    return h_new, c_new


class HitNetLSTM(Module):
    """HitNet LSTM layer (Survey Eq. 35): TTQ weights and biases with trained ``W_p, W_n`` per
    tensor (threshold heuristic 1, ``Δ = t·max|w|``), Bernoulli-ternary hidden states.

    Attributes
    ----------
    W_x : Parameter (4H, D); W_h : Parameter (4H, H); b_x, b_h : Parameter (4H,)
    scales : Parameter of shape (4, 2)
        ``[W_p, W_n]`` for ``W_x, W_h, b_x, b_h``.
    """

    @validate_scalars(t=(0, 1))
    def __init__(self, input_size: int, hidden_size: int, t: float = 0.05, rng=None):
        rng = as_rng(rng)
        D = check_int(input_size, "input_size", 1)
        H = check_int(hidden_size, "hidden_size", 1)
        s = 1 / np.sqrt(H)
        self.W_x = Parameter(rng.uniform(-s, s, (4 * H, D)))
        self.W_h = Parameter(rng.uniform(-s, s, (4 * H, H)))
        self.b_x = Parameter(rng.uniform(-s, s, 4 * H))
        self.b_h = Parameter(rng.uniform(-s, s, 4 * H))
        self.scales = Parameter(np.full((4, 2), s))
        self.hidden_size, self.t = H, t
        self._rng = np.random.default_rng(rng.integers(2 ** 63))

    def quantized_weights(self):
        """The TTQ'd ``(W_x, W_h, b_x, b_h)`` (Tensors on the tape)."""
        out = []
        for j, p in enumerate((self.W_x, self.W_h, self.b_x, self.b_h)):
            delta = self.t * float(np.abs(p.data).max())
            out.append(ttq_ste(p, self.scales[j, 0], self.scales[j, 1], delta))
        return out

    def forward(self, X, state=None):
        X = X if isinstance(X, Tensor) else Tensor(np.asarray(X, dtype=np.float64))
        B, T, _ = X.shape
        Wx, Wh, bx, bh = self.quantized_weights()
        H = self.hidden_size
        h, c = state if state is not None else (Tensor(np.zeros((B, H))), Tensor(np.zeros((B,
                                                                                          H))))
        outs = []
        for t in range(T):
            h, c = hitnet_lstm_cell(X[:, t, :], (h, c), Wx, Wh, bx, bh, rng=self._rng,
                                    training=self.training)
            outs.append(h)
        return F.stack(outs, axis=1), (h, c)
