"""Shared pieces of the downstream evaluators: fused-folder loading, seeding, devices, logs."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fusion_bench.data.base import FusionDataset
from fusion_bench.data.io import read_image
from fusion_bench.errors import DownstreamError


def require_extra(module: str, extra: str, package: str) -> None:
    """Raise DownstreamError naming the pip extra when `module` is not importable."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DownstreamError(f"this evaluator needs {package}: pip install -e '.[{extra}]' (or pip install {package})")


def fused_paths(fused_dir: str | Path, dataset: FusionDataset, ext: str = ".png") -> list[Path]:
    """`fused_dir/<name>.png` for every sample of `dataset`, in dataset order; all missing files are named."""
    fused_dir = Path(fused_dir)
    if not fused_dir.is_dir():
        raise DownstreamError(f"fused folder {fused_dir} does not exist (expected <name>{ext} per "
                              f"{dataset.name}/{dataset.split} sample)")
    paths = [fused_dir / f"{ref.name}{ext}" for ref in dataset.samples]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DownstreamError(f"{fused_dir}: {len(missing)} of {len(paths)} fused images of "
                              f"{dataset.name}/{dataset.split} are missing: {shown}")
    return paths


class FusedImages(Sequence[torch.Tensor]):
    """A lazy sequence of fused images (float CxHxW in [0, 1], channels as stored) read from paths."""

    def __init__(self, paths: Sequence[str | Path]):
        self.paths = [Path(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return read_image(self.paths[index], mode=None)


def to_rgb(image: torch.Tensor) -> torch.Tensor:
    """CxHxW with 1, 3 or 4 channels -> 3xHxW (gray repeated, alpha dropped)."""
    if image.ndim != 3:
        raise ValueError(f"expected a CxHxW image, got shape {tuple(image.shape)}")
    if image.shape[0] == 1:
        return image.expand(3, -1, -1)
    if image.shape[0] in (3, 4):
        return image[:3]
    raise ValueError(f"fused images must have 1, 3 or 4 channels, got {image.shape[0]}")


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA device on a machine without CUDA is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = torch.device(device)
    if out.type == "cuda" and not torch.cuda.is_available():
        raise DownstreamError(f"device {device}: CUDA is not available on this machine; use cpu")
    return out


@contextlib.contextmanager
def seeded(seed: int, deterministic: bool = False) -> Iterator[None]:
    """Seed python/numpy/torch for the block; `deterministic` also turns on deterministic algorithms (warn-only).

    CPU kernels used here are deterministic already (and the deterministic fallbacks are ~1.7x slower on CPU),
    so the evaluators ask for `deterministic` only on CUDA. Settings are restored after the block.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


class CsvLog:
    """Append-only CSV log (header from the first row's keys); no-op when path is None."""

    def __init__(self, path: Path | None):
        self.path = path
        self._fields: list[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)

    def write(self, row: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", newline="") as fh:
            if self._fields is None:
                self._fields = list(row)
                csv.DictWriter(fh, self._fields).writeheader()
            csv.DictWriter(fh, self._fields, extrasaction="ignore").writerow(row)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return str(value)
