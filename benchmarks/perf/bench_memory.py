"""Activation memory of one training step: the bytes autograd saves for the backward pass (CPU is enough).

    python benchmarks/perf/bench_memory.py --method cfi --preset paper --batch 2
    python benchmarks/perf/bench_memory.py --method swinfusion --preset paper --batch 1 --top 15
    python benchmarks/perf/bench_memory.py --method seafusion --preset paper --batch 1 --phase segmentation
    python benchmarks/perf/bench_memory.py --method amdanet --preset paper --batch 1 --crop 240,320 --json out.json

Builds the method from its preset (the crop is the preset's `train.crop_size` unless --crop is given; whole 480 x 640
images where the preset has none), runs the loss of one training step on random data in the suite's batch format
under `torch.autograd.graph.saved_tensors_hooks`, and prints the bytes saved for backward (each storage once;
parameters apart), per image, and the largest holders by module and by tensor. Saved bytes scale linearly with the
batch, so a small batch at the paper crop predicts the paper batch (`--scale-to`, default the preset's batch size).
They are a lower bound of the peak memory of a step: the backward pass adds gradients and temporaries.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fusion_bench.benchmark.protocol import load_yaml
from fusion_bench.errors import BenchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf_common import (  # noqa: E402
    build_method,
    crop_hw,
    fmt_bytes,
    prepare_phase,
    random_batch,
    saved_for_backward,
    training_loss,
)


def measure(method_name: str, preset: str = "paper", batch: int = 1, crop: tuple[int, int] | None = None,
            phase: str | None = None, dataset: str | None = None, num_classes: int = 9, seed: int = 0,
            dtype: torch.dtype = torch.float32, overrides: dict | None = None, backward: bool = False,
            autocast: str | None = None) -> dict:
    """Saved-for-backward bytes of one training step (see module docstring) as a dict (report included)."""
    torch.manual_seed(seed)
    method, config = build_method(method_name, preset, dataset, num_classes, overrides)
    method = method.to(dtype)
    method.train()
    phase = prepare_phase(method, method_name, phase)
    height, width = crop or crop_hw(config["train"].get("crop_size"))
    valid = bool((config["train"].get("augment") or {}).get("valid_mask"))
    data = random_batch(batch, height, width, num_classes, valid, seed, dtype=dtype)
    def step() -> torch.Tensor:
        if autocast is None:
            return training_loss(method, method_name, data, phase)
        with torch.autocast("cpu", dtype=getattr(torch, autocast)):
            return training_loss(method, method_name, data, phase)

    report, loss = saved_for_backward(step, root=method)
    if backward:
        loss.backward()
    return {"method": method_name, "preset": preset, "phase": phase, "batch": batch, "crop": [height, width],
            "dtype": str(dtype).replace("torch.", ""), "autocast": autocast, "saved_bytes": report.total,
            "saved_bytes_per_image": report.total / batch, "saved_tensors": report.count,
            "saved_parameter_bytes": report.parameters,
            "params_m": sum(p.numel() for p in method.parameters()) / 1e6,
            "paper_batch": config["train"].get("batch_size"), "loss": float(loss.detach()), "report": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--dataset", default=None, help="merge the preset's per-dataset entries of this dataset")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--crop", default=None, help="H,W (default: the preset's train.crop_size)")
    parser.add_argument("--phase", default=None, help="seafusion: fusion|segmentation; ssvif: stage2|stage1")
    parser.add_argument("--classes", type=int, default=9)
    parser.add_argument("--autocast", default=None, choices=["bfloat16"], help="run the step under CPU autocast")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override (YAML value, as `fusion-bench --set`), e.g. --set model.levels=2")
    parser.add_argument("--scale-to", type=int, default=None, help="also print the bytes at this batch size "
                        "(default: the preset's batch_size)")
    parser.add_argument("--top", type=int, default=10, help="largest holders to list")
    parser.add_argument("--depth", type=int, default=None, help="group modules by their first DEPTH name parts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        overrides[key] = load_yaml(value)
    crop = tuple(int(v) for v in args.crop.split(",")) if args.crop else None
    if crop is not None and len(crop) == 1:
        crop = (crop[0], crop[0])
    try:
        out = measure(args.method, args.preset, args.batch, crop, args.phase, args.dataset, args.classes,
                      overrides=overrides, autocast=args.autocast)
    except BenchError as err:
        parser.error(str(err))
    report = out.pop("report")
    scale = args.scale_to or out["paper_batch"] or args.batch
    print(f"{args.method} ({args.preset}{', ' + out['phase'] if out['phase'] else ''}), batch {args.batch} x "
          f"{out['crop'][0]}x{out['crop'][1]}, {out['params_m']:.3f} M parameters, loss {out['loss']:.6g}")
    print(f"saved for backward: {fmt_bytes(out['saved_bytes'])} in {out['saved_tensors']} storages "
          f"({fmt_bytes(out['saved_bytes_per_image'])} per image; x{scale} = "
          f"{fmt_bytes(out['saved_bytes_per_image'] * scale)}), parameters {fmt_bytes(out['saved_parameter_bytes'])}")
    print(f"largest holders by module{f' (depth {args.depth})' if args.depth else ''}:")
    for module, nbytes in report.top_modules(args.top, args.depth):
        print(f"  {fmt_bytes(nbytes):>10}  {100 * nbytes / max(1, report.total):5.1f} %  {module}")
    print("largest tensors:")
    for nbytes, module, shape, dtype in report.top_tensors(args.top):
        print(f"  {fmt_bytes(nbytes):>10}  {dtype:8} {str(list(shape)):24} {module}")
    if args.json:
        out["top_modules"] = report.top_modules(args.top, args.depth)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
