"""LLVIP (Jia et al., ICCV-W 2021): 15,488 low-light visible-infrared pairs with `person` boxes.

Official tree (github bupt-ai-cz/LLVIP, download_dataset.md): folder split train (12,025) / test (3,463),
6-digit stems (`010001.jpg`...; test from `190001.jpg`), one Pascal-VOC XML per pair in `Annotations/`
shared by both modalities. Boxes are returned as written in the XML (absolute pixel xyxy).
"""

from __future__ import annotations

from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.ivif_common import IVIFDataModule, IVIFDataset


class LLVIPDataset(IVIFDataset):
    """LLVIP pairs (`ir` as L, `vis` as RGB) with `boxes`/`labels` from `Annotations/<stem>.xml`."""

    name = "llvip"
    splits = ("train", "test")
    box_class_names = ("person",)
    layouts = {"official": "LLVIP/{Annotations, infrared/{train,test}, visible/{train,test}}"}
    layout_markers = {"official": ("infrared", "visible")}
    nested_roots = ("LLVIP",)
    expected_tree = """\
LLVIP/
├── Annotations/010001.xml ...     Pascal VOC, class `person`, one per pair
├── infrared/{train,test}/010001.jpg ...
└── visible/{train,test}/010001.jpg ...
"""

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        dirs = {"ir": self.root / "infrared" / self.split, "vis": self.root / "visible" / self.split}
        refs, problems = self.pair(dirs)
        self.require_dirs("Annotations")
        problems += self.annotate(refs, self.root / "Annotations", ".xml", "voc")
        return refs, problems


class LLVIPDataModule(IVIFDataModule):
    dataset_class = LLVIPDataset
