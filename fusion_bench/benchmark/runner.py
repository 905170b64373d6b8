"""The story of a run: `run_bench` takes a request through every seed and appends each seed's rows to the raw CSVs.

A run is prepared first (request.prepare: everything that can be wrong with the request is an error before any
work). Then, with its seed directories locked (run_dirs.seed_locks), each seed (`run_seed`):

1. seeds every random generator and starts measuring peak memory;
2. builds its datamodule and method (build.py; a mixture brings the mixture datamodule, mixture.py) in the seed's
   `<run_dir>.partial` folder (kept on an interruption: `--resume` continues from its checkpoint);
3. fits the method when it is trainable (training.fit_method, with the Trainer settings of trainer_settings.py);
4. scores the model into one row per dataset it is scored on (scoring.evaluate_seed: the test split fused, scored
   and classified by evaluation.py, the downstream evaluators, efficiency and provenance; one row for a plain run,
   one per dataset for a mixture);
5. moves the seed's folder into place; its rows go to `<leaderboard_dir>/raw/<dataset>.csv` at once.

With `--resume`, a seed whose directory is complete is not run again (its row.csv files are its rows). With
downstream evaluators, the IR-only and visible-only baselines (source_a, source_b) get the same downstream rows once
per dataset, preset and seed (reused when the raw CSV already has them). Finally the leaderboards are regenerated.
In a multi-process fit (fusion_bench.benchmark.distributed) every process trains; only rank 0 scores and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L

from fusion_bench.benchmark.build import build_datamodule, build_method
from fusion_bench.benchmark.distributed import is_rank_zero
from fusion_bench.benchmark.leaderboard import regenerate
from fusion_bench.benchmark.mixture import PreparedMixture, mixture_setup
from fusion_bench.benchmark.profiling import PeakMemory
from fusion_bench.benchmark.protocol import BASELINE_METHODS
from fusion_bench.benchmark.request import check_protocol_request, prepare, resolve_protocol_argument
from fusion_bench.benchmark.results import append_rows, atomic_write_text, read_rows, row_key
from fusion_bench.benchmark.run_dirs import completed_rows, finish_partial, prepare_partial, seed_locks
from fusion_bench.benchmark.scoring import evaluate_seed
from fusion_bench.benchmark.spec import BenchSpec, PreparedRun, RowTarget, SeedSetup
from fusion_bench.benchmark.timing import PhaseTimer
from fusion_bench.benchmark.training import fit_method
from fusion_bench.errors import BenchError

Plan = PreparedRun | PreparedMixture
"""What runs seed by seed: a prepared run, or one model trained on a mixture and scored on each of its datasets."""


def run_bench(spec: BenchSpec, timings: list[dict[str, Any]] | None = None,
              prep: PreparedRun | None = None) -> list[dict[str, Any]]:
    """Run every seed, appending each row to <leaderboard_dir>/raw/<dataset>.csv as soon as it exists.

    With downstream evaluators, the source_a/source_b baseline rows follow (see `_baseline_rows`); the
    returned list holds the method's rows first, then any baseline rows that were computed. The seeds'
    directories are locked for the whole run (`seed_locks`). `timings` (optional) receives each seed's
    seconds per phase (as in its timings.json), for `format_timings`. `prep`: `prepare(spec)` when the caller has
    it already (its datasets are reused). With `spec.resume`, complete seeds are reused and an interrupted seed
    continues from its last checkpoint. In a multi-process fit, ranks other than 0 train only and return [].

    As on the command line, `spec.method` and `spec.dataset` may name several (comma-separated text or a list):
    every method runs on every dataset, source_a/source_b first (`expand_spec`); the rows of all come back.
    `spec.protocol` is the command line's `--protocol NAME|FILE`; with the robust variant the rows are the
    robustness protocol's (`robust.run_robust`, the protocol's corruption list, in the robust raw CSV).
    """
    specs = [resolve_protocol_argument(s) for s in expand_spec(spec)]
    if any(check_protocol_request(s) == "robust" for s in specs):  # `--protocol robust`: its own rows (robust.py)
        from fusion_bench.benchmark.robust import prepare_robust, run_robust

        if prep is not None:
            raise BenchError("run_bench: `prep` is not taken with protocol robust (prepare_robust checks the request)")
        plans = [prepare_robust(s) for s in specs]  # the whole request is checked before anything runs
        return [row for plan in plans for row in run_robust(plan)]
    if len(specs) > 1:
        if prep is not None:
            raise BenchError("run_bench: `prep` belongs to one method and dataset; leave it out for several")
        preps = [prepare(s) for s in specs]  # the whole request is checked before anything runs
        return [row for p in preps for row in run_plan(p, timings)]
    return run_plan(prep if prep is not None else prepare(specs[0]), timings)


def expand_spec(spec: BenchSpec) -> list[BenchSpec]:
    """A BenchSpec whose method or dataset names several (`"mean,max"` or `["mean", "max"]`, as `bench --method
    mean,max`) as one BenchSpec per dataset and method, the source_a/source_b baselines first."""
    def names(value: Any, option: str) -> list[str]:
        items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
        items = [item.strip() for item in items if item.strip()]
        if not items:
            raise BenchError(f"{option} {value!r} names nothing; see `fusion-bench list`")
        return items

    methods = sorted(names(spec.method, "method"), key=lambda m: m not in BASELINE_METHODS)
    datasets = names(spec.dataset, "dataset")
    if len(methods) == 1 and len(datasets) == 1:
        return [replace(spec, method=methods[0], dataset=datasets[0])]
    return [replace(spec, method=m, dataset=d) for d in datasets for m in methods]


def run_mixture(plan: PreparedMixture, timings: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """`run_bench` for a model trained on a mixture (mixture.prepare_mixture): each dataset's rows go to its raw
    CSV. Returns the method's rows (one per dataset and seed), then any baseline rows."""
    return run_plan(plan, timings)


def run_plan(plan: Plan, timings: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every seed of `plan` (see `run_bench`), then the missing baseline rows, then the leaderboards."""
    spec = training_run(plan).spec
    if not is_rank_zero():
        for seed in spec.seeds:
            if not (spec.resume and completed_rows(plan, seed, [t.folder for t in targets_of(plan)]) is not None):
                run_seed(plan, seed)
        return []
    rows = []
    with seed_locks(plan, spec.seeds):
        for seed in spec.seeds:
            rows += _done_or_run(plan, seed)
    done = [timing for target in targets_of(plan) for timing in target.run.timings]
    for target in targets_of(plan):
        rows += _baseline_rows(target.run.spec, target.run, done)
    if timings is not None:
        timings += done
    if spec.leaderboard_dir is not None:
        regenerate(Path(spec.leaderboard_dir))
    return rows


def run_seed(plan: Plan, seed: int) -> list[dict[str, Any]]:
    """One seed (the caller holds its lock, see `seed_locks`): returns its rows (not yet written), one per
    RowTarget of the plan; the seconds per phase go to each row's timings.json. In a multi-process fit, ranks other
    than 0 only train and return []."""
    lead = is_rank_zero()
    run = training_run(plan)
    timer = PhaseTimer()
    L.seed_everything(seed, workers=True, verbose=False)
    memory = PeakMemory(run.device).start()
    run_dir = plan.run_dir(seed)
    partial = run_dir.with_name(run_dir.name + ".partial")
    if lead:  # left by a killed run (we hold the lock): start over, or continue from its checkpoint with --resume
        prepare_partial(partial, run.spec.resume)
        write_config_files(plan, partial)
    wandb_run = _start_wandb(run, seed, partial) if lead and run.spec.logger == "wandb" else None
    try:
        setup = seed_setup(plan, seed)
        model, train_s = setup.model, 0.0
        if model.trainable and run.trains:  # not for released weights (loaded by build_method) or published images
            logger = _wandb_logger(wandb_run) if wandb_run is not None else None
            with timer("fit"):
                model, train_s = fit_method(run, model, setup.datamodule, partial, run.spec.resume, logger)
        if not lead:
            return []
        rows = []
        for i, (target, datamodule) in enumerate(zip(targets_of(plan), setup.scored)):
            (partial / target.folder).mkdir(exist_ok=True)
            # the first row's timings hold the seed's set-up and fit, so that they count once in a sum over rows
            row = evaluate_seed(target.run, model, datamodule, partial / target.folder, seed, train_s,
                                train_mixture=target.train_mixture, timer=timer if i == 0 else None, memory=memory,
                                wandb_run=wandb_run)
            target.run.timings.append(row.pop("_timings"))
            rows.append(row)
    finally:
        memory.stop()
        if wandb_run is not None:
            wandb_run.finish()
    finish_partial(partial, run_dir)
    return rows


def write_config_files(plan: Plan, seed_dir: Path) -> None:
    """`config.yaml` in a seed's directory: the resolved configuration whose hash names the run (protocol.config_text);
    a mixture's scored datasets get theirs in their own sub-folders."""
    atomic_write_text(seed_dir / "config.yaml", training_run(plan).config_text)
    for target in targets_of(plan):
        if target.folder:
            (seed_dir / target.folder).mkdir(parents=True, exist_ok=True)
            atomic_write_text(seed_dir / target.folder / "config.yaml", target.run.config_text)


def training_run(plan: Plan) -> PreparedRun:
    """The run whose settings train a seed's model (spec, config, device): the run itself, or the mixture's."""
    return plan.train if isinstance(plan, PreparedMixture) else plan


def targets_of(plan: Plan) -> list[RowTarget]:
    """The rows each seed of `plan` writes: the run's own row, or one per dataset of a mixture."""
    return plan.targets if isinstance(plan, PreparedMixture) else [RowTarget(plan)]


def seed_setup(plan: Plan, seed: int) -> SeedSetup:
    """The datamodule and method of one seed, and the datamodule each row scores."""
    if isinstance(plan, PreparedMixture):
        return mixture_setup(plan, seed)
    datamodule = build_datamodule(plan, seed)
    return SeedSetup(datamodule, build_method(plan, datamodule), [datamodule])


def _start_wandb(prep: PreparedRun, seed: int, run_dir: Path) -> Any:
    from fusion_bench.benchmark.wandb_log import start_run

    return start_run(prep, seed, run_dir)


def _wandb_logger(run: Any) -> Any:
    from fusion_bench.benchmark.wandb_log import lightning_logger

    return lightning_logger(run)


def _done_or_run(plan: Plan, seed: int) -> list[dict[str, Any]]:
    """With --resume, a seed whose run directory is complete is not run again: its row.csv files are its rows
    (appended to the raw CSVs where missing there). Otherwise the seed runs and its rows are appended."""
    targets = targets_of(plan)
    if training_run(plan).spec.resume:
        done = completed_rows(plan, seed, [t.folder for t in targets])
        if done is not None:
            for target, row in zip(targets, done):
                spec = target.run.spec
                existing = read_rows(Path(spec.leaderboard_dir) / "raw" / f"{spec.dataset}.csv") \
                    if spec.leaderboard_dir is not None else []
                if row_key(row) not in {row_key(r) for r in existing}:
                    _append(spec, row)
            return done
    rows = run_seed(plan, seed)
    for target, row in zip(targets, rows):
        _append(target.run.spec, row)
    return rows


def _append(spec: BenchSpec, row: dict[str, Any]) -> None:
    if spec.leaderboard_dir is not None:
        append_rows(Path(spec.leaderboard_dir) / "raw" / f"{spec.dataset}.csv", [row])


def _baseline_rows(spec: BenchSpec, prep: PreparedRun, timings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """source_a / source_b rows for the same downstream protocol, run only for seeds the raw CSV lacks (not next to
    released or published rows: the `paper` preset's baseline rows use the same downstream settings)."""
    if not (prep.evaluators and spec.downstream_baselines) or spec.method in BASELINE_METHODS \
            or spec.preset in ("released", "published"):
        return []
    existing = read_rows(Path(spec.leaderboard_dir) / "raw" / f"{spec.dataset}.csv") if spec.leaderboard_dir else []
    rows = []
    for baseline in BASELINE_METHODS:
        base_prep = prepare(baseline_spec(spec, baseline, list(prep.evaluators)))
        base_prep.datasets = prep.datasets  # same dataset, root and options: reuse the built splits
        done = {r.get("seed") for r in existing if r.get("method") == baseline
                and r.get("config_hash") == base_prep.config_hash and r.get("preset") == spec.preset
                and r.get("split_hash") in (None, "", base_prep.split_hash)}
        for seed in spec.seeds:
            if str(seed) in done:
                continue
            with seed_locks(base_prep, [seed]):
                new = run_seed(base_prep, seed)
            for row in new:
                _append(spec, row)
                rows.append(row)
        timings += base_prep.timings
    return rows


def baseline_spec(spec: BenchSpec, baseline: str, evaluators: Sequence[str]) -> BenchSpec:
    """The request of a source_a/source_b downstream baseline next to `spec` (never the method's overrides)."""
    return replace(spec, method=baseline, downstream=list(evaluators), overrides={}, config=None,
                   downstream_baselines=False)


__all__ = ["Plan", "baseline_spec", "run_bench", "run_mixture", "run_plan", "run_seed"]
