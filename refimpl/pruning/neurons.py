"""Pruning neurons (Survey §2.2): low-importance neurons and redundant (twin) neurons.

=====================================  =======================================================
function                               survey § / equation, paper
=====================================  =======================================================
:func:`neuron_entropy`                 §2.2.1, Eq. (9) — He et al. 2014 (entropy importance)
:func:`onorm`, :func:`inorm`           §2.2.1 — He et al. 2014 (output / input weight norms)
:func:`row_l2_penalty`,
:func:`row_linf_penalty`               §2.2.1, Eqs. (10)–(11) — Murray & Chiang 2015
:func:`remove_neurons`                 drop hidden neurons (rows of W_in, columns of W_out)
:func:`neuron_pair_saliency`           §2.2.2, Eq. (14) — Srinivas & Babu 2015
:func:`merge_neurons`                  §2.2.2, Eqs. (12)–(13), (15) — fold a_j into a_i
:func:`prune_redundant_neurons`        §2.2.2 — the 3-step data-free procedure
=====================================  =======================================================

Layout (PyTorch): a hidden layer ``h = act(X @ W_in.T + b_in)`` has ``W_in`` of shape
``(n_hidden, n_in)``; the next layer ``z = h @ W_out.T + b_out`` has ``W_out`` of shape
``(n_out, n_hidden)``. Column ``W_out[:, i]`` is neuron ``i``'s outgoing weights (the survey's
``a_i``), row ``W_in[i]`` its incoming weights (the survey's ``W_i``).
"""

from __future__ import annotations

import numpy as np

from refimpl.utils import check_array, check_float, check_int, validate_scalars

__all__ = ["neuron_entropy", "neuron_entropy_survey_form", "onorm", "inorm", "row_l2_penalty",
           "row_linf_penalty", "remove_neurons", "neuron_pair_saliency", "merge_neurons",
           "prune_redundant_neurons"]


def _binary_entropy(p):
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
        u = np.where(p < 1, (1 - p) * np.log2(np.where(p < 1, 1 - p, 1.0)), 0.0)
    return -(t + u)


@validate_scalars
def neuron_entropy(H, threshold: float = 0.5) -> np.ndarray:
    """Entropy importance of each sigmoid neuron (Survey Eq. (9), §2.2.1; He et al. 2014).

    With ``a_i`` (``d_i``) the number of examples whose activation is ``> threshold``
    (``≤ threshold``)::

        entropy(i) = -(d_i/(a_i+d_i)) log2(d_i/(a_i+d_i)) - (a_i/(a_i+d_i)) log2(a_i/(a_i+d_i))

    (``0 log 0 = 0``). A neuron whose output is the same on every example has entropy 0 and is
    useless to later layers; low-entropy neurons are removed first.

    Parameters
    ----------
    H : ndarray of shape (n_examples, n_neurons)
        Sigmoid activations.
    threshold : float, default 0.5

    Returns
    -------
    ndarray of shape (n_neurons,), values in [0, 1]

    Notes
    -----
    The survey prints Eq. (9) without the minus signs, i.e. the *negative* entropy (≤ 0);
    ranking by that and removing the lowest would remove the most informative neurons (see
    ``chapters/ERRATA.md`` and :func:`neuron_entropy_survey_form`).

    References
    ----------
    .. [1] T. He, Y. Fan, Y. Qian, T. Tan, K. Yu, "Reshaping deep neural network for fast
       decoding by node-pruning", ICASSP 2014.
    """
    H = check_array(H, "H", ndim=2)
    threshold = check_float(threshold, "threshold")
    a = (H > threshold).sum(axis=0)  # (n_neurons,)
    return _binary_entropy(a / H.shape[0])


def neuron_entropy_survey_form(H, threshold: float = 0.5) -> np.ndarray:
    """Eq. (9) exactly as the survey prints it (no minus signs): ``-neuron_entropy``."""
    return -neuron_entropy(H, threshold)


@validate_scalars
def onorm(W_out) -> np.ndarray:
    """Output-weight norm: average ``|w|`` of each neuron's outgoing links (He et al. 2014).

    Parameters
    ----------
    W_out : ndarray of shape (n_out, n_hidden)

    Returns
    -------
    ndarray of shape (n_hidden,)

    Notes
    -----
    Survey §2.2.1.

    References
    ----------
    .. [1] T. He et al., "Reshaping Deep Neural Network for Fast Decoding by Node-Pruning", ICASSP
       2014.
    """
    W_out = check_array(W_out, "W_out", ndim=2)
    return np.abs(W_out).mean(axis=0)


@validate_scalars
def inorm(W_in) -> np.ndarray:
    """Input-weight norm: average ``|w|`` of each neuron's incoming links (He et al. 2014).

    Parameters
    ----------
    W_in : ndarray of shape (n_hidden, n_in)

    Returns
    -------
    ndarray of shape (n_hidden,)

    Notes
    -----
    Survey §2.2.1.

    References
    ----------
    .. [1] T. He et al., "Reshaping Deep Neural Network for Fast Decoding by Node-Pruning", ICASSP
       2014.
    """
    W_in = check_array(W_in, "W_in", ndim=2)
    return np.abs(W_in).mean(axis=1)


@validate_scalars
def row_l2_penalty(W) -> tuple[float, np.ndarray]:
    """``Σ_i ‖W_i:‖₂`` and its (sub)gradient (Survey Eq. (10), §2.2.1; Murray & Chiang 2015).

    The gradient of row ``i`` is ``W_i: / ‖W_i:‖₂`` (0, a valid subgradient, for a zero row).

    Parameters
    ----------
    W : ndarray of shape (n_rows, n_cols)

    Returns
    -------
    penalty : float
    grad : ndarray of shape (n_rows, n_cols)

    References
    ----------
    .. [1] K. Murray, D. Chiang, "Auto-Sizing Neural Networks: With Applications to n-gram
       Language Models", EMNLP 2015.
    """
    W = check_array(W, "W", ndim=2)
    norms = np.sqrt((W ** 2).sum(axis=1))  # (n_rows,)
    safe = np.where(norms > 0, norms, 1.0)
    return float(norms.sum()), W / safe[:, None] * (norms > 0)[:, None]


@validate_scalars
def row_linf_penalty(W) -> tuple[float, np.ndarray]:
    """``Σ_i max_j |W_ij|`` and a subgradient (Survey Eq. (11), §2.2.1; Murray & Chiang 2015).

    For row ``i`` the subgradient puts ``sign(W_ij) / m`` on each of the ``m`` entries that
    attain the maximum (all the pressure goes to the largest values); 0 for a zero row. Where
    the maximum is unique it is the gradient.

    Returns
    -------
    penalty : float
    grad : ndarray of shape (n_rows, n_cols)
    """
    W = check_array(W, "W", ndim=2)
    A = np.abs(W)
    mx = A.max(axis=1, keepdims=True)  # (n_rows, 1)
    at = (A == mx) & (mx > 0)
    m = np.maximum(at.sum(axis=1, keepdims=True), 1)
    return float(mx.sum()), np.sign(W) * at / m


@validate_scalars
def remove_neurons(W_in, b_in, W_out, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop hidden neurons: rows of ``W_in``/``b_in`` and columns of ``W_out`` not in ``keep``.

    Parameters
    ----------
    W_in : ndarray of shape (n_hidden, n_in)
    b_in : ndarray of shape (n_hidden,)
    W_out : ndarray of shape (n_out, n_hidden)
    keep : ndarray of bool of shape (n_hidden,) or of distinct int indices in [0, n_hidden)
        Indices are taken in the order given (the kept neurons are reordered accordingly).

    Returns
    -------
    W_in, b_in, W_out with ``n_kept`` hidden neurons

    Notes
    -----
    Part of Survey §2.2.
    """
    W_in = check_array(W_in, "W_in", ndim=2)
    n = W_in.shape[0]
    b_in = check_array(b_in, "b_in", shape=(n,))
    W_out = check_array(W_out, "W_out", shape=(None, n))
    if isinstance(keep, (list, tuple)) and len(keep) == 0:
        keep = np.zeros(0, dtype=np.intp)  # [] is float64 to NumPy
    keep = check_array(keep, "keep", ndim=1, dtype_kind="biu", allow_empty=True)
    if keep.dtype == bool:
        if keep.shape != (n,):
            raise ValueError(f"keep must have shape ({n},), got {keep.shape}")
        keep = np.flatnonzero(keep)
    elif keep.size:
        if keep.min() < 0 or keep.max() >= n:
            raise ValueError(f"keep must hold indices in [0, {n - 1}], got values in "
                             f"[{keep.min()}, {keep.max()}]")
        if np.unique(keep).size != keep.size:
            raise ValueError("keep must hold distinct indices, got repeated ones")
    return W_in[keep].copy(), b_in[keep].copy(), W_out[:, keep].copy()


@validate_scalars
def neuron_pair_saliency(W_in, b_in, W_out) -> np.ndarray:
    """Saliency of removing neuron ``j`` into neuron ``i``: ``s_ij = ⟨a_j²⟩ ‖ε_ij‖₂²``.

    Survey Eq. (14), §2.2.2 (Srinivas & Babu 2015): ``ε_ij = W_i - W_j`` is the difference of
    the incoming weight vectors (bias included) and ``⟨a_j²⟩`` the mean over the output neurons
    of neuron ``j``'s squared outgoing weights. Twins (``W_i = W_j``) have ``s_ij = 0``.

    Parameters
    ----------
    W_in : ndarray of shape (n_hidden, n_in)
    b_in : ndarray of shape (n_hidden,)
    W_out : ndarray of shape (n_out, n_hidden)

    Returns
    -------
    ndarray of shape (n_hidden, n_hidden)
        ``S[i, j] = s_ij``; the diagonal is ``+inf`` (a neuron cannot merge into itself).

    References
    ----------
    .. [1] S. Srinivas, R. V. Babu, "Data-free Parameter Pruning for Deep Neural Networks",
       BMVC 2015.
    """
    W_in = check_array(W_in, "W_in", ndim=2)
    n = W_in.shape[0]
    b_in = check_array(b_in, "b_in", shape=(n,))
    W_out = check_array(W_out, "W_out", shape=(None, n))
    V = np.concatenate([W_in, b_in[:, None]], axis=1)  # (n, n_in + 1)
    sq = (V ** 2).sum(1)
    E = np.maximum(sq[:, None] + sq[None, :] - 2 * V @ V.T, 0.0)  # ‖W_i - W_j‖², (n, n)
    a2 = (W_out ** 2).mean(axis=0)  # ⟨a_j²⟩, (n,)
    S = E * a2[None, :]
    np.fill_diagonal(S, np.inf)
    return S


@validate_scalars
def merge_neurons(W_in, b_in, W_out, i: int, j: int):
    """Remove neuron ``j`` and fold its outgoing weights into neuron ``i``: ``a_i ← a_i + a_j``.

    Survey Eqs. (12)–(13), (15), §2.2.2. When ``W_i == W_j`` (incoming weights and bias) the
    layer's output is unchanged exactly.

    Returns
    -------
    W_in : ndarray of shape (n_hidden - 1, n_in)
    b_in : ndarray of shape (n_hidden - 1,)
    W_out : ndarray of shape (n_out, n_hidden - 1)
    """
    W_in = check_array(W_in, "W_in", ndim=2)
    n = W_in.shape[0]
    i = check_int(i, "i", 0, n - 1)
    j = check_int(j, "j", 0, n - 1)
    if i == j:
        raise ValueError(f"i and j must differ, got i=j={i}")
    W_out = check_array(W_out, "W_out", shape=(None, n)).copy()
    W_out[:, i] += W_out[:, j]  # Eq. (15)
    keep = np.arange(n) != j
    return remove_neurons(W_in, b_in, W_out, keep)


@validate_scalars
def prune_redundant_neurons(W_in, b_in, W_out, n_remove: int):
    """Srinivas & Babu's procedure: repeatedly merge the pair with the smallest ``s_ij``.

    Each step computes :func:`neuron_pair_saliency`, picks ``(i', j') = argmin s_ij``, removes
    ``j'`` and sets ``a_i' ← a_i' + a_j'`` (:func:`merge_neurons`); ``S`` is then recomputed
    for the remaining neurons (equivalent to deleting row/column ``j'`` and updating column
    ``i'``).

    Returns
    -------
    W_in, b_in, W_out : with ``n_hidden - n_remove`` neurons
    merged : list of (int, int)
        The merged pairs, as indices into the original neurons.

    Notes
    -----
    Survey §2.2.2.

    References
    ----------
    .. [1] S. Srinivas, R. V. Babu, "Data-free Parameter Pruning for Deep Neural Networks", BMVC
       2015.
    """
    W_in = check_array(W_in, "W_in", ndim=2)
    n = W_in.shape[0]
    n_remove = check_int(n_remove, "n_remove", 0, n - 1)
    ids = list(range(n))
    merged = []
    for _ in range(n_remove):
        S = neuron_pair_saliency(W_in, b_in, W_out)
        i, j = np.unravel_index(int(np.argmin(S)), S.shape)
        merged.append((ids[i], ids[j]))
        W_in, b_in, W_out = merge_neurons(W_in, b_in, W_out, int(i), int(j))
        del ids[j]
    return W_in, b_in, W_out, merged
