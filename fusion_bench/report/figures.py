"""Report figures (matplotlib, Agg backend, bundled DejaVu fonts: nothing is downloaded). Each function writes one
PNG and returns its path, or None when there is nothing to draw."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fusion_bench.report.stats import FriedmanResult

DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10,
                         "figure.dpi": DPI, "savefig.dpi": DPI})
    return plt


def colours(labels: Sequence[str]) -> dict[str, tuple]:
    """One colour per entry, the same in every figure (tab10, tab20 beyond ten entries)."""
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _save(fig, path: Path, tight_box: bool = False) -> Path:
    """Save and close; figures laid out with tight_layout need no second bounding-box pass (it costs a draw)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight" if tight_box else None)
    _plt().close(fig)
    return path


def _arrow(direction: bool | None) -> str:
    return {True: " ↑", False: " ↓", None: ""}[direction]


def axis_range(low: float, high: float, non_negative: bool) -> tuple[float, float]:
    """The value axis of a bar chart that shows the differences: from a little below the smallest value (mean -
    std) to a little above the largest, not from 0 (0 when the values are non-negative and the margin would cross
    it)."""
    span = high - low
    if span <= 0:
        span = abs(high) * 0.1 or 1.0
    bottom, top = low - 0.15 * span, high + 0.15 * span
    if non_negative and bottom < 0:
        bottom = 0.0
    return bottom, top


def bar_charts(means: pd.DataFrame, stds: pd.DataFrame, directions: Mapping[str, bool | None], path: Path,
               ncols: int = 4, notes: Mapping[str, str] | None = None) -> Path | None:
    """Small multiples: one bar chart per column of `means` (rows: entries), error bars = std over seeds.

    Each panel sorts its entries best first (by the column's direction; no direction: largest first), and its
    value axis spans the values (`axis_range`), not 0..max, so small differences show; `notes` (column -> a short
    text, e.g. a metric's range) go under the panel's title. Entries without a std (one seed) get no error bar
    and an "n=1" mark; NaN means are listed last and marked "NaN"; an entry keeps its colour in every panel.
    """
    columns = [c for c in means.columns if means[c].notna().any()]
    if not columns or means.empty:
        return None
    plt = _plt()
    palette = colours(list(means.index))
    nrows = math.ceil(len(columns) / ncols)
    width = max(2.6, 0.32 * len(means.index) + 0.8)
    fig, axes = plt.subplots(nrows, min(ncols, len(columns)), figsize=(width * min(ncols, len(columns)),
                                                                       2.9 * nrows), squeeze=False)
    for ax, col in zip(axes.flat, columns):
        larger_first = directions.get(col) is not False
        order = sorted(means.index, key=lambda lab: (math.isnan(means.at[lab, col]),
                                                     -means.at[lab, col] if larger_first else means.at[lab, col]))
        labels = list(order)
        x = np.arange(len(labels))
        m = means.loc[labels, col].to_numpy(dtype=float)
        s = stds.loc[labels, col].to_numpy(dtype=float)
        spread = np.where(np.isnan(s), 0.0, s)
        finite = ~np.isnan(m)
        bottom, top = axis_range(float(np.min(m[finite] - spread[finite])), float(np.max(m[finite] + spread[finite])),
                                 bool(np.all(m[finite] >= 0)))
        ax.bar(x[finite], m[finite] - bottom, bottom=bottom, color=[palette[lab] for lab in np.array(labels)[finite]],
               width=0.75)
        ok = ~np.isnan(s) & finite
        ax.errorbar(x[ok], m[ok], yerr=s[ok], fmt="none", ecolor="black", capsize=2, linewidth=0.8)
        for i in np.flatnonzero(~finite):
            ax.text(x[i], bottom, "NaN", ha="center", va="bottom", fontsize=7, color="#b00", rotation=90)
        for i in np.flatnonzero(np.isnan(s) & finite):
            ax.text(x[i], m[i], "n=1", ha="center", va="bottom", fontsize=6, color="#555")
        note = (notes or {}).get(col)
        ax.set_title(f"{col}{_arrow(directions.get(col))}" + (f"\n{note}" if note else ""),
                     fontsize=9 if note else None)
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(bottom, top)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def efficiency_scatter(x: pd.Series, y: pd.Series, y_std: pd.Series, x_label: str, y_label: str,
                       path: Path) -> Path | None:
    """Cost (x) against quality (y) per entry, with the std over seeds as a vertical error bar."""
    ok = x.notna() & y.notna()
    if not ok.any():
        return None
    plt = _plt()
    palette = colours(list(x.index))
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    xs, ys = x[ok].to_numpy(dtype=float), y[ok].to_numpy(dtype=float)
    for label, xv, yv, sv in zip(x[ok].index, xs, ys, y_std[ok].to_numpy(dtype=float)):
        ax.errorbar([xv], [yv], yerr=None if math.isnan(sv) else [sv], fmt="o", color=palette[label], capsize=2,
                    markersize=6)
        ax.annotate(label, (xv, yv), textcoords="offset points", xytext=(5, 4), fontsize=8)
    missing = []
    for label, xv, yv in zip(x.index, x.to_numpy(dtype=float), y.to_numpy(dtype=float)):
        lacking = [str(name) for name, v in ((x.name or "cost", xv), (y.name or "quality", yv)) if math.isnan(v)]
        if lacking:
            missing.append(f"{label} ({' and '.join(lacking)})")
    if missing:  # shown as missing, never silently dropped
        ax.set_title("not measured, so not placed: " + ", ".join(missing), fontsize=7, color="#b00", loc="left",
                     wrap=True)
    positive = xs[xs > 0]
    if len(positive) == len(xs) and positive.max() / positive.min() > 100:
        ax.set_xscale("log")
    elif len(positive) and positive.max() / positive.min() > 100:
        ax.set_xscale("symlog", linthresh=float(positive.min()))
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(True, alpha=0.3)
    ax.margins(0.15)
    fig.tight_layout()
    return _save(fig, path)


def heatmap(values: pd.DataFrame, title: str, path: Path, fmt: str = "{:.2f}") -> Path | None:
    """Entries (rows) x classes (columns), annotated; NaN cells grey with "n/a"."""
    if values.empty or not values.notna().any().any():
        return None
    plt = _plt()
    data = values.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.75 * data.shape[1] + 2.2), max(2.0, 0.42 * data.shape[0] + 1.3)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", vmin=0.0,
                      vmax=max(1.0, float(np.nanmax(data))))
    ax.set_xticks(range(data.shape[1]), values.columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(data.shape[0]), values.index, fontsize=8)
    for (i, j), v in np.ndenumerate(data):
        text = "n/a" if math.isnan(v) else fmt.format(v)
        colour = "black" if math.isnan(v) or v > 0.6 * image.norm.vmax else "white"
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return _save(fig, path)


def loss_groups(columns: Sequence[str]) -> dict[str, list[str]]:
    """The loss columns of a Lightning CSV log grouped into the panels they are drawn on: `train loss` and `val
    loss` (the totals: `<split>/loss`, `<split>_loss`, with `_step`/`_epoch` variants) and `train components` /
    `val components` (every other loss column of the split), each group only when it has columns."""
    groups: dict[str, list[str]] = {}
    for col in columns:
        if "loss" not in col.lower():
            continue
        split = "val" if col.lower().startswith(("val", "valid")) else "train"
        stem = col.lower().split("/", 1)[-1]
        for suffix in ("_step", "_epoch"):
            stem = stem.removesuffix(suffix)
        total = stem in ("loss", f"{split}_loss", "train_loss", "val_loss")
        groups.setdefault(f"{split} {'loss' if total else 'components'}", []).append(col)
    order = ("train loss", "val loss", "train components", "val components")
    return {name: groups[name] for name in order if name in groups}


def training_curves(curves: Mapping[str, Mapping[int, pd.DataFrame]], path: Path) -> Path | None:
    """One row of panels per entry, one panel per loss group (`loss_groups`: the train total, the val total, the
    train and val components), so losses of different scales never share an axis; the value axis is logarithmic
    when a panel's values are positive and span more than a factor of 10. Colours name the columns, line styles
    the seeds; a legend lists only what its panel draws."""
    rows = []
    for label, seeds in curves.items():
        ordered = sorted(seeds.items())
        columns = list(dict.fromkeys(c for _, frame in ordered for c in frame.columns))
        for group, cols in loss_groups(columns).items():
            rows.append((label, group, cols, ordered))
    if not rows:
        return None
    plt = _plt()
    labels = list(dict.fromkeys(r[0] for r in rows))
    ncols = max(sum(1 for r in rows if r[0] == label) for label in labels)
    fig, axes = plt.subplots(len(labels), ncols, figsize=(4.2 * ncols, 3.4 * len(labels)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    line_styles = ["-", "--", ":", "-."]
    cmap = plt.get_cmap("tab10")
    filled = dict.fromkeys(labels, 0)
    for label, group, cols, ordered in rows:
        ax = axes[labels.index(label), filled[label]]
        filled[label] += 1
        ax.axis("on")
        drawn: list[float] = []
        for s_i, (seed, frame) in enumerate(ordered):
            x_col = "step" if "step" in frame.columns else frame.columns[0]
            for c_i, col in enumerate(cols):
                if col not in frame.columns:
                    continue
                series = frame[[x_col, col]].apply(pd.to_numeric, errors="coerce").dropna()
                if series.empty:
                    continue
                ax.plot(series[x_col], series[col], line_styles[s_i % 4], color=cmap(c_i % 10), linewidth=1,
                        label=f"{col}, seed {seed}" if len(ordered) > 1 else col)
                drawn += list(series[col].to_numpy(dtype=float))
        values = np.array(drawn)
        if len(values) and np.all(values > 0) and values.max() / values.min() > 10:
            ax.set_yscale("log")
        ax.set_title(f"{label}: {group}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def cd_diagram(result: FriedmanResult, path: Path, title: str | None = None) -> Path | None:
    """Demšar's critical-difference diagram: average ranks on an axis, the CD bar, and thick lines joining
    methods whose average ranks differ by less than the CD."""
    k = result.k
    if k < 2:
        return None
    plt = _plt()
    names, ranks = list(result.average_ranks.index), result.average_ranks.to_numpy(dtype=float)
    half = math.ceil(k / 2)
    height = 1.6 + 0.28 * max(half, k - half) + 0.18 * len(result.groups())
    fig, ax = plt.subplots(figsize=(7.0, height))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(height, 0)
    ax.axis("off")
    axis_y = 0.9
    ax.hlines(axis_y, 1, k, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, axis_y - 0.08, axis_y, color="black", linewidth=1)
        ax.text(r, axis_y - 0.12, str(r), ha="center", va="bottom", fontsize=8)
    # CD bar above the axis, starting at rank 1
    ax.hlines(0.35, 1, 1 + result.cd, color="black", linewidth=1.5)
    for end in (1, 1 + result.cd):
        ax.vlines(end, 0.3, 0.4, color="black", linewidth=1)
    ax.text(1 + result.cd / 2, 0.27, f"CD = {result.cd:.2f}", ha="center", va="bottom", fontsize=8)
    # cliques: thick lines just below the axis
    group_y = axis_y + 0.2
    for group in result.groups():
        lo, hi = ranks[names.index(group[0])], ranks[names.index(group[-1])]
        ax.hlines(group_y, lo - 0.03, hi + 0.03, color="black", linewidth=3)
        group_y += 0.18
    label_y0 = group_y + 0.2
    for i, (name, rank) in enumerate(zip(names, ranks)):
        left = i < half
        row = i if left else k - 1 - i
        y = label_y0 + 0.28 * row
        x_text = 0.6 if left else k + 0.4
        ax.plot([rank, rank, x_text], [axis_y, y, y], color="black", linewidth=0.7)
        ax.text(x_text + (-0.05 if left else 0.05), y, f"{name} ({rank:.2f})", ha="right" if left else "left",
                va="center", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path, tight_box=True)


__all__ = ["bar_charts", "cd_diagram", "colours", "efficiency_scatter", "heatmap", "training_curves"]
