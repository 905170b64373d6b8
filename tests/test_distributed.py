"""Training on several devices: the Trainer settings, which process writes, DDP on CPU through the CLI, compile."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

from fusion_bench.benchmark.distributed import is_rank_zero, launched_rank, trainer_settings
from fusion_bench.benchmark.results import read_rows
from fusion_bench.errors import DistributedSettingsError
from fusion_bench.registry import get_method

REPO = Path(__file__).resolve().parents[1]


def test_device_cuda_n_trains_on_gpu_n_and_devices_strategy_nodes_reach_the_trainer():
    fusion = get_method("fusion_cnn")
    cuda2 = torch.device("cuda", 2)  # trainer_settings only maps the request; nothing touches a GPU here
    assert trainer_settings({}, cuda2, fusion)["devices"] == [2]
    assert trainer_settings({"devices": 1}, cuda2, fusion)["devices"] == [2]
    plain = trainer_settings({}, torch.device("cpu"), fusion)
    assert plain == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
    many = trainer_settings({"devices": 4, "num_nodes": 2}, torch.device("cuda"), fusion)
    assert many["devices"] == 4 and many["num_nodes"] == 2 and isinstance(many["strategy"], DDPStrategy)
    assert many["strategy"]._ddp_kwargs.get("find_unused_parameters") is False
    spawn = trainer_settings({"devices": 2, "strategy": "ddp_spawn"}, torch.device("cpu"), fusion)["strategy"]
    assert spawn._start_method == "spawn"
    with pytest.raises(DistributedSettingsError, match="picks one GPU"):
        trainer_settings({"devices": 2}, cuda2, fusion)
    with pytest.raises(DistributedSettingsError, match="fsdp needs CUDA"):
        trainer_settings({"strategy": "fsdp"}, torch.device("cpu"), fusion)
    with pytest.raises(DistributedSettingsError, match="train.devices"):
        trainer_settings({"devices": [1, "x"]}, torch.device("cpu"), fusion)


def test_ssvif_stage_one_needs_find_unused_parameters():
    ssvif = get_method("ssvif")
    strategy = trainer_settings({"devices": 2, "strategy": "ddp"}, torch.device("cpu"), ssvif)["strategy"]
    assert strategy._ddp_kwargs.get("find_unused_parameters") is True
    forced = trainer_settings({"devices": 2, "find_unused_parameters": True}, torch.device("cpu"),
                              get_method("fusion_cnn"))["strategy"]
    assert forced._ddp_kwargs.get("find_unused_parameters") is True


@pytest.mark.parametrize("env, rank", [
    ({}, 0), ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, 0), ({"LOCAL_RANK": "1"}, 1), ({"NODE_RANK": "1"}, 1),
    ({"RANK": "3"}, 3), ({"SLURM_PROCID": "2", "SLURM_NTASKS": "4"}, 2),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, 0),
])
def test_which_process_writes(monkeypatch, env, rank):
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert launched_rank() == rank and is_rank_zero() == (rank == 0)


def test_ddp_on_two_cpu_processes_writes_one_row(tmp_path, synthetic_cache):
    """`strategy=ddp, devices=2` on CPU (gloo): Lightning re-runs the command for rank 1; both train, rank 0 fuses,
    scores and writes the only row."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "NODE_RANK", "RANK", "WORLD_SIZE")}
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
                "FUSION_BENCH_CACHE": str(synthetic_cache)})
    command = [sys.executable, "-m", "fusion_bench", "bench", "--method", "fusion_cnn", "--dataset", "synthetic-ivif",
               "--device", "cpu", "--downstream", "none", "--no-progress", "--no-report",
               "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"),
               "--set", "train.strategy=ddp", "train.devices=2", "train.max_steps=2", "train.limit_val_batches=0"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert '"train.strategy":"ddp"' in row["overrides"] and float(row["train_s"]) > 0
    seed_dirs = [p for p in (tmp_path / "runs").rglob("seed0*") if p.is_dir()]
    assert [p.name for p in seed_dirs] == ["seed0"], "one complete run directory, no leftover partial"
    assert done.stdout.count("fusion_cnn on synthetic-ivif (smoke): 1 row(s)") == 1, "only rank 0 reports"


def test_compile_runs_the_method_networks_compiled(tmp_path):
    from fusion_bench.benchmark.build import build_datamodule, build_method
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.benchmark.spec import BenchSpec
    from fusion_bench.benchmark.training import fit_method

    prep = prepare(BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", downstream="none", progress=False,
                             out=tmp_path, overrides={"train.compile": {"backend": "eager"}, "train.max_steps": 1,
                                                      "train.limit_val_batches": 0}))
    datamodule = build_datamodule(prep, 0)
    model, _ = fit_method(prep, build_method(prep, datamodule), datamodule, tmp_path / "run")
    assert model.net._compiled_call_impl is not None, "the network runs through torch.compile"
    assert set(torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]) == \
        set(build_method(prep, datamodule).state_dict()), "compiling in place keeps the weights' names"


def test_device_flags_are_train_overrides():
    from fusion_bench.cli import build_parser

    args = build_parser().parse_args(["bench", "--method", "m", "--dataset", "d", "--devices", "[0,2]", "--strategy",
                                      "ddp", "--num-nodes", "2", "--set", "optim.lr=1e-4"])
    assert dict(args.overrides) == {"train.devices": [0, 2], "train.strategy": "ddp", "train.num_nodes": 2,
                                    "optim.lr": 1e-4}
