"""Chen-Blum (Qcb) and Chen-Varshney (Qcv) metrics as in Z. Liu's toolbox (used by VIFB).

Inputs: Bx1xHxW float64 on the 0..255 scale. Frequency-domain filters are applied with torch.fft (the toolbox
does the same with fft2); the spatial Gaussian and Sobel filters are direct.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fusion_bench.metrics.functional.basic import filter3x3
from fusion_bench.metrics.functional.filters import sep_filter


def normalize1(x: Tensor) -> Tensor:
    """Min-max to 0..255 then round half away from zero; an all-zero image stays zero (toolbox ``normalize1``)."""
    flat = x.flatten(1)
    lo = flat.amin(1).view(-1, *([1] * (x.ndim - 1)))
    hi = flat.amax(1).view(-1, *([1] * (x.ndim - 1)))
    y = (x - lo) / (hi - lo)
    y = torch.sign(y) * torch.floor(y.abs() * 255 + 0.5)
    zero = (hi == 0) & (lo == 0)
    return torch.where(zero, x, y)


def _freq_radius(h: int, w: int, sh: float, sw: float, device: torch.device) -> Tensor:
    """r = sqrt(u^2 + v^2) on MATLAB's freqspace([h, w], 'meshgrid') grid scaled by (sw, sh); centred layout."""
    fu = (torch.arange(w, dtype=torch.float64, device=device) - w // 2) * (2.0 / w) * sw
    fv = (torch.arange(h, dtype=torch.float64, device=device) - h // 2) * (2.0 / h) * sh
    return torch.sqrt(fu.view(1, w) ** 2 + fv.view(h, 1) ** 2)


def _freq_filter(x: Tensor, centred: Tensor) -> Tensor:
    """real(ifft2(ifftshift(fftshift(fft2(x)) .* H))) for a centred real filter H (MATLAB's ifft2 returns the
    real result because the spectrum is conjugate-symmetric)."""
    spec = torch.fft.fft2(x)
    return torch.fft.ifft2(spec * torch.fft.ifftshift(centred, dim=(-2, -1))).real


def qcb(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """Chen & Blum (2009) quality: mean of saliency-weighted contrast preservation. Higher is better. (B,)"""
    h, w = f.shape[-2:]
    r = _freq_radius(h, w, h / 30.0, w / 30.0, f.device)
    sd = torch.exp(-((r / 15.3870) ** 2)) - 0.7622 * torch.exp(-((r / 1.3456) ** 2))
    xs = torch.stack([normalize1(a), normalize1(b), normalize1(f)])  # 3xBx1xHxW
    filt = _freq_filter(xs, sd)
    t = torch.arange(-15, 16, dtype=torch.float64)

    def g1d(sigma: float) -> Tensor:  # unnormalised 2-D Gaussian / (2 pi sigma^2) = outer(g, g) / (2 pi sigma^2)
        return torch.exp(-(t * t) / (2 * sigma * sigma)) / math.sqrt(2 * math.pi * sigma * sigma)

    k2, k4 = g1d(2.0), g1d(4.0)
    c = (sep_filter(filt, k2, mode="zeros") / sep_filter(filt, k4, mode="zeros") - 1).abs()
    cp = c**3 / (c**2 + 1e-4)
    c1, c2, cf = cp[0], cp[1], cp[2]
    q1 = torch.where(c1 < cf, c1 / cf, cf / c1)
    q2 = torch.where(c2 < cf, c2 / cf, cf / c2)
    den = c1 * c1 + c2 * c2
    q = (c1 * c1) / den * q1 + (c2 * c2) / den * q2
    return q.flatten(1).mean(1)


def _block_sum(x: Tensor, size: int) -> Tensor:
    """Sums over size x size blocks, partial blocks zero-padded (MATLAB blkproc). x: BxHxW -> Bxnhxnw."""
    h, w = x.shape[-2:]
    ph, pw = -h % size, -w % size
    xp = torch.nn.functional.pad(x, (0, pw, 0, ph))
    bsz = x.shape[0]
    return xp.reshape(bsz, (h + ph) // size, size, (w + pw) // size, size).sum(dim=(2, 4))


def qcv(a: Tensor, b: Tensor, f: Tensor, window: int = 16, alpha: float = 5.0) -> Tensor:
    """Chen & Varshney (2007): saliency-weighted CSF-filtered squared error over 16x16 blocks. Lower is better."""
    a, b, f = normalize1(a), normalize1(b), normalize1(f)
    flt1 = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
    flt2 = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))

    def grad(x: Tensor) -> Tensor:
        gx = filter3x3(x, flt1, padding="zeros")
        gy = filter3x3(x, flt2, padding="zeros")
        return torch.sqrt(gx * gx + gy * gy)

    lam1 = _block_sum(grad(a).flatten(0, 1) ** alpha, window)
    lam2 = _block_sum(grad(b).flatten(0, 1) ** alpha, window)
    h, w = f.shape[-2:]
    r = _freq_radius(h, w, h / 8.0, w / 8.0, f.device)
    theta = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    df = _freq_filter(torch.stack([a - f, b - f]).flatten(1, 2), theta)
    d1 = _block_sum(df[0] ** 2, window) / (window * window)
    d2 = _block_sum(df[1] ** 2, window) / (window * window)
    return (lam1 * d1 + lam2 * d2).flatten(1).sum(1) / (lam1 + lam2).flatten(1).sum(1)
