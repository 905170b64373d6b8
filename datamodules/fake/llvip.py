"""Fake LLVIP tree: 3-channel grey IR JPEGs, RGB visible JPEGs, VOC XML `person` boxes (real naming)."""

from __future__ import annotations

from pathlib import Path

from fusion_bench.datamodules.fake.common import rng_for, save, scene, write_voc_xml

H, W = 48, 60  # 1024x1280 scaled down


def make_fake(root: Path, seed: int = 0) -> Path:
    for split, first, n in (("train", 10001, 3), ("test", 190001, 2)):
        for i in range(n):
            stem = f"{first + i:06d}"
            rng = rng_for(seed, "llvip", stem)
            ir = scene(rng, H, W, 1)
            save(root / "infrared" / split / f"{stem}.jpg", ir.repeat(3).reshape(H, W, 3), quality=95)
            save(root / "visible" / split / f"{stem}.jpg", scene(rng, H, W, 3), quality=95)
            boxes = [("person", int(x), int(y), int(x) + 8, int(y) + 16)
                     for x, y in zip(rng.integers(0, W - 10, 2), rng.integers(0, H - 18, 2))]
            write_voc_xml(root / "Annotations" / f"{stem}.xml", f"{stem}.jpg", W, H, boxes)
    return root
