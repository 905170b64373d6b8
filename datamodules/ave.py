"""AVE audio-visual event dataset (Tian et al., ECCV 2018): 4,143 ten-second YouTube clips, 28 event classes.

Tree (the dataset zip, FLAG: structure from third-party loaders): `AVE_Dataset/AVE/<videoID>.mp4`,
`AVE_Dataset/Annotations.txt`, `trainSet.txt`, `valSet.txt`, `testSet.txt` (the official split lists). Each line is
`Category&VideoID&Quality&StartTime&EndTime` (split only on `&`: class names contain commas; times are whole
seconds of the event segment). A header line (non-numeric times) is skipped. Root = `AVE_Dataset/` or its parent.
Classes: the 28 categories in alphabetical order (index = position in `class_names`).
A video listed twice in one split list keeps its first line (the count of such lines is shown in `variant`).
Inputs come from the cache written by `AVEDataset.prepare` (`fusion-bench data prepare ave --root DIR`): audio
= the 3 s window centred on the event segment of the video's first annotation line, frames at 1 fps over the whole
clip; a sample takes `num_frames` (default 3, as OGM-GE) evenly spaced frames inside the event segment.
"""

from __future__ import annotations

from pathlib import Path

from fusion_bench.data.base import Problem
from fusion_bench.datamodules.av_common import AVClipDataset, AVDataModule, ClipJob, lines_of
from fusion_bench.datamodules.paired_common import OVERRIDE_DIR, find_dir
from fusion_bench.errors import DatasetNotFoundError

CATEGORIES = (
    "Accordion", "Acoustic guitar", "Baby cry, infant cry", "Banjo", "Bark", "Bus", "Cat", "Chainsaw",
    "Church bell", "Clock", "Female speech, woman speaking", "Fixed-wing aircraft, airplane", "Flute",
    "Frying (food)", "Goat", "Helicopter", "Horse", "Male speech, man speaking", "Mandolin", "Motorcycle",
    "Race car, auto racing", "Rodents, rats, mice", "Shofar", "Toilet flush", "Train horn", "Truck", "Ukulele",
    "Violin, fiddle",
)
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
Entry = tuple[str, str, int, int]  # category, video id, start, end


def parse_annotations(path: Path) -> tuple[list[Entry], list[Problem]]:
    """Entries and per-line problems of an AVE annotation/split file (`&`-separated, optional header)."""
    entries: list[Entry] = []
    problems: list[Problem] = []
    for number, line in enumerate(lines_of(path), start=1):
        fields = [f.strip() for f in line.split("&")]
        if len(fields) != 5:
            problems.append(Problem(f"{path}:{number}", f"expected 5 '&'-separated fields, got {len(fields)}"))
            continue
        category, vid, _quality, start, end = fields
        if not (start.isdigit() and end.isdigit()):
            if number == 1:
                continue  # header line
            problems.append(Problem(f"{path}:{number}", f"start/end {start!r}/{end!r} are not whole seconds"))
            continue
        if category not in CATEGORIES:
            problems.append(Problem(f"{path}:{number}", f"unknown category {category!r} (not one of the 28)"))
            continue
        entries.append((category, vid, int(start), int(end)))
    return entries, problems


class AVEDataset(AVClipDataset):
    """AVE clips: audio 1x257x188 log-spectrogram, frames Tx3x224x224 (T=3), target in 0..27."""

    name = "ave"
    splits = ("train", "val", "test")
    class_names = tuple(c.lower() for c in CATEGORIES)
    default_num_frames = 3
    split_source = "official trainSet/valSet/testSet.txt (in the dataset zip)"
    expected_tree = """\
<root>/AVE_Dataset/            (or <root> = AVE_Dataset/ itself)
  AVE/<videoID>.mp4 ...        (4,143 ten-second clips)
  Annotations.txt              (Category&VideoID&Quality&StartTime&EndTime)
  trainSet.txt  valSet.txt  testSet.txt
  fusion_bench_cache/          (written by `fusion-bench data prepare ave --root <root>`)
"""

    @classmethod
    def _base(cls, root: Path) -> Path:
        base = root if find_dir(root, "AVE") and (root / "Annotations.txt").is_file() else None
        base = base or find_dir(root, "AVE_Dataset") or root
        missing = [str(base / "AVE")] if find_dir(base, "AVE") is None else []
        missing += [str(base / f) for f in ("Annotations.txt", *SPLIT_FILES.values()) if not (base / f).is_file()]
        if missing:
            raise DatasetNotFoundError(cls.name, root, cls.expected_tree, missing)
        return base

    @classmethod
    def jobs(cls, root: Path) -> list[ClipJob]:
        base = cls._base(root)
        video_dir = find_dir(base, "AVE")
        entries, _ = parse_annotations(base / "Annotations.txt")
        for split_file in SPLIT_FILES.values():
            entries += parse_annotations(base / split_file)[0]
        jobs: dict[str, ClipJob] = {}
        for _cat, vid, start, end in entries:
            path = video_dir / f"{vid}.mp4"  # type: ignore[operator]
            if vid not in jobs and path.is_file():
                jobs[vid] = ClipJob(vid, path, path, audio_offset_s=max(0.0, (start + end) / 2 - 1.5))
        return [jobs[k] for k in sorted(jobs)]

    def _clips(self) -> tuple[list[tuple[str, int, dict[str, Path], tuple[int, int] | None]], list[Problem], str]:
        base = self._base(self.root)
        video_dir = find_dir(base, "AVE")
        override = (self.split_dir or self.root / OVERRIDE_DIR) / SPLIT_FILES[self.split]
        split_file = override if override.is_file() else base / SPLIT_FILES[self.split]
        entries, problems = parse_annotations(split_file)
        clips = []
        seen: set[str] = set()
        repeats = 0
        for category, vid, start, end in entries:
            if vid in seen:
                repeats += 1
                continue
            seen.add(vid)
            path = video_dir / f"{vid}.mp4"  # type: ignore[operator]
            if not path.is_file():
                problems.append(Problem(str(split_file), f"video {vid!r} is listed but {path} does not exist"))
                continue
            clips.append((vid, CATEGORIES.index(category), {"mp4": path}, (start, end)))
        variant = f"{base.name}/AVE/*.mp4 + {split_file.name}" + (" (override)" if split_file == override else "")
        if repeats:
            variant += f"; {repeats} repeated video line(s) in {split_file.name} (first kept)"
        return clips, problems, variant

    @classmethod
    def make_fake(cls, root: Path, seed: int = 0) -> Path:
        """Tiny real MP4 (H.264 + AAC) clips with the annotation and split files; see datamodules/fake/ave.py."""
        from fusion_bench.datamodules.fake.ave import make_fake

        return make_fake(Path(root), seed)


class AVEDataModule(AVDataModule):
    """AVE (`ave`): kwargs num_frames (default 3), frame_size (224), split_dir go to the dataset."""

    dataset_class = AVEDataset
