"""The README's commands and the CI entry point agree: ``.ci/run`` runs exactly the README's
test command (read between the ``<!-- test-command -->`` markers), fails on "no tests", makes
cross-checks mandatory and verifies that notebooks are stripped."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def readme_test_command() -> str:
    m = re.search(r"<!-- test-command -->\s*```[a-z]*\n(.*?)\n```\s*<!-- /test-command -->",
                  README, flags=re.S)
    assert m, "README.md must hold the test command in a code block between the markers"
    return m.group(1).strip()


def test_readme_test_command_installs_the_test_extra_and_runs_pytest():
    cmd = readme_test_command()
    assert "\n" not in cmd, "the test command must be one line"
    assert '".[test]"' in cmd or "'.[test]'" in cmd
    assert "pytest" in cmd


def test_ci_extracts_exactly_the_readme_command():
    line = next((ln for ln in CI.splitlines() if ln.startswith("cmd=$(")), None)
    assert line, ".ci/run must read the command into $cmd"
    bash = shutil.which("bash")
    if bash is None:
        pytest.fail("bash is needed to run .ci/run's extraction")
    out = subprocess.run([bash, "-c", f'{line}\nprintf "%s" "$cmd"'], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == readme_test_command()
    assert 'eval "$cmd"' in CI


def test_ci_fails_on_errors_and_no_tests():
    # `set -e` makes any non-zero exit fail the run, including pytest's 5 ("no tests collected")
    assert re.search(r"^set -[a-z]*e[a-z]*", CI, flags=re.M), ".ci/run must use set -e"
    assert "pipefail" in CI
    assert "REFIMPL_REQUIRE_CROSSCHECKS=1" in CI
    assert "nbstripout --verify" in CI


def test_readme_has_exactly_two_setup_commands_and_the_tour():
    section = README.split("## Set up and run", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```[a-z]*\n(.*?)\n```", section, flags=re.S)
    assert len(blocks) == 2, f"expected two set-up commands, found {blocks}"
    assert "refimpl tour" in blocks[0] and "pip install" in blocks[0]
    assert blocks[1].strip() == readme_test_command()


def test_cross_check_env_var_is_what_conftest_reads():
    conftest = (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8")
    assert "REFIMPL_REQUIRE_CROSSCHECKS" in conftest


# ------------------------------------------------------------- the README matches the code
def _links(text: str) -> list[str]:
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t
            and not t.startswith("#")]


def test_readme_lists_every_chapter_notebook():
    notebooks = sorted(p.name for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 7
    for name in notebooks:
        assert f"`chapters/{name}`" in README, f"README's chapter table misses {name}"


def test_readme_and_docs_point_only_at_files_in_the_repository():
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert {p.name for p in docs} >= {"architecture.md", "style.md", "notation.md",
                                      "equations.md"}
    for path in [ROOT / "README.md", *docs]:
        text = path.read_text(encoding="utf-8")
        assert "shared/" not in text, f"{path.name} points outside the repository (shared/)"
        for link in _links(text):
            target = (path.parent / link.split("#")[0]).resolve()
            assert target.exists(), f"{path.name} links to a missing file: {link}"


def test_equation_index_covers_1_to_69():
    text = (ROOT / "docs" / "equations.md").read_text(encoding="utf-8")
    covered = set()
    for first, last in re.findall(r"^\| (\d+)(?:–(\d+))? \|", text, flags=re.M):
        covered.update(range(int(first), int(last or first) + 1))
    assert covered == set(range(1, 70))


def test_readme_does_not_call_implemented_chapters_planned():
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `refimpl\.(\w+)` \| [^|]* \| "
                                                        r"(.*) \|$", README, flags=re.M)}
    for pkg in ("distillation", "sharing"):
        assert rows[pkg] != "" and not rows[pkg].endswith("(planned)"), rows[pkg]
        assert (ROOT / "refimpl" / pkg / "checks.py").exists()
    assert "Eq. 57" in rows["distillation"] and "Eqs. 60–61" in rows["sharing"]


def test_readme_explains_exercises_outputs_and_times():
    assert "### BEGIN SOLUTION" in README and "### END SOLUTION" in README
    assert "refimpl_out/full/" in README and "refimpl_out/quick/" in README
    assert re.search(r"tour takes\s+\d+–\d+\s+minutes", README)
    assert re.search(r"--quick`[^)]*\d+–\d+\s+seconds", README)
