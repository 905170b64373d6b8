"""Shared fixtures: an isolated cache for the synthetic datasets, a toy dataset, the CLI runner."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fusion_bench import numerics

# The tests run with the pinned numerics of `fusion-bench regress` (fusion_bench.numerics: AVX2 kernels, MKL's
# COMPATIBLE branch, oneDNN off, one thread), so numbers compared in tests repeat on every x86-64 machine.
# FUSION_BENCH_NUMERICS=native runs them with the libraries' own choices instead.
if numerics.requested_mode() != numerics.NATIVE and numerics.can_pin():
    if "torch" in sys.modules:
        raise RuntimeError("torch was imported before tests/conftest.py could pin the numerics")
    os.environ.update(numerics.pinned_environment())

import pytest  # noqa: E402
import torch  # noqa: E402

from fusion_bench.cli import main  # noqa: E402

numerics.apply_runtime()
# Tests use tiny tensors: one intra-op thread is faster than two (and much faster on a shared, loaded CPU).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-data cache for the whole test session (never the user's home cache)."""
    return tmp_path_factory.mktemp("fusion_bench_cache")


@pytest.fixture(autouse=True)
def _isolated_cache(synthetic_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSION_BENCH_CACHE", str(synthetic_cache))
    monkeypatch.delenv("FUSION_BENCH_DATA", raising=False)
    # nothing is downloaded in tests (weights catalogue, zoo:NAME initialisations; fusion_bench.weights)
    monkeypatch.setenv("FUSION_BENCH_OFFLINE", "1")
    # downstream training (SegFormer/YOLO) only in the tests that ask for it with --downstream
    monkeypatch.setenv("FUSION_BENCH_DOWNSTREAM", "none")
    # the HTML report after `bench` only in the tests that ask for it (tests/test_report.py)
    monkeypatch.setenv("FUSION_BENCH_REPORT", "0")


@pytest.fixture
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the toy dataset as `toy` for the duration of a test."""
    from fusion_bench import registry

    monkeypatch.setitem(registry.DATASETS, "toy", "toy_dataset:ToyDataModule")
    return "toy"


@pytest.fixture
def cli():
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""

    def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run
