"""AMDANet: SCI, FDAM and MFML on small tensors (equations, shapes, masking rate, gradients), the paper's loss
terms, the authors' code configuration (loss against a port of their MakeLoss/FusionLoss/DiceLoss, heads,
schedule, evaluation windows, presets), weight loading, the LightningModule contract, and CPU smoke benches on
synthetic-ivif and a fake FMB."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from fusion_bench.base.colour import rgb_to_ycbcr
from fusion_bench.base.method import load_method_config
from fusion_bench.benchmark.results import read_rows
from fusion_bench.methods.amdanet.loss import (
    AMDANetLoss,
    colour_consistency_loss,
    consistency_loss,
    dice_loss,
    mrfs_fusion_loss,
    salient_information_loss,
)
from fusion_bench.methods.amdanet.model import (
    AMDANetModel,
    ChannelSpatialAlignment,
    GlobalAlignment,
    LocalAlignmentCode,
    MiTConfig,
    SemanticConsistencyInference,
    mutual_feature_mask,
)
from fusion_bench.methods.amdanet.module import AMDANet, lr_factor, sliding_window, warmup_poly_factor
from fusion_bench.methods.amdanet.pretrained import load_mit_weights
from fusion_bench.types import IGNORE_INDEX, VALID
from fusion_bench.weights.zoo import WeightsError

TINY = {"encoder": None, "hidden_sizes": [8, 16, 16, 32], "depths": [1, 1, 1, 1], "heads": [1, 2, 2, 4],
        "drop_path_rate": 0.0, "decoder_dim": 16, "fusion_width": 4}


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared, oversubscribed CPU two spinning OpenMP threads make these small
    networks 10-100x slower (measured); results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_module(**overrides) -> AMDANet:
    return AMDANet(num_classes=5, **{**TINY, **overrides})


# -- SCI ---------------------------------------------------------------------------------------------------------
def test_sci_follows_eq_1_to_5_and_corrects_only_biased_tokens():
    torch.manual_seed(0)
    sci = SemanticConsistencyInference(8, tau=0.4, lambda_init=0.5)
    f_in, f_vi = torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    f_vi[:, :3] = 2.0 * f_in[:, :3]  # cosine 1 >= tau: consistent tokens, left alone
    a_in, a_vi, info = sci(f_in, f_vi)
    assert a_in.shape == f_in.shape and a_vi.shape == f_vi.shape and info["mask"].shape == (2, 6, 1)
    assert torch.allclose(info["similarity"][:, :3], torch.ones(2, 3), atol=1e-5)
    m = torch.sigmoid(sci.mlp(torch.cat([f_in, f_vi], -1)))  # Eq. 3
    p_in, p_vi = f_in * (1 - m) + f_vi * m, f_vi * (1 - m) + f_in * m  # Eq. 2
    biased = (info["similarity"] < 0.4).unsqueeze(-1).float()
    assert biased[:, 3:].all(), "random tokens are nearly orthogonal, hence bias-affected"
    assert torch.allclose(a_in, f_in - 0.5 * biased * (f_in - p_in), atol=1e-6)  # Eq. 4-5
    assert torch.allclose(a_vi, f_vi - 0.5 * biased * (f_vi - p_vi), atol=1e-6)
    assert torch.equal(a_in[:, :3], f_in[:, :3]) and torch.equal(a_vi[:, :3], f_vi[:, :3])


def test_sci_lambda_and_ambiguity_mask_receive_gradients():
    torch.manual_seed(1)
    sci = SemanticConsistencyInference(8)
    f_in, f_vi = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    a_in, a_vi, info = sci(f_in, f_vi)
    info["mask"].retain_grad()
    (a_in.square().sum() + 2 * a_vi.sum()).backward()
    assert sci.lambda_.grad is not None and sci.lambda_.grad.abs() > 0
    assert info["mask"].grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sci.mlp.parameters())
    assert not SemanticConsistencyInference(8, learn_lambda=False).lambda_.requires_grad


def test_sci_code_gate_and_stream_swap():
    torch.manual_seed(2)
    f_in = torch.randn(1, 4, 8)
    f_vi = f_in.clone()  # identical streams: cosine 1 everywhere, yet 0.1 * mean = 0.1 < tau in the code's gate
    f_vi[:, 0] = torch.randn(8)
    paper = SemanticConsistencyInference(8, gate="paper")
    code = SemanticConsistencyInference(8, gate="code")
    code.load_state_dict(paper.state_dict())
    assert paper(f_in, f_vi)[2]["active"].flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert code(f_in, f_vi)[2]["active"].item() == 1.0
    swap = SemanticConsistencyInference(8, swap_streams=True)
    swap.load_state_dict(paper.state_dict())
    a_in, a_vi, _ = paper(f_in, f_vi)
    s_first, s_second, _ = swap(f_in, f_vi)
    assert torch.equal(s_first, a_vi) and torch.equal(s_second, a_in)
    with pytest.raises(ValueError, match="sci gate"):
        SemanticConsistencyInference(8, gate="always")


# -- FDAM --------------------------------------------------------------------------------------------------------
def test_local_alignment_follows_eq_6_to_9():
    torch.manual_seed(3)
    align = ChannelSpatialAlignment(8, reduction=4, kernel=7)
    f = torch.randn(2, 8, 5, 7)
    a_ch = torch.sigmoid(align.mlp(f.mean((2, 3), keepdim=True)) + align.mlp(f.amax((2, 3), keepdim=True)))
    f_ch = torch.sigmoid(a_ch * f - f) * f + f
    a_sp = torch.sigmoid(align.spatial(torch.cat([f.mean(1, keepdim=True), f.amax(1, keepdim=True)], 1)))
    f_sp = torch.sigmoid(a_sp * f - f) * f + f
    assert torch.allclose(align(f), f_ch + f_sp, atol=1e-6)
    out_in, out_vi = LocalAlignmentCode(8)(f, torch.randn(2, 8, 5, 7))
    assert out_in.shape == out_vi.shape == f.shape


def test_global_alignment_is_vis_to_ir_then_ir_to_mid():
    torch.manual_seed(4)
    glob = GlobalAlignment(8, heads=2, sr=2).eval()
    f_in = torch.randn(2, 8, 6, 10, requires_grad=True)
    f_vi = torch.randn(2, 8, 6, 10, requires_grad=True)
    out = glob(f_in, f_vi)
    assert out.shape == (2, 8, 6, 10)
    out.sum().backward()
    assert f_in.grad.abs().sum() > 0 and f_vi.grad.abs().sum() > 0
    with torch.no_grad():  # by hand: enhance both, F_mid from Q_vi on (K, V)_in, F_m from Q_in on (K, V)_mid
        t_in, t_vi = f_in.flatten(2).transpose(1, 2), f_vi.flatten(2).transpose(1, 2)
        e_in, e_vi = glob.enhance_ir(t_in, 6, 10), glob.enhance_vis(t_vi, 6, 10)
        mid = glob.vis_to_ir.proj(glob.vis_to_ir.attend(e_vi, e_in, 6, 10) + t_vi)
        expected = glob.ir_to_mid.proj(glob.ir_to_mid.attend(e_in, mid, 6, 10) + t_in)
        assert torch.allclose(out, expected.transpose(1, 2).reshape(2, 8, 6, 10), atol=1e-5)


# -- MFML --------------------------------------------------------------------------------------------------------
def test_mfml_masks_one_modality_per_sample_at_the_rate():
    torch.manual_seed(5)
    f_in, f_vi = torch.ones(4, 4096, 8), torch.ones(4, 4096, 8)
    mask_ir = torch.tensor([True, False, True, False])
    m_in, m_vi = mutual_feature_mask(f_in, f_vi, mask_ir, ratio=0.15)
    zero_in, zero_vi = (m_in == 0).float().mean((1, 2)), (m_vi == 0).float().mean((1, 2))
    assert torch.allclose(zero_in[[0, 2]], torch.full((2,), 0.15), atol=0.01)
    assert torch.allclose(zero_vi[[1, 3]], torch.full((2,), 0.15), atol=0.01)
    assert zero_in[[1, 3]].sum() == 0 and zero_vi[[0, 2]].sum() == 0
    assert set(m_in.unique().tolist()) == {0.0, 1.0}, "no rescaling of the kept features"
    with pytest.raises(ValueError, match="mfml ratio"):
        mutual_feature_mask(f_in, f_vi, mask_ir, ratio=1.0)


def test_mfml_in_the_network_changes_only_the_masked_pass():
    torch.manual_seed(6)
    net = AMDANetModel(3, MiTConfig.build(None, **{k: TINY[k] for k in ("hidden_sizes", "depths", "heads")}),
                       decoder_dim=8, fusion_width=4).eval()
    ir, vis = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        clean = net.encode(ir, vis)
        again = net.encode(ir, vis)
        masked = net.encode(ir, vis, mfml_mask_ir=torch.tensor([True, False]))
    assert len(clean.vision) == len(clean.semantic) == 4
    assert [f.shape[-1] for f in clean.semantic] == [8, 4, 2, 1]
    assert torch.equal(clean.semantic[-1], again.semantic[-1])
    assert not torch.allclose(clean.semantic[-1], masked.semantic[-1])


# -- losses ------------------------------------------------------------------------------------------------------
def test_fusion_loss_terms_are_eq_15():
    torch.manual_seed(7)
    vis, ir = torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16)
    target = torch.maximum(vis, ir.expand(-1, 3, -1, -1))
    assert salient_information_loss(target, vis, ir) == 0
    fused = torch.rand(2, 3, 16, 16)
    diff = fused - target
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    gx = F.conv2d(diff.reshape(6, 1, 16, 16), sobel.view(1, 1, 3, 3), padding=1)
    gy = F.conv2d(diff.reshape(6, 1, 16, 16), sobel.t().reshape(1, 1, 3, 3), padding=1)
    assert torch.isclose(salient_information_loss(fused, vis, ir), 0.5 * (gx.abs().mean() + gy.abs().mean()))
    assert colour_consistency_loss(vis.pow(0.8), vis, gamma=0.8) < 1e-6
    expected_co = (rgb_to_ycbcr(fused)[:, 1:] - rgb_to_ycbcr(vis.pow(0.5))[:, 1:]).abs().mean()
    assert torch.isclose(colour_consistency_loss(fused, vis, gamma=0.5), expected_co)
    assert mrfs_fusion_loss(fused, vis, ir) > 0


def test_total_loss_weights_and_consistency_term():
    torch.manual_seed(8)
    logits, masked = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    fused, vis, ir = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    target[0, 0] = IGNORE_INDEX
    out = AMDANetLoss()(logits, fused, target, vis, ir, masked_logits=masked)
    seg = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    pseudo = logits.argmax(1)
    pseudo[0, 0] = IGNORE_INDEX  # padded / unlabelled pixels are left out of L_cr
    cr = F.cross_entropy(masked, pseudo, ignore_index=IGNORE_INDEX)
    fus = salient_information_loss(fused, vis, ir) + colour_consistency_loss(fused, vis)
    assert torch.isclose(out["loss_seg"], seg) and torch.isclose(out["loss_cr"], cr)
    assert torch.isclose(out["loss_fus"], fus) and torch.isclose(consistency_loss(masked, logits, target), cr)
    assert torch.isclose(out["loss"], 1.0 * seg + 0.5 * fus + 0.5 * cr)
    code = AMDANetLoss(fusion="code", cr="code", w_dice=2.0, w_dice_masked=0.5)(
        logits, fused, target, vis, ir, masked_logits=masked, masked_fused=fused)
    code_fus = mrfs_fusion_loss(fused, vis, ir)
    masked_ce = F.cross_entropy(masked, target, ignore_index=IGNORE_INDEX)
    assert torch.isclose(code["loss_cr"], 0.5 * (masked_ce + code_fus))
    assert torch.isclose(code["loss"], seg + 0.5 * code_fus + 0.5 * code["loss_cr"] + 2 * dice_loss(logits, target)
                         + 0.5 * dice_loss(masked, target))


def test_dice_ignores_the_ignore_index():
    target = torch.tensor([[[0, 1], [IGNORE_INDEX, IGNORE_INDEX]]])
    perfect = torch.full((1, 2, 2, 2), -20.0)
    perfect[0, 0, 0, 0] = perfect[0, 1, 0, 1] = 20.0  # ignore pixels predict anything
    perfect[0, 1, 1, :] = 20.0
    assert dice_loss(perfect, target) < 1e-6


# -- weights, module ---------------------------------------------------------------------------------------------
def test_mit_weights_load_into_both_streams(tmp_path: Path):
    torch.manual_seed(9)
    model = tiny_module().net
    source = tiny_module().net.encoder_ir.state_dict()
    official = {}  # the SegFormer release's key names
    for key, value in source.items():
        stage, kind, rest = key.split(".", 2)
        i = int(stage) + 1
        if kind == "norm":
            official[f"norm{i}.{rest}"] = value
            continue
        rest = rest.replace("sr_conv.", "sr.").replace("sr_norm.", "norm.").replace("mlp.dwconv.", "mlp.dwconv.dwconv.")
        official[f"{'block' if kind == 'blocks' else kind}{i}.{rest}"] = value
    official["head.weight"] = torch.zeros(3, 32)
    torch.save(official, tmp_path / "mit.pth")
    assert load_mit_weights(model, tmp_path / "mit.pth") == len(source)
    for stream in (model.encoder_ir, model.encoder_vis):
        assert all(torch.equal(v, source[k]) for k, v in stream.state_dict().items())
    with pytest.raises(WeightsError, match="missing.pth not found"):
        tiny_module(pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsError, match="does not fit"):
        load_mit_weights(tiny_module(hidden_sizes=[16, 16, 16, 32]).net, tmp_path / "mit.pth")


def test_module_fuse_and_segment_contract():
    torch.manual_seed(10)
    module = tiny_module().eval()
    ir, vis = torch.rand(2, 1, 40, 56), torch.rand(2, 3, 40, 56)
    with torch.no_grad():
        fused = module.fuse(ir, vis)
        logits = module.segment(ir, vis)
        gray = module.fuse(ir, vis.mean(1, keepdim=True))
    assert fused.shape == gray.shape == (2, 3, 40, 56) and 0 <= fused.min() and fused.max() <= 1
    assert logits.shape == (2, 5, 40, 56) and torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="at least 32x32"):
        module.fuse(torch.rand(1, 1, 16, 64), torch.rand(1, 3, 16, 64))
    with pytest.raises(ValueError, match="mfml"):
        tiny_module(mfml="sometimes")
    with pytest.raises(ValueError, match="encoder variant"):
        tiny_module(encoder="b9")


@pytest.mark.parametrize("mfml", ["paper", "code"])
def test_training_step_is_deterministic_and_trains_lambda(mfml: str):
    batch = {"ir": torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)),
             "vis": torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)),
             "mask": torch.randint(0, 5, (2, 32, 32), generator=torch.Generator().manual_seed(2))}
    losses = []
    for _ in range(2):
        torch.manual_seed(11)
        module = tiny_module(mfml=mfml, cr_mode=mfml, augment_seed=3)
        out = module.compute_losses(batch)
        out["loss"].backward()
        losses.append(out["loss"].item())
        assert "loss_cr" in out and all(s.lambda_.grad is not None for s in module.net.sci)
    assert losses[0] == losses[1]
    with pytest.raises(KeyError, match="mask"):
        tiny_module().compute_losses({"ir": batch["ir"], "vis": batch["vis"]})


def test_schedule():
    assert warmup_poly_factor(0, 100, 10) == 0.0 and warmup_poly_factor(5, 100, 10) == 0.5
    assert warmup_poly_factor(10, 100, 10) == pytest.approx(0.9 ** 0.9)
    assert warmup_poly_factor(100, 100, 10) == 0.0 and warmup_poly_factor(0, 100, 0) == 1.0
    # the authors set the rate after optimizer.step(): step 0 at the base rate, step k at the value of k - 1
    assert [lr_factor(k, 100, 10, lag=True) for k in (0, 1, 2, 11)] == [1.0, 0.0, 0.1, pytest.approx(0.9 ** 0.9)]
    assert lr_factor(6, 100, 10) == warmup_poly_factor(6, 100, 10)


# -- the authors' code configuration -----------------------------------------------------------------------------
# Ports, written for these tests from a reading of github.com/Zhonghaifeng6/AMDANet utils/loss_utils.py (HEAD
# 88e4562): FusionLoss (MRFS), DiceLoss and MakeLoss, on CPU, with the same tensor manipulations.
def _authors_rgb2ycrcb(img: torch.Tensor) -> torch.Tensor:
    flat = img.transpose(1, 3).transpose(1, 2).reshape(-1, 3)
    r, g, b = flat[:, 0], flat[:, 1], flat[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 0.5
    cb = (b - y) * 0.564 + 0.5
    out = torch.cat([y.unsqueeze(1), cr.unsqueeze(1), cb.unsqueeze(1)], dim=1)
    return out.reshape(img.shape[0], img.shape[2], img.shape[3], 3).transpose(1, 3).transpose(2, 3)


def _authors_sobelxy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    ky = torch.tensor([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]]).view(1, 1, 3, 3)
    return F.conv2d(x, kx, padding=1), F.conv2d(x, ky, padding=1)


def _authors_grads(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    per_channel = [_authors_sobelxy(img[:, c:c + 1]) for c in range(3)]
    return torch.cat([g[0] for g in per_channel], 1), torch.cat([g[1] for g in per_channel], 1)


def _authors_fusion_loss(vis: torch.Tensor, ir3: torch.Tensor, output: torch.Tensor, mask: torch.Tensor):
    fuse = output * mask
    ycrcb_fuse = _authors_rgb2ycrcb(fuse)
    r_vis = TF.adjust_gamma(vis, 0.8, 1)
    ycrcb_vis = _authors_rgb2ycrcb(r_vis)
    r_ir = TF.adjust_contrast(ir3, 1)
    (fx, fy), (vx, vy), (ix, iy) = _authors_grads(fuse), _authors_grads(r_vis), _authors_grads(r_ir)
    con = F.l1_loss(fuse, torch.maximum(r_vis, r_ir))
    grad = 0.5 * F.l1_loss(fx, torch.maximum(vx, ix)) + 0.5 * F.l1_loss(fy, torch.maximum(vy, iy))
    color = F.l1_loss(ycrcb_fuse[:, 2:], ycrcb_vis[:, 2:]) + F.l1_loss(ycrcb_fuse[:, 1:2], ycrcb_vis[:, 1:2])
    return 0.5 * con + 1 * grad + 1 * color


def _authors_dice(preds: torch.Tensor, targets: torch.Tensor, smooth: float = 1e-5, ignore: int = 255):
    preds = F.softmax(preds, dim=1)
    targets = targets.clone()
    targets[targets == ignore] = 0
    onehot = F.one_hot(targets, num_classes=preds.shape[1]).permute(0, 3, 1, 2).float()
    keep = (targets != ignore).unsqueeze(1)
    preds, onehot = preds * keep, onehot * keep
    inter = torch.sum(preds * onehot, dim=(0, 2, 3))
    union = torch.sum(preds + onehot, dim=(0, 2, 3))
    return 1 - ((2.0 * inter + smooth) / (union + smooth)).mean()


def _code_batch():
    """A fixed batch with a centred-padding valid region (rows 0 and 14-15 padded), as the code's loader makes."""
    g = torch.Generator().manual_seed(21)
    vis, ir1 = torch.rand(2, 3, 16, 20, generator=g), torch.rand(2, 1, 16, 20, generator=g)
    valid = torch.zeros(2, 1, 16, 20)
    valid[:, :, 1:14] = 1.0
    vis, ir1 = vis * valid, ir1 * valid
    target = torch.randint(0, 4, (2, 16, 20), generator=g)
    target[valid[:, 0] == 0] = IGNORE_INDEX
    fused, masked_fused = torch.rand(2, 3, 16, 20, generator=g), torch.rand(2, 3, 16, 20, generator=g)
    logits, masked = torch.randn(2, 4, 16, 20, generator=g), torch.randn(2, 4, 16, 20, generator=g)
    return vis, ir1, valid, target, fused, masked_fused, logits, masked


def test_code_loss_equals_a_port_of_the_authors_makeloss():
    vis, ir1, valid, target, fused, masked_fused, logits, masked = _code_batch()
    ir3, mask3 = ir1.expand(-1, 3, -1, -1), valid.expand(-1, 3, -1, -1)
    port_fus = _authors_fusion_loss(vis, ir3, fused, mask3)
    ours_fus = mrfs_fusion_loss(fused, vis, ir1, valid=valid)
    assert torch.allclose(ours_fus, port_fus, rtol=1e-6, atol=1e-7), (ours_fus, port_fus)
    # the two bugs fixed here each change the value: Sobel-y of the opposite sign, Cb/Cr averaged
    flipped = torch.tensor([[-1.0, -2, -1], [0, 0, 0], [1, 2, 1]]).view(1, 1, 3, 3)
    fy = torch.cat([F.conv2d((fused * valid)[:, c:c + 1], flipped, padding=1) for c in range(3)], 1)
    r_vis = vis.pow(0.8)
    vy = torch.cat([F.conv2d(r_vis[:, c:c + 1], flipped, padding=1) for c in range(3)], 1)
    iy = torch.cat([F.conv2d(ir3[:, c:c + 1], flipped, padding=1) for c in range(3)], 1)
    _, fy_code = _authors_grads(fused * valid)
    assert not torch.isclose(F.l1_loss(fy, torch.maximum(vy, iy)),
                             F.l1_loss(fy_code, torch.maximum(*(_authors_grads(t)[1] for t in (r_vis, ir3)))))
    dice_port = _authors_dice(logits, target)
    assert torch.allclose(dice_loss(logits, target, ignore="code"), dice_port, rtol=1e-6)
    assert not torch.isclose(dice_loss(logits, target), dice_port), "skip mode leaves the padding out"
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    ce_r = F.cross_entropy(masked, target, ignore_index=IGNORE_INDEX)
    port_total = (1 * ce + 0.5 * port_fus + 0.25 * ce_r + 0.25 * _authors_fusion_loss(vis, ir3, masked_fused, mask3)
                  + 2 * dice_port + 0.5 * _authors_dice(masked, target))
    out = AMDANetLoss(fusion="code", cr="code", w_dice=2.0, w_dice_masked=0.5, dice_ignore="code")(
        logits, fused, target, vis, ir1, masked, masked_fused, valid)
    assert torch.allclose(out["loss"], port_total, rtol=1e-6), (out["loss"], port_total)


def test_code_heads_global_alignment_and_drop_path():
    torch.manual_seed(12)
    config = MiTConfig.build(None, hidden_sizes=[8, 16, 16, 32], depths=[1, 2, 1, 1], heads=[1, 2, 2, 4],
                             drop_path_rate=0.1)
    code = AMDANetModel(3, config, decoder_dim=16, fusion_width=4, local_mode="code", global_mode="code",
                        head_style="code", drop_path_rule="code")
    paper = AMDANetModel(3, config, decoder_dim=16, fusion_width=4)
    rates = [[b.drop_path_rate for b in stream[1].blocks] for stream in (code.encoder_vis, code.encoder_ir)]
    assert rates == [[0.025, 0.025], [0.05, 0.05]], "the code's stage 2: RGB at dpr[cur], X at dpr[cur + 1]"
    assert [b.drop_path_rate for b in paper.encoder_vis[1].blocks] == [0.025, 0.05]
    norms = [m for head in (code.seg_head, code.fusion_head) for m in head.modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 0.01 and m.momentum == 0.01 for m in norms)
    assert code.seg_head.fuse[0].bias is not None and paper.seg_head.fuse[0].bias is None
    conv = code.fusion_head.out[0]  # Kaiming normal, fan_in, ReLU gain; PyTorch's default bias
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.15)
    assert conv.bias.abs().max() <= 1 / math.sqrt(fan_in) and conv.bias.abs().sum() > 0
    embed = code.seg_head.embed[0]  # the decoder's Linear layers keep PyTorch's default init
    assert embed.weight.abs().max() <= 1 / math.sqrt(embed.in_features) and embed.bias.abs().sum() > 0
    assert paper.seg_head.embed[0].bias.abs().sum() == 0
    glob = code.globals[0].eval()  # residuals = the self-enhanced queries, one more Linear at the end
    f_in, f_vi = torch.randn(2, 8, 16, 24), torch.randn(2, 8, 16, 24)
    with torch.no_grad():
        t_in, t_vi = f_in.flatten(2).transpose(1, 2), f_vi.flatten(2).transpose(1, 2)
        e_in, e_vi = glob.enhance_ir(t_in, 16, 24), glob.enhance_vis(t_vi, 16, 24)
        mid = glob.vis_to_ir.proj(glob.vis_to_ir.attend(e_vi, e_in, 16, 24) + e_vi)
        expected = glob.out(glob.ir_to_mid.proj(glob.ir_to_mid.attend(e_in, mid, 16, 24) + e_in))
        assert torch.allclose(glob(f_in, f_vi), expected.transpose(1, 2).reshape(2, 8, 16, 24), atol=1e-5)
    with pytest.raises(ValueError, match="head_style"):
        AMDANetModel(3, config, head_style="mrfs")


def test_b4_parameter_counts_match_the_authors_code():
    """The paper preset is the released network: 135.74 M parameters (the authors' code counted with thop);
    paper_text (Eq. 6-11 local/global alignment, no extra projection, no head biases) 134.39 M."""
    counts = {}
    for preset in ("paper", "paper_text"):
        config = load_method_config(AMDANet, "amdanet", preset, "fmb")
        assert config["model"]["pretrained"] == "zoo:mit_b4"  # ImageNet MiT-B4 (fusion_bench.weights.pretrained)
        with torch.device("meta"):  # the architecture only: no weights
            module = AMDANet(num_classes=15, **{**config["model"], "pretrained": None}, **config["optim"])
        counts[preset] = round(sum(p.numel() for p in module.parameters()) / 1e6, 2)
    assert counts == {"paper": 135.74, "paper_text": 134.39}


def test_code_training_step_logs_sci_active_and_keeps_lambda():
    config = load_method_config(AMDANet, "amdanet", "smoke")
    model = {**config["model"], **TINY}
    torch.manual_seed(13)
    module = AMDANet(num_classes=5, **model, **config["optim"], augment_seed=0)
    assert not any(s.lambda_.requires_grad for s in module.net.sci), "the code never optimises lambda"
    vis, ir1, valid, target, *_ = _code_batch()
    batch = {"ir": F.pad(ir1, (6, 6, 8, 8)), "vis": F.pad(vis, (6, 6, 8, 8)),
             "mask": F.pad(target, (6, 6, 8, 8), value=IGNORE_INDEX), VALID: F.pad(valid[:, 0], (6, 6, 8, 8))}
    out = module.compute_losses(batch)
    assert out["sci_active"] == 1.0 and out["lambda_mean"] == 0.5
    assert {"loss_dice", "loss_dice_masked", "loss_cr"} <= set(out) and torch.isfinite(out["loss"])
    out["loss"].backward()
    paper = tiny_module()
    paper_out = paper.compute_losses({k: v for k, v in batch.items() if k != VALID})
    assert 0.0 <= paper_out["sci_active"] <= 1.0


def test_sliding_window_follows_the_authors_evaluator():
    seen = []

    def predict(ir, vis):
        seen.append(tuple(ir.shape[-2:]))
        return torch.cat([ir[:, :1], torch.zeros_like(ir[:, :1])], 1)

    ir = torch.rand(1, 3, 60, 80) + 1.0
    out = sliding_window(predict, ir, ir, (64, 48))  # FMB's [640, 480] scaled down: one pass padded to 64x80
    assert seen == [(64, 80)] and torch.equal(out[:, 0], ir[:, 0])
    seen.clear()
    out = sliding_window(lambda a, b: torch.zeros(1, 2, *a.shape[-2:]), ir[..., :10, :12], ir[..., :10, :12], (6, 8))
    count = torch.ones(10, 12)  # windows at rows 0/4 and columns 0/4 (strides ceil(4.0), ceil(5.33))
    count[4:6] *= 2
    count[:, 4:8] *= 2
    assert torch.allclose(out[0, 0], count.log()), "overlaps add exp(logits), as the code's data_scale"


def test_fused_output_minmax_and_fuse_window():
    torch.manual_seed(14)
    module = tiny_module(fused_output="minmax", fuse_window=[48, 40]).eval()
    ir, vis = torch.rand(1, 1, 40, 56), torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        fused = module.fuse(ir, vis)
        i3, v3 = ir.expand(-1, 3, -1, -1), vis
        raw = module._fuse(F.pad(i3, (0, 0, 4, 4)), F.pad(v3, (0, 0, 4, 4)))[..., 4:44, :]
    levels = (raw - raw.min()) / (raw.max() - raw.min()) * 255
    assert torch.equal(fused, levels.floor() / 255) and fused.min() == 0 and fused.max() == 1
    with pytest.raises(ValueError, match="fused_output"):
        tiny_module(fused_output="raw")


def test_presets_paper_is_the_code_and_paper_text_an_ablation(tmp_path: Path):
    from fusion_bench.benchmark.build import build_datamodule
    from fusion_bench.benchmark.protocol import protocol_preset
    from fusion_bench.benchmark.request import prepare
    from fusion_bench.benchmark.spec import BenchSpec
    from fusion_bench.errors import BenchError
    from fusion_bench.registry import get_datamodule

    root = get_datamodule("fmb").dataset_class.make_fake(tmp_path / "fmb", seed=0)
    # both presets start from ImageNet MiT-B4 (zoo:mit_b4), which tests never download: refused before any work
    for preset in ("paper", "paper_text"):
        with pytest.raises(BenchError, match=r"mit_b4\.pth not found .*--set model\.pretrained=null"):
            prepare(BenchSpec(method="amdanet", dataset="fmb", root=root, preset=preset, device="cpu"))
    scratch = {"model.pretrained": None}  # the from-scratch ablation
    paper = prepare(BenchSpec(method="amdanet", dataset="fmb", root=root, preset="paper", device="cpu",
                              overrides=scratch))
    text = prepare(BenchSpec(method="amdanet", dataset="fmb", root=root, preset="paper_text", device="cpu",
                             overrides=scratch))
    code_keys = {"sci_gate": "code", "learn_lambda": False, "local_mode": "code", "global_mode": "code",
                 "mfml": "code", "fusion_loss": "code", "head_style": "code", "w_dice": 2.0,
                 "eval_window": [640, 480]}
    assert {k: paper.config["model"][k] for k in code_keys} == code_keys and paper.config["optim"]["lr"] == 3e-5
    assert text.config["model"]["sci_gate"] == "paper" and text.config["optim"]["lr"] == 6e-5
    assert protocol_preset("paper_text") == "paper" and paper.config_hash != text.config_hash
    with pytest.raises(BenchError, match="unknown preset 'paper_text'"):
        prepare(BenchSpec(method="mean", dataset="fmb", root=root, preset="paper_text", device="cpu"))
    datamodule = build_datamodule(paper, 0)  # the runner hands train.augment to the datamodule
    assert datamodule.augment["pad"] == "center" and datamodule.augment["offset"] == "torchseg"
    datamodule.setup("fit")
    sample = datamodule.train_set[0]
    assert sample["vis"].shape[-2:] == (480, 640) and VALID in sample
    assert ((sample["mask"] == IGNORE_INDEX) >= (sample[VALID] == 0)).all()


# -- CLI ---------------------------------------------------------------------------------------------------------
FUSED_METRICS = ("EN", "SD", "SF", "MI", "SSIM", "PSNR")


def _check_row(row: dict[str, str]) -> None:
    """Raw rows are strings: the fused-image metrics must be finite numbers, params and GFLOPs positive."""
    assert row["method"] == "amdanet" and row["preset"] == "smoke" and row["device"].startswith("cpu")
    for metric in FUSED_METRICS:
        assert math.isfinite(float(row[metric])), f"{metric} missing or not finite: {row.get(metric)!r}"
    assert float(row["params_m"]) > 0 and float(row["gflops"]) > 0
    for column in ("native_miou", "seg_miou"):  # segment()'s own mIoU, downstream SegFormer
        if row.get(column, "") != "":
            assert 0.0 <= float(row[column]) <= 1.0, f"{column} = {row[column]}"


def test_cli_bench_synthetic_ivif(cli, capsys, tmp_path: Path):
    code, _, err = cli(capsys, "bench", "--method", "amdanet", "--dataset", "synthetic-ivif", "--preset", "smoke",
                       "--device", "cpu", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb",
                       "--no-progress")
    assert code == 0, err
    (row,) = [r for r in read_rows(tmp_path / "lb" / "raw" / "synthetic-ivif.csv") if r["method"] == "amdanet"]
    _check_row(row)


def test_cli_bench_fake_fmb(cli, capsys, tmp_path: Path):
    from fusion_bench.registry import get_datamodule

    root = get_datamodule("fmb").dataset_class.make_fake(tmp_path / "fmb", seed=0)
    code, _, err = cli(capsys, "bench", "--method", "amdanet", "--dataset", "fmb", "--root", root, "--preset",
                       "smoke", "--device", "cpu", "--out", tmp_path / "runs", "--leaderboard-dir", tmp_path / "lb",
                       "--no-progress")
    assert code == 0, err
    (row,) = [r for r in read_rows(tmp_path / "lb" / "raw" / "fmb.csv") if r["method"] == "amdanet"]
    _check_row(row)
    assert row.get("native_miou", "") != "", "the runner scores segment() on datasets with labels"
    fused = sorted((tmp_path / "runs").rglob("fused/*.png"))
    assert len(fused) == int(row["n_images"]) == 2
