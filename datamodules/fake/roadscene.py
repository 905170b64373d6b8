"""Fake RoadScene: 1-channel IR JPEGs, RGB visible JPEGs, HR visible and raw IR folders, Thumbs.db quirks."""

from __future__ import annotations

from pathlib import Path

from fusion_bench.data.base import read_split_file
from fusion_bench.datamodules.fake.common import rng_for, save, scene
from fusion_bench.datamodules.ivif_common import SPLITS_DIR

TRAIN_STEMS = ("FLIR_00006", "FLIR_00018", "FLIR_05164")  # real RoadScene names outside the test list


def make_fake(root: Path, seed: int = 0) -> Path:
    """All 50 real test stems (the committed list names them) plus 3 train stems; pair sizes vary."""
    stems = [*TRAIN_STEMS, *read_split_file(SPLITS_DIR / "roadscene" / "test.txt")]
    for i, stem in enumerate(stems):
        rng = rng_for(seed, "roadscene", stem)
        h, w = 48 + 2 * (i % 2), 64 + 4 * (i % 2)  # sizes vary per pair
        save(root / "cropinfrared" / f"{stem}.jpg", scene(rng, h, w, 1), quality=95)
        save(root / "crop_LR_visible" / f"{stem}.jpg", scene(rng, h, w, 3), quality=95)
        save(root / "crop_HR_visible" / f"{stem}.jpg", scene(rng, 2 * h + 3, 2 * w + 5, 3), quality=90)
        save(root / "infrared" / f"{stem}.png", scene(rng, 40, 50, 1))
    for folder in ("crop_LR_visible", "crop_HR_visible"):
        (root / folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 fake thumbnail cache")
    return root
