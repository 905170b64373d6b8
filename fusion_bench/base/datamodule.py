"""PairedDataModule: a thin LightningDataModule over any FusionDataset."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from torch.utils.data import DataLoader

from fusion_bench.data.base import FusionDataset, holdout_indices
from fusion_bench.data.transforms import (
    CROP_OFFSETS,
    CROP_PADS,
    Compose,
    PairedRandomCrop,
    PairedRandomFlip,
    PairedRandomScale,
    collate_samples,
)
from fusion_bench.types import VALID

AUGMENT_OPTIONS = ("scales", "pad", "offset", "valid_mask")


def resolve_root(name: str, root: str | Path | None) -> Path:
    """`--root`, else $FUSION_BENCH_DATA/<name>, else data/<name> (relative to the working directory)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("FUSION_BENCH_DATA")
    if env:
        return Path(env).expanduser() / name
    return Path("data") / name


class PairedDataModule(L.LightningDataModule):
    """Train split with identical random crops/flips on every key; val/test split unchanged.

    A dataset with no `val` split validates on nothing unless `val_fraction` > 0: then a seeded hold-out of that
    fraction of the training samples (without augmentation) is the validation set and the rest trains (e.g.
    SSVIF's 9:1 split). Val/test loaders use batch size 1 because real images differ in size.

    `augment` (a method's `train.augment`; default none, i.e. crop then flip as above) selects the TorchSeg-style
    pipeline of the RGB-X segmentation codebases: `scales` (list: each training sample rescaled by a random factor
    before cropping), `pad` ("corner" or "center": where a crop smaller than `crop_size` is padded), `offset`
    ("uniform" or "torchseg", see `PairedRandomCrop`), `valid_mask` (bool: add the `valid` key, 1 on real pixels,
    0 on padding). With any of them set the order is flip -> rescale -> crop (TorchSeg's order).
    """

    dataset_class: ClassVar[type[FusionDataset]]

    def __init__(self, root: str | Path | None = None, batch_size: int = 4, num_workers: int = 0,
                 crop_size: int | tuple[int, int] | None = None, flip: bool = True, seed: int = 0,
                 val_fraction: float = 0.0, augment: Mapping[str, Any] | None = None, **dataset_kwargs: Any):
        super().__init__()
        self.root = self.resolve_root(root)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.crop_size = crop_size
        self.flip = flip
        self.seed = seed
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = val_fraction
        self.augment = self.check_augment(augment, crop_size)
        self.dataset_kwargs = dataset_kwargs
        self._datasets: dict[str, FusionDataset] = {}  # split -> Dataset without transforms, built once

    def share_datasets(self, cache: dict[str, FusionDataset]) -> None:
        """Use `cache` (split -> Dataset without transforms, same root and options) as this datamodule's dataset
        cache: a runner builds each split once per run and shares it across seeds."""
        self._datasets = cache

    @staticmethod
    def check_augment(augment: Mapping[str, Any] | None, crop_size: Any) -> dict[str, Any]:
        """Validate `augment` (see the class docstring); returns it as a dict (empty for none)."""
        augment = dict(augment or {})
        unknown = set(augment) - set(AUGMENT_OPTIONS)
        if unknown:
            raise ValueError(f"augment: unknown options {sorted(unknown)}; valid: {', '.join(AUGMENT_OPTIONS)}")
        if augment.get("pad", "corner") not in CROP_PADS:
            raise ValueError(f"augment.pad must be one of {CROP_PADS}, got {augment['pad']!r}")
        if augment.get("offset", "uniform") not in CROP_OFFSETS:
            raise ValueError(f"augment.offset must be one of {CROP_OFFSETS}, got {augment['offset']!r}")
        if augment.get("offset") == "torchseg" and augment.get("pad") != "center":
            raise ValueError("augment.offset 'torchseg' needs augment.pad 'center'")
        scales = augment.get("scales")
        if scales is not None and (not isinstance(scales, (list, tuple)) or not scales
                                   or not all(isinstance(v, (int, float)) and v > 0 for v in scales)):
            raise ValueError(f"augment.scales must be a non-empty list of positive factors, got {scales!r}")
        if (augment.get("valid_mask") or augment.get("pad") or augment.get("offset")) and not crop_size:
            raise ValueError("augment.pad/offset/valid_mask need a crop_size")
        return augment

    @classmethod
    def resolve_root(cls, root: str | Path | None) -> Path:
        return resolve_root(cls.dataset_class.name, root)

    # description used by methods and the runner
    @property
    def name(self) -> str:
        return self.dataset_class.name

    @property
    def modalities(self) -> tuple[str, str]:
        return self.dataset_class.modalities

    @property
    def task(self):
        return self.dataset_class.task

    def dataset(self, split: str, train_transforms: bool = False) -> FusionDataset:
        transforms = None
        if train_transforms and self.augment:  # TorchSeg order: flip, rescale, crop (+ pad)
            parts = [PairedRandomFlip()] if self.flip else []
            if self.augment.get("scales"):
                parts.append(PairedRandomScale(self.augment["scales"]))
            if self.crop_size:
                parts.append(PairedRandomCrop(self.crop_size, pad=self.augment.get("pad", "corner"),
                                              offset=self.augment.get("offset", "uniform"),
                                              valid_key=VALID if self.augment.get("valid_mask") else None))
            transforms = Compose(*parts) if parts else None
        elif train_transforms:
            parts = []
            if self.crop_size:
                parts.append(PairedRandomCrop(self.crop_size))
            if self.flip:
                parts.append(PairedRandomFlip())
            transforms = Compose(*parts) if parts else None
        base = self._datasets.get(split)
        if base is None:  # each split is scanned (and integrity-checked) once; transformed views share its index
            base = self._datasets[split] = self.dataset_class(self.root, split, **self.dataset_kwargs)
        if transforms is None:
            return base
        view = copy.copy(base)
        view.transforms = transforms
        return view

    def available_splits(self) -> tuple[str, ...]:
        """The splits present at this root (a layout may lack some of the dataset's splits)."""
        return tuple(self.dataset_class.available_splits(self.root, **self.dataset_kwargs))

    def setup(self, stage: str | None = None) -> None:
        splits = self.available_splits()
        if stage in (None, "fit"):
            self.train_set = self.dataset("train", train_transforms=True)
            self.val_set = self.dataset("val") if "val" in splits else None
            if self.val_set is None and self.val_fraction > 0:
                train_idx, val_idx = holdout_indices(len(self.train_set), self.val_fraction, self.seed)
                self.val_set = torch.utils.data.Subset(self.dataset("train"), val_idx)
                self.train_set = torch.utils.data.Subset(self.train_set, train_idx)
        if stage in (None, "test", "predict"):
            self.test_set = self.dataset("test")

    @property
    def has_validation(self) -> bool:
        return "val" in self.available_splits() or self.val_fraction > 0

    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=collate_samples, generator=generator, drop_last=False,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return self._loader(self.val_set, 1, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, 1, shuffle=False)
