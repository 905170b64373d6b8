"""Colour handling shared by fusion methods: fuse on luminance (Y) and restore chroma (CbCr)."""

from __future__ import annotations

from collections.abc import Callable

import torch

# ITU-R BT.601 full-range YCbCr (JPEG/JFIF; the convention of the fusion literature's OpenCV/MATLAB code).
# The conversions are written as element-wise arithmetic in a fixed order (not as a 1x1 convolution or a matrix
# product, whose summation order depends on the thread count and the CPU's instruction set), so a training-free
# rule gives the same fused image on every machine.


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """Bx3xHxW RGB in [0, 1] -> YCbCr with Cb, Cr centred at 0.5."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 0.5
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 0.5
    return torch.cat([y, cb, cr], dim=1)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (JFIF coefficients), clamped to [0, 1]."""
    y, cb, cr = ycbcr[:, 0:1], ycbcr[:, 1:2] - 0.5, ycbcr[:, 2:3] - 0.5
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return torch.cat([r, g, b], dim=1).clamp(0, 1)


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
