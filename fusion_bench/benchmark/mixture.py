"""Mixture runs: train one model on several fusion datasets at once, then score it on each dataset's test split.

`fusion-bench bench --method M --dataset A,B,C --mixture` (without --mixture a dataset list means one run per
dataset). Per seed: one model is trained on the mixture (fusion_bench.base.mixture.MixtureDataModule: batches of
one dataset each, round-robin, every sample carrying its dataset's index as `task_id`; a method whose constructor
takes `num_tasks` is told how many there are), then each dataset is scored exactly as an ordinary run
(runner.evaluate_seed: fused test split, metrics, downstream, efficiency, provenance), one row per dataset in that
dataset's raw CSV. The rows carry `train_mixture` ("A+B+C") and their config hash covers the mixture (its datasets
and options, the training config). Outputs: `<out>/<method>/mix-A+B+C/<preset>/<hash>/seed<k>/` with the weights
and training logs, and one `<dataset>/` folder per scored dataset (fused/, metrics_per_image.csv, row.csv, ...),
built in `seed<k>.partial` and moved into place when every dataset is scored.

The whole request is checked before any work: every dataset must exist (with its data) and be a fusion dataset
the method handles, the method must be a trainable fusion method, and a mixture has at least two distinct datasets.
The training config is the preset's base config (per-dataset overrides cannot apply to one shared model).
"""

from __future__ import annotations

import argparse
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L

import fusion_bench
from fusion_bench.base.method import FusionMethod, SegFusionMethod
from fusion_bench.base.mixture import MixtureDataModule
from fusion_bench.benchmark.leaderboard import regenerate
from fusion_bench.benchmark.profiling import PeakMemory
from fusion_bench.benchmark.protocol import config_hash
from fusion_bench.benchmark.results import path_name
from fusion_bench.benchmark.runner import (
    BenchError,
    BenchSpec,
    PreparedRun,
    _append,
    _baseline_rows,
    build_datamodule,
    evaluate_seed,
    finish_partial,
    fit_method,
    leaderboard_text,
    method_config,
    prepare,
    prepare_partial,
)
from fusion_bench.registry import get_datamodule

SAMPLER = "single-source batches, round-robin over datasets"


@dataclass
class PreparedMixture:
    """A validated mixture request: the training run and one scoring run per dataset."""

    train: PreparedRun  # trains the shared model (config: the preset's base config)
    scored: list[PreparedRun]  # one per dataset, config and hash replaced by the mixture's
    label: str  # "A+B+C", the row's train_mixture

    def run_dir(self, seed: int) -> Path:
        s = self.train.spec
        return (Path(s.out) / path_name(s.method) / f"mix-{self.label}" / s.preset / self.train.config_hash
                / f"seed{seed}")


def prepare_mixture(spec: BenchSpec, datasets: list[str]) -> PreparedMixture:
    """Validate a mixture request (see the module docstring); `spec.dataset` is ignored, `datasets` are mixed."""
    if len(datasets) < 2:
        raise BenchError(f"--mixture needs at least two datasets, got {datasets}")
    if len(set(datasets)) != len(datasets):
        raise BenchError(f"--mixture: each dataset may appear once, got {datasets}")
    for name in datasets:
        try:
            task = get_datamodule(name).dataset_class.task
        except KeyError as err:
            raise BenchError(str(err)) from err
        if not task.is_fusion:
            raise BenchError(f"--mixture: {name!r} is a {task.value} dataset; a training mixture holds image fusion "
                             "datasets only")
    scored = [prepare(replace(spec, dataset=name)) for name in datasets]  # names, tasks, data, device, downstream
    method_cls = scored[0].method_cls
    if not (issubclass(method_cls, FusionMethod) and method_cls.trainable) or issubclass(method_cls, SegFusionMethod):
        raise BenchError(f"--mixture trains one model: method {spec.method!r} must be a trainable fusion method "
                         "(not training-free, not segmenting)")
    config, overrides = method_config(method_cls, spec, None)
    mixture = [{"dataset": name, "dataset_options": spec.dataset_options} for name in datasets]
    label = "+".join(datasets)
    payload = {"method": spec.method, "preset": spec.preset, "train_mixture": mixture, "config": config,
               "sampler": SAMPLER, "version": fusion_bench.__version__}
    if overrides:
        payload["overrides"] = overrides
    train_hash = config_hash(payload)
    scored = [replace(prep, config=config, config_hash=config_hash({"run": prep.config_hash, "train": train_hash}))
              for prep in scored]
    first = scored[0]
    train = PreparedRun(replace(spec, dataset=f"mix-{label}"), method_cls, first.datamodule_cls, first.task, config,
                        {}, first.root, train_hash, first.device, overrides=overrides)
    return PreparedMixture(train, scored, label)


def build_mixture(plan: PreparedMixture, seed: int) -> tuple[MixtureDataModule, list[Any]]:
    """The mixture datamodule and each dataset's own datamodule (crops, flips, hold-outs: the training config's)."""
    datamodules = [build_datamodule(prep, seed) for prep in plan.scored]
    train = plan.train.config["train"]
    mixture = MixtureDataModule(datamodules, batch_size=train.get("batch_size", 4), seed=seed,
                                num_workers=plan.train.spec.num_workers)
    return mixture, datamodules


def build_mixture_method(plan: PreparedMixture, num_tasks: int) -> L.LightningModule:
    kwargs: dict[str, Any] = {"modalities": MixtureDataModule.modalities, **plan.train.config["model"],
                              **plan.train.config["optim"]}
    if "num_tasks" in inspect.signature(plan.train.method_cls).parameters:
        kwargs["num_tasks"] = num_tasks
    try:
        return plan.train.method_cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise BenchError(f"method {plan.train.spec.method!r}: config does not match its constructor: {err}") from err


def run_mixture_seed(plan: PreparedMixture, seed: int) -> list[dict[str, Any]]:
    """Train on the mixture, score every dataset; returns one row per dataset (not yet appended). In a multi-process
    fit, ranks other than 0 only train and return []."""
    from fusion_bench.benchmark.distributed import is_rank_zero

    lead = is_rank_zero()
    prep = plan.train
    L.seed_everything(seed, workers=True, verbose=False)
    memory = PeakMemory(prep.device).start()
    run_dir = plan.run_dir(seed)
    partial = run_dir.with_name(run_dir.name + ".partial")
    if lead:
        prepare_partial(partial, prep.spec.resume)
    try:
        mixture, datamodules = build_mixture(plan, seed)
        model = build_mixture_method(plan, mixture.num_tasks)
        model, train_s = fit_method(prep, model, mixture, partial, prep.spec.resume)
        if not lead:
            return []
        rows = []
        for scored, datamodule in zip(plan.scored, datamodules):
            (partial / scored.spec.dataset).mkdir(exist_ok=True)
            row = evaluate_seed(scored, model, datamodule, partial / scored.spec.dataset, seed, train_s,
                                train_mixture=plan.label, memory=memory)
            scored.timings.append(row.pop("_timings"))
            rows.append(row)
    finally:
        memory.stop()
    finish_partial(partial, run_dir)
    return rows


def run_mixture(plan: PreparedMixture) -> list[dict[str, Any]]:
    """Every seed; each dataset's rows go to its raw CSV (then the source_a/source_b downstream rows that are
    missing, as for an ordinary run). Returns the method's rows, then any baseline rows."""
    rows: list[dict[str, Any]] = []
    for seed in plan.train.spec.seeds:
        for row, scored in zip(run_mixture_seed(plan, seed), plan.scored):
            _append(scored.spec, row)
            rows.append(row)
    if not rows and plan.train.spec.seeds:  # a rank other than 0 of a multi-process fit
        return rows
    for scored in plan.scored:
        rows += _baseline_rows(scored.spec, scored, [])
    if plan.train.spec.leaderboard_dir is not None:
        regenerate(Path(plan.train.spec.leaderboard_dir))
    return rows


def bench_mixture(args: argparse.Namespace, methods: list[str], datasets: list[str]) -> int:
    """`fusion-bench bench --mixture`: validate every (method, mixture) first, then run them."""
    from fusion_bench.benchmark.distributed import is_rank_zero
    from fusion_bench.cli import _protocol_seeds

    if args.seeds is not None:
        seeds = list(args.seeds)
    else:  # every dataset gets at least its protocol's seeds
        seeds = sorted({s for d in datasets for s in _protocol_seeds(d, args.preset)})
    plans = []
    for method in methods:
        spec = BenchSpec(method=method, dataset=datasets[0], root=args.root, preset=args.preset, seeds=seeds,
                         out=args.out, leaderboard_dir=args.leaderboard_dir, device=args.device,
                         num_workers=args.num_workers, progress=not args.no_progress, logger=args.logger,
                         dataset_options=dict(args.dataset_options), overrides=dict(args.overrides),
                         config=args.config, downstream=args.downstream, resume=args.resume,
                         downstream_baselines=not args.no_downstream_baselines,
                         downstream_numerics=args.downstream_numerics)
        plans.append(prepare_mixture(spec, datasets))
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


__all__ = ["PreparedMixture", "bench_mixture", "prepare_mixture", "run_mixture", "run_mixture_seed"]
