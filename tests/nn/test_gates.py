"""Hard-concrete gates (refimpl.nn.gates; Louizos et al. 2018)."""

import numpy as np
import pytest

from refimpl.nn import Tensor, gradcheck
from refimpl.nn import gates as G


def test_hand_worked_values():
    # log α = 0: σ = 1/2, so ẑ = ½ (ζ − γ) + γ = ½·1.2 − 0.1 = 0.5
    assert float(G.hard_concrete_deterministic(np.zeros(1)).data[0]) == pytest.approx(0.5)
    # log α at log(−γ/ζ) is exactly the edge of 0; at log((1 − γ)/(ζ − 1)) of 1
    lo, hi = np.log(0.1 / 1.1), np.log(1.1 / 0.1)
    z = G.hard_concrete_deterministic(np.array([lo - 1, lo, hi, hi + 1])).data
    np.testing.assert_allclose(z, [0.0, 0.0, 1.0, 1.0], atol=1e-15)
    # P(z ≠ 0) = 1/2 exactly at log α = β log(−γ/ζ)
    la0 = G.HC_BETA * np.log(0.1 / 1.1)
    assert float(G.hard_concrete_prob_nonzero(np.array([la0])).data[0]) == pytest.approx(0.5)
    # the expected L0 norm is the sum of the per-gate probabilities
    la = np.array([[-2.0, 0.0], [1.0, 5.0]])
    assert float(G.hard_concrete_l0(la).data) == pytest.approx(
        float(G.hard_concrete_prob_nonzero(la).data.sum()), rel=1e-15)


def test_sample_is_the_formula_and_seeded():
    la = np.array([-3.0, -0.5, 0.0, 0.7, 4.0])
    beta, gamma, zeta = 0.5, -0.2, 1.3
    z = G.hard_concrete_sample(la, 7, beta=beta, gamma=gamma, zeta=zeta).data
    u = np.random.default_rng(7).uniform(1e-6, 1 - 1e-6, la.shape)
    s = 1 / (1 + np.exp(-(np.log(u) - np.log(1 - u) + la) / beta))
    np.testing.assert_allclose(z, np.clip(s * (zeta - gamma) + gamma, 0, 1), atol=1e-15)
    assert np.array_equal(z, G.hard_concrete_sample(la, 7, beta=beta, gamma=gamma,
                                                    zeta=zeta).data)


@pytest.mark.parametrize("beta,gamma,zeta", [(2 / 3, -0.1, 1.1), (0.3, -0.5, 1.5)])
def test_monte_carlo_matches_closed_forms(beta, gamma, zeta):
    la = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])
    n = 40000
    z = G.hard_concrete_sample(np.broadcast_to(la, (n, la.size)).copy(), 0, beta=beta,
                               gamma=gamma, zeta=zeta).data  # (n, 5)
    p = G.hard_concrete_prob_nonzero(la, beta=beta, gamma=gamma, zeta=zeta).data
    # binomial standard error ≤ 0.5/√n: 4 of them is a 4σ bound
    np.testing.assert_allclose((z > 0).mean(0), p, atol=4 * 0.5 / np.sqrt(n))
    # P(z = 1) = 1 − σ(β log((1 − γ)/(ζ − 1)) − log α) (Louizos et al.'s upper tail)
    p1 = 1 - 1 / (1 + np.exp(-(beta * np.log((1 - gamma) / (zeta - 1)) - la)))
    np.testing.assert_allclose((z == 1).mean(0), p1, atol=4 * 0.5 / np.sqrt(n))
    assert np.all((z >= 0) & (z <= 1))


def test_gradients():
    la = np.array([-0.4, 0.3, 1.2, -1.5])
    gradcheck(lambda x: G.hard_concrete_prob_nonzero(x), [la])
    gradcheck(lambda x: G.hard_concrete_l0(x, beta=0.5), [la])
    gradcheck(lambda x: G.hard_concrete_deterministic(x), [np.array([-0.2, 0.1, 0.9])])
    # a fixed u: the reparameterised sample is a smooth function of log α away from the clip
    la2 = np.array([0.2, -0.1, 0.4])
    z = G.hard_concrete_sample(la2, 6).data
    assert np.all((z > 0) & (z < 1)), z
    gradcheck(lambda x: G.hard_concrete_sample(x, 6), [la2])
    # where the sample is clipped to 0 or 1 the gradient is exactly 0
    t = Tensor(np.array([-30.0, 30.0]), requires_grad=True)
    G.hard_concrete_sample(t, 0).sum().backward()
    assert t.grad.tolist() == [0.0, 0.0]


def test_tensor_in_tensor_out_and_errors():
    t = Tensor(np.zeros((2, 3)), requires_grad=True)
    for f in (G.hard_concrete_sample, G.hard_concrete_prob_nonzero,
              G.hard_concrete_deterministic):
        assert isinstance(f(t), Tensor) and f(t).shape == (2, 3)
    with pytest.raises(TypeError, match="log_alpha must be an array, got None"):
        G.hard_concrete_sample(None)
    with pytest.raises(ValueError, match="log_alpha contains NaN"):
        G.hard_concrete_l0(Tensor(np.array([0.0, np.nan])))
    with pytest.raises(ValueError, match="beta must be in"):
        G.hard_concrete_sample(np.zeros(2), 0, beta=0.0)
    with pytest.raises(ValueError, match="gamma must be in"):
        G.hard_concrete_prob_nonzero(np.zeros(2), gamma=0.1)
    with pytest.raises(ValueError, match="zeta must be in"):
        G.hard_concrete_deterministic(np.zeros(2), zeta=1.0)
    with pytest.raises(TypeError, match="log_alpha must be a real array"):
        G.hard_concrete_deterministic(np.array([1j]))
