"""Edge-preservation metrics: Qabf (Xydeas & Petrovic, "Richang Hong" code) and Nabf (Shreyamsha Kumar)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fusion_bench.metrics.functional.basic import filter3x3

H1 = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
H3 = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def _qabf_arrays(x: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient strength and angle: true 2-D convolution ('same', zero padding); exact for integer inputs."""
    sx = filter3x3(x, H3, padding="zeros", correlate=False)
    sy = filter3x3(x, H1, padding="zeros", correlate=False)
    g = torch.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    alpha = torch.where(zero, torch.full_like(sx, math.pi / 2), torch.atan(sy / torch.where(zero, 1.0, sx)))
    return g, alpha


def _qabf_q(ga: Tensor, aa: Tensor, gf: Tensor, af: Tensor) -> Tensor:
    ratio = torch.where(ga > gf, gf / torch.where(ga > gf, ga, 1.0), ga / torch.where(ga < gf, gf, 1.0))
    gaf = torch.where(ga == gf, gf, ratio)  # the kits' quirk: G = g_F (not 1) where the strengths are equal
    aaf = 1 - (aa - af).abs() / (math.pi / 2)
    qg = 0.9994 / (1 + torch.exp(-15 * (gaf - 0.5)))
    qa = 0.9879 / (1 + torch.exp(-22 * (aaf - 0.8)))
    return qg * qa


def qabf(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """Qabf = sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B). Inputs Bx1xHxW on 0..255. Shape (B,)."""
    ga, aa = _qabf_arrays(a)
    gb, ab = _qabf_arrays(b)
    gf, af = _qabf_arrays(f)
    qaf = _qabf_q(ga, aa, gf, af)
    qbf = _qabf_q(gb, ab, gf, af)
    num = (qaf * ga + qbf * gb).flatten(1).sum(1)
    den = (ga + gb).flatten(1).sum(1)
    return num / den
