"""§4.2 deep mutual learning and codistillation: hand values, torch cross-check, gradient
flow (no gradient into the other peers), gradcheck, staleness and burn-in semantics."""

import copy

import numpy as np
import pytest

from refimpl.distillation import StalePredictions, codistillation_weight, mutual_learning_losses
from refimpl.nn import Tensor, gradcheck


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_two_peers_hand_values():
    z1 = np.array([[0.0, 0.0]])
    z2 = np.array([[np.log(3.0), 0.0]])  # (3/4, 1/4)
    y = np.array([0])
    L1, L2 = mutual_learning_losses([Tensor(z1), Tensor(z2)], y)
    kl_21 = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.5)  # KL(p2 ‖ p1)
    kl_12 = 0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)  # KL(p1 ‖ p2)
    assert float(L1.data) == pytest.approx(np.log(2.0) + kl_21, rel=1e-14)
    assert float(L2.data) == pytest.approx(-np.log(0.75) + kl_12, rel=1e-14)


def test_matches_torch_for_three_peers(torch):
    rng = np.random.default_rng(0)
    zs = [rng.standard_normal((5, 4)) for _ in range(3)]
    y = rng.integers(0, 4, 5)
    F = torch.nn.functional
    ours = mutual_learning_losses([Tensor(z) for z in zs], y, T=2.0)
    for k in range(3):
        zk = torch.tensor(zs[k])
        want = F.cross_entropy(zk, torch.tensor(y))
        for j in range(3):
            if j != k:
                want = want + 4.0 * F.kl_div(F.log_softmax(zk / 2, -1),
                                              F.softmax(torch.tensor(zs[j]) / 2, -1),
                                              reduction="batchmean") / 2
        assert float(ours[k].data) == pytest.approx(float(want), rel=1e-12)


def test_no_gradient_flows_into_the_other_peers_and_gradcheck():
    rng = np.random.default_rng(1)
    zs = [Tensor(rng.standard_normal((3, 4)), requires_grad=True) for _ in range(3)]
    y = rng.integers(0, 4, 3)
    mutual_learning_losses(zs, y)[0].backward()
    assert zs[0].grad is not None and np.abs(zs[0].grad).sum() > 0
    assert all(z.grad is None or not np.any(z.grad) for z in zs[1:])
    others = [z.data for z in zs[1:]]
    r = gradcheck(lambda a: mutual_learning_losses([a, *others], y)[0], [zs[0].data])
    assert r["max_rel_err"] < 1e-5


def test_bad_input():
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="peer_logits"):
        mutual_learning_losses([Tensor(np.zeros((2, 3)))], y)
    with pytest.raises(ValueError, match=r"peer_logits\[1\]"):
        mutual_learning_losses([Tensor(np.zeros((2, 3))), Tensor(np.zeros((2, 4)))], y)
    with pytest.raises(ValueError, match="T"):
        mutual_learning_losses([Tensor(np.zeros((2, 3)))] * 2, y, T=0.0)


def test_stale_predictions_refresh_every_staleness_steps():
    peers = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 1.0])]

    def snapshot(k):
        return copy.deepcopy(peers[k])

    def predict(state, X):
        return np.tile(_softmax(state), (len(X), 1))

    buf = StalePredictions(snapshot, predict, n_peers=3, staleness=3)
    X = np.zeros((2, 5))
    refreshed = []
    seen = []
    for _step in range(7):
        refreshed.append(buf.tick())
        seen.append(buf.probs(0, X)[0].copy())
        peers[1] = peers[1] + np.array([1.0, 0.0])  # the live peer keeps changing
    assert refreshed == [True, False, False, True, False, False, True]
    np.testing.assert_array_equal(seen[0], seen[2])  # stale between refreshes
    assert not np.allclose(seen[2], seen[3])
    want0 = (_softmax(np.array([0.0, 1.0])) + _softmax(np.array([1.0, 1.0]))) / 2
    np.testing.assert_allclose(seen[0], want0, rtol=1e-15)
    with pytest.raises(ValueError, match="staleness"):
        StalePredictions(snapshot, predict, 3, staleness=0)
    with pytest.raises(RuntimeError, match="tick"):
        StalePredictions(snapshot, predict, 3).probs(0, X)


def test_codistillation_burn_in():
    assert [codistillation_weight(s, 3, 0.5) for s in range(5)] == [0, 0, 0, 0.5, 0.5]
    with pytest.raises(ValueError, match="burn_in"):
        codistillation_weight(0, -1)
