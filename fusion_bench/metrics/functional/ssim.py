"""SSIM variants used by the fusion kits, standard MS-SSIM (Wang 2003) and MEF-SSIM (Ma et al. 2015)."""

from __future__ import annotations

import torch
from torch import Tensor

from fusion_bench.metrics.functional.filters import box_1d, filter_valid, gaussian_1d, pad


def _ssim_map(x: Tensor, y: Tensor, win: Tensor, c1: float, c2: float, cov_norm: float = 1.0,
              padding: str | None = None, return_cs: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """SSIM map by separable 'valid' filtering (optionally after padding by the half window)."""
    if padding is not None:
        p = (win.numel() - 1) // 2
        x, y = pad(x, p, padding), pad(y, p, padding)
    filt = filter_valid(torch.stack([x, y, x * x, y * y, x * y]), win)
    ux, uy, uxx, uyy, uxy = filt
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    cs = (2 * vxy + c2) / (vx + vy + c2)
    s = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1) * cs
    return (s, cs) if return_cs else s


def ssim_skimage(x: Tensor, y: Tensor, data_range: float, win_size: int = 7) -> Tensor:
    """scikit-image ``structural_similarity`` defaults: uniform window, sample covariance, map cropped by
    (win-1)/2 (equivalent to 'valid' filtering) then averaged. Shape (B,)."""
    np_ = win_size * win_size
    s = _ssim_map(x, y, box_1d(win_size), (0.01 * data_range) ** 2, (0.03 * data_range) ** 2, np_ / (np_ - 1))
    return s.flatten(1).mean(1)


def ssim_gaussian_valid(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """Wang et al.'s reference ssim_index.m: 11x11 Gaussian (sigma 1.5), 'valid' filtering. Shape (B,)."""
    s = _ssim_map(x, y, gaussian_1d(11, 1.5), (0.01 * data_range) ** 2, (0.03 * data_range) ** 2)
    return s.flatten(1).mean(1)


def ssim_matlab(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """MATLAB built-in ``ssim`` defaults: Gaussian sigma 1.5 on an 11x11 support, replicate padding, full map.

    ``data_range`` is MATLAB's DynamicRange (1 for double input, which TANG passes on the 0..255 scale).
    """
    s = _ssim_map(x, y, gaussian_1d(11, 1.5), (0.01 * data_range) ** 2, (0.03 * data_range) ** 2,
                  padding="replicate")
    return s.flatten(1).mean(1)
