"""Fake Harvard medical copy: the repository tree `CT-MRI/{CT,MRI}`, `PET-MRI/{PET,MRI}`, `SPECT-MRI/{SPECT,MRI}`.

Real stems of the CT-MRI set are used (2006, 2008, 2011, 2019, 16003: by the hash rule 2008 and 2019 fall in
test, the others in train) for all three tasks. CT and MRI are 8-bit gray PNG; PET and SPECT are 8-bit RGB
pseudo-colour PNG (a warm colour map of a gray scene), as in the real copy. 32x32 instead of 256x256.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion_bench.datamodules.fake.common import rng_for, save, scene

SIZE = (32, 32)
STEMS = ["2006", "2008", "2011", "2019", "16003"]
TASKS = ("CT", "PET", "SPECT")


def pseudo_colour(gray: np.ndarray) -> np.ndarray:
    """A 'hot'-like colour map of a uint8 gray image -> uint8 RGB."""
    g = gray.astype(np.float32) / 255.0
    rgb = np.stack([np.clip(3 * g, 0, 1), np.clip(3 * g - 1, 0, 1), np.clip(3 * g - 2, 0, 1)], axis=-1)
    return np.round(rgb * 255).astype(np.uint8)


def make_fake(root: Path, other: str | None = None, seed: int = 0) -> Path:
    """Write all three task folders (`other` is accepted for symmetry with the datasets and ignored)."""
    root = Path(root)
    for task in TASKS:
        for stem in STEMS:
            rng = rng_for(seed, "harvard", task, stem)
            mri = scene(rng, *SIZE, 1)
            functional = scene(rng, *SIZE, 1)
            save(root / f"{task}-MRI" / "MRI" / f"{stem}.png", mri)
            image = functional if task == "CT" else pseudo_colour(functional)
            save(root / f"{task}-MRI" / task / f"{stem}.png", image)
    return root
