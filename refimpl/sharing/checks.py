"""Registered checks for Survey §5.2 (parameter sharing): Eq. (59) (low-rank factors shared
across recurrent layers), Eqs. (60)–(61) (rare-word embeddings as sparse combinations of
frequent-word embeddings) and one claim in miniature.

Every check takes ``(rng, quick)`` and returns an :class:`refimpl.check.Outcome`; the chapter
notebook ``chapters/05_sharing.ipynb`` and ``tests/test_check_registry.py`` run them.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.optimize
import scipy.sparse

from refimpl.check import Outcome, register_check, register_claim, register_equation
from refimpl.nn import GradcheckError, Tensor, gradcheck
from refimpl.sharing.embeddings import (
    kkt_residual,
    rare_word_embedding,
    sparse_code,
    sparse_code_embeddings,
    sparse_code_objective,
    sparse_embedding_bits,
)
from refimpl.sharing.recurrent import SharedLowRankRNN, shared_low_rank_num_params

_EMB = "refimpl.sharing.embeddings"
_REC = "refimpl.sharing.recurrent"


def _single_thread_blas(func):
    """Small matrices: one BLAS thread avoids spinning on the shared 2-core machine."""

    @functools.wraps(func)
    def wrapper(rng, quick):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return func(rng, quick)

    return wrapper


# ------------------------------------------------------------------ Eq. (59)
def _rnn_by_hand(model: SharedLowRankRNN, x: np.ndarray) -> np.ndarray:
    """Eq. (59) as explicit NumPy loops over layers, steps and batch rows (no tape)."""
    B, T, _ = x.shape
    inp = x
    for l in range(1, model.num_layers + 1):  # noqa: E741
        W_a, W_b, U_a, U_b, b = (p.data for p in model.factors(l))
        out = np.zeros((B, T, W_a.shape[0]))
        for i in range(B):
            h = np.zeros(W_a.shape[0])
            for t in range(T):
                h = np.tanh(W_a @ (W_b @ inp[i, t]) + U_a @ (U_b @ h) + b)
                out[i, t] = h
        inp = out
    return inp


@register_equation(59, "low-rank recurrent layers with W_b^l = U_b^{l-1}: forward = explicit "
                   "loop, gradcheck, tied factor gets the sum of both uses' gradients, exact "
                   "parameter counts", section="5.2",
                   implements=[f"{_REC}.SharedLowRankRNN", f"{_REC}.shared_low_rank_num_params"])
@_single_thread_blas
def _eq59_shared_low_rank(rng, quick):
    D, N, r = 8, [16, 16, 12], [4, 4, 3]
    seed = int(rng.integers(2**31))
    shared = SharedLowRankRNN(D, N, r, share=True, rng=seed)
    x = rng.standard_normal((3, 5, D))
    out, _ = shared(x)
    fwd = Outcome.compare(out.data, _rnn_by_hand(shared, x), atol=1e-12)

    # gradient of the tied factor = sum of the gradients of its two uses: copy the values into
    # an unshared model (W_b^l := U_b^{l-1} as separate arrays) and compare
    unshared = SharedLowRankRNN(D, N, r, share=False, rng=seed)
    for name, p in unshared.named_parameters():
        l = int(name.rsplit("_l", 1)[1])  # noqa: E741
        src = f"U_b_l{l - 1}" if name.startswith("W_b") and l >= 2 else name
        p.data = getattr(shared, src).data.copy()
    out_u, _ = unshared(x)
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    out_u.backward(dout)
    same_out = Outcome.compare(out_u.data, out.data, atol=0.0)
    g_shared = np.concatenate([shared.U_b_l1.grad.ravel(), shared.U_b_l2.grad.ravel()])
    g_sum = np.concatenate([(unshared.U_b_l1.grad + unshared.W_b_l2.grad).ravel(),
                            (unshared.U_b_l2.grad + unshared.W_b_l3.grad).ravel()])
    grad = Outcome.compare(g_shared, g_sum, atol=1e-12)
    tied = shared.W_b_l2 is shared.U_b_l1 and shared.W_b_l3 is shared.U_b_l2

    # parameter counts: formula vs counting stored arrays (full rank: the dense products)
    n_sh, n_un = shared.num_parameters(), unshared.num_parameters()
    n_full = sum(Wl.size + Ul.size + N[l - 1] for l in range(1, 4)  # noqa: E741
                 for Wl, Ul in [shared.dense_weights(l)])
    f_sh = shared_low_rank_num_params(D, N, r, share=True)
    f_un = shared_low_rank_num_params(D, N, r, share=False)
    f_full = shared_low_rank_num_params(D, N, r, full_rank=True)
    counts_ok = (n_sh, n_un, n_full) == (f_sh, f_un, f_full) and f_un - f_sh == 4 * 16 + 4 * 16

    # central-difference gradient check of a tiny shared model (tape vs finite differences)
    tiny = SharedLowRankRNN(3, [4, 3], [2, 2], share=True, rng=seed)
    names = [n for n, _ in tiny.named_parameters()]

    def fn(xt, *params):
        for n, p in zip(names, params):
            setattr(tiny, n, p)
        tiny.W_b_l2 = tiny.U_b_l1                     # keep the tie on the checked tensors
        return tiny(xt)[0]

    try:
        gc = gradcheck(fn, [rng.standard_normal((2, 3, 3))] + [p.data for p in tiny.parameters()],
                       rng=0)
        gc_ok, gc_err = True, gc["max_abs_err"]
    except GradcheckError as e:
        gc_ok, gc_err = False, str(e)
    ok = fwd.passed and same_out.passed and grad.passed and tied and counts_ok and gc_ok
    return Outcome(ok, {"fwd_max_abs_err": fwd.numbers["max_abs_err"],
                        "grad_sum_max_abs_err": grad.numbers["max_abs_err"],
                        "gradcheck_max_abs_err": gc_err,
                        "params_shared": n_sh, "params_unshared": n_un, "params_full": n_full},
                   "3 layers (D=8, N=16,16,12, r=4,4,3); W_b^l and U_b^{l-1} are both "
                   "(r_{l-1}, N_{l-1}): the survey's tie is dimensionally consistent")


# ------------------------------------------------------------------ Eq. (60)
@register_equation(60, "rare-word embedding = Σ_j x_j U_j; CSR storage bits counted from "
                   "scipy.sparse arrays", section="5.2",
                   implements=[f"{_EMB}.rare_word_embedding", f"{_EMB}.sparse_code_embeddings",
                               f"{_EMB}.sparse_embedding_bits"])
@_single_thread_blas
def _eq60_rare_word_embedding(rng, quick):
    E, nB, V = 24, 12, 30
    W = rng.standard_normal((V, E))
    frequent = np.sort(rng.choice(V, nB, replace=False))
    W_hat, codes, rare = sparse_code_embeddings(W, frequent, 0.3, 0.5, 0.5)
    U = W[frequent].T                                   # (E, |B|)
    by_sum = np.zeros((rare.size, E))
    for i in range(rare.size):                          # Σ_j x_j U_j, term by term
        for j in range(nB):
            by_sum[i] += codes[i, j] * U[:, j]
    emb = Outcome.compare(rare_word_embedding(codes.T, U).T, by_sum, atol=1e-12)
    table = Outcome.compare(W_hat[rare], by_sum, atol=1e-12)
    keep = Outcome.compare(W_hat[frequent], W[frequent], atol=0.0)
    # storage: count the bits of the arrays scipy.sparse actually stores
    csr = scipy.sparse.csr_matrix(codes)
    nnz = int(csr.nnz)
    bits = sparse_embedding_bits(V, nB, E, nnz, float_bits=32)
    counted = (nB * E * 32 + csr.data.size * 32 + csr.indices.size * int(np.ceil(np.log2(nB)))
               + csr.indptr.size * int(np.ceil(np.log2(nnz + 1))))
    ok = emb.passed and table.passed and keep.passed and bits["total_bits"] == counted
    return Outcome(ok, {"max_abs_err": emb.numbers["max_abs_err"], "nnz": nnz,
                        "mean_nnz_per_rare_word": nnz / rare.size,
                        "dense_bits": bits["dense_bits"], "total_bits": bits["total_bits"],
                        "ratio": bits["ratio"]},
                   f"|V|={V}, |B|={nB}, E={E}; bits recounted from the CSR arrays")


# ------------------------------------------------------------------ Eq. (61)
def _sparse_code_scipy(U, a, alpha, beta, gamma):
    """Eq. (61) as a smooth QP solved by SLSQP: x = p − q, p, q ≥ 0, 1ᵀx − 1 = s⁺ − s⁻,
    s± ≥ 0, objective ‖U(p−q) − a‖² + α1ᵀ(p+q) + γ1ᵀq + β(s⁺+s⁻) (same optimal value)."""
    n = U.shape[1]

    def f(z):
        p, q = z[:n], z[n:2 * n]
        r = U @ (p - q) - a
        return r @ r + alpha * (p.sum() + q.sum()) + gamma * q.sum() + beta * (z[-2] + z[-1])

    def g(z):
        r = 2.0 * U.T @ (U @ (z[:n] - z[n:2 * n]) - a)
        return np.concatenate([r + alpha, -r + alpha + gamma, [beta, beta]])

    J = np.concatenate([np.ones(n), -np.ones(n), [-1.0, 1.0]])[None, :]
    cons = {"type": "eq", "fun": lambda z: J @ z - 1.0, "jac": lambda z: J}
    res = scipy.optimize.minimize(f, np.zeros(2 * n + 2), jac=g, method="SLSQP",
                                  bounds=[(0.0, None)] * (2 * n + 2), constraints=[cons],
                                  options={"ftol": 1e-15, "maxiter": 2000})
    return res.x[:n] - res.x[n:2 * n], float(res.fun)


@register_equation(61, "sparse code of a rare word: ADMM minimiser meets the KKT conditions and "
                   "equals scipy SLSQP on the exact QP; α, β, γ limits", section="5.2",
                   implements=[f"{_EMB}.sparse_code", f"{_EMB}.sparse_code_objective",
                               f"{_EMB}.kkt_residual"])
@_single_thread_blas
def _eq61_sparse_code(rng, quick):
    # objective against a hand computation
    U0 = np.array([[1.0, 0.0], [0.0, 2.0]])
    a0, x0 = np.array([1.0, 1.0]), np.array([0.5, -1.0])
    # Ux − a = (−0.5, −3); 9.25 + α·1.5 + β|−0.5 − 1| + γ·1 with α, β, γ = 0.1, 0.2, 0.3
    hand = 9.25 + 0.1 * 1.5 + 0.2 * 1.5 + 0.3 * 1.0
    obj = Outcome.compare(sparse_code_objective(x0, U0, a0, 0.1, 0.2, 0.3), hand, atol=1e-14)

    n_problems = 4 if quick else 12
    err_x = err_f = kkt = 0.0
    for _ in range(n_problems):
        E, n = 8, 5
        U = rng.standard_normal((E, n))
        a = rng.standard_normal(E)
        alpha, beta, gamma = rng.uniform(0.05, 1.0, 3)
        x = sparse_code(U, a, alpha, beta, gamma)
        x_sp, f_sp = _sparse_code_scipy(U, a, alpha, beta, gamma)
        err_x = max(err_x, float(np.abs(x - x_sp).max()))
        err_f = max(err_f, sparse_code_objective(x, U, a, alpha, beta, gamma) - f_sp)
        kkt = max(kkt, kkt_residual(x, U, a, alpha, beta, gamma))
    # limits: α large -> 0; β large -> 1ᵀx = 1; γ large -> x >= 0
    U = rng.standard_normal((6, 10))
    A = rng.standard_normal((6, 3))
    alpha_max = float(np.abs(2.0 * U.T @ A).max())      # x = 0 is optimal once α ≥ ‖2Uᵀa‖∞+β
    x_alpha = sparse_code(U, A, alpha_max + 1.0, 1.0, 0.0)
    x_beta = sparse_code(U, A, 0.01, 1e3, 0.0)
    x_gamma = sparse_code(U, A, 0.01, 0.0, 1e3)
    limits = (np.all(x_alpha == 0) and float(np.abs(x_beta.sum(0) - 1).max()) < 1e-8
              and float(x_gamma.min()) >= 0.0)
    ok = obj.passed and err_x < 1e-6 and err_f < 1e-9 and kkt < 1e-7 and limits
    return Outcome(ok, {"objective_err": obj.numbers["max_abs_err"],
                        "max_abs_err_vs_scipy": err_x, "objective_gap_vs_scipy": err_f,
                        "max_kkt_residual": kkt, "beta_sum_err": float(
                            np.abs(x_beta.sum(0) - 1).max()),
                        "gamma_min_x": float(x_gamma.min()), "problems": n_problems},
                   "ADMM + polish vs SLSQP on x = p − q with slack for |1ᵀx − 1|")


# ------------------------------------------------------------------ claim
@register_claim("sparse-rare-word-embeddings", "rare-word embeddings as sparse combinations of "
                "frequent-word embeddings keep the model's quality at a fraction of the "
                "embedding size (Chen et al. 2016)", section="5.2",
                implements=[f"{_EMB}.sparse_code_embeddings", f"{_EMB}.sparse_embedding_bits"])
@_single_thread_blas
def _claim_sparse_rare_words(rng, quick):
    from refimpl.data import make_sentiment
    from refimpl.nn import RNNClassifier, evaluate_accuracy, fit

    task = make_sentiment(n_train=1500 if quick else 4000, vocab_size=1000 if quick else 3000,
                          rng=0)
    V, E, n_frequent = len(task.vocab), 32, 32
    alpha, beta, gamma = 0.1, 1.0, 1.0
    model = RNNClassifier(vocab_size=V, d_emb=E, d_hidden=32, n_classes=task.n_classes, rng=0)
    model.embedding.W.data *= 0.1        # small init: trained structure dominates the rows
    fit(model, (task.X_train, task.len_train, task.y_train), epochs=5, lr=1e-2, rng=0,
        progress=False)

    def acc():
        return evaluate_accuracy(model, task.X_test, task.len_test, task.y_test)

    acc_full = acc()
    W = model.embedding.W.data.copy()
    counts = np.bincount(task.X_train.ravel(), minlength=V)
    frequent = np.sort(np.argsort(-counts, kind="stable")[:n_frequent])  # incl. <pad>
    W_hat, codes, rare = sparse_code_embeddings(W, frequent, alpha, beta, gamma, eps_abs=1e-5,
                                                eps_rel=1e-5, max_iter=3000)
    nnz = int(np.count_nonzero(codes))
    bits = sparse_embedding_bits(V, n_frequent, E, nnz)
    model.embedding.W.data = W_hat
    acc_sparse = acc()
    W_unk = W.copy()
    W_unk[rare] = W[1]                   # baseline: every rare word -> the <unk> row
    model.embedding.W.data = W_unk
    acc_unk = acc()
    # ablation: each rare word -> its nearest frequent word (a 1-sparse code, no optimisation)
    d2 = ((W[rare][:, None, :] - W[frequent][None, :, :]) ** 2).sum(-1)  # (n_rare, |B|)
    W_nn = W.copy()
    W_nn[rare] = W[frequent[np.argmin(d2, axis=1)]]
    model.embedding.W.data = W_nn
    acc_nn = acc()
    model.embedding.W.data = W
    reproduced = bool(acc_full - acc_sparse <= 0.01 and bits["ratio"] >= 2.0
                      and acc_sparse > acc_unk)
    return Outcome(bool(np.isfinite(acc_full) and acc_full > 0.55 and nnz > 0),
                   {"acc_full": acc_full, "acc_sparse_codes": acc_sparse,
                    "acc_rare_as_unk": acc_unk, "acc_rare_as_nearest_frequent": acc_nn, "V": V, "n_frequent": n_frequent,
                    "nnz_per_rare_word": nnz / max(rare.size, 1),
                    "embedding_compression": bits["ratio"]},
                   f"LSTM classifier on make_sentiment (E={E}), trained with the full table; "
                   f"then the {V - n_frequent} rarest rows are replaced by Eq. (60) codes over "
                   f"the {n_frequent} most frequent (α, β, γ = {alpha:g}, {beta:g}, {gamma:g}), "
                   "no retraining; reproduced = drop ≤ 1 point at ≥ 2× fewer embedding bits "
                   "and better than mapping rare words to <unk> (the nearest-frequent-word "
                   "ablation is reported, not required)", reproduced=reproduced)


# ------------------------------------------------------------------ HashedNets (§5.2)
_HASH = "refimpl.sharing.hashing"
_HK = "refimpl.kernels.hashing"

# xxhash.xxh32_intdigest(struct.pack("<II", i, j), seed=s) from the xxhash package (4.1.0);
# tests/kernels/test_hashing.py recomputes them with the package itself
_XXH32_VECTORS = [((0, 0, 0), 3736311059), ((1, 2, 0), 1762362331), ((3, 7, 42), 2023103776),
                  ((2**32 - 1, 2**32 - 1, 2**32 - 1), 2685863586)]


@register_check("hashednets", "HashedNets V_ij = ξ(i,j) w[h(i,j)]: xxHash32 equals the reference "
                "vectors on both backends; y = V x and dw (bucket sums of ξ·dL/dV) without "
                "materialising V equal the dense products; gradcheck; exact parameter/bit "
                "count incl. the two seeds; same seed, same matrix", section="5.2",
                implements=[f"{_HASH}.hashed_matrix", f"{_HASH}.hash_seeds",
                            f"{_HASH}.HashedLinear", f"{_HK}.xxh32_pair",
                            f"{_HK}.hashed_matmul", f"{_HK}.hashed_matmul_backward"])
@_single_thread_blas
def _check_hashednets(rng, quick):
    from refimpl.kernels.hashing import hashed_matmul_backward, xxh32_pair
    from refimpl.sharing.hashing import HashedLinear, hash_seeds, hashed_matrix

    idx = np.array([v[0] for v in _XXH32_VECTORS], dtype=np.uint64)
    want = np.array([v[1] for v in _XXH32_VECTORS], dtype=np.uint32)
    xxh_ok = all(np.array_equal(xxh32_pair(idx[t:t + 1, 0], idx[t:t + 1, 1], int(idx[t, 2]),
                                           backend=b), want[t:t + 1])
                 for b in ("numba", "numpy") for t in range(len(want)))

    m, n, K, B = 12, 10, 7, 5
    seed = int(rng.integers(2**32))
    layer = HashedLinear(n, m, K, seed=seed, rng=int(rng.integers(2**31)))
    V = layer.virtual_weight()                                   # (m, n)
    w = layer.w.data
    # every entry is ±w[k] with k = h(i, j): recompute bucket and sign from the hashes
    sb, ss = hash_seeds(seed)
    ii, jj = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    k = xxh32_pair(ii, jj, sb).astype(np.int64) % K
    xi = 1.0 - 2.0 * (xxh32_pair(ii, jj, ss) & 1)
    entries_ok = np.array_equal(V, xi * w[k])
    same_seed = np.array_equal(hashed_matrix(w, (m, n), seed, backend="numpy"),
                               hashed_matrix(w, (m, n), seed, backend="numba")) and \
        np.array_equal(hashed_matrix(w, (m, n), seed), V)

    X = rng.standard_normal((B, n))
    y = layer(X)
    fwd = Outcome.compare(y.data, X @ V.T + layer.b.data, atol=1e-12 * np.abs(X).sum(1).max()
                          * np.abs(w).max() + 1e-15)
    dY = rng.standard_normal((B, m))
    y.backward(dY)
    dV = dY.T @ X                                                # (m, n): dense dL/dV
    dw_dense = np.bincount(k.ravel(), weights=(xi * dV).ravel(), minlength=K)
    scale = np.abs(dY).sum(0).max() * np.abs(X).sum(0).max()
    dw = Outcome.compare(layer.w.grad, dw_dense, atol=1e-13 * scale * m * n / K + 1e-15)
    dx = Outcome.compare(hashed_matmul_backward(dY, X, w, sb, ss)[0], dY @ V,
                         atol=1e-13 * scale)

    n_params = layer.num_parameters()
    bits = layer.storage_bits(32)
    probe = HashedLinear(n, m, K, seed=seed, rng=0)

    def fn(xt, wt, bt):
        probe.w, probe.b = wt, bt                                # the checked tensors
        return probe(xt)

    try:
        gc = gradcheck(fn, [rng.standard_normal((3, n)), w, layer.b.data], rng=0)
        gc_ok, gc_err = True, gc["max_abs_err"]
    except GradcheckError as e:
        gc_ok, gc_err = False, str(e)
    counts_ok = n_params == K + m and bits == (K + m) * 32 + 64
    ok = (xxh_ok and entries_ok and same_seed and fwd.passed and dw.passed and dx.passed
          and gc_ok and counts_ok)
    return Outcome(ok, {"xxh32_vectors_ok": xxh_ok, "fwd_max_abs_err": fwd.numbers["max_abs_err"],
                        "dw_max_abs_err": dw.numbers["max_abs_err"],
                        "gradcheck_max_abs_err": gc_err, "params": n_params,
                        "dense_params": m * n + m, "bits": bits},
                   f"V is {m}×{n} from K={K} numbers; stored: w, b and two 32-bit seeds")


# ------------------------------------------------------------------ Quaternion layers (§5.3)
_QUAT = "refimpl.sharing.quaternion"


def _left_matrix(p):
    """The 4×4 real matrix L(p) with p ⊗ q = L(p) q, written out independently: (..., 4, 4)."""
    r, i, j, k = np.moveaxis(p, -1, 0)
    return np.stack([np.stack([r, -i, -j, -k], -1), np.stack([i, r, -k, j], -1),
                     np.stack([j, k, r, -i], -1), np.stack([k, -j, i, r], -1)], -2)


@register_check("quaternion", "Hamilton product: unit rules (ij = k, i² = −1, ji = −k), a hand "
                "value, = 4×4 real matrix L(p)q, |pq| = |p||q|, associativity, Re(p q̄) = p·q "
                "(the attention score); QuaternionLinear "
                "= Σ_u W_ou ⊗ x_u per unit, ¼ of a real Linear's weights, gradcheck",
                section="5.3", implements=[f"{_QUAT}.hamilton_product",
                                           f"{_QUAT}.quaternion_block_matrix",
                                           f"{_QUAT}.QuaternionLinear"])
@_single_thread_blas
def _check_quaternion(rng, quick):
    from refimpl.sharing.quaternion import QuaternionLinear, hamilton_product

    one, i, j, k = np.eye(4)
    units = (np.array_equal(hamilton_product(i, j), k) and np.array_equal(hamilton_product(j, k), i)
             and np.array_equal(hamilton_product(k, i), j)
             and np.array_equal(hamilton_product(j, i), -k)
             and all(np.array_equal(hamilton_product(u, u), -one) for u in (i, j, k)))
    # (1 + 2i + 3j + 4k)(5 + 6i + 7j + 8k) = −60 + 12i + 30j + 24k, by hand
    hand = np.array_equal(hamilton_product(np.array([1.0, 2, 3, 4]), np.array([5.0, 6, 7, 8])),
                          np.array([-60.0, 12, 30, 24]))
    p, q, s = (rng.standard_normal((50, 4)) for _ in range(3))
    pq = hamilton_product(p, q)
    eps = np.finfo(float).eps
    mag = (np.abs(p).sum(-1) * np.abs(q).sum(-1)).max()         # bound on |terms| of a sum
    matrix = Outcome.compare(pq, np.einsum("bij,bj->bi", _left_matrix(p), q), atol=8 * eps * mag)
    norm = Outcome.compare(np.linalg.norm(pq, axis=-1),
                           np.linalg.norm(p, axis=-1) * np.linalg.norm(q, axis=-1),
                           atol=16 * eps * mag)
    # quaternion attention scores: Re(p ⊗ q̄) = p·q, the real dot product of the components
    qbar = q * np.array([1.0, -1.0, -1.0, -1.0])
    dot = Outcome.compare(hamilton_product(p, qbar)[:, 0], (p * q).sum(-1), atol=8 * eps * mag)
    mag3 = mag * np.abs(s).sum(-1).max()
    assoc = Outcome.compare(hamilton_product(pq, s), hamilton_product(p, hamilton_product(q, s)),
                            atol=32 * eps * mag3)

    n_in, n_out, B = 12, 8, 3
    layer = QuaternionLinear(n_in, n_out, rng=int(rng.integers(2**31)))
    x = rng.standard_normal((B, n_in))
    y = layer(x).data
    Wq = np.stack([layer.W_r.data, layer.W_i.data, layer.W_j.data, layer.W_k.data], -1)
    xq = np.stack(np.split(x, 4, axis=-1), -1)                  # (B, in/4, 4)
    by_units = hamilton_product(Wq[None, :, :, :], xq[:, None, :, :]).sum(2)  # (B, out/4, 4)
    by_units = np.concatenate([by_units[..., c] for c in range(4)], -1) + layer.b.data
    fwd = Outcome.compare(y, by_units, atol=8 * n_in * eps * np.abs(x).max())
    weights = sum(w.size for w in (layer.W_r, layer.W_i, layer.W_j, layer.W_k))
    counts_ok = weights * 4 == n_in * n_out and layer.num_parameters() == weights + n_out

    probe = QuaternionLinear(8, 4, rng=0)

    def fn(xt, a, b, c, d, bias):
        probe.W_r, probe.W_i, probe.W_j, probe.W_k, probe.b = a, b, c, d, bias
        return probe(xt)

    try:
        gc = gradcheck(fn, [rng.standard_normal((2, 8))] + [rng.standard_normal((1, 2))
                                                            for _ in range(4)]
                       + [rng.standard_normal(4)], rng=0)
        gc_ok, gc_err = True, gc["max_abs_err"]
    except GradcheckError as e:
        gc_ok, gc_err = False, str(e)
    ok = (units and hand and matrix.passed and norm.passed and assoc.passed and fwd.passed
          and counts_ok and gc_ok and dot.passed)
    return Outcome(ok, {"unit_rules": units, "hand_value": hand,
                        "matrix_max_abs_err": matrix.numbers["max_abs_err"],
                        "norm_max_abs_err": norm.numbers["max_abs_err"],
                        "layer_max_abs_err": fwd.numbers["max_abs_err"],
                        "gradcheck_max_abs_err": gc_err, "weights": weights,
                        "real_linear_weights": n_in * n_out},
                   f"QuaternionLinear({n_in}, {n_out}): {weights} weights vs {n_in * n_out}")


# ------------------------------------------------------------------ LightRNN (§5.2)
_LRNN = "refimpl.sharing.lightrnn"


@register_check("lightrnn-allocation", "LightRNN word allocation: exact minimum-weight matching "
                "with L(w,r,c) = ℓ_r(w,r) + ℓ_c(w,c) equals brute force on tiny tables, every "
                "slot used at most once, exact cost ≤ greedy cost, hand-worked case where "
                "greedy loses", section="5.2",
                implements=[f"{_LRNN}.lightrnn_allocate", f"{_LRNN}.lightrnn_cost_matrix"])
def _check_lightrnn(rng, quick):
    import itertools

    from refimpl.sharing.lightrnn import lightrnn_allocate, lightrnn_cost_matrix

    # hand case, a 1×2 table: word 0 costs (1, 3), word 1 costs (2, 10) in columns (0, 1).
    # greedy takes the cheapest pair (0, col 0) = 1 and leaves word 1 col 1 = 10: 11;
    # the matching puts word 0 in col 1 and word 1 in col 0: 3 + 2 = 5
    row0, col0 = np.zeros((2, 1)), np.array([[1.0, 3.0], [2.0, 10.0]])
    r_e, c_e, cost_e = lightrnn_allocate(row0, col0, "exact")
    r_g, c_g, cost_g = lightrnn_allocate(row0, col0, "greedy")
    hand = (cost_e == 5.0 and cost_g == 11.0 and c_e.tolist() == [1, 0]
            and c_g.tolist() == [0, 1] and r_e.tolist() == r_g.tolist() == [0, 0])

    brute_ok, slots_ok, order_ok = True, True, True
    n_cases = 6 if quick else 20
    worst_gap = 0.0
    for t in range(n_cases):
        V, R, C = [(3, 2, 2), (4, 2, 3), (4, 3, 2), (5, 2, 3)][t % 4]
        # integer losses: every sum is exact in float64, so comparisons need no tolerance
        rl = rng.integers(0, 20, (V, R)).astype(float)
        cl = rng.integers(0, 20, (V, C)).astype(float)
        cost = lightrnn_cost_matrix(rl, cl)
        best = min(cost[np.arange(V), list(p)].sum()
                   for p in itertools.permutations(range(R * C), V))
        for method in ("exact", "greedy"):
            rows, cols, total = lightrnn_allocate(rl, cl, method)
            cells = set(zip(rows.tolist(), cols.tolist()))
            slots_ok &= len(cells) == V and rows.max() < R and cols.max() < C
            slots_ok &= total == (rl[np.arange(V), rows] + cl[np.arange(V), cols]).sum()
            if method == "exact":
                brute_ok &= total == best
                exact_total = total
            else:
                order_ok &= exact_total <= total
                worst_gap = max(worst_gap, total - exact_total)
    ok = hand and brute_ok and slots_ok and order_ok
    return Outcome(ok, {"hand_exact_cost": cost_e, "hand_greedy_cost": cost_g,
                        "brute_force_equal": brute_ok, "slots_once": slots_ok,
                        "exact_le_greedy": order_ok, "max_greedy_gap": worst_gap,
                        "cases": n_cases},
                   "integer losses: costs compared exactly")


# ------------------------------------------------------------------ Toeplitz-like (§5.2)
_TOEP = "refimpl.sharing.toeplitz"


@register_check("toeplitz-like", "Toeplitz-like matrices of displacement rank r: "
                "M = ½Σ Z_1(g_k)Z_{-1}(Jh_k) satisfies Z_1M − MZ_{-1} = GHᵀ (rank r), the FFT "
                "product equals the dense one, 2nr stored numbers; a Toeplitz matrix is "
                "rank 2 and its FFT product equals scipy.linalg.matmul_toeplitz; "
                "ToeplitzLikeLinear's FFT backward = dense, gradcheck",
                section="5.2", implements=[f"{_TOEP}.toeplitz_like_matrix",
                                           f"{_TOEP}.toeplitz_like_matvec",
                                           f"{_TOEP}.toeplitz_generators",
                                           f"{_TOEP}.displacement", f"{_TOEP}.f_circulant",
                                           f"{_TOEP}.ToeplitzLikeLinear"])
@_single_thread_blas
def _check_toeplitz_like(rng, quick):
    import scipy.linalg

    from refimpl.sharing.toeplitz import (
        displacement,
        f_circulant,
        toeplitz_generators,
        toeplitz_like_matrix,
        toeplitz_like_matvec,
    )

    eps = np.finfo(float).eps
    # hand values: Z_1([1, 2, 3]) and Z_{-1}([1, 2, 3])
    hand = (f_circulant(np.array([1.0, 2, 3]), 1).tolist() == [[1, 3, 2], [2, 1, 3], [3, 2, 1]]
            and f_circulant(np.array([1.0, 2, 3]), -1).tolist()
            == [[1, -3, -2], [2, 1, -3], [3, 2, 1]])
    n, B = 16, 3
    disp_err = fft_err = 0.0
    ranks, sizes_ok = [], True
    for r in (1, 2, 4):
        G, H = rng.standard_normal((n, r)), rng.standard_normal((n, r))
        M = toeplitz_like_matrix(G, H)
        D = displacement(M)
        tol = 4 * n * eps * (np.abs(G) @ np.abs(H).T).max() * n
        disp_err = max(disp_err, float(np.abs(D - G @ H.T).max()) / tol)
        ranks.append(int(np.linalg.matrix_rank(D)))
        X = rng.standard_normal((B, n))
        # FFT rounding: O(log n) eps per transform, scaled by the sizes of the factors
        scale = r * np.abs(G).max() * np.abs(H).max() * np.abs(X).sum(1).max() * n
        fft_err = max(fft_err, float(np.abs(toeplitz_like_matvec(G, H, X) - X @ M.T).max())
                      / (64 * np.log2(n) * eps * scale))
        sizes_ok &= G.size + H.size == 2 * n * r
    c, row = rng.standard_normal(n), rng.standard_normal(n)
    Gt, Ht = toeplitz_generators(c, row)
    T = scipy.linalg.toeplitz(c, row)
    X = rng.standard_normal((B, n))
    tscale = np.abs(T).max() * np.abs(X).sum(1).max()
    toep_dense = float(np.abs(toeplitz_like_matrix(Gt, Ht) - T).max()) / (8 * n * eps
                                                                          * np.abs(T).max())
    toep_fft = float(np.abs(toeplitz_like_matvec(Gt, Ht, X)
                            - scipy.linalg.matmul_toeplitz((c, row), X.T).T).max())
    toep_fft_rel = toep_fft / (64 * np.log2(n) * eps * tscale * n)
    toep_rank = int(np.linalg.matrix_rank(displacement(T)))

    # the layer: FFT backward (dX = dY M) against the dense matrix, and central differences
    from refimpl.sharing.toeplitz import ToeplitzLikeLinear

    layer = ToeplitzLikeLinear(n, 3, rng=int(rng.integers(2**31)))
    xl = Tensor(rng.standard_normal((B, n)), requires_grad=True)
    dY = rng.standard_normal((B, n))
    layer(xl).backward(dY)
    Ml = layer.matrix()
    dx_err = float(np.abs(xl.grad - dY @ Ml).max()) / (
        64 * np.log2(n) * eps * n * np.abs(dY).sum(1).max() * 3
        * np.abs(layer.G.data).max() * np.abs(layer.H.data).max())
    probe = ToeplitzLikeLinear(5, 2, rng=0)

    def fn(xt, Gt, Ht, bt):
        probe.G, probe.H, probe.b = Gt, Ht, bt                  # the checked tensors
        return probe(xt)

    try:
        gc = gradcheck(fn, [rng.standard_normal((2, 5)), rng.standard_normal((5, 2)),
                            rng.standard_normal((5, 2)), rng.standard_normal(5)], rng=0)
        gc_ok, gc_err = True, gc["max_abs_err"]
    except GradcheckError as e:
        gc_ok, gc_err = False, str(e)
    ok = (hand and disp_err <= 1 and fft_err <= 1 and ranks == [1, 2, 4] and sizes_ok
          and toep_dense <= 1 and toep_fft_rel <= 1 and toep_rank == 2 and dx_err <= 1
          and gc_ok and layer.num_parameters() == 2 * n * 3 + n)
    return Outcome(ok, {"hand_values": hand, "dX_err_over_tol": dx_err,
                        "gradcheck_max_abs_err": gc_err,
                        "displacement_err_over_tol": disp_err,
                        "fft_err_over_tol": fft_err, "displacement_ranks": ranks,
                        "toeplitz_displacement_rank": toep_rank,
                        "toeplitz_vs_scipy_max_abs_err": toep_fft},
                   f"n={n}, r in (1, 2, 4); errors reported as multiples of a rounding bound")


# ------------------------------------------------------------------ ALBERT (§5.3)
_ALB = "refimpl.sharing.transformers"


@register_check("albert", "ALBERT: factorised embedding (V·E + E·H) and cross-layer sharing "
                "(all / attention / FFN / hidden groups) with exact parameter counts = formula; the all-shared "
                "encoder = one layer applied L times; a shared weight's gradient = sum over the "
                "layers of an unshared copy; gradcheck", section="5.3",
                implements=[f"{_ALB}.AlbertEmbeddings", f"{_ALB}.AlbertEncoder",
                            f"{_ALB}.albert_num_params"])
@_single_thread_blas
def _check_albert(rng, quick):
    from refimpl.nn import BertEmbeddings
    from refimpl.sharing.transformers import AlbertEmbeddings, AlbertEncoder, albert_num_params

    V, E, H, Fd, L, P, heads = 50, 4, 8, 12, 3, 10, 2
    seed = int(rng.integers(2**31))
    counts, counts_ok = {}, True
    for share in ("all", "attention", "ffn", "none"):
        enc = AlbertEncoder(num_layers=L, d_model=H, num_heads=heads, d_ff=Fd, share=share,
                            rng=seed)
        want = albert_num_params(vocab_size=V, embed_dim=E, d_model=H, d_ff=Fd, num_layers=L,
                                 max_position=P, share=share)
        counts[share] = enc.num_parameters()
        counts_ok &= counts[share] == want["encoder"]
    emb = AlbertEmbeddings(vocab_size=V, embed_dim=E, d_model=H, max_position=P, rng=seed)
    bert_emb = BertEmbeddings(vocab_size=V, d_model=H, max_position=P, rng=seed)
    n_emb, n_bert = emb.num_parameters(), bert_emb.num_parameters()
    counts_ok &= n_emb == albert_num_params(vocab_size=V, embed_dim=E, d_model=H, d_ff=Fd,
                                            num_layers=L, max_position=P)["embeddings"]
    counts_ok &= n_bert == albert_num_params(vocab_size=V, embed_dim=None, d_model=H, d_ff=Fd,
                                             num_layers=L, max_position=P)["embeddings"]
    # hand count, L = 3, H = 8, F = 12: a = 4·72 + 16 = 304, f = 192 + 12 + 8 + 16 = 228
    counts_ok &= counts == {"all": 532, "attention": 304 + 3 * 228, "ffn": 3 * 304 + 228,
                            "none": 3 * 532}
    # ALBERT's hidden groups: 6 layers in 2 groups -> layers 0-2 share one layer, 3-5 another
    grouped = AlbertEncoder(num_layers=6, d_model=H, num_heads=heads, d_ff=Fd, share="all",
                            num_groups=2, rng=seed)
    gl = grouped.layers
    groups_ok = (gl[0] is gl[1] is gl[2] and gl[3] is gl[4] is gl[5] and gl[2] is not gl[3]
                 and grouped.num_parameters() == 2 * 532 == albert_num_params(
                     vocab_size=V, embed_dim=E, d_model=H, d_ff=Fd, num_layers=6,
                     max_position=P, num_groups=2)["encoder"])
    counts_ok &= groups_ok

    shared = AlbertEncoder(num_layers=L, d_model=H, num_heads=heads, d_ff=Fd, share="all",
                           rng=seed)
    x = rng.standard_normal((2, 5, H))
    one = shared.layers[0]
    loop = x
    for _ in range(L):
        loop = one(loop)
    out = shared(x)
    same = Outcome.compare(out.data, loop.data, atol=0.0)
    tied = all(layer is one for layer in shared.layers)

    # the tied weight's gradient is the sum of its L uses: an unshared copy with equal values
    unshared = AlbertEncoder(num_layers=L, d_model=H, num_heads=heads, d_ff=Fd, share="none",
                             rng=0)
    for layer in unshared.layers:
        for (_, p), (_, q) in zip(layer.named_parameters(), one.named_parameters()):
            p.data = q.data.copy()
    out_u = unshared(x)
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    out_u.backward(dout)
    g_sum = sum(layer.linear1.W.grad for layer in unshared.layers)
    grad = Outcome.compare(one.linear1.W.grad, g_sum,
                           atol=1e-13 * L * np.abs(g_sum).max() + 1e-15)
    same_u = Outcome.compare(out_u.data, out.data, atol=0.0)

    tiny = AlbertEncoder(num_layers=2, d_model=4, num_heads=2, d_ff=6, share="all", rng=seed)

    def fn(xt, W1):
        tiny.layers[0].linear1.W = W1                              # shared: every use sees it
        return tiny(xt)

    try:
        gc = gradcheck(fn, [rng.standard_normal((1, 3, 4)), tiny.layers[0].linear1.W.data],
                       rng=0)
        gc_ok, gc_err = True, gc["max_abs_err"]
    except GradcheckError as e:
        gc_ok, gc_err = False, str(e)
    ok = counts_ok and same.passed and tied and grad.passed and same_u.passed and gc_ok
    return Outcome(ok, {**{f"encoder_params_{k}": v for k, v in counts.items()},
                        "embedding_params_factorised": n_emb, "embedding_params_bert": n_bert,
                        "tied_grad_max_abs_err": grad.numbers["max_abs_err"],
                        "gradcheck_max_abs_err": gc_err},
                   f"V={V}, E={E}, H={H}, F={Fd}, L={L}")


# ------------------------------------------------------------------ character-aware models (§5.1)
_CHR = "refimpl.sharing.characters"


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def _lstm_by_hand(x, W_ih, W_hh, b_ih, b_hh):
    """One LSTM direction over the rows of ``x`` (T, D), step by step in NumPy: final h (H,)."""
    H = W_hh.shape[1]
    h, c = np.zeros(H), np.zeros(H)
    for t in range(x.shape[0]):
        a = W_ih @ x[t] + b_ih + W_hh @ h + b_hh
        i, f, g, o = _sig(a[:H]), _sig(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), _sig(a[3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
    return h


def _c2w_by_hand(m, chars, lengths):
    """C2W on each word separately: e = D_f s_f + D_b s_b + b over its real characters only."""
    Q = m.char_embedding.W.data
    lstm = m.lstm
    fw = [p.data for p in (lstm.W_ih_l0, lstm.W_hh_l0, lstm.b_ih_l0, lstm.b_hh_l0)]
    bw = [p.data for p in (lstm.W_ih_l0_reverse, lstm.W_hh_l0_reverse, lstm.b_ih_l0_reverse,
                           lstm.b_hh_l0_reverse)]
    out = []
    for w in range(chars.shape[0]):
        x = Q[chars[w, :lengths[w]]]                          # (n_w, d_char): no padding
        s_f = _lstm_by_hand(x, *fw)                           # after the last character
        s_b = _lstm_by_hand(x[::-1], *bw)                     # after the first character
        out.append(m.D_f.data @ s_f + m.D_b.data @ s_b + m.b.data)
    return np.array(out)


def _gradcheck_params(module, names, inputs_fn, rng):
    """Central differences of ``inputs_fn(module)`` w.r.t. the named parameters: (ok, err)."""
    def setp(name, value):
        obj, attr = module, name
        while "." in attr:
            head, attr = attr.split(".", 1)
            obj = getattr(obj, head)
        setattr(obj, attr, value)

    def getp(name):
        obj = module
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    def fn(*ps):
        for n, p in zip(names, ps):
            setp(n, p)
        return inputs_fn(module)

    try:
        gc = gradcheck(fn, [getp(n).data for n in names], rng=rng)
        return True, gc["max_abs_err"]
    except GradcheckError as e:
        return False, str(e)


@register_check("c2w", "C2W (Ling et al.): e = D_f s_f + D_b s_b + b from a BiLSTM over the "
                "characters equals a step-by-step NumPy LSTM over each word's real characters; "
                "each distinct word composed once per batch (same vectors and gradients as "
                "composing every token); an unseen spelling gets a vector; gradcheck; exact "
                "parameter count", section="5.1",
                implements=[f"{_CHR}.C2W", f"{_CHR}.c2w_num_params", f"{_CHR}.char_table",
                            f"{_CHR}.CharWordEmbedding"])
@_single_thread_blas
def _check_c2w(rng, quick):
    from refimpl.sharing.characters import C2W, CharWordEmbedding, c2w_num_params, char_table

    words = ["<pad>", "cat", "cats", "dog", "dogs", "a", "catalogue"]
    chars, lengths, alphabet = char_table(words)
    hand_table = (chars[5].tolist()[:3] == [1, 4 + alphabet.index("a"), 2]
                  and lengths.tolist() == [7, 5, 6, 5, 6, 3, 11])
    C = 4 + len(alphabet)
    seed = int(rng.integers(2**31))
    m = C2W(num_chars=C, d_char=5, d_hidden=6, d_word=7, rng=seed)
    e = m(chars, lengths).data
    fwd = Outcome.compare(e, _c2w_by_hand(m, chars, lengths), atol=1e-13)

    # once per batch: ids with repeats -> the distinct words are composed once and gathered
    emb = CharWordEmbedding(m, chars, lengths)
    X = rng.integers(1, len(words), (4, 6))
    out = emb(X)
    per_token = m(chars[X.ravel()], lengths[X.ravel()])       # every token composed
    # the same words through batches of a different size: BLAS may block the products
    # differently, so allow a few roundings of the vectors' magnitude
    same = Outcome.compare(out.data.reshape(-1, 7), per_token.data,
                           atol=64 * np.finfo(float).eps * np.abs(per_token.data).max())
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    g_once = [p.grad.copy() for p in m.parameters()]
    m.zero_grad()
    per_token.backward(dout.reshape(-1, 7))
    g_tok = [p.grad.copy() for p in m.parameters()]
    gmax = max(float(np.abs(g).max()) for g in g_tok)
    grads = Outcome.compare(np.concatenate([g.ravel() for g in g_once]),
                            np.concatenate([g.ravel() for g in g_tok]),
                            atol=1e-13 * X.size * gmax)
    m.zero_grad()

    # a word never seen anywhere still gets a vector, equal to composing its spelling
    new = emb.embed_words(["cogs", "tacd"], alphabet).data
    new_ok = (np.all(np.isfinite(new)) and not np.allclose(new[0], new[1])
              and np.abs(new - _c2w_by_hand(m, *char_table(["cogs", "tacd"],
                                                           alphabet=alphabet)[:2])).max()
              < 1e-13)

    tiny = C2W(num_chars=C, d_char=2, d_hidden=3, d_word=2, rng=seed)
    cs, ls = chars[[1, 4]], lengths[[1, 4]]
    gc_ok, gc_err = _gradcheck_params(tiny, ["D_f", "D_b", "b", "char_embedding.W",
                                             "lstm.W_hh_l0_reverse"],
                                      lambda mod: mod(cs, ls), 0)
    n = m.num_parameters()
    # hand count: C·5 + 2(4·6·5 + 4·6·6 + 8·6) + 2·7·6 + 7
    counts_ok = n == c2w_num_params(num_chars=C, d_char=5, d_hidden=6, d_word=7) == \
        C * 5 + 2 * (120 + 144 + 48) + 84 + 7
    ok = hand_table and fwd.passed and same.passed and grads.passed and new_ok and gc_ok \
        and counts_ok
    return Outcome(ok, {"fwd_max_abs_err": fwd.numbers["max_abs_err"],
                        "once_per_batch_grad_err": grads.numbers["max_abs_err"],
                        "distinct_words": int(np.unique(X).size), "tokens": int(X.size),
                        "gradcheck_max_abs_err": gc_err, "params": n,
                        "unseen_word_vector_ok": bool(new_ok)},
                   f"V={len(words)} words over C={C} character ids; d_char=5, H=6, d_word=7")


def _char_cnn_by_hand(m, chars):
    """Kim et al.'s char CNN + highway with explicit loops (tanh, max over time, gate −2)."""
    Q = m.char_embedding.W.data
    out = []
    for w in range(chars.shape[0]):
        x = Q[chars[w]]                                         # (L_c, d_char)
        feats = []
        for conv in m.convs:
            W, b = conv.W.data, conv.b.data                     # (f, d_char, width)
            k = W.shape[2]
            for o in range(W.shape[0]):
                feats.append(max(np.tanh((x[t:t + k].T * W[o]).sum() + b[o])
                                 for t in range(x.shape[0] - k + 1)))
        y = np.array(feats)
        if m.highway is not None:
            for layer in range(m.highway.num_layers):
                Hl, Tl = getattr(m.highway, f"H_l{layer}"), getattr(m.highway, f"T_l{layer}")
                g = np.maximum(Hl.W.data @ y + Hl.b.data, 0.0)
                t = _sig(Tl.W.data @ y + Tl.b.data - 2.0)       # fixed offset −2 (Kim's code)
                y = t * g + (1 - t) * y
        out.append(y)
    return np.array(out)


@register_check("char-cnn-highway", "Kim et al.'s character CNN: max over time of tanh "
                "convolutions of several widths, then a highway layer with the gate's fixed −2 "
                "offset, equals explicit loops; the character-aware LM composes each distinct "
                "word once per batch; gradcheck; exact parameter counts (incl. Kim et al.'s "
                "small model: 34,650 CNN + 552,300 highway numbers)", section="5.1",
                implements=[f"{_CHR}.CharCNN", f"{_CHR}.char_cnn_num_params",
                            f"{_CHR}.char_aware_lm", "refimpl.nn.conv.Highway",
                            "refimpl.nn.conv.Conv1d"])
@_single_thread_blas
def _check_char_cnn(rng, quick):
    from refimpl.sharing.characters import CharCNN, char_aware_lm, char_cnn_num_params, char_table

    words = ["<pad>", "<unk>", "<bos>", "<eos>", "run", "runs", "ran", "running", "a"]
    chars, lengths, alphabet = char_table(words)
    C = 4 + len(alphabet)
    seed = int(rng.integers(2**31))
    m = CharCNN(num_chars=C, d_char=4, widths=(1, 2, 3), num_filters=(2, 3, 4),
                highway_layers=2, rng=seed)
    y = m(chars).data
    fwd = Outcome.compare(y, _char_cnn_by_hand(m, chars), atol=1e-13)

    lm = char_aware_lm(words=words, d_char=3, widths=(1, 2), num_filters=(3, 4), d_hidden=5,
                       rng=seed)
    X = np.array([[2, 4, 5, 4, 3], [2, 7, 7, 3, 0]])
    e = lm.embedding(X).data
    enc = lm.embedding.encoder
    per_tok = enc(lm.embedding.word_chars[X.ravel()]).data.reshape(e.shape)
    per_tok[1, 4] = 0.0                                          # <pad> is the zero vector
    once = Outcome.compare(e, per_tok, atol=64 * np.finfo(float).eps * np.abs(per_tok).max())
    loss_ok = bool(np.isfinite(lm.loss(X, np.array([5, 4])).item()))

    tiny = CharCNN(num_chars=C, d_char=2, widths=(1, 2), num_filters=(2, 2), highway_layers=1,
                   rng=seed)
    cs = chars[[4, 7]]
    # smooth almost everywhere (max, relu): random weights keep the kinks away from ±h
    gc_ok, gc_err = _gradcheck_params(tiny, ["char_embedding.W", "convs.1.W", "highway.T_l0.W",
                                             "highway.H_l0.b"], lambda mod: mod(cs), 0)
    counts = {}
    counts_ok = m.num_parameters() == char_cnn_num_params(
        num_chars=C, d_char=4, widths=(1, 2, 3), num_filters=(2, 3, 4), highway_layers=2)
    # Kim et al.'s small model: d = 15, widths 1..6, 25·w filters (n = 525), one highway layer
    kim = CharCNN(num_chars=51, d_char=15, widths=(1, 2, 3, 4, 5, 6),
                  num_filters=(25, 50, 75, 100, 125, 150), highway_layers=1, rng=0)
    counts["kim_small_cnn_highway"] = kim.num_parameters()
    counts_ok &= counts["kim_small_cnn_highway"] == 51 * 15 + 34_650 + 552_300 == \
        char_cnn_num_params(num_chars=51, d_char=15, widths=(1, 2, 3, 4, 5, 6),
                            num_filters=(25, 50, 75, 100, 125, 150), highway_layers=1)
    ok = fwd.passed and once.passed and loss_ok and gc_ok and counts_ok
    return Outcome(ok, {"fwd_max_abs_err": fwd.numbers["max_abs_err"],
                        "gradcheck_max_abs_err": gc_err, "params": m.num_parameters(), **counts},
                   "the highway gate adds a constant −2 after its Linear (Kim et al.'s code), "
                   "its bias is an ordinary trained bias")


@register_check("cnn-softmax", "CNN-Softmax (Jozefowicz et al.): logits z_w = hᵀ P CNN(w) from a "
                "character CNN separate from the input one; parameters independent of V; a "
                "word added to the vocabulary gets an output vector; the optional correction "
                "term hᵀ M corr_w (exact count, zero at init); gradcheck", section="5.1",
                implements=[f"{_CHR}.CNNSoftmax", f"{_CHR}.char_aware_lm"])
@_single_thread_blas
def _check_cnn_softmax(rng, quick):
    from refimpl.sharing.characters import CharCNN, CNNSoftmax, char_aware_lm, char_table

    words = ["<pad>", "<unk>", "<bos>", "<eos>", "run", "runs", "ran", "sun", "suns"]
    seed = int(rng.integers(2**31))
    lm = char_aware_lm(words=words, d_char=3, widths=(1, 2), num_filters=(3, 4), d_hidden=5,
                       cnn_softmax=True, rng=seed)
    unshared = lm.out.encoder is not lm.embedding.encoder and not any(
        p is q for p in lm.out.encoder.parameters() for q in lm.embedding.encoder.parameters())
    h = rng.standard_normal((3, 5))
    z = lm.out(h).data
    E = lm.out.projection.W.data @ lm.out.encoder(lm.out.word_chars).data.T   # (d_h, V)
    fwd = Outcome.compare(z, h @ E, atol=1e-13 * np.abs(h).sum(1).max() * np.abs(E).max())

    # V grows, parameters do not: the same LM over twice the words (same alphabet)
    more = words + ["nur", "snur", "urn", "nuns"]
    lm2 = char_aware_lm(words=more, d_char=3, widths=(1, 2), num_filters=(3, 4), d_hidden=5,
                        cnn_softmax=True, rng=seed)
    indep = lm.num_parameters() == lm2.num_parameters()
    # an output vector for a word outside the vocabulary: extend the table, same weights
    chars2, len2, _ = char_table(more, alphabet=char_table(words)[2])
    ext = CNNSoftmax(lm.out.encoder, chars2, len2, 5)
    ext.projection = lm.out.projection
    z2 = ext(h).data
    new_ok = np.array_equal(z2[:, :len(words)], z) and np.all(np.isfinite(z2))

    enc = CharCNN(num_chars=lm.out.encoder.num_chars, d_char=2, widths=(1,), num_filters=(2,),
                  highway_layers=0, rng=seed)
    tiny = CNNSoftmax(enc, lm.out.word_chars, lm.out.word_char_lengths, 3, bias=True, rng=seed)
    hh = rng.standard_normal((2, 3))
    gc_ok, gc_err = _gradcheck_params(tiny, ["projection.W", "b", "encoder.convs.0.W"],
                                      lambda mod: mod(hh), 0)

    # Jozefowicz et al.'s correction term: e_w = P CNN(chars_w) + M corr_w, corr_w of size d_c
    V, d_c = len(words), 2
    plain = CNNSoftmax(lm.out.encoder, lm.out.word_chars, lm.out.word_char_lengths, 5, rng=seed)
    corr = CNNSoftmax(lm.out.encoder, lm.out.word_chars, lm.out.word_char_lengths, 5,
                      correction_dim=d_c, rng=seed)
    extra = corr.num_parameters() - plain.num_parameters()
    count_ok = extra == V * d_c + 5 * d_c and corr.correction.shape == (V, d_c)
    starts_plain = np.array_equal(corr(h).data, plain(h).data)          # corr = 0 at init
    corr.correction.data = rng.standard_normal((V, d_c))
    E_c = (corr.projection.W.data @ corr.encoder(corr.word_chars).data.T   # (d_h, V)
           + corr.correction_projection.W.data @ corr.correction.data.T)
    fwd_c = Outcome.compare(corr(h).data, h @ E_c,
                            atol=1e-13 * np.abs(h).sum(1).max() * np.abs(E_c).max())
    tiny_c = CNNSoftmax(enc, lm.out.word_chars, lm.out.word_char_lengths, 3, bias=True,
                        correction_dim=d_c, rng=seed)
    tiny_c.correction.data = rng.standard_normal((V, d_c))
    gcc_ok, gcc_err = _gradcheck_params(
        tiny_c, ["correction", "correction_projection.W", "projection.W", "encoder.convs.0.W"],
        lambda mod: mod(hh), 0)
    corr_ok = count_ok and starts_plain and fwd_c.passed and gcc_ok
    ok = unshared and fwd.passed and indep and new_ok and gc_ok and corr_ok
    return Outcome(ok, {"fwd_max_abs_err": fwd.numbers["max_abs_err"],
                        "params_V9": lm.num_parameters(), "params_V13": lm2.num_parameters(),
                        "gradcheck_max_abs_err": gc_err,
                        "correction_extra_params": extra,
                        "correction_fwd_max_abs_err": fwd_c.numbers["max_abs_err"],
                        "correction_gradcheck_max_abs_err": gcc_err},
                   "input and output character CNNs unshared, as in the paper; the correction "
                   f"term adds V·d_c + d_hidden·d_c = {V}·{d_c} + 5·{d_c} numbers and starts "
                   "at zero")


@register_check("char-lstm-output", "Char-LSTM output (Jozefowicz et al.): log p(w|h) = "
                "Σ_k log p(c_k|c_<k, h) equals a step-by-step NumPy computation; a word in a "
                "padded batch scores as alone; the probabilities of all strings up to length "
                "3 plus the mass left at depth 4 sum to 1; gradcheck", section="5.1",
                implements=[f"{_CHR}.CharLSTMOutput"])
@_single_thread_blas
def _check_char_lstm_output(rng, quick):
    import itertools

    from refimpl.sharing.characters import CharLSTMOutput, char_table

    alphabet = "ab"
    C = 4 + len(alphabet)
    seed = int(rng.integers(2**31))
    m = CharLSTMOutput(num_chars=C, d_char=3, d_context=4, d_hidden=5, rng=seed)
    h = rng.standard_normal(4)
    # every string over {a, b} of length 0..3, one padded batch
    strings = ["".join(s) for n in range(4) for s in itertools.product(alphabet, repeat=n)]
    chars, lengths, _ = char_table(strings[1:], alphabet=alphabet, max_len=5)
    chars = np.vstack([[1, 2, 0, 0, 0], chars])                  # the empty word <bow><eow>
    lengths = np.concatenate([[2], lengths])
    H = np.tile(h, (len(strings), 1))
    lp = m.log_prob(H, chars, lengths).data

    # by hand: LSTM over [Q[c_{k-1}]; h], softmax, sum of the log-probabilities of the targets
    Q, lstm = m.char_embedding.W.data, m.lstm
    Wih, Whh, bih, bhh = (p.data for p in (lstm.W_ih_l0, lstm.W_hh_l0, lstm.b_ih_l0,
                                           lstm.b_hh_l0))
    hand = []
    rest = 0.0                           # mass of every continuation not scored above
    for r in range(len(strings)):
        n = lengths[r]
        hs, cs = np.zeros(5), np.zeros(5)
        total = 0.0
        for k in range(n - 1):
            x = np.concatenate([Q[chars[r, k]], h])
            a = Wih @ x + bih + Whh @ hs + bhh
            i, f, g, o = _sig(a[:5]), _sig(a[5:10]), np.tanh(a[10:15]), _sig(a[15:])
            cs = f * cs + i * g
            hs = o * np.tanh(cs)
            logits = m.out.W.data @ hs + m.out.b.data
            logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
            total += logp[chars[r, k + 1]]
        hand.append(total)
        # the string's prefix u = chars[r, :n-1]: its mass times p(anything but <eow> or a
        # letter | u) ends outside the enumerated set; at depth 3 also p(letter | u)
        pref = np.exp(total - logp[chars[r, n - 1]])
        p_last = np.exp(logp)
        bad = 1.0 - p_last[2] - p_last[4:].sum()
        rest += pref * (bad + (p_last[4:].sum() if n - 2 == 3 else 0.0))
    fwd = Outcome.compare(lp, hand, atol=1e-12)
    mass = float(np.exp(lp).sum() + rest)
    norm_ok = abs(mass - 1.0) < 1e-12

    alone = m.log_prob(h[None], chars[-1:], lengths[-1:]).data
    pad_ok = abs(float(alone[0]) - float(lp[-1])) < 1e-13

    tiny = CharLSTMOutput(num_chars=C, d_char=2, d_context=2, d_hidden=2, rng=seed)
    hh = rng.standard_normal((2, 2))
    gc_ok, gc_err = _gradcheck_params(tiny, ["out.W", "char_embedding.W", "lstm.W_ih_l0"],
                                      lambda mod: mod.log_prob(hh, chars[[3, 9]],
                                                               lengths[[3, 9]]), 0)
    ok = fwd.passed and norm_ok and pad_ok and gc_ok
    return Outcome(ok, {"fwd_max_abs_err": fwd.numbers["max_abs_err"],
                        "total_mass_minus_1": mass - 1.0, "strings": len(strings),
                        "gradcheck_max_abs_err": gc_err, "params": m.num_parameters()},
                   "alphabet {a, b}: 15 strings of length ≤ 3 enumerated")


from refimpl.sharing import claims as _claims  # noqa: E402,F401  (registers the §5 claims)


# ------------------------------------------------------------------ shared sub-vectors (§5.2)
_SUB = "refimpl.sharing.subvectors"


@register_check("shared-reference-vectors", "shared reference vectors (Suzuki & Nagata) and Slim "
                "Embeddings (Li et al.): e_w = [R_{1,a(w,1)}; …; R_{B,a(w,B)}] equals a loop; a "
                "reference's gradient = the sum over the (word, block) uses; the SGNS loss equals "
                "its formula, gradcheck through both shared tables; random assignment distinct "
                "and seeded; k-means fixed point; exact bits (seed vs stored indices)",
                section="5.2", implements=[f"{_SUB}.SubvectorEmbedding",
                                           f"{_SUB}.random_assignment", f"{_SUB}.block_kmeans",
                                           f"{_SUB}.SkipGramNS", f"{_SUB}.skipgram_pairs"])
@_single_thread_blas
def _check_shared_reference_vectors(rng, quick):
    from refimpl.sharing.subvectors import (
        SkipGramNS,
        SubvectorEmbedding,
        block_kmeans,
        random_assignment,
        skipgram_pairs,
    )

    V, D, B, K = 12, 6, 3, 4
    seed = int(rng.integers(2**31))
    emb = SubvectorEmbedding(V, D, num_blocks=B, num_refs=K, seed=seed, rng=seed)
    idx = rng.integers(0, V, (3, 5))
    out = emb(idx)
    R, a = emb.R.data, emb.assignment
    loop = np.array([[np.concatenate([R[b, a[w, b]] for b in range(B)]) for w in row]
                     for row in idx])
    fwd = Outcome.compare(out.data, loop, atol=0.0)
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    dR = np.zeros_like(R)                                   # sum over every (word, block) use
    for (i, j), w in np.ndenumerate(idx):
        for b in range(B):
            dR[b, a[w, b]] += dout[i, j, b * 2:(b + 1) * 2]
    grad = Outcome.compare(emb.R.grad, dR, atol=1e-14 * idx.size)

    again = np.array_equal(random_assignment(V, B, K, seed), a)
    distinct = np.unique(a, axis=0).shape[0] == V
    fixed = emb.reassign_(emb.virtual_weight()) == 0        # a table's own split is a fixed point
    bits_random = SubvectorEmbedding(V, D, num_blocks=B, num_refs=K, seed=seed).storage_bits()
    bits_stored = emb.storage_bits()                        # after reassign_: indices stored
    bits_ok = bits_random == B * K * (D // B) * 32 + 32 and bits_stored == B * K * 2 * 32 + V * B * 2

    # SGNS loss against its formula, both tables shared
    out_emb = SubvectorEmbedding(V, D, num_blocks=B, num_refs=K, seed=seed + 1, rng=seed + 1)
    sg = SkipGramNS(emb, out_emb)
    tokens = rng.integers(0, V, 20)
    c, o, n = skipgram_pairs(tokens, window=2, num_negatives=3, num_words=V, rng=seed)
    Vi, Uo = emb.virtual_weight(), out_emb.virtual_weight()
    sig = _sig
    hand = -(np.log(sig((Uo[o] * Vi[c]).sum(-1))).sum()
             + np.log(sig(-(Uo[n] * Vi[c][:, None, :]).sum(-1))).sum()) / c.size
    loss = Outcome.compare(sg(c, o, n).item(), hand, atol=1e-13 * abs(hand))
    pairs_ok = c.size == 2 * (2 * 20 - 3) and n.shape == (c.size, 3)

    tiny_in = SubvectorEmbedding(5, 4, num_blocks=2, num_refs=2, seed=1, rng=seed)
    tiny_out = SubvectorEmbedding(5, 4, num_blocks=2, num_refs=3, seed=2, rng=seed)
    tiny = SkipGramNS(tiny_in, tiny_out)
    cs, os_, ns = c[:6] % 5, o[:6] % 5, n[:6] % 5
    gc_ok, gc_err = _gradcheck_params(tiny, ["input_embedding.R", "output_embedding.R"],
                                      lambda mod: mod(cs, os_, ns), 0)

    # block-wise k-means: a fixed point of Lloyd's algorithm
    E = rng.standard_normal((30, 6))
    ka, kR = block_kmeans(E, 3, 4, iters=100, rng=seed)
    blocks = E.reshape(30, 3, 2)
    nearest = all(np.array_equal(ka[:, b], ((blocks[:, b, None] - kR[b][None]) ** 2).sum(-1)
                                 .argmin(1)) for b in range(3))
    means = all(np.allclose(kR[b, k], blocks[ka[:, b] == k, b].mean(0), atol=1e-14)
                for b in range(3) for k in range(4) if (ka[:, b] == k).any())
    ok = (fwd.passed and grad.passed and again and distinct and fixed and bits_ok and loss.passed
          and pairs_ok and gc_ok and nearest and means)
    return Outcome(ok, {"grad_max_abs_err": grad.numbers["max_abs_err"],
                        "sgns_loss_err": loss.numbers["max_abs_err"],
                        "gradcheck_max_abs_err": gc_err, "params": emb.num_parameters(),
                        "table_params": V * D, "bits_seeded": bits_random,
                        "bits_stored_indices": bits_stored, "kmeans_fixed_point": nearest and means},
                   f"V={V}, D={D}, B={B}, K={K}: {B * K * (D // B)} numbers for {V * D}")


# ------------------------------------------------------------------ Universal Transformer (§5.3)
_UT = "refimpl.sharing.universal"


def _ut_by_hand(ut, x):
    """ACT per position with scalar Python bookkeeping (Graves 2016 / tensor2tensor's rules);
    the shared layer is applied through its forward (no tape). Returns (y, N, R, Σu)."""
    from refimpl.sharing.universal import timing_signal

    B, n, d = x.shape
    w, b = ut.halting.W.data[0], ut.halting.b.data[0]
    state = x.copy()
    y = np.zeros_like(x)
    H, R, N = np.zeros((B, n)), np.zeros((B, n)), np.zeros((B, n))
    done = np.zeros((B, n), bool)
    usum = np.zeros((B, n))
    for t in range(1, ut.max_steps + 1):
        s = state + timing_signal(n, d, t)
        h_new = ut.layer(s).data
        for i in range(B):
            for j in range(n):
                if done[i, j]:
                    continue
                p = 1.0 / (1.0 + np.exp(-(s[i, j] @ w + b)))
                if t == ut.max_steps or H[i, j] + p > 1.0 - ut.epsilon:
                    R[i, j] = 1.0 - H[i, j]
                    u = R[i, j]
                    done[i, j] = True
                else:
                    H[i, j] += p
                    u = p
                N[i, j] += 1
                usum[i, j] += u
                y[i, j] = u * h_new[i, j] + (1.0 - u) * y[i, j]
        state = h_new
        if done.all():
            break
    return y, N, R, usum


@register_check("universal-transformer-act", "Universal Transformer: one shared layer applied "
                "recurrently with the position-and-step timing signal (hand values) equals a "
                "loop; per-position ACT (threshold 1 − ε, remainders, update weights summing to "
                "1, max-steps cap, ponder cost mean(N + R)) equals scalar bookkeeping; halting "
                "at step 1 / at the cap by hand; gradcheck through the halting unit; exact "
                "parameter count", section="5.3",
                implements=[f"{_UT}.UniversalTransformerEncoder", f"{_UT}.timing_signal",
                            f"{_UT}.ACTOutput"])
@_single_thread_blas
def _check_universal_transformer(rng, quick):
    from refimpl.sharing.universal import UniversalTransformerEncoder, timing_signal

    # P^1 at position 0, d = 2: (sin 0 + sin 1, cos 0 + cos 1); position 3, step 2, d = 4
    P = timing_signal(4, 4, 2)
    hand_sig = (np.array_equal(timing_signal(1, 2, 1)[0], [np.sin(1.0), 1.0 + np.cos(1.0)])
                and abs(P[3, 2] - (np.sin(3 / 100.0) + np.sin(2 / 100.0))) < 1e-15
                and abs(P[3, 1] - (np.cos(3.0) + np.cos(2.0))) < 1e-15)

    seed = int(rng.integers(2**31))
    d, T = 8, 5
    x = rng.standard_normal((2, 6, d))
    plain = UniversalTransformerEncoder(d_model=d, num_heads=2, d_ff=12, max_steps=T, act=False,
                                        rng=seed)
    loop = x
    for t in range(1, T + 1):
        loop = plain.layer(loop + timing_signal(6, d, t)).data
    fwd = Outcome.compare(plain(x).hidden.data, loop, atol=0.0)

    ut = UniversalTransformerEncoder(d_model=d, num_heads=2, d_ff=12, max_steps=T, act=True,
                                     rng=seed)
    ut.halting.W.data = rng.standard_normal((1, d)) * 0.5      # spread the halting steps
    ut.halting.b.data[:] = -0.5
    o = ut(x)
    y, N, R, usum = _ut_by_hand(ut, x)
    act_y = Outcome.compare(o.hidden.data, y, atol=1e-14 * T)
    act_counts = np.array_equal(o.n_updates, N)
    act_R = Outcome.compare(o.remainders.data, R, atol=1e-15 * T)
    ponder = Outcome.compare(o.ponder_cost.item(), (N + R).mean(), atol=1e-14 * T)
    weights_one = float(np.abs(usum - 1.0).max())
    spread = sorted(set(N.ravel().tolist()))

    # edge cases: p ≈ 1 halts everyone at step 1 (R = 1, ρ = 2, y = Layer(x + P^1));
    # p ≈ 0 runs to the cap (N = T, R ≈ 1, ρ ≈ T + 1)
    ut.halting.W.data[:] = 0.0
    ut.halting.b.data[:] = 40.0
    o1 = ut(x)
    first = Outcome.compare(o1.hidden.data, ut.layer(x + timing_signal(6, d, 1)).data, atol=0.0)
    early = (np.all(o1.n_updates == 1) and o1.steps == 1 and o1.ponder_cost.item() == 2.0
             and first.passed)
    ut.halting.b.data[:] = -40.0
    oT = ut(x)
    capped = (np.all(oT.n_updates == T) and oT.steps == T
              and abs(oT.ponder_cost.item() - (T + 1)) < 1e-15 * T * 10)

    tiny = UniversalTransformerEncoder(d_model=4, num_heads=2, d_ff=6, max_steps=3, act=True,
                                       rng=seed)
    tiny.halting.W.data = rng.standard_normal((1, 4))
    tiny.halting.b.data[:] = -0.3
    xt = rng.standard_normal((1, 3, 4))

    def fn(xx, Wh, bh, W1):
        tiny.halting.W, tiny.halting.b, tiny.layer.linear1.W = Wh, bh, W1
        out = tiny(xx)
        return out.hidden + out.ponder_cost                    # both carry gradients
    try:
        gc = gradcheck(fn, [xt, tiny.halting.W.data, tiny.halting.b.data,
                            tiny.layer.linear1.W.data], rng=0)
        gc_ok, gc_err = True, gc["max_abs_err"]
    except GradcheckError as e:
        gc_ok, gc_err = False, str(e)

    layer_params = ut.layer.num_parameters()
    counts_ok = (layer_params == 4 * (d * d + d) + 2 * d * 12 + 12 + d + 4 * d
                 and ut.num_parameters() == layer_params + d + 1
                 and plain.num_parameters() == layer_params)
    ok = (hand_sig and fwd.passed and act_y.passed and act_counts and act_R.passed
          and ponder.passed and weights_one < 1e-15 * T * 4 and early and capped and gc_ok
          and counts_ok)
    return Outcome(ok, {"act_max_abs_err": act_y.numbers["max_abs_err"],
                        "update_weights_sum_err": weights_one, "steps_taken": spread,
                        "ponder_cost": o.ponder_cost.item(), "gradcheck_max_abs_err": gc_err,
                        "params": ut.num_parameters(),
                        "unshared_stack_params": T * layer_params + d + 1},
                   f"d={d}, max_steps={T}, ε={ut.epsilon:g}; the shared layer costs 1/{T} of "
                   "an unshared stack")


def _lstm_states_by_hand(x, W_ih, W_hh, b_ih, b_hh):
    """All hidden states of one LSTM over the rows of ``x`` (T, D): (T, H)."""
    H = W_hh.shape[1]
    h, c, out = np.zeros(H), np.zeros(H), []
    for t in range(x.shape[0]):
        a = W_ih @ x[t] + b_ih + W_hh @ h + b_hh
        i, f, g, o = _sig(a[:H]), _sig(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), _sig(a[3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.array(out)


@register_check("lightrnn-lm", "LightRNN LM: the LSTM reads row and column vectors alternately "
                "and predicts the row, then the column (= a step-by-step NumPy loop); P(w) = "
                "P_r·P_c sums to 1 over a full table; ℓ_r, ℓ_c equal brute force over moved "
                "words; the exact reallocation costs no more than the current table or greedy; "
                "gradcheck; exact parameter and table bits", section="5.2",
                implements=[f"{_LRNN}.LightRNNLanguageModel"])
@_single_thread_blas
def _check_lightrnn_lm(rng, quick):
    from refimpl.sharing.lightrnn import LightRNNLanguageModel, lightrnn_allocate

    V, R, C, d, H = 9, 3, 3, 4, 5
    seed = int(rng.integers(2**31))
    m = LightRNNLanguageModel(vocab_size=V, num_rows=R, num_cols=C, d_emb=d, d_hidden=H,
                              rng=seed)
    X = np.array([[2, 5, 6, 4, 3, 0], [2, 7, 3, 0, 0, 0], [2, 4, 5, 8, 1, 3]])
    L = np.array([5, 3, 6])
    nll = m.token_nll(X, L)
    lstm = m.rnn
    w = [p.data for p in (lstm.W_ih_l0, lstm.W_hh_l0, lstm.b_ih_l0, lstm.b_hh_l0)]
    hand = np.full(nll.shape, np.nan)
    for b in range(X.shape[0]):
        seq = []
        for t in range(L[b]):
            seq += [m.row_in.W.data[m.rows[X[b, t]]], m.col_in.W.data[m.cols[X[b, t]]]]
        hs = _lstm_states_by_hand(np.array(seq[:-1]), *w)          # (2L − 1, H)
        for t in range(L[b] - 1):
            y = X[b, t + 1]
            zr = m.row_out.W.data @ hs[2 * t + 1] + m.row_out.b.data
            zc = m.col_out.W.data @ hs[2 * t + 2] + m.col_out.b.data
            hand[b, t] = (np.log(np.exp(zr - zr.max()).sum()) + zr.max() - zr[m.rows[y]]
                          + np.log(np.exp(zc - zc.max()).sum()) + zc.max() - zc[m.cols[y]])
    fwd = Outcome.compare(np.nan_to_num(nll, nan=0.0), np.nan_to_num(hand, nan=0.0), atol=1e-13)
    nan_ok = np.array_equal(np.isnan(nll), np.isnan(hand))

    # a full table: Σ_w P(w | <bos> x_1) = Σ_r P_r(r) Σ_c P_c(c | r) = 1
    ctx = np.array([[2, 5, w] for w in range(V)])
    mass = float(np.exp(-m.token_nll(ctx, np.full(V, 3))[:, 1]).sum())

    # allocation losses against brute force: move one word's row (column), re-score its targets
    # (no word repeats within a row, so moving it changes no state before its own prediction)
    row_loss, col_loss = m.allocation_losses(X, L)
    brute_r, brute_c = np.zeros((V, R)), np.zeros((V, C))
    rows0, cols0 = m.rows.copy(), m.cols.copy()
    for word in range(V):
        for r in range(R):
            m.rows = rows0.copy()
            m.rows[word] = r
            rl = m(X, L)[0].data                                    # (B, T − 1, R)
            lp = rl - rl.max(-1, keepdims=True)
            lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
            for b, t in zip(*np.nonzero(X[:, 1:] == word)):
                if t + 1 < L[b]:
                    brute_r[word, r] -= lp[b, t, r]
        m.rows = rows0.copy()
        for c in range(C):
            m.cols = cols0.copy()
            m.cols[word] = c
            cl = m(X, L)[1].data
            lp = cl - cl.max(-1, keepdims=True)
            lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
            for b, t in zip(*np.nonzero(X[:, 1:] == word)):
                if t + 1 < L[b]:
                    brute_c[word, c] -= lp[b, t, c]
        m.cols = cols0.copy()
    # the row loss is exact (the state before the row does not depend on the word's own row);
    # the column loss uses the states of the current table, as in the paper
    alloc = Outcome.compare(np.concatenate([row_loss.ravel(), col_loss.ravel()]),
                            np.concatenate([brute_r.ravel(), brute_c.ravel()]), atol=1e-12)
    current = float(row_loss[np.arange(V), rows0].sum() + col_loss[np.arange(V), cols0].sum())
    greedy = lightrnn_allocate(row_loss, col_loss, "greedy")[2]
    exact = m.reallocate_(X, L, "exact")
    cells = len(set(zip(m.rows.tolist(), m.cols.tolist()))) == V
    order_ok = exact <= current + 1e-12 and exact <= greedy + 1e-12 and cells

    tiny = LightRNNLanguageModel(vocab_size=4, num_rows=2, num_cols=2, d_emb=2, d_hidden=2,
                                 rng=seed)
    Xt, Lt = np.array([[2, 1, 3], [2, 3, 0]]), np.array([3, 2])
    gc_ok, gc_err = _gradcheck_params(tiny, ["row_in.W", "col_in.W", "row_out.W", "col_out.b"],
                                      lambda mod: mod.loss(Xt, Lt), 0)
    n = m.num_parameters()
    counts_ok = (n == (R + C) * d + 4 * H * (d + H) + 8 * H + (R + C) * (H + 1)
                 and m.storage_bits() == 32 * n + V * (2 + 2))
    ok = (fwd.passed and nan_ok and abs(mass - 1.0) < 1e-14 and alloc.passed and order_ok
          and gc_ok and counts_ok)
    return Outcome(ok, {"nll_max_abs_err": fwd.numbers["max_abs_err"], "mass_minus_1":
                        mass - 1.0, "alloc_loss_max_abs_err": alloc.numbers["max_abs_err"],
                        "cost_current": current, "cost_greedy": greedy, "cost_exact": exact,
                        "gradcheck_max_abs_err": gc_err, "params": n},
                   f"V={V} in a {R}×{C} table, d_emb={d}, d_hidden={H}")
