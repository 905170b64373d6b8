"""The dataset contract on a toy tree: pairing, problems with paths, transforms applied to every key."""

from __future__ import annotations

import pytest
import torch
from toy_dataset import ToyDataModule, ToyDataset, make_toy

from fusion_bench.data.transforms import (
    Compose,
    PairedRandomCrop,
    PairedRandomFlip,
    PairedRandomScale,
    collate_samples,
)
from fusion_bench.errors import DatasetIntegrityError, DatasetNotFoundError
from fusion_bench.types import VALID


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
    from fusion_bench.datamodules.fake.common import save

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


def test_center_crop_pads_symmetrically_and_marks_the_valid_region():
    """TorchSeg's random_crop_pad_to_shape: crop, then pad the crop centred (extra pixel bottom/right)."""
    base = torch.arange(5 * 9, dtype=torch.float32).view(1, 5, 9)
    sample = {"ir": base, "mask": base[0].long(), "boxes": torch.tensor([[0.0, 0.0, 9.0, 5.0]]),
              "labels": torch.tensor([1])}
    torch.manual_seed(0)
    out = PairedRandomCrop((8, 6), pad="center", valid_key=VALID)(sample)
    assert out["ir"].shape == (1, 8, 6) and out[VALID].shape == (8, 6)
    rows = out[VALID].sum(1)
    assert rows.tolist() == [0.0] + [6.0] * 5 + [0.0, 0.0], "3 padded rows: 1 on top, 2 at the bottom"
    assert ((out["mask"] == 255) == (out[VALID] == 0)).all() and (out["ir"][0][out[VALID] == 0] == 0).all()
    left = int(out["ir"][0, 1, 0]) % 9  # the window's first column in the source
    assert torch.equal(out["ir"][0, 1:6], base[0, :, left:left + 6])
    assert out["boxes"].tolist() == [[0.0, 1.0, 6.0, 6.0]]


def test_torchseg_offset_can_overhang_by_one_and_corner_mode_is_unchanged():
    sample = {"ir": torch.ones(1, 10, 4)}
    crop = PairedRandomCrop((8, 4), pad="center", offset="torchseg", valid_key=VALID)
    torch.manual_seed(1)
    counts = [int(crop(sample)[VALID].sum()) for _ in range(60)]
    assert set(counts) == {32, 28}, "offsets 0..3: offset 3 leaves 7 rows and one padded row"
    with pytest.raises(ValueError, match="needs pad 'center'"):
        PairedRandomCrop(4, offset="torchseg")
    torch.manual_seed(2)  # default path: same random draws and result as before the new options
    small = {"ir": torch.ones(1, 4, 4), "mask": torch.zeros(4, 4, dtype=torch.long)}
    out = PairedRandomCrop(6)(small)
    assert VALID not in out and (out["mask"][:4, :4] == 0).all() and (out["mask"] == 255).sum() == 20


def test_random_scale_floors_the_size_and_keeps_labels_nearest():
    mask = torch.tensor([[0, 1], [2, 3]]).repeat_interleave(4, 0).repeat_interleave(5, 1)  # 8 x 10
    sample = {"ir": torch.rand(1, 8, 10), "vis": torch.rand(3, 8, 10), "mask": mask,
              "boxes": torch.tensor([[2.0, 2.0, 6.0, 4.0]]), "labels": torch.tensor([0])}
    out = PairedRandomScale([0.75])(sample)
    assert out["ir"].shape == (1, 6, 7) and out["vis"].shape == (3, 6, 7) and out["mask"].shape == (6, 7)
    assert out["mask"].dtype == torch.long and set(out["mask"].unique().tolist()) == {0, 1, 2, 3}
    assert torch.allclose(out["boxes"], torch.tensor([[1.4, 1.5, 4.2, 3.0]]))
    with pytest.raises(ValueError, match="positive"):
        PairedRandomScale([])


def test_datamodule_augment_options(tmp_path):
    root = make_toy(tmp_path)
    dm = ToyDataModule(root=root, batch_size=2, crop_size=(40, 80),
                       augment={"scales": [0.5], "pad": "center", "offset": "torchseg", "valid_mask": True})
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch[VALID].shape == (2, 40, 80) and batch[VALID].sum((1, 2)).tolist() == [24 * 32] * 2
    assert ((batch["mask"] == 255) == (batch[VALID] == 0)).all()
    with pytest.raises(ValueError, match="unknown options"):
        ToyDataModule(root=root, crop_size=8, augment={"scale": [1.0]})
    with pytest.raises(ValueError, match="need a crop_size"):
        ToyDataModule(root=root, augment={"valid_mask": True})
