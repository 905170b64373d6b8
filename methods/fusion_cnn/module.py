"""LightningModule for the FusionCNN baseline: fuses luminance, restores chroma from the colour source(s)."""

from __future__ import annotations

from typing import Any

import torch

from fusion_bench.base import FusionMethod
from fusion_bench.base.colour import fuse_on_luminance, split_luminance
from methods.fusion_cnn.loss import IntensityGradientLoss
from methods.fusion_cnn.model import FusionCNN


class FusionCNNModule(FusionMethod):
    """Small learned fusion baseline (`fusion_cnn`)."""

    def __init__(self, width: int = 16, depth: int = 4, w_int: float = 1.0, w_grad: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.net = FusionCNN(width=width, depth=depth)
        self.criterion = IntensityGradientLoss(w_int=w_int, w_grad=w_grad)

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return fuse_on_luminance(x1, x2, self.net)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        x1, x2 = self.inputs(batch)
        y1, _ = split_luminance(x1)
        y2, _ = split_luminance(x2)
        losses = self.criterion(self.net(y1, y2), y1, y2)
        self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, prog_bar=stage == "train",
                      batch_size=y1.shape[0])
        return losses["loss"]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")
