"""Image reading and lossless writing with explicit channel modes and actionable errors.

Depth policy (one rule for every dataset, `bench`, `metrics` and the evaluators): an image is decoded at its stored
depth and scaled to [0, 1] by the range of its stored type, never through PIL's clipping mode conversion:

- 8-bit (PIL modes L, RGB, RGBA, P, LA, 1): divided by 255;
- 16-bit (I;16, I;16B, I;16L, I;16N) and 32-bit integer images (I) whose values lie in 0..65535 (how 16-bit PNGs
  and TIFFs decode): divided by 65535;
- 32-bit float (F): taken as stored when every value is finite and in [0, 1];
- anything else (negative or > 65535 integers, floats outside [0, 1], NaN) is an error naming the file: rescale such
  files yourself, with the rule your data needs, before benchmarking.

A single-channel deep image read as RGB is replicated to three channels (as PIL does for 8-bit gray). The fusion
metrics work on 8-bit levels (round(255 x), as the reference kits read 8-bit files), in `bench` and in `metrics`.
Decompression bombs (images over PIL's `Image.MAX_IMAGE_PIXELS`) are refused with an error naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fusion_bench.errors import ImageReadError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEEP_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
"""PIL modes deeper than 8 bits per channel (single channel): read by the depth policy above."""
UINT16_MAX = 65535


def is_image_file(path: Path) -> bool:
    """True for files with an image extension (so `Thumbs.db` and friends are ignored)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def depth_of(mode: str) -> str:
    """A stored PIL mode as a depth label for reports: '8-bit', '16-bit', '32-bit int' or '32-bit float'."""
    if mode.startswith("I;16"):
        return "16-bit"
    return {"I": "32-bit int", "F": "32-bit float", "unreadable": "unreadable"}.get(mode, "8-bit")


# What a damaged or non-image file raises while PIL opens or decodes it. ImportError: once ultralytics is imported
# it wraps Image.open and, on a file PIL cannot identify, tries to import the optional HEIF plugin (pi_heif) instead
# of raising UnidentifiedImageError.
UNREADABLE_IMAGE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, ImportError)


def open_image(path: Path) -> Image.Image:
    """Image.open with PIL's decompression-bomb warning turned into an error (the caller closes the image)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def _bomb_message(path: Path, err: Exception) -> str:
    return (f"cannot read image {path}: refused as a possible decompression bomb ({err}); downscale the image "
            f"below PIL's limit of {Image.MAX_IMAGE_PIXELS} pixels")


def stored_mode(path: str | Path) -> str:
    """The PIL mode a file is stored in (header only), e.g. L, RGB, RGBA, P, I;16; "unreadable" on failure."""
    try:
        with open_image(Path(path)) as img:
            return img.mode
    except (*UNREADABLE_IMAGE_ERRORS, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return "unreadable"


def scale_deep(arr: np.ndarray, where: str | Path) -> np.ndarray:
    """A deep single-channel array (uint16, int32 of mode I, float32 of mode F) -> float32 in [0, 1] (module
    docstring); values outside the policy raise ImageReadError naming `where`."""
    if arr.dtype.kind in "ui":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > UINT16_MAX:
            raise ImageReadError(f"{where}: integer image with values {lo}..{hi}; fusion_bench reads 8-bit (0..255) "
                                 f"and 16-bit (0..{UINT16_MAX}) images: rescale it to one of these first")
        return arr.astype(np.float32) / np.float32(UINT16_MAX)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            raise ImageReadError(f"{where}: float image with {int((~finite).sum())} NaN/inf value(s)")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ImageReadError(f"{where}: 32-bit float image with values in [{lo:g}, {hi:g}]; float images are "
                                 "read as stored and must lie in [0, 1]: rescale it (or store it as 16-bit) first")
        return arr.astype(np.float32)
    raise ImageReadError(f"{where}: unsupported image dtype {arr.dtype}")


def read_array(path: str | Path, mode: str | None = None) -> np.ndarray:
    """Decode an image to a numpy array.

    mode: "L" (1 channel), "RGB", "RGBA" (keeps a 4th channel, e.g. MFNet thermal) or None (as stored, 16-bit
    kept). A deep image (16-bit, 32-bit int or float) asked for in L/RGB/RGBA comes back as float32 in [0, 1]
    (module docstring), never clipped by a mode conversion. Raises ImageReadError naming the file when it is
    truncated, not an image, a decompression bomb, or outside the depth policy.
    """
    path = Path(path)
    try:
        with open_image(path) as img:
            img.load()
            if mode is not None and img.mode != mode:
                if img.mode in DEEP_MODES:
                    gray = scale_deep(np.asarray(img), path)
                    if mode == "L":
                        return gray
                    channels = [gray] * 3 + ([np.ones_like(gray)] if mode == "RGBA" else [])
                    return np.stack(channels, axis=-1)
                img = img.convert(mode)
            arr = np.asarray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageReadError(_bomb_message(path, err)) from err
    except UNREADABLE_IMAGE_ERRORS as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err
    return arr


def to_tensor(arr: np.ndarray, where: str | Path = "image") -> torch.Tensor:
    """HxW or HxWxC array -> float CxHxW tensor in [0, 1]: uint8/bool / 255, uint16 / 65535, int32 (PIL mode I)
    and float32 by the depth policy (module docstring; errors name `where`)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype == np.uint8 or arr.dtype == bool:
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32))
        return t / 255.0
    if arr.dtype == np.uint16:
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)).astype(np.float32))
        return t / float(UINT16_MAX)
    if arr.dtype.kind in "uif":
        return torch.from_numpy(np.ascontiguousarray(scale_deep(arr, where).transpose(2, 0, 1)))
    raise ImageReadError(f"{where}: unsupported image dtype {arr.dtype}")


def read_image(path: str | Path, mode: str | None = "RGB") -> torch.Tensor:
    """Read an image as float CxHxW in [0, 1] (mode as in :func:`read_array`; depth policy in the module docstring)."""
    return to_tensor(read_array(path, mode), path)


def read_mask(path: str | Path) -> torch.Tensor:
    """Read a single-channel class-index PNG as a long HxW tensor (indices as stored, never scaled)."""
    arr = read_array(path, None)
    if arr.ndim == 3:
        raise ImageReadError(f"label {path} has {arr.shape[2]} channels; expected a 1-channel class-index image")
    if arr.dtype.kind == "f":
        raise ImageReadError(f"label {path} is a float image; expected integer class indices")
    return torch.from_numpy(arr.astype(np.int64))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Float CxHxW in [0, 1] -> uint8 HxWxC (HxW for one channel), rounding half to even (in float64 for a float64
    image, else in float32)."""
    if image.ndim != 3:
        raise ValueError(f"expected a CxHxW image, got shape {tuple(image.shape)}")
    image = image.detach()
    image = image if image.dtype == torch.float64 else image.float()
    arr = torch.round(image.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    arr = arr.transpose(1, 2, 0)
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def write_png(path: str | Path, image: torch.Tensor) -> Path:
    """Write a float CxHxW image in [0, 1] as a lossless 8-bit PNG (atomic: temp file then rename; an OSError names
    `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
        tmp.replace(path)
    except BaseException as err:  # a full disk, a file-size limit, Ctrl-C: no half-written temp file stays
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path
