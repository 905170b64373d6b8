"""Fake MSRS: train/test with vi (RGB), ir (mixed 1-channel and 3-channel grey, as in the real copies),
Segmentation_labels (class indices 0..8), and the detection subset (all 80 real stems, YOLO txt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion_bench.data.base import read_split_file
from fusion_bench.datamodules.fake.common import label_map, rng_for, save, scene
from fusion_bench.datamodules.ivif_common import SPLITS_DIR

H, W = 48, 64


def make_fake(root: Path, seed: int = 0) -> Path:
    for split, stems in (("train", ("00001D", "00002N", "00633D")), ("test", ("00004N", "00537D"))):
        for i, stem in enumerate(stems):
            rng = rng_for(seed, "msrs", stem)
            ir = scene(rng, H, W, 1)
            save(root / split / "ir" / f"{stem}.png", ir if i % 2 == 0 else np.repeat(ir[..., None], 3, axis=2))
            save(root / split / "vi" / f"{stem}.png", scene(rng, H, W, 3))
            save(root / split / "Segmentation_labels" / f"{stem}.png", label_map(rng, H, W, 9))
    det = root / "detection"
    for split in ("train", "test"):
        for stem in read_split_file(SPLITS_DIR / "msrs" / "detection" / f"{split}.txt"):
            rng = rng_for(seed, "msrs-det", stem)
            save(det / "ir" / f"{stem}.png", scene(rng, 24, 32, 1))
            save(det / "vi" / f"{stem}.png", scene(rng, 24, 32, 3))
            lines = [f"{c} {0.2 + 0.3 * rng.random():.6f} {0.5:.6f} {0.1:.6f} {0.3:.6f}" for c in (0, 2)]
            (det / "labels").mkdir(parents=True, exist_ok=True)
            (det / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return root
