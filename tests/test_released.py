"""Released weights in `bench` and `fuse` (`--weights FILE|zoo|zoo:NAME`, preset released): the authors' file loads
through the method's converter instead of training, the row carries its sha256 and source; every request error is
exit 2 before any work (a fusion-bench file in bench, no converter, a file that carries code, offline without the
file); and the pretrained initialisations a preset starts from are checked before any work and recorded."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_converters import _randomise, seafusion_authors_state
from toy_dataset import make_toy

from fusion_bench.benchmark.results import read_rows
from fusion_bench.weights import sha256_file

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def authors_file(tmp_path: Path) -> Path:
    """SeAFusion's released format (`module.`-prefixed FusionNet state dict) of a randomised paper-width network."""
    from fusion_bench.methods.seafusion.model import SeAFusionNet

    torch.manual_seed(0)
    net = SeAFusionNet().eval()
    _randomise(net)
    path = tmp_path / "fusionmodel_final.pth"
    torch.save({f"module.{k}": v for k, v in seafusion_authors_state(net).items()}, path)
    return path


def _bench(cli, capsys, tmp_path: Path, root: Path, *extra) -> tuple[int, str, str]:
    return cli(capsys, "bench", "--method", "seafusion_content", "--dataset", "toy", "--root", root,
               "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress", *extra)


def test_released_weights_make_a_released_row_without_training(cli, capsys, tmp_path, toy_registered, authors_file):
    root = make_toy(tmp_path / "toy", n=2)
    code, out, err = _bench(cli, capsys, tmp_path, root, "--weights", authors_file)
    assert code == 0, err
    assert "seafusion_content (released weights)" in out
    (row,) = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    assert (row["preset"], row["source"]) == ("released", "file fusionmodel_final.pth")
    assert row["weights_sha256"] == sha256_file(authors_file) and row["train_s"] == ""
    run_dir = next((tmp_path / "runs").rglob("row.csv")).parent
    assert not (run_dir / "model.pt").exists() and not (run_dir / "checkpoints").exists()  # nothing was trained
    # `fuse` with the same file gives the same images; another file is another leaderboard entry
    code, _, err = cli(capsys, "fuse", "--method", "seafusion_content", "--dataset", "toy", "--root", root,
                       "--weights", authors_file, "--out", tmp_path / "fused", "--no-progress")
    assert code == 0, err
    for png in sorted((run_dir / "fused").iterdir()):
        assert np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(tmp_path / "fused" / png.name)))
    state = torch.load(authors_file, weights_only=True)
    state["module.decode1.conv.bias"] = state["module.decode1.conv.bias"] + 0.1
    torch.save(state, tmp_path / "other.pth")
    code, _, err = _bench(cli, capsys, tmp_path, root, "--weights", tmp_path / "other.pth", "--source", "a retrain")
    assert code == 0, err
    first, second = read_rows(tmp_path / "lb" / "raw" / "toy.csv")
    assert first["config_hash"] != second["config_hash"] and second["source"] == "a retrain"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("case, expected", [
    ("missing", "--weights {tmp}/nowhere.pth: no such file (expected the authors"),
    ("own", "was written by fusion-bench"),
    ("code", "refused: the file holds more than tensors"),
    ("mean", "method 'mean' has no converter for released weights"),
    ("preset", "--preset paper: --weights runs under preset released"),
    ("released-without", "preset released scores the authors' released weights: pass --weights"),
    ("zoo-offline", "cfi_best.pth"),
])
def test_released_request_errors(cli, capsys, tmp_path, toy_registered, authors_file, case, expected):
    root = make_toy(tmp_path / "toy", n=2)
    method, extra = "seafusion_content", ["--weights", str(authors_file)]
    if case == "missing":
        extra = ["--weights", str(tmp_path / "nowhere.pth")]
    elif case == "own":
        torch.save({"method": "seafusion_content", "preset": "smoke", "config": {}, "state_dict": {}},
                   tmp_path / "own.pt")
        extra = ["--weights", str(tmp_path / "own.pt")]
    elif case == "code":
        torch.save({"state_dict": _Evil()}, tmp_path / "evil.pth")
        extra = ["--weights", str(tmp_path / "evil.pth")]
    elif case == "mean":
        method = "mean"
    elif case == "preset":
        extra += ["--preset", "paper"]
    elif case == "released-without":
        extra = ["--preset", "released"]
    elif case == "zoo-offline":  # the catalogue's CFI entry, not cached, FUSION_BENCH_OFFLINE=1 (conftest)
        method, extra = "cfi", ["--weights", "zoo"]
    code, _, err = cli(capsys, "bench", "--method", method, "--dataset", "toy", "--root", root, "--out",
                       tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", *extra)
    assert code == 2 and expected.format(tmp=tmp_path) in err, err
    if case == "zoo-offline":
        assert "https://github.com/wang-x-1997/" in err and "put it at" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()


def test_fuse_weights_still_loads_fusion_bench_files(cli, capsys, tmp_path, toy_registered):
    root = make_toy(tmp_path / "toy", n=2)
    code, _, err = cli(capsys, "train", "--method", "fusion_cnn", "--dataset", "toy", "--root", root,
                       "--out", tmp_path / "model.pt", "--set", "train.max_steps=1", "--no-progress")
    assert code == 0, err
    code, _, err = cli(capsys, "fuse", "--method", "fusion_cnn", "--dataset", "toy", "--root", root, "--weights",
                       tmp_path / "model.pt", "--set", "train.max_steps=1", "--out", tmp_path / "fused",
                       "--no-progress")
    assert code == 0, err
    assert len(list((tmp_path / "fused").iterdir())) == 2
    code, _, err = cli(capsys, "bench", "--method", "fusion_cnn", "--dataset", "toy", "--root", root, "--weights",
                       tmp_path / "model.pt", "--out", tmp_path / "runs")
    assert code == 2 and "was written by fusion-bench" in err


def test_paper_preset_without_its_pretrained_file_stops_before_any_work(cli, capsys, tmp_path):
    code, _, err = cli(capsys, "bench", "--method", "amdanet", "--dataset", "synthetic-ivif", "--preset", "paper",
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb")
    assert code == 2
    assert "mit_b4.pth not found" in err and "--set model.pretrained=null" in err and "huggingface.co/nvidia" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lb").exists()


def test_pretrained_initialisations_are_resolved_and_recorded(tmp_path, synthetic_cache, toy_registered):
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.benchmark.spec import BenchSpec

    root = make_toy(tmp_path / "toy", n=2)
    spec = BenchSpec(method="seafusion", dataset="toy", root=root, preset="paper", out=tmp_path / "runs",
                     leaderboard_dir=None, downstream="none")
    by_hand = synthetic_cache / "pretrained" / "mit_b0.pth"  # no published hash: a file put there is used as it is
    by_hand.parent.mkdir(parents=True, exist_ok=True)
    by_hand.write_bytes(b"stand-in for ImageNet MiT-B0")
    try:
        prep = prepare(spec)
        assert prep.provenance == {"pretrained_sha256": f"model.segformer.pretrained={sha256_file(by_hand)}"}
        scratch = prepare(BenchSpec(**{**vars(spec), "overrides": {"model.segformer.pretrained": None}}))
        assert scratch.provenance == {} and scratch.config_hash != prep.config_hash
        assert scratch.overrides == {"model.segformer.pretrained": None}
    finally:
        by_hand.unlink()


@pytest.mark.realdata
@pytest.mark.slow  # about a minute: CFI on ten real pairs on a CPU
def test_released_cfi_weights_on_real_tno_pairs(cli, capsys, tmp_path):
    weights, tno = SHARED / "zoo" / "cfi" / "best.pth", SHARED / "realdata" / "TNO"
    if not weights.is_file() or not (tno / "ir").is_dir():
        pytest.skip("../shared/zoo/cfi or ../shared/realdata/TNO is absent")
    code, _, err = cli(capsys, "bench", "--method", "cfi", "--dataset", "tno", "--root", tno, "--dataset-arg",
                       "layout=flat", "--weights", weights, "--out", tmp_path / "runs", "--leaderboard-dir",
                       tmp_path / "lb", "--no-progress", "--no-report")
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "tno.csv")
    assert row["preset"] == "released" and row["n_images"] == "10"
    assert row["weights_sha256"] == "e8830268ad16eee19183360e26fee1480f7494e916b2c327899ae3faa9ff66bc"
    assert 5.0 < float(row["EN"]) < 8.0
