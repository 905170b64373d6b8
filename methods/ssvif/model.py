"""SSVIF's training-only segmentation branches (pure nn.Modules, no Lightning here).

- `SegmentationHead` (H): two 3x3 conv + BN + ReLU layers and a 1x1 conv to n classes, on the fused features:
  p^A = H(B(I_ir, I_vis)).
- `FusedImageSegmenter` (S): SegFormer built from a MiT config (from scratch) on the fused image:
  p^B = S(F(I_ir, I_vis)). The model comes from `fusion_bench.evaluators.segmentation.build_segformer`.
Both return logits at the input image size. The fusion backbones themselves live in their own method packages
(see `fusion_bench.methods.ssvif.backbones`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SEGFORMER_ARCH_KEYS = ("variant", "hidden_sizes", "depths", "decoder_hidden_size", "num_attention_heads",
                       "drop_path_rate", "pretrained")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_three_channels(x: torch.Tensor, name: str = "input") -> torch.Tensor:
    """Bx1xHxW -> the gray channel replicated to Bx3xHxW; Bx3xHxW unchanged; anything else is an error."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{name}: expected a Bx1xHxW or Bx3xHxW image, got shape {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class SegmentationHead(nn.Module):
    """H: conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv1x1 (n classes); logits at the feature size,
    bilinearly resized to `size` when given."""

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int | None = None):
        super().__init__()
        if in_channels < 1 or num_classes < 2:
            raise ValueError(f"SegmentationHead needs in_channels >= 1 and num_classes >= 2, got {in_channels}, "
                             f"{num_classes}")
        hidden = hidden_channels or in_channels
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, 1),
        )

    def forward(self, features: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        logits = self.layers(features)
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


def segformer_config(arch: dict[str, Any] | None):
    """A `SegEvalConfig` carrying only the architecture keys of `arch` (see SEGFORMER_ARCH_KEYS)."""
    from fusion_bench.evaluators.segmentation import SegEvalConfig

    arch = dict(arch or {})
    unknown = sorted(set(arch) - set(SEGFORMER_ARCH_KEYS))
    if unknown:
        raise ValueError(f"segformer: unknown keys {unknown}; valid keys: {', '.join(SEGFORMER_ARCH_KEYS)}")
    for key in ("hidden_sizes", "depths", "num_attention_heads"):
        if arch.get(key) is not None:
            arch[key] = tuple(arch[key])
    return SegEvalConfig(**arch)


class FusedImageSegmenter(nn.Module):
    """S: SegFormer (transformers, built from `segformer` architecture keys, randomly initialised unless a local
    `pretrained` path is given) on the ImageNet-normalised fused image; logits upsampled to the image size."""

    def __init__(self, num_classes: int, segformer: dict[str, Any] | None = None):
        super().__init__()
        from fusion_bench.evaluators.segformer import build_segformer

        self.model = build_segformer(segformer_config(segformer), num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = to_three_channels(image, "fused image")
        logits = self.model(pixel_values=(image - self.mean) / self.std).logits
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
