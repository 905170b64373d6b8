"""The ``vifb`` dialect: the VIFB MATLAB benchmark (xingchenzhang/VIFB ``metrics/*.m``).

Colour protocol: when F has 3 channels every metric is computed per RGB channel (source channel k, or the
single channel of a gray source) and the results are averaged; SF runs on the channels placed side by side.
When F is gray, colour sources go through MATLAB rgb2gray (rounded where VIFB passes uint8, unrounded where it
passes double). VIFB's argument order is (VI, IR, F); every metric here is symmetric in the two sources.

Qabf, SSIM, Qcb and Qcv run their per-image work (filters, FFTs) once per distinct source channel: a gray source
facing a colour F is processed once, not once per channel (`distinct_channels`), with the same numbers; Qcb and
Qcv share the ``normalize1``-d images.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from fusion_bench.metrics._common import gray_matlab, gray_matlab_double
from fusion_bench.metrics._extras import add_extras
from fusion_bench.metrics.dialect_base import Dialect, Inputs
from fusion_bench.metrics.functional import basic, chen, correlation, information, qabf, ssim

VIFB = Dialect("vifb", "VIFB MATLAB benchmark (xingchenzhang/VIFB)", gray_matlab)

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


def _shared_channel(x: Tensor) -> Tensor:
    """x[:, :1] when all channels of x are the same image, else x (BxCxHxW).

    Detected from a zero channel stride (a gray source expanded by `channels`) or, on the CPU only, by
    comparing the channels (a gray image stored as RGB, as VIFB's infrared JPEGs); CUDA tensors are not
    compared, which would need a host sync.
    """
    if x.shape[1] == 1 or x.stride(1) == 0:
        return x[:, :1]
    if x.device.type == "cpu" and bool((x[:, 1:] == x[:, :1]).all()):
        return x[:, :1]
    return x


def distinct_channels(x: Inputs, rounded: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """`channels` with each source reduced to one channel where all its channels are equal (Bx1xHxW then)."""

    def make() -> tuple[Tensor, Tensor, Tensor]:
        a, b, f = channels(x, rounded)
        return _shared_channel(a), _shared_channel(b), f

    return x.get(f"vifb_distinct_{rounded}", make)


def _per_image(x: Tensor) -> Tensor:
    """BxCxHxW -> (B*C)x1xHxW."""
    return x.reshape(-1, 1, *x.shape[-2:])


def _to_fused_channels(t: Tensor, source: Tensor, c: int) -> Tensor:
    """Per-image results t ((B*C_source)x...) of a source with C_source channels as (B*c)x... (a shared channel
    is repeated for each of the fused image's c channels)."""
    if source.shape[1] == c:
        return t
    rest = t.shape[1:]
    return t.view(source.shape[0], 1, *rest).expand(source.shape[0], c, *rest).reshape(-1, *rest)


def per_channel_maps(feature: Callable[[Tensor], Tensor | tuple[Tensor, ...]], combine: Callable[..., Tensor],
                     rounded: bool = True) -> Callable[[Inputs], Tensor]:
    """VIFB's per-channel average of combine(*feature(A_c), *feature(B_c), *feature(F_c)), where feature maps
    Nx1xHxW images to per-image results: feature runs once, on the distinct source channels and the fused
    channels stacked. Same numbers as `per_channel` of combine(*feature(A), *feature(B), *feature(F))."""

    def wrapped(x: Inputs) -> Tensor:
        a, b, f = distinct_channels(x, rounded)
        c = f.shape[1]
        parts = [_per_image(t) for t in (a, b, f)]
        out = feature(torch.cat(parts))
        outs = out if isinstance(out, tuple) else (out,)
        sizes = [p.shape[0] for p in parts]
        args = [[], [], []]
        for o in outs:
            for i, (piece, source) in enumerate(zip(o.split(sizes), (a, b, f))):
                args[i].append(_to_fused_channels(piece, source, c))
        return combine(*args[0], *args[1], *args[2]).reshape(f.shape[0], c).mean(1)

    return wrapped


def _ssim_sum(x: Inputs) -> Tensor:
    """SSIM(VI, F) + SSIM(IR, F) per channel, averaged over the channels (one filtering call)."""
    a, b, f = distinct_channels(x)
    return ssim.ssim_gaussian_valid_sum([b, a], f, 255.0).mean(1)


def _normalized(x: Inputs) -> tuple[Tensor, Tensor, Tensor]:
    """``normalize1`` of every distinct channel of A, B and F, each (B*C)x1xHxW (shared by Qcb and Qcv)."""
    return x.get("vifb_normalize1", lambda: tuple(chen.normalize1(_per_image(t)) for t in distinct_channels(x)))


def _qcb(x: Inputs) -> Tensor:
    """Qcb per channel, averaged: the contrast map once per distinct source channel."""
    a, b, f = distinct_channels(x)
    c = f.shape[1]
    parts = _normalized(x)
    maps = chen.qcb_contrast_normalized(torch.cat(parts)).split([p.shape[0] for p in parts])
    c1, c2 = _to_fused_channels(maps[0], a, c), _to_fused_channels(maps[1], b, c)
    return chen.qcb_combine(c1, c2, maps[2]).reshape(f.shape[0], c).mean(1)


def _qcv(x: Inputs) -> Tensor:
    """Qcv per channel, averaged: the weights once per distinct source channel."""
    a, b, f = distinct_channels(x)
    c = f.shape[1]
    na, nb, nf = _normalized(x)
    lam = chen.qcv_weights(torch.cat([na, nb])).split([na.shape[0], nb.shape[0]])
    na, lam1 = _to_fused_channels(na, a, c), _to_fused_channels(lam[0], a, c)
    nb, lam2 = _to_fused_channels(nb, b, c), _to_fused_channels(lam[1], b, c)
    return chen.qcv_combine(na, nb, nf, lam1, lam2).reshape(f.shape[0], c).mean(1)


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
VIFB.add("Qabf", per_channel_maps(qabf.qabf_features, qabf.qabf_combine, rounded=False), True,
         "Xydeas-Petrovic edge preservation (direct conv)")
VIFB.add("SD", per_channel(lambda a, b, f: basic.standard_deviation(f)), True, "population std of F")
VIFB.add("SF", lambda x: basic.spatial_frequency_vifb(x.f), True,
         "sqrt(RF^2+CF^2) with sums / MN; colour: channels side by side (seams included)")
VIFB.add("RMSE", per_channel(correlation.rmse_vifb, rounded=False), False,
         "mean over sources of sqrt(sum (X-F)^2)/(MN) = RMSE/sqrt(MN) (non-standard, VIFB issue #15)")
VIFB.add("SSIM", _ssim_sum, True, "SSIM(VI,F)+SSIM(IR,F): 11x11 Gaussian 1.5, 'valid', L=255")
VIFB.add("Qcb", _qcb, True, "Chen-Blum contrast-preservation quality")
VIFB.add("Qcv", _qcv, False, "Chen-Varshney CSF-weighted regional error (unbounded)")
add_extras(VIFB)
VIFB.set_costs({"Qcb": 50, "Qabf": 25, "Qcv": 22, "SSIM": 16, "CE": 3, "MI": 2.5, "EI": 2})
