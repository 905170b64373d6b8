"""A tiny on-disk paired dataset used by the tests of shared machinery (not registered by default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion_bench.base import PairedDataModule
from fusion_bench.data.base import FusionDataset, SampleRef, pair_by_stem
from fusion_bench.datamodules.fake.common import save
from fusion_bench.types import Task


class ToyDataset(FusionDataset):
    name = "toy"
    task = Task.IVIF
    modalities = ("ir", "vis")
    splits = ("train", "test")
    load_modes = {"ir": "L", "vis": "RGB", "mask": "mask"}
    class_names = ("background", "thing")
    expected_tree = "<root>/<split>/{ir,vis,mask}/<stem>.png"

    def _scan(self) -> tuple[list[SampleRef], list]:
        self.require_dirs(f"{self.split}/ir", f"{self.split}/vis")
        base = self.root / self.split
        dirs = {"ir": base / "ir", "vis": base / "vis"}
        if (base / "mask").is_dir():
            dirs["mask"] = base / "mask"
        return pair_by_stem(dirs)


class ToyDataModule(PairedDataModule):
    dataset_class = ToyDataset


def make_toy(root: Path, n: int = 3, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split in ToyDataset.splits:
        for i in range(n):
            stem = f"{i:03d}"
            save(root / split / "ir" / f"{stem}.png", (rng.random(size) * 255).astype(np.uint8))
            save(root / split / "vis" / f"{stem}.png", (rng.random((*size, 3)) * 255).astype(np.uint8))
            save(root / split / "mask" / f"{stem}.png", (rng.random(size) > 0.5).astype(np.uint8))
    return root
