"""Histogram-based information metrics: MI, NMI, CE (inputs: Bx1xHxW float64 integer levels 0..255)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fusion_bench.metrics.functional.basic import count_bins, entropy_from_counts, histogram256


def _int_levels(x: Tensor) -> Tensor:
    """Bx... float levels -> Bx(N) int32 in 0..255 (rounded, clipped)."""
    return torch.round(x.reshape(x.shape[0], -1)).clamp_(0, 255).to(torch.int32)


def _joint_counts(xi: Tensor, yi: Tensor) -> Tensor:
    """Bx256x256 float64 joint counts of int32 level arrays (rows x, columns y)."""
    bsz = xi.shape[0]
    idx = torch.mul(xi, 256).add_(yi)
    if bsz > 1:
        idx.add_(65536 * torch.arange(bsz, device=xi.device, dtype=torch.int32).unsqueeze(1))
    return count_bins(idx if idx.device.type == "cpu" else idx.long(), 65536 * bsz).reshape(bsz, 256, 256)


def joint_histogram256(x: Tensor, y: Tensor, saturate_254: bool = False) -> Tensor:
    """Per-image 256x256 joint histogram of integer levels (Bx256x256 float64, rows x, columns y).

    saturate_254: merge levels 254 and 255 (TANG's Hab.m indexes with uint8(v)+1, which saturates at 255).
    """
    xi, yi = _int_levels(x), _int_levels(y)
    if saturate_254:
        xi.clamp_(max=254)
        yi.clamp_(max=254)
    return _joint_counts(xi, yi)


def _mi_from_joint(joint: Tensor, base: float) -> Tensor:
    n = joint.sum(dim=(1, 2), keepdim=True)
    pxy = joint / n
    px = pxy.sum(2, keepdim=True)
    py = pxy.sum(1, keepdim=True)
    nz = pxy > 0
    ratio = torch.where(nz, pxy / (px * py).clamp_min(1e-300), torch.ones_like(pxy))
    return (pxy * torch.log(ratio)).sum(dim=(1, 2)) / math.log(base)


def mutual_information_pair(x: Tensor, y: Tensor, base: float = math.e) -> Tensor:
    """MI(x; y) from exact label counting: sum p_ij log(p_ij / (p_i p_j)). Shape (B,)."""
    return _mi_from_joint(_joint_counts(_int_levels(x), _int_levels(y)), base)


def mutual_information(a: Tensor, b: Tensor, f: Tensor, base: float = math.e) -> Tensor:
    """Fusion MI = MI(A;F) + MI(B;F). base e -> nats (CDD, VIFB), base 2 -> bits. F's levels are indexed once."""
    fi = _int_levels(f)
    return (_mi_from_joint(_joint_counts(_int_levels(a), fi), base)
            + _mi_from_joint(_joint_counts(_int_levels(b), fi), base))


def mutual_information_tang(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """TANG MI in bits: H(X) + H(F) - H(X,F) with 256-bin marginals and a joint histogram that merges 254/255."""
    hf = entropy_from_counts(histogram256(f), 2.0)

    def one(x: Tensor) -> Tensor:
        hx = entropy_from_counts(histogram256(x), 2.0)
        joint = joint_histogram256(x, f, saturate_254=True).reshape(x.shape[0], -1)
        return hx + hf - entropy_from_counts(joint, 2.0)

    return one(a) + one(b)


def normalized_mutual_information(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """NMI (Hossny et al. 2008 form): 2 [MI(A;F)/(H(A)+H(F)) + MI(B;F)/(H(B)+H(F))], range [0, 2]."""
    hf = entropy_from_counts(histogram256(f), 2.0)
    out = torch.zeros(a.shape[0], dtype=torch.float64, device=a.device)
    for x in (a, b):
        hx = entropy_from_counts(histogram256(x), 2.0)
        mi = mutual_information_pair(x, f, 2.0)
        out = out + 2 * mi / (hx + hf)
    return out


def cross_entropy_vifb(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    """VIFB "Cross_entropy": mean over sources of sum p_X log2(p_X / p_F) over bins where both are non-zero."""
    pf = histogram256(f)
    pf = pf / pf.sum(1, keepdim=True)
    out = torch.zeros(a.shape[0], dtype=torch.float64, device=a.device)
    for x in (a, b):
        px = histogram256(x)
        px = px / px.sum(1, keepdim=True)
        both = (px > 0) & (pf > 0)
        term = torch.where(both, px * torch.log2(px.clamp_min(1e-300) / pf.clamp_min(1e-300)), torch.zeros_like(px))
        out = out + term.sum(1)
    return out / 2
