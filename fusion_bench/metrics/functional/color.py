"""Colour difference: CIEDE2000 (Sharma, Wu & Dalal 2005) on sRGB -> CIELAB (D65, 2 deg), as scikit-image."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
_WHITE_D65 = (0.95047, 1.0, 1.08883)


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """Bx3xHxW sRGB in [0, 1] -> CIELAB (skimage.color.rgb2lab defaults). float64."""
    x = rgb.to(torch.float64)
    lin = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    m = torch.tensor(_XYZ_FROM_RGB, dtype=torch.float64, device=x.device)
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    xyz = xyz / torch.tensor(_WHITE_D65, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0) ** (1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    lab_l = 116.0 * f[:, 1] - 16.0
    lab_a = 500.0 * (f[:, 0] - f[:, 1])
    lab_b = 200.0 * (f[:, 1] - f[:, 2])
    return torch.stack([lab_l, lab_a, lab_b], 1)


def _polar_2pi(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    r = torch.hypot(x, y)
    t = torch.atan2(y, x)
    return r, t + (t < 0) * (2 * math.pi)


def ciede2000(lab1: Tensor, lab2: Tensor) -> Tensor:
    """Per-pixel CIEDE2000 (kL = kC = kH = 1) between Bx3xHxW Lab images -> BxHxW."""
    l1, a1, b1 = lab1.unbind(1)
    l2, a2, b2 = lab2.unbind(1)
    cbar = 0.5 * (torch.hypot(a1, b1) + torch.hypot(a2, b2))
    c7 = cbar**7
    g = 0.5 * (1 - torch.sqrt(c7 / (c7 + 25.0**7)))
    c1, h1 = _polar_2pi(a1 * (1 + g), b1)
    c2, h2 = _polar_2pi(a2 * (1 + g), b2)
    lbar = 0.5 * (l1 + l2)
    tmp = (lbar - 50) ** 2
    sl = 1 + 0.015 * tmp / torch.sqrt(20 + tmp)
    l_term = (l2 - l1) / sl
    cbar = 0.5 * (c1 + c2)
    sc = 1 + 0.045 * cbar
    c_term = (c2 - c1) / sc
    h_diff = h2 - h1
    h_sum = h1 + h2
    cc = c1 * c2
    dh = h_diff - 2 * math.pi * (h_diff > math.pi) + 2 * math.pi * (h_diff < -math.pi)
    dh = torch.where(cc == 0, torch.zeros_like(dh), dh)
    dh_term = 2 * torch.sqrt(cc) * torch.sin(dh / 2)
    hbar = h_sum.clone()
    mask = (cc != 0) & (h_diff.abs() > math.pi)
    hbar = hbar + 2 * math.pi * (mask & (h_sum < 2 * math.pi)) - 2 * math.pi * (mask & (h_sum >= 2 * math.pi))
    hbar = torch.where(cc == 0, hbar * 2, hbar) * 0.5
    t = (1 - 0.17 * torch.cos(hbar - math.radians(30)) + 0.24 * torch.cos(2 * hbar)
         + 0.32 * torch.cos(3 * hbar + math.radians(6)) - 0.20 * torch.cos(4 * hbar - math.radians(63)))
    sh = 1 + 0.015 * cbar * t
    h_term = dh_term / sh
    c7 = cbar**7
    rc = 2 * torch.sqrt(c7 / (c7 + 25.0**7))
    dtheta = math.radians(30) * torch.exp(-(((torch.rad2deg(hbar) - 275) / 25) ** 2))
    r_term = -torch.sin(2 * dtheta) * rc * c_term * h_term
    de2 = l_term**2 + c_term**2 + h_term**2 + r_term
    return torch.sqrt(de2.clamp_min(0))


def delta_e2000(reference: Tensor, fused: Tensor) -> Tensor:
    """Mean CIEDE2000 between two Bx{1,3}xHxW images in [0, 1] (gray replicated to RGB). Lower is better. (B,)"""
    ref = reference.expand(-1, 3, -1, -1) if reference.shape[1] == 1 else reference
    fus = fused.expand(-1, 3, -1, -1) if fused.shape[1] == 1 else fused
    return ciede2000(rgb_to_lab(ref), rgb_to_lab(fus)).flatten(1).mean(1)
