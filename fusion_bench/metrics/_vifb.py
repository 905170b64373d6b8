"""The ``vifb`` dialect: the VIFB MATLAB benchmark (xingchenzhang/VIFB ``metrics/*.m``).

Colour protocol: when F has 3 channels every metric is computed per RGB channel (source channel k, or the
single channel of a gray source) and averaged; when F is gray, colour sources go through MATLAB rgb2gray.
"""

from __future__ import annotations

from fusion_bench.metrics.dialects import VIFB, Inputs
from fusion_bench.metrics.functional import basic


def channels(x: Inputs):
    """(A, B, F) as Bx C x H x W float64 levels with matching channel counts (C = 3 if F is colour, else 1)."""

    def make():
        if x.f.shape[1] == 3:
            return x.a.expand(-1, 3, -1, -1), x.b.expand(-1, 3, -1, -1), x.f
        return x.ga, x.gb, x.f

    return x.get("vifb_channels", make)


def per_channel(fn):
    """Wrap fn(A, B, F) on Bx1xHxW arrays into the VIFB per-channel average."""

    def wrapped(x: Inputs):
        a, b, f = channels(x)
        bsz, c = f.shape[:2]
        out = fn(a.reshape(bsz * c, 1, *a.shape[2:]), b.reshape(bsz * c, 1, *b.shape[2:]),
                 f.reshape(bsz * c, 1, *f.shape[2:]))
        return out.reshape(bsz, c).mean(1)

    return wrapped


VIFB.add("EN", per_channel(lambda a, b, f: basic.entropy(torch_floor(f), 2.0)), True, "entropy of floor(F), bits")
VIFB.add("SD", per_channel(lambda a, b, f: basic.standard_deviation(f)), True, "population std of F")
VIFB.add("SF", lambda x: basic.spatial_frequency_vifb(channels(x)[2]), True,
         "sqrt(RF^2+CF^2) with sums / MN; colour: channels side by side (seams included)")
VIFB.add("AG", per_channel(lambda a, b, f: basic.average_gradient(f, "m1n1")), True,
         "sum sqrt((gx^2+gy^2)/2) / ((M-1)(N-1))")


def torch_floor(t):
    return t.floor()
