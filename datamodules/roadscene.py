"""RoadScene (Xu et al., U2Fusion/FusionDN; github hanna-xu/RoadScene): 221 aligned FLIR-derived pairs.

Official tree: `cropinfrared/` (1-channel JPEG) + `crop_LR_visible/` (RGB JPEG, same size as the IR crop) are
the aligned pair used here; `crop_HR_visible/` (not pixel-aligned) and `infrared/` (raw 640x512) are ignored.
`Thumbs.db` files in the image folders are ignored. Pair by stem `FLIR_XXXXX`; sizes vary per pair.
No official split: test = `datamodules/splits/roadscene/test.txt` (CDDFuse's 50-pair test set), train = the
remaining pairs. Layout `flat` = a copy with `ir/`+`vi/` only (e.g. CDDFuse's test_img/RoadScene):
evaluation only, every split yields all pairs.
"""

from __future__ import annotations

from fusion_bench.data.base import Problem, SampleRef, read_split_file
from fusion_bench.datamodules.ivif_common import SPLITS_DIR, IVIFDataModule, IVIFDataset, pair_files


class RoadSceneDataset(IVIFDataset):
    """RoadScene pairs (`ir` from cropinfrared, `vis` from crop_LR_visible), no labels."""

    name = "roadscene"
    splits = ("train", "test")
    layouts = {
        "official": "cropinfrared/ + crop_LR_visible/; test = CDDFuse's 50 pairs, train = the rest",
        "flat": "flat ir/+vi/ copy without a split",
    }
    layout_markers = {"official": ("cropinfrared", "crop_LR_visible"), "flat": ("ir", "vi")}
    eval_only_layouts = frozenset({"flat"})
    nested_roots = ("RoadScene", "road-scene-infrared-visible-images")
    expected_tree = """\
RoadScene/
├── cropinfrared/FLIR_00006.jpg ...     (221, 1-channel)
├── crop_LR_visible/FLIR_00006.jpg ...  (221, RGB, same size as the IR crop; Thumbs.db ignored)
├── crop_HR_visible/ ...                (not used: not pixel-aligned)
└── infrared/ ...                       (not used: uncropped raw IR)
"""

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        if layout == "flat":
            self.require_dirs("ir", "vi")
            return pair_files({"ir": self.root / "ir", "vis": self.root / "vi"})
        dirs = {"ir": self.root / "cropinfrared", "vis": self.root / "crop_LR_visible"}
        test_list = SPLITS_DIR / "roadscene" / "test.txt"
        if self.split == "test" or self.split_dir is not None or (self.root / "fusion_bench_splits").is_dir():
            return self.pair(dirs, test_list)
        self.require_dirs("cropinfrared", "crop_LR_visible")
        refs, problems = pair_files(dirs)
        held_out = set(read_split_file(test_list))
        self.split_source = f"{self._describe_source(test_list)} (train = pairs not in test.txt)"
        return [r for r in refs if r.name not in held_out], problems


class RoadSceneDataModule(IVIFDataModule):
    dataset_class = RoadSceneDataset
