r"""Survey §5.2, LightRNN (Li et al. 2016): words share embeddings through a 2-component table.

Every word ``w`` of the vocabulary sits in one cell ``(r, c)`` of an ``R × C`` table
(``R·C ≥ |V|``) and is represented by the row vector ``x^r_r`` shared by its table row and the
column vector ``x^c_c`` shared by its column, so ``2·sqrt(|V|)`` vectors cover the vocabulary.
After each training round the words are reallocated to cells to minimise the summed loss

.. math:: \min_{a} \sum_w L(w, a(w)), \qquad L(w, r, c) = \ell_r(w, r) + \ell_c(w, c),

where :math:`\ell_r(w, r)` is the negative log-likelihood of ``w``'s occurrences if its row were
``r`` (and :math:`\ell_c` likewise for columns), over one-to-one maps ``a`` from words to cells.
That is a minimum-weight bipartite matching of ``|V|`` words into ``R·C`` slots
(:func:`lightrnn_allocate` with ``method="exact"``, via
``scipy.optimize.linear_sum_assignment``). ``method="greedy"`` is the fast heuristic: take the
(word, slot) pairs in increasing order of loss and assign each pair whose word and slot are
both still free (the classic greedy matching, a ½-approximation for the matching problem).

References
----------
.. [1] X. Li, T. Qin, J. Yang, T.-Y. Liu, "LightRNN: memory and computation-efficient recurrent
   neural networks", NeurIPS 2016, §3.3.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from refimpl.nn import functional as F
from refimpl.nn.layers import Embedding, Linear
from refimpl.nn.module import Module
from refimpl.nn.recurrent import LSTM
from refimpl.nn.tensor import Tensor, no_grad
from refimpl.utils import as_rng, check_array, check_choice, check_int

__all__ = ["lightrnn_allocate", "lightrnn_cost_matrix", "LightRNNLanguageModel"]


def _check_losses(row_loss, col_loss):
    row_loss = check_array(row_loss, "row_loss", ndim=2)
    col_loss = check_array(col_loss, "col_loss", ndim=2)
    V, R = row_loss.shape
    if col_loss.shape[0] != V:
        raise ValueError(f"col_loss must have one row per word ({V}, as row_loss), got "
                         f"{col_loss.shape[0]}")
    C = col_loss.shape[1]
    if R * C < V:
        raise ValueError(f"row_loss and col_loss give a {R}×{C} table ({R * C} slots) for {V} "
                         f"words: R·C must be ≥ the vocabulary size")
    return row_loss, col_loss


def lightrnn_cost_matrix(row_loss, col_loss) -> np.ndarray:
    r"""The allocation cost :math:`L(w, r, c) = \ell_r(w, r) + \ell_c(w, c)` (Survey §5.2).

    Parameters
    ----------
    row_loss : ndarray of shape (V, R)
    col_loss : ndarray of shape (V, C), with R·C ≥ V

    Returns
    -------
    ndarray of shape (V, R·C); slot ``s`` is cell ``(s // C, s % C)``.
    """
    row_loss, col_loss = _check_losses(row_loss, col_loss)
    V = row_loss.shape[0]
    return (row_loss[:, :, None] + col_loss[:, None, :]).reshape(V, -1)  # (V, R, C) -> (V, R·C)


def lightrnn_allocate(row_loss, col_loss, method: str = "exact"):
    r"""Allocate words to the cells of LightRNN's table (Survey §5.2; Li et al. 2016, §3.3).

    Parameters
    ----------
    row_loss : ndarray of shape (V, R)
        :math:`\ell_r(w, r)`, the loss of word ``w`` if it were in row ``r``; finite.
    col_loss : ndarray of shape (V, C)
        :math:`\ell_c(w, c)`; finite; ``R·C ≥ V``.
    method : {"exact", "greedy"}
        ``"exact"``: minimum-weight matching of the V words into the R·C slots
        (``scipy.optimize.linear_sum_assignment``). ``"greedy"``: pairs in increasing order of
        loss (stable order: word, then slot, on ties), each taken when word and slot are free.

    Returns
    -------
    rows : ndarray of shape (V,), int64
    cols : ndarray of shape (V,), int64
        Word ``w`` goes to cell ``(rows[w], cols[w])``; no cell is used twice.
    cost : float
        :math:`\sum_w \ell_r(w, \mathrm{rows}_w) + \ell_c(w, \mathrm{cols}_w)`.
    """
    method = check_choice(method, "method", ("exact", "greedy"))
    cost = lightrnn_cost_matrix(row_loss, col_loss)               # (V, R·C)
    V, S = cost.shape
    C = np.asarray(col_loss).shape[1]
    if method == "exact":
        words, slots = scipy.optimize.linear_sum_assignment(cost)
        slot = np.empty(V, np.int64)
        slot[words] = slots
    else:
        order = np.argsort(cost, axis=None, kind="stable")        # flat (w, s), increasing
        slot = np.full(V, -1, np.int64)
        used = np.zeros(S, bool)
        left = V
        for flat in order:
            w, s = divmod(int(flat), S)
            if slot[w] < 0 and not used[s]:
                slot[w], used[s] = s, True
                left -= 1
                if left == 0:
                    break
    total = float(cost[np.arange(V), slot].sum())
    return slot // C, slot % C, total


# ------------------------------------------------------------------ the LightRNN language model
class LightRNNLanguageModel(Module):
    r"""LightRNN language model (Li et al. 2016; Survey §5.2): words share row and column
    vectors through the ``R × C`` table, and the LSTM predicts the row, then the column.

    For a row ``x_0 … x_{L−1}`` the LSTM reads the interleaved inputs
    ``x^r_{r(x_0)}, x^c_{c(x_0)}, x^r_{r(x_1)}, x^c_{c(x_1)}, …``; the state after the column
    vector of ``x_t`` gives ``P_r(r(x_{t+1}))`` and the state after the row vector of ``x_{t+1}``
    gives ``P_c(c(x_{t+1}))``, so

    .. math:: P(x_{t+1}) = P_r(r(x_{t+1}) \mid h^c_t)\; P_c(c(x_{t+1}) \mid h^r_{t+1}),

    which sums to 1 over the words when every cell holds a word. Input and output use separate
    vector sets (``row_in``/``col_in`` and ``row_out``/``col_out``) with one shared table.

    Parameters
    ----------
    vocab_size, num_rows, num_cols, d_emb, d_hidden : int (keyword-only)
        ``R·C ≥ vocab_size``.
    rng : Generator or int, optional
        Also draws the initial (random) allocation.

    Attributes
    ----------
    rows, cols : int64 ndarray of shape (V,)
        The allocation table (distinct cells).
    row_in, col_in : Embedding (R, d_emb), (C, d_emb)
    rnn : LSTM (d_emb -> d_hidden)
    row_out, col_out : Linear (d_hidden -> R), (d_hidden -> C)

    Notes
    -----
    Parameters: ``(R + C)·d_emb + LSTM + (R + C)(d_hidden + 1)`` — ``2√V`` vectors per side
    instead of ``V``; the table itself costs ``V(⌈log2 R⌉ + ⌈log2 C⌉)`` bits
    (:meth:`storage_bits`).
    """

    def __init__(self, *, vocab_size: int, num_rows: int, num_cols: int, d_emb: int,
                 d_hidden: int, rng=None):
        self.vocab_size = V = check_int(vocab_size, "vocab_size", 1)
        self.num_rows = R = check_int(num_rows, "num_rows", 1)
        self.num_cols = C = check_int(num_cols, "num_cols", 1)
        if R * C < V:
            raise ValueError(f"num_rows * num_cols ({R}·{C}) must be >= vocab_size ({V})")
        d_emb = check_int(d_emb, "d_emb", 1)
        d_hidden = check_int(d_hidden, "d_hidden", 1)
        rng = as_rng(rng)
        slots = rng.permutation(R * C)[:V]                       # a random initial table
        self.rows, self.cols = slots // C, slots % C
        self.row_in = Embedding(R, d_emb, rng=rng)
        self.col_in = Embedding(C, d_emb, rng=rng)
        for emb in (self.row_in, self.col_in):
            emb.W.data *= 1.0 / np.sqrt(d_emb)
        self.rnn = LSTM(d_emb, d_hidden, rng=rng)
        self.row_out = Linear(d_hidden, R, rng=rng)
        self.col_out = Linear(d_hidden, C, rng=rng)

    def _check(self, X, lengths):
        X = np.asarray(X)
        if X.ndim != 2 or X.dtype.kind not in "iu" or X.shape[1] < 2:
            raise TypeError(f"X must be an integer array of shape (B, T >= 2), got {X.dtype} "
                            f"{X.shape}")
        if X.min() < 0 or X.max() >= self.vocab_size:
            raise ValueError(f"X (token ids) must lie in [0, {self.vocab_size})")
        L = np.asarray(lengths)
        if L.shape != (X.shape[0],) or L.dtype.kind not in "iu" or L.min() < 2 \
                or L.max() > X.shape[1]:
            raise ValueError(f"lengths must be integers in [2, {X.shape[1]}] of shape "
                             f"({X.shape[0]},)")
        return X, L.astype(np.int64)

    def forward(self, X, lengths):
        """Row and column logits of the targets ``X[:, 1:]``.

        Parameters
        ----------
        X : int ndarray of shape (B, T), rows ``<bos> … <eos>``
        lengths : int ndarray of shape (B,)

        Returns
        -------
        row_logits : Tensor of shape (B, T − 1, R)
        col_logits : Tensor of shape (B, T − 1, C)
        """
        X, L = self._check(X, lengths)
        B, T = X.shape
        xr = self.row_in(self.rows[X])                           # (B, T, d)
        xc = self.col_in(self.cols[X])                           # (B, T, d)
        d = xr.shape[-1]
        inter = F.reshape(F.stack([xr, xc], axis=2), (B, 2 * T, d))[:, :2 * T - 1]
        h, _ = self.rnn(inter, lengths=2 * L - 1)                # (B, 2T − 1, H)
        # after c(x_t) (index 2t + 1): row of x_{t+1}; after r(x_{t+1}) (2t + 2): its column
        return self.row_out(h[:, 1::2]), self.col_out(h[:, 2::2])

    def _nll(self, X, L, reduction):
        rl, cl = self.forward(X, L)
        T = X.shape[1]
        valid = np.arange(1, T)[None, :] < L[:, None]            # (B, T − 1): real targets
        y = np.where(valid, X[:, 1:], 0)
        r_nll = -F.gather(F.log_softmax(rl, -1), self.rows[y][..., None], axis=-1)
        c_nll = -F.gather(F.log_softmax(cl, -1), self.cols[y][..., None], axis=-1)
        per = F.reshape(r_nll + c_nll, y.shape)                  # (B, T − 1)
        return per, valid

    def loss(self, X, lengths) -> Tensor:
        """Mean NLL (nats) per predicted token: ``−log P_r − log P_c``."""
        X, L = self._check(X, lengths)
        per, valid = self._nll(X, L, "none")
        return F.sum(F.mask(per, valid.astype(float))) / float(valid.sum())

    def token_nll(self, X, lengths) -> np.ndarray:
        """Per-token NLL (nats), NaN where there is no target: (B, T − 1)."""
        X, L = self._check(X, lengths)
        with no_grad():
            per, valid = self._nll(X, L, "none")
        return np.where(valid, per.data, np.nan)

    def allocation_losses(self, X, lengths) -> tuple[np.ndarray, np.ndarray]:
        """``ℓ_r(w, r)`` and ``ℓ_c(w, c)``: the summed NLL of every occurrence of ``w`` as a target
        if its row were ``r`` (column ``c``), with the states of the current table (Li et al.,
        §3.3). Returns arrays of shape (V, R) and (V, C)."""
        X, L = self._check(X, lengths)
        with no_grad():
            rl, cl = self.forward(X, L)
        T = X.shape[1]
        valid = (np.arange(1, T)[None, :] < L[:, None]).ravel()
        words = X[:, 1:].ravel()[valid]
        lr = -_log_softmax(rl.data).reshape(-1, self.num_rows)[valid]
        lc = -_log_softmax(cl.data).reshape(-1, self.num_cols)[valid]
        row_loss = np.zeros((self.vocab_size, self.num_rows))
        col_loss = np.zeros((self.vocab_size, self.num_cols))
        np.add.at(row_loss, words, lr)
        np.add.at(col_loss, words, lc)
        return row_loss, col_loss

    def reallocate_(self, X, lengths, method: str = "exact") -> float:
        """Bootstrap step: reassign words to cells by :func:`lightrnn_allocate` on
        :meth:`allocation_losses` (in place). Returns the matching's summed loss."""
        row_loss, col_loss = self.allocation_losses(X, lengths)
        rows, cols, cost = lightrnn_allocate(row_loss, col_loss, method)
        self.rows, self.cols = rows.astype(np.int64), cols.astype(np.int64)
        return cost

    def storage_bits(self, float_bits: int = 32) -> int:
        """Parameters × float_bits plus the table, ``V(⌈log2 R⌉ + ⌈log2 C⌉)`` bits."""
        fb = check_int(float_bits, "float_bits", 1, 64)
        bits = int(np.ceil(np.log2(max(self.num_rows, 2)))) + int(
            np.ceil(np.log2(max(self.num_cols, 2))))
        return self.num_parameters() * fb + self.vocab_size * bits


def _log_softmax(a: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax over the last axis (NumPy)."""
    m = a.max(-1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(-1, keepdims=True))
