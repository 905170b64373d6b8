"""FMB (Liu et al., SegMiF, ICCV 2023; github JinyuanLiu-CV/SegMiF): 1,500 pairs with 15-class masks.

Layouts:
- `official`: `{train,test}/{Visible,Infrared,Label,color}/<stem>.png` (1,220 / 280 pairs, 600x800); `color/`
  holds colourised labels and is ignored. Labels: 0 = unlabeled/background, 1..14 = Road ... Pole.
- `mrfs`: the MRFS/AMDANet re-layout `{Visible,Infrared,Label}/` + `train.txt`/`test.txt`.
Class conventions (FLAG, both used in papers): `classes=15` (default; MRFS/AMDANet: background is class 0
and counts in mIoU) or `classes=14` (MMSFormer: 0 -> ignore 255, 1..14 -> 0..13). Infrared is read as L
(copies with 1 or 4 channels exist).
"""

from __future__ import annotations

import torch

from fusion_bench.data.base import Problem, Sample, SampleRef
from fusion_bench.datamodules.ivif_common import IVIFDataModule, IVIFDataset
from fusion_bench.errors import DatasetIntegrityError
from fusion_bench.types import IGNORE_INDEX, MASK

FMB_CLASSES = ("unlabeled", "Road", "Sidewalk", "Building", "Lamp", "Sign", "Vegetation", "Sky", "Person", "Car",
               "Truck", "Bus", "Motorcycle", "Bicycle", "Pole")


class FMBDataset(IVIFDataset):
    """FMB pairs (`ir` L, `vis` RGB) with `mask` in the 15- or 14-class convention."""

    name = "fmb"
    splits = ("train", "test")
    class_names = FMB_CLASSES
    options = {"classes": (15, 14)}
    layouts = {
        "official": "{train,test}/{Visible,Infrared,Label,color}",
        "mrfs": "MRFS/AMDANet re-layout {Visible,Infrared,Label} + train.txt/test.txt",
    }
    layout_markers = {"official": ("train|test",), "mrfs": ("Visible|visible", "Infrared|infrared")}
    nested_roots = ("FMB", "FMB_dataset")
    expected_tree = """\
FMB/
├── train/{Visible,Infrared,Label,color}/<stem>.png   (1,220 pairs; Label: 1-channel indices 0..14)
└── test/{Visible,Infrared,Label,color}/<stem>.png    (280 pairs)
  or the MRFS/AMDANet re-layout: {Visible,Infrared,Label}/<stem>.png + train.txt + test.txt
"""

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        if self.opts["classes"] == 14:
            self.class_names = FMB_CLASSES[1:]
        if layout == "mrfs":
            return self.scan_mrfs()
        base = self.root / self.split
        return self.pair({"ir": base / "Infrared", "vis": base / "Visible", MASK: base / "Label"})

    def _load(self, ref: SampleRef) -> Sample:
        sample = super()._load(ref)
        if MASK in sample:
            mask = sample[MASK]
            bad = sorted({int(v) for v in torch.unique(mask)} - set(range(len(FMB_CLASSES))) - {IGNORE_INDEX})
            if bad:
                raise DatasetIntegrityError(self.name, self.root, [Problem(
                    str(ref.files[MASK]), f"label values {bad} outside 0..14 (and ignore {IGNORE_INDEX})")])
            if self.opts["classes"] == 14:
                sample[MASK] = torch.where((mask == 0) | (mask == IGNORE_INDEX), IGNORE_INDEX, mask - 1)
        return sample


class FMBDataModule(IVIFDataModule):
    dataset_class = FMBDataset
