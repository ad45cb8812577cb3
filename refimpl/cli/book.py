"""``refimpl book``: build the chapters, the errata, the equation pages and the API reference as
one static HTML book (issue #20), with Sphinx, MyST-NB and numpydoc (the ``docs`` extra).

What it does, in order:

1. **Stage** a Sphinx source tree under ``OUT/src`` that mirrors the repository, so the relative
   links of README.md and ``docs/*.md`` resolve as they do on a repository browser: README.md,
   ``docs/*.md``, ``chapters/ERRATA.md`` and ``chapters/*.ipynb`` *executed* (quick sizes, as the
   test suite runs them). An executed copy from ``--executed DIR`` (``.ci/run`` has the notebook
   tests write theirs there, ``REFIMPL_EXECUTED_DIR``) is reused when its code and Markdown
   cells are those of the committed notebook; otherwise the notebook is executed here.
2. **Generate** the glue the registry knows: ``index.md`` (the README, then the tables of
   contents), one page per survey equation (1)–(69) under ``equations/`` — the survey's
   statement in English (the row of ``docs/equations.md``), the implementing functions linked
   to the API reference, every registered check with the verdict it gave in this build, and a
   link to each chapter cell that calls the check — and one API page per package under
   ``api/`` from the packages' ``__all__`` (numpydoc docstrings, with the shapes they state).
3. **Build** with ``sphinx-build -W --keep-going -n``: a broken cross-reference, a docstring
   numpydoc cannot parse (a warning) or a public object without a docstring fails the build
   (exit status 1) and the warnings are printed.

The book is ``OUT/html/index.html`` (default ``OUT = _build/book`` in the checkout); the search
box works offline (Sphinx's own index); math is typeset by MathJax, loaded by the browser.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from refimpl.utils import temporary_environ

__all__ = ["PACKAGES", "EquationRow", "equation_rows", "notebook_check_cells", "public_index",
           "link_api_mentions", "stage", "build", "main"]

#: The packages of the API reference, in the order of docs/architecture.md's floors.
PACKAGES = ("nn", "kernels", "data", "check", "registry", "sizes", "utils", "pruning",
            "quantization", "distillation", "sharing", "decomposition", "attention", "compare")
_OPTIONAL_PACKAGES = ("pretrained", "assignment")  # appear once they exist

_CHAPTER_OF_SECTION = {"2": "02", "3": "03", "4": "04", "5": "05", "6": "06", "7": "07",
                       "8": "08"}


@dataclass
class EquationRow:
    """One survey equation as the book shows it."""

    number: int
    section: str
    statement: str
    where: str
    erratum: str
    functions: list[str] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)  # (registry key, title)


# ------------------------------------------------------------------------------ equations
def _parse_equation_table(text: str) -> dict[int, tuple[str, str, str, str]]:
    """``docs/equations.md``'s rows: number → (section, statement, where, erratum).

    A row like ``| 4–6 | 2.1.3 | ... |`` covers Eqs. 4, 5 and 6.
    """
    out: dict[int, tuple[str, str, str, str]] = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) < 4:
            continue
        m = re.fullmatch(r"(\d+)(?:\s*[–-]\s*(\d+))?", cells[0])
        if not m:
            continue
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        for n in range(lo, hi + 1):
            out[n] = (cells[1], cells[2], cells[3] if len(cells) > 3 else "",
                      cells[4] if len(cells) > 4 else "")
    return out


def equation_rows(docs_equations: Path) -> list[EquationRow]:
    """Join ``docs/equations.md`` with the check registry: one row per Eq. (1)–(69).

    Raises ``ValueError`` naming the equations that ``docs/equations.md`` does not describe.
    """
    from refimpl import check

    check.load_all()
    table = _parse_equation_table(docs_equations.read_text(encoding="utf-8"))
    rows = []
    missing = []
    entries = check.registered("equation")
    for cov in check.coverage():
        n = cov["number"]
        if n not in table:
            missing.append(n)
            continue
        section, statement, where, erratum = table[n]
        mine = [e for e in entries if e.number == n]
        rows.append(EquationRow(n, cov["section"] or section, statement, where, erratum,
                                list(cov["functions"]), [(e.key, e.title) for e in mine]))
    if missing:
        raise ValueError(f"docs/equations.md describes no row for Eqs. {missing}")
    return rows


_CALL = re.compile(r"check\.equation\(\s*(\d+)")


def notebook_check_cells(notebooks: list[Path]) -> dict[int, list[tuple[str, int]]]:
    """Equation number → [(notebook stem, code-cell index)] of the cells that call
    ``check.equation(n ...)``."""
    import nbformat

    out: dict[int, list[tuple[str, int]]] = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            for m in _CALL.finditer(cell.source):
                out.setdefault(int(m.group(1)), []).append((path.stem, i))
    return out


def _label(stem: str, index: int) -> str:
    return f"cell-{stem.replace('_', '-')}-{index}"


def _api_role(dotted: str) -> str:
    """A MyST role linking ``dotted`` (``refimpl.pkg.module.name``) to the API reference."""
    mod, _, name = dotted.rpartition(".")
    try:
        obj = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError):
        return f"`{dotted}`"  # not importable: plain code, never a broken link
    pkg = ".".join(dotted.split(".")[:2])
    public = getattr(importlib.import_module(pkg), "__all__", ())
    if name not in public:
        return f"`{dotted}` (internal)"
    role = "py:class" if inspect.isclass(obj) else "py:func"
    return f"{{{role}}}`{name} <{pkg}.{name}>`"


def _write_equation_pages(src: Path, rows: list[EquationRow], verdicts: dict[str, str],
                          cells: dict[int, list[tuple[str, int]]]) -> None:
    eq = src / "equations"
    eq.mkdir(parents=True, exist_ok=True)
    index = ["# The survey's equations", "",
             "One page per numbered equation of Gupta & Agrawal's survey: what it states, the "
             "function that implements it, its registered check and the verdict that check gave "
             "when this book was built, and the chapter cell that shows it. The same map on the "
             "command line: `refimpl equations --run`.", "",
             "| Eq. | § | what it says | verdict |", "|---|---|---|---|"]
    for r in rows:
        vs = [verdicts.get(k, "not run") for k, _ in r.checks]
        verdict = "FAILED" if any(v.startswith("FAILED") for v in vs) else (
            "; ".join(sorted(set(vs))) if vs else "no check")
        stmt = r.statement.replace("|", "\\|")
        index.append(f"| [({r.number})](eq-{r.number:02d}.md) | {r.section} | {stmt} | "
                     f"{verdict} |")
    index += ["", "```{toctree}", ":hidden:", ""]
    index += [f"eq-{r.number:02d}" for r in rows]
    index += ["```", ""]
    (eq / "index.md").write_text("\n".join(index), encoding="utf-8")

    for r in rows:
        lines = [f"# Eq. ({r.number}) — §{r.section}", "", f"**What it states.** {r.statement}",
                 ""]
        if r.erratum:
            lines += [f"**Erratum.** {r.erratum} — see [the errata](../chapters/ERRATA.md).", ""]
        if r.where:
            lines += [f"**Where (docs/equations.md).** {r.where}", ""]
        lines += ["## Implemented by", ""]
        lines += [f"- {_api_role(f)}" for f in r.functions] or ["- (no function declared)"]
        lines += ["", "## Registered checks", "",
                  "| check | verdict in this build |", "|---|---|"]
        for key, title in r.checks:
            t = title.replace("|", "\\|")
            lines.append(f"| `{key}` — {t} | {verdicts.get(key, 'not run')} |")
        lines += ["", f"Run them yourself: `refimpl check {r.number}`, or in a notebook "
                      f"`check.equation({r.number})`.", "", "## Shown in the chapters", ""]
        mine = cells.get(r.number, [])
        if mine:
            for stem, i in mine:
                lines.append(f"- {{ref}}`{stem}, cell {i} <{_label(stem, i)}>`")
        else:
            lines.append("- no chapter cell calls this equation's checks directly")
        lines.append("")
        (eq / f"eq-{r.number:02d}.md").write_text("\n".join(lines), encoding="utf-8")


# ------------------------------------------------------------------------------ API pages
def _api_packages() -> list[str]:
    pkgs = list(PACKAGES)
    for p in _OPTIONAL_PACKAGES:
        if importlib.util.find_spec(f"refimpl.{p}") is not None:
            pkgs.append(p)
    return pkgs


def _write_api_pages(src: Path) -> list[str]:
    """One ``api/<pkg>.rst`` per package; returns the public names without a docstring."""
    api = src / "api"
    api.mkdir(parents=True, exist_ok=True)
    undocumented = []
    toc = []
    for pkg in _api_packages():
        mod = importlib.import_module(f"refimpl.{pkg}")
        names = list(getattr(mod, "__all__", []))
        title = f"refimpl.{pkg}"
        out = [title, "=" * len(title), "", f".. automodule:: refimpl.{pkg}", "   :no-members:",
               "", f".. currentmodule:: refimpl.{pkg}", ""]
        for name in names:
            obj = getattr(mod, name)
            if not (inspect.getdoc(obj) or "").strip():
                undocumented.append(f"refimpl.{pkg}.{name}")
            if inspect.ismodule(obj):  # a re-exported module: a link to its own page
                out += [f"``{name}``: the module :mod:`{obj.__name__}`, re-exported.", ""]
            elif inspect.isclass(obj):
                out += [f".. autoclass:: {name}", "   :members:", "   :undoc-members:", ""]
            elif callable(obj):
                out += [f".. autofunction:: {name}", ""]
            else:
                out += [f".. autodata:: {name}", "   :annotation:", ""]
        (api / f"{pkg}.rst").write_text("\n".join(out), encoding="utf-8")
        toc.append(pkg)
    idx = ["API reference", "=============", "",
           "Generated from the packages' ``__all__`` and their numpydoc docstrings (array shapes "
           "are stated in each docstring). The layering of the packages is described in "
           ":doc:`../docs/architecture`.", "", ".. toctree::", "   :maxdepth: 1", ""]
    idx += [f"   {p}" for p in toc]
    (api / "index.rst").write_text("\n".join(idx) + "\n", encoding="utf-8")
    return undocumented


# ------------------------------------------------------------------------------ notebooks
def _same_source(a, b) -> bool:
    def key(nb):
        return [(c.cell_type, c.source) for c in nb.cells]
    return key(a) == key(b)


def _executed_notebook(path: Path, executed: Path | None, timeout: int, log) -> object:
    """The executed notebook node of ``path``: a matching copy from ``executed`` or a new run."""
    import nbformat

    committed = nbformat.read(path, as_version=4)
    if executed is not None and (executed / path.name).is_file():
        copy = nbformat.read(executed / path.name, as_version=4)
        if _same_source(copy, committed):
            log(f"  {path.name}: reusing the executed copy in {executed}")
            return copy
        log(f"  {path.name}: the copy in {executed} is stale (cells differ); executing")
    import nbclient

    from refimpl.cli.chapters import quiet_kernel_manager_class

    t0 = time.perf_counter()
    client = nbclient.NotebookClient(committed, timeout=timeout, kernel_name="python3",
                                     kernel_manager_class=quiet_kernel_manager_class(),
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    log(f"  {path.name}: executed in {time.perf_counter() - t0:.0f} s")
    return committed


def _add_cell_labels(nb, stem: str, indices: set[int]):
    """Insert a MyST target ``(label)=`` before each code cell in ``indices`` (staged copy)."""
    import nbformat

    cells = []
    for i, cell in enumerate(nb.cells):
        if i in indices:
            cells.append(nbformat.v4.new_markdown_cell(f"({_label(stem, i)})="))
        cells.append(cell)
    nb.cells = cells
    return nb


def _link_markdown_cells(nb, index: dict[str, str]):
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = link_api_mentions(cell.source, index)
    return nb


# ------------------------------------------------------------------------------ API links
_CODE = re.compile(r"(?<![`{])`((?:refimpl\.)?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
                   r"(\(\))?`(?!`)")


def public_index() -> dict[str, str]:
    """Every name a chapter may mention → the documented path ``refimpl.<pkg>.<name>``.

    Keys are the bare public name (when exactly one package exports it), the package path
    ``pkg.name`` / ``refimpl.pkg.name`` and the defining-module path ``pkg.module.name`` /
    ``refimpl.pkg.module.name``; packages map to themselves (``refimpl.nn``).
    """
    out: dict[str, str] = {}
    bare: dict[str, set[str]] = {}
    for pkg in _api_packages():
        mod = importlib.import_module(f"refimpl.{pkg}")
        out[f"refimpl.{pkg}"] = f"refimpl.{pkg}"
        for name in getattr(mod, "__all__", []):
            full = f"refimpl.{pkg}.{name}"
            out[full] = out[f"{pkg}.{name}"] = full
            bare.setdefault(name, set()).add(full)
            defined = getattr(getattr(mod, name), "__module__", None) or ""
            if defined.startswith(f"refimpl.{pkg}."):
                out[f"{defined}.{name}"] = full
                out[f"{defined.removeprefix('refimpl.')}.{name}"] = full
    for name, fulls in bare.items():
        if len(fulls) == 1:
            out.setdefault(name, next(iter(fulls)))
    return out


def link_api_mentions(markdown: str, index: dict[str, str]) -> str:
    """Turn inline code naming a public object (``obd_saliency``, ``pruning.weights.obs_update``,
    ``refimpl.nn``, ``dsd_train()``) into a MyST cross-reference to the API reference; other
    inline code and fenced code blocks are left as they are."""
    parts = re.split(r"(```.*?```)", markdown, flags=re.S)
    for i in range(0, len(parts), 2):
        def repl(m):
            target = index.get(m.group(1))
            if target is None:
                return m.group(0)
            role = "py:mod" if target.count(".") == 1 else "py:obj"
            return f"{{{role}}}`{m.group(1)}{m.group(2) or ''} <{target}>`"
        parts[i] = _CODE.sub(repl, parts[i])
    return "".join(parts)


# ------------------------------------------------------------------------------ staging
def _index_page(readme: str, chapters: list[str], docs: list[str], has_assign: bool) -> str:
    toc = ["", "```{toctree}", ":maxdepth: 1", ":caption: Chapters", ""]
    toc += [f"chapters/{c}" for c in chapters]
    toc += ["chapters/ERRATA", "```", "", "```{toctree}", ":maxdepth: 1",
            ":caption: Reference", "", "equations/index", "api/index", "```", "",
            "```{toctree}", ":maxdepth: 1", ":caption: Design notes", ""]
    toc += [f"docs/{d}" for d in docs]
    toc += ["```", ""]
    return readme.rstrip() + "\n" + "\n".join(toc)


def stage(root: Path, src: Path, *, executed: Path | None = None, timeout: int = 1800,
          run_checks: bool = True, log=print) -> dict:
    """Stage the Sphinx source tree of the book in ``src`` (emptied first).

    Parameters
    ----------
    root : Path
        The repository checkout (with README.md, docs/, chapters/).
    src : Path
        The folder to stage into.
    executed : Path or None
        A folder of executed chapter notebooks to reuse when their cells are the committed ones.
    timeout : int
        Seconds per notebook cell when a notebook has to be executed here.
    run_checks : bool
        Run every equation check (quick sizes) for the verdict column; False writes "not run".
    log : callable
        Receives progress lines.

    Returns
    -------
    dict
        ``{"undocumented": [...], "failed_checks": [...], "notebooks": [...]}``.
    """
    import nbformat

    from refimpl import check

    if src.exists():
        shutil.rmtree(src)
    (src / "chapters").mkdir(parents=True)
    (src / "docs").mkdir()
    shutil.copy2(root / "docs" / "book" / "conf.py", src / "conf.py")
    shutil.copy2(root / "README.md", src / "README.md")
    docs = sorted(p.stem for p in (root / "docs").glob("*.md"))
    for d in docs:
        shutil.copy2(root / "docs" / f"{d}.md", src / "docs" / f"{d}.md")
    shutil.copy2(root / "chapters" / "ERRATA.md", src / "chapters" / "ERRATA.md")

    notebooks = sorted((root / "chapters").glob("[0-9][0-9]_*.ipynb"))
    cells = notebook_check_cells(notebooks)
    by_nb: dict[str, set[int]] = {}
    for lst in cells.values():
        for stem, i in lst:
            by_nb.setdefault(stem, set()).add(i)
    log(f"notebooks ({len(notebooks)}):")
    index = public_index()
    env = {"REFIMPL_QUICK": "1", "REFIMPL_PROGRESS": "0",  # inline: plots become outputs
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    with temporary_environ(env):
        for path in notebooks:
            nb = _executed_notebook(path, executed, timeout, log)
            nb = _add_cell_labels(nb, path.stem, by_nb.get(path.stem, set()))
            nb = _link_markdown_cells(nb, index)
            nbformat.write(nb, src / "chapters" / path.name)

    rows = equation_rows(root / "docs" / "equations.md")
    verdicts: dict[str, str] = {}
    failed = []
    if run_checks:
        from refimpl.utils import progress_bar

        log("equation checks (quick sizes):")
        for entry in progress_bar(check.registered("equation"), desc="equation checks"):
            try:
                res = check.run(entry.key, quick=True)
                verdicts[entry.key] = res.verdict
                if not res.passed:
                    failed.append(entry.key)
            except Exception as err:  # noqa: BLE001 - shown as a failed verdict
                verdicts[entry.key] = f"FAILED (raised {type(err).__name__})"
                failed.append(entry.key)
    _write_equation_pages(src, rows, verdicts, cells)
    undocumented = _write_api_pages(src)
    readme = (root / "README.md").read_text(encoding="utf-8")
    (src / "index.md").write_text(_index_page(readme, [p.stem for p in notebooks], docs,
                                              False), encoding="utf-8")
    return {"undocumented": undocumented, "failed_checks": failed,
            "notebooks": [p.name for p in notebooks]}


def build(src: Path, html: Path, *, strict: bool = True) -> tuple[int, str]:
    """Run ``sphinx-build`` (``-W --keep-going -n`` when ``strict``); return (status, log)."""
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-j", "1"]
    if strict:
        cmd += ["-W", "--keep-going", "-n"]
    cmd += [str(src), str(html)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def main(args) -> int:
    """Entry point of ``refimpl book`` (``args``: ``out``, ``executed``, ``timeout``,
    ``no_checks``, ``no_strict``)."""
    from refimpl.cli._paths import checkout_dir

    try:
        import myst_nb  # noqa: F401
        import numpydoc  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError as err:
        print(f"refimpl book: the book needs the docs extra ({err.name} is missing): "
              "python -m pip install \".[docs]\"", file=sys.stderr)
        return 2
    chapters = checkout_dir("chapters", "*.ipynb")
    if chapters is None or not (chapters.parent / "docs" / "book" / "conf.py").is_file():
        print("refimpl book: no source checkout found (chapters/ and docs/book/conf.py next to "
              "the refimpl package or in the current directory). The book is built from the "
              "source repository: clone it, `pip install -e \".[docs]\"`, run `refimpl book` "
              "there.", file=sys.stderr)
        return 2
    root = chapters.parent
    out = Path(args.out) if getattr(args, "out", None) else root / "_build" / "book"
    executed = Path(args.executed) if getattr(args, "executed", None) else None
    if executed is not None and not executed.is_dir():
        print(f"refimpl book: --executed {executed} is not a folder", file=sys.stderr)
        return 2
    timeout = int(getattr(args, "timeout", 1800))
    if timeout <= 0:
        print(f"refimpl book: --timeout must be a positive number of seconds per cell, got "
              f"{timeout}", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f"refimpl book: cannot write to --out {out}: {err}", file=sys.stderr)
        return 2

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        info = stage(root, out / "src", executed=executed, timeout=timeout,
                     run_checks=not getattr(args, "no_checks", False), log=log)
    except Exception as err:  # noqa: BLE001 - a notebook that fails is a failed book
        print(f"refimpl book: staging failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    log(f"building HTML with Sphinx into {out / 'html'} ...")
    status, text = build(out / "src", out / "html", strict=not getattr(args, "no_strict", False))
    (out / "sphinx.log").write_text(text, encoding="utf-8")
    problems = []
    if info["undocumented"]:
        problems.append(f"public objects without a docstring: {info['undocumented']}")
    if info["failed_checks"]:
        problems.append(f"equation checks that FAILED: {info['failed_checks']}")
    if status != 0:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        problems.append("sphinx-build failed (warnings are errors):\n    "
                        + "\n    ".join(lines[-60:]))
    summary = {"html": str(out / "html" / "index.html"), "seconds": time.perf_counter() - t0,
               **info, "sphinx_status": status}
    (out / "book.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if problems:
        print("refimpl book: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"book written: {out / 'html' / 'index.html'} ({summary['seconds']:.0f} s)")
    return 0
