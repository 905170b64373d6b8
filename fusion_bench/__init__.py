"""fusion_bench: a PyTorch Lightning benchmark suite for multi-modal image fusion.

Python API (imported on first use, so `import fusion_bench` stays light):

>>> from fusion_bench import BenchSpec, run_bench, load_results, build_report
>>> rows = run_bench(BenchSpec(method="max", dataset="synthetic-ivif", seeds=(0, 1), downstream="none"))
>>> raw = load_results("synthetic-ivif")                      # one row per run (pandas DataFrame)
>>> board = load_results("synthetic-ivif", aggregated=True)   # one row per leaderboard entry: <col>_mean/_std
>>> build_report("synthetic-ivif").index_html                 # runs/reports/synthetic-ivif-smoke/index.html
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BenchSpec": "fusion_bench.benchmark.spec",
    "run_bench": "fusion_bench.benchmark.runner",
    "load_results": "fusion_bench.benchmark.leaderboard",
    "build_report": "fusion_bench.report.build",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["BenchSpec", "__version__", "build_report", "load_results", "run_bench"]
