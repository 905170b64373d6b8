"""Aggregates of the robust raw rows (`<leaderboard_dir>/robust/raw/<dataset>.csv`, fusion_bench.benchmark.robust):
per corruption the mean over severities 1..5 and the corruption error, per method the mean corruption error.

Corruption error, after ImageNet-C (Hendrycks & Dietterich, 2019), with the error E of a row defined from the
protocol's `mce_metric` m and its best value b (benchmarks/protocols/robust.yaml): E = b - m when m is higher-is-
better, m - b otherwise (Qabf, b = 1: E = 1 - Qabf). Values are first averaged over seeds. For a method f, a
corruption c (with its modality) and the baseline method g:

    CE_c(f)     = sum_s E(f, c, s) / sum_s E(g, c, s)                          (s = 1..5)
    relCE_c(f)  = sum_s [E(f, c, s) - E(f, clean)] / sum_s [E(g, c, s) - E(g, clean)]
    mCE(f)      = 100 * mean_c CE_c(f);   relative mCE(f) = 100 * mean_c relCE_c(f)

so the baseline scores 100 and a lower mCE is more robust. A group (method, train dataset, preset, config hash,
corruption hash) is compared with the baseline's rows of the same dataset, train dataset, preset and corruption
hash; without them the CE columns are empty.

Files (regenerated from the raw rows alone): `<leaderboard_dir>/robust/<dataset>.csv` (a row per group and
corruption: clean and mean-over-severities value of every metric, CE, relCE) and `<dataset>.mce.csv` (a row per
group: clean and corrupted mean of the mCE metric, mCE, relative mCE, baseline).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from fusion_bench.benchmark.results import NON_METRIC_COLUMNS, atomic_write_text, read_rows

GROUP = ["method", "dataset", "train_dataset", "preset", "config_hash", "corruption_hash"]
ROW_ID = ["corruption", "modality", "severity"]
TEXT_COLUMNS = frozenset(NON_METRIC_COLUMNS) | {"train_dataset", "protocol", "corruption", "modality", "severity",
                                                "corruption_hash", "n_nan", "nan_metrics"}


def robust_frame(rows: list[dict[str, str]] | pd.DataFrame) -> pd.DataFrame:
    """Raw robust rows as a frame: id columns as text, severity as int, metric columns as float."""
    frame = pd.DataFrame(rows).copy()
    for col in GROUP + ["corruption", "modality", "seed"]:
        frame[col] = frame[col].fillna("").astype(str) if col in frame.columns else ""
    frame["severity"] = pd.to_numeric(frame.get("severity", 0), errors="coerce").fillna(0).astype(int)
    for col in metric_columns(frame):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in TEXT_COLUMNS and c != "seed"]


def seed_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per group and (corruption, modality, severity), with `n_seeds`."""
    metrics = metric_columns(frame)
    grouped = frame.groupby(GROUP + ROW_ID, sort=False)
    means = grouped[metrics].mean()
    means["n_seeds"] = grouped["seed"].nunique()
    return means.reset_index()


def error_of(values: pd.Series, best: float, higher: bool | None) -> pd.Series:
    return (best - values) if higher is not False else (values - best)


def _baseline_key(group: dict[str, Any]) -> tuple:
    return group["dataset"], group["train_dataset"], group["preset"], group["corruption_hash"]


def corruption_table(frame: pd.DataFrame, baseline: str, metric: str, best: float,
                     higher: bool | None = True) -> pd.DataFrame:
    """A row per group and (corruption, modality): each metric's clean value and mean over severities 1..5 (the
    metric columns), `CE` and `relCE` of `metric` against `baseline` (module docstring)."""
    means = seed_means(robust_frame(frame))
    metrics = [c for c in metric_columns(means) if c != "n_seeds"]
    if metric not in means.columns:
        means[metric] = math.nan
    means["_E"] = error_of(means[metric], best, higher)
    clean = means[means["corruption"] == "none"].set_index(GROUP)
    base_sums: dict[tuple, dict[str, tuple[float, float]]] = {}
    for key, part in means[means["method"] == baseline].groupby(GROUP, sort=False):
        g = dict(zip(GROUP, key))
        clean_e = part.loc[part["corruption"] == "none", "_E"]
        e0 = float(clean_e.iloc[0]) if len(clean_e) else math.nan
        sums = {}
        for (c, m), sub in part[part["severity"] > 0].groupby(["corruption", "modality"], sort=False):
            sums[f"{c}:{m}"] = (float(sub["_E"].sum()), float((sub["_E"] - e0).sum()))
        base_sums.setdefault(_baseline_key(g), sums)
    records = []
    for key, part in means[means["severity"] > 0].groupby(GROUP + ["corruption", "modality"], sort=False):
        g = dict(zip(GROUP + ["corruption", "modality"], key))
        group_key = tuple(g[k] for k in GROUP)
        e0 = float(clean.loc[group_key, "_E"]) if group_key in clean.index else math.nan
        e_sum, rel_sum = float(part["_E"].sum()), float((part["_E"] - e0).sum())
        base = base_sums.get(_baseline_key(g), {}).get(f"{g['corruption']}:{g['modality']}")
        record = {**g, "severities": len(part), "n_seeds": int(part["n_seeds"].min())}
        for m in metrics:
            record[f"{m}_clean"] = float(clean.loc[group_key, m]) if group_key in clean.index else math.nan
            record[m] = float(part[m].mean())
        record["CE"] = e_sum / base[0] if base and base[0] else math.nan
        record["relCE"] = rel_sum / base[1] if base and base[1] else math.nan
        records.append(record)
    return pd.DataFrame(records)


def mce_table(per_corruption: pd.DataFrame, metric: str, baseline: str) -> pd.DataFrame:
    """A row per group: clean and mean corrupted value of `metric`, mCE and relative mCE (percent), baseline."""
    records = []
    if per_corruption.empty:
        return pd.DataFrame(columns=[*GROUP, f"{metric}_clean", metric, "mCE", "relative_mCE", "baseline"])
    for key, part in per_corruption.groupby(GROUP, sort=False):
        ce, rel = part["CE"].astype(float), part["relCE"].astype(float)
        records.append({**dict(zip(GROUP, key)), "corruptions": len(part), f"{metric}_clean":
                        float(part[f"{metric}_clean"].iloc[0]) if f"{metric}_clean" in part else math.nan,
                        metric: float(part[metric].mean()) if metric in part else math.nan,
                        "mCE": 100 * float(ce.mean()) if ce.notna().all() else math.nan,
                        "relative_mCE": 100 * float(rel.mean()) if rel.notna().all() else math.nan,
                        "baseline": baseline})
    return pd.DataFrame(records).sort_values(["train_dataset", "mCE"], na_position="last").reset_index(drop=True)


def dataset_tables(leaderboard_dir: str | Path, dataset: str) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """(per-corruption table, mCE table, settings) of one dataset's robust raw rows."""
    from fusion_bench.benchmark.robust import load_settings, robust_raw_path

    settings, higher = _settings_for(dataset, load_settings)
    frame = robust_frame(read_rows(robust_raw_path(leaderboard_dir, dataset)))
    per_corruption = corruption_table(frame, settings.baseline, settings.mce_metric, settings.mce_best, higher)
    return per_corruption, mce_table(per_corruption, settings.mce_metric, settings.baseline), settings


def _settings_for(dataset: str, load_settings: Any) -> tuple[Any, bool | None]:
    from fusion_bench.benchmark.leaderboard import higher_is_better
    from fusion_bench.benchmark.protocol import load_protocol
    from fusion_bench.registry import get_datamodule

    try:
        task = get_datamodule(dataset).dataset_class.task
        protocol = load_protocol(dataset, task)
    except (KeyError, ValueError):
        protocol = {"dataset": dataset}
    try:
        modalities = get_datamodule(dataset).dataset_class.modalities
    except KeyError:
        modalities = ("a", "b")
    settings = load_settings(protocol, modalities)
    return settings, higher_is_better(settings.mce_metric, str(protocol.get("metric_dialect") or ""))


def regenerate_robust(leaderboard_dir: Path) -> list[Path]:
    """Rewrite `robust/<dataset>.csv` and `robust/<dataset>.mce.csv` for every robust raw CSV; returns the paths."""
    raw_dir = Path(leaderboard_dir) / "robust" / "raw"
    written = []
    for raw in sorted(raw_dir.glob("*.csv")) if raw_dir.is_dir() else []:
        per_corruption, mce, _ = dataset_tables(leaderboard_dir, raw.stem)
        for path, table in ((raw_dir.parent / f"{raw.stem}.csv", per_corruption),
                            (raw_dir.parent / f"{raw.stem}.mce.csv", mce)):
            atomic_write_text(path, table.to_csv(index=False, float_format="%.6g"))
            written.append(path)
    return written


def mce_markdown(mce: pd.DataFrame, metric: str) -> str:
    """The mCE table as Markdown (method, train dataset, clean and corrupted metric, mCE, relative mCE)."""
    header = f"| method | trained on | {metric} clean | {metric} corrupted | mCE | relative mCE |"
    lines = [header, "|---|---|---:|---:|---:|---:|"]
    for _, r in mce.iterrows():
        cells = [r["method"], r["train_dataset"] or r["dataset"]]
        cells += [_fmt(r.get(f"{metric}_clean")), _fmt(r.get(metric)), _fmt(r["mCE"], 1), _fmt(r["relative_mCE"], 1)]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 4) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else f"{v:.{digits}f}"


__all__ = ["corruption_table", "dataset_tables", "error_of", "mce_markdown", "mce_table", "regenerate_robust",
           "robust_frame", "seed_means"]
