"""`fusion-bench report`: one static HTML page (plus PNG and CSV/LaTeX files) for one dataset and preset.

Inputs: the raw rows (`<leaderboard_dir>/raw/<dataset>.csv`), each row's run directory
(`<runs>/<method>/<dataset>/<preset>/<config_hash>/seed<k>/`: fused/, metrics_per_image.csv,
downstream_per_class.csv, logs/metrics.csv, downstream/seg/predictions/, downstream/det/test/labels/), the dataset's
test split (sources and labels for the grids; optional) and `benchmarks/reported/<dataset>.csv`.
Missing pieces are listed on the page under "Notes" and the rest still renders; only a request that cannot give a
page at all (no rows, unknown method, a non-report folder as --out) raises ReportError.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from fusion_bench.benchmark.leaderboard import ENTRY_COLUMNS, aggregate_frame, latest_rows, record_labels
from fusion_bench.benchmark.results import read_rows, run_directory
from fusion_bench.errors import ReportError
from fusion_bench.report import page
from fusion_bench.report import runs as run_outputs
from fusion_bench.report.balance import balance_section
from fusion_bench.report.formats import seed_nan_counts
from fusion_bench.report.qualitative import grid_section
from fusion_bench.report.runs import Entry
from fusion_bench.report.sections import (
    leaderboard_section,
    plots_section,
    reported_section,
    robust_hook,
    stats_section,
)

MARKER = "report.json"


@dataclass
class Report:
    """What `build_report` wrote: the page, the folder, and the notes shown on the page."""

    index_html: Path
    out: Path
    notes: list[tuple[str, str]]
    entries: list[str]
    images: list[str]
    seconds: float


def default_out(runs_dir: str | Path, dataset: str, preset: str) -> Path:
    return Path(runs_dir) / "reports" / f"{dataset}-{preset}"


def _parse_zoom(zoom: str | Sequence[int] | None) -> list[int] | str | None:
    """None: protocol box or automatic; "none": no inset; else the box x0,y0,x1,y1."""
    if zoom is None or isinstance(zoom, (list, tuple)):
        return list(zoom) if zoom is not None else None
    if str(zoom).strip().lower() in ("none", "off"):
        return "none"
    try:
        return [int(v) for v in str(zoom).split(",")]
    except ValueError as err:
        raise ReportError(f"--zoom expects x0,y0,x1,y1 (integers) or none, got {zoom!r}") from err


def _choose_preset(frame: pd.DataFrame, preset: str | None, dataset: str, notes: list) -> str:
    presets = list(dict.fromkeys(frame["preset"]))
    if preset is not None:
        if preset not in presets:
            raise ReportError(f"no rows for dataset {dataset!r} with preset {preset!r}; presets with rows: "
                              f"{', '.join(presets)}")
        return preset
    counts = frame["preset"].value_counts()
    chosen = str(counts.index[0])
    if len(presets) > 1:
        notes.append(("info", f"rows of presets {', '.join(presets)}: this page shows {chosen} (the most rows); "
                              f"pass --preset for another"))
    return chosen


def comma_list(value: str | Sequence[str] | None) -> list[str] | None:
    """A list argument of the Python API as the command line takes it: a list, or comma-separated text."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [item.strip() for item in items if item.strip()]


def _labels(records: list[dict[str, Any]]) -> list[str]:
    """The entries' labels: the same strings as the leaderboard's label column (`leaderboard.entry_labels`)."""
    return record_labels(records)


def _load_test_set(dataset: str, root: str | Path | None, options: Mapping[str, Any], notes: list):
    try:
        from fusion_bench.registry import get_datamodule

        datamodule_cls = get_datamodule(dataset)
        return datamodule_cls.dataset_class(datamodule_cls.resolve_root(root), "test", **dict(options))
    except Exception as err:  # noqa: BLE001 - any failure only removes the sources from the grid; it is reported
        notes.append(("warn", f"the test split of {dataset} could not be loaded, so the grids show fused images "
                              f"only (no sources or labels): {str(err).splitlines()[0]}"))
        return None


REPORT_NAMES = frozenset({"index.html", MARKER, "tables", "tiles", "figures"})
"""What a report writes at the top of its folder (an earlier report whose marker lists no files owns these)."""


def _foreign_files(out: Path) -> list[str]:
    """Files in an earlier report folder that the report did not write: not in its marker's `files` (or, for a
    marker without that list, not under REPORT_NAMES)."""
    try:
        listed = json.loads((out / MARKER).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    owned = set(listed) if isinstance(listed, list) else None
    found = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_dir() and not path.is_symlink() or rel == MARKER:
            continue
        if not (rel in owned if owned is not None else rel.split("/")[0] in REPORT_NAMES):
            found.append(rel)
    return found


def _prepare_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ReportError(f"--out {out} is not empty and holds no earlier report ({MARKER}); pass a new or empty "
                          "folder (a report folder is replaced, nothing else is overwritten)")
    foreign = _foreign_files(out) if out.is_dir() else []
    if foreign:
        raise ReportError(f"--out {out} holds files the earlier report did not write ({', '.join(foreign[:3])}"
                          f"{', ...' if len(foreign) > 3 else ''}): move them, or pass another --out (a report "
                          "replaces only its own files)")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "tables").mkdir(parents=True)
    return partial


def build_report(dataset: str, *, preset: str | None = None, methods: str | Sequence[str] | None = None,
                 runs: str | Path | None = None, leaderboard_dir: str | Path = "leaderboards",
                 out: str | Path | None = None, images: str | Sequence[str] | None = None, n_images: int = 4,
                 metric: str | None = None, cost: str | None = None, zoom: str | Sequence[int] | None = None,
                 root: str | Path | None = None,
                 dataset_options: Mapping[str, Any] | None = None, alpha: float = 0.05,
                 reported_dir: str | Path | None = None, runs_dir: str | Path | None = None) -> Report:
    """Write the report of one dataset (and preset) to `out` (default runs/reports/<dataset>-<preset>/). The
    arguments are the options of `fusion-bench report` (`runs` = --runs, bench's --out; `runs_dir` is its older
    name), and where the command takes a comma-separated list (methods, images) a list or that text is accepted.

    methods: keep these methods only (default: all with rows). images: the test images of the grid (default:
    the `n_images` on which methods disagree most). metric, cost: the quality and cost axes of the efficiency plot
    (default: a downstream score, else the first fusion metric; gflops, else params_m). zoom: x0,y0,x1,y1 of the
    zoomed inset, or "none" (default: the protocol's `report.zoom`, else the highest-contrast window).
    root, dataset_options: where the dataset is (for sources and labels in the grids).
    """
    start = time.perf_counter()
    if runs is not None and runs_dir is not None and Path(runs) != Path(runs_dir):
        raise ReportError(f"build_report: runs={runs} and runs_dir={runs_dir} name two folders; pass runs only")
    runs_dir = runs if runs is not None else runs_dir if runs_dir is not None else "runs"
    methods, images = comma_list(methods), comma_list(images)
    if not 0 < alpha < 1:
        raise ReportError(f"--alpha must be in (0, 1), got {alpha}")
    if n_images < 1:
        raise ReportError(f"--n-images must be >= 1, got {n_images}")
    zoom_box = _parse_zoom(zoom)
    leaderboard_dir, runs_dir = Path(leaderboard_dir), Path(runs_dir)
    raw = leaderboard_dir / "raw" / f"{dataset}.csv"
    if not raw.is_file():
        available = sorted(p.stem for p in (leaderboard_dir / "raw").glob("*.csv"))
        raise ReportError(f"no raw results for dataset {dataset!r}: {raw} does not exist (datasets with results in "
                          f"{leaderboard_dir}: {', '.join(available) or 'none'})")
    all_rows = read_rows(raw)
    if not all_rows:
        raise ReportError(f"{raw} has no rows: run `fusion-bench bench --dataset {dataset} ...` first")
    notes: list[tuple[str, str]] = []
    frame = pd.DataFrame.from_records(all_rows)
    preset = _choose_preset(frame, preset, dataset, notes)
    rows = [r for r in all_rows if r.get("preset") == preset]
    if methods:
        known = list(dict.fromkeys(r["method"] for r in rows))
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ReportError(f"--methods: no {preset} rows of {', '.join(unknown)} for {dataset}; methods with rows: "
                              f"{', '.join(known)}")
        rows = [r for r in rows if r["method"] in methods]
    aggregated, value_cols = aggregate_frame(rows)
    latest, _ = latest_rows(rows)
    records = aggregated.to_dict("records")
    labels = _labels(records)
    split_counts = aggregated["split_hash"].value_counts()
    main_split = str(split_counts.index[0])
    entries: list[Entry] = []
    if not runs_dir.is_dir():
        notes.append(("warn", f"runs directory {runs_dir} does not exist: the page shows the leaderboard only (no "
                              "grids, per-image tests or per-run plots); pass --runs (bench's --out)"))
    for i, (record, label) in enumerate(zip(records, labels)):
        mine = latest
        for col in ENTRY_COLUMNS:
            mine = mine[mine[col] == record[col]]
        seeds = list(mine["seed"])
        run_dirs, missing = {}, []
        for seed in seeds:
            run_dir = run_directory(runs_dir, record["method"], dataset, preset, record["config_hash"],
                                    record["split_hash"], seed)
            (run_dirs.__setitem__(seed, run_dir) if run_dir.is_dir() else missing.append(run_dir))
        entries.append(Entry(i, label, record, seeds, run_dirs, missing,
                             {c: pd.to_numeric(mine[c], errors="coerce").to_numpy(dtype=float) for c in value_cols}))
        if missing and runs_dir.is_dir():
            notes.append(("warn", f"{label}: run director{'y' if len(missing) == 1 else 'ies'} not found: "
                                  + ", ".join(str(p) for p in missing) + " (grid, plots and per-image tests leave "
                                  "those seeds out)"))
        if record["n"] == 1:
            notes.append(("info", f"{label}: one seed, so no std (shown as ± –) and no seed interval"))
    others = [e for e in entries if str(e.record["split_hash"]) != main_split]
    main = [e for e in entries if str(e.record["split_hash"]) == main_split]
    if others:
        notes.append(("warn", "rows from more than one test split: " + ", ".join(
            f"{e.label} ({e.record['n_images']} images, split {str(e.record['split_hash'])[:8]})" for e in others)
            + f"; grids, plots and statistics use split {main_split[:8]} "
              f"({main[0].record['n_images']} images) only"))
    out = Path(out) if out is not None else default_out(runs_dir, dataset, preset)
    work = _prepare_out(out)
    try:
        per_image, per_image_nan = run_outputs.per_image_means(main, notes)
        for label, counts in per_image_nan.items():
            notes.append(("warn", f"{label}: NaN per-image values: " + ", ".join(f"{m} {n}" for m, n in counts.items())
                                  + " (left out of means and tests; see Statistics)"))
        nan_seed = seed_nan_counts(rows)
        aggregated.to_csv(work / "tables" / "leaderboard.csv", index=False)
        sections = [page.section("leaderboard", "Leaderboard",
                                 leaderboard_section(records, value_cols, labels, nan_seed, work))]
        test_set = _load_test_set(dataset, root, dataset_options or {}, notes)
        grid_html, shown = grid_section(dataset, main, list(per_image[next(iter(per_image))].index)
                                         if per_image else [], images, n_images, zoom_box, test_set, work, notes)
        sections.append(page.section("qualitative", "Qualitative comparison", grid_html))
        sections.append(page.section("plots", "Plots", plots_section(main, value_cols, metric, cost, work, notes)))
        sections.append(page.section("statistics", "Statistics",
                                     stats_section(main, value_cols, per_image, per_image_nan, alpha, work, notes)))
        sections.append(page.section("reported", "Reproduced vs reported",
                                     reported_section(dataset, main, reported_dir, work)))
        robust_html = robust_hook(dataset, leaderboard_dir, preset, work, methods)
        if robust_html is not None:
            sections.append(page.section("robustness", "Robustness", robust_html))
        balance_html = balance_section(rows, work)  # AV rows of `bench --protocol balance`
        if balance_html is not None:
            sections.append(page.section("balance", "Audio-visual balance", balance_html))
        sections.insert(0, page.section("notes", "Notes", page.notes(notes)))
        generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        meta = (f"Generated {generated} by <code>fusion-bench report</code> from {page.e(str(raw))} and "
                f"{page.e(str(runs_dir))}/; {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, preset "
                f"{page.e(preset)}, metric dialect {page.e(str(records[0]['metric_dialect']) or '-')}. "
                "Static page: open it in any browser, no server or network needed.")
        nav = [("notes", "Notes"), ("leaderboard", "Leaderboard"), ("qualitative", "Qualitative"),
               ("plots", "Plots"), ("statistics", "Statistics"), ("reported", "Reproduced vs reported")]
        nav += [("robustness", "Robustness")] if robust_html is not None else []
        if balance_html is not None:
            nav.append(("balance", "AV balance"))
        (work / "index.html").write_text(page.page(f"{dataset} ({preset})", meta, nav, sections), encoding="utf-8")
        seconds = time.perf_counter() - start
        (work / MARKER).write_text(json.dumps({
            "generator": "fusion-bench report", "dataset": dataset, "preset": preset, "generated": generated,
            "raw": str(raw), "runs": str(runs_dir), "entries": labels, "images": shown,
            "notes": [text for _, text in notes],
            "files": sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())},
            indent=1) + "\n")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    return Report(out / "index.html", out, notes, labels, shown, seconds)



__all__ = ["Report", "build_report", "default_out"]
