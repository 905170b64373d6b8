"""The ``mmif`` dialect: MMIF-CDDFuse/EMMA ``utils/Evaluator.py`` conventions.

Every input goes to gray with OpenCV's float rule (``gray_cv2``: float32 0.299R+0.587G+0.114B, round half to
even) and is used on the 0..255 scale. Source order: A = a (IR), B = b (VIS).
"""

from __future__ import annotations

import math

import torch

from fusion_bench.metrics._common import gray_cv2
from fusion_bench.metrics._extras import add_extras
from fusion_bench.metrics.dialect_base import Dialect, Inputs
from fusion_bench.metrics.functional import basic, correlation, information, qabf, ssim, vif

MMIF = Dialect("mmif", "MMIF-CDDFuse/EMMA utils/Evaluator.py", gray_cv2)


def _en(x: Inputs):
    return basic.entropy(x.gf, 2.0)


def _moments(x: Inputs) -> correlation.IntegerMoments:
    """Exact sums and Gram matrix of the gray levels (shared by CC, SCD, MSE, PSNR)."""
    return x.get("int_moments", lambda: correlation.IntegerMoments(x.ga, x.gb, x.gf))


def _psnr(x: Inputs):
    peak = x.gf.reshape(x.gf.shape[0], -1).amax(1)
    return 10 * torch.log10(peak * peak / correlation.fusion_mse_exact(_moments(x)))


MMIF.add("EN", _en, True, "entropy of F's 256-bin histogram, bits")
MMIF.add("SD", lambda x: basic.standard_deviation(x.gf), True, "population std of F, 0..255")
MMIF.add("SF", lambda x: basic.spatial_frequency(x.gf, "diffs"), True, "sqrt(RF^2+CF^2), means over differences")
MMIF.add("MI", lambda x: information.mutual_information(x.ga, x.gb, x.gf, math.e), True,
         "MI(A,F)+MI(B,F) by exact label counting, nats")
MMIF.add("SCD", lambda x: correlation.scd_exact(_moments(x)), True, "corr(F-B,A)+corr(F-A,B)")
MMIF.add("AG", lambda x: basic.average_gradient(x.gf, "mn"), True, "mean of sqrt((gx^2+gy^2)/2), MATLAB gradient")
MMIF.add("CC", lambda x: correlation.correlation_coefficient_exact(_moments(x)), True, "(r(A,F)+r(B,F))/2")
MMIF.add("MSE", lambda x: correlation.fusion_mse_exact(_moments(x)), False, "(MSE(A,F)+MSE(B,F))/2 on 0..255")
MMIF.add("PSNR", _psnr, True, "10 log10(max(F)^2 / MSE)")
MMIF.add("VIF", lambda x: vif.vif_fusion(x.ga, x.gb, x.gf, nan_to_one=True), True,
         "LIVE vifp_mscale(A,F)+vifp_mscale(B,F), a NaN term -> 1 (CDD 'VIFF')")
MMIF.add("Qabf", lambda x: qabf.qabf(x.ga, x.gb, x.gf, integer_levels=True), True,
         "Xydeas-Petrovic edge preservation (exact Sobel sums)")
MMIF.add("SSIM", lambda x: ssim.ssim_skimage_sum(x.gf, [x.ga, x.gb], 2.0, integer_levels=True), True,
         "SSIM(F,A)+SSIM(F,B): skimage 0.19 defaults, 7x7 uniform, data_range 2 (float dtype range)")

MMIF.default = tuple(n for n in ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM", "AG", "CC", "MSE", "PSNR")
                     if n in MMIF.specs)
add_extras(MMIF)
MMIF.set_costs({"VIF": 7, "Qabf": 2.5, "SSIM": 1.5, "MI": 1.5})
