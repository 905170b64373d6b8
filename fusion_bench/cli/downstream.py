"""`fusion-bench downstream`: train and score one downstream evaluator on folders of fused images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion_bench.benchmark.protocol import METHOD_PRESETS
from fusion_bench.cli.args import DOWNSTREAM_NUMERICS_HELP, add_dataset_options, parse_seed
from fusion_bench.numerics import DOWNSTREAM_MODES as DOWNSTREAM_NUMERICS


def add_parser(sub: argparse._SubParsersAction) -> None:
    from fusion_bench.registry import EVALUATORS

    p = sub.add_parser("downstream", help="train and score one downstream evaluator on folders of fused images")
    p.add_argument("evaluator", choices=sorted(EVALUATORS), help="seg: SegFormer mIoU; det: YOLO mAP")
    p.add_argument("--fused", type=Path, required=True,
                   help="folder with train/ and test/ (and optionally val/) subfolders of <sample name>.png")
    p.add_argument("--dataset", required=True, help="dataset whose labels and splits the fused images follow")
    p.add_argument("--root", default=None, help="dataset root (as for bench)")
    p.add_argument("--preset", default="smoke", choices=METHOD_PRESETS)
    p.add_argument("--seed", type=parse_seed, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--downstream-numerics", choices=DOWNSTREAM_NUMERICS, default="native",
                   help=DOWNSTREAM_NUMERICS_HELP)
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: <fused>/downstream-<evaluator>-<preset>-seed<seed>); must not "
                        "hold an earlier result")
    p.add_argument("--no-progress", action="store_true")
    add_dataset_options(p)


def run(args: argparse.Namespace) -> int:
    import json

    from fusion_bench.benchmark.downstream import prepare_folder_evaluation, run_folder_evaluation

    request = prepare_folder_evaluation(args.evaluator, args.fused, args.dataset, root=args.root, preset=args.preset,
                                        seed=args.seed, device=args.device, out=args.out,
                                        options=dict(args.dataset_options))
    for note in request.notes:
        print(f"note: {note}", file=sys.stderr)
    scores = run_folder_evaluation(request, args.seed, not args.no_progress, args.downstream_numerics)
    print(json.dumps(scores, indent=1))
    print(f"per-class values: {request.out / 'per_class.csv'}; full result and training log: {request.out}")
    return 0
