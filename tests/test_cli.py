"""Bad requests give a non-zero exit and a message that names what is valid or what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from toy_dataset import make_toy


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "--method", "nope", "--dataset", "synthetic-ivif"],
         "agm, amdanet, cfi, cmd_cta, fusion_cnn"),  # the sorted listing
        (["bench", "--method", "mean", "--dataset", "nope"], "valid datasets:"),
        (["bench", "--method", "late_fusion", "--dataset", "synthetic-ivif"], "handles classification"),
        (["bench", "--method", "mean", "--dataset", "synthetic-av"], "is classification"),
        (["profile", "--method", "nope"], "valid methods:"),
        (["data", "check", "nope", "--root", "x"], "valid datasets:"),
    ],
)
def test_unknown_names_list_valid_choices(cli, capsys, argv, needle):
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert needle in err


def test_unknown_preset_lists_choices(cli, capsys):
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "synthetic-ivif", "--preset", "fast")
    assert code == 2
    assert "smoke" in err and "paper" in err


def test_bad_seeds_rejected(cli, capsys):
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "synthetic-ivif", "--seeds", "a,b")
    assert code == 2
    assert "--seeds" in err


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "empty"])
def test_missing_or_empty_root_names_path_and_tree(cli, capsys, tmp_path, toy_registered, make_dir):
    root = tmp_path / "nowhere"
    if make_dir:
        root.mkdir()
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "toy", "--root", root,
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 2
    assert str(root) in err
    assert "expected tree" in err and "<split>/{ir,vis,mask}" in err
    assert not (tmp_path / "lb").exists(), "no row may be written for a request that cannot run"


def test_data_check_reports_problems_and_exit_code(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy")
    code, out, _ = cli(capsys, "data", "check", "toy", "--root", root)
    assert code == 0, out
    assert "clean" in out and "train: 3 samples" in out
    (root / "test" / "vis" / "001.png").unlink()
    (root / "train" / "ir" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code, out, _ = cli(capsys, "data", "check", "toy", "--root", root)
    assert code == 1
    assert "test/ir/001.png: no partner" in out
    assert "train/ir/002.png" in out and "cannot read image" in out


def test_bench_on_toy_dataset_and_leaderboard_regeneration(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy")
    lb = tmp_path / "lb"
    code, out, err = cli(capsys, "bench", "--method", "mean,max", "--dataset", "toy", "--root", root,
                         "--seeds", "0,1", "--out", tmp_path / "runs", "--leaderboard-dir", lb, "--no-progress")
    assert code == 0, err
    assert "| mean | smoke | mmif | 2 |" in out
    generated = (lb / "README.md").read_text(), (lb / "toy.csv").read_text()
    (lb / "README.md").unlink()
    (lb / "toy.csv").unlink()
    code, _, _ = cli(capsys, "leaderboard", "--leaderboard-dir", lb)
    assert code == 0
    assert ((lb / "README.md").read_text(), (lb / "toy.csv").read_text()) == generated


def test_profile_prints_json(cli, capsys):
    code, out, _ = cli(capsys, "profile", "--method", "fusion_cnn", "--height", "64", "--width", "64")
    assert code == 0
    result = json.loads(out)
    from fusion_bench.methods.fusion_cnn.model import FusionCNN

    expected_params = sum(p.numel() for p in FusionCNN(width=16, depth=4).parameters()) / 1e6
    assert result["params_m"] == pytest.approx(expected_params)
    assert result["gflops"] > 0 and result["latency_ms"] > 0


def test_python_dash_m_entry_point():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fusion_bench", "list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "synthetic-ivif" in out.stdout and "laplacian" in out.stdout


def test_dataset_options_reach_the_dataset(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy")
    code, _, err = cli(capsys, "data", "check", "toy", "--root", root, "--dataset-arg", "bogus=1")
    assert code == 2 and "bogus" in err
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "toy", "--root", root,
                       "--dataset-arg", "bogus=1", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 2 and "bogus" in err
    code, _, err = cli(capsys, "bench", "--method", "mean", "--dataset", "toy", "--dataset-arg", "novalue")
    assert code == 2 and "KEY=VALUE" in err


REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.mark.realdata
@pytest.mark.skipif(not (REALDATA / "TNO").is_dir(), reason="../shared/realdata is absent")
def test_bench_on_real_tno_pairs_with_flat_layout(cli, capsys, tmp_path):
    code, out, err = cli(capsys, "bench", "--method", "mean", "--dataset", "tno", "--root", REALDATA / "TNO",
                         "--dataset-arg", "layout=flat", "--out", tmp_path / "runs",
                         "--leaderboard-dir", tmp_path / "lb", "--no-progress")
    assert code == 0, err
    from fusion_bench.benchmark.results import read_rows

    (row,) = read_rows(tmp_path / "lb" / "raw" / "tno.csv")
    assert row["n_images"] == "10" and 5.0 < float(row["EN"]) < 8.0
