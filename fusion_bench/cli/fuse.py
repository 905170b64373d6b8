"""`fusion-bench fuse`: fuse a dataset split into a folder of PNGs (trainable methods with `--weights`: a file from
`fusion-bench train`, or the authors' released weights)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fusion_bench.cli.args import add_run_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fuse", help="fuse a dataset split into a folder of PNGs")
    add_run_arguments(p, released=True)
    p.add_argument("--weights", default=None, metavar="FILE|zoo|zoo:NAME",
                   help="weights from `fusion-bench train`, or the authors' released weights: their file in its own "
                        "format (converted by the method's converter; read with torch.load(weights_only=True)) or the "
                        "catalogue's entry (benchmarks/zoo.yaml, downloaded with a hash check unless offline)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: new or empty, never inside the dataset root")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out (same-named PNGs are replaced; a dataset root is still refused)")


def run(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.checks import check_empty_dir, check_outside
    from fusion_bench.benchmark.evaluation import fuse_to_folder
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.benchmark.spec import BenchSpec
    from fusion_bench.benchmark.weight_files import fuse_weights

    preset, released, own = fuse_weights(args.weights, args.preset)
    prep = prepare(BenchSpec(method=args.method, dataset=args.dataset, root=args.root, preset=preset,
                             device=args.device, num_workers=args.num_workers, progress=not args.no_progress,
                             dataset_options=dict(args.dataset_options), out=args.out, leaderboard_dir=None,
                             overrides=dict(args.overrides), config=args.config, weights=released))
    check_outside(args.out, prep.root)
    check_empty_dir(args.out, "--out", args.overwrite)
    result = fuse_to_folder(prep, args.split, args.out, own)
    print(f"fused {result.n_images} images ({result.fuse_ms:.1f} ms each) -> {args.out}")
    return 0
