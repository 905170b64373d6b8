"""What every synthetic generator shares: deterministic PNG and NPZ files (the same bytes on every run), a seeded
random generator per sample (never the global RNG), smooth noise fields and blur."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter


def save_png(path: Path, array: np.ndarray) -> None:
    """float [0, 1] HxW / HxWxC (rounded to 8 bit) or uint8 array -> PNG (deterministic bytes)."""
    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like numpy.savez, but with fixed zip timestamps so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def rng_for(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std low-frequency noise (Gaussian-filtered white noise)."""
    field = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def blur_rgb(image: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")
