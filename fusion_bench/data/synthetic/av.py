"""`synthetic-av`: a 6-class "audio-visual" classification set (log-spectrogram + small frame) built to show the
modality imbalance of CREMA-D: the generator, the Dataset and the DataModule (each set of parameter values has its
own cache folder).

Design (generator version 3, targets measured on late fusion and the unimodal models only, never on a balancing
method): the six classes form three pairs (0/1, 2/3, 4/5).

- **Audio** (dominant, learned first): one harmonic pattern per *pair* (pitch, contour, formant), at a high SNR. A
  small CNN fits the pair within about 2 epochs, which brings the 6-way cross-entropy from log 6 to about log 2;
  the two classes of a pair have the same audio distribution, so audio alone cannot exceed 0.5.
- **Frames** (slower, carrying what audio lacks): a disc filled with fine stripes whose orientation names the pair
  (horizontal, vertical, diagonal; period 4 px, random phase) and whose hue names the class within its pair (two
  neighbouring hues with per-sample jitter), over clutter and pixel noise. Only the frames tell the two classes of
  a pair apart, and the hue overlap bounds that (about 0.87 even for the ideal observer), so the fused accuracy
  stays well below 1.

In joint training the audio pattern resolves the pair quickly, so the frames encoder only ever receives the
within-pair (hue) gradient: its features carry little about the stripe orientation, and a linear probe of them is
well below the frames-only model's (the imbalance the balancing methods address; methods/av_balance/README.md).
"""

from __future__ import annotations

import colorsys
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from fusion_bench.data.base import FusionDataset, Problem, Sample, SampleRef
from fusion_bench.data.synthetic.common import rng_for, save_npz, smooth_noise
from fusion_bench.data.synthetic.store import Generator, SyntheticDataModule, ensure
from fusion_bench.errors import DatasetIntegrityError, DatasetNotFoundError
from fusion_bench.types import AUDIO, FRAMES, NAME, TARGET, Task

AV_CLASSES = 6


AV_PAIRS = 3
"""Classes 2p and 2p+1 form pair p: they share the audio pattern and the frames' stripe orientation; the hue tells
them apart."""


AV_AUDIO_SHAPE = (1, 64, 48)


AV_FRAME_SHAPE = (3, 32, 32)


AV_SPLITS = {"train": 600, "val": 120, "test": 240}


AV_SEED = 4004


AV_DEFAULTS = {"audio_snr": 4.0, "visual_snr": 4.0}
"""audio_snr: peak harmonic power over the mean noise power; visual_snr: the disc's colour contrast (x 0.1) over the
pixel noise (std 0.12). At these defaults audio separates the pairs almost perfectly and carries nothing within a
pair."""


AV_HUES = (0.55, 0.63)
"""Hue of the striped disc for the first / second class of every pair (HSV hue in [0, 1]); jittered by AV_HUE_JITTER."""


AV_HUE_JITTER = 0.035
"""Std of the per-sample hue jitter: with hues 0.08 apart the ideal within-pair accuracy is Phi(0.04 / 0.035) ~ 0.87."""


def _av_audio(rng: np.random.Generator, pair: np.ndarray, snr: float) -> np.ndarray:
    """Log-power spectrograms: one harmonic stack per pair (pitch, contour, formant) over coloured noise.

    Nuisances per sample: pitch jitter, onset, duration, loudness; noise power is exponential (as in a
    periodogram) around a pink profile. `snr` = peak harmonic power / mean noise power.
    """
    n = len(pair)
    _, nf, nt = AV_AUDIO_SHAPE
    f = np.arange(nf, dtype=np.float32)[None, :, None]
    t = np.arange(nt, dtype=np.float32)[None, None, :]
    pitch = np.array([4.0, 5.5, 7.0])[pair]
    slope = np.array([0.06, -0.06, 0.06])[pair]
    formant = np.array([14.0, 30.0, 22.0])[pair]
    f0 = (pitch * rng.uniform(0.92, 1.08, n))[:, None, None]
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


def _av_frames(rng: np.random.Generator, pair: np.ndarray, within: np.ndarray, snr: float) -> np.ndarray:
    """Frames: a disc of stripes, oriented per pair (horizontal, vertical, diagonal), in a hue per class of the pair,
    over clutter and noise.

    Nuisances per sample: position, size, stripe phase, hue jitter (AV_HUE_JITTER), background clutter, pixel noise;
    `snr` scales the disc's colour contrast relative to the pixel noise.
    """
    n = len(pair)
    _, s, _ = AV_FRAME_SHAPE
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    cx, cy = (s / 2 + rng.uniform(-7, 7, (2, n)))[:, :, None, None]
    r = rng.uniform(6, 10, n)[:, None, None]
    u, v = (xx - cx) / r, (yy - cy) / r
    phase = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    blob = (u**2 + v**2 < 1).astype(np.float32)
    period = 4.0
    patterns = np.stack([
        np.cos(2 * np.pi * yy / period + phase) > 0,  # horizontal stripes
        np.cos(2 * np.pi * xx / period + phase) > 0,  # vertical stripes
        np.cos(2 * np.pi * (xx + yy) / period + phase) > 0,  # diagonal stripes
    ], axis=1).astype(np.float32)
    mask = blob * (0.2 + 0.8 * patterns[np.arange(n), pair])
    mask = gaussian_filter(mask, (0, 0.5, 0.5))
    hue = (np.array(AV_HUES)[within] + rng.normal(0, AV_HUE_JITTER, n)) % 1.0
    colour = np.array([colorsys.hsv_to_rgb(hh, 0.9, 1.0) for hh in hue], np.float32) - 0.5  # n x 3
    clutter = np.stack([smooth_noise(rng, (3, s, s), 4) for _ in range(n)]) * 0.08
    frames = 0.5 + clutter + 0.1 * snr * colour[:, :, None, None] * mask[:, None]
    frames = frames + 0.12 * rng.standard_normal(frames.shape)
    return np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def generate_av(root: Path, params: dict[str, Any]) -> None:
    for split_no, (split, count) in enumerate(AV_SPLITS.items()):
        rng = rng_for(AV_SEED, split_no)
        target = np.tile(np.arange(AV_CLASSES), count // AV_CLASSES)
        target = target[rng.permutation(len(target))].astype(np.int64)
        pair, within = target // 2, target % 2
        audio = _av_audio(rng_for(AV_SEED, split_no, 1), pair, params["audio_snr"])
        frames = _av_frames(rng_for(AV_SEED, split_no, 2), pair, within, params["visual_snr"])
        save_npz(root / f"{split}.npz", audio=audio, frames=frames, target=target)
    meta = {"class_names": [f"c{c}" for c in range(AV_CLASSES)], **params}
    (root / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


AV = Generator("synthetic-av", generate_av, dict(AV_DEFAULTS))


class SyntheticAV(FusionDataset):
    """6-class audio-visual classification: audio 1x64x48 log-spectrogram, frames 3x32x32, target long scalar.

    Classes 2p and 2p+1 share their audio pattern and stripe orientation and differ only in the frames' hue (see the
    module docstring: the imbalance this set is built to show).

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


class SyntheticAVDataModule(SyntheticDataModule):
    """``synthetic-av``: 600/120/240 (audio, frames, target) items; see :class:`SyntheticAV`.

    audio_snr / visual_snr pick the generated variant (each pair of values has its own cache folder).
    Audio and frames have fixed, unrelated sizes, so no crop or flip is applied (crop_size is rejected, flip is
    accepted for interface compatibility and ignored).
    """

    dataset_class = SyntheticAV
    generator = AV

    def __init__(self, root: str | Path | None = None, batch_size: int = 4, num_workers: int = 0,
                 crop_size: int | tuple[int, int] | None = None, flip: bool = False, seed: int = 0,
                 val_fraction: float = 0.0, audio_snr: float | None = None, visual_snr: float | None = None):
        if crop_size:
            raise ValueError("synthetic-av: crop_size is not supported (audio and frames have fixed sizes)")
        root = ensure(self.generator, root, audio_snr=audio_snr, visual_snr=visual_snr)
        super().__init__(root, batch_size=batch_size, num_workers=num_workers, crop_size=None, flip=flip,
                         seed=seed, val_fraction=val_fraction, audio_snr=audio_snr, visual_snr=visual_snr)

    def dataset(self, split: str, train_transforms: bool = False) -> FusionDataset:
        return self.dataset_class(self.root, split, **self.dataset_kwargs)
