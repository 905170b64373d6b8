"""The audio-visual section of the `balance` protocol (`bench --protocol balance`): per method, the mean and standard
error over seeds of the fused accuracy, the half-head accuracies and the linear probes, and for each method the
paired difference to late fusion (same seeds) with its 95 % t-interval and the paired t-test's two-sided p-value.

Rows are the raw leaderboard rows of one dataset with `protocol == "balance"`; a unimodal row is labelled by its
modality (`unimodal (frames)`), read from its overrides (default audio).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

BALANCE_COLUMNS = ("cls_acc", "acc_audio", "acc_frames", "probe_audio", "probe_frames")
REFERENCE = "late_fusion"


def method_label(row: Mapping[str, Any]) -> str:
    """The row's method, with the modality for the unimodal model (`unimodal (audio)`, `unimodal (frames)`)."""
    method = str(row.get("method", ""))
    if method != "unimodal":
        return method
    try:
        overrides = json.loads(row.get("overrides") or "{}")
    except ValueError:
        overrides = {}
    return f"unimodal ({overrides.get('model.modality', 'audio')})"


def balance_frame(rows: Iterable[Mapping[str, Any]], preset: str | None = None) -> pd.DataFrame:
    """One record per (label, seed) of the balance rows (`protocol == balance`, optionally one preset), the columns
    BALANCE_COLUMNS as floats (NaN where empty); the last row of a (label, seed) wins."""
    records = {}
    for row in rows:
        if row.get("protocol") != "balance" or (preset is not None and row.get("preset") != preset):
            continue
        values = {}
        for col in BALANCE_COLUMNS:
            try:
                values[col] = float(row.get(col, "") or "nan")
            except ValueError:
                values[col] = math.nan
        records[(method_label(row), int(row["seed"]))] = values
    frame = pd.DataFrame.from_dict(records, orient="index", columns=list(BALANCE_COLUMNS))
    if not frame.empty:
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["method", "seed"])
    return frame


def _t_quantile(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean of a - b over pairs, its standard error, the 95 % t-interval and the paired t-test's two-sided p."""
    diff = np.asarray(a, float) - np.asarray(b, float)
    diff = diff[np.isfinite(diff)]
    n = len(diff)
    mean = float(diff.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "diff": mean, "se": math.nan, "low": math.nan, "high": math.nan, "p": math.nan}
    se = float(diff.std(ddof=1) / math.sqrt(n))
    half = _t_quantile(n - 1) * se
    if se == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        from scipy import stats

        p = float(2 * stats.t.sf(abs(mean / se), n - 1))
    return {"n": n, "diff": mean, "se": se, "low": mean - half, "high": mean + half, "p": p}


def balance_summary(frame: pd.DataFrame, column: str = "probe_frames") -> pd.DataFrame:
    """Per method: n seeds, mean and standard error (ddof 1) of every BALANCE_COLUMNS column, and the paired
    difference of `column` to late fusion over the seeds both have (diff, se, 95 % interval low/high, p)."""
    out = []
    if frame.empty:
        return pd.DataFrame()
    labels = list(dict.fromkeys(frame.index.get_level_values("method")))
    reference = frame.xs(REFERENCE, level="method") if REFERENCE in labels else None
    for label in labels:
        part = frame.xs(label, level="method")
        record: dict[str, Any] = {"method": label, "n": len(part)}
        for col in BALANCE_COLUMNS:
            values = part[col].dropna()
            record[col] = float(values.mean()) if len(values) else math.nan
            record[f"{col}_se"] = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
        if reference is not None and label != REFERENCE:
            seeds = part.index.intersection(reference.index)
            stats = paired_difference(part.loc[seeds, column], reference.loc[seeds, column])
            record.update({f"d_{k}": v for k, v in stats.items() if k != "n"})
        out.append(record)
    return pd.DataFrame(out).set_index("method")


def _pm(mean: float, se: float) -> str:
    if math.isnan(mean):
        return "—"
    return f"{mean:.3f} ± {se:.3f}" if not math.isnan(se) else f"{mean:.3f}"


def _cells(summary: pd.DataFrame) -> list[list[str]]:
    """The table cells of every summary row: method, seeds, mean ± SE per column, Δ [95 % CI] and p (— without)."""
    rows = []
    for label, rec in summary.iterrows():
        cells = [str(label), str(int(rec["n"]))] + [_pm(rec[c], rec[f"{c}_se"]) for c in BALANCE_COLUMNS]
        if "d_diff" in rec and not pd.isna(rec.get("d_diff")):
            cells += [f"{rec['d_diff']:+.3f} [{rec['d_low']:+.3f}, {rec['d_high']:+.3f}]", f"{rec['d_p']:.3g}"]
        else:
            cells += ["—", "—"]
        rows.append(cells)
    return rows


def balance_markdown(summary: pd.DataFrame, column: str = "probe_frames") -> str:
    """The summary as a Markdown table: mean ± SE per column, and Δ`column` vs late fusion [95 % CI], p."""
    head = ["method", "n", *BALANCE_COLUMNS, f"Δ {column} vs late_fusion [95 % CI]", "p (paired t)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(summary)]
    return "\n".join(lines)


def balance_section(rows: Sequence[Mapping[str, Any]], out: Any) -> str | None:
    """The report's AV balance section (HTML; its numbers also go to `<out>/tables/balance.csv`), or None when no row
    is of the balance protocol."""
    from fusion_bench.report import page

    summary = balance_summary(balance_frame(rows))
    if summary.empty:
        return None
    (out / "tables").mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "tables" / "balance.csv")
    head = ["method", "seeds", *BALANCE_COLUMNS, "Δ probe_frames vs late_fusion [95 % CI]", "p (paired t)"]
    body = ["<tr>" + "".join(f"<td>{page.e(c)}</td>" for c in cells) + "</tr>" for cells in _cells(summary)]
    return ("<p>Rows of <code>bench --protocol balance</code>: every method trained with the same recipe; mean ± "
            "standard error over seeds; probes: linear probes of the frozen encoders; Δ: paired over seeds.</p>"
            "<table><thead><tr>" + "".join(f"<th>{page.e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


__all__ = ["BALANCE_COLUMNS", "balance_section", "balance_frame", "balance_markdown", "balance_summary", "method_label",
           "paired_difference"]
