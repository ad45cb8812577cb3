"""Tests for refimpl.distillation.multi_teacher (Survey §4.3, Eqs. (57)–(58), baselines)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.distillation import multi_teacher as mt
from refimpl.nn import Tensor, gradcheck


def _close(actual, expected, atol=1e-12, what=""):
    a, e = np.asarray(actual, float), np.asarray(expected, float)
    err = np.abs(a - e)
    rel = err / np.maximum(np.abs(e), 1e-300)
    assert a.shape == e.shape, (what, a.shape, e.shape)
    assert err.max(initial=0) <= atol, (
        f"{what}: max abs err {err.max():.3e}, max rel err {rel.max():.3e}")


def _problem(rng, N=6, C=9, sizes=(3, 2)):
    perm = rng.permutation(C)
    subsets, start = [], 0
    for s in sizes:
        subsets.append(np.sort(perm[start:start + s]))
        start += s
    pg = rng.dirichlet(np.ones(C), size=N)
    pms = [rng.dirichlet(np.ones(len(s) + 1), size=N) for s in subsets]
    return subsets, pg, pms, rng.standard_normal((N, C))


# ============================================================ Eq. (57): hand-worked values
def test_rd_hand_values():
    p = np.zeros((1, 2))
    pos, neg = np.array([[3.0, 4.0]]), np.array([[6.0, 8.0]])  # distances 5 and 10
    assert mt.rd_triplet_loss(p, pos, neg, 1.0) == 0.0  # 5 - 10 + 1 < 0
    assert mt.rd_triplet_loss(p, pos, neg, 6.0) == pytest.approx(1.0, abs=1e-15)
    assert mt.rd_triplet_loss(p, pos, neg, 80.0, "sqeuclidean") == pytest.approx(5.0)
    # swapped order: the student disagrees with the teachers by 5 -> loss 5 + δ
    assert mt.rd_triplet_loss(p, neg, pos, 0.5) == pytest.approx(5.5, abs=1e-15)
    # cosine: anchor e1, positive orthogonal (d = 1), negative opposite (d = 2)
    a = np.array([[1.0, 0.0]])
    assert mt.rd_triplet_loss(a, np.array([[0.0, 2.0]]), np.array([[-3.0, 0.0]]), 0.25,
                              "cosine") == 0.0
    assert mt.rd_triplet_loss(a, np.array([[-3.0, 0.0]]), np.array([[0.0, 2.0]]), 0.25,
                              "cosine") == pytest.approx(1.25, abs=1e-15)


def test_rd_reductions_and_zero_margin_subgradient():
    rng = np.random.default_rng(1)
    p, pp, pn = rng.standard_normal((3, 7, 3))
    per = mt.rd_triplet_loss(p, pp, pn, 0.2, reduction="none")
    assert per.shape == (7,) and np.all(per >= 0)
    assert mt.rd_triplet_loss(p, pp, pn, 0.2, reduction="sum") == pytest.approx(per.sum())
    assert mt.rd_triplet_loss(p, pp, pn, 0.2) == pytest.approx(per.mean())
    # rows where the hinge is inactive have zero gradient
    dp, dpp, dpn = mt.rd_triplet_loss_grad(p, pp, pn, 0.2, reduction="none")
    inactive = per == 0
    assert inactive.any() and (~inactive).any()
    assert np.all(dp[inactive] == 0) and np.all(dpp[inactive] == 0) and np.all(dpn[inactive] == 0)
    assert np.all(np.abs(dp[~inactive]).sum(1) > 0)
    # identical anchor and positive: Euclidean subgradient 0 there, no NaN
    g = mt.pairwise_distance_grad(p, p.copy())
    assert np.all(g[0] == 0) and np.all(np.isfinite(g[1]))


@pytest.mark.parametrize("distance", mt.DISTANCES)
@pytest.mark.parametrize("seed", [0, 1])
def test_rd_gradcheck(distance, seed):
    rng = np.random.default_rng(seed)
    p, pp, pn = rng.standard_normal((3, 5, 4))
    gradcheck(lambda a, b, c: mt.rd_triplet_loss_t(a, b, c, 0.4, distance, "none"), [p, pp, pn],
              rng=seed)
    ts = [Tensor(a, requires_grad=True) for a in (p, pp, pn)]
    mt.rd_triplet_loss_t(*ts, 0.4, distance, reduction="sum").backward()
    for t, g in zip(ts, mt.rd_triplet_loss_grad(p, pp, pn, 0.4, distance, reduction="sum")):
        _close(t.grad, g, 1e-14, "tape vs numpy gradient")


@pytest.mark.parametrize("margin", [0.05, 0.5, 3.0])  # torch requires margin > 0
def test_rd_matches_torch_triplet_margin_loss(torch, margin):
    rng = np.random.default_rng(3)
    p, pp, pn = rng.standard_normal((3, 16, 6))
    ta, tp, tn = (torch.tensor(a, requires_grad=True) for a in (p, pp, pn))
    ref = torch.nn.functional.triplet_margin_loss(ta, tp, tn, margin=margin, p=2, eps=0.0)
    ref.backward()
    _close(mt.rd_triplet_loss(p, pp, pn, margin), ref.item(), 1e-12, "loss vs torch")
    for mine, t in zip(mt.rd_triplet_loss_grad(p, pp, pn, margin), (ta, tp, tn)):
        _close(mine, t.grad.numpy(), 1e-12, "grad vs torch")


def test_rd_cosine_matches_torch(torch):
    rng = np.random.default_rng(4)
    p, pp, pn = rng.standard_normal((3, 10, 5))
    t = [torch.tensor(a) for a in (p, pp, pn)]
    cos = torch.nn.functional.cosine_similarity
    ref = torch.clamp((1 - cos(t[0], t[1])) - (1 - cos(t[0], t[2])) + 0.3, min=0)
    _close(mt.rd_triplet_loss(p, pp, pn, 0.3, "cosine", "none"), ref.numpy(), 1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 3.0))
def test_rd_property_hinge(seed, delta):
    rng = np.random.default_rng(seed)
    p, pp, pn = rng.standard_normal((3, 4, 3))
    per = mt.rd_triplet_loss(p, pp, pn, delta, reduction="none")
    h = mt.pairwise_distance(p, pp) - mt.pairwise_distance(p, pn) + delta
    assert np.all(per >= 0)
    _close(per, np.maximum(h, 0), 0.0)
    # growing the margin never decreases the loss
    assert np.all(mt.rd_triplet_loss(p, pp, pn, delta + 0.5, reduction="none") >= per)


def test_rd_trains_student_features():
    """Gradient steps on Eq. (57) through the tape drive the loss to zero."""
    rng = np.random.default_rng(5)
    feats = Tensor(rng.standard_normal((9, 3)), requires_grad=True)
    a_idx, pos_idx, neg_idx = np.arange(3), np.arange(3, 6), np.arange(6, 9)
    first = None
    for _ in range(200):
        feats.grad = None
        loss = mt.rd_triplet_loss_t(feats[a_idx], feats[pos_idx], feats[neg_idx], 0.5)
        first = loss.item() if first is None else first
        loss.backward()
        feats.data = feats.data - 0.1 * feats.grad
    assert first > 0.1 and loss.item() == 0.0


# ============================================================ majority vote
def test_majority_vote_hand_example():
    # 3 teachers, 1-D features. Triplet 0: teachers 0, 1 say a closer, teacher 2 says b.
    anchor = [np.array([[0.0], [0.0]])] * 3
    a = [np.array([[1.0], [1.0]]), np.array([[1.0], [5.0]]), np.array([[9.0], [2.0]])]
    b = [np.array([[2.0], [1.0]]), np.array([[3.0], [2.0]]), np.array([[1.0], [5.0]])]
    r = mt.majority_vote_order(anchor, a, b)
    # triplet 1: teacher 0 abstains (equal), teacher 1 votes b, teacher 2 votes a -> tie
    assert r.votes_a.tolist() == [2, 1] and r.votes_b.tolist() == [1, 1]
    assert r.a_is_positive.tolist() == [True, True] and r.kept.tolist() == [True, False]
    r2 = mt.majority_vote_order(anchor, a, b, ties="a")
    assert r2.kept.tolist() == [True, True]
    p, pa, pb = np.array([[0.0], [1.0]]), np.array([[10.0], [11.0]]), np.array([[20.0], [21.0]])
    anc, pos, neg = r.apply(p, pa, pb)
    assert anc.tolist() == [[0.0]] and pos.tolist() == [[10.0]] and neg.tolist() == [[20.0]]


def test_majority_vote_apply_tensor_gradients():
    rng = np.random.default_rng(6)
    tf = [rng.standard_normal((8, 4)) for _ in range(3)]
    ta = [rng.standard_normal((8, 4)) for _ in range(3)]
    tb = [rng.standard_normal((8, 4)) for _ in range(3)]
    order = mt.majority_vote_order(tf, ta, tb)
    assert order.kept.all()  # 3 teachers, continuous features: no ties
    arrays = [rng.standard_normal((8, 2)) for _ in range(3)]

    def f(p, pa, pb):
        return mt.rd_triplet_loss_t(*order.apply(p, pa, pb), 0.5, reduction="none")

    gradcheck(f, arrays)
    # the NumPy and Tensor paths give the same triplets
    got = [t.data for t in order.apply(*[Tensor(a) for a in arrays])]
    for g, w in zip(got, order.apply(*arrays)):
        _close(g, w, 0.0)


def test_majority_vote_single_teacher_is_that_teachers_order():
    rng = np.random.default_rng(7)
    q, qa, qb = rng.standard_normal((3, 50, 5))
    r = mt.majority_vote_order([q], [qa], [qb], distance="cosine")
    want = mt.pairwise_distance(q, qa, "cosine") < mt.pairwise_distance(q, qb, "cosine")
    assert np.array_equal(r.a_is_positive, want) and r.kept.all()


# ============================================================ Eq. (58)
def test_collapse_hand_values():
    q = np.array([0.1, 0.2, 0.3, 0.4])
    _close(mt.collapse_to_specialist(q, np.array([2, 0])), [0.3, 0.1, 0.6], 1e-15)
    _close(mt.collapse_to_specialist(q, np.arange(4)), [0.1, 0.2, 0.3, 0.4, 0.0], 0.0)
    Cm = mt.collapse_matrix(np.array([2, 0]), 4)
    _close(q @ Cm, [0.3, 0.1, 0.6], 1e-15)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 12))
def test_collapse_property_sums_to_one(seed, C):
    rng = np.random.default_rng(seed)
    q = rng.dirichlet(np.ones(C), size=3)
    s = rng.choice(C, size=int(rng.integers(1, C + 1)), replace=False)
    out = mt.collapse_to_specialist(q, s)
    assert out.shape == (3, len(s) + 1)
    _close(out.sum(1), np.ones(3), 1e-12)
    _close(out, q @ mt.collapse_matrix(s, C), 1e-15)


def test_active_set_hand_values_and_ties():
    pg = np.array([[0.5, 0.3, 0.1, 0.1],
                   [0.1, 0.1, 0.4, 0.4],   # tie between classes 2 and 3 -> 2 first
                   [0.25, 0.25, 0.25, 0.25]])
    subsets = [np.array([0]), np.array([1, 2]), np.array([3])]
    assert mt.active_set(pg, subsets, 1).tolist() == [[True, False, False],
                                                      [False, True, False],
                                                      [True, False, False]]
    assert mt.active_set(pg, subsets, 2).tolist() == [[True, True, False],
                                                      [False, True, True],
                                                      [True, True, False]]
    assert mt.active_set(pg, subsets, 4).all()


def test_specialist_hand_value():
    # C = 3, one specialist on class {0}: p^m over [class 0, dustbin]
    q = np.array([[0.5, 0.25, 0.25]])
    pg = np.array([[0.5, 0.25, 0.25]])
    pm = [np.array([[0.8, 0.2]])]
    want = 0.8 * np.log(0.8 / 0.5) + 0.2 * np.log(0.2 / 0.5)  # KL(p^g‖q) = 0
    got = mt.specialist_loss(q, pg, pm, [np.array([0])], 1, from_logits=False)
    assert got == pytest.approx(want, abs=1e-15)
    # k = 1 and the generalist's top class outside S_m: the specialist is inactive
    pg2 = np.array([[0.2, 0.5, 0.3]])
    got2 = mt.specialist_loss(q, pg2, pm, [np.array([0])], 1, from_logits=False)
    assert got2 == pytest.approx(float(mt.kl_divergence(pg2, q)[0]), abs=1e-15)


def test_specialist_matches_torch_kl(torch):
    rng = np.random.default_rng(8)
    subsets, pg, pms, z = _problem(rng, N=7, C=10, sizes=(3, 4))
    k = 3
    active = mt.active_set(pg, subsets, k)
    zt = torch.tensor(z, requires_grad=True)
    logq = torch.log_softmax(zt, dim=-1)
    kl = torch.nn.functional.kl_div
    total = kl(logq, torch.tensor(pg), reduction="none").sum(-1)
    for m, s in enumerate(subsets):
        Q = torch.exp(logq) @ torch.tensor(mt.collapse_matrix(s, 10))
        term = kl(torch.log(Q), torch.tensor(pms[m]), reduction="none").sum(-1)
        total = total + term * torch.tensor(active[:, m].astype(float))
    total.mean().backward()
    _close(mt.specialist_loss(z, pg, pms, subsets, k, reduction="none"), total.detach().numpy(),
           1e-12, "loss vs torch kl_div")
    _close(mt.specialist_loss_grad(z, pg, pms, subsets, k), zt.grad.numpy(), 1e-12,
           "grad vs torch autograd")


@pytest.mark.parametrize("k", [1, 2, 5])
def test_specialist_gradcheck(k):
    rng = np.random.default_rng(9 + k)
    subsets, pg, pms, z = _problem(rng)
    gradcheck(lambda a: mt.specialist_loss_t(a, pg, pms, subsets, k, "none"), [z], rng=k)


def test_kl_divergence_zero_entries():
    p = np.array([0.0, 0.5, 0.5])
    assert mt.kl_divergence(p, np.array([0.2, 0.4, 0.4])) == pytest.approx(np.log(0.5 / 0.4))
    assert mt.kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == np.inf


def test_combine_specialists_recovers_consistent_q():
    rng = np.random.default_rng(10)
    C, N = 8, 5
    subsets = [np.array([0, 1]), np.array([2, 3, 4])]
    q_true = rng.dirichlet(np.ones(C), size=N)
    pms = [mt.collapse_to_specialist(q_true, s) for s in subsets]
    for method, kw in (("em", {}), ("gd", {"steps": 20000, "lr": 1.0, "tol": 1e-10})):
        q, loss = mt.combine_specialists(q_true, pms, subsets, C, method=method,
                                         z0=rng.standard_normal((N, C)), **kw)
        _close(q, q_true, 1e-7, method)
        assert loss.max() < 1e-10


def test_combine_specialists_moves_towards_a_confident_specialist():
    # generalist unsure between classes 0 and 1; specialist on {0, 1} is sure it is 1
    pg = np.array([[0.4, 0.4, 0.2]])
    pm = [np.array([[0.05, 0.75, 0.2]])]
    q, _ = mt.combine_specialists(pg, pm, [np.array([0, 1])], 2)
    assert q[0, 1] > 0.55 and q[0, 0] < 0.25
    # stationarity: the gradient at the returned q vanishes
    assert np.abs(mt.specialist_loss_grad(np.log(q), pg, pm, [np.array([0, 1])], 2)).max() < 1e-9


# ============================================================ baselines
def test_average_teacher_ce_matches_torch(torch):
    rng = np.random.default_rng(11)
    tp = rng.dirichlet(np.ones(5), size=(3, 8))
    z = rng.standard_normal((8, 5))
    for T in (1.0, 2.5):
        zt = Tensor(z, requires_grad=True)
        loss = mt.multi_teacher_ce(zt, tp, T)
        loss.backward()
        ztt = torch.tensor(z, requires_grad=True)
        ref = torch.nn.functional.cross_entropy(ztt / T, torch.tensor(tp.mean(0))) * T * T
        ref.backward()
        _close(loss.item(), ref.item(), 1e-12, f"CE T={T}")
        _close(zt.grad, ztt.grad.numpy(), 1e-12, f"grad T={T}")


def test_average_teacher_probs_hand():
    tp = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.5]]])
    _close(mt.average_teacher_probs(tp), [[0.5, 0.5]], 1e-15)


def test_top_k_hand_values_and_torch(torch):
    p = np.array([[0.1, 0.4, 0.2, 0.3], [0.25, 0.25, 0.25, 0.25]])
    out, (idx, vals) = mt.top_k_teacher_probs(p, 2, return_sparse=True)
    _close(out[0], [0.0, 4 / 7, 0.0, 3 / 7], 1e-15)
    assert idx[1].tolist() == [0, 1]  # ties -> lower class id
    _close(out[1], [0.5, 0.5, 0.0, 0.0], 1e-15)
    rng = np.random.default_rng(12)
    q = rng.dirichlet(np.ones(30), size=6)
    tv, ti = torch.topk(torch.tensor(q), 5, dim=-1)
    _, (idx, vals) = mt.top_k_teacher_probs(q, 5, return_sparse=True)
    assert np.array_equal(idx, ti.numpy())
    _close(vals, (tv / tv.sum(-1, keepdim=True)).numpy(), 1e-15)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 10))
def test_top_k_property(seed, K):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(10), size=3)
    out = mt.top_k_teacher_probs(p, K)
    assert np.all((out > 0).sum(1) <= K)
    _close(out.sum(1), np.ones(3), 1e-12)
    # the kept entries keep their ratios and every kept entry >= every dropped one
    kept = out > 0
    for i in range(3):
        assert p[i][kept[i]].min() >= p[i][~kept[i]].max(initial=0)
        _close(out[i][kept[i]] / p[i][kept[i]], np.full(kept[i].sum(), 1 / p[i][kept[i]].sum()),
               1e-12)


# ============================================================ bad input, no mutation
def test_bad_input_names_the_argument():
    rng = np.random.default_rng(13)
    p, pp, pn = rng.standard_normal((3, 4, 3))
    with pytest.raises(ValueError, match="distance"):
        mt.rd_triplet_loss(p, pp, pn, 0.1, "manhattan")
    with pytest.raises(ValueError, match="delta"):
        mt.rd_triplet_loss(p, pp, pn, -0.1)
    with pytest.raises(ValueError, match="p_neg"):
        mt.rd_triplet_loss(p, pp, pn[:3], 0.1)
    with pytest.raises(ValueError, match="p_pos"):
        mt.rd_triplet_loss(p, np.full_like(pp, np.nan), pn, 0.1)
    with pytest.raises(ValueError, match="p_pos"):
        mt.rd_triplet_loss(p, np.zeros_like(pp), pn, 0.1, "cosine")
    with pytest.raises(ValueError, match="reduction"):
        mt.rd_triplet_loss(p, pp, pn, 0.1, reduction="avg")
    with pytest.raises(ValueError, match="teacher_feats_b"):
        mt.majority_vote_order([p, p], [pp, pp], [pn])
    with pytest.raises(TypeError, match="teacher_feats_anchor"):
        mt.majority_vote_order(p, [pp], [pn])
    with pytest.raises(ValueError, match="ties"):
        mt.majority_vote_order([p], [pp], [pn], ties="b")
    with pytest.raises(ValueError, match=r"teacher_feats_a\[0\]"):
        mt.majority_vote_order([p], [pp[:, :2]], [pn])
    subsets, pg, pms, z = _problem(rng)
    with pytest.raises(ValueError, match=r"subsets\[0\]"):
        mt.specialist_loss(z, pg, pms, [np.array([0, 0, 1]), subsets[1]], 1)
    with pytest.raises(ValueError, match=r"subsets\[1\]"):
        mt.specialist_loss(z, pg, pms, [subsets[0], np.array([99, 1])], 1)
    with pytest.raises(ValueError, match=r"specialist_probs\[1\]"):
        mt.specialist_loss(z, pg, [pms[0], pms[0]], subsets, 1)
    with pytest.raises(ValueError, match="p_generalist"):
        mt.specialist_loss(z, pg * 2, pms, subsets, 1)
    with pytest.raises(ValueError, match="k"):
        mt.specialist_loss(z, pg, pms, subsets, 0)
    with pytest.raises(ValueError, match="specialist_probs"):
        mt.specialist_loss(z, pg, pms[:1], subsets, 1)
    with pytest.raises(ValueError, match="q"):
        mt.specialist_loss(np.full_like(z, np.inf), pg, pms, subsets, 1)
    with pytest.raises(ValueError, match="K"):
        mt.top_k_teacher_probs(pg, 0)
    with pytest.raises(ValueError, match="probs"):
        mt.top_k_teacher_probs(-pg, 2)
    with pytest.raises(ValueError, match="teacher_probs"):
        mt.multi_teacher_ce(z, pg[None] * 3)
    with pytest.raises(ValueError, match="T"):
        mt.multi_teacher_ce(z, pg[None], T=0.0)
    with pytest.raises(ValueError, match="method"):
        mt.combine_specialists(pg, pms, subsets, 1, method="newton")


def test_inputs_not_mutated():
    rng = np.random.default_rng(14)
    p, pp, pn = rng.standard_normal((3, 4, 3))
    subsets, pg, pms, z = _problem(rng)
    copies = [a.copy() for a in (p, pp, pn, pg, z, *pms)]
    mt.rd_triplet_loss_grad(p, pp, pn, 0.5, "cosine")
    mt.specialist_loss_grad(z, pg, pms, subsets, 2)
    mt.combine_specialists(pg, pms, subsets, 2, z0=z)
    mt.top_k_teacher_probs(pg, 3)
    for a, c in zip((p, pp, pn, pg, z, *pms), copies):
        assert np.array_equal(a, c)
