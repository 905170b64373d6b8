"""Dataset contract: `(root, split, transforms)`, integrity checked first, every problem named with its path.

Subclasses describe their layout with class attributes and implement `_scan` (a structural pass that
pairs files without decoding them). Loading, validation, `check` (the `data check` report), the split
hash and `plot` are shared.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from fusion_bench.data.io import depth_of, is_image_file, read_image, read_mask, stored_mode
from fusion_bench.errors import DatasetError, DatasetIntegrityError, DatasetNotFoundError, ImageReadError
from fusion_bench.types import BOXES, IGNORE_INDEX, LABELS, MASK, NAME, Task

Sample = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """One integrity problem, tied to the file (or folder) it concerns."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class SampleRef:
    """Where one sample lives on disk: a name and a file per key (modality, mask, gt, annotation)."""

    name: str
    files: dict[str, Path]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckReport:
    """What `fusion-bench data check` prints: counts, sizes, channels, label range, problems, variant."""

    dataset: str
    root: Path
    variant: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, Counter] = field(default_factory=dict)
    channels: dict[str, Counter] = field(default_factory=dict)
    label_values: set[int] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    split_hashes: dict[str, str] = field(default_factory=dict)
    stored: dict[str, Counter] = field(default_factory=dict)  # key -> Counter of stored PIL modes of its files
    extra: dict[str, Any] = field(default_factory=dict)  # scratch space for the check hooks

    @property
    def ok(self) -> bool:
        return not self.problems

    def _stored_text(self, key: str) -> str:
        """'; stored 16-bit I;16 (3), 8-bit L (1); 16-bit scaled by 1/65535' (empty when nothing was tallied)."""
        modes = self.stored.get(key)
        if not modes:
            return ""
        text = "; stored " + ", ".join(f"{depth_of(m)} {m} ({c})" for m, c in modes.most_common())
        depths = {depth_of(m) for m in modes}
        if "16-bit" in depths or "32-bit int" in depths:
            text += "; 16-bit values scaled by 1/65535"
        if "32-bit float" in depths:
            text += "; float values read as stored (must be in [0, 1])"
        return text

    def format(self) -> str:
        lines = [f"dataset {self.dataset} at {self.root}"]
        if self.variant:
            lines.append(f"layout variant: {self.variant}")
        for split, n in self.counts.items():
            lines.append(f"  {split}: {n} samples (split hash {self.split_hashes.get(split, '-')})")
        for key, sizes in self.sizes.items():
            seen = ", ".join(f"{h}x{w} ({c})" for (h, w), c in sizes.most_common(5))
            chans = ", ".join(f"{ch}ch ({c})" for ch, c in self.channels[key].most_common())
            lines.append(f"  {key}: sizes {seen}; channels {chans}{self._stored_text(key)}")
        for key in self.stored:
            if key not in self.sizes:  # e.g. a 4-channel file split into two keys (MFNet's rgbt)
                lines.append(f"  {key} files:{self._stored_text(key)[1:]}")
        if self.label_values:
            lines.append(f"  label values: {min(self.label_values)}..{max(self.label_values)}"
                         f" ({len(self.label_values)} distinct)")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems]
        else:
            lines.append("clean: no problems found")
        return "\n".join(lines)


class FusionDataset(Dataset):
    """Base dataset. Samples are dicts of named tensors (see fusion_bench.types).

    Class attributes a subclass sets:
      name, task, modalities (the ordered pair (a, b) a fusion method receives), splits,
      load_modes (key -> "L" | "RGB" | "RGBA" | "mask" | None) used by the default loader,
      class_names (segmentation, index order), box_class_names (detection), has_reference, expected_tree.
    """

    name: ClassVar[str] = "dataset"
    task: ClassVar[Task] = Task.IVIF
    modalities: ClassVar[tuple[str, str]] = ("ir", "vis")
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    load_modes: ClassVar[dict[str, str | None]] = {}
    class_names: ClassVar[tuple[str, ...] | None] = None
    box_class_names: ClassVar[tuple[str, ...] | None] = None
    ignore_index: ClassVar[int] = IGNORE_INDEX
    has_reference: ClassVar[bool] = False
    expected_tree: ClassVar[str] = ""

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable[[Sample], Sample] | None = None,
                 *, strict: bool = True):
        self.root = Path(root)
        if split not in self.splits:
            raise ValueError(f"{self.name}: unknown split {split!r}; valid splits: {', '.join(self.splits)}")
        self.split = split
        self.transforms = transforms
        self._check_root()
        self.samples, self.problems = self._scan()
        if strict and self.problems:
            raise DatasetIntegrityError(self.name, self.root, self.problems)

    # -- to implement ------------------------------------------------------------------------------
    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        """Index the split without decoding images; return samples and structural problems."""
        raise NotImplementedError

    # -- shared behaviour --------------------------------------------------------------------------
    @property
    def variant(self) -> str | None:
        """Which layout variant was found (for datasets that accept several)."""
        return None

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, ["the root folder itself"])
        if not any(self.root.iterdir()):
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, ["everything: the folder is empty"])

    def require_dirs(self, *relative: str) -> None:
        """Raise DatasetNotFoundError listing every required sub-folder that is absent."""
        missing = [r for r in relative if not (self.root / r).is_dir()]
        if missing:
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, [str(self.root / m) for m in missing])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        ref = self.samples[index]
        sample = self._load(ref)
        problems = self._validate(sample, ref)
        if problems:
            raise DatasetIntegrityError(self.name, self.root, problems)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _load(self, ref: SampleRef) -> Sample:
        """Default loader: read each file with its load mode; errors name the file."""
        sample: Sample = {NAME: ref.name}
        for key, path in ref.files.items():
            mode = self.load_modes.get(key, "RGB")
            try:
                sample[key] = read_mask(path) if mode == "mask" else read_image(path, mode)
            except ImageReadError as err:
                raise DatasetIntegrityError(self.name, self.root, [Problem(str(path), str(err))]) from err
        return sample

    def _validate(self, sample: Sample, ref: SampleRef) -> list[Problem]:
        """Same spatial size across image keys; mask values within the classes; box labels in range."""
        problems: list[Problem] = []
        sizes = {k: tuple(v.shape[-2:]) for k, v in sample.items()
                 if isinstance(v, torch.Tensor) and v.ndim in (2, 3) and k not in (BOXES, LABELS)}
        if len(set(sizes.values())) > 1:
            where = ", ".join(f"{k} {h}x{w} ({ref.files.get(k, ref.name)})" for k, (h, w) in sizes.items())
            problems.append(Problem(str(ref.files.get(self.modalities[0], ref.name)), f"size mismatch: {where}"))
        if MASK in sample and self.class_names is not None:
            values = torch.unique(sample[MASK])
            bad = [int(v) for v in values if not (0 <= v < len(self.class_names) or v == self.ignore_index)]
            if bad:
                problems.append(Problem(str(ref.files.get(MASK, ref.name)),
                                        f"label values {bad} outside 0..{len(self.class_names) - 1} "
                                        f"(and ignore {self.ignore_index})"))
        if LABELS in sample and self.box_class_names is not None:
            labels = sample[LABELS]
            bad = sorted({int(v) for v in labels if not 0 <= v < len(self.box_class_names)})
            if bad:
                problems.append(Problem(str(ref.extra.get("annotation", ref.name)),
                                        f"box class ids {bad} outside 0..{len(self.box_class_names) - 1}"))
        return problems

    def split_hash(self) -> str:
        """Short sha256 over the sorted sample names of this split (goes into every result row)."""
        digest = hashlib.sha256("\n".join(sorted(s.name for s in self.samples)).encode()).hexdigest()
        return digest[:16]

    @classmethod
    def available_splits(cls, root: str | Path, **options: Any) -> tuple[str, ...]:
        """The splits present at `root` (layouts with fewer splits override this)."""
        return cls.splits

    @classmethod
    def check(cls, root: str | Path, **options: Any) -> CheckReport:
        """Decode every sample of every available split and report all problems instead of raising.

        `options` are the dataset's keyword arguments (layout, subset, ...). Subclasses add to the report
        through the `_check_files` (per sample, before decoding) and `_finish_check` hooks.
        """
        report = CheckReport(dataset=cls.name, root=Path(root))
        try:
            splits = cls.available_splits(root, **options)
        except DatasetError as err:
            report.problems.append(Problem(str(root), _summary(err)))
            return report
        datasets = []
        for split in splits:
            try:
                ds = cls(root, split, strict=False, **options)
            except DatasetError as err:
                report.problems.append(Problem(str(root), f"split {split}: {_summary(err)}"))
                continue
            datasets.append(ds)
            report.variant = report.variant or ds.variant
            report.counts[split] = len(ds)
            report.split_hashes[split] = ds.split_hash()
            report.problems.extend(ds.problems)
            for ref in ds.samples:
                ds._check_files(ref, report)
                for key, path in ref.files.items():
                    if key != MASK and ds.load_modes.get(key) != "mask" and is_image_file(Path(path)):
                        report.stored.setdefault(key, Counter())[stored_mode(path)] += 1
                try:
                    sample = ds._load(ref)
                except DatasetIntegrityError as err:
                    report.problems.extend(err.problems)
                    continue
                except DatasetError as err:
                    report.problems.append(Problem(ref.name, str(err)))
                    continue
                report.problems.extend(ds._validate(sample, ref))
                _tally(sample, report)
        report.problems = list(dict.fromkeys(report.problems))
        cls._finish_check(report, datasets)
        return report

    def _check_files(self, ref: SampleRef, report: CheckReport) -> None:
        """Hook: inspect a sample's files before decoding (e.g. their stored image modes)."""

    @classmethod
    def _finish_check(cls, report: CheckReport, datasets: list[FusionDataset]) -> None:
        """Hook: add cross-split findings to the report once every split was read."""

    def plot(self, sample: Sample, prediction: torch.Tensor | None = None, title: str | None = None):
        """Draw the modalities (and mask, boxes, prediction when present) side by side; returns a Figure."""
        from fusion_bench.data.plot import plot_sample

        return plot_sample(sample, self.modalities, self.class_names, self.box_class_names, prediction, title)


def _summary(err: Exception) -> str:
    """The first two lines of an error (what is wrong and which folder), joined."""
    return " ".join(str(err).splitlines()[:2])


def _tally(sample: Sample, report: CheckReport) -> None:
    """Add a decoded sample's sizes, channel counts and label values to the report."""
    for key, value in sample.items():
        if not isinstance(value, torch.Tensor) or key in (BOXES, LABELS):
            continue
        if key == MASK:
            report.label_values.update(int(v) for v in torch.unique(value))
        elif value.ndim == 3:
            report.sizes.setdefault(key, Counter())[tuple(value.shape[-2:])] += 1
            report.channels.setdefault(key, Counter())[int(value.shape[0])] += 1
    if LABELS in sample:
        report.label_values.update(int(v) for v in sample[LABELS])


def image_stems(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    """stem -> image file in a folder (non-images such as Thumbs.db ignored; duplicate stems reported)."""
    stems: dict[str, Path] = {}
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not is_image_file(path):
            continue
        if path.stem in stems:
            problems.append(Problem(str(path), f"duplicate stem {path.stem!r} (also {stems[path.stem].name})"))
            continue
        stems[path.stem] = path
    return stems


def pair_by_stem(dirs: dict[str, Path], names: list[str] | None = None) -> tuple[list[SampleRef], list[Problem]]:
    """Pair image files across folders by file stem.

    Every file without a partner in every other folder is a Problem, as is a stem present twice with
    different extensions. With `names` (a split list) only those stems are used, and a listed stem
    missing from a folder is a Problem.
    """
    problems: list[Problem] = []
    found = {key: image_stems(folder, problems) for key, folder in dirs.items()}
    keys = list(dirs)
    if names is None:
        all_stems = sorted(set().union(*[set(s) for s in found.values()]))
        for stem in all_stems:
            have = [k for k in keys if stem in found[k]]
            if len(have) != len(keys):
                lacking = [str(dirs[k]) for k in keys if k not in have]
                problems.append(Problem(str(found[have[0]][stem]), f"no partner in {', '.join(lacking)}"))
        stems_used = [s for s in all_stems if all(s in found[k] for k in keys)]
    else:
        stems_used = []
        for stem in names:
            lacking = [str(dirs[k]) for k in keys if stem not in found[k]]
            if lacking:
                problems.append(Problem(stem, f"listed in the split file but missing from {', '.join(lacking)}"))
            else:
                stems_used.append(stem)
    return [SampleRef(s, {k: found[k][s] for k in keys}) for s in stems_used], problems


def read_split_file(path: Path) -> list[str]:
    """One sample stem per line (blank lines and `#` comments ignored; extensions stripped)."""
    if not path.is_file():
        raise DatasetError(f"split file {path} not found")
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(Path(line).stem if Path(line).suffix.lower() in (".png", ".jpg", ".bmp") else line)
    return names


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded hold-out of `fraction` of n samples: (train, val) sorted index lists.

    fraction 0 gives (all, []); otherwise round(n * fraction) samples, at least one, are held out, and at least
    one must stay for training (ValueError otherwise).
    """
    if fraction <= 0:
        return list(range(n)), []
    n_val = max(1, round(n * fraction))
    if n_val >= n:
        raise ValueError(f"holding out {fraction:g} of {n} samples leaves none for training")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[n_val:]), sorted(order[:n_val])
