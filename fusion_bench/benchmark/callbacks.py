"""The Lightning callbacks of a fit: one progress bar over the whole fit, channels-last batches, pinned numerics in
every training process, a checkpoint on an interrupted fit, the fit's settings recorded in its checkpoints, a stop at
a non-finite training loss, and the full weights gathered from a sharded strategy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from tqdm.auto import tqdm

from fusion_bench import numerics
from fusion_bench.errors import NonFiniteError


class FitProgress(L.Callback):
    """One progress bar over the whole fit (optimizer steps of all epochs) with an ETA and the latest loss;
    replaces Lightning's per-epoch bar, whose ETA covers one epoch only."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        total = trainer.estimated_stepping_batches
        self.bar = tqdm(total=None if math.isinf(total) else int(total), desc=self.desc, unit="step", leave=False)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.bar is None:
            return
        self.bar.update(max(0, trainer.global_step - self.bar.n))
        loss = trainer.callback_metrics.get("train/loss", trainer.callback_metrics.get("loss"))
        if loss is not None:
            self.bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def channels_last(batch: Any) -> Any:
    """The 4-D floating-point tensors of a batch (dicts and lists changed in place) in torch.channels_last."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 and batch.is_floating_point() \
            else batch
    if isinstance(batch, dict):
        for key, value in batch.items():
            batch[key] = channels_last(value)
    elif isinstance(batch, list):
        batch[:] = [channels_last(value) for value in batch]
    return batch


class ChannelsLast(L.Callback):
    """`train.channels_last`: the training and validation batches in torch.channels_last (on the device, before the
    step); `training.fit_method` converts the method's networks before the fit."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        channels_last(batch)

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        channels_last(batch)


class PinNumerics(L.Callback):
    """Applies the pinned runtime switches (fusion_bench.numerics) in every training process, including the ones
    `ddp_spawn` starts (they inherit the environment but not oneDNN/thread settings)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        numerics.apply_runtime()


class CheckpointOnInterrupt(L.Callback):
    """Saves `path` when the fit stops on an exception (Ctrl-C, a signal Lightning turns into one, an error), so that
    `--resume` continues from there. (Lightning's OnExceptionCheckpoint would also make every later fit resume from
    its file without being asked.)"""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, NonFiniteError):  # non-finite weights are nothing to resume from
            trainer.save_checkpoint(self.path)


class RecordSettings(L.Callback):
    """Writes what the fit is made with (`record`: method, preset, config) into every checkpoint it saves, under
    `key`, so that `--resume` can refuse a checkpoint of another method or other settings (weights.py)."""

    def __init__(self, key: str, record: dict[str, Any]):
        self.key, self.record = key, record

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.key] = self.record


class FiniteLoss(L.Callback):
    """Stops the fit with a NonFiniteError naming the step whose training loss is NaN or Inf (`method`: the name in
    the message). The check reads the loss the training step returned (else the logged `train/loss`); on a GPU
    the flags stay on the device and are read every `every` steps (and at the end), so the check adds no sync per
    step, and the step it names is still the first bad one."""

    def __init__(self, method: str, every: int = 25):
        self.method, self.every = method, every
        self.pending: list[tuple[int, torch.Tensor]] = []

    @staticmethod
    def _loss(trainer: L.Trainer, outputs: Any) -> torch.Tensor | None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            loss = trainer.callback_metrics.get("train/loss")
        return loss.detach() if isinstance(loss, torch.Tensor) else None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = self._loss(trainer, outputs)
        if loss is None:
            return
        self.pending.append((trainer.global_step, torch.isfinite(loss).all()))
        if loss.device.type == "cpu" or len(self.pending) >= self.every:
            self.check()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check()

    def check(self) -> None:
        if not self.pending:
            return
        steps, flags = zip(*self.pending)
        self.pending = []
        finite = torch.stack(flags).cpu()
        if not bool(finite.all()):
            step = steps[int((~finite).nonzero()[0])]
            raise NonFiniteError(f"method {self.method!r}: the training loss is NaN or Inf at step {step}: the fit "
                                 "stopped (lower optim.lr, check the loss weights and the inputs); nothing was "
                                 "written as a result")


class GatherWeights(L.Callback):
    """At the end of training, the full state dict on rank 0 (gathered from the shards when the strategy shards the
    weights, e.g. FSDP; every rank must take part, so this runs inside the fit)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from fusion_bench.benchmark.distributed import is_sharded

        if is_sharded(trainer):
            self.state = trainer.strategy.lightning_module_state_dict()
