"""Fake Lytro: the official flat tree `lytro-NN-{A,B}.jpg` for all 20 pairs (tiny 40x40 colour JPEGs)."""

from __future__ import annotations

from pathlib import Path

from fusion_bench.datamodules.fake.common import multifocus_pair, rng_for, save

SIZE = (40, 40)  # the real images are 520x520


def make_fake(root: Path, seed: int = 0) -> Path:
    root = Path(root)
    for i in range(1, 21):
        near, far, _ = multifocus_pair(rng_for(seed, "lytro", str(i)), *SIZE, channels=3)
        save(root / f"lytro-{i:02d}-A.jpg", near, quality=95)
        save(root / f"lytro-{i:02d}-B.jpg", far, quality=95)
    return root
