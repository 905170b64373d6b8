"""Raw result files: atomic appends, concurrent writers, header growth, malformed files, aggregation."""

from __future__ import annotations

import math
import multiprocessing as mp
from pathlib import Path

import pytest

from fusion_bench.benchmark.leaderboard import aggregate, markdown_table
from fusion_bench.benchmark.results import append_rows, read_rows
from fusion_bench.errors import ResultsFileError


def _writer(path: str, worker: int, n: int) -> None:
    for i in range(n):
        append_rows(Path(path), [{"method": f"w{worker}", "dataset": "d", "seed": i, "EN": worker + i / 100,
                                  "timestamp": f"t{i:03d}"}])


def test_concurrent_writers_lose_no_rows(tmp_path):
    path = tmp_path / "raw" / "d.csv"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 25)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    rows = read_rows(path)
    assert len(rows) == 50
    assert sorted((r["method"], int(r["seed"])) for r in rows) == sorted((f"w{w}", i) for w in range(2)
                                                                        for i in range(25))
    assert not list(path.parent.glob(".*tmp")), "temp files must not be left behind"


def test_new_columns_extend_header_and_keep_old_rows(tmp_path):
    path = tmp_path / "d.csv"
    append_rows(path, [{"method": "a", "seed": 0, "EN": 1.5}])
    append_rows(path, [{"method": "b", "seed": 0, "EN": 2.0, "SD": 3.0}])
    rows = read_rows(path)
    assert rows[0] == {"method": "a", "seed": "0", "EN": "1.5", "SD": ""}
    assert rows[1]["SD"] == "3.0"


def test_malformed_file_names_file_and_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("method,seed\na,0\nb,1,extra\n")
    with pytest.raises(ResultsFileError, match=r"d.csv:3"):
        read_rows(path)


def test_aggregate_mean_std_and_latest_row_per_seed():
    rows = [
        {"method": "m", "preset": "smoke", "config_hash": "h", "metric_dialect": "mmif", "seed": "0", "EN": "1.0",
         "timestamp": "2026-01-01"},
        {"method": "m", "preset": "smoke", "config_hash": "h", "metric_dialect": "mmif", "seed": "0", "EN": "2.0",
         "timestamp": "2026-01-02"},  # a re-run of seed 0 replaces the older row
        {"method": "m", "preset": "smoke", "config_hash": "h", "metric_dialect": "mmif", "seed": "1", "EN": "4.0",
         "timestamp": "2026-01-01"},
    ]
    aggregated, cols = aggregate(rows)
    assert cols == ["EN"]
    (row,) = aggregated
    assert row["n"] == 2
    assert row["EN_mean"] == pytest.approx(3.0)
    assert row["EN_std"] == pytest.approx(math.sqrt(2.0))


def test_markdown_bolds_best_by_direction():
    base = {"preset": "smoke", "config_hash": "h", "metric_dialect": "mmif", "seed": "0", "timestamp": "t"}
    rows = [{**base, "method": "a", "EN": "7.0", "MSE": "10"}, {**base, "method": "b", "EN": "6.0", "MSE": "5"}]
    table = markdown_table("d", *aggregate(rows))
    line_a = next(line for line in table.splitlines() if line.startswith("| a "))
    line_b = next(line for line in table.splitlines() if line.startswith("| b "))
    assert "**7**" in line_a and "**5**" in line_b  # EN higher is better, MSE lower is better


def test_unimodal_accuracy_columns_are_higher_is_better():
    from fusion_bench.benchmark.leaderboard import higher_is_better

    assert higher_is_better("acc_audio", None) is True
    assert higher_is_better("probe_frames", None) is True
    assert higher_is_better("cls_acc", None) is True
    assert higher_is_better("train_s", None) is False


# ------------------------------------------------------------------------------------------------ leaderboards

FIXTURE = Path(__file__).parent / "data" / "leaderboard_fixture"


def _csv_records(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_pandas_aggregation_reproduces_the_hand_written_output(tmp_path):
    """Golden files from the hand-written aggregation (commit 2961be0): same README, same per-dataset CSVs plus the
    split_hash and n_images columns."""
    import shutil

    from fusion_bench.benchmark.leaderboard import regenerate

    shutil.copytree(FIXTURE / "raw", tmp_path / "raw")
    tables = regenerate(tmp_path)
    assert set(tables) == {"fixture-edge", "synthetic-av", "synthetic-ivif", "synthetic-meif", "synthetic-mfif"}
    assert (tmp_path / "README.md").read_text() == (FIXTURE / "expected" / "README.md").read_text()
    for expected in sorted((FIXTURE / "expected").glob("*.csv")):
        new = _csv_records((tmp_path / expected.name).read_text())
        old = _csv_records(expected.read_text())
        added = ("split_hash", "n_images", "train_mixture", "overrides", "kind", "source", "label")  # columns it lacked
        assert [{k: v for k, v in r.items() if k not in added} for r in new] == old, expected.name
        raw = {(r["method"], r["preset"], r["config_hash"]): (r["split_hash"], r["n_images"])
               for r in read_rows(FIXTURE / "raw" / expected.name)}
        for r in new:
            assert (r["split_hash"], r["n_images"]) == raw[(r["method"], r["preset"], r["config_hash"])]


def test_rows_from_different_test_splits_are_different_entries():
    """#19.3: a 43-image result must not replace a 25-image one of the same method, hash and seed."""
    from fusion_bench.benchmark.leaderboard import aggregate_frame

    base = {"method": "m", "preset": "smoke", "config_hash": "h", "metric_dialect": "mmif", "seed": "0"}
    rows = [
        {**base, "EN": "6.0", "MSE": "10", "split_hash": "committed25", "n_images": "25", "timestamp": "2026-01-01"},
        {**base, "EN": "7.0", "MSE": "20", "split_hash": "flat43", "n_images": "43", "timestamp": "2026-01-02"},
        {**base, "method": "o", "EN": "6.5", "MSE": "5", "split_hash": "committed25", "n_images": "25",
         "timestamp": "2026-01-01"},
    ]
    frame, cols = aggregate_frame(rows)
    assert len(frame) == 3 and list(frame["n"]) == [1, 1, 1]
    m = frame[frame["method"] == "m"].set_index("split_hash")
    assert m.loc["committed25", "EN_mean"] == 6.0 and m.loc["committed25", "n_images"] == "25"
    assert m.loc["flat43", "EN_mean"] == 7.0 and m.loc["flat43", "n_images"] == "43"
    table = markdown_table("d", frame, cols)
    assert "| n | images | EN | MSE |" in table and "43 (split flat43)" in table
    # best per split: on the 25-image split o has the lower MSE, on the 43-image split m is alone (bold)
    line_m43 = next(line for line in table.splitlines() if "43 (split" in line)
    line_m25 = next(line for line in table.splitlines() if line.startswith("| m ") and "25 (split" in line)
    assert "**7**" in line_m43 and "**20**" in line_m43
    assert "**" not in line_m25  # o is better on both columns of that split
    # one split only: no images column (the README stays as it was)
    assert "images" not in markdown_table("d", *aggregate_frame([rows[0], rows[2]]))


def test_leaderboard_missing_or_empty_directory_is_an_error(tmp_path, cli, capsys):
    code, _, err = cli(capsys, "leaderboard", "--leaderboard-dir", tmp_path / "leaderbaords")
    assert code == 2 and "leaderbaords does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "leaderbaords").exists()
    (tmp_path / "empty" / "raw").mkdir(parents=True)
    code, _, err = cli(capsys, "leaderboard", "--leaderboard-dir", tmp_path / "empty")
    assert code == 2 and "holds no raw result files" in err
    assert not (tmp_path / "empty" / "README.md").exists()


def test_leaderboard_formats(tmp_path, cli, capsys):
    import io
    import shutil

    import pandas

    shutil.copytree(FIXTURE / "raw", tmp_path / "raw")
    code, latex, _ = cli(capsys, "leaderboard", "--leaderboard-dir", tmp_path, "--format", "latex", "--dataset",
                         "fixture-edge", "--preset", "smoke")
    assert code == 0
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
    # EN (higher is better, smoke, mmif): beta 7.1 best, alpha 6.7 second; beta has one seed: no std
    beta = next(line for line in latex.splitlines() if line.startswith("beta"))
    alpha = next(line for line in latex.splitlines() if line.startswith("alpha"))
    assert "\\textbf{7.100{\\scriptsize$\\pm$--}}" in beta and "\\underline{6.700{\\scriptsize$\\pm$0.183}}" in alpha
    assert "MSE$\\downarrow$" in latex and "seg\\_miou" not in latex  # no smoke row has seg_miou
    code, page, _ = cli(capsys, "leaderboard", "--leaderboard-dir", tmp_path, "--format", "html", "--dataset",
                        "fixture-edge", "--preset", "smoke")
    assert code == 0 and "<b>7.100</b>" in page and "<u>6.700</u>" in page and "± –" in page
    assert "(1 NaN)" in page  # alpha's MSE: one of four seeds is empty
    code, text, _ = cli(capsys, "leaderboard", "--leaderboard-dir", tmp_path, "--format", "csv")
    frame = pandas.read_csv(io.StringIO(text))
    assert set(frame["dataset"]) == {"fixture-edge", "synthetic-av", "synthetic-ivif", "synthetic-meif",
                                     "synthetic-mfif"}
    code, md, _ = cli(capsys, "leaderboard", "--leaderboard-dir", tmp_path, "--format", "md", "--dataset",
                      "synthetic-ivif")
    assert md.split("\n", 2)[2] == (tmp_path / "README.md").read_text().split("## synthetic-ivif\n\n")[1].split(
        "\n## ")[0].rstrip("\n") + "\n"
    out = tmp_path / "board.tex"
    code, _, _ = cli(capsys, "leaderboard", "--leaderboard-dir", tmp_path, "--format", "latex", "--out", out)
    assert code == 0 and out.read_text().count("\\begin{tabular}") == 5
    code, _, err = cli(capsys, "leaderboard", "--leaderboard-dir", tmp_path, "--format", "md", "--dataset", "nope")
    assert code == 2 and "no raw results for dataset 'nope'" in err


def test_load_results_api(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from fusion_bench import load_results
    from fusion_bench.errors import LeaderboardError

    shutil.copytree(FIXTURE / "raw", tmp_path / "raw")

    raw = load_results("fixture-edge", tmp_path)
    assert len(raw) == 16 and raw["EN"].dtype == float and raw["seed"].dtype.kind in "if"
    board = load_results("fixture-edge", tmp_path, aggregated=True, preset="smoke")
    assert list(board.columns[:6]) == ["dataset", "method", "preset", "config_hash", "metric_dialect", "task"]
    assert board.set_index("method").loc["alpha", "EN_mean"] == pytest.approx(6.7)
    assert set(load_results(None, tmp_path)["dataset"]) == {
        "fixture-edge", "synthetic-av", "synthetic-ivif", "synthetic-meif", "synthetic-mfif"}
    with pytest.raises(LeaderboardError, match="no raw results for dataset 'x'"):
        load_results("x", tmp_path)
    import fusion_bench
    from fusion_bench.benchmark.runner import run_bench
    from fusion_bench.benchmark.spec import BenchSpec
    from fusion_bench.report.build import build_report

    assert fusion_bench.BenchSpec is BenchSpec and fusion_bench.run_bench is run_bench
    assert fusion_bench.build_report is build_report
    # the public API is lazy: importing fusion_bench (and load_results) imports neither torch nor lightning
    subprocess.run([sys.executable, "-c", "import sys, fusion_bench; from fusion_bench import load_results; "
                    "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, sorted(sys.modules)"],
                   check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
