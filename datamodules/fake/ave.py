"""Fake AVE: `AVE_Dataset/AVE/<videoID>.mp4` (H.264 32x32 at 10 fps + AAC mono, 2 s instead of 10 s), with
`Annotations.txt` (starting with a header line, as some zip copies) and `trainSet/valSet/testSet.txt`, all
`&`-separated. Categories are real; one video ID (RUhOCu3LNXM, Church bell) is real, the others are made up."""

from __future__ import annotations

from pathlib import Path

from fusion_bench.datamodules.av_common import write_tiny_video
from fusion_bench.datamodules.fake.common import rng_for

# (category, video id, start, end) per split; times fitted to the 2 s fake clips.
LINES = {
    "train": [("Church bell", "RUhOCu3LNXM", 0, 2), ("Bark", "fake_bark01", 0, 1),
              ("Acoustic guitar", "fakeguitar1", 1, 2)],
    "val": [("Bus", "fake_bus001", 0, 2), ("Violin, fiddle", "fakeviolin1", 0, 2)],
    "test": [("Church bell", "fakechurch2", 0, 2), ("Race car, auto racing", "fake_racer1", 1, 2)],
}
FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}


def _line(category: str, vid: str, start: int, end: int) -> str:
    return f"{category}&{vid}&good&{start}&{end}\n"


def make_fake(root: Path, seed: int = 0) -> Path:
    root = Path(root)
    base = root / "AVE_Dataset"
    everything = []
    for split, lines in LINES.items():
        (base / FILES[split]).parent.mkdir(parents=True, exist_ok=True)
        (base / FILES[split]).write_text("".join(_line(*ln) for ln in lines))
        everything += lines
        for i, (_cat, vid, _s, _e) in enumerate(lines):
            write_tiny_video(base / "AVE" / f"{vid}.mp4", 2.0, rng_for(seed, "ave", vid), container_format="mp4",
                             tone_hz=200.0 + 60 * i)
    (base / "Annotations.txt").write_text("Category&VideoID&Quality&StartTime&EndTime\n"
                                          + "".join(_line(*ln) for ln in everything))
    return root
