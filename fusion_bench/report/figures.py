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


def bar_charts(means: pd.DataFrame, stds: pd.DataFrame, directions: Mapping[str, bool | None], path: Path,
               ncols: int = 4) -> Path | None:
    """Small multiples: one bar chart per column of `means` (rows: entries), error bars = std over seeds.

    Entries without a std (one seed) get no error bar and an "n=1" mark; NaN means are marked "NaN".
    """
    columns = [c for c in means.columns if means[c].notna().any()]
    if not columns or means.empty:
        return None
    plt = _plt()
    labels = list(means.index)
    palette = colours(labels)
    nrows = math.ceil(len(columns) / ncols)
    width = max(2.6, 0.32 * len(labels) + 0.8)
    fig, axes = plt.subplots(nrows, min(ncols, len(columns)), figsize=(width * min(ncols, len(columns)),
                                                                       2.6 * nrows), squeeze=False)
    x = np.arange(len(labels))
    for ax, col in zip(axes.flat, columns):
        m = means[col].to_numpy(dtype=float)
        s = stds[col].to_numpy(dtype=float)
        ax.bar(x, np.nan_to_num(m), color=[palette[lab] for lab in labels], width=0.75)
        ok = ~np.isnan(s) & ~np.isnan(m)
        ax.errorbar(x[ok], m[ok], yerr=s[ok], fmt="none", ecolor="black", capsize=2, linewidth=0.8)
        top = np.nanmax(np.abs(m)) if np.any(~np.isnan(m)) else 1.0
        for i in np.flatnonzero(np.isnan(m)):
            ax.text(x[i], 0, "NaN", ha="center", va="bottom", fontsize=7, color="#b00", rotation=90)
        for i in np.flatnonzero(np.isnan(s) & ~np.isnan(m)):
            ax.text(x[i], m[i], "n=1", ha="center", va="bottom" if m[i] >= 0 else "top", fontsize=6, color="#555")
        ax.set_title(f"{col}{_arrow(directions.get(col))}")
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        ax.margins(y=0.15)
        ax.tick_params(axis="y", labelsize=7)
        if top == 0:
            ax.set_ylim(-1, 1)
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


def training_curves(curves: Mapping[str, Mapping[int, pd.DataFrame]], path: Path, ncols: int = 3) -> Path | None:
    """One panel per entry: every logged loss column against the step (a colour each), one line style per seed
    (Lightning CSV logs); the legend, below each panel, names the columns and the seeds' line styles."""
    panels = {label: seeds for label, seeds in curves.items() if seeds}
    if not panels:
        return None
    plt = _plt()
    from matplotlib.lines import Line2D

    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, min(ncols, len(panels)), figsize=(4.4 * min(ncols, len(panels)), 4.2 * nrows),
                             squeeze=False)
    line_styles = ["-", "--", ":", "-."]
    cmap = plt.get_cmap("tab10")
    for ax, (label, seeds) in zip(axes.flat, panels.items()):
        names: list[str] = []
        ordered = sorted(seeds.items())
        for s_i, (_, frame) in enumerate(ordered):
            x_col = "step" if "step" in frame.columns else frame.columns[0]
            for col in [c for c in frame.columns if "loss" in c.lower()]:
                if col not in names:
                    names.append(col)
                series = frame[[x_col, col]].apply(pd.to_numeric, errors="coerce").dropna()
                if not series.empty:
                    ax.plot(series[x_col], series[col], line_styles[s_i % 4], color=cmap(names.index(col) % 10),
                            linewidth=1)
        handles = [Line2D([], [], color=cmap(i % 10), label=name) for i, name in enumerate(names)]
        handles += [Line2D([], [], color="black", linestyle=line_styles[i % 4], label=f"seed {seed}")
                    for i, (seed, _) in enumerate(ordered)]
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2,
                  frameon=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
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
