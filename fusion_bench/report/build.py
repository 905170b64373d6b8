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
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion_bench.benchmark.leaderboard import (
    ENTRY_COLUMNS,
    LeaderboardError,
    aggregate_frame,
    higher_is_better,
    latest_rows,
)
from fusion_bench.benchmark.protocol import BENCHMARKS_DIR
from fusion_bench.benchmark.results import EFFICIENCY_COLUMNS, read_rows, run_directory
from fusion_bench.report import figures, grid, page, stats
from fusion_bench.report.formats import build_table, seed_nan_counts, to_html, to_latex

REPORTED_DIR = BENCHMARKS_DIR / "reported"  # the checkout's benchmarks/, else the copy shipped in the wheel
SOURCE_ROWS = ("source_a", "source_b")  # = benchmark.runner.BASELINE_METHODS (not imported: it loads Lightning)
MARKER = "report.json"
QUALITY_DEFAULTS = ("seg_miou", "native_miou", "det_map50", "cls_acc")


class ReportError(LeaderboardError):
    """A report request that cannot produce a page; the message names the argument or file."""


@dataclass
class Entry:
    """One leaderboard entry of the report (an aggregated record) and where its runs are."""

    index: int
    label: str
    record: dict[str, Any]
    seeds: list[str]
    run_dirs: dict[str, Path]  # seed -> existing run directory
    missing_runs: list[Path] = field(default_factory=list)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # column -> per-seed values (NaN kept)

    @property
    def method(self) -> str:
        return str(self.record["method"])

    def first_run(self) -> tuple[str, Path] | None:
        for seed in sorted(self.run_dirs, key=lambda s: (len(s), s)):
            return seed, self.run_dirs[seed]
        return None


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


def _labels(records: list[dict[str, Any]]) -> list[str]:
    """The method name, disambiguated by config hash (and test split) when a method has several entries."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r["method"]] = counts.get(r["method"], 0) + 1
    labels = []
    for r in records:
        label = str(r["method"])
        if counts[r["method"]] > 1:
            label += f" [{str(r['config_hash'])[:6]}"
            same_hash = sum(1 for o in records if o["method"] == r["method"] and o["config_hash"] == r["config_hash"])
            label += f" split {str(r['split_hash'])[:6]}]" if same_hash > 1 else "]"
        labels.append(label)
    return labels


def _read_csv(path: Path, notes: list, what: str) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        notes.append(("warn", f"{what} {path} could not be read ({err}); left out"))
        return None


def _per_image(entries: Sequence[Entry], notes: list) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, int]]]:
    """entry label -> (image x metric) means over seeds; entry label -> metric -> NaN values (images x seeds)."""
    means: dict[str, pd.DataFrame] = {}
    nan_counts: dict[str, dict[str, int]] = {}
    for entry in entries:
        frames = []
        for seed, run_dir in sorted(entry.run_dirs.items()):
            path = run_dir / "metrics_per_image.csv"
            if not path.is_file():
                notes.append(("warn", f"{entry.label} seed {seed}: {path} is missing (no per-image statistics from "
                                      "this seed)"))
                continue
            frame = _read_csv(path, notes, "per-image metrics")
            if frame is None or "name" not in frame.columns:
                continue
            frames.append(frame.assign(name=frame["name"].astype(str)).set_index("name"))
        if not frames:
            continue
        stacked = pd.concat(frames)
        numeric = stacked.apply(pd.to_numeric, errors="coerce")
        order = list(dict.fromkeys(frames[0].index))
        means[entry.label] = numeric.groupby(level=0, sort=False).mean().reindex(order)
        counts = {c: int(numeric[c].isna().sum()) for c in numeric.columns if numeric[c].isna().any()}
        if counts:
            nan_counts[entry.label] = counts
    return means, nan_counts


def _value_frames(entries: Sequence[Entry], columns: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    means = pd.DataFrame({c: [float(e.record[f"{c}_mean"]) for e in entries] for c in columns},
                         index=[e.label for e in entries])
    stds = pd.DataFrame({c: [float(e.record[f"{c}_std"]) for e in entries] for c in columns},
                        index=[e.label for e in entries])
    return means, stds


def _per_class(entries: Sequence[Entry], notes: list) -> dict[tuple[str, str], pd.DataFrame]:
    """(evaluator, metric) -> entries x classes, mean over seeds of downstream_per_class.csv."""
    records = []
    for entry in entries:
        for seed, run_dir in entry.run_dirs.items():
            path = run_dir / "downstream_per_class.csv"
            if path.is_file():
                frame = _read_csv(path, notes, "per-class values")
                if frame is not None and {"evaluator", "class", "metric", "value"} <= set(frame.columns):
                    records.append(frame.assign(entry=entry.label, seed=seed))
    if not records:
        return {}
    frame = pd.concat(records, ignore_index=True)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    out = {}
    order = [e.label for e in entries]
    for (evaluator, metric), part in frame.groupby(["evaluator", "metric"], sort=False):
        classes = list(dict.fromkeys(part["class"].astype(str)))
        table = part.assign(**{"class": part["class"].astype(str)}).pivot_table(
            index="entry", columns="class", values="value", aggfunc="mean", dropna=False)
        out[(str(evaluator), str(metric))] = table.reindex(index=[o for o in order if o in table.index],
                                                           columns=classes)
    return out


def _curves(entries: Sequence[Entry]) -> dict[str, dict[int, pd.DataFrame]]:
    out: dict[str, dict[int, pd.DataFrame]] = {}
    for entry in entries:
        for seed, run_dir in entry.run_dirs.items():
            path = run_dir / "logs" / "metrics.csv"
            if path.is_file():
                try:
                    frame = pd.read_csv(path)
                except (OSError, ValueError):
                    continue
                if any("loss" in c.lower() for c in frame.columns):
                    out.setdefault(entry.label, {})[int(seed)] = frame
    return out


def _load_test_set(dataset: str, root: str | Path | None, options: Mapping[str, Any], notes: list):
    try:
        from fusion_bench.registry import get_datamodule

        datamodule_cls = get_datamodule(dataset)
        return datamodule_cls.dataset_class(datamodule_cls.resolve_root(root), "test", **dict(options))
    except Exception as err:  # noqa: BLE001 - any failure only removes the sources from the grid; it is reported
        notes.append(("warn", f"the test split of {dataset} could not be loaded, so the grids show fused images "
                              f"only (no sources or labels): {str(err).splitlines()[0]}"))
        return None


def _protocol_zoom(dataset: str, task: Any) -> Any:
    try:
        from fusion_bench.benchmark.protocol import load_protocol

        return (load_protocol(dataset, task).get("report") or {}).get("zoom")
    except (ValueError, OSError):
        return None


# ------------------------------------------------------------------------------------------------ sections


def _leaderboard_section(records, value_cols, labels, nan_seed, out: Path) -> str:
    table = build_table(records, value_cols, labels=dict(enumerate(labels)), nan_counts=nan_seed)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "tables" / "leaderboard.tex").write_text(to_latex(table))
    body = ("<p>Mean ± sample std over seeds (n = seeds). Best per column in <b>bold</b>, second "
            "<u>underlined</u>, by the arrow's direction (↑ higher is better, ↓ lower is better; no arrow: not "
            "ranked). ± – : a single value, so no std. (k NaN): k seeds' values were NaN or empty and are left out "
            "of the mean. Also as <a href=\"tables/leaderboard.csv\">CSV</a> and "
            "<a href=\"tables/leaderboard.tex\">LaTeX (booktabs)</a>.</p>")
    return body + '<div class="scroll">' + to_html(table) + "</div>"


def _grid_section(dataset: str, entries: Sequence[Entry], image_names: Sequence[str], requested: Sequence[str] | None,
                  count: int, zoom: list[int] | None, test_set, out: Path, notes: list) -> tuple[str, list[str]]:
    fused: dict[str, dict[str, Path]] = {}
    seeds: dict[str, str] = {}
    for entry in entries:
        run = entry.first_run()
        if run is None:
            continue
        seeds[entry.label] = run[0]
        folder = run[1] / "fused"
        fused[entry.label] = {p.stem: p for p in folder.glob("*.png")} if folder.is_dir() else {}
    if not fused:
        return "<p>No run directory with fused images was found: no grid.</p>", []
    names = list(image_names) or sorted({n for paths in fused.values() for n in paths})
    sample_index = {ref.name: i for i, ref in enumerate(test_set.samples)} if test_set is not None else {}
    if test_set is not None:
        names = [n for n in names if n in sample_index] or names
    if requested:
        unknown = [n for n in requested if n not in names]
        if unknown:
            raise ReportError(f"--images: {', '.join(unknown)} not among the test images of {dataset} "
                              f"({', '.join(names[:8])}{' ...' if len(names) > 8 else ''})")
        chosen = [(n, math.nan) for n in requested]
        how = "chosen with --images"
    else:
        pool = {k: v for k, v in fused.items() if k.split(" ")[0] not in SOURCE_ROWS}
        chosen = grid.pick_images(pool if len(pool) >= 2 else fused, names, count)
        how = ("picked automatically: the images on which the methods' fused images disagree most (mean over pixels "
               "of the std across methods of the luminance, IR-only/visible-only rows left out)")
    modalities = getattr(test_set, "modalities", ()) if test_set is not None else ()
    class_names = getattr(test_set, "class_names", None)
    box_names = getattr(test_set, "box_class_names", None)
    seg_palette = grid.palette(len(class_names)) if class_names else None
    box_palette = grid.palette(len(box_names), strong=True) if box_names else None
    protocol_zoom = _protocol_zoom(dataset, getattr(test_set, "task", None)) if test_set is not None else None
    parts = [f"<p>{len(chosen)} of {len(names)} test images, {how}. Each method shows its lowest seed with a run "
             "directory. The orange box is the zoomed region (from --zoom, else the dataset protocol's "
             "<code>report.zoom</code>, else the window of highest local contrast of the sources), enlarged "
             "(nearest neighbour) in the corner.</p>"]
    missing_total: list[str] = []
    seg_shown = det_shown = False
    for i, (name, score) in enumerate(chosen):
        sample = test_set[sample_index[name]] if test_set is not None and name in sample_index else None
        sources = [(m, grid.to_uint8(sample[m])) for m in modalities if sample is not None and m in sample]
        images = {label: grid.read_rgb(paths[name]) for label, paths in fused.items() if name in paths}
        reference = sources[0][1] if sources else next(iter(images.values()), None)
        if reference is None:
            parts.append(f"<h3>{page.e(name)}</h3><p>no fused image of any method exists for this image.</p>")
            continue
        size = reference.shape[:2]
        try:
            box = _zoom_for(name, zoom, protocol_zoom, sources, images, size)
        except ValueError as err:
            raise ReportError(f"{err} (image {name})") from err
        folder = out / "tiles" / f"img{i:02d}"
        figs = [page.figure(_rel(grid.make_tile(img, folder / f"src_{m}.png", box), out), f"source: {m}")
                for m, img in sources]
        missing = []
        for j, label in enumerate(fused):
            if label in images:
                figs.append(page.figure(_rel(grid.make_tile(images[label], folder / f"fused_{j:02d}.png", box), out),
                                        f"{label} (seed {seeds[label]})"))
            else:
                expected = next(e for e in entries if e.label == label).run_dirs[seeds[label]] / "fused" / f"{name}.png"
                missing.append(f"{label}: {expected}")
                figs.append(page.figure(_rel(grid.placeholder(folder / f"fused_{j:02d}.png", size), out),
                                        f"{label}: fused image missing", missing=True))
        score_text = "" if math.isnan(score) else f" (disagreement {score:.2f})"
        rows = [page.grid_row("fused", figs)]
        if class_names and sample is not None and "mask" in sample:
            rows.append(_seg_row(sample, sources, images, fused, entries, seeds, name, seg_palette, test_set,
                                 folder, out, len(figs)))
            seg_shown = seg_shown or bool(rows[-1])
        if box_names and sample is not None and "boxes" in sample:
            rows.append(_det_row(sample, sources, images, fused, entries, seeds, name, box_palette, folder, out,
                                 len(figs)))
            det_shown = det_shown or bool(rows[-1])
        parts.append(f"<h3>{page.e(name)}{score_text}</h3>")
        if missing:
            missing_total += missing
            parts.append("<p class=\"nan\">Missing fused images: " + page.e("; ".join(missing)) + "</p>")
        parts.append(page.grid([r for r in rows if r], len(figs), grid.TILE_SIDE))
    if seg_shown and seg_palette is not None:
        parts.append("<p>Segmentation classes:</p>" + page.swatches(class_names, seg_palette))
    if det_shown and box_palette is not None:
        parts.append(f"<p>Detection classes (predicted boxes with confidence ≥ {grid.CONF_THRESHOLD}):</p>"
                     + page.swatches(box_names, box_palette))
    if missing_total:
        notes.append(("warn", f"{len(missing_total)} fused image(s) shown in the grid are missing: "
                              + "; ".join(missing_total)))
    return "\n".join(parts), [n for n, _ in chosen]


def _zoom_for(name: str, zoom, protocol_zoom, sources, images, size) -> tuple[int, int, int, int] | None:
    if zoom == "none":
        return None
    if zoom is not None:
        return grid.check_box(zoom, size, "--zoom")
    if isinstance(protocol_zoom, Mapping) and name in protocol_zoom:
        return grid.check_box(protocol_zoom[name], size, f"protocol report.zoom[{name}]")
    if isinstance(protocol_zoom, (list, tuple)):
        return grid.check_box(protocol_zoom, size, "protocol report.zoom")
    stack = [img for _, img in sources] or list(images.values())
    stack = [img for img in stack if img.shape[:2] == size]
    return grid.contrast_box(np.mean(np.stack(stack), axis=0).astype(np.uint8))


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _colour_source(sources):
    return next((img for m, img in sources if not np.all(img[..., 0] == img[..., 1])), sources[-1][1]) \
        if sources else None


def _seg_row(sample, sources, images, fused, entries, seeds, name, palette, test_set, folder, out, n) -> str:
    mask = np.asarray(sample["mask"].cpu() if hasattr(sample["mask"], "cpu") else sample["mask"]).astype(np.int64)
    base = _colour_source(sources)
    figs = []
    if base is not None:
        gt = grid.overlay_mask(base, mask, palette, test_set.ignore_index)
        figs.append(page.figure(_rel(grid.make_tile(gt, folder / "seg_gt.png"), out), "labels"))
    any_pred = False
    for j, label in enumerate(fused):
        run = next(e for e in entries if e.label == label).run_dirs[seeds[label]]
        pred_path = run / "downstream" / "seg" / "predictions" / f"{name}.png"
        if pred_path.is_file() and label in images:
            with grid.Image.open(pred_path) as im:
                pred = np.asarray(im).astype(np.int64)
            tile = grid.overlay_mask(images[label], pred, palette, test_set.ignore_index)
            figs.append(page.figure(_rel(grid.make_tile(tile, folder / f"seg_{j:02d}.png"), out),
                                    f"{label}: SegFormer"))
            any_pred = True
        else:
            why = "fused image missing" if label not in images else "no saved prediction"
            figs.append(page.figure(_rel(grid.placeholder(folder / f"seg_{j:02d}.png", mask.shape), out),
                                    f"{label}: {why}", missing=True))
    return page.grid_row("segmentation", _pad(figs, len(sources), base is not None, n)) if any_pred else ""


def _det_row(sample, sources, images, fused, entries, seeds, name, palette, folder, out, n) -> str:
    base = _colour_source(sources)
    mask_like = next(iter(images.values()), np.zeros((64, 64, 3), np.uint8))
    figs = []
    boxes = sample["boxes"].tolist() if hasattr(sample["boxes"], "tolist") else list(sample["boxes"])
    labels = sample["labels"].tolist() if "labels" in sample else [0] * len(boxes)
    if base is not None:
        figs.append(page.figure(_rel(grid.make_tile(grid.draw_boxes(base, boxes, labels, palette),
                                                    folder / "det_gt.png"), out), "labels"))
    any_pred = False
    for j, label in enumerate(fused):
        run = next(e for e in entries if e.label == label).run_dirs[seeds[label]]
        pred_path = run / "downstream" / "det" / "test" / "labels" / f"{name}.txt"
        det_dir = run / "downstream" / "det" / "test"
        if det_dir.is_dir() and label in images:
            pb, pl, ps = grid.read_yolo_predictions(pred_path, images[label].shape[:2])
            tile = grid.draw_boxes(images[label], pb, pl, palette, ps)
            figs.append(page.figure(_rel(grid.make_tile(tile, folder / f"det_{j:02d}.png"), out),
                                    f"{label}: YOLO ({len(pb)} boxes)"))
            any_pred = True
        else:
            size = (images.get(label) if label in images else base if base is not None else mask_like).shape[:2]
            why = "fused image missing" if label not in images else "no saved prediction"
            figs.append(page.figure(_rel(grid.placeholder(folder / f"det_{j:02d}.png", size), out),
                                    f"{label}: {why}", missing=True))
    return page.grid_row("detection", _pad(figs, len(sources), base is not None, n)) if any_pred else ""


def _pad(figs: list[str], n_sources: int, has_labels: bool, n: int) -> list[str]:
    """Line a label row up with the fused row: the labels tile under the last source, one tile per method."""
    before = max(n_sources - 1, 0) if has_labels else n_sources
    out = ["<div></div>"] * before + figs
    return out + ["<div></div>"] * max(0, n - len(out))


def _plots_section(entries: Sequence[Entry], value_cols: Sequence[str], metric: str | None, cost: str | None,
                   out: Path, notes: list) -> str:
    parts = []
    quality = [c for c in value_cols if c not in EFFICIENCY_COLUMNS]
    dialect = str(entries[0].record["metric_dialect"]) if entries else ""
    directions = {c: higher_is_better(c, dialect) for c in value_cols}
    means, stds = _value_frames(entries, quality)
    path = figures.bar_charts(means, stds, directions, out / "figures" / "bars.png")
    if path:
        parts.append("<h3>Per-metric means</h3><p>Error bars: std over seeds (none for a single seed, marked "
                     "n=1).</p>" + f'<img class="plot" src="{_rel(path, out)}" alt="bar charts">')
    if cost is not None and (cost not in value_cols or not any(
            not math.isnan(float(e.record[f"{cost}_mean"])) for e in entries)):
        raise ReportError(f"--cost {cost!r} has no values in these rows; choose gflops or params_m")
    cost = cost or next((c for c in ("gflops", "params_m") if c in value_cols
                         and any(float(e.record[f"{c}_mean"]) > 0 for e in entries)), None)
    available = [c for c in quality if any(not math.isnan(float(e.record[f"{c}_mean"])) for e in entries)]
    if metric is not None and metric not in available:
        raise ReportError(f"--metric {metric!r} has no values in these rows; columns with values: "
                          f"{', '.join(available)}")
    y_col = metric or next((c for c in QUALITY_DEFAULTS if c in available), None) or next(
        (c for c in available if directions.get(c) is not None), None)
    if cost and y_col:
        all_means, all_stds = _value_frames(entries, [cost, y_col])
        path = figures.efficiency_scatter(all_means[cost], all_means[y_col], all_stds[y_col],
                                          f"{cost} ({'GFLOPs of one fuse at 256x256' if cost == 'gflops' else 'M'})",
                                          f"{y_col}{figures._arrow(directions.get(y_col))}",
                                          out / "figures" / "efficiency.png")
        if path:
            parts.append(f"<h3>Efficiency: {page.e(cost)} vs {page.e(y_col)}</h3><p>Choose the quality axis with "
                         "--metric.</p>" + f'<img class="plot" src="{_rel(path, out)}" alt="efficiency">')
    per_class = _per_class(entries, notes)
    if per_class:
        pd.concat({f"{ev}/{m}": t for (ev, m), t in per_class.items()}, names=["evaluator/metric", "method"]).to_csv(
            out / "tables" / "per_class.csv")
    for k, ((evaluator, metric_name), table) in enumerate(per_class.items()):
        path = figures.heatmap(table, f"{evaluator}: per-class {metric_name} (mean over seeds)",
                               out / "figures" / f"per_class_{k}.png")
        if path:
            parts.append(f"<h3>Per-class {page.e(metric_name)} ({page.e(evaluator)})</h3><p>From each run's "
                         "downstream_per_class.csv, mean over seeds; grey n/a: the class is absent from the test "
                         "labels. Numbers in <a href=\"tables/per_class.csv\">per_class.csv</a>.</p>"
                         f'<img class="plot" src="{_rel(path, out)}" alt="per-class heat map">')
    curves = _curves(entries)
    path = figures.training_curves(curves, out / "figures" / "training.png")
    if path:
        parts.append("<h3>Training curves</h3><p>From each run's Lightning CSV log (logs/metrics.csv); one line "
                     "style per seed.</p>" + f'<img class="plot" src="{_rel(path, out)}" alt="training curves">')
    return "\n".join(parts) or "<p>No values to plot.</p>"


def _stats_section(entries: Sequence[Entry], value_cols: Sequence[str], per_image: Mapping[str, pd.DataFrame],
                   per_image_nan: Mapping[str, Mapping[str, int]], alpha: float, out: Path, notes: list) -> str:
    parts = []
    tables = out / "tables"
    dialect = str(entries[0].record["metric_dialect"]) if entries else ""
    # paired per-image tests
    labels = [e.label for e in entries if e.label in per_image]
    metrics = [c for c in (per_image[labels[0]].columns if labels else []) if higher_is_better(c, dialect) is not None]
    results = []
    for metric in metrics:
        values = pd.DataFrame({label: per_image[label][metric] for label in labels if metric in per_image[label]})
        if values.shape[1] < 2:
            continue
        frame = stats.paired_wilcoxon(values, higher_is_better(metric, dialect), alpha)
        results.append(frame.assign(metric=metric))
    if results:
        tests = pd.concat(results, ignore_index=True)
        tests.to_csv(tables / "wilcoxon.csv", index=False)
        pairs = list(dict.fromkeys(zip(tests["a"], tests["b"])))
        shown_metrics = list(dict.fromkeys(tests["metric"]))
        rows, classes, titles = [], [], []
        for a, b in pairs:
            row, cls, tit = [f"{a} vs {b}"], [""], [""]
            for metric in shown_metrics:
                hit = tests[(tests["a"] == a) & (tests["b"] == b) & (tests["metric"] == metric)]
                if hit.empty:
                    row.append(""), cls.append(""), tit.append("")
                    continue
                r = hit.iloc[0]
                p_text = page.fmt_number(float(r["p_holm"]), 2)
                if r["better"] == "=":
                    text, c = "=", "same"
                elif r["better"]:
                    text, c = f"{'▲' if r['better'] == a else '▼'} {p_text}", "sig"
                elif math.isnan(float(r["p_holm"])):
                    text, c = "no data", "same"
                else:
                    text, c = f"· {p_text}", ""
                row.append(text), cls.append(c)
                tit.append(f"n={r['n']} images ({r['n_nan']} with NaN left out), median diff (a-b) "
                           f"{page.fmt_number(float(r['median_diff']))}, W={page.fmt_number(float(r['statistic']))}, "
                           f"raw p={page.fmt_number(float(r['p']))}")
            rows.append(row), classes.append(cls), titles.append(tit)
        n_images = max((len(per_image[label]) for label in labels), default=0)
        parts.append(f"<h3>Paired per-image tests</h3><p>Wilcoxon signed-rank test on the per-image values "
                     f"({n_images} test images, each method's values averaged over its seeds, NaN values left out "
                     f"of that average), two-sided, Holm-corrected over the {len(pairs)} method pairs of each "
                     f"metric. ▲: the first method of the pair "
                     f"is significantly better (corrected p &lt; {alpha}, shown), ▼: the second is; ·: not "
                     f"significant; =: every per-image difference is zero. Hover a cell for n, the median "
                     f"difference and the raw p; all numbers in <a href=\"tables/wilcoxon.csv\">wilcoxon.csv</a>.</p>")
        parts.append(page.plain_table(["pair", *shown_metrics], rows, cell_class=classes, titles=titles))
    else:
        parts.append("<h3>Paired per-image tests</h3><p>Not computed: fewer than two methods have per-image metrics "
                     "(metrics_per_image.csv) on the same test split.</p>")
    if per_image_nan:
        rows = [[label, metric, count, len(per_image.get(label, [])) * len(
            next(e for e in entries if e.label == label).run_dirs)]
            for label, counts in per_image_nan.items() for metric, count in counts.items()]
        parts.append("<h3>NaN per-image values</h3><p>Per-image metric values that are NaN (e.g. a constant image) "
                     "are left out of the means and of the tests above; counted here over images x seeds:</p>"
                     + page.plain_table(["method", "metric", "NaN values", "values"], rows, left=2))
    # ranks, Friedman, Nemenyi
    blocks = [c for c in value_cols if c not in EFFICIENCY_COLUMNS and higher_is_better(c, dialect) is not None]
    means, _ = _value_frames(entries, blocks)
    scores = means.T
    directions = {c: bool(higher_is_better(c, dialect)) for c in blocks}
    if scores.shape[1] >= 2 and not scores.dropna().empty:
        result = stats.friedman_nemenyi(scores, directions, alpha)
        ranks = stats.rank_table(scores, directions)
        ranks.to_csv(tables / "ranks.csv")
        path = figures.cd_diagram(result, out / "figures" / "cd_diagram.png",
                                  f"average rank over {result.n_blocks} metrics (1 = best); CD at alpha {alpha}")
        friedman = ("not computed (needs 3 methods and 2 complete metrics)" if math.isnan(result.statistic)
                    else f"chi² = {result.statistic:.3f}, p = {page.fmt_number(result.p)}")
        dropped = (f" Left out (a NaN for some method): {', '.join(result.dropped_blocks)}."
                   if result.dropped_blocks else "")
        parts.append(f"<h3>Average rank and critical difference</h3><p>Each metric ranks the methods by its mean "
                     f"(1 = best by its direction, ties averaged); the average over {result.n_blocks} metrics (fusion "
                     f"metrics and downstream scores, not costs) gives the order below. Friedman test: {friedman}. "
                     f"Nemenyi critical difference at alpha {alpha}: CD = {result.cd:.3f} (q = "
                     f"{stats.nemenyi_q(result.k, alpha):.3f}, k = {result.k}); methods joined by a thick line differ "
                     f"by less than the CD. The metrics are not independent data sets as in Demšar (2006): read the "
                     f"test as a summary, not a proof.{dropped} Per-metric ranks: "
                     f"<a href=\"tables/ranks.csv\">ranks.csv</a>.</p>")
        parts.append(page.plain_table(["method", "average rank"],
                                      [[k, round(float(v), 3)] for k, v in result.average_ranks.items()]))
        if path:
            parts.append(f'<img class="plot" src="{_rel(path, out)}" alt="critical difference diagram">')
    else:
        parts.append("<h3>Average rank and critical difference</h3><p>Not computed: needs at least two methods and "
                     "one metric without NaN.</p>")
    # seed variability: one row per column, one cell per method (std, then the interval on a second line)
    records = []
    columns = [c for c in value_cols if c not in EFFICIENCY_COLUMNS]
    columns = [c for c in columns if any(not math.isnan(float(e.record[f"{c}_mean"])) for e in entries)]
    cells: dict[str, list[str]] = {c: [] for c in columns}
    for entry in entries:
        for col in columns:
            v = entry.values.get(col, np.array([]))
            n = int(np.sum(~np.isnan(v))) if len(v) else 0
            std = float(entry.record[f"{col}_std"])
            lo, hi = stats.bootstrap_ci(v)
            records.append({"method": entry.label, "metric": col, "n": n, "mean": float(entry.record[f"{col}_mean"]),
                            "std": std, "ci_low": lo, "ci_high": hi})
            if n == 0:
                text = '<span class="nan">NaN</span>'
            elif n == 1:
                text = "n=1: no std"
            else:
                text = (f"{page.fmt_number(std, 3)}<br><span class=\"std\">[{page.fmt_number(lo, 4)}, "
                        f"{page.fmt_number(hi, 4)}]</span>")
            cells[col].append(text)
    pd.DataFrame.from_records(records).to_csv(tables / "seeds.csv", index=False)
    parts.append("<h3>Seed variability</h3><p>Per column and method: the sample std over seeds and, below it, the "
                 "95 % percentile bootstrap interval of the mean over seeds (scipy.stats.bootstrap, 4999 resamples, "
                 "seed 0; with 2-3 seeds it only spans the observed values). Numbers in "
                 "<a href=\"tables/seeds.csv\">seeds.csv</a>.</p>"
                 + page.plain_table(["column", *[f"{e.label} ({len(e.seeds)} seed{'s' * (len(e.seeds) > 1)})"
                                                 for e in entries]],
                                    [[page.e(c), *cells[c]] for c in columns], raw=True))
    return "\n".join(parts)


def load_reported(dataset: str, reported_dir: str | Path | None = None) -> pd.DataFrame | None:
    """`benchmarks/reported/<dataset>.csv` (see its README), or None when the dataset has none."""
    path = Path(reported_dir or REPORTED_DIR) / f"{dataset}.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    needed = {"method", "our_method", "metric", "value", "source"}
    if not needed <= set(frame.columns):
        raise ReportError(f"{path}: expected columns {', '.join(sorted(needed))} (see benchmarks/reported/README.md)")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def _reported_section(dataset: str, entries: Sequence[Entry], reported_dir, out: Path) -> str:
    reported = load_reported(dataset, reported_dir)
    if reported is None:
        return (f"<p>No reported numbers for {page.e(dataset)} (add them to "
                f"<code>benchmarks/reported/{page.e(dataset)}.csv</code>).</p>")
    ours: dict[str, Entry] = {}
    for entry in entries:
        ours.setdefault(entry.method, entry)
    dialect = str(entries[0].record["metric_dialect"]) if entries else ""
    records = []
    for r in reported.itertuples(index=False):
        entry = ours.get(r.our_method) if r.our_method else None
        mean = std = math.nan
        if entry is not None and f"{r.metric}_mean" in entry.record:
            mean, std = float(entry.record[f"{r.metric}_mean"]), float(entry.record[f"{r.metric}_std"])
        records.append({"method": r.method, "our_method": r.our_method, "metric": r.metric, "reported": r.value,
                        "ours_mean": mean, "ours_std": std, "difference": mean - r.value, "source": r.source,
                        "reported_dialect": getattr(r, "dialect", ""), "our_dialect": dialect,
                        "note": getattr(r, "note", "")})
    frame = pd.DataFrame.from_records(records)
    frame.to_csv(out / "tables" / "reported.csv", index=False)
    parts = [f"<p>Numbers the papers report for {page.e(dataset)} (<code>benchmarks/reported/{page.e(dataset)}.csv"
             "</code>), one table per source. Where we implement the method and this page has its rows, the cell "
             "adds our mean ± std over seeds and the difference (ours − reported). A kit or protocol other than "
             f"ours (metric dialect {page.e(dialect or '-')}, see each note) means the numbers are not expected to "
             "match. All rows with differences: <a href=\"tables/reported.csv\">reported.csv</a>.</p>"]
    for source, part in frame.groupby("source", sort=False):
        metrics = list(dict.fromkeys(part["metric"]))
        kit = str(part["reported_dialect"].iloc[0] or "")
        kit_text = "" if not kit else (" · same kit as ours" if kit == dialect else f" · kit: {kit} (ours: {dialect})")
        rows = []
        for method, group in part.groupby("method", sort=False):
            our = str(group["our_method"].iloc[0] or "")
            ran = our in ours
            cells: list[str] = [page.e(str(method)),
                                page.e(our + ("" if ran or not our else " (not run)")) if our else "—"]
            for metric in metrics:
                hit = group[group["metric"] == metric]
                if hit.empty:
                    cells.append("")
                    continue
                h = hit.iloc[0]
                text = page.e(page.fmt_number(float(h["reported"])))
                if ran and not math.isnan(h["ours_mean"]):
                    std = "–" if math.isnan(h["ours_std"]) else page.fmt_number(float(h["ours_std"]), 2)
                    text += (f'<span class="std">ours {page.e(page.fmt_number(float(h["ours_mean"])))} ± {std}</span>'
                             f'<span class="std">Δ {float(h["difference"]):+.3g}</span>')
                elif ran:
                    text += '<span class="std">ours: not measured</span>'
                cells.append(text)
            rows.append(cells)
        note = str(part["note"].iloc[0] or "")
        parts.append(f"<h3>{page.e(str(source))}</h3><p class=\"meta\">{page.e(note)}{page.e(kit_text)}</p>"
                     + page.plain_table(["method", "ours", *metrics], rows, left=2, raw=True))
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ main


def _prepare_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; pass a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ReportError(f"--out {out} is not empty and holds no earlier report ({MARKER}); pass a new or empty "
                          "folder (a report folder is replaced, nothing else is overwritten)")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "tables").mkdir(parents=True)
    return partial


def build_report(dataset: str, *, preset: str | None = None, methods: Sequence[str] | None = None,
                 runs_dir: str | Path = "runs", leaderboard_dir: str | Path = "leaderboards",
                 out: str | Path | None = None, images: Sequence[str] | None = None, n_images: int = 4,
                 metric: str | None = None, cost: str | None = None, zoom: str | Sequence[int] | None = None,
                 root: str | Path | None = None,
                 dataset_options: Mapping[str, Any] | None = None, alpha: float = 0.05,
                 reported_dir: str | Path | None = None) -> Report:
    """Write the report of one dataset (and preset) to `out` (default runs/reports/<dataset>-<preset>/).

    methods: keep these methods only (default: all with rows). images: the test images of the grid (default:
    the `n_images` on which methods disagree most). metric, cost: the quality and cost axes of the efficiency plot
    (default: a downstream score, else the first fusion metric; gflops, else params_m). zoom: x0,y0,x1,y1 of the
    zoomed inset, or "none" (default: the protocol's `report.zoom`, else the highest-contrast window).
    root, dataset_options: where the dataset is (for sources and labels in the grids).
    """
    start = time.perf_counter()
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
        per_image, per_image_nan = _per_image(main, notes)
        for label, counts in per_image_nan.items():
            notes.append(("warn", f"{label}: NaN per-image values: " + ", ".join(f"{m} {n}" for m, n in counts.items())
                                  + " (left out of means and tests; see Statistics)"))
        nan_seed = seed_nan_counts(rows)
        aggregated.to_csv(work / "tables" / "leaderboard.csv", index=False)
        sections = [page.section("leaderboard", "Leaderboard",
                                 _leaderboard_section(records, value_cols, labels, nan_seed, work))]
        test_set = _load_test_set(dataset, root, dataset_options or {}, notes)
        grid_html, shown = _grid_section(dataset, main, list(per_image[next(iter(per_image))].index)
                                         if per_image else [], images, n_images, zoom_box, test_set, work, notes)
        sections.append(page.section("qualitative", "Qualitative comparison", grid_html))
        sections.append(page.section("plots", "Plots", _plots_section(main, value_cols, metric, cost, work, notes)))
        sections.append(page.section("statistics", "Statistics",
                                     _stats_section(main, value_cols, per_image, per_image_nan, alpha, work, notes)))
        sections.append(page.section("reported", "Reproduced vs reported",
                                     _reported_section(dataset, main, reported_dir, work)))
        sections.insert(0, page.section("notes", "Notes", page.notes(notes)))
        generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        meta = (f"Generated {generated} by <code>fusion-bench report</code> from {page.e(str(raw))} and "
                f"{page.e(str(runs_dir))}/; {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, preset "
                f"{page.e(preset)}, metric dialect {page.e(str(records[0]['metric_dialect']) or '-')}. "
                "Static page: open it in any browser, no server or network needed.")
        nav = [("notes", "Notes"), ("leaderboard", "Leaderboard"), ("qualitative", "Qualitative"),
               ("plots", "Plots"), ("statistics", "Statistics"), ("reported", "Reproduced vs reported")]
        (work / "index.html").write_text(page.page(f"{dataset} ({preset})", meta, nav, sections), encoding="utf-8")
        seconds = time.perf_counter() - start
        (work / MARKER).write_text(json.dumps({
            "generator": "fusion-bench report", "dataset": dataset, "preset": preset, "generated": generated,
            "raw": str(raw), "runs": str(runs_dir), "entries": labels, "images": shown,
            "notes": [text for _, text in notes]}, indent=1) + "\n")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    return Report(out / "index.html", out, notes, labels, shown, seconds)


__all__ = ["REPORTED_DIR", "Report", "ReportError", "build_report", "default_out", "load_reported"]
