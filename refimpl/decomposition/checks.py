"""Registered checks for Survey §6 (tensor decomposition): Eqs. (62)–(67), the unnumbered methods
(Eckart–Young, TT-SVD, TT-matrix products, WEST, D-softmax, BTD) and three claims in miniature.

Every check takes ``(rng, quick)`` and returns an :class:`refimpl.check.Outcome`; the chapter
notebook ``chapters/06_decomposition.ipynb`` and ``tests/test_check_registry.py`` run them.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from refimpl.check import Outcome, register_check, register_claim, register_equation
from refimpl.decomposition import low_rank as lr
from refimpl.decomposition.block_diagonal import (
    DifferentiatedSoftmax,
    dsoftmax_dense_weight,
    frequency_partition,
    west_factorize,
)
from refimpl.decomposition.block_term import btd_als, btd_num_params
from refimpl.nn import evaluate_accuracy
from refimpl.decomposition.tensor_train import (
    TTEmbedding,
    random_tt,
    tt_matrix,
    tt_matrix_to_full,
    tt_matvec,
    tt_num_params,
    tt_ranks,
    tt_svd,
    tt_to_full,
)

_LR = "refimpl.decomposition.low_rank"


def _single_thread_blas(func):
    """Run a check with one BLAS thread: its matrices are small, and on a shared 2-core machine
    a 2-thread BLAS spins and stalls whenever another process holds a core."""
    import functools

    @functools.wraps(func)
    def wrapper(rng, quick):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return func(rng, quick)

    return wrapper

_TT = "refimpl.decomposition.tensor_train"
_BT = "refimpl.decomposition.block_term"


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


# ------------------------------------------------------------------ Eqs. (62)–(63)
def _rnn_by_hand(model, X, lengths):
    """Eqs. (62)–(63) as explicit NumPy loops over layers and steps (no tape), reading the
    survey's matrices of a :func:`~refimpl.decomposition.low_rank.stacked_rnn_classifier`."""
    B, T = X.shape
    inp = model.embedding.W.data[X]  # (B, T, E)
    layers = lr.rnn_layer_matrices(model)
    W_x = model.rnn.W_ih_l0.data  # W_x^0 (N_1, E)
    for W_h, W_x_next, b in layers:
        h = np.zeros((B, W_h.shape[0]))
        outs = np.zeros((B, T, W_h.shape[0]))
        for t in range(T):
            for i in range(B):
                if t < lengths[i]:
                    # h_t^l = σ(W_x^{l-1} h_t^{l-1} + W_h^l h_{t-1}^l + b^l)
                    h[i] = np.tanh(W_x @ inp[i, t] + W_h @ h[i] + b)
            outs[:, t] = h
        inp, W_x = outs, W_x_next
    return h @ W_x.T + model.fc.b.data  # W_x^L h_T^L + b_out


def _small_stacked_rnn(rng):
    """A 2-layer tanh RNN (E = 5, N = 6, 3 classes) with random biases (the init zeroes them)."""
    model = lr.stacked_rnn_classifier(30, 5, 6, 2, 3, rng=rng)
    for name, p in model.named_parameters():
        if name.startswith(("rnn.b_", "fc.b")):
            p.data = rng.standard_normal(p.shape) * 0.3
    return model


@register_equation(62, "multi-layer RNN recurrence equals an explicit per-step loop",
                   section="6.1", implements=[f"{_LR}.stacked_rnn_classifier",
                                              f"{_LR}.rnn_layer_matrices"])
def _eq62_stacked_rnn(rng, quick):
    model = _small_stacked_rnn(rng)
    X = rng.integers(1, 30, (4, 7))
    lengths = np.array([7, 3, 5, 1])
    return Outcome.compare(model(X, lengths).data, _rnn_by_hand(model, X, lengths), atol=1e-12,
                           layers=2, detail="nn.RNNClassifier (tanh nn.RNN) vs NumPy loop of "
                           "Eqs. (62)-(63)")


@register_equation(63, "W_h^l and the next layer's W_x^l act on the same h^l: sharing P^l "
                   "at full rank is lossless", section="6.1",
                   implements=[f"{_LR}.ProjectedRNNClassifier", f"{_LR}.joint_svd"])
def _eq63_shared_state(rng, quick):
    model = _small_stacked_rnn(rng)
    X = rng.integers(1, 30, (4, 7))
    lengths = np.array([7, 3, 5, 1])
    proj = lr.ProjectedRNNClassifier.from_dense(model, [6, 6])  # r_l = N_l
    return Outcome.compare(proj(X, lengths).data, model(X, lengths).data, atol=1e-12,
                           detail="projected RNN (Z_x P, Z_h P) vs dense RNN")


# ------------------------------------------------------------------ Eqs. (64)–(65)
@register_equation(64, "Z_h P from the truncated SVD of W_h is the best rank-r recurrent "
                   "matrix (Eckart–Young)", section="6.1", implements=[f"{_LR}.joint_svd"])
def _eq64_joint_svd(rng, quick):
    N, M, r = 12, 8, 4
    W_h, W_x = rng.standard_normal((N, N)), rng.standard_normal((M, N))
    Z_h, Z_x, P = lr.joint_svd(W_h, W_x, r)
    s = np.linalg.svd(W_h, compute_uv=False)
    err = np.linalg.norm(W_h - Z_h @ P)
    # no rank-r matrix does better: compare with the optimum and with random rank-r trials
    trials = [np.linalg.norm(W_h - (A := rng.standard_normal((N, r)) @ rng.standard_normal(
        (r, N))) * (np.sum(A * W_h) / np.sum(A * A))) for _ in range(50)]
    return Outcome.all_of(
        Outcome.compare(err, np.sqrt(np.sum(s[r:] ** 2)), atol=1e-10),
        Outcome(float(np.abs(P @ P.T - np.eye(r)).max()) < 1e-12,
                {"max_orthonormality_err": float(np.abs(P @ P.T - np.eye(r)).max())}),
        Outcome(bool(min(trials) >= err), {"best_random_trial": min(trials), "svd_err": err}),
        detail="‖W_h − Z_h P‖_F = √Σ_{i>r}σ_i², P = V_r^T orthonormal")


@register_equation(65, "Z_x = W_x P^T equals the least-squares solution argmin ‖Y P − W_x‖",
                   section="6.1",
                   implements=[f"{_LR}.joint_svd", f"{_LR}.joint_projection_lstsq"])
def _eq65_lstsq(rng, quick):
    N, M, r = 12, 8, 4
    W_h, W_x = rng.standard_normal((N, N)), rng.standard_normal((M, N))
    Z_h, Z_x, P = lr.joint_svd(W_h, W_x, r)
    Z_ls = lr.joint_projection_lstsq(P, W_x)
    # normal equations: the residual is orthogonal to the rows of P
    resid = float(np.abs((Z_x @ P - W_x) @ P.T).max())
    return Outcome.all_of(Outcome.compare(Z_x, Z_ls, atol=1e-12),
                          Outcome(resid < 1e-12, {"max_normal_eq_residual": resid}),
                          detail="closed form vs numpy lstsq; (Z_x P − W_x) P^T = 0")


# ------------------------------------------------------------------ Eq. (66)
@register_equation(66, "sparse codes minimise ‖x − Da‖² + λ‖a‖₁: KKT conditions and the "
                   "objective of an independent bound-constrained solver", section="6.1",
                   implements=[f"{_LR}.sparse_code", f"{_LR}.sparse_coding_objective"])
def _eq66_sparse_code(rng, quick):
    L, K, V, lam = 6, 10, 8, 0.7
    X, D = rng.standard_normal((L, V)), rng.standard_normal((L, K))
    A = lr.sparse_code(X, D, lam, n_iter=20000, tol=1e-15)
    G = 2 * D.T @ (D @ A - X)
    nz = A != 0
    kkt = max(float(np.abs(G[nz] + lam * np.sign(A[nz])).max(initial=0.0)),
              float(np.maximum(np.abs(G[~nz]) - lam, 0).max(initial=0.0)))

    # independent: a = u - v, u, v >= 0, smooth QP by L-BFGS-B (scipy)
    def f(z, x):
        u, v = z[:K], z[K:]
        r = D @ (u - v) - x
        g = 2 * D.T @ r
        return r @ r + lam * z.sum(), np.concatenate([g + lam, -g + lam])

    obj_ref = 0.0
    for i in range(V):
        res = scipy.optimize.minimize(f, np.zeros(2 * K), args=(X[:, i],), jac=True,
                                      method="L-BFGS-B", bounds=[(0, None)] * (2 * K),
                                      options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 5000})
        obj_ref += res.fun
    obj = lr.sparse_coding_objective(X, D, A, lam)
    return Outcome.all_of(Outcome.compare(obj, obj_ref, atol=0, rtol=1e-7),
                          Outcome(kkt < 1e-6, {"kkt_violation": kkt,
                                               "sparsity": float(1 - nz.mean())}),
                          detail="FISTA vs scipy L-BFGS-B on the split (u−v) form")


@register_equation(66, "non-negative sparse coding: alternating D/A steps never increase "
                   "Eq. (66); A, D ≥ 0", section="6.1", name="nonneg-alternation",
                   implements=[f"{_LR}.sparse_coding"])
def _eq66_nonneg(rng, quick):
    X = np.abs(rng.standard_normal((8, 30)))
    D, A, obj = lr.sparse_coding(X, 12, 0.3, 1e-3, nonneg=True, n_iter=8, rng=rng)
    mono = all(b <= a + 1e-9 for a, b in zip(obj, obj[1:]))
    return Outcome(mono and A.min() >= 0 and D.min() >= 0,
                   {"objective_first": obj[0], "objective_last": obj[-1],
                    "code_density": float((A > 0).mean())})


# ------------------------------------------------------------------ Eq. (67)
@register_equation(67, "FLOP: P G Q equals Σ_k z_k p_k q_k, and the hard-concrete L0 "
                   "expectation equals Monte Carlo", section="6.1",
                   implements=[f"{_LR}.flop_weight", f"{_LR}.FLOPLinear",
                               "refimpl.decomposition._ops.hard_concrete_l0"])
def _eq67_flop(rng, quick):
    from refimpl.decomposition._ops import hard_concrete_l0, hard_concrete_sample

    m, n, r = 7, 5, 6
    P, Q = rng.standard_normal((m, r)), rng.standard_normal((r, n))
    z = rng.uniform(0, 1, r) * (rng.uniform(0, 1, r) > 0.4)
    outer = sum(z[k] * np.outer(P[:, k], Q[k]) for k in range(r))
    log_alpha = np.linspace(-3, 3, r)
    n_mc = 20000 if quick else 200000
    samples = np.stack([hard_concrete_sample(log_alpha, rng).data for _ in range(n_mc)])
    p_nonzero = hard_concrete_l0(log_alpha).data
    mc = (samples > 0).mean(0)
    tol = 5 * np.sqrt(0.25 / n_mc)
    layer = lr.FLOPLinear.from_dense(rng.standard_normal((m, n)), rank=5, rng=rng)
    layer.log_alpha.data = np.array([4.0, -4.0, 4.0, 0.2, -4.0])
    layer.eval()
    Pc, Qc = layer.compress()
    x = rng.standard_normal((3, n))
    return Outcome.all_of(
        Outcome.compare(lr.flop_weight(P, z, Q), P @ np.diag(z) @ Q, atol=1e-12),
        Outcome.compare(lr.flop_weight(P, z, Q), outer, atol=1e-12),
        Outcome.compare(mc, p_nonzero, atol=tol, n_mc=n_mc),
        Outcome.compare(layer(x).data, x @ (Pc @ Qc).T, atol=1e-12, kept=Pc.shape[1]),
        detail="Eq. (67) both forms; P(z≠0)=σ(logα − β log(−γ/ζ)) vs MC; compressed = gated")


@register_check("flop-l0-training", "FLOP: training with the expected-L0 penalty switches off "
                "the unneeded rank components of a rank-3 target", section="6.1",
                implements=[f"{_LR}.FLOPLinear", "refimpl.decomposition._ops.hard_concrete_l0"])
@_single_thread_blas
def _flop_training(rng, quick):
    from refimpl.nn import fit, mse

    n, m, r_true, r0, lam = 20, 16, 3, 12, 0.1
    W_true = rng.standard_normal((m, r_true)) @ rng.standard_normal((r_true, n)) / np.sqrt(n)
    X = rng.standard_normal((256, n))
    Y = X @ W_true.T
    layer = lr.FLOPLinear(n, m, r0, bias=False, rng=rng, init_keep=0.9)

    def loss_fn(out, y):  # task loss + λ E[L0]  (Louizos et al. 2018, Eq. 3; Wang et al. 2019)
        return mse(out, y) + lam * layer.expected_l0()

    # full-batch Adam through refimpl.nn.fit: one step per epoch
    fit(layer, (X, Y), loss_fn=loss_fn, epochs=600 if quick else 1500, batch_size=len(X),
        lr=5e-2, rng=0, progress=False, blas_threads=None)
    layer.eval()
    P, Q = layer.compress()
    rel = float(np.mean((X @ (P @ Q).T - Y) ** 2) / np.mean(Y ** 2))
    kept = P.shape[1]
    return Outcome(r_true <= kept <= r_true + 1 and rel < 1e-2,
                   {"components_start": r0, "components_kept": kept, "true_rank": r_true,
                    "rel_mse": rel, "expected_l0": float(layer.expected_l0().data)},
                   "MSE + 0.1·E[L0], Adam, hard-concrete gates; compressed factors evaluated")


# ------------------------------------------------------------------ unnumbered methods
@register_check("eckart-young", "truncated SVD is the optimal rank-r approximation "
                "(Frobenius and spectral), beating random rank-r matrices", section="6.1",
                implements=[f"{_LR}.truncated_svd", f"{_LR}.eckart_young_error"])
def _eckart_young(rng, quick):
    W = rng.standard_normal((10, 8))
    worst_gap, outs = np.inf, []
    for r in (1, 3, 5):
        A, B = lr.truncated_svd(W, r)
        fro, spec = lr.eckart_young_error(W, r)
        outs.append(Outcome.compare(np.linalg.norm(W - A @ B), fro, atol=1e-10))
        outs.append(Outcome.compare(np.linalg.norm(W - A @ B, 2), spec, atol=1e-10))
        for _ in range(100):
            Y = rng.standard_normal((10, r)) @ rng.standard_normal((r, 8))
            # locally improve the random candidate: best left factor for its row space
            Y = W @ np.linalg.pinv(Y) @ Y
            worst_gap = min(worst_gap, np.linalg.norm(W - Y) - fro)
    outs.append(Outcome(worst_gap >= -1e-10, {"min_gap_random_minus_svd": worst_gap}))
    return Outcome.all_of(*outs, detail="ranks 1,3,5; 100 projected random candidates each")


@register_check("tt-svd-known-rank", "TT-SVD reconstructs a known-TT-rank tensor to 1e-9 and "
                "recovers its ranks", section="6.3", implements=[f"{_TT}.tt_svd"])
def _tt_known_rank(rng, quick):
    shape, ranks = (4, 5, 3, 6), [3, 4, 2]
    X = tt_to_full(random_tt(shape, ranks, rng))
    cores = tt_svd(X, eps=1e-12)
    rel = np.linalg.norm(tt_to_full(cores) - X) / np.linalg.norm(X)
    return Outcome(rel < 1e-9 and tt_ranks(cores) == (1, 3, 4, 2, 1),
                   {"rel_err": rel, "ranks": str(tt_ranks(cores))})


@register_check("tt-svd-error-bound", "TT-SVD with ε: ‖X − X̂‖ ≤ ε‖X‖ (δ = ε/√(d−1)‖X‖ per "
                "step)", section="6.3", implements=[f"{_TT}.tt_svd"])
def _tt_bound(rng, quick):
    X = rng.standard_normal((4, 5, 6, 3))
    ratios = []
    for eps in (0.05, 0.2, 0.5, 0.8):
        err = np.linalg.norm(tt_to_full(tt_svd(X, eps=eps)) - X) / np.linalg.norm(X)
        ratios.append(err / eps)
    return Outcome(max(ratios) <= 1 + 1e-12, {"max_err_over_eps": max(ratios),
                                               "min_err_over_eps": min(ratios)})


@register_check("tt-matvec", "TT-matrix × X without forming W equals the dense product "
                "(both kernels)", section="6.3",
                implements=[f"{_TT}.tt_matvec", "refimpl.kernels.tt.tt_matmul"])
def _tt_matvec(rng, quick):
    W = rng.standard_normal((24, 20))
    cores = tt_matrix(W, (2, 3, 4), (5, 2, 2), max_rank=3)
    dense = tt_matrix_to_full(cores)
    X = rng.standard_normal((5, 20))
    return Outcome.all_of(
        Outcome.compare(tt_matvec(cores, X, backend="numpy"), X @ dense.T, atol=1e-11),
        Outcome.compare(tt_matvec(cores, X, backend="numba"), X @ dense.T, atol=1e-11),
        Outcome(True, {"params_tt": tt_num_params(cores), "params_dense": W.size}))


@register_check("tt-embedding-lookup", "TT-embedding rows (both kernels and the tape layer) "
                "equal rows of the full TT-matrix", section="6.3",
                implements=[f"{_TT}.TTEmbedding", "refimpl.kernels.tt.tt_embedding_lookup"])
def _tt_embedding_lookup(rng, quick):
    emb = TTEmbedding(60, (3, 4, 5), (2, 2, 3), rank=3, rng=rng)
    E = emb.weight()
    idx = rng.integers(0, 60, size=(4, 7))
    cores = [G.data for G in emb.cores]
    from refimpl.decomposition.tensor_train import tt_embedding_rows

    return Outcome.all_of(
        Outcome.compare(emb(idx).data, E[idx], atol=1e-12),
        Outcome.compare(tt_embedding_rows(cores, idx, backend="numba"), E[idx], atol=1e-12),
        Outcome.compare(tt_embedding_rows(cores, idx, backend="numpy"), E[idx], atol=1e-12),
        Outcome(True, {"params_tt": emb.num_parameters(), "params_dense": E.size}))


@register_check("multilinear-attention-tucker", "Ma et al.'s single-block attention is a Tucker "
                "product with a diagonal core; h blocks with shared factors form a BTD",
                section="6.3", implements=[f"{_BT}.single_block_attention",
                                           f"{_BT}.MultiLinearAttention"])
def _mla_tucker(rng, quick):
    from refimpl.decomposition.block_term import MultiLinearAttention, single_block_attention
    from refimpl.decomposition.cp_tucker import tucker_to_full

    N, R = 4, 3
    Q, K, V = (rng.standard_normal((1, N, R)) for _ in range(3))
    g = rng.standard_normal(R)
    core = np.zeros((R, R, R))
    core[np.arange(R), np.arange(R), np.arange(R)] = g
    T = single_block_attention(Q, K, V, g).data[0]
    mla = MultiLinearAttention(d_model=6, seq_len=N, num_blocks=3, rank=R, rng=rng)
    x = rng.standard_normal((1, N, 6))
    Qp, Kp, Vp = (x[0] @ W.data.T for W in (mla.W_q, mla.W_k, mla.W_v))
    blocks = []
    for j in range(3):
        cj = np.zeros((R, R, R))
        cj[np.arange(R), np.arange(R), np.arange(R)] = mla.cores.data[j]
        blocks.append(tucker_to_full(cj, [Qp, Kp, Vp]))
    ref = (sum(blocks) / 3).reshape(N, N * N) @ mla.W_o.data.T
    return Outcome.all_of(
        Outcome.compare(T, tucker_to_full(core, [Q[0], K[0], V[0]]), atol=1e-12),
        Outcome.compare(mla(x, x, x).data[0], ref, atol=1e-12),
        Outcome(True, {"params_mla": mla.num_parameters(), "params_mha": 4 * 6 * 6}),
        detail="G ×1 Q ×2 K ×3 V with diagonal G; (1/h)Σ_j T_j then SplitConcat and W^O")


@register_check("west-optimal", "WEST: per-block truncated SVD is the optimal E ≈ C D with "
                "D block-diagonal", section="6.2", implements=[
                    "refimpl.decomposition.block_diagonal.west_factorize"])
def _west(rng, quick):
    from refimpl.decomposition.block_diagonal import block_diag

    E = rng.standard_normal((40, 12))
    C, D, _ = west_factorize(E, 6, 3)
    err = np.linalg.norm(E - C @ D)
    best_other = np.inf
    for _ in range(50):
        Dr = block_diag([rng.standard_normal((2, 4)) for _ in range(3)])
        Cr = np.linalg.lstsq(Dr.T, E.T, rcond=None)[0].T
        best_other = min(best_other, np.linalg.norm(E - Cr @ Dr))
    return Outcome(err <= best_other + 1e-12, {"west_err": err, "best_random_D_err": best_other})


@register_check("dsoftmax-block-sparse", "differentiated softmax equals a full softmax with "
                "a block-sparse output matrix", section="6.2", implements=[
                    "refimpl.decomposition.block_diagonal.DifferentiatedSoftmax"])
def _dsoftmax(rng, quick):
    parts = frequency_partition(rng.integers(0, 1000, 60), [10, 20, 30])
    ds = DifferentiatedSoftmax(parts, [16, 8, 4], rng=rng)
    h = rng.standard_normal((5, 28))
    return Outcome.compare(ds(h).data, h @ dsoftmax_dense_weight(ds).T + ds.c.data, atol=1e-12,
                           params=ds.num_parameters(), params_full=ds.num_parameters_full())


# ------------------------------------------------------------------ claims in miniature
def _sentiment(quick):
    """The shared sentiment task. Size override: vocabulary 1000 in both modes (the quick
    preset's; the full one has 3000), because the TT-embedding and BTD claims reshape the
    (V, 32) embedding as a (10, 10, 10) × (2, 4, 4) TT/BT-matrix, which needs V = 1000."""
    from refimpl.data import load_task

    return load_task("sentiment", quick=quick, rng=0, vocab_size=1000)


def _fit(model, data, *, epochs, lr):
    """The claims' training: :func:`refimpl.nn.fit` (Adam on cross-entropy, batches of 64
    shuffled with seed 0, global-norm clipping at 5; no validation)."""
    from refimpl.nn import fit

    if hasattr(data, "X_train"):
        data = (data.X_train, data.len_train, data.y_train)
    return fit(model, data, epochs=epochs, lr=lr, batch_size=64, rng=0, clip_norm=5.0,
               progress=False, blas_threads=None)


@register_claim("tt-embedding-compression", "TT-embedding compresses the embedding by large "
                "factors with little loss (Khrulkov et al. 2019)", section="6.3",
                implements=[f"{_TT}.TTEmbedding"])
@_single_thread_blas
def _claim_tt_embedding(rng, quick):
    from refimpl.nn import Embedding

    task = _sentiment(quick)
    V, D = len(task.vocab), 32
    # quick: on the shared task's 1500 sentences the TT-embedding model learns more slowly than
    # the dense one; both test-accuracy curves plateau by epoch ~10 (seeds 0, 1)
    epochs = 10 if quick else 8

    def run(emb):
        # the 1-layer tanh RNN of Eq. (62) with the embedding swapped for ``emb``
        model = lr.stacked_rnn_classifier(V, D, 32, 1, task.n_classes, rng=0)
        model.embedding = emb
        _fit(model, task, epochs=epochs, lr=1e-2)
        return evaluate_accuracy(model, task.X_test, task.len_test, task.y_test)

    dense = Embedding(V, D, rng=0)
    dense.W.data *= 0.3  # N(0, 0.3²) rows
    acc_dense = run(dense)
    res = {"acc_dense": acc_dense, "emb_params_dense": V * D}
    ok = True
    for rank in ((4,) if quick else (4, 8)):
        tt = TTEmbedding(V, (10, 10, 10), (2, 4, 4), rank=rank, rng=0)
        acc_tt = run(tt)
        ratio = V * D / tt.num_parameters()
        res.update({f"acc_tt_r{rank}": acc_tt, f"emb_params_tt_r{rank}": tt.num_parameters(),
                    f"compression_r{rank}": ratio})
        ok &= bool(ratio >= 10 and acc_dense - acc_tt <= 0.02)
    return Outcome(bool(np.isfinite(acc_dense) and acc_dense > 0.5), res,
                   "1-layer tanh RNN on make_sentiment (V=1000, D=32 = TT (10,10,10)×(2,4,4)), "
                   "trained from scratch; reproduced = ≥10× and accuracy drop ≤ 2 points",
                   reproduced=ok)


@register_claim("btd-fewer-params-than-tt", "block-term decomposition needs fewer parameters "
                "than TT for the same approximation error (Ye et al. 2018)", section="6.3",
                implements=[f"{_BT}.btd_als", f"{_TT}.tt_svd"])
@_single_thread_blas
def _claim_btd_vs_tt(rng, quick):
    from refimpl.nn import BowClassifier

    ms, ns = (10, 10, 10), (2, 4, 4)

    def as_tensor(W):  # (1000, 32) -> TT/BT-matrix tensor (m_1 n_1, m_2 n_2, m_3 n_3)
        return W.reshape(ms + ns).transpose(0, 3, 1, 4, 2, 5).reshape(20, 40, 40)

    def curves(T):
        normT = np.linalg.norm(T)
        tt_pts = []
        for r in range(1, 41):
            cores = tt_svd(T, max_rank=r)
            tt_pts.append((tt_num_params(cores),
                           np.linalg.norm(tt_to_full(cores) - T) / normT))
        bt_pts = []
        for R in ((2, 3, 4, 6, 8) if quick else (2, 3, 4, 5, 6, 8, 10, 12)):
            for N in (1, 2, 4):
                Rk = tuple(min(R, s) for s in T.shape)
                _, _, errs = btd_als(T, Rk, N, n_iter=8 if quick else 30)
                bt_pts.append((btd_num_params(T.shape, Rk, N), errs[-1]))
        return tt_pts, bt_pts

    def params_for(pts, target):
        ok = [p for p, e in pts if e <= target]
        return min(ok) if ok else np.inf

    # (a) a smooth matrix: Gaussian kernel between 1000 and 32 points on [0, 1]
    u, v = np.linspace(0, 1, 1000)[:, None], np.linspace(0, 1, 32)[None, :]
    tt_pts, bt_pts = curves(as_tensor(np.exp(-(u - v) ** 2 / (2 * 0.1 ** 2))))
    res, wins, targets = {}, 0, (0.3, 0.1, 0.03)
    for t in targets:
        p_tt, p_bt = params_for(tt_pts, t), params_for(bt_pts, t)
        res[f"tt_params@{t}"], res[f"btd_params@{t}"] = p_tt, p_bt
        wins += int(p_bt < p_tt)
    # (b) a trained weight: the embedding of a bag-of-words sentiment classifier
    task = _sentiment(quick)
    model = BowClassifier(vocab_size=len(task.vocab), d_emb=32, n_classes=task.n_classes, d_hidden=32, rng=0)
    _fit(model, task, epochs=3, lr=1e-2)
    tt_e, bt_e = curves(as_tensor(model.embedding.W.data))
    res["emb_tt_params@0.5"] = params_for(tt_e, 0.5)
    res["emb_btd_params@0.5"] = params_for(bt_e, 0.5)
    res["emb_best_btd_err"] = min(e for _, e in bt_e)
    return Outcome(True, {**res, "dense_params": 32000},
                   "1000×32 matrices as (20,40,40) tensors; fewest params reaching a relative "
                   "error. Verdict on (a) a smooth kernel matrix: BTD smaller at every target. "
                   "(b) emb_*: a trained, near full-rank embedding (reported, not the verdict)",
                   reproduced=wins == len(targets))


_JOINT_SVD_CACHE: dict = {}


def _joint_svd_experiment(quick):
    """Dense 2-layer RNN, joint-SVD compression (~3×) + 1 epoch fine-tuning, the same
    projected architecture trained from random init (Sak et al.); memoised per ``quick``
    (deterministic: fixed seeds), shared by two claims."""
    if quick in _JOINT_SVD_CACHE:
        return _JOINT_SVD_CACHE[quick]
    accuracy = evaluate_accuracy

    def train_classifier(model, X, L, y, *, epochs, lr):
        return _fit(model, (X, L, y), epochs=epochs, lr=lr)

    task = _sentiment(quick)
    V = len(task.vocab)
    N = 48
    # quick: the dense model's test accuracy on the shared task's 1500 sentences plateaus by
    # epoch 5 (seeds 0, 1; 3 epochs leave it at ~0.75)
    epochs = 5 if quick else 6
    dense = lr.stacked_rnn_classifier(V, 16, N, 2, task.n_classes, rng=0)
    train_classifier(dense, task.X_train, task.len_train, task.y_train, epochs=epochs, lr=1e-2)
    acc_dense = accuracy(dense, task.X_test, task.len_test, task.y_test)

    def compressed_params(m, names):
        params = dict(m.named_parameters())
        return int(sum(params[k].size for k in names))

    # W_h^1, W_x^1, W_h^2, W_x^2 of Eqs. (62)-(63) in nn's names
    dense_names = ["rnn.W_hh_l0", "rnn.W_ih_l1", "rnn.W_hh_l1", "fc.W"]
    # ranks for ~3x fewer recurrent + inter-layer parameters: r (2N + M) = N (N + M) / 3
    r1 = int(round(N * (N + N) / 3 / (3 * N)))
    r2 = int(round(N * (N + task.n_classes) / 3 / (2 * N + task.n_classes)))
    proj = lr.ProjectedRNNClassifier.from_dense(dense, [r1, r2])
    acc_svd0 = accuracy(proj, task.X_test, task.len_test, task.y_test)
    train_classifier(proj, task.X_train, task.len_train, task.y_train, epochs=1, lr=3e-3)
    acc_svd = accuracy(proj, task.X_test, task.len_test, task.y_test)
    # fair reference: the dense model also gets the extra epoch
    import copy

    dense1 = copy.deepcopy(dense)
    train_classifier(dense1, task.X_train, task.len_train, task.y_train, epochs=1, lr=3e-3)
    acc_dense1 = accuracy(dense1, task.X_test, task.len_test, task.y_test)
    # Sak et al.: the same architecture trained from random init (same total epochs)
    sak = lr.ProjectedRNNClassifier(V, 16, [N, N], [r1, r2], task.n_classes, rng=0)
    train_classifier(sak, task.X_train, task.len_train, task.y_train, epochs=epochs + 1,
                     lr=1e-2)
    acc_sak = accuracy(sak, task.X_test, task.len_test, task.y_test)
    p_dense = compressed_params(dense, dense_names)
    p_proj = compressed_params(proj, ["P1", "Z_h1", "Z_x1", "P2", "Z_h2", "Z_x2"])
    W_hs = [W_h for W_h, _, _ in lr.rnn_layer_matrices(dense)]
    ev = [float(np.sum(np.linalg.svd(W_h, compute_uv=False)[:r] ** 2) / np.sum(W_h ** 2))
          for W_h, r in zip(W_hs, (r1, r2))]
    out = {"acc_dense": acc_dense, "acc_dense_plus1": acc_dense1,
           "acc_jointsvd_no_ft": acc_svd0,
           "acc_jointsvd_ft1": acc_svd, "acc_projection_random_init": acc_sak,
           "ranks": f"{r1},{r2}", "explained_var": f"{ev[0]:.2f},{ev[1]:.2f}",
           "rec_params_dense": p_dense, "rec_params_joint": p_proj,
           "ratio": p_dense / p_proj}
    _JOINT_SVD_CACHE[quick] = out
    return out


@register_claim("joint-svd-3x", "joint SVD keeps a recurrent model with ~3× fewer parameters "
                "near its accuracy (Prabhavalkar et al. 2016)", section="6.1",
                implements=[f"{_LR}.joint_svd", f"{_LR}.ProjectedRNNClassifier"])
@_single_thread_blas
def _claim_joint_svd(rng, quick):
    r = _joint_svd_experiment(quick)
    return Outcome(bool(r["acc_dense"] > 0.5), dict(r),
                   "2-layer tanh RNN, N=48; params of W_h, W_x only; fine-tune 1 epoch (dense "
                   "too); reproduced = ratio ≥ 2.5 and drop ≤ 2 points vs the better dense",
                   reproduced=bool(r["ratio"] >= 2.5 and max(r["acc_dense"], r["acc_dense_plus1"])
                                   - r["acc_jointsvd_ft1"] <= 0.02))


@register_claim("svd-init-beats-random-projection", "SVD initialisation of the shared "
                "projection works better than training it from scratch (Sak et al. 2014 vs "
                "Prabhavalkar et al. 2016)", section="6.1",
                implements=[f"{_LR}.ProjectedRNNClassifier"])
@_single_thread_blas
def _claim_svd_init(rng, quick):
    r = _joint_svd_experiment(quick)
    keys = ("acc_jointsvd_ft1", "acc_projection_random_init", "ranks", "ratio")
    return Outcome(bool(r["acc_dense"] > 0.5), {k: r[k] for k in keys},
                   "same projected architecture and total epochs; reproduced = SVD-initialised "
                   "accuracy > random-init accuracy (one seed: a small margin is noise)",
                   reproduced=bool(r["acc_jointsvd_ft1"] > r["acc_projection_random_init"]))


# ------------------------------------------------------------------ erratum
@register_equation(63, "survey text writes the jointly compressed inter-layer matrix as "
                   "W_l^x; it must be W_x^l (Eq. 63), the matrix multiplying h_t^l",
                   section="6.1", name="erratum-inter-layer-index", erratum=True,
                   implements=[f"{_LR}.joint_svd"])
def _erratum_inter_layer_index(rng, quick):
    # layer l = 1 of a 2-layer RNN with E = 5 inputs and N_1 = N_2 = 6 units
    model = lr.stacked_rnn_classifier(20, 5, 6, 2, 3, rng=rng)
    W_h1 = model.rnn.W_hh_l0.data      # W_h^1 (N_1, N_1)
    W_x_correct = model.rnn.W_ih_l1.data  # W_x^1 (N_2, N_1): multiplies h_t^1 (Eq. 63)
    W_x_survey = model.rnn.W_ih_l0.data   # "W_l^x" read with Eq. (62)'s layer index: W_x^{l-1}
    _, _, P = lr.joint_svd(W_h1, W_x_correct, 6)
    Z_x = W_x_correct @ P.T
    err_correct = float(np.linalg.norm(Z_x @ P - W_x_correct))
    try:
        lr.joint_svd(W_h1, W_x_survey, 6)
        survey_ok = True
    except ValueError:
        survey_ok = False  # W_x^{l-1} has N_{l-1} = 5 columns, P^l has N_l = 6: cannot share P^l
    return Outcome(err_correct < 1e-12 and not survey_ok,
                   {"err_correct_full_rank": err_correct,
                    "survey_reading_shape": str(W_x_survey.shape),
                    "P_shape": str(P.shape)},
                   "W_x^l = Z_x^l P^l holds exactly at full rank; W_x^{l-1} cannot be written "
                   "Z P^l (column count N_{l-1} ≠ N_l)")
