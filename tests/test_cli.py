"""The ``refimpl`` command: equations, check exit codes, chapters, bench, tour (tiny)."""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refimpl import check, cli
from refimpl.check import Outcome
from refimpl.cli import bench as bench_mod
from refimpl.cli import chapters as chapters_mod

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def registry(monkeypatch):
    """An isolated check registry holding one passing, one failing equation and a claim."""
    fresh: dict = {}
    monkeypatch.setattr(check, "_REGISTRY", fresh)
    monkeypatch.setattr(check, "_LOADED", True)
    check.register_equation(7, "ok", section="2.1.3", implements=["refimpl.x"], name="ok")(
        lambda rng, quick: Outcome.compare([1.0], [1.0]))
    check.register_equation(8, "bad", section="2.1.3", name="bad")(
        lambda rng, quick: Outcome.compare([1.0], [2.0], atol=0.1))
    check.register_claim("small-claim", "c", section="2.1.3")(
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


def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def test_top_level_help_reads_well():
    text = " ".join(cli.build_parser().format_help().split())
    assert "`" not in text  # no reST markup
    assert "Compression of Deep Learning Models for Text" in text
    assert "Exit status: 0 success, 1 something failed" in text


def test_every_option_has_help_text():
    _, subs = _subparsers()
    assert {"tour", "equations", "check", "chapters", "bench", "plan"} <= set(subs)
    for name, sub in subs.items():
        for action in sub._actions:
            if action.dest in ("help", "tiny"):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
            assert len(action.help) > 15, (name, action.dest, action.help)


def test_tour_help_lists_tasks_and_every_registered_method():
    from refimpl.registry import methods

    _, subs = _subparsers()
    text = " ".join(subs["tour"].format_help().split())
    assert "{sentiment,stdlib_topics,sentiment-hard,lm}" in text
    names = [m.name for m in methods()]
    assert len(names) >= 15
    for name in names:
        assert name in text, name
    assert "--tiny" not in text


# ----------------------------------------------------------------------------- equations
def test_equations_says_registered_not_passing(capsys, registry):
    assert cli.main(["equations"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    rows = [ln for ln in lines[1:] if ln.strip() and ln.split()[0].isdigit()]
    assert [int(r.split()[0]) for r in rows] == list(range(1, 70))
    assert rows[6].split()[2] == "registered" and "refimpl.x" in rows[6]
    assert rows[7].split()[2] == "registered"  # Eq. (8) fails, but was not run
    assert rows[0].split()[2] == "missing"
    assert lines[-1].startswith("2/69 equations have a check registered (not run;")
    assert "pass" not in out.lower()


def test_equations_run_exits_1_and_marks_failures(capsys, registry):
    assert cli.main(["equations", "--run"]) == 1
    out = capsys.readouterr().out
    rows = {int(r.split()[0]): r.split()[2] for r in out.splitlines()[1:]
            if r.strip() and r.split()[0].isdigit()}
    assert rows[7] == "passed" and rows[8] == "FAILED" and rows[1] == "missing"
    assert "1/69 equations passed their checks, 1 failed, 67 have none" in out
    assert "✗ Eq. (8)/bad" in out  # the failing verdict is printed


def test_equations_run_exits_0_when_all_pass(capsys, registry):
    del registry["Eq. (8)/bad"]
    assert cli.main(["equations", "--run"]) == 0
    assert "1/69 equations passed their checks, 0 failed, 68 have none" in \
        capsys.readouterr().out


def test_real_equations_map_has_69_rows(capsys):
    assert cli.main(["equations"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines()[1:]
            if ln.strip() and ln.split()[0].isdigit()]
    assert len(rows) == 69


# --------------------------------------------------------------------------------- check
@pytest.mark.parametrize("keys,code", [(["7"], 0), (["8"], 1), (["7", "8"], 1),
                                       (["small-claim"], 0), (["claim:small-claim"], 0),
                                       (["named"], 0), (["check:named"], 0), (["1"], 2),
                                       (["70"], 2), (["no_such_thing"], 2),
                                       (["claim:named"], 2)])
def test_check_exit_codes(keys, code, registry, capsys):
    assert cli.main(["check", *keys]) == code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code == 2:
        assert err.startswith("refimpl check: ") and out == ""
        assert repr(keys[0]) in err  # names the bad value
        assert "equations with checks: 7-8" in err  # and the valid choices
    else:
        assert out.count("§2") >= len(keys)
    if code == 1:
        assert "refimpl check: 1 of" in err and "failed" in err


def test_check_unknown_key_lists_claims_and_checks(registry, capsys):
    assert cli.main(["check", "zzz"]) == 2
    err = capsys.readouterr().err
    assert "claims and checks: named, small-claim" in err
    assert cli.main(["check", "70"]) == 2
    assert "numbered 1-69" in capsys.readouterr().err


def test_check_that_raises_is_a_failure_not_a_traceback(registry, capsys):
    def boom(rng, quick):
        raise RuntimeError("boom in the check")

    check.register_equation(9, "raises", section="2.2.1")(boom)
    assert cli.main(["check", "9", "7"]) == 1
    out, err = capsys.readouterr()
    assert "✗ Eq. (9)/boom §2.2.1 raises — FAILED" in out
    assert "raised RuntimeError: boom in the check" in out
    assert "1/2 passed" in out and "Traceback" not in out + err
    assert cli.main(["equations", "--run"]) == 1
    assert "raised RuntimeError" in capsys.readouterr().out


def test_check_all_of_a_kind(registry, capsys):
    assert cli.main(["check", "--kind", "claim"]) == 0
    assert "NOT reproduced" in capsys.readouterr().out
    assert cli.main(["check"]) == 1  # Eq. (8) fails


def test_check_errors_in_a_real_process_have_no_traceback():
    out = subprocess.run([sys.executable, "-m", "refimpl", "check", "no_such_claim_zz"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.startswith("refimpl check: 'no_such_claim_zz' is neither")
    assert "Traceback" not in out.stderr


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
    out, err = capsys.readouterr()
    assert err.startswith("refimpl chapters: no chapter notebook matches 'no_such_chapter_zz'")
    assert "available: [" in err and "'02_pruning'" in err and "Traceback" not in err


def test_chapters_command_rejects_a_bad_timeout(capsys):
    assert cli.main(["chapters", "--timeout", "0"]) == 2
    assert "--timeout must be a positive number of seconds per cell, got 0" in \
        capsys.readouterr().err


def test_chapters_command_exits_1_when_a_notebook_fails(tmp_path, monkeypatch, capsys):
    _write_notebook(tmp_path / "01_ok.ipynb", ["x = 1"])
    _write_notebook(tmp_path / "02_bad.ipynb", ["raise ValueError('the cell failed')"])
    monkeypatch.setattr(chapters_mod, "find_chapters_dir", lambda: tmp_path)
    assert cli.main(["chapters", "--timeout", "120"]) == 1
    out, err = capsys.readouterr()
    assert "1/2 notebooks passed" in out
    assert re.search(r"02_bad\.ipynb\s+FAILED", out)
    assert "refimpl chapters: 1 of 2 notebooks failed" in err
    assert cli.main(["chapters", "01", "--timeout", "120"]) == 0


def test_headless_kernel_prints_no_transport_warnings(tmp_path, capfd):
    """The kernel of `refimpl chapters` and tests/test_notebooks.py is quiet: no "running over
    TCP without encryption" warning (ipykernel >= 7), no debugpy "frozen modules" warning."""
    _write_notebook(tmp_path / "01_q.ipynb", ["import sys\nprint(sys._xoptions)"])
    capfd.readouterr()
    r = chapters_mod.run_notebook(tmp_path / "01_q.ipynb", timeout=120)
    out, err = capfd.readouterr()  # the kernel process writes to these file descriptors
    assert r["passed"], r["error"]
    assert "WARNING" not in err and "without encryption" not in err, err
    assert "frozen modules" not in err.lower(), err
    assert err == "", err
    km = chapters_mod.quiet_kernel_manager_class()(kernel_name="python3")
    if sys.version_info >= (3, 11):
        assert "-Xfrozen_modules=off" in km.kernel_spec.argv
    assert km.transport_encryption == "auto" or km.transport == "ipc"


def test_headless_kernel_is_shut_down_after_the_run(tmp_path):
    """nbclient owns the quiet manager, so no kernel outlives its notebook."""
    import os

    import nbclient
    import nbformat

    _write_notebook(tmp_path / "01_pid.ipynb", ["import os\nprint(os.getpid())"])
    nb = nbformat.read(tmp_path / "01_pid.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            kernel_manager_class=chapters_mod.quiet_kernel_manager_class()
                            ).execute()
    pid = int(nb.cells[0].outputs[0]["text"])

    def alive():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.time() + 10
    while alive() and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(), f"kernel {pid} still running after the notebook finished"


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
def _table_lines(text: str) -> list[str]:
    """The printed table: from its header line to the blank line after it."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("method "))
    end = lines.index("", start)
    return lines[start:end]


def test_tour_tiny_end_to_end(tmp_path, capsys):
    """The real tour (refimpl.nn models, the sentiment task) at a seconds-long size."""
    out = tmp_path / "tour"
    code = cli.main(["tour", "--quick", "--tiny", "--out", str(out),
                     "--methods", "baseline-float16"])
    text, err = capsys.readouterr()
    assert code == 0, text + err
    for f in ("tour.csv", "tour.md", "tour.png"):
        assert (out / f).stat().st_size > 0, f
    with open(out / "tour.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        rows = {r["method"]: r for r in reader}
    assert header[:9] == ["method", "family", "section", "vs", "params", "bits", "bytes",
                          "compression", "accuracy"]
    assert "attn_memory_ratio" in header and "attn_memory_n" in header
    # --methods baseline-float16 copies the primary baseline only: the bow is not trained
    assert list(rows) == ["baseline-lstm", "baseline-float16"]
    f16, lstm = rows["baseline-float16"], rows["baseline-lstm"]
    assert int(f16["bits"]) * 2 == int(lstm["bits"]) == 32 * int(lstm["params"])
    assert int(lstm["bytes"]) * 8 == int(lstm["bits"])
    assert float(f16["compression"]) == 2.0 and f16["status"] == "ok"
    assert abs(float(f16["accuracy"]) - float(lstm["accuracy"])) <= 0.02
    table = _table_lines(text)
    assert table[0].split() == ["method", "§", "vs", "bytes", "size", "×", "mem", "÷", "acc",
                                "Δ", "acc", "µs@1", "µs@64", "status"]
    assert [ln.split()[0] for ln in table[2:]] == ["baseline-lstm", "baseline-float16"]
    assert max(len(ln) for ln in text.splitlines() if str(out) not in ln) <= 100
    assert str(out / "tour.md") in text
    # progress on stderr (not a terminal here): one plain line per finished step
    steps = [ln for ln in err.splitlines() if ln.startswith("[")]
    assert len(steps) == 2 and "\r" not in err
    assert re.fullmatch(r"\[1/2\] baseline lstm: accuracy 0\.\d{3}, \d+ parameters, for "
                        r"baseline-float16 \(\d+\.\d s; elapsed \d+:\d\d, ETA \d+:\d\d\)",
                        steps[0]), steps[0]
    assert re.fullmatch(r"\[2/2\] baseline-float16: accuracy 0\.\d{3}, [\d.]+ KiB "
                        r"\(\d+\.\d s; elapsed \d+:\d\d, ETA 0:00\)", steps[1]), steps[1]


def test_tour_methods_train_only_the_baselines_they_need(tmp_path, monkeypatch, capsys):
    from refimpl.compare import tour

    made = []
    real = tour.make_model

    def counting(kind, *a, **kw):
        made.append(kind)
        return real(kind, *a, **kw)

    monkeypatch.setattr(tour, "make_model", counting)
    assert cli.main(["tour", "--tiny", "--out", str(tmp_path), "--baseline", "bow",
                     "--methods", "bwn-binary", "baseline-float16"]) == 0
    assert made == ["bow"]  # both methods copy the primary baseline; lstm is never trained
    text = capsys.readouterr().out
    assert [ln.split()[0] for ln in _table_lines(text)[2:]] == [
        "baseline-bow", "bwn-binary", "baseline-float16"]


def test_tour_validates_out_before_training(tmp_path, monkeypatch, capsys):
    from refimpl.compare import tour

    def no_training(*a, **kw):
        raise AssertionError("the tour started training before validating --out")

    monkeypatch.setattr(tour, "run_tour", no_training)
    monkeypatch.setattr(tour, "make_model", no_training)
    for bad, why in [("/proc/x", "not a writable folder"),
                     (str(tmp_path / "file.txt"), "is a file, not a folder")]:
        (tmp_path / "file.txt").write_text("x")
        assert cli.main(["tour", "--tiny", "--out", bad]) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"refimpl tour: --out {bad!r} ") and why in err, err
        assert "Traceback" not in err and out == ""
    # a folder that does not exist yet is created
    new = tmp_path / "a" / "b"
    monkeypatch.setattr(tour, "run_tour", lambda *a, **kw: (_ for _ in ()).throw(
        ValueError("stop here")))
    assert cli.main(["tour", "--tiny", "--out", str(new)]) == 2
    assert new.is_dir() and list(new.iterdir()) == []  # the probe file is gone
    assert "refimpl tour: stop here" in capsys.readouterr().err


def test_tour_out_in_a_real_process_fails_fast_without_traceback():
    out = subprocess.run([sys.executable, "-m", "refimpl", "tour", "--out", "/proc/x"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out
    assert out.stderr.startswith("refimpl tour: --out '/proc/x' is not a writable folder")
    assert "Traceback" not in out.stderr and out.stdout == ""


@pytest.mark.parametrize("argv,message", [
    (["--methods", "nope"], "--methods: 'nope' is not registered; registered methods: "),
    (["--methods", "nope", "zz"], "--methods: 'nope', 'zz' are not registered"),
    (["--time-budget", "-1"], "--time-budget must be a positive number of seconds, got -1.0"),
    (["--budget", "-1"], "--budget must be a positive number of bytes, got -1.0"),
    (["--seed", "-3"], "--seed must be a non-negative integer, got -3"),
])
def test_tour_bad_arguments_exit_2_on_stderr(argv, message, tmp_path, capsys):
    assert cli.main(["tour", "--tiny", "--out", str(tmp_path), *argv]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("refimpl tour: ") and message in err, err
    assert out == "" and "Traceback" not in err
    if "registered methods" in message:
        assert "baseline-float16" in err and "magnitude-90" in err  # the valid choices


def test_tour_bad_task_is_an_argparse_error_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["tour", "--task", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --task: invalid choice: 'nope'" in err and "sentiment" in err


def test_tour_default_out_is_per_preset(monkeypatch, tmp_path, capsys):
    from refimpl.compare import tour

    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(tour, "prepare_out_dir", lambda out: seen.setdefault("out", out) and
                        (_ for _ in ()).throw(ValueError("stop")))
    for argv, want in [([], "refimpl_out/full"), (["--quick"], "refimpl_out/quick")]:
        seen.clear()
        assert cli.main(["tour", *argv]) == 2
        assert seen["out"] == want
    capsys.readouterr()
