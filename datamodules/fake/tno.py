"""Fake TNO (Tang's 42-pair layout): `ir/NN.png` + `vi/NN.png`, grey stored as 3 equal channels, sizes vary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion_bench.datamodules.fake.common import rng_for, save, scene


def make_fake(root: Path, seed: int = 0) -> Path:
    """All 42 real stems (the committed split lists name them), tiny and of varying size."""
    for i in range(1, 43):
        stem = f"{i:02d}"
        rng = rng_for(seed, "tno", stem)
        h, w = 48 + 4 * (i % 2), 60 + 4 * (i % 2)  # sizes vary per pair
        for folder in ("ir", "vi"):
            grey = scene(rng, h, w, 1)
            save(root / folder / f"{stem}.png", np.repeat(grey[..., None], 3, axis=2))
    return root
