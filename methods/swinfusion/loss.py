"""SwinFusion's fusion loss (authors' models/loss_vif.py and loss_med.py): intensity + texture + SSIM (+ TV).

VIF: 20 * L1(F, max(A, B)) + 20 * TV(F - max(A, B)) + 20 * L1(|grad F|, max(|grad A|, |grad B|))
     + 10 * (1 - w_A SSIM(A, F) - w_B SSIM(B, F)),  w_X = mean|grad X| / (mean|grad A| + mean|grad B|).
MED: 20 * intensity + 100 * texture + 50 * (1 - SSIM(A, F) / 2 - SSIM(B, F) / 2), no TV.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.losses import intensity_loss, sobel_magnitude, ssim

SSIM_WEIGHTINGS = ("gradient", "equal")


def total_variation_loss(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """MSE between D = F - max(A, B) and D shifted by one pixel down and right (last row/column repeated),
    summed over the two directions: smoothness of the residual w.r.t. the intensity target (authors' L_TV)."""
    d = fused - torch.maximum(y1, y2)
    down = torch.cat([d[..., 1:, :], d[..., -1:, :]], dim=-2)
    right = torch.cat([d[..., :, 1:], d[..., :, -1:]], dim=-1)
    return F.mse_loss(d, down) + F.mse_loss(d, right)


def weighted_ssim(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, weighting: str = "gradient",
                  source_gradients: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """w_A SSIM(A, F) + w_B SSIM(B, F). "gradient": w proportional to the batch-mean Sobel magnitude of each source
    (VIF; `source_gradients` = the sources' zero-padded Sobel magnitudes when already computed); "equal": 0.5 each
    (medical)."""
    if weighting == "gradient":
        if source_gradients is None:
            source_gradients = sobel_magnitude(y1, "zeros"), sobel_magnitude(y2, "zeros")
        g1, g2 = source_gradients[0].mean(), source_gradients[1].mean()
        total = (g1 + g2).clamp_min(1e-12)
        w1, w2 = g1 / total, g2 / total
    elif weighting == "equal":
        w1 = w2 = torch.tensor(0.5, device=fused.device, dtype=fused.dtype)
    else:
        raise ValueError(f"unknown ssim_weighting {weighting!r}; valid: {', '.join(SSIM_WEIGHTINGS)}")
    return w1 * ssim(y1, fused) + w2 * ssim(y2, fused)


class SwinFusionLoss(nn.Module):
    """w_int * L_int + w_tv * L_TV + w_grad * L_texture + w_ssim * (1 - weighted SSIM).

    Defaults are the authors' VIF weights (20, 20, 20, 10, gradient-weighted SSIM); their medical loss is
    (20, 0, 100, 50, equal). Returns {"loss", "loss_int", "loss_tv", "loss_grad", "loss_ssim"} (unweighted terms;
    `loss_ssim` = 1 - weighted SSIM)."""

    def __init__(self, w_int: float = 20.0, w_tv: float = 20.0, w_grad: float = 20.0, w_ssim: float = 10.0,
                 ssim_weighting: str = "gradient"):
        super().__init__()
        if ssim_weighting not in SSIM_WEIGHTINGS:
            raise ValueError(f"unknown ssim_weighting {ssim_weighting!r}; valid: {', '.join(SSIM_WEIGHTINGS)}")
        self.w_int, self.w_tv, self.w_grad, self.w_ssim = w_int, w_tv, w_grad, w_ssim
        self.ssim_weighting = ssim_weighting

    def forward(self, fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
        # the sources' Sobel magnitudes serve the texture term and the SSIM weights: computed once per step
        grad1, grad2 = sobel_magnitude(y1, "zeros"), sobel_magnitude(y2, "zeros")
        terms = {
            "loss_int": intensity_loss(fused, y1, y2),
            "loss_tv": total_variation_loss(fused, y1, y2),
            # = fusion_bench.base.losses.gradient_loss(fused, y1, y2, padding="zeros")
            "loss_grad": F.l1_loss(sobel_magnitude(fused, "zeros"), torch.maximum(grad1, grad2)),
            "loss_ssim": 1 - weighted_ssim(fused, y1, y2, self.ssim_weighting, source_gradients=(grad1, grad2)),
        }
        terms["loss"] = (self.w_int * terms["loss_int"] + self.w_tv * terms["loss_tv"]
                         + self.w_grad * terms["loss_grad"] + self.w_ssim * terms["loss_ssim"])
        return terms
