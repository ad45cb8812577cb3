"""The ``refimpl`` command.

Sub-commands
------------
``tour``       train the baselines on the embedded tasks, apply every registered compression
               method and print the comparison table (and save a size-vs-quality plot)
``equations``  print the coverage map for Eqs. (1)–(69): equation → function → check → status
``check``      run registered equation/claim checks and print their verdicts
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


def _cmd_check(args) -> int:
    from refimpl import check

    if args.keys:
        results = []
        for k in args.keys:
            if k.isdigit():
                results += check.equation(int(k), quick=not args.full, raise_on_fail=False)
            else:
                results.append(check.claim(k, quick=not args.full, raise_on_fail=False))
    else:
        results = check.run_all(args.kind, quick=not args.full, progress=None)
    for r in results:
        print(r.line())
    return 0 if all(r.passed for r in results) else 1


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
    t.set_defaults(func=_cmd_tour)

    e = sub.add_parser("equations", help="coverage map of Eqs. (1)-(69)")
    e.add_argument("--run", action="store_true", help="also run the checks (quick mode)")
    e.set_defaults(func=_cmd_equations)

    c = sub.add_parser("check", help="run equation numbers or claim names")
    c.add_argument("keys", nargs="*", help="equation numbers or claim names (default: all)")
    c.add_argument("--kind", choices=["equation", "claim"], default=None)
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
