"""Training one model on a mixture of datasets: single-source batches with task ids, and `bench --mixture` through
the CLI (one row per dataset, the mixture recorded; bad mixtures exit 2 before writing anything)."""

from __future__ import annotations

import csv

import pytest
import torch

from fusion_bench.base.mixture import TASK_ID, MixtureDataModule, SingleSourceBatchSampler
from fusion_bench.benchmark.results import read_rows
from fusion_bench.data.synthetic import SyntheticIVIFDataModule, SyntheticMFIFDataModule

MIX = ["synthetic-ivif", "synthetic-mfif", "synthetic-meif"]


def test_batches_come_from_one_source_round_robin_and_cover_every_sample():
    sampler = SingleSourceBatchSampler([5, 3, 7], batch_size=2, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2 + 4
    sources = [0 if b[0] < 5 else 1 if b[0] < 8 else 2 for b in batches]
    assert sources == [0, 1, 2, 0, 1, 2, 0, 2, 2], "round-robin; exhausted sources drop out"
    for batch, source in zip(batches, sources):
        low, high = [(0, 5), (5, 8), (8, 15)][source]
        assert all(low <= i < high for i in batch), "a batch never mixes datasets"
    assert sorted(i for b in batches for i in b) == list(range(15))
    again = SingleSourceBatchSampler([5, 3, 7], batch_size=2, seed=0)
    assert list(again) == batches, "seeded"
    assert list(again) != batches, "a new order each epoch"
    assert len(SingleSourceBatchSampler([5, 3], 2, drop_last=True)) == 3


def test_mixture_datamodule_keys_channels_and_task_ids():
    parts = [SyntheticIVIFDataModule(batch_size=3, crop_size=32, seed=0),
             SyntheticMFIFDataModule(batch_size=3, crop_size=32, seed=0)]
    mixture = MixtureDataModule(parts, batch_size=3, seed=0)
    mixture.setup("fit")
    assert mixture.modalities == ("x1", "x2") and mixture.num_tasks == 2 and mixture.has_validation
    seen = set()
    for batch in list(mixture.train_dataloader())[:4]:
        task = int(batch[TASK_ID][0])
        assert torch.equal(batch[TASK_ID], torch.full_like(batch[TASK_ID], task))
        channels = (batch["x1"].shape[1], batch["x2"].shape[1])
        assert channels == ((1, 3) if task == 0 else (3, 3)), "ivif: ir (1) + vis (3); mfif: a, b (3 each)"
        assert batch["x1"].shape[-2:] == (32, 32)
        seen.add(task)
    assert seen == {0, 1}
    val = next(iter(mixture.val_dataloader()))
    assert set(val) == {"x1", "x2", "name", TASK_ID}


def test_mixture_bench_writes_one_row_per_dataset(cli, capsys, tmp_path):
    lb = tmp_path / "lb"
    code, out, err = cli(capsys, "bench", "--method", "cmd_cta", "--dataset", ",".join(MIX), "--mixture", "--device",
                         "cpu", "--out", tmp_path / "runs", "--leaderboard-dir", lb, "--no-progress")
    assert code == 0, err
    hashes = set()
    for dataset in MIX:
        (row,) = read_rows(lb / "raw" / f"{dataset}.csv")
        assert row["dataset"] == dataset and row["method"] == "cmd_cta"
        assert row["train_mixture"] == "+".join(MIX)
        assert float(row["n_images"]) > 0 and row["EN"]
        hashes.add(row["config_hash"])
    assert len(hashes) == 3, "each scored dataset has its own config hash, all covering the mixture"
    (seed_dir,) = (tmp_path / "runs" / "cmd_cta" / f"mix-{'+'.join(MIX)}" / "smoke").glob("*/seed0")
    assert (seed_dir / "model.pt").is_file()
    for dataset in MIX:
        assert (seed_dir / dataset / "row.csv").is_file() and any((seed_dir / dataset / "fused").iterdir())
    logged = list(csv.DictReader((seed_dir / "logs" / "metrics.csv").open()))
    align = [float(r["train/loss_align"]) for r in logged if r.get("train/loss_align")]
    assert align and align[-1] > 0, "three tasks: prototypes K = 3 and the alignment loss is active"
    assert "(trained on synthetic-ivif+synthetic-mfif+synthetic-meif)" in out
    # an ordinary run of the same method and dataset is a different experiment
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "synthetic-ivif", "--device", "cpu",
                       "--out", tmp_path / "runs", "--leaderboard-dir", lb, "--no-progress")
    assert code == 0, err
    ordinary = [r for r in read_rows(lb / "raw" / "synthetic-ivif.csv") if r["method"] == "mean"]
    assert ordinary[0]["train_mixture"] == ""


@pytest.mark.parametrize("method, datasets, message", [
    ("cmd_cta", "synthetic-ivif,no-such-data", "unknown dataset"),
    ("cmd_cta", "synthetic-ivif,synthetic-av", "fusion datasets only"),
    ("cmd_cta", "synthetic-ivif", "at least two"),
    ("cmd_cta", "synthetic-ivif,synthetic-ivif", "once"),
    ("mean", "synthetic-ivif,synthetic-mfif", "trainable"),
    ("seafusion", "synthetic-ivif,synthetic-mfif", "handles"),
])
def test_bad_mixture_exits_2_and_writes_nothing(cli, capsys, tmp_path, method, datasets, message):
    code, _, err = cli(capsys, "bench", "--method", method, "--dataset", datasets, "--mixture", "--device", "cpu",
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress")
    assert code == 2
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()
