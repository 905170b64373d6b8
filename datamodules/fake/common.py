"""Building blocks for fake dataset trees: deterministic images written in the real formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rng_for(seed: int, *salt: str) -> np.random.Generator:
    """A generator seeded from `seed` and string salts (stable across runs and platforms)."""
    return np.random.default_rng([seed, *[sum(ord(c) * 31**i for i, c in enumerate(s)) % 2**31 for s in salt]])


def scene(rng: np.random.Generator, height: int, width: int, channels: int, dtype=np.uint8) -> np.ndarray:
    """A smooth random image with a few rectangles (so metrics and crops see structure), HxW or HxWxC."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = 0.5 + 0.25 * np.sin(xx / (3 + 5 * rng.random())) * np.cos(yy / (3 + 5 * rng.random()))
    img = np.repeat(base[..., None], channels, axis=2) * (0.6 + 0.4 * rng.random(channels))
    for _ in range(3):
        y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
        img[y0:y0 + height // 3, x0:x0 + width // 3] = rng.random(channels)
    img = np.clip(img + 0.02 * rng.standard_normal(img.shape), 0, 1)
    peak = np.iinfo(dtype).max
    out = np.round(img * peak).astype(dtype)
    return out[..., 0] if channels == 1 else out


def label_map(rng: np.random.Generator, height: int, width: int, num_classes: int) -> np.ndarray:
    """A class-index map with every class present in horizontal bands plus a random block."""
    bands = (np.arange(height)[:, None] * num_classes // height).repeat(width, axis=1)
    y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
    bands[y0:y0 + height // 4, x0:x0 + width // 4] = rng.integers(0, num_classes)
    return bands.astype(np.uint8)


def save(path: Path, array: np.ndarray, mode: str | None = None, **kwargs) -> Path:
    """Write an array with PIL (format from the extension); creates parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, **kwargs) if mode else Image.fromarray(array).save(path, **kwargs)
    return path


def write_voc_xml(path: Path, filename: str, width: int, height: int, objects: list[tuple[str, int, int, int, int]]):
    """A Pascal-VOC annotation with (name, xmin, ymin, xmax, ymax) objects."""
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1 in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}"
                    f"</height><depth>3</depth></size>{objs}</annotation>\n")
    return path


def multifocus_pair(rng: np.random.Generator, height: int, width: int, channels: int = 3,
                    radius: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(near-focus, far-focus, all-in-focus) uint8 images: the left/right half of a scene blurred in turn."""
    from PIL import ImageFilter

    sharp = scene(rng, height, width, channels)
    blurred = np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(radius)))
    near, far = sharp.copy(), sharp.copy()
    near[:, width // 2:] = blurred[:, width // 2:]
    far[:, : width // 2] = blurred[:, : width // 2]
    return near, far, sharp


def exposure_stack(rng: np.random.Generator, height: int, width: int, gains: list[float]) -> list[np.ndarray]:
    """Colour uint8 exposures of one scene, one per gain (gain < 1 under-exposed, > 1 over-exposed)."""
    radiance = scene(rng, height, width, 3).astype(np.float64) / 255.0
    return [np.clip(np.round(255 * (radiance * g) ** (1 / 1.2)), 0, 255).astype(np.uint8) for g in gains]
