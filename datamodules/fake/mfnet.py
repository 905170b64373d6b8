"""Fake MFNet (RTFNet copy): 4-channel RGB+thermal `images/*.png`, `labels/*.png` (0..8), and the five lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion_bench.datamodules.fake.common import label_map, rng_for, save, scene

H, W = 48, 64  # 480x640 scaled down
LISTS = {"train": ("00001D", "00002D", "00003N"), "val": ("00010D", "00011N"), "test": ("01000D", "01001N"),
         "test_day": ("01000D",), "test_night": ("01001N",)}


def make_fake(root: Path, seed: int = 0) -> Path:
    for stem in sorted({s for stems in LISTS.values() for s in stems}):
        rng = rng_for(seed, "mfnet", stem)
        rgbt = np.concatenate([scene(rng, H, W, 3), scene(rng, H, W, 1)[..., None]], axis=2)
        save(root / "images" / f"{stem}.png", rgbt, mode="RGBA")
        save(root / "labels" / f"{stem}.png", label_map(rng, H, W, 9))
    for split, stems in LISTS.items():
        (root / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root
