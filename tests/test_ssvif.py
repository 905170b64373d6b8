"""SSVIF: losses (Eq. 3-6), GDWA (Eq. 7), stages, label-free training, presets and CLI benches."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from fusion_bench.base.colour import rgb_to_ycbcr
from fusion_bench.base.losses import sobel_magnitude
from fusion_bench.base.method import load_method_config
from fusion_bench.benchmark import config as run_config
from fusion_bench.benchmark.results import read_rows
from fusion_bench.benchmark.weight_files import load_weights
from fusion_bench.cli import main
from fusion_bench.methods.ssvif import backbones
from fusion_bench.methods.ssvif.loss import (
    SSVIFFusionLoss,
    colour_loss,
    csc_loss,
    dice_loss,
    hybrid_loss,
    pseudo_label,
    ssim,
)
from fusion_bench.methods.ssvif.model import SegmentationHead, to_three_channels
from fusion_bench.methods.ssvif.module import SSVIF
from fusion_bench.methods.ssvif.weighting import (
    LossPeriods,
    descent_softmax,
    dwa_csc_weight,
    gdwa_csc_weight,
    gdwa_weights,
)

TINY_SEGFORMER = {"variant": "b0", "hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 1, 1],
                  "num_attention_heads": [1, 1, 2, 4], "decoder_hidden_size": 16, "drop_path_rate": 0.0}


class TinyBackbone(nn.Module):
    """A two-conv stand-in with the backbone interface (features / decode / feature_channels)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 4):
        super().__init__()
        self.feature_channels = 2 * width
        self.encoder_ir = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.encoder_vis = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.LeakyReLU(0.2))
        self.decoder = nn.Conv2d(self.feature_channels, out_channels, 3, padding=1)

    def features(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.encoder_ir(x1), self.encoder_vis(x2)], dim=1)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(features))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(x1, x2))


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(backbones.BACKBONES, "tiny", "test_ssvif:TinyBackbone")
    return "tiny"


def make_module(tiny: str, **kwargs) -> SSVIF:
    options = {"backbone": tiny, "segformer": TINY_SEGFORMER, "head_channels": 4, "lr": 1e-3, **kwargs}
    return SSVIF(**options)


class LabelTrap(OrderedDict):
    """A sample / batch whose segmentation mask must not be read: any lookup of "mask" raises."""

    def _trap(self, key):
        if key == "mask":
            raise KeyError("SSVIF read the segmentation mask, which self-supervised training must never do")

    def __getitem__(self, key):
        self._trap(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._trap(key)
        return super().get(key, default)

    def pop(self, key, *default):
        self._trap(key)
        return super().pop(key, *default)


def trap_batch(b: int = 2, size: int = 32, seed: int = 0) -> LabelTrap:
    g = torch.Generator().manual_seed(seed)
    return LabelTrap(ir=torch.rand(b, 1, size, size, generator=g), vis=torch.rand(b, 3, size, size, generator=g),
                     mask=torch.zeros(b, size, size, dtype=torch.long), name=[f"{i}" for i in range(b)])


def collate_traps(samples: list[LabelTrap]) -> LabelTrap:
    """Stack tensors without ever looking up a key (items() only)."""
    columns: dict[str, list] = {}
    for sample in samples:
        for key, value in sample.items():
            columns.setdefault(key, []).append(value)
    return LabelTrap((k, torch.stack(v) if isinstance(v[0], torch.Tensor) else v) for k, v in columns.items())


class TrapDataset(torch.utils.data.Dataset):
    """Pairs with a mask on every sample; reading the mask raises (see LabelTrap)."""

    def __init__(self, n: int = 4, size: int = 32):
        self.samples = [trap_batch(1, size, seed=i) for i in range(n)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> LabelTrap:
        sample = self.samples[index]
        return LabelTrap((k, v[0]) for k, v in sample.items())


def trap_loader(n: int = 4, batch_size: int = 2, size: int = 32) -> DataLoader:
    return DataLoader(TrapDataset(n, size), batch_size=batch_size, shuffle=False, collate_fn=collate_traps)


def tiny_trainer(**kwargs) -> L.Trainer:
    options = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
               "enable_progress_bar": False, "enable_model_summary": False, "deterministic": True,
               "num_sanity_val_steps": 0, **kwargs}
    return L.Trainer(**options)


class StepRecorder(L.Callback):
    """Per training step: the stage, the batch type, and whether each part received gradients."""

    def __init__(self):
        self.steps: list[dict] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.steps.append({"batch_type": type(batch)})

    def on_before_optimizer_step(self, trainer, module, optimizer):
        def has_grad(part: nn.Module | None) -> bool:
            return part is not None and any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())

        self.steps[-1].update(stage=module.stage, fusion=has_grad(module.fusion), head=has_grad(module.seg_head),
                              segmenter=has_grad(module.segmenter))


# ---------------------------------------------------------------- inputs and fusion loss (Eq. 3)


def test_three_channel_inputs_and_fuse_keeps_size(tiny):
    ir = torch.rand(1, 1, 5, 7)
    assert torch.equal(to_three_channels(ir)[:, 2], ir[:, 0])
    with pytest.raises(ValueError, match="Bx1xHxW or Bx3xHxW"):
        to_three_channels(torch.rand(1, 2, 5, 7), "vis")
    module = make_module(tiny).eval()
    with torch.no_grad():
        fused = module.fuse(torch.rand(1, 1, 37, 53), torch.rand(1, 3, 37, 53))
        gray = module.fuse(torch.rand(1, 1, 37, 53), torch.rand(1, 1, 37, 53))
    assert fused.shape == gray.shape == (1, 3, 37, 53)
    assert 0 <= fused.min() and fused.max() <= 1
    assert module.fusion.encoder_ir[0].in_channels == 3 and module.fusion.decoder.out_channels == 3


def test_fusion_loss_terms_match_eq3():
    torch.manual_seed(0)
    f, ir, vis = torch.rand(2, 3, 24, 24), torch.rand(2, 1, 24, 24).expand(-1, 3, -1, -1), torch.rand(2, 3, 24, 24)
    out = SSVIFFusionLoss()(f, ir, vis)
    assert torch.allclose(out["loss_int"], (f - torch.maximum(ir, vis)).abs().mean())
    grad_target = torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis))
    assert torch.allclose(out["loss_grad"], (sobel_magnitude(f) - grad_target).abs().mean())
    assert torch.allclose(out["loss_ssim"], 1 - 0.5 * (ssim(f, ir) + ssim(f, vis)))
    chroma = (rgb_to_ycbcr(f)[:, 1:] - rgb_to_ycbcr(vis)[:, 1:]).abs()
    assert torch.allclose(out["loss_color"], 0.5 * (chroma[:, 0].mean() + chroma[:, 1].mean()))
    expected = 20 * out["loss_int"] + 20 * out["loss_grad"] + 10 * out["loss_ssim"] + 20 * out["loss_color"]
    assert torch.allclose(out["loss_fusion"], expected)
    assert SSVIFFusionLoss(1, 0, 0, 0)(torch.maximum(ir, vis), ir, vis)["loss_fusion"] == 0
    with pytest.raises(ValueError, match="three-channel"):
        SSVIFFusionLoss()(f[:, :1], ir, vis)


def test_ssim_and_colour_loss_basics():
    x = torch.rand(1, 3, 32, 32)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, 1 - x).item() < 0
    gray = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    assert colour_loss(x, x).item() == 0
    assert colour_loss(gray, x).item() > 0  # a gray fused image loses the visible chroma


# ---------------------------------------------------------------- cross-segmentation consistency (Eq. 4-6)


def test_pseudo_label_takes_the_more_confident_branch_per_pixel():
    # 3 classes, 1x1x3 pixels: A confident on pixel 0, B confident on pixel 1, equal confidence on pixel 2
    logits_a = torch.tensor([[5.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]).T.reshape(1, 3, 1, 3)
    logits_b = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 5.0], [0.0, 0.0, 2.0]]).T.reshape(1, 3, 1, 3)
    assert pseudo_label(logits_a, logits_b).tolist() == [[[0, 2, 2]]]  # tie -> B (A only when strictly higher)
    torch.manual_seed(1)
    a, b = torch.randn(2, 5, 6, 7), torch.randn(2, 5, 6, 7)
    conf_a, conf_b = a.softmax(1).amax(1), b.softmax(1).amax(1)
    expected = torch.where(conf_a > conf_b, a.argmax(1), b.argmax(1))
    assert torch.equal(pseudo_label(a, b), expected)
    with pytest.raises(ValueError, match="same shape"):
        pseudo_label(a, b[:, :4])


def test_hybrid_loss_matches_eq5():
    torch.manual_seed(2)
    logits, target = torch.randn(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6))
    p = logits.softmax(1)
    terms = []
    for c in range(4):
        t = (target == c).float()
        terms.append(2 * (p[:, c] * t).sum() / (p[:, c].sum() + t.sum() + 1e-5))
    dice = 1 - sum(terms) / 4
    ce = -torch.log(p.gather(1, target[:, None])).mean()
    out = hybrid_loss(logits, target)
    assert torch.allclose(out["dice"], dice) and torch.allclose(out["ce"], ce)
    assert torch.allclose(out["hyb"], ce + dice)
    perfect = 50.0 * F.one_hot(target, 4).permute(0, 3, 1, 2).float()
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-4)


def test_csc_loss_is_eq6_and_trains_both_branches():
    torch.manual_seed(3)
    a, b = torch.randn(2, 6, 8, 8, requires_grad=True), torch.randn(2, 6, 8, 8, requires_grad=True)
    out = csc_loss(a, b)
    target = pseudo_label(a, b)
    expected = 0.5 * (hybrid_loss(a, target)["hyb"] + hybrid_loss(b, target)["hyb"])
    assert torch.allclose(out["loss_csc"], expected)
    out["loss_csc"].backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    agree = csc_loss(a.detach(), a.detach())
    assert agree["agreement"] == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_csc_loss_is_float32_under_autocast_and_with_half_logits(dtype):
    """Mixed precision hands the loss half-precision logits: the loss is computed in float32 (the same number as
    the float32 reference with F.cross_entropy) and the gradient reaches the half-precision logits."""
    torch.manual_seed(5)
    a32, b32 = torch.randn(2, 5, 6, 7), torch.randn(2, 5, 6, 7)
    target = pseudo_label(a32.to(dtype), b32.to(dtype))
    reference = 0.5 * sum(F.cross_entropy(x.to(dtype).float(), target) + dice_loss(x.to(dtype).float(), target)
                          for x in (a32, b32))
    a, b = a32.to(dtype).requires_grad_(), b32.to(dtype).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        out = csc_loss(a, b)
    assert out["loss_csc"].dtype == torch.float32
    assert torch.allclose(out["loss_csc"], reference, rtol=1e-5)
    out["loss_csc"].backward()
    assert a.grad.dtype == dtype and torch.isfinite(a.grad.float()).all() and a.grad.abs().sum() > 0


def test_csc_loss_avoids_nll_loss():
    """Root cause of the CUDA failure under deterministic algorithms: F.cross_entropy on BxnxHxW logits runs
    NLLLoss's 2-D kernel, which has no deterministic CUDA implementation. The CSC loss (forward and backward)
    must not dispatch any nll_loss op."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.name())
            return func(*args, **(kwargs or {}))

    torch.manual_seed(6)
    a, b = torch.randn(2, 4, 5, 6, requires_grad=True), torch.randn(2, 4, 5, 6, requires_grad=True)
    with Ops() as ops:
        csc_loss(a, b)["loss_csc"].backward()
    assert any("log_softmax" in n for n in ops.names)  # the recorder sees the loss's ops
    assert not [n for n in ops.names if "nll_loss" in n], sorted(ops.names)
    probe = Ops()
    with probe:
        F.cross_entropy(torch.randn(2, 4, 5, 6), torch.zeros(2, 5, 6, dtype=torch.long))
    assert any("nll_loss2d" in n for n in probe.names)  # ... and would see the 2-D NLL kernel


def test_segmentation_head_layout():
    head = SegmentationHead(8, 15, hidden_channels=6)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (3, 3), (1, 1)] and convs[-1].out_channels == 15
    assert head(torch.rand(2, 8, 10, 12), size=(20, 24)).shape == (2, 15, 20, 24)


# ---------------------------------------------------------------- GDWA (Eq. 7)


def test_gdwa_weights_sum_to_one_and_follow_the_closed_form():
    for g_a, g_b, r_a, r_b in [(1.0, 1.0, 1.0, 1.0), (3.0, 0.5, 0.9, 1.1), (0.2, 7.0, 1.3, 0.7)]:
        lam_a, lam_b = gdwa_weights(g_a, g_b, r_a, r_b, temperature=2.0)
        assert lam_a + lam_b == pytest.approx(1.0) and 0 < lam_a < 1
        s_a, s_b = math.exp(r_a / 2) / (math.exp(r_a / 2) + math.exp(r_b / 2)), None
        s_b = 1 - s_a
        ga = g_a / (g_a + g_b)
        assert lam_a == pytest.approx(ga * s_a / (ga * s_a + (1 - ga) * s_b))
        assert gdwa_csc_weight(g_a, g_b, r_a, r_b, 2.0) == pytest.approx(lam_b / lam_a)
    assert gdwa_csc_weight(1.0, 1.0, 1.0, 1.0, 2.0) == pytest.approx(1.0)


def test_gdwa_reacts_to_gradient_norm_and_descent_rate():
    base = gdwa_csc_weight(1.0, 1.0, 1.0, 1.0, 2.0)
    # a larger CSC gradient norm on the shared parameters -> more weight on CSC
    assert gdwa_csc_weight(1.0, 2.0, 1.0, 1.0, 2.0) > base > gdwa_csc_weight(2.0, 1.0, 1.0, 1.0, 2.0)
    # the CSC loss descending more slowly (larger ratio L^j / L^{j-1}) -> more weight on CSC
    assert gdwa_csc_weight(1.0, 1.0, 0.8, 1.0, 2.0) > base > gdwa_csc_weight(1.0, 1.0, 1.0, 0.8, 2.0)
    # a higher temperature flattens the descent-rate preference
    assert gdwa_csc_weight(1.0, 1.0, 0.8, 1.0, 100.0) < gdwa_csc_weight(1.0, 1.0, 0.8, 1.0, 0.5)
    assert descent_softmax(1.0, 1.0, 2.0) == (0.5, 0.5)
    assert dwa_csc_weight(0.9, 1.1, 2.0) == pytest.approx(math.exp(0.1))
    with pytest.raises(ValueError, match="temperature"):
        descent_softmax(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="gradient norms"):
        gdwa_weights(-1.0, 1.0, 1.0, 1.0, 2.0)


def test_loss_periods_descent_rates():
    periods = LossPeriods()
    assert periods.rate("fusion") == 1.0 and periods.close() is None
    for value in (4.0, 2.0):
        periods.add(fusion=value, csc=10.0)
    assert periods.close() == {"fusion": 3.0, "csc": 10.0}
    periods.add(fusion=1.5, csc=5.0)
    periods.close()
    assert periods.rate("fusion") == pytest.approx(0.5) and periods.rate("csc") == pytest.approx(0.5)


def test_shared_grad_norm_is_the_norm_over_fusion_parameters(tiny):
    torch.manual_seed(4)
    module = make_module(tiny)
    module.build_seg_branches()
    module.stage = 2
    losses = module.compute_losses(trap_batch())
    for name in ("loss_fusion", "loss_csc"):
        module.zero_grad()
        losses[name].backward(retain_graph=True)
        manual = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in module.fusion.parameters() if p.grad is not None))
        assert float(module.shared_grad_norm(losses[name])) == pytest.approx(manual, rel=1e-5)
        assert manual > 0
    g_a, g_b = module.grad_norms.tolist()
    assert losses["w_csc"].item() == pytest.approx(gdwa_csc_weight(g_a, g_b, 1.0, 1.0, 2.0), rel=1e-6)
    assert torch.allclose(losses["loss"], losses["loss_fusion"] + losses["w_csc"] * losses["loss_csc"])


@pytest.mark.parametrize("weighting", ["gdwa", "dwa", "fixed"])
def test_weighting_variants(tiny, weighting):
    module = make_module(tiny, weighting=weighting, csc_weight=0.1)
    module.build_seg_branches()
    module.stage = 2
    module.periods.history = [{"fusion": 2.0, "csc": 4.0}, {"fusion": 1.0, "csc": 3.0}]  # r = 0.5, 0.75
    weight = module.compute_losses(trap_batch())["w_csc"].item()
    if weighting == "fixed":
        assert weight == pytest.approx(0.1)
    elif weighting == "dwa":
        assert weight == pytest.approx(math.exp((0.75 - 0.5) / 2.0))
    else:
        g_a, g_b = module.grad_norms.tolist()
        assert weight == pytest.approx(gdwa_csc_weight(g_a, g_b, 0.5, 0.75, 2.0), rel=1e-6)


def test_gdwa_every_reuses_the_last_gradient_norms(tiny):
    module = make_module(tiny, gdwa_every=2)
    module.build_seg_branches()
    module.stage = 2
    seen = []
    for seed in range(3):
        module.training_step(trap_batch(seed=seed), seed)
        seen.append(module.grad_norms)
    assert seen[1] is seen[0] and seen[2] is not seen[1]  # recomputed on Stage II steps 0 and 2 only
    assert module.stage2_steps == 3


# ---------------------------------------------------------------- stages


def test_stage_switch_by_steps_and_branch_gradients(tiny):
    L.seed_everything(0, verbose=False)
    module = make_module(tiny, stage1_steps=2, period_steps=1)
    recorder = StepRecorder()
    tiny_trainer(max_steps=4, callbacks=[recorder]).fit(module, train_dataloaders=trap_loader(n=8))
    assert [s["stage"] for s in recorder.steps] == [1, 1, 2, 2]
    for step in recorder.steps:
        assert step["fusion"]
        assert step["head"] == step["segmenter"] == (step["stage"] == 2), step
    # the training-only branches are gone after fit: inference weights are the fusion model alone
    assert not module.has_seg_branches
    assert all(k.startswith("fusion.") for k in module.state_dict())
    assert len(module.periods.history) == 4 and "csc" in module.periods.history[-1]


def test_stage_switch_by_epochs(tiny):
    L.seed_everything(0, verbose=False)
    module = make_module(tiny, stage1_epochs=1)
    recorder = StepRecorder()
    tiny_trainer(max_epochs=2, callbacks=[recorder]).fit(module, train_dataloaders=trap_loader(n=4))
    assert [s["stage"] for s in recorder.steps] == [1, 1, 2, 2]
    assert len(module.periods.history) == 2  # one period per epoch


def test_automatic_stage_switch_when_the_mean_fusion_loss_rises(tiny):
    module = make_module(tiny)
    assert module.switch_rule == "auto"
    for value in (5.0, 4.0, 3.9):
        module.periods.add(fusion=value)
        module.close_period()
        assert module.stage == 1
    module.periods.add(fusion=4.2)
    module.periods.add(fusion=4.0)
    module.close_period()  # mean 4.1 > 3.9
    assert module.stage == 2
    assert module.descent_rates() == (1.0, 1.0)  # no complete Stage II periods yet


def test_stage_one_is_capped_so_that_stage_two_always_happens(tiny):
    module = make_module(tiny, stage1_max_periods=3)
    for period, value in enumerate((5.0, 4.0, 3.0), start=1):  # the mean fusion loss never rises
        module.periods.add(fusion=value)
        module.close_period()
        assert module.stage == (2 if period == 3 else 1)
    with pytest.raises(ValueError, match="stage1_max_periods caps the automatic stage switch"):
        make_module(tiny, stage1_steps=3, stage1_max_periods=2)
    with pytest.raises(ValueError, match="stage1_max_periods must be an integer >= 1"):
        make_module(tiny, stage1_max_periods=0)
    with pytest.raises(ValueError, match="early_stopping: unknown keys \\['metric'\\]"):
        make_module(tiny, early_stopping={"metric": "val/loss"})


def _fake_trainer(**metrics: float):
    from types import SimpleNamespace

    from lightning.pytorch.trainer.states import TrainerFn, TrainerState

    state = TrainerState()
    state.fn = TrainerFn.FITTING
    return SimpleNamespace(callback_metrics={k: torch.tensor(v) for k, v in metrics.items()}, fast_dev_run=False,
                           sanity_checking=False, should_stop=False, current_epoch=0, state=state,
                           strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all=False: decision))


def test_stage_two_early_stopping_ignores_stage_one_and_resets_at_the_switch(tiny):
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import EarlyStopping

    from fusion_bench.methods.ssvif.callbacks import StageTwoEarlyStopping

    module = make_module(tiny, early_stopping={"monitor": "val/loss_total", "patience": 2})
    (callback,) = module.configure_callbacks()
    assert isinstance(callback, StageTwoEarlyStopping) and isinstance(callback, EarlyStopping)
    assert (callback.monitor, callback.patience, callback.mode) == ("val/loss_total", 2, "min")
    assert make_module(tiny).configure_callbacks() == []
    plain = EarlyStopping(monitor="val/loss_total", patience=2, check_on_train_epoch_end=False)
    history = [(1, 0.5), (1, 0.4), (1, None)]  # Stage I: a low (or absent) value that must not count
    history += [(2, 5.0), (2, 4.0), (2, 4.5), (2, 4.6)]  # Stage II: the fusion loss rose at the switch
    stops, plain_stops = [], []
    for stage, value in history:
        trainer = _fake_trainer(**({"val/loss_total": value} if value is not None else {"val/loss": 1.0}))
        callback.on_validation_end(trainer, SimpleNamespace(stage=stage))
        stops.append(trainer.should_stop)
        if value is not None:
            plain_trainer = _fake_trainer(**{"val/loss_total": value})
            plain.on_validation_end(plain_trainer, module)
            plain_stops.append(plain_trainer.should_stop)
    assert stops == [False] * 6 + [True]  # two Stage II validations without improving on 4.0
    assert float(callback.best_score) == 4.0 and callback.stage2_validations == 4
    # the stage-blind callback keeps Stage I's best (0.4) and stops at the second Stage II validation
    assert plain_stops == [False, False, False, True, True, True]
    restored = StageTwoEarlyStopping(patience=2)
    restored.load_state_dict(callback.state_dict())
    assert restored.stage2_validations == 4 and float(restored.best_score) == 4.0


def test_stage_two_early_stopping_needs_validation_data(tiny):
    L.seed_everything(0, verbose=False)
    module = make_module(tiny, stage1_steps=1, early_stopping={"patience": 2})
    with pytest.raises(ValueError, match="early_stopping .* needs validation data"):
        tiny_trainer(max_steps=2).fit(module, train_dataloaders=trap_loader())


def test_argument_errors(tiny):
    with pytest.raises(ValueError, match="weighting must be one of gdwa, dwa, fixed"):
        make_module(tiny, weighting="uncertainty")
    with pytest.raises(ValueError, match="at most one of stage1_steps and stage1_epochs"):
        make_module(tiny, stage1_steps=3, stage1_epochs=1)
    with pytest.raises(ValueError, match="period_steps must be an integer >= 1"):
        make_module(tiny, period_steps=0)
    with pytest.raises(KeyError, match="unknown SSVIF backbone 'nope'; valid backbones: .*seafusion"):
        SSVIF(backbone="nope")
    with pytest.raises(ValueError, match="segformer: unknown keys \\['epochs'\\]"):
        make_module(tiny, segformer={"variant": "b0", "epochs": 3})
    module = make_module(tiny)
    module.stage = 2
    with pytest.raises(RuntimeError, match="build_seg_branches"):
        module.compute_losses(trap_batch())


# ---------------------------------------------------------------- no labels


def test_training_and_validation_steps_never_read_the_mask(tiny):
    batch = trap_batch()
    with pytest.raises(KeyError, match="segmentation mask"):
        batch["mask"]  # the trap works
    module = make_module(tiny)
    module.build_seg_branches()
    for stage in (1, 2):
        module.stage = stage
        loss = module.training_step(batch, 0)
        assert torch.isfinite(loss)
        loss.backward()
    assert torch.isfinite(module.validation_step(batch, 0))


def test_fit_on_a_dataset_whose_masks_must_not_be_read(tiny):
    L.seed_everything(0, verbose=False)
    module = make_module(tiny, stage1_steps=1, period_steps=1)
    recorder = StepRecorder()
    trainer = tiny_trainer(max_steps=3, callbacks=[recorder], limit_val_batches=1)
    trainer.fit(module, train_dataloaders=trap_loader(), val_dataloaders=trap_loader(n=2, batch_size=1))
    assert [s["stage"] for s in recorder.steps] == [1, 2, 2]
    assert all(s["batch_type"] is LabelTrap for s in recorder.steps), "the trap batches reached training_step"
    assert "val/loss" in trainer.callback_metrics


def test_seeded_training_is_deterministic(tiny):
    params = []
    for _ in range(2):
        L.seed_everything(3, verbose=False)
        module = make_module(tiny, stage1_steps=1, period_steps=1)
        tiny_trainer(max_steps=3).fit(module, train_dataloaders=trap_loader())
        params.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    assert torch.equal(params[0], params[1])


@pytest.mark.parametrize("precision", ["bf16-mixed", pytest.param("16-mixed", marks=pytest.mark.gpu)])
def test_mixed_precision_stage2(tiny, precision):
    """Autocast through both stages; under fp16 the GDWA norms are taken on GradScaler-scaled losses."""
    accelerator = "cuda" if precision == "16-mixed" else "cpu"
    if accelerator == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    L.seed_everything(0, verbose=False)
    module = make_module(tiny, stage1_steps=1, period_steps=1)
    recorder = StepRecorder()
    # as the runner: strict determinism on the CPU, warn-only on CUDA, where bilinear upsampling's backward
    # (SegFormer, the segmentation head) has no deterministic kernel
    trainer = tiny_trainer(max_steps=4, precision=precision, accelerator=accelerator, callbacks=[recorder],
                           deterministic=True if accelerator == "cpu" else "warn")
    trainer.fit(module, train_dataloaders=trap_loader(n=8))
    assert [s["stage"] for s in recorder.steps] == [1, 2, 2, 2]
    assert module.grad_norms is not None and all(math.isfinite(g) and g > 0 for g in module.grad_norms)
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_stage2_step_in_float16_with_a_grad_scaler_on_cpu(tiny):
    """The fp16 path without a GPU (Lightning turns 16-mixed on a CPU into bf16): float16 autocast on the CPU and a
    GradScaler; the loss is float32, the GDWA norms are taken on the scaled losses and divided back, and the
    weight stays a 0-dim device tensor."""
    from types import SimpleNamespace

    torch.manual_seed(7)
    module = make_module(tiny)
    module.build_seg_branches()
    module.stage = 2
    batch = trap_batch()
    with torch.autocast("cpu", dtype=torch.float16):
        unscaled_losses = module.compute_losses(batch)
    unscaled = module.grad_norms.clone()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaler.scale(torch.ones(()))  # creates the scale tensor, as the first scaled backward does
    module._trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler))
    try:
        assert float(module._amp_loss_scale()) == 2.0**10
        module.grad_norms = None
        with torch.autocast("cpu", dtype=torch.float16):
            losses = module.compute_losses(batch)
    finally:
        module._trainer = None
    assert unscaled_losses["loss_csc"].dtype == losses["loss_csc"].dtype == losses["loss"].dtype == torch.float32
    assert torch.allclose(module.grad_norms, unscaled, rtol=0.05) and torch.isfinite(module.grad_norms).all()
    assert losses["w_csc"].shape == () and torch.isfinite(losses["loss"])


# ---------------------------------------------------------------- presets and CLI


def test_presets():
    paper = load_method_config(SSVIF, "ssvif", "paper")
    model = paper["model"]
    assert model["backbone"] == "swinfusion" and model["num_seg_classes"] == 15
    assert model["segformer"] == {"variant": "b3"} and model["weighting"] == "gdwa"
    assert (model["w_int"], model["w_grad"], model["w_ssim"], model["w_color"]) == (20, 20, 10, 20)
    assert "stage1_steps" not in model and "stage1_epochs" not in model  # the paper's automatic switch ...
    assert model["stage1_max_periods"] < paper["train"]["max_epochs"]  # ... capped, so that Stage II runs
    assert model["early_stopping"] == {"monitor": "val/loss_total", "patience": 10, "mode": "min"}  # stage-aware
    assert paper["optim"] == {"lr": 1.0e-4}
    assert paper["train"] == {"max_epochs": 110, "batch_size": 10, "crop_size": 160, "val_fraction": 0.1}
    assert "early_stopping" not in paper["train"]  # not the runner's generic (stage-blind) early stopping
    smoke = load_method_config(SSVIF, "ssvif", "smoke")
    assert smoke["model"]["stage1_steps"] < smoke["train"]["max_steps"]  # Stage II is exercised


def _bench(tmp_path: Path, *extra: str) -> int:
    """The smoke bench on synthetic-ivif, fusion metrics only (downstream evaluators are tested elsewhere)."""
    return main(["bench", "--method", "ssvif", "--dataset", "synthetic-ivif", *extra, "--device", "cpu",
                 "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress",
                 "--downstream", "none"])


def test_bench_synthetic_ivif_default_backbone(tmp_path):
    assert _bench(tmp_path) == 0
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert row["method"] == "ssvif" and row["preset"] == "smoke"
    assert all(math.isfinite(float(row[m])) for m in ("EN", "SSIM", "Qabf", "params_m", "gflops"))
    smoke = load_method_config(SSVIF, "ssvif", "smoke")["model"]
    fusion_only = backbones.build_backbone(smoke["backbone"], **smoke["backbone_args"])
    expected = sum(p.numel() for p in fusion_only.parameters()) / 1e6
    assert float(row["params_m"]) == pytest.approx(expected)  # the segmentation branches are training-only
    fused = sorted((tmp_path / "runs").rglob("fused/*.png"))
    assert len(fused) == int(row["n_images"]) > 0
    (weights,) = (tmp_path / "runs").rglob("model.pt")  # fusion-only weights load into a fresh module (strict)
    fresh = SSVIF(**smoke)
    load_weights(fresh, weights, "ssvif")
    assert not fresh.has_seg_branches


def test_bench_with_the_other_backbone_as_a_model_kwarg(tmp_path, monkeypatch):
    default = load_method_config(SSVIF, "ssvif", "smoke")["model"]["backbone"]
    other = {"seafusion": "swinfusion", "swinfusion": "seafusion"}[default]
    other_args = {"seafusion": {"channels": [4, 8]},
                  "swinfusion": {"embed_dim": 8, "num_heads": 2, "window_size": 4, "extraction_depth": 1,
                                 "fusion_depths": [1], "reconstruction_depth": 1, "drop_path_rate": 0.0}}[other]
    original = run_config.load_method_config

    def with_backbone(cls, name, preset, dataset=None):
        config = original(cls, name, preset, dataset)
        config["model"].update(backbone=other, backbone_args=other_args, stage1_steps=2, period_steps=1)
        # keep the CPU test short (Stage II still runs); validate every 2 steps under the stage-aware early stopping
        config["model"].update(early_stopping={"monitor": "val/loss_total", "patience": 5})  # stage-aware
        config["train"].update(max_steps=4, batch_size=2, val_check_interval=2, limit_val_batches=1,
                               log_every_n_steps=1)
        return config

    monkeypatch.setattr(run_config, "load_method_config", with_backbone)
    assert _bench(tmp_path) == 0
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    expected = sum(p.numel() for p in backbones.build_backbone(other, **other_args).parameters()) / 1e6
    assert float(row["params_m"]) == pytest.approx(expected)
    (metrics_csv,) = (tmp_path / "runs").rglob("logs/metrics.csv")
    text = metrics_csv.read_text()
    assert "val/loss" in text and "train/loss_csc" in text and "val/loss_total" in text


def test_paper_schedule_on_fake_fmb_reaches_stage_two_and_trains_in_it(tmp_path, monkeypatch):
    """The paper preset's schedule (automatic switch capped by stage1_max_periods, stage-aware early stopping on
    the Eq. 2 validation loss, a 9:1-style hold-out of FMB's training split), shortened through config and with
    tiny networks: Stage II is reached and trained in, and early stopping only ever sees Stage II validations."""
    import pandas as pd

    from fusion_bench.datamodules.fmb import FMBDataset

    FMBDataset.make_fake(tmp_path / "fmb")
    original = run_config.load_method_config
    paper = original(SSVIF, "ssvif", "paper")
    cap = 2

    def shortened(cls, name, preset, dataset=None):
        config = original(cls, name, preset, dataset)
        assert preset == "paper" and config["model"]["early_stopping"]["monitor"] == "val/loss_total"
        config["model"].update(backbone="seafusion", backbone_args={"channels": [4, 8]}, segformer=TINY_SEGFORMER,
                               head_channels=4, stage1_max_periods=cap,
                               early_stopping={**config["model"]["early_stopping"], "patience": 2})
        config["train"].update(max_epochs=5, batch_size=2, crop_size=32, log_every_n_steps=1)
        return config

    monkeypatch.setattr(run_config, "load_method_config", shortened)
    assert main(["bench", "--method", "ssvif", "--dataset", "fmb", "--root", str(tmp_path / "fmb"), "--preset",
                 "paper", "--seeds", "0", "--device", "cpu", "--out", str(tmp_path / "runs"), "--leaderboard-dir",
                 str(tmp_path / "lb"), "--no-progress", "--downstream", "none"]) == 0
    (row,) = read_rows(tmp_path / "lb" / "raw" / "fmb.csv")
    assert row["method"] == "ssvif" and row["preset"] == "paper" and int(row["n_images"]) > 0
    assert "stage1_steps" not in paper["model"] and paper["train"]["val_fraction"] > 0  # the schedule under test
    (metrics_csv,) = (tmp_path / "runs").rglob("logs/metrics.csv")
    log = pd.read_csv(metrics_csv)
    train = log.dropna(subset=["train/stage"])
    stage2 = train[train["train/stage"] == 2]
    assert len(stage2) >= 1 and stage2["train/loss_csc"].notna().all(), "Stage II was never trained in"
    assert train["train/stage"].is_monotonic_increasing
    assert train.loc[train["train/stage"] == 1, "epoch"].max() < cap  # switched by epoch `cap` at the latest
    val = log.dropna(subset=["val/loss"])
    first_stage2_epoch = stage2["epoch"].min()
    assert val.loc[val["epoch"] < first_stage2_epoch, "val/loss_total"].isna().all()  # Stage I: no Eq. 2 value
    assert val.loc[val["epoch"] >= first_stage2_epoch, "val/loss_total"].notna().all()
    # the stage-aware early stopping (patience 2) starts counting at the first Stage II validation
    assert val["epoch"].max() >= min(first_stage2_epoch + 2, 4)
