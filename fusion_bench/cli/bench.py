"""`fusion-bench bench`: train, fuse, score and append leaderboard rows for every method x dataset (or one model
trained on a mixture of the datasets), then print the leaderboards, notes and where the time went. With `--weights`
the authors' released weights are scored instead of training (preset released); `--method published:NAME
--fused-dir DIR` scores the fused images an author published (preset published)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fusion_bench.cli.args import (
    DOWNSTREAM_NUMERICS_HELP,
    add_run_arguments,
    csv_list,
    parse_seeds,
    positive_int,
)
from fusion_bench.numerics import DOWNSTREAM_MODES as DOWNSTREAM_NUMERICS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="train, fuse, score and append leaderboard rows")
    add_run_arguments(p, many=True, released=True)
    p.add_argument("--weights", default=None, metavar="FILE|zoo|zoo:NAME",
                   help="score the authors' released weights instead of training: their file in its own format "
                        "(read with torch.load(weights_only=True) or safetensors, converted by the method's "
                        "converter), "
                        "or the catalogue's entry (benchmarks/zoo.yaml; downloaded into the cache with a hash check "
                        "unless FUSION_BENCH_OFFLINE=1); rows of preset released, the file's sha256 in weights_sha256")
    p.add_argument("--fused-dir", type=Path, default=None, metavar="DIR",
                   help="with --method published:NAME: the published fused images of the test split, paired by "
                        "stem (see --fused-pattern); rows of preset published")
    p.add_argument("--train-fused-dir", type=Path, default=None, metavar="DIR",
                   help="with published:NAME: the method's fused training (and val) images, for the downstream "
                        "evaluators (without it the downstream columns stay empty)")
    p.add_argument("--fused-pattern", default=None, metavar="PATTERN",
                   help="with published:NAME: how the fused files are named, {stem} standing for the sample name and * "
                        "for anything, e.g. '{stem}_fused.png' (default: the file stem is the sample name)")
    p.add_argument("--allow-subset", action="store_true",
                   help="with published:NAME: score the test images that have a fused image (the row records that "
                        "subset's split hash and n_images) instead of refusing a folder that lacks some")
    p.add_argument("--source", default=None, metavar="TEXT",
                   help="where the published images or released weights come from (the row's source column; "
                        "default: the folder, the catalogue entry or the file name)")
    p.add_argument("--seeds", type=parse_seeds, default=None,
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
    p.add_argument("--protocol", default=None, metavar="NAME|FILE",
                   help="a protocol variant instead of the standard clean protocol: robust (image fusion: the test "
                        "inputs corrupted at 5 severities, scored against the clean sources; rows in "
                        "<leaderboard-dir>/robust/raw/<dataset>.csv; README 'Robustness protocol') or balance "
                        "(audio-visual datasets: one shared training recipe for every method, linear probes of the "
                        "encoders, 5 seeds by default; README 'The balance protocol'); or a YAML protocol file merged "
                        "over the dataset's benchmarks/protocols/<dataset>.yaml (metrics, downstream, presets' seeds "
                        "and evaluator settings, variants, robust corruptions; `variant: robust|balance` picks a "
                        "variant; README 'Your own protocol file')")
    p.add_argument("--corruptions", default=None, metavar="LIST",
                   help="with --protocol robust: NAME or NAME:a|b|both, comma-separated (default: the protocol's "
                        "list, benchmarks/protocols/robust.yaml); none = the clean row alone")
    p.add_argument("--train-dataset", default=None, metavar="NAME",
                   help="with --protocol robust: train on this dataset and score on --dataset (cross-dataset shift; "
                        "rows carry train_dataset); the two must have the same modalities and channels")
    p.add_argument("--train-root", default=None, metavar="DIR", help="the root of --train-dataset")
    p.add_argument("--print-config", action="store_true",
                   help="print the fully resolved configuration of every run (method preset + protocol + overrides, "
                        "YAML: what each run directory keeps as config.yaml, whose sha256 is the config hash) and "
                        "exit without running anything")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="run up to N (method, dataset, seed) runs at a time, each in its own `fusion-bench bench` "
                        "process (logs: <out>/bench-logs/); the same numbers as one at a time (make bench: 2)")


def check_names(methods: list[str], datasets: list[str]) -> None:
    """Every --method and --dataset names something (`published:NAME` aside), checked before the library (and
    torch) is imported: a mistyped name is an exit 2 in a fraction of a second."""
    from fusion_bench.errors import BenchError
    from fusion_bench.registry import check_name

    for option, kind, names in (("--method", "method", methods), ("--dataset", "dataset", datasets)):
        if not names:
            raise BenchError(f"{option} names nothing; see `fusion-bench list`")
        for name in names:
            if kind == "method" and name.startswith("published:"):
                continue
            check_name(kind, name)


def run(args: argparse.Namespace) -> int:
    methods, datasets = csv_list(args.method), csv_list(args.dataset)
    check_names(methods, datasets)
    from fusion_bench.benchmark.protocol import protocol_option

    args.protocol, args.protocol_file = protocol_option(args.protocol)  # a file is checked here, before torch loads
    from fusion_bench.benchmark.distributed import is_rank_zero
    from fusion_bench.benchmark.leaderboard import leaderboard_text
    from fusion_bench.benchmark.protocol import BASELINE_METHODS
    from fusion_bench.benchmark.request import bench_preset, default_seeds, prepare
    from fusion_bench.benchmark.runner import run_bench
    from fusion_bench.benchmark.timing import format_timings
    from fusion_bench.errors import BenchError

    # source_a/source_b first: the other methods then reuse their downstream rows instead of recomputing them
    methods = sorted(methods, key=lambda m: m not in BASELINE_METHODS)
    published_options = [o for o, v in (("--fused-dir", args.fused_dir), ("--train-fused-dir", args.train_fused_dir),
                                        ("--fused-pattern", args.fused_pattern), ("--allow-subset", args.allow_subset))
                         if v not in (None, False)]
    args.preset = bench_preset(args.preset, methods, datasets, args.weights, published_options, args.mixture)
    robust_options = [o for o, v in (("--corruptions", args.corruptions), ("--train-dataset", args.train_dataset),
                                     ("--train-root", args.train_root)) if v is not None]
    if robust_options and args.protocol != "robust":
        raise BenchError(f"{robust_options[0]} goes with --protocol robust (cross-dataset rows are robust rows; "
                         "--corruptions none writes the clean row alone)")
    if args.protocol == "robust":
        return _bench_robust(args, methods, datasets)
    scored_only = args.preset in ("released", "published")  # nothing trains: --jobs does not apply
    if args.mixture:
        if args.protocol is not None or args.protocol_file is not None:
            raise BenchError("--protocol does not apply to --mixture (one model trained on several datasets)")
        if args.jobs > 1:
            raise BenchError("--jobs does not apply to --mixture (one model is trained on all the datasets)")
        return _bench_mixture(args, methods, datasets)
    leaderboard_dir = None if args.no_leaderboard else args.leaderboard_dir
    specs = [_spec(args, m, d, args.seeds if args.seeds is not None else
                   default_seeds(d, args.preset, args.downstream, args.train_fused_dir is not None, args.protocol,
                                 args.protocol_file),
                   leaderboard_dir) for d in datasets for m in methods]
    prepared = [prepare(spec) for spec in specs]  # validate the whole grid before running any of it
    if args.print_config:
        print_configs([(prep.spec.method, prep.spec.dataset, prep.spec.preset, prep.config_hash, prep.config_text)
                       for prep in prepared])
        return 0
    timings: list[dict] = []
    notes = [note for prep in prepared for note in prep.notes]
    if args.jobs > 1 and not scored_only:
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
        print(f"{prep.spec.method} on {spec.dataset} ({spec.preset}): {len(rows)} row(s) -> {where}; outputs under "
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


def _spec(args: argparse.Namespace, method: str, dataset: str, seeds: list[int], leaderboard_dir: Path | None):
    """The BenchSpec of one method and dataset of the command line."""
    from fusion_bench.benchmark.spec import BenchSpec, PublishedSpec

    published = None if args.fused_dir is None else PublishedSpec(args.fused_dir, args.train_fused_dir,
                                                                  args.fused_pattern, args.allow_subset)
    return BenchSpec(method=method, dataset=dataset, root=args.root, preset=args.preset, seeds=seeds, out=args.out,
                     leaderboard_dir=leaderboard_dir, device=args.device, num_workers=args.num_workers,
                     progress=not args.no_progress, logger=args.logger, dataset_options=dict(args.dataset_options),
                     overrides=dict(args.overrides), config=args.config, downstream=args.downstream,
                     resume=args.resume, downstream_baselines=not args.no_downstream_baselines,
                     downstream_numerics=args.downstream_numerics, weights=args.weights, published=published,
                     source=args.source, protocol_variant=args.protocol,
                     protocol_file=args.protocol_file)


def _bench_mixture(args: argparse.Namespace, methods: list[str], datasets: list[str]) -> int:
    """`--mixture`: validate every (method, mixture) first, then run them."""
    from fusion_bench.benchmark.distributed import is_rank_zero
    from fusion_bench.benchmark.leaderboard import leaderboard_text
    from fusion_bench.benchmark.mixture import prepare_mixture
    from fusion_bench.benchmark.protocol import protocol_seeds
    from fusion_bench.benchmark.runner import run_mixture

    if args.seeds is not None:
        seeds = list(args.seeds)
    else:  # every dataset gets at least its protocol's seeds
        seeds = sorted({s for d in datasets for s in protocol_seeds(d, args.preset)})
    plans = [prepare_mixture(_spec(args, method, datasets[0], seeds, args.leaderboard_dir), datasets)
             for method in methods]
    if args.print_config:
        print_configs([(plan.train.spec.method, plan.train.spec.dataset, plan.train.spec.preset,
                        plan.train.config_hash, plan.train.config_text) for plan in plans])
        return 0
    for plan in plans:
        rows = run_mixture(plan)
        if not is_rank_zero():
            continue
        print(f"{plan.train.spec.method} trained on {plan.label} ({args.preset}): {len(rows)} row(s) in "
              f"{', '.join(str(args.leaderboard_dir / 'raw' / (d + '.csv')) for d in datasets)}; outputs under "
              f"{plan.run_dir(seeds[0]).parent}")
    if not is_rank_zero():
        return 0
    for dataset in datasets:
        print(f"\n## {dataset} ({args.preset})\n")
        print(leaderboard_text(args.leaderboard_dir, dataset, args.preset))
    return 0


def _bench_robust(args: argparse.Namespace, methods: list[str], datasets: list[str]) -> int:
    """`--protocol robust`: check every (method, dataset) first, then run them; print the mCE tables."""
    from fusion_bench.benchmark.request import default_seeds
    from fusion_bench.benchmark.robust import prepare_robust, robust_raw_path, run_robust
    from fusion_bench.benchmark.robust_table import dataset_tables, mce_markdown
    from fusion_bench.errors import BenchError

    for option, value in (("--mixture", args.mixture), ("--jobs", args.jobs > 1), ("--resume", args.resume),
                          ("--no-leaderboard", args.no_leaderboard)):
        if value:
            raise BenchError(f"{option} does not apply to --protocol robust")
    plans = [prepare_robust(_spec(args, m, d, args.seeds if args.seeds is not None else
                                  default_seeds(d, args.preset, variant="robust", protocol_file=args.protocol_file),
                                  args.leaderboard_dir), args.train_dataset, args.corruptions, args.train_root)
             for d in datasets for m in methods]
    if args.print_config:
        print_configs([(plan.run.spec.method, plan.run.spec.dataset, plan.run.spec.preset, plan.config_hash,
                        plan.config_text) for plan in plans])
        return 0
    for plan in plans:
        rows = run_robust(plan)
        print(f"{plan.run.spec.method} on {plan.run.spec.dataset}"
              + (f" (trained on {plan.train_dataset})" if plan.train_dataset else "")
              + f" ({args.preset}, robust): {len(rows)} row(s) -> "
              f"{robust_raw_path(args.leaderboard_dir, plan.run.spec.dataset)}; outputs under "
              f"{plan.run_dir(plan.run.spec.seeds[0]).parent}")
    for dataset in datasets:
        _, mce, settings = dataset_tables(args.leaderboard_dir, dataset)
        print(f"\n## {dataset} (robust; mCE of {settings.mce_metric} against {settings.baseline})\n")
        print(mce_markdown(mce, settings.mce_metric))
        if not args.no_report and os.environ.get("FUSION_BENCH_REPORT", "1").lower() not in ("0", "no", "off", "none"):
            from fusion_bench.report.robust import build_robust_page

            try:
                page = build_robust_page(dataset, args.leaderboard_dir, args.preset,
                                         args.out / "reports" / f"{dataset}-{args.preset}-robust")
            except Exception as err:  # noqa: BLE001 - the rows are written; the page is a convenience
                print(f"warning: robustness page for {dataset} not written: {err}", file=sys.stderr)
            else:
                print(f"report: {page} (degradation curves, mCE table; --no-report skips it)")
    return 0


def print_configs(configs: list[tuple[str, str, str, str, str]]) -> None:
    """`--print-config`: each run's resolved configuration as one YAML document, headed by a comment naming the
    method, dataset, preset and config hash (the run directory's name)."""
    for i, (method, dataset, preset, digest, text) in enumerate(configs):
        if i:
            print("---")
        print(f"# {method} on {dataset} ({preset}): config hash {digest}")
        print(text, end="")


def _nan_notes(rows: list[dict]) -> list[str]:
    return [f"note: {r['method']} seed {r['seed']}: {r['n_nan']} per-image metric value(s) are NaN (undefined, "
            f"e.g. on a constant image) and left out of the means over {r['n_images']} images: "
            f"{r['nan_metrics']} (metric:images)" for r in rows if r.get("n_nan") not in (None, "", 0, "0")]


def _bench_jobs(args: argparse.Namespace, specs: list, timings: list[dict], notes: list[str]) -> int:
    """`--jobs N`: the runs of a sequential `bench` (every requested method and seed, plus the missing downstream
    baselines) as `fusion-bench bench` processes, N at a time (fusion_bench.benchmark.grid); each appends its row to
    the raw CSV under its file lock. Fills `timings` and `notes` from the runs' directories."""
    from dataclasses import replace

    from fusion_bench.benchmark.grid import job_results, plan_grid, run_local
    from fusion_bench.benchmark.leaderboard import regenerate

    base = replace(specs[0], method="", dataset="", seeds=())
    plan = plan_grid(list(dict.fromkeys(s.method for s in specs)), list(dict.fromkeys(s.dataset for s in specs)),
                     args.seeds, base, rerun=True)
    log_dir = args.out / "bench-logs"
    print(f"bench: {len(plan.jobs)} run(s), {args.jobs} at a time (logs: {log_dir})", flush=True)
    failures = run_local(plan, args.jobs, log_dir)
    if failures:
        print("\n".join(["error: some runs failed:", *failures]), file=sys.stderr)
        return 1
    job_timings, rows = job_results(plan)
    timings += job_timings
    notes += _nan_notes(rows)
    if args.leaderboard_dir is not None and not args.no_leaderboard:
        regenerate(args.leaderboard_dir)  # after every run's rows are in (the runs regenerate it as they finish)
    return 0


def _bench_reports(args: argparse.Namespace, datasets: list[str]) -> None:
    """Regenerate each dataset's report after `bench` and print its path; a failure is a warning, not an error."""
    from fusion_bench.report.build import build_report

    for dataset in datasets:
        try:
            report = build_report(dataset, preset=args.preset, runs=args.out,
                                  leaderboard_dir=args.leaderboard_dir, root=args.root,
                                  dataset_options=dict(args.dataset_options))
        except Exception as err:  # noqa: BLE001 - the rows are written; the report is a convenience
            print(f"warning: report for {dataset} not regenerated: {err}", file=sys.stderr)
            continue
        print(f"report: {report.index_html} ({report.seconds:.1f} s; --no-report skips it)")
