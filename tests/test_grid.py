"""`fusion-bench grid` (local pool, submitit, printed commands) and `leaderboard --collect`."""

from __future__ import annotations

import pytest

from fusion_bench.benchmark.results import append_rows, collect_rows, read_rows


def _row(method: str, seed: int, stamp: str, **extra) -> dict:
    return {"method": method, "dataset": "synthetic-ivif", "task": "ivif", "preset": "smoke", "seed": seed,
            "config_hash": "abc", "metric_dialect": "mmif", "split_hash": "s1", "EN": 6.0 + seed,
            "timestamp": stamp, **extra}


def test_collect_merges_complete_runs_once(tmp_path):
    runs, lb = tmp_path / "runs", tmp_path / "lb"
    seed = runs / "mean" / "synthetic-ivif" / "smoke" / "abc" / "test-s1"
    append_rows(seed / "seed0" / "row.csv", [_row("mean", 0, "t0")], lock=False)
    append_rows(seed / "seed1" / "row.csv", [_row("mean", 1, "t1", SF=3.0)], lock=False)
    append_rows(seed / "seed2.partial" / "row.csv", [_row("mean", 2, "t2")], lock=False)  # unfinished
    append_rows(seed / "seed0.replaced-20260101T000000" / "row.csv", [_row("mean", 0, "old")], lock=False)
    append_rows(lb / "raw" / "synthetic-ivif.csv", [_row("mean", 0, "t0")])  # appended by `bench` already
    assert collect_rows(runs, lb) == {"synthetic-ivif": 1}
    rows = read_rows(lb / "raw" / "synthetic-ivif.csv")
    assert [(r["seed"], r["timestamp"]) for r in rows] == [("0", "t0"), ("1", "t1")] and rows[1]["SF"] == "3.0"
    assert collect_rows(runs, lb) == {"synthetic-ivif": 0}, "collecting twice adds nothing"


def test_leaderboard_collect_cli(cli, capsys, tmp_path):
    runs, lb = tmp_path / "runs", tmp_path / "lb"
    append_rows(runs / "a" / "seed0" / "row.csv", [_row("mean", 0, "t0")], lock=False)
    code, out, err = cli(capsys, "leaderboard", "--collect", runs, "--leaderboard-dir", lb)
    assert code == 0 and "synthetic-ivif: 1 new row(s)" in out, err
    assert (lb / "synthetic-ivif.csv").is_file() and (lb / "README.md").is_file()
    code, out, _ = cli(capsys, "leaderboard", "--collect", runs, "--leaderboard-dir", lb)
    assert "synthetic-ivif: 0 new row(s)" in out and len(read_rows(lb / "raw" / "synthetic-ivif.csv")) == 1
    code, _, err = cli(capsys, "leaderboard", "--collect", tmp_path / "nothing", "--leaderboard-dir", lb)
    assert code == 2 and "no such folder" in err


def test_commands_launcher_with_baselines_once_per_dataset_and_seed(cli, capsys, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("methods: [mean, max, source_a]\ndatasets: synthetic-ivif\nseeds: [0, 1]\ndownstream: seg\n"
                    "set: {model.levels: 3}\n")
    code, out, err = cli(capsys, "grid", "--grid", grid, "--methods", "mean,max,source_a", "--launcher", "commands",
                         "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 2 and "unknown key 'levels'" in err, "overrides are checked for every method before any job"
    grid.write_text("methods: [mean, max, source_a]\ndatasets: synthetic-ivif\nseeds: [0, 1]\ndownstream: seg\n")
    code, out, err = cli(capsys, "grid", "--grid", grid, "--launcher", "commands", "--out", tmp_path / "runs",
                         "--leaderboard-dir", tmp_path / "lb")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("fusion-bench bench")]
    jobs = sorted((line.split("--method ")[1].split()[0], line.split("--seeds ")[1].split()[0]) for line in lines)
    assert jobs == [(m, s) for m in ("max", "mean", "source_a", "source_b") for s in "01"]
    assert all("--no-leaderboard" in line and "--downstream seg" in line for line in lines)
    assert "fusion-bench leaderboard --collect" in out.splitlines()[-1]
    assert not any("--downstream-numerics" in line for line in lines)  # bench's default
    code, out, err = cli(capsys, "grid", "--grid", grid, "--launcher", "commands", "--out", tmp_path / "runs",
                         "--leaderboard-dir", tmp_path / "lb", "--downstream-numerics", "pinned")
    lines = [line for line in out.splitlines() if line.startswith("fusion-bench bench")]
    assert code == 0 and lines and all("--downstream-numerics pinned" in line for line in lines)


def test_local_launcher_runs_the_jobs_and_resumes(cli, capsys, tmp_path):
    args = ("grid", "--methods", "mean", "--datasets", "synthetic-ivif", "--seeds", "0,1", "--downstream", "none",
            "--launcher", "local", "--jobs", "2", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    code, out, err = cli(capsys, *args)
    assert code == 0, err + out
    assert "2 job(s) to run, 0 already done" in err and "collected 2 new row(s)" in out
    rows = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert sorted(r["seed"] for r in rows) == ["0", "1"] and rows[0]["EN"] == rows[1]["EN"]
    assert (tmp_path / "lb" / "synthetic-ivif.csv").is_file()
    code, out, err = cli(capsys, *args)
    assert code == 0 and "0 job(s) to run, 2 already done" in err


def test_slurm_launcher_through_submitit_local_executor(cli, capsys, tmp_path):
    pytest.importorskip("submitit")
    code, out, err = cli(capsys, "grid", "--methods", "max", "--datasets", "synthetic-ivif", "--seeds", "3",
                         "--downstream", "none", "--launcher", "slurm", "--submitit-cluster", "local", "--wait",
                         "--time", "10", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 0, err + out
    assert "submitted max-synthetic-ivif-seed3: job" in out and "collected 1 new row(s)" in out
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert row["method"] == "max" and row["seed"] == "3"
    assert list((tmp_path / "runs" / "grid-logs" / "submitit").glob("*_log.out")), "submitit's job logs"


def test_bench_jobs_gives_the_rows_of_a_sequential_bench(cli, capsys, tmp_path):
    """`bench --jobs 2` runs each (method, seed) in its own process and appends to the raw CSV like `bench` does: the
    same numbers as one at a time, every requested method again on a re-run, and the timings table."""
    base = ("bench", "--method", "mean,fusion_cnn", "--dataset", "synthetic-ivif", "--seeds", "0,1", "--downstream",
            "none", "--no-report", "--no-progress")
    code, out, err = cli(capsys, *base, "--out", tmp_path / "seq", "--leaderboard-dir", tmp_path / "lb_seq")
    assert code == 0, err
    code, out, err = cli(capsys, *base, "--jobs", "2", "--out", tmp_path / "par", "--leaderboard-dir",
                         tmp_path / "lb_par")
    assert code == 0, err + out
    assert "bench: 4 run(s), 2 at a time" in out and "[4/4 done]" in out and "where the time went" in out
    numbers = ("method", "seed", "config_hash", "EN", "SD", "Qabf", "SSIM", "MSE", "numerics")

    def table(folder: str) -> list[tuple]:
        return sorted(tuple(r[k] for k in numbers) for r in read_rows(tmp_path / folder / "raw" / "synthetic-ivif.csv"))

    assert table("lb_par") == table("lb_seq") and len(table("lb_par")) == 4
    assert (tmp_path / "lb_par" / "synthetic-ivif.csv").is_file()
    assert len(list((tmp_path / "par" / "bench-logs").glob("*.log"))) == 4
    code, out, err = cli(capsys, *base, "--jobs", "2", "--out", tmp_path / "par", "--leaderboard-dir",
                         tmp_path / "lb_par")
    assert code == 0 and len(read_rows(tmp_path / "lb_par" / "raw" / "synthetic-ivif.csv")) == 8
    code, out, err = cli(capsys, *base, "--jobs", "2", "--mixture", "--out", tmp_path / "mix")
    assert code == 2 and "--jobs does not apply to --mixture" in err
