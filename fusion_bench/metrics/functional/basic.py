"""Single-image statistics: EN, SD, SF, AG, EI (inputs: BxCxHxW float64 on the 0..255 scale)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fusion_bench.metrics.functional.filters import sep_filter


def count_bins(idx: Tensor, n: int) -> Tensor:
    """Counts of the int64 indices idx in 0..n-1 as float64 (n,). CPU: bincount; CUDA: scatter_add into a
    fixed-size buffer (bincount would read the maximum back to the host, a sync; adding 1.0s is exact)."""
    idx = idx.reshape(-1)
    if idx.device.type == "cpu":
        return torch.bincount(idx, minlength=n).to(torch.float64)
    ones = torch.ones(idx.shape, dtype=torch.float64, device=idx.device)
    return torch.zeros(n, dtype=torch.float64, device=idx.device).scatter_add_(0, idx, ones)


def histogram256(x: Tensor) -> Tensor:
    """Per-image 256-bin histogram of integer levels (values outside 0..255 are clipped). Bx256 float64."""
    bsz = x.shape[0]
    idx = x.reshape(bsz, -1).clamp(0, 255).to(torch.int64)
    idx = idx + 256 * torch.arange(bsz, device=x.device).unsqueeze(1)
    return count_bins(idx, 256 * bsz).reshape(bsz, 256)


def entropy_from_counts(counts: Tensor, base: float = 2.0) -> Tensor:
    """Shannon entropy of the last dimension's histogram (zero bins skipped)."""
    p = counts / counts.sum(dim=-1, keepdim=True)
    logp = torch.where(p > 0, torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    return -(p * logp).sum(dim=-1) / math.log(base)


def entropy(x: Tensor, base: float = 2.0) -> Tensor:
    """EN: entropy of the 256-bin histogram of rounded levels (base 2 -> bits, range [0, 8]). Shape (B,)."""
    return entropy_from_counts(histogram256(torch.round(x)), base)


def standard_deviation(x: Tensor) -> Tensor:
    """SD: population standard deviation over all pixels (divide by MN). Shape (B,)."""
    return x.reshape(x.shape[0], -1).std(dim=1, unbiased=False)


def spatial_frequency(x: Tensor, normalize: str = "diffs") -> Tensor:
    """SF = sqrt(RF^2 + CF^2) of a BxCxHxW batch (channels must be 1; see :func:`spatial_frequency_vifb`).

    normalize: "diffs" (mean over the M(N-1) / (M-1)N differences; CDD, TANG) or "mn" (sums divided by MN; VIFB).
    """
    dh = (x[..., :, 1:] - x[..., :, :-1]) ** 2
    dv = (x[..., 1:, :] - x[..., :-1, :]) ** 2
    bsz = x.shape[0]
    if normalize == "diffs":
        rf2 = dh.reshape(bsz, -1).mean(1)
        cf2 = dv.reshape(bsz, -1).mean(1)
    elif normalize == "mn":
        mn = x.shape[-1] * x.shape[-2] * x.shape[-3]
        rf2 = dh.reshape(bsz, -1).sum(1) / mn
        cf2 = dv.reshape(bsz, -1).sum(1) / mn
    else:
        raise ValueError(f"normalize must be 'diffs' or 'mn', got {normalize!r}")
    return torch.sqrt(rf2 + cf2)


def spatial_frequency_vifb(x: Tensor) -> Tensor:
    """VIFB SF of a BxCxHxW image: channels placed side by side as an Hx(C*W) image (seams included), sums / (H*C*W)."""
    side = torch.cat(list(x.unbind(1)), dim=-1).unsqueeze(1)
    return spatial_frequency(side, normalize="mn")


def matlab_gradient(x: Tensor) -> tuple[Tensor, Tensor]:
    """MATLAB `gradient`: central differences inside, one-sided at the borders. Returns (gx, gy)."""
    gx = torch.empty_like(x)
    gy = torch.empty_like(x)
    if x.shape[-1] > 1:
        gx[..., :, 0] = x[..., :, 1] - x[..., :, 0]
        gx[..., :, -1] = x[..., :, -1] - x[..., :, -2]
        gx[..., :, 1:-1] = (x[..., :, 2:] - x[..., :, :-2]) / 2
    else:
        gx.zero_()
    if x.shape[-2] > 1:
        gy[..., 0, :] = x[..., 1, :] - x[..., 0, :]
        gy[..., -1, :] = x[..., -1, :] - x[..., -2, :]
        gy[..., 1:-1, :] = (x[..., 2:, :] - x[..., :-2, :]) / 2
    else:
        gy.zero_()
    return gx, gy


def average_gradient(x: Tensor, normalize: str = "mn") -> Tensor:
    """AG: sum of sqrt((gx^2 + gy^2)/2) with MATLAB gradients, per image and channel, averaged over channels.

    normalize: "mn" (mean, CDD) or "m1n1" (sum / ((M-1)(N-1)); VIFB, TANG).
    """
    gx, gy = matlab_gradient(x)
    g = torch.sqrt((gx * gx + gy * gy) / 2)
    h, w = x.shape[-2:]
    s = g.sum(dim=(-2, -1))  # BxC
    if normalize == "mn":
        v = s / (h * w)
    elif normalize == "m1n1":
        v = s / ((h - 1) * (w - 1))
    else:
        raise ValueError(f"normalize must be 'mn' or 'm1n1', got {normalize!r}")
    return v.mean(dim=1)


def filter3x3(x: Tensor, kernel: tuple[tuple[float, ...], ...], padding: str = "zeros",
              correlate: bool = True) -> Tensor:
    """3x3 filtering with a separable integer kernel (Sobel): exact for integer inputs on any device.

    padding: "zeros", "replicate" or "reflect" (mirror without edge repeat). correlate=False flips the kernel
    (true convolution, as MATLAB conv2 / scipy convolve2d). Output has the input's size ('same').
    """
    k = torch.tensor(kernel, dtype=torch.float64)
    if not correlate:
        k = torch.flip(k, dims=(0, 1))
    # rank-1 factorisation k = u v^T (exact for the Sobel kernels used here)
    i, j = divmod(int(torch.argmax(k.abs())), 3)
    u, v = k[:, j] / k[i, j], k[i, :]
    if not torch.equal(torch.outer(u, v), k):
        raise ValueError("filter3x3 needs a separable kernel")
    return sep_filter(x, u, v, padding)


SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))  # fspecial('sobel')
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def edge_intensity(x: Tensor) -> Tensor:
    """EI (VIFB): mean of sqrt(gx^2 + gy^2) with Sobel correlation and replicate borders, over all channels."""
    gy = filter3x3(x, SOBEL_Y, padding="replicate")
    gx = filter3x3(x, tuple(zip(*SOBEL_Y)), padding="replicate")
    return torch.sqrt(gx * gx + gy * gy).reshape(x.shape[0], -1).mean(1)
