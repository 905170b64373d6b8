"""`fusion-bench leaderboard`: regenerate leaderboards/<dataset>.csv and README.md from the raw rows (after merging
the rows of cluster runs with `--collect`), optionally printing the tables as csv, md, latex or html."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion_bench.benchmark.protocol import PRESETS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="regenerate leaderboards/<dataset>.csv and README.md from raw rows")
    p.add_argument("--leaderboard-dir", type=Path, default=Path("leaderboards"))
    p.add_argument("--format", default=None, choices=("csv", "md", "latex", "html"),
                   help="also print the aggregated table(s) in this format (latex: booktabs, best bold, second "
                        "underlined)")
    p.add_argument("--dataset", default=None, help="with --format: one dataset (default: every dataset)")
    p.add_argument("--preset", default=None, choices=PRESETS, help="with --format: one preset")
    p.add_argument("--out", type=Path, default=None, help="with --format: write to this file instead of stdout")
    p.add_argument("--collect", type=Path, default=None, metavar="RUNS_DIR",
                   help="first merge the row.csv of every complete run under RUNS_DIR into the raw CSVs (no file "
                        "locks: run one collect at a time; a row already present is not added again)")


def run(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.leaderboard import regenerate

    if args.collect is not None:
        from fusion_bench.benchmark.results import collect_rows

        added = collect_rows(args.collect, args.leaderboard_dir)
        if not added:
            print(f"no complete runs (row.csv) under {args.collect}", file=sys.stderr)
        for dataset, n in added.items():
            print(f"{dataset}: {n} new row(s) from {args.collect} -> "
                  f"{args.leaderboard_dir / 'raw' / (dataset + '.csv')}")
    tables = regenerate(args.leaderboard_dir)
    message = f"regenerated {len(tables)} dataset table(s) and {args.leaderboard_dir / 'README.md'}"
    if args.format is None:
        print(message)
        return 0
    from fusion_bench.report.formats import format_leaderboard

    text = format_leaderboard(args.leaderboard_dir, args.format, args.dataset, args.preset)
    if args.out is None:
        print(text, end="")
        print(message, file=sys.stderr)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"{message}; {args.format} table(s) -> {args.out}")
    return 0
