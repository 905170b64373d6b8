"""Edge-preservation metrics: Qabf (Xydeas & Petrovic, "Richang Hong" code) and Nabf (Shreyamsha Kumar)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fusion_bench.metrics.functional.basic import filter3x3

H1 = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))
H3 = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def _qabf_arrays(x: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient strength and angle in float64: true 2-D convolution ('same', zero padding).

    On the CPU, whole-number levels (checked) take the shifted additions of `sobel_conv_zero_pad`: their sums
    are exact integers, as are the direct filter's, so the numbers are the same at less cost.
    """
    if x.device.type == "cpu" and bool(torch.eq(x, x.floor()).all()):
        sx, sy = sobel_conv_zero_pad(x)
    else:
        sx = filter3x3(x, H3, padding="zeros", correlate=False)
        sy = filter3x3(x, H1, padding="zeros", correlate=False)
    g = torch.sqrt(sx * sx + sy * sy)
    zero = sx == 0
    alpha = torch.where(zero, torch.full_like(sx, math.pi / 2), torch.atan(sy / torch.where(zero, 1.0, sx)))
    return g, alpha


def sobel_conv_zero_pad(x: Tensor) -> tuple[Tensor, Tensor]:
    """(conv2(x, H3, 'same'), conv2(x, H1, 'same')) with zero padding, by shifted additions in x's dtype.

    Exact for integer levels in float32 (every partial sum is an integer of magnitude <= 4 * 255) and for whole
    numbers below 2^50 in float64.
    """
    p = torch.nn.functional.pad(x, (1, 1, 1, 1))
    v = torch.add(p[..., :-2, :], p[..., 2:, :]).add_(p[..., 1:-1, :], alpha=2)  # vertical [1 2 1]
    h = torch.add(p[..., :, :-2], p[..., :, 2:]).add_(p[..., :, 1:-1], alpha=2)  # horizontal [1 2 1]
    return v[..., :, :-2] - v[..., :, 2:], h[..., 2:, :] - h[..., :-2, :]


def _qabf_q(ga: Tensor, aa: Tensor, gf: Tensor, af: Tensor) -> Tensor:
    """Q_XF = Qg * Qa per pixel (new tensor; the inputs are not modified)."""
    ratio = torch.minimum(ga, gf).div_(torch.maximum(ga, gf))
    gaf = torch.where(ga == gf, gf, ratio)  # the kits' quirk: G = g_F (not 1) where the strengths are equal
    aaf = torch.sub(aa, af).abs_().div_(-math.pi / 2).add_(1)  # 1 - |aa - af| / (pi / 2)
    qg = gaf.sub_(0.5).mul_(-15).exp_().add_(1)  # 1 + exp(-15 (G - 0.5))
    qa = aaf.sub_(0.8).mul_(-22).exp_().add_(1)
    return qg.mul_(qa).reciprocal_().mul_(0.9994 * 0.9879)


def qabf_features(x: Tensor, integer_levels: bool = False) -> tuple[Tensor, Tensor]:
    """(gradient strength, angle) maps of each image of x (Nx1xHxW levels 0..255), as `qabf` computes them (see
    there for ``integer_levels``). Image by image, so the vifb dialect runs it once per distinct source channel."""
    if integer_levels:
        sx, sy = sobel_conv_zero_pad(x.to(torch.float32))
        g = (sx * sx).addcmul_(sy, sy).sqrt_()  # sx^2 + sy^2 < 2^24 is exact: g_A == g_F iff the integers agree
        al = torch.div(sy, sx).atan_().masked_fill_(sx == 0, math.pi / 2)
        return g, al
    return _qabf_arrays(x)


def qabf_combine(ga: Tensor, aa: Tensor, gb: Tensor, ab: Tensor, gf: Tensor, af: Tensor) -> Tensor:
    """Qabf from the (strength, angle) maps (`qabf_features`) of the two sources and the fused image. Shape (N,)."""
    weighted = _qabf_q(ga, aa, gf, af).mul_(ga).add_(_qabf_q(gb, ab, gf, af).mul_(gb))
    num = weighted.flatten(1).sum(1, dtype=torch.float64)
    den = ga.flatten(1).sum(1, dtype=torch.float64) + gb.flatten(1).sum(1, dtype=torch.float64)
    return num / den


def qabf(a: Tensor, b: Tensor, f: Tensor, integer_levels: bool = False) -> Tensor:
    """Qabf = sum(Q_AF g_A + Q_BF g_B) / sum(g_A + g_B). Inputs Bx1xHxW on 0..255. Shape (B,).

    integer_levels=True (the inputs are whole 8-bit levels, as in the mmif and tang dialects): the Sobel
    responses are computed exactly in float32 and the per-pixel terms in float32 (relative error < 1e-5 per
    term; every term is non-negative, so the ratio of the float64 sums keeps that bound), which is about twice
    as fast. The exact-zero and equality tests see the same integers either way. Otherwise float64 throughout.
    """
    g, al = qabf_features(torch.stack([a, b, f]), integer_levels)
    (ga, gb, gf), (aa, ab, af) = g.unbind(0), al.unbind(0)
    return qabf_combine(ga, aa, gb, ab, gf, af)


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
