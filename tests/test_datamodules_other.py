"""Multi-focus, multi-exposure, medical and audio-visual datasets (lytro, mfi_whu, mefb, sice, harvard_*, cremad,
ave) on generated fake copies of their real trees: loading through the DataModule, a clean `check()`, the bad-input
cases, layout variants, split lists, the OGM-GE preprocessing, the CLI, and ../shared/realdata when present."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_bench.data.base import read_split_file
from fusion_bench.datamodules import av_common
from fusion_bench.datamodules.paired_common import SPLITS_ROOT, hash_split
from fusion_bench.errors import DatasetError, DatasetIntegrityError, DatasetNotFoundError
from fusion_bench.registry import get_datamodule
from fusion_bench.types import AUDIO, FRAMES, GT, TARGET

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@dataclass(frozen=True)
class Case:
    """Paths (relative to the fake root) used by the bad-input tests; None where the case does not apply."""

    folder: str  # a modality/structure folder whose removal must raise DatasetNotFoundError naming it
    partner: str | None  # removing it leaves `lonely` without a partner
    lonely: str | None
    corrupt: str  # an image/media file to corrupt (named by the error)
    split_list: str | None = None  # split list to which a missing sample is appended (relative to root)
    av: bool = False


CASES = {
    "lytro": Case("sourceB", "lytro-03-B.jpg", "lytro-03-A.jpg", "lytro-02-A.jpg"),
    "mfi_whu": Case("MFI-WHU/source_2", "MFI-WHU/source_2/2.jpg", "MFI-WHU/source_1/2.jpg",
                    "MFI-WHU/full_clear/1.jpg", "fusion_bench_splits/train.txt"),
    "mefb": Case("b", "input/Arno/arno3.png", "input/Arno", "input/Candle/Imgp6075.png"),
    "sice": Case("Dataset_Part2/label", "Dataset_Part1/Label/2.JPG", "Dataset_Part1/2", "Dataset_Part1/Label/1.JPG"),
    "harvard_ct_mri": Case("CT-MRI/MRI", "CT-MRI/MRI/2006.png", "CT-MRI/CT/2006.png", "CT-MRI/CT/2011.png"),
    "harvard_pet_mri": Case("PET-MRI/PET", "PET-MRI/MRI/2006.png", "PET-MRI/PET/2006.png", "PET-MRI/PET/2011.png"),
    "harvard_spect_mri": Case("SPECT-MRI/MRI", "SPECT-MRI/SPECT/16003.png", "SPECT-MRI/MRI/16003.png",
                              "SPECT-MRI/SPECT/2006.png"),
    "cremad": Case("VideoFlash", "VideoFlash/1001_IEO_NEU_XX.flv", "AudioWAV/1001_IEO_NEU_XX.wav",
                   "AudioWAV/1001_IEO_HAP_LO.wav", "fusion_bench_splits/test.txt", av=True),
    "ave": Case("AVE_Dataset/AVE", None, None, "AVE_Dataset/AVE/fake_bark01.mp4", "AVE_Dataset/testSet.txt", av=True),
}
NAMES = list(CASES)
IMAGE_NAMES = [n for n in NAMES if not CASES[n].av]
AV_NAMES = [n for n in NAMES if CASES[n].av]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add overhead (a lot of it on a busy 2-core runner)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dataset_class(name: str):
    return get_datamodule(name).dataset_class


def needs_av(name: str) -> None:
    if CASES[name].av:
        pytest.importorskip("av")
        pytest.importorskip("soundfile")


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One fake tree per dataset (AV ones already prepared); tests that modify a tree use `fake_copy`."""
    base = tmp_path_factory.mktemp("other_fakes")
    roots = {}
    for name in NAMES:
        if CASES[name].av:
            try:
                import av  # noqa: F401
                import soundfile  # noqa: F401
            except ImportError:
                continue
        roots[name] = dataset_class(name).make_fake(base / name, seed=0)
        if CASES[name].av:
            dataset_class(name).prepare(roots[name], progress=False)
    return roots


@pytest.fixture
def fake_copy(fakes: dict[str, Path], tmp_path: Path):
    def make(name: str, prepared: bool = True) -> Path:
        needs_av(name)
        root = Path(shutil.copytree(fakes[name], tmp_path / name))
        if not prepared:
            shutil.rmtree(root / av_common.CACHE_DIR, ignore_errors=True)
        return root

    return make


def problems_text(name: str, root: Path) -> str:
    report = dataset_class(name).check(root)
    assert not report.ok
    return report.format()


# -- loading and check --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_datamodule_loads_fake_copy(name: str, fakes: dict[str, Path]) -> None:
    needs_av(name)
    dm = get_datamodule(name)(root=fakes[name], batch_size=2, crop_size=16, seed=0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    a, b = dm.modalities
    sample = dm.test_set[0]
    if CASES[name].av:
        assert batch[AUDIO].shape[1:] == (1, 257, 188)
        frames = dataset_class(name).default_num_frames
        assert batch[FRAMES].shape[1:] == (frames, 3, 32, 32)  # fake clips are 32x32 (frames never upsampled)
        assert batch[TARGET].dtype == torch.int64
        assert 0 <= int(sample[TARGET]) < len(dataset_class(name).class_names)
    else:
        assert batch[a].shape[-2:] == (16, 16) and batch[b].shape[-2:] == (16, 16)
        assert 0 <= float(batch[a].min()) and float(batch[b].max()) <= 1
        assert (GT in sample) == dataset_class(name).has_reference
        assert sample[a].shape[-2:] == sample[b].shape[-2:]
    assert isinstance(sample["name"], str)


@pytest.mark.parametrize("name", NAMES)
def test_check_is_clean_on_fake_copy(name: str, fakes: dict[str, Path]) -> None:
    needs_av(name)
    report = dataset_class(name).check(fakes[name])
    assert report.ok, report.format()
    assert report.variant
    assert all(n >= 2 for n in report.counts.values()), report.counts


def test_channels_and_keys_follow_the_modalities(fakes: dict[str, Path]) -> None:
    channels = {"harvard_ct_mri": (1, 1), "harvard_pet_mri": (3, 1), "harvard_spect_mri": (3, 1), "lytro": (3, 3)}
    for name, (ca, cb) in channels.items():
        ds = dataset_class(name)(fakes[name], "test")
        a, b = ds.modalities
        sample = ds[0]
        assert (sample[a].shape[0], sample[b].shape[0]) == (ca, cb), name


def test_make_fake_is_deterministic(tmp_path: Path) -> None:
    for name in ("mfi_whu", "sice"):
        one, two = dataset_class(name).make_fake(tmp_path / "1" / name), dataset_class(name).make_fake(
            tmp_path / "2" / name)
        files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
        assert files and all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_missing_root(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="not found") as err:
        dataset_class(name)(tmp_path / "nowhere", "test")
    assert str(tmp_path / "nowhere") in str(err.value)
    assert "expected tree" in str(err.value)


@pytest.mark.parametrize("name", NAMES)
def test_missing_modality_folder(name: str, fake_copy) -> None:
    root = fake_copy(name)
    case = CASES[name]
    if name == "lytro":  # the official layout is flat: use a re-split copy (sourceA/ + sourceB/) instead
        (root / "sourceA").mkdir()
        shutil.move(str(root / "lytro-01-A.jpg"), root / "sourceA" / "lytro-01.jpg")
    elif name == "mefb":  # scene folders have no modality folders: use the flat a/ + b/ copy
        (root / "a").mkdir()
    else:
        shutil.rmtree(root / case.folder)
    with pytest.raises(DatasetNotFoundError) as err:
        dataset_class(name)(root, "test")
    assert str(root / case.folder).lower() in str(err.value).lower()  # SICE: `Label` or `label`


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].partner])
def test_file_without_partner(name: str, fake_copy) -> None:
    root = fake_copy(name)
    case = CASES[name]
    (root / case.partner).unlink()
    with pytest.raises(DatasetIntegrityError) as err:
        for split in dataset_class(name).splits:
            dataset_class(name)(root, split)
    assert str(root / case.lonely) in str(err.value)
    assert str(root / case.lonely) in problems_text(name, root)


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_corrupt_image(name: str, fake_copy) -> None:
    root = fake_copy(name)
    path = root / CASES[name].corrupt
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    report = problems_text(name, root)
    assert str(path) in report
    hit = False
    for split in dataset_class(name).splits:
        ds = dataset_class(name)(root, split)
        for i in range(len(ds)):
            try:
                ds[i]
            except DatasetIntegrityError as err:
                assert str(path) in str(err)
                hit = True
    assert hit


@pytest.mark.parametrize("name", AV_NAMES)
def test_corrupt_media_is_reported_by_prepare_and_dataset(name: str, fake_copy) -> None:
    root = fake_copy(name, prepared=False)
    path = root / CASES[name].corrupt
    path.write_bytes(b"this is not a media file")
    dataset_class(name).prepare(root, progress=False)
    failed = (root / av_common.CACHE_DIR / "failed.tsv").read_text()
    assert path.stem in failed
    assert str(path) in problems_text(name, root)


@pytest.mark.parametrize("name", AV_NAMES)
def test_cache_missing_tells_to_prepare(name: str, fake_copy) -> None:
    root = fake_copy(name, prepared=False)
    with pytest.raises(DatasetError, match=f"fusion-bench data prepare {name} --root"):
        dataset_class(name)(root, "train")


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].split_list])
def test_split_list_naming_a_missing_sample(name: str, fake_copy) -> None:
    root = fake_copy(name)
    listing = root / CASES[name].split_list
    extra = "Violin, fiddle&zzzmissing1&good&0&2" if name == "ave" else "7" if name == "mfi_whu" else "1090_ITS_SAD_XX"
    listing.write_text(listing.read_text() + extra + "\n")
    split = listing.stem.replace("Set", "")
    with pytest.raises(DatasetIntegrityError) as err:
        dataset_class(name)(root, split)
    assert str(listing) in str(err.value)
    assert str(listing) in problems_text(name, root)


def test_lytro_committed_list_names_a_missing_pair(fake_copy) -> None:
    root = fake_copy("lytro")
    for suffix in "AB":
        (root / f"lytro-05-{suffix}.jpg").unlink()
    with pytest.raises(DatasetIntegrityError, match="lytro-05") as err:
        dataset_class("lytro")(root, "test")
    assert str(SPLITS_ROOT / "lytro" / "test.txt") in str(err.value)


@pytest.mark.parametrize("name,bad", [("cremad", "1001_IEO_XYZ_XX"), ("ave", "Didgeridoo")])
def test_label_outside_the_classes(name: str, bad: str, fake_copy) -> None:
    root = fake_copy(name)
    if name == "cremad":
        for folder, ext in (("AudioWAV", ".wav"), ("VideoFlash", ".flv")):
            src = next((root / folder).glob(f"*{ext}"))
            shutil.copy(src, root / folder / f"{bad}{ext}")
        where, split = str(root / "AudioWAV" / f"{bad}.wav"), "train"
    else:
        listing = root / "AVE_Dataset" / "trainSet.txt"
        listing.write_text(listing.read_text() + f"{bad}&RUhOCu3LNXM&good&0&2\n")
        where, split = f"{listing}:4", "train"
    with pytest.raises(DatasetIntegrityError) as err:
        dataset_class(name)(root, split)
    assert where in str(err.value) and bad in str(err.value)


def test_mefb_scene_with_wrong_image_count(fake_copy) -> None:
    root = fake_copy("mefb")
    shutil.copy(root / "input" / "Arno" / "Arno_A.png", root / "input" / "Arno" / "Arno_C.png")
    with pytest.raises(DatasetIntegrityError, match="holds 3 images") as err:
        dataset_class("mefb")(root, "test")
    assert str(root / "input" / "Arno") in str(err.value)


def test_size_mismatch_is_reported(fake_copy) -> None:
    from PIL import Image

    root = fake_copy("harvard_ct_mri")
    Image.new("L", (20, 20)).save(root / "CT-MRI" / "CT" / "2006.png")
    ds = dataset_class("harvard_ct_mri")(root, "train")
    with pytest.raises(DatasetIntegrityError, match="size mismatch"):
        ds[[r.name for r in ds.samples].index("2006")]


# -- layout rules -------------------------------------------------------------------------------------
def test_mefb_orders_exposures_by_brightness(fakes: dict[str, Path]) -> None:
    ds = dataset_class("mefb")(fakes["mefb"], "test")
    for i in range(len(ds)):
        sample = ds[i]
        assert float(sample["a"].mean()) < float(sample["b"].mean())
    candle = ds.samples[[r.name for r in ds.samples].index("Candle")]
    assert candle.files["a"].name == "Imgp6077.png"  # the darker file sorts second by name


@pytest.mark.parametrize("rule", ["extremes", "inner"])
def test_sice_pair_rule(rule: str, fakes: dict[str, Path]) -> None:
    from fusion_bench.datamodules.paired_common import mean_luminance

    ds = dataset_class("sice")(fakes["sice"], "train", pair_rule=rule)
    ref = ds.samples[[r.name for r in ds.samples].index("2")]  # 5 exposures
    ds[ds.samples.index(ref)]
    ranked = sorted(ref.extra["exposures"], key=mean_luminance)
    expected = (ranked[0], ranked[-1]) if rule == "extremes" else (ranked[1], ranked[-2])
    assert (ref.files["a"], ref.files["b"]) == expected
    assert ref.files[GT].parent.name == "Label"


def test_sice_label_casing_variant_is_reported(fakes: dict[str, Path]) -> None:
    assert "label/" in dataset_class("sice")(fakes["sice"], "test").variant


def test_lytro_layout_variants(fakes: dict[str, Path], tmp_path: Path) -> None:
    official = dataset_class("lytro")(fakes["lytro"], "test")
    assert len(official) == 20 and official.split_hash() == "97b195107d6b10f0"
    mfifb = tmp_path / "mfifb"
    for i in (1, 2):
        for s in "AB":
            dst = mfifb / "input" / f"lytro_{i:02d}" / f"lytro_{i:02d}_{s}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fakes["lytro"] / f"lytro-{i:02d}-{s}.jpg", dst)
    (mfifb / "fusion_bench_splits").mkdir()
    (mfifb / "fusion_bench_splits" / "test.txt").write_text("lytro-01\nlytro-02\n")
    ds = dataset_class("lytro")(mfifb, "test")
    assert "MFIFB" in ds.variant and [r.name for r in ds.samples] == ["lytro-01", "lytro-02"]
    resplit = tmp_path / "resplit"
    for s, folder in (("A", "sourceA"), ("B", "sourceB")):
        (resplit / folder).mkdir(parents=True)
        shutil.copy(fakes["lytro"] / f"lytro-07-{s}.jpg", resplit / folder / "7.jpg")
    ds = dataset_class("lytro")(resplit, "train")
    assert "sourceA" in ds.variant and len(ds) == 1


def test_harvard_mydatasets_split_is_preferred(fakes: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "harvard"
    for split, stems in (("train", ["2006", "2011"]), ("test", ["2008"])):
        for stem in stems:
            for mod in ("CT", "MRI"):
                dst = root / "MyDatasets" / "CT-MRI" / split / mod / f"{stem}.png"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(fakes["harvard_ct_mri"] / "CT-MRI" / mod / f"{stem}.png", dst)
    ds = dataset_class("harvard_ct_mri")(root, "test")
    assert "MyDatasets" in ds.variant and [r.name for r in ds.samples] == ["2008"]


def test_harvard_hash_rule_is_stable() -> None:
    assert [hash_split(s) for s in ("2006", "2008", "2011", "2019", "16003")] == [
        "train", "test", "train", "test", "train"]


def test_committed_split_lists() -> None:
    assert read_split_file(SPLITS_ROOT / "lytro" / "test.txt") == [f"lytro-{i:02d}" for i in range(1, 21)]
    train = read_split_file(SPLITS_ROOT / "mfi_whu" / "train.txt")
    test = read_split_file(SPLITS_ROOT / "mfi_whu" / "test.txt")
    assert len(train) == 90 and len(test) == 30 and sorted(map(int, train + test)) == list(range(1, 121))
    cremad = read_split_file(SPLITS_ROOT / "cremad" / "test.txt")
    assert len(cremad) == len(set(cremad)) == 744
    counts = {e: sum(c.split("_")[2] == e for c in cremad) for e in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")}
    assert counts == {"ANG": 105, "DIS": 129, "FEA": 133, "HAP": 123, "NEU": 114, "SAD": 140}  # OGM-GE test.csv
    import hashlib

    pinned = {("lytro", "test"): "97b195107d6b10f0", ("mfi_whu", "train"): "1245dc83898c5ef9",
              ("mfi_whu", "test"): "182d31d56b9a6f01", ("cremad", "test"): "2a5837cebb2d8380"}
    for (name, split), digest in pinned.items():  # the split hash the result rows carry on the full datasets
        stems = read_split_file(SPLITS_ROOT / name / f"{split}.txt")
        assert hashlib.sha256("\n".join(sorted(stems)).encode()).hexdigest()[:16] == digest


# -- audio-visual preprocessing -----------------------------------------------------------------------
def _reference_log_stft(x: np.ndarray) -> np.ndarray:
    """librosa.stft(n_fft=512, hop_length=353) (centre, zero padding, periodic Hann) written out in numpy."""
    n_fft, hop = 512, 353
    padded = np.pad(x, n_fft // 2)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [padded[i * hop:i * hop + n_fft] * window for i in range(1 + (padded.size - n_fft) // hop)]
    return np.log(np.abs(np.fft.rfft(np.stack(frames), axis=1)).T + 1e-7)


def test_log_spectrogram_matches_the_ogm_ge_definition() -> None:
    rng = np.random.default_rng(0)
    x = (0.5 * rng.standard_normal(30_000)).astype(np.float32)  # 1.36 s: tiled to 3 s, clipped to [-1, 1]
    spec = av_common.log_spectrogram(x)
    assert spec.shape == (257, 188) and spec.dtype == np.float32
    expected = _reference_log_stft(np.clip(np.resize(x, 66_150), -1, 1))
    np.testing.assert_allclose(spec, expected, atol=2e-3)


def test_resample_rate_and_length() -> None:
    tone = np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000).astype(np.float32)
    out = av_common.resample(tone, 16_000)
    assert out.size == 22_050
    peak = np.argmax(np.abs(np.fft.rfft(out))) * 22_050 / out.size
    assert abs(peak - 440) < 2


def test_prepare_is_resumable_and_extracts_1fps(fake_copy) -> None:
    root = fake_copy("cremad", prepared=False)
    cls = dataset_class("cremad")
    cache = cls.prepare(root, progress=False)
    frames = sorted((cache / "frames" / "1002_DFA_ANG_XX").glob("*.jpg"))  # a 2 s clip
    assert [f.name for f in frames] == ["000.jpg", "001.jpg"]
    stamp = (cache / "audio" / "1002_DFA_ANG_XX.npy").stat().st_mtime_ns
    (cache / "audio" / "1041_TIE_NEU_XX.npy").unlink()  # an interrupted run: one clip missing
    cls.prepare(root, progress=False)
    assert (cache / "audio" / "1041_TIE_NEU_XX.npy").is_file()
    assert (cache / "audio" / "1002_DFA_ANG_XX.npy").stat().st_mtime_ns == stamp  # done clips are skipped
    assert not list(cache.rglob(".*.tmp"))


def test_cremad_labels_and_split(fakes: dict[str, Path]) -> None:
    pytest.importorskip("av")
    cls = dataset_class("cremad")
    train, test = cls(fakes["cremad"], "train"), cls(fakes["cremad"], "test")
    assert {r.name for r in train.samples}.isdisjoint({r.name for r in test.samples})
    names = {r.name: int(train[i][TARGET]) for i, r in enumerate(train.samples)}
    assert names == {"1001_IEO_NEU_XX": 0, "1001_IEO_HAP_LO": 1, "1002_DFA_ANG_XX": 5}


def test_ave_header_classes_and_event_frames(fakes: dict[str, Path]) -> None:
    pytest.importorskip("av")
    from fusion_bench.datamodules.ave import CATEGORIES, parse_annotations

    assert len(CATEGORIES) == 28
    entries, problems = parse_annotations(fakes["ave"] / "AVE_Dataset" / "Annotations.txt")
    assert not problems and len(entries) == 7  # the header line is skipped
    ds = dataset_class("ave")(fakes["ave"], "train", num_frames=2, frame_size=16)
    sample = ds[[r.name for r in ds.samples].index("RUhOCu3LNXM")]
    assert int(sample[TARGET]) == CATEGORIES.index("Church bell")
    assert sample[FRAMES].shape == (2, 3, 16, 16)
    assert ds._pick_frames([Path(f"{i:03d}.jpg") for i in range(10)], (4, 7)) == [Path("004.jpg"), Path("006.jpg")]


# -- CLI ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_bench_cli_smoke(name: str, fakes: dict[str, Path], tmp_path: Path) -> None:
    needs_av(name)
    from fusion_bench.cli import main

    method = "late_fusion" if CASES[name].av else "mean"
    assert main(["bench", "--method", method, "--dataset", name, "--root", str(fakes[name]), "--preset", "smoke",
                 "--seeds", "0", "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb")]) == 0


@pytest.mark.parametrize("name", ["mfi_whu", "cremad"])
def test_data_fake_and_check_cli(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    needs_av(name)
    from fusion_bench.cli import main

    out = tmp_path / name
    assert main(["data", "fake", name, "--out", str(out)]) == 0
    if CASES[name].av:
        assert main(["data", "check", name, "--root", str(out)]) != 0  # not prepared yet
        assert "fusion-bench data prepare" in capsys.readouterr().out
        assert main(["data", "prepare", name, "--root", str(out)]) == 0
    assert main(["data", "check", name, "--root", str(out)]) == 0
    (out / CASES[name].partner).unlink()
    assert main(["data", "check", name, "--root", str(out)]) != 0
    assert str(out / CASES[name].lonely) in capsys.readouterr().out


# -- real data ----------------------------------------------------------------------------------------
REAL = {"lytro": "Lytro", "mefb": "MEFB", "harvard_ct_mri": "MRI_CT", "harvard_pet_mri": "MRI_PET"}


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(REAL))
def test_realdata_copies_load(name: str) -> None:
    root = REALDATA / REAL[name]
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    report = dataset_class(name).check(root)
    assert report.ok, report.format()
    assert report.counts["test"] == 5 and "a/" in report.variant
    ds = dataset_class(name)(root, "test")
    sample = ds[0]
    a, b = ds.modalities
    assert sample[a].shape[-2:] == sample[b].shape[-2:]
    if name == "mefb":
        assert all(float(ds[i]["a"].mean()) < float(ds[i]["b"].mean()) for i in range(len(ds)))


# -- more layouts and quirks --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_plot_draws_a_sample(name: str, fakes: dict[str, Path]) -> None:
    needs_av(name)
    import matplotlib.pyplot as plt

    ds = dataset_class(name)(fakes[name], "test")
    fig = ds.plot(ds[0])
    assert len(fig.axes) >= 2
    plt.close(fig)


def test_mfi_whu_mfifb_copy(fakes: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "mfifb"
    for i, n in enumerate((1, 2), start=1):
        for s, folder in (("A", "source_1"), ("B", "source_2")):
            dst = root / "input" / f"MFI-WHU_{i:02d}" / f"MFI-WHU_{i:02d}_{s}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(fakes["mfi_whu"] / "MFI-WHU" / folder / f"{n}.jpg", dst)
    ds = dataset_class("mfi_whu")(root, "test")
    assert "MFIFB" in ds.variant and len(ds) == 2 and GT not in ds[0]


def test_sice_part_with_data_subfolder(fakes: dict[str, Path], tmp_path: Path) -> None:
    root = Path(shutil.copytree(fakes["sice"], tmp_path / "sice"))
    part = root / "Dataset_Part2"
    (part / "Data").mkdir()
    for seq in ("1", "2"):
        shutil.move(str(part / seq), part / "Data" / seq)
    ds = dataset_class("sice")(root, "test")
    assert len(ds) == 2 and ds[0]["a"].shape == ds[0][GT].shape


def test_cremad_empty_audio_uses_silence_and_says_so(fake_copy) -> None:
    root = fake_copy("cremad", prepared=False)  # skips without the audio extra
    import soundfile as sf

    sf.write(str(root / "AudioWAV" / "1001_IEO_NEU_XX.wav"), np.zeros(0, np.float32), 16_000)
    cache = dataset_class("cremad").prepare(root, progress=False)
    assert "1001_IEO_NEU_XX" in (cache / "notes.tsv").read_text()
    ds = dataset_class("cremad")(root, "train")
    assert "empty audio" in ds.variant
    assert float(ds[[r.name for r in ds.samples].index("1001_IEO_NEU_XX")][AUDIO].max()) < -15  # log(1e-7)


def test_prepare_rejects_a_cache_made_with_other_settings(fake_copy) -> None:
    import json

    root = fake_copy("ave")
    meta = root / av_common.CACHE_DIR / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "hop": 512}))
    with pytest.raises(DatasetError, match="different settings"):
        dataset_class("ave").prepare(root, progress=False)
