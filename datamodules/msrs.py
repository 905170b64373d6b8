"""MSRS (Tang et al., PIAFusion; github Linfeng-Tang/MSRS): 1,444 aligned road-scene pairs built from MFNet.

Layouts:
- `official`: `{train,test}/{vi,ir,Segmentation_labels}/NNNNN{D,N}.png` (1,083 / 361 pairs, 480x640),
  9-class MFNet masks (0 = unlabeled ... 8 = bump). FLAG: some mirrors lack `Segmentation_labels`; then
  samples carry no mask and `variant` says so.
- `detection` (`subset="detection"`): `detection/{ir,vi,labels}/<int>.png|.txt`, 80 pairs, YOLO txt
  (`cls cx cy w h`). FLAG: the class mapping is undocumented; ids 0 and 2 occur, tall narrow boxes are 0 and
  wide ones 2, consistent with COCO numbering, so names are (person, bicycle, car). Committed split by
  index range in `datamodules/splits/msrs/detection/`.
- `flat`: a copy with `ir/`+`vi/` only: evaluation only, every split yields all pairs.
"""

from __future__ import annotations

from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.ivif_common import (
    MFNET_CLASSES,
    SPLITS_DIR,
    IVIFDataModule,
    IVIFDataset,
    find_dir,
    pair_files,
)
from fusion_bench.types import MASK

LABEL_DIRS = ("Segmentation_labels", "Segmentation_label", "Label", "labels")


class MSRSDataset(IVIFDataset):
    """MSRS pairs (`ir` L, `vis` RGB) with a 9-class `mask`, or boxes for the detection subset."""

    name = "msrs"
    splits = ("train", "test")
    class_names = MFNET_CLASSES
    options = {"subset": ("fusion", "detection")}
    layouts = {
        "official": "{train,test}/{vi,ir,Segmentation_labels}",
        "detection": "detection/{ir,vi,labels} YOLO subset, committed split",
        "flat": "flat ir/+vi/ copy without a split",
    }
    layout_markers = {"official": ("train|test",), "detection": ("detection",), "flat": ("ir", "vi")}
    eval_only_layouts = frozenset({"flat"})
    nested_roots = ("MSRS", "MSRS-main")
    expected_tree = """\
MSRS/
├── train/{vi,ir,Segmentation_labels}/00001D.png ...   (1,083 pairs; labels: 1-channel class indices 0..8)
├── test/{vi,ir,Segmentation_labels}/00004N.png ...    (361 pairs)
└── detection/{ir,vi}/1.png ..., detection/labels/1.txt ...   (80 pairs, YOLO; used with subset="detection")
"""

    def default_layout(self) -> str:
        return "detection" if self.opts["subset"] == "detection" else "official"

    def detect_layout(self) -> str | None:
        if self.opts["subset"] == "detection":
            return "detection" if self._marker_present("detection") else None
        for layout in ("official", "flat"):
            if all(self._marker_present(m) for m in self.layout_markers[layout]):
                return layout
        return None

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        self.notes = ""
        if layout == "detection":
            self.class_names, self.box_class_names = None, ("person", "bicycle", "car")
            det = self.root / "detection"
            refs, problems = self.pair({"ir": det / "ir", "vis": det / "vi"},
                                       SPLITS_DIR / "msrs" / "detection" / f"{self.split}.txt")
            self.require_dirs("detection/labels")
            return refs, problems + self.annotate(refs, det / "labels", ".txt", "yolo")
        if layout == "flat":
            self.require_dirs("ir", "vi")
            return pair_files({"ir": self.root / "ir", "vis": self.root / "vi"})
        base = self.root / self.split
        self.require_dirs(self.split, f"{self.split}/ir", f"{self.split}/vi")
        dirs = {"ir": base / "ir", "vis": base / "vi"}
        labels = find_dir(base, *LABEL_DIRS)
        if labels is not None:
            dirs[MASK] = labels
        else:
            self.notes = f"no {base}/Segmentation_labels: samples have no mask"
        return self.pair(dirs, require=False)

    @property
    def variant(self) -> str | None:
        text = super().variant
        return f"{text}; {self.notes}" if text and getattr(self, "notes", "") else text


class MSRSDataModule(IVIFDataModule):
    dataset_class = MSRSDataset
