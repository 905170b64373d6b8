"""Colour handling shared by fusion methods: fuse on luminance (Y) and restore chroma (CbCr)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# ITU-R BT.601 full-range YCbCr (the convention of the fusion literature's OpenCV/MATLAB code).
_RGB2YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCBCR2RGB = torch.linalg.inv(_RGB2YCBCR)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> YCbCr with Cb, Cr centred at 0.5."""
    offset = torch.tensor([0.0, 0.5, 0.5]).to(rgb)
    return F.conv2d(rgb, _RGB2YCBCR.to(rgb)[:, :, None, None], offset)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    m = _YCBCR2RGB.to(ycbcr)
    bias = -(m @ torch.tensor([0.0, 0.5, 0.5]).to(ycbcr))
    return F.conv2d(ycbcr, m[:, :, None, None], bias).clamp(0, 1)


def split_luminance(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return (Y Bx1xHxW, CbCr Bx2xHxW or None for a gray image)."""
    if x.shape[1] == 1:
        return x, None
    ycbcr = rgb_to_ycbcr(x[:, :3])
    return ycbcr[:, :1], ycbcr[:, 1:]


def merge_chroma(c1: torch.Tensor | None, c2: torch.Tensor | None) -> torch.Tensor | None:
    """Chroma of the fused image: the only colour source's, or (both colour) each pixel weighted by
    its saturation |C - 0.5| (the usual rule for multi-focus/multi-exposure colour fusion)."""
    if c1 is None or c2 is None:
        return c1 if c2 is None else c2
    w1, w2 = (c1 - 0.5).abs(), (c2 - 0.5).abs()
    total = w1 + w2
    mixed = (c1 * w1 + c2 * w2) / total.clamp_min(1e-8)
    return torch.where(total > 1e-8, mixed, 0.5 * (c1 + c2))


def fuse_on_luminance(x1: torch.Tensor, x2: torch.Tensor,
                      fuse_y: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Fuse the Y channels with `fuse_y` and restore colour; gray in, gray out."""
    y1, c1 = split_luminance(x1)
    y2, c2 = split_luminance(x2)
    fused_y = fuse_y(y1, y2).clamp(0, 1)
    chroma = merge_chroma(c1, c2)
    if chroma is None:
        return fused_y
    return ycbcr_to_rgb(torch.cat([fused_y, chroma], dim=1))
