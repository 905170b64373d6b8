"""Provenance: the package versions that can change a number; each run's own peak memory; no POSIX-only modules."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_bench.benchmark import profiling
from fusion_bench.benchmark.profiling import PeakMemory
from fusion_bench.benchmark.provenance import package_versions

REPO = Path(__file__).resolve().parents[1]


def test_packages_that_change_numbers_are_recorded():
    versions = dict(item.split("=", 1) for item in package_versions().split(";"))
    for name in ("torch", "torchvision", "lightning", "torchmetrics", "numpy", "scipy", "scikit-image",
                 "opencv-python", "PyWavelets", "pillow", "mmfusion-bench", "python"):
        assert versions.get(name), name
    for optional in ("transformers", "ultralytics"):  # recorded whenever installed
        try:
            __import__(optional)
        except ImportError:
            continue
        assert versions.get(optional), optional


def _touch(mb: int) -> np.ndarray:
    block = np.ones(mb * 2**20, dtype=np.uint8)  # written, so resident
    return block


@pytest.mark.parametrize("platform", ["exact", "sampled"])
def test_peak_memory_is_each_runs_own(monkeypatch, platform):
    if platform == "sampled":  # what macOS/Windows get: RSS sampled by a psutil thread
        monkeypatch.setattr(profiling, "_linux_hwm_kb", lambda: None)
    elif not sys.platform.startswith("linux"):
        pytest.skip("the kernel's high-water mark is read on Linux")
    first = PeakMemory(torch.device("cpu"), interval=0.005).start()
    block = _touch(200)
    time.sleep(0.05)
    del block
    peak_first = first.peak_mb()
    first.stop()
    second = PeakMemory(torch.device("cpu"), interval=0.005).start()
    time.sleep(0.02)
    peak_second = second.peak_mb()
    second.stop()
    assert peak_first - peak_second > 150, (peak_first, peak_second)
    assert peak_second > 50, "the process's resident memory at the start is part of a run's peak"


def test_no_posix_only_modules():
    """fcntl/resource do not exist on Windows: locks are filelock's, memory is /proc or psutil."""
    pattern = re.compile(r"^\s*(import|from)\s+(fcntl|resource)\b", re.MULTILINE)
    offenders = [str(p.relative_to(REPO)) for folder in ("fusion_bench", "methods", "datamodules")
                 for p in (REPO / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    assert not hasattr(profiling, "resource")
