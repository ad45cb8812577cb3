"""LinearAttentionHook(causal=True) and the tape op causal_linear_attention_t (Katharopoulos et
al., 2020; Survey §7.2): float64 gradcheck of q, k, v through the hook, the dense softmax-free
``n × n`` reference, numba vs numpy twins, torch autograd twin, masks, bad input, and the
causal Transformer LM trained through it."""

import numpy as np
import pytest

from refimpl.attention import linear_attention, linear_attention_quadratic
from refimpl.attention.hooks import LinearAttentionHook, causal_linear_attention_t
from refimpl.nn import Tensor, gradcheck

U = 2.0 ** -53


def _qkv(rng, B=2, H=2, n=9, d=3, dv=4):
    return (rng.standard_normal((B, H, n, d)), rng.standard_normal((B, H, n, d)),
            rng.standard_normal((B, H, n, dv)))


def _causal_mask(n, keep=None):
    m = np.tril(np.ones((n, n), dtype=bool))[None, None]
    return m if keep is None else m & keep[:, None, None, :]


def _keep(B, n):
    keep = np.ones((B, n), dtype=bool)
    keep[0, n - 3:] = False  # trailing padding (the LM's)
    if B > 1:
        keep[1, 2:4] = False  # a hole
    return keep


def _dense_masked(Q, K, V, allow, eps=1e-6):
    """The n × n softmax-free reference under a "may attend" mask."""
    phq = np.where(Q > 0, Q + 1, np.exp(np.minimum(Q, 0)))
    phk = np.where(K > 0, K + 1, np.exp(np.minimum(K, 0)))
    A = (phq @ np.swapaxes(phk, -1, -2)) * allow
    return (A @ V) / (A.sum(-1, keepdims=True) + eps), A, phq, phk


@pytest.mark.parametrize("n", [1, 2, 9, 70])
def test_causal_hook_equals_dense_reference(backend, rng, n):
    Q, K, V = _qkv(rng, n=n)
    out = LinearAttentionHook(causal=True, backend=backend)(*map(Tensor, (Q, K, V))).data
    ref, A, _, _ = _dense_masked(Q, K, V, _causal_mask(n))
    # |error| <= c (n + d) u · Σ_j A_ij |v_j| / den_i  (sums of non-negative weights)
    bound = (A @ np.abs(V)) / (A.sum(-1, keepdims=True) + 1e-6)
    assert np.all(np.abs(out - ref) <= 8 * (n + 3) * U * bound)
    np.testing.assert_allclose(ref, linear_attention_quadratic(Q, K, V, causal=True),
                               rtol=0, atol=8 * (n + 3) * U * bound.max())
    # the array-level function (its φ is exp(x) for x <= 0, the tape's (exp(x) − 1) + 1)
    arr = linear_attention(Q, K, V, causal=True, backend=backend)
    assert np.all(np.abs(out - arr) <= 16 * (n + 3) * U * bound)


def test_causal_hook_with_key_padding_equals_dense_reference(backend, rng):
    n = 12
    Q, K, V = _qkv(rng, n=n)
    keep = _keep(2, n)
    h = LinearAttentionHook(causal=True, backend=backend)
    allow = _causal_mask(n, keep)
    ref, A, _, _ = _dense_masked(Q, K, V, allow)
    bound = (A @ np.abs(V)) / (A.sum(-1, keepdims=True) + 1e-6) + 1e-300
    out = h(*map(Tensor, (Q, K, V)), allow).data
    assert np.all(np.abs(out - ref) <= 8 * (n + 3) * U * bound)
    # the same keys as a key-padding-only mask: the hook is causal either way
    out2 = h(*map(Tensor, (Q, K, V)), keep[:, None, None, :]).data
    np.testing.assert_array_equal(out, out2)
    # padded keys do not leak: changing them changes nothing
    K2, V2 = K.copy(), V.copy()
    K2[~np.broadcast_to(keep[:, None, :], K.shape[:3])] += 3.0
    V2[~np.broadcast_to(keep[:, None, :], V.shape[:3])] -= 5.0
    np.testing.assert_array_equal(h(*map(Tensor, (Q, K2, V2)), allow).data, out)


@pytest.mark.parametrize("masked", [False, True])
def test_causal_hook_gradcheck(backend, rng, masked):
    Q, K, V = _qkv(rng, B=2, H=1, n=6, d=3, dv=2)
    mask = _causal_mask(6, _keep(2, 6)) if masked else None
    h = LinearAttentionHook(causal=True, backend=backend)
    gradcheck(lambda q, k, v: h(q, k, v, mask), [Q, K, V])


def test_tape_op_gradcheck_on_feature_maps(backend, rng):
    phq, phk = (np.exp(rng.standard_normal((1, 2, 7, 3))) for _ in range(2))
    V = rng.standard_normal((1, 2, 7, 2))
    gradcheck(lambda a, b, c: causal_linear_attention_t(a, b, c, eps=1e-6, backend=backend),
              [phq, phk, V])


def test_tape_gradients_equal_dense_tape_gradients(rng):
    """The prefix-sum op's gradients equal those of the dense n × n masked form composed from
    tape ops (F.matmul, F.mask), to rounding."""
    from refimpl.nn import functional as F

    Q, K, V = _qkv(rng, n=20)
    G = rng.standard_normal((2, 2, 20, 4))
    mask = _causal_mask(20, _keep(2, 20))
    grads = []
    for dense in (False, True):
        q, k, v = (Tensor(x, requires_grad=True) for x in (Q, K, V))
        if dense:
            phq, phk = F.elu(q) + 1.0, F.elu(k) + 1.0
            A = F.mask(F.matmul(phq, F.transpose(phk, (0, 1, 3, 2))), mask.astype(float))
            out = F.matmul(A, v) / (F.sum(A, axis=-1, keepdims=True) + 1e-6)
        else:
            out = LinearAttentionHook(causal=True)(q, k, v, mask)
        (out * G).sum().backward()
        grads.append([q.grad, k.grad, v.grad])
    for a, b in zip(*grads):
        # both are O(n + d)-term sums of the same products
        assert np.abs(a - b).max() <= 64 * (20 + 3 + 4) * U * np.abs(b).max()


def test_torch_twin(torch, rng):
    """torch autograd through elu + 1 and cumsum: output and gradients of q, k, v."""
    Q, K, V = _qkv(rng, n=30)
    G = rng.standard_normal(V.shape)
    keep = _keep(2, 30)
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (Q, K, V))
    phq = torch.nn.functional.elu(tq) + 1
    phk = (torch.nn.functional.elu(tk) + 1) * torch.tensor(keep[:, None, :, None], dtype=float)
    S = torch.cumsum(phk[..., :, None] * tv[..., None, :], dim=2)
    z = torch.cumsum(phk, dim=2)
    o = torch.einsum("bhnd,bhndv->bhnv", phq, S) / ((phq * z).sum(-1, keepdim=True) + 1e-6)
    o.backward(torch.tensor(G))
    for backend in ("numba", "numpy"):
        q, k, v = (Tensor(x, requires_grad=True) for x in (Q, K, V))
        out = LinearAttentionHook(causal=True, backend=backend)(q, k, v, _causal_mask(30, keep))
        (out * G).sum().backward()
        tol = 64 * (30 + 3 + 4) * U
        assert np.abs(out.data - o.detach().numpy()).max() <= tol * np.abs(V).max()
        for mine, t in ((q, tq), (k, tk), (v, tv)):
            ref = t.grad.numpy()
            assert np.abs(mine.grad - ref).max() <= tol * np.abs(ref).max()


def test_masks_refused_with_a_clear_error(rng):
    Q, K, V = map(Tensor, _qkv(rng, n=6))
    causal = LinearAttentionHook(causal=True)
    window = np.abs(np.arange(6)[:, None] - np.arange(6)[None, :]) <= 1
    with pytest.raises(ValueError, match="mask"):
        causal(Q, K, V, window & np.tril(np.ones((6, 6), bool)))
    with pytest.raises(ValueError, match="mask"):
        causal(Q, K, V, np.ones((5, 5), bool))
    # a causal mask given to the non-causal hook is not silently ignored
    with pytest.raises(ValueError, match="causal=True"):
        LinearAttentionHook()(Q, K, V, _causal_mask(6))
    # the non-causal hook still takes key-padding masks
    LinearAttentionHook()(Q, K, V, _keep(2, 6)[:, None, None, :])


def test_bad_arguments(rng):
    Q, K, V = _qkv(rng, n=6)
    with pytest.raises(ValueError, match="eps"):
        LinearAttentionHook(eps=-1.0)
    with pytest.raises(ValueError, match="eps"):
        LinearAttentionHook(eps=float("nan"))
    with pytest.raises(TypeError, match="causal"):
        LinearAttentionHook(causal="yes")
    with pytest.raises(ValueError, match="backend"):
        LinearAttentionHook(causal=True, backend="cuda")
    h = LinearAttentionHook(causal=True)
    with pytest.raises(ValueError, match="length"):
        h(Tensor(Q[:, :, :5]), Tensor(K), Tensor(V))
    Qn = Q.copy()
    Qn[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="phiQ"):
        h(Tensor(Qn), Tensor(K), Tensor(V))
    with pytest.raises(TypeError):
        h(Tensor(Q.astype(complex)), Tensor(K), Tensor(V))
    # eps = 0 with a query left without keys would be 0/0
    keep = np.ones((2, 6), bool)
    keep[1, 0] = False
    with pytest.raises(ValueError, match="eps"):
        LinearAttentionHook(eps=0.0, causal=True)(*map(Tensor, (Q, K, V)),
                                                  _causal_mask(6, keep))
    out = LinearAttentionHook(eps=0.0, causal=True)(*map(Tensor, (Q, K, V)))
    assert np.all(np.isfinite(out.data))


def test_inputs_not_mutated_and_deterministic(rng):
    Q, K, V = _qkv(rng, n=8)
    copies = [x.copy() for x in (Q, K, V)]
    a = LinearAttentionHook(causal=True)(*map(Tensor, (Q, K, V)))
    b = LinearAttentionHook(causal=True)(*map(Tensor, (Q, K, V)))
    np.testing.assert_array_equal(a.data, b.data)
    for x, c in zip((Q, K, V), copies):
        np.testing.assert_array_equal(x, c)


def test_causal_lm_through_the_hook_is_causal_and_trains(rng):
    """A TransformerLanguageModel with the causal hook: position t's logits do not change when
    later tokens change, and training through the tape lowers the loss."""
    from refimpl import nn

    model = nn.TransformerLanguageModel(vocab_size=12, d_model=8, num_heads=2, d_ff=16,
                                        num_layers=2, max_len=10, rng=0,
                                        attention=LinearAttentionHook(causal=True))
    X = rng.integers(1, 12, size=(3, 10))
    L = np.array([10, 7, 5])
    X[1, 7:] = 0
    X[2, 5:] = 0
    with nn.no_grad():
        base = model(X, L).data
        X2 = X.copy()
        X2[:, 6:] = np.where(X2[:, 6:] > 0, 1 + X2[:, 6:] % 11, 0)
        moved = model(X2, L).data
    np.testing.assert_array_equal(base[:, :6], moved[:, :6])
    assert not np.allclose(base[0, 6:], moved[0, 6:])
    opt = nn.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = model.loss(X, L)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    assert losses[-1] < losses[0] - 0.1


def test_non_causal_hook_cross_attention_key_padding(rng):
    """Queries and keys of different lengths: a (B, 1, n_q, m) key-padding mask is accepted
    and equals dropping the padded keys."""
    q = rng.standard_normal((2, 1, 3, 4))
    k, v = rng.standard_normal((2, 1, 5, 4)), rng.standard_normal((2, 1, 5, 2))
    keep = np.ones((2, 1, 3, 5), dtype=bool)
    keep[0, ..., 3:] = False
    out = LinearAttentionHook()(*map(Tensor, (q, k, v)), keep).data
    np.testing.assert_allclose(out[0], linear_attention(q[:1], k[:1, :, :3], v[:1, :, :3])[0],
                               rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="mask"):
        LinearAttentionHook()(*map(Tensor, (q, k, v)), np.ones((2, 1, 4, 5), dtype=bool))
