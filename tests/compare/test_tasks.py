"""The tour's harder sentiment preset and the LM comparison (``refimpl tour --task lm``)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from refimpl import cli
from refimpl.compare.lm_tour import LM_METHODS, format_lm_table, lm_config, lm_plan, run_lm_tour
from refimpl.compare.tour import HARD_SENTIMENT, config_for, load_task
from refimpl.utils import as_rng


def test_sentiment_hard_preset():
    cfg = config_for(tiny=True, task="sentiment-hard")
    assert cfg.task_kwargs["n_classes"] == 3 and cfg.task_kwargs["label_noise"] == 0.15
    assert {k: cfg.task_kwargs[k] for k in HARD_SENTIMENT} == HARD_SENTIMENT
    task = load_task(cfg, as_rng(0))
    assert task.n_classes == 3 and set(task.y_test.tolist()) == {0, 1, 2}
    # explicit task_kwargs still win over the preset
    assert config_for(tiny=True, task="sentiment-hard",
                      task_kwargs={"n_classes": 2}).task_kwargs["n_classes"] == 2


def test_lm_plan_lists_every_registered_method():
    from refimpl.registry import methods

    plan = lm_plan()
    assert set(plan) == {m.name for m in methods()}  # none silently omitted
    how = {n: e[2] for n, e in plan.items()}
    where = {n: e[4] for n, e in plan.items()}
    # §7 variants that cannot be causal are n/a with the reason; Reformer's LSH is masked dense
    assert how["linformer-k-n/4"] == "n/a" and where["linformer-k-n/4"] is None
    assert "not causal" in plan["linformer-k-n/4"][3]
    # linear attention runs its causal prefix-sum form on the Transformer LM, Longformer its
    # causal left-only window
    for name in ("linear-attention", "longformer-w4-cls"):
        assert how[name] == "registered" and where[name] == "transformer-lm"
    assert how["reformer-lsh"] == "registered" and where["reformer-lsh"] == "transformer-lm"
    assert how["hinton-kd-lstm"] == how["dml-lstm"] == how["deep-compression"] == "pipeline"
    assert how["fastformers"] == "pipeline" and where["fastformers"] == "transformer-lm"
    assert how["heads-50"] == how["albert-share-all"] == "registered"
    assert where["heads-50"] == where["quaternion-transformer"] == "transformer-lm"
    assert how["magnitude-90"] == how["hashednets-lstm"] == how["kmeans-4bit"] == "registered"
    assert where["magnitude-90"] == where["deep-compression"] == "lstm-lm"
    # §2-§6 families all have LM rows
    fams = {plan[n][0] for n in LM_METHODS}
    assert {"pruning", "quantization", "distillation", "sharing", "decomposition",
            "combination"} <= fams
    # single methods before combinations, n/a rows after the runnable ones of their group
    order = [plan[n][0] == "combination" for n in plan]
    assert order == sorted(order)


def test_lm_token_logits_is_the_lm_loss_as_a_classifier():
    from refimpl.compare.pipelines import _lm_token_logits
    from refimpl.nn import LSTMLanguageModel, cross_entropy

    rng = np.random.default_rng(0)
    m = LSTMLanguageModel(vocab_size=20, d_emb=6, d_hidden=5, rng=1)
    X = rng.integers(4, 20, (3, 7))
    L = np.array([7, 4, 2])
    X[1, 4:] = 0
    X[2, 2:] = 0
    logits, y = _lm_token_logits(m, X, L)
    assert logits.shape == (6 + 3 + 1, 20)
    np.testing.assert_array_equal(y, np.concatenate([X[0, 1:], X[1, 1:4], X[2, 1:2]]))
    assert float(cross_entropy(logits, y).data) == pytest.approx(float(m.loss(X, L).data),
                                                                  rel=1e-12)


def test_lm_context_fit_refuses_classifier_options():
    from refimpl.data import load_task

    cfg = lm_config(tiny=True)
    task = load_task("hmm_lm", quick=True, rng=0, **cfg.task_kwargs)
    from refimpl.compare.lm_tour import lm_context

    ctx = lm_context(cfg, task, None)
    m = ctx.make_model()
    with pytest.raises(TypeError, match="classifier-only"):
        ctx.fit(m, callbacks=[])
    with pytest.raises(TypeError, match="together"):
        ctx.fit(m, loss_fn=lambda *a: None)
    # a seed override gives a different initialisation (the DML peers)
    assert not np.array_equal(ctx.make_model(rng=5).embedding.W.data, m.embedding.W.data)
    assert len(ctx.task.y_train) == len(task.len_train)


def test_lm_tour_rows_against_the_bayes_floor():
    names = ("magnitude-90", "kmeans-4bit", "hinton-kd-lstm", "dml-lstm", "hashednets-lstm",
             "deep-compression", "linformer-k-n/4")
    res = run_lm_tour(lm_config(tiny=True, methods=names), log=lambda *_: None)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"baseline-lstm-lm", *names}
    base = rows["baseline-lstm-lm"]
    assert base["bits"] % 32 == 0 and base["compression"] == 1.0
    assert rows["linformer-k-n/4"]["status"] == "n/a"
    assert "not causal" in rows["linformer-k-n/4"]["notes"]
    for n, r in rows.items():
        if n == "linformer-k-n/4":
            assert r["bytes"] is None and r["perplexity"] is None
            continue
        assert r["status"] == "ok", (n, r["notes"])
        # Δ floor is log ppl − the Bayes NLL; the floor is the exact optimum of the generator
        assert math.isclose(r["gap_nats"], math.log(r["perplexity"])
                            - math.log(res["bayes_perplexity"]), rel_tol=1e-9, abs_tol=1e-12)
        assert r["perplexity"] > res["bayes_perplexity"] * (1 - 1e-9)
        assert r["kernel_us_b1"] > 0 and r["kernel_us_b64"] > 0 and r["emb_us_b1"] > 0
    # the students are a quarter of the hidden width: smaller than the teacher
    assert rows["hinton-kd-lstm"]["bits"] == rows["dml-lstm"]["bits"] < base["bits"]
    assert "hashed×2" in rows["hashednets-lstm"]["formats"]
    assert "csr" in rows["magnitude-90"]["formats"]
    assert rows["deep-compression"]["bits"] < rows["kmeans-4bit"]["bits"] < base["bits"]
    assert rows["deep-compression"]["frontier"].endswith("(magnitude-90, kmeans-4bit)")
    text = format_lm_table(res)
    assert "linformer-k-n/4 (n/a): n/a for the LSTM and the causal Transformer LM" in text
    assert max(len(ln) for ln in text.splitlines()) <= 100


def test_cli_tour_task_lm(tmp_path, capsys):
    out = tmp_path / "lm"
    code = cli.main(["tour", "--task", "lm", "--tiny", "--out", str(out), "--methods",
                     "uniform-4bit", "linformer-k-n/4"])
    text, err = capsys.readouterr()
    assert code == 0, text + err
    with open(out / "lm.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["baseline-lstm-lm", "uniform-4bit", "linformer-k-n/4"]
    assert [r["status"] for r in rows] == ["ok", "ok", "n/a"]
    assert "Bayes-optimal floor" in text
    assert max(len(ln) for ln in text.splitlines() if str(out) not in ln) <= 100


def test_cli_tour_task_lm_unknown_method(tmp_path, capsys):
    code = cli.main(["tour", "--task", "lm", "--tiny", "--out", str(tmp_path), "--methods",
                     "no-such-method"])
    _, err = capsys.readouterr()
    assert code == 2 and "not registered for --task lm" in err and "magnitude-90" in err


def test_lm_tour_transformer_rows():
    """The Transformer methods run on the causal Transformer LM, sized against it."""
    from refimpl.compare.lm_tour import ON_TRANSFORMER

    names = ("albert-share-all", "quaternion-ffn", "layerdrop-every-other", "reformer-lsh",
             "linear-attention", "longformer-w4-cls", "magnitude-90")
    assert set(names[:6]) <= set(ON_TRANSFORMER)
    res = run_lm_tour(lm_config(tiny=True, methods=names), log=lambda *_: None)
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"baseline-lstm-lm", "baseline-transformer-lm", *names}
    tb = rows["baseline-transformer-lm"]
    assert tb["status"] == "ok" and tb["compression"] == 1.0 and tb["bits"] % 32 == 0
    for n in names:
        r = rows[n]
        assert r["status"] == "ok", (n, r["notes"])
        assert r["perplexity"] > res["bayes_perplexity"] * (1 - 1e-9)
        on_t = n != "magnitude-90"
        assert r["notes"].startswith("on the Transformer LM") == on_t
        ref = tb if on_t else rows["baseline-lstm-lm"]
        assert math.isclose(r["compression"], ref["bits"] / r["bits"], rel_tol=1e-12)
    # ALBERT ties 2 layers into 1, LayerDrop keeps 1 of 2: both smaller than the baseline
    assert rows["albert-share-all"]["bits"] < tb["bits"]
    assert rows["layerdrop-every-other"]["bits"] < tb["bits"]
    assert rows["reformer-lsh"]["bits"] == tb["bits"]  # LSH adds no parameters
    # linear attention: the causal prefix-sum hook, timed through its causal kernel
    la = rows["linear-attention"]
    assert la["bits"] == tb["bits"] and "causal prefix sums" in la["notes"]
    assert "attn-linear-causal×2" in la["formats"] and la["kernel_us_b1"] > 0
    # Longformer: the causal window, no global tokens, timed through the causal window kernel
    lf = rows["longformer-w4-cls"]
    assert lf["bits"] == tb["bits"] and "causal window 4" in lf["notes"]
    assert "no global tokens" in lf["notes"]
    assert "attn-window-causal×2" in lf["formats"] and lf["kernel_us_b1"] > 0


def test_lm_context_forward_only_is_the_next_token_loss():
    """``fit(forward=...)`` alone scores the forward's per-position logits of whole rows by
    the next-token loss: for a causal model it equals ``model.loss`` exactly."""
    from refimpl.compare.lm_tour import _next_token_loss
    from refimpl.nn import LSTMLanguageModel, TransformerLanguageModel

    rng = np.random.default_rng(0)
    X = rng.integers(4, 20, (3, 7))
    L = np.array([7, 4, 2])
    X[1, 4:] = 0
    X[2, 2:] = 0
    for m in (LSTMLanguageModel(vocab_size=20, d_emb=6, d_hidden=5, rng=1),
              TransformerLanguageModel(vocab_size=20, d_model=8, num_heads=2, d_ff=8,
                                       num_layers=1, max_len=7, rng=1)):
        a = float(_next_token_loss(m(X, L), X, L).data)
        assert a == pytest.approx(float(m.loss(X, L).data), rel=1e-12)
