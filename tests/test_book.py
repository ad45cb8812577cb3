"""The glue of ``refimpl book`` (issue #20): the equation table, the chapter-cell map, the staged
notebooks and API pages, and the cross-reference resolver of ``docs/book/conf.py``. The Sphinx
build itself (warnings as errors) runs in ``.ci/run`` after the test suite, on the notebooks the
notebook tests executed."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from refimpl import check
from refimpl.cli import book

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def test_equation_table_parses_ranges_and_escaped_pipes():
    text = ("| Eq. | § | what | where | |\n|---|---|---|---|---|\n"
            "| 4–6 | 2.1.3 | slope \\|w\\| | `f` | |\n| 7 | 2.1.3 | cubic | `g` | erratum: x |\n")
    t = book._parse_equation_table(text)
    assert sorted(t) == [4, 5, 6, 7]
    assert t[5] == ("2.1.3", "slope \\|w\\|", "`f`", "")
    assert t[7][3] == "erratum: x"


def test_every_equation_has_a_row_checks_and_a_chapter_cell():
    rows = book.equation_rows(ROOT / "docs" / "equations.md")
    assert [r.number for r in rows] == list(range(1, check.N_EQUATIONS + 1))
    assert all(r.statement and r.checks for r in rows)
    cells = book.notebook_check_cells(NOTEBOOKS)
    assert set(cells) == set(range(1, check.N_EQUATIONS + 1)), (
        f"equations no chapter cell calls: {sorted(set(range(1, 70)) - set(cells))}")


def test_equation_rows_name_missing_rows(tmp_path):
    p = tmp_path / "eq.md"
    p.write_text("| 1 | 2.1.1 | OBD | `f` | |\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no row for Eqs\. \[2, 3"):
        book.equation_rows(p)


def test_cell_labels_are_inserted_before_the_calling_cells():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"),
                                         nbformat.v4.new_code_cell("check.equation(3)"),
                                         nbformat.v4.new_code_cell("x = 1")])
    out = book._add_cell_labels(nb, "02_pruning", {1})
    assert [c.source for c in out.cells] == ["# t", "(cell-02-pruning-1)=", "check.equation(3)",
                                             "x = 1"]


def test_executed_copy_is_reused_only_when_its_cells_match(tmp_path):
    src = tmp_path / "chapters"
    src.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, src / "01_x.ipynb")
    executed = tmp_path / "executed"
    executed.mkdir()
    done = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    done.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"},
                                                    execution_count=1)]
    nbformat.write(done, executed / "01_x.ipynb")
    msgs = []
    got = book._executed_notebook(src / "01_x.ipynb", executed, 60, msgs.append)
    assert got.cells[0].outputs and "reusing" in msgs[0]
    stale = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 2")])
    nbformat.write(stale, executed / "01_x.ipynb")
    assert not book._same_source(stale, nb)


def test_api_pages_cover_every_public_name(tmp_path):
    undocumented = book._write_api_pages(tmp_path)
    assert undocumented == []
    for pkg in book.PACKAGES:
        text = (tmp_path / "api" / f"{pkg}.rst").read_text(encoding="utf-8")
        mod = __import__(f"refimpl.{pkg}", fromlist=["__all__"])
        for name in getattr(mod, "__all__", []):
            assert f":: {name}\n" in text or f"``{name}``: the module" in text, (
                f"refimpl.{pkg}.{name} missing from its API page")


def test_api_role_links_public_functions_and_marks_internal_ones():
    assert book._api_role("refimpl.pruning.weights.obd_saliency") == \
        "{py:func}`obd_saliency <refimpl.pruning.obd_saliency>`"
    assert book._api_role("refimpl.nn.layers.Linear").startswith("{py:class}")
    assert book._api_role("refimpl.pruning.weights.no_such_thing") == \
        "`refimpl.pruning.weights.no_such_thing`"


@pytest.fixture(scope="module")
def conf():
    return runpy.run_path(str(ROOT / "docs" / "book" / "conf.py"))


def test_conf_resolver_imports_module_paths_and_sibling_names(conf):
    obj = conf["_import_dotted"]("refimpl.pruning.weights.obd_saliency")
    from refimpl.pruning import obd_saliency

    assert obj is obd_saliency
    assert conf["_import_dotted"]("refimpl.pruning.weights.not_there") is conf["_MISSING"]
    import refimpl.pruning.weights  # noqa: F401 - the sibling must be loaded to be searched

    cands = conf["_candidates"]("mlp_output_jacobian", "refimpl.pruning", None)
    assert "refimpl.pruning.weights.mlp_output_jacobian" in cands


def test_conf_resolver_leaves_unimportable_targets_to_sphinx(conf):
    class Domain:
        objects, modules = {}, {}

        def resolve_xref(self, *a):  # pragma: no cover - must not be reached
            raise AssertionError

    env = SimpleNamespace(get_domain=lambda name: Domain())
    node = {"refdomain": "py", "reftarget": "refimpl.pruning.gone_function", "reftype": "func",
            "py:module": "refimpl.pruning", "refdoc": "api/pruning"}
    assert conf["_resolve_missing"](SimpleNamespace(builder=None), env, node, "x") is None
    node["reftarget"] = "refimpl.pruning.weights.mlp_output_jacobian"  # exists, not documented
    assert conf["_resolve_missing"](SimpleNamespace(builder=None), env, node, "x") == "x"


def test_book_without_the_docs_extra_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import fails as if not installed
    status = book.main(SimpleNamespace(out=None, executed=None, timeout=10))
    assert status == 2
    assert "docs extra" in capsys.readouterr().err


def test_chapter_mentions_of_public_objects_become_api_links():
    idx = book.public_index()
    md = ("`obd_saliency`, `pruning.weights.obs_update`, `refimpl.nn`, `dsd_train()`, `x = 1`, "
          "`not_a_public_name`\n```\n`obd_saliency`\n```")
    out = book.link_api_mentions(md, idx)
    assert "{py:obj}`obd_saliency <refimpl.pruning.obd_saliency>`" in out
    assert "{py:obj}`pruning.weights.obs_update <refimpl.pruning.obs_update>`" in out
    assert "{py:mod}`refimpl.nn <refimpl.nn>`" in out
    assert "{py:obj}`dsd_train() <refimpl.pruning.dsd_train>`" in out
    assert "`x = 1`" in out and "`not_a_public_name`" in out
    assert out.endswith("```\n`obd_saliency`\n```")  # fenced code untouched
