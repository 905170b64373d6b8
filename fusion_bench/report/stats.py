"""Statistics for comparing fusion methods: paired per-image tests, ranks, Friedman + Nemenyi, seed intervals.

- `paired_wilcoxon`: every pair of methods on one metric, Wilcoxon signed-rank test over the test images
  (`scipy.stats.wilcoxon` defaults: two-sided, zero differences dropped, exact p for n <= 50 without ties or zeros),
  p-values Holm-corrected over the pairs of that metric.
- `average_ranks`, `friedman_nemenyi`: rank the methods within each block (e.g. each metric), average the ranks,
  Friedman's test (`scipy.stats.friedmanchisquare`) and the Nemenyi critical difference
  CD = q_alpha * sqrt(k (k + 1) / (6 N)), with q_alpha the studentized range quantile over sqrt(2) (Demšar 2006).
- `bootstrap_ci`: percentile bootstrap interval of a mean (`scipy.stats.bootstrap`), seeded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaN stays NaN and does not count in m)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if not m:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def _signed_rank_sums(diff: np.ndarray) -> tuple[float, float]:
    nonzero = diff[diff != 0]
    ranks = stats.rankdata(np.abs(nonzero))
    return float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())


def paired_wilcoxon(values: pd.DataFrame, higher_is_better: bool | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Wilcoxon signed-rank test for every pair of columns of `values` (rows: images, columns: methods).

    An image with NaN in either column of a pair is left out of that pair and counted in `n_nan`. Returns one row
    per pair (column order): a, b, n (images used), n_nan, median_diff (a - b), r_plus, r_minus, statistic, p,
    p_holm (Holm over all pairs of this table) and `better`: the better method when p_holm < alpha (by the
    metric's direction; the larger one when the direction is unknown), "=" when every difference is zero, else "".
    """
    records = []
    for a, b in combinations(values.columns, 2):
        x, y = values[a].to_numpy(dtype=float), values[b].to_numpy(dtype=float)
        keep = ~(np.isnan(x) | np.isnan(y))
        diff = x[keep] - y[keep]
        record: dict[str, object] = {"a": a, "b": b, "n": int(keep.sum()), "n_nan": int((~keep).sum()),
                                     "median_diff": float(np.median(diff)) if len(diff) else math.nan,
                                     "r_plus": math.nan, "r_minus": math.nan, "statistic": math.nan, "p": math.nan}
        if len(diff) and not np.any(diff):
            record.update(r_plus=0.0, r_minus=0.0, p=1.0)
        elif len(diff):
            r_plus, r_minus = _signed_rank_sums(diff)
            result = stats.wilcoxon(diff)
            record.update(r_plus=r_plus, r_minus=r_minus, statistic=float(result.statistic),
                          p=float(result.pvalue))
        records.append(record)
    frame = pd.DataFrame.from_records(records, columns=["a", "b", "n", "n_nan", "median_diff", "r_plus", "r_minus",
                                                        "statistic", "p"])
    frame["p_holm"] = holm(frame["p"].to_numpy()) if len(frame) else []
    better = []
    for r in frame.itertuples():
        if r.n and r.r_plus == 0 and r.r_minus == 0:
            better.append("=")
        elif not math.isnan(r.p_holm) and r.p_holm < alpha:
            a_larger = r.r_plus > r.r_minus
            better.append(r.a if a_larger == (higher_is_better is not False) else r.b)
        else:
            better.append("")
    frame["better"] = better
    return frame


def rank_table(scores: pd.DataFrame, higher_is_better: Mapping[str, bool]) -> pd.DataFrame:
    """Rank the columns (methods) within each row (block): 1 = best by the row's direction, ties averaged.

    `scores` has one row per block (its index looks up `higher_is_better`). Rows with a NaN are ranked too
    (NaN ranks NaN); `friedman_nemenyi` drops them.
    """
    ranks = {}
    for block, row in scores.iterrows():
        values = row.to_numpy(dtype=float)
        goodness = -values if higher_is_better[block] else values
        r = np.full(len(values), np.nan)
        ok = ~np.isnan(values)
        r[ok] = stats.rankdata(goodness[ok])
        ranks[block] = r
    return pd.DataFrame.from_dict(ranks, orient="index", columns=scores.columns)


def average_ranks(scores: pd.DataFrame, higher_is_better: Mapping[str, bool]) -> pd.Series:
    """Mean rank of each method over the complete blocks (rows without NaN), best (lowest) first."""
    ranks = rank_table(scores, higher_is_better).dropna()
    return ranks.mean().sort_values(kind="stable")


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """q_alpha of the Nemenyi test for k methods: studentized range quantile (infinite df) over sqrt(2)."""
    if k < 2:
        raise ValueError(f"the Nemenyi test needs at least 2 methods, got {k}")
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks for k methods over n_blocks blocks (Demšar 2006, eq. 3)."""
    if n_blocks < 1:
        raise ValueError("the critical difference needs at least one block")
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n_blocks))


@dataclass
class FriedmanResult:
    """Average ranks (best first), Friedman's statistic and p, and the Nemenyi critical difference."""

    average_ranks: pd.Series
    n_blocks: int
    statistic: float
    p: float
    cd: float
    alpha: float
    dropped_blocks: list[str] = field(default_factory=list)  # blocks with a NaN (left out)

    @property
    def k(self) -> int:
        return len(self.average_ranks)

    def groups(self) -> list[tuple[str, ...]]:
        """Maximal runs of methods (in rank order) whose average ranks differ by less than the CD."""
        names, ranks = list(self.average_ranks.index), self.average_ranks.to_numpy()
        runs: list[tuple[int, int]] = []
        for i in range(len(names)):
            j = i
            while j + 1 < len(names) and ranks[j + 1] - ranks[i] < self.cd:
                j += 1
            if j > i and not any(s <= i and j <= e for s, e in runs):
                runs.append((i, j))
        return [tuple(names[s:e + 1]) for s, e in runs]


def friedman_nemenyi(scores: pd.DataFrame, higher_is_better: Mapping[str, bool],
                     alpha: float = 0.05) -> FriedmanResult:
    """Friedman test and Nemenyi CD for methods (columns) over blocks (rows); blocks with a NaN are left out.

    Needs at least 2 methods and one complete block; the Friedman statistic needs 3 methods and 2 blocks (NaN
    otherwise, and when every block is a complete tie).
    """
    dropped = [str(b) for b in scores.index[scores.isna().any(axis=1)]]
    complete = scores.dropna()
    if complete.shape[1] < 2 or complete.empty:
        raise ValueError(f"ranking needs at least 2 methods and one block without NaN; got {complete.shape[1]} "
                         f"method(s) and {len(complete)} complete block(s)")
    ranks = average_ranks(complete, higher_is_better)
    statistic = p = math.nan
    if complete.shape[1] >= 3 and len(complete) >= 2:
        goodness = [np.where([higher_is_better[b] for b in complete.index], complete[c], -complete[c])
                    for c in complete.columns]
        with np.errstate(invalid="ignore", divide="ignore"):
            result = stats.friedmanchisquare(*goodness)
        statistic, p = float(result.statistic), float(result.pvalue)
    return FriedmanResult(ranks, len(complete), statistic, p, critical_difference(len(ranks), len(complete), alpha),
                          alpha, dropped)


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 4999,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (NaN dropped); (NaN, NaN) with fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    result = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


__all__ = ["FriedmanResult", "average_ranks", "bootstrap_ci", "critical_difference", "friedman_nemenyi", "holm",
           "nemenyi_q", "paired_wilcoxon", "rank_table"]
