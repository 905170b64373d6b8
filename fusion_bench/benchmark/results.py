"""Result rows: the column contract and atomic, lock-protected appends to the raw CSVs.

Raw files are append-only: a new row never drops or rewrites an old one. Each append takes an exclusive
lock on `<file>.lock` (filelock: portable), writes the whole file to a temp file, fsyncs and renames it into
place, so an interrupted run leaves either no row or a complete one, and concurrent runs never lose rows.

NaN: a metric that is undefined for an image (e.g. CC or SCD of a constant image) is NaN in the per-image table
(an empty cell in the CSVs); the row's mean skips it, and `n_nan` (how many per-image values were NaN) and
`nan_metrics` (`CC:2;SCD:2`, per metric) say so.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock

# train_mixture: the datasets one model was trained on ("a+b+c", `bench --mixture`); empty for ordinary runs
ID_COLUMNS = ("method", "dataset", "task", "preset", "seed", "config_hash", "metric_dialect", "train_mixture")
DOWNSTREAM_COLUMNS = ("seg_miou", "seg_pixel_acc", "native_miou", "det_map50", "det_map50_95", "cls_acc",
                      "cls_macro_f1")
EFFICIENCY_COLUMNS = ("params_m", "gflops", "fuse_ms_per_image", "train_s", "peak_mem_mb")
PROVENANCE_COLUMNS = ("n_images", "n_nan", "nan_metrics", "split_hash", "git_sha", "git_dirty", "packages", "device",
                      "numerics", "cpu_capability", "threads", "cpu", "timestamp")
NON_METRIC_COLUMNS = frozenset(ID_COLUMNS + EFFICIENCY_COLUMNS + PROVENANCE_COLUMNS)


def run_directory(out: str | Path, method: str, dataset: str, preset: str, config_hash: str, split_hash: str,
                  seed: int | str) -> Path:
    """Where one seed's outputs live: `<out>/<method>/<dataset>/<preset>/<config_hash>/test-<split_hash>/seed<k>`
    (the test split's identity is part of the path, so runs on different test sets never replace each other)."""
    return Path(out) / method / dataset / preset / str(config_hash) / f"test-{split_hash}" / f"seed{seed}"


class ResultsFileError(RuntimeError):
    """A raw results file is malformed; the message names the file and line."""


def order_columns(columns: Iterable[str]) -> list[str]:
    """ids, then metrics (as given), downstream, efficiency, provenance."""
    cols = list(dict.fromkeys(columns))
    fixed = set(ID_COLUMNS) | set(DOWNSTREAM_COLUMNS) | set(EFFICIENCY_COLUMNS) | set(PROVENANCE_COLUMNS)
    metrics = [c for c in cols if c not in fixed]
    tail = [c for group in (DOWNSTREAM_COLUMNS, EFFICIENCY_COLUMNS, PROVENANCE_COLUMNS) for c in group if c in cols]
    return [c for c in ID_COLUMNS if c in cols] + metrics + tail


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a raw CSV (empty list when absent); malformed lines raise ResultsFileError."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return []
        rows = []
        for line_no, values in enumerate(reader, start=2):
            if len(values) != len(header):
                raise ResultsFileError(f"{path}:{line_no}: {len(values)} fields, header has {len(header)}")
            rows.append(dict(zip(header, values)))
    return rows


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows atomically (see module docstring); new columns extend the header of earlier rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):
        existing = read_rows(path)
        header_now: list[str] = []
        if path.is_file():
            with path.open(newline="") as fh:
                header_now = next(csv.reader(fh), [])
        new_cols = [c for r in rows for c in r if c not in header_now]
        header = header_now + [c for c in order_columns(new_cols) if c not in header_now]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in existing:
            writer.writerow(row)
        for row in rows:
            writer.writerow({k: _format(v) for k, v in row.items()})
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("w", newline="") as fh:
            fh.write(buffer.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
