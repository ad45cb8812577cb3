"""``refimpl bench --json`` / ``--report`` and the record helpers of ``benchmarks/_common.py``.

No speed here: the record's schema (keys, types), ratios and fractions computed by hand from
given times, the report generator on a small fixture record, the CLI's flags and its usage
errors (exit status 2 with a message), the roofline helpers on tiny sizes (positive, finite)
and the torch-missing path.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import textwrap
import time
from pathlib import Path

import pytest

from refimpl import cli
from refimpl.cli import bench as bench_mod

ROOT = Path(__file__).resolve().parents[1]
ROOF = {"memory_gbs": 20.0, "copy_gbs": 18.0, "triad_gbs": 20.0, "sgemm_gflops": 100.0,
        "balance_flops_per_byte": 5.0, "array_mib": 64.0, "gemm_n": 2048, "passes": 3,
        "method": "fixture"}


@pytest.fixture
def common(monkeypatch, tmp_path):
    """``benchmarks/_common.py`` with a fixed roofline and a scratch record file."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    mod = importlib.import_module("_common")
    monkeypatch.setattr(mod, "_ROOF", None)
    monkeypatch.setenv(mod.ROOFLINE_ENV, json.dumps(ROOF))
    monkeypatch.setenv(mod.RECORD_ENV, str(tmp_path / "rec.jsonl"))
    monkeypatch.setattr(mod, "llc_bytes", lambda: 32 << 20)
    return mod


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


# ------------------------------------------------------------------------- record helpers
def test_record_ratios_rates_and_fraction_by_hand(common, tmp_path):
    c = common.record("demo", "case A", "kern", (0.5, 0.6),
                      peers={"numpy": (2.0, 2.4), "torch": (1.0, 1.8), "absent": None},
                      numpy_baseline="numpy", bytes_moved=4e9, params={"n": 4})
    assert c["best_peer"] == "torch"
    assert c["ratio_best_peer"] == pytest.approx(2.0)  # 1.0 / 0.5
    assert c["ratio_best_peer_median"] == pytest.approx(3.0)  # 1.8 / 0.6
    assert c["ratio_numpy"] == pytest.approx(4.0)
    assert "absent" not in c["peers"]
    assert c["bound"] == "memory"  # bytes only
    assert c["gb_per_s"] == pytest.approx(8.0)  # 4e9 B / 0.5 s
    assert c["fraction_of_limit"] == pytest.approx(8.0 / ROOF["memory_gbs"])
    assert c["note"] is None  # 4 GB does not fit the 32 MiB LLC
    assert _lines(tmp_path / "rec.jsonl") == [json.loads(json.dumps(c))]


def test_record_bound_from_the_balance_point_and_llc_note(common):
    # 2e6 flops over 1e5 bytes = 20 flop/byte > balance 5: compute-bound
    c = common.record("demo", "gemm-like", "k", 1e-3, flops=2e6, bytes_moved=1e5)
    assert c["bound"] == "compute" and c["limit_unit"] == "GFLOP/s"
    assert c["gflop_per_s"] == pytest.approx(2.0)
    assert c["fraction_of_limit"] == pytest.approx(2.0 / ROOF["sgemm_gflops"])
    # 1 flop/byte < 5: memory-bound; 1e5 bytes fit in the LLC: noted
    m = common.record("demo", "stream-like", "k", 1e-3, flops=1e5, bytes_moved=1e5)
    assert m["bound"] == "memory" and "LLC" in m["note"]
    assert m["best_peer"] is None and m["ratio_best_peer"] is None


@pytest.mark.parametrize("kw, match", [({"bound": "io"}, "bound"), ({"time": 0.0}, "time"),
                                       ({"time": float("nan")}, "time")])
def test_record_bad_input(common, kw, match):
    args = {"time": 1.0, **kw}
    t = args.pop("time")
    with pytest.raises(ValueError, match=match):
        common.record("demo", "bad", "k", t, bytes_moved=1.0, **args)


def test_record_accepts_a_timing(common):
    t = common.Timing(best=0.25, median=0.5, q25=0.3, q75=0.6, calls_per_sample=1, samples=3)
    c = common.record("demo", "timed", "k", t, peers={"p": t}, flops=1e9)
    assert (c["time_s"], c["median_s"]) == (0.25, 0.5)
    assert c["ratio_best_peer"] == pytest.approx(1.0)


def test_without_record_env_nothing_is_written(common, monkeypatch, tmp_path):
    monkeypatch.delenv(common.RECORD_ENV)
    common.record("demo", "quiet", "k", 1.0, flops=1.0)
    assert not (tmp_path / "rec.jsonl").exists()


def test_roofline_tiny_sizes_positive_finite(common):
    roof = common.roofline(n_elements=4096, gemm_n=32, passes=2)
    for key in ("copy_gbs", "triad_gbs", "memory_gbs", "sgemm_gflops",
                "balance_flops_per_byte"):
        assert isinstance(roof[key], float) and roof[key] > 0 and math.isfinite(roof[key]), key
    assert roof["memory_gbs"] == max(roof["copy_gbs"], roof["triad_gbs"])
    with pytest.raises(ValueError, match="positive"):
        common.roofline(n_elements=0, gemm_n=8, passes=1)


def test_machine_info_fields(common):
    info = common.cpu_info()
    assert isinstance(info["model"], str) and info["model"]
    assert isinstance(info["isa_flags"], list)
    assert all(f in common.ISA_FLAGS for f in info["isa_flags"])
    assert isinstance(common.blas_kernel(), str)


def test_torch_missing_path(common, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    assert common.torch_or_none() is None
    assert "torch not installed" in capsys.readouterr().out
    common.note_missing_peer("demo", "torch SDPA", "torch not installed")
    assert _lines(tmp_path / "rec.jsonl") == [
        {"type": "missing_peer", "benchmark": "demo", "peer": "torch SDPA",
         "reason": "torch not installed"}]


# ----------------------------------------------------------------------- schema and report
def _fixture_record() -> dict:
    case = {"type": "case", "benchmark": "sparse", "case": "CSR SpMV n=4096", "kernel": "csr",
            "time_s": 0.0005, "median_s": 0.0006, "params": {"n": 4096},
            "peers": {"torch.sparse_csr": {"time_s": 0.001, "median_s": 0.0012, "ratio": 2.0,
                                           "ratio_median": 2.0},
                      "numpy dense": {"time_s": 0.004, "median_s": 0.004, "ratio": 8.0,
                                      "ratio_median": 6.67}},
            "best_peer": "torch.sparse_csr", "ratio_best_peer": 2.0,
            "ratio_best_peer_median": 2.0, "numpy_baseline": "numpy dense", "ratio_numpy": 8.0,
            "bytes": 1e7, "flops": 3e6, "gb_per_s": 20.0, "gflop_per_s": 6.0,
            "bound": "memory", "limit": 25.0, "limit_unit": "GB/s", "fraction_of_limit": 0.8,
            "headline": True, "note": None}
    other = {**case, "case": "CSR SpMM n=1024", "headline": False, "best_peer": None,
             "peers": {}, "ratio_best_peer": None, "ratio_numpy": None}
    return {"schema": bench_mod.SCHEMA, "date_utc": "2026-12-06 20:00 UTC", "quick": True,
            "command": "refimpl bench --quick",
            "machine": {"cpu": {"model": "Test CPU 9000", "llvm_cpu": "znver4",
                                "isa_flags": ["avx2", "avx512f"], "llc_bytes": 1 << 25},
                        "blas_kernel": "openblas 0.3.31 SkylakeX", "cpu_count": 2,
                        "threads": {"numba": 2, "blas": 2, "torch": 2},
                        "loadavg": [1.0, 1.0, 1.0]},
            "roofline": dict(ROOF), "benchmarks": [{"name": "bench_sparse.py", "exit": 0,
                                                   "seconds": 1.0, "cases": 2,
                                                   "missing_peers": []}],
            "cases": [case, other],
            "missing_peers": [{"type": "missing_peer", "benchmark": "tt", "peer": "TensorLy",
                               "reason": "tensorly not installed"}]}


def test_validate_record_accepts_the_fixture_and_names_bad_keys():
    doc = _fixture_record()
    assert bench_mod.validate_record(doc) is doc
    bad = _fixture_record()
    del bad["roofline"]["sgemm_gflops"]
    with pytest.raises(ValueError, match="sgemm_gflops"):
        bench_mod.validate_record(bad)
    bad = _fixture_record()
    bad["cases"][0]["bound"] = "io"
    with pytest.raises(ValueError, match="bound"):
        bench_mod.validate_record(bad)
    bad = _fixture_record()
    bad["cases"][1]["time_s"] = "fast"
    with pytest.raises(ValueError, match=r"cases\[1\]\['time_s'\]"):
        bench_mod.validate_record(bad)
    with pytest.raises(ValueError, match="schema"):
        bench_mod.validate_record({**_fixture_record(), "schema": "other/9"})
    with pytest.raises(ValueError, match="JSON object"):
        bench_mod.validate_record([])


def test_report_markdown_on_the_fixture():
    text = bench_mod.report_markdown(_fixture_record())
    assert "Test CPU 9000" in text and "openblas 0.3.31 SkylakeX" in text
    assert "avx512f" in text and "20.0 GB/s" in text and "100 GFLOP/s" in text
    rows = [x for x in text.splitlines() if x.startswith("| sparse")]
    assert rows == ["| sparse | CSR SpMV n=4096 | 0.5 ms | torch.sparse_csr (1 ms) | 2× | 8× | "
                    "20.0 GB/s (80%) | memory |"]
    assert "TensorLy (tensorly not installed)" in text
    assert "shared machine" not in text  # load 1.0 on 2 CPUs
    busy = _fixture_record()
    busy["machine"]["loadavg_end"] = [3.5, 2.0, 1.0]
    assert "a shared machine, busier than its 2 CPUs" in bench_mod.report_markdown(busy)
    every = bench_mod.report_markdown(_fixture_record(), all_cases=True)
    assert "| sparse | CSR SpMM n=1024 | 0.5 ms | — | — | — |" in every


# ------------------------------------------------------------------------------------- CLI
def test_cli_flags_parse():
    a = cli.build_parser().parse_args(["bench", "sparse", "--quick", "--json", "out.json"])
    assert (a.names, a.quick, a.json, a.report, a.all) == (["sparse"], True, "out.json", None,
                                                           False)
    a = cli.build_parser().parse_args(["bench", "--report", "r.json", "--all"])
    assert (a.report, a.all, a.json) == ("r.json", True, None)


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    assert cli.main(["bench", "--json", str(tmp_path / "missing" / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["bench", "--json", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert cli.main(["bench", "--report", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli.main(["bench", "--report", str(tmp_path / "bad.json")]) == 2
    assert "not a readable JSON file" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"schema": "x"}))
    assert cli.main(["bench", "--report", str(tmp_path / "other.json")]) == 2
    assert "not a `refimpl bench --json` record" in capsys.readouterr().err
    (tmp_path / "ok.json").write_text(json.dumps(_fixture_record()))
    assert cli.main(["bench", "sparse", "--report", str(tmp_path / "ok.json")]) == 2
    assert "runs nothing" in capsys.readouterr().err
    assert cli.main(["bench", "--report", str(tmp_path / "ok.json")]) == 0
    assert "Test CPU 9000" in capsys.readouterr().out


def test_runner_collects_one_record(tmp_path, monkeypatch, capsys):
    """A fake benchmarks/ folder: a probe printing a fixed machine and roofline, one script
    recording through the real ``_common.record`` (the convention bench_lowbit.py follows),
    one noting a missing peer and failing."""
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    machine = {**_fixture_record()["machine"], "roofline": ROOF}
    (folder / "_common.py").write_text(f"print({json.dumps(json.dumps(machine))})\n")
    use_real = f"import sys\nsys.path.insert(0, {str(ROOT / 'benchmarks')!r})\nimport _common\n"
    (folder / "bench_a.py").write_text(use_real + textwrap.dedent("""
        assert '--quick' in sys.argv
        _common.record("a", "case 1", "k", 0.5, peers={"p": 1.0}, bytes_moved=1e9,
                       headline=True)
        _common.record("a", "case 2", "k", 1.0, flops=1e9)
    """))
    (folder / "bench_b.py").write_text(use_real + textwrap.dedent("""
        _common.note_missing_peer("b", "torch", "torch not installed")
        raise SystemExit(3)
    """))
    monkeypatch.setattr(bench_mod, "find_benchmarks_dir", lambda: folder)
    out = tmp_path / "rec.json"
    assert cli.main(["bench", "--quick", "--json", str(out)]) == 1  # bench_b failed
    doc = bench_mod.validate_record(json.loads(out.read_text()))
    assert doc["quick"] is True and {k: doc["roofline"][k] for k in ROOF} == ROOF
    assert len(doc["roofline"]["probes"]) == 2  # probed before and after the scripts
    assert doc["machine"]["cpu"]["model"] == "Test CPU 9000"
    assert [(b["name"], b["exit"], b["cases"], b["missing_peers"]) for b in doc["benchmarks"]] \
        == [("bench_a.py", 0, 2, []), ("bench_b.py", 3, 0, ["torch"])]
    assert [c["case"] for c in doc["cases"]] == ["case 1", "case 2"]
    c1 = doc["cases"][0]
    assert c1["ratio_best_peer"] == pytest.approx(2.0)
    assert c1["fraction_of_limit"] == pytest.approx(2.0 / ROOF["memory_gbs"])
    assert doc["missing_peers"][0]["peer"] == "torch"
    capsys.readouterr()
    assert cli.main(["bench", "--report", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| a | case 1 | 500 ms | p (1.00 s) | 2× |" in table
    assert "Failed (exit status ≠ 0): bench_b.py" in table


def test_readme_table_is_the_report_of_the_committed_record():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = "<!-- generated: refimpl bench --report benchmarks/headline.json -->"
    end = "<!-- end of generated table -->"
    assert start in readme and end in readme
    block = readme.split(start, 1)[1].split(end, 1)[0].strip()
    doc = json.loads((ROOT / "benchmarks" / "headline.json").read_text(encoding="utf-8"))
    assert block == bench_mod.report_markdown(doc).strip()


@pytest.mark.parametrize("with_torch", [False, True])
def test_benchmarks_run_with_and_without_torch(common, monkeypatch, tmp_path, with_torch):
    """Tiny sizes of two benchmarks' measuring functions: without torch the rows and records
    simply lack the torch peers; with it the peers are checked against the product inside
    (``assert`` in the benchmark) and recorded."""
    import numpy as np

    torch = pytest.importorskip("torch") if with_torch else None
    bench_sparse = importlib.import_module("bench_sparse")
    bench_binary_gemm = importlib.import_module("bench_binary_gemm")

    def one_call_each(fns, rounds, settle=0.0):  # no sleeping rounds: call once, fixed times
        return {k: (f(), (1e-3, 1e-3))[1] for k, f in fns.items()}

    monkeypatch.setattr(bench_binary_gemm, "_interleaved", one_call_each)
    rng = np.random.default_rng(0)
    rows = bench_sparse.bench_one(rng, 64, np.float32, 0.9, 1, False, torch=torch)
    cases, row = bench_binary_gemm._measure(16, 16, 128, rng, 1, torch=torch)
    recorded = _lines(tmp_path / "rec.jsonl")
    assert len(recorded) == len(rows) + len(cases) == 3 + 3
    peers = set().union(*(c["peers"] for c in recorded))
    torch_peers = {"torch.sparse_csr", "torch f32 mm", "torch int8 dynamic Linear"}
    assert (torch_peers <= peers) if with_torch else not (torch_peers & peers)
    assert ("torch_ms" in rows[0]) == with_torch and ("torch int8 ms" in row) == with_torch


def test_decoding_pass_records_per_layer_times(common, monkeypatch, tmp_path):
    """``bench_lowbit._measure_pass`` at a tiny size: every kernel checked against the float64
    product (``assert`` inside), one record per refimpl kernel with the per-layer time (pass /
    layers), its batch-1 cases in the headline, the torch peers recorded."""
    import numpy as np

    pytest.importorskip("torch")
    bench_lowbit = importlib.import_module("bench_lowbit")
    calls = {}

    def one_call_each(fns, rounds, settle=0.0):  # call once, fixed pass times
        for k, f in fns.items():
            calls[k] = len(f())
        return {k: (4e-3, 2e-3) for k in fns}

    monkeypatch.setattr(bench_lowbit, "_interleaved", one_call_each)
    rows = bench_lowbit._measure_pass(1, 48, 100, 4, np.random.default_rng(0), 1, 1)
    assert set(calls.values()) == {4}  # every library called each of the 4 layers
    recorded = _lines(tmp_path / "rec.jsonl")
    assert [c["case"] for c in recorded] == [
        f"{k} weights 48x100, batch 1, 4-layer pass"
        for k in ("4-bit", "3-bit", "2-bit LUT", "ternary LUT", "binary LUT")]
    assert all(c["headline"] and c["time_s"] == pytest.approx(0.5e-3) for c in recorded)
    assert {"numpy f32", "torch f32", "torch int8"} <= set(recorded[0]["peers"])
    assert {r["kernel"] for r in rows} >= {"numpy f32", "4-bit", "binary LUT"}


@pytest.mark.parametrize("burst", [1, 3])
def test_lowbit_records_name_the_protocol(common, monkeypatch, tmp_path, burst):
    """``bench_lowbit._measure`` at a tiny size: one record per refimpl kernel; the cold
    protocol's batch-1 cases of the headline kernels go to the README table, the steady-state
    ones (``burst`` = 3, each timed call the third of a burst) say so in the case name and stay
    out of the headline."""
    import numpy as np

    pytest.importorskip("torch")
    bench_lowbit = importlib.import_module("bench_lowbit")
    seen = {}

    def one_call_each(fns, rounds, clock=None, burst=1):  # call once, fixed times
        seen["burst"] = burst
        return {k: (f(), (2e-3, 1e-3))[1] for k, f in fns.items()}

    monkeypatch.setattr(bench_lowbit, "_interleaved", one_call_each)
    rows, _ = bench_lowbit._measure(1, 48, 128, np.random.default_rng(0), 1, 1, time.perf_counter,
                                    burst=burst)
    assert seen["burst"] == burst
    recorded = _lines(tmp_path / "rec.jsonl")
    suffix = ", steady state (call 3 of a burst)" if burst == 3 else ""
    assert [c["case"] for c in recorded][:2] == [f"4-bit weights 48x128, batch 1{suffix}",
                                                f"3-bit weights 48x128, batch 1{suffix}"]
    assert all(c["params"]["burst"] == burst for c in recorded)
    headline = {c["case"] for c in recorded if c["headline"]}
    if burst == 1:
        assert headline == {f"{k} weights 48x128, batch 1" for k in bench_lowbit._HEADLINE}
    else:
        assert not headline
    assert {r["kernel"] for r in rows} >= {"numpy f32", "torch f32", "4-bit", "binary LUT"}
