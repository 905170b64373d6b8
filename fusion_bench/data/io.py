"""Image reading and lossless writing with explicit channel modes and actionable errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageReadError(RuntimeError):
    """An image file exists but cannot be decoded."""


def is_image_file(path: Path) -> bool:
    """True for files with an image extension (so `Thumbs.db` and friends are ignored)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def read_array(path: str | Path, mode: str | None = None) -> np.ndarray:
    """Decode an image to a numpy array.

    mode: "L" (1 channel), "RGB", "RGBA" (keeps a 4th channel, e.g. MFNet thermal) or None (as stored,
    16-bit kept). Raises ImageReadError naming the file when it is truncated or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if mode is not None and img.mode != mode:
                img = img.convert(mode)
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err
    return arr


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC uint8/uint16 array -> float CxHxW tensor in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint16:
        scale = 65535.0
    elif arr.dtype == np.uint8 or arr.dtype == bool:
        scale = 255.0
    else:
        raise ImageReadError(f"unsupported image dtype {arr.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32))
    return t / scale


def read_image(path: str | Path, mode: str | None = "RGB") -> torch.Tensor:
    """Read an image as float CxHxW in [0, 1] (mode as in :func:`read_array`)."""
    return to_tensor(read_array(path, mode))


def read_mask(path: str | Path) -> torch.Tensor:
    """Read a single-channel class-index PNG as a long HxW tensor."""
    arr = read_array(path, None)
    if arr.ndim == 3:
        raise ImageReadError(f"label {path} has {arr.shape[2]} channels; expected a 1-channel class-index image")
    return torch.from_numpy(arr.astype(np.int64))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Float CxHxW in [0, 1] -> uint8 HxWxC (HxW for one channel), rounding half to even."""
    if image.ndim != 3:
        raise ValueError(f"expected a CxHxW image, got shape {tuple(image.shape)}")
    arr = torch.round(image.detach().float().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    arr = arr.transpose(1, 2, 0)
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def write_png(path: str | Path, image: torch.Tensor) -> Path:
    """Write a float CxHxW image in [0, 1] as a lossless 8-bit PNG (atomic: temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    tmp.replace(path)
    return path
