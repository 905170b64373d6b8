"""Metrics offered by every dialect on request (not part of a kit's default list): standard MS-SSIM, MEF-SSIM,
NMI, FMI_pixel / FMI_gradient / FMI_dct / FMI_w, DeltaE (CIEDE2000 vs the colour source) and the reference-based
PSNR_ref / SSIM_ref (need ``gt``)."""

from __future__ import annotations

import torch
from torch import Tensor

from fusion_bench.metrics.dialect_base import Dialect, Inputs
from fusion_bench.metrics.functional import color, correlation, fmi, information, ssim


def _ms_ssim(x: Inputs) -> Tensor:
    return (ssim.ms_ssim(x.gf, x.ga, 255.0) + ssim.ms_ssim(x.gf, x.gb, 255.0)) / 2


def _delta_e(x: Inputs) -> Tensor:
    """Against b (the visible image in IVIF order) if it is colour, else a if colour, else NaN."""
    if x.b.shape[1] == 3:
        ref = x.b
    elif x.a.shape[1] == 3:
        ref = x.a
    else:
        return torch.full((x.f.shape[0],), float("nan"), dtype=torch.float64, device=x.f.device)
    return color.delta_e2000(ref / 255.0, x.f / 255.0)


def _pair_with_gt(x: Inputs) -> tuple[Tensor, Tensor]:
    if x.f.shape[1] == 3 and x.gt is not None and x.gt.shape[1] == 3:
        return x.f, x.gt
    return x.gf, x.ggt


def _psnr_ref(x: Inputs) -> Tensor:
    f, g = _pair_with_gt(x)
    return correlation.psnr(f, g, 255.0)


def _ssim_ref(x: Inputs) -> Tensor:
    f, g = _pair_with_gt(x)
    bsz, c = f.shape[:2]
    v = ssim.ssim_gaussian_valid(f.reshape(bsz * c, 1, *f.shape[2:]), g.reshape(bsz * c, 1, *g.shape[2:]), 255.0)
    return v.reshape(bsz, c).mean(1)


def add_extras(d: Dialect, ms_ssim_name: str = "MS_SSIM") -> None:
    d.add(ms_ssim_name, _ms_ssim, True, "standard MS-SSIM (Wang 2003, pytorch-msssim), mean over sources, L=255",
          default=False)
    d.add("MEF_SSIM", lambda x: ssim.mef_ssim(x.ga, x.gb, x.gf), True,
          "MEF-SSIM (Ma et al. 2015), 3 scales, sources as the exposure sequence", default=False)
    d.add("NMI", lambda x: information.normalized_mutual_information(x.ga, x.gb, x.gf), True,
          "2[MI(A,F)/(H(A)+H(F)) + MI(B,F)/(H(B)+H(F))]", default=False)
    for feature in fmi.FEATURES:
        d.add(fmi.fmi_name(feature), lambda x, ft=feature: fmi.fmi(x.ga, x.gb, x.gf, ft), True,
              f"FMI (Haghighat's Fast-FMI, feature {feature!r}, 3x3 windows) on the dialect's gray images",
              default=False)
    d.add("DeltaE", _delta_e, False, "mean CIEDE2000 between the colour source (b first) and F, sRGB D65",
          default=False)
    d.add("PSNR_ref", _psnr_ref, True, "standard PSNR(F, GT), peak 255 (RGB if both colour, else gray)",
          needs_gt=True)
    d.add("SSIM_ref", _ssim_ref, True, "standard SSIM(F, GT): Gaussian 11/1.5, L=255, per channel mean",
          needs_gt=True)
    d.set_costs({ms_ssim_name: 5, "MEF_SSIM": 12, "NMI": 1.5, "DeltaE": 14,
                 **{fmi.fmi_name(ft): 500 for ft in fmi.FEATURES}})
