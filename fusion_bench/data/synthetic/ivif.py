"""`synthetic-ivif`: road scenes, RGB visible + thermal, half of them at night, with segmentation masks and
person/car boxes (the MSRS/M3FD layout in miniature): the generator, the Dataset and the DataModule."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from fusion_bench.data.base import FusionDataset, Problem, Sample, SampleRef, pair_by_stem
from fusion_bench.data.synthetic.common import rng_for, save_png, smooth_noise
from fusion_bench.data.synthetic.store import Generator, SyntheticDataModule
from fusion_bench.errors import DatasetIntegrityError
from fusion_bench.types import BOXES, LABELS, Task

IVIF_SIZE = (128, 160)


IVIF_SPLITS = {"train": 64, "val": 16, "test": 16}


IVIF_SEED = 1001


IVIF_CLASSES = ("background", "road", "building", "vegetation", "person", "car")


IVIF_BOX_CLASSES = ("person", "car")

_BG, _ROAD, _BUILDING, _VEG, _PERSON, _CAR = range(6)


def _ivif_scene(rng: np.random.Generator, night: bool) -> dict[str, Any]:
    """One road scene: RGB visible (gamma-encoded, noisy), thermal, class mask, visible person/car boxes.

    Visible = reflectance x illumination (+ light sources) through a noisy sensor with auto-exposure; at night
    the ambient light is ~7% so people/cars sink into the (amplified) sensor noise. Thermal = a smooth
    temperature map (people hot, cars warm at the wheels/engine, sky cold) through blurry optics with
    column fixed-pattern noise; it has none of the visible textures (windows, leaves, lane markings).
    """
    h, w = IVIF_SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cls = np.zeros((h, w), np.uint8)
    inst = np.zeros((h, w), np.int32)
    refl = np.zeros((h, w, 3), np.float32)
    emis = np.zeros((h, w, 3), np.float32)
    temp = np.zeros((h, w), np.float32)
    fine = rng.random((h, w)).astype(np.float32)  # per-pixel texture source (visible only)

    hz = int(rng.integers(36, 56))
    vx = float(rng.uniform(0.3, 0.7) * w)
    depth = np.clip((yy - hz) / (h - hz), 0.0, 1.0)
    below = yy >= hz

    # sky
    t = np.clip(yy / hz, 0, 1)[..., None]
    sky_top, sky_low = np.array([0.30, 0.50, 0.85]), np.array([0.75, 0.80, 0.88])
    refl[:] = (sky_top * (1 - t) + sky_low * t) * (0.35 if night else 1.0)
    temp[:] = (0.05 if night else 0.10) + 0.06 * t[..., 0]

    # buildings along the horizon, with a window grid (visible texture; invisible in thermal)
    palette = np.array([[0.72, 0.62, 0.48], [0.55, 0.30, 0.22], [0.60, 0.60, 0.62], [0.45, 0.40, 0.35],
                        [0.80, 0.78, 0.70]], np.float32)
    for _ in range(int(rng.integers(2, 6))):
        x0, bw = rng.uniform(-15, w - 10), rng.uniform(18, 55)
        top = hz - rng.uniform(10, hz - 3)
        region = (xx >= x0) & (xx < x0 + bw) & (yy >= top) & (yy < hz)
        cls[region] = _BUILDING
        col = palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)
        refl[region] = col * (0.92 + 0.16 * fine[region])[:, None]
        pw, ph = rng.uniform(6, 10), rng.uniform(7, 11)
        ww, wh = pw * rng.uniform(0.35, 0.6), ph * rng.uniform(0.35, 0.55)
        u, v = xx - x0 - 2, yy - top - 2
        win = region & (u >= 0) & (v >= 0) & (np.mod(u, pw) < ww) & (np.mod(v, ph) < wh) & (yy < hz - 3)
        refl[win] = np.array([0.18, 0.22, 0.28]) * rng.uniform(0.8, 1.2)
        lit_table = rng.random(512) < (0.45 if night else 0.0)
        lit = win & lit_table[((u // pw) * 31 + (v // ph) * 7).astype(np.int64) % 512]
        emis[lit] = np.array([0.55, 0.45, 0.20]) * rng.uniform(0.6, 1.0)
        warm = rng.uniform(0.34, 0.42) if night else rng.uniform(0.42, 0.52)
        temp[region] = warm + 0.04 * (yy[region] - top) / max(hz - top, 1)

    # tree crowns (leafy texture in visible, cool and smooth in thermal)
    for _ in range(int(rng.integers(0, 5))):
        cx, cy = rng.uniform(0, w), hz - rng.uniform(2, 14)
        rx, ry = rng.uniform(5, 13), rng.uniform(6, 16)
        ang = np.arctan2(yy - cy, xx - cx)
        wobble = 1 + 0.15 * np.sin(5 * ang + rng.uniform(0, 6.3)) + 0.08 * np.sin(9 * ang + rng.uniform(0, 6.3))
        region = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < wobble**2
        cls[region] = _VEG
        refl[region] = np.array([0.10, 0.30, 0.08]) * (0.4 + 1.2 * fine[region])[:, None]
        temp[region] = (0.20 if night else 0.33) + 0.02 * rng.standard_normal()

    # ground: road (asphalt, lane markings), pavement, grass verges
    half = 2 + depth * rng.uniform(0.4, 0.65) * w
    dx = np.abs(xx - vx)
    road = below & (dx < half)
    walk = below & ~road & (dx < half * rng.uniform(1.15, 1.35) + 3)
    rest = below & ~road & ~walk
    grass_left, grass_right = rng.random() < 0.7, rng.random() < 0.7
    grass = rest & (((xx < vx) & grass_left) | ((xx >= vx) & grass_right))
    dirt = rest & ~grass
    cls[road], cls[walk | dirt], cls[grass] = _ROAD, _BG, _VEG
    tone = rng.uniform(0.24, 0.34)
    refl[road] = (tone * (0.85 + 0.3 * fine[road]))[:, None] * np.array([1.0, 1.0, 1.02])
    dash = np.mod(60.0 / np.maximum(yy - hz + 3.0, 1.0), 1.0) < 0.5
    centre = road & (dx < 0.4 + 1.6 * depth) & dash
    edge = road & (np.abs(dx - (half - 1 - 2 * depth)) < 0.3 + 1.0 * depth)
    refl[centre | edge] = np.array([0.85, 0.85, 0.80])
    tiles = (np.mod(xx, 6) < 0.8) | (np.mod(yy, 5) < 0.8)
    refl[walk] = (np.where(tiles[walk], 0.38, 0.52) * (0.92 + 0.16 * fine[walk]))[:, None]
    refl[dirt] = np.array([0.42, 0.36, 0.28]) * (0.8 + 0.4 * fine[dirt])[:, None]
    refl[grass] = np.array([0.16, 0.36, 0.10]) * (0.5 + 1.0 * fine[grass])[:, None]
    temp[road] = (0.30 if night else 0.56) + (0.03 * depth[road])
    temp[walk | dirt] = 0.28 if night else 0.50
    temp[grass] = 0.21 if night else 0.36

    # people and cars, far to near so that near objects occlude far ones
    objects = [("person", hz + rng.uniform(0.1, 1.05) * (h - hz)) for _ in range(int(rng.integers(1, 5)))]
    objects += [("car", hz + rng.uniform(0.15, 1.1) * (h - hz)) for _ in range(int(rng.integers(0, 4)))]
    objects.sort(key=lambda o: o[1])
    kinds = []
    for k, (kind, yf) in enumerate(objects, start=1):
        s = (yf - hz) / (h - hz)
        hw = 2 + s * (half.max() - 2) * 0.95  # road half-width at the foot row
        if kind == "person":
            oh = 8 + 46 * s
            side = rng.choice([-1.0, 1.0])
            cx = vx + side * hw * rng.uniform(0.7, 1.5)
            torso = ((xx - cx) / (0.17 * oh)) ** 2 + ((yy - (yf - 0.58 * oh)) / (0.22 * oh)) ** 2 < 1
            legs = (np.abs(xx - cx) < 0.12 * oh) & (yy >= yf - 0.42 * oh) & (yy < yf)
            head = (xx - cx) ** 2 + (yy - (yf - 0.88 * oh)) ** 2 < (0.11 * oh) ** 2
            region = torso | legs | head
            cls[region], inst[region] = _PERSON, k
            shirt = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.5)))
            refl[torso] = shirt
            refl[legs & ~torso] = np.array([0.12, 0.12, 0.18]) * rng.uniform(0.8, 2.0)
            refl[head] = np.array([0.62, 0.46, 0.36]) * rng.uniform(0.5, 1.1)
            body_t = rng.uniform(0.80, 0.90)
            temp[region] = body_t
            temp[head] = min(body_t + 0.06, 0.98)
        else:
            oh = 7 + 30 * s
            ow = oh * rng.uniform(1.7, 2.4)
            cx = vx + rng.uniform(-0.65, 0.65) * hw
            body = (np.abs(xx - cx) < ow / 2) & (yy >= yf - 0.6 * oh) & (yy < yf - 0.12 * oh)
            cabin = (np.abs(xx - cx) < 0.36 * ow) & (yy >= yf - oh) & (yy < yf - 0.6 * oh)
            wheels = (((xx - (cx - 0.32 * ow)) ** 2 + (yy - (yf - 0.15 * oh)) ** 2 < (0.16 * oh) ** 2)
                      | ((xx - (cx + 0.32 * ow)) ** 2 + (yy - (yf - 0.15 * oh)) ** 2 < (0.16 * oh) ** 2))
            glass = (np.abs(xx - cx) < 0.3 * ow) & (yy >= yf - 0.92 * oh) & (yy < yf - 0.64 * oh)
            region = body | cabin | wheels
            cls[region], inst[region] = _CAR, k
            paint = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.2, 0.85)))
            refl[body | cabin] = paint
            refl[glass] = np.array([0.10, 0.12, 0.15])
            refl[wheels] = 0.05
            hot = night or rng.random() < 0.6  # recently driven
            temp[body | cabin] = rng.uniform(0.45, 0.55) if hot else rng.uniform(0.50, 0.58)
            engine = body & (yy >= yf - 0.35 * oh)
            temp[engine] = 0.70 if hot else 0.58
            temp[glass] = 0.30 if night else 0.40
            temp[wheels] = 0.75 if hot else 0.60
            if night and rng.random() < 0.5:  # headlights
                lamps = ((np.abs(np.abs(xx - cx) - 0.38 * ow) < 0.08 * ow + 0.5)
                         & (np.abs(yy - (yf - 0.4 * oh)) < 0.06 * oh + 0.5) & body)
                emis[lamps] = np.array([1.0, 0.95, 0.8])
        kinds.append(kind)

    # visible boxes from the pixels left after occlusion
    boxes, labels = [], []
    for k, kind in enumerate(kinds, start=1):
        ys, xs = np.nonzero(inst == k)
        if len(ys) < 8:
            continue
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        labels.append(IVIF_BOX_CLASSES.index(kind))

    # visible camera: illumination, shot/read noise, auto-exposure, gamma
    if night:
        illum = rng.uniform(0.03, 0.05) * (1 + 0.1 * smooth_noise(rng, (h, w), 20))
        for _ in range(int(rng.integers(0, 3))):  # weak street-lamp pools
            lx, ly = rng.uniform(0, w), rng.uniform(hz, h)
            illum = illum + 0.03 * np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * rng.uniform(8, 16) ** 2))
    else:
        illum = rng.uniform(0.8, 1.05) * (1 + 0.08 * smooth_noise(rng, (h, w), 25))
    radiance = refl * illum[..., None] + emis
    gain = float(np.clip(0.3 / radiance.mean(), 1.0, 2.0))  # auto-exposure, capped: nights stay dark
    read = 6e-3 if night else 3e-3  # higher ISO at night
    noisy = radiance + rng.standard_normal(radiance.shape).astype(np.float32) * np.sqrt(
        np.maximum(radiance, 0) * 4e-4 + read**2)
    vis = np.clip(noisy * gain, 0, 1) ** (1 / 2.2)

    # thermal camera: smooth temperature field, blurry optics, column fixed-pattern + white noise
    temp = temp + 0.025 * smooth_noise(rng, (h, w), 12)
    ir = gaussian_filter(temp, 1.0, mode="nearest")
    ir = ir + 0.012 * rng.standard_normal((1, w)).astype(np.float32) + 0.015 * rng.standard_normal((h, w))
    return {"vis": vis, "ir": np.clip(ir, 0, 1), "mask": cls, "boxes": boxes, "labels": labels}


def generate_ivif(root: Path, params: dict[str, Any]) -> None:
    index = 0
    for split_no, (split, count) in enumerate(IVIF_SPLITS.items()):
        for i in range(count):
            rng = rng_for(IVIF_SEED, split_no, i)
            night = bool(i % 2)
            scene = _ivif_scene(rng, night)
            stem = f"{index:05d}{'N' if night else 'D'}"
            index += 1
            save_png(root / split / "vis" / f"{stem}.png", scene["vis"])
            save_png(root / split / "ir" / f"{stem}.png", scene["ir"])
            save_png(root / split / "mask" / f"{stem}.png", scene["mask"])
            annotation = {"night": night, "boxes": scene["boxes"], "labels": scene["labels"],
                          "box_class_names": list(IVIF_BOX_CLASSES)}
            path = root / split / "boxes" / f"{stem}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(annotation) + "\n")



IVIF = Generator("synthetic-ivif", generate_ivif, {})


class SyntheticIVIF(FusionDataset):
    """Synthetic road scenes: RGB visible + thermal, segmentation mask and person/car boxes.

    Stems end in D (day) or N (night), as in MSRS. Each sample: name, ir (1xHxW), vis (3xHxW), mask (long HxW),
    boxes (float Nx4 xyxy pixels), labels (long N).
    """

    name = "synthetic-ivif"
    task = Task.IVIF
    modalities = ("ir", "vis")
    load_modes = {"ir": "L", "vis": "RGB", "mask": "mask"}
    class_names = IVIF_CLASSES
    box_class_names = IVIF_BOX_CLASSES
    expected_tree = """\
<root>/
  manifest.json            sha256 of every file (written by the generator)
  {train,val,test}/
    ir/00000D.png          thermal, 8-bit gray, 128x160
    vis/00000D.png         visible, 8-bit RGB, 128x160
    mask/00000D.png        class indices 0..5 (background, road, building, vegetation, person, car)
    boxes/00000D.json      {"night": bool, "boxes": [[x1, y1, x2, y2], ...], "labels": [0=person | 1=car, ...]}
"""

    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        base = self.root / self.split
        self.require_dirs(*(f"{self.split}/{k}" for k in ("ir", "vis", "mask", "boxes")))
        samples, problems = pair_by_stem({k: base / k for k in ("ir", "vis", "mask")})
        kept = []
        for ref in samples:
            annotation = base / "boxes" / f"{ref.name}.json"
            if annotation.is_file():
                ref.extra["annotation"] = annotation
                kept.append(ref)
            else:
                problems.append(Problem(str(annotation), "box annotation missing"))
        return kept, problems

    def _load(self, ref: SampleRef) -> Sample:
        sample = super()._load(ref)
        path = ref.extra["annotation"]
        try:
            data = json.loads(Path(path).read_text())
            boxes = torch.tensor(data["boxes"], dtype=torch.float32).reshape(-1, 4)
            labels = torch.tensor(data["labels"], dtype=torch.int64).reshape(-1)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise DatasetIntegrityError(self.name, self.root, [Problem(str(path), f"bad annotation: {err}")]) from err
        if len(boxes) != len(labels):
            raise DatasetIntegrityError(self.name, self.root, [
                Problem(str(path), f"{len(boxes)} boxes but {len(labels)} labels")])
        sample[BOXES], sample[LABELS] = boxes, labels
        return sample


class SyntheticIVIFDataModule(SyntheticDataModule):
    """``synthetic-ivif``: 64/16/16 road scenes (ir, vis, mask, boxes), 128x160; see :class:`SyntheticIVIF`."""

    dataset_class = SyntheticIVIF
    generator = IVIF
