"""Leaderboard tables in csv, md, latex (booktabs) and html: mean ± std over seeds, best bold, second underlined.

Ranking follows `fusion_bench.benchmark.leaderboard`: per column, within one preset, dialect and test split, by the
column's direction (an arrow in the header); columns without a known direction are not ranked. An entry with one
seed has no std: it is shown as "± –" (never as 0). Values are printed with a column-wide number of decimals
(4 significant digits for the column's largest mean).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_bench.benchmark.leaderboard import (
    aggregate_frame,
    best_key,
    best_values,
    csv_text,
    higher_is_better,
    load_results,
    markdown_table,
    nan_counts,
    raw_files,
    record_labels,
    shown_columns,
)
from fusion_bench.benchmark.results import read_rows

FORMATS = ("csv", "md", "latex", "html")
NO_STD = "–"  # one seed: no standard deviation


@dataclass
class Cell:
    mean: float
    std: float
    rank: int | None  # 1 best, 2 second, else None
    nan_count: int = 0  # NaN values behind this cell (per-image or per-seed), shown when > 0


@dataclass
class Table:
    """A leaderboard table ready to render: label columns, value columns with direction, cells."""

    label_columns: list[str]
    columns: list[str]
    directions: dict[str, bool | None]
    decimals: dict[str, int]
    labels: list[list[str]]
    cells: list[list[Cell]]


def decimals_for(values: list[float]) -> int:
    """Decimals giving 4 significant digits to the largest |value| (0..4)."""
    finite = [abs(v) for v in values if not math.isnan(v) and not math.isinf(v)]
    top = max(finite, default=0.0)
    if top == 0:
        return 3
    return int(min(4, max(0, 3 - math.floor(math.log10(top)))))


def build_table(records: list[dict[str, Any]], value_cols: list[str], preset: str | None = None,
                labels: Mapping[int, str] | None = None,
                nan_counts: Mapping[tuple[int, str], int] | None = None) -> Table:
    """The table model of aggregated records (see `aggregate_frame`), optionally one preset only.

    labels: record index -> display name (default: the entry's label, `leaderboard.entry_labels`, the same string
    as the CSV's label column and the Markdown table). nan_counts: (record index, column) -> count.
    Label columns: method, then preset / dialect when the table mixes several, n (seeds), and images (n_images)
    when entries come from more than one test split.
    """
    indexed = [(i, r) for i, r in enumerate(records) if preset is None or r["preset"] == preset]
    rows = [r for _, r in indexed]
    shown = shown_columns(rows, value_cols) if rows else []
    ranked = best_values(rows, shown)
    label_columns = ["method"]
    if len({r["preset"] for r in rows}) > 1:
        label_columns.append("preset")
    if len({r["metric_dialect"] for r in rows}) > 1:
        label_columns.append("dialect")
    label_columns.append("n")
    if len({r.get("split_hash", "") for r in rows}) > 1:
        label_columns.append("images")
    directions = {c: (higher_is_better(c, str(rows[0]["metric_dialect"])) if rows else None) for c in shown}
    decimals = {c: decimals_for([float(r[f"{c}_mean"]) for r in rows]) for c in shown}
    out_labels, out_cells = [], []
    default = record_labels(records)
    for i, r in indexed:
        name = (labels or {}).get(i, default[i])
        values = {"method": name, "preset": str(r["preset"]), "dialect": str(r["metric_dialect"]),
                  "n": str(r["n"]), "images": f"{r.get('n_images', '')} ({str(r.get('split_hash', ''))[:8]})"}
        out_labels.append([values[c] for c in label_columns])
        cells = []
        for c in shown:
            mean = float(r[f"{c}_mean"])
            order = ranked.get(best_key(c, r), [])
            rank = order.index(mean) + 1 if mean in order[:2] else None
            cells.append(Cell(mean, float(r[f"{c}_std"]), rank, (nan_counts or {}).get((i, c), 0)))
        out_cells.append(cells)
    return Table(label_columns, shown, directions, decimals, out_labels, out_cells)


def seed_nan_counts(rows: list[dict[str, str]]) -> dict[tuple[int, str], int]:
    """(record index in `aggregate_frame` order, column) -> seeds whose value is NaN/empty, where > 0."""
    counts = nan_counts(rows)
    return {(i, col): int(v) for i, (_, row) in enumerate(counts.iterrows()) for col, v in row.items() if v}


def _number(value: float, decimals: int) -> str:
    if math.isnan(value):
        return "NaN"
    return f"{value:.{decimals}f}"


def arrow(direction: bool | None, latex: bool = False) -> str:
    if direction is None:
        return ""
    if latex:
        return r"$\uparrow$" if direction else r"$\downarrow$"
    return "↑" if direction else "↓"


# ------------------------------------------------------------------------------------------------ latex

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table, caption: str | None = None) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); best \\textbf, second \\underline."""
    lines = ["% generated by fusion-bench; needs \\usepackage{booktabs}",
             "% mean ± std over seeds; best in bold, second underlined; – : one seed (no std)"]
    if caption:
        lines.append(f"% {caption}")
    spec = "l" + "r" * (len(table.label_columns) - 1) + "r" * len(table.columns)
    lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    header = [latex_escape(c) for c in table.label_columns]
    header += [f"{latex_escape(c)}{arrow(table.directions[c], latex=True)}" for c in table.columns]
    lines.append(" & ".join(header) + " \\\\")
    lines.append("\\midrule")
    for labels, cells in zip(table.labels, table.cells):
        out = [latex_escape(v) for v in labels]
        for col, cell in zip(table.columns, cells):
            d = table.decimals[col]
            if math.isnan(cell.mean):
                out.append("--")
                continue
            std = NO_STD if math.isnan(cell.std) else _number(cell.std, d)
            text = f"{_number(cell.mean, d)}{{\\scriptsize$\\pm${'--' if std == NO_STD else std}}}"
            if cell.rank == 1:
                text = f"\\textbf{{{text}}}"
            elif cell.rank == 2:
                text = f"\\underline{{{text}}}"
            out.append(text)
        lines.append(" & ".join(out) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ html


def to_html(table: Table, table_class: str = "leaderboard") -> str:
    """An HTML <table> (no scripts): best <b>, second <u>; NaN counts as a marked note in the cell."""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in table.label_columns)
    for c in table.columns:
        direction = table.directions[c]
        title = {True: "higher is better", False: "lower is better", None: "direction unknown: not ranked"}[direction]
        head += f'<th title="{title}">{e(c)}&nbsp;{arrow(direction)}</th>'
    body = []
    for labels, cells in zip(table.labels, table.cells):
        tds = "".join(f'<td class="label">{e(v)}</td>' for v in labels)
        for col, cell in zip(table.columns, cells):
            d = table.decimals[col]
            if math.isnan(cell.mean):
                text = '<span class="nan">NaN</span>'
            else:
                text = _number(cell.mean, d)
                if cell.rank == 1:
                    text = f"<b>{text}</b>"
                elif cell.rank == 2:
                    text = f"<u>{text}</u>"
                std = (f'<span class="std" title="a single value (one seed): no standard deviation">± {NO_STD}</span>'
                       if math.isnan(cell.std) else f'<span class="std">± {_number(cell.std, d)}</span>')
                text = f"{text} {std}"
            if cell.nan_count and not math.isnan(cell.mean):
                text += f' <span class="nan" title="NaN values left out of the mean">({cell.nan_count} NaN)</span>'
            css = {1: ' class="best"', 2: ' class="second"'}.get(cell.rank or 0, "")
            tds += f"<td{css}>{text}</td>"
        body.append(f"<tr>{tds}</tr>")
    return (f'<table class="{table_class}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
            + "\n</tbody>\n</table>\n")


HTML_STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; margin: 1.5em; color: #222; }
table.leaderboard { border-collapse: collapse; font-size: 13px; }
table.leaderboard th, table.leaderboard td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right;
  white-space: nowrap; }
table.leaderboard th { border-bottom: 2px solid #444; background: #f4f4f4; }
table.leaderboard td.label { text-align: left; }
table.leaderboard td.best { background: #e6f4e6; }
table.leaderboard td.second { background: #f3f8f3; }
span.std { color: #666; font-size: 11px; }
span.nan { color: #b00; }
"""


# ------------------------------------------------------------------------------------------------ leaderboard


def format_leaderboard(leaderboard_dir: str | Path, fmt: str, dataset: str | None = None,
                       preset: str | None = None) -> str:
    """The aggregated leaderboard of one dataset (or every dataset) in `fmt` (csv, md, latex, html)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    leaderboard_dir = Path(leaderboard_dir)
    if fmt == "csv":
        frame = load_results(dataset, leaderboard_dir, aggregated=True, preset=preset)
        return csv_text(frame, list(frame.columns))
    files = raw_files(leaderboard_dir)
    if dataset is not None:
        load_results(dataset, leaderboard_dir)  # a clear error for an unknown dataset
        files = {dataset: files[dataset]}
    parts = []
    for name, path in files.items():
        rows = read_rows(path)
        frame, value_cols = aggregate_frame(rows)
        records = frame.to_dict("records")
        if fmt == "md":
            parts.append(f"## {name}\n\n" + markdown_table(name, records, value_cols, preset))
            continue
        table = build_table(records, value_cols, preset, nan_counts=seed_nan_counts(rows))
        if fmt == "latex":
            parts.append(to_latex(table, caption=f"{name}" + (f", preset {preset}" if preset else "")))
        else:
            parts.append(f"<h2>{html.escape(name)}</h2>\n" + to_html(table))
    if fmt == "html":
        return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>fusion-bench leaderboard</title>"
                f"<style>{HTML_STYLE}</style></head><body>\n" + "\n".join(parts) + "</body></html>\n")
    return "\n".join(parts)


__all__ = ["FORMATS", "HTML_STYLE", "Table", "build_table", "format_leaderboard", "latex_escape", "to_html",
           "to_latex"]
