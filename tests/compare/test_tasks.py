"""The tour's harder sentiment preset and the LM comparison (``refimpl tour --task lm``)."""

from __future__ import annotations

import csv
import math

from refimpl import cli
from refimpl.compare.lm_tour import LM_METHODS, lm_config, run_lm_tour
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


def test_lm_tour_rows_against_the_bayes_floor():
    res = run_lm_tour(lm_config(tiny=True, methods=("kmeans-4bit", "deep-compression")),
                      log=lambda *_: None)
    rows = {r["method"]: r for r in res["rows"]}
    assert list(rows) == ["baseline-lstm-lm", "kmeans-4bit", "deep-compression"]
    base = rows["baseline-lstm-lm"]
    assert base["bits"] % 32 == 0 and base["compression"] == 1.0
    for r in rows.values():
        assert r["status"] == "ok"
        # Δ floor is log ppl − the Bayes NLL; the floor is the exact optimum of the generator
        assert math.isclose(r["gap_nats"], math.log(r["perplexity"])
                            - math.log(res["bayes_perplexity"]), rel_tol=1e-9, abs_tol=1e-12)
        assert r["kernel_us_b1"] > 0 and r["kernel_us_b64"] > 0
    assert rows["deep-compression"]["bits"] < rows["kmeans-4bit"]["bits"] < base["bits"]
    # the combination is judged against the part that ran (magnitude-90 was not run)
    assert rows["deep-compression"]["frontier"].endswith("(magnitude-90, kmeans-4bit)")
    assert rows["deep-compression"]["frontier"].split(" (")[0] in (
        "beats its parts", "dominated by kmeans-4bit") or \
        rows["deep-compression"]["frontier"].startswith("trade-off: smaller than every part")


def test_cli_tour_task_lm(tmp_path, capsys):
    out = tmp_path / "lm"
    code = cli.main(["tour", "--task", "lm", "--tiny", "--out", str(out), "--methods",
                     "uniform-8bit"])
    text, err = capsys.readouterr()
    assert code == 0, text + err
    with open(out / "lm.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["baseline-lstm-lm", "uniform-8bit"]
    assert "Bayes-optimal floor" in text
    assert max(len(ln) for ln in text.splitlines() if str(out) not in ln) <= 100


def test_cli_tour_task_lm_unknown_method(tmp_path, capsys):
    code = cli.main(["tour", "--task", "lm", "--tiny", "--out", str(tmp_path), "--methods",
                     "bwn-binary"])
    _, err = capsys.readouterr()
    assert code == 2 and "not defined for --task lm" in err and LM_METHODS[0] in err
