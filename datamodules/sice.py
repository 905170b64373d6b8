"""SICE multi-exposure dataset (Cai, Gu, Zhang, TIP 2018): 589 sequences with a reference (Label) image each.

Layout: `Dataset_Part1/` (360 sequences, the train split) and `Dataset_Part2/` (229 sequences, the test split);
each holds numbered sequence folders `1/, 2/, ...` with 3-18 exposure JPEGs and a `Label/<n>.JPG` reference
(FLAG: casing varies, `Label` or `label`, `.JPG` or `.jpg`; both are accepted and the one found is reported).
A part may also hold the sequences in a `Data/`-style sub-folder next to `Label/` (Part2's Baidu download).

Pair rule (documented, deterministic): the exposures of a sequence are ordered by mean luminance (ITU-R 601,
computed on a reduced JPEG decode); `a` = the darkest and `b` = the brightest (`pair_rule="extremes"`, the
default) or, with `pair_rule="inner"`, the second darkest and second brightest when the sequence has at least
four exposures (avoids nearly black/white frames). `gt` = the Label image.
Problems: a sequence with fewer than two exposures, a sequence without a label, a label without a sequence.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.base import Problem, Sample, SampleRef
from fusion_bench.datamodules.paired_common import ImagePairDataset, find_dir, image_files, mean_luminance
from fusion_bench.errors import DatasetIntegrityError, DatasetNotFoundError, ImageReadError
from fusion_bench.types import GT, Task

PARTS = {"train": "Dataset_Part1", "test": "Dataset_Part2"}
PAIR_RULES = ("extremes", "inner")


class SICEDataset(ImagePairDataset):
    """SICE under/over pair per sequence plus its reference; see module docstring."""

    name = "sice"
    task = Task.MEIF
    modalities = ("a", "b")
    splits = ("train", "test")
    load_modes: ClassVar[dict[str, str | None]] = {"a": "RGB", "b": "RGB", GT: "RGB"}
    has_reference = True
    split_source = "official parts (Part1 = train, Part2 = test)"
    expected_tree = """\
<root>/
  Dataset_Part1/            (train: 360 sequences)
    1/ 2/ ...               (several exposures each, e.g. 1/1.JPG ... 1/7.JPG)
    Label/1.JPG 2.JPG ...   (reference per sequence; `label/` also accepted)
  Dataset_Part2/            (test: 229 sequences, same structure)
"""

    def _scan_variant(self) -> tuple[str, list[SampleRef], list[Problem]]:
        rule = self._options.get("pair_rule", "extremes")
        if rule not in PAIR_RULES:
            raise ValueError(f"sice: unknown pair_rule {rule!r}; valid: {', '.join(PAIR_RULES)}")
        part = find_dir(self.root, PARTS[self.split], PARTS[self.split].replace("_", " "))
        if part is None:
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, [str(self.root / PARTS[self.split])])
        label_dir = find_dir(part, "Label", "label", "Labels", "GT")
        if label_dir is None:
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, [str(part / "Label")])
        seq_parent = part
        if not any(d.is_dir() and d.name.isdigit() for d in part.iterdir()):
            seq_parent = next((d for d in sorted(part.iterdir()) if d.is_dir() and d != label_dir
                               and any(s.is_dir() and s.name.isdigit() for s in d.iterdir())), part)
        sequences = {d.name: d for d in seq_parent.iterdir() if d.is_dir() and d.name.isdigit()}
        labels = {p.stem: p for p in image_files(label_dir)}
        refs: list[SampleRef] = []
        problems: list[Problem] = []
        for key in sorted(set(sequences) | set(labels), key=lambda k: (len(k), k)):
            if key not in sequences:
                problems.append(Problem(str(labels[key]), f"label without a sequence folder in {seq_parent}"))
                continue
            exposures = image_files(sequences[key])
            if key not in labels:
                problems.append(Problem(str(sequences[key]), f"sequence without a label image in {label_dir}"))
            elif len(exposures) < 2:
                problems.append(Problem(str(sequences[key]), f"sequence holds {len(exposures)} image(s); "
                                                             "need at least 2 exposures"))
            else:
                refs.append(SampleRef(key, {GT: labels[key]}, extra={"exposures": exposures}))
        full = {"train": 360, "test": 229}[self.split]
        note = "" if len(sequences) == full else f"; {len(sequences)} sequences (the full part has {full})"
        return f"{part.name}/<n>/ + {label_dir.name}/ (pair rule: {rule}){note}", refs, problems

    def _choose(self, ref: SampleRef) -> None:
        if "a" in ref.files:
            return
        exposures: list[Path] = ref.extra["exposures"]
        try:
            ranked = sorted(exposures, key=lambda p: (mean_luminance(p), p.name))
        except ImageReadError as err:
            raise DatasetIntegrityError(self.name, self.root, [Problem(str(ref.extra["exposures"][0].parent),
                                                                       str(err))]) from err
        inner = self._options.get("pair_rule", "extremes") == "inner" and len(ranked) >= 4
        ref.files["a"], ref.files["b"] = (ranked[1], ranked[-2]) if inner else (ranked[0], ranked[-1])

    def _load(self, ref: SampleRef) -> Sample:
        self._choose(ref)
        return super()._load(ref)

    @classmethod
    def make_fake(cls, root: Path, seed: int = 0) -> Path:
        """Tiny copy of both parts (`Label/` in Part1, lower-case `label/` in Part2); see datamodules/fake/sice.py."""
        from fusion_bench.datamodules.fake.sice import make_fake

        return make_fake(Path(root), seed)


class SICEDataModule(PairedDataModule):
    """SICE multi-exposure sequences with references (`sice`); `pair_rule` is passed to the dataset."""

    dataset_class = SICEDataset
