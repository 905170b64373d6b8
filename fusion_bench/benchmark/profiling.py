"""Efficiency numbers: parameters, FLOPs (torch.utils.flop_counter), latency, peak memory."""

from __future__ import annotations

import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from fusion_bench.base.method import FusionMethod
from fusion_bench.benchmark.build import build_datamodule, build_method
from fusion_bench.benchmark.spec import PreparedRun
from fusion_bench.data.transforms import collate_samples
from fusion_bench.types import Task


def count_params_m(model: torch.nn.Module) -> float:
    """Millions of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def _per_output(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """One FLOP per output element (an element-wise op; shapes, as torch.utils.flop_counter passes them)."""
    return _numel(out_shape)


def _per_input(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """One FLOP per input element (a reduction: n - 1 additions or comparisons for n values)."""
    return _numel(args[0]) if args else 0


def _numel(shape: Any) -> int:
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        return sum(_numel(s) for s in shape)  # several outputs (e.g. max with indices): the values only
    n = 1
    for d in shape or ():
        n *= int(d)
    return n


def elementwise_formulas() -> dict[Any, Callable[..., int]]:
    """FLOP formulas for the element-wise arithmetic and reductions torch's counter leaves out (it counts the
    matmul and convolution families only): 1 FLOP per output element of an arithmetic, comparison or
    transcendental op, 1 per input element of a reduction; copies, indexing and shape changes count 0."""
    aten = torch.ops.aten
    pointwise = ("add", "sub", "mul", "div", "rsub", "neg", "abs", "sqrt", "rsqrt", "exp", "log", "log2", "pow",
                 "maximum", "minimum", "clamp", "clamp_min", "clamp_max", "where", "sigmoid", "tanh", "relu",
                 "gt", "lt", "ge", "le", "eq", "sign", "reciprocal", "square", "floor", "round", "addcmul",
                 "addcdiv", "lerp", "hardtanh", "leaky_relu", "gelu", "atan2", "sin", "cos")
    reductions = ("sum", "mean", "amax", "amin", "max", "min", "var", "std", "prod", "argmax", "argmin")
    formulas: dict[Any, Callable[..., int]] = {}
    for names, formula in ((pointwise, _per_output), (reductions, _per_input)):
        for name in names:
            packet = getattr(aten, name, None)  # the counter looks formulas up by overload packet
            if packet is not None:
                formulas[packet] = formula
    return formulas


def count_gflops(fn: Callable[[], Any], elementwise: bool = False) -> float:
    """FLOPs of one call / 1e9, as counted by torch.utils.flop_counter (a multiply-add counts as 2 FLOPs; only
    matmul/convolution-family ops are counted). `elementwise`: the element-wise arithmetic and reductions too
    (`elementwise_formulas`), for training-free methods whose work is element-wise rules and filters (a Laplacian
    pyramid written with slicing and adds would otherwise count as 0). Attention runs with the math kernel while
    counting: the counter has no formula for the fused CPU attention kernels, which would otherwise drop the
    attention matmuls of transformer methods."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    counter = FlopCounterMode(display=False, custom_mapping=elementwise_formulas() if elementwise else None)
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
    """CUDA: peak bytes allocated by torch on the device. CPU: the process's current resident set size (a
    `PeakMemory` started at the run's beginning gives the run's own peak)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import psutil

    return psutil.Process().memory_info().rss / 2**20


_HWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


def _linux_hwm_kb() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            found = _HWM.search(fh.read())
    except OSError:
        return None
    return int(found.group(1)) if found else None


class PeakMemory:
    """The peak memory of one run (one seed), from `start()` to `peak_mb()`.

    CUDA: torch's peak allocated bytes on the device (the counter is reset at start). CPU: the peak resident set size
    of the process since start, which includes what the process already held then (the imported libraries, memory
    earlier runs in the same process left allocated). On Linux the kernel's high-water mark is reset at start
    (`/proc/self/clear_refs`) and read back (`VmHWM`): exact. Elsewhere a thread samples the resident set size every
    `interval` seconds with psutil (a peak shorter than the interval can be missed).
    """

    def __init__(self, device: torch.device, interval: float = 0.01):
        self.device, self.interval = device, interval
        self._linux = False
        self._peak = 0
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        if sys.platform.startswith("linux") and _linux_hwm_kb() is not None:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")  # reset the peak resident set size (Linux >= 4.0)
                self._linux = True
                return self
            except OSError:
                pass
        import psutil

        process = psutil.Process()
        self._peak = process.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            assert self._stop is not None
            while not self._stop.wait(self.interval):
                self._peak = max(self._peak, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def peak_mb(self) -> float:
        """The peak so far, in MiB."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self._linux:
            return (_linux_hwm_kb() or 0) / 1024
        import psutil

        self._peak = max(self._peak, psutil.Process().memory_info().rss)
        return self._peak / 2**20

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None


def fusion_inputs(channels: tuple[int, int], height: int, width: int, device: torch.device,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x1 = torch.rand(1, channels[0], height, width, generator=generator)
    x2 = torch.rand(1, channels[1], height, width, generator=generator)
    return x1.to(device), x2.to(device)


def profile_fusion(method: FusionMethod, channels: tuple[int, int], height: int = 256, width: int = 256,
                   device: torch.device | None = None) -> dict[str, float]:
    """params_m, gflops and fuse latency (batch 1) of a fusion method at height x width. A training-free method's
    gflops count its element-wise arithmetic too (`count_gflops(elementwise=True)`): its rules are its work."""
    device = device or torch.device("cpu")
    method = method.to(device).eval()
    x1, x2 = fusion_inputs(channels, height, width, device)
    return {
        "params_m": count_params_m(method),
        "gflops": count_gflops(lambda: method.fuse(x1, x2), elementwise=not getattr(method, "trainable", True)),
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


def profile_dataset(method_cls: type) -> str:
    """The dataset whose modalities shape the inputs when `profile` names none: synthetic-av for a classifier, else
    synthetic-ivif."""
    return "synthetic-av" if Task.CLASSIFICATION in method_cls.tasks else "synthetic-ivif"


def profile_run(prep: PreparedRun, height: int, width: int) -> dict[str, Any]:
    """`fusion-bench profile`: parameters (M), GFLOPs and latency of the run's method as `bench` builds it (a fusion
    method at height x width with the dataset's source channels, a classifier on one test sample)."""
    datamodule = build_datamodule(prep, 0)
    model = build_method(prep, datamodule)
    sample = datamodule.dataset("test")[0]
    if prep.task is Task.CLASSIFICATION:
        result = profile_classifier(model, collate_samples([sample]), prep.device)
    else:
        a, b = datamodule.modalities
        result = profile_fusion(model, (sample[a].shape[0], sample[b].shape[0]), height, width, prep.device)
    spec = prep.spec
    return {"method": spec.method, "dataset": spec.dataset, "preset": spec.preset, "device": str(prep.device),
            "overrides": prep.overrides, **result}
