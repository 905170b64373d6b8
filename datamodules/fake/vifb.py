"""Fake VIFB (the repository's layout): `input/IR/<name>.jpg` (1-channel for four pairs, 3 equal channels for the
others, as in VIFB) + `input/VI/<name>.jpg` (RGB), all 21 real names, sizes vary per pair."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion_bench.data.base import read_split_file
from fusion_bench.datamodules.fake.common import rng_for, save, scene
from fusion_bench.datamodules.ivif_common import SPLITS_DIR

ONE_CHANNEL = ("manWalking", "running", "walking2", "walkingnight")  # VIFB's 1-channel IR files


def make_fake(root: Path, seed: int = 0) -> Path:
    for i, name in enumerate(read_split_file(SPLITS_DIR / "vifb" / "test.txt")):
        rng = rng_for(seed, "vifb", name)
        h, w = 48 + 4 * (i % 2), 64 + 4 * (i % 3)
        grey = scene(rng, h, w, 1)
        save(root / "input" / "IR" / f"{name}.jpg", grey if name in ONE_CHANNEL else np.repeat(grey[..., None], 3, 2),
             quality=95)
        save(root / "input" / "VI" / f"{name}.jpg", scene(rng, h, w, 3), quality=95)
    return root
