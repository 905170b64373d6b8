"""Two small CNN encoders and a concatenation classifier (the OGM-GE "concat" fusion, scaled down)."""

from __future__ import annotations

import torch
from torch import nn


def conv_encoder(in_channels: int, width: int, blocks: int) -> nn.Sequential:
    """`blocks` x (3x3 conv, BatchNorm, ReLU, 2x max-pool), then global average pooling -> B x width*2^(blocks-1)."""
    layers: list[nn.Module] = []
    ch = in_channels
    for i in range(blocks):
        out = width * 2**i
        layers += [nn.Conv2d(ch, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        if i < blocks - 1:
            layers.append(nn.MaxPool2d(2))
        ch = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class ConcatFusionNet(nn.Module):
    """logits = W [f_audio; f_visual] + b; unimodal logits use the matching half of W plus b/2 (as OGM-GE)."""

    def __init__(self, num_classes: int, audio_channels: int = 1, visual_channels: int = 3, width: int = 16,
                 blocks: int = 3):
        super().__init__()
        self.audio_encoder = conv_encoder(audio_channels, width, blocks)
        self.visual_encoder = conv_encoder(visual_channels, width, blocks)
        self.feature_dim = width * 2 ** (blocks - 1)
        self.classifier = nn.Linear(2 * self.feature_dim, num_classes)

    def encode_visual(self, frames: torch.Tensor) -> torch.Tensor:
        """frames BxCxHxW, or BxTxCxHxW (frames folded into the batch, features averaged over T)."""
        if frames.ndim == 5:
            b, t = frames.shape[:2]
            return self.visual_encoder(frames.flatten(0, 1)).view(b, t, -1).mean(1)
        return self.visual_encoder(frames)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        fa, fv = self.audio_encoder(audio), self.encode_visual(frames)
        w, b = self.classifier.weight, self.classifier.bias
        d = self.feature_dim
        return {
            "fused": self.classifier(torch.cat([fa, fv], dim=1)),
            "audio": fa @ w[:, :d].t() + b / 2,
            "frames": fv @ w[:, d:].t() + b / 2,
        }
