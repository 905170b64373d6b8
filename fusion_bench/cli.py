"""`fusion-bench` command line (also `python -m fusion_bench`, and `main(argv)` in-process).

Subcommands: bench, train, fuse, metrics, downstream, profile, leaderboard, report, regress, grid, list,
data {check, fake, prepare}.
Errors in the request (unknown names, bad values, missing data, bad input files, outputs that would overwrite
something) print one clear message and exit 2, before any expensive work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from fusion_bench.benchmark.protocol import PRESETS
from fusion_bench.numerics import DOWNSTREAM_MODES as DOWNSTREAM_NUMERICS


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


DOWNSTREAM_NUMERICS_HELP = ("downstream evaluators' numerics: native (default; SegFormer with oneDNN, YOLO "
                             "unpinned: about 2x faster, scores repeat on this machine) or pinned (as `regress`: the "
                             "same scores on every x86-64 CPU)")
SEED_MAX = 2**32 - 1  # numpy's seed range (Lightning's seed_everything enforces it)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..{SEED_MAX}, got {text!r}")
    return value


def _seeds(text: str) -> list[int]:
    items = _csv_list(text)
    if not items:
        raise argparse.ArgumentTypeError("expected comma-separated integers (e.g. 0,1,2), got nothing")
    try:
        return [_seed(t) for t in items]
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers in 0..{SEED_MAX}, got {text!r}") from err


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _option(text: str) -> tuple[str, object]:
    """KEY=VALUE with the value parsed as YAML (so classes=14 is an int, lr=1e-4 a float, layout=flat a string)."""
    import yaml

    from fusion_bench.benchmark.protocol import load_yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), load_yaml(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not valid YAML ({' '.join(str(err).split())})"
                                         ) from err


def _add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset-arg", dest="dataset_options", type=_option, action="append", default=[],
                   metavar="KEY=VALUE", help="dataset option, repeatable (e.g. layout=flat, classes=14, "
                                             "subset=detection); recorded in the config hash")


def _add_run_arguments(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    what = " (comma-separated for several)" if many else ""
    p.add_argument("--method", required=True, help=f"method name{what}; see `fusion-bench list`")
    p.add_argument("--dataset", required=True, help=f"dataset name{what}")
    p.add_argument("--root", default=None, help="dataset root (default: $FUSION_BENCH_DATA/<name>, else data/<name>; "
                                                 "synthetic datasets: the user cache)")
    p.add_argument("--preset", default="smoke", choices=PRESETS,
                   help="smoke (CPU, tiny), paper (what produced the published numbers: the authors' code) or "
                        "paper_text (a method's reading of its paper's text where the code differs)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-workers", type=_non_negative, default=0, help="DataLoader workers")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--logger", default="csv", choices=("csv", "tensorboard", "wandb"),
                   help="Lightning logger for training (wandb runs offline unless WANDB_MODE is set)")
    _add_override_arguments(p)
    _add_dataset_options(p)


class _TrainAlias(argparse.Action):
    """`--devices X` = `--set train.devices=X` (likewise --strategy, --num-nodes): appended to the overrides."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        from fusion_bench.benchmark.protocol import load_yaml

        items = list(getattr(namespace, self.dest) or [])
        items.append((self.const, load_yaml(values)))
        setattr(namespace, self.dest, items)


def _add_override_arguments(p: argparse.ArgumentParser, devices: bool = True) -> None:
    if devices:
        p.add_argument("--devices", dest="overrides", action=_TrainAlias, const="train.devices", default=[],
                       metavar="N|LIST",
                       help="= --set train.devices=N: devices of one fit (e.g. 4, [0,2], auto); see --strategy")
        p.add_argument("--strategy", dest="overrides", action=_TrainAlias, const="train.strategy", default=[],
                       metavar="auto|ddp|ddp_spawn|fsdp", help="= --set train.strategy=...")
        p.add_argument("--num-nodes", dest="overrides", action=_TrainAlias, const="train.num_nodes", default=[],
                       metavar="N",
                       help="= --set train.num_nodes=N (one process per device on every node, e.g. SLURM srun)")
    p.add_argument("--set", dest="overrides", type=_option, nargs="+", action="extend", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override preset values (values parsed as YAML), e.g. --set train.max_epochs=5 optim.lr=1e-4 "
                        "model.encoder=b2; an unknown key is an error listing the valid ones; recorded in the config "
                        "hash and the row's overrides column")
    p.add_argument("--config", type=Path, default=None, metavar="FILE.yaml",
                   help="a preset section (model: {...}, optim: {...}, train: {...}) over the preset, before --set; "
                        "read with yaml.safe_load (a plug-in method without config.yaml takes its preset from here)")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (`fusion-bench bench: error: argument --seeds: ...`), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from fusion_bench.registry import EVALUATORS

    parser = _Parser(prog="fusion-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bench", help="train, fuse, score and append leaderboard rows")
    _add_run_arguments(p, many=True)
    p.add_argument("--seeds", type=_seeds, default=None,
                   help="comma-separated seeds, e.g. 0,1,2 (default: the protocol's seeds for the preset, else 0)")
    p.add_argument("--out", type=Path, default=Path("runs"), help="run outputs (fused PNGs, logs, weights)")
    p.add_argument("--leaderboard-dir", type=Path, default=Path("leaderboards"))
    p.add_argument("--downstream", default=None, metavar="LIST",
                   help="downstream evaluators: protocol (the dataset protocol's list), none, or e.g. seg,det "
                        "(default: $FUSION_BENCH_DOWNSTREAM, else protocol)")
    p.add_argument("--no-downstream-baselines", action="store_true",
                   help="do not add the source_a/source_b downstream rows when they are missing")
    p.add_argument("--downstream-numerics", choices=DOWNSTREAM_NUMERICS, default="native",
                   help=DOWNSTREAM_NUMERICS_HELP)
    p.add_argument("--no-report", action="store_true",
                   help="do not regenerate the HTML report (<out>/reports/<dataset>-<preset>/) after the runs "
                        "(also FUSION_BENCH_REPORT=0)")
    p.add_argument("--mixture", action="store_true",
                   help="train one model on the mixture of the --dataset list, then score it on each dataset's test "
                        "split (one row per dataset, train_mixture recorded); without it a list means one run each")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: seeds whose run directory is complete are reused, an "
                        "interrupted seed continues from its last Lightning checkpoint (<run_dir>.partial/checkpoints/"
                        "last.ckpt); without it an interrupted seed starts over")
    p.add_argument("--no-leaderboard", action="store_true",
                   help="write each row only to its run directory (row.csv), not to --leaderboard-dir (cluster jobs: "
                        "merge them later with `fusion-bench leaderboard --collect RUNS_DIR`)")
    p.add_argument("--jobs", type=_positive, default=1,
                   help="run up to N (method, dataset, seed) runs at a time, each in its own `fusion-bench bench` "
                        "process (logs: <out>/bench-logs/); the same numbers as one at a time (make bench: 2)")

    p = sub.add_parser("train", help="fit a method and save its weights")
    _add_run_arguments(p)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--out", type=Path, required=True,
                   help="file to write the weights to (.pt); its Lightning logs go to the folder of the same name")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file and its log folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted `train` with the same --out from its last Lightning checkpoint "
                        "(<out without suffix>/checkpoints/last.ckpt)")

    p = sub.add_parser("fuse", help="fuse a dataset split into a folder of PNGs")
    _add_run_arguments(p)
    p.add_argument("--weights", type=Path, default=None, help="weights from `fusion-bench train` (trainable methods)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: new or empty, never inside the dataset root")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out (same-named PNGs are replaced; a dataset root is still refused)")

    p = sub.add_parser("metrics", help="score a folder of fused images against two source folders")
    p.add_argument("--a", type=Path, required=True, help="first source folder (e.g. infrared)")
    p.add_argument("--b", type=Path, required=True, help="second source folder (e.g. visible)")
    p.add_argument("--fused", type=Path, required=True, help="fused images; x.png pairs with sources x.*")
    p.add_argument("--dialect", default="mmif", help="metric dialect: mmif, vifb, tang")
    p.add_argument("--metrics", type=_csv_list, default=None, help="comma-separated subset, e.g. EN,SD,SF")
    p.add_argument("--out", type=Path, required=True, help="CSV file: one row per image (NaN: an empty cell)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("downstream", help="train and score one downstream evaluator on folders of fused images")
    p.add_argument("evaluator", choices=sorted(EVALUATORS), help="seg: SegFormer mIoU; det: YOLO mAP")
    p.add_argument("--fused", type=Path, required=True,
                   help="folder with train/ and test/ (and optionally val/) subfolders of <sample name>.png")
    p.add_argument("--dataset", required=True, help="dataset whose labels and splits the fused images follow")
    p.add_argument("--root", default=None, help="dataset root (as for bench)")
    p.add_argument("--preset", default="smoke", choices=PRESETS)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--downstream-numerics", choices=DOWNSTREAM_NUMERICS, default="native",
                   help=DOWNSTREAM_NUMERICS_HELP)
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: <fused>/downstream-<evaluator>-<preset>-seed<seed>); must not "
                        "hold an earlier result")
    p.add_argument("--no-progress", action="store_true")
    _add_dataset_options(p)

    p = sub.add_parser("profile", help="parameters, GFLOPs and latency of one method (JSON)")
    p.add_argument("--method", required=True)
    p.add_argument("--dataset", default=None, help="dataset whose modalities shape the inputs (default by task)")
    p.add_argument("--root", default=None)
    p.add_argument("--preset", default="smoke", choices=PRESETS)
    p.add_argument("--height", type=_positive, default=256)
    p.add_argument("--width", type=_positive, default=256)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _add_override_arguments(p, devices=False)

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

    p = sub.add_parser("report", help="a static HTML report (figures, statistics, reproduced vs reported)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--preset", default=None, choices=PRESETS,
                   help="default: the preset with the most rows for the dataset")
    p.add_argument("--methods", type=_csv_list, default=None, help="comma-separated methods (default: all)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="run outputs of `bench` (its --out)")
    p.add_argument("--leaderboard-dir", type=Path, default=Path("leaderboards"))
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: <runs>/reports/<dataset>-<preset>/); replaced when it holds an "
                        "earlier report, refused when it holds anything else")
    p.add_argument("--images", type=_csv_list, default=None,
                   help="test images for the grids (default: those where the methods disagree most)")
    p.add_argument("--n-images", type=int, default=4, help="how many images to pick automatically")
    p.add_argument("--zoom", default=None, metavar="X0,Y0,X1,Y1",
                   help="zoomed inset box, or none (default: protocol report.zoom, else the highest-contrast window)")
    p.add_argument("--metric", default=None, help="quality axis of the efficiency plot (default: seg_miou, "
                                                   "det_map50, ... or the first fusion metric)")
    p.add_argument("--cost", default=None, choices=("gflops", "params_m"), help="cost axis of the efficiency plot")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the tests")
    p.add_argument("--root", default=None, help="dataset root (sources and labels in the grids), as for bench")
    _add_dataset_options(p)

    p = sub.add_parser("regress", help="re-run a suite and fail on drift from the committed numbers")
    p.add_argument("--suite", default="smoke")
    p.add_argument("--update", action="store_true", help="rewrite the expected numbers instead of comparing")
    p.add_argument("--out", type=Path, default=None, help="keep the re-run outputs here (default: temp dir)")
    p.add_argument("--progress", action="store_true")

    p = sub.add_parser("grid", help="a resumable method x dataset x seed grid of bench jobs (local pool, SLURM "
                                    "through submitit, or printed commands)")
    p.add_argument("--grid", type=Path, default=None, metavar="FILE.yaml",
                   help="methods, datasets, seeds, preset, set, config, downstream, root, dataset_args, device from a "
                        "YAML file (options given on the command line win)")
    p.add_argument("--methods", type=_csv_list, default=None, help="comma-separated methods")
    p.add_argument("--datasets", type=_csv_list, default=None, help="comma-separated datasets")
    p.add_argument("--seeds", type=_seeds, default=None,
                   help="comma-separated seeds (default: each dataset protocol's seeds for the preset, else 0)")
    p.add_argument("--preset", default=None, choices=PRESETS, help="default smoke")
    p.add_argument("--root", default=None, help="dataset root (as for bench)")
    p.add_argument("--device", default=None, help="each job's --device (default auto)")
    p.add_argument("--num-workers", type=_non_negative, default=0, help="each job's DataLoader workers")
    p.add_argument("--logger", default="csv", choices=("csv", "tensorboard", "wandb"))
    p.add_argument("--downstream", default=None, metavar="LIST", help="as for bench")
    p.add_argument("--downstream-numerics", choices=DOWNSTREAM_NUMERICS, default=None,
                   help="each job's --downstream-numerics (default: bench's)")
    p.add_argument("--resume", action="store_true", help="jobs continue interrupted seeds from their checkpoints")
    _add_override_arguments(p)
    _add_dataset_options(p)
    p.add_argument("--out", type=Path, default=Path("runs"), help="run outputs of every job (bench --out)")
    p.add_argument("--leaderboard-dir", type=Path, default=Path("leaderboards"),
                   help="raw leaderboard: jobs whose rows are here are skipped; local (and slurm --wait) merge the "
                        "new rows into it")
    p.add_argument("--launcher", required=True, choices=("local", "slurm", "commands"),
                   help="local: a pool of --jobs processes here; slurm: a submitit job array; commands: print one "
                        "shell line per job")
    p.add_argument("--jobs", type=_positive, default=1, help="local: jobs at a time")
    p.add_argument("--partition", default=None, help="slurm: partition")
    p.add_argument("--gpus-per-node", type=_non_negative, default=0, help="slurm: GPUs per job")
    p.add_argument("--tasks-per-node", type=_positive, default=None,
                   help="slurm: tasks per node (default: train.devices, one process per device; else 1)")
    p.add_argument("--nodes", type=_positive, default=1, help="slurm: nodes per job (train.num_nodes)")
    p.add_argument("--cpus-per-task", type=_positive, default=4, help="slurm: CPUs per task")
    p.add_argument("--time", dest="timeout_min", type=_positive, default=240, help="slurm: minutes per job")
    p.add_argument("--mem-gb", type=_positive, default=None, help="slurm: memory per job (GB)")
    p.add_argument("--array-parallelism", type=_positive, default=None, help="slurm: jobs of the array at a time")
    p.add_argument("--submitit-cluster", default=None, choices=("slurm", "local", "debug"),
                   help="slurm: submitit's executor (default: SLURM when available; local/debug run here)")
    p.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then merge their rows")

    p = sub.add_parser("list", help="list registered methods, datasets and evaluators")

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("check", help="report counts, sizes, labels and every problem; exit 0 only when clean")
    q.add_argument("name")
    q.add_argument("--root", default=None)
    _add_dataset_options(q)
    q = data_sub.add_parser("fake", help="write a tiny fake copy of a dataset's real tree")
    q.add_argument("name")
    q.add_argument("--out", type=Path, required=True, help="a new or empty folder (never mixed into existing data)")
    q.add_argument("--seed", type=_seed, default=0)
    q = data_sub.add_parser("prepare", help="preprocess a dataset into its cache (audio-visual datasets)")
    q.add_argument("name")
    q.add_argument("--root", default=None)
    return parser


def _protocol_seeds(dataset: str, preset: str) -> list[int]:
    """The seeds a dataset's protocol lists for a preset (`presets: {<preset>: {seeds: [...]}}`), else [0]."""
    from fusion_bench.benchmark.protocol import load_protocol, protocol_preset
    from fusion_bench.registry import get_datamodule

    protocol = load_protocol(dataset, get_datamodule(dataset).dataset_class.task)
    return [int(s) for s in ((protocol.get("presets") or {}).get(protocol_preset(preset)) or {}).get("seeds", [0])]


def _new_file(path: Path, overwrite: bool, option: str = "--out") -> None:
    """An output file: refused when it is a folder, exists without --overwrite, or cannot be created."""
    from fusion_bench.benchmark.distributed import is_rank_zero
    from fusion_bench.benchmark.runner import BenchError, check_output_dir

    if not is_rank_zero():  # another process of a multi-process fit: rank 0 checked (and now writes) the outputs
        return
    if path.is_dir():
        raise BenchError(f"{option} {path} is a folder; expected a file")
    if path.exists() and not overwrite:
        raise BenchError(f"{option} {path} exists: pass --overwrite to replace it, or another {option}")
    check_output_dir(path.parent, option)


def _empty_dir(path: Path, option: str = "--out", overwrite: bool | None = None) -> None:
    """An output folder: refused when it is a file, cannot be created, or is not empty (unless --overwrite where
    the command offers it)."""
    from fusion_bench.benchmark.distributed import is_rank_zero
    from fusion_bench.benchmark.runner import BenchError, check_output_dir

    if not is_rank_zero():
        return
    check_output_dir(path, option)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        hint = " or pass --overwrite" if overwrite is not None else ""
        raise BenchError(f"{option} {path} is not empty: pass a new or empty folder{hint} (nothing is overwritten "
                         "by default)")


def _outside(path: Path, root: Path, option: str = "--out") -> None:
    """Refuse an output folder inside (or equal to) a dataset root: fused images never go into a dataset."""
    from fusion_bench.benchmark.runner import BenchError

    out, src = path.resolve(), root.resolve()
    if out == src or src in out.parents:
        raise BenchError(f"{option} {path} is inside the dataset root {root}: outputs never go into a dataset's "
                         "folders (pass a folder outside it)")


def _cmd_bench(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.distributed import is_rank_zero
    from fusion_bench.benchmark.runner import (
        BASELINE_METHODS,
        BenchError,
        BenchSpec,
        format_timings,
        leaderboard_text,
        prepare,
        run_bench,
    )

    # source_a/source_b first: the other methods then reuse their downstream rows instead of recomputing them
    methods = sorted(_csv_list(args.method), key=lambda m: m not in BASELINE_METHODS)
    datasets = _csv_list(args.dataset)
    for option, names in (("--method", methods), ("--dataset", datasets)):
        if not names:
            raise BenchError(f"{option} {getattr(args, option[2:])!r} names nothing; see `fusion-bench list`")
    if args.mixture:
        from fusion_bench.benchmark.mixture import bench_mixture

        if args.jobs > 1:
            raise BenchError("--jobs does not apply to --mixture (one model is trained on all the datasets)")
        return bench_mixture(args, methods, datasets)
    leaderboard_dir = None if args.no_leaderboard else args.leaderboard_dir
    specs = [BenchSpec(method=m, dataset=d, root=args.root, preset=args.preset,
                       seeds=args.seeds if args.seeds is not None else _protocol_seeds(d, args.preset), out=args.out,
                       leaderboard_dir=leaderboard_dir, device=args.device, num_workers=args.num_workers,
                       progress=not args.no_progress, logger=args.logger,
                       dataset_options=dict(args.dataset_options), overrides=dict(args.overrides),
                       config=args.config, downstream=args.downstream, resume=args.resume,
                       downstream_baselines=not args.no_downstream_baselines,
                       downstream_numerics=args.downstream_numerics)
             for d in datasets for m in methods]
    prepared = [prepare(spec) for spec in specs]  # validate the whole grid before running any of it
    timings: list[dict] = []
    notes = []
    if args.jobs > 1:
        code = _bench_jobs(args, specs, timings, notes)
        if code:
            return code
        specs = []
    for spec, prep in zip(specs, prepared):
        rows = run_bench(spec, timings, prep)
        if not is_rank_zero():  # another process of a multi-process fit: rank 0 reports
            continue
        where = "their run directories (row.csv)" if leaderboard_dir is None else \
            args.leaderboard_dir / "raw" / (spec.dataset + ".csv")
        print(f"{spec.method} on {spec.dataset} ({spec.preset}): {len(rows)} row(s) -> {where}; outputs under "
              f"{prep.run_dir(spec.seeds[0]).parent.parent}")
        notes += _nan_notes(rows)
    if not is_rank_zero():
        return 0
    if leaderboard_dir is None:
        print(f"merge the rows into {args.leaderboard_dir} with: fusion-bench leaderboard --collect {args.out} "
              f"--leaderboard-dir {args.leaderboard_dir}")
        return 0
    for dataset in datasets:
        print(f"\n## {dataset} ({args.preset})\n")
        print(leaderboard_text(args.leaderboard_dir, dataset, args.preset))
    if not args.no_report and os.environ.get("FUSION_BENCH_REPORT", "1").lower() not in ("0", "no", "off", "none"):
        _bench_reports(args, datasets)
    if notes:
        print("\n" + "\n".join(notes))
    if timings:
        print(f"\nwhere the time went (seconds; each seed's timings.json has them):\n{format_timings(timings)}")
    return 0


def _nan_notes(rows: list[dict]) -> list[str]:
    return [f"note: {r['method']} seed {r['seed']}: {r['n_nan']} per-image metric value(s) are NaN (undefined, "
            f"e.g. on a constant image) and left out of the means over {r['n_images']} images: "
            f"{r['nan_metrics']} (metric:images)" for r in rows if r.get("n_nan") not in (None, "", 0, "0")]


def _bench_jobs(args: argparse.Namespace, specs: list, timings: list[dict], notes: list[str]) -> int:
    """`bench --jobs N`: the runs of a sequential `bench` (every requested method and seed, plus the missing
    downstream baselines) as `fusion-bench bench` processes, N at a time (fusion_bench.benchmark.grid); each appends
    its row to the raw CSV under its file lock. Fills `timings` and `notes` from the runs' directories."""
    from dataclasses import replace

    from fusion_bench.benchmark.grid import plan_grid, run_local
    from fusion_bench.benchmark.results import read_rows

    base = replace(specs[0], method="", dataset="", seeds=())
    plan = plan_grid(list(dict.fromkeys(s.method for s in specs)), list(dict.fromkeys(s.dataset for s in specs)),
                     args.seeds, base, rerun=True)
    log_dir = args.out / "bench-logs"
    print(f"bench: {len(plan.jobs)} run(s), {args.jobs} at a time (logs: {log_dir})", flush=True)
    failures = run_local(plan, args.jobs, log_dir)
    if failures:
        print("\n".join(["error: some runs failed:", *failures]), file=sys.stderr)
        return 1
    for job in plan.jobs:
        path = job.run_dir / "timings.json"
        if path.is_file():
            timings.append(json.loads(path.read_text()))
        notes += _nan_notes(read_rows(job.run_dir / "row.csv"))
    if args.leaderboard_dir is not None and not args.no_leaderboard:
        from fusion_bench.benchmark.leaderboard import regenerate

        regenerate(args.leaderboard_dir)  # after every run's rows are in (the runs regenerate it as they finish)
    return 0


def _bench_reports(args: argparse.Namespace, datasets: list[str]) -> None:
    """Regenerate each dataset's report after `bench` and print its path; a failure is a warning, not an error."""
    from fusion_bench.report.build import build_report

    for dataset in datasets:
        try:
            report = build_report(dataset, preset=args.preset, runs_dir=args.out,
                                  leaderboard_dir=args.leaderboard_dir, root=args.root,
                                  dataset_options=dict(args.dataset_options))
        except Exception as err:  # noqa: BLE001 - the rows are written; the report is a convenience
            print(f"warning: report for {dataset} not regenerated: {err}", file=sys.stderr)
            continue
        print(f"report: {report.index_html} ({report.seconds:.1f} s; --no-report skips it)")


def _cmd_train(args: argparse.Namespace) -> int:
    import lightning as L

    from fusion_bench.benchmark.distributed import is_rank_zero
    from fusion_bench.benchmark.runner import (
        BenchError,
        BenchSpec,
        build_datamodule,
        build_method,
        check_output_dir,
        checkpoint_dir,
        fit,
        prepare,
    )

    if not args.out.suffix:
        raise BenchError(f"--out {args.out}: expected a weights file name such as {args.out}.pt (its Lightning logs go "
                         f"to the folder {args.out})")
    _new_file(args.out, args.overwrite)
    log_dir = args.out.with_suffix("")
    if args.resume:
        check_output_dir(log_dir, "--out (its log folder)")
        if not (checkpoint_dir(log_dir) / "last.ckpt").is_file():
            print(f"note: --resume: no checkpoint {checkpoint_dir(log_dir) / 'last.ckpt'}: training starts from the "
                  "beginning", file=sys.stderr)
    else:
        _empty_dir(log_dir, "--out (its log folder)", args.overwrite)
    prep = prepare(BenchSpec(method=args.method, dataset=args.dataset, root=args.root, preset=args.preset,
                             device=args.device, num_workers=args.num_workers, progress=not args.no_progress,
                             logger=args.logger, dataset_options=dict(args.dataset_options), out=args.out.parent,
                             leaderboard_dir=None, overrides=dict(args.overrides), config=args.config,
                             resume=args.resume))
    _outside(args.out.parent, prep.root)
    L.seed_everything(args.seed, workers=True, verbose=False)
    datamodule = build_datamodule(prep, args.seed)
    model = build_method(prep, datamodule)
    if not model.trainable:
        print(f"error: {args.method} is training-free: nothing to train", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    seconds = fit(prep, model, datamodule, log_dir, resume=args.resume)
    if not is_rank_zero():  # another process of a multi-process fit: rank 0 saves the weights
        return 0
    (log_dir / "model.pt").replace(args.out)
    shutil.rmtree(checkpoint_dir(log_dir), ignore_errors=True)  # the weights are in --out now
    print(f"trained {args.method} on {args.dataset} in {seconds:.1f} s -> {args.out}")
    return 0


def _cmd_fuse(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.runner import (
        BenchError,
        BenchSpec,
        build_datamodule,
        build_method,
        fuse_split,
        load_weights,
        prepare,
        read_weights,
    )

    prep = prepare(BenchSpec(method=args.method, dataset=args.dataset, root=args.root, preset=args.preset,
                             device=args.device, num_workers=args.num_workers, progress=not args.no_progress,
                             dataset_options=dict(args.dataset_options), out=args.out, leaderboard_dir=None,
                             overrides=dict(args.overrides), config=args.config))
    _outside(args.out, prep.root)
    _empty_dir(args.out, "--out", args.overwrite)
    splits = prep.datamodule_cls.dataset_class.available_splits(prep.root, **prep.spec.dataset_options)
    if args.split not in splits:
        raise BenchError(f"--split {args.split!r}: dataset {args.dataset!r} here has the splits {', '.join(splits)}")
    if args.weights is not None:  # checked (and unpickled safely) before anything is built
        read_weights(args.weights, args.method, args.preset, prep.config)
    datamodule = build_datamodule(prep, 0)
    model = build_method(prep, datamodule)
    if args.weights is not None:
        load_weights(model, args.weights, args.method, args.preset, prep.config)
    elif model.trainable:
        print(f"error: {args.method} is trainable: pass --weights from `fusion-bench train`", file=sys.stderr)
        return 2
    result = fuse_split(prep, model, datamodule, args.out, split=args.split)
    print(f"fused {result.n_images} images ({result.fuse_ms:.1f} ms each) -> {args.out}")
    return 0


def _cmd_downstream(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from fusion_bench.benchmark.downstream import evaluator_config, needs_val, resolve_evaluators, run_evaluator
    from fusion_bench.benchmark.protocol import load_protocol
    from fusion_bench.benchmark.runner import BenchError, check_device
    from fusion_bench.registry import get_datamodule

    datamodule_cls = get_datamodule(args.dataset)
    dataset_cls = datamodule_cls.dataset_class
    device = check_device(args.device)
    root = datamodule_cls.resolve_root(args.root)
    options = dict(args.dataset_options)
    try:
        splits = dataset_cls.available_splits(root, **options)
        test_set = dataset_cls(root, "test", **options)
    except (TypeError, ValueError) as err:
        raise BenchError(f"dataset {args.dataset!r} does not take these options {options}: {err}") from err
    try:
        resolve_evaluators((args.evaluator,), {}, test_set, splits)
    except ValueError as err:
        raise BenchError(str(err)) from err
    config = evaluator_config(args.evaluator, args.preset, load_protocol(args.dataset, dataset_cls.task))
    fused = {split: args.fused / split for split in ("train", "test")}
    for split, folder in fused.items():
        if not folder.is_dir():
            raise BenchError(f"{folder} is missing: --fused must hold train/ and test/ folders of fused "
                             f"<sample name>.png (e.g. from `fusion-bench fuse --split {split} --out {folder}`)")
    if "val" in splits and needs_val(args.evaluator, config):
        if (args.fused / "val").is_dir():
            fused["val"] = args.fused / "val"
        else:
            print(f"note: no {args.fused / 'val'} folder: validation holds out part of the fused training images",
                  file=sys.stderr)
    out = args.out or args.fused / f"downstream-{args.evaluator}-{args.preset}-seed{args.seed}"
    _empty_dir(out)
    _outside(out, root)
    datasets = {split: test_set if split == "test" else dataset_cls(root, split, **options) for split in fused}
    scores, per_class = run_evaluator(args.evaluator, config, fused, datasets, args.seed, device, out,
                                      not args.no_progress, args.downstream_numerics)
    pd.DataFrame(per_class).to_csv(out / "per_class.csv", index=False)
    print(json.dumps(scores, indent=1))
    print(f"per-class values: {out / 'per_class.csv'}; full result and training log: {out}")
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from fusion_bench.metrics import MetricsInputError, get_dialect, score_folders

    try:
        get_dialect(args.dialect).resolve(args.metrics, False)
    except ValueError as err:
        raise MetricsInputError(f"--dialect/--metrics: {err}") from err
    if args.metrics is not None and not args.metrics:
        raise MetricsInputError("--metrics names nothing; pass e.g. --metrics EN,SD or leave it out")
    _new_file(args.out, args.overwrite)
    frame = score_folders(args.a, args.b, args.fused, dialect=args.dialect, metrics=args.metrics,
                          out_csv=args.out, progress=not args.no_progress)
    print(f"scored {len(frame)} images with dialect {args.dialect} -> {args.out}")
    values = frame.drop(columns=["name"])
    for name in values.columns:
        column = values[name]
        nan = int(column.isna().sum())
        note = f" (mean of {len(column) - nan} of {len(column)} images: {nan} NaN, empty in the CSV)" if nan else ""
        print(f"  {name}: {column.mean():.6g}{note}")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.profiling import profile_classifier, profile_fusion
    from fusion_bench.benchmark.runner import BenchSpec, build_datamodule, build_method, prepare
    from fusion_bench.data.transforms import collate_samples
    from fusion_bench.registry import get_method
    from fusion_bench.types import Task

    if args.out is not None:
        _new_file(args.out, args.overwrite)
    method_cls = get_method(args.method)
    dataset = args.dataset or ("synthetic-av" if Task.CLASSIFICATION in method_cls.tasks else "synthetic-ivif")
    prep = prepare(BenchSpec(method=args.method, dataset=dataset, root=args.root, preset=args.preset,
                             device=args.device, progress=False, leaderboard_dir=None,
                             out=args.out.parent if args.out is not None else Path("."),
                             overrides=dict(args.overrides), config=args.config))
    datamodule = build_datamodule(prep, 0)
    model = build_method(prep, datamodule)
    sample = datamodule.dataset("test")[0]
    if prep.task is Task.CLASSIFICATION:
        result = profile_classifier(model, collate_samples([sample]), prep.device)
    else:
        a, b = datamodule.modalities
        result = profile_fusion(model, (sample[a].shape[0], sample[b].shape[0]), args.height, args.width,
                                prep.device)
    result = {"method": args.method, "dataset": dataset, "preset": args.preset, "device": str(prep.device),
              "overrides": prep.overrides, **result}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


def _cmd_leaderboard(args: argparse.Namespace) -> int:
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


def _cmd_report(args: argparse.Namespace) -> int:
    from fusion_bench.report.build import build_report

    report = build_report(args.dataset, preset=args.preset, methods=args.methods, runs_dir=args.runs,
                          leaderboard_dir=args.leaderboard_dir, out=args.out, images=args.images,
                          n_images=args.n_images, metric=args.metric, cost=args.cost, zoom=args.zoom, root=args.root,
                          dataset_options=dict(args.dataset_options), alpha=args.alpha)
    for kind, text in report.notes:
        print(f"{'warning' if kind == 'warn' else 'note'}: {text}", file=sys.stderr)
    print(f"report of {args.dataset}: {len(report.entries)} entries, {len(report.images)} images in the grid -> "
          f"{report.index_html} (open it in a browser; {report.seconds:.1f} s)")
    return 0


def _cmd_regress(args: argparse.Namespace) -> int:
    from fusion_bench import numerics
    from fusion_bench.benchmark.protocol import SUITE_DIR, load_suite
    from fusion_bench.benchmark.regress import environment_report, regress
    from fusion_bench.benchmark.runner import BenchError

    try:  # the suite and its expected numbers are checked before anything runs
        suite, _ = load_suite(args.suite)
    except ValueError as err:
        raise BenchError(f"--suite: {err}") from err
    expected = SUITE_DIR / suite.get("expected", f"{args.suite}.expected.csv")
    if not args.update and not expected.is_file():
        raise BenchError(f"suite {args.suite}: the expected numbers {expected} do not exist; create them with "
                         f"`fusion-bench regress --suite {args.suite} --update`")
    if args.out is not None:
        _empty_dir(args.out)
    if not numerics.is_pinned():
        print("note: the numerics are not pinned (FUSION_BENCH_NUMERICS is not 'pinned', or this CPU cannot pin): "
              "trained methods' numbers may differ from the expected ones", file=sys.stderr)
    drifts = regress(args.suite, update=args.update, out=args.out, progress=args.progress)
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


def _cmd_grid(args: argparse.Namespace) -> int:
    from fusion_bench.benchmark.grid import collect, plan_grid, read_grid_file, run_local, submit_slurm
    from fusion_bench.benchmark.runner import BenchError, BenchSpec

    grid = read_grid_file(args.grid) if args.grid is not None else {}
    methods = args.methods if args.methods is not None else grid.get("methods")
    datasets = args.datasets if args.datasets is not None else grid.get("datasets")
    if not methods or not datasets:
        raise BenchError("grid: give --methods and --datasets (or a --grid file with methods and datasets)")
    overrides = {**(grid.get("set") or {}), **dict(args.overrides)}
    config = args.config if args.config is not None else grid.get("config")
    if config is not None and args.config is None and args.grid is not None:
        config = (args.grid.parent / config) if not Path(config).is_absolute() else Path(config)
    base = BenchSpec(method="", dataset="", root=args.root if args.root is not None else grid.get("root"),
                     preset=args.preset or grid.get("preset") or "smoke", out=args.out,
                     leaderboard_dir=args.leaderboard_dir, device=args.device or grid.get("device") or "auto",
                     num_workers=args.num_workers, progress=False, logger=args.logger,
                     dataset_options={**(grid.get("dataset_args") or {}), **dict(args.dataset_options)},
                     overrides=overrides, config=config,
                     downstream=args.downstream if args.downstream is not None else grid.get("downstream"),
                     resume=args.resume, downstream_numerics=args.downstream_numerics)
    seeds = args.seeds if args.seeds is not None else grid.get("seeds")
    plan = plan_grid(_csv_list(",".join(methods)), _csv_list(",".join(datasets)), seeds, base)
    print(f"grid: {len(plan.jobs)} job(s) to run, {len(plan.skipped)} already done (rows in "
          f"{args.leaderboard_dir / 'raw'} or complete run directories)", file=sys.stderr)
    collect_line = f"fusion-bench leaderboard --collect {args.out} --leaderboard-dir {args.leaderboard_dir}"
    if args.launcher == "commands":
        for job in plan.jobs:
            print(job.shell())
        if plan.jobs:
            print(f"# when every job is done: {collect_line}")
        return 0
    if not plan.jobs:
        return 0
    if args.launcher == "local":
        failures = run_local(plan, args.jobs, args.out / "grid-logs")
    else:
        from fusion_bench.benchmark.runner import read_config_file

        effective = {**(read_config_file(config) if config is not None else {}), **overrides}
        devices = effective.get("train.devices", 1)  # one process per device of a multi-device fit
        tasks = args.tasks_per_node or (len(devices) if isinstance(devices, (list, tuple)) else
                                        devices if isinstance(devices, int) and devices > 0 else 1)
        jobs = submit_slurm(plan, args.out / "grid-logs" / "submitit", args.submitit_cluster, {
            "partition": args.partition, "gpus_per_node": args.gpus_per_node, "tasks_per_node": tasks,
            "cpus_per_task": args.cpus_per_task, "timeout_min": args.timeout_min, "mem_gb": args.mem_gb,
            "array_parallelism": args.array_parallelism, "nodes": args.nodes})
        for job, submitted in zip(plan.jobs, jobs):
            print(f"submitted {job.label}: job {submitted.job_id}")
        if not args.wait:
            print(f"when the jobs are done: {collect_line}")
            return 0
        failures = []
        for job, submitted in zip(plan.jobs, jobs):
            error = submitted.exception()
            if error is not None:
                failures.append(f"{job.label}: job {submitted.job_id} failed: {str(error).splitlines()[-1]}")
    added = collect(args.out, args.leaderboard_dir)
    print(f"collected {sum(added.values())} new row(s) into {args.leaderboard_dir / 'raw'}")
    if failures:
        print(f"{len(failures)} job(s) failed:\n" + "\n".join(f"  {f}" for f in failures), file=sys.stderr)
        return 1
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from fusion_bench.registry import names, plugins

    for kind in ("method", "dataset", "evaluator"):
        print(f"{kind}s: {', '.join(names(kind)) or '-'}")
    for kind in ("method", "dataset"):
        for name, (target, dist) in plugins(kind).items():
            print(f"  plug-in {kind} {name}: {target} (package {dist})")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
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
        if not hasattr(dataset_cls, "make_fake"):
            print(f"error: dataset {args.name} has no fake generator", file=sys.stderr)
            return 2
        _empty_dir(args.out)  # never mixed into an existing dataset
        root = dataset_cls.make_fake(args.out, seed=args.seed)
        print(f"wrote a fake {args.name} tree to {root}")
        return 0
    if not hasattr(dataset_cls, "prepare"):
        print(f"error: dataset {args.name} needs no preparation", file=sys.stderr)
        return 2
    root = dataset_cls.prepare(datamodule_cls.resolve_root(args.root))
    print(f"prepared {args.name} -> {root}")
    return 0


COMMANDS = {"bench": _cmd_bench, "train": _cmd_train, "fuse": _cmd_fuse, "metrics": _cmd_metrics,
            "downstream": _cmd_downstream,
            "profile": _cmd_profile, "leaderboard": _cmd_leaderboard, "report": _cmd_report, "regress": _cmd_regress,
            "list": _cmd_list, "grid": _cmd_grid,
            "data": _cmd_data}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for request/input errors, 1 for drift or an unclean check)."""
    from fusion_bench.benchmark.results import ResultsFileError
    from fusion_bench.benchmark.runner import BenchError
    from fusion_bench.data.base import DatasetError
    from fusion_bench.data.io import ImageReadError
    from fusion_bench.registry import UnknownNameError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code or 0)
    from fusion_bench import numerics

    try:
        numerics.apply_runtime()  # oneDNN/NNPACK off and one thread when the numerics are pinned
    except ValueError as err:  # a bad FUSION_BENCH_NUMERICS value
        print(f"error: {err}", file=sys.stderr)
        return 2
    from fusion_bench.benchmark.protocol import ProtocolError
    from fusion_bench.evaluators.common import DownstreamError

    expected_errors: tuple[type[BaseException], ...] = (BenchError, DatasetError, ImageReadError, UnknownNameError,
                                                        ResultsFileError, FileNotFoundError, DownstreamError,
                                                        ProtocolError)
    try:
        from fusion_bench.metrics import MetricsInputError

        expected_errors += (MetricsInputError,)
    except ImportError:
        pass
    try:
        return COMMANDS[args.command](args)
    except expected_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed seeds are in the raw CSV; the current seed left no row", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
