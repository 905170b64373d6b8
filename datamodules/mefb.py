"""MEFB multi-exposure benchmark (X. Zhang, Information Fusion 2021): 100 scenes, two exposures each, no GT.

Accepted layouts (`variant`):
- official: `input/<Scene>/` with exactly two images per scene (irregular names and extensions: `Scene_A.tif`,
  `_MDF0003.tif`, `img3.JPG`, ...; some folders also hold an `ev.txt`, which is ignored). The root is the MEFB
  repository (holding `input/`) or the `input/` folder itself;
- flat two-folder copies: `a/` + `b/` (or `A/` + `B/`) pairing `x_A.jpg` with `x_B.jpg` (../shared/realdata/MEFB).
Under/over identity is NOT taken from the file names: when a sample is loaded, the image with the lower mean
luminance (ITU-R 601 weights on the decoded RGB) becomes `a` (under-exposed) and the other `b` (over-exposed).
A scene folder with a number of images other than two is a Problem naming the folder.
Split: MEFB is test-only; both `train` and `test` are every scene found (no ground truth is ever used).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.base import Problem, Sample, SampleRef
from fusion_bench.datamodules.paired_common import (
    ImagePairDataset,
    find_dir,
    folder_pair,
    image_files,
    order_by_brightness,
    pair_folders,
    strip_suffix,
)
from fusion_bench.errors import DatasetNotFoundError
from fusion_bench.types import Task

EXPECTED_SCENES = 100


class MEFBDataset(ImagePairDataset):
    """MEFB (a = under-exposed, b = over-exposed by mean brightness), RGB; see module docstring."""

    name = "mefb"
    task = Task.MEIF
    modalities = ("a", "b")
    splits = ("train", "test")
    load_modes: ClassVar[dict[str, str | None]] = {"a": "RGB", "b": "RGB"}
    has_reference = False
    split_source = "every scene folder (test-only dataset; train == test)"
    expected_tree = """\
<root>/input/                (or <root> = input/ itself)
  <Scene>/<exposure 1>.<ext>   <Scene>/<exposure 2>.<ext>   [ev.txt]
  ... (100 scene folders, exactly two images each; .tif/.png/.jpg/.JPG)
or <root>/a/<x>_A.jpg + <root>/b/<x>_B.jpg   (flat two-folder copies)
"""

    def _scan_variant(self) -> tuple[str, list[SampleRef], list[Problem]]:
        pair = folder_pair(self.root, [("a", "b")])
        half = [n for n in ("a", "b") if find_dir(self.root, n) is not None]
        if pair is None and len(half) == 1:
            other = "b" if half == ["a"] else "a"
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, [str(self.root / other)])
        if pair is not None:
            refs, problems = pair_folders({"a": pair[0], "b": pair[1]}, key_fn=lambda s: strip_suffix(s)[0])
            return f"flat {pair[0].name}/ + {pair[1].name}/ copy (every pair found)", refs, problems
        base = find_dir(self.root, "input") or self.root
        scenes = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith((".", "fusion_bench")))
        if not scenes:
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree,
                                       [f"scene folders in {base} (found none)"])
        refs: list[SampleRef] = []
        problems: list[Problem] = []
        for scene in scenes:
            images = image_files(scene)
            if len(images) != 2:
                problems.append(Problem(str(scene), f"scene folder holds {len(images)} images "
                                                    f"({', '.join(p.name for p in images) or 'none'}); expected 2"))
                continue
            refs.append(SampleRef(scene.name, {"a": images[0], "b": images[1]}))
        note = "" if len(scenes) == EXPECTED_SCENES else f"; {len(scenes)} scenes (the full set has {EXPECTED_SCENES})"
        return f"official {base.name}/<Scene>/ folders, under/over by mean luminance{note}", refs, problems

    def _load(self, ref: SampleRef) -> Sample:
        return order_by_brightness(super()._load(ref), ref)

    @classmethod
    def make_fake(cls, root: Path, seed: int = 0) -> Path:
        """Tiny copy of the official tree (irregular names, .tif/.png/.JPG, ev.txt); see datamodules/fake/mefb.py."""
        from fusion_bench.datamodules.fake.mefb import make_fake

        return make_fake(Path(root), seed)


class MEFBDataModule(PairedDataModule):
    """MEFB multi-exposure pairs (`mefb`)."""

    dataset_class = MEFBDataset
