"""`fusion-bench train`: fit a method and save its weights (for `fuse --weights`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion_bench.cli.args import add_run_arguments, parse_seed


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fit a method and save its weights")
    add_run_arguments(p)
    p.add_argument("--seed", type=parse_seed, default=0)
    p.add_argument("--out", type=Path, required=True,
                   help="file to write the weights to (.pt); its Lightning logs go to the folder of the same name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file and its log folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted `train` with the same --out from its last Lightning checkpoint "
                        "(<out without suffix>/checkpoints/last.ckpt)")


def run(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.checks import check_empty_dir, check_new_file, check_output_dir, check_outside
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.benchmark.run_dirs import checkpoint_dir
    from fusion_bench.benchmark.spec import BenchSpec
    from fusion_bench.benchmark.training import train_weights
    from fusion_bench.errors import BenchError

    if not args.out.suffix:
        raise BenchError(f"--out {args.out}: expected a weights file name such as {args.out}.pt (its Lightning logs go "
                         f"to the folder {args.out})")
    check_new_file(args.out, args.overwrite)
    log_dir = args.out.with_suffix("")
    if args.resume:
        check_output_dir(log_dir, "--out (its log folder)")
        if not (checkpoint_dir(log_dir) / "last.ckpt").is_file():
            print(f"note: --resume: no checkpoint {checkpoint_dir(log_dir) / 'last.ckpt'}: training starts from the "
                  "beginning", file=sys.stderr)
    else:
        check_empty_dir(log_dir, "--out (its log folder)", args.overwrite)
    prep = prepare(BenchSpec(method=args.method, dataset=args.dataset, root=args.root, preset=args.preset,
                             device=args.device, num_workers=args.num_workers, progress=not args.no_progress,
                             logger=args.logger, dataset_options=dict(args.dataset_options), out=args.out.parent,
                             leaderboard_dir=None, overrides=dict(args.overrides), config=args.config,
                             resume=args.resume))
    check_outside(args.out.parent, prep.root)
    seconds = train_weights(prep, args.seed, args.out, resume=args.resume)
    if seconds is not None:  # None: another process of a multi-process fit (rank 0 saves the weights)
        print(f"trained {args.method} on {args.dataset} in {seconds:.1f} s -> {args.out}")
    return 0
