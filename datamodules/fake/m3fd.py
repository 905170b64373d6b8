"""Fake M3FD: M3FD_Detection/{Ir,Vis,Annotation} (3-channel grey IR PNG, RGB visible, VOC XML) and
M3FD_Fusion/{Ir,Vis}. Uses real stems from the committed by-scene lists, a few per split, and pins them
with `fusion_bench_splits/` (the documented per-root split override), since 4,200 files would be too many."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion_bench.data.base import read_split_file
from fusion_bench.datamodules.fake.common import rng_for, save, scene, write_voc_xml
from fusion_bench.datamodules.ivif_common import OVERRIDE_DIRNAME, SPLITS_DIR
from fusion_bench.datamodules.m3fd import M3FD_CLASSES

H, W = 48, 64  # 768x1024 scaled down
PER_SPLIT = {"train": 3, "val": 2, "test": 2}


def make_fake(root: Path, seed: int = 0) -> Path:
    det = root / "M3FD_Detection"
    for split, n in PER_SPLIT.items():
        stems = read_split_file(SPLITS_DIR / "m3fd" / f"{split}.txt")[:n]
        for stem in stems:
            rng = rng_for(seed, "m3fd", stem)
            save(det / "Ir" / f"{stem}.png", np.repeat(scene(rng, H, W, 1)[..., None], 3, axis=2))
            save(det / "Vis" / f"{stem}.png", scene(rng, H, W, 3))
            objs = [(M3FD_CLASSES[int(c)].lower() if c % 2 else M3FD_CLASSES[int(c)], 4 + 9 * k, 6, 14 + 9 * k, 30)
                    for k, c in enumerate(rng.integers(0, len(M3FD_CLASSES), 3))]
            write_voc_xml(det / "Annotation" / f"{stem}.xml", f"{stem}.png", W, H, objs)
        override = root / OVERRIDE_DIRNAME / f"{split}.txt"
        override.parent.mkdir(parents=True, exist_ok=True)
        override.write_text("# fake M3FD: real stems from datamodules/splits/m3fd, first few per split\n"
                            + "\n".join(stems) + "\n")
    for i in range(3):
        stem = f"{i:05d}"
        rng = rng_for(seed, "m3fd-fusion", stem)
        save(root / "M3FD_Fusion" / "Ir" / f"{stem}.png", np.repeat(scene(rng, H, W, 1)[..., None], 3, axis=2))
        save(root / "M3FD_Fusion" / "Vis" / f"{stem}.png", scene(rng, H, W, 3))
    return root
