"""The benchmark runner: fit (when trainable) -> fuse the test split to lossless PNGs -> score -> downstream ->
append rows.

Downstream (fusion_bench.benchmark.downstream): when the protocol (or `--downstream`) names evaluators, the
train split (and the val split when an evaluator validates) is fused too, SegFormer/YOLO train on the fused
training images and score the fused test images; a SegFusionMethod's own head adds `native_miou`. The IR-only and
visible-only baselines (`source_a`, `source_b`) get the same downstream rows once per dataset/preset/seed
(reused when the raw CSV already has them).

Everything that can be wrong with the request (unknown names, preset, incompatible task, missing data, seeds,
device, output folders, unreadable raw CSVs, a method config its constructor rejects) is checked in `prepare`
before any work starts. The run directory names the test split (`.../<config_hash>/test-<split_hash>/seed<k>`), so
results on different test sets never replace each other. A run holds a lock on its seed directories (a second
identical run stops with an error instead of mixing outputs). Each seed's outputs are built in `<run_dir>.partial`
and moved into place only when complete; an earlier run directory is kept under a `.replaced-<time>` name.

Each split's Dataset is built once per run (shared by every seed) and each test image is decoded once per seed:
one pass fuses it, scores the fused PNG, feeds a segmenting method's own head and keeps the labels the downstream
evaluators need. The seconds of every phase go to `<run_dir>/timings.json`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from filelock import FileLock, Timeout
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import fusion_bench
from fusion_bench import numerics
from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.base.method import MultimodalClassifier, SegFusionMethod, load_method_config
from fusion_bench.benchmark.downstream import (
    EVALUATOR_NAMES,
    NativeSegmentation,
    evaluator_config,
    label_keys,
    needs_val,
    parse_downstream,
    resolve_evaluators,
    run_evaluators,
)
from fusion_bench.benchmark.leaderboard import aggregate, markdown_table, regenerate
from fusion_bench.benchmark.profiling import PeakMemory, count_gflops, count_params_m, fusion_inputs
from fusion_bench.benchmark.protocol import (
    ProtocolError,
    check_preset,
    config_hash,
    load_protocol,
    load_yaml,
    protocol_preset,
)
from fusion_bench.benchmark.provenance import provenance
from fusion_bench.benchmark.results import append_rows, read_rows, row_key, run_directory
from fusion_bench.data.base import FusionDataset
from fusion_bench.data.io import read_image, write_png
from fusion_bench.data.transforms import collate_samples
from fusion_bench.evaluators.common import DownstreamError, resolve_device
from fusion_bench.metrics.folders import MAX_BATCH_PIXELS, batch_limit
from fusion_bench.registry import get_datamodule, get_method
from fusion_bench.types import GT, MASK, NAME, TARGET, Task

GFLOPS_SIZE = (256, 256)
BASELINE_METHODS = ("source_a", "source_b")  # the single-source rows every downstream table carries
SEED_MAX = 2**32 - 1  # numpy's seed range, which Lightning's seed_everything enforces
DEVICES = "auto, cpu, cuda or cuda:N"


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
    config: str | Path | None = None  # a YAML preset section (model/optim/train) over the preset (`--config`)
    downstream: str | Sequence[str] | None = None  # protocol (None), none, or evaluator names: see downstream.py
    downstream_baselines: bool = True  # also bench source_a/source_b downstream when missing from the raw CSV
    resume: bool = False  # reuse complete seeds; continue an interrupted seed from <run_dir>.partial/checkpoints
    # downstream evaluators' numerics: "pinned", "native" (oneDNN kernels, see fusion_bench.numerics) or None (as
    # this process: pinned when it is); the CLI's `bench` defaults to "native"
    downstream_numerics: str | None = None


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
    if kind == "wandb":  # rank 0 of `bench` passes its own run (wandb_log.start_run); this is the other ranks' one
        os.environ.setdefault("WANDB_MODE", "offline")
        try:
            from lightning.pytorch.loggers import WandbLogger

            return WandbLogger(save_dir=str(run_dir / "logs"), project=os.environ.get("WANDB_PROJECT", "fusion_bench"),
                               name=run_dir.parent.name)
        except ModuleNotFoundError as err:
            raise BenchError("the wandb logger needs the wandb extra: pip install 'mmfusion-bench[wandb]'") from err
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
    split_hash: str = ""  # the test split's identity: part of the run directory
    datasets: dict[str, FusionDataset] = field(default_factory=dict)  # split -> Dataset, built once per run
    timings: list[dict[str, Any]] = field(default_factory=list)  # timings.json of every seed run so far
    overrides: dict[str, Any] = field(default_factory=dict)  # effective dotted overrides (--config, then --set)

    @property
    def dialect(self) -> str | None:
        return self.protocol.get("metric_dialect")

    def run_dir(self, seed: int) -> Path:
        s = self.spec
        return run_directory(s.out, s.method, s.dataset, s.preset, self.config_hash, self.split_hash, seed)


def check_seeds(seeds: Sequence[Any], option: str = "--seeds") -> list[int]:
    """Seeds as ints in 0..2**32-1 (at least one); BenchError naming the option otherwise."""
    out = []
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= SEED_MAX:
            raise BenchError(f"{option}: seed {seed!r} is not an integer in 0..{SEED_MAX}")
        out.append(int(seed))
    if not out:
        raise BenchError(f"{option}: no seed given; pass e.g. {option} 0 or 0,1,2")
    return out


def check_device(device: str | torch.device) -> torch.device:
    """auto, cpu, cuda or cuda:N (N an existing GPU) -> torch.device; BenchError naming --device otherwise."""
    if isinstance(device, torch.device):
        return device
    text = str(device).strip()
    kind, _, index = text.partition(":")
    if text not in ("auto", "cpu") and not (kind == "cuda" and (not _ or index.isdigit())):
        raise BenchError(f"--device {device!r}: expected {DEVICES}")
    try:
        out = resolve_device(text)
    except DownstreamError as err:  # a CUDA device without CUDA
        raise BenchError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto"
                         ) from err
    if out.type == "cuda" and out.index is not None and out.index >= torch.cuda.device_count():
        raise BenchError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return out


def check_output_dir(path: str | Path, option: str) -> Path:
    """A folder the run may create or write into: not a file, no file on the way, writable; BenchError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BenchError(f"{option} {path} is a file; expected a folder")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise BenchError(f"{option} {path}: {probe} is a file, so the folder cannot be created there")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BenchError(f"{option} {path}: {probe} is not writable")
    return path


def check_raw_results(leaderboard_dir: Path) -> None:
    """Every raw CSV under leaderboard_dir/raw must parse now (not after the run, when the row is appended and the
    leaderboards regenerated): ResultsFileError naming the file and line otherwise."""
    raw = Path(leaderboard_dir) / "raw"
    for path in sorted(raw.glob("*.csv")) if raw.is_dir() else []:
        read_rows(path)


def method_kwargs(method_cls: type, spec: BenchSpec, config: dict[str, Any], modalities: tuple[str, ...],
                  class_names: Sequence[str] | None) -> dict[str, Any]:
    """The constructor keyword arguments of a method: modalities, the preset's model and optim sections, and
    num_classes for classifiers and methods that train on segmentation labels."""
    kwargs: dict[str, Any] = {"modalities": modalities, **config["model"], **config["optim"]}
    if issubclass(method_cls, MultimodalClassifier) or getattr(method_cls, "needs_class_labels", False):
        if class_names is None:
            raise BenchError(f"method {spec.method!r} needs class labels; dataset {spec.dataset!r} has none")
        kwargs["num_classes"] = len(class_names)
    return kwargs


CONFIG_ERRORS = (TypeError, ValueError, KeyError, FileNotFoundError, RuntimeError)
"""What a method constructor raises for a config value it rejects (RuntimeError: e.g. a negative layer width)."""


def _construct(method_cls: type, spec: BenchSpec, kwargs: dict[str, Any]) -> L.LightningModule:
    try:
        return method_cls(**kwargs)
    except CONFIG_ERRORS as err:
        raise BenchError(f"method {spec.method!r} (preset {spec.preset}): its config does not fit the constructor: "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err


def _holds_meta_tensors(module: Any) -> bool:
    def meta(value: Any) -> bool:
        return isinstance(value, torch.Tensor) and value.device.type == "meta"

    for value in list(vars(module).values()):
        if meta(value) or (isinstance(value, (list, tuple)) and any(meta(v) for v in value)) or \
                (isinstance(value, dict) and any(meta(v) for v in value.values())):
            return True
    return False


def _reimport_meta_constants(names: set[str]) -> None:
    """Modules first imported during a meta-device build made their module-level tensors (constants such as a Sobel
    kernel) on the meta device: re-run those modules now, in place, so that every later build sees real tensors."""
    import importlib
    import sys

    for name in sorted(names):
        module = sys.modules.get(name)
        if module is not None and _holds_meta_tensors(module):
            importlib.reload(module)


def check_method(method_cls: type, spec: BenchSpec, kwargs: dict[str, Any]) -> None:
    """Build the method once on the meta device (no memory, no initialisation cost), so that a config value its
    constructor rejects is a request error before any training. When the meta build fails, the method is built on
    the CPU to tell a real config error (BenchError) from something the meta device cannot do. Modules the
    constructor imported lazily under the meta device are re-run if they hold meta tensors."""
    import sys

    before = set(sys.modules)
    try:
        with torch.device("meta"):
            method_cls(**kwargs)
        built = True
    except Exception:  # noqa: BLE001 - decided by the real build below
        built = False
    finally:
        _reimport_meta_constants(set(sys.modules) - before)
    if not built:
        _construct(method_cls, spec, kwargs)


SECTIONS = ("model", "optim", "train")
TRAIN_KEYS = (
    # the `train` keys the runner reads (datamodule, Trainer, callbacks); a preset's own train keys are valid too
    "max_steps", "max_epochs", "batch_size", "crop_size", "augment", "val_fraction", "precision", "early_stopping",
    "limit_val_batches", "val_check_interval", "check_val_every_n_epoch", "log_every_n_steps",
    "devices", "strategy", "num_nodes", "find_unused_parameters", "compile", "channels_last",
    "checkpoint_every_n_steps",
)
RUNNER_KWARGS = ("modalities",)  # constructor arguments the runner passes itself (and num_classes where it applies)


def constructor_parameters(method_cls: type) -> set[str]:
    """The keyword parameters of a method's constructor, following `**kwargs` up the class hierarchy."""
    import inspect

    names: set[str] = set()
    for cls in method_cls.__mro__:
        if cls in (L.LightningModule, torch.nn.Module, object):
            break
        if "__init__" not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def valid_keys(method_cls: type, config: dict[str, Any]) -> dict[str, list[str]]:
    """Per section, the keys an override may set: the preset's keys, plus the constructor's parameters (model,
    optim) or the runner's TRAIN_KEYS (train)."""
    params = constructor_parameters(method_cls) - set(RUNNER_KWARGS)
    if issubclass(method_cls, MultimodalClassifier) or getattr(method_cls, "needs_class_labels", False):
        params.discard("num_classes")
    extra = {"model": params, "optim": params, "train": set(TRAIN_KEYS)}
    return {section: sorted(set(config.get(section) or {}) | extra[section]) for section in SECTIONS}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """`--config FILE.yaml`: a preset section ({model: {...}, optim: {...}, train: {...}}) as dotted overrides
    (`{"model.width": 8, ...}`); a value replaces the preset's value of that key (a mapping replaces a mapping)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--config {path}: no such file")
    try:
        loaded = load_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BenchError(f"--config {path}: not valid YAML ({' '.join(str(err).split())})") from err
    if loaded is None:
        return {}
    if not isinstance(loaded, dict) or set(loaded) - set(SECTIONS):
        extra = sorted(set(loaded) - set(SECTIONS)) if isinstance(loaded, dict) else type(loaded).__name__
        raise BenchError(f"--config {path}: expected a mapping with the sections {', '.join(SECTIONS)} (a preset of a "
                         f"method's config.yaml), got {extra}")
    out = {}
    for section, values in loaded.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise BenchError(f"--config {path}: section {section!r} must be a mapping of keys to values")
        out.update({f"{section}.{key}": value for key, value in values.items()})
    return out


def apply_overrides(config: dict[str, Any], overrides: dict[str, Any], method: str,
                    valid: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The preset with dotted overrides merged in (`section.key=value`, section: model, optim or train;
    `section.key.sub=value` sets one entry of a mapping value). With `valid` (see `valid_keys`) an unknown key is a
    BenchError naming the valid ones."""
    config = {section: dict(config.get(section) or {}) for section in SECTIONS}
    for key, value in overrides.items():
        section, _, rest = str(key).partition(".")
        parts = rest.split(".") if rest else []
        if section not in config or not parts or not all(parts):
            raise BenchError(f"method {method!r}: --set {key}={value}: expected SECTION.KEY with SECTION one of "
                             f"{', '.join(SECTIONS)}")
        if valid is not None and parts[0] not in valid[section]:
            raise BenchError(f"method {method!r}: --set {key}: unknown key {parts[0]!r} in section {section}; valid "
                             f"{section} keys: {', '.join(valid[section]) or '-'}")
        target = config[section]
        for i, part in enumerate(parts[:-1]):
            inner = target.get(part)
            if inner is None:
                inner = {}
            elif not isinstance(inner, dict):
                raise BenchError(f"method {method!r}: --set {key}: {section}.{'.'.join(parts[:i + 1])} is {inner!r}, "
                                 "not a mapping")
            target[part] = inner = dict(inner)
            target = inner
        target[parts[-1]] = value
    return config


def overrides_text(overrides: dict[str, Any]) -> str:
    """The row's `overrides` column: canonical JSON of the dotted overrides (sorted keys), empty when none."""
    return json.dumps(overrides, sort_keys=True, separators=(",", ":"), default=str) if overrides else ""


def config_section(method_cls: type, name: str) -> str:
    """The section of the method's config.yaml to read: its name; for a `module:Class` path, the section named like
    the class, else the file's only section."""
    if ":" not in name:
        return name
    import inspect

    import yaml

    path = Path(inspect.getfile(method_cls)).parent / "config.yaml"
    sections = list(yaml.safe_load(path.read_text()) or {}) if path.is_file() else []
    if method_cls.__name__ in sections:
        return method_cls.__name__
    return sections[0] if len(sections) == 1 else name


def method_config(method_cls: type, spec: BenchSpec, dataset: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the preset of the method's config.yaml with `--config` and `--set` merged in, the effective dotted
    overrides). A method without a config.yaml (a plug-in) takes its whole preset from --config / --set."""
    overrides = {**(read_config_file(spec.config) if spec.config is not None else {}), **spec.overrides}
    if not getattr(method_cls, "trainable", True):  # nothing to train: train.* cannot change a number
        overrides = {k: v for k, v in overrides.items() if not str(k).startswith("train.")}
    try:
        config = load_method_config(method_cls, config_section(method_cls, spec.method), spec.preset, dataset)
    except FileNotFoundError as err:
        if not overrides:
            raise BenchError(f"{err}: pass the preset with --config FILE.yaml (sections model, optim, train)"
                             ) from err
        config = {section: {} for section in SECTIONS}
    except KeyError as err:
        raise BenchError(str(err)) from err
    config = apply_overrides(config, overrides, spec.method, valid_keys(method_cls, config))
    return resolve_train_precision(config, overrides, check_device(spec.device), spec.method)


def prepare(spec: BenchSpec) -> PreparedRun:
    """Validate the request and resolve everything a run needs (no training, no fusing)."""
    try:
        check_preset(spec.preset)
        if spec.logger not in LOGGERS:
            raise ValueError(f"unknown logger {spec.logger!r}; valid loggers: {', '.join(LOGGERS)}")
        if spec.logger in ("wandb", "tensorboard"):
            import importlib.util

            packages = ("wandb",) if spec.logger == "wandb" else ("tensorboard", "tensorboardX")
            if all(importlib.util.find_spec(p) is None for p in packages):
                raise ValueError(f"--logger {spec.logger} needs the {spec.logger} extra: pip install "
                                 f"'mmfusion-bench[{spec.logger}]'")
        method_cls = get_method(spec.method)
        datamodule_cls = get_datamodule(spec.dataset)
    except (KeyError, ValueError) as err:
        raise BenchError(str(err)) from err
    check_seeds(spec.seeds)
    if isinstance(spec.num_workers, bool) or not isinstance(spec.num_workers, int) or spec.num_workers < 0:
        raise BenchError(f"--num-workers {spec.num_workers!r}: expected an integer >= 0")
    if spec.downstream_numerics not in (None, *numerics.DOWNSTREAM_MODES):
        raise BenchError(f"--downstream-numerics {spec.downstream_numerics!r}: expected one of "
                         f"{', '.join(numerics.DOWNSTREAM_MODES)}")
    device = check_device(spec.device)
    check_output_dir(spec.out, "--out")
    if spec.leaderboard_dir is not None:
        check_output_dir(spec.leaderboard_dir, "--leaderboard-dir")
        check_raw_results(Path(spec.leaderboard_dir))
    task = datamodule_cls.dataset_class.task
    if task not in method_cls.tasks:
        valid = ", ".join(sorted(t.value for t in method_cls.tasks))
        raise BenchError(f"method {spec.method!r} handles {valid}; dataset {spec.dataset!r} is {task.value}")
    config, overrides = method_config(method_cls, spec, spec.dataset)
    try:
        protocol = load_protocol(spec.dataset, task)
    except ProtocolError as err:
        raise BenchError(str(err)) from err
    try:
        root = datamodule_cls.resolve_root(spec.root)
    except (TypeError, ValueError) as err:  # e.g. synthetic generator parameters
        raise BenchError(f"dataset {spec.dataset!r}: {err}") from err
    # Instantiating the test split runs the integrity check now, before any training.
    try:
        test_set = datamodule_cls.dataset_class(root, "test", **spec.dataset_options)
    except (TypeError, ValueError) as err:
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
    evaluators: dict[str, Any] = {}  # evaluator name -> its effective config for this preset
    if task is not Task.CLASSIFICATION:
        try:
            splits = datamodule_cls.dataset_class.available_splits(root, **spec.dataset_options)
            names = resolve_evaluators(parse_downstream(spec.downstream), protocol, test_set, splits)
            evaluators = {name: evaluator_config(name, spec.preset, protocol) for name in names}
        except ValueError as err:
            raise BenchError(str(err)) from err
    check_method(method_cls, spec, method_kwargs(method_cls, spec, config, datamodule_cls.dataset_class.modalities,
                                                 test_set.class_names))
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
    if overrides:  # only when given, so that runs without overrides keep their hashes
        payload["overrides"] = overrides
    prep = PreparedRun(spec, method_cls, datamodule_cls, task, config, protocol, root, config_hash(payload),
                       device, protocol.get("metrics"), evaluators, test_set.split_hash(), {"test": test_set},
                       overrides=overrides)
    build_datamodule(prep, 0)  # the method's train settings (crop, augment, val_fraction) against the datamodule
    if getattr(method_cls, "trainable", False):
        check_train_settings(prep)
    return prep


def build_method(prep: PreparedRun, datamodule: PairedDataModule) -> L.LightningModule:
    kwargs = method_kwargs(prep.method_cls, prep.spec, prep.config, datamodule.modalities,
                           datamodule.dataset("test").class_names)  # an instance: options may change the classes
    return _construct(prep.method_cls, prep.spec, kwargs)


def build_datamodule(prep: PreparedRun, seed: int) -> PairedDataModule:
    """The datamodule of one seed; it shares the run's datasets (each split is built once per run)."""
    train = prep.config["train"]
    augment = {"augment": train["augment"]} if train.get("augment") else {}  # PairedDataModule's train augmentation
    try:
        datamodule = prep.datamodule_cls(root=prep.root, batch_size=train.get("batch_size", 4),
                                         crop_size=train.get("crop_size"), seed=seed,
                                         num_workers=prep.spec.num_workers, val_fraction=train.get("val_fraction", 0.0),
                                         **augment, **prep.spec.dataset_options)
    except ValueError as err:
        raise BenchError(f"method {prep.spec.method!r}: train settings: {err}") from err
    datamodule.share_datasets(prep.datasets)
    return datamodule


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


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


class FitProgress(L.Callback):
    """One progress bar over the whole fit (optimizer steps of all epochs) with an ETA and the latest loss;
    replaces Lightning's per-epoch bar, whose ETA covers one epoch only."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        total = trainer.estimated_stepping_batches
        self.bar = tqdm(total=None if math.isinf(total) else int(total), desc=self.desc, unit="step", leave=False)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.bar is None:
            return
        self.bar.update(max(0, trainer.global_step - self.bar.n))
        loss = trainer.callback_metrics.get("train/loss", trainer.callback_metrics.get("loss"))
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


CHECKPOINT_INTERVAL_MIN = 15.0  # default minutes between resumable checkpoints (train.checkpoint_every_n_steps: steps)


def _int_or_none(train: dict[str, Any], key: str, minimum: int) -> None:
    value = train.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise BenchError(f"train.{key} {value!r}: expected an integer >= {minimum}")


def check_train_settings(prep: PreparedRun) -> None:
    """The `train` values the runner reads have the right types, and the Trainer accepts the devices, strategy and
    precision (built once without running anything); BenchError naming the key otherwise."""
    _quiet_lightning()
    train = prep.config["train"]
    for key, minimum in (("max_steps", -1), ("max_epochs", -1), ("batch_size", 1), ("log_every_n_steps", 1),
                         ("check_val_every_n_epoch", 1), ("checkpoint_every_n_steps", 1), ("num_nodes", 1)):
        _int_or_none(train, key, minimum)
    compile_settings(train)
    if not isinstance(train.get("channels_last", False), bool):
        raise BenchError(f"train.channels_last {train['channels_last']!r}: expected true or false")
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    kwargs = trainer_kwargs(prep, has_val=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(**kwargs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as err:
        raise BenchError(f"method {prep.spec.method!r}: train settings: {str(err).splitlines()[0]}") from err


BF16_AUTO = "bf16-auto"
# train.precision: Lightning's precision values (the canonical ones first, then its aliases) and bf16-auto
PRECISIONS: tuple[str | int, ...] = (
    "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine",
    "transformer-engine-float16", "32", "16", "bf16", "64", 32, 16, 64, BF16_AUTO,
)


def cuda_bf16_supported(device: torch.device) -> bool:
    """Whether `device` is a CUDA device with native bf16 (compute capability 8.0+; emulation does not count)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(value: Any, device: torch.device, method: str) -> str | int:
    """`train.precision` -> what the Trainer gets: `bf16-auto` is bf16-mixed on a CUDA device that supports bf16,
    32-true otherwise; the other PRECISIONS stay as they are; anything else is a BenchError naming the valid values."""
    if type(value) not in (str, int) or value not in PRECISIONS:
        raise BenchError(f"method {method!r}: train.precision {value!r}: expected one of "
                         f"{', '.join(str(p) for p in PRECISIONS if isinstance(p, str))}")
    if value == BF16_AUTO:
        return "bf16-mixed" if cuda_bf16_supported(device) else "32-true"
    return value


def resolve_train_precision(config: dict[str, Any], overrides: dict[str, Any], device: torch.device,
                            method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, overrides) with `train.precision` checked and `bf16-auto` replaced by what it resolves to on
    `device`, so that the config hash, the row's `overrides` column and model.pt record the precision that ran."""
    train = config.get("train") or {}
    if "precision" not in train:
        return config, overrides
    resolved = resolve_precision(train["precision"], device, method)
    if resolved == train["precision"]:
        return config, overrides
    config = {**config, "train": {**train, "precision": resolved}}
    overrides = {k: resolved if k == "train.precision" and v == BF16_AUTO else v for k, v in overrides.items()}
    return config, overrides


def channels_last(batch: Any) -> Any:
    """The 4-D floating-point tensors of a batch (dicts and lists changed in place) in torch.channels_last."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 and batch.is_floating_point() \
            else batch
    if isinstance(batch, dict):
        for key, value in batch.items():
            batch[key] = channels_last(value)
    elif isinstance(batch, list):
        batch[:] = [channels_last(value) for value in batch]
    return batch


class ChannelsLast(L.Callback):
    """`train.channels_last`: the training and validation batches in torch.channels_last (on the device, before the
    step); `fit_method` converts the method's networks before the fit."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        channels_last(batch)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        channels_last(batch)


def compile_settings(train: dict[str, Any]) -> dict[str, Any] | None:
    """`train.compile`: false/absent (None), true ({}), or torch.compile keyword arguments (mode, backend, ...)."""
    value = train.get("compile")
    if value in (None, False):
        return None
    if value is True:
        return {}
    if isinstance(value, dict) and set(value) <= {"mode", "backend", "fullgraph", "dynamic", "options"}:
        return dict(value)
    raise BenchError(f"train.compile {value!r}: expected true, false or a mapping of torch.compile arguments "
                     "(mode, backend, fullgraph, dynamic, options)")


def compile_method(model: L.LightningModule, settings: dict[str, Any]) -> list[str]:
    """torch.compile, in place, every top-level submodule of the method that holds parameters (its networks), so the
    method's own code (training_step, fuse) runs the compiled modules and the state dict keeps its keys. Returns the
    compiled submodules' names."""
    names = []
    for name, child in model.named_children():
        if any(True for _ in child.parameters()):
            child.compile(**settings)
            names.append(name)
    return names


def trainer_kwargs(prep: PreparedRun, has_val: bool) -> dict[str, Any]:
    """The Trainer arguments that come from the run's `train` settings and device (see TRAIN_KEYS)."""
    from fusion_bench.benchmark.distributed import DistributedSettingsError, trainer_settings

    train = prep.config["train"]
    try:
        devices = trainer_settings(train, prep.device, prep.method_cls)
    except DistributedSettingsError as err:
        raise BenchError(f"method {prep.spec.method!r}: {err}") from err
    return {
        **devices,
        "max_steps": train.get("max_steps", -1),
        "max_epochs": train.get("max_epochs", -1 if "max_steps" in train else None),
        "deterministic": True if prep.device.type == "cpu" else "warn",
        "num_sanity_val_steps": 0,
        "limit_val_batches": train.get("limit_val_batches", 1.0) if has_val else 0,
        "val_check_interval": train.get("val_check_interval"),
        "check_val_every_n_epoch": train.get("check_val_every_n_epoch", 1),
        "log_every_n_steps": train.get("log_every_n_steps", 10),
        "precision": train.get("precision", "32-true"),
    }


class PinNumerics(L.Callback):
    """Applies the pinned runtime switches (fusion_bench.numerics) in every training process, including the ones
    `ddp_spawn` starts (they inherit the environment but not oneDNN/thread settings)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        numerics.apply_runtime()


class CheckpointOnInterrupt(L.Callback):
    """Saves `path` when the fit stops on an exception (Ctrl-C, a signal Lightning turns into one, an error), so that
    `--resume` continues from there. (Lightning's OnExceptionCheckpoint would also make every later fit resume from
    its file without being asked.)"""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        trainer.save_checkpoint(self.path)


class GatherWeights(L.Callback):
    """At the end of training, the full state dict on rank 0 (gathered from the shards when the strategy shards the
    weights, e.g. FSDP; every rank must take part, so this runs inside the fit)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from fusion_bench.benchmark.distributed import is_sharded

        if is_sharded(trainer):
            self.state = trainer.strategy.lightning_module_state_dict()


def checkpoint_dir(run_dir: Path) -> Path:
    """Where a fit keeps its resumable Lightning checkpoints (`last.ckpt`)."""
    return run_dir / "checkpoints"


def fit_method(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
               resume: bool = False, logger: Any = None) -> tuple[L.LightningModule, float]:
    """Train with Lightning (logs under run_dir/logs, checkpoints under run_dir/checkpoints); returns the trained
    model and the seconds spent. Rank 0 also saves `run_dir/model.pt`.

    `train` keys (TRAIN_KEYS): max_steps / max_epochs, batch_size, crop_size, augment, precision, val_fraction (hold
    out part of train when the dataset has no val split), early_stopping {monitor, patience, mode},
    limit_val_batches, val_check_interval, check_val_every_n_epoch, log_every_n_steps; devices, strategy, num_nodes,
    find_unused_parameters (fusion_bench.benchmark.distributed); compile (torch.compile of the method's networks;
    off by default: it changes numbers at the float level, so no smoke preset uses it); checkpoint_every_n_steps.

    Precision and memory layout (opt-in; the `paper` presets keep what the authors trained with, mostly fp32):
    `precision` is a Lightning precision (PRECISIONS; default 32-true) or `bf16-auto`, which `method_config`
    resolves to bf16-mixed on a CUDA device that supports bf16 and to 32-true elsewhere (the resolved value is what
    the Trainer gets, the config hash, the row's `overrides` and model.pt record). `channels_last: true` puts the
    method's networks (before the fit; modules a method builds during the fit keep their layout) and the 4-D batch
    tensors in torch.channels_last (ChannelsLast). tests/test_precision.py measures both against fp32 on CPU.

    Checkpoints: `last.ckpt` (Lightning's ModelCheckpoint, save_last) every CHECKPOINT_INTERVAL_MIN minutes of
    training, or every `checkpoint_every_n_steps` steps, on an exception or Ctrl-C, and once at the end of the fit.
    With `resume`, a fit continues from `run_dir/checkpoints/last.ckpt` when it exists (weights, optimizer, schedule,
    step counters, callback state such as an EMA).
    """
    from datetime import timedelta

    from lightning.pytorch.callbacks import ModelCheckpoint

    _quiet_lightning()
    train = prep.config["train"]
    has_val = datamodule.has_validation
    callbacks = early_stopping_callbacks(train, has_val, prep.spec.method)
    if prep.spec.progress:
        callbacks.append(FitProgress(f"fit {prep.spec.method} on {prep.spec.dataset}"))
    ckpt_dir = checkpoint_dir(run_dir)
    every = train.get("checkpoint_every_n_steps")
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="step{step}", save_top_k=0, save_last=True,
                                 every_n_train_steps=every,
                                 train_time_interval=None if every else timedelta(minutes=CHECKPOINT_INTERVAL_MIN))
    gather = GatherWeights()
    callbacks += [checkpoint, CheckpointOnInterrupt(ckpt_dir / "last.ckpt"), PinNumerics(), gather]
    if train.get("channels_last"):
        callbacks.append(ChannelsLast())
        model.to(memory_format=torch.channels_last)
    trainer = L.Trainer(
        **trainer_kwargs(prep, has_val),
        logger=logger if logger is not None else make_logger(prep.spec.logger, run_dir),
        enable_checkpointing=True,
        callbacks=callbacks,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    compiled = compile_settings(train)
    if compiled is not None:
        compile_method(model, compiled)
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    trainer.save_checkpoint(last)  # the finished fit: a resumed run whose evaluation failed goes straight to it
    seconds = time.perf_counter() - start
    if gather.state is not None and trainer.is_global_zero:  # sharded weights: a whole copy for fusing on rank 0
        model = build_method(prep, datamodule)
        model.load_state_dict(gather.state)
    if trainer.is_global_zero:
        save_weights(model, prep, run_dir / "model.pt")
    return model, seconds


def fit(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
        resume: bool = False) -> float:
    """`fit_method` for callers that keep `model` (every strategy but FSDP trains it in place); returns seconds."""
    return fit_method(prep, model, datamodule, run_dir, resume)[1]


def save_weights(model: L.LightningModule, prep: PreparedRun, path: Path) -> None:
    """Weights plus what they were made with (method, preset, config): plain dicts, strings and tensors only, so
    that `load_weights` can read them with torch.load(weights_only=True)."""
    torch.save({"method": prep.spec.method, "preset": prep.spec.preset, "config": prep.config,
                "state_dict": model.state_dict()}, path)


def read_weights(path: str | Path, method: str, preset: str | None = None,
                 config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The state dict of a weights file from `fit` / `fusion-bench train`, after checking what it was made with.

    The file is unpickled with torch.load(weights_only=True): only tensors and plain containers load, so a file that
    carries code (a pickled object with __reduce__, ...) is refused and nothing in it runs. The recorded method,
    preset and model settings must match the request; every refusal is a BenchError naming the file.
    """
    import pickle
    import re
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--weights {path}: no such file")
    if not zipfile.is_zipfile(path):
        raise BenchError(f"--weights {path}: not a readable weights file (expected the torch.save archive written by "
                         "`fusion-bench train`)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        what = f" (it refers to {found.group(1)})" if found else ""
        raise BenchError(f"--weights {path}: refused: the file holds more than tensors and plain data{what}; only "
                         "weights saved by `fusion-bench train` load, and nothing in the file was run") from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise BenchError(f"--weights {path}: not a readable weights file: {str(err).splitlines()[0]}") from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise BenchError(f"--weights {path}: not a fusion-bench weights file (expected a dict with method, preset, "
                         "config and state_dict, as written by `fusion-bench train`)")
    if checkpoint.get("method") != method:
        raise BenchError(f"--weights {path} holds weights of method {checkpoint.get('method')!r}, not {method!r}")
    if preset is not None and checkpoint.get("preset") not in (None, preset):
        raise BenchError(f"--weights {path} holds weights of preset {checkpoint.get('preset')!r}; pass --preset "
                         f"{checkpoint.get('preset')} (or weights trained with --preset {preset})")
    recorded = (checkpoint.get("config") or {}).get("model") if isinstance(checkpoint.get("config"), dict) else None
    if config is not None and recorded is not None and recorded != config.get("model"):
        keys = sorted(k for k in set(recorded) | set(config["model"]) if recorded.get(k) != config["model"].get(k))
        raise BenchError(f"--weights {path} was trained with other model settings than preset {preset!r} now has "
                         f"(differing: {', '.join(keys)})")
    return checkpoint["state_dict"]


def load_weights(model: L.LightningModule, path: str | Path, method: str, preset: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
    """Load weights saved by `fit` (or `fusion-bench train`) into `model` (see `read_weights` for the checks)."""
    state = read_weights(path, method, preset, config)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise BenchError(f"--weights {path} does not fit method {method!r} as configured now: "
                         f"{str(err).splitlines()[0]}") from err


@dataclass
class SplitPass:
    """What one pass over a split produced (see `fuse_split`)."""

    split: str
    n_images: int
    split_hash: str
    fuse_ms: float  # mean milliseconds of model.fuse per image
    channels: tuple[int, int] | None  # source channels of the first sample (the GFLOPs inputs)
    seconds: dict[str, float]  # phase -> seconds: fuse (decode, fuse, write), score, native_seg
    per_image: pd.DataFrame | None = None  # metric values per image (score=True)
    labels: LabelView | None = None  # the labels the downstream evaluators read (label_keys)
    native: tuple[dict[str, float], list[dict]] | None = None  # native segmentation scores, per-class records


class LabelView(torch.utils.data.Dataset):
    """A split's labels as decoded during the runner's pass (name, mask, boxes/labels and each modality's size as a
    zero-stride placeholder), standing in for the Dataset where the downstream evaluators read labels, so no image
    is decoded again. Everything else (samples, class names, ...) is the dataset's."""

    def __init__(self, dataset: FusionDataset, samples: list[dict[str, Any]]):
        self._dataset = dataset
        self._samples = samples

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._samples[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._dataset, name)


def _label_sample(sample: dict[str, Any], keys: Sequence[str], modalities: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {NAME: sample[NAME]}
    for key in modalities:
        if isinstance(sample.get(key), torch.Tensor):
            out[key] = torch.zeros((), dtype=torch.uint8).expand(*sample[key].shape)  # its size, no memory
    for key in keys:
        if key not in sample:
            continue
        value = sample[key]
        if key == MASK and value.numel() and 0 <= int(value.min()) and int(value.max()) <= 255:
            value = value.to(torch.uint8)  # the segmentation evaluator keeps uint8 masks too
        out[key] = value
    return out


class _Scorer:
    """Scores fused PNGs against their sources in batches of same-shaped images (at most `batch_size` images and
    MAX_BATCH_PIXELS pixels per batch; pending images are flushed when they hold more than 4x that), one row per
    image in dataset order."""

    def __init__(self, prep: PreparedRun, dataset: FusionDataset, batch_size: int = 8):
        from fusion_bench.metrics import get_dialect

        self.prep, self.dataset, self.batch_size = prep, dataset, batch_size
        self.dialect = get_dialect(prep.dialect)
        self.groups: dict[tuple, list[tuple]] = defaultdict(list)
        self.records: list[dict[str, Any]] = []
        self.pending_pixels = 0

    def add(self, name: str, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor, gt: torch.Tensor | None) -> None:
        key = (tuple(a.shape), tuple(b.shape), tuple(fused.shape), None if gt is None else tuple(gt.shape))
        self.groups[key].append((name, a, b, fused, gt))
        self.pending_pixels += a.shape[-2] * a.shape[-1]
        if len(self.groups[key]) >= batch_limit(a.shape[-2], a.shape[-1], self.batch_size):
            self._flush(key)
        while self.pending_pixels > 4 * MAX_BATCH_PIXELS and self.groups:
            self._flush(max(self.groups, key=lambda k: len(self.groups[k]) * k[0][-2] * k[0][-1]))

    def _flush(self, key: tuple) -> None:
        items = self.groups.pop(key)
        self.pending_pixels -= len(items) * key[0][-2] * key[0][-1]
        gt = torch.stack([i[4] for i in items]) if items[0][4] is not None else None
        try:
            scores = self.dialect.compute(torch.stack([i[1] for i in items]), torch.stack([i[2] for i in items]),
                                          torch.stack([i[3] for i in items]), metrics=self.prep.metric_names, gt=gt)
        except ValueError as err:  # e.g. an image smaller than a metric's window
            raise BenchError(f"{self.dataset.name}/{self.dataset.split}: cannot score {', '.join(i[0] for i in items)} "
                             f"(size {key[0][-2]}x{key[0][-1]}) with dialect {self.prep.dialect!r}: {err}") from err
        for j, item in enumerate(items):
            self.records.append({"name": item[0], **{m: float(v[j]) for m, v in scores.items()}})

    def finish(self) -> pd.DataFrame:
        for key in list(self.groups):
            self._flush(key)
        order = {s.name: i for i, s in enumerate(self.dataset.samples)}
        return pd.DataFrame(self.records).sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)


def fuse_split(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, fused_dir: Path,
               split: str = "test", *, score: bool = False, label_keys: Sequence[str] = (),
               native: bool = False) -> SplitPass:
    """One pass over a split: decode each sample once, fuse it to `fused_dir/<name>.png` and, as asked, score the
    fused PNG read back from disk against the sources (`score`), run a SegFusionMethod's own head on the same
    inputs (`native`) and keep the labels in `label_keys` for the downstream evaluators. Decoded sources are kept
    only until their batch is scored."""
    dataset = datamodule.dataset(split)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=prep.spec.num_workers,
                        collate_fn=collate_samples)
    model = model.to(prep.device).eval()
    a_key, b_key = datamodule.modalities
    scorer = _Scorer(prep, dataset) if score else None
    native_seg = NativeSegmentation(dataset, prep.device) if native else None
    labels: list[dict[str, Any]] | None = [] if label_keys else None
    times: list[float] = []
    seconds = {"fuse": 0.0, **({"score": 0.0} if score else {}), **({"native_seg": 0.0} if native else {})}
    channels = None
    what = "fuse" + ("+score" if score else "") + ("+segment" if native else "")
    fused_dir.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"{what} {prep.spec.method} on {prep.spec.dataset}/{split}",
                          disable=not prep.spec.progress, leave=False):
            sample = {k: v[0] for k, v in batch.items()}
            x1, x2 = batch[a_key].to(prep.device), batch[b_key].to(prep.device)
            channels = channels or (int(x1.shape[1]), int(x2.shape[1]))
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
            path = write_png(fused_dir / f"{sample[NAME]}.png", fused[0].cpu())
            if labels is not None:
                labels.append(_label_sample(sample, label_keys, datamodule.modalities))
            now = time.perf_counter()
            seconds["fuse"] += now - clock
            clock = now
            if native_seg is not None:
                native_seg.update(model, x1, x2, batch[MASK])
                now = time.perf_counter()
                seconds["native_seg"] += now - clock
                clock = now
            if scorer is not None:  # the metrics are computed on the PNG on disk, never on the in-memory tensor
                scorer.add(sample[NAME], sample[a_key], sample[b_key], read_image(path, mode=None), sample.get(GT))
                now = time.perf_counter()
                seconds["score"] += now - clock
                clock = now
        per_image = None
        if scorer is not None:
            per_image = scorer.finish()
            seconds["score"] += time.perf_counter() - clock
    return SplitPass(split, len(dataset), dataset.split_hash(), float(np.mean(times)) if times else math.nan,
                     channels, seconds, per_image, LabelView(dataset, labels) if labels is not None else None,
                     native_seg.compute() if native_seg is not None else None)


def evaluate_classifier(prep: PreparedRun, model: L.LightningModule,
                        datamodule: PairedDataModule) -> tuple[dict[str, float], int, str, dict[str, Any] | None]:
    """Accuracy and macro-F1 of the fused logits, accuracy of each unimodal head, on the test split; also the
    first test sample as a batch of one (the GFLOPs input)."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    dataset = datamodule.dataset("test")
    loader = DataLoader(dataset, batch_size=64, shuffle=False, num_workers=prep.spec.num_workers,
                        collate_fn=collate_samples)
    model = model.to(prep.device).eval()
    outputs: dict[str, list[torch.Tensor]] = defaultdict(list)
    targets = []
    first = None
    with torch.no_grad():
        for batch in tqdm(loader, desc="evaluate", disable=not prep.spec.progress, leave=False):
            if first is None:
                first = {k: v[:1] for k, v in batch.items()}
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
    return result, len(dataset), dataset.split_hash(), first


def _gflops(prep: PreparedRun, model: L.LightningModule, channels: tuple[int, int] | None,
            batch: dict[str, Any] | None) -> float:
    """GFLOPs of one fuse at GFLOPS_SIZE (random inputs with the sources' channels), or of one classifier call."""
    model = model.to(prep.device).eval()
    if prep.task is Task.CLASSIFICATION:
        if batch is None:
            return math.nan
        batch = {k: v.to(prep.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return count_gflops(lambda: model(batch))
    if channels is None:
        return math.nan
    x1, x2 = fusion_inputs(channels, *GFLOPS_SIZE, prep.device)
    return count_gflops(lambda: model.fuse(x1, x2))


class PhaseTimer:
    """Seconds per phase of a seed (`with timer("fit"):`), in the order first seen."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add({phase: time.perf_counter() - start})

    def add(self, seconds: dict[str, float]) -> None:
        for phase, value in seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + value

    def summary(self) -> dict[str, float]:
        """The phases, `other` (set-up, GFLOPs, writing) and `total` (wall seconds of the seed)."""
        total = time.perf_counter() - self.start
        return {**self.seconds, "other": max(0.0, total - sum(self.seconds.values())), "total": total}


@contextlib.contextmanager
def seed_locks(prep: PreparedRun, seeds: Sequence[int]) -> Iterator[None]:
    """Hold `<run_dir>.lock` for every seed: a second run of the same experiment (same method, config, test split,
    seed and --out) stops with a BenchError instead of writing into the same directories. The OS drops the locks
    of a killed process, so a crash never leaves a stale lock. On a file system without locks (some cluster file
    systems refuse flock) the run goes on unlocked, with a warning (a grid never runs one seed twice at once)."""
    locks: list[FileLock] = []
    try:
        for seed in seeds:
            run_dir = prep.run_dir(seed)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(run_dir.with_name(run_dir.name + ".lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise BenchError(f"another fusion-bench run is computing {run_dir} (lock {lock.lock_file} is held): "
                                 "wait for it to finish, or pass another --out") from None
            except OSError as err:  # e.g. ENOSYS/ENOLCK: the file system has no locks
                warnings.warn(f"{lock.lock_file}: cannot lock ({err}); running without the seed lock", stacklevel=2)
                continue
            locks.append(lock)
        yield
    finally:
        for lock in reversed(locks):
            lock.release()


def _finalize_dir(partial: Path, final: Path) -> None:
    if final.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        final.rename(final.with_name(f"{final.name}.replaced-{stamp}"))
    partial.rename(final)


def nan_summary(per_image: pd.DataFrame) -> dict[str, Any]:
    """`n_nan` (NaN per-image values in all) and `nan_metrics` ("CC:2;SCD:2") of a per-image table."""
    counts = {m: int(per_image[m].isna().sum()) for m in per_image.columns if m != "name"}
    counts = {m: n for m, n in counts.items() if n}
    return {"n_nan": sum(counts.values()), "nan_metrics": ";".join(f"{m}:{n}" for m, n in counts.items())}


def start_wandb(prep: PreparedRun, seed: int, run_dir: Path) -> Any:
    from fusion_bench.benchmark.wandb_log import start_run

    return start_run(prep, seed, run_dir)


def wandb_logger(run: Any) -> Any:
    from fusion_bench.benchmark.wandb_log import lightning_logger

    return lightning_logger(run)


def prepare_partial(partial: Path, resume: bool) -> None:
    """The seed's work folder: emptied (a killed run's leftovers) unless `resume`, which keeps its checkpoints and
    the interrupted fit's training logs (as `logs-until-<time>`; everything else is recomputed)."""
    if partial.exists():
        if not resume:
            shutil.rmtree(partial)
        else:
            for item in partial.iterdir():
                if item.name == "logs":
                    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
                    item.rename(item.with_name(f"logs-until-{stamp}"))
                elif item.name != "checkpoints" and not item.name.startswith("logs-until-"):
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    partial.mkdir(parents=True, exist_ok=True)


def finish_partial(partial: Path, final: Path) -> None:
    """Drop the resumable checkpoints (the weights are in model.pt) and move the seed's folder into place."""
    shutil.rmtree(checkpoint_dir(partial), ignore_errors=True)
    _finalize_dir(partial, final)


def run_seed(prep: PreparedRun, seed: int) -> dict[str, Any] | None:
    """One seed (the caller holds its lock, see `seed_locks`): returns the result row (not yet written); the
    seconds per phase go to `<run_dir>/timings.json`. In a multi-process fit, ranks other than 0 only train and
    return None (fusion_bench.benchmark.distributed)."""
    from fusion_bench.benchmark.distributed import is_rank_zero

    lead = is_rank_zero()
    timer = PhaseTimer()
    L.seed_everything(seed, workers=True, verbose=False)
    memory = PeakMemory(prep.device).start()
    run_dir = prep.run_dir(seed)
    partial = run_dir.with_name(run_dir.name + ".partial")
    if lead:  # left by a killed run (we hold the lock): start over, or continue from its checkpoint with --resume
        prepare_partial(partial, prep.spec.resume)
    wandb_run = start_wandb(prep, seed, partial) if lead and prep.spec.logger == "wandb" else None
    try:
        datamodule = build_datamodule(prep, seed)
        model = build_method(prep, datamodule)
        train_s = 0.0
        if model.trainable:
            logger = wandb_logger(wandb_run) if wandb_run is not None else None
            with timer("fit"):
                model, train_s = fit_method(prep, model, datamodule, partial, prep.spec.resume, logger)
        if not lead:
            return None
        row = evaluate_seed(prep, model, datamodule, partial, seed, train_s, timer=timer, memory=memory,
                            wandb_run=wandb_run)
    finally:
        memory.stop()
        if wandb_run is not None:
            wandb_run.finish()
    finish_partial(partial, run_dir)
    prep.timings.append(row.pop("_timings"))
    return row


def evaluate_seed(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
                  seed: int, train_s: float, train_mixture: str = "", timer: PhaseTimer | None = None,
                  memory: PeakMemory | None = None, wandb_run: Any = None) -> dict[str, Any]:
    """Score a (trained) model on the test split: fused PNGs, per-image metrics, downstream, efficiency and
    provenance under `run_dir` (with its row.csv and timings.json); returns the row, with the timings under the
    key `_timings` (not a column). `train_mixture` names the datasets the model was trained on when that is not
    just `prep`'s dataset (fusion_bench.benchmark.mixture). `memory`: started at the seed's beginning (peak_mem_mb
    is its peak up to the end of scoring; default: from now). `wandb_run`: the row, the downstream evaluators' curves
    and a few fused images also go to this wandb run (fusion_bench.benchmark.wandb_log)."""
    timer = timer or PhaseTimer()
    memory = memory or PeakMemory(prep.device).start()
    row: dict[str, Any] = {
        "method": prep.spec.method,
        "dataset": prep.spec.dataset,
        "task": prep.task.value,
        "preset": prep.spec.preset,
        "seed": seed,
        "config_hash": prep.config_hash,
        "metric_dialect": prep.dialect or "",
        "train_mixture": train_mixture,
        "overrides": overrides_text(prep.overrides),
    }
    test: SplitPass | None = None
    first_batch = None
    if prep.task is Task.CLASSIFICATION:
        with timer("evaluate"):
            scores, n_images, split_hash, first_batch = evaluate_classifier(prep, model, datamodule)
        row.update(scores)
        fuse_ms = math.nan
    else:
        test_set = datamodule.dataset("test")
        test = fuse_split(prep, model, datamodule, run_dir / "fused", score=True,
                          label_keys=label_keys(list(prep.evaluators)),
                          native=isinstance(model, SegFusionMethod) and test_set.class_names is not None)
        timer.add(test.seconds)
        fuse_ms, n_images, split_hash = test.fuse_ms, test.n_images, test.split_hash
        per_image = test.per_image
        assert per_image is not None
        per_image.to_csv(run_dir / "metrics_per_image.csv", index=False)
        row.update({m: float(per_image[m].mean()) for m in per_image.columns if m != "name"})
        row.update(nan_summary(per_image))
    peak_mem = memory.peak_mb()  # the method's own peak, before the in-process downstream evaluators run
    if test is not None:
        row.update(run_downstream(prep, model, datamodule, run_dir, seed, test, timer))
    with timer("gflops"):
        gflops = _gflops(prep, model, test.channels if test else None, first_batch)
    row.update({
        "params_m": count_params_m(model),
        "gflops": gflops,
        "fuse_ms_per_image": fuse_ms,
        "train_s": train_s,
        "peak_mem_mb": peak_mem,
        "n_images": n_images,
        "split_hash": split_hash,
        **provenance(prep.device),
    })
    if prep.evaluators and numerics.is_pinned() and not numerics.downstream_pinned(prep.spec.downstream_numerics):
        row["numerics"] += ";downstream=native"  # the downstream scores came from the libraries' own kernels
    pd.DataFrame([row]).to_csv(run_dir / "row.csv", index=False)
    if wandb_run is not None:
        from fusion_bench.benchmark.wandb_log import log_results

        log_results(wandb_run, row, run_dir)
    timings = {"method": prep.spec.method, "dataset": prep.spec.dataset, "preset": prep.spec.preset, "seed": seed,
               "seconds": {k: round(v, 3) for k, v in timer.summary().items()}}
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    row["_timings"] = timings
    return row


def run_downstream(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
                   seed: int, test: SplitPass, timer: PhaseTimer | None = None) -> dict[str, float]:
    """Native segmentation scores from the test pass and the downstream evaluators; per-class values go to
    `run_dir/downstream_per_class.csv`, evaluator logs to `run_dir/downstream/<evaluator>/`. The train (and val)
    splits are fused in one pass each that keeps their labels; the evaluators read labels from those passes.
    Seconds go to `timer` as fuse_train / fuse_val and one phase per evaluator (seg, det)."""
    timer = timer or PhaseTimer()
    values: dict[str, float] = {}
    per_class: list[dict[str, Any]] = []
    if test.native is not None:
        values.update(test.native[0])
        per_class += test.native[1]
    if prep.evaluators:
        if test.labels is None:
            raise BenchError("internal: the test pass kept no labels for the downstream evaluators")
        splits = ["train"]
        if "val" in datamodule.available_splits() and any(needs_val(n, c) for n, c in prep.evaluators.items()):
            splits.append("val")
        fused = {"test": run_dir / "fused"}
        labelled: dict[str, Any] = {"test": test.labels}
        for split in splits:
            fused[split] = run_dir / f"fused_{split}"
            result = fuse_split(prep, model, datamodule, fused[split], split=split,
                                label_keys=label_keys(list(prep.evaluators)))
            timer.add({f"fuse_{split}": result.seconds["fuse"]})
            labelled[split] = result.labels
        scores, records, seconds = run_evaluators(prep.evaluators, fused, labelled, seed, prep.device,
                                                  run_dir / "downstream", prep.spec.progress,
                                                  prep.spec.downstream_numerics)
        timer.add(seconds)  # seg and det overlap when they run in parallel (downstream.run_in_parallel)
        values.update(scores)
        per_class += records
    if per_class:
        pd.DataFrame(per_class).to_csv(run_dir / "downstream_per_class.csv", index=False)
    return values


def _append(spec: BenchSpec, row: dict[str, Any]) -> None:
    if spec.leaderboard_dir is not None:
        append_rows(Path(spec.leaderboard_dir) / "raw" / f"{spec.dataset}.csv", [row])


def completed_row(prep: PreparedRun, seed: int) -> dict[str, str] | None:
    """The row of a seed whose run directory is complete (its row.csv, as text), else None."""
    rows = read_rows(prep.run_dir(seed) / "row.csv")
    return rows[0] if len(rows) == 1 else None


def _done_or_run(spec: BenchSpec, prep: PreparedRun, seed: int) -> dict[str, Any] | None:
    """With --resume, a seed whose run directory is complete is not run again: its row.csv is the row (appended to
    the raw CSV when missing there). Otherwise the seed runs."""
    if spec.resume:
        done = completed_row(prep, seed)
        if done is not None:
            existing = read_rows(Path(spec.leaderboard_dir) / "raw" / f"{spec.dataset}.csv") \
                if spec.leaderboard_dir is not None else []
            if row_key(done) not in {row_key(r) for r in existing}:
                _append(spec, done)
            return done
    row = run_seed(prep, seed)
    if row is not None:
        _append(spec, row)
    return row


def _baseline_rows(spec: BenchSpec, prep: PreparedRun, timings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """source_a / source_b rows for the same downstream protocol, run only for seeds the raw CSV lacks."""
    if not (prep.evaluators and spec.downstream_baselines) or spec.method in BASELINE_METHODS:
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
                row = run_seed(base_prep, seed)
            if row is not None:
                _append(spec, row)
                rows.append(row)
        timings += base_prep.timings
    return rows


def baseline_spec(spec: BenchSpec, baseline: str, evaluators: Sequence[str]) -> BenchSpec:
    """The request of a source_a/source_b downstream baseline next to `spec` (never the method's overrides)."""
    return replace(spec, method=baseline, downstream=list(evaluators), overrides={}, config=None,
                   downstream_baselines=False)


def run_bench(spec: BenchSpec, timings: list[dict[str, Any]] | None = None,
              prep: PreparedRun | None = None) -> list[dict[str, Any]]:
    """Run every seed, appending each row to <leaderboard_dir>/raw/<dataset>.csv as soon as it exists.

    With downstream evaluators, the source_a/source_b baseline rows follow (see `_baseline_rows`); the
    returned list holds the method's rows first, then any baseline rows that were computed. The seeds'
    directories are locked for the whole run (`seed_locks`). `timings` (optional) receives each seed's
    seconds per phase (as in its timings.json), for `format_timings`. `prep`: `prepare(spec)` when the caller has
    it already (its datasets are reused). With `spec.resume`, complete seeds are reused and an interrupted seed
    continues from its last checkpoint. In a multi-process fit, ranks other than 0 train only and return [].
    """
    from fusion_bench.benchmark.distributed import is_rank_zero

    prep = prep if prep is not None else prepare(spec)
    if not is_rank_zero():
        for seed in spec.seeds:
            if not (spec.resume and completed_row(prep, seed) is not None):
                run_seed(prep, seed)
        return []
    rows = []
    with seed_locks(prep, spec.seeds):
        for seed in spec.seeds:
            row = _done_or_run(spec, prep, seed)
            if row is not None:
                rows.append(row)
    done = list(prep.timings)
    rows += _baseline_rows(spec, prep, done)
    if timings is not None:
        timings += done
    if spec.leaderboard_dir is not None:
        regenerate(Path(spec.leaderboard_dir))
    return rows


def format_timings(timings: Sequence[dict[str, Any]]) -> str:
    """A table of seconds per phase (fit, fuse, score, seg, det, ...) per method and seed, with a total line."""
    if not timings:
        return ""
    order = ["fit", "evaluate", "fuse", "score", "native_seg", "fuse_train", "fuse_val", "seg", "det", "gflops"]
    phases = [p for p in order if any(p in t["seconds"] for t in timings)]
    phases += [p for t in timings for p in t["seconds"] if p not in phases and p not in ("other", "total")]
    phases = list(dict.fromkeys(phases)) + ["other", "total"]
    labels = [f"{t['method']} {t['dataset']} seed{t['seed']}" for t in timings]
    width = max(len(x) for x in labels + ["all"])
    lines = ["seconds".ljust(width) + "".join(f"{p:>11}" for p in phases)]
    for label, t in zip(labels, timings):
        lines.append(label.ljust(width) + "".join(
            f"{t['seconds'][p]:>11.1f}" if p in t["seconds"] else f"{'-':>11}" for p in phases))
    lines.append("all".ljust(width) + "".join(f"{sum(t['seconds'].get(p, 0.0) for t in timings):>11.1f}"
                                               for p in phases))
    return "\n".join(lines)


def leaderboard_text(leaderboard_dir: Path, dataset: str, preset: str | None = None) -> str:
    aggregated, value_cols = aggregate(read_rows(Path(leaderboard_dir) / "raw" / f"{dataset}.csv"))
    return markdown_table(dataset, aggregated, value_cols, preset)
