"""`synthetic-meif`: under/over-exposed pairs from the scikit-image photographs (an exposure bracket with sensor
noise, black level and clipping), the crop as reference: the generator, the Dataset and the DataModule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fusion_bench.data.synthetic.photos import PhotoPairs, generate_photo_pairs
from fusion_bench.data.synthetic.store import Generator, SyntheticDataModule
from fusion_bench.types import GT, Task

MEIF_SEED = 3003


def _meif_pair(rng: np.random.Generator, reference: np.ndarray) -> dict[str, np.ndarray]:
    """Exposure bracket: radiance x 2^EV (EV in [-2.5, -1] / [+1, +2.5]), shot/read noise, black level, clipping,
    gamma 2.2: a loses its shadows to noise and the black level, b saturates its highlights."""
    radiance = reference.astype(np.float64) ** 2.2
    black = 0.006  # sensor black level: the darkest shadows of the under-exposed shot clip to 0
    out = {}
    for key, (lo, hi) in (("a", (-2.5, -1.0)), ("b", (1.0, 2.5))):
        signal = radiance * 2.0 ** rng.uniform(lo, hi)
        noise = rng.standard_normal(signal.shape) * np.sqrt(np.minimum(signal, 1.0) * 2e-4 + 2e-3**2)
        out[key] = np.clip((signal + noise - black) / (1.0 - black), 0.0, 1.0) ** (1 / 2.2)
    out[GT] = reference
    return out


def generate_meif(root: Path, params: dict[str, Any]) -> None:
    generate_photo_pairs(root, MEIF_SEED, _meif_pair)



MEIF = Generator("synthetic-meif", generate_meif, {})


class SyntheticMEIF(PhotoPairs):
    """Multi-exposure pairs from scikit-image photographs: a under-exposed, b over-exposed, gt the crop."""

    name = "synthetic-meif"
    task = Task.MEIF
    expected_tree = """\
<root>/
  manifest.json
  {train,val,test}/
    a/<photo>_<k>.png   under-exposed (EV -2.5..-1) RGB 128x128
    b/<photo>_<k>.png   over-exposed (EV +1..+2.5) RGB 128x128
    gt/<photo>_<k>.png  reference crop
photos: train astronaut, coffee, rocket, immunohistochemistry, retina; val chelsea; test stereo motorcycle
"""


class SyntheticMEIFDataModule(SyntheticDataModule):
    """``synthetic-meif``: 48/8/12 exposure pairs (a=under, b=over, gt), 128x128; see :class:`SyntheticMEIF`."""

    dataset_class = SyntheticMEIF
    generator = MEIF
