"""SeAFusion and SwinFusion backbones: the features/decode interface, Table IV sizes, losses, modules, CLI benches."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fusion_bench.base.losses import gradient_loss, intensity_loss, sobel_magnitude, ssim
from fusion_bench.base.method import load_method_config
from fusion_bench.benchmark.results import read_rows
from fusion_bench.cli import main
from fusion_bench.methods.seafusion.loss import SeAFusionContentLoss
from fusion_bench.methods.seafusion.model import SeAFusionNet
from fusion_bench.methods.seafusion.module import SeAFusionContent
from fusion_bench.methods.swinfusion.loss import SwinFusionLoss, total_variation_loss, weighted_ssim
from fusion_bench.methods.swinfusion.model import (
    CrossSwinBlock,
    SwinBlock,
    SwinFusionNet,
    WindowAttention,
    pad_to_multiple,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from fusion_bench.methods.swinfusion.module import SwinFusion

TINY_SWIN = {"embed_dim": 8, "num_heads": 2, "window_size": 4, "extraction_depth": 2, "fusion_depths": [2],
             "reconstruction_depth": 2}
TINY_SEA = {"channels": (4, 8, 12)}


def build(name: str, in_channels: int, out_channels: int, tiny: bool = True) -> torch.nn.Module:
    if name == "seafusion":
        return SeAFusionNet(in_channels, out_channels, **(TINY_SEA if tiny else {}))
    return SwinFusionNet(in_channels, out_channels, **(TINY_SWIN if tiny else {}))


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def count_gmacs(net: torch.nn.Module, channels: int, size: int) -> float:
    """Multiply-accumulates / 1e9 of one forward (torch's FLOP counter / 2), counted on the meta device."""
    with torch.device("meta"):
        x = torch.empty(1, channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(x, x)
    return counter.get_total_flops() / 2e9


# ---------------------------------------------------------------- interface (what the ssvif wrapper relies on)


@pytest.mark.parametrize("name", ["seafusion", "swinfusion"])
@pytest.mark.parametrize(("channels", "size"), [(1, (13, 21)), (3, (16, 16)), (3, (9, 11))])
def test_features_decode_interface(name, channels, size):
    torch.manual_seed(0)
    net = build(name, channels, channels).eval()
    x1, x2 = torch.rand(2, channels, *size), torch.rand(2, channels, *size)
    with torch.no_grad():
        feats = net.features(x1, x2)
        fused = net.decode(feats)
        direct = net(x1, x2)
    assert feats.shape == (2, net.feature_channels, *size)
    assert fused.shape == (2, channels, *size)
    assert fused.min() >= 0 and fused.max() <= 1
    assert torch.allclose(direct, fused, atol=1e-6), "forward must equal decode(features(x1, x2))"
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("name", ["seafusion", "swinfusion"])
def test_both_inputs_matter_and_gradients_reach_both_encoders(name):
    torch.manual_seed(0)
    net = build(name, 1, 1)
    x1, x2 = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    base = net.features(x1, x2)
    assert not torch.allclose(base, net.features(x1 * 0.5, x2)), "x1 is ignored"
    assert not torch.allclose(base, net.features(x1, x2 * 0.5)), "x2 is ignored"
    net(x1, x2).mean().backward()
    stems = (net.encoder_ir.stem[0], net.encoder_vis.stem[0]) if name == "seafusion" else (net.shallow[0],)
    for conv in stems:
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["seafusion", "swinfusion"])
def test_shape_errors_name_the_argument(name):
    net = build(name, 1, 1)
    with pytest.raises(ValueError, match="x2 must be B x 1 x H x W"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        net(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 12))
    with pytest.raises(ValueError, match="features must be"):
        net.decode(torch.rand(1, net.feature_channels + 1, 8, 8))


def test_constructor_errors():
    with pytest.raises(ValueError, match="channels"):
        SeAFusionNet(channels=(16,))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        SwinFusionNet(embed_dim=8, num_heads=3)
    with pytest.raises(ValueError, match="embed_dim"):
        SwinFusionNet(embed_dim=10, num_heads=2)
    with pytest.raises(ValueError, match="fusion depth"):
        SwinFusionNet(fusion_depths=[])
    with pytest.raises(ValueError, match="ema_decay"):
        SwinFusion(ema_decay=1.0)
    with pytest.raises(ValueError, match="ssim_weighting"):
        SwinFusionLoss(ssim_weighting="mean")


# ---------------------------------------------------------------- Table IV (SSVIF): parameters and MACs at 256x256


@pytest.mark.parametrize(("name", "channels", "exact", "table_m"), [
    ("seafusion", 1, 166_657, 0.17), ("seafusion", 3, 167_523, 0.17),
    # Table IV: 0.97 / 0.98; it also counts the authors' two unused conv_first*_B layers (see the README)
    ("swinfusion", 1, 965_251, 0.97), ("swinfusion", 3, 966_063, 0.98),
])
def test_paper_parameter_counts(name, channels, exact, table_m):
    net = build(name, channels, channels, tiny=False)
    params = count_params(net)
    assert params == exact
    assert abs(params / 1e6 - table_m) / table_m < 0.10


@pytest.mark.parametrize(("name", "channels", "table_gmacs"), [
    ("seafusion", 1, 10.88), ("seafusion", 3, 10.94), ("swinfusion", 1, 75.98), ("swinfusion", 3, 76.07),
])
def test_paper_macs_at_256(name, channels, table_gmacs):
    """Table IV's "FLOPs (G)" are multiply-accumulates (our FLOP counter gives twice these numbers)."""
    with torch.device("meta"):
        net = build(name, channels, channels, tiny=False)
    gmacs = count_gmacs(net, channels, 256)
    assert abs(gmacs - table_gmacs) / table_gmacs < 0.10, gmacs


# ---------------------------------------------------------------- Swin building blocks


def test_window_partition_round_trip_and_padding():
    x = torch.rand(2, 8, 12, 5)
    windows = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 3, 16, 5)
    assert torch.equal(windows[0].view(4, 4, 5), x[0, :4, :4])
    assert torch.equal(window_reverse(windows, 4, 8, 12), x)
    padded = pad_to_multiple(torch.rand(1, 1, 13, 21), 8)
    assert padded.shape[-2:] == (16, 24)
    assert pad_to_multiple(torch.rand(1, 1, 3, 3), 8).shape[-2:] == (8, 8)  # too small to reflect


def test_shifted_window_mask_blocks_wrapped_regions():
    mask = shifted_window_mask(8, 8, window=4, shift=2, device=torch.device("cpu"))
    assert mask.shape == (4, 16, 16)
    assert (mask[0] == 0).all(), "the first window holds one contiguous region"
    last = mask[-1]  # the bottom-right window mixes 4 regions after the cyclic shift
    assert (last == -100).any() and (last.diagonal() == 0).all()
    assert torch.equal(last, last.t())


def test_unshifted_swin_block_is_local_to_windows():
    torch.manual_seed(0)
    block = SwinBlock(dim=8, num_heads=2, window=4, shift=0, mlp_ratio=2.0).eval()
    x = torch.rand(1, 8, 8, 8)
    y = x.clone()
    y[0, 0, 0] += 1.0  # change one token of the top-left window
    with torch.no_grad():
        out_x, out_y = block(x), block(y)
    changed = (out_x - out_y).abs().sum(-1)[0] > 1e-6
    assert changed[:4, :4].any() and not changed[4:].any() and not changed[:, 4:].any()
    shifted = SwinBlock(dim=8, num_heads=2, window=4, shift=2, mlp_ratio=2.0).eval()
    shifted.load_state_dict(block.state_dict())
    with torch.no_grad():
        changed = (shifted(x) - shifted(y)).abs().sum(-1)[0] > 1e-6
    # shift 2: after the cyclic shift, rows/cols 0-1 share a window with rows/cols 6-7 but the mask separates them
    assert changed[:2, :2].any() and not changed[2:].any() and not changed[:, 2:].any()


def test_cross_attention_reads_the_other_modality():
    torch.manual_seed(0)
    attn = WindowAttention(8, 4, 2, cross=True)
    x, ctx = torch.rand(3, 16, 8), torch.rand(3, 16, 8)
    assert not torch.allclose(attn(x, ctx), attn(x, ctx + 1))
    with pytest.raises(ValueError, match="context"):
        attn(x)
    block = CrossSwinBlock(dim=8, num_heads=2, window=4, shift=0, mlp_ratio=2.0).eval()
    a, b = torch.rand(1, 4, 4, 8), torch.rand(1, 4, 4, 8)
    with torch.no_grad():
        a1, b1 = block(a, b)
        a2, b2 = block(a, b * 2)
    assert not torch.allclose(a1, a2) and not torch.allclose(b1, b2)


def test_straight_through_clamp_keeps_gradients():
    torch.manual_seed(0)
    net = SwinFusionNet(**TINY_SWIN)
    with torch.no_grad():  # push the raw output below 0 everywhere
        net.head[-1].bias.fill_(-5.0)
    x1, x2 = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    raw = net(x1, x2, clamp=False)
    clamped = net(x1, x2)
    assert raw.max() < 0 and torch.equal(clamped, torch.zeros_like(clamped))
    clamped.sum().backward()
    assert net.head[-1].bias.grad.item() == pytest.approx(64.0)


# ---------------------------------------------------------------- losses


def test_sobel_is_the_authors_zero_padded_operator():
    flat = torch.full((1, 1, 6, 6), 0.5)
    mag = sobel_magnitude(flat, "zeros")
    assert torch.all(mag[..., 1:-1, 1:-1] == 0)
    assert mag[0, 0, 0, 0] == pytest.approx(3 * 0.5 + 3 * 0.5)  # corner: |Gx| = |Gy| = 3 * 0.5 with zeros outside
    delta = torch.zeros(1, 1, 5, 5)
    delta[0, 0, 2, 2] = 1.0
    assert sobel_magnitude(delta, "zeros")[0, 0, 2, 1] == 2 and sobel_magnitude(delta, "zeros")[0, 0, 1, 1] == 2


def test_seafusion_content_loss_terms():
    torch.manual_seed(0)
    a, b = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    loss = SeAFusionContentLoss()
    same = loss(a, a, a)
    assert same["loss"] == 0
    at_max = loss(torch.maximum(a, b), a, b)
    assert at_max["loss_int"] == 0 and at_max["loss_grad"] > 0
    dark = torch.zeros_like(a)
    only_a = loss(a, a, dark)  # the gradient target is |grad a| itself (dark has no gradient inside)
    assert only_a["loss_int"] == 0 and gradient_loss(a, a, dark, "zeros") == only_a["loss_grad"]
    assert only_a["loss_grad"] < 1e-6
    worse = loss(torch.full_like(a, 0.5), a, b)
    assert worse["loss"] == pytest.approx(worse["loss_int"].item() + 10 * worse["loss_grad"].item(), rel=1e-6)


def test_ssim_and_swinfusion_loss_terms():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 24, 24)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ssim(a, torch.rand(2, 1, 24, 24)) < 0.2
    zeros = torch.zeros_like(a)
    # B = 0: max(A, B) = A, the SSIM weight of B is 0, so F = A is the loss's exact optimum (every term 0)
    terms = SwinFusionLoss()(a, a, zeros)
    assert all(abs(v.item()) < 1e-6 for v in terms.values()), terms
    assert weighted_ssim(a, a, zeros, "equal") == pytest.approx(0.5 * 1.0 + 0.5 * ssim(zeros, a).item(), abs=1e-6)
    fused = torch.rand(2, 1, 24, 24)
    b = torch.rand(2, 1, 24, 24)
    t = SwinFusionLoss()(fused, a, b)
    expected = 20 * t["loss_int"] + 20 * t["loss_tv"] + 20 * t["loss_grad"] + 10 * t["loss_ssim"]
    assert t["loss"] == pytest.approx(expected.item(), rel=1e-6)
    med = SwinFusionLoss(20, 0, 100, 50, "equal")(fused, a, b)
    assert med["loss"] == pytest.approx((20 * med["loss_int"] + 100 * med["loss_grad"] + 50 * med["loss_ssim"]).item(),
                                        rel=1e-6)


def test_swinfusion_loss_takes_the_sources_sobel_once(monkeypatch):
    """Three Sobel magnitudes per step (the two sources, shared by the texture term and the SSIM weights, and the
    fused image), and the same numbers as the terms computed separately."""
    import fusion_bench.methods.swinfusion.loss as swin_loss

    torch.manual_seed(1)
    fused, a, b = (torch.rand(2, 1, 20, 24) for _ in range(3))
    calls = []

    def counting(x, padding="replicate"):
        calls.append(padding)
        return sobel_magnitude(x, padding)

    monkeypatch.setattr(swin_loss, "sobel_magnitude", counting)
    terms = SwinFusionLoss()(fused, a, b)
    assert calls == ["zeros"] * 3
    assert torch.equal(terms["loss_grad"], gradient_loss(fused, a, b, padding="zeros"))
    monkeypatch.setattr(swin_loss, "sobel_magnitude", sobel_magnitude)
    assert torch.equal(terms["loss_ssim"], 1 - weighted_ssim(fused, a, b, "gradient"))
    assert torch.equal(terms["loss_int"], intensity_loss(fused, a, b))


def _kair_modes(img: torch.Tensor) -> list[torch.Tensor]:
    """The 8 outputs of KAIR's augment_img(img, mode) for mode 0..7 on an HxW image (numpy's rot90 / flipud)."""
    import numpy as np

    x = img.numpy()
    modes = [x, np.flipud(np.rot90(x)), np.flipud(x), np.rot90(x, k=3), np.flipud(np.rot90(x, k=2)), np.rot90(x),
             np.rot90(x, k=2), np.flipud(np.rot90(x, k=3))]
    return [torch.from_numpy(m.copy()) for m in modes]


def test_batch_dihedral_after_the_hflip_draws_the_authors_8_modes_uniformly():
    """SwinFusion's authors put each crop in mode randint(0, 7) of KAIR's augment_img (the 8 flips/rotations of the
    square); the datamodule's horizontal flip (p 0.5) followed by `batch_dihedral` draws the same 8 modes with
    probability 1/8 each, identically for both sources."""
    from fusion_bench.data.transforms import batch_dihedral

    probe = torch.arange(16.0).view(4, 4)
    modes = _kair_modes(probe)
    assert len({tuple(m.flatten().tolist()) for m in modes}) == 8
    n = 4000
    gen = torch.Generator().manual_seed(0)
    hflip = torch.rand(n, generator=gen) < 0.5
    x1 = probe.expand(n, 1, 4, 4).clone()
    x1[hflip] = x1[hflip].flip(-1)  # PairedRandomFlip
    a, b = batch_dihedral(x1, 100 + x1, gen)
    assert torch.equal(b, 100 + a)  # the same mode for both sources
    counts = torch.zeros(8)
    for k, mode in enumerate(modes):
        counts[k] = (a[:, 0] == mode).flatten(1).all(1).sum()
    assert counts.sum() == n  # every output is one of the authors' modes
    assert (counts / n - 1 / 8).abs().max() < 0.025, counts


def test_swinfusion_augment_trains_on_a_flipped_rotated_pair(monkeypatch):
    torch.manual_seed(0)
    module = SwinFusion(**TINY_SWIN, ema_decay=0.0, augment=True, modalities=("ir", "vis"))
    seen = []
    original = module.criterion.forward

    def record(fused, y1, y2):
        seen.append((y1.clone(), y2.clone()))
        return original(fused, y1, y2)

    monkeypatch.setattr(module.criterion, "forward", record)
    monkeypatch.setattr(module, "log_losses", lambda losses, stage, batch: losses["loss"])
    ir = torch.rand(8, 1, 8, 8)
    batch = {"ir": ir, "vis": ir.expand(-1, 3, -1, -1).clone()}  # luminance of a gray RGB image = the image
    assert torch.isfinite(module.training_step(batch, 0))
    y1, y2 = seen[0]
    assert torch.allclose(y1, y2, atol=1e-6)  # the same mode for both sources
    assert not torch.equal(y1, ir)  # some samples moved (p = 1 - 1/4^8 with a vflip/transpose each)
    for i in range(8):  # each sample is one of the 8 modes of its own original
        assert any(torch.equal(y1[i, 0], m) for m in _kair_modes(ir[i, 0])), i
    plain = SwinFusion(**TINY_SWIN, ema_decay=0.0, modalities=("ir", "vis"))
    assert plain.augment is False  # off unless asked for (the smoke preset)


def test_total_variation_of_the_residual():
    target = torch.rand(1, 1, 4, 4)
    assert total_variation_loss(target + 0.3, target, target) == pytest.approx(0.0, abs=1e-12)  # constant residual
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # residual with a vertical edge between columns 1 and 2
    # right-neighbour differences: one column of 4 ones out of 16 pixels -> 0.25; no vertical change -> 0
    assert total_variation_loss(step, torch.zeros_like(step), torch.zeros_like(step)) == pytest.approx(0.25)


# ---------------------------------------------------------------- Lightning modules


def _batch(seed: int = 0, size: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"ir": torch.rand(2, 1, size, size, generator=g), "vis": torch.rand(2, 3, size, size, generator=g)}


@pytest.mark.parametrize("name", ["seafusion", "swinfusion"])
def test_module_fuse_keeps_colour_and_size_and_is_seeded(name):
    def make() -> torch.nn.Module:
        torch.manual_seed(7)
        if name == "seafusion":
            return SeAFusionContent(channels=TINY_SEA["channels"])
        return SwinFusion(**TINY_SWIN, ema_decay=0.0)

    m1, m2 = make().eval(), make().eval()
    batch = _batch(size=9)
    with torch.no_grad():
        fused = m1.fuse(batch["ir"], batch["vis"])
        again = m2.fuse(batch["ir"], batch["vis"])
    assert fused.shape == batch["vis"].shape and fused.min() >= 0 and fused.max() <= 1
    assert torch.equal(fused, again)
    m1.train()
    torch.manual_seed(1)
    loss1 = m1.training_step(_batch(size=8), 0)
    m2.train()
    torch.manual_seed(1)
    assert torch.equal(loss1, m2.training_step(_batch(size=8), 0))
    loss1.backward()
    assert all(p.grad is not None for p in m1.net.parameters() if p.requires_grad)
    with torch.no_grad():
        assert torch.isfinite(m1.eval().validation_step(_batch(seed=1, size=8), 0))


def test_seafusion_learning_rate_decays_per_epoch():
    module = SeAFusionContent(channels=TINY_SEA["channels"], lr=1e-3, lr_decay=0.75)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "epoch"
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.75**2)


def test_swinfusion_learning_rate_halves_at_kairs_milestones():
    """The EMA itself is Lightning's WeightAveraging (tests/test_resume.py); the schedule is KAIR's MultiStepLR."""
    config = SwinFusion(**TINY_SWIN, ema_decay=0.5).configure_optimizers()
    assert config["lr_scheduler"]["scheduler"].milestones == {250000: 1, 400000: 1, 450000: 1, 475000: 1, 500000: 1}


def test_presets_follow_the_authors_training_scripts():
    vif = load_method_config(SwinFusion, "swinfusion", "paper", "msrs")
    assert vif["optim"]["lr"] == 2e-5 and vif["model"]["ema_decay"] == 0.999
    assert vif["model"]["augment"] is True  # data/dataset_wogt.py: augment_img(mode=randint(0, 7))
    assert load_method_config(SwinFusion, "swinfusion", "smoke")["model"]["augment"] is False
    assert (vif["train"]["batch_size"], vif["train"]["crop_size"], vif["train"]["max_steps"]) == (12, 128, 10000)
    med = load_method_config(SwinFusion, "swinfusion", "paper", "harvard_ct_mri")
    assert {k: med["model"][k] for k in ("w_int", "w_tv", "w_grad", "w_ssim", "ssim_weighting")} == {
        "w_int": 20.0, "w_tv": 0.0, "w_grad": 100.0, "w_ssim": 50.0, "ssim_weighting": "equal"}
    assert med["optim"]["lr"] == 2e-4 and (med["train"]["batch_size"], med["train"]["crop_size"]) == (16, 64)
    assert med["model"]["augment"] is True  # the medical runs use the same dataset class
    module = SwinFusion(**load_method_config(SwinFusion, "swinfusion", "smoke", "harvard_pet_mri")["model"])
    assert (module.criterion.w_grad, module.criterion.ssim_weighting) == (100.0, "equal")
    sea = load_method_config(SeAFusionContent, "seafusion_content", "paper", "msrs")
    assert sea["model"]["channels"] == [16, 32, 48] and sea["train"]["batch_size"] == 16
    assert "crop_size" not in sea["train"] and sea["train"]["max_epochs"] == 10
    for epoch in range(10):  # the authors' train.py: 1e-3 * 0.75 ** (epoch - 1)
        assert sea["optim"]["lr"] * sea["model"]["lr_decay"] ** epoch == pytest.approx(1e-3 * 0.75 ** (epoch - 1))


# ---------------------------------------------------------------- CLI (smoke preset, CPU)


@pytest.mark.parametrize("method", ["seafusion_content", "swinfusion"])  # seafusion: tests/test_seafusion.py
def test_bench_synthetic_ivif_smoke(method, tmp_path):
    code = main(["bench", "--method", method, "--dataset", "synthetic-ivif", "--preset", "smoke", "--device", "cpu",
                 "--out", str(tmp_path / "runs"), "--leaderboard-dir", str(tmp_path / "lb"), "--no-progress"])
    assert code == 0
    (row,) = read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv")
    assert row["method"] == method and row["preset"] == "smoke" and row["device"].startswith("cpu")
    for metric in ("EN", "SD", "SSIM", "Qabf"):
        assert math.isfinite(float(row[metric])), metric
    assert float(row["params_m"]) > 0 and int(row["n_images"]) > 0
    assert list((tmp_path / "runs").rglob("fused/*.png"))


def test_training_ssim_matches_the_float64_metric_implementation():
    """The shared training SSIM (fusion_bench.base.losses.ssim, float32 separable convs) against the metrics
    package's independent float64 SSIM map with the same window, constants and zero padding."""
    from fusion_bench.metrics.functional.filters import gaussian_1d
    from fusion_bench.metrics.functional.ssim import _ssim_map

    torch.manual_seed(3)
    x = torch.rand(2, 1, 30, 41)
    y = (0.6 * x + 0.4 * torch.rand(2, 1, 30, 41)).clamp(0, 1)
    want = _ssim_map(x.double()[:, 0], y.double()[:, 0], gaussian_1d(11, 1.5), 0.01**2, 0.03**2,
                     padding="zeros").mean()
    assert ssim(x, y).item() == pytest.approx(want.item(), rel=1e-5)
    assert ssim(x, y, sigma=3.0).item() != pytest.approx(want.item(), rel=1e-3)  # the window matters
