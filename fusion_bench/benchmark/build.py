"""Building a run's parts: the datamodule of a seed (sharing the run's datasets) and the method (its constructor
arguments from the config; a config value the constructor rejects is a BenchError; released weights loaded into it).
`check_method` builds the method once on the meta device so that such a value is a request error before any
training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.base.method import MultimodalClassifier
from fusion_bench.base.precision import is_double
from fusion_bench.benchmark.spec import BenchSpec, PreparedRun
from fusion_bench.benchmark.weight_files import load_released
from fusion_bench.errors import BenchError


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


def check_method(method_cls: type, spec: BenchSpec, kwargs: dict[str, Any]) -> L.LightningModule:
    """Build the method once on the meta device (no memory, no initialisation cost), so that a config value its
    constructor rejects is a request error before any training. When the meta build fails, the method is built on
    the CPU to tell a real config error (BenchError) from something the meta device cannot do. Modules the
    constructor imported lazily under the meta device are re-run if they hold meta tensors. Returns the built
    method (for checks of what it is, e.g. whether it optimises manually; its tensors may be meta tensors)."""
    import sys

    before = set(sys.modules)
    model = None
    try:
        with torch.device("meta"):
            model = method_cls(**kwargs)
    except Exception:  # noqa: BLE001 - decided by the real build below
        model = None
    finally:
        _reimport_meta_constants(set(sys.modules) - before)
    return model if model is not None else _construct(method_cls, spec, kwargs)


def build_method(prep: PreparedRun, datamodule: PairedDataModule) -> L.LightningModule:
    """The method as configured; with released weights (preset `released`) loaded through its converter."""
    kwargs = method_kwargs(prep.method_cls, prep.spec, prep.config, datamodule.modalities,
                           datamodule.dataset("test").class_names)  # an instance: options may change the classes
    model = as_configured(_construct(prep.method_cls, prep.spec, kwargs), prep.config)
    if prep.released is not None:
        load_released(prep, model)
    return model


def as_configured(model: L.LightningModule, config: dict[str, Any]) -> L.LightningModule:
    """`model` in float64 when the config trains in float64 (`train.precision: 64-true`; the fit keeps it so)."""
    return model.double() if is_double(config["train"].get("precision")) else model


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
