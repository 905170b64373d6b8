"""Benchmark protocols (benchmarks/protocols/<dataset>.yaml) and the config hash of a run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from fusion_bench.benchmark.provenance import REPO_ROOT
from fusion_bench.types import Task

PROTOCOL_DIR = REPO_ROOT / "benchmarks" / "protocols"
SUITE_DIR = REPO_ROOT / "benchmarks" / "suites"
PRESETS = ("smoke", "paper", "paper_text")
# Method ablation presets run under the protocol settings (seeds, downstream evaluator configs) of a base preset:
# `paper_text` is a method's reading of its paper's text where the authors' code (`paper`) differs.
PRESET_BASE = {"paper_text": "paper"}


def default_protocol(dataset: str, task: Task) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "task": task.value,
        "metric_dialect": None if task is Task.CLASSIFICATION else "mmif",
        "metrics": None,
        "downstream": [],
        "presets": {p: {} for p in PRESETS},
    }


def load_protocol(dataset: str, task: Task) -> dict[str, Any]:
    """The dataset's protocol file merged over the task defaults."""
    protocol = default_protocol(dataset, task)
    path = PROTOCOL_DIR / f"{dataset}.yaml"
    if path.is_file():
        loaded = yaml.safe_load(path.read_text()) or {}
        if loaded.get("task") not in (None, task.value):
            raise ValueError(f"{path}: task {loaded['task']!r} does not match the dataset's task {task.value!r}")
        protocol.update({k: v for k, v in loaded.items() if v is not None or k == "metric_dialect"})
    return protocol


def config_hash(payload: dict[str, Any]) -> str:
    """12 hex digits of sha256 over the canonical JSON of everything that defines a run except the seed."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def protocol_preset(preset: str) -> str:
    """The preset whose protocol settings (seeds, evaluator configs) a method preset uses."""
    return PRESET_BASE.get(preset, preset)


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")


def load_suite(name: str) -> tuple[dict[str, Any], Path]:
    path = SUITE_DIR / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))
        raise ValueError(f"unknown suite {name!r}; valid suites: {', '.join(available)}")
    return yaml.safe_load(path.read_text()), path
