"""Small NumPy networks: the tape :class:`Tensor`, primitive op pairs, layers, models, losses,
optimisers and gradient checking. Everything else in refimpl is built on this package.

=====================  ====================================================================
``ops``                primitive ``op_forward -> (out, cache)`` / ``op_backward`` pairs
``tensor``             :class:`Tensor`, :class:`Parameter`, the tape, :func:`custom_op`
``functional`` (F)     Tensor-level wrappers of the ops, straight-through estimator
``gradcheck``          float64 central-difference gradient checking
``module``             :class:`Module` base, ``state_dict`` via ``np.savez``
``layers``             :class:`Linear`, :class:`Embedding`, :class:`LayerNorm`, :class:`Dropout`
``recurrent``          :class:`RNN`, :class:`GRU`, :class:`LSTM` (PyTorch gate order/layout) and
                       the single-step cells :func:`rnn_cell`, :func:`gru_cell`, :func:`lstm_cell`
=====================  ====================================================================
"""

from refimpl.nn import functional, ops
from refimpl.nn.gradcheck import GradcheckError, gradcheck, numerical_grad
from refimpl.nn.layers import Dropout, Embedding, LayerNorm, Linear
from refimpl.nn.module import Module, ModuleList
from refimpl.nn.recurrent import GRU, LSTM, RNN, gru_cell, lstm_cell, rnn_cell
from refimpl.nn.tensor import (
    Parameter,
    Tensor,
    apply_op,
    as_tensor,
    custom_op,
    data_of,
    is_grad_enabled,
    no_grad,
)

__all__ = [
    "functional", "ops", "Tensor", "Parameter", "apply_op", "custom_op", "as_tensor", "data_of",
    "no_grad", "is_grad_enabled", "gradcheck", "numerical_grad", "GradcheckError", "Module",
    "ModuleList",
    "Linear", "Embedding", "LayerNorm", "Dropout",
    "RNN", "GRU", "LSTM", "rnn_cell", "gru_cell", "lstm_cell",
]
