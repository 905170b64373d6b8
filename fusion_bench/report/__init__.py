"""Reports people read: the static HTML report (`build_report`), leaderboard formats (csv, md, latex, html),
figures and statistics. Submodules are imported on first use (matplotlib and scipy only when needed)."""

from __future__ import annotations

from fusion_bench.lazy import lazy_exports

_EXPORTS = {
    "build_report": "fusion_bench.report.build",
    "ReportError": "fusion_bench.errors",
    "load_reported": "fusion_bench.report.sections",
    "format_leaderboard": "fusion_bench.report.formats",
    "FORMATS": "fusion_bench.report.formats",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
