"""Infrared-visible datasets (llvip, tno, roadscene, msrs, m3fd, fmb, mfnet, pst900) on generated fake copies
of their real trees: loading through the DataModule, a clean `check()`, every bad-input case, layout variants,
the committed split lists, the CLI, and the real pairs in ../shared/realdata when present."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusion_bench.data.base import read_split_file
from fusion_bench.datamodules.ivif_common import OVERRIDE_DIRNAME, SPLITS_DIR, IVIFDataset, LayoutNotRequestedError
from fusion_bench.errors import DatasetError, DatasetIntegrityError, DatasetNotFoundError
from fusion_bench.registry import get_datamodule
from fusion_bench.types import BOXES, IR, LABELS, MASK, VIS

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@dataclass(frozen=True)
class Case:
    """Where things are in a dataset's fake tree (all in the train split)."""

    ir: str  # an IR (or RGBT) file
    vis: str  # its partner whose removal leaves `ir` unpaired
    vis_dir: str  # a modality folder
    label: str | None = None  # a mask PNG, a VOC XML or a YOLO txt
    kwargs: tuple[tuple[str, str], ...] = ()


M3FD_STEM = read_split_file(SPLITS_DIR / "m3fd" / "train.txt")[0]
PST = "31_bag1a_rect_rgb_frame0000000007"
CASES = {
    "llvip": Case("infrared/train/010001.jpg", "visible/train/010001.jpg", "visible", "Annotations/010001.xml"),
    "tno": Case("ir/05.png", "vi/05.png", "vi"),
    "roadscene": Case("cropinfrared/FLIR_00006.jpg", "crop_LR_visible/FLIR_00006.jpg", "crop_LR_visible"),
    "msrs": Case("train/ir/00001D.png", "train/vi/00001D.png", "train/vi", "train/Segmentation_labels/00001D.png"),
    "m3fd": Case(f"M3FD_Detection/Ir/{M3FD_STEM}.png", f"M3FD_Detection/Vis/{M3FD_STEM}.png", "M3FD_Detection/Vis",
                 f"M3FD_Detection/Annotation/{M3FD_STEM}.xml"),
    "fmb": Case("train/Infrared/00001.png", "train/Visible/00001.png", "train/Visible", "train/Label/00001.png"),
    "mfnet": Case("images/00001D.png", "labels/00001D.png", "images", "labels/00001D.png"),
    "pst900": Case(f"train/thermal/{PST}.png", f"train/rgb/{PST}.png", "train/rgb", f"train/labels/{PST}.png"),
}
NAMES = list(CASES)


def dataset_class(name: str) -> type[IVIFDataset]:
    return get_datamodule(name).dataset_class


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ivif_fakes")
    return {name: dataset_class(name).make_fake(base / name, seed=0) for name in NAMES}


@pytest.fixture
def fake_copy(fakes: dict[str, Path], tmp_path: Path):
    """A private, mutable copy of a dataset's fake tree."""

    def make(name: str) -> Path:
        return Path(shutil.copytree(fakes[name], tmp_path / name))

    return make


# -- loading and check --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_datamodule_loads_fake_copy(name: str, fakes: dict[str, Path]) -> None:
    dm = get_datamodule(name)(root=fakes[name], batch_size=2, crop_size=16, seed=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch[IR].shape[1:] == (1, 16, 16) and batch[VIS].shape[1:] == (3, 16, 16)
    assert 0 <= float(batch[IR].min()) and float(batch[VIS].max()) <= 1
    sample = dm.test_set[0]
    assert sample[IR].shape[0] == 1 and sample[VIS].shape[0] == 3
    assert sample[IR].shape[-2:] == sample[VIS].shape[-2:]
    cls = dataset_class(name)
    if cls.class_names is not None:
        assert sample[MASK].dtype == torch.long and sample[MASK].shape == sample[IR].shape[-2:]
    if cls.box_class_names is not None:
        assert sample[BOXES].shape[1] == 4 and sample[LABELS].dtype == torch.long
    assert dm.test_set.split_hash() and dm.test_set.variant


@pytest.mark.parametrize("name", NAMES)
def test_check_is_clean_on_fake_copy(name: str, fakes: dict[str, Path]) -> None:
    report = dataset_class(name).check(fakes[name])
    assert report.ok, report.format()
    assert report.variant and all(report.counts.values())
    assert "clean" in report.format()


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_missing_root(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="expected tree") as err:
        dataset_class(name)(tmp_path / "absent", "train")
    assert str(tmp_path / "absent") in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_modality_folder_missing(name: str, fake_copy) -> None:
    root = fake_copy(name)
    shutil.rmtree(root / CASES[name].vis_dir)
    with pytest.raises(DatasetNotFoundError) as err:
        dataset_class(name)(root, "train")
    assert CASES[name].vis_dir.split("/")[-1] in str(err.value)
    assert not dataset_class(name).check(root).ok


@pytest.mark.parametrize("name", NAMES)
def test_ir_without_partner(name: str, fake_copy) -> None:
    root = fake_copy(name)
    (root / CASES[name].vis).unlink()
    with pytest.raises(DatasetIntegrityError, match="no partner") as err:
        dataset_class(name)(root, "train")
    assert str(root / CASES[name].ir) in str(err.value)
    report = dataset_class(name).check(root)
    assert any(p.path == str(root / CASES[name].ir) for p in report.problems), report.format()


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_image(name: str, fake_copy) -> None:
    root = fake_copy(name)
    path = root / CASES[name].ir
    path.write_bytes(path.read_bytes()[:60])  # truncated
    ds = dataset_class(name)(root, "train")
    index = next(i for i, ref in enumerate(ds.samples) if path in ref.files.values())
    with pytest.raises(DatasetIntegrityError, match="cannot read image") as err:
        ds[index]
    assert str(path) in str(err.value)
    assert any(p.path == str(path) for p in dataset_class(name).check(root).problems)


@pytest.mark.parametrize("name", NAMES)
def test_size_mismatch_between_the_pair(name: str, fake_copy) -> None:
    root = fake_copy(name)
    path = root / CASES[name].vis
    with Image.open(path) as img:
        img.load()
        small = img.resize((img.width - 4, img.height - 2), Image.NEAREST)
    small.save(path)
    ds = dataset_class(name)(root, "train")
    index = next(i for i, ref in enumerate(ds.samples) if path in ref.files.values())
    with pytest.raises(DatasetIntegrityError, match="size mismatch") as err:
        ds[index]
    assert str(path) in str(err.value)
    assert any("size mismatch" in p.message for p in dataset_class(name).check(root).problems)


def _break_label(path: Path, name: str) -> None:
    if path.suffix == ".png":
        mask = np.asarray(Image.open(path)).copy()
        mask[0, 0] = 200
        Image.fromarray(mask).save(path)
    elif path.suffix == ".xml":
        text = path.read_text()
        first = text.index("<name>") + len("<name>")
        path.write_text(text[:first] + "unicorn" + text[text.index("</name>", first):])
    else:
        path.write_text("7 0.5 0.5 0.1 0.1\n")


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].label] + ["msrs-detection"])
def test_label_out_of_range(name: str, fake_copy) -> None:
    if name == "msrs-detection":
        name, kwargs, label = "msrs", {"subset": "detection"}, "detection/labels/1.txt"
    else:
        kwargs, label = {}, CASES[name].label
    root = fake_copy(name)
    path = root / label
    _break_label(path, name)
    split = "train"
    ds = dataset_class(name)(root, split, **kwargs)
    index = next(i for i, ref in enumerate(ds.samples) if path.stem == ref.name)
    with pytest.raises(DatasetIntegrityError) as err:
        ds[index]
    assert str(path) in str(err.value)
    assert any(word in str(err.value) for word in ("outside", "not in the classes"))
    report = dataset_class(name).check(root, **kwargs)
    assert any(p.path == str(path) for p in report.problems), report.format()


@pytest.mark.parametrize("name", NAMES)
def test_split_file_names_missing_sample(name: str, fake_copy, tmp_path: Path) -> None:
    root = fake_copy(name)
    real = dataset_class(name)(root, "train").samples[0].name
    split_dir = tmp_path / "my_splits"
    split_dir.mkdir()
    (split_dir / "train.txt").write_text(f"# test\n{real}\nghost_0001\n")
    with pytest.raises(DatasetIntegrityError, match="ghost_0001") as err:
        dataset_class(name)(root, "train", split_dir=split_dir)
    assert str(split_dir / "train.txt") in str(err.value)
    ds = dataset_class(name)(root, "train", split_dir=split_dir, strict=False)
    assert [r.name for r in ds.samples] == [real] and len(ds.problems) == 1
    # the per-root override folder behaves the same and is what `data check` sees
    shutil.rmtree(root / OVERRIDE_DIRNAME, ignore_errors=True)
    shutil.copytree(split_dir, root / OVERRIDE_DIRNAME)
    for split in dataset_class(name).available_splits(root):
        if split != "train":
            (root / OVERRIDE_DIRNAME / f"{split}.txt").write_text(f"{real}\n")
    report = dataset_class(name).check(root)
    assert any("ghost_0001" in p.message and p.path.endswith("train.txt") for p in report.problems), report.format()


def test_missing_split_file_is_named(fake_copy) -> None:
    root = fake_copy("mfnet")
    (root / "val.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match="val.txt"):
        dataset_class("mfnet")(root, "val")
    assert any("val.txt" in p.message for p in dataset_class("mfnet").check(root).problems)


def test_committed_list_names_missing_sample(fake_copy) -> None:
    root = fake_copy("tno")
    (root / "ir" / "42.png").unlink()
    (root / "vi" / "42.png").unlink()
    with pytest.raises(DatasetIntegrityError, match="'42'") as err:
        dataset_class("tno")(root, "test", layout="tang42")
    assert "splits/tno/test.txt" in str(err.value)


def test_root_resolution_uses_fusion_bench_data(monkeypatch: pytest.MonkeyPatch, fakes: dict[str, Path]) -> None:
    monkeypatch.setenv("FUSION_BENCH_DATA", str(fakes["llvip"].parent))
    dm = get_datamodule("llvip")()
    assert dm.root == fakes["llvip"]
    dm.setup("test")
    assert len(dm.test_set) == 2


def test_unknown_options_are_rejected(fakes: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="layout"):
        dataset_class("fmb")(fakes["fmb"], "train", layout="nope")
    with pytest.raises(ValueError, match="classes"):
        dataset_class("fmb")(fakes["fmb"], "train", classes=13)
    with pytest.raises(TypeError, match="subset"):
        dataset_class("tno")(fakes["tno"], "train", subset="x")
    with pytest.raises(ValueError, match="unknown split"):
        dataset_class("llvip")(fakes["llvip"], "val")


# -- dataset specifics and layout variants ----------------------------------------------------------
def test_llvip_boxes_are_absolute_xyxy(fakes: dict[str, Path]) -> None:
    sample = dataset_class("llvip")(fakes["llvip"], "train")[0]
    boxes = sample[BOXES]
    assert len(boxes) == 2 and (boxes[:, 2] > boxes[:, 0]).all() and float(boxes.max()) <= 60
    assert sample[LABELS].tolist() == [0, 0]


def test_roadscene_ignores_thumbs_db_and_splits(fakes: dict[str, Path]) -> None:
    root = fakes["roadscene"]
    assert (root / "crop_LR_visible" / "Thumbs.db").is_file()
    train, test = (dataset_class("roadscene")(root, s) for s in ("train", "test"))
    assert len(test) == 50 and {r.name for r in train.samples} == {"FLIR_00006", "FLIR_00018", "FLIR_05164"}


def test_flat_layouts_are_evaluation_only_and_only_on_request(tmp_path: Path, fakes: dict[str, Path]) -> None:
    for name, src_ir, src_vi in (("roadscene", "cropinfrared", "crop_LR_visible"), ("msrs", "train/ir", "train/vi")):
        root = tmp_path / name
        shutil.copytree(fakes[name] / src_ir, root / "ir")
        shutil.copytree(fakes[name] / src_vi, root / "vi")
        with pytest.raises(LayoutNotRequestedError, match="layout=flat"):
            dataset_class(name)(root, "test")
        train, test = (dataset_class(name)(root, s, layout="flat") for s in ("train", "test"))
        assert train.layout == "flat" and "evaluation-only" in (train.variant or "")
        assert [r.name for r in train.samples] == [r.name for r in test.samples]
    root = tmp_path / "tno_cdd"  # CDDFuse's renumbered 25-pair set
    for i in range(1, 26):
        for folder in ("ir", "vi"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(fakes["tno"] / folder / f"{i:02d}.png", root / folder / f"{i:02d}.png")
    with pytest.raises(LayoutNotRequestedError, match="stems up to 25"):
        dataset_class("tno")(root, "test")
    assert dataset_class("tno")(root, "test", layout="flat").layout == "flat"


def test_tno_tardal_layout(tmp_path: Path, fakes: dict[str, Path]) -> None:
    root = tmp_path / "tno"
    shutil.copytree(fakes["tno"], root)
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("05.png\n09.png\n")
    (root / "meta" / "pred.txt").write_text("01.png\n")
    ds = dataset_class("tno")(root, "train")
    assert ds.layout == "tardal" and [r.name for r in ds.samples] == ["05", "09"]
    assert [r.name for r in dataset_class("tno")(root, "test").samples] == ["01"]


def test_msrs_detection_subset_and_missing_labels(fake_copy) -> None:
    root = fake_copy("msrs")
    det = dataset_class("msrs")(root, "test", subset="detection")
    sample = det[0]
    assert det.layout == "detection" and len(det) == 25 and sample[LABELS].tolist() == [0, 2]
    assert det.box_class_names == ("person", "bicycle", "car") and MASK not in sample
    shutil.rmtree(root / "train" / "Segmentation_labels")
    ds = dataset_class("msrs")(root, "train")
    assert MASK not in ds[0] and "no mask" in (ds.variant or "")


def test_m3fd_fusion_subset_and_detection_folder_root(fakes: dict[str, Path]) -> None:
    fusion = dataset_class("m3fd")(fakes["m3fd"], "test", subset="fusion")
    assert fusion.eval_only and len(fusion) == 3 and BOXES not in fusion[0]
    sample = dataset_class("m3fd")(fakes["m3fd"], "train")[0]
    assert sample[LABELS].max() < 6  # lower- and capitalised class names both match


def test_m3fd_tardal_layout(tmp_path: Path, fakes: dict[str, Path]) -> None:
    root = tmp_path / "m3fd"
    det = fakes["m3fd"] / "M3FD_Detection"
    shutil.copytree(det / "Ir", root / "ir")
    shutil.copytree(det / "Vis", root / "vi")
    stems = sorted(p.stem for p in (root / "ir").iterdir())
    (root / "labels").mkdir()
    for stem in stems:
        (root / "labels" / f"{stem}.txt").write_text("3 0.5 0.5 0.25 0.5\n")
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("".join(f"{s}.png\n" for s in stems[:4]))
    (root / "meta" / "val.txt").write_text("".join(f"{s}.png\n" for s in stems[4:]))
    train, test = (dataset_class("m3fd")(root, s) for s in ("train", "test"))
    assert train.layout == "tardal" and len(train) == 4 and len(test) == len(stems) - 4
    sample = train[0]
    assert sample[LABELS].tolist() == [3] and sample[BOXES].tolist() == [[24.0, 12.0, 40.0, 36.0]]
    assert dataset_class("m3fd").check(root).ok


def test_m3fd_committed_split_is_by_scene() -> None:
    lists = {s: read_split_file(SPLITS_DIR / "m3fd" / f"{s}.txt") for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in lists.items()} == {"train": 3000, "val": 400, "test": 800}
    blocks = {s: {int(x) // 100 for x in v} for s, v in lists.items()}
    assert not (blocks["train"] & blocks["test"]) and not (blocks["train"] & blocks["val"])
    assert sorted(x for v in lists.values() for x in v) == [f"{i:05d}" for i in range(4200)]


def _hash(names: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]


COMMITTED = {  # list -> (count, split hash); a change here changes every result row's split_hash
    "tno/train.txt": (17, "30d707ddbdfcc665"),
    "tno/test.txt": (25, "2114722d7dc295bd"),
    "roadscene/test.txt": (50, "25493050ce3e19a1"),
    "msrs/detection/train.txt": (55, "916bd1beebbea66c"),
    "msrs/detection/test.txt": (25, "782969b028b75864"),
}


@pytest.mark.parametrize("rel", list(COMMITTED))
def test_committed_split_lists(rel: str) -> None:
    path = SPLITS_DIR / rel
    assert path.read_text().startswith("#"), "a header comment says how the list was made"
    names = read_split_file(path)
    assert len(names) == len(set(names)) == COMMITTED[rel][0]
    assert _hash(names) == COMMITTED[rel][1]


def test_fmb_class_conventions_and_mrfs_layout(tmp_path: Path, fakes: dict[str, Path]) -> None:
    root = tmp_path / "fmb_mrfs"
    for split in ("train", "test"):
        for folder in ("Visible", "Infrared", "Label"):
            shutil.copytree(fakes["fmb"] / split / folder, root / folder, dirs_exist_ok=True)
        stems = sorted(p.stem for p in (fakes["fmb"] / split / "Visible").iterdir())
        (root / f"{split}.txt").write_text("\n".join(stems) + "\n")
    ds15 = dataset_class("fmb")(root, "train")
    ds14 = dataset_class("fmb")(root, "train", classes=14)
    assert ds15.layout == "mrfs" and "mrfs" in (ds15.variant or "")
    m15, m14 = ds15[0][MASK], ds14[0][MASK]
    assert len(ds14.class_names) == 14 and "classes=14" in (ds14.variant or "")
    assert (m14[m15 == 0] == 255).all() and (m14[m15 == 5] == 4).all()
    assert dataset_class("fmb").check(root, classes=14).ok


def test_mfnet_keeps_the_thermal_channel(fake_copy) -> None:
    root = fake_copy("mfnet")
    path = root / "images" / "00001D.png"
    rgba = np.array(Image.open(path))
    sample = dataset_class("mfnet")(root, "train")[0]
    assert torch.allclose(sample[IR][0], torch.from_numpy(rgba[..., 3]).float() / 255)
    assert torch.allclose(sample[VIS], torch.from_numpy(rgba[..., :3]).permute(2, 0, 1).float() / 255)
    Image.fromarray(rgba[..., :3]).save(path)  # a copy that lost channel 4
    with pytest.raises(DatasetIntegrityError, match="expected 4") as err:
        dataset_class("mfnet")(root, "train")[0]
    assert str(path) in str(err.value)


def test_mfnet_mrfs_layout_has_train_and_test_only(tmp_path: Path, fakes: dict[str, Path]) -> None:
    root = tmp_path / "MFNet"
    for stem in ("00001D", "00002D", "01000D"):
        rgba = np.asarray(Image.open(fakes["mfnet"] / "images" / f"{stem}.png"))
        for folder, arr in (("visible", rgba[..., :3]), ("infrared", rgba[..., 3])):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / folder / f"{stem}.png")
        (root / "label").mkdir(exist_ok=True)
        shutil.copy(fakes["mfnet"] / "labels" / f"{stem}.png", root / "label" / f"{stem}.png")
    (root / "train.txt").write_text("00001D\n00002D\n")
    (root / "test.txt").write_text("01000D\n")
    cls = dataset_class("mfnet")
    assert cls.available_splits(root) == ("train", "test")
    report = cls.check(root)
    assert report.ok and set(report.counts) == {"train", "test"}, report.format()
    assert "no split list" not in report.variant
    (root / "test.txt").write_text("")  # e.g. a copy whose test list was lost: say so, but it is no error
    assert "1 paired sample(s) in no split list (e.g. 01000D)" in cls.check(root).variant
    with pytest.raises(DatasetError, match="no 'val' split"):
        cls(root, "val")
    dm = get_datamodule("mfnet")(root=root, batch_size=2)
    dm.setup()
    assert dm.val_set is None and len(dm.train_set) == 2


def test_pst900_raw_thermal_and_nested_root(fakes: dict[str, Path], tmp_path: Path) -> None:
    raw = dataset_class("pst900")(fakes["pst900"], "train", thermal="raw")
    sample = raw[0]
    assert sample[IR].shape[0] == 1 and 0.25 < float(sample[IR].mean()) < 0.75  # 16-bit values / 65535
    nested = tmp_path / "download"
    shutil.copytree(fakes["pst900"], nested / "PST900_RGBT_Dataset")
    assert len(dataset_class("pst900")(nested, "test")) == 2


def test_plot_draws_modalities_and_labels(fakes: dict[str, Path]) -> None:
    pytest.importorskip("matplotlib")
    msrs = dataset_class("msrs")(fakes["msrs"], "test")
    assert [ax.get_title() for ax in msrs.plot(msrs[0]).axes] == ["ir", "vis", "mask"]
    llvip = dataset_class("llvip")(fakes["llvip"], "test")
    assert len(llvip.plot(llvip[0]).axes[1].patches) == 2  # boxes drawn on the visible panel


# -- CLI ------------------------------------------------------------------------------------------------
def _cli():
    try:
        from fusion_bench.cli import main
    except ImportError as err:  # pragma: no cover - the CLI lands separately
        pytest.skip(f"fusion_bench.cli not importable yet: {err}")
    return main


@pytest.mark.parametrize("name", NAMES)
def test_cli_data_fake_and_check(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main = _cli()
    assert main(["data", "fake", name, "--out", str(tmp_path / name)]) == 0
    assert main(["data", "check", name, "--root", str(tmp_path / name)]) == 0
    assert "clean" in capsys.readouterr().out
    (tmp_path / name / CASES[name].vis).unlink()
    assert main(["data", "check", name, "--root", str(tmp_path / name)]) == 1
    assert str(tmp_path / name / CASES[name].ir) in capsys.readouterr().out


def _small(name: str, fakes: dict[str, Path], tmp_path: Path) -> Path:
    """The fake root, or for tno/roadscene (25/50 test pairs, the real committed lists) a copy pinned to a few
    pairs per split with the per-root split override, to keep the scoring in the bench test fast."""
    cls = dataset_class(name)
    splits = cls.available_splits(fakes[name])
    if max(len(cls(fakes[name], s)) for s in splits) <= 4:
        return fakes[name]
    root = Path(shutil.copytree(fakes[name], tmp_path / f"{name}_small"))
    (root / OVERRIDE_DIRNAME).mkdir(exist_ok=True)
    for split in splits:
        names = [r.name for r in cls(fakes[name], split).samples][:3]
        (root / OVERRIDE_DIRNAME / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.mark.parametrize("name", NAMES)
def test_cli_bench_mean_smoke(name: str, fakes: dict[str, Path], tmp_path: Path) -> None:
    main = _cli()
    root = _small(name, fakes, tmp_path)
    argv = ["bench", "--method", "mean", "--dataset", name, "--root", str(root), "--preset", "smoke",
            "--seeds", "0", "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb")]
    assert main(argv) == 0
    assert (tmp_path / "lb" / "raw" / f"{name}.csv").is_file()


# -- real data ------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("name, folder, count, layout",
                         [("tno", "TNO", 10, "flat"), ("roadscene", "RoadScene", 15, "flat"),
                          ("msrs", "MSRS", 10, "flat")])
def test_real_pairs_load(name: str, folder: str, count: int, layout: str | None) -> None:
    root = REALDATA / folder
    if not (root / "ir").is_dir():
        pytest.skip(f"{root} not present")
    kwargs = {"layout": layout} if layout else {}
    ds = dataset_class(name)(root, "test", **kwargs)
    assert len(ds) == count and ds.eval_only
    sample = ds[0]
    assert sample[IR].shape[0] == 1 and sample[VIS].shape[0] == 3
    report = dataset_class(name).check(root, **kwargs)
    assert report.ok, report.format()
    if name != "tno":  # these flat copies are used only when asked for: they have no train/test split
        with pytest.raises(LayoutNotRequestedError, match="layout=flat"):
            dataset_class(name)(root, "test")
    if name == "tno":  # auto-detection sees Tang's numbering and reports the pairs this partial copy lacks
        auto = dataset_class(name).check(root)
        assert auto.variant.startswith("tang42") and len(auto.problems) == 32
        assert all("lists sample" in p.message for p in auto.problems)
