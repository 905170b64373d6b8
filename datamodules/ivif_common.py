"""Shared machinery for the infrared-visible datasets (LLVIP, TNO, RoadScene, MSRS, M3FD, FMB, MFNet, PST900).

What lives here:
- `IVIFDataset`: a FusionDataset with named layout variants (official tree, method-repo re-layouts, flat
  `ir/`+`vi/` copies), auto-detected or chosen with `layout=...`, reported by `variant` and by `check()`;
  split lists (official files, committed lists under `datamodules/splits/<name>/`, or an override);
  box annotations (Pascal-VOC XML, YOLO txt); a `check()` that only visits the splits the layout offers.
- `IVIFDataModule`: PairedDataModule that builds a val loader only when the layout has a val split.
- `pair_files`: stem pairing that, with a split list, still reports unpaired files in the folders.

Split override (documented for users, used by the fake copies of datasets with long committed lists):
`split_dir=DIR` (DIR/<split>.txt), else `<root>/fusion_bench_splits/<split>.txt` when that folder exists,
else the layout's own source. The split hash always reflects the samples actually used.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.base import CheckReport, FusionDataset, Problem, Sample, SampleRef, image_stems, read_split_file
from fusion_bench.data.io import read_array, read_image, read_mask, to_tensor
from fusion_bench.errors import DatasetError, DatasetIntegrityError, DatasetNotFoundError, ImageReadError
from fusion_bench.types import BOXES, LABELS, MASK, NAME, Task

log = logging.getLogger("fusion_bench.datamodules")

MFNET_CLASSES = ("unlabeled", "car", "person", "bike", "curve", "car_stop", "guardrail", "color_cone", "bump")
"""MFNet/MSRS segmentation classes, index order of the label PNGs (RTFNet); 0 = unlabeled counts as a class."""

SPLITS_DIR = Path(__file__).parent / "splits"
OVERRIDE_DIRNAME = "fusion_bench_splits"


class SplitUnavailableError(DatasetError):
    """The detected layout does not provide the requested split (e.g. `val` in a train/test re-layout)."""


class LayoutNotRequestedError(DatasetError):
    """Auto-detection found only an evaluation-only layout (no split: train = test = every pair). Such a layout
    changes the test set, so it is used only when asked for (`layout=<name>`), never silently."""


def find_dir(root: Path, *names: str) -> Path | None:
    """The first of `names` that exists under root (exact spelling first, then case-insensitive)."""
    for n in names:
        if (root / n).is_dir():
            return root / n
    if root.is_dir():
        lower = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
        for n in names:
            if n.lower() in lower:
                return lower[n.lower()]
    return None


def pair_files(dirs: dict[str, Path], names: list[str] | None = None, list_file: Path | None = None,
               unlisted: set[str] | None = None) -> tuple[list[SampleRef], list[Problem]]:
    """Pair image files across folders by stem.

    Every file lacking a partner in another folder is a Problem (also when a split list selects the
    samples). With `names`, only listed stems are used, in list order; a listed stem that is not a complete
    pair, or listed twice, is a Problem naming the list file; complete pairs the list leaves out are added
    to `unlisted` (so `check` can say which pairs belong to no split).
    """
    problems: list[Problem] = []
    found = {key: image_stems(folder, problems) for key, folder in dirs.items()}
    keys = list(dirs)
    all_stems = sorted(set().union(*[set(s) for s in found.values()])) if found else []
    complete = []
    for stem in all_stems:
        have = [k for k in keys if stem in found[k]]
        if len(have) == len(keys):
            complete.append(stem)
        else:
            lacking = ", ".join(str(dirs[k]) for k in keys if k not in have)
            problems.append(Problem(str(found[have[0]][stem]), f"no partner in {lacking}"))
    if names is None:
        use = complete
    else:
        use, seen, complete_set = [], set(), set(complete)
        where = str(list_file) if list_file else "split list"
        for stem in names:
            if stem in seen:
                problems.append(Problem(where, f"lists {stem!r} twice"))
                continue
            seen.add(stem)
            if stem in complete_set:
                use.append(stem)
            else:
                lacking = ", ".join(str(dirs[k]) for k in keys if stem not in found[k])
                problems.append(Problem(where, f"lists sample {stem!r}, which is missing from {lacking}"))
        if unlisted is not None:
            unlisted.update(complete_set - seen)
    return [SampleRef(s, {k: found[k][s] for k in keys}) for s in use], problems


def read_voc(path: Path, class_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pascal-VOC XML -> (boxes float Nx4 absolute xyxy as written, labels long N); class names match
    case-insensitively. Raises DatasetIntegrityError naming the file on a parse error or an unknown class."""
    lookup = {c.lower(): i for i, c in enumerate(class_names)}
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as err:
        raise DatasetIntegrityError("annotation", path.parent,
                                    [Problem(str(path), f"cannot parse VOC XML: {err}")]) from err
    boxes, labels, bad = [], [], []
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if name.lower() not in lookup:
            bad.append(name)
            continue
        try:
            coords = [float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[union-attr,arg-type]
        except (AttributeError, TypeError, ValueError):
            raise DatasetIntegrityError("annotation", path.parent, [Problem(
                str(path), f"object {name!r} has no valid bndbox xmin/ymin/xmax/ymax")]) from None
        boxes.append(coords)
        labels.append(lookup[name.lower()])
    if bad:
        raise DatasetIntegrityError("annotation", path.parent, [Problem(
            str(path), f"object class(es) {sorted(set(bad))} not in the classes {list(class_names)}")])
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.long))


def read_yolo(path: Path, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """YOLO txt (`cls cx cy w h`, normalised) -> absolute xyxy boxes and class ids (range checked later)."""
    boxes, labels = [], []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls, cx, cy, w, h = int(parts[0]), *map(float, parts[1:5])
        except ValueError:
            raise DatasetIntegrityError("annotation", path.parent, [Problem(
                f"{path}:{i}", f"expected 'cls cx cy w h', got {line!r}")]) from None
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        labels.append(cls)
    return (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.long))


def read_any_depth(path: Path) -> torch.Tensor:
    """Single-channel 8- or 16-bit image as float 1xHxW in [0, 1] by the depth policy of fusion_bench.data.io
    (16-bit divided by 65535)."""
    arr = read_array(path, None)
    if arr.ndim == 3:
        raise ImageReadError(f"{path} has {arr.shape[2]} channels; expected a single-channel image")
    return to_tensor(arr, path)


def read_rgbt(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A 4-channel RGB+thermal PNG (MFNet) -> (vis 3xHxW, ir 1xHxW). Decoded as stored, never converted, so a
    copy whose thermal channel was dropped (3 channels) is an error instead of a fabricated alpha."""
    arr = read_array(path, None)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if channels != 4:
        raise ImageReadError(f"{path} has {channels} channel(s); expected 4 (RGB + thermal as channel 4). Was it "
                             "re-saved by a reader that drops the 4th channel (e.g. cv2.IMREAD_COLOR)?")
    t = to_tensor(arr, path)
    return t[:3], t[3:4]


MRFS_DIRS = {
    "vis": ("Visible", "visible", "rgb", "RGB", "vi"),
    "ir": ("Infrared", "infrared", "thermal", "Thermal", "ir"),
    MASK: ("Label", "label", "labels", "Labels"),
}
"""Method-repo re-layout (MRFS/AMDANet): <root>/{Visible,Infrared,Label}/<stem>.png + train.txt/test.txt."""


class IVIFDataset(FusionDataset):
    """Infrared-visible dataset with layout variants.

    Subclasses set `layouts` (name -> one-line description, first = default), `layout_markers` (name ->
    folders that identify it, `a|b` = either; checked in order by auto-detection), `eval_only_layouts`
    (copies without a split: every split yields all pairs, with a warning), `options` (extra keyword
    options -> allowed values, first = default), and implement `_scan_layout(layout)`.
    """

    task = Task.IVIF
    modalities = ("ir", "vis")
    load_modes = {"ir": "L", "vis": "RGB", MASK: "mask"}
    layouts: ClassVar[dict[str, str]] = {"official": "official tree"}
    layout_markers: ClassVar[dict[str, tuple[str, ...]]] = {}
    eval_only_layouts: ClassVar[frozenset[str]] = frozenset()
    layout_split_map: ClassVar[dict[str, tuple[str, ...]]] = {}
    options: ClassVar[dict[str, tuple[Any, ...]]] = {}
    nested_roots: ClassVar[tuple[str, ...]] = ()  # archive folder names a user may point --root above

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable[[Sample], Sample] | None = None,
                 *, strict: bool = True, layout: str = "auto", split_dir: str | Path | None = None, **options: Any):
        self._configure(layout, split_dir, options)
        super().__init__(root, split, transforms, strict=strict)

    # -- configuration ------------------------------------------------------------------------------
    def _configure(self, layout: str, split_dir: str | Path | None, options: dict[str, Any]) -> None:
        if layout != "auto" and layout not in self.layouts:
            raise ValueError(f"{self.name}: unknown layout {layout!r}; choose auto or one of {list(self.layouts)}")
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"{self.name}: unknown option(s) {unknown}; valid: layout, split_dir, "
                            + ", ".join(self.options))
        self.opts: dict[str, Any] = {k: v[0] for k, v in self.options.items()}
        for key, value in options.items():
            allowed = {str(a): a for a in self.options[key]}
            if str(value) not in allowed:
                raise ValueError(f"{self.name}: {key}={value!r}; choose from {list(self.options[key])}")
            self.opts[key] = allowed[str(value)]
        self.requested_layout = layout
        self.split_dir = Path(split_dir) if split_dir is not None else None
        self.layout = ""
        self.split_source: str | None = None
        self.unlisted: set[str] = set()  # complete pairs that this split's list leaves out

    @classmethod
    def available_splits(cls, root: str | Path, **options: Any) -> tuple[str, ...]:
        """The splits the layout found under `root` provides (raises DatasetNotFoundError if none fits)."""
        probe = cls.__new__(cls)
        probe.root = Path(root)
        probe._configure(options.pop("layout", "auto"), options.pop("split_dir", None), options)
        probe._check_root()
        return probe.layout_splits(probe._resolve_layout())

    def layout_splits(self, layout: str) -> tuple[str, ...]:
        return self.layout_split_map.get(layout, self.splits)

    @property
    def variant(self) -> str | None:
        if not self.layout:
            return None
        text = f"{self.layout} ({self.layouts[self.layout]})"
        chosen = [f"{k}={v}" for k, v in self.opts.items() if v != self.options[k][0]]
        if chosen:
            text += "; " + ", ".join(chosen)
        if self.split_source:
            text += f"; split lists: {self.split_source}"
        if self.eval_only:
            text += "; evaluation-only copy: every split yields all pairs"
        return text

    # -- layout ------------------------------------------------------------------------------------
    def _marker_present(self, marker: str) -> bool:
        """`a|b`: either folder; nested paths must match exactly, top-level names case-insensitively."""
        for alt in marker.split("|"):
            if (self.root / alt).is_dir() or ("/" not in alt and find_dir(self.root, alt) is not None):
                return True
        return False

    def default_layout(self) -> str:
        """The layout named in errors when nothing matched (the first one by default)."""
        return next(iter(self.layouts))

    def detect_layout(self) -> str | None:
        """First layout whose marker folders all exist under the root."""
        for layout, markers in self.layout_markers.items():
            if all(self._marker_present(m) for m in markers):
                return layout
        return None

    def _resolve_layout(self) -> str:
        if self.requested_layout != "auto":
            return self.requested_layout
        found = self.detect_layout()
        nested = find_dir(self.root, *self.nested_roots) if self.nested_roots and found is None else None
        if nested is not None:
            log.info("%s: using %s (the archive folder inside the given root)", self.name, nested)
            self.root = nested
            found = self.detect_layout()
        if found is None:
            default = self.default_layout()
            missing = [str(self.root / m) for m in self.layout_markers.get(default, ()) if not self._marker_present(m)]
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree,
                                       missing + [f"(no known layout matched: {', '.join(self.layouts)})"])
        if found in self.eval_only_layouts and found != self.default_layout():
            others = [n for n in self.layouts if n not in self.eval_only_layouts]
            hint = self.layout_hint()
            raise LayoutNotRequestedError(
                f"{self.name} at {self.root}: the files match only the {found!r} layout ({self.layouts[found]}), "
                f"where train and test are both every pair, so results would not be comparable with the "
                f"{'/'.join(others)} split{'; ' + hint if hint else ''}. Pass --dataset-arg layout={found} to use it "
                f"anyway (evaluation only), or fix the copy (expected tree below)\n{self.expected_tree.rstrip()}")
        if found != self.default_layout():
            log.info("%s: detected layout %r (%s) at %s", self.name, found, self.layouts[found], self.root)
        return found

    def layout_hint(self) -> str:
        """Why the root does not match the layouts with a split (one clause; empty when nothing specific)."""
        return ""

    def _scan(self) -> tuple[list[SampleRef], list[Problem]]:
        self.layout = self._resolve_layout()
        if self.split not in self.layout_splits(self.layout):
            raise SplitUnavailableError(f"{self.name}: layout {self.layout!r} at {self.root} has no {self.split!r} "
                                        f"split (it has: {', '.join(self.layout_splits(self.layout))})")
        if self.eval_only:
            log.warning("%s: layout %r at %s has no train/test split; split %r yields every pair (use it for "
                        "evaluation only)", self.name, self.layout, self.root, self.split)
        return self._scan_layout(self.layout)

    def _scan_layout(self, layout: str) -> tuple[list[SampleRef], list[Problem]]:
        raise NotImplementedError

    @property
    def eval_only(self) -> bool:
        """True for copies without a split (every split yields all pairs)."""
        return self.layout in self.eval_only_layouts

    # -- split lists -------------------------------------------------------------------------------
    def split_list(self, default: Path | None, split: str | None = None) -> tuple[list[str] | None, Path | None]:
        """(names, file) for this split: split_dir, else <root>/fusion_bench_splits, else `default` (None =
        folder split). A chosen source lacking the split's file raises DatasetNotFoundError naming it."""
        split = split or self.split
        override = self.split_dir or (self.root / OVERRIDE_DIRNAME if (self.root / OVERRIDE_DIRNAME).is_dir() else None)
        path = override / f"{split}.txt" if override is not None else default
        if path is None:
            return None, None
        if not path.is_file():
            raise DatasetNotFoundError(self.name, self.root, self.expected_tree, [f"split file {path}"])
        self.split_source = str(path.parent) if override is not None else self._describe_source(path)
        return read_split_file(path), path

    @staticmethod
    def _describe_source(path: Path) -> str:
        try:
            return "committed " + str(path.parent.relative_to(SPLITS_DIR.parent.parent))
        except ValueError:
            return str(path.parent)

    def pair(self, dirs: dict[str, Path], default_list: Path | None = None,
             require: bool = True) -> tuple[list[SampleRef], list[Problem]]:
        """require_dirs on every folder, then pair by stem under this split's list (if any)."""
        if require:
            self.require_dirs(*[str(d.relative_to(self.root)) for d in dirs.values()])
        names, path = self.split_list(default_list)
        return pair_files(dirs, names, path, self.unlisted)

    def annotate(self, refs: list[SampleRef], folder: Path, suffix: str, fmt: str) -> list[Problem]:
        """Attach `<folder>/<stem><suffix>` to every sample as its box annotation; missing ones are Problems."""
        problems = []
        for ref in refs:
            ann = folder / f"{ref.name}{suffix}"
            if ann.is_file():
                ref.extra.update(annotation=ann, annotation_format=fmt)
            else:
                problems.append(Problem(str(ann), f"annotation missing for {ref.files[self.modalities[0]]}"))
        return problems

    def scan_mrfs(self) -> tuple[list[SampleRef], list[Problem]]:
        """The MRFS/AMDANet re-layout: {Visible,Infrared,Label} (or rgb/thermal/labels) + <split>.txt in root."""
        dirs: dict[str, Path] = {}
        for key, names in MRFS_DIRS.items():
            found = find_dir(self.root, *names)
            if found is None:
                raise DatasetNotFoundError(self.name, self.root, self.expected_tree,
                                           [f"{self.root / names[0]} (or {', '.join(names[1:])})"])
            dirs[key] = found
        default = next((self.root / n for n in (f"{self.split}.txt", f"{self.split.capitalize()}.txt")
                        if (self.root / n).is_file()), self.root / f"{self.split}.txt")
        names, path = self.split_list(default)
        return pair_files(dirs, names, path, self.unlisted)

    # -- loading -----------------------------------------------------------------------------------
    def _load(self, ref: SampleRef) -> Sample:
        """Read each file with its load mode: L/RGB/RGBA, "mask", "any" (8/16-bit single channel) or "rgbt"
        (a 4-channel RGB+thermal PNG split into `vis` and `ir`); then attach boxes."""
        sample: Sample = {NAME: ref.name}
        for key, path in ref.files.items():
            mode = self.load_modes.get(key, "RGB")
            try:
                if mode == "mask":
                    sample[key] = read_mask(path)
                elif mode == "any":
                    sample[key] = read_any_depth(path)
                elif mode == "rgbt":
                    sample["vis"], sample["ir"] = read_rgbt(path)
                else:
                    sample[key] = read_image(path, mode)
            except ImageReadError as err:
                raise DatasetIntegrityError(self.name, self.root, [Problem(str(path), str(err))]) from err
        fmt = ref.extra.get("annotation_format")
        if fmt is not None:
            ann: Path = ref.extra["annotation"]
            try:
                if fmt == "voc":
                    boxes, labels = read_voc(ann, self.box_class_names or ())
                else:
                    h, w = sample[self.modalities[0]].shape[-2:]
                    boxes, labels = read_yolo(ann, int(h), int(w))
            except DatasetIntegrityError as err:
                raise DatasetIntegrityError(self.name, self.root, err.problems) from None
            except OSError as err:
                raise DatasetIntegrityError(self.name, self.root, [Problem(str(ann), str(err))]) from None
            sample[BOXES], sample[LABELS] = boxes, labels
        return sample

    # -- check -------------------------------------------------------------------------------------
    @classmethod
    def _finish_check(cls, report: CheckReport, datasets: list[FusionDataset]) -> None:
        """Say which complete pairs no split list uses (not an error: re-layouts often drop a split, but never
        silent). (How the image files are stored, depth included, is reported by the base check.)"""
        unlisted = [ds.unlisted for ds in datasets if ds.split_source is not None]
        orphans = sorted(set.intersection(*unlisted)) if unlisted else []
        if orphans:
            report.variant = (f"{report.variant}; {len(orphans)} paired sample(s) in no split list "
                              f"(e.g. {', '.join(orphans[:3])})")

    @classmethod
    def make_fake(cls, root: Path, seed: int = 0) -> Path:
        """Write a tiny copy of the real tree (see datamodules/fake/<module>.py); returns root."""
        import importlib

        module = importlib.import_module(f"fusion_bench.datamodules.fake.{cls.__module__.rsplit('.', 1)[-1]}")
        return module.make_fake(Path(root), seed)


class IVIFDataModule(PairedDataModule):
    """PairedDataModule over an IVIF dataset (its val loader exists only when the detected layout has a val split:
    the base class asks the dataset's `available_splits`)."""

    dataset_class: ClassVar[type[IVIFDataset]]
