"""SeAFusion's content loss: intensity (element-wise max of the sources) + 10 x texture (max Sobel gradient)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude_zero_pad(x: torch.Tensor) -> torch.Tensor:
    """|Gx| + |Gy| per channel with zero padding, the operator of the authors' losses (SeAFusion and SwinFusion
    `Sobelxy`: F.conv2d(x, k, padding=1)). Differs from fusion_bench.base.losses.sobel_magnitude (replicate
    padding) only on the one-pixel border."""
    c = x.shape[1]
    kx = _SOBEL_X.to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    ky = _SOBEL_X.t().to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    return F.conv2d(x, kx, padding=1, groups=c).abs() + F.conv2d(x, ky, padding=1, groups=c).abs()


def intensity_max_loss(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """L1(F, max(A, B))."""
    return F.l1_loss(fused, torch.maximum(y1, y2))


def texture_max_loss(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """L1(|grad F|, max(|grad A|, |grad B|)) with the zero-padded Sobel magnitude."""
    target = torch.maximum(sobel_magnitude_zero_pad(y1), sobel_magnitude_zero_pad(y2))
    return F.l1_loss(sobel_magnitude_zero_pad(fused), target)


class SeAFusionContentLoss(nn.Module):
    """L_content = w_int * L1(F, max(A, B)) + w_grad * L1(|grad F|, max(|grad A|, |grad B|)); authors: 1 and 10.

    Returns {"loss", "loss_int", "loss_grad"} (unweighted terms)."""

    def __init__(self, w_int: float = 1.0, w_grad: float = 10.0):
        super().__init__()
        self.w_int, self.w_grad = w_int, w_grad

    def forward(self, fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
        l_int = intensity_max_loss(fused, y1, y2)
        l_grad = texture_max_loss(fused, y1, y2)
        return {"loss": self.w_int * l_int + self.w_grad * l_grad, "loss_int": l_int, "loss_grad": l_grad}
