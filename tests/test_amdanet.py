"""AMDANet: SCI, FDAM and MFML on small tensors (equations, shapes, masking rate, gradients), the paper's loss
terms, weight loading, the LightningModule contract, and CPU smoke benches on synthetic-ivif and a fake FMB."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fusion_bench.base.colour import rgb_to_ycbcr
from fusion_bench.benchmark.results import read_rows
from fusion_bench.types import IGNORE_INDEX
from methods.amdanet.loss import (
    AMDANetLoss,
    colour_consistency_loss,
    consistency_loss,
    dice_loss,
    mrfs_fusion_loss,
    salient_information_loss,
)
from methods.amdanet.model import (
    AMDANetModel,
    ChannelSpatialAlignment,
    GlobalAlignment,
    LocalAlignmentCode,
    MiTConfig,
    SemanticConsistencyInference,
    load_mit_weights,
    mutual_feature_mask,
)
from methods.amdanet.module import AMDANet, random_rescale, warmup_poly_factor

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
    cr = F.cross_entropy(masked, logits.argmax(1))
    fus = salient_information_loss(fused, vis, ir) + colour_consistency_loss(fused, vis)
    assert torch.isclose(out["loss_seg"], seg) and torch.isclose(out["loss_cr"], cr)
    assert torch.isclose(out["loss_fus"], fus) and torch.isclose(consistency_loss(masked, logits), cr)
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
    with pytest.raises(FileNotFoundError, match="pretrained"):
        tiny_module(pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="does not fit"):
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
        module = tiny_module(mfml=mfml, cr_mode=mfml, scales=[0.75, 1.25], augment_seed=3)
        out = module.compute_losses(batch)
        out["loss"].backward()
        losses.append(out["loss"].item())
        assert "loss_cr" in out and all(s.lambda_.grad is not None for s in module.net.sci)
    assert losses[0] == losses[1]
    with pytest.raises(KeyError, match="mask"):
        tiny_module().compute_losses({"ir": batch["ir"], "vis": batch["vis"]})


def test_schedule_and_rescale():
    assert warmup_poly_factor(0, 100, 10) == 0.0 and warmup_poly_factor(5, 100, 10) == 0.5
    assert warmup_poly_factor(10, 100, 10) == pytest.approx(0.9 ** 0.9)
    assert warmup_poly_factor(100, 100, 10) == 0.0 and warmup_poly_factor(0, 100, 0) == 1.0
    gen = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, 8, 12, dtype=torch.long)
    (small,), small_mask = random_rescale([torch.ones(1, 3, 8, 12)], mask, 0.5, gen)
    assert small.shape == (1, 3, 8, 12) and small_mask.shape == (1, 8, 12)
    assert (small_mask == IGNORE_INDEX).sum() == 96 - 24 and (small == 0).sum() == 3 * (96 - 24)
    (big,), big_mask = random_rescale([torch.ones(1, 3, 8, 12)], mask, 1.5, gen)
    assert big.shape == (1, 3, 8, 12) and (big_mask == 0).all()


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
