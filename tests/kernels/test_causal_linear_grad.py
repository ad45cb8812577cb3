"""Causal linear attention's backward kernel (Katharopoulos et al., 2020; Survey §7.2):
``causal_linear_attention_bwd`` (Numba vs NumPy twins) against the dense ``n × n``
softmax-free reference, a hand-worked ``n = 2`` case, torch autograd of the cumsum form, and bad
input.

Tolerances come from the error analysis of the sums (no tolerance tuned to this machine): every
quantity is a sum of at most ``n + d + d_v`` products, so its rounding error is at most
``γ = c (n + d + d_v) u`` (``u = 2⁻⁵³``) times the same sum taken in absolute values
(:func:`_abs_bounds`); the denominators are sums of non-negative terms (relative error ``≤ γ``).
"""

import numpy as np
import pytest

from refimpl.kernels.attention import causal_linear_attention, causal_linear_attention_bwd
from refimpl.kernels.causal_linear import _causal_linear_bwd_numpy

U = 2.0 ** -53


def _inputs(rng, B=2, H=2, n=40, d=5, dv=3, dtype=np.float64):
    phq = np.exp(rng.standard_normal((B, H, n, d))).astype(dtype)  # non-negative feature maps
    phk = np.exp(rng.standard_normal((B, H, n, d))).astype(dtype)
    V = rng.standard_normal((B, H, n, dv)).astype(dtype)
    G = rng.standard_normal((B, H, n, dv)).astype(dtype)
    return phq, phk, V, G


def _dense(phq, phk, V, G, eps):
    """The n × n reference: o = tril(A) V / (rowsum(tril A) + ε), A = φQ φKᵀ, and its
    gradients written out on the dense matrices (float64)."""
    A = np.tril(phq @ np.swapaxes(phk, -1, -2))  # (B, H, n, n)
    den = A.sum(-1) + eps  # (B, H, n)
    out = (A @ V) / den[..., None]
    g = G / den[..., None]
    gam = -np.einsum("bhiv,bhiv->bhi", G, out) / den
    # ∂L/∂A_ij = g_i·v_j + γ_i  (j <= i)
    dA = np.tril(g @ np.swapaxes(V, -1, -2) + gam[..., None])
    return out, (dA @ phk, np.swapaxes(dA, -1, -2) @ phq, np.swapaxes(A, -1, -2) @ g)


def _abs_bounds(phq, phk, V, G, eps):
    """The same sums in absolute values: the scale of each gradient's rounding error."""
    A = np.tril(phq @ np.swapaxes(phk, -1, -2))
    den = A.sum(-1) + eps
    out_abs = (A @ np.abs(V)) / den[..., None]
    g = np.abs(G) / den[..., None]
    gam = np.einsum("bhiv,bhiv->bhi", np.abs(G), out_abs) / den
    dA = np.tril(g @ np.swapaxes(np.abs(V), -1, -2) + gam[..., None])
    return out_abs, (dA @ phk, np.swapaxes(dA, -1, -2) @ phq, np.swapaxes(A, -1, -2) @ g)


def _assert_within(got, ref, bound, n, d, dv, what):
    tol = 8 * (n + d + dv) * U * bound + 1e-300
    excess = np.abs(got - ref) / tol
    assert excess.max() <= 1.0, f"{what}: error {excess.max():.2f}× the rounding bound"


@pytest.mark.parametrize("n", [1, 2, 40, 64, 65, 150])
def test_bwd_matches_dense_reference(backend, rng, n):
    phq, phk, V, G = _inputs(rng, n=n)
    eps = 1e-6
    out_ref, grads_ref = _dense(phq, phk, V, G, eps)
    out_abs, bounds = _abs_bounds(phq, phk, V, G, eps)
    out = causal_linear_attention(phq, phk, V, eps=eps, backend=backend)
    _assert_within(out, out_ref, out_abs, n, 5, 3, "out")
    grads = causal_linear_attention_bwd(G, phq, phk, V, eps=eps, backend=backend)
    for got, ref, b, nm in zip(grads, grads_ref, bounds, ("dphiQ", "dphiK", "dV")):
        assert got.shape == ref.shape and got.dtype == np.float64
        _assert_within(got, ref, b, n, 5, 3, nm)


def test_numba_and_numpy_twins_agree(rng):
    phq, phk, V, G = _inputs(rng, n=150, d=4, dv=6)
    a = causal_linear_attention_bwd(G, phq, phk, V, backend="numba")
    b = causal_linear_attention_bwd(G, phq, phk, V, backend="numpy")
    _, bounds = _abs_bounds(phq, phk, V, G, 1e-6)
    for x, y, bd, nm in zip(a, b, bounds, ("dphiQ", "dphiK", "dV")):
        _assert_within(x, y, 2 * bd, 150, 4, 6, nm)


def test_numpy_chunk_size_does_not_matter(rng):
    """The chunked NumPy twin with chunk 1 (pure prefix sums) and chunk ≥ n (one dense
    block) computes the same gradients to rounding."""
    phq, phk, V, G = _inputs(rng, B=1, H=1, n=30)
    res = []
    for chunk in (1, 7, 64):
        dQ, dK, dV = np.empty_like(phq), np.empty_like(phk), np.empty_like(V)
        _causal_linear_bwd_numpy(G, phq, phk, V, 1e-6, dQ, dK, dV, chunk=chunk)
        res.append((dQ, dK, dV))
    _, bounds = _abs_bounds(phq, phk, V, G, 1e-6)
    for r in res[:2]:
        for x, y, bd in zip(r, res[2], bounds):
            _assert_within(x, y, 2 * bd, 30, 5, 3, "chunked")


def test_hand_worked_n2(backend):
    """d = d_v = 1, ε = 0: φq = (1, 2), φk = (1, 3), v = (2, 4), ∂L/∂o = (1, 1).

    o₀ = v₀ = 2, o₁ = 2(1·2 + 3·4) / (2(1 + 3)) = 3.5. Since d = 1, o does not depend on φq
    (∂φq = 0); o₁ = (2φk₀ + 4φk₁)/(φk₀ + φk₁) gives ∂φk₀ = (2·3 − 4·3)/16 = −0.375 and
    ∂φk₁ = (4·1 − 2·1)/16 = 0.125; o₀ = v₀ and o₁ = (v₀ + 3v₁)/4 give ∂v = (1.25, 0.75).
    All dyadic: exact in floating point."""
    phq = np.array([1.0, 2.0]).reshape(1, 1, 2, 1)
    phk = np.array([1.0, 3.0]).reshape(1, 1, 2, 1)
    V = np.array([2.0, 4.0]).reshape(1, 1, 2, 1)
    out = causal_linear_attention(phq, phk, V, eps=0.0, backend=backend)
    np.testing.assert_array_equal(out.ravel(), [2.0, 3.5])
    dq, dk, dv = causal_linear_attention_bwd(np.ones((1, 1, 2, 1)), phq, phk, V, eps=0.0,
                                             backend=backend)
    np.testing.assert_array_equal(dq.ravel(), [0.0, 0.0])
    np.testing.assert_array_equal(dk.ravel(), [-0.375, 0.125])
    np.testing.assert_array_equal(dv.ravel(), [1.25, 0.75])


def test_torch_cumsum_twin(torch, rng):
    """torch autograd through the cumsum (prefix-sum) form: forward and all three gradients."""
    phq, phk, V, G = _inputs(rng, n=70, d=4, dv=3)
    eps = 1e-6
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (phq, phk, V))
    S = torch.cumsum(tk[..., :, None] * tv[..., None, :], dim=2)  # (B, H, n, d, d_v)
    z = torch.cumsum(tk, dim=2)
    o = torch.einsum("bhnd,bhndv->bhnv", tq, S) / ((tq * z).sum(-1, keepdim=True) + eps)
    o.backward(torch.tensor(G))
    out_abs, bounds = _abs_bounds(phq, phk, V, G, eps)
    for backend in ("numba", "numpy"):
        out = causal_linear_attention(phq, phk, V, eps=eps, backend=backend)
        _assert_within(out, o.detach().numpy(), 2 * out_abs, 70, 4, 3, "out")
        grads = causal_linear_attention_bwd(G, phq, phk, V, eps=eps, backend=backend)
        for got, t, bd, nm in zip(grads, (tq, tk, tv), bounds, ("dphiQ", "dphiK", "dV")):
            _assert_within(got, t.grad.numpy(), 2 * bd, 70, 4, 3, nm)


def test_float32(backend, rng):
    phq, phk, V, G = _inputs(rng, n=50, dtype=np.float32)
    grads = causal_linear_attention_bwd(G, phq, phk, V, backend=backend)
    ref = _dense(*(x.astype(np.float64) for x in (phq, phk, V, G)), 1e-6)[1]
    _, bounds = _abs_bounds(*(x.astype(np.float64) for x in (phq, phk, V, G)), 1e-6)
    for got, r, bd in zip(grads, ref, bounds):
        assert got.dtype == np.float32
        # float32 inputs: the same bound with u = 2⁻²⁴ (the states are float64 in Numba)
        assert np.all(np.abs(got - r) <= 8 * 58 * 2.0 ** -24 * bd + 1e-30)


def test_bwd_does_not_mutate_and_is_deterministic(backend, rng):
    phq, phk, V, G = _inputs(rng, n=20)
    copies = [x.copy() for x in (phq, phk, V, G)]
    a = causal_linear_attention_bwd(G, phq, phk, V, backend=backend)
    b = causal_linear_attention_bwd(G, phq, phk, V, backend=backend)
    for x, c in zip((phq, phk, V, G), copies):
        np.testing.assert_array_equal(x, c)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_bwd_bad_input(backend, rng):
    phq, phk, V, G = _inputs(rng, n=6)
    with pytest.raises(ValueError, match="dout"):
        causal_linear_attention_bwd(G[:, :, :5], phq, phk, V, backend=backend)
    with pytest.raises(TypeError, match="dout"):
        causal_linear_attention_bwd(G.astype(complex), phq, phk, V, backend=backend)
    Gn = G.copy()
    Gn[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="dout"):
        causal_linear_attention_bwd(Gn, phq, phk, V, backend=backend)
    with pytest.raises(ValueError, match="non-negative"):
        causal_linear_attention_bwd(G, -phq, phk, V, backend=backend)
    with pytest.raises(ValueError, match="V"):
        causal_linear_attention_bwd(G, phq, phk, V[:, :, :5], backend=backend)
    with pytest.raises(TypeError, match="phiQ"):
        causal_linear_attention_bwd(G, phq.astype(complex), phk, V, backend=backend)
    for eps in (-1.0, np.inf, np.nan, True):
        with pytest.raises(ValueError, match="eps"):
            causal_linear_attention_bwd(G, phq, phk, V, eps=eps, backend=backend)
    causal_linear_attention_bwd(G, phq, phk, V, backend=backend)  # the valid call runs
