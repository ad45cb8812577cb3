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

from refimpl.utils import check_array, check_choice

__all__ = ["lightrnn_allocate", "lightrnn_cost_matrix"]


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
