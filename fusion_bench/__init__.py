"""fusion_bench: a PyTorch Lightning benchmark suite for multi-modal image fusion.

Python API (imported on first use, so `import fusion_bench` stays light):

>>> from fusion_bench import BenchSpec, run_bench, load_results, build_report
>>> rows = run_bench(BenchSpec(method="max", dataset="synthetic-ivif", seeds=(0, 1), downstream="none"))
>>> raw = load_results("synthetic-ivif")                      # one row per run (pandas DataFrame)
>>> board = load_results("synthetic-ivif", aggregated=True)   # one row per leaderboard entry: <col>_mean/_std
>>> build_report("synthetic-ivif").index_html                 # runs/reports/synthetic-ivif-smoke/index.html
"""

from __future__ import annotations

from pathlib import Path

from fusion_bench.lazy import lazy_exports

__version__ = "0.1.0"

# `fusion_bench.methods` and `fusion_bench.datamodules` are the repository's top-level `methods/` and `datamodules/`
# folders: an installed wheel holds them inside this package (setup.py); a source checkout (or an editable install,
# or PYTHONPATH pointing at a checkout) finds them beside it, in the same checkout as this file.
_CHECKOUT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "methods").is_dir() and (_CHECKOUT / "methods" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # type: ignore[name-defined]  # the package's own search path

_EXPORTS = {
    "BenchSpec": "fusion_bench.benchmark.spec",
    "run_bench": "fusion_bench.benchmark.runner",
    "load_results": "fusion_bench.benchmark.leaderboard",
    "build_report": "fusion_bench.report.build",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["BenchSpec", "__version__", "build_report", "load_results", "run_bench"]
