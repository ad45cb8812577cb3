"""The ``refimpl`` command: equations, check exit codes, chapters, bench, tour (tiny)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from refimpl import check, cli
from refimpl.check import Outcome
from refimpl.compare import bench as bench_mod
from refimpl.compare import chapters as chapters_mod

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def registry(monkeypatch):
    """An isolated check registry holding one passing, one failing equation and a claim."""
    fresh: dict = {}
    monkeypatch.setattr(check, "_REGISTRY", fresh)
    monkeypatch.setattr(check, "_LOADED", True)
    check.register_equation(7, "ok", section="2.1.3", implements=["refimpl.x"])(
        lambda rng, quick: Outcome.compare([1.0], [1.0]))
    check.register_equation(8, "bad", section="2.1.3")(
        lambda rng, quick: Outcome.compare([1.0], [2.0], atol=0.1))
    check.register_claim("small_claim", "c", section="2.1.3")(
        lambda rng, quick: Outcome(True, {"acc": 0.5}, reproduced=False))
    check.register_check("named", "n", section="2")(lambda rng, quick: Outcome(True))
    return fresh


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "refimpl", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for cmd in ("tour", "equations", "check", "chapters", "bench"):
        assert cmd in out.stdout
    assert "--tiny" not in cli.build_parser().format_help()


def test_equations_prints_69_rows(capsys, registry):
    assert cli.main(["equations"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines[1:] if ln.strip() and ln.split()[0].isdigit()]
    assert [int(r.split()[0]) for r in rows] == list(range(1, 70))
    assert "checked" in rows[6] and "refimpl.x" in rows[6]
    assert "missing" in rows[0]
    assert lines[-1] == "2/69 equations have a passing check registered"


def test_equations_run_marks_failures(capsys, registry):
    assert cli.main(["equations", "--run"]) == 0
    rows = capsys.readouterr().out.splitlines()
    row8 = next(r for r in rows if r.split() and r.split()[0] == "8")
    assert "FAILED" in row8


def test_real_equations_map_has_69_rows(capsys):
    assert cli.main(["equations"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines()[1:]
            if ln.strip() and ln.split()[0].isdigit()]
    assert len(rows) == 69


@pytest.mark.parametrize("keys,code", [(["7"], 0), (["8"], 1), (["7", "8"], 1),
                                       (["small_claim"], 0), (["claim:small_claim"], 0),
                                       (["named"], 0), (["check:named"], 0), (["1"], 2),
                                       (["no_such_thing"], 2)])
def test_check_exit_codes(keys, code, registry, capsys):
    assert cli.main(["check", *keys]) == code
    out, err = capsys.readouterr()
    if code == 2:
        assert "refimpl check:" in err
    else:
        assert out.count("§2") >= len(keys)


def test_check_all_of_a_kind(registry, capsys):
    assert cli.main(["check", "--kind", "claim"]) == 0
    assert "NOT reproduced" in capsys.readouterr().out
    assert cli.main(["check"]) == 1  # Eq. (8) fails


# ------------------------------------------------------------------------------ chapters
def _write_notebook(path: Path, sources):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


def test_chapter_selection(tmp_path):
    for name in ("01_networks", "02_pruning", "03_quantization"):
        _write_notebook(tmp_path / f"{name}.ipynb", ["1"])
    sel = chapters_mod.select_notebooks
    assert [p.stem for p in sel(tmp_path, [])] == ["01_networks", "02_pruning",
                                                   "03_quantization"]
    assert [p.stem for p in sel(tmp_path, ["2"])] == ["02_pruning"]
    assert [p.stem for p in sel(tmp_path, ["03_quantization.ipynb", "01"])] == [
        "03_quantization", "01_networks"]
    assert [p.stem for p in sel(tmp_path, ["prun"])] == ["02_pruning"]
    with pytest.raises(ValueError, match="no chapter notebook matches 'zzz'"):
        sel(tmp_path, ["zzz"])


def test_run_notebook_pass_and_fail(tmp_path):
    _write_notebook(tmp_path / "01_ok.ipynb", ["import os\nx = os.getcwd()", "assert x"])
    _write_notebook(tmp_path / "02_bad.ipynb", ["y = 1", "raise ValueError('the cell failed')"])
    ok = chapters_mod.run_notebook(tmp_path / "01_ok.ipynb", timeout=120)
    assert ok["passed"] and ok["error"] == "" and ok["seconds"] > 0
    bad = chapters_mod.run_notebook(tmp_path / "02_bad.ipynb", timeout=120)
    assert not bad["passed"]
    assert "raise ValueError('the cell failed')" in bad["error"]  # the failing cell's source
    assert "ValueError: the cell failed" in bad["error"]  # and its traceback
    import nbformat

    committed = nbformat.read(tmp_path / "01_ok.ipynb", as_version=4)
    assert all(not c.outputs for c in committed.cells)  # the file on disk is left stripped


def test_chapters_command_reports_unknown_names(capsys):
    assert cli.main(["chapters", "no_such_chapter_zz"]) == 2
    assert "refimpl chapters:" in capsys.readouterr().err


# --------------------------------------------------------------------------------- bench
def test_bench_selection_and_errors(tmp_path, monkeypatch, capsys):
    assert [p.name for p in bench_mod.select_benchmarks(ROOT / "benchmarks", ["sparse"])] == [
        "bench_sparse.py"]
    assert bench_mod.select_benchmarks(ROOT / "benchmarks", ["bench_sparse.py"])[0].name == \
        "bench_sparse.py"
    with pytest.raises(ValueError, match="no benchmark named 'nope'"):
        bench_mod.select_benchmarks(ROOT / "benchmarks", ["nope"])
    # as if installed from a wheel: no benchmarks/ anywhere
    monkeypatch.setattr(bench_mod, "find_benchmarks_dir", lambda: None)
    assert cli.main(["bench"]) == 2
    assert "source repository" in capsys.readouterr().err


def test_bench_runs_scripts_as_subprocesses(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "bench_ok.py").write_text("import sys\nprint('ran', sys.argv[1:])\n")
    (folder / "bench_fail.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(bench_mod, "find_benchmarks_dir", lambda: folder)
    assert cli.main(["bench", "ok", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "bench_ok.py" in out
    assert cli.main(["bench"]) == 1
    assert "bench_fail.py" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- tour
def test_tour_tiny_end_to_end(tmp_path, capsys):
    """The real tour (refimpl.nn models, the sentiment task) at a seconds-long size."""
    out = tmp_path / "tour"
    code = cli.main(["tour", "--quick", "--tiny", "--out", str(out),
                     "--methods", "baseline-float16"])
    text = capsys.readouterr().out
    assert code == 0, text
    for f in ("tour.csv", "tour.md", "tour.png"):
        assert (out / f).stat().st_size > 0, f
    with open(out / "tour.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        rows = {r["method"]: r for r in reader}
    assert header[:9] == ["method", "family", "section", "vs", "params", "bits", "bytes",
                          "compression", "accuracy"]
    assert list(rows) == ["baseline-lstm", "baseline-bow", "baseline-float16"]
    f16, lstm = rows["baseline-float16"], rows["baseline-lstm"]
    assert int(f16["bits"]) * 2 == int(lstm["bits"]) == 32 * int(lstm["params"])
    assert int(lstm["bytes"]) * 8 == int(lstm["bits"])
    assert float(f16["compression"]) == 2.0 and f16["status"] == "ok"
    assert abs(float(f16["accuracy"]) - float(lstm["accuracy"])) <= 0.02
    assert "compression ×" in text and "baseline-float16" in text


def test_tour_unknown_method_exits_2(tmp_path, capsys):
    assert cli.main(["tour", "--tiny", "--out", str(tmp_path), "--methods", "nope"]) == 2
    assert "not registered" in capsys.readouterr().out
