"""Leaderboards: aggregate raw rows over seeds (pandas) into leaderboards/<dataset>.csv and a Markdown README.

A leaderboard entry is one (method, preset, config_hash, metric_dialect, split_hash): rows scored on different test
splits (a different `split_hash`) are different entries, never averaged together or replacing each other. Within an
entry a seed run more than once counts once (its latest row by timestamp). The Python API is `load_results`.

Every entry has a `kind`, from its preset: `published` (the fused images an author published, scored here),
`released` (the authors' released weights, run here) or `trained` (trained, or for a training-free method run, by the
suite). The CSV has a `kind` column; the Markdown, LaTeX and HTML tables and the report mark the first two after the
method's name (`kind_marker`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fusion_bench.benchmark.results import (
    DOWNSTREAM_COLUMNS,
    EFFICIENCY_COLUMNS,
    ID_COLUMNS,
    LOWER_IS_BETTER_DOWNSTREAM,
    NON_METRIC_COLUMNS,
    atomic_write_text,
    read_rows,
)
from fusion_bench.errors import LeaderboardError

GROUP_COLUMNS = ("method", "preset", "config_hash", "metric_dialect")
ENTRY_COLUMNS = GROUP_COLUMNS + ("split_hash",)  # what makes one leaderboard entry
SHOWN_EFFICIENCY = ("params_m", "gflops", "fuse_ms_per_image", "train_s")
# after GROUP_COLUMNS in <dataset>.csv
DESCRIPTION_COLUMNS = ("task", "train_mixture", "overrides", "n", "seeds", "split_hash", "n_images", "kind", "source",
                       "label")
KIND_MARKERS = {"published": "published images", "released": "released weights"}  # kind -> marker after the name


def entry_kind(preset: str) -> str:
    """`published`, `released` or `trained` (see the module docstring)."""
    return str(preset) if str(preset) in KIND_MARKERS else "trained"


def kind_marker(preset: str) -> str:
    """What follows a method's name wherever an entry is shown: ` (published images)`, ` (released weights)`, or
    nothing for trained entries."""
    kind = entry_kind(preset)
    return f" ({KIND_MARKERS[kind]})" if kind in KIND_MARKERS else ""


def entry_labels(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One display label per leaderboard entry (aggregated records), the string every format shows (the `label`
    column of <dataset>.csv, Markdown, LaTeX, HTML, the report): the method with its kind marker, `(trained on
    MIX)` for a mixture, `(<variant> protocol)` for a protocol variant's rows (`bench --protocol balance`),
    `[key=value, ...]` for --set/--config overrides; where two entries of one preset would
    still read the same, `#<config hash>` (and then `split <split hash>`) follows. Presets are told apart by the
    tables' preset column."""
    def base(r: Mapping[str, Any]) -> str:
        label = str(r["method"]) + kind_marker(str(r["preset"]))
        if str(r.get("train_mixture") or ""):
            label += f" (trained on {r['train_mixture']})"
        if str(r.get("protocol") or ""):  # a protocol variant's entry (`bench --protocol balance`)
            label += f" ({r['protocol']} protocol)"
        if str(r.get("overrides") or ""):
            label += f" [{override_label(str(r['overrides']))}]"
        return label

    labels = [base(r) for r in records]
    for step in ("config_hash", "split_hash"):
        seen: dict[tuple[str, str], int] = {}
        for r, label in zip(records, labels):
            seen[(str(r["preset"]), label)] = seen.get((str(r["preset"]), label), 0) + 1
        labels = [label + (f" #{str(r.get(step, ''))[:6]}" if step == "config_hash" else
                           f" split {str(r.get(step, ''))[:6]}")
                  if seen[(str(r["preset"]), label)] > 1 else label for r, label in zip(records, labels)]
    return labels


def higher_is_better(column: str, dialect: str | None) -> bool | None:
    """Direction of a column: the dialect's for metrics, True for downstream scores, False for costs."""
    if column in LOWER_IS_BETTER_DOWNSTREAM:
        return False
    if column in DOWNSTREAM_COLUMNS or column.startswith(("acc_", "probe_")):  # unimodal accuracy, linear probes
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


def value_columns(columns: Sequence[str]) -> list[str]:
    """Metric and downstream columns in file order, then the efficiency columns present."""
    return [c for c in columns if c not in NON_METRIC_COLUMNS] + [c for c in EFFICIENCY_COLUMNS if c in columns]


def raw_frame(rows: list[dict[str, str]] | pd.DataFrame) -> pd.DataFrame:
    """Raw rows as a DataFrame of strings (missing cells ""), columns in first-seen order."""
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
    return frame.astype(object).where(frame.notna(), "").astype(str)


def _seed_key(seed: str) -> tuple[int, str]:
    return len(seed), seed


def latest_rows(rows: list[dict[str, str]] | pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The rows that count (one per entry and seed: the latest by timestamp, ties to the later row), as strings.

    Rows keep the order in which their (entry, seed) first appears. Returns (rows, value columns in order).
    """
    frame = raw_frame(rows)
    values = value_columns(list(frame.columns))
    for col in (*ENTRY_COLUMNS, "seed", "task", "train_mixture", "overrides", "source", "timestamp", "n_images",
                "protocol"):
        if col not in frame.columns:
            frame[col] = ""
    if frame.empty:
        return frame, values
    key = [*ENTRY_COLUMNS, "seed"]
    first = frame.groupby(key, sort=False).ngroup()
    latest = (frame.assign(_first=first).sort_values("timestamp", kind="stable").drop_duplicates(key, keep="last")
              .sort_values("_first", kind="stable").drop(columns="_first"))
    return latest, values


def aggregate_frame(rows: list[dict[str, str]] | pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Mean, std (ddof=1) and n over seeds per leaderboard entry (see the module docstring).

    Returns (one row per entry sorted by GROUP_COLUMNS then split_hash, value columns in order). Columns: the
    GROUP_COLUMNS, task, train_mixture and overrides (both part of the config hash), n (seeds), seeds, split_hash,
    n_images, kind (from the preset), source (where published images or released weights come from), then
    `<col>_mean`, `<col>_std` per value column.
    Values that are empty or not numbers are NaN and left out of the mean (std needs two values, else NaN);
    `nan_counts` counts them.
    """
    latest, values = latest_rows(rows)
    header = [*GROUP_COLUMNS, *DESCRIPTION_COLUMNS] + [f"{c}_{s}" for c in values for s in ("mean", "std")]
    if latest.empty:
        return pd.DataFrame(columns=header), values
    numbers = latest[values].apply(pd.to_numeric, errors="coerce")
    grouped = numbers.groupby([latest[c] for c in ENTRY_COLUMNS], sort=True)
    means, stds = grouped.mean(), grouped.std(ddof=1)
    info = latest.groupby(list(ENTRY_COLUMNS), sort=True).agg(
        task=("task", "first"), train_mixture=("train_mixture", "first"), overrides=("overrides", "first"),
        source=("source", "first"), protocol=("protocol", "first"), n=("seed", "size"),
        seeds=("seed", lambda s: " ".join(sorted(s, key=_seed_key))),
        n_images=("n_images", lambda s: " ".join(dict.fromkeys(v for v in s if v))))
    out = info.reset_index()
    out["kind"] = out["preset"].map(entry_kind)
    out["label"] = entry_labels(out.to_dict("records"))
    for col in values:
        out[f"{col}_mean"] = means[col].to_numpy(dtype=float)
        out[f"{col}_std"] = stds[col].to_numpy(dtype=float)
    return out[header].reset_index(drop=True), values


def nan_counts(rows: list[dict[str, str]] | pd.DataFrame) -> pd.DataFrame:
    """Per leaderboard entry (index: ENTRY_COLUMNS, sorted as `aggregate_frame`), how many of its seeds' values of
    each value column are empty or not a number (left out of the mean)."""
    latest, values = latest_rows(rows)
    if latest.empty:
        return pd.DataFrame(columns=values)
    missing = latest[values].apply(pd.to_numeric, errors="coerce").isna()
    return missing.groupby([latest[c] for c in ENTRY_COLUMNS], sort=True).sum().astype(int)


def aggregate(rows: list[dict[str, str]]) -> tuple[list[dict[str, object]], list[str]]:
    """`aggregate_frame` as a list of dicts (one per entry) and the value columns."""
    frame, values = aggregate_frame(rows)
    return frame.to_dict("records"), values


def _fmt(x: object, digits: int = 4) -> str:
    if isinstance(x, float):
        if math.isnan(x):
            return ""
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.0f}"
    return str(x)


def dataset_csv_text(aggregated: pd.DataFrame | list[dict[str, object]], value_cols: list[str]) -> str:
    """The text of leaderboards/<dataset>.csv (8 significant digits; NaN as an empty cell)."""
    frame = pd.DataFrame.from_records(aggregated) if isinstance(aggregated, list) else aggregated
    header = [*GROUP_COLUMNS, *DESCRIPTION_COLUMNS] + [f"{c}_{s}" for c in value_cols for s in ("mean", "std")]
    return csv_text(frame, header)


def csv_text(frame: pd.DataFrame, header: Sequence[str]) -> str:
    """`frame`'s `header` columns as CSV text, floats with 8 significant digits, NaN/missing as empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in frame.to_dict("records"):
        writer.writerow([_fmt(record.get(h, ""), 8) for h in header])
    return buffer.getvalue()


def write_dataset_csv(path: Path, aggregated: pd.DataFrame | list[dict[str, object]], value_cols: list[str]) -> None:
    _atomic_write(path, dataset_csv_text(aggregated, value_cols))


def shown_columns(records: list[dict[str, Any]], value_cols: list[str]) -> list[str]:
    """Columns a human-readable table shows: metrics, downstream, SHOWN_EFFICIENCY; never an all-empty one."""
    shown = [c for c in value_cols if c not in EFFICIENCY_COLUMNS or c in SHOWN_EFFICIENCY]
    return [c for c in shown if any(not math.isnan(float(r[f"{c}_mean"])) for r in records)]


def best_values(records: list[dict[str, Any]], columns: list[str]) -> dict[tuple, list[float]]:
    """Distinct means per (column, preset, dialect, split_hash), best first by the column's direction.

    Columns without a known direction are left out. Entries of different presets, dialects or test splits are
    never ranked against each other.
    """
    ranked: dict[tuple, list[float]] = {}
    for col in columns:
        for r in records:
            direction = higher_is_better(col, str(r["metric_dialect"]))
            value = float(r[f"{col}_mean"])
            if direction is None or math.isnan(value):
                continue
            ranked.setdefault(best_key(col, r), []).append(value)
    return {k: sorted(set(v), reverse=higher_is_better(k[0], k[2]) is True) for k, v in ranked.items()}


def best_key(column: str, record: dict[str, Any]) -> tuple:
    return column, record["preset"], record["metric_dialect"], record.get("split_hash", "")


def markdown_table(dataset: str, aggregated: pd.DataFrame | list[dict[str, object]], value_cols: list[str],
                   preset: str | None = None) -> str:
    """A Markdown table, best value per column (per preset, dialect and test split) in bold.

    When the entries come from more than one test split, an `images` column gives each entry's n_images and
    split hash.
    """
    records = aggregated.to_dict("records") if isinstance(aggregated, pd.DataFrame) else list(aggregated)
    all_labels = record_labels(records)
    labels = [label for r, label in zip(records, all_labels) if preset is None or r["preset"] == preset]
    rows = [r for r in records if preset is None or r["preset"] == preset]
    if not rows:
        return f"_no rows for {dataset}_\n"
    shown = shown_columns(rows, value_cols)
    best = {k: v[0] for k, v in best_values(rows, shown).items()}
    splits = len({r.get("split_hash", "") for r in rows}) > 1
    header = ["method", "preset", "dialect", "n"] + (["images"] if splits else []) + shown
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r, label in zip(rows, labels):
        cells = [label, str(r["preset"]), str(r["metric_dialect"]), str(r["n"])]
        if splits:
            cells.append(f"{r.get('n_images', '')} (split {str(r.get('split_hash', ''))[:8] or '?'})")
        for col in shown:
            mean, std = float(r[f"{col}_mean"]), float(r[f"{col}_std"])
            text = _fmt(mean)
            if text and not math.isnan(std):
                text += f" ± {_fmt(std, 2)}"
            if text and best.get(best_key(col, r)) == mean:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def record_labels(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The `label` of each aggregated record (computed with `entry_labels` for records read without one)."""
    computed = entry_labels(records)
    return [label if _missing(r.get("label")) else str(r["label"]) for r, label in zip(records, computed)]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == ""


def override_label(text: str) -> str:
    """`{"optim.lr":0.01,"train.max_steps":5}` (the row's overrides column) -> `optim.lr=0.01, train.max_steps=5`."""
    import json

    try:
        values = json.loads(text)
    except ValueError:
        return text
    if not isinstance(values, dict):
        return text
    return ", ".join(f"{k}={json.dumps(v, separators=(',', ':')) if not isinstance(v, str) else v}"
                     for k, v in values.items())


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def leaderboard_text(leaderboard_dir: Path, dataset: str, preset: str | None = None) -> str:
    """The markdown leaderboard of one dataset (and preset) from its raw rows, as `bench` prints it."""
    aggregated, value_cols = aggregate(read_rows(Path(leaderboard_dir) / "raw" / f"{dataset}.csv"))
    return markdown_table(dataset, aggregated, value_cols, preset)


def raw_files(leaderboard_dir: Path) -> dict[str, Path]:
    """dataset -> <dir>/raw/<dataset>.csv; a missing directory or one without raw CSVs is a LeaderboardError."""
    leaderboard_dir = Path(leaderboard_dir)
    raw_dir = leaderboard_dir / "raw"
    if not leaderboard_dir.is_dir():
        raise LeaderboardError(f"leaderboard directory {leaderboard_dir} does not exist (expected a folder with "
                               "raw/<dataset>.csv files written by `fusion-bench bench`)")
    files = {p.stem: p for p in sorted(raw_dir.glob("*.csv"))} if raw_dir.is_dir() else {}
    if not files:
        raise LeaderboardError(f"{raw_dir} holds no raw result files (<dataset>.csv): nothing to aggregate; run "
                               f"`fusion-bench bench ... --leaderboard-dir {leaderboard_dir}` first")
    return files


README_MARKER = "Generated by `fusion-bench leaderboard`"
"""The line that marks a README.md as the generated one (every generated README has it); another is never
replaced."""


def foreign_files(leaderboard_dir: Path, datasets: Sequence[str]) -> list[Path]:
    """The files `regenerate` would replace in `leaderboard_dir` that it did not write: a README.md without
    README_MARKER, a <dataset>.csv (of `datasets`) that is not an aggregated table (its header starts otherwise)."""
    leaderboard_dir = Path(leaderboard_dir)
    found = []
    readme = leaderboard_dir / "README.md"
    if readme.is_file() and README_MARKER not in _head(readme, 4096):
        found.append(readme)
    for dataset in datasets:
        table = leaderboard_dir / f"{dataset}.csv"
        if table.is_file() and not _head(table, 256).startswith(",".join(GROUP_COLUMNS) + ","):
            found.append(table)
    return found


def _head(path: Path, size: int) -> str:
    with path.open("rb") as fh:
        return fh.read(size).decode("utf-8", "replace")


def check_owned(leaderboard_dir: Path, datasets: Sequence[str] = ()) -> None:
    """Refuse a leaderboard folder holding a file that the leaderboard would replace but did not write (see
    `foreign_files`; `datasets`: besides the ones with raw rows); LeaderboardError naming it."""
    leaderboard_dir = Path(leaderboard_dir)
    raw = leaderboard_dir / "raw"
    names = [*datasets, *(p.stem for p in sorted(raw.glob("*.csv")))] if raw.is_dir() else list(datasets)
    found = foreign_files(leaderboard_dir, list(dict.fromkeys(names)))
    if found:
        raise LeaderboardError(f"--leaderboard-dir {leaderboard_dir}: {found[0]} was not written by fusion-bench "
                               "(the leaderboard would replace it; a generated README.md says "
                               f"\"{README_MARKER}\"): pass another --leaderboard-dir, or move the file")


def regenerate(leaderboard_dir: Path) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Rebuild <dir>/<dataset>.csv and <dir>/README.md from <dir>/raw/*.csv alone; a file there that the
    leaderboard did not write is never replaced (`check_owned`)."""
    leaderboard_dir = Path(leaderboard_dir)
    tables: dict[str, tuple[pd.DataFrame, list[str]]] = {}
    files = raw_files(leaderboard_dir)
    check_owned(leaderboard_dir, list(files))
    for dataset, raw in files.items():
        aggregated, value_cols = aggregate_frame(read_rows(raw))
        tables[dataset] = (aggregated, value_cols)
        write_dataset_csv(leaderboard_dir / f"{dataset}.csv", aggregated, value_cols)
    parts = [
        "# Leaderboards\n",
        f"{README_MARKER} from the append-only rows in `raw/`; do not edit by hand.",
        "Values are mean ± sample std over seeds (n = number of seeds); the best mean per column within a preset",
        "and metric dialect is in bold (direction from the metric's higher_is_better). `smoke` numbers come from",
        "tiny CPU runs on the embedded synthetic datasets and are for regression checking, not for ranking methods.",
        "Entries marked (published images) score the fused images an author published; (released weights) run the",
        "authors' released checkpoint here; the others were trained (or run) by the suite (`kind` in the CSVs).",
        "Columns: fusion metrics of the dialect, downstream scores, efficiency (params_m: millions of parameters;",
        "gflops: FLOPs/1e9 of one fuse at 256x256 as counted by torch.utils.flop_counter, with the element-wise",
        "arithmetic of training-free methods; fuse_ms_per_image; train_s). Full columns, std and provenance are in",
        "`<dataset>.csv` and `raw/<dataset>.csv`; `label` there is the entry's name as every table shows it.\n",
    ]
    for dataset, (aggregated, value_cols) in tables.items():
        parts.append(f"## {dataset}\n")
        parts.append(markdown_table(dataset, aggregated, value_cols))
    _atomic_write(leaderboard_dir / "README.md", "\n".join(parts))
    return tables


def _select(files: dict[str, Path], dataset: str | None, leaderboard_dir: Path) -> dict[str, Path]:
    if dataset is None:
        return files
    if dataset not in files:
        raise LeaderboardError(f"no raw results for dataset {dataset!r} in {Path(leaderboard_dir) / 'raw'}; "
                               f"datasets with results: {', '.join(files)}")
    return {dataset: files[dataset]}


def load_results(dataset: str | None = None, leaderboard_dir: str | Path = "leaderboards", *,
                 aggregated: bool = False, preset: str | None = None) -> pd.DataFrame:
    """Results as a pandas DataFrame: raw rows (default) or the aggregated leaderboard (`aggregated=True`).

    dataset: one dataset (None: every dataset with a raw file, concatenated). preset: keep one preset.
    Raw rows: one per (method, dataset, preset, seed, config hash) run as written by `bench` (every re-run
    included), metric/downstream/efficiency columns, seed and n_images as numbers (NaN when empty).
    Aggregated: one row per leaderboard entry with a leading `dataset` column, then the columns of
    `leaderboards/<dataset>.csv` (`<col>_mean`, `<col>_std` as floats).
    """
    files = _select(raw_files(Path(leaderboard_dir)), dataset, Path(leaderboard_dir))
    frames = []
    for name, path in files.items():
        rows = read_rows(path)
        if aggregated:
            frame, _ = aggregate_frame(rows)
            frame.insert(0, "dataset", name)
        else:
            frame = raw_frame(rows) if rows else pd.DataFrame(columns=list(ID_COLUMNS))
            numeric = value_columns(list(frame.columns)) + [c for c in ("seed", "n_images") if c in frame.columns]
            for col in numeric:
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]
    if preset is not None:
        out = out[out["preset"] == preset].reset_index(drop=True)
    return out


__all__ = ["ENTRY_COLUMNS", "GROUP_COLUMNS", "ID_COLUMNS", "LeaderboardError", "aggregate", "aggregate_frame",
           "entry_kind", "kind_marker", "latest_rows", "load_results", "markdown_table", "nan_counts", "regenerate",
           "write_dataset_csv"]
