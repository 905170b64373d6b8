"""Embedded synthetic datasets: determinism, cache integrity, sample contract and the properties they model."""

from __future__ import annotations

import json
import logging
import random
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import laplace

from fusion_bench.data import synthetic as syn
from fusion_bench.data.synthetic.av import AV_DEFAULTS
from fusion_bench.data.synthetic.photos import PHOTO_SPLITS
from fusion_bench.errors import DatasetError, DatasetIntegrityError
from fusion_bench.registry import get_datamodule
from fusion_bench.types import AUDIO, BOXES, FRAMES, GT, LABELS, MASK, NAME, TARGET, Task

NAMES = ("synthetic-ivif", "synthetic-mfif", "synthetic-meif", "synthetic-av")
DATASETS = {
    "synthetic-ivif": syn.SyntheticIVIF,
    "synthetic-mfif": syn.SyntheticMFIF,
    "synthetic-meif": syn.SyntheticMEIF,
    "synthetic-av": syn.SyntheticAV,
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add overhead (a lot of it on a busy 2-core CI runner)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def session_cache(synthetic_cache: Path) -> Path:
    """The test session's temporary cache (tests/conftest.py) holding all four datasets, generated once."""
    cache = synthetic_cache
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUSION_BENCH_CACHE", str(cache))
        for name in NAMES:
            syn.ensure_generated(name)
    return cache


@pytest.fixture
def roots(session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Dataset roots in the module cache; FUSION_BENCH_CACHE points there for the test."""
    monkeypatch.setenv("FUSION_BENCH_CACHE", str(session_cache))
    return {name: syn.ensure_generated(name) for name in NAMES}


@pytest.fixture(autouse=True)
def _never_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a private cache unless it asks for the module one; the home cache is never touched."""
    monkeypatch.setenv("FUSION_BENCH_CACHE", str(tmp_path / "private_cache"))


# -- cache, manifest, determinism -------------------------------------------------------------------


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_BENCH_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert syn.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FUSION_BENCH_CACHE")
    assert syn.cache_dir() == tmp_path / "xdg" / "fusion_bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert syn.cache_dir() == tmp_path / "home" / ".cache" / "fusion_bench"


def test_cache_layout(roots: dict[str, Path], session_cache: Path) -> None:
    version = f"v{syn.GENERATOR_VERSION}"
    assert roots["synthetic-ivif"] == session_cache / "synthetic" / "synthetic-ivif" / version
    assert roots["synthetic-av"].parent == session_cache / "synthetic" / "synthetic-av" / version
    for root in roots.values():
        assert syn.verify_manifest(root) == []
        assert not [p for p in root.parent.iterdir() if p.name.startswith(".")], "temp folders left behind"


def test_generation_is_deterministic(roots: dict[str, Path], tmp_path: Path) -> None:
    """Fresh generations match the module cache byte for byte (the manifest holds every file's sha256).

    synthetic-meif and synthetic-mfif are regenerated and compared in the corruption and concurrency tests.
    """
    np.random.seed(12345)  # the generators must not depend on global RNG state
    torch.manual_seed(999)
    random.seed(7)
    empty = tmp_path / "ivif"
    empty.mkdir()
    assert syn.SyntheticIVIFDataModule.resolve_root(empty) == empty  # explicit empty root: generated there
    assert syn.ensure_generated("synthetic-av", tmp_path / "av") == tmp_path / "av"  # explicit absent root
    for name, other in (("synthetic-ivif", empty), ("synthetic-av", tmp_path / "av")):
        assert (other / syn.MANIFEST).read_bytes() == (roots[name] / syn.MANIFEST).read_bytes(), name
        assert syn.verify_manifest(other, name) == []
    pair = sorted((empty / "test" / "vis").iterdir())[0]
    assert pair.read_bytes() == (roots["synthetic-ivif"] / "test" / "vis" / pair.name).read_bytes()


def test_corrupt_cache_is_regenerated(roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    root = cache / "synthetic" / "synthetic-meif" / f"v{syn.GENERATOR_VERSION}"
    shutil.copytree(roots["synthetic-meif"], root)
    monkeypatch.setenv("FUSION_BENCH_CACHE", str(cache))
    assert syn.ensure_generated("synthetic-meif") == root  # intact copy: used as is
    manifest = (root / syn.MANIFEST).read_bytes()
    damaged = root / "train" / "a" / "astronaut_00.png"
    good = damaged.read_bytes()
    damaged.write_bytes(good[:100])  # truncated file -> hash mismatch
    (root / "test" / "gt" / "motorcycle_left_00.png").unlink()  # missing file
    assert syn.verify_manifest(root)
    with caplog.at_level(logging.WARNING, logger="fusion_bench.data.synthetic"):
        assert syn.ensure_generated("synthetic-meif") == root
    assert str(root) in caplog.text and "regenerating" in caplog.text
    assert syn.verify_manifest(root) == []
    assert damaged.read_bytes() == good and (root / syn.MANIFEST).read_bytes() == manifest  # deterministic

    caplog.clear()
    (root / syn.MANIFEST).unlink()  # no manifest: an interrupted or foreign tree; a DataModule checks too
    with caplog.at_level(logging.WARNING, logger="fusion_bench.data.synthetic"):
        dm = syn.SyntheticMEIFDataModule()
    assert dm.root == root and str(root) in caplog.text
    assert (root / syn.MANIFEST).read_bytes() == manifest
    assert [p.name for p in root.parent.iterdir()] == [root.name], "temp folders left behind"


def test_explicit_root(roots: dict[str, Path], tmp_path: Path) -> None:
    root = roots["synthetic-meif"]
    stamp = (root / syn.MANIFEST).stat().st_mtime_ns
    assert syn.SyntheticMEIFDataModule.resolve_root(root) == root  # existing and valid: reused, not rewritten
    assert (root / syn.MANIFEST).stat().st_mtime_ns == stamp
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="refusing to overwrite"):
        syn.ensure_generated("synthetic-meif", foreign)
    assert (foreign / "holiday.jpg").exists()
    with pytest.raises(ValueError, match="unknown synthetic dataset"):
        syn.ensure_generated("synthetic-nope")


def test_concurrent_generation(roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_BENCH_CACHE", str(tmp_path / "cache"))
    results: list[Path] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(syn.ensure_generated("synthetic-mfif"))
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(results)) == 1
    root = results[0]
    assert syn.verify_manifest(root, "synthetic-mfif") == []
    assert (root / syn.MANIFEST).read_bytes() == (roots["synthetic-mfif"] / syn.MANIFEST).read_bytes()
    assert [p.name for p in root.parent.iterdir()] == [root.name], "temp folders left behind"


def test_av_parameters_select_the_variant(roots: dict[str, Path], session_cache: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    default = roots["synthetic-av"]
    assert json.loads((default / "meta.json").read_text())["audio_snr"] == AV_DEFAULTS["audio_snr"]
    assert syn.ensure_generated("synthetic-av", audio_snr=AV_DEFAULTS["audio_snr"]) == default
    other = syn.ensure_generated("synthetic-av", audio_snr=0.5)
    assert other != default and other.parent == default.parent
    assert json.loads((other / "meta.json").read_text())["audio_snr"] == 0.5
    with pytest.raises(DatasetIntegrityError, match="audio_snr"):
        syn.SyntheticAV(default, "val", audio_snr=0.5)
    with pytest.raises(ValueError, match="generated with"):
        syn.ensure_generated("synthetic-av", default, visual_snr=9.0)
    with pytest.raises(TypeError, match="unknown generator parameter"):
        syn.ensure_generated("synthetic-av", bogus=1.0)


# -- dataset contract --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_check_is_clean(name: str, roots: dict[str, Path]) -> None:
    report = DATASETS[name].check(roots[name])
    assert report.ok, report.format()
    expected = {"synthetic-ivif": (64, 16, 16), "synthetic-mfif": (48, 8, 12), "synthetic-meif": (48, 8, 12),
                "synthetic-av": (600, 120, 240)}[name]
    assert tuple(report.counts[s] for s in ("train", "val", "test")) == expected


def test_registry_and_attributes() -> None:
    for name, cls in DATASETS.items():
        dm = get_datamodule(name)
        assert dm.dataset_class is cls and cls.name == name
    assert syn.SyntheticIVIF.task is Task.IVIF and syn.SyntheticIVIF.modalities == ("ir", "vis")
    assert syn.SyntheticIVIF.class_names[0] == "background" and syn.SyntheticIVIF.box_class_names == ("person", "car")
    assert syn.SyntheticMFIF.task is Task.MFIF and syn.SyntheticMFIF.has_reference
    assert syn.SyntheticMEIF.task is Task.MEIF and syn.SyntheticMEIF.modalities == ("a", "b")
    assert syn.SyntheticAV.task is Task.CLASSIFICATION and len(syn.SyntheticAV.class_names) == 6
    photos = {s: {p for p, _ in v} for s, v in PHOTO_SPLITS.items()}
    assert not (photos["train"] & photos["val"]) and not (photos["train"] & photos["test"])
    assert not (photos["val"] & photos["test"])


def test_ivif_samples(roots: dict[str, Path]) -> None:
    ds = syn.SyntheticIVIF(roots["synthetic-ivif"], "train")
    assert len({s.name for s in syn.SyntheticIVIF(roots["synthetic-ivif"], "test").samples} & {
        s.name for s in ds.samples}) == 0
    counts = torch.zeros(len(ds.class_names), dtype=torch.long)
    n_boxes = []
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {NAME, "ir", "vis", MASK, BOXES, LABELS}
        assert s["ir"].shape == (1, 128, 160) and s["vis"].shape == (3, 128, 160)
        assert s["ir"].dtype == torch.float32 and 0 <= s["vis"].min() and s["vis"].max() <= 1
        assert s[MASK].shape == (128, 160) and s[MASK].dtype == torch.int64
        assert s[BOXES].dtype == torch.float32 and s[BOXES].shape[1:] == (4,)
        assert s[LABELS].dtype == torch.int64 and len(s[LABELS]) == len(s[BOXES])
        boxes = s[BOXES]
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes[:, [0, 2]] <= 160).all() and (boxes[:, [1, 3]] <= 128).all() and (boxes >= 0).all()
        counts += torch.bincount(s[MASK].flatten(), minlength=len(ds.class_names))
        n_boxes.append(len(boxes))
    assert (counts > 0).all(), "every class appears"
    assert len(set(n_boxes)) >= 3, "object count varies"
    assert sum(n.endswith("N") for n in (r.name for r in ds.samples)) == len(ds) // 2


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def test_ivif_modalities_are_complementary(roots: dict[str, Path]) -> None:
    ds = syn.SyntheticIVIF(roots["synthetic-ivif"], "train")
    ir_contrast, vis_contrast, ir_detail, vis_detail, chroma = [], [], [], [], []
    for i, ref in enumerate(ds.samples):
        s = ds[i]
        y = _luma(s["vis"])
        ir = s["ir"][0]
        person = s[MASK] == 4
        if ref.name.endswith("N") and person.sum() > 30:
            ring = torch.zeros_like(person)
            for x1, y1, x2, y2 in s[BOXES][s[LABELS] == 0].round().long().tolist():
                ring[max(y1 - 4, 0):y2 + 4, max(x1 - 4, 0):x2 + 4] = True
            ring &= ~person
            ir_contrast.append(abs(ir[person].mean() - ir[ring].mean()))
            vis_contrast.append(abs(y[person].mean() - y[ring].mean()))
        building = s[MASK] == 2  # windows: texture the thermal image does not have
        if not ref.name.endswith("N") and building.sum() > 200:
            vis_detail.append(y[building].std())
            ir_detail.append(ir[building].std())
        cb, cr = s["vis"][2] - y, s["vis"][0] - y
        chroma.append(float(cb.var() + cr.var()))
    assert len(ir_contrast) >= 10
    assert np.mean(ir_contrast) > 4 * np.mean(vis_contrast), (np.mean(ir_contrast), np.mean(vis_contrast))
    assert np.mean(ir_contrast) > 0.25
    assert np.mean(vis_detail) > 2 * np.mean(ir_detail)
    assert min(chroma) > 1e-4  # visible carries colour; thermal has one channel
    assert ds[0]["ir"].shape[0] == 1


def test_mfif_defocus_is_complementary(roots: dict[str, Path]) -> None:
    ds = syn.SyntheticMFIF(roots["synthetic-mfif"], "test")
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {NAME, "a", "b", GT}
        assert all(s[k].shape == (3, 128, 128) and s[k].dtype == torch.float32 for k in ("a", "b", GT))
        focus = ds.focus_map(i)[0].numpy()
        energy = {k: laplace(s[k].mean(0).numpy()) ** 2 for k in ("a", "b", GT)}
        inside, outside = focus > 0.95, focus < 0.05
        assert energy["a"][inside].mean() > 1.5 * energy["b"][inside].mean()
        assert energy["b"][outside].mean() > 1.5 * energy["a"][outside].mean()
        assert energy[GT].mean() > max(energy["a"].mean(), energy["b"].mean())
        assert 0.2 < focus.mean() < 0.8


def test_meif_exposure_order(roots: dict[str, Path]) -> None:
    saturated = {"b": 0.0, GT: 0.0}
    black = {"a": 0.0, GT: 0.0}
    for split in ("train", "test"):
        ds = syn.SyntheticMEIF(roots["synthetic-meif"], split)
        for i in range(len(ds)):
            s = ds[i]
            assert all(s[k].shape == (3, 128, 128) for k in ("a", "b", GT))
            assert s["a"].mean() < s[GT].mean() < s["b"].mean(), ds.samples[i].name
            for key in saturated:
                saturated[key] += float((s[key] >= 0.999).float().mean())
            for key in black:
                black[key] += float((s[key] <= 0.002).float().mean())
    assert saturated["b"] > 5 * saturated[GT] and black["a"] > 5 * black[GT]  # highlights / shadows lost


def _ncm_accuracy(train: syn.SyntheticAV, test: syn.SyntheticAV, key: str, label: str = "class",
                  colour: bool = False) -> float:
    """Nearest-class-mean accuracy on the flattened `key` (colour: its per-channel mean) for the class, its pair
    (target // 2) or its place within the pair (target % 2)."""
    def stack(ds: syn.SyntheticAV) -> tuple[torch.Tensor, torch.Tensor]:
        items = [ds[i] for i in range(len(ds))]
        x = torch.stack([s[key].mean((1, 2)) if colour else s[key].flatten() for s in items])
        y = torch.stack([s[TARGET] for s in items])
        return x, {"class": y, "pair": y // 2, "within": y % 2}[label]

    x, y = stack(train)
    means = torch.stack([x[y == c].mean(0) for c in range(int(y.max()) + 1)])
    xt, yt = stack(test)
    return float((torch.cdist(xt, means).argmin(1) == yt).float().mean())


def test_av_samples_and_imbalance(roots: dict[str, Path]) -> None:
    train = syn.SyntheticAV(roots["synthetic-av"], "train")
    test = syn.SyntheticAV(roots["synthetic-av"], "test")
    s = test[0]
    assert set(s) == {NAME, AUDIO, FRAMES, TARGET}
    assert s[AUDIO].shape == (1, 64, 48) and s[AUDIO].dtype == torch.float32
    assert s[FRAMES].shape == (3, 32, 32) and 0 <= s[FRAMES].min() and s[FRAMES].max() <= 1
    assert s[TARGET].dtype == torch.int64 and s[TARGET].ndim == 0
    counts = torch.bincount(torch.tensor([r.extra["target"] for r in test.samples]), minlength=6)
    assert (counts == 40).all()
    # generator v3 (av.py): the pair (target // 2) is in the audio, the class within its pair only in the frames' hue
    audio = _ncm_accuracy(train, test, AUDIO)
    pair_audio = _ncm_accuracy(train, test, AUDIO, "pair")
    within_audio = _ncm_accuracy(train, test, AUDIO, "within")
    within_hue = _ncm_accuracy(train, test, FRAMES, "within", colour=True)
    pair_hue = _ncm_accuracy(train, test, FRAMES, "pair", colour=True)
    assert pair_audio > 0.9, pair_audio  # audio tells the pair apart
    assert audio < 0.6 and within_audio < 0.62, (audio, within_audio)  # ... and nothing within a pair (ceiling 0.5)
    assert within_hue > 0.7, within_hue  # the frames' mean colour tells the class within its pair
    assert pair_hue < 0.45, pair_hue  # ... but not the pair (the stripes' orientation does)


def test_av_generator_version(roots: dict[str, Path]) -> None:
    """The cached synthetic-av is generator version 3 (class pairs): a change of the generator bumps the version."""
    manifest = syn.read_manifest(roots["synthetic-av"])
    assert manifest is not None and manifest["generator_version"] == syn.GENERATOR_VERSION >= 3
    assert roots["synthetic-av"].parent.name == f"v{syn.GENERATOR_VERSION}"
    from fusion_bench.data.synthetic.av import AV_PAIRS

    target = torch.tensor([r.extra["target"] for r in syn.SyntheticAV(roots["synthetic-av"], "train").samples])
    assert AV_PAIRS == 3 and torch.equal(torch.bincount(target // 2), torch.full((AV_PAIRS,), 200))


# -- datamodules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["synthetic-ivif", "synthetic-mfif", "synthetic-meif"])
def test_datamodule_crops(name: str, roots: dict[str, Path]) -> None:
    dm = get_datamodule(name)(batch_size=4, crop_size=64)
    assert dm.root == roots[name]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    for key in dm.modalities:
        assert batch[key].shape[0] == 4 and tuple(batch[key].shape[-2:]) == (64, 64)
    if name == "synthetic-ivif":
        assert tuple(batch[MASK].shape) == (4, 64, 64) and len(batch[BOXES]) == 4
    else:
        assert tuple(batch[GT].shape) == (4, 3, 64, 64)
    dm.setup("test")
    assert len(dm.test_dataloader()) == len(dm.test_set)


def test_av_datamodule(roots: dict[str, Path]) -> None:
    dm = syn.SyntheticAVDataModule(batch_size=8)
    assert dm.root == roots["synthetic-av"] and dm.modalities == (AUDIO, FRAMES)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch[AUDIO].shape) == (8, 1, 64, 48) and tuple(batch[FRAMES].shape) == (8, 3, 32, 32)
    assert batch[TARGET].shape == (8,) and batch[TARGET].dtype == torch.int64
    with pytest.raises(ValueError, match="crop_size"):
        syn.SyntheticAVDataModule(crop_size=16)
