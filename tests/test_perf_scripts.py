"""benchmarks/perf scripts that the GPU measurements rely on, checked on CPU at tiny sizes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PERF = Path(__file__).resolve().parents[1] / "benchmarks" / "perf"


def _script(name: str):
    sys.path.insert(0, str(PERF))
    try:
        spec = importlib.util.spec_from_file_location(name, PERF / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(PERF))


def test_train_step_benchmark_times_real_steps():
    bench = _script("bench_train_step")
    plain = bench.measure("fusion_cnn", "smoke", "cpu", batch=2, crop=(32, 32), warmup=1, steps=2)
    assert plain["batch"] == 2 and plain["crop"] == [32, 32] and plain["s_per_step"] > 0
    assert plain["images_per_s"] == pytest.approx(2 / plain["s_per_step"]) and plain["peak_gpu_mem_gb"] is None
    # the same seeded steps with the networks and batch channels-last: the same loss (CPU, fp32)
    last = bench.measure("fusion_cnn", "smoke", "cpu", batch=2, crop=(32, 32), warmup=1, steps=2, channels_last=True)
    assert last["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    # three optimizer steps change the loss: the timed steps really train
    longer = bench.measure("fusion_cnn", "smoke", "cpu", batch=2, crop=(32, 32), warmup=1, steps=3)
    assert longer["loss"] != plain["loss"]
