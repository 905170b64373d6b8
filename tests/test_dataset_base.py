"""The dataset contract on a toy tree: pairing, problems with paths, transforms applied to every key."""

from __future__ import annotations

import pytest
import torch
from toy_dataset import ToyDataModule, ToyDataset, make_toy

from fusion_bench.data.base import DatasetIntegrityError, DatasetNotFoundError
from fusion_bench.data.transforms import Compose, PairedRandomCrop, PairedRandomFlip, collate_samples


def test_loads_and_hashes(tmp_path):
    ds = ToyDataset(make_toy(tmp_path), "train")
    sample = ds[0]
    assert sample["ir"].shape == (1, 48, 64) and sample["vis"].shape == (3, 48, 64)
    assert sample["mask"].dtype == torch.long
    assert len(ds.split_hash()) == 16 and ds.split_hash() == ToyDataset(tmp_path, "train").split_hash()


def test_missing_modality_folder(tmp_path):
    root = make_toy(tmp_path)
    for f in (root / "train" / "vis").iterdir():
        f.unlink()
    (root / "train" / "vis").rmdir()
    with pytest.raises(DatasetNotFoundError, match="train/vis"):
        ToyDataset(root, "train")


def test_unpaired_file_is_an_error_not_skipped(tmp_path):
    root = make_toy(tmp_path)
    (root / "train" / "ir" / "000.png").rename(root / "train" / "ir" / "999.png")
    with pytest.raises(DatasetIntegrityError) as info:
        ToyDataset(root, "train")
    text = str(info.value)
    assert "999.png: no partner" in text and "000.png: no partner" in text


def test_out_of_range_mask_and_size_mismatch_name_the_file(tmp_path):
    root = make_toy(tmp_path)
    from datamodules.fake.common import save

    save(root / "train" / "mask" / "001.png", torch.full((48, 64), 7, dtype=torch.uint8).numpy())
    save(root / "train" / "vis" / "002.png", torch.zeros((10, 10, 3), dtype=torch.uint8).numpy())
    ds = ToyDataset(root, "train")
    with pytest.raises(DatasetIntegrityError, match=r"mask/001.png: label values \[7\]"):
        ds[1]
    with pytest.raises(DatasetIntegrityError, match="size mismatch"):
        ds[2]


def test_paired_crop_and_flip_are_identical_across_keys():
    torch.manual_seed(0)
    base = torch.arange(20 * 30, dtype=torch.float32).view(1, 20, 30)
    sample = {"ir": base.clone(), "vis": base.repeat(3, 1, 1), "mask": base[0].long(),
              "boxes": torch.tensor([[2.0, 2.0, 12.0, 10.0]]), "labels": torch.tensor([1])}
    out = Compose(PairedRandomCrop(16), PairedRandomFlip(p=1.0))(sample)
    assert out["ir"].shape == (1, 16, 16) and out["mask"].shape == (16, 16)
    assert torch.equal(out["ir"][0], out["vis"][1]) and torch.equal(out["ir"][0].long(), out["mask"])
    assert out["boxes"].shape[1] == 4 and (out["boxes"] >= 0).all() and (out["boxes"] <= 16).all()


def test_crop_pads_small_images_with_ignore_label():
    sample = {"ir": torch.ones(1, 4, 4), "mask": torch.zeros(4, 4, dtype=torch.long)}
    out = PairedRandomCrop(6)(sample)
    assert out["ir"].shape == (1, 6, 6) and (out["mask"] == 255).sum() == 36 - 16


def test_datamodule_batches(tmp_path):
    dm = ToyDataModule(root=make_toy(tmp_path), batch_size=2, crop_size=16)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["ir"].shape == (2, 1, 16, 16) and batch["vis"].shape == (2, 3, 16, 16)
    assert isinstance(batch["name"], list)
    assert collate_samples([{"boxes": torch.zeros(1, 4)}, {"boxes": torch.zeros(2, 4)}])["boxes"][1].shape == (2, 4)
