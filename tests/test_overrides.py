"""`--set` and `--config` overrides: valid keys, YAML values, the config hash, the row's overrides column."""

from __future__ import annotations

import json

import pytest
import torch

from fusion_bench.benchmark.config import TRAIN_KEYS, apply_overrides, valid_keys
from fusion_bench.benchmark.request import prepare
from fusion_bench.benchmark.results import read_rows
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.errors import BenchError
from fusion_bench.registry import get_method


def _bench(cli, capsys, tmp_path, *extra):
    return cli(capsys, "bench", "--dataset", "synthetic-ivif", "--out", tmp_path / "runs", "--leaderboard-dir",
               tmp_path / "lb", "--no-progress", *extra)


def test_valid_keys_are_the_preset_the_constructor_and_the_runner_train_keys():
    cls = get_method("fusion_cnn")
    keys = valid_keys(cls, {"model": {"width": 16}, "optim": {"lr": 0.1}, "train": {"max_steps": 3}})
    assert {"width", "depth", "w_grad", "lr", "weight_decay"} <= set(keys["model"]) == set(keys["optim"])
    assert "modalities" not in keys["model"]  # the runner passes it
    assert set(TRAIN_KEYS) <= set(keys["train"])
    swin = valid_keys(get_method("swinfusion"), {"model": {}, "optim": {}, "train": {}})
    assert {"ema_decay", "embed_dim", "lr", "weight_decay"} <= set(swin["model"]), "**kwargs followed to the base"


def test_nested_keys_and_errors():
    config = {"model": {}, "optim": {}, "train": {"early_stopping": {"monitor": "val/loss", "patience": 10}}}
    out = apply_overrides(config, {"train.early_stopping.patience": 3}, "m", None)
    assert out["train"]["early_stopping"] == {"monitor": "val/loss", "patience": 3}
    assert config["train"]["early_stopping"]["patience"] == 10, "the preset itself is not modified"
    with pytest.raises(BenchError, match="SECTION.KEY"):
        apply_overrides(config, {"alpha": 1}, "m", None)
    with pytest.raises(BenchError, match="not a mapping"):
        apply_overrides({"model": {"width": 3}}, {"model.width.x": 1}, "m", None)


@pytest.mark.parametrize("argv, needle", [
    (("--set", "model.widht=8"), "unknown key 'widht' in section model; valid model keys: depth, lr, w_grad"),
    (("--set", "train.max_step=8"), "valid train keys: accumulate_grad_batches, augment, batch_size"),
    (("--set", "model.width=-3"), "--set model.width=-3: expected an integer in 1..1048576"),
    (("--set", "model.width=1.5"), "--set model.width=1.5: expected an integer, got a decimal number"),
    (("--set", "train.max_steps=abc"), "--set train.max_steps=abc: expected an integer, got a string"),
    (("--set", "train.strategy=dpp"), "train.strategy 'dpp': expected one of auto, ddp, ddp_spawn, fsdp"),
    (("--set", "train.devices=0"), "train.devices 0"),
    (("--set", "train.precision=17"), "train.precision 17: expected one of 32-true, bf16-mixed"),
    (("--set", "train.channels_last=1"), "--set train.channels_last=1: expected true or false, got an integer"),
    (("--set", "train.compile=fast"), "--set train.compile=fast: expected true or false or a mapping or null"),
])
def test_bad_overrides_are_request_errors(cli, capsys, tmp_path, argv, needle):
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "fusion_cnn", *argv)
    assert code == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_config_file_then_set_reach_the_run_the_hash_and_the_row(cli, capsys, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("model: {width: 8}\noptim: {lr: 0.01}\ntrain: {max_steps: 2, batch_size: 4}\n")
    code, out, err = _bench(cli, capsys, tmp_path, "--method", "fusion_cnn", "--config", config,
                            "--set", "optim.lr=1e-2", "train.max_steps=3", "--downstream", "none")
    assert code == 0, err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert json.loads(row["overrides"]) == {"model.width": 8, "optim.lr": 0.01, "train.max_steps": 3,
                                            "train.batch_size": 4}
    assert "fusion_cnn [" in out and "train.max_steps=3" in out, "the leaderboard names the overrides"
    plain = prepare(BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", downstream="none"))
    same = prepare(BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", downstream="none", config=config,
                             overrides={"optim.lr": 0.01, "train.max_steps": 3}, out=tmp_path / "runs"))
    assert same.config_hash == row["config_hash"] != plain.config_hash
    assert same.config["model"]["width"] == 8 and same.config["model"]["depth"] == plain.config["model"]["depth"]
    run_dir = same.run_dir(0)
    weights = torch.load(run_dir / "model.pt", weights_only=True)
    assert weights["state_dict"]["net.features.0.weight"].shape[0] == 8, "built with the overridden width"
    assert same.config["train"]["max_steps"] == 3 and same.config["train"]["batch_size"] == 4
    # a value equal to the preset's is still an override (recorded, own hash); none at all keeps the old hash
    echo = prepare(BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", downstream="none",
                             overrides={"model.width": plain.config["model"]["width"]}))
    assert echo.config == plain.config and echo.config_hash != plain.config_hash


def test_bad_config_files(cli, capsys, tmp_path):
    for text, needle in (("model: [1, 2]\n", "section 'model' must be a mapping"),
                         ("modle: {width: 8}\n", "expected a mapping with the sections model, optim, train"),
                         ("model: {width: [\n", "not valid YAML")):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        code, _, err = _bench(cli, capsys, tmp_path, "--method", "fusion_cnn", "--config", path)
        assert code == 2 and needle in err and str(path) in err, err
    code, _, err = _bench(cli, capsys, tmp_path, "--method", "fusion_cnn", "--config", tmp_path / "none.yaml")
    assert code == 2 and "no such file" in err


def test_train_overrides_of_a_training_free_method_change_nothing():
    plain = prepare(BenchSpec(method="mean", dataset="synthetic-ivif", downstream="none"))
    spec = BenchSpec(method="mean", dataset="synthetic-ivif", downstream="none", overrides={"train.max_steps": 3})
    assert prepare(spec).config_hash == plain.config_hash


def test_profile_train_and_fuse_take_overrides(cli, capsys, tmp_path):
    code, out, err = cli(capsys, "profile", "--method", "fusion_cnn", "--height", "32", "--width", "32",
                         "--set", "model.width=4", "model.depth=2")
    assert code == 0, err
    small = json.loads(out)
    assert small["overrides"] == {"model.width": 4, "model.depth": 2}
    code, out, err = cli(capsys, "profile", "--method", "fusion_cnn", "--height", "32", "--width", "32")
    assert json.loads(out)["params_m"] > small["params_m"]
    weights = tmp_path / "w.pt"
    overrides = ("--set", "model.width=4", "train.max_steps=1")
    code, _, err = cli(capsys, "train", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--out", weights,
                       "--no-progress", *overrides)
    assert code == 0 and weights.is_file(), err
    code, _, err = cli(capsys, "fuse", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--weights", weights,
                       "--out", tmp_path / "fused", "--no-progress")
    assert code == 2 and "differing: width" in err, "weights made with other settings are refused"
    code, _, err = cli(capsys, "fuse", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--weights", weights,
                       "--out", tmp_path / "fused", "--no-progress", *overrides)
    assert code == 0 and len(list((tmp_path / "fused").glob("*.png"))) == 16, err
