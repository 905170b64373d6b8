"""Mixture runs: one model trained on several fusion datasets at once, then scored on each dataset's test split.

`fusion-bench bench --method M --dataset A,B,C --mixture` (without --mixture a dataset list means one run per
dataset). A mixture is a datamodule and a row fan-out; its seeds go through the same pipeline as any run
(runner.run_seed): one model is trained on the mixture (fusion_bench.base.mixture.MixtureDataModule: batches of one
dataset each, round-robin, every sample carrying its dataset's index as `task_id`; a method whose constructor takes
`num_tasks` is told how many there are), then each dataset is scored exactly as an ordinary run
(scoring.evaluate_seed: fused test split, metrics, downstream, efficiency, provenance), one row per dataset in that
dataset's raw CSV. The rows carry `train_mixture` ("A+B+C") and their config hash covers the mixture (its datasets
and options, the training config). Outputs: `<out>/<method>/mix-A+B+C/<preset>/<hash>/seed<k>/` with the weights
and training logs, and one `<dataset>/` folder per scored dataset (fused/, metrics_per_image.csv, row.csv, ...),
built in `seed<k>.partial` and moved into place when every dataset is scored.

The whole request is checked before any work: every dataset must exist (with its data) and be a fusion dataset
the method handles, the method must be a trainable fusion method, and a mixture has at least two distinct datasets.
The training config is the preset's base config (per-dataset overrides cannot apply to one shared model).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L

import fusion_bench
from fusion_bench.base.method import FusionMethod, SegFusionMethod
from fusion_bench.base.mixture import MixtureDataModule
from fusion_bench.benchmark.build import as_configured, build_datamodule
from fusion_bench.benchmark.config import method_config
from fusion_bench.benchmark.protocol import config_text, hash_of_text, load_yaml
from fusion_bench.benchmark.request import prepare
from fusion_bench.benchmark.results import path_name
from fusion_bench.benchmark.spec import BenchSpec, PreparedRun, RowTarget, SeedSetup
from fusion_bench.errors import BenchError
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

    @property
    def targets(self) -> list[RowTarget]:
        """The rows of a seed: one per dataset, in its own sub-folder of the seed's directory."""
        return [RowTarget(scored, scored.spec.dataset, self.label) for scored in self.scored]


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
    train_text = config_text(payload)
    train_hash = hash_of_text(train_text)
    # a scored dataset's config.yaml: its own request (as `bench` alone would resolve it) and the mixture training
    texts = [config_text({"run": load_yaml(prep.config_text), "train": load_yaml(train_text)}) for prep in scored]
    scored = [replace(prep, config=config, config_hash=hash_of_text(text), config_text=text)
              for prep, text in zip(scored, texts)]
    first = scored[0]
    train = PreparedRun(replace(spec, dataset=f"mix-{label}"), method_cls, first.datamodule_cls, first.task, config,
                        {}, first.root, train_hash, first.device, overrides=overrides, config_text=train_text)
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
        model = plan.train.method_cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise BenchError(f"method {plan.train.spec.method!r}: config does not match its constructor: {err}") from err
    return as_configured(model, plan.train.config)


def mixture_setup(plan: PreparedMixture, seed: int) -> SeedSetup:
    """What a seed of the mixture trains (the mixture datamodule, the method told the number of tasks) and scores
    (each dataset's own datamodule)."""
    mixture, datamodules = build_mixture(plan, seed)
    return SeedSetup(mixture, build_mixture_method(plan, mixture.num_tasks), datamodules)


__all__ = ["PreparedMixture", "build_mixture", "build_mixture_method", "mixture_setup", "prepare_mixture"]
