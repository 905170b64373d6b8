"""M3FD (Liu et al., TarDAL, CVPR 2022): multi-scenario multi-modality detection and fusion benchmark.

- `detection` (default, `subset="detection"`): `M3FD_Detection/{Ir,Vis,Annotation}`, 4,200 pairs
  `00000.png`...`04199.png`, Pascal-VOC XML with 6 classes in TarDAL's order (People, Car, Bus, Lamp,
  Motorcycle, Truck; names matched case-insensitively). No official split: committed split BY SCENE in
  `datamodules/splits/m3fd/{train,val,test}.txt` (blocks of 100 consecutive indices, see the file headers).
  IR is stored as 24-bit grey (3 equal channels) and read as L. FLAG: sizes are 1024x768 "mostly".
- `tardal`: TarDAL's training copy `m3fd/{ir,vi,labels,meta}` (YOLO txt labels in the same class order);
  its own lists: train <- meta/train.txt, val <- meta/val.txt, test <- meta/pred.txt (meta/val.txt if absent).
- `fusion` (`subset="fusion"`): `M3FD_Fusion/{Ir,Vis}`, 300 independent-scene pairs without labels:
  evaluation only, every split yields all pairs.
The root is the folder holding `M3FD_Detection/` (and/or `M3FD_Fusion/`), or one of those folders itself.
"""

from __future__ import annotations

from pathlib import Path

from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.ivif_common import SPLITS_DIR, IVIFDataModule, IVIFDataset, find_dir, pair_files

M3FD_CLASSES = ("People", "Car", "Bus", "Lamp", "Motorcycle", "Truck")


class M3FDDataset(IVIFDataset):
    """M3FD pairs (`ir` L, `vis` RGB) with VOC boxes (detection subset) or unlabeled (fusion subset)."""

    name = "m3fd"
    splits = ("train", "val", "test")
    box_class_names = M3FD_CLASSES
    options = {"subset": ("detection", "fusion")}
    layouts = {
        "detection": "M3FD_Detection/{Ir,Vis,Annotation}, committed by-scene split",
        "fusion": "M3FD_Fusion/{Ir,Vis}, 300 pairs without a split",
        "tardal": "TarDAL m3fd/{ir,vi,labels,meta} with YOLO labels and its meta lists",
    }
    layout_markers = {"detection": ("M3FD_Detection",), "fusion": ("M3FD_Fusion",),
                      "tardal": ("ir", "vi", "labels", "meta")}
    eval_only_layouts = frozenset({"fusion"})
    expected_tree = """\
M3FD/
├── M3FD_Detection/
│   ├── Ir/00000.png ... 04199.png
│   ├── Vis/00000.png ... 04199.png
│   └── Annotation/00000.xml ...      Pascal VOC: People, Car, Bus, Lamp, Motorcycle, Truck
└── M3FD_Fusion/{Ir,Vis}/<name>.png   (300 pairs, used with subset="fusion")
"""

    def default_layout(self) -> str:
        return str(self.opts["subset"])

    def _base(self) -> Path | None:
        """The subset folder: root/M3FD_<Subset>, or the root itself when it is that folder."""
        sub = "M3FD_Detection" if self.opts["subset"] == "detection" else "M3FD_Fusion"
        found = find_dir(self.root, sub)
        if found is not None:
            return found
        own = {p.name for p in self.root.iterdir() if p.is_dir()}
        needed = {"Ir", "Vis", "Annotation"} if self.opts["subset"] == "detection" else {"Ir", "Vis"}
        return self.root if needed <= own else None

    def detect_layout(self) -> str | None:
        if self._base() is not None:
            return self.default_layout()
        if self.opts["subset"] == "detection" and all(self._marker_present(m) for m in self.layout_markers["tardal"]):
            return "tardal"
        return None

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        if layout == "tardal":
            meta = self.root / "meta"
            name = {"train": "train.txt", "val": "val.txt"}.get(self.split)
            name = name or ("pred.txt" if (meta / "pred.txt").is_file() else "val.txt")
            refs, problems = self.pair({"ir": self.root / "ir", "vis": self.root / "vi"}, meta / name)
            self.require_dirs("labels")
            return refs, problems + self.annotate(refs, self.root / "labels", ".txt", "yolo")
        base = self._base() or self.root / ("M3FD_Detection" if layout == "detection" else "M3FD_Fusion")
        dirs = {"ir": base / "Ir", "vis": base / "Vis"}
        self.require_dirs(*[str(d.relative_to(self.root)) for d in dirs.values()])
        if layout == "fusion":
            return pair_files(dirs)
        refs, problems = self.pair(dirs, SPLITS_DIR / "m3fd" / f"{self.split}.txt", require=False)
        self.require_dirs(str((base / "Annotation").relative_to(self.root)))
        return refs, problems + self.annotate(refs, base / "Annotation", ".xml", "voc")


class M3FDDataModule(IVIFDataModule):
    dataset_class = M3FDDataset
