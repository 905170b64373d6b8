"""`fusion-bench report`: a static HTML report of one dataset (figures, statistics, reproduced vs reported)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion_bench.benchmark.protocol import PRESETS
from fusion_bench.cli.args import add_dataset_options, csv_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="a static HTML report (figures, statistics, reproduced vs reported)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--preset", default=None, choices=PRESETS,
                   help="default: the preset with the most rows for the dataset")
    p.add_argument("--methods", type=csv_list, default=None, help="comma-separated methods (default: all)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="run outputs of `bench` (its --out)")
    p.add_argument("--leaderboard-dir", type=Path, default=Path("leaderboards"))
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: <runs>/reports/<dataset>-<preset>/); replaced when it holds an "
                        "earlier report, refused when it holds anything else")
    p.add_argument("--images", type=csv_list, default=None,
                   help="test images for the grids (default: those where the methods disagree most)")
    p.add_argument("--n-images", type=int, default=4, help="how many images to pick automatically")
    p.add_argument("--zoom", default=None, metavar="X0,Y0,X1,Y1",
                   help="zoomed inset box, or none (default: protocol report.zoom, else the highest-contrast window)")
    p.add_argument("--metric", default=None, help="quality axis of the efficiency plot (default: seg_miou, "
                                                   "det_map50, ... or the first fusion metric)")
    p.add_argument("--cost", default=None, choices=("gflops", "params_m"), help="cost axis of the efficiency plot")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the tests")
    p.add_argument("--root", default=None, help="dataset root (sources and labels in the grids), as for bench")
    add_dataset_options(p)


def run(args: argparse.Namespace) -> int:
    from fusion_bench.report.build import build_report

    report = build_report(args.dataset, preset=args.preset, methods=args.methods, runs=args.runs,
                          leaderboard_dir=args.leaderboard_dir, out=args.out, images=args.images,
                          n_images=args.n_images, metric=args.metric, cost=args.cost, zoom=args.zoom, root=args.root,
                          dataset_options=dict(args.dataset_options), alpha=args.alpha)
    for kind, text in report.notes:
        print(f"{'warning' if kind == 'warn' else 'note'}: {text}", file=sys.stderr)
    print(f"report of {args.dataset}: {len(report.entries)} entries, {len(report.images)} images in the grid -> "
          f"{report.index_html} (open it in a browser; {report.seconds:.1f} s)")
    return 0
