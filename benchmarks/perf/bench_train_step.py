"""Training-step speed and peak memory of a method's preset, on random data.

    python benchmarks/perf/bench_train_step.py --method cfi --device cuda                       # paper batch x crop
    python benchmarks/perf/bench_train_step.py --method swinfusion --device cuda --precision bf16 --channels-last
    python benchmarks/perf/bench_train_step.py --method amdanet --device cuda --compile --steps 20
    python benchmarks/perf/bench_train_step.py --method fusion_cnn --preset smoke --batch 2 --crop 64  # CPU check

Builds the method from its preset as the runner does (`perf_common.build_method`), draws one random batch in the
suite's format at the preset's batch size and crop (or --batch/--crop), and runs full training steps outside a
Trainer: the loss of `training_step` (SeAFusion: a fusion round with the semantic loss; SSVIF: Stage II), backward,
and an AdamW step over the trainable parameters (the methods' own optimizers differ in their hyper-parameters, not
in their cost). `--precision bf16` runs the forward under autocast (what `train.precision=bf16-mixed` does);
`--channels-last` puts the networks and the batch in torch.channels_last; `--compile` torch.compiles the networks
as `train.compile` does (`compile_method`). After --warmup steps it times --steps steps (CUDA synchronised) and
prints one JSON line: seconds per step, images per second, peak GPU memory (allocated, warm-up included), the loss
of the last step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from fusion_bench.benchmark.trainer_settings import compile_method

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_common import build_method, crop_hw, prepare_phase, random_batch, training_loss  # noqa: E402


def measure(method_name: str, preset: str = "paper", device: str = "cpu", batch: int | None = None,
            crop: tuple[int, int] | None = None, precision: str = "32", channels_last: bool = False,
            compile_networks: bool = False, warmup: int = 2, steps: int = 5, seed: int = 0) -> dict:
    """Time `steps` training steps after `warmup` ones (see the module docstring); returns the numbers."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    method, config = build_method(method_name, preset)
    method = method.to(dev).train()
    phase = prepare_phase(method, method_name, None)
    method = method.to(dev)  # a phase may build modules (SSVIF's segmentation branches)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
    if compile_networks:
        compile_method(method, {})
    batch = batch or int(config["train"].get("batch_size") or 1)
    height, width = crop or crop_hw(config["train"].get("crop_size"))
    valid = bool((config["train"].get("augment") or {}).get("valid_mask"))
    data = random_batch(batch, height, width, valid=valid, seed=seed, device=dev)
    if channels_last:
        data = {k: v.contiguous(memory_format=torch.channels_last) if isinstance(v, torch.Tensor) and v.ndim == 4
                else v for k, v in data.items()}
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = training_loss(method, method_name, data, phase)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    return {"method": method_name, "preset": preset, "phase": phase, "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "precision": precision, "channels_last": channels_last, "compile": compile_networks,
            "batch": batch, "crop": [height, width], "s_per_step": seconds, "images_per_s": batch / seconds,
            "peak_gpu_mem_gb": torch.cuda.max_memory_allocated(dev) / 1e9 if dev.type == "cuda" else None,
            "loss": float(loss), "torch": torch.__version__, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: the preset's train.batch_size")
    parser.add_argument("--crop", default=None, help="H,W or S (default: the preset's train.crop_size)")
    parser.add_argument("--precision", default="32", choices=("32", "bf16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    crop = None
    if args.crop:
        sizes = [int(v) for v in args.crop.split(",")]
        crop = (sizes[0], sizes[-1])
    out = measure(args.method, args.preset, args.device, args.batch, crop, args.precision, args.channels_last,
                  args.compile, args.warmup, args.steps)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
