"""The Trainer's settings from a run's `train` section: devices and strategy (fusion_bench.benchmark.distributed),
steps and epochs, validation, precision (`bf16-auto` resolved per device), torch.compile and channels-last, early
stopping, the experiment logger, and Lightning's own knobs passed through: `gradient_clip_val` (with
`gradient_clip_algorithm`), `accumulate_grad_batches` and user `callbacks` given as LightningCLI does
(`{class_path: package.module.Class, init_args: {...}}`; only classes of installed distributions, never a file of the
user's: see `user_callbacks`). `check_train_settings` builds a Trainer (and the user callbacks) once during
`prepare`, so a value it rejects is a request error before any work.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fusion_bench.benchmark.spec import LOGGERS, PreparedRun
from fusion_bench.errors import BenchError


def quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


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


def _int_or_none(train: dict[str, Any], key: str, minimum: int) -> None:
    value = train.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise BenchError(f"train.{key} {value!r}: expected an integer >= {minimum}")


def check_train_settings(prep: PreparedRun) -> None:
    """The `train` values the runner reads have the right types, and the Trainer accepts the devices, strategy and
    precision (built once without running anything); BenchError naming the key otherwise."""
    quiet_lightning()
    train = prep.config["train"]
    for key, minimum in (("max_steps", -1), ("max_epochs", -1), ("batch_size", 1), ("log_every_n_steps", 1),
                         ("check_val_every_n_epoch", 1), ("checkpoint_every_n_steps", 1), ("num_nodes", 1),
                         ("accumulate_grad_batches", 1)):
        _int_or_none(train, key, minimum)
    clip = train.get("gradient_clip_val")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 <= clip < 1e300):
        raise BenchError(f"train.gradient_clip_val {clip!r}: expected a finite number >= 0 (or null: no clipping)")
    compile_settings(train)
    if not isinstance(train.get("channels_last", False), bool):
        raise BenchError(f"train.channels_last {train['channels_last']!r}: expected true or false")
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    kwargs = trainer_kwargs(prep, has_val=False)
    callbacks = user_callbacks(train, prep.spec.method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(**kwargs, logger=False, enable_checkpointing=True, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=callbacks)
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
    from fusion_bench.benchmark.distributed import trainer_settings
    from fusion_bench.errors import DistributedSettingsError

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
        "gradient_clip_val": train.get("gradient_clip_val"),
        "gradient_clip_algorithm": train.get("gradient_clip_algorithm"),
        "accumulate_grad_batches": train.get("accumulate_grad_batches", 1),
    }


def check_manual_optimization(model: L.LightningModule, train: dict[str, Any], method: str) -> None:
    """Settings a method's optimisation cannot take, as a BenchError naming the key before the fit: a method that
    steps its optimisers itself (manual optimisation) takes neither Lightning's gradient clipping nor accumulation; a
    method that rewrites each backward pass's gradients in `on_after_backward` (`rewrites_gradients`, e.g. OGM-GE's
    modulation, AGM's clipping) takes no accumulation (the hook would act again on the micro-batches summed so far),
    and one whose rewrite is not scale-equivariant (`needs_unscaled_gradients`, AGM's clip to norm 1) no float16
    loss scaling (`16-mixed`: the hook sees the scaled gradients)."""
    accumulate = train.get("accumulate_grad_batches") not in (None, 1)
    if not model.automatic_optimization:
        for key in ("gradient_clip_val", "accumulate_grad_batches"):
            if train.get(key) not in (None, 1 if key == "accumulate_grad_batches" else None):
                raise BenchError(f"method {method!r}: train.{key}={train[key]!r}: the method optimises manually (its "
                                 "own optimiser steps), so Lightning's gradient clipping and accumulation do not apply")
        return
    if accumulate and getattr(model, "rewrites_gradients", False):
        raise BenchError(f"method {method!r}: train.accumulate_grad_batches={train['accumulate_grad_batches']!r}: the "
                         "method rewrites the gradients after every backward pass, which would act again on the "
                         "micro-batches accumulated so far; use a larger train.batch_size instead")
    if getattr(model, "needs_unscaled_gradients", False) and str(train.get("precision")) in ("16-mixed", "16"):
        raise BenchError(f"method {method!r}: train.precision={train['precision']!r}: float16 loss scaling hands the "
                         "method's gradient rewrite scaled gradients; use 32-true or bf16-mixed")


def _installed_module(module: str) -> bool:
    """Whether `module` comes from an installed distribution (or fusion_bench itself), not from a file of the
    user's: its top-level package is some distribution's and is not found in the working directory."""
    import importlib.metadata
    import importlib.util
    import os
    import site
    import sysconfig

    top = module.partition(".")[0]
    if top == "fusion_bench":
        return True
    if top not in importlib.metadata.packages_distributions():
        return False
    spec = importlib.util.find_spec(top)
    origin = None if spec is None else (spec.origin or next(iter(spec.submodule_search_locations or []), None))
    if origin is None:
        return False
    real = os.path.realpath(origin)
    sites = {os.path.realpath(p) for p in (*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                                           sysconfig.get_paths()["platlib"])}
    if any(real.startswith(s + os.sep) for s in sites):  # installed (a venv inside the working directory too)
        return True
    return not real.startswith(os.path.realpath(os.getcwd()) + os.sep)


def user_callbacks(train: dict[str, Any], method: str) -> list[L.Callback]:
    """`train.callbacks`: a list of `{class_path: package.module.Class, init_args: {...}}` (LightningCLI's form; a
    bare class path string takes no arguments) -> the Lightning callbacks. The class must come from an installed
    distribution (lightning's own, or a package the user installed) and be a Lightning Callback; anything else is a
    BenchError naming the entry."""
    import importlib

    items = train.get("callbacks") or []
    if not isinstance(items, list):
        raise BenchError(f"method {method!r}: train.callbacks: expected a list of {{class_path, init_args}} "
                         f"mappings, got {items!r}")
    out: list[L.Callback] = []
    for i, item in enumerate(items):
        where = f"method {method!r}: train.callbacks[{i}]"
        if isinstance(item, str):
            item = {"class_path": item}
        if not isinstance(item, dict) or not isinstance(item.get("class_path"), str) \
                or set(item) - {"class_path", "init_args"} or not isinstance(item.get("init_args", {}), dict):
            raise BenchError(f"{where}: expected {{class_path: package.module.Class, init_args: {{...}}}}, got "
                             f"{item!r}")
        path = item["class_path"]
        module, _, name = path.rpartition(".")
        if not module or not name.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
            raise BenchError(f"{where}: class_path {path!r}: expected package.module.Class")
        if not _installed_module(module):
            raise BenchError(f"{where}: class_path {path!r}: {module.partition('.')[0]!r} is not an installed "
                             "package (callbacks come from installed packages only: pip install yours)")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise BenchError(f"{where}: class_path {path!r} cannot be imported: {err}") from err
        if not (isinstance(cls, type) and issubclass(cls, L.Callback)):
            raise BenchError(f"{where}: class_path {path!r} is not a Lightning Callback class")
        try:
            out.append(cls(**item.get("init_args", {})))
        except (TypeError, ValueError) as err:
            raise BenchError(f"{where}: {path}({item.get('init_args', {})}): {err}") from err
    return out
