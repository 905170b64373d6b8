"""What a report reads from the runs: the leaderboard entries (an aggregated record with its seeds' run
directories), each run's per-image metrics, downstream per-class values and training logs, averaged over seeds.
A file that cannot be read becomes a note on the page, never an error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


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


def read_csv(path: Path, notes: list, what: str) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        notes.append(("warn", f"{what} {path} could not be read ({err}); left out"))
        return None


def per_image_means(entries: Sequence[Entry], notes: list) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, int]]]:
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
            frame = read_csv(path, notes, "per-image metrics")
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


def value_frames(entries: Sequence[Entry], columns: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    means = pd.DataFrame({c: [float(e.record[f"{c}_mean"]) for e in entries] for c in columns},
                         index=[e.label for e in entries])
    stds = pd.DataFrame({c: [float(e.record[f"{c}_std"]) for e in entries] for c in columns},
                        index=[e.label for e in entries])
    return means, stds


def per_class_means(entries: Sequence[Entry], notes: list) -> dict[tuple[str, str], pd.DataFrame]:
    """(evaluator, metric) -> entries x classes, mean over seeds of downstream_per_class.csv."""
    records = []
    for entry in entries:
        for seed, run_dir in entry.run_dirs.items():
            path = run_dir / "downstream_per_class.csv"
            if path.is_file():
                frame = read_csv(path, notes, "per-class values")
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


def training_curves(entries: Sequence[Entry]) -> dict[str, dict[int, pd.DataFrame]]:
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
