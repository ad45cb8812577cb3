"""Survey §4.2 — collaborative learning: students that teach each other.

===================================  ===========================================================
:func:`mutual_learning_losses`       Deep mutual learning (Zhang et al. 2018): each of K peers
                                     minimises its cross-entropy plus the mean KL from the other
                                     peers' (fixed) predictions
:class:`StalePredictions`            Codistillation (Anil et al. 2018): the peers' predictions as
                                     seen through a checkpoint refreshed every ``staleness`` steps
:func:`codistillation_weight`        the distillation weight: 0 during the burn-in on hard labels,
                                     then constant
===================================  ===========================================================
"""

from __future__ import annotations

import numpy as np

from refimpl.nn.losses import cross_entropy, kl_div_with_temperature
from refimpl.nn.tensor import as_tensor
from refimpl.utils import check_array, check_float, check_int, validate_arrays, validate_scalars

__all__ = ["mutual_learning_losses", "StalePredictions", "codistillation_weight"]


@validate_arrays(peer_logits={"kind": "sequence"}, labels={"dtype_kind": "iu", "ndim": 1})
@validate_scalars
def mutual_learning_losses(peer_logits, labels, T: float = 1.0) -> list:
    """Deep mutual learning's per-peer objectives (Survey §4.2; Zhang et al. 2018, Eq. 10):

    .. math::

        \\mathcal L_k = \\mathrm{CE}(z_k, y) + \\frac{1}{K-1}\\sum_{j \\ne k}
        T^2\\,\\mathrm{KL}\\big(p_j \\,\\|\\, p_k\\big),\\qquad p = \\mathrm{softmax}(z/T)

    The other peers' predictions ``p_j`` are *targets*: no gradient flows into peer ``j`` from
    peer ``k``'s loss (the paper updates the peers in turn with the others fixed; summing the
    ``L_k`` and taking one step is the simultaneous variant). With ``T = 1`` (the paper's
    setting) the ``T²`` factor is 1.

    Parameters
    ----------
    peer_logits : sequence of K >= 2 Tensors of shape (B, C)
    labels : int ndarray of shape (B,)
    T : float > 0

    Returns
    -------
    list of K scalar Tensors

    References
    ----------
    .. [1] Y. Zhang, T. Xiang, T. M. Hospedales, H. Lu, "Deep Mutual Learning", CVPR 2018.
    """
    peers = [as_tensor(z) for z in peer_logits]
    K = len(peers)
    if K < 2:
        raise ValueError(f"peer_logits must hold at least 2 peers, got {K}")
    shape = peers[0].shape
    for i, z in enumerate(peers):
        check_array(z.data, f"peer_logits[{i}]", ndim=2)
        if z.shape != shape:
            raise ValueError(f"peer_logits[{i}] has shape {z.shape}, peer 0 has {shape}")
    T = check_float(T, "T", 0.0, lo_open=True)
    labels = np.asarray(labels)
    if labels.shape != (shape[0],) or labels.min() < 0 or labels.max() >= shape[1]:
        raise ValueError(f"labels must be {shape[0]} class ids in [0, {shape[1]}), got shape "
                         f"{labels.shape} with values in [{labels.min()}, {labels.max()}]")
    targets = [z.data.copy() for z in peers]  # fixed: no gradient into the other peers
    out = []
    for k, z in enumerate(peers):
        loss = cross_entropy(z, labels)
        for j in range(K):
            if j != k:
                loss = loss + kl_div_with_temperature(z, targets[j], T) * (1.0 / (K - 1))
        out.append(loss)
    return out


class StalePredictions:
    """The peers' predictions as codistillation sees them: from a copy of each peer that is
    refreshed only every ``staleness`` steps (Survey §4.2; Anil et al. 2018, §2).

    Anil et al. exchange checkpoints between workers rarely, so each worker distils from
    predictions that are up to ``staleness`` steps old. ``staleness = 1`` is mutual learning
    with fresh predictions.

    Parameters
    ----------
    snapshot : callable
        ``snapshot(peer_index) -> state``: a copy of peer ``k``'s parameters now (e.g.
        ``lambda k: copy.deepcopy(peers[k])``), taken every ``staleness`` steps.
    predict : callable
        ``predict(state, X_batch) -> ndarray of shape (B, C)``: the probabilities of a
        snapshot on a batch.
    n_peers : int >= 2
    staleness : int >= 1
        Steps between refreshes.
    """

    @validate_scalars
    def __init__(self, snapshot, predict, n_peers: int, staleness: int = 1):
        if not callable(snapshot):
            raise TypeError(f"snapshot must be callable, got {type(snapshot).__name__}")
        if not callable(predict):
            raise TypeError(f"predict must be callable, got {type(predict).__name__}")
        self.snapshot = snapshot
        self.predict = predict
        self.n_peers = check_int(n_peers, "n_peers", 2)
        self.staleness = check_int(staleness, "staleness", 1)
        self.step = 0
        self._frozen = None
        self.refreshes = 0

    def tick(self) -> bool:
        """Advance one training step; refresh the snapshots every ``staleness`` steps (and at
        step 0). Returns True when it refreshed."""
        refresh = self._frozen is None or self.step % self.staleness == 0
        if refresh:
            self._frozen = [self.snapshot(k) for k in range(self.n_peers)]
            self.refreshes += 1
        self.step += 1
        return refresh

    def probs(self, k: int, X) -> np.ndarray:
        """Mean over the *other* peers' stale predictions for peer ``k`` on ``X``: (B, C)."""
        k = check_int(k, "k", 0, self.n_peers - 1)
        if self._frozen is None:
            raise RuntimeError("call tick() before probs(): no snapshot has been taken yet")
        others = [self.predict(self._frozen[j], X) for j in range(self.n_peers) if j != k]
        return np.mean(others, axis=0)


@validate_scalars
def codistillation_weight(step: int, burn_in: int, weight: float = 1.0) -> float:
    """Codistillation's distillation weight: 0 while ``step < burn_in`` (the peers first train
    on hard labels alone), then ``weight`` (Survey §4.2; Anil et al. 2018).

    Returns
    -------
    float
    """
    step = check_int(step, "step", 0)
    burn_in = check_int(burn_in, "burn_in", 0)
    weight = check_float(weight, "weight", 0.0)
    return 0.0 if step < burn_in else weight

