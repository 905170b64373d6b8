"""`fusion-bench grid`: a resumable method x dataset x seed grid of `fusion-bench bench` jobs on an existing scheduler.

Planning (`plan_grid`) prepares every (method, dataset) request first, so a bad name, preset, override or dataset is a
request error before anything is submitted. One job = one method, one dataset, one seed: a `fusion-bench bench ...
--seeds K --no-leaderboard` subprocess (pinned numerics and a clean process per job), which writes its row to its own
run directory (`row.csv`), never to the shared raw CSVs. A job is skipped when its row is already in the raw leaderboard
(same method, preset, config hash, test split and seed) or its run directory is complete, so re-running the same grid
command resumes it. A `--sweep KEY=v1,v2,...` (or a grid file's `sweep:`) multiplies the grid by the cartesian product
of the swept values (`sweep_points`): each point is set over the overrides, so it is its own leaderboard entry with its
own config hash. With downstream evaluators, the IR/visible baselines (source_a, source_b) are jobs of their own, once
per dataset, preset and seed (not once per method).

Launchers: `local` (a pool of `--jobs` subprocesses on this machine, then the rows are collected), `slurm` (a submitit
job array; `--submitit-cluster local|debug` runs the same code path on this machine), `commands` (one shell line per
job, for any other scheduler). Rows are merged with `fusion-bench leaderboard --collect RUNS_DIR` (no file locks,
idempotent); `local` and `slurm --wait` do that themselves.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fusion_bench.benchmark.config import read_config_file
from fusion_bench.benchmark.jobs import run_job
from fusion_bench.benchmark.protocol import BASELINE_METHODS, load_yaml, protocol_seeds
from fusion_bench.benchmark.request import prepare
from fusion_bench.benchmark.results import collect_rows, read_rows
from fusion_bench.benchmark.runner import baseline_spec
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.errors import BenchError

LAUNCHERS = ("local", "slurm", "commands")
GRID_KEYS = ("methods", "datasets", "seeds", "preset", "set", "sweep", "config", "downstream", "root", "dataset_args",
             "device")


@dataclass
class Job:
    """One `fusion-bench bench` run of the grid: its CLI arguments (after `fusion-bench`) and its run directory."""

    method: str
    dataset: str
    seed: int
    argv: list[str]
    run_dir: Path
    point: int = 0  # the index of the job's point in the --sweep grid (0 without --sweep)
    tag: str = ""  # the config hash for a job of a --sweep point: its label (and log file) names it

    @property
    def label(self) -> str:
        return f"{self.method}-{self.dataset}{'-' + self.tag if self.tag else ''}-seed{self.seed}"

    def command(self) -> list[str]:
        """The job as a process command line (this Python, `-m fusion_bench`)."""
        return [sys.executable, "-m", "fusion_bench", *self.argv]

    def shell(self) -> str:
        return shlex.join(["fusion-bench", *self.argv])


@dataclass
class GridPlan:
    jobs: list[Job] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # labels of jobs whose rows exist


def read_grid_file(path: str | Path) -> dict[str, Any]:
    """A grid YAML file: methods, datasets, seeds (lists or comma-separated), preset, set ({dotted key: value}),
    config (a preset file), downstream, root, dataset_args ({key: value}), device."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--grid {path}: no such file")
    try:
        loaded = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise BenchError(f"--grid {path}: not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(loaded, dict) or set(loaded) - set(GRID_KEYS):
        extra = sorted(set(loaded) - set(GRID_KEYS)) if isinstance(loaded, dict) else type(loaded).__name__
        raise BenchError(f"--grid {path}: expected a mapping with keys among {', '.join(GRID_KEYS)}, got {extra}")
    out = dict(loaded)
    for key in ("methods", "datasets", "seeds"):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, int):
            out[key] = [value]
    if out.get("seeds") is not None:
        seeds = out["seeds"]
        try:
            out["seeds"] = [int(s) for s in seeds]
        except (TypeError, ValueError) as err:
            raise BenchError(f"--grid {path}: seeds must be integers, got {seeds!r}") from err
    for key in ("set", "dataset_args", "sweep"):
        if out.get(key) is not None and not isinstance(out[key], dict):
            raise BenchError(f"--grid {path}: {key} must be a mapping (key: value)")
    for key, values in (out.get("sweep") or {}).items():
        if not isinstance(values, list) or not values:
            raise BenchError(f"--grid {path}: sweep.{key} must be a non-empty list of values")
    return out


def sweep_points(sweep: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """`--sweep KEY=v1,v2 ...`: the cartesian product of the swept keys' values, one override mapping per point
    (the keys in the order given, the last varying fastest); [{}] without a sweep."""
    import itertools

    if not sweep:
        return [{}]
    keys = list(sweep)
    for key, values in sweep.items():
        if len(set(map(json.dumps, values))) != len(values):
            raise BenchError(f"--sweep {key}: a value is listed twice ({values})")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]


def _yaml_value(value: Any) -> str:
    """A --set / --dataset-arg value that the job's YAML parser reads back as `value` (JSON is YAML)."""
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else json.dumps(value)


def _done(leaderboard_dir: Path | None, prep: Any, seed: int, cache: dict[str, list[dict[str, str]]]) -> bool:
    """The row of (prep, seed) is in the raw leaderboard, or its run directory is complete."""
    if (prep.run_dir(seed) / "row.csv").is_file():
        return True
    if leaderboard_dir is None:
        return False
    dataset = prep.spec.dataset
    if dataset not in cache:
        cache[dataset] = read_rows(Path(leaderboard_dir) / "raw" / f"{dataset}.csv")
    return any(r.get("method") == prep.spec.method and r.get("preset") == prep.spec.preset
               and r.get("config_hash") == prep.config_hash and r.get("split_hash") == prep.split_hash
               and r.get("seed") == str(seed) for r in cache[dataset])


def _job_argv(spec: BenchSpec, prep: Any, seed: int, baselines: bool, to_leaderboard: bool = False) -> list[str]:
    """The job's `fusion-bench bench` arguments. `to_leaderboard`: the job appends its row to the raw CSV itself
    (under its file lock, as a sequential `bench` does) instead of leaving it in its run directory for `collect`."""
    argv = ["bench", "--method", spec.method, "--dataset", spec.dataset, "--preset", spec.preset,
            "--seeds", str(seed), "--out", str(Path(spec.out).resolve()), "--no-report",
            "--no-progress", "--device", str(spec.device), "--num-workers", str(spec.num_workers),
            "--logger", spec.logger, "--downstream", ",".join(prep.evaluators) or "none"]
    if not to_leaderboard or spec.leaderboard_dir is None:
        argv.append("--no-leaderboard")
    if spec.leaderboard_dir is not None:
        argv += ["--leaderboard-dir", str(Path(spec.leaderboard_dir).resolve())]
    if not baselines:
        argv.append("--no-downstream-baselines")
    if spec.root is not None:
        argv += ["--root", str(Path(spec.root).resolve())]
    for key, value in spec.dataset_options.items():
        argv += ["--dataset-arg", f"{key}={_yaml_value(value)}"]
    if prep.overrides:  # the effective overrides (--config merged in): the job needs no file
        argv += ["--set", *(f"{k}={_yaml_value(v)}" for k, v in prep.overrides.items())]
    if spec.resume:
        argv.append("--resume")
    if spec.protocol_file is not None:  # the file names its variant
        argv += ["--protocol", str(Path(spec.protocol_file).resolve())]
    elif spec.protocol_variant is not None:
        argv += ["--protocol", spec.protocol_variant]
    if spec.downstream_numerics is not None:
        argv += ["--downstream-numerics", spec.downstream_numerics]
    return argv


def plan_grid(methods: Sequence[str], datasets: Sequence[str], seeds: Sequence[int] | None, base: BenchSpec,
              rerun: bool = False, sweep: dict[str, list[Any]] | None = None) -> GridPlan:
    """Every job of the grid that has no row yet (see the module docstring). `base` carries everything but method,
    dataset and seeds (preset, overrides, config, out, leaderboard_dir, device, downstream, ...). `seeds` None: each
    dataset's protocol seeds for the preset. `sweep` ({dotted key: [values]}): every point of the cartesian product
    of the values (`sweep_points`) is set over `base.overrides`, so each point is its own leaderboard entry with its
    own config hash.

    `rerun` (`bench --jobs`): what a sequential `bench` would do instead: every requested method runs again and
    appends its row to the raw CSV itself; only the downstream baselines are skipped where their rows exist."""
    if not methods or not datasets:
        raise BenchError("a grid needs at least one method (--methods) and one dataset (--datasets)")
    plan = GridPlan()
    cache: dict[str, list[dict[str, str]]] = {}
    baseline_jobs: set[tuple[str, str, int]] = set()
    points = sweep_points(sweep)
    for index, point in enumerate(points):
        _plan_point(plan, methods, datasets, seeds, replace(base, overrides={**base.overrides, **point}), rerun,
                    cache, baseline_jobs, index if len(points) > 1 else None)
    # a baseline named in --methods and also added for downstream: keep one job
    unique: dict[tuple[str, str, int, int], Job] = {}
    for job in plan.jobs:
        unique.setdefault((job.method, job.dataset, job.seed, job.point), job)
    plan.jobs = list(unique.values())
    return plan


def _plan_point(plan: GridPlan, methods: Sequence[str], datasets: Sequence[str], seeds: Sequence[int] | None,
                base: BenchSpec, rerun: bool, cache: dict[str, list[dict[str, str]]],
                baseline_jobs: set[tuple[str, str, int]], point: int | None) -> None:
    """The jobs of one point of the grid (`point`: its index in a --sweep, else None) added to `plan`."""
    for dataset in datasets:
        dataset_seeds = list(seeds) if seeds is not None else protocol_seeds(dataset, base.preset,
                                                                               base.protocol_variant,
                                                                               base.protocol_file)
        for method in methods:
            spec = replace(base, method=method, dataset=dataset, seeds=dataset_seeds)
            prep = prepare(spec)
            for seed in dataset_seeds:
                job = Job(method, dataset, seed, _job_argv(spec, prep, seed, baselines=False, to_leaderboard=rerun),
                          prep.run_dir(seed), point or 0, prep.config_hash if point is not None else "")
                (plan.skipped.append(job.label) if not rerun and _done(base.leaderboard_dir, prep, seed, cache)
                 else plan.jobs.append(job))
            if not prep.evaluators or method in BASELINE_METHODS or not base.downstream_baselines:
                continue
            for baseline in BASELINE_METHODS:
                if all((baseline, dataset, s) in baseline_jobs for s in dataset_seeds):
                    continue
                bspec = baseline_spec(spec, baseline, list(prep.evaluators))
                bprep = prepare(bspec)
                bprep.datasets = prep.datasets
                for seed in dataset_seeds:
                    if (baseline, dataset, seed) in baseline_jobs:
                        continue
                    baseline_jobs.add((baseline, dataset, seed))
                    job = Job(baseline, dataset, seed, _job_argv(bspec, bprep, seed, baselines=False,
                                                                 to_leaderboard=rerun), bprep.run_dir(seed))
                    (plan.skipped.append(job.label) if _done(base.leaderboard_dir, bprep, seed, cache)
                     else plan.jobs.append(job))


def job_results(plan: GridPlan) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The timings (timings.json) and rows (row.csv) the finished jobs of `plan` left in their run directories."""
    timings, rows = [], []
    for job in plan.jobs:
        path = job.run_dir / "timings.json"
        if path.is_file():
            timings.append(json.loads(path.read_text()))
        rows += read_rows(job.run_dir / "row.csv")
    return timings, rows


def slurm_tasks_per_node(config: str | Path | None, overrides: dict[str, Any]) -> int:
    """One SLURM task per device of a multi-device fit: `train.devices` of the effective overrides (--config, then
    --set): a list's length, a positive int, else 1."""
    effective = {**(read_config_file(config) if config is not None else {}), **overrides}
    devices = effective.get("train.devices", 1)
    return len(devices) if isinstance(devices, (list, tuple)) else devices if isinstance(devices, int) and devices > 0 \
        else 1


def run_local(plan: GridPlan, jobs: int, log_dir: Path) -> list[str]:
    """Run the jobs in a pool of `jobs` worker threads, each driving one `fusion-bench bench` subprocess; returns the
    failures (one line each, with the log file). Prints a line per finished job with the time left (estimated from
    the jobs done so far)."""
    failures: list[str] = []
    total = len(plan.jobs)
    start_all = time.perf_counter()
    finished = []

    def one(index_job: tuple[int, Job]) -> None:
        index, job = index_job
        log = log_dir / f"{job.label}.log"
        start = time.perf_counter()
        try:
            run_job(job.command(), str(log))
        except RuntimeError:
            failures.append(f"{job.label}: failed, see {log}")
            print(f"[{index}/{total}] {job.label}: FAILED ({log})", flush=True)
            return
        finished.append(job.label)
        elapsed = time.perf_counter() - start_all
        left = elapsed / len(finished) * (total - len(finished))  # wall time per finished job, pool included
        print(f"[{len(finished)}/{total} done] {job.label}: {time.perf_counter() - start:.1f} s"
              + (f"; about {left:.0f} s left" if len(finished) < total else ""), flush=True)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, enumerate(plan.jobs, start=1)))
    return failures


def submit_slurm(plan: GridPlan, folder: Path, cluster: str | None, options: dict[str, Any]) -> list[Any]:
    """Submit the jobs as one submitit job array (cluster None: SLURM when available; `local`/`debug`: submitit's
    executors on this machine). `options`: partition, gpus_per_node, tasks_per_node, cpus_per_task, timeout_min,
    mem_gb, array_parallelism, nodes."""
    try:
        import submitit
    except ModuleNotFoundError as err:
        raise BenchError("--launcher slurm needs submitit: pip install 'mmfusion-bench[cluster]'") from err
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {"name": "fusion-bench", "timeout_min": options["timeout_min"],
                              "cpus_per_task": options["cpus_per_task"], "tasks_per_node": options["tasks_per_node"],
                              "nodes": options["nodes"]}
    if options.get("gpus_per_node"):
        params["gpus_per_node"] = options["gpus_per_node"]
    if options.get("mem_gb"):
        params["mem_gb"] = options["mem_gb"]
    if options.get("partition"):
        params["slurm_partition"] = options["partition"]
    if options.get("array_parallelism"):
        params["slurm_array_parallelism"] = options["array_parallelism"]
    executor.update_parameters(**params)
    return executor.map_array(run_job, [job.command() for job in plan.jobs])


def collect(out: Path, leaderboard_dir: Path) -> dict[str, int]:
    """Merge the grid's rows into the raw CSVs and regenerate the leaderboards."""
    from fusion_bench.benchmark.leaderboard import regenerate

    added = collect_rows(out, leaderboard_dir)
    if (Path(leaderboard_dir) / "raw").is_dir() and any((Path(leaderboard_dir) / "raw").glob("*.csv")):
        regenerate(leaderboard_dir)
    return added


__all__ = ["GridPlan", "Job", "LAUNCHERS", "collect", "job_results", "plan_grid", "read_grid_file", "run_job",
           "run_local", "slurm_tasks_per_node", "submit_slurm"]
