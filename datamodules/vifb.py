"""VIFB (Zhang, Ye, Xiao, "VIFB: A Visible and Infrared Image Fusion Benchmark", CVPRW 2020; github
xingchenzhang/VIFB): 21 infrared-visible pairs of mixed sizes (240x320 to 460x630), JPEG, no labels.

Accepted layouts (the detected one is the dataset's `variant`):
- `official`: the repository's `input/IR/<name>.jpg` + `input/VI/<name>.jpg`; the committed list
  `datamodules/splits/vifb/test.txt` names the 21 pairs, so a missing one is reported;
- `flat`: a copy with `ir/` + `vi/` (e.g. ../shared/realdata/VIFB): every pair found.
VIFB ships no training data and the field evaluates on all 21 pairs, so both splits are every pair (train == test:
for training-free methods and published fused images, `bench --method published:NAME`; train elsewhere for strict
numbers). The repository's published fused images (`output/fused_images/<name>_<method>.jpg`) are scored with
`--fused-pattern '{stem}_<method>.jpg'`. IR files are stored as 1-channel or 3 equal channels and read as L; visible
files as RGB. The protocol scores with VIFB's own kit (metric dialect `vifb`).
"""

from __future__ import annotations

from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.ivif_common import SPLITS_DIR, IVIFDataModule, IVIFDataset, find_dir, pair_files


class VIFBDataset(IVIFDataset):
    """VIFB pairs (`ir`, `vis`), no labels; see the module docstring for the layouts."""

    name = "vifb"
    splits = ("train", "test")
    layouts = {
        "official": "the repository's input/IR + input/VI; the committed list of the 21 pairs (train == test)",
        "flat": "flat ir/+vi/ copy: every pair found (train == test)",
    }
    layout_markers = {"official": ("input/IR", "input/VI"), "flat": ("ir", "vi")}
    nested_roots = ("VIFB", "vifb")
    expected_tree = """\
VIFB/                       (the repository xingchenzhang/VIFB; also accepted: any flat ir/+vi/ copy)
└── input/
    ├── IR/carLight.jpg ... walkingnight.jpg   (21 images)
    └── VI/carLight.jpg ... walkingnight.jpg   (same names as IR/)
"""

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        if layout == "flat":
            self.require_dirs("ir", "vi")
            return pair_files({"ir": find_dir(self.root, "ir") or self.root / "ir",
                               "vis": find_dir(self.root, "vi") or self.root / "vi"})
        dirs = {"ir": self.root / "input" / "IR", "vis": self.root / "input" / "VI"}
        return self.pair(dirs, SPLITS_DIR / "vifb" / "test.txt")


class VIFBDataModule(IVIFDataModule):
    dataset_class = VIFBDataset
