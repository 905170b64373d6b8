"""Chen-Blum (Qcb) and Chen-Varshney (Qcv) metrics as in Z. Liu's toolbox (used by VIFB).

Inputs: Bx1xHxW float64 on the 0..255 scale. Frequency-domain filters are applied with torch.fft (the toolbox
does the same with fft2); the spatial Gaussian and Sobel filters are direct. The per-image parts (`qcb_contrast`,
`qcv_weights`) are separate functions so that the vifb dialect runs them once per distinct source channel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fusion_bench.metrics.functional.filters import sep_filter
from fusion_bench.metrics.functional.qabf import sobel_conv_zero_pad


def normalize1(x: Tensor) -> Tensor:
    """Min-max to 0..255 then round half away from zero; an all-zero image stays zero (toolbox ``normalize1``).

    One image per index of dim 0. (x - min) / (max - min) is never negative, so the toolbox's
    sign(y) * floor(|y| * 255 + 0.5) is floor(y * 255 + 0.5), computed here in place (same numbers, NaN for a
    constant non-zero image as in MATLAB).
    """
    flat = x.flatten(1)
    shape = (-1, *([1] * (x.ndim - 1)))
    lo, hi = flat.amin(1).view(shape), flat.amax(1).view(shape)
    y = torch.sub(x, lo).div_(hi - lo).mul_(255).add_(0.5).floor_()
    return torch.where((hi == 0) & (lo == 0), x, y)


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


def _freq_filter_half(x: Tensor, centred: Tensor) -> Tensor:
    """`_freq_filter` through rfft2 / irfft2 (half the transform work).

    H is a function of the radius on MATLAB's freqspace grid, so after ifftshift H[k] = H[-k] (for even sizes
    up to the unpaired Nyquist row/column, which irfft2 treats as real like ifft2's .real): the product keeps a
    real image's spectrum Hermitian and the result is the same up to the transforms' float64 rounding. Used
    where that rounding stays rounding (Qcv's sums of squares), not for Qcb (see `qcb_contrast`).
    """
    w = x.shape[-1]
    half = torch.fft.ifftshift(centred, dim=(-2, -1))[..., : w // 2 + 1]
    return torch.fft.irfft2(torch.fft.rfft2(x) * half, s=x.shape[-2:])


def _qcb_csf(h: int, w: int, device: torch.device) -> Tensor:
    """Chen-Blum's contrast sensitivity filter (difference of Gaussians in the radius), centred layout."""
    r = _freq_radius(h, w, h / 30.0, w / 30.0, device)
    return torch.exp(-((r / 15.3870) ** 2)) - 0.7622 * torch.exp(-((r / 1.3456) ** 2))


def _qcb_gaussian(sigma: float) -> Tensor:
    """31-tap factor g of the toolbox's unnormalised 2-D Gaussian / (2 pi sigma^2) = outer(g, g)."""
    t = torch.arange(-15, 16, dtype=torch.float64)
    return torch.exp(-(t * t) / (2 * sigma * sigma)) / math.sqrt(2 * math.pi * sigma * sigma)


def qcb_contrast(x: Tensor) -> Tensor:
    """Chen-Blum's contrast map C^3 / (C^2 + 1e-4) of each image of x (Nx1xHxW levels 0..255), with
    C = |G_2 * I / G_4 * I - 1| and I the CSF-filtered ``normalize1``-d image.

    Image by image (a source channel shared by several fused channels is done once). The full complex FFT is
    kept on purpose: where I is rounding noise (black backgrounds of medical images) the ratio of the two
    Gaussian sums amplifies any change of that noise (rfft2 moved Qcb by up to 1.8e-3 relative on the MRI_PET
pairs; OpenCV's Gaussian instead of SciPy's, a few ulps per sum, by 5e-13).
    """
    return qcb_contrast_normalized(normalize1(x))


def qcb_contrast_normalized(n: Tensor) -> Tensor:
    """`qcb_contrast` of images already through ``normalize1``."""
    h, w = n.shape[-2:]
    filt = _freq_filter(n, _qcb_csf(h, w, n.device))
    c = sep_filter(filt, _qcb_gaussian(2.0), mode="zeros").div_(sep_filter(filt, _qcb_gaussian(4.0), mode="zeros"))
    c = c.sub_(1).abs_()
    c2 = c * c
    return c2.mul(c).div_(c2.add_(1e-4))


def qcb_combine(c1: Tensor, c2: Tensor, cf: Tensor) -> Tensor:
    """Qcb from the contrast maps (`qcb_contrast`) of the two sources and the fused image. Shape (N,)."""
    q1 = torch.where(c1 < cf, c1 / cf, cf / c1)
    q2 = torch.where(c2 < cf, c2 / cf, cf / c2)
    den = c1 * c1 + c2 * c2
    q = (c1 * c1) / den * q1 + (c2 * c2) / den * q2
    return q.flatten(1).mean(1)


def qcb(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """Chen & Blum (2009) quality: mean of saliency-weighted contrast preservation. Higher is better. (B,)"""
    bsz = f.shape[0]
    return qcb_combine(*qcb_contrast(torch.cat([a, b, f])).split(bsz))


def _block_sum(x: Tensor, size: int) -> Tensor:
    """Sums over size x size blocks, partial blocks zero-padded (MATLAB blkproc). x: BxHxW -> Bxnhxnw."""
    h, w = x.shape[-2:]
    ph, pw = -h % size, -w % size
    xp = torch.nn.functional.pad(x, (0, pw, 0, ph))
    bsz = x.shape[0]
    return xp.reshape(bsz, (h + ph) // size, size, (w + pw) // size, size).sum(dim=(2, 4))


def qcv_weights(n: Tensor, window: int = 16, alpha: float = 5.0) -> Tensor:
    """Chen-Varshney's saliency weights: block sums of |Sobel gradient|^alpha of each ``normalize1``-d image
    (whole levels). n: Nx1xHxW -> Nxnhxnw."""
    # the toolbox correlates with [-1 0 1; -2 0 2; -1 0 1] and its transpose = -conv2(., H3) and conv2(., H1):
    # sums of whole levels (or NaN for a constant image), exact in any order, so shifted additions give them
    gx, gy = sobel_conv_zero_pad(n)
    return _block_sum(torch.sqrt(gx * gx + gy * gy).flatten(0, 1) ** alpha, window)


def qcv_combine(na: Tensor, nb: Tensor, nf: Tensor, lam1: Tensor, lam2: Tensor, window: int = 16) -> Tensor:
    """Qcv from the ``normalize1``-d images (Nx1xHxW) and the source weights (`qcv_weights`). Shape (N,).

    The CSF filter runs through `_freq_filter_half` (real FFTs): Qcv is a ratio of sums of non-negative squared
    errors, so the transforms' rounding stays at the 1e-15 level (measured <= 1e-15 relative against the complex
    FFT on the real-image mix and on random images).
    """
    h, w = nf.shape[-2:]
    r = _freq_radius(h, w, h / 8.0, w / 8.0, nf.device)
    theta = 2.6 * (0.0192 + 0.144 * r) * torch.exp(-((0.144 * r) ** 1.1))
    df = _freq_filter_half(torch.stack([na - nf, nb - nf]).flatten(1, 2), theta)
    d1 = _block_sum(df[0] ** 2, window) / (window * window)
    d2 = _block_sum(df[1] ** 2, window) / (window * window)
    return (lam1 * d1 + lam2 * d2).flatten(1).sum(1) / (lam1 + lam2).flatten(1).sum(1)


def qcv(a: Tensor, b: Tensor, f: Tensor, window: int = 16, alpha: float = 5.0) -> Tensor:
    """Chen & Varshney (2007): saliency-weighted CSF-filtered squared error over 16x16 blocks. Lower is better."""
    na, nb, nf = normalize1(a), normalize1(b), normalize1(f)
    lam = qcv_weights(torch.cat([na, nb]), window, alpha)
    lam1, lam2 = lam.split(f.shape[0])
    return qcv_combine(na, nb, nf, lam1, lam2, window)
