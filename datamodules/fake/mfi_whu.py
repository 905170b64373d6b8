"""Fake MFI-WHU: `MFI-WHU/{source_1,source_2,full_clear}/<n>.jpg` for a few real stems, with a split override.

The real stems are 1..120; the fake holds train {1, 2, 3} and test {4, 8} and lists them in
`<root>/fusion_bench_splits/{train,test}.txt` (the dataset's documented override of the committed lists).
"""

from __future__ import annotations

from pathlib import Path

from fusion_bench.datamodules.fake.common import multifocus_pair, rng_for, save

SIZE = (36, 48)  # the real images vary in size (colour JPEG)
SPLITS = {"train": [1, 2, 3], "test": [4, 8]}


def make_fake(root: Path, seed: int = 0) -> Path:
    root = Path(root)
    base = root / "MFI-WHU"
    for split, stems in SPLITS.items():
        for n in stems:
            near, far, sharp = multifocus_pair(rng_for(seed, "mfi_whu", str(n)), *SIZE, channels=3)
            save(base / "source_1" / f"{n}.jpg", near, quality=95)
            save(base / "source_2" / f"{n}.jpg", far, quality=95)
            save(base / "full_clear" / f"{n}.jpg", sharp, quality=95)
        listing = root / "fusion_bench_splits" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("# fake subset of the real stems\n" + "".join(f"{n}\n" for n in stems))
    return root
