"""The ``tang`` dialect: Tang's MATLAB kit (Linfeng-Tang/Evaluation-for-Image-Fusion ``analysis_Reference.m``).

Every 3-channel input goes through MATLAB rgb2gray (uint8 rounding). Source order: ir = a, vi = b.
"""

from __future__ import annotations

from torch import Tensor

from fusion_bench.metrics._common import gray_matlab
from fusion_bench.metrics._extras import add_extras
from fusion_bench.metrics.dialect_base import Dialect, Inputs
from fusion_bench.metrics.functional import basic, correlation, information, qabf, ssim, vif

TANG = Dialect("tang", "Tang's MATLAB kit (Linfeng-Tang/Evaluation-for-Image-Fusion)", gray_matlab)


def _moments(x: Inputs) -> correlation.IntegerMoments:
    """Exact sums and Gram matrix of the (rgb2gray-rounded) levels, shared by CC and SCD."""
    return x.get("int_moments", lambda: correlation.IntegerMoments(x.ga, x.gb, x.gf))


def _mse01(x: Inputs) -> Tensor:
    return correlation.fusion_mse(x.ga / 255.0, x.gb / 255.0, x.gf / 255.0)


def _ssim_mean(x: Inputs) -> Tensor:
    return 0.5 * ssim.ssim_matlab(x.gf, x.ga, 1.0) + 0.5 * ssim.ssim_matlab(x.gf, x.gb, 1.0)


TANG.add("EN", lambda x: basic.entropy(x.gf, 2.0), True, "entropy of F (uint8, 256 bins), bits")
TANG.add("SF", lambda x: basic.spatial_frequency(x.gf, "diffs"), True, "sqrt(RF^2+CF^2), means over differences")
TANG.add("SD", lambda x: basic.standard_deviation(x.gf), True, "population std of F, 0..255")
TANG.add("PSNR", lambda x: correlation.psnr_tang(x.ga, x.gb, x.gf), True,
         "20 log10(255 / sqrt(MSE on [0,1])) = standard PSNR + 48.13 dB")
TANG.add("MSE", _mse01, False, "(MSE(A,F)+MSE(B,F))/2 on [0, 1]")
TANG.add("MI", lambda x: information.mutual_information_tang(x.ga, x.gb, x.gf), True,
         "H(X)+H(F)-H(X,F) summed over sources, bits; joint histogram merges levels 254/255 (uint8+1 saturation)")
TANG.add("VIF", lambda x: vif.vif_fusion(x.ga, x.gb, x.gf, nan_to_one=False), True,
         "LIVE vifp_mscale(ir,F)+vifp_mscale(vi,F) (NaN for a flat source)")
TANG.add("AG", lambda x: basic.average_gradient(x.gf, "m1n1"), True, "sum sqrt((gx^2+gy^2)/2) / ((M-1)(N-1))")
TANG.add("CC", lambda x: correlation.correlation_coefficient_exact(_moments(x)), True, "(r(A,F)+r(B,F))/2")
TANG.add("SCD", lambda x: correlation.scd_exact(_moments(x)), True, "corr(F-B,A)+corr(F-A,B)")
TANG.add("Qabf", lambda x: qabf.qabf(x.ga, x.gb, x.gf, integer_levels=True), True,
         "Xydeas-Petrovic edge preservation (exact Sobel sums)")
TANG.add("Nabf", lambda x: qabf.nabf(x.ga, x.gb, x.gf), False,
         "artifact measure as TANG's driver calls it: analysis_nabf(ir, vi, F), i.e. the IR image in the fused slot")
TANG.add("SSIM", _ssim_mean, True, "0.5 SSIM(F,ir) + 0.5 SSIM(F,vi): MATLAB ssim, Gaussian 1.5, replicate, "
         "DynamicRange 1 on 0..255 data")
TANG.add("MS_SSIM", lambda x: ssim.mef_ssim(x.ga, x.gb, x.gf), True,
         "TANG's 'MS_SSIM' = multi-scale MEF-SSIM (Ma et al. 2015) of [ir, vi] vs F")
TANG.add("Nabf_fixed_order", lambda x: qabf.nabf(x.gf, x.ga, x.gb), False,
         "Nabf with the fused image in the fused slot (the intended order)", default=False)
add_extras(TANG, ms_ssim_name="MS_SSIM_std")
TANG.set_costs({"MS_SSIM": 10, "VIF": 7.5, "Nabf": 7.5, "Nabf_fixed_order": 7.5, "SSIM": 4, "Qabf": 2.5,
                "MI": 1.5})
