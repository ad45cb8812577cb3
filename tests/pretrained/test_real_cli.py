"""``refimpl real``: usage errors (exit 2, a message, no traceback) and a quick run of chapter 9's
table on the real all-MiniLM-L6-v2 (the weights package is in the test extra; STS-B from the
shared development copy ``../shared/data/stsb`` or ``$REFIMPL_STSB_DIR``)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from refimpl import cli

STSB = Path(os.environ.get("REFIMPL_STSB_DIR",
                           Path(__file__).resolve().parents[3] / "shared" / "data" / "stsb"))


def test_unknown_method_is_a_usage_error(capsys):
    assert cli.main(["real", "--methods", "original", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("refimpl real: unknown method(s) ['nope']") and "fastformers" in err
    assert "Traceback" not in err


def test_missing_stsb_and_weights_are_usage_errors(capsys, tmp_path):
    assert cli.main(["real", "--stsb", str(tmp_path / "missing")]) == 2
    assert "--stsb" in capsys.readouterr().err
    assert cli.main(["real", "--weights", str(tmp_path), "--methods", "original"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the weights" in err and "model.safetensors" in err


def test_quick_table_on_the_real_model(capsys, tmp_path):
    """The table runs on the real model at quick size (two methods, under a minute idle).

    STS-B is scored when its CSV files are there (the development copy beside the checkout, or
    ``$REFIMPL_STSB_DIR``); a clone without them runs the rest of the table and says so. In CI
    (``REFIMPL_REQUIRE_CROSSCHECKS=1``) the files must be there.
    """
    have_stsb = STSB.is_dir()
    if not have_stsb and os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        pytest.fail(f"STS-B development copy not found at {STSB} (set REFIMPL_STSB_DIR)")
    if not have_stsb:
        print(f"STS-B files not found at {STSB}: the table runs without its STS-B column")
    stsb = ["--stsb", str(STSB)] if have_stsb else []
    code = cli.main(["real", "--quick", "--out", str(tmp_path), *stsb,
                     "--methods", "magnitude-90", "uniform-8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| original | — | 90,26" in out  # 22 565 376 float32 parameters: 90 261 504 bytes
    rows = list(csv.DictReader(open(tmp_path / "real_model.csv")))
    assert [r["method"] for r in rows] == ["original", "magnitude-90", "uniform-8"]
    orig, mag, u8 = rows
    assert int(orig["bytes"]) == 4 * 22_565_376
    assert float(orig["fidelity"]) == pytest.approx(1.0, abs=1e-6)
    # all-MiniLM-L6-v2 scores 82.03 on the full STS-B test set; the quick run uses its first
    # 256 pairs (video captions, an easier genre: 93.8 measured), ≤ 32 tokens each
    if have_stsb:
        assert 80 < float(orig["stsb"]) < 98
    # 8-bit per-row codes barely move the embeddings; 90 % unpruned-then-not-retrained does
    assert float(u8["fidelity"]) > 0.99 > float(mag["fidelity"])
    assert int(u8["bytes"]) < int(orig["bytes"]) / 3.5
    assert (tmp_path / "real_model.png").read_bytes()[:4] == b"\x89PNG"
    assert "refimpl real: loaded all-MiniLM-L6-v2" in err and "wrote" in err
