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
from torch import nn

from fusion_bench.base.colour import fuse_on_luminance, split_luminance
from fusion_bench.types import TARGET, Task

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


def check_source_pair(x1: torch.Tensor, x2: torch.Tensor, channels: int) -> None:
    """Raise ValueError unless x1 and x2 are both B x `channels` x H x W of the same shape (network inputs)."""
    for name, x in (("x1", x1), ("x2", x2)):
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f"{name} must be B x {channels} x H x W, got shape {tuple(x.shape)}")
    if x1.shape != x2.shape:
        raise ValueError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")


class FusionMethod(L.LightningModule):
    """An image-fusion method: `fuse(x1, x2) -> fused`, all Bx{1,3}xHxW float in [0, 1].

    x1, x2 follow the datamodule's ordered modality pair (e.g. (ir, vis)). Training-free methods set
    `trainable = False` and the runner skips fitting. Trainable methods implement `training_step`.
    """

    trainable: ClassVar[bool] = True
    tasks: ClassVar[frozenset[Task]] = FUSION_TASKS
    # trains on segmentation labels: the runner passes `num_classes` and refuses a dataset without class labels
    needs_class_labels: ClassVar[bool] = False

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

    def log_losses(self, losses: dict[str, torch.Tensor], stage: str, batch: dict[str, Any]) -> torch.Tensor:
        """Log every term as `<stage>/<name>` (progress bar while training); returns `losses["loss"]`."""
        self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, prog_bar=stage == "train",
                      batch_size=batch[self.modalities[0]].shape[0])
        return losses["loss"]


class LuminanceFusionMethod(FusionMethod):
    """A learned fusion of the two luminances (BT.601 Y); chroma comes back through `fuse_on_luminance`.

    Subclasses set `self.net` ((y1, y2) -> fused Y) and `self.criterion` ((fused, y1, y2) -> {"loss": total,
    <term>: value}); `training_output` is what the loss sees (override it to train on, e.g., an unclamped output).
    """

    net: nn.Module
    criterion: nn.Module

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return fuse_on_luminance(x1, x2, self.net)

    def training_output(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        return self.net(y1, y2)

    def luminance_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        x1, x2 = self.inputs(batch)
        y1, _ = split_luminance(x1)
        y2, _ = split_luminance(x2)
        return self.criterion(self.training_output(y1, y2), y1, y2)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.log_losses(self.luminance_losses(batch), "train", batch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.log_losses(self.luminance_losses(batch), "val", batch)


class SegFusionMethod(FusionMethod):
    """A fusion method that also predicts a segmentation: `segment(x1, x2) -> logits BxKxHxW`."""

    needs_class_labels: ClassVar[bool] = True

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

    def log_accuracies(self, outputs: dict[str, torch.Tensor], target: torch.Tensor, stage: str) -> None:
        """Per-epoch accuracy of each head: "fused" as `<stage>/acc`, any other head as `<stage>/acc_<head>` (the
        unimodal accuracies, epoch by epoch, in the run's Lightning logs)."""
        values = {f"{stage}/acc" if head == "fused" else f"{stage}/acc_{head}":
                  (logits.argmax(1) == target).float().mean() for head, logits in outputs.items()}
        self.log_dict(values, on_step=False, on_epoch=True, batch_size=target.shape[0])

    def evaluation_outputs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The heads logged at validation/test time: `forward`'s by default; a method may add its own (e.g. auxiliary
        unimodal heads), which appear in the logs but not in the result row."""
        return self(batch)

    def evaluation_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        """Cross-entropy of the fused logits as `<stage>/loss`, plus every head's accuracy (see `log_accuracies`)."""
        outputs = self.evaluation_outputs(batch)
        target = batch[TARGET]
        loss = nn.functional.cross_entropy(outputs["fused"], target)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=target.shape[0])
        self.log_accuracies(outputs, target, stage)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self.evaluation_step(batch, "test")
