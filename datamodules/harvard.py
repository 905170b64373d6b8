"""Harvard Whole Brain Atlas medical pairs (AANLIB; common copy xianming-gu/Havard-Medical-Image-Fusion-Datasets).

One parametrised base, three registered datasets: `harvard_ct_mri` (ct, mri), `harvard_pet_mri` (pet, mri),
`harvard_spect_mri` (spect, mri). 256x256 PNG; CT and MRI are 8-bit gray (read as "L"); PET and SPECT are
pseudo-colour and stay RGB in the sample (fusion methods fuse on luminance and restore chroma via
fusion_bench/base/colour.py, the field's YCbCr convention).

Accepted layouts (`variant`), for task folder T in {CT-MRI, PET-MRI, SPECT-MRI}:
- `MyDatasets/T/{train,test}/{CT|PET|SPECT,MRI}/` — the repository's own split (CT-MRI 160/24, PET-MRI 245/24,
  SPECT-MRI 333/24): used as the official split when present;
- `T/{X,MRI}/` (the full sets: 184/269/357 pairs) or the task folder itself as root — no official split, so
  the documented hash rule of datamodules.paired_common applies (sha256(stem) % 8 == 0 -> test, ~12.5%);
- CDDFuse's `test_img/MRI_CT|MRI_PET|MRI_SPECT/{MRI,X}/` and flat `a/` (MRI) + `b/` (X) copies such as
  ../shared/realdata/MRI_CT — test-only copies: every pair found is in both splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.base import Problem, SampleRef
from fusion_bench.datamodules.paired_common import ImagePairDataset, find_dir, hash_split, pair_folders
from fusion_bench.errors import DatasetNotFoundError
from fusion_bench.types import Task


class HarvardDataset(ImagePairDataset):
    """Base for the three Harvard tasks; subclasses set `other` (CT/PET/SPECT) and the registry name."""

    other: ClassVar[str] = "CT"  # the non-MRI modality's folder name
    task = Task.MEDICAL
    splits = ("train", "test")
    has_reference = False
    split_source = "MyDatasets train/test when present, else sha256(stem) % 8 == 0 -> test"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.expected_tree = cls._tree()

    @classmethod
    def task_folder(cls) -> str:
        return f"{cls.other}-MRI"

    @classmethod
    def cdd_folder(cls) -> str:
        return f"MRI_{cls.other}"

    @classmethod
    def _tree(cls) -> str:
        t, o = cls.task_folder(), cls.other
        return f"""\
<root>/                                (the Havard-Medical-Image-Fusion-Datasets repository)
  {t}/{o}/<stem>.png  {t}/MRI/<stem>.png       (same stem in both, e.g. 2006.png)
  MyDatasets/{t}/train/{o}/, train/MRI/, test/{o}/, test/MRI/   (optional: the repository's split)
or <root> = {t}/ itself ({o}/ + MRI/), or CDDFuse's {cls.cdd_folder()}/{{MRI,{o}}}/, or a/ (MRI) + b/ ({o})
"""

    def _scan_variant(self) -> tuple[str, list[SampleRef], list[Problem]]:
        ka, kb = self.modalities
        root, other = self.root, self.other
        my = find_dir(root, "MyDatasets")
        my_task = find_dir(my, self.task_folder()) if my is not None else None
        if my_task is not None:
            split_dir = find_dir(my_task, self.split)
            dirs = {ka: find_dir(split_dir, other) if split_dir else None,
                    kb: find_dir(split_dir, "MRI") if split_dir else None}
            self._require(dirs, my_task / self.split, {ka: other, kb: "MRI"})
            refs, problems = pair_folders(dirs)  # type: ignore[arg-type]
            return f"MyDatasets/{my_task.name}/{{train,test}} (repository split)", refs, problems
        for base, names, label, test_only in (
            (find_dir(root, self.task_folder()), (other, "MRI"), "task folder {}/", False),
            (root, (other, "MRI"), "task folder as root", False),
            (find_dir(root, self.cdd_folder()), ("MRI", other), "CDDFuse {}/ copy (test-only)", True),
            (root, ("b", "a"), "flat a/ (MRI) + b/ copy (test-only)", True),
        ):
            if base is None:
                continue
            dirs = {ka: find_dir(base, names[0]), kb: find_dir(base, names[1])}
            if all(d is None for d in dirs.values()):
                continue
            self._require(dirs, base, {ka: names[0], kb: names[1]})
            refs, problems = pair_folders(dirs)  # type: ignore[arg-type]
            if not test_only:
                refs = [r for r in refs if hash_split(r.name) == self.split]
                problems = [p for p in problems if hash_split(Path(p.path).stem) == self.split]
            rule = "" if test_only else "; split by sha256(stem) % 8 == 0 -> test"
            return label.format(base.name) + rule, refs, problems
        raise DatasetNotFoundError(self.name, root, self.expected_tree,
                                   [f"{root / self.task_folder()} (or MyDatasets/{self.task_folder()}, "
                                    f"{other}/ + MRI/, {self.cdd_folder()}/, a/ + b/)"])

    def _require(self, dirs: dict[str, Path | None], base: Path, names: dict[str, str]) -> None:
        missing = [str(base / names[k]) for k, d in dirs.items() if d is None]
        if missing:
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, missing)

    @classmethod
    def make_fake(cls, root: Path, seed: int = 0) -> Path:
        """Tiny copy of the repository tree for this task; see datamodules/fake/harvard.py."""
        from fusion_bench.datamodules.fake.harvard import make_fake

        return make_fake(Path(root), cls.other, seed)


class HarvardCTMRIDataset(HarvardDataset):
    """CT-MRI pairs, both gray."""

    name = "harvard_ct_mri"
    other = "CT"
    modalities = ("ct", "mri")
    load_modes: ClassVar[dict[str, str | None]] = {"ct": "L", "mri": "L"}


class HarvardPETMRIDataset(HarvardDataset):
    """PET-MRI pairs: PET pseudo-colour RGB, MRI gray."""

    name = "harvard_pet_mri"
    other = "PET"
    modalities = ("pet", "mri")
    load_modes: ClassVar[dict[str, str | None]] = {"pet": "RGB", "mri": "L"}


class HarvardSPECTMRIDataset(HarvardDataset):
    """SPECT-MRI pairs: SPECT pseudo-colour RGB, MRI gray."""

    name = "harvard_spect_mri"
    other = "SPECT"
    modalities = ("spect", "mri")
    load_modes: ClassVar[dict[str, str | None]] = {"spect": "RGB", "mri": "L"}


class HarvardCTMRIDataModule(PairedDataModule):
    """Harvard CT-MRI (`harvard_ct_mri`)."""

    dataset_class = HarvardCTMRIDataset


class HarvardPETMRIDataModule(PairedDataModule):
    """Harvard PET-MRI (`harvard_pet_mri`)."""

    dataset_class = HarvardPETMRIDataset


class HarvardSPECTMRIDataModule(PairedDataModule):
    """Harvard SPECT-MRI (`harvard_spect_mri`)."""

    dataset_class = HarvardSPECTMRIDataset
