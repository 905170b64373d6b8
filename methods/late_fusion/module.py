"""LightningModule for the concatenation-fusion audio-visual classifier baseline (`late_fusion`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from fusion_bench.base import MultimodalClassifier
from fusion_bench.types import TARGET
from methods.late_fusion.model import ConcatFusionNet


class LateFusionClassifier(MultimodalClassifier):
    """Joint training of both encoders with cross-entropy on the fused logits."""

    def __init__(self, width: int = 16, blocks: int = 3, audio_channels: int = 1, visual_channels: int = 3,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.save_hyperparameters()
        self.net = ConcatFusionNet(self.num_classes, audio_channels, visual_channels, width, blocks)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        audio_key, visual_key = self.modalities
        out = self.net(batch[audio_key], batch[visual_key])
        return {"fused": out["fused"], audio_key: out["audio"], visual_key: out["frames"]}

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        logits = self(batch)["fused"]
        loss = F.cross_entropy(logits, batch[TARGET])
        acc = (logits.argmax(1) == batch[TARGET]).float().mean()
        self.log_dict({f"{stage}/loss": loss, f"{stage}/acc": acc}, prog_bar=stage == "train",
                      batch_size=logits.shape[0])
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")
