"""Input interventions for two-modality fusion: masking and modality dropout on batched tensors.

Three interventions, after "Multi-Modal Image Fusion via Intervention-Stable Feature Learning" (Wang et al.,
CVPR 2026; the defaults follow the authors' `InterventionMasker`):

- **complementary masking** (`complementary_masking`): each modality gets its own random hole mask and the
  overlap is resolved so that the masked regions are spatially disjoint: every pixel stays visible in at
  least one modality, so one modality must compensate for what the other lost.
- **same masking** (`same_masking`): one random hole mask applied to both modalities (partial observability:
  some regions are missing everywhere).
- **modality dropout** (`modality_dropout`): exactly one modality is zeroed per sample.

Conventions. Inputs are Bx{1,3}xHxW tensors (any dtype/device); masks are float Bx1xHxW with 1 = kept and
0 = masked, broadcast over channels, so a 1-channel and a 3-channel modality can share one mask. All
randomness comes from an explicit CPU `torch.Generator` (masks are drawn on the CPU and moved to the
input's device), so results are reproducible and independent of the global RNG.

Holes (`MaskConfig`): per sample, k holes with k uniform in `num_holes` (inclusive); each hole is an
axis-aligned rectangle with probability `p_rect` (sides uniform in `hole_size`, inclusive, top-left corner
uniform such that the rectangle fits) or otherwise a disk (radius uniform in `hole_size // 2`, centre uniform
in [r, H - r] x [r, W - r]; pixels with dy^2 + dx^2 <= r^2). Holes may overlap each other and are clipped
to the image when it is smaller than a hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "MaskConfig",
    "complementary_masking",
    "complementary_masks",
    "modality_dropout",
    "random_hole_mask",
    "resolve_overlap",
    "same_masking",
]


@dataclass(frozen=True)
class MaskConfig:
    """Random hole masks: `hole_size` (min, max) side in pixels, `num_holes` (min, max) per sample,
    `p_rect` probability that a hole is a rectangle (else a disk). Defaults: the authors' code."""

    hole_size: tuple[int, int] = (16, 16)
    num_holes: tuple[int, int] = (1, 6)
    p_rect: float = 0.7

    def __post_init__(self) -> None:
        lo, hi = self.hole_size
        if not 1 <= lo <= hi:
            raise ValueError(f"hole_size must be 1 <= min <= max, got {self.hole_size}")
        lo, hi = self.num_holes
        if not 0 <= lo <= hi:
            raise ValueError(f"num_holes must be 0 <= min <= max, got {self.num_holes}")
        if not 0.0 <= self.p_rect <= 1.0:
            raise ValueError(f"p_rect must be in [0, 1], got {self.p_rect}")


def _randint(low: int | torch.Tensor, high: int | torch.Tensor, shape: tuple[int, ...],
             generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in [low, high] (inclusive; bounds may be tensors of `shape`)."""
    low_t, high_t = torch.as_tensor(low), torch.as_tensor(high)
    u = torch.rand(shape, generator=generator)
    return (low_t + (u * (high_t - low_t + 1)).floor()).long().clamp(max=torch.maximum(low_t, high_t))


def random_hole_mask(batch: int, height: int, width: int, generator: torch.Generator,
                     config: MaskConfig = MaskConfig(), device: torch.device | str | None = None) -> torch.Tensor:
    """Bx1xHxW float mask, 1 = kept, 0 = inside one of the sample's random holes (see module docstring)."""
    k_max = config.num_holes[1]
    shape = (batch, k_max)
    count = _randint(config.num_holes[0], k_max, (batch,), generator)
    active = torch.arange(k_max)[None, :] < count[:, None]
    is_rect = torch.rand(shape, generator=generator) < config.p_rect
    # rectangles
    hh = _randint(config.hole_size[0], config.hole_size[1], shape, generator)
    ww = _randint(config.hole_size[0], config.hole_size[1], shape, generator)
    y0 = _randint(0, (height - hh).clamp(min=0), shape, generator)
    x0 = _randint(0, (width - ww).clamp(min=0), shape, generator)
    # disks
    rr = _randint(config.hole_size[0] // 2, config.hole_size[1] // 2, shape, generator)
    cy = torch.where(height - rr > rr, _randint(rr, (height - rr).clamp(min=0), shape, generator), rr)
    cx = torch.where(width - rr > rr, _randint(rr, (width - rr).clamp(min=0), shape, generator), rr)

    yy = torch.arange(height).view(1, 1, height, 1)
    xx = torch.arange(width).view(1, 1, 1, width)

    def c(t: torch.Tensor) -> torch.Tensor:
        return t[:, :, None, None]

    in_rect = (yy >= c(y0)) & (yy < c(y0 + hh)) & (xx >= c(x0)) & (xx < c(x0 + ww))
    in_disk = (yy - c(cy)) ** 2 + (xx - c(cx)) ** 2 <= c(rr) ** 2
    holes = torch.where(c(is_rect), in_rect, in_disk) & c(active)
    masked = holes.any(dim=1, keepdim=True)
    return (~masked).float().to(device or "cpu")


def resolve_overlap(m1: torch.Tensor, m2: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Make two masks disjoint: a pixel masked in both stays masked in only one of them, chosen by a fair coin
    per pixel (the authors' rule). The union of the masked regions is unchanged."""
    both = (m1 == 0) & (m2 == 0)
    coin = (torch.rand(m1.shape, generator=generator) < 0.5).to(m1.device)
    m1 = torch.where(both & coin, torch.ones_like(m1), m1)
    m2 = torch.where(both & ~coin, torch.ones_like(m2), m2)
    return m1, m2


def complementary_masks(batch: int, height: int, width: int, generator: torch.Generator,
                        config: MaskConfig = MaskConfig(),
                        device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent hole masks made spatially disjoint with `resolve_overlap`."""
    m1 = random_hole_mask(batch, height, width, generator, config)
    m2 = random_hole_mask(batch, height, width, generator, config)
    m1, m2 = resolve_overlap(m1, m2, generator)
    return m1.to(device or "cpu"), m2.to(device or "cpu")


def complementary_masking(x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator,
                          config: MaskConfig = MaskConfig()
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x1 * m1, x2 * m2, m1, m2) with disjoint masked regions (no pixel is hidden in both modalities)."""
    b, _, h, w = x1.shape
    m1, m2 = complementary_masks(b, h, w, generator, config, x1.device)
    return x1 * m1.to(x1.dtype), x2 * m2.to(x2.dtype), m1, m2


def same_masking(x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator,
                 config: MaskConfig = MaskConfig()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x1 * m, x2 * m, m): one random hole mask shared by both modalities."""
    b, _, h, w = x1.shape
    m = random_hole_mask(b, h, w, generator, config, x1.device)
    return x1 * m.to(x1.dtype), x2 * m.to(x2.dtype), m


def modality_dropout(x1: torch.Tensor, x2: torch.Tensor, generator: torch.Generator | None = None,
                     drop_first: torch.Tensor | bool | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero exactly one modality per sample; returns (x1', x2', drop_first) with drop_first a bool B-vector
    (True: x1 was zeroed, False: x2 was zeroed).

    `drop_first` picks the modality: None draws a fair coin per sample from `generator`; a bool applies to the
    whole batch (the authors' training runs one pass with each modality dropped).
    """
    b = x1.shape[0]
    if drop_first is None:
        if generator is None:
            raise ValueError("modality_dropout: pass a generator or an explicit drop_first")
        drop_first = torch.rand(b, generator=generator) < 0.5
    elif isinstance(drop_first, bool):
        drop_first = torch.full((b,), drop_first)
    drop_first = torch.as_tensor(drop_first, dtype=torch.bool).cpu()
    if drop_first.shape != (b,):
        raise ValueError(f"drop_first must have shape ({b},), got {tuple(drop_first.shape)}")
    d = drop_first.to(x1.device).view(b, 1, 1, 1)
    return torch.where(d, torch.zeros_like(x1), x1), torch.where(d, x2, torch.zeros_like(x2)), drop_first
