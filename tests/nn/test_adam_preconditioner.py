"""Adam.preconditioner: √v̂ + eps, the curvature loss-aware binarisation (Eqs. 25–26) needs."""

import numpy as np

from refimpl.nn import Adam, Parameter


def test_preconditioner_hand_worked_and_vs_torch(torch):
    p = Parameter(np.array([1.0, -2.0, 0.5]))
    opt = Adam([p], lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    np.testing.assert_array_equal(opt.preconditioner(p), np.ones(3))  # before any step
    g1 = np.array([0.3, -1.0, 2.0])
    p.grad = g1.copy()
    opt.step()
    # t=1: v = 0.01 g², v̂ = g² -> d = |g| + eps
    np.testing.assert_allclose(opt.preconditioner(p), np.abs(g1) + 1e-8, rtol=1e-15)
    g2 = np.array([-0.1, 0.4, 1.0])
    p.grad = g2.copy()
    opt.step()
    v = 0.99 * 0.01 * g1 ** 2 + 0.01 * g2 ** 2
    ref = np.sqrt(v / (1 - 0.99 ** 2)) + 1e-8
    np.testing.assert_allclose(opt.preconditioner(p), ref, rtol=1e-14)
    # torch's exp_avg_sq is the same v
    tp = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    topt = torch.optim.Adam([tp], lr=0.1, betas=(0.9, 0.99), eps=1e-8)
    for g in (g1, g2):
        tp.grad = torch.tensor(g)
        topt.step()
    tv = topt.state[tp]["exp_avg_sq"].numpy()
    d_torch = np.sqrt(tv / (1 - 0.99 ** 2)) + 1e-8
    err = np.abs(opt.preconditioner(p) - d_torch).max()
    assert err < 1e-14, f"max abs err {err}"
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12)


def test_preconditioner_of_unstepped_parameter():
    p, q = Parameter(np.ones(2)), Parameter(np.ones((2, 2)))
    opt = Adam([p, q], lr=0.1)
    p.grad = np.array([1.0, 2.0])
    opt.step()  # q had no gradient: skipped, its estimate stays at ones
    np.testing.assert_array_equal(opt.preconditioner(q), np.ones((2, 2)))
    assert opt.preconditioner(p).shape == (2,)
