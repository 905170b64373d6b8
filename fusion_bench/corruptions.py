"""Test-time corruptions of the fusion inputs for the robustness protocol (fusion_bench.benchmark.robust).

Each corruption has severities 1..5 (ImageNet-C's scheme; Hendrycks & Dietterich, 2019) and severity 0, which
returns its input unchanged (the very same values: the clean row of the protocol). They hit modality `a`, `b` or
`both` of a pair (`corrupt_pair`); the protocol file names which.

| name                  | what (severity 1 .. 5)                                                             |
|-----------------------|------------------------------------------------------------------------------------|
| gaussian_noise        | additive noise, sigma 0.02, 0.04, 0.06, 0.08, 0.10 (images in [0, 1])               |
| defocus_blur          | mean over a disk of radius 1, 2, 3, 4, 5 px (edge pixels replicated)                |
| low_light             | exposure 0.6 .. 0.12 times x ** gamma (1.2 .. 2.0), plus noise sigma 0.01 .. 0.03   |
| haze                  | blend towards an airlight of 0.8: x (1 - t) + 0.8 t, t = 0.2, 0.35, 0.5, 0.65, 0.8   |
| jpeg                  | JPEG at quality 50, 30, 20, 12, 7 (Pillow's libjpeg, 4:2:0 chroma for RGB)           |
| misregistration       | shift by (0.5 s, 0.25 s) px (x, y) and rotation by 2 atan(0.004 s) (about 0.46 s deg)  |
| complementary_masking | 2 s square holes (side 1/8 of the short side) per modality, made disjoint (`both`)  |
| same_masking          | 2 s holes: one mask for both modalities (`both`), or holes in one modality only     |
| modality_dropout      | the modality is zeroed in a fraction s/5 of the images (`a` or `b`)                 |

The last three are the interventions of fusion_bench.interventions, applied at test time.

Determinism. The result is identical on every machine: images are taken to 8-bit levels (q = rint(255 x), exact
for images read from 8-bit files), every step uses only exact element-wise IEEE arithmetic in float64 (+, -, *, /,
rint, floor, comparisons) in a fixed order, and the output is rounded back to 8-bit levels (what an 8-bit camera
would record), then divided by 255 in the input's dtype. No transcendental function is evaluated in floating
point: gamma uses a 256-entry table computed with Python's `decimal` (software arithmetic, 40 digits), the rotation
uses the rational parametrisation cos = (1 - t^2) / (1 + t^2), sin = 2 t / (1 + t^2), and the noise is the
Irwin-Hall approximation of a standard normal (the sum of 12 uniforms minus 6, added in a fixed order) drawn from
numpy's PCG64 (53-bit uniforms from integer outputs). Random draws depend on (seed, sample name, corruption,
which modality) but not on the severity, so the severities of one image share one noise field and one set of holes
(the strength grows with the severity; the holes of severity s are a subset of those of s + 1). JPEG is the one
exception to "own arithmetic": Pillow's libjpeg(-turbo) encoder and decoder at a fixed quality, with the integer
(islow) DCT, whose SIMD and C paths agree bit for bit; the libjpeg version is part of the row's `packages`.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Context, Decimal
from functools import cache

import numpy as np
import torch

from fusion_bench.interventions import MaskConfig, random_hole_mask, resolve_overlap

SEVERITIES = (1, 2, 3, 4, 5)
MODALITY_CHOICES = ("a", "b", "both")

_NOISE_SIGMA = (0.02, 0.04, 0.06, 0.08, 0.10)
_BLUR_RADIUS = (1, 2, 3, 4, 5)
_LOW_EXPOSURE = ("0.6", "0.45", "0.3", "0.2", "0.12")
_LOW_GAMMA = ("1.2", "1.4", "1.6", "1.8", "2.0")
_LOW_SIGMA = (0.01, 0.015, 0.02, 0.025, 0.03)
_HAZE_T = (0.2, 0.35, 0.5, 0.65, 0.8)
_HAZE_AIRLIGHT = 0.8
_JPEG_QUALITY = (50, 30, 20, 12, 7)
_SHIFT_PX = (0.5, 0.25)  # (x, y) per severity step
_ROT_T = 0.004  # tan(theta / 2) per severity step
_HOLES_PER_STEP = 2
_MAX_HOLES = _HOLES_PER_STEP * len(SEVERITIES)


@dataclass(frozen=True)
class CorruptionInfo:
    """What a corruption is: its description and the modality options it accepts."""

    description: str
    modalities: tuple[str, ...] = MODALITY_CHOICES


CORRUPTIONS: dict[str, CorruptionInfo] = {
    "gaussian_noise": CorruptionInfo("additive Gaussian noise (Irwin-Hall), sigma 0.02 .. 0.10"),
    "defocus_blur": CorruptionInfo("disk blur, radius 1 .. 5 px"),
    "low_light": CorruptionInfo("exposure 0.6 .. 0.12, gamma 1.2 .. 2.0, noise 0.01 .. 0.03"),
    "haze": CorruptionInfo("contrast loss towards an airlight of 0.8, t 0.2 .. 0.8"),
    "jpeg": CorruptionInfo("JPEG quality 50 .. 7 (Pillow libjpeg)"),
    "misregistration": CorruptionInfo("shift (0.5, 0.25) px and rotation ~0.46 deg per severity step"),
    "complementary_masking": CorruptionInfo("2 s holes per modality, disjoint (test-time intervention)", ("both",)),
    "same_masking": CorruptionInfo("2 s holes, one mask (test-time intervention)"),
    "modality_dropout": CorruptionInfo("the modality zeroed in s/5 of the images (test-time intervention)",
                                       ("a", "b")),
}


def check_corruption(name: str, modality: str, severity: int | None = None) -> None:
    """ValueError naming what is wrong with (name, modality, severity)."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    allowed = CORRUPTIONS[name].modalities
    if modality not in allowed:
        raise ValueError(f"corruption {name!r} takes modality {' or '.join(allowed)}, got {modality!r}")
    if severity is not None and severity not in (0, *SEVERITIES):
        raise ValueError(f"severity must be 0..{SEVERITIES[-1]}, got {severity!r}")


def sample_seed(seed: int, name: str, corruption: str, which: int) -> np.random.SeedSequence:
    """The random stream of one image of one modality (`which` 0 = a, 1 = b): independent of the severity."""
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()), zlib.crc32(corruption.encode()),
                                   which])


def _levels(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64) * 255.0)


def _to_unit(levels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(levels), 0.0, 255.0) / 255.0


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Irwin-Hall(12) - 6: an approximately standard normal field from exact additions in a fixed order."""
    u = rng.random((12, *shape))
    z = u[0].copy()
    for k in range(1, 12):
        z = z + u[k]
    return z - 6.0


@cache
def _gamma_table(gamma: str) -> np.ndarray:
    """255 * (q / 255) ** gamma for q = 0..255, computed in 40-digit decimal arithmetic, as float64."""
    ctx = Context(prec=40)
    g = Decimal(gamma)
    out = [0.0 if q == 0 else float(ctx.multiply(Decimal(255), ctx.power(ctx.divide(Decimal(q), Decimal(255)), g)))
           for q in range(256)]
    return np.array(out, dtype=np.float64)


def _disk_blur(q: np.ndarray, radius: int) -> np.ndarray:
    """Mean of q over the disk dy^2 + dx^2 <= r^2 (integer sums: exact), edges replicated."""
    c, h, w = q.shape
    padded = np.pad(q, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    total = np.zeros_like(q)
    count = 0
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                total = total + padded[:, radius + dy:radius + dy + h, radius + dx:radius + dx + w]
                count += 1
    return total / count


def _warp(q: np.ndarray, severity: int) -> np.ndarray:
    """Bilinear resampling of q rotated by 2 atan(t) about the centre and shifted, t = 0.004 s (edges replicated)."""
    c, h, w = q.shape
    t = _ROT_T * severity
    cos, sin = (1.0 - t * t) / (1.0 + t * t), (2.0 * t) / (1.0 + t * t)
    dx, dy = _SHIFT_PX[0] * severity, _SHIFT_PX[1] * severity
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    vy, vx = yy - cy - dy, xx - cx - dx  # output = input moved by (dx, dy) and rotated: invert both
    sy = cos * vy - sin * vx + cy
    sx = sin * vy + cos * vx + cx
    y0, x0 = np.floor(sy), np.floor(sx)
    wy, wx = sy - y0, sx - x0
    y0i = np.clip(y0, 0, h - 1).astype(np.int64)
    x0i = np.clip(x0, 0, w - 1).astype(np.int64)
    y1i = np.clip(y0 + 1, 0, h - 1).astype(np.int64)
    x1i = np.clip(x0 + 1, 0, w - 1).astype(np.int64)
    top = (1.0 - wx) * q[:, y0i, x0i] + wx * q[:, y0i, x1i]
    bottom = (1.0 - wx) * q[:, y1i, x0i] + wx * q[:, y1i, x1i]
    return (1.0 - wy) * top + wy * bottom


def _jpeg(q: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    arr = np.clip(q, 0, 255).astype(np.uint8)
    image = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    buffer = io.BytesIO()
    options = {} if image.mode == "L" else {"subsampling": 2}
    image.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False, **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        out = np.asarray(decoded.convert(image.mode), dtype=np.float64)
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def _hole_stack(rng: np.random.Generator, h: int, w: int) -> torch.Tensor:
    """_MAX_HOLES single-hole masks (_MAX_HOLESx1xHxW, 1 = kept): severity s uses the product of the first 2 s."""
    side = max(1, round(min(h, w) / 8))
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    return random_hole_mask(_MAX_HOLES, h, w, generator, MaskConfig(hole_size=(side, side), num_holes=(1, 1),
                                                                     p_rect=1.0))


def _holes(stack: torch.Tensor, severity: int) -> torch.Tensor:
    mask = stack[:_HOLES_PER_STEP * severity].amin(dim=0)
    return mask  # 1xHxW


def corrupt_image(x: np.ndarray, corruption: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """One CxHxW image in [0, 1] corrupted (pixel-wise corruptions: noise, blur, low light, haze, JPEG,
    misregistration); float64 on the 8-bit grid. Severity 0 returns `x` itself."""
    if severity == 0:
        return x
    i = severity - 1
    q = _levels(x)
    if corruption == "gaussian_noise":
        out = q + (_NOISE_SIGMA[i] * 255.0) * _normal(rng, q.shape)
    elif corruption == "defocus_blur":
        out = _disk_blur(q, _BLUR_RADIUS[i])
    elif corruption == "low_light":
        table = _gamma_table(_LOW_GAMMA[i])
        dark = table[np.clip(q, 0, 255).astype(np.int64)] * float(Decimal(_LOW_EXPOSURE[i]))
        out = dark + (_LOW_SIGMA[i] * 255.0) * _normal(rng, q.shape)
    elif corruption == "haze":
        t = _HAZE_T[i]
        out = q * (1.0 - t) + (_HAZE_AIRLIGHT * 255.0) * t
    elif corruption == "jpeg":
        out = _jpeg(q, _JPEG_QUALITY[i])
    elif corruption == "misregistration":
        out = _warp(q, severity)
    else:
        raise ValueError(f"corrupt_image: {corruption!r} is not a per-image corruption")
    return _to_unit(out)


def corrupt_pair(x1: torch.Tensor, x2: torch.Tensor, corruption: str, severity: int, modality: str, seed: int,
                 name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair (1xCxHxW each, as `model.fuse` takes it) with `corruption` at `severity` on `modality`; deterministic
    in (seed, name) and identical on every machine (module docstring). Severity 0 returns the inputs themselves."""
    check_corruption(corruption, modality, severity)
    if severity == 0:
        return x1, x2
    hit = (modality in ("a", "both"), modality in ("b", "both"))
    xs = [x1, x2]
    if corruption in ("complementary_masking", "same_masking"):
        h, w = x1.shape[-2:]
        stack_a = _hole_stack(np.random.default_rng(sample_seed(seed, name, corruption, 0)), h, w)
        mask_a = _holes(stack_a, severity)
        if corruption == "complementary_masking":
            stack_b = _hole_stack(np.random.default_rng(sample_seed(seed, name, corruption, 1)), h, w)
            coin = torch.Generator().manual_seed(int(np.random.default_rng(
                sample_seed(seed, name, corruption, 2)).integers(0, 2**62)))
            mask_a, mask_b = resolve_overlap(mask_a[None], _holes(stack_b, severity)[None], coin)
            masks = [mask_a[0], mask_b[0]]
        else:
            masks = [mask_a, mask_a]
        return tuple(x * m.to(x.dtype).to(x.device) if hit[k] else x  # type: ignore[return-value]
                     for k, (x, m) in enumerate(zip(xs, masks)))
    if corruption == "modality_dropout":
        u = np.random.default_rng(sample_seed(seed, name, corruption, 0)).random()
        if u * len(SEVERITIES) < severity:  # nested: an image dropped at severity s is dropped at s + 1
            k = 0 if hit[0] else 1
            xs[k] = torch.zeros_like(xs[k])
        return xs[0], xs[1]
    out = []
    for k, x in enumerate(xs):
        if not hit[k]:
            out.append(x)
            continue
        rng = np.random.default_rng(sample_seed(seed, name, corruption, k))
        arr = x.detach().cpu().numpy().astype(np.float64)
        done = np.stack([corrupt_image(a, corruption, severity, rng) for a in arr])
        out.append(torch.from_numpy(done).to(dtype=x.dtype, device=x.device))
    return out[0], out[1]


def pair_corrupter(corruption: str, severity: int, modality: str, seed: int
                   ) -> Callable[[str, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """`corrupt_pair` bound to one (corruption, severity, modality, seed): f(name, x1, x2) -> (x1', x2')."""
    check_corruption(corruption, modality, severity)

    def corrupt(name: str, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return corrupt_pair(x1, x2, corruption, severity, modality, seed, name)

    return corrupt


__all__ = ["CORRUPTIONS", "MODALITY_CHOICES", "SEVERITIES", "CorruptionInfo", "check_corruption", "corrupt_image",
           "corrupt_pair", "pair_corrupter", "sample_seed"]
