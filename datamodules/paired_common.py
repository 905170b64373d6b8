"""Shared helpers for the image-pair datasets (multi-focus, multi-exposure, medical).

Owned by the multi-focus/multi-exposure/medical/audio-visual datamodules (lytro, mfi_whu, mefb, sice, harvard).

Conventions:
- Split lists live in ``datamodules/splits/<name>/<split>.txt`` (one stem per line, ``#`` header). A folder
  ``<root>/fusion_bench_splits/`` holding ``<split>.txt`` files overrides them (fake copies use it to list a
  subset of the real stems; users can use it for a custom split; the split hash changes accordingly).
- Datasets without any split list use :func:`hash_split`: a stem goes to ``test`` when the first 8 hex digits
  of sha256(stem) are divisible by ``HASH_TEST_MODULO`` (8, i.e. about 12.5%), else to ``train``. The rule
  depends on the stem only, so adding or removing other files never moves a sample between splits.
- Pairing is by key (the file stem, optionally normalised by ``key_fn``); every file without its partner is
  a Problem naming the file; a split list naming a missing sample is a Problem naming the list.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from fusion_bench.data.base import FusionDataset, Problem, Sample, SampleRef, read_split_file
from fusion_bench.data.io import is_image_file
from fusion_bench.errors import ImageReadError

SPLITS_ROOT = Path(__file__).resolve().parent / "splits"
OVERRIDE_DIR = "fusion_bench_splits"
HASH_TEST_MODULO = 8


def find_dir(parent: Path, *names: str) -> Path | None:
    """The first existing sub-folder of `parent` among `names`, matched case-insensitively (None if absent)."""
    if not parent.is_dir():
        return None
    children = {p.name.lower(): p for p in parent.iterdir() if p.is_dir()}
    for name in names:
        if (parent / name).is_dir():
            return parent / name
        if name.lower() in children:
            return children[name.lower()]
    return None


def image_files(folder: Path) -> list[Path]:
    """Sorted image files of a folder (non-images such as Thumbs.db or ev.txt are ignored)."""
    return sorted(p for p in folder.iterdir() if is_image_file(p)) if folder.is_dir() else []


def hash_split(stem: str) -> str:
    """'test' or 'train' for a stem by the documented sha256 rule (see module docstring)."""
    return "test" if int(hashlib.sha256(stem.encode()).hexdigest()[:8], 16) % HASH_TEST_MODULO == 0 else "train"


def split_list_path(name: str, split: str, root: Path, split_dir: Path | None = None) -> tuple[Path, bool]:
    """(path of the split list to use, whether it is an override): explicit dir > root override > committed."""
    if split_dir is not None:
        return Path(split_dir) / f"{split}.txt", True
    override = root / OVERRIDE_DIR / f"{split}.txt"
    if override.is_file():
        return override, True
    return SPLITS_ROOT / name / f"{split}.txt", False


def strip_suffix(stem: str, suffixes: tuple[str, ...] = ("A", "B", "C")) -> tuple[str, str | None]:
    """Split `lytro-01-A` / `lytro_01_A` / `ICCV_10_B` into (key, 'A'); keys without a suffix give (stem, None)."""
    m = re.match(rf"^(.*?)[-_ ]({'|'.join(suffixes)})$", stem, flags=re.IGNORECASE)
    if m:
        return m.group(1), m.group(2).upper()
    return stem, None


def pair_folders(dirs: dict[str, Path], names: list[str] | None = None, names_source: str = "split list",
                 key_fn: Callable[[str], str] = lambda s: s) -> tuple[list[SampleRef], list[Problem]]:
    """Pair image files across folders by key (`key_fn(stem)`).

    Without `names` every complete key is a sample and every incomplete one a Problem naming the file(s)
    present. With `names` only listed keys are used: a listed key missing everywhere is a Problem naming the
    split list; one present in some folders only is a Problem naming the file without its partner.
    """
    problems: list[Problem] = []
    found: dict[str, dict[str, Path]] = {k: {} for k in dirs}
    for key, folder in dirs.items():
        for path in image_files(folder):
            k = key_fn(path.stem)
            if k in found[key]:
                problems.append(Problem(str(path), f"duplicate key {k!r} (also {found[key][k].name})"))
                continue
            found[key][k] = path
    keys = list(dirs)
    wanted = names if names is not None else sorted(set().union(*[set(v) for v in found.values()]))
    refs: list[SampleRef] = []
    for k in wanted:
        have = [m for m in keys if k in found[m]]
        if len(have) == len(keys):
            refs.append(SampleRef(k, {m: found[m][k] for m in keys}))
        elif have:
            lacking = ", ".join(str(dirs[m]) for m in keys if m not in have)
            for m in have:
                problems.append(Problem(str(found[m][k]), f"no partner in {lacking}"))
        else:
            problems.append(Problem(names_source, f"{k!r} is listed but missing from "
                                                  f"{', '.join(str(d) for d in dirs.values())}"))
    return refs, problems


def pair_by_suffix(files: list[Path], names: list[str] | None = None, names_source: str = "split list",
                   key_fn: Callable[[str], str] = lambda s: s,
                   where: str = "") -> tuple[list[SampleRef], list[Problem]]:
    """Pair `<key>-A.<ext>` with `<key>-B.<ext>` (also `_A`/`_B`) from one list of files into {"a": A, "b": B}.

    A key with only one of A/B is a Problem naming that file; a file without an A/B suffix is a Problem;
    a listed key with neither file is a Problem naming the split list.
    """
    problems: list[Problem] = []
    groups: dict[str, dict[str, Path]] = {}
    for path in files:
        raw, suffix = strip_suffix(path.stem)
        if suffix is None:
            problems.append(Problem(str(path), "file name has no -A/-B (or _A/_B) suffix; cannot pair it"))
            continue
        group = groups.setdefault(key_fn(raw), {})
        if suffix in group:
            problems.append(Problem(str(path), f"duplicate {suffix} image (also {group[suffix].name})"))
            continue
        group[suffix] = path
    wanted = names if names is not None else sorted(groups)
    refs: list[SampleRef] = []
    for k in wanted:
        group = groups.get(k, {})
        if "A" in group and "B" in group:
            refs.append(SampleRef(k, {"a": group["A"], "b": group["B"]}))
            if "C" in group:
                problems.append(Problem(str(group["C"]), "third (C) image of a triple; only A/B pairs are used"))
        elif group:
            for path in group.values():
                problems.append(Problem(str(path), f"no partner: the {'B' if 'A' in group else 'A'} image of "
                                                   f"{k!r} is missing{' in ' + where if where else ''}"))
        else:
            problems.append(Problem(names_source, f"{k!r} is listed but not found{' in ' + where if where else ''}"))
    return refs, problems


def mean_luminance(path: Path) -> float:
    """Mean 8-bit luminance (PIL 'L' = ITU-R 601) of an image, decoded at reduced size where possible."""
    try:
        with Image.open(path) as img:
            img.draft("L", (max(1, img.width // 8), max(1, img.height // 8)))  # JPEG: fast DCT downscale
            img = img.convert("L")
            img.thumbnail((256, 256))
            return float(np.asarray(img, dtype=np.float32).mean())
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from err


class ImagePairDataset(FusionDataset):
    """Base for image-pair datasets whose layout varies between copies.

    Subclasses implement `_scan_variant()` returning (variant description, samples, problems) and may use
    `split_names()` for committed/overridden split lists. `split_dir` (a folder with `<split>.txt`) overrides
    the committed lists.
    """

    split_source: ClassVar[str] = ""  # one line for the README table / check report

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable[[Sample], Sample] | None = None,
                 *, strict: bool = True, split_dir: str | Path | None = None, **options: Any):
        self.split_dir = Path(split_dir) if split_dir is not None else None
        self._variant: str | None = None
        self._options = options
        super().__init__(root, split, transforms, strict=strict)

    @property
    def variant(self) -> str | None:
        return self._variant

    def split_names(self, split: str | None = None) -> tuple[list[str], Path, bool]:
        """(stems of the split list, its path, whether it is an override) for `split` (default: this split)."""
        path, override = split_list_path(self.name, split or self.split, self.root, self.split_dir)
        return read_split_file(path), path, override

    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        variant, refs, problems = self._scan_variant()
        self._variant = variant
        return refs, problems

    def _scan_variant(self) -> tuple[str, list[SampleRef], list[Problem]]:
        raise NotImplementedError


def mfifb_files(root: Path, prefix: str) -> list[Path] | None:
    """Image files of the MFIFB benchmark copy, `input/<prefix>_NN/<prefix>_NN_{A,B}.<ext>` (None if absent)."""
    inp = find_dir(root, "input")
    if inp is None:
        return None
    folders = sorted(p for p in inp.iterdir() if p.is_dir() and p.name.lower().startswith(prefix.lower()))
    if not folders:
        return None
    return [f for d in folders for f in image_files(d)]


def folder_pair(root: Path, options: list[tuple[str, str]]) -> tuple[Path, Path] | None:
    """The first (A, B) folder pair present under root; a half-present pair raises via the caller."""
    for a, b in options:
        da, db = find_dir(root, a), find_dir(root, b)
        if da is not None and db is not None:
            return da, db
    return None


def luminance(image: torch.Tensor) -> float:
    """Mean luminance (ITU-R 601 weights) of a float CxHxW image in [0, 1]."""
    if image.shape[0] == 1:
        return float(image.mean())
    r, g, b = image[0], image[1], image[2]
    return float((0.299 * r + 0.587 * g + 0.114 * b).mean())


def order_by_brightness(sample: Sample, ref: SampleRef, keys: tuple[str, str] = ("a", "b")) -> Sample:
    """Swap sample[keys] (and ref.files) so that keys[0] is the darker (under-exposed) image."""
    a, b = keys
    if luminance(sample[a]) > luminance(sample[b]):
        sample[a], sample[b] = sample[b], sample[a]
        ref.files[a], ref.files[b] = ref.files[b], ref.files[a]
    return sample
