"""The photographs behind `synthetic-mfif` and `synthetic-meif`: textured, well-exposed crops of the scikit-image
sample photographs (no photograph in two splits), the pair generator both use, and their shared Dataset scan
(<root>/<split>/{a,b,gt}/<photo>_<k>.png)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from fusion_bench.data.base import FusionDataset, Problem, SampleRef, pair_by_stem
from fusion_bench.data.synthetic.common import rng_for, save_png
from fusion_bench.types import GT

CROP = 128


PHOTO_SPLITS: dict[str, tuple[tuple[str, int], ...]] = {
    "train": (("astronaut", 10), ("coffee", 10), ("rocket", 10), ("immunohistochemistry", 9), ("retina", 9)),
    "val": (("chelsea", 8),),
    "test": (("motorcycle_left", 6), ("motorcycle_right", 6)),
}
"""Which scikit-image photograph feeds which split (and how many crops), so no photograph is in two splits.
All load offline (no pooch download); motorcycle_left/right are the two views of `stereo_motorcycle`."""


def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as float RGB in [0, 1], shorter side at most 400 px."""
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        arr = left if name.endswith("left") else right
    else:
        arr = getattr(skimage.data, name)()
    img = Image.fromarray(arr).convert("RGB")
    scale = 400 / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.float32) / 255.0


def photo_crops(rng: np.random.Generator, photo: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` textured, well-exposed, little-overlapping CROP x CROP crops (picked from random candidates)."""
    h, w = photo.shape[:2]
    gray = photo.mean(axis=2)
    lap = np.abs(4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:])
    cands = np.stack([rng.integers(0, h - CROP + 1, 400), rng.integers(0, w - CROP + 1, 400)], axis=1)
    scores, means = [], []
    for y, x in cands:
        scores.append(lap[max(y - 1, 0):y + CROP - 2, max(x - 1, 0):x + CROP - 2].mean())
        means.append(gray[y:y + CROP, x:x + CROP].mean())
    scores, means = np.array(scores), np.array(means)
    ok = (means > 0.12) & (means < 0.85) & (scores >= np.quantile(scores, 0.3))
    chosen: list[tuple[int, int]] = []
    for max_overlap in (0.35, 0.6, 1.0):
        for (y, x), good in zip(cands, ok):
            if len(chosen) == count:
                break
            if not good and max_overlap < 1.0:
                continue
            inter = [max(0, CROP - abs(y - cy)) * max(0, CROP - abs(x - cx)) / CROP**2 for cy, cx in chosen]
            if (y, x) not in chosen and all(o <= max_overlap for o in inter):
                chosen.append((int(y), int(x)))
    return [photo[y:y + CROP, x:x + CROP].copy() for y, x in chosen]


def generate_photo_pairs(root: Path, seed: int, make_pair: Callable[[np.random.Generator, np.ndarray], dict]) -> None:
    for split_no, (split, photos) in enumerate(PHOTO_SPLITS.items()):
        for photo_no, (photo_name, count) in enumerate(photos):
            photo = load_photo(photo_name)
            crops = photo_crops(rng_for(seed, split_no, photo_no), photo, count)
            for j, crop in enumerate(crops):
                images = make_pair(rng_for(seed, split_no, photo_no, j + 1), crop)
                for key, image in images.items():
                    save_png(root / split / key / f"{photo_name}_{j:02d}.png", image)


class PhotoPairs(FusionDataset):
    """Shared scan for the photograph-based pairs: <root>/<split>/{a,b,gt}/<photo>_<k>.png."""

    modalities = ("a", "b")
    load_modes = {"a": "RGB", "b": "RGB", GT: "RGB"}
    has_reference = True

    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        self.require_dirs(*(f"{self.split}/{k}" for k in ("a", "b", GT)))
        base = self.root / self.split
        return pair_by_stem({k: base / k for k in ("a", "b", GT)})
