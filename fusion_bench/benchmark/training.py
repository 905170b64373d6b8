"""Fitting a method: the Trainer with the run's settings and callbacks, resumable checkpoints, the fit itself and
the weights file it leaves (`model.pt`); `train_weights` is the `fusion-bench train` command's whole job.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fusion_bench.base.datamodule import PairedDataModule
from fusion_bench.benchmark.build import build_datamodule, build_method
from fusion_bench.benchmark.callbacks import (
    ChannelsLast,
    CheckpointOnInterrupt,
    FiniteLoss,
    FitProgress,
    GatherWeights,
    PinNumerics,
    RecordSettings,
)
from fusion_bench.benchmark.distributed import is_rank_zero
from fusion_bench.benchmark.run_dirs import checkpoint_dir
from fusion_bench.benchmark.spec import PreparedRun
from fusion_bench.benchmark.trainer_settings import (
    check_manual_optimization,
    compile_method,
    compile_settings,
    early_stopping_callbacks,
    make_logger,
    quiet_lightning,
    trainer_kwargs,
    user_callbacks,
)
from fusion_bench.benchmark.weight_files import SETTINGS_KEY, check_resume_checkpoint, save_weights, settings_record
from fusion_bench.errors import BenchError

CHECKPOINT_INTERVAL_MIN = 15.0  # default minutes between resumable checkpoints (train.checkpoint_every_n_steps: steps)


def fit_method(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
               resume: bool = False, logger: Any = None) -> tuple[L.LightningModule, float]:
    """Train with Lightning (logs under run_dir/logs, checkpoints under run_dir/checkpoints); returns the trained
    model and the seconds spent. Rank 0 also saves `run_dir/model.pt`.

    `train` keys (TRAIN_KEYS): max_steps / max_epochs, batch_size, crop_size, augment, precision, val_fraction (hold
    out part of train when the dataset has no val split), early_stopping {monitor, patience, mode},
    limit_val_batches, val_check_interval, check_val_every_n_epoch, log_every_n_steps; devices, strategy, num_nodes,
    find_unused_parameters (fusion_bench.benchmark.distributed); compile (torch.compile of the method's networks;
    off by default: it changes numbers at the float level, so no smoke preset uses it); checkpoint_every_n_steps.

    Precision and memory layout (opt-in; the `paper` presets keep what the authors trained with, mostly fp32):
    `precision` is a Lightning precision (PRECISIONS; default 32-true) or `bf16-auto`, which `method_config`
    resolves to bf16-mixed on a CUDA device that supports bf16 and to 32-true elsewhere (the resolved value is what
    the Trainer gets, the config hash, the row's `overrides` and model.pt record). `channels_last: true` puts the
    method's networks (before the fit; modules a method builds during the fit keep their layout) and the 4-D batch
    tensors in torch.channels_last (ChannelsLast). tests/test_precision.py measures both against fp32 on CPU.

    Checkpoints: `last.ckpt` (Lightning's ModelCheckpoint, save_last) every CHECKPOINT_INTERVAL_MIN minutes of
    training, or every `checkpoint_every_n_steps` steps, on an exception or Ctrl-C, and once at the end of the fit.
    With `resume`, a fit continues from `run_dir/checkpoints/last.ckpt` when it exists (weights, optimizer, schedule,
    step counters, callback state such as an EMA); the checkpoint records the method, preset and settings it was made
    with (RecordSettings), and one of another method, preset or other settings (but the run length) is refused
    before the fit (weights.check_resume_checkpoint). A NaN or Inf training loss stops the fit, naming the step
    (FiniteLoss).
    """
    from datetime import timedelta

    from lightning.pytorch.callbacks import ModelCheckpoint

    quiet_lightning()
    train = prep.config["train"]
    has_val = datamodule.has_validation
    callbacks = early_stopping_callbacks(train, has_val, prep.spec.method)
    if prep.spec.progress:
        callbacks.append(FitProgress(f"fit {prep.spec.method} on {prep.spec.dataset}"))
    ckpt_dir = checkpoint_dir(run_dir)
    every = train.get("checkpoint_every_n_steps")
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="step{step}", save_top_k=0, save_last=True,
                                 every_n_train_steps=every,
                                 train_time_interval=None if every else timedelta(minutes=CHECKPOINT_INTERVAL_MIN))
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.exists() else None
    if ckpt_path is not None:  # another method's, other settings', or an unreadable checkpoint: a clear error
        check_resume_checkpoint(last, prep, model)
    gather = GatherWeights()
    callbacks += [checkpoint, CheckpointOnInterrupt(last), RecordSettings(SETTINGS_KEY, settings_record(prep)),
                  FiniteLoss(prep.spec.method), PinNumerics(), gather]
    check_manual_optimization(model, train, prep.spec.method)
    callbacks += user_callbacks(train, prep.spec.method)
    if train.get("channels_last"):
        callbacks.append(ChannelsLast())
        model.to(memory_format=torch.channels_last)
    trainer = L.Trainer(
        **trainer_kwargs(prep, has_val),
        logger=logger if logger is not None else make_logger(prep.spec.logger, run_dir),
        enable_checkpointing=True,
        callbacks=callbacks,
        enable_model_summary=False,
        enable_progress_bar=False,
    )
    compiled = compile_settings(train)
    if compiled is not None:
        compile_method(model, compiled)
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    trainer.save_checkpoint(last)  # the finished fit: a resumed run whose evaluation failed goes straight to it
    seconds = time.perf_counter() - start
    if gather.state is not None and trainer.is_global_zero:  # sharded weights: a whole copy for fusing on rank 0
        model = build_method(prep, datamodule)
        model.load_state_dict(gather.state)
    if trainer.is_global_zero:
        save_weights(model, prep, run_dir / "model.pt")
    return model, seconds


def fit(prep: PreparedRun, model: L.LightningModule, datamodule: PairedDataModule, run_dir: Path,
        resume: bool = False) -> float:
    """`fit_method` for callers that keep `model` (every strategy but FSDP trains it in place); returns seconds."""
    return fit_method(prep, model, datamodule, run_dir, resume)[1]


def train_weights(prep: PreparedRun, seed: int, out: Path, resume: bool = False) -> float | None:
    """`fusion-bench train`: fit the method of `prep` (logs and resumable checkpoints in the folder named like `out`
    without its suffix) and move its weights to `out`; returns the seconds of the fit (None in a process other than
    rank 0 of a multi-process fit, which only trains). A training-free method is a BenchError."""
    log_dir = out.with_suffix("")
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule = build_datamodule(prep, seed)
    model = build_method(prep, datamodule)
    if not model.trainable:
        raise BenchError(f"{prep.spec.method} is training-free: nothing to train")
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = fit(prep, model, datamodule, log_dir, resume=resume)
    if not is_rank_zero():  # another process of a multi-process fit: rank 0 saves the weights
        return None
    (log_dir / "model.pt").replace(out)
    shutil.rmtree(checkpoint_dir(log_dir), ignore_errors=True)  # the weights are in `out` now
    return seconds
