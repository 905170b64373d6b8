"""VIF: Sheikh & Bovik's pixel-domain multiscale VIF (LIVE ``vifp_mscale``), as used by the fusion kits.

Moments, variances and the thresholds in float64: the LIVE code compares local variances with 1e-10, so the
moment filters must be direct float64 sums (float32 cancellation noise in ``E[x^2] - mu^2`` would be ~1e-2 on
0..255 data). Only the non-negative log terms are float32 (see :func:`_terms`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fusion_bench.metrics.functional.filters import filter_valid_down2, filter_valid_maps, gaussian_1d

SIGMA_NSQ = 2.0
EPS = 1e-10
LN10 = math.log(10.0)
VIF_MIN_SIZE = 41  # smallest side for which all 4 scales have a valid window


def _terms(mu1: Tensor, mu2: Tensor, s11: Tensor, s22: Tensor, s12: Tensor) -> tuple[Tensor, Tensor]:
    """Per-scale (num, den) sums with LIVE's clamping rules.

    mu1, s11, s12: filtered moments of the references and cross moments, KxBxHxW; mu2, s22: of the distorted
    image, BxHxW. Returns two KxB tensors. LIVE's masking collapses to: a pixel adds to ``den`` iff
    sigma1^2 >= eps, and to ``num`` iff also sigma2^2 >= eps and g >= 0; in every other case LIVE's g is 0
    (so its num term is log10(1) = 0) and, for sigma1^2 < eps, sigma1^2 := 0 (den term 0). Zeroing sigma1^2
    and g in those cases gives exactly those terms.
    """
    sigma1_sq = torch.addcmul(s11, mu1, mu1, value=-1.0)
    sigma1_sq = sigma1_sq.masked_fill_(sigma1_sq < EPS, 0.0)  # also clamps negatives to 0
    sigma2_sq = torch.addcmul(s22, mu2, mu2, value=-1.0).clamp_min_(0)
    sigma12 = torch.addcmul(s12, mu1, mu2, value=-1.0)
    g = torch.div(sigma12, sigma1_sq + EPS).clamp_min_(0).mul_(sigma2_sq >= EPS)
    sv_sq = torch.addcmul(sigma2_sq, g, sigma12, value=-1.0).clamp_min_(EPS)  # sv_sq <= eps -> eps
    ratio = g.square_().mul_(sigma1_sq).div_(sv_sq.add_(SIGMA_NSQ))
    # the log terms are >= 0 and log1p(float32(r)) is within ~2e-7 relative of log1p(r), so the float32 logs
    # (vectorised, unlike float64 log1p) keep the sums within 2e-7 relative; the thresholds above stay float64
    num = torch.log1p(ratio.to(torch.float32)).sum((-2, -1), dtype=torch.float64) / LN10
    den = torch.log1p(sigma1_sq.mul_(1.0 / SIGMA_NSQ).to(torch.float32)).sum((-2, -1), dtype=torch.float64) / LN10
    return num, den


def _moment_maps(refs: Tensor, dist: Tensor) -> list[Tensor]:
    """[refs..., dist, dist^2, refs^2..., refs*dist...]: K references (KxBxHxW) and the distorted image (BxHxW)."""
    sq, cross = refs * refs, refs * dist
    return [*refs.unbind(0), dist, dist * dist, *sq.unbind(0), *cross.unbind(0)]


def vifp_mscale_multi(refs: list[Tensor], dist: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(num, den) of vifp_mscale(ref_i, dist) for several references sharing one distorted image.

    refs, dist: BxHxW (or Bx1xHxW) float64 on the 0..255 scale. All references and moment maps of a scale go
    through one filtering call (one batch for the filter threads / one CUDA launch sequence).
    """
    ref = torch.stack([r.reshape(r.shape[0], r.shape[-2], r.shape[-1]) for r in refs]).to(torch.float64)
    dst = dist.reshape(dist.shape[0], dist.shape[-2], dist.shape[-1]).to(torch.float64)
    k = ref.shape[0]
    num = torch.zeros((k, dst.shape[0]), dtype=torch.float64, device=dst.device)
    den = torch.zeros_like(num)
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = gaussian_1d(n, n / 5.0)
        if scale > 1:
            down = filter_valid_down2(torch.cat([ref, dst[None]]), win)
            ref, dst = down[:k], down[k]
        filt = filter_valid_maps(_moment_maps(ref, dst), win)
        sn, sd = _terms(filt[:k], filt[k], filt[k + 2 : 2 * k + 2], filt[k + 1], filt[2 * k + 2 :])
        num += sn
        den += sd
    return list(zip(num.unbind(0), den.unbind(0)))


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
