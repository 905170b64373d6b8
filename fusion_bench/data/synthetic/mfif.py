"""`synthetic-mfif`: multi-focus pairs cut from the scikit-image photographs (a sharp inside a soft focus region, b
outside it, the sharp crop as reference): the generator, the Dataset and the DataModule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.data.io import read_image
from fusion_bench.data.synthetic.common import blur_rgb, smooth_noise
from fusion_bench.data.synthetic.photos import CROP, PhotoPairs, generate_photo_pairs
from fusion_bench.data.synthetic.store import Generator, SyntheticDataModule
from fusion_bench.types import GT, Task

MFIF_SEED = 2002


def _focus_map(rng: np.random.Generator) -> np.ndarray:
    """A soft in-focus region (1 = in focus in source a): half-plane, wobbly ellipse or smooth random blob."""
    yy, xx = np.mgrid[0:CROP, 0:CROP].astype(np.float32)
    for _ in range(20):
        kind = rng.integers(3)
        if kind == 0:
            theta = rng.uniform(0, 2 * np.pi)
            dist = (xx - CROP / 2) * np.cos(theta) + (yy - CROP / 2) * np.sin(theta) - rng.uniform(-25, 25)
            hard = dist > 0
        elif kind == 1:
            cx, cy = rng.uniform(35, CROP - 35, 2)
            ang = np.arctan2(yy - cy, xx - cx)
            radius = rng.uniform(30, 50) * (1 + 0.18 * np.sin(3 * ang + rng.uniform(0, 6.3))
                                            + 0.1 * np.sin(5 * ang + rng.uniform(0, 6.3)))
            hard = np.hypot(xx - cx, yy - cy) < radius
        else:
            field = smooth_noise(rng, (CROP, CROP), rng.uniform(12, 20))
            hard = field > np.quantile(field, rng.uniform(0.35, 0.65))
        soft = gaussian_filter(hard.astype(np.float32), rng.uniform(1.0, 2.5), mode="nearest")
        if 0.25 <= soft.mean() <= 0.75:
            return soft
    return (xx > CROP / 2).astype(np.float32)


def _mfif_pair(rng: np.random.Generator, sharp: np.ndarray) -> dict[str, np.ndarray]:
    """Complementary defocus: a is blurred outside the focus region, b inside (Gaussian, sigma 1.5-3)."""
    focus = _focus_map(rng)[..., None]
    blur_a = blur_rgb(sharp, rng.uniform(1.5, 3.0))
    blur_b = blur_rgb(sharp, rng.uniform(1.5, 3.0))
    a = focus * sharp + (1 - focus) * blur_a
    b = (1 - focus) * sharp + focus * blur_b
    return {"a": a, "b": b, GT: sharp, "focus": focus[..., 0]}


def generate_mfif(root: Path, params: dict[str, Any]) -> None:
    generate_photo_pairs(root, MFIF_SEED, _mfif_pair)



MFIF = Generator("synthetic-mfif", generate_mfif, {})


class SyntheticMFIF(PhotoPairs):
    """Multi-focus pairs from scikit-image photographs: a is sharp inside a soft region, b outside; gt sharp.

    The focus map (1 = in focus in a) is kept beside the pair (`focus/`, path in ``ref.extra["focus"]``) for
    analysis; it is not part of the sample. Photographs per split: see ``PHOTO_SPLITS``.
    """

    name = "synthetic-mfif"
    task = Task.MFIF
    expected_tree = """\
<root>/
  manifest.json
  {train,val,test}/
    a/<photo>_<k>.png       RGB 128x128, in focus where focus > 0.5
    b/<photo>_<k>.png       RGB 128x128, in focus where focus < 0.5
    gt/<photo>_<k>.png      the sharp crop
    focus/<photo>_<k>.png   8-bit focus map of a
photos: train astronaut, coffee, rocket, immunohistochemistry, retina; val chelsea; test stereo motorcycle
"""

    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        samples, problems = super()._scan()
        for ref in samples:
            focus = self.root / self.split / "focus" / f"{ref.name}.png"
            if focus.is_file():
                ref.extra["focus"] = focus
        return samples, problems

    def focus_map(self, index: int) -> torch.Tensor:
        """The 1xHxW focus map of sample `index` (1 where a is in focus)."""
        return read_image(self.samples[index].extra["focus"], "L")


class SyntheticMFIFDataModule(SyntheticDataModule):
    """``synthetic-mfif``: 48/8/12 multi-focus pairs (a, b, gt), 128x128; see :class:`SyntheticMFIF`."""

    dataset_class = SyntheticMFIF
    generator = MFIF
