"""Shared audio-visual preprocessing and dataset base for CREMA-D and AVE (OGM-GE-style inputs).

Preprocessing (`prepare`, cached under ``<root>/fusion_bench_cache/``; resumable, atomic per clip):
- audio: decoded to mono float (WAV with `soundfile`, audio tracks of FLV/MP4 with PyAV), resampled to
  22,050 Hz with `scipy.signal.resample_poly` (polyphase FIR, Kaiser window; OGM-GE used librosa's default
  resampler, so values differ slightly), a 3 s window taken (CREMA-D: from the start; AVE: centred on the event
  segment), tiled (repeated) until 3 s long and truncated to 66,150 samples, clipped to [-1, 1], STFT with
  n_fft 512, hop 353, periodic Hann window, centred with zero padding (librosa >= 0.10 defaults), then
  log(|S| + 1e-7) -> 257 x 188 float32, no normalisation. Saved as ``audio/<clip>.npy``.
- frames: the first decoded frame at or after every whole second (1 fps, as OGM-GE's
  video_preprocessing.py), saved as JPEG (quality 95, original size) in ``frames/<clip>/<second:03d>.jpg``.
- a clip whose audio track is empty gets the spectrogram of silence and is listed in ``notes.tsv``; a clip that
  cannot be decoded, or whose container has no audio stream at all, is listed in ``failed.tsv`` (and retried by the
  next `prepare`). Both are reported by the dataset (`variant` / problems), never skipped silently.

Samples: ``audio`` float 1x257x188, ``frames`` float Tx3xSxS in [0, 1] (resized to S x S with S = `frame_size`,
default 224 as OGM-GE, bilinear, but never upsampled: S = min(frame_size, height, width), so the 32x32 fake clips
stay 32x32; no ImageNet normalisation: methods normalise), ``target`` long scalar, ``name``. The train split
flips frames horizontally at random; spatial crops do not apply (crop_size is accepted and ignored).
Frame choice: the clip's 1 fps frames (AVE: those inside the event segment) are cut into `num_frames` equal runs
and the middle frame of each run is taken (OGM-GE takes the first entries of an unsorted directory listing).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.base import FusionDataset, Problem, Sample, SampleRef
from fusion_bench.datamodules.paired_common import split_list_path
from fusion_bench.errors import DatasetError
from fusion_bench.types import AUDIO, FRAMES, NAME, TARGET, Task

SAMPLE_RATE = 22_050
SECONDS = 3
N_FFT = 512
HOP = 353
CACHE_DIR = "fusion_bench_cache"
CACHE_VERSION = 1
PARAMS = {"version": CACHE_VERSION, "sample_rate": SAMPLE_RATE, "seconds": SECONDS, "n_fft": N_FFT, "hop": HOP,
          "fps": 1, "resampler": "scipy.signal.resample_poly", "window": "hann(periodic)", "center_pad": "constant"}


class AudioExtraMissing(ImportError):
    """PyAV / soundfile are not installed."""


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise AudioExtraMissing(f"{module} is needed to decode audio/video: pip install -e '.[audio]' "
                                f"(installs av and soundfile)") from err


class CacheMissingError(DatasetError):
    """The preprocessed cache does not exist yet."""


# -- decoding --------------------------------------------------------------------------------------------
def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate: WAV/FLAC via soundfile, anything else via PyAV's audio track."""
    if path.suffix.lower() in (".wav", ".flac"):
        sf = _require("soundfile")
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data.mean(axis=1), int(rate)
    av = _require("av")
    with av.open(str(path)) as container:
        if not container.streams.audio:  # a missing track is an error; an empty one means silence (prepare_clip)
            raise ValueError(f"no audio stream in {path}")
        stream = container.streams.audio[0]
        rate = stream.rate or SAMPLE_RATE
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return (np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)), int(rate)


def resample(x: np.ndarray, rate_from: int, rate_to: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) from `rate_from` to `rate_to`."""
    if rate_from == rate_to or x.size == 0:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(rate_from, rate_to)
    return resample_poly(x, rate_to // g, rate_from // g).astype(np.float32)


def log_spectrogram(x: np.ndarray, offset_s: float = 0.0) -> np.ndarray:
    """OGM-GE audio input: 3 s at 22,050 Hz starting at `offset_s`, tiled, clipped, log|STFT| -> 257x188."""
    length = SAMPLE_RATE * SECONDS
    start = max(0, min(int(round(offset_s * SAMPLE_RATE)), max(0, x.size - length)))
    x = x[start:start + length]
    x = np.resize(x, length) if x.size else np.zeros(length, np.float32)  # np.resize repeats (tiles) the data
    x = np.clip(x, -1.0, 1.0)
    spec = torch.stft(torch.from_numpy(x.astype(np.float32)), n_fft=N_FFT, hop_length=HOP,
                      window=torch.hann_window(N_FFT), center=True, pad_mode="constant", return_complex=True)
    return torch.log(spec.abs() + 1e-7).numpy().astype(np.float32)


def frames_1fps(path: Path) -> list[Image.Image]:
    """The first decoded frame at or after every whole second of a video (RGB PIL images)."""
    av = _require("av")
    images: list[Image.Image] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        next_second = 0
        for i, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else i / rate
            if t + 1e-6 >= next_second:
                images.append(frame.to_image().convert("RGB"))
                next_second = math.floor(t + 1e-6) + 1
    return images


# -- cache -----------------------------------------------------------------------------------------------
@dataclass
class ClipJob:
    """One clip to prepare: where its audio and video come from and where the audio window starts."""

    clip: str
    audio: Path
    video: Path
    audio_offset_s: float = 0.0


def cache_dir(root: Path) -> Path:
    return Path(root) / CACHE_DIR


def is_done(cache: Path, clip: str) -> bool:
    return (cache / "audio" / f"{clip}.npy").is_file() and (cache / "frames" / clip).is_dir()


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def prepare_clip(cache: Path, job: ClipJob) -> str | None:
    """Write one clip's spectrogram and frames; returns a note (e.g. empty audio) or None."""
    samples, rate = read_audio(job.audio)
    note = None if samples.size else f"empty audio track in {job.audio}: silence used"
    spec = log_spectrogram(resample(samples, rate), job.audio_offset_s)
    images = frames_1fps(job.video)
    if not images:
        raise ValueError(f"no video frames decoded from {job.video}")
    final = cache / "frames" / job.clip
    tmp = cache / "frames" / f".{job.clip}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for second, img in enumerate(images):
        img.save(tmp / f"{second:03d}.jpg", quality=95)
    # audio first, frames dir last: a clip counts as done only when both exist
    _atomic_save_npy(cache / "audio" / f"{job.clip}.npy", spec)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return note


def _read_tsv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if "\t" in line:
            clip, msg = line.split("\t", 1)
            out[clip] = msg
    return out


def _write_tsv(path: Path, rows: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{k}\t{v}\n" for k, v in sorted(rows.items())))
    os.replace(tmp, path)


def run_prepare(root: Path, jobs: Iterable[ClipJob], dataset: str, progress: bool = True) -> Path:
    """Prepare every clip not yet cached (resumable); record failures and notes; returns the cache folder."""
    _require("av")
    cache = cache_dir(root)
    cache.mkdir(parents=True, exist_ok=True)
    meta = cache / "meta.json"
    if meta.is_file():
        found = json.loads(meta.read_text())
        if found != PARAMS:
            raise DatasetError(f"{dataset}: cache {cache} was made with different settings ({found}); delete it "
                               f"and run `fusion-bench data prepare {dataset} --root {root}` again")
    else:
        meta.write_text(json.dumps(PARAMS, indent=1, sort_keys=True) + "\n")
    jobs = list(jobs)
    failed = _read_tsv(cache / "failed.tsv")
    notes = _read_tsv(cache / "notes.tsv")
    todo = [j for j in jobs if not is_done(cache, j.clip)]
    from tqdm.auto import tqdm

    for job in tqdm(todo, desc=f"prepare {dataset}", unit="clip", disable=not progress):
        try:
            note = prepare_clip(cache, job)
        except Exception as err:  # noqa: BLE001 - any decoder error is recorded per clip and reported later
            failed[job.clip] = f"{type(err).__name__}: {err} (sources {job.audio}, {job.video})"
            continue
        failed.pop(job.clip, None)
        if note:
            notes[job.clip] = note
    _write_tsv(cache / "failed.tsv", failed)
    _write_tsv(cache / "notes.tsv", notes)
    if progress:
        done = sum(is_done(cache, j.clip) for j in jobs)
        print(f"{dataset}: {done}/{len(jobs)} clips prepared in {cache}; {len(failed)} failed"
              + (f" (see {cache / 'failed.tsv'})" if failed else ""))
    return cache


# -- dataset ---------------------------------------------------------------------------------------------
class AVClipDataset(FusionDataset):
    """Base for cached audio-visual clip datasets.

    Subclasses implement `_clips()` -> (labelled clips of this split as (clip, class index, source files,
    frame window (first, last) second or None), problems, variant) and `jobs(root)` for `prepare`.
    """

    task = Task.CLASSIFICATION
    modalities = (AUDIO, FRAMES)
    default_num_frames: ClassVar[int] = 1

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable[[Sample], Sample] | None = None,
                 *, strict: bool = True, num_frames: int | None = None, frame_size: int | None = 224,
                 split_dir: str | Path | None = None):
        self.num_frames = num_frames or self.default_num_frames
        self.frame_size = frame_size
        self.split_dir = Path(split_dir) if split_dir is not None else None
        self._variant: str | None = None
        super().__init__(root, split, transforms, strict=strict)

    @property
    def variant(self) -> str | None:
        return self._variant

    @property
    def cache(self) -> Path:
        return cache_dir(self.root)

    def split_list(self, split: str) -> tuple[Path, bool]:
        return split_list_path(self.name, split, self.root, self.split_dir)

    def _clips(self) -> tuple[list[tuple[str, int, dict[str, Path], tuple[int, int] | None]], list[Problem], str]:
        raise NotImplementedError

    @classmethod
    def jobs(cls, root: Path) -> list[ClipJob]:
        raise NotImplementedError

    @classmethod
    def prepare(cls, root: Path, progress: bool = True) -> Path:
        """Decode every clip into the cache under `<root>/fusion_bench_cache/` (resumable; see module doc)."""
        root = Path(root)
        if not root.is_dir():
            from fusion_bench.errors import DatasetNotFoundError

            raise DatasetNotFoundError(cls.name, root, cls.expected_tree, ["the root folder itself"])
        return run_prepare(root, cls.jobs(root), cls.name, progress)

    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        clips, problems, variant = self._clips()
        if not (self.cache / "meta.json").is_file():
            raise CacheMissingError(
                f"{self.name} at {self.root}: the preprocessed cache {self.cache} does not exist. Run "
                f"`fusion-bench data prepare {self.name} --root {self.root}` once (decodes audio and video; "
                f"needs the audio extra: pip install -e '.[audio]')")
        failed = _read_tsv(self.cache / "failed.tsv")
        notes = _read_tsv(self.cache / "notes.tsv")
        refs = []
        for clip, label, sources, window in clips:
            if clip in failed:
                problems.append(Problem(str(next(iter(sources.values()))), f"preparation failed: {failed[clip]}"))
            elif not is_done(self.cache, clip):
                problems.append(Problem(str(next(iter(sources.values()))),
                                        f"not in the cache yet; run `fusion-bench data prepare {self.name} "
                                        f"--root {self.root}`"))
            else:
                refs.append(SampleRef(clip, {AUDIO: self.cache / "audio" / f"{clip}.npy",
                                             FRAMES: self.cache / "frames" / clip},
                                      extra={"target": label, "window": window, **sources}))
        in_split = [c for c, *_ in clips if c in notes]
        if in_split:
            variant += f"; {len(in_split)} clip(s) with empty audio (silence used, see {self.cache / 'notes.tsv'})"
        self._variant = variant
        return refs, problems

    def _pick_frames(self, files: list[Path], window: tuple[int, int] | None) -> list[Path]:
        candidates = files
        if window is not None:
            inside = [f for f in files if f.stem.isdigit() and window[0] <= int(f.stem) < max(window[1], window[0] + 1)]
            candidates = inside or files
        n, t = len(candidates), self.num_frames
        return [candidates[min(n - 1, int((i + 0.5) * n / t))] for i in range(t)]

    def _load(self, ref: SampleRef) -> Sample:
        from fusion_bench.data.io import open_image
        from fusion_bench.errors import DatasetIntegrityError

        where = ref.files[AUDIO]  # the file being read, named in the error
        try:
            audio = torch.from_numpy(np.load(where).astype(np.float32))[None]
            where = ref.files[FRAMES]
            files = sorted(where.glob("*.jpg"))
            if not files:
                raise ValueError(f"no frames in {where}")
            frames = []
            for path in self._pick_frames(files, ref.extra.get("window")):
                where = path
                with open_image(path) as img:
                    img = img.convert("RGB")
                    if self.frame_size:
                        side = min(self.frame_size, img.width, img.height)  # never upsample
                        img = img.resize((side, side), Image.BILINEAR)
                    frames.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1))
        except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DatasetIntegrityError(self.name, self.root, [Problem(str(where), f"cannot read: {err}")]) from err
        return {NAME: ref.name, AUDIO: audio, FRAMES: torch.stack(frames),
                TARGET: torch.tensor(ref.extra["target"], dtype=torch.int64)}

    def plot(self, sample: Sample, prediction: torch.Tensor | None = None, title: str | None = None):
        """Spectrogram, then every frame, side by side (target class and prediction in the title)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        frames = sample[FRAMES] if sample[FRAMES].ndim == 4 else sample[FRAMES][None]
        fig, axes = plt.subplots(1, 1 + len(frames), figsize=(3 * (1 + len(frames)), 3), squeeze=False)
        axes[0][0].imshow(sample[AUDIO][0].cpu().numpy(), origin="lower", aspect="auto", cmap="magma")
        axes[0][0].set_title("audio (log |STFT|)")
        for ax, frame in zip(axes[0][1:], frames):
            ax.imshow(frame.permute(1, 2, 0).clamp(0, 1).cpu().numpy())
            ax.set_title("frame")
        for ax in axes[0]:
            ax.axis("off")
        label = self.class_names[int(sample[TARGET])] if TARGET in sample and self.class_names else ""
        if prediction is not None and self.class_names:
            label += f" (predicted {self.class_names[int(prediction.argmax() if prediction.ndim else prediction)]})"
        fig.suptitle(title or f"{sample.get(NAME, '')}: {label}")
        fig.tight_layout()
        return fig

    def _validate(self, sample: Sample, ref: SampleRef) -> list[Problem]:
        problems = []
        if tuple(sample[AUDIO].shape) != (1, N_FFT // 2 + 1, SAMPLE_RATE * SECONDS // HOP + 1):
            problems.append(Problem(str(ref.files[AUDIO]), f"spectrogram shape {tuple(sample[AUDIO].shape)}; "
                                                           "expected (1, 257, 188)"))
        if self.class_names is not None and not 0 <= int(sample[TARGET]) < len(self.class_names):
            problems.append(Problem(ref.name, f"target {int(sample[TARGET])} outside 0..{len(self.class_names) - 1}"))
        return problems


class RandomFrameFlip:
    """Horizontal flip of the frames only (p = 0.5), the train-time augmentation of OGM-GE minus the crop."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        if float(torch.rand(())) < self.p:
            sample = dict(sample)
            sample[FRAMES] = sample[FRAMES].flip(-1)
        return sample


class AVDataModule(PairedDataModule):
    """DataModule for cached AV clips: crop_size is ignored (audio and frames have fixed sizes), flip = frames."""

    def dataset(self, split: str, train_transforms: bool = False) -> FusionDataset:
        base = super().dataset(split)  # built once per split (PairedDataModule's cache)
        if not (train_transforms and self.flip):
            return base
        view = copy.copy(base)
        view.transforms = RandomFrameFlip()
        return view


def write_tiny_video(path: Path, seconds: float, rng: np.random.Generator, *, size: int = 32, fps: int = 10,
                     video_codec: str = "h264", audio_codec: str | None = "aac", audio_rate: int = 16_000,
                     container_format: str | None = None, tone_hz: float = 440.0) -> Path:
    """A tiny real video file (PyAV): moving colour blocks and, optionally, a sine-tone audio track."""
    av = _require("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format=container_format) as out:
        vs = out.add_stream(video_codec, rate=fps)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        as_ = None
        if audio_codec:
            as_ = out.add_stream(audio_codec, rate=audio_rate)
            as_.layout = "mono"
        base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            img = np.roll(base, i, axis=1)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if as_ is not None:
            n = int(seconds * audio_rate)
            t = np.arange(n) / audio_rate
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            chunk = as_.codec_context.frame_size or 1024
            for s in range(0, n, chunk):
                piece = wave[s:s + chunk]
                frame = av.AudioFrame.from_ndarray(piece[None], format="fltp", layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = s
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
    return path


def lines_of(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file (utf-8, BOM tolerated)."""
    return [ln.strip() for ln in path.read_text(encoding="utf-8-sig", errors="replace").splitlines() if ln.strip()]

