"""MFI-WHU multi-focus dataset (MFF-GAN, Zhang et al. 2021): 120 synthetic pairs with all-in-focus ground truth.

Accepted layouts (`variant`):
- official: `MFI-WHU/{source_1,source_2,full_clear}/<n>.jpg`, n = 1..120 (root = the MFI-WHU folder or its
  parent); `full_clear` is the ground truth (key "gt");
- MFIFB benchmark copy: `input/MFI-WHU_NN/MFI-WHU_NN_{A,B}.jpg` (30 pairs, renumbered, no ground truth; every
  pair found is a test sample and the train split reuses them).
Split: committed `splits/mfi_whu/{train,test}.txt` (n % 4 == 0 -> test: 30 / 90), see the headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.paired_common import ImagePairDataset, find_dir, mfifb_files, pair_by_suffix, pair_folders
from fusion_bench.errors import DatasetNotFoundError
from fusion_bench.types import GT, Task

FOLDERS = {"a": "source_1", "b": "source_2", GT: "full_clear"}


class MFIWHUDataset(ImagePairDataset):
    """MFI-WHU (a, b, gt) colour triples; see module docstring."""

    name = "mfi_whu"
    task = Task.MFIF
    modalities = ("a", "b")
    splits = ("train", "test")
    load_modes: ClassVar[dict[str, str | None]] = {"a": "RGB", "b": "RGB", GT: "RGB"}
    has_reference = True
    split_source = "committed list (n % 4 == 0 -> test; 90/30)"
    expected_tree = """\
<root>/MFI-WHU/            (or <root> itself)
  source_1/1.jpg ... 120.jpg
  source_2/1.jpg ... 120.jpg
  full_clear/1.jpg ... 120.jpg      (all-in-focus ground truth)
or <root>/input/MFI-WHU_01/MFI-WHU_01_A.jpg, _B.jpg ...   (MFIFB 30-pair copy, no ground truth)
"""

    def _scan_variant(self) -> tuple[str, list[SampleRef], list[Problem]]:
        base = self.root
        if find_dir(base, *FOLDERS.values()) is None:
            base = find_dir(self.root, "MFI-WHU", "MFI_WHU", "MFIWHU") or self.root
        if find_dir(base, *FOLDERS.values()) is None:
            files = mfifb_files(self.root, "MFI-WHU")
            if files is not None:
                refs, problems = pair_by_suffix(files, where=str(self.root / "input"))
                return "MFIFB copy input/MFI-WHU_NN/ (no ground truth; every pair found)", refs, problems
        dirs = {k: find_dir(base, v) for k, v in FOLDERS.items()}
        missing = [str(base / FOLDERS[k]) for k, d in dirs.items() if d is None]
        if missing:
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, missing)
        names, path, override = self.split_names()
        refs, problems = pair_folders({k: d for k, d in dirs.items() if d is not None}, names, str(path))
        return f"official {base.name}/source_1,source_2,full_clear; split lists in {path.parent}" + \
            (" (override)" if override else ""), refs, problems

    @classmethod
    def make_fake(cls, root: Path, seed: int = 0) -> Path:
        """Tiny copy of the official tree with a split override; see datamodules/fake/mfi_whu.py."""
        from fusion_bench.datamodules.fake.mfi_whu import make_fake

        return make_fake(Path(root), seed)


class MFIWHUDataModule(PairedDataModule):
    """MFI-WHU multi-focus pairs with ground truth (`mfi_whu`)."""

    dataset_class = MFIWHUDataset
