"""SSVIF's stage-aware early stopping: Lightning's EarlyStopping that acts only in Stage II.

The fusion loss is expected to rise when Stage II adds the CSC term, so a best value kept from Stage I would end
training about `patience` validations after the switch (or stop it in Stage I, before any switch). This callback
ignores Stage I validations, starts from a fresh best value and patience at the first Stage II validation, and
otherwise is `lightning.pytorch.callbacks.EarlyStopping` (checked after each validation). SSVIF returns it from
`configure_callbacks` when its `early_stopping` option is set, so the Trainer needs no extra configuration.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping

EARLY_STOPPING_KEYS = ("monitor", "patience", "mode", "min_delta")


def has_validation(trainer: L.Trainer) -> bool:
    """Whether `trainer.fit` will run validation (a val split / dataloader and limit_val_batches > 0)."""
    if not trainer.limit_val_batches:
        return False
    datamodule = trainer.datamodule
    if datamodule is not None and hasattr(datamodule, "has_validation"):  # fusion_bench's PairedDataModule
        return bool(datamodule.has_validation)
    source = getattr(getattr(trainer.fit_loop.epoch_loop, "val_loop", None), "_data_source", None)
    return source is None or source.is_defined()


class StageTwoEarlyStopping(EarlyStopping):
    """EarlyStopping on `monitor` over Stage II validations only (best value and patience reset at the switch).

    The stage is read from the LightningModule's `stage` attribute (SSVIF: 1 or 2) when a validation ends; a
    module without one counts as Stage II. Raises at setup when training has no validation data.
    """

    def __init__(self, monitor: str = "val/loss_total", patience: int = 10, mode: str = "min", min_delta: float = 0.0,
                 **kwargs: Any):
        super().__init__(monitor=monitor, patience=patience, mode=mode, min_delta=min_delta,
                         check_on_train_epoch_end=False, **kwargs)
        self.stage2_validations = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and not has_validation(trainer):
            raise ValueError(f"SSVIF early_stopping (monitor {self.monitor!r}) needs validation data: the dataset "
                             "has no val split, so set train.val_fraction in the config (or drop "
                             "model.early_stopping)")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._should_skip_check(trainer) or getattr(pl_module, "stage", 2) != 2:
            return
        if self.stage2_validations == 0:  # the switch: forget anything seen before it
            self.wait_count = 0
            self.best_score = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
        self.stage2_validations += 1
        super().on_validation_end(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stage2_validations": self.stage2_validations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.stage2_validations = int(state_dict.get("stage2_validations", 0))
