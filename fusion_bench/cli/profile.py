"""`fusion-bench profile`: parameters, GFLOPs and latency of one method, as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fusion_bench.benchmark.protocol import METHOD_PRESETS
from fusion_bench.cli.args import add_override_arguments, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="parameters, GFLOPs and latency of one method (JSON)")
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", default=None, help="dataset whose modalities shape the inputs (default by task)")
    p.add_argument("--root", default=None)
    p.add_argument("--preset", default="smoke", choices=METHOD_PRESETS)
    p.add_argument("--height", type=positive_int, default=256)
    p.add_argument("--width", type=positive_int, default=256)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_override_arguments(p, devices=False)


def run(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.checks import check_new_file
    from fusion_bench.benchmark.profiling import profile_dataset, profile_run
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.benchmark.spec import BenchSpec
    from fusion_bench.registry import get_method

    if args.out is not None:
        check_new_file(args.out, args.overwrite)
    method_cls = get_method(args.method)
    dataset = args.dataset or profile_dataset(method_cls)
    prep = prepare(BenchSpec(method=args.method, dataset=dataset, root=args.root, preset=args.preset,
                             device=args.device, progress=False, leaderboard_dir=None,
                             out=args.out.parent if args.out is not None else Path("."),
                             overrides=dict(args.overrides), config=args.config))
    text = json.dumps(profile_run(prep, args.height, args.width), indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0
