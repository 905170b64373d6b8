"""Raw result files: atomic appends, concurrent writers, header growth, malformed files, aggregation."""

from __future__ import annotations

import math
import multiprocessing as mp
from pathlib import Path

import pytest

from fusion_bench.benchmark.leaderboard import aggregate, markdown_table
from fusion_bench.benchmark.results import ResultsFileError, append_rows, read_rows


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
    assert higher_is_better("cls_acc", None) is True
    assert higher_is_better("train_s", None) is False
