"""The report's sections other than the image grid: the leaderboard table (CSV, LaTeX, HTML), plots (per-metric bars,
efficiency, per-class heat maps, training curves), statistics (paired per-image tests, Friedman/Nemenyi ranks over
methods) and the numbers the papers report (benchmarks/reported/<dataset>.csv) beside ours."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fusion_bench.benchmark.leaderboard import higher_is_better
from fusion_bench.benchmark.protocol import REPORTED_DIR
from fusion_bench.benchmark.results import EFFICIENCY_COLUMNS
from fusion_bench.errors import ReportError
from fusion_bench.report import figures, page, runs, stats
from fusion_bench.report.formats import build_table, to_html, to_latex
from fusion_bench.report.runs import Entry

QUALITY_DEFAULTS = ("seg_miou", "native_miou", "det_map50", "cls_acc")
# ranges a reader would not expect, by (metric dialect, column): sums of two similarity scores
RANGE_NOTES = {
    ("mmif", "SSIM"): "SSIM(F,A)+SSIM(F,B): up to 2", ("vifb", "SSIM"): "SSIM(VI,F)+SSIM(IR,F): up to 2",
    ("mmif", "SCD"): "sum of two correlations: -2..2", ("tang", "SCD"): "sum of two correlations: -2..2",
}


def metric_notes(dialect: str, columns: Sequence[str]) -> dict[str, str]:
    """Column -> what the number is (the metric dialect's description) for the columns of `dialect`."""
    from fusion_bench.metrics.dialects import DIALECTS

    specs = getattr(DIALECTS.get(dialect), "specs", {}) or {}
    return {c: specs[c].description for c in columns if c in specs and specs[c].description}


def leaderboard_section(records, value_cols, labels, nan_seed, out: Path) -> str:
    table = build_table(records, value_cols, labels=dict(enumerate(labels)), nan_counts=nan_seed)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "tables" / "leaderboard.tex").write_text(to_latex(table))
    body = ("<p>Mean ± sample std over seeds (n = seeds). Best per column in <b>bold</b>, second "
            "<u>underlined</u>, by the arrow's direction (↑ higher is better, ↓ lower is better; no arrow: not "
            "ranked). ± – : a single value, so no std. (k NaN): k seeds' values were NaN or empty and are left out "
            "of the mean. Also as <a href=\"tables/leaderboard.csv\">CSV</a> and "
            "<a href=\"tables/leaderboard.tex\">LaTeX (booktabs)</a>.</p>")
    return body + '<div class="scroll">' + to_html(table) + "</div>"


def plots_section(entries: Sequence[Entry], value_cols: Sequence[str], metric: str | None, cost: str | None,
                   out: Path, notes: list) -> str:
    parts = []
    quality = [c for c in value_cols if c not in EFFICIENCY_COLUMNS]
    dialect = str(entries[0].record["metric_dialect"]) if entries else ""
    directions = {c: higher_is_better(c, dialect) for c in value_cols}
    means, stds = runs.value_frames(entries, quality)
    ranges = {c: RANGE_NOTES[(dialect, c)] for c in quality if (dialect, c) in RANGE_NOTES}
    path = figures.bar_charts(means, stds, directions, out / "figures" / "bars.png", notes=ranges)
    if path:
        described = metric_notes(dialect, [c for c in means.columns if means[c].notna().any()])
        items = "".join(f"<li><b>{page.e(c)}</b>: {page.e(text)}" + (f" (range: {page.e(ranges[c])})" if c in ranges
                        else "") + "</li>" for c, text in described.items())
        parts.append("<h3>Per-metric means</h3><p>Each panel sorts the entries best first; its axis spans the "
                     "values (it does not start at 0, so small differences show: read the tick labels). Error bars: "
                     "std over seeds (none for a single seed, marked n=1).</p>"
                     + (f'<ul class="meta">{items}</ul>' if items else "")
                     + f'<img class="plot" src="{page.rel(path, out)}" alt="bar charts">')
    if cost is not None and (cost not in value_cols or not any(
            not math.isnan(float(e.record[f"{cost}_mean"])) for e in entries)):
        raise ReportError(f"--cost {cost!r} has no values in these rows; choose gflops or params_m")
    cost = cost or next((c for c in ("gflops", "params_m") if c in value_cols
                         and any(float(e.record[f"{c}_mean"]) > 0 for e in entries)), None)
    available = [c for c in quality if any(not math.isnan(float(e.record[f"{c}_mean"])) for e in entries)]
    if metric is not None and metric not in available:
        raise ReportError(f"--metric {metric!r} has no values in these rows; columns with values: "
                          f"{', '.join(available)}")
    y_col = metric or next((c for c in QUALITY_DEFAULTS if c in available), None) or next(
        (c for c in available if directions.get(c) is not None), None)
    if cost and y_col:
        all_means, all_stds = runs.value_frames(entries, [cost, y_col])
        path = figures.efficiency_scatter(all_means[cost], all_means[y_col], all_stds[y_col],
                                          f"{cost} ({'GFLOPs of one fuse at 256x256' if cost == 'gflops' else 'M'})",
                                          f"{y_col}{figures._arrow(directions.get(y_col))}",
                                          out / "figures" / "efficiency.png")
        if path:
            missing = [e.label for e in entries if math.isnan(float(e.record[f"{cost}_mean"]))
                       or math.isnan(float(e.record[f"{y_col}_mean"]))]
            parts.append(f"<h3>Efficiency: {page.e(cost)} vs {page.e(y_col)}</h3><p>Choose the quality axis with "
                         "--metric. A training-free method's GFLOPs count its element-wise arithmetic; a learned "
                         "method's count its matrix products and convolutions."
                         + (f" Not placed (a value not measured): {page.e(', '.join(missing))}." if missing else "")
                         + "</p>" + f'<img class="plot" src="{page.rel(path, out)}" alt="efficiency">')
    per_class = runs.per_class_means(entries, notes)
    if per_class:
        pd.concat({f"{ev}/{m}": t for (ev, m), t in per_class.items()}, names=["evaluator/metric", "method"]).to_csv(
            out / "tables" / "per_class.csv")
    for k, ((evaluator, metric_name), table) in enumerate(per_class.items()):
        path = figures.heatmap(table, f"{evaluator}: per-class {metric_name} (mean over seeds)",
                               out / "figures" / f"per_class_{k}.png")
        if path:
            parts.append(f"<h3>Per-class {page.e(metric_name)} ({page.e(evaluator)})</h3><p>From each run's "
                         "downstream_per_class.csv, mean over seeds; grey n/a: the class is absent from the test "
                         "labels. Numbers in <a href=\"tables/per_class.csv\">per_class.csv</a>.</p>"
                         f'<img class="plot" src="{page.rel(path, out)}" alt="per-class heat map">')
    curves = runs.training_curves(entries)
    path = figures.training_curves(curves, out / "figures" / "training.png")
    if path:
        parts.append("<h3>Training curves</h3><p>From each run's Lightning CSV log (logs/metrics.csv): one panel "
                     "per entry and loss (train total, val total, components), a log axis where the values span "
                     "more than a factor of 10; one line style per seed.</p>"
                     + f'<img class="plot" src="{page.rel(path, out)}" alt="training curves">')
    return "\n".join(parts) or "<p>No values to plot.</p>"


def stats_section(entries: Sequence[Entry], value_cols: Sequence[str], per_image: Mapping[str, pd.DataFrame],
                   per_image_nan: Mapping[str, Mapping[str, int]], alpha: float, out: Path, notes: list) -> str:
    parts = []
    tables = out / "tables"
    dialect = str(entries[0].record["metric_dialect"]) if entries else ""
    # paired per-image tests
    labels = [e.label for e in entries if e.label in per_image]
    metrics = [c for c in (per_image[labels[0]].columns if labels else []) if higher_is_better(c, dialect) is not None]
    results = []
    for metric in metrics:
        values = pd.DataFrame({label: per_image[label][metric] for label in labels if metric in per_image[label]})
        if values.shape[1] < 2:
            continue
        frame = stats.paired_wilcoxon(values, higher_is_better(metric, dialect), alpha)
        results.append(frame.assign(metric=metric))
    if results:
        tests = pd.concat(results, ignore_index=True)
        tests.to_csv(tables / "wilcoxon.csv", index=False)
        pairs = list(dict.fromkeys(zip(tests["a"], tests["b"])))
        shown_metrics = list(dict.fromkeys(tests["metric"]))
        rows, classes, titles = [], [], []
        for a, b in pairs:
            row, cls, tit = [f"{a} vs {b}"], [""], [""]
            for metric in shown_metrics:
                hit = tests[(tests["a"] == a) & (tests["b"] == b) & (tests["metric"] == metric)]
                if hit.empty:
                    row.append(""), cls.append(""), tit.append("")
                    continue
                r = hit.iloc[0]
                p_text = page.fmt_number(float(r["p_holm"]), 2)
                if r["better"] == "=":
                    text, c = "=", "same"
                elif r["better"]:
                    text, c = f"{'▲' if r['better'] == a else '▼'} {p_text}", "sig"
                elif math.isnan(float(r["p_holm"])):
                    text, c = "no data", "same"
                else:
                    text, c = f"· {p_text}", ""
                row.append(text), cls.append(c)
                tit.append(f"n={r['n']} images ({r['n_nan']} with NaN left out), median diff (a-b) "
                           f"{page.fmt_number(float(r['median_diff']))}, W={page.fmt_number(float(r['statistic']))}, "
                           f"raw p={page.fmt_number(float(r['p']))}")
            rows.append(row), classes.append(cls), titles.append(tit)
        n_images = max((len(per_image[label]) for label in labels), default=0)
        parts.append(f"<h3>Paired per-image tests</h3><p>Wilcoxon signed-rank test on the per-image values "
                     f"({n_images} test images, each method's values averaged over its seeds, NaN values left out "
                     f"of that average), two-sided, Holm-corrected over the {len(pairs)} method pairs of each "
                     f"metric. ▲: the first method of the pair "
                     f"is significantly better (corrected p &lt; {alpha}, shown), ▼: the second is; ·: not "
                     f"significant; =: every per-image difference is zero. Hover a cell for n, the median "
                     f"difference and the raw p; all numbers in <a href=\"tables/wilcoxon.csv\">wilcoxon.csv</a>.</p>")
        parts.append(page.plain_table(["pair", *shown_metrics], rows, cell_class=classes, titles=titles))
    else:
        parts.append("<h3>Paired per-image tests</h3><p>Not computed: fewer than two methods have per-image metrics "
                     "(metrics_per_image.csv) on the same test split.</p>")
    if per_image_nan:
        rows = [[label, metric, count, len(per_image.get(label, [])) * len(
            next(e for e in entries if e.label == label).run_dirs)]
            for label, counts in per_image_nan.items() for metric, count in counts.items()]
        parts.append("<h3>NaN per-image values</h3><p>Per-image metric values that are NaN (e.g. a constant image) "
                     "are left out of the means and of the tests above; counted here over images x seeds:</p>"
                     + page.plain_table(["method", "metric", "NaN values", "values"], rows, left=2))
    # ranks, Friedman, Nemenyi
    blocks = [c for c in value_cols if c not in EFFICIENCY_COLUMNS and higher_is_better(c, dialect) is not None]
    means, _ = runs.value_frames(entries, blocks)
    scores = means.T
    directions = {c: bool(higher_is_better(c, dialect)) for c in blocks}
    if scores.shape[1] >= 2 and not scores.dropna().empty:
        result = stats.friedman_nemenyi(scores, directions, alpha)
        ranks = stats.rank_table(scores, directions)
        ranks.to_csv(tables / "ranks.csv")
        path = figures.cd_diagram(result, out / "figures" / "cd_diagram.png",
                                  f"average rank over {result.n_blocks} metrics (1 = best); CD at alpha {alpha}")
        friedman = ("not computed (needs 3 methods and 2 complete metrics)" if math.isnan(result.statistic)
                    else f"chi² = {result.statistic:.3f}, p = {page.fmt_number(result.p)}")
        dropped = (f" Left out (a NaN for some method): {', '.join(result.dropped_blocks)}."
                   if result.dropped_blocks else "")
        parts.append(f"<h3>Average rank and critical difference</h3><p>Each metric ranks the methods by its mean "
                     f"(1 = best by its direction, ties averaged); the average over {result.n_blocks} metrics (fusion "
                     f"metrics and downstream scores, not costs) gives the order below. Friedman test: {friedman}. "
                     f"Nemenyi critical difference at alpha {alpha}: CD = {result.cd:.3f} (q = "
                     f"{stats.nemenyi_q(result.k, alpha):.3f}, k = {result.k}); methods joined by a thick line differ "
                     f"by less than the CD. The metrics are not independent data sets as in Demšar (2006): read the "
                     f"test as a summary, not a proof.{dropped} Per-metric ranks: "
                     f"<a href=\"tables/ranks.csv\">ranks.csv</a>.</p>")
        parts.append(page.plain_table(["method", "average rank"],
                                      [[k, round(float(v), 3)] for k, v in result.average_ranks.items()]))
        if path:
            parts.append(f'<img class="plot" src="{page.rel(path, out)}" alt="critical difference diagram">')
    else:
        parts.append("<h3>Average rank and critical difference</h3><p>Not computed: needs at least two methods and "
                     "one metric without NaN.</p>")
    # seed variability: one row per column, one cell per method (std, then the interval on a second line)
    records = []
    columns = [c for c in value_cols if c not in EFFICIENCY_COLUMNS]
    columns = [c for c in columns if any(not math.isnan(float(e.record[f"{c}_mean"])) for e in entries)]
    cells: dict[str, list[str]] = {c: [] for c in columns}
    for entry in entries:
        for col in columns:
            v = entry.values.get(col, np.array([]))
            n = int(np.sum(~np.isnan(v))) if len(v) else 0
            std = float(entry.record[f"{col}_std"])
            lo, hi = stats.bootstrap_ci(v)
            records.append({"method": entry.label, "metric": col, "n": n, "mean": float(entry.record[f"{col}_mean"]),
                            "std": std, "ci_low": lo, "ci_high": hi})
            if n == 0:
                text = '<span class="nan">NaN</span>'
            elif n == 1:
                text = "n=1: no std"
            else:
                text = (f"{page.fmt_number(std, 3)}<br><span class=\"std\">[{page.fmt_number(lo, 4)}, "
                        f"{page.fmt_number(hi, 4)}]</span>")
            cells[col].append(text)
    pd.DataFrame.from_records(records).to_csv(tables / "seeds.csv", index=False)
    parts.append("<h3>Seed variability</h3><p>Per column and method: the sample std over seeds and, below it, the "
                 "95 % percentile bootstrap interval of the mean over seeds (scipy.stats.bootstrap, 4999 resamples, "
                 "seed 0; with 2-3 seeds it only spans the observed values). Numbers in "
                 "<a href=\"tables/seeds.csv\">seeds.csv</a>.</p>"
                 + page.plain_table(["column", *[f"{e.label} ({len(e.seeds)} seed{'s' * (len(e.seeds) > 1)})"
                                                 for e in entries]],
                                    [[page.e(c), *cells[c]] for c in columns], raw=True))
    return "\n".join(parts)


def load_reported(dataset: str, reported_dir: str | Path | None = None) -> pd.DataFrame | None:
    """`benchmarks/reported/<dataset>.csv` (see its README), or None when the dataset has none."""
    path = Path(reported_dir or REPORTED_DIR) / f"{dataset}.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    needed = {"method", "our_method", "metric", "value", "source"}
    if not needed <= set(frame.columns):
        raise ReportError(f"{path}: expected columns {', '.join(sorted(needed))} (see benchmarks/reported/README.md)")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def own_entries(entries: Sequence[Entry]) -> dict[str, Entry]:
    """Our entry per method for the reproduced-vs-reported table: the preset's own rows (no --set/--config override,
    not trained on a mixture), the first such entry of each method; an override entry never stands for a method."""
    ours: dict[str, Entry] = {}
    for entry in entries:
        if not str(entry.record.get("overrides") or "") and not str(entry.record.get("train_mixture") or ""):
            ours.setdefault(entry.method, entry)
    return ours


def _match(ours: Mapping[str, Entry], method: str, our_method: str, preset: str) -> Entry | None:
    """Our entry for a reported row: the registry name `our_method`; for a published page also the paper's name of the
    method (published:NAME rows carry the name their images were published under), ignoring case."""
    if our_method and our_method in ours:
        return ours[our_method]
    if preset == "published":
        wanted = {method.casefold(), our_method.casefold()} - {""}
        return next((e for name, e in ours.items() if name.casefold() in wanted), None)
    return None


def reported_section(dataset: str, entries: Sequence[Entry], reported_dir, out: Path) -> str:
    reported = load_reported(dataset, reported_dir)
    if reported is None:
        return (f"<p>No reported numbers for {page.e(dataset)} (add them to "
                f"<code>benchmarks/reported/{page.e(dataset)}.csv</code>).</p>")
    ours = own_entries(entries)
    preset = str(entries[0].record["preset"]) if entries else ""
    dialect = str(entries[0].record["metric_dialect"]) if entries else ""
    records = []
    for r in reported.itertuples(index=False):
        entry = _match(ours, str(r.method), str(r.our_method or ""), preset)
        mean = std = math.nan
        if entry is not None and f"{r.metric}_mean" in entry.record:
            mean, std = float(entry.record[f"{r.metric}_mean"]), float(entry.record[f"{r.metric}_std"])
        records.append({"method": r.method, "our_method": r.our_method, "our_entry": entry.label if entry else "",
                        "metric": r.metric, "reported": r.value, "ours_mean": mean, "ours_std": std,
                        "difference": mean - r.value, "source": r.source,
                        "reported_dialect": getattr(r, "dialect", ""), "our_dialect": dialect,
                        "note": getattr(r, "note", "")})
    frame = pd.DataFrame.from_records(records)
    frame.to_csv(out / "tables" / "reported.csv", index=False)
    parts = [f"<p>Numbers the papers report for {page.e(dataset)} (<code>benchmarks/reported/{page.e(dataset)}.csv"
             "</code>), one table per source. Where this page has rows of the method (its preset's own rows, never "
             "an entry with --set/--config overrides; on a published page also the images published under the "
             "paper's name), the cell adds our mean ± std over seeds and the difference (ours − reported). Each "
             "number names its metric kit in brackets: a kit or protocol other than ours (metric dialect "
             f"{page.e(dialect or '-')}, see each note) means the numbers are not expected to match. All rows with "
             "differences: <a href=\"tables/reported.csv\">reported.csv</a>.</p>"]
    for source, part in frame.groupby("source", sort=False):
        metrics = list(dict.fromkeys(part["metric"]))
        kits = list(dict.fromkeys(str(k or "") for k in part["reported_dialect"]))  # every row's, not the first's
        named = [k for k in kits if k]
        if not named:
            kit_text = ""
        elif kits == [dialect]:
            kit_text = " · same kit as ours"
        else:
            kit_text = (f" · kits: {', '.join(named)}" + (", not named" if "" in kits else "")
                        + f" (ours: {dialect}; each number names its own)")
        rows = []
        for method, group in part.groupby("method", sort=False):
            our = str(group["our_entry"].iloc[0] or "")
            ran = bool(our)
            named = str(group["our_method"].iloc[0] or "")
            cells: list[str] = [page.e(str(method)),
                                page.e(our) if ran else (page.e(named + " (not run)") if named else "—")]
            for metric in metrics:
                hit = group[group["metric"] == metric]
                if hit.empty:
                    cells.append("")
                    continue
                h = hit.iloc[0]
                their_kit = page.e(str(h["reported_dialect"] or "") or "kit not named")
                text = f'{page.e(page.fmt_number(float(h["reported"])))} <span class="kit">[{their_kit}]</span>'
                if ran and not math.isnan(h["ours_mean"]):
                    std = "–" if math.isnan(h["ours_std"]) else page.fmt_number(float(h["ours_std"]), 2)
                    text += (f'<span class="std">ours {page.e(page.fmt_number(float(h["ours_mean"])))} ± {std} '
                             f'[{page.e(dialect or "-")}]</span>'
                             f'<span class="std">Δ {float(h["difference"]):+.3g}</span>')
                elif ran:
                    text += '<span class="std">ours: not measured</span>'
                cells.append(text)
            rows.append(cells)
        note = str(part["note"].iloc[0] or "")
        parts.append(f"<h3>{page.e(str(source))}</h3><p class=\"meta\">{page.e(note)}{page.e(kit_text)}</p>"
                     + page.plain_table(["method", "ours", *metrics], rows, left=2, raw=True))
    return "\n".join(parts)


def robust_hook(dataset: str, leaderboard_dir: str | Path, preset: str, out: Path,
                methods: Sequence[str] | None = None) -> str | None:
    """The robustness section (fusion_bench.report.robust) when the dataset has robust rows of `preset`, else None."""
    from fusion_bench.report.robust import robust_section

    return robust_section(dataset, leaderboard_dir, preset, out, methods)
