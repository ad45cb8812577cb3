"""The ``refimpl`` command.

Sub-commands
------------
``tour``       train the baselines on the embedded tasks, apply every registered compression
               method and print the comparison table (and save a size-vs-quality plot)
``equations``  print the coverage map for Eqs. (1)–(69): equation → function → check → status
``check``      run registered equation/claim/named checks and print their verdicts
               (exit status 0: all passed, 1: some failed, 2: unknown key)
``chapters``   execute the chapter notebooks (optionally render HTML)
``bench``      run the benchmarks in ``benchmarks/``
"""

from __future__ import annotations

import argparse
import sys


def _cmd_equations(args) -> int:
    from refimpl import check

    rows = check.coverage()
    if args.run:
        results = {r.key: r for r in check.run_all("equation", quick=True)}
    n_ok = 0
    print(f"{'Eq.':>5}  {'§':<7} {'status':<8} {'checks':<40} functions")
    for row in rows:
        status = row["status"]
        if args.run and row["checks"]:
            keys = [k for k in results if k.startswith(f"Eq. ({row['number']})")]
            if not all(results[k].passed for k in keys):
                status = "FAILED"
        n_ok += status in ("checked", "erratum")
        checks = ", ".join(row["checks"])[:40]
        print(f"{row['number']:>5}  {row['section']:<7} {status:<8} {checks:<40} "
              f"{', '.join(row['functions'])}")
    print(f"\n{n_ok}/{len(rows)} equations have a passing check registered")
    return 0


def _run_key(check, key: str, quick: bool) -> list:
    """Run one CLI key: an equation number, ``claim:name``/``check:name``, or a bare name."""
    if key.isdigit():
        return list(check.equation(int(key), quick=quick, raise_on_fail=False))
    kind, _, name = key.partition(":")
    if kind == "claim" and name:
        return [check.claim(name, quick=quick, raise_on_fail=False)]
    if kind == "check" and name:
        return [check.verify(name, quick=quick, raise_on_fail=False)]
    names = {e.name: e.kind for e in check.registered() if e.kind in ("claim", "check")}
    if names.get(key) == "claim":
        return [check.claim(key, quick=quick, raise_on_fail=False)]
    if names.get(key) == "check":
        return [check.verify(key, quick=quick, raise_on_fail=False)]
    raise KeyError(f"{key!r} is neither an equation number nor a registered claim/check name "
                   f"(see `refimpl equations`; claims and checks: {sorted(names)})")


def _cmd_check(args) -> int:
    from refimpl import check

    quick = not args.full
    if args.keys:
        results = []
        for k in args.keys:
            try:
                results += _run_key(check, k, quick)
            except KeyError as err:
                print(f"refimpl check: {err.args[0]}", file=sys.stderr)
                return 2
    else:
        results = check.run_all(args.kind, quick=quick, progress=None)
    for r in results:
        print(r.line())
    n_bad = sum(not r.passed for r in results)
    if len(results) > 1:
        print(f"\n{len(results) - n_bad}/{len(results)} passed")
    return 0 if n_bad == 0 else 1


def _cmd_tour(args) -> int:
    from refimpl.compare import tour

    return tour.main(args)


def _cmd_chapters(args) -> int:
    from refimpl.compare import chapters

    return chapters.main(args)


def _cmd_bench(args) -> int:
    from refimpl.compare import bench

    return bench.main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refimpl", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tour", help="train baselines, compress with every method, print a table")
    t.add_argument("--quick", action="store_true", help="small sizes: finishes in ~2 minutes")
    t.add_argument("--task", default="sentiment", help="embedded task (default: sentiment)")
    t.add_argument("--methods", nargs="*", default=None, help="only these registered methods")
    t.add_argument("--out", default="refimpl_out", help="folder for the table and plot")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    t.add_argument("--baseline", default=None, choices=["bow", "lstm", "transformer"],
                   help="the baseline methods compress (default: lstm)")
    t.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole tour (default: 95 with --quick, none otherwise)")
    t.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # test-suite size
    t.set_defaults(func=_cmd_tour)

    e = sub.add_parser("equations", help="coverage map of Eqs. (1)-(69)")
    e.add_argument("--run", action="store_true", help="also run the checks (quick mode)")
    e.set_defaults(func=_cmd_equations)

    c = sub.add_parser("check", help="run equation numbers or claim names")
    c.add_argument("keys", nargs="*",
                   help="equation numbers, claim or check names (default: all)")
    c.add_argument("--kind", choices=["equation", "check", "claim"], default=None)
    c.add_argument("--full", action="store_true", help="full sizes instead of quick")
    c.set_defaults(func=_cmd_check)

    ch = sub.add_parser("chapters", help="execute the chapter notebooks")
    ch.add_argument("names", nargs="*", help="notebook names or numbers (default: all)")
    ch.add_argument("--html", action="store_true", help="also render HTML next to each")
    ch.add_argument("--timeout", type=int, default=1800)
    ch.set_defaults(func=_cmd_chapters)

    b = sub.add_parser("bench", help="run the benchmarks in benchmarks/")
    b.add_argument("names", nargs="*", help="benchmark names (default: all)")
    b.add_argument("--quick", action="store_true")
    b.set_defaults(func=_cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
