"""The report's qualitative comparison: a grid per test image with the sources and every method's fused image (a
zoomed inset in the corner), plus the segmentation and detection predictions of the downstream evaluators where the
runs kept them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion_bench.benchmark.protocol import BASELINE_METHODS
from fusion_bench.errors import ReportError
from fusion_bench.report import grid, page
from fusion_bench.report.runs import Entry


def grid_section(dataset: str, entries: Sequence[Entry], image_names: Sequence[str], requested: Sequence[str] | None,
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
        pool = {k: v for k, v in fused.items() if k.split(" ")[0] not in BASELINE_METHODS}
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
        figs = [page.figure(page.rel(grid.make_tile(img, folder / f"src_{m}.png", box), out), f"source: {m}")
                for m, img in sources]
        missing = []
        for j, label in enumerate(fused):
            if label in images:
                tile = grid.make_tile(images[label], folder / f"fused_{j:02d}.png", box)
                figs.append(page.figure(page.rel(tile, out), f"{label} (seed {seeds[label]})"))
            else:
                expected = next(e for e in entries if e.label == label).run_dirs[seeds[label]] / "fused" / f"{name}.png"
                missing.append(f"{label}: {expected}")
                figs.append(page.figure(page.rel(grid.placeholder(folder / f"fused_{j:02d}.png", size), out),
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


def _protocol_zoom(dataset: str, task: Any) -> Any:
    try:
        from fusion_bench.benchmark.protocol import load_protocol

        return (load_protocol(dataset, task).get("report") or {}).get("zoom")
    except (ValueError, OSError):
        return None


def _colour_source(sources):
    return next((img for m, img in sources if not np.all(img[..., 0] == img[..., 1])), sources[-1][1]) \
        if sources else None


def _seg_row(sample, sources, images, fused, entries, seeds, name, palette, test_set, folder, out, n) -> str:
    mask = np.asarray(sample["mask"].cpu() if hasattr(sample["mask"], "cpu") else sample["mask"]).astype(np.int64)
    base = _colour_source(sources)
    figs = []
    if base is not None:
        gt = grid.overlay_mask(base, mask, palette, test_set.ignore_index)
        figs.append(page.figure(page.rel(grid.make_tile(gt, folder / "seg_gt.png"), out), "labels"))
    any_pred = False
    for j, label in enumerate(fused):
        run = next(e for e in entries if e.label == label).run_dirs[seeds[label]]
        pred_path = run / "downstream" / "seg" / "predictions" / f"{name}.png"
        if pred_path.is_file() and label in images:
            with grid.Image.open(pred_path) as im:
                pred = np.asarray(im).astype(np.int64)
            tile = grid.overlay_mask(images[label], pred, palette, test_set.ignore_index)
            figs.append(page.figure(page.rel(grid.make_tile(tile, folder / f"seg_{j:02d}.png"), out),
                                    f"{label}: SegFormer"))
            any_pred = True
        else:
            why = "fused image missing" if label not in images else "no saved prediction"
            figs.append(page.figure(page.rel(grid.placeholder(folder / f"seg_{j:02d}.png", mask.shape), out),
                                    f"{label}: {why}", missing=True))
    return page.grid_row("segmentation", _pad(figs, len(sources), base is not None, n)) if any_pred else ""


def _det_row(sample, sources, images, fused, entries, seeds, name, palette, folder, out, n) -> str:
    base = _colour_source(sources)
    mask_like = next(iter(images.values()), np.zeros((64, 64, 3), np.uint8))
    figs = []
    boxes = sample["boxes"].tolist() if hasattr(sample["boxes"], "tolist") else list(sample["boxes"])
    labels = sample["labels"].tolist() if "labels" in sample else [0] * len(boxes)
    if base is not None:
        figs.append(page.figure(page.rel(grid.make_tile(grid.draw_boxes(base, boxes, labels, palette),
                                                    folder / "det_gt.png"), out), "labels"))
    any_pred = False
    for j, label in enumerate(fused):
        run = next(e for e in entries if e.label == label).run_dirs[seeds[label]]
        pred_path = run / "downstream" / "det" / "test" / "labels" / f"{name}.txt"
        det_dir = run / "downstream" / "det" / "test"
        if det_dir.is_dir() and label in images:
            pb, pl, ps = grid.read_yolo_predictions(pred_path, images[label].shape[:2])
            tile = grid.draw_boxes(images[label], pb, pl, palette, ps)
            figs.append(page.figure(page.rel(grid.make_tile(tile, folder / f"det_{j:02d}.png"), out),
                                    f"{label}: YOLO ({len(pb)} boxes)"))
            any_pred = True
        else:
            size = (images.get(label) if label in images else base if base is not None else mask_like).shape[:2]
            why = "fused image missing" if label not in images else "no saved prediction"
            figs.append(page.figure(page.rel(grid.placeholder(folder / f"det_{j:02d}.png", size), out),
                                    f"{label}: {why}", missing=True))
    return page.grid_row("detection", _pad(figs, len(sources), base is not None, n)) if any_pred else ""


def _pad(figs: list[str], n_sources: int, has_labels: bool, n: int) -> list[str]:
    """Line a label row up with the fused row: the labels tile under the last source, one tile per method."""
    before = max(n_sources - 1, 0) if has_labels else n_sources
    out = ["<div></div>"] * before + figs
    return out + ["<div></div>"] * max(0, n - len(out))
