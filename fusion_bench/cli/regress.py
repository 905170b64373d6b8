"""`fusion-bench regress`: re-run a suite and compare with its committed numbers (exit 1 on drift)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion_bench.cli.args import csv_list, parse_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regress", help="re-run a suite and fail on drift from the committed numbers")
    p.add_argument("--suite", default="smoke")
    p.add_argument("--update", action="store_true", help="rewrite the expected numbers instead of comparing")
    p.add_argument("--out", type=Path, default=None, help="keep the re-run outputs here (default: temp dir)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--methods", type=csv_list, default=None,
                   help="re-run and compare only these methods' entries (comma-separated)")
    p.add_argument("--set", dest="overrides", type=parse_option, nargs="+", action="extend", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="a deliberate change over every re-run entry (e.g. the README's mutation check: "
                        "--methods fusion_cnn --set optim.lr=0.003003 must report drift)")
    p.add_argument("--actual", type=Path, default=None, metavar="FILE.csv",
                   help="also write the re-run's numbers to FILE.csv (the expected file's format)")


def run(args: argparse.Namespace) -> int:
    from fusion_bench import numerics
    from fusion_bench.benchmark.checks import check_empty_dir, check_output_dir
    from fusion_bench.benchmark.regress import check_suite, environment_report, regress

    overrides = dict(args.overrides)
    # the suite, its expected numbers and the selection, before anything runs
    check_suite(args.suite, args.update, args.methods, overrides)
    if args.out is not None:
        check_empty_dir(args.out)
    if args.actual is not None:
        check_output_dir(args.actual.parent, "--actual")
    if not numerics.is_pinned():
        print("note: the numerics are not pinned (FUSION_BENCH_NUMERICS is not 'pinned', or this CPU cannot pin): "
              "trained methods' numbers may differ from the expected ones", file=sys.stderr)
    drifts = regress(args.suite, update=args.update, out=args.out, progress=args.progress, methods=args.methods,
                     overrides=overrides, actual_path=args.actual)
    if args.update:
        print(f"expected numbers of suite {args.suite} rewritten")
        return 0
    if drifts:
        print(f"suite {args.suite}: {len(drifts)} drift(s):", file=sys.stderr)
        print("\n".join(f"  {d}" for d in drifts), file=sys.stderr)
        print(environment_report(args.suite), file=sys.stderr)
        return 1
    print(f"suite {args.suite}: no drift")
    return 0
