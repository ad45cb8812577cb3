r"""Survey §5.2, parameter sharing across layers of a recurrent model: low-rank factors shared
between consecutive layers (Lu, Sindhwani & Sainath 2016), Survey Eq. (59).

Layer ``l`` of a stacked simple RNN factorises its input matrix and its recurrent matrix,

.. math:: h_t^l = \sigma\left[W_a^l W_b^l h_t^{l-1} + U_a^l U_b^l h_{t-1}^l + b^l\right]
   \qquad\text{(Survey Eq. (59))}

and the survey's sharing sets :math:`W_b^l = U_b^{l-1}`. Both matrices act on the output of
layer ``l-1`` (:math:`W_b^l` on :math:`h_t^{l-1}`, :math:`U_b^{l-1}` on
:math:`h_{t-1}^{l-1}`), so the tie is dimensionally consistent: each is ``(r_{l-1}, N_{l-1})``.
It is the shared projection of Prabhavalkar et al. (2016) (see §6.1, Eqs. (62)–(65)) seen as a
parameter-sharing rule: layer ``l-1`` projects its state once with :math:`U_b^{l-1}`, and both
its own recurrence and layer ``l`` read that projection.

References
----------
.. [1] Z. Lu, V. Sindhwani, T. N. Sainath, "Learning compact recurrent neural networks",
   ICASSP 2016.
.. [2] R. Prabhavalkar, O. Alsharif, A. Bruguier, I. McGraw, "On the compression of recurrent
   neural networks with an application to LVCSR acoustic modeling for embedded speech
   recognition", ICASSP 2016.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.nn import functional as F
from refimpl.nn.layers import check_features
from refimpl.nn.module import Module
from refimpl.nn.tensor import Parameter, Tensor, as_tensor
from refimpl.utils import as_rng, check_choice, check_int, validate_arrays, validate_scalars

__all__ = ["SharedLowRankRNN", "shared_low_rank_num_params"]


def _check_sizes(input_size, hidden_sizes, ranks, input_rank):
    D = check_int(input_size, "input_size", 1)
    if isinstance(hidden_sizes, (int, np.integer)):
        hidden_sizes = [hidden_sizes]
    N = tuple(check_int(h, "hidden_sizes", 1) for h in hidden_sizes)
    if not N:
        raise ValueError("hidden_sizes must name at least one layer, got []")
    if isinstance(ranks, (int, np.integer)):
        ranks = [ranks] * len(N)
    r = tuple(check_int(k, "ranks", 1) for k in ranks)
    if len(r) != len(N):
        raise ValueError(f"ranks must give one rank per layer ({len(N)}), got {len(r)}")
    s1 = r[0] if input_rank is None else check_int(input_rank, "input_rank", 1)
    return D, N, r, s1


@validate_scalars
@validate_arrays(hidden_sizes={"kind": "ranks"}, ranks={"kind": "ranks"})
def shared_low_rank_num_params(input_size: int, hidden_sizes, ranks, *, input_rank=None,
                               share: bool = True, full_rank: bool = False) -> int:
    r"""Number of parameters of :class:`SharedLowRankRNN` (Survey Eq. (59), §5.2), by formula.

    With :math:`N_0 = D` (the input size), layer sizes :math:`N_1..N_L`, recurrent ranks
    :math:`r_1..r_L` and input ranks :math:`s_1` (``input_rank``) and :math:`s_l = r_{l-1}`
    (l ≥ 2, so the tie :math:`W_b^l = U_b^{l-1}` is possible):

    * full rank: :math:`\sum_l N_l N_{l-1} + N_l^2 + N_l`
    * low rank, unshared: :math:`\sum_l s_l(N_l + N_{l-1}) + 2 r_l N_l + N_l`
    * low rank, shared: the unshared count minus :math:`\sum_{l\ge2} r_{l-1} N_{l-1}` (each
      :math:`W_b^l` is :math:`U_b^{l-1}`, stored once).

    Parameters
    ----------
    input_size : int
    hidden_sizes : int or sequence of int (N_1..N_L)
    ranks : int or sequence of int (r_1..r_L)
    input_rank : int, optional
        Rank s_1 of layer 1's input factorisation (default r_1).
    share, full_rank : bool

    Returns
    -------
    int
    """
    D, N, r, s1 = _check_sizes(input_size, hidden_sizes, ranks, input_rank)
    sizes = (D,) + N
    total = 0
    for l in range(1, len(N) + 1):  # noqa: E741 - the survey's layer index
        Nl, Np = sizes[l], sizes[l - 1]
        if full_rank:
            total += Nl * Np + Nl * Nl + Nl
            continue
        s = s1 if l == 1 else r[l - 2]
        total += s * Nl + 2 * r[l - 1] * Nl + Nl     # W_a^l, U_a^l, U_b^l, b^l
        if not (share and l >= 2):
            total += s * Np                           # W_b^l (stored only when not tied)
    return total


class SharedLowRankRNN(Module):
    r"""Stacked simple RNN with low-rank factors shared across layers, Survey Eq. (59), §5.2.

    .. math:: h_t^l = \sigma\left[W_a^l W_b^l h_t^{l-1} + U_a^l U_b^l h_{t-1}^l + b^l\right],
              \qquad h_t^0 = x_t,\quad h_0^l = 0

    With ``share=True``, :math:`W_b^l` *is* :math:`U_b^{l-1}` for l ≥ 2 (the same
    :class:`Parameter` object, so its gradient is the sum of both uses' gradients and
    :meth:`num_parameters` counts it once).

    Parameters
    ----------
    input_size : int
        D = N_0.
    hidden_sizes : int or sequence of int
        N_1..N_L.
    ranks : int or sequence of int
        r_1..r_L, ranks of the recurrent factorisations :math:`U^l = U_a^l U_b^l`. The input
        factorisation of layer l ≥ 2 has rank r_{l-1} (so that it can be tied).
    input_rank : int, optional
        Rank s_1 of layer 1's input factorisation :math:`W^1 = W_a^1 W_b^1` (default r_1).
    share : bool
        Tie :math:`W_b^l = U_b^{l-1}` (default True).
    nonlinearity : {"tanh", "sigmoid"}
        σ of Eq. (59) (the survey leaves it generic; tanh by default).
    rng : Generator or int

    Attributes
    ----------
    W_a_l{l} : Parameter of shape (N_l, s_l)
    W_b_l{l} : Parameter of shape (s_l, N_{l-1})   (``is U_b_l{l-1}`` when shared, l ≥ 2)
    U_a_l{l} : Parameter of shape (N_l, r_l)
    U_b_l{l} : Parameter of shape (r_l, N_l)
    b_l{l} : Parameter of shape (N_l,)

    Layers are numbered 1..L as in the survey. Weight layout is PyTorch's: a factor ``M`` of
    shape (out, in) acts as ``h @ M.T``.

    References
    ----------
    Lu, Sindhwani & Sainath, "Learning compact recurrent neural networks", ICASSP 2016.
    """

    @validate_scalars
    @validate_arrays(hidden_sizes={"kind": "ranks"}, ranks={"kind": "ranks"})
    def __init__(self, input_size: int, hidden_sizes, ranks, *, input_rank=None,
                 share: bool = True, nonlinearity: str = "tanh", rng=None):
        D, N, r, s1 = _check_sizes(input_size, hidden_sizes, ranks, input_rank)
        self.input_size, self.hidden_sizes, self.ranks, self.input_rank = D, N, r, s1
        self.num_layers = len(N)
        self.share = bool(share)
        self.nonlinearity = check_choice(nonlinearity, "nonlinearity", ("tanh", "sigmoid"))
        rng = as_rng(rng)
        sizes = (D,) + N
        for l in range(1, self.num_layers + 1):  # noqa: E741 - the survey's layer index
            Nl, Np, rl = sizes[l], sizes[l - 1], r[l - 1]
            s = s1 if l == 1 else r[l - 2]
            # factor scales so that W_a W_b and U_a U_b have PyTorch-like U(-1/√N, 1/√N) size
            setattr(self, f"W_a_l{l}", Parameter(rng.standard_normal((Nl, s)) / math.sqrt(s)))
            if self.share and l >= 2:
                W_b = getattr(self, f"U_b_l{l - 1}")   # the tie W_b^l = U_b^{l-1}
            else:
                W_b = Parameter(rng.standard_normal((s, Np)) / math.sqrt(Np))
            setattr(self, f"W_b_l{l}", W_b)
            setattr(self, f"U_a_l{l}", Parameter(rng.standard_normal((Nl, rl)) / math.sqrt(rl)))
            setattr(self, f"U_b_l{l}", Parameter(rng.standard_normal((rl, Nl)) / math.sqrt(Nl)))
            setattr(self, f"b_l{l}", Parameter(np.zeros(Nl)))

    def factors(self, l: int):  # noqa: E741
        """``(W_a, W_b, U_a, U_b, b)`` of layer ``l`` (1-based, as in the survey)."""
        check_int(l, "l", 1, self.num_layers)
        return tuple(getattr(self, f"{n}_l{l}") for n in ("W_a", "W_b", "U_a", "U_b", "b"))

    def dense_weights(self, l: int):  # noqa: E741
        """The products ``(W^l, U^l) = (W_a^l W_b^l, U_a^l U_b^l)`` as arrays of shapes
        (N_l, N_{l-1}) and (N_l, N_l)."""
        W_a, W_b, U_a, U_b, _ = self.factors(l)
        return W_a.data @ W_b.data, U_a.data @ U_b.data

    def forward(self, x, state=None):
        """Run Eq. (59) over a batch of sequences.

        Parameters
        ----------
        x : Tensor or ndarray of shape (B, T, input_size)
        state : sequence of L arrays/Tensors of shapes (B, N_l), optional
            Initial states :math:`h_0^l` (default zeros).

        Returns
        -------
        outputs : Tensor of shape (B, T, N_L)
            :math:`h_t^L` for every t.
        finals : list of L Tensors of shapes (B, N_l)
            :math:`h_T^l` of every layer.
        """
        x = check_features(x, "x", self.input_size, ndim=3)
        B, T, _ = x.shape
        if state is not None and len(state) != self.num_layers:
            raise ValueError(f"state must hold one (B, N_l) array per layer "
                             f"({self.num_layers}), got {len(state)}")
        act = F.tanh if self.nonlinearity == "tanh" else F.sigmoid
        inp = as_tensor(x)
        finals = []
        for l in range(1, self.num_layers + 1):  # noqa: E741
            W_a, W_b, U_a, U_b, b = self.factors(l)
            Nl = self.hidden_sizes[l - 1]
            # W_a^l W_b^l h_t^{l-1} + b^l for all t at once
            pre = F.linear(F.linear(inp, W_b), W_a, b)  # (B, T, N_l)
            if state is None:
                h = Tensor(np.zeros((B, Nl), dtype=x.dtype))
            else:
                if tuple(np.shape(state[l - 1])) != (B, Nl):
                    raise ValueError(f"state[{l - 1}] must have shape {(B, Nl)}, got "
                                     f"{np.shape(state[l - 1])}")
                h = as_tensor(state[l - 1])
            outs = []
            for t in range(T):
                # h_t^l = σ[W_a W_b h_t^{l-1} + U_a U_b h_{t-1}^l + b]   (Eq. 59)
                h = act(pre[:, t] + F.linear(F.linear(h, U_b), U_a))  # (B, N_l)
                outs.append(h)
            inp = F.stack(outs, axis=1)  # (B, T, N_l)
            finals.append(h)
        return inp, finals

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {list(self.hidden_sizes)}, ranks={list(self.ranks)}, "
                f"input_rank={self.input_rank}, share={self.share}")

    def __repr__(self) -> str:
        return f"SharedLowRankRNN({self.extra_repr()})"
