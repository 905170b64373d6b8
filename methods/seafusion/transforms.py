"""What the segmentation network sees in SeAFusion's segmentation phases (the authors' train.py / cityscapes.py).

The authors fuse the training set to PNG (`run_fusion`: clamp, min-max over each batch of 16, uint8), then train
BiSeNet on those files with ColorJitter(0.5, 0.5, 0.5), a horizontal flip, a random scale from
{0.75, 1, 1.25, 1.5, 1.75, 2} and a random crop of 640x480 (the image size; a smaller scaled image is first resized
up so that the crop fits). Here the same is done on the fused batch in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

AUTHORS_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def as_saved_images(fused: torch.Tensor) -> torch.Tensor:
    """The authors' `run_fusion` output as read back: min-max normalised over the whole batch, then truncated to
    8 bits (`np.uint8(255 * x)`). A constant batch is only truncated."""
    low, high = fused.amin(), fused.amax()
    if high > low:
        fused = (fused - low) / (high - low)
    return torch.floor(255 * fused.clamp(0, 1)) / 255


def _uniform(low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand(()))


def augment_for_segmentation(images: torch.Tensor, masks: torch.Tensor, jitter: float = 0.5,
                             scales: Sequence[float] = AUTHORS_SCALES,
                             flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: brightness, contrast and saturation factors drawn from [max(0, 1 - jitter), 1 + jitter] (applied
    in that order, as the authors' ColorJitter), a horizontal flip with probability 1/2, a scale drawn from
    `scales` (bilinear image, nearest mask), then a random crop back to the input size (resizing up first where the
    scaled image is smaller). Images Bx{1,3}xHxW in [0, 1], masks BxHxW long; draws from the torch RNG."""
    if images.ndim != 4 or masks.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"images must be BxCxHxW and masks BxHxW of the same size, got {tuple(images.shape)} and "
                         f"{tuple(masks.shape)}")
    if jitter < 0 or not scales or min(scales) <= 0:
        raise ValueError(f"jitter must be >= 0 and scales positive, got {jitter} and {tuple(scales)}")
    h, w = images.shape[-2:]
    out_images, out_masks = [], []
    for image, mask in zip(images, masks):
        low = max(0.0, 1 - jitter)
        image = TF.adjust_brightness(image, _uniform(low, 1 + jitter))
        image = TF.adjust_contrast(image, _uniform(low, 1 + jitter))
        image = TF.adjust_saturation(image, _uniform(low, 1 + jitter))
        mask = mask[None, None].float()
        if flip and torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        scale = scales[int(torch.randint(len(scales), ()))]
        sh, sw = int(h * scale), int(w * scale)
        if sh < h or sw < w:  # the authors' RandomCrop resizes a too-small image up before cropping
            factor = max(h / sh, w / sw)
            sh, sw = int(factor * sh + 1), int(factor * sw + 1)
        image = F.interpolate(image[None], size=(sh, sw), mode="bilinear", align_corners=False)[0].clamp(0, 1)
        mask = F.interpolate(mask, size=(sh, sw), mode="nearest")[0, 0]
        top = int(torch.rand(()) * (sh - h))
        left = int(torch.rand(()) * (sw - w))
        out_images.append(image[:, top:top + h, left:left + w])
        out_masks.append(mask[top:top + h, left:left + w].long())
    return torch.stack(out_images), torch.stack(out_masks)
