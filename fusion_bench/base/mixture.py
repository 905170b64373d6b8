"""MixtureDataModule: train one fusion model on several datasets (tasks) at once.

Datasets differ in modality names (`ir`/`vis` vs `a`/`b`), channel counts and image sizes, so a batch never mixes
them: each batch holds samples of one dataset (`SingleSourceBatchSampler`: each dataset's shuffled batches,
interleaved round-robin). Every sample is re-keyed to the generic ordered pair `x1`, `x2` (the dataset's own
first and second modality), keeps its `name`, and carries `task_id`, the dataset's index in the mixture, which a
multi-task method reads (CMD-CTA's prototypes). Crops, flips, validation hold-outs are each dataset's own
PairedDataModule's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.data.transforms import collate_samples
from fusion_bench.types import NAME

TASK_ID = "task_id"  # long scalar per sample: the index of its dataset in the mixture
MIXTURE_MODALITIES = ("x1", "x2")  # the generic ordered pair of a mixture batch


class TaskView(Dataset):
    """A dataset's samples as {x1, x2, name, task_id}: its ordered modality pair under generic keys."""

    def __init__(self, dataset: Dataset, modalities: tuple[str, str], task_id: int):
        self.dataset, self.modalities, self.task_id = dataset, tuple(modalities), task_id

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        a, b = self.modalities
        return {MIXTURE_MODALITIES[0]: sample[a], MIXTURE_MODALITIES[1]: sample[b], NAME: sample[NAME],
                TASK_ID: torch.tensor(self.task_id, dtype=torch.long)}


class SingleSourceBatchSampler(Sampler[list[int]]):
    """Batches of indices into a ConcatDataset whose parts have `sizes`; every batch comes from one part.

    Each epoch (each `__iter__`), every part's indices are shuffled with a generator seeded by (seed, epoch) and
    cut into batches (the last one may be smaller unless `drop_last`); the parts' batches are then interleaved
    round-robin (part 0, 1, 2, 0, 1, 2, ...; parts that run out drop out), so every task is seen early and often."""

    def __init__(self, sizes: Sequence[int], batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sizes, self.batch_size, self.seed = [int(s) for s in sizes], batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch = 0

    def _batches(self, part: int, offset: int, generator: torch.Generator) -> list[list[int]]:
        size = self.sizes[part]
        order = torch.randperm(size, generator=generator).tolist() if self.shuffle else list(range(size))
        batches = [[offset + i for i in order[s:s + self.batch_size]] for s in range(0, size, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        self.epoch += 1
        offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        queues = [self._batches(p, offsets[p], generator) for p in range(len(self.sizes))]
        for step in range(max((len(q) for q in queues), default=0)):
            for queue in queues:
                if step < len(queue):
                    yield queue[step]

    def __len__(self) -> int:
        count = (math.floor if self.drop_last else math.ceil)
        return sum(count(size / self.batch_size) for size in self.sizes)


class MixtureDataModule(L.LightningDataModule):
    """Train (and validation) data of several PairedDataModules, batches of one dataset each (see module doc)."""

    modalities = MIXTURE_MODALITIES

    def __init__(self, datamodules: Sequence[PairedDataModule], batch_size: int = 4, seed: int = 0,
                 num_workers: int = 0):
        super().__init__()
        if not datamodules:
            raise ValueError("a mixture needs at least one datamodule")
        self.datamodules = list(datamodules)
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers

    @property
    def names(self) -> list[str]:
        return [dm.name for dm in self.datamodules]

    @property
    def num_tasks(self) -> int:
        return len(self.datamodules)

    @property
    def has_validation(self) -> bool:
        return any(dm.has_validation for dm in self.datamodules)

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit"):
            return
        train, val = [], []
        for task_id, dm in enumerate(self.datamodules):
            dm.setup("fit")
            train.append(TaskView(dm.train_set, dm.modalities, task_id))
            if dm.val_set is not None:
                val.append(TaskView(dm.val_set, dm.modalities, task_id))
        self.train_set = ConcatDataset(train)
        self.val_set = ConcatDataset(val) if val else None
        self.train_sizes = [len(part) for part in train]

    def train_dataloader(self) -> DataLoader:
        sampler = SingleSourceBatchSampler(self.train_sizes, self.batch_size, seed=self.seed)
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate_samples, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=self.num_workers,
                          collate_fn=collate_samples, persistent_workers=self.num_workers > 0)
