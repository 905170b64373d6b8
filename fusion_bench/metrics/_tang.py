"""The ``tang`` dialect: Tang's MATLAB kit (Linfeng-Tang/Evaluation-for-Image-Fusion ``analysis_Reference.m``).

Every 3-channel input goes through MATLAB rgb2gray (uint8 rounding). Source order: ir = a, vi = b.
"""

from __future__ import annotations

from fusion_bench.metrics.dialects import TANG
from fusion_bench.metrics.functional import basic

TANG.add("EN", lambda x: basic.entropy(x.gf, 2.0), True, "entropy of F (uint8, 256 bins), bits")
TANG.add("SD", lambda x: basic.standard_deviation(x.gf), True, "population std of F, 0..255")
TANG.add("SF", lambda x: basic.spatial_frequency(x.gf, "diffs"), True, "sqrt(RF^2+CF^2), means over differences")
TANG.add("AG", lambda x: basic.average_gradient(x.gf, "m1n1"), True, "sum sqrt((gx^2+gy^2)/2) / ((M-1)(N-1))")
