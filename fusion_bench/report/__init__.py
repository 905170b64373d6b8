"""Reports people read: the static HTML report (`build_report`), leaderboard formats (csv, md, latex, html),
figures and statistics. Submodules are imported on first use (matplotlib and scipy only when needed)."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_report": "fusion_bench.report.build",
    "ReportError": "fusion_bench.errors",
    "load_reported": "fusion_bench.report.sections",
    "format_leaderboard": "fusion_bench.report.formats",
    "FORMATS": "fusion_bench.report.formats",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
