"""The layering of docs/architecture.md, enforced on the imports in the source (AST, so imports
inside functions count too): the ground floor imports no chapter, chapters never import
``compare`` or ``cli``, and ``compare`` never imports ``cli``. ``pretrained`` is an upper layer
like ``compare`` (its compression rows combine the chapters), but its loading, model and evaluation
files import the ground floor only (:data:`PRETRAINED_GROUND`)."""

import ast
from pathlib import Path

import pytest

import refimpl

ROOT = Path(refimpl.__file__).resolve().parent
GROUND = {"nn", "kernels", "data", "check", "registry", "sizes", "utils"}
CHAPTERS = {"pruning", "quantization", "distillation", "sharing", "decomposition", "attention"}
UPPER = {"compare", "cli", "pretrained", "assignment"}
#: Files of refimpl/pretrained that import nothing above the ground floor (no chapter, no torch).
PRETRAINED_GROUND = {"safetensors.py", "tokenizer.py", "minilm.py", "evaluate.py", "wordpiece.py"}


def _part(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_parts(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            bits = n.split(".")
            if bits[0] == "refimpl" and len(bits) > 1:
                out.add(bits[1])
    return out


def _pretrained_modules(path: Path) -> set[str]:
    """The ``refimpl.pretrained.<module>`` files a source file imports (``"__init__.py"`` for
    the package itself)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            bits = n.split(".")
            if bits[:2] == ["refimpl", "pretrained"]:
                out.add(f"{bits[2]}.py" if len(bits) > 2 else "__init__.py")
    return out


FILES = sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layering(path):
    part = _part(path)
    used = _imported_parts(path) - {part}
    if part in GROUND:
        bad = used & (CHAPTERS | UPPER)
    elif part in CHAPTERS:
        bad = used & UPPER
        # a chapter may use pretrained's ground-floor files (the WordPiece tokenizer and its
        # learner, real text: §4.4's mixed vocabulary), named module by module
        if "pretrained" in bad and _pretrained_modules(path) <= PRETRAINED_GROUND:
            bad = bad - {"pretrained"}
    elif part == "compare":
        bad = used & {"cli"}
    elif part == "assignment":  # reads notebooks and runs kernels: imports no layer above it
        bad = used & (UPPER | CHAPTERS)
    elif part == "pretrained":
        bad = used - GROUND if path.name in PRETRAINED_GROUND else used & {"compare", "cli"}
    else:
        bad = set()
    assert not bad, f"{path.relative_to(ROOT)} ({part}) imports {sorted(bad)} against the layering"


def test_the_walk_sees_every_layer():
    parts = {_part(p) for p in FILES}
    assert GROUND - {"utils"} <= parts and CHAPTERS <= parts and UPPER <= parts
