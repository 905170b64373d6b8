"""Base LightningModules: FusionMethod, SegFusionMethod and MultimodalClassifier.

Methods are built by the runner as `cls(modalities=..., num_classes=..., **config["model"], **config["optim"])`
where `config` is the preset section of `methods/<package>/config.yaml` (see `load_method_config`).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
import yaml

from fusion_bench.types import Task

FUSION_TASKS = frozenset({Task.IVIF, Task.MFIF, Task.MEIF, Task.MEDICAL})


def load_method_config(method_cls: type, name: str, preset: str, dataset: str | None = None) -> dict[str, Any]:
    """The `preset` section for method `name` in the config.yaml beside the method's module.

    Layout: `<name>: {<preset>: {model: {...}, optim: {...}, train: {max_steps, batch_size, crop_size, ...},
    datasets: {<dataset>: {model: {...}, optim: {...}, train: {...}}}}}`. The optional `datasets` entry of
    `dataset` is merged key by key over model/optim/train (per-dataset hyper-parameters, e.g. AMDANet on FMB).
    """
    path = Path(inspect.getfile(method_cls)).parent / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"method {name}: config file {path} is missing")
    config = yaml.safe_load(path.read_text()) or {}
    if name not in config:
        raise KeyError(f"method {name}: no section {name!r} in {path}")
    presets = config[name]
    if preset not in presets:
        raise KeyError(f"method {name}: unknown preset {preset!r}; valid presets: {', '.join(presets)}")
    section = presets[preset] or {}
    unknown = set(section) - {"model", "optim", "train", "datasets"}
    if unknown:
        raise KeyError(f"method {name}: preset {preset!r} in {path} has unknown keys {sorted(unknown)}; "
                       "expected model, optim, train, datasets")
    result = {key: dict(section.get(key) or {}) for key in ("model", "optim", "train")}
    override = (section.get("datasets") or {}).get(dataset) or {} if dataset is not None else {}
    for key in ("model", "optim", "train"):
        result[key].update(override.get(key) or {})
    return result


class FusionMethod(L.LightningModule):
    """An image-fusion method: `fuse(x1, x2) -> fused`, all Bx{1,3}xHxW float in [0, 1].

    x1, x2 follow the datamodule's ordered modality pair (e.g. (ir, vis)). Training-free methods set
    `trainable = False` and the runner skips fitting. Trainable methods implement `training_step`.
    """

    trainable: ClassVar[bool] = True
    tasks: ClassVar[frozenset[Task]] = FUSION_TASKS

    def __init__(self, modalities: tuple[str, str] = ("ir", "vis"), lr: float = 1e-3, weight_decay: float = 0.0):
        super().__init__()
        self.modalities = tuple(modalities)
        self.lr = lr
        self.weight_decay = weight_decay

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.fuse(x1, x2)

    def inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The ordered (x1, x2) pair from a batch."""
        return batch[self.modalities[0]], batch[self.modalities[1]]

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class SegFusionMethod(FusionMethod):
    """A fusion method that also predicts a segmentation: `segment(x1, x2) -> logits BxKxHxW`."""

    def __init__(self, num_classes: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def segment(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MultimodalClassifier(L.LightningModule):
    """Classification from several modalities.

    `forward(batch) -> {"fused": BxK logits, <modality>: BxK unimodal logits, ...}`; the runner reports
    accuracy and macro-F1 of "fused" and the accuracy of each unimodal head.
    """

    trainable: ClassVar[bool] = True
    tasks: ClassVar[frozenset[Task]] = frozenset({Task.CLASSIFICATION})

    def __init__(self, modalities: tuple[str, ...] = ("audio", "frames"), num_classes: int = 2, lr: float = 1e-3,
                 weight_decay: float = 0.0):
        super().__init__()
        self.modalities = tuple(modalities)
        self.num_classes = num_classes
        self.lr = lr
        self.weight_decay = weight_decay

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
