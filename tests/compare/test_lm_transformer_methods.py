"""heads-50, Fastformers, TinyBERT and Theseus on the causal Transformer LM of
``refimpl tour --task lm`` (issue #16): their LM forms run, and their sizes are exact."""

import math

import numpy as np
import pytest

from refimpl.compare.lm_tour import lm_config, lm_context, make_transformer_lm, run_lm_tour

NAMES = ("heads-50", "fastformers", "tinybert-transformer", "theseus-transformer")


@pytest.fixture(scope="module")
def tour():
    return run_lm_tour(lm_config(tiny=True, methods=NAMES), log=lambda *_: None)


def test_the_four_rows_are_ok_on_the_transformer_lm(tour):
    rows = {r["method"]: r for r in tour["rows"]}
    assert set(rows) == {"baseline-lstm-lm", "baseline-transformer-lm", *NAMES}
    tb = rows["baseline-transformer-lm"]
    for n in NAMES:
        r = rows[n]
        assert r["status"] == "ok", (n, r["notes"])
        assert r["notes"].startswith("on the Transformer LM")
        assert r["perplexity"] > tour["bayes_perplexity"] * (1 - 1e-9)
        assert math.isclose(r["compression"], tb["bits"] / r["bits"], rel_tol=1e-12)
    # every method stores less than the float32 Transformer LM
    assert all(rows[n]["bits"] < tb["bits"] for n in NAMES)
    assert "prune-heads-ffn" in rows["fastformers"]["notes"]


def _tiny_lm_ctx():
    from refimpl import nn
    from refimpl.data import load_task

    cfg = lm_config(tiny=True)
    task = load_task("hmm_lm", quick=True, rng=0, **cfg.task_kwargs)
    base = make_transformer_lm(cfg, task)
    nn.fit_lm(base, task, epochs=1, batch_size=cfg.batch_size, lr=cfg.t_lr, rng=0,
              progress=False)
    return lm_context(cfg, task, base, kind="transformer"), base


def test_heads_50_on_the_lm_prunes_half_the_heads_by_eq18():
    from refimpl.pruning import tour
    from refimpl.pruning.heads_layers import head_importance

    ctx, base = _tiny_lm_ctx()
    X, L, y = tour.importance_rows(ctx, base)
    assert y is None and X.shape[1] == L.max() and len(X) == min(512, len(ctx.task.len_train))
    imp = head_importance(base, X, L, normalize=True)
    res = tour.heads_50(ctx)
    masks = np.array([lay.self_attn.head_mask for lay in res.model.layers])  # (L, H)
    k = imp.size // 2
    assert int((masks == 0).sum()) == k
    # the pruned heads are the k lowest I_h of the trained baseline (stable order)
    want = np.ones(imp.size)
    want[np.argsort(imp.ravel(), kind="stable")[:k]] = 0
    np.testing.assert_array_equal(masks.ravel(), want)
    mha = base.layers[0].self_attn
    per_head = 4 * mha.d_head * mha.d_model + 3 * mha.d_head
    assert res.params == base.num_parameters() - k * per_head
    assert res.bits == 32 * res.params


def test_fastformers_steps_on_the_lm_keep_pruned_structure_zero():
    from refimpl.compare.pipelines import Compressed, Distil, PruneHeadsFFN

    ctx, base = _tiny_lm_ctx()
    cm = Compressed(base, "transformer-lm")
    cm = Distil()(cm, ctx)
    assert cm.model.num_layers == max(1, base.num_layers // 2)
    cm = PruneHeadsFFN(0.5, 0.5)(cm, ctx)
    lay = cm.model.layers[0]
    W1 = lay.linear1.W.data
    dead_units = np.all(W1 == 0, axis=1)
    assert dead_units.sum() == round(0.5 * W1.shape[0])
    assert np.all(lay.linear2.W.data[:, dead_units] == 0)
    dh = lay.self_attn.d_head
    dead_heads = [h for h in range(lay.self_attn.num_heads)
                  if np.all(lay.self_attn.W_q.W.data[h * dh:(h + 1) * dh] == 0)]
    assert len(dead_heads) == lay.self_attn.num_heads // 2
    assert math.isfinite(ctx.evaluate(cm.model))
