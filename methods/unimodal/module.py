"""Unimodal baseline: one encoder and a linear head trained with cross-entropy on a single modality.

The row's "fused" logits are that head's, and the modality's own accuracy column (`acc_audio` or `acc_frames`)
repeats them; the other modality's column stays empty (the model never sees it).
"""

from __future__ import annotations

from typing import Any

import torch

from fusion_bench.methods.av_balance.model import UnimodalNet
from fusion_bench.methods.av_balance.module import AVClassifier

MODALITIES = ("audio", "frames")


class UnimodalClassifier(AVClassifier):
    """`modality: audio` (the dataset's first modality) or `frames` (its second)."""

    def __init__(self, modality: str = "audio", **kwargs: Any):
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; valid: {', '.join(MODALITIES)}")
        self.modality = modality
        super().__init__(**kwargs)

    def build_net(self, **kwargs: Any) -> torch.nn.Module:
        channels = kwargs["audio_channels"] if self.modality == "audio" else kwargs["visual_channels"]
        return UnimodalNet(kwargs["num_classes"], channels, width=kwargs["width"], blocks=kwargs["blocks"],
                           encoder=kwargs["encoder"], pretrained=kwargs["pretrained"], init=kwargs["init"])

    @property
    def key(self) -> str:
        """The dataset key of the modality this model sees."""
        return self.modalities[MODALITIES.index(self.modality)]

    @property
    def encoders(self) -> tuple[torch.nn.Module, ...]:
        return (self.net.encoder,)

    def heads(self, za: torch.Tensor | None, zv: torch.Tensor | None) -> dict[str, torch.Tensor]:
        z = za if self.modality == "audio" else zv
        logits = self.net.classifier(z)
        return {"fused": logits, self.key: logits}

    def features(self, batch: dict[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        audio, frames = self.inputs(batch)
        if self.modality == "audio":
            return self.net.encode(audio), None
        return None, self.net.encode(frames)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.heads(*self.features(batch))
