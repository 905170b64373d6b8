"""The benchmark runner end to end on the embedded synthetic data: rows, outputs, determinism, interruption."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from fusion_bench.benchmark import scoring
from fusion_bench.benchmark.evaluation import _Scorer
from fusion_bench.benchmark.results import EFFICIENCY_COLUMNS, ID_COLUMNS, PROVENANCE_COLUMNS, read_rows
from fusion_bench.benchmark.trainer_settings import early_stopping_callbacks
from fusion_bench.data.io import read_image
from fusion_bench.errors import BenchError


def _bench(cli, capsys, tmp_path, *extra):
    return cli(capsys, "bench", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress",
               *extra)


def test_row_contract_and_outputs(cli, capsys, tmp_path):
    code, out, err = _bench(cli, capsys, tmp_path, "--method", "max", "--dataset", "synthetic-ivif")
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    for column in (*ID_COLUMNS, *EFFICIENCY_COLUMNS, *PROVENANCE_COLUMNS, "EN", "SD", "SF", "AG"):
        assert column in row, column
    assert row["metric_dialect"] == "mmif" and row["preset"] == "smoke" and row["task"] == "ivif"
    run_dir = (tmp_path / "runs" / "max" / "synthetic-ivif" / "smoke" / row["config_hash"]
               / f"test-{row['split_hash']}" / "seed0")  # the test split's identity is part of the run directory
    fused = sorted((run_dir / "fused").glob("*.png"))
    assert len(fused) == int(row["n_images"]) == 16
    assert read_image(fused[0], mode=None).shape[0] == 3, "colour restored from the visible image"
    per_image = pd.read_csv(run_dir / "metrics_per_image.csv")
    assert float(row["EN"]) == pytest.approx(per_image["EN"].mean())
    assert "max" in out and "EN" in out, "the leaderboard table is printed at the end"
    timings = json.loads((run_dir / "timings.json").read_text())["seconds"]
    assert {"fuse", "score", "gflops", "other", "total"} <= set(timings) and "fit" not in timings
    assert timings["total"] >= timings["fuse"] + timings["score"] > 0
    assert "where the time went" in out and "max synthetic-ivif seed0" in out, "the timing summary is printed"


def test_same_command_twice_gives_identical_metrics(cli, capsys, tmp_path):
    args = ("--method", "fusion_cnn", "--dataset", "synthetic-ivif")
    assert _bench(cli, capsys, tmp_path, *args)[0] == 0
    assert _bench(cli, capsys, tmp_path, *args)[0] == 0
    first, second = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    metrics = [c for c in first if c in ("EN", "SD", "SF", "AG", "MI", "Qabf", "SSIM", "VIF")]
    assert metrics
    assert {m: first[m] for m in metrics} == {m: second[m] for m in metrics}
    seed_dirs = [p for p in (tmp_path / "runs" / "fusion_cnn" / "synthetic-ivif" / "smoke").glob("*/test-*/seed0*")
                 if p.is_dir()]
    assert len(seed_dirs) == 2, "the earlier run directory is kept, not overwritten"
    fit_s = [json.loads((d / "timings.json").read_text())["seconds"]["fit"] for d in seed_dirs]
    assert all(s > 0 for s in fit_s)


def test_interrupted_run_leaves_no_row(cli, capsys, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_Scorer, "finish", interrupted)
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--dataset", "synthetic-ivif")
    assert code == 130
    assert "no row" in err
    assert read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv") == []


def test_reference_metrics_when_dataset_has_ground_truth(cli, capsys, tmp_path):
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "laplacian", "--dataset", "synthetic-mfif")
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-mfif.csv")
    assert any(c.endswith("_ref") or "ref" in c.lower() for c in row), sorted(row)


def test_classification_row(cli, capsys, tmp_path):
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "late_fusion", "--dataset", "synthetic-av")
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-av.csv")
    for column in ("cls_acc", "cls_macro_f1", "acc_audio", "acc_frames", "probe_audio", "probe_frames"):
        assert 0.0 <= float(row[column]) <= 1.0
    assert float(row["cls_acc"]) > 1 / 6, "the smoke classifier must beat chance on 6 classes"


def test_train_then_fuse_with_saved_weights(cli, capsys, tmp_path):
    weights = tmp_path / "w" / "cnn.pt"
    code, out, err = cli(capsys, "train", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--out", weights,
                         "--no-progress")
    assert code == 0, err
    assert weights.is_file()
    code, _, err = cli(capsys, "fuse", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--out",
                       tmp_path / "fused", "--no-progress")
    assert code == 2 and "--weights" in err
    code, _, err = cli(capsys, "fuse", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--weights", weights,
                       "--out", tmp_path / "fused", "--no-progress")
    assert code == 0, err
    assert len(list((tmp_path / "fused").glob("*.png"))) == 16
    code, _, err = cli(capsys, "fuse", "--method", "laplacian", "--dataset", "synthetic-ivif", "--weights", weights,
                       "--out", tmp_path / "other", "--no-progress")
    assert code == 2 and "fusion_cnn" in err


def test_val_fraction_holds_out_a_seeded_part_of_train():
    from fusion_bench.registry import get_datamodule

    base = get_datamodule("synthetic-mfif")

    class NoVal(base.dataset_class):  # a dataset without an official val split (like MSRS, FMB)
        splits = ("train", "test")

    class cls(base):
        dataset_class = NoVal

    dm = cls(root=cls.resolve_root(None), crop_size=32, seed=3, val_fraction=0.25)
    dm.setup("fit")
    n = len(dm.dataset("train"))
    assert len(dm.val_set) == round(n * 0.25) and len(dm.train_set) + len(dm.val_set) == n
    assert set(dm.val_set.indices).isdisjoint(dm.train_set.indices)
    again = cls(root=cls.resolve_root(None), seed=3, val_fraction=0.25)
    again.setup("fit")
    assert again.val_set.indices == dm.val_set.indices and dm.has_validation
    assert dm.val_set[0]["a"].shape[-2:] != (32, 32)  # validation samples are not cropped
    with pytest.raises(ValueError, match="val_fraction"):
        cls(root=cls.resolve_root(None), val_fraction=1.0)


def test_early_stopping_needs_validation():
    assert early_stopping_callbacks({}, False, "m") == []
    (cb,) = early_stopping_callbacks({"early_stopping": {"patience": 3}}, True, "m")
    assert (cb.monitor, cb.patience, cb.mode) == ("val/loss", 3, "min")
    with pytest.raises(BenchError, match="set train.val_fraction"):
        early_stopping_callbacks({"early_stopping": {"patience": 3}}, False, "m")


def test_gflops_count_attention_on_cpu():
    """Fused CPU attention has no flop formula; counting runs the math kernel so QK^T and AV are counted."""
    import torch

    from fusion_bench.benchmark.profiling import count_gflops

    q = torch.randn(1, 4, 64, 16)
    flops = count_gflops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    assert flops * 1e9 == 2 * (2 * 4 * 64 * 64 * 16)


def test_each_split_built_once_per_run_and_each_image_decoded_once_per_seed(cli, capsys, tmp_path, monkeypatch,
                                                                             toy_registered):
    """Issue 16: fuse, score and the downstream evaluators' labels come from one decode per image and seed; each
    split's Dataset is built once per run (shared by the seeds)."""
    from collections import Counter

    from toy_dataset import ToyDataset, make_toy

    from fusion_bench.types import MASK

    root = make_toy(tmp_path / "toy")
    built, decoded = Counter(), Counter()
    init, load = ToyDataset.__init__, ToyDataset._load

    def counting_init(self, root, split="train", *args, **kwargs):
        built[split] += 1
        init(self, root, split, *args, **kwargs)

    def counting_load(self, ref):
        decoded[(self.split, ref.name)] += 1
        return load(self, ref)

    def evaluators(configs, fused, datasets, seed, device, log_root, progress, numerics_mode=None):  # as `seg` reads
        assert list(configs) == ["seg"]
        for split in ("train", "test"):
            for i in range(len(datasets[split])):
                assert datasets[split][i][MASK].dtype == torch.uint8
            assert sorted(p.stem for p in fused[split].glob("*.png")) == [s.name for s in datasets[split].samples]
        return {"seg_miou": 0.5, "seg_pixel_acc": 0.5}, [], {"seg": 0.1}

    import torch

    monkeypatch.setattr(ToyDataset, "__init__", counting_init)
    monkeypatch.setattr(ToyDataset, "_load", counting_load)
    monkeypatch.setattr(scoring, "run_evaluators", evaluators)
    code, out, err = _bench(cli, capsys, tmp_path, "--method", "mean", "--dataset", "toy", "--root", root,
                            "--seeds", "0,1", "--downstream", "seg", "--no-downstream-baselines")
    assert code == 0, err
    assert dict(built) == {"test": 1, "train": 1}
    assert set(decoded.values()) == {2} and len(decoded) == 6, decoded  # 3 test + 3 train samples, 2 seeds
    rows = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    assert [r["seg_miou"] for r in rows] == ["0.5", "0.5"]
    assert "fuse_train" in out and "seg" in out
