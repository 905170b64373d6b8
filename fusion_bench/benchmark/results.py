"""Result rows: the column contract and atomic, lock-protected appends to the raw CSVs.

Raw files are append-only: a new row never drops or rewrites an old one. Each append takes an exclusive
lock on `<file>.lock` (filelock: portable), writes the whole file to a temp file, fsyncs and renames it into
place, so an interrupted run leaves either no row or a complete one, and concurrent runs never lose rows.

NaN: a metric that is undefined for an image (e.g. CC or SCD of a constant image) is NaN in the per-image table
(an empty cell in the CSVs); the row's mean skips it, and `n_nan` (how many per-image values were NaN) and
`nan_metrics` (`CC:2;SCD:2`, per metric) say so.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from filelock import FileLock

from fusion_bench.errors import ResultsFileError

# train_mixture: the datasets one model was trained on ("a+b+c", `bench --mixture`); empty for ordinary runs.
# overrides: the --config/--set values over the preset (canonical JSON of the dotted keys); empty when none.
# protocol: the protocol variant of the row (`bench --protocol`: balance, robust); absent/empty: the standard one.
ID_COLUMNS = ("method", "dataset", "task", "preset", "seed", "config_hash", "metric_dialect", "train_mixture",
              "overrides", "protocol")
DOWNSTREAM_COLUMNS = ("seg_miou", "seg_pixel_acc", "native_miou", "det_map50", "det_map50_95", "cls_acc",
                      "cls_macro_f1", "cls_nll")
LOWER_IS_BETTER_DOWNSTREAM = frozenset({"cls_nll"})  # test cross-entropy of the fused head (nats per sample)
# checked by the regression suite but not ranked: the downstream evaluators' final training loss (YOLO's is continuous
# where a short run's mAP is still 0)
DIAGNOSTIC_COLUMNS = ("det_train_loss",)
EFFICIENCY_COLUMNS = ("params_m", "gflops", "fuse_ms_per_image", "train_s", "peak_mem_mb")
# source: where published fused images or released weights come from (`--source`, the catalogue entry, the path);
# weights_sha256: the released weights file; pretrained_sha256: the pretrained initialisations a preset starts from
# (`key=sha256;...`, e.g. AMDANet's ImageNet MiT-B4); fused_sha256: a digest of the published fused images scored
REQUEST_PROVENANCE = ("source", "weights_sha256", "pretrained_sha256", "fused_sha256")  # empty where they do not apply
PROVENANCE_COLUMNS = ("n_images", "n_nan", "nan_metrics", "split_hash", *REQUEST_PROVENANCE, "git_sha", "git_dirty",
                      "packages", "device", "numerics", "cpu_capability", "threads", "cpu", "timestamp")
# a method's own provenance, only in its rows (`row_columns()`): scan_backend, which selective scan ran (CMD-CTA:
# mamba-ssm's kernel, chunked, loop)
METHOD_PROVENANCE_COLUMNS = ("scan_backend",)
NON_METRIC_COLUMNS = frozenset(ID_COLUMNS + DIAGNOSTIC_COLUMNS + EFFICIENCY_COLUMNS + PROVENANCE_COLUMNS
                               + METHOD_PROVENANCE_COLUMNS)


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+:-]*")
"""A method or dataset name that is one file name (registered names, plug-ins' `package.module:Class`): what a
row's `dataset` must be before it names `raw/<dataset>.csv`."""


def run_directory(out: str | Path, method: str, dataset: str, preset: str, config_hash: str, split_hash: str,
                  seed: int | str) -> Path:
    """Where one seed's outputs live: `<out>/<method>/<dataset>/<preset>/<config_hash>/test-<split_hash>/seed<k>`
    (the test split's identity is part of the path, so runs on different test sets never replace each other)."""
    return (Path(out) / path_name(method) / path_name(dataset) / preset / str(config_hash) / f"test-{split_hash}"
            / f"seed{seed}")


def path_name(name: str) -> str:
    """A method/dataset name as one portable path component: a plug-in's `package.module:Class` becomes
    `package.module-Class` (registered names are unchanged)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "-", name)


def order_columns(columns: Iterable[str]) -> list[str]:
    """ids, then metrics (as given), downstream, diagnostics, efficiency, provenance."""
    cols = list(dict.fromkeys(columns))
    groups = (DOWNSTREAM_COLUMNS, DIAGNOSTIC_COLUMNS, EFFICIENCY_COLUMNS, PROVENANCE_COLUMNS)
    fixed = set(ID_COLUMNS).union(*groups)
    metrics = [c for c in cols if c not in fixed]
    tail = [c for group in groups for c in group if c in cols]
    return [c for c in ID_COLUMNS if c in cols] + metrics + tail


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a raw CSV (empty list when absent); a malformed line, or a file that is not CSV text (binary, not
    UTF-8), raises ResultsFileError naming the file."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return []
            rows = []
            for line_no, values in enumerate(reader, start=2):
                if len(values) != len(header):
                    raise ResultsFileError(f"{path}:{line_no}: {len(values)} fields, header has {len(header)}")
                rows.append(dict(zip(header, values)))
    except (UnicodeDecodeError, csv.Error) as err:
        raise ResultsFileError(f"{path}: not a CSV file of result rows ({str(err).splitlines()[0]})") from err
    return rows


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """What identifies one result row: method, dataset, preset, config hash, test split, seed and timestamp (a row
    read back from its row.csv or from a raw CSV has the key of the row that was written)."""
    return tuple(str(row.get(k, "")) for k in ("method", "dataset", "preset", "config_hash", "split_hash", "seed",
                                               "timestamp"))


def append_rows(path: Path, rows: list[dict[str, Any]], lock: bool = True) -> None:
    """Append rows atomically (see module docstring); new columns extend the header of earlier rows. `lock=False`:
    no lock file (`collect_rows`, for file systems where locks are unsafe; one writer at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")) if lock else contextlib.nullcontext():
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
        atomic_write_text(path, buffer.getvalue())


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temp file beside it (`.<name>.<pid>.tmp`: written, fsynced, renamed into
    place), so a reader sees the old file or the new one. On any failure (a full disk, a file-size limit, Ctrl-C)
    the temp file is removed and `path` is untouched; an OSError without a file name gets `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def run_row_files(runs_dir: Path) -> list[Path]:
    """The row.csv of every complete run under runs_dir (a bench --out), skipping unfinished (`*.partial`) and
    replaced (`*.replaced-*`) run directories."""
    runs_dir = Path(runs_dir)
    found = []
    for path in sorted(runs_dir.rglob("row.csv")):
        parts = path.relative_to(runs_dir).parts[:-1]
        if not any(p.endswith(".partial") or ".replaced-" in p for p in parts):
            found.append(path)
    return found


def collect_rows(runs_dir: Path, leaderboard_dir: Path) -> dict[str, int]:
    """Merge the row.csv of every complete run under runs_dir into <leaderboard_dir>/raw/<dataset>.csv: a row whose
    key (`row_key`) is already in the raw CSV is not added again, so collecting twice changes nothing. No file locks
    (cluster file systems where they are unsafe): run one collect at a time, not while runs append with locks.
    Returns dataset -> rows added."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise ResultsFileError(f"--collect {runs_dir}: no such folder (expected the --out of bench/grid runs)")
    by_dataset: dict[str, list[dict[str, str]]] = {}
    for path in run_row_files(runs_dir):
        for row in read_rows(path):
            if not row.get("dataset") or not row.get("method"):
                raise ResultsFileError(f"{path}: not a result row (no method/dataset)")
            if not SAFE_NAME.fullmatch(row["dataset"]):
                raise ResultsFileError(f"{path}: dataset {row['dataset']!r} is not a dataset name (letters, digits and "
                                       "._+:- only, no path separators, not starting with a dot): its rows would go "
                                       "to a file outside the leaderboard's raw/ folder; nothing was collected")
            by_dataset.setdefault(row["dataset"], []).append(row)
    added = {}
    for dataset, rows in by_dataset.items():
        raw = Path(leaderboard_dir) / "raw" / f"{dataset}.csv"
        seen = {row_key(r) for r in read_rows(raw)}
        new = []
        for row in rows:
            if row_key(row) not in seen:
                seen.add(row_key(row))
                new.append(row)
        if new:
            append_rows(raw, new, lock=False)
        added[dataset] = len(new)
    return added
