"""Paired transforms: the same random crop/flip applied to every image key, the mask and the boxes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fusion_bench.data.base import Sample
from fusion_bench.types import BOXES, IGNORE_INDEX, LABELS, MASK


def _spatial_keys(sample: Sample) -> list[str]:
    return [k for k, v in sample.items() if isinstance(v, torch.Tensor) and v.ndim >= 2 and k not in (BOXES, LABELS)]


class PairedRandomCrop:
    """Random crop of `size` (h, w), identical for every image key; pads (image 0, mask ignore) if smaller."""

    def __init__(self, size: int | tuple[int, int]):
        self.size = (size, size) if isinstance(size, int) else tuple(size)

    def __call__(self, sample: Sample) -> Sample:
        keys = _spatial_keys(sample)
        h, w = sample[keys[0]].shape[-2:]
        ch, cw = self.size
        out = dict(sample)
        if h < ch or w < cw:
            ph, pw = max(0, ch - h), max(0, cw - w)
            for k in keys:
                fill = IGNORE_INDEX if k == MASK else 0
                v = out[k]
                out[k] = F.pad(v.unsqueeze(0) if v.ndim == 2 else v, (0, pw, 0, ph), value=fill)
                if v.ndim == 2:
                    out[k] = out[k].squeeze(0)
            h, w = h + ph, w + pw
        top = int(torch.randint(0, h - ch + 1, (1,)))
        left = int(torch.randint(0, w - cw + 1, (1,)))
        for k in keys:
            out[k] = out[k][..., top:top + ch, left:left + cw]
        if BOXES in out and len(out[BOXES]):
            boxes = out[BOXES].clone()
            boxes[:, [0, 2]] = (boxes[:, [0, 2]] - left).clamp(0, cw)
            boxes[:, [1, 3]] = (boxes[:, [1, 3]] - top).clamp(0, ch)
            keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
            out[BOXES], out[LABELS] = boxes[keep], out[LABELS][keep]
        return out


class PairedRandomFlip:
    """Horizontal flip with probability p, identical for every image key, the mask and the boxes."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        if float(torch.rand(())) >= self.p:
            return sample
        out = dict(sample)
        keys = _spatial_keys(sample)
        w = sample[keys[0]].shape[-1]
        for k in keys:
            out[k] = out[k].flip(-1)
        if BOXES in out and len(out[BOXES]):
            boxes = out[BOXES].clone()
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
            out[BOXES] = boxes
        return out


class Compose:
    """Apply transforms in order."""

    def __init__(self, *transforms):
        self.transforms = transforms

    def __call__(self, sample: Sample) -> Sample:
        for t in self.transforms:
            sample = t(sample)
        return sample


def collate_samples(batch: list[Sample]) -> Sample:
    """Stack tensors of equal shape; keep boxes/labels/names (and anything ragged) as lists."""
    out: Sample = {}
    for key in batch[0]:
        values = [s[key] for s in batch]
        if key in (BOXES, LABELS) or not isinstance(values[0], torch.Tensor):
            out[key] = values
        elif all(v.shape == values[0].shape for v in values):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out


def batch_dihedral(x1: torch.Tensor, x2: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time batch augmentation: per sample, the same vertical flip (p 0.5) and, for square images, the same
    transpose (p 0.5) on both Bx?xHxW inputs (random draws on the CPU from `generator`, else the global RNG).

    After the datamodules' horizontal flip (`PairedRandomFlip`, p 0.5) every sample is in one of the 8 flip/rotation
    modes of the square, each with probability 1/8: KAIR's `augment_img(mode=randint(0, 7))` (SwinFusion) and the
    hflip/vflip/rot90 of CFI's authors. Non-square inputs get the vertical flip only (4 modes with the hflip)."""
    b = x1.shape[0]
    vflip = (torch.rand(b, generator=generator) < 0.5).to(x1.device).view(b, 1, 1, 1)
    x1, x2 = torch.where(vflip, x1.flip(-2), x1), torch.where(vflip, x2.flip(-2), x2)
    if x1.shape[-1] == x1.shape[-2]:
        transpose = (torch.rand(b, generator=generator) < 0.5).to(x1.device).view(b, 1, 1, 1)
        x1 = torch.where(transpose, x1.transpose(-1, -2), x1)
        x2 = torch.where(transpose, x2.transpose(-1, -2), x2)
    return x1, x2
