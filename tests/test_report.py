"""The report: statistics with known answers, leaderboard formats, the HTML page built from real bench outputs
(synthetic-ivif, five training-free methods, two seeds), bad input, and a headless-browser screenshot."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fusion_bench.cli import main
from fusion_bench.report import stats
from fusion_bench.report.formats import decimals_for, latex_escape
from fusion_bench.report.grid import check_box, contrast_box, overlay_mask, read_yolo_predictions

# find_spec, not importorskip: importing ultralytics patches PIL's Image.open for the rest of the session.
needs_ultralytics = pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="needs ultralytics")

METHODS = ("mean", "max", "laplacian", "source_a", "source_b")

# ------------------------------------------------------------------------------------------------ statistics


def test_holm_hand_computed() -> None:
    # sorted p: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone: 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.2, math.nan, 0.01])  # NaN stays NaN and does not count in m (m = 2)
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


# Demšar (2006), Table 5: critical values q_alpha of the two-tailed Nemenyi test, k = 2..10
DEMSAR_Q05 = (1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164)
DEMSAR_Q10 = (1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920)


@pytest.mark.parametrize("k", range(2, 11))
def test_nemenyi_q_matches_demsar_table(k: int) -> None:
    assert stats.nemenyi_q(k, 0.05) == pytest.approx(DEMSAR_Q05[k - 2], abs=1e-3)
    assert stats.nemenyi_q(k, 0.10) == pytest.approx(DEMSAR_Q10[k - 2], abs=1e-3)


def test_critical_difference_demsar_example() -> None:
    # Demšar (2006), section 3.2.2: four classifiers, 14 data sets: CD = 2.569 * sqrt(4*5 / (6*14)) = 1.25
    assert stats.critical_difference(4, 14, 0.05) == pytest.approx(1.25, abs=5e-3)
    with pytest.raises(ValueError, match="at least 2 methods"):
        stats.nemenyi_q(1)


def test_friedman_and_average_ranks_hand_computed() -> None:
    # 3 methods, 4 blocks; A best everywhere, then B, then C (one block lower-is-better, written reversed)
    scores = pd.DataFrame({"A": [3.0, 9.0, 0.5, 1.0], "B": [2.0, 8.0, 0.4, 2.0], "C": [1.0, 7.0, 0.3, 3.0]},
                          index=["m1", "m2", "m3", "cost"])
    directions = {"m1": True, "m2": True, "m3": True, "cost": False}
    result = stats.friedman_nemenyi(scores, directions)
    assert list(result.average_ranks.index) == ["A", "B", "C"]
    assert result.average_ranks.to_numpy() == pytest.approx([1.0, 2.0, 3.0])
    # chi2_F = 12 N / (k (k+1)) * (sum R_j^2 - k (k+1)^2 / 4) = 12*4/12 * (14 - 12) = 8; df 2: p = exp(-8/2)
    assert result.statistic == pytest.approx(8.0)
    assert result.p == pytest.approx(math.exp(-4.0))
    assert result.cd == pytest.approx(stats.nemenyi_q(3) * math.sqrt(3 * 4 / (6 * 4)))
    # scipy on the oriented values gives the same statistic
    oriented = [scores[c].where(pd.Series(directions), -scores[c]) for c in scores.columns]
    assert sps.friedmanchisquare(*oriented).statistic == pytest.approx(8.0)
    # ties are averaged; a block with NaN is left out and named
    tied = pd.DataFrame({"A": [1.0, 1.0, math.nan], "B": [1.0, 0.0, 1.0], "C": [0.0, 0.0, 1.0]},
                        index=["x", "y", "z"])
    res = stats.friedman_nemenyi(tied, {"x": True, "y": True, "z": True})
    # x: A,B tie for 1-2 -> 1.5, C 3; y: A 1, B,C tie -> 2.5 each
    assert res.average_ranks.to_dict() == pytest.approx({"A": 1.25, "B": 2.0, "C": 2.75})
    assert res.dropped_blocks == ["z"] and res.n_blocks == 2


def test_cd_groups() -> None:
    result = stats.FriedmanResult(pd.Series({"a": 1.0, "b": 1.5, "c": 2.8, "d": 3.0}), 10, 5.0, 0.01, 1.0, 0.05)
    assert result.groups() == [("a", "b"), ("c", "d")]
    result.cd = 1.85
    assert result.groups() == [("a", "b", "c"), ("b", "c", "d")]


def test_paired_wilcoxon_known_answers_and_scipy() -> None:
    values = pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6], "b": [0.0] * 6, "c": [1.0, 2, 3, 4, 5, 6]})
    table = stats.paired_wilcoxon(values, higher_is_better=True).set_index(["a", "b"])
    # a - b > 0 on all 6 images: exact two-sided p = 2 / 2^6
    assert table.loc[("a", "b"), "p"] == pytest.approx(2 / 64)
    assert table.loc[("a", "b"), "r_plus"] == 21 and table.loc[("a", "b"), "r_minus"] == 0
    assert table.loc[("a", "c"), "better"] == "=" and table.loc[("a", "c"), "p"] == 1.0
    # Holm over the 3 pairs: p = (1/32, 1, 1/32) -> 3/32 and 3/32 (monotone), 1: not significant at 0.05
    assert table["p_holm"].to_numpy() == pytest.approx([3 / 32, 1.0, 3 / 32])
    assert table.loc[("a", "b"), "better"] == ""
    higher = stats.paired_wilcoxon(values[["a", "b"]], higher_is_better=True)
    lower = stats.paired_wilcoxon(values[["a", "b"]], higher_is_better=False)
    assert higher.loc[0, "p_holm"] == pytest.approx(1 / 32) and higher.loc[0, "better"] == "a"
    assert lower.loc[0, "better"] == "b"  # lower is better: b wins the same test
    # random data against scipy directly, with NaN pairs left out and counted
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=30), rng.normal(0.4, 1.0, size=30)
    x[[2, 7]] = np.nan
    frame = stats.paired_wilcoxon(pd.DataFrame({"x": x, "y": y}))
    keep = ~np.isnan(x)
    assert frame.loc[0, "n"] == 28 and frame.loc[0, "n_nan"] == 2
    assert frame.loc[0, "p"] == pytest.approx(sps.wilcoxon(x[keep] - y[keep]).pvalue)


def test_bootstrap_interval() -> None:
    assert stats.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    assert stats.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)  # means of resamples are 0, 0.5, 1: 2.5 % -> 0, 97.5 % -> 1
    assert all(math.isnan(v) for v in stats.bootstrap_ci([5.0, math.nan]))  # one value: no interval
    sample = np.random.default_rng(0).normal(10.0, 2.0, size=400)
    lo, hi = stats.bootstrap_ci(sample)
    half = 1.96 * sample.std(ddof=1) / math.sqrt(len(sample))  # normal approximation
    assert lo == pytest.approx(sample.mean() - half, abs=0.05) and hi == pytest.approx(sample.mean() + half, abs=0.05)
    assert stats.bootstrap_ci(sample) == (lo, hi)  # seeded


# ------------------------------------------------------------------------------------------------ small pieces


def test_grid_helpers() -> None:
    image = np.full((60, 80, 3), 128, np.uint8)
    image[30:45, 50:65] = np.random.default_rng(0).integers(0, 255, (15, 15, 3))  # the only texture
    x0, y0, x1, y1 = contrast_box(image, fraction=0.25)
    assert (x1 - x0, y1 - y0) == (15, 15) and abs(x0 - 50) <= 3 and abs(y0 - 30) <= 3
    with pytest.raises(ValueError, match=r"--zoom: zoom box \[0, 0, 90, 10\] is not inside the 80x60 image"):
        check_box([0, 0, 90, 10], (60, 80), "--zoom")
    mask = np.array([[0, 1], [255, 1]])
    out = overlay_mask(np.zeros((2, 2, 3), np.uint8), mask, np.array([[255, 0, 0], [0, 255, 0]], np.uint8), 255)
    assert out[1, 0].tolist() == [0, 0, 0] and out[0, 1, 1] > 100 and out[0, 0, 0] > 100


def test_yolo_prediction_files(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("1 0.5 0.5 0.2 0.4 0.9\n0 0.1 0.1 0.1 0.1 0.1\n")
    boxes, labels, scores = read_yolo_predictions(path, (100, 200))
    assert boxes == [pytest.approx([80.0, 30.0, 120.0, 70.0])] and labels == [1] and scores == [0.9]
    assert read_yolo_predictions(tmp_path / "none.txt", (10, 10)) == ([], [], [])


def test_latex_escape_and_decimals() -> None:
    assert latex_escape("source_a & 50%") == r"source\_a \& 50\%"
    assert decimals_for([6.8, 0.5]) == 3 and decimals_for([2428.0]) == 0 and decimals_for([0.61]) == 4
    assert decimals_for([math.nan]) == 3


def test_reported_numbers_files_are_well_formed() -> None:
    from fusion_bench.benchmark.protocol import REPORTED_DIR
    from fusion_bench.metrics import DIALECTS
    from fusion_bench.registry import DATASETS
    from fusion_bench.registry import METHODS as REGISTERED
    from fusion_bench.report.sections import load_reported

    files = sorted(REPORTED_DIR.glob("*.csv"))
    assert len(files) >= 10
    known = {m for d in DIALECTS.values() for m in d.higher_is_better} | {
        "EI", "seg_miou", "native_miou", "det_map50", "cls_acc", "cls_macro_f1", "params_m", "gflops"}
    for path in files:
        assert path.stem in DATASETS, path
        frame = load_reported(path.stem)
        assert frame is not None and frame["value"].notna().all(), path
        assert set(frame["our_method"]) <= set(REGISTERED) | {""}, path
        assert set(frame["metric"]) <= known, (path, set(frame["metric"]) - known)
        assert (frame["source"] != "").all()
        fractions = frame[frame["metric"].isin(["seg_miou", "native_miou", "det_map50", "cls_acc"])]["value"]
        assert ((fractions > 0) & (fractions < 1)).all(), path  # stored as fractions, not percent


# ------------------------------------------------------------------------------------------------ the page


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, synthetic_cache: Path) -> dict:
    """`fusion-bench bench` of five training-free methods x 2 seeds on synthetic-ivif (fusion metrics only)."""
    root = tmp_path_factory.mktemp("report_bench")
    runs, boards = root / "runs", root / "leaderboards"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUSION_BENCH_CACHE", str(synthetic_cache))
        mp.setenv("FUSION_BENCH_DOWNSTREAM", "none")
        mp.setenv("FUSION_BENCH_REPORT", "1")
        mp.delenv("FUSION_BENCH_DATA", raising=False)
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["bench", "--method", ",".join(METHODS), "--dataset", "synthetic-ivif", "--seeds", "0,1",
                         "--out", str(runs), "--leaderboard-dir", str(boards), "--no-progress"])
    assert code == 0, stderr.getvalue()
    return {"root": root, "runs": runs, "boards": boards, "stdout": stdout.getvalue()}


def _copy(bench: dict, tmp_path: Path) -> tuple[Path, Path]:
    runs, boards = tmp_path / "runs", tmp_path / "leaderboards"
    shutil.copytree(bench["runs"], runs, ignore=shutil.ignore_patterns("reports"))
    shutil.copytree(bench["boards"], boards)
    return runs, boards


def test_bench_prints_the_report_it_regenerated(bench: dict) -> None:
    line = next(line for line in bench["stdout"].splitlines() if line.startswith("report: "))
    page = Path(line.split()[1])
    assert page == bench["runs"] / "reports" / "synthetic-ivif-smoke" / "index.html" and page.is_file()


def test_report_files_and_numbers(bench: dict, tmp_path: Path, cli, capsys) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = cli(capsys, "report", "--dataset", "synthetic-ivif", "--runs", bench["runs"],
                               "--leaderboard-dir", bench["boards"], "--out", out)
    assert code == 0, stderr
    assert f"-> {out / 'index.html'}" in stdout
    # the efficiency plot places the rules by their element-wise arithmetic (source copies cost 0 GFLOPs)
    for name in ("index.html", "report.json", "figures/bars.png", "figures/cd_diagram.png", "figures/efficiency.png",
                 "tables/leaderboard.csv", "tables/leaderboard.tex", "tables/wilcoxon.csv", "tables/ranks.csv",
                 "tables/seeds.csv"):
        assert (out / name).is_file(), name
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline, no JS
    # every image the page references exists
    sources = [s for s in __import__("re").findall(r'src="([^"]+)"', page)]
    assert len(sources) == 4 * (2 + len(METHODS)) + 3 and all((out / s).is_file() for s in sources)
    # leaderboard numbers are the aggregated ones; the best EN (source_a) is bold, the second (laplacian) underlined
    from fusion_bench import load_results

    board = load_results("synthetic-ivif", bench["boards"], aggregated=True).set_index("method")
    written = pd.read_csv(out / "tables" / "leaderboard.csv").set_index("method")
    assert written.loc[list(METHODS), "EN_mean"].to_numpy() == pytest.approx(
        board.loc[list(METHODS), "EN_mean"].to_numpy())
    en = board["EN_mean"].sort_values(ascending=False)
    assert f"<b>{en.iloc[0]:.3f}</b>" in page and f"<u>{en.iloc[1]:.3f}</u>" in page
    # the paired tests are scipy's Wilcoxon on the per-image values, Holm over the 10 pairs of a metric
    per_image = {m: pd.read_csv(next((bench["runs"] / m / "synthetic-ivif" / "smoke").glob("*/test-*/seed0"))
                                / "metrics_per_image.csv").set_index("name") for m in METHODS}
    tests = pd.read_csv(out / "tables" / "wilcoxon.csv")
    qabf = tests[tests["metric"] == "Qabf"]
    assert len(qabf) == 10
    raw = [sps.wilcoxon(per_image[a]["Qabf"] - per_image[b]["Qabf"]).pvalue for a, b in zip(qabf["a"], qabf["b"])]
    assert qabf["p"].to_numpy() == pytest.approx(raw)
    assert qabf["p_holm"].to_numpy() == pytest.approx(stats.holm(raw))
    row = qabf[(qabf["a"] == "max") & (qabf["b"] == "mean")].iloc[0]
    assert row["better"] == "max" and row["n"] == 16  # max has the higher Qabf on every image
    # SCD is NaN on every image of the single-source rows: counted, not dropped silently
    scd = tests[(tests["metric"] == "SCD") & (tests["b"] == "source_a")]
    assert (scd["n"] == 0).all() and (scd["n_nan"] == 16).all()
    assert "source_a: NaN per-image values: SCD 32" in stderr
    ranks = pd.read_csv(out / "tables" / "ranks.csv", index_col=0)
    assert set(ranks.columns) == set(METHODS)
    seeds = pd.read_csv(out / "tables" / "seeds.csv")
    en_max = seeds[(seeds["method"] == "max") & (seeds["metric"] == "EN")].iloc[0]
    assert en_max["std"] == 0 and en_max["ci_low"] == en_max["ci_high"] == pytest.approx(board.loc["max", "EN_mean"])
    tex = (out / "tables" / "leaderboard.tex").read_text()
    assert "\\toprule" in tex and "\\textbf{" in tex and "\\underline{" in tex and "source\\_a" in tex


def test_report_bad_input(bench: dict, tmp_path: Path, cli, capsys) -> None:
    runs, boards = _copy(bench, tmp_path)
    base = ["report", "--dataset", "synthetic-ivif", "--runs", runs, "--leaderboard-dir", boards]

    def error(*extra: object) -> str:
        code, out, err = cli(capsys, *base, *extra)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, (code, err)
        return err

    assert "no raw results for dataset 'tno'" in error("--dataset", "tno")
    assert "methods with rows: " in error("--methods", "seafusion")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert "is not empty and holds no earlier report" in error("--out", tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert "zoom box [0, 0, 999, 10] is not inside the 160x128 image" in error("--zoom", "0,0,999,10", "--methods",
                                                                                "max")
    assert "--images: nope not among the test images" in error("--images", "nope", "--methods", "max")
    (boards / "raw" / "empty.csv").write_text("method,dataset,seed\n")
    assert "has no rows" in error("--dataset", "empty")
    # one seed for `mean`, a missing fused image for `max`: the page says so and still renders
    raw = boards / "raw" / "synthetic-ivif.csv"
    rows = list(csv.DictReader(raw.open()))
    with raw.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r in rows if not (r["method"] == "mean" and r["seed"] == "1"))
    fused = next((runs / "max" / "synthetic-ivif" / "smoke").glob("*/test-*/seed0")) / "fused"
    victim = fused / "00080D.png"
    victim.unlink()
    out = tmp_path / "report"
    code, stdout, stderr = cli(capsys, *base, "--out", out, "--images", "00080D,00082D", "--methods", "mean,max")
    assert code == 0, stderr
    page = (out / "index.html").read_text()
    assert f"max: {victim}" in page and "max: fused image missing" in page
    assert "mean: one seed, so no std" in page
    mean_row = page[page.index('<td class="label">mean</td>'):].split("</tr>")[0]
    assert "± –" in mean_row and "± 0.000" not in mean_row
    seeds = pd.read_csv(out / "tables" / "seeds.csv")
    assert seeds[(seeds["method"] == "mean")]["ci_low"].isna().all()
    # a second report into the same folder replaces it
    code, _, stderr = cli(capsys, *base, "--out", out, "--images", "00082D", "--methods", "max,mean")
    assert code == 0, stderr
    assert "max: fused image missing" not in (out / "index.html").read_text()


def test_report_per_class_training_curves_and_nan(bench: dict, tmp_path: Path, cli, capsys) -> None:
    """Per-class values and Lightning logs of the runs reach the page; NaN per-image values are counted."""
    runs, boards = _copy(bench, tmp_path)
    seeds = sorted(p for p in (runs / "max" / "synthetic-ivif" / "smoke").glob("*/test-*/seed*") if p.is_dir())
    for k, run in enumerate(seeds):  # two seeds: IoU 0.2/0.4 -> mean 0.3; the car class is absent (NaN)
        pd.DataFrame({"evaluator": ["seg", "seg"], "class": ["road", "car"], "metric": ["iou", "iou"],
                      "value": [0.2 + 0.2 * k, math.nan]}).to_csv(run / "downstream_per_class.csv", index=False)
    (seeds[0] / "logs").mkdir()
    pd.DataFrame({"epoch": [0, 0, 1], "step": [9, 19, 29], "train/loss": [1.0, 0.8, 0.5]}).to_csv(
        seeds[0] / "logs" / "metrics.csv", index=False)
    per_image = seeds[1] / "metrics_per_image.csv"
    frame = pd.read_csv(per_image)
    frame.loc[[3, 5], "EN"] = math.nan  # two NaN values of one seed
    frame.to_csv(per_image, index=False)
    out = tmp_path / "report"
    code, _, err = cli(capsys, "report", "--dataset", "synthetic-ivif", "--runs", runs, "--leaderboard-dir", boards,
                       "--out", out, "--methods", "max,mean,laplacian", "--n-images", "1", "--zoom", "none",
                       "--cost", "params_m", "--metric", "Qabf")
    assert code == 0, err
    page = (out / "index.html").read_text()
    assert "Per-class iou (seg)" in page and "Training curves" in page and "Efficiency: params_m vs Qabf" in page
    assert (out / "figures" / "per_class_0.png").is_file() and (out / "figures" / "training.png").is_file()
    table = pd.read_csv(out / "tables" / "per_class.csv").set_index(["evaluator/metric", "method"])
    assert table.loc[("seg/iou", "max"), "road"] == pytest.approx(0.3) and math.isnan(table.loc[("seg/iou", "max"),
                                                                                                   "car"])
    assert "max: NaN per-image values: EN 2" in err
    tests = pd.read_csv(out / "tables" / "wilcoxon.csv")
    en = tests[(tests["metric"] == "EN") & (tests["a"] == "laplacian") & (tests["b"] == "max")].iloc[0]
    assert en["n"] == 16 and en["n_nan"] == 0  # seed means: the other seed's value stands in for the NaN ones
    code, _, err = cli(capsys, "report", "--dataset", "synthetic-ivif", "--runs", runs, "--leaderboard-dir", boards,
                       "--out", out, "--metric", "nope")
    assert code == 2 and "--metric 'nope' has no values" in err


def test_reproduced_vs_reported(bench: dict, tmp_path: Path) -> None:
    from fusion_bench.report import build_report

    reported = tmp_path / "reported"
    reported.mkdir()
    (reported / "synthetic-ivif.csv").write_text(
        "method,our_method,metric,value,source,dialect,note\n"
        "Max rule,max,EN,6.5,A paper (Table 1),mmif,\n"
        "Other,,EN,7.0,A paper (Table 1),tang,not implemented here\n")
    report = build_report("synthetic-ivif", methods=["max", "mean"], runs_dir=bench["runs"],
                          leaderboard_dir=bench["boards"], out=tmp_path / "r", reported_dir=reported, n_images=1)
    table = pd.read_csv(tmp_path / "r" / "tables" / "reported.csv")
    from fusion_bench import load_results

    ours = load_results("synthetic-ivif", bench["boards"], aggregated=True).set_index("method").loc["max", "EN_mean"]
    assert table.loc[0, "difference"] == pytest.approx(ours - 6.5)
    assert math.isnan(table.loc[1, "ours_mean"])
    page = report.index_html.read_text()
    # the source mixes kits (mmif, tang): not "same kit as ours" (only its first row used to be read)
    assert "<h3>A paper (Table 1)</h3>" in page and "same kit as ours" not in page
    assert "kits: mmif, tang (ours: mmif; each number names its own)" in page
    assert f"ours {ours:.4g} ± 0 [mmif]</span><span class=\"std\">Δ {ours - 6.5:+.3g}</span>" in page
    assert '6.5 <span class="kit">[mmif]</span>' in page and '7 <span class="kit">[tang]</span>' in page


def _browser() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no headless browser (chromium) installed")
def test_report_renders_in_a_headless_browser(bench: dict, tmp_path: Path) -> None:
    from PIL import Image

    page = bench["runs"] / "reports" / "synthetic-ivif-smoke" / "index.html"
    shot = tmp_path / "report.png"
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--hide-scrollbars", "--window-size=1400,2600", f"--screenshot={shot}", page.as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    image = np.asarray(Image.open(shot).convert("RGB"))
    assert image.shape == (2600, 1400, 3)
    # not blank: the grid tiles (coloured pixels) and the text are drawn
    colourful = (image.max(axis=2).astype(int) - image.min(axis=2)) > 60
    assert colourful.mean() > 0.02 and (image < 80).all(axis=2).mean() > 0.002


# ------------------------------------------------------------------------------------------------ predictions


def _fused_folders(tmp_path: Path, splits: tuple[str, ...]) -> dict:
    from fusion_bench.data.io import write_png
    from fusion_bench.data.synthetic import SyntheticIVIF, ensure_generated

    root = ensure_generated("synthetic-ivif")
    out = {}
    for split in splits:
        dataset = SyntheticIVIF(root, split)
        for i, ref in enumerate(dataset.samples):
            write_png(tmp_path / split / f"{ref.name}.png", dataset[i]["vis"])
        out[split] = dataset
    return out


def test_segmentation_saves_per_image_predictions(tmp_path: Path) -> None:
    """The evaluator writes each test image's class map; the saved maps give the reported confusion matrix."""
    pytest.importorskip("transformers")
    from PIL import Image

    from fusion_bench.evaluators.segmentation import evaluate_segmentation_folders, load_masks, seg_preset

    datasets = _fused_folders(tmp_path, ("val", "test"))  # the 16 val images stand in for the training split
    result = evaluate_segmentation_folders(tmp_path / "val", tmp_path / "test", datasets["val"], datasets["test"],
                                           seg_preset("smoke", epochs=1), seed=0, log_dir=tmp_path / "seg",
                                           progress=False)
    test = datasets["test"]
    confusion = np.zeros((len(test.class_names),) * 2, dtype=np.int64)
    for ref, mask in zip(test.samples, load_masks(test, progress=False)):
        pred = np.asarray(Image.open(tmp_path / "seg" / "predictions" / f"{ref.name}.png")).astype(np.int64)
        gt = mask.numpy().astype(np.int64)
        assert pred.shape == gt.shape and pred.max() < len(test.class_names)
        keep = gt != test.ignore_index
        confusion += np.bincount(gt[keep] * len(test.class_names) + pred[keep],
                                 minlength=confusion.size).reshape(confusion.shape)
    assert confusion.tolist() == result["seg_confusion"]


@pytest.mark.slow
@needs_ultralytics
def test_detection_saves_per_image_predictions(tmp_path: Path) -> None:
    from fusion_bench.evaluators.detection import det_preset, evaluate_detection_folders

    datasets = _fused_folders(tmp_path, ("train", "test"))
    evaluate_detection_folders(tmp_path / "train", tmp_path / "test", datasets["train"], datasets["test"],
                               det_preset("smoke", epochs=1, image_size=64), seed=0, log_dir=tmp_path / "det",
                               progress=False)
    labels = tmp_path / "det" / "test" / "labels"
    files = sorted(labels.glob("*.txt"))
    assert files and {f.stem for f in files} <= {ref.name for ref in datasets["test"].samples}
    for line in files[0].read_text().splitlines():
        cls, *xywh, conf = line.split()
        assert int(cls) in (0, 1) and all(0 <= float(v) <= 1 for v in xywh) and 0 < float(conf) <= 1


def test_bench_report_is_opt_out(tmp_path: Path, cli, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["bench", "--method", "mean", "--dataset", "synthetic-ivif", "--seeds", "0", "--out", tmp_path / "runs",
            "--leaderboard-dir", tmp_path / "lb", "--no-progress"]
    code, out, err = cli(capsys, *argv, "--no-report")
    assert code == 0 and "report:" not in out and not (tmp_path / "runs" / "reports").exists()
    monkeypatch.setenv("FUSION_BENCH_REPORT", "0")
    code, out, err = cli(capsys, *argv)
    assert code == 0 and "report:" not in out and not (tmp_path / "runs" / "reports").exists()


def test_efficiency_scatter_draws_cost_against_quality(tmp_path: Path) -> None:
    from fusion_bench.report import figures

    x = pd.Series({"a": 0.5, "b": 20.0, "c": float("nan")})
    y = pd.Series({"a": 0.4, "b": 0.6, "c": 0.7})
    path = figures.efficiency_scatter(x, y, pd.Series({"a": 0.01, "b": float("nan"), "c": 0.0}), "gflops", "mIoU",
                                      tmp_path / "eff.png")
    assert path is not None and path.stat().st_size > 1000
    assert figures.efficiency_scatter(x[["c"]], y[["c"]], y[["c"]], "gflops", "mIoU", tmp_path / "none.png") is None
