"""The audio-visual methods through the CLI on fake CREMA-D / AVE copies: one row per method, and bad input (no
audio stream, corrupt video, unknown class, no classes) stopped with exit 2, the file named, no leaderboard row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fusion_bench.benchmark.results import read_rows
from fusion_bench.registry import get_datamodule

AV_METHODS = ["infobridge", "ogm_ge", "pmr", "agm", "mmpareto", "infonce", "unimodal"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Prepared fake CREMA-D and AVE trees (tests copy them before changing anything)."""
    pytest.importorskip("av")
    pytest.importorskip("soundfile")
    base = tmp_path_factory.mktemp("av_fakes")
    roots = {}
    for name in ("cremad", "ave"):
        dataset = get_datamodule(name).dataset_class
        roots[name] = dataset.make_fake(base / name, seed=0)
        dataset.prepare(roots[name], progress=False)
    return roots


def bench(cli, capsys, tmp_path: Path, dataset: str, root: Path, methods: str, *extra: str) -> tuple[int, str]:
    code, _, err = cli(capsys, "bench", "--method", methods, "--dataset", dataset, "--root", root, "--device", "cpu",
                       "--seeds", "0", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb",
                       "--no-progress", *extra)
    return code, err


def test_every_av_method_benches_on_fake_cremad(prepared, cli, capsys, tmp_path):
    # plumbing test: two optimiser steps per method (the smoke preset's budget is for synthetic-av)
    code, err = bench(cli, capsys, tmp_path, "cremad", prepared["cremad"], ",".join(AV_METHODS),
                      "--set", "train.max_steps=2")
    assert code == 0, err
    rows = read_rows(tmp_path / "lb" / "raw" / "cremad.csv")
    assert sorted(r["method"] for r in rows) == sorted(AV_METHODS)
    for row in rows:
        assert 0 <= float(row["cls_acc"]) <= 1 and row["cls_macro_f1"] != ""
        if row["method"] != "unimodal":
            assert row["acc_audio"] != "" and row["acc_frames"] != ""
    unimodal = next(r for r in rows if r["method"] == "unimodal")
    assert unimodal["acc_audio"] == unimodal["cls_acc"]


def copy_of(prepared: dict[str, Path], name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(prepared[name], tmp_path / name))


def assert_refused(cli, capsys, tmp_path, dataset, root, *needles: str) -> None:
    code, err = bench(cli, capsys, tmp_path, dataset, root, "infobridge")
    assert code == 2, err
    assert len(err.strip().splitlines()) >= 1 and all(n in err for n in needles), err
    assert not (tmp_path / "lb" / "raw" / f"{dataset}.csv").exists()
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_clip_without_audio_stream(prepared, cli, capsys, tmp_path):
    import numpy as np

    from fusion_bench.datamodules.av_common import write_tiny_video

    root = copy_of(prepared, "ave", tmp_path)
    clip = root / "AVE_Dataset" / "AVE" / "fake_racer1.mp4"  # a test clip
    write_tiny_video(clip, 2.0, np.random.default_rng(0), audio_codec=None, container_format="mp4")
    shutil.rmtree(root / "fusion_bench_cache" / "frames" / "fake_racer1")  # forget the earlier preparation
    code, _, err = cli(capsys, "data", "prepare", "ave", "--root", root)
    assert code == 0, err
    assert_refused(cli, capsys, tmp_path, "ave", root, str(clip), "no audio stream")


def test_corrupt_video(prepared, cli, capsys, tmp_path):
    root = copy_of(prepared, "cremad", tmp_path)
    video = root / "VideoFlash" / "1001_IEO_HAP_LO.flv"  # a training clip
    video.write_bytes(b"not a video at all")
    (root / "fusion_bench_cache" / "audio" / "1001_IEO_HAP_LO.npy").unlink()  # forget the earlier preparation
    code, _, err = cli(capsys, "data", "prepare", "cremad", "--root", root)
    assert code == 0, err
    assert_refused(cli, capsys, tmp_path, "cremad", root, "1001_IEO_HAP_LO", "preparation failed")


def test_class_name_not_in_the_list(prepared, cli, capsys, tmp_path):
    root = copy_of(prepared, "cremad", tmp_path)
    for folder, ext in (("AudioWAV", ".wav"), ("VideoFlash", ".flv")):
        shutil.copy(root / folder / f"1001_IEO_NEU_XX{ext}", root / folder / f"1001_IEO_XYZ_XX{ext}")
    assert_refused(cli, capsys, tmp_path, "cremad", root, str(root / "AudioWAV" / "1001_IEO_XYZ_XX.wav"), "XYZ")


def test_dataset_without_classes(prepared, cli, capsys, tmp_path, monkeypatch):
    dataset = get_datamodule("cremad").dataset_class
    monkeypatch.setattr(dataset, "class_names", None)
    assert_refused(cli, capsys, tmp_path, "cremad", prepared["cremad"], "needs class labels",
                   str(prepared["cremad"]))


def test_set_overrides_a_preset_value_and_the_hash(cli, capsys, tmp_path):
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.benchmark.spec import BenchSpec

    plain = prepare(BenchSpec(method="infobridge", dataset="synthetic-av"))
    ablation = prepare(BenchSpec(method="infobridge", dataset="synthetic-av",
                                 overrides={"model.condition": "constant", "model.negatives": "any"}))
    assert ablation.config["model"]["condition"] == "constant" and plain.config["model"]["condition"] == "class"
    assert ablation.config_hash != plain.config_hash
    assert ablation.config["optim"] == plain.config["optim"]
    code, _, err = cli(capsys, "bench", "--method", "infobridge", "--dataset", "synthetic-av", "--set", "alpha=0",
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 2 and "SECTION.KEY" in err and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_paper_presets_run_one_step_on_fake_cremad(prepared, cli, capsys, tmp_path):
    """The paper presets (ResNet-18 encoders from scratch, SGD + cosine, OGM-GE init, ImageNet-normalised frames)
    build and take one optimiser step on CPU; the budget is cut to one step of batch 3 (plumbing)."""
    code, err = bench(cli, capsys, tmp_path, "cremad", prepared["cremad"], ",".join(["late_fusion", *AV_METHODS]),
                      "--preset", "paper", "--set", "train.max_steps=1", "--set", "train.max_epochs=1",
                      "--set", "train.batch_size=3")
    assert code == 0, err
    rows = read_rows(tmp_path / "lb" / "raw" / "cremad.csv")
    assert len(rows) == 8 and all(r["preset"] == "paper" for r in rows)
    assert all(float(r["params_m"]) > 22 for r in rows if r["method"] != "unimodal")  # two ResNet-18s (11.2 M each)


def test_balance_protocol_on_fake_cremad(prepared, cli, capsys, tmp_path):
    # plumbing: the shared recipe (two steps here) and the probes' columns on the real CREMA-D layout
    code, err = bench(cli, capsys, tmp_path, "cremad", prepared["cremad"], "late_fusion,ogm_ge", "--protocol",
                      "balance", "--set", "train.max_steps=2")
    assert code == 0, err
    rows = read_rows(tmp_path / "lb" / "raw" / "cremad.csv")
    assert sorted(r["method"] for r in rows) == ["late_fusion", "ogm_ge"]
    for row in rows:
        assert row["protocol"] == "balance" and row["overrides"] == '{"train.max_steps":2}'
        assert 0 <= float(row["probe_audio"]) <= 1 and 0 <= float(row["probe_frames"]) <= 1
