"""Training-free fusion baselines (every fusion table needs these rows).

All fuse on luminance and restore chroma (fusion_bench.base.colour) except the pass-through sources,
which return one modality unchanged: the "IR-only" / "visible-only" rows of downstream tables.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from fusion_bench.base import FusionMethod
from fusion_bench.base.colour import fuse_on_luminance
from fusion_bench.base.exact import resize_bilinear, separable_filter


class TrainingFreeFusion(FusionMethod):
    """A fusion rule with no parameters; the runner skips fitting."""

    trainable: ClassVar[bool] = False

    def fuse_luminance(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return fuse_on_luminance(x1, x2, self.fuse_luminance)


class MeanFusion(TrainingFreeFusion):
    """Pixel-wise average of the two luminances."""

    def fuse_luminance(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        return 0.5 * (y1 + y2)


class MaxFusion(TrainingFreeFusion):
    """Pixel-wise maximum of the two luminances."""

    def fuse_luminance(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        return torch.maximum(y1, y2)


class SourceA(TrainingFreeFusion):
    """Returns the first modality unchanged (IR-only for infrared-visible datasets)."""

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return x1.clone()


class SourceB(TrainingFreeFusion):
    """Returns the second modality unchanged (visible-only for infrared-visible datasets)."""

    def fuse(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return x2.clone()


_BINOMIAL_5 = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable 5-tap binomial blur with reflect borders (Burt & Adelson's generating kernel), order-fixed."""
    return separable_filter(x, _BINOMIAL_5)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[detail_0, ..., detail_{L-2}, base]; each detail = level - upsample(downsample(level))."""
    pyramid = []
    current = x
    for _ in range(levels - 1):
        if min(current.shape[-2:]) < 4:
            break
        down = _blur(current)[..., ::2, ::2]
        up = _blur(resize_bilinear(down, current.shape[-2:]))
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def reconstruct(pyramid: list[torch.Tensor]) -> torch.Tensor:
    current = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        current = detail + _blur(resize_bilinear(current, detail.shape[-2:]))
    return current


class LaplacianPyramidFusion(TrainingFreeFusion):
    """Classical multi-scale fusion: Laplacian pyramids, max-absolute details, averaged base."""

    def __init__(self, levels: int = 4, **kwargs: Any):
        super().__init__(**kwargs)
        self.levels = levels

    def fuse_luminance(self, y1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        p1, p2 = laplacian_pyramid(y1, self.levels), laplacian_pyramid(y2, self.levels)
        fused = [torch.where(d1.abs() >= d2.abs(), d1, d2) for d1, d2 in zip(p1[:-1], p2[:-1])]
        fused.append(0.5 * (p1[-1] + p2[-1]))
        return reconstruct(fused)
