"""MFNet (Ha et al., IROS 2017), as the RTFNet preprocessed copy: 1,569 RGB-thermal pairs, 9-class masks.

Layouts:
- `official` (RTFNet `dataset/`): `images/<stem>.png` are 4-channel PNGs, channels 0-2 = RGB and channel 3 =
  thermal (decoded as stored; a 3-channel copy is an error, never a silent fake thermal), `labels/<stem>.png`
  1-channel indices 0..8; official lists `train.txt`, `val.txt`, `test.txt`, `test_day.txt`,
  `test_night.txt` in the root (one stem per line, e.g. `00001D`).
- `mrfs`: the MRFS/AMDANet re-layout `{Visible,Infrared,Label}/` (or lowercase) + `train.txt`/`test.txt`
  with thermal stored separately; it offers only the train and test splits.
"""

from __future__ import annotations

from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.ivif_common import MFNET_CLASSES, IVIFDataModule, IVIFDataset, pair_files
from fusion_bench.types import MASK


class MFNetDataset(IVIFDataset):
    """MFNet pairs (`ir` = thermal channel, `vis` = RGB) with a 9-class `mask`."""

    name = "mfnet"
    splits = ("train", "val", "test", "test_day", "test_night")
    class_names = MFNET_CLASSES
    load_modes = {"ir": "L", "vis": "RGB", MASK: "mask", "rgbt": "rgbt"}
    layouts = {
        "official": "RTFNet copy: 4-channel images/, labels/, train/val/test/test_day/test_night.txt",
        "mrfs": "MRFS/AMDANet re-layout {Visible,Infrared,Label} + train.txt/test.txt",
    }
    layout_markers = {"official": ("images", "labels"), "mrfs": ("Visible|visible", "Infrared|infrared")}
    layout_split_map = {"mrfs": ("train", "test")}
    nested_roots = ("dataset", "MFNet", "ir_seg_dataset")
    expected_tree = """\
dataset/                   (RTFNet's preprocessed MFNet)
├── images/00001D.png ...  4-channel PNG: RGB + thermal (channel 4)
├── labels/00001D.png ...  1-channel class indices 0..8
└── train.txt, val.txt, test.txt, test_day.txt, test_night.txt
  or the MRFS/AMDANet re-layout: {Visible,Infrared,Label}/<stem>.png + train.txt + test.txt
"""

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        if layout == "mrfs":
            return self.scan_mrfs()
        self.require_dirs("images", "labels")
        names, path = self.split_list(self.root / f"{self.split}.txt")
        return pair_files({"rgbt": self.root / "images", MASK: self.root / "labels"}, names, path, self.unlisted)


class MFNetDataModule(IVIFDataModule):
    dataset_class = MFNetDataset
