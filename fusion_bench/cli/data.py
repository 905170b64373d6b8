"""`fusion-bench data {check, fake, prepare}`: a dataset's integrity report (exit 0 only when clean), a tiny fake
copy of its real tree, and the preprocessing some datasets need (audio-visual caches)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion_bench.cli.args import add_dataset_options, parse_seed


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("check", help="report counts, sizes, labels and every problem; exit 0 only when clean")
    q.add_argument("name")
    q.add_argument("--root", default=None)
    add_dataset_options(q)
    q = data_sub.add_parser("fake", help="write a tiny fake copy of a dataset's real tree")
    q.add_argument("name")
    q.add_argument("--out", type=Path, required=True, help="a new or empty folder (never mixed into existing data)")
    q.add_argument("--seed", type=parse_seed, default=0)
    q = data_sub.add_parser("prepare", help="preprocess a dataset into its cache (audio-visual datasets)")
    q.add_argument("name")
    q.add_argument("--root", default=None)


def run(args: argparse.Namespace) -> int:
    from fusion_bench.registry import get_datamodule

    datamodule_cls = get_datamodule(args.name)
    dataset_cls = datamodule_cls.dataset_class
    if args.data_command == "check":
        root = datamodule_cls.resolve_root(args.root)
        try:
            report = dataset_cls.check(root, **dict(args.dataset_options))
        except (TypeError, ValueError) as err:
            print(f"error: dataset {args.name} does not take options {dict(args.dataset_options)}: {err}",
                  file=sys.stderr)
            return 2
        print(report.format())
        return 0 if report.ok else 1
    if args.data_command == "fake":
        from fusion_bench.benchmark.checks import check_empty_dir

        if not hasattr(dataset_cls, "make_fake"):
            print(f"error: dataset {args.name} has no fake generator", file=sys.stderr)
            return 2
        check_empty_dir(args.out)  # never mixed into an existing dataset
        root = dataset_cls.make_fake(args.out, seed=args.seed)
        print(f"wrote a fake {args.name} tree to {root}")
        return 0
    if not hasattr(dataset_cls, "prepare"):
        print(f"error: dataset {args.name} needs no preparation", file=sys.stderr)
        return 2
    root = dataset_cls.prepare(datamodule_cls.resolve_root(args.root))
    print(f"prepared {args.name} -> {root}")
    return 0
