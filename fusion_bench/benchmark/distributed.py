"""Training on several devices: the Trainer's devices/strategy/num_nodes from a run's `train` settings, and which
process of a multi-process run writes results.

One run spreads over GPUs (or CPU processes) through Lightning's strategies: `train.devices` (an int, a list of
device indices or "auto"), `train.strategy` (`auto`, `ddp`, `ddp_spawn`, `fsdp`) and `train.num_nodes` reach the
Trainer; `--device cuda:N` alone trains on GPU N. With `ddp`, Lightning starts the other processes by re-running the
same command (`fusion-bench bench ...`) with LOCAL_RANK/NODE_RANK set, or the cluster starts one process per device
(SLURM `srun`, torchrun). Every process prepares the run and trains; only global rank 0 fuses, scores, runs the
downstream evaluators and writes the row, locks and output folders (`is_rank_zero`). Metrics and fusing therefore
stay on rank 0: the other ranks leave once training is over (between seeds they wait in the next fit).

A method whose forward leaves parameters without gradients in some steps (SSVIF's Stage I) sets the class attribute
`ddp_find_unused_parameters = True` (or the run sets `train.find_unused_parameters`); DDP then looks for them.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch

from fusion_bench.errors import DistributedSettingsError

STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp")
DDP_TIMEOUT = timedelta(hours=12)  # other ranks wait for rank 0's evaluation of a seed before the next seed's fit


def launched_rank() -> int:
    """The global rank of this process when a launcher started it as one process of a multi-process run: torchrun's
    RANK, SLURM_PROCID in a multi-task SLURM step, or Lightning's re-run children (LOCAL_RANK/NODE_RANK); else 0.
    Non-zero means "not the process that writes results" (the exact value is only meaningful for RANK/SLURM)."""
    env = os.environ
    if env.get("RANK", "").isdigit():
        return int(env["RANK"])
    if env.get("SLURM_PROCID", "").isdigit() and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        return int(env["SLURM_PROCID"])
    local = int(env["LOCAL_RANK"]) if env.get("LOCAL_RANK", "").isdigit() else 0
    node = int(env["NODE_RANK"]) if env.get("NODE_RANK", "").isdigit() else 0
    return 0 if local == 0 and node == 0 else max(local, 1)


def is_rank_zero() -> bool:
    """Whether this process writes results (see the module docstring)."""
    return launched_rank() == 0


def _device_count(devices: Any, accelerator: str) -> int:
    if devices == "auto":
        return torch.cuda.device_count() if accelerator == "cuda" else 1
    return len(devices) if isinstance(devices, (list, tuple)) else int(devices)


def trainer_settings(train: dict[str, Any], device: torch.device, method_cls: type) -> dict[str, Any]:
    """accelerator, devices, num_nodes and strategy for the Trainer (see the module docstring)."""
    accelerator = "cuda" if device.type == "cuda" else "cpu"
    devices = train.get("devices")
    num_nodes = train.get("num_nodes", 1)
    strategy = train.get("strategy", "auto") or "auto"
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise DistributedSettingsError(f"train.num_nodes {num_nodes!r}: expected an integer >= 1")
    if strategy not in STRATEGIES:
        raise DistributedSettingsError(f"train.strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if devices is None:
        devices = [device.index] if device.type == "cuda" and device.index is not None else 1
    else:
        ok = (devices == "auto" or (isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1)
              or (isinstance(devices, (list, tuple)) and devices
                  and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)))
        if not ok:
            raise DistributedSettingsError(f"train.devices {devices!r}: expected an integer >= 1, a list of device "
                                           "indices or auto")
        if device.type == "cuda" and device.index is not None and devices not in (1, [device.index]):
            raise DistributedSettingsError(f"--device {device} picks one GPU, but train.devices is {devices!r}: pass "
                                           "--device cuda (choose the GPUs with train.devices=[0,2] or "
                                           "CUDA_VISIBLE_DEVICES)")
        if devices == 1 and device.type == "cuda" and device.index is not None:
            devices = [device.index]
    processes = _device_count(devices, accelerator) * num_nodes
    if strategy == "fsdp" and accelerator != "cuda":
        raise DistributedSettingsError("train.strategy fsdp needs CUDA devices (--device cuda)")
    if strategy in ("ddp", "ddp_spawn") or (strategy == "auto" and processes > 1):
        from lightning.pytorch.strategies import DDPStrategy

        unused = train.get("find_unused_parameters", getattr(method_cls, "ddp_find_unused_parameters", False))
        start = "spawn" if strategy == "ddp_spawn" else "popen"
        strategy = DDPStrategy(start_method=start, find_unused_parameters=bool(unused), timeout=DDP_TIMEOUT)
    elif strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        strategy = FSDPStrategy(timeout=DDP_TIMEOUT)
    return {"accelerator": accelerator, "devices": devices, "num_nodes": num_nodes, "strategy": strategy}


def is_sharded(trainer: Any) -> bool:
    """Whether the trained weights live sharded across processes (FSDP): rank 0 then needs them gathered."""
    from lightning.pytorch.strategies import FSDPStrategy

    return isinstance(trainer.strategy, FSDPStrategy)
