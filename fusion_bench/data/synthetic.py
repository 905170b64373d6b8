"""Embedded synthetic datasets, generated offline with numpy on first use.

Four small datasets let every method, metric and the runner work without downloading anything:

- ``synthetic-ivif``: road scenes, RGB visible + thermal, half of them at night, with segmentation masks and
  person/car boxes (the MSRS/M3FD layout in miniature).
- ``synthetic-mfif``: multi-focus pairs cut from the photographs shipped with scikit-image, with the sharp
  crop as reference.
- ``synthetic-meif``: under/over-exposed pairs from the same photographs, with the crop as reference.
- ``synthetic-av``: a 6-class "audio-visual" classification set (spectrogram + small frame) whose modality
  imbalance is set by ``audio_snr`` / ``visual_snr`` (audio dominates by default, as in CREMA-D).

Each generator uses a fixed seed (a per-sample ``numpy.random.Generator``, never the global RNG), so the
bytes on disk are reproducible. Data are generated into a temporary folder next to the target and renamed
into place atomically, with a ``manifest.json`` holding the sha256 of every file. The default location is
``$FUSION_BENCH_CACHE`` (else ``$XDG_CACHE_HOME/fusion_bench``, else ``~/.cache/fusion_bench``) under
``synthetic/<name>/v<GENERATOR_VERSION>/`` (plus a parameter folder for ``synthetic-av``). The manifest is
verified whenever a DataModule resolves its root; a corrupt or incomplete cache is regenerated with a warning.
"""

from __future__ import annotations

import colorsys
import errno
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.base import (
    DatasetError,
    DatasetIntegrityError,
    DatasetNotFoundError,
    FusionDataset,
    Problem,
    Sample,
    SampleRef,
    pair_by_stem,
)
from fusion_bench.data.io import read_image
from fusion_bench.types import AUDIO, BOXES, FRAMES, GT, LABELS, NAME, TARGET, Task

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2
"""Bump when any generator changes its output; the cache folder is versioned with it."""

MANIFEST = "manifest.json"

# ================================================================================================
# cache location, manifest, atomic installation
# ================================================================================================


def cache_dir() -> Path:
    """``$FUSION_BENCH_CACHE``, else ``$XDG_CACHE_HOME/fusion_bench``, else ``~/.cache/fusion_bench``."""
    env = os.environ.get("FUSION_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "fusion_bench"
    return Path.home() / ".cache" / "fusion_bench"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(root: Path, name: str, params: dict[str, Any]) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {
        "dataset": name,
        "generator_version": GENERATOR_VERSION,
        "params": params,
        "files": {p.relative_to(root).as_posix(): _sha256(p) for p in files},
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The parsed manifest of a generated dataset, or None when absent or unreadable."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def verify_manifest(root: str | Path, name: str | None = None) -> list[str]:
    """Problems with a generated dataset at `root` (empty list: intact).

    Checks that the manifest exists, belongs to `name` and this GENERATOR_VERSION, and that every listed
    file exists with the recorded sha256.
    """
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is None:
        return [f"{root / MANIFEST}: missing or unreadable manifest"]
    problems = []
    if name is not None and manifest.get("dataset") != name:
        problems.append(f"{root / MANIFEST}: manifest is for {manifest.get('dataset')!r}, not {name!r}")
    if manifest.get("generator_version") != GENERATOR_VERSION:
        problems.append(f"{root / MANIFEST}: generator version {manifest.get('generator_version')} "
                        f"!= {GENERATOR_VERSION}")
    if not manifest["files"]:
        problems.append(f"{root / MANIFEST}: lists no files")
    for rel, digest in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif _sha256(path) != digest:
            problems.append(f"{path}: sha256 mismatch")
    return problems


def _install(tmp: Path, target: Path, name: str) -> None:
    """Rename the finished `tmp` tree onto `target` (absent or an empty folder); tolerate a concurrent winner."""
    for _ in range(5):
        try:
            os.rename(tmp, target)  # atomic; replaces an absent target or an empty directory
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        if not verify_manifest(target, name):
            return  # another process installed a valid copy first; ours is discarded by the caller
        aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue
        shutil.rmtree(aside, ignore_errors=True)
    raise DatasetError(f"{name}: could not install generated data at {target}")


def _generate_into(target: Path, spec: _Spec, params: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)
        _generate_pinned(spec.name, tmp, params)
        _write_manifest(tmp, spec.name, params)
        _install(tmp, target, spec.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _generate_pinned(name: str, folder: Path, params: dict[str, Any]) -> None:
    """Run generator `name` into `folder` in a child process with pinned numerics.

    NumPy picks its AVX-512 code for sin/exp/log/arctan2 on CPUs that have it (and the AVX2 code elsewhere), and
    the two differ in the last bits, enough to flip 8-bit pixels: a child process started with the pinned
    environment of fusion_bench.numerics (set before NumPy is imported) makes the same bytes on every x86-64 CPU.
    """
    import subprocess
    import sys

    from fusion_bench import numerics

    cmd = [sys.executable, "-m", "fusion_bench.data.synthetic", name, str(folder), json.dumps(params)]
    env = numerics.pinned_environment() if numerics.can_pin() else dict(os.environ)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join(out.stderr.strip().splitlines()[-10:])
        raise DatasetError(f"{name}: generating the synthetic data into {folder} failed (exit {out.returncode}):"
                           f"\n{tail}")


def ensure_generated(name: str, root: str | Path | None = None, **params: Any) -> Path:
    """Return the folder holding the synthetic dataset `name`, generating it if needed.

    root=None: the versioned cache folder (see :func:`cache_dir`); it is generated when absent and
    regenerated, with a warning naming the path, when its manifest is missing or does not match the files.
    An explicit root is generated when the folder is absent or empty; otherwise it must hold a generated
    dataset (its manifest is verified; a damaged one is regenerated, a non-empty folder without a manifest
    raises DatasetError rather than being overwritten). `params` (``synthetic-av`` only: audio_snr,
    visual_snr) pick the generated variant; None means the default, and for an explicit existing root a
    value that differs from the recorded one raises ValueError.
    """
    if name not in _SPECS:
        raise ValueError(f"unknown synthetic dataset {name!r}; valid: {', '.join(sorted(_SPECS))}")
    spec = _SPECS[name]
    unknown = set(params) - set(spec.defaults)
    if unknown:
        raise TypeError(f"{name}: unknown generator parameter(s) {sorted(unknown)}; valid: {sorted(spec.defaults)}")
    given = {k: float(v) for k, v in params.items() if v is not None}
    full = {**spec.defaults, **given}
    if root is None:
        target = cache_dir() / "synthetic" / name / f"v{GENERATOR_VERSION}"
        if spec.defaults:
            target = target / "-".join(f"{k}={full[k]:g}" for k in sorted(full))
    else:
        target = Path(root).expanduser()
    if target.exists() and not target.is_dir():
        raise DatasetError(f"{name}: {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        problems = verify_manifest(target, name)
        manifest = read_manifest(target)
        if manifest is None and root is not None:
            raise DatasetError(f"{name}: {target} is not empty and has no {MANIFEST}, so it is not a generated "
                               f"{name} dataset; refusing to overwrite it. Pass an absent or empty folder.")
        if not problems:
            recorded = manifest.get("params", {})
            mismatch = {k: (recorded.get(k), v) for k, v in (given if root is not None else full).items()
                        if recorded.get(k) != v}
            if not mismatch:
                return target
            if root is not None:
                raise ValueError(f"{name} at {target} was generated with {recorded}, not {mismatch} "
                                 "(recorded, requested); use another root")
            problems = [f"{target / MANIFEST}: parameters {recorded} != {full}"]
        log.warning("%s: generated data at %s is corrupt or incomplete (%s%s); regenerating", name, target,
                    "; ".join(problems[:3]), f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    else:
        log.info("%s: generating synthetic data into %s", name, target)
    _generate_into(target, spec, full)
    return target


# ================================================================================================
# small helpers shared by the generators
# ================================================================================================


def _save_png(path: Path, array: np.ndarray) -> None:
    """float [0, 1] HxW / HxWxC (rounded to 8 bit) or uint8 array -> PNG (deterministic bytes)."""
    if array.dtype != np.uint8:
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Like numpy.savez, but with fixed zip timestamps so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std low-frequency noise (Gaussian-filtered white noise)."""
    field = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _blur_rgb(image: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")


# ================================================================================================
# synthetic-ivif: road scenes, visible + thermal
# ================================================================================================

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
        illum = rng.uniform(0.03, 0.05) * (1 + 0.1 * _smooth_noise(rng, (h, w), 20))
        for _ in range(int(rng.integers(0, 3))):  # weak street-lamp pools
            lx, ly = rng.uniform(0, w), rng.uniform(hz, h)
            illum = illum + 0.03 * np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * rng.uniform(8, 16) ** 2))
    else:
        illum = rng.uniform(0.8, 1.05) * (1 + 0.08 * _smooth_noise(rng, (h, w), 25))
    radiance = refl * illum[..., None] + emis
    gain = float(np.clip(0.3 / radiance.mean(), 1.0, 2.0))  # auto-exposure, capped: nights stay dark
    read = 6e-3 if night else 3e-3  # higher ISO at night
    noisy = radiance + rng.standard_normal(radiance.shape).astype(np.float32) * np.sqrt(
        np.maximum(radiance, 0) * 4e-4 + read**2)
    vis = np.clip(noisy * gain, 0, 1) ** (1 / 2.2)

    # thermal camera: smooth temperature field, blurry optics, column fixed-pattern + white noise
    temp = temp + 0.025 * _smooth_noise(rng, (h, w), 12)
    ir = gaussian_filter(temp, 1.0, mode="nearest")
    ir = ir + 0.012 * rng.standard_normal((1, w)).astype(np.float32) + 0.015 * rng.standard_normal((h, w))
    return {"vis": vis, "ir": np.clip(ir, 0, 1), "mask": cls, "boxes": boxes, "labels": labels}


def _generate_ivif(root: Path, params: dict[str, Any]) -> None:
    index = 0
    for split_no, (split, count) in enumerate(IVIF_SPLITS.items()):
        for i in range(count):
            rng = _rng(IVIF_SEED, split_no, i)
            night = bool(i % 2)
            scene = _ivif_scene(rng, night)
            stem = f"{index:05d}{'N' if night else 'D'}"
            index += 1
            _save_png(root / split / "vis" / f"{stem}.png", scene["vis"])
            _save_png(root / split / "ir" / f"{stem}.png", scene["ir"])
            _save_png(root / split / "mask" / f"{stem}.png", scene["mask"])
            annotation = {"night": night, "boxes": scene["boxes"], "labels": scene["labels"],
                          "box_class_names": list(IVIF_BOX_CLASSES)}
            path = root / split / "boxes" / f"{stem}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(annotation) + "\n")


# ================================================================================================
# synthetic-mfif / synthetic-meif: crops of the scikit-image photographs
# ================================================================================================

CROP = 128
PHOTO_SPLITS: dict[str, tuple[tuple[str, int], ...]] = {
    "train": (("astronaut", 10), ("coffee", 10), ("rocket", 10), ("immunohistochemistry", 9), ("retina", 9)),
    "val": (("chelsea", 8),),
    "test": (("motorcycle_left", 6), ("motorcycle_right", 6)),
}
"""Which scikit-image photograph feeds which split (and how many crops), so no photograph is in two splits.
All load offline (no pooch download); motorcycle_left/right are the two views of `stereo_motorcycle`."""
MFIF_SEED = 2002
MEIF_SEED = 3003


def _load_photo(name: str) -> np.ndarray:
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


def _photo_crops(rng: np.random.Generator, photo: np.ndarray, count: int) -> list[np.ndarray]:
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
            field = _smooth_noise(rng, (CROP, CROP), rng.uniform(12, 20))
            hard = field > np.quantile(field, rng.uniform(0.35, 0.65))
        soft = gaussian_filter(hard.astype(np.float32), rng.uniform(1.0, 2.5), mode="nearest")
        if 0.25 <= soft.mean() <= 0.75:
            return soft
    return (xx > CROP / 2).astype(np.float32)


def _generate_photo_pairs(root: Path, seed: int, make_pair: Callable[[np.random.Generator, np.ndarray], dict]) -> None:
    for split_no, (split, photos) in enumerate(PHOTO_SPLITS.items()):
        for photo_no, (photo_name, count) in enumerate(photos):
            photo = _load_photo(photo_name)
            crops = _photo_crops(_rng(seed, split_no, photo_no), photo, count)
            for j, crop in enumerate(crops):
                images = make_pair(_rng(seed, split_no, photo_no, j + 1), crop)
                for key, image in images.items():
                    _save_png(root / split / key / f"{photo_name}_{j:02d}.png", image)


def _mfif_pair(rng: np.random.Generator, sharp: np.ndarray) -> dict[str, np.ndarray]:
    """Complementary defocus: a is blurred outside the focus region, b inside (Gaussian, sigma 1.5-3)."""
    focus = _focus_map(rng)[..., None]
    blur_a = _blur_rgb(sharp, rng.uniform(1.5, 3.0))
    blur_b = _blur_rgb(sharp, rng.uniform(1.5, 3.0))
    a = focus * sharp + (1 - focus) * blur_a
    b = (1 - focus) * sharp + focus * blur_b
    return {"a": a, "b": b, GT: sharp, "focus": focus[..., 0]}


def _meif_pair(rng: np.random.Generator, reference: np.ndarray) -> dict[str, np.ndarray]:
    """Exposure bracket: radiance x 2^EV (EV in [-2.5, -1] / [+1, +2.5]), shot/read noise, black level, clipping,
    gamma 2.2: a loses its shadows to noise and the black level, b saturates its highlights."""
    radiance = reference.astype(np.float64) ** 2.2
    black = 0.006  # sensor black level: the darkest shadows of the under-exposed shot clip to 0
    out = {}
    for key, (lo, hi) in (("a", (-2.5, -1.0)), ("b", (1.0, 2.5))):
        signal = radiance * 2.0 ** rng.uniform(lo, hi)
        noise = rng.standard_normal(signal.shape) * np.sqrt(np.minimum(signal, 1.0) * 2e-4 + 2e-3**2)
        out[key] = np.clip((signal + noise - black) / (1.0 - black), 0.0, 1.0) ** (1 / 2.2)
    out[GT] = reference
    return out


def _generate_mfif(root: Path, params: dict[str, Any]) -> None:
    _generate_photo_pairs(root, MFIF_SEED, _mfif_pair)


def _generate_meif(root: Path, params: dict[str, Any]) -> None:
    _generate_photo_pairs(root, MEIF_SEED, _meif_pair)


# ================================================================================================
# synthetic-av: spectrogram + frame classification with controllable modality imbalance
# ================================================================================================

AV_CLASSES = 6
AV_AUDIO_SHAPE = (1, 64, 48)
AV_FRAME_SHAPE = (3, 32, 32)
AV_SPLITS = {"train": 600, "val": 120, "test": 240}
AV_SEED = 4004
AV_DEFAULTS = {"audio_snr": 2.0, "visual_snr": 1.5}
"""Nearest-class-mean accuracy at these defaults: audio ~0.92, frames ~0.38 (chance 0.17)."""


def _av_audio(rng: np.random.Generator, target: np.ndarray, snr: float) -> np.ndarray:
    """Log-power spectrograms: class-specific harmonic stack (pitch, contour, formant) over coloured noise.

    Nuisances per sample: pitch jitter, onset, duration, loudness; noise power is exponential (as in a
    periodogram) around a pink profile. `snr` = peak harmonic power / mean noise power.
    """
    n = len(target)
    _, nf, nt = AV_AUDIO_SHAPE
    f = np.arange(nf, dtype=np.float32)[None, :, None]
    t = np.arange(nt, dtype=np.float32)[None, None, :]
    pitch = np.array([4.0, 4.0, 5.5, 5.5, 7.0, 7.0])[target]
    slope = np.array([0.06, -0.06, 0.06, -0.06, 0.06, -0.06])[target]
    formant = np.array([14.0, 30.0, 24.0, 12.0, 34.0, 20.0])[target]
    f0 = (pitch * rng.uniform(0.88, 1.12, n))[:, None, None]
    onset = rng.uniform(0, 14, n)[:, None, None]
    length = rng.uniform(22, 34, n)[:, None, None]
    rel = (t - onset) / length
    envelope = np.clip(np.sin(np.pi * np.clip(rel, 0, 1)), 0, 1) ** 0.5
    contour = f0 * (1 + slope[:, None, None] * (t - onset - length / 2) / 4)
    power = np.zeros((n, nf, nt), np.float32)
    for k in range(1, 10):  # harmonics (loop over 9 harmonics, vectorised over samples and bins)
        centre = k * contour
        weight = np.exp(-((centre - formant[:, None, None]) ** 2) / (2 * 9.0**2))
        power += weight * np.exp(-((f - centre) ** 2) / (2 * 0.8**2))
    power *= envelope * rng.uniform(0.7, 1.3, n)[:, None, None]
    profile = 1.0 / (1.0 + f / 12.0)
    noise = rng.exponential(1.0, (n, nf, nt)) * profile * rng.uniform(0.8, 1.25, n)[:, None, None]
    spec = np.log(snr * power + noise + 1e-3)
    return ((spec + 1.0) / 3.0).astype(np.float16)[:, None]


def _av_frames(rng: np.random.Generator, target: np.ndarray, snr: float) -> np.ndarray:
    """Frames: class-specific shape and hue (neighbouring classes share similar hues) over clutter and noise.

    Nuisances per sample: position, size, hue jitter, background clutter; `snr` scales the shape contrast
    relative to the pixel noise.
    """
    n = len(target)
    _, s, _ = AV_FRAME_SHAPE
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    cx, cy = (s / 2 + rng.uniform(-7, 7, (2, n)))[:, :, None, None]
    r = rng.uniform(6, 10, n)[:, None, None]
    u, v = (xx - cx) / r, (yy - cy) / r
    shapes = np.stack([
        u**2 + v**2 < 1,  # disc
        (np.abs(u) < 0.8) & (np.abs(v) < 0.8),  # square
        (v < 0.8) & (v > -0.9 + 1.8 * np.abs(u)),  # triangle
        ((np.abs(u) < 0.3) | (np.abs(v) < 0.3)) & (np.abs(u) < 1) & (np.abs(v) < 1),  # cross
        (u**2 + v**2 < 1) & (u**2 + v**2 > 0.4),  # ring
        (np.mod(v * 2.5, 1.0) < 0.5) & (np.abs(u) < 1) & (np.abs(v) < 1),  # bars
    ], axis=1)
    mask = shapes[np.arange(n), target].astype(np.float32)
    mask = gaussian_filter(mask, (0, 0.6, 0.6))
    hue = (target / AV_CLASSES + rng.normal(0, 0.07, n)) % 1.0
    colour = np.array([colorsys.hsv_to_rgb(hh, 0.9, 1.0) for hh in hue], np.float32) - 0.5  # n x 3
    clutter = np.stack([_smooth_noise(rng, (3, s, s), 4) for _ in range(n)]) * 0.08
    frames = 0.5 + clutter + 0.1 * snr * colour[:, :, None, None] * mask[:, None]
    frames = frames + 0.12 * rng.standard_normal(frames.shape)
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def _generate_av(root: Path, params: dict[str, Any]) -> None:
    for split_no, (split, count) in enumerate(AV_SPLITS.items()):
        rng = _rng(AV_SEED, split_no)
        target = np.tile(np.arange(AV_CLASSES), count // AV_CLASSES)
        target = target[rng.permutation(len(target))].astype(np.int64)
        audio = _av_audio(_rng(AV_SEED, split_no, 1), target, params["audio_snr"])
        frames = _av_frames(_rng(AV_SEED, split_no, 2), target, params["visual_snr"])
        _save_npz(root / f"{split}.npz", audio=audio, frames=frames, target=target)
    meta = {"class_names": [f"c{c}" for c in range(AV_CLASSES)], **params}
    (root / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


# ================================================================================================
# generator table
# ================================================================================================


@dataclass(frozen=True)
class _Spec:
    name: str
    generate: Callable[[Path, dict[str, Any]], None]
    defaults: dict[str, float]


_SPECS: dict[str, _Spec] = {
    "synthetic-ivif": _Spec("synthetic-ivif", _generate_ivif, {}),
    "synthetic-mfif": _Spec("synthetic-mfif", _generate_mfif, {}),
    "synthetic-meif": _Spec("synthetic-meif", _generate_meif, {}),
    "synthetic-av": _Spec("synthetic-av", _generate_av, dict(AV_DEFAULTS)),
}

# ================================================================================================
# datasets
# ================================================================================================


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


class _PhotoPairs(FusionDataset):
    """Shared scan for the photograph-based pairs: <root>/<split>/{a,b,gt}/<photo>_<k>.png."""

    modalities = ("a", "b")
    load_modes = {"a": "RGB", "b": "RGB", GT: "RGB"}
    has_reference = True

    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        self.require_dirs(*(f"{self.split}/{k}" for k in ("a", "b", GT)))
        base = self.root / self.split
        return pair_by_stem({k: base / k for k in ("a", "b", GT)})


class SyntheticMFIF(_PhotoPairs):
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


class SyntheticMEIF(_PhotoPairs):
    """Multi-exposure pairs from scikit-image photographs: a under-exposed, b over-exposed, gt the crop."""

    name = "synthetic-meif"
    task = Task.MEIF
    expected_tree = """\
<root>/
  manifest.json
  {train,val,test}/
    a/<photo>_<k>.png   under-exposed (EV -2.5..-1) RGB 128x128
    b/<photo>_<k>.png   over-exposed (EV +1..+2.5) RGB 128x128
    gt/<photo>_<k>.png  reference crop
photos: train astronaut, coffee, rocket, immunohistochemistry, retina; val chelsea; test stereo motorcycle
"""


class SyntheticAV(FusionDataset):
    """6-class audio-visual classification: audio 1x64x48 log-spectrogram, frames 3x32x32, target long scalar.

    audio_snr / visual_snr, when given, must match the values the data at `root` were generated with
    (recorded in meta.json); a mismatch is reported as a problem.
    """

    name = "synthetic-av"
    task = Task.CLASSIFICATION
    modalities = (AUDIO, FRAMES)
    class_names = tuple(f"c{c}" for c in range(AV_CLASSES))
    expected_tree = """\
<root>/
  manifest.json
  meta.json                {"audio_snr": .., "visual_snr": .., "class_names": [...]}
  {train,val,test}.npz     audio float16 Nx1x64x48, frames uint8 Nx3x32x32, target int64 N
"""

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable[[Sample], Sample] | None = None,
                 *, strict: bool = True, audio_snr: float | None = None, visual_snr: float | None = None):
        self.requested = {"audio_snr": audio_snr, "visual_snr": visual_snr}
        self._arrays: dict[str, np.ndarray] | None = None
        super().__init__(root, split, transforms, strict=strict)

    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        path = self.root / f"{self.split}.npz"
        if not path.is_file():
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, [str(path)])
        problems = []
        try:
            meta = json.loads((self.root / "meta.json").read_text())
        except (OSError, ValueError) as err:
            meta = {}
            problems.append(Problem(str(self.root / "meta.json"), f"unreadable: {err}"))
        for key, value in self.requested.items():
            if value is not None and meta and meta.get(key) != float(value):
                problems.append(Problem(str(self.root / "meta.json"),
                                        f"generated with {key}={meta.get(key)}, requested {value}"))
        try:
            with np.load(path) as npz:
                missing = {AUDIO, FRAMES, TARGET} - {Path(f).stem for f in npz.files}
                if missing:
                    return [], problems + [Problem(str(path), f"arrays missing: {sorted(missing)}")]
                target = npz[TARGET]
                shapes = {k: npz[k].shape for k in (AUDIO, FRAMES)}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            return [], problems + [Problem(str(path), f"cannot read: {err}")]
        n = len(target)
        for key, shape in shapes.items():
            if shape[0] != n:
                problems.append(Problem(str(path), f"{key} has {shape[0]} items, target has {n}"))
        samples = [SampleRef(f"{self.split}_{i:04d}", {"npz": path}, {"index": i, "target": int(target[i])})
                   for i in range(n)]
        return samples, problems

    def _load_arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            path = self.root / f"{self.split}.npz"
            try:
                with np.load(path) as npz:
                    self._arrays = {k: npz[k] for k in (AUDIO, FRAMES, TARGET)}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
                raise DatasetIntegrityError(self.name, self.root, [Problem(str(path), f"cannot read: {err}")]) from err
        return self._arrays

    def _load(self, ref: SampleRef) -> Sample:
        arrays = self._load_arrays()
        i = ref.extra["index"]
        return {
            NAME: ref.name,
            AUDIO: torch.from_numpy(arrays[AUDIO][i].astype(np.float32)),
            FRAMES: torch.from_numpy(arrays[FRAMES][i].astype(np.float32) / 255.0),
            TARGET: torch.tensor(int(arrays[TARGET][i]), dtype=torch.int64),
        }

    def _validate(self, sample: Sample, ref: SampleRef) -> list[Problem]:
        where = f"{ref.files['npz']}[{ref.extra['index']}]"
        problems = []
        for key, shape in ((AUDIO, AV_AUDIO_SHAPE), (FRAMES, AV_FRAME_SHAPE)):
            if tuple(sample[key].shape) != shape:
                problems.append(Problem(where, f"{key} shape {tuple(sample[key].shape)}, expected {shape}"))
            if not torch.isfinite(sample[key]).all():
                problems.append(Problem(where, f"{key} has non-finite values"))
        if not 0 <= int(sample[TARGET]) < len(self.class_names):
            problems.append(Problem(where, f"target {int(sample[TARGET])} outside 0..{len(self.class_names) - 1}"))
        return problems


# ================================================================================================
# datamodules
# ================================================================================================


class _SyntheticDataModule(PairedDataModule):
    """A PairedDataModule whose root is generated on demand (see :func:`ensure_generated`)."""

    @classmethod
    def resolve_root(cls, root: str | Path | None) -> Path:
        """root=None: the versioned cache folder, generated or verified (and regenerated if damaged).

        An explicit root is generated when absent or empty, else verified against its manifest.
        """
        return ensure_generated(cls.dataset_class.name, root)


class SyntheticIVIFDataModule(_SyntheticDataModule):
    """``synthetic-ivif``: 64/16/16 road scenes (ir, vis, mask, boxes), 128x160; see :class:`SyntheticIVIF`."""

    dataset_class = SyntheticIVIF


class SyntheticMFIFDataModule(_SyntheticDataModule):
    """``synthetic-mfif``: 48/8/12 multi-focus pairs (a, b, gt), 128x128; see :class:`SyntheticMFIF`."""

    dataset_class = SyntheticMFIF


class SyntheticMEIFDataModule(_SyntheticDataModule):
    """``synthetic-meif``: 48/8/12 exposure pairs (a=under, b=over, gt), 128x128; see :class:`SyntheticMEIF`."""

    dataset_class = SyntheticMEIF


class SyntheticAVDataModule(_SyntheticDataModule):
    """``synthetic-av``: 600/120/240 (audio, frames, target) items; see :class:`SyntheticAV`.

    audio_snr / visual_snr pick the generated variant (each pair of values has its own cache folder).
    Audio and frames have fixed, unrelated sizes, so no crop or flip is applied (crop_size is rejected, flip is
    accepted for interface compatibility and ignored).
    """

    dataset_class = SyntheticAV

    def __init__(self, root: str | Path | None = None, batch_size: int = 4, num_workers: int = 0,
                 crop_size: int | tuple[int, int] | None = None, flip: bool = False, seed: int = 0,
                 val_fraction: float = 0.0, audio_snr: float | None = None, visual_snr: float | None = None):
        if crop_size:
            raise ValueError("synthetic-av: crop_size is not supported (audio and frames have fixed sizes)")
        root = ensure_generated(self.dataset_class.name, root, audio_snr=audio_snr, visual_snr=visual_snr)
        super().__init__(root, batch_size=batch_size, num_workers=num_workers, crop_size=None, flip=flip,
                         seed=seed, val_fraction=val_fraction, audio_snr=audio_snr, visual_snr=visual_snr)

    def dataset(self, split: str, train_transforms: bool = False) -> FusionDataset:
        return self.dataset_class(self.root, split, **self.dataset_kwargs)


if __name__ == "__main__":  # the child process of _generate_pinned: <name> <folder> <params as JSON>
    import sys

    _SPECS[sys.argv[1]].generate(Path(sys.argv[2]), json.loads(sys.argv[3]))
