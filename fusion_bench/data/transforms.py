"""Paired transforms: the same random crop/flip (and optional rescaling) applied to every image key, the mask and
the boxes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fusion_bench.data.base import Sample
from fusion_bench.types import BOXES, IGNORE_INDEX, LABELS, MASK

CROP_PADS = ("corner", "center")
CROP_OFFSETS = ("uniform", "torchseg")


def _spatial_keys(sample: Sample) -> list[str]:
    return [k for k, v in sample.items() if isinstance(v, torch.Tensor) and v.ndim >= 2 and k not in (BOXES, LABELS)]


def _pad(v: torch.Tensor, pad: tuple[int, int, int, int], fill: float) -> torch.Tensor:
    """F.pad (left, right, top, bottom) of an HxW or CxHxW tensor with a constant."""
    if v.ndim == 2:
        return F.pad(v.unsqueeze(0), pad, value=fill).squeeze(0)
    return F.pad(v, pad, value=fill)


class PairedRandomCrop:
    """Random crop of `size` (h, w), identical for every image key; pads (image 0, mask ignore) if smaller.

    pad="corner" (default): pad the bottom/right up to `size`, then crop at a uniform random offset.
    pad="center": crop first, then pad the crop symmetrically (extra pixel at the bottom/right), as TorchSeg's
    ``random_crop_pad_to_shape`` (the RGB-X segmentation codebases: CMX, MRFS, AMDANet).
    offset="torchseg" (with pad="center") draws the offset as TorchSeg's ``generate_random_crop_pos``:
    ``random.randint(0, h - ch + 1)`` with its inclusive upper bound, so the window can overhang the image by one
    row/column, which is then padded.
    valid_key: also write a float HxW map under this key, 1 on the source image and 0 on the padding (e.g. for a
    loss restricted to real pixels).
    """

    def __init__(self, size: int | tuple[int, int], pad: str = "corner", offset: str = "uniform",
                 valid_key: str | None = None):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if pad not in CROP_PADS:
            raise ValueError(f"crop pad must be one of {CROP_PADS}, got {pad!r}")
        if offset not in CROP_OFFSETS:
            raise ValueError(f"crop offset must be one of {CROP_OFFSETS}, got {offset!r}")
        if offset == "torchseg" and pad != "center":
            raise ValueError("crop offset 'torchseg' needs pad 'center' (the overhanging window is padded after "
                             "cropping)")
        self.pad, self.offset, self.valid_key = pad, offset, valid_key

    def _offset(self, n: int, c: int) -> int:
        if n <= c:
            return 0
        return int(torch.randint(0, n - c + (2 if self.offset == "torchseg" else 1), (1,)))

    def __call__(self, sample: Sample) -> Sample:
        keys = _spatial_keys(sample)
        h, w = sample[keys[0]].shape[-2:]
        ch, cw = self.size
        out = dict(sample)
        if self.valid_key is not None:
            out[self.valid_key] = torch.ones(h, w)
            keys.append(self.valid_key)
        if self.pad == "center":
            top, left = self._offset(h, ch), self._offset(w, cw)
            for k in keys:
                out[k] = out[k][..., top:top + ch, left:left + cw]
            ph, pw = ch - out[keys[0]].shape[-2], cw - out[keys[0]].shape[-1]
            margin = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # left, right, top, bottom
            if ph or pw:
                for k in keys:
                    out[k] = _pad(out[k], margin, IGNORE_INDEX if k == MASK else 0)
            shift_x, shift_y = margin[0] - left, margin[2] - top
        else:
            if h < ch or w < cw:
                ph, pw = max(0, ch - h), max(0, cw - w)
                for k in keys:
                    out[k] = _pad(out[k], (0, pw, 0, ph), IGNORE_INDEX if k == MASK else 0)
                h, w = h + ph, w + pw
            top = int(torch.randint(0, h - ch + 1, (1,)))
            left = int(torch.randint(0, w - cw + 1, (1,)))
            for k in keys:
                out[k] = out[k][..., top:top + ch, left:left + cw]
            shift_x, shift_y = -left, -top
        if BOXES in out and len(out[BOXES]):
            boxes = out[BOXES].clone()
            boxes[:, [0, 2]] = (boxes[:, [0, 2]] + shift_x).clamp(max(0, shift_x), min(cw, shift_x + w))
            boxes[:, [1, 3]] = (boxes[:, [1, 3]] + shift_y).clamp(max(0, shift_y), min(ch, shift_y + h))
            keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)
            out[BOXES], out[LABELS] = boxes[keep], out[LABELS][keep]
        return out


class PairedRandomScale:
    """Rescale every image key by one factor drawn uniformly from `scales` (new size int(h * s) x int(w * s), as
    TorchSeg's ``random_scale``): float tensors bilinear (no antialiasing, like cv2.INTER_LINEAR), integer tensors
    (the mask) nearest; boxes scale with the image."""

    def __init__(self, scales: Sequence[float]):
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be a non-empty list of positive factors, got {scales}")
        self.scales = tuple(float(s) for s in scales)

    def __call__(self, sample: Sample) -> Sample:
        scale = self.scales[int(torch.randint(len(self.scales), (1,)))]
        keys = _spatial_keys(sample)
        h, w = sample[keys[0]].shape[-2:]
        sh, sw = max(1, int(h * scale)), max(1, int(w * scale))
        if (sh, sw) == (h, w):
            return sample
        out = dict(sample)
        for k in keys:
            v = out[k]
            x = v.reshape(1, -1, h, w)
            if v.is_floating_point():
                x = F.interpolate(x, size=(sh, sw), mode="bilinear", align_corners=False)
            else:
                x = F.interpolate(x.float(), size=(sh, sw), mode="nearest").to(v.dtype)
            out[k] = x.reshape(*v.shape[:-2], sh, sw)
        if BOXES in out and len(out[BOXES]):
            out[BOXES] = out[BOXES] * torch.tensor([sw / w, sh / h, sw / w, sh / h], dtype=out[BOXES].dtype)
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
