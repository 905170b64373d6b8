"""Lytro multi-focus dataset (Nejati, Samavi, Shirani 2015): 20 colour A/B pairs, no ground truth.

Accepted layouts (the detected one is the dataset's `variant`, shown by `fusion-bench data check`):
- official: `lytro-01-A.jpg`, `lytro-01-B.jpg`, ... directly in the root (20 pairs, 520x520 JPEG);
- MFIFB benchmark copy: `input/lytro_01/lytro_01_A.jpg` + `_B.jpg`;
- re-split copies used by method repos: `sourceA/` + `sourceB/`, or `A/` + `B/` (also lower-case `a/` + `b/`,
  e.g. ../shared/realdata/Lytro), pairing `x.jpg` with `x.jpg` or `x_A.jpg` with `x_B.jpg`.
Keys are canonical (`lytro_01` -> `lytro-01`). The committed lists `splits/lytro/{train,test}.txt` name all 20
pairs (test-only dataset: train == test, see the header there); re-split copies use every pair they hold.
Colour images are kept RGB (a = near focus, b = far focus as numbered in the files).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.paired_common import (
    ImagePairDataset,
    find_dir,
    folder_pair,
    image_files,
    mfifb_files,
    pair_by_suffix,
    pair_folders,
    strip_suffix,
)
from fusion_bench.errors import DatasetNotFoundError
from fusion_bench.types import Task

RESPLIT_FOLDERS = [("sourceA", "sourceB"), ("source_A", "source_B"), ("A", "B")]


def canonical_key(key: str) -> str:
    """`lytro_01` / `Lytro-01` -> `lytro-01`."""
    return re.sub(r"[_ ]", "-", key.strip().lower())


class LytroDataset(ImagePairDataset):
    """Lytro A/B multi-focus pairs (RGB), test-only; see module docstring for the layouts."""

    name = "lytro"
    task = Task.MFIF
    modalities = ("a", "b")
    splits = ("train", "test")
    load_modes: ClassVar[dict[str, str | None]] = {"a": "RGB", "b": "RGB"}
    has_reference = False
    split_source = "committed list of all 20 pairs (test-only dataset; train == test)"
    expected_tree = """\
<root>/                      (official download, flat)
  lytro-01-A.jpg  lytro-01-B.jpg  ...  lytro-20-A.jpg  lytro-20-B.jpg
or <root>/input/lytro_01/lytro_01_A.jpg, lytro_01_B.jpg ...   (MFIFB copy)
or <root>/sourceA/<x>.jpg + <root>/sourceB/<x>.jpg            (also A/ + B/; re-split copies)
"""

    def _scan_variant(self) -> tuple[str, list[SampleRef], list[Problem]]:
        root = self.root
        pair = folder_pair(root, RESPLIT_FOLDERS)
        if pair is not None:
            refs, problems = pair_folders({"a": pair[0], "b": pair[1]},
                                          key_fn=lambda s: canonical_key(strip_suffix(s)[0]))
            return f"re-split folders {pair[0].name}/ + {pair[1].name}/ (every pair found is used)", refs, problems
        for a, b in RESPLIT_FOLDERS:
            half = find_dir(root, a) or find_dir(root, b)
            if half is not None:
                other = b if half.name.lower() == a.lower() else a
                raise DatasetNotFoundError(self.name, root, self.expected_tree, [str(root / other)])
        names, path, override = self.split_names()
        files = mfifb_files(root, "lytro")
        variant = "MFIFB copy input/lytro_NN/"
        if files is None:
            files = image_files(root)
            variant = "official flat lytro-NN-{A,B}.jpg"
            if not files:
                raise DatasetNotFoundError(self.name, root, self.expected_tree,
                                           ["lytro-NN-A/B images (none in the root, no input/, sourceA/ or A/)"])
        refs, problems = pair_by_suffix(files, names, str(path), key_fn=canonical_key, where=str(root))
        return f"{variant}; split lists in {path.parent}{' (override)' if override else ''}", refs, problems

    @classmethod
    def make_fake(cls, root: Path, seed: int = 0) -> Path:
        """Tiny copy of the official flat tree (all 20 pairs, 40x40 JPEG); see datamodules/fake/lytro.py."""
        from fusion_bench.datamodules.fake.lytro import make_fake

        return make_fake(Path(root), seed)


class LytroDataModule(PairedDataModule):
    """Lytro multi-focus pairs (`lytro`)."""

    dataset_class = LytroDataset
