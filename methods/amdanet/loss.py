"""AMDANet losses (Sec. 3.3-3.4): L = a1 L_seg + a2 L_fus + a3 L_cr with L_fus = L_si + L_co (paper), and the
authors' code variants (MRFS fusion loss, label-supervised masked branch, Dice terms) as options."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import nn

from fusion_bench.base.colour import rgb_to_ycbcr
from fusion_bench.base.losses import sobel_xy
from fusion_bench.base.precision import upcast
from fusion_bench.methods.ssvif.model import to_three_channels as to_rgb
from fusion_bench.types import IGNORE_INDEX

FUSION_LOSSES = ("paper", "code")
CR_MODES = ("paper", "code")
DICE_IGNORES = ("skip", "code")

__all__ = ["AMDANetLoss", "code_chroma", "colour_consistency_loss", "consistency_loss", "dice_loss",
           "mrfs_fusion_loss", "salient_information_loss", "to_rgb"]


def code_chroma(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Cb, Cr) of B x 3 x H x W RGB as the authors' `RGB2YCrCb` computes them: Y = 0.299 R + 0.587 G + 0.114 B,
    Cr = 0.713 (R - Y) + 0.5, Cb = 0.564 (B - Y) + 0.5 (rounded BT.601 factors; kept for bit-level agreement)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return (b - y) * 0.564 + 0.5, (r - y) * 0.713 + 0.5


def salient_information_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Eq. 15, L_si = MAE(∇(p_f - max(I_vi, I_in))): mean absolute Sobel-x and -y responses of the difference
    (averaged over the two directions; zero padding, so the border also ties the intensity level)."""
    gx, gy = sobel_xy(fused - torch.maximum(to_rgb(vis), to_rgb(ir)), padding="zeros")
    return 0.5 * (gx.abs().mean() + gy.abs().mean())


def colour_consistency_loss(fused: torch.Tensor, vis: torch.Tensor, gamma: float = 0.8) -> torch.Tensor:
    """Eq. 15, L_co = MAE(CbCr(p_f) - CbCr(S(I_vi))), S = gamma correction I^gamma (MRFS' augmentation); the mean
    runs over both chroma channels."""
    target = TF.adjust_gamma(to_rgb(vis), gamma)
    return F.l1_loss(rgb_to_ycbcr(fused)[:, 1:], rgb_to_ycbcr(target)[:, 1:])


def mrfs_fusion_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor, gamma: float = 0.8,
                     contrast: float = 1.0, valid: torch.Tensor | None = None, w_int: float = 0.5,
                     w_grad: float = 1.0, w_color: float = 1.0) -> torch.Tensor:
    """The fusion loss of the authors' code (`FusionLoss` of AMDANet's utils/loss_utils.py, MRFS' FMB variant).

    F = fused * valid (the crop's valid-region mask; the targets are not masked); R_vi = adjust_gamma(I_vi, gamma),
    R_in = adjust_contrast(I_in, contrast) (torchvision, as the code);
    w_int L1(F, max(R_vi, R_in)) + w_grad (0.5 L1(Gx F, max(Gx R_vi, Gx R_in)) + 0.5 L1(Gy F, max(Gy R_vi, Gy R_in)))
    + w_color (L1(Cb F, Cb R_vi) + L1(Cr F, Cr R_vi)), with the signed zero-padded Sobel responses of `sobel_xy`
    and the code's rounded YCrCb factors (`code_chroma`). Every L1 is a mean over its tensor."""
    if valid is not None:
        fused = fused * valid
    r_vis = TF.adjust_gamma(to_rgb(vis), gamma)
    r_ir = TF.adjust_contrast(to_rgb(ir), contrast)
    l_int = F.l1_loss(fused, torch.maximum(r_vis, r_ir))
    (fx, fy), (vx, vy), (ix, iy) = (sobel_xy(t, padding="zeros") for t in (fused, r_vis, r_ir))
    l_grad = 0.5 * F.l1_loss(fx, torch.maximum(vx, ix)) + 0.5 * F.l1_loss(fy, torch.maximum(vy, iy))
    (f_cb, f_cr), (v_cb, v_cr) = code_chroma(fused), code_chroma(r_vis)
    l_color = F.l1_loss(f_cb, v_cb) + F.l1_loss(f_cr, v_cr)
    return w_int * l_int + w_grad * l_grad + w_color * l_color


def dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX, smooth: float = 1e-5,
              ignore: str = "skip") -> torch.Tensor:
    """Soft Dice, 1 - mean over classes of (2 Σ p g + smooth) / (Σ p + Σ g + smooth), sums over the batch.

    ignore="skip": pixels labelled `ignore_index` are left out. ignore="code": the authors' `DiceLoss`, which
    relabels them to class 0 before building its ignore mask, so they count as class 0 (padding included)."""
    if ignore not in DICE_IGNORES:
        raise ValueError(f"dice ignore {ignore!r} unknown; valid: {', '.join(DICE_IGNORES)}")
    probs = upcast(logits).softmax(1)
    ignored = target == ignore_index
    onehot = F.one_hot(torch.where(ignored, 0, target), logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    if ignore == "skip":
        valid = (~ignored).unsqueeze(1).to(probs.dtype)
        probs, onehot = probs * valid, onehot * valid
    inter, total = (probs * onehot).sum((0, 2, 3)), (probs + onehot).sum((0, 2, 3))
    return 1.0 - ((2 * inter + smooth) / (total + smooth)).mean()


def consistency_loss(masked_logits: torch.Tensor, clean_logits: torch.Tensor,
                     target: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 13, L_cr = CE(D(masked), D(clean)): cross-entropy of the masked prediction against the clean
    prediction's (detached) arg-max labels; pixels whose `target` is the ignore label (e.g. crop padding) are left
    out."""
    pseudo = clean_logits.detach().argmax(1)
    if target is not None:
        pseudo = torch.where(target == IGNORE_INDEX, IGNORE_INDEX, pseudo)
    return F.cross_entropy(masked_logits, pseudo, ignore_index=IGNORE_INDEX)


class AMDANetLoss(nn.Module):
    """total = w_seg L_seg + w_fus L_fus + w_cr L_cr (+ w_dice Dice + w_dice_masked Dice_masked).

    fusion="paper": L_fus = L_si + L_co (Eq. 15); "code": the MRFS loss of the authors' code.
    cr="paper": L_cr = CE(masked prediction, clean prediction) (Eq. 13); "code": L_cr = ½ (CE(masked seg,
    labels) + L_fus(masked fused)), so w_cr = 0.5 gives the code's 0.25 + 0.25. Dice terms are code-only
    (authors: w_dice 2, w_dice_masked 0.5, dice_ignore "code"); 0 by default. `valid` (the crop's valid-region
    mask) multiplies the fused image inside the fusion loss, as the code does.
    """

    def __init__(self, w_seg: float = 1.0, w_fus: float = 0.5, w_cr: float = 0.5, fusion: str = "paper",
                 cr: str = "paper", gamma: float = 0.8, contrast: float = 1.0, w_dice: float = 0.0,
                 w_dice_masked: float = 0.0, dice_ignore: str = "skip"):
        super().__init__()
        if fusion not in FUSION_LOSSES:
            raise ValueError(f"fusion_loss {fusion!r} unknown; valid: {', '.join(FUSION_LOSSES)}")
        if cr not in CR_MODES:
            raise ValueError(f"cr_mode {cr!r} unknown; valid: {', '.join(CR_MODES)}")
        if dice_ignore not in DICE_IGNORES:
            raise ValueError(f"dice_ignore {dice_ignore!r} unknown; valid: {', '.join(DICE_IGNORES)}")
        self.w_seg, self.w_fus, self.w_cr = w_seg, w_fus, w_cr
        self.fusion, self.cr, self.gamma, self.contrast = fusion, cr, gamma, contrast
        self.w_dice, self.w_dice_masked, self.dice_ignore = w_dice, w_dice_masked, dice_ignore

    def fusion_terms(self, fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor,
                     valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.fusion == "code":
            return {"loss_fus": mrfs_fusion_loss(fused, vis, ir, self.gamma, self.contrast, valid)}
        if valid is not None:
            fused = fused * valid
        l_si = salient_information_loss(fused, vis, ir)
        l_co = colour_consistency_loss(fused, vis, self.gamma)
        return {"loss_fus": l_si + l_co, "loss_si": l_si, "loss_co": l_co}

    def forward(self, logits: torch.Tensor, fused: torch.Tensor, target: torch.Tensor, vis: torch.Tensor,
                ir: torch.Tensor, masked_logits: torch.Tensor | None = None,
                masked_fused: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """logits/masked_logits: B x K x H x W at the label size; fused: B x 3 x H x W; target: B x H x W;
        valid: B x 1 x H x W (or broadcastable) or None."""
        vis, ir = upcast(vis), upcast(ir)
        valid = valid.float() if valid is not None else None
        out = {"loss_seg": F.cross_entropy(upcast(logits), target, ignore_index=IGNORE_INDEX)}
        out.update(self.fusion_terms(upcast(fused), vis, ir, valid))
        total = self.w_seg * out["loss_seg"] + self.w_fus * out["loss_fus"]
        if masked_logits is not None and self.w_cr:
            if self.cr == "paper":
                out["loss_cr"] = consistency_loss(upcast(masked_logits), upcast(logits), target)
            else:
                if masked_fused is None:
                    raise ValueError("cr_mode 'code' needs the masked branch's fused image (masked_fused)")
                ce = F.cross_entropy(upcast(masked_logits), target, ignore_index=IGNORE_INDEX)
                fus = self.fusion_terms(upcast(masked_fused), vis, ir, valid)["loss_fus"]
                out["loss_cr"] = 0.5 * (ce + fus)
            total = total + self.w_cr * out["loss_cr"]
        if self.w_dice:
            out["loss_dice"] = dice_loss(logits, target, ignore=self.dice_ignore)
            total = total + self.w_dice * out["loss_dice"]
        if self.w_dice_masked and masked_logits is not None:
            out["loss_dice_masked"] = dice_loss(masked_logits, target, ignore=self.dice_ignore)
            total = total + self.w_dice_masked * out["loss_dice_masked"]
        out["loss"] = total
        return out
