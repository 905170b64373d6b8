"""SeAFusion's semantic-aware training: OHEM CE, the round schedule, the phases inside one Lightning fit, the CLI."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import pytest
import torch

from fusion_bench.base.method import load_method_config
from fusion_bench.benchmark.results import read_rows
from fusion_bench.cli import main
from fusion_bench.methods.seafusion.loss import SemanticLoss, ohem_cross_entropy
from fusion_bench.methods.seafusion.model import SeAFusionNet
from fusion_bench.methods.seafusion.module import SeAFusion, poly_warmup_lr
from fusion_bench.methods.seafusion.schedule import FUSION, SEGMENTATION, Phase, RoundSchedule
from fusion_bench.methods.seafusion.transforms import as_saved_images, augment_for_segmentation
from fusion_bench.registry import get_datamodule
from fusion_bench.weights.zoo import WeightsError

pytest.importorskip("transformers")

TINY_SEGFORMER = {"variant": "b0", "hidden_sizes": [8, 16, 32, 32], "num_attention_heads": [1, 2, 4, 4],
                  "decoder_hidden_size": 16, "drop_path_rate": 0.0}


def tiny_module(**overrides) -> SeAFusion:
    kwargs = {"num_classes": 9, "channels": (2, 4, 6), "rounds": 3, "fusion_steps": 2, "seg_steps": 2,
              "seg_warmup_steps": 1, "segformer": TINY_SEGFORMER, "aux_channels": 8, "lr": 3e-3, **overrides}
    return SeAFusion(**kwargs)


# ---------------------------------------------------------------- OHEM cross-entropy


def _logits_with_losses(losses: list[float]) -> torch.Tensor:
    """1 x 2 x 1 x N logits whose CE against label 0 is `losses` (CE of [0, z] at class 0 = log(1 + e^z))."""
    z = torch.tensor([math.log(math.expm1(v)) for v in losses])
    return torch.stack([torch.zeros_like(z), z]).view(1, 2, 1, -1)


def _authors_ohem(logits: torch.Tensor, labels: torch.Tensor, thresh: float, n_min: int) -> torch.Tensor:
    """The authors' OhemCELoss.forward, on the CPU (their __init__ moves the threshold to CUDA)."""
    threshold = -torch.log(torch.tensor(thresh, dtype=torch.float))
    loss = torch.nn.CrossEntropyLoss(ignore_index=255, reduction="none")(logits, labels).view(-1)
    loss, _ = torch.sort(loss, descending=True)
    loss = loss[loss > threshold] if loss[n_min] > threshold else loss[:n_min]
    return torch.mean(loss)


def test_ohem_keeps_hard_pixels_above_the_threshold_or_the_n_min_hardest():
    thr = -math.log(0.7)  # 0.3567
    # 8 pixels, n_min = 8 // 4 = 2: the 3rd largest loss (index 2) decides
    hard = [2.0, 1.5, 1.0, 0.5, 0.1, 0.05, 0.02, 0.01]  # loss[2] = 1.0 > thr: mean of the 4 losses above thr
    labels = torch.zeros(1, 1, 8, dtype=torch.long)
    got = ohem_cross_entropy(_logits_with_losses(hard), labels, 0.7, 0.25)
    assert got.item() == pytest.approx((2.0 + 1.5 + 1.0 + 0.5) / 4, rel=1e-5)
    easy = [0.9, 0.3, 0.2, 0.1, 0.1, 0.05, 0.02, 0.01]  # loss[2] = 0.2 < thr: mean of the 2 largest
    got = ohem_cross_entropy(_logits_with_losses(easy), labels, 0.7, 0.25)
    assert got.item() == pytest.approx((0.9 + 0.3) / 2, rel=1e-5)
    assert 0.3 < thr < 0.5
    # ignored pixels rank as zero losses: with 7 of 8 ignored the 2 kept are the one real loss and a zero
    ignored = labels.clone()
    ignored[..., 1:] = 255
    got = ohem_cross_entropy(_logits_with_losses(easy), ignored, 0.7, 0.25)
    assert got.item() == pytest.approx(0.9 / 2, rel=1e-5)
    # against a port of the authors' class on random inputs (n_min = 1/16 of the pixels, as theirs)
    g = torch.Generator().manual_seed(0)
    for scale in (0.5, 4.0):  # mostly easy / mostly hard pixels: both branches
        logits = scale * torch.randn(2, 5, 12, 16, generator=g)
        target = torch.randint(0, 5, (2, 12, 16), generator=g)
        target[0, :3] = 255
        want = _authors_ohem(logits, target, 0.7, 2 * 12 * 16 // 16)
        assert ohem_cross_entropy(logits, target).item() == pytest.approx(want.item(), rel=1e-6)
    # n_min >= the pixel count keeps every pixel
    assert ohem_cross_entropy(_logits_with_losses(easy), labels, 0.7, 1.0).item() == pytest.approx(
        sum(easy) / 8, rel=1e-5)
    with pytest.raises(ValueError, match="thresh"):
        ohem_cross_entropy(_logits_with_losses(easy), labels, 1.5)


def test_semantic_loss_weights_the_auxiliary_term():
    g = torch.Generator().manual_seed(1)
    main, aux = torch.randn(1, 3, 8, 8, generator=g), torch.randn(1, 3, 8, 8, generator=g)
    labels = torch.randint(0, 3, (1, 8, 8), generator=g)
    out = SemanticLoss(aux_weight=0.1)(main, aux, labels)
    assert out["loss"].item() == pytest.approx(out["loss_main"].item() + 0.1 * out["loss_aux"].item(), rel=1e-6)
    assert out["loss_main"].item() == pytest.approx(ohem_cross_entropy(main, labels).item())


# ---------------------------------------------------------------- schedule and learning rates


def test_round_schedule_matches_the_authors_loop():
    s = RoundSchedule(rounds=4, fusion_steps=3, seg_steps=5)
    kinds = [(p.round, p.kind, p.start, p.steps) for p in s.phases]
    assert kinds == [(0, FUSION, 0, 3), (0, SEGMENTATION, 3, 5), (1, FUSION, 8, 3), (1, SEGMENTATION, 11, 5),
                     (2, FUSION, 16, 3), (2, SEGMENTATION, 19, 5), (3, FUSION, 24, 3)]
    assert s.total_steps == 27 and s.seg_max_iter == 20
    assert [s.phase_at(i).kind for i in (0, 2, 3, 7, 8, 26)] == [FUSION, FUSION, SEGMENTATION, SEGMENTATION,
                                                                  FUSION, FUSION]
    assert [s.phase_at(i).semantic_weight for i in (0, 8, 16, 24, 5)] == [0.0, 1.0, 2.0, 3.0, 0.0]
    with pytest.raises(IndexError):
        s.phase_at(27)
    full = RoundSchedule(4, 3, 5, seg_after_last_round=True)
    assert full.total_steps == 32 and full.phase_at(31) == Phase(3, SEGMENTATION, 27, 5)
    with pytest.raises(ValueError, match="seg_steps"):
        RoundSchedule(2, 3, 0)
    with pytest.raises(ValueError, match="rounds"):
        RoundSchedule(0, 3, 5)


def test_learning_rates_follow_the_authors_optimisers():
    # the authors' Optimizer: warmup_start_lr * factor ** it, factor = (lr0 / warmup_start_lr) ** (1 / warmup)
    factor = (1e-2 / 1e-5) ** (1 / 1000)
    for it in (0, 1, 500, 1000):
        assert poly_warmup_lr(it, 1e-2, 80000, 1000, 1e-5, 0.9) == pytest.approx(1e-5 * factor**it, rel=1e-9)
    for it in (1001, 20000, 79999):
        want = 1e-2 * (1 - (it - 1000) / (80000 - 1000)) ** 0.9
        assert poly_warmup_lr(it, 1e-2, 80000, 1000, 1e-5, 0.9) == pytest.approx(want, rel=1e-12)
    module = tiny_module(lr=2e-3, lr_decay=0.5)
    module.start_schedule(epoch_steps=4)
    assert [module.fusion_lr(i) for i in (0, 3, 4, 9)] == pytest.approx([2e-3, 2e-3, 1e-3, 5e-4])
    module = tiny_module(fusion_steps=None, fusion_epochs=3)
    assert module.start_schedule(epoch_steps=5).fusion_steps == 15


def test_paper_preset_is_the_authors_train_py():
    config = load_method_config(SeAFusion, "seafusion", "paper", "msrs")
    assert config["train"] == {"max_epochs": -1, "batch_size": 16}  # whole images, the schedule ends the fit
    assert config["model"]["segformer"] == {"variant": "b0", "pretrained": "zoo:mit_b0"}  # ImageNet encoder
    with pytest.raises(WeightsError, match=r"mit_b0\.pth not found.*--set model\.segformer\.pretrained=null"):
        SeAFusion(num_classes=9, **config["model"], **config["optim"])  # tests never download (conftest)
    model = {**config["model"], "segformer": {"variant": "b0", "pretrained": None}}
    module = SeAFusion(num_classes=9, **model, **config["optim"])
    assert (module.rounds, module.fusion_epochs, module.seg_steps, module.seg_after_last_round) == (4, 10, 20000,
                                                                                                    False)
    for epoch in range(10):  # train_fusion: 1e-3 * 0.75 ** (epoch - 1), restarted every round
        assert module.lr * module.lr_decay**epoch == pytest.approx(1e-3 * 0.75 ** (epoch - 1))
    assert (module.fusion_semantic.aux_weight, module.seg_criterion.aux_weight) == (0.1, 0.75)
    assert (module.seg_criterion.thresh, module.seg_criterion.min_kept_fraction) == (0.7, 1 / 16)
    assert 8 * 640 * 480 // 8 == 16 * 640 * 480 // 16 == int(16 * 480 * 640 * module.seg_criterion.min_kept_fraction)
    assert (module.seg_lr, module.seg_momentum, module.seg_weight_decay, module.seg_head_lr_mult) == (
        1e-2, 0.9, 5e-4, 10.0)
    assert (module.seg_warmup_steps, module.seg_warmup_start_lr, module.seg_power) == (1000, 1e-5, 0.9)
    schedule = module.make_schedule(epoch_steps=68)  # MSRS: 1,083 training pairs in batches of 16
    assert schedule.fusion_steps == 680 and schedule.seg_max_iter == 80000
    assert schedule.total_steps == 4 * 680 + 3 * 20000
    assert sum(p.numel() for p in module.parameters()) == 166_657  # the segmenter exists only while fitting


def test_segmenter_param_groups_split_decay_and_head_learning_rate():
    module = tiny_module()
    groups = module.segmenter_param_groups()
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len(list(module.segmenter.parameters())) == len({id(p) for p in params})
    heads = {id(p) for m in module.segmenter.head_modules() for p in m.parameters()}
    for g in groups:
        in_head = {id(p) in heads for p in g["params"]}
        assert len(in_head) == 1 and g["lr_mult"] == (10.0 if in_head.pop() else 1.0)
        if g.get("weight_decay") == 0.0:
            assert all(p.ndim == 1 for p in g["params"])  # biases and norm parameters


# ---------------------------------------------------------------- phases: re-initialisation and freezing


def test_phase_start_reinitialises_the_fusion_network_and_freezes_the_segmenter():
    torch.manual_seed(0)
    module = tiny_module()
    module.setup("fit")
    module.configure_optimizers()
    schedule = module.start_schedule(epoch_steps=8)
    fusion0, seg0, fusion1 = schedule.phases[:3]
    module.start_phase(fusion0)
    assert module.net.training and all(p.requires_grad for p in module.net.parameters())
    assert not module.segmenter.training and not any(p.requires_grad for p in module.segmenter.parameters())
    # one fusion step with a semantic term: gradients reach the fusion network only
    g = torch.Generator().manual_seed(2)
    batch = {"ir": torch.rand(2, 1, 32, 32, generator=g), "vis": torch.rand(2, 3, 32, 32, generator=g),
             "mask": torch.randint(0, 6, (2, 32, 32), generator=g)}
    losses = module.fusion_losses(batch, weight=2.0)
    assert losses["loss"].item() == pytest.approx(losses["loss_content"].item() + 2 * losses["loss_semantic"].item(),
                                                  rel=1e-6)
    assert "loss_semantic" not in module.fusion_losses(batch, weight=0.0)
    losses["loss"].backward()
    assert all(p.grad is not None for p in module.net.parameters())
    assert all(p.grad is None for p in module.segmenter.parameters())
    module.fusion_optimizer.step()
    assert module.fusion_optimizer.state
    # segmentation phase: the segmenter trains, the fusion network is frozen
    module.seg_optimizer.state[next(module.segmenter.parameters())] = {"momentum_buffer": torch.zeros(1)}
    module.start_phase(seg0)
    assert not module.seg_optimizer.state
    assert module.segmenter.training and all(p.requires_grad for p in module.segmenter.parameters())
    assert not module.net.training and not any(p.requires_grad for p in module.net.parameters())
    seg_losses = module.segmentation_losses(batch)
    seg_losses["loss"].backward()
    assert all(p.grad is not None for p in module.segmenter.parameters() if p.requires_grad)
    # round 1: a fresh fusion network (what SeAFusionNet gives from the same RNG state) and a fresh Adam
    trained = {k: v.clone() for k, v in module.net.state_dict().items()}
    torch.manual_seed(5)
    module.start_phase(fusion1)
    torch.manual_seed(5)
    fresh = SeAFusionNet(channels=(2, 4, 6)).state_dict()
    for key, value in module.net.state_dict().items():
        assert torch.equal(value, fresh[key]), key
    assert any(not torch.equal(trained[k], fresh[k]) for k in fresh)
    assert not module.fusion_optimizer.state
    assert not module.segmenter.training and not any(p.requires_grad for p in module.segmenter.parameters())


class _Recorder(L.Callback):
    """Per training step: (round, kind, semantic weight, fusion-network checksum, segmenter checksum) after it."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, str, float, float, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.phase is None or outputs is None:
            return
        net = sum(float(p.detach().double().abs().sum()) for p in module.net.parameters())
        seg = sum(float(p.detach().double().abs().sum()) for p in module.segmenter.parameters())
        self.steps.append((module.phase.round, module.phase.kind, module.phase.semantic_weight, net, seg))


def test_one_fit_runs_every_phase_in_order(tmp_path: Path):
    root = get_datamodule("msrs").dataset_class.make_fake(tmp_path / "msrs", seed=0)
    datamodule = get_datamodule("msrs")(root=root, batch_size=2, crop_size=32, seed=0)
    torch.manual_seed(0)
    module = tiny_module()
    recorder = _Recorder()
    trainer = L.Trainer(accelerator="cpu", max_epochs=-1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[recorder], deterministic=True)
    trainer.fit(module, datamodule=datamodule)
    phases = [(r, k, w) for r, k, w, _, _ in recorder.steps]
    assert phases == [(0, FUSION, 0.0)] * 2 + [(0, SEGMENTATION, 0.0)] * 2 + [(1, FUSION, 1.0)] * 2 + \
        [(1, SEGMENTATION, 0.0)] * 2 + [(2, FUSION, 2.0)] * 2
    assert trainer.global_step == 10 and module.step_index == 10
    for (_, _, _, net0, seg0), (r1, k1, _, net1, seg1) in zip(recorder.steps, recorder.steps[1:]):
        if k1 == FUSION:
            assert seg1 == seg0, (r1, k1)  # the segmenter is frozen while the fusion network trains
            assert net1 != net0
        else:
            assert net1 == net0, (r1, k1)  # the fusion network is frozen while the segmenter trains
            assert seg1 != seg0
    # fit ends with the fusion network alone: parameters and weights are the fusion network's
    assert module.segmenter is None
    assert sum(p.numel() for p in module.parameters()) == sum(p.numel() for p in module.net.parameters())
    # a trainer that would stop before the schedule ends is refused before training
    short = L.Trainer(accelerator="cpu", max_steps=5, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    with pytest.raises(ValueError, match="needs 10 training steps"):
        short.fit(tiny_module(), datamodule=datamodule)


# ---------------------------------------------------------------- segmentation-phase inputs


def test_segmentation_inputs_as_the_authors_saved_and_augmented_them():
    fused = torch.tensor([0.2, 0.4, 0.6]).view(1, 1, 1, 3).expand(2, 3, 2, 3).clone()
    saved = as_saved_images(fused)
    assert torch.equal(saved[0, 0, 0], torch.tensor([0.0, 127 / 255, 1.0]))  # min-max over the batch, floor(255x)
    g = torch.Generator().manual_seed(0)
    images, masks = torch.rand(3, 3, 20, 24, generator=g), torch.randint(0, 4, (3, 20, 24), generator=g)
    masks[:, :2] = 255
    same, same_masks = augment_for_segmentation(images, masks, jitter=0.0, scales=(1.0,), flip=False)
    assert torch.allclose(same, images, atol=1e-6) and torch.equal(same_masks, masks)
    torch.manual_seed(3)
    out, out_masks = augment_for_segmentation(images, masks)
    assert out.shape == images.shape and out_masks.shape == masks.shape and out_masks.dtype == torch.long
    assert set(out_masks.unique().tolist()) <= set(masks.unique().tolist())
    assert 0 <= out.min() and out.max() <= 1 and not torch.allclose(out, images)
    torch.manual_seed(3)
    again, again_masks = augment_for_segmentation(images, masks)
    assert torch.equal(again, out) and torch.equal(again_masks, out_masks)


# ---------------------------------------------------------------- CLI


def test_bench_on_a_fake_msrs_copy_trains_every_round(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = get_datamodule("msrs").dataset_class.make_fake(tmp_path / "msrs", seed=0)
    argv = ["bench", "--method", "seafusion", "--dataset", "msrs", "--root", str(root), "--device", "cpu",
            "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    (row,) = read_rows(tmp_path / "lb" / "raw" / "msrs.csv")
    assert row["method"] == "seafusion" and row["preset"] == "smoke" and math.isfinite(float(row["Qabf"]))
    net = SeAFusionNet(channels=(4, 8, 12))
    assert float(row["params_m"]) == pytest.approx(sum(p.numel() for p in net.parameters()) / 1e6, abs=1e-6)
    (log,) = (tmp_path / "runs").rglob("logs/metrics.csv")
    steps = list(csv.DictReader(log.open()))
    assert [(float(s["train/round"]), float(s["train/phase"]), float(s["train/semantic_weight"])) for s in steps] == (
        [(0, 0, 0)] * 2 + [(0, 1, 0)] * 2 + [(1, 0, 1)] * 2 + [(1, 1, 0)] * 2 + [(2, 0, 2)] * 2 + [(2, 1, 0)] * 2
        + [(3, 0, 3)] * 2)
    assert all(math.isnan(float(s["train/loss_semantic"])) for s in steps[:2])
    assert all(math.isfinite(float(s["train/loss_semantic"])) for s in steps if s["train/phase"] == "0.0"
               and s["train/round"] != "0.0")
    assert all(math.isfinite(float(s["train/seg_loss"])) for s in steps if s["train/phase"] == "1.0")


def test_datasets_without_class_labels_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture):
    root = get_datamodule("tno").dataset_class.make_fake(tmp_path / "tno", seed=0)
    argv = ["bench", "--method", "seafusion", "--dataset", "tno", "--root", str(root), "--device", "cpu",
            "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress"]
    assert main(argv) == 2
    assert "needs class labels; dataset 'tno'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert main([*argv[:4], "synthetic-mfif", *argv[7:]]) == 2
    assert "handles ivif" in capsys.readouterr().err
