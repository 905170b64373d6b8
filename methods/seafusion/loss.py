"""SeAFusion's content loss: intensity (element-wise max of the sources) + 10 x texture (max Sobel gradient)."""

from __future__ import annotations

import torch
from torch import nn

from fusion_bench.base.losses import gradient_loss, intensity_loss


class SeAFusionContentLoss(nn.Module):
    """L_content = w_int * L1(F, max(A, B)) + w_grad * L1(|grad F|, max(|grad A|, |grad B|)); authors: 1 and 10.

    Returns {"loss", "loss_int", "loss_grad"} (unweighted terms)."""

    def __init__(self, w_int: float = 1.0, w_grad: float = 10.0):
        super().__init__()
        self.w_int, self.w_grad = w_int, w_grad

    def forward(self, fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
        l_int = intensity_loss(fused, y1, y2)
        l_grad = gradient_loss(fused, y1, y2, padding="zeros")  # the authors' Sobelxy pads with zeros
        return {"loss": self.w_int * l_int + self.w_grad * l_grad, "loss_int": l_int, "loss_grad": l_grad}
