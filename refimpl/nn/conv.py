r"""Character-CNN building blocks: a 1-D convolution over time and a highway layer.

Used by the character-aware word encoders of Survey §5.1 (Kim et al. 2016; Jozefowicz et al.
2016's CNN-Softmax) in :mod:`refimpl.sharing.characters`.

* :func:`conv1d_forward` / :func:`conv1d_backward`: the primitive pair of a "valid", stride-1
  convolution along the time axis, batch-first and channels-last, with PyTorch's weight layout
  ``(out_channels, in_channels, width)`` (so ``torch.nn.Conv1d`` weights copy across);
  :class:`Conv1d` is the layer.
* :class:`Highway`: ``z = t ⊙ g(W_H y + b_H) + (1 − t) ⊙ y`` with the transform gate
  ``t = σ(W_T y + b_T + gate_offset)`` (Srivastava et al. 2015; Kim et al. 2016, Eq. (8)).

About Kim et al.'s −2: the paper says b_T is "initialized to a negative value" (−2); their
code (``lstm-char-cnn``, ``model/HighwayMLP.lua``) instead adds a *constant* −2 after the
gate's ``nn.Linear`` (``nn.AddConstant(bias)``), whose own bias keeps the default
initialisation and is trained. refimpl follows the code: ``gate_offset`` is a fixed constant
(not a parameter, not trained); ``b_T`` starts like every other Linear bias.

References
----------
.. [1] Y. Kim, Y. Jernite, D. Sontag, A. M. Rush, "Character-aware neural language models",
   AAAI 2016, §2.2–2.3.
.. [2] R. K. Srivastava, K. Greff, J. Schmidhuber, "Training very deep networks", NeurIPS 2015.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from refimpl.nn import functional as F
from refimpl.nn.layers import Linear, check_features
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, apply_op
from refimpl.utils import as_rng, check_choice, check_float, check_int

__all__ = ["conv1d_forward", "conv1d_backward", "conv1d", "Conv1d", "Highway"]


def conv1d_forward(x, W, b=None):
    """Valid, stride-1 convolution (cross-correlation, as in PyTorch) along the time axis.

    ``y[n, t, o] = Σ_c Σ_k x[n, t + k, c] W[o, c, k] + b[o]``.

    Parameters
    ----------
    x : ndarray of shape (N, L, C_in)
    W : ndarray of shape (C_out, C_in, w), with ``w <= L``
    b : ndarray of shape (C_out,), optional

    Returns
    -------
    y : ndarray of shape (N, L - w + 1, C_out)
    cache : tuple
    """
    w = W.shape[2]
    cols = sliding_window_view(x, w, axis=1)           # (N, L-w+1, C_in, w)
    y = np.einsum("ntck,ock->nto", cols, W, optimize=True)   # (N, L-w+1, C_out)
    if b is not None:
        y = y + b
    return y, (x, W, b is not None)


def conv1d_backward(dout, cache):
    """Gradients of :func:`conv1d_forward`: ``(dx, dW[, db])``; ``dout`` (N, L - w + 1, C_out)."""
    x, W, has_b = cache
    w = W.shape[2]
    T = dout.shape[1]
    cols = sliding_window_view(x, w, axis=1)           # (N, T, C_in, w)
    dW = np.einsum("nto,ntck->ock", dout, cols, optimize=True)   # (C_out, C_in, w)
    dcols = np.einsum("nto,ock->ntck", dout, W, optimize=True)   # (N, T, C_in, w)
    dx = np.zeros_like(x, dtype=dout.dtype)
    for k in range(w):                                 # x[:, t + k] fed column k of step t
        dx[:, k:k + T] += dcols[..., k]
    if has_b:
        return dx, dW, dout.sum(axis=(0, 1))
    return dx, dW


def conv1d(x, W, b=None) -> Tensor:
    """Tensor-level :func:`conv1d_forward` (recorded on the tape)."""
    if b is None:
        return apply_op(lambda x_, W_: conv1d_forward(x_, W_, None), conv1d_backward, x, W,
                        name="conv1d")
    return apply_op(conv1d_forward, conv1d_backward, x, W, b, name="conv1d")


class Conv1d(Module):
    """1-D convolution over time (PyTorch ``nn.Conv1d`` with stride 1, no padding), but
    batch-first and channels-last: ``(N, L, C_in) -> (N, L - w + 1, C_out)``.

    Parameters
    ----------
    in_channels, out_channels, width : int
    bias : bool
    rng : Generator or int, optional
        ``W, b ~ U(−1/√(C_in·w), 1/√(C_in·w))`` (PyTorch's default).

    Attributes
    ----------
    W : Parameter of shape (out_channels, in_channels, width)
    b : Parameter of shape (out_channels,) or None
    """

    def __init__(self, in_channels: int, out_channels: int, width: int, bias: bool = True,
                 rng=None):
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.width = check_int(width, "width", 1)
        rng = as_rng(rng)
        bound = 1.0 / np.sqrt(in_channels * width)
        self.W = Parameter(rng.uniform(-bound, bound, (out_channels, in_channels, width)))
        self.b = Parameter(rng.uniform(-bound, bound, out_channels)) if bias else None

    def forward(self, x) -> Tensor:
        """``x`` (N, L, in_channels) with ``L >= width`` -> (N, L - width + 1, out_channels)."""
        x = check_features(x, "x", self.in_channels, ndim=3)
        if x.shape[1] < self.width:
            raise ValueError(f"x must have at least width={self.width} steps, got shape "
                             f"{x.shape}")
        return conv1d(x, self.W, self.b)

    def __repr__(self) -> str:
        return f"Conv1d({self.in_channels}, {self.out_channels}, width={self.width})"


class Highway(Module):
    r"""Highway layer ``z = t ⊙ g(W_H y + b_H) + (1 − t) ⊙ y``, ``t = σ(W_T y + b_T + c)``.

    Survey §5.1 (Kim et al. 2016, Eq. (8); Srivastava et al. 2015). ``c = gate_offset`` is a
    fixed constant as in Kim et al.'s code (``nn.AddConstant(-2)``), not a trained bias and not
    an initial value: with it the layer starts close to the identity (``t ≈ σ(−2) ≈ 0.12``).

    Parameters
    ----------
    size : int
    num_layers : int
        Stacked highway layers (Kim et al.: 1 for the small model, 2 for the large one).
    activation : {"relu", "tanh"}
        ``g`` (Kim et al.: ReLU).
    gate_offset : float
        The constant ``c`` added inside the transform gate (Kim et al.: −2).
    rng : Generator or int, optional

    Attributes
    ----------
    H_l{k}, T_l{k} : Linear (size -> size), the transform and gate projections of layer k
    """

    def __init__(self, size: int, num_layers: int = 1, activation: str = "relu",
                 gate_offset: float = -2.0, rng=None):
        self.size = check_int(size, "size", 1)
        self.num_layers = check_int(num_layers, "num_layers", 1)
        self.activation = check_choice(activation, "activation", ("relu", "tanh"))
        self.gate_offset = check_float(gate_offset, "gate_offset")
        rng = as_rng(rng)
        for k in range(self.num_layers):
            setattr(self, f"H_l{k}", Linear(size, size, rng=rng))
            setattr(self, f"T_l{k}", Linear(size, size, rng=rng))

    def forward(self, y) -> Tensor:
        """``y`` (..., size) -> (..., size)."""
        y = check_features(y, "y", self.size)
        for k in range(self.num_layers):
            a = getattr(self, f"H_l{k}")(y)
            g = F.relu(a) if self.activation == "relu" else F.tanh(a)
            t = F.sigmoid(getattr(self, f"T_l{k}")(y) + self.gate_offset)   # transform gate
            y = t * g + (1.0 - t) * y                    # z = t ⊙ g + (1 − t) ⊙ y
        return y

    def __repr__(self) -> str:
        return (f"Highway({self.size}, num_layers={self.num_layers}, "
                f"gate_offset={self.gate_offset:g})")
