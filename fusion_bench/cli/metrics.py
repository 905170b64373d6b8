"""`fusion-bench metrics`: score a folder of fused images against two source folders (one row per image)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fusion_bench.cli.args import csv_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="score a folder of fused images against two source folders")
    p.add_argument("--a", type=Path, required=True, help="first source folder (e.g. infrared)")
    p.add_argument("--b", type=Path, required=True, help="second source folder (e.g. visible)")
    p.add_argument("--fused", type=Path, required=True, help="fused images; x.png pairs with sources x.*")
    p.add_argument("--fused-pattern", default=None, metavar="PATTERN",
                   help="how fused files are named, {stem} standing for the pair key and * for anything, e.g. "
                        "'{stem}_fused.png' (default: the file stem is the key)")
    p.add_argument("--a-pattern", default=None, metavar="PATTERN",
                   help="likewise for --a, e.g. '{stem}_A.*' (MFIFB/MEFB-style x_A.jpg)")
    p.add_argument("--b-pattern", default=None, metavar="PATTERN", help="likewise for --b, e.g. '{stem}_B.*'")
    p.add_argument("--allow-subset", action="store_true",
                   help="score the source pairs that have a fused image and leave the others out (default: a source "
                        "pair without a fused image is an error)")
    p.add_argument("--dialect", default="mmif", help="metric dialect: mmif, vifb, tang")
    p.add_argument("--metrics", type=csv_list, default=None, help="comma-separated subset, e.g. EN,SD,SF")
    p.add_argument("--out", type=Path, required=True, help="CSV file: one row per image (NaN: an empty cell)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.checks import check_new_file
    from fusion_bench.errors import MetricsInputError
    from fusion_bench.metrics import get_dialect, score_folders

    try:
        get_dialect(args.dialect).resolve(args.metrics, False)
    except ValueError as err:
        raise MetricsInputError(f"--dialect/--metrics: {err}") from err
    if args.metrics is not None and not args.metrics:
        raise MetricsInputError("--metrics names nothing; pass e.g. --metrics EN,SD or leave it out")
    check_new_file(args.out, args.overwrite)
    frame = score_folders(args.a, args.b, args.fused, dialect=args.dialect, metrics=args.metrics,
                          out_csv=args.out, progress=not args.no_progress, allow_subset=args.allow_subset,
                          patterns={"a": args.a_pattern, "b": args.b_pattern, "fused": args.fused_pattern})
    print(f"scored {len(frame)} images with dialect {args.dialect} -> {args.out}")
    values = frame.drop(columns=["name"])
    for name in values.columns:
        column = values[name]
        nan = int(column.isna().sum())
        note = f" (mean of {len(column) - nan} of {len(column)} images: {nan} NaN, empty in the CSV)" if nan else ""
        print(f"  {name}: {column.mean():.6g}{note}")
    return 0
