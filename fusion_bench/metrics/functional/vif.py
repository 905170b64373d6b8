"""VIF: Sheikh & Bovik's pixel-domain multiscale VIF (LIVE ``vifp_mscale``), as used by the fusion kits."""

from __future__ import annotations

import torch
from torch import Tensor

from fusion_bench.metrics.functional.filters import filter_valid, filter_valid_down2, gaussian_1d

SIGMA_NSQ = 2.0
EPS = 1e-10
VIF_MIN_SIZE = 41  # smallest side for which all 4 scales have a valid window


def _terms(mu1: Tensor, mu2: Tensor, s11: Tensor, s22: Tensor, s12: Tensor) -> tuple[Tensor, Tensor]:
    """Per-scale (num, den) sums with LIVE's clamping rules. Inputs: filtered moments, BxHxW."""
    sigma1_sq = (s11 - mu1 * mu1).clamp_min(0)
    sigma2_sq = (s22 - mu2 * mu2).clamp_min(0)
    sigma12 = s12 - mu1 * mu2
    g = sigma12 / (sigma1_sq + EPS)
    sv_sq = sigma2_sq - g * sigma12
    small1 = sigma1_sq < EPS
    g = torch.where(small1, torch.zeros_like(g), g)
    sv_sq = torch.where(small1, sigma2_sq, sv_sq)
    sigma1_sq = torch.where(small1, torch.zeros_like(sigma1_sq), sigma1_sq)
    small2 = sigma2_sq < EPS
    g = torch.where(small2, torch.zeros_like(g), g)
    sv_sq = torch.where(small2, torch.zeros_like(sv_sq), sv_sq)
    neg = g < 0
    sv_sq = torch.where(neg, sigma2_sq, sv_sq)
    g = torch.where(neg, torch.zeros_like(g), g)
    sv_sq = sv_sq.clamp_min(EPS)  # sv_sq <= eps -> eps
    num = torch.log10(1 + g * g * sigma1_sq / (sv_sq + SIGMA_NSQ)).flatten(1).sum(1)
    den = torch.log10(1 + sigma1_sq / SIGMA_NSQ).flatten(1).sum(1)
    return num, den


def vifp_mscale_multi(refs: list[Tensor], dist: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(num, den) of vifp_mscale(ref_i, dist) for several references sharing one distorted image.

    refs, dist: BxHxW (or Bx1xHxW) float64 on the 0..255 scale.
    """
    refs = [r.reshape(r.shape[0], r.shape[-2], r.shape[-1]).to(torch.float64) for r in refs]
    dist = dist.reshape(dist.shape[0], dist.shape[-2], dist.shape[-1]).to(torch.float64)
    k = len(refs)
    nums = [torch.zeros(dist.shape[0], dtype=torch.float64, device=dist.device) for _ in range(k)]
    dens = [torch.zeros_like(n) for n in nums]
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = gaussian_1d(n, n / 5.0)
        if scale > 1:
            stack = filter_valid_down2(torch.stack([*refs, dist]), win)
            refs, dist = list(stack[:k]), stack[k]
        # one filtering pass over every moment map
        maps = [*refs, dist, dist * dist] + [r * r for r in refs] + [r * dist for r in refs]
        filt = filter_valid(torch.stack(maps), win)
        mus, mu2, s22 = filt[:k], filt[k], filt[k + 1]
        s11s, s12s = filt[k + 2 : 2 * k + 2], filt[2 * k + 2 :]
        for i in range(k):
            num, den = _terms(mus[i], mu2, s11s[i], s22, s12s[i])
            nums[i] = nums[i] + num
            dens[i] = dens[i] + den
    return list(zip(nums, dens))


def vif_fusion(a: Tensor, b: Tensor, f: Tensor, nan_to_one: bool = True) -> Tensor:
    """VIF(A->F) + VIF(B->F) with vifp_mscale (reference = source). CDD maps a NaN term (flat source) to 1."""
    out = torch.zeros(f.shape[0], dtype=torch.float64, device=f.device)
    if min(f.shape[-2:]) < VIF_MIN_SIZE:  # the 4th scale would be empty (the kits raise); report NaN
        return out + float("nan")
    for num, den in vifp_mscale_multi([a, b], f):
        v = num / den
        if nan_to_one:
            v = torch.where(torch.isnan(v), torch.ones_like(v), v)
        out = out + v
    return out
