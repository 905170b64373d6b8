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
    g, al = _qabf_arrays(torch.stack([a, b, f]))
    (ga, gb, gf), (aa, ab, af) = g.unbind(0), al.unbind(0)
    qaf = _qabf_q(ga, aa, gf, af)
    qbf = _qabf_q(gb, ab, gf, af)
    num = (qaf * ga + qbf * gb).flatten(1).sum(1)
    den = (ga + gb).flatten(1).sum(1)
    return num / den


SOBEL_V8 = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))  # x derivative ("gv" in sobel_fn), / 8 later
SOBEL_H8 = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))


def _nabf_arrays(x: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Shreyamsha Kumar's sobel_fn: correlation on a mirror-extended image (no edge repeat), kernels / 8.

    Computed exactly on integer levels, then multiplied by ``scale / 8`` (scale = 1/255 for [0, 1] inputs).
    """
    gv = filter3x3(x, SOBEL_V8, padding="reflect")
    gh = filter3x3(x, SOBEL_H8, padding="reflect")
    g = torch.sqrt(gh * gh + gv * gv) * (scale / 8.0)
    both0 = (gv == 0) & (gh == 0)
    safe_gh = torch.where(gh == 0, torch.ones_like(gh), gh)
    ang = torch.where(gh == 0, torch.sign(gv) * (math.pi / 2), torch.atan(gv / safe_gh))
    return g, torch.where(both0, torch.zeros_like(ang), ang)


def nabf(f: Tensor, a: Tensor, b: Tensor, scale: float = 1.0) -> Tensor:
    """Modified fusion-artifact measure N_AB/F (B. K. Shreyamsha Kumar). Lower is better. Shape (B,).

    Argument order as ``analysis_nabf(f, I1, I2)``: the fused image first. ``scale`` maps the 0..255 levels to
    the values the kit sees (1: 0..255, which reproduces the published TANG numbers; with [0, 1] inputs,
    scale = 1/255, the weight threshold g >= 2 would never trigger and every weight would be 0.001).
    """
    ga, aa = _nabf_arrays(a, scale)
    gb, ab = _nabf_arrays(b, scale)
    gf, af = _nabf_arrays(f, scale)

    def rel(gx: Tensor) -> Tensor:
        zero = (gx == 0) | (gf == 0)
        lo = torch.minimum(gx, gf)
        hi = torch.maximum(gx, gf)
        return torch.where(zero, torch.zeros_like(gx), lo / torch.where(zero, torch.ones_like(hi), hi))

    def q(gxf: Tensor, ax: Tensor) -> Tensor:
        axf = ((ax - af).abs() - math.pi / 2).abs() * 2 / math.pi
        qg = 0.9999 / (1 + torch.exp(-19 * (gxf - 0.5)))
        qa = 0.9995 / (1 + torch.exp(-22 * (axf - 0.5)))
        return torch.sqrt(qg * qa)

    qaf, qbf = q(rel(ga), aa), q(rel(gb), ab)
    wa = torch.where(ga >= 2, ga**1.5, torch.full_like(ga, 0.001))
    wb = torch.where(gb >= 2, gb**1.5, torch.full_like(gb, 0.001))
    na = ((gf > ga) & (gf > gb)).to(ga.dtype)
    num = (na * ((1 - qaf) * wa + (1 - qbf) * wb)).flatten(1).sum(1)
    return num / (wa + wb).flatten(1).sum(1)
