"""PST900 (Shivakumar et al., ICRA 2020; github ShreyasSkandanS/pst900_thermal_rgb): subterranean RGB-thermal.

Layouts:
- `official`: `PST900_RGBT_Dataset/{train,test}/{rgb,thermal,thermal_raw,depth,labels}/<name>.png`, names like
  `31_bag1a_rect_rgb_frame0000000007.png`; RGB 720x1280, thermal 8-bit (FLIR AGC, projection holes),
  thermal_raw 16-bit, labels 1-channel indices 0..4. Folder split (FLAG: 597 or 606 train / 288 test).
- `mrfs`: the MRFS/AMDANet re-layout (`rgb/thermal/labels` or `Visible/Infrared/Label`) + `train.txt`/`test.txt`.
`thermal="8bit"` (default) reads `thermal/`; `thermal="raw"` reads the 16-bit `thermal_raw/` (divided by 65535;
official layout only).
"""

from __future__ import annotations

from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.ivif_common import IVIFDataModule, IVIFDataset
from fusion_bench.types import MASK

PST900_CLASSES = ("Background", "Fire-Extinguisher", "Backpack", "Hand-Drill", "Survivor")


class PST900Dataset(IVIFDataset):
    """PST900 pairs (`ir` thermal, `vis` RGB) with a 5-class `mask`."""

    name = "pst900"
    splits = ("train", "test")
    class_names = PST900_CLASSES
    options = {"thermal": ("8bit", "raw")}
    layouts = {
        "official": "{train,test}/{rgb,thermal,thermal_raw,depth,labels}",
        "mrfs": "MRFS/AMDANet re-layout {rgb|Visible, thermal|Infrared, labels|Label} + train.txt/test.txt",
    }
    layout_markers = {"official": ("train|test",), "mrfs": ("rgb|Visible|visible", "thermal|Infrared|infrared")}
    nested_roots = ("PST900_RGBT_Dataset",)
    expected_tree = """\
PST900_RGBT_Dataset/
├── train/{rgb,thermal,thermal_raw,depth,labels}/31_bag1a_rect_rgb_frame0000000007.png ...
└── test/{rgb,thermal,thermal_raw,depth,labels}/<name>.png   (labels: 1-channel indices 0..4)
  or the MRFS/AMDANet re-layout: {rgb,thermal,labels}/<name>.png + train.txt + test.txt
"""

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        raw = self.opts["thermal"] == "raw"
        self.load_modes = {**type(self).load_modes, "ir": "any" if raw else "L"}
        if layout == "mrfs":
            if raw:
                raise ValueError(f"{self.name}: thermal='raw' needs the official layout (thermal_raw/)")
            return self.scan_mrfs()
        base = self.root / self.split
        thermal = "thermal_raw" if raw else "thermal"
        return self.pair({"ir": base / thermal, "vis": base / "rgb", MASK: base / "labels"})


class PST900DataModule(IVIFDataModule):
    dataset_class = PST900Dataset
