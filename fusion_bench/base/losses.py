"""Loss building blocks shared by fusion methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device="cpu")
SOBEL_PADDINGS = ("replicate", "zeros")


def sobel_xy(x: torch.Tensor, padding: str = "zeros") -> tuple[torch.Tensor, torch.Tensor]:
    """Signed Sobel responses (Gx, Gy) per channel, as the fusion literature's ``Sobelxy`` (SeAFusion, SwinFusion,
    MRFS) computes them: cross-correlation with kx = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]] and
    ky = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]] (Gy > 0 where the image gets darker downwards). padding: 'zeros'
    (their ``F.conv2d(x, k, padding=1)``) or 'replicate'."""
    if padding not in SOBEL_PADDINGS:
        raise ValueError(f"sobel padding must be one of {SOBEL_PADDINGS}, got {padding!r}")
    c = x.shape[1]
    kx = _SOBEL_X.to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    ky = -_SOBEL_X.t().to(x).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate" if padding == "replicate" else "constant")
    return F.conv2d(padded, kx, groups=c), F.conv2d(padded, ky, groups=c)


def sobel_magnitude(x: torch.Tensor, padding: str = "replicate") -> torch.Tensor:
    """|Gx| + |Gy| per channel (`sobel_xy`). padding: 'replicate' borders, or 'zeros' (the authors' SeAFusion /
    SwinFusion ``Sobelxy``: ``F.conv2d(x, k, padding=1)``); the two differ only on the one-pixel border."""
    gx, gy = sobel_xy(x, padding)
    return gx.abs() + gy.abs()


def intensity_loss(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """L1 between the fused image and the element-wise maximum of the sources."""
    return F.l1_loss(fused, torch.maximum(y1, y2))


def gradient_loss(fused: torch.Tensor, y1: torch.Tensor, y2: torch.Tensor, padding: str = "replicate") -> torch.Tensor:
    """L1 between the fused Sobel magnitude and the element-wise maximum of the sources' magnitudes."""
    target = torch.maximum(sobel_magnitude(y1, padding), sobel_magnitude(y2, padding))
    return F.l1_loss(sobel_magnitude(fused, padding), target)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Differentiable mean SSIM (Wang et al. 2004) over channels and pixels: Gaussian window 11 / sigma 1.5,
    zero padding ('same' size), C1 = (0.01 L)^2, C2 = (0.03 L)^2: the pytorch-ssim convention of the SwinFusion
    and SeAFusion training code. (The metrics package has the kits' SSIM variants, in float64, not for training.)"""
    if x.shape != y.shape:
        raise ValueError(f"ssim: x {tuple(x.shape)} and y {tuple(y.shape)} must have the same shape")
    c = x.shape[1]
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-coords**2 / (2 * sigma**2))
    g = (g / g.sum()).to(x)
    kernel_h = g.view(1, 1, 1, window).expand(c, 1, 1, window)
    kernel_v = g.view(1, 1, window, 1).expand(c, 1, window, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, kernel_h, padding=(0, window // 2), groups=c)
        return F.conv2d(t, kernel_v, padding=(window // 2, 0), groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean()
