"""SSVIF losses: the fusion loss (Eq. 3) and the cross-segmentation consistency loss (Eq. 4-6).

All images are Bx3xHxW in [0, 1] (the infrared image replicated to three channels); segmentation logits are
BxnxHxW at the image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.colour import rgb_to_ycbcr
from fusion_bench.base.losses import gradient_loss, intensity_loss, ssim


def ssim_loss(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """L_ssim = E_{j in {ir, vis}} (1 - ssim(I_f, I_j))."""
    return 0.5 * ((1 - ssim(fused, ir)) + (1 - ssim(fused, vis)))


def colour_loss(fused: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """L_color = E_{c in {Cb, Cr}} mean |I_f^c - I_vis^c| (BT.601 YCbCr of RGB images)."""
    return F.l1_loss(rgb_to_ycbcr(fused)[:, 1:], rgb_to_ycbcr(vis)[:, 1:])


class SSVIFFusionLoss(nn.Module):
    """Eq. 3: L_fusion = w_int L_int + w_grad L_grad + w_ssim L_ssim + w_color L_color (paper: 20, 20, 10, 20).

    L_int = mean |I_f - max(I_ir, I_vis)| and L_grad = mean ||∇I_f| - max(|∇I_ir|, |∇I_vis|)| (Sobel |gx| + |gy|)
    are taken per RGB channel; `forward` returns every term and the weighted total under `loss_fusion`.
    """

    def __init__(self, w_int: float = 20.0, w_grad: float = 20.0, w_ssim: float = 10.0, w_color: float = 20.0):
        super().__init__()
        self.w_int, self.w_grad, self.w_ssim, self.w_color = w_int, w_grad, w_ssim, w_color

    def forward(self, fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> dict[str, torch.Tensor]:
        if not fused.shape[1] == ir.shape[1] == vis.shape[1] == 3:
            raise ValueError(f"SSVIFFusionLoss expects three-channel fused/ir/vis images, got {fused.shape[1]}, "
                             f"{ir.shape[1]}, {vis.shape[1]} channels")
        fused, ir, vis = fused.float(), ir.float(), vis.float()
        terms = {
            "loss_int": intensity_loss(fused, ir, vis),
            "loss_grad": gradient_loss(fused, ir, vis),
            "loss_ssim": ssim_loss(fused, ir, vis),
            "loss_color": colour_loss(fused, vis),
        }
        terms["loss_fusion"] = (self.w_int * terms["loss_int"] + self.w_grad * terms["loss_grad"]
                                + self.w_ssim * terms["loss_ssim"] + self.w_color * terms["loss_color"])
        return terms


def pseudo_label(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Eq. 4: per pixel, the arg-max class of the branch whose top softmax probability is higher
    (branch A only when strictly more confident; ties go to B). Returns long BxHxW, no gradient."""
    if logits_a.shape != logits_b.shape:
        raise ValueError(f"pseudo_label: logits_a {tuple(logits_a.shape)} and logits_b {tuple(logits_b.shape)} "
                         "must have the same shape (B x n x H x W)")
    with torch.no_grad():
        conf_a, label_a = logits_a.float().softmax(1).max(1)
        conf_b, label_b = logits_b.float().softmax(1).max(1)
        return torch.where(conf_a > conf_b, label_a, label_b)


def _one_hot(target: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(target, n).permute(0, 3, 1, 2).to(like)


def _dice(prob: torch.Tensor, one_hot: torch.Tensor, eps: float) -> torch.Tensor:
    dims = (0, 2, 3)
    overlap = (prob * one_hot).sum(dims)
    return 1 - (2 * overlap / (prob.sum(dims) + one_hot.sum(dims) + eps)).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Eq. 5: 1 - (1/n) sum_c 2 sum_x p_c(x) t_c(x) / (sum_x p_c(x) + sum_x t_c(x) + eps), sums over the whole
    batch; p = softmax(logits), t = one-hot(target)."""
    prob = logits.float().softmax(1)
    return _dice(prob, _one_hot(target, logits.shape[1], prob), eps)


def hybrid_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """Eq. 5: L_hyb = L_ce + L_dice (cross-entropy averaged over pixels), in float32 whatever the autocast state.

    The cross-entropy is written as -mean_x sum_c t_c(x) log p_c(x) with the one-hot target the Dice term uses:
    the same number as `F.cross_entropy(logits, target)`, but without NLLLoss, whose 2-D CUDA kernel (mean
    reduction) has no deterministic implementation (it raises under `torch.use_deterministic_algorithms(True)`
    and adds atomics noise otherwise); here everything is element-wise ops and ordinary reductions.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        one_hot = _one_hot(target, logits.shape[1], logits)
        ce = -(one_hot * logits.log_softmax(1)).sum(1).mean()
        dice = _dice(logits.softmax(1), one_hot, eps)
    return {"ce": ce, "dice": dice, "hyb": ce + dice}


def csc_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """Eq. 6: L_csc = (L_hyb(p^A, p~) + L_hyb(p^B, p~)) / 2 with the pseudo label p~ of Eq. 4.

    Returns `loss_csc`, the per-branch hybrid losses, and `agreement` (fraction of pixels where both branches'
    arg-max classes agree; a diagnostic)."""
    target = pseudo_label(logits_a, logits_b)
    a, b = hybrid_loss(logits_a, target, eps), hybrid_loss(logits_b, target, eps)
    with torch.no_grad():
        agreement = (logits_a.argmax(1) == logits_b.argmax(1)).float().mean()
    return {"loss_csc": 0.5 * (a["hyb"] + b["hyb"]), "loss_hyb_a": a["hyb"], "loss_hyb_b": b["hyb"],
            "agreement": agreement}
