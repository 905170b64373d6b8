"""AMDANet losses (Sec. 3.3-3.4): L = a1 L_seg + a2 L_fus + a3 L_cr with L_fus = L_si + L_co (paper), and the
authors' code variants (MRFS fusion loss, label-supervised masked branch, Dice terms) as options."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.base.colour import rgb_to_ycbcr
from fusion_bench.types import IGNORE_INDEX

FUSION_LOSSES = ("paper", "code")
CR_MODES = ("paper", "code")

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed Sobel derivatives (x, y) per channel, zero padding."""
    c = x.shape[1]
    kx = _SOBEL_X.to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    ky = _SOBEL_X.t().to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    return F.conv2d(x, kx, padding=1, groups=c), F.conv2d(x, ky, padding=1, groups=c)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Replicate a 1-channel image to 3 channels (3-channel images pass through)."""
    if x.shape[1] == 3:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    raise ValueError(f"expected a 1- or 3-channel image, got {x.shape[1]} channels")


def adjust_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's rule: blend with the mean gray level of each image, clamp to [0, 1]."""
    if factor == 1.0:
        return x
    mean = rgb_to_ycbcr(to_rgb(x))[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    return (factor * x + (1.0 - factor) * mean).clamp(0, 1)


def chroma(x: torch.Tensor) -> torch.Tensor:
    """CbCr (BT.601, centred at 0.5) of an RGB image."""
    return rgb_to_ycbcr(x)[:, 1:]


def salient_information_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Eq. 15, L_si = MAE(∇(p_f - max(I_vi, I_in))): mean absolute signed Sobel-x and -y derivatives of the
    difference (averaged over the two directions; zero padding, so the border also ties the intensity level)."""
    gx, gy = sobel(fused - torch.maximum(to_rgb(vis), to_rgb(ir)))
    return 0.5 * (gx.abs().mean() + gy.abs().mean())


def colour_consistency_loss(fused: torch.Tensor, vis: torch.Tensor, gamma: float = 0.8) -> torch.Tensor:
    """Eq. 15, L_co = MAE(CbCr(p_f) - CbCr(S(I_vi))), S = gamma correction I^gamma (MRFS' augmentation)."""
    return F.l1_loss(chroma(fused), chroma(to_rgb(vis).clamp_min(0).pow(gamma)))


def mrfs_fusion_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor, gamma: float = 0.8,
                     contrast: float = 1.0, w_int: float = 0.5, w_grad: float = 1.0,
                     w_color: float = 1.0) -> torch.Tensor:
    """The fusion loss of the authors' code (MRFS, FMB variant): R_vi = I_vi^gamma, R_in = contrast(I_in, c);
    w_int L1(F, max(R_vi, R_in)) + w_grad (0.5 L1(∂x F, max(∂x R_vi, ∂x R_in)) + 0.5 L1(∂y ...)) with signed
    Sobel derivatives, + w_color L1(CbCr F, CbCr R_vi)."""
    r_vis = to_rgb(vis).clamp_min(0).pow(gamma)
    r_ir = to_rgb(adjust_contrast(ir, contrast))
    l_int = F.l1_loss(fused, torch.maximum(r_vis, r_ir))
    (fx, fy), (vx, vy), (ix, iy) = sobel(fused), sobel(r_vis), sobel(r_ir)
    l_grad = 0.5 * F.l1_loss(fx, torch.maximum(vx, ix)) + 0.5 * F.l1_loss(fy, torch.maximum(vy, iy))
    return w_int * l_int + w_grad * l_grad + w_color * F.l1_loss(chroma(fused), chroma(r_vis))


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
              eps: float = 1.0) -> torch.Tensor:
    """Soft Dice (1 - mean over classes of (2 Σ p g + eps) / (Σ p + Σ g + eps)) over non-ignored pixels."""
    valid = (target != ignore_index).unsqueeze(1).to(logits.dtype)
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(torch.where(target == ignore_index, 0, target), logits.shape[1]).permute(0, 3, 1, 2)
    onehot = onehot.to(probs.dtype) * valid
    inter, total = (probs * onehot).sum((0, 2, 3)), probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1.0 - ((2 * inter + eps) / (total + eps)).mean()


def consistency_loss(masked_logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 13, L_cr = CE(D(masked), D(clean)): cross-entropy of the masked prediction against the clean
    prediction's (detached) arg-max labels."""
    return F.cross_entropy(masked_logits, clean_logits.detach().argmax(1))


class AMDANetLoss(nn.Module):
    """total = w_seg L_seg + w_fus L_fus + w_cr L_cr (+ w_dice Dice + w_dice_masked Dice_masked).

    fusion="paper": L_fus = L_si + L_co (Eq. 15); "code": the MRFS loss of the authors' code.
    cr="paper": L_cr = CE(masked prediction, clean prediction) (Eq. 13); "code": L_cr = ½ (CE(masked seg,
    labels) + L_fus(masked fused)), so w_cr = 0.5 gives the code's 0.25 + 0.25. Dice terms are code-only
    (authors: w_dice 2, w_dice_masked 0.5); 0 by default.
    """

    def __init__(self, w_seg: float = 1.0, w_fus: float = 0.5, w_cr: float = 0.5, fusion: str = "paper",
                 cr: str = "paper", gamma: float = 0.8, contrast: float = 1.0, w_dice: float = 0.0,
                 w_dice_masked: float = 0.0):
        super().__init__()
        if fusion not in FUSION_LOSSES:
            raise ValueError(f"fusion_loss {fusion!r} unknown; valid: {', '.join(FUSION_LOSSES)}")
        if cr not in CR_MODES:
            raise ValueError(f"cr_mode {cr!r} unknown; valid: {', '.join(CR_MODES)}")
        self.w_seg, self.w_fus, self.w_cr = w_seg, w_fus, w_cr
        self.fusion, self.cr, self.gamma, self.contrast = fusion, cr, gamma, contrast
        self.w_dice, self.w_dice_masked = w_dice, w_dice_masked

    def fusion_terms(self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.fusion == "code":
            return {"loss_fus": mrfs_fusion_loss(fused, vis, ir, self.gamma, self.contrast)}
        l_si = salient_information_loss(fused, vis, ir)
        l_co = colour_consistency_loss(fused, vis, self.gamma)
        return {"loss_fus": l_si + l_co, "loss_si": l_si, "loss_co": l_co}

    def forward(self, logits: torch.Tensor, fused: torch.Tensor, target: torch.Tensor, vis: torch.Tensor,
                ir: torch.Tensor, masked_logits: torch.Tensor | None = None,
                masked_fused: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """logits/masked_logits: B x K x H x W at the label size; fused: B x 3 x H x W; target: B x H x W."""
        out = {"loss_seg": F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)}
        out.update(self.fusion_terms(fused.float(), vis.float(), ir.float()))
        total = self.w_seg * out["loss_seg"] + self.w_fus * out["loss_fus"]
        if masked_logits is not None and self.w_cr:
            if self.cr == "paper":
                out["loss_cr"] = consistency_loss(masked_logits.float(), logits.float())
            else:
                if masked_fused is None:
                    raise ValueError("cr_mode 'code' needs the masked branch's fused image (masked_fused)")
                ce = F.cross_entropy(masked_logits.float(), target, ignore_index=IGNORE_INDEX)
                fus = self.fusion_terms(masked_fused.float(), vis.float(), ir.float())["loss_fus"]
                out["loss_cr"] = 0.5 * (ce + fus)
            total = total + self.w_cr * out["loss_cr"]
        if self.w_dice:
            out["loss_dice"] = dice_loss(logits, target)
            total = total + self.w_dice * out["loss_dice"]
        if self.w_dice_masked and masked_logits is not None:
            out["loss_dice_masked"] = dice_loss(masked_logits, target)
            total = total + self.w_dice_masked * out["loss_dice_masked"]
        out["loss"] = total
        return out
