"""Downstream evaluation inside `bench`: which evaluators apply, their per-preset configs, and running them.

Evaluators (``seg``: SegFormer, ``det``: YOLO) come from the dataset's protocol (`downstream:` in
benchmarks/protocols/<dataset>.yaml) unless the request names them (``--downstream seg,det`` or ``none``;
the default is ``$FUSION_BENCH_DOWNSTREAM`` when set, else ``protocol``). Per-preset overrides of the evaluator
configs live in the protocol under ``presets: {smoke: {seg: {...}, det: {...}}, paper: {...}}``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from fusion_bench.benchmark.checks import check_device, check_empty_dir, check_outside
from fusion_bench.benchmark.override_types import check_evaluator_overrides
from fusion_bench.benchmark.protocol import load_protocol, protocol_preset
from fusion_bench.data.base import FusionDataset
from fusion_bench.data.transforms import collate_samples
from fusion_bench.errors import BenchError
from fusion_bench.evaluators.spec import EvaluatorSpec
from fusion_bench.registry import EVALUATORS, get_datamodule, get_evaluator
from fusion_bench.types import MASK

EVALUATOR_NAMES = tuple(EVALUATORS)  # seg, det
DOWNSTREAM_ENV = "FUSION_BENCH_DOWNSTREAM"


def parse_downstream(text: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``protocol`` (or None) -> None; ``none`` / empty -> (); else a validated tuple of evaluator names."""
    if text is None:
        text = os.environ.get(DOWNSTREAM_ENV, "protocol")
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else [str(t).strip() for t in text]
    items = [t for t in items if t]
    if items == ["protocol"]:
        return None
    if items in ([], ["none"]):
        return ()
    unknown = [t for t in items if t not in EVALUATOR_NAMES]
    if unknown:
        raise ValueError(f"unknown downstream evaluator(s) {unknown}; valid: protocol, none, or a comma-separated "
                         f"subset of {', '.join(EVALUATOR_NAMES)}")
    return tuple(dict.fromkeys(items))


def evaluator(name: str) -> EvaluatorSpec:
    """The EvaluatorSpec registered as `name`."""
    return get_evaluator(name)


def applicable(dataset: FusionDataset, name: str) -> str | None:
    """None when evaluator `name` can run on `dataset`, else the reason it cannot."""
    return evaluator(name).not_applicable(dataset)


def resolve_evaluators(requested: tuple[str, ...] | None, protocol: dict[str, Any], test_set: FusionDataset,
                       splits: Sequence[str]) -> tuple[str, ...]:
    """The evaluators a run uses; raises ValueError when one cannot run on this dataset (labels, train split)."""
    names = tuple(protocol.get("downstream") or ()) if requested is None else requested
    for name in names:
        if name not in EVALUATOR_NAMES:
            raise ValueError(f"protocol for {protocol.get('dataset')}: unknown downstream evaluator {name!r}; "
                             f"valid: {', '.join(EVALUATOR_NAMES)}")
        reason = applicable(test_set, name)
        if reason is None and "train" not in splits:
            reason = f"dataset {test_set.name!r} has no train split here (splits: {', '.join(splits)})"
        if reason is not None:
            if requested is not None:
                raise ValueError(f"downstream evaluator {name!r} (requested) cannot run: {reason}")
            raise ValueError(f"downstream evaluator {name!r} (listed in its protocol) cannot run: {reason}; pass "
                             "--downstream none (or another evaluator list) to skip it")
    return names


def evaluator_config(name: str, preset: str, protocol: dict[str, Any], overrides: dict[str, Any] | None = None) -> Any:
    """The evaluator's preset config with the protocol's per-preset overrides applied, then `overrides` (the
    request's `--set <name>.KEY=VALUE`); ValueError naming the key for a field the config does not have or a value
    it rejects."""
    import dataclasses

    preset = protocol_preset(preset)
    settings = dict(((protocol.get("presets") or {}).get(preset) or {}).get(name) or {})
    spec = evaluator(name)
    where = protocol.get("user_file") or f"the protocol of dataset {protocol.get('dataset')!r}"
    valid = [f.name for f in dataclasses.fields(spec.preset_config(preset))]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise ValueError(f"{where}: presets.{preset}.{name}.{unknown[0]}: unknown key of the {name} evaluator; valid "
                         f"{name} keys: {', '.join(valid)}")
    try:
        base = spec.preset_config(preset, **settings)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: presets.{preset}.{name}: {err}") from err
    if not overrides:
        return base
    fields = [f.name for f in dataclasses.fields(base)]
    for key in overrides:
        if key not in fields:
            raise ValueError(f"--set {name}.{key}: unknown key {key!r} of the {name} evaluator; valid {name} keys: "
                             f"{', '.join(fields)}")
    check_evaluator_overrides(base, overrides, name)
    overrides = {k: tuple(v) if isinstance(v, list) and isinstance(getattr(base, k), tuple) else v
                 for k, v in overrides.items()}
    try:
        return base.replace(**overrides)
    except (TypeError, ValueError) as err:
        raise ValueError(f"--set {name}.{', '.join(overrides)}: {err}") from err


def needs_val(name: str, config: Any) -> bool:
    """Whether the evaluator validates during training (then a dataset val split is fused and used)."""
    return evaluator(name).validates(config)


def label_keys(names: Sequence[str]) -> tuple[str, ...]:
    """The sample keys (labels) the evaluators `names` read."""
    return tuple(dict.fromkeys(k for name in names for k in evaluator(name).label_keys))


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_in_parallel(device: torch.device) -> bool:
    """Whether an evaluator that trains in a child process (YOLO) may run while an in-process one (SegFormer)
    trains: on CPU in a pinned process (one intra-op thread) with two or more cores; the child then gets the other
    cores (one when pinned), so they overlap without competing for threads (the numbers are a sequential run's)."""
    from fusion_bench import numerics

    return device.type == "cpu" and numerics.is_pinned() and available_cores() >= 2


def child_threads(device: torch.device, pinned: bool) -> int | None:
    """The threads of a child-process evaluator (YOLO): None (this process's pinned numerics) when `pinned`; else the
    cores an in-process evaluator (one thread when pinned) does not use meanwhile when they run in parallel
    (`run_in_parallel`), else every core."""
    if pinned:
        return None
    return max(1, available_cores() - torch.get_num_threads()) if run_in_parallel(device) else available_cores()


def run_evaluators(configs: dict[str, Any], fused: dict[str, Path], datasets: dict[str, Any], seed: int,
                   device: torch.device, log_root: Path, progress: bool, numerics_mode: str | None = None,
                   ) -> tuple[dict[str, float], list[dict], dict[str, float]]:
    """Run the evaluators `configs` ({name: config}) on fused split folders, child-process ones first so that they
    overlap with the in-process ones when `run_in_parallel`; each evaluator's logs go to `log_root/<name>`.
    `numerics_mode`: ``pinned``, ``native`` or None (this process's numerics), see
    fusion_bench.numerics.downstream_pinned.

    Returns (row values, per-class records, wall seconds per evaluator). Split folders are given to an evaluator
    only for the splits it uses (val only when it validates)."""
    from fusion_bench import numerics

    names = sorted(configs, key=lambda n: not evaluator(n).child_process)
    parallel = run_in_parallel(device)
    pinned = numerics.downstream_pinned(numerics_mode)
    threads = child_threads(device, pinned)
    pending, results = {}, {}
    for name in names:
        spec, config = evaluator(name), configs[name]
        own = {k: v for k, v in fused.items() if k != "val" or spec.validates(config)}
        pending[name] = spec.start(config, own, datasets, seed=seed, device=device, log_dir=log_root / name,
                                   progress=progress, pinned=pinned, threads=threads)
        if not parallel:
            results[name] = pending[name].result()
    values: dict[str, float] = {}
    per_class: list[dict] = []
    for name in configs:  # results (and row columns) in the requested order
        result = results.get(name) or pending[name].result()
        values.update(evaluator(name).row(result))
        per_class += evaluator(name).per_class_records(result)
    return values, per_class, {name: pending[name].seconds for name in names}


@dataclass
class FolderEvaluation:
    """A checked `fusion-bench downstream` request: the evaluator and its config, the fused folders by split, the
    datasets whose labels and splits they follow, the device, the output folder, and notes for the user."""

    name: str
    config: Any
    fused: dict[str, Path]
    datasets: dict[str, FusionDataset]
    device: torch.device
    out: Path
    notes: list[str] = field(default_factory=list)


def prepare_folder_evaluation(name: str, fused_dir: Path, dataset: str, *, root: str | Path | None, preset: str,
                              seed: int, device: str, out: Path | None,
                              options: dict[str, Any]) -> FolderEvaluation:
    """Check a `fusion-bench downstream` request (evaluator `name` on `fused_dir`/{train,test[,val]} of fused
    <sample name>.png, with the labels of `dataset`) before anything runs; BenchError naming what is wrong."""
    datamodule_cls = get_datamodule(dataset)
    dataset_cls = datamodule_cls.dataset_class
    torch_device = check_device(device)
    root = datamodule_cls.resolve_root(root)
    try:
        splits = dataset_cls.available_splits(root, **options)
        test_set = dataset_cls(root, "test", **options)
    except (TypeError, ValueError) as err:
        raise BenchError(f"dataset {dataset!r} does not take these options {options}: {err}") from err
    try:
        resolve_evaluators((name,), {}, test_set, splits)
    except ValueError as err:
        raise BenchError(str(err)) from err
    config = evaluator_config(name, preset, load_protocol(dataset, dataset_cls.task))
    fused = {split: fused_dir / split for split in ("train", "test")}
    for split, folder in fused.items():
        if not folder.is_dir():
            raise BenchError(f"{folder} is missing: --fused must hold train/ and test/ folders of fused "
                             f"<sample name>.png (e.g. from `fusion-bench fuse --split {split} --out {folder}`)")
    notes = []
    if "val" in splits and needs_val(name, config):
        if (fused_dir / "val").is_dir():
            fused["val"] = fused_dir / "val"
        else:
            notes.append(f"no {fused_dir / 'val'} folder: validation holds out part of the fused training images")
    out = out or fused_dir / f"downstream-{name}-{preset}-seed{seed}"
    check_empty_dir(out)
    check_outside(out, root)
    datasets = {split: test_set if split == "test" else dataset_cls(root, split, **options) for split in fused}
    return FolderEvaluation(name, config, fused, datasets, torch_device, out, notes)


def run_folder_evaluation(request: FolderEvaluation, seed: int, progress: bool,
                          numerics_mode: str | None = None) -> dict[str, float]:
    """Run a checked `fusion-bench downstream` request: the scores; per-class values go to `<out>/per_class.csv`,
    the evaluator's result and training log to `<out>`."""
    scores, per_class = run_evaluator(request.name, request.config, request.fused, request.datasets, seed,
                                      request.device, request.out, progress, numerics_mode)
    pd.DataFrame(per_class).to_csv(request.out / "per_class.csv", index=False)
    return scores


def run_evaluator(name: str, config: Any, fused: dict[str, Path], datasets: dict[str, Any], seed: int,
                  device: torch.device, log_dir: Path, progress: bool, numerics_mode: str | None = None,
                  ) -> tuple[dict[str, float], list[dict]]:
    """Run one evaluator on fused split folders; returns (row values, per-class records)."""
    from fusion_bench import numerics

    spec = evaluator(name)
    own = {k: v for k, v in fused.items() if k != "val" or spec.validates(config)}
    pinned = numerics.downstream_pinned(numerics_mode)
    result = spec.start(config, own, datasets, seed=seed, device=device, log_dir=log_dir, progress=progress,
                        pinned=pinned, threads=None if pinned else available_cores()).result()
    return spec.row(result), spec.per_class_records(result)


class NativeSegmentation:
    """mIoU of a SegFusionMethod's own head (`segment(x1, x2)`), accumulated image by image with the convention of
    `seg` (the runner feeds it during its single pass over the test split)."""

    def __init__(self, dataset: FusionDataset, device: torch.device):
        from torchmetrics.classification import MulticlassConfusionMatrix

        if dataset.class_names is None:
            raise ValueError(f"dataset {dataset.name!r} has no segmentation masks")
        self.names = dataset.class_names
        self.confusion = MulticlassConfusionMatrix(len(self.names), ignore_index=dataset.ignore_index).to(device)
        self.device = device

    @torch.no_grad()
    def update(self, model: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, mask: torch.Tensor) -> None:
        """x1, x2: Bx?xHxW sources on the device; mask: BxHxW class indices."""
        logits = model.segment(x1, x2)
        mask = mask.to(self.device)
        if logits.shape[-2:] != mask.shape[-2:]:
            logits = torch.nn.functional.interpolate(logits, size=mask.shape[-2:], mode="bilinear",
                                                     align_corners=False)
        self.confusion.update(logits.argmax(1), mask)

    def compute(self) -> tuple[dict[str, float], list[dict]]:
        from fusion_bench.evaluators.segmentation import seg_scores

        scores = seg_scores(self.confusion.compute().cpu(), self.names)
        per_class = [{"evaluator": "native", "class": c, "metric": "iou", "value": v}
                     for c, v in scores["seg_iou_per_class"].items()]
        return {"native_miou": float(scores["seg_miou"])}, per_class


def native_segmentation(model: torch.nn.Module, dataset: FusionDataset, modalities: tuple[str, str],
                        device: torch.device, progress: bool = True) -> tuple[dict[str, float], list[dict]]:
    """mIoU of a SegFusionMethod's own head (`segment(x1, x2)`) on the test split, same convention as `seg`."""
    from tqdm.auto import tqdm

    native = NativeSegmentation(dataset, device)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=collate_samples)
    model = model.to(device).eval()
    for batch in tqdm(loader, desc="native segmentation", disable=not progress, leave=False):
        native.update(model, batch[modalities[0]].to(device), batch[modalities[1]].to(device), batch[MASK])
    return native.compute()
