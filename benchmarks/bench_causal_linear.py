"""Training step (forward + backward) of causal linear attention: the prefix-sum kernels vs the
dense n × n masked form and torch autograd, in the same run (Survey §7.2; Katharopoulos et al.,
2020).

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_causal_linear.py
      [--quick]

One training step of the attention of ``LinearAttentionHook(causal=True)`` on feature-mapped
``φ(Q), φ(K)`` and ``V`` (B = 1, H = 4, d = d_v = 32, float64, an upstream gradient ``G``):

* kernel: :func:`refimpl.kernels.attention.causal_linear_attention` then
  :func:`~refimpl.kernels.attention.causal_linear_attention_bwd` (Numba; ``O(n d d_v)``, no
  ``n × n`` array) — what the tape op ``causal_linear_attention_t`` calls;
* ``numpy_dense_masked`` (the NumPy baseline): the ``n × n`` form
  ``tril(φQ φKᵀ) V / rowsum`` and its gradients written out with BLAS products;
* ``refimpl_numpy_twin``: the chunked NumPy twins of the same two kernels;
* ``torch_cumsum_autograd``: torch autograd through ``cumsum`` of ``φ(k_j) v_jᵀ`` (the
  short form of the issue's torch twin; it keeps the ``n × d × d_v`` prefix states);
* ``torch_dense_masked_autograd``: torch autograd through the dense masked form.

Every case first checks that the kernel's gradients equal the dense form's (within
``1e-12`` relative to the largest entry). Peak traced NumPy memory of the kernel's twin and of
the dense form is printed for the largest ``n``.

Results, full run of 2026-12-07 02:35 UTC (2 vCPUs AMD EPYC Zen 4, OpenBLAS 0.3.31 SkylakeX,
2 threads, numba 2 threads, torch 2.13 CPU 2 threads; the 2 cores shared, load average 5-7, so
single cases are noisy; ratios are same-run, best of 7): kernel time per training step 1.8,
3.1, 11.3, 75, 154 ms at n = 256, 512, 1024, 2048, 4096; peer time / kernel time — NumPy dense
masked 77, 33, 67, 25, 40; the chunked NumPy twin 1.4, 4.4, 2.6, 1.0, 0.67 (at n >= 2048 the
twin's BLAS chunks are as fast as or faster than the scalar Numba loops); torch autograd
cumsum 148, 244, 156, 36, 9.8; torch autograd dense masked 11, 116, 95, 41, 41. Traced peak
of one step at n = 4096: 20.9 MiB (prefix-sum twin) vs 1560 MiB (dense masked), 75x.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
from _common import parse_args, print_cases, print_environment, record, time_fn, torch_or_none

from refimpl.kernels.attention import causal_linear_attention, causal_linear_attention_bwd

B, H, D, DV, EPS = 1, 4, 32, 32, 1e-6


def _dense_step(phq, phk, V, G):
    """Forward and backward of the n × n masked form (NumPy/BLAS)."""
    T = np.swapaxes
    A = np.tril(phq @ T(phk, -1, -2))  # (B, H, n, n)
    den = A.sum(-1) + EPS
    out = (A @ V) / den[..., None]
    g = G / den[..., None]
    gam = -np.einsum("bhiv,bhiv->bhi", G, out) / den
    dA = np.tril(g @ T(V, -1, -2) + gam[..., None])
    return out, dA @ phk, T(dA, -1, -2) @ phq, T(A, -1, -2) @ g


def _kernel_step(phq, phk, V, G, backend):
    out = causal_linear_attention(phq, phk, V, eps=EPS, backend=backend)
    return (out,) + causal_linear_attention_bwd(G, phq, phk, V, eps=EPS, backend=backend)


def _torch_steps(torch, phq, phk, V, G):
    tq, tk, tv, tg = (torch.from_numpy(x) for x in (phq, phk, V, G))

    def cumsum_step():
        q, k, v = (x.detach().requires_grad_() for x in (tq, tk, tv))
        S = torch.cumsum(k[..., :, None] * v[..., None, :], dim=2)
        z = torch.cumsum(k, dim=2)
        o = torch.einsum("bhnd,bhndv->bhnv", q, S) / ((q * z).sum(-1, keepdim=True) + EPS)
        o.backward(tg)
        return q.grad

    def dense_step():
        q, k, v = (x.detach().requires_grad_() for x in (tq, tk, tv))
        A = torch.tril(q @ k.transpose(-1, -2))
        o = (A @ v) / (A.sum(-1, keepdim=True) + EPS)
        o.backward(tg)
        return q.grad

    return cumsum_step, dense_step


def _peak(fn) -> int:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main(argv=None) -> list[dict]:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_environment()
    torch = torch_or_none()
    sizes = (256, 1024, 2048) if args.quick else (256, 512, 1024, 2048, 4096)
    rng = np.random.default_rng(0)
    cases = []
    for n in sizes:
        phq = np.exp(rng.standard_normal((B, H, n, D)))
        phk = np.exp(rng.standard_normal((B, H, n, D)))
        V = rng.standard_normal((B, H, n, DV))
        G = rng.standard_normal((B, H, n, DV))
        ref = _dense_step(phq, phk, V, G)
        for got, r in zip(_kernel_step(phq, phk, V, G, "numba"), ref):
            err = float(np.abs(got - r).max() / np.abs(r).max())
            assert err < 1e-12, f"kernel gradients disagree with the dense form ({err:.2e})"
        rep = args.repeat or (3 if args.quick else 7)
        a = (phq, phk, V, G)
        t_kernel = time_fn(lambda a=a: _kernel_step(*a, "numba"), repeat=rep)
        peers = {
            "numpy_dense_masked": time_fn(lambda a=a: _dense_step(*a), repeat=rep),
            "refimpl_numpy_twin": time_fn(lambda a=a: _kernel_step(*a, "numpy"), repeat=rep),
        }
        if torch is not None:
            cum, dense = _torch_steps(torch, phq, phk, V, G)
            peers["torch_cumsum_autograd"] = time_fn(cum, repeat=rep)
            peers["torch_dense_masked_autograd"] = time_fn(dense, repeat=rep)
        cases.append(record(
            "causal_linear", f"n={n} H={H} d={D}", "causal_linear_attention(+_bwd)", t_kernel,
            peers=peers, numpy_baseline="numpy_dense_masked",
            flops=12.0 * B * H * n * D * DV,  # 2 products forward, 4 backward, 2 flops each
            bytes_moved=8.0 * B * H * n * (4 * D + 4 * DV),
            params={"n": n, "B": B, "H": H, "d": D, "d_v": DV, "dtype": "float64"},
            quick=args.quick))
    print_cases(cases)
    for c in cases:  # every peer, not only the best one
        print(f"# {c['case']}: kernel {c['time_s'] * 1e3:.1f} ms; peer time / kernel time: "
              + ", ".join(f"{k} {v['ratio']:.2f}" for k, v in c["peers"].items()))
    n = sizes[-1]
    phq, phk = (np.exp(rng.standard_normal((B, H, n, D))) for _ in range(2))
    V, G = (rng.standard_normal((B, H, n, DV)) for _ in range(2))
    p_twin = _peak(lambda: _kernel_step(phq, phk, V, G, "numpy"))
    p_dense = _peak(lambda: _dense_step(phq, phk, V, G))
    print(f"# n = {n}: traced peak of one training step: prefix-sum twin "
          f"{p_twin / 2**20:.1f} MiB, dense masked form {p_dense / 2**20:.1f} MiB "
          f"({p_dense / p_twin:.1f}x)")
    return cases


if __name__ == "__main__":
    main()
