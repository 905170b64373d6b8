"""Efficiency numbers: parameters, FLOPs (torch.utils.flop_counter), latency, peak memory."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from fusion_bench.base.method import FusionMethod


def count_params_m(model: torch.nn.Module) -> float:
    """Millions of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def count_gflops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call / 1e9, as counted by torch.utils.flop_counter (a multiply-add counts as 2 FLOPs;
    only matmul/convolution-family ops are counted, so element-wise rules count as 0). Attention runs with the
    math kernel while counting: the counter has no formula for the fused CPU attention kernels, which would
    otherwise drop the attention matmuls of transformer methods."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        fn()
    return counter.get_total_flops() / 1e9


def measure_latency_ms(fn: Callable[[], Any], device: torch.device, warmup: int = 2, repeats: int = 5) -> float:
    """Median wall time of `fn` in milliseconds (CUDA synchronised)."""
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak bytes allocated by torch on the device. CPU: peak resident set size of the process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fusion_inputs(channels: tuple[int, int], height: int, width: int, device: torch.device,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.rand(1, channels[0], height, width, generator=generator)
    x2 = torch.rand(1, channels[1], height, width, generator=generator)
    return x1.to(device), x2.to(device)


def profile_fusion(method: FusionMethod, channels: tuple[int, int], height: int = 256, width: int = 256,
                   device: torch.device | None = None) -> dict[str, float]:
    """params_m, gflops and fuse latency (batch 1) of a fusion method at height x width."""
    device = device or torch.device("cpu")
    method = method.to(device).eval()
    x1, x2 = fusion_inputs(channels, height, width, device)
    return {
        "params_m": count_params_m(method),
        "gflops": count_gflops(lambda: method.fuse(x1, x2)),
        "latency_ms": measure_latency_ms(lambda: method.fuse(x1, x2), device),
        "height": height,
        "width": width,
    }


def profile_classifier(method: torch.nn.Module, batch: dict[str, Any],
                       device: torch.device | None = None) -> dict[str, float]:
    """params_m, gflops and latency of one forward on `batch` (batch size 1 expected)."""
    device = device or torch.device("cpu")
    method = method.to(device).eval()
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return {
        "params_m": count_params_m(method),
        "gflops": count_gflops(lambda: method(batch)),
        "latency_ms": measure_latency_ms(lambda: method(batch), device),
    }
