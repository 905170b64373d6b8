"""Order-fixed filtering and resizing for training-free fusion rules.

`F.conv2d` and `F.interpolate` sum their taps in an order chosen by the kernel library (oneDNN, the ATen
vectorised path for AVX2 or AVX-512, the thread split), so a few 8-bit values of a fused image can change from
one machine to the next. These helpers compute the same maps as element-wise multiply-adds over shifted slices,
in a fixed order, with weights computed in Python floats: the result depends only on the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _taps_along(x: torch.Tensor, weights: Sequence[float], dim: int) -> torch.Tensor:
    """Valid correlation of x with `weights` along `dim` (-1 or -2): sum_k w_k * x[k : k + n_out], in order k."""
    n_out = x.shape[dim] - len(weights) + 1
    out = weights[0] * x.narrow(dim, 0, n_out)
    for k in range(1, len(weights)):
        out = out + weights[k] * x.narrow(dim, k, n_out)
    return out


def separable_filter(x: torch.Tensor, kernel: Sequence[float], reflect: bool = True) -> torch.Tensor:
    """Filter BxCxHxW with the symmetric 1-D `kernel` (odd length) along W then H, reflect-padded.

    When a side is shorter than the kernel's radius + 1, the kernel is truncated to the largest radius that
    reflection allows there (the taps are not renormalised), as the pyramid code has always done.
    """
    radius = len(kernel) // 2
    for dim in (-1, -2):
        pad = min(radius, x.shape[dim] - 1)
        taps = list(kernel[radius - pad:radius + pad + 1])
        if pad:
            padding = (pad, pad, 0, 0) if dim == -1 else (0, 0, pad, pad)
            x = F.pad(x, padding, mode="reflect" if reflect else "replicate")
        x = _taps_along(x, taps, dim)
    return x


def _bilinear_axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, list[float], list[float]]:
    """Source indices and weights of a half-pixel-centred linear resize (align_corners=False, as
    `F.interpolate(mode="bilinear")`), computed in Python floats."""
    scale = n_in / n_out
    i0, i1, w0, w1 = [], [], [], []
    for i in range(n_out):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        lo = min(int(math.floor(src)), n_in - 1)
        frac = src - lo
        i0.append(lo)
        i1.append(min(lo + 1, n_in - 1))
        w0.append(1.0 - frac)
        w1.append(frac)
    return torch.tensor(i0), torch.tensor(i1), w0, w1


def resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of BxCxHxW to `size` (the sampling of `F.interpolate(..., mode="bilinear",
    align_corners=False)`), rows then columns, each output value `w0 * a + w1 * b`."""
    for dim, n_out in ((-2, size[0]), (-1, size[1])):
        n_in = x.shape[dim]
        if n_in == n_out:
            continue
        i0, i1, w0, w1 = _bilinear_axis(n_in, n_out)
        shape = [1] * x.dim()
        shape[dim] = n_out
        a = x.index_select(dim, i0.to(x.device))
        b = x.index_select(dim, i1.to(x.device))
        wa = torch.tensor(w0, dtype=x.dtype, device=x.device).view(shape)
        wb = torch.tensor(w1, dtype=x.dtype, device=x.device).view(shape)
        x = wa * a + wb * b
    return x
