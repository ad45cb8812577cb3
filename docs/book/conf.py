"""Sphinx configuration of the refimpl book (issue #20).

Not run from this folder: ``refimpl book`` (``refimpl/cli/book.py``) stages a source tree that
mirrors the repository (README.md, docs/, chapters/ with executed notebooks) plus generated pages
(one per survey equation, one API page per package), copies this file to its root and runs
``sphinx-build -W --keep-going -n`` on it: a broken cross-reference, a docstring numpydoc cannot
parse or an undocumented public object fails the build.
"""

project = "refimpl"
author = "the refimpl authors"
copyright = "2026, the refimpl authors (MIT licence)"

extensions = [
    "myst_nb",                 # Markdown (MyST) pages and executed notebooks
    "sphinx.ext.autodoc",      # the API reference from the docstrings
    "numpydoc",                # ... which are numpydoc-formatted
    "sphinx.ext.mathjax",      # math in pages, docstrings and notebooks
]

root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md", "docs/book/**"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# The notebooks are staged already executed (the test suite's executions or refimpl book's
# own); never execute again here.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# API reference: signatures without type hints (the numpydoc Parameters section states types and
# shapes); members in source order.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_class_members_toctree = False
# GL08: a documented public object without a docstring fails the build.
numpydoc_validation_checks = {"GL08"}

# Every cross-reference must resolve (-n); these targets live in other projects' docs, which an
# offline build cannot fetch (no intersphinx inventories).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|scipy|torch|tensorly|sklearn|numba|matplotlib|nbformat|nbclient|"
               r"threadpoolctl|hypothesis|ot|xxhash|typing|collections|dataclasses|abc|"
               r"pathlib|os|io|argparse)(\..*)?"),
    (r"py:.*", r"(int|float|bool|str|bytes|dict|list|tuple|set|object|callable|None|"
               r"Exception|ValueError|TypeError|RuntimeError|Callable|Iterable|Sequence|"
               r"Generator|Path|ndarray|array_like|array-like)"),
]

# Docstrings write a set's size as |B| (Survey §5.2's |B| frequent words, |V| the vocabulary,
# |S_m| a specialist's classes); reStructuredText would read |B| as a substitution. These
# render as written; any other |X| is still an error.
rst_prolog = "\n".join(rf".. |{s}| replace:: \|{s}\|" for s in ("B", "V", "V_b", "S_m", "w"))

html_theme = "pydata_sphinx_theme"
html_title = "refimpl: Compression of Deep Learning Models for Text, in NumPy"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False
suppress_warnings = ["mystnb.unknown_mime_type"]


# ------------------------------------------------------------------------------ glue
# Docstrings cross-reference objects by the path of the module that defines them
# (``refimpl.pruning.weights.narang_slope``) or by a bare name in their own module; the API
# reference documents the public objects under their package (``refimpl.pruning.narang_slope``).
# This resolver imports the target and, when it is the same Python object as a documented one,
# links there; when the target exists but is not public (a private helper, a kernel's internal
# function), it is shown as code without a link. A target that cannot be imported is left to
# Sphinx, which warns -- and -W turns that into a failed build: that is a broken reference.
import importlib  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402

# numpydoc reports a section it cannot parse with a Python warning, not a Sphinx one: make it an
# error, so a docstring that does not parse fails the build like any other warning.
warnings.filterwarnings("error", category=UserWarning, module="numpydoc")

_MISSING = object()
_DOCUMENTED: dict = {}


def _import_dotted(path):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except Exception:  # noqa: BLE001 - not a module at this length
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return _MISSING
        return obj
    return _MISSING


def _candidates(target, modname, clsname):
    target = target.lstrip(".~")
    out = [target]
    if modname:
        if clsname:
            out.append(f"{modname}.{clsname}.{target}")
        out.append(f"{modname}.{target}")
        pkg = ".".join(modname.split(".")[:2])
        out.append(f"{pkg}.{target}")
        # a bare name defined in a sibling module of the same package
        if "." not in target:
            out += sorted(f"{m}.{target}" for m, mod in list(sys.modules.items())
                          if m.startswith(pkg + ".") and mod is not None
                          and target in vars(mod))
    return out


def _documented(env):
    key = id(env)
    if _DOCUMENTED.get("env") != key:
        table = {}
        py = env.get_domain("py")
        for name, entry in py.objects.items():
            obj = _import_dotted(name)
            if obj is not _MISSING and entry.objtype != "module":
                table.setdefault(id(obj), name)
        mods = {name: name for name in py.modules}
        _DOCUMENTED.clear()
        _DOCUMENTED.update(env=key, objects=table, modules=mods)
    return _DOCUMENTED


def _resolve_missing(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith(("refimpl", ".", "~")) and "." not in target \
            and not node.get("py:module", "").startswith("refimpl"):
        return None
    py = env.get_domain("py")
    doc = _documented(env)
    for cand in _candidates(target, node.get("py:module"), node.get("py:class")):
        obj = _import_dotted(cand)
        if obj is _MISSING:
            continue
        if node.get("reftype") == "mod" or type(obj).__name__ == "module":
            name = getattr(obj, "__name__", cand)
            if name in doc["modules"]:
                return py.resolve_xref(env, node["refdoc"], app.builder, "mod", name, node,
                                       contnode)
            return contnode
        name = doc["objects"].get(id(obj))
        if name is not None:
            return py.resolve_xref(env, node["refdoc"], app.builder, "obj", name, node, contnode)
        return contnode  # exists in the code, not in the public API: code without a link
    return None


def setup(app):
    app.connect("missing-reference", _resolve_missing)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
