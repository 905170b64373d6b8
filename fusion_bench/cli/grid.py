"""`fusion-bench grid`: a resumable method x dataset x seed grid of bench jobs on a local pool, SLURM (submitit) or
as printed commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusion_bench.benchmark.protocol import METHOD_PRESETS
from fusion_bench.cli.args import (
    add_dataset_options,
    add_override_arguments,
    csv_list,
    non_negative_int,
    parse_seeds,
    parse_sweep,
    positive_int,
)
from fusion_bench.numerics import DOWNSTREAM_MODES as DOWNSTREAM_NUMERICS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="a resumable method x dataset x seed grid of bench jobs (local pool, SLURM "
                                    "through submitit, or printed commands)")
    p.add_argument("--grid", type=Path, default=None, metavar="FILE.yaml",
                   help="methods, datasets, seeds, preset, set, config, downstream, root, dataset_args, device from a "
                        "YAML file (options given on the command line win)")
    p.add_argument("--methods", type=csv_list, default=None, help="comma-separated methods")
    p.add_argument("--datasets", type=csv_list, default=None, help="comma-separated datasets")
    p.add_argument("--seeds", type=parse_seeds, default=None,
                   help="comma-separated seeds (default: each dataset protocol's seeds for the preset, else 0)")
    p.add_argument("--preset", default=None, choices=METHOD_PRESETS, help="default smoke")
    p.add_argument("--root", default=None, help="dataset root (as for bench)")
    p.add_argument("--device", default=None, help="each job's --device (default auto)")
    p.add_argument("--num-workers", type=non_negative_int, default=0, help="each job's DataLoader workers")
    p.add_argument("--logger", default="csv", choices=("csv", "tensorboard", "wandb"))
    p.add_argument("--downstream", default=None, metavar="LIST", help="as for bench")
    p.add_argument("--downstream-numerics", choices=DOWNSTREAM_NUMERICS, default=None,
                   help="each job's --downstream-numerics (default: bench's)")
    p.add_argument("--resume", action="store_true", help="jobs continue interrupted seeds from their checkpoints")
    add_override_arguments(p)
    p.add_argument("--sweep", type=parse_sweep, action="append", default=[], metavar="SECTION.KEY=v1,v2,...",
                   help="a hyper-parameter sweep, repeatable: every point of the cartesian product of the values "
                        "(e.g. --sweep optim.lr=1e-3,1e-4 --sweep model.width=8,16: 4 points) is set over --set, "
                        "and each point is its own leaderboard entry with its own config hash")
    add_dataset_options(p)
    p.add_argument("--out", type=Path, default=Path("runs"), help="run outputs of every job (bench --out)")
    p.add_argument("--leaderboard-dir", type=Path, default=Path("leaderboards"),
                   help="raw leaderboard: jobs whose rows are here are skipped; local (and slurm --wait) merge the "
                        "new rows into it")
    p.add_argument("--launcher", required=True, choices=("local", "slurm", "commands"),
                   help="local: a pool of --jobs processes here; slurm: a submitit job array; commands: print one "
                        "shell line per job")
    p.add_argument("--jobs", type=positive_int, default=1, help="local: jobs at a time")
    p.add_argument("--partition", default=None, help="slurm: partition")
    p.add_argument("--gpus-per-node", type=non_negative_int, default=0, help="slurm: GPUs per job")
    p.add_argument("--tasks-per-node", type=positive_int, default=None,
                   help="slurm: tasks per node (default: train.devices, one process per device; else 1)")
    p.add_argument("--nodes", type=positive_int, default=1, help="slurm: nodes per job (train.num_nodes)")
    p.add_argument("--cpus-per-task", type=positive_int, default=4, help="slurm: CPUs per task")
    p.add_argument("--time", dest="timeout_min", type=positive_int, default=240, help="slurm: minutes per job")
    p.add_argument("--mem-gb", type=positive_int, default=None, help="slurm: memory per job (GB)")
    p.add_argument("--array-parallelism", type=positive_int, default=None, help="slurm: jobs of the array at a time")
    p.add_argument("--submitit-cluster", default=None, choices=("slurm", "local", "debug"),
                   help="slurm: submitit's executor (default: SLURM when available; local/debug run here)")
    p.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then merge their rows")


def run(args: argparse.Namespace) -> int:
    from fusion_bench.errors import BenchError

    if args.grid is None and (not args.methods or not args.datasets):  # before the library (and torch) is imported
        raise BenchError("grid: give --methods and --datasets (or a --grid file with methods and datasets)")
    swept = [key for key, _ in args.sweep]
    if len(set(swept)) != len(swept):
        raise BenchError(f"--sweep {next(k for k in swept if swept.count(k) > 1)}: given twice; list its values once")
    if args.grid is None:
        from fusion_bench.cli.bench import check_names

        check_names(args.methods, args.datasets)
    from fusion_bench.benchmark.grid import (
        collect,
        plan_grid,
        read_grid_file,
        run_local,
        slurm_tasks_per_node,
        submit_slurm,
    )
    from fusion_bench.benchmark.spec import BenchSpec

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
    sweep = {**(grid.get("sweep") or {}), **dict(args.sweep)}
    plan = plan_grid(csv_list(",".join(methods)), csv_list(",".join(datasets)), seeds, base, sweep=sweep)
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
        tasks = args.tasks_per_node or slurm_tasks_per_node(config, overrides)
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
