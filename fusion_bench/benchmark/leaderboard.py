"""Leaderboards: aggregate raw rows over seeds into leaderboards/<dataset>.csv and a Markdown README."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from fusion_bench.benchmark.results import (
    DOWNSTREAM_COLUMNS,
    EFFICIENCY_COLUMNS,
    ID_COLUMNS,
    NON_METRIC_COLUMNS,
    read_rows,
)

GROUP_COLUMNS = ("method", "preset", "config_hash", "metric_dialect")
SHOWN_EFFICIENCY = ("params_m", "gflops", "fuse_ms_per_image", "train_s")


def higher_is_better(column: str, dialect: str | None) -> bool | None:
    """Direction of a column: the dialect's for metrics, True for downstream scores, False for costs."""
    if column in DOWNSTREAM_COLUMNS or column.startswith("acc_"):  # acc_<modality>: unimodal accuracy
        return True
    if column in EFFICIENCY_COLUMNS:
        return False
    if dialect:
        from fusion_bench.metrics import get_dialect

        try:
            return get_dialect(dialect).higher_is_better.get(column)
        except ValueError:
            return None
    return None


def _to_float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def aggregate(rows: list[dict[str, str]]) -> tuple[list[dict[str, object]], list[str]]:
    """Mean, std (ddof=1) and n over seeds per (method, preset, config_hash, dialect).

    A seed run more than once counts once: its latest row (by timestamp) is used.
    Returns (aggregated rows, value columns in order).
    """
    value_cols: list[str] = []
    for row in rows:
        for col in row:
            if col not in NON_METRIC_COLUMNS and col not in value_cols:
                value_cols.append(col)
    value_cols += [c for c in EFFICIENCY_COLUMNS if any(c in r for r in rows)]
    latest: dict[tuple, dict[str, str]] = {}
    for row in rows:
        key = tuple(row.get(c, "") for c in GROUP_COLUMNS) + (row.get("seed", ""),)
        if key not in latest or row.get("timestamp", "") >= latest[key].get("timestamp", ""):
            latest[key] = row
    groups: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    for key, row in latest.items():
        groups[key[:-1]].append(row)
    out = []
    for key in sorted(groups):
        members = groups[key]
        agg: dict[str, object] = dict(zip(GROUP_COLUMNS, key))
        agg["task"] = members[0].get("task", "")
        agg["train_mixture"] = members[0].get("train_mixture", "")  # part of the config hash
        agg["n"] = len(members)
        agg["seeds"] = " ".join(sorted((m.get("seed", "") for m in members), key=lambda s: (len(s), s)))
        for col in value_cols:
            values = np.array([_to_float(m.get(col, "")) for m in members], dtype=float)
            values = values[~np.isnan(values)]
            agg[f"{col}_mean"] = float(values.mean()) if len(values) else math.nan
            agg[f"{col}_std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        out.append(agg)
    return out, value_cols


def _fmt(x: object, digits: int = 4) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return ""
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.0f}"
    return str(x)


def write_dataset_csv(path: Path, aggregated: list[dict[str, object]], value_cols: list[str]) -> None:
    header = list(GROUP_COLUMNS) + ["task", "train_mixture", "n", "seeds"] + [f"{c}_{s}" for c in value_cols
                                                                             for s in ("mean", "std")]
    lines = [",".join(header)]
    for row in aggregated:
        lines.append(",".join(_fmt(row.get(h, ""), 8) if isinstance(row.get(h), float) else str(row.get(h, ""))
                              for h in header))
    _atomic_write(path, "\n".join(lines) + "\n")


def markdown_table(dataset: str, aggregated: list[dict[str, object]], value_cols: list[str],
                   preset: str | None = None) -> str:
    """A Markdown table, best value per column (per preset and dialect) in bold."""
    rows = [r for r in aggregated if preset is None or r["preset"] == preset]
    if not rows:
        return f"_no rows for {dataset}_\n"
    shown = [c for c in value_cols if c not in EFFICIENCY_COLUMNS or c in SHOWN_EFFICIENCY]
    shown = [c for c in shown if any(not math.isnan(r[f"{c}_mean"]) for r in rows)]  # type: ignore[arg-type]
    best: dict[tuple, float] = {}
    for col in shown:
        for r in rows:
            direction = higher_is_better(col, str(r["metric_dialect"]))
            value = r[f"{col}_mean"]
            if direction is None or math.isnan(value):  # type: ignore[arg-type]
                continue
            key = (col, r["preset"], r["metric_dialect"])
            cur = best.get(key)
            if cur is None or (value > cur if direction else value < cur):  # type: ignore[operator]
                best[key] = value  # type: ignore[assignment]
    header = ["method", "preset", "dialect", "n"] + shown
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        method = str(r["method"]) + (f" (trained on {r['train_mixture']})" if r.get("train_mixture") else "")
        cells = [method, str(r["preset"]), str(r["metric_dialect"]), str(r["n"])]
        for col in shown:
            mean, std = r[f"{col}_mean"], r[f"{col}_std"]
            text = _fmt(mean)
            if text and not math.isnan(std):  # type: ignore[arg-type]
                text += f" ± {_fmt(std, 2)}"
            if text and best.get((col, r["preset"], r["metric_dialect"])) == mean:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def regenerate(leaderboard_dir: Path) -> dict[str, tuple[list[dict[str, object]], list[str]]]:
    """Rebuild <dir>/<dataset>.csv and <dir>/README.md from <dir>/raw/*.csv alone."""
    raw_dir = leaderboard_dir / "raw"
    tables: dict[str, tuple[list[dict[str, object]], list[str]]] = {}
    for raw in sorted(raw_dir.glob("*.csv")) if raw_dir.is_dir() else []:
        aggregated, value_cols = aggregate(read_rows(raw))
        tables[raw.stem] = (aggregated, value_cols)
        write_dataset_csv(leaderboard_dir / f"{raw.stem}.csv", aggregated, value_cols)
    parts = [
        "# Leaderboards\n",
        "Generated by `fusion-bench leaderboard` from the append-only rows in `raw/`; do not edit by hand.",
        "Values are mean ± sample std over seeds (n = number of seeds); the best mean per column within a preset",
        "and metric dialect is in bold (direction from the metric's higher_is_better). `smoke` numbers come from",
        "tiny CPU runs on the embedded synthetic datasets and are for regression checking, not for ranking methods.",
        "Columns: fusion metrics of the dialect, downstream scores, efficiency (params_m: millions of parameters;",
        "gflops: FLOPs/1e9 of one fuse at 256x256 as counted by torch.utils.flop_counter; fuse_ms_per_image;",
        "train_s). Full columns, std and provenance are in `<dataset>.csv` and `raw/<dataset>.csv`.\n",
    ]
    for dataset, (aggregated, value_cols) in tables.items():
        parts.append(f"## {dataset}\n")
        parts.append(markdown_table(dataset, aggregated, value_cols))
    _atomic_write(leaderboard_dir / "README.md", "\n".join(parts))
    return tables


__all__ = ["ID_COLUMNS", "aggregate", "markdown_table", "regenerate", "write_dataset_csv"]
