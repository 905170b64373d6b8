"""`--logger wandb`: training curves, the result row, the downstream curves and fused samples in one run.

wandb is an optional extra and is not installed for the tests: a stand-in module records what the run receives
(the real package is used when installed; Lightning's WandbLogger is the real one either way).
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pandas as pd
import pytest

from fusion_bench.benchmark.results import read_rows
from fusion_bench.benchmark.wandb_log import curves, log_results


class FakeRun:
    def __init__(self, **init):
        self.init, self.logged, self.summary, self.finished = init, [], {}, False
        self.config = types.SimpleNamespace(values={}, update=lambda d, allow_val_change=False: self.config.values
                                            .update(d))
        self.name, self.id = init.get("name"), "fake-id"

    def log(self, data):
        self.logged.append(data)

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    runs: list[FakeRun] = []
    module = types.ModuleType("wandb")
    module.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
    module.run = None
    module.init = lambda **kw: runs.append(FakeRun(**kw)) or runs[-1]
    module.Table = lambda dataframe=None, **kw: ("table", dataframe)
    module.Image = lambda path, caption=None: ("image", path, caption)
    sdk, lib, wandb_run = (types.ModuleType(n) for n in ("wandb.sdk", "wandb.sdk.lib", "wandb.wandb_run"))
    lib.RunDisabled = type("RunDisabled", (), {})
    wandb_run.Run = FakeRun
    for name, mod in (("wandb", module), ("wandb.sdk", sdk), ("wandb.sdk.lib", lib), ("wandb.wandb_run", wandb_run)):
        monkeypatch.setitem(sys.modules, name, mod)
    import lightning.pytorch.loggers.wandb as lightning_wandb

    monkeypatch.setattr(lightning_wandb, "_WANDB_AVAILABLE", True)  # the stand-in has no package metadata
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return runs


def test_one_wandb_run_per_seed_gets_training_row_and_samples(cli, capsys, tmp_path, fake_wandb, monkeypatch):
    code, _, err = cli(capsys, "bench", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--logger", "wandb",
                       "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb", "--no-progress",
                       "--downstream", "none", "--set", "train.max_steps=2", "train.log_every_n_steps=1")
    assert code == 0, err
    import os

    assert os.environ["WANDB_MODE"] == "offline", "offline unless the user says otherwise"
    (run,) = fake_wandb
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert run.init["name"] == "fusion_cnn-synthetic-ivif-smoke-seed0" and run.finished
    assert run.init["group"] == f"fusion_cnn/synthetic-ivif/smoke/{row['config_hash']}"
    assert any("train/loss" in entry and "trainer/global_step" in entry for entry in run.logged), "training curves"
    assert run.summary["config_hash"] == row["config_hash"] and run.summary["EN"] == pytest.approx(float(row["EN"]))
    results = [entry for entry in run.logged if "result/row" in entry]
    assert len(results) == 1 and results[0]["result/row"][1]["method"].tolist() == ["fusion_cnn"]
    samples = results[0]["fused/samples"]
    assert len(samples) == 4 and all(s[0] == "image" and s[1].endswith(".png") for s in samples)


def test_downstream_curves_go_to_the_run(tmp_path, fake_wandb):
    run_dir = tmp_path / "seed0"
    (run_dir / "downstream" / "seg").mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "val_miou": [0.1, 0.2]}).to_csv(run_dir / "downstream" / "seg" /
                                                                   "seg_train_log.csv", index=False)
    (run_dir / "downstream" / "det" / "train").mkdir(parents=True)
    (run_dir / "downstream" / "det" / "train" / "results.csv").write_text("  epoch,  metrics/mAP50(B)\n1,0.3\n")
    found = curves(run_dir)
    assert set(found) == {"seg", "det"} and list(found["det"].columns) == ["epoch", "metrics/mAP50(B)"]
    run = FakeRun()
    log_results(run, {"method": "m", "EN": float("nan"), "_timings": {}}, run_dir)
    (entry,) = run.logged
    assert set(entry) == {"result/row", "downstream/seg_curve", "downstream/det_curve"}
    assert run.summary == {"method": "m", "EN": None}, "NaN becomes an empty summary value; private keys stay out"
