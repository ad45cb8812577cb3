"""Registered checks for survey §4 (knowledge distillation): §4.3's Eqs. (57)–(58), the erratum
on Eq. (58)'s dustbin and the multi-teacher baselines; the objectives and training recipes of
§4.1, §4.2 and §4.4 (named checks); and the claims in miniature (the §4.4 Transformer claims
share one skeleton, ``_compare_arms``).

Each check computes the refimpl function and an independent version (explicit loops with
``math``, brute-force enumeration, central differences, a tape composition of primitive ops).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from refimpl.check import Outcome, register_check, register_claim, register_equation
from refimpl.distillation import multi_teacher as mt
from refimpl.nn import Tensor, gradcheck
from refimpl.nn import functional as F

_MT = "refimpl.distillation.multi_teacher"


# ------------------------------------------------------------------ Eq. (57)
def _dist_by_hand(x, y, distance):
    """One distance with Python loops and math (no NumPy reductions)."""
    if distance == "cosine":
        dot = sum(float(a) * float(b) for a, b in zip(x, y))
        nx = math.sqrt(sum(float(a) ** 2 for a in x))
        ny = math.sqrt(sum(float(b) ** 2 for b in y))
        return 1.0 - dot / (nx * ny)
    sq = sum((float(a) - float(b)) ** 2 for a, b in zip(x, y))
    return math.sqrt(sq) if distance == "euclidean" else sq


@register_equation(57, "RD triplet hinge equals a loop by hand; zero once the margin holds",
                   section="4.3", implements=[f"{_MT}.rd_triplet_loss", f"{_MT}.pairwise_distance"])
def _rd_hinge(rng, quick):
    N, d, delta = (12, 5, 0.3) if quick else (40, 16, 0.3)
    p, p_pos, p_neg = rng.standard_normal((3, N, d))
    outs, zeros = [], []
    for distance in mt.DISTANCES:
        got = mt.rd_triplet_loss(p, p_pos, p_neg, delta, distance, reduction="none")
        want = [max(0.0, _dist_by_hand(p[i], p_pos[i], distance)
                    - _dist_by_hand(p[i], p_neg[i], distance) + delta) for i in range(N)]
        outs.append(Outcome.compare(got, want, atol=1e-12))
        # margin satisfied: positives next to the anchors, negatives opposite and far away
        near = p + 1e-3 * rng.standard_normal((N, d))
        far = -5.0 * p
        zeros.append(mt.rd_triplet_loss(p, near, far, delta, distance, reduction="sum"))
    active = int((mt.rd_triplet_loss(p, p_pos, p_neg, delta, reduction="none") > 0).sum())
    res = Outcome.all_of(*outs)
    ok = res.passed and max(zeros) == 0.0 and 0 < active
    return Outcome(ok, {"max_abs_err": res.numbers["max_abs_err"],
                        "loss_when_margin_holds": max(zeros), "active_triplets": active, "N": N},
                   "3 distances vs Python loops; positives near, negatives far -> loss exactly 0")


@register_equation(57, "RD loss gradient (tape op) equals central differences", section="4.3",
                   implements=[f"{_MT}.rd_triplet_loss_t", f"{_MT}.rd_triplet_loss_grad"])
def _rd_gradient(rng, quick):
    N, d = (6, 4) if quick else (20, 8)
    worst = 0.0
    for distance in mt.DISTANCES:
        p, p_pos, p_neg = rng.standard_normal((3, N, d))
        def loss(a, b, c, dist=distance):
            return mt.rd_triplet_loss_t(a, b, c, 0.5, dist, "none")

        r = gradcheck(loss, [p, p_pos, p_neg], rng=rng)
        worst = max(worst, r["max_abs_err"])
        # the NumPy gradient equals the tape's
        ts = [Tensor(a, requires_grad=True) for a in (p, p_pos, p_neg)]
        mt.rd_triplet_loss_t(*ts, 0.5, distance).backward()
        g = mt.rd_triplet_loss_grad(p, p_pos, p_neg, 0.5, distance)
        worst = max(worst, max(float(np.abs(t.grad - gi).max()) for t, gi in zip(ts, g)))
    return Outcome(worst < 1e-7, {"max_abs_err": worst, "N": N, "d": d},
                   "euclidean, squared euclidean, cosine; gradcheck raises beyond 1e-7")


@register_equation(57, "majority vote of teachers equals brute-force enumeration of orders",
                   section="4.3", implements=[f"{_MT}.majority_vote_order"])
def _majority_vote(rng, quick):
    N = 30 if quick else 200
    mism = 0
    n_dropped = 0
    for M in (1, 2, 3, 4):
        dims = [int(rng.integers(2, 6)) for _ in range(M)]
        qa = [rng.standard_normal((N, dt)) for dt in dims]
        qA = [rng.standard_normal((N, dt)) for dt in dims]
        qB = [rng.standard_normal((N, dt)) for dt in dims]
        if M >= 2:  # a teacher that sees a and b at the same distance abstains
            qB[1][:3] = 2 * qa[1][:3] - qA[1][:3]
        res = mt.majority_vote_order(qa, qA, qB)
        for i in range(N):
            # enumerate both orders; count the teachers that strictly support each
            support = {}
            for pos, neg in itertools.permutations(("a", "b")):
                feats = {"a": qA, "b": qB}
                support[pos] = sum(
                    _dist_by_hand(qa[t][i], feats[pos][t][i], "euclidean")
                    < _dist_by_hand(qa[t][i], feats[neg][t][i], "euclidean")
                    for t in range(M))
            tie = support["a"] == support["b"]
            n_dropped += tie
            mism += (bool(res.kept[i]) == tie)
            if not tie:
                mism += bool(res.a_is_positive[i]) != (support["a"] > support["b"])
        # apply(): the ordered student triplets satisfy the teachers' order
        p, pa, pb = rng.standard_normal((3, N, 4))
        anc, pos, neg = res.apply(p, pa, pb)
        k = np.flatnonzero(res.kept)
        mism += int(np.any(pos != np.where(res.a_is_positive[k, None], pa[k], pb[k])))
        mism += int(np.any(anc != p[k]))
    return Outcome(mism == 0, {"mismatches": mism, "ties_dropped": n_dropped, "N": N},
                   "M = 1..4 teachers of different widths, abstentions included")


# ------------------------------------------------------------------ Eq. (58)
def _random_specialist_problem(rng, N, C, sizes):
    perm = rng.permutation(C)
    subsets, start = [], 0
    for s in sizes:  # disjoint subsets, as Hinton et al.'s clustering of confusable classes
        subsets.append(np.sort(perm[start:start + s]))
        start += s
    pg = rng.dirichlet(np.ones(C), size=N)
    pms = [rng.dirichlet(np.ones(len(s) + 1), size=N) for s in subsets]
    z = rng.standard_normal((N, C))
    return subsets, pg, pms, z


def _specialist_by_hand(z, pg, pms, subsets, k):
    """Eq. (58) with loops: softmax, top-k set, active set, dustbin collapse, KL sums."""
    out = []
    N, C = z.shape
    for i in range(N):
        mx = max(z[i])
        e = [math.exp(float(v) - mx) for v in z[i]]
        q = [v / sum(e) for v in e]
        order = sorted(range(C), key=lambda c: (-pg[i][c], c))
        top = set(order[:k])
        loss = sum(float(pg[i][c]) * math.log(pg[i][c] / q[c]) for c in range(C) if pg[i][c] > 0)
        for m, s in enumerate(subsets):
            if not top & {int(c) for c in s}:
                continue
            collapsed = [q[int(c)] for c in s] + [sum(q[c] for c in range(C)
                                                      if c not in {int(x) for x in s})]
            loss += sum(float(pm) * math.log(pm / qc)
                        for pm, qc in zip(pms[m][i], collapsed) if pm > 0)
        out.append(loss)
    return np.array(out)


@register_equation(58, "specialist loss equals an explicit sum of KL terms with dustbin collapse",
                   section="4.3", implements=[f"{_MT}.specialist_loss", f"{_MT}.active_set",
                                              f"{_MT}.collapse_to_specialist"])
def _specialist_explicit(rng, quick):
    N, C = (8, 10) if quick else (40, 30)
    subsets, pg, pms, z = _random_specialist_problem(rng, N, C, (3, 2, 4))
    outs = []
    n_active = 0
    for k in (1, 2, 4):
        got = mt.specialist_loss(z, pg, pms, subsets, k, reduction="none")
        outs.append(Outcome.compare(got, _specialist_by_hand(z, pg, pms, subsets, k),
                                    atol=1e-12))
        n_active += int(mt.active_set(pg, subsets, k).sum())
        probs = np.exp(z - z.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        outs.append(Outcome.compare(
            mt.specialist_loss(probs, pg, pms, subsets, k, from_logits=False,
                               reduction="none"), got, atol=1e-12))
    res = Outcome.all_of(*outs)
    return Outcome(res.passed, {"max_abs_err": res.numbers["max_abs_err"],
                                "active_pairs": n_active, "N": N, "C": C},
                   "k = 1, 2, 4; from logits and from probabilities")


@register_equation(58, "specialist loss is 0 iff q matches the generalist and every active "
                   "specialist's collapsed distribution", section="4.3",
                   implements=[f"{_MT}.specialist_loss", f"{_MT}.combine_specialists"])
def _specialist_zero(rng, quick):
    N, C, k = (8, 10, 1) if quick else (30, 20, 1)
    subsets = [np.array([0, 1, 2]), np.array([3, 4, 5])]  # classes 6..C-1: no specialist
    q_true = rng.dirichlet(np.ones(C), size=N)
    top = np.where(np.arange(N) % 2 == 0, rng.integers(0, 6, N), rng.integers(6, C, N))
    q_true[np.arange(N), top] += 1.0  # even rows: a specialist is active; odd rows: none
    q_true /= q_true.sum(axis=1, keepdims=True)
    pms = [mt.collapse_to_specialist(q_true, s) for s in subsets]
    at_truth = mt.specialist_loss(np.log(q_true), q_true, pms, subsets, k, reduction="none")
    # any other q: strictly positive (KL(p^g‖q) > 0 alone)
    z_other = np.log(q_true) + 0.3 * rng.standard_normal((N, C))
    elsewhere = mt.specialist_loss(z_other, q_true, pms, subsets, k, reduction="none")
    # specialists that disagree make the loss at q = p^g positive -- only where they are active
    active = mt.active_set(q_true, subsets, k).any(axis=1)
    bad = [rng.dirichlet(np.ones(len(s) + 1), size=N) for s in subsets]
    with_bad = mt.specialist_loss(np.log(q_true), q_true, bad, subsets, k, reduction="none")
    # Hinton's inference from random logits: minimising over q recovers q_true
    z0 = rng.standard_normal((N, C))
    q_star, _ = mt.combine_specialists(q_true, pms, subsets, k, z0=z0)
    tv = 0.5 * np.abs(q_star - q_true).sum(axis=1).max()
    ok = (at_truth.max() < 1e-12 and elsewhere.min() > 1e-4 and active.any()
          and (~active).any() and np.all(with_bad[active] > 1e-4)
          and np.all(np.abs(with_bad[~active]) < 1e-12) and tv < 1e-6)
    return Outcome(bool(ok), {"loss_at_match": float(at_truth.max()),
                              "min_loss_elsewhere": float(elsewhere.min()),
                              "min_loss_bad_active": float(with_bad[active].min()),
                              "max_loss_bad_inactive": float(np.abs(with_bad[~active]).max()),
                              "tv_argmin_vs_truth": float(tv), "N": N},
                   "argmin (combine_specialists, Hinton §5.4) from random logits recovers "
                   "q; inactive specialists do not count")


@register_equation(58, "with teachers over all classes the argmin of Eq. (58) is their "
                   "arithmetic mean (Hinton et al. §5.4)", section="4.3",
                   implements=[f"{_MT}.combine_specialists", f"{_MT}.specialist_loss_grad"])
def _specialist_argmin_mean(rng, quick):
    N, C, M = 5, 6, 3
    full = [np.arange(C)] * M  # specialists whose subset is every class: dustbin mass 0
    pg = rng.dirichlet(np.ones(C), size=N)
    pms = [np.concatenate([rng.dirichlet(np.ones(C), size=N), np.zeros((N, 1))], axis=1)
           for _ in range(M)]
    z0 = rng.standard_normal((N, C))
    q_em, _ = mt.combine_specialists(pg, pms, full, 1, z0=z0)
    q_gd, _ = mt.combine_specialists(pg, pms, full, 1, method="gd", steps=3000, lr=0.25, z0=z0)
    mean = (pg + sum(pm[:, :-1] for pm in pms)) / (M + 1)
    return Outcome.all_of(Outcome.compare(q_em, mean, atol=1e-10),
                          Outcome.compare(q_gd, mean, atol=1e-8),
                          detail="EM fixed point and gradient descent on logits (Hinton's "
                          "method) both reach the mean of the 4 teachers")


@register_equation(58, "specialist loss gradient wrt student logits: closed form = finite "
                   "differences = tape of primitive ops", section="4.3",
                   implements=[f"{_MT}.specialist_loss_t", f"{_MT}.specialist_loss_grad"])
def _specialist_gradient(rng, quick):
    N, C, k = (5, 8, 2) if quick else (20, 16, 3)
    subsets, pg, pms, z = _random_specialist_problem(rng, N, C, (2, 3))
    r = gradcheck(lambda a: mt.specialist_loss_t(a, pg, pms, subsets, k, "none"), [z], rng=rng)
    # independent tape: log_softmax, collapse by a 0/1 matmul, KL sums
    zt = Tensor(z, requires_grad=True)
    logq = F.log_softmax(zt, axis=-1)
    loss = (Tensor(pg) * (Tensor(np.log(pg)) - logq)).sum(axis=-1)
    active = mt.active_set(pg, subsets, k)
    for m, s in enumerate(subsets):
        Qm = F.matmul(F.exp(logq), mt.collapse_matrix(s, C))  # (N, |S_m|+1)
        klm = (Tensor(pms[m]) * (Tensor(np.log(pms[m])) - F.log(Qm))).sum(axis=-1)
        loss = loss + F.mask(klm, active[:, m].astype(float))
    loss.mean().backward()
    closed = mt.specialist_loss_grad(z, pg, pms, subsets, k)
    cmp = Outcome.compare(closed, zt.grad, atol=1e-12)
    ok = r["max_abs_err"] < 1e-7 and cmp.passed
    return Outcome(ok, {"fd_max_abs_err": r["max_abs_err"],
                        "tape_max_abs_err": cmp.numbers["max_abs_err"], "N": N, "C": C},
                   "∂/∂z_c = (q_c − p^g_c) + Σ_{m∈A_k} q_c(1 − p^m_j(c)/(C_m q)_j(c))")


@register_equation(58, "erratum: KL(p^m, q) must compare p^m with q collapsed onto S_m + "
                   "dustbin; without the dustbin the minimiser is wrong", section="4.3",
                   implements=[f"{_MT}.specialist_loss", f"{_MT}.collapse_to_specialist"],
                   name="erratum-dustbin", erratum=True)
def _erratum_dustbin(rng, quick):
    C, N, k = 10, 4, 3
    subsets = [np.array([0, 1, 2])]
    q_true = rng.dirichlet(np.ones(C), size=N)
    q_true[:, 0] += 1.0  # class 0 most probable, so the specialist is active
    q_true /= q_true.sum(axis=1, keepdims=True)
    pms = [mt.collapse_to_specialist(q_true, subsets[0])]
    assert mt.active_set(q_true, subsets, k).all()
    # Hinton's (correct) form: minimiser recovers q_true, minimum 0
    z0 = rng.standard_normal((N, C))
    q_ok, l_ok = mt.combine_specialists(q_true, pms, subsets, k, z0=z0)
    # literal reading of the printed KL(p^m, q): q has no dustbin entry, so only the
    # specialist's own classes are compared: Σ_{c∈S} p^m_c log(p^m_c / q_c)
    s = subsets[0]
    pm = pms[0][:, :-1]  # (N, |S|)
    z = z0.copy()
    for _ in range(3000):
        q = np.exp(z - z.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
        dz = q - q_true  # KL(p^g‖q)
        # -Σ_{c∈S} p_c log q_c  ->  ∂/∂z = q·Σ_S p − p·1[c∈S]
        dz = dz + q * pm.sum(1, keepdims=True)
        dz[:, s] -= pm
        z -= 0.5 * dz
    q_lit = np.exp(z - z.max(1, keepdims=True))
    q_lit /= q_lit.sum(1, keepdims=True)
    lit_min = ((q_true * np.log(q_true / q_lit)).sum(1)
               + (pm * np.log(pm / q_lit[:, s])).sum(1))
    tv_ok = 0.5 * np.abs(q_ok - q_true).sum(1).max()
    tv_lit = 0.5 * np.abs(q_lit - q_true).sum(1).min()
    mass_S_true = q_true[:, s].sum(1).mean()
    mass_S_lit = q_lit[:, s].sum(1).mean()
    shown = tv_ok < 1e-6 and tv_lit > 0.02 and lit_min.max() < -1e-3 and l_ok.max() < 1e-10
    return Outcome(bool(shown), {"tv_dustbin_form": float(tv_ok), "tv_no_dustbin": float(tv_lit),
                                 "min_no_dustbin": float(lit_min.max()),
                                 "mass_on_S_true": float(mass_S_true),
                                 "mass_on_S_no_dustbin": float(mass_S_lit)},
                   "teachers consistent with one q: with the dustbin the argmin is q (loss 0); "
                   "without it the 'KL' goes negative and pushes mass onto S_m")


# ------------------------------------------------------------------ baselines
@register_check("multi-teacher-average-ce", "CE to the teachers' average = T²KL(p̄‖q_T) + T²H(p̄); "
                "gradient T(q_T − p̄)/N", section="4.3",
                implements=[f"{_MT}.multi_teacher_ce", f"{_MT}.average_teacher_probs"])
def _avg_ce(rng, quick):
    from refimpl.nn import kl_div_with_temperature

    M, N, C, T = 3, 6, 5, 2.0
    tp = rng.dirichlet(np.ones(C), size=(M, N))
    z = rng.standard_normal((N, C))
    zt = Tensor(z, requires_grad=True)
    ce = mt.multi_teacher_ce(zt, tp, T)
    ce.backward()
    pbar = tp.mean(0)
    kl = kl_div_with_temperature(z, pbar, T, teacher_is_probs=True).item()
    H = -(pbar * np.log(pbar)).sum() / N
    qT = np.exp(z / T - (z / T).max(1, keepdims=True))
    qT /= qT.sum(1, keepdims=True)
    return Outcome.all_of(Outcome.compare(ce.item(), kl + T * T * H, atol=1e-12),
                          Outcome.compare(zt.grad, T * (qT - pbar) / N, atol=1e-12))


@register_check("top-k-teacher-probs", "top-K teacher probabilities: K entries, sum 1, ratios "
                "kept, K = C is the identity", section="4.3",
                implements=[f"{_MT}.top_k_teacher_probs"])
def _topk(rng, quick):
    p = rng.dirichlet(np.ones(12) * 0.3, size=20)
    out, (idx, vals) = mt.top_k_teacher_probs(p, 3, return_sparse=True)
    nnz = int((out > 0).sum(1).max())
    kept = np.take_along_axis(p, idx, 1)
    ratio_err = np.abs(vals / vals[:, :1] - kept / kept[:, :1]).max()
    ident = np.abs(mt.top_k_teacher_probs(p, 12) - p).max()
    sorted_ok = bool(np.all(kept[:, :1] >= np.sort(p, 1)[:, -1:]))
    ok = nnz == 3 and np.abs(out.sum(1) - 1).max() < 1e-12 and ratio_err < 1e-12 \
        and ident < 1e-15 and sorted_ok
    return Outcome(bool(ok), {"max_nonzeros": nnz, "ratio_err": float(ratio_err),
                              "identity_err": float(ident)})


# ------------------------------------------------------------------ claim in miniature
def _claim_task(quick):
    """The shared sentiment task of the §4 claims: ``(task, V, K, train, test)``."""
    from refimpl.data import load_task

    task = load_task("sentiment", quick=quick)
    return (task, len(task.vocab), task.n_classes,
            (task.X_train, task.len_train, task.y_train),
            (task.X_test, task.len_test, task.y_test))


def _lstm_teacher(train, V, K, s, epochs):
    """The §4 claims' LSTM teacher number ``s`` (emb 16, hidden 32), trained on hard labels."""
    from refimpl.nn import RNNClassifier, fit

    teacher = RNNClassifier(vocab_size=V, d_emb=16, d_hidden=32, n_classes=K, rng=100 + s)
    fit(teacher, train, epochs=epochs, lr=1e-2, batch_size=64, rng=s)
    return teacher


def _lstm_student(V, K, seed):
    """The §4 claims' small LSTM student (emb 8, hidden 8), untrained."""
    from refimpl.nn import RNNClassifier

    return RNNClassifier(vocab_size=V, d_emb=8, d_hidden=8, n_classes=K, rng=seed)


@register_claim("multi-teacher-average-helps", "a student trained on the cross-entropy to the "
                "average of several teachers' predictions beats one trained on hard labels "
                "only (§4.3, Fig. 4(G))", section="4.3", implements=[f"{_MT}.multi_teacher_ce"])
def _claim_average(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.nn import evaluate_accuracy, fit, predict_logits

    # protocol fixed before running: 3 LSTM teachers (emb 16, hidden 32) with different seeds;
    # a small LSTM student (emb 8, hidden 8) trained on the same sentences either with the
    # hard labels or with multi_teacher_ce to the teachers' mean prediction (T = 1), same
    # epochs / lr / batches; test accuracy averaged over student seeds. Reproduced iff the
    # mean gain is at least 0.5 points.
    # Measured when this was written (seed 0): quick (1500 sentences, 4 epochs, 3 seeds)
    # hard 79.5 % vs average-of-teachers 81.5 % (+2.1 points, 3/3 wins: reproduced); full size
    # (4000 sentences, 6 epochs, 5 seeds) 97.70 % vs 97.78 % (+0.08 points: NOT reproduced).
    # The soft targets help the under-trained student; once both converge the gain vanishes.
    n_seeds, epochs_t, epochs_s = (3, 4, 4) if quick else (5, 6, 6)
    with threadpool_limits(limits=1, user_api="blas"):
        task, V, K, train, test = _claim_task(quick)
        probs, acc_t = [], []
        for s in range(3):
            teacher = _lstm_teacher(train, V, K, s, epochs_t)
            acc_t.append(evaluate_accuracy(teacher, *test))
            z = predict_logits(teacher, task.X_train, task.len_train)
            p = np.exp(z - z.max(axis=1, keepdims=True))
            probs.append(p / p.sum(axis=1, keepdims=True))
        teacher_probs = np.stack(probs)  # (3, N, K)
        rows = np.arange(len(task.y_train))
        hard, soft = [], []
        for s in range(n_seeds):
            for mode, accs in (("hard", hard), ("avg", soft)):
                student = _lstm_student(V, K, 200 + s)
                if mode == "hard":
                    fit(student, train, epochs=epochs_s, lr=1e-2, batch_size=64, rng=s)
                else:  # the "labels" are row ids, so the loss can look up the teachers' rows
                    fit(student, (task.X_train, task.len_train, rows), epochs=epochs_s, lr=1e-2,
                        batch_size=64, rng=s,
                        loss_fn=lambda out, i: mt.multi_teacher_ce(out, teacher_probs[:, i]))
                accs.append(evaluate_accuracy(student, *test))
    gain = float(np.mean(soft) - np.mean(hard))
    sane = all(0.4 < a <= 1.0 for a in acc_t + hard + soft)
    return Outcome(sane, {"acc_teachers_mean": float(np.mean(acc_t)),
                          "acc_student_hard": float(np.mean(hard)),
                          "acc_student_avg_teachers": float(np.mean(soft)),
                          "gain_points": 100 * gain,
                          "wins": int(sum(b > a for a, b in zip(hard, soft))),
                          "seeds": n_seeds},
                   "make_sentiment; LSTM teachers 16/32 -> LSTM student 8/8, same data and "
                   "epochs; reproduced = mean gain >= 0.5 points",
                   reproduced=gain >= 0.005)


# ------------------------------------------------------------------ §4.1 and §4.4 objectives
_AR = "refimpl.distillation.architectures"
_TR = "refimpl.distillation.transformers"


def _softmax_loop(row, scale=1.0):
    m = max(float(v) for v in row)
    e = [math.exp((float(v) - m) * scale) for v in row]
    s = sum(e)
    return [x / s for x in e]


@register_check("kd-loss-by-hand", "Hinton KD loss α·T²·KL(p_T^t‖p_T^s) + (1−α)·CE equals a loop "
                "with math; T² keeps the soft gradient's scale as T grows (O(1/T) to (s−t)/(CB)), "
                "without T² it falls as 1/T²", section="4.1",
                implements=[f"{_AR}.kd_loss", f"{_AR}.kd_loss_t"])
def _kd_by_hand(rng, quick):
    from refimpl.distillation import kd_loss, kd_loss_t

    B, C, T, alpha = 5, 4, 3.0, 0.3
    s, t = rng.standard_normal((2, B, C)) * 2
    y = rng.integers(0, C, B)
    hand = 0.0
    for b in range(B):
        ps, pt = _softmax_loop(s[b], 1 / T), _softmax_loop(t[b], 1 / T)
        kl = sum(p * math.log(p / q) for p, q in zip(pt, ps))
        ce = -math.log(_softmax_loop(s[b])[y[b]])
        hand += (alpha * T * T * kl + (1 - alpha) * ce) / B
    value = Outcome.compare(kd_loss(s, t, T, y, alpha), hand, rtol=1e-12)
    sc, tc = s - s.mean(-1, keepdims=True), t - t.mean(-1, keepdims=True)
    limit = np.linalg.norm(sc - tc) / (C * B)
    from refimpl.nn.losses import kl_div_with_temperature

    norms, bare = {}, {}
    for T_ in (20.0, 80.0, 320.0):
        st = Tensor(sc, requires_grad=True)
        kd_loss_t(st, tc, T_).backward()
        norms[T_] = float(np.linalg.norm(st.grad))
        st = Tensor(sc, requires_grad=True)
        kl_div_with_temperature(st, tc, T_, scale_by_T2=False).backward()
        bare[T_] = float(np.linalg.norm(st.grad))
    err = [abs(norms[T_] / limit - 1) for T_ in (20.0, 80.0, 320.0)]
    falls = bare[20.0] / bare[80.0]  # 16 when the gradient falls as 1/T²
    ok = (value.passed and err[2] < 1e-3 and err[2] <= err[1] <= err[0]
          and abs(falls / 16 - 1) < 0.02)
    return Outcome(ok, {**value.numbers, "grad_norm_T20": norms[20.0],
                        "grad_norm_T320": norms[320.0], "limit_(s-t)/(CB)": float(limit),
                        "rel_gap_T320": err[2], "no_T2_grad_ratio_T20/T80": falls},
                   "with T² the soft-gradient norm converges to ‖s−t‖/(CB); without, it falls "
                   "as 1/T²; hand loop for the loss")


@register_check("minilm-relations", "MiniLM: value relation softmax(VVᵀ/√d) and the attention "
                "KL (0·log 0 = 0) equal loops by hand", section="4.4",
                implements=[f"{_TR}.value_relation", f"{_TR}.attention_kl"])
def _minilm_by_hand(rng, quick):
    from refimpl.distillation import attention_kl, value_relation

    B, H, n, d = 2, 2, 4, 3
    V = rng.standard_normal((B, H, n, d))
    R = value_relation(V)
    hand = np.array([[[_softmax_loop([sum(V[b, h, i, k] * V[b, h, j, k] for k in range(d))
                                      for j in range(n)], 1 / math.sqrt(d))
                       for i in range(n)] for h in range(H)] for b in range(B)])
    rel = Outcome.compare(R, hand, atol=1e-14)
    At = np.array([[[[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]]])  # a one-hot row: 0·log 0 terms
    As = np.array([[[[0.6, 0.3, 0.1], [0.1, 0.1, 0.8]]]])
    rows = [sum(p * math.log(p / q) for p, q in zip(At[0, 0, i], As[0, 0, i]) if p > 0)
            for i in range(2)]
    kl = Outcome.compare(attention_kl(At, As), sum(rows) / 2, atol=1e-15)
    return Outcome.all_of(rel, kl, detail="value relation and attention KL vs loops")


@register_check("bert-emd-transport", "BERT-EMD layer mapping: the LP's plan has the layer "
                "weights as marginals and its cost equals brute force (2×2) and the optimal "
                "assignment (uniform square weights)", section="4.4",
                implements=[f"{_TR}.emd_layer_mapping"])
def _emd_by_hand(rng, quick):
    from scipy.optimize import linear_sum_assignment

    from refimpl.distillation import emd_layer_mapping

    # 2×2: f11 ∈ [max(0, a1 − b2), min(a1, b1)] fixes the plan; the cost is linear in f11
    D = rng.uniform(0, 1, (2, 2))
    a, b = np.array([0.3, 0.7]), np.array([0.6, 0.4])

    def cost(f11):
        return (f11 * D[0, 0] + (a[0] - f11) * D[0, 1] + (b[0] - f11) * D[1, 0]
                + (a[1] - b[0] + f11) * D[1, 1])

    brute = min(cost(max(0.0, a[0] - b[1])), cost(min(a[0], b[0])))
    flow, total = emd_layer_mapping(D, a * 10, b * 5)  # unnormalised weights on purpose
    small = Outcome.compare(total, brute, atol=1e-12)
    marg = Outcome.compare(np.concatenate([flow.sum(1), flow.sum(0)]), np.concatenate([a, b]),
                           atol=1e-12)
    M = 6
    Dm = rng.uniform(0, 1, (M, M))
    r, c = linear_sum_assignment(Dm)
    _, tm = emd_layer_mapping(Dm, np.ones(M), np.ones(M))
    assign = Outcome.compare(tm, Dm[r, c].sum() / M, atol=1e-12)
    return Outcome.all_of(small, marg, assign, detail="2×2 brute force; marginals; assignment")


@register_check("pkd-theseus-schedules", "PKD-Skip/PKD-Last layer maps (12→6: 2,4,…,10 and "
                "7,…,11) and Theseus' replacement rate min(1, k·t + b)", section="4.4",
                implements=[f"{_TR}.pkd_layer_map", f"{_TR}.theseus_replace_rate"])
def _pkd_theseus(rng, quick):
    from refimpl.distillation import pkd_layer_map, theseus_replace_rate

    skip, last = pkd_layer_map(12, 6, "skip"), pkd_layer_map(12, 6, "last")
    rates = [theseus_replace_rate(t, 5e-4, 0.3) for t in (0, 400, 1400, 10**5)]
    ok = skip == [2, 4, 6, 8, 10] and last == [7, 8, 9, 10, 11] and np.allclose(
        rates, [0.3, 0.5, 1.0, 1.0], rtol=0, atol=1e-15)
    return Outcome(ok, {"skip": str(skip), "last": str(last), "rates": str(rates)},
                   "hand-listed maps and rates")


@register_claim("soft-targets-beat-hard-labels", "a small student distilled with Hinton's soft "
                "targets at T > 1 beats the same student trained at T = 1 and on hard labels "
                "(§4.1; Hinton et al. 2015)", section="4.1", implements=[f"{_AR}.kd_loss_t"])
def _claim_temperature(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.distillation import kd_loss_t
    from refimpl.nn import evaluate_accuracy, fit, predict_logits

    # protocol fixed before running: one LSTM teacher (emb 16, hidden 32); a small LSTM student
    # (emb 8, hidden 8) trained on the same sentences, epochs, lr and batches with (a) the hard
    # labels, (b) kd_loss at T = 1 and (c) kd_loss at T = 4, both with α = 0.5 and the labels;
    # test accuracy averaged over student seeds. Reproduced iff (c) beats both (a) and (b) by at
    # least 0.5 points on the mean.
    # Measured when this was written (seed 0): quick (3 seeds) hard 79.5 %, T = 1 80.3 %,
    # T = 4 80.7 % (+1.3 points over hard labels but only +0.47 over T = 1: NOT reproduced); full size
    # (5 seeds) 97.70 / 97.92 / 97.66 % (no gain: NOT reproduced). Soft targets help the
    # under-trained student over hard labels; the temperature adds nothing measurable here.
    n_seeds, epochs_t, epochs_s = (3, 4, 4) if quick else (5, 6, 6)
    with threadpool_limits(limits=1, user_api="blas"):
        task, V, K, train, test = _claim_task(quick)
        teacher = _lstm_teacher(train, V, K, 0, epochs_t)
        acc_t = evaluate_accuracy(teacher, *test)
        zt = predict_logits(teacher, task.X_train, task.len_train)  # (N, K)
        rows = np.arange(len(task.y_train))
        y = task.y_train
        accs: dict = {"hard": [], "T1": [], "T4": []}
        for s in range(n_seeds):
            for mode in accs:
                student = _lstm_student(V, K, 200 + s)
                if mode == "hard":
                    fit(student, train, epochs=epochs_s, lr=1e-2, batch_size=64, rng=s)
                else:  # the "labels" are row ids, so the loss can look up the teacher's logits
                    T = 1.0 if mode == "T1" else 4.0
                    fit(student, (task.X_train, task.len_train, rows), epochs=epochs_s,
                        lr=1e-2, batch_size=64, rng=s,
                        loss_fn=lambda out, i, T=T: kd_loss_t(out, zt[i], T, y[i], 0.5))
                accs[mode].append(evaluate_accuracy(student, *test))
    mean = {k: float(np.mean(v)) for k, v in accs.items()}
    gain_hard, gain_t1 = mean["T4"] - mean["hard"], mean["T4"] - mean["T1"]
    sane = all(0.4 < a <= 1.0 for a in [acc_t] + sum(accs.values(), []))
    return Outcome(sane, {"acc_teacher": float(acc_t), "acc_hard": mean["hard"],
                          "acc_T1": mean["T1"], "acc_T4": mean["T4"],
                          "gain_vs_hard_points": 100 * gain_hard,
                          "gain_vs_T1_points": 100 * gain_t1, "seeds": n_seeds},
                   "load_task('sentiment'); LSTM teacher 16/32 -> LSTM student 8/8, α = 0.5; "
                   "reproduced = T = 4 beats hard labels and T = 1 by >= 0.5 points",
                   reproduced=gain_hard >= 0.005 and gain_t1 >= 0.005)


@register_claim("dml-peers-beat-independent", "two peers trained by deep mutual learning each "
                "beat the same peers trained alone on the hard labels (§4.2; Zhang et al. 2018)",
                section="4.2", implements=["refimpl.distillation.collaborative.mutual_learning_losses"])
def _claim_dml(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.distillation import mutual_learning_losses
    from refimpl.nn import ModuleList, evaluate_accuracy, fit
    from refimpl.nn import functional as F

    # protocol fixed before running: two small LSTM peers (emb 8, hidden 8, seeds 300 + 2s and
    # 301 + 2s) trained with refimpl.nn.fit (a) alone on the hard labels and (b) together: one
    # fit over both peers whose loss is the sum of their mutual-learning losses (CE + KL from the
    # other's fixed prediction, T = 1), so each peer's gradient is its own loss's and Adam, being
    # per-parameter, steps each peer as its own optimiser would; same epochs, lr and batches.
    # Reproduced iff the mean test accuracy of the DML peers beats the independent peers' by
    # >= 0.5 points.
    # Measured when this was written (seed 0): quick (4 peers) 83.65 % alone vs 83.25 % DML
    # (-0.4 points), full size (8 peers) 97.59 % vs 97.99 % (+0.40): NOT reproduced (at full
    # size the sign agrees with the paper, the size stays under the threshold).
    n_seeds, epochs = (2, 4) if quick else (4, 6)
    with threadpool_limits(limits=1, user_api="blas"):
        task, V, K, train, test = _claim_task(quick)

        def both(pair, X, lengths):  # (B, 2K): peer 0's logits, then peer 1's
            return F.concat([p(X, lengths) for p in pair], axis=1)

        def dml_loss(out, y):
            l0, l1 = mutual_learning_losses([out[:, :K], out[:, K:]], y)
            return l0 + l1

        alone, mutual = [], []
        for s in range(n_seeds):
            for k in range(2):
                m = _lstm_student(V, K, 300 + 2 * s + k)
                fit(m, train, epochs=epochs, lr=1e-2, batch_size=64, rng=s)
                alone.append(evaluate_accuracy(m, *test))
            pair = ModuleList(_lstm_student(V, K, 300 + 2 * s + k) for k in range(2))
            fit(pair, train, epochs=epochs, lr=1e-2, batch_size=64, rng=s, forward=both,
                loss_fn=dml_loss)
            mutual += [evaluate_accuracy(p, *test) for p in pair]
    gain = float(np.mean(mutual) - np.mean(alone))
    sane = all(0.4 < a <= 1.0 for a in alone + mutual)
    return Outcome(sane, {"acc_alone": float(np.mean(alone)), "acc_dml": float(np.mean(mutual)),
                          "gain_points": 100 * gain, "peers": len(alone)},
                   "load_task('sentiment'); two LSTM 8/8 peers, alone vs mutual; reproduced = "
                   "mean gain >= 0.5 points", reproduced=gain >= 0.005)


# ------------------------------------------------------------------ §4.1 hints, Sobolev, Q-KD
_BR = "refimpl.distillation.bert_recipes"
_SQ = "refimpl.distillation.sequence"


@register_check("fitnets-hints", "FitNets: hint loss ½‖u_h − r(v_g)‖²/B equals a loop; its "
                "gradient equals central differences; stage 1 trains only up to the guided "
                "layer", section="4.1",
                implements=[f"{_AR}.fitnets_hint_loss_t", f"{_AR}.fit_fitnets"])
def _fitnets(rng, quick):
    from refimpl.distillation import fit_fitnets, fitnets_hint_loss_t
    from refimpl.nn import Linear, RNNClassifier

    B, ds, dt = 4, 3, 5
    reg = Linear(ds, dt, rng=rng)
    g, h = rng.standard_normal((B, ds)), rng.standard_normal((B, dt))
    W, b = reg.W.data, reg.b.data
    hand = sum(0.5 * sum((h[i, k] - (sum(W[k, j] * g[i, j] for j in range(ds)) + b[k])) ** 2
                         for k in range(dt)) for i in range(B)) / B
    val = Outcome.compare(fitnets_hint_loss_t(g, h, reg).item(), hand, rtol=1e-13)
    gc = gradcheck(lambda a: fitnets_hint_loss_t(a, h, reg), [g], rng=rng)
    X = rng.integers(1, 20, (48, 5))
    L = rng.integers(2, 6, 48)
    y = (X[:, 0] % 2).astype(np.int64)
    teacher = RNNClassifier(vocab_size=20, d_emb=6, d_hidden=8, n_classes=2, rng=0)
    student = RNNClassifier(vocab_size=20, d_emb=4, d_hidden=4, n_classes=2, rng=1)
    fc0 = student.fc.W.data.copy()
    emb0 = student.embedding.W.data.copy()
    fit_fitnets(student, teacher, (X, L, y), guided=lambda m, *a: m.features(*a),
                hint=lambda m, *a: m.features(*a), regressor=Linear(4, 8, rng=2),
                epochs_hint=1, epochs_kd=0, rng=0, progress=False)
    staged = bool(np.array_equal(student.fc.W.data, fc0)
                  and not np.array_equal(student.embedding.W.data, emb0))
    ok = val.passed and gc["max_abs_err"] < 1e-8 and staged
    return Outcome(ok, {**val.numbers, "grad_max_abs_err": gc["max_abs_err"],
                        "stage1_fc_untouched_embedding_moved": int(staged)},
                   "loop by hand; gradcheck; stage 1 on an LSTM student")


@register_check("sobolev-jacobian-projections", "Sobolev training: the tape's J v (central "
                "differences) equals the analytic Jacobian W₂ diag(1 − tanh²) W₁ v of a tanh "
                "MLP within ε²·bound; the loss is 0 for equal nets and its gradient is right",
                section="4.1",
                implements=[f"{_AR}.directional_derivative_t", f"{_AR}.sobolev_loss_t"])
def _sobolev(rng, quick):
    from refimpl.distillation import directional_derivative_t, sobolev_loss_t
    from refimpl.nn import Linear

    B, d, hdim, C, eps = 6, 4, 5, 3, 1e-4
    l1, l2 = Linear(d, hdim, rng=rng), Linear(hdim, C, rng=rng)

    def f(x):
        return l2(F.tanh(l1(x)))

    x, v = rng.standard_normal((2, B, d))
    got = directional_derivative_t(f, x, v, eps).data
    a = np.tanh(x @ l1.W.data.T + l1.b.data)  # (B, h)
    exact = ((1 - a * a) * (v @ l1.W.data.T)) @ l2.W.data.T  # W₂ diag(1 − a²) W₁ v
    # central-difference error ε²/6 |f'''| ≤ ε²/6 · ‖W₂‖₂ · 2 · max‖W₁v‖³, plus round-off
    bound = eps ** 2 / 6 * np.linalg.norm(l2.W.data, 2) * 2 * np.max(
        np.linalg.norm(v @ l1.W.data.T, axis=1)) ** 3 + 1e-15 / eps
    err = float(np.abs(got - exact).max())
    zero = sobolev_loss_t(f, f, x, n_directions=2, rng=0).item()
    g2 = Linear(hdim, C, rng=rng)

    def loss(W1):
        return sobolev_loss_t(lambda z: l2(F.tanh(F.linear(z, W1, l1.b))),
                              lambda z: g2(F.tanh(l1(z))), x, n_directions=2, beta=0.5,
                              eps=1e-3, rng=0)

    gc = gradcheck(loss, [l1.W.data.copy()], rng=rng)
    ok = err <= bound and zero == 0.0 and gc["max_abs_err"] < 1e-7
    return Outcome(ok, {"jvp_max_abs_err": err, "error_bound": float(bound),
                        "loss_equal_nets": zero, "grad_max_abs_err": gc["max_abs_err"]},
                   "analytic Jacobian of a one-hidden-layer tanh MLP")


@register_check("quantized-distillation-student", "Polino et al.'s quantised student: every "
                "weight matrix takes at most 2^bits values in the forward pass, which equals the "
                "same network with Q(W) stored; the shadow weights stay full precision",
                section="4.1", implements=[f"{_AR}.quantize_student_"])
def _quantized_student(rng, quick):
    from refimpl.distillation import quantize_student_
    from refimpl.nn import RNNClassifier, no_grad
    from refimpl.quantization import quantize_uniform

    bits = 3
    m = RNNClassifier(vocab_size=15, d_emb=4, d_hidden=6, n_classes=3, rng=0)
    ref = RNNClassifier(vocab_size=15, d_emb=4, d_hidden=6, n_classes=3, rng=0)
    names = quantize_student_(m, bits=bits)
    levels = 0
    for (k, p), (_, q) in zip(m.named_parameters(), ref.named_parameters()):
        if k.split(".")[-1].startswith("W"):
            q.data[:] = quantize_uniform(p.data, bits)
            levels = max(levels, len(np.unique(q.data)))
    X = rng.integers(1, 15, (5, 4))
    L = np.full(5, 4)
    with no_grad():
        cmp = Outcome.compare(m(X, L).data, ref(X, L).data, atol=1e-12)
    shadow = max(len(np.unique(p.data)) for k, p in m.named_parameters()
                 if k.split(".")[-1].startswith("W"))
    ok = cmp.passed and levels <= 2 ** bits and shadow > 2 ** bits and len(names) >= 3
    return Outcome(ok, {**cmp.numbers, "max_levels_forward": levels,
                        "max_levels_shadow": shadow, "quantised_modules": len(names)})


@register_check("teacher-assistants-and-threshold", "Teacher-assistant chain trains one model "
                "per size, each from the previous (10→6→4→2-style); Tan et al.'s τ: distil "
                "while student < teacher + τ", section="4.3",
                implements=[f"{_MT}.teacher_assistant_chain",
                            f"{_MT}.selective_distillation_flags"])
def _ta_threshold(rng, quick):
    from refimpl.distillation import selective_distillation_flags, teacher_assistant_chain
    from refimpl.nn import RNNClassifier

    flags = selective_distillation_flags(np.array([0.80, 0.90, 0.91, 0.70]),
                                         np.array([0.85, 0.89, 0.90, 0.70]), tau=0.01)
    hand = [True, False, False, True]  # 0.80 < 0.86; 0.90 ≥ 0.90; 0.91 ≥ 0.91; 0.70 < 0.71
    X = rng.integers(1, 20, (32, 5))
    L = np.full(32, 5)
    y = (X[:, 0] % 2).astype(np.int64)
    seen = []

    def make(size, seed):
        seen.append(size)
        return RNNClassifier(vocab_size=20, d_emb=4, d_hidden=size, n_classes=2, rng=seed)

    teacher = RNNClassifier(vocab_size=20, d_emb=4, d_hidden=10, n_classes=2, rng=0)
    chain = teacher_assistant_chain(teacher, make, [6, 4, 2], (X, L, y), epochs=1, rng=0,
                                    progress=False)
    ok = flags.tolist() == hand and seen == [6, 4, 2] and [m.rnn.hidden_size for m in chain] \
        == [6, 4, 2]
    return Outcome(ok, {"flags": str(flags.tolist()), "chain_sizes": str(seen)})


# ------------------------------------------------------------------ §4.4 recipes
@register_check("tinybert-losses", "TinyBERT: g(m) = mN/M; the attention-score MSE equals a "
                "loop over heads of (qkᵀ/√d, padded keys 0); every loss is 0 when the student "
                "is the teacher (identity projections)", section="4.4",
                implements=[f"{_BR}.tinybert_layer_map", f"{_BR}.tinybert_losses_t"])
def _tinybert(rng, quick):
    from refimpl.distillation import TinyBertProjections, tinybert_layer_map, tinybert_losses_t
    from refimpl.nn import TransformerClassifier, no_grad

    maps = tinybert_layer_map(12, 4) == [3, 6, 9, 12]
    m = TransformerClassifier(vocab_size=20, d_model=6, num_heads=2, d_ff=8, num_layers=2,
                              max_len=5, n_classes=2, rng=0)
    s = TransformerClassifier(vocab_size=20, d_model=6, num_heads=2, d_ff=8, num_layers=1,
                              max_len=5, n_classes=2, rng=1)
    X = rng.integers(1, 20, (3, 5))
    L = np.array([5, 3, 4])
    valid = np.arange(5)[None] < L[:, None]
    proj = TinyBertProjections(6, 6, rng=0)
    for lin in (proj.W_e, proj.W_h):
        lin.W.data[:] = np.eye(6)
        lin.b.data[:] = 0.0
    with no_grad():
        zt, ot = m(X, L, output_hidden_states=True, output_attentions=True)
        zs, os_ = s(X, L, output_hidden_states=True, output_attentions=True)
        same = tinybert_losses_t(ot, ot, zt, zt.data, proj, [1, 2], valid)
        diff = tinybert_losses_t(os_, ot, zs, zt.data, proj, [2], valid)
    zero = max(same[k].item() for k in ("embedding", "hidden", "attention"))
    qs, ks = os_.attentions[0].query.data, os_.attentions[0].key.data
    qt, kt = ot.attentions[1].query.data, ot.attentions[1].key.data
    tot, cnt = 0.0, 0
    for b in range(3):
        for hh in range(2):
            for i in range(5):
                for j in range(5):
                    a = float(qs[b, hh, i] @ ks[b, hh, j]) / math.sqrt(3) if valid[b, j] else 0.0
                    c = float(qt[b, hh, i] @ kt[b, hh, j]) / math.sqrt(3) if valid[b, j] else 0.0
                    tot += (a - c) ** 2
                    cnt += 1
    att = Outcome.compare(diff["attention"].item(), tot / cnt, rtol=1e-12)
    ok = maps and zero == 0.0 and att.passed
    return Outcome(ok, {**att.numbers, "loss_at_copy": zero,
                        "prediction_loss": diff["prediction"].item()},
                   "12→4 map; attention scores by a loop")


@register_check("distilbert-triple-loss", "DistilBERT: 5·T²KL + 2·CE + 1·(1 − cos) over real "
                "positions equals a loop; a student built from every other teacher layer "
                "copies those layers exactly", section="4.4",
                implements=[f"{_BR}.distilbert_loss_t", f"{_BR}.init_from_teacher_layers_"])
def _distilbert(rng, quick):
    from refimpl.distillation import distilbert_loss_t, init_from_teacher_layers_
    from refimpl.nn import TransformerClassifier

    B, n, d, C, T = 3, 4, 5, 3, 2.0
    zs, zt = rng.standard_normal((2, B, C))
    y = np.array([0, 2, 1])
    hs, ht = rng.standard_normal((2, B, n, d))
    valid = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    got = distilbert_loss_t(Tensor(zs), zt, y, Tensor(hs), ht, valid, T=T).item()
    soft = hard = 0.0
    for b in range(B):
        ps, pt = _softmax_loop(zs[b], 1 / T), _softmax_loop(zt[b], 1 / T)
        soft += T * T * sum(p * math.log(p / q) for p, q in zip(pt, ps)) / B
        hard += -math.log(_softmax_loop(zs[b])[y[b]]) / B
    cos = [1 - float(hs[b, i] @ ht[b, i]) / (np.linalg.norm(hs[b, i]) * np.linalg.norm(ht[b, i]))
           for b in range(B) for i in range(n) if valid[b, i]]
    val = Outcome.compare(got, 5 * soft + 2 * hard + sum(cos) / len(cos), rtol=1e-12)
    teacher = TransformerClassifier(vocab_size=10, d_model=4, num_heads=2, d_ff=6, num_layers=4,
                                    max_len=4, n_classes=2, rng=0)
    student = TransformerClassifier(vocab_size=10, d_model=4, num_heads=2, d_ff=6, num_layers=2,
                                    max_len=4, n_classes=2, rng=1)
    init_from_teacher_layers_(student, teacher, [0, 2])
    copied = all(np.array_equal(a.data, b.data) for j, i in enumerate([0, 2])
                 for (_, a), (_, b) in zip(student.layers[j].named_parameters(),
                                           teacher.layers[i].named_parameters()))
    return Outcome(val.passed and copied, {**val.numbers, "layers_copied": int(copied)})


@register_check("theseus-module-replacement", "BERT-of-Theseus: rate 0 is the predecessor, "
                "rate 1 and eval are the successor; modules are replaced with frequency p "
                "(Bernoulli per module, within 4σ)", section="4.4",
                implements=[f"{_BR}.TheseusClassifier", f"{_BR}.TheseusScheduler"])
def _theseus(rng, quick):
    from refimpl.distillation import TheseusClassifier
    from refimpl.nn import TransformerClassifier, no_grad

    pred = TransformerClassifier(vocab_size=10, d_model=4, num_heads=2, d_ff=6, num_layers=4,
                                 max_len=4, n_classes=2, rng=0)
    X = rng.integers(1, 10, (3, 4))
    L = np.array([4, 2, 3])
    th = TheseusClassifier(pred, n_modules=2, replace_rate=0.0, rng=0)
    th.train()
    with no_grad():
        e0 = float(np.abs(th(X, L).data - pred(X, L).data).max())
        th.replace_rate = 1.0
        one = th(X, L).data
        th.eval()
        e1 = float(np.abs(th(X, L).data - one).max())
        e2 = float(np.abs(th.successor_model()(X, L).data - one).max())
        th.train()
        th.replace_rate = p = 0.3
        n = 200 if quick else 1000
        draws = np.array([(th(X, L), th.last_draw)[1] for _ in range(n)])
    freq = float(draws.mean())
    sigma = math.sqrt(p * (1 - p) / draws.size)
    ok = e0 < 1e-12 and e1 == 0.0 and e2 == 0.0 and abs(freq - p) < 4 * sigma
    return Outcome(ok, {"rate0_vs_predecessor": e0, "eval_vs_rate1": e1,
                        "successor_model_vs_rate1": e2, "replace_freq": freq, "p": p,
                        "draws": int(draws.size)})


def _lm_rows(rng, n, T=7, V=15):
    """``<bos> …`` rows of a causal LM, random tokens, lengths in [2, T] (one full row)."""
    X = rng.integers(4, V, (n, T))
    X[:, 0] = 2
    L = rng.integers(2, T + 1, n)
    L[0] = T
    X[np.arange(T)[None] >= L[:, None]] = 0
    return X, L


@register_check("tinybert-lm-gradcheck", "TinyBERT on a causal Transformer LM: the per-token "
                "prediction loss (soft CE over the vocabulary at every real position) equals "
                "a loop; the tape gradient of all four losses = central differences; future "
                "keys' scores are 0; a copied student has zero layer losses", section="4.4",
                implements=[f"{_BR}.tinybert_losses_t", f"{_BR}.fit_tinybert"])
def _tinybert_lm(rng, quick):
    import copy

    from refimpl.distillation import TinyBertProjections
    from refimpl.distillation.bert_recipes import _forward_pair, _scores
    from refimpl.nn import TransformerLanguageModel
    from refimpl.nn.gradcheck import numerical_grad

    def lm(d, layers, seed):
        return TransformerLanguageModel(vocab_size=15, d_model=d, num_heads=2, d_ff=8,
                                        num_layers=layers, max_len=7, rng=seed)

    X, L = _lm_rows(rng, 3 if quick else 5)
    t, s = lm(8, 2, 0), lm(4, 1, 1)
    proj = TinyBertProjections(4, 8, rng=2)

    def losses(student):
        from refimpl.distillation import tinybert_losses_t

        so, to, valid = _forward_pair(student, t, X, L)
        return tinybert_losses_t(so[1], to[1], so[0], to[0].data, proj, [2], valid,
                                 causal=True), so, to, valid

    d, so, to, valid = losses(s)
    # the prediction loss by a loop over the real positions
    tot, cnt = 0.0, 0
    for b in range(len(X)):
        for i in range(X.shape[1] - 1):
            if valid[b, i]:
                pt = _softmax_loop(to[0].data[b, i])
                ps = _softmax_loop(so[0].data[b, i])
                tot -= sum(p * math.log(q) for p, q in zip(pt, ps))
                cnt += 1
    pred = Outcome.compare(d["prediction"].item(), tot / cnt, rtol=1e-12,
                           detail="prediction loss vs loop")
    # gradients of the sum through the causal attention scores, the output layer and W_h
    total = d["embedding"] + d["hidden"] + d["attention"] + d["prediction"]
    total.backward()
    mha = s.layers[0].self_attn
    errs = []
    for P in (mha.W_q.W, mha.W_k.W, s.out.W, proj.W_h.W):
        def f():
            e = losses(s)[0]
            return (e["embedding"] + e["hidden"] + e["attention"] + e["prediction"]).item()

        errs.append(float(np.abs(numerical_grad(f, P.data, np.array(1.0)) - P.grad).max()))
    # central differences, h = 1e-6, on losses of O(1): ≲ 20 ulps / h ≈ 5e-9
    grad = Outcome(max(errs) < 2e-8, {"max_abs_err": max(errs), "atol": 2e-8},
                   "gradients vs central differences")
    att = so[1].attentions[0]
    sc = _scores(att, valid, causal=True).data
    future = np.triu(np.ones(sc.shape[-2:], bool), 1)
    causal_ok = bool(np.all(sc[..., future] == 0.0))
    same = copy.deepcopy(t)
    pid = TinyBertProjections(8, 8, rng=0)
    for lin in (pid.W_e, pid.W_h):
        lin.W.data[:] = np.eye(8)
        lin.b.data[:] = 0.0
    so2, to2, v2 = _forward_pair(same, t, X, L)
    from refimpl.distillation import tinybert_losses_t

    z = tinybert_losses_t(so2[1], to2[1], so2[0], to2[0].data, pid, [1, 2], v2, causal=True)
    zero = max(z[k].item() for k in ("embedding", "hidden", "attention"))
    ok = pred.passed and grad.passed and causal_ok and zero == 0.0
    return Outcome(ok, {**pred.numbers, **grad.numbers, "future_scores_zero": int(causal_ok),
                        "layer_losses_at_copy": zero}, "per-token TinyBERT on a causal LM")


@register_check("theseus-lm", "BERT-of-Theseus with a causal Transformer LM predecessor: rate 0 "
                "is the predecessor, eval is the successor LM, logits stay causal",
                section="4.4", implements=[f"{_BR}.TheseusClassifier"])
def _theseus_lm(rng, quick):
    from refimpl.distillation import TheseusClassifier
    from refimpl.nn import TransformerLanguageModel, no_grad

    pred = TransformerLanguageModel(vocab_size=15, d_model=8, num_heads=2, d_ff=8, num_layers=2,
                                    max_len=7, rng=0)
    X, L = _lm_rows(rng, 4)
    th = TheseusClassifier(pred, n_modules=1, replace_rate=0.0, rng=0)
    with no_grad():
        th.train()
        e0 = float(np.abs(th(X, L).data - pred(X, L).data).max())
        th.successor[0].linear1.W.data += 0.1  # a successor that differs from its copy
        th.eval()
        out = th(X, L).data
        e1 = float(np.abs(th.successor_model()(X, L).data - out).max())
        X2 = X.copy()
        X2[:, 4:] = 7
        e2 = float(np.abs(th(X2, L).data[:, :4] - out[:, :4]).max())
    ok = e0 < 1e-12 and e1 == 0.0 and e2 == 0.0
    return Outcome(ok, {"rate0_vs_predecessor": e0, "eval_vs_successor_model": e1,
                        "prefix_change_from_later_tokens": e2})


@register_check("sequence-level-kd-targets", "Seq-KD: the targets are the teacher's beam top-1; "
                "Seq-Inter picks the beam hypothesis with the best sentence BLEU (brute force); "
                "word-level KD with a one-hot teacher is the NLL", section="4.1",
                implements=[f"{_SQ}.sequence_kd_targets", f"{_SQ}.seq_inter_targets",
                            f"{_SQ}.word_kd_loss_t"])
def _seqkd(rng, quick):
    from refimpl.data import bleu, make_translation
    from refimpl.distillation import seq_inter_targets, sequence_kd_targets, word_kd_loss_t
    from refimpl.nn import Seq2Seq, fit_seq2seq

    task = make_translation(n_train=48, n_val=4, n_test=4, rng=0)
    teacher = Seq2Seq(src_vocab=len(task.src_vocab), tgt_vocab=len(task.tgt_vocab), d_emb=8,
                      d_hidden=8, rng=0)
    fit_seq2seq(teacher, task, epochs=1, rng=0, progress=False)
    src, sl = task.src_train[:8], task.src_len_train[:8]
    ref, rl = task.tgt_train[:8], task.tgt_len_train[:8]
    toks, scores, lens = teacher.beam_search(src, sl, beam_size=3, max_len=12)
    tgt, tl = sequence_kd_targets(teacher, src, sl, beam_size=3, max_len=12)
    mism = sum(int(not np.array_equal(tgt[i, 1:tl[i]], toks[i, 0, :lens[i, 0]]))
               for i in range(8))
    ti, til, rank = seq_inter_targets(teacher, src, sl, ref, rl, beam_size=3, max_len=12)
    for i in range(8):
        r = [int(t) for t in ref[i, 1:rl[i] - 1]]
        sims = [bleu([[int(t) for t in toks[i, k, :lens[i, k]] if t != teacher.eos]], [r],
                     smooth="add-k") for k in range(3) if np.isfinite(scores[i, k])]
        mism += int(rank[i] != int(np.argmax(sims)))
        mism += int(not np.array_equal(ti[i, 1:til[i]], toks[i, rank[i], :lens[i, rank[i]]]))
    zs = rng.standard_normal((1, 1, 5))
    zt = np.zeros((1, 1, 5))
    zt[0, 0, 3] = 800.0  # a one-hot teacher
    nll = -math.log(_softmax_loop(zs[0, 0])[3])
    w = Outcome.compare(word_kd_loss_t(zs, zt, np.ones((1, 1), bool)).item(), nll, rtol=1e-12)
    return Outcome(mism == 0 and w.passed, {"mismatches": mism, **w.numbers,
                                            "seq_inter_not_top1": int((rank > 0).sum())})


# ------------------------------------------------------------------ more claims in miniature
def _translation_bleu(model, task):
    """Corpus BLEU (0–100) of greedy decodes on the test split (tokens up to <eos>)."""
    from refimpl.data import bleu

    toks, lens = model.greedy_decode(task.src_test, task.src_len_test, max_len=14)
    eos = model.eos
    hyps = [[int(x) for x in t[:n] if x != eos] for t, n in zip(toks, lens)]
    refs = [[int(x) for x in r[1:n - 1]] for r, n in zip(task.tgt_test, task.tgt_len_test)]
    return 100.0 * bleu(hyps, refs)


@register_claim("seq-kd-beats-word-kd", "a small seq2seq student trained on the teacher's "
                "beam output (sequence-level KD) beats word-level KD in BLEU (§4.1; Kim & Rush "
                "2016)", section="4.1",
                implements=[f"{_SQ}.sequence_kd_targets", f"{_SQ}.seq_inter_targets",
                            f"{_SQ}.fit_word_kd"])
def _claim_seqkd(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.data import load_task
    from refimpl.distillation import fit_word_kd, seq_inter_targets, sequence_kd_targets
    from refimpl.nn import Seq2Seq, fit_seq2seq

    # protocol fixed before running: the reordering-translation task; a GRU+attention teacher
    # (emb 32, hidden 64, lr 1e-2, 6 epochs); students (emb 16, hidden 24, lr 1e-2, 6 epochs,
    # the same batches) trained (a) on the references (NLL), (b) word-level KD (α = 0.5, T = 1),
    # (c) sequence-level KD on the teacher's beam-4 top-1, (d) Seq-Inter (the beam-4 hypothesis
    # closest to the reference by smoothed sentence BLEU); greedy-decoded test BLEU (0–100)
    # averaged over student seeds. Reproduced iff (c) beats (b) by at least 0.5 BLEU.
    # Measured when this was written (seed 0): quick (1 seed) teacher 98.7, NLL 52.7, word-KD
    # 49.9, Seq-KD 55.6, Seq-Inter 53.2 (+5.7: reproduced); full (3 seeds) teacher 100, NLL
    # 99.35, word-KD 99.09, Seq-KD 99.80, Seq-Inter 99.92 (+0.71: reproduced).
    n_seeds, epochs = (1, 6) if quick else (3, 8)
    with threadpool_limits(limits=1, user_api="blas"):
        task = load_task("translation", quick=quick)
        V1, V2 = len(task.src_vocab), len(task.tgt_vocab)
        teacher = Seq2Seq(src_vocab=V1, tgt_vocab=V2, d_emb=32, d_hidden=64, rng=0)
        tr = (task.src_train, task.src_len_train, task.tgt_train, task.tgt_len_train)
        fit_seq2seq(teacher, tr, epochs=epochs, lr=1e-2, rng=0, progress=False)
        b_teacher = _translation_bleu(teacher, task)
        sk = sequence_kd_targets(teacher, task.src_train, task.src_len_train, beam_size=4,
                                 max_len=14)
        si = seq_inter_targets(teacher, task.src_train, task.src_len_train, task.tgt_train,
                               task.tgt_len_train, beam_size=4, max_len=14)
        res: dict = {"nll": [], "word": [], "seq": [], "inter": []}
        for s in range(n_seeds):
            for mode in res:
                st = Seq2Seq(src_vocab=V1, tgt_vocab=V2, d_emb=16, d_hidden=24, rng=50 + s)
                kw = dict(epochs=epochs, lr=1e-2, rng=s, progress=False)
                if mode == "nll":
                    fit_seq2seq(st, tr, **kw)
                elif mode == "word":
                    fit_word_kd(st, teacher, tr, alpha=0.5, **kw)
                elif mode == "seq":
                    fit_seq2seq(st, (task.src_train, task.src_len_train, *sk), **kw)
                else:
                    fit_seq2seq(st, (task.src_train, task.src_len_train, si[0], si[1]), **kw)
                res[mode].append(_translation_bleu(st, task))
    mean = {k: float(np.mean(v)) for k, v in res.items()}
    gain = mean["seq"] - mean["word"]
    sane = all(0.0 <= b <= 100.0 for b in [b_teacher] + sum(res.values(), []))
    return Outcome(sane, {"bleu_teacher": b_teacher, "bleu_nll": mean["nll"],
                          "bleu_word_kd": mean["word"], "bleu_seq_kd": mean["seq"],
                          "bleu_seq_inter": mean["inter"], "gain_seq_vs_word": gain,
                          "seq_inter_not_top1": int((si[2] > 0).sum()), "seeds": n_seeds},
                   "translation task; GRU teacher 32/64 -> student 16/24; reproduced = "
                   "Seq-KD beats word-KD by >= 0.5 BLEU", reproduced=gain >= 0.5)


_TF_CACHE: dict = {}


def _tf_model(V, K, T, layers, d, seed):
    from refimpl.nn import TransformerClassifier

    return TransformerClassifier(vocab_size=V, d_model=d, num_heads=2, d_ff=2 * d,
                                 num_layers=layers, max_len=T, n_classes=K, rng=seed)


def _tf_teacher(quick):
    """The §4.4 claims' Transformer teacher (post-LN, d_model 16, 2 heads, 2 layers quick /
    4 full), trained once per process on the shared sentiment task; returns ``(task, V, K,
    train, test, teacher_state, layers)``."""
    from refimpl.nn import fit

    if quick not in _TF_CACHE:
        task, V, K, train, test = _claim_task(quick)
        layers = 2 if quick else 4
        t = _tf_model(V, K, task.X_train.shape[1], layers, 16, 0)
        fit(t, train, epochs=4 if quick else 6, lr=5e-3, batch_size=64, rng=0, progress=False)
        _TF_CACHE[quick] = (task, V, K, train, test, t.state_dict(), layers)
    task, V, K, train, test, state, layers = _TF_CACHE[quick]
    t = _tf_model(V, K, task.X_train.shape[1], layers, 16, 0)
    t.load_state_dict(state)
    return task, V, K, train, test, t, layers


def _tf_setup(quick):
    """The default setting of the §4.4 Transformer claims: :func:`_tf_teacher`'s task and
    teacher as a namespace (``task, V, K, train, test, teacher, layers``), the sequence length
    ``n`` and the teacher's test accuracy ``acc_teacher``."""
    from types import SimpleNamespace

    from refimpl.nn import evaluate_accuracy

    task, V, K, train, test, teacher, layers = _tf_teacher(quick)
    return SimpleNamespace(task=task, V=V, K=K, train=train, test=test, teacher=teacher,
                           layers=layers, n=task.X_train.shape[1],
                           acc_teacher=float(evaluate_accuracy(teacher, *test)))


def _compare_arms(quick, n_seeds, arms, *, better, baseline, setup=_tf_setup):
    """The skeleton of the §4.4 Transformer claims (TinyBERT, Theseus, BERT-EMD, PKD), so each
    claim states only its arms and protocol: under one BLAS thread (the same numbers on every
    machine) build the setting ``ctx = setup(quick)`` once, then for each seed ``s`` train
    every arm in order, ``arms[name](ctx, s) -> model``, and record its test accuracy.

    Returns a namespace: ``ctx``; ``accs`` (name → accuracy per seed) and ``mean`` (name → their
    mean); ``gain = mean[better] − mean[baseline]``; ``sane`` (every accuracy in (0.3, 1]);
    ``reproduced`` (gain ≥ 0.5 points, the threshold the four protocols fixed before running).
    """
    from types import SimpleNamespace

    from threadpoolctl import threadpool_limits

    from refimpl.nn import evaluate_accuracy

    with threadpool_limits(limits=1, user_api="blas"):
        ctx = setup(quick)
        accs: dict = {name: [] for name in arms}
        for s in range(n_seeds):
            for name, train in arms.items():
                accs[name].append(evaluate_accuracy(train(ctx, s), *ctx.test))
    gain = float(np.mean(accs[better]) - np.mean(accs[baseline]))
    return SimpleNamespace(ctx=ctx, accs=accs, gain=gain,
                           mean={k: float(np.mean(v)) for k, v in accs.items()},
                           sane=all(0.3 < a <= 1.0 for v in accs.values() for a in v),
                           reproduced=gain >= 0.005)


def _tinybert_arm(E):
    """The TinyBERT arm of two claims: a student with half the teacher's layers and d_model 8
    (seed 10 + s), E/2 epochs of the intermediate losses, then E − E/2 of the prediction loss."""
    from refimpl.distillation import fit_tinybert

    def train(c, s):
        st = _tf_model(c.V, c.K, c.n, c.layers // 2, 8, 10 + s)
        fit_tinybert(st, c.teacher, c.train, epochs_intermediate=E // 2,
                     epochs_prediction=E - E // 2, lr=5e-3, batch_size=64, rng=s,
                     progress=False)
        return st

    return train


@register_claim("tinybert-intermediate-beats-prediction-only", "a small Transformer student "
                "distilled with TinyBERT's intermediate losses (embedding, hidden, attention) "
                "before the prediction loss beats the same student trained with the prediction "
                "loss only (§4.4; Jiao et al. 2020)", section="4.4",
                implements=[f"{_BR}.fit_tinybert", f"{_BR}.tinybert_losses_t"])
def _claim_tinybert(rng, quick):
    from refimpl.distillation import fit_with_teacher, kd_loss_t

    # protocol fixed before running: a Transformer teacher (d_model 16, 2 heads; 2 layers quick,
    # 4 full) on the sentiment task; a student with half the layers and d_model 8, trained
    # (a) with TinyBERT's prediction loss only (soft CE at T = 1) for E epochs, (b) TinyBERT:
    # E/2 epochs of the intermediate losses (learned W_e, W_h; uniform g(m)) then E/2 of the
    # prediction loss; same lr, batches and initialisation. Test accuracy averaged over seeds.
    # Reproduced iff (b) beats (a) by at least 0.5 points.
    # Measured when the protocol was drafted (4-layer teacher, quick data, 1 seed): prediction
    # only 65.4 %, TinyBERT 62.2 %. Measured with this protocol (seed 0): quick (2-layer
    # teacher 73.2 %) 65.4 % vs 61.0 % (-4.4 points: NOT reproduced); full (4-layer teacher
    # 90.0 %) 86.4 % vs 90.0 % (+3.5 points: reproduced).
    n_seeds, E = (2, 4) if quick else (3, 6)

    def prediction_only(c, s):
        st = _tf_model(c.V, c.K, c.n, c.layers // 2, 8, 10 + s)
        fit_with_teacher(st, c.teacher, c.train, lambda sz, so, tz, to, v, y: kd_loss_t(sz, tz),
                         need_intermediates=False, epochs=E, lr=5e-3, batch_size=64, rng=s,
                         progress=False)
        return st

    r = _compare_arms(quick, n_seeds, {"prediction": prediction_only, "tiny": _tinybert_arm(E)},
                      better="tiny", baseline="prediction")
    acc_t = r.ctx.acc_teacher
    return Outcome(r.sane and 0.3 < acc_t <= 1.0,
                   {"acc_teacher": acc_t, "acc_prediction_only": r.mean["prediction"],
                    "acc_tinybert": r.mean["tiny"], "gain_points": 100 * r.gain,
                    "teacher_layers": r.ctx.layers, "seeds": n_seeds},
                   "sentiment; Transformer 16-wide teacher -> half the layers, 8 wide; "
                   "reproduced = gain >= 0.5 points", reproduced=r.reproduced)


@register_claim("theseus-beats-compact-alone", "the successor obtained by BERT-of-Theseus "
                "module replacing beats the same compact model trained alone (§4.4; Xu et al. "
                "2020)", section="4.4",
                implements=[f"{_BR}.TheseusClassifier", f"{_BR}.TheseusScheduler"])
def _claim_theseus(rng, quick):
    from refimpl.distillation import TheseusClassifier, TheseusScheduler
    from refimpl.nn import fit

    # protocol fixed before running: the Transformer teacher of the TinyBERT claim is the
    # predecessor; the successor has half its layers (modules of 2 layers), the same width.
    # (a) the compact model (its layers = the predecessor's first half, its embeddings and
    # classifier copied, as the successor is initialised) fine-tuned alone for E epochs;
    # (b) Theseus: E − 1 epochs of module replacing (linear schedule from b = 0.3 reaching 1
    # after half of those steps), then 1 epoch of successor fine-tuning. Same lr and batches.
    # Reproduced iff (b) beats (a) by at least 0.5 points on the mean over seeds.
    # Measured when the protocol was drafted (4-layer teacher, quick data, 1 seed, a compact
    # model from scratch): compact 76.6 %, Theseus 75.2 %. With this protocol (seed 0): quick
    # 76.9 % vs 72.8 % (-4.1 points), full 92.2 % vs 91.3 % (-0.9): NOT reproduced.
    n_seeds, E = (2, 4) if quick else (3, 6)

    def compact_alone(c, s):
        # the same initialisation as the successor
        compact = TheseusClassifier(c.teacher, n_modules=c.layers // 2, rng=s).successor_model()
        fit(compact, c.train, epochs=E, lr=5e-3, batch_size=64, rng=s, progress=False)
        return compact

    def theseus(c, s):
        th = TheseusClassifier(c.teacher, n_modules=c.layers // 2, rng=s)
        steps = (E - 1) * -(-len(c.task.y_train) // 64)
        sched = TheseusScheduler(th, k=0.7 / max(1, steps // 2), b=0.3)
        fit(th, c.train, epochs=E - 1, lr=5e-3, batch_size=64, rng=s, progress=False,
            callbacks=[sched])
        succ = th.successor_model()
        fit(succ, c.train, epochs=1, lr=5e-3, batch_size=64, rng=s, progress=False)
        return succ

    r = _compare_arms(quick, n_seeds, {"alone": compact_alone, "theseus": theseus},
                      better="theseus", baseline="alone")
    return Outcome(r.sane, {"acc_compact_alone": r.mean["alone"],
                            "acc_theseus": r.mean["theseus"], "gain_points": 100 * r.gain,
                            "predecessor_layers": r.ctx.layers, "seeds": n_seeds},
                   "sentiment; Transformer predecessor -> successor with half the layers; "
                   "reproduced = gain >= 0.5 points", reproduced=r.reproduced)


# ------------------------------------------------------------------ distilled BiLSTM (Tang et al.)
_BL = "refimpl.distillation.bilstm"


@register_check("tang-logit-mse-not-kl", "erratum (§4.4): Tang et al. distil BERT into a BiLSTM "
                "with the MSE between logits, not the KL divergence the survey states; the two "
                "differ (a logit shift costs KL 0, MSE c²C; gradients 2(z^S−z^B)/B vs "
                "(p^S−p^B)/B)", section="4.4", implements=[f"{_BL}.distilled_bilstm_loss_t"])
def _tang_erratum(rng, quick):
    from refimpl.distillation import distilled_bilstm_loss_t, kd_loss_t

    B, C, c = 4, 3, 2.5
    zt = rng.standard_normal((B, C))
    shifted = zt + c  # the same probabilities, different logits
    kl = kd_loss_t(shifted, zt).item()
    mse = distilled_bilstm_loss_t(shifted, zt).item()
    zs = rng.standard_normal((B, C))
    a, b = Tensor(zs, requires_grad=True), Tensor(zs, requires_grad=True)
    distilled_bilstm_loss_t(a, zt).backward()
    kd_loss_t(b, zt).backward()
    g_mse = Outcome.compare(a.grad, 2 * (zs - zt) / B, atol=1e-14)
    ps = np.exp(zs) / np.exp(zs).sum(1, keepdims=True)
    pt = np.exp(zt) / np.exp(zt).sum(1, keepdims=True)
    g_kl = Outcome.compare(b.grad, (ps - pt) / B, atol=1e-14)
    gap = float(np.abs(a.grad - b.grad).max())
    shown = abs(kl) < 1e-12 and abs(mse - c * c * C) < 1e-12 and g_mse.passed and g_kl.passed \
        and gap > 1e-3
    return Outcome(bool(shown), {"kl_of_shifted_logits": kl, "mse_of_shifted_logits": mse,
                                 "c2C": c * c * C, "max_grad_difference": gap},
                   "Tang et al. 2019, Eqs. 2–3: L_distill = ‖z^B − z^S‖²")


@register_claim("augmentation-helps-distilled-bilstm", "a small BiLSTM distilled with Tang et "
                "al.'s logit MSE on the training sentences plus their augmented copies "
                "(masking, same-class replacement, n-grams; teacher-labelled) beats the same "
                "student distilled on the training sentences alone (§4.4; Tang et al. 2019)",
                section="4.4", implements=[f"{_BL}.tang_augment", f"{_BL}.distilled_bilstm_loss_t"])
def _claim_tang(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.data.sentiment import NEGATIVE, POSITIVE
    from refimpl.distillation import distilled_bilstm_loss_t, tang_augment
    from refimpl.nn import RNNClassifier, evaluate_accuracy, fit, predict_logits

    # protocol fixed before running: the §4 claims' LSTM teacher (emb 16, hidden 32); a BiLSTM
    # student (emb 8, hidden 8 per direction) trained with distilled_bilstm_loss_t (α = 0, the
    # teacher's logits as targets) for E epochs on (a) the training sentences, (b) the training
    # sentences plus n_iter = 2 augmented copies each (p_mask = p_pos = 0.1, p_ng = 0.25, the
    # paper's values; mask = <unk>; "same class" = the sentiment adjectives, every other word
    # kept), all labelled by the teacher. Same epochs, lr and batch size. Reproduced iff (b)
    # beats (a) by at least 0.5 points on the mean test accuracy over seeds.
    # Measured when this was written (seed 0): quick 80.4 % vs 92.7 % (+12.3), full 97.2 % vs
    # 98.3 % (+1.1): reproduced (the augmented run also takes 3x the steps, as in the paper).
    n_seeds, epochs_t, E = (2, 4, 4) if quick else (3, 6, 6)
    with threadpool_limits(limits=1, user_api="blas"):
        task, V, K, train, test = _claim_task(quick)
        teacher = _lstm_teacher(train, V, K, 0, epochs_t)
        acc_t = evaluate_accuracy(teacher, *test)
        wc = -np.ones(V, np.int64)
        for w in POSITIVE + NEGATIVE:
            i = task.vocab.stoi.get(w)
            if i is not None:
                wc[i] = 0
        Xa, La, _ = tang_augment(task.X_train, task.len_train, wc, n_iter=2, rng=0)
        X_all = np.zeros((len(Xa) + len(task.X_train), task.X_train.shape[1]), np.int64)
        X_all[:len(task.X_train)] = task.X_train
        X_all[len(task.X_train):] = Xa
        L_all = np.concatenate([task.len_train, La])
        z_all = predict_logits(teacher, X_all, L_all)  # (N + N_aug, K) the teacher's logits
        n = len(task.X_train)
        plain, aug = [], []
        for s in range(n_seeds):
            for rows, accs in ((np.arange(n), plain), (np.arange(len(X_all)), aug)):
                st = RNNClassifier(vocab_size=V, d_emb=8, d_hidden=8, n_classes=K,
                                   bidirectional=True, rng=400 + s)
                fit(st, (X_all[rows], L_all[rows], rows), epochs=E, lr=1e-2, batch_size=64,
                    rng=s, progress=False,
                    loss_fn=lambda out, i: distilled_bilstm_loss_t(out, z_all[i]))
                accs.append(evaluate_accuracy(st, *test))
    gain = float(np.mean(aug) - np.mean(plain))
    sane = all(0.3 < a <= 1.0 for a in [acc_t] + plain + aug)
    return Outcome(sane, {"acc_teacher": float(acc_t), "acc_no_augmentation": float(np.mean(plain)),
                          "acc_augmented": float(np.mean(aug)), "gain_points": 100 * gain,
                          "augmented_sentences": int(len(Xa)), "seeds": n_seeds},
                   "sentiment; LSTM teacher 16/32 -> BiLSTM 8/8, logit MSE; (b) sees 3x the "
                   "sentences, so 3x the steps, as in the paper; reproduced = gain >= 0.5 "
                   "points", reproduced=gain >= 0.005)


@register_claim("teacher-assistant-helps-large-gap", "distilling through a teacher assistant "
                "helps a small student when the teacher–student gap is large and not when it is "
                "small (§4.3; Mirzadeh et al. 2020)", section="4.3",
                implements=[f"{_MT}.teacher_assistant_chain"])
def _claim_ta(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.distillation import teacher_assistant_chain
    from refimpl.nn import RNNClassifier, evaluate_accuracy, fit

    # protocol fixed before running: LSTM classifiers (emb 8) of hidden width h on the
    # sentiment task. Large gap: teacher h = 64 (emb 16), student h = 4, assistant h = 16.
    # Small gap: teacher h = 8, student h = 4, assistant h = 6. Teachers trained on hard
    # labels (E_t epochs); each student trained with kd_loss_t (T = 4, α = 0.5) for E epochs
    # either directly from the teacher or through the assistant (the assistant distilled from
    # the teacher first, same settings): teacher_assistant_chain(sizes=[h_s]) vs
    # (sizes=[h_ta, h_s]). Test accuracy averaged over seeds. Reproduced iff the assistant
    # gains >= 0.5 points with the large gap and < 0.5 points with the small one.
    # Measured when this was written (seed 0): quick: large gap 64.6 % direct vs 67.7 % via the
    # assistant (+3.1), small gap 64.5 % vs 67.0 % (+2.5); full: large 96.8 % vs 94.6 % (-2.2),
    # small 96.6 % vs 96.9 % (+0.3): NOT reproduced in either size.
    n_seeds, E_t, E = (2, 4, 3) if quick else (3, 6, 5)
    with threadpool_limits(limits=1, user_api="blas"):
        task, V, K, train, test = _claim_task(quick)

        def make(h, seed):
            return RNNClassifier(vocab_size=V, d_emb=8, d_hidden=h, n_classes=K, rng=seed)

        out = {}
        for gap, h_t, h_ta, h_s in (("large", 64, 16, 4), ("small", 8, 6, 4)):
            teacher = RNNClassifier(vocab_size=V, d_emb=16 if gap == "large" else 8,
                                    d_hidden=h_t, n_classes=K, rng=100)
            fit(teacher, train, epochs=E_t, lr=1e-2, batch_size=64, rng=0, progress=False)
            direct, via = [], []
            for s in range(n_seeds):
                kw = dict(T=4.0, alpha=0.5, epochs=E, lr=1e-2, batch_size=64, rng=s,
                          progress=False)
                direct.append(evaluate_accuracy(
                    teacher_assistant_chain(teacher, make, [h_s], train, **kw)[-1], *test))
                via.append(evaluate_accuracy(
                    teacher_assistant_chain(teacher, make, [h_ta, h_s], train, **kw)[-1], *test))
            out[gap] = (evaluate_accuracy(teacher, *test), float(np.mean(direct)),
                        float(np.mean(via)))
    g_large = out["large"][2] - out["large"][1]
    g_small = out["small"][2] - out["small"][1]
    sane = all(0.3 < a <= 1.0 for v in out.values() for a in v)
    return Outcome(sane, {"large_teacher": out["large"][0], "large_direct": out["large"][1],
                          "large_via_ta": out["large"][2], "gain_large_points": 100 * g_large,
                          "small_teacher": out["small"][0], "small_direct": out["small"][1],
                          "small_via_ta": out["small"][2], "gain_small_points": 100 * g_small,
                          "seeds": n_seeds},
                   "LSTM h 64 -> (16) -> 4 and 8 -> (6) -> 4; reproduced = TA gains >= 0.5 "
                   "points for the large gap and < 0.5 for the small",
                   reproduced=g_large >= 0.005 and g_small < 0.005)


@register_check("multitask-distillation-loss", "MT-DNN-KD (Liu et al. 2019): per task with a "
                "teacher ½(CE to the labels + CE to the soft targets), plain CE without; summed "
                "over tasks — equals a loop with math", section="4.4",
                implements=[f"{_BR}.multitask_distillation_loss_t"])
def _multitask(rng, quick):
    from refimpl.distillation import multitask_distillation_loss_t

    shapes = [(3, 4), (2, 3), (4, 2)]
    z = [rng.standard_normal(s) for s in shapes]
    y = [rng.integers(0, s[1], s[0]) for s in shapes]
    p = [rng.dirichlet(np.ones(s[1]), s[0]) for s in shapes[:2]] + [None]
    hand = 0.0
    for zz, yy, pp in zip(z, y, p):
        B = len(zz)
        ce = sum(-math.log(_softmax_loop(zz[b])[yy[b]]) for b in range(B)) / B
        if pp is None:
            hand += ce
        else:
            soft = sum(-sum(pp[b][c] * math.log(_softmax_loop(zz[b])[c])
                            for c in range(len(zz[b]))) for b in range(B)) / B
            hand += 0.5 * (ce + soft)
    return Outcome.compare(multitask_distillation_loss_t(z, y, p).item(), hand, rtol=1e-12,
                           detail="3 tasks, the last without a teacher")


@register_check("bert-emd-training", "BERT-EMD: the weight update Σ/C̄ normalised equals a hand "
                "computation; the many-to-many loss equals Σ f_ij D_ij with the LP's plan and is 0 "
                "for a student equal to the teacher", section="4.4",
                implements=[f"{_BR}.bert_emd_update_weights", f"{_BR}.bert_emd_losses_t"])
def _bert_emd(rng, quick):
    from refimpl.distillation import (TinyBertProjections, bert_emd_losses_t,
                                      bert_emd_update_weights)
    from refimpl.nn import TransformerClassifier, no_grad

    wt, ws = bert_emd_update_weights(np.array([[0.5, 0.0], [0.0, 0.5]]),
                                     np.array([[1.0, 9.0], [9.0, 3.0]]),
                                     np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    upd = Outcome.compare(np.concatenate([wt, ws]), [0.75, 0.25, 0.75, 0.25], atol=1e-15)
    kw = dict(vocab_size=20, num_heads=2, max_len=5, n_classes=2)
    t = TransformerClassifier(d_model=6, d_ff=8, num_layers=3, rng=0, **kw)
    s = TransformerClassifier(d_model=6, d_ff=8, num_layers=2, rng=1, **kw)
    X = rng.integers(1, 20, (3, 5))
    L = np.array([5, 3, 4])
    valid = np.arange(5)[None] < L[:, None]
    proj = TinyBertProjections(6, 6, rng=0)
    for lin in (proj.W_e, proj.W_h):
        lin.W.data[:] = np.eye(6)
        lin.b.data[:] = 0.0
    w = {k: (np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.4])) for k in ("hidden", "attention")}
    with no_grad():
        _, ot = t(X, L, output_hidden_states=True, output_attentions=True)
        _, os_ = s(X, L, output_hidden_states=True, output_attentions=True)
        got = bert_emd_losses_t(os_, ot, proj, w, valid)
        w3 = {k: (np.ones(3) / 3, np.ones(3) / 3) for k in ("hidden", "attention")}
        zero = bert_emd_losses_t(ot, ot, proj, w3, valid)
    # Σ f D with D from loops over layers
    Dh = np.array([[np.mean((os_.hidden_states[j + 1].data - ot.hidden_states[i + 1].data) ** 2)
                    for j in range(2)] for i in range(3)])
    val = Outcome.compare(got["hidden"].item(), float((got["flow_hidden"] * Dh).sum()),
                          rtol=1e-12)
    marg = Outcome.compare(np.concatenate([got["flow_hidden"].sum(1), got["flow_hidden"].sum(0)]),
                           [0.2, 0.3, 0.5, 0.6, 0.4], atol=1e-9)
    z = max(zero["hidden"].item(), zero["attention"].item())
    return Outcome(upd.passed and val.passed and marg.passed and z < 1e-20,
                   {**val.numbers, "update_err": upd.numbers["max_abs_err"],
                    "marginal_err": marg.numbers["max_abs_err"], "loss_at_copy": z},
                   "3-layer teacher, 2-layer student; hand weight update")


@register_claim("bert-emd-vs-tinybert-mapping", "BERT-EMD's many-to-many EMD layer mapping "
                "distils a small Transformer better than TinyBERT's fixed one-to-one mapping "
                "(§4.4; Li et al. 2020)", section="4.4",
                implements=[f"{_BR}.fit_bert_emd", f"{_BR}.fit_tinybert"])
def _claim_emd(rng, quick):
    from refimpl.distillation import fit_bert_emd

    # protocol fixed before running: the TinyBERT claim's teacher and student shapes, epochs,
    # lr and seeds; (a) fit_tinybert (uniform g(m)), (b) fit_bert_emd (EMD mapping of hidden
    # states and attention scores, layer weights updated every step), both followed by the
    # same prediction-loss epochs. Reproduced iff (b) beats (a) by >= 0.5 points on the mean.
    # Measured when this was written (seed 0): quick 61.0 % vs 61.8 % (+0.8: reproduced, a
    # margin of one or two test sentences per seed); full 89.97 % vs 90.03 % (+0.07: NOT
    # reproduced).
    n_seeds, E = (2, 4) if quick else (3, 6)
    last: dict = {}

    def bert_emd(c, s):
        st = _tf_model(c.V, c.K, c.n, c.layers // 2, 8, 10 + s)
        _, _, last["w"] = fit_bert_emd(st, c.teacher, c.train, epochs_intermediate=E // 2,
                                       epochs_prediction=E - E // 2, lr=5e-3, batch_size=64,
                                       rng=s, progress=False)
        return st

    r = _compare_arms(quick, n_seeds, {"tiny": _tinybert_arm(E), "emd": bert_emd},
                      better="emd", baseline="tiny")
    return Outcome(r.sane, {"acc_tinybert_mapping": r.mean["tiny"],
                            "acc_bert_emd": r.mean["emd"], "gain_points": 100 * r.gain,
                            "final_teacher_weights_hidden": str(np.round(last["w"]["hidden"][0],
                                                                         3)),
                            "teacher_layers": r.ctx.layers, "seeds": n_seeds},
                   "sentiment; same teacher/student as the TinyBERT claim; reproduced = gain "
                   ">= 0.5 points", reproduced=r.reproduced)


@register_claim("pkd-skip-vs-last", "Patient KD: PKD-Skip (every k-th teacher layer) beats "
                "PKD-Last (the last layers) for the same student (§4.4; Sun et al. 2019)",
                section="4.4", implements=[f"{_BR}.fit_pkd", f"{_BR}.init_from_teacher_layers_"])
def _claim_pkd(rng, quick):
    from types import SimpleNamespace

    from refimpl.distillation import fit_pkd, init_from_teacher_layers_
    from refimpl.nn import TransformerClassifier, evaluate_accuracy, fit

    # protocol fixed before running: a [CLS]-pooled Transformer teacher (d_model 16, 2 heads,
    # 4 layers quick / 6 full) on the sentiment task; a student with 2 (quick) / 3 (full) layers
    # of the same width, initialised from the teacher's first layers (as PKD), trained with
    # fit_pkd (T = 5, α = 0.5, β = 100, the paper's β range) for E epochs with strategy
    # "skip" (teacher layers 2 | 2, 4) and "last" (3 | 4, 5). Same lr, batches and seeds.
    # Reproduced iff Skip beats Last by >= 0.5 points on the mean test accuracy.
    # Measured when this was written (seed 0): quick Skip 76.8 % vs Last 74.9 % (+1.9), full
    # (6 -> 3 layers, lr 3e-3) 89.7 % vs 89.1 % (+0.7): reproduced at both sizes.
    # Full size, first run: the 6-layer post-LN teacher did not train at lr 1e-2 (49.0 %, below
    # the majority class): the sanity rule failed the run; full size uses lr 3e-3.
    n_seeds, E, (N, M) = (2, 3, (4, 2)) if quick else (3, 5, (6, 3))
    lr = 1e-2 if quick else 3e-3

    def cls_teacher(q):
        task, V, K, train, test = _claim_task(q)
        kw = dict(vocab_size=V, d_model=16, num_heads=2, d_ff=32, max_len=task.X_train.shape[1],
                  n_classes=K, pooling="cls")
        teacher = TransformerClassifier(num_layers=N, rng=0, **kw)
        fit(teacher, train, epochs=4 if q else 6, lr=lr, batch_size=64, rng=0, progress=False)
        return SimpleNamespace(task=task, train=train, test=test, kw=kw, teacher=teacher,
                               acc_teacher=float(evaluate_accuracy(teacher, *test)))

    def pkd(strategy):
        def train(c, s):
            st = TransformerClassifier(num_layers=M, rng=20 + s, **c.kw)
            init_from_teacher_layers_(st, c.teacher, range(M))
            fit_pkd(st, c.teacher, c.train, strategy=strategy, T=5.0, alpha=0.5, beta=100.0,
                    epochs=E, lr=lr, batch_size=64, rng=s, progress=False)
            return st

        return train

    r = _compare_arms(quick, n_seeds, {"skip": pkd("skip"), "last": pkd("last")},
                      better="skip", baseline="last", setup=cls_teacher)
    y_test = r.ctx.task.y_test
    majority = float(np.bincount(y_test).max() / len(y_test))
    # sane: the teacher learned something beyond the majority class
    sane = r.ctx.acc_teacher > majority + 0.02 and r.sane
    return Outcome(sane, {"acc_teacher": r.ctx.acc_teacher, "majority_class": majority,
                          "acc_pkd_skip": r.mean["skip"], "acc_pkd_last": r.mean["last"],
                          "gain_points": 100 * r.gain, "teacher_layers": N, "student_layers": M,
                          "seeds": n_seeds},
                   "sentiment; [CLS] Transformer d 16; reproduced = Skip beats Last by >= 0.5 "
                   "points", reproduced=r.reproduced)


@register_check("squeezebert-student", "SqueezeBERT student: grouped Q/K/V/FFN remove exactly "
                "(1 − 1/g)(3d² + 2d·d_ff) weights per layer; a grouped layer equals a dense one "
                "with the block-diagonal weight", section="4.4",
                implements=[f"{_BR}.squeezebert_student_", "refimpl.nn.grouped.GroupedLinear"])
def _squeezebert(rng, quick):
    from refimpl.distillation import squeezebert_student_
    from refimpl.nn import TransformerClassifier

    d, d_ff, g, L = 8, 16, 4, 2
    m = TransformerClassifier(vocab_size=20, d_model=d, num_heads=2, d_ff=d_ff, num_layers=L,
                              max_len=5, n_classes=2, rng=0)
    removed = squeezebert_student_(m, groups=g, rng=0)
    want = L * (3 * d * d + 2 * d * d_ff) * (g - 1) // g
    lin = m.layers[0].linear1
    W = np.zeros((d_ff, d))
    for k in range(g):  # the block-diagonal dense weight
        W[k * d_ff // g:(k + 1) * d_ff // g, k * d // g:(k + 1) * d // g] = lin.W.data[k]
    x = rng.standard_normal((3, 4, d))
    cmp = Outcome.compare(lin(x).data, x @ W.T + lin.b.data, atol=1e-13)
    return Outcome(removed == want and cmp.passed, {"removed": removed, "expected": want,
                                                    **cmp.numbers})


@register_check("mobilebert-transfer", "MobileBERT: feature-map transfer = MSE of layer ℓ's "
                "outputs over real positions, attention transfer = mean KL(A_t‖A_s) over heads "
                "and real query rows (loops); both 0 for a copy of the teacher", section="4.4",
                implements=[f"{_BR}.mobilebert_transfer_losses_t",
                            f"{_BR}.fit_mobilebert_progressive", f"{_BR}.mobilebert_student_",
                            "refimpl.nn.bottleneck.BottleneckEncoderLayer"])
def _mobilebert(rng, quick):
    from refimpl.distillation import mobilebert_transfer_losses_t
    from refimpl.nn import TransformerClassifier, no_grad

    kw = dict(vocab_size=20, d_model=6, num_heads=2, max_len=5, n_classes=2, num_layers=2)
    t = TransformerClassifier(d_ff=8, rng=0, **kw)
    s = TransformerClassifier(d_ff=4, rng=1, **kw)
    X = rng.integers(1, 20, (3, 5))
    L = np.array([5, 2, 4])
    valid = np.arange(5)[None] < L[:, None]
    with no_grad():
        _, ot = t(X, L, output_hidden_states=True, output_attentions=True)
        _, os_ = s(X, L, output_hidden_states=True, output_attentions=True)
        got = mobilebert_transfer_losses_t(os_, ot, 2, valid)
        same = mobilebert_transfer_losses_t(ot, ot, 2, valid)
    hs, ht = os_.hidden_states[2].data, ot.hidden_states[2].data
    fm = [(hs[b, i, k] - ht[b, i, k]) ** 2 for b in range(3) for i in range(5) if valid[b, i]
          for k in range(6)]
    At, As = ot.attentions[1].probs.data, os_.attentions[1].probs.data
    kl = [sum(At[b, h, i, j] * math.log(At[b, h, i, j] / As[b, h, i, j])
              for j in range(5) if valid[b, j])
          for b in range(3) for h in range(2) for i in range(5) if valid[b, i]]
    res = Outcome.all_of(Outcome.compare(got["feature_map"].item(), sum(fm) / len(fm), rtol=1e-12),
                         Outcome.compare(got["attention"].item(), sum(kl) / len(kl), rtol=1e-9))
    zero = max(abs(same["feature_map"].item()), abs(same["attention"].item()))
    # the bottleneck student: per layer a block of d_inner = 2 with FFN 4 replaces a d = 6 layer
    from refimpl.distillation import mobilebert_student_

    b = TransformerClassifier(d_ff=8, rng=2, **kw)
    removed = mobilebert_student_(b, d_inner=2, d_ff=4, rng=0)
    d, di, dff, dffi = 6, 2, 8, 4
    layer = 4 * (d * d + d) + 2 * d * dff + dff + d + 4 * d  # attention, FFN, two LayerNorms
    block = (d * di + di) + 2 * di + 4 * (di * di + di) + 2 * di * dffi + dffi + di \
        + 4 * di + (di * d + d) + 2 * d
    with no_grad():
        _, ob = b(X, L, output_hidden_states=True, output_attentions=True)
        fm = mobilebert_transfer_losses_t(ob, ot, 1, valid)["feature_map"].item()
    ok = res.passed and zero < 1e-12 and removed == 2 * (layer - block) and np.isfinite(fm)
    return Outcome(ok, {**res.numbers, "loss_at_copy": zero, "bottleneck_removed": removed,
                        "expected_removed": 2 * (layer - block)},
                   "2-layer teacher, student with a narrower FFN; layer 2; a bottleneck "
                   "student's exact size")


# ------------------------------------------------------------------ XtremeDistil (Mukherjee et al.)
_XD = "refimpl.distillation.xtremedistil"


@register_check("xtremedistil-projection", "XtremeDistil: the MSE between the linearly projected "
                "BiLSTM states and a teacher layer's states over real tokens equals a loop and "
                "passes a gradient check; the stage-wise schedule (representations, logits, hard "
                "labels) lowers the representation loss on the §4 sentiment task (§4.4; "
                "Mukherjee & Awadallah 2020)", section="4.4",
                implements=[f"{_XD}.xtremedistil_representation_loss_t",
                            f"{_XD}.XtremeDistilProjection", f"{_XD}.fit_xtremedistil",
                            f"{_XD}.bilstm_token_states"])
def _xtremedistil(rng, quick):
    from threadpoolctl import threadpool_limits

    from refimpl.distillation import (XtremeDistilProjection, bilstm_token_states,
                                      fit_xtremedistil, xtremedistil_representation_loss_t)
    from refimpl.nn import RNNClassifier, evaluate_accuracy, no_grad

    B, T, ds, dt = 3, 5, 4, 6
    hs, ht = rng.standard_normal((B, T, ds)), rng.standard_normal((B, T, dt))
    valid = np.arange(T)[None] < np.array([5, 2, 3])[:, None]
    p = XtremeDistilProjection(ds, dt, rng=0)
    W, b = p.proj.W.data, p.proj.b.data
    tot, cnt = 0.0, 0
    for i in range(B):
        for t in range(T):
            if valid[i, t]:
                for k in range(dt):
                    v = sum(float(W[k, j]) * float(hs[i, t, j]) for j in range(ds)) + float(b[k])
                    tot += (v - float(ht[i, t, k])) ** 2
                    cnt += 1
    loop = Outcome.compare(xtremedistil_representation_loss_t(hs, ht, p, valid).item(),
                           tot / cnt, rtol=1e-12)

    def fn(h, w, bb):
        q = XtremeDistilProjection(ds, dt, rng=0)
        q.proj.W, q.proj.b = w, bb
        return xtremedistil_representation_loss_t(h, ht, q, valid)

    g = gradcheck(fn, [hs, W.copy(), b.copy()])
    # miniature: the §4.4 Transformer teacher -> BiLSTM 8/8 (2·8 = 16 = teacher d_model), its
    # states projected onto the teacher's top layer; stages 2/2/1 quick, 4/4/2 full
    e = (2, 2, 1) if quick else (4, 4, 2)
    with threadpool_limits(limits=1, user_api="blas"):
        task, V, K, train, test, teacher, layers = _tf_teacher(quick)
        st = RNNClassifier(vocab_size=V, d_emb=8, d_hidden=8, n_classes=K, bidirectional=True,
                           rng=500)
        proj = XtremeDistilProjection(16, teacher.d_model, rng=501)
        Xs, Ls = train[0][:256], train[1][:256]
        valid_s = np.arange(Xs.shape[1])[None] < Ls[:, None]
        with no_grad():
            _, out = teacher(Xs, Ls, output_hidden_states=True)
        skip = 1 if teacher.pooling == "cls" else 0
        ht_s = out.hidden_states[-1].data[:, skip:]

        def rep():
            with no_grad():
                return xtremedistil_representation_loss_t(bilstm_token_states(st, Xs, Ls)[1],
                                                          ht_s, proj, valid_s).item()

        before = rep()
        fit_xtremedistil(st, teacher, train, projection=proj, epochs_representation=e[0],
                         epochs_logits=0, epochs_labels=0, rng=0, progress=False)
        after = rep()
        fit_xtremedistil(st, teacher, train, projection=proj, epochs_representation=0,
                         epochs_logits=e[1], epochs_labels=e[2], rng=1, progress=False)
        acc_s = evaluate_accuracy(st, *test)
        acc_t = evaluate_accuracy(teacher, *test)
    ok = loop.passed and g["max_abs_err"] < 1e-8 and after < before and 0.3 < acc_s <= 1.0
    return Outcome(bool(ok), {**loop.numbers, "gradcheck_max_abs_err": g["max_abs_err"],
                              "representation_loss_before": before,
                              "representation_loss_after_stage1": after,
                              "acc_teacher": float(acc_t), "acc_student": float(acc_s),
                              "stage_epochs": list(e)},
                   "loop over real tokens; sentiment, Transformer teacher (d_model 16) -> "
                   "BiLSTM 8/8 with a 16 -> 16 projection onto the top layer")


# ------------------------------------------------------------------ mixed vocabulary (Zhao et al.)
_MV = "refimpl.distillation.mixed_vocab"
_WP = "refimpl.pretrained.wordpiece"
#: The HF course's WordPiece example corpus (word -> count), worked by hand in the checks.
_HUG = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}


def _mv_sizes(quick):
    """Sizes of the mixed-vocabulary miniature (fixed before the first run)."""
    if quick:
        return dict(n_train=400, n_eval=120, V_t=600, V_s=250, max_length=48, D=48, d_s=24,
                    epochs_teacher=4, epochs_student=3, seeds=(0,))
    return dict(n_train=1500, n_eval=300, V_t=1200, V_s=400, max_length=64, D=64, d_s=32,
                epochs_teacher=8, epochs_student=6, seeds=(0, 1, 2))


def _mv_corpus(quick):
    from refimpl.pretrained.evaluate import real_text
    from refimpl.pretrained.tokenizer import WordPieceTokenizer
    from refimpl.pretrained.wordpiece import learn_wordpiece

    z = _mv_sizes(quick)
    train = real_text(z["n_train"], "train")
    held = real_text(z["n_eval"], "heldout")
    tt = WordPieceTokenizer(learn_wordpiece(train, z["V_t"], progress=False))
    ts = WordPieceTokenizer(learn_wordpiece(train, z["V_s"], progress=False))
    return train, held, tt, ts


@register_check("wordpiece-learner", "WordPiece vocabulary learner: the first merges of the "
                "HF course's hug/pug/pun/bun/hugs corpus worked by hand for both criteria "
                "(score freq(ab)/(freq(a)freq(b)) and BPE frequency); the learned vocabulary "
                "drives refimpl's WordPiece tokenizer; frequency mode vs the tokenizers "
                "library's WordPieceTrainer on real text (same alphabet, token overlap, "
                "identical segmentations)", section="4.4",
                implements=[f"{_WP}.learn_wordpiece", f"{_WP}.word_counts"])
def _wordpiece_learner(rng, quick):
    from refimpl.pretrained.evaluate import real_text
    from refimpl.pretrained.tokenizer import WordPieceTokenizer
    from refimpl.pretrained.wordpiece import SPECIAL_TOKENS, learn_wordpiece, word_counts

    # by hand (module docstring of refimpl.pretrained.wordpiece): ids 0-4 specials, 5-11 the
    # letters b g h n p s u, 12-15 ##g ##n ##s ##u. Score: ##g##s = 5/(20·5) = 1/20 beats the
    # other five pairs (all 1/36); then every pair scores 1/36 and the largest count, p##u = 17,
    # wins. Frequency: ##u##g (20), then ##u##n (16), then h##ug (15).
    score = learn_wordpiece(_HUG, 18, criterion="score")
    freq = learn_wordpiece(_HUG, 19, criterion="frequency")
    alphabet = list(SPECIAL_TOKENS) + list("bghnpsu") + ["##g", "##n", "##s", "##u"]
    hand = (list(score) == alphabet + ["##gs", "pu"]
            and list(freq) == alphabet + ["##ug", "##un", "hug"]
            and list(score.values()) == list(range(18)))
    tok = WordPieceTokenizer(freq)
    seg = tok.tokenize("hugs puns") == ["hug", "##s", "p", "##un", "##s"]
    n, V = (300, 500) if quick else (1500, 1500)
    texts = real_text(n, "train")
    ours = learn_wordpiece(texts, V, criterion="frequency", progress=False)
    ours_score = learn_wordpiece(texts, V, criterion="score", progress=False)
    held_words = list(word_counts(real_text(100 if quick else 400, "heldout")))
    numbers = {"hand_worked": hand, "tokenizer_uses_vocab": seg, "vocab_size": len(ours),
               "overlap_score_vs_frequency": len(set(ours) & set(ours_score)) / len(ours)}
    try:
        import tokenizers as hf
    except ImportError:  # the test suite runs this cross-check with tokenizers required
        numbers["tokenizers"] = "not installed: cross-check not run"
        return Outcome(bool(hand and seg), numbers, "hand-worked merges; tokenizers absent")
    tk = hf.Tokenizer(hf.models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = hf.normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = hf.pre_tokenizers.BertPreTokenizer()
    trainer = hf.trainers.WordPieceTrainer(vocab_size=V, special_tokens=list(SPECIAL_TOKENS),
                                           min_frequency=0, show_progress=False)
    tk.train_from_iterator(texts, trainer)
    theirs = tk.get_vocab()
    single = {t for t in ours if len(t) == 1 or (t.startswith("##") and len(t) == 3)}
    single_hf = {t for t in theirs if len(t) == 1 or (t.startswith("##") and len(t) == 3)}
    overlap = len(set(ours) & set(theirs)) / max(len(ours), len(theirs))
    tok_hf = WordPieceTokenizer(theirs)
    tok_ours = WordPieceTokenizer(ours)
    same = [tok_ours.tokenize(w) == tok_hf.tokenize(w) for w in held_words]
    agree = sum(same) / len(same)
    numbers.update(alphabet_identical=single == single_hf, vocab_size_tokenizers=len(theirs),
                   overlap_with_tokenizers=overlap, heldout_words=len(same),
                   identical_segmentations=agree)
    ok = hand and seg and single == single_hf and overlap >= 0.95 and agree >= 0.95
    return Outcome(bool(ok), numbers, f"real text, {n} paragraphs, vocab {V}; frequency mode vs "
                   "tokenizers.WordPieceTrainer (a BpeTrainer with '##'; ties broken by ids that "
                   "follow its hash map)")


def _hand_tokenizers():
    """Two hand-made WordPiece vocabularies over the same words (teacher: whole words)."""
    from refimpl.pretrained.tokenizer import WordPieceTokenizer

    sp = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    teacher = sp + ["the", "cat", "sat", "##s"]                       # V_t = 9
    student = sp + ["c", "s", "t", "##a", "##e", "##h", "##s", "##t"]  # V_s = 13
    return (WordPieceTokenizer({t: i for i, t in enumerate(teacher)}),
            WordPieceTokenizer({t: i for i, t in enumerate(student)}))


@register_check("mixed-vocab-segmentation", "Mixed-vocabulary segmentation (Zhao et al.): each "
                "word by the teacher's WordPiece vocabulary or, with probability p, by the "
                "student's (ids offset by V_t); exact ids worked by hand for p = 0, 1 and a "
                "seeded p = 0.5; same seed, same ids", section="4.4",
                implements=[f"{_MV}.mixed_segmentation"])
def _mixed_segmentation(rng, quick):
    from refimpl.distillation.mixed_vocab import mixed_segmentation

    tt, ts = _hand_tokenizers()
    text = ["The cats sat"]
    # teacher: the=5, cats = cat ##s = 6 8, sat=7; student: t ##h ##e = 7 10 9,
    # c ##a ##t ##s = 5 8 12 11, s ##a ##t = 6 8 12, offset by V_t = 9
    t_ids = [2, 5, 6, 8, 7, 3]
    s_ids = [2, 16, 19, 18, 14, 17, 21, 20, 15, 17, 21, 3]
    got0, src0 = mixed_segmentation(text, tt, ts, p=0.0, rng=0)
    got1, src1 = mixed_segmentation(text, tt, ts, p=1.0, rng=0)
    # seed 0 draws u = 0.637, 0.270, 0.041 for the three words: the (teacher), cats and sat
    # (student) at p = 0.5
    u = np.random.default_rng(0).random(3)
    mixed = [2, 5, 14, 17, 21, 20, 15, 17, 21, 3]
    got, src = mixed_segmentation(text, tt, ts, p=0.5, rng=0)
    again, _ = mixed_segmentation(text, tt, ts, p=0.5, rng=0)
    ok = (got0[0].tolist() == t_ids and not src0.any() and got1[0].tolist() == s_ids
          and src1[0].tolist() == [False] + [True] * 10 + [False]
          and bool(u[0] >= 0.5 > u[1] and u[2] < 0.5) and got[0].tolist() == mixed
          and src[0].tolist() == [False, False] + [True] * 7 + [False]
          and np.array_equal(got, again))
    return Outcome(bool(ok), {"p0": got0[0].tolist(), "p1": got1[0].tolist(),
                              "p0.5_seed0": got[0].tolist(), "draws": np.round(u, 3).tolist()},
                   "V_t = 9 whole-word teacher vocabulary, V_s = 13 letter-level student one")


@register_check("mixed-vocab-losses", "Mixed-vocabulary losses (Zhao et al.): stage I's MLM "
                "loss (a softmax per vocabulary over the joint tied table [E_t; E_s Uᵀ]) equals "
                "a log-sum-exp loop; stage II's soft + hard + shared-projection layer loss "
                "equals its parts; both pass gradient checks; the mixed embedding lookup "
                "equals E_t[i] / U E_s[i − V_t]", section="4.4",
                implements=[f"{_MV}.mixed_vocab_mlm_loss_t", f"{_MV}.MixedVocabEmbedding",
                            f"{_MV}.mixed_vocab_distillation_loss_t", f"{_MV}.mixed_vocab_teacher",
                            "refimpl.nn.heads.MaskedLMHead"])
def _mixed_vocab_losses(rng, quick):
    from refimpl.distillation import kd_loss
    from refimpl.distillation.mixed_vocab import (MixedVocabEmbedding,
                                                  mixed_vocab_distillation_loss_t,
                                                  mixed_vocab_mlm_loss_t)
    from refimpl.nn import Linear
    from refimpl.nn.heads import MaskedLMHead

    Vt, Vs, D, ds, N = 7, 5, 6, 3, 8
    emb = MixedVocabEmbedding(Vt, Vs, D, ds, rng=0)
    ids = np.array([[0, 3, 7, 11], [8, 1, 6, 0]])
    look = emb(ids).data
    Et, Es, U = emb.teacher.W.data, emb.student.W.data, emb.projection.W.data
    want = np.array([[Et[i] if i < Vt else U @ Es[i - Vt] for i in row] for row in ids])
    lookup = Outcome.compare(look, want, atol=1e-15)
    head = MaskedLMHead(D, Vt + Vs, rng=1)
    head.bias.data[:] = rng.standard_normal(Vt + Vs)
    h = rng.standard_normal((N, D))
    E = emb.joint_table().data
    y = np.array([0, 6, 7, 11, 3, 9, 2, 8])
    t = head.transform(h).data
    total = 0.0
    for i in range(N):
        lo, hi = (0, Vt) if y[i] < Vt else (Vt, Vt + Vs)
        z = [float(t[i] @ E[j]) + float(head.bias.data[j]) for j in range(lo, hi)]
        m = max(z)
        total += m + math.log(sum(math.exp(v - m) for v in z)) - z[y[i] - lo]
    loop = Outcome.compare(mixed_vocab_mlm_loss_t(h, head, E, y, Vt).item(), total / N,
                           rtol=1e-12)
    g1 = gradcheck(lambda a, b: mixed_vocab_mlm_loss_t(a, head, b, y, Vt), [h, E])
    # stage II: parts
    B, n, dS, dT, Vs2 = 2, 3, 4, 5, 6
    zs, zt = rng.standard_normal((4, Vs2)), rng.standard_normal((4, Vs2))
    lab = np.array([1, 0, 5, 2])
    hs = [rng.standard_normal((B, n, dS)) for _ in range(2)]
    ht = [rng.standard_normal((B, n, dT)) for _ in range(2)]
    valid = np.array([[True, True, False], [True, True, True]])
    proj = Linear(dS, dT, bias=False, rng=2)
    a, b_, T = 0.3, 0.7, 2.0
    got = mixed_vocab_distillation_loss_t(zs, zt, lab, hs, ht, proj, valid, alpha=a, beta=b_,
                                          T=T).item()
    Pw = proj.W.data
    layer = np.mean([(((x @ Pw.T - z) ** 2).sum(-1) * valid).sum() / (valid.sum() * dT)
                     for x, z in zip(hs, ht)])
    parts = Outcome.compare(got, kd_loss(zs, zt, T=T, labels=lab, alpha=a) + b_ * layer,
                            rtol=1e-12)

    def f2(s, x0, x1, w):
        p = Linear(dS, dT, bias=False, rng=2)
        p.W = w
        return mixed_vocab_distillation_loss_t(s, zt, lab, [x0, x1], ht, p, valid, alpha=a,
                                               beta=b_, T=T)

    g2 = gradcheck(f2, [zs, hs[0], hs[1], Pw.copy()])
    res = Outcome.all_of(lookup, loop, parts)
    ok = res.passed and g1["max_abs_err"] < 1e-7 and g2["max_abs_err"] < 1e-7
    return Outcome(bool(ok), {"lookup_err": lookup.numbers["max_abs_err"],
                              "stage1_loop_err": loop.numbers["max_abs_err"],
                              "stage2_parts_err": parts.numbers["max_abs_err"],
                              "gradcheck_stage1": g1["max_abs_err"],
                              "gradcheck_stage2": g2["max_abs_err"]},
                   "V_t = 7, V_s = 5, D = 6, d_s = 3; stage II: kd_loss + β · mean layer MSE")


@register_claim("mixed-vocab-init-helps", "Mixed-vocabulary training (Zhao et al.): a small-"
                "vocabulary student whose embeddings start from the stage-I teacher's student "
                "rows beats the same student with random embeddings (same stage-II training) on "
                "held-out masked-token accuracy and perplexity", section="4.4",
                implements=[f"{_MV}.fit_mixed_vocab_teacher", f"{_MV}.mixed_vocab_student",
                            f"{_MV}.fit_mixed_vocab_student", f"{_MV}.mlm_accuracy"])
def _mixed_vocab_claim(rng, quick):
    """Protocol (fixed before the first run): WordPiece vocabularies (score criterion) of
    V_t / V_s tokens learned on the same real-text training paragraphs; a 2-layer teacher
    (width D) trained from scratch on the mixed segmentation with p = 0.3 (a higher share than
    a further-pretrained BERT needs, so the student rows see enough words at this size); two
    2-layer students of width d_s, identical seeds, one initialised from the teacher's student
    rows and one at random, each trained with the same stage-II loss (α = 0.5, β = 1, T = 1);
    scored on held-out paragraphs with the same masks. Reproduced iff the teacher-initialised
    student has the higher mean accuracy and the lower mean perplexity over the seeds.

    Measured when written (1 BLAS thread; the same numbers under OPENBLAS_CORETYPE=Sandybridge
    and Prescott): quick 13.0 % vs 13.0 % accuracy, perplexity 34.08 vs 34.35; full (3 seeds,
    about 8 CPU minutes) 19.47 % vs 19.81 %, perplexity 27.46 vs 27.14: NOT reproduced."""
    from threadpoolctl import threadpool_limits

    from refimpl.distillation.mixed_vocab import (fit_mixed_vocab_student,
                                                  fit_mixed_vocab_teacher, mixed_vocab_student,
                                                  mixed_vocab_teacher, mlm_accuracy)

    z = _mv_sizes(quick)
    train, held, tt, ts = _mv_corpus(quick)
    kw = dict(max_length=z["max_length"], progress=False)
    res = {"teacher": [], "random": []}
    losses = []
    with threadpool_limits(limits=1, user_api="blas"):
        for seed in z["seeds"]:
            teacher = mixed_vocab_teacher(n_teacher=tt.vocab_size, n_student=ts.vocab_size,
                                          d_model=z["D"], d_student=z["d_s"], num_heads=4,
                                          d_ff=2 * z["D"], num_layers=2,
                                          max_position=z["max_length"], rng=seed)
            h = fit_mixed_vocab_teacher(teacher, train, tt, ts, p=0.3,
                                        epochs=z["epochs_teacher"], lr=2e-3, rng=seed, **kw)
            losses.append((h.train_loss[0], h.train_loss[-1]))
            for init in ("teacher", "random"):
                st = mixed_vocab_student(teacher, num_heads=2, d_ff=2 * z["d_s"], num_layers=2,
                                         init=init, rng=seed + 100)
                fit_mixed_vocab_student(st, teacher, train, tt, ts, epochs=z["epochs_student"],
                                        lr=2e-3, rng=seed + 200, **kw)
                res[init].append(mlm_accuracy(st, held, ts, max_length=z["max_length"],
                                              rng=123))
    acc = {k: float(np.mean([r["accuracy"] for r in v])) for k, v in res.items()}
    ppl = {k: float(np.mean([r["perplexity"] for r in v])) for k, v in res.items()}
    sane = all(b < a for a, b in losses) and all(v < ts.vocab_size for v in ppl.values())
    reproduced = acc["teacher"] > acc["random"] and ppl["teacher"] < ppl["random"]
    return Outcome(bool(sane), {"acc_teacher_init": acc["teacher"],
                                "acc_random_init": acc["random"],
                                "ppl_teacher_init": ppl["teacher"],
                                "ppl_random_init": ppl["random"],
                                "teacher_mlm_loss_first_last": [list(map(float, x))
                                                                for x in losses],
                                "V_t": tt.vocab_size, "V_s": ts.vocab_size,
                                "n_masked": res["teacher"][0]["n_masked"],
                                "seeds": len(z["seeds"])},
                   f"real text {z['n_train']} paragraphs; teacher D={z['D']}, students "
                   f"d_s={z['d_s']}, 2 layers each", reproduced=reproduced)


# ------------------------------------------------------------------ MobileBERT's block (Sun et al.)
def _bottleneck_by_hand(m, x, pad):
    """A MobileBERT block with NoNorm and ReLU written with NumPy loops over examples, heads and
    query rows: bottleneck input, attention, ``m.num_ffn`` stacked FFNs, bottleneck output."""
    def lin(layer, h):
        return h @ layer.W.data.T + layer.b.data

    def nonorm(z, h):  # γ ∘ h + β
        return h * z.gamma.data + z.beta.data

    a = m.inner.self_attn
    B, n, _ = x.shape
    H = a.num_heads
    dh = m.d_inner // H
    h = nonorm(m.norm_in, lin(m.down, x))  # (B, n, d_inner)
    ctx = np.zeros_like(h)
    for b in range(B):
        q, k, v = lin(a.W_q, h[b]), lin(a.W_k, h[b]), lin(a.W_v, h[b])
        for hd in range(H):
            c = slice(hd * dh, (hd + 1) * dh)
            for i in range(n):
                s = np.array([q[i, c] @ k[j, c] / math.sqrt(dh) if not pad[b, j] else -np.inf
                              for j in range(n)])
                p = np.exp(s - s.max())
                p /= p.sum()
                ctx[b, i, c] = sum(p[j] * v[j, c] for j in range(n))
    h = nonorm(m.inner.norm1, h + lin(a.W_o, ctx))
    ffns = [(m.inner.linear1, m.inner.linear2, m.inner.norm2)]
    ffns += [(f.linear1, f.linear2, f.norm) for f in m.ffns]
    for l1, l2, z in ffns:  # h ← NoNorm(h + W₂ relu(W₁ h + b₁) + b₂)
        h = nonorm(z, h + lin(l2, np.maximum(lin(l1, h), 0.0)))
    return nonorm(m.norm_out, x + lin(m.up, h))  # (B, n, d_outer)


@register_check("mobilebert-stacked-ffn-nonorm", "MobileBERT's block: NoNorm(h) = γ∘h + β by "
                "hand; the bottleneck with 4 stacked FFNs and NoNorm equals a NumPy loop; its "
                "size is 2d_o·d_i + 3d_o + 4d_i² + 9d_i + k(2d_i·d_ff + d_ff + 3d_i); the "
                "progressive transfer trains such a student", section="4.4",
                implements=["refimpl.nn.bottleneck.NoNorm", "refimpl.nn.bottleneck.ResidualFFN",
                            "refimpl.nn.bottleneck.BottleneckEncoderLayer",
                            f"{_BR}.mobilebert_student_", f"{_BR}.fit_mobilebert_progressive"])
def _mobilebert_stacked(rng, quick):
    from refimpl.distillation import fit_mobilebert_progressive, mobilebert_student_
    from refimpl.nn import NoNorm, TransformerClassifier
    from refimpl.nn.bottleneck import BottleneckEncoderLayer

    # NoNorm, hand-worked: [2·1 + 0.5, −0.5·2] and [2·3 + 0.5, −0.5·(−4)]
    z = NoNorm(2)
    z.gamma.data[...], z.beta.data[...] = [2.0, -0.5], [0.5, 0.0]
    hand = np.array_equal(z(np.array([[1.0, 2.0], [3.0, -4.0]])).data, [[2.5, -1.0], [6.5, 2.0]])
    # the block with MobileBERT's choices (4 FFNs, NoNorm, ReLU), random γ, β, against loops
    m = BottleneckEncoderLayer(8, 4, 2, 16, num_ffn=4, norm="nonorm", activation="relu", rng=rng)
    for mod in m.modules():
        if isinstance(mod, NoNorm):
            mod.gamma.data[...] = rng.uniform(0.5, 1.5, mod.d)
            mod.beta.data[...] = 0.1 * rng.standard_normal(mod.d)
    x = rng.standard_normal((2, 5, 8))
    pad = np.array([[False] * 5, [False, False, False, True, True]])
    keep = ~pad
    cmp = Outcome.compare(m(x, key_padding_mask=pad).data[keep],
                          _bottleneck_by_hand(m, x, pad)[keep], atol=1e-12)

    # sizes against the hand formula, here and at MobileBERT's widths (512 / 128, 4 heads,
    # FFN 512); the FFN share of a block's inner parameters with 1 and with 4 FFNs
    def formula(d_o, d_i, d_ff, k):
        return 2 * d_o * d_i + 3 * d_o + 4 * d_i * d_i + 9 * d_i + k * (2 * d_i * d_ff + d_ff
                                                                        + 3 * d_i)

    sizes, ffn_share = {}, {}
    for d_o, d_i, H, d_ff, k in ((8, 4, 2, 16, 4), (512, 128, 4, 512, 1), (512, 128, 4, 512, 4)):
        b = BottleneckEncoderLayer(d_o, d_i, H, d_ff, num_ffn=k, norm="nonorm", rng=0)
        sizes[(d_o, k)] = (b.num_parameters(), formula(d_o, d_i, d_ff, k))
        ffns = [b.inner.linear1, b.inner.linear2] + [lay for f in b.ffns
                                                     for lay in (f.linear1, f.linear2)]
        ffn_share[(d_o, k)] = (sum(lay.num_parameters() for lay in ffns)
                               / b.self_attn.num_parameters())
    # a tiny progressive transfer into a MobileBERT-style student (d_inner = d/4, FFN 4 d_inner)
    g = np.random.default_rng(0)
    X = g.integers(1, 20, (32, 6))
    L = g.integers(2, 7, 32)
    y = (X[:, 0] % 2).astype(np.int64)
    kw = dict(vocab_size=20, d_model=16, num_heads=2, d_ff=64, num_layers=2, max_len=6,
              n_classes=2)
    teacher = TransformerClassifier(rng=0, **kw)
    student = TransformerClassifier(rng=1, **kw)
    removed = mobilebert_student_(student, d_inner=4, d_ff=16, rng=0, num_ffn=4, norm="nonorm",
                                  activation="relu")
    hist = fit_mobilebert_progressive(student, teacher, (X, L, y), epochs_per_layer=3,
                                      epochs_final=0, lr=1e-2, rng=0, progress=False)
    first, last = hist[0].train_loss[0], hist[0].train_loss[-1]
    ok = (hand and cmp.passed and all(a == b for a, b in sizes.values()) and last < first
          and removed == 2 * (4 * (16 * 16 + 16) + 2 * 16 * 64 + 64 + 16 + 4 * 16
                              - formula(16, 4, 16, 4)))
    return Outcome(ok, {"nonorm_hand": hand, **cmp.numbers,
                        "params_512_k1": sizes[(512, 1)][0], "params_512_k4": sizes[(512, 4)][0],
                        "ffn_over_mha_k1": ffn_share[(512, 1)],
                        "ffn_over_mha_k4": ffn_share[(512, 4)],
                        "student_removed": removed, "transfer_loss_layer1_first": first,
                        "transfer_loss_layer1_last": last},
                   "block 8/4, 2 heads, FFN 16, k = 4 vs loops; sizes at 8/4 and 512/128; "
                   "2-layer d 16 teacher -> 4-FFN NoNorm student, 3 epochs on layer 1")
