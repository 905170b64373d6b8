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
