"""FusionCNN: a plain convolutional network mapping two luminance images to one (no Lightning here)."""

from __future__ import annotations

import torch
from torch import nn


class FusionCNN(nn.Module):
    """Concatenate the two luminances, `depth - 1` 3x3 conv + LeakyReLU layers of `width` channels, the input
    concatenated again (dense skip) into a last 3x3 conv that predicts a residual logit on top of the average
    of the sources: F = sigmoid(logit(mean(A, B)) + head(...)). The head starts at zero, so an untrained
    network is exactly the mean rule and training only has to learn what to add to it."""

    def __init__(self, width: int = 16, depth: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 2
        for _ in range(depth - 1):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1, padding_mode="reflect"), nn.LeakyReLU(0.2)]
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width + 2, 1, 3, padding=1, padding_mode="reflect")
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        x = torch.cat([y1, y2], dim=1)
        base = torch.logit(0.5 * (y1 + y2), eps=1e-3)
        return torch.sigmoid(base + self.head(torch.cat([self.features(x), x], dim=1)))
