"""Loss building blocks shared by fusion methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| per channel with replicate borders (the SeAFusion/SwinFusion texture operator)."""
    c = x.shape[1]
    kx = _SOBEL_X.to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    ky = _SOBEL_X.t().to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kx, groups=c).abs() + F.conv2d(padded, ky, groups=c).abs()


def intensity_loss(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """L1 between the fused image and the element-wise maximum of the sources."""
    return F.l1_loss(fused, torch.maximum(y1, y2))


def gradient_loss(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """L1 between the fused Sobel magnitude and the element-wise maximum of the sources' magnitudes."""
    return F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(y1), sobel_magnitude(y2)))
