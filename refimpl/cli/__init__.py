"""The ``refimpl`` command.

Sub-commands
------------
``tour``       train the baselines on an embedded task, compress them with the registered
               methods, print a size-vs-quality table and write it (CSV, Markdown, plot)
``plan``       the best measured method or combination within a byte (and latency) budget,
               from a tour's ``tour.csv`` (Survey §8.3)
``equations``  the coverage map of Eqs. (1)–(69): equation → function → registered checks;
               ``--run`` also runs the checks (exit status 1 if any fails)
``check``      run equation checks, claims or named checks and print their verdicts
               (exit status 0: all passed, 1: some failed or raised, 2: unknown key)
``chapters``   execute the chapter notebooks headless (optionally render HTML); exit status 1
               if any notebook fails
``bench``      run the benchmarks in ``benchmarks/`` of a source checkout; ``--json PATH``
               writes one record (machine, roofline, every ratio), ``--report PATH`` prints
               its Markdown table
``assignment`` ``make``: a student version of a chapter notebook with its autograder tests;
               ``grade``: run a submission headless and score each question (exit status 0
               whenever grading completed)
``book``       build the chapters, the errata, the equation pages and the API reference as
               an HTML book with Sphinx (the ``docs`` extra)
``real``       chapter 9: compress the pretrained all-MiniLM-L6-v2 with every chapter's
               methods, print the table and write it (CSV, Markdown, bytes-vs-fidelity plot)

Exit status 2 means a usage error: the message on stderr names the bad value and the valid
choices, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = (
    "refimpl: a NumPy/Numba reference implementation of the survey 'Compression of Deep "
    "Learning Models for Text' (Gupta & Agrawal, arXiv 2008.05221). Run the tour of "
    "compression methods, check the survey's equations and claims, execute the chapter "
    "notebooks, or run the benchmarks."
)

EPILOG = (
    "Run 'refimpl COMMAND --help' for the options of a command. Exit status: 0 success, "
    "1 something failed (a check, a notebook, a benchmark), 2 usage error."
)


class UsageError(Exception):
    """A bad command-line value: printed as ``refimpl <command>: <message>``, exit status 2."""


def _fail(command: str, message: str) -> int:
    print(f"refimpl {command}: {message}", file=sys.stderr)
    return 2


# ------------------------------------------------------------------------------ equations
def _cmd_equations(args) -> int:
    """Print the coverage map; with ``--run`` run every equation check and mark failures."""
    from refimpl import check

    rows = check.coverage()
    results: dict = {}
    if args.run:
        from refimpl.utils import progress_bar

        for entry in progress_bar(check.registered("equation"), desc="equation checks"):
            results[entry.key] = _run_entry(check, entry.key, quick=True)
    print(f"{'Eq.':>5}  {'§':<7} {'status':<10} {'checks':<40} functions")
    n_registered = n_passed = n_failed = 0
    for row in rows:
        status = {"checked": "registered", "erratum": "erratum", "missing": "missing"}[
            row["status"]]
        if row["checks"]:
            n_registered += 1
        if args.run and row["checks"]:
            mine = [r for k, r in results.items() if k.startswith(f"Eq. ({row['number']})")]
            ok = all(r.passed for r in mine)
            n_passed += ok
            n_failed += not ok
            status = "FAILED" if not ok else ("erratum ✓" if row["status"] == "erratum"
                                              else "passed")
        checks = ", ".join(row["checks"])[:40]
        print(f"{row['number']:>5}  {row['section'] or '—':<7} {status:<10} {checks:<40} "
              f"{', '.join(row['functions'])}")
    print()
    if not args.run:
        print(f"{n_registered}/{len(rows)} equations have a check registered (not run; "
              f"`refimpl equations --run` runs them)")
        return 0
    print(f"{n_passed}/{len(rows)} equations passed their checks, {n_failed} failed, "
          f"{len(rows) - n_registered} have none")
    for r in results.values():
        if not r.passed:
            print(r.line())
    return 0 if n_failed == 0 else 1


# ---------------------------------------------------------------------------------- check
def _run_entry(check, key: str, quick: bool):
    """Run one registry entry; a check that raises becomes a failed result, not a crash."""
    try:
        return check.run(key, quick=quick)
    except Exception as err:  # noqa: BLE001 - reported as a failed verdict
        entry = next(e for e in check.registered() if e.key == key)
        return check.Result(key, entry.title, entry.section, entry.kind,
                            check.Outcome(False, detail=f"raised {type(err).__name__}: {err}"),
                            entry.erratum)


def _keys_for(check, key: str) -> list[str]:
    """Registry keys of one CLI key: an equation number, ``claim:name``/``check:name`` or a
    bare claim/check name; raises :class:`UsageError` naming the valid choices."""
    entries = check.registered()
    numbers = sorted({e.number for e in entries if e.kind == "equation"})
    names = {e.name: e.key for e in entries if e.kind in ("claim", "check")}
    if key.isdigit():
        n = int(key)
        mine = [e.key for e in entries if e.kind == "equation" and e.number == n]
        if mine:
            return mine
        where = ("no check is registered for it" if 1 <= n <= check.N_EQUATIONS
                 else f"the survey's equations are numbered 1-{check.N_EQUATIONS}")
        raise UsageError(f"equation {key!r}: {where}; equations with checks: "
                         f"{_ranges(numbers)} (see `refimpl equations`)")
    kind, _, name = key.partition(":")
    if kind in ("claim", "check") and name:
        if f"{kind}:{name}" in names.values():
            return [f"{kind}:{name}"]
    elif key in names:
        return [names[key]]
    raise UsageError(f"{key!r} is neither an equation number nor a registered claim or check; "
                     f"equations with checks: {_ranges(numbers)}; claims and checks: "
                     f"{', '.join(sorted(names))}")


def _ranges(numbers) -> str:
    """``[1, 2, 3, 7, 9, 10]`` → ``"1-3, 7, 9-10"``."""
    out, run = [], []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out) or "none"


def _cmd_check(args) -> int:
    """Run the given keys (or every check of ``--kind``); exit 1 if any fails or raises."""
    from refimpl import check

    quick = not args.full
    if args.keys:
        try:
            keys = list(dict.fromkeys(k for key in args.keys for k in _keys_for(check, key)))
        except UsageError as err:
            return _fail("check", str(err))
    else:
        keys = [e.key for e in check.registered(args.kind)]
    from refimpl.utils import progress_bar

    # a bar on a terminal for long runs (stderr; off under REFIMPL_PROGRESS=0)
    results = [_run_entry(check, k, quick)
               for k in progress_bar(keys, desc="checks", progress=None if len(keys) > 3
                                     else False)]
    for r in results:
        print(r.line())
    n_bad = sum(not r.passed for r in results)
    if len(results) > 1:
        print(f"\n{len(results) - n_bad}/{len(results)} passed")
    if n_bad:
        print(f"refimpl check: {n_bad} of {len(results)} failed", file=sys.stderr)
    return 0 if n_bad == 0 else 1


# ------------------------------------------------------------------------ other commands
def _cmd_plan(args) -> int:
    from refimpl.compare import planner

    return planner.main(args)


def _cmd_tour(args) -> int:
    from refimpl.compare import tour

    return tour.main(args)


def _cmd_chapters(args) -> int:
    from refimpl.cli import chapters

    return chapters.main(args)


def _cmd_bench(args) -> int:
    from refimpl.cli import bench

    return bench.main(args)


def _cmd_book(args) -> int:
    from refimpl.cli import book

    return book.main(args)


# --------------------------------------------------------------------------------- parser
def tour_tasks() -> list[str]:
    """The embedded tasks the tour can run on: the classification tasks of
    :data:`refimpl.data.TASKS` (the tour measures accuracy)."""
    from refimpl.data import TASKS

    # + the hard sentiment preset and the LM comparison (refimpl.compare.tour, lm_tour)
    return ([name for name, spec in TASKS.items() if spec.kind == "classification"]
            + ["sentiment-hard", "lm"])


def tour_methods() -> list[str]:
    """Names of every registered tour method (imports each chapter's ``tour`` module)."""
    from refimpl.registry import methods

    return [m.name for m in methods()]


class _Formatter(argparse.HelpFormatter):
    """Help text wrapped without breaking method names at their hyphens."""

    def _split_lines(self, text, width):
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help can list choices computed only when help is shown (the
    tour's method names need every chapter imported, too slow for every command)."""

    def __init__(self, *a, help_hook=None, **kw):
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*a, **kw)
        self.help_hook = help_hook

    def format_help(self) -> str:
        if self.help_hook is not None:
            self.help_hook(self)
            self.help_hook = None
        return super().format_help()


def _fill_methods_help(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if "--methods" in action.option_strings:
            action.help += ". Registered: " + ", ".join(tour_methods())


def build_parser() -> argparse.ArgumentParser:
    """The ``refimpl`` argument parser (sub-commands tour, equations, check, chapters, bench)."""
    p = _Parser(prog="refimpl", description=DESCRIPTION, epilog=EPILOG)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    t = sub.add_parser(
        "tour", help="train baselines, compress them with every method, print a table",
        description="Train the baselines (bag-of-words, LSTM, Transformer) on an embedded "
                    "task, compress them with every registered method, measure accuracy, "
                    "bytes, latency and attention memory the same way for all, print the "
                    "table and write tour.csv, tour.md and tour.png to --out (--task lm: "
                    "lm.csv, lm.md, lm.png and lm_comparison.png).",
        help_hook=_fill_methods_help)
    t.add_argument("--quick", action="store_true",
                   help="small networks and data: about 1 CPU minute on the sentiment task "
                        "(wall time grows with the machine's load; measured times in "
                        "refimpl.compare.tour's docstring); "
                        "writes to refimpl_out/quick unless --out is given")
    t.add_argument("--task", default="sentiment", choices=tour_tasks(),
                   help="the embedded task (default: %(default)s); sentiment-hard: three "
                        "classes, more negation and contrast, noisy training labels; lm: the "
                        "HMM language-modelling comparison, perplexity against the Bayes floor")
    t.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="run only these methods (and train only the baselines they need); "
                        "default: all")
    t.add_argument("--out", default=None, metavar="DIR",
                   help="folder for tour.csv, tour.md and tour.png, created if missing and "
                        "checked for writing before any training (default: refimpl_out/full, "
                        "or refimpl_out/quick with --quick)")
    t.add_argument("--seed", type=int, default=0,
                   help="seed of the task, the initialisations and the training order "
                        "(default: %(default)s)")
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: only when stderr is a terminal; "
                        "otherwise one plain line per finished step)")
    t.add_argument("--baseline", default=None, choices=["bow", "lstm", "transformer"],
                   help="the primary baseline the methods compress (default: lstm)")
    t.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="CPU seconds of the tour's process for the whole tour; methods "
                        "share what the baselines leave (default: 95 with --quick, no limit "
                        "otherwise)")
    t.add_argument("--budget", "--plan-bytes", dest="plan_bytes", type=float, default=None,
                   metavar="BYTES",
                   help="after the table, name the most accurate measured method or "
                        "combination within BYTES (the budget planner of survey §8.3; with "
                        "--task lm the lowest perplexity; `refimpl plan` does the same from "
                        "a saved tour.csv or lm.csv)")
    t.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test-suite size
    t.set_defaults(func=_cmd_tour)

    pl = sub.add_parser(
        "plan", help="the best measured method within a byte (and latency) budget",
        description="Read a tour's measured rows (tour.csv) and print the most accurate "
                    "method or combination whose exact bytes fit --bytes (and whose "
                    "stored-kernel latency fits --latency-us). Survey §8.3.")
    pl.add_argument("--bytes", type=float, required=True, metavar="N",
                    help="byte budget of the whole model")
    pl.add_argument("--latency-us", type=float, default=None, metavar="US",
                    help="latency budget in microseconds through the stored kernels")
    pl.add_argument("--batch", type=int, default=1, choices=[1, 64],
                    help="batch size the latency budget refers to (default: %(default)s)")
    pl.add_argument("--from", dest="source", default=None, metavar="CSV",
                    help="a tour.csv, or the LM comparison's lm.csv (lowest perplexity "
                         "wins; default: refimpl_out/quick/tour.csv, else "
                         "refimpl_out/full/tour.csv)")
    pl.set_defaults(func=_cmd_plan)

    e = sub.add_parser("equations", help="coverage map of Eqs. (1)-(69)",
                       description="Print equation -> section -> registered checks -> "
                                   "implementing functions for the survey's Eqs. (1)-(69). "
                                   "Without --run the status only says whether a check is "
                                   "registered.")
    e.add_argument("--run", action="store_true",
                   help="also run every equation check (quick sizes) and mark each equation "
                        "passed or FAILED; exit status 1 if any fails")
    e.set_defaults(func=_cmd_equations)

    c = sub.add_parser("check", help="run equation checks, claims or named checks",
                       description="Run registered checks and print one verdict line each. "
                                   "Exit status 0: all passed; 1: some failed or raised; "
                                   "2: an unknown key.")
    c.add_argument("keys", nargs="*", metavar="KEY",
                   help="an equation number (22), a claim or check name, or claim:NAME / "
                        "check:NAME (default: every registered check of --kind)")
    c.add_argument("--kind", choices=["equation", "check", "claim"], default=None,
                   help="without KEYs, run only this kind (default: all kinds)")
    c.add_argument("--full", action="store_true",
                   help="full sizes instead of the quick ones (slower)")
    c.set_defaults(func=_cmd_check)

    ch = sub.add_parser("chapters", help="execute the chapter notebooks headless",
                        description="Execute chapters/NN_name.ipynb with nbclient (the "
                                    "committed files are not modified). Exit status 1 if any "
                                    "notebook fails.")
    ch.add_argument("names", nargs="*", metavar="NAME",
                    help="notebook number (02), file stem (02_pruning) or part of the name "
                         "(pruning); default: all")
    ch.add_argument("--html", action="store_true",
                    help="also render each executed notebook to chapters/_build/NAME.html "
                         "(needs nbconvert)")
    ch.add_argument("--timeout", type=int, default=1800, metavar="SECONDS",
                    help="seconds allowed per cell (default: %(default)s)")
    ch.set_defaults(func=_cmd_chapters)

    b = sub.add_parser("bench", help="run the benchmarks in benchmarks/",
                       description="Run benchmarks/bench_*.py of a source checkout, each in "
                                   "its own process. Exit status 1 if any fails.")
    b.add_argument("names", nargs="*", metavar="NAME",
                   help="benchmark names (sparse, bench_sparse or bench_sparse.py); "
                        "default: all")
    b.add_argument("--quick", action="store_true",
                   help="pass --quick to each benchmark (small sizes)")
    b.add_argument("--json", default=None, metavar="PATH",
                   help="also measure the machine's limits (memory bandwidth, float32 GEMM) "
                        "and write one JSON record of every case, ratio and the machine "
                        "(CPU, ISA flags, BLAS kernel, threads) to PATH")
    b.add_argument("--report", default=None, metavar="PATH",
                   help="run nothing: print the Markdown headline table of a --json record")
    b.add_argument("--all", action="store_true",
                   help="with --report: every recorded case, not only the headline ones")
    b.set_defaults(func=_cmd_bench)

    bk = sub.add_parser("book", help="build the chapters, equations and API as an HTML book",
                        description="Stage the executed chapter notebooks, the errata, one page "
                                    "per survey equation and the API reference, and build "
                                    "them with Sphinx (the docs extra) into OUT/html; "
                                    "warnings are errors. Exit status 1 if the build fails.")
    bk.add_argument("--out", metavar="DIR",
                    help="output folder (default: _build/book in the checkout)")
    bk.add_argument("--executed", metavar="DIR",
                    help="reuse executed notebooks from DIR when their cells are the "
                         "committed ones (the test suite writes them with "
                         "REFIMPL_EXECUTED_DIR=DIR)")
    bk.add_argument("--timeout", type=int, default=1800, metavar="SECONDS",
                    help="seconds allowed per notebook cell (default: %(default)s)")
    bk.add_argument("--no-checks", action="store_true",
                    help="do not run the equation checks (the verdict column says 'not run')")
    bk.add_argument("--no-strict", action="store_true",
                    help="do not turn Sphinx warnings into errors (for drafting)")
    bk.set_defaults(func=_cmd_book)

    from refimpl.cli import assignment, real

    assignment.add_parser(sub)
    real.add_parser(sub)
    return p


def main(argv=None) -> int:
    """Run the ``refimpl`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        return _fail(args.command, str(err))
    except KeyboardInterrupt:
        print(f"refimpl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
