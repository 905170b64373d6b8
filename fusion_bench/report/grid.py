"""Qualitative grids: picking the test images to show, the zoom box, and the tiles (PIL, no fonts downloaded).

Images are shown as stored (8-bit); tiles are scaled to TILE_SIDE on the longest side (Lanczos when shrinking,
nearest neighbour when enlarging), the zoomed inset is cut from the full resolution image and enlarged with
nearest-neighbour sampling (no detail is invented).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

TILE_SIDE = 300  # longest side of a tile on the page (pixels)
INSET_COLOUR = (255, 64, 32)
CONF_THRESHOLD = 0.25  # detection boxes drawn from this confidence up


def read_rgb(path: Path) -> np.ndarray:
    """An image file as HxWx3 uint8 (gray repeated, alpha dropped, 16-bit scaled by 1/257)."""
    with Image.open(path) as image:
        if image.mode in ("I;16", "I;16B", "I"):
            array = np.asarray(image, dtype=np.float64) / 257.0
            return np.repeat(np.clip(array, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        return np.asarray(image.convert("RGB"))


def to_uint8(image) -> np.ndarray:
    """A float CxHxW tensor/array in [0, 1] (1, 3 or 4 channels) -> HxWx3 uint8."""
    array = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    array = array[:3] if array.shape[0] >= 3 else np.repeat(array[:1], 3, axis=0)
    return np.clip(np.rint(array.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _small(image: np.ndarray, side: int = 96) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return luminance(image)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return luminance(np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR)))


def disagreement(images: Sequence[np.ndarray]) -> float:
    """Mean over pixels of the std across methods of the (downsampled) luminance: how much methods disagree."""
    if len(images) < 2:
        return 0.0
    stack = np.stack([_small(im) for im in images if im.shape[:2] == images[0].shape[:2]])
    return float(stack.std(axis=0).mean()) if len(stack) > 1 else 0.0


def pick_images(fused: Mapping[str, Mapping[str, Path]], names: Sequence[str], count: int) -> list[tuple[str, float]]:
    """The `count` test images on which methods disagree most (ties: dataset order). fused: entry -> name -> path."""
    scores = []
    for name in names:
        images = [read_rgb(paths[name]) for paths in fused.values() if name in paths]
        scores.append((name, disagreement(images)))
    order = sorted(range(len(scores)), key=lambda i: (-scores[i][1], i))
    return [scores[i] for i in order[:count]]


def contrast_box(image: np.ndarray, fraction: float = 0.25) -> tuple[int, int, int, int]:
    """The square window (side = `fraction` of the shorter side) with the highest local luminance std."""
    gray = luminance(image).astype(np.float64)
    h, w = gray.shape
    side = max(4, int(round(min(h, w) * fraction)))
    mean = ndimage.uniform_filter(gray, side, mode="nearest")
    square = ndimage.uniform_filter(gray * gray, side, mode="nearest")
    std = np.sqrt(np.maximum(square - mean * mean, 0))
    half = side // 2
    inner = std[half:h - (side - half) + 1, half:w - (side - half) + 1] if h > side and w > side else std
    cy, cx = np.unravel_index(int(np.argmax(inner)), inner.shape)
    if h > side and w > side:
        cy, cx = cy + half, cx + half
    x0, y0 = int(min(max(cx - half, 0), w - side)), int(min(max(cy - half, 0), h - side))
    return x0, y0, x0 + side, y0 + side


def check_box(box: Sequence[int], size: tuple[int, int], where: str) -> tuple[int, int, int, int]:
    """A zoom box x0, y0, x1, y1 inside an image of `size` (h, w); else ValueError naming `where`."""
    if len(box) != 4:
        raise ValueError(f"{where}: a zoom box is x0,y0,x1,y1 (4 integers), got {list(box)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = size
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError(f"{where}: zoom box {[x0, y0, x1, y1]} is not inside the {w}x{h} image")
    return x0, y0, x1, y1


def _fit(image: Image.Image, side: int) -> tuple[Image.Image, float]:
    """Scale the longest side to `side`: Lanczos when shrinking, nearest neighbour when enlarging small images."""
    scale = side / max(image.size)
    if scale != 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.LANCZOS if scale < 1 else Image.NEAREST)
    return image, scale


def make_tile(image: np.ndarray, path: Path, box: tuple[int, int, int, int] | None = None,
              side: int = TILE_SIDE) -> Path:
    """Write the page tile of `image`: downscaled to `side`, with the zoom box outlined and its enlarged crop in
    the corner farthest from the box."""
    full = Image.fromarray(image)
    tile, scale = _fit(full, side)
    if box is not None:
        x0, y0, x1, y1 = box
        draw = ImageDraw.Draw(tile)
        sbox = [x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1]
        draw.rectangle(sbox, outline=INSET_COLOUR, width=2)
        inset_w = max(8, int(tile.width * 0.36))
        factor = inset_w / (x1 - x0)
        crop = full.crop(box).resize((inset_w, max(4, int(round((y1 - y0) * factor)))), Image.NEAREST)
        cx, cy = (sbox[0] + sbox[2]) / 2, (sbox[1] + sbox[3]) / 2
        px = 0 if cx > tile.width / 2 else tile.width - crop.width
        py = 0 if cy > tile.height / 2 else tile.height - crop.height
        tile.paste(crop, (px, py))
        ImageDraw.Draw(tile).rectangle([px, py, px + crop.width - 1, py + crop.height - 1], outline=INSET_COLOUR,
                                       width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tile.save(path)
    return path


def palette(n: int, strong: bool = False) -> np.ndarray:
    """n distinct RGB colours, uint8: matplotlib's tab20 (tab10 when `strong`, for thin box outlines), then hsv."""
    from matplotlib import colormaps

    base = colormaps["tab10" if strong else "tab20"].colors
    colours = [base[i] for i in range(min(n, len(base)))] + [colormaps["hsv"](i / max(n - len(base), 1))[:3]
                                                             for i in range(max(n - len(base), 0))]
    return (np.array(colours) * 255).round().astype(np.uint8)


def overlay_mask(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, ignore_index: int = 255,
                 alpha: float = 0.55) -> np.ndarray:
    """Class colours blended over the image's luminance; ignored pixels keep the image."""
    gray = np.repeat(luminance(image)[..., None], 3, axis=2)
    if mask.shape != image.shape[:2]:
        mask = np.asarray(Image.fromarray(mask.astype(np.int32)).resize(image.shape[1::-1], Image.NEAREST))
    out = gray.copy()
    valid = (mask != ignore_index) & (mask < len(colours)) & (mask >= 0)
    out[valid] = (1 - alpha) * gray[valid] + alpha * colours[mask[valid].astype(int)]
    return np.clip(out, 0, 255).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[int], colours: np.ndarray,
               scores: Sequence[float] | None = None) -> np.ndarray:
    """Absolute xyxy boxes drawn in their class colour (2 px), with the confidence when given."""
    canvas = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(image.shape[:2]) / 250))
    for i, (box, label) in enumerate(zip(boxes, labels)):
        colour = tuple(int(c) for c in colours[int(label) % len(colours)])
        draw.rectangle([float(v) for v in box], outline=colour, width=width)
        if scores is not None:
            draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{scores[i]:.2f}", fill=colour)
    return np.asarray(canvas)


def read_yolo_predictions(path: Path, size: tuple[int, int],
                          threshold: float = CONF_THRESHOLD) -> tuple[list[list[float]], list[int], list[float]]:
    """Ultralytics `save_txt` lines (cls cx cy w h [conf], normalised) -> absolute xyxy boxes, labels, scores."""
    h, w = size
    boxes, labels, scores = [], [], []
    if not path.is_file():
        return boxes, labels, scores
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        cls, cx, cy, bw, bh = int(float(parts[0])), *(float(v) for v in parts[1:5])
        conf = float(parts[5]) if len(parts) > 5 else math.nan
        if not math.isnan(conf) and conf < threshold:
            continue
        boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
        labels.append(cls)
        scores.append(conf)
    return boxes, labels, scores


def placeholder(path: Path, size: tuple[int, int], side: int = TILE_SIDE) -> Path:
    """A grey tile standing in for a missing image (the page says which file is missing)."""
    h, w = size
    scale = side / max(h, w)
    tile = Image.new("RGB", (max(1, round(w * scale)), max(1, round(h * scale))), (200, 200, 200))
    draw = ImageDraw.Draw(tile)
    draw.line([0, 0, tile.width, tile.height], fill=(150, 150, 150), width=2)
    draw.line([0, tile.height, tile.width, 0], fill=(150, 150, 150), width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tile.save(path)
    return path


__all__ = ["contrast_box", "disagreement", "draw_boxes", "make_tile", "overlay_mask", "palette", "pick_images",
           "placeholder", "read_rgb", "read_yolo_predictions", "to_uint8"]
