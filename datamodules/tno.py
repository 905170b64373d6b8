"""TNO Image Fusion Dataset (Toet, figshare 1008029), as the curated paired `ir/`+`vi/` subsets methods use.

The raw download has no consistent naming, so only curated copies are supported (both modalities grey;
stored as 1-channel or 3-channel files, read as L for IR and RGB for visible):
- `tang42` (default): Tang's 42 pairs `ir/NN.png`, `vi/NN.png` (Linfeng-Tang/Evaluation-for-Image-Fusion);
  committed split `datamodules/splits/tno/{train,test}.txt`: test = the 25 pairs of CDDFuse's TNO test set
  (in Tang's numbering), train = the other 17.
- `tardal`: TarDAL's `tno/{ir,vi,meta/{train,pred}.txt}`; its own lists (train.txt -> train, pred.txt -> test).
- `flat`: any other `ir/`+`vi/` copy (e.g. CDDFuse's renumbered 25-pair set, or a partial copy):
  evaluation only, every split yields all pairs.
Auto-detection: `meta/` present -> tardal; two-digit stems within 01..42 that go beyond 25 (or all 42) ->
tang42; anything else matches only `flat`, which is an error unless asked for with `layout=flat` (one extra pair in
a Tang copy must not silently turn the committed 25-pair test set into "every pair").
"""

from __future__ import annotations

from fusion_bench.data.base import Problem, SampleRef, image_stems
from fusion_bench.datamodules.ivif_common import SPLITS_DIR, IVIFDataModule, IVIFDataset, find_dir, pair_files

TANG_STEMS = frozenset(f"{i:02d}" for i in range(1, 43))


class TNODataset(IVIFDataset):
    """TNO curated pairs (`ir`, `vis`), no labels."""

    name = "tno"
    splits = ("train", "test")
    layouts = {
        "tang42": "Tang's 42-pair ir/+vi/ set, committed train/test lists",
        "tardal": "TarDAL tno/{ir,vi,meta}, its meta/train.txt and meta/pred.txt",
        "flat": "flat ir/+vi/ copy without a split",
    }
    layout_markers = {"tardal": ("ir", "vi", "meta"), "tang42": ("ir", "vi"), "flat": ("ir", "vi")}
    eval_only_layouts = frozenset({"flat"})
    nested_roots = ("TNO", "tno")
    expected_tree = """\
TNO/                       (Tang's 42-pair set; also accepted: TarDAL's tno/ with meta/, or any flat ir/+vi/)
├── ir/01.png ... 42.png
└── vi/01.png ... 42.png   (same names as ir/)
"""

    def detect_layout(self) -> str | None:
        ir, vi = find_dir(self.root, "ir"), find_dir(self.root, "vi")
        if ir is None or vi is None:
            return None
        if find_dir(self.root, "meta") is not None:
            return "tardal"
        stems = set(image_stems(ir, [])) | set(image_stems(vi, []))
        if stems and stems <= TANG_STEMS and (len(stems) == 42 or max(stems) > "25"):
            return "tang42"
        return "flat"

    def layout_hint(self) -> str:
        ir, vi = find_dir(self.root, "ir"), find_dir(self.root, "vi")
        stems = set(image_stems(ir, [])) | set(image_stems(vi, [])) if ir and vi else set()
        extra = sorted(stems - TANG_STEMS)
        if extra:
            return (f"stems outside Tang's 01..42: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''} (pass "
                    "layout=tang42 to use the committed split and leave them out)")
        return f"{len(stems)} pair(s) with stems up to {max(stems) if stems else '-'}: not Tang's 42-pair numbering"

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        dirs = {"ir": find_dir(self.root, "ir") or self.root / "ir",
                "vis": find_dir(self.root, "vi") or self.root / "vi"}
        if layout == "tang42":
            return self.pair(dirs, SPLITS_DIR / "tno" / f"{self.split}.txt")
        if layout == "tardal":
            return self.pair(dirs, self.root / "meta" / ("pred.txt" if self.split == "test" else "train.txt"))
        self.require_dirs("ir", "vi")
        return pair_files(dirs)


class TNODataModule(IVIFDataModule):
    dataset_class = TNODataset
