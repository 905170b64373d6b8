"""The benchmark runner: fit (when trainable) -> fuse the test split to lossless PNGs -> score -> downstream ->
append rows.

Downstream (fusion_bench.benchmark.downstream): when the protocol (or `--downstream`) names evaluators, the
train split (and the val split when an evaluator validates) is fused too, SegFormer/YOLO train on the fused
training images and score the fused test images; a SegFusionMethod's own head adds `native_miou`. The IR-only and
visible-only baselines (`source_a`, `source_b`) get the same downstream rows once per dataset/preset/seed
(reused when the raw CSV already has them).

Everything that can be wrong with the request (unknown names, preset, incompatible task, missing data) is
checked in `prepare` before any work starts. Each seed's outputs are built in `<run_dir>.partial` and moved
into place only when complete; an earlier run directory is kept under a `.replaced-<time>` name.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import fusion_bench
from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.base.method import MultimodalClassifier, SegFusionMethod, load_method_config
from fusion_bench.benchmark.downstream import (
    EVALUATOR_NAMES,
    evaluator_config,
    native_segmentation,
    needs_val,
    parse_downstream,
    resolve_evaluators,
    run_evaluator,
)
from fusion_bench.benchmark.leaderboard import aggregate, markdown_table, regenerate
from fusion_bench.benchmark.profiling import count_gflops, count_params_m, fusion_inputs, peak_memory_mb
from fusion_bench.benchmark.protocol import check_preset, config_hash, load_protocol, protocol_preset
from fusion_bench.benchmark.provenance import provenance
from fusion_bench.benchmark.results import append_rows, read_rows
from fusion_bench.data.io import read_image, write_png
from fusion_bench.data.transforms import collate_samples
from fusion_bench.evaluators.common import DownstreamError, resolve_device
from fusion_bench.registry import get_datamodule, get_method
from fusion_bench.types import GT, NAME, TARGET, Task

GFLOPS_SIZE = (256, 256)
BASELINE_METHODS = ("source_a", "source_b")  # the single-source rows every downstream table carries


class BenchError(RuntimeError):
    """A benchmark request that cannot run; the message says why and what is valid."""


@dataclass
class BenchSpec:
    """One `fusion-bench bench` request for a single method and dataset."""

    method: str
    dataset: str
    root: str | Path | None = None
    preset: str = "smoke"
    seeds: Sequence[int] = (0,)
    out: Path = Path("runs")
    leaderboard_dir: Path | None = Path("leaderboards")
    device: str = "auto"
    num_workers: int = 0
    progress: bool = True
    logger: str = "csv"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # {"model.alpha": 0.0, ...} over the preset (`--set`)
    downstream: str | Sequence[str] | None = None  # protocol (None), none, or evaluator names: see downstream.py
    downstream_baselines: bool = True  # also bench source_a/source_b downstream when missing from the raw CSV


LOGGERS = ("csv", "tensorboard", "wandb")


def make_logger(kind: str, run_dir: Path):
    """A Lightning logger writing under run_dir/logs; wandb stays offline unless WANDB_MODE says otherwise."""
    import os

    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(run_dir, name="logs", version="")
    if kind == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(run_dir, name="logs", version="")
    if kind == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")
        try:
            from lightning.pytorch.loggers import WandbLogger

            return WandbLogger(save_dir=str(run_dir / "logs"), project="fusion_bench", name=run_dir.parent.name)
        except ModuleNotFoundError as err:
            raise BenchError("the wandb logger needs the wandb extra: pip install -e '.[wandb]'") from err
    raise BenchError(f"unknown logger {kind!r}; valid loggers: {', '.join(LOGGERS)}")


@dataclass
class PreparedRun:
    spec: BenchSpec
    method_cls: type
    datamodule_cls: type[PairedDataModule]
    task: Task
    config: dict[str, Any]
    protocol: dict[str, Any]
    root: Path
    config_hash: str
    device: torch.device
    metric_names: list[str] | None = field(default=None)
    evaluators: dict[str, Any] = field(default_factory=dict)  # downstream evaluator name -> config

    @property
    def dialect(self) -> str | None:
        return self.protocol.get("metric_dialect")

    def run_dir(self, seed: int) -> Path:
        s = self.spec
        return Path(s.out) / s.method / s.dataset / s.preset / self.config_hash / f"seed{seed}"


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any], method: str) -> dict[str, Any]:
    """The preset with `--set section.key=value` overrides (section: model, optim or train) merged in."""
    config = {section: dict(values) for section, values in config.items()}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if section not in config or not name:
            raise BenchError(f"method {method!r}: --set {key}={value}: expected SECTION.KEY with SECTION one of "
                             f"{', '.join(config)}")
        config[section][name] = value
    return config


def prepare(spec: BenchSpec) -> PreparedRun:
    """Validate the request and resolve everything a run needs (no training, no fusing)."""
    try:
        check_preset(spec.preset)
        if spec.logger not in LOGGERS:
            raise ValueError(f"unknown logger {spec.logger!r}; valid loggers: {', '.join(LOGGERS)}")
        method_cls = get_method(spec.method)
        datamodule_cls = get_datamodule(spec.dataset)
    except (KeyError, ValueError) as err:
        raise BenchError(str(err)) from err
    task = datamodule_cls.dataset_class.task
    if task not in method_cls.tasks:
        valid = ", ".join(sorted(t.value for t in method_cls.tasks))
        raise BenchError(f"method {spec.method!r} handles {valid}; dataset {spec.dataset!r} is {task.value}")
    try:
        config = load_method_config(method_cls, spec.method, spec.preset, spec.dataset)
    except KeyError as err:
        raise BenchError(str(err)) from err
    config = apply_overrides(config, spec.overrides, spec.method)
    protocol = load_protocol(spec.dataset, task)
    root = datamodule_cls.resolve_root(spec.root)
    # Instantiating the test split runs the integrity check now, before any training.
    try:
        test_set = datamodule_cls.dataset_class(root, "test", **spec.dataset_options)
    except TypeError as err:
        raise BenchError(f"dataset {spec.dataset!r} does not take these options {spec.dataset_options}: {err}") from err
    if (getattr(method_cls, "needs_class_labels", False) or issubclass(method_cls, MultimodalClassifier)) \
            and test_set.class_names is None:
        raise BenchError(f"method {spec.method!r} needs class labels; dataset {spec.dataset!r} at {root} has none"
                         + ("" if task is Task.CLASSIFICATION else " (use one with segmentation masks, e.g. msrs, "
                            "fmb, mfnet, pst900, synthetic-ivif)"))
    if task is Task.CLASSIFICATION:  # every split's labels and files are checked now, not after training started
        for split in datamodule_cls.dataset_class.available_splits(root, **spec.dataset_options):
            if split != "test":
                datamodule_cls.dataset_class(root, split, **spec.dataset_options)
    try:
        device = resolve_device(spec.device)
    except DownstreamError as err:  # the only error it raises: a CUDA device without CUDA
        raise BenchError(f"--device {spec.device}: CUDA is not available on this machine; use --device cpu or auto"
                         ) from err
    evaluators: dict[str, Any] = {}  # evaluator name -> its effective config for this preset
    if task is not Task.CLASSIFICATION:
        try:
            splits = datamodule_cls.dataset_class.available_splits(root, **spec.dataset_options)
            names = resolve_evaluators(parse_downstream(spec.downstream), protocol, test_set, splits)
            evaluators = {name: evaluator_config(name, spec.preset, protocol) for name in names}
        except ValueError as err:
            raise BenchError(str(err)) from err
    payload = {
        "method": spec.method,
        "dataset": spec.dataset,
        "dataset_options": spec.dataset_options,
        "preset": spec.preset,
        "config": config,
        "protocol": {k: protocol.get(k) for k in ("metric_dialect", "metrics")},
        "protocol_preset": {k: v for k, v in
                            ((protocol.get("presets") or {}).get(protocol_preset(spec.preset)) or {}).items()
                            if k not in ("seeds", *EVALUATOR_NAMES)},
        "version": fusion_bench.__version__,
    }
    # downstream settings enter the hash only as the effective evaluator configs of the evaluators that run (the
    # protocol preset's seg/det blocks are left out above), so runs without downstream do not depend on them
    if evaluators:
        payload["downstream"] = {name: asdict(config) for name, config in evaluators.items()}
    return PreparedRun(spec, method_cls, datamodule_cls, task, config, protocol, root, config_hash(payload),
                       device, protocol.get("metrics"), evaluators)


def build_method(prep: PreparedRun, datamodule: PairedDataModule) -> L.LightningModule:
    kwargs: dict[str, Any] = {"modalities": datamodule.modalities, **prep.config["model"], **prep.config["optim"]}
    if issubclass(prep.method_cls, MultimodalClassifier) or getattr(prep.method_cls, "needs_class_labels", False):
        class_names = datamodule.dataset("test").class_names  # an instance: options may change the classes
        if class_names is None:
            raise BenchError(f"method {prep.spec.method!r} needs class labels; dataset {prep.spec.dataset!r} has none")
        kwargs["num_classes"] = len(class_names)
    try:
        return prep.method_cls(**kwargs)
    except TypeError as err:
        raise BenchError(f"method {prep.spec.method!r}: config does not match its constructor: {err}") from err


def build_datamodule(prep: PreparedRun, seed: int) -> PairedDataModule:
    train = prep.config["train"]
    augment = {"augment": train["augment"]} if train.get("augment") else {}  # PairedDataModule's train augmentation
    try:
        return prep.datamodule_cls(root=prep.root, batch_size=train.get("batch_size", 4),
                                   crop_size=train.get("crop_size"), seed=seed, num_workers=prep.spec.num_workers,
                                   val_fraction=train.get("val_fraction", 0.0), **augment, **prep.spec.dataset_options)
    except ValueError as err:
        raise BenchError(f"method {prep.spec.method!r}: train settings: {err}") from err


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")


def early_stopping_callbacks(train: dict[str, Any], has_val: bool, method: str) -> list[L.Callback]:
    """`train.early_stopping: {monitor, patience, mode}` -> Lightning's EarlyStopping (needs validation)."""
    settings = train.get("early_stopping")
    if not settings:
        return []
    if not has_val:
        raise BenchError(f"method {method!r}: early_stopping needs validation data; the dataset has no val split, "
                         "so set train.val_fraction in the method's config")
    from lightning.pytorch.callbacks import EarlyStopping

    return [EarlyStopping(monitor=settings.get("monitor", "val/loss"), patience=int(settings.get("patience", 10)),
                          mode=settings.get("mode", "min"))]


def fit(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path) -> float:
    """Train with Lightning (logs under run_dir/logs); returns seconds spent.

    `train` keys: max_steps / max_epochs, batch_size, crop_size, precision, val_fraction (hold out part of train
    when the dataset has no val split), early_stopping {monitor, patience, mode}, limit_val_batches,
    val_check_interval, check_val_every_n_epoch, log_every_n_steps.
    """
    _quiet_lightning()
    train = prep.config["train"]
    has_val = datamodule.has_validation
    trainer = L.Trainer(
        accelerator="cuda" if prep.device.type == "cuda" else "cpu",
        devices=1,
        max_steps=train.get("max_steps", -1),
        max_epochs=train.get("max_epochs", -1 if "max_steps" in train else None),
        deterministic=True if prep.device.type == "cpu" else "warn",
        logger=make_logger(prep.spec.logger, run_dir),
        enable_checkpointing=False,
        callbacks=early_stopping_callbacks(train, has_val, prep.spec.method),
        enable_model_summary=False,
        enable_progress_bar=prep.spec.progress,
        num_sanity_val_steps=0,
        limit_val_batches=train.get("limit_val_batches", 1.0) if has_val else 0,
        val_check_interval=train.get("val_check_interval"),
        check_val_every_n_epoch=train.get("check_val_every_n_epoch", 1),
        log_every_n_steps=train.get("log_every_n_steps", 10),
        precision=train.get("precision", "32-true"),
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - start
    save_weights(model, prep, run_dir / "model.pt")
    return seconds


def save_weights(model: L.LightningModule, prep: PreparedRun, path: Path) -> None:
    torch.save({"method": prep.spec.method, "preset": prep.spec.preset, "config": prep.config,
                "state_dict": model.state_dict()}, path)


def load_weights(model: L.LightningModule, path: Path, method: str) -> None:
    """Load weights saved by `fit` (or `fusion-bench train`); the method name must match."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if checkpoint.get("method") != method:
        raise BenchError(f"{path} holds weights of method {checkpoint.get('method')!r}, not {method!r}")
    model.load_state_dict(checkpoint["state_dict"])


def fuse_split(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, fused_dir: Path,
               split: str = "test") -> tuple[float, int, str]:
    """Fuse every image of a split to `fused_dir/<name>.png`; returns (ms per image, count, split hash)."""
    dataset = datamodule.dataset(split)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=prep.spec.num_workers,
                        collate_fn=collate_samples)
    model = model.to(prep.device).eval()
    a_key, b_key = datamodule.modalities
    times = []
    fused_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"fuse {prep.spec.method} on {prep.spec.dataset}/{split}",
                          disable=not prep.spec.progress, leave=False):
            x1, x2 = batch[a_key].to(prep.device), batch[b_key].to(prep.device)
            if prep.device.type == "cuda":
                torch.cuda.synchronize(prep.device)
            start = time.perf_counter()
            fused = model.fuse(x1, x2)
            if prep.device.type == "cuda":
                torch.cuda.synchronize(prep.device)
            times.append((time.perf_counter() - start) * 1000)
            if fused.shape[-2:] != x1.shape[-2:]:
                raise BenchError(f"{prep.spec.method} returned {tuple(fused.shape)} for inputs of size "
                                 f"{tuple(x1.shape[-2:])}: fused images must keep the source size")
            write_png(fused_dir / f"{batch[NAME][0]}.png", fused[0].cpu())
    return float(np.mean(times)) if times else math.nan, len(dataset), dataset.split_hash()


def score_fused(prep: PreparedRun, datamodule: PairedDataModule, fused_dir: Path,
                batch_size: int = 8) -> pd.DataFrame:
    """Score the fused PNGs on disk against the test sources with the protocol's dialect; one row per image."""
    from fusion_bench.metrics import get_dialect

    dialect = get_dialect(prep.dialect)
    dataset = datamodule.dataset("test")
    a_key, b_key = datamodule.modalities
    groups: dict[tuple, list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]]]
    groups = defaultdict(list)
    records: list[dict[str, Any]] = []

    def flush(key: tuple) -> None:
        items = groups.pop(key)
        gt = torch.stack([i[4] for i in items]) if items[0][4] is not None else None
        scores = dialect.compute(torch.stack([i[1] for i in items]), torch.stack([i[2] for i in items]),
                                 torch.stack([i[3] for i in items]), metrics=prep.metric_names, gt=gt)
        for j, item in enumerate(items):
            records.append({"name": item[0], **{m: float(v[j]) for m, v in scores.items()}})

    for index in tqdm(range(len(dataset)), desc=f"score ({prep.dialect})", disable=not prep.spec.progress,
                      leave=False):
        sample = dataset[index]
        fused_path = fused_dir / f"{sample[NAME]}.png"
        fused = read_image(fused_path, mode=None)
        a, b, gt = sample[a_key], sample[b_key], sample.get(GT)
        key = (tuple(a.shape), tuple(b.shape), tuple(fused.shape), None if gt is None else tuple(gt.shape))
        groups[key].append((sample[NAME], a, b, fused, gt))
        if len(groups[key]) >= batch_size:
            flush(key)
    for key in list(groups):
        flush(key)
    order = {s.name: i for i, s in enumerate(dataset.samples)}
    return pd.DataFrame(records).sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)


def evaluate_classifier(prep: PreparedRun, model: L.LightningModule,
                        datamodule: PairedDataModule) -> tuple[dict[str, float], int, str]:
    """Accuracy and macro-F1 of the fused logits, accuracy of each unimodal head, on the test split."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    dataset = datamodule.dataset("test")
    loader = DataLoader(dataset, batch_size=64, shuffle=False, num_workers=prep.spec.num_workers,
                        collate_fn=collate_samples)
    model = model.to(prep.device).eval()
    outputs: dict[str, list[torch.Tensor]] = defaultdict(list)
    targets = []
    with torch.no_grad():
        for batch in tqdm(loader, desc="evaluate", disable=not prep.spec.progress, leave=False):
            batch = {k: v.to(prep.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            for head, logits in model(batch).items():
                outputs[head].append(logits.argmax(1).cpu())
            targets.append(batch[TARGET].cpu())
    target = torch.cat(targets)
    k = model.num_classes
    preds = {head: torch.cat(v) for head, v in outputs.items()}
    result = {
        "cls_acc": float(multiclass_accuracy(preds["fused"], target, num_classes=k, average="micro")),
        "cls_macro_f1": float(multiclass_f1_score(preds["fused"], target, num_classes=k, average="macro")),
    }
    for head, pred in preds.items():
        if head != "fused":
            result[f"acc_{head}"] = float(multiclass_accuracy(pred, target, num_classes=k, average="micro"))
    return result, len(dataset), dataset.split_hash()


def _gflops(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule) -> float:
    sample = datamodule.dataset("test")[0]
    model = model.to(prep.device).eval()
    if prep.task is Task.CLASSIFICATION:
        batch = collate_samples([sample])
        batch = {k: v.to(prep.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return count_gflops(lambda: model(batch))
    a_key, b_key = datamodule.modalities
    x1, x2 = fusion_inputs((sample[a_key].shape[0], sample[b_key].shape[0]), *GFLOPS_SIZE, prep.device)
    return count_gflops(lambda: model.fuse(x1, x2))


def _finalize_dir(partial: Path, final: Path) -> None:
    if final.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        final.rename(final.with_name(f"{final.name}.replaced-{stamp}"))
    partial.rename(final)


def run_seed(prep: PreparedRun, seed: int) -> dict[str, Any]:
    """One seed: returns the result row (not yet written)."""
    L.seed_everything(seed, workers=True, verbose=False)
    if prep.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(prep.device)
    run_dir = prep.run_dir(seed)
    partial = run_dir.with_name(run_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    datamodule = build_datamodule(prep, seed)
    model = build_method(prep, datamodule)
    train_s = fit(prep, model, datamodule, partial) if model.trainable else 0.0
    row = evaluate_seed(prep, model, datamodule, partial, seed, train_s)
    _finalize_dir(partial, run_dir)
    return row


def evaluate_seed(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
                  seed: int, train_s: float, train_mixture: str = "") -> dict[str, Any]:
    """Score a (trained) model on the test split: fused PNGs, per-image metrics, downstream, efficiency and
    provenance under `run_dir` (with its row.csv); returns the row. `train_mixture` names the datasets the model was
    trained on when that is not just `prep`'s dataset (fusion_bench.benchmark.mixture)."""
    row: dict[str, Any] = {
        "method": prep.spec.method,
        "dataset": prep.spec.dataset,
        "task": prep.task.value,
        "preset": prep.spec.preset,
        "seed": seed,
        "config_hash": prep.config_hash,
        "metric_dialect": prep.dialect or "",
        "train_mixture": train_mixture,
    }
    if prep.task is Task.CLASSIFICATION:
        scores, n_images, split_hash = evaluate_classifier(prep, model, datamodule)
        row.update(scores)
        fuse_ms = math.nan
    else:
        fuse_ms, n_images, split_hash = fuse_split(prep, model, datamodule, run_dir / "fused")
        per_image = score_fused(prep, datamodule, run_dir / "fused")
        per_image.to_csv(run_dir / "metrics_per_image.csv", index=False)
        row.update({m: float(per_image[m].mean()) for m in per_image.columns if m != "name"})
    peak_mem = peak_memory_mb(prep.device)  # the method's own peak: the in-process SegFormer evaluator resets it
    if prep.task is not Task.CLASSIFICATION:
        row.update(run_downstream(prep, model, datamodule, run_dir, seed))
    row.update({
        "params_m": count_params_m(model),
        "gflops": _gflops(prep, model, datamodule),
        "fuse_ms_per_image": fuse_ms,
        "train_s": train_s,
        "peak_mem_mb": peak_mem,
        "n_images": n_images,
        "split_hash": split_hash,
        **provenance(prep.device),
    })
    pd.DataFrame([row]).to_csv(run_dir / "row.csv", index=False)
    return row


def run_downstream(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
                   seed: int) -> dict[str, float]:
    """Native segmentation (SegFusionMethod) and the downstream evaluators; per-class values go to
    `run_dir/downstream_per_class.csv`, evaluator logs to `run_dir/downstream/<evaluator>/`."""
    values: dict[str, float] = {}
    per_class: list[dict[str, Any]] = []
    test_set = datamodule.dataset("test")
    if isinstance(model, SegFusionMethod) and test_set.class_names is not None:
        native, records = native_segmentation(model, test_set, datamodule.modalities, prep.device, prep.spec.progress)
        values.update(native)
        per_class += records
    if prep.evaluators:
        splits = ["train"]
        if "val" in datamodule.available_splits() and any(needs_val(n, c) for n, c in prep.evaluators.items()):
            splits.append("val")
        fused = {"test": run_dir / "fused"}
        for split in splits:
            fused[split] = run_dir / f"fused_{split}"
            fuse_split(prep, model, datamodule, fused[split], split=split)
        datasets = {split: datamodule.dataset(split) for split in fused}
        for name, config in prep.evaluators.items():
            own = fused if needs_val(name, config) else {k: v for k, v in fused.items() if k != "val"}
            scores, records = run_evaluator(name, config, own, datasets, seed, prep.device,
                                            run_dir / "downstream" / name, prep.spec.progress)
            values.update(scores)
            per_class += records
    if per_class:
        pd.DataFrame(per_class).to_csv(run_dir / "downstream_per_class.csv", index=False)
    return values


def _append(spec: BenchSpec, row: dict[str, Any]) -> None:
    if spec.leaderboard_dir is not None:
        append_rows(Path(spec.leaderboard_dir) / "raw" / f"{spec.dataset}.csv", [row])


def _baseline_rows(spec: BenchSpec, prep: PreparedRun) -> list[dict[str, Any]]:
    """source_a / source_b rows for the same downstream protocol, run only for seeds the raw CSV lacks."""
    if not (prep.evaluators and spec.downstream_baselines) or spec.method in BASELINE_METHODS:
        return []
    existing = read_rows(Path(spec.leaderboard_dir) / "raw" / f"{spec.dataset}.csv") if spec.leaderboard_dir else []
    rows = []
    for baseline in BASELINE_METHODS:
        base_prep = prepare(replace(spec, method=baseline, downstream=list(prep.evaluators), overrides={}))
        done = {r.get("seed") for r in existing if r.get("method") == baseline
                and r.get("config_hash") == base_prep.config_hash and r.get("preset") == spec.preset}
        for seed in spec.seeds:
            if str(seed) in done:
                continue
            row = run_seed(base_prep, seed)
            _append(spec, row)
            rows.append(row)
    return rows


def run_bench(spec: BenchSpec) -> list[dict[str, Any]]:
    """Run every seed, appending each row to <leaderboard_dir>/raw/<dataset>.csv as soon as it exists.

    With downstream evaluators, the source_a/source_b baseline rows follow (see `_baseline_rows`); the
    returned list holds the method's rows first, then any baseline rows that were computed.
    """
    prep = prepare(spec)
    rows = []
    for seed in spec.seeds:
        row = run_seed(prep, seed)
        rows.append(row)
        _append(spec, row)
    rows += _baseline_rows(spec, prep)
    if spec.leaderboard_dir is not None:
        regenerate(Path(spec.leaderboard_dir))
    return rows


def leaderboard_text(leaderboard_dir: Path, dataset: str, preset: str | None = None) -> str:
    aggregated, value_cols = aggregate(read_rows(Path(leaderboard_dir) / "raw" / f"{dataset}.csv"))
    return markdown_table(dataset, aggregated, value_cols, preset)
