"""The standard unsupervised fusion loss: intensity (max of sources) + Sobel-gradient (max of sources)."""

from __future__ import annotations

import torch
from torch import nn

from fusion_bench.base.losses import gradient_loss, intensity_loss


class IntensityGradientLoss(nn.Module):
    """L = w_int * L1(F, max(A, B)) + w_grad * L1(|grad F|, max(|grad A|, |grad B|)) (SeAFusion form, w_grad = 10)."""

    def __init__(self, w_int: float = 1.0, w_grad: float = 10.0):
        super().__init__()
        self.w_int = w_int
        self.w_grad = w_grad

    def forward(self, fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
        l_int = intensity_loss(fused, y1, y2)
        l_grad = gradient_loss(fused, y1, y2)
        return {"loss": self.w_int * l_int + self.w_grad * l_grad, "loss_int": l_int, "loss_grad": l_grad}
