r"""Survey §5.3, the Universal Transformer (Dehghani et al. 2019): one shared encoder layer
applied recurrently in depth, with a position-and-step timing signal and, optionally,
per-position adaptive computation time (ACT, Graves 2016).

At step ``t = 1, 2, …``

.. math:: h^t = \mathrm{Layer}(h^{t-1} + P^t), \qquad
   P^t_{i,2j} = \sin\frac{i}{10000^{2j/d}} + \sin\frac{t}{10000^{2j/d}},\quad
   P^t_{i,2j+1} = \cos\frac{i}{10000^{2j/d}} + \cos\frac{t}{10000^{2j/d}}

(Dehghani et al., Eq. (1), the "coordinate embedding"), with the same ``Layer`` (a
:class:`refimpl.nn.TransformerEncoderLayer`) at every step: ``L`` steps cost the parameters of
one layer.

**ACT, per position** (the bookkeeping of the authors' tensor2tensor code,
``_ffn_layer_multi_inputs``/``ut_function`` with ``act``): a halting unit
``p_i^t = σ(w_pᵀ s_i^t + b_p)`` reads the step's input ``s^t = h^{t-1} + P^t``; with the halting
sum ``H_i`` and threshold ``1 − ε``,

* a position still running whose ``H_i + p_i^t > 1 − ε`` halts now and uses its *remainder*
  ``R_i = 1 − H_i``; otherwise it adds ``p_i^t`` to ``H_i``;
* the output is the running average ``y_i ← u_i h_i^t + (1 − u_i) y_i`` with the update weight
  ``u_i = p_i^t`` (still running) or ``R_i`` (halting now), 0 once halted;
* halted positions are still transformed (attention keeps reading them) but their output is
  frozen; ``N_i`` counts the updates;
* at ``max_steps`` every position still running halts with its remainder (Graves's cap
  ``N(t) ≤ N_max``; the tensor2tensor loop simply stops there, leaving the weights summing to
  less than 1 — refimpl follows Graves so that they always sum to 1);
* the ponder cost ``ρ = mean_i(N_i + R_i)`` (Graves, Eq. (11)) is added to the loss with a
  small weight; only ``R_i`` carries a gradient (``N_i`` is piecewise constant).

References
----------
.. [1] M. Dehghani, S. Gouws, O. Vinyals, J. Uszkoreit, Ł. Kaiser, "Universal Transformers",
   ICLR 2019, §2.1–2.2.
.. [2] A. Graves, "Adaptive computation time for recurrent neural networks", arXiv 1603.08983,
   2016, §2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.layers import Linear, check_features
from refimpl.nn.module import Module
from refimpl.nn.tensor import Tensor
from refimpl.nn.transformer import TransformerEncoderLayer
from refimpl.utils import as_rng, check_bool, check_choice, check_float, check_int

__all__ = ["timing_signal", "UniversalTransformerEncoder", "ACTOutput", "UniversalTransformerTagger"]


def timing_signal(length: int, d_model: int, step: int) -> np.ndarray:
    """The position-and-step signal ``P^t`` of Dehghani et al. (Eq. (1)): (length, d_model).

    Parameters
    ----------
    length, d_model : int
    step : int >= 1
        The recurrence step ``t``.
    """
    n = check_int(length, "length", 1)
    d = check_int(d_model, "d_model", 1)
    t = check_int(step, "step", 1)
    j = np.arange(d) // 2                                         # the pair index of each column
    inv = 1.0 / 10000.0 ** (2.0 * j / d)                          # (d,)
    ang_pos = np.arange(n)[:, None] * inv[None, :]                # (n, d)
    ang_t = t * inv                                               # (d,)
    even = (np.arange(d) % 2 == 0)[None, :]
    return np.where(even, np.sin(ang_pos) + np.sin(ang_t), np.cos(ang_pos) + np.cos(ang_t))


@dataclass
class ACTOutput:
    """What :class:`UniversalTransformerEncoder` returns.

    Attributes
    ----------
    hidden : Tensor of shape (B, n, d_model)
    ponder_cost : Tensor, scalar
        ``mean(N + R)`` over the real positions (0-d, 0 without ACT).
    n_updates : ndarray of shape (B, n)
        ``N_i``, the steps each position took (``max_steps`` everywhere without ACT).
    remainders : Tensor of shape (B, n)
        ``R_i`` (zeros without ACT).
    steps : int
        Steps run (the loop stops once every position has halted).
    """

    hidden: Tensor
    ponder_cost: Tensor
    n_updates: np.ndarray
    remainders: Tensor
    steps: int


class UniversalTransformerEncoder(Module):
    r"""Universal Transformer encoder: one shared layer, ``max_steps`` recurrent steps, optional
    per-position ACT halting (Survey §5.3; Dehghani et al. 2019).

    Parameters
    ----------
    d_model, num_heads, d_ff : int (keyword-only)
    max_steps : int >= 1
        The number of steps (without ACT) or the cap ``N_max`` (with ACT).
    act : bool
        Adaptive computation time per position.
    epsilon : float in (0, 1)
        The halting threshold is ``1 − ε`` (Graves: 0.01).
    halting_bias : float
        Initial bias of the halting unit (tensor2tensor: 1.0, so positions start by pondering
        little).
    activation, norm_first, layer_norm_eps : passed to the layer
    rng : Generator or int, optional

    Attributes
    ----------
    layer : TransformerEncoderLayer (the one shared layer)
    halting : Linear (d_model -> 1), only with ``act``

    Notes
    -----
    Parameters: one layer, ``4(d² + d) + 2·d·d_ff + d_ff + d + 4d``, plus ``d + 1`` for the
    halting unit — against ``max_steps`` times the layer for an unshared stack.
    """

    def __init__(self, *, d_model: int, num_heads: int, d_ff: int, max_steps: int = 4,
                 act: bool = True, epsilon: float = 0.01, halting_bias: float = 1.0,
                 activation: str = "relu", norm_first: bool = False,
                 layer_norm_eps: float = 1e-5, rng=None):
        self.d_model = check_int(d_model, "d_model", 1)
        num_heads = check_int(num_heads, "num_heads", 1)
        d_ff = check_int(d_ff, "d_ff", 1)
        if self.d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.max_steps = check_int(max_steps, "max_steps", 1)
        self.act = check_bool(act, "act")
        self.epsilon = check_float(epsilon, "epsilon", 0.0, 1.0, lo_open=True, hi_open=True)
        halting_bias = check_float(halting_bias, "halting_bias")
        activation = check_choice(activation, "activation", ("gelu", "relu"))
        norm_first = check_bool(norm_first, "norm_first")
        layer_norm_eps = check_float(layer_norm_eps, "layer_norm_eps", 0.0, lo_open=True)
        rng = as_rng(rng)
        self.layer = TransformerEncoderLayer(self.d_model, num_heads, d_ff,
                                             activation=activation, norm_first=norm_first,
                                             layer_norm_eps=layer_norm_eps, rng=rng)
        self.halting = None
        if self.act:
            self.halting = Linear(self.d_model, 1, rng=rng)
            self.halting.b.data[:] = halting_bias

    def forward(self, x, key_padding_mask=None) -> ACTOutput:
        """``x`` (B, n, d_model) -> :class:`ACTOutput`; ``key_padding_mask`` (B, n), True = pad."""
        x = check_features(x, "x", self.d_model, ndim=3)
        B, n, d = x.shape
        real = np.ones((B, n))
        if key_padding_mask is not None:
            kpm = np.asarray(key_padding_mask)
            if kpm.shape != (B, n) or kpm.dtype != bool:
                raise ValueError(f"key_padding_mask must be a bool array of shape ({B}, {n})")
            real = (~kpm).astype(float)
        state = x
        if not self.act:
            for t in range(1, self.max_steps + 1):
                state = self.layer(state + timing_signal(n, d, t),
                                   key_padding_mask=key_padding_mask)
            zero = Tensor(np.zeros((B, n)))
            return ACTOutput(state, Tensor(np.array(0.0)), np.full((B, n), self.max_steps),
                             zero, self.max_steps)

        threshold = 1.0 - self.epsilon
        halt_sum = Tensor(np.zeros((B, n)))                      # H_i
        remainders = Tensor(np.zeros((B, n)))                    # R_i
        n_updates = np.zeros((B, n))                             # N_i
        halted = np.zeros((B, n))                                # 1 once a position halted
        out = Tensor(np.zeros((B, n, d)))                        # y, the running average
        steps = 0
        for t in range(1, self.max_steps + 1):
            s = state + timing_signal(n, d, t)                   # (B, n, d)
            p = F.sigmoid(F.reshape(self.halting(s), (B, n)))    # halting probability p_i^t
            running = 1.0 - halted                               # not halted yet (constant)
            cand = halt_sum.data + p.data * running
            if t == self.max_steps:                              # Graves's cap N_max
                new_halted = running
            else:
                new_halted = (cand > threshold).astype(float) * running
            still = running - new_halted
            halt_sum = halt_sum + p * still                      # H += p (still running)
            remainders = remainders + F.mask(1.0 - halt_sum, new_halted)   # R = 1 − H
            halt_sum = halt_sum + F.mask(remainders, new_halted)           # H = 1 on halting
            n_updates = n_updates + still + new_halted
            halted = halted + new_halted
            u = p * still + F.mask(remainders, new_halted)       # update weight u_i
            state = self.layer(s, key_padding_mask=key_padding_mask)       # h^t (all positions)
            u3 = F.reshape(u, (B, n, 1))
            out = state * u3 + out * (1.0 - u3)                  # y ← u h^t + (1 − u) y
            steps = t
            if np.all(halted[real > 0] == 1.0):                  # every real position halted
                break
        ponder = F.sum(F.mask(remainders, real)) / real.sum() + float(
            (n_updates * real).sum() / real.sum())
        return ACTOutput(out, ponder, n_updates, remainders, steps)


class UniversalTransformerTagger(Module):
    """Token embeddings -> :class:`UniversalTransformerEncoder` -> per-position tag logits (Survey
    §5.3): the sequence-labelling model of the ponder-time claim.

    Positions come from the encoder's timing signal (no position table). Padding id 0.

    Parameters
    ----------
    vocab_size, n_tags : int (keyword-only)
    d_model, num_heads, d_ff, max_steps, act, epsilon, halting_bias : as the encoder
    rng : Generator or int, optional

    Attributes
    ----------
    embedding : Embedding (vocab_size, d_model), padding_idx 0
    encoder : UniversalTransformerEncoder
    head : Linear (d_model -> n_tags)
    """

    def __init__(self, *, vocab_size: int, n_tags: int, d_model: int, num_heads: int,
                 d_ff: int, max_steps: int = 4, act: bool = True, epsilon: float = 0.01,
                 halting_bias: float = 1.0, rng=None):
        from refimpl.nn.layers import Embedding

        vocab_size = check_int(vocab_size, "vocab_size", 2)
        self.n_tags = check_int(n_tags, "n_tags", 1)
        rng = as_rng(rng)
        self.encoder = UniversalTransformerEncoder(d_model=d_model, num_heads=num_heads,
                                                   d_ff=d_ff, max_steps=max_steps, act=act,
                                                   epsilon=epsilon, halting_bias=halting_bias,
                                                   rng=rng)
        self.embedding = Embedding(vocab_size, d_model, padding_idx=0, rng=rng)
        self.embedding.W.data *= 1.0 / np.sqrt(d_model)
        self.head = Linear(d_model, self.n_tags, rng=rng)

    def forward(self, X, lengths=None):
        """Token ids (B, n) -> (logits (B, n, n_tags), :class:`ACTOutput`)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.dtype.kind not in "iu":
            raise TypeError(f"X must be an integer array of shape (B, n), got {X.dtype} "
                            f"{X.shape}")
        kpm = X == 0
        out = self.encoder(self.embedding(X), key_padding_mask=kpm if kpm.any() else None)
        return self.head(out.hidden), out
