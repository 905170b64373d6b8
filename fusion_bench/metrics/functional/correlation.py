"""Correlation and error metrics: CC, SCD, MSE, RMSE, PSNR (inputs: BxCxHxW float64, 0..255 scale)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation over all pixels of each image (MATLAB corr2). NaN when one input is constant."""
    x = x.reshape(x.shape[0], -1)
    y = y.reshape(y.shape[0], -1)
    xc = x - x.mean(1, keepdim=True)
    yc = y - y.mean(1, keepdim=True)
    return (xc * yc).sum(1) / torch.sqrt((xc * xc).sum(1) * (yc * yc).sum(1))


def correlation_coefficient(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """CC = (r(A,F) + r(B,F)) / 2."""
    return (pearson(a, f) + pearson(b, f)) / 2


def scd(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """SCD (Aslantas & Bendes 2015) = r(F - B, A) + r(F - A, B); range [-2, 2]."""
    return pearson(f - b, a) + pearson(f - a, b)


def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per image. Shape (B,)."""
    d = (x - y).reshape(x.shape[0], -1)
    return (d * d).mean(1)


def fusion_mse(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """(MSE(A,F) + MSE(B,F)) / 2 on the inputs' scale."""
    return (mse(a, f) + mse(b, f)) / 2


def psnr_peak_max(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """CDD PSNR: 10 log10(max(F)^2 / fusion MSE) (peak is the fused image's maximum, not 255)."""
    peak = f.reshape(f.shape[0], -1).amax(1)
    return 10 * torch.log10(peak * peak / fusion_mse(a, f=f, b=b))


def psnr(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """Standard PSNR in dB between two images."""
    return 10 * torch.log10(data_range**2 / mse(x, y))


def rmse_vifb(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """VIFB "RMSE": mean over sources of sqrt(sum (X-F)^2) / (MN) (i.e. RMSE / sqrt(MN); VIFB issue #15)."""
    hw = f.shape[-1] * f.shape[-2]

    def one(x: Tensor) -> Tensor:
        d = (x - f).reshape(x.shape[0], -1)
        return torch.sqrt((d * d).sum(1)) / hw

    return (one(a) + one(b)) / 2


def psnr_vifb(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """VIFB PSNR: 20 log10(255 / sqrt(R)) with R its non-standard "RMSE" (:func:`rmse_vifb`)."""
    return 20 * torch.log10(255.0 / torch.sqrt(rmse_vifb(a, b, f)))


def psnr_tang(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """TANG PSNR: 20 log10(255 / sqrt(MSE on [0,1])) = standard PSNR + 20 log10(255) dB."""
    m = fusion_mse(a / 255.0, b / 255.0, f / 255.0)
    return 20 * math.log10(255.0) - 10 * torch.log10(m)
