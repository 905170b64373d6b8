"""The ``vifb`` dialect: the VIFB MATLAB benchmark (xingchenzhang/VIFB ``metrics/*.m``).

Colour protocol: when F has 3 channels every metric is computed per RGB channel (source channel k, or the
single channel of a gray source) and the results are averaged; SF runs on the channels placed side by side.
When F is gray, colour sources go through MATLAB rgb2gray (rounded where VIFB passes uint8, unrounded where it
passes double). VIFB's argument order is (VI, IR, F); every metric here is symmetric in the two sources.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor

from fusion_bench.metrics._common import gray_matlab, gray_matlab_double
from fusion_bench.metrics._extras import add_extras
from fusion_bench.metrics.dialects import VIFB, Inputs
from fusion_bench.metrics.functional import basic, chen, correlation, information, qabf, ssim

Fn3 = Callable[[Tensor, Tensor, Tensor], Tensor]


def channels(x: Inputs, rounded: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """(A, B, F) as BxCxHxW float64 levels with matching channel counts (C = 3 if F is colour, else 1)."""

    def make() -> tuple[Tensor, Tensor, Tensor]:
        if x.f.shape[1] == 3:
            return x.a.expand(-1, 3, -1, -1), x.b.expand(-1, 3, -1, -1), x.f
        g = gray_matlab if rounded else gray_matlab_double
        return g(x.a), g(x.b), x.f

    return x.get(f"vifb_channels_{rounded}", make)


def per_channel(fn: Fn3, rounded: bool = True) -> Callable[[Inputs], Tensor]:
    """Wrap fn(A, B, F) on Bx1xHxW arrays into VIFB's per-channel average."""

    def wrapped(x: Inputs) -> Tensor:
        a, b, f = channels(x, rounded)
        bsz, c = f.shape[:2]
        shp = (bsz * c, 1, *f.shape[2:])
        return fn(a.reshape(shp), b.reshape(shp), f.reshape(shp)).reshape(bsz, c).mean(1)

    return wrapped


def _ssim_sum(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    return ssim.ssim_gaussian_valid(b, f, 255.0) + ssim.ssim_gaussian_valid(a, f, 255.0)


VIFB.add("CE", per_channel(information.cross_entropy_vifb), False,
         "mean over sources of KL(p_X || p_F) in bits over bins where both are non-zero (VIFB 'Cross_entropy')")
VIFB.add("EN", per_channel(lambda a, b, f: basic.entropy(f.floor(), 2.0)), True, "entropy of floor(F), bits")
VIFB.add("MI", per_channel(lambda a, b, f: information.mutual_information(a, b, f, math.e)), True,
         "MI(VI,F)+MI(IR,F), nats (min-max relabelling does not change MI on 8-bit data)")
VIFB.add("PSNR", per_channel(correlation.psnr_vifb, rounded=False), True,
         "20 log10(255 / sqrt(VIFB RMSE)) (non-standard)")
VIFB.add("AG", per_channel(lambda a, b, f: basic.average_gradient(f, "m1n1")), True,
         "sum sqrt((gx^2+gy^2)/2) / ((M-1)(N-1))")
VIFB.add("EI", lambda x: basic.edge_intensity(x.f), True, "mean Sobel magnitude, replicate borders, all channels")
VIFB.add("Qabf", per_channel(qabf.qabf, rounded=False), True, "Xydeas-Petrovic edge preservation (direct conv)")
VIFB.add("SD", per_channel(lambda a, b, f: basic.standard_deviation(f)), True, "population std of F")
VIFB.add("SF", lambda x: basic.spatial_frequency_vifb(x.f), True,
         "sqrt(RF^2+CF^2) with sums / MN; colour: channels side by side (seams included)")
VIFB.add("RMSE", per_channel(correlation.rmse_vifb, rounded=False), False,
         "mean over sources of sqrt(sum (X-F)^2)/(MN) = RMSE/sqrt(MN) (non-standard, VIFB issue #15)")
VIFB.add("SSIM", per_channel(_ssim_sum), True, "SSIM(VI,F)+SSIM(IR,F): 11x11 Gaussian 1.5, 'valid', L=255")
VIFB.add("Qcb", per_channel(chen.qcb), True, "Chen-Blum contrast-preservation quality")
VIFB.add("Qcv", per_channel(chen.qcv), False, "Chen-Varshney CSF-weighted regional error (unbounded)")
add_extras(VIFB)
VIFB.set_costs({"Qcb": 50, "Qabf": 25, "Qcv": 22, "SSIM": 16, "CE": 3, "MI": 2.5, "EI": 2})
