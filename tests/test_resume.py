"""Lightning checkpoints of trained methods: `--resume` continues an interrupted seed; SwinFusion's EMA through
Lightning's WeightAveraging callback."""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from fusion_bench.benchmark.callbacks import CheckpointOnInterrupt
from fusion_bench.benchmark.request import prepare
from fusion_bench.benchmark.results import read_rows
from fusion_bench.benchmark.runner import run_bench
from fusion_bench.benchmark.spec import BenchSpec
from fusion_bench.methods.fusion_cnn.module import FusionCNNModule
from fusion_bench.methods.swinfusion.module import SwinFusion


def test_resume_continues_an_interrupted_seed_from_its_checkpoint(tmp_path, monkeypatch, cli, capsys):
    # 64 training images, batch 16: a checkpoint every epoch (4 steps); the run is killed in step 6 (no checkpoint
    # on the way out, as when the process is killed), so the last checkpoint is step 4's
    spec = BenchSpec(method="fusion_cnn", dataset="synthetic-ivif", downstream="none", progress=False,
                     out=tmp_path / "runs", leaderboard_dir=tmp_path / "lb", seeds=(0,),
                     overrides={"train.max_steps": 8, "train.batch_size": 16, "train.checkpoint_every_n_steps": 4,
                                "train.limit_val_batches": 0})
    steps: list[int] = []
    kill = {"at": 6}
    original = FusionCNNModule.training_step

    def training_step(self, batch, batch_idx):
        steps.append(self.global_step)
        if self.global_step == kill["at"]:
            raise RuntimeError("killed")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(FusionCNNModule, "training_step", training_step)
    monkeypatch.setattr(CheckpointOnInterrupt, "on_exception", lambda *args: None)
    with pytest.raises(RuntimeError, match="killed"):
        run_bench(spec)
    partial = prepare(spec).run_dir(0).with_name("seed0.partial")
    last = partial / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 4
    assert not (tmp_path / "lb" / "raw" / "synthetic-ivif.csv").exists()

    kill["at"] = -1
    steps.clear()
    (row,) = run_bench(replace(spec, resume=True))
    assert steps == list(range(4, 8)), "the resumed fit runs steps 4..7 only"
    assert len(list(run_dir_logs(prepare(spec).run_dir(0)))) == 2, "the interrupted fit's logs are kept"
    run_dir = prepare(spec).run_dir(0)
    assert not partial.exists() and not (run_dir / "checkpoints").exists(), "checkpoints dropped once complete"
    assert read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")[0]["timestamp"] == row["timestamp"]

    # --resume again: the seed is complete, nothing runs and no row is added twice
    steps.clear()
    (again,) = run_bench(replace(spec, resume=True))
    assert steps == [] and again["timestamp"] == row["timestamp"]
    assert len(read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")) == 1

    # without --resume an interrupted seed starts over: its partial folder is emptied
    kill["at"] = 6
    spec2 = replace(spec, out=tmp_path / "runs2")
    with pytest.raises(RuntimeError):
        run_bench(spec2)
    kill["at"] = -1
    steps.clear()
    run_bench(spec2)
    assert steps == list(range(8))


def run_dir_logs(run_dir):
    return [p for p in run_dir.iterdir() if p.name.startswith("logs")]


def _tiny_swinfusion(decay: float) -> SwinFusion:
    return SwinFusion(embed_dim=8, num_heads=2, window_size=4, extraction_depth=1, fusion_depths=[1],
                      reconstruction_depth=1, drop_path_rate=0.0, ema_decay=decay, lr=1e-2)


class _Record(L.Callback):
    """The network's parameters before training and after every optimizer step."""

    def __init__(self):
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module):
        self.weights.append({k: p.detach().clone() for k, p in pl_module.named_parameters()})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append({k: p.detach().clone() for k, p in pl_module.named_parameters()})


def _batches(n: int = 3):
    generator = torch.Generator().manual_seed(0)
    return [{"ir": torch.rand(1, 16, 16, generator=generator), "vis": torch.rand(3, 16, 16, generator=generator)}
            for _ in range(n)]


def _fit(model: SwinFusion, steps: int, ckpt_dir=None, ckpt_path=None) -> _Record:
    record = _Record()
    callbacks = [record]
    if ckpt_dir is not None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True, every_n_train_steps=1))
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=ckpt_dir is not None, callbacks=callbacks)
    trainer.fit(model, DataLoader(_batches(), batch_size=1, collate_fn=lambda b: {k: torch.stack([s[k] for s in b])
                                                                                  for k in b[0]}),
                ckpt_path=ckpt_path)
    return record


def _kair_ema(history: list[dict[str, torch.Tensor]], decay: float) -> dict[str, torch.Tensor]:
    """KAIR's update_E after every step, from the initial weights."""
    ema = {k: v.clone() for k, v in history[0].items()}
    for weights in history[1:]:
        for k in ema:
            ema[k].mul_(decay).add_(weights[k], alpha=1 - decay)
    return ema


def test_swinfusion_ema_is_lightning_weight_averaging_with_kairs_rule(tmp_path):
    torch.manual_seed(0)
    model = _tiny_swinfusion(decay=0.5)
    record = _fit(model, steps=3, ckpt_dir=tmp_path / "ckpt")
    assert len(record.weights) == 4
    expected = _kair_ema(record.weights, 0.5)
    trained = dict(model.named_parameters())
    for k, v in expected.items():  # the weights the runner saves (model.pt) after the fit are the average
        assert torch.equal(trained[k].detach(), v), k
    first = next(iter(expected))
    assert not torch.equal(expected[first], record.weights[-1][first]), "the average is not the last weights"
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert "current_model_state" in checkpoint and "averaging_state" in checkpoint, "checkpoints keep both"

    # a resumed fit continues the same average: 3 steps, then 2 more from the step-3 checkpoint
    torch.manual_seed(0)
    resumed = _tiny_swinfusion(decay=0.5)
    more = _fit(resumed, steps=5, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    expected = _kair_ema(record.weights[:4] + more.weights[1:], 0.5)
    for k, p in resumed.named_parameters():
        assert torch.allclose(p.detach(), expected[k], rtol=0, atol=1e-6), k


def test_no_ema_callback_without_decay():
    assert _tiny_swinfusion(0.0).configure_callbacks() == []


def test_train_resume_accepts_the_interrupted_log_folder(cli, capsys, tmp_path):
    weights = tmp_path / "w.pt"
    (tmp_path / "w" / "logs").mkdir(parents=True)  # what an interrupted `train --out w.pt` leaves
    args = ("train", "--method", "fusion_cnn", "--dataset", "synthetic-ivif", "--out", weights, "--no-progress",
            "--set", "train.max_steps=1")
    code, _, err = cli(capsys, *args)
    assert code == 2 and "is not empty" in err
    code, out, err = cli(capsys, *args, "--resume")
    assert code == 0 and weights.is_file(), err
    assert "no checkpoint" in err and not (tmp_path / "w" / "checkpoints").exists()
