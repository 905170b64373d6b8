"""Input handling shared by all metric dialects: [0, 1] tensors -> 8-bit levels, colour -> gray rules."""

from __future__ import annotations

import torch
from torch import Tensor

from fusion_bench.errors import MetricsInputError

# MATLAB rgb2gray coefficients (inverse of the NTSC YIQ transform, as MATLAB computes them).
MATLAB_GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def check_inputs(a: Tensor, b: Tensor, fused: Tensor, gt: Tensor | None = None) -> None:
    """Validate Bx{1,3}xHxW tensors of the same batch size and spatial size."""
    named = {"a": a, "b": b, "fused": fused}
    if gt is not None:
        named["gt"] = gt
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise MetricsInputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4 or t.shape[1] not in (1, 3):
            raise MetricsInputError(f"{name} must have shape Bx1xHxW or Bx3xHxW, got {tuple(t.shape)}")
    shapes = {name: (t.shape[0], *t.shape[2:]) for name, t in named.items()}
    if len(set(shapes.values())) != 1:
        raise MetricsInputError(f"batch size and HxW must agree: {shapes}")


def to_levels(x: Tensor) -> Tensor:
    """[0, 1] float -> float64 8-bit levels 0..255 (exact for k/255 inputs; others are rounded).

    ``round(clamp(255 x, 0, 255))`` in float64 (= ``round(255 clamp(x, 0, 1))``: x -> 255 x is monotonic and
    maps 1 to 255 exactly), computed in place on one new tensor.
    """
    return torch.mul(x.to(torch.float64), 255.0).clamp_(0, 255).round_()


def gray_cv2(levels: Tensor) -> Tensor:
    """CDD/OpenCV rule: float32 B*0.114 + G*0.587 + R*0.299 (cvtColor BGR2GRAY on float), round half to even.

    levels: Bx{1,3}xHxW float 0..255. Returns Bx1xHxW float64 levels.
    """
    if levels.shape[1] == 1:
        return levels.to(torch.float64)
    x = levels.to(torch.float32)
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = torch.mul(b, 0.114).add_(torch.mul(g, 0.587))  # each product rounded to float32, then the sums
    y.add_(torch.mul(r, 0.299))
    return y.round_().to(torch.float64)


def gray_matlab(levels: Tensor) -> Tensor:
    """MATLAB rgb2gray on uint8: double weighted sum, rounded half away from zero. Bx1xHxW float64."""
    if levels.shape[1] == 1:
        return levels.to(torch.float64)
    x = levels.to(torch.float64)
    wr, wg, wb = MATLAB_GRAY
    y = x[:, 0:1] * wr + x[:, 1:2] * wg + x[:, 2:3] * wb
    return torch.floor(y + 0.5).clamp(0, 255)


def gray_matlab_double(levels: Tensor) -> Tensor:
    """MATLAB rgb2gray on a double array: the weighted sum without rounding. Bx1xHxW float64."""
    if levels.shape[1] == 1:
        return levels.to(torch.float64)
    x = levels.to(torch.float64)
    wr, wg, wb = MATLAB_GRAY
    return x[:, 0:1] * wr + x[:, 1:2] * wg + x[:, 2:3] * wb


def flat(x: Tensor) -> Tensor:
    """BxCxHxW -> Bx(CHW)."""
    return x.reshape(x.shape[0], -1)
